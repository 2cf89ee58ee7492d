"""The model registry: names, depths, attention, options, input shapes and input checks.

`se_flax.create_model` and `se_torch_ref.create_model` both resolve names and validate keyword
arguments here, so a name and its options mean the same network in both frameworks.
The ResNet and R3D tables are below; MobileNetV3 and ViT keep theirs in `se_spec.mobilenet` and
`se_spec.vit` and register here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from se_spec import mobilenet, vit
from se_spec.selective_kernel import SelectiveKernelSpec
from se_spec.validation import check_choice, check_positive_int, lookup
from se_spec.variants import VARIANT_SPECS

# Expansion of each residual block (He et al., "Deep Residual Learning", CVPR 2016).
EXPANSION = {"basic": 1, "bottleneck": 4}
DEPTHS: dict[int, tuple[str, tuple[int, ...]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
STEMS = ("imagenet", "cifar", "r3d")
FAMILY_STEMS = {"resnet2d": ("imagenet", "cifar"), "r3d": ("r3d",),
                mobilenet.FAMILY: mobilenet.STEMS, vit.FAMILY: vit.STEMS}
STEM_STRIDE = {"imagenet": 4, "cifar": 1, "r3d": 2}
NETWORK_STRIDE = {stem: s * 8 for stem, s in STEM_STRIDE.items()}  # layers 2-4 each stride 2
# Video (R3D, torchvision `VideoResNet`): the stem keeps time, layers 2-4 halve it as well.
TIME_STRIDE = 8
NO_ATTENTION = "none"
# Flax-only keyword arguments (numerics, distribution and the compiled program, not architecture).
FLAX_ONLY_OPTIONS = ("dtype", "axis_name", "impl")
# Named values of `impl` (`se_flax.implementation`): how a Flax model is compiled, never what it
# computes. "auto" is "cpu" on the CPU backend and "xla" elsewhere.
IMPL_CHOICES = ("auto", "xla", "cpu")
SHARED_OPTIONS = ("num_classes", "stem", "attn", "attn_kwargs", "zero_init_last_bn", "in_chans")
# Options of one family only (both frameworks).
FAMILY_OPTIONS: dict[str, tuple[str, ...]] = {vit.FAMILY: vit.OPTIONS}


def check_option_names(name: str, kwargs: dict[str, Any], extra: tuple[str, ...] = ()) -> None:
    """Refuse keyword arguments `create_model` does not know, listing the ones it does."""
    extra = extra + FAMILY_OPTIONS.get(model_spec(name).family, ())
    unknown = sorted(set(kwargs) - set(SHARED_OPTIONS) - set(extra))
    if unknown:
        raise TypeError(f"{name}: unexpected keyword argument(s) "
                        f"{', '.join(map(repr, unknown))}; expected some of "
                        f"{', '.join(SHARED_OPTIONS + extra)}")


@dataclass(frozen=True)
class ModelSpec:
    """Architecture of one registered name.

    `cardinality` and `base_width` make a Bottleneck a ResNeXt one (Xie et al., CVPR 2017): its
    3x3 conv has `cardinality` groups and `block_width(planes, base_width, cardinality)`
    channels. `sk` puts a Selective Kernel unit in place of the BasicBlock's first 3x3 conv or
    the Bottleneck's 3x3 conv (Li et al., CVPR 2019; timm's `skresnet*`).
    """

    block: str
    layers: tuple[int, ...]
    attn: str
    family: str = "resnet2d"
    cardinality: int = 1
    base_width: int = 64
    sk: SelectiveKernelSpec | None = None

    def architecture(self) -> dict[str, Any]:
        """Constructor arguments of the family's network; ResNeXt/SK ones only where set."""
        arch: dict[str, Any] = {"block": self.block, "layers": self.layers}
        if (self.cardinality, self.base_width) != (1, 64):
            arch.update(cardinality=self.cardinality, base_width=self.base_width)
        if self.sk is not None:
            arch["sk"] = self.sk
        return arch


