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
    "safe_int32_increment",
    "safe_norm",
    "safe_root_mean_squares",
    "stat_dtype",
    "tree_as_arrays",
    "tree_cast",
    "tree_zeros_like",
    "update_infinity_moment",
    "update_moment",
    "update_moment_per_elem_norm",
]

def safe_increment(count: jax.typing.ArrayLike) -> jax.Array:
    """`count + 1` that saturates at the largest value of `count`'s dtype instead of wrapping.

    Any integer or floating dtype is kept (int32 step counters saturate at $2^{31}-1$ where a
    plain `+ 1` would wrap to $-2^{31}$). The numbers equal optax's `safe_increment`.

    Args:
        count: an integer or floating scalar (or array) counter.

    Returns:
        `count + 1` elementwise, or the dtype's maximum where `count` already holds it.

    Raises:
        ValueError: `count` has a dtype that is neither integer nor floating (bool, complex);
            a ValueError, as optax raises.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> int(gradtx.safe_increment(jnp.int32(2**31 - 1)))
        2147483647
    """
    dtype = jnp.asarray(count).dtype
    top: Any
    if jnp.issubdtype(dtype, jnp.integer):
        top = jnp.iinfo(dtype).max
    elif jnp.issubdtype(dtype, jnp.floating):
        top = jnp.finfo(dtype).max
    else:
        raise ValueError(f"safe_increment: count must have an integer or floating dtype, got {dtype}")
    top_value = jnp.array(top, dtype)
    return jnp.where(count < top_value, count + jnp.array(1, dtype), top_value)


safe_int32_increment = safe_increment
"""Alias of [`safe_increment`][gradtx.numerics.safe_increment] (optax's older name)."""


def safe_norm(
    x: jax.typing.ArrayLike,
    min_norm: jax.typing.ArrayLike,
    ord: int | float | str | None = None,  # numpy's and optax's name (shadows the builtin)
    axis: int | tuple[int, ...] | None = None,
    keepdims: bool = False,
) -> jax.Array:
    r"""`max(‖x‖, min_norm)` whose gradient is finite (zero) where `‖x‖ <= min_norm`.

    $$\operatorname{safe\_norm}(x) = \begin{cases} \|x\| & \|x\| > m \\ m & \|x\| \le m \end{cases}$$

    `jnp.maximum(jnp.linalg.norm(x), min_norm)` has a NaN gradient at $x = 0$: the norm's
    derivative $x/\|x\|$ is evaluated there even though `maximum` discards it. Here the norm is
    taken of `x` with the small entries replaced by ones, so both branches stay finite; the value
    and, where $\|x\| > m$, the gradient are those of the plain norm. Numbers equal optax's.

    Args:
        x: the array.
        min_norm: the lower bound $m$ of the result (a scalar, or an array broadcasting against
            the norm).
        ord: order of the norm, as in `jnp.linalg.norm` (`None`, a non-zero integer, `inf`,
            `-inf`, `"fro"`, `"nuc"`); default None (2-norm of a vector, Frobenius of a matrix).
        axis: `None` (the whole array when 1-D or 2-D), an axis, or a pair of axes holding
            matrices; default None.
        keepdims: keep the reduced axes with size one; default False.

    Returns:
        The bounded norm.

    Example:
        >>> import jax, jax.numpy as jnp, gradtx
        >>> jax.grad(lambda v: gradtx.safe_norm(v, 0.0))(jnp.zeros(3))
        Array([0., 0., 0.], dtype=float32)
    """
    norm = jnp.linalg.norm(x, ord=ord, axis=axis, keepdims=True)
    small = norm <= min_norm
    x_safe = jnp.where(small, jnp.ones_like(x), x)
    if not keepdims:
        norm = jnp.squeeze(norm, axis=axis)
    return jnp.where(norm <= min_norm, min_norm, jnp.linalg.norm(x_safe, ord=ord, axis=axis, keepdims=keepdims))


def safe_root_mean_squares(x: jax.typing.ArrayLike, min_rms: jax.typing.ArrayLike) -> jax.Array:
    r"""`max(sqrt(mean(|x|²)), min_rms)` whose gradient is finite (zero) where the RMS is `<= min_rms`.

    $$\operatorname{rms}(x) = \max\Big(\sqrt{\tfrac1n \textstyle\sum_i |x_i|^2},\ m\Big)$$

    As in [`safe_norm`][gradtx.numerics.safe_norm], the square root is taken of a stand-in
    (all ones) wherever the bound wins, so $x = 0$ has gradient 0 instead of NaN. Complex `x`
    is measured by modulus. Numbers equal optax's.

    Args:
        x: the array (real or complex).
        min_rms: the lower bound $m$ of the result.

    Returns:
        A scalar: the bounded root mean square of all entries of `x`.
    """
    x = jnp.asarray(x)
    rms = jnp.sqrt(jnp.mean(abs_sq(x)))
    small = rms <= min_rms
    x_safe = jnp.where(small, jnp.ones_like(x), x)
    return jnp.where(small, min_rms, jnp.sqrt(jnp.mean(abs_sq(x_safe))))


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


