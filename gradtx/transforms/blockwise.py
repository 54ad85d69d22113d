r"""Rescalings by statistics of whole blocks (leaves) or of covers of their coordinates.

* `scale_by_param_block_rms` / `scale_by_param_block_norm`: multiply each leaf's update by the
  root mean square (or the L2 norm) of that leaf's parameters, Adafactor's *relative step size*.
* `scale_by_sm3`: SM3's Adagrad-like rescaling whose accumulators are kept per slice of each
  axis (one vector per axis) rather than per coordinate.

A *block* is one leaf of the params tree: a weight matrix, a bias vector, a convolution kernel.
Numbers and state layouts are optax 0.2.8's, bit for bit for float32 inputs under `jax.jit`.
"""

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx import _validation as _v
from gradtx.base import EmptyState, GradientTransformation, Updates, describe
from gradtx.numerics import abs_sq, float_updates, full_like_param, tree_as_arrays

__all__ = [
    "ScaleBySM3State",
    "block_norm",
    "block_rms",
    "reject_complex",
    "scale_by_param_block_norm",
    "scale_by_param_block_rms",
    "scale_by_sm3",
    "sm3_leaf",
]


def _empty_init(params: Any) -> EmptyState:
    del params
    return EmptyState()


def _no_params(owner: str) -> ValueError:
    return ValueError(
        f"{owner}.update: params are required (the updates are scaled by a statistic of the "
        f"params); call update(updates, state, params)."
    )


# --------------------------------------------------------------------------------------------
# Statistics of one block, floored
# --------------------------------------------------------------------------------------------


def block_rms(x: jax.Array, floor: Any) -> jax.Array:
    r"""$\max(\sqrt{\operatorname{mean}|x|^2}, \text{floor})$, with a finite gradient at 0.

    Where the RMS is at most `floor` the RMS is recomputed on ones (and then discarded), so that
    differentiating through it never meets the infinite derivative of the square root at 0.
    """
    rms = jnp.sqrt(jnp.mean(abs_sq(x)))
    small = rms <= floor
    safe = jnp.sqrt(jnp.mean(abs_sq(jnp.where(small, jnp.ones_like(x), x))))
    return jnp.where(small, floor, safe)


def block_norm(x: jax.Array, floor: Any) -> jax.Array:
    r"""$\max(\|x\|_2, \text{floor})$ (L2 norm of all the elements), with a finite gradient at 0."""
    norm = jnp.sqrt(jnp.sum(abs_sq(x)))
    small = norm <= floor
    safe = jnp.sqrt(jnp.sum(abs_sq(jnp.where(small, jnp.ones_like(x), x))))
    return jnp.where(small, floor, safe)


def _scale_by_block_stat(owner: str, stat: Any, min_scale: Any) -> GradientTransformation:
    def update(updates, state, params=None, **extra_args):
        del extra_args
        if params is None:
            raise _no_params(owner)
        scaled = jax.tree.map(lambda u, p: u * stat(p, min_scale), float_updates(updates), tree_as_arrays(params))
        return scaled, state

    return GradientTransformation(_empty_init, update)


@describe
def scale_by_param_block_rms(min_scale: float = 1e-3) -> GradientTransformation:
    r"""Multiply each leaf's update by the root mean square of that leaf's parameters.

    For each leaf with params $p$ (of $n$ elements) and update $g$:

    $$u = g\cdot\max\Big(\sqrt{\tfrac1n\textstyle\sum_i |p_i|^2},\ s_{\min}\Big).$$

    Adafactor's *relative step size*: the step is proportional to the scale of the weights it
    changes, and `min_scale` lets zero-initialised leaves move.

    Args:
        min_scale: the floor $s_{\min}$, default 1e-3; a real number >= 0.

    Returns:
        A stateless `GradientTransformation`; its `update` requires `params`.

    References:
        Shazeer & Stern, *Adafactor: Adaptive Learning Rates with Sublinear Memory Cost*, ICML
        2018, section 8.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.scale_by_param_block_rms()
        >>> p = jnp.array([3.0, -4.0])
        >>> tx.update(jnp.ones(2), tx.init(p), p)[0].tolist()
        [3.535533905029297, 3.535533905029297]
    """
    _v.check_real("scale_by_param_block_rms", "min_scale", min_scale, low=0.0)
    return _scale_by_block_stat("scale_by_param_block_rms", block_rms, min_scale)


