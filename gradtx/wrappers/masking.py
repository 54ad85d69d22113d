"""Apply a transformation to part of the parameters: `masked` and `multi_transform`."""

from collections.abc import Callable, Hashable, Mapping
from typing import Any, NamedTuple

import jax
import numpy as np

from gradtx._validation import check_bool, is_traced
from gradtx.base import GradientTransformation, OptState, Params, describe
from gradtx.wrappers._common import check_transformation, forwarding_update

__all__ = [
    "MaskedNode",
    "MaskedState",
    "MultiTransformState",
    "PartitionState",
    "masked",
    "multi_transform",
    "partition",
]


class MaskedNode(NamedTuple):
    """Placeholder for a masked-out subtree.

    It is an empty tuple, i.e. a pytree node without leaves, so `jax.tree.map` and every
    transformation skip it: the inner transformation of [`masked`][gradtx.masked] neither sees nor
    stores anything for the leaves it replaces.
    """


class MaskedState(NamedTuple):
    """State of [`masked`][gradtx.masked]: the inner state, built on the masked-in leaves only."""

    inner_state: OptState


class PartitionState(NamedTuple):
    """State of [`multi_transform`][gradtx.multi_transform]: one `MaskedState` per label.

    Named `PartitionState` like optax's (whose `MultiTransformState` is the same class), so the key
    paths of optax's tree utilities read the same on gradtx and optax states.
    """

    inner_states: dict[Hashable, OptState]


MultiTransformState = PartitionState


MaskOrFn = Any | Callable[[Params], Any]


def _as_static_bool(owner: str, leaf: Any) -> bool:
    if is_traced(leaf):
        raise TypeError(
            f"{owner}: the mask must be static (Python or NumPy booleans); got a traced value. "
            f"Compute the mask outside jax.jit or from shapes only."
        )
    if isinstance(leaf, (bool, np.bool_)):
        return bool(leaf)
    if isinstance(leaf, (np.ndarray, jax.Array)) and np.ndim(leaf) == 0 and np.asarray(leaf).dtype == bool:
        return bool(leaf)
    raise TypeError(f"{owner}: mask leaves must be booleans, got {type(leaf).__name__}: {leaf!r}")


def _is_mask_function(mask: MaskOrFn) -> bool:
    """Whether `mask` is a function of the params rather than a mask tree (optax's rule).

    A mask is a function when it is callable and every one of its pytree leaves is callable (a
    plain function is its own single leaf). A callable *pytree* of booleans, such as an Equinox
    module whose class defines `__call__`, is a mask tree: its leaves are not callable.
    """
    if not callable(mask):
        return False
    leaves = jax.tree.leaves(mask)
    return bool(leaves) and all(callable(leaf) for leaf in leaves)


def _is_params_placeholder(tree: Any) -> bool:
    """Whether `tree` is the leafless stand-in `optax.tree.map_params` passes to `init`.

    `optax.tree.map_params(tx, f, state)` (and `gradtx.tree_map_params`) calls `tx.init` on a
    placeholder to find where the params trees sit in the state; a mask cannot be matched against
    it, so `init` hands the placeholder to the inner transformation as optax's `masked` does.
    """
    cls = type(tree)
    return cls.__name__ == "_ParamsPlaceholder" and cls.__module__.split(".")[0] in ("optax", "gradtx")


def _resolve_mask(owner: str, mask: MaskOrFn, tree: Any) -> Any:
    """The boolean mask tree for `tree` (calling `mask` when it is a function)."""
    mask_tree = mask(tree) if _is_mask_function(mask) else mask
    return jax.tree.map(lambda m: _as_static_bool(owner, m), mask_tree)


def _mask_tree(owner: str, tree: Any, mask_tree: Any) -> Any:
    """Replace every masked-out subtree of `tree` by a `MaskedNode`."""
    try:
        return jax.tree.map(lambda m, sub: sub if m else MaskedNode(), mask_tree, tree)
    except ValueError as err:
        raise ValueError(
            f"{owner}: the mask must have the structure of the params or be a prefix of it.\n"
            f"mask:   {jax.tree.structure(mask_tree)}\n"
            f"params: {jax.tree.structure(tree)}"
        ) from err


def _merge(mask_tree: Any, new: Any, old: Any) -> Any:
    """Take `new` where the mask is True and `old` elsewhere (subtree by subtree)."""
    return jax.tree.map(lambda m, n, o: n if m else o, mask_tree, new, old)


def _masked_transform(
    owner: str, inner: GradientTransformation, mask: MaskOrFn, mask_compatible_extra_args: bool
) -> GradientTransformation:
    inner_update = forwarding_update(inner)

    def init(params):
        if _is_params_placeholder(params):
            return MaskedState(inner_state=inner.init(params))
        mask_tree = _resolve_mask(owner, mask, params)
        return MaskedState(inner_state=inner.init(_mask_tree(owner, params, mask_tree)))

    def update(updates, state, params=None, **extra_args):
        mask_tree = _resolve_mask(owner, mask, updates)
        if mask_compatible_extra_args:
            structure = jax.tree.structure(updates)
            extra_args = {
                key: _mask_tree(owner, value, mask_tree)
                if jax.tree.structure(value) == structure
                else value
                for key, value in extra_args.items()
            }
        inner_updates, inner_state = inner_update(
            _mask_tree(owner, updates, mask_tree),
            state.inner_state,
            None if params is None else _mask_tree(owner, params, mask_tree),
            **extra_args,
        )
        return _merge(mask_tree, inner_updates, updates), MaskedState(inner_state=inner_state)

    return GradientTransformation(init, update)


