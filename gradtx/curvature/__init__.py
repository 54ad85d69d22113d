"""gradtx.curvature: matrix-free curvature (Hessian) tools for JAX losses on pytrees.

Conventions: `loss(params, *args)` is a scalar JAX function and `*args` one batch of data; every
estimator also accepts `batches=` and then works with the batch-size-weighted average loss (see
[`gradtx.curvature.data`][gradtx.curvature.data]): a [`Batched`][gradtx.curvature.Batched]
in-memory data set is swept by `lax.scan` in one compiled call, and a list, loader or generator
factory is streamed one batch at a time through one compiled per-batch product (see
[`gradtx.curvature.streaming`][gradtx.curvature.streaming]). Vectors are pytrees shaped like
`params`. Nothing forms a dense Hessian: everything is built from Hessian-vector products, runs
inside `lax` loops and can be called under `jax.jit` (streamed data: on the host, outside `jit`).

* operators: [`hvp`][gradtx.curvature.hvp], [`hessian_operator`][gradtx.curvature.hessian_operator],
  [`gnvp`][gradtx.curvature.gnvp], [`gauss_newton_operator`][gradtx.curvature.gauss_newton_operator],
  [`empirical_fisher_operator`][gradtx.curvature.empirical_fisher_operator],
  [`fisher_operator`][gradtx.curvature.fisher_operator] (exact or Monte-Carlo); every estimator
  named `operator_*` takes any of them (or any symmetric linear map on pytrees);
* eigenvalues: [`eigsh`][gradtx.curvature.eigsh], [`operator_eigsh`][gradtx.curvature.operator_eigsh]
  (with certified residual bounds, [`ritz_residuals`][gradtx.curvature.ritz_residuals]),
  [`lanczos_tridiag`][gradtx.curvature.lanczos_tridiag], per-block spectra
  [`block_spectra`][gradtx.curvature.block_spectra];
* trace and diagonal: [`hessian_trace`][gradtx.curvature.hessian_trace] (Hutchinson, Hutch++),
  [`hessian_diagonal`][gradtx.curvature.hessian_diagonal] /
  [`operator_diagonal`][gradtx.curvature.operator_diagonal] (exact, Hutchinson, XDiag);
* density and log-determinant: [`spectral_density`][gradtx.curvature.spectral_density],
  [`logdet`][gradtx.curvature.logdet] / [`operator_logdet`][gradtx.curvature.operator_logdet]
  (stochastic Lanczos quadrature);
* inverse products: [`solve`][gradtx.curvature.solve] (CG, MINRES),
  [`inverse_hvp`][gradtx.curvature.inverse_hvp], and built on them
  [`influence`][gradtx.curvature.influence] (influence functions);
* analysis: [`condition_number`][gradtx.curvature.condition_number],
  [`classify_critical_point`][gradtx.curvature.classify_critical_point];
* pictures: [`landscape`][gradtx.curvature.landscape] (1-D and 2-D loss landscapes, trajectories).
"""

from gradtx.curvature.analysis import (
    CONDITION_KINDS,
    CRITICAL_POINT_KINDS,
    ConditionNumberReport,
    CriticalPointReport,
    classify_critical_point,
    condition_number,
    critical_point_core,
    extreme_eigenpairs,
)
from gradtx.curvature.blocks import DEFAULT_TRACE_SAMPLES, BlockSpectrum, block_spectra, leaf_paths
from gradtx.curvature.data import Batched, average_loss, batch_size, bind_loss, collect_batches
from gradtx.curvature.density import operator_spectral_density, slq_nodes_weights, spectral_density
from gradtx.curvature.diagonal import DIAGONAL_METHODS, hessian_diagonal, operator_diagonal
from gradtx.curvature.fisher import LIKELIHOODS, empirical_fisher_operator, fisher_operator, sample_targets
from gradtx.curvature.influence import INFLUENCE_METHODS, InfluenceReport, influence
from gradtx.curvature.lanczos import (
    DEFAULT_NUM_ITERS,
    LanczosResult,
    eigsh,
    lanczos_tridiag,
    operator_eigsh,
    tridiagonal_eigh,
)
from gradtx.curvature.landscape import (
    NORMALIZATIONS,
    LandscapeReport,
    TrajectoryProjection,
    landscape,
    normalize_direction,
    project_trajectory,
    random_directions,
    trajectory_landscape,
)
from gradtx.curvature.logdet import LogdetReport, logdet, operator_logdet
from gradtx.curvature.operators import (
    flatten_operator,
    gauss_newton_operator,
    gnvp,
    hessian_operator,
    hvp,
)
from gradtx.curvature.residuals import ritz_residuals
from gradtx.curvature.solve import SOLVE_METHODS, SolveReport, inverse_hvp, solve
from gradtx.curvature.streaming import (
    StreamingOperator,
    data_operator,
    is_streaming,
    krylov_loop,
    krylov_while,
)
from gradtx.curvature.trace import TRACE_METHODS, hessian_trace, operator_trace

__all__ = [
    "CONDITION_KINDS",
    "CRITICAL_POINT_KINDS",
    "DEFAULT_NUM_ITERS",
    "DEFAULT_TRACE_SAMPLES",
    "DIAGONAL_METHODS",
    "INFLUENCE_METHODS",
    "LIKELIHOODS",
    "NORMALIZATIONS",
    "SOLVE_METHODS",
    "TRACE_METHODS",
    "Batched",
    "BlockSpectrum",
    "ConditionNumberReport",
    "CriticalPointReport",
    "InfluenceReport",
    "LanczosResult",
    "LandscapeReport",
    "LogdetReport",
    "SolveReport",
    "StreamingOperator",
    "TrajectoryProjection",
    "average_loss",
    "batch_size",
    "bind_loss",
    "block_spectra",
    "classify_critical_point",
    "collect_batches",
    "condition_number",
    "critical_point_core",
    "data_operator",
    "eigsh",
    "empirical_fisher_operator",
    "extreme_eigenpairs",
    "fisher_operator",
    "flatten_operator",
    "gauss_newton_operator",
    "gnvp",
    "hessian_diagonal",
    "hessian_operator",
    "hessian_trace",
    "hvp",
    "influence",
    "inverse_hvp",
    "is_streaming",
    "krylov_loop",
    "krylov_while",
    "lanczos_tridiag",
    "landscape",
    "leaf_paths",
    "logdet",
    "normalize_direction",
    "operator_diagonal",
    "operator_eigsh",
    "operator_logdet",
    "operator_spectral_density",
    "operator_trace",
    "project_trajectory",
    "random_directions",
    "ritz_residuals",
    "sample_targets",
    "slq_nodes_weights",
    "solve",
    "spectral_density",
    "trajectory_landscape",
    "tridiagonal_eigh",
]
