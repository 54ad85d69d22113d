r"""Clipping of updates: elementwise, per-leaf norm, global norm, block RMS, unit-wise
adaptive clipping (AGC), and NaN removal."""

import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx import _validation as _v
from gradtx.base import EmptyState, GradientTransformation, describe
from gradtx.numerics import abs_sq, cast, compute_dtype, float_updates, stat_dtype

__all__ = [
    "AdaptiveGradClipState",
    "ClipByGlobalNormState",
    "ClipState",
    "ZeroNansState",
    "adaptive_grad_clip",
    "clip",
    "clip_by_block_rms",
    "clip_by_global_norm",
    "clip_by_norm",
    "unitwise_clip",
    "unitwise_norm",
    "zero_nans",
]

ClipState = EmptyState
"""State of [`clip`][gradtx.clip]: `EmptyState` (optax's name for it)."""

ClipByGlobalNormState = EmptyState
"""State of [`clip_by_global_norm`][gradtx.clip_by_global_norm]: `EmptyState` (optax's name)."""

AdaptiveGradClipState = EmptyState
"""State of [`adaptive_grad_clip`][gradtx.adaptive_grad_clip]: `EmptyState` (optax's name)."""


class ZeroNansState(NamedTuple):
    """State of [`zero_nans`][gradtx.zero_nans]: per leaf, whether the last update held a NaN."""

    found_nan: Any


def _empty_init(params: Any) -> EmptyState:
    del params
    return EmptyState()


@describe
def clip(max_delta: float) -> GradientTransformation:
    r"""Clip every coordinate to $[-\delta, \delta]$: $u = \min(\max(g, -\delta), \delta)$.

    Args:
        max_delta: the bound $\delta$ (required), >= 0.

    Returns:
        A stateless `GradientTransformation`.

    References:
        Pascanu, Mikolov & Bengio, *On the difficulty of training Recurrent Neural Networks*,
        ICML 2013.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.clip(1.0)
        >>> tx.update(jnp.array([-3.0, 0.5, 2.0]), tx.init(None))[0]
        Array([-1. ,  0.5,  1. ], dtype=float32)
    """
    _v.check_real("clip", "max_delta", max_delta, low=0.0)

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        return jax.tree.map(lambda g: jnp.clip(g, -max_delta, max_delta), updates), state

    return GradientTransformation(_empty_init, update)


def _leaf_norm(g: jax.Array) -> jax.Array:
    """L2 norm of all the elements of `g`, in at least float32."""
    return jnp.sqrt(jnp.sum(abs_sq(g, stat_dtype(g))))


def clip_by_norm_leaf(g: jax.Array, max_norm: Any) -> jax.Array:
    """Rescale one leaf so that its L2 norm is at most `max_norm` (unchanged if already so)."""
    norm = _leaf_norm(g)
    cdt = compute_dtype(g.dtype, norm.dtype)
    keep = norm <= max_norm
    safe = jnp.where(keep, 1, norm)
    scaled = (cast(g, cdt) / cast(safe, cdt)) * max_norm
    return jnp.where(keep, g, cast(scaled, g.dtype))


@describe
def clip_by_norm(max_norm: float) -> GradientTransformation:
    r"""Clip each leaf separately to an L2 norm of at most `max_norm`.

    For every leaf $g_i$: $u_i = g_i \cdot \min\!\big(1, \frac{c}{\|g_i\|_2}\big)$, where
    $\|g_i\|_2$ is the norm of all the leaf's elements. (optax has no per-leaf version; compare
    [`clip_by_global_norm`][gradtx.clip_by_global_norm], which uses one norm for the tree.)

    Args:
        max_norm: the bound $c$ (required), > 0.

    Returns:
        A stateless `GradientTransformation`.

    References:
        Pascanu, Mikolov & Bengio, *On the difficulty of training Recurrent Neural Networks*,
        ICML 2013.
    """
    _v.check_real("clip_by_norm", "max_norm", max_norm, low=0.0, low_inclusive=False)

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        return jax.tree.map(lambda g: clip_by_norm_leaf(g, max_norm), float_updates(updates)), state

    return GradientTransformation(_empty_init, update)


