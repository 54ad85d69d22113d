"""Smoke test of the benchmark harness: `benchmarks/run.py --quick` runs and reports every case.

No assertion is made on timings (a shared CI machine is too noisy): only that every case is
measured and every reported ratio and fraction is a finite positive number.
"""

import json
import math
import os
import subprocess
import sys
import time

import pytest
from _env import user_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VARIANTS = ("gradtx", "fused")


def _positive(x):
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    json_path, md_path = out / "results.json", out / "benchmarks.md"
    # one CPU device, as users run it (conftest simulates eight)
    env = user_env()
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "run.py"), "--quick", "--json", str(json_path),
         "--markdown", str(md_path), "--allow-load"],  # a shared test machine is rarely quiet
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(json_path) as f:
        results = json.load(f)
    return results, md_path.read_text(), proc.stdout


@pytest.mark.slow
def test_every_case_is_measured(quick_results):
    results, _, _ = quick_results
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    import _harness

    optimizers = set(_harness.make_optimizers())
    trees = set(_harness.make_trees(quick=True))
    assert {"sgd_nesterov", "adam", "adamw", "rmsprop_centered", "clip_adamw"} <= optimizers
    assert any(t.startswith("leaf_") for t in trees) and any(t.startswith("leaves_") for t in trees)
    assert "flax_transformer" in trees
    got = {(c["optimizer"], c["tree"]) for c in results["cases"]}
    assert got == {(o, t) for o in optimizers for t in trees}
    assert len(results["cases"]) == len(got)


@pytest.mark.slow
def test_ratios_and_fractions_are_finite_and_positive(quick_results):
    results, _, _ = quick_results
    assert _positive(results["stream"]["GBps"]) and _positive(results["stream_end"]["GBps"])
    for case in results["cases"]:
        assert _positive(case["bound_ms"]) and case["n_params"] > 0 and case["n_leaves"] > 0
        for lib in ("optax", *VARIANTS):
            entry = case[lib]
            for key in ("median_ms", "fraction_of_bound", "compile_s"):
                assert _positive(entry[key]), (case["optimizer"], case["tree"], lib, key, entry[key])
            assert entry["lower_s"] >= 0 and entry["state_arrays"] >= 1
        for lib in VARIANTS:
            assert _positive(case[lib]["ratio_vs_optax"]), (case["optimizer"], case["tree"], lib)
            assert _positive(case[lib]["compile_ratio_vs_optax"])
        # the fused path is also paired against the default (per-leaf) path
        assert case["baseline"] == "gradtx" and "ratio_vs_baseline" not in case["gradtx"]
        assert _positive(case["fused"]["ratio_vs_baseline"]) and _positive(case["fused"]["compile_ratio_vs_baseline"])
        # ... and against the floor (p - lr * g), block by block
        assert _positive(case["fused"]["ratio_vs_floor"]) and _positive(case["gradtx"]["ratio_vs_floor"])
        assert "ratio_vs_floor" not in case["floor"]
        load = case["load_average_1_5_15"]
        assert len(load["start"]) == len(load["end"]) == 3
    for case in results["cases"]:
        # the reference step (p - lr * g, no optimizer state) is timed in the same rotation
        assert case["floor"]["state_arrays"] == 0 and _positive(case["floor"]["ratio_vs_optax"])
    for lib in (*VARIANTS, "floor"):
        assert _positive(results["summary"][lib]["geomean_ratio_vs_optax"])
        assert _positive(results["summary"][lib]["geomean_compile_ratio_vs_optax"])
    assert _positive(results["summary"]["fused"]["geomean_ratio_vs_per_leaf"])
    assert results["only"] is None and len(results["machine"]["load_average_end"]) == 3


@pytest.mark.slow
def test_default_is_per_leaf_and_fused_state_is_smaller_on_many_leaves(quick_results):
    # a property of the layout, not a timing
    results, _, _ = quick_results
    case = next(c for c in results["cases"] if c["optimizer"] == "adam" and c["tree"].startswith("leaves_"))
    # what users get from gradtx.adam(...) is optax's layout: count and one mu, one nu per leaf
    assert case["optax"]["state_arrays"] == 2 * case["n_leaves"] + 1
    assert case["gradtx"]["state_arrays"] == 2 * case["n_leaves"] + 1
    # the opt-in fused path: count, mu buffer, nu buffer
    assert case["fused"]["state_arrays"] == 3
    floor = results["dispatch_floor"]
    assert floor["state_arrays"] == {"optax": 2 * case["n_leaves"] + 1, "fused": 3}
    assert set(floor["median_ms"]) == {"optax", "fused"}
    assert all(_positive(v) for v in floor["median_ms"].values())


