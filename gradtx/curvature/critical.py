"""Critical points of a loss, classified from certified brackets of the extreme Hessian eigenvalues.

One Lanczos run on the Hessian gives the extreme Ritz pairs `(θ_min, v_min)`, `(θ_max, v_max)`,
and two more Hessian-vector products their residual norms `r_min`, `r_max`; with the margins
`d_min`, `d_max` derived from them (see [`gradtx.curvature.analysis`][gradtx.curvature.analysis]
for the bounds and their assumptions),

$$
\\lambda_{\\min} \\in [\\theta_{\\min} - d_{\\min},\\; \\theta_{\\min}], \\qquad
\\lambda_{\\max} \\in [\\theta_{\\max},\\; \\theta_{\\max} + d_{\\max}].
$$

A sign is certain when an interval lies beyond the zero tolerance on one side, and "zero" is
certain when it lies within it. This module holds those sign verdicts (shared with
[`condition_number`][gradtx.curvature.condition_number]), the Lanczos-plus-residuals run that
produces the brackets (for one batch or `Batched` data a single compiled call: one
linearization of the gradient serves the Lanczos steps and the residual products), and
[`classify_critical_point`][gradtx.curvature.classify_critical_point] with its jit-able core.

References:
    Nocedal & Wright, *Numerical Optimization*, 2nd ed., Thm. 2.3-2.4, 2006. Parlett, *The
    Symmetric Eigenvalue Problem*, SIAM, 1998, §4.5.
"""

import functools
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from gradtx._validation import check_real
from gradtx.curvature.data import is_stream, partition_data, prepare_data, static_callable
from gradtx.curvature.lanczos import (
    DEFAULT_NUM_ITERS,
    LanczosResult,
    _check_num_iters,
    _default_key,
    _dimension,
    _lanczos_flat,
    hessian_ritz_residuals,
    run_hessian_lanczos,
    tridiagonal_eigh,
)
from gradtx.curvature.operators import bound_hessian_operator, flatten_operator, unraveler
from gradtx.curvature.residuals import check_confidence, extreme_margins, ritz_residuals
from gradtx.numerics import global_norm

__all__ = [
    "CRITICAL_POINT_KINDS",
    "CriticalPointReport",
    "classify_critical_point",
    "critical_point_core",
    "extreme_eigenpairs",
]


