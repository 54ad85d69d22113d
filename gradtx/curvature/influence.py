r"""Influence functions: which training examples drive a test loss (Koh & Liang, ICML 2017).

For parameters $\hat\theta$ that minimize the mean training loss
$R(\theta) = \frac1N \sum_{i=1}^N \ell(z_i, \theta)$, upweighting one training example $z$ by
$\varepsilon$ moves the minimizer by $-\varepsilon H^{-1} \nabla\ell(z, \hat\theta)$, with
$H = \nabla^2 R(\hat\theta)$ the Hessian of the *mean* training loss. The first-order change of
a test loss $L_{\text{test}}$ is the influence

$$\mathcal I(z_i) = \frac{d L_{\text{test}}(\hat\theta_{\varepsilon, z_i})}{d\varepsilon}\Big|_{\varepsilon=0} = -\nabla L_{\text{test}}(\hat\theta)^\top (H + \lambda I)^{-1} \nabla \ell(z_i, \hat\theta),$$

Koh & Liang's $\mathcal I_{\text{up,loss}}$, with a damping $\lambda \ge 0$ for Hessians that are
not positive definite (a neural network away from a strict minimum).

**Signs.** $\mathcal I(z_i) > 0$: upweighting $z_i$ *increases* the test loss, the example is
**harmful** to this prediction; $\mathcal I(z_i) < 0$: it is **helpful**. Removing $z_i$ is
upweighting by $\varepsilon = -1/N$, so leave-one-out retraining changes the test loss by about

$$L_{\text{test}}(\hat\theta_{-i}) - L_{\text{test}}(\hat\theta) \approx -\frac{1}{N}\, \mathcal I(z_i)$$

(removing a harmful example lowers the test loss).

**Cost.** [`influence`][gradtx.curvature.influence] solves *one* inverse product
$s = (H + \lambda I)^{-1} \nabla L_{\text{test}}$ per test batch, streaming the training data
through every Hessian-vector product, then makes one more pass over the training data computing
$\mathcal I(z_i) = -\nabla\ell(z_i)^\top s$ for every example. That dot product is the
directional derivative of the per-example loss along $s$, computed in forward mode
(`jax.jvp`) and vmapped over the examples of a batch by one compiled function: exactly the
per-example gradient dotted with $s$, without materializing any per-example gradient.

References:
    Koh & Liang, *Understanding black-box predictions via influence functions*, ICML 2017.
    Cook & Weisberg, *Residuals and Influence in Regression*, Chapman & Hall, 1982.
    Schioppa, Zablotskaia, Vilar & Sokolov, *Scaling up influence functions*, AAAI 2022
    (low-rank Hessian inverses from Krylov eigendecompositions).
"""

import functools
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.flatten_util import ravel_pytree

from gradtx._validation import check_int
from gradtx.curvature.data import (
    Batched,
    as_args,
    batch_size,
    combine_data,
    partition_data,
    static_callable,
)
from gradtx.curvature.lanczos import DEFAULT_NUM_ITERS, lanczos_tridiag, tridiagonal_eigh
from gradtx.curvature.operators import unraveler
from gradtx.curvature.solve import _check_solve_args, inverse_hvp, solve
from gradtx.curvature.streaming import HessianProduct, batch_stream, data_operator, is_streaming

__all__ = ["INFLUENCE_METHODS", "InfluenceReport", "influence"]

INFLUENCE_METHODS = ("cg", "lanczos")
"""The accepted values of `method` for [`influence`][gradtx.curvature.influence]."""

_HIGHEST = lax.Precision.HIGHEST


