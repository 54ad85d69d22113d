r"""Loss landscapes: the loss on a line or a plane through the params, and training trajectories.

For params $\theta$ and directions $d_1$ (and $d_2$), the landscape is the loss on the grid

$$f(\alpha) = L(\theta + \alpha d_1), \qquad f(\alpha, \beta) = L(\theta + \alpha d_1 + \beta d_2),$$

with $\alpha, \beta$ on `num_points` evenly spaced values of `span`. The whole grid is evaluated
in one compiled call: the grid points are split into chunks of `chunk_size`, each chunk is
`jax.vmap`-ed and the chunks run one after the other in a `lax.map`, so memory grows with
`chunk_size`, not with the number of grid points. With `batches=` the loss is the
batch-size-weighted average over a data stream, evaluated batch by batch with the same compiled
grid evaluation (see [`gradtx.curvature.data`][gradtx.curvature.data]).

Random directions are *filter-normalised* (Li et al. 2018): a Gaussian direction is rescaled so
that each filter has the norm of the weights it perturbs, which makes pictures of networks with
different weight scales comparable; biases and normalisation parameters are not perturbed
(the directions live in [`gradtx.curvature.landscape_directions`][gradtx.curvature.landscape_directions]).

A training trajectory $\theta_0, \dots, \theta_T$ is drawn in the plane of the first two
principal directions of $\theta_t - \theta_T$ ([`project_trajectory`][gradtx.curvature.project_trajectory],
[`trajectory_landscape`][gradtx.curvature.trajectory_landscape]); plotting helpers are in
`gradtx.curvature.landscape_plot` (`plot_contour`, `plot_surface`, `plot_curve`; matplotlib is
imported only when a plot is drawn).

References:
    Li, Xu, Taylor, Studer & Goldstein, *Visualizing the loss landscape of neural nets*,
    NeurIPS 2018.
    Goodfellow, Vinyals & Saxe, *Qualitatively characterizing neural network optimization
    problems*, ICLR 2015 (1-D interpolations).
"""

import functools
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.flatten_util import ravel_pytree

from gradtx._validation import check_int, check_real
from gradtx.curvature.data import as_args, batch_size, combine_data, partition_data, static_callable
from gradtx.curvature.lanczos import eigsh
from gradtx.curvature.landscape_directions import (
    NORMALIZATIONS,
    _as_key,
    _check_like,
    _check_normalization,
    normalize_direction,
    random_directions,
)
from gradtx.curvature.operators import unraveler

__all__ = [
    "NORMALIZATIONS",
    "LandscapeReport",
    "TrajectoryProjection",
    "landscape",
    "normalize_direction",
    "project_trajectory",
    "random_directions",
    "trajectory_landscape",
]

class LandscapeReport(NamedTuple):
    """The output of [`landscape`][gradtx.curvature.landscape].

    Attributes:
        coordinates: tuple of one 1-D array per direction: the grid values of $\\alpha$ (and
            $\\beta$).
        losses: the loss on the grid, shape `(num_points,)` for a curve or
            `(num_points_1, num_points_2)` for a surface, `losses[i, j]` at
            `(coordinates[0][i], coordinates[1][j])`.
        directions: tuple of the 1 or 2 direction pytrees actually used (after normalisation).
        eigenvalues: the Hessian eigenvalues of the directions for `directions="hessian"`
            (largest first), else None.
    """

    coordinates: tuple[jax.Array, ...]
    losses: jax.Array
    directions: tuple[Any, ...]
    eigenvalues: jax.Array | None = None


class TrajectoryProjection(NamedTuple):
    """The output of [`project_trajectory`][gradtx.curvature.project_trajectory].

    Attributes:
        coordinates: `(T, 2)` coordinates of $\\theta_t - \\theta_\\text{center}$ along the two
            directions (the center is at the origin).
        directions: the two orthonormal principal directions, pytrees like the params.
        explained_variance: `(2,)` fraction of the variance of the differences explained by each
            direction (as scikit-learn's `PCA.explained_variance_ratio_`).
        center: the params the differences are taken to (default the last of the path).
    """

    coordinates: jax.Array
    directions: tuple[Any, Any]
    explained_variance: jax.Array
    center: Any


