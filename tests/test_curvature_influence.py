"""Tests of gradtx.curvature.influence (Koh & Liang influence functions), in float64.

The problem is L2-regularized logistic regression on two digits classes (3 and 8) of
scikit-learn's digits, 300 training examples, trained to machine precision by Newton's method in
numpy. References are brute force in numpy: the closed-form Hessian and per-example gradients
with a dense `numpy.linalg.solve`, the exact eigendecomposition (`numpy.linalg.eigh`) for the
low-rank inverse, and actual leave-one-out retraining (warm-started Newton) for the acceptance
figure: Spearman correlation ≥ 0.95 between the predicted and the actual change of the test
loss for the 50 most influential training examples.
"""

import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from gradtx.curvature import Batched, InfluenceReport, influence
from gradtx.curvature.influence import _example_influences

C = 1e-2  # L2 strength on the weights (not the bias)
N_TRAIN = 300


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


def _sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _reg(theta):
    r = np.ones_like(theta)
    r[0] = 0.0  # the bias (first coordinate) is not regularized
    return r


def _newton(x1, y, weights, theta, steps):
    """Minimize Σ_j w_j ℓ_j(θ) / Σ_j w_j with ℓ_j = softplus(z_j) − y_j z_j + (C/2)‖w‖², z = x1 θ."""
    r = _reg(theta)
    for _ in range(steps):
        p = _sigmoid(x1 @ theta)
        grad = x1.T @ (weights * (p - y)) / weights.sum() + C * r * theta
        hess = (x1.T * (weights * p * (1 - p))) @ x1 / weights.sum() + C * np.diag(r)
        theta = theta - np.linalg.solve(hess, grad)
    return theta


def _example_losses(theta, x1, y):
    z = x1 @ theta
    return np.logaddexp(0.0, z) - y * z + 0.5 * C * np.sum(theta[1:] ** 2)


def loss(params, x, y):
    """Mean logistic loss of the batch plus the L2 term (so every example's loss carries it)."""
    z = x @ params["w"] + params["b"]
    return jnp.mean(jax.nn.softplus(z) - y * z) + 0.5 * C * jnp.sum(params["w"] ** 2)


class Problem:
    def __init__(self):
        from sklearn.datasets import load_digits

        digits = load_digits()
        keep = (digits.target == 3) | (digits.target == 8)
        x = digits.data[keep] / 16.0
        y = (digits.target[keep] == 8).astype(np.float64)
        self.x, self.y = x[:N_TRAIN], y[:N_TRAIN]
        self.x1 = np.hstack([np.ones((N_TRAIN, 1)), self.x])
        self.theta = _newton(self.x1, self.y, np.ones(N_TRAIN), np.zeros(65), steps=30)
        x_test1 = np.hstack([np.ones((len(x) - N_TRAIN, 1)), x[N_TRAIN:]])
        k = int(np.argmax(_example_losses(self.theta, x_test1, y[N_TRAIN:])))  # the worst test digit
        self.x_test, self.y_test = x[N_TRAIN + k: N_TRAIN + k + 1], y[N_TRAIN + k: N_TRAIN + k + 1]
        self.x_test1 = x_test1[k: k + 1]
        self.test_loss = float(_example_losses(self.theta, self.x_test1, self.y_test)[0])
        self.params = {"b": jnp.asarray(self.theta[0]), "w": jnp.asarray(self.theta[1:])}
        # closed forms: Hessian of the mean training loss, per-example and test gradients
        p = _sigmoid(self.x1 @ self.theta)
        r = _reg(self.theta)
        self.hessian = (self.x1.T * (p * (1 - p))) @ self.x1 / N_TRAIN + C * np.diag(r)
        self.example_grads = (p - self.y)[:, None] * self.x1 + C * r * self.theta
        p_test = _sigmoid(self.x_test1 @ self.theta)
        self.test_grad = ((p_test - self.y_test)[:, None] * self.x_test1).mean(0) + C * r * self.theta

    def dense_influences(self, damping):
        s = np.linalg.solve(self.hessian + damping * np.eye(65), self.test_grad)
        return -self.example_grads @ s

    def batch(self):
        return jnp.asarray(self.x), jnp.asarray(self.y)

    def test_batch(self):
        return jnp.asarray(self.x_test), jnp.asarray(self.y_test)


