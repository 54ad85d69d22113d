"""Batch handling for the curvature estimators: one batch, or a weighted average over many.

Every estimator in `gradtx.curvature` takes a scalar loss `loss(params, *args)` where `*args` is
one batch. Instead of `*args`, the keyword `batches=` takes an iterable of batches; the curvature
is then that of the *batch-size-weighted* average of the per-batch losses,

$$\\bar L(\\theta) = \\sum_i \\frac{n_i}{N} L(\\theta; B_i), \\qquad N = \\sum_i n_i,$$

where `n_i` is the length of the leading axis of the first array in batch `B_i`. When `L` is a
mean over its batch (the usual case), `\\bar L` is exactly the mean loss over the whole data set,
so a short last batch counts for what it holds and no more. This is PyHessian's weighting too:
over a data loader it accumulates each batch's Hessian-vector product times the batch size
and divides the sum by the total number of examples.

Three forms of data are accepted: one batch (`*args`), a [`Batched`][gradtx.curvature.Batched]
in-memory data set of stacked arrays (swept by `lax.scan` inside one compiled call), and a stream
(a list, a re-iterable loader, a generator factory; streamed through one compiled per-batch
product by [`gradtx.curvature.streaming`][gradtx.curvature.streaming]).

The helpers here turn `(loss, args, batches)` into a function of the params alone, which the
estimators then differentiate.
"""

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax
import numpy as np

__all__ = [
    "Batched",
    "as_args",
    "average_loss",
    "batch_size",
    "bind_loss",
    "collect_batches",
    "combine_data",
    "data_loss",
    "is_stream",
    "loss_from_parts",
    "partition_data",
    "prepare_data",
    "static_callable",
]


def as_args(batch: Any) -> tuple[Any, ...]:
    """The positional arguments a batch stands for.

    A tuple is the argument list itself (`loss(params, *batch)`); anything else (an array, a
    dict, a list, ...) is a single argument (`loss(params, batch)`).
    """
    return batch if isinstance(batch, tuple) else (batch,)


def batch_size(batch: Any) -> int:
    """Number of examples in a batch: the leading-axis length of its first array leaf.

    Leaves are visited in `jax.tree_util` order (positional arguments in order, dict entries by
    sorted key); scalars (Python numbers, 0-d arrays) are skipped, so a batch such as
    `(temperature, x, y)` is sized by `x`.

    Args:
        batch: a tuple of arguments or a single argument (see [`as_args`][gradtx.curvature.data.as_args]).

    Raises:
        ValueError: when the batch holds no array with at least one axis.
    """
    for leaf in jax.tree_util.tree_leaves(as_args(batch)):
        shape = np.shape(leaf)
        if len(shape) >= 1:
            return int(shape[0])
    raise ValueError(
        "cannot infer the size of a batch: it must hold an array with a leading (example) axis, "
        f"got a batch of structure {jax.tree_util.tree_structure(as_args(batch))} with only scalars."
    )


def collect_batches(owner: str, batches: Iterable[Any]) -> tuple[tuple[tuple[Any, ...], ...], tuple[float, ...]]:
    """Materialize `batches` and compute their weights `n_i / N`.

    Args:
        owner: the calling function's name, for error messages.
        batches: an iterable of batches (each a tuple of arguments, or one argument).

    Returns:
        `(args_per_batch, weights)`: the argument tuples and the Python-float weights, which sum
        to 1.

    Raises:
        TypeError: when `batches` is an array or not iterable.
        ValueError: when it is empty, a batch has no leading axis, or all batches are empty.
    """
    if isinstance(batches, (jax.Array, np.ndarray, str, bytes)) or not isinstance(batches, Iterable):
        raise TypeError(
            f"{owner}: batches must be an iterable (e.g. a list) of batches, each a tuple of the "
            f"loss's arguments, got {type(batches).__name__}"
        )
    arg_lists = tuple(as_args(b) for b in batches)
    if not arg_lists:
        raise ValueError(f"{owner}: batches is empty; give at least one batch")
    sizes = []
    for i, args in enumerate(arg_lists):
        try:
            sizes.append(batch_size(args))
        except ValueError as err:
            raise ValueError(f"{owner}: batch {i}: {err}") from None
    total = sum(sizes)
    if total <= 0:
        raise ValueError(f"{owner}: every batch is empty (sizes {sizes})")
    return arg_lists, tuple(s / total for s in sizes)


