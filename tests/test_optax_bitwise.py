"""Bit-for-bit agreement with optax 0.2.8 (CPU, float32, under `jax.jit` and eagerly).

One table, `ROWS`: every optimizer, transformation, chain, wrapper and schedule that gradtx
shares with optax joins it with one row `(name, gradtx factory, optax factory)`. Each row runs a
jitted 25-step trajectory on a 6-leaf tree (the gradients depend on the params, so
a one-ulp difference compounds), and every params, updates and optimizer-state leaf must be equal
bit for bit to optax's, with the same state layout (NamedTuple types and field names, tree paths).
The optimizer rows call the gradtx aliases exactly as users do.

`SCHEDULES` compares every schedule value bit for bit at each step `0..N` (and far past the end),
under jit and eagerly. The one deliberate difference, a fractional-power polynomial schedule
where optax's jitted value is NaN after the transition, is checked at the end.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _bitwise import (
    BF16,
    Row,
    assert_same,
    decay_mask,
    family_modules,
    labels,
    nan_grads,
    row_of,
    run,
    same,
    sparse_grads,
)

import gradtx

SCHEDULE_BUILDERS: list[tuple[str, Callable[[Any], Any]]] = [
    ("constant", lambda m: m.constant_schedule(0.3)),
    ("linear", lambda m: m.linear_schedule(0.1, 0.01, 17, transition_begin=4)),
    ("linear_up_from_0", lambda m: m.linear_schedule(0.0, 2e-3, 7)),
    ("linear_41", lambda m: m.linear_schedule(0.0, 1.0, 41)),
    ("polynomial_2", lambda m: m.polynomial_schedule(1.0, 0.01, 2, 23, 3)),
    # T a power of 2 (1/T exact); for other T see test_fractional_power_after_the_transition
    ("polynomial_2.5", lambda m: m.polynomial_schedule(1.0, 0.01, 2.5, 16, 3)),
    ("polynomial_0.5", lambda m: m.polynomial_schedule(0.3, 0.0, 0.5, 8)),
    ("exponential", lambda m: m.exponential_decay(1.0, 7, 0.7)),
    ("exponential_stair", lambda m: m.exponential_decay(0.5, 5, 0.5, transition_begin=6, staircase=True)),
    ("exponential_end", lambda m: m.exponential_decay(0.5, 3, 0.5, end_value=0.05)),
    ("exponential_grow", lambda m: m.exponential_decay(0.1, 4, 1.5, end_value=1.0)),
    ("piecewise_constant", lambda m: m.piecewise_constant_schedule(0.5, {5: 0.5, 12: 0.1, 20: 2.0})),
    ("piecewise_constant_none", lambda m: m.piecewise_constant_schedule(0.5)),
    ("piecewise_linear", lambda m: m.piecewise_interpolate_schedule("linear", 1.0, {4: 0.1, 10: 0.01, 25: 5.0})),
    ("piecewise_cosine", lambda m: m.piecewise_interpolate_schedule("cosine", 2.0, {0: 0.5, 6: 0.25, 19: 3.0})),
    ("cosine", lambda m: m.cosine_decay_schedule(0.2, 15)),
    ("cosine_alpha_exponent", lambda m: m.cosine_decay_schedule(0.2, 13, alpha=0.1, exponent=2.0)),
    ("warmup_cosine", lambda m: m.warmup_cosine_decay_schedule(0.0, 1e-2, 5, 30)),
    ("warmup_cosine_end", lambda m: m.warmup_cosine_decay_schedule(0.1, 1.0, 7, 23, end_value=0.01, exponent=0.5)),
    ("warmup_cosine_w0", lambda m: m.warmup_cosine_decay_schedule(0.1, 0.5, 0, 20)),
    ("warmup_exponential", lambda m: m.warmup_exponential_decay_schedule(
        0.0, 1.0, 6, 3, 0.8, transition_begin=2, staircase=True, end_value=0.2)),
    ("warmup_exponential_smooth", lambda m: m.warmup_exponential_decay_schedule(0.01, 0.3, 5, 4, 0.5)),
    ("warmup_constant", lambda m: m.warmup_constant_schedule(0.0, 1.0, 11)),
    ("sgdr", lambda m: m.sgdr_schedule([
        dict(init_value=0.0, peak_value=1.0, warmup_steps=3, decay_steps=10),
        dict(init_value=0.1, peak_value=0.5, warmup_steps=2, decay_steps=9, end_value=0.01),
        dict(init_value=0.05, peak_value=0.25, warmup_steps=0, decay_steps=6, exponent=2.0),
    ])),
    ("cosine_onecycle", lambda m: m.cosine_onecycle_schedule(20, 0.5)),
    ("cosine_onecycle_args", lambda m: m.cosine_onecycle_schedule(23, 1.0, 0.2, 10.0, 100.0)),
    ("linear_onecycle", lambda m: m.linear_onecycle_schedule(20, 0.5)),
    ("linear_onecycle_args", lambda m: m.linear_onecycle_schedule(23, 1.0, 0.1, 0.6, 5.0, 50.0)),
    ("join", lambda m: m.join_schedules(
        [m.constant_schedule(0.1), m.linear_schedule(0.1, 1.0, 7), m.cosine_decay_schedule(1.0, 9)], [3, 11])),
]
_SCHEDULE = dict(SCHEDULE_BUILDERS)


def _scheduled(names: list[str]) -> Row:
    """One row for a few schedules: `chain(scale_by_schedule(s1), ..., scale(-0.1))` (fewer compiles;
    a one-ulp difference in any factor changes the product; every value is also checked alone below)."""
    return same(
        f"scale_by_schedule[{','.join(names)}]",
        lambda m: m.chain(*(m.scale_by_schedule(_SCHEDULE[n](m)) for n in names), m.scale(-0.1)),
    )


_SCHEDULE_GROUPS = [[n for n, _ in SCHEDULE_BUILDERS][i : i + 4] for i in range(0, len(SCHEDULE_BUILDERS), 4)]


ROWS: list[Any] = [
    # ------------------------------------------------------------------ optimizer aliases
    same("sgd", lambda m: m.sgd(1e-2)),
    same("sgd_momentum", lambda m: m.sgd(1e-2, momentum=0.9)),
    same("sgd_nesterov", lambda m: m.sgd(1e-2, momentum=0.9, nesterov=True)),
    same("sgd_momentum_bf16", lambda m: m.sgd(1e-2, momentum=0.9, accumulator_dtype=BF16)),
    same("adam", lambda m: m.adam(1e-2)),
    same("adam_eps_root", lambda m: m.adam(1e-2, b1=0.8, b2=0.99, eps=1e-6, eps_root=1e-8)),
    same("adam_mu_bf16", lambda m: m.adam(1e-2, mu_dtype=BF16)),
    same("adam_nesterov", lambda m: m.adam(1e-2, nesterov=True)),
    same("adamw", lambda m: m.adamw(1e-2)),
    same("adamw_mask", lambda m: m.adamw(1e-2, weight_decay=0.1, mask=decay_mask)),
    same("nadam", lambda m: m.nadam(1e-2)),
    same("nadamw", lambda m: m.nadamw(1e-2, weight_decay=0.05)),
    same("amsgrad", lambda m: m.amsgrad(1e-2)),
    same("adamax", lambda m: m.adamax(1e-2)),
    same("adamax_sparse", lambda m: m.adamax(1e-2, b1=0.8, eps=1e-6), sparse_grads),
    same("adagrad", lambda m: m.adagrad(1e-2)),
    same("adagrad_sparse", lambda m: m.adagrad(1e-1, initial_accumulator_value=0.0, eps=1e-10), sparse_grads),
    same("rmsprop", lambda m: m.rmsprop(1e-2)),
    same("rmsprop_centered_momentum", lambda m: m.rmsprop(1e-2, centered=True, momentum=0.9)),
    same("rmsprop_nesterov", lambda m: m.rmsprop(1e-2, momentum=0.9, nesterov=True, initial_scale=1.0)),
    same("rmsprop_bias_correction", lambda m: m.rmsprop(1e-2, bias_correction=True)),
    same("rmsprop_eps_outside", lambda m: m.rmsprop(1e-2, eps_in_sqrt=False, centered=True)),
    same("lion", lambda m: m.lion(1e-3)),
    same("lion_wd_mu_bf16", lambda m: m.lion(1e-3, weight_decay=0.1, mu_dtype=BF16)),
    same("lamb", lambda m: m.lamb(1e-2)),
    same("lamb_wd", lambda m: m.lamb(1e-2, weight_decay=0.01, mask=decay_mask)),
    # ------------------------------------------------------------------ optimizers with schedules
    same("adam_warmup_cosine", lambda m: m.adam(m.warmup_cosine_decay_schedule(0.0, 1e-2, 5, 30))),
    same("sgd_linear", lambda m: m.sgd(m.linear_schedule(1e-2, 1e-3, 20))),
    same("sgd_exponential", lambda m: m.sgd(m.exponential_decay(1e-2, 3, 0.7, staircase=True))),
    same("adamw_schedule_decay", lambda m: m.adamw(1e-2, weight_decay=m.cosine_decay_schedule(0.1, 20))),
    same("lion_onecycle", lambda m: m.lion(m.cosine_onecycle_schedule(20, 1e-3))),
    # ------------------------------------------------------------------ transformations
    same("scale", lambda m: m.scale(-0.1)),
    same("scale_by_learning_rate", lambda m: m.scale_by_learning_rate(0.1)),
    same("scale_by_learning_rate_no_flip", lambda m: m.scale_by_learning_rate(0.1, flip_sign=False)),
    same("scale_by_learning_rate_schedule", lambda m: m.scale_by_learning_rate(m.linear_schedule(0.1, 0.0, 9))),
    same("trace", lambda m: m.trace(0.9)),
    same("trace_nesterov", lambda m: m.trace(0.9, nesterov=True)),
    same("trace_bf16", lambda m: m.trace(0.8, accumulator_dtype=BF16)),
    same("ema", lambda m: m.ema(0.9)),
    same("ema_no_debias", lambda m: m.ema(0.9, debias=False)),
    same("ema_bf16", lambda m: m.ema(0.7, accumulator_dtype=BF16)),
    same("scale_by_rms", lambda m: m.scale_by_rms()),
    same("scale_by_rms_options", lambda m: m.scale_by_rms(0.8, 1e-6, 0.5, eps_in_sqrt=False, bias_correction=True)),
    same("scale_by_stddev", lambda m: m.scale_by_stddev()),
    same("scale_by_stddev_options", lambda m: m.scale_by_stddev(0.8, 1e-6, 0.5, eps_in_sqrt=False,
                                                                 bias_correction=True)),
    same("scale_by_rss", lambda m: m.scale_by_rss()),
    same("scale_by_adam", lambda m: m.scale_by_adam()),
    same("scale_by_adam_options", lambda m: m.scale_by_adam(0.8, 0.99, 1e-6, 1e-8, mu_dtype=BF16, nesterov=True)),
    same("scale_by_amsgrad", lambda m: m.scale_by_amsgrad()),
    same("scale_by_amsgrad_mu_bf16", lambda m: m.scale_by_amsgrad(0.8, 0.99, mu_dtype=BF16)),
    same("scale_by_adamax", lambda m: m.scale_by_adamax()),
    same("scale_by_lion", lambda m: m.scale_by_lion()),
    same("scale_by_lion_smooth", lambda m: m.scale_by_lion(mode="smooth", smooth_beta=2.0)),
    same("scale_by_lion_refined", lambda m: m.scale_by_lion(0.8, 0.9, mu_dtype=BF16, mode="refined")),
    same("scale_by_trust_ratio", lambda m: m.scale_by_trust_ratio()),
    same("scale_by_trust_ratio_options", lambda m: m.scale_by_trust_ratio(0.5, 0.02, 1e-3), sparse_grads),
    same("scale_by_sign", lambda m: m.chain(m.scale_by_sign(), m.scale(-1e-2)), sparse_grads),
    same("add_decayed_weights", lambda m: m.add_decayed_weights(0.1)),
    same("add_decayed_weights_mask", lambda m: m.add_decayed_weights(0.1, mask=decay_mask)),
    same("add_decayed_weights_schedule", lambda m: m.add_decayed_weights(m.exponential_decay(0.1, 5, 0.5))),
    same("add_noise", lambda m: m.add_noise(0.01, 0.55, key=jax.random.key(3))),
    same("clip", lambda m: m.chain(m.clip(0.3), m.sgd(0.1))),
    same("clip_by_global_norm", lambda m: m.chain(m.clip_by_global_norm(0.5), m.sgd(0.1))),
    same("zero_nans", lambda m: m.chain(m.zero_nans(), m.sgd(0.1)), nan_grads),
    same("identity", lambda m: m.chain(m.identity(), m.scale(-0.01))),
    same("set_to_zero", lambda m: m.set_to_zero()),
    same("stateless", lambda m: m.chain(m.stateless(lambda u, p: jax.tree.map(lambda g, x: g * x * x, u, p)),
                                        m.scale(-0.1))),
    same("stateless_with_tree_map", lambda m: m.stateless_with_tree_map(lambda g, p: -0.1 * g * jnp.cos(p))),
    # ------------------------------------------------------------------ chains and wrappers
    same("chain_clip_adam", lambda m: m.chain(m.clip_by_global_norm(1.0), m.adam(1e-3))),
    same("chain_clip_adamw", lambda m: m.chain(m.clip_by_global_norm(0.5), m.adamw(1e-3, weight_decay=0.1))),
    same("chain_by_hand", lambda m: m.chain(m.scale_by_adam(), m.add_decayed_weights(1e-2), m.scale_by_learning_rate(
        m.warmup_cosine_decay_schedule(0.0, 1e-2, 4, 25)))),
    same("named_chain", lambda m: m.named_chain(("clip", m.clip(0.5)), ("adam", m.adam(1e-2)))),
    same("masked", lambda m: m.chain(m.masked(m.scale_by_adam(), decay_mask), m.scale(-1e-2))),
    same("multi_transform", lambda m: m.multi_transform(
        {"vec": m.adam(1e-2), "other": m.sgd(1e-2, momentum=0.9)}, labels)),
    same("apply_if_finite", lambda m: m.apply_if_finite(m.adam(1e-2), 3), nan_grads),
    same("multi_steps", lambda m: m.MultiSteps(m.adam(1e-2), every_k_schedule=3)),
    same("inject_hyperparams", lambda m: m.inject_hyperparams(m.adam)(
        learning_rate=m.linear_schedule(1e-2, 1e-3, 10), b1=0.8)),
    same("inject_stateful_hyperparams", lambda m: m.inject_stateful_hyperparams(m.sgd)(
        learning_rate=m.exponential_decay(1e-2, 4, 0.5), momentum=0.9)),
    same("flatten", lambda m: m.flatten(m.adam(1e-2))),
    *(_scheduled(group) for group in _SCHEDULE_GROUPS),
]


# ----------------------------------------------------------------------------------------------
# the trajectory
# ----------------------------------------------------------------------------------------------




ROWS += [row for module in family_modules() for row in module.ROWS]


@pytest.mark.parametrize("row", ROWS, ids=[row_of(r).name for r in ROWS])
def test_trajectory_bit_identical_to_optax(row):
    (ours_init, ours), (ref_init, ref) = run(((gradtx, row.ours()), (optax, row.theirs())), row.grads)
    assert_same(ours_init, ref_init, "init state")
    for k, part in enumerate(("params", "state", "updates")):
        assert_same(ours[k], ref[k], f"{part} (steps stacked on axis 0)")


def _names_used(fn: Callable) -> set[str]:
    """Every global / attribute name in `fn`'s code and in the code of the lambdas inside it."""
    names, stack = set(), [fn.__code__]
    for cell in fn.__closure__ or ():  # `same` rows: the builder is a closure variable
        if hasattr(cell.cell_contents, "__code__"):
            stack.append(cell.cell_contents.__code__)
    while stack:
        code = stack.pop()
        names |= set(code.co_names)
        stack += [c for c in code.co_consts if hasattr(c, "co_names")]
    return names


