"""Scale the updates down when the loss stops improving: `reduce_on_plateau`."""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradtx._validation import check_int, check_real, is_traced
from gradtx.base import GradientTransformation, describe
from gradtx.numerics import safe_increment
from gradtx.wrappers._common import cond

__all__ = ["ReduceLROnPlateauState", "reduce_on_plateau"]


class ReduceLROnPlateauState(NamedTuple):
    """State of [`reduce_on_plateau`][gradtx.reduce_on_plateau].

    Attributes:
        scale: the current multiplier of the updates (starts at 1), in the params' lowest dtype.
        best_value: the best averaged loss so far (starts at +inf).
        plateau_count: int32, averaged losses in a row without improvement.
        cooldown_count: int32, evaluations left in the cool-down after a reduction.
        count: int32, losses accumulated into `avg_value` so far (0 … accumulation_size - 1).
        avg_value: the running mean of the losses accumulated so far.
    """

    scale: jax.Array
    best_value: jax.Array
    plateau_count: jax.Array
    cooldown_count: jax.Array
    count: jax.Array  # type: ignore[assignment]  # optax's field name (shadows tuple.count)
    avg_value: jax.Array


def _dtype_extreme(params, pick) -> jnp.dtype:
    dtypes = [jnp.result_type(x) for x in jax.tree.leaves(params)]
    floats = [d for d in dtypes if jnp.issubdtype(d, jnp.floating)]
    if not floats:
        return jnp.result_type(float)
    return functools.reduce(pick, floats)


def _lower(a, b):
    return a if jnp.promote_types(a, b) == b else b


def _higher(a, b):
    return b if jnp.promote_types(a, b) == b else a


