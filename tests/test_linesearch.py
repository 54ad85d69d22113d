"""Line searches and L-BFGS: known answers, optax's trajectories, the extra-argument protocol.

* L-BFGS solves Rosenbrock (float64, <= 100 iterations, 1e-6) and a convex quadratic (1e-8), and
  its iterates and full states equal optax's bit for bit under `jax.jit` in float32, float64 and
  bfloat16 (and for complex params, and under `inject_hyperparams`).
* Backtracking accepts the step of the Armijo loop written out by hand; zoom's first interpolation
  on a parabola lands on its minimizer, and its steps meet the strong Wolfe conditions.
* `value`, `grad`, `value_fn` and data keyword arguments reach the objective as in optax;
  `value_and_grad_from_state` reads back what the search stored.

Float64 runs inside `with jax.enable_x64(True):`, which sets the flag for that block only.
"""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _bitwise import assert_same

import gradtx

x64 = jax.enable_x64


def rosenbrock(w):
    return jnp.sum(100.0 * (w[1:] - w[:-1] ** 2) ** 2 + (1.0 - w[:-1]) ** 2)


def _quadratic_problem(dtype):
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    a = q @ np.diag(np.geomspace(1.0, 50.0, 8)) @ q.T  # symmetric, condition number 50
    b = rng.normal(size=8)
    a_, b_ = jnp.asarray(a, dtype), jnp.asarray(b, dtype)

    def f(w):
        return 0.5 * w @ (a_ @ w) - b_ @ w

    return f, np.linalg.solve(a, b)


def _solve(lib, f, w0, steps, tx=None):
    """`steps` jitted iterations of the loop optax documents; every iterate and state, stacked."""
    tx = lib.lbfgs() if tx is None else tx
    value_and_grad = lib.value_and_grad_from_state(f)

    def step(carry, _):
        w, state = carry
        value, grad = value_and_grad(w, state=state)
        updates, state = tx.update(grad, state, w, value=value, grad=grad, value_fn=f)
        w = lib.apply_updates(w, updates)
        return (w, state), (w, state)

    @jax.jit
    def run(w):
        return jax.lax.scan(step, (w, tx.init(w)), None, length=steps)[1]

    return run(w0)


# --------------------------------------------------------------------------------------------
# L-BFGS: convergence and optax's iterates
# --------------------------------------------------------------------------------------------


def test_lbfgs_solves_rosenbrock_in_float64():
    with x64(True):
        iterates, _ = _solve(gradtx, rosenbrock, jnp.array([-1.2, 1.0, -0.5, 0.8]), 100)
        error = np.max(np.abs(np.asarray(iterates) - 1.0), axis=1)
        assert iterates.dtype == jnp.float64
    solved = np.flatnonzero(error <= 1e-6)
    assert solved.size and np.all(error[solved[0]:] <= 1e-6), f"closest: {error.min():.3g}"


def test_lbfgs_solves_a_convex_quadratic_to_1e_8():
    with x64(True):
        f, w_star = _quadratic_problem(jnp.float64)
        iterates, _ = _solve(gradtx, f, jnp.zeros(8), 40)  # converged to 1e-8 at iteration 27
    np.testing.assert_allclose(np.asarray(iterates[-1]), w_star, rtol=0, atol=1e-8)


@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16"])
@pytest.mark.parametrize("problem", ["rosenbrock", "quadratic"])
def test_lbfgs_iterates_and_states_equal_optax_bit_for_bit(problem, dtype):
    with x64(dtype == "float64"):
        if problem == "rosenbrock":
            f, w0 = rosenbrock, jnp.array([-1.2, 1.0, -0.5, 0.8], dtype)
        else:
            f, w0 = _quadratic_problem(dtype)[0], jnp.zeros(8, dtype)
        ours = _solve(gradtx, f, w0, 40)
        ref = _solve(optax, f, w0, 40)
        assert_same(ours, ref, f"{problem} {dtype} (iterates, states)")


@pytest.mark.parametrize("search", ["zoom", "backtracking"])
def test_complex_params_take_optax_steps(search):
    c = jnp.array([1 + 2j, -0.5 + 0.3j, 2 - 1j], jnp.complex64)

    def f(w):
        return jnp.sum(jnp.abs(w - c) ** 2) + 0.1 * jnp.sum(jnp.abs(w) ** 4)

    def build(m):
        return m.lbfgs() if search == "zoom" else m.lbfgs(linesearch=m.scale_by_backtracking_linesearch(15, store_grad=True))

    w0 = jnp.zeros(3, jnp.complex64)
    assert_same(_solve(gradtx, f, w0, 10, build(gradtx)), _solve(optax, f, w0, 10, build(optax)), "complex")


