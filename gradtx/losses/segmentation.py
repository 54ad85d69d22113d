"""Segmentation losses: Dice / Tversky, generalised Dice and binary Dice."""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradtx._validation import is_traced
from gradtx.losses._common import check_range, require_rank, require_same_shape

_REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(owner: str, reduction: Any) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{owner}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def dice_loss(
    predictions: Any,
    targets: Any,
    *,
    class_weights: Any = None,
    smooth: Any = 1.0,
    alpha: Any = 0.5,
    beta: Any = 0.5,
    apply_softmax: bool = True,
    reduction: str = "mean",
    ignore_background: bool = False,
    axis: Any = None,
) -> jax.Array:
    r"""Dice loss (Tversky loss for $\alpha \ne \beta$) per example and class.

    With probabilities $p$ (softmax over classes, or sigmoid for one channel), targets $t$, sums
    over the spatial axes, $I = \sum p t$, $P = \sum p$, $T = \sum t$ and smoothing $s$,

    $$
    \ell = 1 - \frac{I + s}{I + \alpha (P - I) + \beta (T - I) + s},
    $$

    the Dice loss for $\alpha = \beta = \tfrac12$; then weighted by class, and reduced over the
    classes.

    Args:
        predictions: floating logits (or probabilities, see `apply_softmax`) `[batch, ..., classes]`;
            a missing trailing class axis is added.
        targets: one-hot (or soft) targets of the same shape.
        class_weights: optional weights `[classes]`.
        smooth: $s$, `>= 0` (default 1.0), avoids 0/0 on empty classes.
        alpha: weight of false positives, `>= 0` (default 0.5).
        beta: weight of false negatives, `>= 0` (default 0.5).
        apply_softmax: turn logits into probabilities (default True); when False the predictions
            must sum to 1 over the class axis (checked when concrete).
        reduction: over the classes: `"mean"` (default), `"sum"` or `"none"`.
        ignore_background: drop class 0 (default False; ignored with a single class).
        axis: the axes summed over (default None: all but the first and the last).

    Returns:
        `[batch]` losses, or `[batch, classes]` with `reduction="none"`.

    Reference: Milletari, Navab and Ahmadi, [V-Net](https://arxiv.org/abs/1606.04797) (2016);
    Salehi, Erdogmus and Gholipour, [Tversky loss function](https://arxiv.org/abs/1706.05721) (2017).
    """
    owner = "dice_loss"
    _check_reduction(owner, reduction)
    check_range(owner, "smooth", smooth, low=0.0)
    check_range(owner, "alpha", alpha, low=0.0)
    check_range(owner, "beta", beta, low=0.0)
    predictions, targets = jnp.asarray(predictions), jnp.asarray(targets)
    if predictions.ndim == targets.ndim - 1:
        predictions = predictions[..., None]
    if targets.ndim == predictions.ndim - 1:
        targets = targets[..., None]
    require_same_shape(owner, "predictions", predictions, "targets", targets)
    if not apply_softmax and not is_traced(predictions):
        sums = np.asarray(jnp.sum(predictions, axis=-1))
        if not np.allclose(sums, 1.0, rtol=1e-5):
            raise ValueError(
                f"{owner}: with apply_softmax=False, predictions must sum to 1 over the class axis; "
                f"their sums range over [{sums.min():.6f}, {sums.max():.6f}]"
            )
    probs = predictions
    if apply_softmax:
        probs = (
            jax.nn.sigmoid(predictions)
            if predictions.shape[-1] == 1
            else jax.nn.softmax(predictions, axis=-1)
        )
    if axis is None:
        axis = tuple(range(1, probs.ndim - 1))
    intersection = jnp.sum(probs * targets, axis=axis)
    pred_sum = jnp.sum(probs, axis=axis)
    target_sum = jnp.sum(targets, axis=axis)
    denominator = (
        intersection + alpha * (pred_sum - intersection) + beta * (target_sum - intersection) + smooth
    )
    loss = 1.0 - (intersection + smooth) / denominator
    if class_weights is not None:
        require_rank(owner, "class_weights", class_weights, 1)
        loss = loss * class_weights
    if ignore_background and probs.shape[-1] > 1:
        loss = loss[..., 1:]
    if reduction == "mean":
        return jnp.mean(loss, axis=-1)
    if reduction == "sum":
        return jnp.sum(loss, axis=-1)
    return loss


def multiclass_generalized_dice_loss(
    predictions: Any,
    targets: Any,
    *,
    smooth: Any = 1.0,
    apply_softmax: bool = True,
    ignore_background: bool = False,
) -> jax.Array:
    r"""Generalised Dice loss: the Dice loss with classes weighted by inverse squared frequency.

    With $f_c$ the number of target pixels of class $c$ in the batch and $C$ classes,
    $w_c \propto 1 / (f_c^2 + 10^{-7})$, normalised so that $\sum_c w_c = C$; the result is the mean
    of the weighted per-example, per-class Dice losses.

    Args:
        predictions: floating logits `[batch, ..., classes]`.
        targets: one-hot targets of the same shape.
        smooth: smoothing constant, `>= 0` (default 1.0).
        apply_softmax: turn logits into probabilities (default True).
        ignore_background: drop class 0 (default False).

    Returns:
        The scalar loss.

    Reference: Sudre et al., [Generalised Dice overlap as a deep learning loss function for
    highly unbalanced segmentations](https://arxiv.org/abs/1707.03237) (2017).
    """
    require_same_shape("multiclass_generalized_dice_loss", "predictions", predictions, "targets", targets)
    targets = jnp.asarray(targets)
    frequencies = jnp.sum(targets, axis=tuple(range(targets.ndim - 1)))
    weights = 1.0 / (frequencies**2 + 1e-7)
    weights = weights / jnp.sum(weights) * len(weights)
    per_class = dice_loss(
        predictions,
        targets,
        class_weights=weights,
        smooth=smooth,
        apply_softmax=apply_softmax,
        reduction="none",
        ignore_background=ignore_background,
    )
    return jnp.mean(per_class)


def binary_dice_loss(
    predictions: Any, targets: Any, *, smooth: Any = 1.0, apply_sigmoid: bool = True
) -> jax.Array:
    r"""Dice loss of a binary (one-channel) segmentation, averaged over the channel.

    Predictions without a trailing size-1 channel get one (and so do the targets); see
    [`dice_loss`][gradtx.losses.dice_loss] for the formula.

    Args:
        predictions: floating logits `[batch, ...]` or `[batch, ..., 1]`.
        targets: binary targets of the same shape.
        smooth: smoothing constant, `>= 0` (default 1.0).
        apply_sigmoid: turn logits into probabilities with a sigmoid (default True).

    Returns:
        `[batch]` losses.
    """
    predictions, targets = jnp.asarray(predictions), jnp.asarray(targets)
    if predictions.ndim == targets.ndim and predictions.shape[-1] != 1:
        predictions, targets = predictions[..., None], targets[..., None]
    return dice_loss(predictions, targets, smooth=smooth, apply_softmax=apply_sigmoid, reduction="mean")
