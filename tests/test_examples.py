"""Run every example script with --quick in a subprocess and check what it prints and writes.

Each test asserts the exit status, that the advertised PNG figures were written (valid PNG
headers, non-trivial size) and that the numbers the script prints are sane: accuracies reached,
saddles escaped, the three spellings of one optimizer agreeing, and so on.
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from _env import user_env

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

pytestmark = pytest.mark.slow

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_example(name: str, out: Path, *args: str, timeout: float = 600) -> str:
    """Run `examples/<name>.py --quick --out <out> *args`; return its stdout (stderr on failure)."""
    # run as a user would: without the simulated devices tests/conftest.py adds for sharding tests
    pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = user_env(PYTHONPATH=pythonpath, MPLBACKEND="Agg")
    # XLA's backend optimisation passes cost more than these short runs save, and so do Eigen's
    # worker threads on these small matrices (CPU saved: ~6 % on an idle machine, more on a loaded
    # one; the compiled programs compute the same values up to float rounding)
    flags = "--xla_backend_optimization_level=0 --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    env["XLA_FLAGS"] = f"{env['XLA_FLAGS']} {flags}".strip()
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / f"{name}.py"), "--quick", "--out", str(out), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, (
        f"{name}.py exited with {proc.returncode}\n--- stdout ---\n{proc.stdout[-4000:]}\n"
        f"--- stderr ---\n{proc.stderr[-4000:]}"
    )
    return proc.stdout


def assert_figures(out: Path, *names: str) -> None:
    for name in names:
        path = out / name
        assert path.is_file(), f"{name} was not written into {out}: {sorted(p.name for p in out.iterdir())}"
        data = path.read_bytes()
        assert data[:8] == PNG_MAGIC, f"{name} is not a PNG file"
        assert len(data) > 2_000, f"{name} is suspiciously small ({len(data)} bytes)"


def floats(pattern: str, text: str) -> list[float]:
    return [float(m) for m in re.findall(pattern, text, flags=re.MULTILINE)]


def test_train_digits(tmp_path):
    out = run_example("train_digits", tmp_path, "--no-progress")
    assert_figures(tmp_path, "training_curves.png", "lr_schedule.png", "hessian_spectrum.png")
    # the interface: exactly one line "test accuracy: 0.xxxx" with four decimals
    lines = re.findall(r"^test accuracy: (\d\.\d{4})$", out, flags=re.MULTILINE)
    assert len(lines) == 1, out
    assert float(lines[0]) >= 0.90, out
    assert re.search(r"^wall time: \d+\.\d s$", out, flags=re.MULTILINE), out
    assert "optimizer: chain(clip_by_global_norm(max_norm=1.0), adamw(" in out
    # the curvature table: positive top eigenvalues in decreasing order, a most negative
    # eigenvalue below all of them, and a positive trace at a trained (near-minimum) point
    top = [float(v) for v in re.search(r"^top-3 eigenvalues.*?\s{2,}(.+)$", out, re.M).group(1).split(",")]
    assert len(top) == 3 and top[0] >= top[1] >= top[2] > 0, out
    bottom = floats(r"^smallest eigenvalue.*?\s{2,}(\S+)$", out)[0]
    assert bottom < top[2]
    trace = floats(r"^trace \(Hutchinson\)\s+(\S+)$", out)[0]
    assert trace > 0
    assert_condition_lines_agree(out, top=top[0], bottom=bottom)


KIND_WORDS = {
    "positive_definite": "positive definite",
    "negative_definite": "negative definite",
    "singular": "singular",
    "indefinite": "indefinite",
}


def assert_condition_lines_agree(out: str, *, top: float, bottom: float) -> None:
    """train_digits.py's two condition-number lines (the table entry and the verdict below the
    table) tell one story, each on its own line: the same kind, and a value that follows from
    the printed λ_min and λ_max (no ratio for an indefinite Hessian)."""
    entry = re.findall(r"^condition number\s{2,}(\S+) \((\w+)\)$", out, flags=re.MULTILINE)
    assert len(entry) == 1, out
    value, kind = entry[0]
    assert kind in KIND_WORDS, out
    verdicts = re.findall(r"^condition number: (.+)$", out, flags=re.MULTILINE)
    assert len(verdicts) == 1, out
    verdict = verdicts[0]
    # the verdict line is complete on its own: the kind and both extreme eigenvalues
    assert KIND_WORDS[kind] in verdict, verdict
    lam_min = float(re.search(r"λ_min = (-?[\d.e+-]+)", verdict).group(1))
    lam_max = float(re.search(r"λ_max = (-?[\d.e+-]+)", verdict).group(1))
    assert lam_min == bottom, (verdict, bottom)  # the table's λ_min is the report's
    # the report's λ_max (its own Lanczos run) estimates the same top eigenvalue as eigsh's
    assert lam_max == pytest.approx(top, rel=0.05), (verdict, top)
    if kind == "indefinite":
        assert lam_min < 0 < lam_max, verdict
        assert value == "undefined" and "κ = nan" in verdict, (value, verdict)
    elif kind == "positive_definite":
        assert 0 < lam_min <= lam_max, verdict
        assert float(value) == pytest.approx(lam_max / lam_min, rel=2e-3), (value, verdict)
    elif kind == "negative_definite":
        assert lam_min <= lam_max < 0, verdict
        assert float(value) == pytest.approx(lam_min / lam_max, rel=2e-3), (value, verdict)
    else:
        assert value == "inf" and "κ = inf" in verdict, (value, verdict)


def test_condition_check_rejects_the_old_wrapped_verdict():
    """The check above fails on what train_digits.py printed before (the verdict wrapped into
    "...eigenvalues of both signs (λ_min < 0 < λ_max): no" / "condition number, κ = nan",
    and a table entry of "nan (indefinite)")."""
    old = (
        "top-3 eigenvalues (Lanczos)         0.2909, 0.2574, 0.2242\n"
        "most negative eigenvalue (Lanczos)  -0.01278\n"
        "condition number                    nan (indefinite)\n"
        "----\n"
        "condition number: eigenvalues of both signs (λ_min < 0 < λ_max): no\n"
        "condition number, κ = nan\n"
    )
    with pytest.raises(AssertionError):
        assert_condition_lines_agree(old, top=0.2909, bottom=-0.01278)
    new = (
        "condition number                    undefined (indefinite)\n"
        "----\n"
        "condition number: undefined (κ = nan): the Hessian is indefinite, λ_min = -0.01278 < 0 < λ_max = 0.2908\n"
    )
    assert_condition_lines_agree(new, top=0.2909, bottom=-0.01278)


@pytest.fixture
def train_digits_figures(monkeypatch):
    """examples/train_digits.py imported in-process, with `save_figure` recording the figures."""
    np = pytest.importorskip("numpy")
    monkeypatch.syspath_prepend(str(EXAMPLES))
    module = importlib.import_module("train_digits")
    figures = []
    monkeypatch.setattr(module, "save_figure", lambda fig, path: figures.append(fig))
    yield module, figures, np
    for fig in figures:
        module.plt.close(fig)


def test_train_digits_accuracy_panel_shows_every_epoch(train_digits_figures, tmp_path):
    """The accuracy axis holds every plotted point: epoch 1's training accuracy (taken over the
    minibatches of the first epoch, far below the test accuracy there) was cut off."""
    module, figures, np = train_digits_figures
    history = importlib.import_module("_common").History(
        step_loss=list(np.geomspace(2.5, 0.01, 30)),
        epoch_train_loss=[1.4, 0.2, 0.1],
        epoch_train_acc=[0.58, 0.95, 0.99],
        epoch_test_loss=[0.4, 0.2, 0.1],
        epoch_test_acc=[0.905, 0.955, 0.97],
    )
    module.plot_training(history, tmp_path)
    ax_acc = figures[0].axes[1]
    low, high = ax_acc.get_ylim()
    plotted = np.concatenate([line.get_ydata() for line in ax_acc.get_lines()])
    assert plotted.size == 6
    assert low <= plotted.min() and plotted.max() <= high, (ax_acc.get_ylim(), plotted)


def test_train_digits_spectrum_legend_names_the_dashed_lines(train_digits_figures, tmp_path):
    module, figures, np = train_digits_figures
    grid = np.linspace(-0.03, 0.31, 200)
    curvature = {
        "grid": grid,
        "density": np.exp(-(grid**2) / 1e-4),
        "top": np.array([0.2574, 0.2909, 0.2242]),
        "bottom": -0.01278,
        "num_params": 51_594,
    }
    module.plot_spectrum(curvature, tmp_path)
    ax = figures[0].axes[0]
    legend = ax.get_legend()
    assert legend is not None, "the spectrum plot has no legend"
    dashed = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert sorted(line.get_xdata()[0] for line in dashed) == [-0.01278, 0.2242, 0.2574, 0.2909]
    # every colour of dashed line has a legend entry, and the entries say what they mark
    entries = {
        handle.get_color(): text.get_text()
        for handle, text in zip(legend.legend_handles, legend.get_texts(), strict=True)
        if handle.get_linestyle() == "--"
    }
    assert {line.get_color() for line in dashed} == set(entries), entries
    assert sorted(entries.values()) == [
        "smallest eigenvalue $\\lambda_{\\min}$ = -0.0128",
        "top-3 eigenvalues (Lanczos)",
    ], entries


def test_compare_optimizers(tmp_path):
    out = run_example("compare_optimizers", tmp_path)
    assert_figures(tmp_path, "optimizer_trajectories.png", "optimizer_losses_2d.png", "optimizer_digits.png")
    names = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw")
    accuracy = {}
    for name in names:
        m = re.search(rf"^\s+{name}\s+final train loss (\S+)\s+test accuracy (\S+)", out, re.M)
        assert m, f"no digits result for {name}:\n{out}"
        accuracy[name] = float(m.group(2))
    assert min(accuracy.values()) > 0.5, accuracy  # every optimizer learns something in 4 epochs
    assert accuracy["adam"] >= 0.9, accuracy
    # the 2-D table: Beale's minimum (f = 0) is approached by every optimizer from f(1, 1.5) ≈ 41,
    # Adam gets close to Rosenbrock's minimum from f(-1.2, 1) = 24.2, all escape the saddle.
    for name in names:
        row = re.search(rf"^\s+{name}\s+(\S+) \((\S+)\)\s+(\S+) \((\S+)\)\s+step (\d+)$", out, re.M)
        assert row, f"no 2-D row for {name}:\n{out}"
        rosen, _, beale, _, escape = row.groups()
        assert float(rosen) < 24.2 and float(beale) < 1.0 and int(escape) < 150, row.group(0)
        if name == "adam":
            assert float(rosen) < 0.05, row.group(0)


def test_saddle_escape(tmp_path):
    out = run_example("saddle_escape", tmp_path)
    assert_figures(tmp_path, "saddle_escape_2d.png", "saddle_escape_factorization.png")
    classified = dict(re.findall(r"^\s{2}(gradient descent|saddle_escape \+ sgd)\s{2,}(\w+)\s+\|grad\|", out, re.M))
    assert classified == {"gradient descent": "saddle", "saddle_escape + sgd": "minimum"}, out
    gd = floats(r"^\s+gradient descent\s+f after \d+ steps = (\S+)$", out)
    se = floats(r"^\s+saddle_escape \+ sgd\s+f after \d+ steps = (\S+)", out)
    # M has singular values 3, 2, 1: f(0) = (9 + 4 + 1)/2 = 7, where gradient descent stays
    assert gd == [pytest.approx(7.0, rel=1e-5)], out
    assert se and se[0] < 1e-3, out
    assert re.search(r"start U = V = 0\s+saddle\s+\|grad\| = 0\.00e\+00", out), out


def test_schedules(tmp_path):
    import gradtx

    out = run_example("schedules", tmp_path)
    assert_figures(tmp_path, "schedules.png")
    m = re.search(r"^plotted (\d+) curves covering (\d+) of (\d+) schedules$", out, re.M)
    assert m, out
    n_schedules = len(gradtx.schedules.__all__)
    assert int(m.group(2)) == int(m.group(3)) == n_schedules, out
    assert "warning" not in out
    # spot checks against closed forms: warmup_cosine_decay peaks at 1 and ends at end_value 0.05
    row = re.search(r"^warmup_cosine_decay_schedule\s+step 0: (\S+)\s+step \d+: \S+\s+step \d+: (\S+)$", out, re.M)
    assert row, out
    assert float(row.group(1)) == pytest.approx(0.0, abs=1e-6)
    assert float(row.group(2)) == pytest.approx(0.05, rel=1e-4)


def test_linen_train_state(tmp_path):
    out = run_example("linen_train_state", tmp_path)
    assert_figures(tmp_path, "linen_training.png")
    diffs = floats(r"^max \|params\(.+?\) - params\(gradtx\)\| = (\S+)$", out)
    assert len(diffs) == 2 and max(diffs) <= 1e-5, out
    acc = floats(r"^test accuracy: (\d\.\d{4})$", out)
    assert len(acc) == 1 and acc[0] >= 0.9, out


def test_newton_cg(tmp_path):
    out = run_example("newton_cg", tmp_path)
    assert_figures(tmp_path, "newton_cg.png")
    rows = re.findall(r"^\s+(newton_cg\(.+?\))\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)$", out, re.M)
    assert len(rows) == 2, out
    (_, it_quad, _, hvp_quad, _), (_, it_log, _, hvp_log, _) = rows
    # a quadratic is solved by one Newton step (CG needs at most n = 100 products in exact
    # arithmetic; float32 rounding costs a few more)
    assert int(it_quad) <= 2 and 0 < int(hvp_quad) <= 400, out
    assert int(it_log) <= 15 and int(hvp_log) > 0, out
    # Adam does not reach the tolerance within its iteration budget on either problem
    assert len(re.findall(r"^\s+adam\(lr=\S+\)\s+> \d+", out, re.M)) == 2, out


def test_influence(tmp_path):
    out = run_example("influence", tmp_path)
    assert_figures(tmp_path, "influence_digits.png")
    assert floats(r"test accuracy (\S+),", out)[0] >= 0.9, out
    m = re.search(r"^test digit #\d+: label (\d), predicted (\d), loss (\S+)$", out, re.M)
    assert m and m.group(1) != m.group(2) and float(m.group(3)) > 0.69, out  # misclassified: p(label) < 1/2
    assert re.search(r"^influence: \d+ CG iterations, relative residual \S+, converged True$", out, re.M), out
    blocks = re.findall(r"^most (helpful|harmful):\n((?:  train .*\n)+)", out, re.M)
    assert [b[0] for b in blocks] == ["helpful", "harmful"], out
    values = {name: floats(r"influence (\S+)$", block) for name, block in blocks}
    assert len(values["helpful"]) == len(values["harmful"]) == 8, out
    assert values["helpful"] == sorted(values["helpful"]) and max(values["helpful"]) < 0, out
    assert values["harmful"] == sorted(values["harmful"], reverse=True) and min(values["harmful"]) > 0, out
    # removing the most harmful image lowers the test loss, removing the most helpful one raises it,
    # by about −I/N (first order; the largest effects are underestimated by up to about 2×)
    loo = re.findall(r"^leave-one-out, most (harmful|helpful) \S+: predicted change (\S+), actual (\S+)$", out, re.M)
    assert [name for name, _, _ in loo] == ["harmful", "helpful"], out
    for name, predicted, actual in loo:
        predicted, actual = float(predicted), float(actual)
        assert (predicted < 0) == (name == "harmful") and 1 / 3 < actual / predicted < 3, out


def test_loss_landscape(tmp_path):
    out = run_example("loss_landscape", tmp_path)
    assert_figures(tmp_path, "loss_landscape.png", "loss_landscape_trajectory.png")
    m = re.search(r"^random filter-normalised plane: (\d+) points in \S+ s, loss at the center (\S+), max on the grid (\S+)$",
                  out, re.M)
    assert m and int(m.group(1)) == 11 * 11, out
    center, top = float(m.group(2)), float(m.group(3))
    assert 0 < center < top, out
    # the grid's center is the trained model: the same loss as the last saved parameters
    last = floats(r"^path losses: first \S+, last (\S+)$", out)
    assert last and last[0] == pytest.approx(center, abs=2e-4), out
    ev = re.search(r"^trajectory plane: explained variance (\S+) \+ (\S+) = (\S+),", out, re.M)
    assert ev, out
    ev1, ev2, total = (float(v) for v in ev.groups())
    assert 0 < ev2 <= ev1 and total <= 1.0 + 1e-3, out
    assert floats(r"^top Hessian eigenvalue (\S+):", out)[0] > 0, out


def test_sharpness(tmp_path):
    out = run_example("sharpness", tmp_path)
    assert_figures(tmp_path, "sharpness.png")
    m = re.search(r"^lr=0\.2: 2/lr = 10; λ_max (\S+) at step 0, peak (\S+), reaches 95% of 2/lr at step (\d+); "
                  r"last quarter mean (\S+) \(lr·λ_max/2 = (\S+)\)", out, re.M)
    assert m, out
    first, peak, _, tail, ratio = (float(v) for v in m.groups())
    # progressive sharpening from well below 2/lr, then the edge of stability: λ_max ≈ 2/lr
    assert first < 5 <= 0.95 * 10 <= peak, out
    assert tail == pytest.approx(10, rel=0.2) and ratio == pytest.approx(0.2 * tail / 2, rel=1e-2), out
    state = re.search(r"^  state: sharpness (\S+) measured at step (\d+), edge_of_stability (\S+)$", out, re.M)
    assert state and int(state.group(2)) == 290, out
    assert float(state.group(3)) == pytest.approx(0.2 * float(state.group(1)) / 2, rel=1e-2), out
