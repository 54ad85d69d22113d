"""Learning-rate-free optimizers of `gradtx.contrib` (Prodigy, D-Adaptation AdamW).

The table (`tests/_rows_contrib_lr_free.py`) shows them bit-identical to `optax.contrib`. Here:
the contract properties that `tests/test_contract.py` checks for top-level aliases (these live in
`gradtx.contrib` only), known answers of the first steps computed by hand from the formulas, and
the `params` requirement.
"""

import inspect

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
    "prodigy": lambda: contrib.prodigy(),
    "dadapt_adamw": lambda: contrib.dadapt_adamw(),
    "dog": lambda: contrib.dog(),
    "dowg": lambda: contrib.dowg(),
    "cocob": lambda: contrib.cocob(),
    "mechanize": lambda: contrib.mechanize(gradtx.sgd(0.1)),
    "momo": lambda: contrib.momo(),
    "momo_adam": lambda: contrib.momo_adam(),
}
# numeric hyper-parameters to inject (the others are static)
INJECT = {
    "prodigy": {"estim_lr0": 1e-3, "eps": 1e-7},
    "dadapt_adamw": {"estim_lr0": 1e-3, "eps": 1e-7},
    "dog": {"learning_rate": 0.5, "eps": 1e-7},
    "dowg": {"learning_rate": 0.5, "init_estim_sq_dist": 1e-3},
    "cocob": {"alpha": 50.0, "eps": 1e-7},
    "mechanize": {"base_optimizer": gradtx.sgd(0.1), "weight_decay": 1e-3, "s_init": 1e-4},
    "momo": {"learning_rate": 0.5, "beta": 0.8, "lower_bound": -0.1},
    "momo_adam": {"learning_rate": 0.1, "b1": 0.8, "eps": 1e-7},
}
ITEMS = list(FACTORIES.items())
IDS = list(FACTORIES)


def test_exported_from_contrib_only():
    for name in (*FACTORIES, "ProdigyState", "DAdaptAdamWState", "DoGState", "DoWGState", "COCOBState", "MechanicState", "MomoState", "MomoAdamState",
                 "scale_by_cocob"):
        assert name in contrib.__all__
        assert not hasattr(gradtx, name)


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
    factory, kwargs = getattr(contrib, name), INJECT[name]
    static = [
        a for a in ("betas", "init_step", "mask", "base_optimizer", "num_betas") if a in inspect.signature(factory).parameters
    ]
    injected = gradtx.inject_hyperparams(factory, static_args=static)(**kwargs)
    assert set(kwargs) - set(static) <= set(injected.init(_parabola_start()).hyperparams)
    (plain, inj), _ = _jitted_steps([(factory(**kwargs), _parabola_start()), (injected, _parabola_start())], 3)  # one compile
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
    by_shape = {tuple(p.shape): p.sharding for p in params.values()}
    tx = make()

    @jax.jit
    def step(params, state):
        value, grad = jax.value_and_grad(lambda p: jnp.sum(p["w"] ** 2) + jnp.sum(p["b"] ** 2))(params)
        updates, state = tx.update(grad, state, params, value=value)
        return gradtx.apply_updates(params, updates), state

    state = tx.init(params)
    for when in ("init", "step"):
        checked = 0
        for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
            expected = by_shape.get(tuple(jnp.shape(leaf)))
            if expected is not None:
                assert leaf.sharding.is_equivalent_to(expected, leaf.ndim), (name, when, jax.tree_util.keystr(path))
                checked += 1
        assert checked >= 2, name
        params, state = step(params, state)


@pytest.mark.parametrize("name", IDS)
def test_update_needs_params(name):
    tx = FACTORIES[name]()
    with pytest.raises(ValueError, match="params"):
        tx.update(jnp.ones(3), tx.init(jnp.zeros(3)), value=1.0)


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


def test_dog_steps_by_hand():
    # r_0 = 0.3 (init_step "distance"), one step size for the whole tree
    tx = contrib.dog(init_step=("distance", 0.3), eps=0.0)
    x = {"a": jnp.array([3.0, 4.0]), "b": jnp.array(0.0)}
    g1 = {"a": jnp.array([0.6, 0.8]), "b": jnp.array(0.0)}
    state = tx.init(x)
    u, state = tx.update(g1, state, x)
    np.testing.assert_allclose(u["a"], [-0.18, -0.24], rtol=1e-6)  # -0.3 / ||g1|| * g1, ||g1|| = 1
    x = gradtx.apply_updates(x, u)  # moved by 0.3
    g2 = {"a": jnp.array([0.0, 0.0]), "b": jnp.array(1.0)}
    u, state = tx.update(g2, state, x)
    # r = max(0.3, 0.3), G = 1 + 1: step 0.3 / sqrt(2)
    np.testing.assert_allclose(u["b"], -0.3 / np.sqrt(2.0), rtol=1e-6)
    assert bool(state[1].is_init_step) is False
    # init_step ("learning_rate", v): the first step has size v exactly
    tx = contrib.dog(init_step=("learning_rate", 0.05))
    u, _ = tx.update(g1, tx.init(x), x)
    np.testing.assert_allclose(u["a"], [-0.03, -0.04], rtol=1e-6)
    # ("heuristic", v): r_0 = v (1 + ||x_0||) = 1e-3 * 6 for x_0 = (3, 4, 0)
    x0 = {"a": jnp.array([3.0, 4.0]), "b": jnp.array(0.0)}
    np.testing.assert_allclose(contrib.dog(init_step=("heuristic", 1e-3)).init(x0)[1].max_dist, 6e-3, rtol=1e-6)


