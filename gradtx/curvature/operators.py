"""Matrix-free curvature operators: Hessian- and Gauss-Newton-vector products on pytrees.

All functions take params and vectors as pytrees of the same structure and return pytrees of
that structure; none of them forms a matrix. They are pure JAX and can be called inside
`jax.jit`, `jax.vmap` and `lax` loops.
"""

import functools
from collections.abc import Callable, Iterable
from typing import Any

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from gradtx.curvature.data import (
    Batched,
    as_args,
    bind_loss,
    combine_data,
    loss_from_parts,
    partition_data,
    prepare_data,
    static_callable,
)
from gradtx.curvature.streaming import (
    HessianProduct,
    data_operator,
    is_streaming,
    streamed_hessian,
)

__all__ = [
    "GaussNewtonProduct",
    "bound_hessian_operator",
    "flatten_operator",
    "gauss_newton_operator",
    "gnvp",
    "hessian_operator",
    "hvp",
    "unraveler",
]

Matvec = Callable[[Any], Any]


def flatten_operator(matvec: Matvec, template: Any) -> tuple[Callable[[jax.Array], jax.Array], int, Any, Callable[[jax.Array], Any]]:
    """View a pytree linear map as a map on flat vectors.

    Args:
        matvec: linear map on pytrees shaped like `template`.
        template: a pytree of floating-point arrays.

    Returns:
        `(mv, n, dtype, unravel)`: `mv` maps flat `(n,)` vectors (coordinates of
        `jax.flatten_util.ravel_pytree(template)`) to flat vectors of `dtype`, the template's
        floating dtype promoted to at least float32 (so Lanczos and trace estimates of
        bfloat16/float16 models run in float32); `unravel` maps a flat vector back to a pytree
        with the template's leaf dtypes. For a
        [`StreamingOperator`][gradtx.curvature.StreamingOperator] `mv` is its flat streaming
        form (host level: iterate with [`krylov_loop`][gradtx.curvature.krylov_loop]).

    Raises:
        TypeError: when the template's leaves are not floating point.
    """
    flat, _ = ravel_pytree(template)
    if not jnp.issubdtype(flat.dtype, jnp.floating):
        raise TypeError(f"the params/template must hold floating-point arrays, got dtype {flat.dtype}")
    dtype = jnp.promote_types(flat.dtype, jnp.float32)
    unravel = unraveler(template)
    if is_streaming(matvec) and hasattr(matvec, "flat"):
        # a host-level operator: its flat form streams too (unravel/ravel run inside the per-batch jit)
        return matvec.flat(dtype), int(flat.size), dtype, unravel

    def mv(x: jax.Array) -> jax.Array:
        out, _ = ravel_pytree(matvec(unravel(x)))
        return out.astype(dtype)

    return mv, int(flat.size), dtype, unravel


def unraveler(template: Any) -> Callable[[jax.Array], Any]:
    """Map a flat vector (coordinates of `ravel_pytree(template)`) to a pytree with the template's leaf dtypes."""
    _, unravel_raw = ravel_pytree(template)
    leaf_dtypes = [jnp.result_type(x) for x in jax.tree.leaves(template)]

    def unravel(x: jax.Array) -> Any:
        tree = unravel_raw(x)
        leaves, treedef = jax.tree.flatten(tree)
        return jax.tree.unflatten(treedef, [leaf.astype(dt) for leaf, dt in zip(leaves, leaf_dtypes)])

    return unravel


def bound_hessian_operator(loss: Callable[..., Any], params: Any, arrays: Any, static: Any, weights: tuple[float, ...]) -> tuple[Any, Matvec]:
    """`(∇L(θ), v ↦ ∇²L(θ) v)` for a loss bound to data split by `data.partition_data` (traceable).

    For a [`Batched`][gradtx.curvature.Batched] data set the gradient and every product are
    `lax.scan` sweeps over its batches (one batch's activations in memory at a time).
    """
    data = combine_data(arrays, static)
    if isinstance(data, Batched):
        product = HessianProduct(loss)
        grad = data.mean(lambda *b: jax.grad(loss)(params, *b))
        return grad, lambda v: data.mean(lambda *b: product(params, v, *b))
    f = loss_from_parts(loss, arrays, static, weights)
    return jax.linearize(jax.grad(f), params)


