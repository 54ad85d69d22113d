"""Learning-rate schedules: pure functions of the integer step.

A schedule maps a step count (a Python int, an `int32` array or a traced value) to a scalar.
Every factory checks its concrete arguments (raising a `ValueError`/`TypeError` that names the
argument, the value and the accepted range) and returns a callable that prints as the call that
made it, e.g. `cosine_decay_schedule(init_value=0.1, decay_steps=1000, alpha=0.0, exponent=1.0)`.
Names, arguments, defaults and values follow optax 0.2.8 (`optax.schedules`).
"""

from gradtx.schedules.cosine import cosine_decay_schedule, sgdr_schedule, warmup_cosine_decay_schedule
from gradtx.schedules.exponential import exponential_decay, warmup_exponential_decay_schedule
from gradtx.schedules.join import join_schedules
from gradtx.schedules.onecycle import cosine_onecycle_schedule, linear_onecycle_schedule
from gradtx.schedules.piecewise import piecewise_constant_schedule, piecewise_interpolate_schedule
from gradtx.schedules.polynomial import (
    constant_schedule,
    linear_schedule,
    polynomial_schedule,
    warmup_constant_schedule,
)

__all__ = [
    "constant_schedule",
    "cosine_decay_schedule",
    "cosine_onecycle_schedule",
    "exponential_decay",
    "join_schedules",
    "linear_onecycle_schedule",
    "linear_schedule",
    "piecewise_constant_schedule",
    "piecewise_interpolate_schedule",
    "polynomial_schedule",
    "sgdr_schedule",
    "warmup_constant_schedule",
    "warmup_cosine_decay_schedule",
    "warmup_exponential_decay_schedule",
]