@pytest.fixture(scope="module")
def problem():
    with jax.enable_x64(True), threadpool_limits(limits=1):
        return Problem()


@pytest.fixture(scope="module")
def cg_report(problem):
    """The reference run: CG on one big batch, no damping."""
    with jax.enable_x64(True):
        return influence(loss, problem.params, [problem.batch()], problem.test_batch(), tol=1e-12)


def _close(actual, desired, rtol=1e-8):
    actual, desired = np.asarray(actual, np.float64), np.asarray(desired, np.float64)
    np.testing.assert_allclose(actual, desired, rtol=0, atol=rtol * np.max(np.abs(desired)))


def test_the_trained_point_is_a_minimum(problem):
    grad = problem.example_grads.mean(0)
    assert np.linalg.norm(grad) < 1e-12
    assert np.linalg.eigvalsh(problem.hessian)[0] > 0
    assert problem.test_loss > np.log(2)  # the chosen test digit is misclassified


def test_cg_matches_a_dense_solve(problem, cg_report):
    rep = cg_report
    assert isinstance(rep, InfluenceReport)
    assert rep.influences.shape == (N_TRAIN,) and rep.influences.dtype == jnp.float64
    _close(rep.influences, problem.dense_influences(0.0))
    np.testing.assert_allclose(float(rep.test_loss), problem.test_loss, rtol=1e-12)
    s = np.concatenate([np.atleast_1d(rep.inverse_hvp["b"]), rep.inverse_hvp["w"]])
    _close(s, np.linalg.solve(problem.hessian, problem.test_grad))
    assert bool(rep.converged) and not bool(rep.negative_curvature) and rep.damping == 0.0
    assert float(rep.relative_residual) <= 1e-12 and 0 < int(rep.iterations) <= 65 * 10
    true_residual = np.linalg.norm(problem.test_grad - problem.hessian @ s)
    np.testing.assert_allclose(float(rep.residual_norm), true_residual, rtol=1e-3, atol=1e-15)


def test_damping_matches_a_dense_damped_solve(problem):
    rep = influence(loss, problem.params, [problem.batch()], problem.test_batch(), damping=0.05, tol=1e-12)
    _close(rep.influences, problem.dense_influences(0.05))
    assert rep.damping == 0.05
    # damping shrinks the inverse: every |influence| moves, none grows past the undamped bound
    assert not np.allclose(rep.influences, problem.dense_influences(0.0), rtol=1e-3)


def test_leave_one_out_retraining_spearman(problem, cg_report):
    """Acceptance: predicted −I/N vs actual leave-one-out change of the test loss, 50 most influential."""
    start = time.perf_counter()
    influences = np.asarray(cg_report.influences)
    top = np.argsort(-np.abs(influences))[:50]
    predicted = -influences[top] / N_TRAIN
    actual = np.empty(50)
    with threadpool_limits(limits=1):  # 65×65 systems: BLAS threads only contend on a loaded machine
        for j, i in enumerate(top):
            weights = np.ones(N_TRAIN)
            weights[i] = 0.0
            theta = _newton(problem.x1, problem.y, weights, problem.theta, steps=6)  # warm start
            actual[j] = _example_losses(theta, problem.x_test1, problem.y_test)[0] - problem.test_loss
    rank_p, rank_a = np.argsort(np.argsort(predicted)), np.argsort(np.argsort(actual))
    spearman = np.corrcoef(rank_p, rank_a)[0, 1]
    print(f"influence vs leave-one-out: Spearman {spearman:.4f}, Pearson {np.corrcoef(predicted, actual)[0, 1]:.4f}, "
          f"{time.perf_counter() - start:.2f} s of retraining")
    assert spearman >= 0.95
    # the first-order prediction also has the right sign and scale for the largest effects
    assert np.all(np.sign(predicted[:10]) == np.sign(actual[:10]))
    np.testing.assert_allclose(predicted[:10], actual[:10], rtol=0.35)
    # retraining the warm start to convergence: the six Newton steps above are enough
    weights = np.ones(N_TRAIN)
    weights[top[0]] = 0.0
    with threadpool_limits(limits=1):
        converged = _newton(problem.x1, problem.y, weights, problem.theta, steps=30)
    np.testing.assert_allclose(_example_losses(converged, problem.x_test1, problem.y_test)[0] - problem.test_loss,
                               actual[0], rtol=1e-10)


