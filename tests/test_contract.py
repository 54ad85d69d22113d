"""The contract every optimizer alias keeps: one table, one entry per alias.

An alias joins by adding one zero-argument factory to `OPTIMIZERS` in its family's
`tests/_rows_<family>.py` (and its out-of-range arguments to `INVALID`). Every entry then:

* converges on a parabola (loss down to 5 % of its start in 300 jitted steps) and makes progress on
  a Rosenbrock valley (loss at most half its start in 500 steps, updates scaled by 0.1 so that one
  learning rate suits both problems);
* gives the same numbers with and without `jax.jit`, and compiles its step once;
* keeps bfloat16 params bfloat16 (updates of the params' dtype, finite);
* runs under `inject_hyperparams` (numeric hyper-parameters injected) with the same numbers;
* keeps every param-shaped state leaf sharded like its param on a mesh of 8 simulated devices.

Every `update` receives `value`, `grad` and `value_fn` (line searches and Polyak steps use them;
the others ignore them).
"""

import numbers
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _bitwise import family_modules
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import gradtx


def _gather(attribute: str) -> list[Any]:
    found: list[Any] = []
    for module in family_modules():
        family = module.__name__[len("_rows_"):]
        value = getattr(module, attribute, None)
        if isinstance(value, dict):
            found += [(f"{family}:{k}", v) for k, v in value.items()]
        elif value:
            found += [(f"{family}:{i}", v) for i, v in enumerate(value)]
    return found


OPTIMIZERS = _gather("OPTIMIZERS")
INVALID = _gather("INVALID")
_IDS = [name for name, _ in OPTIMIZERS]


# --------------------------------------------------------------------------------------------
# problems and the driver
# --------------------------------------------------------------------------------------------

_TARGET = {"w": jnp.linspace(-1.0, 1.0, 12).reshape(3, 4), "b": jnp.array([0.5, -0.25, 1.0, 0.0, -1.5])}


def parabola(params):
    return 0.5 * sum(jnp.sum((params[k] - _TARGET[k]) ** 2) for k in _TARGET)


def rosenbrock(params):
    x, y = params["xy"][0], params["xy"][1]
    return (1.0 - x) ** 2 + 5.0 * (y - x**2) ** 2


def _parabola_start(dtype=jnp.float32):
    return {"w": jnp.zeros((3, 4), dtype), "b": jnp.ones(5, dtype)}


def _minimize(tx, loss, params, steps):
    """Loss before and after `steps` jitted steps (one compiled scan)."""
    return _minimize_all([(tx, loss, params, steps)])[0]


def _minimize_all(problems):
    """`_minimize` of each `(tx, loss, params, steps)`: one compiled function runs every scan (one
    compile instead of one per problem; the problems share no input, each computed as alone)."""

    @jax.jit
    def run(starts):
        ends = []
        for (tx, loss, _, steps), params in zip(problems, starts, strict=True):

            def body(carry, _, tx=tx, loss=loss):
                params, state = carry
                value, grad = jax.value_and_grad(loss)(params)
                updates, state = tx.update(grad, state, params, value=value, grad=grad, value_fn=loss)
                return (gradtx.apply_updates(params, updates), state), value

            (params, _), _ = jax.lax.scan(body, (params, tx.init(params)), None, length=steps)
            ends.append(loss(params))
        return ends

    ends = run([params for _, _, params, _ in problems])
    return [(float(loss(params)), float(end)) for (_, loss, params, _), end in zip(problems, ends, strict=True)]


def _steps(tx, params, n, jit):
    def step(params, state):
        value, grad = jax.value_and_grad(parabola)(params)
        updates, state = tx.update(grad, state, params, value=value, grad=grad, value_fn=parabola)
        return gradtx.apply_updates(params, updates), state, updates

    step = jax.jit(step) if jit else step
    state = tx.init(params)
    out = []
    for _ in range(n):
        params, state, updates = step(params, state)
        out.append((params, updates))
    return out, step


def _jitted_steps(runs, n):
    """`_steps(tx, params, n, jit=True)` for each `(tx, params)` of `runs`, one jitted step advancing
    them all (one compile instead of one per run; they share no input, each computed as alone)."""

    @jax.jit
    def step(carry):
        out = []
        for (tx, _), (params, state) in zip(runs, carry, strict=True):
            value, grad = jax.value_and_grad(parabola)(params)
            updates, state = tx.update(grad, state, params, value=value, grad=grad, value_fn=parabola)
            out.append((gradtx.apply_updates(params, updates), state, updates))
        return out

    carry = [(params, tx.init(params)) for tx, params in runs]
    outs = [[] for _ in runs]
    for _ in range(n):
        result = step(carry)
        carry = [(p, s) for p, s, _ in result]
        for out, (p, _, u) in zip(outs, result, strict=True):
            out.append((p, u))
    return outs, step


# --------------------------------------------------------------------------------------------
# the contract
# --------------------------------------------------------------------------------------------


# aliases the generic driver cannot run, each with where the same properties are checked instead
EXEMPT = {
    "dpsgd": "needs per-example gradients: tests/test_clipping_privacy.py checks convergence, jit = eager, "
    "one compilation, bfloat16, inject_hyperparams and sharding on per-example gradients",
    "lbfgs": "memory_size fixes array shapes (it cannot be injected): tests/test_linesearch.py checks "
    "Rosenbrock and quadratic convergence, jit = eager, one compilation, inject_hyperparams and sharding",
}


