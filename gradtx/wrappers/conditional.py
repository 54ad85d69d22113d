"""Run a transformation only at some steps: `conditionally_transform` (pass the updates through
otherwise) and `conditionally_mask` (zero them otherwise)."""

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp

from gradtx._validation import check_bool
from gradtx.base import GradientTransformation, OptState, describe
from gradtx.numerics import safe_increment
from gradtx.wrappers._common import check_transformation, cond, forwarding_update, zeros_from_shapes

__all__ = [
    "ConditionFn",
    "ConditionallyMaskState",
    "ConditionallyTransformState",
    "conditionally_mask",
    "conditionally_transform",
]


class ConditionFn(Protocol):
    """`(step, **extra_args) -> bool scalar`: whether the wrapped transformation runs.

    `step` is the int32 count of earlier `update` calls (0 at the first); the extra keyword
    arguments of `update` are passed only with `forward_extra_args=True`.
    """

    def __call__(self, step: jax.Array, **extra_args: Any) -> jax.typing.ArrayLike: ...


class ConditionallyTransformState(NamedTuple):
    """State of [`conditionally_transform`][gradtx.conditionally_transform].

    Attributes:
        inner_state: the wrapped transformation's state (unchanged at skipped steps).
        step: int32, the number of `update` calls so far.
    """

    inner_state: OptState
    step: jax.Array


class ConditionallyMaskState(NamedTuple):
    """State of [`conditionally_mask`][gradtx.conditionally_mask] (optax's field order).

    Attributes:
        step: int32, the number of `update` calls so far.
        inner_state: the wrapped transformation's state (unchanged at masked steps).
    """

    step: jax.Array
    inner_state: OptState


def _check_arguments(owner: str, inner: Any, should_transform_fn: Any, forward_extra_args: Any) -> None:
    check_transformation(owner, "inner", inner)
    if not callable(should_transform_fn):
        raise TypeError(
            f"{owner}: should_transform_fn must be a function of the step count, got "
            f"{type(should_transform_fn).__name__}: {should_transform_fn!r}"
        )
    check_bool(owner, "forward_extra_args", forward_extra_args)


def _condition(owner: str, fn: ConditionFn, step: jax.Array, extra_args: dict[str, Any]) -> Any:
    """`fn(step, ...)` as a scalar predicate; a TypeError naming `owner` for anything else."""
    value = fn(step, **extra_args)
    shape, dtype = jnp.shape(value), jnp.result_type(value)
    if shape != () or not (dtype == jnp.bool_ or jnp.issubdtype(dtype, jnp.integer)):
        raise TypeError(
            f"{owner}: should_transform_fn must return a boolean scalar, got {dtype}{list(shape)} "
            f"(from step {step!r})"
        )
    return value


def _conditional(owner: str, inner: GradientTransformation, should_transform_fn: ConditionFn,
                 forward_extra_args: bool, mask: bool) -> Callable[..., Any]:
    """The step of both wrappers: `(updates, inner_state)` (`mask`: zero the skipped steps' updates)."""
    inner_update = forwarding_update(inner)

    def step_fn(updates, state, params, extra_args):
        inner_state = state.inner_state

        def run():
            new_updates, new_inner = inner_update(updates, inner_state, params, **extra_args)
            # both branches of a cond must agree on dtypes: keep the state's
            new_inner = jax.tree.map(lambda n, o: jnp.asarray(n, jnp.result_type(o)), new_inner, inner_state)
            return new_updates, new_inner

        def skip():
            shapes = jax.eval_shape(run)[0]
            if mask:
                return zeros_from_shapes(shapes), inner_state
            if jax.tree.structure(shapes) != jax.tree.structure(updates):
                return updates, inner_state  # the cond itself will say what differs
            return jax.tree.map(lambda u, s: jnp.asarray(u, s.dtype), updates, shapes), inner_state

        condition_args = extra_args if forward_extra_args else {}
        return cond(_condition(owner, should_transform_fn, state.step, condition_args), run, skip)

    return step_fn


