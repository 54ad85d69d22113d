r"""Matrix-free linear solves with curvature operators: conjugate gradients and MINRES.

[`solve`][gradtx.curvature.solve] finds $x$ with

$$(A + \lambda I)\, x = b$$

for a symmetric linear operator $A$ given only as `v ↦ A v` on pytrees (a Hessian, a
Gauss-Newton or Fisher operator, a `StreamingOperator`) and a damping $\lambda \ge 0$. Both
methods build the Krylov space $\mathcal K_k = \operatorname{span}\{r_0, B r_0, \dots,
B^{k-1} r_0\}$ of $B = A + \lambda I$, one operator product per iteration, and keep $O(n)$ memory:

* **CG** (Hestenes & Stiefel 1952) minimizes the $B$-norm of the error over $x_0 + \mathcal K_k$;
  it needs $B$ positive definite. When it meets a search direction with $p^\top B p \le 0$ the
  system is not positive definite: CG stops there, returns its last iterate (the one before
  that direction; $x_0$, i.e. 0 by default, on the first iteration) and sets
  `report.negative_curvature`.
* **MINRES** (Paige & Saunders 1975) minimizes the residual norm $\lVert b - B x\rVert$ over
  $x_0 + \mathcal K_k$ through the Lanczos tridiagonalization and Givens rotations; it only
  needs $B$ symmetric, so it solves indefinite systems (a Hessian at a saddle point).

Both stop when the residual falls below `tol · ‖b‖` (the recursively updated residual for CG,
the Givens estimate $|\bar\eta_k|$ for MINRES) or after `max_iters` iterations. The reported
residual is then *recomputed* as $\lVert b - (A + \lambda I) x\rVert$ with one more product, so
it is the true residual of the returned $x$, and `converged` is decided on it.

References:
    Hestenes & Stiefel, *Methods of conjugate gradients for solving linear systems*, J. Res.
    Nat. Bur. Standards 49(6), 1952.
    Paige & Saunders, *Solution of sparse indefinite systems of linear equations*, SIAM J.
    Numer. Anal. 12(4), 1975.
    Martens, *Deep learning via Hessian-free optimization*, ICML 2010.
    Koh & Liang, *Understanding black-box predictions via influence functions*, ICML 2017
    (inverse Hessian-vector products).
"""

import functools
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from gradtx._validation import check_int, check_real
from gradtx.curvature.data import partition_data, prepare_data, static_callable
from gradtx.curvature.operators import _match_tangent, bound_hessian_operator, flatten_operator
from gradtx.curvature.streaming import is_streaming, krylov_while, streamed_hessian

__all__ = ["SOLVE_METHODS", "SolveReport", "inverse_hvp", "solve"]

SOLVE_METHODS = ("cg", "minres")
"""The accepted values of `method` for [`solve`][gradtx.curvature.solve]."""

_RUNNING, _CONVERGED, _NEGATIVE_CURVATURE, _BREAKDOWN = 0, 1, 2, 3
_INT32_MAX = int(jnp.iinfo(jnp.int32).max)


class SolveReport(NamedTuple):
    """Diagnostics of [`solve`][gradtx.curvature.solve] / [`inverse_hvp`][gradtx.curvature.inverse_hvp].

    Attributes:
        residual_norm: $\\lVert b - (A + \\lambda I) x\\rVert$ of the returned $x$, recomputed
            with one operator product after the iteration (not the recursive estimate); for
            low-precision (bfloat16/float16) `b` it is that of the float32 iterate before `x` is
            cast to `b`'s leaf dtypes.
        relative_residual: `residual_norm / ‖b‖` (0 when `b = 0`).
        iterations: Krylov iterations run (int32) = operator products inside the loop; the
            solver uses one more for the final residual and, when `x0` is given, one for the
            initial residual.
        converged: `relative_residual <= tol` (bool), decided on the recomputed residual.
        negative_curvature: CG only: the iteration met a direction with $p^\\top (A + \\lambda I)
            p \\le 0$ and stopped there (bool; always False for MINRES).
    """

    residual_norm: jax.Array
    relative_residual: jax.Array
    iterations: jax.Array
    converged: jax.Array
    negative_curvature: jax.Array


# ----- conjugate gradients -----
# The step functions are module-level (compiled once when streaming); the damping `lam` and the
# stopping threshold `tol · ‖b‖` travel in the carry.


def _query(j, carry):
    """The vector to multiply next: CG's search direction `p`, MINRES's Lanczos vector `v`."""
    return carry[4]


def _running(j, carry):
    return carry[-1] == _RUNNING


