"""L-BFGS with a line search."""

from gradtx import _validation as v
from gradtx.base import GradientTransformation, ScalarOrSchedule, chain, describe, identity
from gradtx.linesearch import scale_by_zoom_linesearch
from gradtx.optimizers import _checks
from gradtx.transforms import scale, scale_by_learning_rate
from gradtx.transforms.lbfgs import scale_by_lbfgs

__all__ = ["lbfgs"]

# optax's default line search for L-BFGS (one shared instance: it holds no state of its own)
_ZOOM_FROM_ONE = scale_by_zoom_linesearch(max_linesearch_steps=20, initial_guess_strategy="one")


@describe
def lbfgs(
    learning_rate: ScalarOrSchedule | None = None,
    memory_size: int = 10,
    scale_init_precond: bool = True,
    linesearch: GradientTransformation | None = _ZOOM_FROM_ONE,
) -> GradientTransformation:
    r"""L-BFGS: a quasi-Newton direction and a step size found by a line search.

    With $P_k$ the limited-memory inverse-Hessian estimate of
    [`scale_by_lbfgs`][gradtx.scale_by_lbfgs] (built from the last `memory_size` differences of
    params and gradients) and $\eta_k$ the step size the line search accepts along
    $d_k = -P_k \nabla f(w_k)$ (by default one meeting the strong Wolfe conditions, starting from
    1 at every iteration),

    $$w_{k+1} = w_k - \eta_k\,\alpha_k\,P_k \nabla f(w_k),$$

    with $\alpha_k = 1$ when `learning_rate` is None and $\alpha_k$ = `learning_rate` (at step
    $k$ for a schedule) otherwise. It is
    `chain(scale_by_lbfgs(memory_size, scale_init_precond), scale(-1.0) or
    scale_by_learning_rate(learning_rate), linesearch or identity())`, as `optax.lbfgs`.

    `update` takes the line search's extra keyword arguments: `value` ($f(w_k)$), `grad`
    ($\nabla f(w_k)$) and `value_fn` ($f$), plus any data `value_fn` takes. For a deterministic
    objective, [`value_and_grad_from_state`][gradtx.value_and_grad_from_state] reuses the value
    and gradient the search computed at the accepted step (one evaluation per iteration saved).

    Args:
        learning_rate: None (default: the line search alone sets the step) or a fixed scale
            $\alpha$, a real number `>= 0` or a schedule of the step count.
        memory_size: number of difference pairs kept; an integer `>= 1`, default 10.
        scale_init_precond: scale the initial inverse-Hessian estimate (see `scale_by_lbfgs`);
            default True.
        linesearch: a transformation that takes `value`, `grad` and `value_fn`, or None for
            none; default `scale_by_zoom_linesearch(max_linesearch_steps=20,
            initial_guess_strategy="one")`.

    Returns:
        A `GradientTransformation`; its state is the tuple of its three members' states.

    References:
        Nocedal & Wright, *Numerical Optimization*, 1999, algorithms 7.4, 7.5 (and 3.5, 3.6).
        Liu & Nocedal, *On the limited memory BFGS method for large scale optimization*,
        Mathematical Programming 45, 1989.

    Memory: it keeps $2m + 2$ copies of the params, so it suits small and medium problems.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> f = lambda w: jnp.sum((w - 1.0) ** 2) + jnp.sum(w ** 4)
        >>> solver = gradtx.lbfgs()
        >>> w = jnp.zeros(3)
        >>> state = solver.init(w)
        >>> value_and_grad = gradtx.value_and_grad_from_state(f)
        >>> for _ in range(10):
        ...     value, grad = value_and_grad(w, state=state)
        ...     updates, state = solver.update(grad, state, w, value=value, grad=grad, value_fn=f)
        ...     w = gradtx.apply_updates(w, updates)
        >>> print(jnp.round(w, 4))
        [0.5898 0.5898 0.5898]
    """
    owner = "lbfgs"
    if learning_rate is not None:
        _checks.learning_rate(owner, learning_rate)
    v.check_int(owner, "memory_size", memory_size, low=1)
    v.check_bool(owner, "scale_init_precond", scale_init_precond)
    if linesearch is not None and not (hasattr(linesearch, "init") and hasattr(linesearch, "update")):
        raise TypeError(
            f"{owner}: linesearch must be None or a gradient transformation taking value, grad and "
            f"value_fn (e.g. gradtx.scale_by_zoom_linesearch(20)), got {type(linesearch).__name__}: "
            f"{linesearch!r}"
        )
    return chain(
        scale_by_lbfgs(memory_size=memory_size, scale_init_precond=scale_init_precond),
        scale(-1.0) if learning_rate is None else scale_by_learning_rate(learning_rate),
        identity() if linesearch is None else linesearch,
    )
