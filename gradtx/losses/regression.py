"""Regression losses: squared error, L2, Huber, log-cosh, and cosine similarity/distance."""

from typing import Any

import jax
import jax.numpy as jnp

from gradtx.losses._common import Axis, check_range, require_dtype, require_same_shape


def _errors(predictions: Any, targets: Any) -> Any:
    return predictions if targets is None else predictions - targets


def squared_error(predictions: Any, targets: Any = None) -> jax.Array:
    r"""Element-wise squared error, $\ell(p, t) = (p - t)^2$.

    Args:
        predictions: floating predictions.
        targets: targets of the same shape (default None: zero targets, so `predictions` are the
            residuals).

    Returns:
        The loss of each element, `predictions`' shape.
    """
    require_dtype("squared_error", "predictions", predictions, jnp.floating)
    if targets is not None:
        require_same_shape("squared_error", "predictions", predictions, "targets", targets)
    return _errors(predictions, targets) ** 2


def l2_loss(predictions: Any, targets: Any = None) -> jax.Array:
    r"""Half the squared error, $\ell(p, t) = \tfrac12 (p - t)^2$ (gradient $p - t$).

    Args:
        predictions: floating predictions.
        targets: targets of the same shape (default None: zero targets).

    Returns:
        The loss of each element.
    """
    return 0.5 * squared_error(jnp.asarray(predictions), targets)


def huber_loss(predictions: Any, targets: Any = None, *, delta: Any = 1.0) -> jax.Array:
    r"""Huber loss: quadratic for small errors, linear beyond `delta`.

    With $e = |p - t|$, $q = \min(e, \delta)$,

    $$
    \ell(p, t) = \tfrac12 q^2 + \delta\,(e - q)
    = \begin{cases} \tfrac12 e^2 & e \le \delta \\ \delta e - \tfrac12 \delta^2 & e > \delta \end{cases}
    $$

    Args:
        predictions: floating predictions.
        targets: targets broadcastable to `predictions` (default None: zero targets).
        delta: the switch point, `> 0` (default 1.0).

    Returns:
        The loss of each element.

    Reference: Huber, *Robust Estimation of a Location Parameter*, Ann. Math. Statist. (1964).
    """
    require_dtype("huber_loss", "predictions", predictions, jnp.floating)
    check_range("huber_loss", "delta", delta, low=0.0, low_inclusive=False)
    abs_errors = jnp.abs(_errors(predictions, targets))
    quadratic = jnp.minimum(abs_errors, delta)
    return 0.5 * quadratic**2 + delta * (abs_errors - quadratic)


def log_cosh(predictions: Any, targets: Any = None) -> jax.Array:
    r"""Logarithm of the hyperbolic cosine of the error, $\ell(p, t) = \log\cosh(p - t)$.

    Close to $\tfrac12 e^2$ for small errors and to $|e| - \log 2$ for large ones; computed as
    $\mathrm{logaddexp}(e, -e) - \log 2$ so it never overflows.

    Args:
        predictions: floating predictions.
        targets: targets broadcastable to `predictions` (default None: zero targets).

    Returns:
        The loss of each element.

    Reference: Chen et al., [Log Hyperbolic Cosine Loss Improves Variational
    Auto-Encoder](https://openreview.net/forum?id=rkglvsC9Ym) (2019).
    """
    require_dtype("log_cosh", "predictions", predictions, jnp.floating)
    errors = _errors(predictions, targets)
    return jnp.logaddexp(errors, -errors) - jnp.log(2.0).astype(errors.dtype)


def cosine_similarity(
    predictions: Any, targets: Any, *, epsilon: Any = 0.0, axis: Axis = -1, where: Any = None
) -> jax.Array:
    r"""Cosine of the angle between predictions and targets along `axis`.

    $$
    \cos(p, t) = \frac{p}{\sqrt{\max(\|p\|^2, \epsilon)}} \cdot \frac{t}{\sqrt{\max(\|t\|^2, \epsilon)}} .
    $$

    Args:
        predictions: floating array.
        targets: floating array broadcastable to `predictions`.
        epsilon: lower bound on the squared norms, `>= 0` (default 0.0; a positive value keeps
            zero vectors finite).
        axis: the axis or axes of the vectors (default -1).
        where: optional boolean mask of the elements included in norms and dot product.

    Returns:
        The similarity of each pair, in `[-1, 1]`.

    Reference: [Cosine similarity](https://en.wikipedia.org/wiki/Cosine_similarity), Wikipedia.
    """
    require_dtype("cosine_similarity", "predictions", predictions, jnp.floating)
    require_dtype("cosine_similarity", "targets", targets, jnp.floating)
    check_range("cosine_similarity", "epsilon", epsilon, low=0.0)
    p_norm = jnp.sqrt(jnp.square(predictions).sum(axis=axis, where=where, keepdims=True).clip(epsilon))
    t_norm = jnp.sqrt(jnp.square(targets).sum(axis=axis, where=where, keepdims=True).clip(epsilon))
    return ((predictions / p_norm) * (targets / t_norm)).sum(axis=axis, where=where)


def cosine_distance(
    predictions: Any, targets: Any, *, epsilon: Any = 0.0, axis: Axis = -1, where: Any = None
) -> jax.Array:
    r"""One minus the [cosine similarity][gradtx.losses.cosine_similarity], in `[0, 2]`.

    Args:
        predictions: floating array.
        targets: floating array broadcastable to `predictions`.
        epsilon: lower bound on the squared norms, `>= 0` (default 0.0).
        axis: the axis or axes of the vectors (default -1).
        where: optional boolean mask of the elements included.

    Returns:
        The distance of each pair.
    """
    require_dtype("cosine_distance", "predictions", predictions, jnp.floating)
    require_dtype("cosine_distance", "targets", targets, jnp.floating)
    check_range("cosine_distance", "epsilon", epsilon, low=0.0)
    return 1.0 - cosine_similarity(predictions, targets, epsilon=epsilon, axis=axis, where=where)
