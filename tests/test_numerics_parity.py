"""optax's safe math, moment helpers and linear algebra in gradtx: optax's numbers, and the right ones.

The names (`global_norm`, `safe_norm`, `safe_root_mean_squares`, `safe_increment`,
`safe_int32_increment`, `update_moment`, `update_moment_per_elem_norm`, `update_infinity_moment`,
`bias_correction`, `power_iteration`, `matrix_inverse_pth_root`, `nnls`, `multi_normal`) are plain
functions, so instead of rows in the trajectory table each is compared with optax here, bit for bit,
eagerly and under `jax.jit`, and checked against answers computed independently (NumPy / SciPy
eigen-decompositions, `scipy.optimize.nnls`, the Gaussian density written out, gradients by hand).
"""

import functools
import inspect
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx
from tests._bitwise import assert_same

RNG = np.random.default_rng(0)


NAMES = [
    "global_norm", "safe_norm", "safe_root_mean_squares", "safe_increment", "safe_int32_increment",
    "update_moment", "update_moment_per_elem_norm", "update_infinity_moment", "bias_correction",
    "power_iteration", "matrix_inverse_pth_root", "nnls", "multi_normal",
]


@pytest.mark.parametrize("name", NAMES)
def test_signature_is_optax_s(name):
    """Same parameter names, kinds and defaults: keyword calls written for optax work unchanged."""

    def params(fn):
        return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]

    assert params(getattr(gradtx, name)) == params(getattr(optax, name))
    assert name in gradtx.__all__


