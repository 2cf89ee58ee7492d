"""Training program for SE-ResNets; run it with `python -m train` (or `se-train`).

Config, input pipeline, per-device step, pmap/shard_map drivers, Orbax checkpoints, metrics,
PyTorch export.
"""
