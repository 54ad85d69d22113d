"""gradtx's wrappers used the way optax users use optax's: with optax's tree utilities, Flax
training states, stateful schedules and low-precision params. optax 0.2.8 is the reference,
bit for bit under jax.jit (CPU, float32) wherever optax's own numbers are sane."""

import dataclasses
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from flax.training import train_state

import gradtx


def _params(dtype=jnp.float32):
    return {
        "dense": {"kernel": jnp.linspace(-1.0, 1.0, 12, dtype=dtype).reshape(3, 4), "bias": jnp.zeros(4, dtype)},
        "out": {"kernel": jnp.linspace(0.5, -0.5, 4, dtype=dtype).reshape(4, 1), "bias": jnp.full((1,), 0.1, dtype)},
    }


def _x_y():
    x = jnp.cos(jnp.arange(24.0).reshape(8, 3))
    return x, jnp.sin(x @ jnp.array([1.0, -0.5, 2.0]))[:, None]


def _loss(params, x, y):
    h = jnp.tanh(x @ params["dense"]["kernel"] + params["dense"]["bias"][None, :])
    pred = h @ params["out"]["kernel"] + params["out"]["bias"][None, :]
    return jnp.mean((pred.astype(jnp.float32) - y) ** 2)


def _run(tx, steps=12, params=None, value=False):
    """`steps` jitted steps of `tx` on the small regression problem; returns (params, state)."""
    x, y = _x_y()
    params = _params() if params is None else params
    state = tx.init(params)

    @jax.jit
    def step(params, state):
        loss, grads = jax.value_and_grad(_loss)(params, x, y)
        extra = {"value": loss} if value else {}
        updates, state = tx.update(grads, state, params, **extra)
        return optax.apply_updates(params, updates), state

    for _ in range(steps):
        params, state = step(params, state)
    return params, state


def _paths(tree):
    """`{keystr(path): leaf as numpy}`: the key paths name the NamedTuple classes and fields."""
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}


def _assert_same_paths_and_bits(ours, ref):
    ours, ref = _paths(ours), _paths(ref)
    assert list(ours) == list(ref)
    for path in ref:
        assert ours[path].dtype == ref[path].dtype, path
        np.testing.assert_array_equal(ours[path], ref[path], err_msg=path)


_MASK = {"dense": {"kernel": True, "bias": False}, "out": {"kernel": True, "bias": False}}
_LABELS = {"dense": {"kernel": "adam", "bias": "sgd"}, "out": {"kernel": "adam", "bias": "sgd"}}


# --------------------------------------------------------------------------------------------
# 1. masked with a callable pytree as mask
# --------------------------------------------------------------------------------------------


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class _Linear:
    """An Equinox-style module: a dataclass pytree whose class also defines `__call__`."""

    kernel: Any
    bias: Any

    def __call__(self, x):
        return x @ self.kernel + self.bias[None, :]


def test_masked_with_a_callable_pytree_mask_is_a_mask_tree_as_in_optax():
    params = _Linear(kernel=jnp.arange(6.0).reshape(3, 2), bias=jnp.array([1.0, -2.0]))
    grads = _Linear(kernel=jnp.ones((3, 2)), bias=jnp.array([0.5, 0.25]))
    mask = _Linear(kernel=True, bias=False)  # a pytree of bools, and callable
    ours = gradtx.masked(gradtx.add_decayed_weights(0.5), mask)
    ref = optax.masked(optax.add_decayed_weights(0.5), mask)
    u, _ = jax.jit(ours.update)(grads, ours.init(params), params)
    ru, _ = jax.jit(ref.update)(grads, ref.init(params), params)
    chex.assert_trees_all_equal(u, ru)
    np.testing.assert_array_equal(u.kernel, 1.0 + 0.5 * np.arange(6.0).reshape(3, 2))
    np.testing.assert_array_equal(u.bias, [0.5, 0.25])  # masked out: untouched


def test_masked_still_calls_a_mask_function():
    params = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}
    tx = gradtx.masked(gradtx.add_decayed_weights(1.0), lambda p: jax.tree.map(lambda x: x.ndim > 1, p))
    u, _ = tx.update(params, tx.init(params), params)
    np.testing.assert_array_equal(u["w"], 2 * np.ones((2, 2)))
    np.testing.assert_array_equal(u["b"], np.ones(2))


