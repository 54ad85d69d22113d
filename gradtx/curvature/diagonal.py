"""The diagonal of a curvature operator: exact, Hutchinson, and XDiag.

All three methods only use products `A v` of a symmetric linear operator `A` on pytrees; the
diagonal is returned as a pytree like the params (the curvature of each parameter).

**Exact** (`"exact"`): `A_ii = e_iᵀ A e_i` from the `n` products with the basis vectors,
`block_size` of them at a time (one vmapped product per block). Exact, but `n` products: only
for small models (or to check the estimators).

**Hutchinson** (`"hutchinson"`, Bekas, Kokiopoulou & Saad 2007): with `m` Rademacher probes `z_i`,

$$\\operatorname{diag}(A) \\approx \\frac{1}{m} \\sum_{i=1}^{m} z_i \\odot A z_i,$$

unbiased because `E[z zᵀ] = I` and `z ⊙ z = 1`; entry `j` has variance `(1/m) Σ_{k≠j} A_jk²`,
so the error falls like `1/√m`.

**XDiag** (`"xdiag"`, Epperly, Tropp & Webber 2024): `m/2` products `Y = AΩ` with Rademacher `Ω`
give a basis `Q` of the dominant range of `A`, `m/2` more give `AQ`, and the diagonal of the
low-rank part `QQᵀA` is taken exactly while the rest is estimated from the same probes. Each
probe `ω_i` is used both ways with the *leave-one-out* basis `Q_(i)` of the other probes'
products (exchangeability), averaged over `i`:

$$\\hat d = \\frac{1}{s} \\sum_{i=1}^{s} \\Big[\\operatorname{diag}(Q_{(i)} Q_{(i)}^\\top A)
+ \\omega_i \\odot (I - Q_{(i)} Q_{(i)}^\\top) A \\omega_i\\Big], \\qquad s = \\lfloor m/2 \\rfloor .$$

All `s` leave-one-out bases come from one QR factorisation `Y = QR` by rank-one downdates, so
the cost is `m` products plus `O(n s²)` arithmetic. Unbiased; when the spectrum of `A` decays (a
few large eigenvalues, as for trained networks) its error is far below Hutchinson's at the same
number of products, and it is exact for operators of rank `< s`.

References:
    Bekas, Kokiopoulou & Saad, *An estimator for the diagonal of a matrix*, Applied Numerical
    Mathematics 57(11), 2007. Epperly, Tropp & Webber, *XTrace: making the most of every sample
    in stochastic trace estimation*, SIAM J. Matrix Anal. Appl. 45(1), 2024.
"""

import functools
from collections.abc import Callable, Iterable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
from jax.flatten_util import ravel_pytree

from gradtx._validation import check_int
from gradtx.curvature.data import partition_data, prepare_data, static_callable
from gradtx.curvature.fisher import check_key
from gradtx.curvature.operators import bound_hessian_operator, flatten_operator
from gradtx.curvature.streaming import is_streaming, streamed_hessian

__all__ = [
    "DIAGONAL_METHODS",
    "hessian_diagonal",
    "operator_diagonal",
]

DIAGONAL_METHODS = ("hutchinson", "xdiag", "exact")
"""The accepted values of `method` for the diagonal estimators."""

_DEFAULT_SAMPLES = 100
_EXACT_BLOCK = 128
_HIGHEST = lax.Precision.HIGHEST

Rows = Callable[[jax.Array], jax.Array]


def _check(owner: str, method: Any, num_samples: Any, block_size: Any, key: Any) -> jax.Array:
    if not isinstance(method, str) or method not in DIAGONAL_METHODS:
        raise ValueError(f"{owner}: method must be one of {DIAGONAL_METHODS}, got {method!r}")
    for name, value in (("num_samples", num_samples), ("block_size", block_size)):
        if value is None and name == "block_size":
            continue
        check_int(owner, name, value, low=1)
        if isinstance(value, jax.core.Tracer):
            raise TypeError(f"{owner}: {name} must be a static Python int, got a traced value")
    if method == "xdiag" and num_samples < 2:
        raise ValueError(f"{owner}: method='xdiag' needs num_samples >= 2 (half for the sketch AΩ, half for AQ), "
                         f"got {num_samples}")
    return jax.random.PRNGKey(0) if key is None else check_key(owner, key)


