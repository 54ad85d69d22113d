"""Recording measurements of the updates inside a chain: `snapshot` (the last value),
`monitor` (several, stateful ones included) and `measure_with_ema` (a moving average)."""

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from gradtx._validation import check_bool, check_dtype, check_real
from gradtx.base import GradientTransformation, OptState, Updates, chain, describe, stateless
from gradtx.numerics import float_updates
from gradtx.transforms.momentum import ema
from gradtx.wrappers._common import forwarding_update

__all__ = ["MonitorState", "SnapshotState", "measure_with_ema", "monitor", "snapshot"]


class SnapshotState(NamedTuple):
    """State of [`snapshot`][gradtx.snapshot].

    Attributes:
        measurement: `{measure_name: measure(updates)}` for the last updates (for the params
            after `init`). `optax.tree.get(state, measure_name)` finds it.
    """

    measurement: dict[str, Any]


class MonitorState(NamedTuple):
    """State of [`monitor`][gradtx.monitor].

    Attributes:
        measurements: `{name: value}`, the values the last `update` measured (empty after
            `init`). `optax.tree.get(state, name)` finds them.
        measure_states: the states of the measuring transformations, in the order of the
            `measures` mapping (`EmptyState()` for a plain function).
    """

    measurements: dict[str, Any]
    measure_states: tuple[OptState, ...]


def _check_measure(owner: str, name: str, measure: Any) -> None:
    if not callable(measure):
        raise TypeError(f"{owner}: {name} must be a function of the updates, got {type(measure).__name__}: {measure!r}")


@describe
def snapshot(measure_name: str, measure: Callable[[Updates], Any]) -> GradientTransformation:
    """Record `measure(updates)` in the state and pass the updates through unchanged.

        state.measurement[measure_name] = measure(g);    u = g

    Put it between two members of a chain to see the updates at that point (e.g. their norm
    before clipping); read it back with `state[i].measurement[measure_name]` or
    `optax.tree.get(state, measure_name)`.

    Args:
        measure_name: the key of the measurement (a string).
        measure: a function of the updates tree returning a pytree of arrays. `init` calls it
            on the params, so the state has its final layout from the start.

    Returns:
        A gradient transformation with state `SnapshotState(measurement)`.

    References:
        Same semantics as `optax.snapshot`.

    Example:
        >>> import gradtx, jax, jax.numpy as jnp
        >>> norm = lambda u: jnp.sqrt(sum(jnp.sum(x * x) for x in jax.tree.leaves(u)))
        >>> tx = gradtx.chain(gradtx.snapshot("norm", norm), gradtx.clip_by_global_norm(1.0))
        >>> state = tx.init(jnp.zeros(2))
        >>> _, state = tx.update(jnp.array([3.0, 4.0]), state)
        >>> float(state[0].measurement["norm"])
        5.0
    """
    if not isinstance(measure_name, str):
        raise TypeError(f"snapshot: measure_name must be a string, got {type(measure_name).__name__}: {measure_name!r}")
    _check_measure("snapshot", "measure", measure)

    def init(params):
        return SnapshotState(measurement={measure_name: measure(params)})

    def update(updates, state, params=None, **extra_args):
        del state, params, extra_args
        return updates, SnapshotState(measurement={measure_name: measure(updates)})

    return GradientTransformation(init, update)


def _as_measure(name: str, measure: Any) -> GradientTransformation:
    """A measuring transformation: its `update` returns the measurement as its "updates"."""
    if callable(getattr(measure, "init", None)) and callable(getattr(measure, "update", None)):
        return GradientTransformation(measure.init, forwarding_update(measure))
    _check_measure("monitor", f"measures[{name!r}]", measure)
    return stateless(lambda updates, params: measure(updates))


