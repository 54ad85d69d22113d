"""Ritz residuals: certified error bounds for approximate eigenpairs of a symmetric operator.

For a symmetric linear map `A`, a vector `v ≠ 0` and any real `θ`, the residual norm

$$
r = \\frac{\\lVert A v - \\theta v \\rVert_2}{\\lVert v \\rVert_2}
$$

bounds the distance from `θ` to the spectrum: `A` has an eigenvalue `λ` with `|λ − θ| ≤ r`
(Kahan's theorem / the Bauer-Fike theorem for normal matrices; Parlett 1998, Thm. 4.5.1). The
bound needs nothing about the rest of the spectrum, so it holds for unconverged Ritz pairs too
(where it is merely loose). In exact arithmetic a Lanczos Ritz pair's residual equals
`β_m |s_{m,i}|` (last off-diagonal times the last entry of the tridiagonal eigenvector); here it
is computed from explicit operator products, so it also holds when rounding has made the
Lanczos estimate optimistic. The only error left is the rounding of the product `A v` itself.

When `θ = vᵀAv/vᵀv` is a Rayleigh quotient (every Ritz value is one), it also lies inside the
spectrum's range: `λ_min ≤ θ ≤ λ_max`, so the smallest Ritz value is an upper bound on `λ_min`
and the largest a lower bound on `λ_max`, whatever the residual.

References:
    Parlett, *The Symmetric Eigenvalue Problem*, SIAM, 1998, §4.5 (residual bounds) and §11.4
    (Lanczos error estimates). Kahan, *Inclusion theorems for clusters of eigenvalues of
    Hermitian matrices*, Tech. Rep., University of Toronto, 1967.
"""

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from gradtx._validation import check_real

__all__ = ["ritz_residuals"]


def _apply_all(matvec: Callable[[Any], Any], vectors: Any) -> Any:
    """`A v_i` for every `v_i` along the leading axis: one data pass for a streaming operator."""
    if getattr(matvec, "streaming", False) is True and hasattr(matvec, "matmat"):
        return matvec.matmat(vectors)
    return jax.vmap(matvec)(vectors)


@jax.jit
def residual_norms(values: jax.Array, vectors: Any, products: Any) -> jax.Array:
    """`‖A v_i − θ_i v_i‖ / ‖v_i‖` from the products `A v_i` (pytrees or flat rows with a leading axis k)."""
    v = jax.vmap(lambda t: ravel_pytree(t)[0])(vectors)
    av = jax.vmap(lambda t: ravel_pytree(t)[0])(products)
    dtype = jnp.promote_types(jnp.promote_types(v.dtype, av.dtype), jnp.float32)
    v, av = v.astype(dtype), av.astype(dtype)
    theta = jnp.asarray(values).astype(dtype)[:, None]
    norms = jnp.linalg.norm(v, axis=1)
    return jnp.linalg.norm(av - theta * v, axis=1) / jnp.maximum(norms, jnp.finfo(dtype).tiny)


def ritz_residuals(matvec: Callable[[Any], Any], template: Any, values: jax.Array, vectors: Any) -> jax.Array:
    """Residual norms `‖A v_i − θ_i v_i‖ / ‖v_i‖` of approximate eigenpairs, by explicit products.

    Each entry is a guaranteed bound on the distance from `θ_i` to the nearest eigenvalue of the
    symmetric operator `A` (see the module docstring):

    $$
    \\min_j |\\lambda_j(A) - \\theta_i| \\le \\frac{\\lVert A v_i - \\theta_i v_i \\rVert_2}{\\lVert v_i \\rVert_2}.
    $$

    Costs `k` operator products (a streaming operator applies them in one pass over its data
    with `matmat`; a plain callable is `jax.vmap`-ed). Traceable (usable under `jax.jit`).

    Args:
        matvec: symmetric linear map `v ↦ A v` on pytrees shaped like `template` (vmappable), or a
            streaming operator with a `matmat` method.
        template: a pytree of float arrays fixing the space (e.g. the params).
        values: `(k,)` approximate eigenvalues `θ_i`.
        vectors: a pytree like `template` whose leaves have a leading axis `k` (the vectors
            `v_i`; they need not be normalized).

    Returns:
        `(k,)` residual norms in the promoted float dtype of the vectors (at least float32).

    Raises:
        ValueError: when `values` is not 1-D or its length differs from the vectors' leading axis,
            or `vectors` does not have `template`'s tree structure.

    References:
        Parlett, *The Symmetric Eigenvalue Problem*, SIAM, 1998, Thm. 4.5.1.
    """
    owner = "ritz_residuals"
    if jax.tree.structure(vectors) != jax.tree.structure(template):
        raise ValueError(f"{owner}: vectors must have the tree structure of template (with a leading axis k)")
    shape = jnp.shape(values)
    if len(shape) != 1:
        raise ValueError(f"{owner}: values must be a 1-D array of k eigenvalues, got shape {shape}")
    lead = {int(jnp.shape(x)[0]) if jnp.ndim(x) else -1 for x in jax.tree.leaves(vectors)}
    if lead != {shape[0]}:
        raise ValueError(f"{owner}: every leaf of vectors needs a leading axis of length k={shape[0]}, got {sorted(lead)}")
    return residual_norms(values, vectors, _apply_all(matvec, vectors))


def check_confidence(owner: str, confidence: Any) -> None:
    """Raise unless `confidence` is a static Python float in `(0, 1)`."""
    if isinstance(confidence, jax.core.Tracer):
        raise TypeError(f"{owner}: confidence must be a static Python float in (0, 1), got a traced value")
    check_real(owner, "confidence", confidence, low=0.0, high=1.0, low_inclusive=False, high_inclusive=False)


def extreme_margins(theta_min: Any, theta_max: Any, residuals: Any, m: int, n: int, confidence: float) -> tuple[Any, Any]:
    """`(d_min, d_max)` with `λ_min ≥ θ_min − d_min` and `λ_max ≤ θ_max + d_max` after `m` Lanczos steps in dimension `n`.

    `m ≥ n`: the Krylov space is the whole space and the extreme residuals `(r_min, r_max)` bound
    the rounding. Otherwise the Kuczyński-Woźniakowski bound for a random start vector, holding
    with probability `confidence` (both ends together):

    $$
    d = \\frac{\\varepsilon\\,(\\theta_{\\max} - \\theta_{\\min})}{1 - 2\\varepsilon}, \\qquad
    \\varepsilon = \\Big(\\frac{\\ln(1.648\\sqrt{n}/\\delta)}{2m - 1}\\Big)^2, \\qquad
    \\delta = \\frac{1 - \\text{confidence}}{2},
    $$

    infinite when `ε ≥ 1/2` (see [`gradtx.curvature.analysis`][gradtx.curvature.analysis]).

    References:
        Kuczyński & Woźniakowski, *Estimating the largest eigenvalue by the power and Lanczos
        algorithms with a random start*, SIAM J. Matrix Anal. Appl. 13(4), 1992, Thm. 4.2.
    """
    if m >= n:
        return residuals[0], residuals[1]
    delta = (1.0 - confidence) / 2.0
    eps = (math.log(1.648 * math.sqrt(n) / delta) / (2 * m - 1)) ** 2
    if eps >= 0.5:
        return jnp.inf, jnp.inf
    d = eps * (theta_max - theta_min) / (1.0 - 2.0 * eps)
    return d, d