def _global_norm(tree: Any) -> jax.Array:
    leaves = jax.tree.leaves(tree)
    if not leaves:
        return jnp.zeros((), jnp.float32)
    total: Any = 0
    for g in leaves:
        total = total + jnp.sum(abs_sq(g, stat_dtype(g)))
    return jnp.sqrt(total)


@describe
def clip_by_global_norm(max_norm: float) -> GradientTransformation:
    r"""Rescale the whole tree so that its global L2 norm is at most `max_norm`.

    $$u = \begin{cases} g & \|g\|_2 < c \\ \dfrac{g}{\|g\|_2}\, c & \text{otherwise}\end{cases}
    \qquad \|g\|_2 = \sqrt{\textstyle\sum_i \|g_i\|_2^2}.$$

    The norm is accumulated in at least float32. An all-zero tree is returned unchanged, so
    `max_norm=0` with zero gradients gives zeros (optax gives NaN there); otherwise the numbers
    are optax's.

    Args:
        max_norm: the bound $c$ (required), >= 0.

    Returns:
        A stateless `GradientTransformation`.

    References:
        Pascanu, Mikolov & Bengio, *On the difficulty of training Recurrent Neural Networks*,
        ICML 2013.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.clip_by_global_norm(1.0)
        >>> tx.update({"a": jnp.array([3.0]), "b": jnp.array([4.0])}, tx.init(None))[0]["b"]
        Array([0.8], dtype=float32)
    """
    _v.check_real("clip_by_global_norm", "max_norm", max_norm, low=0.0)

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        updates = float_updates(updates)
        g_norm = _global_norm(updates)
        keep = jnp.logical_or(g_norm < max_norm, g_norm == 0)
        safe = jnp.where(keep, 1, g_norm)

        def leaf(g):
            cdt = compute_dtype(g.dtype, safe.dtype)
            scaled = ((cast(g, cdt) / cast(safe, cdt)) * max_norm).astype(g.dtype)
            return jnp.where(keep, g, scaled)

        return jax.tree.map(leaf, updates), state

    return GradientTransformation(_empty_init, update)


@describe
def zero_nans() -> GradientTransformation:
    r"""Replace NaN coordinates by 0: $u = g$ where $g$ is not NaN, else 0.

    The state records, per leaf, whether the last update held a NaN (a scalar bool).

    Returns:
        A `GradientTransformation` with state `ZeroNansState(found_nan)` (a tree shaped like the
        params with one bool per leaf).
    """

    def init(params):
        return ZeroNansState(found_nan=jax.tree.map(lambda _: jnp.zeros((), jnp.bool_), params))

    def update(updates, state, params=None, **extra_args):
        del params, extra_args, state
        found = jax.tree.map(lambda g: jnp.any(jnp.isnan(g)), updates)
        cleaned = jax.tree.map(lambda g: jnp.where(jnp.isnan(g), jnp.zeros_like(g), g), updates)
        return cleaned, ZeroNansState(found_nan=found)

    return GradientTransformation(init, update)


@describe
def clip_by_block_rms(threshold: float) -> GradientTransformation:
    r"""Rescale each leaf (block) so that its root-mean-square value is at most `threshold`.

    For every leaf $g_i$ with $n_i$ elements:

    $$u_i = \frac{g_i}{\max\!\big(1,\ \mathrm{rms}(g_i) / \tau\big)},\qquad
    \mathrm{rms}(g_i) = \sqrt{\tfrac{1}{n_i}\textstyle\sum_k |g_{i,k}|^2}.$$

    A *block* is one leaf of the tree (a weight matrix, a bias vector). Unlike
    [`clip_by_norm`][gradtx.clip_by_norm], the bound does not grow with the leaf's size. The mean
    square is accumulated in at least float32; the update keeps the leaf's dtype.

    Args:
        threshold: the largest RMS $\tau$ a leaf may keep (required), > 0.

    Returns:
        A stateless `GradientTransformation`.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.clip_by_block_rms(1.0)
        >>> tx.update(jnp.array([3.0, -3.0, 3.0, -3.0]), tx.init(None))[0]
        Array([ 1., -1.,  1., -1.], dtype=float32)
    """
    _v.check_real("clip_by_block_rms", "threshold", threshold, low=0.0, low_inclusive=False)

    def leaf(u):
        rms = jnp.sqrt(jnp.mean(abs_sq(u, stat_dtype(u))))
        denominator = jnp.maximum(1.0, rms / threshold)
        cdt = compute_dtype(u.dtype, denominator.dtype)
        return (cast(u, cdt) / cast(denominator, cdt)).astype(u.dtype)

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        return jax.tree.map(leaf, float_updates(updates)), state

    return GradientTransformation(_empty_init, update)


