"""Tests of gradtx.schedules: optax agreement, closed-form values, bounds and argument checks."""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gradtx

STEPS = 300
RTOL, ATOL = 2e-6, 1e-7  # float32 values; the implementations compute the same formulas

_SGDR_CYCLES = [
    dict(init_value=0.0, peak_value=1.0, warmup_steps=10, decay_steps=100),
    dict(init_value=0.1, peak_value=0.5, warmup_steps=5, decay_steps=80, end_value=0.01),
    dict(init_value=0.05, peak_value=0.25, warmup_steps=0, decay_steps=60, exponent=2.0),
]


def _join(lib):
    return lib.join_schedules(
        [lib.constant_schedule(0.1), lib.linear_schedule(0.1, 1.0, 50), lib.cosine_decay_schedule(1.0, 100)],
        [30, 80],
    )


# (id, factory name, args, kwargs); the same call is made on gradtx and on optax.
CASES = [
    ("constant", "constant_schedule", (0.3,), {}),
    ("linear", "linear_schedule", (0.1, 0.01, 100), {"transition_begin": 20}),
    ("linear_up", "linear_schedule", (0.0, 2.0, 7), {}),
    ("poly_2.5", "polynomial_schedule", (1.0, 0.01, 2.5, 150, 30), {}),
    ("poly_0.5", "polynomial_schedule", (0.3, 0.0, 0.5, 250), {}),
    ("exp", "exponential_decay", (1.0, 30, 0.7), {}),
    ("exp_stair", "exponential_decay", (0.5, 25, 0.5), {"transition_begin": 40, "staircase": True}),
    ("exp_end", "exponential_decay", (0.5, 25, 0.5), {"end_value": 0.05}),
    ("exp_grow", "exponential_decay", (0.1, 20, 1.5), {"end_value": 1.0}),
    ("pw_const", "piecewise_constant_schedule", (0.5, {50: 0.5, 120: 0.1, 200: 2.0}), {}),
    ("pw_const_unsorted", "piecewise_constant_schedule", (0.5, {200: 2.0, 50: 0.5, 0: 0.9}), {}),
    ("pw_const_none", "piecewise_constant_schedule", (0.5,), {}),
    ("pw_lin", "piecewise_interpolate_schedule", ("linear", 1.0, {40: 0.1, 100: 0.01, 250: 5.0}), {}),
    ("pw_cos", "piecewise_interpolate_schedule", ("cosine", 1.0, {40: 0.1, 100: 0.01, 250: 5.0}), {}),
    ("pw_cos_from0", "piecewise_interpolate_schedule", ("cosine", 2.0, {0: 0.5, 60: 0.25}), {}),
    ("pw_none", "piecewise_interpolate_schedule", ("linear", 0.7), {}),
    ("cosine", "cosine_decay_schedule", (0.2, 150), {}),
    ("cosine_alpha_exp", "cosine_decay_schedule", (0.2, 150), {"alpha": 0.1, "exponent": 2.0}),
    ("warmup_cosine", "warmup_cosine_decay_schedule", (0.0, 1.0, 30, 250), {"end_value": 0.01}),
    ("warmup_cosine_w0", "warmup_cosine_decay_schedule", (0.1, 0.5, 0, 200), {"exponent": 0.5}),
    ("warmup_cosine_peak0", "warmup_cosine_decay_schedule", (0.1, 0.0, 20, 200), {}),
    (
        "warmup_exp",
        "warmup_exponential_decay_schedule",
        (0.0, 1.0, 20, 30, 0.8),
        {"transition_begin": 10, "staircase": True, "end_value": 0.2},
    ),
    ("warmup_exp_smooth", "warmup_exponential_decay_schedule", (0.01, 0.3, 50, 40, 0.5), {}),
    ("warmup_constant", "warmup_constant_schedule", (0.0, 1.0, 50), {}),
    ("sgdr", "sgdr_schedule", (_SGDR_CYCLES,), {}),
    ("cos_onecycle", "cosine_onecycle_schedule", (200, 0.5), {}),
    ("cos_onecycle_args", "cosine_onecycle_schedule", (250, 1.0), {"pct_start": 0.2, "div_factor": 10.0,
                                                                  "final_div_factor": 100.0}),
    ("lin_onecycle", "linear_onecycle_schedule", (200, 0.5), {}),
    ("lin_onecycle_args", "linear_onecycle_schedule", (250, 1.0, 0.1, 0.6, 5.0, 50.0), {}),
    ("join", _join, (), {}),  # a builder taking the library module
]


