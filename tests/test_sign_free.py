"""Sign-based and step-size-free optimizers: what the bit-for-bit table cannot show.

Known answers worked out by hand from the formulas, optax's quirks that gradtx keeps (Rprop's
one-step delay) or deliberately drops (DoG's `(1,)` update for a scalar leaf, NaN for a zero
update), the `value=` protocol of Polyak's step, a bit-for-bit Polyak trajectory whose value and
gradient come from one objective, validation messages, and signatures / state layouts equal to
optax's.
"""

import inspect
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _bitwise import STEPS, assert_same, tree

import gradtx

NAMES = [
    "rprop", "scale_by_rprop", "sign_sgd", "signum", "noisy_sgd", "polyak_sgd", "scale_by_polyak",
    "scale_by_distance_over_gradients", "normalize_by_update_norm",
]


def _floats(tree_):
    return [float(x) for x in np.ravel(np.asarray(tree_))]


# ----------------------------------------------------------------------------------------------
# signatures and state layouts
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_signature_and_defaults_are_optax(name):
    ours = inspect.signature(getattr(gradtx, name)).parameters
    theirs = inspect.signature(getattr(optax, name)).parameters
    assert list(ours) == list(theirs)
    for key, p in theirs.items():
        assert ours[key].kind == p.kind, key
        assert ours[key].default == p.default, key


def test_state_classes_have_optax_fields():
    assert gradtx.ScaleByRpropState._fields == optax.ScaleByRpropState._fields
    from optax._src.transform import ScaleByDistanceOverGradientsState

    assert gradtx.ScaleByDistanceOverGradientsState._fields == ScaleByDistanceOverGradientsState._fields


def test_repr_is_the_call():
    assert repr(gradtx.rprop(0.1)) == (
        "rprop(learning_rate=0.1, eta_minus=0.5, eta_plus=1.2, min_step_size=1e-06, max_step_size=50.0)"
    )
    assert repr(gradtx.polyak_sgd(variant="sps+")).startswith("polyak_sgd(max_learning_rate=1.0, scaling=1.0")


# ----------------------------------------------------------------------------------------------
# Rprop
# ----------------------------------------------------------------------------------------------


def test_rprop_known_answer_with_optax_delay():
    # step sizes 0.1 -> 0.1 (no history), 0.12, 0.144 (same sign), 0.072 (flip), 0.072 (after a
    # flip the comparison is neutral); each update is the step of the previous call (optax's delay)
    tx = gradtx.scale_by_rprop(0.1, eta_minus=0.5, eta_plus=1.2)
    state = tx.init(jnp.zeros(1))
    updates, steps = [], []
    for g in [1.0, 1.0, 1.0, -1.0, 1.0, 1.0]:
        u, state = tx.update(jnp.array([g]), state)
        updates.append(float(u[0]))
        steps.append(float(state.step_sizes[0]))
    np.testing.assert_allclose(updates, [0.0, 0.1, 0.12, 0.0, 0.0, 0.072], rtol=1e-6)
    np.testing.assert_allclose(steps, [0.1, 0.12, 0.144, 0.072, 0.072, 0.0864], rtol=1e-6)
    ref = optax.scale_by_rprop(0.1, eta_minus=0.5, eta_plus=1.2)
    ref_state = ref.init(jnp.zeros(1))
    for g, expected in zip([1.0, 1.0, 1.0, -1.0, 1.0, 1.0], updates, strict=True):
        u, ref_state = ref.update(jnp.array([g]), ref_state)
        assert float(u[0]) == expected


def test_rprop_step_sizes_are_clipped():
    tx = gradtx.scale_by_rprop(1.0, eta_minus=0.1, eta_plus=3.0, min_step_size=0.5, max_step_size=2.0)
    state = tx.init(jnp.zeros(2))
    for g in ([1.0, 1.0], [1.0, -1.0], [1.0, 1.0]):
        _, state = tx.update(jnp.array(g), state)
    # first coordinate: 1 -> 3 clipped to 2 -> 2; second: 1 -> 0.1 clipped to 0.5 -> 0.5 (neutral)
    np.testing.assert_allclose(np.asarray(state.step_sizes), [2.0, 0.5])
    np.testing.assert_allclose(np.asarray(state.prev_updates), [2.0, 0.5])


