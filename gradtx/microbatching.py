"""Microbatching: evaluate a function on a large batch one slice at a time, and combine.

[`microbatch`][gradtx.microbatching.microbatch] splits the batch arguments of a function into
`n` microbatches, evaluates the function on each in a `lax.fori_loop` (so only one microbatch's
intermediate values are alive at a time) and combines the results with an
[`Accumulator`][gradtx.microbatching.Accumulator]: a sum, a mean, a running mean or a
concatenation ([`AccumulationType`][gradtx.microbatching.AccumulationType]), possibly a
different one per output. [`micro_vmap`][gradtx.microbatching.micro_vmap] is a `jax.vmap`
evaluated in microbatches, and [`micro_grad`][gradtx.microbatching.micro_grad] computes
per-example gradients, transforms them (e.g. clips them) and reduces them, in microbatches.

The names, arguments, defaults and numbers are those of `optax.microbatching` (optax 0.2.8).

Microbatch `i` holds the batch rows `i, i + n, i + 2n, ...` (a column-major reshape of the batch
axis into `(n, microbatch_size)`), so a batch axis sharded over devices stays sharded inside each
microbatch. `CONCAT` puts the rows back in their original order.
"""

import functools
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradtx._microbatch_accumulators import (
    AccumulationType,
    Accumulator,
    Aux,
    _check_accumulator,
    _explicit_sharding,
    _resolve,
)
from gradtx._validation import check_int, is_traced

__all__ = [
    "AccumulationType",
    "Accumulator",
    "micro_grad",
    "micro_vmap",
    "microbatch",
    "reshape_batch_axis",
]


# ----------------------------------------------------------------------------------------------
# splitting the batch
# ----------------------------------------------------------------------------------------------


def reshape_batch_axis(tree: Any, microbatch_size: int, axis: int = 0) -> Any:
    """Split the batch axis of every leaf into `(num_microbatches, microbatch_size)`.

    The reshape is column-major: microbatch `i` holds the rows `i, i + n, i + 2n, ...` (`n` the
    number of microbatches), so a sharding of the batch axis carries over to the
    `microbatch_size` axis and each microbatch stays spread over the devices. On a mesh with
    explicit axes (`jax.sharding.AxisType.Explicit`) the output sharding is given to the reshape
    (optax 0.2.8 misreads jax 0.10's version as older than 0.7 and skips this, so its reshape
    fails there); `microbatch_size` must then be a multiple of the number of shards.

    Args:
        tree: a pytree of arrays, each with a batch axis at `axis` whose size is a multiple of
            `microbatch_size`.
        microbatch_size: integer >= 1, the rows per microbatch.
        axis: default 0, the batch axis.

    Returns:
        The tree with each leaf's batch axis replaced by the two axes `(n, microbatch_size)`.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.microbatching import reshape_batch_axis
        >>> reshape_batch_axis(jnp.arange(6), 2).tolist()
        [[0, 3], [1, 4], [2, 5]]
    """
    check_int("reshape_batch_axis", "microbatch_size", microbatch_size, low=1)
    check_int("reshape_batch_axis", "axis", axis, low=0)

    def split(x):
        new_shape = (*x.shape[:axis], -1, microbatch_size, *x.shape[axis + 1 :])
        sharding = _explicit_sharding(x)
        if sharding is None:
            return x.reshape(new_shape, order="F")
        spec = sharding.spec
        if len(spec) < axis:  # the batch axis is not sharded
            new_spec = spec
        else:
            new_spec = jax.sharding.PartitionSpec(*spec[:axis], None, spec[axis], *spec[axis + 1 :])
        shards = x.shape[axis] // sharding.shard_shape(x.shape)[axis]
        if microbatch_size % shards != 0:
            raise ValueError(
                f"reshape_batch_axis: the batch axis is split over {shards} devices, which must "
                f"divide microbatch_size={microbatch_size}"
            )
        return x.reshape(new_shape, order="F", out_sharding=jax.sharding.NamedSharding(sharding.mesh, new_spec))

    return jax.tree.map(split, tree)


def _as_tuple(owner: str, name: str, value: Any, kind: type) -> tuple:
    """`value` (one item of type `kind` or a sequence of them) as a tuple; a TypeError otherwise."""
    what = "a string" if kind is str else "an integer"
    items = (value,) if isinstance(value, kind) else value
    if not isinstance(items, (tuple, list)) or not all(
        isinstance(item, kind) and not isinstance(item, bool) for item in items
    ):
        raise TypeError(f"{owner}: {name} must be {what} or a sequence of them, got {value!r}")
    return tuple(items)


