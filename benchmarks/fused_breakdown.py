"""Where the fused Adam step's time goes above the floor, piece by piece (1,000 leaves of 1,000).

Each program below is the floor (`p - 1e-3 g` leaf by leaf, params donated) plus one more piece of
the fused path, written out by hand; they are timed interleaved in one process (15 blocks of 20
calls, medians of the ratios to the floor's adjacent blocks):

* `concat`: a flat state updated with the concatenation of the 1,000 gradients (`s + concat(g)`);
* `moments`: Adam's two moments computed from that concatenation;
* `dyn_from_g`: the params cut out of `concat(g)` at opaque offsets (as the fused path cuts updates);
* `full`: the whole fused Adam program (moments, update, cut at opaque offsets).

(Cutting `concat(g)` at static offsets is no reference: XLA folds such a slice back into the
operand it came from, and the kernels become 1,000 distinct ones.)

Usage: `python benchmarks/fused_breakdown.py [names...]`; prints the floor's time, each ratio and the
1-minute load average.
"""

import os
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from gradtx._fused_layout import opaque_offsets

LEAVES, SIZE, RUN = 1_000, 1_000, 8


def _offsets(buffer: jax.Array) -> list[Any]:
    """Opaque start of every leaf, as the fused path computes them (one opaque offset per `RUN` leaves)."""
    bases = opaque_offsets([r * RUN * SIZE for r in range(LEAVES // RUN)], [buffer])
    return [bases[i // RUN] + np.uint32((i % RUN) * SIZE) for i in range(LEAVES)]


def floor(p: list, s: Any, g: list) -> Any:
    return [a - 1e-3 * b for a, b in zip(p, g)], s


def concat(p: list, s: Any, g: list) -> Any:
    return [a - 1e-3 * b for a, b in zip(p, g)], s + lax.concatenate(g, 0)


def moments(p: list, s: Any, g: list) -> Any:
    m, v = s
    flat = lax.concatenate(g, 0)
    return [a - 1e-3 * b for a, b in zip(p, g)], (0.9 * m + 0.1 * flat, 0.999 * v + 0.001 * flat * flat)


def dyn_from_g(p: list, s: Any, g: list) -> Any:
    flat = lax.concatenate(g, 0)
    starts = _offsets(flat)
    return [p[i] - 1e-3 * lax.dynamic_slice(flat, (starts[i],), (SIZE,)) for i in range(LEAVES)], s


def full(p: list, s: Any, g: list) -> Any:
    m, v = s
    flat = lax.concatenate(g, 0)
    m = 0.9 * m + 0.1 * flat
    v = 0.999 * v + 0.001 * flat * flat
    u = -1e-3 * m / (jnp.sqrt(v) + 1e-8)
    starts = _offsets(u)
    return [p[i] + lax.dynamic_slice(u, (starts[i],), (SIZE,)) for i in range(LEAVES)], (m, v)


PROGRAMS: dict[str, Callable[..., Any]] = {
    "floor": floor, "concat": concat, "moments": moments, "dyn_from_g": dyn_from_g,
    "full": full,
}


def _state(name: str) -> Any:
    def flat() -> jax.Array:  # a fresh buffer each: donated state leaves must not alias
        return jnp.zeros(LEAVES * SIZE, jnp.float32)

    if name == "concat":
        return flat()
    return (flat(), flat()) if name in ("moments", "full") else jnp.zeros(1, jnp.float32)


def main(argv: list[str] | None = None) -> dict[str, float]:
    names = (argv if argv is not None else sys.argv[1:]) or ["floor", "concat", "moments", "dyn_from_g", "full"]
    if "floor" not in names:
        names = ["floor", *names]
    rng = np.random.default_rng(0)
    params = [jnp.asarray(0.1 * rng.standard_normal(SIZE), jnp.float32) for _ in range(LEAVES)]
    grads = [jnp.asarray(0.01 * rng.standard_normal(SIZE), jnp.float32) for _ in range(LEAVES)]

    def runner(name: str) -> Callable[[int], None]:
        compiled = jax.jit(PROGRAMS[name], donate_argnums=(0, 1)).lower(params, _state(name), grads).compile()
        live = [[jnp.copy(x) for x in params], _state(name)]

        def run(calls: int) -> None:
            p, s = live
            for _ in range(calls):
                p, s = compiled(p, s, grads)
            jax.block_until_ready(p)
            live[0], live[1] = p, s

        return run

    runs = {name: runner(name) for name in names}
    for run in runs.values():
        run(5)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(15):
        for name, run in runs.items():
            t0 = time.perf_counter()
            run(20)
            times[name].append((time.perf_counter() - t0) / 20)
    base = np.asarray(times["floor"])
    ratios = {name: float(np.median(np.asarray(t) / base)) for name, t in times.items()}
    load = f"{os.getloadavg()[0]:.2f}"
    print(f"floor {1e3 * np.median(base):.3f} ms per step; over the floor: "
          + ", ".join(f"{k} x{v:.3f}" for k, v in ratios.items() if k != "floor") + f"; load average {load}")
    return ratios


if __name__ == "__main__":
    main()
