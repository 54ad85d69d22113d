"""Core types of gradtx: the gradient-transformation protocol, `chain` and `apply_updates`.

A *gradient transformation* is a pair of pure functions

* `init(params) -> state`: builds the state (a pytree of arrays) for a given params tree;
* `update(updates, state, params=None, **extra_args) -> (new_updates, new_state)`: maps incoming
  gradients (or updates from an earlier transformation) to outgoing updates.

The protocol is the same as optax's, so gradtx transformations drop into `optax.chain`,
`flax.training.train_state.TrainState` and `flax.nnx.Optimizer`, and optax transformations drop
into `gradtx.chain`.

Every factory in gradtx is wrapped by [`describe`][gradtx.base.describe], which gives the returned
transformation a readable `repr` (`adam(learning_rate=0.003, b1=0.9, ...)`), records its
hyper-parameters (see [`hyperparams`][gradtx.base.hyperparams]) and checks at trace time that the
state handed to `update` was made by this transformation's `init` for a tree of the same
structure and shapes as the incoming updates.
"""

import collections
import contextvars
import functools
import inspect
import sys
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp

from gradtx._statecheck import check_state as _check_state
from gradtx._statecheck import looks_untyped, lost_types_error, state_types

__all__ = [
    "EmptyState",
    "GradientTransformation",
    "GradientTransformationExtraArgs",
    "OptState",
    "Params",
    "ScalarOrSchedule",
    "Schedule",
    "Updates",
    "apply_updates",
    "chain",
    "describe",
    "hyperparams",
    "identity",
    "named_chain",
    "set_to_zero",
    "stateless",
    "stateless_with_tree_map",
]

Params = Any
"""A pytree of arrays: the parameters being optimized."""
Updates = Any
"""A pytree of arrays shaped like `Params`: gradients or updates."""
OptState = Any
"""A pytree of arrays: the state of a transformation."""
Schedule = Callable[[jax.typing.ArrayLike], jax.typing.ArrayLike]
"""A function of the (integer) step count returning a scalar."""
ScalarOrSchedule = float | jax.Array | Schedule


class TransformInitFn(Protocol):
    def __call__(self, params: Params) -> OptState: ...


class TransformUpdateFn(Protocol):
    def __call__(
        self, updates: Updates, state: OptState, params: Params | None = None, **extra_args: Any
    ) -> tuple[Updates, OptState]: ...


TransformUpdateExtraArgsFn = TransformUpdateFn
"""optax's name for an `update` that accepts extra keyword arguments (every gradtx `update` does)."""


class EmptyState(NamedTuple):
    """The state of a stateless transformation."""


class _TransformationFields(NamedTuple):
    init: TransformInitFn
    update: TransformUpdateFn


_OPTAX_COMPATIBLE: dict[int, type] = {}


def _optax_compatible_class() -> type | None:
    """A subclass of both gradtx's and optax's transformation types, once optax is imported."""
    optax_base = sys.modules.get("optax._src.base")
    extra_args = getattr(optax_base, "GradientTransformationExtraArgs", None)
    if not isinstance(extra_args, type):
        return None
    cls = _OPTAX_COMPATIBLE.get(id(extra_args))
    if cls is None:
        cls = type("GradientTransformation", (GradientTransformation, extra_args), {"__slots__": ()})
        cls.__module__ = __name__
        _OPTAX_COMPATIBLE[id(extra_args)] = cls
    return cls


class GradientTransformation(_TransformationFields):
    """A pair of pure functions `(init, update)`.

    It is a `NamedTuple`, so it unpacks as `init, update = tx` exactly like optax's
    `GradientTransformation`, and any code that only calls `tx.init` and `tx.update` (optax,
    Flax) accepts it. Every gradtx `update` accepts `params` and arbitrary extra keyword arguments
    (for example `value=loss` or `value_fn=f`), forwarding them where they are used.

    Inside optax. `optax.chain` (and optax's wrappers) forward extra keyword arguments only to
    instances of optax's `GradientTransformationExtraArgs`. Once optax has been imported, a gradtx
    transformation answers `isinstance(tx, optax.GradientTransformationExtraArgs)` with True (its
    `__class__` reports a subclass of both types; `type(tx)` is still this class), so
    `optax.chain(gradtx.adam(1e-2), gradtx.reduce_on_plateau())` hands `value=` to both members.
    gradtx does not import optax for this.
    """

    __slots__ = ()

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        return _optax_compatible_class() or GradientTransformation

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (GradientTransformation, tuple(self))

    def __repr__(self) -> str:
        info = getattr(self.update, "_gradtx_info", None)
        if info is None:
            return f"GradientTransformation(init={self.init!r}, update={self.update!r})"
        return _format_call(info[0], info[1])


