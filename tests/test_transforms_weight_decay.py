"""Tests of add_decayed_weights."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _optax_parity import make_tree
from absl.testing import parameterized

import gradtx
from gradtx.base import EmptyState
from gradtx.transforms.weight_decay import AddDecayedWeightsState

RTOL, ATOL = 1e-5, 1e-6


def _wd_schedule(count):
    return 0.1 * 0.9**count


def _matrices_only(params):
    return jax.tree.map(lambda p: p.ndim > 1, params)


PARITY_CASES = [
    ("constant", dict(weight_decay=0.05)),
    ("schedule", dict(weight_decay=_wd_schedule)),
    ("mask_prefix", dict(weight_decay=0.1, mask={"w": False, "b": True, "nested": False})),
    ("mask_callable", dict(weight_decay=0.1, mask=_matrices_only)),
]


class OptaxParityTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*PARITY_CASES)
    def test_matches_optax_40_steps(self, kwargs):
        ours, ref = gradtx.add_decayed_weights(**kwargs), optax.add_decayed_weights(**kwargs)
        params = make_tree(jax.random.key(1234))
        update = self.variant(ours.update)
        ref_update = jax.jit(ref.update)
        s_ours, s_ref = ours.init(params), ref.init(params)
        worst = 0.0
        for i in range(40):
            g = make_tree(jax.random.key(i))
            u_ours, s_ours = update(g, s_ours, params)
            u_ref, s_ref = ref_update(g, s_ref, params)
            chex.assert_trees_all_close(u_ours, u_ref, rtol=RTOL, atol=ATOL)
            for x, y in zip(jax.tree.leaves(u_ours), jax.tree.leaves(u_ref), strict=True):
                worst = max(worst, float(np.max(np.abs(np.asarray(x) - np.asarray(y)) / (np.abs(np.asarray(y)) + ATOL))))
            params = jax.tree.map(lambda p, u: p - 0.05 * u, params, u_ref)
        print(f"add_decayed_weights({kwargs}): max relative deviation from optax over 40 steps = {worst:.3g}")


def test_by_hand():
    params = {"w": jnp.array([[1.0, -2.0]]), "b": jnp.array([4.0])}
    grads = {"w": jnp.array([[0.5, 0.5]]), "b": jnp.array([-1.0])}
    tx = gradtx.add_decayed_weights(0.25)
    u, state = tx.update(grads, tx.init(params), params)
    assert state == EmptyState()
    np.testing.assert_allclose(u["w"], [[0.75, 0.0]], rtol=RTOL)
    np.testing.assert_allclose(u["b"], [0.0], atol=ATOL)


def test_mask_by_hand():
    params = {"w": jnp.array([[1.0, -2.0]]), "b": jnp.array([4.0])}
    grads = {"w": jnp.array([[0.5, 0.5]]), "b": jnp.array([-1.0])}
    for mask in ({"w": True, "b": False}, _matrices_only):
        tx = gradtx.add_decayed_weights(0.25, mask=mask)
        u, _ = tx.update(grads, tx.init(params), params)
        np.testing.assert_allclose(u["w"], [[0.75, 0.0]], rtol=RTOL)
        np.testing.assert_array_equal(u["b"], grads["b"])  # masked out: unchanged


def test_mask_with_array_flags_under_jit():
    params = {"w": jnp.ones(2), "b": jnp.ones(2)}

    @jax.jit
    def f(flag):
        tx = gradtx.add_decayed_weights(0.5, mask={"w": flag, "b": True})
        return tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)[0]

    np.testing.assert_allclose(f(jnp.array(True))["w"], 0.5)
    np.testing.assert_allclose(f(jnp.array(False))["w"], 0.0)
    np.testing.assert_allclose(f(jnp.array(False))["b"], 0.5)


def test_schedule_by_hand():
    params = jnp.array([2.0, -1.0])
    tx = gradtx.add_decayed_weights(lambda c: 0.1 * (c + 1))  # evaluated at the count before the step
    state = tx.init(params)
    assert isinstance(state, AddDecayedWeightsState)
    for k in range(3):
        u, state = tx.update(jnp.zeros(2), state, params)
        np.testing.assert_allclose(u, 0.1 * (k + 1) * np.array([2.0, -1.0]), rtol=RTOL)
    assert int(state.count) == 3


def test_requires_params():
    tx = gradtx.add_decayed_weights(0.1)
    with pytest.raises(ValueError, match="params"):
        tx.update(jnp.ones(2), tx.init(jnp.zeros(2)))
    with pytest.raises(ValueError, match="params"):
        tx.update(jnp.ones(2), tx.init(jnp.zeros(2)), None)


def test_keeps_update_dtype():
    params = {"h": jnp.ones(3, jnp.bfloat16)}
    tx = gradtx.add_decayed_weights(1e-2)
    u, _ = tx.update({"h": jnp.ones(3, jnp.bfloat16)}, tx.init(params), params)
    assert u["h"].dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(u["h"], np.float32), 1.01, rtol=1e-2)


def test_adamw_decoupled_in_chain():
    # AdamW: p <- p - lr * (adam(g) + wd * p); compare the full chain with optax.adamw.
    lr, wd = 1e-2, 0.1
    ours = gradtx.chain(gradtx.scale_by_adam(), gradtx.add_decayed_weights(wd), gradtx.scale_by_learning_rate(lr))
    ref = optax.adamw(lr, weight_decay=wd)
    params_o = params_r = make_tree(jax.random.key(0))
    s_o, s_r = ours.init(params_o), ref.init(params_r)
    for i in range(5):
        g = make_tree(jax.random.key(10 + i))
        u_o, s_o = ours.update(g, s_o, params_o)
        u_r, s_r = ref.update(g, s_r, params_r)
        params_o, params_r = gradtx.apply_updates(params_o, u_o), optax.apply_updates(params_r, u_r)
    chex.assert_trees_all_close(params_o, params_r, rtol=RTOL, atol=ATOL)


BAD_ARGS = [
    ({"weight_decay": -0.1}, ValueError, "weight_decay"),
    ({"weight_decay": "0.1"}, TypeError, "weight_decay"),
    ({"weight_decay": float("nan")}, ValueError, "weight_decay"),
]


@pytest.mark.parametrize("kwargs,exc,match", BAD_ARGS)
def test_bad_hyperparameters_raise(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        gradtx.add_decayed_weights(**kwargs)


def test_bad_mask_structure_raises():
    tx = gradtx.add_decayed_weights(0.1, mask={"other": True})
    params = {"w": jnp.ones(2)}
    with pytest.raises(ValueError, match="mask"):
        tx.update(params, tx.init(params), params)


def test_traced_weight_decay_skips_validation():
    p = jnp.array([1.0, 2.0])

    @jax.jit
    def f(wd):
        tx = gradtx.add_decayed_weights(wd)
        return tx.update(jnp.zeros(2), tx.init(p), p)[0]

    np.testing.assert_allclose(f(0.5), [0.5, 1.0], rtol=RTOL)