def test_rprop_alias_descends():
    tx = gradtx.rprop(0.1)
    params = jnp.array([1.0, -1.0])
    state = tx.init(params)
    for _ in range(3):
        updates, state = tx.update(params, state)  # gradient of |p|^2 / 2
        params = gradtx.apply_updates(params, updates)
    # the first update is 0 (delay), then -0.1 * sign, then -0.12 * sign
    np.testing.assert_allclose(np.asarray(params), [0.78, -0.78], rtol=1e-6)


@pytest.mark.parametrize("params", [jnp.zeros(2, jnp.complex64), jnp.zeros(2, jnp.int32)])
def test_rprop_refuses_complex_and_integer_params(params):
    with pytest.raises(TypeError, match=r"scale_by_rprop.init: params"):
        gradtx.rprop(0.1).init(params)


def test_rprop_messages():
    with pytest.raises(ValueError, match=r"max_step_size must be >= min_step_size, got max_step_size=0.5"):
        gradtx.rprop(0.1, min_step_size=1.0, max_step_size=0.5)
    with pytest.raises(TypeError, match=r"rprop: learning_rate is Rprop's initial step size"):
        gradtx.rprop(gradtx.constant_schedule(0.1))


def test_rprop_keeps_low_precision_state():
    tx = gradtx.scale_by_rprop(0.1)
    state = tx.init(jnp.zeros(3, jnp.bfloat16))
    u, state = jax.jit(tx.update)(jnp.ones(3, jnp.float32), state)
    assert u.dtype == jnp.float32
    assert state.step_sizes.dtype == state.prev_updates.dtype == jnp.bfloat16


# ----------------------------------------------------------------------------------------------
# sign-based SGD and noisy SGD
# ----------------------------------------------------------------------------------------------


def test_sign_sgd_known_answer():
    tx = gradtx.sign_sgd(0.1)
    u, _ = tx.update(jnp.array([3.0, -0.2, 0.0]), tx.init(jnp.zeros(3)))
    assert _floats(u) == [np.float32(-0.1), np.float32(0.1), 0.0]


def test_signum_follows_the_sign_of_the_average():
    # m1 = 0.1, m2 = 0.09 - 0.05 = 0.04 (> 0 although g2 < 0), m3 = 0.036 - 0.1 = -0.064
    tx = gradtx.signum(0.5, beta=0.9)
    state = tx.init(jnp.zeros(1))
    out = []
    for g in (1.0, -0.5, -1.0):
        u, state = tx.update(jnp.array([g]), state)
        out.append(float(u[0]))
    assert out == [-0.5, -0.5, 0.5]
    np.testing.assert_allclose(float(state[0].ema[0]), -0.064, rtol=1e-6)


def test_noisy_sgd_is_add_noise_then_learning_rate():
    key = jax.random.key(3)
    tx = gradtx.noisy_sgd(0.1, eta=0.2, gamma=0.5, key=key)
    ref = gradtx.chain(gradtx.add_noise(0.2, 0.5, key), gradtx.scale_by_learning_rate(0.1))
    params = {"a": jnp.ones((2, 3)), "b": jnp.zeros(4)}
    s, r = tx.init(params), ref.init(params)
    for _ in range(3):
        u, s = tx.update(params, s)
        v, r = ref.update(params, r)
        assert_same(u, v, "updates")
    # the noise: u = -lr (g + sigma xi) with sigma^2 = eta / t^gamma
    sigma = np.sqrt(0.2 / 3**0.5)
    xi = (-np.asarray(u["b"]) / 0.1) / sigma
    assert np.all(np.abs(xi) < 6) and np.any(xi != 0)


