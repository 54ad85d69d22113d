"""Curvature over data the size of a data set: operators that stream batches through each product.

Every curvature matrix of a loss that is a mean over a data set is a batch-size-weighted mean of
per-batch matrices. For any per-batch linear map `P(θ; B)` (a Hessian-, Gauss-Newton- or
Fisher-vector product on batch `B`),

$$A v = \\sum_{i} \\frac{n_i}{N} P(θ; B_i)\\, v, \\qquad N = \\sum_i n_i,$$

where `n_i` is the number of examples in batch `B_i` (the leading length of its first array,
see [`batch_size`][gradtx.curvature.batch_size]). A short last batch therefore counts for what
it holds. This is PyHessian's and curvlinops' weighting.

[`data_operator`][gradtx.curvature.data_operator] builds `v ↦ A v` from the data in one of
three forms:

* one batch (`*args`): a plain traceable function `v ↦ P(θ; args) v`;
* in-memory stacked arrays, [`Batched`][gradtx.curvature.Batched]`(x, y, batch_size=b)`: a plain
  traceable function that sweeps the batches with `lax.scan` (one trace of `P`, any `N`);
* any other iterable of batches: a [`StreamingOperator`][gradtx.curvature.StreamingOperator],
  applied on the host by looping over the data. The per-batch product is one `jax.jit`-compiled
  function, compiled once per batch shape and reused for every batch, every product and every
  later call with the same loss; only one or two batches are alive at a time. A batch of a
  new shape (typically a short last batch) compiles the step once more, then it is cached too;
  padding it is not done, since a general loss cannot be told to ignore padded examples.

Accepted streams (`batches=`):

* a list or tuple of batches (each a tuple of the loss's arguments, or one argument);
* a **re-iterable loader** — any object whose `iter()` starts a fresh pass (a `tf.data.Dataset`,
  a `grain` `DataLoader`, a PyTorch `DataLoader` yielding numpy arrays, a custom class with
  `__iter__`); batches may hold numpy or JAX arrays;
* a **generator factory** — a zero-argument callable returning a fresh iterator (e.g. a
  generator function); it is called once per pass, i.e. once per operator product;
* a **one-shot iterator** (a generator object, `iter(list)`): it cannot be replayed, so it is
  read once into host memory (a list) and replayed from there. Memory then grows with the data;
  pass a factory (`batches=lambda: make_batches()`) to keep one batch in memory at a time.

Estimators iterate with [`krylov_loop`][gradtx.curvature.krylov_loop] /
[`krylov_while`][gradtx.curvature.krylov_while]: inside `lax.fori_loop`/`lax.while_loop` for a
traceable operator (one compiled program), or as a host loop of small compiled steps around the
streaming product (`mv` must then not be wrapped in `jax.jit`).

References:
    Yao, Gholami, Keutzer & Mahoney, *PyHessian: Neural networks through the lens of the Hessian*,
    IEEE BigData 2020 (data-loader Hessian-vector products). Dangel et al., *curvlinops*
    (`CurvatureLinearOperator` over a data loader), 2023.
"""

import functools
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradtx.curvature.data import (
    Batched,
    as_args,
    batch_size,
    combine_data,
    is_stream,
    partition_data,
    static_callable,
)
from gradtx.curvature.krylov import krylov_loop, krylov_while

__all__ = [
    "HessianProduct",
    "LossGradient",
    "StreamingOperator",
    "batch_stream",
    "data_operator",
    "is_streaming",
    "krylov_loop",
    "krylov_while",
    "sized_batches",
    "stream_mean",
    "streamed_gradient",
    "streamed_hessian",
]


class HessianProduct:
    """The per-batch Hessian-vector product `(params, v, *batch) ↦ ∇²L(params; batch) v` of a loss.

    Forward-over-reverse (`jax.jvp` of `jax.grad`). Two instances for the same loss are equal
    (and hash alike), so compiled streaming steps are reused across calls. Use it as the
    `product` of [`data_operator`][gradtx.curvature.data_operator].
    """

    __slots__ = ("loss",)

    def __init__(self, loss: Callable[..., Any]):
        self.loss = loss

    def __call__(self, params: Any, v: Any, *batch: Any) -> Any:
        v = jax.tree.map(lambda p, x: x.astype(jnp.result_type(p)), params, v)
        return jax.jvp(lambda p: jax.grad(self.loss)(p, *batch), (params,), (v,))[1]

    def __hash__(self) -> int:
        return hash((HessianProduct, self.loss))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HessianProduct) and other.loss == self.loss


