"""The named attention variants (article and timm): one name, the same layer in every framework.

Each entry is `(layer type, constructor options)`; `se_flax.variants` and
`se_torch_ref.variants` turn them into `functools.partial`s of their own classes.
"""

from __future__ import annotations

from typing import Any

# The article's SE_Block / SE3D: two bias-free Linear layers, width C // 16.
_ARTICLE = {"excite": "linear", "bias": False, "rd_policy": "floor", "rd_ratio": 1 / 16}

VARIANT_SPECS: dict[str, tuple[str, dict[str, Any]]] = {
    # timm SEModule: 1x1 convs with bias, width make_divisible(C / 16, 8).
    "se": ("SqueezeExcite", {}),
    "se_article": ("SqueezeExcite", dict(_ARTICLE)),
    # Article §5.1 DynamicSE: Linear with bias, ratio max(8, C // 64).
    "dynamic_se": ("SqueezeExcite", {"excite": "linear", "rd_policy": "dynamic"}),
    # Article §5.3 QFriendlySE: hard-sigmoid gate for quantisation.
    "qfriendly_se": ("SqueezeExcite", {"excite": "linear", "rd_policy": "floor",
                                       "gate": "hard_sigmoid"}),
    # Article §6 EfficientSE: grouped 1x1 convs, width C // groups (groups=4).
    "efficient_se": ("SqueezeExcite", {"rd_policy": "floor", "rd_ratio": 1 / 4, "groups": 4}),
    # Article §7 MobileSE (MobileNetV3): ratio 4, hard-swish, hard-sigmoid.
    "mobile_se": ("SqueezeExcite", {"excite": "linear", "rd_policy": "floor", "rd_ratio": 1 / 4,
                                    "act": "hard_swish", "gate": "hard_sigmoid"}),
    # MobileNetV3 (Howard et al., ICCV 2019; torchvision `SqueezeExcitation`): 1x1 convs with
    # bias, ReLU inside, hard-sigmoid gate, width make_divisible(C / 4, 8) rounded to >= 90%.
    "mobilenet_v3_se": ("SqueezeExcite", {"rd_ratio": 1 / 4, "rd_round_limit": 0.9,
                                          "gate": "hard_sigmoid"}),
    # Article §6 "residual" SE: x + x * s with the last layer zero-initialised.
    "residual_se": ("SqueezeExcite", {"residual_gate": True, "zero_init_last": True}),
    "effective_se": ("EffectiveSE", {}),
    "eca": ("ECA", {}),
    "cbam": ("CBAM", {}),
}
