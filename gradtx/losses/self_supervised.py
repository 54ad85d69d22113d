"""Self-supervised and metric-learning losses: NT-Xent and the triplet margin loss."""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradtx.losses._common import check_range, require_dtype
from gradtx.losses.regression import cosine_similarity


def ntxent(embeddings: Any, labels: Any, temperature: Any = 0.07) -> jax.Array:
    r"""Normalised temperature-scaled cross-entropy (NT-Xent, the SimCLR contrastive loss).

    With $z_{ij} = \cos(e_i, e_j) / \tau$, $P(i)$ the other examples sharing $i$'s label and
    $N(i)$ those with another label, the loss averages over every positive pair $(i, j)$

    $$
    -\log \frac{e^{z_{ij}}}{e^{z_{ij}} + \sum_{k \in N(i)} e^{z_{ik}}} .
    $$

    Args:
        embeddings: floating array `[batch, dim]`.
        labels: integer array `[batch]`; examples with equal labels are positives of each other.
        temperature: $\tau$, `> 0` (default 0.07).

    Returns:
        The scalar loss (nan when there is no positive pair).

    Reference: Chen et al., [A Simple Framework for Contrastive Learning of Visual
    Representations](https://arxiv.org/abs/2002.05709) (2020).
    """
    require_dtype("ntxent", "embeddings", embeddings, jnp.floating)
    check_range("ntxent", "temperature", temperature, low=0.0, low_inclusive=False)
    embeddings = jnp.asarray(embeddings)
    if np.shape(labels)[0] != embeddings.shape[0]:
        raise ValueError(
            f"ntxent: labels and embeddings must have the same leading dimension, got {np.shape(labels)[0]} "
            f"labels for {embeddings.shape[0]} embeddings"
        )
    eps = jnp.finfo(embeddings.dtype).eps
    logits = cosine_similarity(embeddings[None, :, :], embeddings[:, None, :], epsilon=eps) / temperature
    labels = jnp.asarray(labels)
    same = labels[:, None] == labels[None, :]
    positives = same & ~jnp.eye(same.shape[0], dtype=bool)
    negative_logits = jnp.where(same, -jnp.inf, logits)
    positive_logits = jnp.where(positives, logits, -jnp.inf)
    # shift by the row maximum (held constant) so the exponentials cannot overflow
    row_max = jax.lax.stop_gradient(
        jnp.max(jnp.concatenate((negative_logits, positive_logits), axis=-1), axis=1, keepdims=True)
    )
    shifted_negatives = negative_logits - row_max
    shifted_positives = positive_logits - row_max
    denominator = jnp.sum(jnp.exp(shifted_negatives), axis=1, keepdims=True) + jnp.exp(shifted_positives)
    log_ratio = shifted_positives - jnp.log(denominator)
    return -jnp.where(positives, log_ratio, 0.0).sum() / positives.sum()


def triplet_margin_loss(
    anchors: Any,
    positives: Any,
    negatives: Any,
    axis: int = -1,
    norm_degree: Any = 2,
    margin: Any = 1.0,
    eps: Any = 1e-6,
) -> jax.Array:
    r"""Triplet margin loss: the positive should be closer to the anchor than the negative by `margin`.

    With $d(a, b) = \left(\sum (a - b)^q + \varepsilon\right)^{1/q}$ along `axis`,

    $$
    \ell(a, p, n) = \max\left(d(a, p) - d(a, n) + m,\ 0\right).
    $$

    Args:
        anchors: floating array `[..., dim]`.
        positives: floating array of the same shape.
        negatives: floating array of the same shape.
        axis: the embedding axis (default -1).
        norm_degree: $q$, `> 0` (default 2; use an even integer, or inputs for which
            $(a - b)^q$ is defined).
        margin: $m$ (default 1.0).
        eps: $\varepsilon$, `>= 0`, keeps the root differentiable at zero distance (default 1e-6).

    Returns:
        The loss of each triplet, the inputs' shape without `axis`.

    Reference: Balntas et al., [Learning local feature descriptors with triplets and shallow
    convolutional neural networks](https://bmva-archive.org.uk/bmvc/2016/papers/paper119/), BMVC 2016.
    """
    for name, value in (("anchors", anchors), ("positives", positives), ("negatives", negatives)):
        require_dtype("triplet_margin_loss", name, value, jnp.floating)
    check_range("triplet_margin_loss", "norm_degree", norm_degree, low=0.0, low_inclusive=False)
    check_range("triplet_margin_loss", "margin", margin)
    check_range("triplet_margin_loss", "eps", eps, low=0.0)

    def distance(a: Any, b: Any) -> jax.Array:
        return jnp.power(jnp.power(a - b, norm_degree).sum(axis) + eps, 1 / norm_degree)

    return jnp.maximum(distance(anchors, positives) - distance(anchors, negatives) + margin, 0)
