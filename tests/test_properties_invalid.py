"""Property-based tests (hypothesis): invalid hyper-parameters are rejected with a message naming them.

For every factory (optimizer aliases, transforms, wrappers, schedules) and every argument whose
range it documents, hypothesis draws a value *outside* that range (below/above the bounds, NaN,
infinities, wrong types: strings, bools, complex numbers, arrays, non-integral numbers for
integers, non-floating dtypes, ...) while every other argument stays valid, and the test asserts
`ValueError` or `TypeError` with the argument's name in the message. The documented ranges were
read from each factory's docstring and its checks (`gradtx._validation`, `gradtx.optimizers._checks`).

A second table checks the other side of each range: documented boundary values are accepted.
Regression tests for gaps these properties found (now fixed) close the module.
"""

from __future__ import annotations

import collections
import math
import re
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gradtx

EXAMPLES: collections.Counter[str] = collections.Counter()


@pytest.fixture(scope="module", autouse=True)
def _report_example_count(request):
    yield
    line = (
        f"test_properties_invalid: {sum(EXAMPLES.values())} invalid-input examples over "
        f"{len(EXAMPLES)} (factory, argument) cases"
    )
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:  # pragma: no cover
        print(line)
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        reporter.write_line(line)


# --------------------------------------------------------------------------------------------
# Invalid values, by documented range
# --------------------------------------------------------------------------------------------

_NAN, _INF = math.nan, math.inf
# Strings from an alphabet that cannot spell an argument name (so `match` is never fooled).
_TEXT = st.text(alphabet="xyz0123456789 .-", max_size=6)
NOT_REAL = st.one_of(
    _TEXT,
    st.booleans(),
    st.complex_numbers(min_magnitude=1e-3, max_magnitude=1e3, allow_nan=False, allow_infinity=False),
    st.lists(st.floats(-1.0, 1.0), min_size=1, max_size=2),
    st.just(np.ones(2, np.float32)),
    st.just(jnp.zeros((2, 1))),
    st.just(np.bool_(True)),
)
_NEG = st.one_of(
    st.floats(max_value=0.0, exclude_max=True),  # negative floats, -inf included
    st.integers(max_value=-1),
    st.floats(-1e3, -1e-3).map(np.float32),
    st.floats(-1e3, -1e-3).map(jnp.asarray),
    st.integers(-100, -1).map(np.int64),
)
# inject_hyperparams casts float hyper-parameters to float32 before the inner factory checks them,
# so a negative float smaller in magnitude than float32's tiniest subnormal becomes -0.0 (a valid
# value); its bad negatives are therefore kept representable.
_NEG_I32 = st.one_of(st.floats(max_value=-1e-30), st.integers(-(2**31), -1))
NONNEG_BAD = st.one_of(_NEG, st.sampled_from([_NAN, _INF]), NOT_REAL)  # documented: real >= 0
LR_BAD = st.one_of(NONNEG_BAD, st.none())  # real >= 0 or a schedule
POS_BAD = st.one_of(NONNEG_BAD, st.sampled_from([0.0, -0.0, 0, np.float32(0.0)]))  # real > 0
UNIT_OPEN_BAD = st.one_of(NONNEG_BAD, st.floats(min_value=1.0), st.integers(min_value=1))  # [0, 1)
UNIT_CLOSED_BAD = st.one_of(  # [0, 1]
    NONNEG_BAD, st.floats(min_value=1.0, exclude_min=True), st.integers(min_value=2)
)
FACTOR_BAD = st.one_of(POS_BAD, st.floats(min_value=1.0, exclude_min=True))  # (0, 1]
FINITE_BAD = st.one_of(st.sampled_from([_NAN, _INF, -_INF]), NOT_REAL)  # any finite real
_NOT_INT = st.one_of(st.floats(allow_nan=False), st.booleans(), _TEXT, st.none())
INT_GE1_BAD = st.one_of(st.integers(max_value=0), st.integers(-50, 0).map(np.int32), _NOT_INT)
INT_GE0_BAD = st.one_of(st.integers(max_value=-1), st.integers(-50, -1).map(np.int64), _NOT_INT)
BOOL_BAD = st.one_of(st.integers(), st.floats(allow_nan=False), _TEXT, st.none())
DTYPE_BAD = st.one_of(
    st.sampled_from([jnp.int32, np.int8, "uint8", jnp.bool_, jnp.complex64, "complex64", "not_a_dtype", 3]),
)
# mu_dtype / accumulator_dtype of the moment-keeping transformations accept complex dtypes (as optax)
STATE_DTYPE_BAD = st.sampled_from([jnp.int32, np.int8, "uint8", jnp.bool_, "not_a_dtype", 3])
TX_BAD = st.one_of(st.integers(), _TEXT, st.none(), st.just(lambda g: g), st.just((1, 2)))
CALLABLE_BAD = st.one_of(st.integers(), st.floats(allow_nan=False), _TEXT)
KEY_BAD = st.one_of(st.floats(allow_nan=False), _TEXT, st.lists(st.integers(), max_size=2))


