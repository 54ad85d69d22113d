"""Data-parallel curvature: every estimator returns its one-device answer on sharded data.

One small classifier (tanh MLP 6 → 16 → 3, 163 parameters, cross-entropy on 64 examples) is
analysed three ways: everything on one device (the reference), the batch split over the 8
simulated devices along `"data"` with the params replicated (data parallelism), and the same batch
with the params split along `"data"` too (FSDP-style: the hidden dimension of both weights and the
hidden bias). Every estimator, with the same key and settings, must agree to 1e-5 relative to the
size of its answer (float32): XLA partitions the jitted Hessian-vector products, the only change is
the order in which the all-reduces add the per-device partial sums.

To compile each configuration once, the jit-able estimators run together inside one jitted
function (an estimator's own `jit` is inlined there); `classify_critical_point`, whose result is
Python values, runs as a user calls it. The 2-process check launches
tests/_multiprocess_curvature.py through examples/multiprocess_train.py's launcher (a free port,
a time limit, every worker killed on the way out; see tests/test_multiprocess.py).
"""

import ast
import importlib
import re
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import gradtx.curvature as curv

RTOL = 1e-5  # |sharded − one device| ≤ RTOL · max|one device|, per result
IN, HIDDEN, CLASSES, POINTS = 6, 16, 3, 64
KEY = jax.random.PRNGKey(0)
DAMPING = 2.0  # above |λ_min| ≈ 0.3 of the Hessian: H + damping·I is positive definite for solve and logdet
WORKER = Path(__file__).resolve().parent / "_multiprocess_curvature.py"

# the launching helpers of tests/test_multiprocess.py: the imported example, the per-test time limit
try:
    import test_multiprocess
except pytest.skip.Exception:  # it needs orbax and scikit-learn; only the 2-process test then skips
    test_multiprocess = None
else:
    mp = test_multiprocess.mp
    hard_time_limit = test_multiprocess.hard_time_limit


def logits(params, x):
    return jnp.tanh(x @ params["w1"] + params["b1"][None, :]) @ params["w2"] + params["b2"][None, :]


def per_example_loss(params, x, y):
    return -jnp.take_along_axis(jax.nn.log_softmax(logits(params, x)), y[:, None], axis=1)[:, 0]


def loss(params, x, y):
    return jnp.mean(per_example_loss(params, x, y))


def cross_entropy(outputs, y):
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(outputs), y[:, None], axis=1))


def all_estimates(params, x, y):
    """Every jit-able estimator's numbers on (params, x, y), as one dict of arrays."""
    ones = jax.tree.map(jnp.ones_like, params)
    out = {}
    out["eigsh"], vectors = curv.eigsh(loss, params, x, y, k=3, num_iters=30, key=KEY)
    out["eigsh_top_vector"] = vectors["w1"][..., -1]
    out["hessian_trace"] = curv.hessian_trace(loss, params, x, y, num_samples=20, key=KEY)
    out["density_grid"], out["density"] = curv.spectral_density(
        loss, params, x, y, num_iters=20, num_runs=3, key=KEY, grid=64
    )
    report = curv.condition_number(loss, params, x, y, num_iters=30, key=KEY)
    out["condition_number"] = jnp.stack([report.lambda_min, report.lambda_max])
    out["hessian_diagonal"] = curv.hessian_diagonal(loss, params, x, y, num_samples=20, key=KEY)
    out["inverse_hvp"], _ = curv.inverse_hvp(loss, params, ones, x, y, damping=DAMPING)
    out["logdet"] = curv.logdet(
        loss, params, x, y, damping=DAMPING, num_probes=4, num_iters=20, key=KEY
    ).per_probe
    blocks = curv.block_spectra(loss, params, x, y, blocks={"w1": "w1", "out": ["w2", "b2"]}, k=2, num_iters=20,
                                trace_samples=10, key=KEY)  # fmt: skip
    out["block_spectra"] = jnp.concatenate([jnp.append(b.eigenvalues, b.trace) for b in blocks.values()])
    # the Fisher-type operators: one product each, and Lanczos on their sum (one compiled Krylov loop)
    operators = [
        curv.fisher_operator(logits, params, x),
        curv.fisher_operator(logits, params, x, num_samples=2, key=KEY),
        curv.empirical_fisher_operator(per_example_loss, params, x, y),
        curv.gauss_newton_operator(logits, cross_entropy, params, x, y),
    ]
    out["fisher_products"] = [op(ones) for op in operators]
    total = lambda v: jax.tree.map(lambda *t: sum(t), *[op(v) for op in operators])  # noqa: E731
    out["fisher_operator_eigsh"] = curv.operator_eigsh(total, params, k=2, num_iters=30, key=KEY)[0]
    return out


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(0)
    params = {
        "w1": (rng.standard_normal((IN, HIDDEN)) / np.sqrt(IN)).astype(np.float32),
        "b1": (0.1 * rng.standard_normal(HIDDEN)).astype(np.float32),
        "w2": (rng.standard_normal((HIDDEN, CLASSES)) / np.sqrt(HIDDEN)).astype(np.float32),
        "b2": np.zeros(CLASSES, np.float32),
    }
    x = rng.standard_normal((POINTS, IN)).astype(np.float32)
    y = rng.integers(0, CLASSES, POINTS).astype(np.int32)
    return params, x, y