@pytest.mark.slow
def test_markdown_report(quick_results):
    results, markdown, stdout = quick_results
    for heading in ("## Machine", "## Summary", "## Step time", "## Compile time and memory", "## Floors", "## Method"):
        assert heading in markdown
    assert results["machine"]["jax"] in markdown and results["machine"]["cpu_model"] in markdown
    table_rows = [line for line in markdown.splitlines() if line.startswith("| ") and " ms" not in line]
    assert len(table_rows) >= len(results["cases"])
    assert "geometric mean gradtx/optax" in stdout


def test_subset_report_says_which_cases_it_holds(quick_results, tmp_path):
    # a report rendered from a run with --only names its cases and says the rest were not re-measured
    results, _, _ = quick_results
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    import _report

    subset = dict(results, only=["adam"], cases=[c for c in results["cases"] if c["optimizer"] == "adam"])
    markdown = _report.render_markdown(subset)
    assert "--only adam --markdown" in markdown and "were not re-measured" in markdown
    assert all(f"adam on {c['tree_label']}" in markdown for c in subset["cases"])
    assert "were not re-measured" not in _report.render_markdown(results)


def _with_loads(results, first, others, own=1.9):
    """`results` with the run's starting load average `first`, each case's other-process CPU cores
    from `others`, and the cases' own load averages at `own` (the benchmark's threads count there)."""
    machine = dict(results["machine"], load_average_1_5_15=[first, 0.1, 0.1], load_average_end=[own, 0.1, 0.1])
    return dict(
        results,
        machine=machine,
        cases=[
            dict(c, load_average_1_5_15={"start": [own, 0, 0], "end": [own, 0, 0]}, other_cpu_cores=o)
            for c, o in zip(results["cases"], others)
        ],
    )


def test_report_is_refused_from_a_loaded_run(quick_results):
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    import run

    results, _, _ = quick_results
    n = len(results["cases"])
    # the benchmark's own threads raise the load average to ~2 on 2 cores: that alone is quiet
    quiet = _with_loads(results, 0.4, [0.1] * n)
    assert run.max_load(quiet) == 0.4
    assert run.report_refusal(quiet, "docs/benchmarks.md", allow_load=False) is None
    # other processes using more than a core during one case is enough to refuse, with a message
    # naming the load and the way out
    loaded = _with_loads(results, 0.4, [0.1] * (n - 1) + [1.7])
    assert run.max_load(loaded) == 1.7
    message = run.report_refusal(loaded, "docs/benchmarks.md", allow_load=False, json_path="out.json")
    assert "docs/benchmarks.md" in message and "1.70" in message and "--allow-load" in message and "out.json" in message
    assert run.report_refusal(loaded, "docs/benchmarks.md", allow_load=True) is None
    # a machine already loaded when the run starts is refused too
    assert run.report_refusal(_with_loads(results, 1.2, [0.1] * n), "x.md", allow_load=False)
    # results recorded before other_cpu_cores existed fall back to the cases' load averages
    old = _with_loads(results, 0.4, [None] * n, own=1.5)
    assert run.max_load(old) == 1.5


def test_other_processes_cpu_is_measured():
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    import run

    # busy CPU time of the machine minus this process's own, per second of wall time
    assert run._other_cores((0.0, 10.0, 5.0), (2.0, 14.0, 7.0)) == 1.0
    assert run._other_cores((0.0, 10.0, 5.0), (2.0, 11.0, 7.0)) == 0.0  # clock skew: never negative
    assert run._other_cores((0.0, float("nan"), 5.0), (2.0, 11.0, 7.0)) is None  # no /proc/stat
    # a child process spinning for a second is other processes' CPU (until it is waited for)
    start = run._cpu_clock()
    child = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 1.0: pass"])
    try:
        time.sleep(1.0)
        busy = run._other_cores(start, run._cpu_clock())
    finally:
        child.wait(timeout=10)
    assert busy > 0.3


def test_many_leaf_table_has_floor_and_fused_over_floor(quick_results):
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    import _report

    results, markdown, _ = quick_results
    assert "| fused / floor |" in markdown
    for case in results["cases"]:
        if case["tree"].startswith("leaves_"):
            row = next(line for line in markdown.splitlines() if line.startswith(f"| {case['optimizer_label']} | "))
            assert f"| {case['fused']['ratio_vs_floor']:.2f} |" in row
            assert _report._ms(case["floor"]["median_ms"]) in row


def test_a_new_report_keeps_the_sections_other_scripts_wrote(tmp_path):
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    import run

    old = tmp_path / "benchmarks.md"
    old.write_text(
        "# Benchmarks\n\nold table\n\n## Hessian-vector products on several devices\n\n| 1 × 1 | 12.8 |\n\n"
        "## Machine\n\nold machine\n"
    )
    kept = run.kept_sections(str(old))
    assert "## Hessian-vector products on several devices" in kept and "| 1 × 1 | 12.8 |" in kept
    assert "old table" not in kept and "old machine" not in kept
    assert run.kept_sections(str(tmp_path / "missing.md")) == ""
