"""gradtx.projections against optax.projections (bit for bit under jit) and known answers."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx
from gradtx import projections as P

NAMES = sorted(n for n in dir(optax.projections) if n.startswith("projection_"))


def _bits(tree):
    return [(np.asarray(x).dtype.str, np.asarray(x).shape, np.asarray(x).tobytes()) for x in jax.tree.leaves(tree)]


def test_the_twelve_projections_with_optax_signatures():
    assert len(NAMES) == 12 and sorted(P.__all__) == NAMES
    for name in NAMES:
        ours, theirs = inspect.signature(getattr(P, name)), inspect.signature(getattr(optax.projections, name))
        assert [(p.name, p.kind, p.default) for p in ours.parameters.values()] == [
            (p.name, p.kind, p.default) for p in theirs.parameters.values()
        ], name


X = {"w": jnp.array([[0.3, -1.7, 2.5], [-0.0, 4.25, -3.1]], jnp.float32), "b": jnp.array([0.1, -0.2, 0.6])}
SMALL = jax.tree.map(lambda x: 0.01 * x, X)
A = jax.tree.map(lambda x: jnp.cos(2 * x) + 0.3, X)


def _calls(m):
    p = m.projections
    return {
        "non_negative": lambda x: p.projection_non_negative(x),
        "box": lambda x: p.projection_box(x, jax.tree.map(lambda v: -v * v, A), jax.tree.map(jnp.abs, A)),
        "box_scalar_bounds": lambda x: p.projection_box(x["w"], -1.0, 2.0),
        # scalar bounds need a single-array tree (they are tree-mapped as prefixes), as in optax
        "hypercube": lambda x: p.projection_hypercube(x["w"]),
        "hypercube_2": lambda x: p.projection_hypercube(x["b"], 2.0),
        "simplex": lambda x: p.projection_simplex(x),
        "simplex_3": lambda x: p.projection_simplex(x, 3.0),
        "l1_ball": lambda x: p.projection_l1_ball(x),
        "l1_ball_big": lambda x: p.projection_l1_ball(x, 100.0),
        "l1_sphere": lambda x: p.projection_l1_sphere(x, 2.0),
        "l2_ball": lambda x: p.projection_l2_ball(x),
        "l2_ball_big": lambda x: p.projection_l2_ball(x, 100.0),
        "l2_sphere": lambda x: p.projection_l2_sphere(x, 0.5),
        "linf_ball": lambda x: p.projection_linf_ball(x, 1.5),
        "vector": lambda x: p.projection_vector(x, A),
        "hyperplane": lambda x: p.projection_hyperplane(x, A, 0.7),
        "halfspace": lambda x: p.projection_halfspace(x, A, 0.7),
        "halfspace_inside": lambda x: p.projection_halfspace(x, A, 1e3),
    }


@pytest.mark.parametrize("tree", [X, SMALL], ids=["x", "small"])
def test_bit_identical_to_optax_under_jit_and_eagerly(tree):
    ours = jax.jit(lambda x: {k: f(x) for k, f in _calls(gradtx).items()})(tree)
    theirs = jax.jit(lambda x: {k: f(x) for k, f in _calls(optax).items()})(tree)
    for key in theirs:
        assert _bits(ours[key]) == _bits(theirs[key]), key
    for key in ("simplex", "l2_ball", "halfspace"):
        assert _bits(_calls(gradtx)[key](tree)) == _bits(_calls(optax)[key](tree)), key


def test_simplex_jvp_matches_optax():
    f_ours = lambda x: P.projection_simplex(x, 2.0)["w"].sum(axis=0) @ jnp.arange(3.0)  # noqa: E731
    f_theirs = lambda x: optax.projections.projection_simplex(x, 2.0)["w"].sum(axis=0) @ jnp.arange(3.0)  # noqa: E731
    assert _bits(jax.jit(jax.grad(f_ours))(X)) == _bits(jax.jit(jax.grad(f_theirs))(X))


def _simplex_reference(v, s=1.0):
    """Sort-based projection onto {y >= 0, sum y = s} (Held et al.), in float64 numpy."""
    u = np.sort(v)[::-1]
    cumulative = np.cumsum(u) - s
    ranks = np.arange(1, len(v) + 1)
    rho = np.nonzero(u - cumulative / ranks > 0)[0][-1]
    return np.maximum(v - cumulative[rho] / (rho + 1), 0.0)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("scale", [1.0, 2.5])
def test_simplex_against_a_numpy_reference(seed, scale):
    v = np.random.default_rng(seed).normal(size=9) * 2
    got = np.asarray(P.projection_simplex(jnp.asarray(v, jnp.float32), scale))
    np.testing.assert_allclose(got, _simplex_reference(v, scale), atol=2e-6)
    assert got.min() >= 0 and got.sum() == pytest.approx(scale, rel=1e-6)


def test_known_answers():
    np.testing.assert_array_equal(P.projection_simplex(jnp.array([0.5, 1.5, -1.0])), [0.0, 1.0, 0.0])
    np.testing.assert_allclose(P.projection_simplex(jnp.array([0.2, 0.2])), [0.5, 0.5])
    # l2 ball by hand: |(3, 4)| = 5, radius 2 -> (1.2, 1.6); a point inside stays put
    np.testing.assert_allclose(P.projection_l2_ball({"a": jnp.array([3.0]), "b": jnp.array([4.0])}, 2.0)["b"], [1.6])
    np.testing.assert_allclose(P.projection_l2_ball(jnp.array([0.3, 0.4])), [0.3, 0.4])
    np.testing.assert_allclose(P.projection_l2_sphere(jnp.array([0.3, 0.4])), [0.6, 0.8], rtol=1e-6)
    np.testing.assert_allclose(P.projection_l1_ball(jnp.array([0.2, -0.3])), [0.2, -0.3])
    np.testing.assert_allclose(P.projection_l1_ball(jnp.array([2.0, -1.0])), [1.0, 0.0])
    np.testing.assert_allclose(P.projection_l1_sphere(jnp.array([0.1, -0.1])), [0.5, -0.5])
    np.testing.assert_allclose(P.projection_linf_ball(jnp.array([2.0, -0.5, -3.0])), [1.0, -0.5, -1.0])
    np.testing.assert_allclose(P.projection_non_negative(jnp.array([-1.0, 2.0])), [0.0, 2.0])
    np.testing.assert_allclose(P.projection_hypercube(jnp.array([-1.0, 0.5, 2.0])), [0.0, 0.5, 1.0])
    a = jnp.array([1.0, 1.0])
    np.testing.assert_allclose(P.projection_vector(jnp.array([2.0, 0.0]), a), [1.0, 1.0])
    np.testing.assert_allclose(P.projection_hyperplane(jnp.array([2.0, 0.0]), a, 1.0), [1.5, -0.5])
    np.testing.assert_allclose(P.projection_halfspace(jnp.array([2.0, 0.0]), a, 1.0), [1.5, -0.5])
    np.testing.assert_allclose(P.projection_halfspace(jnp.array([0.0, 0.0]), a, 1.0), [0.0, 0.0])


def test_projected_gradient_descent_on_the_simplex():
    # minimise |x - c|^2 over the simplex: the answer is the projection of c (here (0, 0.25, 0.75))
    c = jnp.array([-1.0, 0.5, 1.0])
    opt = gradtx.sgd(0.1)
    x = jnp.ones(3) / 3
    state = opt.init(x)

    @jax.jit
    def step(x, state):
        updates, state = opt.update(jax.grad(lambda x: jnp.sum((x - c) ** 2))(x), state)
        return P.projection_simplex(gradtx.apply_updates(x, updates)), state

    for _ in range(100):
        x, state = step(x, state)
    np.testing.assert_allclose(x, [0.0, 0.25, 0.75], atol=1e-5)
    np.testing.assert_allclose(x, _simplex_reference(np.asarray(c, np.float64)), atol=1e-5)
