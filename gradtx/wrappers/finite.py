"""Skip steps whose updates contain NaN or Inf: `apply_if_finite`."""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradtx._validation import check_int
from gradtx.base import GradientTransformation, OptState, describe
from gradtx.numerics import safe_increment
from gradtx.wrappers._common import check_transformation, cond, forwarding_update, zeros_from_shapes

__all__ = ["ApplyIfFiniteState", "apply_if_finite"]


class ApplyIfFiniteState(NamedTuple):
    """State of [`apply_if_finite`][gradtx.apply_if_finite].

    Attributes:
        notfinite_count: int32, number of consecutive steps whose updates were not all finite
            (reset to 0 by a finite step).
        last_finite: bool, whether the last step's updates were all finite.
        total_notfinite: int32, number of non-finite steps since `init` (never reset; saturates).
        inner_state: the wrapped transformation's state.
    """

    notfinite_count: jax.Array
    last_finite: jax.Array
    total_notfinite: jax.Array
    inner_state: OptState


def _tree_all_finite(tree) -> jax.Array:
    """A scalar bool: True iff no leaf of `tree` holds a NaN or an Inf (True for an empty tree)."""
    flags = [jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)]
    if not flags:
        return jnp.asarray(True)
    return functools.reduce(jnp.logical_and, flags)


@describe
def apply_if_finite(inner: GradientTransformation, max_consecutive_errors: int) -> GradientTransformation:
    """Skip steps whose incoming updates contain NaN or Inf, up to a limit.

    Each step first checks the incoming updates `g`. With `c` the count of consecutive
    non-finite steps including this one (`c = 0` when `g` is finite):

    * `g` finite: `(u, s_inner) ← inner.update(g, s_inner)`, and `c` is reset to 0;
    * `g` not finite and `c ≤ max_consecutive_errors`: the step is rejected: the returned updates
      are zeros (so `apply_updates` leaves the params bit-identical) and `inner_state` is returned
      unchanged (bit-identical), so the wrapper's state stays finite;
    * `g` not finite and `c > max_consecutive_errors` (that is, from the
      `(max_consecutive_errors + 1)`-th consecutive bad step on): the wrapper gives up and calls
      `inner.update` with the non-finite `g`, exactly as `optax.apply_if_finite` does. The NaN or
      Inf then normally reaches the returned updates and the inner state (e.g. Adam's moments),
      from which the run does not recover. Every further consecutive bad step is also let
      through, until a finite step resets the count.

    `notfinite_count`, `total_notfinite` (int32, saturating) and `last_finite` are updated on every
    step, including rejected ones.

    Args:
        inner: the transformation to protect (gradtx or optax).
        max_consecutive_errors: integer >= 1, the number of consecutive non-finite steps that
            are rejected before the wrapper lets them through.

    Returns:
        A gradient transformation with state
        `ApplyIfFiniteState(notfinite_count, last_finite, total_notfinite, inner_state)`.

    References:
        Same semantics as `optax.apply_if_finite`; the skip-on-overflow idea comes from dynamic
        loss scaling in Micikevicius et al., *Mixed Precision Training* (ICLR 2018).

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.apply_if_finite(gradtx.identity(), max_consecutive_errors=2)
        >>> state = tx.init(jnp.zeros(2))
        >>> updates, state = tx.update(jnp.array([1.0, jnp.nan]), state)
        >>> updates.tolist(), int(state.notfinite_count)
        ([0.0, 0.0], 1)
    """
    check_transformation("apply_if_finite", "inner", inner)
    check_int("apply_if_finite", "max_consecutive_errors", max_consecutive_errors, low=1)
    inner_update = forwarding_update(inner)

    def init(params):
        return ApplyIfFiniteState(
            notfinite_count=jnp.zeros((), jnp.int32),
            last_finite=jnp.asarray(True),
            total_notfinite=jnp.zeros((), jnp.int32),
            inner_state=inner.init(params),
        )

    def update(updates, state, params=None, **extra_args):
        finite = _tree_all_finite(updates)
        notfinite_count = jnp.where(finite, 0, safe_increment(state.notfinite_count)).astype(jnp.int32)
        total = jnp.where(finite, state.total_notfinite, safe_increment(state.total_notfinite))

        def accept():
            new_updates, new_inner = inner_update(updates, state.inner_state, params, **extra_args)
            # Keep the inner state's dtypes so both branches of the cond agree.
            new_inner = jax.tree.map(lambda new, old: jnp.asarray(new, jnp.result_type(old)),
                                     new_inner, state.inner_state)
            return new_updates, new_inner

        def reject():
            shapes = jax.eval_shape(accept)[0]
            return zeros_from_shapes(shapes), state.inner_state

        accepted = jnp.logical_or(finite, notfinite_count > max_consecutive_errors)
        new_updates, new_inner = cond(accepted, accept, reject)
        return new_updates, ApplyIfFiniteState(
            notfinite_count=notfinite_count,
            last_finite=finite,
            total_notfinite=total.astype(jnp.int32),
            inner_state=new_inner,
        )

    return GradientTransformation(init, update)
