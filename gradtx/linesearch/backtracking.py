r"""Backtracking line search: shrink the step until the objective decreases enough (Armijo)."""

import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx import _validation as _v
from gradtx.base import GradientTransformation, Params, Updates, describe
from gradtx.linesearch import common as _c
from gradtx.numerics import tree_zeros_like

__all__ = [
    "BacktrackingLinesearchInfo",
    "ScaleByBacktrackingLinesearchState",
    "scale_by_backtracking_linesearch",
]


class BacktrackingLinesearchInfo(NamedTuple):
    """What the last backtracking search did (for debugging)."""

    num_linesearch_steps: jax.Array  # int: objective evaluations made
    decrease_error: jax.Array  # float: 0 when the accepted step decreases enough, > 0 otherwise


class ScaleByBacktrackingLinesearchState(NamedTuple):
    """State of [`scale_by_backtracking_linesearch`][gradtx.scale_by_backtracking_linesearch]."""

    learning_rate: jax.Array  # the step size accepted at the last update (1.0 at init)
    value: jax.Array  # the objective at the accepted step (+inf at init)
    grad: Updates | None  # its gradient with store_grad=True (zeros at init), else None
    info: BacktrackingLinesearchInfo


class _Trial(NamedTuple):
    """The carry of the search loop: the last step size tried and what it gave."""

    learning_rate: jax.Array
    new_value: jax.Array
    new_grad: Updates
    decrease_error: jax.Array
    iter_num: Any