def _make(lib, name, args, kwargs):
    return name(lib) if callable(name) else getattr(lib, name)(*args, **kwargs)


def _pair(name, args, kwargs):
    return _make(gradtx, name, args, kwargs), _make(optax, name, args, kwargs)


def _max_dev(ours, ref):
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    return float(np.max(np.abs(ours - ref) / (ATOL + RTOL * np.abs(ref)))), float(np.max(np.abs(ours - ref)))


@pytest.mark.parametrize(("name", "args", "kwargs"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_matches_optax(name, args, kwargs):
    ours, ref = _pair(name, args, kwargs)
    steps = jnp.arange(STEPS + 1, dtype=jnp.int32).at[-1].set(1000)
    # optax evaluated eagerly: its jitted polynomial can give NaN (see the test at the end).
    want = np.broadcast_to(np.asarray(jax.vmap(ref)(steps), np.float64), steps.shape)
    # every step 0..299 (and 1000), batched under jit
    got = np.broadcast_to(np.asarray(jax.jit(jax.vmap(ours))(steps), np.float64), steps.shape)
    chex.assert_tree_all_finite(jnp.asarray(got))
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
    # and bit for bit against optax batched under jit the same way, wherever optax is finite
    # (the fractional-power polynomials are NaN there after the transition: see the end)
    want_jit = np.broadcast_to(np.asarray(jax.jit(jax.vmap(ref))(steps)), steps.shape)
    finite = np.isfinite(want_jit)
    np.testing.assert_array_equal(got[finite], want_jit[finite].astype(np.float64))
    print(f"{getattr(name, '__name__', name)}: largest |gradtx - optax| over {STEPS} steps = {_max_dev(got, want)[1]:.3g}")
    # a few steps as Python ints (eager) and as int32 scalars through jit
    jitted = jax.jit(lambda t: ours(t))
    for index in (0, 1, 20, 30, 31, 55, 100, 150, 200, 250, STEPS):
        step = int(steps[index])
        np.testing.assert_allclose(float(ours(step)), want[index], rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(float(jitted(jnp.int32(step))), want[index], rtol=RTOL, atol=ATOL)


def test_warmup_constant_with_zero_warmup_returns_peak():
    # Documented difference from optax (which keeps init_value forever when warmup_steps == 0).
    sched = gradtx.warmup_constant_schedule(0.0, 0.7, 0)
    assert float(sched(0)) == pytest.approx(0.7)
    assert float(sched(123)) == pytest.approx(0.7)


# ------------------------------------------------------------------------------------------
# closed-form values, computed by hand in float64
# ------------------------------------------------------------------------------------------


def _close(value, expected, rel=2e-6):
    assert float(value) == pytest.approx(expected, rel=rel, abs=1e-7)


def test_linear_and_polynomial_closed_form():
    lin = gradtx.linear_schedule(0.1, 0.01, 100, transition_begin=20)
    _close(lin(0), 0.1)
    _close(lin(20), 0.1)
    _close(lin(70), 0.1 + (0.01 - 0.1) * 0.5)
    _close(lin(120), 0.01)
    _close(lin(10_000), 0.01)
    poly = gradtx.polynomial_schedule(1.0, 0.01, 2.5, 150, 30)
    for t in (0, 30, 31, 80, 179, 180, 400):
        frac = 1 - min(max(t - 30, 0), 150) / 150
        _close(poly(t), (1.0 - 0.01) * frac**2.5 + 0.01)


def test_exponential_closed_form():
    smooth = gradtx.exponential_decay(1.0, 30, 0.7)
    for t in (0, 1, 45, 299):
        _close(smooth(t), 0.7 ** (t / 30), rel=1e-5)
    stair = gradtx.exponential_decay(0.5, 25, 0.5, transition_begin=40, staircase=True)
    for t in (0, 40, 64, 65, 90, 299):
        expected = 0.5 if t <= 40 else 0.5 * 0.5 ** math.floor((t - 40) / 25)
        _close(stair(t), expected)
    bounded = gradtx.exponential_decay(0.5, 25, 0.5, end_value=0.05)
    _close(bounded(50), 0.125)
    _close(bounded(299), 0.05)  # 0.5 * 0.5**11.96 < 0.05: clipped
    grow = gradtx.exponential_decay(0.1, 20, 1.5, end_value=1.0)
    _close(grow(40), 0.1 * 1.5**2, rel=1e-5)
    _close(grow(299), 1.0)


def test_piecewise_closed_form():
    const = gradtx.piecewise_constant_schedule(0.5, {120: 0.1, 50: 0.5, 200: 2.0})
    for t, expected in ((0, 0.5), (49, 0.5), (50, 0.25), (119, 0.25), (120, 0.025), (200, 0.05)):
        _close(const(t), expected)
    lin = gradtx.piecewise_interpolate_schedule("linear", 1.0, {40: 0.1, 100: 0.01})
    # levels 1.0 -> 0.1 -> 0.001 on [0, 40) and [40, 100)
    _close(lin(20), 1.0 + (0.1 - 1.0) * 20 / 40)
    _close(lin(70), 0.1 + (0.001 - 0.1) * 30 / 60)
    _close(lin(150), 0.001)
    cos = gradtx.piecewise_interpolate_schedule("cosine", 1.0, {40: 0.1})
    _close(cos(10), 0.1 + (1.0 - 0.1) * (1 + math.cos(math.pi * 10 / 40)) / 2)
    _close(cos(20), 0.55)


def test_cosine_closed_form():
    sched = gradtx.cosine_decay_schedule(0.2, 150, alpha=0.1, exponent=2.0)
    for t in (0, 50, 75, 149, 150, 500):
        c = 0.5 * (1 + math.cos(math.pi * min(t, 150) / 150))
        _close(sched(t), 0.2 * ((1 - 0.1) * c**2 + 0.1), rel=1e-5)
    _close(gradtx.cosine_decay_schedule(1.0, 100)(50), 0.5)


def test_warmup_cosine_closed_form():
    sched = gradtx.warmup_cosine_decay_schedule(0.0, 1.0, 30, 250, end_value=0.01)
    _close(sched(0), 0.0)
    _close(sched(15), 0.5)
    _close(sched(30), 1.0)
    _close(sched(30 + 110), 0.01 + (1.0 - 0.01) * 0.5, rel=1e-5)
    _close(sched(250), 0.01, rel=1e-5)
    _close(sched(10_000), 0.01, rel=1e-5)


def test_warmup_exponential_closed_form():
    sched = gradtx.warmup_exponential_decay_schedule(0.0, 1.0, 20, 30, 0.8, transition_begin=10)
    _close(sched(10), 0.5)
    _close(sched(20), 1.0)
    _close(sched(30), 1.0)  # still within transition_begin after the warm-up
    _close(sched(20 + 10 + 45), 0.8 ** (45 / 30), rel=1e-5)


def test_onecycle_closed_form():
    peak, d, f = 0.5, 25.0, 1e4
    cos = gradtx.cosine_onecycle_schedule(200, peak)
    _close(cos(0), peak / d)
    _close(cos(30), (peak / d + peak) / 2)  # half-way up (S = 60)
    _close(cos(60), peak)
    _close(cos(130), (peak + peak / (d * f)) / 2, rel=1e-5)  # half-way down (T - S = 140)
    _close(cos(200), peak / (d * f), rel=1e-5)
    lin = gradtx.linear_onecycle_schedule(200, peak)  # knots 0, 60, 170, 200
    _close(lin(30), (peak / d + peak) / 2)
    _close(lin(60), peak)
    _close(lin(115), (peak + peak / d) / 2)
    _close(lin(185), (peak / d + peak / (d * f)) / 2, rel=1e-5)
    _close(lin(999), peak / (d * f), rel=1e-5)


def test_join_and_sgdr_closed_form():
    joined = _join(gradtx)
    _close(joined(10), 0.1)
    _close(joined(30), 0.1)
    _close(joined(55), 0.1 + 0.9 * 25 / 50)
    _close(joined(80), 1.0)
    _close(joined(130), 0.5, rel=1e-5)
    sgdr = gradtx.sgdr_schedule(_SGDR_CYCLES)
    _close(sgdr(5), 0.5)
    _close(sgdr(10), 1.0)
    _close(sgdr(100), 0.1)  # second cycle restarts from its own init_value
    _close(sgdr(105), 0.5)
    _close(sgdr(180), 0.25)  # third cycle has no warm-up
    _close(sgdr(180 + 30), 0.25 * 0.5**2, rel=1e-5)
    _close(sgdr(10_000), 0.0)


# ------------------------------------------------------------------------------------------
# jit, traced arguments, int32 counts, repr
# ------------------------------------------------------------------------------------------


class ScheduleVariantsTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_int32_counts_including_the_largest(self):
        # Every schedule in the table is constant from step 1000 on (checked against optax in
        # test_matches_optax) or, for the unbounded exponential decay, 0 in float32 by step
        # 10**6, so the largest int32 count must give the same, finite value as step 10**6.
        big = jnp.int32(jnp.iinfo(jnp.int32).max)
        scheds = [_make(gradtx, name, args, kwargs) for _, name, args, kwargs in CASES]

        def values(t):
            return [jnp.asarray(s(t), jnp.float32) for s in scheds], [
                jnp.asarray(s(jnp.int32(10**6)), jnp.float32) for s in scheds
            ]

        at_big, at_million = self.variant(values)(big)
        chex.assert_tree_all_finite(at_big)
        for case, a, b in zip([c[0] for c in CASES], at_big, at_million):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8, err_msg=case)

    @chex.variants(with_jit=True, without_jit=True)
    def test_traced_hyper_parameters(self):
        def make_and_eval(init_value, step):
            return gradtx.cosine_decay_schedule(init_value, 100, alpha=0.1)(step)

        out = self.variant(make_and_eval)(jnp.float32(0.4), jnp.int32(50))
        _close(out, 0.4 * (0.9 * 0.5 + 0.1))


def test_gradient_through_schedule_value():
    grad = jax.grad(lambda lr: gradtx.linear_schedule(lr, 0.0, 10)(jnp.int32(5)))(1.0)
    _close(grad, 0.5)


def test_repr_shows_the_call():
    assert repr(gradtx.cosine_decay_schedule(0.1, 100)) == (
        "cosine_decay_schedule(init_value=0.1, decay_steps=100, alpha=0.0, exponent=1.0)"
    )
    assert repr(gradtx.exponential_decay(1.0, 10, 0.5, staircase=True)) == (
        "exponential_decay(init_value=1.0, transition_steps=10, decay_rate=0.5, transition_begin=0, "
        "staircase=True, end_value=None)"
    )
    joined = repr(gradtx.join_schedules([gradtx.constant_schedule(1.0), gradtx.constant_schedule(2.0)], [3]))
    assert joined.startswith("join_schedules(schedules=[constant_schedule(value=1.0), constant_schedule(")


# ------------------------------------------------------------------------------------------
# invariants (hypothesis)
# ------------------------------------------------------------------------------------------

_steps = st.integers(0, 5000)
_pos = st.floats(0.0, 10.0, allow_nan=False)


@settings(max_examples=40, deadline=None)
@given(init=_pos, decay=st.integers(1, 1000), alpha=st.floats(0.0, 1.0), exponent=st.floats(0.1, 4.0),
       step=_steps)
def test_cosine_stays_in_bounds_and_never_increases(init, decay, alpha, exponent, step):
    sched = gradtx.cosine_decay_schedule(init, decay, alpha=alpha, exponent=exponent)
    now, nxt = float(sched(step)), float(sched(step + 1))
    tol = 1e-6 * (1 + init)
    assert alpha * init - tol <= now <= init + tol
    assert nxt <= now + tol


@settings(max_examples=40, deadline=None)
@given(peak=st.floats(0.0, 5.0), init_frac=st.floats(0.0, 1.0), end_frac=st.floats(0.0, 1.0),
       warmup=st.integers(0, 200), extra=st.integers(1, 800), step=_steps)
def test_warmup_cosine_stays_in_bounds(peak, init_frac, end_frac, warmup, extra, step):
    init, end = init_frac * peak, end_frac * peak
    sched = gradtx.warmup_cosine_decay_schedule(init, peak, warmup, warmup + extra, end_value=end)
    value = float(sched(step))
    tol = 1e-6 * (1 + peak)
    assert min(init, end) - tol <= value <= peak + tol
    if step >= warmup + extra:
        assert value == pytest.approx(end, abs=tol)


@settings(max_examples=40, deadline=None)
@given(init=st.floats(-3.0, 3.0), end=st.floats(-3.0, 3.0), power=st.floats(0.1, 5.0),
       steps=st.integers(1, 500), begin=st.integers(0, 100), step=_steps)
def test_polynomial_stays_between_init_and_end(init, end, power, steps, begin, step):
    value = float(gradtx.polynomial_schedule(init, end, power, steps, begin)(step))
    tol = 1e-6 * (1 + abs(init) + abs(end))
    assert min(init, end) - tol <= value <= max(init, end) + tol
    if step <= begin:
        assert value == pytest.approx(init, abs=tol)
    if step >= begin + steps:
        assert value == pytest.approx(end, abs=tol)


@settings(max_examples=40, deadline=None)
@given(init=st.floats(0.01, 5.0), rate=st.floats(0.05, 0.99), steps=st.integers(1, 300),
       staircase=st.booleans(), end_frac=st.floats(0.0, 1.0), step=_steps)
def test_exponential_decay_stays_in_bounds(init, rate, steps, staircase, end_frac, step):
    end = end_frac * init
    sched = gradtx.exponential_decay(init, steps, rate, staircase=staircase, end_value=end)
    value = float(sched(step))
    tol = 1e-6 * init
    assert end - tol <= value <= init + tol
    assert float(sched(step + 1)) <= value + tol


@settings(max_examples=40, deadline=None)
@given(init=st.floats(0.0, 2.0),
       table=st.dictionaries(st.integers(0, 400), st.floats(0.0, 3.0), max_size=5), step=_steps)
def test_piecewise_constant_is_running_product(init, table, step):
    value = float(gradtx.piecewise_constant_schedule(init, table or None)(step))
    expected = init * math.prod(s for b, s in table.items() if b <= step)
    assert value == pytest.approx(expected, rel=1e-5, abs=1e-7)


@settings(max_examples=40, deadline=None)
@given(steps=st.integers(10, 2000), peak=st.floats(0.01, 5.0), pct=st.floats(0.05, 0.95),
       div=st.floats(1.0, 100.0), final=st.floats(1.0, 1e4), frac=st.floats(0.0, 1.5))
def test_onecycle_stays_below_peak_and_above_final(steps, peak, pct, div, final, frac):
    step = int(frac * steps)
    low, tol = peak / (div * final), 1e-5 * peak
    cos = float(gradtx.cosine_onecycle_schedule(steps, peak, pct, div, final)(step))
    assert low - tol <= cos <= peak + tol
    lin = float(gradtx.linear_onecycle_schedule(steps, peak, pct, min(pct + 0.5 * (1 - pct), 1.0), div,
                                                final)(step))
    assert min(low, peak / div) - tol <= lin <= peak + tol


@settings(max_examples=30, deadline=None)
@given(b1=st.integers(0, 200), gap=st.integers(0, 200), step=_steps)
def test_join_hands_over_with_restarted_count(b1, gap, step):
    parts = [gradtx.linear_schedule(0.0, 1.0, 1000), gradtx.constant_schedule(7.0),
             gradtx.linear_schedule(1.0, 0.0, 1000)]
    joined = gradtx.join_schedules(parts, [b1, b1 + gap])
    if step < b1:
        expected = step / 1000
    elif step < b1 + gap:
        expected = 7.0
    else:
        expected = 1.0 - min(step - b1 - gap, 1000) / 1000
    assert float(joined(step)) == pytest.approx(expected, abs=1e-6)


# ------------------------------------------------------------------------------------------
# argument checks
# ------------------------------------------------------------------------------------------

BAD = [
    ("linear_schedule", (0.1, 0.0, 0), {}, ValueError, "transition_steps.*>= 1.*0"),
    ("linear_schedule", (0.1, 0.0, 10), {"transition_begin": -1}, ValueError, "transition_begin"),
    ("linear_schedule", (0.1, 0.0, 10.5), {}, TypeError, "transition_steps"),
    ("linear_schedule", (float("nan"), 0.0, 10), {}, ValueError, "init_value.*nan"),
    ("constant_schedule", (float("inf"),), {}, ValueError, "value.*finite"),
    ("constant_schedule", ("0.1",), {}, TypeError, "value"),
    ("polynomial_schedule", (1.0, 0.0, 0.0, 10), {}, ValueError, r"power must be in \(0, inf\).*0\.0"),
    ("polynomial_schedule", (1.0, 0.0, 1.0, -5), {}, ValueError, "transition_steps.*-5"),
    ("exponential_decay", (1.0, 0, 0.5), {}, ValueError, "transition_steps"),
    ("exponential_decay", (1.0, 10, 0.0), {}, ValueError, r"decay_rate must be in \(0, inf\), got 0\.0"),
    ("exponential_decay", (1.0, 10, -0.5), {}, ValueError, "decay_rate"),
    ("exponential_decay", (1.0, 10, 0.5), {"staircase": 1}, TypeError, "staircase"),
    ("exponential_decay", (1.0, 10, 0.5), {"end_value": float("nan")}, ValueError, "end_value"),
    ("piecewise_constant_schedule", (1.0, {-1: 0.5}), {}, ValueError, "boundar.*-1"),
    ("piecewise_constant_schedule", (1.0, {10: -0.5}), {}, ValueError, "scale.*-0.5"),
    ("piecewise_constant_schedule", (1.0, [(10, 0.5)]), {}, TypeError, "boundaries_and_scales"),
    ("piecewise_interpolate_schedule", ("quadratic", 1.0), {}, ValueError, "interpolate_type.*quadratic"),
    ("piecewise_interpolate_schedule", ("linear", 1.0, {5: -1.0}), {}, ValueError, "scale"),
    ("cosine_decay_schedule", (0.1, 0), {}, ValueError, "decay_steps.*>= 1.*0"),
    ("cosine_decay_schedule", (0.1, 10), {"exponent": 0.0}, ValueError, "exponent"),
    ("warmup_cosine_decay_schedule", (0.0, 1.0, -1, 10), {}, ValueError, "warmup_steps.*-1"),
    ("warmup_cosine_decay_schedule", (0.0, 1.0, 10, 10), {}, ValueError, "decay_steps.*> warmup_steps"),
    ("warmup_exponential_decay_schedule", (0.0, 1.0, 5, 0, 0.5), {}, ValueError, "transition_steps"),
    ("warmup_exponential_decay_schedule", (0.0, 1.0, -2, 10, 0.5), {}, ValueError, "warmup_steps"),
    ("warmup_constant_schedule", (0.0, 1.0, -3), {}, ValueError, "warmup_steps.*-3"),
    ("cosine_onecycle_schedule", (0, 1.0), {}, ValueError, "transition_steps"),
    ("cosine_onecycle_schedule", (100, 1.0), {"pct_start": 1.5}, ValueError, r"pct_start.*\[0, 1\].*1\.5"),
    ("cosine_onecycle_schedule", (100, 1.0), {"div_factor": 0.0}, ValueError, "div_factor"),
    ("linear_onecycle_schedule", (100, 1.0), {"pct_start": 0.5, "pct_final": 0.4}, ValueError, "pct_final"),
    ("linear_onecycle_schedule", (100, 1.0), {"final_div_factor": -1.0}, ValueError, "final_div_factor"),
    ("sgdr_schedule", ([],), {}, ValueError, "cosine_kwargs"),
    ("sgdr_schedule", ([{"init_value": 0.0, "peak_value": 1.0, "warmup_steps": 1}],), {}, TypeError,
     "decay_steps"),
    ("sgdr_schedule", ([dict(init_value=0.0, peak_value=1.0, warmup_steps=5, decay_steps=3)],), {},
     ValueError, "cycle 0.*decay_steps"),
    ("join_schedules", ([],), {"boundaries": []}, ValueError, "schedules"),
    ("join_schedules", ([0.1, 0.2],), {"boundaries": [3]}, TypeError, r"schedules\[0\]"),
    ("join_schedules", ([optax.constant_schedule(1.0)] * 2,), {"boundaries": []}, ValueError, "boundaries"),
    ("join_schedules", ([optax.constant_schedule(1.0)] * 3,), {"boundaries": [5, 2]}, ValueError,
     "non-decreasing"),
    ("join_schedules", ([optax.constant_schedule(1.0)] * 2,), {"boundaries": [-1]}, ValueError,
     r"boundaries\[0\]"),
]


@pytest.mark.parametrize(("name", "args", "kwargs", "error", "match"), BAD,
                         ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)])
