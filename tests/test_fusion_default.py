"""The optimizer aliases keep optax's per-leaf state layout on any device count; fusion is opt-in.

Until the aliases stopped fusing by default, `gradtx.adam(...)` (and the other element-wise
aliases) returned a `FusedState` of flat buffers on one device and a per-leaf state on several.
The contract now: on 1 device and on several, every alias's state has the NamedTuple types
(field names), tree paths, leaf shapes, dtypes and shardings of optax's state for the same params,
never a `FusedState`, and the numbers are optax's (float32 params; for 16-bit params gradtx keeps
second-moment statistics in float32, its one documented difference of layout); `gradtx.fusion.maybe_fuse` / `fused` opt in.

The same checks (`check_contract`) run in a subprocess that sees one CPU device, as on a user's
machine (tests/_env.py), and in this process, where conftest simulates eight.
"""

import os
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _env import SIMULATED_DEVICES_FLAG, user_env
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import gradtx
from gradtx.fusion import FusedState, disabled, fuse_state, fused, maybe_fuse, unfuse_state

ALIASES = ("adam", "adamw", "sgd", "rmsprop", "adagrad", "lion", "nadam", "nadamw", "amsgrad", "adamax")
WITH_MU = ("adam", "adamw", "lion", "nadam", "nadamw", "amsgrad", "adamax")  # optax's states with a `mu`
HERE = os.path.dirname(os.path.abspath(__file__))


def _params(low_precision: bool = False):
    """12 layers of small leaves (which the old default fused), a large leaf (and a bfloat16 one).

    Leaves whose first axis the device count divides are sharded over a 1-D mesh of all devices.
    """
    rng = np.random.default_rng(0)
    params = {f"layer{i:02d}": {"w": rng.normal(size=(8, 5)), "b": rng.normal(size=(8,))} for i in range(12)}
    params["big"] = rng.normal(size=(64, 80))  # 5,120 elements: above the default max_leaf_size
    params = jax.tree.map(lambda x: jnp.asarray(0.1 * x, jnp.float32), params)
    if low_precision:
        params["half"] = jnp.asarray(rng.normal(size=(3,)), jnp.bfloat16)  # 3: never sharded
    mesh = Mesh(np.array(jax.devices()), ("x",))

    def place(x):
        spec = P("x") if x.ndim and x.shape[0] % jax.device_count() == 0 else P()
        return jax.device_put(x, NamedSharding(mesh, spec))

    return jax.tree.map(place, params)


def _layout(state):
    """Every leaf of `state` as (tree path, shape, dtype): what must equal optax's."""
    return [
        (jax.tree_util.keystr(path), tuple(leaf.shape), jnp.dtype(leaf.dtype))
        for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]
    ]


def _node_fields(state):
    """The NamedTuple nodes of `state` (empty ones included, which have no leaves and no path)."""
    out = []

    def visit(node):
        if isinstance(node, tuple) and hasattr(node, "_fields"):
            out.append(tuple(node._fields))
            for child in node:
                visit(child)
        elif isinstance(node, (tuple, list)):
            for child in node:
                visit(child)
        elif isinstance(node, dict):
            for key in sorted(node):
                visit(node[key])

    visit(state)
    return out


def _has_fused(state):
    nodes = jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, FusedState))
    return any(isinstance(x, FusedState) for x in nodes)


def _assert_state_like_optax(name, state, ref_state):
    assert not _has_fused(state), (name, type(state))
    assert _node_fields(state) == _node_fields(ref_state), name
    assert _layout(state) == _layout(ref_state), name
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(ref_state), strict=True):
        assert a.sharding.is_equivalent_to(b.sharding, a.ndim), (name, a.sharding, b.sharding)


