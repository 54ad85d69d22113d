"""Tests of gradtx.gradcheck: finite-difference checks of first and second derivatives."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradtx.gradcheck import GradcheckReport, gradcheck, gradgradcheck


def _mlp_params(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "layer1": {"w": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32), "b": jnp.zeros(4)},
        "layer2": {"w": jnp.asarray(rng.normal(size=(4, 2)), jnp.float32), "b": jnp.full(2, 0.1)},
    }


def _mlp_loss(params, x, y):
    h = jnp.tanh(x @ params["layer1"]["w"] + params["layer1"]["b"][None, :])
    out = h @ params["layer2"]["w"] + params["layer2"]["b"][None, :]
    return jnp.mean((out - y) ** 2)


def _data():
    rng = np.random.default_rng(1)
    return jnp.asarray(rng.normal(size=(5, 3)), jnp.float32), jnp.asarray(rng.normal(size=(5, 2)), jnp.float32)


def _scaled_sin(factor):
    """sum(sin(x)) with a custom_vjp whose backward rule is multiplied by `factor`."""

    @jax.custom_vjp
    def f(x):
        return jnp.sum(jnp.sin(x))

    def fwd(x):
        return jnp.sum(jnp.sin(x)), x

    def bwd(x, g):
        return (factor * jnp.cos(x) * g,)

    f.defvjp(fwd, bwd)
    return f


def _product(drop_y_term):
    """sum(x * y) with a custom_vjp; with `drop_y_term` the cotangent of y is forgotten."""

    @jax.custom_vjp
    def f(x, y):
        return jnp.sum(x * y)

    def fwd(x, y):
        return jnp.sum(x * y), (x, y)

    def bwd(res, g):
        x, y = res
        return g * y, (jnp.zeros_like(y) if drop_y_term else g * x)

    f.defvjp(fwd, bwd)
    return f


# --------------------------------------------------------------------------------------------
# gradcheck
# --------------------------------------------------------------------------------------------


def test_mlp_loss_passes_with_float64_accuracy():
    params = _mlp_params()
    x, y = _data()
    report = gradcheck(_mlp_loss, params, x, y)
    assert isinstance(report, GradcheckReport)
    assert report.passed, report
    assert report.kind == "grad"
    n = 3 * 4 + 4 + 4 * 2 + 2
    assert report.num_checks == 4 * 3 + n  # 3 directions per leaf + all 26 coordinates
    # float64 central differences with eps=1e-6 agree to ~1e-9; in float32 the error would be ~1e-2
    assert report.max_abs_error < 1e-7
    assert report.max_rel_error < 1e-5


def test_does_not_switch_x64_on_globally():
    gradcheck(lambda p: jnp.sum(p**2), jnp.ones(3))
    assert jnp.zeros(1).dtype == jnp.float32
    assert not jax.config.jax_enable_x64


def test_wrong_custom_vjp_factor_is_caught_and_located():
    x, y = _data()

    def make_loss(factor):
        sin = _scaled_sin(factor)

        def loss(params, x, y):
            return _mlp_loss(params, x, y) + sin(params["layer2"]["b"])

        return loss

    params = _mlp_params()
    good = gradcheck(make_loss(1.0), params, x, y)
    assert good.passed, good
    for per_coordinate in (True, False):
        bad = gradcheck(make_loss(1.05), params, x, y, per_coordinate=per_coordinate)
        assert not bad.passed
        assert bad.worst_path == "['layer2']['b']"
        assert bad.max_rel_error > 0.01
        assert "FAILED" in repr(bad) and "['layer2']['b']" in repr(bad)


def test_dropped_term_points_at_the_right_leaf():
    params = {"x": jnp.array([1.0, -2.0, 0.5]), "y": jnp.array([0.3, 0.7, -1.1])}
    good = gradcheck(lambda p: _product(False)(p["x"], p["y"]), params)
    bad = gradcheck(lambda p: _product(True)(p["x"], p["y"]), params)
    assert good.passed and good.max_abs_error < 1e-8
    assert not bad.passed
    assert bad.worst_path == "['y']"
    # the whole y-gradient is missing: the analytic value is 0 where the true one is not
    assert bad.max_rel_error == pytest.approx(1.0)


def test_per_coordinate_reports_the_index():
    mask = np.zeros((2, 3))
    mask[1, 2] = 1.0

    @jax.custom_vjp
    def f(w):
        return jnp.sum(w**3)

    f.defvjp(lambda w: (jnp.sum(w**3), w), lambda w, g: (3 * w**2 * g * (1 + jnp.asarray(mask, w.dtype)),))
    w = jnp.arange(1.0, 7.0).reshape(2, 3)
    report = gradcheck(lambda p: f(p["w"]) + jnp.sum(p["v"] ** 2), {"v": jnp.ones(4), "w": w},
                       num_directions=0, per_coordinate=True)
    assert not report.passed
    assert report.worst_path == "['w']" and report.worst_index == (1, 2)
    # analytic = 2 * 3 * 6^2, numerical = 3 * 6^2
    assert report.worst_analytic == pytest.approx(216.0)
    assert report.worst_numerical == pytest.approx(108.0, rel=1e-8)
    assert report.num_checks == 10


def test_large_inputs_skip_coordinates_in_auto_mode():
    params = {"a": jnp.ones(300), "b": jnp.ones((2, 2))}
    report = gradcheck(lambda p: jnp.sum(jnp.cos(p["a"])) * jnp.sum(p["b"] ** 2), params, num_directions=2)
    assert report.passed, report
    assert report.num_checks == 4
    assert gradcheck(lambda p: jnp.sum(p["b"] ** 3), {"b": jnp.ones(5)}, num_directions=2).num_checks == 7


def test_scalar_param_and_root_path():
    report = gradcheck(lambda w: jnp.exp(w) * 2.0, jnp.asarray(0.3))
    assert report.passed
    assert report.worst_path == ""
    bad = gradcheck(lambda w: _scaled_sin(2.0)(w), jnp.asarray(0.3))
    assert not bad.passed
    assert bad.worst_analytic == pytest.approx(2 * np.cos(0.3), rel=1e-8)


def test_non_finite_fails():
    report = gradcheck(lambda w: jnp.sum(jnp.sqrt(w)), jnp.array([1.0, -1.0]))
    assert not report.passed
    assert report.max_abs_error == np.inf


@settings(max_examples=3, deadline=None)
@given(st.integers(min_value=1, max_value=6), st.integers(min_value=0, max_value=10_000))
def test_quadratics_pass_and_agree_with_closed_form(n, seed):
    rng = np.random.default_rng(seed)
    # float32 values, so that the float64 check sees exactly these numbers
    a = rng.normal(size=(n, n)).astype(np.float32).astype(np.float64)
    b = rng.normal(size=n).astype(np.float32)
    x = rng.normal(size=n).astype(np.float32)

    def f(x, a, b):
        return 0.5 * x @ a @ x + b @ x

    report = gradcheck(f, jnp.asarray(x), jnp.asarray(a), jnp.asarray(b))
    assert report.passed
    # the central difference of a quadratic is exact up to rounding
    assert report.max_abs_error < 1e-8 * (1 + np.abs(a).sum() + np.abs(b).sum())
    hvp = gradgradcheck(f, jnp.asarray(x), jnp.asarray(a), jnp.asarray(b), num_directions=0, per_coordinate=True)
    assert hvp.passed
    # coordinate checks give the Hessian's columns: the worst component is an entry of (A + Aᵀ)/2
    i = hvp.worst_index[0]
    sym = 0.5 * (a + a.T)
    assert hvp.num_checks == n
    assert np.min(np.abs(sym[i] - hvp.worst_analytic)) < 1e-9


# --------------------------------------------------------------------------------------------
# gradgradcheck
# --------------------------------------------------------------------------------------------


def test_gradgradcheck_passes_on_mlp():
    params = _mlp_params(3)
    x, y = _data()
    report = gradgradcheck(_mlp_loss, params, x, y)
    assert report.passed, report
    assert report.kind == "hvp"
    assert report.max_abs_error < 1e-7


def test_gradgradcheck_catches_stop_gradient_in_backward_rule():
    def make(stop):
        @jax.custom_vjp
        def cube(x):
            return jnp.sum(x**3)

        def bwd(x, g):
            x = jax.lax.stop_gradient(x) if stop else x
            return (3 * x**2 * g,)

        cube.defvjp(lambda x: (jnp.sum(x**3), x), bwd)
        return lambda p: cube(p["c"]) + jnp.sum(jnp.sin(p["s"]))

    params = {"c": jnp.array([0.5, -1.0, 2.0]), "s": jnp.array([0.1, 0.2])}
    # first derivatives are right ...
    assert gradcheck(make(True), params).passed
    # ... but the backward rule's own derivative is wrong (0 instead of 6x)
    bad = gradgradcheck(make(True), params)
    assert not bad.passed
    assert bad.worst_path == "['c']"
    assert bad.worst_analytic == pytest.approx(0.0)
    assert np.min(np.abs(abs(bad.worst_numerical) - np.array([3.0, 6.0, 12.0]))) < 1e-6
    assert gradgradcheck(make(False), params).passed


def test_gradgradcheck_catches_wrong_custom_jvp_second_derivative():
    def make(sign):
        @jax.custom_jvp
        def my_cos(x):
            return jnp.cos(x)

        # d/dx cos = -sin; sign=+1 gives the wrong rule
        my_cos.defjvp(lambda primals, tangents: (jnp.cos(primals[0]), sign * jnp.sin(primals[0]) * tangents[0]))

        @jax.custom_jvp
        def my_sin(x):
            return jnp.sin(x)

        my_sin.defjvp(lambda primals, tangents: (jnp.sin(primals[0]), my_cos(primals[0]) * tangents[0]))
        return lambda p: jnp.sum(my_sin(p["a"])) + jnp.sum(p["b"] ** 2)

    params = {"a": jnp.array([0.4, 1.3]), "b": jnp.array([1.0, 2.0, 3.0])}
    assert gradcheck(make(1.0), params).passed
    bad = gradgradcheck(make(1.0), params)
    assert not bad.passed and bad.worst_path == "['a']"
    assert bad.worst_index in {(0,), (1,)}
    i = bad.worst_index[0]
    assert bad.worst_analytic == pytest.approx(np.sin([0.4, 1.3])[i], rel=1e-6)
    assert bad.worst_numerical == pytest.approx(-np.sin([0.4, 1.3])[i], rel=1e-6)
    good = gradgradcheck(make(-1.0), params)
    assert good.passed, good
    assert "PASSED" in repr(good)


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("check", [gradcheck, gradgradcheck])
def test_bad_arguments_raise_with_names(check):
    f = lambda p: jnp.sum(p**2)  # noqa: E731
    x = jnp.ones(3)
    with pytest.raises(ValueError, match="eps"):
        check(f, x, eps=0.0)
    with pytest.raises(ValueError, match="eps"):
        check(f, x, eps=-1e-3)
    with pytest.raises(ValueError, match="rtol"):
        check(f, x, rtol=-1.0)
    with pytest.raises(ValueError, match="atol"):
        check(f, x, atol=float("nan"))
    with pytest.raises(ValueError, match="num_directions"):
        check(f, x, num_directions=-1)
    with pytest.raises(TypeError, match="num_directions"):
        check(f, x, num_directions=1.5)
    with pytest.raises(TypeError, match="per_coordinate"):
        check(f, x, per_coordinate="yes")
    with pytest.raises(ValueError, match="nothing to check"):
        check(f, x, num_directions=0, per_coordinate=False)
    with pytest.raises(TypeError, match="callable"):
        check(3.0, x)
    with pytest.raises(TypeError, match="scalar"):
        check(lambda p: p**2, x)
    with pytest.raises(TypeError, match=r"\['n'\].*int32"):
        check(lambda p: jnp.sum(p["w"] ** 2), {"w": x, "n": jnp.arange(2)})
    with pytest.raises(ValueError, match="no array leaves"):
        check(lambda p: 0.0, {})
    with pytest.raises(TypeError, match="key"):
        check(f, x, key="seed")
