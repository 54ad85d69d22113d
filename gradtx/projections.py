"""Euclidean projections onto convex sets (`gradtx.projections`): optax's `optax.projections`.

Each function returns $\\arg\\min_{y \\in C} \\|y - x\\|_2$ for a set $C$, treating the whole
tree $x$ as one vector. Use them in projected gradient descent: take an optimizer step, then
project the params back onto the feasible set. The numbers equal optax's bit for bit.

Example:
    >>> import jax.numpy as jnp, gradtx
    >>> gradtx.projections.projection_simplex(jnp.array([0.5, 1.5, -1.0])).tolist()
    [0.0, 1.0, 0.0]
"""

from typing import Any

import jax
import jax.numpy as jnp
from jax import flatten_util

from gradtx import tree as _tree

__all__ = [
    "projection_box",
    "projection_halfspace",
    "projection_hypercube",
    "projection_hyperplane",
    "projection_l1_ball",
    "projection_l1_sphere",
    "projection_l2_ball",
    "projection_l2_sphere",
    "projection_linf_ball",
    "projection_non_negative",
    "projection_simplex",
    "projection_vector",
]


def _vdot(x: Any, y: Any) -> jax.Array:
    return jnp.asarray(_tree.vdot(x, y))


def projection_non_negative(tree: Any) -> Any:
    r"""Projection onto the non-negative orthant: $\max(x, 0)$ elementwise.

    $$\arg\min_{y \ge 0} \|y - x\|_2 = \max(x, 0)$$
    """
    return jax.tree.map(jax.nn.relu, tree)


def projection_box(tree: Any, lower: Any, upper: Any) -> Any:
    r"""Projection onto the box $\{y : \ell \le y \le u\}$: $x$ clipped to $[\ell, u]$.

    Args:
        tree: the tree $x$.
        lower: $\ell$, a tree with the structure of `tree` (a scalar only when `tree` is one array:
            the bounds are tree-mapped alongside `tree`, as in optax).
        upper: $u$, likewise.

    Returns:
        The projected tree.
    """
    return jax.tree.map(jnp.clip, tree, lower, upper)


def projection_hypercube(tree: Any, scale: Any = 1) -> Any:
    r"""Projection onto the hypercube $[0, s]^d$ (a box with $\ell = 0$, $u$ = `scale`).

    Args:
        tree: the tree $x$.
        scale: default 1, the side $s$ (a scalar when `tree` is one array, else a tree like
            `tree` with 0 as the lower bound also needing a tree: use
            [`projection_box`][gradtx.projections.projection_box] for trees of several leaves).
    """
    return projection_box(tree, lower=0, upper=scale)


@jax.custom_jvp
def _unit_simplex(values: Any) -> jax.Array:
    """Projection of a vector onto $\\{y \\ge 0, \\sum y = 1\\}$ (sort-based, Held et al.)."""
    ranks = jnp.arange(values.shape[0]) + 1
    ordered = jnp.sort(values)[::-1]
    partial_sums = jnp.cumsum(ordered)
    support = jnp.count_nonzero(1 / ranks + (ordered - partial_sums / ranks) > 0)
    return jax.nn.relu(1 / support + (values - partial_sums[support - 1] / support))


@_unit_simplex.defjvp
def _unit_simplex_jvp(primals: Any, tangents: Any) -> tuple[jax.Array, jax.Array]:
    # on the support S the projection is affine: dy = P_S dx with P_S = I - 1 1^T / |S| on S
    (values,), (dvalues,) = primals, tangents
    out = _unit_simplex(values)
    inside = out > 0
    size = jnp.count_nonzero(inside)
    return out, inside * dvalues - (jnp.dot(inside, dvalues) / size) * inside


def projection_simplex(tree: Any, scale: jax.typing.ArrayLike = 1) -> Any:
    r"""Projection onto the simplex $\{y : y \ge 0,\ \sum_i y_i = s\}$.

    $$y_i = \max\big(x_i - \tau,\ 0\big),\qquad \tau \text{ such that } \sum_i y_i = s$$

    $\tau$ is found exactly from the sorted entries (Held, Wolfe and Crowder; Duchi et al.). All
    the leaves together form the vector. Differentiable (a custom JVP on the support).

    Args:
        tree: the tree $x$.
        scale: default 1, the sum $s > 0$.

    Returns:
        The projected tree.

    References:
        Duchi, Shalev-Shwartz, Singer and Chandra, [Efficient projections onto the l1-ball for
        learning in high dimensions](https://dl.acm.org/doi/10.1145/1390156.1390191), ICML 2008.
    """
    values, unravel = flatten_util.ravel_pytree(tree)
    return unravel(scale * _unit_simplex(values / scale))  # type: ignore[arg-type]  # an Array at run time


