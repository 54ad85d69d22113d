"""Tests of gradtx.curvature.trace (Hutchinson, Hutch++) and gradtx.curvature.density (SLQ)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _curvature_problems import (
    LARGE,
    NEGATIVE,
    N,
    mlp_data,
    mlp_dense_hessian,
    mlp_loss,
    mlp_params,
    quadratic_loss,
    quadratic_params,
    quadratic_problem,
)

from gradtx.curvature import hessian_trace, operator_spectral_density, operator_trace, spectral_density


def test_trace_of_quadratic_hutchinson_and_hutchplusplus():
    a, lam, _ = quadratic_problem()
    params = quadratic_params()
    true = lam.sum()
    keys = [jax.random.PRNGKey(s) for s in range(6)]
    errors = {}
    for method in ("hutchinson", "hutch++"):
        est = np.array([float(hessian_trace(quadratic_loss, params, a, num_samples=99, key=k, method=method))
                        for k in keys])
        errors[method] = np.abs(est - true) / abs(true)
    # Hutchinson's std here is sqrt(2 ||A||_F^2 / 99) / tr A ≈ 3.5 %; Hutch++ deflates the outliers
    assert np.mean(errors["hutch++"]) < 0.5 * np.mean(errors["hutchinson"]), errors
    assert np.max(errors["hutch++"]) < 0.02, errors
    # with enough probes Hutchinson is within a few percent (std ≈ 1.7 % at 400 probes)
    big = float(hessian_trace(quadratic_loss, params, a, num_samples=400, key=jax.random.PRNGKey(7)))
    assert abs(big - true) / true < 0.05


def test_trace_of_mlp_matches_dense_under_jit():
    params = mlp_params()
    x, y = mlp_data()
    h = mlp_dense_hessian()
    true = np.trace(h)

    @jax.jit
    def estimates(p, x, y, key):
        return (
            hessian_trace(mlp_loss, p, x, y, num_samples=64, key=key),
            # 50 parameters: a sketch of 50 columns spans everything, so Hutch++ is exact
            hessian_trace(mlp_loss, p, x, y, num_samples=150, key=key, method="hutch++"),
        )

    hutch, hpp = estimates(params, x, y, jax.random.PRNGKey(0))
    # Hutchinson with Rademacher probes: variance 2 (||H||_F^2 - sum_i H_ii^2) / m
    std = np.sqrt(2 * (np.sum(h**2) - np.sum(np.diag(h) ** 2)) / 64)
    assert abs(float(hutch) - true) < 4 * std
    np.testing.assert_allclose(float(hpp), true, rtol=1e-3, atol=1e-4)


def test_operator_trace_exact_for_diagonal_and_rank_deficient():
    # Rademacher probes are exact for diagonal matrices (z_i^2 = 1)
    d = jnp.arange(1.0, 11.0)
    est = operator_trace(lambda v: d * v, jnp.zeros(10), num_samples=3, key=jax.random.PRNGKey(0))
    np.testing.assert_allclose(float(est), 55.0, rtol=1e-6)
    # Hutch++ is exact when the sketch spans the whole range: rank-2 operator, 2 sketch columns
    u = jnp.asarray(np.random.default_rng(0).standard_normal((2, 10)), jnp.float32)
    op = lambda v: u.T @ (u @ v)  # noqa: E731
    est = operator_trace(op, jnp.zeros(10), num_samples=7, method="hutch++")
    np.testing.assert_allclose(float(est), float(jnp.sum(u * u)), rtol=1e-4)


def test_trace_validation():
    with pytest.raises(ValueError, match="num_samples must be an integer >= 1"):
        hessian_trace(quadratic_loss, jnp.zeros(3), jnp.eye(3), num_samples=0)
    with pytest.raises(ValueError, match="method must be one of"):
        hessian_trace(quadratic_loss, jnp.zeros(3), jnp.eye(3), method="exact")
    with pytest.raises(ValueError, match=">= 3"):
        hessian_trace(quadratic_loss, jnp.zeros(3), jnp.eye(3), num_samples=2, method="hutch++")
    with pytest.raises(TypeError, match="num_samples must be an integer"):
        operator_trace(lambda v: v, jnp.zeros(3), num_samples=2.0)


def _mass(grid, density, lo, hi):
    inside = (grid >= lo) & (grid <= hi)
    return float(jnp.trapezoid(jnp.where(inside, density, 0.0), grid))


def test_density_of_quadratic_puts_mass_on_the_spectrum():
    a, _, _ = quadratic_problem()
    params = quadratic_params()
    grid, density = spectral_density(quadratic_loss, params, a, num_iters=60, num_runs=20, key=jax.random.PRNGKey(1))
    chex.assert_tree_all_finite((grid, density))
    assert grid.shape == density.shape == (1000,)
    assert float(jnp.min(density)) >= 0.0
    np.testing.assert_allclose(float(jnp.trapezoid(density, grid)), 1.0, rtol=1e-5)
    # the grid covers the extreme eigenvalues (Ritz values converge there) with margin
    assert float(grid[0]) < NEGATIVE.min() - 0.5 and float(grid[-1]) > LARGE.max() + 0.5
    # fraction of mass near the planted eigenvalues: 4/300 for the outliers, 4/300 for the negatives
    frac = len(LARGE) / N
    assert 0.5 * frac < _mass(grid, density, 5.0, np.inf) < 2.0 * frac
    assert 0.5 * frac < _mass(grid, density, -np.inf, -1.0) < 2.0 * frac
    assert _mass(grid, density, -0.9, 2.5) > 0.85  # the bulk (292/300 in [0.1, 1]), broadened
    # the density peaks near each isolated outlier (σ = 1 % of the width ≈ 0.55)
    for value in LARGE:
        near = jnp.abs(grid - value) < 1.5
        far = (jnp.abs(grid - value) > 3.0) & (jnp.abs(grid - value) < 4.5)
        assert float(jnp.max(jnp.where(near, density, 0))) > 10 * float(jnp.max(jnp.where(far, density, 0)))


def test_density_exact_spectrum_with_user_grid_and_sigma():
    # a 3-point spectrum with equal multiplicities: every run's quadrature is exact, so with a
    # small σ the density is three equal bumps at 1, 2, 4 (weights follow the multiplicities)
    d = jnp.array([1.0] * 4 + [2.0] * 4 + [4.0] * 8)
    grid = jnp.linspace(0.0, 5.0, 2001)
    g, density = operator_spectral_density(lambda v: d * v, jnp.zeros(16), num_iters=16, num_runs=30,
                                           key=jax.random.PRNGKey(0), grid=grid, sigma=0.05)
    np.testing.assert_allclose(np.asarray(g), np.asarray(grid))
    np.testing.assert_allclose(float(jnp.trapezoid(density, g)), 1.0, rtol=1e-5)
    masses = [_mass(g, density, c - 0.4, c + 0.4) for c in (1.0, 2.0, 4.0)]
    np.testing.assert_allclose(masses, [0.25, 0.25, 0.5], atol=0.1)


def test_density_validation():
    with pytest.raises(ValueError, match="sigma"):
        spectral_density(quadratic_loss, jnp.zeros(3), jnp.eye(3), sigma=0.0)
    with pytest.raises(ValueError, match="num_runs"):
        spectral_density(quadratic_loss, jnp.zeros(3), jnp.eye(3), num_runs=0)
    with pytest.raises(ValueError, match=">= 2"):
        spectral_density(quadratic_loss, jnp.zeros(3), jnp.eye(3), grid=1)
    with pytest.raises(ValueError, match="increasing"):
        spectral_density(quadratic_loss, jnp.zeros(3), jnp.eye(3), grid=jnp.array([1.0, 0.0, 2.0]))
