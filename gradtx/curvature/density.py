"""Spectral density of the Hessian by stochastic Lanczos quadrature (SLQ).

The spectral density of a symmetric `A ∈ R^{n×n}` with eigenvalues `λ_1..λ_n` is
`φ(t) = (1/n) Σ_i δ(t − λ_i)`. Smoothing it with a Gaussian `g_σ` gives
`φ_σ(t) = (1/n) tr g_σ(t I − A)`, a trace that SLQ estimates as follows: for a random unit start
vector `v` (here Rademacher, scaled), `m` Lanczos steps give the tridiagonal `T_m = S Θ Sᵀ`, and
Gauss quadrature yields `vᵀ f(A) v ≈ Σ_j τ_j f(θ_j)` with nodes `θ_j` (Ritz values) and weights
`τ_j = S_{1j}²` (which sum to 1). Averaging over `num_runs` independent start vectors,

$$\\hat φ_σ(t) = \\frac{1}{R} \\sum_{r=1}^{R} \\sum_{j=1}^{m} τ_j^{(r)} \\, g_σ(t − θ_j^{(r)}),
\\qquad g_σ(x) = \\frac{e^{-x^2 / (2σ^2)}}{\\sqrt{2π}\\,σ}.$$

The returned density is evaluated on a grid and rescaled so that its trapezoid integral over the
grid is exactly 1.

References:
    Lin, Saad & Yang, *Approximating spectral densities of large matrices*, SIAM Review 58(1),
    2016. Ghorbani, Krishnan & Xiao, *An investigation into neural net optimization via Hessian
    eigenvalue density*, ICML 2019. Yao et al., *PyHessian*, IEEE BigData 2020.
"""

import functools
from collections.abc import Callable, Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradtx._validation import check_int, check_real
from gradtx.curvature.data import partition_data, prepare_data, static_callable
from gradtx.curvature.lanczos import (
    DEFAULT_NUM_ITERS,
    _default_key,
    _dimension,
    _lanczos_flat,
    tridiagonal_eigh,
)
from gradtx.curvature.operators import bound_hessian_operator, flatten_operator
from gradtx.curvature.streaming import is_streaming, streamed_hessian

__all__ = [
    "DEFAULT_GRID_SIZE",
    "DEFAULT_NUM_RUNS",
    "operator_spectral_density",
    "slq_nodes_weights",
    "spectral_density",
]

DEFAULT_NUM_RUNS = 10
"""Default number of independent Lanczos runs (random start vectors) for SLQ."""
DEFAULT_GRID_SIZE = 1000
"""Default number of grid points of the returned density."""
_SIGMA_FRACTION = 0.01
_MARGIN_SIGMAS = 5.0


