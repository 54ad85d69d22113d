"""Progressive sharpening and the edge of stability, measured by gradtx.second_order.track_sharpness.

    python examples/sharpness.py              # two learning rates, 2,000 full-batch GD steps each
    python examples/sharpness.py --quick      # one learning rate, 300 steps, for CI
    python examples/sharpness.py --benchmark  # step time with and without the tracker (every=100), accuracy vs dense

Full-batch gradient descent on a small tanh MLP (64 → 32 → 32 → 10, small initialization) fitting
one-hot digits with the squared loss. The tracker sits in the chain before the descent step,

    gradtx.chain(track_sharpness(every=10, learning_rate=lr), gradtx.sgd(lr))

and measures the top Hessian eigenvalue λ_max every 10 steps (Lanczos warm-started from its
previous eigenvector, stopped once the residual of the top Ritz pair is at most 1e-3·λ). As in Cohen et al. (ICLR 2021), λ_max rises during training (progressive
sharpening) until it reaches the stability limit 2/lr of gradient descent, and then hovers there
(the edge of stability) while the loss keeps decreasing, non-monotonically.

Figure: sharpness.png (training loss, and λ_max against 2/lr, for each learning rate).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from _common import add_common_args, figure_dir, plt, save_figure
from jax.flatten_util import ravel_pytree

import gradtx
from gradtx.curvature import hessian_operator
from gradtx.second_order import track_sharpness

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(parser, default_out=None)  # type: ignore[arg-type]
    parser.add_argument("--steps", type=int, default=None, help="GD steps (default 2000, 300 with --quick)")
    parser.add_argument("--lr", type=float, nargs="+", default=None,
                        help="learning rates (default 0.1 0.2, 0.2 with --quick)")
    parser.add_argument("--every", type=int, default=10, help="measure λ_max every this many steps")
    parser.add_argument("--benchmark", action="store_true",
                        help="time steps with and without track_sharpness(every=100) (paired runs)")
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = "gradtx-figures" if args.quick else str(ROOT / "docs" / "figures")
    return args


def make_problem(num_examples: int, seed: int):
    """Digits scaled to [0, 1], one-hot targets, and a small-init tanh MLP with the squared loss."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = jnp.asarray(digits.data[:num_examples] / 16.0, jnp.float32)
    y = jax.nn.one_hot(jnp.asarray(digits.target[:num_examples]), 10)
    sizes = (64, 32, 32, 10)
    keys = jax.random.split(jax.random.key(seed), len(sizes) - 1)
    params = [
        {"w": 0.4 * jax.random.normal(k, (a, b)) / np.sqrt(a), "b": jnp.zeros(b)}
        for k, a, b in zip(keys, sizes[:-1], sizes[1:])
    ]

    def loss(p):
        h = x
        for layer in p[:-1]:
            h = jnp.tanh(h @ layer["w"] + layer["b"][None])
        z = h @ p[-1]["w"] + p[-1]["b"][None]
        return 0.5 * jnp.mean(jnp.sum((z - y) ** 2, axis=-1))

    return params, loss


def run_gd(params, loss, lr: float, steps: int, every: int, keep_every: int = 0, **tracker_kwargs):
    """`steps` full-batch GD steps in one compiled scan; per step: the loss, λ_max, lr·λ_max/2.

    With `keep_every`, also the params at the steps that are multiples of it (else None).
    """
    tracker = track_sharpness(every=every, learning_rate=lr, **tracker_kwargs)
    tx = gradtx.chain(tracker, gradtx.sgd(lr))

    @jax.jit
    def train(p):
        def step(carry, t):
            p, s = carry
            value, grad = jax.value_and_grad(loss)(p)
            u, s = tx.update(grad, s, p, value_fn=loss)
            return (gradtx.apply_updates(p, u), s), (value, s[0].sharpness, s[0].edge_of_stability)

        def chunk(carry, _):  # keep_every steps, then the params after them
            carry, out = jax.lax.scan(step, carry, None, length=keep_every)
            return carry, (out, carry[0])

        if not keep_every:
            carry, out = jax.lax.scan(step, (p, tx.init(p)), None, length=steps)
            return carry, out, None
        carry, (out, kept) = jax.lax.scan(chunk, (p, tx.init(p)), None, length=steps // keep_every)
        kept = jax.tree.map(lambda a, b: jnp.concatenate([b[None], a[:-1]]), kept, p)  # params *before* each chunk
        return carry, jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), out), kept

    (_, state), (losses, sharpness, eos), kept = train(params)
    return np.asarray(losses), np.asarray(sharpness), np.asarray(eos), state, kept