_UNIT_AXES = {2: (0,), 3: (0,), 4: (0, 1, 2), 5: (0, 1, 2, 3)}


def _check_axis(owner: str, axis: Any) -> None:
    """`axis` is None, an int or a tuple of ints."""
    entries = axis if isinstance(axis, tuple) else (axis,)
    if axis is None:
        return
    for a in entries:
        if isinstance(a, bool) or not isinstance(a, numbers.Integral):
            raise TypeError(f"{owner}: axis must be None, an int or a tuple of ints, got {axis!r}")


def _real_dtype(x: jax.Array) -> Any:
    """The real dtype of an inexact `x` (float32 for integer or boolean `x`)."""
    if jnp.issubdtype(x.dtype, jnp.inexact):
        return jnp.finfo(x.dtype).dtype
    return jnp.dtype(jnp.float32)


def unitwise_norm(x: jax.typing.ArrayLike, axis: int | tuple[int, ...] | None = None) -> jax.Array:
    r"""The L2 norm of every *unit* of `x`, broadcast back to `x`'s shape.

    A unit is the slice of `x` left when the reduced axes are summed over: for a dense kernel of
    shape `(in, out)` one unit per output (the norm of a column). With `axis=None` the reduced
    axes follow from the rank, as in the NFNet paper's convention:

    | `x` | reduced axes |
    |---|---|
    | scalar or vector (after dropping size-1 axes) | all |
    | rank 2 (`in, out`) or 3 (`heads` layouts) | `0` |
    | rank 4 (`H, W, in, out` convolution) | `0, 1, 2` |
    | rank 5 (`D, H, W, in, out` convolution) | `0, 1, 2, 3` |

    Any other rank needs an explicit `axis`.

    Args:
        x: an array (complex entries count by modulus).
        axis: None (default: by rank, as above), or the axis / tuple of axes to reduce.

    Returns:
        An array of `x`'s shape and real dtype (float32 for integer `x`) holding, at every entry,
        the norm of that entry's unit. The squares are summed in at least float32.

    Raises:
        ValueError: `axis=None` and `x` has rank 6 or more (with more than one non-unit axis).

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> gradtx.unitwise_norm(jnp.array([[3.0, 0.0], [4.0, 1.0]]))
        Array([[5., 1.],
               [5., 1.]], dtype=float32)
    """
    x = jnp.asarray(x)
    _check_axis("unitwise_norm", axis)
    squares = abs_sq(x, stat_dtype(x))
    if axis is not None:
        total = jnp.sum(squares, axis=axis, keepdims=True)
    elif jnp.squeeze(x).ndim <= 1:
        total = jnp.sum(squares, keepdims=True)
    elif x.ndim in _UNIT_AXES:
        total = jnp.sum(squares, axis=_UNIT_AXES[x.ndim], keepdims=True)
    else:
        raise ValueError(
            f"unitwise_norm: cannot infer the units of an array of shape {x.shape} (rank {x.ndim}); "
            f"the ranks with a default are 0 to 5. Pass axis=... (the axes to reduce)."
        )
    return jnp.broadcast_to(cast(jnp.sqrt(total), _real_dtype(x)), x.shape)


