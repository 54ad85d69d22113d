"""Run a transformation on one flat vector of all parameters: `flatten`."""

import jax
import jax.numpy as jnp
import numpy as np

from gradtx.base import GradientTransformation, describe
from gradtx.wrappers._common import check_transformation, forwarding_update

__all__ = ["flatten"]


def _ravel(tree) -> jax.Array:
    """Concatenate every leaf of `tree`, raveled, into one 1-D vector (in the promoted dtype)."""
    leaves = jax.tree.leaves(tree)
    if not leaves:
        return jnp.zeros((0,), jnp.result_type(float))
    return jnp.concatenate([jnp.ravel(leaf) for leaf in leaves])


def _unravel(like, flat: jax.Array):
    """Split `flat` back into leaves shaped (and typed) like those of `like`."""
    leaves, treedef = jax.tree.flatten(like)
    sizes = [int(np.size(leaf)) for leaf in leaves]
    bounds = np.cumsum(sizes)[:-1].tolist()
    pieces = jnp.split(flat, bounds) if leaves else []
    out = [
        jnp.reshape(piece, jnp.shape(leaf)).astype(jnp.result_type(leaf))
        for piece, leaf in zip(pieces, leaves, strict=True)
    ]
    return jax.tree.unflatten(treedef, out)


@describe
def flatten(inner: GradientTransformation) -> GradientTransformation:
    """Run `inner` on the concatenation of all leaves as one 1-D vector.

    With `vec(x) = concat(ravel(x_1), …, ravel(x_n))`:

        init(params)      = inner.init(vec(params))
        update(g, s, p)   → (u, s') = inner.update(vec(g), s, vec(p)),  returned as unvec(u)

    `unvec` splits `u` back into the leaves' shapes and dtypes. Element-wise transformations give
    the same numbers as without `flatten`; the inner state holds one vector per statistic instead
    of one tree, which lowers per-leaf overhead for models with many small parameters (at the
    cost of a concatenation per step). Transformations that use norms over the whole tree (e.g.
    clipping by global norm) are unaffected; per-leaf ones (e.g. per-leaf norms) are not the same.

    Args:
        inner: the transformation to run on the flat vector (gradtx or optax).

    Returns:
        A gradient transformation whose state is `inner`'s state for a 1-D vector of
        `Σ_i size(x_i)` entries.

    References:
        Same semantics as `optax.flatten`.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.flatten(gradtx.identity())
        >>> g = {"a": jnp.ones((2, 2)), "b": jnp.zeros(3)}
        >>> u, _ = tx.update(g, tx.init(g))
        >>> u["a"].shape, u["b"].shape
        ((2, 2), (3,))
    """
    check_transformation("flatten", "inner", inner)
    inner_update = forwarding_update(inner)

    def init(params):
        return inner.init(_ravel(params))

    def update(updates, state, params=None, **extra_args):
        flat_params = None if params is None else _ravel(params)
        flat_updates, state = inner_update(_ravel(updates), state, flat_params, **extra_args)
        return _unravel(updates, flat_updates), state

    return GradientTransformation(init, update)