def test_noisy_sgd_key_warnings_point_at_the_caller():
    with pytest.warns(UserWarning, match="noisy_sgd: no key given") as record:
        tx = gradtx.noisy_sgd(0.1)
    assert record[0].filename == __file__
    with pytest.warns(DeprecationWarning, match="noisy_sgd: seed is deprecated") as record:
        tx_seed = gradtx.noisy_sgd(0.1, seed=0)
    assert record[0].filename == __file__
    g = jnp.ones(3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tx_key = gradtx.noisy_sgd(0.1, key=0)
    outs = [t.update(g, t.init(g))[0] for t in (tx, tx_seed, tx_key)]
    assert_same(outs[0], outs[2], "key None vs key 0")
    assert_same(outs[1], outs[2], "seed 0 vs key 0")


# ----------------------------------------------------------------------------------------------
# Polyak step size
# ----------------------------------------------------------------------------------------------


def test_scale_by_polyak_known_answers():
    tx = gradtx.scale_by_polyak()
    g = {"a": jnp.array([2.0, 0.0]), "b": jnp.zeros(())}
    state = tx.init(g)
    u, _ = tx.update(g, state, value=1.0)  # gap 1 / |g|^2 = 4
    assert _floats(u["a"]) == [0.5, 0.0]
    u, _ = tx.update(g, state, value=100.0)  # 25 capped at max_learning_rate = 1
    assert _floats(u["a"]) == [2.0, 0.0]
    u, _ = tx.update(jax.tree.map(jnp.zeros_like, g), state, value=3.0)  # zero gradient: step 0
    assert _floats(u["a"]) == [0.0, 0.0]
    u, _ = tx.update(g, state, value=-1.0)  # sps: a negative gap reverses the step
    assert _floats(u["a"]) == [-0.5, 0.0]
    plus = gradtx.scale_by_polyak(f_min=2.0, eps=4.0, variant="sps+")
    u, _ = plus.update(g, state, value=1.0)  # sps+: the gap is clipped at 0
    assert _floats(u["a"]) == [0.0, 0.0]
    u, _ = plus.update(g, state, value=6.0)  # gap 4 / (4 + eps 4)
    assert _floats(u["a"]) == [1.0, 0.0]


def test_polyak_sgd_docstring_example():
    f = lambda x: jnp.sum(x**2)  # noqa: E731
    tx = gradtx.polyak_sgd()
    params = jnp.array([1.0, 2.0, 3.0])
    state = tx.init(params)
    values = []
    for _ in range(3):
        value, grad = jax.value_and_grad(f)(params)
        updates, state = tx.update(grad, state, params, value=value)
        params = gradtx.apply_updates(params, updates)
        values.append(float(f(params)))
    assert values == [3.5, 0.875, 0.21875]


def test_polyak_needs_a_scalar_value():
    tx = gradtx.polyak_sgd()
    g = jnp.ones(3)
    state = tx.init(g)
    with pytest.raises(ValueError, match=r"scale_by_polyak.update: the objective's value .* keyword argument value"):
        tx.update(g, state, g)
    with pytest.raises(TypeError, match=r"value must be a scalar"):
        tx.update(g, state, g, value=jnp.ones(2))
    with pytest.raises(TypeError, match=r"value must be a real number"):
        tx.update(g, state, g, value=1j)


def test_value_reaches_polyak_inside_optax_and_gradtx_chains():
    g = jnp.array([2.0, 0.0])
    for tx in (
        optax.chain(gradtx.scale_by_polyak(), optax.scale(-1.0)),
        gradtx.chain(optax.scale(-1.0), gradtx.scale_by_polyak()),
        gradtx.chain(gradtx.clip_by_global_norm(10.0), gradtx.scale_by_polyak(), optax.scale(-1.0)),
    ):
        u, _ = tx.update(g, tx.init(g), value=1.0)
        assert _floats(u) == [-0.5, 0.0]


def _objective(params):
    return 4.0 + sum(jnp.sum(x * x * (0.25 * x * x - 0.5)) for x in jax.tree.leaves(params))


def _value_trajectory(lib, tx):
    trees = (tree(4), tree(14, seed=1))
    states = tuple(tx.init(p) for p in trees)

    @jax.jit
    def step(carry):
        out = []
        for params, state in carry:
            value, grads = jax.value_and_grad(_objective)(params)
            updates, state = tx.update(grads, state, params, value=value)
            out.append((lib.apply_updates(params, updates), state, updates))
        return tuple(out)

    carry, history = tuple(zip(trees, states, strict=True)), []
    for _ in range(STEPS):
        result = step(carry)
        carry = tuple((p, s) for p, s, _ in result)
        history.append(result)
    return states, jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *history)


@pytest.mark.parametrize(
    "build",
    [
        lambda m: m.polyak_sgd(max_learning_rate=0.04),
        lambda m: m.polyak_sgd(0.5, scaling=m.exponential_decay(1.0, 4, 0.7), f_min=-2.0, variant="sps+"),
    ],
    ids=["default", "options"],
)
def test_polyak_sgd_value_and_grad_trajectory_is_optax_bit_for_bit(build):
    ours_init, ours = _value_trajectory(gradtx, build(gradtx))
    ref_init, ref = _value_trajectory(optax, build(optax))
    assert_same(ours_init, ref_init, "init state")
    assert_same(ours, ref, "params, state and updates (steps stacked on axis 0)")


