"""Benchmark gradtx against optax: one jitted training step per optimizer and parameter tree.

Usage:

    python benchmarks/run.py [--quick] [--json out.json] [--markdown docs/benchmarks.md]

Every case compiles the same training step (`tx.update` + `apply_updates`, params and state
donated) with gradtx and with optax and times them alternately in one process; the report gives
gradtx/optax time ratios (median of paired blocks), the fraction of the measured
memory-streaming bound each reaches, compile times and the memory XLA plans for the step.
Three gradtx variants are timed: the optimizer exactly as `gradtx.<name>(...)` builds it (the
default, fused on many small leaves), the same built leaf by leaf (inside
`gradtx.fusion.disabled()`), and the whole optimizer wrapped in `gradtx.fusion.maybe_fuse` (which
also fuses a user's `chain(...)` as a whole).

`--quick` uses small trees and few repeats (a smoke run for CI, well under a minute). Nothing
here asserts on time: the numbers are reported, never judged.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

import _harness as h  # noqa: E402
import jax  # noqa: E402

VARIANTS = ("gradtx", "per_leaf", "maybe_fuse")
FLOOR = "floor"  # reference step `p - 1e-3 * g` (stateless), timed with every case
LABELS = {
    "gradtx": "`gradtx.<optimizer>(...)` as users call it (default)",
    "per_leaf": "per leaf (built inside `gradtx.fusion.disabled()`)",
    "maybe_fuse": "`gradtx.fusion.maybe_fuse(<optimizer>)` (fuses a whole `chain` too)",
    "floor": "reference, not an optimizer: `p - lr * g` leaf by leaf (the floor)",
}


def _variants() -> dict[str, Any]:
    from gradtx import fusion

    def per_leaf(opt: Any) -> Any:
        with fusion.disabled():
            return opt.gradtx()

    import gradtx

    return {
        "gradtx": lambda opt: opt.gradtx(),
        "per_leaf": per_leaf,
        "maybe_fuse": lambda opt: fusion.maybe_fuse(opt.gradtx()),
        # not an optimizer: the cheapest step with the same params and gradients, timed in the
        # same rotation so that its ratio to optax is paired like the others
        FLOOR: lambda opt: gradtx.scale(-1e-3),
    }


def _geomean(values: list[float]) -> float:
    values = [v for v in values if v > 0 and math.isfinite(v)]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else float("nan")


def _curvature(quick: bool) -> dict[str, Any] | None:
    """HVP vs gradient cost from benchmarks/curvature_bench.py, when gradtx.curvature exists."""
    try:
        import curvature_bench
    except Exception as err:  # curvature tools or their benchmark missing
        return {"skipped": f"{type(err).__name__}: {err}"}
    sizes, batch, repeats, chain = ((32, 64, 64, 10), 64, 5, 10) if quick else ((128, 512, 512, 10), 256, 30, 50)
    n, rows = curvature_bench.bench_products(sizes, batch, repeats, chain)
    grad_ms = rows[0][1][0] * 1e3
    out = {"mlp_sizes": list(sizes), "batch": batch, "n_params": int(n), "rows": []}
    for name, (med, best), note in rows:
        out["rows"].append(
            {"name": name, "median_ms": med * 1e3, "min_ms": best * 1e3, "x_gradient": med * 1e3 / grad_ms, "note": note}
        )
    return out


def run(quick: bool, only: list[str] | None = None, verbose: bool = True) -> dict[str, Any]:
    """Run every case; return the JSON-ready results."""
    say = print if verbose else (lambda *a, **k: None)
    t_start = time.perf_counter()
    info = h.machine_info()
    say(f"{info['cpu_model']}, {info['usable_cpus']} cpus, jax {info['jax']} ({info['backend']}), "
        f"optax {info['optax']}, load {info['load_average_1_5_15']}")
    blocks = 5 if quick else 15
    min_block_s = 0.01 if quick else 0.08
    kernel = h.StreamKernel(n_bytes=(16e6 if quick else 80e6), min_block_s=min_block_s)
    stream = h.stream_bandwidth(blocks=(3 if quick else 9), kernel=kernel)
    say(f"streaming bound: {stream['GBps']:.2f} GB/s (in-place x*a+b over {stream['array_bytes'] / 1e6:.0f} MB)")

    optimizers = h.make_optimizers()
    trees = h.make_trees(quick)
    variants = _variants()
    cases = []
    only = only or []
    only_opts = [o for o in only if o in optimizers]
    only_trees = [t for t in only if t in trees]
    for tree in trees.values():
        for opt in optimizers.values():
            if (only_opts and opt.name not in only_opts) or (only_trees and tree.name not in only_trees):
                continue
            res = h.measure_case(opt, tree, variants, stream=kernel, blocks=blocks, min_block_s=min_block_s)
            cases.append(res)
            say(
                f"{opt.name:17s} {tree.name:18s} optax {res['optax']['median_ms']:9.3f} ms | "
                + " | ".join(
                    f"{v} x{res[v]['ratio_vs_optax']:.2f} (bound {res[v]['fraction_of_bound']:.0%}, "
                    f"compile x{res[v]['compile_ratio_vs_optax']:.2f})"
                    for v in VARIANTS
                )
                + f" | floor x{res[FLOOR]['ratio_vs_optax']:.2f}"
            )
    # the bandwidth again at the end: how much did the machine drift?
    stream_end = h.stream_bandwidth(blocks=(3 if quick else 9), kernel=kernel)

    many = next((t for t in trees.values() if t.name.startswith("leaves_")), None)
    floor = None
    if many is not None:
        adam_case = next((c for c in cases if c["tree"] == many.name and c["optimizer"] == "adam"), None)
        if adam_case is not None:
            counts = {name: adam_case[name]["state_arrays"] for name in ("optax", "gradtx")}
            floor = {
                "tree": many.name,
                "state_arrays": counts,
                "median_ms": h.dispatch_floor(many, counts, blocks=blocks, min_block_s=min_block_s),
            }

    curvature = {"skipped": "not run with --quick"} if quick else _curvature(quick)
    summary = {
        v: {
            "geomean_ratio_vs_optax": _geomean([c[v]["ratio_vs_optax"] for c in cases]),
            "geomean_compile_ratio_vs_optax": _geomean([c[v]["compile_ratio_vs_optax"] for c in cases]),
        }
        for v in (*VARIANTS, FLOOR)
    }
    info["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    return {
        "quick": quick,
        "machine": info,
        "stream": stream,
        "stream_end": stream_end,
        "cases": cases,
        "summary": summary,
        "dispatch_floor": floor,
        "curvature": curvature,
        "wall_s": time.perf_counter() - t_start,
    }


# --------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------


def _fmt_bytes(n: int | None) -> str:
    if n is None:
        return "n/a"
    if n >= 1e6:
        return f"{n / 1e6:.1f} MB"
    if n >= 1e3:
        return f"{n / 1e3:.0f} kB"
    return f"{n} B"


def _ms(x: float) -> str:
    return f"{x:.3f}" if x < 10 else f"{x:.1f}"


def _highlights(results: dict[str, Any]) -> list[str]:
    cases = results["cases"]
    many = [c for c in cases if c["tree"].startswith("leaves_")]
    out: list[str] = []
    if many:
        out += [
            "",
            f"On {many[0]['tree_label']} (the fused path's target), gradtx/optax. *Floor* is the "
            "cheapest step with the same params and gradients (`p - lr * g` leaf by leaf through "
            "`apply_updates`, no optimizer state), timed in the same rotation, over optax's step: the "
            "lowest ratio any optimizer can reach while params and gradients are one array per leaf.",
            "",
            "| optimizer | step: gradtx, per leaf, maybe_fuse | floor | compile: gradtx, per leaf, maybe_fuse |",
            "|---|---|---|---|",
        ]
        for c in many:
            steps = ", ".join(f"{c[v]['ratio_vs_optax']:.2f}" for v in VARIANTS)
            comps = ", ".join(f"{c[v]['compile_ratio_vs_optax']:.2f}" for v in VARIANTS)
            fl = f"{c[FLOOR]['ratio_vs_optax']:.2f}" if FLOOR in c else "n/a"
            out.append(f"| {c['optimizer_label']} | {steps} | {fl} | {comps} |")
    big = [c for c in cases if c["tree"].startswith("leaf_")]
    if big:
        largest = max(c["n_params"] for c in big)
        adam = next((c for c in big if c["optimizer"] == "adam" and c["n_params"] == largest), None)
        if adam:
            out += [
                "",
                f"Adam on one leaf of {largest:,} params reaches "
                f"{adam['gradtx']['fraction_of_bound']:.0%} of the streaming bound with gradtx "
                f"({adam['optax']['fraction_of_bound']:.0%} with optax; bound "
                f"{_ms(adam['bound_ms'])} ms at {adam['stream_GBps']:.1f} GB/s).",
            ]
            bf16 = next((c for c in big if c["optimizer"] == "adam_bf16_mu" and c["n_params"] == largest), None)
            if bf16:
                t = bf16["gradtx"]["median_ms"]
                out[-1] += (
                    f" With `mu_dtype=jnp.bfloat16` gradtx's step takes {_ms(t)} ms: "
                    f"{adam['bound_ms'] / t:.0%} of the float32 Adam bound ({bf16['gradtx']['fraction_of_bound']:.0%} "
                    f"of its own 24-byte bound; optax {bf16['optax']['fraction_of_bound']:.0%})."
                )
    return out


def _notes(results: dict[str, Any]) -> list[str]:
    out = ["", "## Reading the results", ""]
    floor = results.get("dispatch_floor")
    adam_many = next(
        (c for c in results["cases"] if floor and c["tree"] == floor["tree"] and c["optimizer"] == "adam"), None
    )
    if floor and adam_many:
        fm = floor["median_ms"]
        optax_ms = adam_many["optax"]["median_ms"]
        floor_ms = adam_many[FLOOR]["median_ms"]
        out.append(
            f"* **Many leaves.** On {adam_many['tree_label']} optax's Adam step takes {_ms(optax_ms)} ms and "
            f"gradtx's {_ms(adam_many['gradtx']['median_ms'])} ms. Moving the arrays in and out of the "
            f"compiled step costs {_ms(fm['gradtx'])} ms with gradtx's signature ({fm['gradtx'] / optax_ms:.0%} "
            f"of optax's step) and the cheapest step that updates the params at all (`p - lr * g` leaf by "
            f"leaf, no state, timed with the case) {_ms(floor_ms)} ms ({adam_many[FLOOR]['ratio_vs_optax']:.0%}, "
            "paired): params and gradients are "
            "the user's arrays, one per leaf, and `apply_updates` writes each param in its own XLA kernel "
            "(XLA's CPU backend gives every kernel one output), so no optimizer built on "
            "`update` + `apply_updates` can go below that ratio on this machine. What gradtx adds above "
            "the floor is the gradient concatenation, one pass over the flat buffers per statistic and "
            "the no-op sort that lets every leaf of one shape share a compiled kernel (see "
            "`gradtx/fusion.py`)."
        )
    big = [c for c in results["cases"] if c["tree"].startswith("leaf_") and c["optimizer"] == "adam"]
    if big:
        c = max(big, key=lambda c: c["n_params"])
        out.append(
            f"* **One large leaf.** Adam at {c['n_params']:,} params reaches "
            f"{c['gradtx']['fraction_of_bound']:.0%} of the 28-byte bound (optax "
            f"{c['optax']['fraction_of_bound']:.0%}). Both compile the step to three XLA kernels (first "
            "moment, second moment, then params from both), because XLA's CPU backend gives each kernel "
            "one output: 40 bytes move per param, so 28/40 = 70% is what that structure can reach at "
            "the reference bandwidth. Packing both moments into one array does not help on this "
            "backend (measured: 65-70%, the strided kernels stream worse). Getting closer needs "
            "multi-output kernels (XLA's GPU backend has them) or an update that applies itself to the "
            "params."
        )
        bf16 = next(
            (x for x in results["cases"] if x["optimizer"] == "adam_bf16_mu" and x["tree"] == c["tree"]), None
        )
        if bf16:
            frac = c["bound_ms"] / bf16["gradtx"]["median_ms"]
            verdict = (
                "so on this CPU the bfloat16 conversions cost more than the bytes they save"
                if frac < c["gradtx"]["fraction_of_bound"]
                else "so the smaller first moment pays here"
            )
            out[-1] += (
                f" A bfloat16 first moment (`mu_dtype=jnp.bfloat16`, 24 bytes per param) reaches "
                f"{frac:.0%} of the float32 bound against {c['gradtx']['fraction_of_bound']:.0%} for "
                f"float32 moments, {verdict}."
            )
    if adam_many:
        out.append(
            f"* **Memory.** The fused step plans {_fmt_bytes(adam_many['gradtx']['temp_bytes'])} of "
            f"temporaries on {adam_many['tree_label']} (optax {_fmt_bytes(adam_many['optax']['temp_bytes'])}): "
            "the concatenated gradients and the flat update, which XLA places in one buffer of 4 bytes per "
            "fused float32 param (a second one holds the concatenated params when the optimizer reads "
            "them, e.g. for weight decay). Leaves above `max_leaf_size` are never copied."
        )
    chain_many = next(
        (c for c in results["cases"] if c["tree"].startswith("leaves_") and c["optimizer"] == "clip_adamw"), None
    )
    if chain_many:
        out.append(
            "* **Chains.** `gradtx.chain(clip_by_global_norm(1), adamw(...))` as written fuses the AdamW "
            "part only (the aliases fuse themselves; `chain` keeps its members' states as they are): "
            f"{chain_many['gradtx']['ratio_vs_optax']:.2f} of optax on {chain_many['tree_label']}. Wrapping the "
            "whole chain in `gradtx.fusion.maybe_fuse` also fuses the clipping: "
            f"{chain_many['maybe_fuse']['ratio_vs_optax']:.2f}."
        )
    out.append(
        "* **Single leaves** are not fused (`maybe_fuse` needs at least 8 small leaves), so there the "
        "three gradtx columns time the same computation and their spread is the noise of the machine."
    )
    return out


def render_markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    s = results["summary"]
    lines = [
        "# Benchmarks: gradtx against optax",
        "",
        "Generated by `python benchmarks/run.py"
        + (" --quick" if results["quick"] else "")
        + " --markdown docs/benchmarks.md`; do not edit by hand.",
        "",
        "## Machine",
        "",
        f"* CPU: {m['cpu_model']} ({m['usable_cpus']} usable of {m['logical_cpus']} logical CPUs)",
        f"* {m['platform']}, Python {m['python']}",
        f"* jax {m['jax']} (jaxlib {m['jaxlib']}), backend `{m['backend']}`; optax {m['optax']}; flax {m['flax']}",
        f"* load average (1, 5, 15 min) at start {m['load_average_1_5_15']}, at end {m.get('load_average_end')}"
        " (a shared machine: other jobs ran during the measurements)",
        f"* run on {m['date_utc']}, {results['wall_s']:.0f} s in all",
        f"* memory-streaming bound: {results['stream']['GBps']:.2f} GB/s at the start, "
        f"{results['stream_end']['GBps']:.2f} GB/s at the end (in-place, donated `x * a + b` over a "
        f"{results['stream']['array_bytes'] / 1e6:.0f} MB float32 array, bytes = read + write)",
        "",
        "## Summary",
        "",
        "Ratios are gradtx time / optax time (below 1: gradtx is faster), geometric mean over all cases.",
        "",
        "| gradtx variant | step time ratio | compile time ratio |",
        "|---|---|---|",
    ]
    for v in (*VARIANTS, FLOOR):
        if v not in s:  # results saved before that variant existed
            continue
        label = LABELS[v]
        lines.append(
            f"| {label} | {s[v]['geomean_ratio_vs_optax']:.2f} | {s[v]['geomean_compile_ratio_vs_optax']:.2f} |"
        )
    lines += _highlights(results)
    lines += [
        "",
        "## Step time",
        "",
        "Median time per step of optax; gradtx/optax ratios (median of paired blocks); each library's "
        "fraction of the memory-streaming bound (`bytes_per_param * n_params / bandwidth`; above "
        "100% means the kernels streamed faster than the single-array reference kernel).",
        "",
        "| optimizer | tree | params | leaves | bytes/param | GB/s | bound ms | optax ms | gradtx / optax "
        "| per leaf / optax | maybe_fuse / optax | floor / optax | % of bound: optax, gradtx |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in results["cases"]:
        lines.append(
            f"| {c['optimizer_label']} | {c['tree_label']} | {c['n_params']:,} | {c['n_leaves']} | "
            f"{c['bytes_per_param']} | {c['stream_GBps']:.1f} | {_ms(c['bound_ms'])} | {_ms(c['optax']['median_ms'])} | "
            + " | ".join(f"{c[v]['ratio_vs_optax']:.2f}" if v in c else "n/a" for v in (*VARIANTS, FLOOR))
            + f" | {c['optax']['fraction_of_bound']:.0%}, {c['gradtx']['fraction_of_bound']:.0%} |"
        )
    lines += [
        "",
        "## Compile time and memory",
        "",
        "`lower` + `compile` of the step, in seconds; XLA's planned temporary memory for the step "
        "(`compiled.memory_analysis().temp_size_in_bytes`); number of arrays in the optimizer state.",
        "",
        "| optimizer | tree | compile s: optax, gradtx, per leaf, maybe_fuse | gradtx / optax "
        "| per leaf / optax | maybe_fuse / optax | temp memory: optax, gradtx | state arrays: optax, gradtx, per leaf |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in results["cases"]:
        comp = ", ".join(f"{c[v]['lower_s'] + c[v]['compile_s']:.2f}" for v in ("optax", *VARIANTS))
        lines.append(
            f"| {c['optimizer_label']} | {c['tree_label']} | {comp} | "
            + " | ".join(f"{c[v]['compile_ratio_vs_optax']:.2f}" for v in VARIANTS)
            + f" | {_fmt_bytes(c['optax']['temp_bytes'])}, {_fmt_bytes(c['gradtx']['temp_bytes'])} | "
            f"{c['optax']['state_arrays']}, {c['gradtx']['state_arrays']}, {c['per_leaf']['state_arrays']} |"
        )
    floor = results.get("dispatch_floor")
    if floor:
        fm = floor["median_ms"]
        adam_many = next((c for c in results["cases"] if c["tree"] == floor["tree"] and c["optimizer"] == "adam"), None)
        lines += [
            "",
            "## Floors",
            "",
            f"Steps on `{floor['tree']}` that do (almost) no optimizer work, timed like the cases: params and "
            "gradients as in every case, params and state donated.",
            "",
            "| step | state arrays | ms per call |",
            "|---|---|---|",
        ]
        for name in floor["state_arrays"]:
            lines.append(
                f"| nothing (returns params and state), {name}'s Adam signature | "
                f"{floor['state_arrays'][name]} | {_ms(fm[name])} |"
            )
        if adam_many and FLOOR in adam_many:
            lines.append(
                f"| `p - 1e-3 * g` leaf by leaf (no optimizer; the *floor* variant, timed with the Adam case) | "
                f"{adam_many[FLOOR]['state_arrays']} | {_ms(adam_many[FLOOR]['median_ms'])} |"
            )
        lines += [
            "",
            "The first rows are JAX's cost of passing arrays in and out of a compiled function, paid "
            "before any arithmetic; the last adds one XLA kernel per leaf writing the new param, which "
            "every `apply_updates` pays. Params and gradients are the user's arrays and cost the same "
            "in both libraries; only the optimizer state and its kernels can shrink, which the fused "
            "path does.",
        ]
    curv = results.get("curvature")
    if curv and "rows" in curv:
        lines += [
            "",
            "## Curvature: Hessian-vector product against gradient",
            "",
            f"MLP {tuple(curv['mlp_sizes'])}, batch {curv['batch']}, {curv['n_params']:,} params "
            "(from `benchmarks/curvature_bench.py`).",
            "",
            "| operation | median ms | x gradient | note |",
            "|---|---|---|---|",
        ]
        for r in curv["rows"]:
            lines.append(f"| {r['name']} | {r['median_ms']:.3f} | {r['x_gradient']:.2f} | {r['note']} |")
    elif curv:
        lines += ["", f"Curvature benchmark skipped: {curv.get('skipped')}."]
    lines += _notes(results)
    lines += ["", "## Method", ""]
    lines += [line for line in _METHOD.strip().splitlines()]
    lines.append("")
    return "\n".join(lines)


_METHOD = """
* **Step.** `jit(step, donate_argnums=(params, state))` with `step(p, s, g) = apply_updates(p, u), s'`
  where `u, s' = tx.update(g, s, p)`; gradients are an input, as they would come from the backward
  pass. Every case uses float32 params (random normal times 0.1) and gradients (times 0.01).
