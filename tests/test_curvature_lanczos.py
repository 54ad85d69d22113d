"""Tests of gradtx.curvature.lanczos: Lanczos tridiagonalization, operator_eigsh and eigsh."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _curvature_problems import (
    LARGE,
    NEGATIVE,
    flat,
    mlp_data,
    mlp_dense_hessian,
    mlp_loss,
    mlp_params,
    quadratic_loss,
    quadratic_params,
    quadratic_problem,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.flatten_util import ravel_pytree

from gradtx.curvature import eigsh, lanczos_tridiag, operator_eigsh


def _dense_op(m):
    m = jnp.asarray(m, jnp.float32)
    return lambda v: m @ v


def test_quadratic_extreme_eigenpairs_in_80_hvps():
    a, lam, q = quadratic_problem()
    params = quadratic_params()
    for which, k, want_idx in (
        ("LA", 4, np.arange(len(lam) - 4, len(lam))),
        ("SA", 4, np.arange(4)),
        ("LM", 3, np.arange(len(lam) - 3, len(lam))),
    ):
        vals, vecs = eigsh(quadratic_loss, params, a, k=k, which=which, num_iters=80, key=jax.random.PRNGKey(3))
        assert vals.shape == (k,)
        np.testing.assert_allclose(np.asarray(vals), lam[want_idx], rtol=1e-3, atol=0)
        v = np.asarray(flat(vecs), np.float64)  # (k, n)
        np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
        cos = np.abs(np.sum(v * q[:, want_idx].T, axis=1))
        assert np.all(cos > 0.999), (which, cos)
    # the planted spectrum really is what the test claims
    np.testing.assert_allclose(lam[-4:], np.sort(LARGE))
    np.testing.assert_allclose(lam[:4], np.sort(NEGATIVE))


def test_mlp_eigsh_matches_dense_under_jit():
    params = mlp_params()
    x, y = mlp_data()
    n = ravel_pytree(params)[0].size
    dense = np.linalg.eigvalsh(mlp_dense_hessian())
    num_iters = 40
    assert num_iters < n

    @jax.jit
    def top_and_bottom(p, x, y):
        top, _ = eigsh(mlp_loss, p, x, y, k=2, which="LA", num_iters=num_iters)
        bottom, vec = eigsh(mlp_loss, p, x, y, k=2, which="SA", num_iters=num_iters)
        return top, bottom, vec

    top, bottom, vec = top_and_bottom(params, x, y)
    scale = np.max(np.abs(dense))
    np.testing.assert_allclose(np.asarray(top), dense[-2:], rtol=0, atol=1e-3 * scale)
    np.testing.assert_allclose(np.asarray(bottom), dense[:2], rtol=0, atol=1e-3 * scale)
    chex.assert_tree_all_finite(vec)
    assert jax.tree.structure(jax.tree.map(lambda leaf: leaf[0], vec)) == jax.tree.structure(params)


def test_lanczos_basis_is_orthonormal_and_tridiagonalizes():
    rng = np.random.default_rng(0)
    m = rng.standard_normal((30, 30))
    m = m + m.T
    res = lanczos_tridiag(_dense_op(m), jnp.zeros(30), num_iters=12, key=jax.random.PRNGKey(1))
    basis = np.asarray(res.basis, np.float64)
    assert basis.shape == (12, 30) and res.alpha.shape == (12,) and res.beta.shape == (11,)
    np.testing.assert_allclose(basis @ basis.T, np.eye(12), atol=1e-5)
    t = np.diag(np.asarray(res.alpha)) + np.diag(np.asarray(res.beta), 1) + np.diag(np.asarray(res.beta), -1)
    np.testing.assert_allclose(basis @ m @ basis.T, t, atol=1e-4)


def quad_form(p, m):
    return 0.5 * jnp.dot(p, jnp.dot(m, p))


def diag_form(p, d):
    return 0.5 * jnp.sum(d * p * p)


def test_exact_when_num_iters_reaches_dimension_and_scipy_ordering():
    spectrum = np.array([-5.0, -1.0, 0.5, 2.0, 3.0, 4.5, 6.0])
    rng = np.random.default_rng(2)
    q, _ = np.linalg.qr(rng.standard_normal((7, 7)))
    m = jnp.asarray((q * spectrum) @ q.T, jnp.float32)
    x0 = jnp.ones(7)
    vals, _ = eigsh(quad_form, x0, m, k=7, num_iters=100)  # clipped to 7 steps: exact
    np.testing.assert_allclose(np.asarray(vals), spectrum, atol=1e-5)
    # scipy.sparse.linalg.eigsh's order: ascending algebraic for every `which`
    np.testing.assert_allclose(np.asarray(eigsh(quad_form, x0, m, k=3, which="LM", num_iters=7)[0]),
                               [-5.0, 4.5, 6.0], atol=1e-5)
    np.testing.assert_allclose(np.asarray(eigsh(quad_form, x0, m, k=3, which="SA", num_iters=7)[0]),
                               [-5.0, -1.0, 0.5], atol=1e-5)
    np.testing.assert_allclose(np.asarray(eigsh(quad_form, x0, m, k=3, which="LA", num_iters=7)[0]),
                               [3.0, 4.5, 6.0], atol=1e-5)


def test_breakdown_on_invariant_subspace_gives_no_nan():
    # three distinct eigenvalues with multiplicity: the Krylov space of any start vector has
    # dimension 3, so beta hits 0 at step 3. Finding eigenvalue 3 five times in 10 steps is only
    # possible because the iteration restarts with fresh vectors orthogonal to the basis.
    d = jnp.array([1.0, 1, 1, 2, 2, 3, 3, 3, 3, 3])
    vals, vecs = eigsh(diag_form, jnp.ones(10), d, k=5, which="LA", num_iters=10)
    chex.assert_tree_all_finite((vals, vecs))
    np.testing.assert_allclose(np.asarray(vals), [3.0] * 5, atol=1e-5)
    v = np.asarray(vecs, np.float64)
    np.testing.assert_allclose(v @ v.T, np.eye(5), atol=1e-4)  # five independent eigenvectors of 3
    np.testing.assert_allclose(v[:, :5], 0.0, atol=1e-5)
    # the zero Hessian: breakdown at every step
    vals0, vecs0 = eigsh(diag_form, jnp.ones(10), jnp.zeros(10), k=5, which="LA", num_iters=10)
    chex.assert_tree_all_finite((vals0, vecs0))
    np.testing.assert_allclose(np.asarray(vals0), 0.0, atol=0)
    # and through the operator interface
    vals1, vecs1 = operator_eigsh(lambda v: 0.0 * v, jnp.zeros(4), k=2, num_iters=4)
    chex.assert_tree_all_finite((vals1, vecs1))
    np.testing.assert_allclose(np.linalg.norm(np.asarray(vecs1), axis=1), 1.0, rtol=1e-5)


def test_num_iters_is_the_number_of_matvecs():
    calls = []
    m = np.diag(np.arange(1.0, 21.0))

    def counted(v):
        jax.debug.callback(lambda: calls.append(1))
        return jnp.asarray(m, jnp.float32) @ v

    jax.block_until_ready(operator_eigsh(counted, jnp.zeros(20), k=2, num_iters=7))
    jax.effects_barrier()
    assert len(calls) == 7
    calls.clear()
    jax.block_until_ready(operator_eigsh(counted, jnp.zeros(20), k=2, num_iters=50))
    jax.effects_barrier()
    assert len(calls) == 20  # clipped to the dimension


def test_validation():
    op = _dense_op(np.eye(4))
    z = jnp.zeros(4)
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        operator_eigsh(op, z, k=0)
    with pytest.raises(TypeError, match="k must be an integer"):
        operator_eigsh(op, z, k=1.5)
    with pytest.raises(ValueError, match="num_iters must be >= k"):
        operator_eigsh(op, z, k=3, num_iters=2)
    with pytest.raises(ValueError, match="which must be one of"):
        operator_eigsh(op, z, which="SM")
    with pytest.raises(ValueError, match="exceeds the dimension"):
        operator_eigsh(op, z, k=5, num_iters=10)
    with pytest.raises(TypeError, match="num_iters must be an integer"):
        eigsh(lambda p: jnp.sum(p**2), z, num_iters=10.0)
    with pytest.raises(TypeError, match="floating"):
        operator_eigsh(op, jnp.zeros(4, jnp.int32))


@settings(max_examples=12, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from(["LA", "SA", "LM"]))
def test_ritz_values_lie_inside_the_spectrum_and_are_exact_at_full_dimension(seed, which):
    rng = np.random.default_rng(seed)
    m = rng.standard_normal((12, 12)) * rng.uniform(0.1, 10.0)
    m = jnp.asarray(m + m.T, jnp.float32)
    ev = np.linalg.eigvalsh(np.asarray(m, np.float64))
    scale = np.abs(ev).max()
    key = jax.random.PRNGKey(seed % 1000)
    # a partial run (5 steps): Ritz values are inside [λ_min, λ_max] (Cauchy interlacing)
    partial, vecs = eigsh(quad_form, jnp.ones(12), m, k=2, which=which, num_iters=5, key=key)
    assert np.all(np.asarray(partial) <= ev[-1] + 1e-5 * scale)
    assert np.all(np.asarray(partial) >= ev[0] - 1e-5 * scale)
    assert np.all(np.diff(np.asarray(partial)) >= 0)  # ascending
    np.testing.assert_allclose(np.linalg.norm(np.asarray(vecs), axis=1), 1.0, rtol=1e-5)
    # a full run is exact, whatever `which` selects
    full, _ = eigsh(quad_form, jnp.ones(12), m, k=12, which=which, num_iters=12, key=key)
    np.testing.assert_allclose(np.asarray(full), ev, atol=1e-4 * scale)


def test_low_precision_params_run_lanczos_in_float32():
    d = jnp.array([1.0, 2.0, 3.0, 6.0, -1.0])
    params = {"a": jnp.ones(3, jnp.bfloat16), "b": jnp.ones(2, jnp.bfloat16)}

    def loss(p, d):
        x = jnp.concatenate([p["a"], p["b"]]).astype(jnp.float32)
        return 0.5 * jnp.sum(d * x * x)

    vals, vecs = eigsh(loss, params, d, k=2, which="LM", num_iters=5)
    assert vals.dtype == jnp.float32
    assert vecs["a"].dtype == jnp.bfloat16 and vecs["a"].shape == (2, 3)
    np.testing.assert_allclose(np.asarray(vals), [3.0, 6.0], rtol=2e-2)
