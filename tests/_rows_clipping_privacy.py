"""Bit-for-bit rows, contract entries and invalid arguments of the clipping / privacy / surgery
family: adaptive_grad_clip (+ unitwise_norm, unitwise_clip), clip_by_block_rms, centralize,
keep_params_nonnegative, scale_gradient, per_example_global_norm_clip,
per_example_layer_norm_clip, differentially_private_aggregate and dpsgd.

The table's `run` feeds ordinary gradients, so the per-example rows first turn each gradient
leaf into a batch of four "examples" (`_examples`, the same function on both sides) inside a
`stateless` member; the per-example functions and their counts are also compared directly, on
hand-made batches, in `tests/test_clipping_privacy.py`.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
from _bitwise import decay_mask, same

import gradtx


def _examples(u):
    # four examples per leaf, of very different norms (some clipped, some not), batch axis first
    return jax.tree.map(lambda g: jnp.stack([g, 0.05 * g, g * g, -2.0 * g + 0.1]), u)


def _with_count(result):
    summed, count = result
    return jax.tree.map(lambda s: s + 0.01 * count, summed)


def _with_counts(result):
    summed, counts = result
    return jax.tree.map(lambda s, c: s + 0.01 * c, summed, counts)


def _vdot(a, b):
    return sum(jnp.sum(x * y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def _unitwise(m, u, p):
    def leaf(g, x):
        return m.transforms.unitwise_clip(
            m.transforms.unitwise_norm(g), 0.2 * jnp.maximum(m.transforms.unitwise_norm(x), 1e-2), g, div_eps=1e-3
        )

    return jax.tree.map(leaf, u, p)


ROWS = [
    same("adaptive_grad_clip", lambda m: m.chain(m.adaptive_grad_clip(0.1), m.sgd(0.1))),
    same("adaptive_grad_clip_eps_axis", lambda m: m.chain(
        m.masked(m.adaptive_grad_clip(0.05, eps=0.3, axis=1), decay_mask), m.sgd(0.1))),
    same("unitwise_norm_clip", lambda m: m.chain(m.stateless(lambda u, p: _unitwise(m, u, p)), m.scale(-0.1))),
    same("clip_by_block_rms", lambda m: m.chain(m.clip_by_block_rms(1.0), m.sgd(0.1))),
    same("centralize", lambda m: m.chain(m.centralize(), m.sgd(0.1))),
    same("keep_params_nonnegative", lambda m: m.chain(m.sgd(0.5), m.keep_params_nonnegative())),
    same("scale_gradient", lambda m: m.chain(
        m.stateless(lambda u, p: jax.grad(lambda q: _vdot(m.scale_gradient(q, -0.3), u))(p)), m.scale(0.1))),
    same("per_example_global_norm_clip", lambda m: m.chain(
        m.stateless(lambda u, p: _with_count(m.per_example_global_norm_clip(_examples(u), 1.0))), m.scale(-0.05))),
    same("per_example_layer_norm_clip", lambda m: m.chain(
        m.stateless(lambda u, p: _with_counts(m.per_example_layer_norm_clip(_examples(u), 1.5))), m.scale(-0.05))),
    same("per_example_layer_norm_clip_nonuniform", lambda m: m.chain(
        m.stateless(lambda u, p: _with_counts(m.per_example_layer_norm_clip(_examples(u), 1.5, uniform=False))),
        m.scale(-0.05))),
    same("differentially_private_aggregate", lambda m: m.chain(
        m.stateless(lambda u, p: _examples(u)),
        m.contrib.differentially_private_aggregate(1.0, 0.5, key=jax.random.key(7)),
        m.sgd(0.1))),
    same("differentially_private_aggregate_int_key_no_noise", lambda m: m.chain(
        m.stateless(lambda u, p: _examples(u)),
        m.contrib.differentially_private_aggregate(l2_norm_clip=2.0, noise_multiplier=0.0, key=11),
        m.adam(1e-2))),
    same("dpsgd", lambda m: m.chain(m.stateless(lambda u, p: _examples(u)), m.contrib.dpsgd(0.1, 1.0, 0.5, 3))),
    same("dpsgd_nesterov_schedule", lambda m: m.chain(
        m.stateless(lambda u, p: _examples(u)),
        m.contrib.dpsgd(m.linear_schedule(0.1, 0.01, 20), 1.5, 1.1, seed=5, momentum=0.9, nesterov=True))),
]

# dpsgd takes per-example gradients (a leading batch axis on every leaf): it cannot run the
# contract's problems, which hand it ordinary gradients. tests/test_clipping_privacy.py checks
# the same properties (jit == eager, one compilation, bfloat16, inject_hyperparams,
# convergence) on per-example gradients.
OPTIMIZERS: dict[str, Callable[[], gradtx.GradientTransformation]] = {}

_P = {"w": jnp.ones(3)}

INVALID = [
    (gradtx.adaptive_grad_clip, {"clipping": -0.1}, "clipping"),
    (gradtx.adaptive_grad_clip, {"clipping": 0.1, "eps": -1e-3}, "eps"),
    (gradtx.adaptive_grad_clip, {"clipping": 0.1, "axis": 1.5}, "axis"),
    (gradtx.clip_by_block_rms, {"threshold": 0.0}, "threshold"),
    (gradtx.clip_by_block_rms, {"threshold": float("nan")}, "threshold"),
    (gradtx.differentially_private_aggregate, {"l2_norm_clip": 0.0, "noise_multiplier": 1.0, "key": 0}, "l2_norm_clip"),
    (gradtx.differentially_private_aggregate, {"l2_norm_clip": 1.0, "noise_multiplier": -1.0, "key": 0},
     "noise_multiplier"),
    (gradtx.differentially_private_aggregate, {"l2_norm_clip": 1.0, "noise_multiplier": 1.0, "key": "k"}, "key"),
    (gradtx.dpsgd, {"learning_rate": -0.1, "l2_norm_clip": 1.0, "noise_multiplier": 1.0, "seed": 0}, "learning_rate"),
    (gradtx.dpsgd, {"learning_rate": 0.1, "l2_norm_clip": float("inf"), "noise_multiplier": 1.0, "seed": 0},
     "l2_norm_clip"),
    (gradtx.dpsgd, {"learning_rate": 0.1, "l2_norm_clip": 1.0, "noise_multiplier": -0.5, "seed": 0},
     "noise_multiplier"),
    (gradtx.dpsgd, {"learning_rate": 0.1, "l2_norm_clip": 1.0, "noise_multiplier": 1.0, "seed": 1.5}, "seed"),
    (gradtx.dpsgd, {"learning_rate": 0.1, "l2_norm_clip": 1.0, "noise_multiplier": 1.0, "seed": 0, "momentum": 1.5},
     "momentum"),
    (gradtx.dpsgd, {"learning_rate": 0.1, "l2_norm_clip": 1.0, "noise_multiplier": 1.0, "seed": 0, "nesterov": True},
     "nesterov"),
    (gradtx.per_example_global_norm_clip, {"grads": {"w": jnp.ones((2, 3))}, "l2_norm_clip": -1.0}, "l2_norm_clip"),
    (gradtx.per_example_layer_norm_clip, {"grads": {"w": jnp.ones((2, 3))}, "global_l2_norm_clip": 1.0,
                                          "uniform": "yes"}, "uniform"),
    (gradtx.scale_gradient, {"inputs": _P, "scale": float("inf")}, "scale"),
]
