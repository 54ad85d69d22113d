"""Lanczos tridiagonalization with full reorthogonalization, and matrix-free `eigsh`.

For a symmetric linear map `A` (given only as `v ↦ A v` on pytrees) and a unit start vector
`q_1`, `m` steps of Lanczos build an orthonormal basis `Q_m = [q_1, …, q_m]` of the Krylov space
`span{q_1, A q_1, …, A^{m-1} q_1}` and the tridiagonal `T_m = Q_mᵀ A Q_m`:

    w      = A q_j − α_j q_j − β_{j−1} q_{j−1},   α_j = q_jᵀ A q_j
    w      ← w − Q_j (Q_jᵀ w)       (full reorthogonalization, done twice)
    β_j    = ‖w‖,   q_{j+1} = w / β_j

The eigenvalues of `T_m` (Ritz values) approximate the extreme eigenvalues of `A`, at both ends
of the spectrum at once, and the Ritz vectors `Q_m s_i` approximate the eigenvectors. Keeping
every basis vector and re-projecting `w` against all of them keeps `Q_m` orthonormal to working
precision, so no spurious copies of converged eigenvalues ("ghosts") appear. Memory:
`num_iters × n` numbers, where `n` is the number of parameters.

Breakdown (`β_j ≈ 0`: the Krylov space is an invariant subspace, e.g. when `A` has fewer distinct
eigenvalues than steps) is handled without NaN: `β_j` is set to 0 and the iteration continues
from a fresh pseudo-random vector orthogonal to the basis, so `T_m` becomes block-diagonal and still
equals `Q_mᵀ A Q_m`.

The iteration runs in one `lax.fori_loop`; every function here can be traced under `jax.jit`
(`num_iters`, `k` and `which` must be static Python values).

References:
    Lanczos, *An iteration method for the solution of the eigenvalue problem of linear
    differential and integral operators*, J. Res. Nat. Bur. Standards 45, 1950.
    Golub & Van Loan, *Matrix Computations*, 4th ed., §10.1-10.3, 2013.
    Parlett, *The Symmetric Eigenvalue Problem*, SIAM, 1998.
"""

import functools
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.flatten_util import ravel_pytree

from gradtx._validation import check_int
from gradtx.curvature.data import is_stream, partition_data, prepare_data, static_callable
from gradtx.curvature.operators import bound_hessian_operator, flatten_operator, unraveler
from gradtx.curvature.residuals import ritz_residuals
from gradtx.curvature.streaming import is_streaming, krylov_loop, streamed_gradient, streamed_hessian

__all__ = [
    "DEFAULT_NUM_ITERS",
    "LanczosResult",
    "eigsh",
    "lanczos_tridiag",
    "operator_eigsh",
    "tridiagonal_eigh",
]

DEFAULT_NUM_ITERS = 100
"""Default number of Lanczos steps (= operator products) for `eigsh` and friends."""

_WHICH = ("LA", "SA", "LM")
_HIGHEST = lax.Precision.HIGHEST


class LanczosResult(NamedTuple):
    """The output of [`lanczos_tridiag`][gradtx.curvature.lanczos_tridiag].

    Attributes:
        alpha: `(m,)` diagonal of the tridiagonal matrix `T`.
        beta: `(m - 1,)` off-diagonal of `T` (0 where the iteration broke down and restarted).
        basis: `(m, n)` orthonormal Lanczos vectors as rows, in the coordinates of
            `jax.flatten_util.ravel_pytree(template)`.
    """

    alpha: jax.Array
    beta: jax.Array
    basis: jax.Array


def _default_key(key: Any) -> jax.Array:
    return jax.random.PRNGKey(0) if key is None else key


