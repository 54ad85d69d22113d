"""Per-block Hessian spectra: top eigenvalues, trace and density of each diagonal block.

Split the parameters into blocks `b` (every leaf, or groups of leaves such as a layer's kernel
and bias). The diagonal block of the Hessian for `b` is the Hessian restricted to that block,

$$
H_{bb} = P_b^\\top H P_b, \\qquad H_{bb}\\, v_b = P_b^\\top \\big(H\\, P_b v_b\\big),
$$

where `P_b` embeds a vector of the block's parameters into the full space (zeros elsewhere): a
product costs one Hessian-vector product of the whole loss, of which only the block's part is
kept. `H_bb` is the curvature the loss has when only that block moves, which is what layer-wise
analyses (PyHessian's per-layer spectra, layer-wise learning-rate rules, K-FAC's block-diagonal
approximation) look at. For each block [`block_spectra`][gradtx.curvature.block_spectra] reports

* its `k` largest eigenvalues by Lanczos (with full reorthogonalization) and their Ritz residual
  norms `‖H_bb v − θ v‖` (an eigenvalue of `H_bb` lies within each; see
  [`ritz_residuals`][gradtx.curvature.ritz_residuals]);
* its trace: exact (`Σ_i e_iᵀ H_bb e_i`, one product per parameter) when the block has at most
  `trace_samples` parameters, which then costs no more than the estimate would, else Hutchinson's
  estimate `tr H_bb ≈ (1/S) Σ_s z_sᵀ H_bb z_s` with `S = trace_samples` Rademacher probes and its
  standard error;
* optionally its spectral density by stochastic Lanczos quadrature from the same Lanczos run
  (nodes: the Ritz values, weights: squared first components of the tridiagonal's eigenvectors).

Without streamed data all blocks are computed in one compiled call (one `jax.jit` holding every
block's Lanczos run, residual products and trace products). With a stream `batches=` (list,
loader, generator factory) each block is a
[`StreamingOperator`][gradtx.curvature.StreamingOperator] and the blocks run one after another
(host loops of compiled steps; a block's trace and residual products share one pass over the
data each).

References:
    Yao, Gholami, Keutzer & Mahoney, *PyHessian: Neural networks through the lens of the Hessian*,
    IEEE BigData 2020 (per-layer spectra). Sagun et al., *Empirical analysis of the Hessian of
    over-parametrized neural networks*, ICLR workshop 2018. Hutchinson, *A stochastic estimator of
    the trace of the influence matrix*, 1990. Lin, Saad & Yang, *Approximating spectral densities
    of large matrices*, SIAM Review 58(1), 2016.
"""

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.flatten_util import ravel_pytree

from gradtx._validation import check_int
from gradtx.curvature.data import Batched, combine_data, partition_data, static_callable
from gradtx.curvature.density import DEFAULT_GRID_SIZE, _density_on_grid
from gradtx.curvature.lanczos import DEFAULT_NUM_ITERS, _default_key, lanczos_tridiag, tridiagonal_eigh
from gradtx.curvature.operators import unraveler
from gradtx.curvature.residuals import residual_norms
from gradtx.curvature.streaming import (
    HessianProduct,
    StreamingOperator,
    batch_stream,
    data_operator,
    is_streaming,
)

__all__ = ["DEFAULT_TRACE_SAMPLES", "BlockSpectrum", "block_spectra", "leaf_paths"]

DEFAULT_TRACE_SAMPLES = 100
"""Default number of Hutchinson probes per block (blocks this small or smaller get an exact trace)."""


class BlockSpectrum(NamedTuple):
    """The spectrum of one diagonal Hessian block `H_bb`.

    Attributes:
        eigenvalues: `(min(k, size),)` largest eigenvalues (Ritz values), ascending.
        residuals: their residual norms `‖H_bb v_i − θ_i v_i‖`: `H_bb` has an eigenvalue within
            `residuals[i]` of `eigenvalues[i]`.
        trace: `tr H_bb`, exact or Hutchinson's estimate.
        trace_stderr: the standard error of `trace` (0 when exact).
        trace_exact: True when `trace` is exact (the block has at most `trace_samples` parameters).
        size: number of parameters in the block.
        paths: the leaf paths (see [`leaf_paths`][gradtx.curvature.leaf_paths]) making up the block.
        density_grid: the grid of the spectral density, or None (`density=False`).
        density: the normalized spectral density of `H_bb` on `density_grid`, or None.
    """

    eigenvalues: jax.Array
    residuals: jax.Array
    trace: jax.Array
    trace_stderr: jax.Array
    trace_exact: bool
    size: int
    paths: tuple[str, ...]
    density_grid: jax.Array | None = None
    density: jax.Array | None = None


