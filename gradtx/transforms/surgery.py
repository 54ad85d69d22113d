r"""Gradient surgery: centralization, backward-pass scaling, and keeping params non-negative."""

from typing import Any

import jax
import jax.numpy as jnp

from gradtx import _validation as _v
from gradtx.base import EmptyState, GradientTransformation, describe
from gradtx.numerics import float_updates

__all__ = [
    "NonNegativeParamsState",
    "centralize",
    "keep_params_nonnegative",
    "scale_gradient",
]

NonNegativeParamsState = EmptyState
"""State of [`keep_params_nonnegative`][gradtx.keep_params_nonnegative]: `EmptyState` (optax's
name for it)."""


def _empty_init(params: Any) -> EmptyState:
    del params
    return EmptyState()


def _centralized(g: jax.Array) -> jax.Array:
    if g.ndim <= 1:
        return g
    return g - g.mean(axis=tuple(range(1, g.ndim)), keepdims=True)


@describe
def centralize() -> GradientTransformation:
    r"""Gradient centralization: remove from every row of a leaf the mean of that row.

    For a leaf $g$ of rank 2 or more, indexed $g_{i,k}$ with $i$ along the first axis and $k$
    over all the other axes ($K$ entries):

    $$u_{i,k} = g_{i,k} - \frac{1}{K}\sum_{k'} g_{i,k'}.$$

    Leaves of rank 0 and 1 (scalars, biases) pass unchanged. Centralizing projects the gradient
    of a weight matrix onto the hyperplane of zero-mean rows, which constrains the weights and
    tends to smooth the loss landscape.

    Returns:
        A stateless `GradientTransformation`.

    References:
        Yong, Huang, Hua & Zhang, *Gradient Centralization: A New Optimization Technique for Deep
        Neural Networks*, ECCV 2020 (arXiv:2004.01461).

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.centralize()
        >>> tx.update(jnp.array([[1.0, 2.0, 3.0], [4.0, 6.0, 8.0]]), tx.init(None))[0]
        Array([[-1.,  0.,  1.],
               [-2.,  0.,  2.]], dtype=float32)
    """

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        return jax.tree.map(_centralized, float_updates(updates)), state

    return GradientTransformation(_empty_init, update)


@describe
def keep_params_nonnegative() -> GradientTransformation:
    r"""Change the updates so that no parameter becomes negative.

    $$u = \begin{cases} g & \theta + g \ge 0 \\ -\theta & \theta + g < 0\end{cases}$$

    elementwise: a step that would take a parameter below zero stops it at exactly zero. Put it
    last in a [`chain`][gradtx.chain] (after the learning rate), since it acts on the final
    step. Needs `params` at `update`; a parameter that is already negative is moved to 0.
    A `None` params leaf gives a `None` update.

    Returns:
        A stateless `GradientTransformation` (state `NonNegativeParamsState()`, i.e.
        `EmptyState()`).

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.chain(gradtx.sgd(1.0), gradtx.keep_params_nonnegative())
        >>> params = jnp.array([0.5, 2.0])
        >>> tx.update(jnp.array([1.0, 1.0]), tx.init(params), params)[0]
        Array([-0.5, -1. ], dtype=float32)
    """

    def leaf(p, u):
        if p is None:
            return None
        return jnp.where((p + u) < 0.0, -p, u).astype(jnp.result_type(u))

    def update(updates, state, params=None, **extra_args):
        del extra_args
        if params is None:
            raise ValueError(
                "keep_params_nonnegative.update: params are required (the update is limited by "
                "the current parameter values); call update(updates, state, params)."
            )
        updates = float_updates(updates)
        return jax.tree.map(leaf, params, updates, is_leaf=lambda x: x is None), state

    return GradientTransformation(_empty_init, update)


@jax.custom_vjp
def _with_scaled_gradient(inputs: Any, scale: Any) -> Any:
    del scale  # used by the backward pass only
    return inputs


def _scaled_forward(inputs: Any, scale: Any) -> tuple[Any, Any]:
    return inputs, scale


def _scaled_backward(scale: Any, cotangents: Any) -> tuple[Any, None]:
    def one(c):
        return (c * scale).astype(jnp.result_type(c))

    return jax.tree.map(one, cotangents), None


_with_scaled_gradient.defvjp(_scaled_forward, _scaled_backward)


def scale_gradient(inputs: Any, scale: float | jax.Array) -> Any:
    r"""Return `inputs` unchanged, but multiply the gradient flowing back through them by `scale`.

    Forward: $y = x$. Backward: $\partial L/\partial x = s\,\partial L/\partial y$. This is a
    function of arrays used inside a loss, not a gradient transformation: it scales how much a
    sub-network learns from one term (`scale=0.0` is `jax.lax.stop_gradient`; a negative scale
    gives a gradient-reversal layer).

    Args:
        inputs: an array or a pytree of arrays.
        scale: the factor $s$ applied to the gradient: a finite real scalar (any sign), or a
            traced scalar. `1.0` returns `inputs` itself; `0.0` stops the gradient.

    Returns:
        `inputs`, with the scaled backward pass.

    Example:
        >>> import gradtx, jax, jax.numpy as jnp
        >>> jax.grad(lambda x: jnp.sum(gradtx.scale_gradient(x, 0.5) ** 2))(jnp.array([1.0, 2.0]))
        Array([1., 2.], dtype=float32)
    """
    _v.check_real("scale_gradient", "scale", scale)
    if not _v.is_traced(scale):
        if float(scale) == 1.0:
            return inputs
        if float(scale) == 0.0:
            return jax.lax.stop_gradient(inputs)
    return _with_scaled_gradient(inputs, scale)
