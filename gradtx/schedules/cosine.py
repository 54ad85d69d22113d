"""Cosine annealing: plain, after a linear warm-up, and with warm restarts (SGDR)."""

from collections.abc import Iterable, Mapping

import jax.numpy as jnp

from gradtx import _validation as v
from gradtx.base import Schedule, describe
from gradtx.schedules._common import ArrayLike, check_value, raw_cosine, raw_join, raw_polynomial

__all__ = ["cosine_decay_schedule", "sgdr_schedule", "warmup_cosine_decay_schedule"]


@describe
def cosine_decay_schedule(
    init_value: ArrayLike,
    decay_steps: int,
    alpha: ArrayLike = 0.0,
    exponent: ArrayLike = 1.0,
) -> Schedule:
    """Cosine annealing from `init_value` down to `alpha·init_value` over `decay_steps` steps.

    With `I = init_value`, `T = decay_steps`, `p = exponent`:

        η_t = I·[(1 - α)·(½(1 + cos(π·min(t, T)/T)))^p + α]

    so `η_0 = I` and `η_t = α·I` for `t ≥ T`. For `0 ≤ α ≤ 1` and `I ≥ 0` the values stay in
    `[α·I, I]` and never increase.

    Args:
        init_value: value `I` at step 0; finite real.
        decay_steps: length `T` of the decay; integer `>= 1`.
        alpha: final value as a fraction of `I`; finite real, default 0.0 (usually in `[0, 1]`).
        exponent: power `p` applied to the half-cosine factor; real `> 0`, default 1.0.

    Returns:
        A function of the step count.

    References:
        Loshchilov & Hutter, *SGDR: Stochastic Gradient Descent with Warm Restarts*, ICLR 2017
        (arXiv:1608.03983).

    Example:
        >>> import gradtx
        >>> sched = gradtx.cosine_decay_schedule(1.0, decay_steps=100, alpha=0.1)
        >>> round(float(sched(50)), 6)
        0.55
    """
    owner = "cosine_decay_schedule"
    check_value(owner, "init_value", init_value)
    v.check_int(owner, "decay_steps", decay_steps, low=1)
    check_value(owner, "alpha", alpha)
    v.check_real(owner, "exponent", exponent, low=0.0, low_inclusive=False)
    return raw_cosine(init_value, decay_steps, alpha, exponent)


def _end_fraction(peak_value, end_value):
    """`end/peak` (0 when the peak is 0), as optax computes `alpha` for the cosine part."""
    if v.is_traced(peak_value) or v.is_traced(end_value):
        safe_peak = jnp.where(peak_value == 0.0, 1.0, peak_value)
        return jnp.where(peak_value == 0.0, 0.0, end_value / safe_peak)
    return 0.0 if peak_value == 0.0 else end_value / peak_value


def _check_warmup_cosine(owner, init_value, peak_value, warmup_steps, decay_steps, end_value, exponent):
    check_value(owner, "init_value", init_value)
    check_value(owner, "peak_value", peak_value)
    v.check_int(owner, "warmup_steps", warmup_steps, low=0)
    v.check_int(owner, "decay_steps", decay_steps, low=1)
    if not (v.is_traced(warmup_steps) or v.is_traced(decay_steps)) and decay_steps <= warmup_steps:
        raise ValueError(
            f"{owner}: decay_steps must be > warmup_steps (it is the total length, warm-up "
            f"included), got decay_steps={decay_steps!r} and warmup_steps={warmup_steps!r}"
        )
    check_value(owner, "end_value", end_value)
    v.check_real(owner, "exponent", exponent, low=0.0, low_inclusive=False)


def _raw_warmup_cosine(init_value, peak_value, warmup_steps, decay_steps, end_value, exponent):
    return raw_join(
        [
            raw_polynomial(init_value, peak_value, 1, warmup_steps, 0),
            raw_cosine(peak_value, decay_steps - warmup_steps, _end_fraction(peak_value, end_value), exponent),
        ],
        [warmup_steps],
    )


