"""gradtx.losses against optax.losses 0.2.8, plus closed-form answers, stability and validation.

Every comparison is bit for bit (values and gradients, both sides under `jax.jit`, CPU float32).
"""

import functools
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import gradtx
from gradtx import losses

R = np.random.default_rng(0)


def normal(*shape: int) -> np.ndarray:
    return R.normal(size=shape).astype(np.float32)


def uniform(*shape: int) -> np.ndarray:
    return R.uniform(size=shape).astype(np.float32)


def probs(*shape: int, axis: int = -1) -> np.ndarray:
    x = np.exp(normal(*shape))
    return (x / x.sum(axis=axis, keepdims=True)).astype(np.float32)


def ints(high: int, *shape: int) -> np.ndarray:
    return R.integers(0, high, size=shape).astype(np.int32)


def mask(*shape: int) -> np.ndarray:
    m = R.uniform(size=shape) < 0.7
    m[..., 0] = True
    return m


def one_hot(labels: np.ndarray, k: int) -> np.ndarray:
    return np.eye(k, dtype=np.float32)[labels]


def seg_logits() -> np.ndarray:
    return normal(2, 4, 4, 3)


def seg_targets() -> np.ndarray:
    return one_hot(ints(3, 2, 4, 4), 3)


LOG_PROBS = np.log(probs(3, 5))
PROBS_WITH_ZEROS = probs(3, 5)
PROBS_WITH_ZEROS[0, 1] = 0.0
MASKED_LOGITS = normal(3, 5)
MASKED_LOGITS[:, 3] = -np.inf
MASKED_LABELS = probs(3, 5)
MASKED_LABELS[:, 3] = 0.0
MASKED_LABELS /= MASKED_LABELS.sum(-1, keepdims=True)

# ctc inputs: 2 sequences, 6 frames, 4 classes (0 = blank), labels with a repeat and padding
CTC_LOGITS = normal(2, 6, 4)
CTC_LOGIT_PADS = np.array([[0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 1, 1]], np.float32)
CTC_LABELS = np.array([[1, 1, 2], [3, 2, 0]], np.int32)
CTC_LABEL_PADS = np.array([[0, 0, 0], [0, 0, 1]], np.float32)