def _match_tangent(owner: str, params: Any, v: Any) -> Any:
    """Check that `v` has the structure and shapes of `params`; cast its leaves to their dtypes."""
    p_def = jax.tree_util.tree_structure(params)
    v_def = jax.tree_util.tree_structure(v)
    if p_def != v_def:
        raise ValueError(
            f"{owner}: the vector must have the tree structure of params.\nparams: {p_def}\nvector: {v_def}"
        )
    out = []
    for (path, p), x in zip(jax.tree_util.tree_flatten_with_path(params)[0], jax.tree_util.tree_leaves(v)):
        if jnp.shape(p) != jnp.shape(x):
            raise ValueError(
                f"{owner}: shape mismatch at {jax.tree_util.keystr(path)}: params {jnp.shape(p)} vs "
                f"vector {jnp.shape(x)}"
            )
        out.append(jnp.asarray(x).astype(jnp.result_type(p)))
    return jax.tree_util.tree_unflatten(p_def, out)


def hvp(loss: Callable[..., Any], params: Any, v: Any, *args: Any, batches: Iterable[Any] | None = None) -> Any:
    """Exact Hessian-vector product `H(θ)·v` by forward-over-reverse differentiation.

    Computes `∇²L(θ) v = d/dε ∇L(θ + ε v) |_{ε=0}` as the JVP of the gradient (Pearlmutter's
    R-operator), at the cost of about one forward and one backward pass, without forming `H`.

    Args:
        loss: scalar function `loss(params, *args)`.
        params: the point θ, a pytree of float arrays.
        v: the direction, a pytree with the structure and shapes of `params` (leaves are cast to
            the params' dtypes).
        *args: one batch of data passed to `loss`.
        batches: instead of `*args`, the data set: a stream of batches (each a tuple of `loss`'s
            arguments) — a list, a re-iterable loader or a generator factory, streamed through
            one compiled per-batch product (see
            [`gradtx.curvature.streaming`][gradtx.curvature.streaming]) — or a
            [`Batched`][gradtx.curvature.Batched] in-memory data set, swept by `lax.scan`. The
            product is then with the Hessian of the batch-size-weighted average loss (see
            [`gradtx.curvature.data`][gradtx.curvature.data]). Default None.

    Returns:
        `H·v`, a pytree like `params`.

    References:
        Pearlmutter, *Fast exact multiplication by the Hessian*, Neural Computation 6(1), 1994.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.curvature import hvp
        >>> hvp(lambda x: jnp.sum(x**3), jnp.array([1.0, 2.0]), jnp.array([1.0, 0.0]))
        Array([6., 0.], dtype=float32)
    """
    loss = static_callable("hvp", "loss", loss)
    streamed = streamed_hessian("hvp", loss, params, args, batches)
    if streamed is not None:
        return streamed(_match_tangent("hvp", params, v))
    data, weights = prepare_data("hvp", args, batches)
    v = _match_tangent("hvp", params, v)
    arrays, static = partition_data(data)
    return _hvp_core(loss, params, v, arrays, static, weights)


@functools.partial(jax.jit, static_argnames=("loss", "static", "weights"))
def _hvp_core(loss, params, v, arrays, static, weights):
    f = loss_from_parts(loss, arrays, static, weights)
    return jax.jvp(jax.grad(f), (params,), (v,))[1]


