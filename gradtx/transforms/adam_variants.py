r"""Adam variants: AdaBelief, Yogi and Rectified Adam (RAdam).

Each transformation follows optax 0.2.8's numerics bit for bit for float32 inputs under
`jax.jit`, with optax's state classes and field names (Yogi and RAdam keep
[`ScaleByAdamState`][gradtx.transforms.adam_family.ScaleByAdamState], as in optax). The per-leaf
arithmetic lives in small pure functions (`belief_leaf`, `yogi_leaf`, `radam_leaf`)
that take one gradient leaf and its state leaves and return the update and the new
state leaves.

Low precision follows [`adam_family`][gradtx.transforms.adam_family]: divisions and square roots
run in at least float32 and the update is cast back to the gradient's dtype; second-moment
statistics (`nu`) are kept in the params' real dtype widened to at least float32 (see
[`stat_dtype`][gradtx.numerics.stat_dtype]); complex gradients use `|g|^2` in every second moment.
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
    full_like_param,
    safe_increment,
    tree_zeros_like,
)
from gradtx.transforms._moments import (
    adam_debias,
    check_beta,
    check_nonneg,
    map_leaves,
    moment_leaf,
    stat_full,
)
from gradtx.transforms.adam_family import ScaleByAdamState

__all__ = [
    "ScaleByBeliefState",
    "belief_leaf",
    "radam_leaf",
    "scale_by_belief",
    "scale_by_radam",
    "scale_by_yogi",
    "yogi_leaf",
]


# --------------------------------------------------------------------------------------------
# States
# --------------------------------------------------------------------------------------------


class ScaleByBeliefState(NamedTuple):
    """State of [`scale_by_belief`][gradtx.scale_by_belief]."""

    count: jax.Array  # type: ignore[assignment]  # int32 scalar: number of updates done (shadows tuple.count)
    mu: Updates  # first moment
    nu: Updates  # second moment of the prediction error g - mu (eps_root included)


# --------------------------------------------------------------------------------------------
# Per-leaf functions
# --------------------------------------------------------------------------------------------


def _first_moment_hat(g, mu_new, bc1, bc1_next, b1, dtype):
    """`m / (1 - b1^t)`, or the Nesterov form when `bc1_next = 1 - b1^(t+1)` is given."""
    if bc1_next is None:
        return mu_new / cast(bc1, dtype)
    return b1 * (mu_new / cast(bc1_next, dtype)) + (1 - b1) * (cast(g, dtype) / cast(bc1, dtype))


def belief_leaf(
    g: jax.Array,
    mu: jax.Array,
    nu: jax.Array,
    bc1: jax.Array,
    bc2: jax.Array,
    bc1_next: jax.Array | None = None,
    *,
    b1: Any,
    b2: Any,
    eps: Any,
    eps_root: Any,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One AdaBelief step on one leaf.

    Args:
        g: the gradient leaf.
        mu, nu: the first moment and the prediction-error moment.
        bc1, bc2: `1 - b1**t` and `1 - b2**t` for the incremented count `t`.
        bc1_next: `1 - b1**(t+1)`; when given, the Nesterov first moment is used.
        b1, b2, eps, eps_root: AdaBelief's hyper-parameters.

    Returns:
        `(update, new_mu, new_nu)`; the update has `g`'s dtype.
    """
    cdt = compute_dtype(g.dtype, mu.dtype)
    mu_new = moment_leaf(g, mu, b1, cdt)
    error = cast(g, cdt) - mu_new
    nu_new = (1 - b2) * abs_sq(error, nu.dtype) + b2 * nu + eps_root
    m_hat = _first_moment_hat(g, mu_new, bc1, bc1_next, b1, cdt)
    v_hat = nu_new / cast(bc2, nu_new.dtype)
    update = m_hat / (jnp.sqrt(v_hat) + eps)
    return cast(update, g.dtype), cast(mu_new, mu.dtype), cast(nu_new, nu.dtype)