def test_lbfgs_with_backtracking_and_a_schedule_equals_optax():
    def build(m):
        return m.lbfgs(m.linear_schedule(1.0, 0.5, 10), memory_size=3,
                       linesearch=m.scale_by_backtracking_linesearch(20, store_grad=True))

    w0 = jnp.array([-1.2, 1.0])
    assert_same(_solve(gradtx, rosenbrock, w0, 30, build(gradtx)), _solve(optax, rosenbrock, w0, 30, build(optax)),
                "backtracking L-BFGS")


# --------------------------------------------------------------------------------------------
# scale_by_lbfgs: the formula by hand
# --------------------------------------------------------------------------------------------


def test_scale_by_lbfgs_takes_newtons_step_after_one_pair():
    # f(w) = 3 w^2 (f' = 6 w). First step: gamma_0 = min(1, 1/|g|) so the direction is g/|g| = 1.
    # Then one pair (dw, du) = (-1, -6): the secant estimate is 1/6, the exact inverse Hessian,
    # so the second direction is f'(1)/6 = 1 and w lands on the minimizer 0.
    tx = gradtx.scale_by_lbfgs(memory_size=2)
    update = jax.jit(tx.update)
    w = jnp.array([2.0])
    state = tx.init(w)
    d0, state = update(6.0 * w, state, w)
    assert float(d0[0]) == 1.0
    w = w - d0
    d1, state = update(6.0 * w, state, w)
    assert float(d1[0]) == 1.0 and float((w - d1)[0]) == 0.0
    assert int(state.count) == 2
    np.testing.assert_array_equal(state.diff_params_memory[:, 0], [-1.0, 0.0])
    np.testing.assert_array_equal(state.diff_updates_memory[:, 0], [-6.0, 0.0])
    np.testing.assert_allclose(state.weights_memory, [1.0 / 6.0, 0.0], rtol=1e-7)


def test_scale_by_lbfgs_needs_params():
    tx = gradtx.scale_by_lbfgs()
    with pytest.raises(ValueError, match="params are required"):
        tx.update(jnp.ones(2), tx.init(jnp.ones(2)))


# --------------------------------------------------------------------------------------------
# backtracking: Armijo by hand
# --------------------------------------------------------------------------------------------


def _armijo_by_hand(f, w, g, guess, c=1e-4, shrink=0.8):
    """Shrink the step from `guess` until f(w - lr g) <= f(w) - c lr g^2; (lr, evaluations)."""
    lr, evaluations = guess, 1
    while f(w - lr * g) > f(w) - c * lr * g * g:
        lr, evaluations = shrink * lr, evaluations + 1
    return lr, evaluations


def test_backtracking_accepts_the_armijo_step_computed_by_hand():
    def f(w):
        return 2.0 * w**2  # f' = 4 w

    solver = gradtx.chain(gradtx.sgd(1.0), gradtx.scale_by_backtracking_linesearch(15, store_grad=True))
    with x64(True):
        w = jnp.array(1.0)
        state = solver.init(w)
        guess, counts = 1.0, []  # min(1.5 * 1.0, max_learning_rate=1.0)
        for _ in range(3):
            lr, evaluations = _armijo_by_hand(lambda v: 2.0 * v**2, float(w), 4.0 * float(w), guess)
            counts.append(evaluations)
            value, grad = jax.value_and_grad(f)(w)
            updates, state = solver.update(grad, state, w, value=value, grad=grad, value_fn=f)
            search = state[1]
            assert float(search.learning_rate) == lr and int(search.info.num_linesearch_steps) == evaluations
            assert float(updates) == -lr * float(grad) and float(search.info.decrease_error) == 0.0
            w = gradtx.apply_updates(w, updates)
            assert float(search.value) == float(f(w)) and float(search.grad) == 4.0 * float(w)
            guess = min(1.5 * lr, 1.0)
    assert counts[0] == 5  # the first search shrank four times: lr = 0.8**4


