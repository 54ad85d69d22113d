r"""RMS-family rescalings: RMSProp (`scale_by_rms`), centred RMSProp (`scale_by_stddev`) and
Adagrad (`scale_by_rss`).

Every transformation here follows optax 0.2.8's numerics bit for bit for float32 inputs under
`jax.jit`; the per-leaf arithmetic lives in `rms_leaf`, `stddev_leaf` and `rss_leaf`.

Low precision: as in [`gradtx.transforms.adam_family`][gradtx.transforms.adam_family] (statistics in
at least float32, updates in the gradients' dtype).
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
    safe_increment,
    tree_zeros_like,
)
from gradtx.transforms._moments import check_nonneg, map_leaves, moment_leaf, stat_full

__all__ = [
    "ScaleByRStdDevState",
    "ScaleByRStdDevWithCountState",
    "ScaleByRmsState",
    "ScaleByRmsWithCountState",
    "ScaleByRssState",
    "rms_leaf",
    "rss_leaf",
    "scale_by_rms",
    "scale_by_rss",
    "scale_by_stddev",
    "stddev_leaf",
]


# --------------------------------------------------------------------------------------------
# States
# --------------------------------------------------------------------------------------------


class ScaleByRmsState(NamedTuple):
    """State of [`scale_by_rms`][gradtx.scale_by_rms] without bias correction."""

    nu: Updates


class ScaleByRmsWithCountState(NamedTuple):
    """State of [`scale_by_rms`][gradtx.scale_by_rms] with `bias_correction=True`."""

    count: jax.Array  # type: ignore[assignment]  # optax's field name (shadows tuple.count)
    nu: Updates


class ScaleByRStdDevState(NamedTuple):
    """State of [`scale_by_stddev`][gradtx.scale_by_stddev] without bias correction."""

    mu: Updates
    nu: Updates


class ScaleByRStdDevWithCountState(NamedTuple):
    """State of [`scale_by_stddev`][gradtx.scale_by_stddev] with `bias_correction=True`."""

    count: jax.Array  # type: ignore[assignment]  # optax's field name (shadows tuple.count)
    mu: Updates
    nu: Updates


class ScaleByRssState(NamedTuple):
    """State of [`scale_by_rss`][gradtx.scale_by_rss]: the running sum of squared gradients."""

    sum_of_squares: Updates


# --------------------------------------------------------------------------------------------
# Per-leaf functions
# --------------------------------------------------------------------------------------------


def rms_leaf(
    g: jax.Array,
    nu: jax.Array,
    bc: jax.Array | None = None,
    *,
    decay: Any,
    eps: Any,
    eps_in_sqrt: bool = True,
) -> tuple[jax.Array, jax.Array]:
    """One RMSProp step on one leaf: `nu ← decay·nu + (1-decay)·|g|²`, `u = g / sqrt(nu + eps)`.

    `bc` (`1 - decay**t`) applies bias correction to `nu`; `eps_in_sqrt=False` uses
    `g / (sqrt(nu) + eps)`.
    """
    nu_new = (1 - decay) * abs_sq(g, nu.dtype) + decay * nu
    nu_hat = nu_new if bc is None else nu_new / cast(bc, nu_new.dtype)
    if eps_in_sqrt:
        scaling = jax.lax.rsqrt(nu_hat + eps)
    else:
        scaling = 1 / (jnp.sqrt(nu_hat) + eps)
    cdt = compute_dtype(g.dtype, scaling.dtype)
    update = cast(scaling, cdt) * cast(g, cdt)
    return cast(update, g.dtype), cast(nu_new, nu.dtype)


def stddev_leaf(
    g: jax.Array,
    mu: jax.Array,
    nu: jax.Array,
    bc: jax.Array | None = None,
    *,
    decay: Any,
    eps: Any,
    eps_in_sqrt: bool = True,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One centred-RMSProp step on one leaf: `u = g / sqrt(nu - |mu|² + eps)`.

    The variance `nu - |mu|²` is clamped at 0 (rounding can make it slightly negative).
    """
    cdt = compute_dtype(g.dtype, mu.dtype)
    mu_new = moment_leaf(g, mu, decay, cdt)
    nu_new = (1 - decay) * abs_sq(g, nu.dtype) + decay * nu
    if bc is None:
        mu_hat, nu_hat = mu_new, nu_new
    else:
        mu_hat, nu_hat = mu_new / cast(bc, cdt), nu_new / cast(bc, nu_new.dtype)
    var = jnp.maximum(nu_hat - abs_sq(mu_hat, nu_hat.dtype), 0)
    if eps_in_sqrt:
        scaling = jax.lax.rsqrt(var + eps)
    else:
        scaling = 1 / (jnp.sqrt(var) + eps)
    cdt = compute_dtype(cdt, scaling.dtype)
    update = cast(scaling, cdt) * cast(g, cdt)
    return cast(update, g.dtype), cast(mu_new, mu.dtype), cast(nu_new, nu.dtype)