GradientTransformationExtraArgs = GradientTransformation
"""Alias kept for optax users: every gradtx transformation accepts extra arguments."""


# --------------------------------------------------------------------------------------------
# describe: printable transformations, readable hyper-parameters, state checks
# --------------------------------------------------------------------------------------------

_CHECKING = contextvars.ContextVar("gradtx_checking_state", default=False)


def _short_repr(value: Any) -> str:
    if isinstance(value, GradientTransformation):
        return repr(value)
    if isinstance(value, jax.Array) and jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key):
        try:
            return f"key({jax.random.key_data(value).tolist()})"
        except Exception:  # a tracer
            return "<traced key>"
    if isinstance(value, jax.Array) and value.ndim == 0:
        try:
            return repr(value.item())
        except Exception:  # a tracer
            return "<traced>"
    if isinstance(value, dict) and any(isinstance(v, GradientTransformation) for v in value.values()):
        return "{" + ", ".join(f"{k!r}: {_short_repr(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)) and any(isinstance(v, GradientTransformation) for v in value):
        inner = ", ".join(_short_repr(v) for v in value)
        return f"[{inner}]" if isinstance(value, list) else f"({inner}{',' if len(value) == 1 else ''})"
    if isinstance(value, type) and hasattr(value, "dtype"):  # a scalar type such as jnp.bfloat16
        try:
            return jnp.dtype(value).name
        except TypeError:
            pass
    if callable(value) and not hasattr(value, "_gradtx_info"):
        name = getattr(value, "__qualname__", None) or getattr(value, "__name__", None)
        return f"<function {name}>" if name else repr(value)
    text = repr(value)
    if hasattr(value, "_gradtx_info"):  # a described schedule: print it whole
        return text
    return text if len(text) <= 80 else text[:77] + "..."


def _format_call(name: str, arguments: Mapping[str, Any]) -> str:
    parts: list[str] = []
    for key, value in arguments.items():
        if key.startswith("*"):
            parts.extend(_short_repr(v) for v in value)
        else:
            parts.append(f"{key}={_short_repr(value)}")
    return f"{name}({', '.join(parts)})"


class _DescribedCallable:
    """A callable (e.g. a schedule) that prints as the call that made it."""

    __slots__ = ("__weakref__", "__wrapped__", "_fn", "_gradtx_info")

    def __init__(self, fn: Callable, info: tuple[str, dict[str, Any]]):
        self._fn = fn
        self._gradtx_info = info
        self.__wrapped__ = fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._fn(*args, **kwargs)

    def __repr__(self) -> str:
        return _format_call(*self._gradtx_info)


def describe(factory: Callable | None = None, *, checks_state: bool = True) -> Callable:
    """Decorate a factory of transformations (or schedules) so its results print and report.

    The returned transformation's `repr` is the call that made it with every argument bound
    (defaults included), [`hyperparams`][gradtx.base.hyperparams] returns those arguments, and its
    `update` checks, at trace time, that the state it receives has the structure and shapes that
    its `init` gives for the incoming updates (a state from another transformation raises a
    `TypeError` naming both state types; a mismatched gradient tree raises a `ValueError` naming
    the path and both shapes). Nested described transformations check only once, at the
    outermost level.

    `@describe(checks_state=False)` makes a transformation that does not check its state as a
    whole but lets its members check theirs, each against the updates it actually receives
    (`chain`: a first member may change the updates' shapes, as per-example gradient
    aggregation does).
    """
    if factory is None:
        return functools.partial(describe, checks_state=checks_state)
    signature = inspect.signature(factory)
    name = factory.__name__

    @functools.wraps(factory)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = factory(*args, **kwargs)
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        arguments: dict[str, Any] = {}
        for key, value in bound.arguments.items():
            kind = signature.parameters[key].kind
            if kind is inspect.Parameter.VAR_POSITIONAL:
                arguments["*" + key] = value
            elif kind is inspect.Parameter.VAR_KEYWORD:
                arguments.update(value)
            else:
                arguments[key] = value
        info = (name, arguments)
        if isinstance(result, GradientTransformation):
            return _labelled(result, info, checks_state)
        if callable(result):
            return _DescribedCallable(result, info)
        return result

    wrapper._gradtx_checks_state = checks_state  # type: ignore[attr-defined]  # read by wrappers
    return wrapper


def _labelled(
    tx: GradientTransformation, info: tuple[str, dict[str, Any]], checks_state: bool = True
) -> GradientTransformation:
    inner_update = tx.update
    init = tx.init

    @functools.wraps(inner_update)
    def update(updates, state, params=None, **extra_args):
        if not checks_state or _CHECKING.get():
            return inner_update(updates, state, params, **extra_args)
        _check_state(info[0], init, updates, state)
        token = _CHECKING.set(True)
        try:
            return inner_update(updates, state, params, **extra_args)
        finally:
            _CHECKING.reset(token)

    update._gradtx_info = info  # type: ignore[attr-defined]
    return GradientTransformation(init, update)


def hyperparams(tx: GradientTransformation) -> dict[str, Any]:
    """The arguments a gradtx factory was called with (defaults included).

    Example:
        >>> import gradtx
        >>> gradtx.hyperparams(gradtx.adam(1e-3))["b1"]
        0.9
    """
    info = getattr(tx.update, "_gradtx_info", None)
    if info is None:
        raise TypeError(f"{tx!r} was not made by a gradtx factory; it records no hyper-parameters.")
    return dict(info[1])


# --------------------------------------------------------------------------------------------
# chain and friends
# --------------------------------------------------------------------------------------------


def _extra_arg_filter(update: Callable) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Which extra keyword arguments `update` accepts (all of them if it has `**kwargs`)."""
    try:
        params = inspect.signature(update).parameters
    except (TypeError, ValueError):
        return lambda extra: extra
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return lambda extra: extra
    names = set(list(params)[3:])  # after updates, state, params
    return lambda extra: {k: v for k, v in extra.items() if k in names}


def _chain_transform(transforms: tuple[GradientTransformation, ...]) -> GradientTransformation:
    for i, tx in enumerate(transforms):
        if not (hasattr(tx, "init") and hasattr(tx, "update")):
            raise TypeError(
                f"chain: argument {i} must be a gradient transformation with init and update, "
                f"got {type(tx).__name__}: {tx!r}"
            )
    filters = tuple(_extra_arg_filter(tx.update) for tx in transforms)

    def init(params):
        return tuple(tx.init(params) for tx in transforms)

    def update(updates, state, params=None, **extra_args):
        if not isinstance(state, tuple) and looks_untyped(state):
            raise lost_types_error("chain", state)
        if not isinstance(state, tuple) or len(state) != len(transforms):
            raise TypeError(
                f"chain.update expected a tuple of {len(transforms)} states (one per member), "
                f"got {type(state).__name__} holding state type(s) {state_types(state)}; build the "
                f"state with the chain's own init."
            )
        new_state = []
        for tx, keep, member_state in zip(transforms, filters, state, strict=True):
            updates, member_state = tx.update(updates, member_state, params, **keep(extra_args))
            new_state.append(member_state)
        return updates, tuple(new_state)

    return GradientTransformation(init, update)


@describe(checks_state=False)
def chain(*transforms: GradientTransformation) -> GradientTransformation:
    """Apply transformations one after the other.

    `chain(t1, t2)(g) = t2(t1(g))`; the state is the tuple of the members' states. Extra keyword
    arguments given to `update` (such as `value` or `value_fn`) reach every member whose `update`
    accepts them; members that don't (e.g. plain optax transformations) are called without them.

    Args:
        *transforms: gradient transformations (gradtx or optax), applied in order.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.chain(gradtx.clip_by_global_norm(1.0), gradtx.scale(-0.1))
        >>> state = tx.init({"w": jnp.zeros(3)})
        >>> updates, state = tx.update({"w": jnp.full(3, 10.0)}, state)
    """
    return _chain_transform(transforms)


@describe(checks_state=False)
def named_chain(*transforms: tuple[str, GradientTransformation]) -> GradientTransformation:
    """Like [`chain`][gradtx.chain], with the state an `OrderedDict` keyed by the given names.

    Args:
        *transforms: `(name, transformation)` pairs; names must be unique strings.
    """
    names = []
    for i, item in enumerate(transforms):
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
            raise TypeError(f"named_chain: argument {i} must be a (name, transformation) pair, got {item!r}")
        names.append(item[0])
    if len(set(names)) != len(names):
        raise ValueError(f"named_chain: names must be unique, got {names}")
    inner = _chain_transform(tuple(t for _, t in transforms))

    def init(params):
        return collections.OrderedDict(zip(names, inner.init(params), strict=True))

    def update(updates, state, params=None, **extra_args):
        # jit returns a dict's keys sorted, so the keys are compared as a set, not in order
        if not isinstance(state, Mapping) or sorted(state) != sorted(names):
            got = sorted(state) if isinstance(state, Mapping) else type(state).__name__
            raise TypeError(f"named_chain.update expected a dict state with keys {names}, got {got}")
        updates, new = inner.update(updates, tuple(state[n] for n in names), params, **extra_args)
        return updates, collections.OrderedDict(zip(names, new, strict=True))

    return GradientTransformation(init, update)


def apply_updates(params: Params, updates: Updates) -> Params:
    """Return `params + updates`, leaf by leaf, keeping each param's dtype.

    A `None` update leaves the param as it is. Raises a `ValueError` naming the path when the trees
    or the leaf shapes differ, and a `TypeError` naming the path when a float update would be added
    to an integer param (optax truncates it toward zero, so small updates are silently lost).
    """
    p_paths, _ = jax.tree_util.tree_flatten_with_path(params, is_leaf=lambda x: x is None)
    u_def = jax.tree_util.tree_structure(updates, is_leaf=lambda x: x is None)
    p_def = jax.tree_util.tree_structure(params, is_leaf=lambda x: x is None)
    if p_def != u_def:
        raise ValueError(
            f"apply_updates: params and updates have different tree structures:\n"
            f"params:  {p_def}\nupdates: {u_def}"
        )
    u_leaves = jax.tree_util.tree_leaves(updates, is_leaf=lambda x: x is None)
    out = []
    for (path, p), u in zip(p_paths, u_leaves, strict=True):
        if p is None or u is None:
            out.append(p)
            continue
        if jnp.shape(p) != jnp.shape(u):
            raise ValueError(
                f"apply_updates: shape mismatch at {jax.tree_util.keystr(path)}: params "
                f"{jnp.shape(p)} vs updates {jnp.shape(u)}"
            )
        p_arr, u_arr = jnp.asarray(p), jnp.asarray(u)
        if jnp.issubdtype(p_arr.dtype, jnp.integer) and jnp.issubdtype(u_arr.dtype, jnp.inexact):
            raise TypeError(
                f"apply_updates: params{jax.tree_util.keystr(path)} has integer dtype {p_arr.dtype} "
                f"but its update is {u_arr.dtype}: adding would truncate toward zero (an update "
                f"smaller than 1 would be lost at every step). Keep integer leaves out of the "
                f"optimized params (e.g. nnx.Optimizer(..., wrt=nnx.Param)), or give them integer "
                f"updates."
            )
        out.append((p_arr + u_arr).astype(p_arr.dtype))
    return jax.tree_util.tree_unflatten(p_def, out)


@describe
def identity() -> GradientTransformation:
    """Pass updates through unchanged: `u ← g`."""

    def init(params):
        del params
        return EmptyState()

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        return updates, state

    return GradientTransformation(init, update)


@describe
def set_to_zero() -> GradientTransformation:
    """Replace every update by zeros: `u ← 0` (freezes the params it is applied to)."""

    def init(params):
        del params
        return EmptyState()

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        return jax.tree.map(jnp.zeros_like, updates), state

    return GradientTransformation(init, update)


@describe
def stateless(f: Callable[[Updates, Params | None], Updates]) -> GradientTransformation:
    """A transformation without state: `u ← f(g, params)`.

    Args:
        f: a function of `(updates, params)` returning the new updates tree.
    """
    if not callable(f):
        raise TypeError(f"stateless: f must be callable, got {type(f).__name__}")

    def init(params):
        del params
        return EmptyState()

    def update(updates, state, params=None, **extra_args):
        del extra_args
        return f(updates, params), state

    return GradientTransformation(init, update)


@describe
def stateless_with_tree_map(f: Callable[[jax.Array, jax.Array | None], jax.Array]) -> GradientTransformation:
    """A stateless transformation applied leaf by leaf: `u_i ← f(g_i, p_i)`.

    Args:
        f: a function of one gradient leaf and its param leaf (`None` when no params are given).
    """
    if not callable(f):
        raise TypeError(f"stateless_with_tree_map: f must be callable, got {type(f).__name__}")

    def init(params):
        del params
        return EmptyState()

    def update(updates, state, params=None, **extra_args):
        del extra_args
        if params is None:
            return jax.tree.map(lambda g: f(g, None), updates), state
        return jax.tree.map(f, updates, params), state

    return GradientTransformation(init, update)
