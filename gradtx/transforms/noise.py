r"""Annealed Gaussian gradient noise."""

import numbers
import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradtx import _validation as _v
from gradtx.base import GradientTransformation, describe
from gradtx.numerics import float_updates, safe_increment

__all__ = ["AddNoiseState", "add_noise"]


class AddNoiseState(NamedTuple):
    """State of [`add_noise`][gradtx.add_noise]: step count (int32) and the PRNG key to use next."""

    count: jax.Array  # type: ignore[assignment]  # optax's field name (shadows tuple.count)
    rng_key: jax.Array


def _as_key(owner: str, key: Any) -> jax.Array:
    """A typed PRNG key from a typed key, a raw uint32 key or an integer seed."""
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    if isinstance(key, (jax.Array, np.ndarray)) and key.dtype == np.uint32 and key.ndim == 1:
        return jax.random.wrap_key_data(jnp.asarray(key))
    if isinstance(key, bool) or not isinstance(key, (numbers.Integral, np.integer, jax.Array)):
        raise TypeError(
            f"{owner}: key must be a jax.random.key, a raw uint32 key or an integer seed, got "
            f"{type(key).__name__}: {key!r}"
        )
    return jax.random.key(key)  # type: ignore[arg-type]  # an integer seed (numbers.Integral)


@describe
def add_noise(
    eta: float, gamma: float, key: jax.Array | int | None = None, *, seed: int | None = None
) -> GradientTransformation:
    r"""Add annealed Gaussian noise to the updates.

    At step $t$ (1 on the first call):

    $$u_t = g_t + \sigma_t\, \xi_t,\qquad \xi_t \sim \mathcal N(0, I),\qquad
    \sigma_t^2 = \frac{\eta}{t^{\gamma}},$$

    i.e. variance $\eta / (1 + k)^\gamma$ after $k$ earlier steps. The noise for each leaf
    comes from a fresh split of the key held in the state (the same stream as optax's).

    Args:
        eta: the base variance $\eta$ (required), >= 0.
        gamma: the annealing exponent $\gamma$ (required), >= 0 (the paper uses 0.55).
        key: a `jax.random.key`, a raw uint32 key or an integer seed; default None, which
            (like optax 0.2.8) warns and uses seed 0.
        seed: deprecated alias of `key` (an integer); give at most one of `key` and `seed`.

    Returns:
        A `GradientTransformation` with state `AddNoiseState(count, rng_key)`.

    References:
        Neelakantan et al., *Adding Gradient Noise Improves Learning for Very Deep Networks*,
        2015 (arXiv:1511.06807).
    """
    owner = "add_noise"
    _v.check_real(owner, "eta", eta, low=0.0)
    _v.check_real(owner, "gamma", gamma, low=0.0)
    if seed is not None:
        if key is not None:
            raise ValueError(f"{owner}: give only one of key and seed, got key={key!r} and seed={seed!r}")
        warnings.warn(f"{owner}: seed is deprecated, pass key instead.", DeprecationWarning, stacklevel=3)
        key = seed
    if key is None:
        warnings.warn(f"{owner}: no key given, using seed 0; pass key=... explicitly.", stacklevel=3)
        key = 0
    if not _v.is_traced(key):
        key = _as_key(owner, key)

    def init(params):
        del params
        return AddNoiseState(count=jnp.zeros([], jnp.int32), rng_key=key)  # type: ignore[arg-type]  # a key by now

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        count = safe_increment(state.count)
        std = jnp.sqrt(eta / count**gamma)
        rng_key, sample_key = jax.random.split(state.rng_key)
        updates = float_updates(updates)
        treedef = jax.tree.structure(updates)
        leaves = treedef.flatten_up_to(updates)
        keys = jax.random.split(sample_key, treedef.num_leaves)
        noisy = [
            (g + std * jax.random.normal(k, jnp.shape(g), jnp.result_type(g))).astype(jnp.result_type(g))
            for g, k in zip(leaves, keys, strict=True)
        ]
        return treedef.unflatten(noisy), AddNoiseState(count=count, rng_key=rng_key)

    return GradientTransformation(init, update)