def _lanczos_start(n: int, dtype: Any, m: int, key: jax.Array, v0: jax.Array | None) -> tuple[jax.Array, ...]:
    """The Lanczos carry `(basis, alpha, beta, v, anorm, phase)` before the first step."""
    key_start, key_restart = jax.random.split(key)
    if v0 is None:
        v0 = jax.random.normal(key_start, (n,), dtype)
    v0 = v0.astype(dtype)
    v0_norm = jnp.linalg.norm(v0)
    # a zero start vector is replaced by e_1 rather than dividing by zero
    v0 = jnp.where(v0_norm > 0, v0 / jnp.where(v0_norm > 0, v0_norm, 1), jnp.zeros((n,), dtype).at[0].set(1))
    # restart vectors after breakdown: a cheap counter-based pseudo-random vector (a sine hash of
    # the index, the step and a key-derived phase), projected out of the basis twice; it only has
    # to avoid the span of the basis, and it compiles much faster than a threefry draw in the loop
    phase = jax.random.uniform(key_restart, (), dtype) * 100
    return (jnp.zeros((m, n), dtype), jnp.zeros((m,), dtype), jnp.zeros((m,), dtype), v0, jnp.zeros((), dtype), phase)


def _project_out(basis: jax.Array, w: jax.Array) -> jax.Array:
    # classical Gram-Schmidt against every stored row (rows not yet filled are zero), twice
    for _ in range(2):
        w = w - jnp.matmul(jnp.matmul(basis, w, precision=_HIGHEST), basis, precision=_HIGHEST)
    return w


def _lanczos_query(j: Any, carry: tuple[jax.Array, ...]) -> jax.Array:
    return carry[3]


def _lanczos_update(j: Any, carry: tuple[jax.Array, ...], w: jax.Array) -> tuple[jax.Array, ...]:
    """One Lanczos step given `w = A v_j` (three-term recurrence, full reorthogonalization, restart)."""
    basis, alpha, beta, v, anorm, phase = carry
    n, dtype = basis.shape[1], basis.dtype
    eps, tiny = jnp.finfo(dtype).eps, jnp.finfo(dtype).tiny
    basis = basis.at[j].set(v)
    a = jnp.vdot(v, w)
    b_prev = jnp.where(j > 0, beta[jnp.maximum(j - 1, 0)], 0)
    w = w - a * v - b_prev * basis[jnp.maximum(j - 1, 0)]
    w = _project_out(basis, w)
    b = jnp.linalg.norm(w)
    anorm = jnp.maximum(anorm, jnp.abs(a) + b + b_prev)
    broke = b <= 10 * eps * jnp.sqrt(jnp.asarray(n, dtype)) * anorm

    def restart() -> jax.Array:
        index = jnp.arange(1, n + 1, dtype=dtype)
        x = jnp.sin(index * 12.9898 + (j + 1).astype(dtype) * 78.233 + phase) * 43758.5453
        r = _project_out(basis, x - jnp.floor(x) - 0.5)
        return r / jnp.maximum(jnp.linalg.norm(r), tiny)

    v_next = lax.cond(broke, restart, lambda: w / jnp.where(broke, 1, b))
    alpha = alpha.at[j].set(a)
    beta = beta.at[j].set(jnp.where(broke, 0, b))
    return basis, alpha, beta, v_next, anorm, phase


def _lanczos_flat(mv: Callable[[jax.Array], jax.Array], n: int, dtype: Any, m: int, key: jax.Array, v0: jax.Array | None,
                  *, streaming: bool = False) -> LanczosResult:
    """Core Lanczos with full reorthogonalization on flat vectors (m <= n).

    Traceable (one `lax.fori_loop`) unless `streaming`: then `mv` is a host-level streaming
    operator and the steps run as a host loop of compiled updates (do not call it under `jit`).
    """
    if streaming:
        carry = _lanczos_start_jit(n, jnp.dtype(dtype), m, key, v0)
    else:
        carry = _lanczos_start(n, dtype, m, key, v0)
    basis, alpha, beta, *_ = krylov_loop(mv, _lanczos_query, _lanczos_update, carry, m, streaming=streaming)
    return LanczosResult(alpha=alpha, beta=beta[: m - 1], basis=basis)


_lanczos_start_jit = jax.jit(_lanczos_start, static_argnums=(0, 1, 2))