def slq_nodes_weights(
    mv: Callable[[jax.Array], jax.Array], n: int, dtype: Any, num_iters: int, num_runs: int, key: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Gauss-quadrature nodes and weights of `num_runs` Lanczos runs on a flat operator.

    Args:
        mv: symmetric linear map on flat `(n,)` vectors.
        n: the dimension.
        dtype: the floating dtype of the vectors.
        num_iters: Lanczos steps per run (clipped to `n`).
        num_runs: number of independent Rademacher start vectors (runs are sequential, so the
            memory is that of one run: `min(num_iters, n) × n`).
        key: PRNG key.

    Returns:
        `(nodes, weights)`, each `(num_runs, min(num_iters, n))`; each row of `weights` sums to 1.
    """
    m = min(num_iters, n)
    if is_streaming(mv):  # host loop over the runs, each a host loop of compiled Lanczos steps
        runs = [_slq_run_stream(mv, n, jnp.dtype(dtype), m, k) for k in jax.random.split(key, num_runs)]
        return jnp.stack([r[0] for r in runs]), jnp.stack([r[1] for r in runs])

    def one_run(run_key: jax.Array) -> tuple[jax.Array, jax.Array]:
        key_v, key_l = jax.random.split(run_key)
        v0 = jax.random.rademacher(key_v, (n,), jnp.int8).astype(dtype)
        res = _lanczos_flat(mv, n, dtype, m, key_l, v0)
        theta, s = tridiagonal_eigh(res.alpha, res.beta)
        return theta, s[0, :] ** 2

    return jax.lax.map(one_run, jax.random.split(key, num_runs))


@functools.partial(jax.jit, static_argnums=(1, 2))
def _rademacher_start(key: jax.Array, n: int, dtype: Any) -> tuple[jax.Array, jax.Array]:
    key_v, key_l = jax.random.split(key)
    return jax.random.rademacher(key_v, (n,), jnp.int8).astype(dtype), key_l


@jax.jit
def _quadrature(alpha: jax.Array, beta: jax.Array) -> tuple[jax.Array, jax.Array]:
    theta, s = tridiagonal_eigh(alpha, beta)
    return theta, s[0, :] ** 2


def _slq_run_stream(mv: Any, n: int, dtype: Any, m: int, run_key: jax.Array) -> tuple[jax.Array, jax.Array]:
    v0, key_l = _rademacher_start(run_key, n, dtype)
    res = _lanczos_flat(mv, n, dtype, m, key_l, v0, streaming=True)
    return _quadrature(res.alpha, res.beta)


def _density_on_grid(nodes: jax.Array, weights: jax.Array, grid: Any, sigma: Any) -> tuple[jax.Array, jax.Array]:
    """Gaussian-broadened density of the quadrature, on a given or automatic grid, normalized."""
    nodes = nodes.ravel()
    weights = weights.ravel() / jnp.sum(weights)
    lo, hi = jnp.min(nodes), jnp.max(nodes)
    if sigma is None:
        span = hi - lo
        scale = jnp.where(span > 0, span, jnp.maximum(jnp.abs(hi), 1))
        sigma = _SIGMA_FRACTION * scale
    sigma = jnp.asarray(sigma, nodes.dtype)
    if grid is None or isinstance(grid, int):
        size = DEFAULT_GRID_SIZE if grid is None else grid
        margin = _MARGIN_SIGMAS * sigma
        grid = jnp.linspace(lo - margin, hi + margin, size, dtype=nodes.dtype)
    else:
        grid = jnp.asarray(grid, nodes.dtype)
    z = (grid[:, None] - nodes[None, :]) / sigma
    density = jnp.sum(weights[None, :] * jnp.exp(-0.5 * z**2), axis=1) / (jnp.sqrt(2 * jnp.pi) * sigma)
    mass = jnp.trapezoid(density, grid)
    density = jnp.where(mass > 0, density / jnp.where(mass > 0, mass, 1), density)
    return grid, density


def _check(owner: str, num_iters: Any, num_runs: Any, grid: Any, sigma: Any) -> Any:
    for name, value in (("num_iters", num_iters), ("num_runs", num_runs)):
        check_int(owner, name, value, low=1)
        if isinstance(value, jax.core.Tracer):
            raise TypeError(f"{owner}: {name} must be a static Python int, got a traced value")
    if sigma is not None:
        check_real(owner, "sigma", sigma, low=0.0, low_inclusive=False)
    if grid is None:
        return None
    if isinstance(grid, (int, np.integer)) and not isinstance(grid, bool):
        if grid < 2:
            raise ValueError(f"{owner}: an integer grid is the number of points and must be >= 2, got {grid}")
        return int(grid)
    if isinstance(grid, bool):
        raise TypeError(f"{owner}: grid must be None, an int (number of points) or a 1-D array, got {grid!r}")
    if np.ndim(grid) != 1 or np.shape(grid)[0] < 2:
        raise ValueError(f"{owner}: an array grid must be 1-D with at least 2 points, got shape {np.shape(grid)}")
    if not isinstance(grid, jax.core.Tracer) and np.any(np.diff(np.asarray(grid)) <= 0):
        raise ValueError(f"{owner}: an array grid must be strictly increasing")
    return grid


def operator_spectral_density(
    matvec: Callable[[Any], Any],
    template: Any,
    num_iters: int = DEFAULT_NUM_ITERS,
    num_runs: int = DEFAULT_NUM_RUNS,
    key: jax.Array | None = None,
    grid: int | jax.Array | None = None,
    sigma: float | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Smoothed spectral density of a symmetric linear operator by stochastic Lanczos quadrature.

    Args and returns as for [`spectral_density`][gradtx.curvature.spectral_density], with the
    operator given as `matvec(v) -> A v` on pytrees shaped like `template`. A
    [`StreamingOperator`][gradtx.curvature.StreamingOperator] runs the Lanczos steps on the
    host, one pass over its data per step.
    """
    owner = "operator_spectral_density"
    grid = _check(owner, num_iters, num_runs, grid, sigma)
    if not callable(matvec):
        raise TypeError(f"{owner}: matvec must be callable, got {type(matvec).__name__}")
    array_grid = None if grid is None or isinstance(grid, int) else grid

    if is_streaming(matvec):
        mv, n, dtype, _ = flatten_operator(matvec, template)
        nodes, weights = slq_nodes_weights(mv, n, dtype, num_iters, num_runs, _default_key(key))
        return _density_jit(nodes, weights, array_grid, sigma, grid_size=grid if array_grid is None else None)

    def run(template, key, array_grid, sigma):
        mv, n, dtype, _ = flatten_operator(matvec, template)
        nodes, weights = slq_nodes_weights(mv, n, dtype, num_iters, num_runs, key)
        return _density_on_grid(nodes, weights, grid if array_grid is None else array_grid, sigma)

    return jax.jit(run)(template, _default_key(key), array_grid, sigma)


@functools.partial(jax.jit, static_argnames=("grid_size",))
def _density_jit(nodes: jax.Array, weights: jax.Array, array_grid: Any, sigma: Any, grid_size: int | None) -> tuple[jax.Array, jax.Array]:
    return _density_on_grid(nodes, weights, grid_size if array_grid is None else array_grid, sigma)


@functools.partial(jax.jit, static_argnames=("loss", "static", "weights", "num_iters", "num_runs", "grid_size"))
def _density_core(loss, params, arrays, static, weights, key, array_grid, sigma, num_iters, num_runs, grid_size):
    _, lin = bound_hessian_operator(loss, params, arrays, static, weights)
    mv, n, dtype, _ = flatten_operator(lin, params)
    nodes, qweights = slq_nodes_weights(mv, n, dtype, num_iters, num_runs, key)
    return _density_on_grid(nodes, qweights, grid_size if array_grid is None else array_grid, sigma)


def spectral_density(
    loss: Callable[..., Any],
    params: Any,
    *args: Any,
    num_iters: int = DEFAULT_NUM_ITERS,
    num_runs: int = DEFAULT_NUM_RUNS,
    key: jax.Array | None = None,
    grid: int | jax.Array | None = None,
    sigma: float | None = None,
    batches: Iterable[Any] | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Gaussian-smoothed eigenvalue density of the Hessian of `loss`, by stochastic Lanczos quadrature.

    Runs `num_runs` Lanczos iterations of `num_iters` steps (full reorthogonalization) from
    Rademacher start vectors, and returns `φ̂_σ(t) = (1/R) Σ_r Σ_j τ_j^{(r)} g_σ(t − θ_j^{(r)})` on a
    grid (see the module docstring), rescaled so that `jnp.trapezoid(density, grid) == 1`.
    Cost: `num_runs × min(num_iters, n)` Hessian-vector products.

    Args:
        loss: scalar function `loss(params, *args)`.
        params: the point, a pytree of float arrays.
        *args: one batch of data for `loss`.
        num_iters: Lanczos steps per run (static int ≥ 1, clipped to the parameter count).
            Default 100.
        num_runs: independent start vectors (static int ≥ 1). Default 10.
        key: PRNG key. Default None (`jax.random.PRNGKey(0)`).
        grid: None (1000 points), an int ≥ 2 (that many points) or a strictly increasing 1-D
            array of evaluation points. An automatic grid spans
            `[θ_min − 5σ, θ_max + 5σ]`, the extreme Ritz values over all runs with a margin of
            five standard deviations of the Gaussian. Default None.
        sigma: standard deviation of the Gaussian broadening, in eigenvalue units (> 0). Default
            None: 1% of the width `θ_max − θ_min` of the Ritz values (1% of `max(|θ|, 1)` when
            they all coincide).
        batches: instead of `*args`, the data set: a [`Batched`][gradtx.curvature.Batched]
            (scanned in one jit) or a stream (list, loader, generator factory; see
            [`gradtx.curvature.streaming`][gradtx.curvature.streaming]: each Lanczos step is
            one pass over the data). The density is that of the Hessian of the
            batch-size-weighted average loss. Default None.

    Returns:
        `(grid, density)`, two 1-D arrays of the same length. When a user grid misses all the
        mass (the integral underflows to 0), the density is returned unnormalized (zeros).

    References:
        Lin, Saad & Yang, SIAM Review 58(1), 2016; Ghorbani, Krishnan & Xiao, ICML 2019;
        Golub & Meurant, *Matrices, Moments and Quadrature with Applications*, 2010.
    """
    owner = "spectral_density"
    grid = _check(owner, num_iters, num_runs, grid, sigma)
    loss = static_callable(owner, "loss", loss)
    streamed = streamed_hessian(owner, loss, params, args, batches)
    if streamed is not None:
        return operator_spectral_density(streamed, params, num_iters=num_iters, num_runs=num_runs, key=key,
                                         grid=grid, sigma=sigma)
    data, weights = prepare_data(owner, args, batches)
    arrays, static = partition_data(data)
    grid_size = DEFAULT_GRID_SIZE if grid is None else (grid if isinstance(grid, int) else None)
    array_grid = None if grid_size is not None else grid
    return _density_core(
        loss, params, arrays, static, weights, _default_key(key), array_grid, sigma,
        num_iters=min(num_iters, _dimension(owner, params)), num_runs=num_runs, grid_size=grid_size,
    )
