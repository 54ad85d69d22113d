"""Tests of trace (heavy-ball / Nesterov momentum) and ema."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _optax_parity import ATOL, RTOL, run_against_optax
from absl.testing import parameterized

import gradtx
from gradtx.transforms.momentum import EmaState, TraceState

PARITY_CASES = [
    ("trace", "trace", dict(decay=0.9)),
    ("trace_nesterov", "trace", dict(decay=0.8, nesterov=True)),
    ("ema_debias", "ema", dict(decay=0.9)),
    ("ema_plain", "ema", dict(decay=0.7, debias=False)),
]


class OptaxParityTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*PARITY_CASES)
    def test_matches_optax_40_steps(self, name, kwargs):
        ours, ref = getattr(gradtx, name)(**kwargs), getattr(optax, name)(**kwargs)
        dev = run_against_optax(self.variant, ours, ref, f"{name}{kwargs!r}")
        print(f"{name}({kwargs}): max relative deviation from optax over 40 steps = {dev:.3g}")


G_SEQ = [
    np.array([1.0, -2.0, 0.5], np.float32),
    np.array([0.0, 1.0, 1.5], np.float32),
    np.array([-3.0, 0.25, 2.0], np.float32),
]


@pytest.mark.parametrize("nesterov", [False, True])
def test_trace_by_hand(nesterov):
    beta = 0.6
    tx = gradtx.trace(beta, nesterov=nesterov)
    state = tx.init(jnp.zeros(3))
    assert isinstance(state, TraceState)
    t = np.zeros(3)
    for g in G_SEQ:
        u, state = tx.update(jnp.asarray(g), state)
        t = g + beta * t
        want = g + beta * t if nesterov else t
        np.testing.assert_allclose(u, want, rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(state.trace, t, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("debias", [True, False])
def test_ema_by_hand(debias):
    beta = 0.75
    tx = gradtx.ema(beta, debias=debias)
    state = tx.init(jnp.zeros(3))
    assert isinstance(state, EmaState)
    m = np.zeros(3)
    for k, g in enumerate(G_SEQ, start=1):
        u, state = tx.update(jnp.asarray(g), state)
        m = beta * m + (1 - beta) * g
        want = m / (1 - beta**k) if debias else m
        np.testing.assert_allclose(u, want, rtol=RTOL, atol=ATOL)
        assert int(state.count) == k and state.count.dtype == jnp.int32


def test_ema_debiased_constant_is_exact():
    # the debiased average of a constant sequence is that constant from the first step on
    tx = gradtx.ema(0.99)
    state = tx.init(jnp.zeros(2))
    for _ in range(4):
        u, state = tx.update(jnp.array([2.0, -1.0]), state)
        np.testing.assert_allclose(u, [2.0, -1.0], rtol=1e-5)


def test_ema_decay_one_is_finite():
    tx = gradtx.ema(1.0)
    u, _ = tx.update(jnp.ones(2), tx.init(jnp.zeros(2)))
    np.testing.assert_array_equal(u, 0.0)


def test_trace_decay_zero_is_identity():
    tx = gradtx.trace(0.0)
    state = tx.init(jnp.zeros(3))
    for g in G_SEQ:
        u, state = tx.update(jnp.asarray(g), state)
        np.testing.assert_array_equal(u, g)


@pytest.mark.parametrize("factory", [gradtx.trace, gradtx.ema])
def test_accumulator_dtype(factory):
    params = {"a": jnp.zeros(3, jnp.float32), "b": jnp.zeros(2, jnp.bfloat16)}
    tx = factory(0.9, accumulator_dtype=jnp.bfloat16)
    state = tx.init(params)
    buf = state.trace if factory is gradtx.trace else state.ema
    assert buf["a"].dtype == jnp.bfloat16 and buf["b"].dtype == jnp.bfloat16
    g = {"a": jnp.full(3, 1.0 / 3.0), "b": jnp.full(2, 0.5, jnp.bfloat16)}
    u, state = tx.update(g, state)
    assert u["a"].dtype == jnp.float32 and u["b"].dtype == jnp.bfloat16  # updates keep their dtype
    buf = state.trace if factory is gradtx.trace else state.ema
    assert buf["a"].dtype == jnp.bfloat16  # the state keeps the accumulator dtype (jit/scan safe)


BAD_ARGS = [
    ("trace", {"decay": 1.5}, ValueError, "decay"),
    ("trace", {"decay": -0.1}, ValueError, "decay"),
    ("trace", {"decay": "0.9"}, TypeError, "decay"),
    ("trace", {"decay": 0.9, "nesterov": 1}, TypeError, "nesterov"),
    ("trace", {"decay": 0.9, "accumulator_dtype": jnp.int32}, TypeError, "accumulator_dtype"),
    ("ema", {"decay": 2.0}, ValueError, "decay"),
    ("ema", {"decay": 0.9, "debias": "yes"}, TypeError, "debias"),
    ("ema", {"decay": 0.9, "accumulator_dtype": "nope"}, TypeError, "accumulator_dtype"),
]


@pytest.mark.parametrize("name,kwargs,exc,match", BAD_ARGS)
def test_bad_hyperparameters_raise(name, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        getattr(gradtx, name)(**kwargs)


def test_traced_decay_skips_validation():
    g = jnp.asarray(G_SEQ[0])

    @jax.jit
    def f(decay):
        tx = gradtx.trace(decay)
        state = tx.init(g)
        _, state = tx.update(g, state)
        return tx.update(g, state)[0]

    np.testing.assert_allclose(f(0.5), 1.5 * G_SEQ[0], rtol=RTOL)
