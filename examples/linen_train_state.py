"""gradtx with flax.linen and `flax.training.train_state.TrainState`, and mixed gradtx/optax chains.

    python examples/linen_train_state.py [--quick] [--out DIR] [--epochs N]

Trains a linen MLP on scikit-learn's digits three times, each time through
`TrainState.create(apply_fn=..., params=..., tx=...)` and `state.apply_gradients(grads=...)`:

1. `gradtx`: `gradtx.chain(gradtx.clip_by_global_norm(1.0), gradtx.adamw(schedule, weight_decay))`;
2. `optax inside gradtx`: `gradtx.chain(optax.clip_by_global_norm(1.0), gradtx.scale_by_adam(),
   optax.add_decayed_weights(wd), gradtx.scale_by_learning_rate(schedule))`;
3. `gradtx inside optax`: `optax.chain(gradtx.clip_by_global_norm(1.0), optax.adamw(schedule, ...))`.

The three are the same optimizer written three ways, so the parameters they reach agree to
float32 rounding; the script prints the largest difference. Writes linen_training.png.
"""

from __future__ import annotations

import argparse
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from _common import add_common_args, cross_entropy, figure_dir, load_digits_data, plt, save_figure
from flax.training.train_state import TrainState

import gradtx

try:  # the two mixed spellings need optax; the gradtx one (and the rest of the script) does not
    import optax
except ImportError:
    optax = None


class LinenMLP(nn.Module):
    hidden: tuple[int, ...] = (256, 128)
    num_classes: int = 10

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for width in self.hidden:
            x = nn.relu(nn.Dense(width)(x))
        return nn.Dense(self.num_classes)(x)


@jax.jit
def train_step(state: TrainState, x: jax.Array, y: jax.Array) -> tuple[TrainState, jax.Array]:
    def loss_fn(params):
        return cross_entropy(state.apply_fn({"params": params}, x), y)

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    return state.apply_gradients(grads=grads), loss


@jax.jit
def test_accuracy(state: TrainState, x: jax.Array, y: jax.Array) -> jax.Array:
    return jnp.mean(jnp.argmax(state.apply_fn({"params": state.params}, x), -1) == y)


SPELLING = {
    "optax inside gradtx": "gradtx.chain(optax.clip_by_global_norm(1.0), gradtx.scale_by_adam(), "
    "optax.add_decayed_weights(wd), gradtx.scale_by_learning_rate(schedule))",
    "gradtx inside optax": "optax.chain(gradtx.clip_by_global_norm(1.0), optax.adamw(schedule, "
    "weight_decay=wd))",
}


def make_txs(schedule, weight_decay: float) -> dict[str, gradtx.GradientTransformation]:
    ours = gradtx.chain(gradtx.clip_by_global_norm(1.0), gradtx.adamw(schedule, weight_decay=weight_decay))
    if optax is None:
        print("optax is not installed: only the gradtx spelling runs (pip install optax for the mixed ones)")
        return {"gradtx": ours}
    return {
        "gradtx": ours,
        "optax inside gradtx": gradtx.chain(
            optax.clip_by_global_norm(1.0),
            gradtx.scale_by_adam(),
            optax.add_decayed_weights(weight_decay),
            gradtx.scale_by_learning_rate(schedule),
        ),
        "gradtx inside optax": optax.chain(
            gradtx.clip_by_global_norm(1.0), optax.adamw(schedule, weight_decay=weight_decay)
        ),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(parser)
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default 30, 6 with --quick)")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    out = figure_dir(args.out)
    epochs = args.epochs or (6 if args.quick else 30)

    data = load_digits_data(seed=args.seed)
    model = LinenMLP(num_classes=data.num_classes)
    params = model.init(jax.random.key(args.seed), jnp.zeros((1, data.num_features)))["params"]
    n = data.x_train.shape[0]
    steps_per_epoch = n // args.batch_size
    total = epochs * steps_per_epoch
    schedule = gradtx.warmup_cosine_decay_schedule(0.0, 3e-3, total // 20, total, end_value=3e-5)
    x_test, y_test = jnp.asarray(data.x_test), jnp.asarray(data.y_test)

    curves, finals, accs = {}, {}, {}
    for name, tx in make_txs(schedule, weight_decay=1e-4).items():
        # gradtx transformations print as the call that made them; optax's do not
        print(f"{name}: {tx if name == 'gradtx' else SPELLING[name]}")
        state = TrainState.create(apply_fn=model.apply, params=params, tx=tx)
        rng = np.random.default_rng(args.seed)  # the same minibatches for every variant
        losses = []
        for _ in range(epochs):
            perm = rng.permutation(n)[: steps_per_epoch * args.batch_size].reshape(steps_per_epoch, -1)
            for idx in perm:
                state, loss = train_step(state, data.x_train[idx], data.y_train[idx])
                losses.append(loss)
        curves[name] = np.asarray(jax.device_get(losses))
        finals[name] = state.params
        acc = accs[name] = float(test_accuracy(state, x_test, y_test))
        print(f"  {total} steps, final loss {curves[name][-steps_per_epoch:].mean():.4f}, "
              f"test accuracy {acc:.4f}")

    reference = finals["gradtx"]
    for name in [n for n in finals if n != "gradtx"]:
        diff = jax.tree.map(lambda a, b: jnp.max(jnp.abs(a - b)), finals[name], reference)
        print(f"max |params({name}) - params(gradtx)| = {max(jax.tree.leaves(diff)):.2e}")

    fig, ax = plt.subplots(figsize=(7, 4))
    for (name, loss), style in zip(curves.items(), ("-", "--", ":")):
        k = steps_per_epoch
        ax.semilogy(np.arange(k, len(loss) + 1), np.convolve(loss, np.ones(k) / k, "valid"), style,
                    lw=1.5, label=name)
    ax.set(xlabel="step", ylabel="training loss (running mean over an epoch)",
           title="linen + TrainState: one optimizer, three spellings")
    ax.legend()
    fig.tight_layout()
    save_figure(fig, out / "linen_training.png")
    print(f"test accuracy: {accs['gradtx']:.4f}")
    print(f"figures written to {out}/: linen_training.png")
    print(f"wall time: {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
