r"""Schedule-Free learning: interpolation and averaging in place of momentum and decay.

[`schedule_free`][gradtx.contrib.schedule_free] wraps any base optimizer (with its momentum
switched off) and follows `optax.contrib.schedule_free` 0.2.8's numbers bit for bit for float32
inputs under `jax.jit`, with the same state, `ScheduleFreeState`. The names live in
`gradtx.contrib`, as in optax.
"""

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx import _validation as _v
from gradtx._schedule_check import call_schedule
from gradtx.base import GradientTransformation, OptState, Params, ScalarOrSchedule, describe
from gradtx.numerics import safe_increment

__all__ = ["ScheduleFreeState", "schedule_free", "schedule_free_eval_params"]


class ScheduleFreeState(NamedTuple):
    """State of [`schedule_free`][gradtx.contrib.schedule_free] (optax's layout).

    `b1` is the interpolation weight $\\beta_1$ (a scalar in the params' lowest dtype);
    `weight_sum` the running sum of the averaging weights $\\sum_i \\gamma_{\\max,i}^{r}$;
    `step_count` the int32 count of updates plus one (it starts at 1); `max_lr` the largest
    learning rate seen so far; `base_optimizer_state` the wrapped optimizer's state; `z` the
    base optimizer's own iterate $z_t$ (shaped like the params, in `state_dtype` if given).
    """

    b1: jax.typing.ArrayLike
    weight_sum: jax.typing.ArrayLike
    step_count: jax.typing.ArrayLike
    max_lr: jax.typing.ArrayLike
    base_optimizer_state: OptState
    z: Params


def schedule_free_eval_params(state: OptState, params: Params) -> Params:
    r"""The averaged iterate $x_t$, where a schedule-free run should be evaluated.

    The params a [`schedule_free`][gradtx.contrib.schedule_free] run holds are the gradient
    points $y_t = \beta_1 x_t + (1-\beta_1) z_t$; this recovers

    $$x_t = \frac{y_t - (1-\beta_1)\, z_t}{\beta_1}.$$

    Args:
        state: a `ScheduleFreeState` (anything with `b1` and `z` fields).
        params: the current params $y_t$.

    Returns:
        The evaluation params $x_t$, shaped like `params`.

    Raises:
        ValueError: `state` has no `b1` or `z` (it is not a `ScheduleFreeState`).
    """
    b1 = getattr(state, "b1", None)
    z = getattr(state, "z", None)
    if b1 is None or z is None:
        raise ValueError(
            "schedule_free_eval_params requires a ScheduleFreeState as input (the state of "
            f"gradtx.contrib.schedule_free), got {type(state).__name__}"
        )
    return jax.tree.map(lambda y, zi: (y - (1.0 - b1) * zi) / b1, params, z)


def _lower(a: Any, b: Any) -> Any:
    # the lower of two dtypes when one promotes to the other (optax's 'lowest' tree dtype)
    if jnp.promote_types(a, b) == a:
        return b
    return a


def _lowest_dtype(params: Any) -> Any:
    leaves = jax.tree.leaves(params)
    if not leaves:
        return jnp.asarray(leaves).dtype
    return functools.reduce(_lower, [jnp.asarray(x).dtype for x in leaves])


