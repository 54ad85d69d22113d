r"""Sharpness during training: the top Hessian eigenvalue, tracked by warm-started Lanczos.

The *sharpness* of the loss $f$ at the params $\theta$ is the largest Hessian eigenvalue
$\lambda_{\max}(\nabla^2 f(\theta))$. Gradient descent with learning rate $\eta$ on a quadratic
is stable only while $\lambda_{\max} < 2/\eta$; Cohen et al. (2021) found that full-batch
gradient descent on neural networks drives the sharpness up (*progressive sharpening*) until it
reaches $2/\eta$ and then hovers there (*the edge of stability*), while the loss keeps
decreasing non-monotonically. [`track_sharpness`][gradtx.second_order.track_sharpness] measures
it during training, inside the optimizer chain, at a cost only on the steps it measures.

References:
    Cohen, Kaur, Li, Kolter & Talwalkar, *Gradient descent on neural networks typically occurs
    at the edge of stability*, ICLR 2021.
    Jastrzębski et al., *The break-even point on optimization trajectories of deep neural
    networks*, ICLR 2020.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.flatten_util import ravel_pytree

from gradtx import _validation as _v
from gradtx.base import GradientTransformation, describe
from gradtx.curvature import hessian_operator, lanczos_tridiag, ritz_residuals, tridiagonal_eigh
from gradtx.curvature.operators import unraveler
from gradtx.numerics import safe_increment
from gradtx.second_order.saddle import _as_key

__all__ = ["SharpnessState", "track_sharpness"]

_INT32_MAX = jnp.iinfo(jnp.int32).max


class SharpnessState(NamedTuple):
    """State of [`track_sharpness`][gradtx.second_order.track_sharpness].

    Read a field anywhere in a chain's state with `gradtx.tree.get(state, "sharpness")`.

    Attributes:
        count: number of updates done (int32).
        key: PRNG key for the first (cold) Lanczos start vector.
        sharpness: the latest estimate of $\\lambda_{\\max}$ (float32; NaN until the first
            measurement).
        eigenvector: its unit Ritz vector, a pytree like the params (float32 or wider; zero until
            the first measurement); the start vector of the next measurement.
        step: the update count at which `sharpness` was measured (int32; -1 before).
        edge_of_stability: $\\eta\\,\\lambda_{\\max} / 2$ with $\\eta$ the learning rate at that
            step (float32; NaN when no learning rate was given). It reaches 1 at the stability
            limit $\\lambda_{\\max} = 2/\\eta$ of gradient descent.
        products: Hessian-vector products spent on measurements so far (int32, saturating).
    """

    count: jax.Array  # type: ignore[assignment]  # optax's field name (shadows tuple.count)
    key: jax.Array
    sharpness: jax.Array
    eigenvector: Any
    step: jax.Array
    edge_of_stability: jax.Array
    products: jax.Array


def _float_dtype(x: Any) -> Any:
    return jnp.promote_types(jnp.result_type(x), jnp.float32)


@describe
def track_sharpness(
    every: int = 100,
    num_iters: int = 20,
    learning_rate: float | Callable[[jax.Array], Any] | None = None,
    key: jax.Array | int | None = None,
    tol: float | None = None,
    warm_iters: int = 6,
) -> GradientTransformation:
    r"""Measure the top Hessian eigenvalue every `every` steps; pass the updates through unchanged.

    At every update whose count $t$ (0 for the first) is a multiple of `every`, the largest
    eigenvalue of the Hessian of `value_fn` at the current params is estimated with `num_iters`
    Lanczos steps ([`lanczos_tridiag`][gradtx.curvature.lanczos_tridiag] on
    [`hessian_operator`][gradtx.curvature.hessian_operator]): the largest Ritz value

    $$\lambda_{\max} \approx \theta_{\max}(T_m), \qquad T_m = Q_m^\top \nabla^2 f(\theta)\, Q_m,$$

    and its Ritz vector $v = Q_m s_{\max}$. The first measurement starts from a random vector;
    each later one is **warm-started** from the previous $v$ (`v0=`), which is close to the
    new top eigenvector when the params moved little, so far fewer steps reach the same accuracy.
    The state keeps `sharpness` $=\lambda_{\max}$, `eigenvector` $= v$, `step` $= t$ and, when
    `learning_rate` $\eta$ is given, `edge_of_stability` $= \eta(t)\,\lambda_{\max}/2$.

    **Early acceptance** (`tol` given): a warm-started measurement first runs only `warm_iters`
    Lanczos steps and computes the residual of its Ritz pair (one more product,
    [`ritz_residuals`][gradtx.curvature.ritz_residuals]); if
    $\\lVert \\nabla^2 f\\, v - \\theta v\\rVert \\le$ `tol` $\\cdot |\\theta|$ the pair is accepted
    ($\\theta$ is then within `tol`$\\,|\\theta|$ of an eigenvalue, in practice the top one the
    warm start points at), otherwise the full `num_iters` steps run from the new Ritz vector.
    When the top eigenvector moves little between measurements this costs `warm_iters + 1`
    products instead of `num_iters` (the first, cold, measurement always runs `num_iters`
    steps); the state's `products` counts what was spent. The residual certifies an eigenvalue,
    not that it is the largest: when the top eigenvalues cross between measurements (as they do
    at the edge of stability) an accepted estimate can be a neighbouring eigenvalue, a few percent
    low. Leave `tol=None` when every measurement must be the top one.

    The measurement sits in a `lax.cond` branch: on the other steps no Hessian work is done
    (under `jax.vmap` a `cond` becomes a `select` and both branches run). The updates are
    returned unchanged (the same arrays), so the chain's result is bit-for-bit that without it.

    The objective is the extra `update` keyword argument `value_fn`, a function of the params
    alone, as for [`saddle_escape`][gradtx.second_order.saddle_escape], and the params are
    required: `tx.update(grads, state, params, value_fn=lambda p: loss(p, batch))`. Call
    `update` inside `jax.jit`.

    Args:
        every: measure at the updates whose count is a multiple of `every`, an int `>= 1`.
            Default 100.
        num_iters: Lanczos steps (Hessian-vector products) per measurement, an int `>= 1`,
            clipped to the number of parameters. Default 20.
        learning_rate: the learning rate $\eta$ of the descent step, a number `> 0` or a
            schedule (a function of the update count), for `edge_of_stability`; None leaves
            it NaN. Default None.
        key: PRNG key of the first start vector: None (seed 0), an int seed, a
            `jax.random.key` or a raw uint32 key. Default None.
        tol: relative residual tolerance for early acceptance of a warm-started estimate, a
            number `> 0`, or None to always run `num_iters` steps. Default None.
        warm_iters: Lanczos steps of the first, warm-started try when `tol` is given, an int
            `1 <= warm_iters <= num_iters`. Default 6.

    Returns:
        A `GradientTransformation` whose state is a
        [`SharpnessState`][gradtx.second_order.SharpnessState].

    References:
        Cohen, Kaur, Li, Kolter & Talwalkar, *Gradient descent on neural networks typically
        occurs at the edge of stability*, ICLR 2021.
        Lanczos 1950; Golub & Van Loan, *Matrix Computations*, 4th ed., §10.1, 2013.

    Example:
        >>> import jax, jax.numpy as jnp, gradtx
        >>> from gradtx.second_order import track_sharpness
        >>> f = lambda p: 0.5 * (3.0 * p[0] ** 2 + p[1] ** 2)
        >>> tx = gradtx.chain(track_sharpness(every=10, num_iters=2, learning_rate=0.5), gradtx.sgd(0.5))
        >>> p = jnp.ones(2)
        >>> u, state = tx.update(jax.grad(f)(p), tx.init(p), p, value_fn=f)
        >>> round(float(gradtx.tree.get(state, "sharpness")), 4)
        3.0
        >>> round(float(gradtx.tree.get(state, "edge_of_stability")), 4)
        0.75
    """
    owner = "track_sharpness"
    _v.check_int(owner, "every", every, low=1)
    _v.check_int(owner, "num_iters", num_iters, low=1)
    if _v.is_traced(num_iters) or _v.is_traced(every):
        raise TypeError(f"{owner}: every and num_iters must be static Python ints")
    if learning_rate is not None:
        _v.check_schedule_or_real(owner, "learning_rate", learning_rate, low=0.0, low_inclusive=False)
    if tol is not None:
        _v.check_real(owner, "tol", tol, low=0.0, low_inclusive=False)
    _v.check_int(owner, "warm_iters", warm_iters, low=1)
    if tol is not None and warm_iters > num_iters:
        raise ValueError(f"{owner}: warm_iters must be <= num_iters, got warm_iters={warm_iters} > num_iters={num_iters}")
    init_key = _as_key(owner, key)

    def init(params: Any) -> SharpnessState:
        leaves = jax.tree.leaves(params)
        if not leaves or not all(jnp.issubdtype(jnp.result_type(x), jnp.floating) for x in leaves):
            raise TypeError(f"{owner}.init: params must be a non-empty pytree of floating-point arrays")
        return SharpnessState(
            count=jnp.zeros((), jnp.int32),
            key=init_key,
            sharpness=jnp.full((), jnp.nan, jnp.float32),
            eigenvector=jax.tree.map(lambda x: jnp.zeros(jnp.shape(x), _float_dtype(x)), params),
            step=jnp.full((), -1, jnp.int32),
            edge_of_stability=jnp.full((), jnp.nan, jnp.float32),
            products=jnp.zeros((), jnp.int32),
        )

    def update(updates, state, params=None, *, value_fn: Callable[[Any], Any] | None = None, **extra_args):
        del extra_args
        value_fn = _v.check_params_and_value_fn(owner, params, value_fn)
        measure = state.count % every == 0

        def solve(_):
            matvec = hessian_operator(value_fn, params)
            flat_prev, _ = ravel_pytree(state.eigenvector)
            n = flat_prev.shape[0]
            cold = jax.random.normal(state.key, (n,), flat_prev.dtype)
            warm = jnp.any(flat_prev != 0)
            v0 = jnp.where(warm, flat_prev, cold)
            unravel = unraveler(state.eigenvector)

            def top_pair(start, m):
                res = lanczos_tridiag(matvec, params, m, state.key, v0=unravel(start))
                theta, s = tridiagonal_eigh(res.alpha, res.beta)
                vec = jnp.matmul(s[:, -1], res.basis, precision=lax.Precision.HIGHEST)
                vec = vec / jnp.maximum(jnp.linalg.norm(vec), jnp.finfo(vec.dtype).tiny)
                return theta[-1].astype(jnp.float32), vec.astype(flat_prev.dtype), jnp.int32(res.alpha.shape[0])

            if tol is None:
                lam, vec, used = top_pair(v0, num_iters)
            else:

                def quick():
                    lam0, vec0, used0 = top_pair(v0, warm_iters)
                    v_tree = jax.tree.map(lambda x: x[None], unravel(vec0))
                    resid = ritz_residuals(matvec, params, lam0[None], v_tree)[0]
                    lam, vec, more = lax.cond(
                        resid <= tol * jnp.abs(lam0), lambda: (lam0, vec0, jnp.int32(0)), lambda: top_pair(vec0, num_iters)
                    )
                    return lam, vec, used0 + 1 + more

                # the first (cold) measurement goes straight to the full run
                lam, vec, used = lax.cond(warm, quick, lambda: top_pair(v0, num_iters))
            if learning_rate is None:
                eos = jnp.full((), jnp.nan, jnp.float32)
            else:
                lr = learning_rate(state.count) if callable(learning_rate) else learning_rate
                eos = (jnp.asarray(lr, jnp.float32) * lam / 2).astype(jnp.float32)
            return lam, unravel(vec), state.count, eos, used

        def skip(_):
            return state.sharpness, state.eigenvector, state.step, state.edge_of_stability, jnp.int32(0)

        lam, vec, step, eos, used = lax.cond(measure, solve, skip, None)
        new_state = SharpnessState(
            count=safe_increment(state.count),
            key=state.key,
            sharpness=lam,
            eigenvector=vec,
            step=step,
            edge_of_stability=eos,
            products=jnp.where(state.products > _INT32_MAX - used, _INT32_MAX, state.products + used),
        )
        return updates, new_state

    return GradientTransformation(init, update)
