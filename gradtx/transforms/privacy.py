r"""Differential privacy: per-example clipping and the noisy aggregate of DP-SGD.

These functions take *per-example* gradients: every leaf has a leading batch axis of the same
size $B$ (as `jax.vmap(jax.grad(loss), in_axes=(None, 0))(params, batch)` returns them), and
they return one aggregated tree shaped like the params.
"""

import math
import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradtx import _validation as _v
from gradtx.base import GradientTransformation, describe
from gradtx.numerics import float_updates
from gradtx.transforms.clipping import _global_norm
from gradtx.transforms.noise import _as_key

__all__ = [
    "DifferentiallyPrivateAggregateState",
    "differentially_private_aggregate",
    "per_example_global_norm_clip",
    "per_example_layer_norm_clip",
]


class DifferentiallyPrivateAggregateState(NamedTuple):
    """State of [`differentially_private_aggregate`][gradtx.differentially_private_aggregate]:
    the PRNG key of the next step's noise."""

    rng_key: jax.Array


def _check_clip(owner: str, name: str, value: Any, *, allow_inf: bool) -> None:
    """A clipping norm: a real number >= 0 (`+inf`, no clipping, where `allow_inf`)."""
    if allow_inf and not _v.is_traced(value) and np.ndim(value) == 0:
        try:
            if float(value) == math.inf:
                return
        except TypeError:
            pass
    _v.check_real(owner, name, value, low=0.0)


def _batch_size(owner: str, tree: Any) -> int:
    """The common leading axis of the leaves of `tree`; a ValueError naming every leaf's path and
    shape when there is none."""
    paths = jax.tree_util.tree_flatten_with_path(tree)[0]
    shapes = [jnp.shape(g) for _, g in paths]
    if any(len(s) == 0 for s in shapes) or len({s[0] for s in shapes}) != 1:
        listed = ", ".join(f"{jax.tree_util.keystr(k)}: {s}" for (k, _), s in zip(paths, shapes, strict=True))
        raise ValueError(
            f"{owner}: every leaf must hold per-example gradients, with the same batch size on its "
            f"leading axis; got leaf shapes {listed}. Compute them with jax.vmap over the batch."
        )
    return shapes[0][0]


def _clip_leaves(leaves: list[jax.Array], l2_norm_clip: Any) -> tuple[list[jax.Array], jax.Array]:
    """Clip every example of `leaves` (a list) to a global norm and sum over the batch axis."""
    norms = jax.vmap(_global_norm)(leaves)
    ratio = jnp.minimum(l2_norm_clip / norms, 1.0)
    # 0/0 (nothing to clip) and a NaN norm give a NaN ratio: keep that example unscaled
    multipliers = jnp.where(jnp.isnan(ratio), 1.0, ratio)
    num_clipped = jnp.sum(multipliers < 1.0)
    summed = [jnp.tensordot(multipliers, g, axes=1).astype(jnp.result_type(g)) for g in leaves]
    return summed, num_clipped