def projection_l1_sphere(tree: Any, scale: jax.typing.ArrayLike = 1) -> Any:
    r"""Projection onto the l1 sphere $\{y : \|y\|_1 = s\}$: the simplex projection of $|x|$, with $x$'s signs.

    Args:
        tree: the tree $x$.
        scale: default 1, the radius $s$.
    """
    magnitudes = projection_simplex(jax.tree.map(jnp.abs, tree), scale)
    return _tree.mul(jax.tree.map(jnp.sign, tree), magnitudes)


def projection_l1_ball(tree: Any, scale: jax.typing.ArrayLike = 1) -> Any:
    r"""Projection onto the l1 ball $\{y : \|y\|_1 \le s\}$.

    $x$ itself when $\|x\|_1 \le s$, otherwise its projection onto the l1 sphere.

    Args:
        tree: the tree $x$.
        scale: default 1, the radius $s$.
    """
    inside = _tree.norm(tree, ord=1) <= scale
    return jax.lax.cond(inside, lambda t: t, lambda t: projection_l1_sphere(t, scale), tree)


def projection_l2_sphere(tree: Any, scale: jax.typing.ArrayLike = 1) -> Any:
    r"""Projection onto the l2 sphere $\{y : \|y\|_2 = s\}$: $y = s\,x / \|x\|_2$.

    Args:
        tree: the tree $x$ (not zero).
        scale: default 1, the radius $s$.
    """
    return _tree.scale(scale / _tree.norm(tree), tree)


def projection_l2_ball(tree: Any, scale: jax.typing.ArrayLike = 1) -> Any:
    r"""Projection onto the l2 ball $\{y : \|y\|_2 \le s\}$.

    $$y = \frac{s}{\max(\|x\|_2,\ s)}\, x$$

    Args:
        tree: the tree $x$.
        scale: default 1, the radius $s$.
    """
    squared_norm = _tree.norm(tree, squared=True)
    return _tree.scale(scale / jnp.sqrt(jnp.maximum(squared_norm, scale**2)), tree)


def projection_linf_ball(tree: Any, scale: jax.typing.ArrayLike = 1) -> Any:
    r"""Projection onto the l-infinity ball $\{y : \|y\|_\infty \le s\}$: $x$ clipped to $[-s, s]$.

    Args:
        tree: the tree $x$.
        scale: default 1, the radius $s$.
    """
    lower = _tree.full_like(tree, -scale)  # type: ignore[operator]  # a bool scale is not meant
    return projection_box(tree, lower=lower, upper=_tree.full_like(tree, scale))


def projection_vector(x: Any, a: Any) -> Any:
    r"""Projection onto the line spanned by $a$.

    $$y = \frac{\langle x, a\rangle}{\langle a, a\rangle}\, a$$

    Args:
        x: the tree to project.
        a: the direction, a tree with the structure of `x` (not zero).
    """
    return _tree.scale(_vdot(x, a) / _vdot(a, a), a)


def projection_hyperplane(x: Any, a: Any, b: jax.typing.ArrayLike) -> Any:
    r"""Projection onto the hyperplane $\{y : \langle a, y\rangle = b\}$.

    $$y = x + \frac{b - \langle a, x\rangle}{\langle a, a\rangle}\, a$$

    Args:
        x: the tree to project.
        a: the normal, a tree with the structure of `x` (not zero).
        b: the offset, a scalar.
    """
    return _tree.add_scale(x, (b - _vdot(x, a)) / _vdot(a, a), a)


def projection_halfspace(x: Any, a: Any, b: jax.typing.ArrayLike) -> Any:
    r"""Projection onto the half-space $\{y : \langle a, y\rangle \le b\}$.

    $$y = x + \frac{\min\big(b - \langle a, x\rangle,\ 0\big)}{\langle a, a\rangle}\, a$$

    $x$ itself when it already lies in the half-space.

    Args:
        x: the tree to project.
        a: the normal, a tree with the structure of `x` (not zero).
        b: the offset, a scalar.
    """
    step = (b - _vdot(x, a)) / _vdot(a, a)
    return _tree.add_scale(x, jnp.clip(step, max=0), a)
