r"""Adadelta's rescaling (`scale_by_adadelta`): step sizes from the ratio of two moving RMS.

Numbers and state layout are optax 0.2.8's, bit for bit for float32 inputs under `jax.jit`.
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx import _validation as _v
from gradtx.base import GradientTransformation, Updates, describe
from gradtx.numerics import float_updates, full_like_param, tree_as_arrays
from gradtx.transforms.blockwise import reject_complex

__all__ = ["ScaleByAdaDeltaState", "adadelta_leaf", "scale_by_adadelta"]


class ScaleByAdaDeltaState(NamedTuple):
    """State of [`scale_by_adadelta`][gradtx.scale_by_adadelta]: the two running averages."""

    e_g: Updates
    """Moving average of the squared gradients, $E[g^2]$."""
    e_x: Updates
    """Moving average of the squared updates, $E[\\Delta x^2]$."""


def adadelta_leaf(
    g: jax.Array, e_g: jax.Array, e_x: jax.Array, *, rho: Any, eps: Any
) -> tuple[jax.Array, jax.Array, jax.Array]:
    r"""One Adadelta step on one leaf; returns `(update, new_e_g, new_e_x)`.

    $E[g^2] \leftarrow \rho E[g^2] + (1-\rho) g^2$,
    $u = g\sqrt{E[\Delta x^2] + \epsilon} / \sqrt{E[g^2] + \epsilon}$ (the previous
    $E[\Delta x^2]$), then $E[\Delta x^2] \leftarrow \rho E[\Delta x^2] + (1-\rho) u^2$.
    """
    new_e_g = (1 - rho) * g**2 + rho * e_g
    update = (jnp.sqrt(e_x + eps) / jnp.sqrt(new_e_g + eps)) * g
    new_e_x = (1 - rho) * update**2 + rho * e_x
    return update, new_e_g, new_e_x


@describe
def scale_by_adadelta(rho: float = 0.9, eps: float = 1e-6) -> GradientTransformation:
    r"""Rescale updates as Adadelta does, with no global learning rate needed.

    $$E[g^2]_t = \rho\, E[g^2]_{t-1} + (1-\rho)\, g_t^2,\qquad
    u_t = \frac{\sqrt{E[\Delta x^2]_{t-1} + \epsilon}}{\sqrt{E[g^2]_t + \epsilon}}\; g_t,$$

    $$E[\Delta x^2]_t = \rho\, E[\Delta x^2]_{t-1} + (1-\rho)\, u_t^2.$$

    The numerator carries the units of the parameters, so the step has the right scale without
    a learning rate; both averages start at 0, so the first steps have size about
    $\sqrt{\epsilon}$.

    Args:
        rho: the decay $\rho$ of both averages, default 0.9; in [0, 1].
        eps: added under both square roots, default 1e-6; a real number >= 0.

    Returns:
        A `GradientTransformation` with state `ScaleByAdaDeltaState(e_g, e_x)` in the params'
        dtype. Complex params are refused ($g^2$ would not be $|g|^2$).

    References:
        Zeiler, *ADADELTA: An Adaptive Learning Rate Method*, 2012 (arXiv:1212.5701).
    """
    owner = "scale_by_adadelta"
    _v.check_real(owner, "rho", rho, low=0.0, high=1.0)
    _v.check_real(owner, "eps", eps, low=0.0)

    def init(params):
        params = tree_as_arrays(params)
        _v.check_state_params(owner, params)
        reject_complex(owner, params)
        zeros = jax.tree.map(lambda p: full_like_param(p, 0), params)
        return ScaleByAdaDeltaState(e_g=zeros, e_x=zeros)

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        updates = float_updates(updates)
        treedef = jax.tree.structure(updates)
        outs = [
            adadelta_leaf(g, e_g, e_x, rho=rho, eps=eps)
            for g, e_g, e_x in zip(
                treedef.flatten_up_to(updates),
                treedef.flatten_up_to(state.e_g),
                treedef.flatten_up_to(state.e_x),
                strict=True,
            )
        ]
        new_updates, e_g, e_x = (treedef.unflatten([o[i] for o in outs]) for i in range(3))
        return new_updates, ScaleByAdaDeltaState(e_g=e_g, e_x=e_x)

    return GradientTransformation(init, update)
