"""ZeRO-1: `gradtx.shard_state` / `gradtx.state_shardings` on 8 simulated CPU devices.

The placement rule leaf by leaf, the per-device bytes of Adam's state for an 8 M-parameter model,
trajectories against the unsharded optimizer (bit for bit for element-wise optimizers, 1e-6 for
global reductions), orbax checkpoints of the sharded state restored on one device, and errors.
"""

import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.sharding import Mesh, NamedSharding, SingleDeviceSharding
from jax.sharding import PartitionSpec as P

import gradtx
import gradtx.sharding

pytestmark = pytest.mark.skipif(len(jax.devices()) < 8, reason="needs 8 (simulated) devices")

# leaf shapes chosen for the rule: split dim 0, split dim 1 (dim 0 not divisible), split dim 1
# of 3-D (dim 0 too small), 1-D, a tie (first of two 8s), nothing divisible
SHAPES = {"a": (64, 24), "b": (5, 16), "c": (2, 16, 8), "d": (16,), "e": (8, 8, 4), "f": (7, 3)}
EXPECTED = {
    "a": P("data", None), "b": P(None, "data"), "c": P(None, "data", None), "d": P("data"),
    "e": P("data", None, None), "f": P(),
}
STEPS = 4


@pytest.fixture(scope="module")
def mesh():
    return Mesh(np.array(jax.devices()[:8]), ("data",))


TRAJECTORY_LEAVES = ("a", "b", "e", "f")  # split on dim 0, on dim 1, a tie, not split


def _params(names=tuple(SHAPES)):
    rng = np.random.default_rng(0)
    return {name: rng.standard_normal(SHAPES[name]).astype(np.float32) for name in names}


def _grads(names=TRAJECTORY_LEAVES):
    rng = np.random.default_rng(1)
    return [{n: (1.0 + i) * rng.standard_normal(SHAPES[n]).astype(np.float32) for n in names} for i in range(STEPS)]


def _placed(leaf, mesh, spec):
    return leaf.sharding.is_equivalent_to(NamedSharding(mesh, spec), leaf.ndim)


def _spec_tree(shardings):
    return jax.tree.map(lambda s: s.spec, shardings, is_leaf=lambda x: isinstance(x, NamedSharding))


# --------------------------------------------------------------------------------------------
# the placement rule
# --------------------------------------------------------------------------------------------


def test_rule_largest_divisible_dimension_first_on_ties_scalars_and_counts_replicated(mesh):
    params = _params()
    specs = _spec_tree(gradtx.state_shardings(gradtx.adam(1e-3), params, mesh, "data"))
    adam_state = specs[0]
    assert adam_state.count == P()  # the int32 step count
    assert adam_state.mu == EXPECTED and adam_state.nu == EXPECTED
    # abstract params (ShapeDtypeStruct) give the same answer
    abstract = jax.eval_shape(lambda: params)
    assert _spec_tree(gradtx.state_shardings(gradtx.adam(1e-3), abstract, mesh)) == specs
    # the tie rule on a square leaf and a leaf smaller than the axis
    square = _spec_tree(gradtx.state_shardings(gradtx.sgd(0.1, momentum=0.9), {"s": jnp.ones((16, 16)),
                                                                             "t": jnp.ones(4)}, mesh))
    assert square[0].trace == {"s": P("data", None), "t": P()}


@settings(max_examples=30, deadline=None, derandomize=True, database=None)
@given(shape=st.lists(st.sampled_from([1, 3, 4, 8, 12, 16, 24, 40]), min_size=0, max_size=4))
def test_rule_invariants_on_random_shapes(shape, mesh):
    leaf = jax.ShapeDtypeStruct(tuple(shape), jnp.float32)
    spec = gradtx.state_shardings(gradtx.sgd(0.1, momentum=0.9), {"w": leaf}, mesh)[0].trace["w"].spec
    entries = tuple(spec) + (None,) * (len(shape) - len(spec))
    divisible = [d for d, size in enumerate(shape) if size % 8 == 0]
    if not divisible:  # nothing to split on: replicated
        assert all(e is None for e in entries)
        return
    (split,) = [d for d, e in enumerate(entries) if e is not None]  # exactly one dimension, along "data"
    assert entries[split] == "data" and split in divisible
    assert shape[split] == max(shape[d] for d in divisible)  # the largest divisible one
    assert all(shape[d] < shape[split] for d in divisible if d < split)  # the first among equals


