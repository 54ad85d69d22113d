r"""Scalings of the updates: constant, learning rate, schedule, sign and trust ratio."""

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx import _validation as _v
from gradtx._schedule_check import call_schedule
from gradtx.base import EmptyState, GradientTransformation, ScalarOrSchedule, describe, identity
from gradtx.numerics import abs_sq, cast, compute_dtype, float_updates, safe_increment, tree_as_arrays

__all__ = [
    "ScaleByScheduleState",
    "ScaleByTrustRatioState",
    "ScaleState",
    "scale",
    "scale_by_learning_rate",
    "scale_by_schedule",
    "scale_by_sign",
    "scale_by_trust_ratio",
]

_NO_PARAMS = (
    "{owner}.update: params are required (it uses the current parameter values); call "
    "update(updates, state, params) with the params."
)


class ScaleByScheduleState(NamedTuple):
    """State of a scheduled scaling: the number of updates done (int32)."""

    count: jax.Array  # type: ignore[assignment]  # optax's field name (shadows tuple.count)


ScaleState = EmptyState
"""State of [`scale`][gradtx.scale]: `EmptyState` (optax's name for it)."""

ScaleByTrustRatioState = EmptyState
"""State of [`scale_by_trust_ratio`][gradtx.scale_by_trust_ratio]: `EmptyState` (optax's name for it)."""


def _scale_leaf(step: Any, g: jax.Array) -> jax.Array:
    """`step · g` with the step cast to `g`'s dtype (so the update keeps its dtype)."""
    return jnp.asarray(step, dtype=g.dtype) * g


def _constant_scale(step_size: Any) -> GradientTransformation:
    def init(params):
        del params
        return EmptyState()

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        return jax.tree.map(lambda g: _scale_leaf(step_size, g), float_updates(updates)), state

    return GradientTransformation(init, update)


def _schedule_scale(
    step_size_fn: Callable[[jax.Array], Any], owner: str, name: str, sign: int = 1
) -> GradientTransformation:
    """`u = sign · step_size_fn(count) · g`; the schedule is checked (one argument, real scalar)."""

    def init(params):
        del params
        return ScaleByScheduleState(count=jnp.zeros([], jnp.int32))

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        step = call_schedule(owner, name, step_size_fn, state.count)
        if sign != 1:
            step = sign * step
        new_updates = jax.tree.map(lambda g: _scale_leaf(step, g), float_updates(updates))
        return new_updates, ScaleByScheduleState(count=safe_increment(state.count))

    return GradientTransformation(init, update)


@describe
def scale(step_size: float) -> GradientTransformation:
    r"""Multiply every update by a constant: $u = \alpha\, g$.

    Args:
        step_size: the factor $\alpha$, a finite real number (no default; any sign).

    Returns:
        A stateless `GradientTransformation` (state `EmptyState()`).

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.scale(-0.5)
        >>> tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))[0]
        Array([-1.], dtype=float32)
    """
    _v.check_real("scale", "step_size", step_size, low=-math.inf)
    return _constant_scale(step_size)


@describe
def scale_by_schedule(step_size_fn: Callable[[jax.Array], Any]) -> GradientTransformation:
    r"""Multiply updates by a scheduled factor: $u_t = \alpha(t-1)\, g_t$.

    The schedule is evaluated at the number of updates done *before* this one, so the first
    update uses `step_size_fn(0)`.

    Args:
        step_size_fn: a callable of the int32 step count returning a scalar.

    Returns:
        A `GradientTransformation` with state `ScaleByScheduleState(count)`.
    """
    if not callable(step_size_fn):
        raise TypeError(
            f"scale_by_schedule: step_size_fn must be a callable of the step count, got "
            f"{type(step_size_fn).__name__}: {step_size_fn!r}"
        )
    return _schedule_scale(step_size_fn, "scale_by_schedule", "step_size_fn")


@describe
def scale_by_learning_rate(
    learning_rate: ScalarOrSchedule | None = None, *, flip_sign: bool = True
) -> GradientTransformation:
    r"""Multiply updates by the (negated) learning rate: $u_t = -\eta_t\, g_t$.

    A constant learning rate gives a stateless transformation; a schedule $\eta(\cdot)$ is
    evaluated at the count *before* it is incremented, so step 1 uses $\eta(0)$, and the state
    is `ScaleByScheduleState(count)`.

    Args:
        learning_rate: a finite real number or a schedule (callable of the int32 step count);
            default None, meaning no scaling at all (the updates pass unchanged).
        flip_sign: multiply by $-\eta$ (gradient *descent*), default True; False multiplies
            by $+\eta$.

    Returns:
        A `GradientTransformation`.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.scale_by_learning_rate(0.1)
        >>> tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))[0]
        Array([-0.2], dtype=float32)
    """
    owner = "scale_by_learning_rate"
    _v.check_bool(owner, "flip_sign", flip_sign)
    if learning_rate is None:
        return identity()
    _v.check_schedule_or_real(owner, "learning_rate", learning_rate, low=-math.inf)
    sign = -1 if flip_sign else 1
    if callable(learning_rate):
        return _schedule_scale(learning_rate, owner, "learning_rate", sign)
    return _constant_scale(sign * learning_rate)


