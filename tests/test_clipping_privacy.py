"""Clipping, differential privacy and gradient surgery: what the bit-for-bit table cannot show.

* The per-example functions and transformations (`per_example_global_norm_clip`,
  `per_example_layer_norm_clip`, `differentially_private_aggregate`, `dpsgd`) compared with
  optax bit for bit, jitted, on hand-made per-example batches (zero examples, `jnp.inf` and 0
  bounds, integer inputs, the clip counts);
* known answers computed by hand (block RMS, AGC, unit-wise norms of every rank, centralization,
  non-negativity, gradient scaling);
* dpsgd's contract on per-example gradients (jit == eager, one compilation, bfloat16,
  inject_hyperparams, convergence), which the shared contract table cannot drive;
* the state aliases, the `gradtx.contrib` namespace, validation and error messages.
"""

import warnings

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _bitwise import assert_same
from _rows_clipping_privacy import INVALID

import gradtx

# ----------------------------------------------------------------------------------------------
# per-example batches
# ----------------------------------------------------------------------------------------------


def _batch(seed=0, b=6, zero_example=True):
    """Per-example gradients: a tree of 3 leaves, batch `b` first; example 0 is all zeros."""
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    tree = {
        "w": 2.0 * jax.random.normal(k1, (b, 3, 4)),
        "b": jax.random.normal(k2, (b, 4)),
        "s": [0.5 * jax.random.normal(k3, (b,))],
    }
    if zero_example:
        tree = jax.tree.map(lambda x: x.at[0].set(0.0), tree)
    return tree


def _both(fn_ours, fn_ref, *args):
    return jax.jit(fn_ours)(*args), jax.jit(fn_ref)(*args)


@pytest.mark.parametrize("clip", [0.0, 0.5, 3.0, 1e6, float("inf")])
def test_per_example_global_norm_clip_bit_identical(clip):
    grads = _batch()
    ours, ref = _both(
        lambda g: gradtx.per_example_global_norm_clip(g, clip),
        lambda g: optax.per_example_global_norm_clip(g, clip),
        grads,
    )
    assert_same(ours, ref, f"clip={clip}")


def test_per_example_global_norm_clip_known_answer():
    # the optax documentation's batch: norms 0, 5, 5, 5
    grads = [jnp.array([[0, 0, 0], [0, 3, 4], [4, 0, 3], [3, 4, 0]])]
    summed, n = gradtx.per_example_global_norm_clip(grads, 1.25)
    np.testing.assert_allclose(summed[0], [1.75, 1.75, 1.75])
    assert int(n) == 3 and n.dtype == jnp.int32
    summed, n = gradtx.per_example_global_norm_clip(grads, jnp.inf)
    np.testing.assert_array_equal(summed[0], [7.0, 7.0, 7.0])
    assert int(n) == 0
    summed, n = gradtx.per_example_global_norm_clip(grads, 0.0)  # 0/0 for the zero example: kept, not NaN
    np.testing.assert_array_equal(summed[0], [0.0, 0.0, 0.0])
    assert int(n) == 3
    # the same ints, against optax
    assert_same(gradtx.per_example_global_norm_clip(grads, 1.25), optax.per_example_global_norm_clip(grads, 1.25),
                "int grads")


@pytest.mark.parametrize("uniform", [True, False])
@pytest.mark.parametrize("clip", [0.0, 0.7, 4.0, float("inf")])
def test_per_example_layer_norm_clip_bit_identical(uniform, clip):
    grads = _batch(seed=1)
    ours, ref = _both(
        lambda g: gradtx.per_example_layer_norm_clip(g, clip, uniform=uniform),
        lambda g: optax.per_example_layer_norm_clip(g, clip, uniform=uniform),
        grads,
    )
    assert_same(ours, ref, f"clip={clip} uniform={uniform}")


