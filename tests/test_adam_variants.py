"""Adam variants: what the bit-for-bit table cannot show.

Known answers computed from each update rule by hand (NumPy, float64), the RAdam switch between
momentum and rectified steps, NovoGrad's layer-wise statistics and its need for params,
`optimistic_adam`'s deprecation (the same warning as optax), state layouts, low precision and the
validation messages.
"""

import itertools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx

RTOL = 1e-6

G = [np.array([0.5, -1.0, 2.0]), np.array([0.25, 0.0, -3.0]), np.array([-1.0, 1.5, 0.5]),
     np.array([2.0, -0.5, 1.0]), np.array([0.1, 0.2, -0.3]), np.array([-0.7, 0.9, 1.1]),
     np.array([1.3, -1.2, 0.4])]


def trajectory(tx, grads=G, params=None):
    """The updates of `tx` for the gradients `grads` (params fixed at `params`, zeros by default)."""
    params = jnp.zeros(3) if params is None else jnp.asarray(params, jnp.float32)
    state = tx.init(params)
    step = jax.jit(tx.update)
    out = []
    for g in grads:
        u, state = step(jnp.asarray(g, jnp.float32), state, params)
        out.append(np.asarray(u, np.float64))
    return out, state


def close(ours, expected):
    for t, (a, b) in enumerate(zip(ours, expected, strict=True)):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=1e-7, err_msg=f"step {t + 1}")


# --------------------------------------------------------------------------------------------
# known answers
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("nesterov", [False, True])
def test_belief_by_hand(nesterov):
    b1, b2, eps, eps_root = 0.8, 0.9, 1e-3, 1e-4
    m = s = np.zeros(3)
    expected = []
    for t, g in enumerate(G, start=1):
        m = b1 * m + (1 - b1) * g
        s = b2 * s + (1 - b2) * (g - m) ** 2 + eps_root
        m_hat = b1 * m / (1 - b1 ** (t + 1)) + (1 - b1) * g / (1 - b1**t) if nesterov else m / (1 - b1**t)
        expected.append(m_hat / (np.sqrt(s / (1 - b2**t)) + eps))
    ours, state = trajectory(gradtx.scale_by_belief(b1, b2, eps, eps_root, nesterov=nesterov))
    close(ours, expected)
    np.testing.assert_allclose(state.nu, s, rtol=RTOL)  # eps_root accumulates in the state


def test_yogi_by_hand():
    b1, b2, eps, eps_root, v0 = 0.8, 0.9, 1e-3, 1e-6, 0.5
    m, v = np.full(3, v0), np.full(3, v0)
    expected = []
    for t, g in enumerate(G, start=1):
        m = b1 * m + (1 - b1) * g
        v = v - (1 - b2) * np.sign(v - g * g) * g * g
        expected.append(m / (1 - b1**t) / (np.sqrt(v / (1 - b2**t) + eps_root) + eps))
    ours, state = trajectory(gradtx.scale_by_yogi(b1, b2, eps, eps_root, v0))
    close(ours, expected)
    assert type(state).__name__ == "ScaleByAdamState"


