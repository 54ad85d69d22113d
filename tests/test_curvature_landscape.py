"""Tests of gradtx.curvature.landscape: grids vs Python loops, filter normalisation, streamed
batches, Hessian directions, trajectory PCA vs scikit-learn, plot helpers, validation."""

import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import gradtx.curvature  # noqa: F401  (binds the package; the module is reached through sys.modules)
from gradtx.curvature.landscape import (
    LandscapeReport,
    landscape,
    normalize_direction,
    project_trajectory,
    random_directions,
    trajectory_landscape,
)

X = jax.random.normal(jax.random.key(0), (30, 3))
Y = jnp.cos(X[:, 0]) + 0.5 * X[:, 1]
PARAMS = {
    "w1": jax.random.normal(jax.random.key(1), (3, 5)),
    "b1": 0.1 * jnp.ones(5),
    "w2": jax.random.normal(jax.random.key(2), (5, 1)),
    "b2": jnp.zeros(1),
}


def mlp_loss(p, x, y):
    h = jnp.tanh(x @ p["w1"] + p["b1"][None])
    return jnp.mean((h @ p["w2"] + p["b2"][None] - y[:, None]) ** 2)


point_loss = jax.jit(mlp_loss)


def move(params, dirs, coeffs):
    return jax.tree.map(lambda w, *ds: w + sum(c * d for c, d in zip(coeffs, ds)), params, *dirs)


@pytest.fixture(scope="module")
def surface():
    # 7 × 6 = 42 points in chunks of 8: the last chunk is padded
    return landscape(mlp_loss, PARAMS, X, Y, num_points=(7, 6), span=((-1.0, 0.5), (-0.4, 0.8)), chunk_size=8, key=4)


def test_surface_equals_a_python_loop(surface):
    assert isinstance(surface, LandscapeReport)
    a, b = surface.coordinates
    np.testing.assert_allclose(a, np.linspace(-1.0, 0.5, 7), rtol=1e-6)
    np.testing.assert_allclose(b, np.linspace(-0.4, 0.8, 6), rtol=1e-6)
    assert surface.losses.shape == (7, 6) and surface.eigenvalues is None
    loop = np.array([[float(point_loss(move(PARAMS, surface.directions, (ai, bj)), X, Y)) for bj in b] for ai in a])
    np.testing.assert_allclose(surface.losses, loop, rtol=1e-6, atol=1e-6)


def test_random_directions_are_filter_normalised(surface):
    for d in surface.directions:
        # columns of a Flax-layout kernel (in, out) are the filters: norm of each = the weights'
        for name in ("w1", "w2"):
            np.testing.assert_allclose(
                np.linalg.norm(d[name], axis=0), np.linalg.norm(PARAMS[name], axis=0), rtol=1e-5
            )
        # biases are not perturbed
        chex.assert_trees_all_equal(d["b1"], jnp.zeros(5))
        chex.assert_trees_all_equal(d["b2"], jnp.zeros(1))
    # the two directions differ (independent draws)
    assert float(jnp.abs(surface.directions[0]["w1"] - surface.directions[1]["w1"]).max()) > 0.1


def test_curve_along_a_given_direction_closed_form():
    # f(θ) = ½ θᵀAθ: f(θ + αd) = f(θ) + α dᵀAθ + ½ α² dᵀAd
    a = jnp.array([[2.0, 0.5], [0.5, 1.0]])
    f = lambda p: 0.5 * p["v"] @ a @ p["v"]  # noqa: E731
    theta, d = jnp.array([1.0, -1.0]), jnp.array([0.3, 0.7])
    r = landscape(f, {"v": theta}, directions={"v": d}, span=(-2.0, 3.0), num_points=11)
    alpha = np.linspace(-2.0, 3.0, 11)
    expected = float(f({"v": theta})) + alpha * float(d @ a @ theta) + 0.5 * alpha**2 * float(d @ a @ d)
    np.testing.assert_allclose(r.losses, expected, rtol=1e-6, atol=1e-6)
    # a user direction is used as given (normalization defaults to "none" for it)
    chex.assert_trees_all_equal(r.directions[0]["v"], d)