@describe
def schedule_free(
    base_optimizer: GradientTransformation,
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    weight_lr_power: float = 2.0,
    state_dtype: Any = None,
) -> GradientTransformation:
    r"""Make `base_optimizer` schedule-free: average its iterates instead of decaying its step.

    With the base optimizer's step $\Delta(g)$ (for SGD, $-\gamma g$), gradients taken at
    $y_t$, learning rate $\gamma_t$ and $\gamma_{\max,t} = \max_{i \le t} \gamma_i$:

    $$z_{t+1} = z_t + \Delta\big(\nabla f(y_t)\big),\qquad
      c_{t+1} = \frac{\gamma_{\max,t}^{\,r}}{\sum_{i \le t} \gamma_{\max,i}^{\,r}}$$

    $$x_{t+1} = (1 - c_{t+1})\, x_t + c_{t+1}\, z_{t+1},\qquad
      y_{t+1} = \beta_1 x_{t+1} + (1-\beta_1)\, z_{t+1}$$

    The params the run holds are $y_t$ (the update is $y_{t+1} - y_t$); evaluate at $x_t$ with
    [`schedule_free_eval_params`][gradtx.contrib.schedule_free_eval_params]. With a constant
    learning rate $c_{t+1} = 1/(t+1)$, a plain average of the $z$'s. Switch the base optimizer's
    momentum off (`b1=0` for Adam): the interpolation replaces it. Extra keyword arguments of
    `update` reach the base optimizer. This is `optax.contrib.schedule_free`, state
    `ScheduleFreeState(b1, weight_sum, step_count, max_lr, base_optimizer_state, z)`.

    Args:
        base_optimizer: the wrapped transformation (its updates include the learning rate).
        learning_rate: $\gamma$, a real number `>= 0` or a schedule of the step count (which
            starts at 1 here, as in optax), with warm-up but without decay.
        b1: $\beta_1$, the interpolation weight; in `(0, 1]`, default 0.9 (0.95 and 0.98 also
            work well).
        weight_lr_power: $r$, the power of the learning rate in the averaging weights (it
            down-weights the warm-up iterates); a real number, default 2.0.
        state_dtype: dtype of $z$, or None (default: the params' dtype).

    Returns:
        A `GradientTransformation`; its `update` requires `params`.

    References:
        Defazio et al., *The Road Less Scheduled*, NeurIPS 2024 (arXiv:2405.15682).

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.contrib.schedule_free(gradtx.sgd(0.5), 0.5, b1=0.5)
        >>> p = jnp.array([4.0, -2.0])
        >>> s = tx.init(p)
        >>> u, s = tx.update(p, s, p)  # the gradient of |p|^2 / 2
        >>> gradtx.contrib.schedule_free_eval_params(s, p + u)
        Array([ 2., -1.], dtype=float32)
    """
    owner = "schedule_free"
    if not (hasattr(base_optimizer, "init") and hasattr(base_optimizer, "update")):
        raise TypeError(
            f"{owner}: base_optimizer must be a gradient transformation with init and update, "
            f"got {type(base_optimizer).__name__}: {base_optimizer!r}"
        )
    _v.check_schedule_or_real(owner, "learning_rate", learning_rate, low=0.0)
    _v.check_real(owner, "b1", b1, low=0.0, high=1.0, low_inclusive=False)
    _v.check_real(owner, "weight_lr_power", weight_lr_power)
    _v.check_dtype(owner, "state_dtype", state_dtype)

    def init(params):
        if params is None:
            raise ValueError(f"{owner}.init needs the params (z starts at them)")
        dtype = _lowest_dtype(params)
        z = params if state_dtype is None else jax.tree.map(lambda p: jnp.asarray(p, state_dtype), params)
        z = jax.tree.map(lambda t: jnp.array(t, copy=True), z)
        return ScheduleFreeState(
            b1=jnp.asarray(b1, dtype=dtype),
            weight_sum=jnp.zeros([], dtype=dtype),
            step_count=jnp.ones([], dtype=jnp.int32),
            max_lr=jnp.zeros([], dtype=dtype),
            base_optimizer_state=base_optimizer.init(params),
            z=z,
        )

    def update(updates, state, params=None, **extra_args):
        if params is None:
            raise ValueError(f"{owner}.update needs params (the current y iterate); got params=None")
        lr: Any = learning_rate
        if callable(learning_rate):
            value = call_schedule(owner, "learning_rate", learning_rate, state.step_count)
            lr = jnp.asarray(value, dtype=state.max_lr.dtype)
        max_lr = jnp.maximum(state.max_lr, lr)
        weight = max_lr**weight_lr_power
        total = state.weight_sum + weight
        ck = jnp.where(
            jnp.logical_or(jnp.isnan(weight), jnp.isnan(total)),
            jnp.full(weight.shape, jnp.nan),
            jnp.nan_to_num(weight / total, nan=0.0, posinf=jnp.inf),
        )
        base_updates, base_state = base_optimizer.update(
            updates, state.base_optimizer_state, params, **extra_args
        )
        z = jax.tree.map(
            lambda zi, u: jnp.asarray(zi + u).astype(jnp.asarray(zi).dtype), state.z, base_updates
        )
        prev_x = jax.tree.map(lambda y, zi: (y - (1.0 - b1) * zi) / b1, params, state.z)
        x = jax.tree.map(lambda xi, zi: (1.0 - ck) * xi + ck * zi, prev_x, z)
        new_y = jax.tree.map(lambda xi, zi: b1 * xi + (1.0 - b1) * zi, x, z)
        new_updates = jax.tree.map(lambda ny, y: ny - y, new_y, params)
        new_state = ScheduleFreeState(
            b1=state.b1,
            weight_sum=total,
            step_count=safe_increment(state.step_count),
            max_lr=max_lr,
            base_optimizer_state=base_state,
            z=z,
        )
        return new_updates, new_state

    return GradientTransformation(init, update)