def test_backtracking_out_of_steps_keeps_the_last_step_and_reports_the_error():
    def f(w):
        return 2.0 * w**2

    solver = gradtx.chain(gradtx.sgd(1.0), gradtx.scale_by_backtracking_linesearch(2))
    with x64(True):
        w = jnp.array(1.0)
        value, grad = jax.value_and_grad(f)(w)
        _, state = solver.update(grad, solver.init(w), w, value=value, grad=grad, value_fn=f)
    info = state[1].info
    assert float(state[1].learning_rate) == 0.8 * 0.8 and int(info.num_linesearch_steps) == 3
    # f(1 - 0.64 * 4) - f(1) - 1e-4 * 0.64 * (-16)
    np.testing.assert_allclose(float(info.decrease_error), 2.0 * 1.56**2 - 2.0 + 1e-4 * 0.64 * 16, rtol=1e-12)
    assert state[1].grad is None


def test_backtracking_takes_no_step_where_the_objective_is_never_finite():
    def f(w):
        return jnp.where(w > 0.99, jnp.sum(w), jnp.nan)  # NaN at every trial step

    solver = gradtx.chain(gradtx.sgd(1.0), gradtx.scale_by_backtracking_linesearch(3))
    w = jnp.array(2.0)
    updates, state = solver.update(jnp.array(5.0), solver.init(w), w, value=f(w), grad=jnp.array(5.0), value_fn=f)
    assert float(updates) == 0.0 and float(state[1].learning_rate) == 0.0
    assert np.isinf(float(state[1].info.decrease_error))


# --------------------------------------------------------------------------------------------
# zoom: known steps and the strong Wolfe conditions
# --------------------------------------------------------------------------------------------


def test_zoom_lands_on_the_minimizer_of_a_parabola_by_quadratic_interpolation():
    # f = |w|^2 along u = -grad: the step 1 gives f(-w) = f(w) (no decrease), and the parabola
    # through (0, f), slope -|g|^2 and (1, f) has its minimum at 1/2, the exact minimizer.
    def f(w):
        return jnp.sum(w**2)

    solver = gradtx.chain(gradtx.sgd(1.0), gradtx.scale_by_zoom_linesearch(15))
    w = jnp.array([1.0, 2.0, 3.0])
    value, grad = jax.value_and_grad(f)(w)
    updates, state = solver.update(grad, solver.init(w), w, value=value, grad=grad, value_fn=f)
    search = state[1]
    assert float(search.learning_rate) == 0.5 and int(search.info.num_linesearch_steps) == 2
    np.testing.assert_array_equal(gradtx.apply_updates(w, updates), jnp.zeros(3))
    assert float(search.value) == 0.0 and float(search.info.decrease_error) == 0.0
    assert float(search.info.curvature_error) == 0.0


@pytest.mark.parametrize("guess", ["one", "keep"])
def test_zoom_steps_meet_the_strong_wolfe_conditions(guess):
    c1, c2 = 1e-4, 0.9
    with x64(True):
        f, _ = _quadratic_problem(jnp.float64)
        solver = gradtx.chain(gradtx.sgd(1.0), gradtx.scale_by_zoom_linesearch(30, initial_guess_strategy=guess))

        @jax.jit
        def step(w, state):
            value, grad = jax.value_and_grad(f)(w)
            updates, state = solver.update(grad, state, w, value=value, grad=grad, value_fn=f)
            new_w = gradtx.apply_updates(w, updates)
            return new_w, state, value, grad, *jax.value_and_grad(f)(new_w)

        w = jnp.ones(8)
        state = solver.init(w)
        for _ in range(5):
            w, state, value, grad, new_value, new_grad = step(w, state)
            eta, u = float(state[1].learning_rate), -np.asarray(grad)
            slope0 = float(np.asarray(grad) @ u)
            assert float(new_value) <= float(value) + c1 * eta * slope0
            assert abs(float(np.asarray(new_grad) @ u)) <= c2 * abs(slope0)
            assert float(state[1].info.decrease_error) == 0.0 and float(state[1].info.curvature_error) == 0.0


def test_zoom_capped_by_max_learning_rate():
    # along a steep direction the largest step allowed already decreases f but the curvature
    # condition would need a longer one: the search stops at max_learning_rate
    def f(w):
        return jnp.sum((w - 10.0) ** 2)

    solver = gradtx.chain(gradtx.sgd(1e-3), gradtx.scale_by_zoom_linesearch(20, max_learning_rate=2.0))
    w = jnp.zeros(2)
    value, grad = jax.value_and_grad(f)(w)
    _, state = solver.update(grad, solver.init(w), w, value=value, grad=grad, value_fn=f)
    assert float(state[1].learning_rate) == 2.0
    assert float(state[1].info.decrease_error) == 0.0 and float(state[1].info.curvature_error) > 0.0


