"""optax's `contrib` spelling of gradtx names, so that `import gradtx as optax` keeps
`optax.contrib.dpsgd(...)` working.

optax 0.2.8 keeps differential privacy and `reduce_on_plateau` in `optax.contrib` (its top-level
`optax.dpsgd` is deprecated there). gradtx exports them at its top level and, the same objects,
here: `gradtx.contrib.dpsgd is gradtx.dpsgd`.
"""

from gradtx.optimizers.lr_free import DAdaptAdamWState, ProdigyState, dadapt_adamw, prodigy
from gradtx.optimizers.privacy import dpsgd
from gradtx.optimizers.schedule_free import schedule_free_adamw, schedule_free_sgd
from gradtx.transforms.privacy import DifferentiallyPrivateAggregateState, differentially_private_aggregate
from gradtx.transforms.schedule_free import ScheduleFreeState, schedule_free, schedule_free_eval_params
from gradtx.wrappers import ReduceLROnPlateauState, reduce_on_plateau

__all__ = [
    "DAdaptAdamWState",
    "DifferentiallyPrivateAggregateState",
    "ProdigyState",
    "ReduceLROnPlateauState",
    "ScheduleFreeState",
    "dadapt_adamw",
    "differentially_private_aggregate",
    "dpsgd",
    "prodigy",
    "reduce_on_plateau",
    "schedule_free",
    "schedule_free_adamw",
    "schedule_free_eval_params",
    "schedule_free_sgd",
]
