"""Inputs optax accepts work in gradtx's transformations, with optax's numbers, or fail loudly.

* Python scalars as gradient / params leaves;
* `None` updates in `add_decayed_weights`;
* complex `mu_dtype` / `accumulator_dtype` on complex params;
* integer params (a `TypeError` naming the leaf) and integer gradients (promoted to float);
* schedules that are not `schedule(count) -> scalar` (an error naming the schedule, at trace time).
"""

import warnings

import chex
import jax
import jax.numpy as jnp
import optax
import pytest
from absl.testing import parameterized

import gradtx
from gradtx import transforms

RTOL, ATOL = 1e-5, 1e-6
KEY = jax.random.key(0)

# name -> (factory of (gradtx or optax) module, does the state hold a float moment per param)
ALIASES = {
    "adam": (lambda m: m.adam(0.1), True),
    "adamw": (lambda m: m.adamw(0.1, weight_decay=0.01), True),
    "nadam": (lambda m: m.nadam(0.1), True),
    "nadamw": (lambda m: m.nadamw(0.1, weight_decay=0.01), True),
    "amsgrad": (lambda m: m.amsgrad(0.1), True),
    "adamax": (lambda m: m.adamax(0.1), True),
    "lion": (lambda m: m.lion(0.1), True),
    "lamb": (lambda m: m.lamb(0.1), True),
    "sgd": (lambda m: m.sgd(0.1), False),
    "sgd_momentum": (lambda m: m.sgd(0.1, momentum=0.9, nesterov=True), True),
    "adagrad": (lambda m: m.adagrad(0.1), True),
    "rmsprop": (lambda m: m.rmsprop(0.1, centered=True, momentum=0.9), True),
}
TRANSFORMS = {
    "add_decayed_weights": (lambda m: m.add_decayed_weights(0.1), False),
    "add_decayed_weights_schedule": (lambda m: m.add_decayed_weights(lambda c: 0.1 / (1 + c)), False),
    "add_noise": (lambda m: m.add_noise(0.1, 0.55, KEY), False),
    "clip": (lambda m: m.clip(0.3), False),
    "clip_by_global_norm": (lambda m: m.clip_by_global_norm(0.5), False),
    "clip_by_norm": (lambda m: m.clip_by_norm(0.5), False),
    "ema": (lambda m: m.ema(0.9), True),
    "scale": (lambda m: m.scale(-0.5), False),
    "scale_by_adam": (lambda m: m.scale_by_adam(), True),
    "scale_by_adamax": (lambda m: m.scale_by_adamax(), True),
    "scale_by_amsgrad": (lambda m: m.scale_by_amsgrad(), True),
    "scale_by_learning_rate": (lambda m: m.scale_by_learning_rate(0.1), False),
    "scale_by_learning_rate_schedule": (lambda m: m.scale_by_learning_rate(lambda c: 0.1 / (1 + c)), False),
    "scale_by_lion": (lambda m: m.scale_by_lion(), True),
    "scale_by_rms": (lambda m: m.scale_by_rms(), True),
    "scale_by_rss": (lambda m: m.scale_by_rss(), True),
    "scale_by_schedule": (lambda m: m.scale_by_schedule(lambda c: 0.5 / (1 + c)), False),
    "scale_by_sign": (lambda m: m.scale_by_sign(), False),
    "scale_by_stddev": (lambda m: m.scale_by_stddev(), True),
    "scale_by_trust_ratio": (lambda m: m.scale_by_trust_ratio(), False),
    "trace": (lambda m: m.trace(0.9), True),
    "zero_nans": (lambda m: m.zero_nans(), False),
}
ALL = {**ALIASES, **TRANSFORMS}
STATEFUL = sorted(name for name, (_, stateful) in ALL.items() if stateful)
NOT_IN_OPTAX = {"clip_by_norm"}  # compared with the same gradtx transformation on arrays


def test_the_lists_cover_every_optimizer_and_transformation():
    assert set(gradtx.optimizers.__all__) <= set(ALIASES)
    public = {
        name for name in transforms.__all__
        if name[0].islower() and name.startswith(("scale", "clip", "add_", "trace", "ema", "zero"))
    }
    assert public <= set(TRANSFORMS)


def _make(name, module):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ALL[name][0](module)


def _run(tx, grads, params, update, steps=3):
    state = tx.init(params)
    outs = []
    for _ in range(steps):
        u, state = update(grads, state, params)
        outs.append(u)
    return outs, state


def _reference(name, grads, params, steps=3):
    """optax's jitted trajectory (the leaves, Python scalars included, reach it as arrays)."""
    if name in NOT_IN_OPTAX:
        tx = _make(name, gradtx)
        grads, params = jax.tree.map(jnp.asarray, (grads, params))
    else:
        tx = _make(name, optax)
    return _run(tx, grads, params, jax.jit(tx.update), steps)[0]


# --------------------------------------------------------------------------------------------
# 1. Python scalars as leaves
# --------------------------------------------------------------------------------------------

SCALAR_PARAMS = {"w": 1.5, "b": jnp.array([0.5, -1.0, 2.0])}
SCALAR_GRADS = {"w": 0.25, "b": jnp.array([0.1, -0.3, 0.2])}


class PythonScalarLeaves(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*[(name, name) for name in sorted(ALL)])
    def test_python_float_leaves_give_optax_numbers(self, name):
        tx = _make(name, gradtx)
        outs, _ = _run(tx, SCALAR_GRADS, SCALAR_PARAMS, self.variant(tx.update))
        for ours, ref in zip(outs, _reference(name, SCALAR_GRADS, SCALAR_PARAMS), strict=True):
            assert isinstance(ours["w"], jax.Array) and ours["w"].shape == ()
            assert ours["w"].dtype == jnp.float32
            chex.assert_trees_all_close(ours, ref, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", sorted(ALL))
def test_python_float_params_leaf_alone(name):
    """A params tree that is a single Python float, with a float gradient (eagerly)."""
    tx = _make(name, gradtx)
    outs, _ = _run(tx, -0.75, 2.0, tx.update, steps=2)
    ref = _reference(name, -0.75, 2.0, steps=2)
    chex.assert_trees_all_close(outs, ref, rtol=RTOL, atol=ATOL)
