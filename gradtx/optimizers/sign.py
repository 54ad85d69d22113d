"""Sign-based SGD variants (signSGD, Signum, Rprop) and SGD with annealed gradient noise."""

import warnings
from typing import Any

import jax

from gradtx import _validation as v
from gradtx.base import GradientTransformation, ScalarOrSchedule, chain, describe
from gradtx.optimizers import _checks
from gradtx.transforms import add_noise, ema, scale, scale_by_learning_rate, scale_by_rprop, scale_by_sign
from gradtx.transforms.sign import _check_hyperparams as _check_rprop

__all__ = ["noisy_sgd", "rprop", "sign_sgd", "signum"]


@describe
def sign_sgd(learning_rate: ScalarOrSchedule) -> GradientTransformation:
    r"""signSGD: step along the sign of each gradient coordinate.

    $$u_t = -\eta_t \operatorname{sign}(g_t)$$

    (a zero coordinate does not move). It is `chain(scale_by_sign(), scale_by_learning_rate(lr))`,
    as `optax.sign_sgd`.

    Args:
        learning_rate: step size $\eta$: a real number `>= 0` or a schedule of the step count.

    Returns:
        A `GradientTransformation`; its state is `(EmptyState(), lr state)`.

    References:
        Bernstein, Wang, Azizzadenesheli & Anandkumar, *signSGD: Compressed Optimisation for
        Non-Convex Problems*, ICML 2018.
        Balles, Pedregosa & Le Roux, *The Geometry of Sign Gradient Descent*, 2020.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.sign_sgd(0.1)
        >>> tx.update(jnp.array([3.0, -0.2, 0.0]), tx.init(jnp.zeros(3)))[0]
        Array([-0.1,  0.1, -0. ], dtype=float32)
    """
    _checks.learning_rate("sign_sgd", learning_rate)
    return chain(scale_by_sign(), scale_by_learning_rate(learning_rate))


@describe
def signum(
    learning_rate: ScalarOrSchedule, beta: float = 0.9, accumulator_dtype: Any = None
) -> GradientTransformation:
    r"""Signum: signSGD on a moving average of the gradients (sign of momentum).

    $$m_t = \beta\, m_{t-1} + (1-\beta)\, g_t,\quad m_0 = 0,\qquad
    u_t = -\eta_t \operatorname{sign}(m_t)$$

    The average is not debiased (its sign does not depend on it). It is
    `chain(ema(beta, debias=False, accumulator_dtype), scale_by_sign(),
    scale_by_learning_rate(lr))`, as `optax.signum`.

    Args:
        learning_rate: step size $\eta$: a real number `>= 0` or a schedule of the step count.
        beta: the decay $\beta$ of the average, default 0.9, in [0, 1) (with 1 the average
            would stay 0 and nothing would move).
        accumulator_dtype: dtype of the average, default None (the params' dtype); a floating
            dtype, or a complex one for complex params.

    Returns:
        A `GradientTransformation`; its state is `(EmaState(count, ema), EmptyState(), lr state)`.

    References:
        Bernstein et al., *signSGD: Compressed Optimisation for Non-Convex Problems*, ICML 2018.
        Zhao et al., *Deconstructing What Makes a Good Optimizer for Language Models*, 2024.
    """
    owner = "signum"
    _checks.learning_rate(owner, learning_rate)
    _checks.beta(owner, "beta", beta)
    v.check_dtype(owner, "accumulator_dtype", accumulator_dtype, allow_complex=True)
    return chain(
        ema(beta, debias=False, accumulator_dtype=accumulator_dtype),
        scale_by_sign(),
        scale_by_learning_rate(learning_rate),
    )