class LossGradient:
    """`(params, *batch) ↦ ∇L(params; batch)`, hashed by the loss (a `stream_mean` function)."""

    __slots__ = ("loss",)

    def __init__(self, loss: Callable[..., Any]):
        self.loss = loss

    def __call__(self, params: Any, *batch: Any) -> Any:
        return jax.grad(self.loss)(params, *batch)

    def __hash__(self) -> int:
        return hash((LossGradient, self.loss))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LossGradient) and other.loss == self.loss


def streamed_hessian(owner: str, loss: Callable[..., Any], params: Any, args: tuple[Any, ...], batches: Any) -> Any:
    """The Hessian as a [`StreamingOperator`][gradtx.curvature.StreamingOperator] when `batches=` is a
    stream (a list, loader, generator factory, iterator), else None (then bind the data in a jitted core).

    Raises:
        ValueError: both `args` and a stream given.
    """
    if not is_stream(batches):
        return None
    loss = static_callable(owner, "loss", loss)
    return data_operator(owner, HessianProduct(loss), params, args, batches)


def streamed_gradient(owner: str, loss: Callable[..., Any], params: Any, batches: Any) -> Any:
    """`Σ_i (n_i/N) ∇L(θ; B_i)`, one pass over a stream (a pytree like `params`)."""
    loss = static_callable(owner, "loss", loss)
    return stream_mean(owner, LossGradient(loss), params, batch_stream(owner, batches), params)


def _is_traced(tree: Any) -> bool:
    return any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(tree))


def batch_stream(owner: str, batches: Any) -> Callable[[], Iterator[Any]]:
    """Normalize a `batches=` stream to a factory: a zero-argument callable returning a fresh iterator.

    Args:
        owner: the calling function's name, for error messages.
        batches: a list/tuple of batches, a re-iterable loader, a generator factory or a one-shot
            iterator (read once into host memory), see the module docstring.

    Raises:
        TypeError: `batches` is an array, a string or mapping, or neither iterable nor callable.
    """
    if isinstance(batches, Batched):
        raise TypeError(f"{owner}: a Batched data set is swept in memory, not streamed")
    if isinstance(batches, (jax.Array, np.ndarray, str, bytes, Mapping)):
        raise TypeError(
            f"{owner}: batches must be an iterable of batches (a list, a loader, a generator factory), each a "
            f"tuple of the loss's arguments; got {type(batches).__name__}. For stacked arrays use "
            f"batches=Batched(x, y, batch_size=...)"
        )
    if isinstance(batches, Iterator):
        cached = list(batches)  # a one-shot iterator: replay it from host memory
        return lambda: iter(cached)
    if isinstance(batches, Iterable):
        return lambda: iter(batches)
    if callable(batches):
        factory = batches

        def fresh() -> Iterator[Any]:
            it = factory()
            if isinstance(it, (jax.Array, np.ndarray, str, bytes, Mapping)) or not isinstance(it, Iterable):
                raise TypeError(
                    f"{owner}: a batches factory must return an iterator (or a re-iterable) of batches, "
                    f"got {type(it).__name__} from {factory!r}"
                )
            return iter(it)

        return fresh
    raise TypeError(
        f"{owner}: batches must be an iterable of batches, a re-iterable loader or a zero-argument factory "
        f"returning an iterator; got {type(batches).__name__}"
    )


def sized_batches(owner: str, stream: Callable[[], Iterator[Any]]) -> Iterator[tuple[tuple[Any, ...], int]]:
    """One pass over `stream`: each batch as `(args, n)`, its loss arguments and its number of examples.

    A batch whose size cannot be read raises a ValueError naming `owner` and the batch's index. The
    generator holds no batch while its consumer loads the next one.
    """
    for i, batch in enumerate(stream()):
        args = as_args(batch)
        del batch
        try:
            n = batch_size(args)
        except ValueError as err:
            raise ValueError(f"{owner}: batch {i}: {err}") from None
        item = (args, n)
        del args
        yield item
        del item


def _acc_dtype(dtype: Any) -> Any:
    dtype = jnp.dtype(dtype)
    return jnp.promote_types(dtype, jnp.float32) if jnp.issubdtype(dtype, jnp.floating) else dtype


@functools.partial(jax.jit, static_argnames=("fn", "static"))
def _step(fn: Callable[..., Any], static: Any, acc: Any, count: Any, operands: Any, arrays: Any) -> Any:
    """`acc + n_i · fn(operands, *B_i)`: the one compiled per-batch function (cached on fn, data layout, shapes)."""
    out = fn(operands, *combine_data(arrays, static))
    return jax.tree.map(lambda a, o: a + count * o.astype(a.dtype), acc, out)


@functools.partial(jax.jit, static_argnames=("dtypes",))
def _finish(acc: Any, total: Any, dtypes: tuple[Any, ...]) -> Any:
    leaves, treedef = jax.tree_util.tree_flatten(acc)
    return jax.tree_util.tree_unflatten(treedef, [(a / total).astype(d) for a, d in zip(leaves, dtypes)])