class InfluenceReport(NamedTuple):
    """The output of [`influence`][gradtx.curvature.influence].

    Attributes:
        influences: `(N,)` $\\mathcal I(z_i) = -\\nabla L_{\\text{test}}^\\top (H + \\lambda I)^{-1}
            \\nabla\\ell(z_i)$ for the training examples in the order the batches yield them
            (positive: harmful, negative: helpful).
        test_loss: $L_{\\text{test}}(\\theta)$, the loss on the test batch (scalar).
        inverse_hvp: $s = (H + \\lambda I)^{-1} \\nabla L_{\\text{test}}$ as computed, a pytree like
            `params` (reuse it for more training examples: $\\mathcal I(z) = -\\nabla\\ell(z)^\\top s$).
        residual_norm: $\\lVert \\nabla L_{\\text{test}} - (H + \\lambda I) s\\rVert$, recomputed
            with one more Hessian-vector product (for both methods).
        relative_residual: `residual_norm / ‖∇L_test‖` (0 when the test gradient is 0).
        iterations: Hessian-vector products in the solver's loop (CG iterations, or Lanczos steps).
        converged: `relative_residual <= tol` (bool).
        negative_curvature: `"cg"`: CG met a direction with $p^\\top (H + \\lambda I) p \\le 0$
            (raise `damping`); `"lanczos"`: a kept Ritz value had $\\theta_j + \\lambda \\le 0$ and
            its direction was left out of the inverse.
        damping: $\\lambda$ (Python float).
    """

    influences: jax.Array
    test_loss: jax.Array
    inverse_hvp: Any
    residual_norm: jax.Array
    relative_residual: jax.Array
    iterations: jax.Array
    converged: jax.Array
    negative_curvature: jax.Array
    damping: float


# ----- the compiled pieces (cached on the loss, the data layout and the shapes) -----


@functools.partial(jax.jit, static_argnames=("loss", "static"))
def _value_and_grad(loss: Callable[..., Any], static: Any, params: Any, arrays: Any) -> Any:
    return jax.value_and_grad(loss)(params, *combine_data(arrays, static))


@functools.partial(jax.jit, static_argnames=("loss", "static", "axes"))
def _example_influences(loss: Callable[..., Any], static: Any, axes: tuple[int | None, ...], params: Any,
                        s: Any, arrays: Any) -> jax.Array:
    """`-∇ℓ(z_i)ᵀ s` for every example of one batch: the per-example loss (the loss on a batch of
    one) differentiated along `s` in forward mode, vmapped over the examples."""

    def one(*parts: Any) -> jax.Array:
        example = [x if a is None else jnp.expand_dims(x, 0) for x, a in zip(parts, axes)]
        batch = combine_data(example, static)
        return jax.jvp(lambda p: loss(p, *batch), (params,), (s,))[1]

    return -jax.vmap(one, in_axes=axes)(*arrays)


@functools.partial(jax.jit, static_argnames=("rank",))
def _low_rank_inverse(alpha: jax.Array, beta: jax.Array, basis: jax.Array, g: jax.Array, damping: jax.Array,
                      rank: int) -> tuple[jax.Array, jax.Array]:
    """`U diag(1/(θ+λ)) Uᵀ g + (I − U Uᵀ) g / λ` from the top `rank` Ritz pairs (complement dropped when λ = 0)."""
    theta, vecs = tridiagonal_eigh(alpha, beta)
    theta, vecs = theta[-rank:], vecs[:, -rank:]
    u = jnp.matmul(vecs.T, basis, precision=_HIGHEST)  # (rank, n), orthonormal rows
    coords = jnp.matmul(u, g, precision=_HIGHEST)
    shifted = theta + damping
    positive = shifted > 0
    x = jnp.matmul(jnp.where(positive, coords / jnp.where(positive, shifted, 1), 0), u, precision=_HIGHEST)
    rest = g - jnp.matmul(coords, u, precision=_HIGHEST)
    x = x + jnp.where(damping > 0, rest / jnp.where(damping > 0, damping, 1), 0)
    return x, ~jnp.all(positive)


# ----- data handling -----


def _example_axes(owner: str, where: str, arrays: list[Any]) -> tuple[tuple[int | None, ...], int]:
    """The vmap axes of a batch's array leaves (0: one row per example; None: shared) and its size."""
    axes = tuple(0 if np.ndim(x) >= 1 else None for x in arrays)
    lengths = {int(np.shape(x)[0]) for x, a in zip(arrays, axes) if a == 0}
    if not lengths:
        raise ValueError(f"{owner}: {where} holds no array with a leading (example) axis")
    if len(lengths) > 1:
        raise ValueError(f"{owner}: every array of {where} must have the same leading length (one row per "
                         f"example), got lengths {sorted(lengths)}")
    return axes, lengths.pop()


