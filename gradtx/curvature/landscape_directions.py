r"""Directions for loss landscapes: random Gaussian directions and Li et al.'s filter normalisation.

A direction $d$ through params $\theta$ is only meaningful relative to the scale of the weights
it perturbs: networks with the same function but rescaled layers would otherwise give different
pictures. [`normalize_direction`][gradtx.curvature.normalize_direction] rescales each *filter*
(or each layer) of $d$ to the norm of the matching weights and zeroes the biases and
normalisation parameters; [`random_directions`][gradtx.curvature.random_directions] draws
Gaussian directions normalised that way. [`landscape`][gradtx.curvature.landscape] uses them.

References:
    Li, Xu, Taylor, Studer & Goldstein, *Visualizing the loss landscape of neural nets*,
    NeurIPS 2018.
"""

import functools
import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradtx._validation import check_int

__all__ = ["NORMALIZATIONS", "normalize_direction", "random_directions"]

NORMALIZATIONS = ("filter", "layer", "none")
"""Accepted values of `normalization`."""


def _as_key(owner: str, key: Any) -> jax.Array:
    if key is None:
        return jax.random.key(0)
    if isinstance(key, (numbers.Integral, np.integer)) and not isinstance(key, bool):
        return jax.random.key(int(key))
    if isinstance(key, jax.Array) and (jnp.issubdtype(key.dtype, jax.dtypes.prng_key) or key.dtype == jnp.uint32):
        return key
    raise TypeError(f"{owner}: key must be None, an int seed or a jax.random key, got {type(key).__name__}: {key!r}")


def _check_normalization(owner: str, normalization: Any) -> None:
    if not isinstance(normalization, str) or normalization not in NORMALIZATIONS:
        raise ValueError(f"{owner}: normalization must be one of {NORMALIZATIONS}, got {normalization!r}")


def _is_filtered(leaf: Any) -> bool:
    return jnp.ndim(leaf) >= 2


def normalize_direction(direction: Any, params: Any, normalization: str = "filter", filter_axis: int = -1) -> Any:
    r"""Rescale a direction to the scale of `params` (Li et al.'s filter normalisation).

    For each leaf $w$ of `params` and the matching leaf $d$ of `direction`:

    * `"filter"`: a leaf with at least two axes is cut into *filters* along `filter_axis`
      (default the last axis: the output unit of a Flax `Dense` kernel `(in, out)`, the output
      channel of a Flax `Conv` kernel `(h, w, in, out)`; use `filter_axis=0` for PyTorch's
      `(out, in, ...)` layout), and each filter $d_j$ (all entries with index $j$ on that axis)
      is rescaled to the norm of the matching weights,

        $$d_j \leftarrow \frac{d_j}{\|d_j\|}\,\|w_j\|;$$

    * `"layer"`: the whole leaf is rescaled, $d \leftarrow d\,\|w\| / \|d\|$, for leaves with
      at least two axes;
    * with `"filter"` and `"layer"`, leaves with fewer than two axes (biases, normalisation
      scales and offsets, scalars) are set to **zero**: they are not perturbed, as Li et al.
      recommend;
    * `"none"`: the direction is returned unchanged.

    A zero filter of `direction` stays zero (no division by zero).

    Args:
        direction: a pytree like `params` (same structure and leaf shapes).
        params: the point the direction is attached to.
        normalization: `"filter"`, `"layer"` or `"none"`. Default `"filter"`.
        filter_axis: the axis that indexes the filters of leaves with at least two axes
            (negative values count from the end). Default -1.

    Returns:
        A pytree like `params`, leaves in the params' dtypes.

    References:
        Li, Xu, Taylor, Studer & Goldstein, *Visualizing the loss landscape of neural nets*,
        NeurIPS 2018, §4.
    """
    owner = "normalize_direction"
    _check_normalization(owner, normalization)
    check_int(owner, "filter_axis", filter_axis)
    _check_like(owner, "direction", direction, params)
    return _normalize(direction, params, normalization, filter_axis)


