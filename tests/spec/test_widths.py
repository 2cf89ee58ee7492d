import pytest

from se_spec.attention import eca_kernel_size, make_divisible, reduced_channels
from se_spec.validation import lookup


@pytest.mark.parametrize("channels,policy,expected", [
    (64, "divisible", 8),     # timm: make_divisible(4, 8) = 8
    (64, "floor", 4),         # article: 64 // 16
    (256, "divisible", 16),
    (256, "floor", 16),
    (2048, "divisible", 128),
    (100, "floor", 6),
    (256, "dynamic", 32),     # ratio max(8, 256 // 64 = 4) = 8
    (1024, "dynamic", 64),    # ratio max(8, 16) = 16
    (2048, "dynamic", 64),    # ratio 32
])
def test_reduction_policies(channels, policy, expected):
    assert reduced_channels("m", channels, rd_policy=policy) == expected


def test_make_divisible_rounds_to_nearest_multiple():
    assert make_divisible(12.0) == 16
    assert make_divisible(11.9) == 8
    assert make_divisible(3, divisor=1) == 3
    assert make_divisible(0.2, divisor=1) == 1


def test_explicit_rd_channels_wins():
    assert reduced_channels("m", 64, rd_channels=3) == 3


@pytest.mark.parametrize("channels,k", [(64, 3), (128, 5), (256, 5), (512, 5), (1024, 5),
                                        (2048, 7), (16, 3)])
def test_eca_kernel_size_matches_paper(channels, k):
    # ECA-Net: t = int(|log2 C + 1| / 2); k = t if t odd else t + 1, at least 3
    assert eca_kernel_size(channels) == k


def test_lookup_suggests_close_names():
    with pytest.raises(ValueError, match=r"unknown model 'se_resnt50' \(did you mean se_resnet50"):
        lookup({"se_resnet50": 1, "resnet50": 2}, "se_resnt50", "model")
