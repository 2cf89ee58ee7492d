"""Names of the variable collections and of the recorded attention gates, in both frameworks.

Flax keeps trainable weights in `params` and BatchNorm running statistics in `batch_stats`
(PyTorch's parameters and buffers); every attention layer records its gate with
`sow("intermediates", "gate", s)` in Flax and as the attribute `last_gate` in PyTorch.
"""

from __future__ import annotations

PARAMS = "params"
BATCH_STATS = "batch_stats"
COLLECTIONS = (PARAMS, BATCH_STATS)  # what a checkpoint holds
INTERMEDIATES = "intermediates"
# PyTorch attribute of an attention module → the name its Flax twin sows the same gate under.
TORCH_GATE_ATTRS = {"last_gate": "gate", "last_spatial_gate": "spatial_gate"}
