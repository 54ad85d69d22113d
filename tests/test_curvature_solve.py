"""Tests of gradtx.curvature.solve (CG, MINRES, inverse Hessian-vector products), in float64.

References are dense: `numpy.linalg.solve`, the Krylov-subspace optimality that defines each
method's k-th iterate (computed by brute-force least squares in numpy), hand-computed CG steps,
and `jax.hessian` for `inverse_hvp`.
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _curvature_problems import mlp_apply, mlp_data, mlp_params, mse
from jax.flatten_util import ravel_pytree

from gradtx.curvature import Batched, SolveReport, data_operator, inverse_hvp, is_streaming, solve
from gradtx.curvature.solve import _solve_flat
from gradtx.curvature.streaming import HessianProduct

N = 24  # split as a (4,) leaf and a (4, 5) leaf


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


def _split(x):
    x = jnp.asarray(x, jnp.float64)
    return {"u": x[:4], "w": x[4:].reshape(4, 5)}


def _flat(tree):
    return np.asarray(ravel_pytree(tree)[0], np.float64)


def _matrix(eigenvalues, seed=0):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((len(eigenvalues), len(eigenvalues))))
    a = (q * np.asarray(eigenvalues, np.float64)) @ q.T
    return 0.5 * (a + a.T)


def _tree_operator(a):
    """`v ↦ A v` on the two-leaf pytree (flattening order {"u", "w"} = ravel_pytree order)."""
    a = jnp.asarray(a, jnp.float64)
    return lambda v: _split(a @ jnp.concatenate([v["u"], v["w"].ravel()]))


@functools.partial(jax.jit, static_argnames=("method", "max_iters"))
def _dense_solve(a, b, damping, tol, method, max_iters=None):
    """`solve` under jit with the two-leaf operator of a traced matrix (one compile per method, max_iters)."""
    return solve(_tree_operator(a), b, method=method, damping=damping, tol=tol, max_iters=max_iters)


SPD = _matrix(np.logspace(-1, 2, N), seed=0)  # condition number 1e3
_EIG = np.concatenate([np.linspace(-4.0, -0.5, 8), np.linspace(0.5, 9.0, N - 8)])
INDEFINITE = _matrix(_EIG, seed=1)
B = np.random.default_rng(2).standard_normal(N)


def _krylov(a, r0, k):
    """Orthonormal basis of span{r0, A r0, ..., A^{k-1} r0} (columns)."""
    cols = [r0 / np.linalg.norm(r0)]
    for _ in range(k - 1):
        cols.append(a @ cols[-1])
    q, _ = np.linalg.qr(np.stack(cols, axis=1))
    return q


def _check_report(report, a, b, x, tol):
    """The report's residual is the true one of x, and `converged` is decided on it."""
    true = np.linalg.norm(b - a @ x)
    assert isinstance(report, SolveReport)
    np.testing.assert_allclose(float(report.residual_norm), true, rtol=1e-9, atol=1e-13)
    np.testing.assert_allclose(float(report.relative_residual), true / np.linalg.norm(b), rtol=1e-9, atol=1e-13)
    assert bool(report.converged) == (true / np.linalg.norm(b) <= tol)


@pytest.mark.parametrize("method, a", [("cg", SPD), ("minres", INDEFINITE)])
def test_solution_matches_numpy_on_a_two_leaf_pytree(method, a):
    x, report = _dense_solve(a, _split(B), 0.0, 1e-10, method)
    assert set(x) == {"u", "w"} and x["w"].shape == (4, 5) and x["w"].dtype == jnp.float64
    x = _flat(x)
    np.testing.assert_allclose(x, np.linalg.solve(a, B), rtol=1e-7, atol=1e-9)
    _check_report(report, a, B, x, 1e-10)
    assert bool(report.converged) and not bool(report.negative_curvature)
    assert float(report.relative_residual) <= 1e-10
    # exact arithmetic would need at most N steps; CG on κ = 1e3 needs a few more in floating point
    assert 1 <= int(report.iterations) <= 3 * N


