"""Wrappers: transformations that modify how another transformation is applied.

Masking and partitioning (`masked`, `multi_transform`), skipping non-finite steps
(`apply_if_finite`), gradient accumulation (`MultiSteps`), hyper-parameters in the state
(`inject_hyperparams`), plateau-based scaling (`reduce_on_plateau`) and flat layouts (`flatten`).
"""

from gradtx.wrappers.accumulation import (
    MultiSteps,
    MultiStepsState,
    ShouldSkipUpdateFunction,
    skip_large_updates,
    skip_not_finite,
)
from gradtx.wrappers.finite import ApplyIfFiniteState, apply_if_finite
from gradtx.wrappers.flatten import flatten
from gradtx.wrappers.hyperparams import (
    InjectHyperparamsState,
    InjectStatefulHyperparamsState,
    WrappedSchedule,
    WrappedScheduleState,
    inject_hyperparams,
    inject_stateful_hyperparams,
)
from gradtx.wrappers.masking import (
    MaskedNode,
    MaskedState,
    MultiTransformState,
    PartitionState,
    masked,
    multi_transform,
)
from gradtx.wrappers.plateau import ReduceLROnPlateauState, reduce_on_plateau

__all__ = [
    "ApplyIfFiniteState",
    "InjectHyperparamsState",
    "InjectStatefulHyperparamsState",
    "MaskedNode",
    "MaskedState",
    "MultiSteps",
    "MultiStepsState",
    "MultiTransformState",
    "PartitionState",
    "ReduceLROnPlateauState",
    "ShouldSkipUpdateFunction",
    "WrappedSchedule",
    "WrappedScheduleState",
    "apply_if_finite",
    "flatten",
    "inject_hyperparams",
    "inject_stateful_hyperparams",
    "masked",
    "multi_transform",
    "reduce_on_plateau",
    "skip_large_updates",
    "skip_not_finite",
]
