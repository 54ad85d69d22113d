r"""Learning-rate-free optimizers of `optax.contrib`: Prodigy, D-Adaptation, DoG, DoWG, COCOB.

Each estimates the scale of the step (the distance to a solution) while training, so that the
`learning_rate` is only a schedule around 1.0. Their numbers follow `optax.contrib` 0.2.8's bit
for bit for float32 inputs under `jax.jit`, and their states have optax's layout.

They are exported from [`gradtx.contrib`](contrib.md) (as in optax, not at the top level).
"""

import operator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx import _validation as _v
from gradtx.base import GradientTransformation, ScalarOrSchedule, Updates, chain, describe, identity
from gradtx.numerics import safe_increment, tree_zeros_like
from gradtx.optimizers import _checks
from gradtx.transforms.lr_free import (
    check_init_step,
    lowest_dtype,
    params_required,
    scale_by_cocob,
    scale_by_dog,
    scale_by_dowg,
    vdot,
)
from gradtx.transforms.scaling import scale_by_learning_rate
from gradtx.transforms.weight_decay import add_decayed_weights

__all__ = ["DAdaptAdamWState", "ProdigyState", "cocob", "dadapt_adamw", "dog", "dowg", "prodigy"]


def _l1(tree: Any) -> jax.Array:
    """`sum_i ||x_i||_1` over the leaves, in optax's order."""
    sums = jax.tree.map(lambda x: jnp.sum(jnp.abs(x)), tree)
    return jax.tree.reduce(operator.add, sums, initializer=0)


def _check_betas(owner: str, betas: Any) -> tuple[Any, Any]:
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise TypeError(f"{owner}: betas must be a pair (beta1, beta2), got {betas!r}")
    _checks.beta(owner, "betas[0]", betas[0])
    _checks.beta(owner, "betas[1]", betas[1])
    return betas[0], betas[1]


# --------------------------------------------------------------------------------------------
# Prodigy
# --------------------------------------------------------------------------------------------


class ProdigyState(NamedTuple):
    r"""State of [`prodigy`][gradtx.contrib.prodigy] (optax's `ProdigyState`).

    `exp_avg`, `exp_avg_sq`: the Adam moments of $d\,g$; `grad_sum`: the weighted sum $s$ of
    the scaled gradients; `params0`: the initial params; `estim_lr`: the current estimate $d$;
    `numerator_weighted`: the weighted numerator $r$; `count`: the step count (int32).
    """

    exp_avg: Updates
    exp_avg_sq: Updates
    grad_sum: Updates
    params0: Updates
    estim_lr: jax.typing.ArrayLike
    numerator_weighted: jax.typing.ArrayLike
    count: jax.typing.ArrayLike  # type: ignore[assignment]  # optax's field name (shadows tuple.count)


