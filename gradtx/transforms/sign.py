r"""Sign-based rescalings: Rprop's per-coordinate step sizes.

[`scale_by_rprop`][gradtx.scale_by_rprop] follows optax 0.2.8's numbers bit for bit for float32
inputs under `jax.jit`, including optax's one-step delay of the emitted update (see its
docstring). The plain sign, [`scale_by_sign`][gradtx.scale_by_sign], lives with the other
scalings.
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx import _validation as _v
from gradtx.base import GradientTransformation, Updates, describe
from gradtx.numerics import cast, compute_dtype, full_like_param, tree_zeros_like
from gradtx.transforms._moments import map_leaves

__all__ = ["ScaleByRpropState", "rprop_leaf", "scale_by_rprop"]


class ScaleByRpropState(NamedTuple):
    """State of [`scale_by_rprop`][gradtx.scale_by_rprop] (optax's layout).

    `step_sizes` holds each coordinate's current step size; `prev_updates` the step computed at
    the last update (`step · sign(g)`, or 0 where the gradient's sign flipped). Both are shaped
    and typed like the params.
    """

    step_sizes: Updates
    prev_updates: Updates


def rprop_leaf(
    g: jax.Array,
    step: jax.Array,
    prev: jax.Array,
    *,
    eta_minus: Any,
    eta_plus: Any,
    min_step_size: Any,
    max_step_size: Any,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One Rprop step on one leaf, with optax's arithmetic.

    Args:
        g: the gradient leaf.
        step: the current step sizes (kept in their own dtype).
        prev: the step computed at the previous update.
        eta_minus, eta_plus, min_step_size, max_step_size: Rprop's hyper-parameters.

    Returns:
        `(update, new_step, new_prev)`: the update is `prev` (zeroed where the sign flipped) in
        `g`'s dtype; `new_prev = new_step · sign(g)` (0 where the sign flipped) is what the next
        call returns.
    """
    cdt = compute_dtype(g.dtype, prev.dtype)
    # the sign comparison is optax's product g·prev (taken in at least float32)
    s = cast(g, cdt) * cast(prev, cdt)
    factor = jnp.where(s > 0, eta_plus, eta_minus)
    grown = jnp.clip(step * factor, min=min_step_size, max=max_step_size)
    new_step = jnp.where(s == 0, step, grown)
    flipped = s < 0
    new_prev = jnp.where(flipped, jnp.zeros_like(g), new_step * jnp.sign(g))
    update = jnp.where(flipped, jnp.zeros_like(prev), prev)
    return cast(update, g.dtype), cast(new_step, step.dtype), cast(new_prev, prev.dtype)


def _check_real_params(owner: str, params: Any) -> None:
    leaves, _ = jax.tree_util.tree_flatten_with_path(params)
    for path, leaf in leaves:
        if jnp.iscomplexobj(leaf):
            raise TypeError(
                f"{owner}.init: params{jax.tree_util.keystr(path)} is complex "
                f"({jnp.result_type(leaf)}); Rprop compares the signs of successive gradients, "
                f"which complex numbers do not have. Optimize the real and imaginary parts as "
                f"separate real leaves."
            )


@describe
def scale_by_rprop(
    learning_rate: float,
    eta_minus: float = 0.5,
    eta_plus: float = 1.2,
    min_step_size: float = 1e-6,
    max_step_size: float = 50.0,
) -> GradientTransformation:
    r"""Rescale updates by Rprop's per-coordinate step sizes (only the gradients' signs count).

    Each coordinate keeps a step size $\Delta$ (initially `learning_rate`). With
    $s = g_t\, p_{t-1}$ the product of the new gradient with the previous step:

    $$\Delta_t = \begin{cases}
      \min(\eta^+ \Delta_{t-1}, \Delta_{max}) & s > 0 \text{ (same sign: grow)}\\
      \max(\eta^- \Delta_{t-1}, \Delta_{min}) & s < 0 \text{ (sign flip: shrink)}\\
      \Delta_{t-1} & s = 0
    \end{cases}$$

    $$p_t = \begin{cases} 0 & s < 0 \\ \Delta_t \operatorname{sign}(g_t) & \text{otherwise}
    \end{cases}$$

    After a sign flip the step is skipped and $p_t = 0$, so the next comparison is neutral
    (the iRprop$^-$ variant of Igel & Hüsken). Negate the result (`scale(-1.0)`, as
    [`rprop`][gradtx.rprop] does) to descend.

    One-step delay (as optax 0.2.8). The update returned at step $t$ is $p_{t-1}$ (set to 0
    where $s < 0$), not $p_t$: the first update is all zeros and each later update is the step
    computed one call earlier. gradtx keeps this so that its numbers equal optax's bit for bit
    (optax pull request #1725 proposes returning $p_t$).

    Args:
        learning_rate: the initial step size $\Delta_0$ (required), a real number > 0 (not a
            schedule: it only fills the state at `init`).
        eta_minus: the factor $\eta^-$ applied after a sign flip, default 0.5, in [0, 1].
        eta_plus: the factor $\eta^+$ applied while the sign holds, default 1.2, >= 1.
        min_step_size: the floor $\Delta_{min}$ of the step sizes, default 1e-6, >= 0.
        max_step_size: the ceiling $\Delta_{max}$ of the step sizes, default 50.0,
            >= `min_step_size`.

    Returns:
        A `GradientTransformation` with state
        [`ScaleByRpropState`][gradtx.transforms.sign.ScaleByRpropState]`(step_sizes, prev_updates)`.
        Integer and complex params raise a `TypeError` at `init`.

    References:
        Riedmiller & Braun, *A Direct Adaptive Method for Faster Backpropagation Learning: The
        RPROP Algorithm*, ICNN 1993.
        Igel & Hüsken, *Empirical evaluation of the improved Rprop learning algorithms*,
        Neurocomputing 2003.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.scale_by_rprop(0.1)
        >>> state = tx.init(jnp.zeros(1))
        >>> for g in [1.0, 1.0, 1.0]:
        ...     u, state = tx.update(jnp.array([g]), state)
        ...     print(round(float(u[0]), 4))
        0.0
        0.1
        0.12
    """
    owner = "scale_by_rprop"
    _check_hyperparams(owner, learning_rate, eta_minus, eta_plus, min_step_size, max_step_size)

    def init(params):
        _v.check_state_params(owner, params)
        _check_real_params(owner, params)
        return ScaleByRpropState(
            step_sizes=jax.tree.map(lambda p: full_like_param(p, learning_rate), params),
            prev_updates=tree_zeros_like(params),
        )

    def update(updates, state, params=None, **extra_args):
        del params, extra_args

        def leaf(g, step, prev):
            return rprop_leaf(
                g,
                step,
                prev,
                eta_minus=eta_minus,
                eta_plus=eta_plus,
                min_step_size=min_step_size,
                max_step_size=max_step_size,
            )

        new_updates, step_sizes, prev_updates = map_leaves(
            leaf, 3, updates, state.step_sizes, state.prev_updates
        )
        return new_updates, ScaleByRpropState(step_sizes=step_sizes, prev_updates=prev_updates)

    return GradientTransformation(init, update)


def _check_hyperparams(
    owner: str, learning_rate: Any, eta_minus: Any, eta_plus: Any, min_step_size: Any, max_step_size: Any
) -> None:
    """Rprop's checks, shared with the [`rprop`][gradtx.rprop] alias (messages name `owner`)."""
    if callable(learning_rate):
        raise TypeError(
            f"{owner}: learning_rate is Rprop's initial step size, a real number > 0; schedules "
            f"are not supported (the step sizes adapt by themselves), got {learning_rate!r}"
        )
    _v.check_real(owner, "learning_rate", learning_rate, low=0.0, low_inclusive=False)
    _v.check_real(owner, "eta_minus", eta_minus, low=0.0, high=1.0)
    _v.check_real(owner, "eta_plus", eta_plus, low=1.0)
    _v.check_real(owner, "min_step_size", min_step_size, low=0.0)
    _v.check_real(owner, "max_step_size", max_step_size, low=0.0)
    if not (_v.is_traced(min_step_size) or _v.is_traced(max_step_size)) and max_step_size < min_step_size:
        raise ValueError(
            f"{owner}: max_step_size must be >= min_step_size, got max_step_size={max_step_size!r} "
            f"and min_step_size={min_step_size!r}"
        )
