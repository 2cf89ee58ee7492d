"""What a conversion reports: `ConversionError` (strict) and `ConversionReport` (every outcome)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


class ConversionError(ValueError):
    """Weights do not match the target; `problems` lists every mismatch.

    `context` (optional) says what was being converted; `hints` (optional) suggest a fix.
    """

    def __init__(self, problems: list[str], context: str = "", hints: Iterable[str] = ()):
        self.problems = list(problems)
        self.hints = list(hints)
        listing = "\n  ".join(self.problems)
        head = f"{context}: " if context else ""
        tail = "".join(f"\nhint: {h}" for h in self.hints)
        super().__init__(f"{head}{len(self.problems)} problem(s) converting weights:\n  "
                         f"{listing}{tail}")


@dataclass
class ConversionReport:
    """What a conversion did: loaded keys, every key that did not match, and notes.

    `layout` is the PyTorch layout used (`timm`, `torchvision`, `article`) and `detected` says
    whether it was detected from the keys; `notes` record anything done besides the plain
    mapping (an unwrapped checkpoint, a stripped `module.` prefix, inferred model options,
    variables that kept their initial values).
    """

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    layout: str | None = None
    detected: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        """One line per missing, unexpected or wrongly shaped (or typed) key."""
        return ([f"missing key {k}" for k in self.missing]
                + [f"unexpected key {k}" for k in self.unexpected] + self.mismatched)
