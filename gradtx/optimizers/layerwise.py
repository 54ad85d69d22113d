"""Optimizers with per-layer or per-slice step sizes: Fromage, LARS, SM3 and Adadelta."""

from typing import Any

import jax

from gradtx import _validation as v
from gradtx.base import EmptyState, GradientTransformation, ScalarOrSchedule, chain, describe
from gradtx.numerics import float_updates, tree_as_arrays
from gradtx.optimizers import _checks
from gradtx.optimizers.adam import MaskOrFn
from gradtx.transforms import (
    add_decayed_weights,
    scale,
    scale_by_learning_rate,
    scale_by_trust_ratio,
    trace,
)
from gradtx.transforms.adadelta import scale_by_adadelta
from gradtx.transforms.blockwise import scale_by_sm3
from gradtx.transforms.weight_decay import decayed_weights_leaf
from gradtx.wrappers import masked

__all__ = ["adadelta", "fromage", "lars", "sm3"]


def _add_scaled_params(coefficient: Any) -> GradientTransformation:
    """`u = g + coefficient · p`, stateless, for any sign of a constant `coefficient`.

    Fromage's shrinkage is a *negative* weight decay, which `add_decayed_weights` refuses; the
    arithmetic and the state (`EmptyState()`, nothing added for a coefficient of 0) are its.
    """

    def init(params):
        del params
        return EmptyState()

    def update(updates, state, params=None, **extra_args):
        del extra_args
        if params is None:
            raise ValueError(
                "fromage.update: params are required (the params are shrunk towards 0); call "
                "update(updates, state, params)."
            )
        if isinstance(coefficient, (int, float)) and coefficient == 0.0:
            return updates, state
        leaf = lambda g, p: decayed_weights_leaf(g, p, coefficient)  # noqa: E731
        return jax.tree.map(leaf, float_updates(updates), tree_as_arrays(params)), state

    return GradientTransformation(init, update)


@describe
def fromage(learning_rate: ScalarOrSchedule, min_norm: float = 1e-6) -> GradientTransformation:
    r"""Fromage (Frobenius matched gradient descent): relative steps, then a shrink.

    For each leaf with params $p$ and gradient $g$, with $\eta$ = `learning_rate` and
    $\mu = 1/\sqrt{1 + \eta^2}$:

    $$p \leftarrow \mu\Big(p - \eta\,\frac{\max(\|p\|, m)}{\max(\|g\|, m)}\, g\Big),$$

    ($\|\cdot\|$ the L2 norm over the whole leaf, $m$ = `min_norm`; the ratio is 1 when either
    norm is 0). Each step changes a layer by a fixed fraction $\eta$ of its norm, and the
    factor $\mu$ keeps the norms from growing. It is `chain(scale_by_trust_ratio(min_norm),
    scale_by_learning_rate(eta * mu), add μ - 1 times the params)`, as `optax.fromage`;
    `update` needs `params`. With a schedule $\eta_t$, $\mu_t$ follows it.

    Args:
        learning_rate: $\eta$: a real number >= 0 or a schedule of the step count. Values
            around 1e-2 are typical; no tuning per layer is needed.
        min_norm: the floor $m$ of both norms, default 1e-6; a real number >= 0.

    Returns:
        A `GradientTransformation`.

    References:
        Bernstein, Vahdat, Yue & Liu, *On the distance between two neural networks and the
        stability of learning*, NeurIPS 2020 (arXiv:2002.03432).
    """
    owner = "fromage"
    _checks.learning_rate(owner, learning_rate)
    _checks.nonneg(owner, "min_norm", min_norm)
    if callable(learning_rate):

        def shrink(count):
            return 1 / (1 + learning_rate(count) ** 2) ** 0.5

        return chain(
            scale_by_trust_ratio(min_norm),
            scale_by_learning_rate(lambda count: shrink(count) * learning_rate(count)),
            add_decayed_weights(lambda count: shrink(count) - 1),
        )
    mu = 1 / (1 + learning_rate**2) ** 0.5
    return chain(
        scale_by_trust_ratio(min_norm),
        scale_by_learning_rate(learning_rate * mu),
        _add_scaled_params(mu - 1),
    )


@describe
def lars(
    learning_rate: ScalarOrSchedule,
    weight_decay: ScalarOrSchedule = 0.0,
    weight_decay_mask: MaskOrFn = True,
    trust_coefficient: float = 0.001,
    eps: float = 0.0,
    trust_ratio_mask: MaskOrFn = True,
    momentum: float = 0.9,
    nesterov: bool = False,
) -> GradientTransformation:
    r"""LARS: SGD with momentum and a layer-wise trust ratio, for large batches.

    For each leaf (layer) with params $p$ and gradient $g$:

    $$d = g + \lambda p,\qquad
    r = \frac{c\,\|p\|}{\|d\| + \epsilon}\ \ (1 \text{ if either norm is } 0),\qquad
    m_t = \beta\, m_{t-1} - \eta_t\, r\, d,\qquad u_t = m_t$$

    (Nesterov: $u_t = -\eta_t r d + \beta m_t$). It is `chain(add_decayed_weights(λ,
    weight_decay_mask), masked(scale_by_trust_ratio(c, eps), trust_ratio_mask),
    scale_by_learning_rate(η), trace(β, nesterov))`, as `optax.lars`; `update` needs `params`.
    The trust ratio makes $\eta$ a step *relative* to each layer's norm (times $c$).

    Args:
        learning_rate: $\eta$: a real number >= 0 or a schedule of the step count.
        weight_decay: $\lambda$: a real number >= 0 or a schedule; default 0.0.
        weight_decay_mask: the leaves decayed: a tree of booleans (a prefix of the params) or
            a function of the params returning one; default True (all).
        trust_coefficient: $c$, default 0.001; a real number >= 0.
        eps: added to the update norm, default 0.0; a real number >= 0.
        trust_ratio_mask: the leaves given a trust ratio (the others keep ratio 1); default
            True (all). Biases and normalisation scales are often excluded.
        momentum: $\beta$ in [0, 1], default 0.9.
        nesterov: Nesterov momentum, default False.

    Returns:
        A `GradientTransformation`.

    References:
        You, Gitman & Ginsburg, *Large Batch Training of Convolutional Networks*, 2017
        (arXiv:1708.03888).
    """
    owner = "lars"
    _checks.learning_rate(owner, learning_rate)
    _checks.weight_decay(owner, weight_decay)
    _checks.nonneg(owner, "trust_coefficient", trust_coefficient)
    _checks.nonneg(owner, "eps", eps)
    v.check_real(owner, "momentum", momentum, low=0.0, high=1.0)
    v.check_bool(owner, "nesterov", nesterov)
    return chain(
        add_decayed_weights(weight_decay, mask=weight_decay_mask),
        masked(scale_by_trust_ratio(trust_coefficient=trust_coefficient, eps=eps), mask=trust_ratio_mask),
        scale_by_learning_rate(learning_rate),
        trace(decay=momentum, nesterov=nesterov),
    )


