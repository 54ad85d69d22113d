r"""Zoom line search: a step size meeting the strong Wolfe conditions (Nocedal & Wright 3.5, 3.6).

The search has two phases. It first tries growing step sizes until an interval is known to
contain an acceptable one (or one is met); it then *zooms*: it shrinks that interval by cubic,
quadratic or bisection steps until a step size satisfies both conditions. Near a minimizer, where
the Armijo test cannot see a decrease below float precision, it uses Hager & Zhang's approximate
decrease test. Every arithmetic step is optax 0.2.8's, in optax's order.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradtx import _validation as _v
from gradtx.base import GradientTransformation, Params, Updates, describe
from gradtx.linesearch import common as _c
from gradtx.numerics import tree_zeros_like

__all__ = ["ScaleByZoomLinesearchState", "ZoomLinesearchInfo", "scale_by_zoom_linesearch"]


class ZoomLinesearchInfo(NamedTuple):
    """What the last zoom search did (for debugging).

    A positive `curvature_error` alone is benign (often the step was capped by
    `max_learning_rate`); a positive `decrease_error` means the objective may not have decreased.
    """

    num_linesearch_steps: jax.Array  # int: objective evaluations made
    decrease_error: jax.Array  # float: 0 when the step decreases the objective enough
    curvature_error: jax.Array  # float: 0 when the slope at the step is small enough


class ScaleByZoomLinesearchState(NamedTuple):
    """State of [`scale_by_zoom_linesearch`][gradtx.scale_by_zoom_linesearch]."""

    learning_rate: jax.Array  # the step size accepted at the last update (1.0 at init)
    value: jax.Array  # the objective at the accepted step (+inf at init)
    grad: Updates  # its gradient (zeros at init)
    info: ZoomLinesearchInfo


class _Search(NamedTuple):
    """The carry of the search loop (the names of Nocedal & Wright's algorithms 3.5 and 3.6)."""

    count: jax.Array  # type: ignore[assignment]  # optax's field name (shadows tuple.count)
    # fixed during one search
    params: Params
    updates: Updates
    stepsize_guess: jax.Array
    # the last step size tried
    stepsize: jax.Array
    value: jax.Array
    grad: Updates
    slope: jax.Array
    # at step size 0
    value_init: jax.Array
    slope_init: jax.Array
    # violations of the two conditions at the last step size (0 when met)
    decrease_error: jax.Array
    curvature_error: jax.Array
    error: jax.Array
    # phase and stopping flags
    interval_found: jax.Array
    done: jax.Array
    failed: jax.Array
    # the bracket: `low` has the smaller value (it is not necessarily the smaller step size)
    low: jax.Array
    value_low: jax.Array
    slope_low: jax.Array
    high: jax.Array
    value_high: jax.Array
    slope_high: jax.Array
    cubic_ref: jax.Array  # third point of the cubic interpolation
    value_cubic_ref: jax.Array
    # the best step size met so far that decreases the objective enough (0 if none)
    safe_stepsize: jax.Array
    safe_value: jax.Array
    safe_grad: Updates


def _cubic_minimizer(a, fa, fpa, b, fb, c, fc):
    """The critical point of the cubic through `(a, fa)`, `(b, fb)`, `(c, fc)` with slope `fpa` at `a`.

    NaN when the cubic has none (then the caller falls back to another point).
    """
    db, dc = b - a, c - a
    denom = (db * dc) ** 2 * (db - dc)
    system = jnp.array([[dc**2, -(db**2)], [-(dc**3), db**3]])
    rhs = jnp.array([fb - fa - fpa * db, fc - fa - fpa * dc])
    cubic, quad = jnp.dot(system, rhs, precision=jax.lax.Precision.HIGHEST) / denom
    radical = quad * quad - 3.0 * cubic * fpa
    return a + (-quad + jnp.sqrt(radical)) / (3.0 * cubic)


def _quadratic_minimizer(a, fa, fpa, b, fb):
    """The critical point of the parabola through `(a, fa)`, `(b, fb)` with slope `fpa` at `a`."""
    db = b - a
    curvature = (fb - fa - fpa * db) / (db**2)
    return a - fpa / (2.0 * curvature)


def _zoom_search(max_steps, max_stepsize, tol, increase_factor, slope_rtol, curv_rtol, approx_dec_rtol,
                 interval_threshold, verbose):
    """`(start, step, keep_going)`: the search as the state, body and condition of a while loop."""

    def on_line(value_and_grad, params, stepsize, updates, fn_kwargs):
        value, grad = value_and_grad(_c.add_scale(params, stepsize, updates), **fn_kwargs)
        return value, grad, _c.real(_c.vdot(_c.conj(grad), updates))

    def decrease_error(stepsize, value, slope, value_init, slope_init):
        # Armijo: f(eta) <= f(0) + c1 eta f'(0)  (Nocedal & Wright eq. 3.7a)
        error = value - value_init - slope_rtol * stepsize * slope_init
        if approx_dec_rtol is not None:
            # Hager & Zhang's approximate test f'(eta) <= (2 c1 - 1) f'(0) (their eq. 23), used only
            # where the value is already within approx_dec_rtol |f(0)| of f(0) (their eqs. 26-27)
            approx = slope - (2 * slope_rtol - 1.0) * slope_init
            close = value - value_init - approx_dec_rtol * jnp.abs(value_init)
            error = jnp.minimum(jnp.maximum(approx, close), error)
        error = jnp.maximum(error, 0.0)
        return jnp.where(jnp.isnan(error), jnp.inf, error)

    def curvature_error(slope, slope_init):
        # strong Wolfe: |f'(eta)| <= c2 |f'(0)|  (eq. 3.7b)
        error = jnp.maximum(jnp.abs(slope) - curv_rtol * jnp.abs(slope_init), 0.0)
        return jnp.where(jnp.isnan(error), jnp.inf, error)

    def widen(s: _Search, value_and_grad, fn_kwargs) -> _Search:
        """Algorithm 3.5: try a larger step size, until an interval holding a good one is known."""
        stepsize = jnp.where(s.count == 0, s.stepsize_guess, increase_factor * s.stepsize)
        if max_stepsize is not None:
            at_max = stepsize >= max_stepsize
            stepsize = jnp.minimum(stepsize, max_stepsize)
        else:
            at_max = jnp.asarray(False)
        value, grad, slope = on_line(value_and_grad, s.params, stepsize, s.updates, fn_kwargs)
        dec = decrease_error(stepsize, value, slope, s.value_init, s.slope_init)
        curv = curvature_error(slope, s.slope_init)
        error = jnp.maximum(dec, curv)
        safe_stepsize, safe_value, safe_grad = _c.where(
            dec <= tol, [stepsize, value, grad], [s.safe_stepsize, s.safe_value, s.safe_grad]
        )
        # the new point ends the interval when it does not decrease enough or rises again ...
        new_is_high = (dec > 0.0) | ((value >= s.value) & (s.count > 0))
        # ... or it becomes its low end when the objective rises after it
        new_is_low = (slope >= 0.0) & (~new_is_high)
        previous, new = [s.stepsize, s.value, s.slope], [stepsize, value, slope]
        low, value_low, slope_low, high, value_high, slope_high = _c.where(
            new_is_low, new + previous, previous + new
        )
        interval_found = new_is_high | new_is_low | (error <= tol)
        # at the largest step size without an interval: the curvature condition cannot be met
        capped = at_max & ~interval_found
        done = (error <= tol) | capped
        if verbose:
            _c.print_if(
                capped,
                "INFO: gradtx.scale_by_zoom_linesearch: the largest step size allowed "
                "({stepsize}) decreases the objective enough but the slope is still steep "
                "(curvature error {curvature_error}); taking it. Consider raising max_learning_rate.",
                stepsize=stepsize, curvature_error=curv,
            )
        new_state = _Search(
            _c.increment(s.count), s.params, s.updates, s.stepsize_guess,
            stepsize, value, grad, slope, s.value_init, s.slope_init, dec, curv, error,
            jnp.asarray(interval_found), jnp.asarray(done), jnp.asarray((s.count + 1 >= max_steps) & (~done)),
            low, value_low, slope_low, high, value_high, slope_high, low, value_low,
            safe_stepsize, safe_value, safe_grad,
        )
        return _c.cast_like(new_state, s)

    def zoom(s: _Search, value_and_grad, fn_kwargs) -> _Search:
        """Algorithm 3.6: shrink the interval around a step size meeting both conditions."""
        width = jnp.abs(s.high - s.low)
        left, right = jnp.minimum(s.high, s.low), jnp.maximum(s.high, s.low)
        cubic_margin, quad_margin = 0.2 * width, 0.1 * width
        too_narrow = width <= interval_threshold
        # the trial point: cubic interpolation if well inside, else quadratic, else bisection
        cubic = _cubic_minimizer(s.low, s.value_low, s.slope_low, s.high, s.value_high, s.cubic_ref,
                                 s.value_cubic_ref)
        use_cubic = (cubic > left + cubic_margin) & (cubic < right - cubic_margin)
        quad = _quadratic_minimizer(s.low, s.value_low, s.slope_low, s.high, s.value_high)
        use_quad = (~use_cubic) & ((quad > left + quad_margin) & (quad < right - quad_margin))
        use_bisection = (~use_cubic) & (~use_quad)
        middle = jnp.where(use_cubic, cubic, s.cubic_ref)
        middle = jnp.where(use_quad, quad, middle)
        middle = jnp.where(use_bisection, (s.low + s.high) / 2.0, middle)

        value, grad, slope = on_line(value_and_grad, s.params, middle, s.updates, fn_kwargs)
        dec = decrease_error(middle, value, slope, s.value_init, s.slope_init)
        curv = curvature_error(slope, s.slope_init)
        error = jnp.maximum(dec, curv)
        # keep the lowest point with sufficient decrease, in case curvature is never met
        better_safe = (dec <= tol) & (value < s.safe_value)
        safe_stepsize, safe_value, safe_grad = _c.where(
            better_safe, [middle, value, grad], [s.safe_stepsize, s.safe_value, s.safe_grad]
        )
        done = error <= tol
        middle_is_high = (dec > 0.0) | (value >= s.value_low)
        low_is_high = (slope * (s.high - s.low) >= 0.0) & (~middle_is_high)
        new_point = [middle, value, slope]
        high_end = _c.where(middle_is_high, new_point, [s.high, s.value_high, s.slope_high])
        high, value_high, slope_high = _c.where(low_is_high, [s.low, s.value_low, s.slope_low], high_end)
        low, value_low, slope_low = _c.where(~middle_is_high, new_point, [s.low, s.value_low, s.slope_low])
        # the end point that was replaced becomes the third point of the next cubic
        cubic_ref, value_cubic_ref = _c.where(
            middle_is_high | low_is_high, [s.high, s.value_high], [s.low, s.value_low]
        )
        # stop when out of steps, or when the interval is too narrow and a safe step exists (a
        # very steep objective may need a tiny step: without one the search goes on)
        give_up = jnp.asarray((s.count + 1) >= max_steps) | (too_narrow & (safe_stepsize > 0.0))
        new_state = _Search(
            _c.increment(s.count), s.params, s.updates, s.stepsize_guess,
            middle, value, grad, slope, s.value_init, s.slope_init, dec, curv, error,
            s.interval_found, done, give_up & ~done,
            low, value_low, slope_low, high, value_high, slope_high, cubic_ref, value_cubic_ref,
            safe_stepsize, safe_value, safe_grad,
        )
        return _c.cast_like(new_state, s)

    def diagnose(s: _Search) -> None:
        jax.debug.print("gradtx.scale_by_zoom_linesearch failed: no step size decreases the objective enough.")
        descent = s.slope_init < 0.0
        _c.print_if(~descent, "The update is not a descent direction: the slope at step size 0 is "
                    "{slope_init} (it must be negative).", slope_init=s.slope_init)
        _c.print_if(descent, "Consider raising max_linesearch_steps.")
        eps = jnp.finfo(jnp.float32).eps
        _c.print_if((s.stepsize < eps) & descent, "The step size reached ({stepsize}) is below float32 "
                    "precision ({eps}); consider float64 (jax.config.update('jax_enable_x64', True)).",
                    stepsize=s.stepsize, eps=eps)
        _c.print_if((jnp.abs(s.slope_init) > 1e16) & descent, "The slope at step size 0 is huge "
                    "(|slope| = {abs_slope}): the objective is badly conditioned; rescale the params or "
                    "start closer to a solution.", abs_slope=jnp.abs(s.slope_init))
        outside = jnp.isinf(s.decrease_error)
        _c.print_if(outside, "The objective is infinite or NaN at every step size tried: no step is taken.")
        _c.print_if(~outside, "Taking a step that does not decrease the objective enough: the solver "
                    "may not converge.")

    def fall_back(s: _Search) -> _Search:
        """The search failed: take the best safe step if there is one (or 0 if all values are bad)."""
        outside = jnp.isinf(s.decrease_error)
        stepsize, value, grad = _c.where(
            (s.safe_stepsize > 0.0) | outside, [s.safe_stepsize, s.safe_value, s.safe_grad],
            [s.stepsize, s.value, s.grad],
        )
        if verbose:
            jax.debug.print(
                "INFO: gradtx.scale_by_zoom_linesearch:\nValue at current params: {value_init}\n"
                "Slope along the update direction: {slope_init}\nStep size reached: {stepsize}\n"
                "Decrease error: {decrease_error}\nCurvature error: {curvature_error}",
                value_init=s.value_init, slope_init=s.slope_init, stepsize=s.stepsize,
                decrease_error=s.decrease_error, curvature_error=s.curvature_error, ordered=True,
            )
            width = jnp.abs(s.low - s.high)
            _c.print_if(width <= interval_threshold, "The interval searched ({width}) is narrower than "
                        "stepsize_precision.", width=width)
            jax.lax.cond(
                s.safe_stepsize > 0.0,
                lambda _: jax.debug.print("Taking the step size {safe_stepsize}, which decreases the "
                                          "objective enough but does not meet the curvature condition.",
                                          safe_stepsize=s.safe_stepsize),
                diagnose,
                s,
            )
        return _c.cast_like(s._replace(stepsize=stepsize, grad=grad, value=value), s)

    def start(updates, params, *, value, grad, prev_stepsize, initial_guess_strategy) -> _Search:
        guess = jnp.asarray(1.0) if initial_guess_strategy == "one" else prev_stepsize
        slope = _c.real(_c.vdot(updates, grad))
        zero, inf, false = jnp.asarray(0.0), jnp.asarray(jnp.inf), jnp.asarray(False)
        return _Search(
            jnp.asarray(0), params, updates, guess,
            jnp.asarray(0.0, dtype=_c.real_dtype(params)), jnp.array(value, dtype=_c.real_dtype(params)),
            grad, slope, value, slope, inf, inf, inf, false, false, false,
            zero, value, slope, zero, value, slope, zero, value,
            zero, value, grad,
        )

    def step(s: _Search, *, value_and_grad, fn_kwargs) -> _Search:
        phase = functools.partial
        new = jax.lax.cond(
            s.interval_found,
            phase(zoom, value_and_grad=value_and_grad, fn_kwargs=fn_kwargs),
            phase(widen, value_and_grad=value_and_grad, fn_kwargs=fn_kwargs),
            s,
        )
        new = jax.lax.cond(new.failed, fall_back, lambda x: x, new)
        return _c.cast_like(new, s)

    def keep_going(s: _Search) -> jax.Array:
        return ~(s.done | s.failed)

    return start, step, keep_going


def _check(owner, max_linesearch_steps, max_learning_rate, tol, increase_factor, slope_rtol, curv_rtol,
           approx_dec_rtol, stepsize_precision, initial_guess_strategy, verbose) -> None:
    _v.check_int(owner, "max_linesearch_steps", max_linesearch_steps, low=1)
    if max_learning_rate is not None:
        _v.check_real(owner, "max_learning_rate", max_learning_rate, low=0.0, low_inclusive=False)
    _v.check_real(owner, "tol", tol, low=0.0)
    _v.check_real(owner, "increase_factor", increase_factor, low=1.0, low_inclusive=False)
    _v.check_real(owner, "slope_rtol", slope_rtol, low=0.0, high=1.0, high_inclusive=False)
    if not (isinstance(curv_rtol, float) and curv_rtol == float("inf")):  # inf: no curvature test
        _v.check_real(owner, "curv_rtol", curv_rtol, low=0.0, low_inclusive=False)
    if not (_v.is_traced(slope_rtol) or _v.is_traced(curv_rtol)) and float(slope_rtol) >= float(curv_rtol):
        raise ValueError(
            f"{owner}: curv_rtol must be larger than slope_rtol (0 <= slope_rtol < curv_rtol, else "
            f"no step size may meet both conditions), got slope_rtol={slope_rtol!r}, curv_rtol={curv_rtol!r}"
        )
    if approx_dec_rtol is not None:
        _v.check_real(owner, "approx_dec_rtol", approx_dec_rtol, low=0.0)
    _v.check_real(owner, "stepsize_precision", stepsize_precision, low=0.0)
    if initial_guess_strategy not in ("one", "keep"):
        raise ValueError(
            f"{owner}: initial_guess_strategy must be 'one' (start every search from 1, for "
            f"quasi-Newton directions) or 'keep' (from the last step size), got {initial_guess_strategy!r}"
        )
    _v.check_bool(owner, "verbose", verbose)


@describe
def scale_by_zoom_linesearch(
    max_linesearch_steps: int,
    max_learning_rate: float | None = None,
    tol: float = 0.0,
    increase_factor: float = 2.0,
    slope_rtol: float = 1e-4,
    curv_rtol: float = 0.9,
    approx_dec_rtol: float | None = 1e-6,
    stepsize_precision: float = 1e-5,
    initial_guess_strategy: str = "keep",
    verbose: bool = False,
) -> GradientTransformation:
    r"""Scale the updates by a step size meeting the strong Wolfe conditions (zoom line search).

    With $f$ the objective (`value_fn`), $w$ the params and $u$ the incoming updates (a descent
    direction), it searches a step size $\eta$ with sufficient decrease (Armijo)

    $$f(w + \eta u) \le f(w) + c_1\,\eta\,\langle u, \nabla f(w)\rangle + \epsilon$$

    and small curvature along $u$ (second, strong Wolfe condition)

    $$|\langle \nabla f(w + \eta u), u\rangle| \le c_2\,|\langle \nabla f(w), u\rangle| + \epsilon,$$

    and returns $\eta u$. Where the trial value is already within $c_3 |f(w)|$ of $f(w)$
    ($f(w + \eta u) \le f(w) + c_3 |f(w)|$), the Armijo test, blind below the square root of the
    float precision, may be replaced by Hager & Zhang's approximate decrease
    $\langle \nabla f(w + \eta u), u\rangle \le (2 c_1 - 1)\langle \nabla f(w), u\rangle + \epsilon$.

    The search doubles (`increase_factor`) the step size from an initial guess until an interval
    holding an acceptable step is bracketed, then shrinks it by cubic, quadratic or bisection
    steps. When it runs out of steps, or the interval gets narrower than `stepsize_precision`, it
    takes the lowest step found with sufficient decrease (or the last one tried, or 0 if the
    objective was never finite).

    `update` takes the extra keyword arguments `value` ($f(w)$), `grad` ($\nabla f(w)$) and
    `value_fn` ($f$); any other keyword argument is handed on to `value_fn`. The state keeps the
    value and gradient at the accepted step: reuse them with
    [`value_and_grad_from_state`][gradtx.value_and_grad_from_state].

    Args:
        max_linesearch_steps: the most objective evaluations per search; an integer `>= 1`.
        max_learning_rate: the largest step size tried, `> 0`, or None (no bound; default).
        tol: $\epsilon$, slack of both conditions; `>= 0`, default 0.0.
        increase_factor: growth of the step size while bracketing; `> 1`, default 2.0.
        slope_rtol: $c_1$; in `[0, 1)` and below `curv_rtol`, default 1e-4.
        curv_rtol: $c_2$; `> slope_rtol`, default 0.9 (`inf` drops the curvature condition: the
            search then only backtracks by interpolation).
        approx_dec_rtol: $c_3$, `>= 0`, default 1e-6; None uses the Armijo test only.
        stepsize_precision: the interval width under which a step with sufficient decrease is
            accepted without the curvature condition; `>= 0`, default 1e-5.
        initial_guess_strategy: `"keep"` (default: start from the last accepted step size; for
            gradient steps) or `"one"` (start from 1; for Newton and quasi-Newton directions).
        verbose: print a diagnosis (with `jax.debug.print`) when the search fails; default False.

    Returns:
        A `GradientTransformation` with state
        [`ScaleByZoomLinesearchState`][gradtx.ScaleByZoomLinesearchState]
        `(learning_rate, value, grad, info)`, `info` a
        [`ZoomLinesearchInfo`][gradtx.ZoomLinesearchInfo]; optax's numbers and layout.

    References:
        Nocedal & Wright, *Numerical Optimization*, 1999, algorithms 3.5 and 3.6.
        Hager & Zhang, *Algorithm 851: CG_DESCENT*, ACM TOMS 2006.

    Example:
        >>> import gradtx, jax, jax.numpy as jnp
        >>> f = lambda w: jnp.sum(w ** 2)
        >>> solver = gradtx.chain(gradtx.sgd(1.0), gradtx.scale_by_zoom_linesearch(15))
        >>> w = jnp.array([1.0, 2.0, 3.0])
        >>> state = solver.init(w)
        >>> value, grad = jax.value_and_grad(f)(w)
        >>> updates, state = solver.update(grad, state, w, value=value, grad=grad, value_fn=f)
        >>> print(f"{f(gradtx.apply_updates(w, updates)):.1f}, step {state[1].learning_rate:.2f}")
        0.0, step 0.50
    """
    owner = "scale_by_zoom_linesearch"
    _check(owner, max_linesearch_steps, max_learning_rate, tol, increase_factor, slope_rtol, curv_rtol,
           approx_dec_rtol, stepsize_precision, initial_guess_strategy, verbose)
    start, step, keep_going = _zoom_search(
        max_linesearch_steps, max_learning_rate, tol, increase_factor, slope_rtol, curv_rtol,
        approx_dec_rtol, stepsize_precision, verbose,
    )

    def init(params: Params) -> ScaleByZoomLinesearchState:
        _v.check_state_params(owner, params)  # the state keeps the gradient, in the params' dtypes
        dtype = _c.real_dtype(params)
        return ScaleByZoomLinesearchState(
            learning_rate=jnp.asarray(1.0, dtype=dtype),
            value=jnp.asarray(jnp.inf, dtype=dtype),
            grad=tree_zeros_like(params),
            info=ZoomLinesearchInfo(_c.strong(0), _c.strong(jnp.inf), _c.strong(jnp.inf)),
        )

    def update(updates, state, params=None, *, value=None, grad=None, value_fn=None, **extra_args):
        _c.check_objective(owner, params, value, grad, value_fn)
        fn_kwargs = _c.objective_kwargs(owner, value_fn, extra_args)
        first = start(updates, params, value=value, grad=grad, prev_stepsize=state.learning_rate,
                      initial_guess_strategy=initial_guess_strategy)
        body = functools.partial(step, value_and_grad=jax.value_and_grad(value_fn), fn_kwargs=fn_kwargs)
        final = jax.lax.while_loop(keep_going, body, first)
        new_state = ScaleByZoomLinesearchState(
            learning_rate=final.stepsize,
            value=final.value,
            grad=final.grad,
            info=ZoomLinesearchInfo(final.count, final.decrease_error, final.curvature_error),
        )
        return _c.scale(final.stepsize, updates), _c.cast_like(new_state, state)

    return GradientTransformation(init, update)
