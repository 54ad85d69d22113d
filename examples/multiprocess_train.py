"""Train the digits MLP data-parallel across several processes with `jax.distributed`.

    python examples/multiprocess_train.py --num-processes 2              # launches 2 workers
    python examples/multiprocess_train.py --num-processes 2 --quick      # a short run (CI)
    python examples/multiprocess_train.py --num-processes 2 --checkpoint-dir /tmp/ckpt --checkpoint-every 20
    python examples/multiprocess_train.py --num-processes 2 --restore-dir /tmp/ckpt   # resume (latest step)
    python examples/multiprocess_train.py --num-processes 1              # the same run in one process

Without `--process-id` the script is the *launcher*: it picks a free port on 127.0.0.1, starts
`--num-processes` copies of itself as workers (`--process-id 0..N-1`), relays process 0's output,
and kills every worker if one fails or the run exceeds `--timeout` (examples/_launch.py's
`launch`, which starts any worker script given as `script=`). Each worker sees
`--devices-per-process` simulated CPU devices (`XLA_FLAGS=--xla_force_host_platform_device_count`),
calls

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address="127.0.0.1:PORT", num_processes=N, process_id=i)

and then every process runs the *same* program on one global mesh over all N × D devices: the
params and the optimizer state are replicated over the mesh axis `data`, and each global batch is
split along it; every process loads only its own rows (`jax.make_array_from_process_local_data`).
XLA inserts the all-reduce of the gradients. On several hosts, run one worker per host by hand
with the same `--coordinator HOST:PORT` (process 0's host); the simulated-devices flag only
concerns the CPU backend, so on GPU or TPU hosts each worker trains on its accelerators.

The optimizer is `chain(clip_by_global_norm(1.0), adamw(warmup_cosine_decay_schedule(...)))`
(examples/_common.py's `make_optimizer`), the model a plain-JAX MLP (64 → hidden → 10). Batches
are drawn from the step number alone, so a run restored from a checkpoint at step s continues
exactly as the uninterrupted run would have. Checkpoints (orbax `CheckpointManager`, written by all
processes together) hold global arrays, so they restore on any number of processes and devices.

Figure written into --out: multiprocess_loss.png.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _launch
import jax
import numpy as np
from _common import add_common_args, cross_entropy, figure_dir, load_digits_data, make_optimizer
from _launch import WorkerFailure, with_device_count
from _launch import exit_with_launcher as _exit_with_launcher
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import gradtx

LOSS_LINE = re.compile(r"^step (\d+) loss (\S+)$", re.MULTILINE)
CHECKPOINT_LINE = re.compile(r"^checkpoint (\d+) saved$", re.MULTILINE)


# --------------------------------------------------------------------------------------------
# the launcher (examples/_launch.py), with this script as the default worker
# --------------------------------------------------------------------------------------------


launch = functools.partial(_launch.launch, script=Path(__file__).resolve())
"""`_launch.launch` (a free port, one process group per worker, `WorkerFailure` and every worker
killed when one fails or the run outlives `timeout` seconds) with this example as the default
worker script; pass `script=` to start another."""


def parse_losses(text: str) -> dict[int, float]:
    """`{step: loss}` from the `step <s> loss <value>` lines a worker prints."""
    return {int(s): float(v) for s, v in LOSS_LINE.findall(text)}


def parse_checkpoints(text: str) -> list[int]:
    """The steps of the `checkpoint <s> saved` lines a worker prints, in order."""
    return [int(s) for s in CHECKPOINT_LINE.findall(text)]


# --------------------------------------------------------------------------------------------
# one worker: jax.distributed, the global mesh, the data-parallel training loop
# --------------------------------------------------------------------------------------------


def initialize_worker(
    process_id: int, num_processes: int, coordinator: str, devices_per_process: int, *, timeout: int = 60
) -> None:
    """Set up this process as worker `process_id` of `num_processes` (before any JAX computation).

    Simulated CPU devices: `devices_per_process` of them, whatever `XLA_FLAGS` said (the flag is
    read when the backend starts, so this must run first). Cross-process collectives on CPU go
    through gloo. With one process, `jax.distributed` is not started at all.
    """
    os.environ["XLA_FLAGS"] = with_device_count(os.environ.get("XLA_FLAGS", ""), devices_per_process)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if num_processes > 1:
        jax.distributed.initialize(
            coordinator_address=coordinator,
            num_processes=num_processes,
            process_id=process_id,
            initialization_timeout=timeout,
        )


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines the loss curve (the same on every process and every restart)."""

    steps: int = 300
    batch_size: int = 128
    hidden: int = 128
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    clip_norm: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 2:  # the warm-up takes one step, the cosine decay at least one more
            raise ValueError(f"RunConfig: steps must be >= 2, got {self.steps}")
        for name in ("batch_size", "hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"RunConfig: {name} must be >= 1, got {getattr(self, name)}")


def init_params(seed: int, sizes: tuple[int, ...]) -> dict[str, dict[str, np.ndarray]]:
    """He-normal weights and zero biases for the layers `sizes[0] → sizes[1] → ... → sizes[-1]`.

    Drawn on the host with NumPy from `seed` alone, so every process draws the same values (and
    no random-number kernel has to be compiled).
    """
    rng = np.random.default_rng(seed)
    return {
        f"layer{i}": {
            "w": (rng.standard_normal((n_in, n_out)) * np.sqrt(2.0 / n_in)).astype(np.float32),
            "b": np.zeros((n_out,), np.float32),
        }
        for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes))
    }


