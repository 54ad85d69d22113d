"""Factored and layer-wise optimizers: known answers, edge cases and messages.

The bit-for-bit comparison with optax is in `tests/_rows_factored.py` (gathered by
`tests/test_optax_bitwise.py`); here are the formulas worked by hand, the cases the table cannot
reach (scalar leaves in SM3, traced `min_dim_size_to_factor`, complex params, missing params)
and the validation messages.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx
from gradtx.transforms.factored import adafactor_decay_rate, factored_dims

RTOL = 1e-6


def _close(actual, expected, rtol=RTOL, atol=0.0):
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=rtol, atol=atol)


# --------------------------------------------------------------------------------------------
# scale_by_factored_rms
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "factored", "min_dim", "expected"),
    [
        ((3, 4), True, 3, (0, 1)),
        ((4, 3), True, 3, (1, 0)),
        ((2, 5, 3), True, 3, (2, 1)),
        ((3, 4), True, 4, None),  # the second-longest axis (3) is too short
        ((3, 4), True, 128, None),
        ((3, 4), False, 1, None),
        ((7,), True, 1, None),
        ((), True, 0, None),
    ],
)
def test_factored_dims(shape, factored, min_dim, expected):
    assert factored_dims(shape, factored, min_dim) == expected


def test_decay_rate_schedule_by_hand():
    assert float(adafactor_decay_rate(0)) == 0.0  # the first moment is the first squared gradient
    _close(adafactor_decay_rate(jnp.int32(1)), 1 - 2**-0.8)
    _close(adafactor_decay_rate(9, 0.5), 1 - 10**-0.5)


def test_state_shapes_follow_the_factoring():
    params = {"w": jnp.ones((3, 4)), "b": jnp.ones(5), "s": jnp.ones(())}
    state = gradtx.scale_by_factored_rms(min_dim_size_to_factor=3).init(params)
    assert state.v_row["w"].shape == (3,) and state.v_col["w"].shape == (4,) and state.v["w"].shape == (1,)
    assert state.v["b"].shape == (5,) and state.v_row["b"].shape == (1,) and state.v_col["b"].shape == (1,)
    assert state.v["s"].shape == ()
    unfactored = gradtx.scale_by_factored_rms().init(params)
    assert unfactored.v["w"].shape == (3, 4) and unfactored.v_row["w"].shape == (1,)


def test_first_factored_step_by_hand():
    g = jnp.array([[0.5, -1.0, 2.0], [3.0, 0.25, -0.5]])
    eps = 1e-30
    tx = gradtx.scale_by_factored_rms(min_dim_size_to_factor=2)
    u, state = tx.update(g, tx.init(g), g)
    # step 0: decay 0, so the statistics are the plain means of g^2 + eps
    s = np.asarray(g, np.float64) ** 2 + eps
    row = s.mean(axis=1)  # axis 1 (length 3) is the longest: averaged out of the row statistic
    col = s.mean(axis=0)
    expected = np.asarray(g) * (row / row.mean())[:, None] ** -0.5 * col[None, :] ** -0.5
    _close(state.v_row, row)
    _close(state.v_col, col)
    _close(u, expected)
    assert int(state.count) == 1


def test_factored_estimate_is_exact_for_rank_one_squares():
    # for g_ij = a_i b_j the estimate r_i c_j / mean(r) equals g_ij^2, and moving averages of
    # multiples of one rank-one square stay rank one: the factored steps equal the full ones
    a, b = jnp.array([0.5, -2.0, 3.0]), jnp.array([1.0, -0.1, 4.0, 0.3])
    g = jnp.outer(a, b)
    factored = gradtx.scale_by_factored_rms(min_dim_size_to_factor=3, epsilon=0.0)
    full = gradtx.scale_by_factored_rms(factored=False, epsilon=0.0)
    s_factored, s_full = factored.init(g), full.init(g)
    assert s_factored.v.shape == (1,) and s_full.v.shape == (3, 4)
    for i, scale in enumerate((1.0, 2.0, 0.5)):
        u_factored, s_factored = factored.update(scale * g, s_factored, g)
        u_full, s_full = full.update(scale * g, s_full, g)
        _close(u_factored, u_full, rtol=1e-5)
        if i == 0:
            _close(u_factored, jnp.sign(g), rtol=1e-5)  # decay 0 at the first step: g / |g|


def test_unfactored_second_step_by_hand():
    g1, g2 = jnp.array([1.0, -2.0]), jnp.array([0.5, 4.0])
    tx = gradtx.scale_by_factored_rms(epsilon=0.0)
    _, state = tx.update(g1, tx.init(g1), g1)
    u, state = tx.update(g2, state, g1)
    beta = 1 - 2.0**-0.8
    v = beta * np.asarray(g1) ** 2 + (1 - beta) * np.asarray(g2) ** 2
    _close(state.v, v)
    _close(u, np.asarray(g2) / np.sqrt(v))


def test_step_offset_restarts_the_decay_schedule():
    # with step_offset = 3, the fourth update (count 3) uses decay 0: the history is forgotten
    g_old, g_new = jnp.array([10.0, -10.0]), jnp.array([1.0, 2.0])
    tx = gradtx.scale_by_factored_rms(step_offset=3, epsilon=0.0)
    state = tx.init(g_old)._replace(count=jnp.int32(3), v=jnp.array([100.0, 100.0]))
    u, state = tx.update(g_new, state, g_new)
    _close(state.v, np.asarray(g_new) ** 2)
    _close(u, [1.0, 1.0])


def test_custom_decay_rate_fn_receives_shifted_step_and_decay_rate():
    seen = []

    def decay_fn(step, rate):
        seen.append(rate)
        return jnp.asarray(0.5, jnp.float32) + 0 * step

    tx = gradtx.scale_by_factored_rms(decay_rate=0.3, decay_rate_fn=decay_fn, epsilon=0.0)
    g = jnp.array([2.0])
    state = tx.init(g)._replace(v=jnp.array([4.0]))
    _, state = tx.update(jnp.array([4.0]), state, g)
    _close(state.v, [0.5 * 4.0 + 0.5 * 16.0])
    assert seen == [0.3]


def test_factoring_is_read_from_the_state_when_min_dim_is_traced():
    # inject_hyperparams hands min_dim_size_to_factor to update as a traced array
    params = {"w": jnp.linspace(-1.0, 1.0, 12).reshape(3, 4), "b": jnp.ones(5)}
    grads = jax.tree.map(lambda x: x * 0.5 + 0.1, params)
    plain = gradtx.adafactor(1e-2, min_dim_size_to_factor=3)
    injected = gradtx.inject_hyperparams(gradtx.adafactor, static_args="dtype_momentum")(
        learning_rate=1e-2, min_dim_size_to_factor=3
    )
    state = injected.init(params)
    assert state.inner_state[0].v_row["w"].shape == (3,)
    u_plain, _ = jax.jit(plain.update)(grads, plain.init(params), params)
    u_inj, _ = jax.jit(injected.update)(grads, state, params)
    jax.tree.map(lambda a, b: _close(a, b), u_inj, u_plain)


def test_init_with_a_traced_min_dim_names_it():
    tx_of = lambda m: gradtx.scale_by_factored_rms(min_dim_size_to_factor=m)  # noqa: E731
    with pytest.raises(TypeError, match="min_dim_size_to_factor must be a concrete integer"):
        jax.jit(lambda m: tx_of(m).init(jnp.ones((3, 4))))(jnp.int32(2))


def test_factored_rms_needs_params():
    tx = gradtx.scale_by_factored_rms()
    with pytest.raises(ValueError, match="params are required"):
        tx.update(jnp.ones(3), tx.init(jnp.ones(3)))


def test_integer_params_are_refused_at_init():
    with pytest.raises(TypeError, match=r"params\['w'\] has dtype int32"):
        gradtx.adafactor(1e-2).init({"w": jnp.ones((3, 4), jnp.int32)})


# --------------------------------------------------------------------------------------------
# adafactor
# --------------------------------------------------------------------------------------------


def test_adafactor_one_step_by_hand():
    # one unfactored leaf, every stage on: rescale, clip to rms 1, lr, times rms(p), negate
    p = jnp.array([3.0, -4.0, 0.0, 1.0])
    g = jnp.array([1.0, -2.0, 0.5, 0.0])
    tx = gradtx.adafactor(0.1, clipping_threshold=0.5)
    u, _ = tx.update(g, tx.init(p), p)
    scaled = np.asarray(g) / np.sqrt(np.asarray(g) ** 2 + 1e-30)  # decay 0 at step 0: about sign(g)
    clipped = scaled / max(1.0, np.sqrt(np.mean(scaled**2)) / 0.5)
    expected = -0.1 * np.sqrt(np.mean(np.asarray(p) ** 2)) * clipped
    _close(u, expected)


def test_adafactor_state_layout_and_repr():
    tx = gradtx.adafactor(1e-2, momentum=0.9, weight_decay_rate=1e-3)
    state = tx.init({"w": jnp.ones((2, 3))})
    assert [type(s).__name__ for s in state] == [
        "FactoredState", "EmptyState", "EmptyState", "EmptyState", "EmaState", "EmptyState", "EmptyState"
    ]
    assert state[4].ema["w"].dtype == jnp.float32
    ref = optax.adafactor(1e-2, momentum=0.9, weight_decay_rate=1e-3).init({"w": jnp.ones((2, 3))})
    assert [type(s).__name__ for s in ref] == [type(s).__name__ for s in state]
    assert repr(gradtx.adafactor()).startswith("adafactor(learning_rate=None, min_dim_size_to_factor=128,")


def test_adafactor_relative_step_moves_zero_params():
    # zero params have rms 0: the step is lr * 1e-3 (the floor), not 0
    tx = gradtx.adafactor(0.5)
    p = jnp.zeros(4)
    u, _ = tx.update(jnp.ones(4), tx.init(p), p)
    _close(u, np.full(4, -0.5e-3))


# --------------------------------------------------------------------------------------------
# param-block scalings
# --------------------------------------------------------------------------------------------


def test_param_block_scalings_by_hand():
    p = {"a": jnp.array([[3.0, -4.0]]), "b": jnp.zeros(3)}
    g = {"a": jnp.array([[1.0, 2.0]]), "b": jnp.ones(3)}
    rms = gradtx.scale_by_param_block_rms(min_scale=0.1)
    u, _ = rms.update(g, rms.init(p), p)
    _close(u["a"], np.array([[1.0, 2.0]]) * np.sqrt(12.5))
    _close(u["b"], np.full(3, 0.1))
    norm = gradtx.scale_by_param_block_norm(min_scale=0.1)
    u, _ = norm.update(g, norm.init(p), p)
    _close(u["a"], [[5.0, 10.0]])
    _close(u["b"], np.full(3, 0.1))


def test_block_statistics_have_finite_gradients_at_zero():
    from gradtx.transforms.blockwise import block_norm, block_rms

    for stat in (block_rms, block_norm):
        grad = jax.grad(lambda x, stat=stat: stat(x, 1e-3))(jnp.zeros(3))
        assert np.all(np.isfinite(np.asarray(grad))) and np.all(np.asarray(grad) == 0)


def test_param_block_scalings_need_params():
    for tx in (gradtx.scale_by_param_block_rms(), gradtx.scale_by_param_block_norm()):
        with pytest.raises(ValueError, match="params are required"):
            tx.update(jnp.ones(2), tx.init(jnp.ones(2)))


# --------------------------------------------------------------------------------------------
# SM3
# --------------------------------------------------------------------------------------------


def test_sm3_two_steps_by_hand():
    g1 = jnp.array([[1.0, -2.0], [0.5, 3.0]])
    g2 = jnp.array([[0.1, 1.0], [-2.0, 0.2]])
    b1, eps = 0.5, 0.0
    tx = gradtx.scale_by_sm3(b1=b1, eps=eps)
    u1, state = tx.update(g1, tx.init(g1))
    a1 = np.asarray(g1) ** 2
    _close(state.mu[0], a1.max(axis=1))  # one accumulator per row
    _close(state.mu[1], a1.max(axis=0))  # one per column
    m1 = (1 - b1) * np.asarray(g1) / np.sqrt(a1)
    _close(u1, m1)
    u2, state = tx.update(g2, state)
    bound = np.minimum(a1.max(axis=1)[:, None], a1.max(axis=0)[None, :])
    a2 = np.asarray(g2) ** 2 + bound
    m2 = (1 - b1) * np.asarray(g2) / np.sqrt(a2) + b1 * m1
    _close(u2, m2)
    _close(state.mu[0], a2.max(axis=1))
    _close(state.nu, m2)


def test_sm3_decayed_accumulator_and_zero_gradients():
    # b2 < 1: a moving average; coordinates whose accumulator is 0 get a 0 update (not NaN)
    g = jnp.array([0.0, 2.0, 0.0])
    tx = gradtx.scale_by_sm3(b1=0.0, b2=0.75, eps=0.0)
    u, state = tx.update(g, tx.init(g))
    _close(state.mu[0], [0.0, 0.25 * 4.0, 0.0])
    _close(u, [0.0, 2.0 / np.sqrt(1.0), 0.0])


def test_sm3_scalar_leaf_is_adagrad_with_momentum():
    # optax's scale_by_sm3 cannot update a scalar leaf; gradtx keeps one scalar accumulator
    tx = gradtx.scale_by_sm3(b1=0.0, eps=0.0)
    p = {"s": jnp.float32(1.0), "v": jnp.ones(2)}
    state = tx.init(p)
    assert [m.shape for m in state.mu["s"]] == [()]
    total = 0.0
    for g in (2.0, -1.0, 3.0):
        total += g * g
        u, state = tx.update({"s": jnp.float32(g), "v": jnp.ones(2)}, state)
        _close(u["s"], g / np.sqrt(total))
    with pytest.raises(IndexError):
        ref = optax.scale_by_sm3()
        ref.update({"s": jnp.float32(1.0)}, ref.init({"s": jnp.float32(1.0)}))


def test_sm3_traced_b2_of_one_accumulates():
    g = jnp.array([[1.0, 2.0], [3.0, 4.0]])
    plain = gradtx.scale_by_sm3(b1=0.0, b2=1.0)
    injected = gradtx.inject_hyperparams(gradtx.scale_by_sm3)(b1=0.0, b2=1.0)
    s_plain, s_inj = plain.init(g), injected.init(g)
    step_plain, step_inj = jax.jit(plain.update), jax.jit(injected.update)
    for _ in range(2):
        u_plain, s_plain = step_plain(g, s_plain)
        u_inj, s_inj = step_inj(g, s_inj)
        _close(u_inj, u_plain)


def test_sm3_alias_and_schedule():
    p = jnp.array([[1.0, 2.0], [3.0, 4.0]])
    g = jnp.array([[0.5, -0.5], [1.0, 2.0]])
    const = gradtx.sm3(0.1)
    sched = gradtx.sm3(gradtx.constant_schedule(0.1))
    u_const, _ = const.update(g, const.init(p), p)
    u_sched, _ = sched.update(g, sched.init(p), p)
    _close(u_sched, u_const)
    raw, _ = gradtx.scale_by_sm3().update(g, gradtx.scale_by_sm3().init(p))
    _close(u_const, -0.1 * np.asarray(raw))


def test_sm3_and_adadelta_refuse_complex_params():
    for tx in (gradtx.scale_by_sm3(), gradtx.sm3(0.1), gradtx.scale_by_adadelta(), gradtx.adadelta(1.0)):
        with pytest.raises(ValueError, match=r"params\['z'\] is complex"):
            tx.init({"z": jnp.ones(2, jnp.complex64)})


# --------------------------------------------------------------------------------------------
# Adadelta
# --------------------------------------------------------------------------------------------


def test_adadelta_two_steps_by_hand():
    rho, eps = 0.9, 1e-6
    g1, g2 = np.array([1.0, -3.0]), np.array([0.5, 2.0])
    tx = gradtx.scale_by_adadelta(rho=rho, eps=eps)
    u1, state = tx.update(jnp.asarray(g1, jnp.float32), tx.init(jnp.zeros(2)))
    eg = (1 - rho) * g1**2
    d1 = np.sqrt(eps) / np.sqrt(eg + eps) * g1
    ex = (1 - rho) * d1**2
    _close(u1, d1, rtol=1e-5)
    u2, state = tx.update(jnp.asarray(g2, jnp.float32), state)
    eg = rho * eg + (1 - rho) * g2**2
    d2 = np.sqrt(ex + eps) / np.sqrt(eg + eps) * g2
    _close(u2, d2, rtol=1e-5)
    _close(state.e_x, rho * ex + (1 - rho) * d2**2, rtol=1e-5)


def test_adadelta_without_learning_rate_is_not_negated():
    # as optax: learning_rate=None leaves +Δ (apply_updates then ascends); pass a learning rate
    p, g = jnp.ones(2), jnp.array([1.0, -1.0])
    u_none, _ = gradtx.adadelta().update(g, gradtx.adadelta().init(p), p)
    u_one, _ = gradtx.adadelta(1.0).update(g, gradtx.adadelta(1.0).init(p), p)
    _close(u_none, -np.asarray(u_one))
    assert float(u_none[0]) > 0


# --------------------------------------------------------------------------------------------
# Fromage and LARS
# --------------------------------------------------------------------------------------------


def test_fromage_one_step_by_hand():
    lr = 0.2
    p, g = jnp.array([3.0, 4.0]), jnp.array([0.0, 2.0])
    tx = gradtx.fromage(lr)
    u, state = tx.update(g, tx.init(p), p)
    mu = 1 / np.sqrt(1 + lr**2)
    new_p = mu * (np.asarray(p) - lr * (5.0 / 2.0) * np.asarray(g))
    _close(np.asarray(p) + np.asarray(u), new_p)
    assert [type(s).__name__ for s in state] == ["EmptyState", "EmptyState", "EmptyState"]


def test_fromage_schedule_follows_the_learning_rate():
    p, g = jnp.array([3.0, 4.0]), jnp.array([0.0, 2.0])
    const, sched = gradtx.fromage(0.2), gradtx.fromage(gradtx.constant_schedule(0.2))
    u_const, _ = const.update(g, const.init(p), p)
    u_sched, _ = sched.update(g, sched.init(p), p)
    _close(u_sched, u_const)


def test_lars_one_step_by_hand_and_masks():
    lr, c, wd = 0.5, 0.01, 0.1
    p = {"w": jnp.array([3.0, 4.0]), "b": jnp.array([1.0, 1.0])}
    g = {"w": jnp.array([0.0, 2.0]), "b": jnp.array([2.0, -1.0])}
    mask = {"w": True, "b": False}
    tx = gradtx.lars(lr, weight_decay=wd, weight_decay_mask=mask, trust_coefficient=c, trust_ratio_mask=mask)
    u, _ = tx.update(g, tx.init(p), p)
    d = np.asarray(g["w"]) + wd * np.asarray(p["w"])
    ratio = c * 5.0 / np.linalg.norm(d)
    _close(u["w"], -lr * ratio * d)
    _close(u["b"], -lr * np.asarray(g["b"]))  # neither decayed nor trust-scaled


def test_trust_ratio_state_has_optax_name():
    assert gradtx.ScaleByTrustRatioState is gradtx.EmptyState
    assert optax.ScaleByTrustRatioState is optax.EmptyState
    tx = gradtx.scale_by_trust_ratio()
    assert isinstance(tx.init(jnp.ones(2)), gradtx.ScaleByTrustRatioState)


# --------------------------------------------------------------------------------------------
# messages
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: gradtx.adafactor(clipping_threshold=0.0),
         r"adafactor: clipping_threshold must be in \(0, inf\), got 0.0"),
        (lambda: gradtx.adafactor(min_dim_size_to_factor=-1),
         r"adafactor: min_dim_size_to_factor must be an integer >= 0, got -1"),
        (lambda: gradtx.adafactor(dtype_momentum=jnp.int8), r"adafactor: dtype_momentum must be None or a floating"),
        (lambda: gradtx.scale_by_factored_rms(decay_rate_fn="pow"), r"decay_rate_fn must be a callable"),
        (lambda: gradtx.sm3(0.1, momentum=2.0), r"sm3: momentum must be in \[0, 1\], got 2.0"),
        (lambda: gradtx.scale_by_adadelta(rho=-0.1), r"scale_by_adadelta: rho must be in \[0, 1\], got -0.1"),
        (lambda: gradtx.fromage(-1.0), r"fromage: learning_rate must be in \[0, inf\), got -1.0"),
        (lambda: gradtx.lars(0.1, trust_coefficient=-1.0),
         r"lars: trust_coefficient must be in \[0, inf\), got -1.0"),
    ],
)
def test_messages_name_function_argument_value_and_range(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make()
