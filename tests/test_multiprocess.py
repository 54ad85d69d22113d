"""Real multi-process training: 2 processes × 2 CPU devices, `jax.distributed` over gloo on 127.0.0.1.

examples/multiprocess_train.py's launcher starts the workers (a free port per launch, a time
limit, every worker killed in its clean-up); the single-process references run in this process
on one device. Checked: the 2-process loss curve equals the 1-process one on the same global
batches; orbax checkpoints move between 2 processes and 1 process both ways and training resumes on
the uninterrupted curve; a worker SIGKILLed mid-run loses no checkpoint that was reported saved.
Across device counts the all-reduce sums in another order, hence 1e-6 relative, not bitwise.
"""

import importlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import chex
import jax
import numpy as np
import pytest
from _env import user_env

pytest.importorskip("orbax.checkpoint")
pytest.importorskip("sklearn")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
STEPS, EVERY = 16, 4
ARGS = ["--steps", str(STEPS), "--batch-size", "64", "--hidden", "64", "--lr", "0.003", "--seed", "0"]
LAUNCH_TIMEOUT = 150.0  # s per launch of 2 workers (10-25 s here, on 2 cores shared with other jobs)
TEST_TIME_LIMIT = 240  # s, the pytest-level guard around each test
RTOL = 1e-6


@pytest.fixture(autouse=True)
def hard_time_limit():
    """SIGALRM raises in the test after TEST_TIME_LIMIT s; launch()'s clean-up then kills the workers."""

    def expire(signum, frame):
        raise TimeoutError(f"multi-process test exceeded its {TEST_TIME_LIMIT} s limit")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(TEST_TIME_LIMIT)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def mp():
    """examples/multiprocess_train.py, imported (its workers get the repository on PYTHONPATH)."""
    sys.path.insert(0, str(EXAMPLES))
    root = str(EXAMPLES.parent)
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (root, old) if p)
    try:
        yield importlib.import_module("multiprocess_train")
    finally:
        sys.path.remove(str(EXAMPLES))
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


@pytest.fixture(scope="module")
def config(mp):
    return mp.RunConfig(steps=STEPS, batch_size=64, hidden=64, learning_rate=0.003, seed=0)


@pytest.fixture(scope="module")
def one_device(mp):
    return mp.make_mesh(jax.devices()[:1])


@pytest.fixture(scope="module")
def reference(mp, config, one_device, tmp_path_factory):
    """The uninterrupted single-process run on one device, with a checkpoint every EVERY steps."""
    directory = tmp_path_factory.mktemp("ckpt_one_process")
    result = mp.train(config, one_device, checkpoint_dir=directory, checkpoint_every=EVERY, log=lambda _: None)
    assert sorted(result.losses) == list(range(1, STEPS + 1))
    # the curve really descends (a broken step or batch split would not)
    assert result.losses[STEPS] < 0.75 * result.losses[1], result.losses
    return result, directory


def assert_on_curve(losses, reference_losses, steps):
    assert sorted(losses) == list(steps), sorted(losses)
    got = np.array([losses[s] for s in steps])
    want = np.array([reference_losses[s] for s in steps])
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=0)