def per_example_global_norm_clip(grads: Any, l2_norm_clip: float | jax.Array) -> tuple[Any, jax.Array]:
    r"""Clip each example's gradient to a global L2 norm, then sum over the batch.

    With $g^{(b)}$ the gradient tree of example $b$ (slice $b$ of every leaf's leading axis) and
    $\|g^{(b)}\|_2$ its norm over all leaves:

    $$u = \sum_{b=1}^{B} g^{(b)} \min\!\Big(1,\ \frac{C}{\|g^{(b)}\|_2}\Big),$$

    an example with a zero norm counting with factor 1 (so $C = 0$ gives zeros, not NaN).

    Args:
        grads: a tree of per-example gradients: every leaf has the same batch size $B$ on its
            leading axis.
        l2_norm_clip: the bound $C$ on each example's norm: >= 0, or `jnp.inf` (no clipping).

    Returns:
        `(summed, num_clipped)`: the sum of the clipped per-example gradients (a tree like
        `grads` without the batch axis, each leaf in its input dtype) and the number of examples
        that were scaled down (an int32 scalar).

    Raises:
        ValueError: a leaf has no leading axis, or the leaves' batch sizes differ.

    References:
        Abadi, Chu, Goodfellow, McMahan, Mironov, Talwar & Zhang, *Deep Learning with
        Differential Privacy*, CCS 2016 (arXiv:1607.00133).

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> grads = [jnp.array([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]])]
        >>> gradtx.per_example_global_norm_clip(grads, 5.0)
        ([Array([6., 8.], dtype=float32)], Array(1, dtype=int32))
    """
    owner = "per_example_global_norm_clip"
    _check_clip(owner, "l2_norm_clip", l2_norm_clip, allow_inf=True)
    grads = float_updates(grads)
    leaves, treedef = jax.tree.flatten(grads)
    if not leaves:
        return grads, jnp.zeros((), jnp.int32)
    _batch_size(owner, grads)
    summed, num_clipped = _clip_leaves(leaves, l2_norm_clip)
    return treedef.unflatten(summed), num_clipped


def per_example_layer_norm_clip(
    grads: Any, global_l2_norm_clip: float | jax.Array, uniform: bool = True
) -> tuple[Any, Any]:
    r"""Clip each example's gradient leaf by leaf (layer by layer), then sum over the batch.

    Every leaf $i$ of the $K$ leaves gets its own bound $C_i$, so that
    $\sum_i C_i^2 = C^2$, and is clipped on its own, as in
    [`per_example_global_norm_clip`][gradtx.per_example_global_norm_clip]:

    * `uniform=True`: $C_i = C / \sqrt{K}$;
    * `uniform=False`: $C_i = C \sqrt{D_i / D}$, with $D_i$ the number of parameters of leaf
      $i$ (per example) and $D$ the total.

    With a single leaf it is `per_example_global_norm_clip`.

    Args:
        grads: a tree of per-example gradients (the same batch size on every leaf's leading axis).
        global_l2_norm_clip: the overall bound $C$: >= 0, or `jnp.inf` (no clipping).
        uniform: how the bound is shared between the leaves (above); default True.

    Returns:
        `(summed, num_clipped)`: two trees like `grads`, the sum of each leaf's clipped
        per-example gradients and the number of examples clipped in that leaf (int32 scalars).

    Raises:
        ValueError: a leaf has no leading axis, or the leaves' batch sizes differ.

    References:
        McMahan, Ramage, Talwar & Zhang, *Learning Differentially Private Recurrent Language
        Models*, ICLR 2018 (arXiv:1710.06963).
    """
    owner = "per_example_layer_norm_clip"
    _check_clip(owner, "global_l2_norm_clip", global_l2_norm_clip, allow_inf=True)
    _v.check_bool(owner, "uniform", uniform)
    grads = float_updates(grads)
    leaves, treedef = jax.tree.flatten(grads)
    if not leaves:
        return grads, grads
    _batch_size(owner, grads)
    if uniform:
        share = (1.0 / len(leaves)) ** 0.5
        bounds = [global_l2_norm_clip * share for _ in leaves]
    else:
        sizes = [math.prod(jnp.shape(g)[1:]) for g in leaves]
        total = sum(sizes)
        bounds = [global_l2_norm_clip * (size / total) ** 0.5 for size in sizes]
    pairs = [_clip_leaves([g], bound) for g, bound in zip(leaves, bounds, strict=True)]
    summed = treedef.unflatten([s[0] for s, _ in pairs])
    counts = treedef.unflatten([n for _, n in pairs])
    return summed, counts


