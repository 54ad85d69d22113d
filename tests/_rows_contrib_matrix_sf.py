"""optax.contrib's Schedule-Free, Muon and SAM: bit-for-bit rows and invalid arguments.

The contract test looks each `OPTIMIZERS` name up at gradtx's top level (for
`inject_hyperparams`), and these names live only in `gradtx.contrib`, as in optax: their
contract properties are checked in `tests/test_contrib_matrix_sf.py` instead.
"""

from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
from _bitwise import BF16, same

import gradtx


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
]
