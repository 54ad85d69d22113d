r"""Learning-rate-free scalings of `optax.contrib`: DoG, DoWG and COCOB.

[`scale_by_cocob`][gradtx.contrib.scale_by_cocob] is exported from `gradtx.contrib` (as in optax);
`scale_by_dog` and `scale_by_dowg` are the inner transformations of
[`dog`][gradtx.contrib.dog] and [`dowg`][gradtx.contrib.dowg], kept in this module (optax does not
export them either). Unlike gradtx's layer-wise
[`scale_by_distance_over_gradients`][gradtx.scale_by_distance_over_gradients], DoG and DoWG here
use one step size for the whole params tree. Their numbers follow `optax.contrib` 0.2.8's bit for
bit for float32 inputs under `jax.jit`, and their states have optax's layout.
"""

import operator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx import _validation as _v
from gradtx.base import GradientTransformation, Updates, describe
from gradtx.numerics import tree_zeros_like

__all__ = ["COCOBState", "DoGState", "DoWGState", "scale_by_cocob", "scale_by_dog", "scale_by_dowg"]

_INIT_STEP_KINDS = ("distance", "learning_rate", "heuristic")


def lowest_dtype(params: Any) -> Any:
    """The params' dtype of fewest bits (float32 for an empty tree), as optax's `'lowest'`."""
    leaves = jax.tree.leaves(params)
    if not leaves:
        return jnp.dtype(jnp.float32)
    return min((jnp.asarray(x).dtype for x in leaves), key=lambda d: d.itemsize)


def params_required(owner: str, params: Any) -> None:
    """ValueError naming `owner` when `update` received no params."""
    if params is None:
        raise ValueError(
            f"{owner}.update: params are required (the step uses the params); call "
            f"update(updates, state, params)."
        )


def _sq_norm(tree: Any) -> jax.Array:
    """`sum_i ||x_i||^2` over the leaves in optax's order (0 + s_1 + s_2 + ...)."""
    sums = jax.tree.map(lambda x: jnp.sum(jnp.square(x.real) + jnp.square(x.imag)), tree)
    return jnp.array(jax.tree.reduce(operator.add, sums, initializer=0))


def _distance(x: Any, y: Any) -> Any:
    return jax.tree.map(operator.sub, x, y)


# --------------------------------------------------------------------------------------------
# DoG
# --------------------------------------------------------------------------------------------


class DoGState(NamedTuple):
    """State of `scale_by_dog` (optax's `DoGState`).

    `is_init_step`: True before the first update (a bool scalar); `init_params`: the initial
    params $x_0$; `max_dist`: $r_t$; `sum_sq_norm_grads`: $G_t$ (scalars in the params' dtype).
    """

    is_init_step: jax.Array
    init_params: Updates
    max_dist: jax.Array
    sum_sq_norm_grads: jax.Array


def check_init_step(owner: str, init_step: Any) -> None:
    """`init_step` is a pair `(kind, value)` with a known kind and a real value >= 0."""
    if not isinstance(init_step, (tuple, list)) or len(init_step) != 2:
        raise TypeError(f"{owner}: init_step must be a pair (kind, value), got {init_step!r}")
    if init_step[0] not in _INIT_STEP_KINDS:
        raise ValueError(f"{owner}: init_step's kind must be one of {_INIT_STEP_KINDS}, got {init_step[0]!r}")
    _v.check_real(owner, "init_step's value", init_step[1], low=0.0)


