"""Hyper-parameters held in the state: `inject_hyperparams` and `inject_stateful_hyperparams`.

The wrapped factory is re-called inside every `update` with the hyper-parameters read from the
state, so they are ordinary (traced) arrays: changing `state.hyperparams["learning_rate"]` between
jitted steps changes the step without recompiling, and schedules are evaluated at run time.
"""

import functools
import inspect
import numbers
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradtx._validation import check_dtype
from gradtx.base import GradientTransformation, OptState, Params, describe
from gradtx.numerics import safe_increment
from gradtx.wrappers._common import forwarding_update

__all__ = [
    "InjectHyperparamsState",
    "InjectStatefulHyperparamsState",
    "WrappedSchedule",
    "WrappedScheduleState",
    "inject_hyperparams",
    "inject_stateful_hyperparams",
]


class InjectHyperparamsState(NamedTuple):
    """State of a transformation made by [`inject_hyperparams`][gradtx.inject_hyperparams].

    Attributes:
        count: int32, the number of `update` calls so far (schedules are evaluated at it).
        hyperparams: dict name -> scalar array, the values the last step used (the initial
            values after `init`). Numeric, unscheduled entries may be overwritten by the user;
            scheduled ones are recomputed at every step.
        inner_state: the state of the wrapped transformation.
    """

    count: jax.Array
    hyperparams: dict[str, jax.Array]
    inner_state: OptState


class InjectStatefulHyperparamsState(NamedTuple):
    """State of [`inject_stateful_hyperparams`][gradtx.inject_stateful_hyperparams].

    As [`InjectHyperparamsState`][gradtx.InjectHyperparamsState], plus `hyperparams_states`: the
    state of every (stateful) schedule, keyed by hyper-parameter name.
    """

    count: jax.Array
    hyperparams: dict[str, jax.Array]
    hyperparams_states: dict[str, Any]
    inner_state: OptState


class WrappedScheduleState(NamedTuple):
    """State of a [`WrappedSchedule`][gradtx.WrappedSchedule]: its int32 step count."""

    count: jax.Array


class WrappedSchedule:
    """A stateful schedule made from a plain one: `value(state) = schedule(state.count)`.

    The stateful-schedule protocol is `init() -> state`, `update(state, **extra_args) -> state`
    and `__call__(state, **extra_args) -> value`; stateful schedules may read extra arguments of
    `update` (such as `value=loss`).
    """

    def __init__(self, schedule_fn: Callable[[jax.Array], Any]):
        if not callable(schedule_fn):
            raise TypeError(f"WrappedSchedule: schedule_fn must be callable, got {schedule_fn!r}")
        self.schedule_fn = schedule_fn

    def __repr__(self) -> str:
        return f"WrappedSchedule({self.schedule_fn!r})"

    def init(self) -> WrappedScheduleState:
        return WrappedScheduleState(count=jnp.zeros((), jnp.int32))

    def update(self, state: WrappedScheduleState, **extra_args: Any) -> WrappedScheduleState:
        del extra_args
        return WrappedScheduleState(count=safe_increment(state.count))

    def __call__(self, state: WrappedScheduleState, **extra_args: Any) -> Any:
        del extra_args
        return self.schedule_fn(state.count)


def _is_stateful_schedule(value: Any) -> bool:
    return callable(value) and callable(getattr(value, "init", None)) and callable(getattr(value, "update", None))


def _float_dtype_of(params: Params | None) -> Any:
    """The widest floating dtype among the leaves of `params` (JAX's default float if none)."""
    dtypes = [jnp.result_type(x) for x in jax.tree.leaves(params)]
    floats = [d for d in dtypes if jnp.issubdtype(d, jnp.floating)]
    if not floats:
        return jnp.result_type(float)
    return functools.reduce(jnp.promote_types, floats)


def _to_hyperparam(value: Any, dtype: Any) -> Any:
    """Floats (Python, NumPy or weakly typed arrays) become arrays of `dtype`; others arrays as is."""
    if isinstance(value, jax.Array) and not getattr(value, "weak_type", False):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**31) <= value < 2**31:
        return float(value)  # outside int32: keep the value so the factory's range check names it
    if jnp.issubdtype(jnp.result_type(value), jnp.floating):
        return jnp.asarray(value, dtype)
    return jnp.asarray(value)


