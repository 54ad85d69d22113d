"""What the line searches share: the extra-argument protocol and reusing the value and gradient.

A line search needs, besides the update direction, the objective at the current params:
`update(updates, state, params, value=f(params), grad=∇f(params), value_fn=f, **data)`, where
`value_fn(params, **data)` returns a real scalar and every other keyword argument whose name is a
parameter of `value_fn` (e.g. a batch `x=..., y=...`) is handed on to it. The search evaluates `f`
(and its gradient) at trial steps and stores the value and gradient at the step it accepts in its
state; [`value_and_grad_from_state`][gradtx.value_and_grad_from_state] reads them back for the
next iteration, so a deterministic objective is evaluated once per accepted step instead of twice.

The private helpers below compute inner products, norms and mixtures of trees in optax's order
(one `tensordot` per leaf at `HIGHEST` precision, summed leaf after leaf from 0), so that a search
takes optax's steps bit for bit.
"""

import functools
import inspect
import operator
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from gradtx.base import OptState, Params, Updates

__all__ = ["value_and_grad_from_state"]


# --------------------------------------------------------------------------------------------
# Tree arithmetic (optax's evaluation order)
# --------------------------------------------------------------------------------------------


def _leaf_vdot(a: Any, b: Any) -> jax.Array:
    """`Σ conj(a)·b` over every entry of two leaves of the same shape, at full precision."""
    a, b = jnp.asarray(a), jnp.asarray(b)
    if jnp.iscomplexobj(a):
        a = jnp.conj(a)
    mesh = jax.typeof(a).sharding.mesh
    # with explicit sharding the scalar result must say where it lives: replicated
    out = jax.sharding.NamedSharding(mesh, jax.P()) if mesh.are_all_axes_explicit else None
    return jnp.tensordot(a, b, a.ndim, precision=jax.lax.Precision.HIGHEST, out_sharding=out)


def vdot(x: Any, y: Any) -> Any:
    """`⟨x, y⟩ = Σ_leaves Σ conj(x)·y`, leaves summed in tree order starting from 0."""
    return functools.reduce(operator.add, jax.tree.leaves(jax.tree.map(_leaf_vdot, x, y)), 0)


def real(tree: Any) -> Any:
    return jax.tree.map(jnp.real, tree)


def conj(tree: Any) -> Any:
    return jax.tree.map(jnp.conj, tree)


def scale(s: Any, tree: Any) -> Any:
    """`s · tree` (the scalar on the left, as optax writes it)."""
    return jax.tree.map(lambda x: s * x, tree)


def add_scale(x: Any, s: Any, y: Any) -> Any:
    """`x + s · y` leaf by leaf (`None` leaves of `x` stay `None`)."""
    s = jnp.asarray(s)
    return jax.tree.map(lambda a, b: None if a is None else a + s * b, x, y, is_leaf=lambda a: a is None)


def where(condition: Any, on_true: Any, on_false: Any) -> Any:
    """Select between two trees of the same structure with one scalar condition."""
    return jax.tree.map(lambda a, b: jnp.where(condition, a, b), on_true, on_false)


def cast_like(tree: Any, reference: Any) -> Any:
    """Each leaf of `tree` cast to the dtype of the matching leaf of `reference` (if it has one)."""
    return jax.tree.map(lambda t, r: t.astype(r.dtype) if hasattr(r, "dtype") else t, tree, reference)


def squared_norm(tree: Any) -> jax.Array:
    """`Σ |x|²` over every entry (real and imaginary parts squared separately)."""
    sums = [jnp.sum(jnp.square(x.real) + jnp.square(x.imag)) for x in jax.tree.leaves(tree)]
    return jnp.array(functools.reduce(operator.add, sums, 0))


def real_dtype(params: Params) -> Any:
    """The real dtype of the first params leaf: the dtype of values and step sizes.

    JAX's default float for an integer or boolean leaf (an `inf` initial value fits no integer).
    """
    dtype = jnp.result_type(jax.tree.leaves(params)[0])
    if not jnp.issubdtype(dtype, jnp.inexact):
        dtype = jnp.result_type(float)
    return jnp.real(jnp.empty((), dtype)).dtype


def strong(x: Any) -> jax.Array:
    """`x` as an array of JAX's default dtype for it, not weakly typed.

    optax's initial `info` fields are weakly typed, the ones its `update` returns are not, so a
    jitted step compiles twice; the same dtype without the weak type compiles once.
    """
    x = jnp.asarray(x)
    return x.astype(x.dtype)


def increment(count: jax.Array) -> jax.Array:
    """`count + 1` in `count`'s integer dtype, saturating at its largest value."""
    count = jnp.asarray(count)
    top = jnp.array(jnp.iinfo(count.dtype).max, count.dtype)
    return jnp.where(count < top, count + jnp.array(1, count.dtype), top)


# --------------------------------------------------------------------------------------------
# The extra-argument protocol
# --------------------------------------------------------------------------------------------


def objective_kwargs(owner: str, value_fn: Callable, extra_args: dict[str, Any]) -> dict[str, Any]:
    """The extra keyword arguments that `value_fn` takes; a TypeError naming any it does not.

    A `value_fn` with a `**kwargs` parameter takes them all (optax would refuse them).
    """
    try:
        parameters = inspect.signature(value_fn).parameters
    except (TypeError, ValueError):
        return dict(extra_args)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return dict(extra_args)
    unknown = sorted(k for k in extra_args if k not in parameters)
    if unknown:
        raise TypeError(
            f"{owner}.update: the keyword arguments {unknown} are not parameters of value_fn "
            f"{getattr(value_fn, '__name__', value_fn)!s}{inspect.signature(value_fn)}; every extra "
            f"keyword argument is handed on to value_fn, so it must accept them (or drop them)."
        )
    return {k: v for k, v in extra_args.items() if k in parameters}