@describe
def prodigy(
    learning_rate: ScalarOrSchedule = 1.0,
    betas: tuple[jax.typing.ArrayLike, jax.typing.ArrayLike] = (0.9, 0.999),
    beta3: jax.typing.ArrayLike | None = None,
    eps: jax.typing.ArrayLike = 1e-8,
    estim_lr0: jax.typing.ArrayLike = 1e-6,
    estim_lr_coef: jax.typing.ArrayLike = 1.0,
    weight_decay: jax.typing.ArrayLike = 0.0,
    safeguard_warmup: bool = False,
) -> GradientTransformation:
    r"""Prodigy: AdamW whose step scale $d$ is estimated on the fly (learning-rate free).

    With $\eta_t$ the `learning_rate` (schedule), $d_0$ = `estim_lr0`, $x_0$ the initial params,
    $\beta_3$ = `beta3` (default $\sqrt{\beta_2}$) and the bias correction
    $c_t = \sqrt{1-\beta_2^t}/(1-\beta_1^t)$:

    $$\lambda_t = d_t\,\eta_t\,c_t,\qquad
    m_t = \beta_1 m_{t-1} + (1-\beta_1)\, d_t g_t,\qquad
    v_t = \beta_2 v_{t-1} + (1-\beta_2)\, d_t^2 g_t^2,$$

    $$s_t = \beta_3 s_{t-1} + \frac{\lambda_t}{d_0}\, d_t g_t,\qquad
    r_t = \beta_3 r_{t-1} + \frac{d_t}{d_0}\,\lambda_t\, \langle g_t, x_0 - x_t\rangle,\qquad
    d_{t+1} = \max\left(d_t,\ \kappa\,\frac{r_t}{\|s_t\|_1}\right),$$

    $$u_t = -\lambda_t \left(\frac{m_t}{\sqrt{v_t} + d_{t+1}\,\epsilon} + w\, x_t\right),$$

    with $\kappa$ = `estim_lr_coef` and $w$ = `weight_decay`. `safeguard_warmup=True` uses $d_t$
    in place of $\lambda_t$ in $s_t$. It equals `optax.contrib.prodigy`.

    Args:
        learning_rate: the schedule $\eta_t$ multiplying $d$, default 1.0 (a linear decay from
            1.0 to 0 with a short warmup is recommended); a real `>= 0` or a schedule.
        betas: $(\beta_1, \beta_2)$ of the Adam moments, default (0.9, 0.999), each in [0, 1).
        beta3: $\beta_3$ of the estimate of $d$, default None ($\sqrt{\beta_2}$), in [0, 1].
        eps: $\epsilon$, default 1e-8, >= 0.
        estim_lr0: the initial (under-)estimate $d_0$, default 1e-6, > 0.
        estim_lr_coef: $\kappa$, default 1.0, > 0.
        weight_decay: AdamW's decoupled weight decay $w$, default 0.0, >= 0.
        safeguard_warmup: leave the learning rate out of $s_t$ (helps with warmups), default False.

    Returns:
        A `GradientTransformation` whose `update` needs `params`; state
        [`ProdigyState`][gradtx.contrib.ProdigyState].

    References:
        Mishchenko & Defazio, *Prodigy: An Expeditiously Adaptive Parameter-Free Learner*,
        ICML 2024 (arXiv:2306.06101).
    """
    owner = "prodigy"
    _checks.learning_rate(owner, learning_rate)
    beta1, beta2 = _check_betas(owner, betas)
    if beta3 is not None:
        _checks.beta(owner, "beta3", beta3, closed=True)
    _v.check_real(owner, "eps", eps, low=0.0)
    _v.check_real(owner, "estim_lr0", estim_lr0, low=0.0, low_inclusive=False)
    _v.check_real(owner, "estim_lr_coef", estim_lr_coef, low=0.0, low_inclusive=False)
    _v.check_real(owner, "weight_decay", weight_decay, low=0.0)
    _v.check_bool(owner, "safeguard_warmup", safeguard_warmup)
    b3 = beta2**0.5 if beta3 is None else beta3

    wd: Any = weight_decay

    def init(params):
        dtype = lowest_dtype(params)
        return ProdigyState(
            exp_avg=tree_zeros_like(params),
            exp_avg_sq=tree_zeros_like(params),
            grad_sum=tree_zeros_like(params),
            params0=params,
            estim_lr=jnp.asarray(estim_lr0, dtype=dtype),
            numerator_weighted=jnp.zeros((), dtype=dtype),
            count=jnp.zeros((), jnp.int32),
        )

    def update(updates, state, params=None, **extra_args):
        del extra_args
        params_required(owner, params)
        t = safe_increment(state.count)
        eta = learning_rate(state.count) if callable(learning_rate) else learning_rate
        d = state.estim_lr
        correction = ((1 - beta2**t) ** 0.5) / (1 - beta1**t)
        lam = jnp.asarray(d * eta * correction, dtype=d.dtype)
        dg = jax.tree.map(lambda g: d * g, updates)
        progress = vdot(updates, jax.tree.map(lambda x0, x: x0 - x, state.params0, params))
        exp_avg = jax.tree.map(lambda m, z: beta1 * m + (1 - beta1) * z, state.exp_avg, dg)
        exp_avg_sq = jax.tree.map(lambda v, z: beta2 * v + (1 - beta2) * z * z, state.exp_avg_sq, dg)
        weight = d if safeguard_warmup else lam
        grad_sum = jax.tree.map(lambda s, z: b3 * s + weight * z / estim_lr0, state.grad_sum, dg)
        numerator = b3 * state.numerator_weighted
        numerator += (d / estim_lr0) * lam * progress
        estimate = estim_lr_coef * numerator / _l1(grad_sum)
        new_d = jnp.maximum(d, estimate)
        new_updates = jax.tree.map(
            lambda m, v, x: -wd * lam * x - lam * m / (jnp.sqrt(v) + new_d * eps),
            exp_avg,
            exp_avg_sq,
            params,
        )
        return new_updates, ProdigyState(
            exp_avg, exp_avg_sq, grad_sum, state.params0, new_d, numerator, t
        )

    return GradientTransformation(init, update)