def _cg_update(j, carry, ap):
    """One CG step on `B = A + lam I`; carry = (lam, threshold, x, r, p, |r|², iterations, status)."""
    lam, threshold, x, r, p, rs, iters, _ = carry
    bp = ap + lam * p
    curvature = jnp.vdot(p, bp)
    negative = ~(curvature > 0)  # also catches a NaN curvature
    alpha = rs / jnp.where(negative, 1, curvature)
    x_new = jnp.where(negative, x, x + alpha * p)
    r_new = jnp.where(negative, r, r - alpha * bp)
    rs_new = jnp.vdot(r_new, r_new)
    p_new = r_new + (rs_new / jnp.where(rs > 0, rs, 1)) * p
    done = jnp.sqrt(rs_new) <= threshold
    status = jnp.where(negative, _NEGATIVE_CURVATURE, jnp.where(done, _CONVERGED, _RUNNING))
    return lam, threshold, x_new, r_new, p_new, rs_new, iters + 1, status.astype(jnp.int32)


def _cg_init(lam: jax.Array, threshold: jax.Array, x0: jax.Array, r0: jax.Array) -> tuple[Any, ...]:
    rs0 = jnp.vdot(r0, r0)
    status = jnp.where(jnp.sqrt(rs0) <= threshold, _CONVERGED, _RUNNING).astype(jnp.int32)
    return lam, threshold, x0, r0, r0, rs0, jnp.zeros((), jnp.int32), status


# ----- MINRES -----


def _minres_update(j, carry, av):
    """One MINRES step (Paige & Saunders 1975) on `B = A + lam I`.

    carry = (lam, threshold, x, v_prev, v, beta, c_prev, s_prev, c, s, w_prev, w, eta,
    iterations, status): `v` the current Lanczos vector, `beta` the norm that normalized it,
    `(c, s)` the last two Givens rotations, `w` the last two columns of `V R⁻¹`, `eta` the rotated
    right-hand side, whose modulus is the residual norm of `x`.
    """
    lam, threshold, x, v_prev, v, beta, c_prev, s_prev, c, s, w_prev, w, eta, iters, _ = carry
    tiny = jnp.finfo(v.dtype).tiny
    bv = av + lam * v
    alpha = jnp.vdot(v, bv)
    u = bv - alpha * v - beta * v_prev
    beta_next = jnp.linalg.norm(u)
    # the new column (beta, alpha, beta_next) of the tridiagonal under the previous two rotations
    epsilon = s_prev * beta
    delta_bar = c_prev * beta
    delta = c * delta_bar + s * alpha
    gamma_bar = c * alpha - s * delta_bar
    # the new rotation annihilates beta_next
    gamma = jnp.hypot(gamma_bar, beta_next)
    singular = gamma <= tiny
    safe_gamma = jnp.where(singular, 1, gamma)
    c_new = jnp.where(singular, 1, gamma_bar / safe_gamma)
    s_new = jnp.where(singular, 0, beta_next / safe_gamma)
    w_new = (v - delta * w - epsilon * w_prev) / safe_gamma
    x_new = x + jnp.where(singular, 0, c_new * eta) * w_new
    eta_new = jnp.where(singular, eta, -s_new * eta)
    v_next = u / jnp.where(beta_next > tiny, beta_next, 1)
    done = jnp.abs(eta_new) <= threshold
    status = jnp.where(singular, _BREAKDOWN, jnp.where(done, _CONVERGED, _RUNNING))
    return (lam, threshold, x_new, v, v_next, beta_next, c, s, c_new, s_new, w, w_new, eta_new, iters + 1,
            status.astype(jnp.int32))


def _minres_init(lam: jax.Array, threshold: jax.Array, x0: jax.Array, r0: jax.Array) -> tuple[Any, ...]:
    beta1 = jnp.linalg.norm(r0)
    v = r0 / jnp.where(beta1 > 0, beta1, 1)
    zeros = jnp.zeros_like(r0)
    one, zero = jnp.ones((), r0.dtype), jnp.zeros((), r0.dtype)
    status = jnp.where(beta1 <= threshold, _CONVERGED, _RUNNING).astype(jnp.int32)
    return (lam, threshold, x0, zeros, v, zero, one, zero, one, zero, zeros, zeros, beta1, jnp.zeros((), jnp.int32),
            status)


# ----- driver on flat vectors -----


