"""gradtx inside optax, optax inside gradtx, and both Flax training APIs."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen, nnx
from flax.training import train_state

import gradtx


def _data():
    k1, k2 = jax.random.split(jax.random.key(0))
    x = jax.random.normal(k1, (32, 4))
    y = jnp.sin(x @ jnp.array([1.0, -0.5, 0.25, 2.0]))[:, None] + 0.1 * jax.random.normal(k2, (32, 1))
    return x, y


def _params():
    k1, k2 = jax.random.split(jax.random.key(1))
    return {
        "dense": {"kernel": 0.5 * jax.random.normal(k1, (4, 8)), "bias": jnp.zeros(8)},
        "out": {"kernel": 0.5 * jax.random.normal(k2, (8, 1)), "bias": jnp.zeros(1)},
    }


def _loss(params, x, y):
    h = jnp.tanh(x @ params["dense"]["kernel"] + params["dense"]["bias"][None, :])
    pred = h @ params["out"]["kernel"] + params["out"]["bias"][None, :]
    return jnp.mean((pred - y) ** 2)


def _run(tx, steps=25):
    x, y = _data()
    params = _params()
    state = tx.init(params)

    @jax.jit
    def step(params, state):
        grads = jax.grad(_loss)(params, x, y)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    for _ in range(steps):
        params, state = step(params, state)
    return params


def test_gradtx_inside_optax_chain():
    ours = _run(optax.chain(gradtx.clip_by_global_norm(1.0), gradtx.adamw(1e-2, weight_decay=1e-3)))
    ref = _run(optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-2, weight_decay=1e-3)))
    chex.assert_trees_all_close(ours, ref, rtol=1e-5, atol=1e-6)


def test_optax_inside_gradtx_chain():
    ours = _run(gradtx.chain(optax.clip_by_global_norm(1.0), gradtx.scale_by_adam(), gradtx.scale(-1e-2)))
    ref = _run(optax.chain(optax.clip_by_global_norm(1.0), optax.scale_by_adam(), optax.scale(-1e-2)))
    chex.assert_trees_all_close(ours, ref, rtol=1e-5, atol=1e-6)


def test_optax_extra_args_transform_inside_gradtx_chain_gets_value():
    # optax.polyak_sgd needs the `value` extra argument; gradtx.chain must forward it.
    x, y = _data()
    params = _params()
    tx = gradtx.chain(gradtx.clip_by_global_norm(10.0), optax.polyak_sgd(max_learning_rate=0.5))
    ref = optax.chain(optax.clip_by_global_norm(10.0), optax.polyak_sgd(max_learning_rate=0.5))
    s, r = tx.init(params), ref.init(params)
    p_ours, p_ref = params, params
    for _ in range(5):
        v, g = jax.value_and_grad(_loss)(p_ours, x, y)
        u, s = tx.update(g, s, p_ours, value=v)
        p_ours = gradtx.apply_updates(p_ours, u)
        v, g = jax.value_and_grad(_loss)(p_ref, x, y)
        u, r = ref.update(g, r, p_ref, value=v)
        p_ref = optax.apply_updates(p_ref, u)
    chex.assert_trees_all_close(p_ours, p_ref, rtol=1e-5, atol=1e-6)


class _LinenMLP(linen.Module):
    @linen.compact
    def __call__(self, x):
        x = jnp.tanh(linen.Dense(8)(x))
        return linen.Dense(1)(x)


@pytest.mark.parametrize(
    "make",
    [
        lambda m: m.adam(3e-3),
        lambda m: m.sgd(1e-2, momentum=0.9, nesterov=True),
        lambda m: m.chain(m.clip_by_global_norm(1.0), m.adamw(m.warmup_cosine_decay_schedule(0.0, 1e-2, 5, 30))),
    ],
    ids=["adam", "nesterov", "clip+adamw+schedule"],
)
def test_linen_train_state_matches_optax(make):
    x, y = _data()
    model = _LinenMLP()
    params = model.init(jax.random.key(2), x)["params"]

    def train(tx):
        state = train_state.TrainState.create(apply_fn=model.apply, params=params, tx=tx)

        @jax.jit
        def step(state):
            def loss(p):
                return jnp.mean((state.apply_fn({"params": p}, x) - y) ** 2)

            return state.apply_gradients(grads=jax.grad(loss)(state.params))

        for _ in range(30):
            state = step(state)
        return state.params

    ours, ref = train(make(gradtx)), train(make(optax))
    chex.assert_trees_all_close(ours, ref, rtol=1e-5, atol=1e-6)


class _NnxMLP(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(4, 8, rngs=rngs)
        self.out = nnx.Linear(8, 1, rngs=rngs)

    def __call__(self, x):
        return self.out(jnp.tanh(self.hidden(x)))


@pytest.mark.parametrize("name", ["adam", "adamw", "rmsprop", "sgd"])
def test_nnx_optimizer_matches_optax(name):
    x, y = _data()

    def train(lib):
        model = _NnxMLP(nnx.Rngs(0))
        opt = nnx.Optimizer(model, getattr(lib, name)(1e-2), wrt=nnx.Param)

        @nnx.jit
        def step(model, opt):
            def loss(m):
                return jnp.mean((m(x) - y) ** 2)

            grads = nnx.grad(loss)(model)
            opt.update(model, grads)

        for _ in range(30):
            step(model, opt)
        return nnx.state(model, nnx.Param)

    ours, ref = train(gradtx), train(optax)
    chex.assert_trees_all_close(
        jax.tree.map(np.asarray, ours), jax.tree.map(np.asarray, ref), rtol=1e-5, atol=1e-6
    )
