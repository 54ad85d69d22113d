"""orbax-checkpoint: save (params, opt_state) mid-training, restore, continue bit-identically."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
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


def _train_with_checkpoint(tx, path, steps):
    """Train `steps` steps, save `{params, opt_state}` to `path`, train `steps` more (uninterrupted).

    Returns the initial params, the jitted step, the checkpointer and the final params and state.
    """
    x = jax.random.normal(jax.random.key(0), (8, 4))
    params = {"w": 0.3 * jax.random.normal(jax.random.key(1), (4, 3)), "b": jnp.zeros(3)}

    @jax.jit
    def step(params, state):
        updates, state = tx.update(jax.grad(_loss)(params, x), state, params)
        return gradtx.apply_updates(params, updates), state

    p, s = params, tx.init(params)
    for _ in range(steps):
        p, s = step(p, s)
    ckpt = ocp.StandardCheckpointer()
    ckpt.save(path, {"params": p, "opt_state": s})
    ckpt.wait_until_finished()
    for _ in range(steps):
        p, s = step(p, s)
    return params, step, ckpt, p, s


@pytest.mark.parametrize("make_tx", [_make_tx, lambda: gradtx.sgd(1e-2, momentum=0.9, nesterov=True)])
def test_orbax_restore_continues_bit_identically(tmp_path, make_tx):
    tx = make_tx()
    path = tmp_path / "ckpt"
    params, step, ckpt, p, s = _train_with_checkpoint(tx, path, 10)

    # restore into an abstract target made from a fresh init: same tree types come back
    target = jax.eval_shape(lambda: {"params": params, "opt_state": tx.init(params)})
    restored = ckpt.restore(path, target)
    rp, rs = restored["params"], restored["opt_state"]
    assert jax.tree.structure(rs) == jax.tree.structure(s)
    for _ in range(10):
        rp, rs = step(rp, rs)
    chex.assert_trees_all_equal(rp, p)
    chex.assert_trees_all_equal(rs, s)


def test_restore_without_target_says_types_were_lost_and_retype_state_resumes(tmp_path):
    tx = gradtx.chain(gradtx.clip_by_global_norm(1.0), gradtx.inject_hyperparams(gradtx.adamw)(learning_rate=1e-2))
    params, step, ckpt, p, s = _train_with_checkpoint(tx, tmp_path / "ckpt", 5)

    untyped = ckpt.restore(tmp_path / "ckpt")  # no target: lists, dicts and None come back
    with pytest.raises(TypeError, match=r"lost its types.*target=tx\.init\(params\).*retype_state"):
        tx.update(untyped["params"], untyped["opt_state"], untyped["params"])
    rs = gradtx.retype_state(untyped["opt_state"], tx.init(params))
    assert jax.tree.structure(rs) == jax.tree.structure(s)
    rp = untyped["params"]
    for _ in range(5):
        rp, rs = step(rp, rs)
    chex.assert_trees_all_equal(rp, p)
    chex.assert_trees_all_equal(rs, s)


def test_retype_state_names_the_path_of_a_missing_entry_or_a_wrong_shape():
    tx = gradtx.adam(1e-3)
    template = tx.init({"w": jnp.zeros(3)})
    with pytest.raises(ValueError, match=r"no entry 'nu' at \[0\]"):
        gradtx.retype_state([{"count": 0, "mu": {"w": jnp.zeros(3)}}, None], template)
    with pytest.raises(ValueError, match=r"shape mismatch at \[0\]\.mu\['w'\]"):
        gradtx.retype_state([{"count": 0, "mu": {"w": jnp.zeros(4)}, "nu": {"w": jnp.zeros(3)}}, None], template)
    # tuples saved as dicts keyed "0", "1", ... are read by position
    typed = gradtx.retype_state({"0": {"count": 2, "mu": {"w": [1.0, 2.0, 3.0]}, "nu": {"w": [0.0] * 3}}}, template)
    assert typed[0].count.dtype == jnp.int32 and int(typed[0].count) == 2
    np.testing.assert_array_equal(typed[0].mu["w"], [1.0, 2.0, 3.0])
