"""Tests of gradtx.second_order.saddle: saddle_escape and perturbed_gradient."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gradtx
from gradtx.second_order import (
    PerturbedGradientState,
    SaddleEscapeState,
    perturbed_gradient,
    saddle_escape,
)


def saddle_2d(p):
    """x² − y² + y⁴/4: a strict saddle at 0 (Hessian diag(2, −2)), minima (0, ±√2) with value −1."""
    return p[0] ** 2 - p[1] ** 2 + p[1] ** 4 / 4


def run(tx, f, params, steps):
    """`steps` updates of `tx` on `f` in one compiled scan: final params, state, params and loss history."""

    @jax.jit
    def go(params):
        def step(carry, _):
            p, s = carry
            u, s = tx.update(jax.grad(f)(p), s, p, value_fn=f)
            p = gradtx.apply_updates(p, u)
            return (p, s), (p, f(p))

        (p, s), (path, losses) = jax.lax.scan(step, (params, tx.init(params)), None, length=steps)
        return p, s, path, losses

    return go(params)


# --------------------------------------------------------------------------------------------
# saddle_escape
# --------------------------------------------------------------------------------------------


def test_plain_gradient_descent_is_stuck_at_the_saddle():
    p, _, _, losses = run(gradtx.sgd(0.1), saddle_2d, jnp.zeros(2), 100)
    chex.assert_trees_all_equal(p, jnp.zeros(2))
    assert float(losses[-1]) == 0.0


def test_escape_reaches_the_minimum_from_the_exact_saddle():
    lr, step_size = 0.1, 1.0
    tx = gradtx.chain(saddle_escape(grad_tol=1e-3, curvature_tol=1e-3, step_size=step_size, num_iters=2), gradtx.sgd(lr))
    p, state, path, losses = run(tx, saddle_2d, jnp.zeros(2), 100)
    # the first step moves a distance lr·step_size along ±e_y
    chex.assert_trees_all_close(jnp.abs(path[0]), jnp.array([0.0, lr * step_size]), atol=1e-6)
    losses = np.asarray(losses)
    assert abs(float(p[0])) < 1e-5
    assert abs(abs(float(p[1])) - np.sqrt(2.0)) < 1e-3
    assert losses[-1] == pytest.approx(-1.0, abs=1e-5)
    assert np.all(np.diff(losses) <= 1e-7)  # monotone descent once off the saddle
    escape_state = state[0]
    assert isinstance(escape_state, SaddleEscapeState)
    assert int(escape_state.count) == 100
    assert int(escape_state.escapes) == 1
    # once converged the gradient is small again: the Hessian at (0, ±√2) is diag(2, 4)
    assert int(escape_state.eigen_solves) >= 2
    assert float(escape_state.min_eigenvalue) == pytest.approx(2.0, rel=1e-3)


def test_escape_goes_to_the_lower_side():
    # f(0, ±1) = −0.75 ± c: the lower side is −sign(c)·e_y, whatever Lanczos's sign
    tx = gradtx.chain(saddle_escape(step_size=1.0, num_iters=2), gradtx.sgd(0.5))

    @jax.jit
    def first_update(c):
        def f(p):
            return saddle_2d(p) + c * p[1] ** 3

        p = jnp.zeros(2)
        return tx.update(jax.grad(f)(p), tx.init(p), p, value_fn=f)

    for cubic in (0.1, -0.1):
        u, state = first_update(cubic)
        chex.assert_trees_all_close(u, jnp.array([0.0, -0.5 * np.sign(cubic)]), atol=1e-6)
        assert int(state[0].escapes) == 1
        assert float(state[0].min_eigenvalue) == pytest.approx(-2.0, rel=1e-4)


def test_pytree_quartic_with_two_negative_directions():
    # f(x) = Σ_i a_i z_i² + z_i⁴/4 with z = Q x: saddle at 0; minimum value −Σ_{a_i<0} a_i²
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(7, 7)))
    a = np.array([-1.0, -0.5, 0.5, 1.0, 1.5, 2.0, 3.0])
    qj, aj = jnp.asarray(q, jnp.float32), jnp.asarray(a, jnp.float32)

    def f(params):
        x = jnp.concatenate([params["u"], params["w"].reshape(-1)])
        z = qj @ x
        return jnp.sum(aj * z**2 + z**4 / 4)

    params = {"u": jnp.zeros(3), "w": jnp.zeros((2, 2))}
    stuck, _, _, _ = run(gradtx.sgd(0.05), f, params, 300)
    chex.assert_trees_all_equal(stuck, params)
    tx = gradtx.chain(saddle_escape(step_size=1.0, num_iters=7), gradtx.sgd(0.05))
    p, state, _, losses = run(tx, f, params, 300)
    chex.assert_tree_all_finite(p)
    assert float(losses[-1]) == pytest.approx(-(1.0 + 0.25), abs=1e-4)
    assert int(state[0].escapes) >= 1
    # a minimum: the dense Hessian is positive definite there
    flat, unravel = jax.flatten_util.ravel_pytree(p)
    eigs = np.linalg.eigvalsh(np.asarray(jax.jit(jax.hessian(lambda x: f(unravel(x))))(flat), np.float64))
    assert eigs.min() > 0.5


def test_passes_gradients_through_exactly_unless_at_a_saddle():
    def f(p):
        return saddle_2d(p["a"]) + p["b"] ** 2

    tx = gradtx.chain(saddle_escape(num_iters=3), gradtx.sgd(0.1))
    update = jax.jit(lambda g, s, p: tx.update(g, s, p, value_fn=f))
    sgd = gradtx.sgd(0.1)

    # 1. large gradient: no eigen-solve, the step is exactly sgd's
    params = {"a": jnp.array([0.3, -1.2]), "b": jnp.array(0.7)}
    grads = jax.grad(f)(params)
    u, (state, _) = update(grads, tx.init(params), params)
    chex.assert_trees_all_equal(u, sgd.update(grads, sgd.init(params), params)[0])
    assert int(state.eigen_solves) == 0 and int(state.escapes) == 0 and int(state.count) == 1
    assert np.isnan(float(state.min_eigenvalue))

    # 2. at the minimum (0, √2, 0): gradient ~0 but Hessian diag(2, 4, 2) > 0: solve, no escape
    params = {"a": jnp.array([0.0, np.sqrt(2.0)], jnp.float32), "b": jnp.array(0.0)}
    grads = jax.grad(f)(params)
    assert float(gradtx.numerics.global_norm(grads)) < 1e-3
    u, (state, _) = update(grads, tx.init(params), params)
    chex.assert_trees_all_equal(u, sgd.update(grads, sgd.init(params), params)[0])
    assert int(state.eigen_solves) == 1 and int(state.escapes) == 0
    assert float(state.min_eigenvalue) == pytest.approx(2.0, rel=1e-4)

    # 3. at the saddle: the update is replaced by ±lr·step_size·e_y (the e_y component of params["a"])
    params = jax.tree.map(jnp.zeros_like, params)
    u, (state, _) = update(jax.grad(f)(params), tx.init(params), params)
    chex.assert_trees_all_close(jax.tree.map(jnp.abs, u), {"a": jnp.array([0.0, 0.1]), "b": jnp.array(0.0)},
                                atol=1e-6)
    assert int(state.escapes) == 1
    assert float(state.min_eigenvalue) == pytest.approx(-2.0, rel=1e-4)


class SaddleEscapeVariantsTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_single_update_at_saddle(self):
        tx = saddle_escape(step_size=0.5, num_iters=2, key=3)
        params = jnp.zeros(2)
        update = self.variant(lambda g, s, p: tx.update(g, s, p, value_fn=saddle_2d))
        out, state = update(jnp.zeros(2), tx.init(params), params)
        # the update is a gradient-like vector: −step_size·s·v with v = ±e_y
        chex.assert_trees_all_close(jnp.abs(out), jnp.array([0.0, 0.5]), atol=1e-6)
        chex.assert_tree_all_finite(out)
        self.assertEqual(int(state.escapes), 1)
        self.assertEqual(int(state.count), 1)
        # the key advances
        self.assertFalse(bool(jnp.all(jax.random.key_data(state.key) == jax.random.key_data(tx.init(params).key))))


def test_saddle_escape_validation_and_errors():
    with pytest.raises(ValueError, match="grad_tol"):
        saddle_escape(grad_tol=0.0)
    with pytest.raises(ValueError, match="curvature_tol"):
        saddle_escape(curvature_tol=-1.0)
    with pytest.raises(ValueError, match="step_size"):
        saddle_escape(step_size=0.0)
    with pytest.raises(ValueError, match="num_iters"):
        saddle_escape(num_iters=0)
    with pytest.raises(TypeError, match="num_iters"):
        saddle_escape(num_iters=2.5)
    with pytest.raises(TypeError, match="key"):
        saddle_escape(key="seed")
    tx = saddle_escape()
    params = jnp.zeros(2)
    with pytest.raises(ValueError, match="value_fn"):
        tx.update(params, tx.init(params), params)
    with pytest.raises(ValueError, match="params"):
        tx.update(params, tx.init(params), None, value_fn=saddle_2d)
    with pytest.raises(TypeError, match="value_fn"):
        tx.update(params, tx.init(params), params, value_fn=3.0)
    assert repr(tx).startswith("saddle_escape(grad_tol=0.001, curvature_tol=0.001, step_size=1.0, num_iters=20")


# --------------------------------------------------------------------------------------------
# perturbed_gradient
# --------------------------------------------------------------------------------------------


def test_perturbed_gradient_escapes_the_saddle():
    tx = gradtx.chain(perturbed_gradient(grad_tol=1e-3, radius=0.1, key=0, t_thres=20), gradtx.sgd(0.1))
    p, state, _, losses = run(tx, saddle_2d, jnp.zeros(2), 200)
    assert float(losses[-1]) == pytest.approx(-1.0, abs=1e-4)
    assert abs(abs(float(p[1])) - np.sqrt(2.0)) < 1e-2
    assert int(state[0].perturbations) >= 1
    assert isinstance(state[0], PerturbedGradientState)


def test_perturbations_are_spaced_by_t_thres():
    tx = perturbed_gradient(grad_tol=1e-3, radius=1.0, key=1, t_thres=10)
    params = {"a": jnp.zeros(3), "b": jnp.zeros(())}
    zeros = jax.tree.map(jnp.zeros_like, params)

    def step(state, _):
        u, state = tx.update(zeros, state, params)
        return state, gradtx.numerics.global_norm(u)

    state, norms = jax.jit(lambda s: jax.lax.scan(step, s, None, length=25))(tx.init(params))
    norms = np.asarray(norms)
    # the first small gradient is perturbed at once, then t − t_noise > t_thres: steps 0, 11, 22
    assert list(np.flatnonzero(norms > 0)) == [0, 11, 22]
    assert np.all(norms <= 1.0 + 1e-6)
    assert int(state.perturbations) == 3 and int(state.count) == 25


def test_large_gradient_is_not_perturbed():
    tx = perturbed_gradient(grad_tol=1e-3, radius=1.0, t_thres=0)
    g = {"a": jnp.array([1.0, 2.0]), "b": jnp.array(-0.5)}
    out, state = jax.jit(tx.update)(g, tx.init(g))
    chex.assert_trees_all_equal(out, g)
    assert int(state.perturbations) == 0


@jax.jit
def _perturbation_norm(key, radius):
    # hyper-parameters may be traced: one compilation serves every example
    tx = perturbed_gradient(radius=radius, key=key, t_thres=0)
    g = {"a": jnp.zeros(3), "b": jnp.zeros((2, 2))}
    out, _ = tx.update(g, tx.init(g))
    return gradtx.numerics.global_norm(out)


@settings(max_examples=10, deadline=None)
@given(st.integers(min_value=0, max_value=2**31 - 1), st.floats(min_value=1e-3, max_value=10.0))
def test_perturbation_lies_in_the_ball(seed, radius):
    norm = float(_perturbation_norm(jax.random.key(seed), radius))
    assert 0.0 < norm <= radius * (1 + 1e-6)


def test_perturbation_is_uniform_in_the_ball():
    # in 2-D, P(‖ξ‖ ≤ r/2) = 1/4 and the direction is uniform (mean 0)
    tx = perturbed_gradient(radius=2.0, t_thres=0)
    g = jnp.zeros(2)

    def sample(key):
        out, _ = tx.update(g, tx.init(g)._replace(key=key))
        return out

    xi = np.asarray(jax.jit(jax.vmap(sample))(jax.random.split(jax.random.key(7), 4000)))
    radii = np.linalg.norm(xi, axis=1)
    assert radii.max() <= 2.0 + 1e-6
    assert np.mean(radii <= 1.0) == pytest.approx(0.25, abs=0.03)
    np.testing.assert_allclose(xi.mean(axis=0), 0.0, atol=0.06)


def test_perturbed_gradient_validation():
    with pytest.raises(ValueError, match="radius"):
        perturbed_gradient(radius=0.0)
    with pytest.raises(ValueError, match="grad_tol"):
        perturbed_gradient(grad_tol=-1.0)
    with pytest.raises(ValueError, match="t_thres"):
        perturbed_gradient(t_thres=-1)
    with pytest.raises(TypeError, match="key"):
        perturbed_gradient(key=1.5)
