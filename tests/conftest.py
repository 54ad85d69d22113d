"""Shared test set-up.

Eight simulated CPU devices let the sharding tests build a `Mesh` on any machine; the flag must be
set before JAX initialises its backends.
"""

import os

if "--xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    ).strip()

import jax

# Tests compare against float32 references unless they opt in to float64 themselves.
jax.config.update("jax_numpy_rank_promotion", "raise")
