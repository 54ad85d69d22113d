"""Krylov iterations around any linear map: in one compiled loop, or as a host loop of compiled steps.

Lanczos, conjugate gradients, MINRES and the trace estimators all repeat one pattern: pick the
next vector from the state (`query`), multiply it by the operator, fold the product into the state
(`update`), possibly stop early (`cond`). [`krylov_loop`][gradtx.curvature.krylov_loop] and
[`krylov_while`][gradtx.curvature.krylov_while] run it in `lax.fori_loop` / `lax.while_loop` when
the operator is traceable, and as a host loop when it streams the data set
([`StreamingOperator`][gradtx.curvature.StreamingOperator]): then each step is one call of a
module-level jitted function, compiled once per (`query`, `update`, `cond`, carry shapes) and reused
by every later call.
"""

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = ["krylov_loop", "krylov_while"]


def _cacheable(*fns: Any) -> bool:
    """True unless a function is a lambda or defined inside a function: such a closure is not made
    a static `jit` argument (the compile cache would keep it, and what it captures, alive)."""
    return not any("<locals>" in getattr(f, "__qualname__", "") or getattr(f, "__name__", "") == "<lambda>"
                   for f in fns)


@functools.partial(jax.jit, static_argnums=(0,))
def _call(fn: Callable[..., Any], j: Any, carry: Any) -> Any:
    """`fn(j, carry)` (a first `query` or `cond`), compiled once per `fn` and carry shapes."""
    return fn(j, carry)


def _advance_step(query: Callable[..., Any], update: Callable[..., Any], cond: Callable[..., Any] | None, j: Any,
                  carry: Any, product: Any) -> Any:
    """One host-loop step: `carry' = update(j, carry, A x)`, the next vector `query(j + 1, carry')`
    and, for `krylov_while`, the stopping test `cond(j + 1, carry')`."""
    carry = update(j, carry, product)
    return carry, query(j + 1, carry), (None if cond is None else cond(j + 1, carry))


_advance = jax.jit(_advance_step, static_argnums=(0, 1, 2))


def _host_steps(query: Callable[..., Any], update: Callable[..., Any], cond: Callable[..., Any] | None) -> Any:
    """`(first, advance)` of a streaming host loop: one module-level compiled call per step, with the
    functions as static arguments (reused across calls), or for closures `jax.jit` of each function."""
    if _cacheable(query, update, cond):
        return _call, functools.partial(_advance, query, update, cond)
    jitted: list[Any] = [None if f is None else jax.jit(f) for f in (query, update, cond)]
    return (lambda fn, j, c: jax.jit(fn)(j, c)), functools.partial(_advance_step, *jitted)


def krylov_loop(mv: Callable[[Any], Any], query: Callable[[Any, Any], Any], update: Callable[[Any, Any, Any], Any],
                carry: Any, num_steps: int, *, streaming: bool) -> Any:
    """Run `carry = update(j, carry, mv(query(j, carry)))` for `j = 0 .. num_steps − 1`.

    Not streaming: one `lax.fori_loop` (trace it inside the caller's `jax.jit`). Streaming: a
    host loop around `mv`; each step (`update`, then the next `query`) is one call of a
    module-level jitted function with `query`, `update` static and `j` an int32 array, compiled
    once per (`query`, `update`, carry shapes) and reused by later calls. Pass module-level
    functions or hashable callables: a lambda or nested function is jitted for this call only.

    Args:
        mv: linear map on the vectors `query` returns (usually flat, see `flatten_operator`).
        query: `query(j, carry) -> x`, the vector to multiply at step `j` (traceable).
        update: `update(j, carry, mv_x) -> carry` (traceable).
        carry: initial state, a pytree of arrays.
        num_steps: number of steps (static int ≥ 0).
        streaming: whether `mv` is a host-level streaming operator ([`is_streaming`][gradtx.curvature.is_streaming]).

    Returns:
        The final carry.
    """
    if not streaming:
        return lax.fori_loop(0, num_steps, lambda j, c: update(j, c, mv(query(j, c))), carry)
    if num_steps <= 0:
        return carry
    first, advance = _host_steps(query, update, None)
    x = first(query, np.int32(0), carry)
    for j in range(num_steps):
        carry, x, _ = advance(np.int32(j), carry, mv(x))
    return carry


def krylov_while(mv: Callable[[Any], Any], query: Callable[[Any, Any], Any], update: Callable[[Any, Any, Any], Any],
                 cond: Callable[[Any, Any], Any], carry: Any, max_steps: int, *, streaming: bool) -> Any:
    """[`krylov_loop`][gradtx.curvature.krylov_loop] with an early stop: steps `j = 0, 1, …` run while
    `j < max_steps` and `cond(j, carry)` is true (checked before each step).

    Not streaming: one `lax.while_loop`. Streaming: a host loop of one compiled call per step
    (`update`, the next `query` and the next `cond`, read back as a Python bool), cached on
    (`query`, `update`, `cond`, carry shapes) as in `krylov_loop`. Keep a step counter in
    `carry` if you need it.

    Returns:
        The final carry.
    """
    if not streaming:
        def keep_going(state: Any) -> Any:
            j, c = state
            return jnp.logical_and(j < max_steps, cond(j, c))

        def body(state: Any) -> Any:
            j, c = state
            return j + 1, update(j, c, mv(query(j, c)))

        return lax.while_loop(keep_going, body, (jnp.int32(0), carry))[1]
    first, advance = _host_steps(query, update, cond)
    if max_steps <= 0 or not bool(first(cond, np.int32(0), carry)):
        return carry
    x = first(query, np.int32(0), carry)
    for j in range(max_steps):
        carry, x, going = advance(np.int32(j), carry, mv(x))
        if not bool(going):
            break
    return carry
