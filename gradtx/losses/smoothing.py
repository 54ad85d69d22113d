"""Label smoothing."""

from typing import Any

import jax
import jax.numpy as jnp

from gradtx.losses._common import Axis, check_range, require_dtype


def smooth_labels(labels: Any, alpha: Any, *, axis: Axis = -1, where: Any = None) -> jax.Array:
    r"""Mix target distributions with the uniform distribution over the classes.

    With $K$ classes along `axis` (or the number of included classes when `where` is given),

    $$
    \tilde y = (1 - \alpha)\, y + \frac{\alpha}{K} .
    $$

    Args:
        labels: floating target distributions (e.g. one-hot), `[..., num_classes]`.
        alpha: smoothing weight in `[0, 1]` (0 leaves the labels unchanged, 1 gives the uniform
            distribution).
        axis: the class axis (default -1).
        where: optional boolean mask of the classes that count in $K$, broadcastable to `labels`.

    Returns:
        The smoothed labels, with `labels`' shape.

    Reference: Müller, Kornblith and Hinton, [When Does Label Smoothing
    Help?](https://arxiv.org/abs/1906.02629) (2019).
    """
    require_dtype("smooth_labels", "labels", labels, jnp.floating)
    check_range("smooth_labels", "alpha", alpha, low=0.0, high=1.0)
    if where is None:
        num_classes: Any = jnp.size(labels, axis)
    else:
        num_classes = jnp.sum(where, axis, keepdims=True)
    return (1.0 - alpha) * labels + alpha / num_classes
