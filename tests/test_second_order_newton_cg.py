"""Tests of gradtx.second_order.newton_cg: truncated Newton by conjugate gradients."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gradtx
from gradtx.second_order import NewtonCGState, newton_cg, scale_by_newton_cg


def run(tx, f, params, steps):
    """`steps` updates in one compiled scan; returns the params after each step and the states."""

    @jax.jit
    def go(params):
        def step(carry, _):
            p, s = carry
            u, s = tx.update(jax.grad(f)(p), s, p, value_fn=f)
            p = gradtx.apply_updates(p, u)
            return (p, s), (p, s)

        _, history = jax.lax.scan(step, (params, tx.init(params)), None, length=steps)
        return history

    return go(params)


def one_update(tx, f, params):
    """One compiled update from a fresh state, with the gradient of `f` at `params`."""
    return jax.jit(lambda p: tx.update(jax.grad(f)(p), tx.init(p), p, value_fn=f))(params)


def planted_quadratic(n, eigenvalues, seed):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    a = (q * eigenvalues) @ q.T
    a = 0.5 * (a + a.T)
    b = rng.normal(size=n)
    return a, b


def quadratic_loss(a, b, dtype):
    aj, bj = jnp.asarray(a, dtype), jnp.asarray(b, dtype)

    def f(params):
        x = jnp.concatenate([params["a"], params["b"].reshape(-1)])
        return 0.5 * x @ aj @ x - bj @ x

    return f


def flat(params):
    """The params as one vector (a matrix of vectors for a stacked history)."""
    a, b = np.asarray(params["a"]), np.asarray(params["b"])
    lead = a.shape[:-1]
    return np.concatenate([a, b.reshape((*lead, -1))], axis=-1)


# --------------------------------------------------------------------------------------------
# convergence
# --------------------------------------------------------------------------------------------


def test_ill_conditioned_quadratic_float64_in_two_steps():
    # condition number 1e4, log-spaced spectrum; CG needs ~120 products for 1e-5 in float64
    n = 50
    a, b = planted_quadratic(n, np.logspace(0, 4, n), seed=0)
    x_star = np.linalg.solve(a, b)
    with jax.enable_x64(True):
        f = quadratic_loss(a, b, jnp.float64)
        params = {"a": jnp.zeros(20, jnp.float64), "b": jnp.zeros((5, 6), jnp.float64)}
        ps, states = run(newton_cg(learning_rate=1.0, cg_iters=3 * n), f, params, 2)
    errors = [np.linalg.norm(x - x_star) / np.linalg.norm(x_star) for x in flat(ps)]
    assert errors[1] < 1e-4, errors
    assert errors[0] < 1e-2
    cg_state = states[0]
    assert isinstance(cg_state, NewtonCGState)
    iters = np.asarray(cg_state.cg_iterations)
    assert np.all((iters >= n) & (iters <= 3 * n))  # needs more than n products, stops before the cap
    assert np.all(np.asarray(cg_state.relative_residual) <= 1e-5)
    np.testing.assert_array_equal(np.asarray(cg_state.total_hvps), np.cumsum(iters))
    assert not np.any(np.asarray(cg_state.negative_curvature))


def test_ill_conditioned_quadratic_float32_in_three_steps():
    n = 50
    a, b = planted_quadratic(n, np.logspace(0, 4, n), seed=1)
    x_star = np.linalg.solve(a, b)
    f = quadratic_loss(a, b, jnp.float32)
    params = {"a": jnp.zeros(20), "b": jnp.zeros((5, 6))}
    ps, _ = run(newton_cg(cg_iters=2 * n), f, params, 3)
    error = np.linalg.norm(flat(ps)[-1] - x_star) / np.linalg.norm(x_star)
    # float32 gradients limit the accuracy to about κ·ε ≈ 1e-3 in the worst case
    assert error < 1e-3


def test_one_step_matches_dense_damped_newton():
    n = 6
    a, b = planted_quadratic(n, np.array([0.5, 1.0, 2.0, 3.0, 5.0, 8.0]), seed=2)
    x0 = np.random.default_rng(3).normal(size=n)
    damping = 0.3
    with jax.enable_x64(True):
        f = quadratic_loss(a, b, jnp.float64)
        params = {"a": jnp.asarray(x0[:3]), "b": jnp.asarray(x0[3:]).reshape(3, 1)}
        tx = scale_by_newton_cg(cg_iters=n, damping=damping, tol=1e-12)
        d, state = one_update(tx, f, params)
    g = a @ x0 - b
    expected = np.linalg.solve(a + damping * np.eye(n), g)
    np.testing.assert_allclose(flat(d), expected, rtol=1e-9, atol=1e-12)
    assert d["b"].shape == (3, 1) and d["b"].dtype == jnp.float64
    assert int(state.cg_iterations) <= n


def test_iterations_equal_number_of_distinct_eigenvalues():
    # CG converges in k steps when the matrix has k distinct eigenvalues
    n = 12
    a, b = planted_quadratic(n, np.repeat([1.0, 4.0, 9.0], 4), seed=4)
    with jax.enable_x64(True):
        f = quadratic_loss(a, b, jnp.float64)
        params = {"a": jnp.zeros(5, jnp.float64), "b": jnp.zeros(7, jnp.float64)}
        tx = scale_by_newton_cg(cg_iters=n, tol=1e-10)
        d, state = one_update(tx, f, params)
    assert int(state.cg_iterations) == 3
    np.testing.assert_allclose(flat(d), np.linalg.solve(a, -b), rtol=1e-8)


def test_one_iteration_is_exact_line_search_steepest_descent():
    n = 5
    a, b = planted_quadratic(n, np.array([1.0, 2.0, 3.0, 4.0, 5.0]), seed=5)
    with jax.enable_x64(True):
        f = quadratic_loss(a, b, jnp.float64)
        params = {"a": jnp.ones(2, jnp.float64), "b": jnp.ones(3, jnp.float64)}
        tx = scale_by_newton_cg(cg_iters=1)
        d, state = one_update(tx, f, params)
    g = a @ np.ones(n) - b
    np.testing.assert_allclose(flat(d), (g @ g) / (g @ a @ g) * g, rtol=1e-10)
    assert int(state.cg_iterations) == 1


def test_rosenbrock_from_standard_start():
    def rosenbrock(p):
        return (1 - p[0]) ** 2 + 100 * (p[1] - p[0] ** 2) ** 2

    start = jnp.array([-1.2, 1.0])
    for tx in (newton_cg(learning_rate=1.0, cg_iters=2), newton_cg(learning_rate=1.0, cg_iters=2, damping=1e-3)):
        ps, _ = run(tx, rosenbrock, start, 20)
        final = np.asarray(ps[-1])
        np.testing.assert_allclose(final, [1.0, 1.0], atol=1e-4)
        assert float(rosenbrock(ps[-1])) < 1e-8
        chex.assert_tree_all_finite(ps)
    # half steps converge too, more slowly (damped Newton)
    ps, _ = run(newton_cg(learning_rate=0.5, cg_iters=2), rosenbrock, start, 50)
    np.testing.assert_allclose(np.asarray(ps[-1]), [1.0, 1.0], atol=1e-4)


# --------------------------------------------------------------------------------------------
# negative curvature
# --------------------------------------------------------------------------------------------


def test_negative_curvature_on_first_iteration_returns_the_gradient():
    # A = diag(−1, 2, 3); at x with gradient ∝ e_1 the first CG direction has pᵀAp < 0
    a = np.diag([-1.0, 2.0, 3.0])
    b = np.array([0.0, 1.0, 1.0])
    x0 = np.array([0.7, 0.5, 1.0 / 3.0])  # A x0 − b = (−0.7, 0, 0)
    f = quadratic_loss(a, b, jnp.float32)
    params = {"a": jnp.asarray(x0[:1], jnp.float32), "b": jnp.asarray(x0[1:], jnp.float32)}
    g = jax.grad(f)(params)
    tx = newton_cg(learning_rate=1.0, cg_iters=10)
    u, (state, _) = one_update(tx, f, params)
    chex.assert_trees_all_close(u, jax.tree.map(jnp.negative, g), rtol=0, atol=0)
    assert bool(state.negative_curvature) and int(state.cg_iterations) == 1
    assert float(state.relative_residual) == pytest.approx(1.0)
    new = gradtx.apply_updates(params, u)
    assert float(f(new)) < float(f(params))


def _indefinite_loss(params, a, b):
    x = jnp.concatenate([params["a"], params["b"]])
    return 0.5 * x @ a @ x - b @ x


_INDEFINITE_TX = newton_cg(learning_rate=1.0, cg_iters=8)


@jax.jit
def _indefinite_run(params, a, b):
    # the matrix is an argument: one compilation serves every hypothesis example
    f = functools.partial(_indefinite_loss, a=a, b=b)

    def step(carry, _):
        p, s = carry
        u, s = _INDEFINITE_TX.update(jax.grad(f)(p), s, p, value_fn=f)
        p = gradtx.apply_updates(p, u)
        return (p, s), (f(p), s[0].negative_curvature)

    _, (losses, negative) = jax.lax.scan(step, (params, _INDEFINITE_TX.init(params)), None, length=5)
    return jnp.concatenate([f(params)[None], losses]), negative


@settings(max_examples=5, deadline=None)
@given(st.integers(min_value=0, max_value=10_000))
def test_indefinite_quadratic_exits_without_nan_and_decreases(seed):
    n = 8
    eigenvalues = np.array([-2.0, -0.5, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0])
    a, b = planted_quadratic(n, eigenvalues, seed=seed)
    x0 = np.random.default_rng(seed + 1).normal(size=n)
    params = {"a": jnp.asarray(x0[:3], jnp.float32), "b": jnp.asarray(x0[3:], jnp.float32)}
    losses, negative = _indefinite_run(params, jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32))
    chex.assert_tree_all_finite(losses)
    # on a quadratic the truncated-Newton step with η = 1 lowers f exactly (CG iterate minimizes
    # the model on a subspace where it is convex; a first-iteration exit steps along −g with gᵀAg ≤ 0)
    losses = np.asarray(losses)
    assert np.all(np.diff(losses) < 0), losses
    assert bool(negative[0])


def test_zero_gradient_gives_zero_direction():
    f = quadratic_loss(np.eye(3), np.zeros(3), jnp.float32)
    params = {"a": jnp.zeros(1), "b": jnp.zeros(2)}
    tx = scale_by_newton_cg(cg_iters=5)
    d, state = one_update(tx, f, params)
    chex.assert_trees_all_equal(d, params)
    assert int(state.cg_iterations) == 0 and float(state.relative_residual) == 0.0


class NewtonCGVariantsTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_newton_step_on_separable_quadratic(self):
        # f = Σ c_i (x_i − t_i)²: the Newton step from anywhere lands on t (lr = 1)
        c = jnp.array([1.0, 10.0, 100.0])
        t = {"w": jnp.array([1.0, -2.0]), "s": jnp.array(3.0)}

        def f(p):
            x = jnp.concatenate([p["w"], p["s"][None]])
            y = jnp.concatenate([t["w"], t["s"][None]])
            return jnp.sum(c * (x - y) ** 2)

        tx = newton_cg(cg_iters=3, tol=1e-6)
        params = {"w": jnp.zeros(2), "s": jnp.array(0.0)}
        update = self.variant(lambda g, s, p: tx.update(g, s, p, value_fn=f))
        u, (state, _) = update(jax.grad(f)(params), tx.init(params), params)
        chex.assert_trees_all_close(gradtx.apply_updates(params, u), t, rtol=1e-5, atol=1e-5)
        self.assertEqual(int(state.cg_iterations), 3)
        self.assertEqual(int(state.total_hvps), 3)


# --------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------


def test_validation_and_errors():
    for factory in (scale_by_newton_cg, newton_cg):
        with pytest.raises(ValueError, match="cg_iters"):
            factory(cg_iters=0)
        with pytest.raises(TypeError, match="cg_iters"):
            factory(cg_iters=2.0)
        with pytest.raises(ValueError, match="damping"):
            factory(damping=-1e-3)
        with pytest.raises(ValueError, match="tol"):
            factory(tol=-1.0)
    with pytest.raises(ValueError, match="learning_rate"):
        newton_cg(learning_rate=float("nan"))
    tx = scale_by_newton_cg()
    params = jnp.zeros(2)
    with pytest.raises(ValueError, match="value_fn"):
        tx.update(params, tx.init(params), params)
    with pytest.raises(ValueError, match="params"):
        tx.update(params, tx.init(params), None, value_fn=jnp.sum)
    assert repr(newton_cg()) == "newton_cg(learning_rate=1.0, cg_iters=50, damping=0.0, tol=1e-05)"
