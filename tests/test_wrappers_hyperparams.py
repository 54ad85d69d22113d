"""Tests of gradtx.inject_hyperparams / inject_stateful_hyperparams."""

import warnings

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx
from gradtx.wrappers import InjectHyperparamsState, InjectStatefulHyperparamsState

_apply = jax.jit(optax.apply_updates)


def _params():
    return {"w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3), "b": jnp.array([0.5, -0.25])}


@jax.jit
def _grads(step, params):
    return {
        "w": jnp.cos(0.3 * step + jnp.arange(6.0)).reshape(2, 3) + 0.1 * params["w"],
        "b": jnp.sin(0.5 * step + jnp.arange(2.0)) - 0.2 * params["b"],
    }


def _b1_schedule(count):
    return 0.5 + 0.4 * jnp.minimum(count, 20) / 20.0


def _lr_schedule(count):
    return 0.1 / (1.0 + 0.1 * count)


class VsOptaxTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_scheduled_adam_matches_optax_for_40_steps(self):
        tx = gradtx.inject_hyperparams(gradtx.adam)(learning_rate=_lr_schedule, b1=_b1_schedule, b2=0.99)
        ref = optax.inject_hyperparams(optax.adam)(learning_rate=_lr_schedule, b1=_b1_schedule, b2=0.99)
        update, ref_update = self.variant(tx.update), jax.jit(ref.update)
        p, rp = _params(), _params()
        s, rs = tx.init(p), ref.init(rp)
        for step in range(40):
            u, s = update(_grads(step, p), s, p)
            ru, rs = ref_update(_grads(step, rp), rs, rp)
            chex.assert_trees_all_close(u, ru, rtol=1e-5, atol=1e-6)
            chex.assert_trees_all_close(s.hyperparams, rs.hyperparams, rtol=1e-6, atol=0)
            p, rp = _apply(p, u), _apply(rp, ru)
        chex.assert_trees_all_close(p, rp, rtol=1e-5, atol=1e-6)
        for a, b in zip(jax.tree.leaves(s.inner_state), jax.tree.leaves(rs.inner_state)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)
        assert isinstance(s, InjectStatefulHyperparamsState)  # optax 0.2.8's layout
        assert not isinstance(s, InjectHyperparamsState)
        assert int(s.count) == 40
        # nesterov (a bool) and mu_dtype (None) stay static
        assert set(s.hyperparams) == {"learning_rate", "b1", "b2", "eps", "eps_root"}

    def test_injected_transforms_in_a_chain_match_optax(self):
        tx = gradtx.chain(
            gradtx.inject_hyperparams(gradtx.scale_by_adam)(b1=_b1_schedule, b2=0.99),
            gradtx.inject_hyperparams(gradtx.scale_by_learning_rate)(learning_rate=_lr_schedule),
        )
        ref = optax.chain(
            optax.inject_hyperparams(optax.scale_by_adam)(b1=_b1_schedule, b2=0.99),
            optax.inject_hyperparams(optax.scale_by_learning_rate)(learning_rate=_lr_schedule),
        )
        update, ref_update = jax.jit(tx.update), jax.jit(ref.update)
        p = _params()
        s, rs = tx.init(p), ref.init(p)
        for step in range(10):
            u, s = update(_grads(step, p), s, p)
            ru, rs = ref_update(_grads(step, p), rs, p)
            chex.assert_trees_all_close(u, ru, rtol=1e-5, atol=1e-6)
            p = _apply(p, u)


def test_schedule_is_evaluated_at_the_count_before_increment():
    tx = gradtx.inject_hyperparams(gradtx.scale)(step_size=lambda count: 1.0 + count)
    state = tx.init(jnp.zeros(2))
    np.testing.assert_allclose(state.hyperparams["step_size"], 1.0)  # schedule(0) after init
    g = jnp.array([1.0, -2.0])
    for t in range(4):
        u, state = tx.update(g, state)
        np.testing.assert_allclose(u, (1.0 + t) * np.asarray(g))
        np.testing.assert_allclose(state.hyperparams["step_size"], 1.0 + t)
        assert int(state.count) == t + 1
    state.hyperparams["step_size"] = jnp.asarray(100.0, jnp.float32)  # scheduled: recomputed
    u, state = tx.update(g, state)
    np.testing.assert_allclose(u, 5.0 * np.asarray(g))


def test_change_learning_rate_between_jitted_steps_without_recompiling():
    traces = []
    tx = gradtx.inject_hyperparams(gradtx.scale_by_learning_rate)(learning_rate=0.1)

    @jax.jit
    def step(params, state, grads):
        traces.append(1)  # runs only while tracing
        updates, state = tx.update(grads, state, params)
        return gradtx.apply_updates(params, updates), state

    params = _params()
    state = tx.init(params)
    grads = jax.tree.map(jnp.ones_like, params)
    for lr in [0.1, 0.5, 0.01, 2.0]:
        state.hyperparams["learning_rate"] = jnp.asarray(lr, jnp.float32)
        new_params, state = step(params, state, grads)
        chex.assert_trees_all_close(new_params, jax.tree.map(lambda p, lr=lr: p - lr, params), rtol=1e-6, atol=1e-6)
        params = new_params
    assert len(traces) == 1
    assert step._cache_size() == 1
    # A plain Python float is weakly typed: it may cost one more trace, never one per value.
    for lr in [0.3, 0.7, 0.9]:
        state.hyperparams["learning_rate"] = lr
        new_params, state = step(params, state, grads)
        chex.assert_trees_all_close(new_params, jax.tree.map(lambda p, lr=lr: p - lr, params), rtol=1e-6, atol=1e-6)
        params = new_params
        assert state.hyperparams["learning_rate"].dtype == jnp.float32
    assert len(traces) <= 2


def test_sgd_learning_rate_changes_match_optax_with_one_compilation():
    tx = gradtx.inject_hyperparams(gradtx.sgd)(learning_rate=0.1, momentum=0.9)
    ref = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1, momentum=0.9)
    update, ref_update = jax.jit(tx.update), jax.jit(ref.update)
    p = _params()
    s, rs = tx.init(p), ref.init(p)
    lrs = [0.1, 0.1, 0.05, 0.05, 0.2, 0.01, 0.01, 0.3]
    for step, lr in enumerate(lrs):
        s.hyperparams["learning_rate"] = jnp.asarray(lr, jnp.float32)
        rs.hyperparams["learning_rate"] = jnp.asarray(lr, jnp.float32)
        u, s = update(_grads(step, p), s, p)
        ru, rs = ref_update(_grads(step, p), rs, p)
        chex.assert_trees_all_close(u, ru, rtol=1e-6, atol=1e-7)
        p = _apply(p, u)
    assert update._cache_size() == 1
    np.testing.assert_allclose(s.hyperparams["momentum"], 0.9)


