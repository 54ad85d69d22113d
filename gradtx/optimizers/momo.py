r"""MoMo of `optax.contrib`: model-based momentum methods (SGD and Adam) with Polyak-like steps.

Both need the objective's value: `update(grads, state, params, value=loss)`. Their numbers follow
`optax.contrib` 0.2.8's bit for bit for float32 inputs under `jax.jit`, and their states have
optax's layout. They are exported from [`gradtx.contrib`](contrib.md) (as in optax).
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from gradtx import _validation as _v
from gradtx.base import GradientTransformation, ScalarOrSchedule, Updates, describe
from gradtx.numerics import safe_increment, tree_zeros_like
from gradtx.optimizers import _checks
from gradtx.transforms.lr_free import lowest_dtype, params_required, vdot
from gradtx.transforms.step_size_free import _check_value

__all__ = ["MomoAdamState", "MomoState", "momo", "momo_adam"]

# optax compares the squared norm with float64's machine epsilon (`jnp.finfo(float).eps`)
_TINY = float(np.finfo(np.float64).eps)


def _sum_squares(tree: Any) -> jax.Array:
    """`sum_i ||x_i||^2` in optax's order (as `optax.tree.norm(tree, squared=True)`)."""
    sums = jax.tree.map(lambda x: jnp.sum(jnp.square(x.real) + jnp.square(x.imag)), tree)
    return jnp.array(jax.tree.reduce(lambda a, b: a + b, sums, initializer=0))


def _check_common(owner: str, learning_rate: Any, lower_bound: Any, weight_decay: Any, adapt: Any) -> None:
    _checks.learning_rate(owner, learning_rate)
    _v.check_real(owner, "lower_bound", lower_bound)
    _v.check_real(owner, "weight_decay", weight_decay, low=0.0)
    _v.check_bool(owner, "adapt_lower_bound", adapt)


class MomoState(NamedTuple):
    r"""State of [`momo`][gradtx.contrib.momo] (optax's `MomoState`).

    `exp_avg`: the momentum $d_t$; `barf`: the averaged values $\bar f_t$; `gamma`: the
    averaged $\\langle g, x\rangle$, $\\gamma_t$; `lb`: the lower bound $f_*$; `count` (int32).
    """

    exp_avg: Updates
    barf: jax.typing.ArrayLike
    gamma: jax.typing.ArrayLike
    lb: jax.typing.ArrayLike
    count: jax.typing.ArrayLike  # type: ignore[assignment]  # optax's field name (shadows tuple.count)


