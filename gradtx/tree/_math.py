"""Arithmetic on pytrees: leafwise sums, products, norms and reductions (optax's `tree` maths)."""

import functools
import operator
from typing import Any

import jax
import jax.numpy as jnp

__all__ = [
    "tree_add",
    "tree_add_scale",
    "tree_allclose",
    "tree_batch_shape",
    "tree_clip",
    "tree_conj",
    "tree_div",
    "tree_full_like",
    "tree_max",
    "tree_min",
    "tree_mul",
    "tree_norm",
    "tree_ones_like",
    "tree_real",
    "tree_scale",
    "tree_size",
    "tree_sub",
    "tree_sum",
    "tree_vdot",
    "tree_where",
    "tree_zeros_like",
]


def tree_add(tree_x: Any, tree_y: Any, *other_trees: Any) -> Any:
    r"""Leafwise sum of two or more trees of the same structure.

    $$z_i = x_i + y_i + \dots$$

    The leaves are added left to right starting from the integer 0, as optax does (so a
    `-0.0` leaf sum comes back as `+0.0`, bit for bit like optax).

    Args:
        tree_x: the first tree.
        tree_y: the second tree.
        *other_trees: more trees to add.

    Returns:
        A tree of the same structure holding the sums.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> gradtx.tree.add({"a": jnp.ones(2)}, {"a": jnp.ones(2)}, {"a": jnp.ones(2)})["a"].tolist()
        [3.0, 3.0]
    """
    return jax.tree.map(lambda *leaves: functools.reduce(operator.add, leaves, 0), tree_x, tree_y, *other_trees)


def tree_sub(tree_x: Any, tree_y: Any) -> Any:
    """Leafwise difference `tree_x - tree_y`."""
    return jax.tree.map(operator.sub, tree_x, tree_y)


def tree_mul(tree_x: Any, tree_y: Any) -> Any:
    """Leafwise product `tree_x * tree_y`."""
    return jax.tree.map(operator.mul, tree_x, tree_y)


def tree_div(tree_x: Any, tree_y: Any) -> Any:
    """Leafwise quotient `tree_x / tree_y`."""
    return jax.tree.map(operator.truediv, tree_x, tree_y)


def tree_scale(scalar: jax.typing.ArrayLike, tree: Any) -> Any:
    """Every leaf multiplied by `scalar` (`scalar * leaf`)."""
    return jax.tree.map(lambda x: scalar * x, tree)


def tree_add_scale(tree_x: Any, scalar: jax.typing.ArrayLike, tree_y: Any) -> Any:
    r"""`tree_x + scalar * tree_y`, leaf by leaf (an axpy).

    $$z_i = x_i + \alpha\, y_i$$

    A `None` leaf of `tree_x` stays `None`.

    Args:
        tree_x: the tree $x$.
        scalar: $\alpha$, a scalar (converted to an array once).
        tree_y: the tree $y$, with the structure of `tree_x`.

    Returns:
        A tree of the structure of `tree_x`.
    """
    alpha = jnp.asarray(scalar)
    return jax.tree.map(
        lambda x, y: None if x is None else x + alpha * y, tree_x, tree_y, is_leaf=lambda x: x is None
    )


def _leaf_vdot(a: Any, b: Any) -> jax.Array:
    """Inner product of two same-shaped arrays at the highest matmul precision (`a` conjugated)."""
    a, b = jnp.asarray(a), jnp.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"tree_vdot: leaves must have the same shape, got {a.shape} and {b.shape}")
    if jnp.issubdtype(a.dtype, jnp.complexfloating):
        a = jnp.conj(a)
    mesh = jax.typeof(a).sharding.mesh
    out_sharding = jax.sharding.NamedSharding(mesh, jax.P()) if mesh.are_all_axes_explicit else None
    return jnp.tensordot(a, b, a.ndim, precision=jax.lax.Precision.HIGHEST, out_sharding=out_sharding)


def tree_vdot(tree_x: Any, tree_y: Any) -> jax.typing.ArrayLike:
    r"""Inner product of two trees, the first one conjugated.

    $$\langle x, y\rangle = \sum_i \sum_j \overline{x_{ij}}\, y_{ij}$$

    Each leaf's contraction runs at `Precision.HIGHEST`; the per-leaf results are added in leaf
    order starting from 0 (optax's order, so the numbers are the same bit for bit).

    Args:
        tree_x: the first tree (conjugated when complex).
        tree_y: the second tree, with the same structure and leaf shapes.

    Returns:
        A scalar.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> float(gradtx.tree.vdot({"a": jnp.array([1.0, 2.0])}, {"a": jnp.array([3.0, 4.0])}))
        11.0
    """
    return jax.tree.reduce(operator.add, jax.tree.map(_leaf_vdot, tree_x, tree_y), initializer=0)


def tree_sum(tree: Any, associative_reduction: bool = False) -> jax.typing.ArrayLike:
    """Sum of all the elements of all the leaves.

    Args:
        tree: a tree of arrays.
        associative_reduction: default False (leaf sums added in leaf order, from 0); True adds
            them with `jax.tree.reduce_associative` (a balanced order: faster to compile for
            very many leaves, possibly different in the last bits).

    Returns:
        A scalar.
    """
    sums = jax.tree.map(jnp.sum, tree)
    if associative_reduction:
        return jax.tree.reduce_associative(operator.add, sums, identity=0)
    return jax.tree.reduce(operator.add, sums, initializer=0)


def _nonempty(reduce_leaf: Any) -> Any:
    return lambda x: None if jnp.size(x) == 0 else reduce_leaf(x)


