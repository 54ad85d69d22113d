"""Linear algebra with optax's names: power iteration, inverse matrix roots, non-negative least squares.

Also `multi_normal`, the diagonal Gaussian that optax's evolution-strategy utilities sample from.
Every function returns optax's numbers for the same inputs (the same operations in the same
order), and checks its concrete arguments the way gradtx's factories do: a wrong shape or an
out-of-range count raises a ValueError naming the function and the argument, where optax would
assert or silently compute something else.
"""

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import jax.scipy.stats.norm as _normal
import numpy as np
from jax import lax

from gradtx import _validation as _v

__all__ = [
    "MultiNormalDiagFromLogScale",
    "matrix_inverse_pth_root",
    "multi_normal",
    "nnls",
    "power_iteration",
]


# --------------------------------------------------------------------------------------------
# tree arithmetic (the operations and summation order of optax.tree's norm / vdot)
# --------------------------------------------------------------------------------------------


def _norm(tree: Any) -> jax.Array:
    squares = [jnp.sum(jnp.square(jnp.real(x)) + jnp.square(jnp.imag(x))) for x in jax.tree.leaves(tree)]
    return jnp.array(jnp.sqrt(sum(squares)))


def _vdot(a: Any, b: Any) -> Any:
    products = jax.tree.leaves(
        jax.tree.map(lambda x, y: jnp.vdot(jnp.asarray(x), jnp.asarray(y), precision=lax.Precision.HIGHEST), a, b)
    )
    return sum(products)


def _unit(tree: Any) -> Any:
    """`tree / ‖tree‖` (as a multiplication by the reciprocal, as optax does)."""
    inverse = 1.0 / _norm(tree)
    return jax.tree.map(lambda x: inverse * x, tree)


def _square_matrix(owner: str, name: str, matrix: Any) -> tuple[int, ...]:
    shape = np.shape(matrix)
    if len(shape) != 2 or shape[0] != shape[1]:
        raise ValueError(f"{owner}: {name} must be a square 2-D matrix, got shape {shape}")
    return shape


# --------------------------------------------------------------------------------------------
# power iteration
# --------------------------------------------------------------------------------------------


