"""Curvature diagnostics: condition number and critical-point classification, with error bounds.

Both tools run one Lanczos iteration on the Hessian (see
[`gradtx.curvature.lanczos`][gradtx.curvature.lanczos]), which approximates both ends of the
spectrum at once, `θ_min ≥ λ_min` and `θ_max ≤ λ_max` (Ritz values lie inside the spectrum and
converge to its ends from within), and then two more Hessian-vector products give the residual
norms `r_min = ‖H v_min − θ_min v_min‖` and `r_max` of the two extreme Ritz pairs
(see [`ritz_residuals`][gradtx.curvature.ritz_residuals]); for one batch or `Batched` data the
Lanczos steps and these products share one linearization of the gradient in one compiled call,
which both tools reuse. They bracket the extreme eigenvalues:

$$
\\lambda_{\\min} \\in [\\theta_{\\min} - d_{\\min},\\; \\theta_{\\min}], \\qquad
\\lambda_{\\max} \\in [\\theta_{\\max},\\; \\theta_{\\max} + d_{\\max}].
$$

The inner ends (`θ_min ≥ λ_min`, `θ_max ≤ λ_max`) hold unconditionally: a Ritz value is a
Rayleigh quotient. The outer ends:

* when `num_iters ≥ n` the Krylov space is the whole space, the Ritz values are the eigenvalues
  and `d = r` (Kahan's residual bound, Parlett 1998, Thm. 4.5.1, covers the rounding);
* otherwise a residual alone cannot bound `λ_min`: it only says that *some* eigenvalue lies
  within `r` of `θ_min`, and an eigenvalue that the Krylov space has not yet seen can lie below.
  The outer end is then the Kuczyński-Woźniakowski bound for Lanczos from a random start: with
  probability at least `confidence` (over the start vector), with `m` steps in dimension `n`,

$$
d = \\frac{\\varepsilon\\,(\\theta_{\\max} - \\theta_{\\min})}{1 - 2\\varepsilon}, \\qquad
\\varepsilon = \\Big(\\frac{\\ln(1.648\\sqrt{n}/\\delta)}{2m - 1}\\Big)^2, \\quad
\\delta = \\frac{1 - \\text{confidence}}{2}
$$

  (`d = ∞` when `ε ≥ 1/2`: too few steps to bound anything). It applies their relative-error
  bound `(θ_min − λ_min) ≤ ε (λ_max − λ_min)` to the shifted positive semi-definite matrices
  `λ_max I − H` and `H − λ_min I`, and bounds the width `λ_max − λ_min` by the Ritz width.

Zero test: an extreme eigenvalue `λ` counts as zero when `|λ| ≤ eig_tol · max(1, |θ_min|, |θ_max|)`,
i.e. `eig_tol` is an absolute tolerance for Hessians of norm up to 1 and a relative one above.
A sign is *certain* when the whole interval lies beyond that tolerance on one side, and the value
is *certainly zero* when the whole interval lies within it.

References:
    Parlett, *The Symmetric Eigenvalue Problem*, SIAM, 1998, §4.5. Kuczyński & Woźniakowski,
    *Estimating the largest eigenvalue by the power and Lanczos algorithms with a random start*,
    SIAM J. Matrix Anal. Appl. 13(4), 1992.
"""

from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx._validation import check_real
from gradtx.curvature.critical import (
    CRITICAL_POINT_KINDS,
    CriticalPointReport,
    _curvature_code,
    _is_concrete,
    _zero_tolerance,
    bracket_extremes,
    classify_critical_point,
    critical_point_core,
    extreme_eigenpairs,
)
from gradtx.curvature.lanczos import DEFAULT_NUM_ITERS, _check_num_iters
from gradtx.curvature.residuals import check_confidence, extreme_margins

# classification lives in gradtx.curvature.critical; its public names stay importable from here
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

_REASONS = {
    "positive_definite": "all eigenvalues > 0: κ = λ_max / λ_min",
    "negative_definite": "all eigenvalues < 0: κ = |λ_min| / |λ_max| = λ_min / λ_max",
    "singular": "an extreme eigenvalue is zero within eig_tol and none has the opposite sign: κ = inf",
    "indefinite": "eigenvalues of both signs (λ_min < 0 < λ_max): no condition number, κ = nan",
}