class Case(NamedTuple):
    owner: str
    arg: str  # the argument the message must name
    build: Callable[[Any], Any]  # bad value -> call that must raise
    bad: st.SearchStrategy


def _kw(factory: Callable, arg: str, /, **base: Any) -> Callable[[Any], Any]:
    """Call `factory(**base, arg=bad)`."""
    return lambda bad: factory(**{**base, arg: bad})


def _cases_for(owner: str, factory: Callable, base: dict[str, Any], ranges: dict[str, st.SearchStrategy]):
    return [Case(owner, arg, _kw(factory, arg, **base), bad) for arg, bad in ranges.items()]


_SGD = gradtx.sgd(0.1)
_P = {"w": jnp.ones(2), "b": jnp.ones(3)}
_ADAM_RANGES = dict(learning_rate=LR_BAD, b1=UNIT_OPEN_BAD, b2=UNIT_OPEN_BAD, eps=NONNEG_BAD,
                    eps_root=NONNEG_BAD, mu_dtype=STATE_DTYPE_BAD, nesterov=BOOL_BAD)
_LR = dict(learning_rate=0.1)


def _nesterov_without_momentum(factory):
    return lambda flag: factory(0.1, momentum=None, nesterov=flag)


def _sgdr(bad):
    return gradtx.sgdr_schedule([dict(init_value=0.0, peak_value=1.0, warmup_steps=bad, decay_steps=50)])


