"""Tests of add_noise (annealed Gaussian gradient noise)."""

import warnings

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _optax_parity import make_tree

import gradtx
from gradtx.transforms.noise import AddNoiseState

RTOL, ATOL = 1e-5, 1e-6


class OptaxParityTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_matches_optax_40_steps(self):
        # same key => same noise stream as optax, to float32 rounding
        eta, gamma = 0.3, 0.55
        ours = gradtx.add_noise(eta, gamma, key=jax.random.key(42))
        ref = optax.add_noise(eta, gamma, key=jax.random.key(42))
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
        assert int(s_ours.count) == 40
        print(f"add_noise: max relative deviation from optax over 40 steps = {worst:.3g}")


def test_integer_seed_equals_key():
    g = jnp.zeros(4)
    a, b = gradtx.add_noise(0.1, 0.5, key=7), gradtx.add_noise(0.1, 0.5, key=jax.random.key(7))
    raw = gradtx.add_noise(0.1, 0.5, key=jax.random.key_data(jax.random.key(7)))
    ua = a.update(g, a.init(g))[0]
    np.testing.assert_array_equal(ua, b.update(g, b.init(g))[0])
    np.testing.assert_array_equal(ua, raw.update(g, raw.init(g))[0])


def test_noise_by_hand_stream():
    # re-derive the stream: split the state key, split the sample key per leaf, scale N(0,1).
    eta, gamma = 0.5, 0.55
    key = jax.random.key(3)
    tx = gradtx.add_noise(eta, gamma, key=key)
    g = {"a": jnp.ones(3), "b": jnp.zeros(2)}
    state = tx.init(g)
    for t in range(1, 4):
        u, state = tx.update(g, state)
        key, sample = jax.random.split(key)
        ka, kb = jax.random.split(sample, 2)
        std = np.sqrt(eta / t**gamma)
        np.testing.assert_allclose(u["a"], 1.0 + std * np.asarray(jax.random.normal(ka, (3,))), rtol=RTOL)
        np.testing.assert_allclose(u["b"], std * np.asarray(jax.random.normal(kb, (2,))), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("steps", [1, 9])
def test_noise_variance_anneals(steps):
    eta, gamma = 0.8, 0.55
    tx = gradtx.add_noise(eta, gamma, key=jax.random.key(0))
    g = jnp.zeros(40_000)
    state = tx.init(g)
    update = jax.jit(tx.update)
    for _ in range(steps):
        u, state = update(g, state)
    want = eta / steps**gamma  # variance eta / t^gamma at step t
    var = float(np.var(np.asarray(u, np.float64)))
    assert abs(var - want) < 0.03 * want  # 40k samples: relative s.e. of the variance ~0.7%
    assert abs(float(np.mean(np.asarray(u)))) < 5 * np.sqrt(want / g.size)


def test_state_and_determinism():
    tx = gradtx.add_noise(0.1, 0.5, key=1)
    state = tx.init(jnp.zeros(3))
    assert isinstance(state, AddNoiseState) and state.count.dtype == jnp.int32
    u1, s1 = tx.update(jnp.zeros(3), state)
    u1b, _ = tx.update(jnp.zeros(3), state)
    u2, _ = tx.update(jnp.zeros(3), s1)
    np.testing.assert_array_equal(u1, u1b)  # same state => same noise
    assert not np.allclose(u1, u2)  # the key advances
    other = gradtx.add_noise(0.1, 0.5, key=2)
    assert not np.allclose(u1, other.update(jnp.zeros(3), other.init(jnp.zeros(3)))[0])


def test_eta_zero_is_identity_and_dtype_kept():
    g = {"h": jnp.array([1.0, -2.0], jnp.float16)}
    tx = gradtx.add_noise(0.0, 0.55, key=0)
    u, _ = tx.update(g, tx.init(g))
    assert u["h"].dtype == jnp.float16
    np.testing.assert_array_equal(u["h"], g["h"])


def test_key_and_seed_handling():
    with pytest.raises(ValueError, match="key"):
        gradtx.add_noise(0.1, 0.5, key=1, seed=2)
    with pytest.warns(DeprecationWarning, match="seed"):
        tx = gradtx.add_noise(0.1, 0.5, seed=5)
    g = jnp.zeros(3)
    ref = gradtx.add_noise(0.1, 0.5, key=5)
    np.testing.assert_array_equal(tx.update(g, tx.init(g))[0], ref.update(g, ref.init(g))[0])
    with pytest.warns(UserWarning, match="key"):
        gradtx.add_noise(0.1, 0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gradtx.add_noise(0.1, 0.5, key=0)  # no warning with an explicit key


BAD_ARGS = [
    ({"eta": -0.1, "gamma": 0.5, "key": 0}, ValueError, "eta"),
    ({"eta": "0.1", "gamma": 0.5, "key": 0}, TypeError, "eta"),
    ({"eta": 0.1, "gamma": -0.5, "key": 0}, ValueError, "gamma"),
    ({"eta": 0.1, "gamma": 0.5, "key": "k"}, TypeError, "key"),
    ({"eta": 0.1, "gamma": 0.5, "key": 1.5}, TypeError, "key"),
]


@pytest.mark.parametrize("kwargs,exc,match", BAD_ARGS)
def test_bad_hyperparameters_raise(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        gradtx.add_noise(**kwargs)


def test_traced_eta_skips_validation():
    g = jnp.zeros(3)

    @jax.jit
    def f(eta):
        tx = gradtx.add_noise(eta, 0.55, key=0)
        return tx.update(g, tx.init(g))[0]

    ref = gradtx.add_noise(0.2, 0.55, key=0)
    np.testing.assert_allclose(f(0.2), ref.update(g, ref.init(g))[0], rtol=RTOL)