@describe
def sm3(learning_rate: ScalarOrSchedule, momentum: float = 0.9) -> GradientTransformation:
    r"""SM3: Adagrad-like steps with accumulators per slice of each axis, plus momentum.

    With $\nu_t$ the cover-wise bound of [`scale_by_sm3`][gradtx.scale_by_sm3] (for a matrix:
    the smaller of its row's and its column's accumulated maximum, plus $g_t^2$):

    $$m_t = \beta\, m_{t-1} + (1-\beta)\,\frac{g_t}{\sqrt{\nu_t + 10^{-8}}},\qquad
    u_t = -\eta\, m_t.$$

    Memory is one vector per axis of each leaf ($n + m$ for an $n\times m$ matrix) plus the
    momentum. It is `chain(scale_by_sm3(momentum), scale(-learning_rate))`, as `optax.sm3`.

    Args:
        learning_rate: $\eta$, a real number >= 0. gradtx also accepts a schedule of the step
            count (then the second stage is `scale_by_learning_rate(schedule)`; optax's `sm3`
            takes numbers only).
        momentum: $\beta$ in [0, 1], default 0.9.

    Returns:
        A `GradientTransformation` with state `(ScaleBySM3State(mu, nu), EmptyState())`.
        Complex params are refused; scalar leaves get one scalar accumulator (optax fails on
        them).

    References:
        Anil, Gupta, Koren & Singer, *Memory-Efficient Adaptive Optimization*, NeurIPS 2019
        (arXiv:1901.11150).
    """
    owner = "sm3"
    _checks.learning_rate(owner, learning_rate)
    v.check_real(owner, "momentum", momentum, low=0.0, high=1.0)
    if callable(learning_rate):
        return chain(scale_by_sm3(momentum), scale_by_learning_rate(learning_rate))
    return chain(scale_by_sm3(momentum), scale(-learning_rate))


@describe
def adadelta(
    learning_rate: ScalarOrSchedule | None = None,
    rho: float = 0.9,
    eps: float = 1e-6,
    weight_decay: ScalarOrSchedule = 0.0,
    weight_decay_mask: MaskOrFn = None,
) -> GradientTransformation:
    r"""Adadelta: per-coordinate steps from the ratio of two moving RMS, no tuning of $\eta$.

    With $d_t = g_t + \lambda p_{t-1}$:

    $$E[d^2]_t = \rho E[d^2]_{t-1} + (1-\rho) d_t^2,\qquad
    \Delta_t = \frac{\sqrt{E[\Delta^2]_{t-1} + \epsilon}}{\sqrt{E[d^2]_t + \epsilon}}\, d_t,$$

    $$E[\Delta^2]_t = \rho E[\Delta^2]_{t-1} + (1-\rho)\Delta_t^2,\qquad u_t = -\eta_t \Delta_t.$$

    It is `chain(add_decayed_weights(λ, weight_decay_mask), scale_by_adadelta(ρ, ε),
    scale_by_learning_rate(η))`, as `optax.adadelta`.

    Args:
        learning_rate: $\eta$: a real number >= 0, a schedule of the step count, or None
            (default). With None the updates are $+\Delta_t$, neither scaled nor negated, as in
            optax, so `apply_updates` moves *up* the gradient: pass a learning rate. Both
            averages start at 0, so the first steps are about $\eta\sqrt{\epsilon}$ long:
            values well above 1 are common.
        rho: $\rho$ in [0, 1], default 0.9.
        eps: $\epsilon$, default 1e-6; a real number >= 0.
        weight_decay: $\lambda$: a real number >= 0 or a schedule; default 0.0.
        weight_decay_mask: a tree of booleans (or a function of the params returning one)
            selecting the decayed leaves; None (default) decays all.

    Returns:
        A `GradientTransformation`. Complex params are refused.

    References:
        Zeiler, *ADADELTA: An Adaptive Learning Rate Method*, 2012 (arXiv:1212.5701).
    """
    owner = "adadelta"
    if learning_rate is not None:
        _checks.learning_rate(owner, learning_rate)
    v.check_real(owner, "rho", rho, low=0.0, high=1.0)
    _checks.nonneg(owner, "eps", eps)
    _checks.weight_decay(owner, weight_decay)
    return chain(
        add_decayed_weights(weight_decay, mask=weight_decay_mask),
        scale_by_adadelta(rho=rho, eps=eps),
        scale_by_learning_rate(learning_rate),
    )
