r"""L-BFGS: precondition the updates by a limited-memory inverse-Hessian estimate."""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx import _validation as _v
from gradtx.base import GradientTransformation, Params, Updates, describe
from gradtx.linesearch import common as _c
from gradtx.numerics import full_like_param, safe_increment, tree_zeros_like

__all__ = ["ScaleByLBFGSState", "scale_by_lbfgs"]


class ScaleByLBFGSState(NamedTuple):
    r"""State of [`scale_by_lbfgs`][gradtx.scale_by_lbfgs].

    The memories are stacked: each leaf of `diff_params_memory` has shape `(memory_size, *leaf)`
    and entry `k % memory_size` holds the pair of iteration `k`; `weights_memory[k]` is
    $\rho_k = 1/\langle \delta u_k, \delta w_k\rangle$ (0 when that product is 0).
    """

    count: jax.Array  # type: ignore[assignment]  # optax's field name (shadows tuple.count; int32: updates done)
    params: Params  # the params at the last update
    updates: Updates  # the incoming updates (gradients) at the last update
    diff_params_memory: Any  # δw_k = w_{k+1} - w_k
    diff_updates_memory: Any  # δu_k = u_{k+1} - u_k
    weights_memory: jax.Array  # ρ_k, shape (memory_size,)


def _two_loop(updates, diff_params, diff_updates, weights, gamma, newest) -> Updates:
    """`P_k u`: Nocedal & Wright's two-loop recursion (algorithm 7.4) over the circular memory.

    `newest` is the slot the next pair will be written to, so `newest, newest+1, ...` (mod m)
    runs from the oldest stored pair to the newest one.
    """
    size = weights.shape[0]
    order = (newest + jnp.arange(size)) % size

    def pair(i):
        return jax.tree.map(lambda x: x[i], (diff_params, diff_updates))

    def newest_first(vec, i):
        dw, du = pair(i)
        alpha = weights[i] * _c.real(_c.vdot(dw, vec))
        return _c.cast_like(_c.add_scale(vec, -alpha, du), vec), alpha

    vec, alphas = jax.lax.scan(newest_first, updates, order, reverse=True)
    vec = _c.scale(gamma, vec)

    def oldest_first(vec, i_alpha):
        i, alpha = i_alpha
        dw, du = pair(i)
        beta = weights[i] * _c.real(_c.vdot(du, vec))
        return _c.cast_like(_c.add_scale(vec, alpha - beta, dw), vec), beta

    vec, _ = jax.lax.scan(oldest_first, vec, (order, alphas))
    return vec


