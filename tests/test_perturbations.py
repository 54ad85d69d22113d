"""gradtx.perturbations: optax's samples and derivatives bit for bit, and known answers (the
Gumbel-perturbed argmax is a softmax; the Normal-perturbed argmax against an independent
Monte-Carlo reference)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gradtx import perturbations

SCORES = jnp.array([0.3, 0.5, -0.2, 0.1])


def one_hot_argmax(s):
    return jax.nn.one_hot(jnp.argmax(s, axis=-1), s.shape[-1])


def tree_fun(t):
    """A pytree-to-pytree function, piecewise constant in `a`, smooth in `b`."""
    return {"hot": one_hot_argmax(t["a"] + t["b"][0]), "sq": jnp.sum(t["b"] ** 2) * t["a"][:2]}


TREE = {"a": SCORES, "b": jnp.array([0.2, -1.0])}


def test_public_names_match_optax():
    theirs = {n for n in dir(optax.perturbations) if not n.startswith("_")}
    assert theirs == set(perturbations.__all__)


@pytest.mark.parametrize("noise", ["Gumbel", "Normal"])
@pytest.mark.parametrize("use_baseline", [True, False])
def test_values_and_gradients_bit_identical_to_optax(noise, use_baseline):
    """Same key -> same samples -> same values and same (score-function) gradients, under jit."""
    ours = perturbations.make_perturbed_fun(
        tree_fun, 64, 0.5, getattr(perturbations, noise)(), use_baseline
    )
    theirs = optax.perturbations.make_perturbed_fun(
        tree_fun, 64, 0.5, getattr(optax.perturbations, noise)(), use_baseline
    )
    key = jax.random.key(3)

    def run(f):  # one compilation: the full output tree (aux) and the gradient of a scalar of it
        def loss(x):
            out = f(key, x)
            return jnp.sum(out["hot"] * jnp.arange(4.0)) + jnp.sum(out["sq"]), out

        return jax.jit(jax.grad(loss, has_aux=True))(TREE)

    jax.tree.map(np.testing.assert_array_equal, run(ours), run(theirs))


def test_default_noise_is_gumbel_and_defaults_match_optax():
    key = jax.random.key(0)
    f = lambda x: jnp.maximum(x, 0.0).sum()  # noqa: E731
    ours = jax.jit(jax.grad(perturbations.make_perturbed_fun(f), argnums=1))(key, SCORES)
    theirs = jax.jit(jax.grad(optax.perturbations.make_perturbed_fun(f), argnums=1))(key, SCORES)
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("noise", ["Gumbel", "Normal"])
def test_noise_samples_and_log_prob(noise):
    ours, theirs = getattr(perturbations, noise)(), getattr(optax.perturbations, noise)()
    key = jax.random.key(5)
    z = ours.sample(key, (3, 2))
    assert z.shape == (3, 2) and z.dtype == jnp.float32
    np.testing.assert_array_equal(z, theirs.sample(key, (3, 2)))
    np.testing.assert_array_equal(ours.log_prob(z), theirs.log_prob(z))
    assert ours.sample(key, (2,), jnp.bfloat16).dtype == jnp.bfloat16
    assert repr(ours) == f"{noise}()"


def test_value_is_the_mean_over_the_documented_samples():
    """Sample k perturbs x by sigma * noise.sample(split(split(key, N)[k], 1)[0], x.shape)."""
    n, sigma, key = 16, 0.3, jax.random.key(11)
    f = lambda x: jnp.tanh(3.0 * x)  # noqa: E731
    got = perturbations.make_perturbed_fun(f, n, sigma, perturbations.Normal())(key, SCORES)
    keys = jax.vmap(lambda k: jax.random.split(k, 1)[0])(jax.random.split(key, n))
    noise = jax.vmap(lambda k: jax.random.normal(k, SCORES.shape))(keys)
    draws = f(SCORES[None, :] + sigma * noise)
    np.testing.assert_allclose(got, np.mean(draws, axis=0), rtol=1e-6, atol=1e-6)


def test_gumbel_perturbed_argmax_is_the_softmax():
    """Gumbel-max trick: E[one_hot(argmax(s + sigma G))] = softmax(s / sigma), and its Jacobian
    is (diag(p) - p p^T) / sigma; the estimates agree within Monte-Carlo error."""
    sigma, n = 0.5, 20_000
    f = jax.jit(perturbations.make_perturbed_fun(one_hot_argmax, n, sigma))
    key = jax.random.key(0)
    p = jax.nn.softmax(SCORES / sigma)
    got = f(key, SCORES)
    np.testing.assert_allclose(got, p, atol=0.015)  # std of each mean <= 0.5 / sqrt(n) = 0.0035
    np.testing.assert_allclose(got.sum(), 1.0, rtol=1e-5)
    jac = jax.jit(jax.jacobian(f, argnums=1))(key, SCORES)
    assert np.isfinite(np.asarray(jac)).all()
    exact = (jnp.diag(p) - jnp.outer(p, p)) / sigma
    np.testing.assert_allclose(jac, exact, atol=0.1)


def test_normal_perturbed_argmax_against_monte_carlo():
    """Normal noise against an independent numpy Monte-Carlo estimate of P(argmax = k)."""
    sigma, n = 0.4, 20_000
    f = jax.jit(perturbations.make_perturbed_fun(one_hot_argmax, n, sigma, perturbations.Normal()))
    got = f(jax.random.key(1), SCORES)
    rng = np.random.default_rng(0)
    z = np.asarray(SCORES) + sigma * rng.standard_normal((200_000, 4))
    reference = np.bincount(z.argmax(axis=1), minlength=4) / len(z)
    np.testing.assert_allclose(got, reference, atol=0.015)
    grad = jax.jit(jax.grad(lambda k, x: f(k, x)[1], argnums=1))(jax.random.key(2), SCORES)
    assert np.isfinite(np.asarray(grad)).all()
    assert grad[1] > 0 and grad[0] < 0  # raising score 1 raises P(argmax = 1), score 0 lowers it


def test_baseline_changes_derivatives_not_values():
    key = jax.random.key(4)
    a, b = (
        perturbations.make_perturbed_fun(one_hot_argmax, 256, 0.5, use_baseline=u) for u in (True, False)
    )
    np.testing.assert_allclose(a(key, SCORES), b(key, SCORES), rtol=1e-6)
    ga, gb = (jax.jit(jax.jacobian(g, argnums=1))(key, SCORES) for g in (a, b))
    assert not np.allclose(ga, gb)


def test_second_derivatives_are_finite():
    f = perturbations.make_perturbed_fun(lambda x: jnp.max(x), 128, 0.5, perturbations.Normal())
    hess = jax.jit(jax.hessian(f, argnums=1))(jax.random.key(0), SCORES)
    assert hess.shape == (4, 4) and np.isfinite(np.asarray(hess)).all()


@pytest.mark.parametrize(
    ("kwargs", "error", "argument"),
    [
        ({"num_samples": 0}, ValueError, "num_samples"),
        ({"num_samples": 2.5}, TypeError, "num_samples"),
        ({"sigma": 0.0}, ValueError, "sigma"),
        ({"sigma": -1.0}, ValueError, "sigma"),
        ({"noise": object()}, TypeError, "noise"),
        ({"use_baseline": "yes"}, TypeError, "use_baseline"),
    ],
)
def test_invalid_arguments(kwargs, error, argument):
    with pytest.raises(error, match=f"make_perturbed_fun: {argument}"):
        perturbations.make_perturbed_fun(jnp.sum, **kwargs)


def test_fun_must_be_callable():
    with pytest.raises(TypeError, match="make_perturbed_fun: fun must be callable"):
        perturbations.make_perturbed_fun(3)


def test_traced_sigma_is_accepted():
    f = jax.jit(lambda s: perturbations.make_perturbed_fun(jnp.sum, 8, s)(jax.random.key(0), SCORES))
    assert np.isfinite(float(f(0.2)))
