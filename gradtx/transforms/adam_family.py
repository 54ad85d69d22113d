r"""Adam-family rescalings: Adam (and NAdam), AMSGrad, Adamax and Lion.

Every transformation here follows optax 0.2.8's numerics bit for bit for float32 inputs under
`jax.jit`. The per-leaf arithmetic lives in small pure functions (`adam_leaf`, `lion_leaf`, ...)
that take one gradient leaf and its state leaves and return the update and the new state leaves;
the factories apply them leaf by leaf, and the same functions apply to flattened buffers.

Low precision. Divisions and square roots are done in at least float32 and the update is cast
back to the incoming gradient's dtype, so float16 / bfloat16 gradients never meet an `eps` that
underflows to zero (optax returns NaN for zero float16 gradients). Second-moment statistics
(`nu`, `nu_max`, `sum_of_squares`) are stored in the real dtype of the params widened to at
least float32 (see [`stat_dtype`][gradtx.numerics.stat_dtype]): float32 for float16, bfloat16
and complex64 params (the one place where the state's dtypes differ from optax's). First moments
are stored in the params' dtype, or in `mu_dtype` when it is given. Complex gradients use
`|g|^2` (a real number) in every second moment.
"""

from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp

from gradtx import _validation as _v
from gradtx.base import GradientTransformation, Updates, describe
from gradtx.numerics import (
    abs_sq,
    cast,
    compute_dtype,
    debias_factor,
    safe_increment,
    tree_zeros_like,
)
from gradtx.transforms._moments import (
    adam_debias,
    canonical_dtype,
    check_beta,
    check_nonneg,
    map_leaves,
    moment_leaf,
    stat_full,
)

__all__ = [
    "ScaleByAdamState",
    "ScaleByAmsgradState",
    "ScaleByLionState",
    "adam_leaf",
    "adamax_leaf",
    "amsgrad_leaf",
    "lion_leaf",
    "scale_by_adam",
    "scale_by_adamax",
    "scale_by_amsgrad",
    "scale_by_lion",
]


# --------------------------------------------------------------------------------------------
# States
# --------------------------------------------------------------------------------------------


class ScaleByAdamState(NamedTuple):
    """State of [`scale_by_adam`][gradtx.scale_by_adam] and [`scale_by_adamax`][gradtx.scale_by_adamax]."""

    count: jax.Array  # type: ignore[assignment]  # optax's field name (shadows tuple.count; int32 scalar: number of updates done)
    mu: Updates  # first moment
    nu: Updates  # second moment (Adam) or infinity-norm moment (Adamax)


class ScaleByAmsgradState(NamedTuple):
    """State of [`scale_by_amsgrad`][gradtx.scale_by_amsgrad]."""

    count: jax.Array  # type: ignore[assignment]  # optax's field name (shadows tuple.count)
    mu: Updates
    nu: Updates
    nu_max: Updates  # running maximum of the (bias-corrected) second moment


class ScaleByLionState(NamedTuple):
    """State of [`scale_by_lion`][gradtx.scale_by_lion]."""

    count: jax.Array  # type: ignore[assignment]  # optax's field name (shadows tuple.count)
    mu: Updates


# --------------------------------------------------------------------------------------------
# Per-leaf functions
# --------------------------------------------------------------------------------------------