@pytest.mark.parametrize("method", ["cg", "minres"])
def test_kth_iterate_is_the_krylov_optimum(method):
    # CG's x_k minimizes the A-norm of the error, MINRES's x_k the residual norm, over K_k(A, b);
    # with max_iters = k both stop there, and the iterate is unique: compare to the brute force.
    # Hitting max_iters: converged is False and the report holds the true residual.
    a = SPD if method == "cg" else INDEFINITE
    k = 6
    x, report = _dense_solve(a, _split(B), 0.0, 1e-12, method, max_iters=k)
    q = _krylov(a, B, k)
    if method == "cg":
        y = np.linalg.solve(q.T @ a @ q, q.T @ B)  # Galerkin condition = A-norm minimization
    else:
        y = np.linalg.lstsq(a @ q, B, rcond=None)[0]
    np.testing.assert_allclose(_flat(x), q @ y, rtol=1e-8, atol=1e-10)
    assert int(report.iterations) == k and not bool(report.converged)
    _check_report(report, a, B, _flat(x), 1e-12)


def test_cg_stops_on_negative_curvature_with_hand_computed_iterates():
    # A = diag(2, 1, -1), b = (1, 1, 1): step 1 has pᵀAp = 2 > 0, α = 3/2, x1 = (1.5, 1.5, 1.5);
    # r1 = (-2, -0.5, 2.5), β = 10.5 / 3 = 3.5, p1 = (1.5, 3, 6), p1ᵀ A p1 = 4.5 + 9 - 36 < 0: stop.
    d = jnp.array([2.0, 1.0, -1.0])
    b = jnp.ones(3)
    x, report = solve(lambda v: d * v, b, method="cg")
    np.testing.assert_allclose(np.asarray(x), [1.5, 1.5, 1.5], rtol=1e-12)
    assert bool(report.negative_curvature) and not bool(report.converged)
    assert int(report.iterations) == 2
    np.testing.assert_allclose(float(report.residual_norm), np.sqrt(10.5), rtol=1e-12)
    # A = diag(1, -1), b = (1, 1): bᵀAb = 0 at the first step; x stays at x0 = 0
    x, report = solve(lambda v: jnp.array([1.0, -1.0]) * v, jnp.ones(2), method="cg")
    np.testing.assert_array_equal(np.asarray(x), [0.0, 0.0])
    assert bool(report.negative_curvature) and int(report.iterations) == 1
    np.testing.assert_allclose(float(report.residual_norm), np.sqrt(2.0), rtol=1e-12)
    # the same indefinite system by MINRES: solved
    x, report = solve(lambda v: d * v, b, method="minres", tol=1e-12)
    np.testing.assert_allclose(np.asarray(x), [0.5, 1.0, -1.0], rtol=1e-12)
    assert bool(report.converged) and not bool(report.negative_curvature)
    # the core's truncated-Newton options (Newton-CG): a later exit still returns the iterate,
    # with the recursive residual r1 = (-2, -0.5, 2.5) ...
    core = functools.partial(_solve_flat, x0=None, damping=0.0, tol=1e-6, method="cg", max_iters=10,
                             steepest_descent_start=True)
    x, report = core(lambda v: d * v, b, recompute_residual=False)
    np.testing.assert_allclose(np.asarray(x), [1.5, 1.5, 1.5], rtol=1e-12)
    np.testing.assert_allclose(float(report.residual_norm), np.sqrt(10.5), rtol=1e-12)
    # ... a first-iteration exit returns b (steepest descent), reporting ‖r0‖ = ‖b‖ = √2 or,
    # recomputed, ‖b − A b‖ = ‖(0, 2)‖ = 2
    for recompute, residual in ((False, np.sqrt(2.0)), (True, 2.0)):
        x, report = core(lambda v: jnp.array([1.0, -1.0]) * v, jnp.ones(2), recompute_residual=recompute)
        np.testing.assert_array_equal(np.asarray(x), [1.0, 1.0])
        assert bool(report.negative_curvature) and int(report.iterations) == 1
        np.testing.assert_allclose(float(report.residual_norm), residual, rtol=1e-12)
    with pytest.raises(ValueError, match=r"_solve_flat: .* CG options, got 'minres'"):
        core(lambda v: d * v, b, method="minres")


def test_cg_on_the_indefinite_matrix_reports_negative_curvature():
    x, report = _dense_solve(INDEFINITE, _split(B), 0.0, 1e-10, "cg")
    assert bool(report.negative_curvature) and not bool(report.converged)
    assert 1 <= int(report.iterations) < N
    _check_report(report, INDEFINITE, B, _flat(x), 1e-10)