* **Timing.** After compiling and one warm-up call, each library runs blocks of `steps_per_block`
  steps ending in `block_until_ready`; the libraries alternate block by block (the first one
  alternating too). A ratio is the median over blocks of gradtx's block time over the adjacent
  optax block time; times are medians over blocks. The machine is shared and noisy: read the
  ratios, not the absolute times, and compare the start and end bandwidth for the drift.
* **Bound.** The reference kernel (in-place `x * a + b` over 80 MB) is timed in the same
  rotation of blocks as each case, and a case's bound is the time to stream its minimal bytes at
  that bandwidth: `bytes_per_param * n_params / GBps`. Byte models (float32): SGD with momentum 20 (read p, g, m;
  write p, m), Adam/AdamW/centred RMSProp 28 (read p, g and two moments; write p and the two
  moments), Adam with a bfloat16 first moment 24 (its own bound, 2 bytes less per read and write
  of m), clipping + AdamW 32 (one more read of g for the global norm). Fractions above 100%
  mean that multi-stream kernels outran the single-array reference kernel.
* **Compile.** `jax.jit(step).lower(...)` then `.compile()`, timed once per case; the order of the
  libraries alternates between cases.
* **Memory.** `compiled.memory_analysis()`: the temporary buffers XLA plans for the step (the
  arguments and the donated outputs are the same for both libraries).
