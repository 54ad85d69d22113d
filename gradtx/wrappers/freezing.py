"""Freezing parameters: `freeze` (zero their updates) and `selective_transform` (optimize only
the others, so the optimizer keeps no state for the frozen ones)."""

from typing import Any

import jax

from gradtx.base import GradientTransformation, describe, set_to_zero
from gradtx.wrappers._common import check_transformation
from gradtx.wrappers.masking import _is_mask_function, _resolve_mask, masked, multi_transform

__all__ = ["freeze", "selective_transform"]


def _check_static_mask(owner: str, name: str, mask: Any) -> None:
    """The freeze mask must be a (prefix) tree of static booleans, not a function."""
    if _is_mask_function(mask):
        raise TypeError(
            f"{owner}: {name} must be a boolean or a pytree of booleans (True = frozen), not a "
            f"function; got {mask!r}. Call your function on the params first."
        )
    try:
        _resolve_mask(owner, mask, None)  # booleans only, and static
    except TypeError as err:
        raise TypeError(f"{owner}: {name}: {str(err).removeprefix(owner + ': ')}") from None


@describe
def freeze(mask: Any) -> GradientTransformation:
    """Zero the updates of the frozen parameters (`mask` True) and pass the others through.

        u_i = 0      if mask_i   (frozen)
        u_i = g_i    otherwise

    The same as `masked(set_to_zero(), mask)`. Put it *after* the optimizer in a chain
    (`chain(adam(1e-3), freeze(mask))`): the optimizer still keeps (and updates) state for the
    frozen leaves; [`selective_transform`][gradtx.selective_transform] keeps none.

    Args:
        mask: static booleans: one `bool` for the whole tree, or a pytree with the structure of
            the params (or a prefix of it) whose True leaves are frozen.

    Returns:
        A gradient transformation with state `MaskedState(inner_state=EmptyState())`.

    References:
        Same semantics as `optax.freeze`.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> params = {"a": jnp.ones(1), "b": jnp.ones(2)}
        >>> tx = gradtx.freeze({"a": True, "b": False})
        >>> updates, _ = tx.update(params, tx.init(params))
        >>> updates["a"].tolist(), updates["b"].tolist()
        ([0.0], [1.0, 1.0])
    """
    _check_static_mask("freeze", "mask", mask)
    return masked(set_to_zero(), mask)


@describe
def selective_transform(optimizer: GradientTransformation, *, freeze_mask: Any) -> GradientTransformation:
    """Optimize the trainable parameters with `optimizer`; give the frozen ones zero updates.

        u = optimizer(g restricted to the leaves with freeze_mask False)   (trainable)
        u_i = 0                                                           (freeze_mask_i True)

    A [`partition`][gradtx.partition] with the labels `"train"` and `"freeze"`: `optimizer` sees,
    and keeps state for, the trainable leaves only.

    Args:
        optimizer: the transformation for the trainable leaves (gradtx or optax).
        freeze_mask: keyword-only; static booleans: one `bool` for the whole tree, or a pytree
            with the structure of the params (or a prefix of it) whose True leaves are frozen.

    Returns:
        A gradient transformation with state `PartitionState(inner_states)`, `inner_states`
        keyed by `"train"` and `"freeze"` (each a `MaskedState`).

    References:
        Same semantics as `optax.selective_transform`.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> params = {"a": jnp.ones(1), "b": jnp.ones(2)}
        >>> tx = gradtx.selective_transform(gradtx.sgd(0.5), freeze_mask={"a": True, "b": False})
        >>> updates, _ = tx.update(params, tx.init(params))
        >>> updates["a"].tolist(), updates["b"].tolist()
        ([0.0], [-0.5, -0.5])
    """
    owner = "selective_transform"
    check_transformation(owner, "optimizer", optimizer)
    _check_static_mask(owner, "freeze_mask", freeze_mask)
    labels = jax.tree.map(lambda frozen: "freeze" if frozen else "train", freeze_mask)
    return multi_transform({"train": optimizer, "freeze": set_to_zero()}, lambda params: labels)
