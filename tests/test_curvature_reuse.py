"""Curvature estimators compile once: a second call with the same shapes traces and compiles nothing.

Compilations are counted with JAX's monitoring events (one `backend_compile` event per XLA
compile, one `jaxpr_trace` event per trace), traces of the loss with a Python counter in its body
(it runs only while JAX traces). Every answer is checked against the dense Hessian (`jax.hessian`,
`numpy.linalg.eigvalsh`), in float64.
"""

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import gradtx.curvature as cv
from gradtx.curvature import krylov_loop, krylov_while

N_BATCHES, BS, D_IN, D_OUT = 3, 5, 3, 4
PROBES = 4  # Hutchinson probes
TRACES = [0]  # loss traces (the body runs once per trace, never per evaluation of compiled code)


def layer_loss(p, x, y):  # one tanh layer: 3·4 + 4 = 16 parameters in two leaves
    TRACES[0] += 1
    return jnp.mean((jnp.tanh(x @ p["w"] + p["b"][None]) - y) ** 2)


@contextlib.contextmanager
def counting():
    """Yields `{"compiles": ..., "traces": ..., "loss": ...}`, filled in when the block exits."""
    events: list[str] = []

    def listen(event: str, duration: float, **kwargs: object) -> None:
        events.append(event)

    counts: dict[str, int] = {}
    start = TRACES[0]
    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        yield counts
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
        counts["compiles"] = events.count("/jax/core/compile/backend_compile_duration")
        counts["traces"] = events.count("/jax/core/compile/jaxpr_trace_duration")
        counts["loss"] = TRACES[0] - start


