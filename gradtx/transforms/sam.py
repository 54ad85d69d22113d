r"""SAM (Sharpness-Aware Minimization) as a wrapper of an outer and an adversarial optimizer.

[`sam`][gradtx.contrib.sam] follows `optax.contrib.sam` 0.2.8's numbers bit for bit for float32
inputs under `jax.jit`, in both modes, with the same state `SAMState(steps_since_sync,
opt_state, adv_state, cache)`. The names live in `gradtx.contrib`, as in optax.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx import _validation as _v
from gradtx.base import GradientTransformation, OptState, Params, apply_updates, describe

__all__ = ["SAMState", "sam"]


class SAMState(NamedTuple):
    """State of [`sam`][gradtx.contrib.sam] (optax's layout).

    `steps_since_sync` counts the adversarial steps since the last outer update (int32, in
    `[0, sync_period)`); `opt_state` and `adv_state` are the outer and adversarial optimizers'
    states; `cache` holds the outer params $w$ between outer updates (None with
    `opaque_mode=True`, where nothing has to be kept between calls).
    """

    steps_since_sync: jax.Array
    opt_state: OptState
    adv_state: OptState
    cache: Params | None


def _pick(cond: jax.Array, if_true: Any, if_false: Any) -> Any:
    # optax's arithmetic selection (cond * a + (1 - cond) * b), kept for identical numbers
    return jax.tree.map(lambda a, b: cond * a + (1 - cond) * b, if_true, if_false)


def _negate(tree: Any) -> Any:
    return jax.tree.map(lambda x: -x, tree)


@describe
def sam(
    optimizer: GradientTransformation,
    adv_optimizer: GradientTransformation,
    sync_period: int = 2,
    reset_state: bool = True,
    opaque_mode: bool = False,
    batch_axis_name: str | None = None,
) -> GradientTransformation:
    r"""Sharpness-Aware Minimization: step uphill with `adv_optimizer`, then descend from $w$.

    With outer params $w$, the adversarial optimizer's step $\delta$ (for the paper's SAM,
    `chain(normalize(), sgd(rho))`, so $\delta = -\rho\, g/\lVert g\rVert$), each period of
    `sync_period` $= k$ calls makes $k-1$ ascent steps and one outer step:

    $$\tilde w_0 = w,\qquad \tilde w_{i+1} = \tilde w_i - \delta_i\big(\nabla f(\tilde w_i)\big)
      \quad (i < k-1),\qquad
      w \leftarrow w + \Delta\big(\nabla f(\tilde w_{k-1})\big),$$

    where $\Delta$ is `optimizer`'s update, computed with $w$ as its params. The sharpness
    penalty comes from taking the outer gradient at the perturbed point.

    * `opaque_mode=False` (default): each call does one of these steps and returns it as the
      update (the ascent steps move the params the caller holds; the outer step returns them to
      $w$ and applies $\Delta$). The caller's gradients must be taken at the params it holds.
    * `opaque_mode=True`: each call does a whole period. `update(g, state, params,
      grad_fn=grad_fn)` needs `grad_fn(params, i)`, the gradient at the $i$-th perturbed point
      (called $k-1$ times), and returns the outer update only, so that side effects of the
      training step (batch-norm statistics, say) see only the outer params. Under `pmap`, name
      the axis in `batch_axis_name` and the adversarial gradients are averaged over it.

    `reset_state=True` (default) restarts the adversarial optimizer's state after each outer
    step. Extra keyword arguments other than `grad_fn` are not passed on (as in optax).

    Args:
        optimizer: the outer transformation $\Delta$.
        adv_optimizer: the adversarial transformation $\delta$ (its updates are negated: it
            ascends).
        sync_period: $k$, an integer `>= 1`, default 2 (one ascent step per outer step).
        reset_state: restart `adv_optimizer` after every outer step; default True.
        opaque_mode: run a whole period per call (needs `grad_fn`); default False.
        batch_axis_name: the `pmap` axis to average adversarial gradients over (opaque mode),
            or None (default).

    Returns:
        A `GradientTransformation`; its `update` requires `params`.

    References:
        Foret et al., *Sharpness-Aware Minimization for Efficiently Improving Generalization*,
        ICLR 2021 (arXiv:2010.01412).

    Example:
        >>> import gradtx, jax, jax.numpy as jnp
        >>> f = lambda w: jnp.sum(w**2)
        >>> tx = gradtx.contrib.sam(gradtx.sgd(0.1), gradtx.sgd(0.5), opaque_mode=True)
        >>> w = jnp.array([1.0, -2.0])
        >>> u, s = tx.update(jax.grad(f)(w), tx.init(w), w, grad_fn=lambda p, i: jax.grad(f)(p))
        >>> u  # the gradient at w + 0.5 * grad f(w) = 2w, times -0.1
        Array([-0.4,  0.8], dtype=float32)
    """
    owner = "sam"
    for name, tx in (("optimizer", optimizer), ("adv_optimizer", adv_optimizer)):
        if not (hasattr(tx, "init") and hasattr(tx, "update")):
            raise TypeError(
                f"{owner}: {name} must be a gradient transformation with init and update, "
                f"got {type(tx).__name__}: {tx!r}"
            )
    _v.check_int(owner, "sync_period", sync_period, low=1)
    _v.check_bool(owner, "reset_state", reset_state)
    _v.check_bool(owner, "opaque_mode", opaque_mode)
    if batch_axis_name is not None and not isinstance(batch_axis_name, str):
        raise TypeError(f"{owner}: batch_axis_name must be None or a str, got {batch_axis_name!r}")

    def init(params):
        return SAMState(
            steps_since_sync=jnp.zeros([], jnp.int32),
            opt_state=optimizer.init(params),
            adv_state=adv_optimizer.init(params),
            cache=None if opaque_mode else params,
        )

    def transparent(updates, state, params, grad_fn=None):
        del grad_fn
        first = state.steps_since_sync == 0
        last = state.steps_since_sync == sync_period - 1
        adv_updates, adv_state = adv_optimizer.update(updates, state.adv_state, params)
        adv_updates = _negate(adv_updates)
        opt_updates, opt_state = optimizer.update(updates, state.opt_state, state.cache)
        # back from the perturbed params to the cached outer params, then the outer step
        opt_updates = jax.tree.map(lambda c, p, u: c - p + u, state.cache, params, opt_updates)
        cache = _pick(first, params, state.cache)
        new_updates = _pick(last, opt_updates, adv_updates)
        if reset_state:
            adv_state = _pick(last, adv_optimizer.init(params), adv_state)
        else:
            adv_state = _pick(last, state.adv_state, adv_state)
        opt_state = _pick(last, opt_state, state.opt_state)
        return new_updates, SAMState(
            steps_since_sync=(state.steps_since_sync + 1) % sync_period,
            opt_state=opt_state,
            adv_state=adv_state,
            cache=cache,
        )

    def opaque(updates, state, params, grad_fn=None):
        if grad_fn is None:
            raise ValueError(
                f"{owner}: grad_fn must be provided when opaque_mode=True: "
                "update(grads, state, params, grad_fn=lambda params, i: grads at params)"
            )
        adv_params, adv_updates, adv_state = params, updates, state.adv_state
        for i in range(sync_period - 1):
            adv_updates, adv_state = adv_optimizer.update(adv_updates, adv_state, adv_params)
            adv_params = apply_updates(adv_params, _negate(adv_updates))
            adv_updates = grad_fn(adv_params, i)
            if batch_axis_name is not None:
                adv_updates = jax.lax.pmean(adv_updates, axis_name=batch_axis_name)
        if reset_state:
            adv_state = adv_optimizer.init(params)
        new_updates, opt_state = optimizer.update(adv_updates, state.opt_state, params)
        return new_updates, SAMState(
            steps_since_sync=jnp.zeros([], jnp.int32),
            opt_state=opt_state,
            adv_state=adv_state,
            cache=None,
        )

    step: Callable = opaque if opaque_mode else transparent

    def update(updates, state, params=None, *, grad_fn=None, **extra_args):
        del extra_args
        if params is None:
            raise ValueError(f"{owner}.update needs params; got params=None")
        return step(updates, state, params, grad_fn=grad_fn)

    return GradientTransformation(init, update)
