"""Stochastic estimation of the Hessian trace: Hutchinson and Hutch++.

Both estimators only use products `A z` with random Rademacher probes `z ∈ {−1, +1}^n`
(`E[z zᵀ] = I`, hence `E[zᵀ A z] = tr A`).

* Hutchinson (1990): `tr A ≈ (1/m) Σ_i z_iᵀ A z_i` with `m` probes; unbiased, with variance
  `(2/m)(‖A‖_F² − Σ_i A_ii²)`, so the relative error decays like `1/√m`.
* Hutch++ (Meyer, Musco, Musco & Woodruff 2021): spend a third of the budget finding the
  dominant range of `A` by one block product `Q = orth(A S)`, take its trace exactly, and apply
  Hutchinson only to the deflated rest:
  `tr A ≈ tr(Qᵀ A Q) + (1/m_3) tr(Gᵀ (I − QQᵀ) A (I − QQᵀ) G)`. Unbiased as well, and much more
  accurate when a few large eigenvalues dominate (the usual case for neural-network Hessians):
  the error decays like `1/m` instead of `1/√m`.

The budget `num_samples` is the number of operator products for both methods; Hutch++ splits it
as `k = num_samples // 3` products for `A S`, `k` for `A Q` and `num_samples − 2k` for the
residual probes.
"""

import functools
from collections.abc import Callable, Iterable
from typing import Any

import jax
import jax.numpy as jnp

from gradtx._validation import check_int
from gradtx.curvature.data import partition_data, prepare_data, static_callable
from gradtx.curvature.lanczos import _default_key
from gradtx.curvature.operators import bound_hessian_operator, flatten_operator
from gradtx.curvature.streaming import is_streaming, streamed_hessian

__all__ = [
    "DEFAULT_NUM_SAMPLES",
    "TRACE_METHODS",
    "hessian_trace",
    "operator_trace",
]

DEFAULT_NUM_SAMPLES = 100
"""Default number of operator products for the trace estimators."""

TRACE_METHODS = ("hutchinson", "hutch++")
"""The accepted values of `method`."""


def _check(owner: str, num_samples: Any, method: Any) -> None:
    check_int(owner, "num_samples", num_samples, low=1)
    if isinstance(num_samples, jax.core.Tracer):
        raise TypeError(f"{owner}: num_samples must be a static Python int, got a traced value")
    if not isinstance(method, str) or method not in TRACE_METHODS:
        raise ValueError(f"{owner}: method must be one of {TRACE_METHODS}, got {method!r}")
    if method == "hutch++" and num_samples < 3:
        raise ValueError(f"{owner}: method='hutch++' needs num_samples >= 3 (a third each for the sketch, its "
                         f"products and the residual probes), got {num_samples}")


def _rademacher(key: jax.Array, shape: tuple[int, ...], dtype: Any) -> jax.Array:
    return jax.random.rademacher(key, shape, jnp.int8).astype(dtype)


def _trace_flat(mv: Callable[[jax.Array], jax.Array], n: int, dtype: Any, num_samples: int, key: jax.Array, method: str) -> jax.Array:
    """Trace estimate for a flat operator (probes are rows; products are vmapped)."""
    apply = jax.vmap(mv)
    if method == "hutchinson":
        z = _rademacher(key, (num_samples, n), dtype)
        return jnp.mean(jnp.sum(z * apply(z), axis=1))
    k = num_samples // 3
    m3 = num_samples - 2 * k
    key_s, key_g = jax.random.split(key)
    s = _rademacher(key_s, (k, n), dtype)
    g = _rademacher(key_g, (m3, n), dtype)
    q, _ = jnp.linalg.qr(apply(s).T)  # (n, min(n, k)) orthonormal basis of range(A S)
    qt = q.T
    low_rank = jnp.sum(qt * apply(qt))  # tr(Qᵀ A Q)
    g = g - jnp.matmul(jnp.matmul(g, q, precision=jax.lax.Precision.HIGHEST), qt, precision=jax.lax.Precision.HIGHEST)
    residual = jnp.sum(g * apply(g)) / m3
    return low_rank + residual


@functools.partial(jax.jit, static_argnums=(1, 2))
def _probes(key: jax.Array, shape: tuple[int, ...], dtype: Any) -> jax.Array:
    return _rademacher(key, shape, dtype)


@jax.jit
def _quadratic_mean(z: jax.Array, az: jax.Array) -> jax.Array:
    return jnp.mean(jnp.sum(z * az, axis=1))


@jax.jit
def _range_basis(a_s: jax.Array) -> jax.Array:
    q, _ = jnp.linalg.qr(a_s.T)
    return q.T


@jax.jit
def _deflate(g: jax.Array, qt: jax.Array) -> jax.Array:
    hi = jax.lax.Precision.HIGHEST
    return g - jnp.matmul(jnp.matmul(g, qt.T, precision=hi), qt, precision=hi)


@jax.jit
def _hutchpp_total(qt: jax.Array, a_q: jax.Array, g: jax.Array, a_g: jax.Array) -> jax.Array:
    return jnp.sum(qt * a_q) + jnp.sum(g * a_g) / g.shape[0]


def _trace_stream(op: Any, n: int, dtype: Any, num_samples: int, key: jax.Array, method: str) -> jax.Array:
    """`_trace_flat` for a host-level streaming operator: every block of probes is one `matmat`,
    i.e. one pass over the data (Hutchinson: one pass; Hutch++: three)."""
    dtype = jnp.dtype(dtype)
    if method == "hutchinson":
        z = _probes(key, (num_samples, n), dtype)
        return _quadratic_mean(z, op.matmat(z))
    k = num_samples // 3
    m3 = num_samples - 2 * k
    key_s, key_g = jax.random.split(key)
    s = _probes(key_s, (k, n), dtype)
    g = _probes(key_g, (m3, n), dtype)
    qt = _range_basis(op.matmat(s))
    a_q = op.matmat(qt)
    g = _deflate(g, qt)
    return _hutchpp_total(qt, a_q, g, op.matmat(g))


