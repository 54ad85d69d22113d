"""Piecewise schedules: constant jumps at given steps, or interpolation between them."""

import jax.numpy as jnp

from gradtx.base import Schedule, describe
from gradtx.schedules._common import (
    ArrayLike,
    check_boundaries_and_scales,
    check_value,
    raw_piecewise_interpolate,
)

__all__ = ["piecewise_constant_schedule", "piecewise_interpolate_schedule"]


@describe
def piecewise_constant_schedule(
    init_value: ArrayLike, boundaries_and_scales: dict[int, float] | None = None
) -> Schedule:
    """Piecewise-constant schedule: the value is multiplied by `s_i` from step `b_i` on.

        η_t = I · ∏_{i : b_i ≤ t} s_i

    where `{b_i: s_i}` is `boundaries_and_scales` (the boundaries are taken in increasing order,
    whatever the order of the dict).

    Args:
        init_value: value `I` before the first boundary; finite real.
        boundaries_and_scales: `{step: scale}` with integer steps `>= 0` and scales `>= 0`;
            None (default) gives a constant schedule.

    Returns:
        A function of the step count.

    Example:
        >>> import gradtx
        >>> sched = gradtx.piecewise_constant_schedule(1.0, {10: 0.1, 20: 0.5})
        >>> [round(float(sched(t)), 4) for t in (9, 10, 25)]
        [1.0, 0.1, 0.05]
    """
    owner = "piecewise_constant_schedule"
    check_value(owner, "init_value", init_value)
    boundaries, scales = check_boundaries_and_scales(owner, boundaries_and_scales)

    def schedule(step):
        value = init_value
        for boundary, scale in zip(boundaries, scales):
            # `before` is 1 before the boundary and 0 from it on; the blend below is optax's
            # arithmetic (not a select), so that XLA simplifies it the same way in any chain
            before = jnp.maximum(0.0, jnp.sign(boundary - step))
            value = value * before + (1 - before) * scale * value
        return value

    return schedule


@describe
def piecewise_interpolate_schedule(
    interpolate_type: str,
    init_value: ArrayLike,
    boundaries_and_scales: dict[int, float] | None = None,
) -> Schedule:
    """Interpolate between the running products of scales placed at given steps.

    With sorted boundaries `0 = b_0 < b_1 < … < b_n` (`b_0 = 0` added) and levels
    `v_0 = I`, `v_k = v_{k-1}·s_k`, on `[b_{k-1}, b_k)` with `f = (t - b_{k-1})/(b_k - b_{k-1})`:

        linear:  η_t = v_{k-1} + (v_k - v_{k-1})·f
        cosine:  η_t = v_k + (v_{k-1} - v_k)·(1 + cos(π f))/2

    and `η_t = v_n` for `t ≥ b_n`. The interpolation is between the accumulated levels `v_k`,
    not between the raw scales.

    Args:
        interpolate_type: `"linear"` or `"cosine"`.
        init_value: value `I` at step 0; finite real.
        boundaries_and_scales: `{step: scale}` with integer steps `>= 0` and scales `>= 0`;
            None (default) gives the constant `I`.

    Returns:
        A function of the (non-negative) step count.

    Example:
        >>> import gradtx
        >>> sched = gradtx.piecewise_interpolate_schedule("linear", 1.0, {4: 0.5})
        >>> float(sched(2))
        0.75
    """
    owner = "piecewise_interpolate_schedule"
    if not isinstance(interpolate_type, str):
        raise TypeError(
            f"{owner}: interpolate_type must be the string 'linear' or 'cosine', got "
            f"{type(interpolate_type).__name__}: {interpolate_type!r}"
        )
    if interpolate_type not in ("linear", "cosine"):
        raise ValueError(f"{owner}: interpolate_type must be 'linear' or 'cosine', got {interpolate_type!r}")
    check_value(owner, "init_value", init_value)
    boundaries, scales = check_boundaries_and_scales(owner, boundaries_and_scales)
    return raw_piecewise_interpolate(interpolate_type, init_value, boundaries, scales)
