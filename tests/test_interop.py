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


# --------------------------------------------------------------------------------------------
# Extra arguments inside optax.chain, shape-changing first members, pickling
# --------------------------------------------------------------------------------------------


def test_gradtx_transformations_are_optax_extra_args_transformations():
    tx = gradtx.adam(1e-2)
    assert isinstance(tx, optax.GradientTransformationExtraArgs)
    assert isinstance(tx, optax.GradientTransformation)
    assert type(tx) is gradtx.GradientTransformation  # the real type is unchanged
    # optax does not wrap it (a wrapper would drop value=)
    assert optax.with_extra_args_support(tx) is tx
    # optax's own transformations are not mistaken for gradtx's
    assert not isinstance(optax.adam(1e-2), gradtx.GradientTransformation)


def _plateau_run(lib_chain, make, steps=40):
    x, y = _data()
    params = _params()
    tx = lib_chain(make())
    state = tx.init(params)

    @jax.jit
    def step(params, state):
        value, grads = jax.value_and_grad(_loss)(params, x, y)
        updates, state = tx.update(grads, state, params, value=value)
        return optax.apply_updates(params, updates), state, value

    values = []
    for _ in range(steps):
        params, state, value = step(params, state)
        values.append(value)
    return params, np.asarray(values)


def test_reduce_on_plateau_gets_value_inside_optax_chain():
    # before: optax.chain wrapped gradtx members with a value-dropping shim and the plateau
    # transformation failed with "pass value=loss".
    def ours():
        return (gradtx.sgd(0.5), gradtx.reduce_on_plateau(factor=0.5, patience=2, accumulation_size=1))

    def ref():
        return (optax.sgd(0.5), optax.contrib.reduce_on_plateau(factor=0.5, patience=2, accumulation_size=1))

    p_ours, v_ours = _plateau_run(lambda ts: optax.chain(*ts), ours)
    p_ref, v_ref = _plateau_run(lambda ts: optax.chain(*ts), ref)
    np.testing.assert_array_equal(v_ours, v_ref)
    chex.assert_trees_all_equal(p_ours, p_ref)


def test_newton_cg_gets_value_fn_inside_optax_chain():
    x, y = _data()
    params = _params()

    def loss_fn(p):
        return _loss(p, x, y)

    inner = gradtx.second_order.newton_cg(learning_rate=1.0, cg_iters=20, damping=1e-3)
    wrapped = optax.chain(optax.identity(), inner)
    s_w, s_i = wrapped.init(params), inner.init(params)
    g = jax.grad(loss_fn)(params)
    u_w, _ = wrapped.update(g, s_w, params, value_fn=loss_fn)
    u_i, _ = inner.update(g, s_i, params, value_fn=loss_fn)
    chex.assert_trees_all_equal(u_w, u_i)


def test_chain_checks_each_member_against_the_updates_it_receives():
    # a first member that aggregates per-example gradients changes the updates' shapes; before,
    # gradtx.chain checked the per-example tree against the whole chain's state and failed.
    params = {"w": jnp.ones(3), "b": jnp.zeros(())}
    per_example = {
        "w": jax.random.normal(jax.random.key(0), (8, 3)),
        "b": jax.random.normal(jax.random.key(1), (8,)),
    }
    agg = optax.contrib.differentially_private_aggregate(l2_norm_clip=1.0, noise_multiplier=0.0, key=0)
    ours = gradtx.chain(agg, gradtx.adam(1e-2))
    ref = optax.chain(agg, optax.adam(1e-2))
    s_ours, s_ref = ours.init(params), ref.init(params)
    step_ours, step_ref = jax.jit(ours.update), jax.jit(ref.update)
    for _ in range(3):
        u_ours, s_ours = step_ours(per_example, s_ours, params)
        u_ref, s_ref = step_ref(per_example, s_ref, params)
        chex.assert_trees_all_equal(u_ours, u_ref)
    # a member still rejects updates that do not match its own state, naming itself
    bad = gradtx.chain(gradtx.identity(), gradtx.adam(1e-2))
    with pytest.raises(ValueError, match=r"adam\.update: shape mismatch"):
        bad.update(per_example, bad.init(params), params)


def _scale_init(params):
    return gradtx.EmptyState()


def _scale_update(updates, state, params=None):
    return jax.tree.map(lambda g: 2.0 * g, updates), state


def test_transformation_pickles_as_itself():
    import pickle

    tx = gradtx.GradientTransformation(_scale_init, _scale_update)
    back = pickle.loads(pickle.dumps(tx))
    assert type(back) is gradtx.GradientTransformation
    assert back.init is _scale_init and back.update is _scale_update