def tree_max(tree: Any) -> jax.typing.ArrayLike:
    """Largest element over all the leaves (empty leaves skipped; `-inf` for an empty tree)."""
    return jax.tree.reduce(jnp.maximum, jax.tree.map(_nonempty(jnp.max), tree), initializer=-float("inf"))


def tree_min(tree: Any) -> jax.typing.ArrayLike:
    """Smallest element over all the leaves (empty leaves skipped; `inf` for an empty tree)."""
    return jax.tree.reduce(jnp.minimum, jax.tree.map(_nonempty(jnp.min), tree), initializer=float("inf"))


def tree_size(tree: Any) -> int:
    """Total number of elements of all the leaves (a Python int)."""
    total = 0
    for leaf in jax.tree.leaves(tree):
        total += jnp.size(leaf)
    return total


def tree_conj(tree: Any) -> Any:
    """Complex conjugate of every leaf."""
    return jax.tree.map(jnp.conj, tree)


def tree_real(tree: Any) -> Any:
    """Real part of every leaf."""
    return jax.tree.map(jnp.real, tree)


def _abs_squared(x: Any) -> Any:
    return jnp.square(x.real) + jnp.square(x.imag)


def tree_norm(tree: Any, ord: int | str | float | None = None, squared: bool = False) -> jax.Array:
    r"""Vector norm of a whole tree, as if its leaves were concatenated into one vector.

    $$\|x\|_2 = \Big(\sum_i |x_i|^2\Big)^{1/2},\qquad \|x\|_1 = \sum_i |x_i|,\qquad
    \|x\|_\infty = \max_i |x_i|$$

    Args:
        tree: a tree of (real or complex) arrays.
        ord: default None (the 2-norm); one of None, 2, 1, `jnp.inf`, `"inf"`, `"infinity"`.
        squared: default False; True returns the squared norm.

    Returns:
        A scalar array.

    Raises:
        ValueError: `ord` is none of the accepted orders.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> float(gradtx.tree.norm({"a": jnp.array([3.0]), "b": jnp.array([-4.0])}))
        5.0
    """
    if ord is None or ord == 2:
        sqnorm = tree_sum(jax.tree.map(_abs_squared, tree))
        return jnp.array(sqnorm if squared else jnp.sqrt(sqnorm))
    if ord == 1:
        result = tree_sum(jax.tree.map(jnp.abs, tree))
    elif ord == jnp.inf or ord in ("inf", "infinity"):
        result = tree_max(jax.tree.map(jnp.abs, tree))
    else:
        raise ValueError(f"tree_norm: ord must be None, 1, 2, inf, 'inf' or 'infinity', got {ord!r}")
    return jnp.array(_abs_squared(result) if squared else result)


def tree_batch_shape(tree: Any, shape: tuple[int, ...] = ()) -> Any:
    """Every leaf broadcast to leading batch dimensions `shape` (`shape + leaf.shape`)."""
    return jax.tree.map(lambda x: jnp.broadcast_to(x, (*shape, *jnp.shape(x))), tree)


def tree_zeros_like(tree: Any, dtype: jax.typing.DTypeLike | None = None) -> Any:
    """Zeros with the structure and leaf shapes of `tree` (in `dtype` when given)."""
    return jax.tree.map(lambda x: jnp.zeros_like(x, dtype=dtype), tree)


def tree_ones_like(tree: Any, dtype: jax.typing.DTypeLike | None = None) -> Any:
    """Ones with the structure and leaf shapes of `tree` (in `dtype` when given)."""
    return jax.tree.map(lambda x: jnp.ones_like(x, dtype=dtype), tree)


def tree_full_like(tree: Any, fill_value: jax.typing.ArrayLike, dtype: jax.typing.DTypeLike | None = None) -> Any:
    """Leaves shaped like those of `tree`, filled with `fill_value` (in `dtype` when given)."""
    return jax.tree.map(lambda x: jnp.full_like(x, fill_value, dtype=dtype), tree)


def tree_clip(
    tree: Any, min_value: jax.typing.ArrayLike | None = None, max_value: jax.typing.ArrayLike | None = None
) -> Any:
    """Every leaf clipped to `[min_value, max_value]` (a `None` bound is not applied)."""
    return jax.tree.map(lambda x: jnp.clip(x, min_value, max_value), tree)


def tree_where(condition: Any, tree_x: Any, tree_y: Any) -> Any:
    """`jnp.where(condition, x, y)` leaf by leaf: `tree_x`'s values where `condition` holds."""
    return jax.tree.map(lambda x, y: jnp.where(condition, x, y), tree_x, tree_y)


def tree_allclose(
    a: Any,
    b: Any,
    rtol: jax.typing.ArrayLike = 1e-05,
    atol: jax.typing.ArrayLike = 1e-08,
    equal_nan: bool = False,
) -> Any:
    r"""True when every leaf pair satisfies `jnp.allclose` ($|a - b| \le atol + rtol\,|b|$).

    Args:
        a: a tree.
        b: a tree with the structure of `a`.
        rtol: default 1e-5, the relative tolerance.
        atol: default 1e-8, the absolute tolerance.
        equal_nan: default False; True counts NaNs in the same place as equal.

    Returns:
        A boolean (a scalar array unless the tree has no leaves).
    """
    close = jax.tree.map(lambda x, y: jnp.allclose(x, y, rtol=rtol, atol=atol, equal_nan=equal_nan), a, b)
    return functools.reduce(operator.and_, jax.tree.leaves(close), True)