def dense_top_eigenvalue(loss, params) -> float:
    """λ_max from the dense Hessian (Hessian-vector products with every unit vector, float64 eigh)."""
    import scipy.linalg

    flat, unravel = ravel_pytree(params)
    mv = hessian_operator(loss, params)
    cols = jax.jit(lambda e: jax.lax.map(lambda v: ravel_pytree(mv(unravel(v)))[0], e, batch_size=256))
    h = np.asarray(cols(jnp.eye(flat.size, dtype=flat.dtype)), np.float64)
    h = 0.5 * (h + h.T)
    return float(scipy.linalg.eigh(h, eigvals_only=True, subset_by_index=[flat.size - 1, flat.size - 1])[0])


VARIANTS = (("num_iters=20, tol=None", {"tol": None}), ("default (tol=1e-3)", {}), ("tol=1e-2", {"tol": 1e-2}))


def benchmark(params, loss, steps: int = 1000, repeats: int = 9) -> None:
    """Paired timings of `steps` GD steps with and without track_sharpness(every=100), and accuracy."""
    import os

    def compiled(tx):
        @jax.jit
        def train(p):
            def step(carry, _):
                p, s = carry
                u, s = tx.update(jax.grad(loss)(p), s, p, value_fn=loss)
                return (gradtx.apply_updates(p, u), s), None

            # return the state too: otherwise XLA drops the (unused) measurements as dead code
            return jax.lax.scan(step, (p, tx.init(p)), None, length=steps)[0]

        jax.block_until_ready(train(params))  # compile and warm up
        return train

    variants = {"sgd": compiled(gradtx.sgd(0.1))}
    for label, kwargs in VARIANTS:
        variants[f"track(every=100, {label}) + sgd"] = compiled(
            gradtx.chain(track_sharpness(every=100, **kwargs), gradtx.sgd(0.1)))
    times: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    load_before = open("/proc/loadavg").read().strip() if os.path.exists("/proc/loadavg") else "n/a"
    for _ in range(repeats):  # interleaved, so that load changes hit every variant alike
        for name, fn in variants.items():
            t0, c0 = time.perf_counter(), time.process_time()
            jax.block_until_ready(fn(params))
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    load_after = open("/proc/loadavg").read().strip() if os.path.exists("/proc/loadavg") else "n/a"
    print(f"benchmark: {steps} full-batch steps (lr 0.1, 10 measurements, the first one cold), median of "
          f"{repeats} paired runs; /proc/loadavg before: {load_before}; after: {load_after}")
    for name in variants:
        wall = np.median(np.array(times[name]) / np.array(times["sgd"]))
        proc = np.median(np.array(cpu[name]) / np.array(cpu["sgd"]))
        print(f"  {name:<44} {1e3 * np.median(times[name]) / steps:8.3f} ms/step   overhead "
              f"{100 * (wall - 1):+6.1f}% wall, {100 * (proc - 1):+6.1f}% CPU time")
    # accuracy along the same GD runs (updates pass through unchanged): against the dense Hessian
    # at three measured steps, and against 20 Lanczos steps at every measurement
    for lr, n_steps in ((0.1, steps), (0.2, 2 * steps)):
        runs = {label: run_gd(params, loss, lr, n_steps, 100, keep_every=100 if label == VARIANTS[0][0] else 0,
                         **kwargs)
                for label, kwargs in VARIANTS}
        ref, kept = runs[VARIANTS[0][0]][1][::100], runs[VARIANTS[0][0]][4]
        picks = (1, len(ref) // 2, len(ref) - 1)
        dense = {i: dense_top_eigenvalue(loss, jax.tree.map(lambda a, i=i: a[i], kept)) for i in picks}
        print(f"  accuracy along GD with lr {lr:g} ({n_steps} steps, every=100; dense λ_max at steps "
              f"{', '.join(f'{100 * i}: {dense[i]:.5g}' for i in picks)}):")
        for label, (_, sharp, _, state, _) in runs.items():
            est = sharp[::100]
            vs_dense = max(abs(est[i] - dense[i]) / dense[i] for i in picks)
            vs_fixed = np.max(np.abs(est[1:] - ref[1:]) / ref[1:])
            products = int(gradtx.tree.get(state, "products"))
            print(f"    {label:<24} max rel. error vs dense {vs_dense:.1e}, vs 20 steps {vs_fixed:.1e}; "
                  f"products {products} ({(products - 20) / (len(est) - 1):.1f} per warm measurement)")


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    start = time.perf_counter()
    out = figure_dir(args.out)
    steps = args.steps or (300 if args.quick else 2000)
    lrs = args.lr or ([0.2] if args.quick else [0.1, 0.2])
    params, loss = make_problem(500 if args.quick else 1000, args.seed)
    n_params = sum(p.size for p in jax.tree.leaves(params))
    print(f"tanh MLP 64-32-32-10 ({n_params:,} parameters), squared loss, full-batch GD for {steps} steps")

    results = {}
    for lr in lrs:
        losses, sharpness, eos, state, _ = run_gd(params, loss, lr, steps, args.every)
        measured = sharpness[:: args.every]
        first = float(measured[0])
        peak = float(measured.max())
        tail = measured[len(measured) * 3 // 4:]
        reached = np.flatnonzero(measured >= 0.95 * 2 / lr)
        when = f"step {int(reached[0]) * args.every}" if reached.size else "never"
        print(f"lr={lr:g}: 2/lr = {2 / lr:.4g}; λ_max {first:.4g} at step 0, peak {peak:.4g}, reaches 95% of 2/lr at "
              f"{when}; last quarter mean {tail.mean():.4g} (lr·λ_max/2 = {lr * tail.mean() / 2:.3f}); "
              f"max lr·λ_max/2 {eos.max():.3f}; loss {losses[0]:.4f} -> {losses[-1]:.4f}")
        print(f"  state: sharpness {float(gradtx.tree.get(state, 'sharpness')):.4g} measured at step "
              f"{int(gradtx.tree.get(state, 'step'))}, edge_of_stability {float(gradtx.tree.get(state, 'edge_of_stability')):.3f}")
        results[lr] = (losses, sharpness)

    fig, (ax_loss, ax_sharp) = plt.subplots(1, 2, figsize=(11, 4))
    for i, (lr, (losses, sharpness)) in enumerate(results.items()):
        color = f"C{i}"
        ax_loss.semilogy(losses, color=color, lw=1, label=f"lr = {lr:g}")
        t = np.arange(0, steps, args.every)
        ax_sharp.plot(t, sharpness[:: args.every], color=color, lw=1.2, label=rf"$\lambda_{{\max}}$, lr = {lr:g}")
        ax_sharp.axhline(2 / lr, color=color, ls="--", lw=1, label=f"2/lr = {2 / lr:g}")
    ax_loss.set(xlabel="step", ylabel="training loss", title="full-batch gradient descent")
    ax_loss.legend()
    ax_sharp.set(xlabel="step", ylabel="top Hessian eigenvalue",
                 title="progressive sharpening to the edge of stability")
    ax_sharp.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, out / "sharpness.png")
    print(f"figures written to {out}/: sharpness.png")
    if args.benchmark:
        benchmark(params, loss)
    print(f"wall time: {time.perf_counter() - start:.1f} s")
    return results


if __name__ == "__main__":
    main()
