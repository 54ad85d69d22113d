"""Calling a user's schedule with checks: one argument in, one real scalar out.

A schedule is `schedule(count) -> scalar` (a stateful one is `schedule(state, **extra_args) ->
scalar`). A function that takes no argument, or returns a vector, would otherwise fail deep inside
the transformation that uses it, or silently broadcast. `call_schedule` and
`check_schedule_value` raise at trace time instead, naming the owner, the hyper-parameter,
the schedule and the expected form.

Used by the wrappers (`inject_hyperparams`); transforms that take schedules can use it too.
"""

import inspect
import numbers
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["call_schedule", "check_schedule_value", "describe_schedule"]

_PLAIN_FORM = "schedule(count) -> scalar"


def describe_schedule(schedule: Any) -> str:
    """A short name for `schedule` in messages: its repr when it has one of its own, else its name."""
    text = repr(schedule)
    if text.startswith("<") and hasattr(schedule, "__qualname__"):
        text = f"<function {schedule.__qualname__}>"
    return text if len(text) <= 120 else text[:117] + "..."


def _suffix(hint: str) -> str:
    return f". {hint}" if hint else ""


def _check_accepts_one_argument(owner: str, name: str, schedule: Callable[..., Any], hint: str) -> None:
    try:
        signature = inspect.signature(schedule)
    except (TypeError, ValueError):
        return  # builtins and the like: let the call itself decide
    try:
        signature.bind(0)
    except TypeError as err:
        raise TypeError(
            f"{owner}: the schedule given for {name}, {describe_schedule(schedule)}, must take the "
            f"step count as its one positional argument ({_PLAIN_FORM}); its signature "
            f"{signature} does not ({err}){_suffix(hint)}"
        ) from None


def check_schedule_value(
    owner: str, name: str, schedule: Any, value: Any, *, form: str = _PLAIN_FORM, hint: str = ""
) -> Any:
    """Return `value` if it is a real scalar (not a bool), else raise naming `schedule`.

    Args:
        owner: the transformation's name, for the message.
        name: the hyper-parameter the schedule gives.
        schedule: the schedule, for the message.
        value: what the schedule returned.
        form: the expected calling form, for the message.
        hint: an optional last sentence for the message (what to do instead).
    """
    try:
        if not isinstance(value, (numbers.Number, np.generic, np.ndarray, jax.Array)):
            raise TypeError
        dtype = jnp.result_type(value)
    except TypeError:
        raise TypeError(
            f"{owner}: the schedule given for {name}, {describe_schedule(schedule)}, must return a "
            f"real scalar ({form}); it returned {type(value).__name__}: {value!r}{_suffix(hint)}"
        ) from None
    if dtype == jnp.bool_ or not jnp.issubdtype(dtype, jnp.number) or jnp.issubdtype(dtype, jnp.complexfloating):
        raise TypeError(
            f"{owner}: the schedule given for {name}, {describe_schedule(schedule)}, must return a "
            f"real scalar ({form}); it returned a value of dtype {dtype}{_suffix(hint)}"
        )
    shape = np.shape(value)  # type: ignore[arg-type]  # numpy's stubs omit numbers.Number (shape ())
    if shape != ():
        raise ValueError(
            f"{owner}: the schedule given for {name}, {describe_schedule(schedule)}, must return a "
            f"scalar ({form}); it returned shape {shape}"
        )
    return value


def call_schedule(
    owner: str, name: str, schedule: Callable[..., Any], count: jax.typing.ArrayLike, *, hint: str = ""
) -> Any:
    """`schedule(count)`, checked: it must take one argument and return a real scalar.

    The arguments are as in `check_schedule_value`; `count` is the step count.

    Raises:
        TypeError: `schedule` cannot be called with one argument, or returns a non-numeric value.
        ValueError: `schedule` returns an array that is not a scalar.
    """
    _check_accepts_one_argument(owner, name, schedule, hint)
    return check_schedule_value(owner, name, schedule, schedule(count), hint=hint)