def _make_injector(
    inner_factory: Callable[..., GradientTransformation],
    static_args: str | Iterable[str],
    hyperparam_dtype: Any,
    *,
    owner: str,
    stateful: bool,
) -> Callable[..., GradientTransformation]:
    if not callable(inner_factory):
        raise TypeError(f"{owner}: inner_factory must be callable, got {type(inner_factory).__name__}")
    check_dtype(owner, "hyperparam_dtype", hyperparam_dtype)
    static = {static_args} if isinstance(static_args, str) else set(static_args)
    signature = inspect.signature(inner_factory)
    named = {
        name
        for name, p in signature.parameters.items()
        if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    }
    if not static <= set(signature.parameters):
        raise ValueError(
            f"{owner}: static_args must name parameters of {getattr(inner_factory, '__name__', inner_factory)}; "
            f"unknown: {sorted(static - set(signature.parameters))}, parameters: {list(signature.parameters)}"
        )
    inner_name = getattr(inner_factory, "__name__", type(inner_factory).__name__)

    def injected(*args: Any, **kwargs: Any) -> GradientTransformation:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        numeric: dict[str, Any] = {}
        schedules: dict[str, Any] = {}
        for name, value in bound.arguments.items():
            if name not in named or name in static or isinstance(value, (bool, np.bool_)):
                continue
            if callable(value):
                if stateful and _is_stateful_schedule(value):
                    schedules[name] = value
                elif stateful:
                    schedules[name] = WrappedSchedule(value)
                else:
                    schedules[name] = value
            elif isinstance(value, (numbers.Number, jax.Array, np.ndarray, np.generic)):
                if np.ndim(value) != 0:
                    raise ValueError(f"{owner}: hyper-parameter {name} must be a scalar, got shape {np.shape(value)}")
                numeric[name] = value

        def build(values: dict[str, Any]) -> GradientTransformation:
            call = inspect.BoundArguments(signature, bound.arguments.copy())
            call.arguments.update(values)
            return inner_factory(*call.args, **call.kwargs)

        def first_values(dtype: Any) -> dict[str, Any]:
            values = {k: _to_hyperparam(v, dtype) for k, v in numeric.items()}
            for k, sched in schedules.items():
                if stateful:
                    values[k] = _to_hyperparam(sched(sched.init()), dtype)
                else:
                    values[k] = _to_hyperparam(sched(jnp.zeros((), jnp.int32)), dtype)
            return values

        # Build once now, so invalid hyper-parameters fail here with the factory's own message.
        build(first_values(jnp.result_type(float) if hyperparam_dtype is None else hyperparam_dtype))

        def init(params):
            dtype = _float_dtype_of(params) if hyperparam_dtype is None else hyperparam_dtype
            values = first_values(dtype)
            inner_state = build(values).init(params)
            if stateful:
                states = {k: sched.init() for k, sched in schedules.items()}
                return InjectStatefulHyperparamsState(jnp.zeros((), jnp.int32), values, states, inner_state)
            return InjectHyperparamsState(jnp.zeros((), jnp.int32), values, inner_state)

        def update(updates, state, params=None, **extra_args):
            dtype = _float_dtype_of(params) if hyperparam_dtype is None else hyperparam_dtype
            values = {k: _to_hyperparam(v, dtype) for k, v in state.hyperparams.items()}
            if stateful:
                for k, sched in schedules.items():
                    values[k] = _to_hyperparam(sched(state.hyperparams_states[k], **extra_args), dtype)
                new_states = {
                    k: sched.update(state.hyperparams_states[k], **extra_args) for k, sched in schedules.items()
                }
            else:
                for k, sched in schedules.items():
                    values[k] = _to_hyperparam(sched(state.count), dtype)
            inner = build(values)
            new_updates, inner_state = forwarding_update(inner)(updates, state.inner_state, params, **extra_args)
            count = safe_increment(state.count)
            if stateful:
                return new_updates, InjectStatefulHyperparamsState(count, values, new_states, inner_state)
            return new_updates, InjectHyperparamsState(count, values, inner_state)

        return GradientTransformation(init, update)

    injected.__name__ = injected.__qualname__ = f"{owner}({inner_name})"
    injected.__doc__ = inner_factory.__doc__
    injected.__signature__ = signature  # type: ignore[attr-defined]
    return describe(injected)