def block_width(module: str, planes: int, base_width: int = 64, cardinality: int = 1,
                bottleneck: bool = True) -> int:
    """Width of a block's grouped 3x3 conv: `int(planes * base_width / 64) * cardinality`.

    The ResNeXt rule of torchvision and timm (`resnext50_32x4d`: 128 channels in 32 groups of 4
    in layer1). BasicBlocks have no bottleneck to widen: they need the defaults (1, 64).
    """
    check_positive_int(module, "cardinality", cardinality)
    check_positive_int(module, "base_width", base_width)
    if not bottleneck:
        if (cardinality, base_width) != (1, 64):
            raise ValueError(f"{module}: cardinality={cardinality}, base_width={base_width} with "
                             "block='basic'; expected cardinality=1 and base_width=64 (grouped "
                             "3x3 convs need block='bottleneck')")
        return planes
    width = int(planes * base_width / 64) * cardinality
    if width < 1:
        raise ValueError(f"{module}: base_width={base_width} gives a 3x3 conv of {width} "
                         f"channels for planes={planes}; expected base_width >= {-(-64 // planes)}")
    return width


def _register() -> dict[str, ModelSpec]:
    specs: dict[str, ModelSpec] = {}
    prefixes = {"": NO_ATTENTION, "se_": "se", "se_article_": "se_article", "eca_": "eca",
                "cbam_": "cbam", "ese_": "effective_se"}
    for prefix, attn in prefixes.items():
        depths = DEPTHS if prefix in ("", "se_") else (18, 50)
        for depth in depths:
            block, layers = DEPTHS[depth]
            specs[f"{prefix}resnet{depth}"] = ModelSpec(block, layers, attn)
    for prefix, attn in (("", NO_ATTENTION), ("se_", "se")):
        for depth in (18, 34):
            specs[f"{prefix}r3d_{depth}"] = ModelSpec("basic", DEPTHS[depth][1], attn, "r3d")
    specs.update(_register_resnext_sk())
    for family in (mobilenet, vit):  # `block` names the family's configuration
        specs.update({n: ModelSpec(*spec, family.FAMILY) for n, spec in family.MODELS.items()})
    return specs


def _register_resnext_sk() -> dict[str, ModelSpec]:
    """ResNeXt (torchvision), SE-ResNeXt and SK-ResNet/ResNeXt (timm), with timm's SK options."""
    layers = {depth: DEPTHS[depth][1] for depth in DEPTHS}
    x32 = {"cardinality": 32, "base_width": 4}
    sk_basic = SelectiveKernelSpec(rd_ratio=1 / 8, rd_divisor=16, split_input=True)
    sk_next = SelectiveKernelSpec(rd_ratio=1 / 16, rd_divisor=32, split_input=False)
    return {
        "resnext50_32x4d": ModelSpec("bottleneck", layers[50], NO_ATTENTION, **x32),
        "se_resnext50_32x4d": ModelSpec("bottleneck", layers[50], "se", **x32),
        "se_resnext101_32x4d": ModelSpec("bottleneck", layers[101], "se", **x32),
        "sk_resnet18": ModelSpec("basic", layers[18], NO_ATTENTION, sk=sk_basic),
        "sk_resnet34": ModelSpec("basic", layers[34], NO_ATTENTION, sk=sk_basic),
        "sk_resnext50_32x4d": ModelSpec("bottleneck", layers[50], NO_ATTENTION, sk=sk_next,
                                        **x32),
    }


MODEL_SPECS: dict[str, ModelSpec] = _register()


def list_models() -> list[str]:
    """Names of all registered models, in registration order."""
    return list(MODEL_SPECS)


def model_spec(name: str) -> ModelSpec:
    """The spec of a registered model; unknown names list the close matches."""
    return lookup(MODEL_SPECS, name, "model")


