"""Names of the variable collections and of the recorded attention gates, in both frameworks.

Flax keeps trainable weights in `params` and BatchNorm running statistics in `batch_stats`
(PyTorch's parameters and buffers); every attention layer records its gate with
`sow("intermediates", "gate", s)` in Flax and as the attribute `last_gate` in PyTorch. Selective
Kernel units record their selection weights `(N, paths, C)` as `selection` / `last_selection`.
"""

from __future__ import annotations

PARAMS = "params"
BATCH_STATS = "batch_stats"
COLLECTIONS = (PARAMS, BATCH_STATS)  # what a checkpoint holds
INTERMEDIATES = "intermediates"
# PyTorch attribute of an attention module → the name its Flax twin sows the same gate under.
SELECTION = "selection"
TORCH_GATE_ATTRS = {"last_gate": "gate", "last_spatial_gate": "spatial_gate",
                    "last_selection": SELECTION}
# Recorded values with the same shape in both frameworks: no channel axis to move to the end.
SAME_LAYOUT_GATES = (SELECTION,)