@describe
def momo(
    learning_rate: ScalarOrSchedule = 1.0,
    beta: jax.typing.ArrayLike = 0.9,
    lower_bound: jax.typing.ArrayLike = 0.0,
    weight_decay: jax.typing.ArrayLike = 0.0,
    adapt_lower_bound: bool = False,
) -> GradientTransformation:
    r"""MoMo: SGD with momentum and a Polyak-like step from a model of the objective.

    With $f_t$ the value, $\beta_t = 0$ at the first step and $\beta$ after, $\alpha_t$ the
    `learning_rate`, $\lambda$ = `weight_decay` and $f_*$ the lower bound:

    $$\bar f_t = \beta_t \bar f_{t-1} + (1-\beta_t) f_t,\qquad
    d_t = \beta_t d_{t-1} + (1-\beta_t) g_t,\qquad
    \gamma_t = \beta_t \gamma_{t-1} + (1-\beta_t)\langle g_t, x_t\rangle,$$

    $$\tau_t = \min\left(\alpha_t,\ \frac{\left((1+\alpha_t\lambda)(\bar f_t - f_* - \gamma_t)
    + \langle d_t, x_t\rangle\right)_+}{\|d_t\|^2}\right),\qquad
    u_t = -\frac{\alpha_t\lambda}{1+\alpha_t\lambda}\, x_t - \tau_t\, d_t,$$

    the second term of the minimum taken as 0 when $\|d_t\|^2 \le 2.2\cdot10^{-16}$.
    `adapt_lower_bound=True` re-estimates $f_*$ online (never below `lower_bound`); the estimate
    is kept in the params' dtype (with bfloat16 params optax's `momo` fails there, gradtx's runs).

    Args:
        learning_rate: $\alpha_t$, the largest step, default 1.0; a real >= 0 or a schedule.
        beta: the momentum $\beta$, default 0.9, in [0, 1).
        lower_bound: $f_*$, a lower bound of the objective, default 0.0; any real.
        weight_decay: $\lambda$, default 0.0, >= 0.
        adapt_lower_bound: estimate $f_*$ online, default False.

    Returns:
        A `GradientTransformation` whose `update` needs `params` and the keyword argument
        `value` (the objective at `params`); state [`MomoState`][gradtx.contrib.MomoState].

    References:
        Schaipp, Ohana, Eickenberg, Defazio & Gower, *MoMo: Momentum Models for Adaptive
        Learning Rates*, ICML 2024 (arXiv:2305.07583).

    Example:
        >>> import gradtx, jax, jax.numpy as jnp
        >>> f = lambda x: jnp.sum(x ** 2)
        >>> tx = gradtx.contrib.momo()
        >>> x = jnp.array([1.0, 2.0])
        >>> value, grad = jax.value_and_grad(f)(x)
        >>> updates, state = tx.update(grad, tx.init(x), x, value=value)
        >>> gradtx.apply_updates(x, updates)  # the Polyak step f / ||g||^2 = 0.25
        Array([0.5, 1. ], dtype=float32)
    """
    owner = "momo"
    _check_common(owner, learning_rate, lower_bound, weight_decay, adapt_lower_bound)
    _checks.beta(owner, "beta", beta)

    def init(params):
        dtype = lowest_dtype(params)
        return MomoState(
            exp_avg=tree_zeros_like(params),
            barf=jnp.zeros([], dtype=dtype),
            gamma=jnp.zeros([], dtype=dtype),
            lb=jnp.array(lower_bound, dtype=dtype),
            count=jnp.zeros([], jnp.int32),
        )

    def update(updates, state, params=None, *, value=None, **extra_args):
        del extra_args
        params_required(owner, params)
        _check_value(owner, value)
        count = state.count
        bt = jnp.where(count == 0, 0.0, beta)
        barf = bt * state.barf + (1 - bt) * jnp.asarray(value, dtype=state.barf.dtype)
        d = jax.tree.map(lambda m, g: bt * m + (1 - bt) * g, state.exp_avg, updates)
        gamma = bt * state.gamma + (1 - bt) * vdot(updates, params)
        d_sq = _sum_squares(d)
        inner = vdot(d, params)
        alpha: Any = learning_rate(count) if callable(learning_rate) else learning_rate
        shrink = 1 + alpha * weight_decay
        if adapt_lower_bound:
            cap = shrink * (barf - gamma) + inner
            lb = lax.cond(
                cap < shrink * state.lb,
                # cast: in bfloat16 the bound is computed in float32 (optax's cond fails there)
                lambda: jnp.maximum(cap / (2 * shrink), lower_bound).astype(state.lb.dtype),
                lambda: state.lb,
            )
        else:
            lb = state.lb
        t1 = jnp.maximum(shrink * (barf - lb - gamma) + inner, 0.0) / d_sq
        t1 = jnp.where(d_sq <= _TINY, 0.0, t1)
        tau = jnp.minimum(alpha, t1)
        new_updates = jax.tree.map(
            lambda m, x: -(alpha * weight_decay) / (1 + alpha * weight_decay) * x - tau * m, d, params
        )
        if adapt_lower_bound:
            new_lb = jnp.maximum((barf + inner - gamma) - (1 / 2) * tau * d_sq, lower_bound).astype(state.lb.dtype)
        else:
            new_lb = state.lb
        return new_updates, MomoState(d, barf, gamma, new_lb, safe_increment(count))

    return GradientTransformation(init, update)


class MomoAdamState(NamedTuple):
    """State of [`momo_adam`][gradtx.contrib.momo_adam] (optax's `MomoAdamState`).

    `exp_avg`, `exp_avg_sq`: Adam's moments; `barf`, `gamma`, `lb`: as in
    [`MomoState`][gradtx.contrib.MomoState]; `count` (int32).
    """

    exp_avg: Updates
    exp_avg_sq: Updates
    barf: jax.typing.ArrayLike
    gamma: jax.typing.ArrayLike
    lb: jax.typing.ArrayLike
    count: jax.typing.ArrayLike  # type: ignore[assignment]  # optax's field name (shadows tuple.count)


