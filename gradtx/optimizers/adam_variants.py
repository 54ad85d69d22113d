r"""Adam variants: AdaBelief, AdaMaxW, Adan, RAdam, Yogi, NovoGrad and the optimistic methods.

Each alias is the chain optax 0.2.8 builds (same members, same order, so the same state layout
and the same numbers): the rescaling, then weight decay where the alias has one, then
[`scale_by_learning_rate`][gradtx.scale_by_learning_rate].
"""

import warnings
from typing import Any

from gradtx import _validation as v
from gradtx.base import GradientTransformation, ScalarOrSchedule, chain, describe
from gradtx.optimizers import _checks
from gradtx.optimizers.adam import MaskOrFn, _check_adam
from gradtx.transforms.adam_family import scale_by_adam, scale_by_adamax
from gradtx.transforms.adam_variants import scale_by_belief, scale_by_radam, scale_by_yogi
from gradtx.transforms.adan_novograd_optimistic import (
    scale_by_adan,
    scale_by_novograd,
    scale_by_optimistic_gradient,
)
from gradtx.transforms.scaling import scale_by_learning_rate
from gradtx.transforms.weight_decay import add_decayed_weights

__all__ = [
    "adabelief",
    "adamaxw",
    "adan",
    "novograd",
    "optimistic_adam",
    "optimistic_adam_v2",
    "optimistic_gradient_descent",
    "radam",
    "yogi",
]


def _check_betas(owner: str, **betas: Any) -> None:
    for name, value in betas.items():
        _checks.beta(owner, name, value)


def _check_nonneg(owner: str, **values: Any) -> None:
    for name, value in values.items():
        _checks.nonneg(owner, name, value)


@describe
def adabelief(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-16,
    eps_root: float = 1e-16,
    *,
    nesterov: bool = False,
) -> GradientTransformation:
    r"""AdaBelief: Adam whose second moment tracks the prediction error $g_t - m_t$.

    With $t = 1, 2, \dots$ and $\eta$ evaluated at $t - 1$ when it is a schedule:

    $$m_t = \beta_1 m_{t-1} + (1-\beta_1)\,g_t,\qquad
      s_t = \beta_2 s_{t-1} + (1-\beta_2)\,(g_t - m_t)^2 + \bar\epsilon,\qquad m_0 = s_0 = 0$$

    $$u_t = -\eta\,\frac{m_t / (1-\beta_1^t)}{\sqrt{s_t / (1-\beta_2^t)} + \epsilon}$$

    A gradient close to its running average ("believed") gets a large step, a surprising one a
    small step; `nesterov=True` uses the Nesterov first moment of [`nadam`][gradtx.nadam].
    It is `chain(scale_by_belief(...), scale_by_learning_rate(lr))`, as `optax.adabelief`.

    Args:
        learning_rate: step size $\eta$: a real number `>= 0` or a schedule of the step count.
        b1: $\beta_1$ in `[0, 1)`, default 0.9.
        b2: $\beta_2$ in `[0, 1)`, default 0.999.
        eps: $\epsilon$, real `>= 0`, default 1e-16 (the paper uses 1e-8).
        eps_root: $\bar\epsilon$, added to $s_t$ at every step; real `>= 0`, default 1e-16
            (the paper uses 0; must be > 0 to differentiate through the update).
        nesterov: use the Nesterov first moment; keyword-only, default False.

    Returns:
        A `GradientTransformation`.

    References:
        Zhuang et al., *AdaBelief Optimizer: Adapting Stepsizes by the Belief in Observed
        Gradients*, NeurIPS 2020 (arXiv:2010.07468).
    """
    owner = "adabelief"
    _checks.learning_rate(owner, learning_rate)
    _check_betas(owner, b1=b1, b2=b2)
    _check_nonneg(owner, eps=eps, eps_root=eps_root)
    v.check_bool(owner, "nesterov", nesterov)
    return chain(
        scale_by_belief(b1=b1, b2=b2, eps=eps, eps_root=eps_root, nesterov=nesterov),
        scale_by_learning_rate(learning_rate),
    )


