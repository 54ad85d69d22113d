"""Tests of gradtx.curvature.fisher: empirical Fisher, exact and Monte-Carlo Fisher operators.

Dense references are built in float64 from `jax.jacobian` of the per-example losses / model outputs
and `jax.hessian` of the output-space negative log-likelihood.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from gradtx.curvature import (
    Batched,
    StreamingOperator,
    empirical_fisher_operator,
    fisher_operator,
    operator_diagonal,
    operator_eigsh,
    sample_targets,
    solve,
)

IN, HID, CLASSES, POINTS = 3, 4, 3, 6


def _params(dtype):
    rng = np.random.default_rng(0)
    return {
        "w1": jnp.asarray(rng.standard_normal((IN, HID)), dtype),
        "b1": jnp.asarray(0.1 * rng.standard_normal(HID), dtype),
        "w2": jnp.asarray(rng.standard_normal((HID, CLASSES)), dtype),
        "b2": jnp.asarray(0.1 * rng.standard_normal(CLASSES), dtype),
    }


def _data(dtype):
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((POINTS, IN)), dtype)
    labels = jnp.asarray(rng.integers(0, CLASSES, POINTS))
    return x, labels


def model(p, x):
    return jnp.tanh(x @ p["w1"] + p["b1"][None, :]) @ p["w2"] + p["b2"][None, :]


def categorical_nll(f, y):
    """−log p(y | f) for one example (logits f, class index y)."""
    return -jax.nn.log_softmax(f)[y]


def gaussian_nll(f, y, variance):
    return 0.5 * jnp.sum((f - y) ** 2) / variance


def per_example_ce(p, x, labels):
    return jax.vmap(categorical_nll)(model(p, x), labels)


def _dense(op, params):
    """The operator as a dense matrix in ravel_pytree coordinates (operator applied to the basis)."""
    flat0, unravel = ravel_pytree(params)
    eye = jnp.eye(flat0.size, dtype=flat0.dtype)
    return jax.vmap(lambda e: ravel_pytree(op(unravel(e)))[0])(eye)


def _dense_streamed(op, params):
    """A streaming operator as a dense matrix: all n basis vectors in one pass over the data (matmat)."""
    assert isinstance(op, StreamingOperator)
    flat0, unravel = ravel_pytree(params)
    basis = jax.vmap(unravel)(jnp.eye(flat0.size, dtype=flat0.dtype))
    return np.asarray(jax.vmap(lambda t: ravel_pytree(t)[0])(op.matmat(basis)))


@pytest.fixture(scope="module")
def x64_problem():
    """Float64 params, data, and the dense exact Fishers J_nᵀ H_n J_n / N from jax.jacobian / jax.hessian."""
    with jax.enable_x64(True):
        params, (x, labels) = _params(jnp.float64), _data(jnp.float64)
        variance = 0.5

        @jax.jit
        def reference(params, x):
            flat0, unravel = ravel_pytree(params)
            jac = jax.jacobian(lambda z: model(unravel(z), x))(flat0)  # (P, C, n)
            out = model(params, x)
            h_cat = jax.vmap(jax.hessian(categorical_nll), in_axes=(0, None))(out, 0)  # (P, C, C)
            h_gauss = jax.vmap(jax.hessian(functools.partial(gaussian_nll, variance=variance)))(out, out)
            return (jnp.einsum("pci,pcd,pdj->ij", jac, h_cat, jac) / POINTS,
                    jnp.einsum("pci,pcd,pdj->ij", jac, h_gauss, jac) / POINTS, jac, out)

        cat, gauss, jac, out = map(np.asarray, reference(params, x))
        return params, x, labels, variance, {"categorical": cat, "gaussian": gauss, "jac": jac, "out": out}


def test_empirical_fisher_matches_dense_per_example_gradients(x64_problem):
    params, x, labels, _, ref = x64_problem
    # per-example gradients by the chain rule: g_n = J_nᵀ (softmax(f_n) − onehot(y_n)), J_n from jax.jacobian
    logits = ref["out"]
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    grads = np.einsum("pci,pc->pi", ref["jac"], probs - np.eye(CLASSES)[np.asarray(labels)])
    with jax.enable_x64(True):
        single = np.asarray(jax.jit(lambda p, x, y: _dense(empirical_fisher_operator(per_example_ce, p, x, y), p))(
            params, x, labels))
        # streamed: two batches of 3 (one compiled per-batch product), all n basis vectors in one pass
        streamed = _dense_streamed(empirical_fisher_operator(
            per_example_ce, params, batches=[(x[:3], labels[:3]), (x[3:], labels[3:])]), params)
    expected = grads.T @ grads / POINTS
    for got in (single, streamed):
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10 * np.abs(expected).max())
    assert np.linalg.matrix_rank(expected) <= POINTS  # rank ≤ N: a sum of N outer products


@pytest.mark.parametrize("likelihood", ["categorical", "gaussian"])
def test_exact_fisher_matches_dense_ggn(x64_problem, likelihood):
    params, x, _, variance, fisher = x64_problem
    expected = fisher[likelihood]
    with jax.enable_x64(True):

        @jax.jit
        def run(params, x):
            single = _dense(fisher_operator(model, params, x, likelihood=likelihood, variance=variance), params)
            swept = _dense(fisher_operator(model, params, likelihood=likelihood, variance=variance,
                                           batches=Batched(x, batch_size=4)), params)
            return single, swept

        results = list(map(np.asarray, run(params, x)))
        if likelihood == "categorical":  # the streamed path is the same for both likelihoods
            results.append(_dense_streamed(fisher_operator(model, params, likelihood=likelihood, variance=variance,
                                                           batches=[x[:3], x[3:]]), params))
    for got in results:
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-8 * np.abs(expected).max())
    assert np.linalg.eigvalsh(expected).min() > -1e-10  # positive semi-definite


@pytest.mark.parametrize("likelihood", ["categorical", "gaussian"])
def test_monte_carlo_fisher(x64_problem, likelihood):
    params, x, _, variance, fisher = x64_problem
    exact = fisher[likelihood]  # also the Fisher of the inputs (x, x): a mean over examples
    many, num_keys = 64, 16
    nll = categorical_nll if likelihood == "categorical" else functools.partial(gaussian_nll, variance=variance)

    def mc_operator(params, key, num_samples, *inputs, batches=None):
        return fisher_operator(model, params, *inputs, likelihood=likelihood, num_samples=num_samples, key=key,
                               variance=variance, batches=batches)

    with jax.enable_x64(True):

        @jax.jit
        def run(params, x, keys):
            flat0, unravel = ravel_pytree(params)
            targets = sample_targets(likelihood, model(params, x), keys[0], many, variance)  # (S, P[, C])
            twice = jnp.concatenate([x, x])
            both = sample_targets(likelihood, model(params, twice), keys[0], many, variance)
            tail = sample_targets(likelihood, model(params, x), keys[0], many, variance, offset=POINTS)

            def sampled_losses(z):  # (S, P) losses −log p(ŷ_sn | f_n(θ))
                out = model(unravel(z), x)
                return jax.vmap(lambda t: jax.vmap(nll)(out, t))(targets)

            g = jax.jacobian(sampled_losses)(flat0).reshape(many * POINTS, -1)
            est = jax.vmap(lambda k: _dense(mc_operator(params, k, many, x), params))(keys)
            # the estimate of one batch of the inputs (x, x), for the stream below
            whole = _dense(mc_operator(params, keys[0], many, twice), params) if likelihood == "categorical" else 0
            return targets, both, tail, g, est, whole

        keys = jax.random.split(jax.random.PRNGKey(3), num_keys)
        targets, both, tail, g, est, whole = map(np.asarray, run(params, x, keys))
        if likelihood == "categorical":  # the streamed path is the same for both likelihoods
            # two identical batches streamed (one compiled step, the key travelling with the params)
            streamed = np.stack([_dense_streamed(mc_operator(params, k, many, batches=[x, x]), params) for k in keys])
    # the definition: the empirical Fisher of the gradients at S sampled targets per example
    expected = g.T @ g / (many * POINTS)
    np.testing.assert_allclose(est[0], expected, rtol=0, atol=1e-8 * np.abs(expected).max())
    if likelihood == "categorical":
        assert targets.shape == (many, POINTS)
        assert np.all((targets >= 0) & (targets < CLASSES))
    else:
        assert targets.shape == (many, POINTS, CLASSES)
    # example n draws with fold_in(key, n): its targets depend on its position, not on the batch it is in
    np.testing.assert_allclose(both[:, :POINTS], targets, rtol=1e-12, atol=1e-12)  # (Gaussian: means of 12 vs 6)
    np.testing.assert_allclose(both[:, POINTS:], tail, rtol=1e-12, atol=1e-12)
    assert not np.array_equal(tail, targets)
    dev = np.linalg.norm(est - exact, axis=(1, 2))
    # converges: S = 64 samples per example are within 25 % of F (Frobenius) for every key
    assert np.max(dev) < 0.25 * np.linalg.norm(exact), dev / np.linalg.norm(exact)
    # unbiased: the mean of the 16 estimates is within 4 standard errors of F; a biased formula (e.g. H
    # without −ppᵀ, or a wrong 1/S) is off by O(‖F‖), many standard errors
    err_mean = np.linalg.norm(est.mean(axis=0) - exact)
    assert err_mean < 4 * np.sqrt(np.mean(dev**2) / num_keys), (err_mean, np.sqrt(np.mean(dev**2)))
    if likelihood == "categorical":
        # the stream numbers its examples 0 … 11: the estimate of one batch of the 12 inputs
        np.testing.assert_allclose(streamed[0], whole, rtol=0, atol=1e-12 * np.abs(exact).max())
        # the second copy's targets are independent of the first's (one key per batch drew the same ones,
        # and the stream gave F̂(x) again): the mean of two independent copies halves the squared error,
        # E‖F̂(x, x) − F‖² = ½ E‖F̂(x) − F‖², and its mean over the keys stays within 4 standard errors of F
        assert not np.allclose(streamed[0], est[0])
        dev_streamed = np.linalg.norm(streamed - exact, axis=(1, 2))
        ratio = np.mean(dev_streamed**2) / np.mean(dev**2)
        assert 0.3 < ratio < 0.75, ratio
        err_streamed = np.linalg.norm(streamed.mean(axis=0) - exact)
        assert err_streamed < 4 * np.sqrt(np.mean(dev_streamed**2) / num_keys), err_streamed


def test_estimators_accept_fisher_operators(x64_problem):
    params, x, _, _, fisher = x64_problem
    exact = fisher["categorical"]
    n = exact.shape[0]
    with jax.enable_x64(True):

        @jax.jit
        def run(params, x):
            op = fisher_operator(model, params, x)
            vals, _ = operator_eigsh(op, params, k=3, which="LA", num_iters=n)
            diag = operator_diagonal(op, params, method="exact", block_size=16)
            sol, _ = solve(op, jax.tree.map(jnp.ones_like, params), damping=0.1, tol=1e-12, max_iters=4 * n)
            return vals, ravel_pytree(diag)[0], ravel_pytree(sol)[0]

        vals, diag, sol = map(np.asarray, run(params, x))
    np.testing.assert_allclose(vals, np.linalg.eigvalsh(exact)[-3:], rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(diag, np.diag(exact), rtol=1e-10, atol=1e-14)
    # (F + 0.1 I) x = 1 by conjugate gradients
    np.testing.assert_allclose(sol, np.linalg.solve(exact + 0.1 * np.eye(n), np.ones(n)), rtol=1e-8)


def test_fisher_in_float32_under_jit_fixed_samples():
    params, (x, _) = _params(jnp.float32), _data(jnp.float32)
    v = jax.tree.map(jnp.ones_like, params)

    @jax.jit
    def products(p, v, x):
        op = fisher_operator(model, p, x, num_samples=2, key=jax.random.PRNGKey(1))
        other = fisher_operator(model, p, x, num_samples=2, key=jax.random.PRNGKey(2))
        return op(v), op(v), other(v)

    first, second, other = products(params, v, x)
    assert jax.tree.map(lambda a: a.dtype, first) == jax.tree.map(lambda a: a.dtype, params)
    # the samples are drawn once per operator, from the key: a fixed linear map
    jax.tree.map(np.testing.assert_array_equal, first, second)
    assert not np.allclose(ravel_pytree(first)[0], ravel_pytree(other)[0])


def test_validation():
    params, (x, labels) = _params(jnp.float32), _data(jnp.float32)
    with pytest.raises(ValueError, match="fisher_operator: likelihood must be one of"):
        fisher_operator(model, params, x, likelihood="poisson")
    with pytest.raises(ValueError, match="fisher_operator: num_samples must be an integer >= 1"):
        fisher_operator(model, params, x, num_samples=0)
    with pytest.raises(TypeError, match="fisher_operator: num_samples must be an integer"):
        fisher_operator(model, params, x, num_samples=2.5)
    with pytest.raises(ValueError, match="fisher_operator: key is only used by the Monte-Carlo"):
        fisher_operator(model, params, x, key=jax.random.PRNGKey(0))
    with pytest.raises(TypeError, match="fisher_operator: key must be a PRNG key"):
        fisher_operator(model, params, x, num_samples=2, key=3)
    with pytest.raises(ValueError, match="fisher_operator: variance must be in"):
        fisher_operator(model, params, x, likelihood="gaussian", variance=0.0)
    with pytest.raises(ValueError, match=r"\(batch, \.\.\., classes\) logits"):
        fisher_operator(lambda p, x: jnp.sum(model(p, x), axis=-1), params, x)
    with pytest.raises(TypeError, match="fisher_operator: model_fn must be callable"):
        fisher_operator("model", params, x)
    with pytest.raises(ValueError, match=r"empirical_fisher_operator: per_example_loss.*shape \(batch,\)"):
        empirical_fisher_operator(lambda p, x, y: jnp.sum(per_example_ce(p, x, y)), params, x, labels)
    with pytest.raises(TypeError, match="empirical_fisher_operator: per_example_loss must be callable"):
        empirical_fisher_operator(None, params, x, labels)
    with pytest.raises(ValueError, match="sample_targets: likelihood must be one of"):
        sample_targets("bernoulli", model(params, x), jax.random.PRNGKey(0), 2)
    with pytest.raises(ValueError, match="sample_targets: num_samples must be an integer >= 1"):
        sample_targets("categorical", model(params, x), jax.random.PRNGKey(0), 0)
    with pytest.raises(ValueError, match="sample_targets: offset must be an integer >= 0"):
        sample_targets("categorical", model(params, x), jax.random.PRNGKey(0), 2, offset=-1)
    with pytest.raises(ValueError, match="fisher_operator: model_fn returned 2 outputs along the batch axis for a "
                                         "batch of 6 examples"):
        fisher_operator(lambda p, x: model(p, x)[:2], params, batches=[x], num_samples=2)(params)
    with pytest.raises(ValueError, match="tree structure"):
        fisher_operator(model, params, x)({"w1": params["w1"]})