# --------------------------------------------------------------------------------------------
# 2. optax's tree utilities on wrapper states
# --------------------------------------------------------------------------------------------

_WRAPPERS = {
    "masked": lambda m: m.chain(m.masked(m.adam(1e-2), _MASK), m.scale(1.0)),
    "multi_transform": lambda m: m.multi_transform({"adam": m.adam(1e-2), "sgd": m.sgd(1e-2, momentum=0.9)}, _LABELS),
    "apply_if_finite": lambda m: m.apply_if_finite(m.adam(1e-2), 3),
    "MultiSteps": lambda m: m.MultiSteps(m.adam(1e-2), 3).gradient_transformation(),
    "inject_hyperparams": lambda m: m.inject_hyperparams(m.adam)(learning_rate=m.cosine_decay_schedule(1e-2, 10)),
}


@pytest.mark.parametrize("name", sorted(_WRAPPERS))
def test_map_params_and_tree_get_set_match_optax(name):
    ours_tx, ref_tx = _WRAPPERS[name](gradtx), _WRAPPERS[name](optax)
    (p, state), (rp, ref_state) = _run(ours_tx, steps=4), _run(ref_tx, steps=4)
    _assert_same_paths_and_bits((p, state), (rp, ref_state))

    mapped = optax.tree.map_params(ours_tx, lambda v: 2 * v + 1, state, transform_non_params=lambda v: v)
    ref_mapped = optax.tree.map_params(ref_tx, lambda v: 2 * v + 1, ref_state, transform_non_params=lambda v: v)
    _assert_same_paths_and_bits(mapped, ref_mapped)
    changed = [k for k, v in _paths(mapped).items() if not np.array_equal(v, _paths(state)[k])]
    assert any(".mu" in k or ".nu" in k or ".trace" in k for k in changed)  # the params trees were mapped

    got = optax.tree_utils.tree_get_all_with_path(state, "mu")
    ref_got = optax.tree_utils.tree_get_all_with_path(ref_state, "mu")
    assert [jax.tree_util.keystr(k) for k, _ in got] == [jax.tree_util.keystr(k) for k, _ in ref_got]
    assert got, "every case holds Adam's mu"
    _assert_same_paths_and_bits([v for _, v in got], [v for _, v in ref_got])
    if len(got) == 1:
        _assert_same_paths_and_bits(optax.tree.get(state, "mu"), optax.tree.get(ref_state, "mu"))
    count = optax.tree_utils.tree_get_all_with_path(state, "count")
    ref_count = optax.tree_utils.tree_get_all_with_path(ref_state, "count")
    assert [jax.tree_util.keystr(k) for k, _ in count] == [jax.tree_util.keystr(k) for k, _ in ref_count]
    zeroed = optax.tree.set(state, count=jnp.asarray(0, jnp.int32))
    ref_zeroed = optax.tree.set(ref_state, count=jnp.asarray(0, jnp.int32))
    _assert_same_paths_and_bits(zeroed, ref_zeroed)


def test_map_params_over_masked_with_a_mask_function():
    def mask_fn(p):
        return jax.tree.map(lambda x: x.ndim > 1, p)

    ours_tx, ref_tx = gradtx.masked(gradtx.adam(1e-2), mask_fn), optax.masked(optax.adam(1e-2), mask_fn)
    (_, state), (_, ref_state) = _run(ours_tx, steps=2), _run(ref_tx, steps=2)
    specs = jax.tree.map(lambda x: f"spec{x.shape}", _params())  # e.g. sharding specs for the params
    # As optax documents, the masked-out MaskedNode placeholders must be declared leaves (each
    # library's own MaskedNode: gradtx does not depend on optax).
    ours = optax.tree.map_params(
        ours_tx, lambda _, s: s, state, specs, transform_non_params=lambda _: "-",
        is_leaf=lambda v: isinstance(v, gradtx.MaskedNode),
    )
    ref = optax.tree.map_params(
        ref_tx, lambda _, s: s, ref_state, specs, transform_non_params=lambda _: "-",
        is_leaf=lambda v: isinstance(v, optax.MaskedNode),
    )
    assert "spec(3, 4)" in jax.tree.leaves(ours)
    assert jax.tree_util.tree_flatten_with_path(ours)[0] == jax.tree_util.tree_flatten_with_path(ref)[0]


