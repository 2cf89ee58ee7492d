"""Vision Transformer reference (Dosovitskiy et al., ICLR 2021) with timm's state-dict layout.

Keys: `cls_token`, `pos_embed`, `patch_embed.proj`, `blocks.N.norm1`, `blocks.N.attn.qkv`,
`blocks.N.attn.proj`, `blocks.N.norm2`, `blocks.N.mlp.fc1`, `blocks.N.mlp.fc2`, `norm`, `head`
(+ `blocks.N.se.*` for SE-ViT); timm `vit_tiny_patch16_224` / `vit_small_patch16_224`
checkpoints load with `strict=True`. Tokens are `(N, L, C)` as in timm; the SE module is
channels-first, so it sees the block's `(N, C, L)` view. Sizes and the SE placement:
`se_spec.vit`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from se_spec.models import NO_ATTENTION
from se_spec.vit import LN_EPS, SIZES, check_vit_image, num_tokens
from se_torch_ref.variants import ATTENTION_VARIANTS


class PatchEmbed(nn.Module):
    """Non-overlapping `p x p` patches → `(N, L, C)` tokens through one strided conv `proj`."""

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`(N, C_in, H, W)` → `(N, H/p * W/p, C)`, row-major over the patch grid."""
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention; `qkv` is one Linear `C → 3C`; softmax in float32 or wider."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Attend over the tokens of `x` `(N, L, C)`."""
        n, length, dim = x.shape
        qkv = self.qkv(x).reshape(n, length, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (N, heads, L, head_dim)
        logits = (q * self.scale) @ k.transpose(-2, -1)
        weights = logits.softmax(dim=-1)
        y = (weights @ v).transpose(1, 2).reshape(n, length, dim)
        return self.proj(y)


class Mlp(nn.Module):
    """`fc2(gelu(fc1(x)))` with the exact (erf) GELU."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the MLP token-wise."""
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block; attention `se` after the MLP, before the residual add."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float,
                 attn: Callable[..., nn.Module] | None) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.se = attn(channels=dim) if attn is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block to `(N, L, C)`."""
        x = x + self.attn(self.norm1(x))
        y = self.mlp(self.norm2(x))
        if self.se is not None:
            y = self.se(y.transpose(1, 2)).transpose(1, 2)
        return x + y


class VisionTransformer(nn.Module):
    """ViT / SE-ViT with a class token and learned position embeddings; head on the class token."""

    def __init__(self, block: str = "tiny", layers: tuple[int, ...] = (12,),
                 num_classes: int = 1000, stem: str = "patch", attn: str = NO_ATTENTION,
                 attn_kwargs: dict[str, Any] | None = None, zero_init_last_bn: bool = False,
                 in_chans: int = 3, img_size: int = 224, patch_size: int = 16,
                 model_name: str = "VisionTransformer") -> None:
        super().__init__()
        del stem, zero_init_last_bn  # one stem (the patch embedding); no BatchNorm
        size = SIZES[block]
        dim = size.embed_dim
        self.model_name, self.in_chans, self.img_size = model_name, in_chans, img_size
        make_attn = None
        if attn != NO_ATTENTION:
            make_attn = functools.partial(ATTENTION_VARIANTS[attn], spatial_dims=1,
                                          **(attn_kwargs or {}))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_tokens(img_size, patch_size), dim))
        self.patch_embed = PatchEmbed(in_chans, dim, patch_size)
        self.blocks = nn.Sequential(*(Block(dim, size.num_heads, size.mlp_ratio, make_attn)
                                      for _ in range(layers[0])))
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.head = nn.Linear(dim, num_classes)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        for name, m in self.named_modules():  # attention modules keep their own initialisation
            if isinstance(m, nn.Linear) and ".se." not in f".{name}.":
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits `(N, num_classes)` for channels-first images of `img_size` a side."""
        check_vit_image(self.model_name, tuple(x.shape), self.in_chans, 1, self.img_size)
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])