CRITICAL_POINT_KINDS = ("minimum", "maximum", "saddle", "degenerate", "not_critical", "undecided")
"""Names of the codes returned by [`critical_point_core`][gradtx.curvature.critical_point_core].

`"undecided"` (code 5): the error bound of an extreme eigenvalue straddles the zero tolerance, so
its sign (and with it the kind of point) is not certain; more Lanczos steps (`num_iters`) shrink
the bound."""


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
        min_lower: `θ_min − d_min`: `λ_min ∈ [min_lower, θ_min]` (see
            [`gradtx.curvature.analysis`][gradtx.curvature.analysis];
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


Extremes = tuple[jax.Array, jax.Array, jax.Array, jax.Array]


@functools.partial(jax.jit, static_argnames=("loss", "static", "weights", "num_iters"))
def _hessian_extremes_core(loss, params, arrays, static, weights, key, num_iters: int):
    """Gradient, Lanczos run, extreme Ritz pairs and their residuals of the bound loss's Hessian:
    one linearization, one compile (cached on the loss, the data layout, the shapes, `num_iters`)."""
    grad, lin = bound_hessian_operator(loss, params, arrays, static, weights)
    mv, n, dtype, _ = flatten_operator(lin, params)
    res = _lanczos_flat(mv, n, dtype, min(num_iters, n), key, None)
    extremes = extreme_eigenpairs(res.alpha, res.beta, res.basis)
    values = jnp.stack([extremes[0], extremes[2]])
    return grad, res, extremes, ritz_residuals(lin, params, values, _unravel_pair(params, extremes[1], extremes[3]))


def bracket_extremes(owner: str, loss: Any, params: Any, args: tuple[Any, ...], batches: Any, key: Any,
                     num_iters: int, gradient: bool = True) -> tuple[Any, LanczosResult, Extremes, jax.Array]:
    """`(gradient, LanczosResult, (θ_min, v_min, θ_max, v_max), (r_min, r_max))` for the Hessian of `loss`.

    One batch (`args`) or [`Batched`][gradtx.curvature.Batched] data: one compiled call in which a
    single linearization of the gradient serves the Lanczos steps and the two residual products.
    A stream: the Lanczos steps on the host, then one pass for both residual products (and one
    for the gradient unless `gradient=False`, which then returns None for it).
    """
    loss = static_callable(owner, "loss", loss)
    _check_num_iters(owner, num_iters)
    n = _dimension(owner, params)
    if is_stream(batches):
        batches = list(batches) if isinstance(batches, Iterator) else batches  # read twice below
        grad, res = run_hessian_lanczos(owner, loss, params, args, batches, key, num_iters, gradient=gradient)
        extremes = extreme_eigenpairs(res.alpha, res.beta, res.basis)
        values = jnp.stack([extremes[0], extremes[2]])
        vectors = _unravel_pair(params, extremes[1], extremes[3])
        return grad, res, extremes, hessian_ritz_residuals(owner, loss, params, args, batches, values, vectors)
    data, weights = prepare_data(owner, args, batches)
    arrays, static = partition_data(data)
    # clip before it becomes a static argument, so that e.g. num_iters=100 and 200 share a compile
    return _hessian_extremes_core(loss, params, arrays, static, weights, _default_key(key), min(num_iters, n))


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
        eig_tol: eigenvalue zero tolerance (see [`gradtx.curvature.analysis`][gradtx.curvature.analysis]).
        margins: `(d_min, d_max)`: the extreme eigenvalues are known to lie in
            `[θ_min − d_min, θ_min]` and `[θ_max, θ_max + d_max]` (see [`gradtx.curvature.analysis`][gradtx.curvature.analysis]), and
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
    residual products (see [`gradtx.curvature.analysis`][gradtx.curvature.analysis]),

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
            `num_iters < n` (see [`gradtx.curvature.analysis`][gradtx.curvature.analysis]). Default 0.999.

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
    grad, res, (lam_min, _, lam_max, _), residuals = bracket_extremes(owner, loss, params, args, batches, key,
                                                                     num_iters)
    margins = extreme_margins(lam_min, lam_max, residuals, res.basis.shape[0], res.basis.shape[1], confidence)
    (code, grad_norm, lam_min, lam_max, escape, has_escape), curvature, tol, (lower, upper) = _classify_numbers(
        grad, res.alpha, res.beta, res.basis, grad_tol, eig_tol, margins)
    direction = None
    if bool(has_escape):
        direction = _unravel_flat(params, escape)
    return CriticalPointReport(
        kind=CRITICAL_POINT_KINDS[int(code)],
        grad_norm=float(grad_norm),
        min_eigenvalue=float(lam_min),
        max_eigenvalue=float(lam_max),
        escape_direction=direction,
        min_residual=float(residuals[0]),
        max_residual=float(residuals[1]),
        min_lower=float(lower),
        max_upper=float(upper),
        curvature_kind=CRITICAL_POINT_KINDS[int(curvature)],
        grad_tol=float(grad_tol),
        zero_tol=float(tol),
    )


@jax.jit
def _classify_numbers(grad: Any, alpha: jax.Array, beta: jax.Array, basis: jax.Array, grad_tol: Any, eig_tol: Any,
                      margins: Any) -> tuple[Any, jax.Array, jax.Array, tuple[jax.Array, jax.Array]]:
    """`critical_point_core`'s outputs, the gradient-free curvature code, the zero tolerance and the
    interval ends `(θ_min − d_min, θ_max + d_max)`: one compiled call for the report's numbers."""
    margins = jnp.stack([jnp.asarray(margins[0], basis.dtype), jnp.asarray(margins[1], basis.dtype)])
    out = critical_point_core(grad, alpha, beta, basis, grad_tol, eig_tol, margins)
    curvature = critical_point_core(grad, alpha, beta, basis, jnp.inf, eig_tol, margins)[0]
    return out, curvature, _zero_tolerance(out[2], out[3], eig_tol), (out[2] - margins[0], out[3] + margins[1])


@jax.jit
def _unravel_flat(params: Any, x: jax.Array) -> Any:
    return unraveler(params)(x)