def test_the_table_covers_every_name_shared_with_optax():
    not_transformations = {
        "apply_updates", "current_hyperparams", "describe", "hyperparams", "skip_large_updates", "skip_not_finite",
        # plain functions, compared with optax in tests/test_numerics_parity.py
        "bias_correction", "global_norm", "matrix_inverse_pth_root", "multi_normal", "nnls", "power_iteration",
        "safe_increment", "safe_int32_increment", "safe_norm", "safe_root_mean_squares",
        "update_infinity_moment", "update_moment", "update_moment_per_elem_norm",
        # losses: plain functions, compared with optax bit for bit in tests/test_losses.py
        *gradtx.losses.__all__,
    }
    shared = {
        n for n in gradtx.__all__
        if n[0].islower() and hasattr(optax, n) and callable(getattr(gradtx, n)) and n not in not_transformations
    }
    used = set().union(*(_names_used(row_of(r).ours) for r in ROWS), *(_names_used(b) for _, b in SCHEDULE_BUILDERS))
    assert shared <= used, f"names shared with optax that no row of ROWS uses: {sorted(shared - used)}"


# ----------------------------------------------------------------------------------------------
# schedules, value by value
# ----------------------------------------------------------------------------------------------

SCHEDULE_STEPS = [*range(41), 100, 1000, 2**31 - 1]


