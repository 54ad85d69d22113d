"""Tests of gradtx.reduce_on_plateau (hand-computed scales and optax.contrib as reference)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib
import pytest
from absl.testing import parameterized
from hypothesis import given, settings
from hypothesis import strategies as st

import gradtx
from gradtx.wrappers import ReduceLROnPlateauState


def _fields(state):
    return {name: np.asarray(getattr(state, name)) for name in ReduceLROnPlateauState._fields}


def _assert_same_state(s, rs):
    for name, value in _fields(s).items():
        ref = np.asarray(getattr(rs, name))
        assert value.dtype == ref.dtype, name
        np.testing.assert_allclose(value, ref, rtol=1e-6, atol=0, err_msg=name)


def test_hand_computed_scales():
    # patience 2, cooldown 1: reduce when two evaluations in a row fail to improve, then hold
    # the plateau count at 0 for one evaluation.
    tx = gradtx.reduce_on_plateau(factor=0.5, patience=2, cooldown=1)
    losses = [3, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1]
    expected = [1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25]
    expected_plateau = [0, 0, 1, 0, 0, 1, 0, 1, 0, 0, 1]
    state = tx.init(jnp.zeros(2))
    g = jnp.array([2.0, -4.0])
    for loss, scale, plateau in zip(losses, expected, expected_plateau):
        u, state = tx.update(g, state, value=loss)
        np.testing.assert_allclose(u, scale * np.asarray(g))
        assert float(state.scale) == scale and int(state.plateau_count) == plateau
    assert float(state.best_value) == 1.0


def test_accumulation_averages_values():
    tx = gradtx.reduce_on_plateau(factor=0.5, patience=1, accumulation_size=3)
    state = tx.init(jnp.zeros(1))
    for loss, count, avg in [(1.0, 1, 1.0), (2.0, 2, 1.5), (6.0, 0, 0.0)]:
        _, state = tx.update(jnp.ones(1), state, value=loss)
        assert int(state.count) == count
        np.testing.assert_allclose(state.avg_value, avg)
    assert float(state.best_value) == 3.0  # (1 + 2 + 6) / 3
    for loss in [3.0, 3.0, 3.0]:  # average 3.0: no improvement -> reduce (patience 1)
        u, state = tx.update(jnp.ones(1), state, value=loss)
    np.testing.assert_allclose(u, [0.5])


def test_min_scale_and_tolerances():
    tx = gradtx.reduce_on_plateau(factor=0.1, patience=1, min_scale=0.05)
    state = tx.init(jnp.zeros(1))
    scales = []
    for _ in range(4):
        _, state = tx.update(jnp.ones(1), state, value=1.0)
        scales.append(float(state.scale))
    np.testing.assert_allclose(scales, [1.0, 0.1, 0.05, 0.05], rtol=1e-6)
    # atol: 0.95 is not an improvement over 1.0 when atol = 0.1
    tx = gradtx.reduce_on_plateau(factor=0.5, patience=1, rtol=0.0, atol=0.1)
    state = tx.init(jnp.zeros(1))
    _, state = tx.update(jnp.ones(1), state, value=1.0)
    _, state = tx.update(jnp.ones(1), state, value=0.95)
    assert float(state.scale) == 0.5 and float(state.best_value) == 1.0


def test_patience_zero_behaves_like_one():
    losses = [5.0, 4.0, 4.0, 3.0, 3.0, 3.0]
    scales = {}
    for patience in (0, 1):
        tx = gradtx.reduce_on_plateau(factor=0.5, patience=patience)
        state, out = tx.init(jnp.zeros(1)), []
        for loss in losses:
            _, state = tx.update(jnp.ones(1), state, value=loss)
            out.append(float(state.scale))
        scales[patience] = out
    assert scales[0] == scales[1] == [1.0, 1.0, 0.5, 0.5, 0.25, 0.125]


_PLATEAU_LOSSES = [10.0, 8.0, 6.0, 6.0, 6.0, 5.999, 6.0, 6.0, 4.0, 4.0, 4.0, 4.0, 3.9999, 3.0] * 3 + [2.0] * 4


class VsOptaxTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(
        ("defaults_short_patience", {"patience": 2}),
        ("cooldown", {"factor": 0.5, "patience": 2, "cooldown": 2}),
        ("accumulate", {"factor": 0.3, "patience": 1, "accumulation_size": 2, "atol": 0.01}),
        ("min_scale", {"factor": 0.2, "patience": 1, "min_scale": 0.01, "rtol": 0.0, "atol": 1e-3}),
    )
    def test_loss_sequence_with_plateaus(self, kwargs):
        tx = gradtx.reduce_on_plateau(**kwargs)
        ref = optax.contrib.reduce_on_plateau(**kwargs)
        update, ref_update = self.variant(tx.update), jax.jit(ref.update)
        params = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}
        s, rs = tx.init(params), ref.init(params)
        _assert_same_state(s, rs)
        assert len(_PLATEAU_LOSSES) >= 40
        for step, loss in enumerate(_PLATEAU_LOSSES):
            g = jax.tree.map(lambda p, step=step: p * (1.0 + step), params)
            u, s = update(g, s, value=jnp.asarray(loss))
            ru, rs = ref_update(g, rs, value=jnp.asarray(loss))
            chex.assert_trees_all_close(u, ru, rtol=1e-6, atol=0)
            _assert_same_state(s, rs)
        assert float(s.scale) < 1.0  # the sequence does trigger reductions


@jax.jit
def _run_both(losses, patience, cooldown, accumulation_size):
    """Both implementations over a loss sequence, with the integer settings traced (one compile)."""
    kwargs = dict(factor=0.5, patience=patience, cooldown=cooldown, accumulation_size=accumulation_size)
    tx, ref = gradtx.reduce_on_plateau(**kwargs), optax.contrib.reduce_on_plateau(**kwargs)
    g = jnp.ones(2)

    def body(carry, loss):
        s, rs = carry
        u, s = tx.update(g, s, value=loss)
        ru, rs = ref.update(g, rs, value=loss)
        return (s, rs), (u, ru, tuple(s), tuple(rs))

    return jax.lax.scan(body, (tx.init(g), ref.init(g)), losses)[1]


@settings(max_examples=25, deadline=None)
@given(
    losses=st.lists(st.sampled_from([1.0, 2.0, 3.0, 3.0001, 5.0]), min_size=30, max_size=30),
    patience=st.integers(1, 3),
    cooldown=st.integers(0, 2),
    accumulation_size=st.integers(1, 3),
)
def test_random_sequences_match_optax(losses, patience, cooldown, accumulation_size):
    u, ru, states, ref_states = _run_both(jnp.asarray(losses), patience, cooldown, accumulation_size)
    np.testing.assert_array_equal(u, ru)
    for name, a, b in zip(ReduceLROnPlateauState._fields, states, ref_states):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=name)


def test_chained_after_adam_matches_optax():
    tx = gradtx.chain(gradtx.adam(0.1), gradtx.reduce_on_plateau(patience=2))
    ref = optax.chain(optax.adam(0.1), optax.contrib.reduce_on_plateau(patience=2))
    update, ref_update = jax.jit(tx.update), jax.jit(ref.update)
    p = rp = {"w": jnp.array([1.0, -2.0, 3.0])}
    s, rs = tx.init(p), ref.init(rp)
    for loss in _PLATEAU_LOSSES:
        g = jax.tree.map(lambda x: 2 * x, p)
        u, s = update(g, s, p, value=loss)
        ru, rs = ref_update(jax.tree.map(lambda x: 2 * x, rp), rs, rp, value=loss)
        chex.assert_trees_all_close(u, ru, rtol=1e-5, atol=1e-7)
        p, rp = gradtx.apply_updates(p, u), optax.apply_updates(rp, ru)
    np.testing.assert_allclose(s[-1].scale, rs[-1].scale)


def test_state_dtypes_follow_params():
    params = {"a": jnp.ones(2, jnp.float16), "b": jnp.ones(2, jnp.float32)}
    s = gradtx.reduce_on_plateau().init(params)
    rs = optax.contrib.reduce_on_plateau().init(params)
    _assert_same_state(s, rs)
    assert s.scale.dtype == jnp.float16 and s.best_value.dtype == jnp.float32
    assert s.count.dtype == s.plateau_count.dtype == s.cooldown_count.dtype == jnp.int32


def test_missing_or_bad_value():
    tx = gradtx.reduce_on_plateau()
    state = tx.init(jnp.zeros(2))
    with pytest.raises(TypeError, match="value=loss"):
        tx.update(jnp.ones(2), state)
    with pytest.raises(TypeError, match="value=loss"):
        gradtx.chain(gradtx.identity(), tx).update(jnp.ones(2), (gradtx.identity().init(1), state))
    with pytest.raises(ValueError, match="scalar"):
        tx.update(jnp.ones(2), state, value=jnp.ones(3))


def test_repr():
    assert repr(gradtx.reduce_on_plateau(factor=0.5)) == (
        "reduce_on_plateau(factor=0.5, patience=10, rtol=0.0001, atol=0.0, cooldown=0, "
        "accumulation_size=1, min_scale=0.0)"
    )


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"factor": 0.0}, ValueError, r"factor must be in \(0, 1\], got 0.0"),
        ({"factor": 1.5}, ValueError, "factor"),
        ({"patience": -1}, ValueError, "patience must be an integer >= 0, got -1"),
        ({"patience": 2.5}, TypeError, "patience"),
        ({"rtol": -0.1}, ValueError, "rtol"),
        ({"rtol": 1.5}, ValueError, r"rtol must be in \[0, 1\]"),
        ({"atol": -1.0}, ValueError, "atol"),
        ({"rtol": 0.0, "atol": 0.0}, ValueError, "both be 0"),
        ({"cooldown": -1}, ValueError, "cooldown"),
        ({"accumulation_size": 0}, ValueError, "accumulation_size must be an integer >= 1"),
        ({"min_scale": -0.5}, ValueError, "min_scale"),
        ({"min_scale": 2.0}, ValueError, "min_scale"),
    ],
)
def test_validation(kwargs, error, match):
    with pytest.raises(error, match=match):
        gradtx.reduce_on_plateau(**kwargs)


def test_factor_one_never_reduces():
    tx = gradtx.reduce_on_plateau(factor=1.0, patience=1)
    state = tx.init(jnp.zeros(1))
    for _ in range(5):
        _, state = tx.update(jnp.ones(1), state, value=1.0)
    assert float(state.scale) == 1.0