# --------------------------------------------------------------------------------------------
# the extra-argument protocol
# --------------------------------------------------------------------------------------------


def _data_loop(lib, linesearch):
    def fn(params, x, y):
        return optax.l2_loss(x.dot(params), y)

    solver = lib.chain(lib.sgd(1.0), linesearch(lib))
    params = jnp.array([1.0, 2.0, 3.0])
    xs = jnp.array([[3.0, 2.0, 1.0], [1.0, -1.0, 2.0], [0.5, 0.5, 4.0]])
    ys = jnp.array([0.0, 1.0, -2.0])

    @jax.jit
    def step(params, state, x, y):
        value, grad = jax.value_and_grad(fn)(params, x, y)
        updates, state = solver.update(grad, state, params, value=value, grad=grad, value_fn=fn, x=x, y=y)
        return lib.apply_updates(params, updates), state

    state = solver.init(params)
    out = []
    for x, y in zip(xs, ys, strict=True):
        params, state = step(params, state, x, y)
        out.append((params, state))
    return out


@pytest.mark.parametrize("kind", ["zoom", "backtracking"])
def test_data_keyword_arguments_reach_value_fn_as_in_optax(kind):
    def linesearch(m):
        if kind == "zoom":
            return m.scale_by_zoom_linesearch(max_linesearch_steps=15)
        return m.scale_by_backtracking_linesearch(max_backtracking_steps=15)

    assert_same(_data_loop(gradtx, linesearch), _data_loop(optax, linesearch), f"{kind} with data")


def test_keyword_arguments_value_fn_does_not_take_are_refused_by_name():
    solver = gradtx.scale_by_zoom_linesearch(10)
    w = jnp.ones(2)
    with pytest.raises(TypeError, match=r"\['batch'\]"):
        solver.update(-w, solver.init(w), w, value=1.0, grad=w, value_fn=lambda p, x: jnp.sum(p * x),
                      x=w, batch=w)


def test_a_value_fn_with_var_keywords_receives_every_extra_argument():
    def f(p, **data):
        return jnp.sum((p - data["target"]) ** 2) * data["weight"]

    solver = gradtx.chain(gradtx.sgd(1.0), gradtx.scale_by_zoom_linesearch(10))
    w, target = jnp.zeros(2), jnp.array([1.0, -1.0])
    value, grad = jax.value_and_grad(f)(w, target=target, weight=2.0)
    updates, _ = solver.update(grad, solver.init(w), w, value=value, grad=grad, value_fn=f, target=target,
                               weight=2.0)
    np.testing.assert_allclose(gradtx.apply_updates(w, updates), target, atol=1e-6)


@pytest.mark.parametrize("missing", ["value", "grad", "value_fn"])
def test_a_missing_objective_is_a_readable_error(missing):
    w = jnp.ones(2)
    kwargs = {"value": 2.0, "grad": w, "value_fn": lambda p: jnp.sum(p**2)}
    del kwargs[missing]
    for solver in (gradtx.lbfgs(), gradtx.scale_by_backtracking_linesearch(5)):
        with pytest.raises(TypeError, match=f"missing {missing}"):
            solver.update(w, solver.init(w), w, **kwargs)


def test_value_and_grad_from_state_reuses_what_the_search_stored():
    f = rosenbrock
    value_and_grad = gradtx.value_and_grad_from_state(f)
    solver = gradtx.lbfgs()
    w = jnp.array([-1.2, 1.0])
    state = solver.init(w)
    value, grad = value_and_grad(w, state=state)  # +inf stored at init: evaluated
    np.testing.assert_allclose(float(value), float(f(w)), rtol=1e-6)  # compiled apart: an ulp may differ
    np.testing.assert_allclose(grad, jax.grad(f)(w), rtol=1e-6)
    updates, state = solver.update(grad, state, w, value=value, grad=grad, value_fn=f)
    w = gradtx.apply_updates(w, updates)
    stored_value, stored_grad = value_and_grad(w, state=state)  # read back, not evaluated
    assert float(stored_value) == float(state[2].value) and stored_grad.tolist() == state[2].grad.tolist()
    np.testing.assert_allclose(float(stored_value), float(f(w)), rtol=1e-6)
    np.testing.assert_allclose(stored_grad, jax.grad(f)(w), rtol=1e-5)