def _key_name(key: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def leaf_paths(params: Any) -> list[str]:
    """The path of every leaf of `params` as a `/`-joined string of its keys, in leaf order.

    Dict keys, attribute names and sequence indices are joined with `/`: for
    `{"dense": {"kernel": w, "bias": b}, "out": [w2, b2]}` the paths are `"dense/bias"`,
    `"dense/kernel"`, `"out/0"`, `"out/1"` (`jax.tree_util` order: dict keys sorted). These are the
    names [`block_spectra`][gradtx.curvature.block_spectra]'s `blocks` refers to.
    """
    flat, _ = jax.tree_util.tree_flatten_with_path(params)
    return ["/".join(_key_name(k) for k in path) for path, _ in flat]


def _resolve_blocks(owner: str, params: Any, blocks: Any) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """`((name, leaf indices), ...)` for every block; validates the specification."""
    leaves = jax.tree_util.tree_leaves(params)
    if not leaves:
        raise ValueError(f"{owner}: params has no leaves")
    for path, leaf in zip(leaf_paths(params), leaves):
        if not jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
            raise TypeError(f"{owner}: every params leaf must be floating point; {path!r} has dtype {jnp.result_type(leaf)}")
    paths = leaf_paths(params)
    if blocks is None:
        out = tuple((p, (i,)) for i, p in enumerate(paths))
    else:
        if not isinstance(blocks, Mapping):
            raise TypeError(
                f"{owner}: blocks must be None (one block per leaf) or a mapping from block name to a leaf "
                f"path, a list of paths or a predicate path -> bool, got {type(blocks).__name__}")
        if not blocks:
            raise ValueError(f"{owner}: blocks is an empty mapping; give at least one block or None")
        out = tuple((str(name), _select(owner, str(name), spec, paths)) for name, spec in blocks.items())
    for name, idx in out:
        if sum(jnp.size(leaves[i]) for i in idx) == 0:
            raise ValueError(f"{owner}: block {name!r} has no parameters (its leaves are empty)")
    return out


def _block_size(leaves: Sequence[Any], idx: tuple[int, ...]) -> int:
    return int(sum(jnp.size(leaves[i]) for i in idx))


def _select(owner: str, name: str, spec: Any, paths: Sequence[str]) -> tuple[int, ...]:
    if callable(spec):
        idx = tuple(i for i, p in enumerate(paths) if spec(p))
        if not idx:
            raise ValueError(f"{owner}: block {name!r}: its predicate selects no leaf; the leaf paths are {list(paths)}")
        return idx
    if isinstance(spec, str):
        spec = [spec]
    if not isinstance(spec, Sequence) or not spec or not all(isinstance(s, str) for s in spec):
        raise TypeError(f"{owner}: block {name!r} must be a leaf path, a non-empty list of paths or a predicate "
                        f"path -> bool, got {spec!r}")
    chosen: list[int] = []
    for s in spec:
        hits = [i for i, p in enumerate(paths) if p == s or p.startswith(s.rstrip("/") + "/")]
        if not hits:
            raise ValueError(f"{owner}: block {name!r}: path {s!r} matches no leaf; the leaf paths are {list(paths)}")
        chosen.extend(i for i in hits if i not in chosen)
    return tuple(sorted(chosen))


class _BlockProduct:
    """`(params, v_b, *batch) ↦ P_bᵀ product(params, P_b v_b, *batch)` (hashable: compiled steps are reused)."""

    __slots__ = ("idx", "product")

    def __init__(self, product: Callable[..., Any], idx: tuple[int, ...]):
        self.product = product
        self.idx = idx

    def __call__(self, params: Any, v_block: Any, *batch: Any) -> Any:
        leaves, treedef = jax.tree.flatten(params)
        full = [jnp.zeros_like(x) for x in leaves]
        for j, i in enumerate(self.idx):
            full[i] = v_block[j].astype(leaves[i].dtype)
        out = jax.tree.leaves(self.product(params, jax.tree.unflatten(treedef, full), *batch))
        return tuple(out[i] for i in self.idx)

    def __hash__(self) -> int:
        return hash((_BlockProduct, self.product, self.idx))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _BlockProduct) and other.product == self.product and other.idx == self.idx