def _initial_key(owner: str, key: Any, seed: Any) -> Any:
    """The key from `key` / the deprecated `seed`, with optax's warnings (seed 0 when neither)."""
    if seed is not None:
        if key is not None:
            raise ValueError(f"{owner}: give only one of key and seed, got key={key!r} and seed={seed!r}")
        warnings.warn(f"{owner}: seed is deprecated, pass key instead.", DeprecationWarning, stacklevel=4)
        key = seed
    if key is None:
        warnings.warn(f"{owner}: no key given, using seed 0; pass key=... explicitly.", stacklevel=4)
        key = 0
    if not _v.is_traced(key):
        return _as_key(owner, key)
    if jnp.issubdtype(jnp.result_type(key), jnp.integer):  # a seed injected as a hyper-parameter
        return jax.random.key(key)
    return key


@describe
def differentially_private_aggregate(
    l2_norm_clip: float,
    noise_multiplier: float,
    key: jax.Array | int | None = None,
    *,
    seed: int | None = None,
) -> GradientTransformation:
    r"""The aggregation step of DP-SGD: clip each example, sum, add Gaussian noise, average.

    The incoming updates are per-example gradients (batch size $B$ on every leaf's leading
    axis); the outgoing updates have the params' shapes:

    $$u = \frac{1}{B}\Big(\sum_{b=1}^{B} g^{(b)} \min\!\Big(1, \frac{C}{\|g^{(b)}\|_2}\Big)
    + \sigma C\, \xi\Big),\qquad \xi \sim \mathcal N(0, I),$$

    with one fresh normal draw per leaf (the key in the state is split into a new key and one
    key per leaf at every step, the same random stream as optax's). Put it first in a
    [`chain`][gradtx.chain]; the members after it see ordinary (aggregated) updates. Generic
    accumulation wrappers such as [`MultiSteps`][gradtx.MultiSteps] do not keep its privacy
    guarantee.

    Args:
        l2_norm_clip: the bound $C$ on each example's gradient norm (required), > 0.
        noise_multiplier: the ratio $\sigma$ of the noise's standard deviation to $C$
            (required), >= 0 (0: no noise, no privacy).
        key: a `jax.random.key`, a raw uint32 key or an integer seed; default None, which
            (like optax 0.2.8) warns and uses seed 0.
        seed: deprecated alias of `key` (an integer); give at most one of `key` and `seed`.

    Returns:
        A `GradientTransformation` with state `DifferentiallyPrivateAggregateState(rng_key)`.

    References:
        Abadi, Chu, Goodfellow, McMahan, Mironov, Talwar & Zhang, *Deep Learning with
        Differential Privacy*, CCS 2016 (arXiv:1607.00133).

    Example:
        >>> import gradtx, jax, jax.numpy as jnp
        >>> params = {"w": jnp.zeros(3)}
        >>> per_example = {"w": jnp.ones((8, 3))}  # 8 examples
        >>> tx = gradtx.chain(gradtx.differentially_private_aggregate(1.0, 0.0, key=0), gradtx.sgd(0.1))
        >>> updates, state = tx.update(per_example, tx.init(params), params)
        >>> updates["w"].shape
        (3,)
    """
    owner = "differentially_private_aggregate"
    _v.check_real(owner, "l2_norm_clip", l2_norm_clip, low=0.0, low_inclusive=False)
    _v.check_real(owner, "noise_multiplier", noise_multiplier, low=0.0)
    first_key = _initial_key(owner, key, seed)
    noise_std = l2_norm_clip * noise_multiplier

    def init(params):
        del params
        return DifferentiallyPrivateAggregateState(rng_key=first_key)

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        updates = float_updates(updates)
        leaves, treedef = jax.tree.flatten(updates)
        if not leaves:
            return updates, state
        batch = _batch_size(owner, updates)
        summed, _ = _clip_leaves(leaves, l2_norm_clip)
        next_key, *leaf_keys = jax.random.split(state.rng_key, len(leaves) + 1)
        noisy = [
            (g + noise_std * jax.random.normal(k, g.shape, g.dtype)) / batch
            for g, k in zip(summed, leaf_keys, strict=True)
        ]
        return treedef.unflatten(noisy), DifferentiallyPrivateAggregateState(rng_key=next_key)

    return GradientTransformation(init, update)
