"""Measurement machinery for `benchmarks/run.py`: gradtx against optax, step by step.

Method (also written into `docs/benchmarks.md`):

* A *step* is one jitted training-step update `(params, state, grads) -> (params, state)`:
  `tx.update` followed by `apply_updates`, with params and optimizer state donated. Gradients are
  an input (not donated), as they would arrive from the backward pass.
* For every case the gradtx and optax steps are compiled, then timed in *blocks* (each block
  runs the step many times and ends with `block_until_ready`), the libraries alternating block
  by block in the same process. The reported ratio is the median over blocks of
  `time(gradtx block) / time(optax block)` for adjacent blocks, which cancels most of the drift of
  a shared, noisy machine. Times are medians over blocks. Nothing here passes or fails on time.
* The memory-streaming bound is measured in the same run: an in-place (donated) `x * a + b` over a
  float32 array of about 80 MB, whose bytes moved are read + write. A case's bound is
  `bytes_per_param * n_params / bandwidth`, with the minimal byte model of its optimizer (e.g.
  Adam: read p, g, m, v and write p, m, v: 28 bytes per float32 param).
* Compile time is `lower` + `compile` of the step; memory figures come from
  `compiled.memory_analysis()`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import statistics
import time
import zlib
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "Case",
    "Optimizer",
    "StreamKernel",
    "Tree",
    "compile_step",
    "dispatch_floor",
    "machine_info",
    "make_optimizers",
    "make_trees",
    "measure_case",
    "stream_bandwidth",
]


# --------------------------------------------------------------------------------------------
# Machine
# --------------------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """CPU model, core counts, library versions, backend and the current load average."""
    import flax
    import optax

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    try:
        load = os.getloadavg()
    except OSError:
        load = (float("nan"),) * 3
    return {
        "cpu_model": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": getattr(jax.lib, "__version__", None) or _jaxlib_version(),
        "optax": optax.__version__,
        "flax": flax.__version__,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "load_average_1_5_15": [round(x, 2) for x in load],
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def _jaxlib_version() -> str | None:
    try:
        import jaxlib

        return jaxlib.__version__
    except Exception:  # pragma: no cover
        return None


# --------------------------------------------------------------------------------------------
# Memory-streaming bound
# --------------------------------------------------------------------------------------------


def _run_blocks(fns: list[Callable[[], float]], blocks: int) -> list[list[float]]:
    """Call each timing function once per block, alternating the starting one."""
    out: list[list[float]] = [[] for _ in fns]
    for b in range(blocks):
        order = range(len(fns)) if b % 2 == 0 else reversed(range(len(fns)))
        for i in order:
            out[i].append(fns[i]())
    return out


class StreamKernel:
    """The reference kernel: an in-place, donated `x * a + b` over a float32 array.

    `block()` times one block of calls (seconds per call); bytes moved per call are read + write.
    """

    def __init__(self, n_bytes: float = 80e6, min_block_s: float = 0.05):
        n = int(n_bytes // 4)
        kernel = jax.jit(lambda x: x * jnp.float32(1.0000001) + jnp.float32(1e-7), donate_argnums=0)
        self.fn = kernel.lower(jax.ShapeDtypeStruct((n,), jnp.float32)).compile()
        self.array_bytes = n * 4
        self.x = self.fn(jnp.zeros((n,), jnp.float32))
        jax.block_until_ready(self.x)
        self.steps = 1
        one = min(self.run(1) for _ in range(2))
        self.steps = max(1, math.ceil(min_block_s / max(one, 1e-6)))

    def run(self, steps: int) -> float:
        t0 = time.perf_counter()
        for _ in range(steps):
            self.x = self.fn(self.x)
        jax.block_until_ready(self.x)
        return (time.perf_counter() - t0) / steps

    def block(self) -> float:
        return self.run(self.steps)

    def gbps(self, seconds_per_call: float) -> float:
        return 2 * self.array_bytes / seconds_per_call / 1e9


def stream_bandwidth(
    n_bytes: float = 80e6, blocks: int = 9, min_block_s: float = 0.05, kernel: StreamKernel | None = None
) -> dict[str, float]:
    """Bandwidth of the reference kernel ([`StreamKernel`]): median over `blocks` blocks.

    Returns a dict with `GBps` (`2 * array_bytes / median time per call`), the array size and
    the median time per call.
    """
    kernel = kernel or StreamKernel(n_bytes, min_block_s)
    (times,) = _run_blocks([kernel.block], blocks)
    per_call = statistics.median(times)
    return {"GBps": kernel.gbps(per_call), "array_bytes": kernel.array_bytes, "seconds_per_call": per_call}


# --------------------------------------------------------------------------------------------
# Optimizers and trees
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Optimizer:
    name: str
    label: str
    gradtx: Callable[[], Any]
    optax: Callable[[], Any]
    bytes_per_param: int  # minimal bytes moved per float32 param per step
    byte_model: str


def make_optimizers() -> dict[str, Optimizer]:
    """The benchmarked optimizers, each as (gradtx factory, optax factory, byte model)."""
    import optax

    import gradtx

    lr = 1e-3
    return {
        o.name: o
        for o in [
            Optimizer(
                "sgd_nesterov",
                "sgd(momentum=0.9, nesterov)",
                lambda: gradtx.sgd(lr, momentum=0.9, nesterov=True),
                lambda: optax.sgd(lr, momentum=0.9, nesterov=True),
                20,
                "read p, g, m; write p, m",
            ),
            Optimizer(
                "adam",
                "adam",
                lambda: gradtx.adam(lr),
                lambda: optax.adam(lr),
                28,
                "read p, g, m, v; write p, m, v",
            ),
            Optimizer(
                "adam_bf16_mu",
                "adam(mu_dtype=bfloat16)",
                lambda: gradtx.adam(lr, mu_dtype=jnp.bfloat16),
                lambda: optax.adam(lr, mu_dtype=jnp.bfloat16),
                24,
                "read p, g, m (2 bytes), v; write p, m (2 bytes), v",
            ),
            Optimizer(
                "adamw",
                "adamw(weight_decay=1e-4)",
                lambda: gradtx.adamw(lr, weight_decay=1e-4),
                lambda: optax.adamw(lr, weight_decay=1e-4),
                28,
                "read p, g, m, v; write p, m, v",
            ),
            Optimizer(
                "rmsprop_centered",
                "rmsprop(centered=True)",
                lambda: gradtx.rmsprop(lr, centered=True),
                lambda: optax.rmsprop(lr, centered=True),
                28,
                "read p, g, mu, nu; write p, mu, nu",
            ),
            Optimizer(
                "clip_adamw",
                "chain(clip_by_global_norm(1), adamw)",
                lambda: gradtx.chain(gradtx.clip_by_global_norm(1.0), gradtx.adamw(lr, weight_decay=1e-4)),
                lambda: optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(lr, weight_decay=1e-4)),
                32,
                "norm pass: read g; then read p, g, m, v; write p, m, v",
            ),
        ]
    }


@dataclasses.dataclass(frozen=True)
class Tree:
    name: str
    label: str
    shapes: Any  # pytree of jax.ShapeDtypeStruct

    @property
    def n_leaves(self) -> int:
        return len(jax.tree.leaves(self.shapes))

    @property
    def n_params(self) -> int:
        return int(sum(math.prod(s.shape) for s in jax.tree.leaves(self.shapes)))


def flax_transformer_shapes(layers: int, d_model: int, heads: int, mlp: int, vocab: int) -> Any:
    """Parameter shapes of a small pre-LayerNorm transformer encoder (flax.linen).

    Built with `jax.eval_shape` on `init`: no data and no parameter memory needed.
    """
    import flax.linen as nn

    class Block(nn.Module):
        @nn.compact
        def __call__(self, x):
            h = nn.LayerNorm()(x)
            x = x + nn.MultiHeadDotProductAttention(num_heads=heads, qkv_features=d_model)(h, h)
            h = nn.LayerNorm()(x)
            h = nn.Dense(mlp)(h)
            h = nn.gelu(h)
            return x + nn.Dense(d_model)(h)

    class Encoder(nn.Module):
        @nn.compact
        def __call__(self, tokens):
            x = nn.Embed(vocab, d_model)(tokens)
            x = x + self.param("pos", nn.initializers.normal(0.02), (64, d_model))[None, : tokens.shape[1]]
            for _ in range(layers):
                x = Block()(x)
            x = nn.LayerNorm()(x)
            return nn.Dense(vocab)(x)

    tokens = jax.ShapeDtypeStruct((2, 16), jnp.int32)
    return jax.eval_shape(Encoder().init, jax.random.PRNGKey(0), tokens)["params"]


def make_trees(quick: bool) -> dict[str, Tree]:
    """The benchmarked parameter trees (shapes only)."""
    f32 = jnp.float32
    trees: list[Tree] = []
    for n in ([10_000] if quick else [10_000, 100_000, 1_000_000, 10_000_000]):
        trees.append(Tree(f"leaf_{n:.0e}".replace("+0", ""), f"1 leaf of {n:,}", {"w": jax.ShapeDtypeStruct((n,), f32)}))
    count, size = (16, 500) if quick else (1_000, 1_000)
    trees.append(
        Tree(
            f"leaves_{count}x{size}",
            f"{count:,} leaves of {size:,}",
            {f"l{i:04d}": jax.ShapeDtypeStruct((size,), f32) for i in range(count)},
        )
    )
    if quick:
        shapes = flax_transformer_shapes(layers=1, d_model=32, heads=2, mlp=64, vocab=100)
        label = "flax transformer (1 layer, d=32)"
    else:
        shapes = flax_transformer_shapes(layers=12, d_model=128, heads=4, mlp=512, vocab=1000)
        label = "flax transformer (12 layers, d=128)"
    trees.append(Tree("flax_transformer", label, shapes))
    return {t.name: t for t in trees}


def materialize(shapes: Any, seed: int, scale: float) -> Any:
    """Random normal arrays (times `scale`) with the given shapes, deterministic in `seed`."""
    leaves, treedef = jax.tree.flatten(shapes)
    rng = np.random.default_rng(seed)
    arrays = [jnp.asarray((scale * rng.standard_normal(s.shape)).astype(s.dtype)) for s in leaves]
    return jax.tree.unflatten(treedef, arrays)


# --------------------------------------------------------------------------------------------
# Steps
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Compiled:
    fn: Any
    lower_s: float
    compile_s: float
    memory: dict[str, int | None]


def _memory(compiled: Any) -> dict[str, int | None]:
    try:
        stats = compiled.memory_analysis()
    except Exception:  # pragma: no cover - backend without memory analysis
        stats = None
    if stats is None:
        return {"temp_bytes": None, "peak_bytes": None}
    arg = int(getattr(stats, "argument_size_in_bytes", 0))
    out = int(getattr(stats, "output_size_in_bytes", 0))
    alias = int(getattr(stats, "alias_size_in_bytes", 0))
    temp = int(getattr(stats, "temp_size_in_bytes", 0))
    return {"temp_bytes": temp, "peak_bytes": arg + out - alias + temp}


def compile_step(tx: Any, apply_updates: Callable[[Any, Any], Any], params: Any, grads: Any) -> Compiled:
    """`jit(step, donate params and state)` lowered and compiled for these params and grads."""

    def step(p, s, g):
        updates, s = tx.update(g, s, p)
        return apply_updates(p, updates), s

    state_shapes = jax.eval_shape(tx.init, params)
    jitted = jax.jit(step, donate_argnums=(0, 1))
    t0 = time.perf_counter()
    lowered = jitted.lower(params, state_shapes, grads)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    return Compiled(compiled, t1 - t0, t2 - t1, _memory(compiled))


class _Runner:
    """Holds the live (donated) params and state of one step and times blocks of calls."""

    def __init__(self, fn: Any, params: Any, state: Any, grads: Any):
        self.fn = fn  # compiled (params, state, grads) -> (params, state), params and state donated
        self.params = jax.tree.map(jnp.copy, params)
        self.state = state
        self.grads = grads
        self.steps = 1

    @classmethod
    def for_tx(cls, compiled: Compiled, tx: Any, params: Any, grads: Any) -> _Runner:
        runner = cls(compiled.fn, params, None, grads)
        runner.state = tx.init(runner.params)
        return runner

    def run(self, steps: int) -> float:
        t0 = time.perf_counter()
        p, s = self.params, self.state
        for _ in range(steps):
            p, s = self.fn(p, s, self.grads)
        jax.block_until_ready((p, s))
        self.params, self.state = p, s
        return (time.perf_counter() - t0) / steps

    def block(self) -> float:
        return self.run(self.steps)


def _calibrate(runners: list[_Runner], min_block_s: float) -> None:
    for r in runners:
        r.run(1)  # warm-up: first call allocates
    one = max(min(r.run(1) for r in runners) for _ in range(2))
    steps = max(1, math.ceil(min_block_s / max(one, 1e-6)))
    for r in runners:
        r.steps = steps


@dataclasses.dataclass
class Case:
    optimizer: str
    tree: str


def measure_case(
    opt: Optimizer,
    tree: Tree,
    variants: dict[str, Callable[[Any], Any]],
    *,
    stream: StreamKernel,
    blocks: int,
    min_block_s: float,
    baseline: str | None = None,
    floor: str | None = None,
) -> dict[str, Any]:
    """Compile and time optax and every gradtx variant on one (optimizer, tree) case.

    `variants` maps a name to a function building, from the `Optimizer`, the gradtx
    transformation to time (e.g. `lambda opt: opt.gradtx()` for what users get). The reference
    `stream` kernel is timed in the same rotation of blocks, so each case's bound uses the
    bandwidth measured while it ran. Every variant gets `ratio_vs_optax` (median over blocks of
    its block time over the adjacent optax block time); with `baseline` (a variant's name), every
    other variant also gets `ratio_vs_baseline`, paired the same way against that variant's
    blocks, and `compile_ratio_vs_baseline`; with `floor` (the name of the reference variant), every
    other variant gets `ratio_vs_floor`, paired the same way against the floor's blocks. Returns a
    JSON-ready dict.
    """
    import optax

    import gradtx

    params = materialize(tree.shapes, seed=0, scale=0.1)
    grads = materialize(tree.shapes, seed=1, scale=0.01)
    txs: dict[str, Any] = {"optax": opt.optax()}
    for name, build in variants.items():
        txs[name] = build(opt)
    applies = {name: (optax.apply_updates if name == "optax" else gradtx.apply_updates) for name in txs}

    compiled: dict[str, Compiled] = {}
    names = list(txs)
    # alternate compile order between cases so that warm caches favour no library
    order = names if zlib.crc32(f"{opt.name}/{tree.name}".encode()) % 2 == 0 else list(reversed(names))
    for name in order:
        compiled[name] = compile_step(txs[name], applies[name], params, grads)

    runners = {name: _Runner.for_tx(compiled[name], txs[name], params, grads) for name in names}
    _calibrate(list(runners.values()), min_block_s)
    fns = [runners[name].block for name in names] + [stream.block]
    *per_lib, stream_times = _run_blocks(fns, blocks)
    times = dict(zip(names, per_lib, strict=True))
    bandwidth_GBps = stream.gbps(statistics.median(stream_times))

    bound_s = opt.bytes_per_param * tree.n_params / (bandwidth_GBps * 1e9)
    result: dict[str, Any] = {
        "optimizer": opt.name,
        "optimizer_label": opt.label,
        "tree": tree.name,
        "tree_label": tree.label,
        "n_params": tree.n_params,
        "n_leaves": tree.n_leaves,
        "bytes_per_param": opt.bytes_per_param,
        "byte_model": opt.byte_model,
        "bound_ms": bound_s * 1e3,
        "stream_GBps": bandwidth_GBps,
        "steps_per_block": runners[names[0]].steps,
        "blocks": blocks,
    }
    base = np.asarray(times["optax"])
    for name in names:
        t = np.asarray(times[name])
        med = float(np.median(t))
        entry: dict[str, Any] = {
            "median_ms": med * 1e3,
            "min_ms": float(np.min(t)) * 1e3,
            "fraction_of_bound": bound_s / med,
            "lower_s": compiled[name].lower_s,
            "compile_s": compiled[name].compile_s,
            "state_arrays": len(jax.tree.leaves(jax.eval_shape(txs[name].init, params))),
            **compiled[name].memory,
        }
        if name != "optax":
            entry["ratio_vs_optax"] = float(np.median(t / base))
            entry["compile_ratio_vs_optax"] = _compile_s(compiled[name]) / _compile_s(compiled["optax"])
        if baseline is not None and name not in ("optax", baseline):
            entry["ratio_vs_baseline"] = float(np.median(t / np.asarray(times[baseline])))
            entry["compile_ratio_vs_baseline"] = _compile_s(compiled[name]) / _compile_s(compiled[baseline])
        if floor is not None and name not in ("optax", floor):
            entry["ratio_vs_floor"] = float(np.median(t / np.asarray(times[floor])))
        result[name] = entry
    if baseline is not None:
        result["baseline"] = baseline
    return result


def _compile_s(c: Compiled) -> float:
    return c.lower_s + c.compile_s


def dispatch_floor(tree: Tree, state_arrays: dict[str, int], blocks: int, min_block_s: float) -> dict[str, float]:
    """Time of a step on `tree` that does no work but has the signature of each library's step.

    For every `name, count` in `state_arrays`, a step taking `(params, state, grads)` with `count`
    small state arrays that returns params and state unchanged (donated): JAX's cost of moving
    that many arrays in and out of a compiled function. Returns ms per call. (The cheapest step
    that does update the params is timed with every case, as the `floor` variant of `run.py`.)
    """
    params = materialize(tree.shapes, seed=0, scale=0.1)
    grads = materialize(tree.shapes, seed=1, scale=0.01)

    runners = []
    for count in state_arrays.values():
        state = [jnp.zeros((1,), jnp.float32) for _ in range(count)]
        fn = jax.jit(lambda p, s, g: (p, s), donate_argnums=(0, 1)).lower(params, state, grads).compile()
        runners.append(_Runner(fn, params, state, grads))
    _calibrate(runners, min_block_s)
    times = _run_blocks([r.block for r in runners], blocks)
    return {name: float(np.median(t)) * 1e3 for name, t in zip(state_arrays, times, strict=True)}