# --------------------------------------------------------------------------------------------
# D-Adaptation AdamW
# --------------------------------------------------------------------------------------------


class DAdaptAdamWState(NamedTuple):
    r"""State of [`dadapt_adamw`][gradtx.contrib.dadapt_adamw] (optax's `DAdaptAdamWState`).

    `exp_avg`: the first moment of $\lambda g$; `exp_avg_sq`: the second moment of $g$;
    `grad_sum`: the weighted sum $s$; `estim_lr`: the current estimate $d$;
    `numerator_weighted`: the weighted numerator $r$; `count`: the step count (int32).
    """

    exp_avg: Updates
    exp_avg_sq: Updates
    grad_sum: Updates
    estim_lr: jax.typing.ArrayLike
    numerator_weighted: jax.typing.ArrayLike
    count: jax.typing.ArrayLike  # type: ignore[assignment]  # optax's field name (shadows tuple.count)


@describe
def dadapt_adamw(
    learning_rate: ScalarOrSchedule = 1.0,
    betas: tuple[jax.typing.ArrayLike, jax.typing.ArrayLike] = (0.9, 0.999),
    eps: jax.typing.ArrayLike = 1e-8,
    estim_lr0: jax.typing.ArrayLike = 1e-6,
    weight_decay: jax.typing.ArrayLike = 0.0,
) -> GradientTransformation:
    r"""D-Adaptation AdamW: AdamW whose step scale $d$ is estimated on the fly.

    With $\eta_t$ the `learning_rate` (schedule), $\gamma = \sqrt{\beta_2}$ and the bias
    correction $c_t = \sqrt{1-\beta_2^t}/(1-\beta_1^t)$:

    $$\lambda_t = d_t\,\eta_t\,c_t,\qquad
    r_t = \gamma r_{t-1} + (1-\gamma)\,\lambda_t \left\langle g_t,
    \frac{s_{t-1}}{\sqrt{v_{t-1}} + \epsilon}\right\rangle,$$

    $$m_t = \beta_1 m_{t-1} + (1-\beta_1)\,\lambda_t g_t,\qquad
    v_t = \beta_2 v_{t-1} + (1-\beta_2)\, g_t^2,\qquad
    s_t = \gamma s_{t-1} + (1-\gamma)\,\lambda_t g_t,$$

    $$d_{t+1} = \max\left(d_t,\ \frac{r_t}{(1-\gamma)\,\|s_t\|_1}\right),\qquad
    u_t = -\frac{m_t}{\sqrt{v_t} + \epsilon} - w\,\lambda_t\, x_t,$$

    with $d_0$ = `estim_lr0` and $w$ = `weight_decay`. It equals `optax.contrib.dadapt_adamw`.

    Args:
        learning_rate: the schedule $\eta_t$ multiplying $d$, default 1.0; a real `>= 0` or a
            schedule.
        betas: $(\beta_1, \beta_2)$, default (0.9, 0.999), each in [0, 1).
        eps: $\epsilon$, default 1e-8, >= 0.
        estim_lr0: the initial (under-)estimate $d_0$, default 1e-6, > 0.
        weight_decay: decoupled weight decay $w$, default 0.0, >= 0.

    Returns:
        A `GradientTransformation` whose `update` needs `params`; state
        [`DAdaptAdamWState`][gradtx.contrib.DAdaptAdamWState].

    References:
        Defazio & Mishchenko, *Learning-Rate-Free Learning by D-Adaptation*, ICML 2023
        (arXiv:2301.07733).
    """
    owner = "dadapt_adamw"
    _checks.learning_rate(owner, learning_rate)
    beta1, beta2 = _check_betas(owner, betas)
    _v.check_real(owner, "eps", eps, low=0.0)
    _v.check_real(owner, "estim_lr0", estim_lr0, low=0.0, low_inclusive=False)
    _v.check_real(owner, "weight_decay", weight_decay, low=0.0)

    wd: Any = weight_decay

    def init(params):
        dtype = lowest_dtype(params)
        return DAdaptAdamWState(
            exp_avg=tree_zeros_like(params),
            exp_avg_sq=tree_zeros_like(params),
            grad_sum=tree_zeros_like(params),
            estim_lr=jnp.asarray(estim_lr0, dtype=dtype),
            numerator_weighted=jnp.zeros([], dtype=dtype),
            count=jnp.zeros([], jnp.int32),
        )

    def update(updates, state, params=None, **extra_args):
        del extra_args
        params_required(owner, params)
        gamma = beta2**0.5
        eta = learning_rate(state.count) if callable(learning_rate) else learning_rate
        t = safe_increment(state.count)
        correction = ((1 - beta2**t) ** 0.5) / (1 - beta1**t)
        lam = state.estim_lr * eta * correction
        lam = lam.astype(state.numerator_weighted.dtype)
        weighted = jax.tree.map(lambda s, v: s / (jnp.sqrt(v) + eps), state.grad_sum, state.exp_avg_sq)
        progress = vdot(updates, weighted)
        exp_avg = jax.tree.map(lambda m, g: beta1 * m + (1 - beta1) * lam * g, state.exp_avg, updates)
        exp_avg_sq = jax.tree.map(lambda v, g: beta2 * v + (1 - beta2) * g * g, state.exp_avg_sq, updates)
        grad_sum = jax.tree.map(lambda s, g: gamma * s + (1 - gamma) * lam * g, state.grad_sum, updates)
        l1 = _l1(grad_sum)
        numerator = gamma * state.numerator_weighted + (1 - gamma) * lam * progress
        new_d = jnp.maximum(state.estim_lr, numerator / ((1 - gamma) * l1))
        new_updates = jax.tree.map(
            lambda m, v, x: -wd * lam * x - m / (jnp.sqrt(v) + eps),
            exp_avg,
            exp_avg_sq,
            params,
        )
        return new_updates, DAdaptAdamWState(exp_avg, exp_avg_sq, grad_sum, new_d, numerator, t)

    return GradientTransformation(init, update)


