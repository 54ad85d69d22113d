"""Tests of gradtx.curvature.analysis (condition number, critical points) and batched estimators."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _curvature_problems import N, flat, quadratic_loss, quadratic_params, quadratic_problem, split
from hypothesis import given, settings
from hypothesis import strategies as st

from gradtx.curvature import (
    CRITICAL_POINT_KINDS,
    classify_critical_point,
    condition_number,
    eigsh,
    hessian_trace,
    spectral_density,
)


def poly2d(p, c):
    """c0 x² + c1 y² + c2 x⁴ + c3 (x³ − 3xy²): one loss object for every 2-D case (no recompiles)."""
    x, y = p[0], p[1]
    return c[0] * x**2 + c[1] * y**2 + c[2] * x**4 + c[3] * (x**3 - 3 * x * y**2)


ORIGIN = jnp.zeros(2)


@pytest.mark.parametrize(
    ("coeffs", "point", "kind"),
    [
        ((1.0, 1.0, 0.0, 0.0), (0.0, 0.0), "minimum"),  # x² + y²
        ((-1.0, -1.0, 0.0, 0.0), (0.0, 0.0), "maximum"),  # −x² − y²
        ((1.0, -1.0, 0.0, 0.0), (0.0, 0.0), "saddle"),  # x² − y²
        ((0.0, 1.0, 1.0, 0.0), (0.0, 0.0), "degenerate"),  # x⁴ + y²
        ((0.0, 0.0, 0.0, 1.0), (0.0, 0.0), "degenerate"),  # monkey saddle
        ((1.0, 1.0, 0.0, 0.0), (1.0, -0.5), "not_critical"),
    ],
)
def test_classify_2d(coeffs, point, kind):
    report = classify_critical_point(poly2d, jnp.asarray(point), jnp.asarray(coeffs))
    assert report.kind == kind
    expected_grad = np.array([2 * coeffs[0] * point[0], 2 * coeffs[1] * point[1]])  # c2, c3 only used at 0
    np.testing.assert_allclose(report.grad_norm, np.linalg.norm(expected_grad), rtol=1e-5, atol=1e-7)
    hess_diag = np.array([2 * coeffs[0], 2 * coeffs[1]])
    np.testing.assert_allclose([report.min_eigenvalue, report.max_eigenvalue], [hess_diag.min(), hess_diag.max()],
                               atol=1e-5)
    # 2 Lanczos steps in 2-D are exact: the certified intervals hold the true extremes (float32 slack)
    (lo_min, hi_min), (lo_max, hi_max) = report.min_interval, report.max_interval
    assert lo_min - 1e-5 <= hess_diag.min() <= hi_min + 1e-5 and lo_max - 1e-5 <= hess_diag.max() <= hi_max + 1e-5
    assert hi_min - lo_min < 1e-5 and hi_max - lo_max < 1e-5
    # the Hessian's own verdict, also reported when the gradient is too large for a critical point
    expected_curvature = {(1.0, 1.0): "minimum", (-1.0, -1.0): "maximum", (1.0, -1.0): "saddle"}
    assert report.curvature_kind == (expected_curvature.get(coeffs[:2], "degenerate") if kind == "not_critical" else kind)
    assert f"gradient norm {report.grad_norm:.3g}" in report.summary
    if hess_diag.min() < 0:
        d = np.asarray(report.escape_direction)
        np.testing.assert_allclose(np.linalg.norm(d), 1.0, rtol=1e-5)
        if hess_diag[0] != hess_diag[1]:  # a unique most negative direction
            assert abs(d[int(np.argmin(hess_diag))]) > 0.999
    else:
        assert report.escape_direction is None


def test_saddle_escape_direction_is_plus_minus_e_y():
    report = classify_critical_point(poly2d, ORIGIN, jnp.array([1.0, -1.0, 0.0, 0.0]))
    assert report.kind == "saddle"
    d = np.asarray(report.escape_direction)
    np.testing.assert_allclose(np.abs(d), [0.0, 1.0], atol=1e-5)
    # moving along it lowers the loss
    assert float(poly2d(0.1 * jnp.asarray(d), jnp.array([1.0, -1.0, 0.0, 0.0]))) < 0.0


@settings(max_examples=15, deadline=None)
@given(
    st.floats(0.1, 10.0), st.floats(0.1, 10.0), st.booleans(), st.booleans(), st.floats(-2.0, 2.0), st.floats(-2.0, 2.0)
)
def test_classify_quadratic_forms_by_signs(a, b, neg_a, neg_b, x0, y0):
    ca, cb = (-a if neg_a else a), (-b if neg_b else b)
    coeffs = jnp.array([ca, cb, 0.0, 0.0])
    report = classify_critical_point(poly2d, ORIGIN, coeffs)
    expected = {(False, False): "minimum", (True, True): "maximum"}.get((neg_a, neg_b), "saddle")
    assert report.kind == expected
    assert report.kind in CRITICAL_POINT_KINDS
    np.testing.assert_allclose(report.min_eigenvalue, 2 * min(ca, cb), rtol=1e-4)
    np.testing.assert_allclose(report.max_eigenvalue, 2 * max(ca, cb), rtol=1e-4)
    # away from the origin the gradient is (2 ca x0, 2 cb y0)
    g = np.hypot(2 * ca * x0, 2 * cb * y0)
    if g > 1e-3:
        assert classify_critical_point(poly2d, jnp.array([x0, y0]), coeffs).kind == "not_critical"


def test_pytree_saddle_escape_direction_matches_most_negative_eigenvector():
    a, lam, q = quadratic_problem()
    report = classify_critical_point(quadratic_loss, split(jnp.zeros(N)), a, num_iters=80)
    assert report.kind == "saddle"
    assert report.grad_norm == 0.0
    np.testing.assert_allclose([report.min_eigenvalue, report.max_eigenvalue], [lam[0], lam[-1]], rtol=1e-3)
    d = np.asarray(flat(report.escape_direction), np.float64)
    assert abs(d @ q[:, 0]) > 0.999
    assert set(report.escape_direction) == {"a", "b"}


def _spd(seed=4, negate=False):
    # bulk in [1, 10], an isolated small eigenvalue 0.5 and a top one 100: κ = 200
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((N, N)))
    lam = np.concatenate([rng.uniform(1.0, 10.0, N - 2), [0.5, 100.0]])
    a = (q * lam) @ q.T
    a = 0.5 * (a + a.T)
    return jnp.asarray(-a if negate else a, jnp.float32), a


def test_condition_number_of_spd_quadratic_matches_numpy():
    a, a64 = _spd()
    report = condition_number(quadratic_loss, quadratic_params(), a, num_iters=80)
    ev = np.linalg.eigvalsh(a64)
    assert report.kind == "positive_definite" and report.is_definite
    np.testing.assert_allclose(float(report.condition_number), np.linalg.cond(a64), rtol=1e-3)
    np.testing.assert_allclose([float(report.lambda_min), float(report.lambda_max)], [ev[0], ev[-1]], rtol=1e-3)
    neg, _ = _spd(negate=True)
    rep_neg = jax.jit(lambda p, a: condition_number(quadratic_loss, p, a, num_iters=80))(quadratic_params(), neg)
    assert rep_neg.kind == "negative_definite"
    np.testing.assert_allclose(float(rep_neg.condition_number), np.linalg.cond(a64), rtol=1e-3)


def test_condition_number_indefinite_and_singular_are_flagged():
    a, _, _ = quadratic_problem()
    report = condition_number(quadratic_loss, quadratic_params(), a, num_iters=80)
    assert report.kind == "indefinite" and not report.is_definite
    assert np.isnan(float(report.condition_number))
    assert "both signs" in report.reason
    singular = condition_number(poly2d, ORIGIN, jnp.array([1.0, 0.0, 0.0, 0.0]))  # Hessian diag(2, 0)
    assert singular.kind == "singular" and np.isinf(float(singular.condition_number))
    zero = condition_number(poly2d, ORIGIN, jnp.zeros(4))
    assert zero.kind == "singular"
    negative_semi = condition_number(poly2d, ORIGIN, jnp.array([-1.0, 0.0, 0.0, 0.0]))
    assert negative_semi.kind == "singular"
    with pytest.raises(ValueError, match="eig_tol"):
        condition_number(poly2d, ORIGIN, jnp.zeros(4), eig_tol=-1.0)
    with pytest.raises(ValueError, match="grad_tol"):
        classify_critical_point(poly2d, ORIGIN, jnp.zeros(4), grad_tol=-1.0)


# ----- every estimator on uneven batches equals the full-data answer -----


def _linear_regression():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((10, 3)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5]) + 0.3 * rng.standard_normal(10)).astype(np.float32)
    w_star = np.linalg.lstsq(x.astype(np.float64), y.astype(np.float64), rcond=None)[0]
    batches = [(x[:4], y[:4]), (x[4:8], y[4:8]), (x[8:], y[8:])]
    return jnp.asarray(x), jnp.asarray(y), jnp.asarray(w_star, jnp.float32), [(jnp.asarray(a), jnp.asarray(b)) for a, b in batches]


def mse_loss(w, x, y):
    return jnp.mean((x @ w - y) ** 2)


def test_estimators_on_uneven_batches_equal_full_data():
    x, _, w, batches = _linear_regression()
    hess = 2 * np.asarray(x, np.float64).T @ np.asarray(x, np.float64) / 10  # full-data Hessian
    ev = np.linalg.eigvalsh(hess)

    vals, _ = eigsh(mse_loss, w, k=3, num_iters=3, batches=batches)
    np.testing.assert_allclose(np.asarray(vals), ev, rtol=1e-4)
    # Hutch++ with a sketch as wide as the space (3 columns for 3 params) is exact
    tr = hessian_trace(mse_loss, w, num_samples=9, method="hutch++", batches=batches)
    np.testing.assert_allclose(float(tr), np.trace(hess), rtol=1e-4)
    # with 3 steps in 3 dimensions every quadrature node is an exact eigenvalue
    grid, density = spectral_density(mse_loss, w, num_iters=3, num_runs=2, grid=jnp.linspace(0.0, 6.0, 601),
                                     sigma=0.02, batches=batches)
    peaks = np.asarray(grid)[1:-1][(density[1:-1] > density[:-2]) & (density[1:-1] > density[2:])]
    np.testing.assert_allclose(np.sort(peaks), ev, atol=0.011)
    cond = condition_number(mse_loss, w, batches=batches)
    np.testing.assert_allclose(float(cond.condition_number), ev[-1] / ev[0], rtol=1e-4)

    # w* is the least-squares solution of the whole data set: a minimum of the weighted average
    report = classify_critical_point(mse_loss, w, batches=batches, grad_tol=1e-4)
    assert report.kind == "minimum"
    np.testing.assert_allclose([report.min_eigenvalue, report.max_eigenvalue], [ev[0], ev[-1]], rtol=1e-4)

    # ... but not of PyHessian's equal-weight average, which over-weights the short last batch
    def equal_weight(w, *parts):
        return sum(mse_loss(w, parts[2 * i], parts[2 * i + 1]) for i in range(3)) / 3

    flat_batches = [t for b in batches for t in b]
    assert classify_critical_point(equal_weight, w, *flat_batches, grad_tol=1e-4).kind == "not_critical"
