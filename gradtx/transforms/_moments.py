"""Shared helpers of the adaptive transformations: moving averages, statistic states, leaf maps."""

from typing import Any

import jax

from gradtx import _validation as _v
from gradtx.numerics import (
    cast,
    debias_factor,
    float_updates,
    full_like_param,
    safe_increment,
    stat_dtype,
)

__all__ = ["adam_debias", "canonical_dtype", "check_beta", "check_nonneg", "map_leaves", "moment_leaf", "stat_full"]


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def canonical_dtype(dtype: Any) -> Any:
    return None if dtype is None else jax.dtypes.canonicalize_dtype(dtype)


def stat_full(params: Any, value: Any) -> Any:
    return jax.tree.map(lambda p: full_like_param(p, value, stat_dtype(p)), params)


def check_beta(owner: str, name: str, value: Any) -> None:
    _v.check_real(owner, name, value, low=0.0, high=1.0, high_inclusive=False)


def check_nonneg(owner: str, name: str, value: Any) -> None:
    _v.check_real(owner, name, value, low=0.0)


def map_leaves(fn: Any, n_out: int, *trees: Any) -> tuple[Any, ...]:
    """Map `fn` (returning an `n_out`-tuple) over trees; return `n_out` trees.

    `trees[0]` is the updates: Python-scalar and integer leaves enter as floats (`float_updates`).
    """
    trees = (float_updates(trees[0]), *trees[1:])
    treedef = jax.tree.structure(trees[0])
    leaves = [treedef.flatten_up_to(t) for t in trees]
    outs = [fn(*args) for args in zip(*leaves, strict=True)]
    return tuple(treedef.unflatten([o[i] for o in outs]) for i in range(n_out))


def moment_leaf(g: jax.Array, m: jax.Array, decay: Any, dtype: Any) -> jax.Array:
    """The moving average `(1 - decay)·g + decay·m` of one leaf, in `dtype`.

    For float32 (or wider) gradients this is optax's expression as it stands: the product
    `decay·m` is rounded in the moment's own dtype (bfloat16 with `mu_dtype=jnp.bfloat16`) before
    it is added, so that the result is bit-identical to optax's. Low-precision gradients are
    widened to `dtype` (at least float32) first, product included.
    """
    if g.dtype == dtype:
        return (1 - decay) * g + cast(decay * m, dtype)
    return (1 - decay) * cast(g, dtype) + decay * cast(m, dtype)


def adam_debias(count: jax.Array, b1: Any, b2: Any, nesterov: bool) -> tuple[Any, Any, Any]:
    """Adam's bias corrections for the incremented `count`: `(1 - b1**t, 1 - b2**t, 1 - b1**(t+1))`.

    The last one is `None` unless `nesterov` (the NAdam first moment needs it).
    """
    bc1 = debias_factor(b1, count)
    bc2 = debias_factor(b2, count)
    bc1_next = debias_factor(b1, safe_increment(count)) if nesterov else None
    return bc1, bc2, bc1_next
