r"""Escaping strict saddle points: negative-curvature steps and perturbed gradients.

At a strict saddle point $\theta$ the gradient vanishes but the Hessian has a negative
eigenvalue, so plain gradient descent started there (or arriving there exactly) never moves.
Two remedies are provided as chainable transformations, to be placed *before* the usual descent
step (`sgd`, `scale(-lr)`, ...):

* [`saddle_escape`][gradtx.second_order.saddle_escape] looks for a direction of negative
  curvature with Lanczos on Hessian-vector products whenever the gradient is small, and replaces
  the gradient by a step along it (second-order, deterministic);
* [`perturbed_gradient`][gradtx.second_order.perturbed_gradient] adds a random perturbation from a
  ball when the gradient is small (first-order, randomized), as in perturbed gradient descent.

References:
    Nesterov & Polyak, *Cubic regularization of Newton method and its global performance*,
    Mathematical Programming 108, 2006.
    Dauphin et al., *Identifying and attacking the saddle point problem in high-dimensional
    non-convex optimization*, NeurIPS 2014.
    Jin, Ge, Netrapalli, Kakade & Jordan, *How to escape saddle points efficiently*, ICML 2017.
"""

import numbers
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from gradtx import _validation as _v
from gradtx.base import GradientTransformation, describe
from gradtx.curvature import hessian_operator, operator_eigsh
from gradtx.numerics import global_norm, safe_increment

__all__ = [
    "PerturbedGradientState",
    "SaddleEscapeState",
    "perturbed_gradient",
    "saddle_escape",
]


class SaddleEscapeState(NamedTuple):
    """State of [`saddle_escape`][gradtx.second_order.saddle_escape].

    Attributes:
        count: number of updates done (int32).
        key: PRNG key for the next Lanczos start vector.
        escapes: number of updates that were replaced by a negative-curvature step (int32).
        eigen_solves: number of Lanczos eigen-solves run, i.e. of updates whose gradient norm was
            below `grad_tol` (int32).
        min_eigenvalue: the smallest Hessian eigenvalue found by the latest solve (float32; NaN
            until the first solve).
    """

    count: jax.Array  # type: ignore[assignment]  # optax's field name (shadows tuple.count)
    key: jax.Array
    escapes: jax.Array
    eigen_solves: jax.Array
    min_eigenvalue: jax.Array


class PerturbedGradientState(NamedTuple):
    """State of [`perturbed_gradient`][gradtx.second_order.perturbed_gradient].

    Attributes:
        count: number of updates done (int32).
        key: PRNG key for the next perturbation.
        steps_since_perturbation: updates since the latest perturbation (int32, saturating).
        perturbations: number of perturbations added (int32).
    """

    count: jax.Array  # type: ignore[assignment]  # optax's field name (shadows tuple.count)
    key: jax.Array
    steps_since_perturbation: jax.Array
    perturbations: jax.Array


def _as_key(owner: str, key: Any) -> jax.Array:
    """A typed PRNG key from None (seed 0), an integer seed, a typed key or a raw uint32 key."""
    if key is None:
        return jax.random.key(0)
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if key.shape != ():
            raise ValueError(f"{owner}: key must be a single PRNG key, got a key array of shape {key.shape}")
        return key
    if isinstance(key, (jax.Array, np.ndarray)) and key.dtype == np.uint32 and key.ndim == 1:
        return jax.random.wrap_key_data(jnp.asarray(key))
    if isinstance(key, (numbers.Integral, np.integer)) and not isinstance(key, bool):
        return jax.random.key(int(key))
    raise TypeError(
        f"{owner}: key must be None, an integer seed, a jax.random.key or a raw uint32 key, got "
        f"{type(key).__name__}: {key!r}"
    )