def test_normalize_direction_variants():
    rng = np.random.default_rng(0)
    conv = rng.normal(size=(2, 2, 3, 4)).astype(np.float32)
    conv[..., 2] = 0.0  # a dead filter
    w = {"conv": jnp.asarray(conv), "scale": jnp.ones(4), "s": jnp.ones(())}
    d = jax.tree.map(lambda x: jnp.asarray(rng.normal(size=np.shape(x)), jnp.float32), w)
    f = jax.tree.map(np.asarray, normalize_direction(d, w, "filter"))
    d = jax.tree.map(np.asarray, d)
    norms = lambda t, axes: np.sqrt(np.sum(np.asarray(t) ** 2, axis=axes))  # noqa: E731
    np.testing.assert_allclose(norms(f["conv"], (0, 1, 2)), norms(w["conv"], (0, 1, 2)), rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(f["conv"][..., 2]), 0.0)
    # each filter keeps its direction
    for j in (0, 1, 3):
        cos = np.vdot(f["conv"][..., j], d["conv"][..., j]) / (norms(f["conv"][..., j], None) * norms(d["conv"][..., j], None))
        assert cos == pytest.approx(1.0, abs=1e-5)
    assert np.abs(f["scale"]).max() == 0.0 and float(f["s"]) == 0.0
    # PyTorch layout: filters along axis 0
    f0 = normalize_direction(d, w, "filter", filter_axis=0)
    np.testing.assert_allclose(norms(f0["conv"], (1, 2, 3)), norms(w["conv"], (1, 2, 3)), rtol=1e-5)
    # layer: one scale per leaf
    lay = jax.tree.map(np.asarray, normalize_direction(d, w, "layer"))
    assert norms(lay["conv"], None) == pytest.approx(norms(w["conv"], None), rel=1e-5)
    assert np.abs(lay["scale"]).max() == 0.0
    chex.assert_trees_all_equal(jax.tree.map(np.asarray, normalize_direction(d, w, "none")), d)
    # "none" for random directions: unit Euclidean norm over all leaves, biases included
    (r,) = jax.tree.map(np.asarray, random_directions(w, 1, "none", key=1))
    assert np.sqrt(sum(np.sum(x**2) for x in jax.tree.leaves(r))) == pytest.approx(1.0, rel=1e-5)
    assert np.abs(r["scale"]).max() > 0


def test_batches_list_factory_and_generator_equal_the_full_batch(surface):
    dirs = surface.directions
    full = landscape(mlp_loss, PARAMS, X, Y, directions=dirs, num_points=4, chunk_size=8)
    # unequal batch sizes: the batch-size-weighted mean is the mean over all 30 examples
    parts = [(X[:20], Y[:20]), (X[20:], Y[20:])]
    as_list = landscape(mlp_loss, PARAMS, batches=parts, directions=dirs, num_points=4, chunk_size=8)
    as_factory = landscape(mlp_loss, PARAMS, batches=lambda: iter(parts), directions=dirs, num_points=4, chunk_size=8)
    as_generator = landscape(mlp_loss, PARAMS, batches=(b for b in parts), directions=dirs, num_points=4, chunk_size=8)
    for r in (as_list, as_factory, as_generator):
        np.testing.assert_allclose(r.losses, full.losses, rtol=1e-5, atol=1e-6)


def test_hessian_directions_on_a_quadratic():
    # f = ½ Σ λ_i v_i² with λ = (1, 5, 3, 0.5): top eigenvectors e_1 (5) then e_2 (3)
    lam = jnp.array([1.0, 5.0, 3.0, 0.5])
    f = lambda p: 0.5 * jnp.sum(lam * p**2)  # noqa: E731
    theta = jnp.array([0.2, -0.1, 0.3, 1.0])
    r = landscape(f, theta, directions="hessian", num_points=5, span=1.0, hessian_iters=4)
    np.testing.assert_allclose(r.eigenvalues, [5.0, 3.0], rtol=1e-5)
    np.testing.assert_allclose(np.abs(r.directions[0]), [0, 1, 0, 0], atol=1e-5)
    np.testing.assert_allclose(np.abs(r.directions[1]), [0, 0, 1, 0], atol=1e-5)
    a, b = np.meshgrid(np.linspace(-1, 1, 5), np.linspace(-1, 1, 5), indexing="ij")
    s1, s2 = float(r.directions[0][1]), float(r.directions[1][2])
    expected = 0.5 * (0.2**2 + 5 * (-0.1 + s1 * a) ** 2 + 3 * (0.3 + s2 * b) ** 2 + 0.5 * 1.0)
    np.testing.assert_allclose(r.losses, expected, rtol=1e-5)


def test_hessian_direction_from_a_stream_of_batches():
    """directions="hessian" with a batch factory: the top eigenvector of the whole data set's
    Hessian (dense reference), and the curve along it equals a Python loop on all the data."""
    parts = [(X[:15], Y[:15]), (X[15:], Y[15:])]
    r = landscape(mlp_loss, PARAMS, batches=lambda: iter(parts), directions="hessian", num_directions=1,
                  num_points=5, hessian_iters=26)
    flat, unravel = ravel_pytree(PARAMS)
    h = np.asarray(jax.jit(jax.hessian(lambda z: mlp_loss(unravel(z), X, Y)))(flat), np.float64)
    top = np.linalg.eigvalsh(0.5 * (h + h.T))[-1]
    assert float(r.eigenvalues[0]) == pytest.approx(top, rel=1e-4)
    (d,) = r.directions
    loop = [float(point_loss(move(PARAMS, (d,), (a,)), X, Y)) for a in np.asarray(r.coordinates[0])]
    np.testing.assert_allclose(r.losses, loop, rtol=1e-5, atol=1e-6)


def make_path(num=6):
    rng = np.random.default_rng(3)
    flat0, unravel = ravel_pytree(PARAMS)
    steps = rng.normal(size=(num, flat0.size)).astype(np.float32) * np.linspace(1.0, 0.1, num)[:, None]
    return [unravel(flat0 + jnp.asarray(np.cumsum(steps, axis=0)[t])) for t in range(num)]


