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

The helpers here turn `(loss, args, batches)` into a function of the params alone, which the
estimators then differentiate.
"""

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax
import numpy as np

__all__ = [
    "as_args",
    "average_loss",
    "batch_size",
    "bind_loss",
    "collect_batches",
    "combine_data",
    "data_loss",
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

    One batch gives `((args,), (1.0,))`. The arg lists are pytrees (they can be passed through
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
    return collect_batches(owner, batches)


def data_loss(loss: Callable[..., Any], arg_lists: Sequence[tuple[Any, ...]], weights: Sequence[float]) -> Callable[[Any], Any]:
    """`θ ↦ loss(θ, *args)` for one batch, else the weighted average over the batches."""
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
    arg_lists, weights = prepare_data(owner, args, batches)
    return data_loss(loss, arg_lists, weights)
