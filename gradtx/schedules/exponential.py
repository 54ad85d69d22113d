"""Exponential (continuous or step-wise) decay, with an optional linear warm-up."""

from gradtx import _validation as v
from gradtx.base import Schedule, describe
from gradtx.schedules._common import ArrayLike, check_value, raw_exponential, raw_join, raw_polynomial

__all__ = ["exponential_decay", "warmup_exponential_decay_schedule"]


def _check_decay(owner: str, transition_steps, decay_rate, transition_begin, staircase, end_value) -> None:
    v.check_int(owner, "transition_steps", transition_steps, low=1)
    v.check_real(owner, "decay_rate", decay_rate, low=0.0, low_inclusive=False)
    v.check_int(owner, "transition_begin", transition_begin, low=0)
    v.check_bool(owner, "staircase", staircase)
    if end_value is not None:
        check_value(owner, "end_value", end_value)


@describe
def exponential_decay(
    init_value: ArrayLike,
    transition_steps: int,
    decay_rate: float,
    transition_begin: int = 0,
    staircase: bool = False,
    end_value: ArrayLike | None = None,
) -> Schedule:
    """Exponential decay `η_t = I·r^((t - B)/T)`, or step decay when `staircase=True`.

    With `I = init_value`, `T = transition_steps`, `r = decay_rate`, `B = transition_begin`:

        η_t = I                          for t ≤ B
        η_t = I·r^((t - B)/T)            for t > B   (staircase=False)
        η_t = I·r^floor((t - B)/T)       for t > B   (staircase=True: "step decay")

    and, when `end_value` is given, `η_t` is clipped at it: `max(η_t, end_value)` when `r < 1`
    (a lower bound) and `min(η_t, end_value)` when `r >= 1` (an upper bound).

    Args:
        init_value: initial value `I`; finite real.
        transition_steps: `T`, the number of steps over which the value is multiplied by `r`;
            integer `>= 1` (optax returns a constant for `T <= 0`; gradtx raises).
        decay_rate: `r`; real `> 0` (`r < 1` decays, `r > 1` grows).
        transition_begin: step `B` before which the value stays `I`; integer `>= 0`, default 0.
        staircase: if True the exponent is floored, giving piecewise-constant steps;
            default False.
        end_value: optional bound at which the decay (or growth) stops; finite real or None
            (default).

    Returns:
        A function of the step count.

    Example:
        >>> import gradtx
        >>> sched = gradtx.exponential_decay(1.0, transition_steps=10, decay_rate=0.5, staircase=True)
        >>> float(sched(25))
        0.25
    """
    owner = "exponential_decay"
    check_value(owner, "init_value", init_value)
    _check_decay(owner, transition_steps, decay_rate, transition_begin, staircase, end_value)
    return raw_exponential(init_value, transition_steps, decay_rate, transition_begin, staircase, end_value)


@describe
def warmup_exponential_decay_schedule(
    init_value: ArrayLike,
    peak_value: ArrayLike,
    warmup_steps: int,
    transition_steps: int,
    decay_rate: ArrayLike,
    transition_begin: int = 0,
    staircase: bool = False,
    end_value: ArrayLike | None = None,
) -> Schedule:
    """Linear warm-up from `init_value` to `peak_value`, then exponential decay from the peak.

    With `W = warmup_steps` and `s = t - W`:

        η_t = I + (P - I)·t/W                       for t < W
        η_t = exponential_decay(P, T, r, B, staircase, end_value)(s)   for t ≥ W

    (see [`exponential_decay`][gradtx.exponential_decay]; `B` counts from the end of the warm-up).

    Args:
        init_value: value `I` at step 0; finite real.
        peak_value: value `P` at the end of the warm-up; finite real.
        warmup_steps: length `W` of the warm-up; integer `>= 0` (0: no warm-up).
        transition_steps: `T` of the decay; integer `>= 1`.
        decay_rate: `r`; real `> 0`.
        transition_begin: steps after the warm-up during which the value stays `P`; integer
            `>= 0`, default 0.
        staircase: floor the decay exponent; default False.
        end_value: optional bound of the decay; finite real or None (default).

    Returns:
        A function of the step count.

    References:
        Goyal et al., *Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour*, 2017
        (arXiv:1706.02677), for the linear warm-up.
    """
    owner = "warmup_exponential_decay_schedule"
    check_value(owner, "init_value", init_value)
    check_value(owner, "peak_value", peak_value)
    v.check_int(owner, "warmup_steps", warmup_steps, low=0)
    _check_decay(owner, transition_steps, decay_rate, transition_begin, staircase, end_value)
    return raw_join(
        [
            raw_polynomial(init_value, peak_value, 1, warmup_steps, 0),
            raw_exponential(peak_value, transition_steps, decay_rate, transition_begin, staircase, end_value),
        ],
        [warmup_steps],
    )