@describe
def saddle_escape(
    grad_tol: float = 1e-3,
    curvature_tol: float = 1e-3,
    step_size: float = 1.0,
    num_iters: int = 20,
    key: jax.Array | int | None = None,
) -> GradientTransformation:
    r"""Replace a vanishing gradient by a step along a direction of negative curvature.

    With $g$ the incoming gradient (the gradient of `value_fn` at the params $\theta$):

    * if $\|g\| \ge$ `grad_tol`, the update is $g$ itself, unchanged (no Hessian work is done:
      the eigen-solve sits in a `lax.cond` branch);
    * otherwise the smallest eigenpair $(\lambda_{\min}, v)$, $\|v\| = 1$, of the Hessian
      $\nabla^2 f(\theta)$ is estimated with `num_iters` Lanczos steps on Hessian-vector products
      ([`operator_eigsh`][gradtx.curvature.operator_eigsh] with `which="SA"` on
      [`hessian_operator`][gradtx.curvature.hessian_operator]); if $\lambda_{\min} <$
      `-curvature_tol` (a strict saddle, or a maximum), the update becomes

        $$u = -\,\alpha\, s\, v, \qquad \alpha = \texttt{step\_size},$$

        where the sign $s \in \{+1, -1\}$ is chosen so that $f(\theta + \alpha s v) \le
        f(\theta - \alpha s v)$ ($s = +1$ on a tie). Otherwise (a local minimum, or flat) $g$
        is passed on unchanged.

    The next transformation in the chain turns $u$ into a descent step as it would a gradient,
    so `chain(saddle_escape(...), sgd(lr))` moves the params by $-\eta u = \eta\,\alpha\, s\, v$:
    a distance $\eta\alpha$ along the negative-curvature direction, towards the lower side. Away
    from saddles the chain is exactly `sgd(lr)`.

    The objective is passed to `update` as the extra keyword argument `value_fn` (a function of
    the params alone; bind the batch with a closure), and the params are required:
    `tx.update(grads, state, params, value_fn=lambda p: loss(p, batch))`. Call the update
    inside `jax.jit`: outside it, the Lanczos code is recompiled at every call.

    Args:
        grad_tol: gradient-norm threshold below which curvature is examined, `> 0`.
            Default `1e-3`.
        curvature_tol: an escape is made only when $\lambda_{\min} < -$`curvature_tol`, `>= 0`.
            Default `1e-3`.
        step_size: length $\alpha$ of the escape vector $u$ (the params move by
            `learning_rate × step_size`), `> 0`. Default `1.0`.
        num_iters: Lanczos steps (Hessian-vector products) per eigen-solve, an int `>= 1`,
            clipped to the number of parameters. Default 20.
        key: PRNG key for the Lanczos start vectors: None (seed 0), an int seed, a
            `jax.random.key` or a raw uint32 key. Default None.

    Returns:
        A `GradientTransformation` whose state is a
        [`SaddleEscapeState`][gradtx.second_order.SaddleEscapeState].

    References:
        Nesterov & Polyak, *Cubic regularization of Newton method and its global performance*,
        Math. Programming 108, 2006 (negative-curvature steps at approximate saddles).
        Dauphin et al., *Identifying and attacking the saddle point problem in high-dimensional
        non-convex optimization*, NeurIPS 2014.

    Example:
        >>> import jax, jax.numpy as jnp, gradtx
        >>> from gradtx.second_order import saddle_escape
        >>> f = lambda p: p[0] ** 2 - p[1] ** 2 + p[1] ** 4 / 4
        >>> tx = gradtx.chain(saddle_escape(step_size=1.0), gradtx.sgd(0.1))
        >>> p = jnp.zeros(2)  # exactly at the saddle
        >>> u, state = tx.update(jax.grad(f)(p), tx.init(p), p, value_fn=f)
        >>> [round(abs(float(x)), 4) for x in u]
        [0.0, 0.1]
    """
    owner = "saddle_escape"
    _v.check_real(owner, "grad_tol", grad_tol, low=0.0, low_inclusive=False)
    _v.check_real(owner, "curvature_tol", curvature_tol, low=0.0)
    _v.check_real(owner, "step_size", step_size, low=0.0, low_inclusive=False)
    _v.check_int(owner, "num_iters", num_iters, low=1)
    if _v.is_traced(num_iters):
        raise TypeError(f"{owner}: num_iters must be a static Python int (it sets array shapes)")
    init_key = _as_key(owner, key)

    def init(params):
        del params
        zero = jnp.zeros((), jnp.int32)
        return SaddleEscapeState(
            count=zero,
            key=init_key,
            escapes=zero,
            eigen_solves=zero,
            min_eigenvalue=jnp.full((), jnp.nan, jnp.float32),
        )

    def update(updates, state, params=None, *, value_fn: Callable[[Any], Any] | None = None, **extra_args):
        del extra_args
        value_fn = _v.check_params_and_value_fn(owner, params, value_fn)
        next_key, solve_key = jax.random.split(state.key)
        small = global_norm(updates) < grad_tol

        def solve(_):
            matvec = hessian_operator(value_fn, params)
            values, vectors = operator_eigsh(matvec, params, k=1, which="SA", num_iters=num_iters, key=solve_key)
            lam = values[0]
            v = jax.tree.map(lambda x: x[0], vectors)
            f_plus = value_fn(jax.tree.map(lambda p, d: p + step_size * d, params, v))
            f_minus = value_fn(jax.tree.map(lambda p, d: p - step_size * d, params, v))
            sign = jnp.where(f_minus < f_plus, -1.0, 1.0)
            escape = lam < -curvature_tol
            new = jax.tree.map(
                lambda g, d: jnp.where(escape, (-step_size * sign * d).astype(g.dtype), g), updates, v
            )
            return new, lam.astype(jnp.float32), escape

        def skip(_):
            return updates, state.min_eigenvalue, jnp.zeros((), bool)

        new_updates, lam, escaped = lax.cond(small, solve, skip, None)
        new_state = SaddleEscapeState(
            count=safe_increment(state.count),
            key=next_key,
            escapes=jnp.where(escaped, safe_increment(state.escapes), state.escapes),
            eigen_solves=jnp.where(small, safe_increment(state.eigen_solves), state.eigen_solves),
            min_eigenvalue=lam,
        )
        return new_updates, new_state

    return GradientTransformation(init, update)


