"""Inputs optax accepts work in gradtx's transformations, with optax's numbers, or fail loudly.

* Python scalars as gradient / params leaves;
* `None` updates in `add_decayed_weights`;
* complex `mu_dtype` / `accumulator_dtype` on complex params;
* integer params (a `TypeError` naming the leaf) and integer gradients (promoted to float);
* schedules that are not `schedule(count) -> scalar` (an error naming the schedule, at trace time).
"""

import warnings

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from absl.testing import parameterized

import gradtx
from gradtx import transforms

RTOL, ATOL = 1e-5, 1e-6
KEY = jax.random.key(0)



def _objective(grads, params):
    """`x -> 1 + <g, x - p> + |x - p|^2 / 2`: value 1 and gradient `grads` at `params`."""

    def value_fn(x):
        terms = jax.tree.map(lambda g, p, y: jnp.sum(g * (y - p) + 0.5 * (y - p) ** 2), grads, params, x)
        return 1.0 + sum(jax.tree.leaves(terms))

    return value_fn


def _value_args(grads, params):  # the polyak step sizes need the loss value
    return {"value": 1.0}


def _linesearch_args(grads, params):  # line searches evaluate the objective
    return {"value": 1.0, "grad": grads, "value_fn": _objective(grads, params)}


# name -> (factory of (gradtx or optax) module, does the state hold a float moment per param
#          [, builder (grads, params) -> the extra keyword arguments of `update`])
ALIASES = {
    "adam": (lambda m: m.adam(0.1), True),
    "adamw": (lambda m: m.adamw(0.1, weight_decay=0.01), True),
    "nadam": (lambda m: m.nadam(0.1), True),
    "nadamw": (lambda m: m.nadamw(0.1, weight_decay=0.01), True),
    "amsgrad": (lambda m: m.amsgrad(0.1), True),
    "adamax": (lambda m: m.adamax(0.1), True),
    "lion": (lambda m: m.lion(0.1), True),
    "lamb": (lambda m: m.lamb(0.1), True),
    "sgd": (lambda m: m.sgd(0.1), False),
    "sgd_momentum": (lambda m: m.sgd(0.1, momentum=0.9, nesterov=True), True),
    "adagrad": (lambda m: m.adagrad(0.1), True),
    "rmsprop": (lambda m: m.rmsprop(0.1, centered=True, momentum=0.9), True),
    "adabelief": (lambda m: m.adabelief(0.1), True),
    "adadelta": (lambda m: m.adadelta(0.1, weight_decay=0.01), True),
    "adafactor": (lambda m: m.adafactor(0.1, min_dim_size_to_factor=2), True),
    "adamaxw": (lambda m: m.adamaxw(0.1, weight_decay=0.01), True),
    "adan": (lambda m: m.adan(0.1, weight_decay=0.01), True),
    "fromage": (lambda m: m.fromage(0.1), False),
    "lars": (lambda m: m.lars(0.1, weight_decay=0.01), True),
    "lbfgs": (lambda m: m.lbfgs(memory_size=3, linesearch=m.scale_by_zoom_linesearch(5)), True, _linesearch_args),
    "noisy_sgd": (lambda m: m.noisy_sgd(0.1, key=KEY), False),
    "novograd": (lambda m: m.novograd(0.1, weight_decay=0.01), True),
    "optimistic_adam": (lambda m: m.optimistic_adam(0.1), True),
    "optimistic_adam_v2": (lambda m: m.optimistic_adam_v2(0.1), True),
    "optimistic_gradient_descent": (lambda m: m.optimistic_gradient_descent(0.1), True),
    "polyak_sgd": (lambda m: m.polyak_sgd(0.5), False, _value_args),
    "radam": (lambda m: m.radam(0.1), True),
    "rprop": (lambda m: m.rprop(0.1), True),
    "sign_sgd": (lambda m: m.sign_sgd(0.1), False),
    "signum": (lambda m: m.signum(0.1), True),
    "sm3": (lambda m: m.sm3(0.1), True),
    "yogi": (lambda m: m.yogi(0.1), True),
}
TRANSFORMS = {
    "add_decayed_weights": (lambda m: m.add_decayed_weights(0.1), False),
    "add_decayed_weights_schedule": (lambda m: m.add_decayed_weights(lambda c: 0.1 / (1 + c)), False),
    "add_noise": (lambda m: m.add_noise(0.1, 0.55, KEY), False),
    "clip": (lambda m: m.clip(0.3), False),
    "clip_by_global_norm": (lambda m: m.clip_by_global_norm(0.5), False),
    "clip_by_norm": (lambda m: m.clip_by_norm(0.5), False),
    "ema": (lambda m: m.ema(0.9), True),
    "scale": (lambda m: m.scale(-0.5), False),
    "scale_by_adam": (lambda m: m.scale_by_adam(), True),
    "scale_by_adamax": (lambda m: m.scale_by_adamax(), True),
    "scale_by_amsgrad": (lambda m: m.scale_by_amsgrad(), True),
    "scale_by_learning_rate": (lambda m: m.scale_by_learning_rate(0.1), False),
    "scale_by_learning_rate_schedule": (lambda m: m.scale_by_learning_rate(lambda c: 0.1 / (1 + c)), False),
    "scale_by_lion": (lambda m: m.scale_by_lion(), True),
    "scale_by_rms": (lambda m: m.scale_by_rms(), True),
    "scale_by_rss": (lambda m: m.scale_by_rss(), True),
    "scale_by_schedule": (lambda m: m.scale_by_schedule(lambda c: 0.5 / (1 + c)), False),
    "scale_by_sign": (lambda m: m.scale_by_sign(), False),
    "scale_by_stddev": (lambda m: m.scale_by_stddev(), True),
    "scale_by_trust_ratio": (lambda m: m.scale_by_trust_ratio(), False),
    "trace": (lambda m: m.trace(0.9), True),
    "zero_nans": (lambda m: m.zero_nans(), False),
    "clip_by_block_rms": (lambda m: m.clip_by_block_rms(0.5), False),
    "scale_by_adadelta": (lambda m: m.scale_by_adadelta(), True),
    "scale_by_adan": (lambda m: m.scale_by_adan(), True),
    "scale_by_belief": (lambda m: m.scale_by_belief(), True),
    "scale_by_distance_over_gradients": (lambda m: m.scale_by_distance_over_gradients(1e-2), True),
    "scale_by_factored_rms": (lambda m: m.scale_by_factored_rms(min_dim_size_to_factor=2), True),
    "scale_by_lbfgs": (lambda m: m.scale_by_lbfgs(memory_size=3), True),
    "scale_by_novograd": (lambda m: m.scale_by_novograd(weight_decay=0.01), True),
    "scale_by_optimistic_gradient": (lambda m: m.scale_by_optimistic_gradient(), True),
    "scale_by_param_block_norm": (lambda m: m.scale_by_param_block_norm(), False),
    "scale_by_param_block_rms": (lambda m: m.scale_by_param_block_rms(), False),
    "scale_by_polyak": (lambda m: m.scale_by_polyak(max_learning_rate=0.5), False, _value_args),
    "scale_by_radam": (lambda m: m.scale_by_radam(), True),
    "scale_by_rprop": (lambda m: m.scale_by_rprop(0.1), True),
    "scale_by_sm3": (lambda m: m.scale_by_sm3(), True),
    "scale_by_yogi": (lambda m: m.scale_by_yogi(), True),
    "scale_by_backtracking_linesearch": (
        lambda m: m.scale_by_backtracking_linesearch(max_backtracking_steps=5), False, _linesearch_args),
    "scale_by_zoom_linesearch": (lambda m: m.scale_by_zoom_linesearch(max_linesearch_steps=5), True,
                                 _linesearch_args),
}
ALL = {**ALIASES, **TRANSFORMS}
STATEFUL = sorted(name for name, entry in ALL.items() if entry[1])
# compared with the same gradtx transformation on arrays, where optax cannot take the inputs:
NOT_IN_OPTAX = {
    "clip_by_norm",  # not an optax name
    # optax's init reads `.shape` / `.ndim` / `.dtype` / `.astype` of each params leaf, which a
    # Python float lacks (AttributeError):
    "adafactor", "scale_by_factored_rms",  # .shape (factorized.py)
    "novograd", "scale_by_novograd",  # .dtype
    "sm3", "scale_by_sm3",  # .ndim (and optax's SM3 cannot update a scalar leaf at all)
    "lbfgs", "scale_by_lbfgs",  # .shape
    "scale_by_distance_over_gradients",  # .astype (and optax gives a scalar leaf a (1,) update)
}
# optax's init reads `.dtype` of the first params leaf: a params tree that is a lone Python float
# fails there (a dict with an array first works, and is compared with optax)
NOT_IN_OPTAX_FOR_A_LONE_FLOAT = {"scale_by_backtracking_linesearch", "scale_by_zoom_linesearch"}
# left out of the lists, each tested on its own below:
NOT_LISTED = {
    "dpsgd",  # its gradients are per-example (a batch axis on every leaf), never a Python scalar
    "scale_gradient",  # a function of the inputs (a custom-gradient identity), not a transformation
}