@pytest.mark.parametrize("method", ["cg", "minres"])
def test_damping(method):
    # a singular PSD matrix (rank 12) is solvable once damped; for MINRES an indefinite one that
    # damping 1.25 shifts to eigenvalues in [-2.75, 10.25] with |λ| >= 0.25: still indefinite
    if method == "cg":
        a = _matrix(np.concatenate([np.zeros(12), np.linspace(1.0, 5.0, 12)]), seed=3)
    else:
        a = INDEFINITE
    lam = 0.3 if method == "cg" else 1.25
    x, report = _dense_solve(a, _split(B), lam, 1e-11, method)
    damped = a + lam * np.eye(N)
    np.testing.assert_allclose(_flat(x), np.linalg.solve(damped, B), rtol=1e-8, atol=1e-10)
    _check_report(report, damped, B, _flat(x), 1e-11)
    assert bool(report.converged)


def test_zero_rhs_and_start_vector():
    op = _tree_operator(SPD)
    zero = _split(np.zeros(N))
    # b = 0: x = 0 without any iteration, whatever the start vector; vmapped over two right-hand
    # sides (B and 0), each lane keeps its own iterate, iteration count and report
    bs = jax.tree.map(lambda u, z: jnp.stack([u, z]), _split(B), zero)
    xs, reports = jax.vmap(lambda b: solve(op, b, method="cg", x0=_split(np.ones(N)), tol=1e-10))(bs)
    x = jax.tree.map(lambda t: t[1], xs)
    assert not np.any(_flat(x))
    assert int(reports.iterations[1]) == 0 and bool(reports.converged[1])
    assert float(reports.residual_norm[1]) == 0.0 and float(reports.relative_residual[1]) == 0.0
    np.testing.assert_allclose(_flat(jax.tree.map(lambda t: t[0], xs)), np.linalg.solve(SPD, B), rtol=1e-7)
    assert int(reports.iterations[0]) > 0 and bool(reports.converged[0])
    # starting at the solution: no iteration at all
    x_star = np.linalg.solve(SPD, B)
    x, report = solve(op, _split(B), x0=_split(x_star), tol=1e-8)
    assert int(report.iterations) == 0 and bool(report.converged)
    np.testing.assert_allclose(_flat(x), x_star, rtol=1e-12)
    # a start vector changes the path, not the answer
    x, report = solve(op, _split(B), method="minres", x0=_split(np.ones(N)), tol=1e-11)
    np.testing.assert_allclose(_flat(x), x_star, rtol=1e-7, atol=1e-9)
    _check_report(report, SPD, B, _flat(x), 1e-11)


