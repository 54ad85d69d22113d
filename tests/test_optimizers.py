"""Contract table: every gradtx optimizer alias against optax 0.2.8, step by step.

Each row builds the same optimizer in gradtx and in optax (schedules from each library's own
schedule module), runs both for `STEPS` steps on a nested float32 pytree whose gradients depend
on the current params, and compares every update and every params iterate.
"""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl.testing import parameterized

import gradtx

STEPS = 40
RTOL, ATOL = 2e-5, 2e-6  # float32; same formulas, so differences are a few ulps


def _mask(_lib):
    return {"dense": {"b": False, "w": True}, "scale": False}


# (case id, optimizer name, kwargs builder taking the library module: gradtx or optax)
CONTRACT = [
    ("sgd", "sgd", lambda lib: dict(learning_rate=0.1)),
    ("sgd_momentum", "sgd", lambda lib: dict(learning_rate=0.05, momentum=0.9)),
    ("sgd_nesterov", "sgd", lambda lib: dict(learning_rate=0.05, momentum=0.8, nesterov=True)),
    ("sgd_sched", "sgd",
     lambda lib: dict(learning_rate=lib.cosine_decay_schedule(0.1, 30, alpha=0.1), momentum=0.9)),
    ("sgd_bf16_acc", "sgd", lambda lib: dict(learning_rate=0.05, momentum=0.9, accumulator_dtype=jnp.bfloat16)),
    ("adagrad", "adagrad", lambda lib: dict(learning_rate=0.1)),
    ("adagrad_args", "adagrad", lambda lib: dict(learning_rate=0.3, initial_accumulator_value=0.0, eps=1e-4)),
    ("rmsprop", "rmsprop", lambda lib: dict(learning_rate=0.01)),
    ("rmsprop_centered", "rmsprop", lambda lib: dict(learning_rate=0.01, centered=True, initial_scale=1.0)),
    ("rmsprop_momentum_nesterov", "rmsprop",
     lambda lib: dict(learning_rate=0.01, decay=0.95, momentum=0.9, nesterov=True)),
    ("rmsprop_bias_eps_out", "rmsprop",
     lambda lib: dict(learning_rate=0.01, eps_in_sqrt=False, bias_correction=True, eps=1e-3)),
    ("rmsprop_sched", "rmsprop",
     lambda lib: dict(learning_rate=lib.exponential_decay(0.02, 10, 0.5, staircase=True), momentum=0.5)),
    ("adam", "adam", lambda lib: dict(learning_rate=0.01)),
    ("adam_args", "adam", lambda lib: dict(learning_rate=0.02, b1=0.8, b2=0.99, eps=1e-6, eps_root=1e-8)),
    ("adam_nesterov", "adam", lambda lib: dict(learning_rate=0.01, nesterov=True)),
    ("adam_sched", "adam", lambda lib: dict(learning_rate=lib.warmup_cosine_decay_schedule(0.0, 0.05, 8, 40))),
    ("adam_bf16_mu", "adam", lambda lib: dict(learning_rate=0.01, mu_dtype=jnp.bfloat16)),
    ("adamw", "adamw", lambda lib: dict(learning_rate=0.01)),
    ("adamw_mask", "adamw", lambda lib: dict(learning_rate=0.01, weight_decay=0.1, mask=_mask(lib))),
    ("adamw_mask_fn", "adamw",
     lambda lib: dict(learning_rate=0.01, weight_decay=0.2, mask=lambda p: jax.tree.map(lambda x: x.ndim > 0, p))),
    ("adamw_sched_wd", "adamw",
     lambda lib: dict(learning_rate=lib.linear_schedule(0.02, 0.0, 40),
                      weight_decay=lib.linear_schedule(0.0, 0.3, 20))),
    ("nadam", "nadam", lambda lib: dict(learning_rate=0.01)),
    ("nadamw", "nadamw", lambda lib: dict(learning_rate=0.01, weight_decay=0.1)),
    ("amsgrad", "amsgrad", lambda lib: dict(learning_rate=0.01)),
    ("amsgrad_nobias", "amsgrad",
     lambda lib: dict(learning_rate=0.01, b2=0.9, bias_correction_mu=False, bias_correction_nu=False)),
    ("adamax", "adamax", lambda lib: dict(learning_rate=0.02)),
    ("adamax_sched", "adamax",
     lambda lib: dict(learning_rate=lib.piecewise_constant_schedule(0.02, {10: 0.5, 25: 0.1}), b2=0.99)),
    ("lion", "lion", lambda lib: dict(learning_rate=0.003)),
    ("lion_args", "lion", lambda lib: dict(learning_rate=0.001, b1=0.95, b2=0.98, weight_decay=0.1,
                                           mask=_mask(lib))),
    ("lamb", "lamb", lambda lib: dict(learning_rate=0.01)),
    ("lamb_sched", "lamb",
     lambda lib: dict(learning_rate=lib.warmup_exponential_decay_schedule(0.0, 0.02, 5, 10, 0.7),
                      weight_decay=0.02, mask=_mask(lib))),
]
_BY_ID = {case_id: (name, build) for case_id, name, build in CONTRACT}

# bfloat16 buffers: gradtx's transforms form `decay·buffer` in float32 before storing the buffer in
# bfloat16, optax multiplies in bfloat16; the two round differently (about 2**-8 relative per
# step), so these rows get a bfloat16-sized tolerance. Every other row uses (RTOL, ATOL).
LOW_PRECISION_TOL = {"sgd_bf16_acc": (5e-2, 3e-2), "adam_bf16_mu": (5e-2, 1e-2)}