@pytest.fixture(scope="module")
def mesh():
    assert len(jax.devices()) == 8, "tests/conftest.py simulates 8 CPU devices"
    return Mesh(np.array(jax.devices()), ("data",))


@pytest.fixture(scope="module")
def placements(problem, mesh):
    """(params, x, y) on one device, data-parallel on 8, and data-parallel with sharded params."""
    params, x, y = problem
    one = jax.devices()[0]
    split = NamedSharding(mesh, P("data"))
    replicated = NamedSharding(mesh, P())
    param_specs = {"w1": P(None, "data"), "b1": P("data"), "w2": P("data", None), "b2": P()}
    sharded = {k: jax.device_put(v, NamedSharding(mesh, param_specs[k])) for k, v in params.items()}
    assert sharded["w1"].addressable_shards[0].data.shape == (IN, HIDDEN // 8)
    return {
        "one_device": jax.device_put((params, x, y), one),
        "params_replicated": (
            jax.device_put(params, replicated),
            jax.device_put(x, split),
            jax.device_put(y, split),
        ),
        "params_sharded": (sharded, jax.device_put(x, split), jax.device_put(y, split)),
    }


@pytest.fixture(scope="module")
def estimates(placements):
    # one compile per layout; LLVM's optimization level 0 halves the compile time and changes
    # nothing that sharding does (XLA partitions the program before the backend compiles it)
    run = jax.jit(all_estimates, compiler_options={"xla_backend_optimization_level": 0})
    return {name: run(*args) for name, args in placements.items()}


def relative_gap(got, want) -> float:
    """max |got − want| / max |want| over the leaves of one result."""
    gaps = [np.max(np.abs(np.asarray(g, np.float64) - np.asarray(w, np.float64))) for g, w in
            zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True)]  # fmt: skip
    scale = max(np.max(np.abs(np.asarray(w, np.float64))) for w in jax.tree.leaves(want))
    return float(max(gaps) / scale)


