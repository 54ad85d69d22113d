"""Checkpoints convert between the fused and the per-leaf layouts, across device counts.

A fused checkpoint (written with `gradtx.fusion.maybe_fuse` on one device, as fusion would be
used) is restored with orbax in this process (8 simulated CPU devices), converted with
`unfuse_state` and training continues leaf by leaf with params sharded over a `Mesh` of the 8
devices; and the reverse: a per-leaf checkpoint written here with sharded params is restored on
one device, converted with `fuse_state` and continued fused. Both continuations must follow the
uninterrupted per-leaf run (sharded, in this process).

Tolerance: leaf by leaf, `max |a - d| <= 8 * eps * max |d|` (float32 eps = 1.19e-7: 8 ulp of the
leaf's largest magnitude) for losses, params and state; measured: at most about 2.4 ulp. It is an
error scaled to the leaf, not per element, because Adam's first moment and the params pass near
zero, where a difference of a few ulp of the update is a large relative error. It is not exact
because (1) the fused path may differ from the per-leaf path by a few ulp per step
(`clip_by_global_norm` sums the squares of one buffer instead of leaf by leaf, and XLA simplifies
the bias-corrected Adam update of one buffer differently from that of many leaves: see
`gradtx/fusion.py`), and (2) one device and eight reduce the loss and the global norm in different
orders. The per-leaf continuation *on the same devices and layout* is bit-identical (asserted
below, tolerance 0).
"""

import functools
import os
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from _env import user_env
from jax.sharding import Mesh, NamedSharding, SingleDeviceSharding
from jax.sharding import PartitionSpec as P

import gradtx
from gradtx.fusion import FusedState, fuse_state, maybe_fuse, unfuse_state

HERE = os.path.dirname(os.path.abspath(__file__))
STEPS = 5  # before and after the checkpoint
ULPS = 8  # allowed error, in float32 ulp of each leaf's largest magnitude
EPS32 = float(np.finfo(np.float32).eps)


def _assert_close(actual, desired):
    """Leaf by leaf: `max |a - d| <= ULPS * eps * max |d|` (an error scaled to the leaf, not per element)."""

    def check(path, a, d):
        a, d = np.asarray(a, np.float64), np.asarray(d, np.float64)
        assert a.shape == d.shape, path
        scale = float(np.max(np.abs(d), initial=0.0))
        err = float(np.max(np.abs(a - d), initial=0.0))
        assert err <= ULPS * EPS32 * scale, (
            f"{jax.tree_util.keystr(path)}: max error {err:.3g} is {err / (EPS32 * scale):.1f} ulp of the "
            f"leaf's scale {scale:.3g} (allowed {ULPS})"
        )

    jax.tree_util.tree_map_with_path(check, actual, desired)


@functools.cache  # one transformation object: its jitted step (below) compiles once per layout
def _make_tx():
    # element-wise and reduction (clip_by_global_norm) members: maybe_fuse fuses the whole chain
    return gradtx.chain(gradtx.clip_by_global_norm(1.0), gradtx.adamw(1e-2, weight_decay=1e-2))


def _params():
    rng = np.random.default_rng(0)
    params = {f"l{i:02d}": {"w": rng.normal(size=(8, 6)), "b": rng.normal(size=(8,))} for i in range(16)}
    params["big"] = rng.normal(size=(64, 80))  # above max_leaf_size: its own array when fused
    return jax.tree.map(lambda x: jnp.asarray(0.5 * x, jnp.float32), params)


def _loss(params):
    return sum(jnp.sum((jnp.tanh(3.0 * p) - 0.2) ** 2) for p in jax.tree.leaves(params))


def _train(tx, params, state, steps):
    """`steps` jitted steps; the loss before each step and the params after it, and the state."""
    step = _jitted_step(tx)
    losses, trajectory = [], []
    for _ in range(steps):
        params, state, loss = step(params, state)
        losses.append(loss)
        trajectory.append(params)
    return losses, trajectory, state