def test_the_lists_cover_every_optimizer_and_transformation():
    assert set(gradtx.optimizers.__all__) <= set(ALIASES) | NOT_LISTED
    public = {
        name for name in transforms.__all__
        if name[0].islower() and name.startswith(("scale", "clip", "add_", "trace", "ema", "zero"))
    }
    assert public <= set(TRANSFORMS) | NOT_LISTED


def _make(name, module):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ALL[name][0](module)


def _update(name, tx):
    """`tx.update(grads, state, params)`, with the entry's extra keyword arguments if it has any."""
    if len(ALL[name]) == 2:
        return tx.update
    extra = ALL[name][2]
    return lambda grads, state, params: tx.update(grads, state, params, **extra(grads, params))


_JITTED = {}


def _jitted(name, module):
    """`(tx, jax.jit(update))`, one per (name, library) for the whole file: the tests that feed it
    inputs of the same shapes and dtypes (other values) reuse its compiled step."""
    key = (name, module.__name__)
    if key not in _JITTED:
        tx = _make(name, module)
        _JITTED[key] = (tx, jax.jit(_update(name, tx)))
    return _JITTED[key]


def _run(tx, grads, params, update, steps=2):
    state = tx.init(params)
    outs = []
    for _ in range(steps):
        u, state = update(grads, state, params)
        outs.append(u)
    return outs, state