CASES: list[Case] = [
    # ---- optimizer aliases -----------------------------------------------------------------
    *_cases_for("sgd", gradtx.sgd, dict(_LR, momentum=0.9), dict(
        learning_rate=LR_BAD, momentum=UNIT_CLOSED_BAD, nesterov=BOOL_BAD, accumulator_dtype=STATE_DTYPE_BAD)),
    Case("sgd", "nesterov", _nesterov_without_momentum(gradtx.sgd), st.just(True)),
    *_cases_for("adagrad", gradtx.adagrad, _LR, dict(
        learning_rate=LR_BAD, initial_accumulator_value=NONNEG_BAD, eps=NONNEG_BAD)),
    *_cases_for("rmsprop", gradtx.rmsprop, dict(_LR, momentum=0.9), dict(
        learning_rate=LR_BAD, decay=UNIT_CLOSED_BAD, eps=NONNEG_BAD, initial_scale=NONNEG_BAD,
        eps_in_sqrt=BOOL_BAD, centered=BOOL_BAD, momentum=UNIT_CLOSED_BAD, nesterov=BOOL_BAD,
        bias_correction=BOOL_BAD)),
    Case("rmsprop(bias_correction=True)", "decay",
         _kw(gradtx.rmsprop, "decay", learning_rate=0.1, bias_correction=True), UNIT_OPEN_BAD),
    Case("rmsprop", "nesterov", _nesterov_without_momentum(gradtx.rmsprop), st.just(True)),
    *_cases_for("adam", gradtx.adam, _LR, _ADAM_RANGES),
    *_cases_for("nadam", gradtx.nadam, _LR, _ADAM_RANGES),
    *_cases_for("adamw", gradtx.adamw, _LR, dict(_ADAM_RANGES, weight_decay=NONNEG_BAD)),
    *_cases_for("nadamw", gradtx.nadamw, _LR, dict(_ADAM_RANGES, weight_decay=NONNEG_BAD)),
    *_cases_for("amsgrad", gradtx.amsgrad, _LR, dict(
        learning_rate=LR_BAD, b1=UNIT_OPEN_BAD, b2=UNIT_OPEN_BAD, eps=NONNEG_BAD, eps_root=NONNEG_BAD,
        mu_dtype=STATE_DTYPE_BAD, bias_correction_mu=BOOL_BAD, bias_correction_nu=BOOL_BAD)),
    *_cases_for("adamax", gradtx.adamax, _LR, dict(
        learning_rate=LR_BAD, b1=UNIT_OPEN_BAD, b2=UNIT_OPEN_BAD, eps=NONNEG_BAD)),
    *_cases_for("lion", gradtx.lion, _LR, dict(
        learning_rate=LR_BAD, b1=UNIT_CLOSED_BAD, b2=UNIT_CLOSED_BAD, mu_dtype=STATE_DTYPE_BAD,
        weight_decay=NONNEG_BAD)),
    *_cases_for("lamb", gradtx.lamb, _LR, dict(
        learning_rate=LR_BAD, b1=UNIT_OPEN_BAD, b2=UNIT_OPEN_BAD, eps=NONNEG_BAD, eps_root=NONNEG_BAD,
        weight_decay=NONNEG_BAD)),
    # ---- transforms ------------------------------------------------------------------------
    Case("clip", "max_delta", gradtx.clip, NONNEG_BAD),
    Case("clip_by_norm", "max_norm", gradtx.clip_by_norm, POS_BAD),
    Case("clip_by_global_norm", "max_norm", gradtx.clip_by_global_norm, NONNEG_BAD),
    *_cases_for("trace", gradtx.trace, dict(decay=0.9), dict(
        decay=UNIT_CLOSED_BAD, nesterov=BOOL_BAD, accumulator_dtype=STATE_DTYPE_BAD)),
    *_cases_for("ema", gradtx.ema, dict(decay=0.9), dict(
        decay=UNIT_CLOSED_BAD, debias=BOOL_BAD, accumulator_dtype=STATE_DTYPE_BAD)),
    *[
        case
        for owner, factory in [("scale_by_rms", gradtx.scale_by_rms), ("scale_by_stddev", gradtx.scale_by_stddev)]
        for case in [
            *_cases_for(owner, factory, {}, dict(
                decay=UNIT_CLOSED_BAD, eps=NONNEG_BAD, initial_scale=NONNEG_BAD, eps_in_sqrt=BOOL_BAD,
                bias_correction=BOOL_BAD)),
            Case(f"{owner}(bias_correction=True)", "decay", _kw(factory, "decay", bias_correction=True),
                 UNIT_OPEN_BAD),
        ]
    ],
    *_cases_for("scale_by_rss", gradtx.scale_by_rss, {}, dict(initial_accumulator_value=NONNEG_BAD, eps=NONNEG_BAD)),
    *_cases_for("scale_by_adam", gradtx.scale_by_adam, {},
                {k: v for k, v in _ADAM_RANGES.items() if k != "learning_rate"}),
    *_cases_for("scale_by_amsgrad", gradtx.scale_by_amsgrad, {}, dict(
        b1=UNIT_OPEN_BAD, b2=UNIT_OPEN_BAD, eps=NONNEG_BAD, eps_root=NONNEG_BAD, mu_dtype=STATE_DTYPE_BAD,
        bias_correction_mu=BOOL_BAD, bias_correction_nu=BOOL_BAD)),
    *_cases_for("scale_by_adamax", gradtx.scale_by_adamax, {}, dict(
        b1=UNIT_OPEN_BAD, b2=UNIT_OPEN_BAD, eps=NONNEG_BAD)),
    *_cases_for("scale_by_lion", gradtx.scale_by_lion, {}, dict(
        b1=UNIT_CLOSED_BAD, b2=UNIT_CLOSED_BAD, mu_dtype=STATE_DTYPE_BAD, smooth_beta=POS_BAD,
        mode=st.one_of(_TEXT, st.integers(), st.none(), st.sampled_from(["Hard", "sign", "tanh"])))),
    Case("add_decayed_weights", "weight_decay", gradtx.add_decayed_weights, NONNEG_BAD),
    *_cases_for("scale_by_trust_ratio", gradtx.scale_by_trust_ratio, {}, dict(
        min_norm=NONNEG_BAD, trust_coefficient=NONNEG_BAD, eps=NONNEG_BAD)),
    Case("scale", "step_size", gradtx.scale, FINITE_BAD),
    Case("scale_by_learning_rate", "learning_rate", gradtx.scale_by_learning_rate, FINITE_BAD),
    Case("scale_by_learning_rate", "flip_sign", _kw(gradtx.scale_by_learning_rate, "flip_sign", learning_rate=0.1),
         BOOL_BAD),
    Case("scale_by_schedule", "step_size_fn", gradtx.scale_by_schedule, CALLABLE_BAD),
    *_cases_for("add_noise", gradtx.add_noise, dict(eta=0.1, gamma=0.55, key=0), dict(
        eta=NONNEG_BAD, gamma=NONNEG_BAD, key=KEY_BAD)),
    # ---- wrappers --------------------------------------------------------------------------
    *_cases_for("MultiSteps", gradtx.MultiSteps, dict(opt=_SGD, every_k_schedule=2), dict(
        opt=TX_BAD, every_k_schedule=INT_GE1_BAD, use_grad_mean=BOOL_BAD,
        should_skip_update_fn=CALLABLE_BAD, accumulator_dtype=DTYPE_BAD)),
    *_cases_for("apply_if_finite", gradtx.apply_if_finite, dict(inner=_SGD, max_consecutive_errors=3), dict(
        inner=TX_BAD, max_consecutive_errors=INT_GE1_BAD)),
    *_cases_for("masked", gradtx.masked, dict(inner=_SGD, mask={"w": True, "b": False}), dict(
        inner=TX_BAD, mask_compatible_extra_args=BOOL_BAD)),
    Case("masked", "mask", lambda leaf: gradtx.masked(_SGD, {"w": True, "b": leaf}),
         st.one_of(st.integers(), st.floats(), _TEXT, st.none().map(lambda _: [1]))),
    Case("multi_transform", "transforms", lambda bad: gradtx.multi_transform(bad, {"w": "a"}),
         st.one_of(st.just({}), st.integers(), _TEXT, st.lists(st.integers(), max_size=2))),
    Case("multi_transform", "transforms", lambda bad: gradtx.multi_transform({"a": bad}, {"w": "a"}), TX_BAD),
    Case("multi_transform", "label", lambda bad: gradtx.multi_transform({"a": _SGD}, {"w": "a", "b": bad}),
         st.one_of(st.integers(), st.sampled_from(["b", "A", "aa"]))),
    Case("multi_transform", "mask_compatible_extra_args",
         lambda bad: gradtx.multi_transform({"a": _SGD}, {"w": "a"}, mask_compatible_extra_args=bad), BOOL_BAD),
    Case("flatten", "inner", gradtx.flatten, TX_BAD),
    *_cases_for("reduce_on_plateau", gradtx.reduce_on_plateau, {}, dict(
        factor=FACTOR_BAD, patience=INT_GE0_BAD, rtol=UNIT_CLOSED_BAD, atol=NONNEG_BAD, cooldown=INT_GE0_BAD,
        accumulation_size=INT_GE1_BAD, min_scale=UNIT_CLOSED_BAD)),
    Case("reduce_on_plateau", "rtol", lambda zero: gradtx.reduce_on_plateau(rtol=zero, atol=zero),
         st.sampled_from([0.0, 0, -0.0])),
    Case("inject_hyperparams", "hyperparam_dtype", lambda bad: gradtx.inject_hyperparams(gradtx.adam, hyperparam_dtype=bad),
         DTYPE_BAD),
    Case("inject_hyperparams", "static_args", lambda bad: gradtx.inject_hyperparams(gradtx.adam, static_args=bad),
         st.sampled_from(["lr", "beta1", ("b1", "momentum")])),
    Case("inject_hyperparams", "inner_factory", gradtx.inject_hyperparams, CALLABLE_BAD),
    # (integers outside the int32 range: see the regression test at the end of the module)
    Case("inject_hyperparams(adam)", "learning_rate", lambda bad: gradtx.inject_hyperparams(gradtx.adam)(bad),
         st.one_of(_NEG_I32, st.sampled_from([_NAN, _INF]), _TEXT)),
    Case("inject_hyperparams(adam)", "b1", lambda bad: gradtx.inject_hyperparams(gradtx.adam)(0.1, b1=bad),
         st.one_of(_NEG_I32, st.floats(min_value=1.0), st.integers(1, 2**31 - 1))),
    Case("inject_stateful_hyperparams(sgd)", "momentum",
         lambda bad: gradtx.inject_stateful_hyperparams(gradtx.sgd)(0.1, momentum=bad),
         st.one_of(_NEG_I32, st.floats(min_value=1.001))),  # (1 + 2**-52 would round to a valid 1.0)
    # ---- schedules -------------------------------------------------------------------------
    Case("constant_schedule", "value", gradtx.constant_schedule, FINITE_BAD),
    *_cases_for("polynomial_schedule", gradtx.polynomial_schedule,
                dict(init_value=1.0, end_value=0.0, power=1.0, transition_steps=10), dict(
        init_value=FINITE_BAD, end_value=FINITE_BAD, power=POS_BAD, transition_steps=INT_GE1_BAD,
        transition_begin=INT_GE0_BAD)),
    *_cases_for("linear_schedule", gradtx.linear_schedule,
                dict(init_value=1.0, end_value=0.0, transition_steps=10), dict(
        init_value=FINITE_BAD, end_value=FINITE_BAD, transition_steps=INT_GE1_BAD, transition_begin=INT_GE0_BAD)),
    *_cases_for("warmup_constant_schedule", gradtx.warmup_constant_schedule,
                dict(init_value=0.0, peak_value=1.0, warmup_steps=5), dict(
        init_value=FINITE_BAD, peak_value=FINITE_BAD, warmup_steps=INT_GE0_BAD)),
    *_cases_for("exponential_decay", gradtx.exponential_decay,
                dict(init_value=1.0, transition_steps=10, decay_rate=0.5), dict(
        init_value=FINITE_BAD, transition_steps=INT_GE1_BAD, decay_rate=POS_BAD, transition_begin=INT_GE0_BAD,
        staircase=BOOL_BAD, end_value=FINITE_BAD)),
    *_cases_for("warmup_exponential_decay_schedule", gradtx.warmup_exponential_decay_schedule,
                dict(init_value=0.0, peak_value=1.0, warmup_steps=5, transition_steps=10, decay_rate=0.5), dict(
        peak_value=FINITE_BAD, warmup_steps=INT_GE0_BAD, transition_steps=INT_GE1_BAD, decay_rate=POS_BAD,
        transition_begin=INT_GE0_BAD)),
    Case("piecewise_constant_schedule", "boundaries_and_scales",
         lambda step: gradtx.piecewise_constant_schedule(1.0, {5: 0.5, step: 0.1}),
         st.one_of(st.integers(max_value=-1), st.floats(0.5, 100.0).filter(lambda x: not x.is_integer()),
                   _TEXT.filter(bool))),
    Case("piecewise_constant_schedule", "boundaries_and_scales",
         lambda scale: gradtx.piecewise_constant_schedule(1.0, {5: 0.5, 10: scale}), NONNEG_BAD),
    Case("piecewise_constant_schedule", "boundaries_and_scales",
         lambda bad: gradtx.piecewise_constant_schedule(1.0, bad),
         st.one_of(st.integers(), _TEXT, st.lists(st.integers(0, 9), min_size=1, max_size=3))),
    Case("piecewise_constant_schedule", "init_value", lambda bad: gradtx.piecewise_constant_schedule(bad), FINITE_BAD),
    Case("piecewise_interpolate_schedule", "interpolate_type",
         lambda bad: gradtx.piecewise_interpolate_schedule(bad, 1.0, {5: 0.5}),
         st.one_of(_TEXT, st.sampled_from(["Linear", "cos", "constant"]))),
    Case("piecewise_interpolate_schedule", "boundaries_and_scales",
         lambda step: gradtx.piecewise_interpolate_schedule("linear", 1.0, {step: 0.5}),
         st.integers(max_value=-1)),
    *_cases_for("cosine_decay_schedule", gradtx.cosine_decay_schedule, dict(init_value=1.0, decay_steps=10), dict(
        init_value=FINITE_BAD, decay_steps=INT_GE1_BAD, alpha=FINITE_BAD, exponent=POS_BAD)),
    *_cases_for("warmup_cosine_decay_schedule", gradtx.warmup_cosine_decay_schedule,
                dict(init_value=0.0, peak_value=1.0, warmup_steps=5, decay_steps=50), dict(
        init_value=FINITE_BAD, peak_value=FINITE_BAD, warmup_steps=INT_GE0_BAD, decay_steps=INT_GE1_BAD,
        end_value=FINITE_BAD, exponent=POS_BAD)),
    Case("warmup_cosine_decay_schedule", "decay_steps",
         lambda wd: gradtx.warmup_cosine_decay_schedule(0.0, 1.0, warmup_steps=wd[0], decay_steps=wd[1]),
         st.integers(1, 1000).flatmap(lambda w: st.tuples(st.just(w), st.integers(1, w)))),
    Case("sgdr_schedule", "warmup_steps", _sgdr, INT_GE0_BAD),
    Case("sgdr_schedule", "cosine_kwargs", gradtx.sgdr_schedule,
         st.one_of(st.just([]), st.just(()), st.lists(st.integers(), min_size=1, max_size=2))),
    *[
        case
        for owner, factory in [("linear_onecycle_schedule", gradtx.linear_onecycle_schedule),
                               ("cosine_onecycle_schedule", gradtx.cosine_onecycle_schedule)]
        for case in _cases_for(owner, factory, dict(transition_steps=100, peak_value=1.0), dict(
            transition_steps=INT_GE1_BAD, peak_value=FINITE_BAD, pct_start=UNIT_CLOSED_BAD, div_factor=POS_BAD,
            final_div_factor=POS_BAD))
    ],
    Case("linear_onecycle_schedule", "pct_final",
         lambda bad: gradtx.linear_onecycle_schedule(100, 1.0, pct_start=0.3, pct_final=bad),
         st.one_of(st.floats(max_value=0.3, exclude_max=True), st.floats(min_value=1.0, exclude_min=True),
                   st.just(_NAN))),
    Case("join_schedules", "boundaries",
         lambda b: gradtx.join_schedules([gradtx.constant_schedule(1.0), gradtx.constant_schedule(2.0)], [b]),
         st.one_of(st.integers(max_value=-1), st.floats(0.5, 10.0), _TEXT)),
    Case("join_schedules", "boundaries",
         lambda ab: gradtx.join_schedules([gradtx.constant_schedule(float(i)) for i in range(3)], list(ab)),
         st.tuples(st.integers(1, 100), st.integers(0, 99)).filter(lambda ab: ab[0] > ab[1])),
    Case("join_schedules", "boundaries",
         lambda n: gradtx.join_schedules([gradtx.constant_schedule(1.0)] * 2, list(range(n))),
         st.sampled_from([0, 2, 3])),
    Case("join_schedules", "schedules", lambda bad: gradtx.join_schedules([bad], []), CALLABLE_BAD),
]