@functools.cache
def _jitted_step(tx):
    @jax.jit
    def step(p, s):
        loss, g = jax.value_and_grad(_loss)(p)
        u, s = tx.update(g, s, p)
        return gradtx.apply_updates(p, u), s, loss

    return step


def _one_device(tree):
    device = SingleDeviceSharding(jax.devices()[0])
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=device), tree)


def _flat(tree):
    return {jax.tree_util.keystr(k): np.asarray(v) for k, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


# --------------------------------------------------------------------------------------------
# The halves that run on one device (in a subprocess, as on a user's machine)
# --------------------------------------------------------------------------------------------


def write_fused_checkpoint(path: str) -> None:
    """One device: `STEPS` fused steps, then an orbax checkpoint of params and fused state."""
    assert jax.device_count() == 1
    tx = maybe_fuse(_make_tx())
    params = _params()
    state = tx.init(params)
    assert isinstance(state, FusedState)
    _, trajectory, state = _train(tx, params, state, STEPS)
    ckpt = ocp.StandardCheckpointer()
    ckpt.save(path, {"params": trajectory[-1], "opt_state": state})
    ckpt.wait_until_finished()


def continue_fused(path: str, out: str) -> None:
    """One device: restore a per-leaf checkpoint, `fuse_state` it, `STEPS` fused steps; save them."""
    assert jax.device_count() == 1
    params0 = _params()
    target = _one_device(jax.eval_shape(lambda: {"params": params0, "opt_state": _make_tx().init(params0)}))
    restored = ocp.StandardCheckpointer().restore(path, target)
    tx = maybe_fuse(_make_tx())
    state = fuse_state(restored["opt_state"], params0)
    chex.assert_trees_all_equal_structs(state, tx.init(params0))
    losses, trajectory, state = _train(tx, restored["params"], state, STEPS)
    arrays = {"loss": np.asarray(losses)}
    for i, p in enumerate(trajectory):
        arrays.update({f"params{i}{k}": v for k, v in _flat(p).items()})
    arrays.update({f"state{k}": v for k, v in _flat(unfuse_state(state, params0)).items()})
    np.savez(out, **arrays)


def _subprocess(call: str) -> None:
    script = f"import sys; sys.path.insert(0, {HERE!r}); import test_fusion_checkpoint as t; t.{call}"
    out = subprocess.run(
        [sys.executable, "-c", script], env=user_env(JAX_PLATFORMS="cpu"), capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]


# --------------------------------------------------------------------------------------------
# This process: 8 devices, params sharded
# --------------------------------------------------------------------------------------------


def _mesh():
    return Mesh(np.array(jax.devices()[:8]), ("x",))


def _shardings(params):
    mesh = _mesh()
    return jax.tree.map(lambda x: NamedSharding(mesh, P("x")), params)


@pytest.fixture(scope="module")
def per_leaf_run():
    """The uninterrupted per-leaf run: 2 * STEPS steps with params sharded over 8 devices."""
    params = jax.device_put(_params(), _shardings(_params()))
    tx = _make_tx()
    # one jitted step, run STEPS times, then STEPS more from the state kept at half way
    first_losses, first_trajectory, half_state = _train(tx, params, tx.init(params), STEPS)
    losses, trajectory, state = _train(tx, first_trajectory[-1], half_state, STEPS)
    return params, first_losses + losses, first_trajectory + trajectory, state, half_state


def _assert_follows(losses, trajectory, state, reference):
    _, ref_losses, ref_trajectory, ref_state, _ = reference
    _assert_close(list(losses), list(ref_losses[STEPS:]))
    for step, (p, r) in enumerate(zip(trajectory, ref_trajectory[STEPS:], strict=True)):
        try:
            _assert_close(p, r)
        except AssertionError as err:
            raise AssertionError(f"step {STEPS + step + 1} differs") from err
    _assert_close(state, ref_state)


@pytest.mark.slow
@pytest.mark.skipif(len(jax.devices()) < 8, reason="needs 8 (simulated) devices")
def test_fused_checkpoint_continues_per_leaf_on_a_mesh(tmp_path, per_leaf_run):
    path = str(tmp_path / "fused")
    _subprocess(f"write_fused_checkpoint({path!r})")
    params0 = per_leaf_run[0]
    fused_tx = maybe_fuse(_make_tx())
    replicated = NamedSharding(_mesh(), P())
    target = {
        "params": jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), params0),
        "opt_state": jax.tree.map(
            lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=replicated),
            jax.eval_shape(fused_tx.init, params0),
        ),
    }
    restored = ocp.StandardCheckpointer().restore(path, target)
    assert isinstance(restored["opt_state"], FusedState)
    tx = _make_tx()
    fresh = tx.init(params0)  # per-leaf layout, every moment sharded like its param
    state = unfuse_state(restored["opt_state"], params0)
    chex.assert_trees_all_equal_structs(state, fresh)
    replicated = NamedSharding(_mesh(), P())
    state = jax.tree.map(  # moments sharded like their params, the step count replicated
        lambda x, like: jax.device_put(x, like.sharding if x.ndim else replicated), state, fresh
    )
    losses, trajectory, state = _train(tx, restored["params"], state, STEPS)
    _assert_follows(losses, trajectory, state, per_leaf_run)
    for p, r in zip(jax.tree.leaves(trajectory[-1]), jax.tree.leaves(params0), strict=True):
        assert p.sharding.is_equivalent_to(r.sharding, p.ndim)  # still sharded over the 8 devices


