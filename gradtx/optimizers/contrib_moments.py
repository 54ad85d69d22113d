r"""Research moment-based optimizers of `optax.contrib`: ADOPT, AdEMAMix, simplified AdEMAMix,
MADGRAD, ACProp, Sophia and GaLore.

Each alias is the chain optax builds (so the state layout is optax's), exported from
`gradtx.contrib` only.
"""

from collections.abc import Callable
from typing import Any

import jax

from gradtx import _validation as v
from gradtx.base import GradientTransformation, Params, ScalarOrSchedule, chain, describe
from gradtx.optimizers import _checks
from gradtx.transforms import add_decayed_weights, scale_by_learning_rate
from gradtx.transforms.contrib_galore import scale_by_galore
from gradtx.transforms.contrib_moments import (
    scale_by_acprop,
    scale_by_ademamix,
    scale_by_adopt,
    scale_by_madgrad,
    scale_by_simplified_ademamix,
)
from gradtx.transforms.contrib_sophia import hutchinson_estimator_diag_hessian, scale_by_sophia

__all__ = ["acprop", "ademamix", "adopt", "galore", "madgrad", "simplified_ademamix", "sophia"]

MaskOrFn = Any | Callable[[Params], Any] | None


@describe
def adopt(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.9999,
    eps: float = 1e-6,
    mu_dtype: Any = None,
    *,
    nesterov: bool = False,
    use_clipping: bool = True,
    clip_value_fn: Callable[[jax.Array], jax.Array] = lambda x: x**0.25,
) -> GradientTransformation:
    r"""ADOPT: Adam whose gradient is normalised by the previous second moment, then averaged.

    The update is $-\eta\, m_k$ with $m_k$ the moment of
    [`scale_by_adopt`][gradtx.contrib.scale_by_adopt] (see there for the rule); it is
    `chain(scale_by_adopt(...), scale_by_learning_rate(learning_rate))`, as `optax.contrib.adopt`.
    The first step moves nothing (it only records $g_0^2$).

    Args:
        learning_rate: $\eta$, real `>= 0` or a schedule.
        b1: in `[0, 1)`, default 0.9.
        b2: in `[0, 1)`, default 0.9999.
        eps: real `>= 0`, default 1e-6.
        mu_dtype: dtype of the first moment, default None.
        nesterov: keyword-only, default False.
        use_clipping: default True.
        clip_value_fn: step count to clipping bound, default $k^{1/4}$.

    Example:
        ```python
        import gradtx
        opt = gradtx.contrib.adopt(3e-3)
        ```

    References:
        Taniguchi et al., [ADOPT: Modified Adam Can Converge with Any β2 with the Optimal
        Rate](https://arxiv.org/abs/2411.02853), NeurIPS 2024.
    """
    owner = "adopt"
    _checks.learning_rate(owner, learning_rate)
    _checks.beta(owner, "b1", b1)
    _checks.beta(owner, "b2", b2)
    _checks.nonneg(owner, "eps", eps)
    return chain(
        scale_by_adopt(
            b1=b1,
            b2=b2,
            eps=eps,
            mu_dtype=mu_dtype,
            nesterov=nesterov,
            use_clipping=use_clipping,
            clip_value_fn=clip_value_fn,
        ),
        scale_by_learning_rate(learning_rate),
    )