def power_iteration(
    matrix: jax.typing.ArrayLike | Callable[[Any], Any],
    *,
    v0: Any = None,
    num_iters: jax.typing.ArrayLike = 100,
    error_tolerance: jax.typing.ArrayLike = 1e-6,
    precision: lax.Precision = lax.Precision.HIGHEST,
    key: jax.Array | None = None,
) -> tuple[jax.Array, Any]:
    r"""The dominant eigenvalue (largest in modulus) of a matrix and its eigenvector.

    Starting from $v_0/\|v_0\|$, repeat

    $$z_{k+1} = A\, \frac{z_k}{\|z_k\|}, \qquad \lambda_{k+1} = \Big\langle \frac{z_k}{\|z_k\|},\ z_{k+1} \Big\rangle$$

    until the relative residual $\|z_{k+1} - \lambda_{k+1} z_k/\|z_k\|\| / |\lambda_{k+1}|$ is
    below `error_tolerance`, or `num_iters` products were taken. Converges when $A$ is
    diagonalizable with a unique eigenvalue of largest modulus, at the rate $|\lambda_2/\lambda_1|$.
    Numbers equal optax's `power_iteration`.

    Args:
        matrix: a square 2-D array $A$, or a callable computing $v \mapsto Av$ on trees shaped
            like `v0` (then `v0` is required).
        v0: the starting vector (a tree for a callable `matrix`); default None: uniform in
            $[-1, 1]^n$ drawn with `key`.
        num_iters: the largest number of iterations, an integer `>= 0`; default 100.
        error_tolerance: the relative residual at which to stop, `>= 0`; default 1e-6.
        precision: precision of the matrix products with an array `matrix`; default
            `lax.Precision.HIGHEST`.
        key: the PRNG key drawing the default `v0`; default None (`jax.random.PRNGKey(0)`).

    Returns:
        `(eigenvalue, eigenvector)`: the estimate $\lambda$ and the unit vector (tree) of the last
        product.

    Raises:
        ValueError: `v0` missing for a callable `matrix`, a non-square `matrix`, a `v0` of the
            wrong length, or `num_iters` / `error_tolerance` out of range.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> value, vector = gradtx.power_iteration(jnp.diag(jnp.array([1.0, -3.0, 2.0])))
        >>> round(float(value), 4)
        -3.0

    References:
        von Mises and Pollaczek-Geiringer, Praktische Verfahren der Gleichungsauflösung, ZAMM 9,
        1929; [Power iteration](https://en.wikipedia.org/wiki/Power_iteration).
    """
    owner = "power_iteration"
    _v.check_int(owner, "num_iters", num_iters, low=0)
    _v.check_real(owner, "error_tolerance", error_tolerance, low=0.0)
    if callable(matrix):
        if v0 is None:
            raise ValueError(f"{owner}: v0 is required when matrix is a callable (its input's tree is unknown)")
        product = matrix
    else:
        n = _square_matrix(owner, "matrix", matrix)[0]
        array = jnp.asarray(matrix)

        def product(v: Any) -> Any:
            return jnp.matmul(array, v, precision=precision)

        if v0 is None:
            v0 = jax.random.uniform(
                jax.random.PRNGKey(0) if key is None else key, (n,), array.dtype, minval=-1.0, maxval=1.0
            )
        elif np.shape(v0) != (n,):
            raise ValueError(f"{owner}: v0 must have shape {(n,)} for a matrix of shape {(n, n)}, got {np.shape(v0)}")

    def running(carry: tuple) -> jax.Array:
        unit, z, value, i = carry
        residual = jax.tree.map(lambda a, b: a - value * b, z, unit)
        converged = jnp.abs(_norm(residual) / value) < error_tolerance
        return ~converged & (i < num_iters)

    def step(carry: tuple) -> tuple:
        _, z, _, i = carry
        unit = _unit(z)
        z = product(unit)
        return unit, z, _vdot(unit, z), i + 1

    start = _unit(v0)
    carry = (start, product(start), jnp.asarray(0.0), jnp.asarray(0))
    _, z, value, _ = lax.while_loop(running, step, carry)
    return value, _unit(z)


# --------------------------------------------------------------------------------------------
# inverse p-th root
# --------------------------------------------------------------------------------------------

_ROOTS = (1, 2, 4, 8)


def _repeated_square(times: int, precision: Any) -> Callable[[jax.Array], jax.Array]:
    """`m ↦ m^(2^times)` by squaring `times` times."""

    def power(m: jax.Array) -> jax.Array:
        for _ in range(times):
            m = jnp.matmul(m, m, precision=precision)
        return m

    return power