def average_loss(loss: Callable[..., Any], arg_lists: Sequence[tuple[Any, ...]], weights: Sequence[float]) -> Callable[[Any], Any]:
    """The weighted average `θ ↦ Σ_i w_i · loss(θ, *args_i)` as a function of the params alone."""

    def averaged(params: Any) -> Any:
        total = None
        for args, w in zip(arg_lists, weights, strict=True):
            term = w * loss(params, *args)
            total = term if total is None else total + term
        return total

    return averaged


def prepare_data(
    owner: str, args: tuple[Any, ...], batches: Iterable[Any] | None
) -> tuple[tuple[tuple[Any, ...], ...], tuple[float, ...]]:
    """Normalize "one batch in `*args`" or "`batches=`" to `(arg_lists, weights)`.

    One batch gives `((args,), (1.0,))`; a [`Batched`][gradtx.curvature.Batched] data set is
    returned as it is, with weights `(1.0,)` (it is swept by `lax.scan`). The arg lists are pytrees (they can be passed through
    `jax.jit` as dynamic arguments); the weights are Python floats (static).

    Raises:
        ValueError: when both `args` and `batches` are given, or `batches` is empty.
        TypeError: when `batches` is not an iterable of batches.
    """
    if batches is None:
        return (tuple(args),), (1.0,)
    if args:
        raise ValueError(
            f"{owner}: give either one batch as positional arguments or batches=..., not both "
            f"(got {len(args)} positional argument(s) and batches)"
        )
    if isinstance(batches, Batched):
        return batches, (1.0,)  # type: ignore[return-value]  # swept by lax.scan in data_loss
    return collect_batches(owner, batches)


def is_stream(batches: Any) -> bool:
    """Whether `batches=` is a stream to iterate on the host (anything but None and a [`Batched`][gradtx.curvature.Batched])."""
    return batches is not None and not isinstance(batches, Batched)


def data_loss(loss: Callable[..., Any], arg_lists: Sequence[tuple[Any, ...]], weights: Sequence[float]) -> Callable[[Any], Any]:
    """`θ ↦ loss(θ, *args)` for one batch, else the weighted average over the batches."""
    if isinstance(arg_lists, Batched):
        stacked = arg_lists
        return lambda params: stacked.mean(lambda *b: loss(params, *b))
    if len(arg_lists) == 1:
        only = arg_lists[0]
        return lambda params: loss(params, *only)
    return average_loss(loss, arg_lists, weights)


class _StaticLeaves:
    """The non-array leaves of a data tree and its structure, hashable (a static jit argument)."""

    __slots__ = ("leaves", "mask", "treedef")

    def __init__(self, treedef: Any, mask: tuple[bool, ...], leaves: tuple[Any, ...]):
        self.treedef = treedef
        self.mask = mask
        self.leaves = leaves

    def _key(self) -> tuple[Any, ...]:
        return (self.treedef, self.mask, tuple((type(x), x) for x in self.leaves))

    def __hash__(self) -> int:
        try:
            return hash(self._key())
        except TypeError:  # an unhashable non-array leaf: fall back to identity
            return id(self)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _StaticLeaves):
            return False
        try:
            return bool(self._key() == other._key())
        except Exception:
            return self is other


def _is_array(x: Any) -> bool:
    return isinstance(x, (jax.Array, np.ndarray, np.generic))


def partition_data(data: Any) -> tuple[list[Any], _StaticLeaves]:
    """Split a data tree into its array leaves (traced by `jax.jit`) and the rest (static).

    Python scalars, strings, `None`-free flags etc. stay Python values, so a loss that branches
    on, say, a `train: bool` argument works under the estimators' internal `jax.jit`.
    """
    leaves, treedef = jax.tree_util.tree_flatten(data)
    mask = tuple(_is_array(x) for x in leaves)
    arrays = [x for x, m in zip(leaves, mask) if m]
    static = tuple(x for x, m in zip(leaves, mask) if not m)
    return arrays, _StaticLeaves(treedef, mask, static)