def test_bad_arguments_raise_naming_the_argument(name, args, kwargs, error, match):
    with pytest.raises(error, match=match):
        getattr(gradtx, name)(*args, **kwargs)


def test_fractional_power_is_finite_after_the_transition_under_jit():
    # 1 - t/T computed as 1 - t·(1/T) under XLA can be slightly negative at t = T; optax 0.2.8
    # then returns NaN for a fractional power. gradtx must give end_value.
    sched = gradtx.polynomial_schedule(1.0, 0.01, 2.5, 150, 30)
    jitted = jax.jit(lambda t: sched(t))
    for step in (180, 181, 1000):
        _close(jitted(jnp.int32(step)), 0.01)


@pytest.mark.parametrize("warmup", [3, 7, 10, 100, 1000, 4999])
@pytest.mark.parametrize("peak", [1e-3, 3e-4, 0.1, 1.0])
def test_warmup_from_zero_starts_at_exactly_zero_under_jit(warmup, peak):
    # under jit XLA may divide by T through its reciprocal, so T/T can round above 1 and the
    # ramp start at a tiny negative learning rate (it did: -1.5e-8); optax returns 0 there
    for sched in (
        gradtx.warmup_cosine_decay_schedule(0.0, peak, warmup, 5 * warmup),
        gradtx.linear_schedule(0.0, peak, warmup),
        gradtx.warmup_constant_schedule(0.0, peak, warmup),
    ):
        values = jax.jit(jax.vmap(sched))(jnp.array([0, warmup], jnp.int32))
        assert float(values[0]) == 0.0, (sched, float(values[0]))
        assert float(values[1]) == pytest.approx(peak, rel=1e-6)
        assert float(jax.jit(sched)(0)) == 0.0
