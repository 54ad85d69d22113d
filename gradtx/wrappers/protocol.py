"""Helpers for writing transformations the optax way: `init_empty_state`,
`with_extra_args_support`, the `StatefulSchedule` protocol, and `tree_map_params`, which maps a
function over the params-shaped parts of an optimizer state (gradtx's or optax's)."""

import inspect
import sys
from collections.abc import Callable
from typing import Any, Protocol

import jax

from gradtx.base import EmptyState, GradientTransformation, OptState, Params, _labelled

__all__ = ["StatefulSchedule", "init_empty_state", "tree_map_params", "with_extra_args_support"]


def init_empty_state(params: Params) -> EmptyState:
    """The `init` of a stateless transformation: ignores `params`, returns `EmptyState()`.

    Example:
        >>> import gradtx, jax
        >>> halve = gradtx.GradientTransformation(
        ...     gradtx.init_empty_state, lambda u, s, p=None: (jax.tree.map(lambda g: g / 2, u), s))
        >>> halve.init({"w": 1.0})
        EmptyState()
    """
    del params
    return EmptyState()


def _accepts_extra_args(update: Callable) -> bool:
    try:
        parameters = inspect.signature(update).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def with_extra_args_support(tx: GradientTransformation) -> GradientTransformation:
    """`tx`, with an `update` that accepts (and ignores) extra keyword arguments.

    Every gradtx transformation already accepts them (and so does any `update` with
    `**extra_args`): those are returned unchanged. A plain optax `GradientTransformation`
    whose `update` takes only `(updates, state, params)` is wrapped so that
    `update(updates, state, params, value=loss)` drops `value`. gradtx's `chain` and wrappers
    do this filtering themselves; this is for code that calls `update` directly.

    Args:
        tx: a gradient transformation (anything with `init` and `update`).

    Returns:
        A gradient transformation whose `update` accepts extra keyword arguments.

    References:
        Same behaviour as `optax.with_extra_args_support`.
    """
    if not (callable(getattr(tx, "init", None)) and callable(getattr(tx, "update", None))):
        raise TypeError(
            f"with_extra_args_support: tx must be a gradient transformation with init and update, "
            f"got {type(tx).__name__}: {tx!r}"
        )
    if isinstance(tx, GradientTransformation) or _accepts_extra_args(tx.update):
        return tx
    inner_update = tx.update

    def update(updates, state, params=None, **extra_args):
        del extra_args
        return inner_update(updates, state, params)

    return _labelled(GradientTransformation(tx.init, update), ("with_extra_args_support", {"tx": tx}))


class StatefulSchedule(Protocol):
    """A schedule with a state: `init() -> state`, `update(state, **extra_args) -> state`,
    `__call__(state, **extra_args) -> value`.

    [`inject_stateful_hyperparams`][gradtx.inject_stateful_hyperparams] accepts such objects as
    hyper-parameters (they may read extra arguments of `update`, such as `value=loss`);
    [`WrappedSchedule`][gradtx.WrappedSchedule] makes one from a plain schedule.
    """

    def init(self) -> Any: ...

    def update(self, state: Any, **extra_args: Any) -> Any: ...

    def __call__(self, state: Any, **extra_args: Any) -> jax.typing.ArrayLike: ...


@jax.tree_util.register_pytree_node_class
class _ParamsPlaceholder:
    """A leafless stand-in for the params: `init` on it shows where the params trees sit."""

    def tree_flatten(self) -> tuple[tuple[()], None]:
        return (), None

    @classmethod
    def tree_unflatten(cls, aux: Any, children: Any) -> "_ParamsPlaceholder":
        del aux, children
        return cls()


def _placeholder_class() -> type:
    """optax's placeholder class once optax is imported (optax's `masked` recognizes only it)."""
    state_utils = sys.modules.get("optax.tree_utils._state_utils")
    cls = getattr(state_utils, "_ParamsPlaceholder", None)
    return cls if isinstance(cls, type) else _ParamsPlaceholder


def tree_map_params(
    initable: Callable[[Params], OptState] | Any,
    f: Callable[..., Any],
    state: OptState,
    /,
    *rest: Any,
    transform_non_params: Callable[..., Any] | None = None,
    is_leaf: Callable[[Any], bool] | None = None,
) -> OptState:
    """Apply `f` to every params-shaped tree inside an optimizer state.

    `initable.init` (or `initable` itself, if it is a function) is called on a leafless
    placeholder; the parts of the state where the placeholder lands (Adam's `mu` and `nu`, a
    momentum trace, ...) are the ones made from the params, and `f` maps over their leaves
    (`f(leaf, *rest_leaves)`). Other state leaves (step counts) are kept, or mapped by
    `transform_non_params`. Typical use: sharding specs of the state from those of the params.
    Works for gradtx and optax transformations and states alike.

    Args:
        initable: a gradient transformation (anything with `init`) or an `init` function.
        f: the function applied leaf by leaf to every params-shaped tree of `state`.
        state: the optimizer state, made by `initable`'s `init`.
        *rest: more trees with the params' structure, passed to `f` as further arguments.
        transform_non_params: default None (keep); a function applied to every other leaf.
        is_leaf: passed to `jax.tree.map` over the params-shaped trees.

    Returns:
        A tree with the structure of `state`.

    References:
        Same behaviour as `optax.tree_map_params`.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.adam(1e-3)
        >>> state = tx.init({"w": jnp.ones(3)})
        >>> doubled = gradtx.tree_map_params(tx, lambda x: 2 * x + 1, state)
        >>> doubled[0].mu["w"].tolist(), int(doubled[0].count)
        ([1.0, 1.0, 1.0], 0)
    """
    placeholder_class = _placeholder_class()
    init: Any = getattr(initable, "init", None)
    if not callable(init):
        init = initable
    if not callable(init):
        raise TypeError(
            f"tree_map_params: initable must be a transformation or an init function, "
            f"got {type(initable).__name__}: {initable!r}"
        )
    template = init(placeholder_class())

    def is_placeholder(node: Any) -> bool:
        return isinstance(node, placeholder_class)

    def map_part(template_node: Any, value: Any) -> Any:
        if is_placeholder(template_node):
            return jax.tree.map(f, value, *rest, is_leaf=is_leaf)
        return value if transform_non_params is None else transform_non_params(value)

    return jax.tree.map(map_part, template, state, is_leaf=is_placeholder)
