"""Curvature diagnostics: condition number and critical-point classification.

Both tools run one Lanczos iteration on the Hessian (see
[`gradtx.curvature.lanczos`][gradtx.curvature.lanczos]), which approximates both ends of the
spectrum at once, `θ_min ≥ λ_min` and `θ_max ≤ λ_max` (Ritz values lie inside the spectrum and
converge to its ends from within).

Zero test: an extreme eigenvalue `λ` counts as zero when `|λ| ≤ eig_tol · max(1, |λ_min|, |λ_max|)`,
i.e. `eig_tol` is an absolute tolerance for Hessians of norm up to 1 and a relative one above.
"""

from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from gradtx._validation import check_real
from gradtx.curvature.lanczos import (
    DEFAULT_NUM_ITERS,
    _check_num_iters,
    _default_key,
    _dimension,
    run_hessian_lanczos,
    tridiagonal_eigh,
)
from gradtx.curvature.operators import unraveler
from gradtx.numerics import global_norm

__all__ = [
    "CONDITION_KINDS",
    "CRITICAL_POINT_KINDS",
    "ConditionNumberReport",
    "CriticalPointReport",
    "classify_critical_point",
    "condition_number",
    "critical_point_core",
    "extreme_eigenpairs",
]

CONDITION_KINDS = ("positive_definite", "negative_definite", "singular", "indefinite")
"""Names of `ConditionNumberReport.kind_code` values 0..3."""

CRITICAL_POINT_KINDS = ("minimum", "maximum", "saddle", "degenerate", "not_critical")
"""Names of the codes returned by [`critical_point_core`][gradtx.curvature.critical_point_core]."""

_REASONS = {
    "positive_definite": "all eigenvalues > 0: κ = λ_max / λ_min",
    "negative_definite": "all eigenvalues < 0: κ = |λ_min| / |λ_max| = λ_min / λ_max",
    "singular": "an extreme eigenvalue is zero within eig_tol and none has the opposite sign: κ = inf",
    "indefinite": "eigenvalues of both signs (λ_min < 0 < λ_max): no condition number, κ = nan",
}


def _is_concrete(x: Any) -> bool:
    return not isinstance(x, jax.core.Tracer)


class ConditionNumberReport(NamedTuple):
    """The extreme Hessian eigenvalues and what they say about conditioning.

    All fields are arrays (the report can be returned from `jax.jit`); `kind` and `reason` are
    Python strings derived from `kind_code` (outside `jit` only).

    Attributes:
        lambda_max: largest eigenvalue estimate `θ_max` (≤ λ_max).
        lambda_min: smallest eigenvalue estimate `θ_min` (≥ λ_min).
        condition_number: `λ_max/λ_min` when positive definite, `λ_min/λ_max` when negative
            definite, `inf` when singular, `nan` when indefinite. Since `θ_min ≥ λ_min`, for a
            positive definite Hessian this is a lower bound on the true κ (tight once `num_iters`
            is large enough for `θ_min` to converge).
        kind_code: int32 index into [`CONDITION_KINDS`][gradtx.curvature.CONDITION_KINDS].
    """

    lambda_max: jax.Array
    lambda_min: jax.Array
    condition_number: jax.Array
    kind_code: jax.Array

    @property
    def kind(self) -> str:
        """`"positive_definite"`, `"negative_definite"`, `"singular"` or `"indefinite"`."""
        if not _is_concrete(self.kind_code):
            raise TypeError("ConditionNumberReport.kind is only available outside jit; use kind_code inside")
        return CONDITION_KINDS[int(self.kind_code)]

    @property
    def is_definite(self) -> bool:
        """True when the condition number is a finite, meaningful ratio."""
        return self.kind in ("positive_definite", "negative_definite")

    @property
    def reason(self) -> str:
        """A sentence saying how `condition_number` was obtained (or why it is inf/nan)."""
        return _REASONS[self.kind]


class CriticalPointReport(NamedTuple):
    """What kind of point `params` is for `loss`.

    Attributes:
        kind: `"minimum"`, `"maximum"`, `"saddle"`, `"degenerate"` or `"not_critical"`.
        grad_norm: `‖∇L(θ)‖₂` over all leaves.
        min_eigenvalue: estimate of `λ_min(∇²L(θ))`.
        max_eigenvalue: estimate of `λ_max(∇²L(θ))`.
        escape_direction: unit pytree like `params` along the eigenvector of `min_eigenvalue`
            when that eigenvalue is negative (beyond the tolerance), oriented so that it does not
            increase the loss to first order (`⟨∇L, d⟩ ≤ 0`); None otherwise. Moving along it
            decreases the loss to second order: `L(θ + εd) ≈ L(θ) + ε⟨∇L, d⟩ + ε²λ_min/2`.
    """

    kind: str
    grad_norm: float
    min_eigenvalue: float
    max_eigenvalue: float
    escape_direction: Any | None