def _split_batch_arguments(owner, microbatch_size, argnums, argnames, in_axes, args, kwargs):
    """`args`, `kwargs` with their batch arguments split, and the (common) batch size."""
    batch_args = [args[i] for i in argnums] + [kwargs[name] for name in argnames]
    sizes = []
    for axis, arg in zip(in_axes, batch_args, strict=True):
        sizes += [x.shape[axis] for x in jax.tree.leaves(arg)]
    if not sizes:
        raise ValueError(f"{owner}: the batch arguments {list(argnums) + list(argnames)} hold no arrays")
    if len(set(sizes)) > 1:
        raise ValueError(f"{owner}: the batch arguments must have equal batch sizes, got {sizes}")
    batch_size = sizes[0]
    if batch_size % microbatch_size != 0:
        raise ValueError(
            f"{owner}: the batch size {batch_size} must be a multiple of microbatch_size={microbatch_size}"
        )
    new_args, new_kwargs = list(args), dict(kwargs)
    for i, axis in zip(argnums, in_axes, strict=False):
        new_args[i] = reshape_batch_axis(args[i], microbatch_size, axis)
    for name, axis in zip(argnames, in_axes[len(argnums) :], strict=True):
        new_kwargs[name] = reshape_batch_axis(kwargs[name], microbatch_size, axis)
    return tuple(new_args), new_kwargs, batch_size


# ----------------------------------------------------------------------------------------------
# the public transformations
# ----------------------------------------------------------------------------------------------


def microbatch(
    fun: Callable[..., Any],
    argnums: int | Sequence[int],
    microbatch_size: int | None,
    accumulator: Any = AccumulationType.SUM,
    *,
    argnames: str | Sequence[str] = (),
    in_axes: int | Sequence[int] = 0,
    num_real_microbatches: int | jax.Array | None = None,
) -> Callable[..., Any]:
    """`fun` evaluated one microbatch at a time, the results combined by `accumulator`.

    With the batch arguments split into `n = batch_size / microbatch_size` microbatches `b_i`
    (see [`reshape_batch_axis`][gradtx.microbatching.reshape_batch_axis]):

        SUM:           Σ_i fun(b_i)
        MEAN:          (Σ_i fun(b_i)) / n
        RUNNING_MEAN:  the mean of fun(b_0), ..., fun(b_{m-1}), m = num_real_microbatches (or n)
        CONCAT:        fun(b_0), ..., fun(b_{n-1}) concatenated along axis 0, in batch order

    The loop is a `lax.fori_loop`, so the microbatches run one after the other and peak memory
    is that of one microbatch: the way to evaluate (or differentiate) a function on a batch
    that does not fit in memory at once.

    Args:
        fun: the function to evaluate.
        argnums: index or indices of the positional arguments with a batch axis.
        microbatch_size: rows per microbatch; must divide the batch size. None returns `fun`
            itself.
        accumulator: default `AccumulationType.SUM`; an
            [`AccumulationType`][gradtx.microbatching.AccumulationType], an
            [`Accumulator`][gradtx.microbatching.Accumulator], or a pytree of them that is a prefix
            of `fun`'s output (a different combination per output).
        argnames: keyword-only; name or names of keyword arguments with a batch axis.
        in_axes: keyword-only, default 0; the batch axis of every batch argument (one int for
            all, or one per entry of `argnums` followed by `argnames`).
        num_real_microbatches: keyword-only, default None (all `n`); run only the first this
            many microbatches (a traced value is allowed: variable batch sizes without
            recompiling).

    Returns:
        A function with `fun`'s signature.

    References:
        Same numbers as `optax.microbatching.microbatch` (`optax.microbatch`).

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> from gradtx.microbatching import AccumulationType
        >>> f = lambda x: (x + 1, jnp.sum(3 * x))
        >>> g = gradtx.microbatch(f, argnums=0, microbatch_size=2,
        ...                       accumulator=(AccumulationType.CONCAT, AccumulationType.SUM))
        >>> [y.tolist() for y in g(jnp.array([1, 2, 3, 4]))]
        [[2, 3, 4, 5], 30]
    """
    owner = "microbatch"
    if not callable(fun):
        raise TypeError(f"{owner}: fun must be callable, got {type(fun).__name__}: {fun!r}")
    argnums = _as_tuple(owner, "argnums", argnums, numbers.Integral)
    argnames = _as_tuple(owner, "argnames", argnames, str)
    if microbatch_size is not None:
        check_int(owner, "microbatch_size", microbatch_size, low=1)
    _check_accumulator(owner, accumulator)
    in_axes = _as_tuple(owner, "in_axes", in_axes, numbers.Integral)
    if len(in_axes) == 1:
        in_axes = in_axes * (len(argnums) + len(argnames))
    if len(in_axes) != len(argnums) + len(argnames):
        raise ValueError(
            f"{owner}: in_axes must give one axis per batch argument ({len(argnums)} in argnums and "
            f"{len(argnames)} in argnames), got {len(in_axes)}"
        )
    if num_real_microbatches is not None and not (is_traced(num_real_microbatches) or isinstance(num_real_microbatches, jax.Array)):
        check_int(owner, "num_real_microbatches", num_real_microbatches, low=0)
    if microbatch_size is None:
        return fun

    def microbatched(*args, **kwargs):
        split_args, split_kwargs, batch_size = _split_batch_arguments(
            owner, microbatch_size, argnums, argnames, in_axes, args, kwargs
        )
        num_microbatches = batch_size // microbatch_size
        combine = _resolve(accumulator, num_microbatches)

        def on_microbatch(index):
            call_args, call_kwargs = list(split_args), dict(split_kwargs)
            take = functools.partial(jnp.take, indices=index)
            for i, axis in zip(argnums, in_axes, strict=False):
                call_args[i] = jax.tree.map(functools.partial(take, axis=axis), call_args[i])
            for name, axis in zip(argnames, in_axes[len(argnums) :], strict=True):
                call_kwargs[name] = jax.tree.map(functools.partial(take, axis=axis), call_kwargs[name])
            return fun(*call_args, **call_kwargs)

        def body(index, carry):
            return combine.update(carry, on_microbatch(index), index)

        steps = num_microbatches if num_real_microbatches is None else num_real_microbatches
        carry = combine.init(jax.eval_shape(on_microbatch, 0))
        return combine.finalize(jax.lax.fori_loop(0, steps, body, carry))

    return microbatched