@pytest.mark.parametrize("threshold", [4.0, 5.0, 6.5])
def test_radam_switches_from_momentum_to_rectified_steps(threshold):
    b1, b2, eps = 0.9, 0.99, 1e-8
    rho_inf = 2 / (1 - b2) - 1
    m = v = np.zeros(3)
    expected, rectified = [], []
    for t, g in enumerate(G, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
        rho = rho_inf - 2 * t * b2**t / (1 - b2**t)
        rectified.append(rho >= threshold)
        if rho >= threshold:
            r = np.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
            expected.append(r * m_hat / (np.sqrt(v_hat) + eps))
        else:
            expected.append(m_hat)
    assert any(rectified) and not all(rectified)  # both regimes are exercised
    ours, _ = trajectory(gradtx.scale_by_radam(b1, b2, eps, threshold=threshold))
    # rho_t = rho_inf - (about rho_inf - t) cancels in float32 (optax computes it the same way):
    # the rectifier is good to about 1e-5 relative, the momentum steps to float32 rounding
    for t, (a, b, r) in enumerate(zip(ours, expected, rectified, strict=True)):
        np.testing.assert_allclose(a, b, rtol=1e-4 if r else RTOL, atol=1e-7, err_msg=f"step {t + 1}")


def test_adan_by_hand():
    b1, b2, b3, eps, eps_root = 0.9, 0.8, 0.95, 1e-6, 1e-8
    m = v = n = np.zeros(3)
    prev = None
    expected = []
    for t, g in enumerate(G, start=1):
        d = np.zeros(3) if prev is None else g - prev
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * d
        n = b3 * n + (1 - b3) * (g + (1 - b2) * d) ** 2
        c1, c2, c3 = 1 - b1**t, 1 - b2**t, 1 - b3**t
        expected.append((m / c1 + (1 - b2) * v / c2) / (np.sqrt(n / c3 + eps_root) + eps))
        prev = g
    ours, state = trajectory(gradtx.scale_by_adan(b1, b2, b3, eps, eps_root))
    close(ours, expected)
    np.testing.assert_array_equal(state.g, np.float32(G[-1]))
    assert int(state.t) == len(G)


def test_novograd_by_hand_layerwise_with_weight_decay():
    b1, b2, eps, wd = 0.5, 0.9, 1e-6, 0.1
    params = {"a": np.array([1.0, -2.0]), "b": np.array([0.5])}
    grads = [{"a": np.array([3.0, 4.0]), "b": np.array([-2.0])},
             {"a": np.array([1.0, -1.0]), "b": np.array([0.5])},
             {"a": np.array([0.0, 2.0]), "b": np.array([4.0])}]
    tx = gradtx.scale_by_novograd(b1, b2, eps, weight_decay=wd)
    state = tx.init(jax.tree.map(jnp.asarray, params))
    assert jax.tree.map(jnp.shape, state.nu) == {"a": (), "b": ()}  # one scalar per leaf
    m = {k: np.zeros_like(p) for k, p in params.items()}
    v = {}
    for t, g in enumerate(grads, start=1):
        u, state = tx.update(jax.tree.map(jnp.asarray, g), state, jax.tree.map(jnp.asarray, params))
        for k in params:
            sq = float(np.sum(g[k] ** 2))
            v[k] = sq if t == 1 else b2 * v[k] + (1 - b2) * sq
            m[k] = (b1 * m[k] if t > 1 else 0) + g[k] / (np.sqrt(v[k]) + eps) + wd * params[k]
            np.testing.assert_allclose(u[k], m[k], rtol=RTOL, err_msg=f"{k} step {t}")
            np.testing.assert_allclose(state.nu[k], v[k], rtol=RTOL)


def test_optimistic_gradient_by_hand():
    alpha, beta = 0.7, 0.3
    expected = [alpha * G[0]] + [(alpha + beta) * g - beta * p for p, g in itertools.pairwise(G)]
    ours, state = trajectory(gradtx.scale_by_optimistic_gradient(alpha, beta))
    close(ours, expected)
    assert not bool(state.is_initial_step)


def test_adamaxw_adds_decoupled_weight_decay_to_adamax():
    params = jnp.array([1.0, -2.0, 0.5])
    plain, _ = trajectory(gradtx.adamax(0.1), params=params)
    decayed, _ = trajectory(gradtx.adamaxw(0.1, weight_decay=0.2), params=params)
    for a, b in zip(plain, decayed, strict=True):
        np.testing.assert_allclose(b, a - 0.1 * 0.2 * np.asarray(params), rtol=1e-6)


# --------------------------------------------------------------------------------------------
# optimistic_adam: optax's deprecated alias
# --------------------------------------------------------------------------------------------


def test_optimistic_adam_warns_as_optax_does():
    with warnings.catch_warnings(record=True) as ours:
        warnings.simplefilter("always")
        gradtx.optimistic_adam(1e-2)
    with warnings.catch_warnings(record=True) as theirs:
        warnings.simplefilter("always")
        optax.optimistic_adam(1e-2)
    assert [(w.category, str(w.message)) for w in ours] == [(w.category, str(w.message)) for w in theirs]
    assert ours[0].category is DeprecationWarning
    assert ours[0].filename == __file__  # attributed to the caller's line


def test_optimistic_adam_refuses_schedules_as_optax_does():
    schedule = gradtx.linear_schedule(1e-2, 1e-3, 10)
    with pytest.warns(DeprecationWarning):
        with pytest.raises(ValueError, match="optimistic_adam_v2"):
            optax.optimistic_adam(schedule)
    with pytest.warns(DeprecationWarning):
        with pytest.raises(ValueError, match=r"learning_rate.*optimistic_adam_v2"):
            gradtx.optimistic_adam(schedule)


def test_optimistic_adam_is_v2_with_the_learning_rate_folded_in():
    with pytest.warns(DeprecationWarning):
        old = gradtx.optimistic_adam(0.05)  # optimism defaults to the learning rate
    new = gradtx.optimistic_adam_v2(1.0, alpha=0.05, beta=0.05)
    a, _ = trajectory(old)
    b, _ = trajectory(new)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert "optimism=None" in repr(old)


def test_optimistic_adam_v2_arguments_are_keyword_only():
    with pytest.raises(TypeError):
        gradtx.optimistic_adam_v2(1e-2, 1.0)  # type: ignore[misc]


# --------------------------------------------------------------------------------------------
# NovoGrad's params, state layouts, low precision
# --------------------------------------------------------------------------------------------


def test_novograd_update_needs_params():
    tx = gradtx.novograd(1e-2)
    state = tx.init(jnp.zeros(3))
    with pytest.raises(ValueError, match="params are required"):
        tx.update(jnp.ones(3), state)


def test_novograd_mu_dtype_gives_updates_of_that_dtype_as_optax():
    params = jnp.ones(4)
    for lib in (gradtx, optax):
        tx = lib.scale_by_novograd(mu_dtype=jnp.bfloat16)
        u, state = tx.update(jnp.arange(4.0), tx.init(params), params)
        assert u.dtype == jnp.bfloat16 and state.mu.dtype == jnp.bfloat16, lib.__name__


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [("scale_by_belief", {}), ("scale_by_adan", {}), ("scale_by_novograd", {}),
     ("scale_by_yogi", {}), ("scale_by_radam", {}), ("scale_by_optimistic_gradient", {})],
)
def test_state_layout_is_optax(name, kwargs):
    params = {"w": jnp.ones((2, 3)), "b": jnp.zeros(3)}
    ours, theirs = getattr(gradtx, name)(**kwargs).init(params), getattr(optax, name)(**kwargs).init(params)
    assert type(ours).__name__ == type(theirs).__name__
    assert ours._fields == theirs._fields
    assert jax.tree.map(lambda x: (x.shape, x.dtype), ours) == jax.tree.map(lambda x: (x.shape, x.dtype), theirs)