def _solve_flat(mv: Callable[[jax.Array], jax.Array], b: jax.Array, x0: jax.Array | None, damping: Any,
                tol: Any, method: str, max_iters: int, streaming: bool = False, *,
                steepest_descent_start: bool = False,
                recompute_residual: bool = True) -> tuple[jax.Array, SolveReport]:
    """Solve `(A + damping I) x = b` on flat vectors; `mv` applies `A`.

    The Krylov core of `solve`, `inverse_hvp` and Newton-CG
    ([`scale_by_newton_cg`][gradtx.second_order.scale_by_newton_cg]). Two options, CG only,
    give the truncated-Newton rule of Nocedal & Wright's Algorithm 7.1 (defaults: `solve`'s):

    * `steepest_descent_start`: when CG meets non-positive curvature at its first iteration,
      return the initial residual `r0 = b - B x0` (the steepest-descent direction of the model
      `½ xᵀBx - bᵀx` at `x0`; `b` itself for `x0 = 0`) instead of `x0`. A later exit returns
      the last iterate either way.
    * `recompute_residual=False`: report the recursively updated residual of the last CG
      iterate (so `‖r0‖` after a first-iteration exit, whatever is returned) and skip the
      extra product; `converged` is then decided on it.
    """
    if method != "cg" and (steepest_descent_start or not recompute_residual):
        raise ValueError(f"_solve_flat: steepest_descent_start and recompute_residual are CG options, got {method!r}")
    dtype = b.dtype
    lam = jnp.asarray(damping, dtype)
    b_norm = jnp.linalg.norm(b)
    threshold = jnp.asarray(tol, dtype) * b_norm
    if x0 is None:
        x0, r0 = jnp.zeros_like(b), b
    else:
        # b = 0 has the solution 0 whatever the start
        x0 = jnp.where(b_norm > 0, x0.astype(dtype), 0)
        r0 = b - (mv(x0) + lam * x0)
    init, update = (_cg_init, _cg_update) if method == "cg" else (_minres_init, _minres_update)
    carry = krylov_while(mv, _query, update, _running, init(lam, threshold, x0, r0), max_iters, streaming=streaming)
    x, iters, status = carry[2], carry[-2], carry[-1]
    if steepest_descent_start:
        x = jnp.where((status == _NEGATIVE_CURVATURE) & (iters == 1), r0, x)
    if recompute_residual:
        residual = jnp.linalg.norm(b - (mv(x) + lam * x))
    else:
        residual = jnp.linalg.norm(carry[3])  # CG's recursive residual r
    relative = jnp.where(b_norm > 0, residual / jnp.where(b_norm > 0, b_norm, 1), 0)
    report = SolveReport(
        residual_norm=residual,
        relative_residual=relative,
        iterations=iters,
        converged=relative <= jnp.asarray(tol, dtype),
        negative_curvature=status == _NEGATIVE_CURVATURE,
    )
    return x, report


def _check_solve_args(owner: str, method: Any, damping: Any, tol: Any, max_iters: Any) -> None:
    if not isinstance(method, str) or method not in SOLVE_METHODS:
        raise ValueError(f"{owner}: method must be one of {SOLVE_METHODS}, got {method!r}")
    check_real(owner, "damping", damping, low=0.0)
    check_real(owner, "tol", tol, low=0.0, low_inclusive=False)
    if max_iters is not None:
        check_int(owner, "max_iters", max_iters, low=1)
        if isinstance(max_iters, jax.core.Tracer):
            raise TypeError(f"{owner}: max_iters must be a static Python int or None, got a traced value")


def _max_steps(max_iters: int | None, n: int) -> int:
    """`max_iters`, or `10 n` (scipy's default for CG) capped to the int32 range."""
    return min(int(max_iters) if max_iters is not None else 10 * n, _INT32_MAX)


def _check_like(owner: str, name: str, template: Any, tree: Any, what: str) -> None:
    """Raise a ValueError unless `tree` has the structure and leaf shapes of `template`."""
    t_def, x_def = jax.tree.structure(template), jax.tree.structure(tree)
    if t_def != x_def:
        raise ValueError(f"{owner}: {name} must have the tree structure of {what}.\n{what}: {t_def}\n{name}: {x_def}")
    for (path, t), x in zip(jax.tree_util.tree_flatten_with_path(template)[0], jax.tree.leaves(tree)):
        if jnp.shape(t) != jnp.shape(x):
            raise ValueError(f"{owner}: {name} has shape {jnp.shape(x)} at {jax.tree_util.keystr(path)}, "
                             f"{what} has {jnp.shape(t)}")


def _check_floating(owner: str, name: str, tree: Any) -> None:
    for leaf in jax.tree.leaves(tree):
        if not jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
            raise TypeError(f"{owner}: {name} must hold floating-point arrays, got dtype {jnp.result_type(leaf)}")