def _rademacher(key: jax.Array, shape: tuple[int, ...], dtype: Any) -> jax.Array:
    return jax.random.rademacher(key, shape, jnp.int8).astype(dtype)


def _probe_block(key: jax.Array, j: Any, block: int, n: int, m: int, dtype: Any) -> jax.Array:
    """Probes `i = j·block … (j+1)·block − 1` as rows, probe `i` drawn from `fold_in(key, i)` (so the
    estimate does not depend on `block_size`); rows past `m` are zero."""
    idx = j * block + jnp.arange(block)
    z = jax.vmap(lambda i: _rademacher(jax.random.fold_in(key, i), (n,), dtype))(idx)
    return z * (idx < m)[:, None].astype(dtype)


def _add_products(total: jax.Array, z: jax.Array, az: jax.Array) -> jax.Array:
    return total + jnp.sum(z * az, axis=0)


def _basis_block(j: Any, block: int, n: int, dtype: Any) -> jax.Array:
    """Basis vectors `e_{j·block} … e_{(j+1)·block − 1}` as rows (rows past `n` zero)."""
    return jax.nn.one_hot(j * block + jnp.arange(block), n, dtype=dtype)


def _put_diagonal(diag: jax.Array, j: Any, ae: jax.Array, block: int) -> jax.Array:
    """Store `(A e_i)_i` for the basis vectors of block `j`."""
    n = diag.shape[0]
    idx = j * block + jnp.arange(block)
    vals = jnp.take_along_axis(ae, jnp.minimum(idx, n - 1)[:, None], axis=1)[:, 0]
    return diag.at[idx].set(vals, mode="drop")


# host-loop steps for streaming operators: module-level, so repeated calls reuse the compiled code
_probe_block_jit = jax.jit(_probe_block, static_argnames=("block", "n", "m", "dtype"))
_add_products_jit = jax.jit(_add_products)
_basis_block_jit = jax.jit(_basis_block, static_argnames=("block", "n", "dtype"))
_put_diagonal_jit = jax.jit(_put_diagonal, static_argnames=("block",))
_sketch_jit = jax.jit(lambda key, s, n, dtype: _rademacher(key, (s, n), dtype), static_argnames=("s", "n", "dtype"))
_qr_jit = jax.jit(jnp.linalg.qr)