@jax.jit
def extreme_eigenpairs(alpha: jax.Array, beta: jax.Array, basis: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """`(θ_min, v_min, θ_max, v_max)` (flat unit vectors) of a Lanczos run's tridiagonal matrix."""
    theta, s = tridiagonal_eigh(alpha, beta)
    v_min = jnp.matmul(s[:, 0], basis, precision=jax.lax.Precision.HIGHEST)
    v_max = jnp.matmul(s[:, -1], basis, precision=jax.lax.Precision.HIGHEST)
    tiny = jnp.finfo(basis.dtype).tiny
    v_min = v_min / jnp.maximum(jnp.linalg.norm(v_min), tiny)
    v_max = v_max / jnp.maximum(jnp.linalg.norm(v_max), tiny)
    return theta[0], v_min, theta[-1], v_max


def _zero_tolerance(lam_min: jax.Array, lam_max: jax.Array, eig_tol: Any) -> jax.Array:
    return eig_tol * jnp.maximum(1.0, jnp.maximum(jnp.abs(lam_min), jnp.abs(lam_max)))


def _condition_from_extremes(lam_min: jax.Array, lam_max: jax.Array, eig_tol: Any) -> ConditionNumberReport:
    tol = _zero_tolerance(lam_min, lam_max, eig_tol)
    pos = lam_min > tol
    neg = lam_max < -tol
    indefinite = (lam_min < -tol) & (lam_max > tol)
    code = jnp.where(pos, 0, jnp.where(neg, 1, jnp.where(indefinite, 3, 2))).astype(jnp.int32)
    safe_min = jnp.where(pos, lam_min, 1)
    safe_max = jnp.where(neg, lam_max, 1)
    dtype = jnp.result_type(lam_min)
    kappa = jnp.where(
        pos,
        lam_max / safe_min,
        jnp.where(neg, lam_min / safe_max, jnp.where(indefinite, jnp.nan, jnp.inf)),
    ).astype(dtype)
    return ConditionNumberReport(lambda_max=lam_max, lambda_min=lam_min, condition_number=kappa, kind_code=code)


def condition_number(
    loss: Callable[..., Any],
    params: Any,
    *args: Any,
    num_iters: int = DEFAULT_NUM_ITERS,
    key: jax.Array | None = None,
    eig_tol: float = 1e-6,
    batches: Iterable[Any] | None = None,
) -> ConditionNumberReport:
    """Condition number `κ = λ_max / λ_min` of the Hessian, with a verdict when it does not exist.

    Both extreme eigenvalues come from one Lanczos run of `num_iters` Hessian-vector products.
    The result distinguishes a positive definite Hessian (`κ = λ_max/λ_min`), a negative definite
    one (`κ = λ_min/λ_max`, the ratio of the largest to the smallest magnitude), a singular one
    (an extreme eigenvalue is zero within `eig_tol`, nothing of the opposite sign: `κ = inf`)
    and an indefinite one (`λ_min < 0 < λ_max`: `κ = nan`); it never returns a ratio of
    eigenvalues of different signs. Jit-able (the report's fields are arrays).

    Args:
        loss: scalar function `loss(params, *args)`.
        params: the point, a pytree of float arrays.
        *args: one batch of data for `loss`.
        num_iters: Lanczos steps = Hessian-vector products (static int ≥ 1, clipped to the
            parameter count). Default 100.
        key: PRNG key for the start vector. Default None (`jax.random.PRNGKey(0)`).
        eig_tol: zero tolerance (≥ 0): `|λ| ≤ eig_tol · max(1, |λ_min|, |λ_max|)` counts as 0.
            Default 1e-6.
        batches: instead of `*args`, an iterable of batches (batch-size-weighted). Default None.

    Returns:
        A [`ConditionNumberReport`][gradtx.curvature.ConditionNumberReport]; `.kind` and `.reason`
        explain it.

    References:
        Golub & Van Loan, *Matrix Computations*, 4th ed., §2.6 and §10.1, 2013.
    """
    owner = "condition_number"
    check_real(owner, "eig_tol", eig_tol, low=0.0)
    _check_num_iters(owner, num_iters)
    _, res = run_hessian_lanczos(owner, loss, params, args, batches, key, num_iters)
    lam_min, _, lam_max, _ = extreme_eigenpairs(res.alpha, res.beta, res.basis)
    return _condition_from_extremes(lam_min, lam_max, eig_tol)


def critical_point_core(
    grad: Any, alpha: jax.Array, beta: jax.Array, basis: jax.Array, grad_tol: Any, eig_tol: Any
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array, jax.Array, jax.Array]:
    """Jit-able numeric core of [`classify_critical_point`][gradtx.curvature.classify_critical_point].

    Args:
        grad: the gradient pytree at the point.
        alpha, beta, basis: a Lanczos run on the Hessian at the point.
        grad_tol: gradient-norm tolerance.
        eig_tol: eigenvalue zero tolerance (see the module docstring).

    Returns:
        `(kind_code, grad_norm, λ_min, λ_max, escape (flat unit vector or zeros), has_escape)`, with
        `kind_code` an int32 index into
        [`CRITICAL_POINT_KINDS`][gradtx.curvature.CRITICAL_POINT_KINDS].
    """
    lam_min, v_min, lam_max, _ = extreme_eigenpairs(alpha, beta, basis)
    g_flat = ravel_pytree(grad)[0].astype(basis.dtype)
    grad_norm = global_norm(grad)
    tol = _zero_tolerance(lam_min, lam_max, eig_tol)
    negative = lam_min < -tol
    positive = lam_max > tol
    code = jnp.where(
        grad_norm > grad_tol,
        4,
        jnp.where(
            negative & positive, 2, jnp.where(lam_min > tol, 0, jnp.where(lam_max < -tol, 1, 3))
        ),
    ).astype(jnp.int32)
    # orient: non-increasing to first order; at an exact critical point, largest entry positive
    slope = jnp.vdot(g_flat, v_min)
    pivot = v_min[jnp.argmax(jnp.abs(v_min))]
    sign = jnp.where(slope != 0, -jnp.sign(slope), jnp.where(pivot < 0, -1, 1)).astype(basis.dtype)
    escape = jnp.where(negative, sign * v_min, jnp.zeros_like(v_min))
    return code, grad_norm, lam_min, lam_max, escape, negative


def classify_critical_point(
    loss: Callable[..., Any],
    params: Any,
    *args: Any,
    key: jax.Array | None = None,
    grad_tol: float = 1e-5,
    eig_tol: float = 1e-6,
    num_iters: int = DEFAULT_NUM_ITERS,
    batches: Iterable[Any] | None = None,
) -> CriticalPointReport:
    """Classify `params` as a minimum, maximum, saddle, degenerate or non-critical point of `loss`.

    With `g = ‖∇L(θ)‖₂` and the extreme Hessian eigenvalues `λ_min ≤ λ_max` (one Lanczos run),
    and "zero" meaning within `eig_tol` (see the module docstring):

    * `g > grad_tol` → `"not_critical"`;
    * `λ_min < 0 < λ_max` → `"saddle"` (strict: a direction of negative curvature exists);
    * `λ_min > 0` → `"minimum"` (strict local minimum: Hessian positive definite);
    * `λ_max < 0` → `"maximum"`;
    * otherwise (an extreme eigenvalue is zero and none has the opposite sign) → `"degenerate"`:
      the second-order test is inconclusive (e.g. `x⁴ + y²` or the monkey saddle at 0).

    Runs eagerly and returns Python values; its numeric part,
    [`critical_point_core`][gradtx.curvature.critical_point_core], is jit-able.

    Args:
        loss: scalar function `loss(params, *args)`.
        params: the point, a pytree of float arrays.
        *args: one batch of data for `loss`.
        key: PRNG key for the Lanczos start vector. Default None (`jax.random.PRNGKey(0)`).
        grad_tol: tolerance on the gradient norm (≥ 0). Default 1e-5.
        eig_tol: eigenvalue zero tolerance (≥ 0). Default 1e-6.
        num_iters: Lanczos steps = Hessian-vector products (static int ≥ 1; clipped to the
            parameter count). Default 100.
        batches: instead of `*args`, an iterable of batches (batch-size-weighted). Default None.

    Returns:
        A [`CriticalPointReport`][gradtx.curvature.CriticalPointReport].

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.curvature import classify_critical_point
        >>> report = classify_critical_point(lambda p: p[0] ** 2 - p[1] ** 2, jnp.zeros(2))
        >>> report.kind, [abs(round(float(x), 3)) for x in report.escape_direction]
        ('saddle', [0.0, 1.0])

    References:
        Nocedal & Wright, *Numerical Optimization*, 2nd ed., Thm. 2.3-2.4, 2006. Dauphin et al.,
        *Identifying and attacking the saddle point problem in high-dimensional non-convex
        optimization*, NeurIPS 2014.
    """
    owner = "classify_critical_point"
    check_real(owner, "grad_tol", grad_tol, low=0.0)
    check_real(owner, "eig_tol", eig_tol, low=0.0)
    _check_num_iters(owner, num_iters)
    _dimension(owner, params)
    grad, res = run_hessian_lanczos(owner, loss, params, args, batches, _default_key(key), num_iters)
    code, grad_norm, lam_min, lam_max, escape, has_escape = _core_jit(grad, res.alpha, res.beta, res.basis, grad_tol, eig_tol)
    direction = None
    if bool(has_escape):
        direction = unraveler(params)(escape)
    return CriticalPointReport(
        kind=CRITICAL_POINT_KINDS[int(code)],
        grad_norm=float(grad_norm),
        min_eigenvalue=float(lam_min),
        max_eigenvalue=float(lam_max),
        escape_direction=direction,
    )


_core_jit = jax.jit(critical_point_core)
