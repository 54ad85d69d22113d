"""Code shared by the examples: the digits data, the Flax nnx MLP, the training loop, plotting.

Nothing here downloads anything: scikit-learn ships the 8×8 digits data set (1,797 images,
10 classes) inside the package.
"""

from __future__ import annotations

import argparse
import itertools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import gradtx

__all__ = [
    "OPTIMIZERS",
    "DigitsData",
    "History",
    "accuracy",
    "add_common_args",
    "cross_entropy",
    "eval_view",
    "evaluate",
    "figure_dir",
    "load_digits_data",
    "make_mlp",
    "make_optimizer",
    "plt",
    "save_figure",
    "train",
]


# --------------------------------------------------------------------------------------------
# plotting: matplotlib without a display
# --------------------------------------------------------------------------------------------

os.environ.setdefault("MPLBACKEND", "Agg")
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 100, "axes.grid": True, "grid.alpha": 0.3})


def save_figure(fig: Any, path: str | os.PathLike) -> None:
    """Save `fig` as a compact PNG (256-colour palette; line plots lose nothing visible) and close it."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    buffer.seek(0)
    image = Image.open(buffer).convert("RGB")
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


def figure_dir(out: str | os.PathLike) -> Path:
    """Create (if needed) and return the folder the figures are written into."""
    path = Path(out)
    path.mkdir(parents=True, exist_ok=True)
    return path


def add_common_args(parser: argparse.ArgumentParser, default_out: str = "gradtx-figures") -> None:
    """The flags every example has: --quick, --out, --seed."""
    parser.add_argument("--quick", action="store_true", help="a short run (for CI and smoke tests)")
    parser.add_argument("--out", default=default_out, help="folder the PNG figures are written into")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice")


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DigitsData:
    """Standardized 8×8 digits, flattened to 64 features, with a stratified train/test split."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def num_features(self) -> int:
        return self.x_train.shape[1]

    @property
    def num_classes(self) -> int:
        return int(self.y_train.max()) + 1


def load_digits_data(seed: int = 0, test_fraction: float = 0.2) -> DigitsData:
    """scikit-learn's bundled digits, split stratified (80/20 by default) with a fixed seed.

    Features are standardized with the mean and standard deviation of the *training* split
    (pixels that are constant in the training split are only centred).
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = digits.data.astype(np.float32)
    y = digits.target.astype(np.int32)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_fraction, stratify=y, random_state=seed
    )
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    std = np.where(std > 1e-6, std, 1.0)
    return DigitsData(
        x_train=((x_train - mean) / std).astype(np.float32),
        y_train=y_train,
        x_test=((x_test - mean) / std).astype(np.float32),
        y_test=y_test,
    )


# --------------------------------------------------------------------------------------------
# model and loss
# --------------------------------------------------------------------------------------------


class MLP(nnx.Module):
    """`Linear → BatchNorm → ReLU → Dropout` blocks, then a linear classifier head."""

    def __init__(
        self,
        sizes: tuple[int, ...],
        *,
        batch_norm: bool = True,
        dropout: float = 0.1,
        rngs: nnx.Rngs,
    ):
        self.hidden = nnx.List()
        for n_in, n_out in itertools.pairwise(sizes[:-1]):
            block: list[Any] = [nnx.Linear(n_in, n_out, rngs=rngs)]
            if batch_norm:
                block.append(nnx.BatchNorm(n_out, momentum=0.9, rngs=rngs))
            block.append(nnx.relu)
            if dropout > 0:
                block.append(nnx.Dropout(dropout, rngs=rngs))
            self.hidden.append(nnx.Sequential(*block))
        self.head = nnx.Linear(sizes[-2], sizes[-1], rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        for block in self.hidden:
            x = block(x)
        return self.head(x)


def make_mlp(
    sizes: tuple[int, ...] = (64, 256, 128, 10),
    *,
    batch_norm: bool = True,
    dropout: float = 0.1,
    seed: int = 0,
) -> MLP:
    """The MLP used by the digits examples (64 → 256 → 128 → 10 by default)."""
    return MLP(sizes, batch_norm=batch_norm, dropout=dropout, rngs=nnx.Rngs(params=seed, dropout=seed + 1))


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy, `-mean_i log softmax(z_i)[y_i]`, with integer labels (gradtx.losses)."""
    return jnp.mean(gradtx.losses.softmax_cross_entropy_with_integer_labels(logits, labels))


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return jnp.mean(jnp.argmax(logits, axis=-1) == labels)


# --------------------------------------------------------------------------------------------
# optimizers
# --------------------------------------------------------------------------------------------

# name -> (peak learning rate, factory of a learning rate or schedule)
OPTIMIZERS: dict[str, tuple[float, Callable[..., gradtx.GradientTransformation]]] = {
    "adamw": (3e-3, lambda lr, wd: gradtx.adamw(lr, weight_decay=wd)),
    "adam": (3e-3, lambda lr, wd: gradtx.adam(lr)),
    "sgd": (0.1, lambda lr, wd: gradtx.sgd(lr)),
    "momentum": (0.03, lambda lr, wd: gradtx.sgd(lr, momentum=0.9)),
    "nesterov": (0.03, lambda lr, wd: gradtx.sgd(lr, momentum=0.9, nesterov=True)),
    "rmsprop": (1e-3, lambda lr, wd: gradtx.rmsprop(lr)),
    "adagrad": (0.03, lambda lr, wd: gradtx.adagrad(lr)),
}


