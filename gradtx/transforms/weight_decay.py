r"""Decoupled weight decay: add `weight_decay · params` to the updates."""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradtx import _validation as _v
from gradtx._schedule_check import call_schedule
from gradtx.base import EmptyState, GradientTransformation, Params, ScalarOrSchedule, describe
from gradtx.numerics import cast, float_updates, safe_increment, tree_as_arrays
from gradtx.wrappers.masking import MaskedState

__all__ = ["AddDecayedWeightsState", "WeightDecaySchedule", "add_decayed_weights", "decayed_weights_leaf"]


class WeightDecaySchedule(NamedTuple):
    """State of [`add_decayed_weights`][gradtx.add_decayed_weights] with a scheduled decay.

    Named as optax names it, so that the state trees of the two libraries have the same layout
    (it is also exported as `AddDecayedWeightsState`).
    """

    count: jax.Array  # type: ignore[assignment]  # optax's field name (shadows tuple.count)


AddDecayedWeightsState = WeightDecaySchedule


def decayed_weights_leaf(g: jax.Array, p: jax.Array, weight_decay: Any) -> jax.Array:
    """`g + weight_decay · p` for one leaf, in `g`'s dtype."""
    dtype = jnp.promote_types(g.dtype, p.dtype)
    return (cast(g, dtype) + weight_decay * cast(p, dtype)).astype(g.dtype)


def _is_static_bool(x: Any) -> bool:
    return isinstance(x, (bool, np.bool_))


def _broadcast_mask(mask_tree: Any, params: Any) -> list[Any]:
    """Expand a mask (a tree of bools that is a prefix of `params`) to one flag per param leaf."""
    try:
        full = jax.tree.map(
            lambda m, sub: jax.tree.map(lambda _: m, sub), mask_tree, params
        )
    except ValueError as err:
        raise ValueError(
            "add_decayed_weights: mask must be a tree of booleans with the structure of the "
            f"params (or a prefix of it); {err}"
        ) from None
    flags = jax.tree.leaves(full)
    for flag in flags:
        if _is_static_bool(flag):
            continue
        if isinstance(flag, jax.Array) and flag.dtype == jnp.bool_ and flag.ndim == 0:
            continue  # a (possibly traced) scalar boolean
        raise TypeError(
            "add_decayed_weights: mask leaves must be booleans (True decays the leaf), got "
            f"{type(flag).__name__}: {flag!r}"
        )
    return flags


@describe
def add_decayed_weights(
    weight_decay: ScalarOrSchedule = 0.0,
    mask: Any | Callable[[Params], Any] | None = None,
) -> GradientTransformation:
    r"""Add decoupled weight decay: $u = g + \lambda\, p$.

    Placed before the learning-rate scaling this gives AdamW's decoupled decay
    $p \leftarrow p - \eta(\hat m/(\sqrt{\hat v}+\epsilon) + \lambda p)$.

    Args:
        weight_decay: the rate $\lambda$, default 0.0, >= 0; or a schedule (callable of the
            int32 step count, evaluated at the count before this update), in which case the
            state is `WeightDecaySchedule(count)` (alias `AddDecayedWeightsState`), as in optax.
        mask: default None (decay every leaf). Otherwise a tree of booleans with the params'
            structure (or a prefix of it), True where decay applies, or a callable
            `mask(params)` returning such a tree (e.g. to skip biases and norms:
            `lambda p: jax.tree.map(lambda x: x.ndim > 1, p)`). Leaves where the mask is
            False pass unchanged. With a mask the state is wrapped in
            `MaskedState(inner_state=...)`, as optax's `masked` wraps it.

    Returns:
        A `GradientTransformation`; its `update` requires `params` (a `ValueError` otherwise).

    References:
        Loshchilov & Hutter, *Decoupled Weight Decay Regularization*, ICLR 2019.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.add_decayed_weights(0.1)
        >>> p = jnp.array([1.0, -2.0])
        >>> tx.update(jnp.zeros(2), tx.init(p), p)[0]
        Array([ 0.1, -0.2], dtype=float32)
    """
    owner = "add_decayed_weights"
    _v.check_schedule_or_real(owner, "weight_decay", weight_decay, low=0.0)
    scheduled = callable(weight_decay)

    def init(params):
        del params
        state = AddDecayedWeightsState(count=jnp.zeros([], jnp.int32)) if scheduled else EmptyState()
        # as optax, which applies a mask through `masked`: the state is wrapped in a MaskedState
        return state if mask is None else MaskedState(inner_state=state)

    def update(updates, state, params=None, **extra_args):
        del extra_args
        if mask is None:
            return _update(updates, state, params)
        new_updates, inner_state = _update(updates, state.inner_state, params)
        return new_updates, MaskedState(inner_state=inner_state)

    def _update(updates, state, params):
        if params is None:
            raise ValueError(
                f"{owner}.update: params are required to add weight decay (u = g + "
                f"weight_decay * params); call update(updates, state, params)."
            )
        if scheduled:
            rate = call_schedule(owner, "weight_decay", weight_decay, state.count)  # type: ignore[arg-type]  # scheduled: callable
            new_state = AddDecayedWeightsState(count=safe_increment(state.count))
        else:
            rate = weight_decay
            new_state = state
            if isinstance(rate, (int, float)) and rate == 0.0:
                return updates, new_state
        if updates is None:  # as optax: no updates in, no updates out
            return None, new_state
        # None update leaves stay None (as in optax); Python scalars and integers enter as floats.
        updates, params = float_updates(updates), tree_as_arrays(params)
        treedef = jax.tree.structure(updates, is_leaf=lambda x: x is None)
        g_leaves = treedef.flatten_up_to(updates)
        p_leaves = treedef.flatten_up_to(params)
        if mask is None:
            flags = [True] * len(g_leaves)
        else:
            mask_tree = mask(params) if callable(mask) else mask
            filled = jax.tree.map(lambda g: 0 if g is None else g, updates, is_leaf=lambda x: x is None)
            flags = _broadcast_mask(mask_tree, filled)
        out: list[Any] = []
        for g, p, flag in zip(g_leaves, p_leaves, flags, strict=True):
            if g is None:
                out.append(None)
            elif _is_static_bool(flag):
                out.append(decayed_weights_leaf(g, p, rate) if flag else g)
            else:
                out.append(jnp.where(flag, decayed_weights_leaf(g, p, rate), g))
        return treedef.unflatten(out), new_state

    return GradientTransformation(init, update)