@describe
def conditionally_transform(
    inner: GradientTransformation,
    should_transform_fn: ConditionFn,
    forward_extra_args: bool = False,
) -> GradientTransformation:
    """Run `inner` only at the steps where `should_transform_fn(step)` is True; else pass through.

    With `t` the number of earlier `update` calls:

        (u, s_inner) = inner.update(g, s_inner)    if should_transform_fn(t)
        (u, s_inner) = (g, s_inner)                 otherwise (updates and state unchanged)

    Under `jax.jit` this is a `lax.cond`: only the taken branch runs. To zero the updates of the
    skipped steps instead, use [`conditionally_mask`][gradtx.conditionally_mask].

    Args:
        inner: the transformation to run (gradtx or optax).
        should_transform_fn: a [`ConditionFn`][gradtx.ConditionFn]: a function of the int32 step
            count `t` returning a boolean scalar (e.g. `lambda t: t % 10 == 0`).
        forward_extra_args: default False. If True, the extra keyword arguments of `update`
            (e.g. `value=loss`) are passed to `should_transform_fn` too (they always reach
            `inner`).

    Returns:
        A gradient transformation with state `ConditionallyTransformState(inner_state, step)`.

    References:
        Same semantics as `optax.conditionally_transform`.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.conditionally_transform(gradtx.scale(10.0), lambda step: step % 2 == 1)
        >>> state = tx.init(jnp.zeros(1))
        >>> u0, state = tx.update(jnp.ones(1), state)
        >>> u1, state = tx.update(jnp.ones(1), state)
        >>> u0.tolist(), u1.tolist()
        ([1.0], [10.0])
    """
    owner = "conditionally_transform"
    _check_arguments(owner, inner, should_transform_fn, forward_extra_args)
    step_fn = _conditional(owner, inner, should_transform_fn, forward_extra_args, mask=False)

    def init(params):
        return ConditionallyTransformState(inner_state=inner.init(params), step=jnp.zeros((), jnp.int32))

    def update(updates, state, params=None, **extra_args):
        new_updates, new_inner = step_fn(updates, state, params, extra_args)
        return new_updates, ConditionallyTransformState(inner_state=new_inner, step=safe_increment(state.step))

    return GradientTransformation(init, update)


@describe
def conditionally_mask(
    inner: GradientTransformation,
    should_transform_fn: ConditionFn,
    forward_extra_args: bool = False,
) -> GradientTransformation:
    """Run `inner` only at the steps where `should_transform_fn(step)` is True; else zero updates.

    With `t` the number of earlier `update` calls:

        (u, s_inner) = inner.update(g, s_inner)    if should_transform_fn(t)
        (u, s_inner) = (0, s_inner)                 otherwise (zero updates, state unchanged)

    Under `jax.jit` this is a `lax.cond`: only the taken branch runs. To pass the updates through
    unchanged at the skipped steps instead, use
    [`conditionally_transform`][gradtx.conditionally_transform].

    Args:
        inner: the transformation to run (gradtx or optax).
        should_transform_fn: a [`ConditionFn`][gradtx.ConditionFn]: a function of the int32 step
            count `t` returning a boolean scalar (e.g. `lambda t: t >= 100` for a late start).
        forward_extra_args: default False. If True, the extra keyword arguments of `update` are
            passed to `should_transform_fn` too (they always reach `inner`).

    Returns:
        A gradient transformation with state `ConditionallyMaskState(step, inner_state)`.

    References:
        Same semantics as `optax.conditionally_mask`.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.conditionally_mask(gradtx.sgd(0.1), lambda step: step >= 1)
        >>> state = tx.init(jnp.zeros(1))
        >>> u0, state = tx.update(jnp.ones(1), state)
        >>> u1, state = tx.update(jnp.ones(1), state)
        >>> u0.tolist(), u1.tolist()
        ([0.0], [-0.10000000149011612])
    """
    owner = "conditionally_mask"
    _check_arguments(owner, inner, should_transform_fn, forward_extra_args)
    step_fn = _conditional(owner, inner, should_transform_fn, forward_extra_args, mask=True)

    def init(params):
        return ConditionallyMaskState(step=jnp.zeros((), jnp.int32), inner_state=inner.init(params))

    def update(updates, state, params=None, **extra_args):
        new_updates, new_inner = step_fn(updates, state, params, extra_args)
        return new_updates, ConditionallyMaskState(step=safe_increment(state.step), inner_state=new_inner)

    return GradientTransformation(init, update)