# --------------------------------------------------------------------------------------------
# DoG, DoWG, COCOB: chains of gradtx.transforms.lr_free
# --------------------------------------------------------------------------------------------


def _decay(owner: str, weight_decay: Any, mask: Any) -> GradientTransformation:
    if weight_decay is None:
        return identity()
    _checks.weight_decay(owner, weight_decay)
    return add_decayed_weights(weight_decay, mask)


@describe
def dog(
    learning_rate: ScalarOrSchedule = 1.0,
    init_step: tuple[str, jax.typing.ArrayLike] = ("heuristic", 1e-6),
    eps: jax.typing.ArrayLike = 1e-8,
    weight_decay: jax.typing.ArrayLike | None = None,
    mask: Any = None,
) -> GradientTransformation:
    r"""DoG (Distance over Gradients): SGD whose step size is set by the distance travelled.

    $$r_t = \max\left(r_{t-1},\ \|x_t - x_0\|_2\right),\qquad G_t = G_{t-1} + \|g_t\|_2^2,\qquad
    u_t = -\eta_t\, \frac{r_t}{\sqrt{G_t + \epsilon}}\, g_t,$$

    one step size for the whole tree ($g_t$ includes the weight decay $w\,x_t$ when given).
    `init_step` sets $r_0$ (see `gradtx.transforms.lr_free.scale_by_dog`). It is
    `chain(add_decayed_weights(weight_decay, mask) or identity(), scale_by_dog(init_step, eps),
    scale_by_learning_rate(learning_rate))`, as `optax.contrib.dog`.

    Args:
        learning_rate: $\eta_t$, default 1.0 (DoG needs no tuning; a decaying schedule may help);
            a real >= 0 or a schedule.
        init_step: `(kind, value)`, default `("heuristic", 1e-6)`: $r_0 = 10^{-6}(1+\|x_0\|)$;
            `("distance", v)`: $r_0 = v$; `("learning_rate", v)`: a first step of size $v$.
        eps: added under the square root, default 1e-8, >= 0.
        weight_decay: decoupled weight decay $w$, default None (none), >= 0.
        mask: which params are decayed (a tree of booleans or a function of the params),
            default None (all).

    Returns:
        A `GradientTransformation` whose `update` needs `params`; its state is
        `(EmptyState() or AddDecayedWeightsState, DoGState, lr state)`.

    References:
        Ivgi, Hinder & Carmon, *DoG is SGD's Best Friend: A Parameter-Free Dynamic Step Size
        Schedule*, ICML 2023 (arXiv:2302.12022).
    """
    owner = "dog"
    _checks.learning_rate(owner, learning_rate)
    check_init_step(owner, init_step)
    _v.check_real(owner, "eps", eps, low=0.0)
    return chain(
        _decay(owner, weight_decay, mask), scale_by_dog(init_step, eps), scale_by_learning_rate(learning_rate)
    )