def test_per_example_layer_norm_clip_known_answer():
    # two layers, one example each: uniform bounds 2/sqrt(2) each; non-uniform sqrt(D_i/D) shares
    grads = {"a": jnp.array([[3.0, 4.0, 0.0]]), "b": jnp.array([[0.0]])}
    summed, counts = gradtx.per_example_layer_norm_clip(grads, 2.0)
    np.testing.assert_allclose(summed["a"], np.array([3.0, 4.0, 0.0]) / 5.0 * np.sqrt(2.0), rtol=1e-6)
    assert int(counts["a"]) == 1 and int(counts["b"]) == 0
    summed, counts = gradtx.per_example_layer_norm_clip(grads, 2.0, uniform=False)
    np.testing.assert_allclose(summed["a"], np.array([3.0, 4.0, 0.0]) / 5.0 * 2.0 * np.sqrt(3 / 4), rtol=1e-6)
    # a single leaf: the global clip
    one = [jnp.array([[3.0, 4.0], [0.3, 0.4]])]
    assert_same(gradtx.per_example_layer_norm_clip(one, 1.0)[0], gradtx.per_example_global_norm_clip(one, 1.0)[0],
                "one leaf")


@pytest.mark.parametrize("fn", [gradtx.per_example_global_norm_clip, gradtx.per_example_layer_norm_clip])
def test_per_example_functions_need_a_common_batch_axis(fn):
    with pytest.raises(ValueError, match=rf"{fn.__name__}: .*same batch size.*\[.b.\]: \(5,\), \[.w.\]: \(4, 3\)"):
        fn({"w": jnp.ones((4, 3)), "b": jnp.ones(5)}, 1.0)
    with pytest.raises(ValueError, match="leading axis"):
        fn([jnp.ones(())], 1.0)


def test_per_example_functions_keep_the_dtype():
    grads = jax.tree.map(lambda x: x.astype(jnp.bfloat16), _batch())
    summed, _ = gradtx.per_example_global_norm_clip(grads, 1.0)
    assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(summed))
    summed, _ = gradtx.per_example_layer_norm_clip(grads, 1.0)
    assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(summed))


# ----------------------------------------------------------------------------------------------
# differentially_private_aggregate and dpsgd against optax, on per-example gradients
# ----------------------------------------------------------------------------------------------


def _trajectory(tx, params, steps=6):
    """Jitted steps on per-example gradients that change with the params."""

    @jax.jit
    def step(params, state, i):
        grads = jax.tree.map(lambda g, p: g * (1.0 + 0.1 * i) + p[None], _batch(seed=2), params)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state, updates

    state = tx.init(params)
    history = [state]
    for i in range(steps):
        params, state, updates = step(params, state, jnp.float32(i))
        history.append((params, state, updates))
    return history


_PARAMS = {"w": jnp.zeros((3, 4)), "b": jnp.ones(4), "s": [jnp.zeros(())]}


def _ref_dp(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return optax.contrib.differentially_private_aggregate(*args, **kwargs)


def _ref_dpsgd(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return optax.contrib.dpsgd(*args, **kwargs)


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((1.0, 1.1), {"key": 0}),
        ((0.5, 0.0), {"key": jax.random.key(42)}),
        ((3.0, 0.3), {"seed": 7}),
    ],
    ids=["int_key", "typed_key_no_noise", "deprecated_seed"],
)
def test_differentially_private_aggregate_bit_identical(args, kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ours = gradtx.differentially_private_aggregate(*args, **kwargs)
    ref = _ref_dp(*args, **kwargs)
    assert_same(_trajectory(ours, _PARAMS), _trajectory(ref, _PARAMS), "trajectory")


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((0.1, 1.0, 1.1, 0), {}),
        ((0.05, 2.0, 0.5, 3), {"momentum": 0.9}),
        ((0.05, 2.0, 0.5, 3), {"momentum": 0.8, "nesterov": True}),
    ],
    ids=["plain", "momentum", "nesterov"],
)
def test_dpsgd_bit_identical(args, kwargs):
    ours, ref = gradtx.dpsgd(*args, **kwargs), _ref_dpsgd(*args, **kwargs)
    assert_same(_trajectory(ours, _PARAMS), _trajectory(ref, _PARAMS), "trajectory")