@describe
def momo_adam(
    learning_rate: ScalarOrSchedule = 1e-2,
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-8,
    lower_bound: jax.typing.ArrayLike = 0.0,
    weight_decay: jax.typing.ArrayLike = 0.0,
    adapt_lower_bound: bool = False,
) -> GradientTransformation:
    r"""MoMo-Adam: Adam's preconditioning with MoMo's Polyak-like step.

    With $\bar f_t$, $d_t$ (= Adam's $m_t$) and $\gamma_t$ averaged by $\beta_1$ (from zero, with
    bias corrections $c_1 = 1-\beta_1^t$, $c_2 = 1-\beta_2^t$), $D_t = \epsilon + \sqrt{v_t/c_2}$
    and $\|d\|_D^2 = \langle d_t, d_t / D_t\rangle$:

    $$\tau_t = \min\left(\frac{\alpha_t}{c_1},\ \frac{\left((1+\alpha_t\lambda)(\bar f_t - c_1 f_*
    - \gamma_t) + \langle d_t, x_t\rangle\right)_+}{\|d_t\|_D^2}\right),\qquad
    u_t = -\frac{\alpha_t\lambda}{1+\alpha_t\lambda}\, x_t - \tau_t\, \frac{d_t}{D_t}.$$

    Args:
        learning_rate: $\alpha_t$, default 1e-2; a real >= 0 or a schedule.
        b1: $\beta_1$, default 0.9, in [0, 1).
        b2: $\beta_2$, default 0.999, in [0, 1).
        eps: $\epsilon$, default 1e-8, >= 0.
        lower_bound: $f_*$, default 0.0; any real.
        weight_decay: $\lambda$, default 0.0, >= 0.
        adapt_lower_bound: estimate $f_*$ online, default False.

    Returns:
        A `GradientTransformation` whose `update` needs `params` and `value=`; state
        [`MomoAdamState`][gradtx.contrib.MomoAdamState].

    References:
        Schaipp, Ohana, Eickenberg, Defazio & Gower, *MoMo: Momentum Models for Adaptive
        Learning Rates*, ICML 2024 (arXiv:2305.07583).
    """
    owner = "momo_adam"
    _check_common(owner, learning_rate, lower_bound, weight_decay, adapt_lower_bound)
    _checks.beta(owner, "b1", b1)
    _checks.beta(owner, "b2", b2)
    _v.check_real(owner, "eps", eps, low=0.0)

    def init(params):
        dtype = lowest_dtype(params)
        return MomoAdamState(
            exp_avg=tree_zeros_like(params),
            exp_avg_sq=tree_zeros_like(params),
            barf=jnp.zeros([], dtype=dtype),
            gamma=jnp.zeros([], dtype=dtype),
            lb=jnp.array(lower_bound, dtype=dtype),
            count=jnp.zeros([], jnp.int32),
        )

    def update(updates, state, params=None, *, value=None, **extra_args):
        del extra_args
        params_required(owner, params)
        _check_value(owner, value)
        count = state.count
        t = safe_increment(count)
        barf = b1 * state.barf + (1 - b1) * jnp.asarray(value, dtype=state.barf.dtype)
        m = jax.tree.map(lambda a, g: b1 * a + (1 - b1) * g, state.exp_avg, updates)
        v = jax.tree.map(lambda a, g: b2 * a + (1 - b2) * g * g, state.exp_avg_sq, updates)
        c2 = jnp.asarray(1 - b2**t, dtype=barf.dtype)
        precond = jax.tree.map(lambda a: eps + jnp.sqrt(a / c2), v)
        d_sq = vdot(m, jax.tree.map(lambda a, p: a / p, m, precond))
        gamma = b1 * state.gamma + (1 - b1) * vdot(updates, params)
        inner = vdot(m, params)
        alpha: Any = learning_rate(count) if callable(learning_rate) else learning_rate
        c1 = jnp.asarray(1 - b1**t, dtype=barf.dtype)
        shrink = 1 + alpha * weight_decay
        if adapt_lower_bound:
            cap = shrink * (barf - gamma) + inner
            lb = jnp.where(cap < shrink * c1 * state.lb, jnp.maximum(cap / (2 * c1 * shrink), lower_bound), state.lb)
        else:
            lb = state.lb
        t1 = jnp.maximum(shrink * (barf - c1 * lb - gamma) + inner, 0.0) / d_sq
        t1 = jnp.where(d_sq <= _TINY, 0.0, t1)
        tau = jnp.minimum(alpha / c1, t1)
        new_updates = jax.tree.map(
            lambda a, p, x: -(alpha * weight_decay) / (1 + alpha * weight_decay) * x - tau * a / p, m, precond, params
        )
        if adapt_lower_bound:
            new_lb = jnp.maximum(((barf + inner - gamma) - (1 / 2) * tau * d_sq) / c1, lower_bound)
        else:
            new_lb = state.lb
        return new_updates, MomoAdamState(m, v, barf, gamma, new_lb, t)

    return GradientTransformation(init, update)
