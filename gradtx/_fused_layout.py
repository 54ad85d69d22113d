r"""Layout of a fused view: where every leaf of a tree goes in a few contiguous buffers.

Private machinery of [`gradtx.fusion`][gradtx.fusion]: the small leaves of each dtype are raveled
into one 1-D buffer keyed `"fused:<dtype>"` (in tree order); large leaves stay whole, keyed by
their position. `to_view` gathers a tree into that view and `from_view` cuts a view back into the
tree's leaves.

Sharding groups. When the leaves carry shardings (concrete `jax.Array`s, or `ShapeDtypeStruct`s
with a `sharding`), only leaves with the same sharding fuse together. Single-device and fully
replicated leaves form the plain `"fused:<dtype>"` group. Leaves sharded along their first axis
only (a `NamedSharding` whose spec names mesh axes for axis 0 and nothing else, with the first
dimension divisible by the number of shards $n$) of one mesh, spec and dtype form a group
`"fused:<dtype>@<axes>"` whose buffer is 2-D, $(n, \sum_i \mathrm{size}_i / n)$, sharded along its
rows: row $j$ is the concatenation of every leaf's $j$-th block, i.e. exactly what device $j$
holds, so gathering and cutting move no data between devices and the state stays sharded like
the params. Leaves sharded any other way are kept whole (as large leaves are).
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

__all__ = [
    "FUSED_PREFIX", "Layout", "Piece", "from_view", "group_keys", "layout_of", "sharding_of", "shardings_known",
    "to_view", "tree_key",
]

FUSED_PREFIX = "fused:"


# --------------------------------------------------------------------------------------------
# Layout: where every leaf goes in the fused view
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Piece:
    index: int  # position among the tree's leaves
    offset: int  # start in its group's buffer (the column, for a sharded group)
    size: int  # elements (per row, for a sharded group)
    shape: tuple[int, ...]
    rows: int = 1  # number of shards of a sharded group (its buffer is (rows, total)); 1: a flat buffer


@dataclasses.dataclass(frozen=True)
class Layout:
    treedef: Any
    num_leaves: int
    groups: dict[str, tuple[Piece, ...]]  # key "fused:<dtype>" -> pieces in tree order
    singles: dict[str, int]  # key "leaf:<index>" -> leaf index, for leaves left as they are
    shardings: dict[str, Any] = dataclasses.field(default_factory=dict)  # sharded group key -> buffer sharding

    @property
    def num_fused(self) -> int:
        return sum(len(pieces) for pieces in self.groups.values())


_KEEP = "keep"  # a sharded leaf that cannot be fused: kept whole


def sharding_of(leaf: Any) -> Any:
    """The concrete sharding of `leaf`, or None (a tracer, a NumPy array, a shape without one)."""
    if isinstance(leaf, jax.core.Tracer):
        return None
    if isinstance(leaf, (jax.Array, jax.ShapeDtypeStruct)):
        return getattr(leaf, "sharding", None)
    return None


def shardings_known(tree: Any) -> bool:
    """Whether every leaf of `tree` has a concrete sharding (False for an empty tree)."""
    leaves = jax.tree.leaves(tree)
    return bool(leaves) and all(sharding_of(x) is not None for x in leaves)


def _row_split(sharding: Any, shape: tuple[int, ...]) -> Any:
    """None (plain group), `_KEEP`, or (shards, buffer sharding, label) for a leaf sharded on axis 0."""
    if sharding is None:
        return None
    try:
        if sharding.is_fully_replicated:
            return None
    except Exception:  # pragma: no cover - a sharding type without the property
        return _KEEP
    if not isinstance(sharding, NamedSharding) or not shape:
        return _KEEP
    spec = tuple(sharding.spec) + (None,) * (len(shape) - len(sharding.spec))
    if spec[0] is None or any(s is not None for s in spec[1:]):
        return _KEEP
    axes = spec[0] if isinstance(spec[0], tuple) else (spec[0],)
    shards = int(np.prod([sharding.mesh.shape[a] for a in axes], dtype=np.int64))
    if shards <= 1:
        return None
    if shape[0] % shards:
        return _KEEP
    buffer_sharding = NamedSharding(sharding.mesh, P(spec[0], None), memory_kind=sharding.memory_kind)
    return shards, buffer_sharding, "+".join(str(a) for a in axes)


def layout_of(tree: Any, max_leaf_size: int, use_shardings: bool = True) -> Layout:
    """The fused layout of `tree`: a function of its structure, shapes, dtypes and (when its leaves
    carry them and `use_shardings`) shardings."""
    paths_leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
    groups: dict[str, list[Piece]] = {}
    fill: dict[str, int] = {}
    singles: dict[str, int] = {}
    shardings: dict[str, Any] = {}
    for index, (_path, leaf) in enumerate(paths_leaves):
        shape = tuple(int(d) for d in jnp.shape(leaf))
        size = int(np.prod(shape, dtype=np.int64))
        split = _row_split(sharding_of(leaf), shape) if use_shardings else None
        if size > max_leaf_size or split == _KEEP:
            # keyed by position, not by path: the same tree may reach init and update with
            # different path spellings (flax nnx.State of Variables at init, of arrays in update)
            singles[f"leaf:{index}"] = index
            continue
        key = FUSED_PREFIX + jnp.dtype(jnp.result_type(leaf)).name
        rows = 1
        if split is not None:
            rows, buffer_sharding, label = split
            key, n = f"{key}@{label}", 1
            while key in shardings and shardings[key] != buffer_sharding:  # same axis names, other mesh
                n += 1
                key = f"{key.split('#')[0]}#{n}"
            shardings[key] = buffer_sharding
        offset = fill.get(key, 0)
        groups.setdefault(key, []).append(Piece(index, offset, size // rows, shape, rows))
        fill[key] = offset + size // rows
    return Layout(
        treedef=treedef,
        num_leaves=len(paths_leaves),
        groups={k: tuple(v) for k, v in groups.items()},
        singles=singles,
        shardings=shardings,
    )


def to_view(tree: Any, layout: Layout, what: str, check_dtype: bool = True) -> dict[str, jax.Array]:
    """Concatenate the small leaves of `tree` per group; keep the large ones."""
    try:
        leaves = layout.treedef.flatten_up_to(tree)
    except (ValueError, TypeError) as err:
        raise ValueError(f"fused: the {what} do not have the structure of the updates: {err}") from None
    view: dict[str, jax.Array] = {}
    for key, pieces in layout.groups.items():
        dtype = jnp.dtype(key[len(FUSED_PREFIX):].split("@")[0])
        parts = []
        for piece in pieces:
            leaf = jnp.asarray(leaves[piece.index])
            if check_dtype and leaf.dtype != dtype:
                raise ValueError(
                    f"fused: leaf {piece.index} of the {what} has dtype {leaf.dtype} but the "
                    f"updates' leaf has dtype {dtype}; the fused path needs params and updates of "
                    f"the same dtype, leaf by leaf (build the transformation without fusion)."
                )
            parts.append(lax.reshape(leaf, (piece.size,) if piece.rows == 1 else (piece.rows, piece.size)))
        buffer = parts[0] if len(parts) == 1 else lax.concatenate(parts, parts[0].ndim - 1)
        if key in layout.shardings:
            buffer = jax.lax.with_sharding_constraint(buffer, layout.shardings[key])
        view[key] = buffer
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
    first = lax.reshape(lax.slice(probe, (0,) * probe.ndim, (1,) * probe.ndim), (1,))
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
    classes: dict[tuple[str, tuple[int, ...], int], int] = {}
    for buffer, piece in cut:
        k = (str(buffer.dtype), piece.shape, piece.rows)
        classes[k] = classes.get(k, 0) + 1
    shared = [] if static else [(b, p) for b, p in cut if classes[(str(b.dtype), p.shape, p.rows)] > 1]
    shared_ids = {id(p) for _, p in shared}
    for buffer, piece in cut:
        if id(piece) not in shared_ids:
            if piece.rows == 1:
                part = lax.slice(buffer, (piece.offset,), (piece.offset + piece.size,))
            else:
                part = lax.slice(buffer, (0, piece.offset), (piece.rows, piece.offset + piece.size))
            leaves[piece.index] = lax.reshape(part, piece.shape)
    if shared:
        # probe a replicated buffer when there is one: reading an element of a sharded one
        # costs a collective
        probes = [view[k] for k in layout.groups if k not in layout.shardings]
        runs = _runs(shared)
        bases = opaque_offsets([run[0][1].offset for run in runs], probes + [b for b, _ in shared])
        for run, base in zip(runs, bases, strict=True):
            for buffer, piece in run:
                delta = piece.offset - run[0][1].offset
                start = base if delta == 0 else base + np.uint32(delta)
                leaves[piece.index] = _cut(buffer, piece, start)
    for key, index in layout.singles.items():
        leaves[index] = view[key]
    return layout.treedef.unflatten(leaves)


RUN = 8
"""Most pieces of one shape that lie back to back in one buffer and share one opaque offset."""


def _runs(shared: list[tuple[jax.Array, Piece]]) -> list[list[tuple[jax.Array, Piece]]]:
    r"""Group pieces (in buffer order) into runs of at most `RUN` adjacent pieces of one shape.

    The first piece of a run is cut at an opaque offset, the $j$-th at that offset plus the
    constant $j \cdot \mathrm{size}$, the same in every run: the no-op sort then has one operand
    per run instead of one per piece (its cost grows with its operands), and a shape compiles at
    most `RUN` kernels.
    """
    runs: list[list[tuple[jax.Array, Piece]]] = []
    last: dict[Any, list[tuple[jax.Array, Piece]]] = {}
    for buffer, piece in shared:
        cls = (id(buffer), piece.shape, piece.rows)
        run = last.get(cls)
        if run is not None and len(run) < RUN and run[-1][1].offset + piece.size == piece.offset:
            run.append((buffer, piece))
        else:
            run = [(buffer, piece)]
            runs.append(run)
            last[cls] = run
    return runs


def _cut(buffer: jax.Array, piece: Piece, start: Any) -> jax.Array:
    """The leaf of `piece`, cut out of its group's `buffer` at the (traced) offset `start`."""
    if piece.rows == 1:
        part = lax.dynamic_slice(buffer, (start,), (piece.size,), allow_negative_indices=False)
    else:
        zero = lax.full((), 0, start.dtype)
        part = lax.dynamic_slice(buffer, (zero, start), (piece.rows, piece.size), allow_negative_indices=False)
    return lax.reshape(part, piece.shape)


def tree_key(tree: Any) -> Any:
    """Structure, shapes and dtypes of `tree`: what a layout depends on besides shardings."""
    leaves, treedef = jax.tree.flatten(tree)
    return treedef, tuple((tuple(jnp.shape(x)), jnp.dtype(jnp.result_type(x)).name) for x in leaves)


def group_keys(state: Any) -> set[str] | None:
    """The keys of the first fused view (a dict keyed "fused:...") found in a fused state."""
    found: list[set[str]] = []

    def visit(x: Any) -> bool:
        if isinstance(x, dict) and any(str(k).startswith("fused:") for k in x):
            found.append({k for k in x if str(k).startswith("fused:")})
            return True
        return False

    jax.tree.leaves(state, is_leaf=visit)
    return found[0] if found else None
