"""How cheap can the compile of a fused SGD-with-momentum step on 1,000 leaves get?

Issue 17 asks the fused path to compile in at most half of optax's time. This script measures,
each in a fresh process (no warm caches) and in alternating order, the lower + compile time of
the training step (`tx.update` + `apply_updates`, params and state donated, as in `run.py`) on
1,000 leaves of 1,000 floats for:

* `optax`: `optax.sgd(1e-3, momentum=0.9, nesterov=True)`;
* `fused`: `gradtx.fusion.maybe_fuse(gradtx.sgd(1e-3, momentum=0.9, nesterov=True))`;
* `floor`: `gradtx.scale(-1e-3)`, the stateless step `p - 1e-3 * g` (`run.py`'s floor);
* `floor+concat`: the floor plus a flat state buffer updated with the concatenated gradients
  (`t <- 0.9 t + concat(g)`): the least any design with one flat momentum buffer compiles,
  since every param needs its own kernel and the flat state needs the gradients in one buffer;
* `concat`: the gradient concatenation alone.

Usage: `python benchmarks/compile_floor.py [--repeats 5]`; prints medians, ratios to optax and
the 1-minute load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any, NamedTuple

PROGRAMS = ("optax", "fused", "floor", "floor+concat", "concat")
LEAVES, SIZE = 1_000, 1_000


class _FlatState(NamedTuple):
    trace: Any


def _flat_momentum_floor() -> Any:
    """`p - 1e-3 g` per leaf, plus a flat buffer `t <- 0.9 t + concat(g)` as the state."""
    import jax.numpy as jnp
    from jax import lax

    import gradtx

    def init(params: Any) -> _FlatState:
        return _FlatState(jnp.zeros((LEAVES * SIZE,), jnp.float32))

    def update(updates: Any, state: _FlatState, params: Any = None) -> tuple[Any, _FlatState]:
        import jax

        flat = lax.concatenate([jnp.ravel(g) for g in jax.tree.leaves(updates)], 0)
        return jax.tree.map(lambda g: -1e-3 * g, updates), _FlatState(0.9 * state.trace + flat)

    return gradtx.GradientTransformation(init, update)


def measure(name: str) -> dict[str, float]:
    """Lower + compile time of one program, in this (fresh) process."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax import lax

    rng = np.random.default_rng(0)
    params = {f"l{i:04d}": jnp.asarray(rng.standard_normal(SIZE), jnp.float32) for i in range(LEAVES)}
    grads = jax.tree.map(lambda p: 0.01 * p, params)
    if name == "concat":
        fn = jax.jit(lambda g: lax.concatenate(list(jax.tree.leaves(g)), 0))
        t0 = time.perf_counter()
        lowered = fn.lower(grads)
        t1 = time.perf_counter()
        lowered.compile()
        return {"lower_s": t1 - t0, "compile_s": time.perf_counter() - t1}
    if name == "optax":
        import optax

        tx, apply = optax.sgd(1e-3, momentum=0.9, nesterov=True), optax.apply_updates
    else:
        import gradtx
        from gradtx import fusion

        apply = gradtx.apply_updates
        tx = {
            "fused": lambda: fusion.maybe_fuse(gradtx.sgd(1e-3, momentum=0.9, nesterov=True)),
            "floor": lambda: gradtx.scale(-1e-3),
            "floor+concat": _flat_momentum_floor,
        }[name]()

    def step(p: Any, s: Any, g: Any) -> Any:
        u, s = tx.update(g, s, p)
        return apply(p, u), s

    state = jax.eval_shape(tx.init, params)
    t0 = time.perf_counter()
    lowered = jax.jit(step, donate_argnums=(0, 1)).lower(params, state, grads)
    t1 = time.perf_counter()
    lowered.compile()
    return {"lower_s": t1 - t0, "compile_s": time.perf_counter() - t1}


def _load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--one", choices=PROGRAMS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(args.one)))
        return {}
    before = _load_average()
    totals: dict[str, list[float]] = {p: [] for p in PROGRAMS}
    for r in range(args.repeats):
        order = PROGRAMS if r % 2 == 0 else tuple(reversed(PROGRAMS))
        for name in order:
            out = subprocess.run([sys.executable, __file__, "--one", name], check=True, capture_output=True,
                                 text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})
            res = json.loads(out.stdout.strip().splitlines()[-1])
            totals[name].append(res["lower_s"] + res["compile_s"])
    after = _load_average()
    ref = statistics.median(totals["optax"])
    print(f"lower + compile, 1,000 leaves of 1,000, median of {args.repeats} fresh processes; "
          f"load average before {before}, after {after}")
    summary = {}
    for name in PROGRAMS:
        med = statistics.median(totals[name])
        summary[name] = {"median_s": med, "ratio_vs_optax": med / ref, "all_s": totals[name]}
        print(f"  {name:13s} {med:6.3f} s   / optax {med / ref:5.2f}   (runs: "
              f"{', '.join(f'{t:.2f}' for t in totals[name])})")
    return summary


if __name__ == "__main__":
    main()