# --------------------------------------------------------------------------------------------
# 3. inject_hyperparams: optax 0.2.8's state layout, plain and stateful schedules
# --------------------------------------------------------------------------------------------


class _LossAwareScale:
    """A stateful schedule: `lr / (1 + running mean of the losses seen)` (reads `value=`)."""

    def __init__(self, lr):
        self.lr = lr

    def init(self):
        return {"n": jnp.zeros((), jnp.int32), "mean": jnp.zeros((), jnp.float32)}

    def update(self, state, value=0.0, **extra_args):
        n = state["n"] + 1
        return {"n": n, "mean": state["mean"] + (value - state["mean"]) / n}

    def __call__(self, state, **extra_args):
        return self.lr / (1.0 + state["mean"])


@pytest.mark.parametrize(
    "make_schedule",
    [
        lambda m: m.warmup_cosine_decay_schedule(0.0, 1e-2, 3, 12),
        lambda m: _LossAwareScale(1e-2),
        lambda m: m.WrappedSchedule(m.exponential_decay(1e-2, 4, 0.5)),
    ],
    ids=["plain", "stateful", "WrappedSchedule"],
)
def test_inject_hyperparams_matches_optax_bit_for_bit_with_the_same_state_paths(make_schedule):
    ours_tx = gradtx.inject_hyperparams(gradtx.adam)(learning_rate=make_schedule(gradtx), b1=0.8)
    ref_tx = optax.inject_hyperparams(optax.adam)(learning_rate=make_schedule(optax), b1=0.8)
    _assert_same_paths_and_bits(ours_tx.init(_params()), ref_tx.init(_params()))
    ours, ref = _run(ours_tx, value=True), _run(ref_tx, value=True)
    _assert_same_paths_and_bits(ours, ref)
    state = ours[1]
    assert isinstance(state, gradtx.InjectStatefulHyperparamsState)
    found = optax.tree_utils.tree_get_all_with_path(state, "learning_rate")
    ref_found = optax.tree_utils.tree_get_all_with_path(ref[1], "learning_rate")
    assert [jax.tree_util.keystr(k) for k, _ in found] == [jax.tree_util.keystr(k) for k, _ in ref_found]
    _assert_same_paths_and_bits([v for _, v in found], [v for _, v in ref_found])
    # the schedule's state lives where optax keeps it
    assert set(state.hyperparams_states) == {"learning_rate"}
    np.testing.assert_array_equal(optax.tree.get(state.hyperparams, "learning_rate"), ref[1].hyperparams["learning_rate"])


def test_stateful_schedule_is_called_with_its_state_not_the_count():
    tx = gradtx.inject_hyperparams(gradtx.scale)(step_size=_LossAwareScale(1.0))
    state = tx.init(jnp.zeros(2))
    for loss in [3.0, 1.0]:
        _, state = tx.update(jnp.ones(2), state, value=jnp.asarray(loss))
    u, _ = tx.update(jnp.ones(2), state, value=jnp.asarray(0.0))
    np.testing.assert_allclose(u, [1.0 / 3.0, 1.0 / 3.0], rtol=1e-6)  # 1 / (1 + mean(3, 1))