def matrix_inverse_pth_root(
    matrix: jax.typing.ArrayLike,
    p: jax.typing.ArrayLike,
    num_iters: jax.typing.ArrayLike = 100,
    ridge_epsilon: jax.typing.ArrayLike = 1e-6,
    error_tolerance: jax.typing.ArrayLike = 1e-6,
    precision: lax.Precision = lax.Precision.HIGHEST,
) -> tuple[jax.Array, Any]:
    r"""$(A + \epsilon\,\lambda_{\max} I)^{-1/p}$ of a symmetric positive semi-definite matrix.

    Coupled Newton iteration (Higham, eq. 7.18). With $\alpha = -1/p$, the damped matrix
    $A_\epsilon = A + \epsilon \max(\lambda_{\max}, 10^{-16}) I$ ($\lambda_{\max}$ from
    [`power_iteration`][gradtx.power_iteration], 100 iterations) and
    $z = (1+p) / (2\|A_\epsilon\|_F)$, start from $M_0 = z A_\epsilon$, $H_0 = z^{1/p} I$ and
    repeat

    $$N_k = (1-\alpha) I + \alpha M_k, \qquad M_{k+1} = N_k^{\,p} M_k, \qquad H_{k+1} = H_k N_k$$

    while $\max|M_k - I| >$ `error_tolerance`, at most `num_iters` times, stopping early when the
    error grows by more than 20% (then the previous $H$ is returned). $H_k \to A_\epsilon^{-1/p}$.
    A 1×1 matrix is raised to $-1/p$ directly. The iteration runs in float32 (the result is cast
    back to `matrix`'s dtype). Numbers equal optax's `matrix_inverse_pth_root`.

    Args:
        matrix: the symmetric PSD matrix $A$, shape `(n, n)`.
        p: the root, one of 1, 2, 4, 8 (the powers $N^p$ are computed by repeated squaring;
            optax silently rounds other values of `p` there, gradtx refuses them).
        num_iters: the largest number of Newton iterations, an integer `>= 0`; default 100.
        ridge_epsilon: $\epsilon$, the ridge relative to $\lambda_{\max}$, `>= 0`; default 1e-6.
        error_tolerance: the stopping error $\max|M_k - I|$, `>= 0`; default 1e-6.
        precision: precision of the matrix products; default `lax.Precision.HIGHEST`.

    Returns:
        `(root, error)`: $A_\epsilon^{-1/p}$ and the final $\max|M - I|$ (0 for a 1×1 matrix).

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> root, _ = gradtx.matrix_inverse_pth_root(jnp.diag(jnp.array([4.0, 16.0])), 2, ridge_epsilon=0.0)
        >>> [round(float(x), 4) for x in jnp.diag(root)]
        [0.5, 0.25]

    References:
        Higham, [Functions of Matrices: Theory and Computation](https://epubs.siam.org/doi/book/10.1137/1.9780898717778),
        SIAM 2008, p. 184, eq. 7.18.
    """
    owner = "matrix_inverse_pth_root"
    n = _square_matrix(owner, "matrix", matrix)[0]
    if not _v.is_traced(p):
        _v.check_int(owner, "p", p, low=1)
        if int(np.asarray(p)) not in _ROOTS:
            raise ValueError(f"{owner}: p must be one of {_ROOTS}, got {p!r}")
    _v.check_int(owner, "num_iters", num_iters, low=0)
    _v.check_real(owner, "ridge_epsilon", ridge_epsilon, low=0.0)
    _v.check_real(owner, "error_tolerance", error_tolerance, low=0.0)
    matrix = jnp.asarray(matrix)
    alpha = jnp.asarray(-1.0 / p, jnp.float32)
    eye = jnp.eye(n, dtype=jnp.float32)
    top, _ = power_iteration(matrix, num_iters=100, error_tolerance=1e-6, precision=precision)
    ridge = ridge_epsilon * jnp.maximum(top, 1e-16)
    if n == 1:
        return (matrix + ridge) ** alpha, 0

    powers = [_repeated_square(k, precision) for k in range(len(_ROOTS))]

    def power_p(m: jax.Array) -> jax.Array:
        return lax.switch(jnp.asarray(jnp.round(jnp.log2(p)), jnp.int32), powers, m)

    def running(carry: tuple) -> jax.Array:
        i, _, _, _, error, improving = carry
        return (i < num_iters) & (error > error_tolerance) & improving

    def step(carry: tuple) -> tuple:
        i, m, h, _, error, _ = carry
        n_k = (1 - alpha) * eye + alpha * m
        m_next = jnp.matmul(power_p(n_k), m, precision=precision)
        h_next = jnp.matmul(h, n_k, precision=precision)
        error_next = jnp.max(jnp.abs(m_next - eye))
        # the error may rise for a step before it falls: allow a 20% rise, stop beyond
        return i + 1, m_next, h_next, h, error_next, error_next < error * 1.2

    damped = matrix + ridge * eye
    z = (1 + p) / (2 * jnp.linalg.norm(damped))
    m0 = damped * z
    h0 = eye * jnp.power(z, 1.0 / p)
    carry = (0, m0, h0, h0, jnp.max(jnp.abs(m0 - eye)), True)
    _, m, h, h_previous, _, improving = lax.while_loop(running, step, carry)
    error = jnp.max(jnp.abs(m - eye))
    keep = jnp.asarray(improving, h_previous.dtype)
    root = keep * h + (1 - keep) * h_previous
    return jnp.asarray(root, matrix.dtype), error