def test_differentially_private_aggregate_known_answer_and_noise():
    grads = {"w": jnp.array([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0], [6.0, 8.0]])}  # norms 5, 0.5, 0, 10
    tx = gradtx.differentially_private_aggregate(1.0, 0.0, key=0)
    updates, _ = tx.update(grads, tx.init(None))
    # (0.6, 0.8) + (0.3, 0.4) + 0 + (0.6, 0.8), averaged over 4 examples
    np.testing.assert_allclose(updates["w"], [0.375, 0.5], rtol=1e-6)
    # with noise: the noise's standard deviation is l2_norm_clip * noise_multiplier / B
    big = {"w": jnp.zeros((2, 20000))}
    tx = gradtx.differentially_private_aggregate(2.0, 1.5, key=1)
    updates, state2 = tx.update(big, tx.init(None))
    assert abs(float(jnp.std(updates["w"])) - 2.0 * 1.5 / 2) < 0.03
    assert not np.array_equal(jax.random.key_data(state2.rng_key), jax.random.key_data(jax.random.key(1)))


def test_key_arguments_warn_as_optax():
    with pytest.warns(UserWarning, match="no key given"):
        gradtx.differentially_private_aggregate(1.0, 1.0)
    with pytest.warns(DeprecationWarning, match="seed is deprecated"):
        gradtx.differentially_private_aggregate(1.0, 1.0, seed=3)
    with pytest.raises(ValueError, match="only one of key and seed"):
        gradtx.differentially_private_aggregate(1.0, 1.0, key=1, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gradtx.dpsgd(0.1, 1.0, 1.0, seed=0)  # dpsgd's seed is not deprecated: no warning


def test_contrib_namespace_holds_the_same_objects():
    # every contrib name is optax's; the privacy names and reduce_on_plateau are also top-level
    # gradtx names, and the same objects there
    for name in gradtx.contrib.__all__:
        assert hasattr(optax.contrib, name), name
    shared = ["dpsgd", "differentially_private_aggregate", "DifferentiallyPrivateAggregateState",
              "reduce_on_plateau", "ReduceLROnPlateauState"]
    for name in shared:
        assert getattr(gradtx.contrib, name) is getattr(gradtx, name), name


def test_dpsgd_prints_as_its_call_and_chains():
    tx = gradtx.dpsgd(0.1, 1.0, 1.1, seed=0, momentum=0.9)
    assert repr(tx) == (
        "dpsgd(learning_rate=0.1, l2_norm_clip=1.0, noise_multiplier=1.1, seed=0, momentum=0.9, nesterov=False)"
    )
    state = tx.init(_PARAMS)
    assert [type(s).__name__ for s in state] == ["DifferentiallyPrivateAggregateState", "TraceState", "EmptyState"]
    # a gradtx member after the aggregate checks its own state against the aggregated updates
    updates, _ = jax.jit(tx.update)(_batch(), state, _PARAMS)
    assert jax.tree.map(jnp.shape, updates) == jax.tree.map(jnp.shape, _PARAMS)


# ----------------------------------------------------------------------------------------------
# dpsgd's contract, on per-example gradients
# ----------------------------------------------------------------------------------------------

_X = jax.random.normal(jax.random.key(5), (32, 3))
_W_TRUE = jnp.array([1.0, -2.0, 0.5])
_Y = _X @ _W_TRUE


def _example_loss(w, x, y):
    return 0.5 * (x @ w - y) ** 2


def _dpsgd_steps(tx, w, n, jit):
    def step(w, state):
        grads = jax.vmap(jax.grad(_example_loss), in_axes=(None, 0, 0))(w, _X.astype(w.dtype), _Y.astype(w.dtype))
        updates, state = tx.update(grads, state, w)
        return gradtx.apply_updates(w, updates), state, updates

    step = jax.jit(step) if jit else step
    state = tx.init(w)
    out = []
    for _ in range(n):
        w, state, updates = step(w, state)
        out.append((w, updates))
    return out, step


def test_dpsgd_converges_without_noise_and_stays_near_with_it():
    loss = lambda w: float(jnp.mean(jax.vmap(_example_loss, in_axes=(None, 0, 0))(w, _X, _Y)))  # noqa: E731
    start = loss(jnp.zeros(3))
    out, _ = _dpsgd_steps(gradtx.dpsgd(0.5, 10.0, 0.0, seed=0, momentum=0.5), jnp.zeros(3), 200, jit=True)
    assert loss(out[-1][0]) <= 1e-3 * start
    out, _ = _dpsgd_steps(gradtx.dpsgd(0.2, 1.0, 0.5, seed=0), jnp.zeros(3), 300, jit=True)
    assert loss(out[-1][0]) <= 0.1 * start


def test_dpsgd_jit_equals_eager_and_compiles_once():
    tx = gradtx.dpsgd(0.1, 1.0, 0.7, seed=1, momentum=0.9)
    eager, _ = _dpsgd_steps(tx, jnp.zeros(3), 3, jit=False)
    jitted, step = _dpsgd_steps(tx, jnp.zeros(3), 3, jit=True)
    for a, b in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert step._cache_size() == 1


def test_dpsgd_keeps_bfloat16():
    out, _ = _dpsgd_steps(gradtx.dpsgd(0.1, 1.0, 0.7, seed=1, momentum=0.9), jnp.zeros(3, jnp.bfloat16), 2, jit=True)
    for w, updates in out:
        assert w.dtype == jnp.bfloat16 and updates.dtype == jnp.bfloat16
        assert np.all(np.isfinite(np.asarray(w, np.float32)))


@pytest.mark.parametrize("static", [(), ("seed",)])
def test_dpsgd_under_inject_hyperparams(static):
    kwargs = dict(learning_rate=0.1, l2_norm_clip=1.0, noise_multiplier=0.7, seed=3, momentum=0.9)
    injected = gradtx.inject_hyperparams(gradtx.dpsgd, static_args=static)(**kwargs)
    assert {"learning_rate", "l2_norm_clip", "noise_multiplier"} <= set(injected.init(jnp.zeros(3)).hyperparams)
    plain, _ = _dpsgd_steps(gradtx.dpsgd(**kwargs), jnp.zeros(3), 3, jit=True)
    inj, _ = _dpsgd_steps(injected, jnp.zeros(3), 3, jit=True)
    for (a, _), (b, _) in zip(plain, inj, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------------------------
# known answers of the ordinary transformations
# ----------------------------------------------------------------------------------------------


def test_clip_by_block_rms_known_answer():
    tx = gradtx.clip_by_block_rms(1.0)
    grads = {"big": jnp.array([3.0, -3.0, 3.0, -3.0]), "small": jnp.array([0.5, -0.5])}
    out, state = tx.update(grads, tx.init(grads))
    np.testing.assert_allclose(out["big"], [1.0, -1.0, 1.0, -1.0])  # rms 3 -> 1
    np.testing.assert_array_equal(out["small"], grads["small"])  # rms 0.5 < 1: unchanged
    assert state == gradtx.EmptyState()
    bf16, _ = tx.update(jax.tree.map(lambda x: x.astype(jnp.bfloat16), grads), state)
    assert bf16["big"].dtype == jnp.bfloat16


def test_adaptive_grad_clip_known_answer():
    tx = gradtx.adaptive_grad_clip(0.1, eps=1e-3)
    params = {"k": jnp.array([[3.0, 0.0], [4.0, 0.0]]), "b": jnp.zeros(2)}
    grads = {"k": jnp.array([[6.0, 1e-5], [8.0, 0.0]]), "b": jnp.array([1.0, 0.0])}
    out, _ = tx.update(grads, tx.init(params), params)
    # column 0: |g| = 10 >= 0.1 * 5 -> scaled to norm 0.5; column 1: param norm 0 -> eps: 1e-5 < 1e-4 kept
    np.testing.assert_allclose(out["k"], [[0.3, 1e-5], [0.4, 0.0]], rtol=1e-6)
    # zero bias: bound 0.1 * eps = 1e-4
    np.testing.assert_allclose(out["b"], [1e-4, 0.0], rtol=1e-5)
    with pytest.raises(ValueError, match=r"adaptive_grad_clip\.update: params are required"):
        tx.update(grads, tx.init(params))


@pytest.mark.parametrize(
    ("shape", "axes"),
    [((), ()), ((5,), (0,)), ((1, 5), (0, 1)), ((3, 4), (0,)), ((2, 3, 4), (0,)), ((2, 2, 3, 4), (0, 1, 2)),
     ((2, 2, 2, 3, 4), (0, 1, 2, 3))],
)
def test_unitwise_norm_reduces_the_axes_of_each_rank(shape, axes):
    x = jax.random.normal(jax.random.key(0), shape)
    expected = np.sqrt(np.sum(np.asarray(x) ** 2, axis=axes, keepdims=True)) * np.ones(shape)
    np.testing.assert_allclose(gradtx.transforms.unitwise_norm(x), expected, rtol=1e-6)
    assert_same(gradtx.transforms.unitwise_norm(x), optax.transforms.unitwise_norm(x), str(shape))


def test_unitwise_norm_axis_and_errors():
    x = jax.random.normal(jax.random.key(1), (2, 3, 2, 2, 2, 2))
    with pytest.raises(ValueError, match=r"unitwise_norm: .*rank 6.*axis="):
        gradtx.transforms.unitwise_norm(x)
    np.testing.assert_allclose(
        gradtx.transforms.unitwise_norm(x, axis=(1, 2)),
        np.sqrt(np.sum(np.asarray(x) ** 2, axis=(1, 2), keepdims=True)) * np.ones(x.shape), rtol=1e-6,
    )
    with pytest.raises(TypeError, match="axis"):
        gradtx.transforms.unitwise_norm(x, axis=[1, 2])
    with pytest.raises(ValueError, match=r"unitwise_clip: .*same shape.*\(3,\).*\(2,\)"):
        gradtx.transforms.unitwise_clip(jnp.ones(3), jnp.ones(2), jnp.ones(3))


def test_centralize_known_answer():
    tx = gradtx.centralize()
    grads = {"m": jnp.array([[1.0, 2.0, 3.0], [4.0, 6.0, 8.0]]), "v": jnp.array([1.0, 2.0]), "s": jnp.float32(3.0)}
    out, _ = tx.update(grads, tx.init(grads))
    np.testing.assert_array_equal(out["m"], [[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0]])
    assert out["v"] is grads["v"] and out["s"] is grads["s"]
    cube = jnp.arange(8.0).reshape(2, 2, 2)
    np.testing.assert_array_equal(tx.update(cube, tx.init(cube))[0], cube - jnp.array([1.5, 5.5])[:, None, None])


def test_keep_params_nonnegative_known_answer():
    tx = gradtx.keep_params_nonnegative()
    params = {"a": jnp.array([0.5, 2.0, 0.0]), "none": None}
    updates = {"a": jnp.array([-1.0, -1.0, 0.5]), "none": None}
    out, _ = tx.update(updates, tx.init(params), params)
    np.testing.assert_array_equal(out["a"], [-0.5, -1.0, 0.5])
    assert out["none"] is None
    assert np.all(np.asarray(optax.apply_updates(params["a"], out["a"])) >= 0)
    with pytest.raises(ValueError, match=r"keep_params_nonnegative\.update: params are required"):
        tx.update(updates, tx.init(params))


def test_scale_gradient_backward_pass():
    x = {"a": jnp.array([1.0, -2.0]), "b": jnp.float32(3.0)}

    def loss(x, scale):
        y = gradtx.scale_gradient(x, scale)
        return jnp.sum(y["a"] ** 2) + y["b"] ** 2

    def ref_loss(x, scale):
        y = optax.scale_gradient(x, scale)
        return jnp.sum(y["a"] ** 2) + y["b"] ** 2

    for scale in (-0.3, 0.5, 2.0):
        g = jax.grad(loss)(x, scale)
        chex.assert_trees_all_close(g, {"a": 2 * x["a"] * scale, "b": 2 * x["b"] * scale})
        assert_same(g, jax.grad(ref_loss)(x, scale), f"scale={scale}")
    assert gradtx.scale_gradient(x, 1.0) is x
    chex.assert_trees_all_equal(jax.grad(loss)(x, 0.0), jax.tree.map(jnp.zeros_like, x))
    # a traced scale (optax cannot take one: it compares it with 1.0 in Python)
    g = jax.jit(jax.grad(loss), static_argnums=())(x, jnp.float32(0.25))
    chex.assert_trees_all_close(g, jax.tree.map(lambda v: 0.5 * v, x))
    # the forward pass is the identity
    assert gradtx.scale_gradient(x, 0.3)["a"] is not None
    chex.assert_trees_all_equal(gradtx.scale_gradient(x, 0.3), x)


# ----------------------------------------------------------------------------------------------
# names, states, validation
# ----------------------------------------------------------------------------------------------


def test_state_aliases_are_optaxs():
    for name in ("ClipState", "ClipByGlobalNormState", "ScaleState", "AdaptiveGradClipState", "NonNegativeParamsState"):
        assert getattr(gradtx, name) is gradtx.EmptyState, name
        assert getattr(optax, name) is optax.EmptyState, name
    params = {"w": jnp.ones(3)}
    for make in (lambda m: m.clip(1.0), lambda m: m.clip_by_global_norm(1.0), lambda m: m.scale(0.5),
                 lambda m: m.adaptive_grad_clip(0.1), lambda m: m.keep_params_nonnegative(),
                 lambda m: m.clip_by_block_rms(1.0), lambda m: m.centralize()):
        ours, ref = make(gradtx).init(params), make(optax).init(params)
        assert type(ours).__name__ == type(ref).__name__ == "EmptyState"
        assert str(jax.tree.structure(ours)) == str(jax.tree.structure(ref))
    assert gradtx.differentially_private_aggregate(1.0, 1.0, key=0).init(params)._fields == ("rng_key",)


@pytest.mark.parametrize(("factory", "kwargs", "argument"), INVALID,
                         ids=[f"{f.__name__}-{a}" for f, _, a in INVALID])
def test_invalid_arguments_name_the_function_and_argument(factory, kwargs, argument):
    with pytest.raises((ValueError, TypeError), match=rf"{factory.__name__}: {argument}"):
        factory(**kwargs)


def test_traced_hyperparameters_pass_validation():
    @jax.jit
    def run(clip, scale):
        tx = gradtx.chain(gradtx.clip_by_block_rms(clip), gradtx.adaptive_grad_clip(scale))
        g = {"w": jnp.ones((3, 2))}
        return tx.update(g, tx.init(g), g)[0]

    chex.assert_trees_all_close(run(0.5, 0.2), {"w": jnp.full((3, 2), 0.2)})

    @jax.jit
    def clipped(c):
        return gradtx.per_example_global_norm_clip([jnp.ones((2, 4))], c)

    summed, n = clipped(1.0)
    np.testing.assert_allclose(summed[0], jnp.full(4, 1.0))
    assert int(n) == 2


@pytest.mark.skipif(len(jax.devices()) < 8, reason="needs 8 (simulated) devices")
def test_dpsgd_state_keeps_the_params_sharding():
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    mesh = Mesh(np.array(jax.devices()[:8]), ("x",))
    shardings = {"w": NamedSharding(mesh, P("x", None)), "b": NamedSharding(mesh, P("x"))}
    params = {
        "w": jax.device_put(jnp.linspace(-1.0, 1.0, 64).reshape(16, 4), shardings["w"]),
        "b": jax.device_put(jnp.ones(8), shardings["b"]),
    }
    tx = gradtx.dpsgd(0.1, 1.0, 0.5, seed=0, momentum=0.9)

    @jax.jit
    def step(params, state):
        per_example = jax.tree.map(lambda p: jnp.stack([p, -0.5 * p, 2.0 * p]), params)
        updates, state = tx.update(per_example, state, params)
        return gradtx.apply_updates(params, updates), state

    state = tx.init(params)
    for _ in range(2):
        params, state = step(params, state)
    for name, leaf in state[1].trace.items():
        assert leaf.sharding.is_equivalent_to(shardings[name], leaf.ndim), (name, leaf.sharding)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16, jnp.float32])
@pytest.mark.parametrize(
    "make",
    [lambda: gradtx.adaptive_grad_clip(0.1), lambda: gradtx.clip_by_block_rms(0.5), lambda: gradtx.centralize(),
     lambda: gradtx.keep_params_nonnegative()],
    ids=["adaptive_grad_clip", "clip_by_block_rms", "centralize", "keep_params_nonnegative"],
)
def test_updates_keep_their_dtype(make, dtype):
    params = {"k": jnp.full((3, 4), 0.5, dtype), "b": jnp.ones(4, dtype), "s": jnp.asarray(0.1, dtype)}
    grads = {"k": jnp.linspace(-3.0, 3.0, 12, dtype=dtype).reshape(3, 4), "b": jnp.full(4, -2.0, dtype),
             "s": jnp.asarray(5.0, dtype)}
    tx = make()
    out, _ = jax.jit(tx.update)(grads, tx.init(params), params)
    for name in grads:
        assert out[name].dtype == dtype, (name, out[name].dtype)
        assert np.all(np.isfinite(np.asarray(out[name], np.float32))), name
