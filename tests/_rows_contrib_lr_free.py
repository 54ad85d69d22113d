"""Learning-rate-free optimizers of `optax.contrib`: bit-for-bit rows and invalid arguments.

Prodigy, D-Adaptation AdamW, DoG, DoWG, COCOB, Mechanic and MoMo (`gradtx.optimizers.lr_free`,
`gradtx.transforms.lr_free`, `gradtx.optimizers.momo`). They are exported from `gradtx.contrib` only (as in optax), so `OPTIMIZERS` stays empty: the contract test looks its
names up at gradtx's top level.

MoMo needs `update(..., value=f)`, which the table's `run` does not pass: `_with_value` hands it the
value of a fixed function of the params (the same on both sides), as `tests/_rows_sign_free.py`
does for Polyak's step. `tests/test_contrib_lr_free.py` checks their contract properties.
"""

from typing import Any

import jax
import jax.numpy as jnp
from _bitwise import decay_mask, same, sparse_grads

import gradtx


def _value(params: Any) -> jax.Array:
    # a double-well energy plus an offset (as tests/_rows_sign_free.py)
    return 4.0 + sum(jnp.sum(x * x * (0.25 * x * x - 0.5)) for x in jax.tree.leaves(params))


def _with_value(m: Any, tx: Any) -> Any:
    """`tx` whose `update` receives `value=_value(params)` (the table's `run` passes none)."""

    def update(updates, state, params=None):
        return tx.update(updates, state, params, value=_value(params))

    return m.GradientTransformation(tx.init, update)


ROWS = [
    same("contrib_momo", lambda m: _with_value(m, m.contrib.momo())),
    same(
        "contrib_momo_options",
        lambda m: _with_value(
            m,
            m.contrib.momo(
                m.linear_schedule(1.0, 0.1, 20), beta=0.8, lower_bound=1.0, weight_decay=0.01,
                adapt_lower_bound=True,
            ),
        ),
        grads=sparse_grads,
    ),
    same("contrib_momo_adam", lambda m: _with_value(m, m.contrib.momo_adam())),
    same(
        "contrib_momo_adam_options",
        lambda m: _with_value(
            m,
            m.contrib.momo_adam(
                m.linear_schedule(0.1, 0.01, 20), b1=0.8, b2=0.99, eps=1e-6, lower_bound=1.0,
                weight_decay=0.01, adapt_lower_bound=True,
            ),
        ),
        grads=sparse_grads,
    ),
    same("contrib_prodigy", lambda m: m.contrib.prodigy()),
    same(
        "contrib_prodigy_options",
        lambda m: m.contrib.prodigy(
            m.linear_schedule(1.0, 0.1, 20), betas=(0.8, 0.99), beta3=0.9, eps=1e-6,
            estim_lr0=1e-4, estim_lr_coef=0.5, weight_decay=0.01, safeguard_warmup=True,
        ),
        grads=sparse_grads,
    ),
    same("contrib_dadapt_adamw", lambda m: m.contrib.dadapt_adamw()),
    same(
        "contrib_dadapt_adamw_options",
        lambda m: m.contrib.dadapt_adamw(
            m.linear_schedule(1.0, 0.1, 20), betas=(0.8, 0.99), eps=1e-6, estim_lr0=1e-4,
            weight_decay=0.01,
        ),
        grads=sparse_grads,
    ),
    same("contrib_dog", lambda m: m.contrib.dog()),
    same(
        "contrib_dog_options",
        lambda m: m.contrib.dog(
            m.linear_schedule(1.0, 0.1, 20), init_step=("distance", 1e-3), eps=1e-6, weight_decay=0.01,
            mask=decay_mask,
        ),
    ),
    same("contrib_dog_learning_rate", lambda m: m.contrib.dog(init_step=("learning_rate", 1e-3))),
    same("contrib_dowg", lambda m: m.contrib.dowg()),
    same(
        "contrib_dowg_options",
        lambda m: m.contrib.dowg(0.5, init_estim_sq_dist=1e-3, eps=1e-5, weight_decay=0.01),
        grads=sparse_grads,
    ),
    same("contrib_cocob", lambda m: m.contrib.cocob()),
    same(
        "contrib_cocob_options",
        lambda m: m.contrib.cocob(
            m.linear_schedule(1.0, 0.5, 20), alpha=10.0, eps=1e-6, weight_decay=0.01, mask=decay_mask
        ),
        grads=sparse_grads,
    ),
    same("contrib_scale_by_cocob", lambda m: m.contrib.scale_by_cocob()),
    same("contrib_mechanize", lambda m: m.contrib.mechanize(m.adam(1e-2))),
    same(
        "contrib_mechanize_options",
        lambda m: m.contrib.mechanize(
            m.sgd(m.linear_schedule(0.1, 0.01, 20), momentum=0.9), weight_decay=0.0, eps=1e-6,
            s_init=1e-3, num_betas=3,
        ),
        grads=sparse_grads,
    ),
]