def unitwise_clip(
    g_norm: jax.typing.ArrayLike,
    max_norm: jax.typing.ArrayLike,
    grad: jax.typing.ArrayLike,
    div_eps: float = 1e-6,
) -> jax.Array:
    r"""Scale every unit of `grad` whose norm reaches `max_norm` down to that norm.

    $$u = \begin{cases} g & \|g\|_{\text{unit}} < m \\
    g \cdot \dfrac{m}{\max(\|g\|_{\text{unit}},\ \epsilon)} & \text{otherwise}\end{cases}$$

    elementwise, with $\|g\|_{\text{unit}}$ = `g_norm` (typically
    [`unitwise_norm`][gradtx.unitwise_norm]`(grad)`) and $m$ = `max_norm`.

    Args:
        g_norm: the unit norms of `grad`, shaped like `grad`.
        max_norm: the largest norm each unit may keep, shaped like `grad`.
        grad: the gradient leaf to clip.
        div_eps: the floor $\epsilon$ of the divisor, default 1e-6, >= 0 (only guards against a
            zero norm when `max_norm` is 0 or negative).

    Returns:
        The clipped `grad`.

    Raises:
        ValueError: the three arrays do not all have the same shape.
    """
    shapes = (jnp.shape(g_norm), jnp.shape(max_norm), jnp.shape(grad))
    if len(set(shapes)) != 1:
        raise ValueError(
            f"unitwise_clip: g_norm, max_norm and grad must have the same shape, got {shapes[0]}, "
            f"{shapes[1]} and {shapes[2]}"
        )
    _v.check_real("unitwise_clip", "div_eps", div_eps, low=0.0)
    g_norm, max_norm, grad = jnp.asarray(g_norm), jnp.asarray(max_norm), jnp.asarray(grad)
    clipped = grad * (max_norm / jnp.maximum(g_norm, div_eps))
    return jnp.where(g_norm < max_norm, grad, clipped)


@describe
def adaptive_grad_clip(
    clipping: float, eps: float = 1e-3, axis: int | tuple[int, ...] | None = None
) -> GradientTransformation:
    r"""Adaptive gradient clipping (AGC): bound each unit's gradient norm by its weight norm.

    For every unit (see [`unitwise_norm`][gradtx.unitwise_norm]) of every leaf, with
    gradient $g$ and parameter $\theta$:

    $$u = \begin{cases} g & \|g\| < \lambda \max(\|\theta\|, \epsilon) \\
    g\,\dfrac{\lambda \max(\|\theta\|, \epsilon)}{\|g\|} & \text{otherwise,}\end{cases}$$

    so no step can change a unit by more than the fraction $\lambda$ of its size ($\epsilon$
    keeps zero-initialized units, such as biases, trainable). It lets normalizer-free networks
    train at large batch sizes. Needs `params` at `update`.

    Args:
        clipping: the ratio $\lambda$ of the largest gradient norm to the parameter norm
            (required), >= 0; the paper uses 0.01 to 0.16.
        eps: the floor $\epsilon$ of the parameter norm, default 1e-3, >= 0.
        axis: None (default: the units follow from each leaf's rank), or the axis / tuple of
            axes reduced in every leaf (needed for leaves of rank 6 or more).

    Returns:
        A stateless `GradientTransformation` (state `AdaptiveGradClipState()`, i.e.
        `EmptyState()`).

    References:
        Brock, De, Smith & Simonyan, *High-Performance Large-Scale Image Recognition Without
        Normalization*, ICML 2021 (arXiv:2102.06171).

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.adaptive_grad_clip(0.1)
        >>> params, grads = jnp.array([3.0, 4.0]), jnp.array([6.0, 8.0])
        >>> tx.update(grads, tx.init(params), params)[0]
        Array([0.3, 0.4], dtype=float32)
    """
    owner = "adaptive_grad_clip"
    _v.check_real(owner, "clipping", clipping, low=0.0)
    _v.check_real(owner, "eps", eps, low=0.0)
    _check_axis(owner, axis)

    def leaf(g, p):
        g_norm, p_norm = unitwise_norm(g, axis=axis), unitwise_norm(p, axis=axis)
        max_norm = clipping * jnp.maximum(p_norm, eps)
        return unitwise_clip(g_norm, max_norm, g).astype(g.dtype)

    def update(updates, state, params=None, **extra_args):
        del extra_args
        if params is None:
            raise ValueError(
                f"{owner}.update: params are required (the clipping bound is a fraction of each "
                f"unit's parameter norm); call update(updates, state, params)."
            )
        return jax.tree.map(leaf, float_updates(updates), params), state

    return GradientTransformation(_empty_init, update)