def _hutchinson(apply_rows: Rows, n: int, dtype: Any, m: int, key: jax.Array, block: int, streaming: bool) -> jax.Array:
    """`(1/m) Σ_i z_i ⊙ A z_i`, `block` probes per (vmapped or streamed) product."""
    steps = -(-m // block)
    total = jnp.zeros((n,), dtype)
    if streaming:
        for j in range(steps):
            z = _probe_block_jit(key, j, block=block, n=n, m=m, dtype=dtype)
            total = _add_products_jit(total, z, apply_rows(z))
        return total / m

    def body(j: Any, total: jax.Array) -> jax.Array:
        z = _probe_block(key, j, block, n, m, dtype)
        return _add_products(total, z, apply_rows(z))

    return lax.fori_loop(0, steps, body, total) / m


def _exact(apply_rows: Rows, n: int, dtype: Any, block: int, streaming: bool) -> jax.Array:
    """`A_ii = (A e_i)_i` from the n basis vectors, `block` at a time."""
    steps = -(-n // block)
    diag = jnp.zeros((n,), dtype)
    if streaming:
        for j in range(steps):
            diag = _put_diagonal_jit(diag, j, apply_rows(_basis_block_jit(j, block=block, n=n, dtype=dtype)), block=block)
        return diag

    def body(j: Any, diag: jax.Array) -> jax.Array:
        return _put_diagonal(diag, j, apply_rows(_basis_block(j, block, n, dtype)), block)

    return lax.fori_loop(0, steps, body, diag)


def _xdiag_combine(omega: jax.Array, y: jax.Array, q: jax.Array, r: jax.Array, z: jax.Array) -> jax.Array:
    """XDiag's estimate from the probes and products (all as columns).

    Args:
        omega: `(n, s)` Rademacher probes `Ω`.
        y: `(n, s)` products `AΩ`.
        q, r: the reduced QR factorisation `Y = QR`.
        z: `(n, s)` products `AQ` (`AᵀQ` for a non-symmetric `A`).

    Returns:
        The `(n,)` estimate of `diag(A)`.
    """
    s = omega.shape[1]
    mm = functools.partial(jnp.matmul, precision=_HIGHEST)
    # a (numerically) singular R means Y, hence A, has rank < s: clamp its pivots so that the
    # downdate directions fall in the part of range(Q) that A does not reach (terms then vanish)
    d = jnp.diagonal(r)
    floor = 10 * s * jnp.finfo(r.dtype).eps * jnp.maximum(jnp.max(jnp.abs(d)), jnp.finfo(r.dtype).tiny)
    safe = jnp.where(jnp.abs(d) < floor, jnp.where(d < 0, -floor, floor), d)
    r = r - jnp.diag(d) + jnp.diag(safe)
    # columns s_i of R^{-T}, normalised: Q s_i spans range(Q) ⊖ range(Q_(i)) (leave-one-out downdate)
    sm = jax.scipy.linalg.solve_triangular(r, jnp.eye(s, dtype=r.dtype), lower=False).T
    sm = sm / jnp.linalg.norm(sm, axis=0, keepdims=True)
    t = mm(z.T, omega)  # T = Zᵀ Ω
    qs, zs = mm(q, sm), mm(z, sm)
    c = jnp.sum(sm * t, axis=0)  # s_iᵀ t_i
    low_rank = jnp.sum(q * z, axis=1)  # diag(Q Zᵀ) = diag(QQᵀA)
    correction = (-jnp.sum(qs * zs, axis=1) + jnp.sum(omega * (y - mm(q, t)), axis=1)
                  + jnp.sum(omega * qs * c[None, :], axis=1))
    return low_rank + correction / s


_xdiag_combine_jit = jax.jit(_xdiag_combine)


def _xdiag(apply_rows: Rows, n: int, dtype: Any, m: int, key: jax.Array, streaming: bool) -> jax.Array:
    """XDiag with `s = min(m // 2, n)` probes: two blocks of `s` products (`AΩ`, then `AQ`)."""
    s = min(m // 2, n)
    omega = _sketch_jit(key, s=s, n=n, dtype=dtype) if streaming else _rademacher(key, (s, n), dtype)  # rows
    y = apply_rows(omega).T
    q, r = (_qr_jit if streaming else jnp.linalg.qr)(y)
    z = apply_rows(q.T).T
    return (_xdiag_combine_jit if streaming else _xdiag_combine)(omega.T, y, q, r, z)


def _diagonal_flat(method: str, apply_rows: Rows, n: int, dtype: Any, num_samples: int, key: jax.Array,
                   block_size: int | None, streaming: bool) -> jax.Array:
    if method == "exact":
        return _exact(apply_rows, n, dtype, min(n, block_size or _EXACT_BLOCK), streaming)
    if method == "hutchinson":
        return _hutchinson(apply_rows, n, dtype, num_samples, key, min(num_samples, block_size or num_samples), streaming)
    return _xdiag(apply_rows, n, dtype, num_samples, key, streaming)


def _vmapped_rows(mv: Callable[[jax.Array], jax.Array], block_size: int | None) -> Rows:
    """Apply a flat operator to the rows of a matrix, `block_size` rows per vmapped product."""

    def apply_rows(x: jax.Array) -> jax.Array:
        return lax.map(mv, x, batch_size=min(x.shape[0], block_size or x.shape[0]))

    return apply_rows


def _streaming_rows(matvec: Any, template: Any, block_size: int | None) -> tuple[Rows, int, Any, Callable[[jax.Array], Any]]:
    """Rows of a flat matrix → the operator's `matmat` (one pass over the data per block of rows)."""
    mv, n, dtype, unravel = flatten_operator(matvec, template)
    if hasattr(mv, "matmat"):  # the flat streaming form (ravel/unravel inside the per-batch jit)
        matmat = mv.matmat
    else:  # any other host-level operator with a pytree `matmat`
        to_tree = jax.jit(jax.vmap(unravel))
        to_rows = jax.jit(jax.vmap(lambda t: ravel_pytree(t)[0].astype(dtype)))

        def matmat(x: jax.Array) -> jax.Array:
            return to_rows(matvec.matmat(to_tree(x)))

    def apply_rows(x: jax.Array) -> jax.Array:
        size = x.shape[0] if block_size is None else block_size
        outs = [matmat(x[i:i + size]) for i in range(0, x.shape[0], size)]
        return outs[0] if len(outs) == 1 else jnp.concatenate(outs, axis=0)

    return apply_rows, n, dtype, unravel


def operator_diagonal(
    matvec: Callable[[Any], Any],
    template: Any,
    method: str = "hutchinson",
    num_samples: int = _DEFAULT_SAMPLES,
    key: jax.Array | None = None,
    block_size: int | None = None,
) -> Any:
    """Estimate (or compute) the diagonal of a symmetric linear operator on pytrees.

    See the module docstring for the three methods. With `method="hutchinson"`,

    $$\\operatorname{diag}(A) \\approx \\frac{1}{m} \\sum_{i=1}^{m} z_i \\odot A z_i, \\qquad
    z_i \\in \\{-1, +1\\}^n .$$

    A streaming operator (one whose `streaming` attribute is true, e.g. built with `batches=`
    over a data loader) is applied through its `matmat`, `block_size` vectors per pass over the
    data; any other operator is `jax.vmap`-ed over the vectors inside one `jax.jit`.

    Args:
        matvec: linear map `v ↦ A v` on pytrees shaped like `template` (a Hessian, Gauss-Newton,
            Fisher operator, ...).
        template: a pytree of float arrays fixing the space.
        method: `"hutchinson"` (default), `"xdiag"` or `"exact"`.
        num_samples: number of operator products for the randomized methods (static int ≥ 1,
            ≥ 2 for `"xdiag"`, which uses `⌊m/2⌋` probes, at most `n`). Ignored by `"exact"`,
            which always uses `n` products. Default 100.
        key: PRNG key for the probes (Hutchinson's probe `i` is drawn from `fold_in(key, i)`, so
            the estimate does not depend on `block_size` or on streaming). Default None
            (`jax.random.PRNGKey(0)`).
        block_size: number of vectors multiplied at once (one vmapped product, or one pass over
            the data for a streaming operator); static int ≥ 1. Default None: all the probes at
            once for the randomized methods, 128 basis vectors at a time for `"exact"`.

    Returns:
        The diagonal, a pytree like `template` (leaf dtypes of the template).

    Raises:
        ValueError: `method` not in `DIAGONAL_METHODS`, `num_samples` or `block_size < 1`,
            `num_samples < 2` for `"xdiag"`.
        TypeError: `matvec` not callable, `key` not a PRNG key, non-float template.

    References:
        Bekas, Kokiopoulou & Saad, *An estimator for the diagonal of a matrix*, Applied Numerical
        Mathematics 57(11), 2007. Epperly, Tropp & Webber, *XTrace: making the most of every
        sample in stochastic trace estimation*, SIAM J. Matrix Anal. Appl. 45(1), 2024.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.curvature import operator_diagonal
        >>> a = jnp.array([[2.0, 1.0], [1.0, 3.0]])
        >>> operator_diagonal(lambda v: a @ v, jnp.zeros(2), method="exact")
        Array([2., 3.], dtype=float32)
    """
    owner = "operator_diagonal"
    key = _check(owner, method, num_samples, block_size, key)
    if not callable(matvec):
        raise TypeError(f"{owner}: matvec must be callable, got {type(matvec).__name__}")
    if is_streaming(matvec):
        apply_rows, n, dtype, unravel = _streaming_rows(matvec, template, block_size)
        return unravel(_diagonal_flat(method, apply_rows, n, dtype, num_samples, key, block_size, True))

    def run(template: Any, key: jax.Array) -> Any:
        mv, n, dtype, unravel = flatten_operator(matvec, template)
        flat = _diagonal_flat(method, _vmapped_rows(mv, block_size), n, dtype, num_samples, key, block_size, False)
        return unravel(flat)

    return jax.jit(run)(template, key)


@functools.partial(jax.jit, static_argnames=("loss", "static", "weights", "method", "num_samples", "block_size"))
def _hessian_diagonal_core(loss, params, arrays, static, weights, key, method, num_samples, block_size):
    _, lin = bound_hessian_operator(loss, params, arrays, static, weights)
    mv, n, dtype, unravel = flatten_operator(lin, params)
    flat = _diagonal_flat(method, _vmapped_rows(mv, block_size), n, dtype, num_samples, key, block_size, False)
    return unravel(flat)


def hessian_diagonal(
    loss: Callable[..., Any],
    params: Any,
    *args: Any,
    batches: Iterable[Any] | None = None,
    method: str = "hutchinson",
    num_samples: int = _DEFAULT_SAMPLES,
    key: jax.Array | None = None,
    block_size: int | None = None,
) -> Any:
    """The diagonal of the Hessian of `loss` at `params`, as a pytree like `params`.

    The gradient is linearized once; each product is one Hessian-vector product (forward over
    reverse). Methods (see the module docstring):

    * `"exact"`: `H_ii = (H e_i)_i` for all `n` basis vectors, `block_size` (default 128) per
      vmapped product: cost `n` Hessian-vector products (about `2n` gradients) and memory
      `block_size × n`, the same work as the diagonal of `jax.hessian` but without its `n × n`
      matrix. For models up to some ten thousand parameters, or to check the estimators.
    * `"hutchinson"`: `(1/m) Σ_i z_i ⊙ H z_i`, `m = num_samples` Rademacher probes.
    * `"xdiag"`: the exchangeable estimator of Epperly, Tropp & Webber, with `m` products;
      much more accurate than Hutchinson when a few eigenvalues dominate.

    Args:
        loss: scalar function `loss(params, *args)`.
        params: the point θ, a pytree of float arrays.
        *args: one batch of data for `loss`.
        batches: instead of `*args`, the data set: a [`Batched`][gradtx.curvature.Batched]
            (swept by `lax.scan` in one jit) or a stream (list, loader, generator factory; see
            [`gradtx.curvature.streaming`][gradtx.curvature.streaming]), applied `block_size`
            vectors per pass over the data. The diagonal is that of the Hessian of the
            batch-size-weighted average loss. Default None.
        method: `"hutchinson"` (default), `"xdiag"` or `"exact"`.
        num_samples: Hessian-vector products for the randomized methods (static int ≥ 1, ≥ 2 for
            `"xdiag"`); ignored by `"exact"`. Default 100.
        key: PRNG key for the probes (Hutchinson's probe `i` is drawn from `fold_in(key, i)`, so
            the estimate does not depend on `block_size` or on streaming). Default None
            (`jax.random.PRNGKey(0)`).
        block_size: vectors per vmapped product (static int ≥ 1). Default None: all probes at
            once, or 128 basis vectors for `"exact"`.

    Returns:
        `diag ∇²L(θ)` (exact or estimated), a pytree like `params`.

    Raises:
        ValueError: `method` not in `DIAGONAL_METHODS`, `num_samples` or `block_size < 1`,
            `num_samples < 2` for `"xdiag"`.
        TypeError: `loss` not callable, `key` not a PRNG key.

    References:
        Bekas, Kokiopoulou & Saad 2007; Epperly, Tropp & Webber, SIAM J. Matrix Anal. Appl. 2024;
        Yao et al., *AdaHessian*, AAAI 2021 (the Hutchinson diagonal as a preconditioner).

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.curvature import hessian_diagonal
        >>> loss = lambda p: jnp.sum(p["w"] ** 4) + p["b"] ** 2
        >>> hessian_diagonal(loss, {"w": jnp.array([1.0, 2.0]), "b": jnp.array(0.0)}, method="exact")
        {'b': Array(2., dtype=float32), 'w': Array([12., 48.], dtype=float32)}
    """
    owner = "hessian_diagonal"
    key = _check(owner, method, num_samples, block_size, key)
    loss = static_callable(owner, "loss", loss)
    streamed = streamed_hessian(owner, loss, params, args, batches)
    if streamed is not None:
        return operator_diagonal(streamed, params, method=method, num_samples=num_samples, key=key,
                                 block_size=block_size)
    data, weights = prepare_data(owner, args, batches)
    arrays, static = partition_data(data)
    return _hessian_diagonal_core(loss, params, arrays, static, weights, key, method=method,
                                  num_samples=num_samples, block_size=block_size)