def test_value_and_grad_from_state_errors():
    f = rosenbrock
    w = jnp.ones(2)
    with pytest.raises(ValueError, match="stores no value"):
        gradtx.value_and_grad_from_state(f)(w, state=gradtx.adam(1e-3).init(w))
    no_grad = gradtx.scale_by_backtracking_linesearch(5)
    with pytest.raises(ValueError, match="stores no grad"):
        gradtx.value_and_grad_from_state(f)(w, state=no_grad.init(w))
    two = gradtx.chain(gradtx.scale_by_zoom_linesearch(5), gradtx.scale_by_zoom_linesearch(5))
    with pytest.raises(KeyError, match="2 fields named 'value'"):
        gradtx.value_and_grad_from_state(f)(w, state=two.init(w))


def test_verbose_explains_a_failed_search(capfd):
    # an ascent direction: no step size decreases the objective
    def f(w):
        return jnp.sum(w**2)

    solver = gradtx.chain(gradtx.scale(1.0), gradtx.scale_by_zoom_linesearch(4, verbose=True))
    w = jnp.ones(2)
    value, grad = jax.value_and_grad(f)(w)
    _, state = solver.update(grad, solver.init(w), w, value=value, grad=grad, value_fn=f)
    jax.effects_barrier()
    assert "not a descent direction" in capfd.readouterr().out
    assert float(state[1].info.decrease_error) > 0.0


# --------------------------------------------------------------------------------------------
# signatures, defaults, layout
# --------------------------------------------------------------------------------------------

NAMES = ["scale_by_zoom_linesearch", "scale_by_backtracking_linesearch", "scale_by_lbfgs", "lbfgs",
         "value_and_grad_from_state"]


@pytest.mark.parametrize("name", NAMES)
def test_signatures_and_defaults_are_optax(name):
    ours = inspect.signature(getattr(gradtx, name)).parameters
    ref = inspect.signature(getattr(optax, name)).parameters
    assert list(ours) == list(ref)
    for key, p in ref.items():
        if key == "linesearch":  # the default zoom search: compared through its hyper-parameters
            continue
        assert (ours[key].default, ours[key].kind) == (p.default, p.kind), key


def test_lbfgs_default_linesearch_is_optax_zoom_with_guess_one():
    default = inspect.signature(gradtx.lbfgs).parameters["linesearch"].default
    assert repr(default).startswith("scale_by_zoom_linesearch(max_linesearch_steps=20, max_learning_rate=None")
    assert gradtx.hyperparams(default)["initial_guess_strategy"] == "one"
    assert "linesearch=scale_by_zoom_linesearch(max_linesearch_steps=20" in repr(gradtx.lbfgs())


@pytest.mark.parametrize("name", ["ScaleByZoomLinesearchState", "ZoomLinesearchInfo",
                                  "ScaleByBacktrackingLinesearchState", "ScaleByLBFGSState"])
def test_state_classes_have_optax_fields(name):
    assert getattr(gradtx, name)._fields == getattr(optax, name)._fields


def test_float64_states_keep_float64():
    with x64(True):
        state = gradtx.lbfgs().init(jnp.zeros(3))
        ref = optax.lbfgs().init(jnp.zeros(3))
        assert [x.dtype for x in jax.tree.leaves(state)] == [x.dtype for x in jax.tree.leaves(ref)]
        assert state[0].diff_params_memory.dtype == jnp.float64


def test_validation_messages_name_function_argument_and_range():
    with pytest.raises(ValueError, match=r"scale_by_zoom_linesearch: curv_rtol must be larger than slope_rtol"):
        gradtx.scale_by_zoom_linesearch(10, slope_rtol=0.5, curv_rtol=0.4)
    with pytest.raises(ValueError, match=r"scale_by_backtracking_linesearch: decrease_factor must be in \(0, 1\)"):
        gradtx.scale_by_backtracking_linesearch(10, decrease_factor=1.5)
    # documented extremes are accepted: no curvature test, always start from max_learning_rate
    gradtx.scale_by_zoom_linesearch(10, curv_rtol=float("inf"), approx_dec_rtol=None)
    gradtx.scale_by_backtracking_linesearch(10, increase_factor=float("inf"))


# --------------------------------------------------------------------------------------------
# interoperability, jit, sharding
# --------------------------------------------------------------------------------------------