def _axes(owner: str, span: Any, num_points: Any, k: int) -> tuple[jax.Array, ...]:
    """The grid values of each axis from `span` and `num_points`."""
    pts = num_points if isinstance(num_points, (tuple, list)) else (num_points,) * k
    if len(pts) != k:
        raise ValueError(f"{owner}: num_points must be an int or one int per direction ({k}), got {num_points!r}")
    for p in pts:
        check_int(owner, "num_points", p, low=2)
    if isinstance(span, (tuple, list)) and len(span) > 0 and all(isinstance(s, (tuple, list)) for s in span):
        spans = list(span)
    elif isinstance(span, (tuple, list)):
        spans = [span] * k
    else:
        check_real(owner, "span", span, low=0.0, low_inclusive=False)
        spans = [(-float(span), float(span))] * k
    if len(spans) != k or any(len(s) != 2 for s in spans):
        raise ValueError(f"{owner}: span must be a positive number s (grid [-s, s]), a pair (lo, hi) or one pair "
                         f"per direction ({k}), got {span!r}")
    axes = []
    for (lo, hi), p in zip(spans, pts):
        check_real(owner, "span", lo)
        check_real(owner, "span", hi)
        if not float(lo) < float(hi):
            raise ValueError(f"{owner}: each span (lo, hi) needs lo < hi, got {(lo, hi)}")
        # in float64 on the host, so that 0 and other round values are exact
        axes.append(jnp.asarray(np.linspace(float(lo), float(hi), int(p)), jnp.float32))
    return tuple(axes)


@functools.partial(jax.jit, static_argnames=("loss", "static", "chunk_size"))
def _grid_core(loss, params, directions, coeffs, arrays, static, chunk_size: int):
    """Loss at params + Σ_k c_k d_k for every row c of `coeffs` (P, K); P a multiple of chunk_size."""
    args = combine_data(arrays, static)

    def at(c):
        def move(w, *ds):
            step = sum(c[k].astype(d.dtype) * d for k, d in enumerate(ds))
            return (w + step).astype(jnp.result_type(w))

        return loss(jax.tree.map(move, params, *directions), *args)

    chunks = coeffs.reshape(-1, chunk_size, coeffs.shape[-1])
    return lax.map(jax.vmap(at), chunks).reshape(-1)


def _iterate(owner: str, batches: Any) -> Iterable[Any]:
    if callable(batches):
        return batches()
    if isinstance(batches, (jax.Array, np.ndarray, str, bytes)) or not isinstance(batches, Iterable):
        raise TypeError(f"{owner}: batches must be an iterable of batches or a zero-argument function returning "
                        f"one, got {type(batches).__name__}")
    return batches


