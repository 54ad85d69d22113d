"""gradtx.second_order: optimizers that use Hessian information through matrix-free products.

* [`scale_by_newton_cg`][gradtx.second_order.scale_by_newton_cg] /
  [`newton_cg`][gradtx.second_order.newton_cg]: truncated Newton steps by conjugate gradients
  on Hessian-vector products, with a negative-curvature exit;
* [`saddle_escape`][gradtx.second_order.saddle_escape]: replaces a vanishing gradient at a strict
  saddle by a step along the most negative curvature direction (Lanczos);
* [`perturbed_gradient`][gradtx.second_order.perturbed_gradient]: random perturbations when the
  gradient is small (perturbed gradient descent), for comparison.

All of them need the objective as the extra `update` argument `value_fn` (a function of the
params alone), except `perturbed_gradient`.
"""

from gradtx.second_order.newton_cg import NewtonCGState, newton_cg, scale_by_newton_cg
from gradtx.second_order.saddle import (
    PerturbedGradientState,
    SaddleEscapeState,
    perturbed_gradient,
    saddle_escape,
)

__all__ = [
    "NewtonCGState",
    "PerturbedGradientState",
    "SaddleEscapeState",
    "newton_cg",
    "perturbed_gradient",
    "saddle_escape",
    "scale_by_newton_cg",
]