def operator_trace(
    matvec: Callable[[Any], Any],
    template: Any,
    num_samples: int = DEFAULT_NUM_SAMPLES,
    key: jax.Array | None = None,
    method: str = "hutchinson",
) -> jax.Array:
    """Estimate `tr A` of a symmetric linear operator on pytrees from `num_samples` products.

    Args:
        matvec: linear map `v ↦ A v` on pytrees shaped like `template` (it is `jax.vmap`-ed over
            the probes).
        template: a pytree of float arrays fixing the space.
            A [`StreamingOperator`][gradtx.curvature.StreamingOperator] is applied to all the
            probes of a block at once (`matmat`: one pass over the data for Hutchinson, three for
            Hutch++).
        num_samples: number of operator products (static int ≥ 1; ≥ 3 for `"hutch++"`).
            Default 100.
        key: PRNG key for the Rademacher probes. Default None (`jax.random.PRNGKey(0)`).
        method: `"hutchinson"` or `"hutch++"`. Default `"hutchinson"`.

    Returns:
        A scalar estimate of the trace.

    References:
        Hutchinson, *A stochastic estimator of the trace of the influence matrix for Laplacian
        smoothing splines*, Comm. Statist. Simul. Comput. 19(2), 1990.
        Meyer, Musco, Musco & Woodruff, *Hutch++: Optimal stochastic trace estimation*, SOSA 2021.
    """
    _check("operator_trace", num_samples, method)
    if not callable(matvec):
        raise TypeError(f"operator_trace: matvec must be callable, got {type(matvec).__name__}")

    if is_streaming(matvec):
        mv, n, dtype, _ = flatten_operator(matvec, template)
        return _trace_stream(mv, n, dtype, num_samples, _default_key(key), method)

    def run(template, key):
        mv, n, dtype, _ = flatten_operator(matvec, template)
        return _trace_flat(mv, n, dtype, num_samples, key, method)

    return jax.jit(run)(template, _default_key(key))


@functools.partial(jax.jit, static_argnames=("loss", "static", "weights", "num_samples", "method"))
def _hessian_trace_core(loss, params, arrays, static, weights, key, num_samples, method):
    _, lin = bound_hessian_operator(loss, params, arrays, static, weights)
    mv, n, dtype, _ = flatten_operator(lin, params)
    return _trace_flat(mv, n, dtype, num_samples, key, method)


def hessian_trace(
    loss: Callable[..., Any],
    params: Any,
    *args: Any,
    num_samples: int = DEFAULT_NUM_SAMPLES,
    key: jax.Array | None = None,
    method: str = "hutchinson",
    batches: Iterable[Any] | None = None,
) -> jax.Array:
    """Estimate the trace of the Hessian of `loss` at `params` from Hessian-vector products.

    Hutchinson: `tr H ≈ (1/m) Σ_i z_iᵀ H z_i` with Rademacher `z_i`. Hutch++: `tr(Qᵀ H Q)` on the
    range `Q` of a sketch `H S`, plus Hutchinson on the deflated remainder (see the module
    docstring). The gradient is linearized once; each probe costs one Hessian-vector product.

    Args:
        loss: scalar function `loss(params, *args)`.
        params: the point, a pytree of float arrays.
        *args: one batch of data for `loss`.
        num_samples: number of Hessian-vector products (static int ≥ 1; ≥ 3 for `"hutch++"`).
            Default 100.
        key: PRNG key for the probes. Default None (`jax.random.PRNGKey(0)`).
        method: `"hutchinson"` or `"hutch++"`. Default `"hutchinson"`.
        batches: instead of `*args`, the data set: a [`Batched`][gradtx.curvature.Batched]
            (scanned in one jit) or a stream (list, loader, generator factory; see
            [`gradtx.curvature.streaming`][gradtx.curvature.streaming]), whose probes share
            passes over the data (one for Hutchinson, three for Hutch++). The trace is that of
            the Hessian of the batch-size-weighted average loss. Default None.

    Returns:
        A scalar estimate of `tr ∇²L(θ)`.

    Raises:
        ValueError: `num_samples < 1` (or `< 3` for Hutch++), `method` not in the set.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from gradtx.curvature import hessian_trace
        >>> d = jnp.arange(1.0, 6.0)  # Hessian diag(1..5), trace 15
        >>> # Rademacher probes are exact on a diagonal Hessian (z_i² = 1)
        >>> est = hessian_trace(lambda p: 0.5 * jnp.sum(d * p**2), jnp.zeros(5), num_samples=4,
        ...                     key=jax.random.PRNGKey(0))
        >>> round(float(est), 3)
        15.0

    References:
        Hutchinson 1990; Meyer, Musco, Musco & Woodruff, *Hutch++*, SOSA 2021; Yao et al.,
        *PyHessian*, IEEE BigData 2020.
    """
    owner = "hessian_trace"
    _check(owner, num_samples, method)
    loss = static_callable(owner, "loss", loss)
    streamed = streamed_hessian(owner, loss, params, args, batches)
    if streamed is not None:
        return operator_trace(streamed, params, num_samples=num_samples, key=key, method=method)
    data, weights = prepare_data(owner, args, batches)
    arrays, static = partition_data(data)
    return _hessian_trace_core(loss, params, arrays, static, weights, _default_key(key), num_samples=num_samples, method=method)