def test_dowg_first_step_by_hand():
    # rbar^2 = 0.04, v = 0.04 * ||g||^2 = 0.04 * 25: step 0.04 / (0.2 * 5 + eps)
    tx = contrib.dowg(init_estim_sq_dist=0.04, eps=1e-4)
    x = jnp.array([1.0, 1.0])
    u, _ = tx.update(jnp.array([3.0, 4.0]), tx.init(x), x)
    np.testing.assert_allclose(u, -0.04 / (1.0 + 1e-4) * np.array([3.0, 4.0]), rtol=1e-6)


def test_cocob_first_steps_by_hand():
    # step 1: L = G = |g|, R = 0, theta = -g: u = -g / (alpha |g|) = -sign(g) / alpha
    tx = contrib.cocob(alpha=100.0)
    x = jnp.array([1.0, -2.0, 0.5])
    g = jnp.array([2.0, -0.5, 0.25])
    state = tx.init(x)
    u, state = tx.update(g, state, x)
    np.testing.assert_allclose(u, -np.sign(g) / 100.0, rtol=1e-6)
    # step 2, same gradient: L = |g|, G = 2|g|, R = max(0 - g (x1 - x0), 0) = |g| / 100,
    # theta = -2 g: u = x0 - 2 g (|g| + |g| / 100) / (|g| * 100 |g|) - x1
    x1 = gradtx.apply_updates(x, u)
    u2, _ = tx.update(g, state, x1)
    gg = np.asarray(g, np.float64)
    new_x = np.asarray(x, np.float64) - 2 * gg * (1 + 1 / 100) / (100 * np.abs(gg))
    np.testing.assert_allclose(np.asarray(x1) + np.asarray(u2), new_x, rtol=1e-5)


def test_mechanize_first_steps_by_hand():
    # step 1: x0 = params, h = 0, so every s_i = s_init / n and the step is s_init * base step
    tx = contrib.mechanize(gradtx.sgd(1.0), s_init=1e-3, num_betas=4)
    x = jnp.array([1.0, -2.0])
    g = jnp.array([0.5, 0.25])
    state = tx.init(x)
    u, state = tx.update(g, state, x)
    # (the update is x_{t+1} - x_t: float32 rounding at the params' scale, 2.4e-7 here)
    np.testing.assert_allclose(u, -1e-3 * g, atol=5e-7)
    np.testing.assert_allclose(state.s, np.full(4, 1e-3 / 4), rtol=1e-6)
    np.testing.assert_allclose(state.m, np.full(4, 1e-8), rtol=1e-6)
    # step 2: delta_prev = (x0 - x1) / (S + eps) = g (up to eps), h = <g + decay, g> > 0:
    # the scales grow, so the second step is longer than s_init * g
    x1 = gradtx.apply_updates(x, u)
    _, state = tx.update(g, state, x1)
    assert float(jnp.sum(state.s)) > 1e-3
    g_norm, x_norm = float(jnp.linalg.norm(g)), float(jnp.linalg.norm(x1))
    h = float(jnp.vdot(g + 1e-2 * 1e-3 * g_norm / (x_norm + 1e-8) * x1, (x - x1) / (1e-3 + 1e-8)))
    betas = 1 - 0.1 ** np.arange(1, 5)
    m = np.maximum(betas * 1e-8, abs(h) + 1e-8)
    r = 1e-8 * 1e-3 / 4  # clip(h, -m_old, m_old) * s_old, m_old = 1e-8
    s = (1e-3 / 4 * m + r) / (abs(h) + 1e-8)
    np.testing.assert_allclose(state.s, s, rtol=1e-4)


@pytest.mark.parametrize("name", ["momo", "momo_adam"])
def test_momo_needs_a_scalar_value(name):
    tx = getattr(contrib, name)()
    x = jnp.ones(3)
    with pytest.raises(ValueError, match="value"):
        tx.update(jnp.ones(3), tx.init(x), x)
    with pytest.raises(TypeError, match="scalar"):
        tx.update(jnp.ones(3), tx.init(x), x, value=jnp.ones(2))


