"""optax.contrib's Schedule-Free, Muon and SAM: bit-for-bit rows and invalid arguments.

The contract test looks each `OPTIMIZERS` name up at gradtx's top level (for
`inject_hyperparams`), and these names live only in `gradtx.contrib`, as in optax: their
contract properties are checked in `tests/test_contrib_matrix_sf.py` instead.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from _bitwise import BF16, same

import gradtx


def _matrices(params: Any) -> Any:
    return jax.tree.map(lambda x: x.ndim == 2, params)


def _dims(m: Any) -> Any:
    # optax's scale_by_muon needs the dimension numbers of every leaf it sees
    return lambda u: jax.tree.map(lambda x: m.contrib.MuonDimensionNumbers(), u)


def _opaque(m: Any, tx: Any) -> Any:
    """`tx` whose `update` receives `grad_fn` (SAM's opaque mode), for the table's `run`."""

    def grad_fn(p: Any, i: int) -> Any:
        return jax.tree.map(lambda x: x * (x * x - 1.0) + 0.01 * i, p)

    def update(updates, state, params=None):
        return tx.update(updates, state, params, grad_fn=grad_fn)

    return m.GradientTransformation(tx.init, update)


def _sgd(m: Any) -> Any:
    return m.sgd(0.05)


ROWS = [
    same("schedule_free_sgd", lambda m: m.contrib.schedule_free(_sgd(m), 0.05)),
    same(
        "schedule_free_adam_schedule",
        lambda m: m.contrib.schedule_free(
            m.adam(m.warmup_constant_schedule(0.0, 0.01, 5), b1=0.0),
            m.warmup_constant_schedule(0.0, 0.01, 5),
            b1=0.95,
            weight_lr_power=1.0,
        ),
    ),
    same("schedule_free_state_dtype", lambda m: m.contrib.schedule_free(_sgd(m), 0.05, state_dtype=BF16)),
    same("schedule_free_sgd_alias", lambda m: m.contrib.schedule_free_sgd(0.05)),
    same(
        "schedule_free_sgd_warmup_wd",
        lambda m: m.contrib.schedule_free_sgd(0.05, warmup_steps=4, b1=0.8, weight_decay=1e-2),
    ),
    same("schedule_free_adamw", lambda m: m.contrib.schedule_free_adamw(1e-2)),
    same(
        "schedule_free_adamw_options",
        lambda m: m.contrib.schedule_free_adamw(1e-2, warmup_steps=3, b2=0.99, eps=1e-6, weight_decay=1e-3),
    ),
    # Muon: the (3, 4) leaves are matrices (Muon), the others go to AdamW
    same("muon", lambda m: m.contrib.muon(1e-2)),
    same(
        "muon_options",
        lambda m: m.contrib.muon(
            1e-2,
            ns_coeffs="dion",
            beta=0.9,
            weight_decay=1e-2,
            nesterov=False,
            adaptive=True,
            adam_b1=0.8,
            adam_weight_decay=1e-3,
            adam_learning_rate=3e-3,
            consistent_rms=0.2,
        ),
    ),
    same("muon_aol", lambda m: m.contrib.muon(1e-2, ns_steps=4, preconditioning="aol", mu_dtype=BF16)),
    same("muon_schatten", lambda m: m.contrib.muon(1e-2, preconditioning="schatten")),
    same("muon_spectral", lambda m: m.contrib.muon(1e-2, preconditioning="spectral")),
    same(
        "muon_dimension_numbers",
        lambda m: m.contrib.muon(
            1e-2,
            muon_weight_dimension_numbers=lambda p: jax.tree.map(
                lambda x: m.contrib.MuonDimensionNumbers(1, 0) if x.ndim == 2 else None, p
            ),
        ),
    ),
    # SAM, transparent: the table's gradients are taken at the params it holds, as SAM expects
    same("sam", lambda m: m.contrib.sam(m.sgd(0.05), m.sgd(0.1))),
    same(
        "sam_adam_period3_keep_state",
        lambda m: m.contrib.sam(m.adam(1e-2), m.sgd(0.1, momentum=0.9), sync_period=3, reset_state=False),
    ),
    same("sam_opaque", lambda m: _opaque(m, m.contrib.sam(m.adam(1e-2), m.sgd(0.1), opaque_mode=True))),
    same(
        "sam_opaque_period3",
        lambda m: _opaque(m, m.contrib.sam(m.sgd(0.05, momentum=0.9), m.adam(1e-2), sync_period=3, opaque_mode=True)),
    ),
    same("scale_by_muon", lambda m: m.masked(m.contrib.scale_by_muon(weight_dimension_numbers=_dims(m)), _matrices)),
    same(
        "scale_by_muon_options",
        lambda m: m.masked(
            m.contrib.scale_by_muon(ns_coeffs=((3.0, -3.2, 1.2), (3.4445, -4.7750, 2.0315)), ns_steps=2, beta=0.5,
                                    nesterov=False, preconditioning="aol", weight_dimension_numbers=_dims(m)),
            _matrices,
        ),
    ),
]

OPTIMIZERS: dict[str, Callable[[], gradtx.GradientTransformation]] = {}

INVALID: list[tuple[Callable, dict, str]] = [
    (gradtx.contrib.schedule_free, {"base_optimizer": gradtx.sgd(0.1), "learning_rate": -1.0}, "learning_rate"),
    (gradtx.contrib.schedule_free, {"base_optimizer": gradtx.sgd(0.1), "learning_rate": 0.1, "b1": 0.0}, "b1"),
    (gradtx.contrib.schedule_free, {"base_optimizer": gradtx.sgd(0.1), "learning_rate": 0.1, "state_dtype": jnp.int32}, "state_dtype"),
    (gradtx.contrib.schedule_free, {"base_optimizer": 3, "learning_rate": 0.1}, "base_optimizer"),
    (gradtx.contrib.schedule_free_sgd, {"warmup_steps": 0}, "warmup_steps"),
    (gradtx.contrib.schedule_free_sgd, {"weight_decay": -1.0}, "weight_decay"),
    (gradtx.contrib.schedule_free_adamw, {"b2": 1.0}, "b2"),
    (gradtx.contrib.schedule_free_adamw, {"eps": -1.0}, "eps"),
    (gradtx.contrib.schedule_free_adamw, {"b1": 1.5}, "b1"),
    (gradtx.contrib.muon, {"learning_rate": -1.0}, "learning_rate"),
    (gradtx.contrib.muon, {"learning_rate": 0.1, "ns_coeffs": "muon"}, "ns_coeffs"),
    (gradtx.contrib.muon, {"learning_rate": 0.1, "ns_coeffs": (1.0, 2.0)}, "ns_coeffs"),
    (gradtx.contrib.muon, {"learning_rate": 0.1, "ns_steps": 0}, "ns_steps"),
    (gradtx.contrib.muon, {"learning_rate": 0.1, "beta": 1.0}, "beta"),
    (gradtx.contrib.muon, {"learning_rate": 0.1, "preconditioning": "qr"}, "preconditioning"),
    (gradtx.contrib.muon, {"learning_rate": 0.1, "adam_b2": -0.1}, "adam_b2"),
    (gradtx.contrib.muon, {"learning_rate": 0.1, "consistent_rms": -0.2}, "consistent_rms"),
    (gradtx.contrib.scale_by_muon, {"ns_coeffs": [(3.0, -3.2, 1.2)] * 6}, "ns_coeffs"),
    (gradtx.contrib.scale_by_muon, {"nesterov": 1}, "nesterov"),
    (gradtx.contrib.scale_by_muon, {"mu_dtype": jnp.int8}, "mu_dtype"),
    (gradtx.contrib.sam, {"optimizer": gradtx.sgd(0.1), "adv_optimizer": gradtx.sgd(0.1), "sync_period": 0}, "sync_period"),
    (gradtx.contrib.sam, {"optimizer": gradtx.sgd(0.1), "adv_optimizer": gradtx.sgd(0.1), "opaque_mode": "yes"}, "opaque_mode"),
    (gradtx.contrib.sam, {"optimizer": gradtx.sgd(0.1), "adv_optimizer": None}, "adv_optimizer"),
]