_REFERENCES = {}


def _reference(name, grads, params, steps=2):
    """optax's jitted trajectory (the leaves, Python scalars included, reach it as arrays)."""
    key = (name, repr(grads), repr(params), steps)
    if key not in _REFERENCES:
        _REFERENCES[key] = _compute_reference(name, grads, params, steps)
    return _REFERENCES[key]


def _compute_reference(name, grads, params, steps):
    if name in NOT_IN_OPTAX or (name in NOT_IN_OPTAX_FOR_A_LONE_FLOAT and isinstance(params, float)):
        tx, update = _jitted(name, gradtx)
        grads, params = jax.tree.map(jnp.asarray, (grads, params))
    else:
        tx, update = _jitted(name, optax)
    return _run(tx, grads, params, update, steps)[0]


# --------------------------------------------------------------------------------------------
# 1. Python scalars as leaves
# --------------------------------------------------------------------------------------------

# the tests below run these eagerly too; the later entries under jit only, to keep the
# file's runtime (their eager path is checked by test_python_float_params_leaf_alone)
EAGER_TOO = {
    "adam", "adamw", "nadam", "nadamw", "amsgrad", "adamax", "lion", "lamb", "sgd", "sgd_momentum", "adagrad",
    "rmsprop", "add_decayed_weights", "add_decayed_weights_schedule", "add_noise", "clip", "clip_by_global_norm",
    "clip_by_norm", "ema", "scale", "scale_by_adam", "scale_by_adamax", "scale_by_amsgrad", "scale_by_learning_rate",
    "scale_by_learning_rate_schedule", "scale_by_lion", "scale_by_rms", "scale_by_rss", "scale_by_schedule",
    "scale_by_sign", "scale_by_stddev", "scale_by_trust_ratio", "trace", "zero_nans",
}
JIT_ONLY = set(ALL) - EAGER_TOO
# (name, jit): every entry jitted, the EAGER_TOO ones eagerly as well
VARIANTS = [(name, jit) for name in sorted(ALL) for jit in (True, False) if jit or name in EAGER_TOO]
_VARIANT_IDS = [f"{name}-{'jit' if jit else 'eager'}" for name, jit in VARIANTS]


