"""Launch a multi-process `jax.distributed` run on one machine: free port, workers, time limit, clean-up.

The launcher of examples/multiprocess_train.py, for any worker script that follows the same
protocol (tests/_multiprocess_curvature.py, benchmarks/hvp_devices.py). `launch(N, worker_args,
script=path)` starts `N` copies of `path`, worker `i` with the command line

    python -u path --process-id i --num-processes N --coordinator 127.0.0.1:PORT \\
        --devices-per-process D  <worker_args...>

(`PORT` a free port, picked once per launch), each in its own session (process group), with
`XLA_FLAGS` set to `D` simulated CPU devices and unbuffered output. A worker parses those flags,
calls `exit_with_launcher()` first thing, then `jax.distributed.initialize(...)` with them (see
`initialize_worker` in examples/multiprocess_train.py), and prints its results on stdout, which
`launch` returns (one string per worker).

If one worker exits with a non-zero status or the run outlives its time limit, `launch` kills
every worker still running (SIGKILL to its process group) and raises `WorkerFailure`; it kills
them too on any other way out (an exception in `on_line`, KeyboardInterrupt, SystemExit). The
one exit it cannot see, its own SIGKILL, is covered on the worker side by `exit_with_launcher`.
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "PARENT_ENV",
    "SIMULATED_DEVICES_FLAG",
    "WorkerFailure",
    "exit_with_launcher",
    "free_port",
    "launch",
    "with_device_count",
]

SIMULATED_DEVICES_FLAG = "--xla_force_host_platform_device_count"
PARENT_ENV = "MULTIPROCESS_TRAIN_LAUNCHER_PID"  # the launcher's pid, in every worker's environment


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (bound to port 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def with_device_count(xla_flags: str, devices: int) -> str:
    """`xla_flags` with the simulated-CPU-devices flag replaced by `devices` devices."""
    kept = [f for f in xla_flags.split() if not f.startswith(SIMULATED_DEVICES_FLAG)]
    return " ".join([*kept, f"{SIMULATED_DEVICES_FLAG}={devices}"])


class WorkerFailure(RuntimeError):
    """A worker exited with a non-zero status, or the run exceeded its time limit.

    `returncodes` holds each worker's exit status when the failure was noticed (negative: killed
    by that signal; None: still running, and then killed by the launcher), `stdout`/`stderr` all
    that each printed, `pids` their process ids (every worker is reaped before this is raised).
    """

    def __init__(
        self, message: str, returncodes: list[int | None], stdout: list[str], stderr: list[str], pids: list[int]
    ):
        tails = "".join(
            f"\n--- process {i} (exit {code}) stderr tail ---\n{err[-3000:]}"
            for i, (code, err) in enumerate(zip(returncodes, stderr))
        )
        super().__init__(message + tails)
        self.returncodes = returncodes
        self.stdout = stdout
        self.stderr = stderr
        self.pids = pids


def exit_with_launcher() -> None:
    """In a worker: end this process (status 1) as soon as the launcher that started it is gone.

    `launch` kills its workers on every exit it sees; this covers the one it cannot see, the
    launcher itself being SIGKILLed, so that no worker outlives it (a worker whose peer is gone
    would otherwise wait in a collective until the coordination service's heartbeat times out).
    Does nothing in a process that `launch` did not start.
    """
    launcher = int(os.environ.get(PARENT_ENV, "0"))
    if not launcher:
        return

    def watch() -> None:
        while os.getppid() == launcher:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="exit-with-launcher").start()


def launch(
    num_processes: int,
    worker_args: Sequence[str],
    *,
    script: str | os.PathLike[str],
    devices_per_process: int = 2,
    timeout: float = 300.0,
    on_line: Callable[[int, str, list[subprocess.Popen]], None] | None = None,
    echo: bool = False,
) -> list[str]:
    """Run `num_processes` workers of `script` on 127.0.0.1; return each worker's stdout.

    Every worker is started in its own session with `--process-id i --num-processes N
    --coordinator 127.0.0.1:<free port> --devices-per-process D` followed by `worker_args`, and
    with `XLA_FLAGS` set to D simulated CPU devices (whatever the caller's `XLA_FLAGS` said).
    `on_line(i, line, processes)` is called for every line worker `i` prints, as it prints it
    (the processes are passed so that a caller can, say, kill one); `echo` relays process 0's
    lines to this process's stdout.

    Raises `WorkerFailure` as soon as one worker exits with a non-zero status, or when the whole
    run takes longer than `timeout` seconds; in every case (also on an exception in `on_line`
    or a KeyboardInterrupt) the workers still running are killed (SIGKILL to their process
    groups) before this function returns. Raises ValueError for `num_processes < 1`,
    `devices_per_process < 1`, `timeout <= 0` or a `script` that is not a file.
    """
    if num_processes < 1:
        raise ValueError(f"launch: num_processes must be >= 1, got {num_processes}")
    if devices_per_process < 1:
        raise ValueError(f"launch: devices_per_process must be >= 1, got {devices_per_process}")
    if timeout <= 0:
        raise ValueError(f"launch: timeout must be > 0 seconds, got {timeout}")
    script = Path(script).resolve()
    if not script.is_file():
        raise ValueError(f"launch: script must be a Python file to run as each worker, got {script}")
    coordinator = f"127.0.0.1:{free_port()}"
    env = dict(os.environ)
    env["XLA_FLAGS"] = with_device_count(env.get("XLA_FLAGS", ""), devices_per_process)
    env["PYTHONUNBUFFERED"] = "1"
    env[PARENT_ENV] = str(os.getpid())
    lines: queue.Queue[tuple[int, str | None]] = queue.Queue()
    stdout: list[list[str]] = [[] for _ in range(num_processes)]
    stderr: list[list[str]] = [[] for _ in range(num_processes)]
    processes: list[subprocess.Popen] = []
    readers: list[threading.Thread] = []

    def read_stdout(i: int, stream: Any) -> None:
        for line in stream:
            lines.put((i, line))
        lines.put((i, None))

    def read_stderr(i: int, stream: Any) -> None:
        for line in stream:
            stderr[i].append(line)

    deadline = time.monotonic() + timeout
    error: tuple[str, list[int | None]] | None = None
    try:
        for i in range(num_processes):
            command = [
                sys.executable, "-u", str(script),
                "--process-id", str(i), "--num-processes", str(num_processes),
                "--coordinator", coordinator, "--devices-per-process", str(devices_per_process),
                *worker_args,
            ]  # fmt: skip
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
                start_new_session=True,
            )
            processes.append(process)
            for target, stream in ((read_stdout, process.stdout), (read_stderr, process.stderr)):
                reader = threading.Thread(target=target, args=(i, stream), daemon=True)
                reader.start()
                readers.append(reader)
        open_streams = num_processes
        while True:
            codes = [p.poll() for p in processes]
            failed = [(i, c) for i, c in enumerate(codes) if c not in (None, 0)]
            if failed:
                error = (f"launch: worker {failed[0][0]} exited with status {failed[0][1]}", codes)
                break
            if open_streams == 0 and all(c == 0 for c in codes):
                break
            if time.monotonic() > deadline:
                error = (f"launch: the {num_processes} workers did not finish within {timeout:g} s", codes)
                break
            try:
                i, line = lines.get(timeout=0.05)
            except queue.Empty:
                continue
            if line is None:
                open_streams -= 1
                continue
            stdout[i].append(line)
            if echo and i == 0:
                print(line, end="", flush=True)
            if on_line is not None:
                on_line(i, line.rstrip("\n"), processes)
    finally:
        for process in processes:
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for process in processes:
            process.wait(timeout=30)
        for reader in readers:
            reader.join(timeout=5)
    while not lines.empty():  # what the workers printed after the last line handled above
        i, line = lines.get_nowait()
        if line is not None:
            stdout[i].append(line)
    outputs = ["".join(s) for s in stdout]
    if error is not None:
        message, codes = error
        raise WorkerFailure(message, codes, outputs, ["".join(s) for s in stderr], [p.pid for p in processes])
    return outputs
