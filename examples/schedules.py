"""Plot every learning-rate schedule in `gradtx.schedules` over its steps.

    python examples/schedules.py [--quick] [--out DIR] [--steps N]

Writes schedules.png: one panel per schedule, each printed with the call that made it (gradtx
schedules print as `name(arg=value, ...)`). Schedules are plain functions of the step, so all
the curves come from one jitted `jax.vmap` over the step numbers.
"""

from __future__ import annotations

import argparse
import math
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np
from _common import add_common_args, figure_dir, plt, save_figure

import gradtx
from gradtx import schedules


def examples(n: int) -> dict[str, object]:
    """One representative instance of every schedule, over `n` steps."""
    w = n // 10
    cycle = dict(init_value=0.0, peak_value=1.0, warmup_steps=n // 20, decay_steps=n // 3)
    return {
        "constant_schedule": gradtx.constant_schedule(1.0),
        "linear_schedule": gradtx.linear_schedule(1.0, 0.1, transition_steps=n // 2, transition_begin=w),
        "polynomial_schedule": gradtx.polynomial_schedule(1.0, 0.0, power=2.0, transition_steps=n),
        "warmup_constant_schedule": gradtx.warmup_constant_schedule(0.0, 1.0, warmup_steps=w),
        "cosine_decay_schedule": gradtx.cosine_decay_schedule(1.0, decay_steps=n, alpha=0.1),
        "warmup_cosine_decay_schedule": gradtx.warmup_cosine_decay_schedule(
            0.0, 1.0, warmup_steps=w, decay_steps=n, end_value=0.05
        ),
        "sgdr_schedule": gradtx.sgdr_schedule([cycle, cycle, cycle]),
        "exponential_decay": gradtx.exponential_decay(1.0, transition_steps=n // 10, decay_rate=0.7),
        "exponential_decay (staircase)": gradtx.exponential_decay(
            1.0, transition_steps=n // 10, decay_rate=0.7, staircase=True
        ),
        "warmup_exponential_decay_schedule": gradtx.warmup_exponential_decay_schedule(
            0.0, 1.0, warmup_steps=w, transition_steps=n // 10, decay_rate=0.7, end_value=0.05
        ),
        "piecewise_constant_schedule": gradtx.piecewise_constant_schedule(
            1.0, {n // 3: 0.5, 2 * n // 3: 0.2}
        ),
        "piecewise_interpolate_schedule": gradtx.piecewise_interpolate_schedule(
            "cosine", 1.0, {n // 4: 0.3, n // 2: 2.0, 3 * n // 4: 0.5}
        ),
        "cosine_onecycle_schedule": gradtx.cosine_onecycle_schedule(n, peak_value=1.0),
        "linear_onecycle_schedule": gradtx.linear_onecycle_schedule(n, peak_value=1.0),
        "join_schedules": gradtx.join_schedules(
            [gradtx.linear_schedule(0.0, 1.0, w), gradtx.constant_schedule(1.0),
             gradtx.cosine_decay_schedule(1.0, n // 2)],
            boundaries=[w, n // 2],
        ),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(parser)
    parser.add_argument("--steps", type=int, default=None, help="steps plotted (default 1000, 400 with --quick)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    out = figure_dir(args.out)
    n = args.steps or (400 if args.quick else 1000)

    scheds = examples(n)
    missing = sorted(set(schedules.__all__) - {name.split(" ")[0] for name in scheds})
    if missing:
        print(f"warning: no example for {missing}")

    steps = jnp.arange(n + 1)
    cols = 3
    rows = math.ceil(len(scheds) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols, 2.7 * rows), sharex=True)
    # every schedule tabulated by one compiled function (schedules are jnp functions of the step)
    tables = jax.jit(lambda t: [jax.vmap(sched)(t) for sched in scheds.values()])(steps)
    for ax, (name, sched), values in zip(axes.ravel(), scheds.items(), tables):
        values = np.asarray(values)
        ax.plot(np.asarray(steps), values, lw=1.5)
        ax.set_title(name, fontsize=10)
        ax.text(0.98, 0.95, textwrap.fill(repr(sched).split("(", 1)[1].rstrip(")"), 48),
                transform=ax.transAxes, fontsize=5.5, ha="right", va="top", color="0.35")
        ax.set_ylim(bottom=min(0.0, values.min()) - 0.05, top=max(values.max() * 1.25, 0.1))
        print(f"{name:<36} step 0: {values[0]:.4g}  step {n // 2}: {values[n // 2]:.4g}  "
              f"step {n}: {values[-1]:.4g}")
    for ax in axes.ravel()[len(scheds):]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("step")
    fig.tight_layout()
    save_figure(fig, out / "schedules.png")
    print(f"plotted {len(scheds)} curves covering {len(schedules.__all__) - len(missing)} of "
          f"{len(schedules.__all__)} schedules")
    print(f"figures written to {out}/: schedules.png")
    print(f"wall time: {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