def yogi_leaf(
    g: jax.Array,
    mu: jax.Array,
    nu: jax.Array,
    bc1: jax.Array,
    bc2: jax.Array,
    *,
    b1: Any,
    b2: Any,
    eps: Any,
    eps_root: Any,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One Yogi step on one leaf: `nu ← nu - (1-b2)·sign(nu - |g|²)·|g|²`.

    Returns:
        `(update, new_mu, new_nu)`; the update has `g`'s dtype.
    """
    cdt = compute_dtype(g.dtype, mu.dtype)
    mu_new = moment_leaf(g, mu, b1, cdt)
    g2 = abs_sq(g, nu.dtype)
    nu_new = nu - (1 - b2) * jnp.sign(nu - g2) * g2
    m_hat = mu_new / cast(bc1, cdt)
    v_hat = nu_new / cast(bc2, nu_new.dtype)
    update = m_hat / (jnp.sqrt(v_hat + eps_root) + eps)
    return cast(update, g.dtype), cast(mu_new, mu.dtype), cast(nu_new, nu.dtype)


def radam_leaf(
    g: jax.Array,
    mu: jax.Array,
    nu: jax.Array,
    bc1: jax.Array,
    bc2: jax.Array,
    bc1_next: jax.Array | None,
    rectifier: jax.Array,
    rectify: jax.Array,
    *,
    b1: Any,
    b2: Any,
    eps: Any,
    eps_root: Any,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One RAdam step on one leaf.

    Args:
        g, mu, nu, bc1, bc2, bc1_next: as in [`belief_leaf`][gradtx.transforms.adam_variants.belief_leaf].
        rectifier: the variance rectification factor `r_t` (a scalar; NaN while `ro_t < 4`).
        rectify: whether `ro_t >= threshold` (a boolean scalar): the rectified adaptive update
            is used, otherwise the bias-corrected momentum alone.
        b1, b2, eps, eps_root: RAdam's hyper-parameters.

    Returns:
        `(update, new_mu, new_nu)`; the update has `g`'s dtype.
    """
    cdt = compute_dtype(g.dtype, mu.dtype)
    mu_new = moment_leaf(g, mu, b1, cdt)
    nu_new = (1 - b2) * abs_sq(g, nu.dtype) + b2 * nu
    m_hat = _first_moment_hat(g, mu_new, bc1, bc1_next, b1, cdt)
    v_hat = nu_new / cast(bc2, nu_new.dtype)
    adaptive = cast(rectifier, m_hat.dtype) * m_hat / (jnp.sqrt(v_hat + eps_root) + eps)
    update = jnp.where(rectify, adaptive, m_hat)
    return cast(update, g.dtype), cast(mu_new, mu.dtype), cast(nu_new, nu.dtype)


# --------------------------------------------------------------------------------------------
# Factories
# --------------------------------------------------------------------------------------------


@describe
def scale_by_belief(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-16,
    eps_root: float = 1e-16,
    *,
    nesterov: bool = False,
) -> GradientTransformation:
    r"""Rescale updates by AdaBelief: Adam with the variance of the prediction error `g - m`.

    With `t` the step number (1 on the first call) and `g` the incoming updates:

    $$m_t = \beta_1 m_{t-1} + (1-\beta_1) g,\qquad
    s_t = \beta_2 s_{t-1} + (1-\beta_2) |g - m_t|^2 + \epsilon_{root},$$

    $$u = \frac{m_t / (1-\beta_1^t)}{\sqrt{s_t / (1-\beta_2^t)} + \epsilon}.$$

    `eps_root` is added to the state $s_t$ itself (it accumulates), as in optax. With
    `nesterov=True` the first moment is replaced by
    $\beta_1 \frac{m_t}{1-\beta_1^{t+1}} + (1-\beta_1)\frac{g}{1-\beta_1^t}$.

    Args:
        b1: decay of the first moment, default 0.9, in [0, 1).
        b2: decay of the prediction-error moment, default 0.999, in [0, 1).
        eps: added to the denominator outside the square root, default 1e-16, >= 0.
        eps_root: added to $s_t$ at every step, default 1e-16, >= 0 (must be > 0 to
            differentiate through the update).
        nesterov: use the Nesterov first moment, keyword-only, default False.

    Returns:
        A `GradientTransformation` with state
        [`ScaleByBeliefState`][gradtx.transforms.adam_variants.ScaleByBeliefState]`(count, mu, nu)`.

    References:
        Zhuang et al., *AdaBelief Optimizer: Adapting Stepsizes by the Belief in Observed
        Gradients*, NeurIPS 2020 (arXiv:2010.07468).
    """
    owner = "scale_by_belief"
    check_beta(owner, "b1", b1)
    check_beta(owner, "b2", b2)
    check_nonneg(owner, "eps", eps)
    check_nonneg(owner, "eps_root", eps_root)
    _v.check_bool(owner, "nesterov", nesterov)

    def init(params):
        _v.check_state_params(owner, params)
        return ScaleByBeliefState(
            count=jnp.zeros([], jnp.int32), mu=tree_zeros_like(params), nu=stat_full(params, 0.0)
        )

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        count = safe_increment(state.count)
        bc1, bc2, bc1_next = adam_debias(count, b1, b2, nesterov)

        def leaf(g, mu, nu):
            return belief_leaf(g, mu, nu, bc1, bc2, bc1_next, b1=b1, b2=b2, eps=eps, eps_root=eps_root)

        new_updates, mu, nu = map_leaves(leaf, 3, updates, state.mu, state.nu)
        return new_updates, ScaleByBeliefState(count=count, mu=mu, nu=nu)

    return GradientTransformation(init, update)


@describe
def scale_by_yogi(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-3,
    eps_root: float = 0.0,
    initial_accumulator_value: float = 1e-6,
) -> GradientTransformation:
    r"""Rescale updates by Yogi: Adam with an additive, sign-controlled second moment.

    $$m_t = \beta_1 m_{t-1} + (1-\beta_1) g,\qquad
    v_t = v_{t-1} - (1-\beta_2)\,\operatorname{sign}(v_{t-1} - |g|^2)\,|g|^2,$$

    $$u = \frac{m_t / (1-\beta_1^t)}{\sqrt{v_t / (1-\beta_2^t) + \epsilon_{root}} + \epsilon},$$

    with $m_0 = v_0$ = `initial_accumulator_value`. The second moment moves towards $|g|^2$ by
    at most $(1-\beta_2)|g|^2$ per step, so it grows slowly after a burst of large gradients.

    Args:
        b1: decay of the first moment, default 0.9, in [0, 1).
        b2: rate of the second moment, default 0.999, in [0, 1).
        eps: added to the denominator outside the square root, default 1e-3, >= 0.
        eps_root: added inside the square root, default 0.0, >= 0.
        initial_accumulator_value: starting value of both moments, default 1e-6, >= 0.

    Returns:
        A `GradientTransformation` with state `ScaleByAdamState(count, mu, nu)`.

    References:
        Zaheer et al., *Adaptive Methods for Nonconvex Optimization*, NeurIPS 2018.
    """
    owner = "scale_by_yogi"
    check_beta(owner, "b1", b1)
    check_beta(owner, "b2", b2)
    check_nonneg(owner, "eps", eps)
    check_nonneg(owner, "eps_root", eps_root)
    check_nonneg(owner, "initial_accumulator_value", initial_accumulator_value)

    def init(params):
        _v.check_state_params(owner, params)
        mu = jax.tree.map(lambda p: full_like_param(p, initial_accumulator_value), params)
        return ScaleByAdamState(
            count=jnp.zeros([], jnp.int32), mu=mu, nu=stat_full(params, initial_accumulator_value)
        )

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        count = safe_increment(state.count)
        bc1 = debias_factor(b1, count)
        bc2 = debias_factor(b2, count)

        def leaf(g, mu, nu):
            return yogi_leaf(g, mu, nu, bc1, bc2, b1=b1, b2=b2, eps=eps, eps_root=eps_root)

        new_updates, mu, nu = map_leaves(leaf, 3, updates, state.mu, state.nu)
        return new_updates, ScaleByAdamState(count=count, mu=mu, nu=nu)

    return GradientTransformation(init, update)


@describe
def scale_by_radam(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    threshold: float = 5.0,
    *,
    nesterov: bool = False,
) -> GradientTransformation:
    r"""Rescale updates by Rectified Adam (RAdam).

    With Adam's moments $m_t, v_t$, $\hat m_t = m_t/(1-\beta_1^t)$,
    $\hat v_t = v_t/(1-\beta_2^t)$ and the length of the approximated moving average

    $$\rho_\infty = \frac{2}{1-\beta_2} - 1,\qquad
    \rho_t = \rho_\infty - \frac{2 t \beta_2^t}{1-\beta_2^t},$$

    the update is the rectified Adam step once the variance is tractable, and the
    bias-corrected momentum before:

    $$u = \begin{cases} r_t \dfrac{\hat m_t}{\sqrt{\hat v_t + \epsilon_{root}} + \epsilon},
    \quad r_t = \sqrt{\dfrac{(\rho_t-4)(\rho_t-2)\rho_\infty}{(\rho_\infty-4)(\rho_\infty-2)\rho_t}}
    & \rho_t \ge \text{threshold} \\ \hat m_t & \text{otherwise.} \end{cases}$$

    $\rho_t$ is about $t$ for the first steps, so the default threshold 5 gives five steps of
    momentum SGD. With `nesterov=True` the first moment is the Nesterov one (see
    [`scale_by_adam`][gradtx.scale_by_adam]).

    Args:
        b1: decay of the first moment, default 0.9, in [0, 1).
        b2: decay of the second moment, default 0.999, in [0, 1).
        eps: added to the denominator outside the square root, default 1e-8, >= 0.
        eps_root: added inside the square root, default 0.0, >= 0.
        threshold: smallest $\rho_t$ at which the rectified step is used, default 5.0, >= 4
            ($r_t$ is not real for $2 < \rho_t < 4$: a smaller threshold gives NaN updates,
            which optax returns silently).
        nesterov: use the Nesterov first moment, keyword-only, default False.

    Returns:
        A `GradientTransformation` with state `ScaleByAdamState(count, mu, nu)`.

    References:
        Liu et al., *On the Variance of the Adaptive Learning Rate and Beyond*, ICLR 2020
        (arXiv:1908.03265).
    """
    owner = "scale_by_radam"
    check_beta(owner, "b1", b1)
    check_beta(owner, "b2", b2)
    check_nonneg(owner, "eps", eps)
    check_nonneg(owner, "eps_root", eps_root)
    _v.check_real(owner, "threshold", threshold, low=4.0)
    _v.check_bool(owner, "nesterov", nesterov)
    # Python arithmetic when b2 is a Python float, as in optax (the constants enter float32 once)
    ro_inf = 2.0 / (1.0 - b2) - 1.0

    def init(params):
        _v.check_state_params(owner, params)
        return ScaleByAdamState(
            count=jnp.zeros([], jnp.int32), mu=tree_zeros_like(params), nu=stat_full(params, 0.0)
        )

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        count = safe_increment(state.count)
        b2t = b2**count
        ro = ro_inf - 2 * count * b2t / (1 - b2t)
        rectifier = jnp.sqrt((ro - 4.0) * (ro - 2.0) * ro_inf / ((ro_inf - 4.0) * (ro_inf - 2.0) * ro))
        rectify = ro >= threshold
        bc1, bc2, bc1_next = adam_debias(count, b1, b2, nesterov)

        def leaf(g, mu, nu):
            return radam_leaf(
                g, mu, nu, bc1, bc2, bc1_next, rectifier, rectify, b1=b1, b2=b2, eps=eps, eps_root=eps_root
            )

        new_updates, mu, nu = map_leaves(leaf, 3, updates, state.mu, state.nu)
        return new_updates, ScaleByAdamState(count=count, mu=mu, nu=nu)

    return GradientTransformation(init, update)
