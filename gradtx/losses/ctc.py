"""Connectionist temporal classification (CTC) loss."""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradtx._validation import is_traced
from gradtx.losses._common import check_range, require_rank, require_same_shape


def ctc_loss_with_forward_probs(
    logits: Any,
    logit_paddings: Any,
    labels: Any,
    label_paddings: Any,
    *,
    blank_id: int = 0,
    log_epsilon: Any = -1e5,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    r"""CTC loss, with the log forward probabilities of the blank and label states.

    The loss of a sequence is $-\log p(y \mid x)$, the sum over every alignment $\pi$ (the labels
    with blanks $\phi$ inserted and symbols repeated) of $\prod_t p(\pi_t \mid x)$, computed by
    the forward recursion over time in log space. The auxiliary outputs are

    $$
    \alpha_\phi(t, n) = \log p(\pi_{1:t} \text{ ends in a blank after } y_{1:n}), \qquad
    \alpha_y(t, n) = \log p(\pi_{1:t} \text{ ends in } y_n),
    $$

    with `log_epsilon` standing for $\log 0$ (a repeated label needs a blank between its copies).

    Args:
        logits: floating `[B, T, K]` logits over `K` classes, the blank included.
        logit_paddings: `[B, T]`, 1.0 on padded time steps, 0.0 elsewhere.
        labels: integer `[B, N]` label sequences.
        label_paddings: `[B, N]`, 1.0 on padded labels; labels must be right-padded (zeros then
            ones in each row).
        blank_id: index of the blank class, in `[0, K)` (default 0).
        log_epsilon: finite stand-in for $\log 0$, `< 0` (default -1e5).

    Returns:
        `(loss, logalpha_blank, logalpha_label)`: the `[B]` losses and two `[T, B, N+1]` and
        `[T, B, N]` arrays of log forward probabilities.

    Reference: Graves et al., [Connectionist temporal classification: labelling unsegmented sequence
    data with recurrent neural networks](https://dl.acm.org/doi/10.1145/1143844.1143891), ICML 2006.
    """
    owner = "ctc_loss_with_forward_probs"
    require_rank(owner, "logits", logits, 3)
    require_rank(owner, "labels", labels, 2)
    require_same_shape(owner, "labels", labels, "label_paddings", label_paddings)
    require_same_shape(
        owner, "logits[..., 0]", np.empty(np.shape(logits)[:2]), "logit_paddings", logit_paddings
    )
    batch, _, num_classes = np.shape(logits)
    label_batch, max_labels = np.shape(labels)
    if label_batch != batch:
        raise ValueError(f"{owner}: labels must have batch size {batch} (that of logits), got {label_batch}")
    if not is_traced(blank_id):
        if isinstance(blank_id, bool) or not isinstance(blank_id, (int, np.integer)):
            raise TypeError(f"{owner}: blank_id must be an int, got {type(blank_id).__name__}")
        if not 0 <= blank_id < num_classes:
            raise ValueError(f"{owner}: blank_id must be in [0, {num_classes}), got {blank_id}")
    check_range(owner, "log_epsilon", log_epsilon, high=0.0, high_inclusive=False)

    log_probs = jax.nn.log_softmax(logits)
    label_lengths = max_labels - jnp.sum(label_paddings, axis=1).astype(jnp.int32)
    # repeat[b, n] = 1 when label n equals label n+1: the two copies need a blank between them
    repeat = jnp.pad((labels[:, :-1] == labels[:, 1:]).astype(jnp.float32), ((0, 0), (0, 1)))

    blank_log_probs = jnp.transpose(log_probs[:, :, blank_id : blank_id + 1], (1, 0, 2))  # [T, B, 1]
    label_one_hot = jax.nn.one_hot(labels, num_classes=num_classes)  # [B, N, K]
    label_log_probs = jnp.transpose(
        jnp.einsum("btk,bnk->btn", log_probs, label_one_hot), (1, 0, 2)
    )  # [T, B, N]

    blank_init = (jnp.ones((batch, max_labels + 1)) * log_epsilon).at[:, 0].set(0.0)
    label_init = jnp.ones((batch, max_labels)) * log_epsilon

    def add_to_blank(blank: jax.Array, score: jax.Array) -> jax.Array:
        # blank state n (after n labels) also collects paths ending in label n
        return jnp.concatenate([blank[:, :1], jnp.logaddexp(blank[:, 1:], score)], axis=-1)

    def step(carry: tuple[jax.Array, jax.Array], inputs: Any) -> tuple[Any, Any]:
        blank_prev_raw, label_prev = carry
        label_lp, blank_lp, pad = inputs
        blank_prev = add_to_blank(blank_prev_raw, label_prev + log_epsilon * repeat)
        label_next = jnp.logaddexp(blank_prev[:, :-1] + label_lp, label_prev + label_lp)
        blank_next = add_to_blank(blank_prev + blank_lp, label_prev + blank_lp + log_epsilon * (1.0 - repeat))
        pad = pad.reshape((batch, 1))
        label_next = pad * label_prev + (1.0 - pad) * label_next
        blank_next = pad * blank_prev_raw + (1.0 - pad) * blank_next
        return (blank_next, label_next), (blank_next, label_next)

    inputs = (label_log_probs, blank_log_probs, jnp.asarray(logit_paddings).transpose((1, 0)))
    _, (log_alpha_blank, log_alpha_label) = jax.lax.scan(step, (blank_init, label_init), inputs)

    blank_last = add_to_blank(log_alpha_blank[-1], log_alpha_label[-1])
    log_alpha_blank = log_alpha_blank.at[-1].set(blank_last)
    pick_length = jax.nn.one_hot(label_lengths, num_classes=max_labels + 1)  # [B, N+1]
    loss = -jnp.einsum("bn,bn->b", blank_last, pick_length)
    return loss, log_alpha_blank, log_alpha_label


def ctc_loss(
    logits: Any,
    logit_paddings: Any,
    labels: Any,
    label_paddings: Any,
    *,
    blank_id: int = 0,
    log_epsilon: Any = -1e5,
) -> jax.Array:
    """CTC loss of each sequence, `[B]`.

    See [`ctc_loss_with_forward_probs`][gradtx.losses.ctc_loss_with_forward_probs] for the
    definition and the arguments (`blank_id` in `[0, K)`, default 0; `log_epsilon < 0`, default
    -1e5).

    Args:
        logits: floating `[B, T, K]` logits, the blank included.
        logit_paddings: `[B, T]` padding indicators (1.0 = padded).
        labels: integer `[B, N]` label sequences, right-padded.
        label_paddings: `[B, N]` padding indicators.
        blank_id: index of the blank class (default 0).
        log_epsilon: stand-in for log 0 (default -1e5).

    Returns:
        The `[B]` negative log-likelihoods.
    """
    loss, _, _ = ctc_loss_with_forward_probs(
        logits, logit_paddings, labels, label_paddings, blank_id=blank_id, log_epsilon=log_epsilon
    )
    return loss