def test_launcher_time_limit_kills_every_worker(mp):
    """A run over its time limit raises WorkerFailure at once and leaves no worker behind."""
    with pytest.raises(mp.WorkerFailure, match=r"did not finish within 0\.5 s") as failure:
        mp.launch(2, ARGS, devices_per_process=2, timeout=0.5)
    assert len(failure.value.pids) == 2
    for pid in failure.value.pids:  # killed and reaped: the pids no longer exist
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_bad_arguments_are_refused(mp, tmp_path):
    with pytest.raises(ValueError, match="launch: num_processes must be >= 1, got 0"):
        mp.launch(0, ARGS)
    with pytest.raises(ValueError, match="launch: timeout must be > 0 seconds"):
        mp.launch(2, ARGS, timeout=0)
    with pytest.raises(ValueError, match="RunConfig: steps must be >= 2, got 1"):
        mp.RunConfig(steps=1)
    mesh8 = mp.make_mesh(jax.devices()[:8])
    with pytest.raises(ValueError, match="batch_size 60 must be divisible by the mesh's 8 devices"):
        mp.train(mp.RunConfig(steps=2, batch_size=60), mesh8)
    with pytest.raises(ValueError, match=r"restore_dir .*absent is not a directory"):
        mp.train(mp.RunConfig(steps=2), mesh8, restore_dir=tmp_path / "absent")
    assert not (tmp_path / "absent").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"train: no checkpoint in .*empty; it holds steps \[\]"):
        mp.train(mp.RunConfig(steps=2), mesh8, restore_dir=tmp_path / "empty")
    assert sorted(p.name for p in (tmp_path / "empty").iterdir()) == []
    with pytest.raises(ValueError, match="checkpoint_every must be >= 1"):
        mp.train(mp.RunConfig(steps=2), mesh8, checkpoint_dir="unused", checkpoint_every=0)
    for argv in (["--process-id", "2", "--num-processes", "2", "--coordinator", "h:1"],
                 ["--process-id", "1", "--num-processes", "2"], ["--batch-size", "30"]):  # fmt: skip
        with pytest.raises(SystemExit):
            mp.parse_args(argv)
    flags = "--xla_cpu_foo=1 --xla_force_host_platform_device_count=8"
    assert mp.with_device_count(flags, 2) == "--xla_cpu_foo=1 --xla_force_host_platform_device_count=2"


def test_launcher_forwards_the_run_to_its_workers(mp):
    """What a worker parses from the launcher's forwarded flags is the launcher's run."""
    launcher = mp.parse_args(["--num-processes", "2", "--quick", "--batch-size", "32", "--hidden", "16",
                              "--lr", "0.0123", "--seed", "7", "--checkpoint-dir", "a", "--checkpoint-every", "3",
                              "--restore-dir", "b", "--restore-step", "6", "--step-time", "0.5"])  # fmt: skip
    worker = mp.parse_args(["--process-id", "1", "--num-processes", "2", "--coordinator", "127.0.0.1:1",
                            *mp.worker_args(launcher)])  # fmt: skip
    assert mp.config_from_args(worker) == mp.config_from_args(launcher) == mp.RunConfig(
        steps=40, batch_size=32, hidden=16, learning_rate=0.0123, seed=7
    )
    for name in ("checkpoint_dir", "checkpoint_every", "restore_dir", "restore_step", "step_time"):
        assert getattr(worker, name) == getattr(launcher, name), name


def test_process_slice_is_this_process_block_of_the_batch(mp):
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    # one process holding all 8 devices owns every row
    assert mp.process_slice(NamedSharding(mp.make_mesh(jax.devices()[:8]), P("data")), 64) == slice(0, 64)
    assert mp.parse_losses("step 3 loss 0.5\nnoise\nstep 4 loss 2.25\n") == {3: 0.5, 4: 2.25}
    assert mp.parse_checkpoints("checkpoint 2 saved\nstep 3 loss 1.0\ncheckpoint 4 saved\n") == [2, 4]


