"""Dtypes and random trees: casting, a tree's common dtype, random leaves and per-leaf keys."""

import functools
import inspect
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from gradtx.numerics import tree_cast

__all__ = [
    "tree_cast",
    "tree_cast_like",
    "tree_dtype",
    "tree_random_like",
    "tree_split_key_like",
    "tree_unwrap_random_key_data",
]

_HANDLERS = (None, "promote", "highest", "lowest")


def tree_cast_like(tree: Any, other_tree: Any) -> Any:
    """`tree` with every leaf cast to the dtype of the matching leaf of `other_tree`.

    A leaf of `other_tree` without a dtype (a Python number) leaves its partner unchanged.
    """
    return jax.tree.map(lambda t, o: t.astype(o.dtype) if hasattr(o, "dtype") else t, tree, other_tree)


def _lower(d1: Any, d2: Any) -> Any:
    """The dtype of the two that promotes to the other one."""
    promoted = jnp.promote_types(d1, d2)
    if promoted == d1:
        return d2
    if promoted == d2:
        return d1
    raise ValueError(f"tree_dtype: cannot order {d1} and {d2}: neither promotes to the other")


def _higher(d1: Any, d2: Any) -> Any:
    return d2 if _lower(d1, d2) == d1 else d1


def tree_dtype(tree: Any, mixed_dtype_handler: str | None = None) -> jax.typing.DTypeLike:
    """The dtype of a tree's leaves.

    Args:
        tree: a tree of arrays (an empty tree gives JAX's default float dtype).
        mixed_dtype_handler: default None, which requires all leaves to share one dtype;
            `"promote"`: the dtype all leaves promote to (`jnp.promote_types`); `"highest"` /
            `"lowest"`: the leaf dtype every other one promotes to / from (an error when two leaf
            dtypes cannot be ordered, e.g. bfloat16 and float16).

    Returns:
        A numpy dtype.

    Raises:
        ValueError: mixed dtypes with `mixed_dtype_handler=None`; dtypes that cannot be ordered;
            an unknown `mixed_dtype_handler`.
    """
    if mixed_dtype_handler not in _HANDLERS:
        raise ValueError(
            f"tree_dtype: mixed_dtype_handler must be one of None, 'promote', 'highest', 'lowest', "
            f"got {mixed_dtype_handler!r}"
        )
    leaves = jax.tree.leaves(tree)
    if not leaves:
        return jnp.asarray(leaves).dtype
    dtypes = [jnp.asarray(x).dtype for x in leaves]
    if mixed_dtype_handler is None:
        mismatched = [
            f"{jax.tree_util.keystr(path)}: {jnp.asarray(x).dtype}"
            for path, x in jax.tree_util.tree_leaves_with_path(tree)
            if jnp.asarray(x).dtype != dtypes[0]
        ]
        if mismatched:
            raise ValueError(
                f"tree_dtype: leaves have mixed dtypes (expected dtype={dtypes[0]} everywhere, found "
                f"{', '.join(mismatched)}); pass mixed_dtype_handler='promote', 'highest' or 'lowest'"
            )
        return dtypes[0]
    combine = {"promote": jnp.promote_types, "highest": _higher, "lowest": _lower}[mixed_dtype_handler]
    return functools.reduce(combine, dtypes)


def tree_split_key_like(rng_key: jax.Array, target_tree: Any) -> Any:
    """One key per leaf of `target_tree` (`jax.random.split` of `rng_key`, in leaf order)."""
    treedef = jax.tree.structure(target_tree)
    return jax.tree.unflatten(treedef, jax.random.split(rng_key, treedef.num_leaves))


def tree_random_like(
    rng_key: jax.Array,
    target_tree: Any,
    sampler: Callable[..., jax.typing.ArrayLike] = jax.random.normal,
    dtype: jax.typing.DTypeLike | None = None,
) -> Any:
    """Random leaves shaped (and sharded) like those of `target_tree`.

    Leaf `i` is `sampler(key_i, leaf.shape, dtype or leaf.dtype)` with `key_i` from
    [`tree_split_key_like`][gradtx.tree.split_key_like]; the same key gives optax's numbers.

    Args:
        rng_key: a PRNG key.
        target_tree: a tree of arrays.
        sampler: default `jax.random.normal`; any `sampler(key, shape, dtype)` (given
            `out_sharding=` too when its signature accepts it).
        dtype: default None (each leaf's own dtype); the dtype passed to `sampler`.

    Returns:
        A tree of the structure of `target_tree`.
    """
    keys = tree_split_key_like(rng_key, target_tree)
    if "out_sharding" in inspect.signature(sampler).parameters:
        draw = sampler
    else:

        def draw(key: Any, shape: Any, dtype: Any, *, out_sharding: Any) -> Any:
            del out_sharding
            return sampler(key, shape, dtype)

    return jax.tree.map(
        lambda leaf, key: draw(key, leaf.shape, dtype or leaf.dtype, out_sharding=jax.typeof(leaf).sharding),
        target_tree,
        keys,
    )


def tree_unwrap_random_key_data(input_tree: Any) -> Any:
    """Typed PRNG key leaves replaced by their raw `jax.random.key_data` (for comparisons)."""

    def unwrap(x: Any) -> Any:
        if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.random.key_data(x)
        return x

    return jax.tree.map(unwrap, input_tree)
