"""Lookahead: `k` fast steps forward, one slow step back (`lookahead`)."""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx._validation import check_bool, check_int, check_real
from gradtx.base import GradientTransformation, OptState, Params, Updates, describe
from gradtx.wrappers._common import check_transformation, forwarding_update

__all__ = ["LookaheadParams", "LookaheadState", "lookahead"]


class LookaheadState(NamedTuple):
    """State of [`lookahead`][gradtx.lookahead].

    Attributes:
        fast_state: the fast optimizer's state.
        steps_since_sync: int32, the number of fast steps since the slow and fast params were
            last synchronized (0 right after a synchronization).
    """

    fast_state: OptState
    steps_since_sync: jax.Array


class LookaheadParams(NamedTuple):
    """The two parameter sets of [`lookahead`][gradtx.lookahead].

    Compute the gradients at `fast`; evaluate (and deploy) the model at `slow`, which moves
    only at synchronizations and usually generalizes better. `apply_updates(params, updates)`
    moves both, since the updates of `lookahead` are a `LookaheadParams` too.

    Attributes:
        fast: the fast parameters (take gradients here).
        slow: the slow parameters (use these for evaluation).
    """

    fast: Params
    slow: Params

    @classmethod
    def init_synced(cls, params: Params) -> "LookaheadParams":
        """Both sets equal to `params` (the usual starting point)."""
        return cls(fast=params, slow=params)


def _reset_leaf(sync: jax.Array, current: Any, initial: Any) -> Any:
    """`initial` where `sync` else `current`, computed as optax does (a blend by 0/1 factors)."""
    current, initial = jnp.asarray(current), jnp.asarray(initial)
    if not (jnp.issubdtype(current.dtype, jnp.number) or current.dtype == jnp.bool_):
        return jnp.where(sync, initial, current)  # e.g. PRNG keys: no arithmetic
    return ((1 - sync) * current + sync * initial).astype(current.dtype)


def _lookahead_updates(
    updates: Updates, sync: jax.Array, params: LookaheadParams, slow_step_size: Any
) -> LookaheadParams:
    """The updates of both parameter sets for one step.

    `d = fast + u - slow` is where the fast params would land, seen from the slow ones; at a
    synchronization (`sync = 1`) slow moves by `α d` and fast lands on the new slow params.
    """
    difference = jax.tree.map(lambda f, u, s: f + u - s, params.fast, updates, params.slow)
    slow = jax.tree.map(lambda d: slow_step_size * sync * d, difference)
    fast = jax.tree.map(lambda u, d: u - sync * (1 - slow_step_size) * d, updates, difference)
    return LookaheadParams(fast=fast, slow=slow)


@describe
def lookahead(
    fast_optimizer: GradientTransformation,
    sync_period: int,
    slow_step_size: float,
    reset_state: bool = False,
) -> GradientTransformation:
    r"""Lookahead: take `sync_period` fast steps, then pull the slow params toward the fast ones.

    The params are a [`LookaheadParams`][gradtx.LookaheadParams]`(fast, slow)`; gradients are
    taken at `fast`. With `u_t` the fast optimizer's update, `k` = `sync_period` and
    `α` = `slow_step_size`, a step is an ordinary fast step, except every `k`-th one, which
    ends with a synchronization:

    $$
    \phi \leftarrow \phi + \alpha\,(\theta + u_t - \phi), \qquad \theta \leftarrow \phi
    $$

    (`θ` the fast and `φ` the slow params). Both moves are returned as one
    `LookaheadParams` of updates, `d = θ + u_t - φ` and `s = 1` at a synchronization, else 0:

    $$
    \Delta\phi = \alpha\, s\, d, \qquad \Delta\theta = u_t - s\,(1 - \alpha)\, d
    $$

    so `apply_updates(params, updates)` does both. Do not transform these updates further
    (clipping them would desynchronize the two sets).

    Args:
        fast_optimizer: the inner optimizer (gradtx or optax); it receives the gradients, the
            fast params and any extra keyword arguments of `update`.
        sync_period: integer >= 1, the number of fast steps between synchronizations (`k`).
        slow_step_size: real in `[0, 1]`, the interpolation factor `α` of the slow step
            (0.5 in the paper).
        reset_state: default False. If True, the fast optimizer's state is reset to its `init`
            at every synchronization.

    Returns:
        A gradient transformation with state `LookaheadState(fast_state, steps_since_sync)`.
        `init` accepts a `LookaheadParams` or the fast params alone; `update` needs the
        `LookaheadParams`.

    References:
        Zhang, Lucas, Hinton & Ba, *Lookahead Optimizer: k steps forward, 1 step back*
        (NeurIPS 2019), arXiv:1907.08610. Same numbers as `optax.lookahead`.

    Example:
        >>> import gradtx, jax, jax.numpy as jnp
        >>> tx = gradtx.lookahead(gradtx.sgd(0.1), sync_period=2, slow_step_size=0.5)
        >>> params = gradtx.LookaheadParams.init_synced(jnp.array([1.0]))
        >>> state = tx.init(params)
        >>> for _ in range(2):
        ...     updates, state = tx.update(jnp.array([1.0]), state, params)
        ...     params = gradtx.apply_updates(params, updates)
        >>> params.fast.tolist(), params.slow.tolist()  # fast went to 0.8; both meet halfway
        ([0.8999999761581421], [0.8999999761581421])
    """
    owner = "lookahead"
    check_transformation(owner, "fast_optimizer", fast_optimizer)
    check_int(owner, "sync_period", sync_period, low=1)
    check_real(owner, "slow_step_size", slow_step_size, low=0.0, high=1.0)
    check_bool(owner, "reset_state", reset_state)
    fast_update = forwarding_update(fast_optimizer)

    def init(params):
        fast = params.fast if isinstance(params, LookaheadParams) else getattr(params, "fast", params)
        return LookaheadState(
            fast_state=fast_optimizer.init(fast),
            steps_since_sync=jnp.zeros((), jnp.int32),
        )

    def update(updates, state, params=None, **extra_args):
        if params is None or not (hasattr(params, "fast") and hasattr(params, "slow")):
            raise TypeError(
                f"{owner}.update needs params=LookaheadParams(fast, slow) (the fast params alone "
                f"cannot give the slow step), got {type(params).__name__}. Start from "
                f"gradtx.LookaheadParams.init_synced(params)."
            )
        updates, fast_state = fast_update(updates, state.fast_state, params.fast, **extra_args)
        sync = state.steps_since_sync == (sync_period - 1)
        updates = _lookahead_updates(updates, sync, params, slow_step_size)
        if reset_state:
            initial = fast_optimizer.init(params.fast)
            fast_state = jax.tree.map(lambda c, i: _reset_leaf(sync, c, i), fast_state, initial)
        steps = (state.steps_since_sync + 1) % sync_period
        return updates, LookaheadState(fast_state=fast_state, steps_since_sync=steps.astype(jnp.int32))

    return GradientTransformation(init, update)
