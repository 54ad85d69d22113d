"""Kullback-Leibler divergences between a predicted and a target distribution."""

import warnings
from typing import Any

import jax
import jax.numpy as jnp

from gradtx.losses._common import Axis, require_dtype


def kl_divergence(log_predictions: Any, targets: Any, axis: Axis = -1, where: Any = None) -> jax.Array:
    r"""Kullback-Leibler divergence of the predictions from the targets.

    $$
    \mathrm{KL}(t \,\|\, p) = \sum_j t_j \left(\log t_j - \log p_j\right),
    $$

    with $0 \log 0 = 0$ (a zero target contributes nothing).

    Args:
        log_predictions: floating log-probabilities $\log p$, `[..., dim]`.
        targets: floating target probabilities $t$, broadcastable to `log_predictions`.
        axis: the axis or axes summed over (default -1; None: all).
        where: optional boolean mask of the elements included in the sum.

    Returns:
        The divergence of each example.

    Reference: Kullback and Leibler, *On Information and Sufficiency*, Ann. Math. Statist. (1951).
    """
    require_dtype("kl_divergence", "log_predictions", log_predictions, jnp.floating)
    require_dtype("kl_divergence", "targets", targets, jnp.floating)
    log_targets = jnp.where(targets == 0, 0, jnp.log(targets))
    return jnp.sum(targets * (log_targets - log_predictions), axis=axis, where=where)


def kl_divergence_with_log_targets(
    log_predictions: Any, log_targets: Any, axis: Axis = -1, where: Any = None
) -> jax.Array:
    r"""Kullback-Leibler divergence with the targets also given as log-probabilities.

    $$
    \mathrm{KL}(t \,\|\, p) = \sum_j e^{\log t_j} \left(\log t_j - \log p_j\right).
    $$

    Args:
        log_predictions: floating log-probabilities $\log p$.
        log_targets: floating log-probabilities $\log t$, broadcastable to `log_predictions`.
        axis: the axis or axes summed over (default -1).
        where: optional boolean mask of the elements included in the sum.

    Returns:
        The divergence of each example.
    """
    require_dtype("kl_divergence_with_log_targets", "log_predictions", log_predictions, jnp.floating)
    require_dtype("kl_divergence_with_log_targets", "log_targets", log_targets, jnp.floating)
    return jnp.sum(jnp.exp(log_targets) * (log_targets - log_predictions), axis=axis, where=where)


def generalized_kl_divergence(
    log_predictions: Any, targets: Any, axis: Axis = -1, where: Any = None
) -> jax.Array:
    r"""Kullback-Leibler divergence extended to unnormalised non-negative measures.

    $$
    D(t \,\|\, p) = \sum_j t_j \left(\log t_j - \log p_j\right) + \sum_j (p_j - t_j),
    $$

    the Bregman divergence of $f(x) = x \log x - x$; it equals
    [`kl_divergence`][gradtx.losses.kl_divergence] when both sum to 1.

    Args:
        log_predictions: floating $\log p$.
        targets: non-negative floating $t$, broadcastable to `log_predictions`.
        axis: the axis or axes summed over (default -1).
        where: optional boolean mask of the elements included in the sums.

    Returns:
        The divergence of each example.

    Reference: Boyd and Vandenberghe, *Convex Optimization*, p. 90 (2004).
    """
    divergence = kl_divergence(log_predictions, targets, axis=axis, where=where)
    return divergence + jnp.sum(jnp.exp(log_predictions) - targets, axis=axis, where=where)


def convex_kl_divergence(log_predictions: Any, targets: Any, axis: Axis = -1, where: Any = None) -> jax.Array:
    """Deprecated name of [`generalized_kl_divergence`][gradtx.losses.generalized_kl_divergence].

    Emits a `DeprecationWarning` (as optax does) and returns the same numbers.
    """
    warnings.warn(
        "The function convex_kl_divergence is deprecated. Please use generalized_kl_divergence instead.",
        category=DeprecationWarning,
        stacklevel=2,
    )
    return generalized_kl_divergence(log_predictions, targets, axis=axis, where=where)