@describe
def scale_by_param_block_norm(min_scale: float = 1e-3) -> GradientTransformation:
    r"""Multiply each leaf's update by the L2 norm of that leaf's parameters.

    For each leaf with params $p$ and update $g$:

    $$u = g\cdot\max\big(\|p\|_2,\ s_{\min}\big),$$

    the norm taken over all the leaf's elements.

    Args:
        min_scale: the floor $s_{\min}$, default 1e-3; a real number >= 0.

    Returns:
        A stateless `GradientTransformation`; its `update` requires `params`.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.scale_by_param_block_norm()
        >>> p = jnp.array([3.0, -4.0])
        >>> tx.update(jnp.ones(2), tx.init(p), p)[0].tolist()
        [5.0, 5.0]
    """
    _v.check_real("scale_by_param_block_norm", "min_scale", min_scale, low=0.0)
    return _scale_by_block_stat("scale_by_param_block_norm", block_norm, min_scale)


# --------------------------------------------------------------------------------------------
# SM3
# --------------------------------------------------------------------------------------------


class ScaleBySM3State(NamedTuple):
    """State of [`scale_by_sm3`][gradtx.scale_by_sm3].

    `mu` holds, for each leaf, a list with one accumulator vector per axis (`mu[leaf][i]` has
    the length of axis `i`); `nu` is the momentum, shaped like the params.
    """

    mu: Updates
    nu: Updates


