"""Wrappers: transformations that modify how another transformation is applied.

Masking and partitioning (`masked`, `multi_transform`), skipping non-finite steps
(`apply_if_finite`), gradient accumulation (`MultiSteps`), hyper-parameters in the state
(`inject_hyperparams`), plateau-based scaling (`reduce_on_plateau`), flat layouts (`flatten`),
lookahead, freezing (`freeze`, `selective_transform`), steps taken conditionally or every `k`
steps, monitoring (`monitor`, `snapshot`), and helpers of the optax protocol (`tree_map_params`).
"""

from gradtx.wrappers.accumulation import (
    MultiSteps,
    MultiStepsState,
    ShouldSkipUpdateFunction,
    skip_large_updates,
    skip_not_finite,
)
from gradtx.wrappers.conditional import (
    ConditionallyMaskState,
    ConditionallyTransformState,
    ConditionFn,
    conditionally_mask,
    conditionally_transform,
)
from gradtx.wrappers.finite import ApplyIfFiniteState, apply_if_finite
from gradtx.wrappers.flatten import flatten
from gradtx.wrappers.freezing import freeze, selective_transform
from gradtx.wrappers.hyperparams import (
    InjectHyperparamsState,
    InjectStatefulHyperparamsState,
    WrappedSchedule,
    WrappedScheduleState,
    inject_hyperparams,
    inject_stateful_hyperparams,
)
from gradtx.wrappers.lookahead import LookaheadParams, LookaheadState, lookahead
from gradtx.wrappers.masking import (
    MaskedNode,
    MaskedState,
    MultiTransformState,
    PartitionState,
    masked,
    multi_transform,
    partition,
)
from gradtx.wrappers.monitoring import MonitorState, SnapshotState, measure_with_ema, monitor, snapshot
from gradtx.wrappers.periodic import ApplyEvery, apply_every, incremental_update, periodic_update
from gradtx.wrappers.plateau import ReduceLROnPlateauState, reduce_on_plateau
from gradtx.wrappers.protocol import (
    StatefulSchedule,
    init_empty_state,
    tree_map_params,
    with_extra_args_support,
)

__all__ = [
    "ApplyEvery",
    "ApplyIfFiniteState",
    "ConditionFn",
    "ConditionallyMaskState",
    "ConditionallyTransformState",
    "InjectHyperparamsState",
    "InjectStatefulHyperparamsState",
    "LookaheadParams",
    "LookaheadState",
    "MaskedNode",
    "MaskedState",
    "MonitorState",
    "MultiSteps",
    "MultiStepsState",
    "MultiTransformState",
    "PartitionState",
    "ReduceLROnPlateauState",
    "ShouldSkipUpdateFunction",
    "SnapshotState",
    "StatefulSchedule",
    "WrappedSchedule",
    "WrappedScheduleState",
    "apply_every",
    "apply_if_finite",
    "conditionally_mask",
    "conditionally_transform",
    "flatten",
    "freeze",
    "incremental_update",
    "init_empty_state",
    "inject_hyperparams",
    "inject_stateful_hyperparams",
    "lookahead",
    "masked",
    "measure_with_ema",
    "monitor",
    "multi_transform",
    "partition",
    "periodic_update",
    "reduce_on_plateau",
    "selective_transform",
    "skip_large_updates",
    "skip_not_finite",
    "snapshot",
    "tree_map_params",
    "with_extra_args_support",
]
