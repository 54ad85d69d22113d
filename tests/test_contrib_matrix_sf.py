"""optax.contrib's Schedule-Free (and Muon, SAM): known answers, validation, contract properties.

The bit-for-bit comparison with optax is in `tests/_rows_contrib_matrix_sf.py`.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _rows_contrib_matrix_sf import INVALID

import gradtx
from gradtx import contrib

# --------------------------------------------------------------------------------------------
# Schedule-Free
# --------------------------------------------------------------------------------------------


def test_schedule_free_sgd_known_answer_two_steps():
    # f = x^2/2 (gradient y), gamma = 0.5, b1 = 0.5, constant lr => c_1 = 1, c_2 = 1/2
    tx = contrib.schedule_free(gradtx.sgd(0.5), 0.5, b1=0.5)
    y = jnp.array([4.0])
    s = tx.init(y)
    u, s = tx.update(y, s, y)  # z1 = 4 - 2 = 2; x1 = z1 = 2; y1 = 0.5*2 + 0.5*2 = 2
    y = y + u
    np.testing.assert_allclose(y, [2.0])
    np.testing.assert_allclose(contrib.schedule_free_eval_params(s, y), [2.0])
    u, s = tx.update(y, s, y)  # z2 = 2 - 1 = 1; x2 = (2 + 1)/2 = 1.5; y2 = 0.75 + 0.5 = 1.25
    y = y + u
    np.testing.assert_allclose(y, [1.25])
    np.testing.assert_allclose(s.z, [1.0])
    np.testing.assert_allclose(contrib.schedule_free_eval_params(s, y), [1.5])
    assert int(s.step_count) == 3
    np.testing.assert_allclose(s.weight_sum, 0.5)  # two weights 0.5**2
    np.testing.assert_allclose(s.max_lr, 0.5)


def test_schedule_free_state_layout_and_dtypes():
    p = {"w": jnp.ones((2, 3), jnp.bfloat16), "b": jnp.ones(3, jnp.float32)}
    s = contrib.schedule_free_adamw(state_dtype=jnp.float32).init(p)
    assert type(s).__name__ == "ScheduleFreeState"
    assert s._fields == ("b1", "weight_sum", "step_count", "max_lr", "base_optimizer_state", "z")
    assert s.b1.dtype == jnp.bfloat16 and s.max_lr.dtype == jnp.bfloat16  # the lowest dtype
    assert s.step_count.dtype == jnp.int32 and int(s.step_count) == 1
    assert s.z["w"].dtype == jnp.float32


def test_schedule_free_eval_params_rejects_other_states():
    with pytest.raises(ValueError, match="ScheduleFreeState"):
        contrib.schedule_free_eval_params(gradtx.sgd(0.1).init(jnp.ones(2)), jnp.ones(2))


def test_schedule_free_needs_params():
    tx = contrib.schedule_free_sgd(0.1)
    s = tx.init(jnp.ones(2))
    with pytest.raises(ValueError, match="params"):
        tx.update(jnp.ones(2), s)


def test_schedule_free_passes_extra_args_to_the_base_optimizer():
    seen = {}

    def update(u, s, p=None, **extra):
        seen.update(extra)
        return u, s

    base = gradtx.GradientTransformation(lambda p: gradtx.EmptyState(), update)
    tx = contrib.schedule_free(base, 0.1)
    tx.update(jnp.ones(2), tx.init(jnp.ones(2)), jnp.ones(2), value=3.0)
    assert seen == {"value": 3.0}


def test_schedule_free_names_live_in_contrib_only():
    for name in ("schedule_free", "schedule_free_sgd", "schedule_free_adamw", "ScheduleFreeState"):
        assert name in contrib.__all__
        assert name not in gradtx.__all__
    assert "schedule_free" in repr(contrib.schedule_free_sgd(0.1))


@pytest.mark.parametrize(
    "make",
    [lambda: contrib.schedule_free_sgd(0.1), lambda: contrib.schedule_free_adamw(0.05)],
    ids=["sgd", "adamw"],
)
def test_schedule_free_aliases_minimise_a_parabola_jit_equals_eager(make):
    tx = make()
    target = jnp.array([1.0, -2.0, 0.5])

    def step(p, s):
        u, s = tx.update(p - target, s, p)
        return gradtx.apply_updates(p, u), s

    p0 = jnp.zeros(3)
    p, s = p0, tx.init(p0)
    pj, sj = p0, tx.init(p0)
    jstep = jax.jit(step)
    for _ in range(300):
        p, s = step(p, s)
        pj, sj = jstep(pj, sj)
    np.testing.assert_allclose(p, pj, rtol=1e-6, atol=1e-7)
    assert jstep._cache_size() == 1
    x = contrib.schedule_free_eval_params(s, p)
    np.testing.assert_allclose(x, target, atol=5e-2)


def test_schedule_free_sgd_matches_optax_doc_example():
    def f(x):
        return jnp.sum(x**2)

    ours, theirs = contrib.schedule_free_sgd(), optax.contrib.schedule_free_sgd()
    p = q = jnp.array([1.0, 2.0, 3.0])
    s, t = ours.init(p), theirs.init(q)
    for _ in range(5):
        u, s = ours.update(jax.grad(f)(p), s, p)
        v, t = theirs.update(jax.grad(f)(q), t, q)
        p, q = gradtx.apply_updates(p, u), optax.apply_updates(q, v)
        np.testing.assert_allclose(
            contrib.schedule_free_eval_params(s, p), optax.contrib.schedule_free_eval_params(t, q), rtol=1e-6
        )


# --------------------------------------------------------------------------------------------
# invalid arguments
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("factory,kwargs,arg", INVALID, ids=[f"{f.__name__}-{a}" for f, _, a in INVALID])
def test_invalid_arguments_name_the_argument(factory, kwargs, arg):
    with pytest.raises((ValueError, TypeError), match=arg):
        factory(**kwargs)