def _run_lanczos(matvec: Callable[[Any], Any], template: Any, m: int, key: jax.Array, v0_flat: jax.Array | None) -> LanczosResult:
    """`m` Lanczos steps on a pytree operator: one jitted program, or a host loop for a streaming operator."""
    if is_streaming(matvec):
        mv, n, dtype, _ = flatten_operator(matvec, template)
        return _lanczos_flat(mv, n, dtype, min(m, n), key, v0_flat, streaming=True)

    def run(template, key, v0_flat):
        mv, n, dtype, _ = flatten_operator(matvec, template)
        return _lanczos_flat(mv, n, dtype, min(m, n), key, v0_flat)

    return jax.jit(run)(template, key, v0_flat)


def _check_num_iters(owner: str, num_iters: Any) -> None:
    check_int(owner, "num_iters", num_iters, low=1)
    if isinstance(num_iters, jax.core.Tracer):
        raise TypeError(f"{owner}: num_iters must be a static Python int (it sets array shapes), got a traced value")


def lanczos_tridiag(
    matvec: Callable[[Any], Any],
    template: Any,
    num_iters: int = DEFAULT_NUM_ITERS,
    key: jax.Array | None = None,
    *,
    v0: Any | None = None,
) -> LanczosResult:
    """Run `num_iters` steps of Lanczos with full reorthogonalization on a pytree operator.

    A traceable `matvec` runs in one compiled `lax.fori_loop`; a
    [`StreamingOperator`][gradtx.curvature.StreamingOperator] (data streamed on the host) runs
    as a host loop of compiled steps, one pass over its data per step (see
    [`krylov_loop`][gradtx.curvature.krylov_loop]).

    Args:
        matvec: symmetric linear map `v ↦ A v` on pytrees shaped like `template`.
        template: a pytree of float arrays fixing the vector space (e.g. the params).
        num_iters: number of steps = number of calls to `matvec` (static int ≥ 1); clipped to the
            dimension `n`. Default 100.
        key: PRNG key for the random start vector (standard normal) and for restarts after
            breakdown. Default None, meaning `jax.random.PRNGKey(0)`.
        v0: optional start vector (pytree like `template`; normalized here). Default None.

    Returns:
        A [`LanczosResult`][gradtx.curvature.LanczosResult] `(alpha, beta, basis)` with
        `T = diag(alpha) + diag(beta, 1) + diag(beta, -1)` and `basis @ basis.T ≈ I`.

    References:
        Lanczos 1950; Golub & Van Loan, *Matrix Computations*, 4th ed., Alg. 10.1.1, 2013.
    """
    _check_num_iters("lanczos_tridiag", num_iters)
    if not callable(matvec):
        raise TypeError(f"lanczos_tridiag: matvec must be callable, got {type(matvec).__name__}")
    v0_flat = None if v0 is None else ravel_pytree(v0)[0]
    return _run_lanczos(matvec, template, num_iters, _default_key(key), v0_flat)


