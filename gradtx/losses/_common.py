"""Checks and axis helpers shared by the loss modules (private)."""

import operator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradtx._validation import is_traced

Axis = int | tuple[int, ...] | None


def require_dtype(owner: str, name: str, array: Any, kind: Any) -> None:
    """TypeError unless `array`'s dtype is a sub-dtype of `kind` (jnp.floating, jnp.integer)."""
    dtype = jax.dtypes.result_type(array)
    if not jnp.issubdtype(dtype, kind):
        raise TypeError(f"{owner}: {name} must have a {kind.__name__} dtype, got {dtype}")


def require_same_shape(owner: str, name_a: str, a: Any, name_b: str, b: Any) -> None:
    """ValueError unless the two arrays have exactly the same shape."""
    shape_a, shape_b = np.shape(a), np.shape(b)
    if shape_a != shape_b:
        raise ValueError(
            f"{owner}: {name_a} and {name_b} must have the same shape, got {shape_a} and {shape_b}"
        )


def require_rank(owner: str, name: str, array: Any, rank: int) -> None:
    """ValueError unless `array` has `rank` dimensions."""
    if np.ndim(array) != rank:
        raise ValueError(f"{owner}: {name} must have {rank} dimensions, got shape {np.shape(array)}")


def check_range(
    owner: str,
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> None:
    """ValueError unless every element of a concrete `value` is finite and in the interval (traced values pass).

    Unlike the factories' scalar checks, a loss parameter may be an array broadcast against the
    inputs (one `delta` per output, one `alpha` per example): each element is checked.
    """
    if value is None or is_traced(value):
        return
    if isinstance(value, bool):
        raise TypeError(f"{owner}: {name} must be a real number, got the bool {value!r}")
    try:
        values = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(
            f"{owner}: {name} must be a real number or array, got {type(value).__name__}"
        ) from None
    left = "(-inf" if low is None else ("[" if low_inclusive else "(") + f"{low:g}"
    right = "inf)" if high is None else f"{high:g}" + ("]" if high_inclusive else ")")
    ok = np.isfinite(values)
    if low is not None:
        ok &= values >= low if low_inclusive else values > low
    if high is not None:
        ok &= values <= high if high_inclusive else values < high
    if not ok.all():
        shown = value if values.ndim == 0 else values[~ok].ravel()[:4]
        raise ValueError(f"{owner}: {name} must be in {left}, {right}, got {shown!r}")


def normalize_axis(owner: str, axis: Any, ndim: int) -> int:
    """A non-negative axis index for an array of `ndim` dimensions (ValueError when out of range)."""
    index = operator.index(axis)
    if -ndim <= index < ndim:
        return index % ndim
    raise ValueError(f"{owner}: axis {axis} is out of range for an array of {ndim} dimensions")


def broadcast_where(where: Any, ndim: int, axis: Axis) -> Any:
    """A `where` mask given per example (without the class axes) gets those axes back as size 1."""
    if where is not None and np.ndim(where) != ndim:
        return jnp.expand_dims(where, axis)  # type: ignore[arg-type]
    return where