# --------------------------------------------------------------------------------------------
# non-negative least squares
# --------------------------------------------------------------------------------------------


def _spectral_bound(q: jax.Array) -> Any:
    """An upper bound of the spectral radius of `q`: min(Frobenius norm, max column sum)."""
    frobenius = jnp.linalg.matrix_norm(q, ord="fro")
    column = jnp.linalg.matrix_norm(q, ord=1) if q.size != 0 else 0
    return jnp.minimum(frobenius, column)


def nnls(
    A: jax.Array,  # optax's (capitalised) argument names
    b: jax.Array,
    iters: int,
    unroll: int | bool = 1,
    L: jax.typing.ArrayLike | None = None,
) -> jax.Array:
    r"""Non-negative least squares: $\min_{x \ge 0} \|Ax - b\|_2$, by fast projected gradient.

    With $Q = A^\top A$, $q = A^\top b$, a bound $L \ge \lambda_{\max}(Q)$ and $x_0 = y_0 = 0$,
    $c_0 = 0$, each of the `iters` steps is a projected gradient step from the extrapolated
    point $y$ followed by Nesterov-style momentum:

    $$c_{k+1} = \tfrac{1 + \sqrt{1 + 4c_k^2}}{2}, \quad
    x_{k+1} = \max\!\big(0,\ y_k - (Q y_k - q)/L\big), \quad
    y_{k+1} = x_{k+1} + \tfrac{c_k - 1}{c_{k+1}} (x_{k+1} - x_k)$$

    Numbers equal optax's `nnls`.

    Args:
        A: the matrix, shape `(M, N)`.
        b: the right-hand side, shape `(M,)`, or `(M, K)` for `K` problems at once.
        iters: the number of iterations, an integer `>= 0` (static: it sets the scan length).
        unroll: unrolling of the `lax.scan` loop (an integer `>= 1`, or a bool); default 1.
        L: an upper bound of the largest eigenvalue of $A^\top A$; default None:
            $\min(\|Q\|_F, \|Q\|_1)$. A bound of 0 is replaced by 1.

    Returns:
        $x$, shape `(N,)` (or `(N, K)`), non-negative.

    Raises:
        ValueError: `A` not 2-D, `b` not 1-D or 2-D, their first dimensions differ, or `iters` /
            `unroll` out of range.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> x = gradtx.nnls(jnp.array([[1.0, 2.0], [3.0, 4.0]]), jnp.array([5.0, 6.0]), 1000)
        >>> [round(float(v), 2) for v in x]
        [0.0, 1.7]

    References:
        Polyak, [Projected gradient method for non-negative least square](http://www.ams.org/books/conm/636/),
        Contemporary Mathematics 636, 2015.
    """
    owner = "nnls"
    a_shape, b_shape = np.shape(A), np.shape(b)
    if len(a_shape) != 2:
        raise ValueError(f"{owner}: A must be a 2-D matrix, got shape {a_shape}")
    if len(b_shape) not in (1, 2):
        raise ValueError(f"{owner}: b must be 1-D (M,) or 2-D (M, K), got shape {b_shape}")
    if b_shape[0] != a_shape[0]:
        raise ValueError(f"{owner}: b must have A's first dimension {a_shape[0]}, got shape {b_shape}")
    _v.check_int(owner, "iters", iters, low=0)
    if not isinstance(unroll, bool):
        _v.check_int(owner, "unroll", unroll, low=1)
    A, b = jnp.asarray(A), jnp.asarray(b)
    q_mat = A.mT @ A
    q_vec = A.mT @ b
    bound = _spectral_bound(q_mat) if L is None else L
    bound = jnp.where(bound == 0, 1, bound)

    def step(carry: tuple, _: Any) -> tuple[tuple, None]:
        x, y, c = carry
        c_next = (1 + jnp.sqrt(1 + 4 * c**2)) / 2
        momentum = (c - 1) / c_next
        x_next = (y - (q_mat @ y - q_vec) / bound).clip(0)
        return (x_next, x_next + momentum * (x_next - x), c_next), None

    x0 = jnp.zeros_like(b, shape=a_shape[1:] + b_shape[1:])
    (x, _, _), _ = lax.scan(step, (x0, x0, 0.0), length=iters, unroll=unroll)
    return x