def test_momo_first_step_is_polyak():
    # f = ||x||^2 at x = (1, 2): f = 5, g = (2, 4). Step 1 (no averaging yet):
    # tau = min(lr, (f - f* - <g, x> + <g, x>) / ||g||^2) = 5 / 20
    x = jnp.array([1.0, 2.0])
    value, g = 5.0, jnp.array([2.0, 4.0])
    u, state = contrib.momo().update(g, contrib.momo().init(x), x, value=value)
    np.testing.assert_allclose(u, -0.25 * g, rtol=1e-6)
    # capped by the learning rate, shrunk by the weight decay a*l / (1 + a*l)
    u, _ = contrib.momo(0.1, weight_decay=1.0).update(g, state._replace(count=jnp.zeros([], jnp.int32)), x, value=value)
    np.testing.assert_allclose(u, -(0.1 / 1.1) * x - 0.1 * g, rtol=1e-6)
    # a lower bound f* = 3 shortens it: (5 - 3) / 20
    tx = contrib.momo(lower_bound=3.0)
    np.testing.assert_allclose(tx.update(g, tx.init(x), x, value=value)[0], -0.1 * g, rtol=1e-6)


def test_momo_adam_first_step_by_hand():
    # step 1: m = 0.1 g, D = eps + |g|, ||m||_D^2 = 0.01 ||g||_1 (eps aside), c1 = 0.1:
    # tau = min(lr / 0.1, 0.1 f / (0.01 ||g||_1)) and u = -tau * 0.1 * sign(g)
    x = jnp.array([1.0, 2.0])
    value, g = 5.0, jnp.array([2.0, -4.0])
    tx = contrib.momo_adam(learning_rate=10.0, eps=0.0)
    u, _ = tx.update(g, tx.init(x), x, value=value)
    np.testing.assert_allclose(u, -(5.0 / 6.0) * np.sign(g), rtol=1e-5)
    tx = contrib.momo_adam(eps=0.0)  # lr 1e-2: the cap lr / c1 = 0.1 binds
    u, _ = tx.update(g, tx.init(x), x, value=value)
    np.testing.assert_allclose(u, -0.01 * np.sign(g), rtol=1e-5)


def _bf16_rows():
    import _rows_contrib_lr_free as rows

    # mechanize(adam): gradtx.adam's own bfloat16 numbers differ from optax.adam's (see its family)
    return [r for r in rows.ROWS if r.name != "contrib_mechanize"]


@pytest.mark.parametrize("row", _bf16_rows(), ids=lambda r: r.name)
def test_bfloat16_numbers_equal_optax(row):
    """bfloat16 params: the same params and state as optax.contrib after 4 jitted steps.

    Except `momo(adapt_lower_bound=True)`, which optax cannot run in bfloat16 (its `lax.cond`
    branches differ in dtype): gradtx runs it and keeps the state bfloat16.
    """
    from _bitwise import tree


    def trajectories(txs):
        """Params and state of each of `txs` after 4 steps, one jitted step advancing them all."""
        params = [jax.tree.map(lambda x: x.astype(jnp.bfloat16), tree(4)) for _ in txs]
        states = [tx.init(p) for tx, p in zip(txs, params, strict=True)]
        step = jax.jit(lambda ps, ss, i: [tx.update(row.grads(p, i), s, p) for tx, p, s in zip(txs, ps, ss, strict=True)])
        for i in range(4):
            out = step(params, states, i)
            params = [gradtx.apply_updates(p, u) for p, (u, _) in zip(params, out, strict=True)]
            states = [s for _, s in out]
        return list(zip(params, states, strict=True))

    try:
        outs = trajectories((row.ours(), row.theirs()))  # one compile for both sides
    except TypeError:
        assert row.name == "contrib_momo_options", row.name
        ((params, state),) = trajectories((row.ours(),))  # gradtx alone runs
        assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(params))
        assert state.lb.dtype == jnp.bfloat16
        return
    ours, theirs = (jax.tree.leaves(o) for o in outs)
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        assert a.dtype == b.dtype, row.name
        np.testing.assert_array_equal(np.asarray(a, np.float32), np.asarray(b, np.float32), err_msg=row.name)


def test_every_family_name_has_a_row_and_matches_optax_signature():
    # test_optax_bitwise's coverage test looks at the top level only: check this family here
    import inspect as _inspect

    import _rows_contrib_lr_free as rows
    import optax

    source = _inspect.getsource(rows)
    for name in (*FACTORIES, "scale_by_cocob"):
        assert f"m.contrib.{name}(" in source, name
        ours = _inspect.signature(getattr(contrib, name)).parameters
        theirs = _inspect.signature(getattr(optax.contrib, name)).parameters
        assert list(ours) == list(theirs), name
        assert [p.default for p in ours.values()] == [p.default for p in theirs.values()], name
    for state in ("ProdigyState", "DAdaptAdamWState", "DoGState", "DoWGState", "COCOBState", "MechanicState",
                  "MomoState", "MomoAdamState"):
        assert getattr(contrib, state)._fields == getattr(optax.contrib, state)._fields, state