class TestJit(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_jit_equals_eager(self):
        a = jnp.asarray(INDEFINITE)

        def run(b, damping):
            return solve(_tree_operator(a), b, method="minres", damping=damping, tol=1e-10)

        with jax.enable_x64(True):
            x, report = self.variant(run)(_split(B), 5.0)  # damping 5: positive definite
            expected = np.linalg.solve(INDEFINITE + 5.0 * np.eye(N), B)
            np.testing.assert_allclose(_flat(x), expected, rtol=1e-8)
            assert bool(report.converged)
            _check_report(report, INDEFINITE + 5.0 * np.eye(N), B, _flat(x), 1e-10)


@functools.cache
def _mlp_problem():
    """A 50-parameter MLP in float64, its dense `jax.hessian` (indefinite) and a right-hand side."""
    params = jax.tree.map(lambda p: jnp.asarray(p, jnp.float64), mlp_params())
    x, y = (jnp.asarray(t, jnp.float64) for t in mlp_data())

    def loss(p, x, y):
        return mse(mlp_apply(p, x), y)

    flat0, unravel = ravel_pytree(params)
    h = np.asarray(jax.jit(jax.hessian(lambda z: loss(unravel(z), x, y)))(flat0), np.float64)
    v = jax.tree.map(lambda p: jnp.cos(jnp.arange(p.size, dtype=jnp.float64).reshape(p.shape)), params)
    return loss, params, x, y, 0.5 * (h + h.T), v


def test_inverse_hvp_matches_dense_hessian_solve_under_jit():
    loss, params, x, y, h, v = _mlp_problem()
    n = h.shape[0]
    assert np.linalg.eigvalsh(h)[0] < -1e-3  # indefinite: a job for MINRES (or damping)

    @jax.jit
    def run(params, v, x, y):
        return (inverse_hvp(loss, params, v, x, y, method="minres", tol=1e-11),
                inverse_hvp(loss, params, v, x, y, method="cg", damping=1.0, tol=1e-11))

    (xm, rm), (xc, rc) = run(params, v, x, y)
    vf = _flat(v)
    np.testing.assert_allclose(_flat(xm), np.linalg.solve(h, vf), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(_flat(xc), np.linalg.solve(h + np.eye(n), vf), rtol=1e-8, atol=1e-10)
    assert bool(rm.converged) and bool(rc.converged) and not bool(rc.negative_curvature)
    assert jax.tree.structure(xm) == jax.tree.structure(params)
    _check_report(rm, h, vf, _flat(xm), 1e-11)


def test_inverse_hvp_streams_batches_and_equals_the_concatenated_batch():
    loss, params, x, y, h, v = _mlp_problem()
    expected = {
        "cg": np.linalg.solve(h + np.eye(h.shape[0]), _flat(v)),  # damping 1: positive definite
        "minres": np.linalg.solve(h, _flat(v)),
    }
    # batches of 10 and 6 points (size-weighted = the 16-point mean): a list is streamed (host
    # loop, StreamingOperator), Batched is swept by lax.scan
    chunks = [(x[:10], y[:10]), (x[10:], y[10:])]
    cases = [("cg", chunks), ("cg", Batched(x, y, batch_size=10))]
    for method, batches in cases:
        damping = 1.0 if method == "cg" else 0.0
        sol, report = inverse_hvp(loss, params, v, damping=damping, method=method, tol=1e-11, batches=batches)
        np.testing.assert_allclose(_flat(sol), expected[method], rtol=1e-6, atol=1e-8)
        assert bool(report.converged) and int(report.iterations) > 0
        hd = h + damping * np.eye(h.shape[0])
        _check_report(report, hd, _flat(v), _flat(sol), 1e-11)
    # solve() takes a StreamingOperator directly (here over a generator factory) and runs MINRES
    op = data_operator("test", HessianProduct(loss), params, (), lambda: iter(chunks))
    assert is_streaming(op)
    sol, report = solve(op, v, method="minres", tol=1e-11)
    np.testing.assert_allclose(_flat(sol), expected["minres"], rtol=1e-6, atol=1e-8)


def test_validation():
    op = _tree_operator(SPD)
    b = _split(B)
    with pytest.raises(ValueError, match=r"solve: method must be one of \('cg', 'minres'\)"):
        solve(op, b, method="gmres")
    with pytest.raises(ValueError, match=r"solve: damping must be in \[0, inf\)"):
        solve(op, b, damping=-0.1)
    for tol in (0.0, -1e-3):
        with pytest.raises(ValueError, match=r"solve: tol must be in \(0, inf\)"):
            solve(op, b, tol=tol)
    with pytest.raises(ValueError, match="solve: max_iters must be an integer >= 1"):
        solve(op, b, max_iters=0)
    with pytest.raises(TypeError, match="solve: max_iters must be an integer"):
        solve(op, b, max_iters=2.5)
    with pytest.raises(TypeError, match="solve: b must hold floating-point arrays, got dtype int"):
        solve(lambda v: v, jnp.arange(3))
    with pytest.raises(TypeError, match="solve: matvec must be callable"):
        solve(np.eye(N), b)
    with pytest.raises(ValueError, match="solve: x0 must have the tree structure of b"):
        solve(op, b, x0=jnp.zeros(N))
    with pytest.raises(ValueError, match=r"solve: x0 has shape \(20,\)"):
        solve(op, b, x0={"u": jnp.zeros(4), "w": jnp.zeros(20)})
    # b's structure does not match the operator's
    with pytest.raises(ValueError, match=r"solve: matvec\(b\) must have the tree structure of b"):
        solve(op, {"u": b["u"], "w": b["w"], "extra": jnp.zeros(1)})
    loss, params, x, y, _, _ = _mlp_problem()
    streaming = data_operator("test", HessianProduct(loss), params, (), [(x, y)])
    with pytest.raises(ValueError, match="solve: b must have the tree structure of the operator's template"):
        solve(streaming, b)
    with pytest.raises(ValueError, match="inverse_hvp: the vector must have the tree structure of params"):
        inverse_hvp(lambda p: jnp.sum(p["u"] ** 2), b, jnp.zeros(N))
    with pytest.raises(ValueError, match="inverse_hvp: method must be one of"):
        inverse_hvp(lambda p: jnp.sum(p["u"] ** 2), b, b, method="lsqr")
    with pytest.raises(ValueError, match="inverse_hvp: damping must be in"):
        inverse_hvp(lambda p: jnp.sum(p["u"] ** 2), b, b, damping=-1.0)
