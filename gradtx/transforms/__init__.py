"""gradtx.transforms: the elementary gradient transformations.

Every factory returns a `GradientTransformation(init, update)` with the names, arguments and
defaults of optax 0.2.8's transformation of the same name.
"""

from gradtx.transforms.adam_family import (
    ScaleByAdamState,
    ScaleByAmsgradState,
    ScaleByLionState,
    scale_by_adam,
    scale_by_adamax,
    scale_by_amsgrad,
    scale_by_lion,
)
from gradtx.transforms.clipping import (
    ZeroNansState,
    clip,
    clip_by_global_norm,
    clip_by_norm,
    zero_nans,
)
from gradtx.transforms.momentum import EmaState, TraceState, ema, trace
from gradtx.transforms.noise import AddNoiseState, add_noise
from gradtx.transforms.rms_family import (
    ScaleByRmsState,
    ScaleByRmsWithCountState,
    ScaleByRssState,
    ScaleByRStdDevState,
    ScaleByRStdDevWithCountState,
    scale_by_rms,
    scale_by_rss,
    scale_by_stddev,
)
from gradtx.transforms.scaling import (
    ScaleByScheduleState,
    scale,
    scale_by_learning_rate,
    scale_by_schedule,
    scale_by_sign,
    scale_by_trust_ratio,
)
from gradtx.transforms.weight_decay import AddDecayedWeightsState, WeightDecaySchedule, add_decayed_weights

__all__ = [
    "AddDecayedWeightsState",
    "AddNoiseState",
    "EmaState",
    "ScaleByAdamState",
    "ScaleByAmsgradState",
    "ScaleByLionState",
    "ScaleByRStdDevState",
    "ScaleByRStdDevWithCountState",
    "ScaleByRmsState",
    "ScaleByRmsWithCountState",
    "ScaleByRssState",
    "ScaleByScheduleState",
    "TraceState",
    "WeightDecaySchedule",
    "ZeroNansState",
    "add_decayed_weights",
    "add_noise",
    "clip",
    "clip_by_global_norm",
    "clip_by_norm",
    "ema",
    "scale",
    "scale_by_adam",
    "scale_by_adamax",
    "scale_by_amsgrad",
    "scale_by_learning_rate",
    "scale_by_lion",
    "scale_by_rms",
    "scale_by_rss",
    "scale_by_schedule",
    "scale_by_sign",
    "scale_by_stddev",
    "scale_by_trust_ratio",
    "trace",
    "zero_nans",
]
