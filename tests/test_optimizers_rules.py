"""Optimizer aliases: hand-computed update rules, invariants, convergence and argument checks."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import gradtx

# ------------------------------------------------------------------------------------------
# three steps against NumPy (float64) written from the published update rules
# ------------------------------------------------------------------------------------------

P0 = np.array([0.5, -1.0, 2.0, 0.0])
GRADS = [np.array([0.1, -0.3, 0.2, 1.0]), np.array([-0.2, 0.4, 0.0, 0.5]), np.array([0.3, 0.1, -0.5, -2.0])]


def _numpy_sgd(lr, momentum=None, nesterov=False):
    p, t = P0.copy(), np.zeros_like(P0)
    out = []
    for g in GRADS:
        if momentum is None:
            step = g
        else:
            t = g + momentum * t
            step = g + momentum * t if nesterov else t
        p = p - lr * step
        out.append(p.copy())
    return out


def _numpy_adagrad(lr, g0=0.1, eps=1e-7):
    p, acc = P0.copy(), np.full_like(P0, g0)
    out = []
    for g in GRADS:
        acc = acc + g**2
        p = p - lr * g / np.sqrt(acc + eps)
        out.append(p.copy())
    return out


def _numpy_rmsprop(lr, decay=0.9, eps=1e-8, centered=False):
    p, nu, mu = P0.copy(), np.zeros_like(P0), np.zeros_like(P0)
    out = []
    for g in GRADS:
        nu = decay * nu + (1 - decay) * g**2
        mu = decay * mu + (1 - decay) * g
        var = nu - mu**2 if centered else nu
        p = p - lr * g / np.sqrt(var + eps)
        out.append(p.copy())
    return out


def _numpy_adam(lr, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0):
    p, m, v = P0.copy(), np.zeros_like(P0), np.zeros_like(P0)
    out = []
    for t, g in enumerate(GRADS, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
        p = p - lr * (m_hat / (np.sqrt(v_hat) + eps) + weight_decay * p)
        out.append(p.copy())
    return out


HAND = [
    ("sgd", lambda: gradtx.sgd(0.1), lambda: _numpy_sgd(0.1)),
    ("momentum", lambda: gradtx.sgd(0.1, momentum=0.9), lambda: _numpy_sgd(0.1, 0.9)),
    ("nesterov", lambda: gradtx.sgd(0.1, momentum=0.9, nesterov=True), lambda: _numpy_sgd(0.1, 0.9, True)),
    ("adagrad", lambda: gradtx.adagrad(0.5), lambda: _numpy_adagrad(0.5)),
    ("rmsprop", lambda: gradtx.rmsprop(0.01), lambda: _numpy_rmsprop(0.01)),
    ("rmsprop_centered", lambda: gradtx.rmsprop(0.01, decay=0.8, eps=1e-4, centered=True),
     lambda: _numpy_rmsprop(0.01, decay=0.8, eps=1e-4, centered=True)),
    ("adam", lambda: gradtx.adam(0.01), lambda: _numpy_adam(0.01)),
    ("adam_betas", lambda: gradtx.adam(0.05, b1=0.5, b2=0.75, eps=1e-3),
     lambda: _numpy_adam(0.05, b1=0.5, b2=0.75, eps=1e-3)),
    ("adamw", lambda: gradtx.adamw(0.01, weight_decay=0.5), lambda: _numpy_adam(0.01, weight_decay=0.5)),
]


class HandComputedTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_three_steps_match_numpy(self):
        for case, make, reference in HAND:
            tx = make()
            update = self.variant(tx.update)
            params = jnp.asarray(P0, jnp.float32)
            state = tx.init(params)
            for step, (g, expected) in enumerate(zip(GRADS, reference(), strict=True)):
                updates, state = update(jnp.asarray(g, jnp.float32), state, params)
                params = gradtx.apply_updates(params, updates)
                np.testing.assert_allclose(params, expected, rtol=1e-5, atol=1e-6,
                                           err_msg=f"{case}, step {step}")


def test_schedule_first_step_uses_lr_at_zero():
    sched = gradtx.linear_schedule(0.3, 0.0, transition_steps=10)  # 0.3, 0.27, 0.24, ...
    g = jnp.array([1.0, -2.0])
    for make in (lambda lr: gradtx.sgd(lr), lambda lr: gradtx.sgd(lr, momentum=0.5)):
        tx = make(sched)
        state = tx.init(g)
        first, state = tx.update(g, state, g)
        np.testing.assert_allclose(first, -0.3 * g, rtol=1e-6)
        second, _ = tx.update(g, state, g)
        momentum = gradtx.hyperparams(tx)["momentum"] or 0.0
        np.testing.assert_allclose(second, -0.27 * (g + momentum * g), rtol=1e-6)
    # Adam's first direction is sign(g) (up to eps), so the first step is -lr(0)·sign(g).
    tx = gradtx.adam(sched)
    first, _ = tx.update(g, tx.init(g), g)
    np.testing.assert_allclose(first, -0.3 * jnp.sign(g), rtol=2e-5)


# ------------------------------------------------------------------------------------------
# invariants
# ------------------------------------------------------------------------------------------

_arrays = hnp.arrays(np.float32, 5, elements=st.floats(-1e3, 1e3, width=32, allow_subnormal=False))


@settings(max_examples=25, deadline=None)
@given(params=_arrays, seed=st.integers(0, 2**16), momentum=st.one_of(st.none(), st.floats(0.0, 1.0)),
       nesterov=st.booleans())
def test_sgd_with_zero_learning_rate_is_the_identity(params, seed, momentum, nesterov):
    nesterov = nesterov and momentum is not None
    tx = gradtx.sgd(0.0, momentum=momentum, nesterov=nesterov)
    rng = np.random.default_rng(seed)
    p = jnp.asarray(params)
    state = tx.init(p)
    for _ in range(3):
        g = jnp.asarray(rng.normal(scale=100.0, size=params.shape), jnp.float32)
        updates, state = tx.update(g, state, p)
        p = gradtx.apply_updates(p, updates)
    chex.assert_trees_all_equal(p, jnp.asarray(params))


@settings(max_examples=40, deadline=None)
@given(grads=hnp.arrays(np.float32, 8,
                        elements=st.one_of(st.floats(-1e4, 1e4, width=32), st.floats(-2.0**-20, 2.0**-20, width=32))),
       lr=st.floats(1e-4, 1.0), b1=st.floats(0.0, 0.99), b2=st.floats(0.0, 0.999))
def test_adam_first_step_is_at_most_the_learning_rate(grads, lr, b1, b2):
    # First step: m̂ = g and v̂ = g², so |Δp| = lr·|g|/(|g| + eps) <= lr. In float32 the bias
    # correction 1 - b1 uses b1 rounded to float32, a relative error of up to ~3e-8/(1 - b1)
    # (1.3e-5 for b1 = 0.999, in optax too); b1 <= 0.99 keeps it well inside the 1e-5 margin.
    tx = gradtx.adam(lr, b1=b1, b2=b2)
    params = jnp.ones_like(jnp.asarray(grads))
    updates, _ = tx.update(jnp.asarray(grads), tx.init(params), params)
    chex.assert_tree_all_finite(updates)
    assert np.all(np.abs(np.asarray(updates)) <= lr * (1 + 1e-5))


# ------------------------------------------------------------------------------------------
# convergence: a convex quadratic and the 2-D Rosenbrock function, optimised together
# (separate leaves of one params tree, so one compilation per optimizer)
# ------------------------------------------------------------------------------------------

_A = jnp.asarray(np.diag(np.linspace(1.0, 10.0, 6)) + 0.1, jnp.float32)  # SPD, condition ~ 9
_C = jnp.arange(1.0, 7.0, dtype=jnp.float32) / 3


def _quadratic(x):
    d = x - _C
    return 0.5 * d @ _A @ d


def _rosenbrock(z):
    return (1 - z[0]) ** 2 + 100 * (z[1] - z[0] ** 2) ** 2


def _loss(p):
    return _quadratic(p["quad"]) + _rosenbrock(p["rosen"])


CONVERGENCE = [
    ("sgd", lambda: gradtx.sgd(1e-3)),
    ("sgd_momentum", lambda: gradtx.sgd(1e-3, momentum=0.9)),
    ("sgd_nesterov", lambda: gradtx.sgd(1e-3, momentum=0.9, nesterov=True)),
    ("adagrad", lambda: gradtx.adagrad(0.5)),
    ("rmsprop", lambda: gradtx.rmsprop(3e-3)),
    ("adam", lambda: gradtx.adam(0.02)),
    ("adam_schedule", lambda: gradtx.adam(gradtx.warmup_cosine_decay_schedule(0.0, 0.03, 50, 1000, 1e-3))),
    ("adamw", lambda: gradtx.adamw(0.02)),
    ("nadam", lambda: gradtx.nadam(0.02)),
    ("nadamw", lambda: gradtx.nadamw(0.02)),
    ("amsgrad", lambda: gradtx.amsgrad(0.1)),
    ("adamax", lambda: gradtx.adamax(0.1)),
    ("lion", lambda: gradtx.lion(3e-3, weight_decay=0.0)),
    ("lamb", lambda: gradtx.lamb(0.02)),
]


@pytest.mark.parametrize("make", [c[1] for c in CONVERGENCE], ids=[c[0] for c in CONVERGENCE])
def test_decreases_quadratic_and_rosenbrock(make):
    tx = make()
    start = {"quad": jnp.zeros(6, jnp.float32), "rosen": jnp.array([-1.2, 1.0], jnp.float32)}

    @jax.jit
    def run(params):
        def body(carry, _):
            p, state = carry
            updates, state = tx.update(jax.grad(_loss)(p), state, p)
            return (gradtx.apply_updates(p, updates), state), None

        (params, _), _ = jax.lax.scan(body, (params, tx.init(params)), None, length=1000)
        return params

    final = run(start)
    chex.assert_tree_all_finite(final)
    q0, r0 = float(_quadratic(start["quad"])), float(_rosenbrock(start["rosen"]))
    assert float(_quadratic(final["quad"])) < 1e-3 * q0
    assert float(_rosenbrock(final["rosen"])) < 0.1 * r0


# ------------------------------------------------------------------------------------------
# repr, hyper-parameters, misuse
# ------------------------------------------------------------------------------------------


def test_repr_and_hyperparams():
    assert repr(gradtx.adam(0.003)) == (
        "adam(learning_rate=0.003, b1=0.9, b2=0.999, eps=1e-08, eps_root=0.0, mu_dtype=None, nesterov=False)"
    )
    assert repr(gradtx.nadam(0.1)).endswith("nesterov=True)")
    assert repr(gradtx.sgd(0.1, 0.9)) == "sgd(learning_rate=0.1, momentum=0.9, nesterov=False, accumulator_dtype=None)"
    assert gradtx.hyperparams(gradtx.lion(1e-4))["weight_decay"] == 1e-3
    assert gradtx.hyperparams(gradtx.adamw(1e-3))["weight_decay"] == 1e-4
    sched_repr = repr(gradtx.sgd(gradtx.cosine_decay_schedule(0.1, 10)))
    assert sched_repr.startswith("sgd(learning_rate=cosine_decay_schedule(init_value=0.1, decay_steps=10")


BAD = [
    (lambda: gradtx.sgd(0.1, nesterov=True), ValueError, "nesterov.*momentum"),
    (lambda: gradtx.rmsprop(0.1, nesterov=True), ValueError, "nesterov.*momentum"),
    (lambda: gradtx.sgd(0.1, momentum=-0.1), ValueError, r"momentum must be in \[0, 1\], got -0.1"),
    (lambda: gradtx.sgd(0.1, momentum=1.5), ValueError, "momentum"),
    (lambda: gradtx.sgd(0.1, momentum=0.9, nesterov=1), TypeError, "nesterov"),
    (lambda: gradtx.sgd(-0.1), ValueError, r"sgd: learning_rate must be in \[0, inf\), got -0.1"),
    (lambda: gradtx.sgd(float("nan")), ValueError, "learning_rate"),
    (lambda: gradtx.adam("0.1"), TypeError, "learning_rate must be a number or a schedule"),
    (lambda: gradtx.adam(-1e-3), ValueError, "adam: learning_rate"),
    (lambda: gradtx.adam(0.1, b1=1.0), ValueError, r"adam: b1 must be in \[0, 1\), got 1.0"),
    (lambda: gradtx.adam(0.1, b2=-0.5), ValueError, "b2"),
    (lambda: gradtx.adam(0.1, eps=-1e-8), ValueError, "eps"),
    (lambda: gradtx.adam(0.1, eps_root=-1.0), ValueError, "eps_root"),
    (lambda: gradtx.adam(0.1, mu_dtype=jnp.int32), TypeError, "mu_dtype"),
    (lambda: gradtx.adam(0.1, nesterov="yes"), TypeError, "nesterov"),
    (lambda: gradtx.adamw(0.1, weight_decay=-1e-4), ValueError, "adamw: weight_decay"),
    (lambda: gradtx.nadamw(0.1, b1=2.0), ValueError, "nadamw: b1"),
    (lambda: gradtx.amsgrad(0.1, bias_correction_mu=1), TypeError, "bias_correction_mu"),
    (lambda: gradtx.adamax(0.1, b2=1.0), ValueError, "adamax: b2"),
    (lambda: gradtx.adagrad(0.1, initial_accumulator_value=-1.0), ValueError, "initial_accumulator_value"),
    (lambda: gradtx.rmsprop(0.1, decay=1.5), ValueError, "rmsprop: decay"),
    (lambda: gradtx.rmsprop(0.1, decay=1.0, bias_correction=True), ValueError, "decay"),
    (lambda: gradtx.rmsprop(0.1, centered="yes"), TypeError, "centered"),
    (lambda: gradtx.rmsprop(0.1, initial_scale=-1.0), ValueError, "initial_scale"),
    (lambda: gradtx.lion(0.1, b1=1.5), ValueError, "lion: b1"),
    (lambda: gradtx.lion(0.1, weight_decay=-0.1), ValueError, "weight_decay"),
    (lambda: gradtx.lamb(0.1, eps=-1.0), ValueError, "lamb: eps"),
    (lambda: gradtx.sgd(0.1, momentum=0.9, accumulator_dtype="int8"), TypeError, "accumulator_dtype"),
]


@pytest.mark.parametrize(("make", "error", "match"), BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_bad_arguments_raise_naming_the_argument(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_weight_decay_needs_params_and_state_must_match():
    params = {"w": jnp.ones(3)}
    tx = gradtx.adamw(0.1)
    with pytest.raises(ValueError, match="params"):
        tx.update(params, tx.init(params))
    with pytest.raises(TypeError, match="state"):
        tx.update(params, gradtx.sgd(0.1, momentum=0.9).init(params), params)
    with pytest.raises(ValueError, match="shape"):
        gradtx.adam(0.1).update({"w": jnp.ones(4)}, gradtx.adam(0.1).init(params))


def test_bfloat16_buffers_are_kept():
    params = {"w": jnp.ones(3)}
    tx = gradtx.adam(0.1, mu_dtype=jnp.bfloat16)
    _, state = tx.update(params, tx.init(params))
    assert state[0].mu["w"].dtype == jnp.bfloat16
    tx = gradtx.sgd(0.1, momentum=0.9, accumulator_dtype=jnp.bfloat16)
    _, state = tx.update(params, tx.init(params))
    assert state[0].trace["w"].dtype == jnp.bfloat16
