"""Tests of gradtx.fusion: the fused path gives the per-leaf numbers (and optax's), step by step."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gradtx
from gradtx import fusion
from gradtx.fusion import FusedState, fuse_state, fused, is_elementwise, maybe_fuse, unfuse_state

MAX = 1000  # max_leaf_size used in these tests: the (40, 30) leaf stays a separate array
STEPS = 40


def _mixed_params():
    """Many small leaves in nested containers, a large leaf, a scalar, an empty leaf, 3 dtypes."""
    rng = np.random.default_rng(0)

    def arr(shape, dtype=np.float32):
        return jnp.asarray(rng.normal(size=shape).astype(np.float32), dtype)

    return {
        "dense": [{"w": arr((3, 4)), "b": arr((4,))} for _ in range(6)],
        "scalar": arr(()),
        "empty": arr((0, 3)),
        "big": arr((40, 30)),
        "half": {"a": arr((5,), jnp.bfloat16), "b": arr((2, 3), jnp.bfloat16)},
        "f16": arr((7,), jnp.float16),
        "tuple": (arr((2, 2, 2)), arr((1,))),
    }


def _f32_params(count=12):
    rng = np.random.default_rng(1)
    return {f"layer{i}": {"w": jnp.asarray(rng.normal(size=(i % 4 + 1, 3)), jnp.float32),
                          "b": jnp.asarray(rng.normal(size=(i % 3 + 2,)), jnp.float32)} for i in range(count)}


def _grads(params, step, scale=0.5):
    rng = np.random.default_rng(100 + step)
    return jax.tree.map(
        lambda p: jnp.asarray(scale * rng.normal(size=p.shape).astype(np.float32), p.dtype), params
    )


OPTIMIZERS = {
    "sgd_nesterov": (lambda: gradtx.sgd(0.05, momentum=0.9, nesterov=True),
                     lambda: optax.sgd(0.05, momentum=0.9, nesterov=True)),
    "adam": (lambda: gradtx.adam(0.01), lambda: optax.adam(0.01)),
    "adamw": (lambda: gradtx.adamw(0.01, weight_decay=0.1), lambda: optax.adamw(0.01, weight_decay=0.1)),
    "rmsprop_centered": (lambda: gradtx.rmsprop(0.01, centered=True, momentum=0.5),
                         lambda: optax.rmsprop(0.01, centered=True, momentum=0.5)),
    "clip_adamw": (
        lambda: gradtx.chain(gradtx.clip_by_global_norm(1.0), gradtx.adamw(0.01, weight_decay=0.1)),
        lambda: optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(0.01, weight_decay=0.1)),
    ),
    "nadamw": (lambda: gradtx.nadamw(0.01), lambda: optax.nadamw(0.01)),
    "lion": (lambda: gradtx.lion(0.001, weight_decay=0.01), lambda: optax.lion(0.001, weight_decay=0.01)),
    "adagrad": (lambda: gradtx.adagrad(0.05), lambda: optax.adagrad(0.05)),
    "amsgrad": (lambda: gradtx.amsgrad(0.01), lambda: optax.amsgrad(0.01)),
    "adam_bf16_mu": (lambda: gradtx.adam(0.01, mu_dtype=jnp.bfloat16), None),
}


_GRADS_CACHE = {}


def _grad_seq(params, steps):
    key = (str(jax.tree.structure(params)), tuple((x.shape, str(x.dtype)) for x in jax.tree.leaves(params)))
    seq = _GRADS_CACHE.setdefault(key, [])
    while len(seq) < steps:
        seq.append(_grads(params, len(seq)))
    return seq[:steps]


_STEPS = {}


def _trajectory(tx, params, steps, start=0, state=None):
    """Params after every step and the final state, applying `tx` (jitted step) to `_grads`."""
    if id(tx) not in _STEPS:  # one jitted step per transformation (kept alive with it): compiled once

        @jax.jit
        def step(p, s, g):
            updates, s = tx.update(g, s, p)
            return gradtx.apply_updates(p, updates), s

        _STEPS[id(tx)] = (tx, step)
    step = _STEPS[id(tx)][1]
    state = tx.init(params) if state is None else state
    out = []
    for g in _grad_seq(params, start + steps)[start:]:
        params, state = step(params, state, g)
        out.append(params)
    return out, state


def _trajectory_pair(txs, params, steps):
    """`_trajectory` of two transformations from the same params, one jitted step advancing both
    (one compile instead of two; they share no input but the gradients, so each is computed as
    it would be alone)."""

    @jax.jit
    def step(carry, g):
        out = []
        for tx, (p, s) in zip(txs, carry, strict=True):
            updates, s = tx.update(g, s, p)
            out.append((gradtx.apply_updates(p, updates), s))
        return tuple(out)

    carry = tuple((params, tx.init(params)) for tx in txs)
    trajs = ([], [])
    for g in _grad_seq(params, steps):
        carry = step(carry, g)
        for traj, (p, _) in zip(trajs, carry, strict=True):
            traj.append(p)
    return tuple((traj, s) for traj, (_, s) in zip(trajs, carry, strict=True))


def _assert_close_by_dtype(a, b, f32_tol=1e-6):
    """float32 leaves to ~1e-6; 16-bit leaves to one unit in their last place."""
    def check(x, y):
        assert x.dtype == y.dtype and x.shape == y.shape
        x64, y64 = np.asarray(x, np.float64), np.asarray(y, np.float64)
        if not jnp.issubdtype(x.dtype, jnp.floating):
            np.testing.assert_array_equal(x64, y64)
        elif x.dtype == jnp.float32:
            np.testing.assert_allclose(x64, y64, rtol=f32_tol, atol=f32_tol)
        else:
            eps = float(jnp.finfo(x.dtype).eps)
            np.testing.assert_allclose(x64, y64, rtol=eps, atol=eps)

    jax.tree.map(check, a, b)


# --------------------------------------------------------------------------------------------
# Same numbers as leaf by leaf and as optax
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_fused_matches_per_leaf_on_mixed_tree(name):
    params = _mixed_params()
    make = OPTIMIZERS[name][0]
    (fused_traj, fused_state), (leaf_traj, leaf_state) = _trajectory_pair(
        (fused(make(), max_leaf_size=MAX), make()), params, STEPS)
    for step, (a, b) in enumerate(zip(fused_traj, leaf_traj, strict=True)):
        try:
            _assert_close_by_dtype(a, b)
        except AssertionError as err:
            raise AssertionError(f"{name}: step {step} differs") from err
    # the state, split back into leaves, is the per-leaf state
    _assert_close_by_dtype(unfuse_state(fused_state, params, MAX), leaf_state)
    chex.assert_tree_all_finite(fused_traj[-1])


@pytest.mark.parametrize("name", sorted(k for k, v in OPTIMIZERS.items() if v[1] is not None))
def test_fused_matches_optax_step_by_step(name):
    make, make_optax = OPTIMIZERS[name]
    params = _f32_params()
    (fused_traj, _), (optax_traj, _) = _trajectory_pair((maybe_fuse(make()), make_optax()), params, STEPS)
    for step, (a, b) in enumerate(zip(fused_traj, optax_traj, strict=True)):
        try:
            chex.assert_trees_all_close(a, b, rtol=1e-6, atol=1e-6)
        except AssertionError as err:
            raise AssertionError(f"{name}: step {step} differs from optax") from err


class FusedVariantsTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_update_with_and_without_jit(self):
        params = _mixed_params()
        tx_fused = fused(gradtx.sgd(0.1, momentum=0.9), max_leaf_size=MAX)
        tx_leaf = gradtx.sgd(0.1, momentum=0.9)
        update = self.variant(tx_fused.update)
        s_fused, s_leaf = tx_fused.init(params), tx_leaf.init(params)
        for t in range(3):
            g = _grads(params, t)
            u_fused, s_fused = update(g, s_fused, params)
            u_leaf, s_leaf = tx_leaf.update(g, s_leaf, params)
            _assert_close_by_dtype(u_fused, u_leaf)


def _single_key(params, name):
    """The fused-state key of the unfused (large) leaf `name` of a dict of params."""
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
    return f"leaf:{paths.index(repr([name]))}"


def _shapes():
    dims = st.integers(min_value=0, max_value=4)
    return st.lists(st.lists(dims, min_size=0, max_size=3).map(tuple), min_size=1, max_size=9)


@pytest.mark.slow
@settings(max_examples=4, deadline=None, derandomize=True, database=None)
@given(shapes=_shapes(), split=st.integers(min_value=0, max_value=30))
def test_any_tree_structure_gives_per_leaf_adam(shapes, split):
    rng = np.random.default_rng(len(shapes) + 7 * split)
    params = [jnp.asarray(rng.normal(size=s), jnp.float32) for s in shapes]
    grads = [jnp.asarray(rng.normal(size=s), jnp.float32) for s in shapes]
    tx_fused, tx_leaf = fused(gradtx.adam(0.1), max_leaf_size=split), gradtx.adam(0.1)
    s_fused, s_leaf = tx_fused.init(params), tx_leaf.init(params)
    # both updates in one jitted function: one compile per example (eagerly, each new leaf shape
    # compiled every primitive anew); the eager fused path is checked by FusedVariantsTest
    step = jax.jit(lambda g, sf, sl: (tx_fused.update(g, sf, params), tx_leaf.update(g, sl, params)))
    for _ in range(2):
        (u_fused, s_fused), (u_leaf, s_leaf) = step(grads, s_fused, s_leaf)
        chex.assert_trees_all_close(u_fused, u_leaf, rtol=1e-6, atol=1e-7)
    # leaves with more than `split` elements are kept whole; the others share one buffer
    keys = set(s_fused.inner[0].mu)
    small = [s for s in shapes if int(np.prod(s)) <= split]
    assert ("fused:float32" in keys) == bool(small)
    assert len(keys) == len(shapes) - len(small) + bool(small)


def test_adjacent_leaves_of_one_shape_share_opaque_offsets():
    # leaves of one shape lying back to back are cut in runs of at most RUN: one operand of the
    # no-op sort per run (its cost grows with its operands), the others at constant distances
    import re

    from gradtx._fused_layout import RUN

    rng = np.random.default_rng(7)
    shapes = [(5,)] * (2 * RUN + 4) + [(3,)] + [(5,)] * 3 + [(2, 2)] * 2
    params = [jnp.asarray(rng.normal(size=s), jnp.float32) for s in shapes]
    grads = [[jnp.asarray(rng.normal(size=s), jnp.float32) for s in shapes] for _ in range(2)]
    tx_fused, tx_leaf = fused(gradtx.sgd(0.1, momentum=0.9)), gradtx.sgd(0.1, momentum=0.9)

    def step(tx):
        def f(p, s, g):
            u, s = tx.update(g, s, p)
            return gradtx.apply_updates(p, u), s

        return jax.jit(f)

    fused_step, leaf_step = step(tx_fused), step(tx_leaf)
    fused_step = fused_step.lower(params, tx_fused.init(params), grads[0]).compile()  # compiled once, used below
    text = fused_step.as_text()
    (sort_line,) = [line for line in text.splitlines() if re.search(r"= \(.*\) sort\(", line)]
    operands = sort_line.split(" sort(", 1)[1].split(")", 1)[0].count("%")
    # runs of (5,): RUN, RUN, 4, then 3 after the (3,) leaf; one run of (2, 2); plus the key
    assert operands == 5 + 1, sort_line[:200]
    p, s, r, rs = params, tx_fused.init(params), params, tx_leaf.init(params)
    for g in grads:
        p, s = fused_step(p, s, g)
        r, rs = leaf_step(r, rs, g)
    chex.assert_trees_all_close(p, r, rtol=1e-6, atol=1e-7)


def test_global_norm_clipping_is_exact_but_per_leaf_clipping_is_not():
    # why clip_by_norm is excluded: the norm of a concatenation is not the norm of each leaf
    params = {"a": jnp.full((4,), 3.0), "b": jnp.full((9,), 0.1)}
    global_leaf = gradtx.clip_by_global_norm(1.0)
    u_fused, _ = fused(global_leaf).update(params, fused(global_leaf).init(params))
    u_leaf, _ = global_leaf.update(params, global_leaf.init(params))
    chex.assert_trees_all_close(u_fused, u_leaf, rtol=1e-6)
    per_leaf = gradtx.clip_by_norm(1.0)
    u_fused, _ = fused(per_leaf).update(params, fused(per_leaf).init(params))
    u_leaf, _ = per_leaf.update(params, per_leaf.init(params))
    assert not np.allclose(u_fused["b"], u_leaf["b"])  # b (norm 0.3) is left alone leaf by leaf
    np.testing.assert_allclose(u_leaf["b"], params["b"])
    assert not is_elementwise(per_leaf)
    assert maybe_fuse(per_leaf) is per_leaf


# --------------------------------------------------------------------------------------------
# State layout
# --------------------------------------------------------------------------------------------


def test_state_is_a_few_contiguous_buffers():
    params = _mixed_params()
    state = fused(gradtx.adam(1e-3), max_leaf_size=MAX).init(params)
    assert isinstance(state, FusedState)
    adam_state = state.inner[0]
    sizes = {}
    for leaf in jax.tree.leaves(params):
        if leaf.size <= MAX:
            key = "fused:" + leaf.dtype.name
            sizes[key] = sizes.get(key, 0) + leaf.size
    assert set(adam_state.mu) == {*sizes, _single_key(params, "big")}
    for key, size in sizes.items():
        assert adam_state.mu[key].shape == (size,)
        assert adam_state.mu[key].dtype == jnp.dtype(key.split(":")[1])
    # second moments of 16-bit params are kept in float32, as leaf by leaf
    assert adam_state.nu["fused:bfloat16"].dtype == jnp.float32
    assert adam_state.mu[_single_key(params, "big")].shape == (40, 30)
    assert all(isinstance(x, jax.Array) for x in jax.tree.leaves(state))
    per_leaf = jax.tree.leaves(gradtx.adam(1e-3).init(params))
    assert len(jax.tree.leaves(state)) == 1 + 2 * 4 < len(per_leaf)


def test_fuse_and_unfuse_state_round_trip_and_continue():
    params = _f32_params()
    tx_leaf, tx_fused = gradtx.adamw(0.01), fused(gradtx.adamw(0.01))
    # train 5 steps unfused, convert the state, continue fused: same as 10 steps unfused
    traj, leaf_state = _trajectory(tx_leaf, params, 5)
    converted = fuse_state(leaf_state, params)
    chex.assert_trees_all_equal_structs(converted, tx_fused.init(params))
    chex.assert_trees_all_close(unfuse_state(converted, params), leaf_state, rtol=0, atol=0)
    rest, _ = _trajectory(tx_fused, traj[-1], 5, start=5, state=converted)
    full, _ = _trajectory(tx_leaf, params, 10)
    chex.assert_trees_all_close(rest[-1], full[-1], rtol=1e-6, atol=1e-6)
    assert unfuse_state(leaf_state, params) is leaf_state  # not fused: unchanged


def test_checkpoint_through_numpy_continues_identically():
    params = _mixed_params()
    tx = fused(gradtx.adam(0.01), max_leaf_size=MAX)
    update = jax.jit(tx.update)
    state = tx.init(params)
    for t in range(3):
        _, state = update(_grads(params, t), state, params)
    leaves, treedef = jax.tree.flatten(state)
    restored = jax.tree.unflatten(treedef, [jnp.asarray(np.asarray(x)) for x in leaves])
    g = _grads(params, 3)
    chex.assert_trees_all_equal(update(g, state, params), update(g, restored, params))


def test_empty_tree():
    tx = fused(gradtx.adam(0.1))
    state = tx.init({})
    updates, state = tx.update({}, state, {})
    assert updates == {}


# --------------------------------------------------------------------------------------------
# maybe_fuse: when it fuses and how to turn it off
# --------------------------------------------------------------------------------------------


def test_is_elementwise():
    assert is_elementwise(gradtx.adam(1e-3))
    assert is_elementwise(gradtx.sgd(1e-3, momentum=0.9))
    assert is_elementwise(gradtx.rmsprop(1e-3, centered=True))
    assert is_elementwise(gradtx.chain(gradtx.clip_by_global_norm(1.0), gradtx.adamw(1e-3)))
    assert not is_elementwise(gradtx.adamw(1e-3, mask=lambda p: jax.tree.map(lambda x: x.ndim > 1, p)))
    assert not is_elementwise(gradtx.lamb(1e-3))
    assert not is_elementwise(gradtx.scale_by_trust_ratio())
    assert not is_elementwise(gradtx.chain(gradtx.adam(1e-3), gradtx.clip_by_norm(1.0)))
    assert not is_elementwise(optax.adam(1e-3))
    assert not is_elementwise(gradtx.masked(gradtx.adam(1e-3), {"w": True}))


def test_maybe_fuse_thresholds():
    tx = maybe_fuse(gradtx.adam(1e-3), min_leaves=5, max_leaf_size=100)
    few = {f"b{i}": jnp.zeros(3) for i in range(4)}
    many = {f"b{i}": jnp.zeros(3) for i in range(5)}
    big = {f"w{i}": jnp.zeros(101) for i in range(10)}
    assert isinstance(tx.init(many), FusedState)
    chex.assert_trees_all_equal_structs(tx.init(few), gradtx.adam(1e-3).init(few))
    chex.assert_trees_all_equal_structs(tx.init(big), gradtx.adam(1e-3).init(big))
    for tree in (few, many):
        u, _ = tx.update(jax.tree.map(jnp.ones_like, tree), tx.init(tree), tree)
        # first Adam step: -lr * g / (|g| + eps) up to float32 bias-correction rounding
        chex.assert_trees_all_close(u, jax.tree.map(lambda x: jnp.full_like(x, -1e-3), tree), rtol=1e-4)


def test_maybe_fuse_is_idempotent_and_leaves_non_elementwise_alone():
    tx = maybe_fuse(gradtx.adam(1e-3))
    assert tx is not gradtx.adam(1e-3)
    assert maybe_fuse(tx) is tx
    assert maybe_fuse(fused(gradtx.adam(1e-3))).update._gradtx_fused
    lamb = gradtx.lamb(1e-3)
    assert maybe_fuse(lamb) is lamb
    optax_adam = optax.adam(1e-3)
    assert maybe_fuse(optax_adam) is optax_adam


def test_disabled_context_and_environment(monkeypatch):
    adam = gradtx.adam(1e-3)
    assert fusion.fusion_enabled()
    with fusion.disabled():
        assert not fusion.fusion_enabled()
        assert maybe_fuse(adam) is adam
    assert fusion.fusion_enabled()
    monkeypatch.setenv("GRADTX_FUSION", "0")
    assert maybe_fuse(adam) is adam
    monkeypatch.setenv("GRADTX_FUSION", "1")
    assert maybe_fuse(adam) is not adam


# --------------------------------------------------------------------------------------------
# Arguments, errors, extra args, repr
# --------------------------------------------------------------------------------------------


def test_validation_and_errors():
    with pytest.raises(TypeError, match="inner"):
        fused(lambda g: g)
    with pytest.raises(ValueError, match="max_leaf_size"):
        fused(gradtx.adam(1e-3), max_leaf_size=-1)
    with pytest.raises(ValueError, match="min_leaves"):
        maybe_fuse(gradtx.adam(1e-3), min_leaves=0)
    tx = fused(gradtx.adamw(1e-3))
    params = {"a": jnp.zeros(3), "b": jnp.zeros(2)}
    state = tx.init(params)
    with pytest.raises(ValueError, match="same dtype"):
        tx.update(params, state, {"a": jnp.zeros(3, jnp.bfloat16), "b": jnp.zeros(2)})
    with pytest.raises(TypeError):
        tx.update(params, gradtx.adamw(1e-3).init(params), params)


def test_extra_args_reach_inner_and_repr():
    seen = {}

    def init(params):
        return gradtx.EmptyState()

    def update(updates, state, params=None, **extra):
        seen.update(extra)
        return updates, state

    tx = fused(gradtx.GradientTransformation(init, update))
    tx.update({"a": jnp.ones(2), "b": jnp.ones(3)}, tx.init({"a": jnp.ones(2), "b": jnp.ones(3)}), value=3.0)
    assert seen == {"value": 3.0}
    assert repr(fused(gradtx.scale(2.0), max_leaf_size=7)) == "fused(inner=scale(step_size=2.0), max_leaf_size=7)"


def test_donated_training_step_under_jit():
    params = _f32_params(30)
    tx = maybe_fuse(gradtx.adam(0.01))

    @jax.jit
    def step(p, s, g):
        u, s = tx.update(g, s, p)
        return gradtx.apply_updates(p, u), s

    step = jax.jit(step, donate_argnums=(0, 1))
    p, s = jax.tree.map(jnp.copy, params), tx.init(params)
    ref_p, ref_s = params, gradtx.adam(0.01).init(params)
    for t in range(5):
        g = _grads(params, t)
        p, s = step(p, s, g)
        u, ref_s = gradtx.adam(0.01).update(g, ref_s, ref_p)
        ref_p = gradtx.apply_updates(ref_p, u)
    chex.assert_trees_all_close(p, ref_p, rtol=1e-6, atol=1e-6)


@pytest.mark.skipif(len(jax.devices()) < 8, reason="needs 8 (simulated) devices")
def test_sharded_params_large_leaves_keep_their_sharding():
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    mesh = Mesh(np.array(jax.devices()[:8]), ("x",))
    rng = np.random.default_rng(3)
    params = {f"b{i}": jnp.asarray(rng.normal(size=(8,)), jnp.float32) for i in range(10)}
    params["w"] = jax.device_put(jnp.asarray(rng.normal(size=(64, 80)), jnp.float32), NamedSharding(mesh, P("x", None)))
    tx = maybe_fuse(gradtx.adam(0.01))  # w (5,120 elements) is above the default max_leaf_size

    @jax.jit
    def step(p, s, g):
        u, s = tx.update(g, s, p)
        return gradtx.apply_updates(p, u), s

    state = tx.init(params)
    assert isinstance(state, FusedState)
    assert state.inner[0].mu[_single_key(params, "w")].sharding.is_equivalent_to(params["w"].sharding, 2)
    p, s = params, state
    ref_p, ref_s = params, gradtx.adam(0.01).init(params)
    for t in range(3):
        g = _grads(params, t)
        p, s = step(p, s, g)
        u, ref_s = gradtx.adam(0.01).update(g, ref_s, ref_p)
        ref_p = gradtx.apply_updates(ref_p, u)
    chex.assert_trees_all_close(p, ref_p, rtol=1e-6, atol=1e-6)
    assert s.inner[0].mu[_single_key(params, "w")].sharding.is_equivalent_to(params["w"].sharding, 2)


@gradtx.describe
def _fused_adam(learning_rate: float = 1e-2):
    """A user's alias that opts in to fusion: `maybe_fuse(chain(...))` (gradtx.adam itself runs per leaf)."""
    return maybe_fuse(gradtx.chain(gradtx.scale_by_adam(), gradtx.scale_by_learning_rate(learning_rate)))