def rss_leaf(g: jax.Array, sum_sq: jax.Array, *, eps: Any) -> tuple[jax.Array, jax.Array]:
    """One Adagrad step on one leaf: `s ← s + |g|²`, `u = g / sqrt(s + eps)` (0 where `s = 0`)."""
    s_new = abs_sq(g, sum_sq.dtype) + sum_sq
    scaling = jnp.where(s_new > 0, jax.lax.rsqrt(s_new + eps), 0.0)
    cdt = compute_dtype(g.dtype, scaling.dtype)
    update = cast(scaling, cdt) * cast(g, cdt)
    return cast(update, g.dtype), cast(s_new, sum_sq.dtype)


# --------------------------------------------------------------------------------------------
# Factories
# --------------------------------------------------------------------------------------------


def _check_rms_args(owner, decay, eps, initial_scale, eps_in_sqrt, bias_correction) -> None:
    _v.check_bool(owner, "eps_in_sqrt", eps_in_sqrt)
    _v.check_bool(owner, "bias_correction", bias_correction)
    if bias_correction:
        _v.check_real(owner, "decay", decay, low=0.0, high=1.0, high_inclusive=False)
    else:
        _v.check_real(owner, "decay", decay, low=0.0, high=1.0)
    check_nonneg(owner, "eps", eps)
    check_nonneg(owner, "initial_scale", initial_scale)


@describe
def scale_by_rms(
    decay: float = 0.9,
    eps: float = 1e-8,
    initial_scale: float = 0.0,
    eps_in_sqrt: bool = True,
    bias_correction: bool = False,
) -> GradientTransformation:
    r"""Rescale updates by the root of an exponential moving average of squared gradients.

    $$v_t = \rho\, v_{t-1} + (1-\rho)|g|^2,\qquad u = \frac{g}{\sqrt{\hat v_t + \epsilon}}$$

    (or $g / (\sqrt{\hat v_t} + \epsilon)$ with `eps_in_sqrt=False`), where
    $\hat v_t = v_t/(1-\rho^t)$ with `bias_correction=True` and $\hat v_t = v_t$ otherwise.

    Args:
        decay: the decay $\rho$, default 0.9, in [0, 1] ([0, 1) with bias correction).
        eps: stabilising constant, default 1e-8, >= 0.
        initial_scale: initial value of $v$, default 0.0, >= 0.
        eps_in_sqrt: add `eps` inside the square root, default True.
        bias_correction: divide $v_t$ by $1-\rho^t$, default False.

    Returns:
        A `GradientTransformation` with state `ScaleByRmsState(nu)`, or
        `ScaleByRmsWithCountState(count, nu)` when `bias_correction=True`. `nu` is float32 for
        float16/bfloat16 params.

    References:
        Tieleman & Hinton, *Lecture 6.5 — RMSProp*, COURSERA: Neural Networks for Machine
        Learning, 2012.
    """
    _check_rms_args("scale_by_rms", decay, eps, initial_scale, eps_in_sqrt, bias_correction)

    def init(params):
        _v.check_state_params("scale_by_rms", params)
        nu = stat_full(params, initial_scale)
        if bias_correction:
            return ScaleByRmsWithCountState(count=jnp.zeros([], jnp.int32), nu=nu)
        return ScaleByRmsState(nu=nu)

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        if bias_correction:
            count = safe_increment(state.count)
            bc = debias_factor(decay, count)
        else:
            bc = None

        def leaf(g, nu):
            return rms_leaf(g, nu, bc, decay=decay, eps=eps, eps_in_sqrt=eps_in_sqrt)

        new_updates, nu = map_leaves(leaf, 2, updates, state.nu)
        if bias_correction:
            return new_updates, ScaleByRmsWithCountState(count=count, nu=nu)
        return new_updates, ScaleByRmsState(nu=nu)

    return GradientTransformation(init, update)