@describe
def scale_by_sign() -> GradientTransformation:
    r"""Replace every update by its sign: $u = \operatorname{sign}(g)$ (0 stays 0).

    Returns:
        A stateless `GradientTransformation`.

    References:
        Bernstein et al., *signSGD: Compressed Optimisation for Non-Convex Problems*, ICML 2018.
    """

    def init(params):
        del params
        return EmptyState()

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        return jax.tree.map(jnp.sign, updates), state

    return GradientTransformation(init, update)


def _safe_norm(x: jax.Array, min_norm: Any, dtype: Any) -> jax.Array:
    """`max(||x||_2, min_norm)` (Frobenius over all elements) with a finite gradient at 0.

    The norm is `sqrt(sum(|x|^2))` as written (XLA simplifies it to `|x|` for a scalar leaf, as
    it does for optax); the gradient is kept finite by computing it a second time on `x`
    replaced by ones where the norm is at most `min_norm`.
    """
    norm = jnp.sqrt(jnp.sum(abs_sq(x, dtype)))
    small = norm <= min_norm
    safe_x = jnp.where(small, jnp.ones_like(x), x)
    safe_norm = jnp.sqrt(jnp.sum(abs_sq(safe_x, dtype)))
    return jnp.where(small, jnp.asarray(min_norm, dtype), safe_norm)


def trust_ratio_leaf(
    u: jax.Array, p: jax.Array, *, min_norm: Any = 0.0, trust_coefficient: Any = 1.0, eps: Any = 0.0
) -> jax.Array:
    """`u · c·max(||p||, m) / (max(||u||, m) + eps)`; the ratio is 1 if either norm is 0."""
    cdt = compute_dtype(u.dtype, p.dtype)
    rdt = jnp.finfo(cdt).dtype
    p_norm = _safe_norm(p, min_norm, rdt)
    u_norm = _safe_norm(u, min_norm, rdt)
    zero = jnp.logical_or(p_norm == 0, u_norm == 0)
    denom = jnp.where(zero, 1, u_norm + eps)
    ratio = jnp.where(zero, 1, trust_coefficient * p_norm / denom)
    return (cast(u, cdt) * cast(ratio, cdt)).astype(u.dtype)


@describe
def scale_by_trust_ratio(
    min_norm: float = 0.0, trust_coefficient: float = 1.0, eps: float = 0.0
) -> GradientTransformation:
    r"""Rescale each leaf by the layer-wise trust ratio of LARS / LAMB.

    For each leaf with params $p$ and update $u$:

    $$u \leftarrow u \cdot \frac{c\,\max(\|p\|, m)}{\max(\|u\|, m) + \epsilon}$$

    ($\|\cdot\|$ the L2 norm of all the leaf's elements), with the ratio set to 1 when either
    norm is 0 (so fresh zero-initialised params are still updated).

    Args:
        min_norm: the floor $m$ of both norms, default 0.0, >= 0.
        trust_coefficient: the multiplier $c$, default 1.0, >= 0.
        eps: added to the update norm, default 0.0, >= 0.

    Returns:
        A stateless `GradientTransformation`; its `update` requires `params`.

    References:
        You, Gitman & Ginsburg, *Large Batch Training of Convolutional Networks* (LARS), 2017.
        You et al., *Large Batch Optimization for Deep Learning: Training BERT in 76 minutes*
        (LAMB), ICLR 2020 (arXiv 2019).
    """
    owner = "scale_by_trust_ratio"
    _v.check_real(owner, "min_norm", min_norm, low=0.0)
    _v.check_real(owner, "trust_coefficient", trust_coefficient, low=0.0)
    _v.check_real(owner, "eps", eps, low=0.0)

    def init(params):
        del params
        return EmptyState()

    def update(updates, state, params=None, **extra_args):
        del extra_args
        if params is None:
            raise ValueError(_NO_PARAMS.format(owner=owner))

        def leaf(u, p):
            return trust_ratio_leaf(u, p, min_norm=min_norm, trust_coefficient=trust_coefficient, eps=eps)

        return jax.tree.map(leaf, float_updates(updates), tree_as_arrays(params)), state

    return GradientTransformation(init, update)
