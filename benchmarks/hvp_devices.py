"""Hessian-vector products on several devices: one process with 1, 2, 4, 8 devices, and 2 processes.

    python benchmarks/hvp_devices.py            # prints a markdown table (and --json PATH)
    python benchmarks/hvp_devices.py --quick    # a smaller model and fewer repeats

Each case runs in a fresh Python process (the simulated-device count is fixed when JAX's CPU
backend starts): `XLA_FLAGS=--xla_force_host_platform_device_count=D`, a 1-D mesh `data` over the
D devices, the MLP's params replicated and the batch split along `data`; one jitted
`gradtx.curvature.hvp` is compiled, then timed (`block_until_ready` after each product; the
median of `--repeats` products). The 2-process case starts two workers with
examples/multiprocess_train.py's launcher (`jax.distributed` over gloo on 127.0.0.1, a free port,
a time limit): 2 processes × 2 devices on one global mesh of 4, the batch split across processes.

**What the numbers mean.** The simulated devices are threads of one host process sharing the
machine's cores (2 here), so more devices never compute faster: every device does its share of the
arithmetic on the same cores, then the devices all-reduce the gradient of the HVP. The table shows
the *overhead* of partitioning the product (collectives, per-device dispatch, smaller kernels),
not a speed-up; on real accelerators each device brings its own compute. The load average before
and after each case is printed next to it: the machine is shared, and a loaded case is slower.
"""

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SIMULATED_DEVICES_FLAG = "--xla_force_host_platform_device_count"
RESULT_PREFIX = "RESULT "


def _env_with_devices(devices: int) -> dict[str, str]:
    """This process's environment with `devices` simulated CPU devices and the repository importable."""
    env = dict(os.environ)
    flags = [f for f in env.get("XLA_FLAGS", "").split() if not f.startswith(SIMULATED_DEVICES_FLAG)]
    env["XLA_FLAGS"] = " ".join([*flags, f"{SIMULATED_DEVICES_FLAG}={devices}"])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


# --------------------------------------------------------------------------------------------
# one case (runs inside the fresh process)
# --------------------------------------------------------------------------------------------


def measure(sizes: tuple[int, ...], batch: int, repeats: int) -> dict[str, Any]:
    """Compile and time one jitted HVP of the MLP loss on every device of every process."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    from gradtx.curvature import hvp

    load_before = os.getloadavg()[0]
    mesh = Mesh(np.array(jax.devices()), ("data",))
    if batch % mesh.size:
        raise ValueError(f"hvp_devices: batch {batch} must be divisible by the {mesh.size} devices")
    replicated, split = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    rng = np.random.default_rng(0)
    host = {
        f"layer{i}": {
            "w": (rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32),
            "b": np.zeros(b, np.float32),
        }
        for i, (a, b) in enumerate(itertools.pairwise(sizes))
    }
    x_all = rng.standard_normal((batch, sizes[0])).astype(np.float32)
    y_all = rng.integers(0, sizes[-1], batch).astype(np.int32)

    def global_array(a: np.ndarray, sharding: NamedSharding) -> jax.Array:
        return jax.make_array_from_callback(a.shape, sharding, lambda index: a[index])

    params = jax.tree.map(lambda a: global_array(a, replicated), host)
    v = jax.tree.map(lambda a: global_array(np.ones_like(a), replicated), host)
    x, y = global_array(x_all, split), global_array(y_all, split)

    def loss(p: Any, x: jax.Array, y: jax.Array) -> jax.Array:
        h = x
        for i in range(len(p) - 1):
            h = jnp.tanh(h @ p[f"layer{i}"]["w"] + p[f"layer{i}"]["b"][None, :])
        last = p[f"layer{len(p) - 1}"]
        logp = jax.nn.log_softmax(h @ last["w"] + last["b"][None, :])
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

    product = jax.jit(lambda p, v, x, y: hvp(loss, p, v, x, y), out_shardings=replicated)
    start = time.perf_counter()
    compiled = product.lower(params, v, x, y).compile()
    compile_s = time.perf_counter() - start
    jax.block_until_ready(compiled(params, v, x, y))  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(params, v, x, y))
        times.append(time.perf_counter() - start)
    out = compiled(params, v, x, y)
    norm = float(
        np.sqrt(sum(np.sum(np.asarray(a.addressable_data(0), np.float64) ** 2) for a in jax.tree.leaves(out)))
    )
    return {
        "processes": jax.process_count(),
        "devices": mesh.size,
        "params": int(sum(a.size for a in jax.tree.leaves(host))),
        "batch": batch,
        "median_ms": 1e3 * statistics.median(times),
        "min_ms": 1e3 * min(times),
        "compile_s": compile_s,
        "hvp_norm": norm,
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
    }


# --------------------------------------------------------------------------------------------
# the driver: one subprocess per case
# --------------------------------------------------------------------------------------------


def _case_args(args: argparse.Namespace) -> list[str]:
    return [
        "--sizes",
        ",".join(map(str, args.sizes)),
        "--batch",
        str(args.batch),
        "--repeats",
        str(args.repeats),
    ]


def _parse_result(text: str) -> dict[str, Any]:
    lines = [line for line in text.splitlines() if line.startswith(RESULT_PREFIX)]
    if not lines:
        raise RuntimeError(f"hvp_devices: a case printed no result:\n{text[-2000:]}")
    return json.loads(lines[-1][len(RESULT_PREFIX) :])


def run_single_process(devices: int, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--case", *_case_args(args)]
    proc = subprocess.run(
        command, env=_env_with_devices(devices), capture_output=True, text=True, timeout=args.timeout
    )
    if proc.returncode:
        raise RuntimeError(f"hvp_devices: the {devices}-device case failed:\n{proc.stderr[-3000:]}")
    return _parse_result(proc.stdout)


def run_two_processes(args: argparse.Namespace) -> dict[str, Any]:
    """2 processes × 2 devices through examples/multiprocess_train.py's launcher."""
    sys.path.insert(0, str(ROOT / "examples"))
    import multiprocess_train as launcher

    os.environ["PYTHONPATH"] = _env_with_devices(2)["PYTHONPATH"]
    # `launch` starts copies of this script as its workers
    outputs = launcher.launch(2, _case_args(args), script=Path(__file__).resolve(), devices_per_process=2,
                              timeout=args.timeout)
    results = [_parse_result(out) for out in outputs]
    if len({r["hvp_norm"] for r in results}) != 1:
        raise RuntimeError(f"hvp_devices: the 2 processes computed different products: {results}")
    return results[0]