def _batched_slices(data: Batched) -> Iterator[tuple[Any, ...]]:
    """The batches a [`Batched`][gradtx.curvature.Batched] data set stands for, sliced on the host."""
    n, b = data.num_examples, data.batch_size
    for start in range(0, n, b):
        rows = slice(start, start + b)
        yield jax.tree.map(lambda x, rows=rows: x[rows] if np.ndim(x) >= 1 else x, data.args)


def _training_stream(owner: str, train_batches: Any) -> Any:
    """`train_batches` as a Batched data set or a replayable factory (a one-shot iterator is read once)."""
    if train_batches is None:
        raise TypeError(f"{owner}: train_batches must be a list of batches, a loader, a generator factory or a "
                        f"Batched data set, got None")
    if isinstance(train_batches, Batched):
        return train_batches
    return batch_stream(owner, train_batches)


def _all_influences(owner: str, loss: Callable[..., Any], params: Any, s: Any, train: Any) -> jax.Array:
    """One pass over the training data: `-∇ℓ(z_i)ᵀ s` for every example, batch by batch."""
    batches = _batched_slices(train) if isinstance(train, Batched) else train()
    parts = []
    for i, batch in enumerate(batches):
        args = as_args(batch)
        try:
            batch_size(args)
        except ValueError as err:
            raise ValueError(f"{owner}: training batch {i}: {err}") from None
        arrays, static = partition_data(args)
        axes, n = _example_axes(owner, f"training batch {i}", arrays)
        if n:  # numpy and JAX batches share one compiled function (jit keys them apart otherwise)
            parts.append(_example_influences(loss, static, axes, params, s, [jnp.asarray(x) for x in arrays]))
    if not parts:
        raise ValueError(f"{owner}: train_batches is empty (no training example); give at least one batch")
    return jnp.concatenate(parts)


def _check_method_args(owner: str, method: Any, num_iters: Any, rank: Any, n: int) -> tuple[int, int]:
    """Validate the Lanczos settings; return `(steps, kept)` clipped to the dimension `n`."""
    if not isinstance(method, str) or method not in INFLUENCE_METHODS:
        raise ValueError(f"{owner}: method must be one of {INFLUENCE_METHODS}, got {method!r}")
    check_int(owner, "num_iters", num_iters, low=1)
    steps = min(int(num_iters), n)
    if rank is None:
        return steps, steps
    check_int(owner, "rank", rank, low=1)
    if rank > num_iters:
        raise ValueError(f"{owner}: rank must be <= num_iters (it keeps the top Ritz pairs of num_iters Lanczos "
                         f"steps), got rank={rank} > num_iters={num_iters}")
    return steps, min(int(rank), steps)


