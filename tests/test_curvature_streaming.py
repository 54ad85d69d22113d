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