def adam_leaf(
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
    """One Adam step on one leaf.

    Args:
        g: the gradient leaf.
        mu, nu: the first and second moment leaves (their dtypes are kept).
        bc1, bc2: `1 - b1**t` and `1 - b2**t` for the incremented count `t`.
        bc1_next: `1 - b1**(t+1)`; when given, the Nesterov (NAdam) first moment is used.
        b1, b2, eps, eps_root: Adam's hyper-parameters.

    Returns:
        `(update, new_mu, new_nu)`; the update has `g`'s dtype.
    """
    cdt = compute_dtype(g.dtype, mu.dtype)
    gc = cast(g, cdt)
    mu_new = moment_leaf(g, mu, b1, cdt)
    nu_new = (1 - b2) * abs_sq(g, nu.dtype) + b2 * nu
    if bc1_next is None:
        m_hat = mu_new / cast(bc1, cdt)
    else:
        m_hat = b1 * (mu_new / cast(bc1_next, cdt)) + (1 - b1) * (gc / cast(bc1, cdt))
    v_hat = nu_new / cast(bc2, nu_new.dtype)
    update = m_hat / (jnp.sqrt(v_hat + eps_root) + eps)
    return cast(update, g.dtype), cast(mu_new, mu.dtype), cast(nu_new, nu.dtype)


def amsgrad_leaf(
    g: jax.Array,
    mu: jax.Array,
    nu: jax.Array,
    nu_max: jax.Array,
    bc1: jax.Array | None,
    bc2: jax.Array | None,
    *,
    b1: Any,
    b2: Any,
    eps: Any,
    eps_root: Any,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """One AMSGrad step on one leaf; `bc1`/`bc2` None skip that bias correction.

    Returns:
        `(update, new_mu, new_nu, new_nu_max)`.
    """
    cdt = compute_dtype(g.dtype, mu.dtype)
    mu_new = moment_leaf(g, mu, b1, cdt)
    nu_new = (1 - b2) * abs_sq(g, nu.dtype) + b2 * nu
    m_hat = mu_new if bc1 is None else mu_new / cast(bc1, cdt)
    nu_eff = nu_new if bc2 is None else nu_new / cast(bc2, nu_new.dtype)
    nu_max_new = jnp.maximum(nu_max, nu_eff)
    update = m_hat / (jnp.sqrt(nu_max_new + eps_root) + eps)
    return (
        cast(update, g.dtype),
        cast(mu_new, mu.dtype),
        cast(nu_new, nu.dtype),
        cast(nu_max_new, nu_max.dtype),
    )


def adamax_leaf(
    g: jax.Array, mu: jax.Array, nu: jax.Array, bc1: jax.Array, *, b1: Any, b2: Any, eps: Any
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One Adamax step on one leaf: `nu ← max(|g| + eps, b2·nu)`, `u = m̂ / nu`.

    Where `nu` is 0 (zero gradients with `eps = 0`) the update is 0 instead of NaN.
    """
    cdt = compute_dtype(g.dtype, mu.dtype)
    mu_new = moment_leaf(g, mu, b1, cdt)
    nu_new = jnp.maximum(jnp.abs(g).astype(nu.dtype) + eps, b2 * nu)
    m_hat = mu_new / cast(bc1, cdt)
    # Only the denominator is made safe (where nu = 0 the moment is 0 too, so the update is 0):
    # a select around the quotient would stop XLA from folding the later learning-rate product
    # into the division as it does for optax, and move the result by an ulp.
    update = m_hat / jnp.where(nu_new > 0, nu_new, 1)
    return cast(update, g.dtype), cast(mu_new, mu.dtype), cast(nu_new, nu.dtype)


def lion_leaf(
    g: jax.Array,
    mu: jax.Array,
    *,
    b1: Any,
    b2: Any,
    mode: str = "hard",
    smooth_beta: Any = 1.0,
) -> tuple[jax.Array, jax.Array]:
    """One Lion step on one leaf: `u = sign((1-b1)·g + b1·mu)`, `mu ← (1-b2)·g + b2·mu`.

    `mode="smooth"` uses `tanh(smooth_beta·x)` and `mode="refined"` keeps `|x| < 1` linear.
    """
    cdt = compute_dtype(g.dtype, mu.dtype)
    x = moment_leaf(g, mu, b1, cdt)
    if mode == "hard":
        update = jnp.sign(x)
    elif mode == "smooth":
        update = jnp.tanh(smooth_beta * x)
    else:
        update = jnp.where(jnp.abs(x) < 1.0, x, jnp.sign(x))
    mu_new = moment_leaf(g, mu, b2, cdt)
    return cast(update, g.dtype), cast(mu_new, mu.dtype)


# --------------------------------------------------------------------------------------------
# Factories
# --------------------------------------------------------------------------------------------


@describe
def scale_by_adam(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    *,
    nesterov: bool = False,
) -> GradientTransformation:
    r"""Rescale updates by Adam's bias-corrected moment estimates.

    With `t` the step number (1 on the first call) and `g` the incoming updates:

    $$m_t = \beta_1 m_{t-1} + (1-\beta_1) g,\qquad v_t = \beta_2 v_{t-1} + (1-\beta_2) |g|^2,$$
    $$\hat m_t = \frac{m_t}{1-\beta_1^t},\qquad \hat v_t = \frac{v_t}{1-\beta_2^t},\qquad
    u = \frac{\hat m_t}{\sqrt{\hat v_t + \epsilon_{root}} + \epsilon}.$$

    With `nesterov=True` (NAdam, Dozat 2016) the first moment is replaced by
    $\hat m_t = \beta_1 \frac{m_t}{1-\beta_1^{t+1}} + (1-\beta_1)\frac{g}{1-\beta_1^t}$
    (as optax computes it, without Dozat's extra factor on $\hat v$).
    Combine with [`scale_by_learning_rate`][gradtx.scale_by_learning_rate] to get Adam.

    Args:
        b1: decay of the first moment, default 0.9, in [0, 1).
        b2: decay of the second moment, default 0.999, in [0, 1).
        eps: added to the denominator outside the square root, default 1e-8, >= 0.
        eps_root: added inside the square root, default 0.0, >= 0 (useful when
            differentiating through the update).
        mu_dtype: dtype of the first moment `m`, default None (the params' dtype); a
            floating dtype.
        nesterov: use the Nesterov (NAdam) first moment, default False.

    Returns:
        A `GradientTransformation` with state
        [`ScaleByAdamState`][gradtx.transforms.adam_family.ScaleByAdamState]`(count, mu, nu)`.
        `nu` is kept in float32 for float16/bfloat16 params.

    References:
        Kingma & Ba, *Adam: A Method for Stochastic Optimization*, ICLR 2015.
        Dozat, *Incorporating Nesterov Momentum into Adam*, ICLR workshop 2016.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.scale_by_adam()
        >>> state = tx.init(jnp.zeros(2))
        >>> u, state = tx.update(jnp.array([3.0, -0.5]), state)
        >>> [round(float(x), 4) for x in u]
        [1.0, -1.0]
    """
    owner = "scale_by_adam"
    check_beta(owner, "b1", b1)
    check_beta(owner, "b2", b2)
    check_nonneg(owner, "eps", eps)
    check_nonneg(owner, "eps_root", eps_root)
    _v.check_dtype(owner, "mu_dtype", mu_dtype, allow_complex=True)
    _v.check_bool(owner, "nesterov", nesterov)
    mu_dtype = canonical_dtype(mu_dtype)

    def init(params):
        _v.check_state_params(owner, params, mu_dtype)
        return ScaleByAdamState(
            count=jnp.zeros([], jnp.int32), mu=tree_zeros_like(params, mu_dtype), nu=stat_full(params, 0.0)
        )

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        count = safe_increment(state.count)
        bc1, bc2, bc1_next = adam_debias(count, b1, b2, nesterov)

        def leaf(g, mu, nu):
            return adam_leaf(g, mu, nu, bc1, bc2, bc1_next, b1=b1, b2=b2, eps=eps, eps_root=eps_root)

        new_updates, mu, nu = map_leaves(leaf, 3, updates, state.mu, state.nu)
        return new_updates, ScaleByAdamState(count=count, mu=mu, nu=nu)

    return GradientTransformation(init, update)


@describe
def scale_by_amsgrad(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    bias_correction_mu: bool = True,
    bias_correction_nu: bool = True,
) -> GradientTransformation:
    r"""Rescale updates by AMSGrad: Adam with a running maximum of the second moment.

    $$m_t = \beta_1 m_{t-1} + (1-\beta_1) g,\quad v_t = \beta_2 v_{t-1} + (1-\beta_2)|g|^2,$$
    $$\hat v^{max}_t = \max(\hat v^{max}_{t-1}, v_t / (1-\beta_2^t)),\quad
    u = \frac{m_t/(1-\beta_1^t)}{\sqrt{\hat v^{max}_t + \epsilon_{root}} + \epsilon}.$$

    Args:
        b1: decay of the first moment, default 0.9, in [0, 1).
        b2: decay of the second moment, default 0.999, in [0, 1).
        eps: added to the denominator, default 1e-8, >= 0.
        eps_root: added inside the square root, default 0.0, >= 0.
        mu_dtype: dtype of the first moment, default None (the params' dtype).
        bias_correction_mu: divide `m` by `1 - b1**t`, default True (False matches the paper).
        bias_correction_nu: divide `v` by `1 - b2**t` before the maximum, default True.

    Returns:
        A `GradientTransformation` with state `ScaleByAmsgradState(count, mu, nu, nu_max)`.

    References:
        Reddi, Kale & Kumar, *On the Convergence of Adam and Beyond*, ICLR 2018.
    """
    owner = "scale_by_amsgrad"
    check_beta(owner, "b1", b1)
    check_beta(owner, "b2", b2)
    check_nonneg(owner, "eps", eps)
    check_nonneg(owner, "eps_root", eps_root)
    _v.check_dtype(owner, "mu_dtype", mu_dtype, allow_complex=True)
    _v.check_bool(owner, "bias_correction_mu", bias_correction_mu)
    _v.check_bool(owner, "bias_correction_nu", bias_correction_nu)
    mu_dtype = canonical_dtype(mu_dtype)

    def init(params):
        _v.check_state_params(owner, params, mu_dtype)
        return ScaleByAmsgradState(
            count=jnp.zeros([], jnp.int32),
            mu=tree_zeros_like(params, mu_dtype),
            nu=stat_full(params, 0.0),
            nu_max=stat_full(params, 0.0),
        )

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        count = safe_increment(state.count)
        bc1 = debias_factor(b1, count) if bias_correction_mu else None
        bc2 = debias_factor(b2, count) if bias_correction_nu else None

        def leaf(g, mu, nu, nu_max):
            return amsgrad_leaf(g, mu, nu, nu_max, bc1, bc2, b1=b1, b2=b2, eps=eps, eps_root=eps_root)

        new_updates, mu, nu, nu_max = map_leaves(leaf, 4, updates, state.mu, state.nu, state.nu_max)
        return new_updates, ScaleByAmsgradState(count=count, mu=mu, nu=nu, nu_max=nu_max)

    return GradientTransformation(init, update)


@describe
def scale_by_adamax(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> GradientTransformation:
    r"""Rescale updates by Adamax, Adam's infinity-norm variant.

    $$m_t = \beta_1 m_{t-1} + (1-\beta_1) g,\qquad
    v_t = \max(|g| + \epsilon,\ \beta_2 v_{t-1}),\qquad u = \frac{m_t / (1-\beta_1^t)}{v_t}.$$

    Args:
        b1: decay of the first moment, default 0.9, in [0, 1).
        b2: decay of the infinity-norm moment, default 0.999, in [0, 1).
        eps: added to `|g|`, default 1e-8, >= 0.

    Returns:
        A `GradientTransformation` with state `ScaleByAdamState(count, mu, nu)`.

    References:
        Kingma & Ba, *Adam: A Method for Stochastic Optimization*, ICLR 2015 (section 7.1).
    """
    owner = "scale_by_adamax"
    check_beta(owner, "b1", b1)
    check_beta(owner, "b2", b2)
    check_nonneg(owner, "eps", eps)

    def init(params):
        _v.check_state_params(owner, params)
        return ScaleByAdamState(
            count=jnp.zeros([], jnp.int32), mu=tree_zeros_like(params), nu=stat_full(params, 0.0)
        )

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        count = safe_increment(state.count)
        bc1 = debias_factor(b1, count)

        def leaf(g, mu, nu):
            return adamax_leaf(g, mu, nu, bc1, b1=b1, b2=b2, eps=eps)

        new_updates, mu, nu = map_leaves(leaf, 3, updates, state.mu, state.nu)
        return new_updates, ScaleByAdamState(count=count, mu=mu, nu=nu)

    return GradientTransformation(init, update)


@describe
def scale_by_lion(
    b1: float = 0.9,
    b2: float = 0.99,
    mu_dtype: Any = None,
    *,
    mode: Literal["hard", "smooth", "refined"] = "hard",
    smooth_beta: float = 1.0,
) -> GradientTransformation:
    r"""Rescale updates by Lion (evolved sign momentum).

    $$u = \operatorname{sign}\big((1-\beta_1) g + \beta_1 m_{t-1}\big),\qquad
    m_t = \beta_2 m_{t-1} + (1-\beta_2) g.$$

    Args:
        b1: interpolation between gradient and momentum for the update, default 0.9, in [0, 1].
        b2: decay of the momentum, default 0.99, in [0, 1].
        mu_dtype: dtype of the momentum, default None (the params' dtype).
        mode: `"hard"` (sign, default), `"smooth"` (`tanh(smooth_beta·x)`) or `"refined"`
            (`x` where `|x| < 1`, else `sign(x)`).
        smooth_beta: slope of the `"smooth"` mode, default 1.0, > 0.

    Returns:
        A `GradientTransformation` with state `ScaleByLionState(count, mu)`.

    References:
        Chen et al., *Symbolic Discovery of Optimization Algorithms*, NeurIPS 2023.
    """
    owner = "scale_by_lion"
    _v.check_real(owner, "b1", b1, low=0.0, high=1.0)
    _v.check_real(owner, "b2", b2, low=0.0, high=1.0)
    _v.check_dtype(owner, "mu_dtype", mu_dtype, allow_complex=True)
    if mode not in ("hard", "smooth", "refined"):
        raise ValueError(f"{owner}: mode must be one of 'hard', 'smooth', 'refined', got {mode!r}")
    _v.check_real(owner, "smooth_beta", smooth_beta, low=0.0, low_inclusive=False)
    mu_dtype = canonical_dtype(mu_dtype)

    def init(params):
        _v.check_state_params(owner, params, mu_dtype)
        return ScaleByLionState(count=jnp.zeros([], jnp.int32), mu=tree_zeros_like(params, mu_dtype))

    def update(updates, state, params=None, **extra_args):
        del params, extra_args

        def leaf(g, mu):
            return lion_leaf(g, mu, b1=b1, b2=b2, mode=mode, smooth_beta=smooth_beta)

        new_updates, mu = map_leaves(leaf, 2, updates, state.mu)
        return new_updates, ScaleByLionState(count=safe_increment(state.count), mu=mu)

    return GradientTransformation(init, update)


