"""Fenchel-Young losses: a generic constructor and the (binary and multiclass) sparsemax losses."""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from gradtx.losses._common import require_rank


def make_fenchel_young_loss(max_fun: Callable[..., Any]) -> Callable[..., jax.Array]:
    r"""Build the Fenchel-Young loss of a regularised max function.

    For a convex "max" function $\Omega^*$ (e.g. `jax.nn.logsumexp`, which gives the softmax
    cross-entropy up to the targets' entropy),

    $$
    \ell(\theta, y) = \Omega^*(\theta) - \langle y, \theta \rangle,
    $$

    applied over the last axis (leading axes are batch axes).

    Args:
        max_fun: function of a score vector `(n,)` returning a scalar; extra positional and keyword
            arguments given to the loss are passed on to it.

    Returns:
        `loss(scores, targets, *args, **kwargs)` returning one loss per example, shape `[...]`.

    Example:
        >>> import jax, jax.numpy as jnp, gradtx
        >>> loss = gradtx.losses.make_fenchel_young_loss(jax.nn.logsumexp)
        >>> round(float(loss(jnp.zeros(2), jnp.array([1.0, 0.0]))), 4)  # log 2
        0.6931

    Reference: Blondel, Martins and Niculae, [Learning with Fenchel-Young
    Losses](https://arxiv.org/abs/1901.02324), JMLR (2020).
    """
    if not callable(max_fun):
        raise TypeError(f"make_fenchel_young_loss: max_fun must be callable, got {type(max_fun).__name__}")
    vdot_last = jnp.vectorize(jnp.vdot, signature="(n),(n)->()")
    max_last = jnp.vectorize(max_fun, signature="(n)->()")

    def fenchel_young_loss(scores: Any, targets: Any, *args: Any, **kwargs: Any) -> jax.Array:
        return max_last(scores, *args, **kwargs) - vdot_last(targets, scores)

    return fenchel_young_loss


def sparsemax_loss(logits: Any, labels: Any) -> jax.Array:
    r"""Binary sparsemax loss, zero exactly when `jax.nn.sparse_sigmoid(logits) == labels`.

    $$
    \ell(x, y) = \mathrm{sparse\_plus}(\pm x), \quad -x \text{ for } y = 1,\ x \text{ for } y = 0 .
    $$

    Args:
        logits: floating scores.
        labels: labels in `{0, 1}`, broadcastable to `logits`.

    Returns:
        The loss of each element.

    Reference: Blondel, Martins and Niculae, [Learning with Fenchel-Young
    Losses](https://arxiv.org/abs/1901.02324), JMLR (2020), section 4.4.
    """
    return jax.nn.sparse_plus(jnp.where(labels, -logits, logits))


@jax.custom_jvp
def _unit_simplex_projection(values: jax.Array) -> jax.Array:
    """Euclidean projection of a vector onto the probability simplex (sort-based algorithm)."""
    n = values.shape[0]
    descending = jnp.sort(values)[::-1]
    running = jnp.cumsum(descending)
    ranks = jnp.arange(n) + 1
    support = jnp.count_nonzero(1 / ranks + (descending - running / ranks) > 0)
    return jax.nn.relu(1 / support + (values - running[support - 1] / support))


@_unit_simplex_projection.defjvp
def _unit_simplex_projection_jvp(primals: Any, tangents: Any) -> tuple[jax.Array, jax.Array]:
    # on its support the projection is a centring: d p = P (d v), P = diag(s) - s s^T / |s|
    (values,), (d_values,) = primals, tangents
    projected = _unit_simplex_projection(values)
    support = projected > 0
    size = jnp.count_nonzero(support)
    return projected, support * d_values - (jnp.dot(support, d_values) / size) * support


def _one_sparsemax_loss(scores: jax.Array, label: jax.Array) -> jax.Array:
    proba = _unit_simplex_projection(scores)
    margins = (scores - scores[label]).at[label].set(0.0)
    return jnp.dot(proba, jnp.where(proba, margins, 0.0)) + 0.5 * (1.0 - jnp.dot(proba, proba))


def multiclass_sparsemax_loss(scores: Any, labels: Any) -> jax.Array:
    r"""Multiclass sparsemax loss: the Fenchel-Young loss of sparsemax.

    With $p = \mathrm{sparsemax}(s)$ (the Euclidean projection of the scores onto the simplex)
    and correct class $c$,

    $$
    \ell(s, c) = \sum_k p_k (s_k - s_c) + \tfrac12 \left(1 - \|p\|^2\right).
    $$

    Args:
        scores: floating array `[batch, num_classes]`.
        labels: integer labels `[batch]`.

    Returns:
        The loss of each example, `[batch]`.

    Reference: Martins and Astudillo, [From Softmax to Sparsemax: A Sparse Model of Attention and
    Multi-Label Classification](https://arxiv.org/abs/1602.02068) (2016).
    """
    require_rank("multiclass_sparsemax_loss", "scores", scores, 2)
    return jax.vmap(_one_sparsemax_loss)(jnp.asarray(scores), jnp.asarray(labels))
