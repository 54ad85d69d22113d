"""Bit-for-bit rows, contract entries and invalid arguments of the wrappers and combinators.

`run` (tests/_bitwise.py) applies the updates to a plain params tree, so the names that are not
transformations of a plain tree ride inside a small driver transformation, built the same way
on gradtx and on optax: `lookahead` (the slow params ride in the driver's state), the
target-network helpers `periodic_update` / `incremental_update` (a target copy in the state),
`tree_map_params` (the driver's `init` shifts the inner state's params-shaped trees),
`init_empty_state` and `microbatch` (inside a stateless transformation). Everything the driver
keeps is part of the compared state.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
from _bitwise import decay_mask, labels, nan_grads, same

import gradtx


def _norm(updates):
    return jnp.sqrt(sum(jnp.sum(x * x) for x in jax.tree.leaves(updates)))


def _mean_abs(updates):
    return {"mean_abs": sum(jnp.mean(jnp.abs(x)) for x in jax.tree.leaves(updates))}


def _lookahead_driver(m, tx):
    """`tx` (a lookahead) on `LookaheadParams(fast=params, slow=state[1])`."""

    def init(params):
        return tx.init(m.LookaheadParams.init_synced(params)), params

    def update(grads, state, params):
        inner, slow = state
        updates, inner = tx.update(grads, inner, m.LookaheadParams(fast=params, slow=slow))
        return updates.fast, (inner, m.apply_updates(slow, updates.slow))

    return m.GradientTransformation(init, update)


def _target_tracker(m, rule):
    """A fixed step `-0.05 g`, plus a target copy of the params refreshed by `rule(m, p, target, step)`."""

    def init(params):
        return jnp.zeros([], jnp.int32), params

    def update(grads, state, params):
        step, target = state
        return jax.tree.map(lambda g: -0.05 * g, grads), (step + 1, rule(m, params, target, step))

    return m.GradientTransformation(init, update)


def _shifted_init(m, tree_map_params, tx):
    """`tx` whose initial params-shaped state trees are shifted by 0.01 (through `tree_map_params`)."""
    return m.GradientTransformation(lambda p: tree_map_params(tx, lambda x: x + 0.01, tx.init(p)), tx.update)


def _scaled(u, s, p=None):  # an update without **extra_args (wrapped by with_extra_args_support)
    return jax.tree.map(lambda g: -0.1 * g, u), s


_DATA = jnp.linspace(-1.0, 1.0, 8)


def _microbatched(m, microbatch, kind, size, **kwargs):
    """A stateless step `-0.1 Σ_microbatches (g mean(x) + Σ x² p)` over the data `_DATA`."""
    accumulator = getattr(m.microbatching.AccumulationType, kind)

    def step(grads, params):
        def per_microbatch(p, x):
            return jax.tree.map(lambda g, q: g * jnp.mean(x) + jnp.sum(x * x) * q, grads, p)

        total = microbatch(per_microbatch, argnums=1, microbatch_size=size, accumulator=accumulator, **kwargs)
        return jax.tree.map(lambda u: -0.1 * u, total(params, _DATA))

    return m.stateless(step)


ROWS = [
    same("lookahead", lambda m: _lookahead_driver(m, m.lookahead(m.adam(1e-2), 5, 0.5))),
    same("lookahead_reset", lambda m: _lookahead_driver(
        m, m.lookahead(m.sgd(1e-2, momentum=0.9), sync_period=3, slow_step_size=0.8, reset_state=True))),
    same("apply_every", lambda m: m.chain(m.adam(1e-2), m.apply_every(3))),
    same("apply_every_default", lambda m: m.chain(m.apply_every(), m.scale(-0.1))),
    same("freeze", lambda m: m.chain(m.adam(1e-2), m.freeze({"a": True, "b": False}))),
    same("freeze_all", lambda m: m.chain(m.sgd(1e-2), m.freeze(True))),
    same("selective_transform", lambda m: m.selective_transform(m.adam(1e-2), freeze_mask={"a": False, "b": True})),
    same("partition", lambda m: m.partition({"vec": m.sgd(1e-2, momentum=0.9), "other": m.adam(1e-2)}, labels)),
    same("conditionally_transform", lambda m: m.chain(
        m.conditionally_transform(m.scale_by_adam(), lambda step: step % 3 != 1), m.scale(-1e-2))),
    same("conditionally_mask", lambda m: m.conditionally_mask(m.adam(1e-2), lambda step: step >= 5)),
    same("conditionally_mask_finite", lambda m: m.chain(m.zero_nans(), m.conditionally_mask(
        m.sgd(1e-2, momentum=0.5), lambda step: step % 2 == 0)), nan_grads),
    same("monitor", lambda m: m.chain(
        m.sgd(1e-2, momentum=0.9),
        m.monitor({"norm": _norm, "ema": m.measure_with_ema(_norm, 0.9), "abs": _mean_abs}),
        m.clip_by_global_norm(1.0),
    )),
    same("measure_with_ema", lambda m: m.chain(
        m.monitor({"ema": m.measure_with_ema(_mean_abs, 0.8, debias=False)}), m.adam(1e-2))),
    same("snapshot", lambda m: m.chain(m.sgd(1e-2), m.snapshot("norm", _norm), m.clip_by_global_norm(0.5))),
    same("incremental_update", lambda m: _target_tracker(m, lambda m, p, t, s: m.incremental_update(p, t, 0.1))),
    same("periodic_update", lambda m: _target_tracker(m, lambda m, p, t, s: m.periodic_update(p, t, s, 4))),
    same("tree_map_params", lambda m: _shifted_init(
        m, m.tree_map_params, m.chain(m.masked(m.scale_by_adam(), decay_mask), m.sgd(1e-2, momentum=0.9)))),
    same("init_empty_state", lambda m: m.GradientTransformation(m.init_empty_state, _scaled)),
    same("with_extra_args_support", lambda m: m.chain(
        m.with_extra_args_support(m.GradientTransformation(m.init_empty_state, _scaled)), m.trace(0.9))),
    same("microbatch", lambda m: _microbatched(m, m.microbatch, "SUM", 2)),
    same("microbatch_mean", lambda m: _microbatched(m, m.microbatch, "MEAN", 4)),
    same("microbatch_running_mean", lambda m: _microbatched(m, m.microbatch, "RUNNING_MEAN", 2, num_real_microbatches=3)),
]

OPTIMIZERS: dict[str, Callable[[], gradtx.GradientTransformation]] = {}


def _plain(x):
    return x


INVALID = [
    (gradtx.lookahead, dict(fast_optimizer=gradtx.sgd(0.1), sync_period=0, slow_step_size=0.5), "sync_period"),
    (gradtx.lookahead, dict(fast_optimizer=gradtx.sgd(0.1), sync_period=2, slow_step_size=1.5), "slow_step_size"),
    (gradtx.lookahead, dict(fast_optimizer=gradtx.sgd(0.1), sync_period=2, slow_step_size=0.5, reset_state=1),
     "reset_state"),
    (gradtx.lookahead, dict(fast_optimizer="sgd", sync_period=2, slow_step_size=0.5), "fast_optimizer"),
    (gradtx.apply_every, dict(k=0), "k"),
    (gradtx.apply_every, dict(k=2.5), "k"),
    (gradtx.freeze, dict(mask={"a": 1.0}), "mask"),
    (gradtx.freeze, dict(mask=decay_mask), "mask"),
    (gradtx.selective_transform, dict(optimizer=gradtx.sgd(0.1), freeze_mask="all"), "freeze_mask"),
    (gradtx.selective_transform, dict(optimizer=None, freeze_mask=True), "optimizer"),
    (gradtx.conditionally_mask, dict(inner=gradtx.sgd(0.1), should_transform_fn=3), "should_transform_fn"),
    (gradtx.conditionally_transform, dict(inner=gradtx.sgd(0.1), should_transform_fn=_plain, forward_extra_args=1),
     "forward_extra_args"),
    (gradtx.conditionally_transform, dict(inner=_plain, should_transform_fn=_plain), "inner"),
    (gradtx.measure_with_ema, dict(measure=_plain, decay=1.5), "decay"),
    (gradtx.measure_with_ema, dict(measure=_plain, decay=0.9, debias=None), "debias"),
    (gradtx.measure_with_ema, dict(measure=_plain, decay=0.9, accumulator_dtype=jnp.int32), "accumulator_dtype"),
    (gradtx.measure_with_ema, dict(measure=3.0, decay=0.9), "measure"),
    (gradtx.monitor, dict(measures=[_plain]), "measures"),
    (gradtx.monitor, dict(measures={"x": 3}), "measures"),
    (gradtx.snapshot, dict(measure_name=3, measure=_plain), "measure_name"),
    (gradtx.snapshot, dict(measure_name="x", measure=None), "measure"),
    (gradtx.incremental_update, dict(new_tensors=jnp.ones(2), old_tensors=jnp.ones(2), step_size=2.0), "step_size"),
    (gradtx.periodic_update, dict(new_tensors=jnp.ones(2), old_tensors=jnp.ones(2), steps=3, update_period=0),
     "update_period"),
    (gradtx.periodic_update, dict(new_tensors=jnp.ones(2), old_tensors=jnp.ones(2), steps=1.5, update_period=2),
     "steps"),
    (gradtx.with_extra_args_support, dict(tx=3), "tx"),
    (gradtx.microbatch, dict(fun=_plain, argnums=0, microbatch_size=0), "microbatch_size"),
    (gradtx.microbatch, dict(fun=_plain, argnums="x", microbatch_size=2), "argnums"),
    (gradtx.microbatch, dict(fun=_plain, argnums=0, microbatch_size=2, accumulator="sum"), "accumulator"),
    (gradtx.microbatch, dict(fun=_plain, argnums=(0, 1), microbatch_size=2, in_axes=(0, 1, 2)), "in_axes"),
    (gradtx.microbatch, dict(fun=_plain, argnums=0, microbatch_size=2, num_real_microbatches=-1),
     "num_real_microbatches"),
]
