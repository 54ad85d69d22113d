"""gradtx.optimizers: ready-made optimizers, each a chain of `gradtx.transforms`.

Names, arguments, defaults and numerics follow the optax 0.2.8 aliases of the same name; every
optimizer prints as the call that made it, e.g.
`adam(learning_rate=0.003, b1=0.9, b2=0.999, eps=1e-08, eps_root=0.0, mu_dtype=None, nesterov=False)`.

Inputs, as in optax:

* Python scalars are accepted as params and gradient leaves (`{"w": 1.0, "b": jnp.ones(3)}`);
  they are treated exactly as `jax.jit` treats them (weakly typed float32 scalars).
* Integer or boolean gradient leaves are promoted to float32 (optax's `lr * g` does the same;
  optax's NAdam and `scale_by_schedule` instead return `inf` / integer zeros for them).
* An integer or boolean *params* leaf raises a `TypeError` at `init` naming the leaf, for every
  optimizer that keeps a per-parameter state (all of them except `sgd` without momentum):
  the state would be rounded to integers and the updates silently be zero or wrong.
* `mu_dtype` / `accumulator_dtype` may be complex for complex params.
* A schedule (`learning_rate`, `weight_decay`) must be `schedule(count) -> scalar`; one that
  takes no argument or returns a non-scalar raises when the update is traced, naming it.
"""

from gradtx.optimizers.adafactor import adafactor
from gradtx.optimizers.adam import adam, adamax, adamw, amsgrad, nadam, nadamw
from gradtx.optimizers.adam_variants import (
    adabelief,
    adamaxw,
    adan,
    novograd,
    optimistic_adam,
    optimistic_adam_v2,
    optimistic_gradient_descent,
    radam,
    yogi,
)
from gradtx.optimizers.lamb import lamb
from gradtx.optimizers.layerwise import adadelta, fromage, lars, sm3
from gradtx.optimizers.lbfgs import lbfgs
from gradtx.optimizers.lion import lion
from gradtx.optimizers.privacy import dpsgd
from gradtx.optimizers.rms import adagrad, rmsprop
from gradtx.optimizers.sgd import sgd
from gradtx.optimizers.sign import noisy_sgd, rprop, sign_sgd, signum
from gradtx.optimizers.step_size_free import polyak_sgd

__all__ = [
    "adabelief",
    "adadelta",
    "adafactor",
    "adagrad",
    "adam",
    "adamax",
    "adamaxw",
    "adamw",
    "adan",
    "amsgrad",
    "dpsgd",
    "fromage",
    "lamb",
    "lars",
    "lbfgs",
    "lion",
    "nadam",
    "nadamw",
    "noisy_sgd",
    "novograd",
    "optimistic_adam",
    "optimistic_adam_v2",
    "optimistic_gradient_descent",
    "polyak_sgd",
    "radam",
    "rmsprop",
    "rprop",
    "sgd",
    "sign_sgd",
    "signum",
    "sm3",
    "yogi",
]