def test_every_alias_joins_the_table():
    # an alias without an entry would escape the contract: every optimizer alias must appear in
    # some family's OPTIMIZERS (by the factory name it prints as) or in EXEMPT with its reason
    printed = {repr(make()).split("(")[0] for _, make in OPTIMIZERS}
    aliases = {n for n in gradtx.optimizers.__all__ if n[0].islower() and callable(getattr(gradtx.optimizers, n))}
    missing = aliases - printed - set(EXEMPT)
    assert not missing, f"optimizer aliases with no contract entry: {sorted(missing)}"
    assert not (set(EXEMPT) & printed), "an exempt alias has an entry: remove it from EXEMPT"
    for name, make in OPTIMIZERS:
        assert isinstance(make(), gradtx.GradientTransformation), name


@pytest.mark.parametrize(("name", "make"), OPTIMIZERS, ids=_IDS)
def test_converges_on_a_parabola_and_progresses_on_rosenbrock(name, make):
    tx = gradtx.chain(make(), gradtx.scale(0.1))
    (start, end), (start_r, end_r) = _minimize_all(
        [(make(), parabola, _parabola_start(), 300), (tx, rosenbrock, {"xy": jnp.array([-0.5, 0.8])}, 500)])
    assert np.isfinite(end) and end <= 0.05 * start, f"{name}: parabola loss {start} -> {end}"
    assert np.isfinite(end_r) and end_r <= 0.5 * start_r, f"{name}: Rosenbrock loss {start_r} -> {end_r}"


@pytest.mark.parametrize(("name", "make"), OPTIMIZERS, ids=_IDS)
def test_bfloat16_params_stay_bfloat16(name, make):
    params = _parabola_start(jnp.bfloat16)
    out, _ = _steps(make(), params, 2, jit=True)
    for new_params, updates in out:
        for p, u in zip(jax.tree.leaves(new_params), jax.tree.leaves(updates), strict=True):
            assert p.dtype == jnp.bfloat16 and u.dtype == jnp.bfloat16, (name, p.dtype, u.dtype)
            assert np.all(np.isfinite(np.asarray(p, np.float32))), name


def _is_numeric(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


@pytest.mark.parametrize(("name", "make"), OPTIMIZERS, ids=_IDS)
def test_jit_equals_eager_compiles_once_and_runs_under_inject_hyperparams(name, make):
    # one test for the three properties of the same jitted trajectory (each compile costs ~0.5 s)
    tx = make()
    # the same optimizer rebuilt by inject_hyperparams from its recorded arguments: every numeric
    # hyper-parameter becomes injectable state and the trajectory is unchanged
    info = tx.update._gradtx_info
    factory = getattr(gradtx, info[0])
    arguments = dict(info[1])
    static = [k for k, v in arguments.items() if not _is_numeric(v)]
    injected = gradtx.inject_hyperparams(factory, static_args=static)(**arguments)
    state = injected.init(_parabola_start())
    numeric = {k for k, v in arguments.items() if _is_numeric(v)}
    assert numeric <= set(state.hyperparams), (name, numeric - set(state.hyperparams))

    eager, _ = _steps(tx, _parabola_start(), 3, jit=False)
    # one jitted step runs both (a second compile of either, e.g. a state whose types change
    # after the first step, is a second compile of the step)
    (jitted, inj), step = _jitted_steps([(tx, _parabola_start()), (injected, _parabola_start())], 3)
    for (pe, ue), (pj, uj) in zip(eager, jitted, strict=True):
        for a, b in zip(jax.tree.leaves((pe, ue)), jax.tree.leaves((pj, uj)), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6, err_msg=name)
    assert step._cache_size() == 1, f"{name}: the jitted step compiled {step._cache_size()} times"
    for (pa, _), (pb, _) in zip(jitted, inj, strict=True):
        for a, b in zip(jax.tree.leaves(pa), jax.tree.leaves(pb), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.skipif(len(jax.devices()) < 8, reason="needs 8 (simulated) devices")
@pytest.mark.parametrize(("name", "make"), OPTIMIZERS, ids=_IDS)
def test_state_keeps_the_params_sharding(name, make):
    mesh = Mesh(np.array(jax.devices()[:8]), ("x",))
    shardings = {"w": NamedSharding(mesh, P("x", None)), "b": NamedSharding(mesh, P("x"))}
    params = {
        "w": jax.device_put(jnp.linspace(-1.0, 1.0, 64).reshape(16, 4), shardings["w"]),
        "b": jax.device_put(jnp.ones(8), shardings["b"]),
    }
    tx = make()
    by_shape = {tuple(p.shape): p.sharding for p in params.values()}

    def check(state, when):
        for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
            expected = by_shape.get(tuple(jnp.shape(leaf)))
            if expected is not None and isinstance(leaf, jax.Array):
                assert leaf.sharding.is_equivalent_to(expected, leaf.ndim), (
                    f"{name} {when}: state{jax.tree_util.keystr(path)} is {leaf.sharding}, param is {expected}"
                )

    state = tx.init(params)
    check(state, "after init")

    @jax.jit
    def step(params, state):
        value, grad = jax.value_and_grad(lambda p: jnp.sum(p["w"] ** 2) + jnp.sum(p["b"] ** 2))(params)
        updates, state = tx.update(grad, state, params, value=value, grad=grad)
        return gradtx.apply_updates(params, updates), state

    params, state = step(params, state)
    check(state, "after a jitted step")


@pytest.mark.parametrize(("name", "case"), INVALID, ids=[name for name, _ in INVALID] or None)
def test_invalid_hyperparameters_name_the_argument(name, case: tuple[Callable, dict, str]):
    factory, kwargs, argument = case
    with pytest.raises((ValueError, TypeError), match=argument):
        factory(**kwargs)
