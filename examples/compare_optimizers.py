"""Compare first-order optimizers on classic 2-D test functions and on the digits MLP.

    python examples/compare_optimizers.py [--quick] [--out DIR]

Part 1 runs SGD, momentum, Nesterov, Adagrad, RMSProp, Adam and AdamW from the same start on
Rosenbrock's valley, Beale's function and the saddle x² − y², and draws the trajectories over
the contour plots (optimizer_trajectories.png) together with the loss along the way
(optimizer_losses_2d.png). Each run is one `jax.lax.scan` over the optimizer's `update`.

Part 2 trains the digits MLP of `train_digits.py` (without batch norm and dropout, which would
even out the differences between optimizers) with each optimizer under the same warmup-cosine
schedule and global-norm clipping, and plots training loss and test accuracy
(optimizer_digits.png).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from _common import (
    add_common_args,
    figure_dir,
    load_digits_data,
    make_mlp,
    make_optimizer,
    plt,
    save_figure,
    train,
)
from matplotlib.colors import LogNorm

import gradtx

NAMES = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw")
COLORS = dict(zip(NAMES, ("C0", "C1", "C2", "C3", "C4", "C5", "C6")))


# --------------------------------------------------------------------------------------------
# 2-D test functions
# --------------------------------------------------------------------------------------------


def rosenbrock(p: jax.Array) -> jax.Array:
    x, y = p[0], p[1]
    return (1.0 - x) ** 2 + 100.0 * (y - x**2) ** 2


def beale(p: jax.Array) -> jax.Array:
    x, y = p[0], p[1]
    return (1.5 - x + x * y) ** 2 + (2.25 - x + x * y**2) ** 2 + (2.625 - x + x * y**3) ** 2


def saddle(p: jax.Array) -> jax.Array:
    return p[0] ** 2 - p[1] ** 2


# name: (function, start, minimum or None, plot window (xmin, xmax, ymin, ymax), log-scaled contours,
#        learning rate per optimizer). The saddle is unbounded below: its runs are cut at SADDLE_STEPS.
PROBLEMS: dict[str, tuple] = {
    "Rosenbrock": (
        rosenbrock, (-1.2, 1.0), (1.0, 1.0), (-2.0, 2.0, -1.0, 3.0), True,
        {"sgd": 1.5e-3, "momentum": 3e-4, "nesterov": 3e-4, "adagrad": 0.5, "rmsprop": 3e-3,
         "adam": 0.05, "adamw": 0.05},
    ),
    "Beale": (
        beale, (1.0, 1.5), (3.0, 0.5), (-1.0, 4.0, -1.5, 2.0), True,
        {"sgd": 1e-2, "momentum": 2e-3, "nesterov": 2e-3, "adagrad": 0.5, "rmsprop": 1e-2,
         "adam": 0.05, "adamw": 0.05},
    ),
    "Saddle x² − y²": (
        saddle, (-1.5, 1e-3), None, (-2.0, 2.0, -2.0, 2.0), False,
        {"sgd": 0.05, "momentum": 0.01, "nesterov": 0.01, "adagrad": 0.2, "rmsprop": 0.01,
         "adam": 0.02, "adamw": 0.02},
    ),
}
# AdamW's decoupled weight decay pulls towards the origin: its fixed point is not the minimum of f.
ADAMW_WEIGHT_DECAY = 0.01
SADDLE_STEPS = 150


def make_2d_optimizer(name: str, lr: float) -> gradtx.GradientTransformation:
    if name == "sgd":
        return gradtx.sgd(lr)
    if name == "momentum":
        return gradtx.sgd(lr, momentum=0.9)
    if name == "nesterov":
        return gradtx.sgd(lr, momentum=0.9, nesterov=True)
    if name == "adagrad":
        return gradtx.adagrad(lr)
    if name == "rmsprop":
        return gradtx.rmsprop(lr)
    if name == "adam":
        return gradtx.adam(lr)
    if name == "adamw":
        return gradtx.adamw(lr, weight_decay=ADAMW_WEIGHT_DECAY)
    raise ValueError(name)


def run_2d(f: Callable, start, txs: dict[str, gradtx.GradientTransformation], num_steps: int) -> dict:
    """The `num_steps + 1` iterates of each optimizer minimizing `f` from `start`, as (n, 2) arrays.

    Each run is a `lax.scan`; all the runs on one function are compiled together.
    """

    def trajectory(tx, p0):
        def step(carry, _):
            p, state = carry
            g = jax.grad(f)(p)
            updates, state = tx.update(g, state, p)
            p = gradtx.apply_updates(p, updates)
            return (p, state), p

        _, path = jax.lax.scan(step, (p0, tx.init(p0)), None, length=num_steps)
        return jnp.concatenate([p0[None], path])

    paths = jax.jit(lambda p0: {name: trajectory(tx, p0) for name, tx in txs.items()})(
        jnp.asarray(start, jnp.float32)
    )
    return {name: np.asarray(path) for name, path in paths.items()}


def plot_trajectories(paths: dict, out) -> None:
    fig, axes = plt.subplots(1, len(PROBLEMS), figsize=(5.2 * len(PROBLEMS), 4.6))
    for ax, (title, (f, start, minimum, (x0, x1, y0, y1), log, _)) in zip(axes, PROBLEMS.items()):
        xs, ys = np.meshgrid(np.linspace(x0, x1, 300), np.linspace(y0, y1, 300))
        zs = np.asarray(f(jnp.stack([jnp.asarray(xs), jnp.asarray(ys)])))  # f on the whole grid
        if log:
            levels = np.logspace(-1, np.log10(zs.max()), 25)
            ax.contour(xs, ys, zs, levels=levels, cmap="Greys", linewidths=0.6,
                       norm=LogNorm())
        else:
            ax.contour(xs, ys, zs, levels=25, cmap="Greys", linewidths=0.6)
        for name in NAMES:
            path = paths[title][name]
            ax.plot(path[:, 0], path[:, 1], color=COLORS[name], lw=1.3, label=name)
        ax.plot(*start, "ko", ms=5)
        if minimum is not None:
            ax.plot(*minimum, "r*", ms=12)
        ax.set(xlim=(x0, x1), ylim=(y0, y1), title=title, xlabel="x", ylabel="y")
        ax.grid(False)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(NAMES), frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    save_figure(fig, out / "optimizer_trajectories.png")


def plot_2d_losses(losses: dict, out) -> None:
    fig, axes = plt.subplots(1, len(PROBLEMS), figsize=(5.2 * len(PROBLEMS), 3.6))
    for ax, (title, (_, _, _, _, log, _)) in zip(axes, PROBLEMS.items()):
        for name in NAMES:
            values = losses[title][name]
            if log:
                ax.semilogy(np.maximum(values, 1e-12), color=COLORS[name], label=name)
            else:
                ax.plot(np.clip(values, -10, None), color=COLORS[name], label=name)
        ax.set(title=title, xlabel="step", ylabel="f")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, out / "optimizer_losses_2d.png")


# --------------------------------------------------------------------------------------------
# digits
# --------------------------------------------------------------------------------------------


def plot_digits(histories: dict, out) -> None:
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    for name, h in histories.items():
        steps = np.arange(1, len(h.step_loss) + 1)
        # a running mean over one epoch makes the minibatch losses readable
        k = h.steps_per_epoch
        smooth = np.convolve(h.step_loss, np.ones(k) / k, mode="valid")
        ax_loss.semilogy(steps[k - 1:], smooth, color=COLORS[name], label=name)
        epochs = np.arange(1, len(h.epoch_test_acc) + 1)
        ax_acc.plot(epochs, h.epoch_test_acc, "o-", ms=3, color=COLORS[name], label=name)
    ax_loss.set(xlabel="step", ylabel="training loss (running mean over an epoch)", title="Digits MLP: training loss")
    ax_acc.set(xlabel="epoch", ylabel="test accuracy", title="Digits MLP: test accuracy", ylim=(0.8, 1.0))
    ax_loss.legend(fontsize=8)
    ax_acc.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    save_figure(fig, out / "optimizer_digits.png")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(parser)
    parser.add_argument("--epochs", type=int, default=None, help="digits epochs per optimizer (default 20, 4 with --quick)")
    parser.add_argument("--steps", type=int, default=1000, help="steps on the 2-D problems (default 1000)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    out = figure_dir(args.out)
    num_steps = args.steps

    paths: dict = {}
    losses: dict = {}
    for title, (f, x0, minimum, _, _, lrs) in PROBLEMS.items():
        paths[title], losses[title] = {}, {}
        steps = num_steps if minimum is not None else min(num_steps, SADDLE_STEPS)
        paths[title] = run_2d(f, x0, {name: make_2d_optimizer(name, lrs[name]) for name in NAMES}, steps)
        for name in NAMES:
            losses[title][name] = np.asarray(jax.vmap(f)(jnp.asarray(paths[title][name])))
    print(f"2-D problems, {num_steps} steps from the same start: final f (distance to the minimum); "
          f"saddle: first step with |y| > 1")
    print(f"  {'optimizer':<10}" + "".join(f"{title:>24}" for title in PROBLEMS))
    for name in NAMES:
        cells = []
        for title, (_, _, minimum, _, _, _) in PROBLEMS.items():
            path = paths[title][name]
            if minimum is not None:
                cell = f"{losses[title][name][-1]:.3g} ({np.linalg.norm(path[-1] - np.asarray(minimum)):.2g})"
            else:
                escaped = np.flatnonzero(np.abs(path[:, 1]) > 1.0)
                cell = f"step {escaped[0]}" if escaped.size else "not escaped"
            cells.append(f"{cell:>24}")
        print(f"  {name:<10}" + "".join(cells))
    plot_trajectories(paths, out)
    plot_2d_losses(losses, out)
    print(f"  ({time.perf_counter() - start:.1f} s)")

    epochs = args.epochs or (4 if args.quick else 20)
    data = load_digits_data(seed=args.seed)
    steps_per_epoch = data.x_train.shape[0] // 64
    histories = {}
    print(f"digits MLP, {epochs} epochs per optimizer, warmup-cosine schedule, global-norm clipping:")
    for name in NAMES:
        model = make_mlp(batch_norm=False, dropout=0.0, seed=args.seed)
        tx, _ = make_optimizer(name, epochs * steps_per_epoch)
        h = train(model, tx, data, epochs=epochs, seed=args.seed, progress=False)
        histories[name] = h
        print(f"  {name:<9} final train loss {h.epoch_train_loss[-1]:.4f}  test accuracy "
              f"{h.epoch_test_acc[-1]:.4f}  ({h.wall_time:.1f} s)")
    plot_digits(histories, out)
    print(f"figures written to {out}/: optimizer_trajectories.png, optimizer_losses_2d.png, optimizer_digits.png")
    print(f"wall time: {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
