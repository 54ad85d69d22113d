"""Loss landscapes of the digits MLP: filter-normalised surfaces, Hessian directions, the training path.

    python examples/loss_landscape.py            # 51×51 grids, figures into docs/figures/
    python examples/loss_landscape.py --quick    # small grids and model, for CI
    python examples/loss_landscape.py --out figures/

The Flax nnx MLP of train_digits.py (64 → 256 → 128 → 10, batch norm, dropout) is trained with
`chain(clip_by_global_norm, adamw(warmup_cosine_decay_schedule))`, keeping its parameters at the
end of every epoch. Then, with the model in evaluation mode on a fixed subset of the training set:

* `gradtx.curvature.landscape` draws the loss on a 51×51 grid in the plane of two random
  filter-normalised directions (Li et al., NeurIPS 2018) through the trained parameters: one
  compiled, chunked `vmap` evaluation of all 2,601 points;
* the same along the top Hessian eigenvector (Lanczos) and a random direction, as 1-D curves;
* `gradtx.curvature.trajectory_landscape` projects the saved parameters onto their first two
  principal directions and draws the path over the loss surface in that plane.

Figures: loss_landscape.png (contour and 3-D surface), loss_landscape_trajectory.png (the path
over the PCA-plane surface, and the 1-D curves).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from _common import (
    add_common_args,
    cross_entropy,
    eval_view,
    evaluate,
    figure_dir,
    load_digits_data,
    make_mlp,
    make_optimizer,
    plt,
    save_figure,
)
from _common import train_step as common_train_step
from flax import nnx

from gradtx import curvature
from gradtx.curvature.landscape_plot import plot_contour, plot_curve, plot_surface

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(parser, default_out=None)  # type: ignore[arg-type]
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default 15, 2 with --quick)")
    parser.add_argument("--points", type=int, default=None, help="grid points per axis (default 51, 11 with --quick)")
    parser.add_argument("--samples", type=int, default=None,
                        help="training examples the loss is evaluated on (default 512, 64 with --quick)")
    args = parser.parse_args(argv)
    if args.out is None:  # the full run refreshes the documentation's figures
        args.out = "gradtx-figures" if args.quick else str(ROOT / "docs" / "figures")
    return args


def train_with_snapshots(model, data, epochs: int, batch_size: int, seed: int, per_epoch: int = 1) -> list:
    """Train in place; return the parameters (pure pytrees) at the start and `per_epoch` times an epoch."""
    steps_per_epoch = data.x_train.shape[0] // batch_size
    tx, _ = make_optimizer("adamw", epochs * steps_per_epoch)
    model.train()
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    step = nnx.cached_partial(common_train_step, model, optimizer)
    rng = np.random.default_rng(seed)

    def snapshot():
        return jax.tree.map(jnp.copy, nnx.as_pure(nnx.state(model, nnx.Param)))

    path = [snapshot()]
    n = data.x_train.shape[0]
    for _ in range(epochs):
        perm = rng.permutation(n)[: steps_per_epoch * batch_size].reshape(steps_per_epoch, batch_size)
        for i in range(steps_per_epoch):
            step(data.x_train[perm[i]], data.y_train[perm[i]])
            if (i + 1) % (steps_per_epoch // per_epoch) == 0 and (i + 1) // (steps_per_epoch // per_epoch) <= per_epoch:
                path.append(snapshot())
    if len(path) < 2 or steps_per_epoch % per_epoch:  # the last entry is the trained model
        path.append(snapshot())
    return path


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    start = time.perf_counter()
    out = figure_dir(args.out)
    epochs = args.epochs or (2 if args.quick else 15)
    points = args.points or (11 if args.quick else 51)
    samples = args.samples or (64 if args.quick else 512)

    data = load_digits_data(seed=args.seed)
    # the quick run uses a narrower MLP (64-32-10, no batch norm or dropout: less to compile),
    # trains 2 epochs and keeps 3 snapshots per epoch (a PCA plane needs a few points)
    if args.quick:
        model = make_mlp((64, 32, 10), batch_norm=False, dropout=0.0, seed=args.seed)
    else:
        model = make_mlp(seed=args.seed)
    path = train_with_snapshots(model, data, epochs, batch_size=64, seed=args.seed, per_epoch=3 if args.quick else 1)
    _, test_acc = evaluate(model, data.x_test, data.y_test)
    print(f"trained {epochs} epochs: test accuracy {test_acc:.4f}, {len(path)} saved parameter sets")

    # the loss as a pure function of the trainable parameters (evaluation mode: running batch-norm
    # statistics, no dropout); the rest of the model state is fixed
    graphdef, params, rest = nnx.split(eval_view(model), nnx.Param, ...)
    params = nnx.as_pure(params)

    def loss(params, x, y):
        return cross_entropy(nnx.merge(graphdef, params, rest)(x), y)

    subset = np.random.default_rng(args.seed).choice(data.x_train.shape[0], samples, replace=False)
    x, y = jnp.asarray(data.x_train[subset]), jnp.asarray(data.y_train[subset])
    n_params = sum(p.size for p in jax.tree.leaves(params))
    print(f"landscape: {n_params:,} parameters, loss on {samples} training examples, {points}x{points} grids")

    t0 = time.perf_counter()
    surface = curvature.landscape(loss, params, x, y, directions="random", num_points=points, span=1.0,
                                  key=args.seed, chunk_size=128)
    losses = np.asarray(surface.losses)
    t_surface = time.perf_counter() - t0
    center = losses[points // 2, points // 2]
    print(f"random filter-normalised plane: {points * points} points in {t_surface:.1f} s, "
          f"loss at the center {center:.4f}, max on the grid {losses.max():.4f}")
    i, j = np.unravel_index(np.argmin(losses), losses.shape)
    a, b = (np.asarray(c) for c in surface.coordinates)
    print(f"grid minimum {losses[i, j]:.4f} at (α, β) = ({a[i]:.2f}, {b[j]:.2f})")

    t0 = time.perf_counter()
    hess = curvature.landscape(loss, params, x, y, directions="hessian", num_directions=1, span=1.0,
                               num_points=points, hessian_iters=6 if args.quick else 40, key=args.seed)
    rand1 = curvature.landscape(loss, params, x, y, directions=(surface.directions[0],), span=1.0,
                                num_points=points)
    print(f"top Hessian eigenvalue {float(hess.eigenvalues[0]):.4g}: 1-D curves in {time.perf_counter() - t0:.1f} s")

    t0 = time.perf_counter()
    proj, plane = curvature.trajectory_landscape(loss, path, x, y, num_points=points, chunk_size=128)
    ev = np.asarray(proj.explained_variance)
    print(f"trajectory plane: explained variance {ev[0]:.3f} + {ev[1]:.3f} = {ev.sum():.3f}, "
          f"surface in {time.perf_counter() - t0:.1f} s")
    path_losses = np.asarray([float(jax.jit(loss)(p, x, y)) for p in path])

    fig = plt.figure(figsize=(11, 4.5))
    ax = fig.add_subplot(1, 2, 1)
    plot_contour(surface, ax=ax, levels=25)
    ax.plot([0], [0], "*", color="white", mec="k", ms=12)
    ax.set_title("digits MLP: random filter-normalised directions")
    ax3 = fig.add_subplot(1, 2, 2, projection="3d")
    plot_surface(surface, ax=ax3)
    ax3.set_title("the same surface in 3-D")
    fig.tight_layout()
    save_figure(fig, out / "loss_landscape.png")

    fig = plt.figure(figsize=(11, 4.5))
    ax = fig.add_subplot(1, 2, 1)
    plot_contour(plane, trajectory=proj, ax=ax, levels=25, log=True)
    ax.set(title=f"training path in its PCA plane ({100 * ev.sum():.0f}% of the variance)",
           xlabel=f"PC 1 ({100 * ev[0]:.0f}%)", ylabel=f"PC 2 ({100 * ev[1]:.0f}%)")
    ax = fig.add_subplot(1, 2, 2)
    plot_curve(hess, ax=ax, label=f"top Hessian eigenvector (λ = {float(hess.eigenvalues[0]):.3g}, unit norm)")
    plot_curve(rand1, ax=ax, label="random filter-normalised direction")
    ax.set(title="1-D slices through the trained parameters", yscale="log")
    fig.tight_layout()
    save_figure(fig, out / "loss_landscape_trajectory.png")
    print(f"figures written to {out}/: loss_landscape.png, loss_landscape_trajectory.png")
    print(f"path losses: first {path_losses[0]:.4f}, last {path_losses[-1]:.4f}")
    print(f"wall time: {time.perf_counter() - start:.1f} s")
    return {"surface": surface, "projection": proj, "plane": plane, "hessian": hess, "path_losses": path_losses}


if __name__ == "__main__":
    main()