def make_optimizer(
    name: str,
    total_steps: int,
    *,
    learning_rate: float | None = None,
    weight_decay: float = 1e-4,
    clip_norm: float = 1.0,
    warmup_fraction: float = 0.05,
) -> tuple[gradtx.GradientTransformation, Callable[[Any], Any]]:
    """`chain(clip_by_global_norm, <optimizer>(warmup_cosine_decay_schedule))` and its schedule."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {sorted(OPTIMIZERS)}")
    default_lr, factory = OPTIMIZERS[name]
    peak = default_lr if learning_rate is None else learning_rate
    schedule = gradtx.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=peak,
        warmup_steps=max(1, int(warmup_fraction * total_steps)),
        decay_steps=total_steps,
        end_value=0.01 * peak,
    )
    tx = gradtx.chain(gradtx.clip_by_global_norm(clip_norm), factory(schedule, weight_decay))
    return tx, schedule


# --------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------


@nnx.jit
def train_step(model: MLP, optimizer: nnx.Optimizer, x: jax.Array, y: jax.Array):
    """One optimizer step on a minibatch; returns the minibatch loss and accuracy."""

    def loss_fn(model: MLP):
        logits = model(x)
        return cross_entropy(logits, y), logits

    (loss, logits), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
    optimizer.update(model, grads)
    return loss, accuracy(logits, y)


@nnx.jit
def eval_step(model: MLP, x: jax.Array, y: jax.Array):
    logits = model(x)
    return cross_entropy(logits, y), accuracy(logits, y)


def eval_view(model: MLP) -> MLP:
    """The model in evaluation mode (running batch statistics, no dropout), sharing its variables."""
    return nnx.view(model, deterministic=True, use_running_average=True, raise_if_not_found=False)


def evaluate(model: MLP, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Loss and accuracy of the model in evaluation mode."""
    loss, acc = eval_step(eval_view(model), jnp.asarray(x), jnp.asarray(y))
    return float(loss), float(acc)


@dataclass
class History:
    """Per-step training loss and per-epoch train/test metrics."""

    step_loss: list[float] = field(default_factory=list)
    epoch_train_loss: list[float] = field(default_factory=list)
    epoch_train_acc: list[float] = field(default_factory=list)
    epoch_test_loss: list[float] = field(default_factory=list)
    epoch_test_acc: list[float] = field(default_factory=list)
    wall_time: float = 0.0

    @property
    def steps_per_epoch(self) -> int:
        return len(self.step_loss) // max(1, len(self.epoch_train_loss))


def train(
    model: MLP,
    tx: gradtx.GradientTransformation,
    data: DigitsData,
    *,
    epochs: int,
    batch_size: int = 64,
    seed: int = 0,
    progress: bool = True,
    desc: str = "train",
) -> History:
    """Train `model` in place with `tx` through `nnx.Optimizer`; shuffled minibatches each epoch.

    The last incomplete minibatch of each epoch is dropped, so every step has the same shapes
    and the step is compiled once.
    """
    from tqdm.auto import tqdm

    model.train()
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    # cached_partial traverses the (model, optimizer) graph once instead of at every call
    step = nnx.cached_partial(train_step, model, optimizer)
    eval_model = eval_view(model)
    n = data.x_train.shape[0]
    steps_per_epoch = n // batch_size
    x_test, y_test = jnp.asarray(data.x_test), jnp.asarray(data.y_test)
    rng = np.random.default_rng(seed)
    history = History()
    start = time.perf_counter()
    bar = tqdm(total=epochs * steps_per_epoch, desc=desc, disable=not progress, mininterval=0.5,
               dynamic_ncols=True)
    for _ in range(epochs):
        # shuffle on the host: one permutation per epoch, minibatches are plain NumPy slices
        perm = rng.permutation(n)[: steps_per_epoch * batch_size].reshape(steps_per_epoch, batch_size)
        x_epoch, y_epoch = data.x_train[perm], data.y_train[perm]
        losses, accs = [], []
        for i in range(steps_per_epoch):
            loss, acc = step(x_epoch[i], y_epoch[i])
            losses.append(loss)
            accs.append(acc)
            bar.update(1)
        losses_np = np.asarray(jax.device_get(losses))
        history.step_loss.extend(losses_np.tolist())
        history.epoch_train_loss.append(float(losses_np.mean()))
        history.epoch_train_acc.append(float(np.mean(jax.device_get(accs))))
        test_loss, test_acc = (float(v) for v in eval_step(eval_model, x_test, y_test))
        history.epoch_test_loss.append(test_loss)
        history.epoch_test_acc.append(test_acc)
        bar.set_postfix(
            loss=f"{history.epoch_train_loss[-1]:.4f}",
            acc=f"{history.epoch_train_acc[-1]:.3f}",
            test_acc=f"{test_acc:.3f}",
        )
    bar.close()
    history.wall_time = time.perf_counter() - start
    return history