def _grid_losses(owner: str, loss: Any, params: Any, directions: tuple[Any, ...], coeffs: jax.Array,
                 args: tuple[Any, ...], batches: Any, chunk_size: int) -> jax.Array:
    p = coeffs.shape[0]
    chunk = min(chunk_size, p)
    padded = -(-p // chunk) * chunk
    coeffs = jnp.concatenate([coeffs, jnp.zeros((padded - p, coeffs.shape[1]), coeffs.dtype)])

    def run(batch_args: tuple[Any, ...]) -> jax.Array:
        arrays, static = partition_data(batch_args)
        return _grid_core(loss, params, directions, coeffs, arrays, static, chunk)[:p]

    if batches is None:
        return run(tuple(args))
    if args:
        raise ValueError(f"{owner}: give either one batch as positional arguments or batches=..., not both")
    total, count = None, 0
    for i, batch in enumerate(_iterate(owner, batches)):
        try:
            n = batch_size(batch)
        except ValueError as err:
            raise ValueError(f"{owner}: batch {i}: {err}") from None
        values = np.asarray(run(as_args(batch)), np.float64) * n
        total = values if total is None else total + values
        count += n
    if total is None or count == 0:
        raise ValueError(f"{owner}: batches is empty (no examples); give at least one non-empty batch")
    return jnp.asarray(total / count, jnp.promote_types(jnp.result_type(*jax.tree.leaves(params)), jnp.float32))


def _parse_directions(owner: str, directions: Any, params: Any) -> tuple[Any, ...] | None:
    """None for a string; else the tuple of 1 or 2 user directions, checked against params."""
    if isinstance(directions, str):
        if directions not in ("random", "hessian"):
            raise ValueError(f"{owner}: directions must be 'random', 'hessian', a direction pytree like params "
                             f"or a tuple of one or two of them, got {directions!r}")
        return None
    if jax.tree.structure(directions) == jax.tree.structure(params):
        dirs: tuple[Any, ...] = (directions,)
    elif isinstance(directions, (tuple, list)) and len(directions) in (1, 2):
        dirs = tuple(directions)
    else:
        raise ValueError(f"{owner}: directions must be 'random', 'hessian', a pytree like params or a tuple of one "
                         f"or two of them; got a {type(directions).__name__} not shaped like params")
    for d in dirs:
        _check_like(owner, "each direction", d, params)
    return dirs


def landscape(
    loss: Callable[..., Any],
    params: Any,
    *args: Any,
    batches: Any = None,
    directions: Any = "random",
    num_directions: int = 2,
    span: Any = 1.0,
    num_points: int | Sequence[int] = 51,
    normalization: str | None = None,
    filter_axis: int = -1,
    key: Any = None,
    chunk_size: int = 64,
    hessian_iters: int = 50,
) -> LandscapeReport:
    r"""The loss along one direction (a curve) or two (a surface) through `params`.

    $$f(\alpha_i) = L(\theta + \alpha_i d_1), \qquad f(\alpha_i, \beta_j) = L(\theta + \alpha_i d_1 + \beta_j d_2),$$

    on `num_points` evenly spaced values per axis. All grid points are evaluated in one
    compiled call (chunks of `chunk_size` points `vmap`-ed, the chunks in a `lax.map`), which
    gives the same numbers as a Python loop over the points. With `batches=`, $L$ is the
    batch-size-weighted mean $\sum_i \frac{n_i}{N} L(\cdot\,; B_i)$, evaluated one batch at a
    time (the compiled grid evaluation is reused for every batch of the same shape).

    Args:
        loss: scalar function `loss(params, *args)`.
        params: the center $\theta$, a pytree of float arrays.
        *args: one batch of data for `loss`.
        batches: instead of `*args`, an iterable of batches (each a tuple of `loss`'s data
            arguments, or one argument) or a zero-argument function returning such an iterator;
            read once for the grid (with `directions="hessian"` also by `eigsh`, so a one-shot
            iterator is refused there: pass a list or a factory). Default None.
        directions: `"random"` (Gaussian, normalised as `normalization` says), `"hessian"`
            (the top `num_directions` Hessian eigenvectors, by
            [`eigsh`][gradtx.curvature.eigsh] with `hessian_iters` Lanczos steps, largest
            first; `batches=` is passed on to `eigsh`), one direction pytree like `params`
            (a curve) or a tuple of one or two of them. Default `"random"`.
        num_directions: 1 (curve) or 2 (surface), for `"random"` and `"hessian"`. Default 2.
        span: a positive number $s$ (every axis on $[-s, s]$), a pair `(lo, hi)` for every
            axis, or one pair per direction. Default 1.0.
        num_points: points per axis, an int `>= 2` or one per direction. Default 51.
        normalization: `"filter"`, `"layer"` or `"none"` (see
            [`normalize_direction`][gradtx.curvature.normalize_direction]); None means
            `"filter"` for random directions and `"none"` (as given) for Hessian and user
            directions. Default None.
        filter_axis: the filter axis of leaves with at least two axes. Default -1 (Flax layout).
        key: seed for the random directions / Lanczos start: None (0), an int or a key.
        chunk_size: grid points evaluated at once (memory ∝ `chunk_size` forward passes),
            an int `>= 1`. Default 64.
        hessian_iters: Lanczos steps for `directions="hessian"`, `>= num_directions`. Default 50.

    Returns:
        A [`LandscapeReport`][gradtx.curvature.LandscapeReport] `(coordinates, losses,
        directions, eigenvalues)`.

    References:
        Li, Xu, Taylor, Studer & Goldstein, *Visualizing the loss landscape of neural nets*,
        NeurIPS 2018.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.curvature import landscape
        >>> f = lambda p: jnp.sum(p["w"] ** 2)
        >>> r = landscape(f, {"w": jnp.zeros(2)}, directions=({"w": jnp.array([1.0, 0.0])},),
        ...               span=2.0, num_points=5)
        >>> [float(x) for x in r.losses]
        [4.0, 1.0, 0.0, 1.0, 4.0]
    """
    owner = "landscape"
    loss = static_callable(owner, "loss", loss)
    if normalization is not None:
        _check_normalization(owner, normalization)
    check_int(owner, "chunk_size", chunk_size, low=1)
    check_int(owner, "num_directions", num_directions, low=1)
    if num_directions > 2:
        raise ValueError(f"{owner}: num_directions must be 1 or 2, got {num_directions}")
    if batches is not None and args:
        raise ValueError(f"{owner}: give either one batch as positional arguments or batches=..., not both")
    given = _parse_directions(owner, directions, params)
    key = None if key is None else _as_key(owner, key)
    eigenvalues = None
    if given is None and directions == "random":
        dirs = random_directions(params, num_directions, normalization or "filter", key, filter_axis)
    else:
        if given is None:
            check_int(owner, "hessian_iters", hessian_iters, low=num_directions)
            if batches is not None and not callable(batches) and iter(batches) is batches:
                raise ValueError(f"{owner}: directions='hessian' reads the data several times; batches must be a "
                                 "list (or other re-iterable) or a zero-argument function returning an iterator, "
                                 "not a one-shot iterator")
            vals, vecs = eigsh(loss, params, *args, k=num_directions, which="LA", num_iters=hessian_iters,
                               key=key, batches=batches)
            eigenvalues = vals[::-1]
            given = tuple(jax.tree.map(lambda x, i=i: x[num_directions - 1 - i], vecs) for i in range(num_directions))
        dirs = tuple(normalize_direction(d, params, normalization or "none", filter_axis) for d in given)
    axes = _axes(owner, span, num_points, len(dirs))
    grids = jnp.meshgrid(*axes, indexing="ij")
    coeffs = jnp.stack([g.reshape(-1) for g in grids], axis=-1)
    losses = _grid_losses(owner, loss, params, dirs, coeffs, args, batches, chunk_size)
    return LandscapeReport(coordinates=axes, losses=losses.reshape(grids[0].shape), directions=dirs,
                           eigenvalues=eigenvalues)


def project_trajectory(path: Sequence[Any], center: Any = None) -> TrajectoryProjection:
    r"""Coordinates of a training trajectory in the plane of its two principal directions.

    With the differences $\delta_t = \theta_t - \theta_c$ to the center $\theta_c$ (default the
    last params of the path, as in Li et al.), the directions $u_1, u_2$ are the first two
    principal components of the $\delta_t$ (right singular vectors of the matrix of the
    $\delta_t$ with their mean removed, the center itself left out when it is the last point),
    and the coordinates are the plain projections

    $$x_t = \langle \delta_t, u_1 \rangle, \qquad y_t = \langle \delta_t, u_2 \rangle,$$

    so the center is at the origin. Each direction's sign is chosen so that the first point of
    the path has a non-negative coordinate. The explained variance ratios are
    $\sigma_k^2 / \sum_i \sigma_i^2$.

    Args:
        path: a sequence of at least 3 params pytrees (same structure and shapes).
        center: the origin of the plane; None means `path[-1]`. Default None.

    Returns:
        A [`TrajectoryProjection`][gradtx.curvature.TrajectoryProjection].

    References:
        Li, Xu, Taylor, Studer & Goldstein, *Visualizing the loss landscape of neural nets*,
        NeurIPS 2018, §7.
    """
    owner = "project_trajectory"
    if isinstance(path, (str, bytes)) or not isinstance(path, Sequence) or len(path) < 3:
        raise ValueError(f"{owner}: path must be a sequence of at least 3 params pytrees, got "
                         f"{type(path).__name__}{'' if not isinstance(path, Sequence) else f' of length {len(path)}'}")
    last = path[-1]
    for p in path:
        _check_like(owner, "every point of path", p, last)
    center = last if center is None else center
    _check_like(owner, "center", center, last)
    if sum(int(np.size(x)) for x in jax.tree.leaves(center)) < 2:
        raise ValueError(f"{owner}: the params have fewer than 2 entries; a plane needs at least 2")
    coords, u, ratio = _pca(list(path), center, center is last)
    unravel = unraveler(center)
    return TrajectoryProjection(coordinates=coords, directions=(unravel(u[0]), unravel(u[1])),
                                explained_variance=ratio, center=center)


@functools.partial(jax.jit, static_argnames=("skip_last",))
def _pca(path: list[Any], center: Any, skip_last: bool) -> tuple[jax.Array, jax.Array, jax.Array]:
    c_flat, _ = ravel_pytree(center)
    dtype = jnp.promote_types(c_flat.dtype, jnp.float32)
    all_deltas = jnp.stack([ravel_pytree(p)[0].astype(dtype) - c_flat.astype(dtype) for p in path])
    deltas = all_deltas[:-1] if skip_last else all_deltas
    centered = deltas - deltas.mean(axis=0, keepdims=True)
    _, s, vt = jnp.linalg.svd(centered, full_matrices=False)
    u = vt[:2]
    coords = all_deltas @ u.T
    signs = jnp.where(coords[0] < 0, -1.0, 1.0).astype(dtype)
    u, coords = u * signs[:, None], coords * signs[None, :]
    var = s**2
    ratio = var[:2] / jnp.maximum(jnp.sum(var), jnp.finfo(dtype).tiny)
    return coords, u, ratio


def trajectory_landscape(
    loss: Callable[..., Any],
    path: Sequence[Any],
    *args: Any,
    batches: Any = None,
    num_points: int | Sequence[int] = 51,
    margin: float = 0.25,
    chunk_size: int = 64,
) -> tuple[TrajectoryProjection, LandscapeReport]:
    """The loss surface in the plane of a trajectory's principal directions, and the trajectory in it.

    [`project_trajectory`][gradtx.curvature.project_trajectory] gives the plane through the last
    params; [`landscape`][gradtx.curvature.landscape] evaluates the loss on a grid covering every
    projected point plus `margin` times the extent of the path on each side (the directions are
    unit vectors, used without normalisation, so the axes are distances in parameter space).

    Args:
        loss: scalar function `loss(params, *args)`.
        path: a sequence of at least 3 params pytrees, the last one the center.
        *args: one batch of data for `loss`.
        batches: instead of `*args`, an iterable of batches (see `landscape`). Default None.
        num_points: points per axis (`>= 2`). Default 51.
        margin: extra room around the path, a fraction of its extent, `>= 0`. Default 0.25.
        chunk_size: grid points evaluated at once. Default 64.

    Returns:
        `(projection, report)`.
    """
    check_real("trajectory_landscape", "margin", margin, low=0.0)
    proj = project_trajectory(path)
    coords = np.asarray(proj.coordinates, np.float64)
    lo, hi = np.minimum(coords.min(axis=0), 0.0), np.maximum(coords.max(axis=0), 0.0)
    pad = np.maximum(margin * (hi - lo), 1e-6)
    span = tuple((float(a - p), float(b + p)) for a, b, p in zip(lo, hi, pad))
    report = landscape(loss, proj.center, *args, batches=batches, directions=proj.directions, span=span,
                       num_points=num_points, normalization="none", chunk_size=chunk_size)
    return proj, report