def inject_hyperparams(
    inner_factory: Callable[..., GradientTransformation],
    static_args: str | Iterable[str] = (),
    hyperparam_dtype: Any = None,
) -> Callable[..., GradientTransformation]:
    """Wrap a factory so its numeric hyper-parameters live in the state as arrays.

    `inject_hyperparams(factory)(**hparams)` returns a transformation whose state is
    `InjectHyperparamsState(count, hyperparams, inner_state)`. At step `t = count` (before the
    increment) it evaluates

        h_k = schedule_k(t)                 for hyper-parameters given as schedules,
        h_k = state.hyperparams[k]          for hyper-parameters given as numbers,

    rebuilds `factory(**h)` with those (traced) arrays, applies its `update`, stores `h` in the
    new state and increments `count`. So you can overwrite a numeric entry between steps, e.g.
    `state.hyperparams["learning_rate"] = jnp.asarray(1e-4, jnp.float32)`, and a jitted step picks
    it up without recompiling (keep its dtype: a value of another dtype or weak type is a new
    input signature for `jax.jit`). Overwriting a scheduled entry has no effect: it is recomputed.

    Booleans, non-numeric arguments and the arguments named in `static_args` are passed to
    `factory` as given. Every other callable argument is treated as a schedule. gradtx factories
    check their concrete arguments when the injected transformation is made and skip the checks
    for the traced values used inside `update`.

    Args:
        inner_factory: a function returning a gradient transformation (gradtx or optax), e.g.
            `gradtx.adam`.
        static_args: default `()`; a name or names of callable arguments that are not
            schedules (e.g. a mask function).
        hyperparam_dtype: default None: float hyper-parameters take the widest floating dtype of
            the params (JAX's default float when there are none); otherwise this floating dtype.

    Returns:
        A factory taking the same arguments as `inner_factory`, numbers or schedules; its results
        print as `inject_hyperparams(adam)(learning_rate=..., ...)`.

    References:
        Same semantics as `optax.inject_hyperparams`.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.inject_hyperparams(gradtx.scale)(step_size=0.5)
        >>> state = tx.init(jnp.zeros(2))
        >>> state.hyperparams["step_size"] = jnp.asarray(2.0, jnp.float32)
        >>> tx.update(jnp.ones(2), state)[0].tolist()
        [2.0, 2.0]
    """
    return _make_injector(inner_factory, static_args, hyperparam_dtype, owner="inject_hyperparams", stateful=False)


def inject_stateful_hyperparams(
    inner_factory: Callable[..., GradientTransformation],
    static_args: str | Iterable[str] = (),
    hyperparam_dtype: Any = None,
) -> Callable[..., GradientTransformation]:
    """Like [`inject_hyperparams`][gradtx.inject_hyperparams], with stateful schedules allowed.

    A stateful schedule is an object with `init() -> s`, `update(s, **extra_args) -> s` and
    `__call__(s, **extra_args) -> value`; at each step the value is `schedule(s, **extra_args)`
    with `s` the schedule's state before its own `update`. Plain schedules are wrapped in
    [`WrappedSchedule`][gradtx.WrappedSchedule], so they see the same step count as in
    `inject_hyperparams`. The state is
    `InjectStatefulHyperparamsState(count, hyperparams, hyperparams_states, inner_state)`.

    Args:
        inner_factory: a function returning a gradient transformation.
        static_args: default `()`; names of callable arguments that are not schedules.
        hyperparam_dtype: default None; as in `inject_hyperparams`.

    Returns:
        A factory taking the same arguments as `inner_factory`.

    References:
        Same semantics as `optax.inject_stateful_hyperparams`.
    """
    return _make_injector(
        inner_factory, static_args, hyperparam_dtype, owner="inject_stateful_hyperparams", stateful=True
    )