@describe
def scale_by_dog(init_step: tuple[str, jax.typing.ArrayLike], eps: jax.typing.ArrayLike = 1e-8) -> GradientTransformation:
    r"""Scale the updates by DoG's global step size (Distance over Gradients).

    With $x_0$ the initial params and $g_s$ the updates received,

    $$r_t = \max\left(r_{t-1},\ \|x_t - x_0\|_2\right),\qquad G_t = G_{t-1} + \|g_t\|_2^2,\qquad
    u_t = \frac{r_t}{\sqrt{G_t + \epsilon}}\, g_t,$$

    norms taken over the whole tree. `init_step = (kind, value)` sets $r_0$: `("distance", v)`
    gives $r_0 = v$; `("heuristic", v)` gives $r_0 = v\,(1 + \|x_0\|_2)$; `("learning_rate", v)`
    gives $r_0 = 0$ and a first step of size $v$ ($u_1 = v\, g_1$).

    Args:
        init_step: `(kind, value)` as above, kind one of "distance", "learning_rate",
            "heuristic", value a real >= 0.
        eps: added under the square root, default 1e-8, >= 0.

    Returns:
        A `GradientTransformation` whose `update` needs `params`; state `DoGState`.
    """
    owner = "scale_by_dog"
    check_init_step(owner, init_step)
    _v.check_real(owner, "eps", eps, low=0.0)
    kind, value = init_step

    def init(params):
        dtype = lowest_dtype(params)
        if kind == "distance":
            r0: Any = value
        elif kind == "heuristic":
            r0 = value * (1 + jnp.sqrt(_sq_norm(params)))
        else:
            r0 = 0.0
        return DoGState(
            is_init_step=jnp.asarray(True),
            init_params=params,
            max_dist=jnp.asarray(r0, dtype=dtype),
            sum_sq_norm_grads=jnp.asarray(0.0, dtype=dtype),
        )

    def update(updates, state, params=None, **extra_args):
        del extra_args
        params_required(owner, params)
        dist = jnp.array(jnp.sqrt(_sq_norm(_distance(state.init_params, params))))
        max_dist = jnp.maximum(state.max_dist, dist)
        sum_sq = state.sum_sq_norm_grads + _sq_norm(updates)
        step = max_dist / jnp.sqrt(sum_sq + eps)
        if kind == "learning_rate":
            step = jnp.where(state.is_init_step, value, step)
        new_updates = jax.tree.map(lambda g: step * g, updates)
        return new_updates, DoGState(jnp.asarray(False), state.init_params, max_dist, sum_sq)

    return GradientTransformation(init, update)


# --------------------------------------------------------------------------------------------
# DoWG
# --------------------------------------------------------------------------------------------


class DoWGState(NamedTuple):
    """State of `scale_by_dowg` (optax's `DoWGState`).

    `init_params`: the initial params $x_0$; `weighted_sq_norm_grads`: $v_t$;
    `estim_sq_dist`: $\bar r_t^2$ (scalars in the params' dtype).
    """

    init_params: Updates
    weighted_sq_norm_grads: jax.Array
    estim_sq_dist: jax.Array


@describe
def scale_by_dowg(
    init_estim_sq_dist: jax.typing.ArrayLike | None = None, eps: jax.typing.ArrayLike = 1e-4
) -> GradientTransformation:
    r"""Scale the updates by DoWG's global step size (Distance over Weighted Gradients).

    $$\bar r_t^2 = \max\left(\bar r_{t-1}^2,\ \|x_t - x_0\|_2^2\right),\qquad
    v_t = v_{t-1} + \bar r_t^2\, \|g_t\|_2^2,\qquad
    u_t = \frac{\bar r_t^2}{\sqrt{v_t} + \epsilon}\, g_t,$$

    norms over the whole tree, $\bar r_0^2$ = `init_estim_sq_dist` (default: `eps`).

    Args:
        init_estim_sq_dist: $\bar r_0^2$, default None (`eps`), >= 0.
        eps: added to the denominator, default 1e-4, >= 0.

    Returns:
        A `GradientTransformation` whose `update` needs `params`; state `DoWGState`.
    """
    owner = "scale_by_dowg"
    if init_estim_sq_dist is not None:
        _v.check_real(owner, "init_estim_sq_dist", init_estim_sq_dist, low=0.0)
    _v.check_real(owner, "eps", eps, low=0.0)
    r0 = eps if init_estim_sq_dist is None else init_estim_sq_dist

    def init(params):
        dtype = lowest_dtype(params)
        return DoWGState(
            init_params=params,
            estim_sq_dist=jnp.asarray(r0, dtype=dtype),
            weighted_sq_norm_grads=jnp.asarray(0.0, dtype=dtype),
        )

    def update(updates, state, params=None, **extra_args):
        del extra_args
        params_required(owner, params)
        sq_dist = jnp.maximum(state.estim_sq_dist, _sq_norm(_distance(state.init_params, params)))
        weighted = sq_dist * _sq_norm(updates) + state.weighted_sq_norm_grads
        step = sq_dist / (jnp.sqrt(weighted) + eps)
        new_updates = jax.tree.map(lambda g: step * g, updates)
        return new_updates, state._replace(estim_sq_dist=sq_dist, weighted_sq_norm_grads=weighted)

    return GradientTransformation(init, update)


