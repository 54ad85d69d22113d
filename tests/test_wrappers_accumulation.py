"""Tests of gradtx.MultiSteps: k mini-steps equal one inner step on the mean gradient."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from absl.testing import parameterized

import gradtx
from gradtx.wrappers import MultiStepsState

_apply = jax.jit(optax.apply_updates)


def _params():
    return {"w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3), "b": jnp.array([0.5, -0.25])}


@jax.jit
def _grads(step, params):
    return {
        "w": jnp.cos(0.3 * step + jnp.arange(6.0)).reshape(2, 3) + 0.1 * params["w"],
        "b": jnp.sin(0.5 * step + jnp.arange(2.0)) - 0.2 * params["b"],
    }



class MeanGradientTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters(1, 2, 4)
    def test_k_steps_equal_one_inner_step_on_the_mean(self, k):
        inner = gradtx.adam(0.1)
        ms = gradtx.MultiSteps(inner, every_k_schedule=k)
        update = self.variant(ms.update)
        params = _params()
        state, inner_state = ms.init(params), inner.init(params)
        rng = np.random.default_rng(k)
        for cycle in range(3):
            grads = [jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape), jnp.float32), params) for _ in range(k)]
            for j, g in enumerate(grads):
                u, state = update(g, state, params)
                if j < k - 1:  # intermediate mini-steps: exactly zero updates, no inner step
                    chex.assert_trees_all_equal(u, jax.tree.map(jnp.zeros_like, params))
                    assert not bool(ms.has_updated(state))
            mean = jax.tree.map(lambda *xs: jnp.asarray(np.mean(np.stack(xs), axis=0)), *grads)
            expected, inner_state = inner.update(mean, inner_state, params)
            chex.assert_trees_all_close(u, expected, rtol=1e-5, atol=1e-6)
            assert bool(ms.has_updated(state))
            assert int(state.gradient_step) == cycle + 1 and int(state.mini_step) == 0
            chex.assert_trees_all_equal(state.acc_grads, jax.tree.map(jnp.zeros_like, params))
            params = gradtx.apply_updates(params, u)

    def test_sum_instead_of_mean(self):
        ms = gradtx.MultiSteps(gradtx.identity(), every_k_schedule=3, use_grad_mean=False)
        state = ms.init(jnp.zeros(2))
        for g in ([1.0, 2.0], [3.0, -1.0], [0.5, 0.5]):
            u, state = ms.update(jnp.asarray(g), state)
        np.testing.assert_allclose(u, [4.5, 1.5], rtol=1e-6)


class VsOptaxTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(
        ("adam_mean_k3", "adam", 3, True),
        ("sgd_sum_k2", "sgd", 2, False),
        ("adam_schedule", "adam", lambda step: 1 + step % 3, True),
    )
    def test_matches_optax_for_40_steps(self, opt, every_k, use_mean):
        inner = gradtx.adam(0.05) if opt == "adam" else gradtx.sgd(0.05, momentum=0.9, nesterov=True)
        ref_inner = optax.adam(0.05) if opt == "adam" else optax.sgd(0.05, momentum=0.9, nesterov=True)
        ms = gradtx.MultiSteps(inner, every_k, use_grad_mean=use_mean)
        ref = optax.MultiSteps(ref_inner, every_k, use_grad_mean=use_mean)
        update, ref_update = self.variant(ms.update), jax.jit(ref.update)
        p, rp = _params(), _params()
        s, rs = ms.init(p), ref.init(rp)
        for step in range(40):
            u, s = update(_grads(step, p), s, p)
            ru, rs = ref_update(_grads(step, rp), rs, rp)
            chex.assert_trees_all_close(u, ru, rtol=1e-5, atol=1e-6)
            assert bool(ms.has_updated(s)) == bool(ref.has_updated(rs))
            p, rp = _apply(p, u), _apply(rp, ru)
        chex.assert_trees_all_close(p, rp, rtol=1e-5, atol=1e-6)
        for a, b in zip(jax.tree.leaves(s), jax.tree.leaves(rs)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_skip_not_finite_drops_the_mini_step_like_optax():
    ms = gradtx.MultiSteps(gradtx.identity(), 2, should_skip_update_fn=gradtx.skip_not_finite)
    ref = optax.MultiSteps(optax.identity(), 2, should_skip_update_fn=optax.skip_not_finite)
    s, rs = ms.init(jnp.zeros(2)), ref.init(jnp.zeros(2))
    ref_update = jax.jit(ref.update)
    seq = [[1.0, 2.0], [jnp.nan, 1.0], [3.0, 4.0], [jnp.inf, jnp.nan]]
    for g in seq:
        before = s
        u, s = ms.update(jnp.asarray(g), s)
        ru, rs = ref_update(jnp.asarray(g), rs)
        np.testing.assert_array_equal(u, ru)
        assert int(s.skip_state["num_not_finite"]) == int(np.sum(~np.isfinite(g)))
        if not np.all(np.isfinite(g)):
            np.testing.assert_array_equal(u, [0.0, 0.0])
            chex.assert_trees_all_equal(s._replace(skip_state=()), before._replace(skip_state=()))
    # accepted: [1, 2] and [3, 4] -> mean [2, 3] emitted at the third call
    assert int(s.gradient_step) == 1


def test_skip_large_updates():
    skip = functools.partial(gradtx.skip_large_updates, max_squared_norm=10.0)
    ms = gradtx.MultiSteps(gradtx.identity(), 1, should_skip_update_fn=skip)
    s = ms.init(jnp.zeros(2))
    u, s = ms.update(jnp.array([3.0, 0.0]), s)  # 9 < 10: kept
    np.testing.assert_allclose(u, [3.0, 0.0])
    u, s = ms.update(jnp.array([3.0, 1.0]), s)  # 10: skipped
    np.testing.assert_allclose(u, [0.0, 0.0])
    np.testing.assert_allclose(s.skip_state["norm_squared"], 10.0)
    assert int(s.gradient_step) == 1


def test_gradient_transformation_and_repr():
    ms = gradtx.MultiSteps(gradtx.scale(2.0), every_k_schedule=2)
    tx = ms.gradient_transformation()
    assert isinstance(tx, gradtx.GradientTransformation)
    assert repr(tx).startswith("MultiSteps(opt=scale(step_size=2.0), every_k_schedule=2, use_grad_mean=True")
    assert repr(ms) == repr(tx)
    chained = gradtx.chain(tx, gradtx.scale(-1.0))
    state = chained.init(jnp.zeros(2))
    assert isinstance(state[0], MultiStepsState)
    u, state = jax.jit(chained.update)(jnp.array([1.0, 3.0]), state)
    u, state = jax.jit(chained.update)(jnp.array([3.0, 5.0]), state)
    np.testing.assert_allclose(u, [-4.0, -8.0])  # -(2 * mean)
    with pytest.raises(TypeError, match="MultiStepsState"):
        tx.update(jnp.ones(2), gradtx.identity().init(jnp.zeros(2)))


def test_accumulator_dtype():
    params = {"h": jnp.ones(3, jnp.bfloat16)}
    assert gradtx.MultiSteps(gradtx.identity(), 2).init(params).acc_grads["h"].dtype == jnp.float32
    ms = gradtx.MultiSteps(gradtx.identity(), 2, accumulator_dtype=None)
    state = ms.init(params)
    assert state.acc_grads["h"].dtype == jnp.bfloat16
    u, state = ms.update({"h": jnp.ones(3, jnp.bfloat16)}, state)
    assert u["h"].dtype == jnp.bfloat16


def test_extra_args_reach_inner():
    ms = gradtx.MultiSteps(gradtx.reduce_on_plateau(factor=0.5, patience=1), 2)
    s = ms.init(jnp.zeros(1))
    for loss in [1.0, 1.0, 5.0, 5.0]:
        u, s = ms.update(jnp.ones(1), s, value=loss)
    # the inner plateau state only sees the emitting calls' values: 1.0 (best) then 5.0 (worse)
    np.testing.assert_allclose(u, [0.5])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"every_k_schedule": 0}, ValueError, "every_k_schedule must be an integer >= 1, got 0"),
        ({"every_k_schedule": 2.0}, TypeError, "every_k_schedule must be an integer"),
        ({"every_k_schedule": 2, "use_grad_mean": 1}, TypeError, "use_grad_mean"),
        ({"every_k_schedule": 2, "should_skip_update_fn": 3}, TypeError, "should_skip_update_fn"),
        ({"every_k_schedule": 2, "accumulator_dtype": jnp.int32}, TypeError, "accumulator_dtype"),
    ],
)
def test_validation(kwargs, error, match):
    with pytest.raises(error, match=match):
        gradtx.MultiSteps(gradtx.identity(), **kwargs)


def test_bad_should_skip_return_raises():
    ms = gradtx.MultiSteps(gradtx.identity(), 2, should_skip_update_fn=lambda u, s, p: (jnp.zeros(2, bool), ()))
    with pytest.raises(ValueError, match="scalar bool"):
        ms.update(jnp.ones(2), ms.init(jnp.zeros(2)))
