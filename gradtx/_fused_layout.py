"""Layout of a fused view: where every leaf of a tree goes in a few contiguous buffers.

Private machinery of [`gradtx.fusion`][gradtx.fusion]: the small leaves of each dtype are raveled
into one 1-D buffer keyed `"fused:<dtype>"` (in tree order); large leaves stay whole, keyed by
their path. `to_view` gathers a tree into that view and `from_view` cuts a view back into the
tree's leaves.
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = ["FUSED_PREFIX", "Layout", "Piece", "from_view", "layout_of", "to_view"]

FUSED_PREFIX = "fused:"


# --------------------------------------------------------------------------------------------
# Layout: where every leaf goes in the fused view
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Piece:
    index: int  # position among the tree's leaves
    offset: int  # start in its group's buffer
    size: int
    shape: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class Layout:
    treedef: Any
    num_leaves: int
    groups: dict[str, tuple[Piece, ...]]  # key "fused:<dtype>" -> pieces in tree order
    singles: dict[str, int]  # key "leaf:<index>" -> leaf index, for leaves left as they are

    @property
    def num_fused(self) -> int:
        return sum(len(pieces) for pieces in self.groups.values())


def layout_of(tree: Any, max_leaf_size: int) -> Layout:
    """The fused layout of `tree`, a function of its structure, shapes and dtypes only."""
    paths_leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
    groups: dict[str, list[Piece]] = {}
    fill: dict[str, int] = {}
    singles: dict[str, int] = {}
    for index, (_path, leaf) in enumerate(paths_leaves):
        shape = tuple(int(d) for d in jnp.shape(leaf))
        size = int(np.prod(shape, dtype=np.int64))
        if size > max_leaf_size:
            # keyed by position, not by path: the same tree may reach init and update with
            # different path spellings (flax nnx.State of Variables at init, of arrays in update)
            singles[f"leaf:{index}"] = index
            continue
        key = FUSED_PREFIX + jnp.dtype(jnp.result_type(leaf)).name
        offset = fill.get(key, 0)
        groups.setdefault(key, []).append(Piece(index, offset, size, shape))
        fill[key] = offset + size
    return Layout(
        treedef=treedef,
        num_leaves=len(paths_leaves),
        groups={k: tuple(v) for k, v in groups.items()},
        singles=singles,
    )


def to_view(tree: Any, layout: Layout, what: str, check_dtype: bool = True) -> dict[str, jax.Array]:
    """Concatenate the small leaves of `tree` per group; keep the large ones."""
    try:
        leaves = layout.treedef.flatten_up_to(tree)
    except (ValueError, TypeError) as err:
        raise ValueError(f"fused: the {what} do not have the structure of the updates: {err}") from None
    view: dict[str, jax.Array] = {}
    for key, pieces in layout.groups.items():
        dtype = jnp.dtype(key[len(FUSED_PREFIX):])
        parts = []
        for piece in pieces:
            leaf = jnp.asarray(leaves[piece.index])
            if check_dtype and leaf.dtype != dtype:
                raise ValueError(
                    f"fused: leaf {piece.index} of the {what} has dtype {leaf.dtype} but the "
                    f"updates' leaf has dtype {dtype}; the fused path needs params and updates of "
                    f"the same dtype, leaf by leaf (build the transformation without fusion)."
                )
            parts.append(lax.reshape(leaf, (piece.size,)))
        view[key] = parts[0] if len(parts) == 1 else lax.concatenate(parts, 0)
    for key, index in layout.singles.items():
        view[key] = leaves[index]
    return view


def opaque_offsets(offsets: list[int], buffers: list[jax.Array]) -> list[jax.Array]:
    """The integers `offsets` as uint32 scalars whose values XLA cannot see at compile time.

    They come out of a stable sort of a runtime two-element key (always already sorted, so the
    sort is the identity). XLA then gives every slice of the same size the same kernel instead
    of one kernel per constant offset. Falls back to constants when no runtime float is at hand.
    """
    probe = next(
        (b for b in buffers if b.size and jnp.issubdtype(b.dtype, jnp.inexact)),
        None,
    )
    if probe is None or not offsets:
        return [np.uint32(o) for o in offsets]
    first = lax.slice(probe, (0,), (1,))
    nan = lax.convert_element_type(lax.ne(first, first), jnp.int32)  # 0, or 1 for NaN
    key = lax.concatenate([nan, lax.full((1,), 1, jnp.int32)], 0)
    values: list[Any] = [np.array([o, 0], np.uint32) for o in offsets]
    sorted_ = lax.sort([key, *values], num_keys=1, is_stable=True)
    return [lax.reshape(lax.slice(v, (0,), (1,)), ()) for v in sorted_[1:]]


def from_view(view: dict[str, jax.Array], layout: Layout, static: bool = False) -> Any:
    """Cut the group buffers of `view` back into leaves; inverse of `to_view`.

    Pieces whose (buffer dtype, shape) occurs more than once are cut at opaque offsets, so they
    share one compiled kernel; the others are cut at constant offsets (their kernel is unique
    either way, and a static slice is cheaper at run time). `static=True` cuts everything at
    constant offsets (for eager use, where compilation does not matter).
    """
    leaves: list[Any] = [None] * layout.num_leaves
    cut: list[tuple[jax.Array, Piece]] = []
    for key, pieces in layout.groups.items():
        buffer = view[key]
        if len(pieces) == 1:
            leaves[pieces[0].index] = lax.reshape(buffer, pieces[0].shape)
        else:
            cut.extend((buffer, piece) for piece in pieces)
    classes: dict[tuple[str, tuple[int, ...]], int] = {}
    for buffer, piece in cut:
        k = (str(buffer.dtype), piece.shape)
        classes[k] = classes.get(k, 0) + 1
    shared = [] if static else [(b, p) for b, p in cut if classes[(str(b.dtype), p.shape)] > 1]
    shared_ids = {id(p) for _, p in shared}
    for buffer, piece in cut:
        if id(piece) not in shared_ids:
            part = lax.slice(buffer, (piece.offset,), (piece.offset + piece.size,))
            leaves[piece.index] = lax.reshape(part, piece.shape)
    if shared:
        offsets = opaque_offsets([p.offset for _, p in shared], [b for b, _ in shared])
        for (buffer, piece), start in zip(shared, offsets, strict=True):
            part = lax.dynamic_slice(buffer, (start,), (piece.size,), allow_negative_indices=False)
            leaves[piece.index] = lax.reshape(part, piece.shape)
    for key, index in layout.singles.items():
        leaves[index] = view[key]
    return layout.treedef.unflatten(leaves)


