"""Tests of clip, clip_by_norm, clip_by_global_norm and zero_nans."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _optax_parity import make_tree, run_against_optax
from absl.testing import parameterized
from hypothesis import given, settings
from hypothesis import strategies as st

import gradtx
from gradtx.transforms.clipping import ZeroNansState

RTOL, ATOL = 1e-5, 1e-6


def _clipping_grads(corrupt):
    def make_grads(i):
        # gradient scale varies over 4 orders of magnitude so that clipping is on and off
        g = make_tree(jax.random.key(i), scale=10.0 ** ((i % 5) - 2))
        if corrupt and i % 3 == 0:
            g["w"] = g["w"].at[i % 3, 1].set(jnp.nan)
        return g

    return make_grads


def _check_found_nan(g, state):
    chex.assert_trees_all_equal(state.found_nan, jax.tree.map(lambda x: jnp.any(jnp.isnan(x)), g))


PARITY_CASES = [
    ("clip", "clip", dict(max_delta=0.3), False),
    ("global_norm_small", "clip_by_global_norm", dict(max_norm=0.5), False),
    ("global_norm_large", "clip_by_global_norm", dict(max_norm=20.0), False),
    ("zero_nans", "zero_nans", {}, True),
]


class OptaxParityTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*PARITY_CASES)
    def test_matches_optax_40_steps(self, name, kwargs, corrupt):
        ours, ref = getattr(gradtx, name)(**kwargs), getattr(optax, name)(**kwargs)
        dev = run_against_optax(
            self.variant, ours, ref, f"clipping/{name}{kwargs!r}", rtol=RTOL, atol=ATOL,
            make_grads=_clipping_grads(corrupt), check_state=_check_found_nan if corrupt else None,
        )
        print(f"{name}({kwargs}): max relative deviation from optax over 40 steps = {dev:.3g}")


def test_clip_by_hand():
    tx = gradtx.clip(1.5)
    u, _ = tx.update(jnp.array([-3.0, -1.0, 0.0, 1.5, 2.0]), tx.init(None))
    np.testing.assert_array_equal(u, [-1.5, -1.0, 0.0, 1.5, 1.5])


def test_clip_by_norm_by_hand():
    grads = {"big": jnp.array([3.0, 4.0]), "small": jnp.array([0.3, 0.4]), "zero": jnp.zeros(3), "m": jnp.full((2, 2), 2.0)}
    tx = gradtx.clip_by_norm(1.0)
    u, _ = tx.update(grads, tx.init(grads))
    np.testing.assert_allclose(u["big"], [0.6, 0.8], rtol=RTOL)  # norm 5 -> 1
    np.testing.assert_array_equal(u["small"], grads["small"])  # norm 0.5 kept
    np.testing.assert_array_equal(u["zero"], 0.0)
    np.testing.assert_allclose(u["m"], np.full((2, 2), 0.5), rtol=RTOL)  # Frobenius norm 4 -> 1


def test_clip_by_global_norm_by_hand():
    grads = {"a": jnp.array([3.0, 0.0]), "b": jnp.array([[4.0]])}  # global norm 5
    for c, factor in [(1.0, 0.2), (2.5, 0.5), (5.5, 1.0)]:
        tx = gradtx.clip_by_global_norm(c)
        u, _ = tx.update(grads, tx.init(grads))
        np.testing.assert_allclose(u["a"], factor * np.array([3.0, 0.0]), rtol=RTOL)
        np.testing.assert_allclose(u["b"], factor * np.array([[4.0]]), rtol=RTOL)


@pytest.mark.parametrize("jit", [False, True])
def test_clip_by_global_norm_zero_max_norm(jit):
    tx = gradtx.clip_by_global_norm(0.0)
    update = jax.jit(tx.update) if jit else tx.update
    zeros = {"a": jnp.zeros(3), "b": jnp.zeros((2, 2))}
    u, _ = update(zeros, tx.init(zeros))
    chex.assert_tree_all_finite(u)
    chex.assert_trees_all_equal(u, zeros)
    ones = jax.tree.map(jnp.ones_like, zeros)
    u, _ = update(ones, tx.init(ones))
    chex.assert_trees_all_equal(u, zeros)  # nonzero gradients are clipped to 0
    # zero gradients with a positive bound, and an empty tree, are fine too
    u, _ = gradtx.clip_by_global_norm(1.0).update(zeros, tx.init(zeros))
    chex.assert_trees_all_equal(u, zeros)
    assert gradtx.clip_by_global_norm(1.0).update({}, tx.init({}))[0] == {}


def test_clip_by_global_norm_low_precision():
    g = {"h": jnp.full((4,), 300.0, jnp.float16), "b": jnp.full((3,), 200.0, jnp.bfloat16)}
    # sum of squares = 4*9e4 + 3*4e4 = 4.8e5 overflows float16 (max 65504) but not the float32 norm
    tx = gradtx.clip_by_global_norm(1.0)
    u, _ = tx.update(g, tx.init(g))
    chex.assert_trees_all_equal_dtypes(u, g)
    norm = np.sqrt(4 * 300.0**2 + 3 * 200.0**2)
    np.testing.assert_allclose(np.asarray(u["h"], np.float32), 300.0 / norm, rtol=2e-3)
    np.testing.assert_allclose(np.asarray(u["b"], np.float32), 200.0 / norm, rtol=1e-2)


def test_zero_nans_by_hand():
    tx = gradtx.zero_nans()
    params = {"a": jnp.zeros(3), "b": jnp.zeros(2)}
    state = tx.init(params)
    assert isinstance(state, ZeroNansState)
    assert not bool(state.found_nan["a"]) and state.found_nan["a"].dtype == jnp.bool_
    u, state = tx.update({"a": jnp.array([1.0, jnp.nan, jnp.inf]), "b": jnp.array([2.0, -1.0])}, state)
    np.testing.assert_array_equal(u["a"], [1.0, 0.0, np.inf])  # only NaN is replaced
    np.testing.assert_array_equal(u["b"], [2.0, -1.0])
    assert bool(state.found_nan["a"]) and not bool(state.found_nan["b"])
    _, state = tx.update({"a": jnp.ones(3), "b": jnp.ones(2)}, state)
    assert not bool(state.found_nan["a"])  # the flag reports the last update only


# --------------------------------------------------------------------------------------------
# Invariants
# --------------------------------------------------------------------------------------------

_floats = st.floats(-1e4, 1e4, allow_subnormal=False, width=32)


@settings(max_examples=50, deadline=None)
@given(
    a=st.lists(_floats, min_size=4, max_size=4),
    b=st.lists(_floats, min_size=3, max_size=3),
    max_norm=st.floats(1e-3, 1e3),
)
def test_clip_by_global_norm_bounds_the_norm(a, b, max_norm):
    g = {"a": jnp.asarray(a, jnp.float32), "b": jnp.asarray(b, jnp.float32)}
    u, _ = gradtx.clip_by_global_norm(max_norm).update(g, gradtx.EmptyState())
    norm = np.sqrt(sum(np.sum(np.asarray(x, np.float64) ** 2) for x in jax.tree.leaves(u)))
    assert norm <= max_norm * (1 + 1e-5)
    g_norm = np.sqrt(np.sum(np.asarray(a, np.float64) ** 2) + np.sum(np.asarray(b, np.float64) ** 2))
    if g_norm < max_norm:  # below the bound nothing changes
        np.testing.assert_array_equal(u["a"], g["a"])


@settings(max_examples=50, deadline=None)
@given(
    a=st.lists(_floats, min_size=4, max_size=4),
    b=st.lists(_floats, min_size=3, max_size=3),
    max_norm=st.floats(1e-3, 1e3),
)
def test_clip_by_norm_bounds_each_leaf(a, b, max_norm):
    g = {"a": jnp.asarray(a, jnp.float32), "b": jnp.asarray(b, jnp.float32)}
    u, _ = gradtx.clip_by_norm(max_norm).update(g, gradtx.EmptyState())
    for k in g:
        x, y = np.asarray(u[k], np.float64), np.asarray(g[k], np.float64)
        assert np.linalg.norm(x) <= max_norm * (1 + 1e-5)
        # direction is kept: u is a non-negative multiple of g
        np.testing.assert_allclose(x * np.linalg.norm(y), y * np.linalg.norm(x), rtol=1e-4, atol=1e-3 * max(1.0, np.linalg.norm(y)))


@settings(max_examples=30, deadline=None)
@given(g=st.lists(_floats, min_size=5, max_size=5), max_delta=st.floats(0.0, 100.0))
def test_clip_bounds_each_coordinate(g, max_delta):
    u, _ = gradtx.clip(max_delta).update(jnp.asarray(g, jnp.float32), gradtx.EmptyState())
    assert np.all(np.abs(np.asarray(u)) <= np.float32(max_delta))


BAD_ARGS = [
    ("clip", {"max_delta": -1.0}, ValueError, "max_delta"),
    ("clip", {"max_delta": "1"}, TypeError, "max_delta"),
    ("clip_by_norm", {"max_norm": 0.0}, ValueError, "max_norm"),
    ("clip_by_norm", {"max_norm": -1.0}, ValueError, "max_norm"),
    ("clip_by_global_norm", {"max_norm": -1.0}, ValueError, "max_norm"),
    ("clip_by_global_norm", {"max_norm": float("nan")}, ValueError, "max_norm"),
    ("clip_by_global_norm", {"max_norm": None}, TypeError, "max_norm"),
]


@pytest.mark.parametrize("name,kwargs,exc,match", BAD_ARGS)
def test_bad_hyperparameters_raise(name, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        getattr(gradtx, name)(**kwargs)


def test_traced_max_norm_skips_validation():
    g = {"a": jnp.array([3.0, 4.0])}

    @jax.jit
    def f(c):
        return gradtx.clip_by_global_norm(c).update(g, gradtx.EmptyState())[0], gradtx.clip_by_norm(c).update(
            g, gradtx.EmptyState()
        )[0]

    u, v = f(1.0)
    np.testing.assert_allclose(u["a"], [0.6, 0.8], rtol=RTOL)
    np.testing.assert_allclose(v["a"], [0.6, 0.8], rtol=RTOL)