def test_rule_masked_none_inject_hyperparams_and_key_leaves(mesh):
    params = {"a": jnp.ones((64, 24)), "b": jnp.ones((5, 16)), "frozen": None}
    tx = gradtx.masked(gradtx.inject_hyperparams(gradtx.adam)(learning_rate=1e-3), {"a": True, "b": False,
                                                                                    "frozen": True})
    state = jax.eval_shape(tx.init, params)
    specs = _spec_tree(gradtx.state_shardings(tx, params, mesh))
    assert jax.tree.structure(specs, is_leaf=lambda x: isinstance(x, P)) == jax.tree.structure(state)
    inner = specs.inner_state
    assert all(v == P() for v in inner.hyperparams.values())  # scalar hyper-parameters
    assert inner.inner_state[0].mu["a"] == P("data", None)
    assert isinstance(inner.inner_state[0].mu["b"], gradtx.MaskedNode) and inner.inner_state[0].mu["frozen"] is None

    # a PRNG key array of 8 keys is never split, a same-shaped uint32 array is
    def init(p):
        del p
        return (jax.random.split(jax.random.key(0), 8), jnp.zeros(8, jnp.uint32))

    keyed = gradtx.GradientTransformation(init, lambda u, s, p=None: (u, s))
    assert _spec_tree(gradtx.state_shardings(keyed, params, mesh)) == (P(), P("data"))


def test_rule_starts_from_the_params_sharding_on_a_two_axis_mesh():
    mesh2 = Mesh(np.array(jax.devices()[:8]).reshape(4, 2), ("data", "model"))
    params = {
        "w": jax.device_put(jnp.ones((16, 8)), NamedSharding(mesh2, P(None, "model"))),
        "fsdp": jax.device_put(jnp.ones((8, 6)), NamedSharding(mesh2, P("data", None))),
        "odd": jax.device_put(jnp.ones((6, 4)), NamedSharding(mesh2, P(None, "model"))),
        "rep": jnp.ones(12),  # one device: counts as replicated
    }
    tx = gradtx.adam(1e-3)
    specs = _spec_tree(gradtx.state_shardings(tx, params, mesh2, "data"))
    assert specs[0].mu == {
        "w": P("data", "model"),  # the param's model split kept, data on the free dim 0
        "fsdp": P("data", None),  # already split along data: unchanged
        "odd": P(None, "model"),  # 6 not divisible by 4: the param's sharding
        "rep": P("data"),
    }
    # shard_state with the same param_specs places its state the same way, and its updates like the params
    param_specs = {"w": P(None, "model"), "fsdp": P("data", None), "odd": P(None, "model"), "rep": P()}
    sharded = gradtx.shard_state(tx, mesh2, "data", param_specs=param_specs)
    placed = jax.tree.map(lambda p, s: jax.device_put(p, NamedSharding(mesh2, s)), params, param_specs)
    state = jax.jit(sharded.init)(placed)
    assert all(_placed(leaf, mesh2, spec) for leaf, spec in zip(jax.tree.leaves(state), jax.tree.leaves(specs),
                                                                strict=True))
    updates, _ = jax.jit(sharded.update)(placed, state, placed)
    for name, spec in param_specs.items():
        assert updates[name].sharding.is_equivalent_to(NamedSharding(mesh2, spec), updates[name].ndim), name

    other = Mesh(np.array(jax.devices()[:8]).reshape(2, 4), ("data", "model"))
    with pytest.raises(ValueError, match=r"state_shardings: params\['w'\] is sharded as .* not by a NamedSharding"):
        gradtx.state_shardings(tx, {"w": jax.device_put(jnp.ones((8, 8)), NamedSharding(other, P("model")))},
                               mesh2)


def test_bad_mesh_axis_and_arguments_raise_clear_errors(mesh):
    tx = gradtx.adam(1e-3)
    builders = {
        "shard_state": lambda m, axis: gradtx.shard_state(tx, m, axis),
        "state_shardings": lambda m, axis: gradtx.state_shardings(tx, _params(), m, axis),
    }
    for name, build in builders.items():
        with pytest.raises(ValueError, match=rf"{name}: axis must be the name of one of the mesh's axes "
                                             r"\('data',\), got 'batch'"):
            build(mesh, "batch")
        with pytest.raises(ValueError, match=rf"{name}: axis must be .* got 0"):
            build(mesh, 0)
        with pytest.raises(TypeError, match=rf"{name}: mesh must be a jax.sharding.Mesh .*got list"):
            build(list(jax.devices()), "data")
    with pytest.raises(TypeError, match=r"shard_state: tx must be a gradient transformation"):
        gradtx.shard_state("adam", mesh)
    with pytest.raises(TypeError, match=r"shard_state: param_specs must be None, a PartitionSpec or a pytree"):
        gradtx.shard_state(tx, mesh, param_specs={"w": ("data",)})


