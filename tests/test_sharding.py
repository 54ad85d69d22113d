"""State leaves follow their params' sharding through init and jitted steps (8 simulated CPUs)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import gradtx

pytestmark = pytest.mark.skipif(len(jax.devices()) < 8, reason="needs 8 (simulated) devices")

SPECS = {"w": P("x", None), "v": P(None, "x"), "b": P()}
SHAPES = {"w": (16, 4), "v": (3, 8), "b": (5,)}


def _mesh():
    return Mesh(np.array(jax.devices()[:8]), ("x",))


def _params(mesh):
    keys = dict(zip(SHAPES, jax.random.split(jax.random.key(0), 3)))
    return {
        k: jax.device_put(jax.random.normal(keys[k], SHAPES[k]), NamedSharding(mesh, SPECS[k]))
        for k in SHAPES
    }


OPTIMIZERS = {
    "sgd": lambda: gradtx.sgd(1e-2),
    "nesterov": lambda: gradtx.sgd(1e-2, momentum=0.9, nesterov=True),
    "adagrad": lambda: gradtx.adagrad(1e-2),
    "rmsprop_centered": lambda: gradtx.rmsprop(1e-2, centered=True, momentum=0.9),
    "adam": lambda: gradtx.adam(1e-3),
    "adamw_schedule": lambda: gradtx.adamw(gradtx.cosine_decay_schedule(1e-3, 100)),
    "amsgrad": lambda: gradtx.amsgrad(1e-3),
    "nadamw": lambda: gradtx.nadamw(1e-3),
    "adamax": lambda: gradtx.adamax(1e-3),
    "lion": lambda: gradtx.lion(1e-4),
    "lamb": lambda: gradtx.lamb(1e-3),
    "clip_chain": lambda: gradtx.chain(gradtx.clip_by_global_norm(1.0), gradtx.adamw(1e-3)),
    "masked": lambda: gradtx.masked(gradtx.adam(1e-3), {"w": True, "v": False, "b": True}),
    "multi_transform": lambda: gradtx.multi_transform(
        {"a": gradtx.adam(1e-3), "s": gradtx.sgd(1e-2, momentum=0.9)}, {"w": "a", "v": "s", "b": "a"}
    ),
    "apply_if_finite": lambda: gradtx.apply_if_finite(gradtx.adam(1e-3), 3),
    "multi_steps": lambda: gradtx.MultiSteps(gradtx.adam(1e-3), 2).gradient_transformation(),
    "inject_hyperparams": lambda: gradtx.inject_hyperparams(gradtx.adam)(learning_rate=1e-3),
    "reduce_on_plateau": lambda: gradtx.chain(gradtx.adam(1e-3), gradtx.reduce_on_plateau()),
}


def _check(state, params, mesh):
    """Every param-shaped state leaf has its param's sharding; every other leaf spans the mesh."""
    by_shape = {tuple(p.shape): p.sharding for p in params.values()}
    for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
        where = jax.tree_util.keystr(path)
        expected = by_shape.get(tuple(leaf.shape))
        if expected is not None:
            assert leaf.sharding.is_equivalent_to(expected, leaf.ndim), (where, leaf.sharding, expected)
        else:
            assert set(leaf.sharding.device_set) == set(mesh.devices.flat), (where, leaf.sharding)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_init_and_steps_keep_param_sharding(name):
    mesh = _mesh()
    params = _params(mesh)
    tx = OPTIMIZERS[name]()
    state = jax.jit(tx.init)(params)
    _check(state, params, mesh)

    @jax.jit
    def step(params, state):
        grads = jax.grad(lambda p: sum(jnp.sum(jnp.sin(x)) for x in jax.tree.leaves(p)))(params)
        updates, state = tx.update(grads, state, params, value=jnp.float32(1.0))
        return gradtx.apply_updates(params, updates), state

    for _ in range(3):
        params, state = step(params, state)
    for k in SHAPES:
        assert params[k].sharding.is_equivalent_to(NamedSharding(mesh, SPECS[k]), params[k].ndim)
    _check(state, params, mesh)
