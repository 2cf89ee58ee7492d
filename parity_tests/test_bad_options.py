"""Every bad option or input raises the same ValueError in both frameworks, naming the module, the
option and what fits."""

import jax
import jax.numpy as jnp
import pytest
import torch

import se_flax
import se_torch_ref

BAD_OPTIONS = [
    ("SqueezeExcite", {"rd_channels": 0}, r"rd_channels=0 is invalid; expected an integer >= 1"),
    ("SqueezeExcite", {"rd_ratio": 0.0}, r"rd_ratio=0.0 is invalid; expected a number in \(0, 1\]"),
    ("SqueezeExcite", {"rd_ratio": 1 / 128, "rd_policy": "floor"},
     r"bottleneck of 0 channels; expected >= 1"),
    ("SqueezeExcite", {"groups": 3}, r"groups=3 must divide channels=64 and rd_channels=8"),
    # the article's EfficientSE with groups=16: C // 16 = 4 channels cannot form 16 groups
    ("SqueezeExcite", {"groups": 16, "rd_ratio": 1 / 16, "rd_policy": "floor"},
     r"groups=16 must divide channels=64 and rd_channels=4"),
    ("SqueezeExcite", {"groups": 2, "excite": "linear"}, r"groups=2 needs excite='conv'"),
    ("SqueezeExcite", {"gate": "softmax"},
     r"gate='softmax' is not supported; expected one of 'sigmoid', 'hard_sigmoid'"),
    ("SqueezeExcite", {"act": "swish"}, r"act='swish' is not supported; expected one of 'relu'"),
    ("SqueezeExcite", {"excite": "dense"}, r"excite='dense' is not supported"),
    ("SqueezeExcite", {"rd_policy": "round"}, r"rd_policy='round' is not supported"),
    ("SqueezeExcite", {"spatial_dims": 4}, r"spatial_dims=4 is not supported"),
    ("ECA", {"kernel_size": 4}, r"kernel_size=4 is even; expected an odd size"),
    ("ECA", {"gate": "relu"}, r"gate='relu' is not supported"),
    ("CBAM", {"spatial_kernel_size": 6}, r"spatial_kernel_size=6 is even"),
    ("CBAM", {"act": "nope"}, r"act='nope' is not supported"),
    ("EffectiveSE", {"gate": "nope"}, r"gate='nope' is not supported"),
]


def _flax_call(cls_name, options, x_shape=(2, 4, 4, 64), channels=64):
    module = getattr(se_flax, cls_name)(channels=channels, **options)
    return module.init(jax.random.PRNGKey(0), jnp.ones(x_shape))


@pytest.mark.parametrize("cls_name,options,message", BAD_OPTIONS)
def test_bad_option_flax(cls_name, options, message):
    with pytest.raises(ValueError, match=message) as info:
        _flax_call(cls_name, options)
    assert str(info.value).startswith(cls_name)


@pytest.mark.parametrize("cls_name,options,message", BAD_OPTIONS)
def test_bad_option_torch(cls_name, options, message):
    with pytest.raises(ValueError, match=message) as info:
        getattr(se_torch_ref, cls_name)(channels=64, **options)
    assert str(info.value).startswith(cls_name)


@pytest.mark.parametrize("cls_name", ["SqueezeExcite", "ECA", "CBAM", "EffectiveSE"])
def test_wrong_channels(cls_name):
    with pytest.raises(ValueError, match=r"input has 32 channels .* built for channels=64"):
        _flax_call(cls_name, {}, x_shape=(2, 4, 4, 32))
    with pytest.raises(ValueError, match=r"input has 32 channels .* built for channels=64"):
        getattr(se_torch_ref, cls_name)(channels=64)(torch.ones(2, 32, 4, 4))


@pytest.mark.parametrize("cls_name", ["SqueezeExcite", "ECA", "CBAM", "EffectiveSE"])
def test_wrong_rank(cls_name):
    with pytest.raises(ValueError, match=r"input of rank 2 .* expected rank 3 or 4 or 5"):
        _flax_call(cls_name, {}, x_shape=(2, 64))
    with pytest.raises(ValueError, match=r"input of rank 5 .* expected rank 4"):
        getattr(se_torch_ref, cls_name)(channels=64)(torch.ones(2, 64, 2, 2, 2))
    with pytest.raises(ValueError, match=r"input of rank 4 .* expected rank 3"):
        _flax_call(cls_name, {"spatial_dims": 1})


def test_unknown_variant_lists_close_matches():
    for create in (se_flax.create_attention, se_torch_ref.create_attention):
        with pytest.raises(ValueError, match=r"unknown attention 'sse' \(did you mean se"):
            create("sse", 64)