@describe
def ademamix(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    b3: ScalarOrSchedule = 0.9999,
    alpha: ScalarOrSchedule = 5.0,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    weight_decay: float = 0.0,
    mask: MaskOrFn = None,
) -> GradientTransformation:
    r"""AdEMAMix: Adam with an extra slow moving average of the gradients, and decoupled weight decay.

    $$u_t = -\eta\Big(\frac{\hat m^{(1)}_t + \alpha\, m^{(2)}_t}{\sqrt{\hat v_t + \epsilon_{root}} + \epsilon}
    + \lambda\, x_t\Big)$$

    with the moments of [`scale_by_ademamix`][gradtx.contrib.scale_by_ademamix]. It is
    `chain(scale_by_ademamix(...), add_decayed_weights(weight_decay, mask), scale_by_learning_rate(lr))`.
    Note the alias's default `alpha` is 5.0 (the transformation's is 6.0), as in optax.

    Args:
        learning_rate: $\eta$, real `>= 0` or a schedule.
        b1: in `[0, 1)`, default 0.9.
        b2: in `[0, 1)`, default 0.999.
        b3: in `[0, 1)` or a schedule, default 0.9999.
        alpha: real `>= 0` or a schedule, default 5.0.
        eps: real `>= 0`, default 1e-8.
        eps_root: real `>= 0`, default 0.
        mu_dtype: dtype of the moments, default None.
        weight_decay: $\lambda$, real `>= 0`, default 0.
        mask: which params are decayed (a tree of bools or a function of the params), default None (all).

    References:
        Pagliardini et al., [The AdEMAMix Optimizer: Better, Faster, Older](https://arxiv.org/abs/2409.03137), 2024.
    """
    owner = "ademamix"
    _checks.learning_rate(owner, learning_rate)
    _checks.weight_decay(owner, weight_decay)
    return chain(
        scale_by_ademamix(b1=b1, b2=b2, b3=b3, alpha=alpha, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


@describe
def simplified_ademamix(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.99,
    b2: float = 0.95,
    alpha: ScalarOrSchedule = 0.0,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    weight_decay: float = 0.0,
    mask: MaskOrFn = None,
) -> GradientTransformation:
    r"""Simplified AdEMAMix: an undamped momentum sum plus $\alpha g$, over Adam's denominator.

    It is `chain(scale_by_simplified_ademamix(...), add_decayed_weights(weight_decay, mask),
    scale_by_learning_rate(lr))`; see
    [`scale_by_simplified_ademamix`][gradtx.contrib.scale_by_simplified_ademamix] for the rule.

    Args:
        learning_rate: $\eta$, real `>= 0` or a schedule.
        b1: in `[0, 1)`, default 0.99.
        b2: in `[0, 1)`, default 0.95.
        alpha: real `>= 0` or a schedule, default 0.
        eps: real `>= 0`, default 1e-8.
        eps_root: real `>= 0`, default 0.
        weight_decay: real `>= 0`, default 0.
        mask: which params are decayed, default None (all).

    References:
        Morwani et al., [Connections between Schedule-Free Optimizers, AdEMAMix, and
        Accelerated SGD Variants](https://arxiv.org/abs/2502.02431), 2025.
    """
    owner = "simplified_ademamix"
    _checks.learning_rate(owner, learning_rate)
    _checks.weight_decay(owner, weight_decay)
    return chain(
        scale_by_simplified_ademamix(b1=b1, b2=b2, alpha=alpha, eps=eps, eps_root=eps_root),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


@describe
def madgrad(
    learning_rate: ScalarOrSchedule,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    eps: float = 1e-6,
) -> GradientTransformation:
    r"""MADGRAD: momentumized dual averaging with a cube-root adaptive denominator.

    It is `chain(add_decayed_weights(weight_decay), scale_by_madgrad(learning_rate, momentum, eps))`
    (weight decay is added to the gradient first, and the learning rate is inside
    [`scale_by_madgrad`][gradtx.contrib.scale_by_madgrad]), as `optax.contrib.madgrad`. `update`
    needs `params`.

    Args:
        learning_rate: $\eta$, real `>= 0` or a schedule.
        momentum: in `[0, 1]`, default 0.9.
        weight_decay: real `>= 0`, default 0.
        eps: real `>= 0`, default 1e-6.

    References:
        Defazio and Jelassi, [Adaptivity without Compromise](https://arxiv.org/abs/2101.11075), 2021.
    """
    owner = "madgrad"
    _checks.learning_rate(owner, learning_rate)
    v.check_real(owner, "momentum", momentum, low=0.0, high=1.0)
    _checks.weight_decay(owner, weight_decay)
    _checks.nonneg(owner, "eps", eps)
    return chain(
        add_decayed_weights(weight_decay),
        scale_by_madgrad(learning_rate=learning_rate, momentum=momentum, eps=eps),
    )


@describe
def acprop(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-16,
    eps_root: float = 1e-16,
    weight_decay: float = 0.0,
    mask: MaskOrFn = None,
) -> GradientTransformation:
    r"""ACProp: the gradient over the root of the previous (bias-corrected) belief statistic.

    It is `chain(scale_by_acprop(...), add_decayed_weights(weight_decay, mask),
    scale_by_learning_rate(lr))`; see [`scale_by_acprop`][gradtx.contrib.scale_by_acprop].

    Args:
        learning_rate: $\eta$, real `>= 0` or a schedule.
        b1: in `[0, 1)`, default 0.9.
        b2: in `[0, 1)`, default 0.999.
        eps: real `>= 0`, default 1e-16.
        eps_root: real `>= 0`, default 1e-16.
        weight_decay: real `>= 0`, default 0.
        mask: which params are decayed, default None (all).

    References:
        Zhuang et al., [Momentum Centering and Asynchronous Update for Adaptive Gradient
        Methods](https://arxiv.org/abs/2110.05454), NeurIPS 2021.
    """
    owner = "acprop"
    _checks.learning_rate(owner, learning_rate)
    _checks.beta(owner, "b1", b1)
    _checks.beta(owner, "b2", b2)
    _checks.weight_decay(owner, weight_decay)
    return chain(
        scale_by_acprop(b1=b1, b2=b2, eps=eps, eps_root=eps_root),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


@describe
def sophia(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.965,
    b2: float = 0.99,
    eps: float = 1e-8,
    weight_decay: float = 1e-4,
    weight_decay_mask: MaskOrFn = None,
    gamma: float = 0.01,
    clip_threshold: float | None = 1.0,
    update_interval: int = 10,
    hessian_diagonal_fn: GradientTransformation = hutchinson_estimator_diag_hessian(),  # noqa: B008
    mu_dtype: Any = None,
    verbose: bool = False,
    print_win_rate_every_n_steps: int = 0,
) -> GradientTransformation:
    r"""Sophia: second-order clipped stochastic optimization with a Hessian-diagonal preconditioner.

    $$u_t = -\eta\Big(\operatorname{clip}\Big(\frac{\hat m_t}{\max(\gamma h_{t-1}, \epsilon)}, -\rho, \rho\Big)
    + \lambda x_t\Big)$$

    with $\hat m_t$ the bias-corrected momentum and $h$ a moving average of Hessian-diagonal
    estimates refreshed every `update_interval` steps (see `scale_by_sophia` in
    `gradtx.transforms.contrib_sophia`). It is `chain(scale_by_sophia(...),
    add_decayed_weights(weight_decay, weight_decay_mask), scale_by_learning_rate(lr))`, as
    `optax.contrib.sophia`. With the default Hutchinson estimator, `update` needs `params` and
    the objective: `opt.update(grads, state, params, obj_fn=loss)`.

    Args:
        learning_rate: $\eta$, real `>= 0` or a schedule.
        b1: in `[0, 1)`, default 0.965.
        b2: in `[0, 1)`, default 0.99.
        eps: real `>= 0`, default 1e-8.
        weight_decay: $\lambda$, real `>= 0`, default 1e-4.
        weight_decay_mask: which params are decayed, default None (all).
        gamma: real `>= 0`, default 0.01.
        clip_threshold: $\rho$, real `> 0` or None (no clipping), default 1.0.
        update_interval: integer `>= 1`, default 10.
        hessian_diagonal_fn: the estimator of the Hessian's diagonal, default
            [`hutchinson_estimator_diag_hessian()`][gradtx.contrib.hutchinson_estimator_diag_hessian].
        mu_dtype: dtype of the first moment, default None.
        verbose: print the fraction of unclipped entries, default False.
        print_win_rate_every_n_steps: how often (with `verbose`), default 0.

    Example:
        ```python
        import jax, jax.numpy as jnp
        import gradtx

        loss = lambda p: jnp.sum((p - 1.0) ** 4)
        opt = gradtx.contrib.sophia(1e-1)
        params = jnp.zeros(3)
        state = opt.init(params)
        updates, state = opt.update(jax.grad(loss)(params), state, params, obj_fn=loss)
        ```

    References:
        Liu et al., [Sophia: A Scalable Stochastic Second-order Optimizer for Language Model
        Pre-training](https://arxiv.org/abs/2305.14342), ICLR 2024.
    """
    owner = "sophia"
    _checks.learning_rate(owner, learning_rate)
    _checks.weight_decay(owner, weight_decay)
    return chain(
        scale_by_sophia(
            b1=b1,
            b2=b2,
            eps=eps,
            gamma=gamma,
            clip_threshold=clip_threshold,
            update_interval=update_interval,
            hessian_diagonal_fn=hessian_diagonal_fn,
            mu_dtype=mu_dtype,
            verbose=verbose,
            print_win_rate_every_n_steps=print_win_rate_every_n_steps,
        ),
        add_decayed_weights(weight_decay, weight_decay_mask),
        scale_by_learning_rate(learning_rate),
    )


@describe
def galore(
    learning_rate: ScalarOrSchedule,
    rank: int = 128,
    update_proj_gap: int = 200,
    scale: float = 1.0,
    base_optimizer: GradientTransformation | None = None,
    weight_decay: float = 0.0,
    mask: MaskOrFn = None,
    weight_dimension_numbers: Any = None,
) -> GradientTransformation:
    r"""GaLore: a base optimizer (Adam by default) on low-rank projections of the gradients.

    It is `chain(scale_by_galore(rank, update_proj_gap, scale, base_optimizer,
    weight_dimension_numbers), add_decayed_weights(weight_decay, mask),
    scale_by_learning_rate(learning_rate))`, as `optax.contrib.galore`; see
    [`scale_by_galore`][gradtx.contrib.scale_by_galore] for the projection.

    Args:
        learning_rate: real `>= 0` or a schedule.
        rank: an `int >= 1`, default 128.
        update_proj_gap: an integer `>= 1`, default 200.
        scale: default 1.0.
        base_optimizer: default None (`scale_by_adam()`).
        weight_decay: real `>= 0`, default 0.
        mask: which params are decayed, default None (all).
        weight_dimension_numbers: default None (2-D leaves projected).

    References:
        Zhao et al., [GaLore: Memory-Efficient LLM Training by Gradient Low-Rank
        Projection](https://arxiv.org/abs/2403.03507), ICML 2024.
    """
    owner = "galore"
    _checks.learning_rate(owner, learning_rate)
    _checks.weight_decay(owner, weight_decay)
    return chain(
        scale_by_galore(
            rank=rank,
            update_proj_gap=update_proj_gap,
            scale=scale,
            base_optimizer=base_optimizer,
            weight_dimension_numbers=weight_dimension_numbers,
        ),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )
