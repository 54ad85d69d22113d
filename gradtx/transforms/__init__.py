"""gradtx.transforms: the elementary gradient transformations.

Every factory returns a `GradientTransformation(init, update)` with the names, arguments and
defaults of optax 0.2.8's transformation of the same name.
"""

from gradtx.transforms.adadelta import ScaleByAdaDeltaState, scale_by_adadelta
from gradtx.transforms.adam_family import (
    ScaleByAdamState,
    ScaleByAmsgradState,
    ScaleByLionState,
    scale_by_adam,
    scale_by_adamax,
    scale_by_amsgrad,
    scale_by_lion,
)
from gradtx.transforms.adam_variants import ScaleByBeliefState, scale_by_belief, scale_by_radam, scale_by_yogi
from gradtx.transforms.adan_novograd_optimistic import (
    ScaleByAdanState,
    ScaleByNovogradState,
    ScaleByOptimisticGradientState,
    scale_by_adan,
    scale_by_novograd,
    scale_by_optimistic_gradient,
)
from gradtx.transforms.blockwise import (
    ScaleBySM3State,
    scale_by_param_block_norm,
    scale_by_param_block_rms,
    scale_by_sm3,
)
from gradtx.transforms.clipping import (
    AdaptiveGradClipState,
    ClipByGlobalNormState,
    ClipState,
    ZeroNansState,
    adaptive_grad_clip,
    clip,
    clip_by_block_rms,
    clip_by_global_norm,
    clip_by_norm,
    unitwise_clip,
    unitwise_norm,
    zero_nans,
)
from gradtx.transforms.factored import FactoredState, scale_by_factored_rms
from gradtx.transforms.lbfgs import ScaleByLBFGSState, scale_by_lbfgs
from gradtx.transforms.momentum import EmaState, TraceState, ema, trace
from gradtx.transforms.noise import AddNoiseState, add_noise
from gradtx.transforms.privacy import (
    DifferentiallyPrivateAggregateState,
    differentially_private_aggregate,
    per_example_global_norm_clip,
    per_example_layer_norm_clip,
)
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
    ScaleByTrustRatioState,
    ScaleState,
    scale,
    scale_by_learning_rate,
    scale_by_schedule,
    scale_by_sign,
    scale_by_trust_ratio,
)
from gradtx.transforms.sign import ScaleByRpropState, scale_by_rprop
from gradtx.transforms.step_size_free import (
    ScaleByDistanceOverGradientsState,
    normalize_by_update_norm,
    scale_by_distance_over_gradients,
    scale_by_polyak,
)
from gradtx.transforms.surgery import (
    NonNegativeParamsState,
    centralize,
    keep_params_nonnegative,
    scale_gradient,
)
from gradtx.transforms.weight_decay import AddDecayedWeightsState, WeightDecaySchedule, add_decayed_weights

__all__ = [
    "AdaptiveGradClipState",
    "AddDecayedWeightsState",
    "AddNoiseState",
    "ClipByGlobalNormState",
    "ClipState",
    "DifferentiallyPrivateAggregateState",
    "EmaState",
    "FactoredState",
    "NonNegativeParamsState",
    "ScaleByAdaDeltaState",
    "ScaleByAdamState",
    "ScaleByAdanState",
    "ScaleByAmsgradState",
    "ScaleByBeliefState",
    "ScaleByDistanceOverGradientsState",
    "ScaleByLBFGSState",
    "ScaleByLionState",
    "ScaleByNovogradState",
    "ScaleByOptimisticGradientState",
    "ScaleByRStdDevState",
    "ScaleByRStdDevWithCountState",
    "ScaleByRmsState",
    "ScaleByRmsWithCountState",
    "ScaleByRpropState",
    "ScaleByRssState",
    "ScaleBySM3State",
    "ScaleByScheduleState",
    "ScaleByTrustRatioState",
    "ScaleState",
    "TraceState",
    "WeightDecaySchedule",
    "ZeroNansState",
    "adaptive_grad_clip",
    "add_decayed_weights",
    "add_noise",
    "centralize",
    "clip",
    "clip_by_block_rms",
    "clip_by_global_norm",
    "clip_by_norm",
    "differentially_private_aggregate",
    "ema",
    "keep_params_nonnegative",
    "normalize_by_update_norm",
    "per_example_global_norm_clip",
    "per_example_layer_norm_clip",
    "scale",
    "scale_by_adadelta",
    "scale_by_adam",
    "scale_by_adamax",
    "scale_by_adan",
    "scale_by_amsgrad",
    "scale_by_belief",
    "scale_by_distance_over_gradients",
    "scale_by_factored_rms",
    "scale_by_lbfgs",
    "scale_by_learning_rate",
    "scale_by_lion",
    "scale_by_novograd",
    "scale_by_optimistic_gradient",
    "scale_by_param_block_norm",
    "scale_by_param_block_rms",
    "scale_by_polyak",
    "scale_by_radam",
    "scale_by_rms",
    "scale_by_rprop",
    "scale_by_rss",
    "scale_by_schedule",
    "scale_by_sign",
    "scale_by_sm3",
    "scale_by_stddev",
    "scale_by_trust_ratio",
    "scale_by_yogi",
    "scale_gradient",
    "trace",
    "unitwise_clip",
    "unitwise_norm",
    "zero_nans",
]