# --------------------------------------------------------------------------------------------
# COCOB
# --------------------------------------------------------------------------------------------


class COCOBState(NamedTuple):
    """State of [`scale_by_cocob`][gradtx.contrib.scale_by_cocob] (optax's `COCOBState`).

    Per params leaf: `init_particles` $x_0$, `cumulative_gradients` $\theta_t = -\\sum g$,
    `scale` $L_t$, `subgradients` $G_t = \\sum |g|$ and `reward` $R_t$.
    """

    init_particles: Updates
    cumulative_gradients: Updates
    scale: Updates
    subgradients: Updates
    reward: Updates


@describe
def scale_by_cocob(alpha: jax.typing.ArrayLike = 100.0, eps: jax.typing.ArrayLike = 1e-8) -> GradientTransformation:
    r"""COCOB-Backprop: coin betting, coordinate-wise, without a learning rate.

    Per coordinate, with $x_0$ the initial params and $g_t$ the updates received:

    $$L_t = \max(L_{t-1}, |g_t|),\qquad G_t = G_{t-1} + |g_t|,\qquad
    R_t = \max\left(R_{t-1} - g_t (x_t - x_0),\ 0\right),\qquad \theta_t = \theta_{t-1} - g_t,$$

    $$u_t = x_0 + \frac{\theta_t\,(L_t + R_t)}{L_t \max(G_t + L_t,\ \alpha L_t)} - x_t,$$

    with $L_0 = \epsilon$ and the other sums 0. The result is the full step to the new params
    (do not scale it by a learning rate afterwards).

    Args:
        alpha: $\alpha$, bounds the fraction of the wealth bet early on, default 100.0, > 0.
        eps: the initial scale $L_0$, default 1e-8, > 0.

    Returns:
        A `GradientTransformation` whose `update` needs `params`; state
        [`COCOBState`][gradtx.contrib.COCOBState].

    References:
        Orabona & Tommasi, *Training Deep Networks without Learning Rates Through Coin Betting*,
        NeurIPS 2017 (arXiv:1705.07795).
    """
    owner = "scale_by_cocob"
    _v.check_real(owner, "alpha", alpha, low=0.0, low_inclusive=False)
    _v.check_real(owner, "eps", eps, low=0.0, low_inclusive=False)

    def init(params):
        zeros = tree_zeros_like(params)
        return COCOBState(
            init_particles=params,
            cumulative_gradients=zeros,
            scale=jax.tree.map(lambda x: eps * jnp.ones_like(x), params),
            subgradients=zeros,
            reward=zeros,
        )

    def update(updates, state, params=None, **extra_args):
        del extra_args
        params_required(owner, params)
        x0, theta, L, G, R = state
        L = jax.tree.map(lambda l_, g: jnp.maximum(l_, jnp.abs(g)), L, updates)
        G = jax.tree.map(lambda s, g: s + jnp.abs(g), G, updates)
        R = jax.tree.map(lambda r, g, x, x0_: jnp.maximum(r - g * (x - x0_), 0), R, updates, params, x0)
        theta = jax.tree.map(lambda c, g: c - g, theta, updates)
        new_updates = jax.tree.map(
            lambda x, x0_, c, l_, s, r: -x + (x0_ + c / (l_ * jnp.maximum(s + l_, alpha * l_)) * (l_ + r)),
            params,
            x0,
            theta,
            L,
            G,
            R,
        )
        return new_updates, COCOBState(x0, theta, L, G, R)

    return GradientTransformation(init, update)
