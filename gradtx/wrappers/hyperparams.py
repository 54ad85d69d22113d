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

from gradtx._schedule_check import call_schedule, check_schedule_value
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
    """The state layout of optax's deprecated `InjectHyperparamsState`, kept for old checkpoints.

    [`inject_hyperparams`][gradtx.inject_hyperparams] makes an
    [`InjectStatefulHyperparamsState`][gradtx.InjectStatefulHyperparamsState], as optax 0.2.8 does;
    this class only has no `hyperparams_states` field.
    """

    count: jax.Array  # type: ignore[assignment]  # optax's field name (shadows tuple.count)
    hyperparams: dict[str, jax.Array]
    inner_state: OptState


class InjectStatefulHyperparamsState(NamedTuple):
    """State of [`inject_hyperparams`][gradtx.inject_hyperparams] (and `inject_stateful_hyperparams`).

    The same fields as optax's, so `optax.tree.get(state, "learning_rate")` and the other optax
    tree utilities find the same entries.

    Attributes:
        count: int32, the number of `update` calls so far.
        hyperparams: dict name -> scalar array, the values the last step used (the initial
            values after `init`). Numeric, unscheduled entries may be overwritten by the user;
            scheduled ones are recomputed at every step.
        hyperparams_states: dict name -> state of that hyper-parameter's schedule: a
            [`WrappedScheduleState`][gradtx.WrappedScheduleState] (its step count) for a plain
            schedule, the schedule's own state for a stateful one.
        inner_state: the state of the wrapped transformation.
    """

    count: jax.Array  # type: ignore[assignment]  # optax's field name (shadows tuple.count)
    hyperparams: dict[str, jax.Array]
    hyperparams_states: dict[str, Any]
    inner_state: OptState


class WrappedScheduleState(NamedTuple):
    """State of a [`WrappedSchedule`][gradtx.WrappedSchedule]: its int32 step count."""

    count: jax.Array  # type: ignore[assignment]  # optax's field name (shadows tuple.count)


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
    """optax's `StatefulSchedule` protocol: callable, with `init` and `update` methods."""
    return callable(value) and callable(getattr(value, "init", None)) and callable(getattr(value, "update", None))


class _CheckedSchedule(WrappedSchedule):
    """A `WrappedSchedule` whose value is checked: one argument in, one real scalar out."""

    def __init__(self, schedule_fn: Callable[[jax.Array], Any], owner: str, name: str):
        super().__init__(schedule_fn)
        self._owner, self._name = owner, name

    def __call__(self, state: WrappedScheduleState, **extra_args: Any) -> Any:
        del extra_args
        hint = f"If {self._name} is not a schedule, name it in static_args."
        return call_schedule(self._owner, self._name, self.schedule_fn, state.count, hint=hint)