def test_trajectory_projection_matches_sklearn_pca():
    from sklearn.decomposition import PCA

    path = make_path()
    proj = project_trajectory(path)
    flats = np.stack([np.asarray(ravel_pytree(p)[0], np.float64) for p in path])
    deltas = flats - flats[-1]
    pca = PCA(n_components=2).fit(deltas[:-1])
    np.testing.assert_allclose(proj.explained_variance, pca.explained_variance_ratio_, rtol=1e-4)
    u = np.stack([np.asarray(ravel_pytree(d)[0], np.float64) for d in proj.directions])
    np.testing.assert_allclose(np.abs(np.sum(u * pca.components_, axis=1)), 1.0, atol=1e-4)
    np.testing.assert_allclose(proj.coordinates, deltas @ u.T, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(proj.coordinates[-1], 0.0, atol=1e-6)
    assert np.all(np.asarray(proj.coordinates[0]) >= 0)


def test_trajectory_landscape_covers_the_path():
    path = make_path()
    proj, report = trajectory_landscape(mlp_loss, path, X, Y, num_points=5, margin=0.1, chunk_size=32)
    a, b = (np.asarray(c) for c in report.coordinates)
    coords = np.asarray(proj.coordinates)
    assert a[0] < coords[:, 0].min() and a[-1] > coords[:, 0].max()
    assert b[0] < coords[:, 1].min() and b[-1] > coords[:, 1].max()
    for i, j in ((0, 0), (2, 3), (4, 1)):
        expected = point_loss(move(path[-1], proj.directions, (a[i], b[j])), X, Y)
        assert float(report.losses[i, j]) == pytest.approx(float(expected), rel=1e-5)


def test_plot_helpers_draw_the_report(surface):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gradtx.curvature.landscape_plot import plot_contour, plot_curve, plot_surface

    path = np.array([[0.4, 0.6], [0.2, 0.1], [0.0, 0.0]])
    ax = plot_contour(surface, trajectory=path)
    lines = ax.get_lines()
    np.testing.assert_allclose(lines[0].get_xydata(), path)
    ax3 = plot_surface(surface, trajectory=path)
    assert ax3.name == "3d"
    curve = LandscapeReport((jnp.linspace(-1, 1, 5),), jnp.arange(5.0), ())
    np.testing.assert_allclose(plot_curve(curve).get_lines()[0].get_ydata(), np.arange(5.0))
    with pytest.raises(ValueError, match="plot_contour: needs a surface"):
        plot_contour(curve)
    with pytest.raises(ValueError, match="plot_curve: needs a curve"):
        plot_curve(surface)
    plt.close("all")


def test_gradtx_import_does_not_need_matplotlib():
    # landscape_plot imports matplotlib only inside its functions
    module = sys.modules["gradtx.curvature.landscape"]
    assert "matplotlib" not in module.__dict__


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"normalization": "unit"}, ValueError, "normalization must be one of"),
        ({"directions": "pca"}, ValueError, "directions must be"),
        ({"directions": {"w1": jnp.zeros((3, 5))}}, ValueError, "directions must be"),
        ({"directions": ({**PARAMS, "w1": jnp.zeros((5, 3))},)}, ValueError, "does not match"),
        ({"num_points": 1}, ValueError, "num_points"),
        ({"num_points": (5, 5, 5)}, ValueError, "num_points"),
        ({"span": -1.0}, ValueError, "span"),
        ({"span": (1.0, -1.0)}, ValueError, "lo < hi"),
        ({"num_directions": 3}, ValueError, "num_directions"),
        ({"chunk_size": 0}, ValueError, "chunk_size"),
        ({"key": "seed"}, TypeError, "key"),
    ],
)
def test_invalid_arguments(kwargs, error, match):
    with pytest.raises(error, match=rf"landscape: .*{match}"):
        landscape(mlp_loss, PARAMS, X, Y, **kwargs)


def test_invalid_data_and_paths():
    with pytest.raises(ValueError, match="landscape: give either one batch"):
        landscape(mlp_loss, PARAMS, X, Y, batches=[(X, Y)])
    with pytest.raises(ValueError, match="landscape: batches is empty"):
        landscape(mlp_loss, PARAMS, batches=[], num_points=2)
    with pytest.raises(TypeError, match="landscape: batches must be"):
        landscape(mlp_loss, PARAMS, batches=X, num_points=2)
    with pytest.raises(ValueError, match="landscape: directions='hessian' reads the data several times"):
        landscape(mlp_loss, PARAMS, batches=iter([(X, Y)]), directions="hessian")
    with pytest.raises(TypeError, match="landscape: loss must be callable"):
        landscape("loss", PARAMS, X, Y)
    with pytest.raises(ValueError, match="random_directions: normalization='filter' zeroes every leaf"):
        random_directions({"b": jnp.ones(3)})
    with pytest.raises(ValueError, match="project_trajectory: path must be a sequence of at least 3"):
        project_trajectory([PARAMS, PARAMS])
    with pytest.raises(ValueError, match="project_trajectory: every point of path"):
        project_trajectory([PARAMS, PARAMS, {"w1": PARAMS["w1"]}])
