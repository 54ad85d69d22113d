"""Curvature diagnostics: condition number and critical-point classification, with error bounds.

Both tools run one Lanczos iteration on the Hessian (see
[`gradtx.curvature.lanczos`][gradtx.curvature.lanczos]), which approximates both ends of the
spectrum at once, `θ_min ≥ λ_min` and `θ_max ≤ λ_max` (Ritz values lie inside the spectrum and
converge to its ends from within), and then two more Hessian-vector products give the residual
norms `r_min = ‖H v_min − θ_min v_min‖` and `r_max` of the two extreme Ritz pairs
(see [`ritz_residuals`][gradtx.curvature.ritz_residuals]). They bracket the extreme eigenvalues:

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

from collections.abc import Callable, Iterable, Iterator
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
    hessian_ritz_residuals,
    run_hessian_lanczos,
    tridiagonal_eigh,
)
from gradtx.curvature.operators import unraveler
from gradtx.curvature.residuals import check_confidence, extreme_margins
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

CRITICAL_POINT_KINDS = ("minimum", "maximum", "saddle", "degenerate", "not_critical", "undecided")
"""Names of the codes returned by [`critical_point_core`][gradtx.curvature.critical_point_core].

`"undecided"` (code 5): the error bound of an extreme eigenvalue straddles the zero tolerance, so
its sign (and with it the kind of point) is not certain; more Lanczos steps (`num_iters`) shrink
the bound."""

_REASONS = {
    "positive_definite": "all eigenvalues > 0: κ = λ_max / λ_min",
    "negative_definite": "all eigenvalues < 0: κ = |λ_min| / |λ_max| = λ_min / λ_max",
    "singular": "an extreme eigenvalue is zero within eig_tol and none has the opposite sign: κ = inf",
    "indefinite": "eigenvalues of both signs (λ_min < 0 < λ_max): no condition number, κ = nan",
}


def _is_concrete(x: Any) -> bool:
    return not isinstance(x, jax.core.Tracer)


_NEG, _ZERO, _POS, _UNSURE = 0, 1, 2, 3


def _sign_code(lo: Any, hi: Any, tol: Any) -> jax.Array:
    """Sign of a value known to lie in `[lo, hi]`: certainly < −tol, within ±tol, > tol, or unsure."""
    return jnp.where(hi < -tol, _NEG, jnp.where(lo > tol, _POS, jnp.where((lo >= -tol) & (hi <= tol), _ZERO, _UNSURE)))


def _curvature_code(lo_min: Any, hi_min: Any, lo_max: Any, hi_max: Any, tol: Any) -> jax.Array:
    """Index into CRITICAL_POINT_KINDS of what the eigenvalue intervals say (gradient ignored)."""
    s_min, s_max = _sign_code(lo_min, hi_min, tol), _sign_code(lo_max, hi_max, tol)
    known = (s_min != _UNSURE) & (s_max != _UNSURE)
    return jnp.where(
        (s_min == _NEG) & (s_max == _POS), 2,
        jnp.where(s_min == _POS, 0, jnp.where(s_max == _NEG, 1, jnp.where(known, 3, 5))),
    ).astype(jnp.int32)


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


class CriticalPointReport(NamedTuple):
    """What kind of point `params` is for `loss`, with the gradient norm and eigenvalue bounds.

    Attributes:
        kind: `"minimum"`, `"maximum"`, `"saddle"`, `"degenerate"`, `"undecided"` or
            `"not_critical"` (`‖∇L‖ > grad_tol`; `curvature_kind` still says what the Hessian is).
        grad_norm: `‖∇L(θ)‖₂` over all leaves.
        min_eigenvalue: the Ritz value `θ_min`, an upper bound on `λ_min(∇²L(θ))`.
        max_eigenvalue: the Ritz value `θ_max`, a lower bound on `λ_max(∇²L(θ))`.
        escape_direction: unit pytree like `params` along the eigenvector of `min_eigenvalue`
            when that eigenvalue is negative (beyond the tolerance), oriented so that it does not
            increase the loss to first order (`⟨∇L, d⟩ ≤ 0`); None otherwise. Moving along it
            decreases the loss to second order: `L(θ + εd) ≈ L(θ) + ε⟨∇L, d⟩ + ε²λ_min/2`.
        min_residual: `r_min = ‖H v_min − θ_min v_min‖`: some eigenvalue lies within it of `θ_min`.
        max_residual: `r_max`, the same for `θ_max`.
        min_lower: `θ_min − d_min`: `λ_min ∈ [min_lower, θ_min]` (see the module docstring;
            `-inf` when `num_iters` is too small to bound it).
        max_upper: `θ_max + d_max`: `λ_max ∈ [θ_max, max_upper]`.
        curvature_kind: the verdict of the eigenvalue intervals alone, as if the gradient were
            zero: `"minimum"` (Hessian positive definite), `"maximum"`, `"saddle"` (indefinite),
            `"degenerate"` or `"undecided"`. Equal to `kind` at a critical point.
        grad_tol: the gradient tolerance the verdict used.
        zero_tol: the eigenvalue zero tolerance used, `eig_tol · max(1, |θ_min|, |θ_max|)`.
    """

    kind: str
    grad_norm: float
    min_eigenvalue: float
    max_eigenvalue: float
    escape_direction: Any | None
    min_residual: float = 0.0
    max_residual: float = 0.0
    min_lower: float = float("-inf")
    max_upper: float = float("inf")
    curvature_kind: str = ""
    grad_tol: float = 0.0
    zero_tol: float = 0.0

    @property
    def min_interval(self) -> tuple[float, float]:
        """`(θ_min − d_min, θ_min)`, the interval holding `λ_min`."""
        return self.min_lower, self.min_eigenvalue

    @property
    def max_interval(self) -> tuple[float, float]:
        """`(θ_max, θ_max + d_max)`, the interval holding `λ_max`."""
        return self.max_eigenvalue, self.max_upper

    @property
    def summary(self) -> str:
        """One line: the verdict, the gradient norm against `grad_tol`, and both eigenvalue intervals."""
        lo, hi = self.min_interval
        lo2, hi2 = self.max_interval
        bounds = f"λ_min in [{lo:.4g}, {hi:.4g}], λ_max in [{lo2:.4g}, {hi2:.4g}]"
        if self.kind == "not_critical":
            head = (f"not critical (gradient norm {self.grad_norm:.3g} > grad_tol {self.grad_tol:.3g}); "
                    f"the Hessian there says: {_CURVATURE_WORDS[self.curvature_kind]}")
        else:
            head = (f"{self.kind} (gradient norm {self.grad_norm:.3g} <= grad_tol {self.grad_tol:.3g}; "
                    f"{_CURVATURE_WORDS[self.kind]})")
        return f"{head}; {bounds}"


_CURVATURE_WORDS = {
    "minimum": "positive definite",
    "maximum": "negative definite",
    "saddle": "indefinite, a direction of negative curvature exists",
    "degenerate": "semi-definite with a zero eigenvalue, the second-order test is inconclusive",
    "undecided": "the sign of an extreme eigenvalue is not certain within its bound; raise num_iters",
    "": "unknown",
}


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
    batches = list(batches) if isinstance(batches, Iterator) else batches  # read twice below
    _, res = run_hessian_lanczos(owner, loss, params, args, batches, key, num_iters)
    lam_min, v_min, lam_max, v_max = extreme_eigenpairs(res.alpha, res.beta, res.basis)
    residuals = _extreme_residuals(owner, loss, params, args, batches, lam_min, v_min, lam_max, v_max)
    margins = extreme_margins(lam_min, lam_max, residuals, res.basis.shape[0], res.basis.shape[1], confidence)
    return _condition_from_extremes(lam_min, lam_max, eig_tol, (residuals[0], residuals[1]), margins)


def _extreme_residuals(owner: str, loss: Any, params: Any, args: tuple[Any, ...], batches: Any, lam_min: jax.Array,
                       v_min: jax.Array, lam_max: jax.Array, v_max: jax.Array) -> jax.Array:
    """`(r_min, r_max)` of the two extreme Ritz pairs, from two explicit Hessian-vector products."""
    vectors = _unravel_pair(params, v_min, v_max)
    return hessian_ritz_residuals(owner, loss, params, args, batches,
                                  jnp.stack([lam_min, lam_max]), vectors)


@jax.jit
def _unravel_pair(params: Any, v_min: jax.Array, v_max: jax.Array) -> Any:
    return jax.vmap(unraveler(params))(jnp.stack([v_min, v_max]))


def critical_point_core(
    grad: Any, alpha: jax.Array, beta: jax.Array, basis: jax.Array, grad_tol: Any, eig_tol: Any,
    margins: Any = None,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array, jax.Array, jax.Array]:
    """Jit-able numeric core of [`classify_critical_point`][gradtx.curvature.classify_critical_point].

    Args:
        grad: the gradient pytree at the point.
        alpha, beta, basis: a Lanczos run on the Hessian at the point.
        grad_tol: gradient-norm tolerance.
        eig_tol: eigenvalue zero tolerance (see the module docstring).
        margins: `(d_min, d_max)`: the extreme eigenvalues are known to lie in
            `[θ_min − d_min, θ_min]` and `[θ_max, θ_max + d_max]` (see the module docstring), and
            the verdict is `"undecided"` when a sign is not certain over its interval. Default
            None: the Ritz values are taken as exact (margins 0).

    Returns:
        `(kind_code, grad_norm, λ_min, λ_max, escape (flat unit vector or zeros), has_escape)`, with
        `kind_code` an int32 index into
        [`CRITICAL_POINT_KINDS`][gradtx.curvature.CRITICAL_POINT_KINDS].
    """
    lam_min, v_min, lam_max, _ = extreme_eigenpairs(alpha, beta, basis)
    g_flat = ravel_pytree(grad)[0].astype(basis.dtype)
    grad_norm = global_norm(grad)
    tol = _zero_tolerance(lam_min, lam_max, eig_tol)
    d_min, d_max = (0.0, 0.0) if margins is None else (margins[0], margins[1])
    negative = lam_min < -tol
    curvature = _curvature_code(lam_min - d_min, lam_min, lam_max, lam_max + d_max, tol)
    code = jnp.where(grad_norm > grad_tol, 4, curvature).astype(jnp.int32)
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
    confidence: float = 0.999,
) -> CriticalPointReport:
    """Classify `params` as a minimum, maximum, saddle, degenerate or non-critical point of `loss`.

    With `g = ‖∇L(θ)‖₂` and the extreme Hessian eigenvalues bracketed by one Lanczos run and two
    residual products (see the module docstring),

    $$
    \\lambda_{\\min} \\in [\\theta_{\\min} - r_{\\min},\\; \\theta_{\\min}], \\qquad
    \\lambda_{\\max} \\in [\\theta_{\\max},\\; \\theta_{\\max} + r_{\\max}],
    $$

    and "zero" meaning within the zero tolerance `eig_tol · max(1, |θ_min|, |θ_max|)`:

    * `g > grad_tol` → `"not_critical"` (`curvature_kind` still gives the Hessian's verdict);
    * `λ_min < 0 < λ_max` → `"saddle"` (a direction of negative curvature exists; certified by
      the Ritz values alone, which are Rayleigh quotients);
    * `λ_min > 0` over its whole interval → `"minimum"` (strict local minimum);
    * `λ_max < 0` over its whole interval → `"maximum"`;
    * both signs certain but an extreme eigenvalue zero (and none of the opposite sign) →
      `"degenerate"`: the second-order test is inconclusive (e.g. `x⁴ + y²`, the monkey saddle);
    * otherwise → `"undecided"`: an interval straddles the tolerance, so the sign is not certain
      (typically an unconverged smallest eigenvalue: raise `num_iters`). It never guesses.

    **Choosing `grad_tol`.** The default 1e-5 asks for a stationary point to optimizer precision
    (full-batch training, a Newton or L-BFGS solution). A network trained by stochastic gradients
    stops where the gradient noise balances the step, not at `∇L = 0`: the trained digits MLP of
    `examples/train_digits.py` has `‖∇L‖ ≈ 1.3e-3` on its training subset, and is "not critical"
    at 1e-5. Two scale-aware choices: (a) the gradient's own sampling error, `σ/√N` with `σ²` the
    mean squared deviation of the per-example gradients from their mean (`jax.vmap(jax.grad)`):
    a mean gradient below it is zero to the data's resolution; (b) compare the first- with the
    second-order term of `L(θ + εd) ≈ L(θ) + ε⟨∇L, d⟩ + ε²λ/2`: curvature `λ` dominates beyond the
    distance `ε ≈ 2‖∇L‖/|λ|`, so the verdict describes the landscape at distances much larger than
    that. Either way `summary` prints the gradient norm next to the verdict and
    `curvature_kind` gives the Hessian's answer ("minimum", "saddle", ...) whatever `grad_tol` is.

    Runs eagerly and returns Python values; its numeric part,
    [`critical_point_core`][gradtx.curvature.critical_point_core], is jit-able.

    Args:
        loss: scalar function `loss(params, *args)`.
        params: the point, a pytree of float arrays.
        *args: one batch of data for `loss`.
        key: PRNG key for the Lanczos start vector. Default None (`jax.random.PRNGKey(0)`).
        grad_tol: tolerance on the gradient norm (≥ 0, absolute; see above). Default 1e-5.
        eig_tol: eigenvalue zero tolerance (≥ 0). Default 1e-6.
        num_iters: Lanczos steps = Hessian-vector products (static int ≥ 1; clipped to the
            parameter count). Default 100. Two more products give the residuals.
        batches: instead of `*args`, an iterable of batches (batch-size-weighted). Default None.
        confidence: probability (over the random start vector, `0 < confidence < 1`, a static
            Python float) with which the outer ends of the eigenvalue intervals hold when
            `num_iters < n` (see the module docstring). Default 0.999.

    Returns:
        A [`CriticalPointReport`][gradtx.curvature.CriticalPointReport]; `.summary` is a one-line
        answer with the gradient norm and both eigenvalue intervals.

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
    check_confidence(owner, confidence)
    _check_num_iters(owner, num_iters)
    _dimension(owner, params)
    batches = list(batches) if isinstance(batches, Iterator) else batches  # read twice below
    grad, res = run_hessian_lanczos(owner, loss, params, args, batches, _default_key(key), num_iters)
    lam_min, v_min, lam_max, v_max = extreme_eigenpairs(res.alpha, res.beta, res.basis)
    residuals = _extreme_residuals(owner, loss, params, args, batches, lam_min, v_min, lam_max, v_max)
    d_min, d_max = extreme_margins(lam_min, lam_max, residuals, res.basis.shape[0], res.basis.shape[1], confidence)
    margins = jnp.stack([jnp.asarray(d_min, lam_min.dtype), jnp.asarray(d_max, lam_min.dtype)])
    (code, grad_norm, lam_min, lam_max, escape, has_escape), curvature, tol = _classify_numbers(
        grad, res.alpha, res.beta, res.basis, grad_tol, eig_tol, margins)
    direction = None
    if bool(has_escape):
        direction = unraveler(params)(escape)
    return CriticalPointReport(
        kind=CRITICAL_POINT_KINDS[int(code)],
        grad_norm=float(grad_norm),
        min_eigenvalue=float(lam_min),
        max_eigenvalue=float(lam_max),
        escape_direction=direction,
        min_residual=float(residuals[0]),
        max_residual=float(residuals[1]),
        min_lower=float(lam_min - margins[0]),
        max_upper=float(lam_max + margins[1]),
        curvature_kind=CRITICAL_POINT_KINDS[int(curvature)],
        grad_tol=float(grad_tol),
        zero_tol=float(tol),
    )


@jax.jit
def _classify_numbers(grad: Any, alpha: jax.Array, beta: jax.Array, basis: jax.Array, grad_tol: Any, eig_tol: Any,
                      margins: jax.Array) -> tuple[Any, jax.Array, jax.Array]:
    """`critical_point_core`'s outputs, the gradient-free curvature code and the zero tolerance."""
    out = critical_point_core(grad, alpha, beta, basis, grad_tol, eig_tol, margins)
    curvature = critical_point_core(grad, alpha, beta, basis, jnp.inf, eig_tol, margins)[0]
    return out, curvature, _zero_tolerance(out[2], out[3], eig_tol)
