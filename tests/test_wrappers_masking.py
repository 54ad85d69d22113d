"""Tests of gradtx.masked and gradtx.multi_transform (optax as numerical reference)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from absl.testing import parameterized
from hypothesis import given, settings
from hypothesis import strategies as st

import gradtx
from gradtx.base import EmptyState
from gradtx.wrappers import MaskedNode, MaskedState, MultiTransformState

N_STEPS = 40


def _params():
    return {
        "dense": {"w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3), "b": jnp.array([0.5, -0.25])},
        "scale": jnp.array(1.5),
        "emb": jnp.arange(4.0),
    }


@jax.jit
def _grads(step, params):
    """A deterministic, step-dependent gradient tree shaped like `params`."""
    leaves, treedef = jax.tree.flatten(params)
    out = [jnp.sin(0.7 * step + 1.3 * i + jnp.arange(x.size, dtype=jnp.float32).reshape(x.shape)) for i, x in enumerate(leaves)]
    return jax.tree.unflatten(treedef, out)


_apply = jax.jit(optax.apply_updates)



def _leaves_close(a, b, rtol, atol):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb), (len(la), len(lb))
    for x, y in zip(la, lb):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


class MaskedVsOptaxTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(
        ("full_tree", {"dense": {"w": True, "b": False}, "scale": False, "emb": True}),
        ("prefix", {"dense": True, "scale": False, "emb": False}),
        ("callable", lambda p: jax.tree.map(lambda x: x.ndim >= 2, p)),
    )
    def test_adam_matches_optax(self, mask):
        params = _params()
        tx = gradtx.masked(gradtx.adam(0.05), mask)
        ref = optax.masked(optax.adam(0.05), mask)
        update = self.variant(tx.update)
        ref_update = jax.jit(ref.update)
        p, s = params, tx.init(params)
        rp, rs = params, ref.init(params)
        for step in range(N_STEPS):
            u, s = update(_grads(step, p), s, p)
            ru, rs = ref_update(_grads(step, rp), rs, rp)
            chex.assert_trees_all_close(u, ru, rtol=1e-5, atol=1e-6)
            p, rp = _apply(p, u), _apply(rp, ru)
        chex.assert_trees_all_close(p, rp, rtol=1e-5, atol=1e-6)
        _leaves_close(s, rs, rtol=1e-5, atol=1e-7)


def _tree_of(values):
    return {"a": values[0], "b": {"c": values[1], "d": values[2]}, "e": [values[3], values[4]]}


@settings(max_examples=15, deadline=None)
@given(mask_bits=st.lists(st.booleans(), min_size=5, max_size=5), seed=st.integers(0, 2**16))
def test_masked_out_leaves_untouched_and_state_covers_masked_in(mask_bits, seed):
    rng = np.random.default_rng(seed)
    shapes = [(3,), (2, 2), (), (4,), (1, 3)]
    params = _tree_of([jnp.asarray(rng.normal(size=s), jnp.float32) for s in shapes])
    grads = _tree_of([jnp.asarray(rng.normal(size=s), jnp.float32) for s in shapes])
    mask = _tree_of(mask_bits)
    inner = gradtx.chain(gradtx.trace(decay=0.5), gradtx.scale(-3.0))
    tx = gradtx.masked(inner, mask)
    state = tx.init(params)
    # Inner state: one trace leaf per masked-in param, nothing for the masked-out ones.
    trace_state = state.inner_state[0]
    assert len(jax.tree.leaves(trace_state)) == sum(mask_bits)
    full = inner.init(params)
    for _ in range(3):
        out, state = tx.update(grads, state, params)
        expected, full = inner.update(grads, full, params)
        for m, g, o, e in zip(jax.tree.leaves(mask), jax.tree.leaves(grads), jax.tree.leaves(out), jax.tree.leaves(expected)):
            if m:
                np.testing.assert_allclose(np.asarray(o), np.asarray(e), rtol=1e-6, atol=0)
            else:  # passed through bit for bit
                np.testing.assert_array_equal(np.asarray(o), np.asarray(g))
                assert o.dtype == g.dtype


def test_masked_state_uses_masked_node_placeholders():
    params = {"w": jnp.ones(3), "b": jnp.ones(2)}
    tx = gradtx.masked(gradtx.trace(decay=0.9), {"w": True, "b": False})
    state = tx.init(params)
    assert isinstance(state, MaskedState)
    assert isinstance(state.inner_state.trace["b"], MaskedNode)
    assert state.inner_state.trace["w"].shape == (3,)


def test_masked_receives_masked_params():
    seen = {}

    def f(updates, params):
        seen["params"] = params
        return jax.tree.map(lambda g, p: g + 0.5 * p, updates, params)

    params = {"w": jnp.array([2.0, 4.0]), "b": jnp.array([8.0])}
    grads = {"w": jnp.array([1.0, 1.0]), "b": jnp.array([1.0])}
    tx = gradtx.masked(gradtx.stateless(f), {"w": True, "b": False})
    out, _ = tx.update(grads, tx.init(params), params)
    assert isinstance(seen["params"]["b"], MaskedNode)
    np.testing.assert_array_equal(out["w"], [2.0, 3.0])  # 1 + 0.5 * p
    np.testing.assert_array_equal(out["b"], [1.0])


def test_mask_compatible_extra_args():
    seen = {}

    def make():
        def init(params):
            return EmptyState()

        def update(updates, state, params=None, *, tags=None, **extra):
            seen["tags"] = tags
            return jax.tree.map(lambda g, t: g * t, updates, tags), state

        return gradtx.GradientTransformation(init, update)

    params = {"w": jnp.ones(2), "b": jnp.ones(1)}
    tags = {"w": jnp.array([3.0, 4.0]), "b": jnp.array([5.0])}
    tx = gradtx.masked(make(), {"w": True, "b": False}, mask_compatible_extra_args=True)
    out, _ = tx.update(params, tx.init(params), params, tags=tags)
    assert isinstance(seen["tags"]["b"], MaskedNode)
    np.testing.assert_array_equal(out["w"], [3.0, 4.0])
    np.testing.assert_array_equal(out["b"], [1.0])


def test_masked_with_optax_inner_and_extra_args_dropped():
    # optax.trace's update takes no extra keyword arguments: they must not be forwarded.
    params = {"w": jnp.ones(2), "b": jnp.ones(1)}
    tx = gradtx.masked(optax.trace(decay=0.5), {"w": True, "b": False})
    state = tx.init(params)
    out, state = tx.update(params, state, params, value=3.0)
    out, state = tx.update(params, state, params, value=3.0)
    np.testing.assert_allclose(out["w"], [1.5, 1.5], rtol=1e-6)
    np.testing.assert_array_equal(out["b"], [1.0])


def test_masked_errors():
    params = {"w": jnp.ones(2), "b": jnp.ones(1)}
    with pytest.raises(TypeError, match="inner"):
        gradtx.masked(object(), {"w": True, "b": False})
    with pytest.raises(TypeError, match="booleans"):
        gradtx.masked(gradtx.identity(), {"w": 1, "b": 0})
    tx = gradtx.masked(gradtx.identity(), {"w": True, "z": False})
    with pytest.raises(ValueError, match="prefix"):
        tx.init(params)
    traced = gradtx.masked(gradtx.identity(), lambda p: jax.tree.map(lambda x: jnp.all(x > 0), p))
    with pytest.raises(TypeError, match="static"):
        jax.jit(traced.init)(params)


def test_masked_repr():
    tx = gradtx.masked(gradtx.scale(2.0), {"w": True})
    assert repr(tx).startswith("masked(inner=scale(step_size=2.0), mask={'w': True}")


# ------------------------------------------------------------------------------------------------
# multi_transform
# ------------------------------------------------------------------------------------------------


def _labels(params):
    return {"dense": {"w": "adam", "b": "sgd"}, "scale": "frozen", "emb": "adam"}


class MultiTransformVsOptaxTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(("tree", False), ("callable", True))
    def test_matches_optax(self, use_fn):
        params = _params()
        labels = _labels if use_fn else _labels(params)
        tx = gradtx.multi_transform(
            {
                "adam": gradtx.adam(0.03),
                "sgd": gradtx.sgd(0.1, momentum=0.9),
                "frozen": gradtx.set_to_zero(),
            },
            labels,
        )
        ref = optax.multi_transform(
            {
                "adam": optax.adam(0.03),
                "sgd": optax.sgd(0.1, momentum=0.9),
                "frozen": optax.set_to_zero(),
            },
            labels,
        )
        update = self.variant(tx.update)
        ref_update = jax.jit(ref.update)
        p, s = params, tx.init(params)
        rp, rs = params, ref.init(params)
        for step in range(N_STEPS):
            u, s = update(_grads(step, p), s, p)
            ru, rs = ref_update(_grads(step, rp), rs, rp)
            chex.assert_trees_all_close(u, ru, rtol=1e-5, atol=1e-6)
            p, rp = _apply(p, u), _apply(rp, ru)
        chex.assert_trees_all_close(p, rp, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(p["scale"], params["scale"])  # frozen
        assert isinstance(s, MultiTransformState)
        assert set(s.inner_states) == {"adam", "sgd", "frozen"}


def test_multi_transform_unknown_label_names_it():
    params = {"w": jnp.ones(2), "b": jnp.ones(1)}
    with pytest.raises(ValueError, match=r"\['bias'\].*\['w'\]"):
        gradtx.multi_transform({"w": gradtx.identity()}, {"w": "w", "b": "bias"})
    tx = gradtx.multi_transform({"w": gradtx.identity()}, lambda p: {"w": "w", "b": "other"})
    with pytest.raises(ValueError, match="'other'"):
        tx.init(params)


def test_multi_transform_unused_label_allowed():
    params = {"w": jnp.ones(2), "b": jnp.ones(1)}
    tx = gradtx.multi_transform(
        {"a": gradtx.scale(2.0), "b": gradtx.scale(3.0), "unused": gradtx.trace(decay=0.9)},
        {"w": "a", "b": "b"},
    )
    out, state = tx.update(params, tx.init(params))
    np.testing.assert_array_equal(out["w"], [2.0, 2.0])
    np.testing.assert_array_equal(out["b"], [3.0])
    assert jax.tree.leaves(state.inner_states["unused"]) == []


def test_multi_transform_bad_arguments():
    with pytest.raises(TypeError, match="non-empty mapping"):
        gradtx.multi_transform({}, {"w": "a"})
    with pytest.raises(TypeError, match=r"transforms\['a'\]"):
        gradtx.multi_transform({"a": 3}, {"w": "a"})