def _default_dtype(params: Params | None) -> Any:
    """The dtype of float hyper-parameters when `hyperparam_dtype` is None.

    optax takes the widest dtype of the params (JAX's default float when there are none); gradtx
    takes the widest *floating* dtype of the params but never narrower than float32, so that
    float32 and float64 params give optax's dtype while bfloat16/float16 params keep
    `b2=0.999` and `eps=1e-8` in float32 (in bfloat16 they round to 1 and 0 in optax).
    """
    dtypes = [jnp.result_type(x) for x in jax.tree.leaves(params)]
    floats = [d for d in dtypes if jnp.issubdtype(d, jnp.floating)]
    if not floats:
        return jnp.result_type(float)
    return jnp.promote_types(functools.reduce(jnp.promote_types, floats), jnp.float32)


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
    stateful_form = "schedule(state, **extra_args) -> scalar"

    def injected(*args: Any, **kwargs: Any) -> GradientTransformation:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        numeric: dict[str, Any] = {}
        schedules: dict[str, Any] = {}
        for name, value in bound.arguments.items():
            if name not in named or name in static or isinstance(value, (bool, np.bool_)):
                continue
            if _is_stateful_schedule(value):
                schedules[name] = value
            elif callable(value):
                schedules[name] = _CheckedSchedule(value, owner, name)
            elif isinstance(value, (numbers.Number, jax.Array, np.ndarray, np.generic)):
                if np.ndim(value) != 0:  # type: ignore[arg-type]  # numpy's stubs omit numbers.Number
                    raise ValueError(f"{owner}: hyper-parameter {name} must be a scalar, got shape {np.shape(value)}")  # type: ignore[arg-type]
                numeric[name] = value

        def build(values: dict[str, Any]) -> GradientTransformation:
            call = inspect.BoundArguments(signature, bound.arguments.copy())
            call.arguments.update(values)
            return inner_factory(*call.args, **call.kwargs)

        def scheduled(name: str, sched_state: Any, dtype: Any, extra_args: dict[str, Any]) -> Any:
            sched = schedules[name]
            value = sched(sched_state, **extra_args)
            if not isinstance(sched, _CheckedSchedule):
                hint = f"If {name} is not a schedule, name it in static_args."
                value = check_schedule_value(owner, name, sched, value, form=stateful_form, hint=hint)
            return _to_hyperparam(value, dtype)

        def first_values(dtype: Any, states: dict[str, Any]) -> dict[str, Any]:
            values = {k: _to_hyperparam(v, dtype) for k, v in numeric.items()}
            values.update({k: scheduled(k, states[k], dtype, {}) for k in schedules})
            return values

        # Build once now, so invalid hyper-parameters (and schedules) fail here with a clear message.
        construction_dtype = jnp.result_type(float) if hyperparam_dtype is None else hyperparam_dtype
        build(first_values(construction_dtype, {k: sched.init() for k, sched in schedules.items()}))

        def init(params):
            dtype = _default_dtype(params) if hyperparam_dtype is None else hyperparam_dtype
            states = {k: sched.init() for k, sched in schedules.items()}
            values = first_values(dtype, states)
            inner_state = build(values).init(params)
            return InjectStatefulHyperparamsState(jnp.zeros((), jnp.int32), values, states, inner_state)

        def update(updates, state, params=None, **extra_args):
            dtype = _default_dtype(params) if hyperparam_dtype is None else hyperparam_dtype
            values = {k: _to_hyperparam(v, dtype) for k, v in state.hyperparams.items()}
            for k in schedules:
                values[k] = scheduled(k, state.hyperparams_states[k], dtype, extra_args)
            new_states = {k: sched.update(state.hyperparams_states[k], **extra_args) for k, sched in schedules.items()}
            inner = build(values)
            new_updates, inner_state = forwarding_update(inner)(updates, state.inner_state, params, **extra_args)
            count = safe_increment(state.count)
            return new_updates, InjectStatefulHyperparamsState(count, values, new_states, inner_state)

        return GradientTransformation(init, update)

    injected.__name__ = injected.__qualname__ = f"{owner}({inner_name})"
    injected.__doc__ = inner_factory.__doc__
    injected.__signature__ = signature  # type: ignore[attr-defined]
    # a factory whose transformations let their members check their own states (e.g. dpsgd, whose
    # first member turns per-example gradients into params-shaped ones) is wrapped the same way
    return describe(injected, checks_state=getattr(inner_factory, "_gradtx_checks_state", True))