def _positive_or_inf(owner: str, name: str, value: Any, low: float, low_inclusive: bool) -> None:
    """A real number above `low` (or at it when inclusive); `+inf` is accepted."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value == math.inf:
        return
    _v.check_real(owner, name, value, low=low, low_inclusive=low_inclusive)


@describe
def scale_by_backtracking_linesearch(
    max_backtracking_steps: int,
    slope_rtol: float = 1e-4,
    decrease_factor: float = 0.8,
    increase_factor: float = 1.5,
    max_learning_rate: float = 1.0,
    atol: float = 0.0,
    rtol: float = 0.0,
    store_grad: bool = False,
    verbose: bool = False,
) -> GradientTransformation:
    r"""Scale the updates by a step size that decreases the objective enough (Armijo condition).

    With $f$ the objective (`value_fn`), $w$ the params, $u$ the incoming updates (a descent
    direction: $\langle u, \nabla f(w)\rangle < 0$), the search accepts the first step size
    $\eta$ of the sequence

    $$\eta_0 = \min(\gamma_{inc}\,\eta_{prev},\ \eta_{max}),\qquad \eta_{j+1} = \gamma_{dec}\,\eta_j$$

    that satisfies the sufficient decrease condition

    $$f(w + \eta u) \le (1 + \delta) f(w) + c\,\eta\,\langle u, \nabla f(w)\rangle + \epsilon,$$

    ($c$ = `slope_rtol`, $\delta$ = `rtol`, $\epsilon$ = `atol`, $\eta_{prev}$ the step accepted at
    the previous update, 1 at the start), trying at most `max_backtracking_steps + 1` step sizes,
    and returns $\eta u$. When no step size gives a finite objective the step is 0.

    `update` takes the extra keyword arguments `value` ($f(w)$), `grad` ($\nabla f(w)$) and
    `value_fn` ($f$); any other keyword argument is handed on to `value_fn` (data, for example).
    With `store_grad=True` the state keeps the value and gradient at the accepted step, which
    [`value_and_grad_from_state`][gradtx.value_and_grad_from_state] reuses at the next iteration.

    Args:
        max_backtracking_steps: the most times the step size is shrunk; an integer `>= 0`.
        slope_rtol: $c$, the fraction of the linear decrease required; in `[0, 1)`, default 1e-4.
        decrease_factor: $\gamma_{dec}$; in `(0, 1)`, default 0.8.
        increase_factor: $\gamma_{inc}$, applied to the previous step to get the first guess;
            `>= 1` or `inf` (always start from `max_learning_rate`), default 1.5.
        max_learning_rate: $\eta_{max}$, the largest step tried; `> 0`, default 1.0.
        atol: $\epsilon$, absolute slack of the condition; `>= 0`, default 0.0.
        rtol: $\delta$, relative slack of the condition; `>= 0`, default 0.0.
        store_grad: keep the gradient at the accepted step in the state (computed by transposing
            the linearization made while evaluating the value); default False.
        verbose: print a diagnosis (with `jax.debug.print`) when the search fails; default False.

    Returns:
        A `GradientTransformation` with state
        [`ScaleByBacktrackingLinesearchState`][gradtx.ScaleByBacktrackingLinesearchState]
        `(learning_rate, value, grad, info)` and `info` a `BacktrackingLinesearchInfo`
        `(num_linesearch_steps, decrease_error)`; optax's numbers and layout.

    References:
        Nocedal & Wright, *Numerical Optimization*, 1999, section 3.1.
        Vaswani et al., *Painless Stochastic Gradient*, NeurIPS 2019 (arXiv:1905.09997).

    Example:
        >>> import gradtx, jax, jax.numpy as jnp
        >>> f = lambda w: jnp.sum(w ** 2)
        >>> solver = gradtx.chain(gradtx.sgd(1.0), gradtx.scale_by_backtracking_linesearch(15))
        >>> w = jnp.array([1.0, 2.0, 3.0])
        >>> state = solver.init(w)
        >>> value, grad = jax.value_and_grad(f)(w)
        >>> updates, state = solver.update(grad, state, w, value=value, grad=grad, value_fn=f)
        >>> print(f"{f(gradtx.apply_updates(w, updates)):.2f}")
        5.04
    """
    owner = "scale_by_backtracking_linesearch"
    _v.check_int(owner, "max_backtracking_steps", max_backtracking_steps, low=0)
    _v.check_real(owner, "slope_rtol", slope_rtol, low=0.0, high=1.0, high_inclusive=False)
    _v.check_real(owner, "decrease_factor", decrease_factor, low=0.0, high=1.0, low_inclusive=False,
                  high_inclusive=False)
    _positive_or_inf(owner, "increase_factor", increase_factor, 1.0, True)
    _positive_or_inf(owner, "max_learning_rate", max_learning_rate, 0.0, False)
    _v.check_real(owner, "atol", atol, low=0.0)
    _v.check_real(owner, "rtol", rtol, low=0.0)
    _v.check_bool(owner, "store_grad", store_grad)
    _v.check_bool(owner, "verbose", verbose)

    def init(params: Params) -> ScaleByBacktrackingLinesearchState:
        if store_grad:  # the state keeps the gradient, in the params' dtypes
            _v.check_state_params(owner, params)
        dtype = _c.real_dtype(params)
        return ScaleByBacktrackingLinesearchState(
            learning_rate=jnp.array(1.0, dtype=dtype),
            value=jnp.array(jnp.inf, dtype=dtype),
            grad=tree_zeros_like(params) if store_grad else None,
            info=BacktrackingLinesearchInfo(
                num_linesearch_steps=_c.strong(0), decrease_error=jnp.array(jnp.inf, dtype=dtype)
            ),
        )

    def decrease_error(step_size, slope, value, new_value):
        # the violation of the Armijo condition, clipped at 0; NaN (outside the domain) is +inf
        error = new_value - (1.0 + rtol) * value - step_size * slope_rtol * slope
        return jnp.maximum(jnp.where(jnp.isnan(error), jnp.inf, error), 0.0)

    def update(updates, state, params=None, *, value=None, grad=None, value_fn=None, **extra_args):
        _c.check_objective(owner, params, value, grad, value_fn)
        f = functools.partial(value_fn, **_c.objective_kwargs(owner, value_fn, extra_args))
        # derivative of eta -> f(w + eta u) at 0: negative for a descent direction
        slope = _c.real(_c.vdot(updates, _c.conj(grad)))

        def keep_going(trial: _Trial):
            return (~(trial.decrease_error <= atol)) & (trial.iter_num <= max_backtracking_steps)

        def try_next(trial: _Trial) -> _Trial:
            # the first trial uses the initial guess, every later one shrinks the step
            step_size = jnp.where(trial.iter_num > 0, decrease_factor * trial.learning_rate, trial.learning_rate)
            candidate = _c.add_scale(params, step_size, updates)
            new_grad = trial.new_grad
            if store_grad:
                new_value, f_jvp = jax.linearize(f, candidate)
                error = decrease_error(step_size, slope, value, new_value)
                last = (error <= atol) | (trial.iter_num == max_backtracking_steps)
                new_grad = jax.lax.cond(
                    last, lambda p: jax.linear_transpose(f_jvp, p)(1.0)[0], lambda *_: new_grad, candidate
                )
            else:
                new_value = f(candidate)
                error = decrease_error(step_size, slope, value, new_value)
            result = _Trial(step_size, new_value, new_grad, error, trial.iter_num + 1)
            return _c.cast_like(result, trial)

        first = _Trial(
            learning_rate=jnp.minimum(increase_factor * state.learning_rate, max_learning_rate),
            new_value=value,
            new_grad=jax.tree.map(jnp.zeros_like, params),
            decrease_error=jnp.array(jnp.inf),
            iter_num=0,
        )
        found = jax.lax.while_loop(keep_going, try_next, first)
        # an infinite error means no finite value was met: take no step rather than NaNs
        step_size = jnp.where(jnp.isinf(found.decrease_error), 0.0, found.learning_rate)
        if verbose:
            _c.print_if(
                found.decrease_error > atol,
                "INFO: gradtx.scale_by_backtracking_linesearch: no step size met the sufficient "
                "decrease condition.\nValue at current params: {value}\nSlope along the update "
                "direction: {slope}\nLast step size tried: {stepsize}\nDecrease error: {error}",
                value=value, slope=slope, stepsize=found.learning_rate, error=found.decrease_error,
            )
            _c.print_if(
                jnp.isinf(found.decrease_error),
                "The objective is infinite or NaN at every step size tried: taking a step of 0.",
            )
        new_state = ScaleByBacktrackingLinesearchState(
            learning_rate=step_size,
            value=found.new_value,
            grad=found.new_grad if store_grad else None,
            info=BacktrackingLinesearchInfo(found.iter_num, found.decrease_error),
        )
        return _c.scale(step_size, updates), _c.cast_like(new_state, state)

    return GradientTransformation(init, update)