def micro_vmap(
    fun: Callable[..., Any],
    in_axes: int | Sequence[int | None] = 0,
    out_axes: Any = 0,
    *,
    microbatch_size: int | None = None,
    vmap_fn: Callable[..., Any] = jax.vmap,
    accumulator: Any = AccumulationType.CONCAT,
    num_real_microbatches: int | jax.Array | None = None,
) -> Callable[..., Any]:
    """`jax.vmap(fun)` evaluated in microbatches, optionally reduced over the batch axis.

    With the default `CONCAT` the result is `jax.vmap(fun, in_axes)(...)`'s; `SUM` or `MEAN`
    return the sum or mean over the batch axis without ever holding all per-example outputs
    (each microbatch's outputs are reduced, then the microbatches' results are combined).

    Args:
        fun: the function to map.
        in_axes: default 0; the mapped axis of each positional argument (None: not mapped), as
            in `jax.vmap`. Keyword arguments are mapped along axis 0.
        out_axes: must be 0.
        microbatch_size: keyword-only, default None (one `vmap` over the whole batch); rows per
            microbatch.
        vmap_fn: keyword-only, default `jax.vmap`; a function with its signature.
        accumulator: keyword-only, default `AccumulationType.CONCAT`; as in
            [`microbatch`][gradtx.microbatching.microbatch].
        num_real_microbatches: keyword-only; as in [`microbatch`][gradtx.microbatching.microbatch].

    Returns:
        The mapped function.

    References:
        Same numbers as `optax.microbatching.micro_vmap`.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.microbatching import micro_vmap
        >>> micro_vmap(lambda x: x ** 2, microbatch_size=2)(jnp.arange(6)).tolist()
        [0, 1, 4, 9, 16, 25]
    """
    owner = "micro_vmap"
    if out_axes != 0:
        raise NotImplementedError(f"{owner}: only out_axes=0 is supported, got {out_axes!r}")
    if not callable(fun):
        raise TypeError(f"{owner}: fun must be callable, got {type(fun).__name__}: {fun!r}")
    _check_accumulator(owner, accumulator)
    if isinstance(in_axes, int):
        in_axes = (in_axes,)
    in_axes = tuple(in_axes)

    def per_microbatch(*args, kwargs):
        outputs = vmap_fn(fun, in_axes, out_axes)(*args, **kwargs)
        rows = jax.tree.leaves(outputs)[0].shape[0]
        return _resolve(accumulator, rows).aggregate(outputs)

    mapped = microbatch(
        per_microbatch,
        argnums=tuple(i for i, axis in enumerate(in_axes) if axis is not None),
        argnames="kwargs",
        microbatch_size=microbatch_size,
        accumulator=accumulator,
        in_axes=(*(axis for axis in in_axes if axis is not None), 0),
        num_real_microbatches=num_real_microbatches,
    )

    def vmapped(*args, **kwargs):
        return mapped(*args, kwargs=kwargs)

    return vmapped