def inject_hyperparams(
    inner_factory: Callable[..., GradientTransformation],
    static_args: str | Iterable[str] = (),
    hyperparam_dtype: Any = None,
) -> Callable[..., GradientTransformation]:
    """Wrap a factory so its numeric hyper-parameters live in the state as arrays.

    `inject_hyperparams(factory)(**hparams)` returns a transformation whose state is
    `InjectStatefulHyperparamsState(count, hyperparams, hyperparams_states, inner_state)`, the
    layout of optax 0.2.8. At step `t = count` (before the increment) it evaluates

        h_k = schedule_k(t)                 for hyper-parameters given as schedules,
        h_k = schedule_k(s_k, **extra)      for stateful schedules, s_k = hyperparams_states[k],
        h_k = state.hyperparams[k]          for hyper-parameters given as numbers,

    rebuilds `factory(**h)` with those (traced) arrays, applies its `update`, stores `h` in the
    new state and increments `count`. So you can overwrite a numeric entry between steps, e.g.
    `state.hyperparams["learning_rate"] = jnp.asarray(1e-4, jnp.float32)`, and a jitted step picks
    it up without recompiling (keep its dtype: a value of another dtype or weak type is a new
    input signature for `jax.jit`). Overwriting a scheduled entry has no effect: it is recomputed.

    Booleans, non-numeric arguments and the arguments named in `static_args` are passed to
    `factory` as given. Every other callable argument is a schedule: a stateful one when it has
    `init() -> s` and `update(s, **extra_args) -> s` methods (optax's `StatefulSchedule`
    protocol, e.g. [`WrappedSchedule`][gradtx.WrappedSchedule]: its state goes to
    `hyperparams_states[k]` and is updated after each step, with the extra arguments of
    `update` such as `value=loss`), a plain `schedule(count) -> scalar` otherwise (it is wrapped
    in a `WrappedSchedule`, whose count lands in `hyperparams_states[k]`, as in optax). A
    schedule that cannot be called with one argument, or that returns anything but a real
    scalar, raises a `TypeError`/`ValueError` naming it when the transformation is made or
    traced. gradtx factories check their concrete arguments when the injected transformation is
    made and skip the checks for the traced values used inside `update`.

    Args:
        inner_factory: a function returning a gradient transformation (gradtx or optax), e.g.
            `gradtx.adam`.
        static_args: default `()`; a name or names of callable arguments that are not
            schedules (e.g. a mask function).
        hyperparam_dtype: default None: float hyper-parameters take the widest floating dtype of
            the params, but at least float32 (JAX's default float when there are none), so
            bfloat16/float16 params keep `b2=0.999` and `eps=1e-8` exact to float32 where optax
            would round them to 1 and 0; with float32 or float64 params this is optax's dtype.
            Otherwise this floating dtype (as optax's `hyperparam_dtype`).

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
    return _make_injector(inner_factory, static_args, hyperparam_dtype, owner="inject_hyperparams")


def inject_stateful_hyperparams(
    inner_factory: Callable[..., GradientTransformation],
    static_args: str | Iterable[str] = (),
    hyperparam_dtype: Any = None,
) -> Callable[..., GradientTransformation]:
    """The same as [`inject_hyperparams`][gradtx.inject_hyperparams] (kept for optax users).

    Since optax 0.1.9 `inject_hyperparams` accepts stateful schedules too and
    `optax.inject_stateful_hyperparams` is a deprecated alias of it. A stateful schedule is an
    object with `init() -> s`, `update(s, **extra_args) -> s` and
    `__call__(s, **extra_args) -> value`; at each step the value is `schedule(s, **extra_args)`
    with `s` the schedule's state before its own `update`. Plain schedules are wrapped in
    [`WrappedSchedule`][gradtx.WrappedSchedule]. The state is
    `InjectStatefulHyperparamsState(count, hyperparams, hyperparams_states, inner_state)`.

    Args:
        inner_factory: a function returning a gradient transformation.
        static_args: default `()`; names of callable arguments that are not schedules.
        hyperparam_dtype: default None; as in `inject_hyperparams`.

    Returns:
        A factory taking the same arguments as `inner_factory`.

    References:
        Same semantics as `optax.inject_stateful_hyperparams` (without its deprecation warning).
    """
    return _make_injector(inner_factory, static_args, hyperparam_dtype, owner="inject_stateful_hyperparams")