def _apply_many(mv: Any, vectors: Any, chunk: int) -> Any:
    """`A v_j` for a leading axis of vectors: one data pass (streaming) or `lax.map` in chunks."""
    if is_streaming(mv):
        return mv.matmat(vectors)
    return lax.map(mv, vectors, batch_size=chunk)


def _block_stats(mv: Any, template: Any, key: jax.Array, k: int, num_iters: int, trace_samples: int,
                 density: bool) -> tuple[Any, ...]:
    """Top-k Ritz pairs, residuals, trace (+ stderr) and optional density of one block operator."""
    size = sum(int(jnp.size(x)) for x in jax.tree.leaves(template))
    m = min(num_iters, size)
    k_block = min(k, m)
    exact = size <= trace_samples
    key_lanczos, key_trace = jax.random.split(key)
    res = lanczos_tridiag(mv, template, num_iters=m, key=key_lanczos)
    theta, s = tridiagonal_eigh(res.alpha, res.beta)
    flat = jnp.matmul(s[:, m - k_block:].T, res.basis, precision=lax.Precision.HIGHEST)
    flat = flat / jnp.maximum(jnp.linalg.norm(flat, axis=1, keepdims=True), jnp.finfo(flat.dtype).tiny)
    unravel = unraveler(template)
    vals = theta[m - k_block:]
    dtype = res.basis.dtype
    probes = jnp.eye(size, dtype=dtype) if exact else jax.random.rademacher(key_trace, (trace_samples, size), dtype)
    # one batch of products (one data pass when streaming): the k Ritz vectors, then the trace probes
    vectors = jnp.concatenate([flat.astype(dtype), probes])
    products = jax.vmap(lambda t: ravel_pytree(t)[0])(
        _apply_many(mv, jax.vmap(unravel)(vectors), chunk=min(32, vectors.shape[0]))).astype(dtype)
    residuals = residual_norms(vals, flat, products[:k_block])  # ‖H_bb v − θ v‖ (see ritz_residuals)
    quad = jnp.sum(probes * products[k_block:], axis=1)  # z_sᵀ H_bb z_s
    if exact:
        trace, stderr = jnp.sum(quad), jnp.zeros((), dtype)
    else:
        trace = jnp.mean(quad)
        stderr = jnp.std(quad, ddof=1) / jnp.sqrt(jnp.asarray(trace_samples, dtype))
    grid = dens = None
    if density:
        grid, dens = _density_on_grid(theta, s[0, :] ** 2, DEFAULT_GRID_SIZE, None)
    return vals, residuals, trace, stderr, grid, dens


@functools.partial(jax.jit, static_argnames=("loss", "static", "blocks", "k", "num_iters", "trace_samples", "density"))
def _all_blocks(loss: Any, params: Any, arrays: Any, static: Any, key: jax.Array, blocks: tuple[tuple[int, ...], ...],
                k: int, num_iters: int, trace_samples: int, density: bool) -> list[tuple[Any, ...]]:
    """Every block's statistics in one compiled program (data in `*args` or `Batched`)."""
    args, batches = combine_data(arrays, static)
    leaves = jax.tree.leaves(params)
    product = HessianProduct(loss)
    out = []
    for idx, block_key in zip(blocks, jax.random.split(key, len(blocks))):
        mv = data_operator("block_spectra", _BlockProduct(product, idx), params, args, batches)
        template = tuple(leaves[i] for i in idx)
        out.append(_block_stats(mv, template, block_key, k, num_iters, trace_samples, density))
    return out