@describe
def masked(
    inner: GradientTransformation,
    mask: MaskOrFn,
    *,
    mask_compatible_extra_args: bool = False,
) -> GradientTransformation:
    """Apply `inner` to the masked-in leaves only; the others pass through unchanged.

    With `m_i ∈ {True, False}` the mask value of leaf `i`:

        u_i = inner(g)_i   if m_i
        u_i = g_i          otherwise (the incoming update, untouched)

    `inner` sees (and its state covers) only the masked-in leaves: masked-out subtrees are
    replaced by [`MaskedNode`][gradtx.MaskedNode] placeholders, which have no leaves. A typical use
    is to skip weight decay on biases and normalization scales.

    Args:
        inner: the transformation to apply to the masked-in leaves.
        mask: a pytree of booleans with the structure of the params or a prefix of it (a boolean
            at an inner node covers the whole subtree), or a function of the params (of the
            updates in `update`) returning such a tree. The mask must be static: Python or NumPy
            booleans, not traced values. As in optax, `mask` is called only when its pytree
            leaves are all callable: a callable pytree of booleans (an Equinox module whose
            class defines `__call__`) is used as a mask tree.
        mask_compatible_extra_args: default False. If True, extra keyword arguments of `update`
            that have the same tree structure as the updates are masked the same way before they
            reach `inner`.

    Returns:
        A gradient transformation whose state is `MaskedState(inner_state)`.

    References:
        Same semantics as `optax.masked`; see Loshchilov & Hutter, *Decoupled Weight Decay
        Regularization* (ICLR 2019) for the weight-decay use case.

    Example:
        >>> import gradtx, jax, jax.numpy as jnp
        >>> params = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}
        >>> decay = gradtx.masked(
        ...     gradtx.stateless_with_tree_map(lambda g, p: g + 0.5 * p),
        ...     lambda p: jax.tree.map(lambda x: x.ndim > 1, p))
        >>> updates, _ = decay.update(params, decay.init(params), params)
        >>> float(updates["b"][0]), float(updates["w"][0, 0])
        (1.0, 1.5)
    """
    check_transformation("masked", "inner", inner)
    check_bool("masked", "mask_compatible_extra_args", mask_compatible_extra_args)
    if not _is_mask_function(mask):
        _resolve_mask("masked", mask, None)  # checks the leaves are booleans
    return _masked_transform("masked", inner, mask, mask_compatible_extra_args)


@describe
def multi_transform(
    transforms: Mapping[Hashable, GradientTransformation],
    param_labels: Any | Callable[[Params], Any],
    *,
    mask_compatible_extra_args: bool = False,
) -> GradientTransformation:
    """Apply a different transformation to each group of parameters.

    Every leaf carries a label `l_i`; the output is `u_i = transforms[l_i](g)_i`, where each
    transformation runs (as [`masked`][gradtx.masked]) on the leaves with its own label only and
    keeps its state for those leaves only. Labels without any leaf are allowed (their
    transformation sees an empty tree); a leaf whose label has no transformation raises a
    `ValueError` naming the label(s).

    Args:
        transforms: a mapping from label to transformation (gradtx or optax).
        param_labels: a pytree of labels with the structure of the params or a prefix of it, or a
            function of the params (of the updates in `update`) returning such a tree.
        mask_compatible_extra_args: default False; as in [`masked`][gradtx.masked].

    Returns:
        A gradient transformation whose state is `PartitionState(inner_states)` (alias
        `MultiTransformState`) with
        `inner_states[label] = MaskedState(...)`.

    References:
        Same semantics as `optax.multi_transform` (`optax.partition`).

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> params = {"w": jnp.ones(3), "b": jnp.ones(2)}
        >>> tx = gradtx.multi_transform(
        ...     {"fast": gradtx.stateless_with_tree_map(lambda g, p: -1.0 * g),
        ...      "frozen": gradtx.set_to_zero()},
        ...     {"w": "fast", "b": "frozen"})
        >>> updates, _ = tx.update(params, tx.init(params))
        >>> updates["w"].tolist(), updates["b"].tolist()
        ([-1.0, -1.0, -1.0], [0.0, 0.0])
    """
    owner = "multi_transform"
    if not isinstance(transforms, Mapping) or not transforms:
        raise TypeError(
            f"{owner}: transforms must be a non-empty mapping from label to transformation, "
            f"got {type(transforms).__name__}: {transforms!r}"
        )
    for label, tx in transforms.items():
        check_transformation(owner, f"transforms[{label!r}]", tx)
    check_bool(owner, "mask_compatible_extra_args", mask_compatible_extra_args)
    labels_known = set(transforms)

    def labels_for(tree: Any) -> Any:
        labels = param_labels(tree) if callable(param_labels) else param_labels
        found = set(jax.tree.leaves(labels))
        unknown = found - labels_known
        if unknown:
            raise ValueError(
                f"{owner}: parameter label(s) {sorted(unknown, key=repr)} have no transformation; "
                f"transforms has labels {sorted(labels_known, key=repr)}."
            )
        return labels

    def group(label: Hashable, labels: Any) -> GradientTransformation:
        mask = jax.tree.map(lambda leaf: bool(leaf == label), labels)
        return _masked_transform(owner, transforms[label], mask, mask_compatible_extra_args)

    if not callable(param_labels):
        labels_for(None)  # fail at construction for unknown labels

    def init(params):
        labels = labels_for(params)
        return PartitionState({label: group(label, labels).init(params) for label in transforms})

    def update(updates, state, params=None, **extra_args):
        labels = labels_for(updates)
        new_states = {}
        for label in transforms:
            updates, new_states[label] = group(label, labels).update(
                updates, state.inner_states[label], params, **extra_args
            )
        return updates, PartitionState(new_states)

    return GradientTransformation(init, update)


partition = multi_transform
"""optax's newer name for [`multi_transform`][gradtx.multi_transform] (the same object)."""