def solve(
    matvec: Callable[[Any], Any],
    b: Any,
    method: str = "cg",
    damping: float = 0.0,
    tol: float = 1e-6,
    max_iters: int | None = None,
    x0: Any | None = None,
) -> tuple[Any, SolveReport]:
    r"""Solve $(A + \lambda I)\, x = b$ for a symmetric operator $A$, matrix-free, by CG or MINRES.

    Starting from $x_0$ (0 by default), each iteration costs one product $v \mapsto A v$ and
    $O(n)$ vector work; the iteration stops when the residual satisfies

    $$\lVert b - (A + \lambda I)\, x_k \rVert \le \mathrm{tol} \cdot \lVert b \rVert$$

    (tested on the recursive residual), or after `max_iters` iterations. See the module
    docstring for the two methods: `"cg"` needs $A + \lambda I$ positive definite and stops,
    setting `report.negative_curvature`, at the first direction $p$ with
    $p^\top (A + \lambda I) p \le 0$ (returning the iterate before it); `"minres"` handles any
    symmetric (indefinite) system. The residual in the report is recomputed from the returned
    $x$ with one more product. `b = 0` gives `x = 0` (whatever `x0`).

    Runs in one `lax.while_loop` (callable under `jax.jit`; `method` and `max_iters` must be
    static) for a traceable `matvec`; for a
    [`StreamingOperator`][gradtx.curvature.StreamingOperator] the loop runs on the host
    ([`krylov_while`][gradtx.curvature.krylov_while]), each iteration one pass over the data
    (do not call it under `jax.jit` then). Each eager call traces and compiles anew (the
    operator is a closure): to reuse the compiled loop, call `solve` inside your own `jax.jit`;
    for many right-hand sides, `jax.vmap(lambda b: solve(matvec, b))(bs)` runs one loop for all
    of them, each keeping its own iterate and report.

    Args:
        matvec: symmetric linear map `v ↦ A v` on pytrees shaped like `b`.
        b: the right-hand side, a pytree of float arrays. The iteration runs in the flattened
            space in `b`'s floating dtype promoted to at least float32; `x` has `b`'s leaf dtypes.
        method: `"cg"` or `"minres"`. Default `"cg"`.
        damping: $\lambda \ge 0$ added to the diagonal. Default 0.
        tol: relative residual tolerance, `> 0`. Default `1e-6`.
        max_iters: maximum iterations (operator products in the loop), an int `>= 1`, or None
            for `10 n` (scipy's default for CG; $n$ = number of entries of `b`). In exact
            arithmetic both methods terminate within $n$ iterations. Default None.
        x0: optional start, a pytree like `b`. Default None (zeros).

    Returns:
        `(x, report)`: `x` a pytree like `b`, `report` a
        [`SolveReport`][gradtx.curvature.SolveReport] with the true residual norm, the relative
        residual, the iterations, `converged` (relative residual ≤ `tol`) and the CG
        negative-curvature flag.

    Raises:
        ValueError: `method` not in `("cg", "minres")`, `damping < 0`, `tol <= 0`,
            `max_iters < 1`, `x0` or the operator's output not shaped like `b`, an empty `b`.
        TypeError: `matvec` not callable, `b` not floating point, `max_iters` not an int.

    References:
        Hestenes & Stiefel, J. Res. Nat. Bur. Standards 49(6), 1952 (CG); Paige & Saunders,
        SIAM J. Numer. Anal. 12(4), 1975 (MINRES); Golub & Van Loan, *Matrix Computations*,
        4th ed., §11.3-11.4, 2013.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.curvature import solve
        >>> a = jnp.array([[4.0, 1.0], [1.0, 3.0]])
        >>> x, report = solve(lambda v: a @ v, jnp.array([1.0, 2.0]))
        >>> [round(float(t), 4) for t in x], bool(report.converged)
        ([0.0909, 0.6364], True)
    """
    owner = "solve"
    if not callable(matvec):
        raise TypeError(f"{owner}: matvec must be callable, got {type(matvec).__name__}")
    _check_solve_args(owner, method, damping, tol, max_iters)
    if not jax.tree.leaves(b):
        raise ValueError(f"{owner}: b has no leaves")
    _check_floating(owner, "b", b)
    if x0 is not None:
        _check_like(owner, "x0", b, x0, "b")
    streaming = is_streaming(matvec)
    if streaming:
        _check_like(owner, "b", matvec.template, b, "the operator's template")  # type: ignore[attr-defined]
    else:
        _check_like(owner, "matvec(b)", b, jax.eval_shape(matvec, b), "b")
    n = int(ravel_pytree(b)[0].size)
    steps = _max_steps(max_iters, n)

    def run(b, x0, damping, tol):
        mv, _, dtype, unravel = flatten_operator(matvec, b)
        b_flat = ravel_pytree(b)[0].astype(dtype)
        x0_flat = None if x0 is None else ravel_pytree(x0)[0]
        x, report = _solve_flat(mv, b_flat, x0_flat, damping, tol, method, steps, streaming)
        return unravel(x), report

    if streaming:
        return run(b, x0, damping, tol)
    return jax.jit(run)(b, x0, damping, tol)


