r"""Clipping of updates: elementwise, per-leaf norm, global norm, and NaN removal."""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx import _validation as _v
from gradtx.base import EmptyState, GradientTransformation, describe
from gradtx.numerics import abs_sq, cast, compute_dtype, float_updates, stat_dtype

__all__ = [
    "ZeroNansState",
    "clip",
    "clip_by_global_norm",
    "clip_by_norm",
    "zero_nans",
]


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
    total = 0
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