@describe
def scale_by_lbfgs(memory_size: int = 10, scale_init_precond: bool = True) -> GradientTransformation:
    r"""Multiply the updates by the L-BFGS estimate of the inverse Hessian.

    With $w_k$ the params and $u_k$ the incoming updates (gradients) at update $k$, and the last
    $m$ = `memory_size` differences $\delta w_j = w_{j+1} - w_j$, $\delta u_j = u_{j+1} - u_j$,
    the output is $P_k u_k$ where

    $$P_{k,k-m} = \gamma_k I,\qquad
      P_{k,j+1} = V_j^\top P_{k,j} V_j + \rho_j\,\delta w_j \delta w_j^\top,\qquad
      V_j = I - \rho_j\,\delta u_j \delta w_j^\top,\qquad \rho_j = \frac{1}{\langle\delta u_j, \delta w_j\rangle}$$

    ($P_k = P_{k,k}$, computed by the two-loop recursion without forming a matrix; $\rho_j = 0$
    when $\langle\delta u_j, \delta w_j\rangle = 0$) and

    $$\gamma_k = \frac{\langle \delta w_{k-1}, \delta u_{k-1}\rangle}{\|\delta u_{k-1}\|^2}
      \ \ (\text{1 if } \delta u_{k-1} = 0),\qquad \gamma_0 = \min(1, 1/\|u_0\|)$$

    with `scale_init_precond=True`, and $\gamma_k = 1$ otherwise. The memory is updated before
    preconditioning, so chained after it a line search updates it only with accepted steps. The
    output is a descent direction (not yet negated): chain a negative scaling and a line search,
    as [`lbfgs`][gradtx.lbfgs] does.

    Args:
        memory_size: $m$, the number of difference pairs kept; an integer `>= 1`, default 10.
        scale_init_precond: use the scaled identity $\gamma_k I$ (default True) rather than $I$
            as the initial estimate.

    Returns:
        A `GradientTransformation` with state
        [`ScaleByLBFGSState`][gradtx.ScaleByLBFGSState]`(count, params, updates,
        diff_params_memory, diff_updates_memory, weights_memory)`; optax's numbers and layout.
        `update` needs `params`.

    References:
        Nocedal & Wright, *Numerical Optimization*, 1999, algorithms 7.4 and 7.5.
        Liu & Nocedal, *On the limited memory BFGS method for large scale optimization*,
        Mathematical Programming 45, 1989.
    """
    _v.check_int("scale_by_lbfgs", "memory_size", memory_size, low=1)
    _v.check_bool("scale_by_lbfgs", "scale_init_precond", scale_init_precond)

    def init(params: Params) -> ScaleByLBFGSState:
        _v.check_state_params("scale_by_lbfgs", params)  # the memories hold params differences

        def stacked_zeros(x):
            zero = full_like_param(x, 0)
            return jnp.broadcast_to(zero, (memory_size, *jnp.shape(zero)))

        memory = jax.tree.map(stacked_zeros, params)
        return ScaleByLBFGSState(
            count=jnp.asarray(0, dtype=jnp.int32),
            params=tree_zeros_like(params),
            updates=tree_zeros_like(params),
            diff_params_memory=memory,
            diff_updates_memory=memory,
            weights_memory=jnp.zeros(memory_size),
        )

    def update(updates, state, params=None, **extra_args):
        del extra_args
        if params is None:
            raise ValueError(
                "scale_by_lbfgs.update: params are required (the memory holds differences of "
                "params); call update(updates, state, params)."
            )
        newest = state.count % memory_size
        previous = (state.count - 1) % memory_size
        # 1. store the pair of the last step (nothing at the first update: there is no last step)
        diff_params = jax.tree.map(lambda a, b: a - b, params, state.params)
        diff_updates = jax.tree.map(lambda a, b: a - b, updates, state.updates)
        curvature = _c.real(_c.vdot(diff_updates, diff_params))
        weight = jnp.where(curvature == 0.0, 0.0, 1.0 / curvature)
        diff_params, diff_updates, weight = jax.tree.map(
            lambda x: jnp.where(state.count > 0, x, jnp.zeros_like(x)), (diff_params, diff_updates, weight)
        )
        dw_memory, du_memory, rho_memory = jax.tree.map(
            lambda memory, new: memory.at[previous].set(new),
            (state.diff_params_memory, state.diff_updates_memory, state.weights_memory),
            (diff_params, diff_updates, weight),
        )
        # 2. the scale of the initial estimate
        if scale_init_precond:
            numerator = _c.real(_c.vdot(diff_updates, diff_params))
            denominator = _c.squared_norm(diff_updates)
            gamma = jnp.where(denominator > 0.0, numerator / denominator, 1.0)
            # first update: a step of length at most 1
            first_gamma = jnp.minimum(1.0, 1.0 / jnp.sqrt(_c.squared_norm(jax.lax.stop_gradient(updates))))
            gamma = jnp.where(state.count > 0, gamma, first_gamma)
        else:
            gamma = 1.0
        # 3. the two-loop product P_k u_k
        direction = _two_loop(updates, dw_memory, du_memory, rho_memory, gamma, newest)
        new_state = ScaleByLBFGSState(safe_increment(state.count), params, updates, dw_memory, du_memory, rho_memory)
        return direction, new_state

    return GradientTransformation(init, update)