def influence(
    loss: Callable[..., Any],
    params: Any,
    train_batches: Iterable[Any] | Callable[[], Iterator[Any]] | Batched,
    test_batch: Any,
    *,
    damping: float = 0.0,
    method: str = "cg",
    tol: float = 1e-6,
    max_iters: int | None = None,
    num_iters: int = DEFAULT_NUM_ITERS,
    rank: int | None = None,
    key: jax.Array | None = None,
) -> InfluenceReport:
    r"""Influence of every training example on a test loss (Koh & Liang 2017), matrix-free.

    Computes, for each training example $z_i$,

    $$\mathcal I(z_i) = -\nabla L_{\text{test}}(\theta)^\top (H + \lambda I)^{-1} \nabla \ell(z_i, \theta),$$

    where $H$ is the Hessian of the mean training loss (streamed over `train_batches`) and
    $\ell(z_i, \cdot)$ is the loss on a batch holding only $z_i$. Positive: upweighting $z_i$
    raises the test loss (**harmful**); negative: **helpful**. Leave-one-out retraining changes
    the test loss by about $-\mathcal I(z_i)/N$. `params` should be a minimizer of the training
    loss (the derivation assumes $\nabla R(\theta) = 0$).

    **Loss convention.** `loss(params, *batch)` is a scalar, the *mean* over the batch's
    examples (plus any regularizer, which then belongs to every example's loss, e.g.
    `mean(nll) + c‖w‖²`); then the mean of the per-example losses is the training objective.
    Every array of a batch with at least one axis holds one row per example (same leading
    length); 0-d arrays and Python values are passed unchanged to every example.

    **Steps.** (1) The test gradient $g = \nabla L_{\text{test}}$ on `test_batch` (the mean
    test loss; pass one example for one prediction). (2) One inverse product
    $s = (H + \lambda I)^{-1} g$:

    * `method="cg"`: conjugate gradients ([`solve`][gradtx.curvature.solve]) to relative
      residual `tol`, one pass over the training data per iteration; needs $H + \lambda I$
      positive definite (see `report.negative_curvature`).
    * `method="lanczos"`: `num_iters` Lanczos steps from a random start give Ritz pairs
      $(\theta_j, u_j)$ of $H$; the top `rank` of them form the low-rank-plus-damping inverse
      $(H + \lambda I)^{-1} \approx \sum_{j=1}^{k} u_j u_j^\top / (\theta_j + \lambda) + (I - \sum_{j=1}^{k} u_j u_j^\top) / \lambda$.
      It is exact when the $u_j$ span the eigenvectors of every non-zero eigenvalue of $H$
      (`num_iters` ≥ the parameter count, or $H$ of rank ≤ `rank` found exactly); otherwise it
      treats the curvature outside the top-$k$ space as zero, so it over-weights those
      directions by $1/\lambda$ instead of $1/(\theta + \lambda)$. With `damping=0` the second
      term is dropped (the inverse restricted to the top-$k$ space, as in Schioppa et al. 2022).
      Ritz values with $\theta_j + \lambda \le 0$ are left out. It costs exactly `num_iters`
      Hessian-vector products (plus one for the residual), however ill-conditioned $H$ is.

    (3) One more pass over the training data: $\mathcal I(z_i) = -\nabla\ell(z_i)^\top s$ for
    every example, as a forward-mode directional derivative vmapped over each batch (one
    compiled function per batch shape).

    Not for use under `jax.jit` (the training data are iterated on the host).

    Args:
        loss: scalar function `loss(params, *batch)`, the mean over the batch's examples.
        params: the trained parameters θ, a pytree of float arrays.
        train_batches: the training set: a list/tuple of batches (each a tuple of the loss's
            arguments, or one argument), a re-iterable loader, a generator factory (a
            zero-argument callable returning a fresh iterator; called once per pass), a one-shot
            iterator (read once into host memory), or a [`Batched`][gradtx.curvature.Batched]
            in-memory data set (its Hessian products swept by `lax.scan`). The Hessian is that of
            the batch-size-weighted mean loss.
        test_batch: one batch for the test loss (a tuple of the loss's arguments, or one
            argument), with at least one example.
        damping: $\lambda \ge 0$. Default 0 (fine for a strictly convex, e.g. L2-regularized,
            loss; Koh & Liang add a small damping for neural networks).
        method: `"cg"` or `"lanczos"`. Default `"cg"`.
        tol: relative residual tolerance `> 0` of the inverse product: CG stops there, and
            `report.converged` is `relative_residual <= tol` for both methods. Default `1e-6`.
        max_iters: `"cg"`: maximum iterations, an int `>= 1`, or None for 10 × the parameter
            count. Default None.
        num_iters: `"lanczos"`: Lanczos steps (Hessian-vector products), an int `>= 1`, clipped
            to the parameter count. Default 100.
        rank: `"lanczos"`: the number $k$ of top Ritz pairs kept, `1 <= rank <= num_iters`, or
            None for all of them. Default None.
        key: `"lanczos"`: PRNG key of the random start vector. Default None (`PRNGKey(0)`).

    Returns:
        An [`InfluenceReport`][gradtx.curvature.InfluenceReport]: `influences (N,)` in the order
        of the training examples, the test loss, $s$, the recomputed residual
        $\lVert g - (H + \lambda I) s\rVert$ and its relative value, the iterations,
        `converged`, the negative-curvature flag and the damping.

    Raises:
        ValueError: `damping < 0`, `tol <= 0`, `method` not in `("cg", "lanczos")`,
            `max_iters`/`num_iters`/`rank` < 1, `rank > num_iters`, empty training data or
            test batch, a batch without a leading (example) axis or with mismatched leading
            lengths.
        TypeError: `loss` not callable, `train_batches` not a stream or `Batched`, an integer
            argument that is not an int.

    References:
        Koh & Liang, *Understanding black-box predictions via influence functions*, ICML 2017;
        Cook & Weisberg, *Residuals and Influence in Regression*, 1982; Schioppa et al.,
        *Scaling up influence functions*, AAAI 2022.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.curvature import influence
        >>> x = jnp.array([[1.0], [2.0], [3.0]]); y = jnp.array([1.0, 2.0, 2.0])
        >>> loss = lambda w, x, y: jnp.mean((x @ w - y) ** 2) / 2
        >>> w = jnp.linalg.lstsq(x, y)[0]  # the minimizer
        >>> report = influence(loss, w, [(x, y)], (x[2:], jnp.array([4.0])))
        >>> [round(float(i), 3) for i in report.influences]  # the third point is harmful
        [-0.226, -0.905, 1.132]
    """
    owner = "influence"
    loss = static_callable(owner, "loss", loss)
    if not isinstance(method, str) or method not in INFLUENCE_METHODS:
        raise ValueError(f"{owner}: method must be one of {INFLUENCE_METHODS}, got {method!r}")
    _check_solve_args(owner, "cg", damping, tol, max_iters)
    leaves = jax.tree.leaves(params)
    if not leaves:
        raise ValueError(f"{owner}: params has no leaves")
    flat, _ = ravel_pytree(params)
    if not jnp.issubdtype(flat.dtype, jnp.floating):
        raise TypeError(f"{owner}: params must hold floating-point arrays, got dtype {flat.dtype}")
    steps, kept = _check_method_args(owner, method, num_iters, rank, int(flat.size))
    train = _training_stream(owner, train_batches)

    test_args = as_args(test_batch)
    test_arrays, test_static = partition_data(test_args)
    _, n_test = _example_axes(owner, "test_batch", test_arrays)
    if n_test == 0:
        raise ValueError(f"{owner}: test_batch is empty (leading length 0); give at least one test example")
    test_loss, g = _value_and_grad(loss, test_static, params, test_arrays)

    if method == "cg":
        if isinstance(train, Batched):  # one compiled solve, the batches swept by lax.scan
            s, rep = inverse_hvp(loss, params, g, damping=damping, tol=tol, max_iters=max_iters,
                                 batches=train)  # type: ignore[arg-type]
        else:
            op = data_operator(owner, HessianProduct(loss), params, (), train)
            s, rep = solve(op, g, method="cg", damping=damping, tol=tol, max_iters=max_iters)
        residual, relative, iterations, negative = (rep.residual_norm, rep.relative_residual, rep.iterations,
                                                    rep.negative_curvature)
    else:
        op = data_operator(owner, HessianProduct(loss), params, (), train)
        res = lanczos_tridiag(op, params, num_iters=steps, key=key)
        dtype = res.basis.dtype
        g_flat = ravel_pytree(g)[0].astype(dtype)
        s_flat, negative = _low_rank_inverse(res.alpha, res.beta, res.basis, g_flat, jnp.asarray(damping, dtype),
                                             rank=kept)
        s = unraveler(params)(s_flat)
        hs = op(s) if is_streaming(op) else jax.jit(op)(s)
        r = g_flat - ravel_pytree(hs)[0].astype(dtype) - damping * s_flat
        residual = jnp.linalg.norm(r)
        g_norm = jnp.linalg.norm(g_flat)
        relative = jnp.where(g_norm > 0, residual / jnp.where(g_norm > 0, g_norm, 1), 0)
        iterations = jnp.asarray(steps, jnp.int32)

    influences = _all_influences(owner, loss, params, s, train)
    return InfluenceReport(
        influences=influences,
        test_loss=test_loss,
        inverse_hvp=s,
        residual_norm=residual,
        relative_residual=relative,
        iterations=iterations,
        converged=relative <= jnp.asarray(tol, relative.dtype),
        negative_curvature=negative,
        damping=float(damping),
    )