@pytest.mark.slow
def test_two_processes_follow_the_one_process_curve_and_their_checkpoints_restore_in_one(
    mp, config, one_device, reference, tmp_path
):
    """The command line end to end: `multiprocess_train.py --num-processes 2` as a user runs it."""
    ref, _ = reference
    checkpoints = tmp_path / "ckpt"
    command = [sys.executable, str(EXAMPLES / "multiprocess_train.py"), "--num-processes", "2", *ARGS,
               "--checkpoint-dir", str(checkpoints), "--checkpoint-every", str(EVERY),
               "--out", str(tmp_path / "fig"), "--timeout", str(LAUNCH_TIMEOUT)]  # fmt: skip
    # on a timeout subprocess.run SIGKILLs the launcher, and its workers exit with it
    proc = subprocess.run(command, env=user_env(), capture_output=True, text=True, timeout=LAUNCH_TIMEOUT + 30)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "process 0/2: 2 local devices, mesh data=4, batch rows 0:32" in out
    # the launcher compared every worker's curve with process 0's (exactly) before saying this
    assert f"all 2 processes saw the same loss curve ({STEPS} steps)" in out
    assert_on_curve(mp.parse_losses(out), ref.losses, range(1, STEPS + 1))
    assert mp.parse_checkpoints(out) == list(range(EVERY, STEPS + 1, EVERY))
    assert (tmp_path / "fig" / "multiprocess_loss.png").read_bytes()[:4] == b"\x89PNG"

    # the 2-process checkpoint of step EVERY restores on 1 device and resumes on the curve
    resumed = mp.train(config, one_device, restore_dir=checkpoints, restore_step=EVERY, log=lambda _: None)
    assert resumed.start_step == EVERY
    assert_on_curve(resumed.losses, ref.losses, range(EVERY + 1, STEPS + 1))
    # the 2-process final checkpoint holds the 1-process final state (params and Adam moments)
    final = mp.train(config, one_device, restore_dir=checkpoints, log=lambda _: None)
    assert final.start_step == STEPS and final.losses == {}
    chex.assert_trees_all_close(final.state, ref.state, rtol=1e-5, atol=1e-7)


@pytest.mark.slow
def test_one_process_checkpoint_resumes_in_two_and_a_sigkill_loses_no_checkpoint(
    mp, config, one_device, reference, tmp_path
):
    ref, one_process_dir = reference
    kill_after = EVERY + 6  # the resumed run's third checkpoint; 6 steps of ≥ 0.4 s remain to kill in
    seen: dict[str, list] = {}

    def kill_worker_1(i, line, processes):
        seen["processes"] = processes
        if i == 0 and line == f"checkpoint {kill_after} saved" and "killed" not in seen:
            os.kill(processes[1].pid, signal.SIGKILL)
            seen["killed"] = []

    args = [*ARGS, "--restore-dir", str(one_process_dir), "--restore-step", str(EVERY),
            "--checkpoint-dir", str(tmp_path), "--checkpoint-every", "2", "--step-time", "0.4"]  # fmt: skip
    with pytest.raises(mp.WorkerFailure, match="exited with status") as failure:
        mp.launch(2, args, devices_per_process=2, timeout=LAUNCH_TIMEOUT, on_line=kill_worker_1)
    assert "killed" in seen, failure.value.stdout[0]
    # process 1 (killed) fed rows 32:64 of each global batch and saw process 0's curve up to the kill
    assert "process 1/2: 2 local devices, mesh data=4, batch rows 32:64" in failure.value.stdout[1]
    curve_1 = mp.parse_losses(failure.value.stdout[1])
    assert curve_1 and all(mp.parse_losses(failure.value.stdout[0])[s] == v for s, v in curve_1.items())
    assert failure.value.returncodes[1] == -signal.SIGKILL
    assert all(p.poll() is not None for p in seen["processes"])  # the launcher killed the survivor

    # the 1-process checkpoint resumed in 2 processes on the uninterrupted curve, up to the kill
    out = failure.value.stdout[0]
    assert f"restored checkpoint {EVERY} from {one_process_dir}" in out
    losses = mp.parse_losses(out)
    assert min(losses) == EVERY + 1 and kill_after <= max(losses) < STEPS
    assert_on_curve(losses, ref.losses, range(EVERY + 1, max(losses) + 1))

    # restart from the last checkpoint on disk: every reported checkpoint survived the kill
    saved = mp.parse_checkpoints(out)
    assert saved == list(range(EVERY + 2, saved[-1] + 1, 2)) and saved[-1] >= kill_after, saved
    restarted = mp.train(config, one_device, restore_dir=tmp_path, log=lambda _: None)
    assert saved[-1] <= restarted.start_step < STEPS  # (the survivor cannot pass a collective alone)
    assert_on_curve(restarted.losses, ref.losses, range(restarted.start_step + 1, STEPS + 1))
    chex.assert_trees_all_close(restarted.state, ref.state, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match=r"no checkpoint 5 in .*; it holds steps \[6"):
        mp.train(config, one_device, restore_dir=tmp_path, restore_step=5)
