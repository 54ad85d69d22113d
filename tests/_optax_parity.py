"""Shared helpers of the transformation tests: a mixed pytree and a step-by-step optax comparison."""

import chex
import jax
import jax.numpy as jnp
import numpy as np

RTOL, ATOL = 1e-5, 1e-6


def make_tree(key, dtype=jnp.float32, scale=1.0):
    """A mixed pytree: a (3, 4) matrix, a (5,) vector and a nested scalar leaf."""
    k1, k2, k3 = jax.random.split(key, 3)
    return {
        "w": scale * jax.random.normal(k1, (3, 4), dtype),
        "b": scale * jax.random.normal(k2, (5,), dtype),
        "nested": {"s": scale * jax.random.normal(k3, (), dtype)},
    }


_REFERENCE = {}


def _seeded_grads(i):
    return make_tree(jax.random.key(i))


def run_against_optax(
    variant, ours, ref, case, steps=40, rtol=RTOL, atol=ATOL, param_step=0.0, make_grads=_seeded_grads,
    check_state=None,
):
    """Compare `ours` with optax's `ref` step by step on seeded random gradients.

    Step `i` feeds the gradients `make_grads(i)` (default: `make_tree` with key `i`); the params
    move by `-param_step * update` after each step (0 keeps them fixed); `check_state(g, state)`,
    when given, is called with each step's gradients and our new state. optax's trajectory
    (gradients, params seen, updates) is computed once per `(case, steps, param_step)` and shared
    by the jit and no-jit variants. Returns the largest |ours - optax| / (|optax| + atol).
    """
    cache_key = (case, steps, param_step)
    if cache_key not in _REFERENCE:
        params = make_tree(jax.random.key(1234))
        ref_update = jax.jit(ref.update)
        s_ref = ref.init(params)
        trajectory = []
        for i in range(steps):
            g = make_grads(i)
            u, s_ref = ref_update(g, s_ref, params)
            trajectory.append((g, params, u))
            if param_step:
                params = jax.tree.map(lambda p, u: p - param_step * u, params, u)
        _REFERENCE[cache_key] = trajectory
    trajectory = _REFERENCE[cache_key]
    update = variant(ours.update)
    s_ours = ours.init(trajectory[0][1])
    worst = 0.0
    for g, params, u_ref in trajectory:
        u_ours, s_ours = update(g, s_ours, params)
        chex.assert_trees_all_close(u_ours, u_ref, rtol=rtol, atol=atol)
        if check_state is not None:
            check_state(g, s_ours)
        for x, y in zip(jax.tree.leaves(u_ours), jax.tree.leaves(u_ref), strict=True):
            x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
            worst = max(worst, float(np.max(np.abs(x - y) / (np.abs(y) + atol))))
    return worst
