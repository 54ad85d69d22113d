"""Bit-for-bit rows, contract entries and invalid arguments of the line-search family.

`_bitwise.run` calls `update(grads, state, params)` with no extra arguments, while a line search
needs `value`, `grad` and `value_fn`. The rows that hold one wrap it in `_driven`, the loop optax
documents: `value_and_grad_from_state(f)(params, state=state)` (the value and gradient the search
stored at the step it accepted; computed at the first step), handed to
`update(grad, state, params, value=value, grad=grad, value_fn=f)`. The wrapper passes the state
through untouched, so params, updates and every state leaf are compared as in any other row.
`f` is the double well whose gradient is `_bitwise.grads` at step 0; the incoming `grads` are
ignored. `scale_by_lbfgs` alone (and `lbfgs` without a line search) need no objective and are
driven as usual.

`OPTIMIZERS` is empty: `lbfgs`'s `memory_size` fixes the shapes of its memory, so
`inject_hyperparams` cannot inject it, and the contract's sharding check calls `update` without the
`value_fn` the line search needs. Its convergence (Rosenbrock, a quadratic), jit and dtype
behaviour are checked in `tests/test_linesearch.py` instead.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
from _bitwise import same

import gradtx


def _well(params):
    """`Σ x⁴/4 - x²/2`: bounded below, minima at ±1 in every entry."""
    return sum(jnp.sum(0.25 * x**4 - 0.5 * x**2) for x in jax.tree.leaves(params))


def _driven(lib, tx, value_and_grad_from_state=None):
    """`tx` as a transformation that `run` can drive (see the module docstring).

    Without `value_and_grad_from_state` (a search that stores no gradient) every step evaluates
    `jax.value_and_grad(f)` at the params.
    """
    value_and_grad = jax.value_and_grad(_well)
    if value_and_grad_from_state is not None:
        value_and_grad = value_and_grad_from_state(_well)

    def update(updates, state, params=None, **extra_args):
        del updates, extra_args
        if value_and_grad_from_state is None:
            value, grad = value_and_grad(params)
        else:
            value, grad = value_and_grad(params, state=state)
        return tx.update(grad, state, params, value=value, grad=grad, value_fn=_well)

    return lib.GradientTransformation(tx.init, update)


ROWS = [
    same("scale_by_lbfgs", lambda m: m.chain(m.scale_by_lbfgs(), m.scale(-0.1))),
    same("scale_by_lbfgs_m3_unscaled", lambda m: m.chain(m.scale_by_lbfgs(3, scale_init_precond=False),
                                                         m.scale(-0.05))),
    same("lbfgs_no_linesearch", lambda m: m.lbfgs(0.1, memory_size=4, linesearch=None)),
    same("lbfgs", lambda m: _driven(m, m.lbfgs(), m.value_and_grad_from_state)),
    same("lbfgs_lr_backtracking", lambda m: _driven(m, m.lbfgs(
        0.5, memory_size=3, linesearch=m.scale_by_backtracking_linesearch(15, store_grad=True)),
        m.value_and_grad_from_state)),
    same("zoom_sgd", lambda m: _driven(m, m.chain(m.sgd(1.0), m.scale_by_zoom_linesearch(15)),
                                       m.value_and_grad_from_state)),
    same("zoom_options", lambda m: _driven(m, m.chain(m.sgd(1.0), m.scale_by_zoom_linesearch(
        10, max_learning_rate=1.0, tol=1e-6, increase_factor=1.5, slope_rtol=1e-3, curv_rtol=0.5,
        approx_dec_rtol=None, stepsize_precision=1e-3, initial_guess_strategy="one")))),
    same("backtracking_sgd", lambda m: _driven(m, m.chain(m.sgd(1.0), m.scale_by_backtracking_linesearch(15)))),
    same("backtracking_options", lambda m: _driven(m, m.chain(m.sgd(1.0), m.scale_by_backtracking_linesearch(
        4, slope_rtol=0.1, decrease_factor=0.5, increase_factor=2.0, max_learning_rate=3.0, atol=1e-6,
        rtol=1e-4, store_grad=True)), m.value_and_grad_from_state)),
]

# lbfgs needs value, grad and value_fn and a static memory_size: see the module docstring
OPTIMIZERS: dict[str, Callable[[], gradtx.GradientTransformation]] = {}

INVALID: list = [
    (gradtx.scale_by_lbfgs, {"memory_size": 0}, "memory_size"),
    (gradtx.scale_by_lbfgs, {"memory_size": 2.5}, "memory_size"),
    (gradtx.scale_by_lbfgs, {"scale_init_precond": 1}, "scale_init_precond"),
    (gradtx.lbfgs, {"learning_rate": -1.0}, "learning_rate"),
    (gradtx.lbfgs, {"memory_size": 0}, "memory_size"),
    (gradtx.lbfgs, {"linesearch": "zoom"}, "linesearch"),
    (gradtx.scale_by_zoom_linesearch, {"max_linesearch_steps": 0}, "max_linesearch_steps"),
    (gradtx.scale_by_zoom_linesearch, {"max_linesearch_steps": 10, "max_learning_rate": 0.0}, "max_learning_rate"),
    (gradtx.scale_by_zoom_linesearch, {"max_linesearch_steps": 10, "tol": -1.0}, "tol"),
    (gradtx.scale_by_zoom_linesearch, {"max_linesearch_steps": 10, "increase_factor": 1.0}, "increase_factor"),
    (gradtx.scale_by_zoom_linesearch, {"max_linesearch_steps": 10, "slope_rtol": 1.0}, "slope_rtol"),
    (gradtx.scale_by_zoom_linesearch, {"max_linesearch_steps": 10, "curv_rtol": 0.0}, "curv_rtol"),
    (gradtx.scale_by_zoom_linesearch, {"max_linesearch_steps": 10, "slope_rtol": 0.5, "curv_rtol": 0.4},
     "curv_rtol"),
    (gradtx.scale_by_zoom_linesearch, {"max_linesearch_steps": 10, "approx_dec_rtol": -1e-6}, "approx_dec_rtol"),
    (gradtx.scale_by_zoom_linesearch, {"max_linesearch_steps": 10, "stepsize_precision": -1.0},
     "stepsize_precision"),
    (gradtx.scale_by_zoom_linesearch, {"max_linesearch_steps": 10, "initial_guess_strategy": "two"},
     "initial_guess_strategy"),
    (gradtx.scale_by_zoom_linesearch, {"max_linesearch_steps": 10, "verbose": "yes"}, "verbose"),
    (gradtx.scale_by_backtracking_linesearch, {"max_backtracking_steps": -1}, "max_backtracking_steps"),
    (gradtx.scale_by_backtracking_linesearch, {"max_backtracking_steps": 5, "slope_rtol": -0.1}, "slope_rtol"),
    (gradtx.scale_by_backtracking_linesearch, {"max_backtracking_steps": 5, "decrease_factor": 1.0},
     "decrease_factor"),
    (gradtx.scale_by_backtracking_linesearch, {"max_backtracking_steps": 5, "increase_factor": 0.5},
     "increase_factor"),
    (gradtx.scale_by_backtracking_linesearch, {"max_backtracking_steps": 5, "max_learning_rate": 0.0},
     "max_learning_rate"),
    (gradtx.scale_by_backtracking_linesearch, {"max_backtracking_steps": 5, "atol": -1.0}, "atol"),
    (gradtx.scale_by_backtracking_linesearch, {"max_backtracking_steps": 5, "rtol": float("nan")}, "rtol"),
    (gradtx.scale_by_backtracking_linesearch, {"max_backtracking_steps": 5, "store_grad": None}, "store_grad"),
]
