"""Gradient descent stuck at a saddle point, and `gradtx.second_order.saddle_escape` leaving it.

    python examples/saddle_escape.py [--quick] [--out DIR]

1. f(x, y) = x² − y² + y⁴/4 has a strict saddle at the origin and minima at (0, ±√2). Started on
   the saddle's stable manifold (y = 0), gradient descent converges to the saddle and stays;
   `chain(saddle_escape(...), sgd(lr))` notices the vanishing gradient, finds the direction of
   negative curvature with Lanczos and steps along it; `perturbed_gradient` (random kicks) is
   shown for comparison. The Hessian eigenvalues along each path are plotted next to the paths
   (saddle_escape_2d.png).
2. Matrix factorization f(U, V) = ½‖UVᵀ − M‖² with U = V = 0: the gradient is exactly zero, so
   gradient descent never moves, while saddle_escape escapes this saddle and the later ones
   (rank-deficient factorizations) and reaches f ≈ 0 (saddle_escape_factorization.png).

Each point is classified with `gradtx.curvature.classify_critical_point`.
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from _common import add_common_args, figure_dir, plt, save_figure

import gradtx
from gradtx import curvature
from gradtx.second_order import perturbed_gradient, saddle_escape


def f2d(p: jax.Array) -> jax.Array:
    return p[0] ** 2 - p[1] ** 2 + p[1] ** 4 / 4


def factorization_loss(params: dict, m: jax.Array) -> jax.Array:
    return 0.5 * jnp.sum((params["U"] @ params["V"].T - m) ** 2)


def run(tx: gradtx.GradientTransformation, value_fn: Callable, params, num_steps: int):
    """Iterates of `tx` on `value_fn` from `params` (one lax.scan) and the final state."""

    @jax.jit
    def go(params):
        def step(carry, _):
            p, state = carry
            g = jax.grad(value_fn)(p)
            updates, state = tx.update(g, state, p, value_fn=value_fn)
            p = gradtx.apply_updates(p, updates)
            return (p, state), (p, value_fn(p))

        (_, state), (path, values) = jax.lax.scan(step, (params, tx.init(params)), None, length=num_steps)
        return path, values, state

    return go(params)


def describe_point(name: str, loss: Callable, params, *args, num_iters: int = 20) -> None:
    report = curvature.classify_critical_point(loss, params, *args, num_iters=num_iters, grad_tol=1e-3,
                                               eig_tol=1e-4)
    print(f"  {name:<34} {report.kind:<13} |grad| = {report.grad_norm:.2e}  "
          f"lambda_min = {report.min_eigenvalue:+.4f}  lambda_max = {report.max_eigenvalue:+.4f}")


def two_d(out, num_steps: int, seed: int) -> None:
    start = jnp.array([1.5, 0.0])
    lr = 0.1
    methods = {
        "gradient descent": gradtx.sgd(lr),
        "saddle_escape + sgd": gradtx.chain(
            saddle_escape(grad_tol=1e-3, curvature_tol=1e-3, step_size=0.5, num_iters=2, key=seed),
            gradtx.sgd(lr),
        ),
        "perturbed_gradient + sgd": gradtx.chain(
            perturbed_gradient(grad_tol=1e-3, radius=0.1, key=seed), gradtx.sgd(lr)
        ),
    }
    hessian_eigs = jax.jit(jax.vmap(lambda p: jnp.linalg.eigvalsh(jax.hessian(f2d)(p))))
    paths, values, eigs = {}, {}, {}
    print("1. f(x, y) = x² − y² + y⁴/4 from (1.5, 0), learning rate 0.1:")
    for name, tx in methods.items():
        path, vals, state = run(tx, f2d, start, num_steps)
        paths[name] = np.concatenate([np.asarray(start)[None], np.asarray(path)])
        values[name] = np.concatenate([[float(f2d(start))], np.asarray(vals)])
        eigs[name] = np.asarray(hessian_eigs(jnp.asarray(paths[name])))
        extra = ""
        if "saddle_escape" in name:
            extra = f" (eigen-solves {int(state[0].eigen_solves)}, escapes {int(state[0].escapes)})"
        print(f"  {name:<26} final point ({paths[name][-1, 0]:+.4f}, {paths[name][-1, 1]:+.4f}), "
              f"f = {values[name][-1]:+.4f}{extra}")
    print("  classification of the final points:")
    for name in methods:
        describe_point(name, f2d, jnp.asarray(paths[name][-1]), num_iters=2)

    fig, (ax_path, ax_eig, ax_f) = plt.subplots(1, 3, figsize=(15, 4.3))
    xs, ys = np.meshgrid(np.linspace(-1.8, 1.8, 300), np.linspace(-2.2, 2.2, 300))
    ax_path.contour(xs, ys, np.asarray(f2d(jnp.stack([xs, ys]))), levels=30, cmap="Greys", linewidths=0.6)
    styles = {"gradient descent": ("C0", "-"), "saddle_escape + sgd": ("C3", "-"),
              "perturbed_gradient + sgd": ("C2", "--")}
    for name, path in paths.items():
        color, ls = styles[name]
        ax_path.plot(path[:, 0], path[:, 1], ls, color=color, marker=".", ms=3, lw=1.2, label=name)
        ax_eig.plot(eigs[name][:, 0], ls, color=color, label=f"{name}: λ_min")
        ax_eig.plot(eigs[name][:, 1], ":", color=color, lw=1, label=f"{name}: λ_max")
        ax_f.plot(values[name], ls, color=color, label=name)
    ax_path.plot(0, 0, "kx", ms=9)
    ax_path.plot([0, 0], [-np.sqrt(2), np.sqrt(2)], "r*", ms=11)
    ax_path.set(xlabel="x", ylabel="y", title="paths (saddle ×, minima ★)")
    ax_path.grid(False)
    ax_path.legend(fontsize=7, loc="lower left")
    ax_eig.axhline(0, color="k", lw=0.6)
    ax_eig.set(xlabel="step", ylabel="Hessian eigenvalue", title="Hessian eigenvalues along the path")
    ax_eig.legend(fontsize=6, ncol=1)
    ax_f.set(xlabel="step", ylabel="f", title="objective")
    ax_f.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, out / "saddle_escape_2d.png")


def factorization(out, num_steps: int, seed: int) -> None:
    n, r = 20, 3
    k_u, k_v = jax.random.split(jax.random.key(seed))
    # a rank-3 target with singular values 3, 2, 1
    qu, _ = jnp.linalg.qr(jax.random.normal(k_u, (n, r)))
    qv, _ = jnp.linalg.qr(jax.random.normal(k_v, (n, r)))
    m = (qu * jnp.array([3.0, 2.0, 1.0])) @ qv.T
    params = {"U": jnp.zeros((n, r)), "V": jnp.zeros((n, r))}
    value_fn = functools.partial(factorization_loss, m=m)
    lr = 0.05
    methods = {
        "gradient descent": gradtx.sgd(lr),
        "saddle_escape + sgd": gradtx.chain(
            saddle_escape(grad_tol=1e-3, curvature_tol=1e-2, step_size=1.0, num_iters=30, key=seed),
            gradtx.sgd(lr),
        ),
    }
    print(f"2. matrix factorization ½‖UVᵀ − M‖², M {n}×{n} of rank {r} (singular values 3, 2, 1), "
          f"U = V = 0, learning rate {lr}:")
    describe_point("start U = V = 0", factorization_loss, params, m, num_iters=30)
    curves, finals = {}, {}
    for name, tx in methods.items():
        path, vals, state = run(tx, value_fn, params, num_steps)
        curves[name] = np.concatenate([[float(value_fn(params))], np.asarray(vals)])
        finals[name] = jax.tree.map(lambda x: x[-1], path)
        extra = ""
        if "saddle_escape" in name:
            extra = f" (eigen-solves {int(state[0].eigen_solves)}, escapes {int(state[0].escapes)})"
        print(f"  {name:<26} f after {num_steps} steps = {curves[name][-1]:.3g}{extra}")
    for name in methods:
        describe_point(f"end of {name}", factorization_loss, finals[name], m, num_iters=30)

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, values in curves.items():
        ax.semilogy(np.maximum(values, 1e-10), label=name)
    for level in (0.5 * (2**2 + 1**2), 0.5 * 1**2):  # f at the best rank-1 and rank-2 factorizations
        ax.axhline(level, color="0.6", lw=0.7, ls="--")
    ax.set(xlabel="step", ylabel="½‖UVᵀ − M‖²", title="Matrix factorization from U = V = 0")
    ax.text(num_steps, 2.5, "rank-1 saddle", ha="right", va="bottom", fontsize=8, color="0.4")
    ax.text(num_steps, 0.5, "rank-2 saddle", ha="right", va="bottom", fontsize=8, color="0.4")
    ax.legend()
    fig.tight_layout()
    save_figure(fig, out / "saddle_escape_factorization.png")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(parser)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    out = figure_dir(args.out)
    two_d(out, num_steps=150, seed=args.seed)
    factorization(out, num_steps=300 if args.quick else 600, seed=args.seed)
    print(f"figures written to {out}/: saddle_escape_2d.png, saddle_escape_factorization.png")
    print(f"wall time: {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
