r"""Research moment-based rescalings of `optax.contrib`: ADOPT, AdEMAMix (and its simplified
form), MADGRAD and AdaBelief's `ACProp` variant.

These are exported from `gradtx.contrib` only, as optax keeps them in
`optax.contrib`. Their numbers equal optax 0.2.8's bit for bit for float32 inputs under
`jax.jit`, and their states are optax's classes (names and fields): ADOPT keeps
`ScaleByAdamState`, ACProp keeps `ScaleByBeliefState`.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx import _validation as _v
from gradtx._schedule_check import call_schedule
from gradtx.base import GradientTransformation, ScalarOrSchedule, Updates, describe
from gradtx.numerics import (
    bias_correction,
    float_updates,
    safe_increment,
    tree_cast,
    tree_zeros_like,
    update_moment,
    update_moment_per_elem_norm,
)
from gradtx.transforms._moments import canonical_dtype, check_beta, check_nonneg
from gradtx.transforms.adam_family import ScaleByAdamState
from gradtx.transforms.adam_variants import ScaleByBeliefState

__all__ = [
    "MadgradState",
    "ScaleByAdemamixState",
    "ScaleBySimplifiedAdEMAMixState",
    "scale_by_acprop",
    "scale_by_ademamix",
    "scale_by_adopt",
    "scale_by_madgrad",
    "scale_by_simplified_ademamix",
]


class ScaleByAdemamixState(NamedTuple):
    """State of [`scale_by_ademamix`][gradtx.contrib.scale_by_ademamix]."""

    count: jax.Array  # type: ignore[assignment]  # optax's field name (shadows tuple.count): updates done
    count_m2: jax.Array  # step count given to the `b3` and `alpha` schedules
    m1: Updates  # fast moving average of the gradients
    m2: Updates  # slow moving average of the gradients
    nu: Updates  # moving average of the squared gradients


class ScaleBySimplifiedAdEMAMixState(NamedTuple):
    """State of [`scale_by_simplified_ademamix`][gradtx.contrib.scale_by_simplified_ademamix]."""

    t: jax.Array  # number of updates done
    m: Updates  # accumulated (undamped) momentum
    n: Updates  # moving average of the squared gradients


class MadgradState(NamedTuple):
    """State of [`scale_by_madgrad`][gradtx.contrib.scale_by_madgrad]."""

    count: jax.Array  # type: ignore[assignment]  # optax's field name (shadows tuple.count)
    grad_sum_sq: Updates  # weighted sum of squared gradients
    s: Updates  # weighted sum of gradients
    x0: Any  # the parameters at initialisation


def _schedule_value(owner: str, name: str, value: Any, count: jax.Array) -> Any:
    return call_schedule(owner, name, value, count) if callable(value) else value


@describe
def scale_by_adopt(
    b1: float = 0.9,
    b2: float = 0.9999,
    eps: float = 1e-6,
    mu_dtype: Any = None,
    *,
    nesterov: bool = False,
    use_clipping: bool = True,
    clip_value_fn: Callable[[jax.Array], jax.Array] = lambda x: x**0.25,
) -> GradientTransformation:
    r"""Rescale updates by ADOPT: the gradient is normalised by the *previous* second moment.

    With $k$ the number of updates done before this one ($k = 0$ at the first call):

    $$\tilde g_k = \operatorname{clip}\Big(\frac{g_k}{\max(\sqrt{v_{k-1}}, \epsilon)}, -c_k, c_k\Big),
    \qquad c_k = \texttt{clip\_value\_fn}(k)$$

    $$m_k = \beta_1 m_{k-1} + (1-\beta_1)\,\tilde g_k,\qquad v_k = \beta_2 v_{k-1} + (1-\beta_2)\,g_k^2$$

    and the update is $m_k$ (with `nesterov=True`, $\beta_1 m_k + (1-\beta_1)\tilde g_k$). At
    the first call $v_0 = g_0^2$ and $m_0 = 0$ (optax's convention: the first step moves
    nothing). Without clipping $\tilde g_k$ is not clipped.

    Args:
        b1: $\beta_1$, decay of the first moment; in `[0, 1)`, default 0.9.
        b2: $\beta_2$, decay of the second moment; in `[0, 1)`, default 0.9999.
        eps: $\epsilon$, lower bound of $\sqrt{v}$; real `>= 0`, default 1e-6.
        mu_dtype: dtype of the first moment, default None (the params' dtype).
        nesterov: use the Nesterov first moment; keyword-only, default False.
        use_clipping: clip the normalised gradient to $[-c_k, c_k]$; default True.
        clip_value_fn: $k \mapsto c_k$, default $k^{1/4}$.

    Returns:
        A `GradientTransformation` with optax's state `ScaleByAdamState(count, mu, nu)`.

    References:
        Taniguchi et al., [ADOPT: Modified Adam Can Converge with Any β2 with the Optimal
        Rate](https://arxiv.org/abs/2411.02853), NeurIPS 2024.
    """
    owner = "scale_by_adopt"
    check_beta(owner, "b1", b1)
    check_beta(owner, "b2", b2)
    check_nonneg(owner, "eps", eps)
    _v.check_dtype(owner, "mu_dtype", mu_dtype, allow_complex=True)
    _v.check_bool(owner, "nesterov", nesterov)
    _v.check_bool(owner, "use_clipping", use_clipping)
    if not callable(clip_value_fn):
        raise TypeError(f"{owner}: clip_value_fn must be a callable of the step count, got {clip_value_fn!r}")
    mu_dtype = canonical_dtype(mu_dtype)

    def init(params):
        _v.check_state_params(owner, params, mu_dtype)
        return ScaleByAdamState(
            count=jnp.zeros([], jnp.int32), mu=tree_zeros_like(params, mu_dtype), nu=tree_zeros_like(params)
        )

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        updates = float_updates(updates)
        started = state.count > 0
        b1_now = jnp.where(started, b1, 1)
        b2_now = jnp.where(started, b2, 0)
        nu = update_moment_per_elem_norm(updates, state.nu, b2_now, 2)

        def normalised(g, v):
            return g / jnp.maximum(jnp.sqrt(v), eps)

        if use_clipping:
            bound = clip_value_fn(state.count)
            g_tilde = jax.tree.map(lambda g, v: jnp.clip(normalised(g, v), -bound, bound), updates, state.nu)
        else:
            g_tilde = jax.tree.map(normalised, updates, state.nu)
        mu = update_moment(g_tilde, state.mu, b1_now, 1)
        out = update_moment(g_tilde, mu, b1_now, 1) if nesterov else mu
        return out, ScaleByAdamState(count=safe_increment(state.count), mu=tree_cast(mu, mu_dtype), nu=nu)

    return GradientTransformation(init, update)


@describe
def scale_by_ademamix(
    b1: float = 0.9,
    b2: float = 0.999,
    b3: ScalarOrSchedule = 0.9999,
    alpha: ScalarOrSchedule = 6.0,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
) -> GradientTransformation:
    r"""Rescale updates by AdEMAMix: Adam plus a slow, un-corrected moving average of the gradients.

    With $t$ the number of updates done (this one included):

    $$m^{(1)}_t = \beta_1 m^{(1)}_{t-1} + (1-\beta_1) g_t,\qquad
    m^{(2)}_t = \beta_3 m^{(2)}_{t-1} + (1-\beta_3) g_t,\qquad
    v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2$$

    $$u_t = \frac{m^{(1)}_t / (1-\beta_1^t) + \alpha\, m^{(2)}_t}{\sqrt{v_t/(1-\beta_2^t) + \epsilon_{root}} + \epsilon}$$

    The slow average $m^{(2)}$ is not bias-corrected. `b3` and `alpha` may be schedules of the
    step count (`count_m2`, the number of updates done before this one).

    Args:
        b1: $\beta_1$, decay of the fast average; in `[0, 1)`, default 0.9.
        b2: $\beta_2$, decay of the second moment; in `[0, 1)`, default 0.999.
        b3: $\beta_3$, decay of the slow average; in `[0, 1)` or a schedule, default 0.9999.
        alpha: $\alpha$, weight of the slow average; real `>= 0` or a schedule, default 6.0.
        eps: $\epsilon$, added outside the square root; real `>= 0`, default 1e-8.
        eps_root: $\epsilon_{root}$, added inside it; real `>= 0`, default 0.
        mu_dtype: dtype of the three moment buffers, default None (the params' dtype).

    Returns:
        A `GradientTransformation` with state `ScaleByAdemamixState(count, count_m2, m1, m2, nu)`.

    References:
        Pagliardini et al., [The AdEMAMix Optimizer: Better, Faster, Older](https://arxiv.org/abs/2409.03137), 2024.
    """
    owner = "scale_by_ademamix"
    check_beta(owner, "b1", b1)
    check_beta(owner, "b2", b2)
    _v.check_schedule_or_real(owner, "b3", b3, low=0.0, high=1.0, high_inclusive=False)
    _v.check_schedule_or_real(owner, "alpha", alpha, low=0.0)
    check_nonneg(owner, "eps", eps)
    check_nonneg(owner, "eps_root", eps_root)
    _v.check_dtype(owner, "mu_dtype", mu_dtype, allow_complex=True)
    mu_dtype = canonical_dtype(mu_dtype)

    def init(params):
        _v.check_state_params(owner, params, mu_dtype)
        return ScaleByAdemamixState(
            count=jnp.zeros([], jnp.int32),
            count_m2=jnp.zeros([], jnp.int32),
            m1=tree_zeros_like(params, mu_dtype),
            m2=tree_zeros_like(params, mu_dtype),
            nu=tree_zeros_like(params, mu_dtype),
        )

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        updates = float_updates(updates)
        b3_now = _schedule_value(owner, "b3", b3, state.count_m2)
        alpha_now = _schedule_value(owner, "alpha", alpha, state.count_m2)
        m1 = update_moment(updates, state.m1, b1, 1)
        m2 = update_moment(updates, state.m2, b3_now, 1)
        nu = update_moment_per_elem_norm(updates, state.nu, b2, 2)
        count = safe_increment(state.count)
        m1_hat = bias_correction(m1, b1, count)
        nu_hat = bias_correction(nu, b2, count)
        out = jax.tree.map(
            lambda a, b, v: (a + alpha_now * b) / (jnp.sqrt(v + eps_root) + eps), m1_hat, m2, nu_hat
        )
        new_state = ScaleByAdemamixState(
            count=count, count_m2=safe_increment(state.count_m2), m1=m1, m2=m2, nu=nu
        )
        return out, new_state

    return GradientTransformation(init, update)


@describe
def scale_by_simplified_ademamix(
    b1: float = 0.99,
    b2: float = 0.95,
    alpha: ScalarOrSchedule = 0.0,
    eps: float = 1e-8,
    eps_root: float = 0.0,
) -> GradientTransformation:
    r"""Rescale updates by simplified AdEMAMix: an undamped momentum sum plus $\alpha$ times the gradient.

    $$m_t = \beta_1 m_{t-1} + g_t,\qquad n_t = \beta_2 n_{t-1} + (1-\beta_2) g_t^2,\qquad
    u_t = \frac{m_t + \alpha\, g_t}{\sqrt{n_t/(1-\beta_2^t) + \epsilon_{root}} + \epsilon}$$

    ($n_t$ is computed as optax does, $g^2 + \beta_2 (n_{t-1} - g^2)$.) `alpha` may be a
    schedule of the number of updates done before this one.

    Args:
        b1: $\beta_1$, momentum decay; in `[0, 1)`, default 0.99.
        b2: $\beta_2$, decay of the second moment; in `[0, 1)`, default 0.95.
        alpha: $\alpha$, weight of the current gradient; real `>= 0` or a schedule, default 0.
        eps: $\epsilon$, added outside the square root; real `>= 0`, default 1e-8.
        eps_root: $\epsilon_{root}$, added inside it; real `>= 0`, default 0.

    Returns:
        A `GradientTransformation` with state `ScaleBySimplifiedAdEMAMixState(t, m, n)`.

    References:
        Morwani et al., [Connections between Schedule-Free Optimizers, AdEMAMix, and
        Accelerated SGD Variants](https://arxiv.org/abs/2502.02431), 2025.
    """
    owner = "scale_by_simplified_ademamix"
    check_beta(owner, "b1", b1)
    check_beta(owner, "b2", b2)
    _v.check_schedule_or_real(owner, "alpha", alpha, low=0.0)
    check_nonneg(owner, "eps", eps)
    check_nonneg(owner, "eps_root", eps_root)

    def init(params):
        _v.check_state_params(owner, params)
        return ScaleBySimplifiedAdEMAMixState(
            t=jnp.array(0, jnp.int32), m=tree_zeros_like(params), n=tree_zeros_like(params)
        )

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        updates = float_updates(updates)
        alpha_now = jnp.asarray(_schedule_value(owner, "alpha", alpha, state.t))
        beta1 = jnp.asarray(b1)
        beta2 = jnp.asarray(b2)
        m = jax.tree.map(lambda g, mm: g + beta1 * mm, updates, state.m)

        def second(g, nn):
            g2 = g * g
            return g2 + beta2 * (nn - g2)

        n = jax.tree.map(second, updates, state.n)
        t = safe_increment(state.t)
        n_hat = bias_correction(n, b2, t)
        out = jax.tree.map(
            lambda mm, g, v: (mm + alpha_now * g) / (jnp.sqrt(v + eps_root) + eps), m, updates, n_hat
        )
        return out, ScaleBySimplifiedAdEMAMixState(t=t, m=m, n=n)

    return GradientTransformation(init, update)


@describe
def scale_by_madgrad(
    learning_rate: ScalarOrSchedule,
    momentum: float = 0.9,
    eps: float = 1e-6,
) -> GradientTransformation:
    r"""MADGRAD's update: a momentumized dual average with a cube-root denominator.

    With $k$ the number of updates done before this one and $\lambda_k = (\eta_k + \epsilon)\sqrt{k+1}$:

    $$S_k = S_{k-1} + \lambda_k g_k^2,\qquad s_k = s_{k-1} + \lambda_k g_k,\qquad
    z_k = x_0 - \frac{s_k}{S_k^{1/3} + \epsilon}$$

    $$u_k = (1-c)\,z_k + c\,x_k - x_k$$

    with $c$ = `momentum` and $x_k$ the current params. The learning rate is part of this
    transformation (the update is the full step); `params` are required.

    Args:
        learning_rate: $\eta$, real `>= 0` or a schedule of the step count.
        momentum: $c$, in `[0, 1]`, default 0.9.
        eps: $\epsilon$, real `>= 0`, default 1e-6.

    Returns:
        A `GradientTransformation` with state `MadgradState(count, grad_sum_sq, s, x0)`.

    References:
        Defazio and Jelassi, [Adaptivity without Compromise: A Momentumized, Adaptive, Dual
        Averaged Gradient Method for Stochastic Optimization](https://arxiv.org/abs/2101.11075), 2021.
    """
    owner = "scale_by_madgrad"
    _v.check_schedule_or_real(owner, "learning_rate", learning_rate, low=0.0)
    _v.check_real(owner, "momentum", momentum, low=0.0, high=1.0)
    check_nonneg(owner, "eps", eps)

    def init(params):
        _v.check_state_params(owner, params)
        return MadgradState(
            count=jnp.zeros([], jnp.int32),
            grad_sum_sq=tree_zeros_like(params),
            s=tree_zeros_like(params),
            x0=jax.tree.map(lambda x: x, params),
        )

    def update(updates, state, params=None, **extra_args):
        del extra_args
        if params is None:
            raise ValueError(f"{owner}: params are required (update(updates, state, params))")
        updates = float_updates(updates)
        lr = _schedule_value(owner, "learning_rate", learning_rate, state.count)
        lam = (lr + eps) * jnp.sqrt(state.count + 1)
        grad_sum_sq = jax.tree.map(lambda ss, g: ss + (lam * g**2).astype(g.dtype), state.grad_sum_sq, updates)
        s = jax.tree.map(lambda sv, g: sv + (lam * g).astype(g.dtype), state.s, updates)

        def step(x0, sv, ss, x):
            z = x0 - sv / (jnp.cbrt(ss) + eps)
            return ((1 - momentum) * z + momentum * x) - x

        out = jax.tree.map(step, state.x0, s, grad_sum_sq, params)
        new_state = MadgradState(count=safe_increment(state.count), grad_sum_sq=grad_sum_sq, s=s, x0=state.x0)
        return out, new_state

    return GradientTransformation(init, update)


@describe
def scale_by_acprop(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-16,
    eps_root: float = 1e-16,
) -> GradientTransformation:
    r"""Rescale updates by ACProp: the gradient divided by the *previous* belief statistic.

    With $t$ the number of updates done (this one included):

    $$m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\qquad
    s_t = \beta_2 s_{t-1} + (1-\beta_2)(g_t - m_{t-1})^2 + \epsilon_{root}$$

    $$u_t = \frac{g_t}{\sqrt{s_{t-1}/(1-\beta_2^{t-1})} + \epsilon}\ (t > 1),\qquad
    u_1 = \frac{g_1}{1 + \epsilon}$$

    Note that the prediction error uses the previous first moment $m_{t-1}$, and the first
    moment itself is kept but not used by the update, as in optax.

    Args:
        b1: $\beta_1$; in `[0, 1)`, default 0.9.
        b2: $\beta_2$; in `[0, 1)`, default 0.999.
        eps: $\epsilon$, added outside the square root; real `>= 0`, default 1e-16.
        eps_root: $\epsilon_{root}$, added to $s_t$ at every step; real `>= 0`, default 1e-16.

    Returns:
        A `GradientTransformation` with optax's state `ScaleByBeliefState(count, mu, nu)`.

    References:
        Zhuang et al., [Momentum Centering and Asynchronous Update for Adaptive Gradient
        Methods](https://arxiv.org/abs/2110.05454), NeurIPS 2021.
    """
    owner = "scale_by_acprop"
    check_beta(owner, "b1", b1)
    check_beta(owner, "b2", b2)
    check_nonneg(owner, "eps", eps)
    check_nonneg(owner, "eps_root", eps_root)

    def init(params):
        _v.check_state_params(owner, params)
        return ScaleByBeliefState(count=jnp.zeros([], jnp.int32), mu=tree_zeros_like(params), nu=tree_zeros_like(params))

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        updates = float_updates(updates)
        mu = update_moment(updates, state.mu, b1, 1)
        error = jax.tree.map(lambda g, m: g - m, updates, state.mu)
        nu = update_moment_per_elem_norm(error, state.nu, b2, 2)
        nu = jax.tree.map(lambda v: v + eps_root, nu)
        count = safe_increment(state.count)
        first = state.count == 0
        nu_hat = bias_correction(state.nu, b2, jnp.where(first, count, state.count))
        nu_hat = jax.tree.map(lambda x: jnp.where(first, 1, x), nu_hat)
        out = jax.tree.map(lambda g, v: g / (jnp.sqrt(v) + eps), updates, nu_hat)
        return out, ScaleByBeliefState(count=count, mu=mu, nu=nu)

    return GradientTransformation(init, update)