# ----------------------------------------------------------------------------------------------
# DoG
# ----------------------------------------------------------------------------------------------


def test_dog_known_answer():
    tx = gradtx.scale_by_distance_over_gradients(reps_rel=0.1, eps=0.0)
    x0 = jnp.array([3.0, 4.0])  # |x0| = 5: r_eps = 0.1 * 6 = 0.6
    state = tx.init(x0)
    assert float(state.max_dist) == pytest.approx(0.6)
    assert state.grad_sum_of_squares.shape == (1,)
    u, state = tx.update(jnp.array([0.6, 0.8]), state, x0)  # G = 1: eta = 0.6
    np.testing.assert_allclose(np.asarray(u), [0.36, 0.48], rtol=1e-6)
    x1 = x0 + jnp.array([3.0, 0.0])  # distance 3 > 0.6
    u, state = tx.update(jnp.array([0.0, 1.0]), state, x1)  # G = 2: eta = 3 / sqrt(2)
    np.testing.assert_allclose(np.asarray(u), [0.0, 3.0 / np.sqrt(2.0)], rtol=1e-6)
    assert float(state.max_dist) == 3.0 and _floats(state.grad_sum_of_squares) == [2.0]


def test_dog_scalar_leaf_keeps_its_shape_and_optax_numbers():
    # optax returns a (1,) update for a () leaf (its sum of squares has shape (1,)); gradtx returns
    # a () update with the same number, so apply_updates keeps the param a scalar
    params = {"s": jnp.array(0.7), "v": jnp.array([1.0, -2.0])}
    grads = {"s": jnp.array(-0.3), "v": jnp.array([0.5, 0.25])}
    ours, ref = gradtx.scale_by_distance_over_gradients(1e-2), optax.scale_by_distance_over_gradients(1e-2)
    u, state = jax.jit(ours.update)(grads, ours.init(params), params)
    v, ref_state = jax.jit(ref.update)(grads, ref.init(params), params)
    assert u["s"].shape == () and v["s"].shape == (1,)
    assert_same({"s": u["s"].reshape(1), "v": u["v"]}, v, "updates")
    assert_same(state, ref_state, "state")
    assert gradtx.apply_updates(params, u)["s"].shape == ()


def test_dog_needs_params_and_real_param_dtype_for_real_state():
    tx = gradtx.scale_by_distance_over_gradients()
    state = tx.init(jnp.ones(2))
    with pytest.raises(ValueError, match=r"scale_by_distance_over_gradients.update: params are required"):
        tx.update(jnp.ones(2), state)
    with pytest.raises(TypeError, match=r"param_dtype=float32 is real but params has dtype complex64"):
        tx.init(jnp.ones(2, jnp.complex64))
    with pytest.raises(TypeError, match=r"integer or boolean leaf"):
        tx.init(jnp.ones(2, jnp.int32))


def test_dog_low_precision_state_keeps_its_dtypes():
    tx = gradtx.scale_by_distance_over_gradients(param_dtype=None)
    params = jnp.ones(3, jnp.bfloat16)
    state = tx.init(params)
    before = jax.tree.map(lambda x: x.dtype, state)
    step = jax.jit(tx.update)
    for _ in range(2):
        u, state = step(jnp.full(3, 0.5, jnp.bfloat16), state, params)
        params = gradtx.apply_updates(params, u)
    assert jax.tree.map(lambda x: x.dtype, state) == before
    assert state.max_dist.dtype == jnp.float32 and state.init_params.dtype == jnp.bfloat16
    assert u.dtype == jnp.bfloat16


# ----------------------------------------------------------------------------------------------
# normalize_by_update_norm
# ----------------------------------------------------------------------------------------------


