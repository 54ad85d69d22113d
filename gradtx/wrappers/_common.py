"""Helpers shared by the wrappers: checking and calling the wrapped transformation."""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from gradtx._validation import is_traced
from gradtx.base import GradientTransformation, _extra_arg_filter

__all__ = ["check_transformation", "cond", "forwarding_update", "zeros_from_shapes"]


def check_transformation(owner: str, name: str, tx: Any) -> None:
    """Raise a TypeError unless `tx` has callable `init` and `update` attributes."""
    if not (callable(getattr(tx, "init", None)) and callable(getattr(tx, "update", None))):
        raise TypeError(
            f"{owner}: {name} must be a gradient transformation with init and update "
            f"(gradtx or optax), got {type(tx).__name__}: {tx!r}"
        )


def forwarding_update(tx: GradientTransformation) -> Callable[..., Any]:
    """`tx.update`, called with only the extra keyword arguments it accepts.

    gradtx transformations accept every extra argument; a plain optax `GradientTransformation`
    whose `update` takes only `(updates, state, params)` gets none.
    """
    keep = _extra_arg_filter(tx.update)

    def update(updates, state, params=None, **extra_args):
        return tx.update(updates, state, params, **keep(extra_args))

    return update


def zeros_from_shapes(shapes: Any) -> Any:
    """Zeros for every `jax.ShapeDtypeStruct` leaf of `shapes` (as given by `jax.eval_shape`)."""
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def cond(pred: Any, true_fn: Callable[[], Any], false_fn: Callable[[], Any]) -> Any:
    """`lax.cond(pred, true_fn, false_fn)`, or a plain Python branch when `pred` is concrete.

    Outside `jax.jit` the predicate is known, so only the taken branch runs (no tracing and
    compiling of both branches at every eager call); inside `jit` this is `lax.cond`.
    """
    if is_traced(pred):
        return lax.cond(pred, true_fn, false_fn)
    return true_fn() if bool(pred) else false_fn()
