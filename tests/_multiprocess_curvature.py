"""Worker of the 2-process curvature check in tests/test_curvature_sharded.py (not a test module).

Started by examples/multiprocess_train.py's `launch` (one copy per process, with `--process-id`,
`--num-processes`, `--coordinator` and `--devices-per-process`). Every process builds the same
global mesh over all processes' devices, supplies only its own rows of the global batch
(`jax.make_array_from_process_local_data`), and calls `eigsh` and `hessian_trace` exactly as one
process would: XLA partitions the jitted Hessian-vector products and all-reduces over gloo.
Prints `rows <lo>:<hi>`, `top_eigenvalue <repr>` and `trace <repr>`.

`problem()` and `estimates()` are imported by the test, which computes the one-device reference
with the same code.
"""

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

import jax
import multiprocess_train as mpt
import numpy as np

from gradtx.curvature import eigsh, hessian_trace

SIZES = (64, 32, 10)  # the example's digits MLP, 64 → 32 → 10 (2,410 parameters)
BATCH = 64  # the global batch, split over all devices of all processes
NUM_ITERS = 30
TRACE_SAMPLES = 20


def problem(seed: int = 0) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Host params (the example's He-normal init) and a global batch of digit-shaped data."""
    rng = np.random.default_rng(seed + 1)
    x = rng.uniform(0.0, 1.0, (BATCH, SIZES[0])).astype(np.float32)
    y = rng.integers(0, SIZES[-1], BATCH).astype(np.int32)
    return mpt.init_params(seed, SIZES), x, y


def estimates(params: Any, x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The top Hessian eigenvalue (Lanczos) and the Hutchinson trace of the example's loss."""
    top = eigsh(mpt.mlp_loss, params, x, y, k=1, num_iters=NUM_ITERS, key=jax.random.PRNGKey(0))[0][-1]
    trace = hessian_trace(mpt.mlp_loss, params, x, y, num_samples=TRACE_SAMPLES, key=jax.random.PRNGKey(1))
    return top, trace


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--process-id", type=int, required=True)
    parser.add_argument("--num-processes", type=int, required=True)
    parser.add_argument("--coordinator", required=True)
    parser.add_argument("--devices-per-process", type=int, required=True)
    args = parser.parse_args()
    mpt._exit_with_launcher()
    mpt.initialize_worker(args.process_id, args.num_processes, args.coordinator, args.devices_per_process)
    try:
        from jax.sharding import NamedSharding
        from jax.sharding import PartitionSpec as P

        mesh = mpt.make_mesh()
        replicated, split = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
        host_params, x_all, y_all = problem()
        rows = mpt.process_slice(split, BATCH)
        params = jax.tree.map(
            lambda a: jax.make_array_from_callback(a.shape, replicated, lambda i: a[i]), host_params
        )
        x = jax.make_array_from_process_local_data(split, x_all[rows], x_all.shape)
        y = jax.make_array_from_process_local_data(split, y_all[rows], y_all.shape)
        top, trace = estimates(params, x, y)
        # the results are replicated: every process holds the whole value
        print(
            f"process {jax.process_index()}/{jax.process_count()} mesh data={mesh.size} rows {rows.start}:{rows.stop}"
        )
        print(f"top_eigenvalue {float(top.addressable_data(0))!r}")
        print(f"trace {float(trace.addressable_data(0))!r}", flush=True)
    finally:
        jax.distributed.shutdown()


if __name__ == "__main__":
    main()
