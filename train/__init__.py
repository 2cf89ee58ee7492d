"""Training program for SE networks; run it with `python -m train` (or `se-train`).

Data flows one way: `cli` → `config` (validated once, model options resolved there) → `loop`
(`setup` → `loop` → `finish`) with `data` (sources: `folder`, TFDS, digits; host
`transforms`), `pipeline` (Grain workers, input timing), `augment`, `step`, `parallel`,
`checkpoint`, `monitor` and `metrics` below it, and `export` (PyTorch export, parity check, gate
plot) at the end.
"""
