"""Cross-framework parity harness (se_flax vs se_torch_ref) and its pytest suite."""

from parity_tests.harness import ParityReport, Row, compare
from se_spec.tolerances import EVAL_TOL, TRAIN_TOL

__all__ = ["EVAL_TOL", "TRAIN_TOL", "ParityReport", "Row", "compare"]
