"""Sign-based and step-size-free optimizers: bit-for-bit rows, contract entries, invalid arguments.

Rprop, signSGD, Signum, noisy SGD, Polyak's step (`scale_by_polyak`, `polyak_sgd`), DoG
(`scale_by_distance_over_gradients`) and `normalize_by_update_norm`.

Two rows need a wrapper so that the table's `run` can drive them:

* Polyak's step needs `update(..., value=f)`, which `run` does not pass: `_with_value` hands it
  the value of a fixed function of the params (the same on both sides, so the values are equal
  bit for bit whenever the params are). `tests/test_sign_free.py` also compares a trajectory
  whose value and gradients come from one objective.
* DoG returns a `(1,)` update for a scalar params leaf in optax (gradtx keeps the leaf's shape),
  so its rows apply it to the non-scalar leaves only (`masked`); the scalar case is in
  `tests/test_sign_free.py`. optax's DoG also relies on implicit rank promotion (a `(1,)` step
  size times each leaf), which `tests/conftest.py` turns into an error: its rows are traced with
  rank promotion allowed, on both sides.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from _bitwise import BF16, same, sparse_grads

import gradtx


def _value(params: Any) -> jax.Array:
    # a double-well energy plus an offset (the gap f - f_min is mostly positive)
    return 4.0 + sum(jnp.sum(x * x * (0.25 * x * x - 0.5)) for x in jax.tree.leaves(params))


def _with_value(m: Any, tx: Any) -> Any:
    """`tx` whose `update` receives `value=_value(params)` (for the table's `run`)."""

    def update(updates, state, params=None):
        return tx.update(updates, state, params, value=_value(params))

    return m.GradientTransformation(tx.init, update)


def _non_scalar(params: Any) -> Any:
    return jax.tree.map(lambda x: jnp.ndim(x) > 0, params)


def _rank_promotion_allowed(m: Any, tx: Any) -> Any:
    """`tx` traced with implicit rank promotion allowed (tests/conftest.py raises on it).

    optax's DoG multiplies its `(1,)` step size into every leaf, `(1,) * (3, 4)`.
    """

    def update(updates, state, params=None):
        with jax.numpy_rank_promotion("allow"):
            return tx.update(updates, state, params)

    return m.GradientTransformation(tx.init, update)


ROWS = [
    # ------------------------------------------------------------------ Rprop
    same("rprop", lambda m: m.rprop(1e-2)),
    same("rprop_options", lambda m: m.rprop(0.05, eta_minus=0.3, eta_plus=1.5, min_step_size=1e-3,
                                            max_step_size=0.1), sparse_grads),
    same("scale_by_rprop", lambda m: m.chain(m.scale_by_rprop(0.02, 0.4, 1.3, 1e-4, 0.5), m.scale(-1.0))),
    # ------------------------------------------------------------------ sign-based SGD
    same("sign_sgd", lambda m: m.sign_sgd(1e-2), sparse_grads),
    same("sign_sgd_schedule", lambda m: m.sign_sgd(m.linear_schedule(1e-2, 1e-3, 20))),
    same("signum", lambda m: m.signum(1e-2)),
    same("signum_bf16", lambda m: m.signum(1e-2, beta=0.8, accumulator_dtype=BF16), sparse_grads),
    # ------------------------------------------------------------------ noisy SGD
    # one row only: drawing the noise makes it the slowest row to compile (~15 s)
    same("noisy_sgd", lambda m: m.noisy_sgd(m.exponential_decay(1e-2, 5, 0.5), eta=0.1, gamma=1.0, key=7)),
    # ------------------------------------------------------------------ Polyak step size
    same("polyak_sgd", lambda m: _with_value(m, m.polyak_sgd(max_learning_rate=0.04))),
    same("polyak_sgd_options", lambda m: _with_value(m, m.polyak_sgd(
        max_learning_rate=0.06, scaling=m.linear_schedule(1.0, 0.5, 10), f_min=-10.0, eps=1e-3, variant="sps+"))),
    same("scale_by_polyak", lambda m: m.chain(_with_value(m, m.scale_by_polyak(f_min=1.0, max_learning_rate=0.03)),
                                              m.scale(-0.2))),
    # ------------------------------------------------------------------ DoG
    same("scale_by_distance_over_gradients", lambda m: _rank_promotion_allowed(m, m.chain(
        m.masked(m.scale_by_distance_over_gradients(), _non_scalar), m.scale(-0.1)))),
    same("scale_by_distance_over_gradients_options", lambda m: _rank_promotion_allowed(m, m.masked(
        m.scale_by_distance_over_gradients(reps_rel=1e-2, eps=1e-6, global_scale=-0.5), _non_scalar)),
        lambda p, i: jax.tree.map(lambda x: jnp.where(jnp.ndim(x) > 0, x * (x * x - 1.0) + 0.02 * i, 0.0), p)),
    # ------------------------------------------------------------------ normalization
    same("normalize_by_update_norm", lambda m: m.normalize_by_update_norm(scale_factor=-0.05)),
    same("normalize_by_update_norm_lr", lambda m: m.chain(
        m.normalize_by_update_norm(), m.scale_by_learning_rate(m.cosine_decay_schedule(0.1, 20)))),
    same("normalize_by_update_norm_eps0", lambda m: m.chain(
        m.normalize_by_update_norm(2.0, eps=0.0), m.sgd(0.02)), sparse_grads),
]

OPTIMIZERS: dict[str, Callable[[], gradtx.GradientTransformation]] = {
    "rprop": lambda: gradtx.rprop(1e-2),
    "sign_sgd": lambda: gradtx.sign_sgd(0.02),
    "signum": lambda: gradtx.signum(0.02),
    "noisy_sgd": lambda: gradtx.noisy_sgd(0.1, key=jax.random.key(0)),
    "polyak_sgd": lambda: gradtx.polyak_sgd(),
}

INVALID: list[tuple[Callable, dict, str]] = [
    (gradtx.rprop, {"learning_rate": 0.0}, "learning_rate"),
    (gradtx.rprop, {"learning_rate": 0.1, "eta_minus": 1.5}, "eta_minus"),
    (gradtx.rprop, {"learning_rate": 0.1, "eta_plus": 0.9}, "eta_plus"),
    (gradtx.rprop, {"learning_rate": 0.1, "min_step_size": -1.0}, "min_step_size"),
    (gradtx.rprop, {"learning_rate": 0.1, "min_step_size": 1.0, "max_step_size": 0.5}, "max_step_size"),
    (gradtx.scale_by_rprop, {"learning_rate": lambda count: 0.1}, "learning_rate"),
    (gradtx.sign_sgd, {"learning_rate": -1.0}, "learning_rate"),
    (gradtx.signum, {"learning_rate": 0.1, "beta": 1.0}, "beta"),
    (gradtx.signum, {"learning_rate": 0.1, "accumulator_dtype": jnp.int32}, "accumulator_dtype"),
    (gradtx.noisy_sgd, {"learning_rate": 0.1, "eta": -0.1, "key": 0}, "eta"),
    (gradtx.noisy_sgd, {"learning_rate": 0.1, "gamma": float("nan"), "key": 0}, "gamma"),
    (gradtx.noisy_sgd, {"learning_rate": 0.1, "key": 0, "seed": 1}, "seed"),
    (gradtx.noisy_sgd, {"learning_rate": 0.1, "key": "0"}, "key"),
    (gradtx.polyak_sgd, {"max_learning_rate": -1.0}, "max_learning_rate"),
    (gradtx.polyak_sgd, {"scaling": -1.0}, "scaling"),
    (gradtx.polyak_sgd, {"f_min": float("inf")}, "f_min"),
    (gradtx.polyak_sgd, {"eps": -1e-3}, "eps"),
    (gradtx.polyak_sgd, {"variant": "sps++"}, "variant"),
    (gradtx.scale_by_polyak, {"variant": "SPS"}, "variant"),
    (gradtx.scale_by_distance_over_gradients, {"reps_rel": 0.0}, "reps_rel"),
    (gradtx.scale_by_distance_over_gradients, {"eps": -1.0}, "eps"),
    (gradtx.scale_by_distance_over_gradients, {"param_dtype": jnp.int32}, "param_dtype"),
    (gradtx.scale_by_distance_over_gradients, {"global_scale": float("nan")}, "global_scale"),
    (gradtx.normalize_by_update_norm, {"scale_factor": 0.0}, "scale_factor"),
    (gradtx.normalize_by_update_norm, {"eps": -1.0}, "eps"),
]