# name -> list of (case id, positional arrays, static keyword arguments)
Case = tuple[str, str, tuple[Any, ...], dict[str, Any]]
CASES: list[Case] = [
    ("sigmoid_binary_cross_entropy", "soft", (normal(4, 5), uniform(4, 5)), {}),
    ("sigmoid_binary_cross_entropy", "hard_int", (normal(4, 5), ints(2, 4, 5)), {}),
    ("sigmoid_focal_loss", "default", (normal(4, 5), ints(2, 4, 5)), {}),
    ("sigmoid_focal_loss", "alpha_gamma", (normal(4, 5), uniform(4, 5)), {"alpha": 0.25, "gamma": 1.5}),
    ("sigmoid_focal_loss", "gamma0", (normal(4, 5), ints(2, 4, 5)), {"gamma": 0.0}),
    ("softmax_cross_entropy", "default", (normal(4, 5), probs(4, 5)), {}),
    ("softmax_cross_entropy", "axis0", (normal(4, 5), probs(4, 5, axis=0)), {"axis": 0}),
    ("softmax_cross_entropy", "axes12", (normal(2, 3, 4), probs(2, 3, 4)), {"axis": (1, 2)}),
    ("softmax_cross_entropy", "where_full", (normal(4, 5), probs(4, 5)), {"where": mask(4, 5)}),
    (
        "softmax_cross_entropy",
        "where_batch",
        (normal(4, 5), probs(4, 5)),
        {"where": np.array([1, 0, 1, 1], bool)},
    ),
    ("softmax_cross_entropy_with_integer_labels", "default", (normal(4, 5), ints(5, 4)), {}),
    ("softmax_cross_entropy_with_integer_labels", "axis0", (normal(5, 4), ints(5, 4)), {"axis": 0}),
    (
        "softmax_cross_entropy_with_integer_labels",
        "axes23",
        (normal(1, 2, 3, 4), ints(12, 1, 2)),
        {"axis": (2, 3)},
    ),
    ("softmax_cross_entropy_with_integer_labels", "where", (normal(4, 5), ints(1, 4)), {"where": mask(4, 5)}),
    (
        "softmax_cross_entropy_with_integer_labels",
        "where_none",
        (normal(2, 5), ints(1, 2)),
        {"where": np.array([[True] * 5, [False] * 5])},
    ),
    ("safe_softmax_cross_entropy", "default", (normal(4, 5), probs(4, 5)), {}),
    ("safe_softmax_cross_entropy", "neg_inf", (MASKED_LOGITS, MASKED_LABELS), {}),
    ("poly_loss_cross_entropy", "default", (normal(4, 5), probs(4, 5)), {}),
    (
        "poly_loss_cross_entropy",
        "eps_axis",
        (normal(4, 5), probs(4, 5, axis=0)),
        {"epsilon": -1.0, "axis": 0},
    ),
    ("poly_loss_cross_entropy", "where", (normal(4, 5), probs(4, 5)), {"where": mask(4, 5)}),
    ("hinge_loss", "default", (normal(6), np.sign(normal(6))), {}),
    ("perceptron_loss", "default", (normal(6), np.sign(normal(6))), {}),
    ("multiclass_hinge_loss", "default", (normal(4, 5), ints(5, 4)), {}),
    ("multiclass_perceptron_loss", "default", (normal(4, 5), ints(5, 4)), {}),
    ("kl_divergence", "default", (LOG_PROBS, PROBS_WITH_ZEROS), {}),
    ("kl_divergence", "axis_none", (LOG_PROBS, PROBS_WITH_ZEROS), {"axis": None}),
    ("kl_divergence", "where", (LOG_PROBS, PROBS_WITH_ZEROS), {"where": mask(3, 5)}),
    ("kl_divergence_with_log_targets", "default", (LOG_PROBS, np.log(probs(3, 5))), {}),
    ("kl_divergence_with_log_targets", "axis0", (LOG_PROBS, np.log(probs(3, 5))), {"axis": 0}),
    ("generalized_kl_divergence", "default", (normal(3, 5), uniform(3, 5)), {}),
    ("generalized_kl_divergence", "where", (normal(3, 5), uniform(3, 5)), {"where": mask(3, 5)}),
    ("convex_kl_divergence", "default", (normal(3, 5), uniform(3, 5)), {}),
    ("smooth_labels", "default", (one_hot(ints(5, 4), 5),), {"alpha": 0.1}),
    ("smooth_labels", "axis0", (one_hot(ints(5, 4), 5),), {"alpha": 0.3, "axis": 0}),
    ("smooth_labels", "where", (one_hot(ints(5, 4), 5),), {"alpha": 0.2, "where": mask(4, 5)}),
    ("squared_error", "targets", (normal(4, 3), normal(4, 3)), {}),
    ("squared_error", "residuals", (normal(4, 3),), {}),
    ("l2_loss", "targets", (normal(4, 3), normal(4, 3)), {}),
    ("l2_loss", "residuals", (normal(4, 3),), {}),
    ("huber_loss", "default", (3 * normal(4, 3), normal(4, 3)), {}),
    ("huber_loss", "delta", (3 * normal(4, 3),), {"delta": 0.5}),
    ("log_cosh", "default", (5 * normal(4, 3), normal(4, 3)), {}),
    ("log_cosh", "residuals", (5 * normal(4, 3),), {}),
    ("cosine_similarity", "default", (normal(4, 3), normal(4, 3)), {}),
    ("cosine_similarity", "eps_axis", (normal(4, 3), normal(4, 3)), {"epsilon": 0.1, "axis": 0}),
    ("cosine_similarity", "where", (normal(4, 3), normal(4, 3)), {"where": mask(4, 3)}),
    ("cosine_distance", "default", (normal(4, 3), normal(4, 3)), {}),
    ("cosine_distance", "eps_where", (normal(4, 3), normal(4, 3)), {"epsilon": 1e-3, "where": mask(4, 3)}),
    ("sparsemax_loss", "default", (normal(6), ints(2, 6)), {}),
    ("multiclass_sparsemax_loss", "default", (2 * normal(4, 5), ints(5, 4)), {}),
    ("ranking_softmax_loss", "default", (normal(3, 5), ints(3, 3, 5)), {}),
    (
        "ranking_softmax_loss",
        "where_weights",
        (normal(3, 5), ints(3, 3, 5)),
        {"where": mask(3, 5), "weights": uniform(3, 5)},
    ),
    (
        "ranking_softmax_loss",
        "no_reduce",
        (normal(3, 5), ints(3, 3, 5)),
        {"where": np.array([[True] * 5, [False] * 5, [True] * 5]), "reduce_fn": None},
    ),
    ("ranking_softmax_loss", "sum", (normal(3, 5), ints(3, 3, 5)), {"reduce_fn": jnp.sum}),
    ("ranking_softmax_loss", "all_masked", (normal(2, 5), ints(3, 2, 5)), {"where": np.zeros((2, 5), bool)}),
    ("ntxent", "default", (normal(6, 4), np.array([0, 0, 1, 1, 2, 2], np.int32)), {}),
    ("ntxent", "temperature", (normal(6, 4), np.array([0, 1, 1, 0, 2, 2], np.int32)), {"temperature": 0.5}),
    ("triplet_margin_loss", "default", (normal(4, 3), normal(4, 3), normal(4, 3)), {}),
    (
        "triplet_margin_loss",
        "options",
        (normal(3, 4), normal(3, 4), normal(3, 4)),
        {"axis": 0, "norm_degree": 4, "margin": 0.5, "eps": 1e-3},
    ),
    ("dice_loss", "default", (seg_logits(), seg_targets()), {}),
    (
        "dice_loss",
        "tversky_weights",
        (seg_logits(), seg_targets()),
        {"alpha": 0.3, "beta": 0.7, "class_weights": uniform(3), "smooth": 0.5},
    ),
    (
        "dice_loss",
        "none_background",
        (seg_logits(), seg_targets()),
        {"reduction": "none", "ignore_background": True},
    ),
    ("dice_loss", "sum_axis", (seg_logits(), seg_targets()), {"reduction": "sum", "axis": (1,)}),
    ("dice_loss", "one_channel", (normal(2, 4, 4), ints(2, 2, 4, 4).astype(np.float32)), {}),
    ("multiclass_generalized_dice_loss", "default", (seg_logits(), seg_targets()), {}),
    (
        "multiclass_generalized_dice_loss",
        "background",
        (seg_logits(), seg_targets()),
        {"ignore_background": True, "smooth": 0.1},
    ),
    ("binary_dice_loss", "default", (normal(2, 4, 4), ints(2, 2, 4, 4).astype(np.float32)), {}),
    (
        "binary_dice_loss",
        "channel",
        (normal(2, 4, 4, 1), ints(2, 2, 4, 4, 1).astype(np.float32)),
        {"smooth": 0.0},
    ),
    (
        "ctc_loss",
        "blank3",
        (CTC_LOGITS, CTC_LOGIT_PADS, np.array([[1, 1, 2], [0, 2, 0]], np.int32), CTC_LABEL_PADS),
        {"blank_id": 3, "log_epsilon": -1e4},
    ),
    # bfloat16 inputs: same dtype out, same bits
    ("softmax_cross_entropy", "bf16", (normal(4, 5).astype(jnp.bfloat16), probs(4, 5).astype(jnp.bfloat16)), {}),
    ("softmax_cross_entropy_with_integer_labels", "bf16", (normal(4, 5).astype(jnp.bfloat16), ints(5, 4)), {}),
    ("sigmoid_binary_cross_entropy", "bf16", (normal(4, 5).astype(jnp.bfloat16), uniform(4, 5)), {}),
    ("huber_loss", "bf16", ((3 * normal(4, 3)).astype(jnp.bfloat16),), {"delta": 0.5}),
    ("ctc_loss_with_forward_probs", "default", (CTC_LOGITS, CTC_LOGIT_PADS, CTC_LABELS, CTC_LABEL_PADS), {}),
]