def _shape_dtype(x: Any) -> tuple[tuple[int, ...], Any]:
    if isinstance(x, jax.ShapeDtypeStruct):
        return tuple(x.shape), jnp.dtype(x.dtype)
    return tuple(np.shape(x)), jnp.dtype(jnp.result_type(x))


def stream_mean(owner: str, fn: Callable[..., Any], operands: Any, stream: Callable[[], Iterator[Any]], like: Any) -> Any:
    """One pass over the stream: `Σ_i (n_i/N) fn(operands, *B_i)`, accumulated on the device.

    Args:
        owner: the calling function's name, for error messages.
        fn: `fn(operands, *batch_args)`, traceable, returning a pytree shaped like `like`; hashable
            (it is a static `jax.jit` argument: pass the same object to reuse the compiled step).
        operands: pytree of arrays passed unchanged to every batch (e.g. `(params, v)`).
        stream: a factory from [`batch_stream`][gradtx.curvature.batch_stream].
        like: a pytree of arrays (or `ShapeDtypeStruct`s) with the output's structure, shapes and dtypes.

    Raises:
        ValueError: the stream yields no batch, a batch has no leading axis, or all are empty.
    """
    specs = [_shape_dtype(t) for t in jax.tree_util.tree_leaves(like)]
    acc = jax.tree_util.tree_unflatten(
        jax.tree_util.tree_structure(like), [jnp.zeros(shape, _acc_dtype(dtype)) for shape, dtype in specs]
    )
    traced = _is_traced(operands)
    total = 0
    count = 0
    for args, n in sized_batches(owner, stream):
        arrays, static = partition_data(args)
        # NumPy batches become device arrays first: jit caches NumPy and JAX inputs of one shape
        # separately, and a loader mixing them would compile the step twice
        arrays = [jnp.asarray(a) if isinstance(a, (np.ndarray, np.generic)) else a for a in arrays]
        prev = acc
        acc = _step(fn, static, acc, n, operands, arrays)
        if not traced and not _is_traced(arrays) and count:
            jax.block_until_ready(prev)  # at most two batches in flight: memory stays one batch's
        total += n
        count += 1
        del args, arrays
    if count == 0:
        raise ValueError(f"{owner}: batches is empty (the stream yielded no batch); give at least one batch")
    if total <= 0:
        raise ValueError(f"{owner}: every batch is empty (total size 0)")
    return _finish(acc, total, tuple(dtype for _, dtype in specs))


class _Apply:
    """`(params, v), *batch ↦ product(params, v, *batch)`, hashed by the product."""

    __slots__ = ("product",)

    def __init__(self, product: Callable[..., Any]):
        self.product = product

    def __call__(self, operands: Any, *batch: Any) -> Any:
        params, v = operands
        return self.product(params, v, *batch)

    def __hash__(self) -> int:
        return hash((type(self), self.product))

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.product == self.product


class _ApplyMany(_Apply):
    """The product vmapped over a leading axis of `v` (all probes in one pass over the data)."""

    __slots__ = ()

    def __call__(self, operands: Any, *batch: Any) -> Any:
        params, vs = operands
        return jax.vmap(lambda v: self.product(params, v, *batch))(vs)


class _FlatProduct:
    """`product` seen on flat vectors: `x ↦ ravel(product(params, unravel(x), *batch))` in `dtype`."""

    __slots__ = ("dtype", "leaf_dtypes", "product", "shapes", "treedef")

    def __init__(self, product: Callable[..., Any], template: Any, dtype: Any):
        leaves, self.treedef = jax.tree_util.tree_flatten(template)
        self.shapes = tuple(tuple(np.shape(x)) for x in leaves)
        self.leaf_dtypes = tuple(jnp.dtype(jnp.result_type(x)) for x in leaves)
        self.product = product
        self.dtype = jnp.dtype(dtype)

    def _key(self) -> tuple[Any, ...]:
        return (self.product, self.treedef, self.shapes, self.leaf_dtypes, self.dtype)

    def __hash__(self) -> int:
        return hash(self._key())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _FlatProduct) and self._key() == other._key()

    def __call__(self, params: Any, x: jax.Array, *batch: Any) -> jax.Array:
        sizes = [int(np.prod(s)) for s in self.shapes]
        offsets = np.cumsum([0, *sizes])
        leaves = [x[o:o + s].reshape(shape).astype(dt) for o, s, shape, dt in zip(offsets, sizes, self.shapes, self.leaf_dtypes)]
        out = self.product(params, jax.tree_util.tree_unflatten(self.treedef, leaves), *batch)
        return jnp.concatenate([jnp.ravel(y).astype(self.dtype) for y in jax.tree_util.tree_leaves(out)])