@functools.partial(jax.jit, static_argnames=("loss", "static", "weights", "method", "max_iters"))
def _inverse_hvp_core(loss, params, v, x0, arrays, static, weights, damping, tol, method, max_iters):
    _, lin = bound_hessian_operator(loss, params, arrays, static, weights)
    mv, _, dtype, unravel = flatten_operator(lin, params)
    v_flat = ravel_pytree(v)[0].astype(dtype)
    x0_flat = None if x0 is None else ravel_pytree(x0)[0]
    x, report = _solve_flat(mv, v_flat, x0_flat, damping, tol, method, max_iters)
    return unravel(x), report


def inverse_hvp(
    loss: Callable[..., Any],
    params: Any,
    v: Any,
    *args: Any,
    damping: float = 0.0,
    method: str = "cg",
    tol: float = 1e-6,
    max_iters: int | None = None,
    x0: Any | None = None,
    batches: Iterable[Any] | None = None,
) -> tuple[Any, SolveReport]:
    r"""Inverse Hessian-vector product $(\nabla^2 L(\theta) + \lambda I)^{-1} v$, matrix-free.

    [`solve`][gradtx.curvature.solve] with the Hessian operator of `loss` at `params` (the
    gradient is linearized once; each iteration costs one Hessian-vector product). Use
    `method="cg"` with a positive definite $H + \lambda I$ (near a minimum, or with enough
    damping) and `method="minres"` for an indefinite Hessian. Influence functions
    (Koh & Liang 2017) and Newton steps are such products.

    Args:
        loss: scalar function `loss(params, *args)`.
        params: the point θ, a pytree of float arrays.
        v: the right-hand side, a pytree with the structure and shapes of `params`.
        *args: one batch of data for `loss`.
        damping: $\lambda \ge 0$. Default 0.
        method: `"cg"` or `"minres"`. Default `"cg"`.
        tol: relative residual tolerance `> 0`. Default `1e-6`.
        max_iters: maximum iterations (Hessian-vector products in the loop), int `>= 1`, or
            None for 10 × the parameter count. Default None.
        x0: optional start, a pytree like `params`. Default None (zeros).
        batches: instead of `*args`, the data set: a list of batches, a re-iterable loader or a
            generator factory (streamed through every product, one compiled per-batch
            Hessian-vector product, the loop on the host), or a
            [`Batched`][gradtx.curvature.Batched] in-memory data set (swept by `lax.scan`); the
            Hessian is that of the batch-size-weighted average loss (see
            [`data_operator`][gradtx.curvature.data_operator]). Default None.

    Returns:
        `(x, report)` as for [`solve`][gradtx.curvature.solve]; `x` is a pytree like `params`.

    Raises:
        ValueError: as for `solve`, or when `v` is not shaped like `params`.

    References:
        Pearlmutter, Neural Computation 6(1), 1994 (Hessian-vector products); Hestenes &
        Stiefel 1952; Paige & Saunders 1975; Koh & Liang, *Understanding black-box predictions
        via influence functions*, ICML 2017.
    """
    owner = "inverse_hvp"
    loss = static_callable(owner, "loss", loss)
    _check_solve_args(owner, method, damping, tol, max_iters)
    v = _match_tangent(owner, params, v)
    if x0 is not None:
        x0 = _match_tangent(owner, params, x0)
    streamed = streamed_hessian(owner, loss, params, args, batches)
    if streamed is not None:  # a stream: host loop around one compiled per-batch product
        return solve(streamed, v, method=method, damping=damping, tol=tol, max_iters=max_iters, x0=x0)
    data, weights = prepare_data(owner, args, batches)
    arrays, static = partition_data(data)
    steps = _max_steps(max_iters, int(ravel_pytree(params)[0].size))
    return _inverse_hvp_core(loss, params, v, x0, arrays, static, weights, damping, tol,
                             method=method, max_iters=steps)