def check_objective(owner: str, params: Any, value: Any, grad: Any, value_fn: Any) -> None:
    """`params`, `value`, `grad` and a callable `value_fn` were all given to `owner.update`."""
    missing = [name for name, x in (("params", params), ("value", value), ("grad", grad)) if x is None]
    if value_fn is None:
        missing.append("value_fn")
    if missing:
        raise TypeError(
            f"{owner}.update: missing {', '.join(missing)}. A line search evaluates the objective "
            f"along the update direction: call update(updates, state, params, value=f(params), "
            f"grad=grad_f(params), value_fn=f, **data_for_f) (e.g. with "
            f"value, grad = gradtx.value_and_grad_from_state(f)(params, state=state))."
        )
    if not callable(value_fn):
        raise TypeError(f"{owner}.update: value_fn must be callable, got {type(value_fn).__name__}: {value_fn!r}")


def print_if(condition: Any, message: str, **values: Any) -> None:
    """`jax.debug.print(message, **values)` (in program order) only where `condition` holds."""
    jax.lax.cond(
        condition,
        lambda _: jax.debug.print(message, **values, ordered=True),
        lambda _: None,
        None,
    )


# --------------------------------------------------------------------------------------------
# value_and_grad_from_state
# --------------------------------------------------------------------------------------------


def _has_field(node: Any, name: str) -> bool:
    if isinstance(node, tuple) and hasattr(node, "_fields"):
        return name in node._fields or type(node).__name__ == name
    return isinstance(node, dict) and name in node


def _find_field(state: OptState, name: str) -> Any:
    """The one value stored under the field (or dict key) `name` anywhere in `state`.

    None when there is none; a KeyError (as optax's `tree_get`) when there are several.
    """
    nodes = [
        node for node in jax.tree.leaves(state, is_leaf=lambda n: _has_field(n, name)) if _has_field(node, name)
    ]
    if not nodes:
        return None
    if len(nodes) > 1:
        raise KeyError(
            f"value_and_grad_from_state: the state holds {len(nodes)} fields named {name!r} (in "
            f"{[type(n).__name__ for n in nodes]}); chain a single line search that stores them."
        )
    node = nodes[0]
    if isinstance(node, dict):
        return node[name]
    return node if type(node).__name__ == name and name not in node._fields else getattr(node, name)


def value_and_grad_from_state(
    value_fn: Callable[..., jax.typing.ArrayLike],
) -> Callable[..., tuple[jax.Array, Updates]]:
    r"""Like `jax.value_and_grad(value_fn)`, but reuse the value and gradient a line search stored.

    The returned function is called as `value_and_grad(params, *args, state=opt_state, **kwargs)`.
    It looks in `opt_state` for the one field named `value` and the one named `grad` (a line
    search stores there the objective and its gradient at the step it accepted, which are the
    objective and gradient at the current params). When the stored value is finite they are
    returned as they are; otherwise (the first iteration, where the state holds $+\infty$) it
    evaluates `jax.value_and_grad(value_fn)(params, *args, **kwargs)`. The choice is made with
    `jax.lax.cond`, so the function can be jitted.

    Only valid for a deterministic objective: with a new batch at every step, call
    `jax.value_and_grad` instead.

    Args:
        value_fn: the objective, `value_fn(params, *args, **kwargs) -> real scalar`,
            differentiable with `jax.value_and_grad`.

    Returns:
        `value_and_grad(params, *args, state, **kwargs) -> (value, grad)`. It raises a
        `ValueError` when `state` has no `value` or no `grad` field (or the field is `None`,
        as with `scale_by_backtracking_linesearch(store_grad=False)`), and a `KeyError` when it
        has several.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> f = lambda x: jnp.sum(x ** 2)
        >>> solver = gradtx.lbfgs()
        >>> params = jnp.array([1.0, 2.0, 3.0])
        >>> state = solver.init(params)
        >>> value_and_grad = gradtx.value_and_grad_from_state(f)
        >>> for _ in range(2):
        ...     value, grad = value_and_grad(params, state=state)
        ...     updates, state = solver.update(grad, state, params, value=value, grad=grad, value_fn=f)
        ...     params = gradtx.apply_updates(params, updates)
        >>> print(f"{f(params):.1e}")
        7.5e-14
    """
    if not callable(value_fn):
        raise TypeError(f"value_and_grad_from_state: value_fn must be callable, got {type(value_fn).__name__}")

    def value_and_grad(params: Params, *fn_args: Any, state: OptState, **fn_kwargs: Any) -> tuple[jax.Array, Updates]:
        value = _find_field(state, "value")
        grad = _find_field(state, "grad")
        if value is None or grad is None:
            raise ValueError(
                "value_and_grad_from_state: the state stores no "
                f"{'value' if value is None else 'grad'}; use a transformation that stores them "
                "(scale_by_zoom_linesearch, lbfgs, or scale_by_backtracking_linesearch with "
                "store_grad=True)."
            )
        stored_is_valid = (~jnp.isinf(value)) & (~jnp.isnan(value))
        return jax.lax.cond(
            stored_is_valid,
            lambda *_: (value, grad),
            lambda p, args, kwargs: jax.value_and_grad(value_fn)(p, *args, **kwargs),
            params,
            fn_args,
            fn_kwargs,
        )

    return value_and_grad
