"""Shared machinery of the bit-for-bit optax comparison (`tests/test_optax_bitwise.py`).

A row `Row(name, ours, theirs, grads)` builds one transformation in gradtx and in optax; `run`
drives both for `STEPS` jitted steps on a 6-leaf tree (two leaves of each shape, nested in a dict
and a list), and `assert_same` compares two
trees bit for bit (paths, structure, dtypes, shapes and every bit). Families keep their rows in
`tests/_rows_<family>.py` (a list `ROWS`), which `test_optax_bitwise.py` gathers.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import gradtx

STEPS = 25
_SHAPES = [(3, 4), (5,), ()]  # few distinct shapes: each one costs compile time


def tree(n: int, seed: int = 0) -> dict:
    """`n` float32 leaves of mixed shapes, nested (dict, list) so that the paths are non-trivial."""
    keys = jax.random.split(jax.random.key(seed), n)
    leaves = [jax.random.normal(k, _SHAPES[i % len(_SHAPES)], jnp.float32) for i, k in enumerate(keys)]
    half = n // 2
    return {"a": {f"w{i}": x for i, x in enumerate(leaves[:half])}, "b": leaves[half:]}


def grads(p, i):
    # the gradient of a double well, tilted more at each step: cheap to compile (no sin/exp)
    return jax.tree.map(lambda x: x * (x * x - 1.0) + 0.02 * i, p)


def nan_grads(p, i):
    # some NaN entries (for zero_nans / apply_if_finite); which ones changes with the step
    return jax.tree.map(lambda x: jnp.where(x * (i - 10.0) > 3.0, jnp.nan, x * (x * x - 1.0) + 0.02 * i), p)


def sparse_grads(p, i):
    # exact zeros in many entries (sign, adamax, adagrad, trust-ratio corner cases)
    return jax.tree.map(lambda x: jnp.where(jnp.abs(x) < 0.5, 0.0, x * (x * x - 1.0) + 0.02 * i), p)


class Row(NamedTuple):
    name: str
    ours: Callable[[], Any]
    theirs: Callable[[], Any]
    grads: Callable = grads


def same(name: str, build: Callable[[Any], Any], grads: Callable = grads) -> Row:
    """A row whose two factories are the same call on `gradtx` and on `optax`."""
    return Row(name, lambda: build(gradtx), lambda: build(optax), grads)


BF16 = jnp.bfloat16


def decay_mask(p):
    return jax.tree.map(lambda x: x.ndim > 1, p)


def labels(p):
    return jax.tree.map(lambda x: "vec" if x.ndim == 1 else "other", p)


# every schedule, as (name, builder taking the library module)

def run(pair, grads):
    """Initial states and the stacked `(params, updates, state)` of every step, for both sides.

    `pair` is `((gradtx, tx_ours), (optax, tx_theirs))`: one jitted step advances both trajectories
    (one compile per row instead of two; the two sides share no input but the step number, so each
    is computed as it would be alone). One 6-leaf tree: each leaf costs compile time (~250 rows),
    and six leaves already exercise every shape (twice), nesting and a multi-leaf reduction order.
    """
    params = tree(6, seed=1)
    inits = tuple(tx.init(params) for _, tx in pair)

    @jax.jit
    def step(carry, i):
        out = []
        for (lib, tx), (params, state) in zip(pair, carry, strict=True):
            updates, state = tx.update(grads(params, i), state, params)
            out.append((lib.apply_updates(params, updates), state, updates))
        return tuple(out)

    carry = tuple((params, state) for state in inits)
    history = []
    for i in range(STEPS):
        result = step(carry, jnp.float32(i))
        carry = tuple((p, s) for p, s, _ in result)
        history.append(result)
    # per side: one host array per leaf, steps stacked along a new first axis
    stacked = jax.tree.map(lambda *xs: np.stack([host(x) for x in xs]), *history)
    return tuple(zip(inits, stacked, strict=True))


def host(x):
    """`x` as a NumPy array (the raw data of a PRNG key)."""
    if isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    return np.asarray(x)


def bits(x):
    """The bit pattern of a floating array (so that -0.0 != 0.0 and NaN == NaN)."""
    return x.view(np.dtype(f"u{x.dtype.itemsize}")) if x.dtype.kind in "fcV" or x.dtype == BF16 else x


def assert_same(ours, ref, what):
    paths_ours = [jax.tree_util.keystr(k) for k, _ in jax.tree_util.tree_flatten_with_path(ours)[0]]
    paths_ref = [jax.tree_util.keystr(k) for k, _ in jax.tree_util.tree_flatten_with_path(ref)[0]]
    assert paths_ours == paths_ref, f"{what}: tree paths differ"
    assert str(jax.tree.structure(ours)) == str(jax.tree.structure(ref)), f"{what}: tree structure differs"
    for path, x, y in zip(paths_ref, jax.tree.leaves(ours), jax.tree.leaves(ref), strict=True):
        x, y = host(x), host(y)
        assert (x.dtype, x.shape) == (y.dtype, y.shape), f"{what}{path}: {x.dtype}{x.shape} vs {y.dtype}{y.shape}"
        differ = bits(x) != bits(y)
        if np.any(differ):
            first = tuple(np.argwhere(differ)[0])
            raise AssertionError(
                f"{what}{path}: {int(differ.sum())} of {differ.size} elements differ in their bits; first at "
                f"{first}: gradtx {x[first]!r}, optax {y[first]!r}"
            )


def row_of(entry: Any) -> Row:
    return entry.values[0] if hasattr(entry, "values") else entry


def family_modules() -> list[Any]:
    """Every `tests/_rows_<family>.py` module, by name (the bitwise table and the contract gather them)."""
    import importlib
    import pkgutil
    from pathlib import Path

    here = Path(__file__).parent
    names = sorted(info.name for info in pkgutil.iter_modules([str(here)]) if info.name.startswith("_rows_"))
    return [importlib.import_module(name) for name in names]
