"""Newton-CG against Adam on ill-conditioned problems: iterations and Hessian-vector products.

    python examples/newton_cg.py [--quick] [--out DIR]

Two problems, both badly conditioned:

1. a 100-dimensional quadratic ½ (w − w*)ᵀ A (w − w*) whose Hessian A has eigenvalues spread
   log-uniformly over [1e-4, 1] (condition number 10⁴), in a random basis;
2. L2-regularized multinomial logistic regression on the *raw* (unstandardized) digits pixels,
   whose very different feature scales make the Hessian ill-conditioned.

`gradtx.second_order.newton_cg` solves (H + λI) d = g by conjugate gradients on Hessian-vector
products at every step (its state counts them); Adam uses gradients only. The script prints how
many iterations, gradients and Hessian-vector products each needs to bring the optimality gap
f − f* below a tolerance, and plots the gap against iterations and against work
(newton_cg.png; one Hessian-vector product is counted as two gradients).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from _common import add_common_args, figure_dir, plt, save_figure

import gradtx
from gradtx.second_order import newton_cg

HVP_COST = 2.0  # a Hessian-vector product costs about two gradients (forward-over-reverse)


def quadratic_problem(seed: int, n: int = 100, cond: float = 1e4):
    key_q, key_w = jax.random.split(jax.random.key(seed))
    q, _ = jnp.linalg.qr(jax.random.normal(key_q, (n, n)))
    eigenvalues = jnp.logspace(-np.log10(cond), 0.0, n)
    a = (q * eigenvalues) @ q.T
    w_star = jax.random.normal(key_w, (n,))

    def loss(w):
        d = w - w_star
        return 0.5 * d @ (a @ d)

    return loss, jnp.zeros(n), 0.0


def logistic_problem(l2: float = 1e-2):
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = jnp.asarray(digits.data, jnp.float32)  # raw pixel values 0..16, no standardization
    y = jnp.asarray(digits.target)

    def loss(params):
        logits = x @ params["w"] + params["b"]
        nll = -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))
        return nll + 0.5 * l2 * jnp.sum(params["w"] ** 2)

    params = {"w": jnp.zeros((64, 10)), "b": jnp.zeros(10)}
    return loss, params, reference_optimum(np.asarray(digits.data), np.asarray(digits.target), l2)


def reference_optimum(x: np.ndarray, y: np.ndarray, l2: float) -> float:
    """f* of the logistic regression by dense Newton in float64 NumPy (independent of gradtx)."""
    n = x.shape[0]
    xa = np.concatenate([x, np.ones((n, 1))], axis=1)  # last row of theta is the (unpenalized) bias
    d, c = xa.shape[1], 10
    onehot = np.eye(c)[y]
    penalty = np.ones((d, c))
    penalty[-1] = 0.0

    def value_and_probs(theta):
        z = xa @ theta
        z = z - z.max(axis=1, keepdims=True)
        log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return -np.mean(np.sum(onehot * log_p, axis=1)) + 0.5 * l2 * np.sum(penalty * theta**2), np.exp(log_p)

    theta = np.zeros((d, c))
    value, p = value_and_probs(theta)
    for _ in range(50):
        grad = xa.T @ (p - onehot) / n + l2 * penalty * theta
        # Hessian of the mean cross-entropy: (1/n) Σ_i (x_i x_iᵀ) ⊗ (diag(p_i) − p_i p_iᵀ)
        weighted = xa[:, :, None] * p[:, None, :]  # x_ij p_ic
        blocks = np.tensordot(weighted, xa, axes=([0], [0])) / n  # (d, c, d): the diag(p_i) part
        hess = np.zeros((d, c, d, c))
        for k in range(c):
            hess[:, k, :, k] = blocks[:, k, :]
        outer = weighted.reshape(n, d * c)
        hess = hess.reshape(d * c, d * c) - outer.T @ outer / n + np.diag(l2 * penalty.ravel())
        # (the softmax is invariant to shifting every bias by the same amount: a tiny ridge fixes that)
        step = np.linalg.solve(hess + 1e-10 * np.eye(d * c), grad.ravel()).reshape(d, c)
        t = 1.0
        while True:  # backtracking (Armijo)
            new_value, new_p = value_and_probs(theta - t * step)
            if new_value <= value - 1e-4 * t * np.sum(grad * step) or t < 1e-8:
                break
            t *= 0.5
        theta, converged = theta - t * step, value - new_value < 1e-15
        value, p = new_value, new_p
        if converged:
            break
    return float(value)


def run(tx: gradtx.GradientTransformation, loss: Callable, params, num_steps: int, hvps: bool):
    """Objective after each step and, for Newton-CG, the cumulative Hessian-vector products."""

    @jax.jit
    def go(params):
        def step(carry, _):
            p, state = carry
            g = jax.grad(loss)(p)
            updates, state = tx.update(g, state, p, value_fn=loss)
            p = gradtx.apply_updates(p, updates)
            total = state[0].total_hvps if hvps else jnp.zeros((), jnp.int32)
            return (p, state), (loss(p), total)

        _, (values, total_hvps) = jax.lax.scan(step, (params, tx.init(params)), None, length=num_steps)
        return jnp.concatenate([loss(params)[None], values]), jnp.concatenate([jnp.zeros(1, jnp.int32), total_hvps])

    values, total = go(params)
    return np.asarray(values, np.float64), np.asarray(total)


def first_below(gap: np.ndarray, tol: float) -> int | None:
    hit = np.flatnonzero(gap <= tol)
    return int(hit[0]) if hit.size else None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(parser)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    out = figure_dir(args.out)
    adam_steps = 1500 if args.quick else 5000
    newton_steps = 15 if args.quick else 30

    problems = {
        "quadratic, condition number 1e4": (quadratic_problem(args.seed), 0.05, dict(cg_iters=200, damping=0.0, tol=1e-5)),
        "logistic regression, raw digits": (logistic_problem(), 0.03, dict(cg_iters=200, damping=0.0, tol=1e-2)),
    }
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    for row, (title, ((loss, params, f_star), adam_lr, ncg)) in zip(axes, problems.items()):
        curves = {
            f"adam(lr={adam_lr})": run(gradtx.adam(adam_lr), loss, params, adam_steps, hvps=False),
            f"newton_cg(cg_iters={ncg['cg_iters']}, tol={ncg['tol']})":
                run(newton_cg(1.0, **ncg), loss, params, newton_steps, hvps=True),
        }
        floor = float(np.finfo(np.float32).eps) * max(abs(f_star), 1e-7)  # float32 resolution of f
        f0 = float(curves[next(iter(curves))][0][0])
        tol = 1e-5 * (f0 - f_star)
        print(f"{title}: f(start) = {f0:.4g}, f* ≈ {f_star:.6g}; tolerance on f − f*: {tol:.2e}")
        print(f"  {'optimizer':<42}{'iterations':>11}{'gradients':>11}{'HVPs':>8}{'gradient-equivalents':>22}")
        for name, (values, total_hvps) in curves.items():
            gap = np.maximum(values - f_star, floor)
            k = first_below(gap, tol)
            if k is None:
                cells = f"{'> ' + str(len(values) - 1):>11}{'':>11}{'':>8}{'':>22}"
            else:
                work = k + HVP_COST * total_hvps[k]
                cells = f"{k:>11}{k:>11}{int(total_hvps[k]):>8}{work:>22.0f}"
            print(f"  {name:<42}{cells}")
            iterations = np.arange(len(values))
            row[0].semilogy(iterations, gap, label=name)
            row[1].semilogy(iterations + HVP_COST * total_hvps, gap, label=name)
        for ax, xlabel in zip(row, ("iteration", "gradient-equivalents (1 HVP = 2 gradients)")):
            ax.axhline(tol, color="0.5", lw=0.7, ls="--")
            ax.set(xlabel=xlabel, ylabel="f − f*", title=title)
            ax.set_xscale("symlog", linthresh=10)
            ax.set_xlim(left=0)
            ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, out / "newton_cg.png")
    print(f"figures written to {out}/: newton_cg.png")
    print(f"wall time: {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
