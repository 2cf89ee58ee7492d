"""Option checks shared by every implementation: one message format, `Module: option=value …`."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import TypeVar

T = TypeVar("T")


def check_choice(module: str, option: str, value: str, allowed: tuple[str, ...]) -> str:
    """Return `value` if it is one of `allowed`, else raise a ValueError naming the option."""
    if value not in allowed:
        raise ValueError(f"{module}: {option}={value!r} is not supported; expected one of "
                         f"{', '.join(repr(a) for a in allowed)}")
    return value


def check_positive_int(module: str, option: str, value: int) -> int:
    """Return `value` if it is an int ≥ 1, else raise a ValueError naming the option."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{module}: {option}={value!r} is invalid; expected an integer >= 1")
    return value


def lookup(registry: Mapping[str, T], name: str, what: str) -> T:
    """`registry[name]`, or a ValueError listing the close matches and every choice."""
    if name in registry:
        return registry[name]
    close = difflib.get_close_matches(str(name), list(registry), n=3)
    hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    raise ValueError(f"unknown {what} {name!r}{hint}; expected one of: {', '.join(registry)}")