def hessian_operator(loss: Callable[..., Any], params: Any, *args: Any, batches: Iterable[Any] | None = None) -> Matvec:
    """The Hessian at `params` as a linear map `v ↦ H(θ)·v` on pytrees.

    The gradient map `θ ↦ ∇L(θ)` is linearized once with `jax.linearize`, so the forward pass
    and the residuals of the backward pass are computed once and each product afterwards costs
    one linear (tangent) pass. Use it when many products are needed at the same point (Lanczos,
    trace estimation, conjugate gradients). Memory: the residuals of one forward-backward pass
    are kept alive as long as the operator is.

    It can be built and applied inside `jax.jit` (and the operator can be `jax.vmap`-ed over a
    leading axis of `v`).

    Args:
        loss: scalar function `loss(params, *args)`.
        params: the point θ, a pytree of float arrays.
        *args: one batch of data passed to `loss`.
        batches: instead of `*args`, the data set; the operator is the Hessian of the
            batch-size-weighted average loss. A stream (list, loader, generator factory) gives a
            [`StreamingOperator`][gradtx.curvature.StreamingOperator]: each product is one pass
            over the data, on the host (call it outside `jax.jit`); a
            [`Batched`][gradtx.curvature.Batched] data set gives a traceable operator whose
            products sweep the batches with `lax.scan` (nothing is linearized ahead: each product
            recomputes the per-batch forward pass, so memory stays that of one batch). Default None.

    Returns:
        `matvec(v) -> H·v`, with `v` and the result pytrees like `params`.

    References:
        Pearlmutter, *Fast exact multiplication by the Hessian*, Neural Computation 6(1), 1994.
    """
    owner = "hessian_operator"
    if not callable(loss):
        raise TypeError(f"{owner}: loss must be a callable loss(params, *args), got {type(loss).__name__}")
    if batches is not None:
        return data_operator(owner, HessianProduct(static_callable(owner, "loss", loss)), params, args, batches)
    f = bind_loss(owner, loss, args, batches)
    _, lin = jax.linearize(jax.grad(f), params)

    def matvec(v: Any) -> Any:
        return lin(_match_tangent("hessian_operator", params, v))

    return matvec


def _gn_single(model_fn: Callable[..., Any], loss_fn: Callable[[Any, Any], Any], params: Any, args: tuple[Any, ...]) -> Matvec:
    if len(args) < 1:
        raise ValueError(
            "gauss_newton_operator: a batch must hold at least the targets: args = (*inputs, targets), "
            "passed as model_fn(params, *inputs) and loss_fn(outputs, targets)"
        )
    *inputs, targets = args
    outputs, jvp_fn = jax.linearize(lambda p: model_fn(p, *inputs), params)
    vjp_fn = jax.linear_transpose(jvp_fn, params)
    _, out_hess = jax.linearize(jax.grad(lambda o: loss_fn(o, targets)), outputs)

    def matvec(v: Any) -> Any:
        (out,) = vjp_fn(out_hess(jvp_fn(v)))
        return out

    return matvec


class GaussNewtonProduct:
    """The per-batch Gauss-Newton product `(params, v, *batch) ↦ Jᵀ H_ℓ J v` (hashed by the two functions)."""

    __slots__ = ("loss_fn", "model_fn")

    def __init__(self, model_fn: Callable[..., Any], loss_fn: Callable[[Any, Any], Any]):
        self.model_fn = model_fn
        self.loss_fn = loss_fn

    def __call__(self, params: Any, v: Any, *batch: Any) -> Any:
        v = jax.tree.map(lambda p, x: x.astype(jnp.result_type(p)), params, v)
        return _gn_single(self.model_fn, self.loss_fn, params, batch)(v)

    def __hash__(self) -> int:
        return hash((GaussNewtonProduct, self.model_fn, self.loss_fn))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GaussNewtonProduct) and (other.model_fn, other.loss_fn) == (self.model_fn, self.loss_fn)


def gauss_newton_operator(
    model_fn: Callable[..., Any],
    loss_fn: Callable[[Any, Any], Any],
    params: Any,
    *args: Any,
    batches: Iterable[Any] | None = None,
) -> Matvec:
    """The generalized Gauss-Newton matrix as a linear map `v ↦ G(θ)·v` on pytrees.

    For a loss written as `L(θ) = ℓ(f(θ, x), y)`, with model outputs `z = f(θ, x)`,

    $$G = J^\\top H_\\ell J, \\qquad J = \\partial z / \\partial θ, \\quad H_\\ell = \\nabla_z^2 \\ell(z, y),$$

    which drops the second-derivative-of-the-model term of the Hessian. `G` is positive
    semi-definite whenever `ℓ` is convex in `z` (squared error, softmax cross-entropy on logits).
    A product costs one JVP of the model, one HVP of `ℓ` in output space and one VJP; the model is
    linearized once, when the operator is built.

    Signature convention: a batch is `args = (*inputs, targets)`; the model is called as
    `model_fn(params, *inputs)` and the loss as `loss_fn(outputs, targets)`, where `outputs` may be
    any pytree.

    Args:
        model_fn: `model_fn(params, *inputs) -> outputs`.
        loss_fn: scalar `loss_fn(outputs, targets)` (typically a mean over the batch).
        params: the point θ, a pytree of float arrays.
        *args: one batch, `(*inputs, targets)`.
        batches: instead of `*args`, the data set of batches `(*inputs, targets)` (a stream: list,
            loader, generator factory, giving a
            [`StreamingOperator`][gradtx.curvature.StreamingOperator]; or a
            [`Batched`][gradtx.curvature.Batched] data set, swept by `lax.scan`); the operator is
            `Σ_i (n_i/N) G_i`, the Gauss-Newton matrix of the batch-size-weighted average loss.
            Default None.

    Returns:
        `matvec(v) -> G·v`, with `v` and the result pytrees like `params`.

    References:
        Schraudolph, *Fast curvature matrix-vector products for second-order gradient descent*,
        Neural Computation 14(7), 2002. Martens, *New insights and perspectives on the natural
        gradient method*, JMLR 21, 2020.
    """
    owner = "gauss_newton_operator"
    if not callable(model_fn) or not callable(loss_fn):
        raise TypeError(f"{owner}: model_fn and loss_fn must be callables")
    if batches is not None:
        product = GaussNewtonProduct(static_callable(owner, "model_fn", model_fn), static_callable(owner, "loss_fn", loss_fn))
        return data_operator(owner, product, params, args, batches)
    data, weights = prepare_data(owner, args, batches)
    return _gn_operator(model_fn, loss_fn, params, data, weights)


