"""gradtx.second_order: optimizers that use Hessian information through matrix-free products.

* [`scale_by_newton_cg`][gradtx.second_order.scale_by_newton_cg] /
  [`newton_cg`][gradtx.second_order.newton_cg]: truncated Newton steps by conjugate gradients
  on Hessian-vector products, with a negative-curvature exit;
* [`saddle_escape`][gradtx.second_order.saddle_escape]: replaces a vanishing gradient at a strict
  saddle by a step along the most negative curvature direction (Lanczos);
* [`perturbed_gradient`][gradtx.second_order.perturbed_gradient]: random perturbations when the
  gradient is small (perturbed gradient descent), for comparison;
* [`track_sharpness`][gradtx.second_order.track_sharpness]: passes updates through unchanged and
  measures the top Hessian eigenvalue every few steps (warm-started Lanczos).

All of them except `perturbed_gradient` need the objective as the extra `update` argument
`value_fn` (a function of the params alone).
"""

from gradtx.second_order.newton_cg import NewtonCGState, newton_cg, scale_by_newton_cg
from gradtx.second_order.saddle import (
    PerturbedGradientState,
    SaddleEscapeState,
    perturbed_gradient,
    saddle_escape,
)
from gradtx.second_order.sharpness import SharpnessState, track_sharpness

__all__ = [
    "NewtonCGState",
    "PerturbedGradientState",
    "SaddleEscapeState",
    "SharpnessState",
    "newton_cg",
    "perturbed_gradient",
    "saddle_escape",
    "scale_by_newton_cg",
    "track_sharpness",
]