OPTIMIZERS: dict = {}

_c = gradtx.contrib
INVALID = [
    (_c.prodigy, {"learning_rate": -1.0}, "learning_rate"),
    (_c.prodigy, {"betas": (0.9, 1.5)}, "betas"),
    (_c.prodigy, {"beta3": 2.0}, "beta3"),
    (_c.prodigy, {"eps": -1.0}, "eps"),
    (_c.prodigy, {"estim_lr0": 0.0}, "estim_lr0"),
    (_c.prodigy, {"estim_lr_coef": -1.0}, "estim_lr_coef"),
    (_c.prodigy, {"weight_decay": -0.1}, "weight_decay"),
    (_c.prodigy, {"safeguard_warmup": 1}, "safeguard_warmup"),
    (_c.dadapt_adamw, {"learning_rate": -1.0}, "learning_rate"),
    (_c.dadapt_adamw, {"betas": (-0.1, 0.9)}, "betas"),
    (_c.dadapt_adamw, {"eps": -1.0}, "eps"),
    (_c.dadapt_adamw, {"estim_lr0": -1.0}, "estim_lr0"),
    (_c.dadapt_adamw, {"weight_decay": -0.1}, "weight_decay"),
    (_c.dog, {"learning_rate": -1.0}, "learning_rate"),
    (_c.dog, {"init_step": ("guess", 1.0)}, "init_step"),
    (_c.dog, {"init_step": ("distance", -1.0)}, "init_step"),
    (_c.dog, {"init_step": 1e-6}, "init_step"),
    (_c.dog, {"eps": -1.0}, "eps"),
    (_c.dog, {"weight_decay": -1.0}, "weight_decay"),
    (_c.dowg, {"learning_rate": -1.0}, "learning_rate"),
    (_c.dowg, {"init_estim_sq_dist": -1.0}, "init_estim_sq_dist"),
    (_c.dowg, {"eps": -1.0}, "eps"),
    (_c.dowg, {"weight_decay": -1.0}, "weight_decay"),
    (_c.cocob, {"learning_rate": -1.0}, "learning_rate"),
    (_c.cocob, {"alpha": 0.0}, "alpha"),
    (_c.cocob, {"eps": 0.0}, "eps"),
    (_c.cocob, {"weight_decay": -1.0}, "weight_decay"),
    (_c.scale_by_cocob, {"alpha": -1.0}, "alpha"),
    (_c.scale_by_cocob, {"eps": -1.0}, "eps"),
    (_c.momo, {"learning_rate": -1.0}, "learning_rate"),
    (_c.momo, {"beta": 1.0}, "beta"),
    (_c.momo, {"lower_bound": float("nan")}, "lower_bound"),
    (_c.momo, {"weight_decay": -1.0}, "weight_decay"),
    (_c.momo, {"adapt_lower_bound": "yes"}, "adapt_lower_bound"),
    (_c.momo_adam, {"learning_rate": -1.0}, "learning_rate"),
    (_c.momo_adam, {"b1": -0.1}, "b1"),
    (_c.momo_adam, {"b2": 1.5}, "b2"),
    (_c.momo_adam, {"eps": -1.0}, "eps"),
    (_c.momo_adam, {"weight_decay": -1.0}, "weight_decay"),
    (_c.mechanize, {"base_optimizer": 1.0}, "base_optimizer"),
    (_c.mechanize, {"base_optimizer": gradtx.sgd(1.0), "weight_decay": -1.0}, "weight_decay"),
    (_c.mechanize, {"base_optimizer": gradtx.sgd(1.0), "eps": -1.0}, "eps"),
    (_c.mechanize, {"base_optimizer": gradtx.sgd(1.0), "s_init": 0.0}, "s_init"),
    (_c.mechanize, {"base_optimizer": gradtx.sgd(1.0), "num_betas": 0}, "num_betas"),
    (_c.mechanize, {"base_optimizer": gradtx.sgd(1.0), "num_betas": 2.0}, "num_betas"),
]