* **Variants.** *gradtx* is the optimizer as `gradtx.<name>(...)` builds it: the element-wise
  aliases fuse themselves (`maybe_fuse(..., single_device=True)`): for trees with at least 8
  leaves of at most `DEFAULT_MAX_LEAF_SIZE` elements every statistic of the state is one
  contiguous buffer per dtype instead of one array per leaf; gradients (and params, where the
  optimizer reads them) are concatenated into that layout inside the step and the updates cut
  back into leaves. *per leaf* builds the same optimizer inside `gradtx.fusion.disabled()`.
  *maybe_fuse* wraps the whole optimizer in `gradtx.fusion.maybe_fuse` (the same as *gradtx* for
  the aliases; for `chain(clip_by_global_norm, adamw)` it fuses the clipping too). The numbers are
  the same in every variant (see `tests/test_fusion.py`). Single large leaves are not fused, so
  those cases measure the same computation three times.
* **Floors.** On the many-leaf tree, steps with the same arguments that do no optimizer work
  (see the Floors table), timed in their own rotation right after the cases.
"""


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small trees, few repeats (CI smoke run)")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    parser.add_argument("--markdown", metavar="PATH", help="write the Markdown report (docs/benchmarks.md)")
    parser.add_argument("--only", nargs="*", help="run only these optimizers/trees (names)")
    parser.add_argument("--from-json", metavar="PATH", help="render the report from saved results; run nothing")
    args = parser.parse_args(argv)
    jax.config.update("jax_numpy_rank_promotion", "raise")
    if args.from_json:
        with open(args.from_json) as f:
            results = json.load(f)
    else:
        results = run(args.quick, args.only)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(render_markdown(results))
    s = results["summary"]
    print(
        "geometric mean gradtx/optax: "
        + ", ".join(
            f"{v} step x{s[v]['geomean_ratio_vs_optax']:.2f} compile x{s[v]['geomean_compile_ratio_vs_optax']:.2f}"
            for v in VARIANTS
        )
    )
    return results


if __name__ == "__main__":
    main()