def test_streamed_batches_equal_one_big_batch(problem, cg_report):
    x, y = problem.batch()
    edges = [(0, 128), (128, 256), (256, N_TRAIN)]  # two full batches and a short one
    as_list = [(x[a:b], y[a:b]) for a, b in edges]

    def factory():
        for a, b in edges:
            yield np.asarray(problem.x[a:b]), np.asarray(problem.y[a:b])

    compiled = _example_influences._cache_size()
    for train in (as_list, factory, Batched(x, y, batch_size=128)):
        rep = influence(loss, problem.params, train, problem.test_batch(), tol=1e-12)
        _close(rep.influences, cg_report.influences, rtol=1e-9)
        assert bool(rep.converged)
    # one compiled per-example function per batch shape (128 and 44), shared by the three forms
    assert _example_influences._cache_size() - compiled == 2


def test_a_test_batch_gives_the_mean_of_its_examples_influences(problem):
    """The test loss is the batch mean, and the influence is linear in its gradient."""
    x_t = np.vstack([problem.x_test, problem.x[:2]])
    y_t = np.concatenate([problem.y_test, problem.y[:2]])
    batch = [problem.batch()]
    together = influence(loss, problem.params, batch, (jnp.asarray(x_t), jnp.asarray(y_t)), tol=1e-12)
    each = [influence(loss, problem.params, batch, (jnp.asarray(x_t[i:i + 1]), jnp.asarray(y_t[i:i + 1])),
                      tol=1e-12).influences for i in range(3)]
    _close(together.influences, np.mean(each, axis=0), rtol=1e-9)


def test_one_shot_iterator_is_read_once_and_replayed(problem, cg_report):
    x, y = problem.batch()
    rep = influence(loss, problem.params, iter([(x[:150], y[:150]), (x[150:], y[150:])]), problem.test_batch(),
                    tol=1e-12)
    _close(rep.influences, cg_report.influences, rtol=1e-9)


def test_lanczos_full_rank_matches_a_dense_solve(problem):
    rep = influence(loss, problem.params, [problem.batch()], problem.test_batch(), method="lanczos", num_iters=65,
                    tol=1e-8)
    _close(rep.influences, problem.dense_influences(0.0))
    assert int(rep.iterations) == 65 and bool(rep.converged) and not bool(rep.negative_curvature)


@pytest.mark.parametrize("damping", [0.05, 0.0])
def test_lanczos_rank_k_is_the_documented_low_rank_plus_damping_inverse(problem, damping):
    """With a full Krylov space (65 steps) the top-10 Ritz pairs are exact eigenpairs, so the
    result is Σ_top10 u uᵀ/(θ+λ) + (I − U Uᵀ)/λ computed from numpy's eigh (without the second
    term when λ = 0: the inverse on the top-10 space)."""
    k = 10
    rep = influence(loss, problem.params, [problem.batch()], problem.test_batch(), method="lanczos", num_iters=65,
                    rank=k, damping=damping)
    theta, u = np.linalg.eigh(problem.hessian)
    theta, u = theta[-k:], u[:, -k:]
    g = problem.test_grad
    s = u @ ((u.T @ g) / (theta + damping))
    if damping > 0:
        s = s + (g - u @ (u.T @ g)) / damping
    _close(rep.influences, -problem.example_grads @ s, rtol=1e-7)
    # an approximation: not the exact damped influence, and the residual says so
    assert not np.allclose(rep.influences, problem.dense_influences(damping), rtol=1e-2)
    assert not bool(rep.converged) and float(rep.relative_residual) > 1e-3


def test_lanczos_is_exact_for_a_low_rank_hessian_with_damping():
    """Least squares with 4 examples in 10 dimensions: H = 2 XᵀX/4 has rank 4; Lanczos finds its
    range, and the damping term inverts the null space exactly."""
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((4, 10)), rng.standard_normal(4)

    def lsq(w, x, y):
        return jnp.mean((x @ w - y) ** 2)

    w = jnp.asarray(rng.standard_normal(10))
    x_t, y_t = rng.standard_normal((1, 10)), rng.standard_normal(1)
    damping = 0.3
    rep = influence(lsq, w, [(jnp.asarray(x), jnp.asarray(y))], (jnp.asarray(x_t), jnp.asarray(y_t)),
                    method="lanczos", num_iters=6, rank=4, damping=damping, tol=1e-9)
    wn = np.asarray(w)
    h = 2 * x.T @ x / 4
    g_test = 2 * x_t[0] * (x_t[0] @ wn - y_t[0])
    grads = 2 * x * (x @ wn - y)[:, None]
    _close(rep.influences, -grads @ np.linalg.solve(h + damping * np.eye(10), g_test))
    assert bool(rep.converged)


