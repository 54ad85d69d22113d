"""Checks of hyper-parameters given to gradtx factories, and of the arguments some updates require.

Every check names the argument, the value received and the accepted range. Values that are traced
(inside `jax.jit`, or hyper-parameters injected through the state) cannot be inspected and are
accepted as they are.
"""

import math
import numbers
from collections.abc import Callable
from typing import Any

import jax
import numpy as np


def is_traced(value: Any) -> bool:
    """True for a JAX tracer (a value only known at run time)."""
    return isinstance(value, jax.core.Tracer)


def _as_float(owner: str, name: str, value: Any) -> float | None:
    """The value as a Python float, None when traced; TypeError when not a real number."""
    if is_traced(value):
        return None
    if isinstance(value, bool):
        raise TypeError(f"{owner}: {name} must be a real number, got the bool {value!r}")
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (jax.Array, np.ndarray, np.generic)):
        if np.ndim(value) != 0:
            raise TypeError(f"{owner}: {name} must be a scalar, got an array of shape {np.shape(value)}")
        dtype = jax.numpy.result_type(value)
        if not jax.numpy.issubdtype(dtype, jax.numpy.number) or jax.numpy.issubdtype(
            dtype, jax.numpy.complexfloating
        ):
            raise TypeError(f"{owner}: {name} must be a real number, got dtype {dtype}")
        return float(value)
    raise TypeError(f"{owner}: {name} must be a real number, got {type(value).__name__}: {value!r}")


def check_real(
    owner: str,
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> None:
    """Raise unless `value` is a finite real number in the given interval (or traced).

    Args:
        owner: the factory's name, for the message.
        name: the argument's name.
        value: the value to check.
        low, high: bounds of the accepted interval; None means unbounded on that side.
        low_inclusive, high_inclusive: whether the bounds themselves are accepted.
    """
    x = _as_float(owner, name, value)
    if x is None:
        return
    left = "(-inf" if low is None else ("[" if low_inclusive else "(") + f"{low:g}"
    right = "inf)" if high is None else f"{high:g}" + ("]" if high_inclusive else ")")
    interval = f"{left}, {right}"
    if not math.isfinite(x):
        raise ValueError(f"{owner}: {name} must be a finite number in {interval}, got {value!r}")
    bad_low = low is not None and (x < low or (x == low and not low_inclusive))
    bad_high = high is not None and (x > high or (x == high and not high_inclusive))
    if bad_low or bad_high:
        raise ValueError(f"{owner}: {name} must be in {interval}, got {value!r}")


def check_int(owner: str, name: str, value: Any, *, low: int | None = None) -> None:
    """Raise unless `value` is an integer (not a bool) that is at least `low` (or traced)."""
    if is_traced(value):
        return
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, np.integer)):
        if isinstance(value, (jax.Array, np.ndarray)) and np.ndim(value) == 0 and np.issubdtype(
            np.asarray(value).dtype, np.integer
        ):
            value = int(value)
        else:
            raise TypeError(f"{owner}: {name} must be an integer, got {type(value).__name__}: {value!r}")
    if low is not None and value < low:
        raise ValueError(f"{owner}: {name} must be an integer >= {low}, got {value!r}")


def check_schedule_or_real(owner: str, name: str, value: Any, **bounds: Any) -> None:
    """Accept a callable (a schedule, checked when called) or a real number within bounds."""
    if callable(value):
        return
    try:
        check_real(owner, name, value, **bounds)
    except TypeError:
        raise TypeError(
            f"{owner}: {name} must be a number or a schedule (a callable of the step count), "
            f"got {type(value).__name__}: {value!r}"
        ) from None


def check_bool(owner: str, name: str, value: Any) -> None:
    """Raise a TypeError unless `value` is a Python bool."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{owner}: {name} must be True or False, got {type(value).__name__}: {value!r}")


def check_dtype(owner: str, name: str, value: Any, *, allow_complex: bool = False) -> None:
    """Raise unless `value` is None or a floating dtype (or a complex one, with `allow_complex`).

    Strings (`"bfloat16"`, `"complex64"`), NumPy / JAX scalar types and `np.dtype`s are accepted.
    """
    if value is None:
        return
    kind = "a floating or complex dtype" if allow_complex else "a floating dtype"
    try:
        dtype = jax.numpy.dtype(value)
    except TypeError:
        raise TypeError(f"{owner}: {name} must be None or {kind}, got {value!r}") from None
    accepted = jax.numpy.inexact if allow_complex else jax.numpy.floating
    if not jax.numpy.issubdtype(dtype, accepted):
        raise TypeError(f"{owner}: {name} must be None or {kind}, got {dtype}")


def check_state_params(owner: str, params: Any, dtype: Any = None, dtype_name: str = "mu_dtype") -> None:
    """For the `init` of a transformation that keeps a floating state per parameter.

    Raise a `TypeError` naming the first offending leaf path when

    * a params leaf has an integer or boolean dtype: the state (moments, traces) would be kept
      in, or rounded back to, integers, so the updates would silently be zero or truncated;
    * `dtype` (the state's `mu_dtype` / `accumulator_dtype`) is complex and a leaf is real, or
      `dtype` is real and a leaf is complex: the cast between the two would drop the imaginary
      part (optax then returns complex updates for real params, or loses the imaginary part).

    Python scalars are judged by their JAX dtype (`1.5` is float32, `3` is int32).
    """
    want_complex = None if dtype is None else bool(jax.numpy.issubdtype(dtype, jax.numpy.complexfloating))
    leaves, _ = jax.tree_util.tree_flatten_with_path(params)
    for path, leaf in leaves:
        leaf_dtype = jax.numpy.result_type(leaf)
        where = f"params{jax.tree_util.keystr(path)}"
        if not jax.numpy.issubdtype(leaf_dtype, jax.numpy.inexact):
            raise TypeError(
                f"{owner}.init: {where} has dtype {leaf_dtype}; {owner} keeps a floating-point "
                f"state per parameter, which an integer or boolean leaf cannot hold (its updates "
                f"would be rounded to integers). Cast that leaf to a floating dtype, or keep it out "
                f"of the optimized params (e.g. freeze it with a mask)."
            )
        is_complex = bool(jax.numpy.issubdtype(leaf_dtype, jax.numpy.complexfloating))
        if want_complex is not None and is_complex != want_complex:
            raise TypeError(
                f"{owner}.init: {dtype_name}={jax.numpy.dtype(dtype)} is "
                f"{'complex' if want_complex else 'real'} but {where} has dtype {leaf_dtype}; the "
                f"cast between the two would drop an imaginary part. Use a "
                f"{'complex' if is_complex else 'real floating'} {dtype_name} for these params "
                f"(or None, the params' own dtype)."
            )


def check_params_and_value_fn(owner: str, params: Any, value_fn: Any) -> Callable[..., Any]:
    """For `update` of a second-order transformation: params given and `value_fn` a callable (returned)."""
    if params is None:
        raise ValueError(
            f"{owner}.update: params are required (the Hessian is evaluated at the current params); "
            f"call update(updates, state, params, value_fn=f)."
        )
    if value_fn is None:
        raise ValueError(
            f"{owner}.update: the objective is required as the keyword argument value_fn, a function "
            f"of the params alone returning a scalar; call update(updates, state, params, value_fn=f) "
            f"(bind any data with functools.partial or a closure)."
        )
    if not callable(value_fn):
        raise TypeError(f"{owner}.update: value_fn must be callable, got {type(value_fn).__name__}: {value_fn!r}")
    return value_fn
