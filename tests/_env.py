"""The environment of a subprocess that should run JAX as a user would.

tests/conftest.py adds `--xla_force_host_platform_device_count=8` to `XLA_FLAGS` so that the
sharding tests have several CPU devices; examples, benchmarks and the single-device fusion default
must see one device, as on a user's machine.
"""

import os

SIMULATED_DEVICES_FLAG = "--xla_force_host_platform_device_count"


def user_env(**extra: str) -> dict[str, str]:
    """`os.environ` without the simulated-devices flag, updated with `extra`."""
    env = dict(os.environ)
    flags = [f for f in env.get("XLA_FLAGS", "").split() if not f.startswith(SIMULATED_DEVICES_FLAG)]
    env["XLA_FLAGS"] = " ".join(flags)
    env.update(extra)
    return env