def test_numeric_entries_can_be_changed_for_adam_b1_under_jit():
    # b1 is validated by scale_by_adam for concrete values; traced values skip the check.
    tx = gradtx.inject_hyperparams(gradtx.scale_by_adam)(b1=0.9)
    ref = optax.inject_hyperparams(optax.scale_by_adam)(b1=0.9)
    update, ref_update = jax.jit(tx.update), jax.jit(ref.update)
    p = _params()
    s, rs = tx.init(p), ref.init(p)
    for step, b1 in enumerate([0.9, 0.5, 0.0, 0.7]):
        s.hyperparams["b1"] = jnp.asarray(b1, jnp.float32)
        rs.hyperparams["b1"] = jnp.asarray(b1, jnp.float32)
        u, s = update(_grads(step, p), s)
        ru, rs = ref_update(_grads(step, p), rs)
        chex.assert_trees_all_close(u, ru, rtol=1e-6, atol=1e-7)


def test_static_args_and_non_numeric_arguments_pass_through():
    def mask_fn(params):
        return jax.tree.map(lambda x: x.ndim > 1, params)

    tx = gradtx.inject_hyperparams(gradtx.add_decayed_weights, static_args="mask")(weight_decay=0.5, mask=mask_fn)
    params = _params()
    state = tx.init(params)
    assert set(state.hyperparams) == {"weight_decay"}
    zeros = jax.tree.map(jnp.zeros_like, params)
    u, state = tx.update(zeros, state, params)
    chex.assert_trees_all_close(u["w"], 0.5 * params["w"], rtol=1e-6, atol=0)
    chex.assert_trees_all_equal(u["b"], zeros["b"])
    # Without static_args the mask function is taken for a schedule (documented); its value at a
    # step count is a bool, not a real scalar, so the mistake is named (optax silently stores it).
    with pytest.raises(TypeError, match=r"schedule given for mask.*mask_fn.*static_args"):
        gradtx.inject_hyperparams(gradtx.add_decayed_weights)(weight_decay=0.5, mask=mask_fn)