@describe
def dowg(
    learning_rate: ScalarOrSchedule = 1.0,
    init_estim_sq_dist: jax.typing.ArrayLike | None = None,
    eps: jax.typing.ArrayLike = 1e-4,
    weight_decay: jax.typing.ArrayLike | None = None,
    mask: Any = None,
) -> GradientTransformation:
    r"""DoWG (Distance over Weighted Gradients): DoG with distance-weighted gradient norms.

    $$\bar r_t^2 = \max\left(\bar r_{t-1}^2,\ \|x_t - x_0\|_2^2\right),\qquad
    v_t = v_{t-1} + \bar r_t^2 \|g_t\|_2^2,\qquad
    u_t = -\eta_t\, \frac{\bar r_t^2}{\sqrt{v_t} + \epsilon}\, g_t.$$

    It is `chain(add_decayed_weights(weight_decay, mask) or identity(),
    scale_by_dowg(init_estim_sq_dist, eps), scale_by_learning_rate(learning_rate))`, as
    `optax.contrib.dowg`.

    Args:
        learning_rate: $\eta_t$, default 1.0; a real >= 0 or a schedule.
        init_estim_sq_dist: $\bar r_0^2$, default None (`eps`), >= 0.
        eps: added to the denominator, default 1e-4, >= 0.
        weight_decay: decoupled weight decay, default None (none), >= 0.
        mask: which params are decayed, default None (all).

    Returns:
        A `GradientTransformation` whose `update` needs `params`; state
        `(EmptyState() or AddDecayedWeightsState, DoWGState, lr state)`.

    References:
        Khaled, Mishchenko & Jin, *DoWG Unleashed: An Efficient Universal Parameter-Free
        Gradient Descent Method*, NeurIPS 2023 (arXiv:2305.16284).
    """
    owner = "dowg"
    _checks.learning_rate(owner, learning_rate)
    if init_estim_sq_dist is not None:
        _v.check_real(owner, "init_estim_sq_dist", init_estim_sq_dist, low=0.0)
    _v.check_real(owner, "eps", eps, low=0.0)
    return chain(
        _decay(owner, weight_decay, mask),
        scale_by_dowg(init_estim_sq_dist, eps),
        scale_by_learning_rate(learning_rate),
    )


@describe
def cocob(
    learning_rate: ScalarOrSchedule = 1.0,
    alpha: jax.typing.ArrayLike = 100.0,
    eps: jax.typing.ArrayLike = 1e-8,
    weight_decay: jax.typing.ArrayLike = 0.0,
    mask: Any = None,
) -> GradientTransformation:
    r"""COCOB-Backprop: coin-betting optimizer without a learning rate.

    The gradient (plus weight decay) is multiplied by `learning_rate` (keep 1.0) and fed to
    [`scale_by_cocob`][gradtx.contrib.scale_by_cocob], whose output is the whole step. It is
    `chain(add_decayed_weights(weight_decay, mask), scale_by_learning_rate(learning_rate,
    flip_sign=False), scale_by_cocob(alpha, eps))`, as `optax.contrib.cocob`.

    Args:
        learning_rate: a factor on the gradients, default 1.0; a real >= 0 or a schedule.
        alpha: see `scale_by_cocob`, default 100.0, > 0.
        eps: the initial scale, default 1e-8, > 0.
        weight_decay: decoupled weight decay, default 0.0, >= 0.
        mask: which params are decayed, default None (all).

    Returns:
        A `GradientTransformation` whose `update` needs `params`; state
        `(AddDecayedWeightsState, lr state, COCOBState)`.

    References:
        Orabona & Tommasi, *Training Deep Networks without Learning Rates Through Coin Betting*,
        NeurIPS 2017 (arXiv:1705.07795).
    """
    owner = "cocob"
    _checks.learning_rate(owner, learning_rate)
    _checks.weight_decay(owner, weight_decay)
    _v.check_real(owner, "alpha", alpha, low=0.0, low_inclusive=False)
    _v.check_real(owner, "eps", eps, low=0.0, low_inclusive=False)
    return chain(
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate, flip_sign=False),
        scale_by_cocob(alpha, eps),
    )
