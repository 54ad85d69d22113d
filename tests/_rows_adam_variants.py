"""Adam variants (AdaBelief, AdaMaxW, Adan, RAdam, Yogi, NovoGrad, optimistic methods): their
bit-for-bit rows, their contract-table entries and their out-of-range arguments.

`optimistic_adam` is optax's deprecated alias: both libraries warn at every call, so its rows and
entries build it with the warning silenced (`silenced`); the warning itself is
checked in `tests/test_adam_variants.py`.
"""

import warnings
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
from _bitwise import BF16, decay_mask, same, sparse_grads

import gradtx


def silenced(factory: Callable, *args: Any, **kwargs: Any) -> Any:
    """`factory(*args, **kwargs)` without the DeprecationWarning of `optimistic_adam`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return factory(*args, **kwargs)


ROWS: list = [
    # ------------------------------------------------------------------ optimizer aliases
    same("adabelief", lambda m: m.adabelief(1e-2)),
    same("adabelief_nesterov", lambda m: m.adabelief(1e-2, b1=0.8, b2=0.99, eps=1e-8, eps_root=0.0, nesterov=True)),
    same("adamaxw", lambda m: m.adamaxw(1e-2)),
    same("adamaxw_mask_sparse", lambda m: m.adamaxw(1e-2, b1=0.8, weight_decay=0.1, mask=decay_mask), sparse_grads),
    same("adan", lambda m: m.adan(1e-2)),
    same("adan_wd_mask_schedule", lambda m: m.adan(
        m.linear_schedule(1e-2, 1e-3, 20), b1=0.9, b2=0.8, b3=0.95, eps_root=0.0, weight_decay=0.05, mask=decay_mask)),
    same("radam", lambda m: m.radam(1e-2)),
    same("radam_nesterov_threshold4", lambda m: m.radam(1e-2, b2=0.99, eps_root=1e-8, threshold=4.0, nesterov=True)),
    same("yogi", lambda m: m.yogi(1e-2)),
    same("novograd", lambda m: m.novograd(1e-2)),
    same("novograd_wd", lambda m: m.novograd(1e-2, b1=0.5, b2=0.9, eps=1e-8, eps_root=1e-6, weight_decay=0.01)),
    same("optimistic_gradient_descent", lambda m: m.optimistic_gradient_descent(1e-2)),
    same("optimistic_gradient_descent_options", lambda m: m.optimistic_gradient_descent(
        m.exponential_decay(1e-2, 5, 0.5), alpha=0.5, beta=2.0)),
    same("optimistic_adam_v2", lambda m: m.optimistic_adam_v2(1e-2)),
    same("optimistic_adam_v2_options", lambda m: m.optimistic_adam_v2(
        m.linear_schedule(1e-2, 1e-3, 20), alpha=0.5, beta=0.25, b1=0.8, eps_root=1e-8, mu_dtype=BF16, nesterov=False)),
    same("optimistic_adam", lambda m: silenced(m.optimistic_adam, 1e-2)),
    same("optimistic_adam_options", lambda m: silenced(m.optimistic_adam, 1e-2, 0.3, 0.8, 0.99, nesterov=False)),
    # ------------------------------------------------------------------ transformations
    same("scale_by_belief_options", lambda m: m.chain(
        m.scale_by_belief(0.5, 0.9, 1e-6, 1e-8, nesterov=True), m.scale(-0.05)), sparse_grads),
    same("scale_by_adan_options", lambda m: m.chain(m.scale_by_adan(0.9, 0.8, 0.95, 1e-6, 1e-8), m.scale(-0.05))),
    same("scale_by_radam_options", lambda m: m.chain(
        m.scale_by_radam(0.8, 0.9, 1e-6, 1e-8, threshold=6.5, nesterov=True), m.scale(-0.05)), sparse_grads),
    same("scale_by_yogi_options", lambda m: m.chain(m.scale_by_yogi(0.8, 0.9, 1e-4, 1e-8, 0.5), m.scale(-0.05)),
         sparse_grads),
    same("scale_by_novograd_mu_bf16", lambda m: m.chain(
        m.scale_by_novograd(0.8, 0.5, 1e-6, 1e-8, weight_decay=0.1, mu_dtype=BF16), m.scale(-0.01))),
    same("scale_by_optimistic_gradient_options", lambda m: m.chain(
        m.scale_by_optimistic_gradient(0.7, 0.3), m.scale(-0.05)), sparse_grads),
]

OPTIMIZERS: dict[str, Callable[[], gradtx.GradientTransformation]] = {
    "adabelief": lambda: gradtx.adabelief(0.05),
    "adamaxw": lambda: gradtx.adamaxw(0.05, weight_decay=1e-4),
    "adan": lambda: gradtx.adan(0.05),
    "radam": lambda: gradtx.radam(0.05),
    "yogi": lambda: gradtx.yogi(0.05),
    "novograd": lambda: gradtx.novograd(0.01),
    "optimistic_gradient_descent": lambda: gradtx.optimistic_gradient_descent(0.1),
    "optimistic_adam_v2": lambda: gradtx.optimistic_adam_v2(0.05),
    "optimistic_adam": lambda: silenced(gradtx.optimistic_adam, 0.05),
}


def _schedule(count: Any) -> Any:
    return 0.1 * jnp.ones([])


def _quiet(factory: Callable) -> Callable:
    return lambda **kwargs: silenced(factory, **kwargs)


INVALID: list = [
    (gradtx.adabelief, {"learning_rate": -1e-3}, "learning_rate"),
    (gradtx.adabelief, {"learning_rate": 1e-3, "b1": 1.0}, "b1"),
    (gradtx.scale_by_belief, {"eps_root": -1e-16}, "eps_root"),
    (gradtx.scale_by_belief, {"nesterov": 1}, "nesterov"),
    (gradtx.adamaxw, {"learning_rate": 1e-3, "weight_decay": -0.1}, "weight_decay"),
    (gradtx.adan, {"learning_rate": 1e-3, "b3": 1.5}, "b3"),
    (gradtx.scale_by_adan, {"eps": -1.0}, "eps"),
    (gradtx.radam, {"learning_rate": 1e-3, "threshold": 3.0}, "threshold"),
    (gradtx.scale_by_radam, {"b2": 1.0}, "b2"),
    (gradtx.yogi, {"learning_rate": 1e-3, "eps": -1e-3}, "eps"),
    (gradtx.scale_by_yogi, {"initial_accumulator_value": -1.0}, "initial_accumulator_value"),
    (gradtx.novograd, {"learning_rate": 1e-3, "b1": 1.5}, "b1"),
    (gradtx.novograd, {"learning_rate": 1e-3, "weight_decay": _schedule}, "weight_decay"),
    (gradtx.scale_by_novograd, {"mu_dtype": jnp.int32}, "mu_dtype"),
    (gradtx.optimistic_gradient_descent, {"learning_rate": 1e-3, "alpha": -1.0}, "alpha"),
    (gradtx.optimistic_gradient_descent, {"learning_rate": 1e-3, "beta": _schedule}, "beta"),
    (gradtx.scale_by_optimistic_gradient, {"beta": float("nan")}, "beta"),
    (gradtx.optimistic_adam_v2, {"learning_rate": 1e-3, "b1": -0.1}, "b1"),
    (gradtx.optimistic_adam_v2, {"learning_rate": 1e-3, "alpha": "1"}, "alpha"),
    (_quiet(gradtx.optimistic_adam), {"learning_rate": _schedule}, "learning_rate"),
    (_quiet(gradtx.optimistic_adam), {"learning_rate": 1e-3, "optimism": -1.0}, "optimism"),
]