def _case_id(case: Case) -> str:
    return f"{case.owner}-{case.arg}"


def _ids_unique(cases: list[Case]) -> list[str]:
    seen: collections.Counter[str] = collections.Counter()
    ids = []
    for case in cases:
        base = _case_id(case)
        seen[base] += 1
        ids.append(base if seen[base] == 1 else f"{base}-{seen[base]}")
    return ids


_IDS = _ids_unique(CASES)


# inject_hyperparams casts huge floats to float32 (inf, with a numpy warning) before rejecting them.
@pytest.mark.parametrize("case", CASES, ids=_IDS)
@settings(max_examples=8, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(data=st.data())
def test_invalid_hyperparameter_raises_naming_the_argument(case, data):
    bad = data.draw(case.bad, label=case.arg)
    EXAMPLES[_IDS[CASES.index(case)]] += 1
    with pytest.raises((ValueError, TypeError), match=rf"\b{re.escape(case.arg)}\b"):
        case.build(bad)


def test_every_factory_with_documented_ranges_is_covered():
    """Every public transformation / schedule factory taking hyper-parameters appears above."""
    covered = {c.owner.split("(")[0] for c in CASES}
    expected = {
        "sgd", "adagrad", "rmsprop", "adam", "nadam", "adamw", "nadamw", "amsgrad", "adamax", "lion", "lamb",
        "clip", "clip_by_norm", "clip_by_global_norm", "trace", "ema", "scale_by_rms", "scale_by_stddev",
        "scale_by_rss", "scale_by_adam", "scale_by_amsgrad", "scale_by_adamax", "scale_by_lion",
        "add_decayed_weights", "scale_by_trust_ratio", "scale", "scale_by_learning_rate", "scale_by_schedule",
        "add_noise", "MultiSteps", "apply_if_finite", "masked", "multi_transform", "flatten", "reduce_on_plateau",
        "inject_hyperparams", "inject_stateful_hyperparams", *gradtx.schedules.__all__,
    }
    assert expected <= covered, sorted(expected - covered)


# --------------------------------------------------------------------------------------------
# The other side: documented boundary values are accepted
# --------------------------------------------------------------------------------------------

VALID_EDGES: dict[str, Callable[[], Any]] = {
    "adam b1=b2=eps=lr=0": lambda: gradtx.adam(0.0, b1=0.0, b2=0.0, eps=0.0, eps_root=0.0),
    "adam mu_dtype=bfloat16": lambda: gradtx.adam(0.1, mu_dtype=jnp.bfloat16),
    "adam numpy/jax scalars": lambda: gradtx.adam(np.float32(0.1), b1=jnp.asarray(0.9), b2=np.float64(0.99)),
    "adam schedule lr": lambda: gradtx.adam(gradtx.linear_schedule(0.1, 0.0, 10)),
    "sgd momentum=1, nesterov": lambda: gradtx.sgd(0.1, momentum=1.0, nesterov=True),
    "sgd momentum=0, bf16 accumulator": lambda: gradtx.sgd(0.1, momentum=0.0, accumulator_dtype=jnp.bfloat16),
    "rmsprop decay=1 (no bias correction)": lambda: gradtx.rmsprop(0.1, decay=1.0),
    "rmsprop decay=0 with bias correction": lambda: gradtx.rmsprop(0.1, decay=0.0, bias_correction=True),
    "rmsprop momentum=1": lambda: gradtx.rmsprop(0.1, momentum=1.0, nesterov=True, centered=True),
    "adagrad zeros": lambda: gradtx.adagrad(0, initial_accumulator_value=0.0, eps=0.0),
    "lion b1=b2=1": lambda: gradtx.lion(0.1, b1=1.0, b2=1.0, weight_decay=0.0),
    "lion b1=b2=0": lambda: gradtx.lion(0.1, b1=0.0, b2=0.0),
    "lamb wd schedule": lambda: gradtx.lamb(0.1, weight_decay=gradtx.constant_schedule(0.01)),
    "clip 0": lambda: gradtx.clip(0.0),
    "clip_by_global_norm 0": lambda: gradtx.clip_by_global_norm(0),
    "clip_by_norm tiny": lambda: gradtx.clip_by_norm(1e-30),
    "trace decay=1, f16 accumulator": lambda: gradtx.trace(1.0, accumulator_dtype=jnp.float16),
    "ema decay=0 and 1": lambda: (gradtx.ema(0.0), gradtx.ema(1, debias=False)),
    "scale_by_rms decay=1": lambda: gradtx.scale_by_rms(decay=1.0, eps=0.0),
    "scale_by_stddev decay=0 bc": lambda: gradtx.scale_by_stddev(decay=0.0, bias_correction=True),
    "scale_by_lion smooth": lambda: gradtx.scale_by_lion(1.0, 1.0, mode="smooth", smooth_beta=1e-9),
    "scale negative": lambda: gradtx.scale(-1e30),
    "scale_by_learning_rate None / negative": lambda: (gradtx.scale_by_learning_rate(None),
                                                       gradtx.scale_by_learning_rate(-0.1, flip_sign=False)),
    "add_noise zero": lambda: gradtx.add_noise(0.0, 0.0, key=jax.random.key(0)),
    "MultiSteps k=1, f16/None accumulator": lambda: (gradtx.MultiSteps(_SGD, 1, accumulator_dtype=jnp.float16),
                                                    gradtx.MultiSteps(_SGD, np.int32(1), accumulator_dtype=None)),
    "apply_if_finite 1": lambda: gradtx.apply_if_finite(_SGD, 1),
    "masked numpy bools": lambda: gradtx.masked(_SGD, {"w": np.bool_(True), "b": False}),
    "reduce_on_plateau edges": lambda: gradtx.reduce_on_plateau(factor=1.0, patience=0, rtol=1.0, atol=0.0,
                                                                cooldown=0, accumulation_size=1, min_scale=1.0),
    "reduce_on_plateau rtol=0 atol>0": lambda: gradtx.reduce_on_plateau(rtol=0.0, atol=1e-9),
    "inject_hyperparams f16": lambda: gradtx.inject_hyperparams(gradtx.adam, hyperparam_dtype=jnp.float16)(0.1),
    "polynomial T=1": lambda: gradtx.polynomial_schedule(1.0, 0.0, 1e-9, 1, transition_begin=0),
    "warmup_constant W=0": lambda: gradtx.warmup_constant_schedule(0.0, 1.0, 0),
    "exponential growth": lambda: gradtx.exponential_decay(1.0, 1, 2.0, end_value=10.0),
    "warmup_cosine W=0, T=1": lambda: gradtx.warmup_cosine_decay_schedule(0.0, 1.0, 0, 1),
    "piecewise zero scale, step 0": lambda: gradtx.piecewise_constant_schedule(1.0, {0: 0.0, 3: 1.0}),
    "onecycle pct edges": lambda: (gradtx.linear_onecycle_schedule(1, 1.0, pct_start=0.0, pct_final=0.0),
                                   gradtx.cosine_onecycle_schedule(1, 1.0, pct_start=1.0)),
    "join equal boundaries": lambda: gradtx.join_schedules([gradtx.constant_schedule(float(i)) for i in range(3)],
                                                           [0, 0]),
}


@pytest.mark.parametrize("name", sorted(VALID_EDGES))
def test_documented_boundary_values_are_accepted(name):
    VALID_EDGES[name]()


# --------------------------------------------------------------------------------------------
# Regressions of gaps found by these tests (fixed)
# --------------------------------------------------------------------------------------------


def test_multisteps_accepts_bfloat16_accumulator():
    # Regression: `_validation.check_dtype` once used numpy's notion of floating (no bfloat16).
    ms = gradtx.MultiSteps(_SGD, 2, accumulator_dtype=jnp.bfloat16)
    state = ms.init(_P)
    assert {leaf.dtype for leaf in jax.tree.leaves(state.acc_grads)} == {jnp.dtype(jnp.bfloat16)}


def test_inject_hyperparams_accepts_bfloat16_hyperparam_dtype():
    tx = gradtx.inject_hyperparams(gradtx.sgd, hyperparam_dtype=jnp.bfloat16)(0.1)
    assert tx.init(_P).hyperparams["learning_rate"].dtype == jnp.bfloat16


@settings(max_examples=10, deadline=None, derandomize=True, database=None)
@given(leaf=st.one_of(st.integers(0, 3), st.floats(0.0, 1.0), _TEXT))
def test_add_decayed_weights_rejects_non_boolean_mask_leaves(leaf):
    with pytest.raises((ValueError, TypeError), match=r"\bmask\b"):
        tx = gradtx.add_decayed_weights(0.1, mask={"w": True, "b": leaf})
        tx.update(_P, tx.init(_P), _P)


@settings(max_examples=5, deadline=None, derandomize=True, database=None)
@given(bad=st.integers(max_value=-(2**31) - 1), big=st.integers(min_value=2**31))
def test_inject_hyperparams_out_of_int32_hyperparameter_raises_naming_it(bad, big):
    # Python ints outside the int32 range reach the factory's own range check (no OverflowError)
    with pytest.raises(ValueError, match=r"\blearning_rate\b"):
        gradtx.inject_hyperparams(gradtx.adam)(bad)
    with pytest.raises(ValueError, match=r"\bb1\b"):
        gradtx.inject_hyperparams(gradtx.adam)(0.1, b1=big)
