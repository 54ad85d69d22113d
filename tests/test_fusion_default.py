"""The optimizer aliases fuse many small leaves by default on one device, and never on several."""

import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _env import user_env

import gradtx
from gradtx.fusion import FusedState

_SINGLE_DEVICE_SCRIPT = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np, optax
    import gradtx
    from gradtx.fusion import FusedState, disabled

    assert jax.device_count() == 1
    params = {f"layer{i}": {"w": jnp.full((4, 5), 0.1 * i), "b": jnp.zeros(5)} for i in range(12)}
    grads = jax.tree.map(lambda p: jnp.sin(p + 1.0), params)
    for name in ["adam", "adamw", "sgd", "rmsprop", "adagrad", "lion", "nadam", "amsgrad", "adamax"]:
        tx, ref = getattr(gradtx, name)(1e-2), getattr(optax, name)(1e-2)
        state, rstate = tx.init(params), ref.init(params)
        assert isinstance(state, FusedState), (name, type(state))
        p, r = params, params
        step = jax.jit(tx.update)
        for _ in range(5):
            u, state = step(grads, state, p)
            ru, rstate = ref.update(grads, rstate, r)
            p, r = gradtx.apply_updates(p, u), optax.apply_updates(r, ru)
        for a, b in zip(jax.tree.leaves(p), jax.tree.leaves(r)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    with disabled():
        assert not isinstance(gradtx.adam(1e-3).init(params), FusedState)
    # a mask makes weight decay per-leaf: never fused
    assert not isinstance(gradtx.adamw(1e-3, mask=jax.tree.map(lambda _: True, params)).init(params), FusedState)
    # nnx.Optimizer: init sees a State of Variables, update a State of arrays (paths differ)
    from flax import nnx

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.big = nnx.Linear(100, 100, rngs=rngs)  # 10,000 elements: kept whole
            self.small = nnx.List([nnx.Linear(4, 4, rngs=rngs) for _ in range(6)])

        def __call__(self, x, z):
            return self.big(x).sum() + sum(layer(z).sum() for layer in self.small)

    model = Net(nnx.Rngs(0))
    opt = nnx.Optimizer(model, gradtx.adam(1e-3), wrt=nnx.Param)
    assert isinstance(opt.opt_state, FusedState)
    before = jax.tree.map(lambda x: x.copy(), nnx.state(model, nnx.Param))
    opt.update(model, nnx.grad(lambda m: m(jnp.ones((1, 100)), jnp.ones((1, 4))))(model))
    moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), before, nnx.state(model, nnx.Param))
    assert all(0 < d <= 1.001e-3 for d in jax.tree.leaves(moved)), moved
    print("fused-default-ok")
    """
)


@pytest.mark.slow
def test_aliases_fuse_by_default_on_one_device_and_match_optax():
    env = user_env(JAX_PLATFORMS="cpu")
    out = subprocess.run(
        [sys.executable, "-c", _SINGLE_DEVICE_SCRIPT], env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "fused-default-ok" in out.stdout


@pytest.mark.skipif(len(jax.devices()) < 2, reason="needs several (simulated) devices")
def test_aliases_do_not_fuse_on_several_devices():
    params = {f"b{i}": jnp.zeros(4) for i in range(12)}
    state = gradtx.adam(1e-3).init(params)
    assert not isinstance(state, FusedState)
    assert set(np.shape(x) for x in jax.tree.leaves(state[0].mu)) == {(4,)}
