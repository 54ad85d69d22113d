r"""GaLore of `optax.contrib`: a base optimizer run on low-rank projections of the gradients.

Exported from `gradtx.contrib` only, as in optax, with optax 0.2.8's state
(`GaLoreState(count, base_optimizer_state, projector)`) and numbers: the projector comes from
the same float32 SVD and the base optimizer (gradtx's `scale_by_adam` by default) is optax's
bit for bit.
"""

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx import _validation as _v
from gradtx.base import GradientTransformation, Updates, describe
from gradtx.numerics import safe_increment
from gradtx.transforms.adam_family import scale_by_adam

__all__ = ["GaLoreDimensionNumbers", "GaLoreState", "scale_by_galore"]


class GaLoreDimensionNumbers(NamedTuple):
    """Which axes of a weight form the rows (`reduction_axis`) and the columns (`output_axis`)
    of the matrix GaLore projects; together they must name every axis exactly once."""

    reduction_axis: Sequence[int] | int = 0
    output_axis: Sequence[int] | int = 1


class GaLoreState(NamedTuple):
    """State of [`scale_by_galore`][gradtx.contrib.scale_by_galore]."""

    count: jax.Array  # type: ignore[assignment]  # optax's field name (shadows tuple.count)
    base_optimizer_state: Any  # the base optimizer's state, on the projected (low-rank) tree
    projector: Updates  # per leaf: the (m, r) or (n, r) projector; (0, 0) for unprojected leaves


def _is_dims(x: Any) -> bool:
    return isinstance(x, GaLoreDimensionNumbers)


def _is_dims_leaf(x: Any) -> bool:
    return x is None or isinstance(x, GaLoreDimensionNumbers)


def _axes(ndim: int, axis: Sequence[int] | int) -> tuple[int, ...]:
    return (axis % ndim,) if isinstance(axis, int) else tuple(a % ndim for a in axis)


def _matrix_view(x: jax.Array, dims: GaLoreDimensionNumbers) -> tuple[Callable, Callable]:
    """`(to_matrix, from_matrix)`: `x`'s axes transposed and merged into (rows, columns), and back."""
    if x.ndim < 2:
        raise ValueError(f"scale_by_galore: GaLore projects tensors of rank >= 2, got shape {x.shape}")
    rows, cols = _axes(x.ndim, dims.reduction_axis), _axes(x.ndim, dims.output_axis)
    if set(rows) & set(cols):
        raise ValueError(
            f"scale_by_galore: reduction axes {rows} and output axes {cols} overlap "
            f"(dimension numbers {dims} for shape {x.shape})"
        )
    if len(set(rows) | set(cols)) != x.ndim:
        raise ValueError(
            f"scale_by_galore: the reduction axes {rows} and output axes {cols} must name all "
            f"{x.ndim} axes of shape {x.shape}"
        )
    order = rows + cols
    inverse = tuple(sorted(range(x.ndim), key=lambda i: order[i]))
    moved_shape = tuple(x.shape[a] for a in order)
    n_rows = math.prod(x.shape[a] for a in rows)
    n_cols = math.prod(x.shape[a] for a in cols)
    return (
        lambda y: y.transpose(order).reshape(n_rows, n_cols),
        lambda y: y.reshape(moved_shape).transpose(inverse),
    )


