r"""Accumulations of past updates: heavy-ball / Nesterov momentum (`trace`) and `ema`."""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx import _validation as _v
from gradtx.base import GradientTransformation, Updates, describe
from gradtx.numerics import cast, compute_dtype, debias_factor, float_updates, safe_increment, tree_zeros_like
from gradtx.transforms._moments import moment_leaf

__all__ = ["EmaState", "TraceState", "ema", "ema_leaf", "trace", "trace_leaf"]


class TraceState(NamedTuple):
    """State of [`trace`][gradtx.trace]: the momentum buffer."""

    trace: Updates


class EmaState(NamedTuple):
    """State of [`ema`][gradtx.ema]: the step count (int32) and the moving average."""

    count: jax.Array  # type: ignore[assignment]  # optax's field name (shadows tuple.count)
    ema: Updates


def _check_common(owner: str, decay: Any, flag_name: str, flag: Any, accumulator_dtype: Any) -> Any:
    _v.check_real(owner, "decay", decay, low=0.0, high=1.0)
    _v.check_bool(owner, flag_name, flag)
    _v.check_dtype(owner, "accumulator_dtype", accumulator_dtype, allow_complex=True)
    return None if accumulator_dtype is None else jax.dtypes.canonicalize_dtype(accumulator_dtype)


def trace_leaf(g: jax.Array, t: jax.Array, *, decay: Any, nesterov: bool) -> tuple[jax.Array, jax.Array]:
    """One momentum step on one leaf: `t ← g + decay·t`; `u = t` (or `g + decay·t` if Nesterov).

    Returns `(update, new_trace)`; the update has `g`'s dtype, the trace `t`'s dtype.
    """
    dtype = jnp.promote_types(g.dtype, t.dtype)
    gc = cast(g, dtype)
    # as optax: decay·t is rounded in the trace's own dtype (bfloat16 with a bfloat16
    # accumulator_dtype) before it is added to a float32 gradient
    new_t = gc + (cast(decay * t, dtype) if g.dtype == dtype else decay * cast(t, dtype))
    update = gc + decay * new_t if nesterov else new_t
    return cast(update, g.dtype), cast(new_t, t.dtype)


@describe
def trace(decay: float, nesterov: bool = False, accumulator_dtype: Any = None) -> GradientTransformation:
    r"""Heavy-ball momentum: accumulate a decaying sum of past updates.

    $$t_k = g_k + \beta\, t_{k-1},\qquad u_k = t_k\quad\text{or, with Nesterov,}\quad
    u_k = g_k + \beta\, t_k.$$

    (Note `trace` sums without a $(1-\beta)$ factor; [`ema`][gradtx.ema] averages.)

    Args:
        decay: the momentum $\beta$ (required), in [0, 1].
        nesterov: use Nesterov's look-ahead form, default False.
        accumulator_dtype: dtype of the trace buffer, default None (the params' dtype); a
            floating dtype.

    Returns:
        A `GradientTransformation` with state `TraceState(trace)`.

    References:
        Polyak, *Some methods of speeding up the convergence of iteration methods*, 1964;
        Sutskever et al., *On the importance of initialization and momentum in deep learning*,
        ICML 2013 (Nesterov form).

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.trace(0.5)
        >>> s = tx.init(jnp.zeros(1))
        >>> u, s = tx.update(jnp.ones(1), s)
        >>> u, s = tx.update(jnp.ones(1), s)
        >>> u
        Array([1.5], dtype=float32)
    """
    accumulator_dtype = _check_common("trace", decay, "nesterov", nesterov, accumulator_dtype)

    def init(params):
        _v.check_state_params("trace", params, accumulator_dtype, "accumulator_dtype")
        return TraceState(trace=tree_zeros_like(params, accumulator_dtype))

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        updates = float_updates(updates)
        treedef = jax.tree.structure(updates)
        pairs = [
            trace_leaf(g, t, decay=decay, nesterov=nesterov)
            for g, t in zip(treedef.flatten_up_to(updates), treedef.flatten_up_to(state.trace), strict=True)
        ]
        new_updates = treedef.unflatten([p[0] for p in pairs])
        new_trace = treedef.unflatten([p[1] for p in pairs])
        return new_updates, TraceState(trace=new_trace)

    return GradientTransformation(init, update)


def ema_leaf(
    g: jax.Array, m: jax.Array, bc: jax.Array | None, *, decay: Any
) -> tuple[jax.Array, jax.Array]:
    """One moving-average step on one leaf: `m ← decay·m + (1-decay)·g`, `u = m / bc`.

    `bc` is `1 - decay**t` (None: no debiasing); where it is 0 (decay = 1) the update is `m`.
    """
    dtype = compute_dtype(g.dtype, m.dtype) if bc is not None else jnp.promote_types(g.dtype, m.dtype)
    new_m = moment_leaf(g, m, decay, dtype)
    if bc is None:
        update = new_m
    elif _v.is_traced(decay) or decay == 1:
        bc = cast(bc, dtype)
        update = new_m / jnp.where(bc == 0, 1, bc)
    else:
        # bc > 0: optax's plain division (a guarded divisor changes XLA's rewrites by an ulp)
        update = new_m / cast(bc, dtype)
    return cast(update, g.dtype), cast(new_m, m.dtype)


@describe
def ema(decay: float, debias: bool = True, accumulator_dtype: Any = None) -> GradientTransformation:
    r"""Exponential moving average of past updates.

    $$m_k = \beta\, m_{k-1} + (1-\beta)\, g_k,\qquad u_k = \frac{m_k}{1-\beta^k}\ \
    (\text{or } u_k = m_k \text{ with } \texttt{debias=False}).$$

    Args:
        decay: the decay $\beta$ (required), in [0, 1] (with `decay = 1` the average stays 0).
        debias: divide by $1-\beta^k$ (Adam-style bias correction), default True.
        accumulator_dtype: dtype of the average, default None (the params' dtype).

    Returns:
        A `GradientTransformation` with state `EmaState(count, ema)`.

    References:
        Kingma & Ba, *Adam: A Method for Stochastic Optimization*, ICLR 2015 (bias correction).
    """
    accumulator_dtype = _check_common("ema", decay, "debias", debias, accumulator_dtype)

    def init(params):
        _v.check_state_params("ema", params, accumulator_dtype, "accumulator_dtype")
        return EmaState(count=jnp.zeros([], jnp.int32), ema=tree_zeros_like(params, accumulator_dtype))

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        updates = float_updates(updates)
        count = safe_increment(state.count)
        bc = debias_factor(decay, count) if debias else None
        treedef = jax.tree.structure(updates)
        pairs = [
            ema_leaf(g, m, bc, decay=decay)
            for g, m in zip(treedef.flatten_up_to(updates), treedef.flatten_up_to(state.ema), strict=True)
        ]
        new_updates = treedef.unflatten([p[0] for p in pairs])
        new_ema = treedef.unflatten([p[1] for p in pairs])
        return new_updates, EmaState(count=count, ema=new_ema)

    return GradientTransformation(init, update)
