"""Certified answers: Ritz residual bounds (eigsh / operator_eigsh / ritz_residuals) and the
residual-aware verdicts of classify_critical_point and condition_number, against dense references."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from gradtx.curvature import (
    CRITICAL_POINT_KINDS,
    classify_critical_point,
    condition_number,
    eigsh,
    operator_eigsh,
    ritz_residuals,
)

try:  # OpenBLAS threads spin against each other on a loaded 2-core machine: one thread is faster
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover
    threadpool_limits = None


def _one_blas_thread():
    return threadpool_limits(1) if threadpool_limits is not None else _Nothing()


class _Nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _spectrum(rng, kind, n):
    if kind == "uniform":
        lam = rng.uniform(-1.0, 1.0, n)
    elif kind == "cluster":  # a quarter of the spectrum within 1e-7 of the top
        lam = np.concatenate([1.0 + 1e-7 * rng.standard_normal(n // 4), rng.uniform(-1.0, 0.9, n - n // 4)])
    elif kind == "geometric":  # magnitudes from 1e-8 to 1, random signs
        lam = np.geomspace(1e-8, 1.0, n) * rng.choice([-1.0, 1.0], n)
    elif kind == "repeated":  # four distinct values: the Krylov space is invariant after 4 steps
        lam = rng.choice([-2.0, 0.0, 0.5, 3.0], n)
    elif kind == "outliers":
        lam = np.concatenate([rng.uniform(0.0, 1.0, n - 6), [10.0, 20.0, 35.0, 50.0, -3.0, -7.0]])
    else:  # "close_pair": the two largest 1e-9 apart
        lam = np.concatenate([rng.uniform(-1.0, 1.0, n - 2), [2.0, 2.0 + 1e-9]])
    return lam * 10.0 ** rng.uniform(-3, 3)


KINDS = ("uniform", "cluster", "geometric", "repeated", "outliers", "close_pair")


def _problems(n, count, seed):
    rng = np.random.default_rng(seed)
    mats, evals = [], []
    with _one_blas_thread():
        for i in range(count):
            q, _ = np.linalg.qr(rng.standard_normal((n, n)))
            a = (q * _spectrum(rng, KINDS[i % len(KINDS)], n)) @ q.T
            a = 0.5 * (a + a.T)
            mats.append(a)
            evals.append(np.linalg.eigvalsh(a))
    return np.stack(mats), np.stack(evals)


@functools.cache
def _solver(n, k, which, num_iters):
    """One compiled function for a whole family of dense problems (vmapped over the matrices)."""

    def solve(a, key):
        return operator_eigsh(lambda v: a @ v, jnp.zeros(n), k=k, which=which, num_iters=num_iters, key=key,
                              return_residuals=True)

    return jax.jit(jax.vmap(solve))


# (n, k, which, num_iters, problems): 3 + 97 = 100 problems (n <= 400, three at the full n = 400);
# k = num_iters checks every Ritz pair
CONFIGS = [(400, 40, "LA", 40, 3), (100, 4, "SA", 30, 97)]


@pytest.mark.slow  # two compiles and 100 dense eigendecompositions: about 5 s of CPU
def test_residual_bound_holds_on_100_random_dense_problems():
    counts = {"all": 0, "unconverged": 0, "converged": 0}
    with jax.enable_x64(True):
        for n, k, which, m, count in CONFIGS:
            assert m < n
            mats, evals = _problems(n, count, seed=n)
            keys = jax.random.split(jax.random.PRNGKey(n), count)
            vals, vecs, res = (np.asarray(x) for x in _solver(n, k, which, m)(jnp.asarray(mats), keys))
            assert vals.shape == res.shape == (count, k) and vecs.shape == (count, k, n)
            scale = np.abs(evals).max(axis=1, keepdims=True)
            dist = np.abs(evals[:, None, :] - vals[:, :, None]).min(axis=2)  # to the nearest true eigenvalue
            # Kahan: the nearest eigenvalue lies within the residual (1e-12·‖A‖: eigvalsh's own rounding)
            assert np.all(dist <= res + 1e-12 * scale), np.max((dist - res) / scale)
            # the residual is the explicit ‖A v − θ v‖ of the returned (unit) vectors
            explicit = np.linalg.norm(np.einsum("pij,pkj->pki", mats, vecs) - vals[..., None] * vecs, axis=2)
            np.testing.assert_allclose(res, explicit, rtol=1e-8, atol=1e-13 * scale.max())
            np.testing.assert_allclose(np.linalg.norm(vecs, axis=2), 1.0, rtol=1e-10)
            # Ritz values are Rayleigh quotients: inside [λ_min, λ_max]
            assert np.all(vals >= evals[:, :1] - 1e-12 * scale) and np.all(vals <= evals[:, -1:] + 1e-12 * scale)
            counts["all"] += vals.size
            counts["unconverged"] += int(np.sum(res > 1e-4 * scale))
            counts["converged"] += int(np.sum(res < 1e-10 * scale))
    # the problems exercise both regimes: far-from-converged pairs and converged ones
    assert counts["unconverged"] > 100 and counts["converged"] > 100, counts


def test_ritz_residuals_rejects_mismatched_inputs():
    a = jnp.diag(jnp.arange(1.0, 4.0))
    vecs = jnp.eye(3)[:2]
    np.testing.assert_allclose(ritz_residuals(lambda v: a @ v, jnp.zeros(3), jnp.array([1.0, 2.0]), vecs), 0.0)
    np.testing.assert_allclose(ritz_residuals(lambda v: a @ v, jnp.zeros(3), jnp.array([0.0, 0.0]), vecs),
                               [1.0, 2.0])
    with pytest.raises(ValueError, match="ritz_residuals: values must be a 1-D"):
        ritz_residuals(lambda v: a @ v, jnp.zeros(3), jnp.array(1.0), vecs)
    with pytest.raises(ValueError, match="ritz_residuals: every leaf of vectors"):
        ritz_residuals(lambda v: a @ v, jnp.zeros(3), jnp.array([1.0, 2.0, 3.0]), vecs)
    with pytest.raises(ValueError, match="ritz_residuals: vectors must have the tree structure"):
        ritz_residuals(lambda v: a @ v, jnp.zeros(3), jnp.array([1.0, 2.0]), {"x": vecs})


# ----- classify_critical_point and condition_number with bounds (float64, one compile) -----

DIM = 60


def split2(x):
    return {"u": x[:20], "w": x[20:].reshape(5, 8)}


def quad_loss(params, a, b):
    """0.5 xᵀ A x + bᵀx on a two-leaf pytree (one loss object: every case shares one compile)."""
    x = ravel_pytree(params)[0]
    return 0.5 * x @ (a @ x) + b @ x


def _matrix(lam, seed=0):
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((DIM, DIM)))
    a = (q * np.asarray(lam, np.float64)) @ q.T
    return jnp.asarray(0.5 * (a + a.T))


@jax.jit
def _dense_hessian(a, b):
    return jax.hessian(lambda x: quad_loss(split2(x), a, b))(jnp.zeros(DIM, a.dtype))


def _dense_extremes(a, b):
    ev = np.linalg.eigvalsh(np.asarray(_dense_hessian(a, b)))
    return ev[0], ev[-1]


def _assert_bounds_hold(report, a, b):
    lo, hi = _dense_extremes(a, b)
    lo_int, hi_int = report.min_interval, report.max_interval
    assert lo_int[0] - 1e-12 <= lo <= lo_int[1] + 1e-12, (lo, lo_int)
    assert hi_int[0] - 1e-12 <= hi <= hi_int[1] + 1e-12, (hi, hi_int)


SPECTRA = {
    "minimum": np.linspace(0.5, 3.0, DIM),
    "maximum": -np.linspace(0.5, 3.0, DIM),
    "saddle": np.linspace(-1.0, 3.0, DIM),
    "degenerate": np.concatenate([[0.0], np.linspace(0.5, 3.0, DIM - 1)]),
}


@pytest.mark.parametrize("kind", sorted(SPECTRA))
def test_classify_converged_cases_with_dense_reference(kind):
    with jax.enable_x64(True):
        a, b = _matrix(SPECTRA[kind]), jnp.zeros(DIM)
        report = classify_critical_point(quad_loss, split2(jnp.zeros(DIM)), a, b, num_iters=DIM)
        assert report.kind == kind and report.curvature_kind == kind
        _assert_bounds_hold(report, a, b)
        # converged (num_iters = n): residuals at rounding level
        assert report.min_residual < 1e-10 and report.max_residual < 1e-10
        assert report.grad_norm == 0.0 and report.grad_tol == 1e-5
        assert (report.escape_direction is not None) == (kind in ("saddle", "maximum"))
        assert report.kind in report.summary and "gradient norm 0" in report.summary


def test_classify_says_undecided_instead_of_guessing():
    with jax.enable_x64(True):
        b = jnp.zeros(DIM)
        params = split2(jnp.zeros(DIM))
        # a saddle whose negative eigenvalue (-0.01) hides at the edge of a bulk in [0, 1]: three
        # Lanczos steps see only positive Ritz values, which the old rule called a "minimum"
        hidden = _matrix(np.concatenate([[-0.01], np.linspace(0.0, 1.0, DIM - 1)]), seed=3)
        report = classify_critical_point(quad_loss, params, hidden, b, num_iters=3)
        assert report.min_eigenvalue > report.zero_tol  # the Ritz value alone looks positive definite
        assert report.kind == "undecided" and report.curvature_kind == "undecided"
        assert report.min_interval[0] < 0 < report.min_interval[1]
        _assert_bounds_hold(report, hidden, b)
        assert report.escape_direction is None
        assert "undecided" in report.summary and "num_iters" in report.summary
        # enough steps resolve it
        resolved = classify_critical_point(quad_loss, params, hidden, b, num_iters=DIM)
        assert resolved.kind == "saddle"
        np.testing.assert_allclose(resolved.min_eigenvalue, -0.01, rtol=1e-8)
        # nearly singular PSD Hessian: unconverged, the bound straddles zero -> undecided; converged -> degenerate
        singular = _matrix(SPECTRA["degenerate"], seed=5)
        assert classify_critical_point(quad_loss, params, singular, b, num_iters=3).kind == "undecided"
        assert classify_critical_point(quad_loss, params, singular, b, num_iters=DIM).kind == "degenerate"
        # 40 < 60 steps: the random-start (Kuczyński-Woźniakowski) bound certifies a clear minimum
        spd = _matrix(SPECTRA["minimum"], seed=7)
        partial = classify_critical_point(quad_loss, params, spd, b, num_iters=40)
        assert partial.kind == "minimum" and np.isfinite(partial.min_interval[0])
        assert 0 < partial.min_interval[0] < partial.min_interval[1]
        _assert_bounds_hold(partial, spd, b)
        with pytest.raises(ValueError, match="classify_critical_point: confidence"):
            classify_critical_point(quad_loss, params, spd, b, confidence=1.0)
    assert CRITICAL_POINT_KINDS[5] == "undecided"


def test_eigsh_residuals_match_dense_products():
    with jax.enable_x64(True):
        a, b = _matrix(SPECTRA["saddle"], seed=11), jnp.zeros(DIM)
        dense = np.asarray(a)
        ev = np.linalg.eigvalsh(dense)
        # 3 steps in 60 dimensions (the compile is shared with the classify tests): unconverged pairs
        vals, vecs, res = eigsh(quad_loss, split2(jnp.zeros(DIM)), a, b, k=3, num_iters=3, return_residuals=True)
        vals, res = np.asarray(vals), np.asarray(res)
        v = np.asarray(jax.vmap(lambda t: ravel_pytree(t)[0])(vecs))
        np.testing.assert_allclose(res, np.linalg.norm(v @ dense - vals[:, None] * v, axis=1), rtol=1e-10)
        assert np.all(np.abs(ev[None, :] - vals[:, None]).min(axis=1) <= res + 1e-12) and res.min() > 1e-3
        assert len(eigsh(quad_loss, split2(jnp.zeros(DIM)), a, b, k=3, num_iters=3)) == 2


def test_not_critical_still_reports_the_curvature_and_gradient():
    with jax.enable_x64(True):
        a = _matrix(SPECTRA["saddle"])
        b = jnp.full((DIM,), 1e-3 / np.sqrt(DIM))  # ‖∇L(0)‖ = ‖b‖ = 1e-3, as a trained network
        report = classify_critical_point(quad_loss, split2(jnp.zeros(DIM)), a, b, num_iters=DIM)
        assert report.kind == "not_critical" and report.curvature_kind == "saddle"
        np.testing.assert_allclose(report.grad_norm, 1e-3, rtol=1e-10)
        assert "gradient norm 0.001 > grad_tol 1e-05" in report.summary and "indefinite" in report.summary
        loose = classify_critical_point(quad_loss, split2(jnp.zeros(DIM)), a, b, num_iters=DIM, grad_tol=2e-3)
        assert loose.kind == "saddle"
        # the escape direction does not increase the loss to first order
        d = ravel_pytree(loose.escape_direction)[0]
        assert float(b @ d) <= 0


def test_condition_number_reports_bounds():
    with jax.enable_x64(True):
        b = jnp.zeros(DIM)
        params = split2(jnp.zeros(DIM))
        a = _matrix(SPECTRA["minimum"])
        rep = condition_number(quad_loss, params, a, b, num_iters=DIM)
        assert rep.kind == "positive_definite" and rep.is_certain
        lo_k, hi_k = rep.condition_interval
        assert lo_k - 1e-9 <= 6.0 <= hi_k + 1e-9 and hi_k - lo_k < 1e-8
        # few steps: the Ritz values still say positive definite, but the bounds do not certify it
        few = condition_number(quad_loss, params, a, b, num_iters=3)
        assert few.kind == "positive_definite" and not few.is_certain
        lo_k, hi_k = few.condition_interval
        assert lo_k <= 6.0 <= hi_k
        lo, hi = _dense_extremes(a, b)
        assert few.lambda_min_interval[0] <= lo <= few.lambda_min_interval[1]
        assert few.lambda_max_interval[0] <= hi <= few.lambda_max_interval[1]


def test_one_shot_batch_iterators_are_read_once():
    """eigsh(return_residuals=True) and classify_critical_point pass over the data twice (Lanczos,
    then the residual products): a one-shot iterator of batches must still give the full-data answer."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((12, 3)).astype(np.float32)
    y = rng.standard_normal(12).astype(np.float32)

    def mse(w, x, y):
        return jnp.mean((x @ w - y) ** 2)

    ev = np.linalg.eigvalsh(2 * x.T.astype(np.float64) @ x / 12)
    w_star = jnp.asarray(np.linalg.lstsq(x, y, rcond=None)[0], jnp.float32)

    def stream():
        return iter([(x[:6], y[:6]), (x[6:], y[6:])])

    vals, _, res = eigsh(mse, w_star, k=3, num_iters=3, return_residuals=True, batches=stream())
    np.testing.assert_allclose(np.asarray(vals), ev, rtol=1e-4)
    assert np.all(np.asarray(res) < 1e-4)
    report = classify_critical_point(mse, w_star, batches=stream(), grad_tol=1e-4)
    assert report.kind == "minimum" and report.min_interval[0] > 0
