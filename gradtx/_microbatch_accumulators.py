"""The accumulators of [`gradtx.microbatching`][gradtx.microbatching]: how microbatch results combine.

An [`Accumulator`][gradtx.microbatching.Accumulator] is four functions (`init`, `update`,
`finalize`, `aggregate`); [`AccumulationType`][gradtx.microbatching.AccumulationType] names the
built-in ones (sum, mean, running mean, concatenation), as in `optax.microbatching`. Every name
here is public through `gradtx.microbatching`.
"""

import dataclasses
import enum
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["AccumulationType", "Accumulator", "Aux"]


@dataclasses.dataclass(frozen=True)
class Accumulator:
    """How the results of the microbatches are combined.

    For results `x_0 … x_{n-1}` of the `n` microbatches, the combined result is

        carry = init(shape_and_dtype_of(x_0))
        for i in range(n): carry = update(carry, x_i, i)
        result = finalize(carry)

    and [`micro_vmap`][gradtx.microbatching.micro_vmap] reduces the stacked results of one
    microbatch with `aggregate` first.

    Attributes:
        init: `f(shape_dtype_struct_tree) -> carry`, the initial carry.
        update: `f(carry, value, index) -> carry`, folds in the result of microbatch `index`.
        finalize: `f(carry) -> result`.
        aggregate: `f(values) -> value`, reduces a batch axis 0 of per-example values.
    """

    init: Callable[[Any], Any]
    update: Callable[[Any, Any, Any], Any]
    finalize: Callable[[Any], Any]
    aggregate: Callable[[Any], Any]


class AccumulationType(enum.Enum):
    """The built-in ways of combining the microbatches' results."""

    MEAN = enum.auto()
    """The mean over the microbatches (the sum divided by their number `n`)."""
    SUM = enum.auto()
    """The sum over the microbatches."""
    RUNNING_MEAN = enum.auto()
    """The mean over the microbatches actually run (`num_real_microbatches` of them)."""
    CONCAT = enum.auto()
    """The results concatenated along axis 0, rows in the original batch order."""


class Aux(NamedTuple):
    """The per-example outputs of [`micro_grad`][gradtx.microbatching.micro_grad]."""

    values: Any
    metrics: Any
    aux: Any


# ----------------------------------------------------------------------------------------------
# the accumulators
# ----------------------------------------------------------------------------------------------


def _leafwise(acc: Accumulator) -> Accumulator:
    """An accumulator of arrays, applied leaf by leaf to trees."""
    return Accumulator(
        init=lambda shapes: jax.tree.map(acc.init, shapes),
        update=lambda carry, value, i: jax.tree.map(lambda c, v: acc.update(c, v, i), carry, value),
        finalize=lambda carry: jax.tree.map(acc.finalize, carry),
        aggregate=lambda values: jax.tree.map(acc.aggregate, values),
    )


def _floating_zeros(shape: Any) -> jax.Array:
    if not jnp.issubdtype(shape.dtype, jnp.floating):
        raise ValueError(
            f"microbatch: MEAN and RUNNING_MEAN average the results, which must be floating point; "
            f"got a result of dtype {shape.dtype}. Use SUM, or return floats."
        )
    return jnp.zeros_like(shape)


def _add(carry: jax.Array, value: jax.Array, index: Any) -> jax.Array:
    del index
    return carry + value


def _sum() -> Accumulator:
    return _leafwise(Accumulator(jnp.zeros_like, _add, lambda x: x, functools.partial(jnp.sum, axis=0)))


def _check_count(num_microbatches: Any) -> None:
    if num_microbatches <= 0:
        raise ValueError(f"microbatch: the number of microbatches must be >= 1, got {num_microbatches}")


def _mean(num_microbatches: int) -> Accumulator:
    _check_count(num_microbatches)
    return _leafwise(
        Accumulator(
            _floating_zeros, _add, lambda carry: carry / num_microbatches, functools.partial(jnp.mean, axis=0)
        )
    )


def _running_mean() -> Accumulator:
    def update(carry, value, index):
        # the mean of the first index + 1 results: old mean weighted by index / (index + 1)
        weight = index / (index + 1)
        return carry * weight + value * (1 - weight)

    return _leafwise(Accumulator(_floating_zeros, update, lambda x: x, functools.partial(jnp.mean, axis=0)))


def _explicit_sharding(x: Any) -> Any:
    """The sharding of `x` when all its mesh axes are explicit (`jax.sharding.AxisType.Explicit`), else None."""
    sharding = getattr(jax.typeof(x), "sharding", None)
    mesh = getattr(sharding, "mesh", None)
    if mesh is None or not getattr(mesh, "are_all_axes_explicit", False):
        return None
    return sharding


def _concat(num_microbatches: int) -> Accumulator:
    _check_count(num_microbatches)

    def init(shape):
        return jnp.broadcast_to(jnp.zeros_like(shape), (num_microbatches, *shape.shape))

    def update(carry, value, index):
        return carry.at[index].set(value)

    def finalize(carry):
        # (n, microbatch_size, ...) back to (batch, ...), undoing reshape_batch_axis's order
        sharding = _explicit_sharding(carry)
        if sharding is None:
            return carry.reshape(-1, *carry.shape[2:], order="F")
        spec = jax.sharding.PartitionSpec(*sharding.spec[1:]) if sharding.spec else jax.sharding.PartitionSpec()
        out = jax.sharding.NamedSharding(sharding.mesh, spec)
        return carry.reshape(-1, *carry.shape[2:], order="F", out_sharding=out)

    return _leafwise(Accumulator(init, update, finalize, lambda x: x))


def _builtin(kind: AccumulationType, num_microbatches: int) -> Accumulator:
    if kind is AccumulationType.MEAN:
        return _mean(num_microbatches)
    if kind is AccumulationType.SUM:
        return _sum()
    if kind is AccumulationType.RUNNING_MEAN:
        return _running_mean()
    return _concat(num_microbatches)


def _is_accumulator_leaf(x: Any) -> bool:
    return isinstance(x, (Accumulator, AccumulationType))


def _check_accumulator(owner: str, accumulator: Any) -> None:
    leaves = jax.tree.leaves(accumulator, is_leaf=_is_accumulator_leaf)
    bad = [leaf for leaf in leaves if not _is_accumulator_leaf(leaf)]
    if bad or not leaves:
        raise TypeError(
            f"{owner}: accumulator must be an Accumulator, an AccumulationType or a pytree (a "
            f"prefix of the function's output) of them, got {accumulator!r}"
        )


def _resolve(accumulator: Any, num_microbatches: int) -> Accumulator:
    """One tree-level accumulator from a (prefix) tree of accumulators and accumulation types."""
    tree = jax.tree.map(
        lambda a: a if isinstance(a, Accumulator) else _builtin(a, num_microbatches),
        accumulator,
        is_leaf=_is_accumulator_leaf,
    )

    def each(fn_name: str, *trees: Any) -> Any:
        return jax.tree.map(lambda acc, *xs: getattr(acc, fn_name)(*xs), tree, *trees,
                            is_leaf=lambda x: isinstance(x, Accumulator))

    return Accumulator(
        init=lambda shapes: each("init", shapes),
        update=lambda carry, value, i: jax.tree.map(
            lambda acc, c, v: acc.update(c, v, i), tree, carry, value, is_leaf=lambda x: isinstance(x, Accumulator)
        ),
        finalize=lambda carry: each("finalize", carry),
        aggregate=lambda values: each("aggregate", values),
    )