def tridiagonal_eigh(alpha: jax.Array, beta: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Eigen-decomposition of the symmetric tridiagonal matrix with diagonal `alpha`, off-diagonal `beta`.

    Returns:
        `(theta, s)`: eigenvalues in ascending order and the orthonormal eigenvectors as columns.
    """
    t = jnp.diag(alpha)
    if beta.shape[0] > 0:
        t = t + jnp.diag(beta, 1) + jnp.diag(beta, -1)
    return jnp.linalg.eigh(t, symmetrize_input=False)


def _select(theta: jax.Array, k: int, which: str) -> jax.Array:
    """Indices of the k wanted Ritz values, in ascending algebraic order of the values."""
    m = theta.shape[0]
    if which == "LA":
        return jnp.arange(m - k, m)
    if which == "SA":
        return jnp.arange(k)
    idx = jnp.argsort(-jnp.abs(theta), stable=True)[:k]
    return idx[jnp.argsort(theta[idx], stable=True)]


def _check_eig_args(owner: str, k: Any, which: Any, num_iters: Any, n: int) -> None:
    check_int(owner, "k", k, low=1)
    _check_num_iters(owner, num_iters)
    if not isinstance(which, str) or which not in _WHICH:
        raise ValueError(f"{owner}: which must be one of {_WHICH} (largest algebraic, smallest algebraic, "
                         f"largest magnitude), got {which!r}")
    if num_iters < k:
        raise ValueError(f"{owner}: num_iters must be >= k, got num_iters={num_iters} < k={k}")
    if k > n:
        raise ValueError(f"{owner}: k={k} exceeds the dimension n={n} of the parameter space")


def operator_eigsh(
    matvec: Callable[[Any], Any],
    template: Any,
    k: int = 1,
    which: str = "LA",
    num_iters: int = DEFAULT_NUM_ITERS,
    key: jax.Array | None = None,
    return_residuals: bool = False,
) -> tuple[Any, ...]:
    """`k` extreme eigenpairs of a symmetric linear operator, matrix-free, by Lanczos.

    Runs `min(num_iters, n)` Lanczos steps with full reorthogonalization from a random start
    vector, diagonalizes the tridiagonal `T` and returns the `k` wanted Ritz pairs `(θ_i, Q s_i)`.
    Lanczos converges at both ends of the spectrum, so `which="SA"` finds the most negative
    eigenvalues directly (no shift needed). Exact when `num_iters ≥ n`.

    Args:
        matvec: symmetric linear map `v ↦ A v` on pytrees shaped like `template`.
        template: a pytree of float arrays (e.g. the params) fixing the space.
        k: number of eigenpairs (static int, `1 ≤ k ≤ num_iters`, `k ≤ n`). Default 1.
        which: `"LA"` largest algebraic, `"SA"` smallest algebraic, `"LM"` largest magnitude.
            Default `"LA"`.
        num_iters: Lanczos steps = calls to `matvec` (static int ≥ k); clipped to the dimension
            `n`. Default 100. Memory is `min(num_iters, n) × n` numbers.
        key: PRNG key for the start vector. Default None (`jax.random.PRNGKey(0)`).
        return_residuals: also return the residual norms `‖A v_i − θ_i v_i‖` from `k` explicit
            operator products (see [`ritz_residuals`][gradtx.curvature.ritz_residuals]): `A` has an
            eigenvalue within `residuals[i]` of `eigenvalues[i]`, converged or not (Parlett 1998,
            §4.5). Default False.

    Returns:
        `(eigenvalues, eigenvectors)`, or `(eigenvalues, eigenvectors, residuals)` (shape `(k,)`)
        with `return_residuals=True`: `eigenvalues` has shape `(k,)` and, as in
        `scipy.sparse.linalg.eigsh`, is sorted in ascending algebraic order for every `which`
        (so for `"LA"` the largest is `eigenvalues[-1]`, for `"SA"` the smallest is
        `eigenvalues[0]`); `eigenvectors` is a pytree like `template` whose leaves have a leading
        axis of size `k`, entry `i` being the unit-norm Ritz vector of `eigenvalues[i]` (the sign
        is arbitrary).

    Raises:
        ValueError: `which` not in {"LA", "SA", "LM"}, `k < 1`, `num_iters < k`, `k > n`.
        TypeError: `k` or `num_iters` not an int.

    References:
        Lanczos 1950; Golub & Van Loan, *Matrix Computations*, 4th ed., §10.1, 2013.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.curvature import operator_eigsh
        >>> a = jnp.diag(jnp.arange(1.0, 6.0))
        >>> vals, vecs = operator_eigsh(lambda v: a @ v, jnp.zeros(5), k=2, num_iters=5)
        >>> [round(float(x), 4) for x in vals]
        [4.0, 5.0]
    """
    owner = "operator_eigsh"
    if not callable(matvec):
        raise TypeError(f"{owner}: matvec must be callable, got {type(matvec).__name__}")
    n = _dimension(owner, template)
    _check_eig_args(owner, k, which, num_iters, n)

    res = _run_lanczos(matvec, template, num_iters, _default_key(key), None)
    vals, vecs = _ritz_pairs(res, template, k=k, which=which)
    if return_residuals:
        return vals, vecs, ritz_residuals(matvec, template, vals, vecs)
    return vals, vecs


def _dimension(owner: str, template: Any) -> int:
    leaves = jax.tree_util.tree_leaves(template)
    if not leaves:
        raise ValueError(f"{owner}: the params/template tree has no leaves")
    return int(sum(jnp.size(x) for x in leaves))


@functools.partial(jax.jit, static_argnames=("k", "which"))
def _ritz_pairs(res: LanczosResult, template: Any, k: int, which: str) -> tuple[jax.Array, Any]:
    """The k wanted Ritz pairs of a Lanczos run, eigenvalues ascending, vectors unravelled."""
    unravel = unraveler(template)
    theta, s = tridiagonal_eigh(res.alpha, res.beta)
    idx = _select(theta, k, which)
    vecs = jnp.matmul(s[:, idx].T, res.basis, precision=_HIGHEST)  # (k, n)
    norms = jnp.linalg.norm(vecs, axis=1, keepdims=True)
    vecs = vecs / jnp.maximum(norms, jnp.finfo(vecs.dtype).tiny)
    return theta[idx], jax.vmap(unravel)(vecs)


@functools.partial(jax.jit, static_argnames=("loss", "static", "weights", "num_iters"))
def hessian_lanczos(loss, params, arrays, static, weights, key, num_iters: int) -> tuple[Any, LanczosResult]:
    """Gradient and Lanczos run on the Hessian of the bound loss (compiled once per loss, data layout, num_iters)."""
    grad, lin = bound_hessian_operator(loss, params, arrays, static, weights)
    mv, n, dtype, _ = flatten_operator(lin, params)
    return grad, _lanczos_flat(mv, n, dtype, min(num_iters, n), key, None)


def run_hessian_lanczos(
    owner: str, loss: Any, params: Any, args: tuple[Any, ...], batches: Any, key: Any, num_iters: int,
    gradient: bool = True,
) -> tuple[Any, LanczosResult]:
    """Validate, bind the data and run `hessian_lanczos`; returns `(gradient, LanczosResult)`.

    One batch (`args`) or a [`Batched`][gradtx.curvature.Batched] data set: one compiled call.
    A stream (`batches=` list, loader, generator factory): the Lanczos steps run on the host
    around the streaming Hessian product, and the gradient is the batch-size-weighted mean of
    the per-batch gradients (one more pass over the data, skipped with `gradient=False`, which
    then returns None for it).
    """
    loss = static_callable(owner, "loss", loss)
    _check_num_iters(owner, num_iters)
    n = _dimension(owner, params)
    streamed = streamed_hessian(owner, loss, params, args, batches)
    if streamed is not None:  # a stream: one pass for the gradient, one per Lanczos step
        mv, n, dtype, _ = flatten_operator(streamed, params)
        res = _lanczos_flat(mv, n, dtype, min(num_iters, n), _default_key(key), None, streaming=True)
        return (streamed_gradient(owner, loss, params, batches) if gradient else None), res
    data, weights = prepare_data(owner, args, batches)
    arrays, static = partition_data(data)
    # clip before it becomes a static argument, so that e.g. num_iters=100 and 200 share a compile
    return hessian_lanczos(loss, params, arrays, static, weights, _default_key(key), min(num_iters, n))


def hessian_ritz_residuals(owner: str, loss: Any, params: Any, args: tuple[Any, ...], batches: Any,
                           values: jax.Array, vectors: Any) -> jax.Array:
    """`‖H v_i − θ_i v_i‖` for Ritz pairs of the Hessian of the loss over a *stream* of batches (see
    `ritz_residuals`): one pass over it with `matmat`. One batch and `Batched` data get their
    residuals inside the Lanczos run's compiled call instead (`_hessian_eigsh_residuals`,
    `critical._hessian_extremes_core`).
    """
    streamed = streamed_hessian(owner, static_callable(owner, "loss", loss), params, args, batches)
    return ritz_residuals(streamed, params, values, vectors)


def eigsh(
    loss: Callable[..., Any],
    params: Any,
    *args: Any,
    k: int = 1,
    which: str = "LA",
    num_iters: int = DEFAULT_NUM_ITERS,
    key: jax.Array | None = None,
    batches: Iterable[Any] | None = None,
    return_residuals: bool = False,
) -> tuple[Any, ...]:
    """`k` extreme eigenpairs of the Hessian of `loss` at `params`, matrix-free.

    [`operator_eigsh`][gradtx.curvature.operator_eigsh] applied to
    [`hessian_operator`][gradtx.curvature.hessian_operator]`(loss, params, *args)`: the gradient is
    linearized once and each Lanczos step costs one Hessian-vector product.

    Args:
        loss: scalar function `loss(params, *args)`.
        params: the point, a pytree of float arrays.
        *args: one batch of data for `loss`.
        k: number of eigenpairs (`1 ≤ k ≤ num_iters`). Default 1.
        which: `"LA"`, `"SA"` or `"LM"` (see `operator_eigsh`). Default `"LA"`.
        num_iters: Lanczos steps = Hessian-vector products (≥ k; clipped to the parameter count).
            Default 100.
        key: PRNG key for the start vector. Default None (`jax.random.PRNGKey(0)`).
        batches: instead of `*args`, an iterable of batches; the Hessian is that of the
            batch-size-weighted average loss. Default None.
        return_residuals: also return `residuals (k,)`, `‖H v_i − θ_i v_i‖` from `k` more
            Hessian-vector products: the Hessian has an eigenvalue within `residuals[i]` of
            `eigenvalues[i]` (Parlett 1998, §4.5); for one batch or `Batched` data they share the
            Lanczos run's linearization and compiled call. Default False.

    Returns:
        `(eigenvalues (k,), eigenvectors)`, eigenvalues ascending, eigenvectors a pytree like
        `params` with a leading axis `k` (unit norm); with `return_residuals=True`,
        `(eigenvalues, eigenvectors, residuals)`.

    References:
        Lanczos 1950; Pearlmutter 1994 (Hessian-vector products); Yao et al., *PyHessian: Neural
        networks through the lens of the Hessian*, IEEE BigData 2020.
    """
    owner = "eigsh"
    _check_eig_args(owner, k, which, num_iters, _dimension(owner, params))
    if return_residuals and isinstance(batches, Iterator):  # a one-shot stream is read twice below
        batches = list(batches)
    if return_residuals and not is_stream(batches):  # one linearization for the Lanczos steps and residuals
        data, weights = prepare_data(owner, args, batches)
        arrays, static = partition_data(data)
        return _hessian_eigsh_residuals(static_callable(owner, "loss", loss), params, arrays, static, weights,
                                        _default_key(key), min(num_iters, _dimension(owner, params)), k, which)
    _, res = run_hessian_lanczos(owner, loss, params, args, batches, key, num_iters, gradient=False)
    vals, vecs = _ritz_pairs(res, params, k=k, which=which)
    if return_residuals:
        return vals, vecs, hessian_ritz_residuals(owner, loss, params, args, batches, vals, vecs)
    return vals, vecs


@functools.partial(jax.jit, static_argnames=("loss", "static", "weights", "num_iters", "k", "which"))
def _hessian_eigsh_residuals(loss, params, arrays, static, weights, key, num_iters, k, which):
    """`k` Ritz pairs of the bound loss's Hessian and their residuals: one linearization, one compile."""
    _, lin = bound_hessian_operator(loss, params, arrays, static, weights)
    mv, n, dtype, _ = flatten_operator(lin, params)
    vals, vecs = _ritz_pairs(_lanczos_flat(mv, n, dtype, min(num_iters, n), key, None), params, k=k, which=which)
    return vals, vecs, ritz_residuals(lin, params, vals, vecs)