def resolve_options(name: str, *, num_classes: int | None = None, stem: str | None = None,
                    attn: str | None = None, attn_kwargs: dict[str, Any] | None = None,
                    zero_init_last_bn: bool = False, in_chans: int = 3,
                    **family_options: Any) -> dict[str, Any]:
    """Validate the keyword arguments of `create_model` and fill in the defaults.

    `family_options` are those of `FAMILY_OPTIONS` (ViT: `img_size`, `patch_size`).
    """
    spec = model_spec(name)
    if num_classes is None:  # ImageNet-1k for images, Kinetics-400 for video
        num_classes = 400 if spec.family == "r3d" else 1000
    check_positive_int(name, "num_classes", num_classes)
    check_positive_int(name, "in_chans", in_chans)
    stem = FAMILY_STEMS[spec.family][0] if stem is None else stem
    for option, value in (("stem", stem), ("attn", attn)):
        if value is not None and not isinstance(value, str):
            raise TypeError(f"{name}: {option}={value!r} is invalid; expected a name (str)")
    check_choice(name, "stem", stem, FAMILY_STEMS[spec.family])
    attn = spec.attn if attn is None else attn
    if attn != NO_ATTENTION:
        try:
            lookup({NO_ATTENTION: None, **VARIANT_SPECS}, attn, "attention")
        except ValueError as e:
            raise ValueError(f"{name}: attn={attn!r} is invalid: {e}") from None
    if attn_kwargs is not None and not isinstance(attn_kwargs, dict):
        raise TypeError(f"{name}: attn_kwargs must be a dict of attention options, got "
                        f"{type(attn_kwargs).__name__}")
    if not isinstance(zero_init_last_bn, bool):
        raise TypeError(f"{name}: zero_init_last_bn must be True or False, got "
                        f"{zero_init_last_bn!r}")
    check_option_names(name, family_options)
    if spec.family == vit.FAMILY:
        if zero_init_last_bn:
            raise ValueError(f"{name}: zero_init_last_bn=True is invalid; expected False (a "
                             "ViT has no BatchNorm)")
        family_options = vit.resolve_vit_options(name, **family_options)
    return {**spec.architecture(), "num_classes": num_classes,
            "stem": stem, "attn": attn, "attn_kwargs": dict(attn_kwargs or {}),
            "zero_init_last_bn": zero_init_last_bn, "in_chans": in_chans, **family_options}


def input_shape(name: str, size: int, batch: int = 1, frames: int = 16,
                channels_last: bool = True, in_chans: int = 3) -> tuple[int, ...]:
    """Input shape of a registered model: images `size x size`, or clips of `frames` frames."""
    spatial = (frames, size, size) if model_spec(name).family == "r3d" else (size, size)
    return (batch, *spatial, in_chans) if channels_last else (batch, in_chans, *spatial)


def check_image(name: str, shape: tuple[int, ...], in_chans: int, channel_axis: int,
                stem: str) -> None:
    """Validate a network input: rank, `in_chans` channels, sides ≥ the network's stride.

    Images are rank 4 (batch, channels, height, width in the framework's layout); clips of the
    `r3d` stem rank 5 (batch, channels, time, height, width), with at least 8 frames.
    """
    family = model_spec(name).family if name in MODEL_SPECS else None
    if family == vit.FAMILY:  # the side is checked by the model against its img_size
        vit.check_vit_image(name, shape, in_chans, channel_axis, None)
        return
    video = stem == "r3d"
    rank = 5 if video else 4
    what = "time, height, width" if video else "height, width"
    if len(shape) != rank:
        raise ValueError(f"{name}: input of rank {len(shape)} (shape {tuple(shape)}); expected "
                         f"rank {rank} (batch, channels, {what} in the framework's layout)")
    if shape[channel_axis] != in_chans:
        raise ValueError(f"{name}: input has {shape[channel_axis]} channels (shape "
                         f"{tuple(shape)}); expected in_chans={in_chans}")
    spatial = [d for i, d in enumerate(shape[1:], 1) if i != channel_axis % rank]
    stride = (mobilenet.NETWORK_STRIDE if family == mobilenet.FAMILY else NETWORK_STRIDE)[stem]
    strides = ([TIME_STRIDE] if video else []) + [stride] * 2
    if any(d < s for d, s in zip(spatial, strides, strict=True)):
        raise ValueError(f"{name}: input of size {tuple(spatial)} ({what}) is smaller than the "
                         f"total stride {tuple(strides)} of the {stem!r} stem; expected each "
                         f"side >= its stride")


def sample_input_shape(name: str, in_chans: int = 3, channels_last: bool = True,
                       img_size: int | None = None) -> tuple[int, ...]:
    """A batch-1 input that every stem of model `name` accepts.

    Sides of the largest total stride (32), and `TIME_STRIDE` frames for video models; a ViT's
    `img_size` (default 224).
    """
    size = max(NETWORK_STRIDE.values())
    if model_spec(name).family == vit.FAMILY:
        size = img_size or vit.DEFAULT_IMG_SIZE
    return input_shape(name, size, frames=TIME_STRIDE,
                       channels_last=channels_last, in_chans=in_chans)
