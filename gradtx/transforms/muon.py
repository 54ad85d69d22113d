r"""Muon's rescaling: momentum orthogonalised by a Newton–Schulz iteration.

[`scale_by_muon`][gradtx.contrib.scale_by_muon] follows `optax.contrib.scale_by_muon` 0.2.8's
numbers bit for bit for float32 inputs under `jax.jit`, with the same state `MuonState(count, mu,
ns_coeffs)`. The names live in `gradtx.contrib`, as in optax.
"""

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx import _validation as _v
from gradtx.base import EmptyState, GradientTransformation, Updates, describe
from gradtx.numerics import bias_correction, safe_increment, tree_zeros_like, update_moment

__all__ = ["MuonDimensionNumbers", "MuonState", "scale_by_muon"]

PRECONDITIONINGS = ("frobenius", "spectral", "aol", "schatten")
DEFAULT_NS_COEFFS = (3.4445, -4.7750, 2.0315)
NS_COEFFS_PRESETS: dict[str, Any] = {
    "standard": DEFAULT_NS_COEFFS,
    "dion": [
        (4.0848, -6.8946, 2.9270),
        (3.9505, -6.3029, 2.6377),
        (3.7418, -5.5913, 2.3037),
        (2.8769, -3.1427, 1.2046),
        (2.8366, -3.0525, 1.2012),
    ],
}


class MuonDimensionNumbers(NamedTuple):
    r"""Which axes of a weight Muon treats as the matrix (optax's class).

    A weight used as $y = x W$ has its reduction (input) axes and its output axes; every other
    axis is a batch axis, and each batch entry is orthogonalised on its own. The default,
    `(reduction_axis=0, output_axis=1)`, is a plain 2-D matrix. Several axes may be named
    (a sequence of ints): they are flattened into one.
    """

    reduction_axis: Sequence[int] | int = 0
    output_axis: Sequence[int] | int = 1


class MuonState(NamedTuple):
    """State of [`scale_by_muon`][gradtx.contrib.scale_by_muon] (optax's layout).

    `count` is the int32 number of updates; `mu` the momentum (shaped like the params, in
    `mu_dtype` if given); `ns_coeffs` the Newton–Schulz coefficients, `(3,)` or `(n, 3)`.
    """

    count: jax.Array  # type: ignore[assignment]  # optax's field name (shadows tuple.count)
    mu: Updates
    ns_coeffs: jax.typing.ArrayLike


def is_dim_nums(x: Any) -> bool:
    return isinstance(x, MuonDimensionNumbers)


def _axes(x: jax.Array, dim_nums: MuonDimensionNumbers) -> tuple[tuple[int, ...], tuple[int, ...]]:
    red = (dim_nums.reduction_axis,) if isinstance(dim_nums.reduction_axis, int) else dim_nums.reduction_axis
    out = (dim_nums.output_axis,) if isinstance(dim_nums.output_axis, int) else dim_nums.output_axis
    return tuple(a % x.ndim for a in red), tuple(a % x.ndim for a in out)


