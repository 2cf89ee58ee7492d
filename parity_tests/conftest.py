import jax
import torch

jax.config.update("jax_default_matmul_precision", "highest")
torch.manual_seed(0)
