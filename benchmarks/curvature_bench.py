"""Benchmarks of gradtx.curvature: HVP cost, operator amortization, Lanczos vs power iteration.

Measures, with `jax.jit` and `block_until_ready`, median wall times of

* one gradient of an MLP loss;
* one Hessian-vector product with `gradtx.curvature.hvp`;
* the plain forward-over-reverse idiom `jax.jvp(jax.grad(f), (p,), (v,))` and, for comparison,
  reverse-over-reverse `jax.grad(lambda p: <grad f(p), v>)`;
* `hessian_operator` applied repeatedly (a chain of products inside one `lax.fori_loop`, time per
  product) against the same chain of fresh `hvp` calls;
* the number of Hessian-vector products Lanczos (`eigsh`) and power iteration need to get the top
  eigenvalue to 1e-3 relative error when the top two eigenvalues are 1% apart;
* the compile time of a jitted `eigsh` on a small MLP.

Usage: `python benchmarks/curvature_bench.py [--quick]`.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from gradtx.curvature import eigsh, hessian_operator, hvp, lanczos_tridiag


def mlp_init(key, sizes):
    params = []
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        k = jax.random.fold_in(key, i)
        params.append({"w": jax.random.normal(k, (fan_in, fan_out)) / np.sqrt(fan_in), "b": jnp.zeros((fan_out,))})
    return params


def mlp_loss(params, x, y):
    h = x
    for layer in params[:-1]:
        h = jnp.tanh(h @ layer["w"] + layer["b"][None, :])
    logits = h @ params[-1]["w"] + params[-1]["b"][None, :]
    logp = jax.nn.log_softmax(logits)
    return -jnp.mean(jnp.sum(logp * jax.nn.one_hot(y, logits.shape[-1]), axis=-1))


def median_time(fn, *args, repeats):
    """(median, min) wall time of `fn(*args)` after one warm-up call (which compiles)."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def bench_products(sizes, batch, repeats, chain):
    key = jax.random.PRNGKey(0)
    params = mlp_init(key, sizes)
    x = jax.random.normal(jax.random.fold_in(key, 100), (batch, sizes[0]))
    y = jax.random.randint(jax.random.fold_in(key, 101), (batch,), 0, sizes[-1])
    v = jax.tree.map(lambda p: jax.random.normal(jax.random.fold_in(key, 7), p.shape), params)
    n = ravel_pytree(params)[0].size

    grad_fn = jax.jit(jax.grad(mlp_loss))
    hvp_fn = jax.jit(lambda p, v, x, y: hvp(mlp_loss, p, v, x, y))
    idiom = jax.jit(lambda p, v, x, y: jax.jvp(lambda q: jax.grad(mlp_loss)(q, x, y), (p,), (v,))[1])

    def rr(p, v, x, y):
        return jax.grad(lambda q: sum(jax.tree.leaves(jax.tree.map(jnp.vdot, jax.grad(mlp_loss)(q, x, y), v))))(p)

    rr_fn = jax.jit(rr)

    def normalize(t):
        norm = jnp.sqrt(sum(jnp.vdot(a, a) for a in jax.tree.leaves(t)))
        return jax.tree.map(lambda a: a / norm, t)

    @jax.jit
    def operator_chain(p, v, x, y):
        op = hessian_operator(mlp_loss, p, x, y)
        return jax.lax.fori_loop(0, chain, lambda i, u: normalize(op(u)), v)

    @jax.jit
    def hvp_chain(p, v, x, y):
        return jax.lax.fori_loop(0, chain, lambda i, u: normalize(hvp(mlp_loss, p, u, x, y)), v)

    rows = [
        ("gradient (jit)", median_time(grad_fn, params, x, y, repeats=repeats), "1 backward pass"),
        ("hvp (gradtx, jit)", median_time(hvp_fn, params, v, x, y, repeats=repeats), "forward-over-reverse"),
        ("jvp(grad) idiom (jit)", median_time(idiom, params, v, x, y, repeats=repeats), "same math, inline"),
        ("grad(<grad, v>) (jit)", median_time(rr_fn, params, v, x, y, repeats=repeats), "reverse-over-reverse"),
        (
            f"hessian_operator x{chain}, per product",
            tuple(t / chain for t in median_time(operator_chain, params, v, x, y, repeats=max(3, repeats // 4))),
            "linearized once",
        ),
        (
            f"hvp chain x{chain}, per product",
            tuple(t / chain for t in median_time(hvp_chain, params, v, x, y, repeats=max(3, repeats // 4))),
            "fresh hvp each step",
        ),
    ]
    return n, rows


def bench_gap(n, max_iters, power_iters):
    """HVPs to get λ_max within 1e-3 relative when λ_2 = 0.99 λ_1 (diagonal quadratic in a pytree)."""
    rng = np.random.default_rng(0)
    diag = np.concatenate([[1.0, 0.99], rng.uniform(0.0, 0.98, n - 2)]).astype(np.float32)
    d = jnp.asarray(diag)
    params = {"w": jnp.zeros(n // 2), "u": jnp.zeros((n - n // 2,))}

    def loss(p):
        x = jnp.concatenate([p["w"], p["u"]])
        return 0.5 * jnp.sum(d * x**2)

    op = hessian_operator(loss, params)
    key = jax.random.PRNGKey(1)
    res = lanczos_tridiag(op, params, num_iters=max_iters, key=key)
    alpha, beta = np.asarray(res.alpha, np.float64), np.asarray(res.beta, np.float64)
    lanczos_needed = None
    for m in range(1, max_iters + 1):
        t = np.diag(alpha[:m]) + np.diag(beta[: m - 1], 1) + np.diag(beta[: m - 1], -1)
        if abs(np.linalg.eigvalsh(t)[-1] - 1.0) <= 1e-3:
            lanczos_needed = m
            break
    # eigsh with that many steps (a check that the public function reaches the same accuracy)
    if lanczos_needed is not None:
        top = float(eigsh(loss, params, k=1, num_iters=lanczos_needed, key=key)[0][0])
    else:
        top = float("nan")

    flat_op = jax.jit(lambda x: ravel_pytree(op(ravel_pytree(params)[1](x)))[0])

    @jax.jit
    def power(x0):
        def step(x, _):
            y = flat_op(x)
            rq = jnp.vdot(x, y)
            return y / jnp.linalg.norm(y), rq

        _, rqs = jax.lax.scan(step, x0 / jnp.linalg.norm(x0), None, length=power_iters)
        return rqs

    rqs = np.asarray(power(jax.random.normal(key, (n,))), np.float64)
    ok = np.abs(rqs - 1.0) <= 1e-3
    # first index after which the Rayleigh quotient stays within tolerance
    power_needed = None
    for i in range(len(ok)):
        if ok[i:].all():
            power_needed = i + 1
            break
    return lanczos_needed, top, power_needed


def bench_compile(sizes, batch, num_iters):
    key = jax.random.PRNGKey(0)
    params = mlp_init(key, sizes)
    x = jax.random.normal(key, (batch, sizes[0]))
    y = jax.random.randint(key, (batch,), 0, sizes[-1])
    fn = jax.jit(lambda p, x, y: eigsh(mlp_loss, p, x, y, k=2, which="LA", num_iters=num_iters))
    start = time.perf_counter()
    compiled = fn.lower(params, x, y).compile()
    compile_s = time.perf_counter() - start
    run_s = median_time(compiled, params, x, y, repeats=5)[0]
    hvp_fn = jax.jit(lambda p, v, x, y: hvp(mlp_loss, p, v, x, y))
    start = time.perf_counter()
    hvp_fn.lower(params, params, x, y).compile()
    hvp_compile_s = time.perf_counter() - start
    return ravel_pytree(params)[0].size, compile_s, run_s, hvp_compile_s


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and few repeats (CI smoke run)")
    args = parser.parse_args(argv)
    if args.quick:
        sizes, batch, repeats, chain = (32, 64, 64, 10), 64, 5, 20
        gap_n, max_iters, power_iters = 500, 120, 1500
    else:
        sizes, batch, repeats, chain = (128, 512, 512, 10), 256, 30, 50
        gap_n, max_iters, power_iters = 5000, 200, 3000

    print(f"jax {jax.__version__}, backend {jax.default_backend()}, devices {jax.devices()}")
    n, rows = bench_products(sizes, batch, repeats, chain)
    grad_time = rows[0][1][0]
    print(f"\nMLP {sizes}, batch {batch}, {n} parameters ({repeats} runs; chains fewer)")
    print(f"{'operation':<36}{'median':>12}{'min':>12}{'x grad':>9}   note")
    for name, (med, best), note in rows:
        print(f"{name:<36}{med * 1e3:>10.3f}ms{best * 1e3:>10.3f}ms{med / grad_time:>9.2f}   {note}")

    lan, top, pw = bench_gap(gap_n, max_iters, power_iters)
    print(f"\nTop eigenvalue to 1e-3 relative, λ2/λ1 = 0.99, n = {gap_n}")
    print(f"{'method':<36}{'HVPs':>12}")
    print(f"{'Lanczos (eigsh, full reorth.)':<36}{lan if lan is not None else f'>{max_iters}':>12}   eigsh -> {top:.6f}")
    print(f"{'power iteration (Rayleigh quot.)':<36}{pw if pw is not None else f'>{power_iters}':>12}")

    small = (8, 16, 16, 3)
    n_small, compile_s, run_s, hvp_compile_s = bench_compile(small, 32, 50)
    print(f"\njit(eigsh(k=2, num_iters=50)) on MLP {small} ({n_small} params): lower+compile "
          f"{compile_s:.2f} s (a jitted hvp of the same loss: {hvp_compile_s:.2f} s), run {run_s * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