def mlp_logits(params: dict[str, dict[str, jax.Array]], x: jax.Array) -> jax.Array:
    """The ReLU MLP `params` (layers `layer0`, `layer1`, ...) applied to the batch `x`."""
    layers = [params[f"layer{i}"] for i in range(len(params))]
    for layer in layers[:-1]:
        x = jax.nn.relu(x @ layer["w"] + layer["b"][None, :])
    return x @ layers[-1]["w"] + layers[-1]["b"][None, :]


def host_accuracy(params: dict[str, dict[str, np.ndarray]], x: np.ndarray, y: np.ndarray) -> float:
    """The MLP's accuracy on `(x, y)`, in NumPy on the host (nothing to compile)."""
    layers = [params[f"layer{i}"] for i in range(len(params))]
    for layer in layers[:-1]:
        x = np.maximum(x @ layer["w"] + layer["b"], 0.0)
    return float(np.mean(np.argmax(x @ layers[-1]["w"] + layers[-1]["b"], axis=-1) == y))


def mlp_loss(params: dict[str, dict[str, jax.Array]], x: jax.Array, y: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy of the MLP `params` on the batch `(x, y)`."""
    return cross_entropy(mlp_logits(params, x), y)


def batch_rows(config: RunConfig, step: int, num_examples: int) -> np.ndarray:
    """The training-set rows of the global batch of `step` (0-based): a function of seed and step only."""
    rng = np.random.default_rng([config.seed, step])
    return rng.choice(num_examples, size=config.batch_size, replace=False)


def process_slice(sharding: NamedSharding, batch_size: int) -> slice:
    """The contiguous block of the global batch that this process's devices hold under `sharding`."""
    blocks = {idx[0].indices(batch_size)[:2] for idx in sharding.addressable_devices_indices_map((batch_size,)).values()}
    lo, hi = min(b[0] for b in blocks), max(b[1] for b in blocks)
    if sum(b[1] - b[0] for b in blocks) != hi - lo:
        raise ValueError(f"process_slice: this process's rows {sorted(blocks)} are not one contiguous block")
    return slice(lo, hi)


def make_mesh(devices: Sequence[Any] | None = None) -> Mesh:
    """A 1-D mesh (axis `data`) over `devices` (default: every device of every process)."""
    return Mesh(np.array(jax.devices() if devices is None else list(devices)), ("data",))


@functools.lru_cache(maxsize=8)
def _compiled(config: RunConfig, mesh: Mesh) -> tuple[gradtx.GradientTransformation, Callable, Callable]:
    """The optimizer, the sharded init and the jitted train step (cached: one compile per config and mesh)."""
    tx, _ = make_optimizer(
        "adamw", config.steps, learning_rate=config.learning_rate,
        weight_decay=config.weight_decay, clip_norm=config.clip_norm,
    )  # fmt: skip
    replicated = NamedSharding(mesh, P())
    sizes = (64, config.hidden, 10)

    init_state = jax.jit(lambda params: {"params": params, "opt_state": tx.init(params)}, out_shardings=replicated)

    def init() -> dict[str, Any]:
        # host values -> global arrays: each process supplies the blocks its devices hold
        host = init_params(config.seed, sizes)
        params = jax.tree.map(lambda a: jax.make_array_from_callback(a.shape, replicated, lambda i: a[i]), host)
        return init_state(params)

    # params replicated (pure data parallelism); the state is sharded like the params, so also
    # replicated. The batch is split along `data`: XLA all-reduces the gradients.
    @functools.partial(jax.jit, out_shardings=(replicated, replicated), donate_argnums=0)
    def step(state: dict[str, Any], x: jax.Array, y: jax.Array) -> tuple[dict[str, Any], jax.Array]:
        loss, grads = jax.value_and_grad(mlp_loss)(state["params"], x, y)
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        return {"params": gradtx.apply_updates(state["params"], updates), "opt_state": opt_state}, loss

    return tx, init, step


@dataclass
class TrainResult:
    """What `train` returns: `{step: loss}` of the steps it ran (1-based), the final state, where it began."""

    losses: dict[int, float] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    start_step: int = 0
    test_accuracy: float = float("nan")


def _checkpoint_manager(directory: str | os.PathLike, every: int = 1, *, read_only: bool = False) -> Any:
    """Orbax's manager, synchronous: `save` returns once the step is on disk and finalized."""
    import orbax.checkpoint as ocp

    options = ocp.CheckpointManagerOptions(
        save_interval_steps=every, max_to_keep=None, enable_async_checkpointing=False,
        create=not read_only, read_only=read_only,
    )  # fmt: skip
    return ocp.CheckpointManager(Path(directory).resolve(), options=options)


def train(
    config: RunConfig,
    mesh: Mesh,
    *,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 0,
    restore_dir: str | os.PathLike | None = None,
    restore_step: int | None = None,
    step_time: float = 0.0,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Train on `mesh` (of one or several processes); every process calls this with the same arguments.

    Step `s` (1-based) draws the global batch `batch_rows(config, s - 1, ...)`, each process puts
    its own rows of it on its devices, and the jitted step updates the replicated state. Logs
    `step <s> loss <value>` per step and, with `checkpoint_dir`, saves `{params, opt_state}` after
    every `checkpoint_every` steps (`checkpoint <s> saved` once it is on disk). With `restore_dir`,
    training starts from that directory's checkpoint `restore_step` (default: its latest) instead of
    from the initial state; the checkpoint may come from any number of processes and devices.
    `step_time` (seconds) slows each step down to at least that long (to watch a run, or kill it).
    """
    if checkpoint_dir is not None and checkpoint_every < 1:
        raise ValueError(f"train: checkpoint_every must be >= 1 with a checkpoint_dir, got {checkpoint_every}")
    if config.batch_size % mesh.size:
        raise ValueError(
            f"train: the global batch_size {config.batch_size} must be divisible by the mesh's {mesh.size} devices"
        )
    if restore_dir is not None and not Path(restore_dir).is_dir():
        raise ValueError(f"train: restore_dir {restore_dir} is not a directory")
    data = load_digits_data(seed=config.seed)
    _, init, step = _compiled(config, mesh)
    batch_sharding = NamedSharding(mesh, P("data"))
    rows = process_slice(batch_sharding, config.batch_size)

    state, start = init(), 0
    if restore_dir is not None:
        import orbax.checkpoint as ocp

        with _checkpoint_manager(restore_dir, read_only=True) as restorer:
            steps = list(restorer.all_steps())
            start = restorer.latest_step() if restore_step is None else restore_step
            if start is None or start not in steps:
                wanted = "no checkpoint" if restore_step is None else f"no checkpoint {restore_step}"
                raise ValueError(f"train: {wanted} in {restore_dir}; it holds steps {sorted(steps)}")
            target = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding), state)
            state = restorer.restore(start, args=ocp.args.StandardRestore(target))
        log(f"restored checkpoint {start} from {restore_dir}")
    if start > config.steps:
        raise ValueError(f"train: the checkpoint is at step {start}, past config.steps={config.steps}")

    manager = None
    if checkpoint_dir is not None:
        import orbax.checkpoint as ocp

        manager = _checkpoint_manager(checkpoint_dir, checkpoint_every)
    result = TrainResult(start_step=start)
    try:
        for s in range(start + 1, config.steps + 1):
            began = time.perf_counter()
            idx = batch_rows(config, s - 1, len(data.y_train))[rows]
            x = jax.make_array_from_process_local_data(
                batch_sharding, data.x_train[idx], (config.batch_size, data.num_features)
            )
            y = jax.make_array_from_process_local_data(batch_sharding, data.y_train[idx], (config.batch_size,))
            state, loss = step(state, x, y)
            result.losses[s] = float(loss)
            log(f"step {s} loss {result.losses[s]!r}")
            if manager is not None and s % checkpoint_every == 0:
                manager.save(s, args=ocp.args.StandardSave(state))
                manager.wait_until_finished()
                log(f"checkpoint {s} saved")
            time.sleep(max(0.0, step_time - (time.perf_counter() - began)))
    finally:
        if manager is not None:
            manager.close()
    result.state = state
    # evaluation on the host: the replicated params are whole on every process
    params = jax.tree.map(lambda a: np.asarray(a.addressable_data(0)), state["params"])
    result.test_accuracy = host_accuracy(params, data.x_test, data.y_test)
    return result



# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(parser)
    parser.add_argument("--num-processes", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--devices-per-process", type=int, default=2, help="simulated CPU devices per process")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default 300, 40 with --quick)")
    parser.add_argument("--batch-size", type=int, default=128, help="global batch, split over all devices")
    parser.add_argument("--hidden", type=int, default=128, help="hidden units of the MLP")
    parser.add_argument("--lr", type=float, default=3e-3, help="peak learning rate of the schedule")
    parser.add_argument("--checkpoint-dir", default=None, help="write orbax checkpoints into this folder")
    parser.add_argument("--checkpoint-every", type=int, default=10, help="steps between checkpoints")
    parser.add_argument("--restore-dir", default=None, help="resume from a checkpoint in this folder")
    parser.add_argument("--restore-step", type=int, default=None, help="the checkpoint to resume from (default latest)")
    parser.add_argument("--step-time", type=float, default=0.0, help="make each step last at least this long (s)")
    parser.add_argument("--timeout", type=float, default=300.0, help="launcher: kill every worker after this long (s)")
    parser.add_argument("--process-id", type=int, default=None, help="run as this worker (set by the launcher)")
    parser.add_argument("--coordinator", default=None, help="worker: HOST:PORT of process 0's coordinator")
    args = parser.parse_args(argv)
    if args.steps is None:
        args.steps = 40 if args.quick else 300
    for name in ("num_processes", "devices_per_process", "checkpoint_every"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    devices = args.num_processes * args.devices_per_process
    if args.batch_size % devices:
        parser.error(f"--batch-size {args.batch_size} must be divisible by the {devices} devices of the mesh")
    if args.process_id is not None:
        if not 0 <= args.process_id < args.num_processes:
            parser.error(f"--process-id must be in [0, {args.num_processes}), got {args.process_id}")
        if args.num_processes > 1 and args.coordinator is None:
            parser.error("a worker of several processes needs --coordinator HOST:PORT")
    return args


def config_from_args(args: argparse.Namespace) -> RunConfig:
    return RunConfig(steps=args.steps, batch_size=args.batch_size, hidden=args.hidden,
                     learning_rate=args.lr, seed=args.seed)  # fmt: skip


def worker_args(args: argparse.Namespace) -> list[str]:
    """The flags the launcher passes on to every worker (the run's config and checkpoint options)."""
    forwarded = ["--steps", str(args.steps), "--batch-size", str(args.batch_size), "--hidden", str(args.hidden),
                 "--lr", repr(args.lr), "--seed", str(args.seed), "--step-time", repr(args.step_time),
                 "--checkpoint-every", str(args.checkpoint_every)]  # fmt: skip
    for flag, value in (("--checkpoint-dir", args.checkpoint_dir), ("--restore-dir", args.restore_dir),
                        ("--restore-step", args.restore_step)):  # fmt: skip
        if value is not None:
            forwarded += [flag, str(value)]
    return forwarded


def run_worker(args: argparse.Namespace) -> TrainResult:
    """Worker `args.process_id` (or the only process): initialize, train on the global mesh, log."""
    _exit_with_launcher()
    initialize_worker(args.process_id or 0, args.num_processes, args.coordinator or "",
                      args.devices_per_process)  # fmt: skip
    try:
        mesh = make_mesh()
        rows = process_slice(NamedSharding(mesh, P("data")), args.batch_size)
        print(f"process {jax.process_index()}/{jax.process_count()}: {jax.local_device_count()} local devices, "
              f"mesh data={mesh.size}, batch rows {rows.start}:{rows.stop}", flush=True)  # fmt: skip
        start = time.perf_counter()
        result = train(
            config_from_args(args), mesh,
            checkpoint_dir=args.checkpoint_dir, checkpoint_every=args.checkpoint_every,
            restore_dir=args.restore_dir, restore_step=args.restore_step, step_time=args.step_time,
            log=lambda line: print(line, flush=True),
        )  # fmt: skip
        print(f"test accuracy: {result.test_accuracy:.4f}")
        print(f"wall time: {time.perf_counter() - start:.1f} s", flush=True)
        return result
    finally:
        if args.num_processes > 1:
            jax.distributed.shutdown()


def plot_losses(losses: dict[int, float], path: Path, title: str) -> None:
    from _common import plt, save_figure

    fig, ax = plt.subplots(figsize=(6, 3.5))
    steps = sorted(losses)
    ax.plot(steps, [losses[s] for s in steps])
    ax.set(xlabel="step", ylabel="training loss (global batch)", yscale="log", title=title)
    fig.tight_layout()
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.process_id is not None:  # a worker started by the launcher (or by hand on each host)
        run_worker(args)
        return
    processes = "1 process" if args.num_processes == 1 else f"{args.num_processes} processes"
    title = f"{processes} × {args.devices_per_process} devices, global batch {args.batch_size}"
    if args.num_processes == 1:  # the same run in this one process
        losses = run_worker(args).losses
    else:
        # SIGTERM becomes SystemExit, so that launch()'s clean-up kills the workers
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
        try:
            outputs = launch(args.num_processes, worker_args(args), devices_per_process=args.devices_per_process,
                             timeout=args.timeout, echo=True)  # fmt: skip
        except WorkerFailure as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(1)
        curves = [parse_losses(out) for out in outputs]
        if any(c != curves[0] for c in curves[1:]):
            print("error: the processes saw different loss curves", file=sys.stderr)
            sys.exit(1)
        losses = curves[0]
        print(f"all {args.num_processes} processes saw the same loss curve ({len(losses)} steps)")
    if losses:
        path = figure_dir(args.out) / "multiprocess_loss.png"
        plot_losses(losses, path, title)
        print(f"figure: {path}")


if __name__ == "__main__":
    main()