@pytest.fixture(scope="module")
def problem():
    """float64 data (3 batches of 5), two points, and each point's dense Hessian and gradient of the mean loss."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        x = rng.standard_normal((N_BATCHES * BS, D_IN))
        y = rng.standard_normal((N_BATCHES * BS, D_OUT))
        points = []
        for seed in (1, 2):
            r = np.random.default_rng(seed)
            points.append({"w": r.standard_normal((D_IN, D_OUT)), "b": r.standard_normal(D_OUT)})
        points = [jax.tree.map(jnp.asarray, p) for p in points]
        flat, unravel = ravel_pytree(points[0])

        @jax.jit
        def reference(f):
            def full(g):
                return layer_loss(unravel(g), jnp.asarray(x), jnp.asarray(y))

            return jax.hessian(full)(f), jax.grad(full)(f)

        dense = [tuple(np.asarray(a) for a in reference(ravel_pytree(p)[0])) for p in points]
    batches = [(x[i * BS:(i + 1) * BS], y[i * BS:(i + 1) * BS]) for i in range(N_BATCHES)]

    def factory():  # a generator factory: a fresh pass over the batches per call
        yield from batches

    return points, dense, factory, (x, y), int(flat.size)


def _close(got, want, scale):
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6, atol=1e-9 * scale)


def test_streaming_eigsh_second_call_compiles_nothing(problem):
    points, dense, factory, _, n = problem
    with jax.enable_x64(True):
        for i, (p, (hess, _)) in enumerate(zip(points, dense)):
            with counting() as c:
                vals, vecs = cv.eigsh(layer_loss, p, k=2, which="LA", num_iters=n, batches=factory)
                jax.block_until_ready(vecs)
            ev = np.linalg.eigvalsh(hess)
            _close(vals, ev[-2:], np.abs(ev).max())
            v = ravel_pytree(jax.tree.map(lambda t: t[1], vecs))[0]  # top Ritz vector is an eigenvector
            np.testing.assert_allclose(np.asarray(hess @ v), ev[-1] * np.asarray(v), atol=1e-8 * np.abs(ev).max())
            if i == 0:
                assert c["compiles"] > 0 and c["loss"] >= 1  # the counters do see a first call
            else:
                assert c == {"compiles": 0, "traces": 0, "loss": 0}, c


def test_streaming_trace_and_density_second_call_compile_nothing(problem):
    points, dense, factory, _, n = problem
    key, runs = jax.random.PRNGKey(3), 2
    with jax.enable_x64(True):
        for i, (p, (hess, _)) in enumerate(zip(points, dense)):
            with counting() as c:
                tr = cv.hessian_trace(layer_loss, p, num_samples=PROBES, key=key, batches=factory)  # Hutchinson
                grid, dens = cv.spectral_density(layer_loss, p, num_iters=n, num_runs=runs, key=key, batches=factory)
                jax.block_until_ready(dens)
            if i > 0:
                assert c == {"compiles": 0, "traces": 0, "loss": 0}, c
            ev = np.linalg.eigvalsh(hess)
            # the estimate is the mean of zᵀ H z over its Rademacher probes: recompute it densely
            z = np.asarray(jax.random.rademacher(key, (PROBES, n), jnp.int8), float)
            _close(tr, np.mean(np.einsum("pi,ij,pj->p", z, hess, z)), np.abs(ev).max())
            # first moment of the SLQ density = mean Rayleigh quotient of the Rademacher start vectors
            # (Gauss quadrature is exact for degree 1; the Gaussian broadening keeps the mean)
            starts = [jax.random.rademacher(jax.random.split(k)[0], (n,), jnp.int8) for k in jax.random.split(key, runs)]
            want = np.mean([np.asarray(z, float) @ hess @ np.asarray(z, float) / n for z in starts])
            grid, dens = np.asarray(grid), np.asarray(dens)
            np.testing.assert_allclose(np.trapezoid(grid * dens, grid), want, atol=1e-6 * np.abs(ev).max())
            step = grid[1] - grid[0]  # the peak of a positive sum of Gaussians lies between its extreme nodes
            assert ev[0] - step < grid[np.argmax(dens)] < ev[-1] + step


def test_classify_linearizes_once_and_recompiles_nothing(problem):
    points, dense, _, (x, y), n = problem
    with jax.enable_x64(True):
        xs, ys = jnp.asarray(x), jnp.asarray(y)
        for i, (p, (hess, grad)) in enumerate(zip(points, dense)):
            with counting() as c:
                report = cv.classify_critical_point(layer_loss, p, xs, ys, num_iters=n)
            # one trace of the loss: the Lanczos steps and the residual products share one linearization
            assert c["loss"] == (1 if i == 0 else 0), c
            if i > 0:
                assert c == {"compiles": 0, "traces": 0, "loss": 0}, c
            ev = np.linalg.eigvalsh(hess)
            scale = np.abs(ev).max()
            _close([report.min_eigenvalue, report.max_eigenvalue], [ev[0], ev[-1]], scale)
            np.testing.assert_allclose(report.grad_norm, np.linalg.norm(grad), rtol=1e-10)
            assert max(report.min_residual, report.max_residual) < 1e-8 * scale  # exact Ritz pairs
            assert report.kind == "not_critical" and report.curvature_kind == "saddle" and ev[0] < 0 < ev[-1]
            # condition_number of the same loss and data reuses the compiled Lanczos-and-residuals call
            with counting() as c:
                cond = cv.condition_number(layer_loss, p, xs, ys, num_iters=n)
            assert c["loss"] == 0 and cond.kind == "indefinite", (c, cond.kind)
            _close([cond.lambda_min, cond.lambda_max], [ev[0], ev[-1]], scale)
            _close([cond.lambda_min_residual, cond.lambda_max_residual],
                   [report.min_residual, report.max_residual], scale)


def _query(j, carry):
    return carry[1]


def _update(j, carry, av):  # power iteration with a step counter
    total, v = carry
    return total + jnp.vdot(v, av), av / jnp.linalg.norm(av)


def _below(j, carry):
    return carry[0] < 20.0


def _power_reference(a, v, steps=None, stop=None):
    """`_update` run in NumPy: (Σ vᵀ A v over the steps, the last normalized A v)."""
    total, j = 0.0, 0
    while (steps is None or j < steps) and (stop is None or total < stop):
        av = a @ v
        total, v, j = total + v @ av, av / np.linalg.norm(av), j + 1
    return total, v


def test_krylov_loops_host_steps_cached_and_closures_still_work():
    a = np.diag(np.arange(1.0, 5.0))
    v0 = np.full(4, 0.5)
    carry = (jnp.zeros(()), jnp.asarray(v0, jnp.float32))
    for i in range(2):  # module-level functions: the second call compiles nothing
        with counting() as c:
            got = krylov_while(lambda v: jnp.asarray(a, v.dtype) @ v, _query, _update, _below, carry, 50, streaming=True)
        if i > 0:
            assert c["compiles"] == 0, c
        want = _power_reference(a, v0, stop=20.0)
        assert want[0] >= 20.0 and float(got[0]) >= 20.0  # stopped by cond, long before max_steps
        np.testing.assert_allclose(float(got[0]), want[0], rtol=1e-6)
        np.testing.assert_allclose(np.asarray(got[1]), want[1], rtol=1e-5, atol=1e-6)

    def closure_update(j, c, av):  # defined here: jitted for this call only, not a cached static argument
        return _update(j, c, av)

    got = krylov_loop(lambda v: jnp.asarray(a, v.dtype) @ v, lambda j, c: c[1], closure_update, carry, 3, streaming=True)
    want = _power_reference(a, v0, steps=3)
    np.testing.assert_allclose(float(got[0]), want[0], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(got[1]), want[1], rtol=1e-5, atol=1e-6)