def _gradtx_update(name, jit):
    """gradtx's `(tx, update)`: the shared jitted step, or the plain `update` run eagerly."""
    tx, jitted = _jitted(name, gradtx)
    return tx, jitted if jit else _update(name, tx)

SCALAR_PARAMS = {"w": 1.5, "b": jnp.array([0.5, -1.0, 2.0])}
SCALAR_GRADS = {"w": 0.25, "b": jnp.array([0.1, -0.3, 0.2])}


@pytest.mark.parametrize(("name", "jit"), VARIANTS, ids=_VARIANT_IDS)
def test_python_float_leaves_give_optax_numbers(name, jit):
    tx, update = _gradtx_update(name, jit)
    outs, _ = _run(tx, SCALAR_GRADS, SCALAR_PARAMS, update)
    for ours, ref in zip(outs, _reference(name, SCALAR_GRADS, SCALAR_PARAMS), strict=True):
        assert isinstance(ours["w"], jax.Array) and ours["w"].shape == ()
        assert ours["w"].dtype == jnp.float32
        chex.assert_trees_all_close(ours, ref, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", sorted(ALL))
def test_python_float_params_leaf_alone(name):
    """A params tree that is a single Python float, with a float gradient (eagerly)."""
    tx = _make(name, gradtx)
    outs, _ = _run(tx, -0.75, 2.0, _update(name, tx), steps=2)
    ref = _reference(name, -0.75, 2.0, steps=2)
    chex.assert_trees_all_close(outs, ref, rtol=RTOL, atol=ATOL)


# --------------------------------------------------------------------------------------------
# 2. None updates in add_decayed_weights
# --------------------------------------------------------------------------------------------

P2 = {"w": jnp.array([1.0, -2.0]), "b": jnp.array([0.5, 0.25, -4.0])}


@pytest.mark.parametrize("decay", [0.1, lambda count: 0.1 / (1 + count)], ids=["constant", "schedule"])
def test_add_decayed_weights_passes_none_updates_through_as_optax(decay):
    ours, ref = gradtx.add_decayed_weights(decay), optax.add_decayed_weights(decay)
    u, state = ours.update(None, ours.init(P2), P2)
    u_ref, state_ref = ref.update(None, ref.init(P2), P2)
    assert u is None and u_ref is None
    chex.assert_trees_all_equal(jax.tree.leaves(state), jax.tree.leaves(state_ref))
    # a None leaf stays None; the others get the decay
    grads = {"w": None, "b": jnp.array([1.0, 2.0, 3.0])}
    u, _ = jax.jit(ours.update)(grads, ours.init(P2), P2)
    u_ref, _ = jax.jit(ref.update)(grads, ref.init(P2), P2)
    assert u["w"] is None and u_ref["w"] is None
    chex.assert_trees_all_equal(u["b"], u_ref["b"])


def test_add_decayed_weights_none_leaf_with_a_mask():
    mask = {"w": True, "b": False}
    ours, ref = gradtx.add_decayed_weights(0.1, mask), optax.add_decayed_weights(0.1, mask)
    grads = {"w": None, "b": jnp.array([1.0, 2.0, 3.0])}
    u, _ = ours.update(grads, ours.init(P2), P2)
    u_ref, _ = ref.update(grads, ref.init(P2), P2)
    assert u["w"] is None and u_ref["w"] is None
    chex.assert_trees_all_equal(u["b"], u_ref["b"])
    grads = {"w": jnp.array([1.0, 2.0]), "b": None}
    u, _ = ours.update(grads, ours.init(P2), P2)
    assert u["b"] is None
    chex.assert_trees_all_close(u["w"], grads["w"] + 0.1 * P2["w"])


# --------------------------------------------------------------------------------------------
# 3. Complex mu_dtype / accumulator_dtype
# --------------------------------------------------------------------------------------------

C64 = "complex64"
COMPLEX_CASES = {
    "adam": lambda m, d: m.adam(0.1, mu_dtype=d),
    "adamw": lambda m, d: m.adamw(0.1, mu_dtype=d, weight_decay=0.01),
    "nadam": lambda m, d: m.nadam(0.1, mu_dtype=d),
    "nadamw": lambda m, d: m.nadamw(0.1, mu_dtype=d, weight_decay=0.01),
    "amsgrad": lambda m, d: m.amsgrad(0.1, mu_dtype=d),
    "lion": lambda m, d: m.lion(0.1, mu_dtype=d),
    "sgd": lambda m, d: m.sgd(0.1, momentum=0.9, accumulator_dtype=d),
    "trace": lambda m, d: m.trace(0.9, nesterov=True, accumulator_dtype=d),
    "ema": lambda m, d: m.ema(0.9, accumulator_dtype=d),
    "scale_by_adam": lambda m, d: m.scale_by_adam(mu_dtype=d),
    "scale_by_amsgrad": lambda m, d: m.scale_by_amsgrad(mu_dtype=d),
    "scale_by_lion": lambda m, d: m.scale_by_lion(mu_dtype=d),
}
CPARAMS = {"w": jnp.array([1 + 2j, -1j, 0.5], jnp.complex64), "r": jnp.array([[0.3 - 0.1j]], jnp.complex64)}


def _complex_grads(i):
    k1, k2, k3, k4 = jax.random.split(jax.random.key(i), 4)
    return {
        "w": jax.random.normal(k1, (3,)) + 1j * jax.random.normal(k2, (3,)),
        "r": jax.random.normal(k3, (1, 1)) + 1j * jax.random.normal(k4, (1, 1)),
    }


_COMPLEX_REFERENCES = {}


def _complex_reference(name):
    """optax's jitted updates of the five steps (computed once, for both variants)."""
    if name not in _COMPLEX_REFERENCES:
        ref = COMPLEX_CASES[name](optax, jnp.complex64)
        s_ref, ref_update, out = ref.init(CPARAMS), jax.jit(ref.update), []
        for i in range(5):
            u_ref, s_ref = ref_update(_complex_grads(i), s_ref, CPARAMS)
            out.append(u_ref)
        _COMPLEX_REFERENCES[name] = out
    return _COMPLEX_REFERENCES[name]


class ComplexStateDtype(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*[(name, name) for name in sorted(COMPLEX_CASES)])
    def test_complex_state_dtype_on_complex_params_gives_optax_numbers(self, name):
        ours = COMPLEX_CASES[name](gradtx, C64)
        s_ours, update = ours.init(CPARAMS), self.variant(ours.update)
        for i, u_ref in enumerate(_complex_reference(name)):
            u, s_ours = update(_complex_grads(i), s_ours, CPARAMS)
            assert u["w"].dtype == jnp.complex64
            chex.assert_trees_all_close(u, u_ref, rtol=RTOL, atol=ATOL)
        moments = [x for x in jax.tree.leaves(s_ours) if jnp.issubdtype(x.dtype, jnp.complexfloating)]
        assert moments, "the complex mu_dtype / accumulator_dtype must give a complex state"


@pytest.mark.parametrize("name", sorted(COMPLEX_CASES))
def test_complex_state_dtype_with_real_params_raises_naming_the_leaf(name):
    """optax returns complex updates for real params there; gradtx refuses, naming the leaf."""
    tx = COMPLEX_CASES[name](gradtx, C64)
    with pytest.raises(TypeError, match=r"(mu|accumulator)_dtype=complex64.*params\['b'\]"):
        tx.init({"b": jnp.ones(3)})


@pytest.mark.parametrize("name", sorted(COMPLEX_CASES))
def test_real_state_dtype_with_complex_params_raises_naming_the_leaf(name):
    """A bfloat16 / float32 moment would drop the imaginary part of complex params."""
    tx = COMPLEX_CASES[name](gradtx, "bfloat16")
    with pytest.raises(TypeError, match=r"(mu|accumulator)_dtype=bfloat16.*params\['[rw]'\]"):
        tx.init(CPARAMS)


@pytest.mark.parametrize("dtype", ["bfloat16", jnp.bfloat16, "float32", np.float16])
def test_string_and_type_float_dtypes_still_accepted(dtype):
    for name in COMPLEX_CASES:
        tx = COMPLEX_CASES[name](gradtx, dtype)
        state = tx.init({"b": jnp.ones(3)})
        assert jnp.dtype(dtype) in {x.dtype for x in jax.tree.leaves(state)}


@pytest.mark.parametrize("dtype", [jnp.int32, "uint8", jnp.bool_, "not_a_dtype"])
def test_non_inexact_state_dtypes_still_rejected(dtype):
    for name in COMPLEX_CASES:
        with pytest.raises(TypeError, match=r"(mu|accumulator)_dtype must be None or a floating or complex"):
            COMPLEX_CASES[name](gradtx, dtype)


# --------------------------------------------------------------------------------------------
# 4. Integer params and integer gradients
# --------------------------------------------------------------------------------------------

FLOAT_PARAMS = {"b": jnp.array([0.5, -1.0, 2.0]), "w": 1.5}
INT_GRADS = {"b": jnp.array([1, -3, 2], jnp.int32), "w": 2}
FLOAT_GRADS = {"b": jnp.array([1.0, -3.0, 2.0]), "w": 2.0}
INTEGER_EXACT = {"scale_by_sign", "zero_nans"}  # integers in, the same integers' results out (as optax)


@pytest.mark.parametrize("name", STATEFUL)
@pytest.mark.parametrize("leaf", [jnp.array([3, -2], jnp.int32), 3, jnp.array([True])], ids=["int32", "pyint", "bool"])
def test_integer_params_raise_naming_the_leaf(name, leaf):
    """optax keeps integer moments there (updates rounded to 0, or other numbers); gradtx raises."""
    tx = _make(name, gradtx)
    params = {"b": jnp.ones(2), "n": leaf}
    with pytest.raises(TypeError, match=r"params\['n'\] has dtype (int32|bool)"):
        tx.init(params)
    with pytest.raises(TypeError, match=r"params\['n'\]"):
        jax.jit(tx.init)(params)


def test_adam_on_an_int32_param_no_longer_gives_zero_updates_forever():
    tx = gradtx.adam(1e-3)
    with pytest.raises(TypeError, match=r"adam.init: params\['step'\] has dtype int32"):
        tx.init({"step": jnp.array(5, jnp.int32), "w": jnp.ones(2)})


@pytest.mark.parametrize(("name", "jit"), [v for v in VARIANTS if v[0] not in INTEGER_EXACT],
                         ids=[i for v, i in zip(VARIANTS, _VARIANT_IDS, strict=True) if v[0] not in INTEGER_EXACT])
def test_integer_gradients_are_promoted_to_float(name, jit):
    """Integer leaves give the float-gradient numbers (optax's), never integer updates."""
    tx, update = _gradtx_update(name, jit)
    outs_int, _ = _run(tx, INT_GRADS, FLOAT_PARAMS, update)
    outs_float, _ = _run(tx, FLOAT_GRADS, FLOAT_PARAMS, update)
    for u in outs_int:
        assert {leaf.dtype for leaf in jax.tree.leaves(u)} == {jnp.dtype(jnp.float32)}
    chex.assert_trees_all_equal(outs_int, outs_float)
    chex.assert_trees_all_close(outs_int, _reference(name, FLOAT_GRADS, FLOAT_PARAMS), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", sorted(INTEGER_EXACT))
def test_sign_and_zero_nans_keep_integer_gradients_as_optax(name):
    tx = _make(name, gradtx)
    outs, _ = _run(tx, INT_GRADS, FLOAT_PARAMS, _update(name, tx), steps=1)
    ref = _reference(name, INT_GRADS, FLOAT_PARAMS, steps=1)
    chex.assert_trees_all_equal(outs, ref)


def test_scale_by_schedule_on_integer_gradients_is_not_integer_zeros():
    """optax casts the step size to the gradient's int dtype (0.5 -> 0); gradtx computes 0.5 * g."""
    tx = gradtx.scale_by_schedule(lambda count: 0.5)
    u, _ = tx.update(INT_GRADS, tx.init(FLOAT_PARAMS))
    chex.assert_trees_all_equal(u, {"b": jnp.array([0.5, -1.5, 1.0]), "w": jnp.asarray(1.0)})


STATELESS_WITH_PARAMS = ["add_decayed_weights", "add_decayed_weights_schedule", "scale_by_trust_ratio", "sgd",
                         "scale", "scale_by_learning_rate"]


@pytest.mark.parametrize("name", STATELESS_WITH_PARAMS)
def test_integer_params_in_stateless_transformations_give_optax_float_updates(name):
    params = {"b": jnp.array([3, -2, 1], jnp.int32), "w": 4}
    tx = _make(name, gradtx)
    outs, _ = _run(tx, FLOAT_GRADS, params, _update(name, tx))
    for u in outs:
        assert {leaf.dtype for leaf in jax.tree.leaves(u)} == {jnp.dtype(jnp.float32)}
    chex.assert_trees_all_close(outs, _reference(name, FLOAT_GRADS, params), rtol=RTOL, atol=ATOL)


# --------------------------------------------------------------------------------------------
# 5. Schedules that are not schedule(count) -> scalar
# --------------------------------------------------------------------------------------------


def vector_schedule(count):
    return jnp.full((3,), 0.1)


def length_one_schedule(count):
    return jnp.full((1,), 0.1)


def no_argument_schedule():
    return 0.1


def none_schedule(count):
    return None


SCHEDULE_USERS = {
    "scale_by_learning_rate": lambda s: gradtx.scale_by_learning_rate(s),
    "scale_by_learning_rate_no_flip": lambda s: gradtx.scale_by_learning_rate(s, flip_sign=False),
    "scale_by_schedule": lambda s: gradtx.scale_by_schedule(s),
    "add_decayed_weights": lambda s: gradtx.add_decayed_weights(s),
    "adam_lr": lambda s: gradtx.adam(s),
    "sgd_lr": lambda s: gradtx.sgd(s, momentum=0.9),
    "adamw_weight_decay": lambda s: gradtx.adamw(0.1, weight_decay=s),
    "lion_weight_decay": lambda s: gradtx.lion(0.1, weight_decay=s),
    "lamb_lr": lambda s: gradtx.lamb(s),
}
SCHED_PARAMS = {"w": jnp.ones(3), "m": jnp.ones((2, 3)), "s": jnp.ones(())}


@pytest.mark.parametrize("user", sorted(SCHEDULE_USERS))
@pytest.mark.parametrize(
    ("schedule", "error", "says"),
    [
        (vector_schedule, ValueError, r"shape \(3,\)"),
        (length_one_schedule, ValueError, r"shape \(1,\)"),
        (no_argument_schedule, TypeError, r"step count"),
        (none_schedule, TypeError, r"NoneType"),
    ],
    ids=["vector", "length-one", "no-argument", "returns-None"],
)
def test_bad_schedules_raise_at_trace_time_naming_the_schedule(user, schedule, error, says):
    tx = SCHEDULE_USERS[user](schedule)
    state = tx.init(SCHED_PARAMS)
    message = rf"{schedule.__name__}.*schedule\(count\) -> scalar.*|.*schedule\(count\) -> scalar.*{says}"
    with pytest.raises(error, match=message) as info:
        jax.eval_shape(tx.update, SCHED_PARAMS, state, SCHED_PARAMS)  # tracing alone raises
    assert schedule.__name__ in str(info.value)
    assert "learning_rate" in str(info.value) or "weight_decay" in str(info.value) or "step_size_fn" in str(
        info.value
    )


@pytest.mark.parametrize("user", sorted(SCHEDULE_USERS))
@pytest.mark.parametrize(
    "schedule",
    [
        lambda count: 0.01,
        lambda count: np.float32(0.01),
        lambda count, scale=0.5: 0.02 * scale,
        lambda *args: 0.01,
        gradtx.cosine_decay_schedule(0.01, 10),
        optax.linear_schedule(0.01, 0.0, 10),
    ],
    ids=["float", "np-scalar", "default-arg", "varargs", "gradtx-schedule", "optax-schedule"],
)
def test_good_schedules_still_work(user, schedule):
    tx = SCHEDULE_USERS[user](schedule)
    u, _ = jax.eval_shape(tx.update, SCHED_PARAMS, tx.init(SCHED_PARAMS), SCHED_PARAMS)
    assert jax.tree.map(jnp.shape, u) == jax.tree.map(jnp.shape, SCHED_PARAMS)


# --------------------------------------------------------------------------------------------
# 6. The names left out of the lists (NOT_LISTED) and the line searches' integer params
# --------------------------------------------------------------------------------------------

DP_PARAMS = {"w": 1.5, "b": jnp.array([0.5, -1.0, 2.0])}
DP_GRADS = {"w": jnp.array([0.25, -1.0, 3.0, 0.5]), "b": jnp.arange(12.0).reshape(4, 3) / 7}  # batch of 4


@pytest.mark.parametrize("jit", [True, False], ids=["jit", "eager"])
def test_dpsgd_python_float_params_leaf_gives_optax_numbers(jit):
    ours = gradtx.dpsgd(0.1, l2_norm_clip=1.0, noise_multiplier=0.5, seed=3, momentum=0.9)
    ref = optax.contrib.dpsgd(0.1, l2_norm_clip=1.0, noise_multiplier=0.5, seed=3, momentum=0.9)
    update = jax.jit(ours.update) if jit else ours.update
    outs, _ = _run(ours, DP_GRADS, DP_PARAMS, update)
    refs, _ = _run(ref, DP_GRADS, jax.tree.map(jnp.asarray, DP_PARAMS), jax.jit(ref.update))
    assert outs[0]["w"].shape == () and outs[0]["w"].dtype == jnp.float32
    chex.assert_trees_all_close(outs, refs, rtol=RTOL, atol=ATOL)
    with pytest.raises(TypeError, match=r"params\['n'\] has dtype int32"):
        ours.init({"b": jnp.ones(2), "n": 3})


def test_scale_gradient_on_a_python_float_as_optax():
    for m in (gradtx, optax):
        assert m.scale_gradient(1.5, 0.5) == 1.5
    ours = jax.grad(lambda x: gradtx.scale_gradient(x, 0.5) ** 2)(1.5)
    chex.assert_trees_all_equal(ours, jax.grad(lambda x: optax.scale_gradient(x, 0.5) ** 2)(1.5))
    assert float(ours) == 1.5  # 0.5 * 2x


@pytest.mark.parametrize("leaf", [jnp.array([3, -2], jnp.int32), 3, jnp.array([True])], ids=["int32", "pyint", "bool"])
def test_backtracking_linesearch_keeping_the_gradient_rejects_integer_params(leaf):
    params = {"b": jnp.ones(2), "n": leaf}
    with pytest.raises(TypeError, match=r"scale_by_backtracking_linesearch.init: params\['n'\] has dtype"):
        gradtx.scale_by_backtracking_linesearch(5, store_grad=True).init(params)
    state = gradtx.scale_by_backtracking_linesearch(5).init({"n": leaf})  # no gradient kept: a float state
    assert state.value.dtype == state.learning_rate.dtype == jnp.float32
