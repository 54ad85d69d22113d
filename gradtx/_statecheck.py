"""Trace-time checks that a state was made by a transformation's own `init` for these updates.

Used by [`describe`][gradtx.base.describe]: the state handed to `update` must have the tree
structure and leaf shapes that `init` gives for a tree shaped like the incoming updates. A state
whose NamedTuple types were lost (a checkpoint restored without a target: tuples come back as
lists, NamedTuples as dicts, empty states as `None`) gets its own message and the way to fix it.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["check_state", "looks_untyped", "lost_types_error", "state_types", "tree_paths"]


def tree_paths(tree: Any) -> dict[str, Any]:
    """`{keystr(path): leaf}` for every leaf of `tree`."""
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {jax.tree_util.keystr(path): leaf for path, leaf in leaves}


def state_types(tree: Any) -> list[str]:
    """Names of the NamedTuple state types in `tree`, outermost first."""
    names: list[str] = []

    def visit(node: Any) -> None:
        if isinstance(node, tuple) and hasattr(node, "_fields"):
            names.append(type(node).__name__)
        if isinstance(node, (tuple, list)):
            for child in node:
                visit(child)
        elif isinstance(node, dict):
            for child in node.values():
                visit(child)

    visit(tree)
    return names


def lost_types_error(name: str, state: Any, expected_types: list[str] | None = None) -> TypeError:
    """The error for a state that lost its NamedTuple types (restored without a target)."""
    expected = f", but expected {expected_types}" if expected_types else ""
    return TypeError(
        f"{name}.update received a state of plain {type(state).__name__}s/dicts with no state "
        f"types{expected}: the state has lost its types, as a checkpoint restored without a target "
        f"does (tuples come back as lists, NamedTuples as dicts, empty states as None). Restore with "
        f"a target, e.g. `checkpointer.restore(path, target=tx.init(params))`, or re-type the "
        f"restored state with `gradtx.retype_state(restored, tx.init(params))`."
    )


def looks_untyped(state: Any) -> bool:
    """True for a tree of plain dicts / lists / None holding arrays: a state that lost its types."""
    return not state_types(state) and isinstance(state, (dict, list, type(None)))


def _as_shape(leaf: Any) -> tuple[int, ...] | None:
    try:
        return tuple(jnp.shape(leaf))
    except TypeError:
        return None


def check_state(name: str, init: Callable, updates: Any, state: Any) -> None:
    """Raise if `state` is not what `init` makes for a tree shaped like `updates`.

    A `TypeError` when the state's types differ (made by another transformation's `init`, or
    restored without its types); a `ValueError` naming the path when the tree or a shape differs.
    """
    try:
        expected = jax.eval_shape(init, updates)
    except (TypeError, ValueError):
        return  # init needs something updates cannot give (e.g. non-array leaves); skip
    expected_def = jax.tree_util.tree_structure(expected)
    got_def = jax.tree_util.tree_structure(state)
    if expected_def != got_def:
        exp_types, got_types = state_types(expected), state_types(state)
        if exp_types and looks_untyped(state):
            raise lost_types_error(name, state, exp_types)
        if exp_types != got_types:
            raise TypeError(
                f"{name}.update received a state of type(s) {got_types or [type(state).__name__]} "
                f"but expected {exp_types or [type(expected).__name__]}: the state was made by a "
                f"different transformation's init. Call {name}.init(params) to build it."
            )
        exp_paths, got_paths = tree_paths(expected), tree_paths(state)
        missing = sorted(set(exp_paths) - set(got_paths))
        extra = sorted(set(got_paths) - set(exp_paths))
        if updates is None or any(x is None for x in jax.tree.leaves(updates, is_leaf=lambda x: x is None)):
            raise ValueError(
                f"{name}.update received None updates (for {extra[:5] or 'the whole tree'}); only "
                f"stateless transformations accept None updates. Give zeros for frozen leaves, or "
                f"wrap the transformation in `masked` so it never sees them."
            )
        raise ValueError(
            f"{name}.update: the updates tree does not match the tree the state was built for; "
            f"state leaves missing for the updates: {missing[:5]}; state leaves with no "
            f"matching update: {extra[:5]}."
        )
    exp_paths, got_paths = tree_paths(expected), tree_paths(state)
    for path, exp_leaf in exp_paths.items():
        got_shape = _as_shape(got_paths[path])
        if got_shape is not None and tuple(exp_leaf.shape) != got_shape:
            raise ValueError(
                f"{name}.update: shape mismatch at state{path}: the updates give shape "
                f"{tuple(exp_leaf.shape)} but the state holds shape {got_shape}. Gradients "
                f"must have the same tree structure and leaf shapes as the params given to init."
            )