def combine_data(arrays: Sequence[Any], static: _StaticLeaves) -> Any:
    """Inverse of [`partition_data`][gradtx.curvature.data.partition_data]."""
    it_arr, it_static = iter(arrays), iter(static.leaves)
    leaves = [next(it_arr) if m else next(it_static) for m in static.mask]
    return jax.tree_util.tree_unflatten(static.treedef, leaves)


def loss_from_parts(loss: Callable[..., Any], arrays: Sequence[Any], static: _StaticLeaves, weights: Sequence[float]) -> Callable[[Any], Any]:
    """Rebuild the data from [`partition_data`][gradtx.curvature.data.partition_data] and bind it to `loss`."""
    return data_loss(loss, combine_data(arrays, static), weights)


class _ByIdentity:
    """Wraps an unhashable callable so it can be a static argument of `jax.jit` (hashed by id)."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[..., Any]):
        self.fn = fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __hash__(self) -> int:
        return id(self.fn)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _ByIdentity) and other.fn is self.fn


def static_callable(owner: str, name: str, fn: Any) -> Callable[..., Any]:
    """Check that `fn` is callable and return it in a form usable as a static `jax.jit` argument.

    The estimators compile their numeric core with the loss as a static argument, so calling an
    estimator again with the same loss object (and the same shapes) reuses the compiled code.
    """
    if not callable(fn):
        raise TypeError(f"{owner}: {name} must be callable, got {type(fn).__name__}: {fn!r}")
    try:
        hash(fn)
    except TypeError:
        return _ByIdentity(fn)
    return fn


def bind_loss(owner: str, loss: Callable[..., Any], args: tuple[Any, ...], batches: Iterable[Any] | None) -> Callable[[Any], Any]:
    """Turn `loss(params, *args)` or a batch-weighted average into a function of the params.

    Args:
        owner: the calling function's name, for error messages.
        loss: a scalar function `loss(params, *args)`.
        args: the positional arguments of one batch (may be empty).
        batches: None, or an iterable of batches to average over (then `args` must be empty).

    Raises:
        TypeError: when `loss` is not callable.
        ValueError: when both `args` and `batches` are given.
    """
    if not callable(loss):
        raise TypeError(f"{owner}: loss must be a callable loss(params, *args), got {type(loss).__name__}")
    if isinstance(batches, Batched):
        if args:
            raise ValueError(f"{owner}: give either one batch as positional arguments or batches=..., not both")
        stacked = batches
        return lambda params: stacked.mean(lambda *b: loss(params, *b))
    arg_lists, weights = prepare_data(owner, args, batches)
    return data_loss(loss, arg_lists, weights)


def _sweeps(x: Any) -> bool:
    """Whether a data leaf is split along its leading axis (an array with ≥ 1 axis) or shared."""
    return isinstance(x, (jax.Array, np.ndarray)) and np.ndim(x) >= 1


@jax.tree_util.register_pytree_node_class
class Batched:
    """An in-memory data set given as stacked arrays, swept in batches inside one compiled call.

    `Batched(x, y, batch_size=b)` stands for the batches `(x[i*b:(i+1)*b], y[i*b:(i+1)*b])` of
    the `N` examples along the leading axis of every array argument (scalars and 0-d arrays are
    passed unchanged to every batch). Given as `batches=` to any curvature estimator, the
    per-batch computation is traced **once** and run over the `N // b` full batches by
    `lax.scan`, plus one call for a short last batch of `N mod b` examples, all inside one
    `jax.jit`: compile time does not depend on the number of batches, and the memory for
    activations is that of one batch. The result is the batch-size-weighted mean

    $$\\bar f = \\frac{b}{N} \\sum_{i=1}^{\\lfloor N/b \\rfloor} f(B_i) + \\frac{N \\bmod b}{N} f(B_{\\mathrm{last}}),$$

    which for a loss that is a mean over its batch is exactly the full-data quantity. Use it
    when the whole data set fits in device memory; for larger data pass a generator factory
    or a loader instead (see [`gradtx.curvature.streaming`][gradtx.curvature.streaming]).

    Args:
        *args: the loss's arguments for the whole data set (pytrees of arrays whose leaves with
            at least one axis share the leading length `N ≥ 1`).
        batch_size: examples per batch, an int ≥ 1 (larger than `N` means one batch).

    Raises:
        TypeError: when `batch_size` is not an int.
        ValueError: when `batch_size < 1`, no argument has a leading axis, or the leading
            lengths differ.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.curvature import Batched, hessian_trace
        >>> x = jnp.arange(12.0).reshape(6, 2)
        >>> loss = lambda w, x: jnp.mean((x @ w) ** 2)
        >>> tr = hessian_trace(loss, jnp.zeros(2), batches=Batched(x, batch_size=4), num_samples=6,
        ...                    method="hutch++")
        >>> bool(jnp.allclose(tr, 2 * jnp.mean(jnp.sum(x**2, axis=1)), rtol=1e-5))
        True
    """

    def __init__(self, *args: Any, batch_size: int):
        from gradtx._validation import check_int

        check_int("Batched", "batch_size", batch_size, low=1)
        self.args = tuple(args)
        self.batch_size = int(batch_size)
        lengths = {int(np.shape(x)[0]) for x in jax.tree_util.tree_leaves(self.args) if _sweeps(x)}
        if not lengths:
            raise ValueError("Batched: the data must hold an array with a leading (example) axis, got only scalars")
        if len(lengths) > 1:
            raise ValueError(f"Batched: every array must have the same leading length (examples), got {sorted(lengths)}")
        if lengths == {0}:
            raise ValueError("Batched: the data set is empty (leading length 0)")

    def tree_flatten(self) -> tuple[tuple[Any, ...], int]:
        return (self.args,), self.batch_size

    @classmethod
    def tree_unflatten(cls, batch_size: int, children: tuple[Any, ...]) -> "Batched":
        obj = object.__new__(cls)
        obj.args = children[0]
        obj.batch_size = batch_size
        return obj

    def __repr__(self) -> str:
        return f"Batched(<{self.num_examples} examples>, batch_size={self.batch_size})"

    @property
    def num_examples(self) -> int:
        """`N`, the leading length of the data."""
        for x in jax.tree_util.tree_leaves(self.args):
            if np.ndim(x) >= 1:
                return int(np.shape(x)[0])
        raise ValueError("Batched: no array with a leading axis")

    def mean(self, fn: Callable[..., Any]) -> Any:
        """`Σ_i (n_i/N) fn(*B_i)` over the batches, by `lax.scan` (traceable; `fn` returns a pytree of arrays)."""
        n, b = self.num_examples, self.batch_size
        full, rest = divmod(n, b)
        leaves, treedef = jax.tree_util.tree_flatten(self.args)
        swept = [np.ndim(x) >= 1 for x in leaves]

        def batch_args(parts: list[Any]) -> tuple[Any, ...]:
            it = iter(parts)
            return jax.tree_util.tree_unflatten(treedef, [next(it) if s else x for x, s in zip(leaves, swept)])

        total = None
        if full == 1 and rest == 0:
            return fn(*batch_args([x for x, s in zip(leaves, swept) if s]))
        if full:
            stacked = [x[: full * b].reshape((full, b, *np.shape(x)[1:])) for x, s in zip(leaves, swept) if s]
            first = jax.eval_shape(lambda: fn(*batch_args([x[0] for x in stacked])))
            acc0 = jax.tree.map(lambda s: jax.numpy.zeros(s.shape, s.dtype), first)

            def body(acc: Any, parts: list[Any]) -> tuple[Any, None]:
                return jax.tree.map(jax.numpy.add, acc, fn(*batch_args(parts))), None

            summed, _ = jax.lax.scan(body, acc0, stacked)
            total = jax.tree.map(lambda s: s * (b / n), summed)
        if rest:
            tail = fn(*batch_args([x[full * b:] for x, s in zip(leaves, swept) if s]))
            tail = jax.tree.map(lambda t: t * (rest / n), tail)
            total = tail if total is None else jax.tree.map(jax.numpy.add, total, tail)
        return total