def test_normalize_known_answers():
    tx = gradtx.normalize_by_update_norm(scale_factor=-1.0, eps=0.0)
    g = {"a": jnp.array([3.0]), "b": jnp.array([4.0])}
    u, _ = tx.update(g, tx.init(g))
    np.testing.assert_allclose([float(u["a"][0]), float(u["b"][0])], [-0.6, -0.8], rtol=1e-7)
    zero = jax.tree.map(jnp.zeros_like, g)
    u, _ = tx.update(zero, tx.init(g))  # optax: 0 / 0 = NaN
    assert _floats(u["a"]) == [0.0] and _floats(u["b"]) == [0.0]
    assert np.isnan(np.asarray(optax.normalize_by_update_norm(eps=0.0).update(zero, None)[0]["a"])).all()
    u, _ = gradtx.normalize_by_update_norm(2.0).update(g, gradtx.EmptyState())  # default eps 1e-6
    np.testing.assert_allclose(float(u["b"][0]), 8.0 / (5.0 + 1e-6), rtol=1e-7)


def test_normalize_keeps_the_dtype_and_refuses_zero_scale():
    u, _ = gradtx.normalize_by_update_norm().update(jnp.full(4, 1e-3, jnp.bfloat16), gradtx.EmptyState())
    assert u.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(u, np.float32), 0.5, rtol=1e-2)
    with pytest.raises(ValueError, match=r"normalize_by_update_norm: scale_factor must be nonzero"):
        gradtx.normalize_by_update_norm(0.0)


# ----------------------------------------------------------------------------------------------
# Python scalars and integers as leaves (optax accepts them)
# ----------------------------------------------------------------------------------------------

SCALAR_BUILDERS = {
    "rprop": lambda m: m.rprop(0.1),
    "sign_sgd": lambda m: m.sign_sgd(0.1),
    "signum": lambda m: m.signum(0.1),
    "noisy_sgd": lambda m: m.noisy_sgd(0.1, key=jax.random.key(2)),
    "polyak_sgd": lambda m: m.polyak_sgd(0.5),
    "normalize_by_update_norm": lambda m: m.normalize_by_update_norm(-0.5),
    "scale_by_distance_over_gradients": lambda m: m.scale_by_distance_over_gradients(1e-2),
}


@pytest.mark.parametrize("name", sorted(SCALAR_BUILDERS))
def test_python_scalar_and_integer_leaves_give_optax_numbers(name):
    params = {"w": 1.5, "b": jnp.array([0.5, -1.0, 2.0])}
    grads = {"w": 0.25, "b": jnp.array([1, -3, 0])}  # integer gradients are promoted to float32
    ours, ref = SCALAR_BUILDERS[name](gradtx), SCALAR_BUILDERS[name](optax)
    ref_grads = {"w": jnp.float32(0.25), "b": grads["b"].astype(jnp.float32)}
    ref_params = jax.tree.map(jnp.asarray, params)
    state, ref_state = ours.init(params), ref.init(ref_params)
    for _ in range(3):
        u, state = ours.update(grads, state, params, value=2.0)
        with jax.numpy_rank_promotion("allow"):  # optax's DoG multiplies a (1,) step size into each leaf
            if name == "polyak_sgd":
                v, ref_state = jax.jit(ref.update)(ref_grads, ref_state, ref_params, value=2.0)
            else:
                v, ref_state = jax.jit(ref.update)(ref_grads, ref_state, ref_params)
        assert u["w"].shape == () and u["w"].dtype == u["b"].dtype == jnp.float32
        np.testing.assert_allclose(np.ravel(u["w"]), np.ravel(v["w"]), rtol=1e-6)
        np.testing.assert_allclose(u["b"], v["b"], rtol=1e-6)


@pytest.mark.skipif(len(jax.devices()) < 8, reason="needs 8 (simulated) devices")
def test_dog_initial_params_and_rprop_state_keep_the_params_sharding():
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    mesh = Mesh(np.array(jax.devices()[:8]), ("x",))
    sharding = NamedSharding(mesh, P("x", None))
    params = {"w": jax.device_put(jnp.linspace(-1.0, 1.0, 64).reshape(16, 4), sharding)}
    for tx, leaves in (
        (gradtx.scale_by_distance_over_gradients(), lambda s: [s.init_params["w"]]),
        (gradtx.scale_by_rprop(0.1), lambda s: [s.step_sizes["w"], s.prev_updates["w"]]),
    ):
        state = tx.init(params)
        updates, state = jax.jit(tx.update)(params, state, params)
        for leaf in [*leaves(state), updates["w"]]:
            assert leaf.sharding.is_equivalent_to(sharding, 2), (tx, leaf.sharding)
