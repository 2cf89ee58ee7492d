"""Fuzz the converter: renamed, dropped, duplicated, transposed and reshaped keys never load
silently — either a `ConversionError`, or exactly the weights that were meant.

Out of scope by nature: a tensor replaced by another of the same shape (a square kernel
transposed, two equally shaped tensors swapped); no converter can see that from names and
shapes, so the transpose strategy only draws shape-changing transposes.
"""

import functools
import zlib

import numpy as np
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from se_flax.convert import (
    ConversionError,
    flatten,
    flax_to_torch,
    model_template,
    torch_to_flax,
    unflatten,
)

CASES = {"timm": "se_resnet18", "article": "se_article_resnet18"}


@functools.cache
def reference(layout):
    name = CASES[layout]
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    variables = unflatten({p: rng.random(s.shape, dtype=np.float32) + (p[-1] == "var")
                           for p, s in flatten(model_template(name, num_classes=10)).items()})
    return name, variables, flax_to_torch(variables, name, layout=layout)


RENAMES = [
    lambda k: k + "_x",
    lambda k: k.replace(".", "_", 1),
    lambda k: "module." + k,
    lambda k: k.replace("weight", "kernel"),
    lambda k: k.replace("layer1.", "layer5.").replace("layer2.", "layer1."),
    lambda k: k.replace(".0.", ".7.") if ".0." in k else k + ".0",
    lambda k: k.replace("fc1", "fc.0").replace("fc.2", "fc2"),
    lambda k: k.upper(),
]


@st.composite
def mutation(draw, state):
    kind = draw(st.sampled_from(["rename", "drop", "duplicate", "transpose", "reshape"]))
    keys = [k for k, v in state.items() if kind != "transpose" or v.ndim >= 2]
    key = draw(st.sampled_from(keys))
    if kind in ("rename", "duplicate"):
        return kind, key, draw(st.sampled_from(range(len(RENAMES))))
    return kind, key, draw(st.integers(0, 3))


def apply(state, kind, key, arg):
    if key not in state:
        return
    value = state[key]
    if kind == "drop":
        del state[key]
    elif kind in ("rename", "duplicate"):
        new = RENAMES[arg](key)
        assume(new != key and new not in state)
        if kind == "rename":
            del state[key]
        state[new] = value
    elif kind == "transpose":
        assume(value.ndim >= 2)  # an earlier reshape may have flattened it
        pairs = [(0, 1), None, (-2, -1), (0, -1)]
        new = value.T if pairs[arg] is None else np.swapaxes(value, *pairs[arg])
        assume(new.shape != value.shape)
        state[key] = new
    else:
        shapes = [(-1,), (1, -1), (value.shape[0] if value.ndim else 1, -1, 1),
                  (*value.shape, 1)]
        new = value.reshape(shapes[arg])
        assume(new.shape != value.shape)
        state[key] = new


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_state_dicts_never_load_silently(data):
    layout = data.draw(st.sampled_from(sorted(CASES)))
    name, variables, state = reference(layout)
    mutated = dict(state)
    for kind, key, arg in data.draw(st.lists(mutation(state), min_size=1, max_size=3)):
        apply(mutated, kind, key, arg)
    try:
        loaded = torch_to_flax(mutated, name)
    except ConversionError as e:
        assert e.problems
        event("refused")
        return
    event("loaded (identical)")
    # Loaded without complaint: no key was invented (a renamed or duplicated key must not be
    # ignored; only num_batches_tracked may go missing) and the weights are exactly the
    # reference (e.g. a Linear weight given the unit axes of a 1x1 conv).
    assert set(mutated) <= set(state)
    assert all(k.endswith("num_batches_tracked") for k in set(state) - set(mutated))
    got, want = flatten(loaded), flatten(variables)
    assert got.keys() == want.keys()
    assert all(got[p].tobytes() == want[p].tobytes() and got[p].shape == want[p].shape
               for p in want)
