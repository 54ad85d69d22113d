"""Every `k` steps: `apply_every` (accumulate, then emit), and the target-network helpers
`periodic_update` (copy every `k` steps) and `incremental_update` (Polyak averaging)."""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from gradtx._validation import check_int, check_real, is_traced
from gradtx.base import GradientTransformation, Params, Updates, describe
from gradtx.numerics import safe_increment, tree_zeros_like

__all__ = ["ApplyEvery", "apply_every", "incremental_update", "periodic_update"]


class ApplyEvery(NamedTuple):
    """State of [`apply_every`][gradtx.apply_every] (optax's name for it).

    Attributes:
        count: int32, the step count modulo `k`.
        grad_acc: the sum of the updates since the last emission, shaped like the params.
    """

    count: jax.Array  # type: ignore[assignment]  # optax's field name shadows tuple.count
    grad_acc: Updates


@describe
def apply_every(k: int = 1) -> GradientTransformation:
    r"""Sum the updates over `k` steps and emit the sum every `k`-th step (zeros otherwise).

    With `c = t mod k` at step `t` (counting from 0) and `a` the accumulator:

    $$
    a \leftarrow [c \ne 0]\, a + g_t, \qquad u_t = [c = k - 1]\, a
    $$

    Only this transformation waits: in a chain, the members before it still update their
    state at every step, so `k` steps of batch `N / k` differ from one step of batch `N`
    (for that, wrap the whole optimizer in [`MultiSteps`][gradtx.MultiSteps]).

    Args:
        k: default 1, integer >= 1: emit every `k` steps (1: pass the updates through).

    Returns:
        A gradient transformation with state `ApplyEvery(count, grad_acc)`.

    References:
        Same numbers as `optax.apply_every`.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.apply_every(2)
        >>> state = tx.init(jnp.zeros(1))
        >>> u1, state = tx.update(jnp.array([1.0]), state)
        >>> u2, state = tx.update(jnp.array([3.0]), state)
        >>> u1.tolist(), u2.tolist()
        ([0.0], [4.0])
    """
    check_int("apply_every", "k", k, low=1)

    def init(params):
        return ApplyEvery(count=jnp.zeros((), jnp.int32), grad_acc=tree_zeros_like(params))

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        c = state.count % k
        keep = c != 0
        grad_acc = jax.tree.map(lambda g, a: keep * a + g, updates, state.grad_acc)
        emit = c == (k - 1)
        new_updates = jax.tree.map(lambda a: emit * a, grad_acc)
        count = (safe_increment(state.count) % k).astype(jnp.int32)
        return new_updates, ApplyEvery(count=count, grad_acc=grad_acc)

    return GradientTransformation(init, update)


def incremental_update(new_tensors: Params, old_tensors: Params, step_size: Any) -> Params:
    r"""Polyak averaging: move a running average of the params toward their latest value.

    Leaf by leaf, with `τ` = `step_size`:

    $$
    \bar\theta \leftarrow \tau\, \theta + (1 - \tau)\, \bar\theta
    $$

    Typical use: a target network or an evaluation copy of the params, updated after every
    step with a small `τ`. `None` leaves of `new_tensors` stay `None`.

    Args:
        new_tensors: the latest params `θ`.
        old_tensors: the running average `θ̄` (same tree structure).
        step_size: real in `[0, 1]` (or a traced scalar), the weight `τ` of the new value.

    Returns:
        The new average, a tree shaped like `new_tensors`.

    References:
        Polyak & Juditsky, *Acceleration of Stochastic Approximation by Averaging*
        (SIAM J. Control Optim., 1992). Same numbers as `optax.incremental_update`.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> gradtx.incremental_update(jnp.array([1.0]), jnp.array([0.0]), 0.25).tolist()
        [0.25]
    """
    check_real("incremental_update", "step_size", step_size, low=0.0, high=1.0)
    return jax.tree.map(
        lambda new, old: None if new is None else step_size * new + (1.0 - step_size) * old,
        new_tensors,
        old_tensors,
        is_leaf=lambda x: x is None,
    )


def _check_same_layout(new: Any, old: Any) -> None:
    """Raise a ValueError unless both trees have the same structure, shapes and dtypes."""
    new_def, old_def = jax.tree.structure(new), jax.tree.structure(old)
    if new_def != old_def:
        raise ValueError(
            f"periodic_update: new_tensors and old_tensors must have the same tree structure:\n"
            f"new_tensors: {new_def}\nold_tensors: {old_def}"
        )
    paths = jax.tree_util.tree_flatten_with_path(new)[0]
    for (path, a), b in zip(paths, jax.tree.leaves(old), strict=True):
        if (jnp.shape(a), jnp.result_type(a)) != (jnp.shape(b), jnp.result_type(b)):
            raise ValueError(
                f"periodic_update: at {jax.tree_util.keystr(path)} new_tensors has "
                f"{jnp.result_type(a)}{jnp.shape(a)} but old_tensors has {jnp.result_type(b)}{jnp.shape(b)}"
            )


def periodic_update(new_tensors: Params, old_tensors: Params, steps: Any, update_period: int) -> Params:
    """A periodic copy of the params: `new_tensors` when `steps` is a multiple of `update_period`.

    Returns `new_tensors` if `steps mod update_period == 0`, else `old_tensors` (a target network
    refreshed every `update_period` steps, as in DQN). Under `jax.jit` this is a `lax.cond`.

    Args:
        new_tensors: the latest params.
        old_tensors: the periodic copy (same tree structure, shapes and dtypes).
        steps: integer (or int array) step count of the online params.
        update_period: integer >= 1 (or a traced integer), the period of the copy.

    Returns:
        `new_tensors` or `old_tensors`.

    References:
        Mnih et al., *Human-level control through deep reinforcement learning* (Nature, 2015);
        Grill et al., *Bootstrap Your Own Latent* (NeurIPS 2020), arXiv:2006.07733. Same
        behaviour as `optax.periodic_update`.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> gradtx.periodic_update(jnp.ones(1), jnp.zeros(1), steps=4, update_period=2).tolist()
        [1.0]
    """
    check_int("periodic_update", "update_period", update_period, low=1)
    check_int("periodic_update", "steps", steps)
    _check_same_layout(new_tensors, old_tensors)
    take_new = jnp.mod(steps, update_period) == 0
    if not is_traced(take_new):
        return new_tensors if bool(take_new) else old_tensors
    return lax.cond(take_new, lambda: new_tensors, lambda: old_tensors)
