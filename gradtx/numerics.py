"""Numerical helpers shared by transformations: counters, moments, norms, bias correction."""

import functools
from typing import Any

import jax
import jax.numpy as jnp

__all__ = [
    "abs_sq",
    "as_array",
    "bias_correction",
    "cast",
    "compute_dtype",
    "debias_factor",
    "float_updates",
    "full_like_param",
    "global_norm",
    "safe_increment",
    "stat_dtype",
    "tree_as_arrays",
    "tree_cast",
    "tree_zeros_like",
    "update_moment",
    "update_moment_per_elem_norm",
]

_INT32_MAX = jnp.iinfo(jnp.int32).max


def safe_increment(count: jax.Array) -> jax.Array:
    """`count + 1` for an int32 step counter, saturating at 2**31 - 1 instead of wrapping."""
    count = jnp.asarray(count, jnp.int32)
    return jnp.where(count < _INT32_MAX, count + 1, _INT32_MAX).astype(jnp.int32)


def full_like_param(x: Any, value: Any, dtype: Any = None) -> jax.Array:
    """An array shaped like `x` filled with `value`, placed (sharded) like `x`.

    `jnp.full(x.shape, ...)` has no data dependence on `x`, so under `jax.jit` XLA places it on
    one device even when `x` is sharded over a mesh. Selecting the constant through a predicate
    that reads `x` (`where(x == x, value, value)`, equal to `value` for every `x`, NaN included)
    lets sharding propagation give the result the sharding of `x`; it costs one pass at `init`.
    """
    dtype = dtype or jnp.result_type(x)
    if not isinstance(x, jax.Array):
        return jnp.full(jnp.shape(x), value, dtype)
    fill = jnp.asarray(value, dtype)
    return jnp.where(x == x, fill, fill)


def as_array(x: Any) -> Any:
    """A Python scalar (`bool`, `int`, `float`, `complex`) as a JAX scalar; anything else unchanged.

    The scalar keeps JAX's weak type, exactly as when it is passed through `jax.jit`, so eager
    and jitted updates see the same leaf (a Python `1.5` becomes a weakly typed float32 `()`).
    """
    if isinstance(x, (bool, int, float, complex)):
        return jnp.asarray(x)
    return x


def tree_as_arrays(tree: Any) -> Any:
    """[`as_array`][gradtx.numerics.as_array] on every leaf (`None` leaves stay `None`)."""
    return jax.tree.map(as_array, tree)


def float_updates(tree: Any) -> Any:
    """The updates tree made ready for floating-point arithmetic.

    Python scalars become JAX scalars ([`as_array`][gradtx.numerics.as_array]); integer and
    boolean leaves are promoted to the floating dtype JAX gives them next to a Python float
    (float32, or float64 with `jax_enable_x64`), as in optax's `learning_rate * g`, so that
    no transformation rounds an update back to an integer. Float and complex leaves, and `None`
    leaves, are returned unchanged.
    """

    def one(x: Any) -> Any:
        x = as_array(x)
        dtype = jnp.result_type(x)
        if jnp.issubdtype(dtype, jnp.inexact):
            return x
        return jnp.asarray(x).astype(jnp.result_type(dtype, float))

    return jax.tree.map(one, tree)


def tree_zeros_like(tree: Any, dtype: Any = None) -> Any:
    """Zeros shaped (and sharded) like every leaf of `tree` (in `dtype` when given)."""
    return jax.tree.map(lambda x: full_like_param(x, 0, dtype), tree)


def tree_cast(tree: Any, dtype: Any) -> Any:
    """Cast every leaf of `tree` to `dtype` (no-op when `dtype` is None)."""
    if dtype is None:
        return tree
    return jax.tree.map(lambda x: jnp.asarray(x).astype(dtype), tree)