def _check_aliases(params):
    grads = jax.tree.map(lambda p: jnp.sin(10.0 * p + 1.0).astype(p.dtype), params)
    for name in ALIASES:
        tx, ref = getattr(gradtx, name)(1e-2), getattr(optax, name)(1e-2)
        state, ref_state = tx.init(params), ref.init(params)
        _assert_state_like_optax(name, state, ref_state)
        if name in WITH_MU:
            mu, ref_mu = optax.tree.get(state, "mu"), optax.tree.get(ref_state, "mu")
            assert jax.tree.structure(mu) == jax.tree.structure(params), name
            assert _layout(mu) == _layout(ref_mu), name
        p, r = params, params
        # one jitted function runs both updates (one compile per alias instead of two; the two
        # sides share no input but the gradients, so each is computed as it would be alone)
        step = jax.jit(lambda g, s, p, rs, r, tx=tx, ref=ref: (tx.update(g, s, p), ref.update(g, rs, r)))
        for _ in range(3):
            (u, state), (ru, ref_state) = step(grads, state, p, ref_state, r)
            p, r = gradtx.apply_updates(p, u), optax.apply_updates(r, ru)
        _assert_state_like_optax(name, state, ref_state)
        chex.assert_trees_all_equal(p, r)  # optax's numbers, bit for bit
        chex.assert_trees_all_equal(jax.tree.leaves(state), jax.tree.leaves(ref_state))  # own NamedTuple types


# gradtx keeps these statistics in float32 for 16-bit params, where optax keeps the param's dtype
# (see gradtx/transforms/adam_family.py, "Low precision"): the one deliberate difference of layout
FLOAT32_STATS = ("nu", "nu_max", "sum_of_squares")


def _check_low_precision(params):
    for name in ALIASES:
        state, ref_state = getattr(gradtx, name)(1e-2).init(params), getattr(optax, name)(1e-2).init(params)
        assert not _has_fused(state) and _node_fields(state) == _node_fields(ref_state), name
        for (path, shape, dtype), (ref_path, ref_shape, ref_dtype) in zip(
            _layout(state), _layout(ref_state), strict=True
        ):
            assert (path, shape) == (ref_path, ref_shape), name
            if ref_dtype == jnp.bfloat16 and any(f".{stat}[" in path for stat in FLOAT32_STATS):
                assert dtype == jnp.float32, (name, path, dtype)
            else:
                assert dtype == ref_dtype, (name, path, dtype, ref_dtype)


def _check_nnx_optimizer():
    from flax import nnx

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.big = nnx.Linear(100, 100, rngs=rngs)  # 10,000 elements
            self.small = nnx.List([nnx.Linear(4, 4, rngs=rngs) for _ in range(6)])

        def __call__(self, x, z):
            return self.big(x).sum() + sum(layer(z).sum() for layer in self.small)

    def loss(model):
        return model(jnp.linspace(-1.0, 1.0, 100)[None], jnp.ones((1, 4)))

    models = [Net(nnx.Rngs(0)), Net(nnx.Rngs(0))]
    opts = [nnx.Optimizer(models[0], gradtx.adam(1e-3), wrt=nnx.Param),
            nnx.Optimizer(models[1], optax.adam(1e-3), wrt=nnx.Param)]
    @nnx.jit  # bit for bit under jit (the contract); both optimizers in one compile
    def step(models, opts):
        for model, opt in zip(models, opts, strict=True):
            opt.update(model, nnx.grad(loss)(model))

    for _ in range(2):
        step(models, opts)
    state, ref_state = nnx.state(opts[0], nnx.OptState), nnx.state(opts[1], nnx.OptState)
    assert not _has_fused(state)
    assert _layout(state) == _layout(ref_state)
    assert sum("mu" in path for path, _, _ in _layout(state)) == len(jax.tree.leaves(nnx.state(models[0], nnx.Param)))
    chex.assert_trees_all_equal(nnx.state(models[0], nnx.Param), nnx.state(models[1], nnx.Param))
    chex.assert_trees_all_equal(jax.tree.leaves(state), jax.tree.leaves(ref_state))