@pytest.mark.parametrize(
    "make",
    [lambda: gradtx.adabelief(1e-3), lambda: gradtx.adan(1e-3), lambda: gradtx.radam(1e-3),
     lambda: gradtx.yogi(1e-3), lambda: gradtx.novograd(1e-3), lambda: gradtx.optimistic_adam_v2(1e-3)],
    ids=["adabelief", "adan", "radam", "yogi", "novograd", "optimistic_adam_v2"],
)
def test_zero_bfloat16_gradients_give_finite_bfloat16_updates(make):
    # the second moments are kept in float32 for bfloat16 params; the updates come back bfloat16
    params = jnp.ones(5, jnp.bfloat16)
    tx = make()
    state = tx.init(params)
    for _ in range(3):
        u, state = jax.jit(tx.update)(jnp.zeros(5, jnp.bfloat16), state, params)
        assert u.dtype == jnp.bfloat16
        assert np.all(np.isfinite(np.asarray(u, np.float32)))


def test_complex_gradients_keep_real_second_moments():
    params = jnp.zeros(3, jnp.complex64)
    g = jnp.array([1 + 1j, -2j, 0.5], jnp.complex64)
    for tx in (gradtx.scale_by_belief(), gradtx.scale_by_yogi(), gradtx.scale_by_adan(), gradtx.scale_by_radam()):
        state = tx.init(params)
        u, state = tx.update(g, state)
        assert u.dtype == jnp.complex64 and np.all(np.isfinite(np.asarray(u)))
        second = state.n if hasattr(state, "n") else state.nu
        assert second.dtype == jnp.float32