def _problem():
    """A nested float32 pytree and `STEPS` noise trees; the gradient is `noise_k + 0.5·params`."""
    rng = np.random.default_rng(0)
    params = {
        "dense": {"w": rng.normal(size=(3, 4)), "b": rng.normal(size=(5,))},
        "scale": np.asarray(rng.normal()),
    }
    params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params)
    noise = jax.tree.map(
        lambda x: jnp.asarray(rng.normal(size=(STEPS, *x.shape)), jnp.float32), params
    )
    return params, noise


def _grad(params, noise, k):
    return jax.tree.map(lambda n, p: n[k] + 0.5 * p, noise, params)


def _run(lib, tx, update):
    """`STEPS` steps of `update` from the shared start; stacked updates and params."""
    params, noise = _problem()
    state = tx.init(params)
    all_updates, all_params = [], []
    for k in range(STEPS):
        updates, state = update(_grad(params, noise, k), state, params)
        params = lib.apply_updates(params, updates)
        all_updates.append(updates)
        all_params.append(params)
    stack = lambda trees: jax.tree.map(lambda *xs: np.stack(xs), *trees)  # noqa: E731
    return stack(all_updates), stack(all_params)


@functools.cache
def _optax_trajectory(case_id):
    """optax's updates and params for the `STEPS` steps (eager, computed once per case)."""
    name, build = _BY_ID[case_id]
    tx = getattr(optax, name)(**build(optax))
    return _run(optax, tx, tx.update)


def _deviation(ours, ref, rtol=RTOL, atol=ATOL):
    """(largest absolute difference, largest difference relative to the tolerance)."""
    diffs = jax.tree.leaves(jax.tree.map(lambda a, b: np.abs(np.asarray(a, np.float64) - b), ours, ref))
    scaled = jax.tree.leaves(
        jax.tree.map(lambda a, b: np.abs(np.asarray(a, np.float64) - b) / (atol + rtol * np.abs(b)), ours, ref)
    )
    return max(float(d.max()) for d in diffs), max(float(s.max()) for s in scaled)


class OptaxContractTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*[(case_id, case_id) for case_id, _, _ in CONTRACT])
    def test_matches_optax_step_by_step(self, case_id):
        name, build = _BY_ID[case_id]
        tx = getattr(gradtx, name)(**build(gradtx))
        ref_updates, ref_params = _optax_trajectory(case_id)
        rtol, atol = LOW_PRECISION_TOL.get(case_id, (RTOL, ATOL))
        if case_id in LOW_PRECISION_TOL:  # the buffers really are bfloat16
            dtypes = {leaf.dtype for leaf in jax.tree.leaves(tx.init(_problem()[0]))}
            assert jnp.dtype(jnp.bfloat16) in dtypes
        ours_updates, ours_params = _run(gradtx, tx, self.variant(tx.update))
        chex.assert_tree_all_finite(ours_params)
        for k in (0, 1, STEPS // 2, STEPS - 1):  # pinpoint the first failing step
            chex.assert_trees_all_close(
                jax.tree.map(lambda x, k=k: x[k], ours_updates),
                jax.tree.map(lambda x, k=k: x[k], ref_updates),
                rtol=rtol, atol=atol, custom_message=f"{case_id}: updates at step {k}",
            )
        chex.assert_trees_all_close(ours_updates, ref_updates, rtol=rtol, atol=atol)
        chex.assert_trees_all_close(ours_params, ref_params, rtol=rtol, atol=atol)
        dev_u, scaled_u = _deviation(ours_updates, ref_updates, rtol, atol)
        dev_p, scaled_p = _deviation(ours_params, ref_params, rtol, atol)
        print(f"{case_id}: largest |gradtx - optax| over {STEPS} steps: updates {dev_u:.3g}, "
              f"params {dev_p:.3g} (at most {max(scaled_u, scaled_p):.2f} of the tolerance)")
        # the optimizer really moved the params (a silent no-op would pass the comparison
        # only if optax did nothing too, which the reference rules out here)
        assert float(np.max(np.abs(ref_updates["dense"]["w"]))) > 1e-4

    @chex.variants(with_jit=True, without_jit=True)
    def test_state_has_int32_counts_and_schedule_starts_at_zero(self):
        seen = []

        def lr(count):
            seen.append(count)
            return jnp.where(count == 0, 0.5, 100.0)

        tx = gradtx.sgd(lr)
        params = {"w": jnp.ones(3)}
        state = tx.init(params)
        counts = [leaf for leaf in jax.tree.leaves(state) if jnp.issubdtype(leaf.dtype, jnp.integer)]
        assert counts and all(c.dtype == jnp.int32 for c in counts)
        updates, state = self.variant(tx.update)({"w": jnp.full(3, 2.0)}, state, params)
        chex.assert_trees_all_close(updates, {"w": jnp.full(3, -1.0)}, rtol=0, atol=0)
        updates, _ = self.variant(tx.update)({"w": jnp.full(3, 2.0)}, state, params)
        chex.assert_trees_all_close(updates, {"w": jnp.full(3, -200.0)}, rtol=1e-6, atol=0)


def test_the_step_by_step_table_covers_the_first_aliases():
    # every alias joins tests/test_contract.py; this older table compares the first eleven with
    # optax step by step (bit-for-bit trajectories of every alias are in tests/test_optax_bitwise.py)
    first = {"sgd", "adagrad", "rmsprop", "adam", "adamw", "nadam", "nadamw", "amsgrad", "adamax", "lion", "lamb"}
    assert {name for _, name, _ in CONTRACT} == first
    assert first <= set(gradtx.optimizers.__all__)