def test_hyperparam_dtype():
    params16 = {"h": jnp.ones(2, jnp.float16)}
    tx = gradtx.inject_hyperparams(gradtx.scale)(step_size=0.5)
    state = tx.init(params16)
    assert state.hyperparams["step_size"].dtype == jnp.float32  # never narrower than float32
    u, state = tx.update(params16, state, params16)
    assert u["h"].dtype == jnp.float16
    mixed = {"h": jnp.ones(2, jnp.float16), "f": jnp.ones(2, jnp.float32)}
    assert tx.init(mixed).hyperparams["step_size"].dtype == jnp.float32
    tx16 = gradtx.inject_hyperparams(gradtx.scale, hyperparam_dtype=jnp.float16)(step_size=0.5)
    assert tx16.init(mixed).hyperparams["step_size"].dtype == jnp.float16
    with pytest.raises(TypeError, match="hyperparam_dtype"):
        gradtx.inject_hyperparams(gradtx.scale, hyperparam_dtype=jnp.int32)


def test_bfloat16_params_eager():
    params = {"h": jnp.ones(2, jnp.bfloat16)}
    tx = gradtx.inject_hyperparams(gradtx.scale)(step_size=0.5)
    state = tx.init(params)
    assert state.hyperparams["step_size"].dtype == jnp.float32
    u, _ = tx.update(params, state, params)
    assert u["h"].dtype == jnp.bfloat16


def test_repr_and_hyperparams():
    tx = gradtx.inject_hyperparams(gradtx.scale_by_adam)(b1=0.8)
    assert repr(tx) == (
        "inject_hyperparams(scale_by_adam)(b1=0.8, b2=0.999, eps=1e-08, eps_root=0.0, mu_dtype=None, nesterov=False)"
    )
    assert gradtx.hyperparams(tx)["b1"] == 0.8


def test_invalid_values_fail_at_construction_with_the_factory_message():
    with pytest.raises(ValueError, match="scale_by_adam: b1"):
        gradtx.inject_hyperparams(gradtx.scale_by_adam)(b1=1.5)
    with pytest.raises(ValueError, match="static_args"):
        gradtx.inject_hyperparams(gradtx.scale_by_adam, static_args=("nope",))
    with pytest.raises(ValueError, match="scalar"):
        gradtx.inject_hyperparams(gradtx.scale)(step_size=jnp.ones(2))


def test_state_is_checked():
    tx = gradtx.inject_hyperparams(gradtx.scale)(step_size=0.5)
    with pytest.raises(TypeError, match="InjectStatefulHyperparamsState"):
        tx.update(jnp.ones(2), gradtx.identity().init(jnp.ones(2)))


class _LossTracker:
    """A stateful schedule: value = 1 / (1 + running mean of the losses seen so far)."""

    def init(self):
        return {"n": jnp.zeros((), jnp.int32), "mean": jnp.zeros((), jnp.float32)}

    def update(self, state, value=0.0, **extra):
        n = state["n"] + 1
        return {"n": n, "mean": state["mean"] + (value - state["mean"]) / n}

    def __call__(self, state, **extra):
        return 1.0 / (1.0 + state["mean"])


def test_inject_stateful_hyperparams_matches_optax():
    tx = gradtx.inject_stateful_hyperparams(gradtx.scale)(step_size=_LossTracker())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ref = optax.inject_stateful_hyperparams(optax.scale)(step_size=_LossTracker())
    g = jnp.array([1.0, 2.0])
    s, rs = tx.init(g), ref.init(g)
    assert isinstance(s, InjectStatefulHyperparamsState)
    for step, loss in enumerate([3.0, 1.0, 0.5, 2.0]):
        u, s = tx.update(g, s, value=loss)
        ru, rs = ref.update(g, rs, value=loss)
        chex.assert_trees_all_close(u, ru, rtol=1e-6, atol=0)
        seen = [3.0, 1.0, 0.5, 2.0][:step]
        expected = 1.0 / (1.0 + (np.mean(seen) if seen else 0.0))
        np.testing.assert_allclose(u, expected * np.asarray(g), rtol=1e-6)


def test_inject_stateful_with_plain_schedule_equals_inject_hyperparams():
    a = gradtx.inject_stateful_hyperparams(gradtx.scale)(step_size=_lr_schedule)
    b = gradtx.inject_hyperparams(gradtx.scale)(step_size=_lr_schedule)
    g = jnp.array([1.0, 2.0])
    sa, sb = a.init(g), b.init(g)
    for _ in range(5):
        ua, sa = a.update(g, sa)
        ub, sb = b.update(g, sb)
        chex.assert_trees_all_equal(ua, ub)
    assert int(sa.hyperparams_states["step_size"].count) == 5
