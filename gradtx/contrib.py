"""`gradtx.contrib`: the research optimizers of `optax.contrib`, under the same names.

Muon, Schedule-Free, SAM, Sophia, the learning-rate-free methods (Prodigy, D-Adaptation, Mechanic,
COCOB, DoG, DoWG, MoMo), AdEMAMix, ADOPT, MADGRAD, AcProp, GaLore and the helpers optax keeps here,
with optax 0.2.8's states and numbers. As in optax they are exported from this module only, not at
the top level; the exceptions are differential privacy and `reduce_on_plateau`, which gradtx also
exports at its top level (the same objects: `gradtx.contrib.dpsgd is gradtx.dpsgd`), so that
`import gradtx as optax` keeps `optax.contrib.dpsgd(...)` working.
"""

from gradtx.optimizers.contrib_moments import (
    acprop,
    ademamix,
    adopt,
    galore,
    madgrad,
    simplified_ademamix,
    sophia,
)
from gradtx.optimizers.lr_free import DAdaptAdamWState, ProdigyState, cocob, dadapt_adamw, dog, dowg, prodigy
from gradtx.optimizers.momo import MomoAdamState, MomoState, momo, momo_adam
from gradtx.optimizers.muon import muon
from gradtx.optimizers.privacy import dpsgd
from gradtx.optimizers.schedule_free import schedule_free_adamw, schedule_free_sgd
from gradtx.transforms.contrib_galore import GaLoreDimensionNumbers, GaLoreState, scale_by_galore
from gradtx.transforms.contrib_moments import (
    MadgradState,
    ScaleByAdemamixState,
    ScaleBySimplifiedAdEMAMixState,
    scale_by_acprop,
    scale_by_ademamix,
    scale_by_adopt,
    scale_by_madgrad,
    scale_by_simplified_ademamix,
)
from gradtx.transforms.contrib_sophia import (
    HutchinsonState,
    NormalizeState,
    SophiaState,
    SplitRealAndImaginaryState,
    hutchinson_estimator_diag_hessian,
    normalize,
    split_real_and_imaginary,
)
from gradtx.transforms.lr_free import (
    COCOBState,
    DoGState,
    DoWGState,
    MechanicState,
    mechanize,
    scale_by_cocob,
)
from gradtx.transforms.muon import MuonDimensionNumbers, MuonState, scale_by_muon
from gradtx.transforms.privacy import DifferentiallyPrivateAggregateState, differentially_private_aggregate
from gradtx.transforms.sam import SAMState, sam
from gradtx.transforms.schedule_free import ScheduleFreeState, schedule_free, schedule_free_eval_params
from gradtx.wrappers import ReduceLROnPlateauState, reduce_on_plateau

__all__ = [
    "COCOBState",
    "DAdaptAdamWState",
    "DifferentiallyPrivateAggregateState",
    "DoGState",
    "DoWGState",
    "GaLoreDimensionNumbers",
    "GaLoreState",
    "HutchinsonState",
    "MadgradState",
    "MechanicState",
    "MomoAdamState",
    "MomoState",
    "MuonDimensionNumbers",
    "MuonState",
    "NormalizeState",
    "ProdigyState",
    "ReduceLROnPlateauState",
    "SAMState",
    "ScaleByAdemamixState",
    "ScaleBySimplifiedAdEMAMixState",
    "ScheduleFreeState",
    "SophiaState",
    "SplitRealAndImaginaryState",
    "acprop",
    "ademamix",
    "adopt",
    "cocob",
    "dadapt_adamw",
    "differentially_private_aggregate",
    "dog",
    "dowg",
    "dpsgd",
    "galore",
    "hutchinson_estimator_diag_hessian",
    "madgrad",
    "mechanize",
    "momo",
    "momo_adam",
    "muon",
    "normalize",
    "prodigy",
    "reduce_on_plateau",
    "sam",
    "scale_by_acprop",
    "scale_by_ademamix",
    "scale_by_adopt",
    "scale_by_cocob",
    "scale_by_galore",
    "scale_by_madgrad",
    "scale_by_muon",
    "scale_by_simplified_ademamix",
    "schedule_free",
    "schedule_free_adamw",
    "schedule_free_eval_params",
    "schedule_free_sgd",
    "simplified_ademamix",
    "sophia",
    "split_real_and_imaginary",
]
