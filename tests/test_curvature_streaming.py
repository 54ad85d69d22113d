"""Tests of gradtx.curvature.streaming: streamed and scanned data, and the Krylov loop helpers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradtx.curvature import (
    Batched,
    StreamingOperator,
    data_operator,
    flatten_operator,
    is_streaming,
    krylov_loop,
    krylov_while,
)
from gradtx.curvature.operators import HessianProduct

N_EX, DIM, BS = 23, 4, 5  # 4 full batches of 5 and a short one of 3


def tanh_loss(w, x, y):
    return jnp.mean((jnp.tanh(x @ w) - y) ** 2)


def dict_loss(p, x, y):
    return tanh_loss(p["w"], x, y)


@pytest.fixture(scope="module")
def problem():
    """float64 data, a point, and the dense full-data Hessian (jax.hessian on all examples)."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        x = rng.standard_normal((N_EX, DIM))
        y = rng.standard_normal(N_EX)
        w = rng.standard_normal(DIM)
        dense = np.asarray(jax.hessian(tanh_loss)(jnp.asarray(w), jnp.asarray(x), jnp.asarray(y)))
    batches = [(x[i:i + BS], y[i:i + BS]) for i in range(0, N_EX, BS)]
    return x, y, w, dense, batches


def _x64():
    return jax.enable_x64(True)


def test_every_stream_form_gives_the_full_data_product(problem):
    x, y, w, dense, batches = problem
    with _x64():
        v = np.linspace(-1.0, 1.0, DIM)
        want = dense @ v

        class Loader:  # re-iterable, like tf.data / grain: every iter() is a fresh pass
            def __iter__(self):
                return iter(batches)

        def gen():
            yield from batches

        forms = {"list": batches, "tuple": tuple(batches), "loader": Loader(), "factory": gen,
                 "one-shot": (b for b in batches)}
        product = HessianProduct(tanh_loss)
        for name, form in forms.items():
            op = data_operator("t", product, jnp.asarray(w), (), form)
            assert is_streaming(op) and isinstance(op, StreamingOperator), name
            np.testing.assert_allclose(np.asarray(op(jnp.asarray(v))), want, rtol=1e-12, atol=1e-12, err_msg=name)
            # replayed: a second product sees the whole data again (the one-shot stream was cached)
            np.testing.assert_allclose(np.asarray(op(jnp.asarray(2 * v))), 2 * want, rtol=1e-12, atol=1e-12, err_msg=name)
        # in-memory stacked data: a plain traceable operator, scanned
        op = data_operator("t", product, jnp.asarray(w), (), Batched(jnp.asarray(x), jnp.asarray(y), batch_size=BS))
        assert not is_streaming(op)
        np.testing.assert_allclose(np.asarray(jax.jit(op)(jnp.asarray(v))), want, rtol=1e-12, atol=1e-12)
        # one batch
        op = data_operator("t", product, jnp.asarray(w), (jnp.asarray(x), jnp.asarray(y)), None)
        np.testing.assert_allclose(np.asarray(op(jnp.asarray(v))), want, rtol=1e-12, atol=1e-12)