def _compare_schedule(ours, ref, name):
    jit_ours, jit_ref = jax.jit(ours), jax.jit(ref)
    for t in SCHEDULE_STEPS:
        assert_same(jit_ours(jnp.int32(t)), jit_ref(jnp.int32(t)), f"{name} jit step {t}")
    for t in [*SCHEDULE_STEPS[:25:2], *SCHEDULE_STEPS[-3:]]:
        assert_same(ours(t), ref(t), f"{name} eager int step {t}")
        assert_same(ours(jnp.int32(t)), ref(jnp.int32(t)), f"{name} eager int32 step {t}")


@pytest.mark.parametrize(("name", "build"), SCHEDULE_BUILDERS, ids=[n for n, _ in SCHEDULE_BUILDERS])
def test_schedule_values_bit_identical(name, build):
    _compare_schedule(build(gradtx), build(optax), name)


@pytest.mark.parametrize("transition_steps", [3, 7, 11, 14])
def test_fractional_power_after_the_transition(transition_steps):
    # The one deliberate difference. Under jit XLA divides by T through its reciprocal, so optax's
    # base 1 - t/T is about -3e-8 from t = T on for these T, and a fractional power of it is NaN;
    # gradtx clamps the base at 0 and returns end_value. Every value before the end is identical.
    args = (1.0, 0.01, 2.5, transition_steps, 3)
    ours, ref = jax.jit(gradtx.polynomial_schedule(*args)), jax.jit(optax.polynomial_schedule(*args))
    end = 3 + transition_steps
    for t in range(end):
        assert_same(ours(jnp.int32(t)), ref(jnp.int32(t)), f"step {t}")
    assert np.isnan(ref(jnp.int32(end))), "optax no longer gives NaN here: make gradtx identical again"
    for t in (end, end + 1, 1000):
        assert float(ours(jnp.int32(t))) == np.float32(0.01)
    # integer powers keep optax's value (an ulp off end_value for some T), bit for bit
    for power in (1, 2, 3):
        _compare_schedule(gradtx.polynomial_schedule(1.0, 0.01, power, transition_steps, 3),
                          optax.polynomial_schedule(1.0, 0.01, power, transition_steps, 3), f"power {power}")