class StreamingOperator:
    """A symmetric linear map `v ↦ Σ_i (n_i/N) P(θ; B_i) v` applied by streaming the data on the host.

    Built by [`data_operator`][gradtx.curvature.data_operator] for an iterable `batches=`. Each
    application makes one pass over the data; each batch's product is one call of a `jax.jit`
    function compiled once per batch shape (and shared by every operator built with the same
    `product`), so the compile time does not grow with the number of batches, and only the current
    batch (and the one being loaded) is held in memory. Pass it to any estimator
    (`operator_eigsh`, `operator_trace`, `operator_spectral_density`, ...); they detect it with
    [`is_streaming`][gradtx.curvature.is_streaming] and run their iteration as a host loop of
    compiled steps. Do not wrap a call to it in `jax.jit` (it still works under a trace, but then
    unrolls the loop over the batches).

    Attributes:
        template: a pytree shaped like the vectors (e.g. the params).
        streaming: always True.
        product: the per-batch product `product(params, v, *batch_args)`.
        params: the point θ passed to every product.
    """

    streaming = True

    def __init__(self, owner: str, product: Callable[..., Any], params: Any, stream: Callable[[], Iterator[Any]],
                 template: Any = None):
        self.owner = owner
        self.product = static_callable(owner, "product", product)
        self.params = params
        self.stream = stream
        self.template = params if template is None else template

    def __call__(self, v: Any) -> Any:
        """`A v` for one vector `v` shaped like `template` (one pass over the data)."""
        return stream_mean(self.owner, _Apply(self.product), (self.params, v), self.stream, self.template)

    def matmat(self, vs: Any) -> Any:
        """`A v_j` for `p` vectors at once: `vs` is a pytree like `template` whose leaves have a
        leading axis of length `p`; one pass over the data, the product vmapped per batch."""
        like = jax.tree.map(lambda t, x: jax.ShapeDtypeStruct(np.shape(x), _shape_dtype(t)[1]), self.template, vs)
        return stream_mean(self.owner, _ApplyMany(self.product), (self.params, vs), self.stream, like)

    def flat(self, dtype: Any = None) -> "StreamingOperator":
        """The same operator on flat vectors (coordinates of `ravel_pytree(template)`), in `dtype`
        (default: the template's floating dtype promoted to at least float32)."""
        leaves = jax.tree_util.tree_leaves(self.template)
        if dtype is None:
            dtype = _acc_dtype(jnp.result_type(*leaves))
        n = int(sum(np.size(x) for x in leaves))
        product = _FlatProduct(self.product, self.template, dtype)
        return StreamingOperator(self.owner, product, self.params, self.stream,
                                 template=jax.ShapeDtypeStruct((n,), jnp.dtype(dtype)))

    def __repr__(self) -> str:
        return f"StreamingOperator(owner={self.owner!r}, product={self.product!r})"


def is_streaming(matvec: Any) -> bool:
    """True when `matvec` streams data on the host (a [`StreamingOperator`][gradtx.curvature.StreamingOperator]);
    such an operator must not be called inside `jax.jit`, and estimators iterate around it on the host."""
    return getattr(matvec, "streaming", False) is True


def data_operator(owner: str, product: Callable[..., Any], params: Any, args: tuple[Any, ...], batches: Any) -> Callable[[Any], Any]:
    """The data-averaged linear map `v ↦ Σ_i (n_i/N) product(params, v, *B_i)`.

    Args:
        owner: the calling function's name, for error messages.
        product: `product(params, v, *batch_args)`, a traceable per-batch linear map in `v`
            returning a pytree shaped like `v` (e.g. a Hessian-vector product of the loss on that
            batch). Pass the same (hashable) object across calls to reuse compiled code.
        params: the point θ.
        args: one batch (the estimator's `*args`), or `()` with `batches`.
        batches: None (use `args`), a [`Batched`][gradtx.curvature.Batched] in-memory data set,
            or a stream (list, loader, generator factory, one-shot iterator; see the module
            docstring).

    Returns:
        A plain traceable callable for one batch or `Batched` data; a
        [`StreamingOperator`][gradtx.curvature.StreamingOperator] for a stream.

    Raises:
        ValueError: both `args` and `batches` given.
        TypeError: `product` not callable, or `batches` not a stream.
    """
    if not callable(product):
        raise TypeError(f"{owner}: product must be callable, got {type(product).__name__}")
    if batches is None:
        return lambda v: product(params, v, *args)
    if args:
        raise ValueError(
            f"{owner}: give either one batch as positional arguments or batches=..., not both "
            f"(got {len(args)} positional argument(s) and batches)"
        )
    if isinstance(batches, Batched):
        stacked = batches
        return lambda v: stacked.mean(lambda *b: product(params, v, *b))
    return StreamingOperator(owner, product, params, batch_stream(owner, batches))
