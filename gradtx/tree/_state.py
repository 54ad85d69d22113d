"""Finding and replacing values in optimizer states by key, field or state-class name."""

import dataclasses
from collections.abc import Callable
from typing import Any

import jax

__all__ = ["NamedTupleKey", "tree_get", "tree_get_all_with_path", "tree_set"]


@dataclasses.dataclass(frozen=True)
class NamedTupleKey:
    """Path entry for the field `name` of a NamedTuple of class `tuple_name`.

    The paths of [`tree_get_all_with_path`][gradtx.tree.get_all_with_path] (and those passed to
    the `filtering` functions of [`tree_get`][gradtx.tree.get] and [`tree_set`][gradtx.tree.set])
    use it instead of `jax.tree_util.GetAttrKey`, so that a filter can tell `ScaleByAdamState.mu`
    from `TraceState.trace`-like fields of equal name in different states. `str()` gives
    `"tuple_name.name"`.

    Attributes:
        tuple_name: the NamedTuple's class name (e.g. `"ScaleByAdamState"`).
        name: the field name (e.g. `"count"`).
    """

    tuple_name: str
    name: str

    def __str__(self) -> str:
        return f"{self.tuple_name}.{self.name}"


KeyPath = tuple[Any, ...]
Filtering = Callable[[KeyPath, Any], bool]


def _is_namedtuple(x: Any) -> bool:
    return isinstance(x, tuple) and hasattr(x, "_fields")


def _has_any(node: Any, keys: tuple[Any, ...]) -> bool:
    """True for a NamedTuple with one of `keys` as field or class name, or a dict with one as key."""
    if _is_namedtuple(node):
        return any(k in node._fields for k in keys) or type(node).__name__ in keys
    return isinstance(node, dict) and any(k in node for k in keys)


def _leaves_with_path(tree: Any, stop: Callable[[Any], bool] | None = None) -> list[tuple[KeyPath, Any]]:
    """`jax.tree_util.tree_leaves_with_path`, with NamedTuple fields as `NamedTupleKey`s.

    Nodes satisfying `stop` are returned whole (not flattened further).
    """
    stop_ = stop or (lambda _: False)
    found: list[tuple[KeyPath, Any]] = []
    for path, node in jax.tree_util.tree_leaves_with_path(tree, is_leaf=lambda x: stop_(x) or _is_namedtuple(x)):
        if stop_(node) or not _is_namedtuple(node):
            found.append((path, node))
            continue
        for field in node._fields:
            entry = NamedTupleKey(type(node).__name__, field)
            found += [((*path, entry, *sub), v) for sub, v in _leaves_with_path(getattr(node, field), stop)]
    return found


def _children(path: KeyPath, node: Any) -> list[tuple[KeyPath, Any]]:
    if _is_namedtuple(node):
        name = type(node).__name__
        return [((*path, NamedTupleKey(name, f)), getattr(node, f)) for f in node._fields]
    if isinstance(node, dict):
        return [((*path, jax.tree_util.DictKey(k)), v) for k, v in node.items()]
    raise ValueError(f"tree_get/tree_set: a searched node must be a dict or a NamedTuple, got {type(node)}")


def _entry_key(entry: Any) -> Any:
    """The plain key (str or int) of one path entry."""
    if isinstance(entry, jax.tree_util.DictKey):
        if isinstance(entry.key, (str, int)):
            return entry.key
        raise KeyError(f"tree_set: dict keys must be str or int, got {entry.key!r}")
    if isinstance(entry, (jax.tree_util.FlattenedIndexKey, NamedTupleKey)):
        return entry.key if isinstance(entry, jax.tree_util.FlattenedIndexKey) else entry.name
    if isinstance(entry, jax.tree_util.GetAttrKey):
        return entry.name
    if isinstance(entry, jax.tree_util.SequenceKey):
        return entry.idx
    raise KeyError(f"tree_set: path entry {entry!r} of type {type(entry).__name__} is not supported")


def _find(tree: Any, key: Any) -> list[tuple[KeyPath, Any]]:
    """Every (path, value) of `key` in `tree`, outer matches first, then matches inside them."""

    def has_key(node: Any) -> bool:
        return _has_any(node, (key,))

    matches = [(p, n) for p, n in _leaves_with_path(tree, has_key) if has_key(n)]
    found = []
    for path, node in matches:
        if _is_namedtuple(node) and type(node).__name__ == key:
            found.append((path, node))
        elif _is_namedtuple(node):
            found.append(((*path, NamedTupleKey(type(node).__name__, key)), getattr(node, key)))
        else:
            found.append(((*path, jax.tree_util.DictKey(key)), node[key]))
    for path, node in matches:
        for child_path, child in _children(path, node):
            found += [((*child_path, *sub), v) for sub, v in _find(child, key)]
    return found


