"""One-cycle policies: up to a peak, then down well below the starting value."""

from gradtx import _validation as v
from gradtx.base import Schedule, describe
from gradtx.schedules._common import ArrayLike, check_value, raw_piecewise_interpolate

__all__ = ["cosine_onecycle_schedule", "linear_onecycle_schedule"]


def _check_cycle(owner: str, transition_steps, peak_value, pct_start, div_factor, final_div_factor) -> None:
    v.check_int(owner, "transition_steps", transition_steps, low=1)
    check_value(owner, "peak_value", peak_value)
    v.check_real(owner, "pct_start", pct_start, low=0.0, high=1.0)
    v.check_real(owner, "div_factor", div_factor, low=0.0, low_inclusive=False)
    v.check_real(owner, "final_div_factor", final_div_factor, low=0.0, low_inclusive=False)


def _interpolate(kind: str, init_value, knots: dict[int, float]) -> Schedule:
    # Like optax, later entries with the same boundary replace earlier ones.
    items = sorted(knots.items())
    return raw_piecewise_interpolate(kind, init_value, tuple(b for b, _ in items), tuple(s for _, s in items))


@describe
def cosine_onecycle_schedule(
    transition_steps: int,
    peak_value: ArrayLike,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> Schedule:
    """One-cycle schedule with half-cosine ramps up to `peak_value` and down to near zero.

    With `T = transition_steps`, `P = peak_value`, `S = int(pct_start·T)`, `d = div_factor`,
    `f = final_div_factor`:

        η_t = P + (P/d - P)·(1 + cos(π t/S))/2                 for t < S      (P/d → P)
        η_t = Q + (P - Q)·(1 + cos(π (t - S)/(T - S)))/2     for S ≤ t < T  (P → Q)
        η_t = Q = P/(d·f)                                     for t ≥ T

    Args:
        transition_steps: total length `T` of the cycle; integer `>= 1`.
        peak_value: maximum value `P`, reached at step `S`; finite real.
        pct_start: fraction of `T` spent increasing; real in `[0, 1]`, default 0.3.
        div_factor: the cycle starts at `P/d`; real `> 0`, default 25.0.
        final_div_factor: the cycle ends at `P/(d·f)`; real `> 0`, default 1e4.

    Returns:
        A function of the (non-negative) step count.

    References:
        Smith & Topin, *Super-Convergence: Very Fast Training of Neural Networks Using Large
        Learning Rates*, 2018 (arXiv:1708.07120); Smith, *A disciplined approach to neural network
        hyper-parameters: Part 1*, 2018 (arXiv:1803.09820).
    """
    owner = "cosine_onecycle_schedule"
    _check_cycle(owner, transition_steps, peak_value, pct_start, div_factor, final_div_factor)
    return _interpolate(
        "cosine",
        peak_value / div_factor,
        {
            int(pct_start * transition_steps): div_factor,
            int(transition_steps): 1.0 / (div_factor * final_div_factor),
        },
    )


@describe
def linear_onecycle_schedule(
    transition_steps: int,
    peak_value: ArrayLike,
    pct_start: float = 0.3,
    pct_final: float = 0.85,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> Schedule:
    """One-cycle schedule with three linear phases.

    With `T = transition_steps`, `P = peak_value`, `S = int(pct_start·T)`,
    `F = int(pct_final·T)`, `d = div_factor`, `f = final_div_factor`, the value is piecewise
    linear through the points

        (0, P/d) → (S, P) → (F, P/d) → (T, P/(d·f))

    and stays at `P/(d·f)` after step `T`.

    Args:
        transition_steps: total length `T` of the cycle; integer `>= 1`.
        peak_value: maximum value `P`, reached at step `S`; finite real.
        pct_start: fraction of `T` spent increasing; real in `[0, 1]`, default 0.3.
        pct_final: fraction of `T` at which the value is back at `P/d`; real in
            `[pct_start, 1]`, default 0.85.
        div_factor: the cycle starts (and its second phase ends) at `P/d`; real `> 0`,
            default 25.0.
        final_div_factor: the cycle ends at `P/(d·f)`; real `> 0`, default 1e4.

    Returns:
        A function of the (non-negative) step count.

    References:
        Smith & Topin, *Super-Convergence: Very Fast Training of Neural Networks Using Large
        Learning Rates*, 2018 (arXiv:1708.07120); Smith, *A disciplined approach to neural network
        hyper-parameters: Part 1*, 2018 (arXiv:1803.09820).
    """
    owner = "linear_onecycle_schedule"
    _check_cycle(owner, transition_steps, peak_value, pct_start, div_factor, final_div_factor)
    if not v.is_traced(pct_start):
        v.check_real(owner, "pct_final", pct_final, low=float(pct_start), high=1.0)
    return _interpolate(
        "linear",
        peak_value / div_factor,
        {
            int(pct_start * transition_steps): div_factor,
            int(pct_final * transition_steps): 1.0 / div_factor,
            transition_steps: 1.0 / final_div_factor,
        },
    )
