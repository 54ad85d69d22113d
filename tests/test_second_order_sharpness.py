"""Tests of gradtx.second_order.track_sharpness: pass-through, dense λ_max, warm starts, state, validation."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import gradtx
from gradtx.curvature import hessian_operator, lanczos_tridiag
from gradtx.second_order import SharpnessState, track_sharpness

# --------------------------------------------------------------------------------------------
# a tiny tanh network (17 params): Lanczos with num_iters = n is exact, jax.hessian is cheap
# --------------------------------------------------------------------------------------------

X = jax.random.normal(jax.random.key(0), (24, 2))
Y = jnp.sin(X[:, 0]) * X[:, 1]


def tiny_loss(p):
    h = jnp.tanh(X @ p["w1"] + p["b1"][None])
    return jnp.mean((h @ p["w2"] + p["b2"] - Y) ** 2)


TINY = {
    "w1": jax.random.normal(jax.random.key(1), (2, 4)),
    "b1": jnp.zeros(4),
    "w2": jax.random.normal(jax.random.key(2), (4,)),
    "b2": jnp.zeros(()),
}
N_TINY = 17
STEPS, EVERY, LR = 10, 3, 0.3


def run(tx, f, params, steps):
    """`steps` updates in one compiled scan; the params before each step and the states after it."""

    @jax.jit
    def go(params):
        def step(carry, _):
            p, s = carry
            u, s = tx.update(jax.grad(f)(p), s, p, value_fn=f)
            return (gradtx.apply_updates(p, u), s), (p, s)

        return jax.lax.scan(step, (params, tx.init(params)), None, length=steps)

    return go(params)


@jax.jit
def tiny_hessian(params):
    flat, unravel = ravel_pytree(params)
    return jax.hessian(lambda z: tiny_loss(unravel(z)))(flat)


def dense_top(params):
    h = np.asarray(tiny_hessian(params), np.float64)
    lam, vec = np.linalg.eigh(0.5 * (h + h.T))
    return lam[-1], vec[:, -1]


@pytest.fixture(scope="module")
def tiny_run():
    schedule = gradtx.linear_schedule(LR, 0.5 * LR, STEPS)
    tx = gradtx.chain(
        track_sharpness(every=EVERY, num_iters=N_TINY, learning_rate=schedule, key=3, tol=None),  # fixed length
        track_sharpness(every=EVERY, num_iters=N_TINY, key=3),  # adaptive (default tol=1e-3)
        gradtx.sgd(LR),
    )
    (p_end, s_end), (path, states) = run(tx, tiny_loss, TINY, STEPS)
    return tx, schedule, p_end, s_end, path, states[0], states[1]


def test_updates_pass_through_bit_for_bit(tiny_run):
    _, _, p_end, _, _, _, _ = tiny_run
    (p_plain, _), _ = run(gradtx.sgd(LR), tiny_loss, TINY, STEPS)
    chex.assert_trees_all_equal(p_end, p_plain)


def test_sharpness_equals_dense_top_eigenvalue_at_the_measured_steps(tiny_run):
    _, schedule, _, _, path, states, _ = tiny_run
    steps = np.asarray(states.step)
    # the state after update t holds the measurement at the latest multiple of EVERY <= t
    np.testing.assert_array_equal(steps, (np.arange(STEPS) // EVERY) * EVERY)
    np.testing.assert_array_equal(np.asarray(states.count), np.arange(1, STEPS + 1))
    for t in range(0, STEPS, EVERY):
        params_t = jax.tree.map(lambda a, t=t: a[t], path)
        lam, vec = dense_top(params_t)
        for u in range(t, min(t + EVERY, STEPS)):  # unchanged until the next measurement
            assert float(states.sharpness[u]) == pytest.approx(lam, rel=2e-4, abs=1e-6)
        v, _ = ravel_pytree(jax.tree.map(lambda a, t=t: a[t], states.eigenvector))
        assert float(np.linalg.norm(v)) == pytest.approx(1.0, abs=1e-5)
        assert abs(float(np.dot(np.asarray(v, np.float64), vec))) == pytest.approx(1.0, abs=1e-3)
        # every measurement runs num_iters = 17 Lanczos steps (no tol): 17 products each
        assert int(states.products[t]) == N_TINY * (t // EVERY + 1)
        # edge of stability: η(t)·λ_max/2 with the schedule's rate at the measured step
        assert float(states.edge_of_stability[t]) == pytest.approx(float(schedule(t)) * lam / 2, rel=2e-4)


def _stop_index(alpha, beta, tol, m):
    """First j with β_j·|s_j| <= tol·|θ_j| for the top Ritz pair of the leading j×j block (m if none)."""
    alpha, beta = np.asarray(alpha, np.float64), np.asarray(beta, np.float64)
    for j in range(1, m):
        t_j = np.diag(alpha[:j]) + np.diag(beta[: j - 1], 1) + np.diag(beta[: j - 1], -1)
        theta, s = np.linalg.eigh(t_j)
        if beta[j - 1] * abs(s[j - 1, -1]) <= tol * abs(theta[-1]):
            return j
    return m


@jax.jit
def tiny_lanczos_from(params, v0s):
    return jax.vmap(lambda v: lanczos_tridiag(hessian_operator(tiny_loss, params), params, N_TINY, v0=v))(v0s)


def test_adaptive_measurement_stops_at_the_first_certified_step_and_matches_dense(tiny_run):
    """Default tol=1e-3: the first measurement runs all N_TINY steps from a random vector; each later
    one is warm-started from the stored eigenvector and stops at the first j with
    β_j·|s_j| <= 1e-3·θ_j, recomputed here in float64 from a fixed-length Lanczos run from the same
    start vector; a random (cold) start needs at least as many steps for the same test (on this
    fast-changing 17-parameter model; the digits test below asks for half); the
    estimate is within 1e-3 of the dense λ_max and its explicit residual ‖Hv − θv‖ (dense H) is
    within the tolerance."""
    _, _, _, _, path, _, adaptive = tiny_run
    assert int(adaptive.products[0]) == N_TINY  # cold
    for t in range(EVERY, STEPS, EVERY):
        params_t = jax.tree.map(lambda a, t=t: a[t], path)
        warm = jax.tree.map(lambda a, t=t: a[t - 1], adaptive.eigenvector)
        cold = jax.tree.map(lambda a, t=t: jax.random.normal(jax.random.key(t), a.shape[1:]), adaptive.eigenvector)
        res = tiny_lanczos_from(params_t, jax.tree.map(lambda *vs: jnp.stack(vs), warm, cold))
        expected, cold_steps = (_stop_index(res.alpha[i], res.beta[i], 1e-3, N_TINY) for i in range(2))
        used = int(adaptive.products[t]) - int(adaptive.products[t - 1])
        assert used == expected <= cold_steps, (t, used, expected, cold_steps)
        lam, _ = dense_top(params_t)
        est = float(adaptive.sharpness[t])
        assert est == pytest.approx(lam, rel=1e-3)
        v, _ = ravel_pytree(jax.tree.map(lambda a, t=t: a[t], adaptive.eigenvector))
        v = np.asarray(v, np.float64)
        h = np.asarray(tiny_hessian(params_t), np.float64)
        assert np.linalg.norm(h @ v - est * v) <= 1.5e-3 * abs(est)


def test_state_is_readable_by_name_in_a_chain(tiny_run):
    _, _, _, s_end, _, states, _ = tiny_run
    s_end = (s_end[0], s_end[2])  # the chain's state without the second tracker: one field of each name
    assert isinstance(s_end[0], SharpnessState)
    assert float(gradtx.tree.get(s_end, "sharpness")) == float(states.sharpness[-1])
    assert int(gradtx.tree.get(s_end, "step")) == (STEPS - 1) // EVERY * EVERY
    assert float(gradtx.tree.get(s_end, "edge_of_stability")) == float(states.edge_of_stability[-1])


def test_quadratic_closed_form_fresh_state_and_unknown_learning_rate():
    # f = ½ Σ a_i p_i²: Hessian diag(a), λ_max = 4, eigenvector ±e_2
    a = jnp.array([1.0, 4.0, 2.0])
    tx = track_sharpness(every=1, num_iters=3)
    f = lambda p: 0.5 * jnp.sum(a * p**2)  # noqa: E731
    p = jnp.array([1.0, -2.0, 0.5])
    s = tx.init(p)
    assert np.isnan(float(s.sharpness)) and int(s.step) == -1 and np.isnan(float(s.edge_of_stability))
    chex.assert_trees_all_equal(s.eigenvector, jnp.zeros(3))
    g = jax.grad(f)(p)
    u, s = jax.jit(lambda g, s, p: tx.update(g, s, p, value_fn=f))(g, s, p)
    chex.assert_trees_all_equal(u, g)  # the very same numbers come out
    assert float(s.sharpness) == pytest.approx(4.0, rel=1e-6) and int(s.step) == 0
    assert int(s.products) == 3
    np.testing.assert_allclose(np.abs(np.asarray(s.eigenvector)), [0.0, 1.0, 0.0], atol=1e-5)
    # without a learning rate the edge-of-stability ratio stays NaN
    assert np.isnan(float(s.edge_of_stability))


# --------------------------------------------------------------------------------------------
# warm starts on the digits MLP during training
# --------------------------------------------------------------------------------------------

M_LANCZOS = 30


@pytest.mark.slow
def test_warm_starts_need_at_most_half_the_lanczos_steps_of_cold_starts():
    """Full-batch GD on a digits MLP (64 → 16 → 10, tanh) with the tracker measuring every 25
    steps for 200 steps; at each of the 8 later measurements, count the Lanczos steps until the top Ritz value is within
    1e-3 (relative) of the converged λ_max, from the tracker's stored eigenvector (warm) and from
    random vectors (cold, mean of 3). Ritz values of the first j steps are the eigenvalues of the
    leading j×j block of T, so one run of M steps gives the count."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = jnp.asarray(digits.data[:256] / 16.0, jnp.float32)
    y = jnp.asarray(digits.target[:256])

    def loss(p):
        h = jnp.tanh(x @ p[0]["w"] + p[0]["b"][None])
        z = h @ p[1]["w"] + p[1]["b"][None]
        return jnp.mean(gradtx.losses.softmax_cross_entropy_with_integer_labels(z, y))

    k1, k2 = jax.random.split(jax.random.key(0))
    params = [
        {"w": jax.random.normal(k1, (64, 16)) / 8.0, "b": jnp.zeros(16)},
        {"w": jax.random.normal(k2, (16, 10)) / 4.0, "b": jnp.zeros(10)},
    ]
    every, steps, lr = 25, 201, 0.5
    tx = gradtx.chain(
        track_sharpness(every=every, num_iters=20, learning_rate=lr, tol=None),  # 20 steps each time
        track_sharpness(every=every, num_iters=20),  # adaptive: stops once the residual is <= 1e-3·θ
        gradtx.sgd(lr),
    )
    _, (path, states) = run(tx, loss, params, steps)

    @jax.jit
    def lanczos_from(p, v0s):
        # converged reference (60 steps) and M_LANCZOS-step runs from each start vector
        ref = lanczos_tridiag(hessian_operator(loss, p), p, 60)
        t_ref = jnp.diag(ref.alpha) + jnp.diag(ref.beta, 1) + jnp.diag(ref.beta, -1)
        runs = jax.vmap(lambda v: lanczos_tridiag(hessian_operator(loss, p), p, M_LANCZOS, v0=v))(v0s)
        return jnp.linalg.eigvalsh(t_ref)[-1], runs.alpha, runs.beta

    def steps_to_tolerance(alpha, beta, lam):
        for j in range(1, M_LANCZOS + 1):
            t = np.diag(alpha[:j]) + np.diag(beta[: j - 1], 1) + np.diag(beta[: j - 1], -1)
            if abs(np.linalg.eigvalsh(t)[-1] - lam) <= 1e-3 * abs(lam):
                return j
        return M_LANCZOS + 1

    warm_total, cold_total = 0, 0.0
    for t in range(every, steps, every):
        p_t = jax.tree.map(lambda a, t=t: a[t], path)
        warm = jax.tree.map(lambda a, t=t: a[t - 1], states[0].eigenvector)  # the measurement at t - every
        colds = [jax.tree.map(lambda a, k=k: jax.random.normal(k, a.shape), p_t) for k in jax.random.split(jax.random.key(9), 3)]
        v0s = jax.tree.map(lambda *vs: jnp.stack(vs), warm, *colds)
        lam, alphas, betas = lanczos_from(p_t, v0s)
        lam, alphas, betas = float(lam), np.asarray(alphas, np.float64), np.asarray(betas, np.float64)
        # the tracker's own 20-step estimate is accurate too
        assert float(states[0].sharpness[t]) == pytest.approx(lam, rel=1e-3)
        assert float(states[1].sharpness[t]) == pytest.approx(lam, rel=1e-3)
        counts = [steps_to_tolerance(alphas[i], betas[i], lam) for i in range(4)]
        warm_total += counts[0]
        cold_total += float(np.mean(counts[1:]))
    assert warm_total <= 0.5 * cold_total, (warm_total, cold_total)
    # adaptive: 20 products for the first (cold) measurement, at most half that for the warm ones
    fixed, early = int(states[0].products[-1]), int(states[1].products[-1])
    assert fixed == 20 * 9 and 20 + 8 <= early <= 20 + 8 * 10, (fixed, early)


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"every": 0}, ValueError, "every"),
        ({"every": 2.5}, TypeError, "every"),
        ({"num_iters": 0}, ValueError, "num_iters"),
        ({"learning_rate": -0.1}, ValueError, "learning_rate"),
        ({"learning_rate": "fast"}, TypeError, "learning_rate"),
        ({"key": "seed"}, TypeError, "key"),
        ({"tol": 0.0}, ValueError, "tol"),
        ({"min_iters": 0}, ValueError, "min_iters"),
        ({"num_iters": 3, "min_iters": 4}, ValueError, "min_iters must be <= num_iters"),
    ],
)
def test_invalid_arguments(kwargs, error, match):
    with pytest.raises(error, match=rf"track_sharpness: .*{match}"):
        track_sharpness(**kwargs)


def test_update_needs_params_and_value_fn():
    tx = track_sharpness()
    s = tx.init(TINY)
    g = jax.grad(tiny_loss)(TINY)
    with pytest.raises(ValueError, match=r"track_sharpness\.update: params are required"):
        tx.update(g, s, None, value_fn=tiny_loss)
    with pytest.raises(ValueError, match=r"track_sharpness\.update: the objective is required"):
        tx.update(g, s, TINY)
    with pytest.raises(TypeError, match=r"track_sharpness\.init: params must be"):
        tx.init({"n": jnp.arange(3)})
