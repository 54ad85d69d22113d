r"""Step sizes without a tuned learning rate: Polyak's step, Distance over Gradients, normalization.

These transformations set the size of the step from quantities seen during training: the
objective's value and the gradient norm (Polyak), the distance travelled from the initial params
(DoG), or the update's own norm (`normalize_by_update_norm`). Their numbers follow optax 0.2.8's
bit for bit for float32 inputs under `jax.jit`.

Norms are accumulated in at least float32 (see [`stat_dtype`][gradtx.numerics.stat_dtype]) and
every update is returned in its incoming dtype.
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradtx import _validation as _v
from gradtx.base import EmptyState, GradientTransformation, Updates, describe
from gradtx.numerics import abs_sq, cast, compute_dtype, float_updates, stat_dtype, tree_cast
from gradtx.transforms._moments import canonical_dtype, map_leaves

__all__ = [
    "ScaleByDistanceOverGradientsState",
    "normalize_by_update_norm",
    "scale_by_distance_over_gradients",
    "scale_by_polyak",
]

# optax compares the denominator with float64's machine epsilon (`jnp.finfo(float).eps`)
_TINY = float(np.finfo(np.float64).eps)

_POLYAK_VARIANTS = ("sps", "sps+")


def _empty_init(params: Any) -> EmptyState:
    del params
    return EmptyState()


def _sum_of_squares(tree: Any) -> jax.Array:
    """`sum_i ||x_i||^2` over the leaves in order (complex leaves by modulus), in >= float32."""
    leaves = jax.tree.leaves(tree)
    if not leaves:
        return jnp.zeros((), jnp.float32)
    total = 0
    for x in leaves:
        total = total + jnp.sum(abs_sq(x, stat_dtype(x)))
    return jnp.asarray(total)


# --------------------------------------------------------------------------------------------
# Polyak step size
# --------------------------------------------------------------------------------------------


def check_polyak(owner: str, f_min: Any, max_learning_rate: Any, eps: Any, variant: Any) -> None:
    """The checks of [`scale_by_polyak`][gradtx.scale_by_polyak], naming `owner`."""
    _v.check_real(owner, "f_min", f_min)
    _v.check_real(owner, "max_learning_rate", max_learning_rate, low=0.0)
    _v.check_real(owner, "eps", eps, low=0.0)
    if variant not in _POLYAK_VARIANTS:
        raise ValueError(f"{owner}: variant must be 'sps' or 'sps+', got {variant!r}")


def _check_value(owner: str, value: Any) -> None:
    if value is None:
        raise ValueError(
            f"{owner}.update: the objective's value at the current params is required as the "
            f"keyword argument value; call update(grads, state, params, value=loss) (for example "
            f"with loss, grads = jax.value_and_grad(f)(params))."
        )
    if jnp.shape(value) != ():
        raise TypeError(
            f"{owner}.update: value must be a scalar (the objective's value), got shape {jnp.shape(value)}"
        )
    dtype = jnp.result_type(value)
    if not jnp.issubdtype(dtype, jnp.number) or jnp.issubdtype(dtype, jnp.complexfloating):
        raise TypeError(f"{owner}.update: value must be a real number, got dtype {dtype}")


@describe
def scale_by_polyak(
    f_min: float = 0.0,
    max_learning_rate: float = 1.0,
    eps: float = 0.0,
    variant: str = "sps",
) -> GradientTransformation:
    r"""Scale the updates by Polyak's step size, computed from the objective's value.

    With $f$ the value passed as `update(..., value=f)`, $f^\star$ = `f_min` and $g$ the
    incoming updates (all leaves together):

    $$\gamma = \min\left(\frac{f - f^\star}{\|g\|_2^2 + \epsilon},\ \gamma_{max}\right),
    \qquad u = \gamma\, g,$$

    and $\gamma = 0$ when $\|g\|_2^2 + \epsilon \le 2.2\cdot 10^{-16}$ (float64's machine
    epsilon, as optax). `variant="sps+"` replaces the gap $f - f^\star$ by $\max(f - f^\star, 0)$,
    so that the step is never reversed when $f$ falls below an overestimated $f^\star$.

    The update is a *descent* direction only if $g$ already points downhill: use it after a
    negative scaling, as [`polyak_sgd`][gradtx.polyak_sgd] does
    (`chain(sgd(scaling), scale_by_polyak(...))`).

    Args:
        f_min: $f^\star$, a lower bound on (a guess of) the objective's minimum, default 0.0
            (right for models that interpolate their data); any finite real number.
        max_learning_rate: the cap $\gamma_{max}$, default 1.0, >= 0.
        eps: added to $\|g\|_2^2$ in the denominator, default 0.0, >= 0.
        variant: `"sps"` (default) or `"sps+"` (non-negative gap).

    `update` needs the keyword argument `value` (a real scalar); without it a `ValueError`
    says so (optax raises a `TypeError` for the missing argument). Inside
    [`chain`][gradtx.chain] (gradtx's or optax's) `value=` reaches this member.

    Returns:
        A stateless `GradientTransformation` (state `EmptyState()`).

    References:
        Polyak, *Introduction to Optimization*, 1987.
        Loizou, Vaswani, Laradji & Lacoste-Julien, *Stochastic Polyak Step-size for SGD: An
        Adaptive Learning Rate for Fast Convergence*, AISTATS 2021.
        Garrigos, Gower & Schaipp, *Function Value Learning: Adaptive Learning Rates Based on the
        Polyak Stepsize and Function Splitting in ERM*, 2023 (the `sps+` variant).

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.scale_by_polyak()
        >>> g = jnp.array([2.0, 0.0])
        >>> tx.update(g, tx.init(g), value=1.0)[0]  # gap 1 over |g|^2 = 4: step 0.25
        Array([0.5, 0. ], dtype=float32)
    """
    owner = "scale_by_polyak"
    check_polyak(owner, f_min, max_learning_rate, eps, variant)

    def update(updates, state, params=None, *, value=None, **extra_args):
        del params, extra_args
        _check_value(owner, value)
        updates = float_updates(updates)
        sq_norm = _sum_of_squares(updates)
        gap = jnp.asarray(value - f_min).astype(sq_norm.dtype)
        if variant == "sps+":
            gap = jnp.maximum(gap, 0)
        denom = sq_norm + eps
        step = jnp.where(
            denom <= _TINY, jnp.zeros((), sq_norm.dtype), jnp.minimum(gap / denom, max_learning_rate)
        )

        def leaf(g):
            cdt = compute_dtype(g.dtype, step.dtype)
            return cast(cast(step, cdt) * cast(g, cdt), g.dtype)

        return jax.tree.map(leaf, updates), state

    return GradientTransformation(_empty_init, update)


# --------------------------------------------------------------------------------------------
# Distance over gradients (DoG)
# --------------------------------------------------------------------------------------------


class ScaleByDistanceOverGradientsState(NamedTuple):
    """State of [`scale_by_distance_over_gradients`][gradtx.scale_by_distance_over_gradients].

    Per params leaf: `max_dist` (a scalar) the largest distance from the initial params seen so
    far, `grad_sum_of_squares` (shape `(1,)`, as optax) the running sum of the squared gradient
    norms, and `init_params` the initial params in `param_dtype`.
    """

    max_dist: Updates
    grad_sum_of_squares: Updates
    init_params: Updates


def _l2(x: jax.Array, dtype: Any) -> jax.Array:
    return jnp.sqrt(jnp.sum(abs_sq(x, dtype)))


@describe
def scale_by_distance_over_gradients(
    reps_rel: float = 1e-6,
    eps: float = 1e-8,
    param_dtype: Any = jnp.float32,
    global_scale: float = 1.0,
) -> GradientTransformation:
    r"""Scale each leaf by DoG's step size: distance travelled over root-sum of squared gradients.

    Layer-wise DoG (LDoG): for every params leaf $x$ separately, with $x_0$ its initial value
    and $g_s$ its gradients,

    $$r_t = \max\left(r_\epsilon,\ \max_{s \le t} \|x_s - x_0\|_2\right),\qquad
    r_\epsilon = \rho\,(1 + \|x_0\|_2),$$
    $$G_t = \sum_{s \le t} \|g_s\|_2^2,\qquad
    u_t = c\, \frac{r_t}{\sqrt{G_t + \epsilon}}\, g_t,$$

    with $\rho$ = `reps_rel` and $c$ = `global_scale`. The distance uses the params given to
    this `update` (before the update is applied). Negate the result (`global_scale=-1.0`, or a
    following `scale(-1.0)`) to descend; the authors recommend averaging the iterates.

    Shapes. A scalar params leaf gets a scalar update (optax's update has shape `(1,)` there,
    which `apply_updates` turns into a `(1,)` param); every other number equals optax's.

    Args:
        reps_rel: $\rho$, the relative size of the first step, default 1e-6 (the paper suggests
            1e-4 for models with batch normalization), > 0.
        eps: added under the square root, default 1e-8, >= 0.
        param_dtype: dtype in which the initial params are kept, default `jnp.float32`; None
            keeps each leaf's dtype. A floating dtype, or a complex one for complex params.
        global_scale: the factor $c$, default 1.0 (typically 1.0 or -1.0); any finite real.

    `update` needs `params`. The distances and sums of squares are kept in at least float32.

    Returns:
        A `GradientTransformation` with state
        [`ScaleByDistanceOverGradientsState`][gradtx.transforms.step_size_free.ScaleByDistanceOverGradientsState]`(max_dist, grad_sum_of_squares, init_params)`.

    References:
        Ivgi, Hinder & Carmon, *DoG is SGD's Best Friend: A Parameter-Free Dynamic Step Size
        Schedule*, ICML 2023 (arXiv:2302.12022).
    """
    owner = "scale_by_distance_over_gradients"
    _v.check_real(owner, "reps_rel", reps_rel, low=0.0, low_inclusive=False)
    _v.check_real(owner, "eps", eps, low=0.0)
    _v.check_dtype(owner, "param_dtype", param_dtype, allow_complex=True)
    _v.check_real(owner, "global_scale", global_scale)
    param_dtype = canonical_dtype(param_dtype)

    def init(params):
        _v.check_state_params(owner, params, param_dtype, "param_dtype")
        return ScaleByDistanceOverGradientsState(
            max_dist=jax.tree.map(lambda x: reps_rel * (1 + _l2(x, stat_dtype(x))), params),
            grad_sum_of_squares=jax.tree.map(lambda x: jnp.zeros(1, stat_dtype(x)), params),
            init_params=tree_cast(params, param_dtype),
        )

    def update(updates, state, params=None, **extra_args):
        del extra_args
        if params is None:
            raise ValueError(
                f"{owner}.update: params are required (the step size uses the distance from the "
                f"initial params); call update(updates, state, params)."
            )

        def leaf(g, x, d, sos, x0):
            dist_dtype = compute_dtype(d.dtype, jnp.result_type(x), x0.dtype)
            diff = cast(jnp.asarray(x), dist_dtype) - cast(x0, dist_dtype)
            new_d = jnp.maximum(d, _l2(diff, stat_dtype(diff)))
            new_sos = sos + jnp.sum(abs_sq(g, sos.dtype))
            eta = jnp.reshape(global_scale * (new_d / jnp.sqrt(new_sos + eps)), ())
            cdt = compute_dtype(g.dtype, eta.dtype)
            u = cast(eta, cdt) * cast(g, cdt)
            return cast(u, g.dtype), cast(new_d, d.dtype), cast(new_sos, sos.dtype)

        new_updates, max_dist, sos = map_leaves(
            leaf, 3, updates, params, state.max_dist, state.grad_sum_of_squares, state.init_params
        )
        return new_updates, ScaleByDistanceOverGradientsState(
            max_dist=max_dist, grad_sum_of_squares=sos, init_params=state.init_params
        )

    return GradientTransformation(init, update)


# --------------------------------------------------------------------------------------------
# Normalization by the update's norm
# --------------------------------------------------------------------------------------------


@describe
def normalize_by_update_norm(scale_factor: float = 1.0, eps: float = 1e-6) -> GradientTransformation:
    r"""Divide the updates by their global L2 norm: a step of length about `scale_factor`.

    $$u = s\, \frac{g}{\|g\|_2 + \epsilon},\qquad \|g\|_2 = \sqrt{\textstyle\sum_i \|g_i\|_2^2}$$

    (computed as optax does, `g / ((||g|| + eps) / s)`). With `eps = 0` an all-zero update is
    returned as zeros (optax returns NaN there); otherwise the numbers are optax's.

    Args:
        scale_factor: $s$, the length of the step, default 1.0; any finite nonzero real
            (negative to descend, e.g. -0.1).
        eps: added to the norm, default 1e-6, >= 0.

    Returns:
        A stateless `GradientTransformation` (state `EmptyState()`).

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.normalize_by_update_norm(scale_factor=-1.0, eps=0.0)
        >>> tx.update(jnp.array([3.0, 4.0]), tx.init(None))[0]
        Array([-0.6, -0.8], dtype=float32)
    """
    owner = "normalize_by_update_norm"
    _v.check_real(owner, "scale_factor", scale_factor)
    if not _v.is_traced(scale_factor) and scale_factor == 0:
        raise ValueError(
            f"{owner}: scale_factor must be nonzero (0 would zero every update), got {scale_factor!r}"
        )
    _v.check_real(owner, "eps", eps, low=0.0)
    guard = _v.is_traced(eps) or eps == 0

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        updates = float_updates(updates)
        g_norm = (jnp.sqrt(_sum_of_squares(updates)) + eps) / scale_factor
        if guard:
            # only the divisor is made safe: a select around the quotient would change XLA's
            # rewrites of a following learning-rate product (and optax's bits)
            g_norm = jnp.where(g_norm == 0, jnp.ones_like(g_norm), g_norm)

        def leaf(g):
            cdt = compute_dtype(g.dtype, g_norm.dtype)
            return cast(cast(g, cdt) / cast(g_norm, cdt), g.dtype)

        return jax.tree.map(leaf, updates), state

    return GradientTransformation(_empty_init, update)