def micro_grad(
    fun: Callable[..., Any],
    has_aux: bool = False,
    argnums: int | Sequence[int] = 0,
    *,
    batch_argnums: int | Sequence[int] = 1,
    keep_batch_dim: bool = True,
    microbatch_size: int | None = None,
    accumulator: Any = AccumulationType.SUM,
    transform_fn: Callable[[Any], Any] = lambda grads: grads,
    metrics_fn: Callable[[Any], Any] = lambda grads: None,
    num_real_microbatches: int | jax.Array | None = None,
) -> Callable[..., tuple[Any, Aux]]:
    """Per-example gradients, transformed and reduced over the batch, in microbatches.

    For each example `x_j` of the batch: `g_j = ∇ fun(params, x_j)`; the result is
    `accumulate_j transform_fn(g_j)` (a sum by default), returned with the per-example
    `Aux(values=fun(params, x_j), metrics=metrics_fn(g_j), aux=...)`. With
    `transform_fn` a per-example clip and `accumulator=MEAN` this is the gradient of DP-SGD.

    Args:
        fun: the loss, `fun(params, batch, ...)` by default (see `batch_argnums`).
        has_aux: default False; whether `fun` returns `(value, aux)`.
        argnums: default 0; the argument(s) to differentiate, as in `jax.grad`.
        batch_argnums: keyword-only, default 1; the argument(s) with a batch axis 0.
        keep_batch_dim: keyword-only, default True; `fun` receives each example with a batch
            axis of size 1 (False: without it).
        microbatch_size: keyword-only, default None (all examples at once); examples per
            microbatch.
        accumulator: keyword-only, default `AccumulationType.SUM`; how the transformed
            gradients are combined over the batch.
        transform_fn: keyword-only, default identity; applied to each per-example gradient.
        metrics_fn: keyword-only, default `None`-valued; per-example metrics of the gradient.
        num_real_microbatches: keyword-only; as in [`microbatch`][gradtx.microbatching.microbatch].

    Returns:
        A function with `fun`'s arguments returning `(combined, Aux(values, metrics, aux))`.

    References:
        Same numbers as `optax.microbatching.micro_grad`; Abadi et al., *Deep Learning with
        Differential Privacy* (CCS 2016) for per-example clipping.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.microbatching import AccumulationType, micro_grad
        >>> loss = lambda w, x, y: 0.5 * jnp.mean((x @ w - y) ** 2)
        >>> grads, aux = micro_grad(loss, batch_argnums=(1, 2), accumulator=AccumulationType.MEAN)(
        ...     jnp.zeros(1), jnp.ones((4, 1)), jnp.array([0.0, 2.0, 4.0, 6.0]))
        >>> grads.tolist(), aux.values.tolist()
        ([-3.0], [0.0, 2.0, 8.0, 18.0])
    """
    owner = "micro_grad"
    if not callable(fun):
        raise TypeError(f"{owner}: fun must be callable, got {type(fun).__name__}: {fun!r}")
    if not isinstance(has_aux, (bool, np.bool_)):
        raise TypeError(f"{owner}: has_aux must be True or False, got {has_aux!r}")
    if not isinstance(keep_batch_dim, (bool, np.bool_)):
        raise TypeError(f"{owner}: keep_batch_dim must be True or False, got {keep_batch_dim!r}")
    batch_argnums = _as_tuple(owner, "batch_argnums", batch_argnums, numbers.Integral)
    _check_accumulator(owner, accumulator)
    with_aux = fun if has_aux else (lambda *args, **kwargs: (fun(*args, **kwargs), None))
    value_and_grad = jax.value_and_grad(with_aux, argnums, has_aux=True)

    def per_example(*args, **kwargs):
        (value, aux), grads = value_and_grad(*args, **kwargs)
        return transform_fn(grads), Aux(values=value, metrics=metrics_fn(grads), aux=aux)

    in_axes: list[int | None] = [None] * (max(batch_argnums) + 1)
    for i in batch_argnums:
        in_axes[i] = 0
    mapped = micro_vmap(
        per_example,
        in_axes=in_axes,
        accumulator=(accumulator, AccumulationType.CONCAT),
        microbatch_size=microbatch_size,
        num_real_microbatches=num_real_microbatches,
    )
    if not keep_batch_dim:
        return mapped

    def with_batch_dim(*args, **kwargs):
        args = list(args)
        for i in batch_argnums:
            args[i] = jax.tree.map(lambda x: jnp.expand_dims(x, axis=1), args[i])
        return mapped(*args, **kwargs)

    return with_batch_dim