# --------------------------------------------------------------------------------------------
# 4. low precision: injected hyper-parameters stay float32
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16], ids=["bfloat16", "float16"])
def test_injected_adam_on_low_precision_params_keeps_float32_hyperparams(dtype):
    # optax.inject_hyperparams casts the floats to the params' dtype: b2=0.999 becomes 1.0 in
    # bfloat16 (NaN updates; gradtx used to raise "b2 must be in [0, 1), got 1") and eps=1e-8
    # becomes 0.0 in float16. gradtx keeps them in float32: the values of optax's
    # hyperparam_dtype=jnp.float32, bit for bit.
    params = _params(dtype)
    tx = gradtx.inject_hyperparams(gradtx.adam)(learning_rate=1e-2)
    ref_tx = optax.inject_hyperparams(optax.adam, hyperparam_dtype=jnp.float32)(learning_rate=1e-2)
    state = tx.init(params)
    _assert_same_paths_and_bits(state.hyperparams, ref_tx.init(params).hyperparams)
    assert float(state.hyperparams["eps"]) == np.float32(1e-8) and float(state.hyperparams["b2"]) < 1.0
    # The injected steps are those of adam called with these float32 values, bit for bit ...
    ours = _run(tx, steps=6, params=params)
    _assert_same_paths_and_bits(ours[0], _run(gradtx.adam(**state.hyperparams), steps=6, params=params)[0])
    assert {leaf.dtype for leaf in jax.tree.leaves(ours)} >= {jnp.dtype(dtype)}
    # ... and within one ulp of optax's with float32 hyper-parameters (optax turns Adam's
    # moments and the updates into float32 arrays there; gradtx keeps the params' dtype).
    chex.assert_trees_all_close(
        jax.tree.map(lambda x: x.astype(jnp.float32), ours[0]),
        jax.tree.map(lambda x: x.astype(jnp.float32), _run(ref_tx, steps=6, params=params)[0]),
        rtol=0,
        atol=float(jnp.finfo(dtype).eps),
    )
    # zero gradients: 0 / (sqrt(0) + eps) is 0 with eps = 1e-8 (NaN with eps rounded to 0)
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, _ = jax.jit(tx.update)(zeros, tx.init(params), params)
    chex.assert_trees_all_equal(updates, zeros)


def test_float32_params_keep_optax_dtype_and_explicit_hyperparam_dtype_is_honoured():
    tx = gradtx.inject_hyperparams(gradtx.scale)(step_size=0.5)
    assert tx.init(_params()).hyperparams["step_size"].dtype == jnp.float32
    tx16 = gradtx.inject_hyperparams(gradtx.scale, hyperparam_dtype=jnp.float16)(step_size=0.5)
    ref16 = optax.inject_hyperparams(optax.scale, hyperparam_dtype=jnp.float16)(step_size=0.5)
    _assert_same_paths_and_bits(tx16.init(_params()), ref16.init(_params()))
    with jax.enable_x64(True):  # float64 params: float64 hyper-parameters, as optax
        params64 = jax.tree.map(lambda x: x.astype(jnp.float64), _params())
        ours = gradtx.inject_hyperparams(gradtx.adam)(learning_rate=0.1).init(params64)
        ref = optax.inject_hyperparams(optax.adam)(learning_rate=0.1).init(params64)
        _assert_same_paths_and_bits(ours.hyperparams, ref.hyperparams)
        assert ours.hyperparams["b2"].dtype == jnp.float64


# --------------------------------------------------------------------------------------------
# 5. MultiSteps instance in Flax training states, current_hyperparams
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 3])
def test_train_state_with_a_multisteps_instance_matches_optax_bit_for_bit(k):
    x, y = _x_y()

    def train(lib):
        tx = lib.MultiSteps(lib.adam(1e-2), every_k_schedule=k)  # the instance, as optax users write it
        state = train_state.TrainState.create(apply_fn=None, params=_params(), tx=tx)

        @jax.jit
        def step(state):
            return state.apply_gradients(grads=jax.grad(_loss)(state.params, x, y))

        for _ in range(2 * k + 1):
            state = step(state)
        return state

    ours, ref = train(gradtx), train(optax)
    _assert_same_paths_and_bits((ours.params, ours.opt_state), (ref.params, ref.opt_state))
    assert int(ours.opt_state.gradient_step) == 2 + (k == 1)
    assert bool(ours.tx.has_updated(ours.opt_state)) == bool(ref.tx.has_updated(ref.opt_state))


class _Mlp(nnx.Module):
    def __init__(self):
        self.kernel = nnx.Param(jnp.linspace(-1.0, 1.0, 12).reshape(3, 4))
        self.out = nnx.Param(jnp.linspace(0.5, -0.5, 4).reshape(4, 1))

    def __call__(self, x):
        return jnp.tanh(x @ self.kernel[...]) @ self.out[...]