@functools.partial(jax.jit, static_argnames=("normalization", "filter_axis"))
def _normalize(direction: Any, params: Any, normalization: str, filter_axis: int) -> Any:
    def one(d: Any, w: Any) -> Any:
        dt = jnp.result_type(w)
        if normalization == "none":
            return jnp.asarray(d).astype(dt)
        if not _is_filtered(w):
            return jnp.zeros(jnp.shape(w), dt)
        d32 = jnp.asarray(d, jnp.promote_types(dt, jnp.float32))
        w32 = jnp.asarray(w, d32.dtype)
        if normalization == "layer":
            axes: tuple[int, ...] | None = None
        else:
            ax = filter_axis % w32.ndim
            axes = tuple(i for i in range(w32.ndim) if i != ax)
        dn = jnp.sqrt(jnp.sum(d32 * d32, axis=axes, keepdims=True))
        wn = jnp.sqrt(jnp.sum(w32 * w32, axis=axes, keepdims=True))
        scale = jnp.where(dn > 0, wn / jnp.where(dn > 0, dn, 1), 0)
        return (d32 * scale).astype(dt)

    return jax.tree.map(one, direction, params)


def random_directions(
    params: Any, num_directions: int = 2, normalization: str = "filter", key: Any = None, filter_axis: int = -1
) -> tuple[Any, ...]:
    """`num_directions` random Gaussian directions, normalised by [`normalize_direction`][gradtx.curvature.normalize_direction].

    Each entry is drawn from a standard normal. With `normalization="none"` each direction is
    scaled to unit Euclidean norm over all the leaves (so `span` is a distance in parameter
    space); otherwise it is filter- or layer-normalised (1-D leaves zeroed).

    Args:
        params: the point, a pytree of float arrays.
        num_directions: 1 or 2. Default 2.
        normalization: `"filter"`, `"layer"` or `"none"`. Default `"filter"`.
        key: None (seed 0), an int seed or a `jax.random` key. Default None.
        filter_axis: see `normalize_direction`. Default -1.

    Returns:
        A tuple of `num_directions` pytrees like `params`.

    Raises:
        ValueError: when the normalised direction is zero everywhere (every leaf has fewer than
            two axes and `normalization` is not `"none"`).
    """
    owner = "random_directions"
    _check_normalization(owner, normalization)
    check_int(owner, "num_directions", num_directions, low=1)
    if num_directions > 2:
        raise ValueError(f"{owner}: num_directions must be 1 or 2, got {num_directions}")
    leaves = jax.tree.leaves(params)
    if not leaves:
        raise ValueError(f"{owner}: params has no leaves")
    if normalization != "none" and not any(_is_filtered(w) for w in leaves):
        raise ValueError(
            f"{owner}: normalization={normalization!r} zeroes every leaf (all params have fewer "
            "than two axes, so none holds filters); use normalization='none'"
        )
    check_int(owner, "filter_axis", filter_axis)
    return _draw(_as_key(owner, key), params, num_directions, normalization, filter_axis)


@functools.partial(jax.jit, static_argnames=("num_directions", "normalization", "filter_axis"))
def _draw(key: jax.Array, params: Any, num_directions: int, normalization: str, filter_axis: int) -> tuple[Any, ...]:
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, num_directions * len(leaves))
    out = []
    for k in range(num_directions):
        draws = [
            jax.random.normal(keys[k * len(leaves) + i], jnp.shape(w), jnp.promote_types(jnp.result_type(w), jnp.float32))
            for i, w in enumerate(leaves)
        ]
        d = jax.tree.unflatten(treedef, draws)
        if normalization == "none":
            norm = jnp.sqrt(sum(jnp.sum(x * x) for x in draws))
            d = jax.tree.map(lambda x, w, norm=norm: (x / norm).astype(jnp.result_type(w)), d, params)
        else:
            d = _normalize(d, params, normalization, filter_axis)
        out.append(d)
    return tuple(out)


def _check_like(owner: str, name: str, tree: Any, params: Any) -> None:
    if jax.tree.structure(tree) != jax.tree.structure(params):
        raise ValueError(f"{owner}: {name} must have the structure of params, got {jax.tree.structure(tree)} "
                         f"for params {jax.tree.structure(params)}")
    for a, b in zip(jax.tree.leaves(tree), jax.tree.leaves(params)):
        if jnp.shape(a) != jnp.shape(b):
            raise ValueError(f"{owner}: {name} leaf of shape {jnp.shape(a)} does not match the params leaf {jnp.shape(b)}")
