"""The Markdown report of `benchmarks/run.py` (docs/benchmarks.md), rendered from its results."""

from __future__ import annotations

from typing import Any

VARIANTS = ("gradtx", "fused")
PER_LEAF = "gradtx"  # the default (per-leaf) path: the baseline of the fused path's second ratio
FLOOR = "floor"  # reference step `p - 1e-3 * g` (stateless), timed with every case
LABELS = {
    "gradtx": "`gradtx.<optimizer>(...)` as users call it (default: per leaf, as optax)",
    "fused": "`gradtx.fusion.maybe_fuse(<optimizer>)` (opt-in fused path)",
    "floor": "reference, not an optimizer: `p - lr * g` leaf by leaf (the floor)",
}


def _fmt_bytes(n: int | None) -> str:
    if n is None:
        return "n/a"
    if n >= 1e6:
        return f"{n / 1e6:.1f} MB"
    if n >= 1e3:
        return f"{n / 1e3:.0f} kB"
    return f"{n} B"


def _load_cell(case: dict[str, Any]) -> str:
    """`start to end` 1-minute load averages, and the other processes' CPU cores when recorded."""
    load = case["load_average_1_5_15"]
    cell = f"{load['start'][0]} to {load['end'][0]}"
    other = case.get("other_cpu_cores")
    return cell + (f"; others {other:.2f} cores" if other is not None else "")


def _ms(x: float) -> str:
    return f"{x:.3f}" if x < 10 else f"{x:.1f}"


def _cases_line(results: dict[str, Any]) -> list[str]:
    cases = results["cases"]
    names = ", ".join(f"{c['optimizer_label']} on {c['tree_label']}" for c in cases)
    only = results.get("only")
    if only:
        return [
            f"This run measured a subset of the benchmark's cases, `--only {' '.join(only)}`: {names}. "
            "The other cases of the full matrix (SGD, AdamW, centred RMSProp, Adam with a bfloat16 "
            "first moment and the other single-leaf sizes) were not re-measured after the optimizer "
            "aliases stopped fusing by default, and their older figures (which timed the fused path "
            "under the *gradtx* name) are not reproduced; `python benchmarks/run.py` measures them all.",
        ]
    return [f"This run measured every case of the benchmark ({len(cases)}): {names}."]


