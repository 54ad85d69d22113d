r"""Learning-rate-free scalings of `optax.contrib`: DoG, DoWG, COCOB and Mechanic.

[`scale_by_cocob`][gradtx.contrib.scale_by_cocob] and [`mechanize`][gradtx.contrib.mechanize] are
exported from `gradtx.contrib` (as in optax);
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
from gradtx.base import GradientTransformation, OptState, Updates, describe
from gradtx.numerics import safe_increment, tree_zeros_like
from gradtx.wrappers.protocol import with_extra_args_support

__all__ = [
    "COCOBState",
    "DoGState",
    "DoWGState",
    "MechanicState",
    "mechanize",
    "scale_by_cocob",
    "scale_by_dog",
    "scale_by_dowg",
]

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


def vdot(x: Any, y: Any) -> jax.Array:
    """`sum_i <x_i, y_i>` over the leaves in optax's order (0 + v_1 + v_2 + ...)."""

    def leaf(a: Any, b: Any) -> jax.Array:
        a, b = jnp.asarray(a), jnp.asarray(b)
        if jnp.issubdtype(a.dtype, jnp.complexfloating):
            a = jnp.conj(a)
        return jnp.tensordot(a, b, a.ndim)

    return jax.tree.reduce(operator.add, jax.tree.map(leaf, x, y), initializer=0)


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
    r"""State of `scale_by_dowg` (optax's `DoWGState`).

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
    r"""State of [`scale_by_cocob`][gradtx.contrib.scale_by_cocob] (optax's `COCOBState`).

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


# --------------------------------------------------------------------------------------------
# Mechanic
# --------------------------------------------------------------------------------------------


class MechanicState(NamedTuple):
    """State of [`mechanize`][gradtx.contrib.mechanize] (optax's `MechanicState`).

    `base_optimizer_state`: the wrapped optimizer's state; `count`: the step count (int32);
    `r`, `m`, `v`, `s`: the per-beta rewards, maximal |h|, second moments and scales (shape
    `(num_betas,)`, params' dtype); `x0`: the reference params (the params of the first update).
    """

    base_optimizer_state: OptState
    count: jax.typing.ArrayLike  # type: ignore[assignment]  # optax's field name (shadows tuple.count)
    r: jax.typing.ArrayLike
    m: jax.typing.ArrayLike
    v: jax.typing.ArrayLike
    s: jax.typing.ArrayLike
    x0: Updates


@describe
def mechanize(
    base_optimizer: GradientTransformation,
    weight_decay: jax.typing.ArrayLike = 1e-2,
    eps: jax.typing.ArrayLike = 1e-8,
    s_init: jax.typing.ArrayLike = 1e-6,
    num_betas: int = 6,
) -> GradientTransformation:
    r"""Mechanic: learn a global scale $S$ of a base optimizer's steps (learning-rate tuning).

    The base optimizer's updates $\Delta_t$ are accumulated into a direction
    $\delta_t = \delta_{t-1} + \Delta_t$ from the reference $x_0$, and the params are set to
    $x_{t+1} = x_0 + S_{t+1}\, \delta_t$, where $S = \sum_i s_i$ is a sum of coin-betting
    scales over `num_betas` decays $\beta_i = 1 - 10^{-i}$. With
    $\tilde g_t = g_t + \lambda\, S_t \frac{\|g_t\|}{\|x_t\| + \epsilon}\, x_t$ and
    $h_t = \langle \tilde g_t, \delta_{t-1} \rangle$:

    $$m_i \leftarrow \max(\beta_i m_i, |h_t| + \epsilon),\qquad
    v_i \leftarrow \beta_i^2 v_i + h_t^2,\qquad
    r_i \leftarrow \beta_i r_i + \operatorname{clip}(h_t, -m_i^{old}, m_i^{old})\, s_i,$$

    $$s_i \leftarrow \frac{\frac{s_{init}}{n}\, m_i + \max(r_i, 0)}{\sqrt{v_i} + \epsilon},$$

    with $\lambda$ = `weight_decay` and $n$ = `num_betas`. The returned update is
    $x_{t+1} - x_t$. It equals `optax.contrib.mechanize`.

    Args:
        base_optimizer: the optimizer whose steps are scaled (a `GradientTransformation`,
            with its own learning rate, typically 1.0 or a schedule shape).
        weight_decay: $\lambda$, default 1e-2, >= 0.
        eps: default 1e-8, >= 0.
        s_init: the initial total scale $\sum_i s_i$ / n each, default 1e-6, > 0.
        num_betas: $n$, the number of decays, default 6, an integer >= 1.

    Returns:
        A `GradientTransformation` whose `update` needs `params` (extra keyword arguments go to
        the base optimizer); state [`MechanicState`][gradtx.contrib.MechanicState].

    References:
        Cutkosky, Defazio & Mehta, *Mechanic: A Learning Rate Tuner*, NeurIPS 2023
        (arXiv:2306.00144).
    """
    owner = "mechanize"
    if not (hasattr(base_optimizer, "init") and hasattr(base_optimizer, "update")):
        raise TypeError(
            f"{owner}: base_optimizer must be a GradientTransformation, got {type(base_optimizer).__name__}"
        )
    _v.check_real(owner, "weight_decay", weight_decay, low=0.0)
    _v.check_real(owner, "eps", eps, low=0.0)
    _v.check_real(owner, "s_init", s_init, low=0.0, low_inclusive=False)
    _v.check_int(owner, "num_betas", num_betas, low=1)
    base = with_extra_args_support(base_optimizer)

    def init(params):
        dtype = lowest_dtype(params)
        return MechanicState(
            base_optimizer_state=base.init(params),
            count=jnp.zeros([], jnp.int32),
            r=jnp.zeros([num_betas], dtype=dtype),
            m=jnp.zeros([num_betas], dtype=dtype),
            v=jnp.zeros([num_betas], dtype=dtype),
            s=jnp.ones([num_betas], dtype=dtype) * s_init,
            x0=params,
        )

    def update(updates, state, params=None, **extra_args):
        params_required(owner, params)
        count = safe_increment(state.count)
        base_updates, base_state = base.update(updates, state.base_optimizer_state, params, **extra_args)
        x0 = jax.lax.cond(state.count == 0, lambda: params, lambda: state.x0)
        total = jnp.sum(state.s)
        g_norm = jnp.sqrt(_sq_norm(updates))
        x_norm = jnp.sqrt(_sq_norm(params))
        decayed = jax.tree.map(lambda g, x: g + weight_decay * total * g_norm / (x_norm + eps) * x, updates, params)
        delta_prev = jax.tree.map(lambda x, x0_: (x0_ - x) / (total + eps), params, x0)
        delta = jax.tree.map(lambda d, u: d - u, delta_prev, base_updates)
        h = vdot(decayed, delta_prev)
        clipped = jax.lax.clamp(-state.m, jnp.ones_like(state.m) * h, state.m)
        betas = jnp.array([1.0 - 0.1**i for i in range(1, num_betas + 1)], dtype=state.s.dtype)
        m = jnp.maximum(betas * state.m, jnp.abs(h) + eps)
        v = (betas**2) * state.v + h**2
        r = betas * state.r + clipped * state.s
        wealth = (s_init / num_betas) * m + jnp.maximum(0.0, r)
        s = wealth / (jnp.sqrt(v) + eps)
        new_params = jax.tree.map(lambda x0_, d: x0_ - jnp.sum(s) * d, x0, delta)
        new_updates = jax.tree.map(lambda new, old: new - old, new_params, params)
        return new_updates, MechanicState(base_state, count, r, m, v, s, x0)

    return GradientTransformation(init, update)
