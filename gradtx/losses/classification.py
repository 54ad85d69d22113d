"""Classification losses: cross-entropies (softmax, sigmoid, focal, poly), hinge and perceptron losses.

Every function returns one loss per example (no reduction); average or sum it yourself. The numbers
are optax 0.2.8's, bit for bit under `jax.jit` on CPU.
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradtx.losses._common import (
    Axis,
    broadcast_where,
    check_range,
    normalize_axis,
    require_dtype,
    require_same_shape,
)


def sigmoid_binary_cross_entropy(logits: Any, labels: Any) -> jax.Array:
    r"""Element-wise binary cross-entropy of independent sigmoid predictions.

    $$
    \ell(x, y) = -y \log \sigma(x) - (1 - y) \log \sigma(-x),
    $$

    computed with `log_sigmoid` on both sides, so it stays finite for any finite logit. Each
    element is its own binary problem (multi-label classification): labels may be hard (`{0, 1}`)
    or soft (probabilities in `[0, 1]`).

    Args:
        logits: floating array of unnormalised log-odds of the positive class.
        labels: targets broadcastable to `logits`, cast to `logits`' dtype.

    Returns:
        The loss of each element, with the broadcast shape of `logits` and `labels`.

    Reference: Goodfellow, Bengio and Courville, *Deep Learning*, section 3.13 (2016).
    """
    require_dtype("sigmoid_binary_cross_entropy", "logits", logits, jnp.floating)
    labels = jnp.astype(labels, jnp.result_type(logits))
    log_p = jax.nn.log_sigmoid(logits)
    log_not_p = jax.nn.log_sigmoid(-logits)
    return -labels * log_p - (1.0 - labels) * log_not_p


def sigmoid_focal_loss(logits: Any, labels: Any, *, alpha: Any = None, gamma: Any = 2.0) -> jax.Array:
    r"""Focal loss: a binary cross-entropy down-weighted on well-classified elements.

    With $p = \sigma(x)$, $p_t = y p + (1 - y)(1 - p)$ and $\alpha_t = y\alpha + (1 - y)(1 - \alpha)$,

    $$
    \ell(x, y) = \alpha_t \, (1 - p_t)^{\gamma} \, \mathrm{BCE}(x, y),
    $$

    where $\log(1 - p_t)$ is computed as a weighted log-sum-exp of $\log\sigma(x)$ and
    $\log\sigma(-x)$, so the modulating factor is stable for any logit and any $\gamma$. Without
    `alpha` the factor $\alpha_t$ is 1.

    Args:
        logits: floating array of log-odds.
        labels: targets in `[0, 1]` (hard or soft), broadcastable to `logits`.
        alpha: optional balance between positives and negatives, in `[0, 1]` (default None: no
            weighting).
        gamma: focusing exponent, `>= 0` (default 2.0; 0 gives the plain cross-entropy).

    Returns:
        The loss of each element, with `logits`' shape.

    Reference: Lin et al., [Focal Loss for Dense Object Detection](https://arxiv.org/abs/1708.02002)
    (2017).
    """
    require_dtype("sigmoid_focal_loss", "logits", logits, jnp.floating)
    check_range("sigmoid_focal_loss", "alpha", alpha, low=0.0, high=1.0)
    check_range("sigmoid_focal_loss", "gamma", gamma, low=0.0)
    labels = jnp.astype(labels, jnp.result_type(logits))
    cross_entropy = sigmoid_binary_cross_entropy(logits, labels)
    both_logs = jnp.stack([jax.nn.log_sigmoid(logits), jax.nn.log_sigmoid(-logits)], axis=-1)
    log_one_minus_p_t = jax.scipy.special.logsumexp(
        both_logs, axis=-1, b=jnp.stack([1 - labels, labels], axis=-1)
    )
    loss = cross_entropy * jnp.exp(gamma * log_one_minus_p_t)
    if alpha is None:
        return loss
    return (alpha * labels + (1.0 - alpha) * (1.0 - labels)) * loss


@jax.custom_jvp
def _weighted_log_softmax(x: jax.Array, weights: jax.Array) -> jax.Array:
    """`weights * log_softmax(x)` over the last axis, with 0 wherever the weight is 0 (0 log 0 = 0)."""
    log_probs = jax.nn.log_softmax(x, axis=-1)
    return jnp.where(weights != 0.0, weights * log_probs, jnp.zeros_like(log_probs))


@_weighted_log_softmax.defjvp
def _weighted_log_softmax_jvp(primals: Any, tangents: Any) -> tuple[jax.Array, jax.Array]:
    # the derivative of w * log_softmax(x) written without log_softmax(x) in the x-term, so a
    # logit of -inf with weight 0 contributes 0 instead of 0 * inf = nan
    x, weights = primals
    dx, dweights = tangents
    log_probs = jax.nn.log_softmax(x, axis=-1)
    value = jnp.where(weights != 0.0, weights * log_probs, jnp.zeros_like(log_probs))
    mean_dx = jnp.sum(dx * jax.nn.softmax(x, axis=-1), axis=-1, keepdims=True)
    return value, weights * dx - weights * mean_dx + dweights * log_probs


def safe_softmax_cross_entropy(logits: Any, labels: Any) -> jax.Array:
    r"""Softmax cross-entropy over the last axis that treats $0 \cdot \log 0$ as 0.

    $$
    \ell(x, y) = -\sum_j y_j \log \mathrm{softmax}(x)_j ,
    $$

    like [`softmax_cross_entropy`][gradtx.losses.softmax_cross_entropy], but a class with logit
    $-\infty$ and label 0 contributes 0 to the loss and to its gradient (instead of nan), so
    masking classes by setting their logits to `-inf` is safe.

    Args:
        logits: floating array `[..., num_classes]`.
        labels: probability distributions broadcastable to `logits`.

    Returns:
        The loss of each example, shape `[...]`.
    """
    require_dtype("safe_softmax_cross_entropy", "logits", logits, jnp.floating)
    return -jnp.sum(_weighted_log_softmax(logits, labels), axis=-1)


def softmax_cross_entropy(logits: Any, labels: Any, axis: Axis = -1, where: Any = None) -> jax.Array:
    r"""Cross-entropy between target distributions and the softmax of the logits.

    $$
    \ell(x, y) = -\sum_j y_j \log \frac{e^{x_j}}{\sum_k e^{x_k}} ,
    $$

    the sums running over `axis`. Also known as categorical cross-entropy.

    Args:
        logits: floating array of unnormalised log-probabilities, e.g. `[batch, num_classes]`.
        labels: target distributions (one-hot or smoothed), broadcastable to `logits`.
        axis: the class axis or axes (default -1; None: all axes).
        where: optional boolean mask of the elements to include, of `logits`' shape or of the
            per-example shape (it is then broadcast over `axis`).

    Returns:
        The loss of each example, `logits`' shape without `axis`.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> logits = jnp.array([[1.2, -0.8, -0.5], [0.9, -1.2, 1.1]])
        >>> labels = jnp.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
        >>> [round(float(v), 4) for v in gradtx.losses.softmax_cross_entropy(logits, labels)]
        [0.2761, 2.9518]

    Reference: [Cross-entropy](https://en.wikipedia.org/wiki/Cross-entropy), Wikipedia.
    """
    require_dtype("softmax_cross_entropy", "logits", logits, jnp.floating)
    where = broadcast_where(where, np.ndim(logits), axis)
    log_probs = jax.nn.log_softmax(logits, axis, where)
    return -(labels * log_probs).sum(axis, where=where)


def softmax_cross_entropy_with_integer_labels(
    logits: Any, labels: Any, axis: int | tuple[int, ...] = -1, where: Any = None
) -> jax.Array:
    r"""Softmax cross-entropy with the correct class given as an integer index.

    $$
    \ell(x, c) = \log \sum_k e^{x_k} - x_c ,
    $$

    which equals [`softmax_cross_entropy`][gradtx.losses.softmax_cross_entropy] with one-hot
    labels, without building them (and without subtracting the normaliser from every logit).

    Args:
        logits: floating array, e.g. `[batch, num_classes]`.
        labels: integer array of the per-example shape, values in `[0, num_classes)`.
        axis: the class axis (default -1), or a tuple of axes: the label is then a flat (C-order)
            index into the slice those axes span.
        where: optional boolean mask, of `logits`' shape or the per-example shape; an example with
            nothing included gets loss 0.

    Returns:
        The loss of each example, `logits`' shape without `axis`.

    Reference: [Multinomial logistic regression](https://en.wikipedia.org/wiki/Multinomial_logistic_regression),
    Wikipedia.
    """
    owner = "softmax_cross_entropy_with_integer_labels"
    require_dtype(owner, "logits", logits, jnp.floating)
    require_dtype(owner, "labels", labels, jnp.integer)
    logits = jnp.asarray(logits)
    where = broadcast_where(where, logits.ndim, axis)
    if isinstance(axis, tuple):
        # move the class axes last (keeping their order) and flatten them into one
        class_axes = tuple(normalize_axis(owner, a, logits.ndim) for a in axis)
        batch_axes = tuple(a for a in range(logits.ndim) if a not in class_axes)
        logits = logits.transpose(batch_axes + class_axes)
        logits = logits.reshape((*logits.shape[: len(batch_axes)], -1))
        if where is not None:
            where = jnp.asarray(where).transpose(batch_axes + class_axes)
            where = where.reshape((*where.shape[: len(batch_axes)], -1))
        axis = len(batch_axes)
    elif isinstance(axis, (int, np.integer)) and not isinstance(axis, bool):
        axis = normalize_axis(owner, axis, logits.ndim)
    else:
        raise TypeError(f"{owner}: axis must be an int or a tuple of ints, got {type(axis).__name__}")
    label_logits = jnp.take_along_axis(logits, jnp.expand_dims(labels, axis), axis=axis).take(0, axis=axis)
    loss = jax.nn.logsumexp(logits, axis=axis, where=where) - label_logits
    if where is not None:
        loss = jnp.where(jnp.any(where, axis), loss, 0.0)
    return loss


def poly_loss_cross_entropy(
    logits: Any, labels: Any, *, epsilon: Any = 2.0, axis: Axis = -1, where: Any = None
) -> jax.Array:
    r"""Poly-1 loss: the softmax cross-entropy plus a weighted first polynomial term.

    With $p = \mathrm{softmax}(x)$,

    $$
    \ell(x, y) = \mathrm{CE}(x, y) + \epsilon \sum_j y_j (1 - p_j) .
    $$

    Args:
        logits: floating array `[..., num_classes]`.
        labels: floating target distributions broadcastable to `logits`.
        epsilon: coefficient of the first polynomial term, any real (default 2.0, the paper's
            choice for ImageNet; -1.0 for detection and segmentation).
        axis: the class axis or axes (default -1).
        where: optional boolean mask of the elements to include (of `logits`' shape).

    Returns:
        The loss of each example.

    Reference: Leng et al., [PolyLoss: A Polynomial Expansion Perspective of Classification Loss
    Functions](https://arxiv.org/abs/2204.12511) (2022).
    """
    require_dtype("poly_loss_cross_entropy", "logits", logits, jnp.floating)
    require_dtype("poly_loss_cross_entropy", "labels", labels, jnp.floating)
    check_range("poly_loss_cross_entropy", "epsilon", epsilon)
    probs = jax.nn.softmax(logits, axis=axis, where=where)
    one_minus_p_t = jnp.sum(labels * (1 - probs), axis=axis, where=where)
    return softmax_cross_entropy(logits, labels, axis=axis, where=where) + epsilon * one_minus_p_t


def hinge_loss(predictor_outputs: Any, targets: Any) -> jax.Array:
    r"""Binary hinge loss, $\ell(s, t) = \max(0, 1 - s\,t)$ with targets $t \in \{-1, 1\}$.

    Args:
        predictor_outputs: decision values $s$.
        targets: labels in `{-1, 1}`, broadcastable to `predictor_outputs`.

    Returns:
        The loss of each element.

    Reference: [Hinge loss](https://en.wikipedia.org/wiki/Hinge_loss), Wikipedia.
    """
    return jnp.maximum(0, 1 - predictor_outputs * targets)


def perceptron_loss(predictor_outputs: Any, targets: Any) -> jax.Array:
    r"""Binary perceptron loss, $\ell(s, t) = \max(0, -s\,t)$ with targets $t \in \{-1, 1\}$.

    Args:
        predictor_outputs: scores $s$.
        targets: labels in `{-1, 1}`, of the same shape.

    Returns:
        The loss of each element.

    Reference: [Perceptron](https://en.wikipedia.org/wiki/Perceptron), Wikipedia.
    """
    require_same_shape("perceptron_loss", "predictor_outputs", predictor_outputs, "targets", targets)
    return jnp.maximum(0, -predictor_outputs * targets)


_dot_last = jnp.vectorize(jnp.dot, signature="(n),(n)->()")


def multiclass_hinge_loss(scores: Any, labels: Any) -> jax.Array:
    r"""Multiclass hinge loss, $\ell(s, c) = \max_k (s_k + [k \ne c]) - s_c$.

    Args:
        scores: floating array `[..., num_classes]`.
        labels: integer labels of the per-example shape.

    Returns:
        The loss of each example, shape `[...]`.

    Reference: [Hinge loss](https://en.wikipedia.org/wiki/Hinge_loss), Wikipedia.
    """
    one_hot = jax.nn.one_hot(labels, np.shape(scores)[-1])
    return jnp.max(scores + 1.0 - one_hot, axis=-1) - _dot_last(scores, one_hot)


def multiclass_perceptron_loss(scores: Any, labels: Any) -> jax.Array:
    r"""Multiclass perceptron loss, $\ell(s, c) = \max_k s_k - s_c$.

    Args:
        scores: floating array `[..., num_classes]`.
        labels: integer labels of the per-example shape.

    Returns:
        The loss of each example, shape `[...]`.

    Reference: Collins, *Discriminative training methods for hidden Markov models: theory and
    experiments with perceptron algorithms*, EMNLP 2002.
    """
    one_hot = jax.nn.one_hot(labels, np.shape(scores)[-1])
    return jnp.max(scores, axis=-1) - _dot_last(scores, one_hot)
