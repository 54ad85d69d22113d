"""Learning-rate-free optimizers of `gradtx.contrib` (Prodigy, D-Adaptation AdamW).

The table (`tests/_rows_contrib_lr_free.py`) shows them bit-identical to `optax.contrib`. Here:
the contract properties that `tests/test_contract.py` checks for top-level aliases (these live in
`gradtx.contrib` only), known answers of the first steps computed by hand from the formulas, and
the `params` requirement.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from test_contract import _minimize, _parabola_start, _steps, parabola, rosenbrock

import gradtx
from gradtx import contrib

FACTORIES = {
    "prodigy": lambda: contrib.prodigy(),
    "dadapt_adamw": lambda: contrib.dadapt_adamw(),
}
ITEMS = list(FACTORIES.items())
IDS = list(FACTORIES)


def test_exported_from_contrib_only():
    for name in ("prodigy", "dadapt_adamw", "ProdigyState", "DAdaptAdamWState"):
        assert name in contrib.__all__
        assert not hasattr(gradtx, name)


@pytest.mark.parametrize(("name", "make"), ITEMS, ids=IDS)
def test_converges_on_a_parabola_and_progresses_on_rosenbrock(name, make):
    start, end = _minimize(make(), parabola, _parabola_start(), 300)
    assert np.isfinite(end) and end <= 0.05 * start, f"{name}: parabola loss {start} -> {end}"
    start, end = _minimize(make(), rosenbrock, {"xy": jnp.array([-0.5, 0.8])}, 500)
    assert np.isfinite(end) and end <= 0.5 * start, f"{name}: Rosenbrock loss {start} -> {end}"


@pytest.mark.parametrize(("name", "make"), ITEMS, ids=IDS)
def test_jit_equals_eager_compiles_once_and_keeps_bfloat16(name, make):
    eager, _ = _steps(make(), _parabola_start(), 3, jit=False)
    jitted, step = _steps(make(), _parabola_start(), 3, jit=True)
    for a, b in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6, err_msg=name)
    assert step._cache_size() == 1
    out, _ = _steps(make(), _parabola_start(jnp.bfloat16), 2, jit=True)
    for leaf in jax.tree.leaves(out):
        assert leaf.dtype == jnp.bfloat16 and np.all(np.isfinite(np.asarray(leaf, np.float32))), name


@pytest.mark.parametrize(("name", "make"), ITEMS, ids=IDS)
def test_runs_under_inject_hyperparams(name, make):
    factory = getattr(contrib, name)
    injected = gradtx.inject_hyperparams(factory, static_args=("betas",))(estim_lr0=1e-3, eps=1e-7)
    assert {"learning_rate", "eps", "estim_lr0", "weight_decay"} <= set(injected.init(_parabola_start()).hyperparams)
    plain, _ = _steps(factory(estim_lr0=1e-3, eps=1e-7), _parabola_start(), 3, jit=True)
    inj, _ = _steps(injected, _parabola_start(), 3, jit=True)
    for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(inj), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6, err_msg=name)


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
        for field in state:
            if isinstance(field, dict):
                for k in params:
                    assert field[k].sharding.is_equivalent_to(params[k].sharding, 2 - (k == "b")), (name, when)
        params, state = step(params, state)


@pytest.mark.parametrize("name", IDS)
def test_update_needs_params(name):
    tx = getattr(contrib, name)()
    with pytest.raises(ValueError, match="params"):
        tx.update(jnp.ones(3), tx.init(jnp.zeros(3)))


def _prodigy_by_hand(x, grads, b1=0.9, b2=0.999, d0=1e-6, eps=1e-8):
    """Prodigy in float64 numpy, straight from the paper's Algorithm (optax's form)."""
    b3 = b2**0.5
    x0 = x.copy()
    m = np.zeros_like(x); v = np.zeros_like(x); s = np.zeros_like(x)  # noqa: E702
    d, r, out = d0, 0.0, []
    for t, g in enumerate(grads, start=1):
        lam = d * np.sqrt(1 - b2**t) / (1 - b1**t)
        m = b1 * m + (1 - b1) * d * g
        v = b2 * v + (1 - b2) * (d * g) ** 2
        s = b3 * s + lam * d * g / d0
        r = b3 * r + (d / d0) * lam * np.dot(g, x0 - x)
        d = max(d, r / np.abs(s).sum())
        u = -lam * m / (np.sqrt(v) + d * eps)
        x = x + u
        out.append((u, d))
    return out


def _dadapt_by_hand(x, grads, b1=0.9, b2=0.999, d0=1e-6, eps=1e-8):
    gamma = b2**0.5
    m = np.zeros_like(x); v = np.zeros_like(x); s = np.zeros_like(x)  # noqa: E702
    d, r, out = d0, 0.0, []
    for t, g in enumerate(grads, start=1):
        lam = d * np.sqrt(1 - b2**t) / (1 - b1**t)
        r = gamma * r + (1 - gamma) * lam * np.dot(g, s / (np.sqrt(v) + eps))
        m = b1 * m + (1 - b1) * lam * g
        v = b2 * v + (1 - b2) * g * g
        s = gamma * s + (1 - gamma) * lam * g
        d = max(d, r / ((1 - gamma) * np.abs(s).sum()))
        out.append((-m / (np.sqrt(v) + eps), d))
    return out


@pytest.mark.parametrize(("name", "by_hand"), [("prodigy", _prodigy_by_hand), ("dadapt_adamw", _dadapt_by_hand)])
def test_first_steps_match_the_formulas(name, by_hand):
    # the gradient of 0.5 * ||x - c||^2; the first step is -d0 * sign(g) in both methods
    # (up to eps), and d grows from the second step (Prodigy) or the third (D-Adaptation)
    c = np.array([1.0, -2.0, 0.5])
    x = np.array([0.0, 0.0, 0.0])
    tx = getattr(contrib, name)(estim_lr0=0.1)
    state = tx.init(jnp.asarray(x, jnp.float32))
    xs, grads, ours = x.copy(), [], []
    for _ in range(4):
        g = xs - c
        grads.append(g)
        u, state = tx.update(jnp.asarray(g, jnp.float32), state, jnp.asarray(xs, jnp.float32))
        ours.append((np.asarray(u, np.float64), float(state.estim_lr)))
        xs = xs + np.asarray(u, np.float64)
    expected = by_hand(x, grads, d0=0.1)
    np.testing.assert_allclose(ours[0][0], -0.1 * np.sign(grads[0]), rtol=1e-5)
    for (u, d), (eu, ed) in zip(ours, expected, strict=True):
        np.testing.assert_allclose(u, eu, rtol=1e-4, atol=1e-7)  # float32 1 - beta2
        np.testing.assert_allclose(d, ed, rtol=1e-4)
    assert expected[-1][1] > 0.1  # the estimate has grown