def _gn_operator(model_fn: Callable[..., Any], loss_fn: Callable[[Any, Any], Any], params: Any,
                 data: tuple[tuple[Any, ...], ...], weights: tuple[float, ...]) -> Matvec:
    """`Σ_i w_i G_i` for the batches in `data` (each `(*inputs, targets)`)."""
    parts = [(w, _gn_single(model_fn, loss_fn, params, as_args(a))) for a, w in zip(data, weights)]

    def matvec(v: Any) -> Any:
        v = _match_tangent("gauss_newton_operator", params, v)
        total = None
        for w, op in parts:
            term = jax.tree.map(lambda x, w=w: w * x, op(v)) if len(parts) > 1 else op(v)
            total = term if total is None else jax.tree.map(jnp.add, total, term)
        return total

    return matvec


@functools.partial(jax.jit, static_argnames=("model_fn", "loss_fn", "static", "weights"))
def _gnvp_core(model_fn, loss_fn, params, v, arrays, static, weights):
    return _gn_operator(model_fn, loss_fn, params, combine_data(arrays, static), weights)(v)


def gnvp(
    model_fn: Callable[..., Any],
    loss_fn: Callable[[Any, Any], Any],
    params: Any,
    v: Any,
    *args: Any,
    batches: Iterable[Any] | None = None,
) -> Any:
    """One Gauss-Newton-vector product `G(θ)·v = Jᵀ H_ℓ J v`.

    Same conventions as [`gauss_newton_operator`][gradtx.curvature.gauss_newton_operator]:
    `args = (*inputs, targets)`, `outputs = model_fn(params, *inputs)`,
    `loss = loss_fn(outputs, targets)`.

    Args:
        model_fn: `model_fn(params, *inputs) -> outputs`.
        loss_fn: scalar `loss_fn(outputs, targets)`.
        params: the point θ.
        v: the direction, a pytree like `params`.
        *args: one batch `(*inputs, targets)`.
        batches: instead of `*args`, a stream of batches or a
            [`Batched`][gradtx.curvature.Batched] data set (batch-size-weighted, see
            [`gauss_newton_operator`][gradtx.curvature.gauss_newton_operator]). Default None.

    Returns:
        `G·v`, a pytree like `params`.

    References:
        Schraudolph, *Fast curvature matrix-vector products for second-order gradient descent*,
        Neural Computation 14(7), 2002.
    """
    owner = "gnvp"
    model_fn = static_callable(owner, "model_fn", model_fn)
    loss_fn = static_callable(owner, "loss_fn", loss_fn)
    if batches is not None:
        return data_operator(owner, GaussNewtonProduct(model_fn, loss_fn), params, args, batches)(
            _match_tangent(owner, params, v))
    data, weights = prepare_data(owner, args, batches)
    if any(len(a) < 1 for a in data):
        raise ValueError(f"{owner}: a batch must hold at least the targets: args = (*inputs, targets)")
    v = _match_tangent(owner, params, v)
    arrays, static = partition_data(data)
    return _gnvp_core(model_fn, loss_fn, params, v, arrays, static, weights)
