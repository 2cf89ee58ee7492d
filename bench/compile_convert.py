"""JAX compile time of the train step, and converter time for a deep network.

    python bench/compile_convert.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    import jax
    import jax.numpy as jnp
    import optax

    import se_torch_ref.models as tm
    from se_flax import flax_to_torch, torch_to_flax
    from se_flax.implementation import resolve_implementation
    from se_flax.models import create_model

    for name in ("resnet50", "se_resnet50"):
        model = create_model(name, num_classes=10, stem="cifar")
        x, y = jnp.zeros((32, 32, 32, 3)), jnp.zeros((32,), jnp.int32)
        variables = model.init(jax.random.PRNGKey(0), x[:1])
        tx = optax.sgd(0.1, momentum=0.9)

        def step(params, stats, opt, model=model, x=x, y=y, tx=tx):
            def loss_fn(p):
                logits, new = model.apply({"params": p, "batch_stats": stats}, x, train=True,
                                          mutable=["batch_stats"])
                return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), new
            (_, new), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
            updates, opt = tx.update(grads, opt, params)
            return optax.apply_updates(params, updates), new, opt

        args = (variables["params"], variables["batch_stats"], tx.init(variables["params"]))
        t0 = time.perf_counter()
        options = resolve_implementation().compiler_options() or None
        lowered = jax.jit(step, compiler_options=options).lower(*args)
        t1 = time.perf_counter()
        lowered.compile()
        t2 = time.perf_counter()
        print(f"{name}: trace+lower {t1 - t0:.1f}s, XLA compile {t2 - t1:.1f}s "
              f"(train step, batch 32, CIFAR input)")

    state = tm.create_model("se_resnet152").state_dict()
    t0 = time.perf_counter()
    variables = torch_to_flax(state, "se_resnet152")
    t1 = time.perf_counter()
    back = flax_to_torch(variables, "se_resnet152")
    t2 = time.perf_counter()
    same = all((back[k] == state[k].numpy()).all() for k in state)
    print(f"se_resnet152 ({len(state)} tensors): torch→flax {t1 - t0:.2f}s, flax→torch "
          f"{t2 - t1:.2f}s, round trip bit-exact: {same}")


if __name__ == "__main__":
    main()