@pytest.mark.slow
@pytest.mark.skipif(len(jax.devices()) < 8, reason="needs 8 (simulated) devices")
def test_per_leaf_checkpoint_continues_fused_on_one_device(tmp_path, per_leaf_run):
    params0, _, ref_trajectory, _, half_state = per_leaf_run
    path, out = str(tmp_path / "per_leaf"), str(tmp_path / "fused_run.npz")
    ckpt = ocp.StandardCheckpointer()
    ckpt.save(path, {"params": ref_trajectory[STEPS - 1], "opt_state": half_state})
    ckpt.wait_until_finished()
    _subprocess(f"continue_fused({path!r}, {out!r})")
    with np.load(out) as data:
        losses = data["loss"]
        trajectory = [
            {k: data[f"params{i}{k}"] for k in _flat(params0)} for i in range(STEPS)
        ]
        state = {k[len("state"):]: data[k] for k in data.files if k.startswith("state")}
    reference = per_leaf_run
    _, ref_losses, ref_trajectory, ref_state, _ = reference
    flat_ref = ([_flat(p) for p in ref_trajectory], _flat(ref_state))
    _assert_close(list(losses), list(ref_losses[STEPS:]))
    for step in range(STEPS):
        _assert_close(trajectory[step], flat_ref[0][STEPS + step])
    _assert_close(state, flat_ref[1])


@pytest.mark.skipif(len(jax.devices()) < 8, reason="needs 8 (simulated) devices")
def test_per_leaf_checkpoint_on_the_same_devices_is_bit_identical(tmp_path, per_leaf_run):
    # the reference for the tolerance above: without a layout change nothing moves at all
    _, ref_losses, ref_trajectory, ref_state, half_state = per_leaf_run
    path = str(tmp_path / "same")
    ckpt = ocp.StandardCheckpointer()
    ckpt.save(path, {"params": ref_trajectory[STEPS - 1], "opt_state": half_state})
    ckpt.wait_until_finished()
    target = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
        {"params": ref_trajectory[STEPS - 1], "opt_state": half_state},
    )
    restored = ckpt.restore(path, target)
    losses, trajectory, state = _train(_make_tx(), restored["params"], restored["opt_state"], STEPS)
    np.testing.assert_array_equal(np.asarray(losses), np.asarray(ref_losses[STEPS:]))
    chex.assert_trees_all_equal(trajectory, ref_trajectory[STEPS:])
    chex.assert_trees_all_equal(state, ref_state)
