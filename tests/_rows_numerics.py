"""Table entries of the numerics family (safe math, moments, linear algebra).

Its names are plain functions, not transformations: no bit-for-bit trajectory rows and no
optimizer aliases. Their comparison with optax lives in `tests/test_numerics_parity.py`; here
only the out-of-range arguments join the contract table's validation test.
"""

import functools
from collections.abc import Callable

import numpy as np

import gradtx

ROWS: list = []

OPTIMIZERS: dict[str, Callable[[], gradtx.GradientTransformation]] = {}

_SQUARE = np.diag([4.0, 1.0, 0.25]).astype(np.float32)
_A = np.array([[1.0, 2.0], [3.0, 4.0], [0.5, -1.0]], np.float32)
_B = np.array([5.0, 6.0, 1.0], np.float32)

INVALID: list = [
    (functools.partial(gradtx.matrix_inverse_pth_root, _SQUARE), {"p": 3}, "p"),
    (functools.partial(gradtx.matrix_inverse_pth_root, _SQUARE), {"p": 0}, "p"),
    (functools.partial(gradtx.matrix_inverse_pth_root, _SQUARE, 2), {"num_iters": -1}, "num_iters"),
    (functools.partial(gradtx.matrix_inverse_pth_root, _SQUARE, 2), {"ridge_epsilon": -1e-3}, "ridge_epsilon"),
    (functools.partial(gradtx.matrix_inverse_pth_root, p=2), {"matrix": _A}, "matrix"),
    (functools.partial(gradtx.power_iteration, _SQUARE), {"num_iters": 1.5}, "num_iters"),
    (functools.partial(gradtx.power_iteration, _SQUARE), {"error_tolerance": -1.0}, "error_tolerance"),
    (functools.partial(gradtx.power_iteration, _SQUARE), {"v0": np.ones(2, np.float32)}, "v0"),
    (gradtx.power_iteration, {"matrix": lambda v: v}, "v0"),
    (functools.partial(gradtx.nnls, _A, _B), {"iters": -1}, "iters"),
    (functools.partial(gradtx.nnls, _A, _B, 10), {"unroll": 0}, "unroll"),
    (functools.partial(gradtx.nnls, _A, iters=10), {"b": _B[:2]}, "b"),
    (functools.partial(gradtx.nnls, b=_B, iters=10), {"A": _B}, "A"),
    (gradtx.safe_increment, {"count": np.bool_(True)}, "count"),
]