@pytest.mark.parametrize("layout", ["params_replicated", "params_sharded"])
def test_every_estimator_returns_the_one_device_answer_on_sharded_data(estimates, placements, layout):
    reference, sharded = estimates["one_device"], estimates[layout]
    assert reference.keys() == sharded.keys()
    chex.assert_tree_all_finite(reference)
    gaps = {name: relative_gap(sharded[name], reference[name]) for name in reference}
    assert max(gaps.values()) <= RTOL, {k: f"{v:.2e}" for k, v in gaps.items()}
    # the inputs really were split: each device held 8 of the 64 rows
    x = placements[layout][1]
    assert {s.data.shape for s in x.addressable_shards} == {(POINTS // 8, IN)}
    # and the answers are not trivial
    assert reference["eigsh"][-1] > 0 and np.all(np.asarray(reference["fisher_operator_eigsh"]) > 0)


@pytest.fixture(scope="module")
def dense_hessian(problem):
    params, x, y = problem
    flat, unravel = ravel_pytree(params)
    dense = np.asarray(jax.jit(jax.hessian(lambda z: loss(unravel(z), x, y)))(flat), np.float64)
    return 0.5 * (dense + dense.T), unravel


def test_the_one_device_answers_are_the_hessian_s(estimates, dense_hessian):
    """The reference itself, against the dense Hessian (float64 linear algebra)."""
    dense, _ = dense_hessian
    reference = estimates["one_device"]
    eigenvalues = np.linalg.eigvalsh(dense)
    assert eigenvalues[0] < 0 < eigenvalues[-1] and eigenvalues[0] + DAMPING > 0.5
    np.testing.assert_allclose(reference["eigsh"][-1], eigenvalues[-1], rtol=1e-4)
    np.testing.assert_allclose(reference["condition_number"], eigenvalues[[0, -1]], rtol=0.1)
    want = np.linalg.solve(dense + DAMPING * np.eye(len(dense)), np.ones(len(dense)))
    got = ravel_pytree(reference["inverse_hvp"])[0]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * np.abs(want).max())


@pytest.mark.parametrize("layout", ["params_replicated", "params_sharded"])
def test_classify_critical_point_on_sharded_data(placements, estimates, dense_hessian, problem, layout):
    """The eager, Python-valued estimator: the one-device Lanczos extremes and gradient norm, the dense verdict."""
    report = curv.classify_critical_point(loss, *placements[layout], key=KEY, num_iters=30)
    # the same Lanczos run (key, num_iters) as condition_number's in the one-device reference
    want = np.asarray(estimates["one_device"]["condition_number"], np.float64)
    got = np.array([report.min_eigenvalue, report.max_eigenvalue])
    np.testing.assert_allclose(got, want, rtol=0, atol=RTOL * np.abs(want).max())
    params, x, y = problem
    grad_norm = np.linalg.norm(ravel_pytree(jax.grad(loss)(params, x, y))[0])
    np.testing.assert_allclose(report.grad_norm, grad_norm, rtol=RTOL)
    # random weights: far from stationary, and the dense Hessian has eigenvalues of both signs
    eigenvalues = np.linalg.eigvalsh(dense_hessian[0])
    assert report.kind == "not_critical" and grad_norm > 1e-2
    assert report.curvature_kind == "saddle" and eigenvalues[0] < 0 < eigenvalues[-1]


@pytest.mark.slow
@pytest.mark.skipif(
    test_multiprocess is None, reason="tests/test_multiprocess.py needs orbax and scikit-learn"
)
def test_two_processes_compute_the_one_process_eigenvalue_and_trace(mp):
    """2 processes × 2 devices, each holding half of the global batch, against this process on one device."""
    worker = importlib.import_module("_multiprocess_curvature")
    outputs = mp.launch(2, [], script=WORKER, devices_per_process=2, timeout=120.0)
    params, x, y = worker.problem()
    want = [float(v) for v in worker.estimates(params, x, y)]  # eagerly, as the workers call it
    for i, out in enumerate(outputs):
        assert f"process {i}/2 mesh data=4 rows {32 * i}:{32 * (i + 1)}" in out, out
        got = [
            float(re.search(rf"^{name} (\S+)$", out, re.M).group(1)) for name in ("top_eigenvalue", "trace")
        ]
        np.testing.assert_allclose(got, want, rtol=RTOL)
    assert want[0] > 0 and want[1] > 0


def test_the_scaling_page_launch_fragment_is_the_example_s_code():
    """docs/guides/scaling.md shows the worker set-up as a ```py fragment (not run there): every
    statement of it is a statement of examples/multiprocess_train.py (compared as parsed code)."""
    root = WORKER.parents[1]
    page = (root / "docs" / "guides" / "scaling.md").read_text(encoding="utf-8")
    fragments = re.findall(r"^```py\n(.*?)^```", page, flags=re.S | re.M)
    assert len(fragments) == 1
    example = ast.parse((root / "examples" / "multiprocess_train.py").read_text(encoding="utf-8"))
    known = {ast.unparse(node) for node in ast.walk(example) if isinstance(node, ast.stmt)}
    shown = [node for node in ast.parse(fragments[0]).body if ast.unparse(node) != "..."]
    assert len(shown) == 5
    for node in shown:
        assert ast.unparse(node) in known, ast.unparse(node)
    assert "jax.distributed.initialize(" in fragments[0] and "gloo" in fragments[0]
