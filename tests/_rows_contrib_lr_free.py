"""Learning-rate-free optimizers of `optax.contrib`: bit-for-bit rows and invalid arguments.

Prodigy and D-Adaptation AdamW (`gradtx.optimizers.lr_free`). They are exported from
`gradtx.contrib` only (as in optax), so `OPTIMIZERS` stays empty: the contract test looks its
names up at gradtx's top level. `tests/test_contrib_lr_free.py` checks their contract properties.
"""

from _bitwise import same, sparse_grads

import gradtx

ROWS = [
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
]