def update_moment(updates: Any, moments: Any, decay: float, order: int) -> Any:
    """Exponential moving average of the `order`-th power: `m ← decay·m + (1-decay)·g^order`.

    For complex gradients the second moment uses `|g|^2`.
    """

    def one(g, m):
        if order == 1:
            value = g
        elif order == 2 and jnp.iscomplexobj(g):
            value = jnp.real(jnp.conj(g) * g)
        else:
            value = g**order
        return (1 - decay) * value.astype(m.dtype) + decay * m if m is not None else None

    return jax.tree.map(one, updates, moments, is_leaf=lambda x: x is None)


def update_moment_per_elem_norm(updates: Any, moments: Any, decay: float, order: int) -> Any:
    """EMA of `|g|^order` (the real, non-negative moment used by second-moment estimates)."""

    def one(g, m):
        value = jnp.abs(g) ** order if jnp.iscomplexobj(g) else g**order
        return (1 - decay) * value.astype(m.dtype) + decay * m

    return jax.tree.map(one, updates, moments)


def bias_correction(moments: Any, decay: float, count: jax.Array) -> Any:
    """Divide by `1 - decay**count` (Adam's bias correction; `count` is the incremented step)."""
    correction = 1 - jnp.asarray(decay, jnp.float32) ** count.astype(jnp.float32)
    return jax.tree.map(lambda m: (m / correction.astype(m.dtype)).astype(m.dtype), moments)


def global_norm(tree: Any) -> jax.Array:
    """`sqrt(sum_i ||x_i||^2)` over every leaf (complex leaves by modulus), in float32 or wider."""
    leaves = jax.tree.leaves(tree)
    if not leaves:
        return jnp.zeros((), jnp.float32)
    squares = [jnp.sum(jnp.real(jnp.conj(x) * x).astype(jnp.promote_types(jnp.result_type(x), jnp.float32))) for x in leaves]
    return jnp.sqrt(sum(squares))


def abs_sq(x: jax.Array, dtype: Any = None) -> jax.Array:
    """`|x|^2` elementwise (real for complex `x`), computed in `dtype` when given.

    For real `x` this is `x * x`; for complex `x` it is `Re(conj(x) * x)`.
    """
    x = jnp.asarray(x)
    if jnp.iscomplexobj(x):
        value = jnp.real(jnp.conj(x) * x)
        return value if dtype is None else cast(value, dtype)
    if dtype is not None:
        x = cast(x, dtype)
    return x * x


def stat_dtype(x: Any) -> Any:
    """Dtype for non-negative statistics (second moments, sums of squares) of leaf `x`.

    The real dtype of `x`, widened to at least float32: float16 / bfloat16 leaves get float32
    statistics (so tiny `eps` values and squares of small or large gradients do not underflow or
    overflow), complex64 leaves get float32, float64 / complex128 leaves get float64.
    """
    dtype = x.dtype if hasattr(x, "dtype") else jnp.result_type(x)
    if not jnp.issubdtype(dtype, jnp.inexact):
        return jnp.dtype(jnp.float32)
    return jnp.promote_types(jnp.finfo(dtype).dtype, jnp.float32)


def compute_dtype(*dtypes: Any) -> Any:
    """The promotion of `dtypes` with float32: the dtype used for divisions and square roots."""
    result = jnp.dtype(jnp.float32)
    for dtype in dtypes:
        result = jnp.promote_types(result, dtype)
    return result


def cast(x: jax.Array, dtype: Any) -> jax.Array:
    """`x.astype(dtype)`, skipped when `x` already has that dtype (cheaper when run eagerly)."""
    if getattr(x, "dtype", None) == dtype and isinstance(x, jax.Array):
        return x
    return jnp.asarray(x).astype(dtype)


@functools.partial(jax.jit, inline=True)
def debias_factor(decay: Any, count: jax.Array) -> jax.Array:
    """`1 - decay**count` for an int32 step counter: the divisor of Adam-style bias correction.

    Jitted (and inlined) so that the power is never specialised on a concrete count: eagerly,
    `decay ** count` would compile a new kernel for every step. The numbers equal optax's.
    """
    return 1 - decay**count
