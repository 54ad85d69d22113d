"""optax.contrib's Schedule-Free (and Muon, SAM): known answers, validation, contract properties.

The bit-for-bit comparison with optax is in `tests/_rows_contrib_matrix_sf.py`.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _rows_contrib_matrix_sf import INVALID

import gradtx
from gradtx import contrib

# --------------------------------------------------------------------------------------------
# Schedule-Free
# --------------------------------------------------------------------------------------------


def test_schedule_free_sgd_known_answer_two_steps():
    # f = x^2/2 (gradient y), gamma = 0.5, b1 = 0.5, constant lr => c_1 = 1, c_2 = 1/2
    tx = contrib.schedule_free(gradtx.sgd(0.5), 0.5, b1=0.5)
    y = jnp.array([4.0])
    s = tx.init(y)
    u, s = tx.update(y, s, y)  # z1 = 4 - 2 = 2; x1 = z1 = 2; y1 = 0.5*2 + 0.5*2 = 2
    y = y + u
    np.testing.assert_allclose(y, [2.0])
    np.testing.assert_allclose(contrib.schedule_free_eval_params(s, y), [2.0])
    u, s = tx.update(y, s, y)  # z2 = 2 - 1 = 1; x2 = (2 + 1)/2 = 1.5; y2 = 0.75 + 0.5 = 1.25
    y = y + u
    np.testing.assert_allclose(y, [1.25])
    np.testing.assert_allclose(s.z, [1.0])
    np.testing.assert_allclose(contrib.schedule_free_eval_params(s, y), [1.5])
    assert int(s.step_count) == 3
    np.testing.assert_allclose(s.weight_sum, 0.5)  # two weights 0.5**2
    np.testing.assert_allclose(s.max_lr, 0.5)


def test_schedule_free_state_layout_and_dtypes():
    p = {"w": jnp.ones((2, 3), jnp.bfloat16), "b": jnp.ones(3, jnp.float32)}
    s = contrib.schedule_free_adamw(state_dtype=jnp.float32).init(p)
    assert type(s).__name__ == "ScheduleFreeState"
    assert s._fields == ("b1", "weight_sum", "step_count", "max_lr", "base_optimizer_state", "z")
    assert s.b1.dtype == jnp.bfloat16 and s.max_lr.dtype == jnp.bfloat16  # the lowest dtype
    assert s.step_count.dtype == jnp.int32 and int(s.step_count) == 1
    assert s.z["w"].dtype == jnp.float32


def test_schedule_free_eval_params_rejects_other_states():
    with pytest.raises(ValueError, match="ScheduleFreeState"):
        contrib.schedule_free_eval_params(gradtx.sgd(0.1).init(jnp.ones(2)), jnp.ones(2))


def test_schedule_free_needs_params():
    tx = contrib.schedule_free_sgd(0.1)
    s = tx.init(jnp.ones(2))
    with pytest.raises(ValueError, match="params"):
        tx.update(jnp.ones(2), s)


def test_schedule_free_passes_extra_args_to_the_base_optimizer():
    seen = {}

    def update(u, s, p=None, **extra):
        seen.update(extra)
        return u, s

    base = gradtx.GradientTransformation(lambda p: gradtx.EmptyState(), update)
    tx = contrib.schedule_free(base, 0.1)
    tx.update(jnp.ones(2), tx.init(jnp.ones(2)), jnp.ones(2), value=3.0)
    assert seen == {"value": 3.0}


def test_schedule_free_names_live_in_contrib_only():
    for name in ("schedule_free", "schedule_free_sgd", "schedule_free_adamw", "ScheduleFreeState"):
        assert name in contrib.__all__
        assert name not in gradtx.__all__
    assert "schedule_free" in repr(contrib.schedule_free_sgd(0.1))


@pytest.mark.parametrize(
    "make",
    [lambda: contrib.schedule_free_sgd(0.1), lambda: contrib.schedule_free_adamw(0.05)],
    ids=["sgd", "adamw"],
)
def test_schedule_free_aliases_minimise_a_parabola_jit_equals_eager(make):
    tx = make()
    target = jnp.array([1.0, -2.0, 0.5])

    def step(p, s):
        u, s = tx.update(p - target, s, p)
        return gradtx.apply_updates(p, u), s

    p0 = jnp.zeros(3)
    p, s = p0, tx.init(p0)
    pj, sj = p0, tx.init(p0)
    jstep = jax.jit(step)
    for _ in range(300):
        p, s = step(p, s)
        pj, sj = jstep(pj, sj)
    np.testing.assert_allclose(p, pj, rtol=1e-6, atol=1e-7)
    assert jstep._cache_size() == 1
    x = contrib.schedule_free_eval_params(s, p)
    np.testing.assert_allclose(x, target, atol=5e-2)


def test_schedule_free_sgd_matches_optax_doc_example():
    def f(x):
        return jnp.sum(x**2)

    ours, theirs = contrib.schedule_free_sgd(), optax.contrib.schedule_free_sgd()
    p = q = jnp.array([1.0, 2.0, 3.0])
    s, t = ours.init(p), theirs.init(q)
    for _ in range(5):
        u, s = ours.update(jax.grad(f)(p), s, p)
        v, t = theirs.update(jax.grad(f)(q), t, q)
        p, q = gradtx.apply_updates(p, u), optax.apply_updates(q, v)
        np.testing.assert_allclose(
            contrib.schedule_free_eval_params(s, p), optax.contrib.schedule_free_eval_params(t, q), rtol=1e-6
        )


# --------------------------------------------------------------------------------------------
# invalid arguments
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("factory,kwargs,arg", INVALID, ids=[f"{f.__name__}-{a}" for f, _, a in INVALID])
def test_invalid_arguments_name_the_argument(factory, kwargs, arg):
    with pytest.raises((ValueError, TypeError), match=arg):
        factory(**kwargs)


# --------------------------------------------------------------------------------------------
# Muon
# --------------------------------------------------------------------------------------------


def _ns_scalar(s, coeffs, steps):
    # the Newton-Schulz polynomial acts on each singular value: s <- a s + b s^3 + c s^5
    a, b, c = coeffs
    for _ in range(steps):
        s = a * s + b * s**3 + c * s**5
    return s


def test_scale_by_muon_known_answer_on_a_diagonal_matrix():
    # beta = 0, no Nesterov: the momentum is the gradient; diag(3, 4) has Frobenius norm 5
    tx = contrib.scale_by_muon(beta=0.0, nesterov=False, weight_dimension_numbers=contrib.MuonDimensionNumbers())
    g = jnp.diag(jnp.array([3.0, 4.0]))
    u, s = tx.update(g, tx.init(g))
    coeffs = (3.4445, -4.7750, 2.0315)
    want = np.diag([_ns_scalar(0.6, coeffs, 5), _ns_scalar(0.8, coeffs, 5)])
    np.testing.assert_allclose(u, want, rtol=1e-5, atol=1e-6)
    assert int(s.count) == 1 and s.ns_coeffs.shape == (3,)


def test_scale_by_muon_output_is_nearly_orthogonal():
    g = jax.random.normal(jax.random.key(0), (8, 5))
    tx = contrib.scale_by_muon(beta=0.0, nesterov=False, weight_dimension_numbers=contrib.MuonDimensionNumbers())
    u, _ = tx.update(g, tx.init(g))
    sv = np.linalg.svd(np.asarray(u), compute_uv=False)
    assert u.shape == (8, 5)
    assert np.all(sv > 0.5) and np.all(sv < 1.5)  # the quintic's band, not exactly 1
    uu, _, vt = np.linalg.svd(np.asarray(g), full_matrices=False)
    np.testing.assert_allclose(np.sign(np.sum(np.asarray(u) * (uu @ vt))), 1.0)


def test_scale_by_muon_batch_axes_orthogonalise_each_matrix():
    g = jax.random.normal(jax.random.key(1), (3, 4, 5))
    dims = contrib.MuonDimensionNumbers(reduction_axis=1, output_axis=2)
    tx = contrib.scale_by_muon(beta=0.0, nesterov=False, weight_dimension_numbers=dims)
    u, _ = tx.update(g, tx.init(g))
    one = contrib.scale_by_muon(beta=0.0, nesterov=False, weight_dimension_numbers=contrib.MuonDimensionNumbers())
    for i in range(3):
        ui, _ = one.update(g[i], one.init(g[i]))
        np.testing.assert_allclose(u[i], ui, rtol=1e-5, atol=1e-6)


def test_scale_by_muon_rejects_a_vector():
    tx = contrib.scale_by_muon(weight_dimension_numbers=contrib.MuonDimensionNumbers())
    with pytest.raises(ValueError, match="rank >= 2"):
        tx.update(jnp.ones(3), tx.init(jnp.ones(3)))


def test_muon_sends_non_matrices_to_adamw():
    p = {"w": jax.random.normal(jax.random.key(2), (4, 3)), "b": jnp.array([1.0, -2.0, 0.5])}
    g = jax.tree.map(lambda x: 0.3 * x + 0.1, p)
    tx = contrib.muon(1e-2, adam_learning_rate=3e-3)
    u, s = tx.update(g, tx.init(p), p)
    ref = gradtx.adamw(3e-3, weight_decay=0.0, nesterov=True)
    ub, _ = ref.update(g["b"], ref.init(p["b"]), p["b"])
    np.testing.assert_allclose(u["b"], ub, rtol=1e-6)
    # width scaling sqrt(max(1, 3/4)) = 1: the Muon update is -lr * NS(m_hat)
    sv = np.linalg.svd(np.asarray(u["w"]) / -1e-2, compute_uv=False)
    assert np.all(sv > 0.5) and np.all(sv < 1.5)
    assert type(s.inner_states["muon"].inner_state[0]).__name__ == "MuonState"


def test_muon_consistent_rms_scale():
    p = {"w": jax.random.normal(jax.random.key(3), (4, 9))}
    a = contrib.muon(1.0, beta=0.0, nesterov=False)
    b = contrib.muon(1.0, beta=0.0, nesterov=False, consistent_rms=0.2)
    ua, _ = a.update(p, a.init(p), p)
    ub, _ = b.update(p, b.init(p), p)
    # width: sqrt(max(1, 9/4)) = 1.5; consistent: 0.2 * sqrt(9) = 0.6
    np.testing.assert_allclose(ub["w"], ua["w"] * (0.6 / 1.5), rtol=1e-5)


def test_muon_jit_equals_eager_and_descends():
    p0 = {"w": jax.random.normal(jax.random.key(4), (6, 4)), "b": jnp.ones(4)}
    target = jax.tree.map(jnp.zeros_like, p0)
    tx = contrib.muon(2e-2)

    def loss(p):
        return sum(jnp.sum((x - t) ** 2) for x, t in zip(jax.tree.leaves(p), jax.tree.leaves(target), strict=True))

    def step(p, s):
        u, s = tx.update(jax.grad(loss)(p), s, p)
        return gradtx.apply_updates(p, u), s

    jstep = jax.jit(step)
    p, s, pj, sj = p0, tx.init(p0), p0, tx.init(p0)
    for _ in range(3):  # eager Muon is slow: three steps side by side
        p, s = step(p, s)
        pj, sj = jstep(pj, sj)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), p, pj)
    for _ in range(37):
        pj, sj = jstep(pj, sj)
    assert jstep._cache_size() == 1
    assert loss(pj) < 0.5 * loss(p0)


# --------------------------------------------------------------------------------------------
# SAM
# --------------------------------------------------------------------------------------------


def test_sam_transparent_known_answer_one_period():
    # f = w^2 (gradient 2w); ascent sgd(0.5), outer sgd(0.1), period 2
    tx = contrib.sam(gradtx.sgd(0.1), gradtx.sgd(0.5))
    w = jnp.array([1.0, -2.0])
    s = tx.init(w)
    assert s._fields == ("steps_since_sync", "opt_state", "adv_state", "cache")
    u, s = tx.update(2 * w, s, w)  # ascent: w + 0.5 * 2w = 2w
    wt = w + u
    np.testing.assert_allclose(wt, 2 * w)
    assert int(s.steps_since_sync) == 1
    np.testing.assert_allclose(s.cache, w)
    u, s = tx.update(2 * wt, s, wt)  # outer: back to w, minus 0.1 * grad at 2w = 4w
    np.testing.assert_allclose(wt + u, w - 0.4 * w)
    assert int(s.steps_since_sync) == 0


def test_sam_opaque_equals_transparent_over_a_period():
    def grad(w):
        return w * (w * w - 1.0)

    w0 = jnp.array([0.3, -1.7, 2.2])
    a = contrib.sam(gradtx.adam(0.05), gradtx.sgd(0.2), sync_period=3)
    b = contrib.sam(gradtx.adam(0.05), gradtx.sgd(0.2), sync_period=3, opaque_mode=True)
    wa, sa = w0, a.init(w0)
    for _ in range(3):
        u, sa = a.update(grad(wa), sa, wa)
        wa = wa + u
    u, sb = b.update(grad(w0), b.init(w0), w0, grad_fn=lambda p, i: grad(p))
    np.testing.assert_allclose(wa, w0 + u, rtol=1e-6, atol=1e-7)
    assert sb.cache is None


def test_sam_period_one_is_the_outer_optimizer():
    w = jnp.array([1.0, 2.0])
    tx, ref = contrib.sam(gradtx.adam(0.1), gradtx.sgd(1.0), sync_period=1), gradtx.adam(0.1)
    s, r = tx.init(w), ref.init(w)
    for _ in range(3):
        u, s = tx.update(w, s, w)
        v, r = ref.update(w, r, w)
        np.testing.assert_allclose(u, v, rtol=1e-6)


def test_sam_opaque_needs_grad_fn():
    tx = contrib.sam(gradtx.sgd(0.1), gradtx.sgd(0.1), opaque_mode=True)
    w = jnp.ones(2)
    with pytest.raises(ValueError, match="grad_fn"):
        tx.update(w, tx.init(w), w)


# --------------------------------------------------------------------------------------------
# the contract of tests/test_contract.py, for the contrib aliases (which it cannot look up at
# gradtx's top level): bfloat16, inject_hyperparams, sharding
# --------------------------------------------------------------------------------------------

ALIASES = {
    "schedule_free_sgd": (lambda: contrib.schedule_free_sgd(0.1, weight_decay=1e-3), ()),
    "schedule_free_adamw": (lambda: contrib.schedule_free_adamw(0.05, warmup_steps=2), ()),
    "muon": (lambda: contrib.muon(2e-2, consistent_rms=0.2), ("ns_steps",)),
}


def _start(dtype=jnp.float32):
    return {"w": jnp.linspace(-1.0, 1.0, 12, dtype=dtype).reshape(3, 4), "b": jnp.array([0.5, -0.25, 1.0], dtype)}


def _run(tx, params, n):
    return _run_all([tx], params, n)[0]


def _run_all(txs, params, n):
    """`_run` of each of `txs` from the same params, one jitted step advancing them all (one compile;
    they share no input, each computed as alone)."""

    @jax.jit
    def step(carry):
        out = []
        for tx, (p, s) in zip(txs, carry, strict=True):
            g = jax.grad(lambda q: sum(jnp.sum(x.astype(jnp.float32) ** 2) for x in jax.tree.leaves(q)))(p)
            u, s = tx.update(g, s, p)
            out.append((gradtx.apply_updates(p, u), s, u))
        return out

    carry = [(params, tx.init(params)) for tx in txs]
    outs = [[] for _ in txs]
    for _ in range(n):
        result = step(carry)
        carry = [(p, s) for p, s, _ in result]
        for out, (p, _, u) in zip(outs, result, strict=True):
            out.append((p, u))
    return outs


@pytest.mark.parametrize("name", sorted(ALIASES))
def test_contrib_alias_bfloat16_params_stay_bfloat16(name):
    for params, updates in _run(ALIASES[name][0](), _start(jnp.bfloat16), 2):
        for p, u in zip(jax.tree.leaves(params), jax.tree.leaves(updates), strict=True):
            assert p.dtype == jnp.bfloat16 and u.dtype == jnp.bfloat16, (name, p.dtype, u.dtype)
            assert np.all(np.isfinite(np.asarray(p, np.float32)))


@pytest.mark.parametrize("name", sorted(ALIASES))
def test_contrib_alias_runs_under_inject_hyperparams(name):
    make, extra_static = ALIASES[name]
    tx = make()
    factory_name, arguments = tx.update._gradtx_info
    arguments = dict(arguments)
    static = [
        k for k, v in arguments.items()
        if k in extra_static or not (isinstance(v, (int, float)) and not isinstance(v, bool))
    ]
    injected = gradtx.inject_hyperparams(getattr(contrib, factory_name), static_args=static)(**arguments)
    assert "learning_rate" in injected.init(_start()).hyperparams
    for (pa, _), (pb, _) in zip(*_run_all([tx, injected], _start(), 3), strict=True):
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), pa, pb)


@pytest.mark.skipif(len(jax.devices()) < 8, reason="needs 8 (simulated) devices")
@pytest.mark.parametrize("name", sorted(ALIASES))
def test_contrib_alias_state_keeps_the_params_sharding(name):
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    mesh = Mesh(np.array(jax.devices()[:8]), ("x",))
    params = {
        "w": jax.device_put(jnp.linspace(-1.0, 1.0, 64).reshape(16, 4), NamedSharding(mesh, P("x", None))),
        "b": jax.device_put(jnp.ones(8), NamedSharding(mesh, P("x"))),
    }
    by_shape = {tuple(p.shape): p.sharding for p in params.values()}
    tx = ALIASES[name][0]()
    state = tx.init(params)
    state = _run_sharded(tx, params, state)
    for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
        expected = by_shape.get(tuple(jnp.shape(leaf)))
        if expected is not None and isinstance(leaf, jax.Array):
            assert leaf.sharding.is_equivalent_to(expected, leaf.ndim), (name, jax.tree_util.keystr(path))


def _run_sharded(tx, params, state):
    @jax.jit
    def step(p, s):
        g = jax.tree.map(lambda x: 2 * x, p)
        u, s = tx.update(g, s, p)
        return gradtx.apply_updates(p, u), s

    return step(params, state)[1]


def test_scale_by_muon_default_dimension_numbers_on_a_tree():
    # None means "every leaf is a matrix": optax 0.2.8 runs it on a single array only; gradtx
    # gives the same numbers there and also accepts a tree of matrices
    g = jax.random.normal(jax.random.key(5), (4, 6))
    ours, theirs = contrib.scale_by_muon(), optax.contrib.scale_by_muon()
    u, _ = jax.jit(ours.update)(g, ours.init(g))
    v, _ = jax.jit(theirs.update)(g, theirs.init(g))
    np.testing.assert_array_equal(u, v)
    tree = {"a": g, "b": 2 * g}
    ut, _ = jax.jit(ours.update)(tree, ours.init(tree))
    np.testing.assert_allclose(ut["a"], u, rtol=1e-5, atol=1e-6)  # another program: ulps may differ
    np.testing.assert_allclose(ut["b"], u, rtol=1e-5, atol=1e-6)  # orthogonalisation is scale-free
