"""Issue 7: state safety, printable optimizers, counters, low precision, complex leaves."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx
from gradtx.inspection import current_hyperparams


def _tree():
    return {"w": jnp.ones((3, 4)), "b": jnp.full((5,), 0.5), "s": jnp.array(2.0)}


# ---------------------------------------------------------------------------- state safety


@pytest.mark.parametrize(
    "tx, other",
    [
        (gradtx.sgd(0.1), gradtx.adam(1e-3)),
        (gradtx.adam(1e-3), gradtx.sgd(0.1, momentum=0.9)),
        (gradtx.rmsprop(1e-3), gradtx.adagrad(1e-2)),
        (gradtx.scale_by_adam(), gradtx.trace(0.9)),
    ],
)
def test_foreign_state_raises_type_error_naming_both_types(tx, other):
    p = _tree()
    foreign = other.init(p)
    with pytest.raises(TypeError) as info:
        tx.update(p, foreign, p)
    message = str(info.value)
    expected = {type(s).__name__ for s in jax.tree.leaves(tx.init(p), is_leaf=lambda x: hasattr(x, "_fields"))}
    received = {type(s).__name__ for s in jax.tree.leaves(foreign, is_leaf=lambda x: hasattr(x, "_fields"))}
    assert all(name in message for name in expected | received), message


WRAPPED = {
    "chain": lambda: gradtx.chain(gradtx.clip_by_global_norm(1.0), gradtx.adam(1e-3)),
    "masked": lambda: gradtx.masked(gradtx.adam(1e-3), {"w": True, "b": False, "s": True}),
    "multi_transform": lambda: gradtx.multi_transform(
        {"a": gradtx.adam(1e-3), "b": gradtx.sgd(0.1, momentum=0.9)}, {"w": "a", "b": "b", "s": "a"}
    ),
    "multi_steps": lambda: gradtx.MultiSteps(gradtx.adam(1e-3), 3).gradient_transformation(),
    "apply_if_finite": lambda: gradtx.apply_if_finite(gradtx.adam(1e-3), 2),
}


@pytest.mark.parametrize("name", sorted(WRAPPED))
def test_gradient_shape_mismatch_names_path_and_shapes(name):
    tx = WRAPPED[name]()
    p = _tree()
    state = tx.init(p)
    bad = dict(p, w=jnp.ones((4, 3)))
    with pytest.raises(ValueError, match=r"\['w'\].*\(4, 3\).*\(3, 4\)|\['w'\].*\(3, 4\).*\(4, 3\)"):
        jax.jit(tx.update)(bad, state, p)


@pytest.mark.parametrize("name", sorted(WRAPPED))
def test_gradient_structure_mismatch_names_leaf(name):
    tx = WRAPPED[name]()
    p = _tree()
    state = tx.init(p)
    bad = {"w": p["w"], "b": p["b"], "extra": jnp.ones(2), "s": p["s"]}
    with pytest.raises((ValueError, TypeError), match="extra"):
        tx.update(bad, state, bad)


# ---------------------------------------------------------------------------- printing


def test_repr_of_chain_shows_every_hyperparameter():
    tx = gradtx.chain(gradtx.clip_by_global_norm(1.0), gradtx.adam(learning_rate=0.003))
    assert repr(tx) == (
        "chain(clip_by_global_norm(max_norm=1.0), adam(learning_rate=0.003, b1=0.9, b2=0.999, "
        "eps=1e-08, eps_root=0.0, mu_dtype=None, nesterov=False))"
    )
    init, update = tx  # still a NamedTuple of (init, update)
    assert callable(init) and callable(update)


def test_repr_of_schedule_and_wrapper_is_readable():
    sched = gradtx.cosine_decay_schedule(0.1, 100)
    assert repr(sched).startswith("cosine_decay_schedule(init_value=0.1, decay_steps=100")
    tx = gradtx.masked(gradtx.sgd(sched), {"a": True})
    assert "<function" not in repr(tx) and "cosine_decay_schedule(" in repr(tx)


def test_current_hyperparams_evaluates_schedule_at_current_step():
    sched = gradtx.warmup_cosine_decay_schedule(0.0, 1.0, 10, 100)
    tx = gradtx.chain(gradtx.clip_by_global_norm(2.0), gradtx.adamw(sched, weight_decay=0.01))
    p = _tree()
    state = tx.init(p)
    step = jax.jit(tx.update)
    for k in range(7):
        hp = current_hyperparams(tx, state)
        assert hp["transforms"][0] == {"max_norm": 2.0}
        np.testing.assert_allclose(hp["transforms"][1]["learning_rate"], float(sched(k)), rtol=1e-6)
        assert hp["transforms"][1]["weight_decay"] == 0.01
        _, state = step(p, state, p)


def test_current_hyperparams_reads_injected_values():
    tx = gradtx.inject_hyperparams(gradtx.adam)(learning_rate=0.1, b1=0.8)
    state = tx.init(_tree())
    state.hyperparams["learning_rate"] = jnp.asarray(0.05)
    hp = current_hyperparams(tx, state)
    assert hp["learning_rate"] == pytest.approx(0.05) and hp["b1"] == pytest.approx(0.8)


# ---------------------------------------------------------------------------- counters


@pytest.mark.parametrize("make", [lambda: gradtx.adam(1e-3), lambda: gradtx.sgd(gradtx.exponential_decay(0.1, 10, 0.5))])
def test_step_counter_saturates_at_int32_max(make):
    tx = make()
    p = _tree()
    state = tx.init(p)
    big = jnp.int32(2**31 - 3)
    state = jax.tree.map(lambda x: jnp.full_like(x, big) if x.dtype == jnp.int32 else x, state)
    step = jax.jit(tx.update)
    for _ in range(5):
        updates, state = step(p, state, p)
        chex.assert_tree_all_finite(updates)
    counts = [x for x in jax.tree.leaves(state) if x.dtype == jnp.int32]
    assert counts and all(int(c) == 2**31 - 1 for c in counts)


# ---------------------------------------------------------------------------- precision


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
@pytest.mark.parametrize(
    "name", ["adam", "adamw", "rmsprop", "adagrad", "nadam", "amsgrad", "adamax", "lamb"]
)
def test_low_precision_zero_gradients_stay_finite(dtype, name):
    tx = getattr(gradtx, name)(1e-3)
    params = jax.tree.map(lambda x: x.astype(dtype), _tree())
    state = tx.init(params)
    zeros = jax.tree.map(jnp.zeros_like, params)
    step = jax.jit(tx.update)
    for _ in range(3):
        updates, state = step(zeros, state, params)
        chex.assert_tree_all_finite(updates)
        chex.assert_tree_all_finite(state)
        params = gradtx.apply_updates(params, updates)
    assert all(x.dtype == dtype for x in jax.tree.leaves(params))


def test_float16_adam_where_optax_gives_nan():
    params = {"w": jnp.ones(4, jnp.float16)}
    zeros = {"w": jnp.zeros(4, jnp.float16)}
    ref_updates, _ = optax.adam(1e-3, eps_root=1e-8).update(zeros, optax.adam(1e-3, eps_root=1e-8).init(params))
    ours, _ = gradtx.adam(1e-3, eps_root=1e-8).update(zeros, gradtx.adam(1e-3, eps_root=1e-8).init(params))
    chex.assert_tree_all_finite(ours)
    np.testing.assert_array_equal(np.asarray(ours["w"], np.float32), 0.0)
    # Documents why: optax's float16 path divides 0 by an underflowed (zero) denominator.
    assert not np.all(np.isfinite(np.asarray(ref_updates["w"], np.float32)))


def test_mu_dtype_controls_first_moment():
    tx = gradtx.adam(1e-3, mu_dtype=jnp.bfloat16)
    state = tx.init(_tree())
    adam_state = state[0]
    assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(adam_state.mu))
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(adam_state.nu))


def test_complex_adam_second_moment_is_conjugate_correct():
    g = jnp.array([1.0 + 2.0j, -3.0j])
    tx = gradtx.scale_by_adam(b1=0.9, b2=0.999, eps=1e-8)
    updates, state = tx.update(g, tx.init(g))
    nu = np.asarray(state.nu)
    np.testing.assert_allclose(nu.real, 0.001 * np.abs(np.asarray(g)) ** 2, rtol=1e-6)
    np.testing.assert_allclose(nu.imag, 0.0)
    expected = (0.1 * g / 0.1) / (np.sqrt(0.001 * np.abs(g) ** 2 / 0.001) + 1e-8)
    np.testing.assert_allclose(np.asarray(updates), expected, rtol=1e-5)


def test_global_norm_clipping_of_zeros_is_zero():
    z = jax.tree.map(jnp.zeros_like, _tree())
    for tx in (gradtx.clip_by_global_norm(0.0), gradtx.clip_by_global_norm(1.0), gradtx.clip_by_norm(1.0)):
        out, _ = tx.update(z, tx.init(z))
        chex.assert_trees_all_equal(out, z)