def test_matmat_and_flat_forms(problem):
    _, _, w, dense, batches = problem
    with _x64():
        op = data_operator("t", HessianProduct(dict_loss), {"w": jnp.asarray(w)}, (),
                           lambda: iter(batches))

        vs = np.random.default_rng(1).standard_normal((3, DIM))
        got = op.matmat({"w": jnp.asarray(vs)})
        np.testing.assert_allclose(np.asarray(got["w"]), vs @ dense, rtol=1e-12, atol=1e-12)
        mv, n, dtype, _ = flatten_operator(op, {"w": jnp.asarray(w)})
        assert is_streaming(mv) and n == DIM and dtype == jnp.float64
        np.testing.assert_allclose(np.asarray(mv(jnp.asarray(vs[0]))), dense @ vs[0], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(np.asarray(mv.matmat(jnp.asarray(vs))), vs @ dense, rtol=1e-12, atol=1e-12)


def test_krylov_loops_agree_streaming_and_traced(problem):
    """Power iteration written as query/update: same result in a fori/while loop and on the host."""
    _, _, w, dense, batches = problem
    with _x64():
        op = data_operator("t", HessianProduct(tanh_loss), jnp.asarray(w), (), batches)
        mv, *_ = flatten_operator(op, jnp.asarray(w))
        dense_mv = lambda z: jnp.asarray(dense) @ z  # noqa: E731

        def query(j, c):
            return c[0]

        def update(j, c, z):
            return z / jnp.linalg.norm(z), c[1] + 1

        start = (jnp.ones(DIM) / 2.0, jnp.int32(0))
        host, steps = krylov_loop(mv, query, update, start, 60, streaming=True)
        traced, steps_t = jax.jit(lambda c: krylov_loop(dense_mv, query, update, c, 60, streaming=False))(start)
        assert int(steps) == int(steps_t) == 60
        np.testing.assert_allclose(np.asarray(host), np.asarray(traced), atol=1e-10)
        lam = np.linalg.eigvalsh(dense)
        top = lam[np.argmax(np.abs(lam))]
        np.testing.assert_allclose(float(host @ dense @ host), top, rtol=1e-8)
        # early stop after 7 steps (the condition is checked before each step)
        stop = lambda j, c: c[1] < 7  # noqa: E731
        host_w = krylov_while(mv, query, update, stop, start, 60, streaming=True)
        traced_w = jax.jit(lambda c: krylov_while(dense_mv, query, update, stop, c, 60, streaming=False))(start)
        assert int(host_w[1]) == int(traced_w[1]) == 7
        np.testing.assert_allclose(np.asarray(host_w[0]), np.asarray(traced_w[0]), atol=1e-12)
        capped = krylov_while(mv, query, update, lambda j, c: True, start, 3, streaming=True)
        assert int(capped[1]) == 3


def test_stream_errors(problem):
    x, y, w, _, batches = problem
    product = HessianProduct(tanh_loss)
    v = jnp.ones(DIM, jnp.float32)
    w32 = jnp.asarray(w, jnp.float32)
    with pytest.raises(ValueError, match="t: batches is empty"):
        data_operator("t", product, w32, (), [])(v)
    with pytest.raises(ValueError, match=r"batch 1: .*leading"):
        data_operator("t", product, w32, (), [batches[0], (np.float32(1.0), np.float32(2.0))])(v)
    with pytest.raises(TypeError, match="factory must return an iterator"):
        data_operator("t", product, w32, (), lambda: 3)(v)
    with pytest.raises(TypeError, match="factory must return an iterator"):
        data_operator("t", product, w32, (), lambda: x)(v)
    with pytest.raises(TypeError, match="iterable of batches"):
        data_operator("t", product, w32, (), x)
    with pytest.raises(ValueError, match="not both"):
        data_operator("t", product, w32, (x, y), batches)
    with pytest.raises(ValueError, match="leading length"):
        Batched(x, y[:5], batch_size=2)
    with pytest.raises(ValueError, match="batch_size"):
        Batched(x, y, batch_size=0)
    with pytest.raises(ValueError, match="leading"):
        Batched(1.0, batch_size=2)


# ----- acceptance: every estimator on streamed / scanned data equals the single-big-batch answer -----


def softplus_loss(w, x, y):
    """Convex (logistic-type) loss with an L2 term: a positive definite Hessian."""
    return jnp.mean(jax.nn.softplus(-y * (x @ w))) + 0.05 * jnp.sum(w**2)


def linear_model(w, x):
    return jnp.tanh(x @ w)


def mean_sq(out, y):
    return jnp.mean((out - y) ** 2)


def test_estimators_equal_the_single_batch_answer_float64(problem):
    import gradtx.curvature as cv

    x, y, w, _, batches = problem
    with _x64():
        xs, sign, ws = jnp.asarray(x), jnp.asarray(np.sign(y)), jnp.asarray(w)
        hess = np.asarray(jax.hessian(softplus_loss)(ws, xs, sign))  # dense, all 23 examples
        ev = np.linalg.eigvalsh(hess)
        grad = np.asarray(jax.grad(softplus_loss)(ws, xs, sign))
        jac = np.asarray(jax.jacobian(linear_model)(ws, xs))  # (23, 4)
        out = np.asarray(linear_model(ws, xs))
        ggn = jac.T @ np.diag(np.full(N_EX, 2.0 / N_EX)) @ jac  # J^T H_l J for the mean squared error
        assert np.all(ev > 0) and np.all(np.isfinite(out))
        passes = []

        def factory():  # a generator factory, with a short last batch (3 of 23 examples)
            passes.append(1)
            for bx, by in batches:
                yield bx, np.sign(by)

        v = jnp.linspace(-1.0, 2.0, DIM)
        key = jax.random.PRNGKey(4)
        vals = cv.eigsh(softplus_loss, ws, k=DIM, num_iters=DIM, key=key, batches=factory)[0]
        assert len(passes) == DIM  # re-iterated for every product (eigsh needs no gradient)
        np.testing.assert_allclose(np.asarray(vals), ev, rtol=1e-6)
        passes.clear()
        np.testing.assert_allclose(np.asarray(cv.hvp(softplus_loss, ws, v, batches=factory)), hess @ np.asarray(v),
                                   rtol=1e-6)
        assert len(passes) == 1
        # Hutch++ with a sketch as wide as the space is exact; its 3 blocks of probes take 3 passes
        passes.clear()
        tr = cv.hessian_trace(softplus_loss, ws, num_samples=3 * DIM, method="hutch++", key=key, batches=factory)
        np.testing.assert_allclose(float(tr), np.trace(hess), rtol=1e-6)
        assert len(passes) == 3
        got = cv.gnvp(linear_model, mean_sq, ws, v, batches=lambda: iter(batches))
        np.testing.assert_allclose(np.asarray(got), ggn @ np.asarray(v), rtol=1e-6)
        cond = cv.condition_number(softplus_loss, ws, num_iters=DIM, batches=factory)
        np.testing.assert_allclose(float(cond.condition_number), ev[-1] / ev[0], rtol=1e-6)
        report = cv.classify_critical_point(softplus_loss, ws, num_iters=DIM, batches=factory)
        assert report.kind == "not_critical"
        np.testing.assert_allclose([report.grad_norm, report.min_eigenvalue, report.max_eigenvalue],
                                   [np.linalg.norm(grad), ev[0], ev[-1]], rtol=1e-6)
        grid, dens = cv.spectral_density(softplus_loss, ws, num_iters=DIM, num_runs=2, grid=64, key=key,
                                         batches=factory)
        grid1, dens1 = cv.spectral_density(softplus_loss, ws, xs, sign, num_iters=DIM, num_runs=2, grid=64, key=key)
        np.testing.assert_allclose(np.asarray(grid), np.asarray(grid1), rtol=1e-6)
        np.testing.assert_allclose(np.asarray(dens), np.asarray(dens1), rtol=1e-6, atol=1e-9 * float(jnp.max(dens1)))
        # in-memory stacked data, swept by lax.scan inside the estimators' one compiled call
        stacked = cv.Batched(xs, sign, batch_size=BS)
        vals_b = cv.eigsh(softplus_loss, ws, k=DIM, num_iters=DIM, key=key, batches=stacked)[0]
        np.testing.assert_allclose(np.asarray(vals_b), ev, rtol=1e-6)


def test_compiles_once_and_holds_one_batch_for_200_batches():
    """The per-batch product is traced a constant number of times, however many batches, and a
    generator factory's batches are released as the stream advances (peak alive ≤ 3)."""
    import weakref

    import gradtx.curvature as cv

    traces = []

    def counted_loss(w, x, y):
        traces.append(1)  # runs once per trace, never per call of the compiled function
        return jnp.mean((x @ w - y) ** 2)

    rng = np.random.default_rng(3)
    x = rng.standard_normal((400, 3)).astype(np.float32)
    y = rng.standard_normal(400).astype(np.float32)
    alive, peak = [0], [0]

    def released():
        alive[0] -= 1

    def factory(num_batches):
        size = 400 // num_batches

        def gen():
            for i in range(num_batches):
                bx = x[i * size:(i + 1) * size].copy()
                alive[0] += 1
                peak[0] = max(peak[0], alive[0])
                weakref.finalize(bx, released)
                yield bx, y[i * size:(i + 1) * size]

        return gen

    counts = {}
    results = {}
    for num_batches in (1, 200):
        traces.clear()
        results[num_batches] = cv.eigsh(counted_loss, jnp.zeros(3), k=3, num_iters=3, batches=factory(num_batches))[0]
        counts[num_batches] = len(traces)
    assert counts[200] == counts[1] <= 3, counts
    assert peak[0] <= 3, peak
    dense = np.linalg.eigvalsh(2 * x.astype(np.float64).T @ x.astype(np.float64) / 400)
    np.testing.assert_allclose(np.asarray(results[200]), dense, rtol=1e-4)
    np.testing.assert_allclose(np.asarray(results[1]), dense, rtol=1e-4)


def test_estimator_errors_name_the_function(problem):
    import gradtx.curvature as cv

    x, y, w, _, batches = problem
    w32 = jnp.asarray(w, jnp.float32)
    with pytest.raises(ValueError, match="eigsh: batches is empty"):
        cv.eigsh(tanh_loss, w32, num_iters=2, batches=lambda: iter([]))
    with pytest.raises(ValueError, match="hessian_trace: give either"):
        cv.hessian_trace(tanh_loss, w32, x, y, batches=batches)
    with pytest.raises(TypeError, match="spectral_density: a batches factory"):
        cv.spectral_density(tanh_loss, w32, num_iters=2, batches=lambda: None)
    with pytest.raises(ValueError, match=r"condition_number: batch 0: .*leading"):
        cv.condition_number(tanh_loss, w32, num_iters=2, batches=[(1.0, 2.0)])


def test_numpy_and_jax_batches_share_one_compiled_step():
    # a loader may yield NumPy arrays on one pass and JAX arrays on another (or mix them): the
    # per-batch step is cached on shapes and dtypes, not on the array type
    from gradtx.curvature import hvp, streaming

    def loss(p, x):
        return jnp.mean((x @ p) ** 3)  # a fresh loss: a fresh cache entry

    p = jnp.linspace(0.1, 0.3, 3)
    x = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
    before = streaming._step._cache_size()
    mixed = hvp(loss, p, p, batches=lambda: iter([(x,), (jnp.asarray(x),), (x,)]))
    assert streaming._step._cache_size() == before + 1
    np.testing.assert_allclose(mixed, hvp(loss, p, p, x), rtol=1e-6)
