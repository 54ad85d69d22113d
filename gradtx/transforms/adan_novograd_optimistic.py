r"""Adam variants that look beyond the current step: Adan and optimistic gradients (both keep the
previous gradient) and NovoGrad (one second moment per layer).

Each follows optax 0.2.8's numerics bit for bit for float32 inputs under `jax.jit`, with optax's
state classes and field names. Low precision follows
[`adam_family`][gradtx.transforms.adam_family]: divisions and square roots in at least float32,
updates cast back to the gradient's dtype, second-moment statistics in the params' real dtype
widened to at least float32. NovoGrad's first step is taken with `jax.lax.cond`, as optax does,
so that the compiled programs agree.
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx import _validation as _v
from gradtx.base import GradientTransformation, Updates, describe
from gradtx.numerics import (
    abs_sq,
    cast,
    compute_dtype,
    debias_factor,
    float_updates,
    safe_increment,
    stat_dtype,
    tree_as_arrays,
    tree_zeros_like,
)
from gradtx.transforms._moments import (
    canonical_dtype,
    check_beta,
    check_nonneg,
    map_leaves,
    moment_leaf,
    stat_full,
)

__all__ = [
    "ScaleByAdanState",
    "ScaleByNovogradState",
    "ScaleByOptimisticGradientState",
    "adan_leaf",
    "optimistic_leaf",
    "scale_by_adan",
    "scale_by_novograd",
    "scale_by_optimistic_gradient",
]


class ScaleByAdanState(NamedTuple):
    """State of [`scale_by_adan`][gradtx.scale_by_adan] (optax's field names and order)."""

    m: Updates  # moving average of the gradients
    v: Updates  # moving average of the gradient differences
    n: Updates  # moving average of the squared Nesterov-corrected gradient
    g: Updates  # the previous gradient
    t: jax.Array  # int32 scalar: number of updates done


class ScaleByNovogradState(NamedTuple):
    """State of [`scale_by_novograd`][gradtx.scale_by_novograd]."""

    count: jax.Array  # type: ignore[assignment]  # int32 scalar: number of updates done (shadows tuple.count)
    mu: Updates  # momentum of the normalised gradients (the update itself)
    nu: Updates  # one scalar per leaf: moving average of the squared gradient norm


class ScaleByOptimisticGradientState(NamedTuple):
    """State of [`scale_by_optimistic_gradient`][gradtx.scale_by_optimistic_gradient]."""

    is_initial_step: jax.Array  # bool scalar: True until the first update
    previous_gradient: Updates


# --------------------------------------------------------------------------------------------
# Adan
# --------------------------------------------------------------------------------------------


def adan_leaf(
    g: jax.Array,
    m: jax.Array,
    v: jax.Array,
    n: jax.Array,
    g_prev: jax.Array,
    first: jax.Array,
    bc1: jax.Array,
    bc2: jax.Array,
    bc3: jax.Array,
    *,
    b1: Any,
    b2: Any,
    b3: Any,
    eps: Any,
    eps_root: Any,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array, jax.Array]:
    """One Adan step on one leaf.

    Args:
        g: the gradient leaf; `g_prev` the previous one (ignored when `first` is True).
        m, v, n: the moving averages of the gradient, of the gradient difference and of the
            squared Nesterov-corrected gradient.
        first: a boolean scalar, True on the first step (the difference is then 0).
        bc1, bc2, bc3: `1 - b_i**t` for the incremented count `t`.
        b1, b2, b3, eps, eps_root: Adan's hyper-parameters.

    Returns:
        `(update, new_m, new_v, new_n, new_g)`; the update has `g`'s dtype.
    """
    cdt = compute_dtype(g.dtype, m.dtype)
    gc = cast(g, cdt)
    diff = jnp.where(first, jnp.zeros_like(gc), gc - cast(g_prev, cdt))
    m_new = moment_leaf(g, m, b1, cdt)
    v_new = moment_leaf(diff, v, b2, cdt)
    corrected = gc + (1 - b2) * diff
    n_new = (1 - b3) * abs_sq(corrected, n.dtype) + b3 * n
    m_hat = m_new / cast(bc1, cdt)
    v_hat = v_new / cast(bc2, cdt)
    n_hat = n_new / cast(bc3, n_new.dtype)
    update = (m_hat + (1 - b2) * v_hat) / (jnp.sqrt(n_hat + eps_root) + eps)
    return (
        cast(update, g.dtype),
        cast(m_new, m.dtype),
        cast(v_new, v.dtype),
        cast(n_new, n.dtype),
        cast(g, g_prev.dtype),
    )


@describe
def scale_by_adan(
    b1: float = 0.98,
    b2: float = 0.92,
    b3: float = 0.99,
    eps: float = 1e-8,
    eps_root: float = 0.0,
) -> GradientTransformation:
    r"""Rescale updates by Adan (adaptive Nesterov momentum).

    With $d_t = g_t - g_{t-1}$ ($d_1 = 0$) and $c_i = 1 - \beta_i^t$:

    $$m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\qquad v_t = \beta_2 v_{t-1} + (1-\beta_2) d_t,$$

    $$n_t = \beta_3 n_{t-1} + (1-\beta_3)\,|g_t + (1-\beta_2) d_t|^2,$$

    $$u = \frac{m_t/c_1 + (1-\beta_2)\, v_t/c_2}{\sqrt{n_t/c_3 + \epsilon_{root}} + \epsilon}.$$

    optax's Algorithm 1 of the paper, with bias correction; the previous gradient is kept in
    the state (`g`).

    Args:
        b1: decay of the gradient average, default 0.98, in [0, 1).
        b2: decay of the gradient-difference average, default 0.92, in [0, 1).
        b3: decay of the squared-term average, default 0.99, in [0, 1).
        eps: added to the denominator outside the square root, default 1e-8, >= 0.
        eps_root: added inside the square root, default 0.0, >= 0.

    Returns:
        A `GradientTransformation` with state
        [`ScaleByAdanState`][gradtx.transforms.adan_novograd_optimistic.ScaleByAdanState]`(m, v, n, g, t)`.

    References:
        Xie et al., *Adan: Adaptive Nesterov Momentum Algorithm for Faster Optimizing Deep
        Models*, 2022 (arXiv:2208.06677).
    """
    owner = "scale_by_adan"
    check_beta(owner, "b1", b1)
    check_beta(owner, "b2", b2)
    check_beta(owner, "b3", b3)
    check_nonneg(owner, "eps", eps)
    check_nonneg(owner, "eps_root", eps_root)

    def init(params):
        _v.check_state_params(owner, params)
        return ScaleByAdanState(
            m=tree_zeros_like(params),
            v=tree_zeros_like(params),
            n=stat_full(params, 0.0),
            g=tree_zeros_like(params),
            t=jnp.zeros([], jnp.int32),
        )

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        first = state.t == 0
        t = safe_increment(state.t)
        bc1 = debias_factor(b1, t)
        bc2 = debias_factor(b2, t)
        bc3 = debias_factor(b3, t)

        def leaf(g, m, v, n, g_prev):
            return adan_leaf(
                g, m, v, n, g_prev, first, bc1, bc2, bc3, b1=b1, b2=b2, b3=b3, eps=eps, eps_root=eps_root
            )

        new_updates, m, v, n, g = map_leaves(leaf, 5, updates, state.m, state.v, state.n, state.g)
        return new_updates, ScaleByAdanState(m=m, v=v, n=n, g=g, t=t)

    return GradientTransformation(init, update)


# --------------------------------------------------------------------------------------------
# NovoGrad
# --------------------------------------------------------------------------------------------


def _squared_norm(g: jax.Array, dtype: Any) -> jax.Array:
    # the norm, then its square, as optax computes it (not a sum of squares: other bits)
    return jnp.linalg.norm(cast(g, dtype)) ** 2


@describe
def scale_by_novograd(
    b1: float = 0.9,
    b2: float = 0.25,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    weight_decay: float = 0.0,
    mu_dtype: Any = None,
) -> GradientTransformation:
    r"""Rescale updates by NovoGrad: layer-wise normalised gradients with momentum.

    For each leaf (layer) with gradient $g$ and params $p$, one scalar second moment:

    $$v_1 = \|g_1\|^2,\qquad v_t = \beta_2 v_{t-1} + (1-\beta_2)\|g_t\|^2,$$

    $$m_1 = a_1,\qquad m_t = \beta_1 m_{t-1} + a_t,\qquad
    a_t = \frac{g_t}{\sqrt{v_t + \epsilon_{root}} + \epsilon} + \lambda p,$$

    and the update is $u = m_t$ (no bias correction; the momentum is not damped, so steps are
    about $1/(1-\beta_1)$ times the normalised gradient).

    `update` needs `params` (they enter the weight-decay term; optax requires them too).

    Args:
        b1: momentum of the normalised gradients, default 0.9, in [0, 1].
        b2: decay of the squared-norm average, default 0.25, in [0, 1].
        eps: added to the denominator outside the square root, default 1e-8, >= 0.
        eps_root: added inside the square root, default 0.0, >= 0.
        weight_decay: $\lambda$, a real number >= 0, default 0.0 (not a schedule, as in optax).
        mu_dtype: dtype of the momentum `m`, default None (the params' dtype); a floating dtype.
            The updates are the momentum, so they have this dtype too (as in optax).

    Returns:
        A `GradientTransformation` with state
        [`ScaleByNovogradState`][gradtx.transforms.adan_novograd_optimistic.ScaleByNovogradState]`(count, mu, nu)`,
        `nu` holding one scalar per leaf.

    References:
        Ginsburg et al., *Stochastic Gradient Methods with Layer-wise Adaptive Moments for
        Training of Deep Networks*, 2019 (arXiv:1905.11286).
    """
    owner = "scale_by_novograd"
    _v.check_real(owner, "b1", b1, low=0.0, high=1.0)
    _v.check_real(owner, "b2", b2, low=0.0, high=1.0)
    check_nonneg(owner, "eps", eps)
    check_nonneg(owner, "eps_root", eps_root)
    check_nonneg(owner, "weight_decay", weight_decay)
    _v.check_dtype(owner, "mu_dtype", mu_dtype, allow_complex=True)
    mu_dtype = canonical_dtype(mu_dtype)

    def init(params):
        _v.check_state_params(owner, params, mu_dtype)
        nu = jax.tree.map(lambda p: jnp.zeros([], stat_dtype(p)), params)
        return ScaleByNovogradState(count=jnp.zeros([], jnp.int32), mu=tree_zeros_like(params, mu_dtype), nu=nu)

    def normalised(g, p, nu, mu):
        cdt = compute_dtype(g.dtype, mu.dtype)
        denominator = jnp.sqrt(nu + eps_root) + eps
        return cast(g, cdt) / cast(denominator, cdt) + weight_decay * cast(p, cdt)

    def first_nu(grads, nu):
        return jax.tree.map(lambda g, n: cast(_squared_norm(g, n.dtype), n.dtype), grads, nu)

    def next_nu(grads, nu):
        return jax.tree.map(lambda g, n: cast((1 - b2) * _squared_norm(g, n.dtype) + b2 * n, n.dtype), grads, nu)

    def first_mu(grads, params, mu, nu):
        return jax.tree.map(normalised, grads, params, nu, mu)

    def next_mu(grads, params, mu, nu):
        return jax.tree.map(lambda g, p, n, m: b1 * m + normalised(g, p, n, m), grads, params, nu, mu)

    def update(updates, state, params=None, **extra_args):
        del extra_args
        if params is None:
            raise ValueError(
                f"{owner}.update: params are required (they enter the weight-decay term); call "
                f"update(updates, state, params)."
            )
        updates, params = float_updates(updates), tree_as_arrays(params)
        count = safe_increment(state.count)
        is_first = count == 1
        nu = jax.lax.cond(is_first, first_nu, next_nu, updates, state.nu)
        mu = jax.lax.cond(is_first, first_mu, next_mu, updates, params, state.mu, nu)
        mu = jax.tree.map(lambda new, old: cast(new, old.dtype), mu, state.mu)
        return mu, ScaleByNovogradState(count=count, mu=mu, nu=nu)

    return GradientTransformation(init, update)


# --------------------------------------------------------------------------------------------
# Optimistic gradients
# --------------------------------------------------------------------------------------------


def optimistic_leaf(
    g: jax.Array, previous: jax.Array, is_initial_step: jax.Array, *, alpha: Any, beta: Any
) -> tuple[jax.Array, jax.Array]:
    """`(alpha + beta)·g - beta·g_prev` on one leaf (`g_prev = g` on the first step).

    Returns:
        `(update, new_previous)`; the update has `g`'s dtype.
    """
    cdt = compute_dtype(g.dtype)
    gc = cast(g, cdt)
    previous_c = jnp.where(is_initial_step, gc, cast(previous, cdt))
    update = (alpha + beta) * gc - beta * previous_c
    return cast(update, g.dtype), cast(g, previous.dtype)


@describe
def scale_by_optimistic_gradient(alpha: float = 1.0, beta: float = 1.0) -> GradientTransformation:
    r"""Compute generalised optimistic gradients: $u_t = (\alpha + \beta)\, g_t - \beta\, g_{t-1}$.

    On the first step $g_0 = g_1$, so $u_1 = \alpha g_1$. Followed by
    [`scale_by_learning_rate`][gradtx.scale_by_learning_rate] this is optimistic gradient
    descent; after [`scale_by_adam`][gradtx.scale_by_adam], optimistic Adam.

    Args:
        alpha: weight of the current gradient, default 1.0, a real number >= 0.
        beta: weight of the negative momentum (the extrapolation from the previous gradient),
            default 1.0, a real number >= 0.

    Returns:
        A `GradientTransformation` with state
        `ScaleByOptimisticGradientState(is_initial_step, previous_gradient)`.

    References:
        Mokhtari, Ozdaglar & Pattathil, *A Unified Analysis of Extra-gradient and Optimistic
        Gradient Methods for Saddle Point Problems: Proximal Point Approach*, AISTATS 2020
        (arXiv:1901.08511).

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.scale_by_optimistic_gradient(alpha=1.0, beta=0.5)
        >>> state = tx.init(jnp.zeros(1))
        >>> u, state = tx.update(jnp.array([2.0]), state)  # first step: alpha * g
        >>> u, state = tx.update(jnp.array([4.0]), state)  # 1.5 * 4 - 0.5 * 2
        >>> float(u[0])
        5.0
    """
    owner = "scale_by_optimistic_gradient"
    check_nonneg(owner, "alpha", alpha)
    check_nonneg(owner, "beta", beta)

    def init(params):
        _v.check_state_params(owner, params)
        return ScaleByOptimisticGradientState(
            is_initial_step=jnp.array(True), previous_gradient=tree_zeros_like(params)
        )

    def update(updates, state, params=None, **extra_args):
        del params, extra_args

        def leaf(g, previous):
            return optimistic_leaf(g, previous, state.is_initial_step, alpha=alpha, beta=beta)

        new_updates, previous = map_leaves(leaf, 2, updates, state.previous_gradient)
        return new_updates, ScaleByOptimisticGradientState(
            is_initial_step=jnp.array(False), previous_gradient=previous
        )

    return GradientTransformation(init, update)
