"""Tests of gradtx.curvature.logdet (stochastic Lanczos quadrature of log det(A + λI)), in float64.

References: `numpy.linalg.slogdet` of dense matrices (a ~1,000-parameter GGN built by applying the
operator to the identity; `jax.hessian` for the loss form), closed forms for diagonal matrices,
and the exact per-probe values `zᵀ log(B) z` over all Rademacher sign patterns of a 7×7 matrix.
"""

import functools
import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from gradtx.curvature import LogdetReport, gauss_newton_operator, logdet, operator_logdet


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


# ----- a 1,029-parameter tanh MLP with softmax cross-entropy, and its dense GGN -----

IN, HIDDEN, OUT, POINTS = 10, 64, 5, 64


def _model(p, x):
    return jnp.tanh(x @ p["w1"] + p["b1"][None, :]) @ p["w2"] + p["b2"][None, :]


def _xent(logits, y):
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))


@functools.cache
def _ggn_problem():
    rng = np.random.default_rng(0)
    params = {
        "w1": jnp.asarray(rng.standard_normal((IN, HIDDEN)) / np.sqrt(IN)),
        "b1": jnp.asarray(0.1 * rng.standard_normal(HIDDEN)),
        "w2": jnp.asarray(rng.standard_normal((HIDDEN, OUT)) / np.sqrt(HIDDEN)),
        "b2": jnp.zeros(OUT),
    }
    x = jnp.asarray(rng.standard_normal((POINTS, IN)))
    y = jnp.asarray(rng.integers(0, OUT, POINTS))
    op = gauss_newton_operator(_model, _xent, params, x, y)
    flat0, unravel = ravel_pytree(params)
    # dense reference: the operator applied to every column of the identity
    dense = np.asarray(jax.jit(jax.vmap(lambda e: ravel_pytree(op(unravel(e)))[0]))(jnp.eye(flat0.size)))
    return op, params, 0.5 * (dense + dense.T)


def test_ggn_logdet_within_one_percent_and_standard_error_shrinks():
    op, params, dense = _ggn_problem()
    n = dense.shape[0]
    assert 1000 <= n <= 1100
    lam = 1e-2
    sign, true = np.linalg.slogdet(dense + lam * np.eye(n))
    assert sign > 0
    # the GGN is rank deficient (rank <= POINTS * (OUT - 1) = 256 < n): damping is needed
    assert np.linalg.slogdet(dense)[1] < true - 1000
    rep = operator_logdet(op, params, damping=lam, num_probes=32, num_iters=50, key=jax.random.PRNGKey(0))
    assert isinstance(rep, LogdetReport) and bool(rep.positive_definite)
    assert abs(float(rep.logdet) - true) <= 0.01 * abs(true), (float(rep.logdet), true)
    # the estimate sits within a few standard errors of the truth (the quadrature error is small)
    assert abs(float(rep.logdet) - true) <= 4 * float(rep.standard_error) + 1e-6 * abs(true)
    # the standard error is std/√p of the per-probe values; over the first 8 probes it is about
    # twice as large as over all 32 (1/√p)
    per = np.asarray(rep.per_probe)
    np.testing.assert_allclose(float(rep.logdet), per.mean(), rtol=1e-12)
    np.testing.assert_allclose(float(rep.standard_error), per.std(ddof=1) / np.sqrt(32), rtol=1e-10)
    se_8 = per[:8].std(ddof=1) / np.sqrt(8)
    assert float(rep.standard_error) < 0.75 * se_8
    # Ritz values of the PSD G lie in [0, λ_max]: the smallest shifted one is >= damping
    assert float(rep.min_ritz_value) >= lam * (1 - 1e-9)


def _sign_patterns(n):
    """All Rademacher vectors of R^n up to the global sign (first entry +1), as rows."""
    return np.array([(1.0, *s) for s in itertools.product((1.0, -1.0), repeat=n - 1)])


def _spd7():
    q, _ = np.linalg.qr(np.random.default_rng(3).standard_normal((7, 7)))
    return (q * np.array([0.3, 0.8, 1.7, 2.5, 4.0, 6.0, 9.0])) @ q.T


# one compile for every 7×7 matrix and damping below (the matrix is a traced argument)
_logdet7 = jax.jit(lambda a, lam: operator_logdet(lambda v: a @ v, jnp.zeros(7), damping=lam, num_probes=16,
                                                  num_iters=7))


def test_num_iters_n_is_exact_per_probe():
    # with num_iters >= n Gauss quadrature is exact: each probe r gives z_r^T log(A + λI) z_r,
    # one of the 64 values of the sign patterns z (found by brute force)
    a, lam = _spd7(), 0.25
    rep = _logdet7(jnp.asarray(a), lam)
    w, v = np.linalg.eigh(a + lam * np.eye(7))
    log_b = (v * np.log(w)) @ v.T
    z = _sign_patterns(7)
    exact = np.einsum("pi,ij,pj->p", z, log_b, z)
    per = np.asarray(rep.per_probe)
    nearest = np.abs(per[:, None] - exact[None, :]).min(axis=1)
    assert np.all(nearest < 1e-8), nearest
    assert bool(rep.positive_definite)
    # the mean over all patterns is the trace (Rademacher probes are unbiased): the log det
    np.testing.assert_allclose(exact.mean(), np.linalg.slogdet(a + lam * np.eye(7))[1], rtol=1e-12)


