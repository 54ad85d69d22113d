"""Tests of gradtx.apply_if_finite: rejected steps are exact no-ops, counters, give-up rule."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gradtx
from gradtx.wrappers import ApplyIfFiniteState

_apply = jax.jit(optax.apply_updates)


def _params():
    return {"w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3), "b": jnp.array([0.5, -0.25])}


def _grads(step, bad=None):
    g = {
        "w": jnp.cos(0.3 * step + jnp.arange(6.0)).reshape(2, 3),
        "b": jnp.sin(0.5 * step + jnp.arange(2.0)),
    }
    if bad is not None:
        g["w"] = g["w"].at[1, 2].set(bad)
    return g



def _assert_bit_identical(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(la, lb):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


class RejectedStepTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_nan_and_inf_steps_leave_params_and_state_bit_identical(self):
        tx = gradtx.apply_if_finite(gradtx.adam(0.1), max_consecutive_errors=3)
        update = self.variant(tx.update)
        params = _params()
        state = tx.init(params)
        for step in range(3):  # some finite history, so the inner state is non-trivial
            u, state = update(_grads(step), state, params)
            params = gradtx.apply_updates(params, u)
        for k, bad in enumerate([jnp.nan, jnp.inf, -jnp.inf]):
            u, new_state = update(_grads(10 + k, bad), state, params)
            _assert_bit_identical(u, jax.tree.map(jnp.zeros_like, params))
            _assert_bit_identical(gradtx.apply_updates(params, u), params)
            _assert_bit_identical(new_state.inner_state, state.inner_state)
            chex.assert_tree_all_finite(new_state)
            assert int(new_state.notfinite_count) == k + 1
            assert int(new_state.total_notfinite) == k + 1
            assert not bool(new_state.last_finite)
            state = new_state
        # A finite step resets the consecutive count and updates normally.
        u, state = update(_grads(20), state, params)
        assert int(state.notfinite_count) == 0 and int(state.total_notfinite) == 3
        assert bool(state.last_finite)
        assert int(state.inner_state[0].count) == 4  # 3 + 1 accepted inner steps
        assert float(jnp.max(jnp.abs(u["w"]))) > 0


def test_state_types_and_dtypes():
    tx = gradtx.apply_if_finite(gradtx.identity(), 2)
    state = tx.init(_params())
    assert isinstance(state, ApplyIfFiniteState)
    assert state.notfinite_count.dtype == jnp.int32 and state.notfinite_count.shape == ()
    assert state.total_notfinite.dtype == jnp.int32
    assert state.last_finite.dtype == jnp.bool_
    assert repr(tx) == "apply_if_finite(inner=identity(), max_consecutive_errors=2)"


def _simulate_counts(flags, max_errors):
    """Hand computation of (notfinite_count, total, last_finite, accepted) per step."""
    consecutive, total, out = 0, 0, []
    for finite in flags:
        consecutive = 0 if finite else consecutive + 1
        total += 0 if finite else 1
        out.append((consecutive, total, finite, finite or consecutive > max_errors))
    return out


@functools.cache
def _summing_tx(max_errors):
    """apply_if_finite around a running sum of the accepted gradients (its state tells which)."""
    tx = gradtx.apply_if_finite(gradtx.trace(decay=1.0), max_errors)
    return tx, jax.jit(tx.update)


@settings(max_examples=15, deadline=None)
@given(
    flags=st.lists(st.booleans(), min_size=1, max_size=14),
    max_errors=st.integers(1, 3),
)
def test_counters_and_acceptance_match_hand_computation(flags, max_errors):
    tx, update = _summing_tx(max_errors)
    g_ok = jnp.array([1.0, 2.0])
    g_bad = jnp.array([1.0, jnp.nan])
    state = tx.init(g_ok)
    running = np.zeros(2)
    for finite, (count, total, last, accepted) in zip(flags, _simulate_counts(flags, max_errors)):
        g = g_ok if finite else g_bad
        u, state = update(g, state)
        assert int(state.notfinite_count) == count
        assert int(state.total_notfinite) == total
        assert bool(state.last_finite) == last
        if accepted:
            running = running + np.asarray(g)
            np.testing.assert_array_equal(np.asarray(u), running)
        else:
            np.testing.assert_array_equal(np.asarray(u), np.zeros(2))
        np.testing.assert_array_equal(np.asarray(state.inner_state.trace), running)


def test_gives_up_after_max_consecutive_errors_like_optax():
    """The (max+1)-th consecutive bad step reaches the inner transformation (NaN poisons it)."""
    max_errors = 2
    tx = gradtx.apply_if_finite(gradtx.adam(0.1), max_errors)
    ref = optax.apply_if_finite(optax.adam(0.1), max_errors)
    params = _params()
    s, rs = tx.init(params), ref.init(params)
    ref_update = jax.jit(ref.update)
    seq = [None, jnp.nan, jnp.nan, jnp.nan, jnp.nan, None]
    for step, bad in enumerate(seq):
        u, s = tx.update(_grads(step, bad), s, params)
        ru, rs = ref_update(_grads(step, bad), rs, params)
        chex.assert_trees_all_close(u, ru, rtol=1e-6, atol=1e-7)  # NaN == NaN here
        for a, b in zip(jax.tree.leaves(s), jax.tree.leaves(rs)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7, equal_nan=True)
        if step in (1, 2):
            _assert_bit_identical(u, jax.tree.map(jnp.zeros_like, params))
        if step == 3:  # third consecutive error > max_consecutive_errors: let through
            assert int(s.notfinite_count) == 3
            assert bool(jnp.isnan(u["w"][1, 2]))
            assert bool(jnp.isnan(s.inner_state[0].mu["w"][1, 2]))
            assert int(s.inner_state[0].count) == 2


class VsOptaxTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_random_bad_steps_match_optax_for_40_steps(self):
        rng = np.random.default_rng(0)
        bad_steps = set(rng.choice(40, size=9, replace=False).tolist())
        tx = gradtx.apply_if_finite(gradtx.adam(0.05), max_consecutive_errors=5)
        ref = optax.apply_if_finite(optax.adam(0.05), max_consecutive_errors=5)
        update, ref_update = self.variant(tx.update), jax.jit(ref.update)
        p, rp = _params(), _params()
        s, rs = tx.init(p), ref.init(rp)
        for step in range(40):
            bad = jnp.inf if step in bad_steps else None
            u, s = update(_grads(step, bad), s, p)
            ru, rs = ref_update(_grads(step, bad), rs, rp)
            chex.assert_trees_all_close(u, ru, rtol=1e-5, atol=1e-6)
            p, rp = _apply(p, u), _apply(rp, ru)
        chex.assert_trees_all_close(p, rp, rtol=1e-5, atol=1e-6)
        chex.assert_tree_all_finite((p, s))
        assert int(s.total_notfinite) == len(bad_steps) == int(rs.total_notfinite)
        for a, b in zip(jax.tree.leaves(s), jax.tree.leaves(rs)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)


def test_extra_args_reach_inner():
    tx = gradtx.apply_if_finite(gradtx.reduce_on_plateau(factor=0.5, patience=1), 3)
    state = tx.init(jnp.zeros(2))
    for loss in [1.0, 2.0]:  # second loss does not improve: scale halves
        u, state = tx.update(jnp.ones(2), state, value=loss)
    np.testing.assert_allclose(u, [0.5, 0.5])
    u, state = tx.update(jnp.array([1.0, jnp.nan]), state, value=0.0)  # rejected: value ignored
    assert float(state.inner_state.best_value) == 1.0


def test_works_with_optax_inner():
    tx = gradtx.apply_if_finite(optax.sgd(0.5), 1)
    state = tx.init(jnp.zeros(2))
    u, state = tx.update(jnp.array([1.0, 2.0]), state)
    np.testing.assert_allclose(u, [-0.5, -1.0])
    u, state = tx.update(jnp.array([1.0, jnp.nan]), state)
    np.testing.assert_array_equal(u, [0.0, 0.0])


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [(0, ValueError, ">= 1, got 0"), (-2, ValueError, ">= 1"), (1.5, TypeError, "integer"), (True, TypeError, "integer")],
)
def test_validation(value, error, match):
    with pytest.raises(error, match=f"max_consecutive_errors.*{match}"):
        gradtx.apply_if_finite(gradtx.identity(), value)
    with pytest.raises(TypeError, match="inner"):
        gradtx.apply_if_finite(lambda g: g, 2)
