"""gradtx.curvature: matrix-free curvature (Hessian) tools for JAX losses on pytrees.

Conventions: `loss(params, *args)` is a scalar JAX function and `*args` one batch of data; every
estimator also accepts `batches=` (an iterable of batches) and then works with the
batch-size-weighted average loss. Vectors are pytrees shaped like `params`. Nothing forms a
dense Hessian; everything is built from Hessian-vector products and runs under `jax.jit`.
"""

from gradtx.curvature.data import average_loss, batch_size, bind_loss, collect_batches
from gradtx.curvature.lanczos import (
    DEFAULT_NUM_ITERS,
    LanczosResult,
    eigsh,
    lanczos_tridiag,
    operator_eigsh,
    tridiagonal_eigh,
)
from gradtx.curvature.operators import gauss_newton_operator, gnvp, hessian_operator, hvp

__all__ = [
    "DEFAULT_NUM_ITERS",
    "LanczosResult",
    "average_loss",
    "batch_size",
    "bind_loss",
    "collect_batches",
    "eigsh",
    "gauss_newton_operator",
    "gnvp",
    "hessian_operator",
    "hvp",
    "lanczos_tridiag",
    "operator_eigsh",
    "tridiagonal_eigh",
]
