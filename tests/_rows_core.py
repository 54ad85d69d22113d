"""Contract-table entries of the optimizer aliases that predate the per-family row files.

Their bit-for-bit rows stay in `tests/test_optax_bitwise.py` and their validation cases in
`tests/test_properties_invalid.py`; here they only join the contract table (`tests/test_contract.py`).
"""

from collections.abc import Callable

import gradtx

ROWS: list = []

OPTIMIZERS: dict[str, Callable[[], gradtx.GradientTransformation]] = {
    "sgd": lambda: gradtx.sgd(0.1),
    "sgd_nesterov": lambda: gradtx.sgd(0.05, momentum=0.9, nesterov=True),
    "adagrad": lambda: gradtx.adagrad(0.3),
    "rmsprop": lambda: gradtx.rmsprop(0.02),
    "rmsprop_centered": lambda: gradtx.rmsprop(0.01, centered=True, momentum=0.5),
    "adam": lambda: gradtx.adam(0.05),
    "adamw": lambda: gradtx.adamw(0.05, weight_decay=1e-4),
    "nadam": lambda: gradtx.nadam(0.05),
    "nadamw": lambda: gradtx.nadamw(0.05, weight_decay=1e-4),
    "amsgrad": lambda: gradtx.amsgrad(0.05),
    "adamax": lambda: gradtx.adamax(0.05),
    "lion": lambda: gradtx.lion(0.03),
    "lamb": lambda: gradtx.lamb(0.05, weight_decay=0.0),
}

INVALID: list = []