def test_diagonal_is_exact_and_indefinite_gives_nan():
    # z_i^2 = 1: z^T f(D) z = tr f(D), so every probe is exact and the standard error is 0
    d = np.array([-0.5, 0.5, 1.0, 2.0, 3.0, 3.0, 10.0])  # a repeated eigenvalue (Lanczos breakdown)
    lam = 0.6
    rep = _logdet7(jnp.diag(jnp.asarray(d)), lam)
    true = float(np.sum(np.log(d + lam)))
    np.testing.assert_allclose(np.asarray(rep.per_probe), true, rtol=1e-10)
    np.testing.assert_allclose(float(rep.logdet), true, rtol=1e-10)
    assert float(rep.standard_error) < 1e-8 and bool(rep.positive_definite)
    np.testing.assert_allclose(float(rep.min_ritz_value), 0.1, rtol=1e-8)
    # damping 0.1 leaves the eigenvalue -0.4 < 0: NaN estimate, the flag, and the offending node
    rep = _logdet7(jnp.diag(jnp.asarray(d)), 0.1)
    assert not bool(rep.positive_definite)
    assert np.isnan(float(rep.logdet)) and np.all(np.isnan(np.asarray(rep.per_probe)))
    np.testing.assert_allclose(float(rep.min_ritz_value), -0.4, rtol=1e-8)


@functools.cache
def _ridge_problem():
    """L2-regularized logistic regression on 12 weights + bias: a positive definite Hessian."""
    rng = np.random.default_rng(5)
    params = {"w": jnp.asarray(0.3 * rng.standard_normal(12)), "b": jnp.asarray(0.1)}
    x = jnp.asarray(rng.standard_normal((40, 12)))
    y = jnp.asarray(rng.integers(0, 2, 40), jnp.float64)

    def loss(p, x, y):
        z = x @ p["w"] + p["b"]
        return jnp.mean(jax.nn.softplus(z) - y * z) + 0.05 * jnp.sum(p["w"] ** 2)

    flat0, unravel = ravel_pytree(params)
    h = np.asarray(jax.jit(jax.hessian(lambda z: loss(unravel(z), x, y)))(flat0))
    return loss, params, x, y, 0.5 * (h + h.T)


def test_hessian_logdet_one_batch_and_streamed():
    loss, params, x, y, h = _ridge_problem()
    n = h.shape[0]
    lam = 0.01
    true = np.linalg.slogdet(h + lam * np.eye(n))[1]
    key = jax.random.PRNGKey(1)
    one = logdet(loss, params, x, y, damping=lam, num_probes=12, num_iters=n, key=key)
    assert bool(one.positive_definite)
    # quadrature exact (num_iters = n): only the probe error is left, which the standard error measures
    assert abs(float(one.logdet) - true) <= 4 * float(one.standard_error), (float(one.logdet), true)
    assert float(one.standard_error) < 0.05 * abs(true)
    # the same probes over two streamed batches of 20 points (their mean = the 40-point mean)
    streamed = logdet(loss, params, damping=lam, num_probes=12, num_iters=n, key=key,
                      batches=[(x[:20], y[:20]), (x[20:], y[20:])])
    chex.assert_trees_all_close(streamed, one, rtol=1e-8, atol=1e-10)


def test_validation():
    op, z = (lambda v: v), jnp.zeros(3)
    with pytest.raises(ValueError, match=r"operator_logdet: damping must be in \[0, inf\)"):
        operator_logdet(op, z, damping=-1.0)
    with pytest.raises(ValueError, match="operator_logdet: num_probes must be an integer >= 1"):
        operator_logdet(op, z, num_probes=0)
    with pytest.raises(ValueError, match="operator_logdet: num_iters must be an integer >= 1"):
        operator_logdet(op, z, num_iters=0)
    with pytest.raises(TypeError, match="operator_logdet: num_probes must be an integer"):
        operator_logdet(op, z, num_probes=2.0)
    with pytest.raises(TypeError, match="operator_logdet: template must hold floating-point arrays"):
        operator_logdet(op, jnp.arange(3))
    with pytest.raises(TypeError, match="operator_logdet: matvec must be callable"):
        operator_logdet(np.eye(3), z)
    with pytest.raises(ValueError, match="operator_logdet: the params/template tree has no leaves"):
        operator_logdet(op, {})
    with pytest.raises(ValueError, match=r"logdet: damping must be in \[0, inf\)"):
        logdet(lambda p: jnp.sum(p**2), z, damping=-0.5)
    with pytest.raises(TypeError, match="logdet: loss must be callable"):
        logdet(3.0, z)
