r"""Truncated Newton (Newton-CG): matrix-free Newton directions by conjugate gradients.

The Newton direction $d = (H + \lambda I)^{-1} g$ is computed approximately by running the
conjugate-gradient method on Hessian-vector products of the objective, without ever forming the
Hessian. CG stops when the relative residual is small, after `cg_iters` products, or as soon as
it meets a direction of non-positive curvature (then it returns the last iterate, which is
still a descent direction, or the gradient itself on the first iteration). The iteration is the
CG core of [`solve`][gradtx.curvature.solve], run with that first-iteration exit and with the
recursively updated residual reported (no extra product).

References:
    Nocedal & Wright, *Numerical Optimization*, 2nd ed., Springer 2006, §7.1 (Algorithm 7.1,
    line-search Newton-CG).
    Dembo & Steihaug, *Truncated-Newton algorithms for large-scale unconstrained optimization*,
    Mathematical Programming 26, 1983.
    Martens, *Deep learning via Hessian-free optimization*, ICML 2010.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from gradtx import _validation as _v
from gradtx.base import GradientTransformation, ScalarOrSchedule, chain, describe
from gradtx.curvature import flatten_operator, hessian_operator
from gradtx.curvature.solve import _solve_flat
from gradtx.numerics import safe_increment
from gradtx.transforms import scale_by_learning_rate

__all__ = ["NewtonCGState", "newton_cg", "scale_by_newton_cg"]

_INT32_MAX = jnp.iinfo(jnp.int32).max


class NewtonCGState(NamedTuple):
    """State of [`scale_by_newton_cg`][gradtx.second_order.scale_by_newton_cg].

    Attributes:
        count: number of updates done (int32).
        cg_iterations: CG iterations (= Hessian-vector products) used by the latest update
            (int32).
        total_hvps: Hessian-vector products used by all updates so far (int32, saturating).
        negative_curvature: whether the latest CG solve stopped on a direction of non-positive
            curvature of $H + \\lambda I$ (bool).
        relative_residual: $\\|g - (H + \\lambda I) z\\| / \\|g\\|$ for the latest CG iterate $z$
            (float32; 0 when $g = 0$, 1 when CG stopped on non-positive curvature at its first
            iteration and the gradient was returned).
    """

    count: jax.Array  # type: ignore[assignment]  # optax's field name (shadows tuple.count)
    cg_iterations: jax.Array
    total_hvps: jax.Array
    negative_curvature: jax.Array
    relative_residual: jax.Array


def _check_common(owner: str, cg_iters: Any, damping: Any, tol: Any) -> None:
    _v.check_int(owner, "cg_iters", cg_iters, low=1)
    if _v.is_traced(cg_iters):
        raise TypeError(f"{owner}: cg_iters must be a static Python int")
    _v.check_real(owner, "damping", damping, low=0.0)
    _v.check_real(owner, "tol", tol, low=0.0)


@describe
def scale_by_newton_cg(cg_iters: int = 50, damping: float = 0.0, tol: float = 1e-5) -> GradientTransformation:
    r"""Replace the gradient by an approximate (damped) Newton direction, computed by CG.

    With $g$ the incoming gradient of the objective $f$ = `value_fn` at the params $\theta$,
    $H = \nabla^2 f(\theta)$ and $B = H + \lambda I$ ($\lambda$ = `damping`), the update is

    $$d \approx B^{-1} g,$$

    computed by at most `cg_iters` iterations of conjugate gradients started from $d_0 = 0$, each
    costing one Hessian-vector product (the gradient map is linearized once per update with
    [`hessian_operator`][gradtx.curvature.hessian_operator]), inside one `lax.while_loop`. CG stops

    * when the residual is small: $\|B d_j - g\| \le$ `tol` $\cdot \|g\|$ (returns $d_j$);
    * when a search direction $p_j$ has $p_j^\top B p_j \le 0$ (non-positive curvature: $B$ is not
      positive definite there). It returns the current iterate $d_j$, or $g$ itself if this
      happens at the first iteration — the truncated Newton rule of Nocedal & Wright's
      Algorithm 7.1. Both are descent directions ($g^\top d > 0$), and no NaN is produced;
    * after `cg_iters` iterations (returns the last iterate).

    $g = 0$ gives $d = 0$. Chain it with a step size and the sign flip, as
    [`newton_cg`][gradtx.second_order.newton_cg] does: `chain(scale_by_newton_cg(...),
    scale_by_learning_rate(lr))` gives $\theta \leftarrow \theta - \eta\, d$, the Newton step for
    $\eta = 1$. Pure Newton steps ($\eta = 1$, $\lambda = 0$) can overshoot far from a minimum;
    a damping $\lambda > 0$ (Levenberg-Marquardt style) or $\eta < 1$ makes them shorter.

    The objective is passed to `update` as the extra keyword argument `value_fn` (a function of
    the params alone), and params are required: `tx.update(grads, state, params,
    value_fn=lambda p: loss(p, batch))`; the incoming updates should be `jax.grad(value_fn)(params)`.
    The CG vectors live in the flattened parameter space, in the params' dtype.

    Args:
        cg_iters: maximum CG iterations (Hessian-vector products) per update, an int `>= 1`.
            For an $n$-parameter quadratic, `cg_iters >= n` solves the system exactly (in exact
            arithmetic). Default 50.
        damping: $\lambda \ge 0$ added to the Hessian's diagonal. Default 0.
        tol: relative residual at which CG stops, `>= 0`. Default `1e-5`.

    Returns:
        A `GradientTransformation` whose state is a
        [`NewtonCGState`][gradtx.second_order.NewtonCGState] recording the CG iterations and
        Hessian-vector products used and whether negative curvature was met.

    References:
        Nocedal & Wright, *Numerical Optimization*, 2nd ed., 2006, §7.1, Algorithm 7.1.
        Dembo & Steihaug, *Truncated-Newton algorithms for large-scale unconstrained
        optimization*, Math. Programming 26, 1983.
    """
    owner = "scale_by_newton_cg"
    _check_common(owner, cg_iters, damping, tol)

    def init(params):
        del params
        zero = jnp.zeros((), jnp.int32)
        return NewtonCGState(
            count=zero,
            cg_iterations=zero,
            total_hvps=zero,
            negative_curvature=jnp.zeros((), bool),
            relative_residual=jnp.zeros((), jnp.float32),
        )

    def update(updates, state, params=None, *, value_fn: Callable[[Any], Any] | None = None, **extra_args):
        del extra_args
        value_fn = _v.check_params_and_value_fn(owner, params, value_fn)
        mv, _, dtype, unravel = flatten_operator(hessian_operator(value_fn, params), params)
        g, _ = ravel_pytree(updates)
        g = g.astype(dtype)
        # the CG core of `solve`, with the truncated-Newton exit and the recursive residual
        d, report = _solve_flat(mv, g, None, damping, tol, "cg", cg_iters,
                                steepest_descent_start=True, recompute_residual=False)
        iterations = report.iterations
        new_updates = jax.tree.map(lambda u, x: x.astype(jnp.result_type(u)), updates, unravel(d))
        total = jnp.where(state.total_hvps > _INT32_MAX - iterations, _INT32_MAX, state.total_hvps + iterations)
        new_state = NewtonCGState(
            count=safe_increment(state.count),
            cg_iterations=iterations,
            total_hvps=total.astype(jnp.int32),
            negative_curvature=report.negative_curvature,
            relative_residual=report.relative_residual.astype(jnp.float32),
        )
        return new_updates, new_state

    return GradientTransformation(init, update)


@describe
def newton_cg(
    learning_rate: ScalarOrSchedule = 1.0, cg_iters: int = 50, damping: float = 0.0, tol: float = 1e-5
) -> GradientTransformation:
    r"""Truncated Newton optimizer: $\theta \leftarrow \theta - \eta\,(H + \lambda I)^{-1} g$ by CG.

    `chain(scale_by_newton_cg(cg_iters, damping, tol), scale_by_learning_rate(learning_rate))`;
    see [`scale_by_newton_cg`][gradtx.second_order.scale_by_newton_cg] for the CG solve and its
    negative-curvature exit. `update` needs the params and `value_fn=` (the objective as a
    function of the params alone).

    Args:
        learning_rate: step size $\eta$ (a number or a schedule); 1 gives pure Newton steps.
            Default 1.0.
        cg_iters: maximum CG iterations per step, an int `>= 1`. Default 50.
        damping: $\lambda \ge 0$ added to the Hessian's diagonal. Default 0.
        tol: relative CG residual tolerance, `>= 0`. Default `1e-5`.

    Returns:
        A `GradientTransformation`.

    References:
        Nocedal & Wright, *Numerical Optimization*, 2nd ed., 2006, §7.1, Algorithm 7.1.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from gradtx.second_order import newton_cg
        >>> f = lambda p: jnp.sum((p - 3.0) ** 2)
        >>> tx, p = newton_cg(), jnp.zeros(2)
        >>> u, _ = tx.update(jax.grad(f)(p), tx.init(p), p, value_fn=f)
        >>> [round(float(x), 4) for x in p + u]
        [3.0, 3.0]
    """
    _check_common("newton_cg", cg_iters, damping, tol)
    return chain(scale_by_newton_cg(cg_iters, damping, tol), scale_by_learning_rate(learning_rate))
