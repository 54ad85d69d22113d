"""Concatenating schedules in time."""

import itertools
from collections.abc import Sequence

from gradtx import _validation as v
from gradtx.base import Schedule, describe
from gradtx.schedules._common import raw_join

__all__ = ["join_schedules"]


@describe
def join_schedules(schedules: Sequence[Schedule], boundaries: Sequence[int]) -> Schedule:
    """Run schedules one after another, each restarted at its boundary.

    With schedules `f_0, …, f_n` and boundaries `b_1 ≤ … ≤ b_n` (`b_0 = 0`):

        η_t = f_k(t - b_k)    for b_k ≤ t < b_{k+1}

    (`f_0` receives `t` itself, also for `t < 0`; `f_n` is used for every `t ≥ b_n`).

    Args:
        schedules: a non-empty sequence of schedules (callables of the step count).
        boundaries: `len(schedules) - 1` non-decreasing integer steps `>= 0` at which the next
            schedule takes over.

    Returns:
        A function of the step count.

    Example:
        >>> import gradtx
        >>> warm = gradtx.linear_schedule(0.0, 1.0, transition_steps=5)
        >>> decay = gradtx.exponential_decay(1.0, transition_steps=10, decay_rate=0.5)
        >>> sched = gradtx.join_schedules([warm, decay], [5])
        >>> round(float(sched(2)), 6), float(sched(15))
        (0.4, 0.5)
    """
    owner = "join_schedules"
    schedules = list(schedules)
    boundaries = list(boundaries)
    if not schedules:
        raise ValueError(f"{owner}: schedules must hold at least one schedule, got {schedules!r}")
    for k, schedule in enumerate(schedules):
        if not callable(schedule):
            raise TypeError(
                f"{owner}: schedules[{k}] must be a schedule (a callable of the step count), got "
                f"{type(schedule).__name__}: {schedule!r}"
            )
    if len(boundaries) != len(schedules) - 1:
        raise ValueError(
            f"{owner}: boundaries must hold len(schedules) - 1 = {len(schedules) - 1} steps, got "
            f"{len(boundaries)}: {boundaries!r}"
        )
    for k, boundary in enumerate(boundaries):
        v.check_int(owner, f"boundaries[{k}]", boundary, low=0)
    concrete = [b for b in boundaries if not v.is_traced(b)]
    if len(concrete) == len(boundaries) and any(a > b for a, b in itertools.pairwise(concrete)):
        raise ValueError(f"{owner}: boundaries must be non-decreasing, got {boundaries!r}")
    return raw_join(schedules, boundaries)
