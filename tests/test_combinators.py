"""Wrappers and combinators added for optax 0.2.8's names: what the bitwise table cannot show.

Lookahead on its own `LookaheadParams` (bit for bit against optax, under jit), extra arguments
forwarded to condition functions and measures, known answers computed by hand, the
`optax.microbatching` functions (bit for bit), `tree_map_params` on gradtx and optax states,
and the validation messages.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _bitwise import assert_same, grads, tree

import gradtx
from gradtx import microbatching as mb

# ----------------------------------------------------------------------------------------------
# lookahead
# ----------------------------------------------------------------------------------------------


def _lookahead_run(lib, tx, steps=12):
    """`steps` jitted lookahead steps on `LookaheadParams` (gradients at the fast params)."""
    params = lib.LookaheadParams.init_synced(tree(4))
    state = tx.init(params)

    @jax.jit
    def step(params, state, i):
        updates, state = tx.update(grads(params.fast, i), state, params)
        return lib.apply_updates(params, updates), state, updates

    history = []
    for i in range(steps):
        params, state, updates = step(params, state, jnp.float32(i))
        history.append((params, state, updates))
    return history


@pytest.mark.parametrize(
    "build",
    [
        lambda m: m.lookahead(m.adam(1e-2), sync_period=4, slow_step_size=0.5),
        lambda m: m.lookahead(m.sgd(1e-2, momentum=0.9), 3, 0.7, reset_state=True),
    ],
    ids=["adam", "sgd_reset"],
)
def test_lookahead_on_lookahead_params_is_bit_identical_to_optax(build):
    ours, ref = _lookahead_run(gradtx, build(gradtx)), _lookahead_run(optax, build(optax))
    for t, (a, b) in enumerate(zip(ours, ref, strict=True)):
        assert type(a[0]).__name__ == type(b[0]).__name__ == "LookaheadParams"
        for k, part in enumerate(("params", "state", "updates")):
            assert_same(a[k], b[k], f"step {t} {part}")


def test_lookahead_reset_keeps_the_dtype_of_boolean_state():
    # optax's reset blends the states as `(1 - s) * current + s * initial`, which turns a boolean
    # leaf (apply_if_finite's last_finite) into int32, so its jitted step compiles twice; gradtx
    # casts back to the leaf's dtype. The values are the same.
    def build(m):
        return m.lookahead(m.apply_if_finite(m.adam(1e-2), 2), 2, 1.0, reset_state=True)

    ours, ref = _lookahead_run(gradtx, build(gradtx)), _lookahead_run(optax, build(optax))
    for t, (a, b) in enumerate(zip(ours, ref, strict=True)):
        assert a[1].fast_state.last_finite.dtype == jnp.bool_
        fixed = b[1]._replace(fast_state=b[1].fast_state._replace(last_finite=b[1].fast_state.last_finite.astype(bool)))
        assert_same((a[0], a[1], a[2]), (b[0], fixed, b[2]), f"step {t}")


def test_lookahead_by_hand():
    # sgd(0.1) on g = 1, k = 2, alpha = 0.5: the fast params go 1 -> 0.9 -> (0.8); at the
    # synchronization the slow ones move halfway, 1 -> 0.9, and the fast ones land there.
    tx = gradtx.lookahead(gradtx.sgd(0.1), sync_period=2, slow_step_size=0.5)
    params = gradtx.LookaheadParams.init_synced(jnp.array([1.0]))
    state = tx.init(params)
    seen = []
    for _ in range(4):
        updates, state = tx.update(jnp.array([1.0]), state, params)
        params = gradtx.apply_updates(params, updates)
        seen.append((float(params.fast[0]), float(params.slow[0]), int(state.steps_since_sync)))
    expected = [(0.9, 1.0, 1), (0.9, 0.9, 0), (0.8, 0.9, 1), (0.8, 0.8, 0)]
    np.testing.assert_allclose(np.array(seen), np.array(expected), rtol=1e-6)


def test_lookahead_init_accepts_fast_params_alone_and_update_needs_both():
    tx = gradtx.lookahead(gradtx.adam(1e-2), 3, 0.5)
    p = tree(4)
    assert_same(tx.init(p), tx.init(gradtx.LookaheadParams.init_synced(p)), "init")
    with pytest.raises(TypeError, match="LookaheadParams"):
        tx.update(p, tx.init(p), p)
    assert repr(tx).startswith("lookahead(fast_optimizer=adam(")


def test_lookahead_forwards_extra_args_to_the_fast_optimizer():
    seen = {}

    def update(u, s, p=None, *, value):
        seen["value"] = value
        return u, s

    fast = gradtx.GradientTransformation(gradtx.init_empty_state, update)
    tx = gradtx.lookahead(fast, 2, 0.5)
    params = gradtx.LookaheadParams.init_synced(jnp.ones(2))
    tx.update(jnp.ones(2), tx.init(params), params, value=3.0)
    assert seen["value"] == 3.0


# ----------------------------------------------------------------------------------------------
# apply_every, periodic_update, incremental_update
# ----------------------------------------------------------------------------------------------


def test_apply_every_by_hand():
    tx = gradtx.apply_every(3)
    state = tx.init(jnp.zeros(1))
    out = []
    for g in [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]:
        u, state = tx.update(jnp.array([g]), state)
        out.append(float(u[0]))
    assert out == [0.0, 0.0, 7.0, 0.0, 0.0, 56.0, 0.0]
    assert int(state.count) == 1 and float(state.grad_acc[0]) == 64.0


def test_incremental_and_periodic_update_by_hand():
    new, old = {"a": jnp.array([2.0]), "b": None}, {"a": jnp.array([1.0]), "b": None}
    avg = gradtx.incremental_update(new, old, 0.25)
    assert float(avg["a"][0]) == 1.25 and avg["b"] is None
    for steps, expected in [(0, 2.0), (2, 1.0), (6, 2.0)]:
        assert float(gradtx.periodic_update(new, old, steps, 3)["a"][0]) == expected
        jitted = jax.jit(gradtx.periodic_update, static_argnums=3)(new, old, jnp.int32(steps), 3)
        assert float(jitted["a"][0]) == expected
    with pytest.raises(ValueError, match="same tree structure"):
        gradtx.periodic_update({"a": jnp.ones(1)}, {"b": jnp.ones(1)}, 0, 2)
    with pytest.raises(ValueError, match=r"\['a'\]"):
        gradtx.periodic_update({"a": jnp.ones(1)}, {"a": jnp.ones(2)}, 0, 2)


# ----------------------------------------------------------------------------------------------
# conditionally_transform / conditionally_mask
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["conditionally_transform", "conditionally_mask"])
def test_condition_reads_extra_args_and_matches_optax(name):
    def should(step, value=None, **extra):
        del extra
        return jnp.logical_and(step % 2 == 0, value < 10.0)

    def run(lib):
        tx = getattr(lib, name)(lib.adam(1e-2), should, forward_extra_args=True)
        params = tree(4)
        state = tx.init(params)
        step = jax.jit(lambda g, s, p, v: tx.update(g, s, p, value=v))
        out = []
        for i in range(8):
            updates, state = step(grads(params, i), state, params, jnp.float32(3.0 * i))
            params = lib.apply_updates(params, updates)
            out.append((params, state, updates))
        return out

    for t, (a, b) in enumerate(zip(run(gradtx), run(optax), strict=True)):
        assert_same(a, b, f"step {t}")


def test_conditional_by_hand_and_bad_condition():
    tx = gradtx.conditionally_transform(gradtx.scale(10.0), lambda step: step % 2 == 1)
    state = tx.init(jnp.zeros(1))
    out = []
    for _ in range(4):
        u, state = tx.update(jnp.ones(1), state)
        out.append(float(u[0]))
    assert out == [1.0, 10.0, 1.0, 10.0] and int(state.step) == 4
    masked = gradtx.conditionally_mask(gradtx.scale(10.0), lambda step: step >= 2)
    state = masked.init(jnp.zeros(1))
    out = []
    for _ in range(3):
        u, state = masked.update(jnp.ones(1), state)
        out.append(float(u[0]))
    assert out == [0.0, 0.0, 10.0]
    bad = gradtx.conditionally_mask(gradtx.scale(1.0), lambda step: jnp.ones(2, bool))
    with pytest.raises(TypeError, match="boolean scalar"):
        bad.update(jnp.ones(1), bad.init(jnp.zeros(1)))
    # the step counter saturates instead of wrapping
    state = masked.init(jnp.zeros(1))._replace(step=jnp.int32(2**31 - 1))
    _, state = masked.update(jnp.ones(1), state)
    assert int(state.step) == 2**31 - 1


# ----------------------------------------------------------------------------------------------
# monitor, measure_with_ema, snapshot
# ----------------------------------------------------------------------------------------------


def _norm(u):
    return jnp.sqrt(sum(jnp.sum(x * x) for x in jax.tree.leaves(u)))


def test_monitor_by_hand_and_extra_args():
    seen = {}

    def loss_measure(u, s, p=None, *, value, **extra):
        seen["value"] = value
        return value * 2.0, s

    measures = {
        "norm": _norm,
        "norm_ema": gradtx.measure_with_ema(_norm, 0.5, debias=False),
        "loss": gradtx.GradientTransformation(gradtx.init_empty_state, loss_measure),
    }
    tx = gradtx.chain(gradtx.monitor(measures), gradtx.clip_by_global_norm(1.0))
    state = tx.init(jnp.zeros(2))
    assert state[0].measurements == {}
    updates, state = tx.update(jnp.array([3.0, 4.0]), state, value=1.5)
    assert seen["value"] == 1.5
    m = state[0].measurements
    assert float(m["norm"]) == 5.0 and float(m["norm_ema"]) == 2.5 and float(m["loss"]) == 3.0
    np.testing.assert_allclose(np.asarray(updates), [0.6, 0.8], rtol=1e-6)
    assert float(optax.tree.get(state, "norm")) == 5.0
    _, state = tx.update(jnp.array([0.0, 2.0]), state, value=0.0)
    assert float(state[0].measurements["norm_ema"]) == 2.25  # 0.5 * 2.5 + 0.5 * 2
    with pytest.raises(TypeError, match="MonitorState"):
        gradtx.monitor(measures).update(jnp.zeros(2), (), value=0.0)


def test_measure_with_ema_of_a_boolean_is_a_float_average():
    # optax's init keeps a boolean measurement's average as a boolean (its update then makes it
    # a float); gradtx averages it as float32 from the start, with the same values after step 1.
    def clipped(u):
        return _norm(u) > 1.0

    ours, ref = gradtx.measure_with_ema(clipped, 0.9), optax.measure_with_ema(clipped, 0.9)
    s_ours, s_ref = ours.init(jnp.zeros(2)), ref.init(jnp.zeros(2))
    assert s_ours[1].ema.dtype == jnp.float32 and s_ref[1].ema.dtype == jnp.bool_
    for g in ([3.0, 4.0], [0.1, 0.1], [2.0, 0.0]):
        u_ours, s_ours = ours.update(jnp.array(g), s_ours)
        u_ref, s_ref = ref.update(jnp.array(g), s_ref)
        assert_same((u_ours, s_ours), (u_ref, s_ref), f"g={g}")


def test_snapshot_records_the_params_at_init_and_the_updates_after():
    tx = gradtx.snapshot("sum", lambda u: jnp.sum(u))
    state = tx.init(jnp.array([1.0, 2.0]))
    assert float(state.measurement["sum"]) == 3.0
    updates, state = tx.update(jnp.array([5.0, 6.0]), state)
    assert float(state.measurement["sum"]) == 11.0 and updates.tolist() == [5.0, 6.0]


# ----------------------------------------------------------------------------------------------
# freeze, selective_transform, partition
# ----------------------------------------------------------------------------------------------


def test_selective_transform_keeps_no_state_for_frozen_leaves():
    params = {"a": jnp.ones(3), "b": jnp.ones(2)}
    tx = gradtx.selective_transform(gradtx.adam(0.1), freeze_mask={"a": True, "b": False})
    state = tx.init(params)
    mu = state.inner_states["train"].inner_state[0].mu
    assert isinstance(mu["a"], gradtx.MaskedNode) and mu["b"].shape == (2,)
    updates, _ = tx.update(params, state, params)
    assert updates["a"].tolist() == [0.0] * 3 and np.all(np.asarray(updates["b"]) < 0)
    frozen = gradtx.freeze(True)
    updates, state = frozen.update(params, frozen.init(params))
    assert all(float(jnp.max(jnp.abs(x))) == 0.0 for x in jax.tree.leaves(updates))
    assert state == gradtx.MaskedState(inner_state=gradtx.EmptyState())
    assert gradtx.partition is gradtx.multi_transform


# ----------------------------------------------------------------------------------------------
# tree_map_params, with_extra_args_support, protocol types
# ----------------------------------------------------------------------------------------------


def _adam_family(m):
    return m.chain(m.masked(m.scale_by_adam(), lambda p: jax.tree.map(lambda x: x.ndim > 1, p)),
                   m.partition({"vec": m.sgd(0.1, momentum=0.9), "other": m.identity()},
                               lambda p: jax.tree.map(lambda x: "vec" if x.ndim == 1 else "other", p)))


@pytest.mark.parametrize("lib", [gradtx, optax], ids=["gradtx_state", "optax_state"])
def test_tree_map_params_matches_optax(lib):
    tx = _adam_family(lib)
    params = tree(4)
    state = tx.init(params)
    specs = jax.tree.map(lambda x: f"spec{x.ndim}", params)

    def is_masked(x):
        return isinstance(x, (gradtx.MaskedNode, optax.MaskedNode))

    def f(x, spec):
        return "masked" if is_masked(x) else f"{spec}:{x.dtype}"

    ours = gradtx.tree_map_params(tx, f, state, specs, transform_non_params=lambda _: "other", is_leaf=is_masked)
    ref = optax.tree_map_params(tx, f, state, specs, transform_non_params=lambda _: "other", is_leaf=is_masked)
    assert str(ours) == str(ref)
    assert {"other", "masked", "spec2:float32", "spec1:float32"} <= set(jax.tree.leaves(ours))
    # an init function works as well as a transformation
    shifted = gradtx.tree_map_params(tx.init, lambda x: x + 1, state)
    assert_same(shifted, optax.tree_map_params(tx.init, lambda x: x + 1, state), "shifted")


def test_tree_map_params_without_optax_placeholder(monkeypatch):
    # without optax imported, gradtx uses its own placeholder, which gradtx's masked knows too
    import sys

    monkeypatch.delitem(sys.modules, "optax.tree_utils._state_utils")
    tx = _adam_family(gradtx)
    state = tx.init(tree(4))
    doubled = gradtx.tree_map_params(tx, lambda x: 2 * x + 1, state)
    mu = doubled[0].inner_state.mu
    assert mu["a"]["w0"].shape == (3, 4) and isinstance(mu["a"]["w1"], gradtx.MaskedNode)
    assert all(float(jnp.min(x)) == 1.0 for x in jax.tree.leaves(mu))
    assert int(doubled[0].inner_state.count) == 0


def test_with_extra_args_support():
    tx = gradtx.adam(1e-2)
    assert gradtx.with_extra_args_support(tx) is tx
    plain = optax.GradientTransformation(optax.init_empty_state, lambda u, s, p=None: (u, s))
    wrapped = gradtx.with_extra_args_support(plain)
    assert wrapped is not plain and repr(wrapped).startswith("with_extra_args_support(")
    u, s = wrapped.update(jnp.ones(2), wrapped.init(jnp.ones(2)), None, value=1.0, anything=2)
    assert u.tolist() == [1.0, 1.0] and s == optax.EmptyState()
    with_kwargs = optax.GradientTransformation(optax.init_empty_state, lambda u, s, p=None, **kw: (u, s))
    assert gradtx.with_extra_args_support(with_kwargs) is with_kwargs
    assert gradtx.init_empty_state({"w": 1.0}) == gradtx.EmptyState()


def test_protocol_types_are_exported():
    for name in ("TransformInitFn", "TransformUpdateFn", "TransformUpdateExtraArgsFn", "StatefulSchedule",
                 "ConditionFn", "MaskOrFn", "ApplyEvery", "LookaheadState", "LookaheadParams", "MonitorState",
                 "SnapshotState", "ConditionallyMaskState", "ConditionallyTransformState"):
        assert hasattr(gradtx, name) and name in gradtx.__all__, name
    for name in ("AccumulationType", "Accumulator", "microbatch", "micro_grad", "micro_vmap", "reshape_batch_axis"):
        assert name in mb.__all__ and hasattr(optax.microbatching, name), name
    assert gradtx.microbatch is mb.microbatch
    # the same state field names and order as optax's
    for name in ("ApplyEvery", "LookaheadState", "LookaheadParams", "MonitorState", "SnapshotState",
                 "ConditionallyMaskState", "ConditionallyTransformState"):
        assert getattr(gradtx, name)._fields == getattr(optax, name)._fields, name
    assert [t.name for t in mb.AccumulationType] == [t.name for t in optax.microbatching.AccumulationType]


# ----------------------------------------------------------------------------------------------
# microbatching
# ----------------------------------------------------------------------------------------------

_KEY = jax.random.key(7)
_X = jax.random.normal(_KEY, (12, 3), jnp.float32)
_Y = jax.random.normal(jax.random.key(8), (12,), jnp.float32)


def _loss(w, x, y):
    return 0.5 * jnp.mean((x @ w - y) ** 2)


def _both(build, *args, **kwargs):
    """The jitted results of `build(lib)` on both libraries, compared bit for bit."""
    ours = jax.jit(build(mb))(*args, **kwargs)
    ref = jax.jit(build(optax.microbatching))(*args, **kwargs)
    assert_same(ours, ref, "result")
    return ours


@pytest.mark.parametrize("kind", ["SUM", "MEAN", "RUNNING_MEAN", "CONCAT"])
def test_microbatch_matches_optax(kind):
    def build(lib):
        acc = getattr(lib.AccumulationType, kind)
        fun = lambda x, y, scale: (x * scale + y[:, None], jnp.sum(x, axis=0))  # noqa: E731
        return lib.microbatch(fun, argnums=(0, 1), microbatch_size=3, accumulator=(acc, lib.AccumulationType.SUM))

    out = _both(build, _X, _Y, 2.0)
    if kind == "CONCAT":  # the rows come back in batch order
        np.testing.assert_array_equal(np.asarray(out[0]), np.asarray(_X * 2.0 + _Y[:, None]))
    np.testing.assert_allclose(np.asarray(out[1]), np.asarray(jnp.sum(_X, axis=0)), rtol=1e-5)


def test_microbatch_argnames_in_axes_and_early_stop_match_optax():
    def build(lib):
        fun = lambda w, *, x: jnp.sum(x * w, axis=1)  # noqa: E731
        return lib.microbatch(fun, argnums=(), microbatch_size=2, argnames="x", in_axes=1,
                              accumulator=lib.AccumulationType.RUNNING_MEAN, num_real_microbatches=4)

    _both(build, jnp.ones((3, 1)), x=_X.T)


def test_micro_vmap_and_micro_grad_match_optax():
    _both(lambda lib: lib.micro_vmap(lambda x, c: jnp.tanh(x) * c, in_axes=(0, None), microbatch_size=4),
          _X, 3.0)
    _both(lambda lib: lib.micro_vmap(lambda x: x ** 2, microbatch_size=6, accumulator=lib.AccumulationType.MEAN), _X)

    def build(lib):
        def clip(g):
            return g / jnp.maximum(1.0, jnp.linalg.norm(g))

        return lib.micro_grad(_loss, batch_argnums=(1, 2), microbatch_size=4, accumulator=lib.AccumulationType.MEAN,
                              transform_fn=lambda g: (clip(g), g * g), metrics_fn=jnp.linalg.norm)

    (_, squares), aux = _both(build, jnp.ones(3), _X, _Y)
    assert type(aux).__name__ == "Aux" and aux.values.shape == (12,) and aux.metrics.shape == (12,)
    full = jax.vmap(jax.grad(_loss), in_axes=(None, 0, 0))(jnp.ones(3), _X[:, None], _Y[:, None])
    np.testing.assert_allclose(np.asarray(squares), np.asarray(jnp.mean(full**2, axis=0)), rtol=1e-5)

    def build_aux(lib):
        return lib.micro_grad(lambda w, x: (jnp.sum(x @ w), x[0, 0]), has_aux=True, keep_batch_dim=True,
                              microbatch_size=3)

    _both(build_aux, jnp.ones(3), _X)


def test_microbatching_by_hand_and_errors():
    assert mb.reshape_batch_axis(jnp.arange(6), 2).tolist() == [[0, 3], [1, 4], [2, 5]]
    fun = lambda x: x  # noqa: E731
    assert mb.microbatch(fun, 0, None) is fun
    total = mb.microbatch(lambda x: jnp.sum(x), argnums=0, microbatch_size=2)(jnp.arange(8.0))
    assert float(total) == 28.0
    biggest = mb.Accumulator(
        init=lambda s: jnp.full(s.shape, -jnp.inf, s.dtype),
        update=lambda c, v, i: jnp.maximum(c, v),
        finalize=lambda c: c,
        aggregate=functools.partial(jnp.max, axis=0),
    )
    assert float(mb.microbatch(jnp.max, 0, 3, biggest)(jnp.array([1.0, 9.0, 2.0, 4.0, 0.0, 3.0]))) == 9.0
    with pytest.raises(ValueError, match="multiple of microbatch_size"):
        mb.microbatch(jnp.sum, 0, 4)(jnp.ones(6))
    with pytest.raises(ValueError, match="equal batch sizes"):
        mb.microbatch(lambda a, b: a + b, (0, 1), 2)(jnp.ones(4), jnp.ones(6))
    with pytest.raises(ValueError, match="floating point"):
        mb.microbatch(jnp.sum, 0, 2, mb.AccumulationType.MEAN)(jnp.arange(4))
    with pytest.raises(NotImplementedError, match="out_axes"):
        mb.micro_vmap(jnp.sin, out_axes=1)


def test_microbatching_keeps_an_explicitly_sharded_batch_sharded():
    # On jax >= 0.7 with explicit mesh axes, the reshapes name their output sharding: microbatch i
    # holds rows i, i + n, ... so each microbatch stays spread over the devices, and CONCAT
    # returns the batch in order with its sharding. (optax 0.2.8 compares jax versions as
    # strings, '0.10.2' < '0.7.0', so on this jax it takes the pre-0.7 path and its reshape
    # raises a ShardingTypeError; gradtx has no version test.)
    from jax.sharding import AxisType, NamedSharding
    from jax.sharding import PartitionSpec as P

    mesh = jax.make_mesh((4,), ("data",), axis_types=(AxisType.Explicit,))
    x = jnp.arange(48.0).reshape(16, 3)
    with jax.set_mesh(mesh):
        xs = jax.device_put(x, NamedSharding(mesh, P("data")))
        split = jax.jit(lambda a: mb.reshape_batch_axis(a, 4))(xs)
        assert split.shape == (4, 4, 3) and split.sharding.spec == P(None, "data", None)
        np.testing.assert_array_equal(np.asarray(split[1, :, 0]), [3.0, 15.0, 27.0, 39.0])
        both = mb.microbatch(lambda a: (a * 2, jnp.sum(a, axis=0)), 0, 4,
                             accumulator=(mb.AccumulationType.CONCAT, mb.AccumulationType.SUM))
        doubled, total = jax.jit(both)(xs)
        assert doubled.sharding.spec == P("data", None)
        np.testing.assert_array_equal(np.asarray(doubled), np.asarray(x * 2))
        np.testing.assert_array_equal(np.asarray(total), np.asarray(jnp.sum(x, axis=0)))
        with pytest.raises(ValueError, match="split over 4 devices"):
            mb.reshape_batch_axis(xs, 2)
