"""gradtx: composable gradient transformations and curvature tools for JAX.

Optimizers are `(init, update)` pairs that chain like optax's; `gradtx.curvature` holds
matrix-free Hessian tools (Lanczos eigenvalues, trace, spectral density, critical points) and
`gradtx.second_order` the optimizers built on them.
"""

from gradtx import base as _base
from gradtx import curvature, numerics, second_order
from gradtx import optimizers as _optimizers
from gradtx import schedules as _schedules
from gradtx import transforms as _transforms
from gradtx import wrappers as _wrappers
from gradtx.base import *  # noqa: F403
from gradtx.optimizers import *  # noqa: F403
from gradtx.schedules import *  # noqa: F403
from gradtx.transforms import *  # noqa: F403
from gradtx.wrappers import *  # noqa: F403

__version__ = "0.1.0"

__all__ = [
    *_base.__all__,
    *_transforms.__all__,
    *_optimizers.__all__,
    *_schedules.__all__,
    *_wrappers.__all__,
    "curvature",
    "numerics",
    "second_order",
]
