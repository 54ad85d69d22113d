"""Tests of the adaptive transformations: Adam, NAdam, AMSGrad, Adamax, Lion, RMSProp, Adagrad."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _optax_parity import ATOL, RTOL, make_tree
from _optax_parity import run_against_optax as _run_against_optax
from absl.testing import parameterized
from hypothesis import given, settings
from hypothesis import strategies as st

import gradtx
from gradtx.transforms import adam_family


def max_rel_dev(a, b):
    devs = [
        float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)) / (np.abs(np.asarray(y, np.float64)) + ATOL)))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    ]
    return max(devs)


PARITY_CASES = [
    ("adam", "scale_by_adam", {}),
    ("adam_custom", "scale_by_adam", dict(b1=0.5, b2=0.9, eps=1e-3, eps_root=1e-4)),
    ("nadam", "scale_by_adam", dict(nesterov=True)),
    ("amsgrad", "scale_by_amsgrad", {}),
    ("amsgrad_no_bc", "scale_by_amsgrad", dict(bias_correction_mu=False, bias_correction_nu=False, eps_root=1e-8)),
    ("adamax", "scale_by_adamax", {}),
    ("lion", "scale_by_lion", {}),
    ("lion_refined", "scale_by_lion", dict(mode="refined")),
    ("rms", "scale_by_rms", {}),
    ("rms_bc_outside", "scale_by_rms", dict(decay=0.8, eps=1e-4, initial_scale=0.3, eps_in_sqrt=False, bias_correction=True)),
    ("stddev_outside", "scale_by_stddev", dict(decay=0.7, eps=1e-3, initial_scale=1.0, eps_in_sqrt=False)),
    ("rss", "scale_by_rss", {}),
]


class OptaxParityTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*PARITY_CASES)
    def test_matches_optax_40_steps(self, name, kwargs):
        ours, ref = getattr(gradtx, name)(**kwargs), getattr(optax, name)(**kwargs)
        dev = run_against_optax(self.variant, ours, ref, f"{name}{kwargs!r}")
        print(f"{name}({kwargs}): max relative deviation from optax over 40 steps = {dev:.3g}")

    @chex.variants(with_jit=True, without_jit=True)
    def test_adam_state_matches_optax(self):
        params = make_tree(jax.random.key(0))
        ours, ref = gradtx.scale_by_adam(), optax.scale_by_adam()
        s_ours, s_ref = ours.init(params), ref.init(params)
        update, ref_update = self.variant(ours.update), jax.jit(ref.update)
        for i in range(5):
            g = make_tree(jax.random.key(i))
            _, s_ours = update(g, s_ours)
            _, s_ref = ref_update(g, s_ref)
        assert int(s_ours.count) == int(s_ref.count) == 5
        chex.assert_trees_all_close(s_ours.mu, s_ref.mu, rtol=RTOL, atol=ATOL)
        chex.assert_trees_all_close(s_ours.nu, s_ref.nu, rtol=RTOL, atol=ATOL)

    @chex.variants(with_jit=True, without_jit=True)
    def test_complex_gradients_match_optax(self):
        key = jax.random.key(7)
        params = {"z": jnp.zeros((4,), jnp.complex64)}
        for name in ("scale_by_adam", "scale_by_rms", "scale_by_rss"):
            ours, ref = getattr(gradtx, name)(), getattr(optax, name)()
            s_ours, s_ref = ours.init(params), ref.init(params)
            update, ref_update = self.variant(ours.update), jax.jit(ref.update)
            for i in range(5):
                kr, ki = jax.random.split(jax.random.fold_in(key, i))
                g = {"z": (jax.random.normal(kr, (4,)) + 1j * jax.random.normal(ki, (4,))).astype(jnp.complex64)}
                u_ours, s_ours = update(g, s_ours)
                u_ref, s_ref = ref_update(g, s_ref)
                assert u_ours["z"].dtype == jnp.complex64
                chex.assert_trees_all_close(u_ours, u_ref, rtol=RTOL, atol=ATOL)
            # second moments are real (|g|^2), not complex
            stats = s_ours.sum_of_squares if name == "scale_by_rss" else s_ours.nu
            assert stats["z"].dtype == jnp.float32

    def test_mu_dtype_bfloat16_close_to_optax(self):
        # optax multiplies the bfloat16 moment by b1 in bfloat16; gradtx does that product in
        # float32 before storing, so the two agree to bfloat16 precision only.
        params = make_tree(jax.random.key(0))
        ours = gradtx.scale_by_adam(mu_dtype=jnp.bfloat16)
        ref = optax.scale_by_adam(mu_dtype=jnp.bfloat16)
        s_ours, s_ref = ours.init(params), ref.init(params)
        assert s_ours.mu["w"].dtype == jnp.bfloat16 and s_ours.nu["w"].dtype == jnp.float32
        for i in range(10):
            g = make_tree(jax.random.key(i))
            u_ours, s_ours = ours.update(g, s_ours)
            u_ref, s_ref = ref.update(g, s_ref)
            assert u_ours["w"].dtype == jnp.float32
            assert s_ours.mu["w"].dtype == jnp.bfloat16
            chex.assert_trees_all_close(u_ours, u_ref, rtol=5e-2, atol=5e-2)


# --------------------------------------------------------------------------------------------
# Hand-derived references (NumPy, float64)
# --------------------------------------------------------------------------------------------

G_SEQ = [
    np.array([0.5, -1.0, 2.0, 0.0], np.float32),
    np.array([-0.25, 3.0, 1.0, 0.1], np.float32),
    np.array([1.5, -0.5, -2.0, 0.2], np.float32),
]


def _run(tx, grads):
    state = tx.init(jnp.zeros(4))
    out = []
    for g in grads:
        u, state = tx.update(jnp.asarray(g), state)
        out.append(np.asarray(u, np.float64))
    return out, state


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("b1,b2,eps,eps_root", [(0.9, 0.999, 1e-8, 0.0), (0.5, 0.8, 1e-2, 1e-3)])
def test_adam_by_hand(nesterov, b1, b2, eps, eps_root):
    got, state = _run(gradtx.scale_by_adam(b1, b2, eps, eps_root, nesterov=nesterov), G_SEQ)
    m = v = np.zeros(4)
    for t, g in enumerate(G_SEQ, start=1):
        g = g.astype(np.float64)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        if nesterov:
            m_hat = b1 * m / (1 - b1 ** (t + 1)) + (1 - b1) * g / (1 - b1**t)
        else:
            m_hat = m / (1 - b1**t)
        v_hat = v / (1 - b2**t)
        # 1 - b2**t is computed in float32 (as optax does): for b2 = 0.999 the cancellation costs
        # ~1e-5 relative accuracy, hence rtol 5e-5 against the float64 reference.
        np.testing.assert_allclose(got[t - 1], m_hat / (np.sqrt(v_hat + eps_root) + eps), rtol=5e-5, atol=ATOL)
    assert state.count.dtype == jnp.int32 and int(state.count) == 3
    np.testing.assert_allclose(state.mu, m, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(state.nu, v, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("bc_mu,bc_nu", [(True, True), (False, False)])
def test_amsgrad_by_hand(bc_mu, bc_nu):
    b1, b2, eps = 0.9, 0.99, 1e-8
    # a decreasing gradient makes the running maximum matter
    grads = [np.array([2.0, -1.0, 0.5, 1.0], np.float32), np.array([0.1, -0.1, 0.1, 3.0], np.float32), G_SEQ[2]]
    got, _ = _run(gradtx.scale_by_amsgrad(b1, b2, eps, bias_correction_mu=bc_mu, bias_correction_nu=bc_nu), grads)
    m = v = v_max = np.zeros(4)
    for t, g in enumerate(grads, start=1):
        g = g.astype(np.float64)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat = m / (1 - b1**t) if bc_mu else m
        v_eff = v / (1 - b2**t) if bc_nu else v
        v_max = np.maximum(v_max, v_eff)
        np.testing.assert_allclose(got[t - 1], m_hat / (np.sqrt(v_max) + eps), rtol=RTOL, atol=ATOL)


def test_adamax_by_hand():
    b1, b2, eps = 0.9, 0.95, 1e-8
    got, _ = _run(gradtx.scale_by_adamax(b1, b2, eps), G_SEQ)
    m = u_inf = np.zeros(4)
    for t, g in enumerate(G_SEQ, start=1):
        g = g.astype(np.float64)
        m = b1 * m + (1 - b1) * g
        u_inf = np.maximum(np.abs(g) + eps, b2 * u_inf)
        np.testing.assert_allclose(got[t - 1], m / (1 - b1**t) / u_inf, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("mode", ["hard", "smooth", "refined"])
def test_lion_by_hand(mode):
    b1, b2, beta = 0.9, 0.99, 2.0
    grads = [g * 5 for g in G_SEQ]  # large enough for "refined" to saturate somewhere
    got, state = _run(gradtx.scale_by_lion(b1, b2, mode=mode, smooth_beta=beta), grads)
    m = np.zeros(4)
    for t, g in enumerate(grads, start=1):
        g = g.astype(np.float64)
        x = (1 - b1) * g + b1 * m
        want = {"hard": np.sign(x), "smooth": np.tanh(beta * x), "refined": np.where(np.abs(x) < 1, x, np.sign(x))}[mode]
        np.testing.assert_allclose(got[t - 1], want, rtol=RTOL, atol=ATOL)
        m = b2 * m + (1 - b2) * g
    np.testing.assert_allclose(state.mu, m, rtol=RTOL, atol=ATOL)
    assert int(state.count) == 3


@pytest.mark.parametrize("eps_in_sqrt", [True, False])
@pytest.mark.parametrize("bias_correction", [True, False])
def test_rms_by_hand(eps_in_sqrt, bias_correction):
    decay, eps, init = 0.8, 1e-3, 0.25
    tx = gradtx.scale_by_rms(decay, eps, init, eps_in_sqrt=eps_in_sqrt, bias_correction=bias_correction)
    got, _ = _run(tx, G_SEQ)
    v = np.full(4, init)
    for t, g in enumerate(G_SEQ, start=1):
        g = g.astype(np.float64)
        v = decay * v + (1 - decay) * g * g
        v_hat = v / (1 - decay**t) if bias_correction else v
        want = g / np.sqrt(v_hat + eps) if eps_in_sqrt else g / (np.sqrt(v_hat) + eps)
        np.testing.assert_allclose(got[t - 1], want, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("eps_in_sqrt", [True, False])
@pytest.mark.parametrize("bias_correction", [True, False])
def test_stddev_by_hand(eps_in_sqrt, bias_correction):
    decay, eps, init = 0.8, 1e-3, 0.5
    tx = gradtx.scale_by_stddev(decay, eps, init, eps_in_sqrt=eps_in_sqrt, bias_correction=bias_correction)
    got, _ = _run(tx, G_SEQ)
    m, v = np.zeros(4), np.full(4, init)
    for t, g in enumerate(G_SEQ, start=1):
        g = g.astype(np.float64)
        m = decay * m + (1 - decay) * g
        v = decay * v + (1 - decay) * g * g
        c = (1 - decay**t) if bias_correction else 1.0
        var = np.maximum(v / c - (m / c) ** 2, 0.0)
        want = g / np.sqrt(var + eps) if eps_in_sqrt else g / (np.sqrt(var) + eps)
        # the first bias-corrected step has var = 0 up to rounding: compare with a looser atol
        atol = 1e-2 if (bias_correction and t == 1) else ATOL
        np.testing.assert_allclose(got[t - 1], want, rtol=1e-4, atol=atol)


def test_stddev_constant_gradient_is_finite():
    # With bias correction the centred variance of a constant gradient is exactly 0, which
    # rounding can push below 0; the clamp keeps the update finite (g / sqrt(eps)).
    tx = gradtx.scale_by_stddev(bias_correction=True, eps=1e-8)
    state = tx.init(jnp.zeros(3))
    for _ in range(3):
        u, state = tx.update(jnp.array([0.1, 3.3, -7.7]), state)
        chex.assert_tree_all_finite(u)


@pytest.mark.parametrize("init,eps", [(0.1, 1e-7), (0.0, 1e-3)])
def test_rss_by_hand(init, eps):
    got, _ = _run(gradtx.scale_by_rss(init, eps), G_SEQ)
    s = np.full(4, init)
    for t, g in enumerate(G_SEQ, start=1):
        g = g.astype(np.float64)
        s = s + g * g
        want = np.where(s > 0, g / np.sqrt(s + eps), 0.0)
        np.testing.assert_allclose(got[t - 1], want, rtol=RTOL, atol=ATOL)


def test_rss_zero_accumulator_gives_zero_not_nan():
    tx = gradtx.scale_by_rss(initial_accumulator_value=0.0, eps=0.0)
    u, _ = tx.update(jnp.zeros(3), tx.init(jnp.zeros(3)))
    np.testing.assert_array_equal(u, 0.0)


def test_per_leaf_functions_match_factory():
    # the per-leaf function applied to a flattened buffer gives the tree transformation's result
    tree = make_tree(jax.random.key(3))
    tx = gradtx.scale_by_adam()
    u_tree, _ = tx.update(tree, tx.init(tree))
    flat = jnp.concatenate([x.ravel() for x in jax.tree.leaves(tree)])
    count = jnp.int32(1)
    u_flat, _, _ = adam_family.adam_leaf(
        flat, jnp.zeros_like(flat), jnp.zeros_like(flat), 1 - 0.9**count, 1 - 0.999**count,
        b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0,
    )
    np.testing.assert_allclose(u_flat, jnp.concatenate([x.ravel() for x in jax.tree.leaves(u_tree)]), rtol=RTOL)


# --------------------------------------------------------------------------------------------
# Invariants
# --------------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    g=st.lists(st.floats(-1e4, 1e4, allow_subnormal=False, width=32), min_size=6, max_size=6),
    b1=st.floats(0.0, 0.99),
    b2=st.floats(0.0, 0.999),
)
def test_adam_first_step_bounded_by_one(g, b1, b2):
    tx = gradtx.scale_by_adam(b1=b1, b2=b2)
    u, _ = tx.update(jnp.asarray(g, jnp.float32), tx.init(jnp.zeros(len(g))))
    assert np.all(np.abs(np.asarray(u)) <= 1.0 + 1e-5)


@settings(max_examples=25, deadline=None)
@given(g=st.lists(st.floats(-1e3, 1e3, width=32), min_size=6, max_size=6), steps=st.integers(1, 4))
def test_lion_update_is_sign_valued(g, steps):
    tx = gradtx.scale_by_lion()
    state = tx.init(jnp.zeros(len(g)))
    for _ in range(steps):
        u, state = tx.update(jnp.asarray(g, jnp.float32), state)
        assert set(np.unique(np.asarray(u))) <= {-1.0, 0.0, 1.0}


# --------------------------------------------------------------------------------------------
# Low precision
# --------------------------------------------------------------------------------------------

LOW_PRECISION_FACTORIES = [
    ("scale_by_adam", {}),
    ("scale_by_adam", {"nesterov": True}),
    ("scale_by_amsgrad", {}),
    ("scale_by_adamax", {}),
    ("scale_by_rms", {}),
    ("scale_by_rms", {"eps_in_sqrt": False, "bias_correction": True}),
    ("scale_by_stddev", {}),
    ("scale_by_rss", {"initial_accumulator_value": 0.0}),
    ("scale_by_rss", {}),
]


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
@pytest.mark.parametrize("name,kwargs", LOW_PRECISION_FACTORIES)
def test_low_precision_zero_gradients_give_zero_updates(dtype, name, kwargs):
    params = make_tree(jax.random.key(0), dtype)
    tx = getattr(gradtx, name)(**kwargs)
    state = tx.init(params)
    for _ in range(2):
        u, state = tx.update(jax.tree.map(jnp.zeros_like, params), state)
        chex.assert_tree_all_finite(u)
        chex.assert_trees_all_equal_dtypes(u, params)
        for leaf in jax.tree.leaves(u):
            np.testing.assert_array_equal(np.asarray(leaf, np.float32), 0.0)
    chex.assert_tree_all_finite(state)


@pytest.mark.parametrize("name", ["scale_by_adam", "scale_by_rms", "scale_by_rss", "scale_by_amsgrad"])
def test_float16_updates_close_to_float32(name):
    tx = getattr(gradtx, name)()
    p32 = make_tree(jax.random.key(0))
    s16, s32 = tx.init(jax.tree.map(lambda x: x.astype(jnp.float16), p32)), tx.init(p32)
    for i in range(5):
        g32 = jax.tree.map(lambda x: 1e-3 * x, make_tree(jax.random.key(i)))  # g^2 ~ 1e-6: f16 would flush it
        u16, s16 = tx.update(jax.tree.map(lambda x: x.astype(jnp.float16), g32), s16)
        u32, s32 = tx.update(g32, s32)
        chex.assert_trees_all_close(jax.tree.map(lambda x: x.astype(jnp.float32), u16), u32, rtol=2e-2, atol=2e-3)


def test_second_moments_float32_for_low_precision_params():
    params = {"h": jnp.zeros(3, jnp.float16), "b": jnp.zeros(3, jnp.bfloat16)}
    s = gradtx.scale_by_adam().init(params)
    assert s.mu["h"].dtype == jnp.float16 and s.nu["h"].dtype == jnp.float32
    assert s.mu["b"].dtype == jnp.bfloat16 and s.nu["b"].dtype == jnp.float32
    assert gradtx.scale_by_rss().init(params).sum_of_squares["h"].dtype == jnp.float32
    assert gradtx.scale_by_rms().init(params).nu["b"].dtype == jnp.float32


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------

BAD_ARGS = [
    ("scale_by_adam", {"b1": 1.0}, ValueError, "b1"),
    ("scale_by_adam", {"b1": -0.1}, ValueError, "b1"),
    ("scale_by_adam", {"b1": "0.9"}, TypeError, "b1"),
    ("scale_by_adam", {"b2": 1.0}, ValueError, "b2"),
    ("scale_by_adam", {"b2": float("nan")}, ValueError, "b2"),
    ("scale_by_adam", {"eps": -1e-8}, ValueError, "eps"),
    ("scale_by_adam", {"eps_root": -1.0}, ValueError, "eps_root"),
    ("scale_by_adam", {"mu_dtype": jnp.int32}, TypeError, "mu_dtype"),
    ("scale_by_adam", {"mu_dtype": "not-a-dtype"}, TypeError, "mu_dtype"),
    ("scale_by_adam", {"nesterov": 1}, TypeError, "nesterov"),
    ("scale_by_amsgrad", {"b1": 1.5}, ValueError, "b1"),
    ("scale_by_amsgrad", {"b2": -1}, ValueError, "b2"),
    ("scale_by_amsgrad", {"eps": -1}, ValueError, "eps"),
    ("scale_by_amsgrad", {"eps_root": -1}, ValueError, "eps_root"),
    ("scale_by_amsgrad", {"mu_dtype": jnp.int8}, TypeError, "mu_dtype"),
    ("scale_by_amsgrad", {"bias_correction_mu": "yes"}, TypeError, "bias_correction_mu"),
    ("scale_by_amsgrad", {"bias_correction_nu": None}, TypeError, "bias_correction_nu"),
    ("scale_by_adamax", {"b1": 1.0}, ValueError, "b1"),
    ("scale_by_adamax", {"b2": 2.0}, ValueError, "b2"),
    ("scale_by_adamax", {"eps": -1.0}, ValueError, "eps"),
    ("scale_by_lion", {"b1": 1.1}, ValueError, "b1"),
    ("scale_by_lion", {"b2": -0.1}, ValueError, "b2"),
    ("scale_by_lion", {"mu_dtype": jnp.int32}, TypeError, "mu_dtype"),
    ("scale_by_lion", {"mode": "soft"}, ValueError, "mode"),
    ("scale_by_lion", {"smooth_beta": 0.0}, ValueError, "smooth_beta"),
    ("scale_by_rms", {"decay": 1.5}, ValueError, "decay"),
    ("scale_by_rms", {"decay": 1.0, "bias_correction": True}, ValueError, "decay"),
    ("scale_by_rms", {"eps": -1.0}, ValueError, "eps"),
    ("scale_by_rms", {"initial_scale": -1.0}, ValueError, "initial_scale"),
    ("scale_by_rms", {"eps_in_sqrt": 0}, TypeError, "eps_in_sqrt"),
    ("scale_by_rms", {"bias_correction": "no"}, TypeError, "bias_correction"),
    ("scale_by_stddev", {"decay": -0.5}, ValueError, "decay"),
    ("scale_by_stddev", {"eps": -1.0}, ValueError, "eps"),
    ("scale_by_stddev", {"initial_scale": -2.0}, ValueError, "initial_scale"),
    ("scale_by_rss", {"initial_accumulator_value": -0.1}, ValueError, "initial_accumulator_value"),
    ("scale_by_rss", {"eps": -1e-7}, ValueError, "eps"),
    ("scale_by_rss", {"eps": [1e-7]}, TypeError, "eps"),
]


@pytest.mark.parametrize("name,kwargs,exc,match", BAD_ARGS)
def test_bad_hyperparameters_raise(name, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        getattr(gradtx, name)(**kwargs)


def test_boundary_values_accepted():
    gradtx.scale_by_adam(b1=0.0, b2=0.0, eps=0.0, eps_root=0.0, mu_dtype=jnp.bfloat16)
    gradtx.scale_by_rms(decay=1.0)
    gradtx.scale_by_lion(b1=1.0, b2=1.0)
    gradtx.scale_by_adam(b1=np.float32(0.5), b2=jnp.asarray(0.9))


def test_traced_hyperparameters_skip_validation():
    g = jnp.array([1.0, -2.0, 0.5])

    @jax.jit
    def adam_update(b1, b2, eps):
        tx = gradtx.scale_by_adam(b1=b1, b2=b2, eps=eps)
        state = tx.init(g)
        _, state = tx.update(g, state)
        return tx.update(g, state)[0]

    @jax.jit
    def rms_update(decay):
        tx = gradtx.scale_by_rms(decay=decay)
        return tx.update(g, tx.init(g))[0]

    def eager(tx):
        state = tx.init(g)
        _, state = tx.update(g, state)
        return tx.update(g, state)[0]

    np.testing.assert_allclose(
        adam_update(0.5, 0.9, 1e-3), eager(gradtx.scale_by_adam(b1=0.5, b2=0.9, eps=1e-3)), rtol=RTOL
    )
    np.testing.assert_allclose(rms_update(0.7), gradtx.scale_by_rms(decay=0.7).update(g, gradtx.scale_by_rms(0.7).init(g))[0], rtol=RTOL)


def test_repr_and_extra_args():
    tx = gradtx.scale_by_adam(b1=0.8)
    assert repr(tx) == "scale_by_adam(b1=0.8, b2=0.999, eps=1e-08, eps_root=0.0, mu_dtype=None, nesterov=False)"
    u, _ = tx.update(jnp.ones(2), tx.init(jnp.zeros(2)), None, value=jnp.float32(3.0))
    chex.assert_tree_all_finite(u)


def test_wrong_state_is_rejected():
    tx = gradtx.scale_by_adam()
    with pytest.raises(TypeError, match="ScaleByRssState"):
        tx.update(jnp.ones(2), gradtx.scale_by_rss().init(jnp.zeros(2)))


def run_against_optax(*args, **kwargs):
    """[`_optax_parity.run_against_optax`] with the params moving by 0.01 x the optax update."""
    return _run_against_optax(*args, param_step=0.01, **kwargs)