_PER_LEAF_ADAM = gradtx.adam(1e-2)


@pytest.mark.parametrize(
    "wrap",
    [
        lambda: _fused_adam(1e-2),
        lambda: gradtx.inject_hyperparams(_fused_adam)(learning_rate=1e-2),
        lambda: gradtx.MultiSteps(_fused_adam(1e-2), every_k_schedule=1),
        lambda: gradtx.apply_if_finite(_fused_adam(1e-2), max_consecutive_errors=3),
        lambda: optax.chain(_fused_adam(1e-2)),
    ],
    ids=["alias", "inject_hyperparams", "MultiSteps", "apply_if_finite", "optax.chain"],
)
def test_fused_alias_inside_wrappers_matches_per_leaf(wrap):
    params = _f32_params()
    fused_traj, state = _trajectory(wrap(), params, 5)
    leaf_traj, _ = _trajectory(_PER_LEAF_ADAM, params, 5)  # one transformation: compiled once for the 5 cases
    chex.assert_trees_all_close(fused_traj, leaf_traj, rtol=1e-6, atol=1e-6)
    assert any(isinstance(x, FusedState) for x in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, FusedState)))


def test_fused_alias_in_flax_nnx_optimizer():
    from flax import nnx

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.layers = nnx.List([nnx.Linear(3, 3, rngs=rngs) for _ in range(5)])

        def __call__(self, x):
            for layer in self.layers:
                x = jnp.tanh(layer(x))
            return x

    def loss(model):
        return jnp.sum((model(jnp.linspace(-1.0, 1.0, 6).reshape(2, 3)) - 0.5) ** 2)

    models = [Net(nnx.Rngs(0)), Net(nnx.Rngs(0))]
    opts = [nnx.Optimizer(models[0], _fused_adam(1e-2), wrt=nnx.Param),
            nnx.Optimizer(models[1], gradtx.adam(1e-2), wrt=nnx.Param)]
    for _ in range(3):
        for model, opt in zip(models, opts, strict=True):
            opt.update(model, nnx.grad(loss)(model))
    assert isinstance(opts[0].opt_state, FusedState) or "FusedState" in type(opts[0].opt_state).__name__
    chex.assert_trees_all_close(nnx.state(models[0], nnx.Param), nnx.state(models[1], nnx.Param), rtol=1e-6, atol=1e-6)