def _certain_code(lo_min: Any, hi_min: Any, lo_max: Any, hi_max: Any, tol: Any) -> jax.Array:
    """Index into CONDITION_KINDS that holds over the intervals, or -1 when none is certain."""
    code = _curvature_code(lo_min, hi_min, lo_max, hi_max, tol)
    return jnp.asarray([0, 1, 3, 2, -1, -1], jnp.int32)[code]


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
        kind_code: int32 index into [`CONDITION_KINDS`][gradtx.curvature.CONDITION_KINDS],
            the verdict of the Ritz values `θ_min`, `θ_max`.
        lambda_min_residual: `r_min = ‖H v_min − θ_min v_min‖`: some eigenvalue lies within it of
            `θ_min` (see the module docstring).
        lambda_max_residual: `r_max`, the same for `θ_max`.
        lambda_min_lower: `θ_min − d_min`, the lower end of the interval holding `λ_min` (`-inf`
            when `num_iters` is too small to bound it; see the module docstring).
        lambda_max_upper: `θ_max + d_max`, the upper end of the interval holding `λ_max`.
        zero_tol: the zero tolerance used, `eig_tol · max(1, |θ_min|, |θ_max|)`.
    """

    lambda_max: jax.Array
    lambda_min: jax.Array
    condition_number: jax.Array
    kind_code: jax.Array
    lambda_min_residual: jax.Array
    lambda_max_residual: jax.Array
    lambda_min_lower: jax.Array
    lambda_max_upper: jax.Array
    zero_tol: jax.Array

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

    @property
    def lambda_min_interval(self) -> tuple[float, float]:
        """`(θ_min − d_min, θ_min)`, the interval holding `λ_min`."""
        return float(self.lambda_min_lower), float(self.lambda_min)

    @property
    def lambda_max_interval(self) -> tuple[float, float]:
        """`(θ_max, θ_max + d_max)`, the interval holding `λ_max`."""
        return float(self.lambda_max), float(self.lambda_max_upper)

    @property
    def is_certain(self) -> bool:
        """True when `kind` holds for every value in both eigenvalue intervals.

        Always true for `"indefinite"` (Ritz values of both signs are Rayleigh quotients of both
        signs); for `"positive_definite"` it needs `θ_min − d_min` above the zero tolerance, for
        `"negative_definite"` `θ_max + d_max` below minus it, and for `"singular"` the zero
        eigenvalue's whole interval within the tolerance and the other end's sign certain.
        """
        lo_min, hi_min = self.lambda_min_interval
        lo_max, hi_max = self.lambda_max_interval
        return bool(_certain_code(lo_min, hi_min, lo_max, hi_max, float(self.zero_tol)) == int(self.kind_code))

    @property
    def condition_interval(self) -> tuple[float, float]:
        """Bounds on the true condition number from the eigenvalue intervals.

        Positive definite: `[θ_max/θ_min, (θ_max + d_max)/(θ_min − d_min)]` (upper end `inf`
        when `θ_min ≤ d_min`); negative definite: the same with magnitudes; `(inf, inf)` when
        singular and `(nan, nan)` when indefinite.
        """
        kind = self.kind
        if kind in ("singular", "indefinite"):
            value = float(self.condition_number)
            return value, value
        (lower, theta_min), (theta_max, upper) = self.lambda_min_interval, self.lambda_max_interval
        if kind == "positive_definite":  # κ = λ_max/λ_min, λ_max ∈ [θ_max, upper], λ_min ∈ [lower, θ_min]
            return theta_max / theta_min, (upper / lower if lower > 0 else float("inf"))
        # negative definite: κ = |λ_min|/|λ_max|, |λ_min| ∈ [|θ_min|, |lower|], |λ_max| ∈ [|upper|, |θ_max|]
        return theta_min / theta_max, (lower / upper if upper < 0 else float("inf"))


@jax.jit
def _condition_from_extremes(lam_min: jax.Array, lam_max: jax.Array, eig_tol: Any,
                             residuals: Any = (0.0, 0.0), margins: Any = (0.0, 0.0)) -> ConditionNumberReport:
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
    r_min, r_max = (jnp.asarray(r, dtype) for r in residuals)
    d_min, d_max = (jnp.asarray(d, dtype) for d in margins)
    return ConditionNumberReport(lambda_max=lam_max, lambda_min=lam_min, condition_number=kappa, kind_code=code,
                                 lambda_min_residual=r_min, lambda_max_residual=r_max,
                                 lambda_min_lower=lam_min - d_min, lambda_max_upper=lam_max + d_max,
                                 zero_tol=tol.astype(dtype))


def condition_number(
    loss: Callable[..., Any],
    params: Any,
    *args: Any,
    num_iters: int = DEFAULT_NUM_ITERS,
    key: jax.Array | None = None,
    eig_tol: float = 1e-6,
    batches: Iterable[Any] | None = None,
    confidence: float = 0.999,
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
        confidence: probability (over the random start vector, `0 < confidence < 1`, a static
            Python float) with which the outer ends of the eigenvalue intervals hold when
            `num_iters < n` (see the module docstring). Default 0.999.

    Returns:
        A [`ConditionNumberReport`][gradtx.curvature.ConditionNumberReport]; `.kind` and `.reason`
        explain it, `.lambda_min_interval`, `.lambda_max_interval` and `.condition_interval` bound
        it, and `.is_certain` says whether the kind holds over those intervals.

    References:
        Golub & Van Loan, *Matrix Computations*, 4th ed., §2.6 and §10.1, 2013.
    """
    owner = "condition_number"
    check_real(owner, "eig_tol", eig_tol, low=0.0)
    check_confidence(owner, confidence)
    _check_num_iters(owner, num_iters)
    _, res, (lam_min, _, lam_max, _), residuals = bracket_extremes(owner, loss, params, args, batches, key, num_iters,
                                                                  gradient=False)
    margins = extreme_margins(lam_min, lam_max, residuals, res.basis.shape[0], res.basis.shape[1], confidence)
    return _condition_from_extremes(lam_min, lam_max, eig_tol, (residuals[0], residuals[1]), margins)