def test_states_are_read_by_either_libraries_value_and_grad_from_state():
    w = jnp.array([-1.2, 1.0])
    for make, read in ((gradtx.lbfgs, optax.value_and_grad_from_state),
                       (optax.lbfgs, gradtx.value_and_grad_from_state)):
        solver = make()
        state = solver.init(w)
        value, grad = jax.value_and_grad(rosenbrock)(w)
        updates, state = solver.update(grad, state, w, value=value, grad=grad, value_fn=rosenbrock)
        stored_value, stored_grad = read(rosenbrock)(gradtx.apply_updates(w, updates), state=state)
        assert float(stored_value) == float(state[2].value) and stored_grad.tolist() == state[2].grad.tolist()


def test_lbfgs_inside_optax_chain_receives_the_objective():
    w = jnp.array([-1.2, 1.0])
    ours = optax.chain(gradtx.lbfgs(), optax.identity())
    value, grad = jax.value_and_grad(rosenbrock)(w)
    updates, _ = ours.update(grad, ours.init(w), w, value=value, grad=grad, value_fn=rosenbrock)
    ref, _ = optax.lbfgs().update(grad, optax.lbfgs().init(w), w, value=value, grad=grad, value_fn=rosenbrock)
    np.testing.assert_allclose(updates, ref, rtol=1e-6)


@pytest.mark.parametrize("search", ["zoom", "backtracking"])
def test_eager_updates_equal_jitted_ones_and_the_step_compiles_once(search):
    # optax's initial info fields are weakly typed and its jitted step compiles twice
    linesearch = gradtx.scale_by_backtracking_linesearch(10, store_grad=True) if search == "backtracking" else None
    solver = gradtx.lbfgs(linesearch=linesearch) if linesearch else gradtx.lbfgs()
    value_and_grad = gradtx.value_and_grad_from_state(rosenbrock)

    def step(w, state):
        value, grad = value_and_grad(w, state=state)
        updates, state = solver.update(grad, state, w, value=value, grad=grad, value_fn=rosenbrock)
        return gradtx.apply_updates(w, updates), state

    jitted = jax.jit(step)
    w_eager = w_jit = jnp.array([-1.2, 1.0])
    s_eager = s_jit = solver.init(w_eager)
    for _ in range(3):
        w_eager, s_eager = step(w_eager, s_eager)
        w_jit, s_jit = jitted(w_jit, s_jit)
    np.testing.assert_allclose(w_eager, w_jit, rtol=1e-5)
    assert jitted._cache_size() == 1


@pytest.mark.skipif(len(jax.devices()) < 8, reason="needs 8 (simulated) devices")
def test_lbfgs_state_is_sharded_like_the_params_from_init_on():
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    mesh = Mesh(np.array(jax.devices()[:8]), ("x",))
    w = jax.device_put(jnp.linspace(-1.0, 1.0, 16), NamedSharding(mesh, P("x")))
    solver = gradtx.lbfgs()
    value_and_grad = gradtx.value_and_grad_from_state(rosenbrock)

    @jax.jit
    def step(w, state):
        value, grad = value_and_grad(w, state=state)
        updates, state = solver.update(grad, state, w, value=value, grad=grad, value_fn=rosenbrock)
        return gradtx.apply_updates(w, updates), state

    state = solver.init(w)  # optax places the memories on one device until the first jitted step
    for when in ("init", "a jitted step"):
        for leaf in (state[0].params, state[0].updates, state[2].grad):
            assert leaf.sharding.is_equivalent_to(w.sharding, 1), when
        for memory in (state[0].diff_params_memory, state[0].diff_updates_memory):
            assert memory.sharding.is_equivalent_to(NamedSharding(mesh, P(None, "x")), 2), when
        w, state = step(w, state)


def test_under_inject_hyperparams_the_steps_are_optax():
    def zoom(m):
        return m.chain(m.sgd(1e-3), m.inject_hyperparams(m.scale_by_zoom_linesearch, static_args=("max_linesearch_steps",))(
            max_linesearch_steps=15, curv_rtol=0.8, slope_rtol=1e-3))

    def lbfgs(m):
        return m.inject_hyperparams(m.lbfgs, static_args=("memory_size", "linesearch"))(learning_rate=0.5)

    w0 = jnp.array([-1.2, 1.0])
    for build in (zoom, lbfgs):
        assert_same(_solve(gradtx, rosenbrock, w0, 10, build(gradtx)), _solve(optax, rosenbrock, w0, 10, build(optax)),
                    build.__name__)