# --------------------------------------------------------------------------------------------
# validation and printing
# --------------------------------------------------------------------------------------------


def test_radam_threshold_below_4_is_refused_because_optax_returns_nan():
    # the reason for the check: with threshold 3, optax's step 3 has rho ~ 3 and r = sqrt(< 0)
    tx = optax.radam(1e-2, threshold=3.0)
    params = jnp.ones(2)
    state = tx.init(params)
    finite = []
    for _ in range(4):
        u, state = tx.update(jnp.ones(2), state, params)
        finite.append(bool(np.all(np.isfinite(u))))
    assert not all(finite)
    with pytest.raises(ValueError, match=r"radam: threshold must be in \[4, inf\), got 3.0"):
        gradtx.radam(1e-2, threshold=3.0)
    gradtx.radam(1e-2, threshold=4.0)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: gradtx.adan(1e-3, b2=1.0), ValueError, r"adan: b2 must be in \[0, 1\), got 1.0"),
        (lambda: gradtx.scale_by_yogi(eps=float("inf")), ValueError, "scale_by_yogi: eps must be a finite"),
        (lambda: gradtx.novograd(1e-3, weight_decay=lambda c: 0.1), TypeError, "novograd: weight_decay must be a real"),
        (lambda: gradtx.optimistic_gradient_descent(1e-3, alpha=lambda c: 1.0), TypeError,
         "optimistic_gradient_descent: alpha must be a real"),
        (lambda: gradtx.adabelief(1e-3, nesterov="yes"), TypeError, "adabelief: nesterov must be True or False"),
        (lambda: gradtx.scale_by_novograd(b2=-0.5), ValueError, r"scale_by_novograd: b2 must be in \[0, 1\]"),
    ],
)
def test_validation_messages(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_traced_hyperparameters_pass_validation():
    @jax.jit
    def run(b1, threshold):
        tx = gradtx.radam(1e-2, b1=b1, threshold=threshold)
        u, _ = tx.update(jnp.ones(2), tx.init(jnp.zeros(2)), jnp.zeros(2))
        return u

    assert np.all(np.isfinite(run(0.9, 5.0)))


def test_reprs_show_every_argument():
    assert repr(gradtx.radam(1e-3)) == (
        "radam(learning_rate=0.001, b1=0.9, b2=0.999, eps=1e-08, eps_root=0.0, threshold=5.0, nesterov=False)"
    )
    assert repr(gradtx.scale_by_adan()) == "scale_by_adan(b1=0.98, b2=0.92, b3=0.99, eps=1e-08, eps_root=0.0)"
    assert gradtx.hyperparams(gradtx.novograd(1e-3))["b2"] == 0.25


@pytest.mark.parametrize("name", ["adabelief", "adamaxw", "adan", "radam", "yogi", "novograd",
                                  "optimistic_gradient_descent", "optimistic_adam_v2"])
def test_python_scalar_leaves_as_jit_treats_them(name):
    # optax's yogi and novograd fail on a Python-scalar params leaf; gradtx treats it as jit does
    params = {"w": 1.0, "b": jnp.ones(2)}
    tx = getattr(gradtx, name)(0.1)
    state = tx.init(params)
    eager, _ = tx.update({"w": 2.0, "b": jnp.ones(2)}, state, params)
    jitted, new_state = jax.jit(tx.update)({"w": 2.0, "b": jnp.ones(2)}, state, params)
    np.testing.assert_allclose(float(eager["w"]), float(jitted["w"]), rtol=1e-6)
    assert jax.tree.map(jnp.result_type, new_state) == jax.tree.map(jnp.result_type, state)