@describe
def adamaxw(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: ScalarOrSchedule = 1e-4,
    mask: MaskOrFn = None,
) -> GradientTransformation:
    r"""AdaMaxW: AdaMax with decoupled weight decay.

    $$m_t = \beta_1 m_{t-1} + (1-\beta_1)\,g_t,\qquad
      w_t = \max(\beta_2\, w_{t-1},\ |g_t| + \epsilon),$$

    $$u_t = -\eta\,\Big(\frac{m_t}{(1-\beta_1^t)\, w_t} + \lambda\, p_{t-1}\Big)$$

    with $m_0 = w_0 = 0$. It is `chain(scale_by_adamax(b1, b2, eps), add_decayed_weights(weight_decay,
    mask), scale_by_learning_rate(lr))`, as `optax.adamaxw`; `update` needs `params`.

    Args:
        learning_rate: step size $\eta$: a real number `>= 0` or a schedule of the step count.
        b1: $\beta_1$ in `[0, 1)`, default 0.9.
        b2: $\beta_2$, decay of the infinity norm; in `[0, 1)`, default 0.999.
        eps: real `>= 0`, default 1e-8.
        weight_decay: $\lambda$: a real number `>= 0` or a schedule; default 1e-4.
        mask: a pytree of booleans shaped like the params (or a function of the params
            returning one) selecting the decayed leaves; None (default) decays all.

    Returns:
        A `GradientTransformation`.

    References:
        Kingma & Ba, *Adam: A Method for Stochastic Optimization*, ICLR 2015, section 7.1;
        Loshchilov & Hutter, *Decoupled Weight Decay Regularization*, ICLR 2019.
    """
    owner = "adamaxw"
    _checks.learning_rate(owner, learning_rate)
    _check_betas(owner, b1=b1, b2=b2)
    _check_nonneg(owner, eps=eps)
    _checks.weight_decay(owner, weight_decay)
    return chain(
        scale_by_adamax(b1=b1, b2=b2, eps=eps),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


@describe
def adan(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.98,
    b2: float = 0.92,
    b3: float = 0.99,
    eps: float = 1e-8,
    eps_root: float = 1e-8,
    weight_decay: ScalarOrSchedule = 0.0,
    mask: MaskOrFn = None,
) -> GradientTransformation:
    r"""Adan: adaptive Nesterov momentum, estimated from gradient differences.

    With $d_t = g_t - g_{t-1}$ ($d_1 = 0$) and $c_i = 1 - \beta_i^t$:

    $$m_t = \beta_1 m_{t-1} + (1-\beta_1)\,g_t,\qquad v_t = \beta_2 v_{t-1} + (1-\beta_2)\,d_t,$$

    $$n_t = \beta_3 n_{t-1} + (1-\beta_3)\,\big(g_t + (1-\beta_2)\,d_t\big)^2,$$

    $$u_t = -\eta\,\Big(\frac{m_t/c_1 + (1-\beta_2)\,v_t/c_2}{\sqrt{n_t/c_3 + \epsilon_{root}} + \epsilon}
      + \lambda\, p_{t-1}\Big)$$

    It is `chain(scale_by_adan(b1, b2, b3, eps, eps_root), add_decayed_weights(weight_decay, mask),
    scale_by_learning_rate(lr))`, as `optax.adan` (decoupled weight decay added to the direction,
    not the paper's proximal division by $1 + \lambda\eta$).

    Args:
        learning_rate: step size $\eta$: a real number `>= 0` or a schedule of the step count.
        b1: $\beta_1$, decay of the gradient average; in `[0, 1)`, default 0.98.
        b2: $\beta_2$, decay of the gradient-difference average; in `[0, 1)`, default 0.92.
        b3: $\beta_3$, decay of the squared-term average; in `[0, 1)`, default 0.99.
        eps: real `>= 0`, default 1e-8.
        eps_root: real `>= 0`, default 1e-8 (0.0 in [`scale_by_adan`][gradtx.scale_by_adan]).
        weight_decay: $\lambda$: a real number `>= 0` or a schedule; default 0.0.
        mask: which leaves are decayed (see [`adamw`][gradtx.adamw]); None (default) decays all.

    Returns:
        A `GradientTransformation`.

    References:
        Xie et al., *Adan: Adaptive Nesterov Momentum Algorithm for Faster Optimizing Deep
        Models*, 2022 (arXiv:2208.06677).
    """
    owner = "adan"
    _checks.learning_rate(owner, learning_rate)
    _check_betas(owner, b1=b1, b2=b2, b3=b3)
    _check_nonneg(owner, eps=eps, eps_root=eps_root)
    _checks.weight_decay(owner, weight_decay)
    return chain(
        scale_by_adan(b1=b1, b2=b2, b3=b3, eps=eps, eps_root=eps_root),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


@describe
def radam(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    threshold: float = 5.0,
    *,
    nesterov: bool = False,
) -> GradientTransformation:
    r"""RAdam: Adam with the variance of its adaptive learning rate rectified.

    With Adam's bias-corrected moments $\hat m_t$, $\hat v_t$ (see [`adam`][gradtx.adam]),
    $\rho_\infty = 2/(1-\beta_2) - 1$ and $\rho_t = \rho_\infty - 2t\beta_2^t/(1-\beta_2^t)$:

    $$u_t = -\eta\, r_t\,\frac{\hat m_t}{\sqrt{\hat v_t + \epsilon_{root}} + \epsilon}
      \quad\text{if } \rho_t \ge \text{threshold},\qquad u_t = -\eta\,\hat m_t \text{ otherwise},$$

    $$r_t = \sqrt{\frac{(\rho_t-4)(\rho_t-2)\,\rho_\infty}{(\rho_\infty-4)(\rho_\infty-2)\,\rho_t}}.$$

    The first steps (about `threshold` of them) are momentum SGD, while the second moment is
    too noisy; it is `chain(scale_by_radam(...), scale_by_learning_rate(lr))`, as `optax.radam`.

    Args:
        learning_rate: step size $\eta$: a real number `>= 0` or a schedule of the step count.
        b1: $\beta_1$ in `[0, 1)`, default 0.9.
        b2: $\beta_2$ in `[0, 1)`, default 0.999.
        eps: real `>= 0`, default 1e-8.
        eps_root: real `>= 0`, default 0.0.
        threshold: smallest $\rho_t$ that uses the rectified step; real `>= 4`, default 5.0
            (below 4, $r_t$ is the square root of a negative number for some step: NaN).
        nesterov: use the Nesterov first moment; keyword-only, default False.

    Returns:
        A `GradientTransformation`.

    References:
        Liu et al., *On the Variance of the Adaptive Learning Rate and Beyond*, ICLR 2020
        (arXiv:1908.03265).
    """
    owner = "radam"
    _checks.learning_rate(owner, learning_rate)
    _check_betas(owner, b1=b1, b2=b2)
    _check_nonneg(owner, eps=eps, eps_root=eps_root)
    v.check_real(owner, "threshold", threshold, low=4.0)
    v.check_bool(owner, "nesterov", nesterov)
    return chain(
        scale_by_radam(b1=b1, b2=b2, eps=eps, eps_root=eps_root, threshold=threshold, nesterov=nesterov),
        scale_by_learning_rate(learning_rate),
    )


@describe
def yogi(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-3,
) -> GradientTransformation:
    r"""Yogi: Adam whose second moment moves additively, by the sign of $|g_t|^2 - v_{t-1}$.

    $$m_t = \beta_1 m_{t-1} + (1-\beta_1)\,g_t,\qquad
      v_t = v_{t-1} - (1-\beta_2)\,\operatorname{sign}(v_{t-1} - g_t^2)\,g_t^2,$$

    $$u_t = -\eta\,\frac{m_t/(1-\beta_1^t)}{\sqrt{v_t/(1-\beta_2^t)} + \epsilon}$$

    with $m_0 = v_0 = 10^{-6}$. It is `chain(scale_by_yogi(b1, b2, eps), scale_by_learning_rate(lr))`,
    as `optax.yogi` (use [`scale_by_yogi`][gradtx.scale_by_yogi] for `eps_root` and the initial
    value).

    Args:
        learning_rate: step size $\eta$: a real number `>= 0` or a schedule of the step count.
        b1: $\beta_1$ in `[0, 1)`, default 0.9.
        b2: $\beta_2$ in `[0, 1)`, default 0.999.
        eps: real `>= 0`, default 1e-3 (larger than Adam's: Yogi's paper recommends it).

    Returns:
        A `GradientTransformation`.

    References:
        Zaheer et al., *Adaptive Methods for Nonconvex Optimization*, NeurIPS 2018.
    """
    owner = "yogi"
    _checks.learning_rate(owner, learning_rate)
    _check_betas(owner, b1=b1, b2=b2)
    _check_nonneg(owner, eps=eps)
    return chain(scale_by_yogi(b1=b1, b2=b2, eps=eps), scale_by_learning_rate(learning_rate))


@describe
def novograd(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.25,
    eps: float = 1e-6,
    eps_root: float = 0.0,
    weight_decay: float = 0.0,
) -> GradientTransformation:
    r"""NovoGrad: gradients normalised layer by layer, with momentum and weight decay.

    For each leaf (layer) with params $p_{t-1}$ and one scalar second moment $v_t$:

    $$v_1 = \|g_1\|^2,\qquad v_t = \beta_2 v_{t-1} + (1-\beta_2)\,\|g_t\|^2,$$

    $$m_t = \beta_1 m_{t-1} + \frac{g_t}{\sqrt{v_t + \epsilon_{root}} + \epsilon} + \lambda\, p_{t-1},
      \qquad m_0 = 0,\qquad u_t = -\eta\, m_t$$

    It is `chain(scale_by_novograd(b1, b2, eps, eps_root, weight_decay), scale_by_learning_rate(lr))`,
    as `optax.novograd`; `update` needs `params`. Half of Adam's memory: the second moment is
    one number per leaf.

    Args:
        learning_rate: step size $\eta$: a real number `>= 0` or a schedule of the step count.
        b1: $\beta_1$, momentum; in `[0, 1]`, default 0.9.
        b2: $\beta_2$, decay of the squared-norm average; in `[0, 1]`, default 0.25.
        eps: real `>= 0`, default 1e-6.
        eps_root: real `>= 0`, default 0.0.
        weight_decay: $\lambda$: a real number `>= 0`, default 0.0. Not a schedule (optax's
            annotation allows one, but its update cannot use it).

    Returns:
        A `GradientTransformation`.

    References:
        Ginsburg et al., *Stochastic Gradient Methods with Layer-wise Adaptive Moments for
        Training of Deep Networks*, 2019 (arXiv:1905.11286).
    """
    owner = "novograd"
    _checks.learning_rate(owner, learning_rate)
    _checks.beta(owner, "b1", b1, closed=True)
    _checks.beta(owner, "b2", b2, closed=True)
    _check_nonneg(owner, eps=eps, eps_root=eps_root, weight_decay=weight_decay)
    return chain(
        scale_by_novograd(b1=b1, b2=b2, eps=eps, eps_root=eps_root, weight_decay=weight_decay),
        scale_by_learning_rate(learning_rate),
    )


@describe
def optimistic_gradient_descent(
    learning_rate: ScalarOrSchedule,
    alpha: float = 1.0,
    beta: float = 1.0,
) -> GradientTransformation:
    r"""Optimistic gradient descent: extrapolate from the previous gradient.

    $$u_t = -\eta\,\big((\alpha + \beta)\, g_t - \beta\, g_{t-1}\big),\qquad g_0 = g_1$$

    An approximation of the extra-gradient method with one gradient per step; it converges in
    the last iterate on min-max problems where gradient descent–ascent cycles or diverges. It is
    `chain(scale_by_optimistic_gradient(alpha, beta), scale_by_learning_rate(lr))`, as
    `optax.optimistic_gradient_descent`.

    Args:
        learning_rate: step size $\eta$: a real number `>= 0` or a schedule of the step count.
        alpha: weight of the current gradient; a real number `>= 0`, default 1.0.
        beta: weight of the negative momentum; a real number `>= 0`, default 1.0. Neither
            `alpha` nor `beta` may be a schedule (optax's annotation allows one, but its update
            cannot use it; inject them with [`inject_hyperparams`][gradtx.inject_hyperparams]).

    Returns:
        A `GradientTransformation`.

    References:
        Mokhtari, Ozdaglar & Pattathil, *A Unified Analysis of Extra-gradient and Optimistic
        Gradient Methods for Saddle Point Problems: Proximal Point Approach*, AISTATS 2020
        (arXiv:1901.08511).
    """
    owner = "optimistic_gradient_descent"
    _checks.learning_rate(owner, learning_rate)
    _check_nonneg(owner, alpha=alpha, beta=beta)
    return chain(scale_by_optimistic_gradient(alpha=alpha, beta=beta), scale_by_learning_rate(learning_rate))


@describe
def optimistic_adam_v2(
    learning_rate: ScalarOrSchedule,
    *,
    alpha: float = 1.0,
    beta: float = 1.0,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-08,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    nesterov: bool = True,
) -> GradientTransformation:
    r"""Optimistic Adam: optimistic gradients of Adam's direction.

    With $d_t$ the (by default Nesterov) Adam direction
    $\hat m_t / (\sqrt{\hat v_t + \epsilon_{root}} + \epsilon)$ of [`adam`][gradtx.adam]:

    $$u_t = -\eta\,\big((\alpha + \beta)\, d_t - \beta\, d_{t-1}\big),\qquad d_0 = d_1$$

    It is `chain(scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov),
    scale_by_optimistic_gradient(alpha, beta), scale_by_learning_rate(lr))`, as
    `optax.optimistic_adam_v2`. Every argument after `learning_rate` is keyword-only.

    Args:
        learning_rate: step size $\eta$: a real number `>= 0` or a schedule of the step count.
        alpha: weight of the current direction; a real number `>= 0`, default 1.0.
        beta: optimism, the weight of the negative momentum; a real number `>= 0`, default 1.0.
        b1: $\beta_1$ in `[0, 1)`, default 0.9.
        b2: $\beta_2$ in `[0, 1)`, default 0.999.
        eps: real `>= 0`, default 1e-8.
        eps_root: real `>= 0`, default 0.0.
        mu_dtype: dtype of the first moment: None (default, the params' dtype), a floating
            dtype, or a complex one for complex params.
        nesterov: use the Nesterov first moment; default True.

    Returns:
        A `GradientTransformation`.

    References:
        Daskalakis et al., *Training GANs with Optimism*, ICLR 2018 (arXiv:1711.00141).
    """
    owner = "optimistic_adam_v2"
    _check_nonneg(owner, alpha=alpha, beta=beta)
    _check_adam(owner, learning_rate, b1, b2, eps, eps_root, mu_dtype, nesterov)
    return chain(
        scale_by_adam(b1=b1, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype, nesterov=nesterov),
        scale_by_optimistic_gradient(alpha=alpha, beta=beta),
        scale_by_learning_rate(learning_rate),
    )


@describe
def optimistic_adam(
    learning_rate: float,
    optimism: float | None = None,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-08,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    *,
    nesterov: bool = True,
) -> GradientTransformation:
    r"""Optimistic Adam, optax's deprecated form: use [`optimistic_adam_v2`][gradtx.optimistic_adam_v2].

    With $d_t$ the (by default Nesterov) Adam direction of [`adam`][gradtx.adam] and $o$ the
    optimism:

    $$u_t = -\big((\eta + o)\, d_t - o\, d_{t-1}\big),\qquad d_0 = d_1$$

    that is `optimistic_adam_v2(1.0, alpha=learning_rate, beta=optimism, ...)`, the chain
    `optax.optimistic_adam` builds.

    Every call emits the `DeprecationWarning` optax emits ("`optimistic_adam` is deprecated,
    please use `optimistic_adam_v2` instead.", attributed to the caller's line).

    Args:
        learning_rate: $\eta$, a real number `>= 0`; not a schedule (a `ValueError`, as in
            optax: `optimistic_adam_v2` takes schedules).
        optimism: $o$, a real number `>= 0`; None (default) uses `learning_rate`, as in the paper.
        b1: $\beta_1$ in `[0, 1)`, default 0.9.
        b2: $\beta_2$ in `[0, 1)`, default 0.999.
        eps: real `>= 0`, default 1e-8.
        eps_root: real `>= 0`, default 0.0.
        mu_dtype: dtype of the first moment: None (default, the params' dtype), a floating
            dtype, or a complex one for complex params.
        nesterov: use the Nesterov first moment; keyword-only, default True.

    Returns:
        A `GradientTransformation`.

    References:
        Daskalakis et al., *Training GANs with Optimism*, ICLR 2018 (arXiv:1711.00141).
    """
    owner = "optimistic_adam"
    # stacklevel 3: this function, describe's wrapper, the caller
    warnings.warn(
        "`optimistic_adam` is deprecated, please use `optimistic_adam_v2` instead.",
        category=DeprecationWarning,
        stacklevel=3,
    )
    if callable(learning_rate):
        raise ValueError(
            f"{owner}: learning_rate must be a number: this version of `optimistic_adam` does not "
            f"support learning rate schedules but `optimistic_adam_v2` does (got {learning_rate!r})."
        )
    _check_nonneg(owner, learning_rate=learning_rate)
    if optimism is None:
        optimism = learning_rate
    else:
        _check_nonneg(owner, optimism=optimism)
    _check_adam(owner, learning_rate, b1, b2, eps, eps_root, mu_dtype, nesterov)
    return chain(
        scale_by_adam(b1=b1, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype, nesterov=nesterov),
        scale_by_optimistic_gradient(alpha=learning_rate, beta=optimism),
        scale_by_learning_rate(1.0),
    )