def test_nnx_optimizer_with_a_multisteps_instance_matches_optax_bit_for_bit():
    x, y = _x_y()

    def train(lib):
        model = _Mlp()
        opt = nnx.Optimizer(model, lib.MultiSteps(lib.sgd(0.1, momentum=0.9), 2), wrt=nnx.Param)

        @nnx.jit
        def step(model, opt):
            opt.update(model, nnx.grad(lambda m: jnp.mean((m(x) - y) ** 2))(model))

        for _ in range(5):
            step(model, opt)
        return model, opt

    (model, opt), (ref_model, _) = train(gradtx), train(optax)
    chex.assert_trees_all_equal(
        jax.tree.map(np.asarray, nnx.state(model, nnx.Param)), jax.tree.map(np.asarray, nnx.state(ref_model, nnx.Param))
    )
    hp = gradtx.current_hyperparams(opt.tx, opt.opt_state)
    assert hp["learning_rate"] == 0.1 and hp["momentum"] == 0.9 and hp["every_k_schedule"] == 2


def test_current_hyperparams_of_multisteps_reports_inner_and_its_own():
    inner = gradtx.adam(gradtx.linear_schedule(1.0, 0.0, 10), b1=0.8)
    ms = gradtx.MultiSteps(inner, every_k_schedule=lambda step: 2 + step, use_grad_mean=False)
    state = ms.init(jnp.zeros(2))
    for _ in range(5):  # k = 2, then 3: two inner steps; the next k is 4
        _, state = ms.update(jnp.ones(2), state)
    for tx in (ms, ms.gradient_transformation()):
        hp = gradtx.current_hyperparams(tx, state)
        assert hp["learning_rate"] == pytest.approx(0.8)  # linear schedule at the inner count 2
        assert hp["b1"] == 0.8
        assert hp["every_k_schedule"] == 4
        assert hp["use_grad_mean"] is False
        assert hp["opt"] is inner
    chained = gradtx.chain(ms.gradient_transformation())
    assert gradtx.current_hyperparams(chained, (state,))["transforms"][0]["every_k_schedule"] == 4


# --------------------------------------------------------------------------------------------
# 6. schedules that are not `schedule(count) -> scalar`
# --------------------------------------------------------------------------------------------


def _vector_schedule(count):
    return jnp.full((3,), 0.1) * count


def _no_argument_schedule():
    return 0.1


class _VectorStateful:
    def init(self):
        return jnp.zeros((), jnp.int32)

    def update(self, state, **extra_args):
        return state + 1

    def __call__(self, state, **extra_args):
        return jnp.ones(2)


def test_bad_schedules_are_named_with_the_expected_form():
    with pytest.raises(ValueError, match=r"learning_rate, <function _vector_schedule>.*schedule\(count\) -> scalar.*\(3,\)"):
        gradtx.inject_hyperparams(gradtx.adam)(learning_rate=_vector_schedule)
    with pytest.raises(TypeError, match=r"learning_rate, <function _no_argument_schedule>.*schedule\(count\) -> scalar"):
        gradtx.inject_hyperparams(gradtx.adam)(learning_rate=_no_argument_schedule)
    with pytest.raises(ValueError, match=r"b1, .*_VectorStateful.*schedule\(state, \*\*extra_args\) -> scalar"):
        gradtx.inject_hyperparams(gradtx.adam)(learning_rate=1e-3, b1=_VectorStateful())


def test_a_schedule_that_turns_non_scalar_under_jit_fails_at_trace_time():
    def sneaky(count):  # a scalar for a concrete count, a vector once traced
        return jnp.asarray(0.1) if not isinstance(count, jax.core.Tracer) else jnp.full((2,), 0.1)

    tx = gradtx.inject_hyperparams(gradtx.scale)(step_size=sneaky)
    params = jnp.ones(2)
    state = tx.init(params)
    with pytest.raises(ValueError, match=r"step_size.*sneaky.*schedule\(count\) -> scalar.*\(2,\)"):
        jax.jit(tx.update)(params, state)