def _check_opt_in(params):
    adam = gradtx.adam(1e-2)
    opted = maybe_fuse(adam)
    state = opted.init(params)
    assert isinstance(state, FusedState)  # on any device count: single_device defaults to False
    assert isinstance(fused(adam).init(params), FusedState)
    one_device = jax.device_count() == 1
    # leaves fuse per sharding group: on several devices the float32 leaves, all sharded along
    # their first axis, form the group "fused:float32@x"; the replicated bfloat16 leaf its own
    groups = ["fused:bfloat16", "fused:float32" if one_device else "fused:float32@x"]
    assert sorted(k for k in state.inner[0].mu if k.startswith("fused:")) == groups
    # converted back, the opted-in state has the alias's per-leaf layout
    assert _layout(unfuse_state(state, params)) == _layout(adam.init(params))
    assert isinstance(maybe_fuse(adam, single_device=True).init(params), FusedState) == one_device
    with disabled():
        assert maybe_fuse(adam) is adam


def _mesh_params():
    """6 layers on a 4 x 2 mesh ("x", "y"): leaves sharded along axis 0 over "x" and over ("x", "y"),
    replicated leaves, a leaf sharded along its second axis only (not fusable) and a bfloat16 one."""
    mesh = Mesh(np.array(jax.devices()).reshape(4, 2), ("x", "y"))
    rng = np.random.default_rng(5)

    def put(shape, spec, dtype=jnp.float32):
        return jax.device_put(jnp.asarray(0.5 * rng.normal(size=shape), dtype), NamedSharding(mesh, spec))

    params = {
        f"l{i}": {"w": put((8, 3), P("x")), "b": put((4,), P("x")), "r": put((3,), P()),
                  "c": put((2, 4), P(None, "y")), "xy": put((8, 2), P(("x", "y")))}
        for i in range(6)
    }
    params["half"] = put((5,), P(), jnp.bfloat16)
    return mesh, params


_COLLECTIVES = ("all-gather", "all-to-all", "collective-permute", "all-reduce", "reduce-scatter")