@describe
def reduce_on_plateau(
    factor: float = 0.1,
    patience: int = 10,
    rtol: float = 1e-4,
    atol: float = 0.0,
    cooldown: int = 0,
    accumulation_size: int = 1,
    min_scale: float = 0.0,
) -> GradientTransformation:
    """Multiply the updates by a scale that is reduced when the loss plateaus.

    `update(updates, state, params=None, *, value=loss)` needs the current loss (or a validation
    metric) as the keyword argument `value`. The last `accumulation_size` values are averaged into
    `v`; each time `accumulation_size` values have been collected:

        improved      = v < (1 - rtol) · best - atol
        best          ← v if improved else best
        plateau_count ← 0 if improved else plateau_count + 1

    and, unless in cool-down, when `plateau_count` reaches `patience`:

        scale ← max(scale · factor, min_scale),  plateau_count ← 0,  cooldown_count ← cooldown.

    During the cool-down (`cooldown_count > 0`) the count is decremented once per evaluation and
    `plateau_count` stays 0. The returned updates are `scale · g` at every step. The numbers
    are those of `optax.contrib.reduce_on_plateau`; `patience=0` behaves like `patience=1`
    (reduce at every evaluation without improvement).

    Args:
        factor: default 0.1, in (0, 1]; the multiplier applied to `scale` at a reduction.
        patience: default 10, integer >= 0; evaluations without improvement before a reduction.
        rtol: default 1e-4, in [0, 1]; relative improvement threshold.
        atol: default 0.0, >= 0; absolute improvement threshold. `rtol` and `atol` may not both be 0.
        cooldown: default 0, integer >= 0; evaluations after a reduction during which the plateau
            count is held at 0.
        accumulation_size: default 1, integer >= 1; losses averaged into one evaluation (use > 1
            when `value` is a noisy mini-batch loss).
        min_scale: default 0.0, in [0, 1]; the scale never goes below it.

    Returns:
        A gradient transformation whose state is a
        [`ReduceLROnPlateauState`][gradtx.ReduceLROnPlateauState]. Chain it after the optimizer:
        `gradtx.chain(gradtx.adam(1e-3), gradtx.reduce_on_plateau())`.

    References:
        PyTorch's `torch.optim.lr_scheduler.ReduceLROnPlateau`; `optax.contrib.reduce_on_plateau`.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.reduce_on_plateau(factor=0.5, patience=2)
        >>> state = tx.init(jnp.zeros(1))
        >>> for loss in [1.0, 1.0, 1.0]:
        ...     updates, state = tx.update(jnp.ones(1), state, value=loss)
        >>> float(state.scale)
        0.5
    """
    owner = "reduce_on_plateau"
    check_real(owner, "factor", factor, low=0.0, high=1.0, low_inclusive=False)
    check_int(owner, "patience", patience, low=0)
    check_real(owner, "rtol", rtol, low=0.0, high=1.0)
    check_real(owner, "atol", atol, low=0.0)
    check_int(owner, "cooldown", cooldown, low=0)
    check_int(owner, "accumulation_size", accumulation_size, low=1)
    check_real(owner, "min_scale", min_scale, low=0.0, high=1.0)
    if not (is_traced(rtol) or is_traced(atol)) and float(rtol) == 0.0 and float(atol) == 0.0:
        raise ValueError(f"{owner}: rtol and atol cannot both be 0 (got rtol={rtol!r}, atol={atol!r})")

    def init(params):
        return ReduceLROnPlateauState(
            scale=jnp.asarray(1.0, _dtype_extreme(params, _lower)),
            best_value=jnp.asarray(jnp.inf, _dtype_extreme(params, _higher)),
            plateau_count=jnp.zeros((), jnp.int32),
            cooldown_count=jnp.zeros((), jnp.int32),
            count=jnp.zeros((), jnp.int32),
            avg_value=jnp.asarray(0.0, _dtype_extreme(params, _higher)),
        )

    def evaluate(state: ReduceLROnPlateauState) -> ReduceLROnPlateauState:
        v = state.avg_value
        improved = v < (1 - rtol) * state.best_value - atol
        best = jnp.where(improved, v, state.best_value).astype(state.best_value.dtype)
        plateau = jnp.where(improved, 0, safe_increment(state.plateau_count)).astype(jnp.int32)
        in_cooldown = state.cooldown_count > 0
        reduce = jnp.logical_and(~in_cooldown, plateau >= jnp.maximum(patience, 1))
        reduced = jnp.maximum(jnp.where(reduce, state.scale * factor, state.scale), min_scale)
        scale = jnp.where(in_cooldown, state.scale, reduced)
        cooldown_count = jnp.where(
            in_cooldown, state.cooldown_count - 1, jnp.where(reduce, cooldown, 0)
        ).astype(jnp.int32)
        plateau = jnp.where(jnp.logical_or(in_cooldown, reduce), 0, plateau).astype(jnp.int32)
        return ReduceLROnPlateauState(
            scale=scale.astype(state.scale.dtype),
            best_value=best,
            plateau_count=plateau,
            cooldown_count=cooldown_count,
            count=jnp.zeros((), jnp.int32),
            avg_value=jnp.zeros((), state.avg_value.dtype),
        )

    def update(updates, state, params=None, *, value=None, **extra_args):
        del params, extra_args
        if value is None:
            raise TypeError(
                f"{owner}.update needs the current loss: call update(updates, state, params, "
                f"value=loss) (through chain, pass value=loss to the chain's update)."
            )
        if jnp.ndim(value) != 0:
            raise ValueError(f"{owner}.update: value must be a scalar loss, got shape {jnp.shape(value)}")
        count = safe_increment(state.count)
        avg = (state.count * state.avg_value + jnp.asarray(value).astype(state.avg_value.dtype)) / count
        state = state._replace(avg_value=avg.astype(state.avg_value.dtype), count=count)
        state = cond(count == accumulation_size, lambda: evaluate(state), lambda: state)
        return jax.tree.map(lambda g: state.scale * g, updates), state

    return GradientTransformation(init, update)
