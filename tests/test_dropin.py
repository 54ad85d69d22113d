"""Switch the import: an optax + Flax nnx training script run with `import gradtx as optax`.

The script below is written for optax. The test runs it as written and again with its import line
replaced, and asserts the two loss curves (300 steps) and the final params are bit-identical.
"""

import subprocess
import sys

import pytest
from _env import SIMULATED_DEVICES_FLAG, user_env

_SCRIPT = '''
import jax
import jax.numpy as jnp
import optax
from flax import nnx
from sklearn.datasets import load_digits

digits = load_digits()
x = jnp.asarray(digits.data[:512] / 16.0, jnp.float32)
y = jnp.asarray(digits.target[:512])


class MLP(nnx.Module):
    def __init__(self, rngs):
        self.hidden = nnx.Linear(64, 32, rngs=rngs)
        self.norm = nnx.LayerNorm(32, rngs=rngs)
        self.out = nnx.Linear(32, 10, rngs=rngs)

    def __call__(self, x):
        return self.out(jax.nn.gelu(self.norm(self.hidden(x))))


def cross_entropy(logits, labels):
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1))


model = MLP(nnx.Rngs(0))
schedule = optax.warmup_cosine_decay_schedule(0.0, 3e-3, warmup_steps=30, decay_steps=STEPS)
tx = optax.chain(
    optax.clip_by_global_norm(1.0),
    optax.adamw(schedule, b1=0.9, b2=0.99, weight_decay=1e-3),
)
optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)


@nnx.jit
def train_step(model, optimizer, xb, yb):
    def loss_fn(model):
        return cross_entropy(model(xb), yb)

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss


losses = []
for step in range(STEPS):
    lo = (step * 64) % 512
    losses.append(train_step(model, optimizer, x[lo : lo + 64], y[lo : lo + 64]))
losses = jax.device_get(jnp.stack(losses))
final_params = jax.device_get(nnx.state(model, nnx.Param))
opt_state = optimizer.opt_state
'''


_DRIVER = """
import sys
import jax
import numpy as np

source = open(sys.argv[1]).read()
assert jax.device_count() == int(sys.argv[2]), jax.device_count()


def run(text):
    namespace = {"STEPS": 300}
    exec(compile(text, "<train script>", "exec"), namespace)
    return namespace


switched = source.replace("import optax\\n", "import gradtx as optax\\n", 1)
assert switched != source
ref, ours = run(source), run(switched)
assert type(ours["tx"]).__module__.startswith("gradtx"), type(ours["tx"])
assert ref["losses"].shape == (300,)
assert ref["losses"][-1] < 0.5 * ref["losses"][0], ref["losses"][[0, -1]]  # it trains
np.testing.assert_array_equal(ours["losses"], ref["losses"])
for a, b in zip(jax.tree.leaves(ours["final_params"]), jax.tree.leaves(ref["final_params"]), strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
# the optimizer state has optax's layout (same paths, shapes, dtypes) and the same values
ref_leaves = jax.tree_util.tree_flatten_with_path(ref["opt_state"])[0]
our_leaves = jax.tree_util.tree_flatten_with_path(ours["opt_state"])[0]
keys = [jax.tree_util.keystr(p) for p, _ in our_leaves]
assert keys == [jax.tree_util.keystr(p) for p, _ in ref_leaves], keys
for (_, a), (_, b) in zip(our_leaves, ref_leaves, strict=True):
    assert np.asarray(a).dtype == np.asarray(b).dtype
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
print("dropin-bit-identical", len(keys))
"""


@pytest.mark.slow
@pytest.mark.parametrize("devices", [1, 2])
def test_switching_the_import_gives_a_bit_identical_training_run(tmp_path, devices):
    # one device is a user's laptop (where the old fused default changed the bits), two is the
    # smallest multi-device machine: the state layout and the numbers must not depend on it.
    script, driver = tmp_path / "train.py", tmp_path / "driver.py"
    script.write_text(_SCRIPT)
    driver.write_text(_DRIVER)
    env = user_env(XLA_FLAGS=f"{SIMULATED_DEVICES_FLAG}={devices}", JAX_PLATFORMS="cpu")
    result = subprocess.run(
        [sys.executable, str(driver), str(script), str(devices)],
        env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "dropin-bit-identical" in result.stdout