def _highlights(results: dict[str, Any]) -> list[str]:
    cases = results["cases"]
    many = [c for c in cases if c["tree"].startswith("leaves_")]
    out: list[str] = []
    if many:
        out += [
            "",
            f"On {many[0]['tree_label']} (the fused path's target). *Floor* is the cheapest step with "
            "the same params and gradients (`p - lr * g` leaf by leaf through `apply_updates`, no "
            "optimizer state), timed in the same rotation, over optax's step: the lowest ratio any "
            "optimizer can reach while params and gradients are one array per leaf. *Fused / floor* is "
            "paired the same way (block by block against the floor's blocks); the last column has the "
            "1-minute load average at the case's start and end (it counts the benchmark's own threads) "
            "and the CPU cores other processes used meanwhile.",
            "",
            "| optimizer | ms: optax, fused, floor | step: gradtx (per leaf) / optax | fused / optax "
            "| fused / per leaf | floor / optax | fused / floor | compile: gradtx / optax, fused / optax | load |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for c in many:
            fl = f"{c[FLOOR]['ratio_vs_optax']:.2f}" if FLOOR in c else "n/a"
            floor_ms = _ms(c[FLOOR]["median_ms"]) if FLOOR in c else "n/a"
            vs_floor = c["fused"].get("ratio_vs_floor")
            load = c.get("load_average_1_5_15")
            out.append(
                f"| {c['optimizer_label']} | {_ms(c['optax']['median_ms'])}, {_ms(c['fused']['median_ms'])}, "
                f"{floor_ms} | {c['gradtx']['ratio_vs_optax']:.2f} | "
                f"{c['fused']['ratio_vs_optax']:.2f} | {c['fused']['ratio_vs_baseline']:.2f} | {fl} | "
                + (f"{vs_floor:.2f}" if vs_floor is not None else "n/a")
                + f" | {c['gradtx']['compile_ratio_vs_optax']:.2f}, {c['fused']['compile_ratio_vs_optax']:.2f} | "
                + (f"{_load_cell(c)} |" if load else "n/a |")
            )
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


def _temps_differ(a: int | None, b: int | None) -> bool:
    return a is not None and b is not None and max(a, b) > 2 * min(a, b) + 1024


def _notes(results: dict[str, Any]) -> list[str]:
    out = ["", "## Reading the results", ""]
    cases = results["cases"]
    default = "; ".join(
        f"{c['optimizer_label']} on {c['tree_label']} {c['gradtx']['ratio_vs_optax']:.2f}" for c in cases
    )
    text = (
        "* **Default.** `gradtx.<optimizer>(...)` runs leaf by leaf: optax's numbers bit for bit and "
        f"optax's state layout. Its step time over optax's in this run: {default}. Where XLA plans the "
        "same temporaries for both steps, the spread around 1 is the noise of the shared machine (see "
        "the load column; re-measure a case with `--only` to check)."
    )
    differ = [c for c in cases if _temps_differ(c["optax"]["temp_bytes"], c["gradtx"]["temp_bytes"])]
    if differ:
        text += " The programs differ where the planned temporaries do: " + "; ".join(
            f"{c['optimizer_label']} on {c['tree_label']} ({_fmt_bytes(c['optax']['temp_bytes'])} for "
            f"optax, {_fmt_bytes(c['gradtx']['temp_bytes'])} for gradtx)"
            for c in differ
        ) + "."
    out.append(text)
    floor = results.get("dispatch_floor")
    adam_many = next(
        (c for c in cases if floor and c["tree"] == floor["tree"] and c["optimizer"] == "adam"), None
    )
    if floor and adam_many:
        fm = floor["median_ms"]
        optax_ms = adam_many["optax"]["median_ms"]
        floor_ms = adam_many[FLOOR]["median_ms"]
        out.append(
            f"* **Many leaves: what the opt-in fused path buys.** On {adam_many['tree_label']} optax's Adam "
            f"step takes {_ms(optax_ms)} ms, gradtx's default {_ms(adam_many['gradtx']['median_ms'])} ms and "
            f"the fused path {_ms(adam_many['fused']['median_ms'])} ms: fused / per leaf "
            f"{adam_many['fused']['ratio_vs_baseline']:.2f}, per leaf / optax "
            f"{adam_many['gradtx']['ratio_vs_optax']:.2f} (medians of paired blocks). Moving the arrays in "
            f"and out of the compiled step costs {_ms(fm['optax'])} ms with one state array per leaf and "
            f"{_ms(fm['fused'])} ms with the fused state; the cheapest step that updates the params at all "
            f"(`p - lr * g` leaf by leaf, no state, timed with the case) takes {_ms(floor_ms)} ms "
            f"({adam_many[FLOOR]['ratio_vs_optax']:.0%} of optax's step, paired): params and gradients are "
            "the user's arrays, one per leaf, and `apply_updates` writes each param in its own XLA kernel "
            "(XLA's CPU backend gives every kernel one output), so no optimizer built on "
            "`update` + `apply_updates` can go below that ratio on this machine. What the fused path adds "
            "above the floor is the gradient concatenation, one pass over the flat buffers per statistic "
            "and the no-op sort that lets every leaf of one shape share a compiled kernel (see "
            "`gradtx/fusion.py`)."
        )
    big = [c for c in cases if c["tree"].startswith("leaf_") and c["optimizer"] == "adam"]
    if big:
        c = max(big, key=lambda c: c["n_params"])
        out.append(
            f"* **One large leaf.** Adam at {c['n_params']:,} params reaches "
            f"{c['gradtx']['fraction_of_bound']:.0%} of the 28-byte bound (optax "
            f"{c['optax']['fraction_of_bound']:.0%}). A leaf above `max_leaf_size` is never fused, so "
            "the fused column times the same computation (its spread is the machine's noise). Both "
            "libraries compile the step to three XLA kernels (first moment, second moment, then params "
            "from both), because XLA's CPU backend gives each kernel one output: 40 bytes move per "
            "param, so 28/40 = 70% is what that structure can reach at the reference bandwidth."
        )
    fused_many = next((c for c in cases if c["tree"].startswith("leaves_")), None)
    if fused_many:
        out.append(
            f"* **Memory.** The fused step plans {_fmt_bytes(fused_many['fused']['temp_bytes'])} of "
            f"temporaries for {fused_many['optimizer_label']} on {fused_many['tree_label']} (per leaf "
            f"{_fmt_bytes(fused_many['gradtx']['temp_bytes'])}, optax "
            f"{_fmt_bytes(fused_many['optax']['temp_bytes'])}): the concatenated gradients and the flat "
            "update (and the concatenated params when the optimizer reads them, e.g. for weight decay). "
            "Leaves above `max_leaf_size` are never copied."
        )
    chain_many = next(
        (c for c in cases if c["tree"].startswith("leaves_") and c["optimizer"] == "clip_adamw"), None
    )
    if chain_many:
        out.append(
            "* **Chains.** `maybe_fuse(chain(clip_by_global_norm(1), adamw(...)))` fuses the whole chain, "
            f"the clipping's norm included: {chain_many['fused']['ratio_vs_optax']:.2f} of optax and "
            f"{chain_many['fused']['ratio_vs_baseline']:.2f} of the per-leaf path on "
            f"{chain_many['tree_label']}."
        )
    out.append(
        "* **What fusion changes.** The fused path's numbers can differ from the per-leaf path's (and "
        "so from optax's) by a few ulp, and its state is a `FusedState` of flat buffers instead of a "
        "tree like the params (see `gradtx/fusion.py`); it is opt-in for that reason."
    )
    return out


def render_markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    s = results["summary"]
    only = results.get("only")
    lines = [
        "# Benchmarks: gradtx against optax",
        "",
        "Generated by `python benchmarks/run.py"
        + (" --quick" if results["quick"] else "")
        + (f" --only {' '.join(only)}" if only else "")
        + " --markdown docs/benchmarks.md`; do not edit by hand.",
        "",
        *_cases_line(results),
        "",
        "## Machine",
        "",
        f"* CPU: {m['cpu_model']} ({m['usable_cpus']} usable of {m['logical_cpus']} logical CPUs)",
        f"* {m['platform']}, Python {m['python']}",
        f"* jax {m['jax']} (jaxlib {m['jaxlib']}), backend `{m['backend']}`; optax {m['optax']}; flax {m['flax']}",
        f"* load average (1, 5, 15 min, from /proc/loadavg) at start {m['load_average_1_5_15']}, at end "
        f"{m.get('load_average_end')} (a shared machine: other jobs ran during the measurements; every "
        "case's load at its start and end, and the CPU other processes used during it, is in the "
        "step-time table)",
        f"* run on {m['date_utc']}, {results['wall_s']:.0f} s in all",
        f"* memory-streaming bound: {results['stream']['GBps']:.2f} GB/s at the start, "
        f"{results['stream_end']['GBps']:.2f} GB/s at the end (in-place, donated `x * a + b` over a "
        f"{results['stream']['array_bytes'] / 1e6:.0f} MB float32 array, bytes = read + write)",
        "",
        "## Summary",
        "",
        "Ratios are time / optax time (below 1: faster than optax), geometric mean over this run's cases; "
        "the fused path's ratio to the per-leaf path is paired the same way.",
        "",
        "| gradtx variant | step time / optax | step time / per leaf | compile time / optax |",
        "|---|---|---|---|",
    ]
    for v in (*VARIANTS, FLOOR):
        if v not in s:  # results saved before that variant existed
            continue
        vs_leaf = s[v].get("geomean_ratio_vs_per_leaf")
        lines.append(
            f"| {LABELS[v]} | {s[v]['geomean_ratio_vs_optax']:.2f} | "
            + (f"{vs_leaf:.2f}" if vs_leaf is not None else ("1" if v == PER_LEAF else "n/a"))
            + f" | {s[v]['geomean_compile_ratio_vs_optax']:.2f} |"
        )
    lines += _highlights(results)
    lines += [
        "",
        "## Step time",
        "",
        "Median time per step of optax; time ratios (median of paired blocks): gradtx's default "
        "(per leaf) and the fused path to optax, the fused path to the per-leaf path; each variant's "
        "fraction of the memory-streaming bound (`bytes_per_param * n_params / bandwidth`; above "
        "100% means the kernels streamed faster than the single-array reference kernel); the "
        "1-minute load average when the case started and ended (it counts the benchmark's own threads) "
        "and the CPU cores other processes used during the case.",
        "",
        "| optimizer | tree | params | leaves | bytes/param | GB/s | bound ms | optax ms | gradtx / optax "
        "| fused / optax | fused / gradtx | floor / optax | % of bound: optax, gradtx, fused | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in results["cases"]:
        load = c.get("load_average_1_5_15")
        lines.append(
            f"| {c['optimizer_label']} | {c['tree_label']} | {c['n_params']:,} | {c['n_leaves']} | "
            f"{c['bytes_per_param']} | {c['stream_GBps']:.1f} | {_ms(c['bound_ms'])} | {_ms(c['optax']['median_ms'])} | "
            f"{c['gradtx']['ratio_vs_optax']:.2f} | {c['fused']['ratio_vs_optax']:.2f} | "
            f"{c['fused']['ratio_vs_baseline']:.2f} | {c[FLOOR]['ratio_vs_optax']:.2f} | "
            + ", ".join(f"{c[v]['fraction_of_bound']:.0%}" for v in ("optax", *VARIANTS))
            + (f" | {_load_cell(c)} |" if load else " | n/a |")
        )
    lines += [
        "",
        "## Compile time and memory",
        "",
        "`lower` + `compile` of the step, in seconds; XLA's planned temporary memory for the step "
        "(`compiled.memory_analysis().temp_size_in_bytes`); number of arrays in the optimizer state.",
        "",
        "| optimizer | tree | compile s: optax, gradtx, fused | gradtx / optax | fused / optax "
        "| temp memory: optax, gradtx, fused | state arrays: optax, gradtx, fused |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in results["cases"]:
        libs = ("optax", *VARIANTS)
        comp = ", ".join(f"{c[v]['lower_s'] + c[v]['compile_s']:.2f}" for v in libs)
        lines.append(
            f"| {c['optimizer_label']} | {c['tree_label']} | {comp} | "
            + " | ".join(f"{c[v]['compile_ratio_vs_optax']:.2f}" for v in VARIANTS)
            + " | " + ", ".join(_fmt_bytes(c[v]["temp_bytes"]) for v in libs)
            + " | " + ", ".join(str(c[v]["state_arrays"]) for v in libs) + " |"
        )
    floor = results.get("dispatch_floor")
    if floor:
        fm = floor["median_ms"]
        adam_many = next((c for c in results["cases"] if c["tree"] == floor["tree"] and c["optimizer"] == "adam"), None)
        signature = {"optax": "optax's and gradtx's (per leaf)", "fused": "the fused path's"}
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
                f"| nothing (returns params and state), {signature.get(name, name)} Adam signature | "
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
            "in every variant; only the optimizer state and its kernels can shrink, which the fused "
            "path does.",
        ]
    curv = results.get("curvature")
    if curv and "rows" in curv:
        lines += [
            "",
            "## Curvature: Hessian-vector product against gradient",
            "",
            f"MLP {tuple(curv['mlp_sizes'])}, batch {curv['batch']}, {curv['n_params']:,} params "
            "(from `benchmarks/curvature_bench.py`, in the same run).",
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
* **Timing.** After compiling and one warm-up call, each variant runs blocks of `steps_per_block`
  steps ending in `block_until_ready`; the variants alternate block by block (the first one
  alternating too). A ratio is the median over blocks of one variant's block time over the
  adjacent block time of the other (optax, or the per-leaf path for *fused / gradtx*); times are
  medians over blocks. The machine is shared and noisy: read the ratios, not the absolute times,
  and compare the start and end bandwidth and load for the drift.
* **Bound.** The reference kernel (in-place `x * a + b` over 80 MB) is timed in the same
  rotation of blocks as each case, and a case's bound is the time to stream its minimal bytes at
  that bandwidth: `bytes_per_param * n_params / GBps`. Byte models (float32): SGD with momentum 20 (read p, g, m;
  write p, m), Adam/AdamW/centred RMSProp 28 (read p, g and two moments; write p and the two
  moments), Adam with a bfloat16 first moment 24 (its own bound, 2 bytes less per read and write
  of m), clipping + AdamW 32 (one more read of g for the global norm). Fractions above 100%
  mean that multi-stream kernels outran the single-array reference kernel.
* **Compile.** `jax.jit(step).lower(...)` then `.compile()`, timed once per case; the order of the
  variants alternates between cases.
* **Memory.** `compiled.memory_analysis()`: the temporary buffers XLA plans for the step (the
  arguments and the donated outputs are the same for every variant with the same state layout).
* **Variants.** *gradtx* is the optimizer as `gradtx.<name>(...)` builds it: per leaf, the same
  computation and state layout as optax. *fused* is the opt-in fused path,
  `gradtx.fusion.maybe_fuse(gradtx.<name>(...))`: for trees with at least 8 leaves of at most
  `DEFAULT_MAX_LEAF_SIZE` elements every statistic of the state is one contiguous buffer per dtype
  instead of one array per leaf; gradients (and params, where the optimizer reads them) are
  concatenated into that layout inside the step and the updates cut back into leaves (for
  `chain(clip_by_global_norm, adamw)` the clipping is fused too). Its numbers equal the per-leaf
  path's to a few ulp (see `tests/test_fusion.py` and `gradtx/fusion.py`). Single large leaves are
  not fused, so there both columns time the same computation.
* **Floors.** On the many-leaf tree, steps with the same arguments that do no optimizer work
  (see the Floors table), timed in their own rotation right after the cases.
"""
