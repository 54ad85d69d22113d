"""Tests of gradtx.flatten: the inner transformation runs on one concatenated vector."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

import gradtx

_apply = jax.jit(optax.apply_updates)


def _params():
    return {
        "w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3),
        "b": jnp.array([0.5, -0.25]),
        "s": jnp.array(1.5),
        "k": jnp.arange(8.0).reshape(2, 2, 2) / 8.0,
    }


@jax.jit
def _grads(step, params):
    return jax.tree.map(lambda p: jnp.sin(0.4 * step + 3.0 * p) + 0.1 * p, params)



# Shared by both variants, so the reference updates compile once.
_PLAIN = gradtx.adam(0.05)
_PLAIN_UPDATE = jax.jit(_PLAIN.update)
_REF = optax.flatten(optax.adam(0.05))
_REF_UPDATE = jax.jit(_REF.update)


class FlattenAdamTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_flattened_adam_equals_adam_per_leaf_for_40_steps(self):
        flat, plain, ref = gradtx.flatten(gradtx.adam(0.05)), _PLAIN, _REF
        update, plain_update, ref_update = self.variant(flat.update), _PLAIN_UPDATE, _REF_UPDATE
        p = q = r = _params()
        s, ps, rs = flat.init(p), plain.init(q), ref.init(r)
        n = sum(x.size for x in jax.tree.leaves(p))
        assert s[0].mu.shape == (n,) and s[0].nu.shape == (n,)  # state on the flat vector
        for step in range(40):
            u, s = update(_grads(step, p), s, p)
            pu, ps = plain_update(_grads(step, q), ps, q)
            ru, rs = ref_update(_grads(step, r), rs, r)
            chex.assert_trees_all_close(u, pu, rtol=1e-5, atol=1e-6)
            chex.assert_trees_all_close(u, ru, rtol=1e-5, atol=1e-6)
            chex.assert_trees_all_equal_shapes(u, p)
            p, q, r = _apply(p, u), _apply(q, pu), _apply(r, ru)
        chex.assert_trees_all_close(p, q, rtol=1e-5, atol=1e-6)
        # The flat moments are the per-leaf moments concatenated in leaf order.
        mu_leaves = jnp.concatenate([jnp.ravel(x) for x in jax.tree.leaves(ps[0].mu)])
        np.testing.assert_allclose(s[0].mu, mu_leaves, rtol=1e-5, atol=1e-7)


def test_params_are_flattened_too():
    tx = gradtx.flatten(gradtx.chain(gradtx.add_decayed_weights(0.5), gradtx.scale(-1.0)))
    params = _params()
    grads = jax.tree.map(jnp.ones_like, params)
    u, _ = tx.update(grads, tx.init(params), params)
    chex.assert_trees_all_close(u, jax.tree.map(lambda g, p: -(g + 0.5 * p), grads, params), rtol=1e-6, atol=0)


def test_mixed_dtypes_restored_per_leaf():
    params = {"h": jnp.ones(3, jnp.bfloat16), "f": jnp.ones(2, jnp.float32)}
    tx = gradtx.flatten(gradtx.scale(0.5))
    u, _ = tx.update(params, tx.init(params))
    assert u["h"].dtype == jnp.bfloat16 and u["f"].dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(u["h"], np.float32), 0.5)


def test_extra_args_forwarded_and_repr():
    tx = gradtx.flatten(gradtx.reduce_on_plateau(factor=0.5, patience=1))
    params = _params()
    state = tx.init(params)
    for loss in [1.0, 1.0]:
        u, state = tx.update(jax.tree.map(jnp.ones_like, params), state, value=loss)
    chex.assert_trees_all_close(u, jax.tree.map(lambda p: jnp.full_like(p, 0.5), params), rtol=0, atol=0)
    assert repr(gradtx.flatten(gradtx.identity())) == "flatten(inner=identity())"


def test_empty_tree():
    tx = gradtx.flatten(gradtx.scale_by_adam())
    state = tx.init({})
    u, state = tx.update({}, state)
    assert u == {}