@describe
def scale_by_galore(
    rank: int = 128,
    update_proj_gap: int = 200,
    scale: float = 1.0,
    base_optimizer: GradientTransformation | None = None,
    weight_dimension_numbers: Any = None,
) -> GradientTransformation:
    r"""GaLore: run `base_optimizer` on low-rank projections of matrix gradients.

    For a weight seen as an $m \times n$ matrix with gradient $G$ and $r = \min(\text{rank}, m, n)$:
    when $m \ge n$ the projector $P$ ($m \times r$) holds the first $r$ left singular vectors
    of $G$ and the base optimizer sees $P^\top G$ ($r \times n$); otherwise $Q$ ($n \times r$)
    holds the first $r$ right singular vectors and it sees $G Q$. Its output $\tilde u$ is
    mapped back,

    $$u = s\, P \tilde u \quad\text{or}\quad u = s\, \tilde u\, Q^\top,$$

    with $s$ = `scale`. The projector is recomputed (an SVD in float32) every
    `update_proj_gap` steps, the first step included, and kept in between. Leaves that are not
    projected (by default all but 2-D ones) go through the base optimizer unchanged.

    Args:
        rank: the projection rank, an `int >= 1`, default 128.
        update_proj_gap: steps between projector refreshes, an integer `>= 1`, default 200.
        scale: $s$, default 1.0.
        base_optimizer: the transformation run in the low-rank space, default None
            ([`scale_by_adam()`][gradtx.scale_by_adam]). It is given no params.
        weight_dimension_numbers: which leaves to project and how: None (2-D leaves, rows
            = axis 0), one `GaLoreDimensionNumbers` (every leaf of rank >= 2), a tree of
            `GaLoreDimensionNumbers`/None like the params, or a function of the params
            returning such a tree.

    Returns:
        A `GradientTransformation` with state `GaLoreState(count, base_optimizer_state, projector)`.

    References:
        Zhao et al., [GaLore: Memory-Efficient LLM Training by Gradient Low-Rank
        Projection](https://arxiv.org/abs/2403.03507), ICML 2024.
    """
    owner = "scale_by_galore"
    if isinstance(rank, bool) or not isinstance(rank, int):
        raise TypeError(f"{owner}: rank must be an int, got {type(rank).__name__}: {rank!r}")
    if rank <= 0:
        raise ValueError(f"{owner}: rank must be >= 1, got {rank}")
    _v.check_int(owner, "update_proj_gap", update_proj_gap, low=1)
    _v.check_real(owner, "scale", scale)
    if base_optimizer is None:
        base_optimizer = scale_by_adam()
    elif not (hasattr(base_optimizer, "init") and hasattr(base_optimizer, "update")):
        raise TypeError(f"{owner}: base_optimizer must be a GradientTransformation, got {base_optimizer!r}")
    base = base_optimizer

    def dims_tree(tree):
        if weight_dimension_numbers is None:
            return jax.tree.map(lambda p: GaLoreDimensionNumbers() if p.ndim == 2 else None, tree)
        if callable(weight_dimension_numbers):
            return weight_dimension_numbers(tree)
        if _is_dims(weight_dimension_numbers):
            return jax.tree.map(lambda p: weight_dimension_numbers if p.ndim >= 2 else None, tree)
        return weight_dimension_numbers

    def shapes(p, dims):
        if dims is None:
            return jnp.zeros((0, 0), p.dtype), jnp.zeros_like(p)
        m, n = _matrix_view(p, dims)[0](p).shape
        r = min(rank, m, n)
        if m >= n:
            return jnp.zeros((m, r), p.dtype), jnp.zeros((r, n), p.dtype)
        return jnp.zeros((n, r), p.dtype), jnp.zeros((m, r), p.dtype)

    def split_pairs(tree, pairs):
        return jax.tree.transpose(jax.tree.structure(tree), jax.tree.structure((0, 0)), pairs)

    def init(params):
        if not jax.tree.leaves(params):
            return GaLoreState(count=jnp.zeros([], jnp.int32), base_optimizer_state=base.init(params), projector=params)
        pairs = jax.tree.map(shapes, params, dims_tree(params), is_leaf=_is_dims_leaf)
        projectors, proxies = split_pairs(params, pairs)
        return GaLoreState(count=jnp.zeros([], jnp.int32), base_optimizer_state=base.init(proxies), projector=projectors)

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        refresh = state.count % update_proj_gap == 0
        dims = dims_tree(updates)

        def project(g, proj, dims):
            if dims is None:
                return g, proj
            g2 = _matrix_view(g, dims)[0](g)
            m, n = g2.shape
            r = min(rank, m, n)
            if m >= n:

                def left():
                    u, _, _ = jnp.linalg.svd(g2.astype(jnp.float32), full_matrices=False)
                    return u[:, :r].astype(g.dtype)

                new = jax.lax.cond(refresh, left, lambda: proj)
                return new.T @ g2, new

            def right():
                _, _, vh = jnp.linalg.svd(g2.astype(jnp.float32), full_matrices=False)
                return vh[:r, :].T.astype(g.dtype)

            new = jax.lax.cond(refresh, right, lambda: proj)
            return g2 @ new, new

        def lift(low, proj, g, dims):
            if dims is None:
                return low
            to_matrix, from_matrix = _matrix_view(g, dims)
            m, n = to_matrix(g).shape
            full = proj @ low if m >= n else low @ proj.T
            return (scale * from_matrix(full)).astype(g.dtype)

        pairs = jax.tree.map(project, updates, state.projector, dims, is_leaf=_is_dims_leaf)
        low, projectors = split_pairs(updates, pairs)
        low_updates, base_state = base.update(low, state.base_optimizer_state, None)
        out = jax.tree.map(lift, low_updates, projectors, updates, dims, is_leaf=_is_dims_leaf)
        return out, GaLoreState(count=safe_increment(state.count), base_optimizer_state=base_state, projector=projectors)

    return GradientTransformation(init, update)