def reject_complex(owner: str, params: Any) -> None:
    """Raise a `ValueError` naming the first complex leaf of `params`."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        if jnp.iscomplexobj(leaf):
            raise ValueError(
                f"{owner}.init: params{jax.tree_util.keystr(path)} is complex "
                f"({jnp.result_type(leaf)}); {owner} supports real params only."
            )


def _axis_zeros(p: jax.Array) -> list[jax.Array]:
    """One zero vector per axis of `p` (a reduction of zeros, placed like `p` when sharded).

    A scalar leaf, which has no axis, gets a single scalar accumulator.
    """
    zeros = full_like_param(p, 0)
    if p.ndim < 2:
        return [zeros]
    return [jnp.sum(zeros, axis=tuple(j for j in range(p.ndim) if j != i)) for i in range(p.ndim)]


def sm3_leaf(
    g: jax.Array, mu: list[jax.Array], nu: jax.Array, *, b1: Any, b2: Any, eps: Any
) -> tuple[jax.Array, list[jax.Array], jax.Array]:
    r"""One SM3 step on one leaf; returns `(update, new_mu, new_nu)`.

    Each axis accumulator is broadcast along the other axes; the coordinate-wise bound is
    $\nu = c\,g^2 + \beta_2 \min_i \mu_i$ (with $c = 1$ when $\beta_2 = 1$, else $1 - \beta_2$),
    the rescaled gradient $g/\sqrt{\nu + \epsilon}$ (0 where $\nu = 0$) is averaged with
    momentum $\beta_1$, and each axis accumulator becomes the maximum of $\nu$ over the other
    axes.
    """
    c: Any
    if _v.is_traced(b2):
        c = jnp.where(b2 == 1.0, 1.0, 1.0 - b2)
    else:
        c = 1.0 if b2 == 1.0 else 1.0 - b2
    if g.ndim < 2:
        accum = c * g**2 + b2 * mu[0]
    else:
        shapes = [[1] * i + [g.shape[i]] + [1] * (g.ndim - i - 1) for i in range(g.ndim)]
        bound = functools.reduce(jnp.minimum, [jnp.reshape(m, s) for m, s in zip(mu, shapes, strict=True)])
        accum = c * g**2 + b2 * bound
    scaled = g * jnp.where(accum > 0, jax.lax.rsqrt(accum + eps), 0.0)
    new_nu = (1 - b1) * scaled + b1 * nu
    if g.ndim < 2:
        new_mu = [accum]
    else:
        new_mu = [jnp.max(accum, axis=tuple(j for j in range(g.ndim) if j != i)) for i in range(g.ndim)]
    return new_nu, new_mu, new_nu


@describe
def scale_by_sm3(b1: float = 0.9, b2: float = 1.0, eps: float = 1e-8) -> GradientTransformation:
    r"""Rescale updates by SM3's per-axis accumulated squared gradients, with momentum.

    For a leaf with $k$ axes, SM3 keeps one accumulator vector $\mu_i$ per axis $i$ (the cover
    of its coordinates by the slices along each axis) instead of one number per coordinate. At
    each step, for every coordinate $j$,

    $$\nu_t(j) = c\, g_t(j)^2 + \beta_2 \min_{i} \mu_{i,t-1}(j_i),\qquad
    m_t = \beta_1 m_{t-1} + (1-\beta_1)\,\frac{g_t}{\sqrt{\nu_t + \epsilon}}$$

    ($c = 1$ when $\beta_2 = 1$, the sum of SM3-II; $c = 1-\beta_2$ otherwise, a moving
    average; the rescaled gradient is 0 where $\nu_t = 0$), then every accumulator takes the
    maxima of $\nu_t$ over its slices: $\mu_{i,t}(r) = \max_{j:\,j_i = r} \nu_t(j)$. The
    update is $u_t = m_t$. A leaf with fewer than two axes keeps $\nu_t$ itself.

    Args:
        b1: the momentum $\beta_1$, default 0.9; in [0, 1].
        b2: the decay $\beta_2$ of the accumulators, default 1.0 (accumulate, as in the
            paper); in [0, 1].
        eps: added under the square root, default 1e-8; a real number >= 0.

    Returns:
        A `GradientTransformation` with state `ScaleBySM3State(mu, nu)`, kept in the params'
        dtype. Complex params are refused (the maxima need an order). A scalar leaf gets one
        scalar accumulator (`mu[leaf] == [acc]`, Adagrad on that coordinate); optax's
        `scale_by_sm3` cannot update a leaf of shape `()`.

    References:
        Anil, Gupta, Koren & Singer, *Memory-Efficient Adaptive Optimization*, NeurIPS 2019
        (arXiv:1901.11150).
    """
    owner = "scale_by_sm3"
    _v.check_real(owner, "b1", b1, low=0.0, high=1.0)
    _v.check_real(owner, "b2", b2, low=0.0, high=1.0)
    _v.check_real(owner, "eps", eps, low=0.0)

    def init(params):
        params = tree_as_arrays(params)
        _v.check_state_params(owner, params)
        reject_complex(owner, params)
        return ScaleBySM3State(
            mu=jax.tree.map(_axis_zeros, params),
            nu=jax.tree.map(lambda p: full_like_param(p, 0), params),
        )

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        updates = float_updates(updates)
        treedef = jax.tree.structure(updates)
        outs = [
            sm3_leaf(g, mu, nu, b1=b1, b2=b2, eps=eps)
            for g, mu, nu in zip(
                treedef.flatten_up_to(updates),
                treedef.flatten_up_to(state.mu),
                treedef.flatten_up_to(state.nu),
                strict=True,
            )
        ]
        new_updates, mu, nu = (treedef.unflatten([o[i] for o in outs]) for i in range(3))
        return new_updates, ScaleBySM3State(mu=mu, nu=nu)

    return GradientTransformation(init, update)