@describe
def scale_by_stddev(
    decay: float = 0.9,
    eps: float = 1e-8,
    initial_scale: float = 0.0,
    eps_in_sqrt: bool = True,
    bias_correction: bool = False,
) -> GradientTransformation:
    r"""Rescale updates by the root of a centred moving variance of the gradients.

    $$m_t = \rho\, m_{t-1} + (1-\rho) g,\quad v_t = \rho\, v_{t-1} + (1-\rho)|g|^2,\quad
    u = \frac{g}{\sqrt{\max(\hat v_t - |\hat m_t|^2, 0) + \epsilon}}$$

    (centred RMSProp), with the same `eps_in_sqrt` and `bias_correction` options as
    [`scale_by_rms`][gradtx.scale_by_rms]. The variance is clamped at zero, so rounding
    never produces a NaN.

    Args:
        decay: the decay $\rho$, default 0.9, in [0, 1] ([0, 1) with bias correction).
        eps: stabilising constant, default 1e-8, >= 0.
        initial_scale: initial value of $v$, default 0.0, >= 0.
        eps_in_sqrt: add `eps` inside the square root, default True.
        bias_correction: divide both moments by $1-\rho^t$, default False.

    Returns:
        A `GradientTransformation` with state `ScaleByRStdDevState(mu, nu)` or
        `ScaleByRStdDevWithCountState(count, mu, nu)`.

    References:
        Graves, *Generating Sequences With Recurrent Neural Networks*, 2013 (eq. 38–41);
        Tieleman & Hinton 2012 (RMSProp).
    """
    _check_rms_args("scale_by_stddev", decay, eps, initial_scale, eps_in_sqrt, bias_correction)

    def init(params):
        _v.check_state_params("scale_by_stddev", params)
        mu = tree_zeros_like(params)
        nu = stat_full(params, initial_scale)
        if bias_correction:
            return ScaleByRStdDevWithCountState(count=jnp.zeros([], jnp.int32), mu=mu, nu=nu)
        return ScaleByRStdDevState(mu=mu, nu=nu)

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        if bias_correction:
            count = safe_increment(state.count)
            bc = debias_factor(decay, count)
        else:
            bc = None

        def leaf(g, mu, nu):
            return stddev_leaf(g, mu, nu, bc, decay=decay, eps=eps, eps_in_sqrt=eps_in_sqrt)

        new_updates, mu, nu = map_leaves(leaf, 3, updates, state.mu, state.nu)
        if bias_correction:
            return new_updates, ScaleByRStdDevWithCountState(count=count, mu=mu, nu=nu)
        return new_updates, ScaleByRStdDevState(mu=mu, nu=nu)

    return GradientTransformation(init, update)


@describe
def scale_by_rss(initial_accumulator_value: float = 0.1, eps: float = 1e-7) -> GradientTransformation:
    r"""Rescale updates by the root of the sum of all squared gradients so far (Adagrad).

    $$s_t = s_{t-1} + |g|^2,\qquad u = \frac{g}{\sqrt{s_t + \epsilon}}\ \ (u = 0 \text{ where } s_t = 0).$$

    Args:
        initial_accumulator_value: initial value of $s$, default 0.1, >= 0.
        eps: stabilising constant, default 1e-7, >= 0.

    Returns:
        A `GradientTransformation` with state `ScaleByRssState(sum_of_squares)` (float32 for
        float16/bfloat16 params).

    References:
        Duchi, Hazan & Singer, *Adaptive Subgradient Methods for Online Learning and Stochastic
        Optimization*, JMLR 2011.
    """
    owner = "scale_by_rss"
    check_nonneg(owner, "initial_accumulator_value", initial_accumulator_value)
    check_nonneg(owner, "eps", eps)

    def init(params):
        _v.check_state_params(owner, params)
        return ScaleByRssState(sum_of_squares=stat_full(params, initial_accumulator_value))

    def update(updates, state, params=None, **extra_args):
        del params, extra_args

        def leaf(g, s):
            return rss_leaf(g, s, eps=eps)

        new_updates, sum_sq = map_leaves(leaf, 2, updates, state.sum_of_squares)
        return new_updates, ScaleByRssState(sum_of_squares=sum_sq)

    return GradientTransformation(init, update)