def tree_get_all_with_path(tree: Any, key: Any, filtering: Filtering | None = None) -> list[tuple[KeyPath, Any]]:
    """Every value stored under `key` in `tree`, with its path.

    `key` is a dict key, a NamedTuple field name, or a NamedTuple class name (which finds the
    state itself: `"ScaleByAdamState"`). Paths are tuples of `jax.tree_util` key entries with
    NamedTuple fields as [`NamedTupleKey`][gradtx.tree_utils.NamedTupleKey]; print them with
    `jax.tree_util.keystr`. Works on gradtx and optax states alike (same class and field names).

    Args:
        tree: the tree to search (usually an optimizer state).
        key: the key, field or class name.
        filtering: default None; `filtering(path, value) -> bool` keeps only some matches.

    Returns:
        A list of `(path, value)` pairs, outer matches first.

    Example:
        >>> import jax, jax.numpy as jnp, gradtx
        >>> state = gradtx.adam(1e-3).init(jnp.zeros(2))
        >>> [jax.tree_util.keystr(p) for p, _ in gradtx.tree.get_all_with_path(state, "count")]
        ['[0].ScaleByAdamState.count']
    """
    found = _find(tree, key)
    if filtering:
        found = [(path, value) for path, value in found if filtering(path, value)]
    return found


def tree_get(tree: Any, key: Any, default: Any = None, filtering: Filtering | None = None) -> Any:
    """The one value stored under `key` in `tree` (`default` when there is none).

    Args:
        tree: the tree to search (usually an optimizer state).
        key: a dict key, NamedTuple field name or NamedTuple class name.
        default: default None, returned when nothing matches.
        filtering: default None; `filtering(path, value) -> bool` keeps only some matches
            (see [`tree_get_all_with_path`][gradtx.tree.get_all_with_path]).

    Returns:
        The matching value.

    Raises:
        KeyError: more than one value matches.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> int(gradtx.tree.get(gradtx.adam(1e-3).init(jnp.zeros(2)), "count"))
        0
    """
    found = tree_get_all_with_path(tree, key, filtering=filtering)
    if len(found) > 1:
        raise KeyError(f"tree_get: found {len(found)} values for {key!r} in {tree}; narrow it with filtering")
    return found[0][1] if found else default


def tree_set(tree: Any, filtering: Filtering | None = None, /, **kwargs: Any) -> Any:
    """A copy of `tree` with the values under the given keys replaced.

    Every occurrence of each keyword (a dict key, NamedTuple field name or NamedTuple class
    name) that passes `filtering` is replaced by the keyword's value.

    Args:
        tree: the tree (usually an optimizer state).
        filtering: default None (positional only); `filtering(path, value) -> bool` selects
            which occurrences to replace.
        **kwargs: key = new value.

    Returns:
        A tree with the structure of `tree` (up to the replaced values).

    Raises:
        KeyError: a keyword matches nothing (after filtering).

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> state = gradtx.tree.set(gradtx.adam(1e-3).init(jnp.zeros(2)), count=jnp.asarray(5))
        >>> int(state[0].count)
        5
    """
    for key in kwargs:
        if not tree_get_all_with_path(tree, key, filtering):
            qualifier = " given the filtering" if filtering else ""
            raise KeyError(f"tree_set: found no values matching {key!r}{qualifier} in {tree}")
    keys = tuple(kwargs)

    def has_key(node: Any) -> bool:
        return _has_any(node, keys)

    def replace(path: KeyPath, node: Any) -> Any:
        if not has_key(node):
            return node
        name = type(node).__name__
        if _is_namedtuple(node) and name in kwargs and (filtering is None or filtering(path, node)):
            return kwargs[name]
        new_children = {}
        for child_path, child in _children(path, node):
            key = _entry_key(child_path[-1])
            if key in kwargs and (filtering is None or filtering(child_path, child)):
                new_children[key] = kwargs[key]
            elif isinstance(child, (dict, list, tuple)):
                new_children[key] = replace(child_path, child)
            else:
                new_children[key] = child
        return node._replace(**new_children) if _is_namedtuple(node) else new_children

    treedef = jax.tree.structure(tree, is_leaf=has_key)
    return treedef.unflatten([replace(path, node) for path, node in _leaves_with_path(tree, has_key)])
