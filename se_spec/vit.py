"""Vision Transformer (Dosovitskiy et al., "An Image is Worth 16x16 Words", ICLR 2021): sizes.

timm's layout: `patch_embed.proj` (a `p x p` conv with stride `p`), `cls_token` `(1, 1, C)`,
`pos_embed` `(1, 1 + (img_size / p)^2, C)`, pre-norm blocks `blocks.N` (`norm1`, `attn.qkv`
as one Linear `C → 3C`, `attn.proj`, `norm2`, `mlp.fc1`, `mlp.fc2`), the final `norm` and the
`head` on the class token. LayerNorm eps 1e-6, exact (erf) GELU, softmax attention in float32.

SE-ViT: a channel SE over the embedding dimension after each block's MLP, before the residual
addition, i.e. `x + se(mlp(norm2(x)))` — the place SE takes in a residual block (Hu et al.,
SENet, Fig. 3). The squeeze is the mean over all tokens, the class token included, and the gate
rescales all tokens, the class token included: the module is the rank-generic `SqueezeExcite`
applied to the whole `(N, L, C)` sequence, nothing special-cased (see docs/models.md).

Input size: `img_size` (default 224) must be a multiple of `patch_size` (default from the name,
16) and at least one patch; images must be exactly `img_size` a side, since `pos_embed` holds one
row per patch.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from se_spec.validation import check_positive_int

FAMILY = "vit"
STEMS = ("patch",)
LN_EPS = 1e-6
DEFAULT_IMG_SIZE = 224
DEFAULT_PATCH_SIZE = 16
OPTIONS = ("img_size", "patch_size")


class ViTSize(NamedTuple):
    """Embedding width, depth, heads and MLP ratio of one ViT size."""

    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float = 4.0


SIZES = {"tiny": ViTSize(192, 12, 3), "small": ViTSize(384, 12, 6)}

# name → (size, (depth,), default attention) for `se_spec.models.MODEL_SPECS`.
MODELS: dict[str, tuple[str, tuple[int, ...], str]] = {
    f"{prefix}vit_{size}_patch16_224": (size, (SIZES[size].depth,), attn)
    for prefix, attn in (("", "none"), ("se_", "se")) for size in SIZES
}


def resolve_vit_options(name: str, img_size: int | None = None,
                        patch_size: int | None = None) -> dict[str, int]:
    """Validate `img_size` and `patch_size`: positive, `img_size` a multiple of the patch."""
    img_size = DEFAULT_IMG_SIZE if img_size is None else img_size
    patch_size = DEFAULT_PATCH_SIZE if patch_size is None else patch_size
    check_positive_int(name, "img_size", img_size)
    check_positive_int(name, "patch_size", patch_size)
    if img_size % patch_size:
        raise ValueError(f"{name}: img_size={img_size} is not a multiple of "
                         f"patch_size={patch_size}; expected img_size = k * patch_size, k >= 1 "
                         "(pos_embed holds one row per patch)")
    return {"img_size": img_size, "patch_size": patch_size}


def num_tokens(img_size: int, patch_size: int) -> int:
    """Sequence length: the class token plus `(img_size / patch_size)^2` patches."""
    return 1 + (img_size // patch_size) ** 2


def check_vit_image(name: str, shape: tuple[int, ...], in_chans: int, channel_axis: int,
                    img_size: int | None) -> None:
    """Validate an image batch for a ViT: rank 4, `in_chans` channels, `img_size` a side.

    With `img_size=None` only the rank and the channels are checked.
    """
    if len(shape) != 4:
        raise ValueError(f"{name}: input of rank {len(shape)} (shape {tuple(shape)}); expected "
                         "rank 4 (batch, channels, height, width in the framework's layout)")
    if shape[channel_axis] != in_chans:
        raise ValueError(f"{name}: input has {shape[channel_axis]} channels (shape "
                         f"{tuple(shape)}); expected in_chans={in_chans}")
    spatial = tuple(d for i, d in enumerate(shape[1:], 1) if i != channel_axis % 4)
    if img_size is not None and spatial != (img_size, img_size):
        raise ValueError(f"{name}: input of size {spatial} (height, width); expected "
                         f"({img_size}, {img_size}), the model's img_size (pos_embed has one "
                         "row per patch; build the model with img_size=<side>)")


def options_from_pos_embed(pos_embed_shape: Any, patch_kernel_side: int) -> dict[str, int]:
    """`img_size` and `patch_size` implied by a `pos_embed` `(1, L, C)` and the patch kernel."""
    grid = round((int(pos_embed_shape[1]) - 1) ** 0.5)
    if grid * grid + 1 != int(pos_embed_shape[1]) or patch_kernel_side < 1:
        return {}
    return {"img_size": grid * patch_kernel_side, "patch_size": patch_kernel_side}
