"""Checkpoints: give a state restored without its types back its NamedTuples and tuples.

A checkpoint library that restores without a target (orbax's `restore(path)` with no `target`)
returns the state's data in plain containers: tuples as lists, NamedTuple states as dicts keyed
by field name, empty states as `None` (or missing). gradtx's `update` then rejects it, since it
checks the state's types. [`retype_state`][gradtx.retype_state] rebuilds the typed state from a
template made by `tx.init(params)`.
"""

from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["retype_state"]


def _is_namedtuple(node: Any) -> bool:
    return isinstance(node, tuple) and hasattr(node, "_fields")


def _child(restored: Any, key: Any, path: str) -> Any:
    """`restored[key]`, where `key` may be a str (dict key / field name) or an int (position)."""
    if isinstance(restored, dict):
        for candidate in (key, str(key)):
            if candidate in restored:
                return restored[candidate]
        raise ValueError(
            f"retype_state: the restored state has no entry {key!r} at {path or 'the root'}; it holds "
            f"{sorted(map(str, restored))}. Was it saved from the same transformation and params tree?"
        )
    if isinstance(restored, (list, tuple)) and isinstance(key, int):
        if key >= len(restored):
            raise ValueError(
                f"retype_state: the restored state has {len(restored)} entries at {path or 'the root'}, "
                f"the template needs at least {key + 1}."
            )
        return restored[key]
    if _is_namedtuple(restored) and isinstance(key, str):
        return getattr(restored, key)
    raise ValueError(
        f"retype_state: at {path or 'the root'} the template has a container but the restored state "
        f"holds {type(restored).__name__}."
    )


def _rebuild_child(template: Any, restored: Any, key: Any, parent: str, path: str) -> Any:
    if not jax.tree_util.tree_leaves(template):  # empty states may be dropped by the round trip
        return template
    return _rebuild(template, _child(restored, key, parent), path)


def _rebuild(template: Any, restored: Any, path: str) -> Any:
    if not jax.tree_util.tree_leaves(template):  # an empty state (EmptyState(), None, ())
        return template
    if _is_namedtuple(template):
        return type(template)(
            *(_rebuild_child(getattr(template, f), restored, f, path, f"{path}.{f}") for f in template._fields)
        )
    if isinstance(template, (tuple, list)):
        items = [_rebuild_child(t, restored, i, path, f"{path}[{i}]") for i, t in enumerate(template)]
        return type(template)(items)
    if isinstance(template, dict):
        return type(template)((k, _rebuild_child(t, restored, k, path, f"{path}[{k!r}]")) for k, t in template.items())
    leaves, treedef = jax.tree_util.tree_flatten(template)
    if treedef.num_leaves == 1 and treedef.num_nodes == 1:  # an array leaf
        value = jnp.asarray(restored)
        if value.shape != jnp.shape(template):
            raise ValueError(
                f"retype_state: shape mismatch at {path or 'the root'}: the template has "
                f"{jnp.shape(template)}, the restored state {value.shape}."
            )
        return value.astype(leaves[0].dtype) if hasattr(leaves[0], "dtype") else value
    # another registered pytree node (e.g. a dataclass or nnx.State): rebuild its children by position
    children = jax.tree_util.tree_flatten(restored)[0]
    if len(children) != len(leaves):
        raise ValueError(
            f"retype_state: at {path or 'the root'} the template has {len(leaves)} leaves, the restored "
            f"state {len(children)}."
        )
    return jax.tree_util.tree_unflatten(treedef, [jnp.asarray(c) for c in children])


def retype_state(restored: Any, template: Any) -> Any:
    """Return `restored`'s arrays in `template`'s tree types.

    `template` is a state of the same transformation for the same params, typically
    `tx.init(params)` (or `jax.eval_shape(tx.init, params)`: only its structure, shapes and dtypes
    are used). `restored` is the same state after a round trip that lost its types: NamedTuples
    may come back as dicts keyed by field name (or as tuples/lists), tuples as lists or as dicts
    keyed `"0"`, `"1"`, ..., empty states as `None` or missing. Each array is matched by its path
    and must have the template's shape; it is cast to the template's dtype.

    Args:
        restored: the untyped state (nested dicts, lists, `None` and arrays).
        template: a typed state of the same structure, e.g. `tx.init(params)`.

    Returns:
        A state with `template`'s tree structure holding `restored`'s values.

    Raises:
        ValueError: naming the path where an entry is missing or a shape differs.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.adam(1e-3)
        >>> params = {"w": jnp.zeros(3)}
        >>> untyped = [{"count": 0, "mu": {"w": [0.0] * 3}, "nu": {"w": [0.0] * 3}}, None]
        >>> type(gradtx.retype_state(untyped, tx.init(params))[0]).__name__
        'ScaleByAdamState'
    """
    return _rebuild(template, restored, "")