def _ball_sample(key: jax.Array, tree: Any, radius: Any) -> Any:
    """A sample from the uniform distribution on the ball of `radius` in the space of `tree`."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    keys = jax.random.split(key, len(leaves) + 1)
    normals = [
        jax.random.normal(k, jnp.shape(x), jnp.promote_types(jnp.result_type(x), jnp.float32))
        for k, x in zip(keys[:-1], leaves)
    ]
    n = sum(int(np.size(x)) for x in leaves)
    norm = global_norm(normals)
    # radius of a uniform point in an n-ball: R·U^(1/n)
    r = radius * jax.random.uniform(keys[-1], (), jnp.float32) ** (1.0 / max(n, 1))
    scale = r / jnp.maximum(norm, jnp.finfo(jnp.float32).tiny)
    return jax.tree_util.tree_unflatten(
        treedef, [(z * scale.astype(z.dtype)).astype(jnp.result_type(x)) for z, x in zip(normals, leaves)]
    )


@describe
def perturbed_gradient(
    grad_tol: float = 1e-3,
    radius: float = 1e-2,
    key: jax.Array | int | None = None,
    t_thres: int = 10,
) -> GradientTransformation:
    r"""Add a random perturbation from a ball when the gradient is small (perturbed GD).

    With $g_t$ the incoming gradient and $\tau$ the number of updates since the latest
    perturbation:

    $$u_t = \begin{cases} g_t + \xi_t, & \|g_t\| \le \texttt{grad\_tol} \text{ and } \tau \ge
    t_\text{thres},\\ g_t & \text{otherwise},\end{cases}
    \qquad \xi_t \sim \mathcal U\big(\mathbb B(0, r)\big),$$

    $\xi_t$ uniform on the Euclidean ball of radius $r$ = `radius` in the space of all the
    params. So two perturbations are at least `t_thres + 1` updates apart, as in Jin et al.'s
    condition $t - t_\text{noise} > t_\text{thres}$; the first small gradient is perturbed at
    once. Placed before a descent step with learning rate $\eta$ (`chain(perturbed_gradient(...),
    sgd(η))`), the params move by $-\eta(g_t + \xi_t)$: the perturbation enters through the
    gradient, so Jin et al.'s displacement radius $r_\text{Jin}$ corresponds to
    `radius = r_Jin / η`. When no perturbation is made the gradient passes exactly unchanged.

    This first-order method needs no `value_fn`; it is provided for comparison with
    [`saddle_escape`][gradtx.second_order.saddle_escape].

    Args:
        grad_tol: the gradient-norm threshold $g_\text{thres}$, `>= 0`. Default `1e-3`.
        radius: radius $r$ of the perturbation ball (in gradient units), `> 0`. Default `1e-2`.
        key: PRNG key: None (seed 0), an int seed, a `jax.random.key` or a raw uint32 key.
            Default None.
        t_thres: minimum number of updates between two perturbations, an int `>= 0`.
            Default 10.

    Returns:
        A `GradientTransformation` whose state is a
        [`PerturbedGradientState`][gradtx.second_order.PerturbedGradientState].

    References:
        Jin, Ge, Netrapalli, Kakade & Jordan, *How to escape saddle points efficiently*, ICML
        2017 (Algorithm 2, perturbed gradient descent).
    """
    owner = "perturbed_gradient"
    _v.check_real(owner, "grad_tol", grad_tol, low=0.0)
    _v.check_real(owner, "radius", radius, low=0.0, low_inclusive=False)
    _v.check_int(owner, "t_thres", t_thres, low=0)
    init_key = _as_key(owner, key)

    def init(params):
        del params
        zero = jnp.zeros((), jnp.int32)
        return PerturbedGradientState(
            count=zero,
            key=init_key,
            steps_since_perturbation=jnp.asarray(t_thres, jnp.int32),
            perturbations=zero,
        )

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        next_key, noise_key = jax.random.split(state.key)
        perturb = (global_norm(updates) <= grad_tol) & (state.steps_since_perturbation >= t_thres)
        xi = _ball_sample(noise_key, updates, radius)
        new_updates = jax.tree.map(lambda g, x: jnp.where(perturb, g + x, g), updates, xi)
        new_state = PerturbedGradientState(
            count=safe_increment(state.count),
            key=next_key,
            steps_since_perturbation=jnp.where(
                perturb, jnp.zeros((), jnp.int32), safe_increment(state.steps_since_perturbation)
            ),
            perturbations=jnp.where(perturb, safe_increment(state.perturbations), state.perturbations),
        )
        return new_updates, new_state

    return GradientTransformation(init, update)