def test_describe_repr_and_unchanged_state_layout(mesh):
    tx = gradtx.shard_state(gradtx.adam(1e-3), mesh, "data")
    assert repr(tx).startswith("shard_state(tx=adam(learning_rate=0.001") and "axis='data'" in repr(tx)
    assert gradtx.hyperparams(tx)["axis"] == "data"
    params = _params()
    assert jax.tree.structure(jax.eval_shape(tx.init, params)) == jax.tree.structure(gradtx.adam(1e-3).init(params))
    with pytest.raises(TypeError, match="shard_state"):  # the state check of `describe`
        tx.update(params, gradtx.sgd(0.1, momentum=0.9).init(params), params)


# --------------------------------------------------------------------------------------------
# memory: 1/8 of the state per device
# --------------------------------------------------------------------------------------------


def _device_bytes(tree):
    return sum(leaf.addressable_shards[0].data.nbytes for leaf in jax.tree.leaves(tree))


def test_adam_state_bytes_per_device_are_an_eighth_for_8m_params(mesh):
    shapes = [(2048, 1024)] * 4  # 8,388,608 float32 parameters
    replicated = NamedSharding(mesh, P())
    params = [jax.device_put(jnp.full(s, 0.5), replicated) for s in shapes]
    assert sum(p.size for p in params) >= 8_000_000
    # the unsharded state on one device: what every device holds when the state is replicated
    full = _device_bytes(gradtx.adam(1e-3).init(jax.device_put(params, jax.devices()[0])))

    tx = gradtx.shard_state(gradtx.adam(1e-3), mesh)
    state = jax.jit(tx.init)(params)
    assert _device_bytes(state) <= full / 8 * 1.01, (_device_bytes(state), full)
    step = jax.jit(tx.update, donate_argnums=(1,))
    updates, state = step(params, state, params)
    ratio = _device_bytes(state) / full
    assert ratio <= 1 / 8 * 1.01, ratio
    assert updates[0].sharding.is_fully_replicated and _placed(state[0].mu[0], mesh, P("data", None))
    # Adam's first step is -lr·sign(g), up to float32's 1 - 0.999 (1.3e-5 off) in the bias correction
    np.testing.assert_allclose(np.asarray(updates[0][:2, :2]), -1e-3, rtol=2e-5)


# --------------------------------------------------------------------------------------------
# trajectories against the unsharded optimizer
# --------------------------------------------------------------------------------------------

_apply = jax.jit(gradtx.apply_updates)

ELEMENTWISE = {
    "adam": lambda: gradtx.adam(1e-2),
    "adamw_schedule": lambda: gradtx.adamw(gradtx.warmup_cosine_decay_schedule(0.0, 1e-2, 2, 10), weight_decay=0.1),
    "sgd_nesterov": lambda: gradtx.sgd(1e-2, momentum=0.9, nesterov=True),
    "rmsprop": lambda: gradtx.rmsprop(1e-2),
    "rmsprop_centered_momentum": lambda: gradtx.rmsprop(1e-2, centered=True, momentum=0.9),
}
REDUCTIONS = {
    # both global reductions in one chain: the global norm of the clip, the per-leaf norms of LAMB
    "clip_by_global_norm_lamb": lambda: gradtx.chain(gradtx.clip_by_global_norm(1.0), gradtx.lamb(1e-2)),
}


_COMPILED = {}


def _compiled(name, mesh, sharded, fused=False):
    """One transformation and its jitted `init` / step per (optimizer, sharded, fused), reused by the tests."""
    key = (name, sharded, fused)
    if key not in _COMPILED:
        make = {**ELEMENTWISE, **REDUCTIONS}[name]
        tx = gradtx.shard_state(make(), mesh) if sharded else make()

        def step(p, s, g):
            updates, s = tx.update(g, s, p)
            return (gradtx.apply_updates(p, updates), s, updates) if fused else (p, s, updates)

        _COMPILED[key] = (tx, jax.jit(tx.init), jax.jit(step))
    return _COMPILED[key]


def _put(mesh, sharded):
    where = NamedSharding(mesh, P()) if sharded else jax.devices()[0]
    return lambda tree: jax.device_put(tree, where)