@describe(checks_state=False)
def monitor(measures: Mapping[str, Any]) -> GradientTransformation:
    """Record several measurements of the updates, stateful ones included; pass the updates through.

    For every `name, m` of `measures`, in order:

        (value, s_m) = m.update(g, s_m, params)      (m a transformation)
        value = m(g)                                 (m a plain function)
        state.measurements[name] = value;            u = g

    A measuring transformation returns its measurement in place of the updates, as
    [`measure_with_ema`][gradtx.measure_with_ema] does; its state is kept in
    `state.measure_states`. The measurements are empty after `init` and filled by the first
    `update` (so under `jax.jit` the first step's state has a different layout from `init`'s, as
    in optax). Each measuring transformation checks its own state.

    Args:
        measures: a mapping from name (a string) to a plain function of the updates or a
            gradient transformation (gradtx or optax) that measures them; extra keyword
            arguments of `update` reach the transformations that accept them.

    Returns:
        A gradient transformation with state `MonitorState(measurements, measure_states)`.

    References:
        Same semantics as `optax.monitor`.

    Example:
        >>> import gradtx, jax, jax.numpy as jnp
        >>> norm = lambda u: jnp.sqrt(sum(jnp.sum(x * x) for x in jax.tree.leaves(u)))
        >>> ema = gradtx.measure_with_ema(norm, decay=0.5, debias=False)
        >>> tx = gradtx.monitor({"norm": norm, "norm_ema": ema})
        >>> state = tx.init(jnp.zeros(2))
        >>> _, state = tx.update(jnp.array([3.0, 4.0]), state)
        >>> float(state.measurements["norm"]), float(state.measurements["norm_ema"])
        (5.0, 2.5)
    """
    owner = "monitor"
    if not isinstance(measures, Mapping):
        raise TypeError(
            f"{owner}: measures must be a mapping from name to a function or transformation, "
            f"got {type(measures).__name__}: {measures!r}"
        )
    for name in measures:
        if not isinstance(name, str):
            raise TypeError(f"{owner}: the names of measures must be strings, got {name!r}")
    names = tuple(measures)
    members = tuple(_as_measure(name, measures[name]) for name in names)

    def init(params):
        return MonitorState(measurements={}, measure_states=tuple(m.init(params) for m in members))

    def update(updates, state, params=None, **extra_args):
        if not isinstance(state, MonitorState) or len(state.measure_states) != len(members):
            raise TypeError(
                f"{owner}.update expected a MonitorState with {len(members)} measure states, got "
                f"{type(state).__name__}; build the state with the monitor's own init."
            )
        measurements, new_states = {}, []
        for name, member, member_state in zip(names, members, state.measure_states, strict=True):
            measurements[name], member_state = member.update(updates, member_state, params, **extra_args)
            new_states.append(member_state)
        return updates, MonitorState(measurements=measurements, measure_states=tuple(new_states))

    return GradientTransformation(init, update)


@describe
def measure_with_ema(
    measure: Callable[[Updates], Any],
    decay: float,
    debias: bool = True,
    accumulator_dtype: Any = None,
) -> GradientTransformation:
    r"""A measuring transformation: the moving average of `measure(updates)`.

    With `x_t = measure(g_t)` (made floating point: a boolean or integer measurement is
    averaged as float32) and `β` = `decay`, its "updates" are the measurement's average
    ([`ema`][gradtx.ema]):

    $$
    m_t = \beta\, m_{t-1} + (1 - \beta)\, x_t, \qquad \text{out}_t = m_t / (1 - \beta^t)
    $$

    (without the division when `debias=False`). Use it as a value of
    [`monitor`][gradtx.monitor]'s `measures`; on its own it replaces the updates by the average.

    Args:
        measure: a function of the updates tree returning a pytree of arrays.
        decay: real in `[0, 1]`, the decay `β`.
        debias: default True, divide by `1 - β^t` (Adam-style bias correction).
        accumulator_dtype: default None (the measurement's dtype), a floating dtype for `m`.

    Returns:
        `chain(stateless(measure), ema(decay, debias, accumulator_dtype))` with the average
        shaped like the measurement: state `(EmptyState(), EmaState(count, ema))`.

    References:
        Same numbers as `optax.measure_with_ema` (for a floating-point measurement; optax's
        initial state holds a boolean measurement's average as a boolean, which its first
        update turns into a float).
    """
    owner = "measure_with_ema"
    _check_measure(owner, "measure", measure)
    check_real(owner, "decay", decay, low=0.0, high=1.0)
    check_bool(owner, "debias", debias)
    check_dtype(owner, "accumulator_dtype", accumulator_dtype, allow_complex=True)

    def measured(updates):
        return float_updates(measure(updates))

    average = ema(decay, debias, accumulator_dtype)
    on_measurement = GradientTransformation(lambda params: average.init(measured(params)), average.update)
    return chain(stateless(lambda updates, params: measured(updates)), on_measurement)