def _check_sharded_fusion():
    """On a mesh, maybe_fuse fuses per sharding group: per-leaf numbers, state sharded like the params."""
    import re

    mesh, params = _mesh_params()
    grads = [jax.tree.map(lambda p, t=t: jnp.sin(3.0 * p + t).astype(p.dtype), params) for t in range(3)]
    makers = {
        "adam": lambda: gradtx.adam(1e-2),
        "clip_adamw": lambda: gradtx.chain(gradtx.clip_by_global_norm(1.0), gradtx.adamw(1e-2, weight_decay=0.1)),
    }
    for name, make in makers.items():
        tx, ref = maybe_fuse(make()), make()
        compiled = {}
        for label, t in (("fused", tx), ("per_leaf", ref)):
            def step(p, s, g, t=t):
                u, s = t.update(g, s, p)
                return gradtx.apply_updates(p, u), s

            # compiled once, ahead of time: the same executable trains and shows its collectives below
            compiled[label] = jax.jit(step, donate_argnums=(0, 1)).lower(params, t.init(params), params).compile()
        state, ref_state = tx.init(params), ref.init(params)
        assert isinstance(state, FusedState), name
        mu = optax.tree.get(state, "mu")
        small_f32 = [k for k in mu if k.startswith("fused:float32")]
        assert sorted(small_f32) == ["fused:float32", "fused:float32@x", "fused:float32@x+y"], (name, list(mu))
        assert "fused:bfloat16" in mu and sum(k.startswith("leaf:") for k in mu) == 6  # the "c" leaves stay whole
        # a sharded group's buffer is (shards, per-shard elements), its rows on the devices of its axes
        assert mu["fused:float32@x"].shape == (4, 6 * (8 * 3 + 4) // 4)
        assert mu["fused:float32@x"].sharding.is_equivalent_to(NamedSharding(mesh, P("x", None)), 2)
        assert mu["fused:float32@x+y"].shape == (8, 6 * 8 * 2 // 8)
        assert mu["fused:float32@x+y"].sharding.is_equivalent_to(NamedSharding(mesh, P(("x", "y"), None)), 2)
        assert mu["fused:float32"].sharding.is_fully_replicated
        p, r = jax.tree.map(jnp.copy, params), jax.tree.map(jnp.copy, params)
        for g in grads:
            p, state = compiled["fused"](p, state, g)
            r, ref_state = compiled["per_leaf"](r, ref_state, g)
        chex.assert_trees_all_close(p, r, rtol=1e-6, atol=1e-6)  # test_fusion.py's tolerance
        for a, b in zip(jax.tree.leaves(p), jax.tree.leaves(params), strict=True):
            assert a.sharding.is_equivalent_to(b.sharding, a.ndim), (name, a.shape, a.sharding)
        # after training the buffers are still sharded, and split back they are the per-leaf state,
        # leaf by leaf with the per-leaf state's shardings
        assert optax.tree.get(state, "mu")["fused:float32@x"].sharding.is_equivalent_to(
            NamedSharding(mesh, P("x", None)), 2)
        unfused = unfuse_state(state, params)
        chex.assert_trees_all_close(unfused, ref_state, rtol=1e-6, atol=1e-6)
        for a, b in zip(jax.tree.leaves(unfused), jax.tree.leaves(ref_state), strict=True):
            assert a.sharding.is_equivalent_to(b.sharding, a.ndim), (name, a.shape, a.sharding, b.sharding)
        # and fused again (e.g. from a per-leaf checkpoint) it is the fused state, sharded alike
        refused = fuse_state(unfused, params)
        chex.assert_trees_all_equal_structs(refused, state)
        chex.assert_trees_all_equal(refused, state)
        for a, b in zip(jax.tree.leaves(refused), jax.tree.leaves(state), strict=True):
            assert a.sharding.is_equivalent_to(b.sharding, a.ndim), (name, a.shape, a.sharding, b.sharding)
        # gathering into and cutting out of the sharded buffers moves no data between devices:
        # the fused step has the per-leaf step's collectives (clip_by_global_norm's all-reduces)
        texts = {k: c.as_text() for k, c in compiled.items()}
        counts = {k: [len(re.findall(rf"\b{op}(-start)?\(", t)) for op in _COLLECTIVES] for k, t in texts.items()}
        assert counts["fused"] == counts["per_leaf"], (name, counts)
    # a fused state whose transformation never saw the sharded params cannot guess the groups
    # inside jit: a clear error instead of a silently different layout
    fresh = maybe_fuse(gradtx.adam(1e-2))
    with pytest.raises(ValueError, match="sharding group"):
        jax.jit(fresh.update)(grads[0], maybe_fuse(gradtx.adam(1e-2)).init(params), params)


def check_contract(devices: int) -> None:
    """Every check of this file, for a process that sees `devices` devices."""
    assert jax.device_count() == devices, jax.devices()
    _check_aliases(_params())
    _check_low_precision(_params(low_precision=True))
    _check_nnx_optimizer()
    _check_opt_in(_params(low_precision=True))
    if devices == 8:
        _check_sharded_fusion()


def _contract_in_a_fresh_process(devices: int) -> None:
    # a fresh process: the device count is the user's, and no earlier test's JAX state is shared
    script = f"import sys; sys.path.insert(0, {HERE!r}); import test_fusion_default as t; t.check_contract({devices})"
    flags = f"{SIMULATED_DEVICES_FLAG}={devices}" if devices > 1 else ""
    out = subprocess.run(
        [sys.executable, "-c", script + "; print('contract-ok')"],
        env=user_env(JAX_PLATFORMS="cpu", XLA_FLAGS=flags),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "contract-ok" in out.stdout


@pytest.mark.slow
def test_aliases_keep_optax_layout_on_one_device_and_fusion_is_opt_in():
    _contract_in_a_fresh_process(1)


@pytest.mark.slow
def test_aliases_keep_optax_layout_on_several_devices_and_fusion_is_opt_in():
    _contract_in_a_fresh_process(8)