@describe
def warmup_cosine_decay_schedule(
    init_value: ArrayLike,
    peak_value: ArrayLike,
    warmup_steps: int,
    decay_steps: int,
    end_value: ArrayLike = 0.0,
    exponent: ArrayLike = 1.0,
) -> Schedule:
    """Linear warm-up from `init_value` to `peak_value`, then cosine decay to `end_value`.

    With `W = warmup_steps`, `D = decay_steps` (the total length, warm-up included), `P`, `E`,
    `p = exponent`:

        η_t = I + (P - I)·t/W                                      for t < W
        η_t = E + (P - E)·(½(1 + cos(π·min(t - W, D - W)/(D - W))))^p   for t ≥ W

    (computed, as in optax, as a cosine decay of `P` with `α = E/P`). For `I ≤ P` and `E ≤ P`
    the values stay in `[min(I, E), P]`; `η_t = E` for `t ≥ D`.

    Args:
        init_value: value `I` at step 0; finite real.
        peak_value: value `P` at the end of the warm-up; finite real.
        warmup_steps: length `W` of the linear warm-up; integer `>= 0` (0: start at the peak).
        decay_steps: total length `D` of the schedule; integer with `D > W`.
        end_value: final value `E`; finite real, default 0.0.
        exponent: power `p` of the half-cosine factor; real `> 0`, default 1.0.

    Returns:
        A function of the step count.

    References:
        Goyal et al., *Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour*, 2017
        (arXiv:1706.02677) for the warm-up; Loshchilov & Hutter, *SGDR: Stochastic Gradient
        Descent with Warm Restarts*, ICLR 2017 (arXiv:1608.03983) for the cosine decay.

    Example:
        >>> import gradtx
        >>> sched = gradtx.warmup_cosine_decay_schedule(0.0, 1.0, warmup_steps=10, decay_steps=110)
        >>> float(sched(5)), float(sched(10)), round(float(sched(60)), 6)
        (0.5, 1.0, 0.5)
    """
    _check_warmup_cosine(
        "warmup_cosine_decay_schedule", init_value, peak_value, warmup_steps, decay_steps, end_value, exponent
    )
    return _raw_warmup_cosine(init_value, peak_value, warmup_steps, decay_steps, end_value, exponent)


_WARMUP_COSINE_KEYS = ("init_value", "peak_value", "warmup_steps", "decay_steps", "end_value", "exponent")


@describe
def sgdr_schedule(cosine_kwargs: Iterable[dict[str, ArrayLike]]) -> Schedule:
    """Stochastic gradient descent with warm restarts: warm-up + cosine cycles, one after another.

    Cycle `k` is `warmup_cosine_decay_schedule(**cosine_kwargs[k])`; it starts at the step where
    cycle `k - 1` ended (the sum of the previous `decay_steps`) and receives the step count
    relative to that start. After the last cycle its end value is kept.

    Args:
        cosine_kwargs: a non-empty sequence of dicts, each with the arguments of
            [`warmup_cosine_decay_schedule`][gradtx.warmup_cosine_decay_schedule]
            (`init_value`, `peak_value`, `warmup_steps`, `decay_steps`, optionally `end_value`
            and `exponent`), checked the same way.

    Returns:
        A function of the step count.

    References:
        Loshchilov & Hutter, *SGDR: Stochastic Gradient Descent with Warm Restarts*, ICLR 2017
        (arXiv:1608.03983).

    Example:
        >>> import gradtx
        >>> cycle = dict(init_value=0.0, peak_value=1.0, warmup_steps=2, decay_steps=10)
        >>> sched = gradtx.sgdr_schedule([cycle, cycle])
        >>> float(sched(2)), float(sched(12))
        (1.0, 1.0)
    """
    owner = "sgdr_schedule"
    cycles = list(cosine_kwargs)
    if not cycles:
        raise ValueError(f"{owner}: cosine_kwargs must hold at least one cycle, got {cosine_kwargs!r}")
    pieces, boundaries, start = [], [], 0
    for k, kwargs in enumerate(cycles):
        if not isinstance(kwargs, Mapping):
            raise TypeError(f"{owner}: cosine_kwargs[{k}] must be a dict, got {type(kwargs).__name__}")
        unknown = sorted(set(kwargs) - set(_WARMUP_COSINE_KEYS))
        missing = [key for key in _WARMUP_COSINE_KEYS[:4] if key not in kwargs]
        if unknown or missing:
            raise TypeError(
                f"{owner}: cosine_kwargs[{k}] must hold the arguments of "
                f"warmup_cosine_decay_schedule; unknown keys {unknown}, missing keys {missing}"
            )
        args = {"end_value": 0.0, "exponent": 1.0, **kwargs}
        _check_warmup_cosine(f"{owner} (cycle {k})", *(args[key] for key in _WARMUP_COSINE_KEYS))
        pieces.append(_raw_warmup_cosine(*(args[key] for key in _WARMUP_COSINE_KEYS)))
        start += args["decay_steps"]
        boundaries.append(start)
    return raw_join(pieces, boundaries[:-1])
