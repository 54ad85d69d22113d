"""orbax-checkpoint: save (params, opt_state) mid-training, restore, continue bit-identically."""

import chex
import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
import pytest

import gradtx


def _loss(params, x):
    return jnp.sum((jnp.tanh(x @ params["w"]) + params["b"][None, :]) ** 2)


def _make_tx():
    return gradtx.chain(
        gradtx.clip_by_global_norm(1.0),
        gradtx.adamw(gradtx.warmup_cosine_decay_schedule(0.0, 1e-2, 5, 40), weight_decay=1e-3),
    )


@pytest.mark.parametrize("make_tx", [_make_tx, lambda: gradtx.sgd(1e-2, momentum=0.9, nesterov=True)])
def test_orbax_restore_continues_bit_identically(tmp_path, make_tx):
    tx = make_tx()
    x = jax.random.normal(jax.random.key(0), (8, 4))
    params = {"w": 0.3 * jax.random.normal(jax.random.key(1), (4, 3)), "b": jnp.zeros(3)}

    @jax.jit
    def step(params, state):
        updates, state = tx.update(jax.grad(_loss)(params, x), state, params)
        return gradtx.apply_updates(params, updates), state

    p, s = params, tx.init(params)
    for _ in range(10):
        p, s = step(p, s)
    ckpt = ocp.StandardCheckpointer()
    path = tmp_path / "ckpt"
    ckpt.save(path, {"params": p, "opt_state": s})
    ckpt.wait_until_finished()

    for _ in range(10):  # uninterrupted run
        p, s = step(p, s)

    # restore into an abstract target made from a fresh init: same tree types come back
    target = jax.eval_shape(lambda: {"params": params, "opt_state": tx.init(params)})
    restored = ckpt.restore(path, target)
    rp, rs = restored["params"], restored["opt_state"]
    assert jax.tree.structure(rs) == jax.tree.structure(s)
    for _ in range(10):
        rp, rs = step(rp, rs)
    chex.assert_trees_all_equal(rp, p)
    chex.assert_trees_all_equal(rs, s)