@describe
def rprop(
    learning_rate: float,
    eta_minus: float = 0.5,
    eta_plus: float = 1.2,
    min_step_size: float = 1e-6,
    max_step_size: float = 50.0,
) -> GradientTransformation:
    r"""Rprop (resilient backpropagation): per-coordinate step sizes driven by gradient signs.

    Each coordinate's step size grows by $\eta^+$ while its gradient keeps its sign and shrinks
    by $\eta^-$ when the sign flips (clipped to $[\Delta_{min}, \Delta_{max}]$); the coordinate
    moves by its step size against the gradient's sign, and not at all just after a flip. See
    [`scale_by_rprop`][gradtx.scale_by_rprop] for the formulas and for optax's one-step delay,
    which gradtx keeps (the first update is zero; each update is the step computed one call
    earlier). It is `chain(scale_by_rprop(...), scale(-1.0))`, as `optax.rprop`.

    Args:
        learning_rate: the initial step size $\Delta_0$ (required), a real number > 0 (not a
            schedule).
        eta_minus: the factor $\eta^-$ after a sign flip, default 0.5, in [0, 1].
        eta_plus: the factor $\eta^+$ while the sign holds, default 1.2, >= 1.
        min_step_size: the floor $\Delta_{min}$, default 1e-6, >= 0.
        max_step_size: the ceiling $\Delta_{max}$, default 50.0, >= `min_step_size`.

    Returns:
        A `GradientTransformation`; its state is `(ScaleByRpropState(step_sizes, prev_updates),
        EmptyState())`. Integer and complex params raise a `TypeError` at `init`.

    References:
        Riedmiller & Braun, *A Direct Adaptive Method for Faster Backpropagation Learning: The
        RPROP Algorithm*, ICNN 1993.
        Igel & Hüsken, *Empirical evaluation of the improved Rprop learning algorithms*,
        Neurocomputing 2003.
    """
    _check_rprop("rprop", learning_rate, eta_minus, eta_plus, min_step_size, max_step_size)
    return chain(
        scale_by_rprop(
            learning_rate=learning_rate,
            eta_minus=eta_minus,
            eta_plus=eta_plus,
            min_step_size=min_step_size,
            max_step_size=max_step_size,
        ),
        scale(-1.0),
    )


@describe
def noisy_sgd(
    learning_rate: ScalarOrSchedule,
    eta: float = 0.01,
    gamma: float = 0.55,
    key: jax.Array | int | None = None,
    *,
    seed: int | None = None,
) -> GradientTransformation:
    r"""SGD on gradients with annealed Gaussian noise added.

    At step $t$ (1 on the first call):

    $$u_t = -\eta_t \left(g_t + \sigma_t\, \xi_t\right),\qquad \xi_t \sim \mathcal N(0, I),
    \qquad \sigma_t^2 = \frac{\eta}{t^{\gamma}}$$

    ($\eta_t$ the learning rate, $\eta$ the noise's base variance). It is
    `chain(add_noise(eta, gamma, key), scale_by_learning_rate(lr))`, as `optax.noisy_sgd`, so
    the noise (drawn from the key held in the state) is optax's, bit for bit.

    Args:
        learning_rate: step size $\eta_t$: a real number `>= 0` or a schedule of the step count.
        eta: the noise's base variance $\eta$, default 0.01, >= 0.
        gamma: the annealing exponent $\gamma$, default 0.55, >= 0.
        key: a `jax.random.key`, a raw uint32 key or an integer seed; default None, which
            (like optax 0.2.8) warns and uses seed 0.
        seed: deprecated alias of `key` (an integer); give at most one of `key` and `seed`.

    Returns:
        A `GradientTransformation`; its state is `(AddNoiseState(count, rng_key), lr state)`.

    References:
        Neelakantan et al., *Adding Gradient Noise Improves Learning for Very Deep Networks*,
        2015 (arXiv:1511.06807).

    Example:
        >>> import gradtx, jax
        >>> tx = gradtx.noisy_sgd(1e-2, key=jax.random.key(0))
    """
    owner = "noisy_sgd"
    _checks.learning_rate(owner, learning_rate)
    v.check_real(owner, "eta", eta, low=0.0)
    v.check_real(owner, "gamma", gamma, low=0.0)
    # the key is resolved here so that warnings point at the caller and errors name noisy_sgd
    if seed is not None:
        if key is not None:
            raise ValueError(f"{owner}: give only one of key and seed, got key={key!r} and seed={seed!r}")
        warnings.warn(f"{owner}: seed is deprecated, pass key instead.", DeprecationWarning, stacklevel=3)
        key = seed
    if key is None:
        warnings.warn(f"{owner}: no key given, using seed 0; pass key=... explicitly.", stacklevel=3)
        key = 0
    return chain(add_noise(eta, gamma, key), scale_by_learning_rate(learning_rate))