def _leafwise(fn: Any, updates: Any, moments: Any) -> Any:
    """`fn(g, m)` over matching leaves; a `None` update leaf stays `None`."""
    return jax.tree.map(lambda g, m: None if g is None else fn(g, m), updates, moments, is_leaf=lambda x: x is None)


def update_moment(updates: Any, moments: Any, decay: jax.typing.ArrayLike, order: int) -> Any:
    r"""Exponential moving average of the `order`-th power of the updates.

    $$m \leftarrow (1-\beta)\, g^{k} + \beta\, m$$

    with $\beta$ = `decay` and $k$ = `order`, leaf by leaf (`None` update leaves stay `None`).
    The power is taken as is, so a complex $g$ gives a complex $g^k$; for the real moment of a
    complex gradient use [`update_moment_per_elem_norm`][gradtx.numerics.update_moment_per_elem_norm].
    Numbers equal optax's `update_moment`.

    Args:
        updates: the gradient (or update) tree $g$.
        moments: the previous moments $m$, a tree of the same structure.
        decay: $\beta$, usually in $[0, 1)$.
        order: $k$, the power (1 for a first moment).

    Returns:
        The new moments.
    """
    return _leafwise(lambda g, m: (1 - decay) * (g**order) + decay * m, updates, moments)


def update_moment_per_elem_norm(updates: Any, moments: Any, decay: jax.typing.ArrayLike, order: int) -> Any:
    r"""Exponential moving average of $|g|^k$, the `order`-th power of each element's modulus.

    $$m \leftarrow (1-\beta)\, |g|^{k} + \beta\, m$$

    For real $g$ this is $g^k$ (no absolute value is taken, as in optax); for complex $g$ it is
    $(\operatorname{Re}(\bar g g))^{k/2}$, a real moment. Numbers equal optax's
    `update_moment_per_elem_norm`.

    Args:
        updates: the gradient tree $g$ (`None` leaves stay `None`).
        moments: the previous moments $m$.
        decay: $\beta$.
        order: $k$.

    Returns:
        The new moments.
    """

    def power(g: Any) -> Any:
        if not jnp.iscomplexobj(g):
            return g**order
        half = order / 2
        # an integral exponent is kept as a Python int: JAX lowers int and float powers differently
        return abs_sq(g) ** (int(half) if float(half).is_integer() else half)

    return _leafwise(lambda g, m: (1 - decay) * power(g) + decay * m, updates, moments)


def update_infinity_moment(updates: Any, moments: Any, decay: jax.typing.ArrayLike, eps: jax.typing.ArrayLike) -> Any:
    r"""Exponentially weighted infinity norm (Adamax's second statistic).

    $$u \leftarrow \max\big(|g| + \epsilon,\ \beta\, u\big)$$

    leaf by leaf (`None` update leaves stay `None`). Numbers equal optax's
    `update_infinity_moment`.

    Args:
        updates: the gradient tree $g$.
        moments: the previous statistic $u$.
        decay: $\beta$.
        eps: $\epsilon$, added to $|g|$ so that $u > 0$.

    Returns:
        The new statistic.

    References:
        Kingma and Ba, [Adam: A Method for Stochastic Optimization](https://arxiv.org/abs/1412.6980),
        section 7 (AdaMax), 2014.
    """
    return _leafwise(lambda g, u: jnp.maximum(jnp.abs(g) + eps, decay * u), updates, moments)


@functools.partial(jax.jit, inline=True)
def bias_correction(moment: Any, decay: jax.typing.ArrayLike, count: jax.typing.ArrayLike) -> Any:
    r"""Adam's bias correction: every moment divided by $1 - \beta^t$.

    $$\hat m = \frac{m}{1 - \beta^{t}}$$

    `count` is $t$, the step count after incrementing (1 at the first update). The divisor is
    computed in the precision of `decay` and `count` (float32 for a Python `decay` and an int32
    count, so that $\beta^t$ does not round to 1 in bfloat16), then cast to each moment's dtype
    for the division, so bfloat16 moments stay bfloat16. Numbers equal optax's `bias_correction`.

    Args:
        moment: the moment tree $m$ (optax's argument name).
        decay: $\beta$, the moments' decay rate.
        count: $t$, the (incremented) step count.

    Returns:
        The corrected moments.
    """
    divisor = jnp.asarray(1 - decay**count)
    return jax.tree.map(lambda m: m / divisor.astype(m.dtype), moment)


def global_norm(updates: Any) -> jax.Array:
    r"""The Euclidean norm of all entries of a tree: $\sqrt{\sum_{\text{leaves}} \sum_i |x_i|^2}$.

    Complex leaves are measured by modulus. Squares and sums are computed in each leaf's own
    dtype, then added leaf after leaf, exactly as optax's `global_norm` (and `optax.tree.norm`):
    the numbers are bit-identical to optax's, for bfloat16 leaves too (use float32 leaves for a
    float32-accurate norm of a bfloat16 tree). An empty tree has norm 0.

    Args:
        updates: a tree of arrays (or numbers); optax's argument name.

    Returns:
        A scalar.
    """
    squares = [jnp.sum(jnp.square(jnp.real(x)) + jnp.square(jnp.imag(x))) for x in jax.tree.leaves(updates)]
    return jnp.array(jnp.sqrt(sum(squares)))


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