def _jitted(module: Any, name: str, kwargs: dict[str, Any]) -> tuple[Callable[..., Any], Callable[..., Any]]:
    fn = functools.partial(getattr(module, name), **kwargs)

    def total(*args: Any) -> Any:
        out = fn(*args)
        return jnp.sum(out[0] if isinstance(out, tuple) else out)

    return jax.jit(fn), jax.jit(jax.grad(total))


def _assert_bitwise(ours: Any, theirs: Any) -> None:
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), strict=True)


@pytest.mark.parametrize(("name", "case", "args", "kwargs"), CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_same_bits_as_optax(name: str, case: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Values, and gradients with respect to the first argument, equal optax's bit for bit under jit."""
    args = tuple(jnp.asarray(a) for a in args)
    kwargs = {k: jnp.asarray(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    # optax broadcasts (e.g. dice class weights [C] against [B, C]): allow it here as optax does
    with warnings.catch_warnings(), jax.numpy_rank_promotion("allow"):
        warnings.simplefilter("ignore", DeprecationWarning)
        ours_value, ours_grad = _jitted(losses, name, kwargs)
        theirs_value, theirs_grad = _jitted(optax.losses, name, kwargs)
        _assert_bitwise(ours_value(*args), theirs_value(*args))
        # the gradient of the CTC scan costs ~8 s of compilation: checked once, on the forward-probs case
        if jnp.issubdtype(args[0].dtype, jnp.floating) and name != "ctc_loss":
            _assert_bitwise(ours_grad(*args), theirs_grad(*args))


def test_every_optax_loss_is_provided_and_exported() -> None:
    optax_names = {n for n in dir(optax.losses) if not n.startswith("_")}
    assert set(losses.__all__) == optax_names
    assert {name for name, *_ in CASES} | {"make_fenchel_young_loss"} == optax_names
    top_level = {n for n in optax_names if hasattr(optax, n)}
    for name in top_level:
        assert name in gradtx.__all__ and getattr(gradtx, name) is getattr(losses, name), name
    assert "losses" in gradtx.__all__


def test_fenchel_young_loss_matches_optax() -> None:
    scores, targets = jnp.asarray(normal(4, 5)), jnp.asarray(probs(4, 5))
    ours = jax.jit(losses.make_fenchel_young_loss(jax.scipy.special.logsumexp))
    theirs = jax.jit(optax.losses.make_fenchel_young_loss(jax.scipy.special.logsumexp))
    _assert_bitwise(ours(scores, targets), theirs(scores, targets))
    _assert_bitwise(
        jax.grad(lambda s: ours(s, targets).sum())(scores),
        jax.grad(lambda s: theirs(s, targets).sum())(scores),
    )
    # logsumexp's Fenchel-Young loss is the softmax cross-entropy: lse(s) - <y, s> for sum(y) = 1
    np.testing.assert_allclose(
        ours(scores, targets), losses.softmax_cross_entropy(scores, targets), rtol=1e-5
    )
    with pytest.raises(TypeError, match="max_fun"):
        losses.make_fenchel_young_loss(3)  # type: ignore[arg-type]


def test_convex_kl_divergence_warns_like_optax() -> None:
    with pytest.warns(DeprecationWarning, match="generalized_kl_divergence"):
        losses.convex_kl_divergence(jnp.zeros(3), jnp.ones(3))


# ----------------------------------------------------------------------------------------------
# closed-form answers
# ----------------------------------------------------------------------------------------------


def test_closed_form_answers() -> None:
    log2, log5 = float(np.log(2.0)), float(np.log(5.0))
    np.testing.assert_allclose(
        losses.softmax_cross_entropy(jnp.zeros((2, 5)), jnp.eye(5)[:2]), [log5, log5], rtol=1e-6
    )
    np.testing.assert_allclose(
        losses.softmax_cross_entropy_with_integer_labels(jnp.zeros((2, 5)), jnp.array([0, 4])),
        [log5, log5],
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        losses.sigmoid_binary_cross_entropy(jnp.zeros(3), jnp.array([0.0, 0.5, 1.0])), log2, rtol=1e-6
    )
    # focal with gamma = 0 is the cross-entropy; at logit 0 and label 1, (1 - p_t)^2 = 1/4
    np.testing.assert_allclose(losses.sigmoid_focal_loss(jnp.zeros(1), jnp.ones(1)), [log2 / 4], rtol=1e-6)
    np.testing.assert_allclose(losses.huber_loss(jnp.array([0.5, -3.0])), [0.125, 2.5])
    np.testing.assert_allclose(losses.huber_loss(jnp.array([3.0]), delta=2.0), [4.0])
    np.testing.assert_allclose(losses.l2_loss(jnp.array([3.0]), jnp.array([1.0])), [2.0])
    np.testing.assert_allclose(losses.squared_error(jnp.array([3.0]), jnp.array([1.0])), [4.0])
    np.testing.assert_allclose(losses.log_cosh(jnp.array([0.0, 100.0])), [0.0, 100.0 - log2], rtol=1e-6)
    np.testing.assert_allclose(
        losses.hinge_loss(jnp.array([2.0, 0.5, -1.0]), jnp.array([1.0, 1.0, 1.0])), [0.0, 0.5, 2.0]
    )
    np.testing.assert_allclose(
        losses.perceptron_loss(jnp.array([2.0, -1.0]), jnp.array([1.0, 1.0])), [0.0, 1.0]
    )
    np.testing.assert_allclose(
        losses.multiclass_hinge_loss(jnp.array([[1.0, 0.5, 3.0]]), jnp.array([0])), [3.0]
    )
    np.testing.assert_allclose(
        losses.smooth_labels(jnp.eye(4)[:1], 0.2), [[0.85, 0.05, 0.05, 0.05]], rtol=1e-6
    )
    p = jnp.log(jnp.array([0.25, 0.75]))
    np.testing.assert_allclose(losses.kl_divergence(p, jnp.exp(p)), 0.0, atol=1e-7)
    # KL([1/2, 1/2] || [1/4, 3/4]) = 1/2 log 2 + 1/2 log(2/3)
    np.testing.assert_allclose(losses.kl_divergence(p, jnp.array([0.5, 0.5])), 0.5 * np.log(4 / 3), rtol=1e-6)
    np.testing.assert_allclose(
        losses.cosine_similarity(jnp.array([1.0, 2.0]), jnp.array([2.0, 4.0])), 1.0, rtol=1e-6
    )
    np.testing.assert_allclose(losses.cosine_distance(jnp.array([1.0, 0.0]), jnp.array([0.0, 3.0])), 1.0)
    # a confidently right sparsemax puts all mass on the label: loss 0
    assert float(losses.multiclass_sparsemax_loss(jnp.array([[5.0, 0.0, 0.0]]), jnp.array([0]))[0]) == 0.0
    # one frame, one label, uniform logits over K = 3 classes: the only alignment has p = 1/3
    loss = jax.jit(losses.ctc_loss)(
        jnp.zeros((1, 1, 3)), jnp.zeros((1, 1)), jnp.array([[1]]), jnp.zeros((1, 1))
    )
    np.testing.assert_allclose(loss, [np.log(3.0)], rtol=1e-5)
    # perfect Dice: probabilities equal to the targets and no smoothing
    t = jnp.eye(2)[jnp.array([[0, 1], [1, 1]])][None]
    assert float(losses.dice_loss(t, t, apply_softmax=False, smooth=0.0)[0]) == pytest.approx(0.0, abs=1e-7)


# ----------------------------------------------------------------------------------------------
# numerical stability under extreme logits
# ----------------------------------------------------------------------------------------------

EXTREME = hnp.arrays(
    np.float32,
    (3, 4),
    elements=st.sampled_from([-1e4, -30.0, -1.0, 0.0, 1.0, 30.0, 1e4]) | st.floats(-1e4, 1e4, width=32),
)
LABEL_IDS = hnp.arrays(np.int32, (3,), elements=st.integers(0, 3))

STABLE: dict[str, Callable[[jax.Array, jax.Array], jax.Array]] = {
    "sigmoid_binary_cross_entropy": lambda x, c: losses.sigmoid_binary_cross_entropy(x, jax.nn.one_hot(c, 4)),
    "sigmoid_focal_loss": lambda x, c: losses.sigmoid_focal_loss(x, jax.nn.one_hot(c, 4), alpha=0.25),
    "sigmoid_focal_loss_gamma_half": lambda x, c: losses.sigmoid_focal_loss(
        x, jax.nn.one_hot(c, 4), gamma=0.5
    ),
    "softmax_cross_entropy": lambda x, c: losses.softmax_cross_entropy(
        x, losses.smooth_labels(jax.nn.one_hot(c, 4), 0.1)
    ),
    "softmax_cross_entropy_with_integer_labels": losses.softmax_cross_entropy_with_integer_labels,
    "safe_softmax_cross_entropy": lambda x, c: losses.safe_softmax_cross_entropy(x, jax.nn.one_hot(c, 4)),
    "poly_loss_cross_entropy": lambda x, c: losses.poly_loss_cross_entropy(x, jax.nn.one_hot(c, 4)),
    "kl_divergence": lambda x, c: losses.kl_divergence(jax.nn.log_softmax(x), jax.nn.one_hot(c, 4)),
    "kl_divergence_with_log_targets": lambda x, c: losses.kl_divergence_with_log_targets(
        jax.nn.log_softmax(x), jax.nn.log_softmax(x[::-1])
    ),
    "huber_loss": lambda x, c: losses.huber_loss(x, delta=2.0),
    "log_cosh": lambda x, c: losses.log_cosh(x),
    "ranking_softmax_loss": lambda x, c: losses.ranking_softmax_loss(x, jax.nn.one_hot(c, 4)),
    "multiclass_sparsemax_loss": lambda x, c: losses.multiclass_sparsemax_loss(x, c),
    "sparsemax_loss": lambda x, c: losses.sparsemax_loss(x, jax.nn.one_hot(c, 4)),
    "multiclass_hinge_loss": lambda x, c: losses.multiclass_hinge_loss(x, c),
}
_STABLE_JIT = {k: jax.jit(jax.value_and_grad(lambda x, c, f=f: jnp.sum(f(x, c)))) for k, f in STABLE.items()}


@settings(max_examples=20, deadline=None, derandomize=True)
@given(logits=EXTREME, labels=LABEL_IDS)
def test_extreme_logits_give_finite_losses_and_gradients(logits: np.ndarray, labels: np.ndarray) -> None:
    for name, fn in _STABLE_JIT.items():
        value, grad = fn(jnp.asarray(logits), jnp.asarray(labels))
        assert np.isfinite(value), (name, logits, labels)
        assert np.isfinite(grad).all(), (name, logits, labels)


# ----------------------------------------------------------------------------------------------
# validation
# ----------------------------------------------------------------------------------------------

x2 = jnp.zeros((2, 3))
INVALID = [
    (losses.huber_loss, (x2,), {"delta": 0.0}, ValueError, "delta"),
    (losses.huber_loss, (x2,), {"delta": jnp.array([1.0, -1.0, 1.0])}, ValueError, "delta"),
    (losses.smooth_labels, (x2, 1.5), {}, ValueError, "alpha"),
    (losses.smooth_labels, (x2, -0.1), {}, ValueError, "alpha"),
    (losses.sigmoid_focal_loss, (x2, x2), {"gamma": -1.0}, ValueError, "gamma"),
    (losses.sigmoid_focal_loss, (x2, x2), {"alpha": 1.5}, ValueError, "alpha"),
    (losses.cosine_similarity, (x2, x2), {"epsilon": -1.0}, ValueError, "epsilon"),
    (losses.cosine_distance, (x2, x2), {"epsilon": float("nan")}, ValueError, "epsilon"),
    (losses.ntxent, (x2, jnp.zeros(2, jnp.int32)), {"temperature": 0.0}, ValueError, "temperature"),
    (losses.ntxent, (x2, jnp.zeros(3, jnp.int32)), {}, ValueError, "leading dimension"),
    (losses.triplet_margin_loss, (x2, x2, x2), {"norm_degree": 0}, ValueError, "norm_degree"),
    (losses.triplet_margin_loss, (x2, x2, x2), {"eps": -1.0}, ValueError, "eps"),
    (losses.dice_loss, (x2, x2), {"reduction": "max"}, ValueError, "reduction"),
    (losses.dice_loss, (x2, x2), {"smooth": -1.0}, ValueError, "smooth"),
    (losses.dice_loss, (x2, x2), {"apply_softmax": False}, ValueError, "apply_softmax=False"),
    (losses.poly_loss_cross_entropy, (x2, x2), {"epsilon": float("inf")}, ValueError, "epsilon"),
    (
        losses.softmax_cross_entropy_with_integer_labels,
        (x2, jnp.zeros(2, jnp.int32)),
        {"axis": 1.0},
        TypeError,
        "axis",
    ),
    (
        losses.softmax_cross_entropy_with_integer_labels,
        (x2, jnp.zeros(2, jnp.int32)),
        {"axis": 2},
        ValueError,
        "axis",
    ),
    (losses.softmax_cross_entropy_with_integer_labels, (x2, jnp.zeros(2)), {}, TypeError, "labels"),
    (losses.softmax_cross_entropy, (jnp.zeros((2, 3), jnp.int32), x2), {}, TypeError, "logits"),
    (losses.squared_error, (x2, jnp.zeros(3)), {}, ValueError, "same shape"),
    (losses.multiclass_sparsemax_loss, (jnp.zeros(3), jnp.zeros((), jnp.int32)), {}, ValueError, "scores"),
    (
        losses.ctc_loss,
        (jnp.zeros((1, 2, 3)), jnp.zeros((1, 2)), jnp.zeros((1, 1), jnp.int32), jnp.zeros((1, 1))),
        {"blank_id": 3},
        ValueError,
        "blank_id",
    ),
    (
        losses.ctc_loss,
        (jnp.zeros((1, 2, 3)), jnp.zeros((1, 2)), jnp.zeros((1, 1), jnp.int32), jnp.zeros((1, 1))),
        {"log_epsilon": 0.0},
        ValueError,
        "log_epsilon",
    ),
    (
        losses.ctc_loss,
        (jnp.zeros((1, 2, 3)), jnp.zeros((1, 2)), jnp.zeros((2, 1), jnp.int32), jnp.zeros((2, 1))),
        {},
        ValueError,
        "batch size",
    ),
    (
        losses.ctc_loss,
        (jnp.zeros((1, 2, 3)), jnp.zeros((1, 3)), jnp.zeros((1, 1), jnp.int32), jnp.zeros((1, 1))),
        {},
        ValueError,
        "logit_paddings",
    ),
]


@pytest.mark.parametrize(
    ("fn", "args", "kwargs", "error", "needle"), INVALID, ids=lambda v: getattr(v, "__name__", None)
)
def test_invalid_arguments_raise_naming_them(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], error: type[Exception], needle: str
) -> None:
    with pytest.raises(error, match=needle) as info:
        fn(*args, **kwargs)
    assert fn.__name__ in str(info.value) or fn.__name__ == "ctc_loss"


def test_traced_parameters_are_accepted() -> None:
    """Parameters only known at run time skip the Python checks (as in any jitted training step)."""
    out = jax.jit(lambda d: losses.huber_loss(jnp.array([3.0]), delta=d))(2.0)
    np.testing.assert_allclose(out, [4.0])
    out = jax.jit(lambda a: losses.smooth_labels(jnp.eye(2), a))(0.5)
    np.testing.assert_allclose(out, [[0.75, 0.25], [0.25, 0.75]])
