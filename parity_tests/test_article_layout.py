"""The article's SE_Block (fixed to run) loads into se_flax through its `fc.0`/`fc.2` keys."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torch import nn

import se_flax
from parity_tests.harness import channels_last, torch_state_dict
from se_flax.convert import torch_to_flax
from se_flax.convert.layouts import ARTICLE_SE_RENAMES
from se_spec.tolerances import EVAL_TOL, scaled_error


class ArticleSEBlock(nn.Module):
    """The article's §3.1 SE_Block, rank-generic like its SE3D."""

    def __init__(self, channel: int, ratio: int = 16):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(channel, channel // ratio, bias=False), nn.ReLU(),
                                nn.Linear(channel // ratio, channel, bias=False), nn.Sigmoid())

    def forward(self, x):
        y = self.fc(x.mean(dim=tuple(range(2, x.ndim))))
        return x * y.view(*y.shape, *([1] * (x.ndim - 2)))


@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("flax_options", [
    {"excite": "linear"},  # the article variant as is
    {"excite": "conv"},    # same weights in the timm-style 1x1-conv layout
])
def test_article_weights_load_and_match(rank, flax_options):
    torch.manual_seed(0)
    article = ArticleSEBlock(64).eval()
    x = np.random.default_rng(1).standard_normal((2, 64, *([4] * rank))).astype(np.float32)
    module = se_flax.create_attention("se_article", 64, **flax_options)
    x_f = jnp.asarray(channels_last(x))
    template = module.init(jax.random.PRNGKey(0), x_f)
    variables = torch_to_flax(torch_state_dict(article), {"params": template["params"]},
                              renames=ARTICLE_SE_RENAMES)
    with jax.default_matmul_precision("highest"):
        out = module.apply(variables, x_f)
    ref = channels_last(article(torch.from_numpy(x)).detach().numpy())
    assert scaled_error(out, ref)[1] <= EVAL_TOL