def _reshapers(x: jax.Array, dim_nums: MuonDimensionNumbers) -> tuple[Callable, Callable]:
    """Maps to `(batch, fan_in, fan_out)` and back."""
    if x.ndim < 2:
        raise ValueError(f"Muon optimized parameters must have rank >= 2, got x.ndim={x.ndim} (shape {x.shape})")
    red, out = _axes(x, dim_nums)
    if set(red) & set(out):
        raise ValueError(
            f"Muon: the reduction axes {red} and output axes {out} must be disjoint "
            f"(dimension numbers {dim_nums}, shape {x.shape})"
        )
    batch = tuple(sorted(set(range(x.ndim)) - set(red) - set(out)))
    perm = batch + red + out
    inverse = tuple(sorted(range(x.ndim), key=lambda i: perm[i]))

    def sizes(axes: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(x.shape[a] for a in axes)

    flat = (math.prod(sizes(batch)), math.prod(sizes(red)), math.prod(sizes(out)))
    unflat = sizes(batch) + sizes(red) + sizes(out)
    return (lambda y: y.transpose(perm).reshape(flat)), (lambda y: y.reshape(unflat).transpose(inverse))


def fans(x: jax.Array, dim_nums: MuonDimensionNumbers) -> tuple[int, int]:
    red, out = _axes(x, dim_nums)
    return math.prod(x.shape[a] for a in red), math.prod(x.shape[a] for a in out)


def _ns_step(x: jax.Array, c: jax.Array) -> jax.Array:
    # X <- c0 X + (c1 A + c2 A A) X with A = X X^H (optax's operation order)
    a = x @ x.T.conj()
    b = c[1] * a + c[2] * a @ a
    return c[0] * x + b @ x


def _aol_first_step(x: jax.Array, c: jax.Array, eps: float = 1e-8) -> jax.Array:
    # rows rescaled by the root of their absolute row sums of X X^H (Almost Orthogonal Layer)
    a = x @ x.T.conj()
    s = jnp.expand_dims(jax.lax.rsqrt(jnp.clip(jnp.abs(a).sum(axis=-1), min=eps)), -1)
    x, a = x * s, a * s * s.transpose(-1, -2)
    b = c[1] * a + c[2] * a @ a
    return c[0] * x + b @ x


def _schatten_first_step(x: jax.Array, c: jax.Array, eps: float = 1e-8) -> jax.Array:
    # X scaled by the root of the Frobenius norm of X X^T (a Schatten-4 norm bound)
    a = x @ x.T
    s = jnp.expand_dims(jax.lax.rsqrt(jnp.clip(jnp.linalg.norm(a, ord="fro", axis=(-2, -1)), min=eps)), (0, -1))
    x, a = x * s, a * s**2
    b = c[1] * a + c[2] * a @ a
    return c[0] * x + b @ x


def _iterator(preconditioning: str) -> Callable:
    first = {"aol": _aol_first_step, "schatten": _schatten_first_step}.get(preconditioning)
    if first is None:
        return lambda i, x, c: _ns_step(x, c)
    return lambda i, x, c: jax.lax.cond(i == 0, lambda y: first(y, c), lambda y: _ns_step(y, c), x)


def orthogonalize(
    x: jax.Array,
    ns_coeffs: jax.Array,
    ns_steps: int = 5,
    preconditioning: str = "frobenius",
    eps: float = 1e-8,
    dimension_numbers: MuonDimensionNumbers | None = None,
) -> jax.Array:
    """Approximately orthogonalise `x` (its batch of matrices) by a quintic Newton–Schulz iteration."""
    if x.ndim != 2 and not is_dim_nums(dimension_numbers):
        raise ValueError(
            f"Muon: a leaf of shape {x.shape} is not a matrix; give its MuonDimensionNumbers "
            f"(got dimension_numbers={dimension_numbers!r})"
        )
    if x.ndim == 2:
        dimension_numbers = MuonDimensionNumbers(0, 1)
    assert dimension_numbers is not None
    step = _iterator(preconditioning)

    def one(m: jax.Array) -> jax.Array:
        transposed = m.shape[0] > m.shape[1]
        if transposed:
            m = m.T
        if preconditioning == "frobenius":
            m /= jnp.linalg.norm(m, ord="fro") + eps
        elif preconditioning == "spectral":
            m /= jnp.linalg.norm(m, ord=2) + eps
        c = ns_coeffs.astype(m.dtype)
        if c.ndim == 1:
            m = jax.lax.fori_loop(0, ns_steps, lambda i, y: step(i, y, c), m, unroll=True)
        else:

            def body(carry, ci):
                i, y = carry
                return (i + 1, step(i, y, ci)), None

            (_, m), _ = jax.lax.scan(body, (jnp.asarray(0, jnp.int32), m), c)
        return m.T if transposed else m

    flatten, unflatten = _reshapers(x, dimension_numbers)
    return unflatten(jax.vmap(one)(flatten(x)))


def resolve(dim_nums: Any, updates: Any) -> Any:
    """The tree of dimension numbers for `updates`; None means a plain matrix at every leaf.

    (optax documents None so but, for a tree of several leaves, fails to map it; gradtx gives
    every leaf the default `MuonDimensionNumbers()`: the same numbers wherever optax runs.)
    """
    resolved = dim_nums(updates) if callable(dim_nums) else dim_nums
    if resolved is None:
        return jax.tree.map(lambda _: MuonDimensionNumbers(), updates)
    return resolved


def check_ns(owner: str, ns_coeffs: Any, ns_steps: Any, preconditioning: Any) -> None:
    _v.check_int(owner, "ns_steps", ns_steps, low=1)
    if preconditioning not in PRECONDITIONINGS:
        raise ValueError(f"{owner}: preconditioning must be one of {PRECONDITIONINGS}, got {preconditioning!r}")
    shape = jnp.shape(jnp.asarray(ns_coeffs))
    if len(shape) not in (1, 2) or shape[-1] != 3:
        raise ValueError(f"{owner}: ns_coeffs must have shape (3,) or (n, 3), got shape {shape}")
    if len(shape) == 2 and not _v.is_traced(ns_steps) and shape[0] > ns_steps:
        # optax's rule: the last ns_steps rows are used, and there must be no more rows than steps
        raise ValueError(f"{owner}: ns_coeffs has {shape[0]} rows, more than ns_steps={ns_steps}")


@describe
def scale_by_muon(
    ns_coeffs: Any = DEFAULT_NS_COEFFS,
    ns_steps: int = 5,
    beta: float = 0.95,
    eps: float = 1e-8,
    mu_dtype: Any = None,
    *,
    nesterov: bool = True,
    adaptive: bool = False,
    preconditioning: str = "frobenius",
    weight_dimension_numbers: Any = None,
) -> GradientTransformation:
    r"""Muon's rescaling: a debiased (Nesterov) momentum, orthogonalised by Newton–Schulz.

    $$m_t = \beta m_{t-1} + (1-\beta) g_t,\qquad
      \hat m_t = \beta\,\frac{m_t}{1-\beta^{t+1}} + (1-\beta)\,\frac{g_t}{1-\beta^{t}}$$

    ($\hat m_t = m_t/(1-\beta^t)$ without Nesterov), then, for each matrix (the smaller side
    first), $X_0 = \hat m_t / (\lVert \hat m_t\rVert_F + \epsilon)$ and `ns_steps` times

    $$X \leftarrow a X + (b A + c A^2) X,\qquad A = X X^{\mathsf H},$$

    which drives every singular value towards about 1: $u_t \approx U V^{\mathsf H}$ for
    $\hat m_t = U \Sigma V^{\mathsf H}$. With `adaptive=True`, $u_t$ is multiplied by
    $\langle \hat m_t, u_t\rangle$ (the dual norm). Every leaf must be a matrix, or have its
    `MuonDimensionNumbers` in `weight_dimension_numbers`; [`muon`][gradtx.contrib.muon] sends
    the other leaves to AdamW.

    Args:
        ns_coeffs: the coefficients $(a, b, c)$, default `(3.4445, -4.7750, 2.0315)`; or one
            triple per step, shape `(n, 3)` with `n <= ns_steps` (then `n` steps are taken).
        ns_steps: the number of Newton–Schulz steps, an integer `>= 1`; default 5.
        beta: $\beta$, the momentum decay, in `[0, 1)`; default 0.95.
        eps: $\epsilon$ `>= 0`, default 1e-8.
        mu_dtype: dtype of the momentum, or None (default: the params' dtype).
        nesterov: Nesterov's form of the momentum (default True).
        adaptive: scale by the dual norm (default False).
        preconditioning: the scaling before the iteration: `"frobenius"` (default),
            `"spectral"`, `"aol"` (Almost-Orthogonal-Layer rescaling in the first step) or
            `"schatten"` (Schatten-4 norm in the first step).
        weight_dimension_numbers: a tree of `MuonDimensionNumbers` matching the params (or a
            function of the updates returning one); None (default) means every leaf is a matrix
            (optax 0.2.8 accepts None only for a single array; gradtx also for a tree).

    Returns:
        A `GradientTransformation` with state `MuonState(count, mu, ns_coeffs)`.

    References:
        Jordan, *modded-nanogpt*, 2024 (github.com/KellerJordan/modded-nanogpt); Bernstein &
        Newhouse, *Old Optimizer, New Norm: An Anthology* (arXiv:2409.20325), 2024; Boissin et
        al., *Turbo-Muon* (arXiv:2512.04632), 2025; Grishina et al., *Accelerating Newton-Schulz
        Iteration for Orthogonalization via Chebyshev-type Polynomials* (arXiv:2506.10935), 2025.
    """
    owner = "scale_by_muon"
    check_ns(owner, ns_coeffs, ns_steps, preconditioning)
    _v.check_real(owner, "beta", beta, low=0.0, high=1.0, high_inclusive=False)
    _v.check_real(owner, "eps", eps, low=0.0)
    _v.check_dtype(owner, "mu_dtype", mu_dtype)
    _v.check_bool(owner, "nesterov", nesterov)
    _v.check_bool(owner, "adaptive", adaptive)
    dtype = None if mu_dtype is None else jnp.dtype(mu_dtype)

    def init(params):
        coeffs = jnp.asarray(ns_coeffs)
        if coeffs.ndim == 2:
            coeffs = coeffs[-ns_steps:]
        return MuonState(count=jnp.zeros([], jnp.int32), mu=tree_zeros_like(params, dtype), ns_coeffs=coeffs)

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        dim_nums = resolve(weight_dimension_numbers, updates)
        mu = update_moment(updates, state.mu, beta, 1)
        count = safe_increment(state.count)
        if nesterov:
            mu_hat = jax.tree.map(
                lambda m, g: beta * m + (1 - beta) * g,
                bias_correction(mu, beta, safe_increment(count)),
                bias_correction(updates, beta, count),
            )
        else:
            mu_hat = bias_correction(mu, beta, count)
        out = jax.tree.map(
            lambda x, d: orthogonalize(x, state.ns_coeffs, ns_steps, preconditioning, eps, d),
            mu_hat,
            dim_nums,
            is_leaf=is_dim_nums,
        )
        if adaptive:
            out = jax.tree.map(lambda x, y: jnp.sum(x.conj() * y) * y, mu_hat, out)
        if dtype is not None:
            mu = jax.tree.map(lambda m: m.astype(dtype), mu)
        return out, MuonState(count=count, mu=mu, ns_coeffs=state.ns_coeffs)

    return GradientTransformation(init, update)


def scale_by_shape(weight_dimension_numbers: Any = None, consistent_rms: Any = None) -> GradientTransformation:
    """Muon's shape factor: `sqrt(max(1, fan_out/fan_in))`, or `sqrt(max(fan_in, fan_out)) * consistent_rms`."""

    def scale(u: jax.Array, d: MuonDimensionNumbers) -> jax.Array:
        fan_in, fan_out = fans(u, d)
        if consistent_rms is not None:
            return jnp.sqrt(jnp.maximum(fan_in, fan_out)) * consistent_rms * u
        return jnp.sqrt(jnp.maximum(1, fan_out / fan_in)) * u

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        dim_nums = resolve(weight_dimension_numbers, updates)
        return jax.tree.map(scale, updates, dim_nums, is_leaf=is_dim_nums), state

    return GradientTransformation(lambda params: EmptyState(), update)

