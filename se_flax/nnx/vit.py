"""Vision Transformer in NNX (Dosovitskiy et al., ICLR 2021), with optional SE per block.

The twin of `se_flax.models.vit.VisionTransformer`: the same computation, with attributes
named as timm's modules: `cls_token` `(1, 1, C)` and `pos_embed` `(1, L, C)` parameters at the
top level, `patch_embed.proj`, `blocks[N].norm1`, `blocks[N].attn.qkv` (one Linear `C → 3C`),
`blocks[N].attn.proj`, `blocks[N].norm2`, `blocks[N].mlp.fc1`/`fc2`, `blocks[N].se`, `norm`,
`head`. LayerNorm eps 1e-6 with the two-pass variance (`se_flax.nnx.layer_norm`), exact GELU,
attention logits and softmax in float32; the SE squeezes over the token axis
(`spatial_dims=1`). Sizes and input checks: `se_spec.vit`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from se_flax.layers.functional import at_least_fp32
from se_flax.nnx.blocks import Layers
from se_flax.nnx.layer_norm import LayerNorm
from se_spec.vit import LN_EPS, SIZES, check_vit_image, num_tokens

dense_init = nnx.initializers.truncated_normal(0.02)  # timm's default for Linear weights


class Attention(nnx.Module):
    """Multi-head self-attention on `(N, L, C)`; `qkv` is one Linear `C → 3C`."""

    def __init__(self, dim: int, num_heads: int, dtype: Any, *, rngs: nnx.Rngs) -> None:
        self.dim, self.num_heads = dim, num_heads
        self.qkv = nnx.Linear(dim, 3 * dim, dtype=dtype, kernel_init=dense_init, rngs=rngs)
        self.proj = nnx.Linear(dim, dim, dtype=dtype, kernel_init=dense_init, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Attend over the tokens of `x`; logits and softmax in float32 (or wider)."""
        n, length, _ = x.shape
        head_dim = self.dim // self.num_heads
        qkv = self.qkv(x).reshape(n, length, 3, self.num_heads, head_dim)
        q, k, v = (qkv[:, :, i] for i in range(3))  # each (N, L, heads, head_dim)
        logits = jnp.einsum("nqhd,nkhd->nhqk", at_least_fp32(q * head_dim ** -0.5),
                            at_least_fp32(k))
        weights = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
        y = jnp.einsum("nhqk,nkhd->nqhd", weights, v).reshape(n, length, self.dim)
        return self.proj(y)


class Mlp(nnx.Module):
    """`fc2(gelu(fc1(x)))` with the exact (erf) GELU, as timm and `torch.nn.GELU()`."""

    def __init__(self, dim: int, hidden: int, dtype: Any, *, rngs: nnx.Rngs) -> None:
        self.fc1 = nnx.Linear(dim, hidden, dtype=dtype, kernel_init=dense_init, rngs=rngs)
        self.fc2 = nnx.Linear(hidden, dim, dtype=dtype, kernel_init=dense_init, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Apply the MLP token-wise."""
        return self.fc2(jax.nn.gelu(self.fc1(x), approximate=False))


class Block(nnx.Module):
    """Pre-norm transformer block; attention `se` after the MLP, before the residual add."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, layers: Layers, path: str,
                 *, rngs: nnx.Rngs) -> None:
        self.norm1 = LayerNorm(dim, epsilon=LN_EPS, dtype=layers.dtype)
        self.attn = Attention(dim, num_heads, layers.dtype, rngs=rngs)
        self.norm2 = LayerNorm(dim, epsilon=LN_EPS, dtype=layers.dtype)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), layers.dtype, rngs=rngs)
        self.se = layers.attention(dim, f"{path}/se", rngs)
        self.residual_boundary = layers.boundary()

    def __call__(self, x: jax.Array, train: bool | None = None) -> jax.Array:
        """Apply the block to `(N, L, C)`."""
        x = x + self.attn(self.norm1(x))
        y = self.mlp(self.norm2(x))
        if self.se is not None:
            y = self.se(y, train=train)
        out = x + y.astype(x.dtype)
        return out if self.residual_boundary is None else self.residual_boundary(out)


class PatchEmbed(nnx.Module):
    """Non-overlapping `p x p` patches → `(N, L, C)` tokens through one strided conv `proj`."""

    def __init__(self, in_chans: int, dim: int, patch_size: int, layers: Layers, *,
                 rngs: nnx.Rngs) -> None:
        p = patch_size
        self.proj = nnx.Conv(in_chans, dim, (p, p), (p, p), padding="VALID", dtype=layers.dtype,
                             conv_general_dilated=layers.lowering(), rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """`(N, H, W, C_in)` → `(N, H/p * W/p, C)`, row-major over the patch grid."""
        x = self.proj(x)
        return x.reshape(x.shape[0], -1, x.shape[-1])


class VisionTransformer(nnx.Module):
    """ViT / SE-ViT (`block` = `tiny` or `small`); build it with `se_flax.nnx.create_model`.

    `layers` is `(depth,)`; `stem` (`"patch"`) and `zero_init_last_bn` (False) are accepted as
    for every model.
    """

    def __init__(self, block: str, layers: tuple[int, ...], num_classes: int, stem: str,
                 zero_init_last_bn: bool, in_chans: int, img_size: int, patch_size: int,
                 builder: Layers, model_name: str, *, rngs: nnx.Rngs) -> None:
        del stem, zero_init_last_bn
        size = SIZES[block]
        dim = size.embed_dim
        self.model_name, self.in_chans, self.img_size = model_name, in_chans, img_size
        self.dtype, self.dim = builder.dtype, dim
        self.patch_embed = PatchEmbed(in_chans, dim, patch_size, builder, rngs=rngs)
        self.cls_token = nnx.Param(nnx.initializers.normal(1e-6)(rngs.params(), (1, 1, dim)))
        self.pos_embed = nnx.Param(nnx.initializers.truncated_normal(0.02)(
            rngs.params(), (1, num_tokens(img_size, patch_size), dim)))
        self.blocks = nnx.List([Block(dim, size.num_heads, size.mlp_ratio, builder,
                                      f"blocks_{i}", rngs=rngs) for i in range(layers[0])])
        self.norm = LayerNorm(dim, epsilon=LN_EPS, dtype=builder.dtype)
        self.head = nnx.Linear(dim, num_classes, kernel_init=dense_init, rngs=rngs)

    def __call__(self, x: jax.Array, train: bool | None = None) -> jax.Array:
        """Logits `(N, num_classes)` in float32 for channels-last images of `img_size` a side.

        `train` only reaches the attention modules (a ViT has no BatchNorm).
        """
        check_vit_image(self.model_name, x.shape, self.in_chans, -1, self.img_size)
        x = self.patch_embed(x.astype(self.dtype or x.dtype))
        cls = jnp.broadcast_to(self.cls_token[...], (x.shape[0], 1, self.dim)).astype(x.dtype)
        x = jnp.concatenate([cls, x], axis=1) + self.pos_embed[...].astype(x.dtype)
        for block in self.blocks:
            x = block(x, train)
        return self.head(at_least_fp32(self.norm(x)[:, 0]))
