"""gradtx.optimizers: ready-made optimizers, each a chain of `gradtx.transforms`.

Names, arguments, defaults and numerics follow the optax 0.2.8 aliases of the same name; every
optimizer prints as the call that made it, e.g.
`adam(learning_rate=0.003, b1=0.9, b2=0.999, eps=1e-08, eps_root=0.0, mu_dtype=None, nesterov=False)`.
"""

from gradtx.optimizers.adam import adam, adamax, adamw, amsgrad, nadam, nadamw
from gradtx.optimizers.lamb import lamb
from gradtx.optimizers.lion import lion
from gradtx.optimizers.rms import adagrad, rmsprop
from gradtx.optimizers.sgd import sgd

__all__ = [
    "adagrad",
    "adam",
    "adamax",
    "adamw",
    "amsgrad",
    "lamb",
    "lion",
    "nadam",
    "nadamw",
    "rmsprop",
    "sgd",
]
