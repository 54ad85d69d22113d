"""Moment-based research optimizers of `gradtx.contrib` (ADOPT, AdEMAMix, simplified AdEMAMix,
MADGRAD, ACProp and the rest of the family).

The table (`tests/_rows_contrib_moments.py`) shows them bit-identical to `optax.contrib`. Here:
the contract properties that `tests/test_contract.py` checks for top-level aliases (these live in
`gradtx.contrib` only), known answers of the first steps computed by hand from the formulas, and
edge cases (ADOPT's motionless first step, MADGRAD's `params` requirement).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from test_contract import _jitted_steps, _minimize_all, _parabola_start, _steps, parabola, rosenbrock

import gradtx
from gradtx import contrib

FACTORIES = {
    "adopt": lambda: contrib.adopt(5e-2),
    "ademamix": lambda: contrib.ademamix(2e-2, b3=0.99),
    "simplified_ademamix": lambda: contrib.simplified_ademamix(2e-3, b1=0.9, alpha=1.0),
    "madgrad": lambda: contrib.madgrad(5e-2),
    "acprop": lambda: contrib.acprop(5e-2),
    "galore": lambda: contrib.galore(5e-2, rank=2, update_proj_gap=20),
}
ITEMS = list(FACTORIES.items())
IDS = list(FACTORIES)
NAMES = [
    "adopt", "scale_by_adopt", "ademamix", "scale_by_ademamix", "ScaleByAdemamixState",
    "simplified_ademamix", "scale_by_simplified_ademamix", "ScaleBySimplifiedAdEMAMixState",
    "madgrad", "scale_by_madgrad", "MadgradState", "acprop", "scale_by_acprop",
    "normalize", "NormalizeState", "split_real_and_imaginary", "SplitRealAndImaginaryState",
    "sophia", "SophiaState", "hutchinson_estimator_diag_hessian", "HutchinsonState",
    "galore", "scale_by_galore", "GaLoreState", "GaLoreDimensionNumbers",
]


def test_exported_from_contrib_only():
    for name in NAMES:
        assert name in contrib.__all__
        assert not hasattr(gradtx, name), name


@pytest.mark.parametrize(("name", "make"), ITEMS, ids=IDS)
def test_converges_on_a_parabola_and_progresses_on_rosenbrock(name, make):
    (start, end), (start_r, end_r) = _minimize_all(  # one compile for both problems
        [(make(), parabola, _parabola_start(), 300), (make(), rosenbrock, {"xy": jnp.array([-0.5, 0.8])}, 500)])
    assert np.isfinite(end) and end <= 0.05 * start, f"{name}: parabola loss {start} -> {end}"
    assert np.isfinite(end_r) and end_r <= 0.5 * start_r, f"{name}: Rosenbrock loss {start_r} -> {end_r}"


@pytest.mark.parametrize(("name", "make"), ITEMS, ids=IDS)
def test_jit_equals_eager_compiles_once_and_keeps_bfloat16(name, make):
    eager, _ = _steps(make(), _parabola_start(), 3, jit=False)
    # float32 and bfloat16 params in one jitted step (compiled once: a second compile of either
    # run, e.g. a state whose types change after the first step, is a second compile of the step)
    (jitted, out), step = _jitted_steps([(make(), _parabola_start()), (make(), _parabola_start(jnp.bfloat16))], 3)
    for a, b in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6, err_msg=name)
    assert step._cache_size() == 1
    for leaf in jax.tree.leaves(out):
        assert leaf.dtype == jnp.bfloat16 and np.all(np.isfinite(np.asarray(leaf, np.float32))), name


@pytest.mark.parametrize("name", IDS)
def test_runs_under_inject_hyperparams(name):
    factory = getattr(contrib, name)
    # a callable argument is taken for a schedule by inject_hyperparams (as in optax): ADOPT's
    # clip_value_fn must be declared static, and GaLore's shapes (rank, update_proj_gap) too
    static = {"adopt": ("clip_value_fn",), "galore": ("rank", "update_proj_gap")}.get(name, ())
    injected = gradtx.inject_hyperparams(factory, static_args=static)(learning_rate=3e-2)
    assert "learning_rate" in injected.init(_parabola_start()).hyperparams
    (plain, inj), _ = _jitted_steps([(factory(3e-2), _parabola_start()), (injected, _parabola_start())], 3)  # one compile
    for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(inj), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7, err_msg=name)


@pytest.mark.skipif(len(jax.devices()) < 8, reason="needs 8 (simulated) devices")
@pytest.mark.parametrize(("name", "make"), ITEMS, ids=IDS)
def test_state_keeps_the_params_sharding(name, make):
    mesh = Mesh(np.array(jax.devices()[:8]), ("x",))
    params = {
        "w": jax.device_put(jnp.linspace(-1.0, 1.0, 64).reshape(16, 4), NamedSharding(mesh, P("x", None))),
        "b": jax.device_put(jnp.ones(8), NamedSharding(mesh, P("x"))),
    }
    tx = make()

    @jax.jit
    def step(params, state):
        grad = jax.grad(lambda p: jnp.sum(p["w"] ** 2) + jnp.sum(p["b"] ** 2))(params)
        updates, state = tx.update(grad, state, params)
        return gradtx.apply_updates(params, updates), state

    state = tx.init(params)
    for when in ("init", "step"):
        for leaf_path, leaf in jax.tree_util.tree_leaves_with_path(state):
            key = next((k.key for k in leaf_path if isinstance(k, jax.tree_util.DictKey)), None)
            if key in params and leaf.shape == params[key].shape:
                assert leaf.sharding.is_equivalent_to(params[key].sharding, leaf.ndim), (name, when, leaf_path)
        params, state = step(params, state)


def test_madgrad_update_needs_params():
    tx = contrib.madgrad(1e-2)
    with pytest.raises(ValueError, match="params"):
        tx.update(jnp.ones(3), tx.init(jnp.zeros(3)))


G0 = np.array([0.5, -2.0, 1e-3], np.float32)
G1 = np.array([1.0, 0.25, -3.0], np.float32)


def _two_updates(tx, params=None):
    p = jnp.zeros(3) if params is None else jnp.asarray(params)
    state = tx.init(p)
    u0, state = tx.update(jnp.asarray(G0), state, p)
    u1, state = tx.update(jnp.asarray(G1), state, p + u0)
    return np.asarray(u0, np.float64), np.asarray(u1, np.float64), state


def test_adopt_first_step_is_still_and_second_is_the_clipped_normalised_gradient():
    u0, u1, state = _two_updates(contrib.adopt(0.1, b1=0.8))
    np.testing.assert_array_equal(u0, 0.0)
    g0, g1 = G0.astype(np.float64), G1.astype(np.float64)
    g_tilde = np.clip(g1 / np.maximum(np.abs(g0), 1e-6), -1.0, 1.0)  # bound 1**0.25 at k = 1
    np.testing.assert_allclose(u1, -0.1 * 0.2 * g_tilde, rtol=1e-6)
    np.testing.assert_allclose(state[0].nu, 0.9999 * g0**2 + 1e-4 * g1**2, rtol=3e-4)  # float32 1 - b2
    # without clipping the large ratio (|g1/g0| = 3000 on the last entry) goes through
    _, u1, _ = _two_updates(contrib.adopt(0.1, b1=0.8, use_clipping=False))
    np.testing.assert_allclose(u1, -0.1 * 0.2 * g1 / np.maximum(np.abs(g0), 1e-6), rtol=1e-6)


def test_ademamix_first_step():
    u0, _, state = _two_updates(contrib.ademamix(0.1, b3=0.9, alpha=2.0))
    g = G0.astype(np.float64)
    np.testing.assert_allclose(u0, -0.1 * (g + 2.0 * 0.1 * g) / (np.abs(g) + 1e-8), rtol=1e-5)
    assert int(state[0].count) == int(state[0].count_m2) == 2


def test_simplified_ademamix_first_two_steps():
    u0, u1, state = _two_updates(contrib.simplified_ademamix(0.1, b1=0.5, b2=0.9, alpha=3.0))
    g0, g1 = G0.astype(np.float64), G1.astype(np.float64)
    np.testing.assert_allclose(u0, -0.1 * 4.0 * g0 / (np.abs(g0) + 1e-8), rtol=1e-5)
    n = 0.9 * 0.1 * g0**2 + 0.1 * g1**2
    expected = -0.1 * (g1 + 0.5 * g0 + 3.0 * g1) / (np.sqrt(n / (1 - 0.81)) + 1e-8)
    np.testing.assert_allclose(u1, expected, rtol=1e-5)
    np.testing.assert_allclose(state[0].m, g1 + 0.5 * g0, rtol=1e-6)


def test_madgrad_first_two_steps():
    lr, c, eps = 0.1, 0.5, 1e-6
    x = np.array([1.0, 2.0, -1.0])
    u0, u1, _ = _two_updates(contrib.madgrad(lr, momentum=c, eps=eps), params=x.astype(np.float32))
    g0, g1 = G0.astype(np.float64), G1.astype(np.float64)
    lam0 = lr + eps
    z0 = x - lam0 * g0 / (np.cbrt(lam0 * g0**2) + eps)
    np.testing.assert_allclose(u0, (1 - c) * (z0 - x), rtol=1e-5, atol=1e-7)
    x1 = x + u0
    lam1 = (lr + eps) * np.sqrt(2.0)
    z1 = x - (lam0 * g0 + lam1 * g1) / (np.cbrt(lam0 * g0**2 + lam1 * g1**2) + eps)
    np.testing.assert_allclose(u1, (1 - c) * (z1 - x1), rtol=1e-5, atol=1e-6)


def test_acprop_first_two_steps():
    u0, u1, state = _two_updates(contrib.acprop(0.1, b1=0.5, b2=0.9, eps=1e-8, eps_root=0.0))
    g0, g1 = G0.astype(np.float64), G1.astype(np.float64)
    np.testing.assert_allclose(u0, -0.1 * g0 / (1 + 1e-8), rtol=1e-6)
    s1 = 0.1 * g0**2  # prediction error against the previous (zero) first moment
    np.testing.assert_allclose(u1, -0.1 * g1 / (np.sqrt(s1 / 0.1) + 1e-8), rtol=1e-5)
    np.testing.assert_allclose(state[0].nu, 0.9 * s1 + 0.1 * (g1 - 0.5 * g0) ** 2, rtol=1e-5)


def test_error_messages_name_the_function_and_argument():
    with pytest.raises(ValueError, match=r"scale_by_ademamix.*b3"):
        contrib.scale_by_ademamix(b3=1.0)
    with pytest.raises(TypeError, match=r"scale_by_adopt.*clip_value_fn"):
        contrib.scale_by_adopt(clip_value_fn=0.25)
    with pytest.raises(ValueError, match=r"madgrad.*momentum"):
        contrib.madgrad(0.1, momentum=2.0)


# ------------------------------------------------------------------ normalize, complex, Sophia


def _bits(tree):
    return [(np.asarray(x).dtype, np.asarray(x).tobytes()) for x in jax.tree.leaves(tree)]


def _run_both(build, params, grad_fn, steps=25, **extra):
    """`steps` jitted steps of `build(gradtx)` and `build(optax)`: params and states."""
    import optax

    out = []
    for lib in (gradtx, optax):
        tx = build(lib)

        @jax.jit
        def step(p, s, tx=tx):
            u, s = tx.update(grad_fn(p), s, p, **extra)
            return gradtx.apply_updates(p, u), s

        p, s = params, tx.init(params)
        for _ in range(steps):
            p, s = step(p, s)
        out.append((p, s))
    return out


def test_normalize_gives_a_unit_norm_tree():
    g = {"a": jnp.array([3.0, 0.0]), "b": jnp.array([[4.0]])}
    tx = contrib.normalize()
    u, state = tx.update(g, tx.init(g))
    assert state == contrib.NormalizeState()
    np.testing.assert_allclose(u["a"], [0.6, 0.0], rtol=1e-7)
    np.testing.assert_allclose(u["b"], [[0.8]], rtol=1e-7)


def test_split_real_and_imaginary_treats_the_parts_as_coordinates_and_equals_optax():
    params = {"z": jnp.array([1.0 + 2.0j, -0.5 + 0.1j, 0.3 - 1.0j], jnp.complex64), "r": jnp.array([0.5, -1.0])}

    def grad_fn(p):
        return jax.tree.map(lambda x: x * (x * jnp.conj(x) - 0.5), p)

    tx = contrib.split_real_and_imaginary(gradtx.adam(0.1))
    u, state = tx.update(grad_fn(params), tx.init(params), params)
    # Adam's first step is -lr * sign, coordinate by coordinate: real and imaginary parts apart
    g = grad_fn(params)["z"]
    np.testing.assert_allclose(u["z"], -0.1 * (np.sign(g.real) + 1j * np.sign(g.imag)), rtol=1e-4)
    assert isinstance(state, contrib.SplitRealAndImaginaryState)
    ours, theirs = _run_both(
        lambda m: m.contrib.split_real_and_imaginary(m.adam(1e-2)), params, grad_fn
    )
    assert _bits(ours) == _bits(theirs)


def _quartic(p):
    return sum(jnp.sum((x - 0.5) ** 4 + 0.1 * x**2) for x in jax.tree.leaves(p))


def test_hutchinson_is_exact_for_a_diagonal_hessian():
    # z * (H z) = diag(H) when H is diagonal, since every z_i is +-1
    p = {"a": jnp.array([0.0, 1.0, 2.0]), "b": jnp.array([[-1.0]])}
    tx = contrib.hutchinson_estimator_diag_hessian(jax.random.PRNGKey(3))
    d, state = tx.update(None, tx.init(p), p, obj_fn=_quartic)
    expected = jax.tree.map(lambda x: 12 * (x - 0.5) ** 2 + 0.2, p)
    for a, b in zip(jax.tree.leaves(d), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    assert not np.array_equal(jax.random.key_data(state.key), jax.random.key_data(jax.random.PRNGKey(3)))
    with pytest.raises(ValueError, match="obj_fn"):
        tx.update(None, tx.init(p), p)


def test_sophia_with_hutchinson_equals_optax_bit_for_bit():
    params = {"a": jnp.linspace(-1.0, 1.0, 12).reshape(3, 4), "b": jnp.array([0.3, -0.7, 1.5, 0.0, 2.0])}
    grad_fn = jax.grad(_quartic)
    ours, theirs = _run_both(
        lambda m: m.contrib.sophia(5e-2, update_interval=3), params, grad_fn, obj_fn=_quartic
    )
    assert _bits(ours) == _bits(theirs)
    ours, theirs = _run_both(
        lambda m: m.contrib.sophia(
            5e-2, hessian_diagonal_fn=m.contrib.hutchinson_estimator_diag_hessian(jax.random.PRNGKey(7)),
            clip_threshold=None, mu_dtype=jnp.bfloat16),
        params, grad_fn, steps=12, obj_fn=_quartic,
    )
    assert _bits(ours) == _bits(theirs)


def test_sophia_first_step_is_clipped_momentum_and_needs_params():
    tx = contrib.sophia(0.1, weight_decay=0.0)
    p = jnp.array([0.0, 2.0])
    g = jax.grad(_quartic)(p)
    u, state = tx.update(g, tx.init(p), p, obj_fn=_quartic)
    # h_0 = 0, so the ratio is m_hat / eps: clipped to +-1 wherever g != 0
    np.testing.assert_allclose(u, -0.1 * np.sign(g), rtol=1e-7)
    np.testing.assert_allclose(state[0].nu, 0.01 * (12 * (np.asarray(p) - 0.5) ** 2 + 0.2), rtol=1e-5)
    with pytest.raises(ValueError, match="params"):
        tx.update(g, tx.init(p))


# ------------------------------------------------------------------ GaLore


def test_galore_with_identity_base_is_the_best_rank_r_approximation():
    rng = np.random.default_rng(0)
    g = rng.standard_normal((6, 4)).astype(np.float32)
    tx = contrib.galore(0.5, rank=1, scale=2.0, base_optimizer=gradtx.identity())
    params = {"w": jnp.zeros((6, 4)), "b": jnp.zeros(4)}
    grads = {"w": jnp.asarray(g), "b": jnp.arange(4.0)}
    state = tx.init(params)
    assert state[0].projector["w"].shape == (6, 1) and state[0].projector["b"].shape == (0, 0)
    u, state = tx.update(grads, state, params)
    uu, s, vh = np.linalg.svd(g.astype(np.float64), full_matrices=False)
    best = s[0] * np.outer(uu[:, 0], vh[0])
    np.testing.assert_allclose(u["w"], -0.5 * 2.0 * best, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(u["b"], -0.5 * np.arange(4.0))  # not projected, not scaled
    # a wide matrix (m < n) is projected on the right: the same approximation of its transpose
    tx = contrib.galore(0.5, rank=1, base_optimizer=gradtx.identity())
    u, _ = tx.update(jnp.asarray(g.T), tx.init(jnp.zeros((4, 6))), jnp.zeros((4, 6)))
    np.testing.assert_allclose(u, -0.5 * best.T, rtol=1e-4, atol=1e-5)


def test_galore_refreshes_the_projector_every_update_proj_gap_steps():
    rng = np.random.default_rng(1)
    tx = contrib.scale_by_galore(rank=2, update_proj_gap=2)
    state = tx.init(jnp.zeros((5, 3)))
    seen = []
    for _ in range(3):
        _, state = tx.update(jnp.asarray(rng.standard_normal((5, 3)), jnp.float32), state)
        seen.append(np.asarray(state.projector))
    np.testing.assert_array_equal(seen[0], seen[1])  # kept at step 2
    assert not np.array_equal(seen[1], seen[2])  # recomputed at step 3
    assert int(state.count) == 3


def test_galore_dimension_numbers_and_errors():
    # a 3-D weight seen as (2*3) x 4 with rows from axes 0 and 1
    dims = contrib.GaLoreDimensionNumbers(reduction_axis=(0, 1), output_axis=2)
    tx = contrib.scale_by_galore(rank=2, weight_dimension_numbers=dims)
    state = tx.init({"k": jnp.zeros((2, 3, 4)), "v": jnp.zeros(3)})
    assert state.projector["k"].shape == (6, 2)
    bad = contrib.scale_by_galore(weight_dimension_numbers=contrib.GaLoreDimensionNumbers(0, 0))
    with pytest.raises(ValueError, match="overlap"):
        bad.init(jnp.zeros((3, 4)))
    with pytest.raises(TypeError, match="rank"):
        contrib.scale_by_galore(rank=2.0)
    ours, theirs = _run_both(
        lambda m: m.contrib.galore(
            1e-2, rank=3, update_proj_gap=4, weight_dimension_numbers=m.contrib.GaLoreDimensionNumbers((0, 1), 2)
        ),
        {"k": jnp.linspace(-1.0, 1.0, 24).reshape(2, 3, 4)},
        lambda p: jax.tree.map(lambda x: x * (x * x - 1.0) + 0.1, p),
        steps=10,
    )
    assert _bits(ours) == _bits(theirs)


def test_sophia_contract_jit_equals_eager_compiles_once_keeps_bfloat16_and_converges():
    def run(tx, params, n, jit):
        def step(p, s):
            u, s = tx.update(jax.grad(_quartic)(p), s, p, obj_fn=_quartic)
            return gradtx.apply_updates(p, u), s

        step = jax.jit(step) if jit else step
        s = tx.init(params)
        for _ in range(n):
            params, s = step(params, s)
        return params, step

    start = {"w": jnp.zeros((3, 4)), "b": jnp.full(5, 2.0, jnp.float32)}
    eager, _ = run(contrib.sophia(5e-2, update_interval=2), start, 4, jit=False)
    jitted, step = run(contrib.sophia(5e-2, update_interval=2), start, 4, jit=True)
    for a, b in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert step._cache_size() == 1
    low, _ = run(contrib.sophia(5e-2), jax.tree.map(lambda x: x.astype(jnp.bfloat16), start), 2, jit=True)
    assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(low))
    end, _ = run(contrib.sophia(5e-2, update_interval=2), start, 200, jit=True)
    assert float(_quartic(end)) < 0.2 * float(_quartic(start))
