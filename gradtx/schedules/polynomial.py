"""Constant, polynomial and linear schedules (and a linear warm-up to a constant)."""

from gradtx import _validation as v
from gradtx.base import Schedule, describe
from gradtx.schedules._common import ArrayLike, check_value, raw_polynomial

__all__ = ["constant_schedule", "linear_schedule", "polynomial_schedule", "warmup_constant_schedule"]


@describe
def constant_schedule(value: ArrayLike) -> Schedule:
    """A schedule that returns the same value at every step: `η_t = value`.

    Args:
        value: the value returned for every step; a finite real number.

    Returns:
        A function of the step count.

    Example:
        >>> import gradtx
        >>> gradtx.constant_schedule(0.1)(1000)
        0.1
    """
    check_value("constant_schedule", "value", value)
    return lambda step: value


def _check_transition(owner: str, transition_steps, transition_begin) -> None:
    v.check_int(owner, "transition_steps", transition_steps, low=1)
    v.check_int(owner, "transition_begin", transition_begin, low=0)


@describe
def polynomial_schedule(
    init_value: ArrayLike,
    end_value: ArrayLike,
    power: ArrayLike,
    transition_steps: int,
    transition_begin: int = 0,
) -> Schedule:
    """Polynomial interpolation from `init_value` to `end_value`.

    With `I = init_value`, `E = end_value`, `P = power`, `T = transition_steps` and
    `B = transition_begin`:

        η_t = I                               for t ≤ B
        η_t = (I - E)·(1 - (t - B)/T)^P + E    for B ≤ t ≤ B + T
        η_t = E                               for t ≥ B + T

    Args:
        init_value: value before and at the start of the transition; finite real.
        end_value: value reached at step `B + T` and kept afterwards; finite real.
        power: exponent `P` of the polynomial; real, `> 0` (`1` is linear).
        transition_steps: length `T` of the transition; integer `>= 1` (optax silently turns
            `T <= 0` into a constant schedule; gradtx raises).
        transition_begin: step `B` at which the transition starts; integer `>= 0`, default 0.

    Returns:
        A function of the step count.

    The values are bit-identical to optax 0.2.8's (the same operations in the same order),
    with one deliberate exception: under `jit`, XLA may divide by `T` through its reciprocal,
    so that the base `1 - (t - B)/T` is about `-3e-8` instead of 0 from `t = B + T` on. optax
    then returns NaN for a non-integer `P`; gradtx clamps the base at 0 and returns `E`. (For an
    integer `P` both return the same value, which can be an ulp away from `E`.)

    Example:
        >>> import gradtx
        >>> sched = gradtx.polynomial_schedule(1.0, 0.0, power=2, transition_steps=10)
        >>> float(sched(5))
        0.25
    """
    owner = "polynomial_schedule"
    check_value(owner, "init_value", init_value)
    check_value(owner, "end_value", end_value)
    v.check_real(owner, "power", power, low=0.0, low_inclusive=False)
    _check_transition(owner, transition_steps, transition_begin)
    return raw_polynomial(init_value, end_value, power, transition_steps, transition_begin)


@describe
def linear_schedule(
    init_value: ArrayLike,
    end_value: ArrayLike,
    transition_steps: int,
    transition_begin: int = 0,
) -> Schedule:
    """Linear interpolation from `init_value` to `end_value` over `transition_steps` steps.

        η_t = I + (E - I)·clip(t - B, 0, T)/T

    with `I = init_value`, `E = end_value`, `T = transition_steps`, `B = transition_begin`
    (the same as [`polynomial_schedule`][gradtx.polynomial_schedule] with `power=1`).

    Args:
        init_value: value up to step `B`; finite real.
        end_value: value from step `B + T` on; finite real.
        transition_steps: length `T` of the ramp; integer `>= 1`.
        transition_begin: step `B` at which the ramp starts; integer `>= 0`, default 0.

    Returns:
        A function of the step count.

    Example:
        >>> import gradtx
        >>> float(gradtx.linear_schedule(0.0, 1.0, transition_steps=4)(1))
        0.25
    """
    owner = "linear_schedule"
    check_value(owner, "init_value", init_value)
    check_value(owner, "end_value", end_value)
    _check_transition(owner, transition_steps, transition_begin)
    return raw_polynomial(init_value, end_value, 1, transition_steps, transition_begin)


@describe
def warmup_constant_schedule(init_value: ArrayLike, peak_value: ArrayLike, warmup_steps: int) -> Schedule:
    """Linear warm-up from `init_value` to `peak_value`, then constant.

        η_t = I + (P - I)·min(t, W)/W      (η_t = P for every t when W = 0)

    Unlike optax 0.2.8, which keeps `init_value` forever when `warmup_steps == 0`, gradtx then
    returns `peak_value` from step 0 (there is no warm-up).

    Args:
        init_value: value at step 0; finite real.
        peak_value: value reached at step `W` and kept afterwards; finite real.
        warmup_steps: length `W` of the warm-up; integer `>= 0`.

    Returns:
        A function of the step count.

    References:
        Goyal et al., *Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour*, 2017
        (arXiv:1706.02677).
    """
    owner = "warmup_constant_schedule"
    check_value(owner, "init_value", init_value)
    check_value(owner, "peak_value", peak_value)
    v.check_int(owner, "warmup_steps", warmup_steps, low=0)
    if not v.is_traced(warmup_steps) and warmup_steps == 0:
        return lambda step: peak_value
    return raw_polynomial(init_value, peak_value, 1, warmup_steps, 0)
