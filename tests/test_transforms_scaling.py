"""Tests of scale, scale_by_learning_rate, scale_by_schedule, scale_by_sign, scale_by_trust_ratio."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _optax_parity import ATOL, RTOL, make_tree
from _optax_parity import run_against_optax as _run_against_optax
from absl.testing import parameterized

import gradtx
from gradtx.base import EmptyState
from gradtx.transforms.scaling import ScaleByScheduleState


def _schedule(count):
    return 0.1 / (1.0 + count)


PARITY_CASES = [
    ("scale", "scale", dict(step_size=-0.3)),
    ("lr_constant", "scale_by_learning_rate", dict(learning_rate=0.02)),
    ("lr_constant_no_flip", "scale_by_learning_rate", dict(learning_rate=0.02, flip_sign=False)),
    ("lr_schedule", "scale_by_learning_rate", dict(learning_rate=_schedule)),
    ("schedule", "scale_by_schedule", dict(step_size_fn=_schedule)),
    ("sign", "scale_by_sign", {}),
    ("trust_ratio", "scale_by_trust_ratio", {}),
    ("trust_ratio_custom", "scale_by_trust_ratio", dict(min_norm=0.5, trust_coefficient=0.01, eps=1e-3)),
]


class OptaxParityTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*PARITY_CASES)
    def test_matches_optax_40_steps(self, name, kwargs):
        ours, ref = getattr(gradtx, name)(**kwargs), getattr(optax, name)(**kwargs)
        dev = run_against_optax(self.variant, ours, ref, f"{name}{kwargs!r}")
        print(f"{name}({kwargs}): max relative deviation from optax over 40 steps = {dev:.3g}")


G = np.array([0.5, -2.0, 0.0, 3.0], np.float32)


def test_scale_by_hand():
    tx = gradtx.scale(-0.25)
    u, s = tx.update(jnp.asarray(G), tx.init(jnp.zeros(4)))
    np.testing.assert_allclose(u, -0.25 * G, rtol=RTOL)
    assert s == EmptyState()


@pytest.mark.parametrize("flip_sign,sign", [(True, -1.0), (False, 1.0)])
def test_learning_rate_constant_by_hand(flip_sign, sign):
    tx = gradtx.scale_by_learning_rate(0.1, flip_sign=flip_sign)
    state = tx.init(jnp.zeros(4))
    assert state == EmptyState()
    u, _ = tx.update(jnp.asarray(G), state)
    np.testing.assert_allclose(u, sign * 0.1 * G.astype(np.float64), rtol=RTOL)


def test_learning_rate_schedule_uses_count_before_increment():
    seen = []
    tx = gradtx.scale_by_learning_rate(lambda c: 0.5 * (c + 1))  # lr(0)=0.5, lr(1)=1.0, lr(2)=1.5
    state = tx.init(jnp.zeros(4))
    assert isinstance(state, ScaleByScheduleState) and state.count.dtype == jnp.int32
    for k in range(3):
        u, state = tx.update(jnp.asarray(G), state)
        seen.append(np.asarray(u))
        assert int(state.count) == k + 1
    for k, u in enumerate(seen):
        np.testing.assert_allclose(u, -0.5 * (k + 1) * G, rtol=RTOL)


def test_learning_rate_none_is_identity():
    tx = gradtx.scale_by_learning_rate(None)
    u, state = tx.update(jnp.asarray(G), tx.init(jnp.zeros(4)))
    np.testing.assert_array_equal(u, G)
    assert state == EmptyState()


def test_scale_by_schedule_by_hand():
    tx = gradtx.scale_by_schedule(lambda c: 2.0**c)
    state = tx.init(jnp.zeros(4))
    for k in range(3):
        u, state = tx.update(jnp.asarray(G), state)
        np.testing.assert_allclose(u, 2.0**k * G, rtol=RTOL)


def test_scale_by_sign_by_hand():
    tx = gradtx.scale_by_sign()
    u, _ = tx.update(jnp.asarray(G), tx.init(jnp.zeros(4)))
    np.testing.assert_array_equal(u, [1.0, -1.0, 0.0, 1.0])


@pytest.mark.parametrize("min_norm,coef,eps", [(0.0, 1.0, 0.0), (0.0, 0.02, 1e-3), (10.0, 1.0, 0.0)])
def test_trust_ratio_by_hand(min_norm, coef, eps):
    params = {"w": jnp.array([[3.0, 4.0], [0.0, 0.0]]), "b": jnp.array([1.0, 2.0, 2.0])}
    grads = {"w": jnp.array([[0.1, 0.0], [0.0, 0.0]]), "b": jnp.array([0.0, -6.0, 8.0])}
    tx = gradtx.scale_by_trust_ratio(min_norm, coef, eps)
    u, _ = tx.update(grads, tx.init(params), params)
    for k in params:
        p, g = np.asarray(params[k], np.float64), np.asarray(grads[k], np.float64)
        pn, gn = max(np.linalg.norm(p), min_norm), max(np.linalg.norm(g), min_norm)
        ratio = 1.0 if (pn == 0 or gn == 0) else coef * pn / (gn + eps)
        np.testing.assert_allclose(u[k], g * ratio, rtol=RTOL, atol=ATOL)


def test_trust_ratio_zero_norms_leave_update_unchanged():
    tx = gradtx.scale_by_trust_ratio()
    params = {"zero_p": jnp.zeros(3), "zero_g": jnp.ones(2)}
    grads = {"zero_p": jnp.array([1.0, -2.0, 0.5]), "zero_g": jnp.zeros(2)}
    u, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_array_equal(u["zero_p"], grads["zero_p"])
    np.testing.assert_array_equal(u["zero_g"], 0.0)
    # gradient through the update is finite even at zero params (safe norm)
    grad = jax.grad(lambda p: jnp.sum(tx.update(grads, tx.init(p), p)[0]["zero_p"]))(params)
    chex.assert_tree_all_finite(grad)


def test_trust_ratio_requires_params():
    tx = gradtx.scale_by_trust_ratio()
    with pytest.raises(ValueError, match="params"):
        tx.update(jnp.ones(2), tx.init(jnp.zeros(2)))


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_dtypes_preserved(dtype):
    g = make_tree(jax.random.key(0), dtype)
    for tx in [
        gradtx.scale(0.5),
        gradtx.scale_by_learning_rate(0.1),
        gradtx.scale_by_learning_rate(_schedule),
        gradtx.scale_by_sign(),
        gradtx.scale_by_trust_ratio(),
    ]:
        u, _ = tx.update(g, tx.init(g), g)
        chex.assert_trees_all_equal_dtypes(u, g)
        chex.assert_tree_all_finite(u)


BAD_ARGS = [
    ("scale", {"step_size": "a"}, TypeError, "step_size"),
    ("scale", {"step_size": float("nan")}, ValueError, "step_size"),
    ("scale", {"step_size": jnp.ones(3)}, TypeError, "step_size"),
    ("scale_by_learning_rate", {"learning_rate": "0.1"}, TypeError, "learning_rate"),
    ("scale_by_learning_rate", {"learning_rate": float("inf")}, ValueError, "learning_rate"),
    ("scale_by_learning_rate", {"learning_rate": 0.1, "flip_sign": "yes"}, TypeError, "flip_sign"),
    ("scale_by_schedule", {"step_size_fn": 0.1}, TypeError, "step_size_fn"),
    ("scale_by_trust_ratio", {"min_norm": -1.0}, ValueError, "min_norm"),
    ("scale_by_trust_ratio", {"trust_coefficient": -0.1}, ValueError, "trust_coefficient"),
    ("scale_by_trust_ratio", {"eps": -1e-3}, ValueError, "eps"),
]


@pytest.mark.parametrize("name,kwargs,exc,match", BAD_ARGS)
def test_bad_hyperparameters_raise(name, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        getattr(gradtx, name)(**kwargs)


def test_traced_learning_rate_skips_validation():
    g = jnp.asarray(G)

    @jax.jit
    def f(lr, coef):
        u = gradtx.scale_by_learning_rate(lr).update(g, EmptyState())[0]
        tr = gradtx.scale_by_trust_ratio(trust_coefficient=coef)
        return u, tr.update(g, tr.init(g), g + 1.0)[0]

    u, v = f(0.5, 0.1)
    np.testing.assert_allclose(u, -0.5 * G, rtol=RTOL)
    want = gradtx.scale_by_trust_ratio(trust_coefficient=0.1).update(g, EmptyState(), g + 1.0)[0]
    np.testing.assert_allclose(v, want, rtol=RTOL)


def test_repr():
    assert repr(gradtx.scale_by_learning_rate(0.1)) == "scale_by_learning_rate(learning_rate=0.1, flip_sign=True)"
    assert repr(gradtx.scale(2.0)) == "scale(step_size=2.0)"


def run_against_optax(*args, **kwargs):
    """[`_optax_parity.run_against_optax`] with the params moving by 0.05 x the optax update."""
    return _run_against_optax(*args, param_step=0.05, **kwargs)