def markdown_table(results: list[dict[str, Any]]) -> str:
    base = results[0]["median_ms"]
    lines = [
        "| Processes × devices | Median HVP (ms) | Fastest (ms) | vs 1 device | Compile (s) | Load before → after |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in results:
        per = r["devices"] // r["processes"]
        lines.append(
            f"| {r['processes']} × {per} | {r['median_ms']:.2f} | {r['min_ms']:.2f} | {r['median_ms'] / base:.2f} "
            f"| {r['compile_s']:.2f} | {r['load_before']:.2f} → {r['load_after']:.2f} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smaller model and fewer repeats")
    parser.add_argument(
        "--sizes", default=None, help="MLP layer sizes, comma-separated (default 64,512,512,10)"
    )
    parser.add_argument(
        "--batch", type=int, default=None, help="global batch (default 1024; 256 with --quick)"
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="timed products per case (default 50; 10 quick)"
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds allowed per case")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument("--case", action="store_true", help="(internal) run one case in this process")
    # set by the launcher of the 2-process case
    parser.add_argument("--process-id", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--num-processes", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--coordinator", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--devices-per-process", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sizes = args.sizes or ("64,128,128,10" if args.quick else "64,512,512,10")
    args.sizes = tuple(int(s) for s in sizes.split(","))
    args.batch = args.batch or (256 if args.quick else 1024)
    args.repeats = args.repeats or (10 if args.quick else 50)
    if args.repeats < 1 or args.batch % 8:
        parser.error("--repeats must be >= 1 and --batch divisible by 8")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.process_id is not None:  # a worker of the 2-process case
        sys.path.insert(0, str(ROOT / "examples"))
        import multiprocess_train as launcher

        launcher._exit_with_launcher()
        launcher.initialize_worker(
            args.process_id, args.num_processes, args.coordinator, args.devices_per_process
        )
        try:
            print(RESULT_PREFIX + json.dumps(measure(args.sizes, args.batch, args.repeats)), flush=True)
        finally:
            import jax

            jax.distributed.shutdown()
        return
    if args.case:
        print(RESULT_PREFIX + json.dumps(measure(args.sizes, args.batch, args.repeats)), flush=True)
        return
    results = []
    for devices in (1, 2, 4, 8):
        results.append(run_single_process(devices, args))
        print(
            f"1 process × {devices} devices: {results[-1]['median_ms']:.2f} ms", file=sys.stderr, flush=True
        )
    results.append(run_two_processes(args))
    print(f"2 processes × 2 devices: {results[-1]['median_ms']:.2f} ms", file=sys.stderr, flush=True)
    norms = [r["hvp_norm"] for r in results]
    if max(norms) - min(norms) > 1e-4 * max(norms):
        raise RuntimeError(f"hvp_devices: the cases computed different products (norms {norms})")
    r = results[0]
    print(f"MLP {'-'.join(map(str, args.sizes))} ({r['params']:,} params), global batch {args.batch}, "
          f"median of {args.repeats} products per case, {os.cpu_count()} CPU cores\n")  # fmt: skip
    print(markdown_table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
