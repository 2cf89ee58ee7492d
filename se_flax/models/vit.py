"""Vision Transformer in Flax linen (Dosovitskiy et al., ICLR 2021), with optional SE per block.

Module names follow timm's keys through `se_flax.convert.naming`: `cls_token` `(1, 1, C)`,
`pos_embed` `(1, L, C)`, `patch_embed/proj`, `blocks_N/norm1`, `blocks_N/attn/qkv` (one Dense
`C → 3C`), `blocks_N/attn/proj`, `blocks_N/norm2`, `blocks_N/mlp/fc1`, `blocks_N/mlp/fc2`,
`blocks_N/se`, `norm`, `head`. Tokens are `(N, L, C)` (NLC). LayerNorm eps 1e-6 with the
two-pass variance, exact GELU, and attention logits and softmax in float32 whatever the compute
`dtype`. Sizes, input sizes and where the SE sits: `se_spec.vit`.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from se_flax.layers.functional import at_least_fp32
from se_flax.layers.norm import BatchNorm
from se_flax.models.blocks import Boundary, ModuleDef, attention_factory
from se_spec.models import NO_ATTENTION
from se_spec.vit import LN_EPS, SIZES, check_vit_image, num_tokens

dense_init = nn.initializers.truncated_normal(0.02)  # timm's default for Linear weights


def layer_norm(name: str, dtype: Any) -> nn.Module:
    """LayerNorm as timm's ViT: eps 1e-6, statistics in float32 by the two-pass formula."""
    return nn.LayerNorm(epsilon=LN_EPS, use_fast_variance=False, dtype=dtype, name=name)


class Attention(nn.Module):
    """Multi-head self-attention on `(N, L, C)`; `qkv` is one Dense `C → 3C`."""

    dim: int
    num_heads: int
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Attend over the tokens of `x`; logits and softmax in float32 (or wider)."""
        n, length, _ = x.shape
        head_dim = self.dim // self.num_heads
        qkv = nn.Dense(3 * self.dim, dtype=self.dtype, kernel_init=dense_init, name="qkv")(x)
        qkv = qkv.reshape(n, length, 3, self.num_heads, head_dim)
        q, k, v = (qkv[:, :, i] for i in range(3))  # each (N, L, heads, head_dim)
        logits = jnp.einsum("nqhd,nkhd->nhqk", at_least_fp32(q * head_dim ** -0.5),
                            at_least_fp32(k))
        weights = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
        y = jnp.einsum("nhqk,nkhd->nqhd", weights, v).reshape(n, length, self.dim)
        return nn.Dense(self.dim, dtype=self.dtype, kernel_init=dense_init, name="proj")(y)


class Mlp(nn.Module):
    """`fc2(gelu(fc1(x)))` with the exact (erf) GELU, as timm and `torch.nn.GELU()`."""

    dim: int
    hidden: int
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Apply the MLP token-wise."""
        x = nn.Dense(self.hidden, dtype=self.dtype, kernel_init=dense_init, name="fc1")(x)
        x = jax.nn.gelu(x, approximate=False)
        return nn.Dense(self.dim, dtype=self.dtype, kernel_init=dense_init, name="fc2")(x)


class Block(nn.Module):
    """Pre-norm transformer block; attention `se` after the MLP, before the residual add."""

    dim: int
    num_heads: int
    mlp_ratio: float = 4.0
    attn: Any = None
    dtype: Any = None
    residual_boundary: Boundary = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Apply the block to `(N, L, C)`."""
        x = x + Attention(self.dim, self.num_heads, self.dtype, name="attn")(
            layer_norm("norm1", self.dtype)(x))
        y = Mlp(self.dim, int(self.dim * self.mlp_ratio), self.dtype, name="mlp")(
            layer_norm("norm2", self.dtype)(x))
        if self.attn is not None:
            y = self.attn(channels=self.dim, dtype=self.dtype, name="se")(y, train=train)
        out = x + y.astype(x.dtype)
        return out if self.residual_boundary is None else self.residual_boundary(out)


class PatchEmbed(nn.Module):
    """Non-overlapping `p x p` patches → `(N, L, C)` tokens through one strided conv `proj`."""

    dim: int
    patch_size: int
    dtype: Any = None
    conv: ModuleDef = nn.Conv

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """`(N, H, W, C_in)` → `(N, H/p * W/p, C)`, row-major over the patch grid."""
        p = self.patch_size
        x = self.conv(self.dim, (p, p), (p, p), padding="VALID", dtype=self.dtype,
                      name="proj")(x)
        return x.reshape(x.shape[0], -1, x.shape[-1])


class VisionTransformer(nn.Module):
    """ViT / SE-ViT (`block` = `tiny` or `small`); head on the class token."""

    block: str = "tiny"
    layers: tuple[int, ...] = (12,)
    num_classes: int = 1000
    stem: str = "patch"
    attn: str = NO_ATTENTION
    attn_kwargs: Any = None
    zero_init_last_bn: bool = False
    in_chans: int = 3
    img_size: int = 224
    patch_size: int = 16
    dtype: Any = None
    axis_name: str | None = None
    model_name: str = "VisionTransformer"
    conv: ModuleDef = nn.Conv
    norm: ModuleDef = BatchNorm  # unused (no BatchNorm); accepted like every model's `impl`
    residual_boundary: Boundary = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Logits `(N, num_classes)` in float32 for channels-last images of `img_size` a side."""
        check_vit_image(self.model_name, x.shape, self.in_chans, -1, self.img_size)
        size = SIZES[self.block]
        dim = size.embed_dim
        attn = attention_factory(self.attn, self.attn_kwargs, self.axis_name, 1, self.norm)
        x = PatchEmbed(dim, self.patch_size, self.dtype, self.conv, name="patch_embed")(
            x.astype(self.dtype or x.dtype))
        cls_token = self.param("cls_token", nn.initializers.normal(1e-6), (1, 1, dim))
        pos_embed = self.param("pos_embed", nn.initializers.truncated_normal(0.02),
                               (1, num_tokens(self.img_size, self.patch_size), dim))
        cls = jnp.broadcast_to(cls_token, (x.shape[0], 1, dim)).astype(x.dtype)
        x = jnp.concatenate([cls, x], axis=1) + pos_embed.astype(x.dtype)
        for i in range(self.layers[0]):
            x = Block(dim, size.num_heads, size.mlp_ratio, attn, self.dtype,
                      self.residual_boundary, name=f"blocks_{i}")(x, train)
        x = layer_norm("norm", self.dtype)(x)
        return nn.Dense(self.num_classes, kernel_init=dense_init, name="head")(
            at_least_fp32(x[:, 0]))