def block_spectra(
    loss: Callable[..., Any],
    params: Any,
    *args: Any,
    k: int = 1,
    blocks: Mapping[str, Any] | None = None,
    num_iters: int = DEFAULT_NUM_ITERS,
    trace_samples: int = DEFAULT_TRACE_SAMPLES,
    density: bool = False,
    key: jax.Array | None = None,
    batches: Iterable[Any] | Batched | None = None,
) -> Any:
    """Top eigenvalues, trace and (optionally) spectral density of every diagonal Hessian block.

    For each block `b` (see the module docstring) this analyses `H_bb = P_bᵀ H P_b`, the Hessian
    restricted to the block's parameters:

    $$
    (H_{bb})_{ij} = \\frac{\\partial^2 L}{\\partial \\theta_{b,i}\\, \\partial \\theta_{b,j}}.
    $$

    Args:
        loss: scalar function `loss(params, *args)`.
        params: the point, a pytree of float arrays.
        *args: one batch of data for `loss`.
        k: number of largest eigenvalues per block (int ≥ 1; clipped to the block's size and
            Lanczos steps). Default 1.
        blocks: None (default): one block per leaf. Or a mapping from block name to what it
            holds: a leaf path (`"dense/kernel"`), a path prefix selecting every leaf below it
            (`"dense"` selects `"dense/kernel"` and `"dense/bias"`), a list of such paths, or a
            predicate `path -> bool`. Paths are those of
            [`leaf_paths`][gradtx.curvature.leaf_paths]. Blocks may overlap; each must select at
            least one leaf.
        num_iters: Lanczos steps per block (static int ≥ 1; clipped to the block's size, where
            Lanczos is exact). Default 100.
        trace_samples: Hutchinson probes per block (int ≥ 1); a block with at most this many
            parameters gets its exact trace instead, from one product per parameter. Default 100.
        density: also return each block's spectral density (one SLQ run, the Lanczos run's
            quadrature; Gaussian broadening 1 % of the Ritz range, 1000 grid points). Default
            False.
        key: PRNG key (Lanczos start vectors and Hutchinson probes). Default None
            (`jax.random.PRNGKey(0)`).
        batches: instead of `*args`, the data: a [`Batched`][gradtx.curvature.Batched] in-memory
            data set (swept inside the one compiled call) or a stream (list, loader, generator
            factory; each block then streams it, see
            [`gradtx.curvature.streaming`][gradtx.curvature.streaming]). Default None.

    Returns:
        With `blocks=None`, a pytree shaped like `params` holding a
        [`BlockSpectrum`][gradtx.curvature.BlockSpectrum] in place of every leaf; with a mapping, a
        dict `name -> BlockSpectrum` in the mapping's order.

    Raises:
        TypeError: `loss` not callable, `blocks` not a mapping, a block spec of the wrong type,
            a non-float leaf, non-int `k`/`num_iters`/`trace_samples`.
        ValueError: `k`, `num_iters` or `trace_samples` < 1; an empty mapping; a path or
            predicate that selects no leaf; a block with no parameters.

    References:
        Yao et al., *PyHessian*, IEEE BigData 2020; Hutchinson 1990; Lin, Saad & Yang 2016.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.curvature import block_spectra
        >>> params = {"a": jnp.ones(2), "b": jnp.ones(3)}
        >>> loss = lambda p: jnp.sum(jnp.arange(1.0, 3.0) * p["a"] ** 2) + 5 * jnp.sum(p["b"] ** 2)
        >>> report = block_spectra(loss, params, k=1)
        >>> float(report["a"].eigenvalues[-1]), float(report["b"].trace)
        (4.0, 30.0)
    """
    owner = "block_spectra"
    loss = static_callable(owner, "loss", loss)
    for name, value in (("k", k), ("num_iters", num_iters), ("trace_samples", trace_samples)):
        check_int(owner, name, value, low=1)
    if not isinstance(density, bool):
        raise TypeError(f"{owner}: density must be a bool, got {type(density).__name__}")
    spec = _resolve_blocks(owner, params, blocks)
    key = _default_key(key)
    leaves, treedef = jax.tree.flatten(params)
    indices = tuple(idx for _, idx in spec)
    if batches is not None and not isinstance(batches, Batched):
        if args:
            raise ValueError(f"{owner}: give either one batch as positional arguments or batches=..., not both")
        stream = batch_stream(owner, batches)
        product = HessianProduct(loss)
        stats = []
        for idx, block_key in zip(indices, jax.random.split(key, len(indices))):
            template = tuple(leaves[i] for i in idx)
            op = StreamingOperator(owner, _BlockProduct(product, idx), params, stream, template=template)
            stats.append(_block_stats(op, template, block_key, k, num_iters, trace_samples, density))
    else:
        if batches is not None and args:
            raise ValueError(f"{owner}: give either one batch as positional arguments or batches=..., not both")
        arrays, static = partition_data((args, batches))
        stats = _all_blocks(loss, params, arrays, static, key, indices, k, num_iters, trace_samples, density)
    paths = leaf_paths(params)
    reports = [
        BlockSpectrum(eigenvalues=v, residuals=r, trace=t, trace_stderr=e,
                      trace_exact=_block_size(leaves, idx) <= trace_samples, size=_block_size(leaves, idx), paths=tuple(paths[i] for i in idx),
                      density_grid=g, density=d)
        for (v, r, t, e, g, d), idx in zip(stats, indices)
    ]
    if blocks is None:
        return jax.tree.unflatten(treedef, reports)
    return {name: rep for (name, _), rep in zip(spec, reports)}