def _trajectory(name, mesh, sharded, grads, fused=False, params=None, state=None):
    """Jitted steps on the given gradients; the updates applied by a separate jit unless fused."""
    _, init, step = _compiled(name, mesh, sharded, fused)
    put = _put(mesh, sharded)
    params = put(_params(TRAJECTORY_LEAVES) if params is None else params)
    state = init(params) if state is None else state
    updates = None
    for g in grads:
        params, state, updates = step(params, state, put(g))
        if not fused:
            params = _apply(params, updates)
    return params, state, updates


def _run_both(name, mesh, fused=False):
    grads = _grads()
    return (_trajectory(name, mesh, False, grads, fused), _trajectory(name, mesh, True, grads, fused))


@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
def test_elementwise_optimizers_are_bit_identical_to_unsharded(name, mesh):
    ref, out = _run_both(name, mesh)
    chex.assert_trees_all_equal(ref, out)  # params, state and last updates, bit for bit
    _, state, updates = out
    assert all(u.sharding.is_fully_replicated for u in jax.tree.leaves(updates))
    moments = [leaf for leaf in jax.tree.leaves(state) if leaf.ndim]
    by_shape = {SHAPES[k]: EXPECTED[k] for k in TRAJECTORY_LEAVES}
    assert moments and all(_placed(m, mesh, by_shape[m.shape]) for m in moments)


def _relative(ref, out):
    return max(
        float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b)) / max(np.linalg.norm(np.asarray(a)), 1e-30))
        for a, b in zip(jax.tree.leaves(ref), jax.tree.leaves(out), strict=True)
    )


@pytest.mark.parametrize("name", sorted(REDUCTIONS))
def test_global_reductions_agree_to_1e6_relative(name, mesh):
    ref, out = _run_both(name, mesh)
    assert jax.tree.structure(ref) == jax.tree.structure(out)
    assert _relative(ref, out) <= 1e-6


def test_updates_applied_inside_the_step_agree_to_1e6_relative(mesh):
    # XLA may contract the unsharded p + (-lr)·u into one fused multiply-add; the sharded step
    # gathers u first. States stay bit-identical; params within a rounding per step.
    ref, out = _run_both("adam", mesh, fused=True)
    chex.assert_trees_all_equal(ref[1:], out[1:])
    assert _relative(ref[0], out[0]) <= 1e-6


# --------------------------------------------------------------------------------------------
# checkpoints
# --------------------------------------------------------------------------------------------


def test_sharded_checkpoint_restores_on_one_device_and_continues_identically(tmp_path, mesh):
    name = "adamw_schedule"
    grads, half = _grads(), STEPS // 2
    device0 = jax.devices()[0]
    uninterrupted = _trajectory(name, mesh, False, grads)

    p, s, _ = _trajectory(name, mesh, True, grads[:half])
    assert _placed(s[0].mu["a"], mesh, P("data", None))
    ckpt = ocp.StandardCheckpointer()
    ckpt.save(tmp_path / "ckpt", {"params": p, "opt_state": s})
    ckpt.wait_until_finished()

    # restore onto one device as the plain optimizer's state, and continue with the plain optimizer
    tx = _compiled(name, mesh, False)[0]
    params = _params(TRAJECTORY_LEAVES)
    target = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=SingleDeviceSharding(device0)),
        jax.eval_shape(lambda: {"params": params, "opt_state": tx.init(params)}),
    )
    restored = ckpt.restore(tmp_path / "ckpt", target)
    assert all(leaf.sharding.device_set == {device0} for leaf in jax.tree.leaves(restored))
    resumed = _trajectory(name, mesh, False, grads[half:], params=restored["params"], state=restored["opt_state"])
    chex.assert_trees_all_equal(resumed[:2], uninterrupted[:2])

    # and back onto the mesh, placed by state_shardings
    replicated = NamedSharding(mesh, P())
    sharded = _compiled(name, mesh, True)[0]
    shardings = gradtx.state_shardings(sharded, params, mesh)
    on_mesh = ckpt.restore(tmp_path / "ckpt", {
        "params": jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), params),
        "opt_state": jax.tree.map(lambda x, sh: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sh),
                                  jax.eval_shape(tx.init, params), shardings),
    })
    assert _placed(on_mesh["opt_state"][0].nu["b"], mesh, P(None, "data"))
    chex.assert_trees_all_equal(on_mesh["opt_state"], s)


# --------------------------------------------------------------------------------------------
# the module docstring's snippet
# --------------------------------------------------------------------------------------------


def test_module_docstring_snippet_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", gradtx.sharding.__doc__, flags=re.DOTALL)
    assert len(blocks) == 1
    exec(compile(blocks[0], "gradtx.sharding docstring", "exec"), {})
    assert capsys.readouterr().out.strip() == "(8, 4)"  # 1/8 of a (64, 4) moment
