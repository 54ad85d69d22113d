"""Factored and layer-wise optimizers: bit-for-bit rows, contract entries, invalid arguments.

Adafactor (`adafactor`, `scale_by_factored_rms`, `scale_by_param_block_rms`), the param-block
norm scaling, SM3, Adadelta, Fromage and LARS.

The table's leaves are `(3, 4)`, `(5,)` and `()`. With optax's default
`min_dim_size_to_factor=128` no leaf is factored, so the adafactor rows also run with
`min_dim_size_to_factor` 2 and 3, which factor the `(3, 4)` leaves (over their axes 0 and 1).

optax's SM3 cannot update a scalar leaf (it indexes the empty list of axis accumulators), so the
SM3 rows hand the scalar leaves to SGD through `multi_transform`; gradtx's own behaviour on
scalars is checked in `tests/test_factored.py`.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from _bitwise import BF16, decay_mask, same, sparse_grads

import gradtx


def _capped_decay(step: Any, exponent: Any) -> Any:
    # Zhai et al.'s capped schedule: one function object, shared by both libraries' rows
    return jnp.minimum(1.0 - (step + 1.0) ** (-exponent), 0.9)


def _sm3_labels(params: Any) -> Any:
    return jax.tree.map(lambda x: "sm3" if jnp.ndim(x) > 0 else "sgd", params)


def _sm3_rows(m: Any, tx: Any) -> Any:
    """`tx` on the non-scalar leaves, SGD on the scalar ones (optax's SM3 fails on scalars)."""
    return m.multi_transform({"sm3": tx, "sgd": m.sgd(1e-2)}, _sm3_labels)


ROWS = [
    # ------------------------------------------------------------------ Adafactor
    same("adafactor", lambda m: m.adafactor(1e-2)),
    same("adafactor_factored", lambda m: m.adafactor(1e-2, min_dim_size_to_factor=3)),
    same("adafactor_options", lambda m: m.adafactor(
        m.linear_schedule(5e-2, 1e-2, 20), min_dim_size_to_factor=2, decay_rate=0.5,
        clipping_threshold=0.5, momentum=0.9, weight_decay_rate=1e-3, weight_decay_mask=decay_mask, eps=1e-20)),
    same("adafactor_bf16_momentum", lambda m: m.adafactor(
        1e-2, min_dim_size_to_factor=2, momentum=0.8, dtype_momentum=BF16, weight_decay_rate=m.exponential_decay(
            1e-2, 5, 0.5))),
    same("adafactor_bare", lambda m: m.adafactor(
        multiply_by_parameter_scale=False, clipping_threshold=None, factored=False), sparse_grads),
    same("scale_by_factored_rms", lambda m: m.chain(
        m.scale_by_factored_rms(min_dim_size_to_factor=2, decay_rate=0.6, epsilon=1e-12), m.scale(-1e-2))),
    same("scale_by_factored_rms_capped", lambda m: m.chain(
        m.scale_by_factored_rms(min_dim_size_to_factor=3, decay_rate_fn=_capped_decay), m.scale(-1e-2))),
    # ------------------------------------------------------------------ param-block scalings
    same("scale_by_param_block_rms", lambda m: m.chain(m.scale_by_param_block_rms(), m.scale(-1e-2))),
    same("scale_by_param_block_rms_floor", lambda m: m.chain(
        m.scale_by_param_block_rms(min_scale=0.9), m.scale(-1e-2)), sparse_grads),
    same("scale_by_param_block_norm", lambda m: m.chain(m.scale_by_param_block_norm(), m.scale(-1e-2))),
    same("scale_by_param_block_norm_floor", lambda m: m.chain(
        m.scale_by_param_block_norm(min_scale=2.0), m.scale(-1e-2)), sparse_grads),
    # ------------------------------------------------------------------ SM3
    same("sm3", lambda m: _sm3_rows(m, m.sm3(5e-2))),
    same("sm3_no_momentum", lambda m: _sm3_rows(m, m.sm3(1e-1, momentum=0.0)), sparse_grads),
    same("scale_by_sm3", lambda m: _sm3_rows(m, m.chain(m.scale_by_sm3(b1=0.5, b2=0.9, eps=1e-6), m.scale(-5e-2))),
         sparse_grads),
    # ------------------------------------------------------------------ Adadelta
    same("adadelta", lambda m: m.adadelta(10.0)),
    same("adadelta_options", lambda m: m.adadelta(
        m.linear_schedule(20.0, 5.0, 20), rho=0.5, eps=1e-4, weight_decay=1e-2, weight_decay_mask=decay_mask)),
    same("adadelta_no_learning_rate", lambda m: m.adadelta(), sparse_grads),
    same("scale_by_adadelta", lambda m: m.chain(m.scale_by_adadelta(rho=0.8, eps=1e-5), m.scale(-5.0))),
    # ------------------------------------------------------------------ Fromage
    same("fromage", lambda m: m.fromage(1e-2)),
    same("fromage_schedule", lambda m: m.fromage(m.cosine_decay_schedule(5e-2, 20), min_norm=0.5), sparse_grads),
    # ------------------------------------------------------------------ LARS
    same("lars", lambda m: m.lars(0.5)),
    same("lars_options", lambda m: m.lars(
        m.exponential_decay(0.1, 5, 0.5), weight_decay=1e-3, weight_decay_mask=decay_mask, trust_coefficient=0.02,
        eps=1e-6, trust_ratio_mask=decay_mask, momentum=0.8, nesterov=True), sparse_grads),
]

OPTIMIZERS: dict[str, Callable[[], gradtx.GradientTransformation]] = {
    "adafactor": lambda: gradtx.adafactor(5e-2),
    "adafactor_factored": lambda: gradtx.adafactor(5e-2, min_dim_size_to_factor=2, momentum=0.9),
    "sm3": lambda: gradtx.sm3(0.3),
    "adadelta": lambda: gradtx.adadelta(10.0),
    "fromage": lambda: gradtx.fromage(0.1),
    "lars": lambda: gradtx.lars(0.1, trust_coefficient=0.1),
}

INVALID: list[tuple[Callable, dict, str]] = [
    (gradtx.adafactor, {"learning_rate": -1e-2}, "learning_rate"),
    (gradtx.adafactor, {"min_dim_size_to_factor": -1}, "min_dim_size_to_factor"),
    (gradtx.adafactor, {"min_dim_size_to_factor": 2.5}, "min_dim_size_to_factor"),
    (gradtx.adafactor, {"decay_rate": -0.8}, "decay_rate"),
    (gradtx.adafactor, {"decay_offset": -3}, "decay_offset"),
    (gradtx.adafactor, {"multiply_by_parameter_scale": 1}, "multiply_by_parameter_scale"),
    (gradtx.adafactor, {"clipping_threshold": 0.0}, "clipping_threshold"),
    (gradtx.adafactor, {"momentum": 1.5}, "momentum"),
    (gradtx.adafactor, {"dtype_momentum": jnp.int32}, "dtype_momentum"),
    (gradtx.adafactor, {"weight_decay_rate": -1e-3}, "weight_decay_rate"),
    (gradtx.adafactor, {"eps": float("nan")}, "eps"),
    (gradtx.adafactor, {"factored": "yes"}, "factored"),
    (gradtx.scale_by_factored_rms, {"decay_rate": float("inf")}, "decay_rate"),
    (gradtx.scale_by_factored_rms, {"step_offset": 1.5}, "step_offset"),
    (gradtx.scale_by_factored_rms, {"epsilon": -1e-30}, "epsilon"),
    (gradtx.scale_by_factored_rms, {"decay_rate_fn": 0.8}, "decay_rate_fn"),
    (gradtx.scale_by_param_block_rms, {"min_scale": -1e-3}, "min_scale"),
    (gradtx.scale_by_param_block_norm, {"min_scale": float("nan")}, "min_scale"),
    (gradtx.sm3, {"learning_rate": -0.1}, "learning_rate"),
    (gradtx.sm3, {"learning_rate": 0.1, "momentum": 1.1}, "momentum"),
    (gradtx.scale_by_sm3, {"b1": -0.1}, "b1"),
    (gradtx.scale_by_sm3, {"b2": 2.0}, "b2"),
    (gradtx.scale_by_sm3, {"eps": -1.0}, "eps"),
    (gradtx.adadelta, {"learning_rate": -1.0}, "learning_rate"),
    (gradtx.adadelta, {"rho": 1.5}, "rho"),
    (gradtx.adadelta, {"weight_decay": -0.1}, "weight_decay"),
    (gradtx.scale_by_adadelta, {"eps": -1e-6}, "eps"),
    (gradtx.fromage, {"learning_rate": -1e-2}, "learning_rate"),
    (gradtx.fromage, {"learning_rate": 1e-2, "min_norm": -1.0}, "min_norm"),
    (gradtx.lars, {"learning_rate": 0.1, "momentum": -0.5}, "momentum"),
    (gradtx.lars, {"learning_rate": 0.1, "nesterov": "no"}, "nesterov"),
    (gradtx.lars, {"learning_rate": 0.1, "trust_coefficient": -1.0}, "trust_coefficient"),
    (gradtx.lars, {"learning_rate": 0.1, "eps": -1.0}, "eps"),
    (gradtx.lars, {"learning_rate": 0.1, "weight_decay": -1.0}, "weight_decay"),
]