# --------------------------------------------------------------------------------------------
# diagonal Gaussian
# --------------------------------------------------------------------------------------------


class MultiNormalDiagFromLogScale:
    r"""A Gaussian with independent coordinates, parameterised by its mean and log standard deviation.

    Density $\prod_i \mathcal N(x_i;\ \mu_i, e^{2 s_i})$ with $\mu$ = `loc` and $s$ = `log_scale`
    (broadcast against each other; their broadcast shape is the event shape). Built by
    [`multi_normal`][gradtx.multi_normal].
    """

    def __init__(self, loc: jax.typing.ArrayLike, log_scale: jax.typing.ArrayLike):
        self._mean = jnp.asarray(loc)
        self._log_scale = jnp.asarray(log_scale)
        self._scale = jnp.exp(log_scale)
        self._event_shape = jax.lax.broadcast_shapes(self._mean.shape, self._scale.shape)

    def sample(self, shape: Sequence[int], key: jax.Array) -> jax.Array:
        """Draws of shape `(*shape, *event_shape)`: $\\mu + e^{s} \\odot \\varepsilon$, $\\varepsilon \\sim \\mathcal N(0, I)$."""
        noise = jax.random.normal(key, shape=(*tuple(shape), *self._event_shape))
        return noise * self._scale + self._mean

    def log_prob(self, x: jax.typing.ArrayLike) -> jax.Array:
        r"""$\log p(x) = \sum_i \big(-\tfrac12 \log(2\pi e^{2s_i}) - \tfrac12 (x_i-\mu_i)^2 e^{-2s_i}\big)$.

        Summed over the trailing event axes; leading (batch) axes of `x` are kept.
        """
        per_coordinate = _normal.logpdf(x, loc=self._mean, scale=self._scale)
        event_axes = tuple(-(i + 1) for i in range(len(self._event_shape)))
        return jnp.sum(per_coordinate, axis=event_axes)

    @property
    def log_scale(self) -> jax.Array:
        """$s$, the log standard deviations."""
        return self._log_scale

    @property
    def params(self) -> Sequence[jax.Array]:
        """`[loc, log_scale]`, the differentiable parameters."""
        return [self._mean, self._log_scale]

    def __repr__(self) -> str:
        return f"MultiNormalDiagFromLogScale(event_shape={self._event_shape})"


def multi_normal(loc: jax.typing.ArrayLike, log_scale: jax.typing.ArrayLike) -> MultiNormalDiagFromLogScale:
    r"""A diagonal Gaussian $\mathcal N(\mu, \operatorname{diag}(e^{2s}))$ with `sample` and `log_prob`.

    Args:
        loc: the mean $\mu$.
        log_scale: $s$, the log of the standard deviation (broadcasts against `loc`).

    Returns:
        A `MultiNormalDiagFromLogScale` with `sample(shape, key)`, `log_prob(x)` (summed over the
        event axes), `log_scale` and `params` (`[loc, log_scale]`), as optax's `multi_normal`.

    Example:
        >>> import jax, jax.numpy as jnp, gradtx
        >>> dist = gradtx.multi_normal(jnp.zeros(2), jnp.zeros(2))
        >>> dist.sample((5,), jax.random.key(0)).shape
        (5, 2)
    """
    return MultiNormalDiagFromLogScale(loc, log_scale)