def test_shared_arguments_and_the_per_example_convention():
    """0-d arrays and Python values are passed to every example; each example's loss is the loss
    on a batch of one: for a weighted squared error the influence is closed-form."""
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((6, 3)), rng.standard_normal(6)

    def scaled(w, x, y, scale, offset):
        return scale * jnp.mean((x @ w + offset - y) ** 2)

    w_star = np.linalg.lstsq(x, y, rcond=None)[0]
    x_t, y_t = rng.standard_normal((2, 3)), rng.standard_normal(2)
    batch = (jnp.asarray(x), jnp.asarray(y), 1.5, jnp.asarray(0.0))
    rep = influence(scaled, jnp.asarray(w_star), [batch], (jnp.asarray(x_t), jnp.asarray(y_t), 1.5, jnp.asarray(0.0)),
                    tol=1e-12)
    h = 3.0 * x.T @ x / 6
    g_test = 3.0 * x_t.T @ (x_t @ w_star - y_t) / 2
    grads = 3.0 * x * (x @ w_star - y)[:, None]
    _close(rep.influences, -grads @ np.linalg.solve(h, g_test))


def test_indefinite_hessian_is_flagged():
    def saddle(w, x):
        return jnp.mean((x @ w) ** 2) - jnp.sum(w**2)  # H = 2 xᵀx/n − 2 I: indefinite here

    x = jnp.asarray(np.diag([2.0, 0.5, 1.0]))
    w = jnp.asarray([0.1, 0.2, 0.3])
    for method in ("cg", "lanczos"):
        rep = influence(saddle, w, [(x,)], (x[:1],), method=method, num_iters=3)
        assert bool(rep.negative_curvature), method
    rep = influence(saddle, w, [(x,)], (x[:1],), damping=3.0)
    assert not bool(rep.negative_curvature) and bool(rep.converged)


def test_bad_arguments(problem):
    p, batch, test = problem.params, [problem.batch()], problem.test_batch()
    with pytest.raises(ValueError, match=r"influence: damping"):
        influence(loss, p, batch, test, damping=-1.0)
    with pytest.raises(ValueError, match=r"influence: method must be one of \('cg', 'lanczos'\)"):
        influence(loss, p, batch, test, method="minres")
    with pytest.raises(ValueError, match=r"influence: tol"):
        influence(loss, p, batch, test, tol=0.0)
    with pytest.raises(ValueError, match=r"influence: rank must be <= num_iters"):
        influence(loss, p, batch, test, method="lanczos", num_iters=5, rank=6)
    with pytest.raises(ValueError, match=r"influence: num_iters"):
        influence(loss, p, batch, test, method="lanczos", num_iters=0)
    with pytest.raises(TypeError, match=r"influence: max_iters must be an integer"):
        influence(loss, p, batch, test, max_iters=2.5)
    with pytest.raises(ValueError, match=r"influence: batches is empty"):
        influence(loss, p, [], test)
    with pytest.raises(ValueError, match=r"influence: batches is empty"):
        influence(loss, p, lambda: iter(()), test)
    with pytest.raises(ValueError, match=r"influence: test_batch is empty"):
        influence(loss, p, batch, (test[0][:0], test[1][:0]))
    with pytest.raises(ValueError, match=r"influence: every array of test_batch must have the same leading"):
        influence(loss, p, batch, (test[0], jnp.zeros(2)))
    with pytest.raises(TypeError, match=r"influence: loss must be callable"):
        influence("loss", p, batch, test)
    with pytest.raises(TypeError, match=r"influence: train_batches must be"):
        influence(loss, p, None, test)
    with pytest.raises(TypeError, match=r"influence: batches must be an iterable"):
        influence(loss, p, problem.x, test)
