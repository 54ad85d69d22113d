"""Benchmark gradtx against optax: one jitted training step per optimizer and parameter tree.

Usage:

    python benchmarks/run.py [--quick] [--json out.json] [--markdown docs/benchmarks.md] [--allow-load]

Every case compiles the same training step (`tx.update` + `apply_updates`, params and state
donated) with gradtx and with optax and times them alternately in one process; the report gives
gradtx/optax time ratios (median of paired blocks), the fraction of the measured
memory-streaming bound each reaches, compile times and the memory XLA plans for the step.
Two gradtx variants are timed: the optimizer exactly as `gradtx.<name>(...)` builds it (the
default: per leaf, the same computation and state layout as optax) and the opt-in fused path,
the whole optimizer wrapped in `gradtx.fusion.maybe_fuse` (small leaves concatenated into one
buffer per dtype; a whole `chain(...)` too). The fused path's ratio is reported against optax and
against the per-leaf path, both paired block by block.

`--only NAME ...` runs the cases whose optimizer and tree are among the names (optimizers and
trees filter independently; e.g. `--only adam leaves_1000x1000 leaf_1e7`); the report then says
which cases it holds.

`--quick` uses small trees and few repeats (a smoke run for CI, well under a minute). Nothing
here asserts on time: the numbers are reported, never judged.

The 1-minute load average (/proc/loadavg) is recorded before and after every case, and so is
the CPU time *other* processes used while the case ran (`other_cpu_cores`: the machine's busy CPU
time from /proc/stat minus this process's own, per second of wall time). The load average
counts the benchmark itself (its XLA threads keep it near the core count on a 2-core machine),
so it cannot tell a quiet machine from a busy one once the run has started; the other
processes' CPU can. A shared, loaded machine inflates per-kernel costs unevenly, so
`--markdown` refuses to write the report from a run (or from `--from-json` results) whose
1-minute load average *before it started* exceeded `MAX_REPORT_LOAD` (1.0), or in which other
processes used more than `MAX_REPORT_LOAD` cores during any case, unless `--allow-load` is
given; the JSON is written either way.
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
from _report import FLOOR, PER_LEAF, VARIANTS, render_markdown  # noqa: E402


def _variants() -> dict[str, Any]:
    import gradtx
    from gradtx import fusion

    return {
        "gradtx": lambda opt: opt.gradtx(),
        "fused": lambda opt: fusion.maybe_fuse(opt.gradtx()),
        # not an optimizer: the cheapest step with the same params and gradients, timed in the
        # same rotation so that its ratio to optax is paired like the others
        FLOOR: lambda opt: gradtx.scale(-1e-3),
    }


MAX_REPORT_LOAD = 1.0
"""Highest background load of a run whose Markdown report is written without `--allow-load`: the
1-minute load average before the run, and the cores other processes used during each case."""


def max_load(results: dict[str, Any]) -> float:
    """The run's background load: the 1-minute load average when it started, and the most CPU
    cores other processes used during a case (`other_cpu_cores`; for results recorded before that
    figure existed, the case's own start and end load averages)."""
    values = [results["machine"]["load_average_1_5_15"][0]]
    for case in results["cases"]:
        if case.get("other_cpu_cores") is not None:
            values.append(case["other_cpu_cores"])
        elif case.get("load_average_1_5_15"):
            load = case["load_average_1_5_15"]
            values += [load["start"][0], load["end"][0]]
    return max(values)


def report_refusal(results: dict[str, Any], markdown: str, allow_load: bool, json_path: str | None = None) -> str | None:
    """Why the Markdown report must not be written from `results` (a message), or None to write it."""
    load = max_load(results)
    if load <= MAX_REPORT_LOAD or allow_load:
        return None
    return (
        f"run.py: not writing {markdown}: the machine's background load reached {load:.2f} (the load average "
        f"before the run, or the CPU cores other processes used during a case; above {MAX_REPORT_LOAD}), so its "
        "timings are inflated by other jobs; re-run on a quiet machine, or pass --allow-load to write it anyway"
        + (f" (the results are in {json_path})" if json_path else "") + "."
    )


KEPT_SECTIONS = ("## Hessian-vector products on several devices",)
"""Sections of the report written by other scripts (benchmarks/hvp_devices.py): a new report keeps them."""


def kept_sections(path: str) -> str:
    """The `KEPT_SECTIONS` of the report at `path` (each up to the next `## ` heading), to re-append."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return ""
    out: list[str] = []
    keep = False
    for line in lines:
        if line.startswith("## "):
            keep = line.strip() in KEPT_SECTIONS
        if keep:
            out.append(line)
    return ("\n" + "\n".join(out).rstrip() + "\n") if out else ""


def _load() -> list[float]:
    """The load average (1, 5, 15 min) now, as /proc/loadavg gives it."""
    return [round(x, 2) for x in os.getloadavg()]


def _cpu_clock() -> tuple[float, float, float]:
    """`(wall s, machine-wide busy CPU s, this process's CPU s)`; NaN busy time without /proc/stat."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(x) for x in f.readline().split()[1:9]]
        busy = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait
    except (OSError, ValueError):
        busy = float("nan")
    t = os.times()
    return time.perf_counter(), busy, t.user + t.system + t.children_user + t.children_system


def _other_cores(start: tuple[float, float, float], end: tuple[float, float, float]) -> float | None:
    """CPU cores used by other processes between two `_cpu_clock()` readings (None if unknown)."""
    wall = end[0] - start[0]
    other = (end[1] - start[1]) - (end[2] - start[2])
    return round(max(other, 0.0) / wall, 2) if wall > 0 and math.isfinite(other) else None


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
    blocks = 3 if quick else 15
    min_block_s = 0.002 if quick else 0.08
    kernel = h.StreamKernel(n_bytes=(4e6 if quick else 80e6), min_block_s=min_block_s)
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
            load_start, clock_start = _load(), _cpu_clock()
            res = h.measure_case(
                opt, tree, variants, stream=kernel, blocks=blocks, min_block_s=min_block_s, baseline=PER_LEAF,
                floor=FLOOR,
            )
            res["load_average_1_5_15"] = {"start": load_start, "end": _load()}
            res["other_cpu_cores"] = _other_cores(clock_start, _cpu_clock())
            cases.append(res)
            say(
                f"{opt.name:17s} {tree.name:18s} optax {res['optax']['median_ms']:9.3f} ms | "
                + " | ".join(
                    f"{v} x{res[v]['ratio_vs_optax']:.2f} (bound {res[v]['fraction_of_bound']:.0%}, "
                    f"compile x{res[v]['compile_ratio_vs_optax']:.2f})"
                    for v in VARIANTS
                )
                + f" | fused/per-leaf x{res['fused']['ratio_vs_baseline']:.2f}"
                + f" | floor x{res[FLOOR]['ratio_vs_optax']:.2f}, fused/floor x{res['fused']['ratio_vs_floor']:.2f}"
                + f" | load {res['load_average_1_5_15']['end']}, other processes {res['other_cpu_cores']} cores"
            )
    # the bandwidth again at the end: how much did the machine drift?
    stream_end = h.stream_bandwidth(blocks=(3 if quick else 9), kernel=kernel)

    many = next((t for t in trees.values() if t.name.startswith("leaves_")), None)
    floor = None
    if many is not None:
        adam_case = next((c for c in cases if c["tree"] == many.name and c["optimizer"] == "adam"), None)
        if adam_case is not None:
            # optax and gradtx's default have the same signature (one state array per leaf)
            counts = {name: adam_case[name]["state_arrays"] for name in ("optax", "fused")}
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
    summary["fused"]["geomean_ratio_vs_per_leaf"] = _geomean([c["fused"]["ratio_vs_baseline"] for c in cases])
    summary["fused"]["geomean_compile_ratio_vs_per_leaf"] = _geomean(
        [c["fused"]["compile_ratio_vs_baseline"] for c in cases]
    )
    info["load_average_end"] = _load()
    return {
        "quick": quick,
        "only": only or None,
        "machine": info,
        "stream": stream,
        "stream_end": stream_end,
        "cases": cases,
        "summary": summary,
        "dispatch_floor": floor,
        "curvature": curvature,
        "wall_s": time.perf_counter() - t_start,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small trees, few repeats (CI smoke run)")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    parser.add_argument("--markdown", metavar="PATH", help="write the Markdown report (docs/benchmarks.md)")
    parser.add_argument("--only", nargs="*", help="run only these optimizers/trees (names)")
    parser.add_argument("--from-json", metavar="PATH", help="render the report from saved results; run nothing")
    parser.add_argument(
        "--allow-load",
        action="store_true",
        help=f"write --markdown even if a 1-minute load average above {MAX_REPORT_LOAD} was recorded",
    )
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
        refusal = report_refusal(results, args.markdown, args.allow_load, args.json)
        if refusal:
            print(refusal, file=sys.stderr)
            raise SystemExit(2)
        kept = kept_sections(args.markdown)
        with open(args.markdown, "w") as f:
            f.write(render_markdown(results) + kept)
    s = results["summary"]
    print(
        "geometric mean gradtx/optax: "
        + ", ".join(
            f"{v} step x{s[v]['geomean_ratio_vs_optax']:.2f} compile x{s[v]['geomean_compile_ratio_vs_optax']:.2f}"
            for v in VARIANTS
        )
        + f"; fused/per-leaf step x{s['fused']['geomean_ratio_vs_per_leaf']:.2f}"
    )
    return results


if __name__ == "__main__":
    main()
