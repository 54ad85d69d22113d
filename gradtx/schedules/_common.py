"""Private helpers shared by the schedule modules: argument checks and raw (unchecked) builders.

The public factories validate their arguments and then call the raw builders here, so that
composite schedules (warm-up + decay, one-cycle, SGDR) can reuse the pieces without re-checking
and without the public restrictions (for example a warm-up of zero steps).
"""

import math
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from gradtx import _validation as v

__all__: list[str] = []

ArrayLike = jax.typing.ArrayLike
RawSchedule = Callable[[ArrayLike], ArrayLike]


def check_value(owner: str, name: str, value: Any) -> None:
    """A schedule value: any finite real scalar (or a traced one)."""
    v.check_real(owner, name, value)
    if not v.is_traced(value) and not math.isfinite(float(value)):
        raise ValueError(f"{owner}: {name} must be a finite real number, got {value!r}")


def check_boundaries_and_scales(owner: str, boundaries_and_scales: Any) -> tuple[tuple, tuple]:
    """Validate a `{step: scale}` mapping; return `(boundaries, scales)` sorted by step."""
    if boundaries_and_scales is None:
        return (), ()
    if not isinstance(boundaries_and_scales, Mapping):
        raise TypeError(
            f"{owner}: boundaries_and_scales must be None or a dict {{step: scale}}, got "
            f"{type(boundaries_and_scales).__name__}: {boundaries_and_scales!r}"
        )
    for step, scale in boundaries_and_scales.items():
        v.check_int(owner, f"boundaries_and_scales key (boundary step) {step!r}", step, low=0)
        v.check_real(owner, f"boundaries_and_scales[{step!r}] (a scale)", scale, low=0.0)
    items = sorted((int(step), scale) for step, scale in boundaries_and_scales.items())
    return tuple(s for s, _ in items), tuple(c for _, c in items)


# ----------------------------------------------------------------------------------------------
# raw builders (no checks)
# ----------------------------------------------------------------------------------------------


def raw_polynomial(init_value, end_value, power, transition_steps, transition_begin) -> RawSchedule:
    """`(I - E)·(1 - clip(t - B, 0, T)/T)^P + E`; constant `I` when `T == 0`.

    Evaluated as optax 0.2.8 evaluates it (same operations in the same order), so the values are
    bit-identical, with one deliberate exception. Under `jit` XLA may divide by `T` through its
    reciprocal, so `1 - T/T` can be a tiny negative number (about -3e-8) at and after the end
    of the transition. For an integer power that only moves the end value by an ulp (as in
    optax), but a fractional power of a negative number is NaN: for a non-integer `P` the base is
    clamped at 0, so gradtx returns `E` where optax returns NaN. Nothing else changes: the clamp
    is a no-op wherever the base is `>= 0`.
    """
    if not v.is_traced(transition_steps) and transition_steps == 0:
        return lambda step: init_value

    def schedule(step):
        elapsed = jnp.clip(step - transition_begin, 0, transition_steps)
        remaining = 1 - elapsed / transition_steps
        if v.is_traced(power):
            fractional = power != jnp.round(power)
            remaining = jnp.where(jnp.logical_and(fractional, remaining < 0), 0.0, remaining)
        elif not float(power).is_integer():
            remaining = jnp.maximum(remaining, 0.0)
        return (init_value - end_value) * (remaining**power) + end_value

    return schedule


def raw_exponential(init_value, transition_steps, decay_rate, transition_begin, staircase, end_value):
    """`I·r^((t - B)/T)` for `t > B` (floored exponent when staircase), clipped at `end_value`."""

    def schedule(step):
        elapsed = step - transition_begin
        exponent = elapsed / transition_steps
        if staircase:
            exponent = jnp.floor(exponent)
        value = jnp.where(elapsed <= 0, init_value, init_value * jnp.power(decay_rate, exponent))
        if end_value is not None:
            if v.is_traced(decay_rate):
                value = jnp.where(
                    decay_rate < 1.0, jnp.maximum(value, end_value), jnp.minimum(value, end_value)
                )
            elif decay_rate < 1.0:
                value = jnp.maximum(value, end_value)
            else:
                value = jnp.minimum(value, end_value)
        return value

    return schedule


def raw_cosine(init_value, decay_steps, alpha, exponent) -> RawSchedule:
    """`I·((1 - α)·(½(1 + cos(π·min(t, T)/T)))^p + α)`."""
    total = float(decay_steps) if isinstance(decay_steps, int) else decay_steps

    def schedule(step):
        if isinstance(step, int):
            step = float(step)
        t = jnp.minimum(step, total)
        half_cosine = 0.5 * (1 + jnp.cos(jnp.pi * t / total))
        return init_value * ((1 - alpha) * half_cosine**exponent + alpha)

    return schedule


def raw_join(schedules, boundaries) -> RawSchedule:
    """`schedules[k](t - boundaries[k-1])` on `[boundaries[k-1], boundaries[k])`."""
    schedules = tuple(schedules)
    boundaries = tuple(boundaries)

    def schedule(step):
        value = schedules[0](step)
        for boundary, piece in zip(boundaries, schedules[1:]):
            value = jnp.where(step < boundary, value, piece(step - boundary))
        return value

    return schedule


def _linear_between(start, end, fraction):
    return (end - start) * fraction + start


def _cosine_between(start, end, fraction):
    return end + (start - end) / 2.0 * (jnp.cos(jnp.pi * fraction) + 1)


def raw_piecewise_interpolate(kind: str, init_value, boundaries: tuple, scales: tuple) -> RawSchedule:
    """Interpolate (linearly or by half-cosine) between the running products of the scales."""
    between = _linear_between if kind == "linear" else _cosine_between

    def schedule(step):
        knots = jnp.asarray((0, *boundaries))
        levels = jnp.cumprod(jnp.stack((init_value, *scales)))
        lefts, rights = knots[:-1], knots[1:]
        widths = jnp.maximum(rights - lefts, 1)
        inside = jnp.logical_and(lefts <= step, step < rights)
        fraction = (step - lefts) / widths
        pieces = between(levels[:-1], levels[1:], fraction)
        return jnp.dot(inside, pieces) + (knots[-1] <= step) * levels[-1]

    return schedule
