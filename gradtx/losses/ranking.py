"""Learning-to-rank losses."""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from gradtx.losses._common import require_dtype


def _reduce(loss: jax.Array, where: Any, reduce_fn: Callable[..., Any] | None) -> jax.Array:
    """Apply `reduce_fn` over the lists; a mean over no valid list is 0, not nan."""
    if reduce_fn is None:
        return loss if where is None else jnp.where(where, loss, 0.0)
    out = reduce_fn(loss, where=where)
    if reduce_fn is jnp.mean:
        inputs_fine = jnp.logical_not(jnp.any(jnp.isnan(loss)))
        out = jnp.where(jnp.isnan(out) & inputs_fine, 0.0, out)
    return out


def ranking_softmax_loss(
    logits: Any,
    labels: Any,
    *,
    where: Any = None,
    weights: Any = None,
    reduce_fn: Callable[..., Any] | None = jnp.mean,
) -> jax.Array:
    r"""Listwise softmax loss: the cross-entropy between the labels and the softmax over each list.

    For a list of scores $s$ with relevance labels $y$ (and optional per-item weights $w$),

    $$
    \ell(s, y) = -\sum_i w_i y_i \log \frac{e^{s_i}}{\sum_j e^{s_j}} .
    $$

    Items outside `where` get logit $-\infty$ and label 0 (they take no part in the softmax).

    Args:
        logits: floating scores `[..., list_size]`.
        labels: relevance labels of the same shape (graded or binary, cast to `logits`' dtype).
        where: optional boolean mask of the valid items.
        weights: optional per-item weights multiplying the labels.
        reduce_fn: reduction over the lists, called as `reduce_fn(losses, where=mask)` (default
            `jnp.mean`, which gives 0 when no list is valid; None returns one loss per list, 0 for
            lists with no valid item).

    Returns:
        The reduced loss, or one loss per list when `reduce_fn` is None.

    Reference: Bruch et al., [An Analysis of the Softmax Cross Entropy Loss for
    Learning-to-Rank with Binary Relevance](https://doi.org/10.1145/3341981.3344221), ICTIR 2019.
    """
    require_dtype("ranking_softmax_loss", "logits", logits, jnp.floating)
    if reduce_fn is not None and not callable(reduce_fn):
        raise TypeError(
            f"ranking_softmax_loss: reduce_fn must be callable or None, got {type(reduce_fn).__name__}"
        )
    labels = jnp.asarray(labels).astype(jnp.result_type(logits))
    if where is not None:
        labels = jnp.where(where, labels, jnp.zeros_like(labels))
        logits = jnp.where(where, logits, -jnp.ones_like(logits) * jnp.inf)
    if weights is not None:
        labels = labels * weights
    loss = -jnp.sum(labels * jax.nn.log_softmax(logits, axis=-1), axis=-1, where=where)
    list_valid = None if where is None else jnp.any(where, axis=-1)
    return _reduce(loss, list_valid, reduce_fn)