def _both(fn, *args, **kwargs):
    """`fn(gradtx)` and `fn(optax)` (optax's deprecation warning of `global_norm` silenced)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return fn(gradtx, *args, **kwargs), fn(optax, *args, **kwargs)


def _assert_parity(fn, *args, jit=True):
    """`fn(module, *args)` equal bit for bit on gradtx and optax, eagerly and (optionally) jitted."""
    ours, ref = _both(fn, *args)
    assert_same(ours, ref, "eager")
    if jit:
        ours, ref = _both(lambda m, *a: jax.jit(functools.partial(fn, m))(*a), *args)
        assert_same(ours, ref, "jit")


def _normal(shape, dtype=np.float32):
    return jnp.asarray(RNG.standard_normal(shape), dtype)


def _spd(n, condition=50.0):
    q, _ = np.linalg.qr(RNG.standard_normal((n, n)))
    values = np.geomspace(1.0, condition, n)
    return ((q * values) @ q.T).astype(np.float32)


# --------------------------------------------------------------------------------------------
# safe math
# --------------------------------------------------------------------------------------------

MIXED = {
    "w": _normal((3, 4)),
    "b": [_normal((5,), jnp.bfloat16), jnp.zeros(())],
    "c": (_normal((2,)) + 1j * _normal((2,))).astype(jnp.complex64),
    "i": jnp.arange(3),
}


@pytest.mark.parametrize("tree", [MIXED, {"only": _normal((7,))}, {}], ids=["mixed", "one", "empty"])
def test_global_norm_is_optax_bit_for_bit(tree):
    _assert_parity(lambda m, t: m.global_norm(t), tree)


def test_global_norm_known_value():
    tree = {"a": jnp.array([3.0, 0.0]), "b": [jnp.array(4.0 + 0j, jnp.complex64)], "c": jnp.array([[12.0]])}
    assert float(gradtx.global_norm(tree)) == 13.0


X0 = jnp.stack([_normal((4,)), jnp.zeros(4), 1e-3 * _normal((4,))])  # a zero row and a tiny row


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"axis": 1},
        {"axis": 1, "keepdims": True},
        {"ord": 1, "axis": 0},
        {"ord": jnp.inf, "axis": -1},
        {"ord": "fro", "axis": (0, 1), "keepdims": True},
    ],
    ids=["all", "rows", "rows-keepdims", "l1-columns", "inf-rows", "fro-keepdims"],
)
def test_safe_norm_value_and_gradient_are_optax_bit_for_bit(kwargs):
    min_norm = 0.01

    def value_and_grad(m, x):
        return jax.value_and_grad(lambda y: jnp.sum(m.safe_norm(y, min_norm, **kwargs)))(x)

    _assert_parity(value_and_grad, X0)


def test_safe_norm_gradient_is_finite_at_zero_where_the_plain_norm_is_nan():
    zero = jnp.zeros(3)
    naive = jax.grad(lambda x: jnp.maximum(jnp.linalg.norm(x), 0.0))(zero)
    assert np.all(np.isnan(naive))  # the failure safe_norm exists to avoid
    np.testing.assert_array_equal(jax.grad(lambda x: gradtx.safe_norm(x, 0.0))(zero), np.zeros(3))
    # above the bound: the value and gradient of the norm, x / |x|
    x = jnp.array([3.0, -4.0, 0.0])
    value, grad = jax.value_and_grad(lambda y: gradtx.safe_norm(y, 1.0))(x)
    assert float(value) == 5.0
    np.testing.assert_allclose(grad, np.array([0.6, -0.8, 0.0]), rtol=1e-6)
    # below the bound: the bound, flat
    value, grad = jax.value_and_grad(lambda y: gradtx.safe_norm(y, 10.0))(x)
    assert float(value) == 10.0
    np.testing.assert_array_equal(grad, np.zeros(3))
    # per row, keepdims: the shape broadcasts against x
    rows = gradtx.safe_norm(jnp.array([[3.0, 4.0], [0.0, 0.0]]), 0.5, axis=1, keepdims=True)
    np.testing.assert_array_equal(rows, np.array([[5.0], [0.5]], np.float32))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.complex64])
def test_safe_root_mean_squares_is_optax_bit_for_bit(dtype):
    x = (_normal((3, 5)) + (1j * _normal((3, 5)) if dtype == jnp.complex64 else 0)).astype(dtype)

    def value_and_grad(m, y):
        return jax.value_and_grad(lambda z: m.safe_root_mean_squares(z, 0.1))(y)

    if dtype == jnp.complex64:  # the value only: a complex input has no real gradient here
        _assert_parity(lambda m, y: m.safe_root_mean_squares(y, 0.1), x)
    else:
        _assert_parity(value_and_grad, x)
        _assert_parity(value_and_grad, jnp.zeros((3, 5)))


def test_safe_root_mean_squares_known_values_and_gradient_at_zero():
    x = jnp.array([1.0, -1.0, 3.0, 3.0])
    assert float(gradtx.safe_root_mean_squares(x, 0.0)) == pytest.approx(np.sqrt(5.0), rel=1e-7)
    assert float(gradtx.safe_root_mean_squares(jnp.array([3.0 + 4.0j]), 0.0)) == 5.0
    naive = jax.grad(lambda y: jnp.maximum(jnp.sqrt(jnp.mean(y * y)), 1e-3))(jnp.zeros(4))
    assert np.all(np.isnan(naive))
    np.testing.assert_array_equal(jax.grad(lambda y: gradtx.safe_root_mean_squares(y, 1e-3))(jnp.zeros(4)), 0.0)
    # the gradient above the bound: x / (n * rms)
    grad = jax.grad(lambda y: gradtx.safe_root_mean_squares(y, 0.0))(x)
    np.testing.assert_allclose(grad, np.asarray(x) / (4 * np.sqrt(5.0)), rtol=1e-6)


@pytest.mark.parametrize(
    "count",
    [
        jnp.int32(0),
        jnp.int32(2**31 - 1),
        jnp.int8(127),
        jnp.uint8(254),
        jnp.float32(1.5),
        jnp.float16(65504.0),
        jnp.array([1, 2**31 - 1], jnp.int32),
        7,
    ],
    ids=["int32", "int32-max", "int8-max", "uint8", "float32", "float16-max", "array", "python-int"],
)
def test_safe_increment_is_optax_bit_for_bit(count):
    _assert_parity(lambda m, c: m.safe_increment(c), count, jit=not isinstance(count, int))
    _assert_parity(lambda m, c: m.safe_int32_increment(c), count, jit=False)


def test_safe_increment_saturates_and_refuses_bool():
    top = gradtx.safe_increment(jnp.int32(2**31 - 1))
    assert top.dtype == jnp.int32 and int(top) == 2**31 - 1
    assert int(gradtx.safe_increment(jnp.int32(41))) == 42
    assert gradtx.safe_int32_increment is gradtx.safe_increment
    with pytest.raises(ValueError, match="safe_increment: count must have an integer or floating dtype"):
        gradtx.safe_increment(jnp.bool_(True))


# --------------------------------------------------------------------------------------------
# moments and bias correction
# --------------------------------------------------------------------------------------------

G = {"a": _normal((3, 4)), "b": _normal((5,), jnp.bfloat16), "c": None}
M = {"a": jnp.abs(_normal((3, 4))), "b": jnp.abs(_normal((5,))), "c": None}  # float32 moment of a bf16 grad
GC = {"z": (_normal((4,)) + 1j * _normal((4,))).astype(jnp.complex64)}
MC = {"z": jnp.abs(_normal((4,)))}


@pytest.mark.parametrize("order", [1, 2, 3])
def test_update_moment_is_optax_bit_for_bit(order):
    _assert_parity(lambda m, g, t: m.update_moment(g, t, 0.9, order), G, M)
    _assert_parity(lambda m, g, t: m.update_moment(g, t, 0.99, order), GC, jax.tree.map(lambda x: x + 0j, MC))


@pytest.mark.parametrize("order", [1, 2, 3])
def test_update_moment_per_elem_norm_is_optax_bit_for_bit(order):
    _assert_parity(lambda m, g, t: m.update_moment_per_elem_norm(g, t, 0.9, order), G, M)
    _assert_parity(lambda m, g, t: m.update_moment_per_elem_norm(g, t, 0.999, order), GC, MC)


def test_update_infinity_moment_and_bias_correction_are_optax_bit_for_bit():
    _assert_parity(lambda m, g, t: m.update_infinity_moment(g, t, 0.999, 1e-8), G, M)
    moments = {"a": _normal((3, 4)), "b": _normal((5,), jnp.bfloat16)}
    for count in [jnp.int32(1), jnp.int32(7), jnp.int32(10_000)]:
        _assert_parity(lambda m, t, c: m.bias_correction(t, 0.9, c), moments, count)
        _assert_parity(lambda m, t, c: m.bias_correction(t, 0.999, c), moments, count)


def test_moments_known_values():
    g, m = {"x": jnp.array([2.0, -1.0])}, {"x": jnp.array([1.0, 1.0])}
    np.testing.assert_allclose(gradtx.update_moment(g, m, 0.5, 1)["x"], [1.5, 0.0])
    np.testing.assert_allclose(gradtx.update_moment(g, m, 0.5, 2)["x"], [2.5, 1.0])
    np.testing.assert_allclose(gradtx.update_moment_per_elem_norm(g, m, 0.5, 2)["x"], [2.5, 1.0])
    # complex: |g|^2 = 25, a real moment
    z = gradtx.update_moment_per_elem_norm({"x": jnp.array([3.0 + 4.0j])}, {"x": jnp.array([1.0])}, 0.5, 2)
    assert z["x"].dtype == jnp.float32 and float(z["x"][0]) == 13.0
    np.testing.assert_allclose(gradtx.update_infinity_moment(g, m, 0.5, 0.0)["x"], [2.0, 1.0])
    np.testing.assert_allclose(gradtx.update_infinity_moment(g, {"x": jnp.array([8.0, 8.0])}, 0.5, 0.0)["x"], [4.0, 4.0])
    assert gradtx.update_moment({"x": None}, {"x": None}, 0.5, 2) == {"x": None}
    corrected = gradtx.bias_correction({"x": jnp.array([0.1, 0.2])}, 0.9, jnp.int32(1))
    np.testing.assert_allclose(corrected["x"], [1.0, 2.0], rtol=1e-6)
    low = gradtx.bias_correction({"x": jnp.ones(2, jnp.bfloat16)}, 0.999, jnp.int32(1))
    assert low["x"].dtype == jnp.bfloat16 and np.all(np.isfinite(np.asarray(low["x"], np.float32)))


# --------------------------------------------------------------------------------------------
# power iteration
# --------------------------------------------------------------------------------------------

SYM = _spd(6) - 20.0 * np.eye(6, dtype=np.float32)  # eigenvalues in [-19, 30]: dominant 30


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"key": jax.random.PRNGKey(3)}, {"v0": jnp.arange(1.0, 7.0)}, {"num_iters": 7}, {"error_tolerance": 1e-3}],
    ids=["default", "key", "v0", "few-iters", "loose"],
)
def test_power_iteration_on_a_matrix_is_optax_bit_for_bit(kwargs):
    _assert_parity(lambda m, a: m.power_iteration(a, **kwargs), jnp.asarray(SYM))


def test_power_iteration_on_a_callable_tree_is_optax_bit_for_bit():
    a, b = jnp.asarray(_spd(3)), jnp.asarray(_spd(2, 4.0))

    def product(tree):
        return {"x": a @ tree["x"], "y": b @ tree["y"]}

    v0 = {"x": jnp.ones(3), "y": jnp.array([1.0, -1.0])}
    _assert_parity(lambda m, v: m.power_iteration(product, v0=v), v0)


def test_power_iteration_finds_the_eigenvalue_of_largest_modulus():
    expected = np.linalg.eigvalsh(SYM.astype(np.float64))
    dominant = expected[np.argmax(np.abs(expected))]
    value, vector = jax.jit(lambda a: gradtx.power_iteration(a, num_iters=1000, error_tolerance=1e-7))(SYM)
    assert float(value) == pytest.approx(dominant, rel=1e-5)
    assert float(jnp.linalg.norm(vector)) == pytest.approx(1.0, rel=1e-6)
    np.testing.assert_allclose(SYM @ np.asarray(vector), dominant * np.asarray(vector), atol=1e-3 * abs(dominant))
    # a negative dominant eigenvalue keeps its sign
    value, _ = gradtx.power_iteration(jnp.diag(jnp.array([1.0, -3.0, 2.0])))
    assert float(value) == pytest.approx(-3.0, rel=1e-5)


def test_power_iteration_accepts_traced_hyperparameters():
    run = jax.jit(lambda a, n, tol: gradtx.power_iteration(a, num_iters=n, error_tolerance=tol)[0])
    assert float(run(SYM, 500, 1e-6)) == pytest.approx(float(np.max(np.linalg.eigvalsh(SYM))), rel=1e-4)


# --------------------------------------------------------------------------------------------
# inverse p-th root
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [1, 2, 4, 8])
def test_matrix_inverse_pth_root_is_optax_bit_for_bit(p):
    _assert_parity(lambda m, a: m.matrix_inverse_pth_root(a, p), jnp.asarray(_spd(5)))


@pytest.mark.parametrize(
    "matrix", [np.array([[2.5]], np.float32), np.diag([1.0, 1e-7, 0.0]).astype(np.float32)], ids=["1x1", "singular"]
)
def test_matrix_inverse_pth_root_edge_cases_are_optax_bit_for_bit(matrix):
    _assert_parity(lambda m, a: m.matrix_inverse_pth_root(a, 4, num_iters=20, ridge_epsilon=1e-4), jnp.asarray(matrix))


@pytest.mark.parametrize("p", [2, 4])
def test_matrix_inverse_pth_root_matches_the_eigendecomposition(p):
    a = _spd(5, condition=20.0)
    ridge = 1e-6
    values, vectors = np.linalg.eigh(a.astype(np.float64))
    damped = values + ridge * values.max()
    expected = (vectors * damped ** (-1.0 / p)) @ vectors.T
    root, error = jax.jit(lambda m: gradtx.matrix_inverse_pth_root(m, p, ridge_epsilon=ridge))(a)
    np.testing.assert_allclose(np.asarray(root), expected, atol=2e-3 * np.abs(expected).max())
    assert float(error) < 1e-3
    # a diagonal matrix, by hand
    root, _ = gradtx.matrix_inverse_pth_root(jnp.diag(jnp.array([4.0, 16.0])), 2, ridge_epsilon=0.0)
    np.testing.assert_allclose(np.diag(np.asarray(root)), [0.5, 0.25], rtol=1e-4)


def test_matrix_inverse_pth_root_accepts_a_traced_p():
    root = jax.jit(lambda m, p: gradtx.matrix_inverse_pth_root(m, p, ridge_epsilon=0.0)[0])(jnp.diag(jnp.array([16.0, 1.0])), 4)
    np.testing.assert_allclose(np.diag(np.asarray(root)), [0.5, 1.0], rtol=1e-4)


# --------------------------------------------------------------------------------------------
# non-negative least squares
# --------------------------------------------------------------------------------------------

A_LS = _normal((8, 5))
B_LS = _normal((8,))


@pytest.mark.parametrize(
    ("b", "kwargs"),
    [
        (B_LS, {}),
        (jnp.stack([B_LS, -B_LS, 2 * B_LS], axis=1), {}),
        (B_LS, {"unroll": 3}),
        (B_LS, {"L": 40.0}),
        (B_LS, {"iters": 0}),
    ],
    ids=["vector", "matrix", "unroll", "L", "zero-iters"],
)
def test_nnls_is_optax_bit_for_bit(b, kwargs):
    kwargs = {"iters": 50, **kwargs}
    _assert_parity(lambda m, a, y: m.nnls(a, y, **kwargs), A_LS, b)


def test_nnls_matches_scipy_and_the_hand_checked_case():
    scipy_optimize = pytest.importorskip("scipy.optimize")
    for seed in range(3):
        rng = np.random.default_rng(seed)
        a = rng.standard_normal((10, 4)).astype(np.float32)
        b = rng.standard_normal(10).astype(np.float32)
        expected, _ = scipy_optimize.nnls(a.astype(np.float64), b.astype(np.float64))
        x = np.asarray(jax.jit(lambda m, y: gradtx.nnls(m, y, 2000))(a, b))
        assert np.all(x >= 0)
        np.testing.assert_allclose(x, expected, atol=1e-4)
    # min over x >= 0 of |[[1, 2], [3, 4]] x - [5, 6]|: x = (0, 1.7)  (x1 free gives 34/20)
    x = gradtx.nnls(jnp.array([[1.0, 2.0], [3.0, 4.0]]), jnp.array([5.0, 6.0]), 1000)
    np.testing.assert_allclose(np.asarray(x), [0.0, 1.7], atol=1e-5)


# --------------------------------------------------------------------------------------------
# diagonal Gaussian
# --------------------------------------------------------------------------------------------


# `sample((n,), key)` broadcasts (n, *event) against the event-shaped scale, in optax as here: user
# code runs with JAX's default rank promotion ("allow"), not the suite's "raise"
_allow_rank_promotion = pytest.mark.usefixtures("allow_rank_promotion")


@pytest.fixture
def allow_rank_promotion():
    with jax.numpy_rank_promotion("allow"):
        yield


@_allow_rank_promotion
def test_multi_normal_sample_and_log_prob_are_optax_bit_for_bit():
    loc, log_scale = _normal((2, 3)), 0.3 * _normal((3,))
    key = jax.random.PRNGKey(5)
    x = _normal((4, 2, 3))

    def draw(m, mu, s):
        dist = m.multi_normal(mu, s)
        return dist.sample((4,), key), dist.log_prob(x), dist.log_scale, dist.params

    _assert_parity(draw, loc, log_scale)


@_allow_rank_promotion
def test_multi_normal_log_prob_is_the_closed_form():
    loc = np.array([0.5, -1.0, 2.0], np.float32)
    log_scale = np.array([0.0, np.log(2.0), -0.5], np.float32)
    x = np.array([[0.0, 0.0, 0.0], [1.0, -2.0, 2.5]], np.float32)
    dist = gradtx.multi_normal(loc, log_scale)
    sigma = np.exp(log_scale.astype(np.float64))
    expected = np.sum(-0.5 * np.log(2 * np.pi * sigma**2) - 0.5 * ((x - loc) / sigma) ** 2, axis=-1)
    np.testing.assert_allclose(np.asarray(dist.log_prob(x)), expected, rtol=1e-6)
    samples = dist.sample((20_000,), jax.random.PRNGKey(0))
    assert samples.shape == (20_000, 3)
    np.testing.assert_allclose(np.mean(samples, 0), loc, atol=0.05)
    np.testing.assert_allclose(np.std(samples, 0), sigma, rtol=0.03)
    assert dist.log_scale is dist.params[1]


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------


def test_invalid_arguments_raise_naming_the_function_and_argument():
    square = jnp.eye(3)
    with pytest.raises(ValueError, match=r"matrix_inverse_pth_root: p must be one of \(1, 2, 4, 8\), got 3"):
        gradtx.matrix_inverse_pth_root(square, 3)
    with pytest.raises(ValueError, match=r"power_iteration: matrix must be a square 2-D matrix, got shape \(2, 3\)"):
        gradtx.power_iteration(jnp.ones((2, 3)))
    with pytest.raises(ValueError, match="power_iteration: v0 is required"):
        gradtx.power_iteration(lambda v: v)
    with pytest.raises(ValueError, match=r"nnls: b must have A's first dimension 3, got shape \(2,\)"):
        gradtx.nnls(jnp.ones((3, 2)), jnp.ones(2), 10)
    with pytest.raises(TypeError, match="nnls: iters must be an integer"):
        gradtx.nnls(jnp.ones((3, 2)), jnp.ones(3), 10.0)
