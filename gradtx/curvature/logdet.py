r"""Log-determinants of damped curvature matrices by stochastic Lanczos quadrature (SLQ).

For a symmetric positive definite $B = A + \lambda I \in \mathbb R^{n \times n}$,
$\log\det B = \operatorname{tr} \log B$, a trace that SLQ estimates from products with $A$ only.
For a Rademacher probe $z \in \{-1, +1\}^n$ ($\lVert z\rVert^2 = n$), $m$ Lanczos steps from
$q_1 = z / \sqrt n$ give the tridiagonal $T_m = S \Theta S^\top$ of $A$, and Gauss quadrature
yields $z^\top f(A) z \approx n \sum_j \tau_j f(\theta_j)$ with Ritz values $\theta_j$ (nodes) and
weights $\tau_j = S_{1j}^2$. With $f(t) = \log(t + \lambda)$ and $p$ probes,

$$\log\det(A + \lambda I) \approx \frac{n}{p} \sum_{r=1}^{p} \sum_{j=1}^{m} \tau^{(r)}_j
\log\bigl(\theta^{(r)}_j + \lambda\bigr),$$

the mean of the per-probe estimates $e_r = n \sum_j \tau^{(r)}_j \log(\theta^{(r)}_j + \lambda)$;
its standard error is their sample standard deviation over $\sqrt p$. Two errors add up: the
Hutchinson (probe) error of $\operatorname{tr} \log B$, unbiased with variance
$\tfrac{2}{p}\sum_{i \ne k} (\log B)_{ik}^2$ — which the standard error estimates — and the
quadrature error, which decays geometrically in $m$ at a rate set by $\sqrt{\kappa(B)}$ and
vanishes for $m \ge n$ (then $e_r = z_r^\top \log(B)\, z_r$ exactly). Damping bounds
$\kappa(B) \le (\lambda_{\max} + \lambda) / \lambda$, so GGN / Fisher log-determinants with a
prior precision $\lambda$ (Laplace approximations) converge in a few dozen steps.

Lanczos runs on $A$ and the nodes are shifted by $\lambda$ (the Krylov space of $A + \lambda I$
is that of $A$). Ritz values lie in $[\lambda_{\min}(A), \lambda_{\max}(A)]$, so all shifted nodes
are positive when $B$ is positive definite. A node $\theta_j + \lambda \le 0$ means $B$ is not
positive definite (or is singular to working precision): the estimate is then NaN and
`report.positive_definite` is False, rather than an error, so that the function can run under
`jax.jit`.

References:
    Ubaru, Chen & Saad, *Fast estimation of tr(f(A)) via stochastic Lanczos quadrature*, SIAM J.
    Matrix Anal. Appl. 38(4), 2017.
    Golub & Meurant, *Matrices, Moments and Quadrature with Applications*, Princeton, 2010.
    Hutchinson, *A stochastic estimator of the trace of the influence matrix for Laplacian
    smoothing splines*, Comm. Statist. Simul. Comput. 19(2), 1990.
    Immer, Korzepa & Bauer, *Improving predictions of Bayesian neural nets via local
    linearization*, AISTATS 2021 (GGN Laplace approximations).
"""

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx._validation import check_int, check_real
from gradtx.curvature.data import partition_data, prepare_data, static_callable
from gradtx.curvature.density import slq_nodes_weights
from gradtx.curvature.lanczos import _default_key, _dimension
from gradtx.curvature.operators import bound_hessian_operator, flatten_operator
from gradtx.curvature.streaming import is_streaming, streamed_hessian

__all__ = ["DEFAULT_LOGDET_ITERS", "DEFAULT_NUM_PROBES", "LogdetReport", "logdet", "operator_logdet"]

DEFAULT_NUM_PROBES = 30
"""Default number of Rademacher probes (independent Lanczos runs) for the log-determinant."""
DEFAULT_LOGDET_ITERS = 50
"""Default number of Lanczos steps per probe for the log-determinant."""


class LogdetReport(NamedTuple):
    """The output of [`operator_logdet`][gradtx.curvature.operator_logdet] / [`logdet`][gradtx.curvature.logdet].

    Attributes:
        logdet: the estimate of $\\log\\det(A + \\lambda I)$ (NaN when `positive_definite` is False).
        standard_error: the sample standard deviation of `per_probe` over $\\sqrt p$ (NaN for one
            probe): the probe (Hutchinson) part of the error, not the quadrature part.
        per_probe: `(p,)` per-probe estimates $e_r = n \\sum_j \\tau_j \\log(\\theta_j + \\lambda)$
            (NaN for a probe with a non-positive shifted node).
        min_ritz_value: the smallest shifted node $\\theta_j + \\lambda$ over all probes, an upper
            bound of $\\lambda_{\\min}(A + \\lambda I)$.
        positive_definite: every shifted node is `> 0` (bool).
    """

    logdet: jax.Array
    standard_error: jax.Array
    per_probe: jax.Array
    min_ritz_value: jax.Array
    positive_definite: jax.Array


def _report(nodes: jax.Array, weights: jax.Array, n: int, damping: Any) -> LogdetReport:
    """Quadrature of `log(θ + damping)` over the nodes and weights of `p` Lanczos runs."""
    shifted = nodes + jnp.asarray(damping, nodes.dtype)
    positive = jnp.min(shifted, axis=1) > 0  # per probe
    logs = jnp.log(jnp.where(shifted > 0, shifted, 1))
    per_probe = jnp.where(positive, n * jnp.sum(weights * logs, axis=1), jnp.nan)
    p = per_probe.shape[0]
    all_positive = jnp.all(positive)
    estimate = jnp.where(all_positive, jnp.mean(per_probe), jnp.nan)
    if p > 1:
        standard_error = jnp.std(per_probe, ddof=1) / jnp.sqrt(jnp.asarray(p, nodes.dtype))
    else:
        standard_error = jnp.full((), jnp.nan, nodes.dtype)
    return LogdetReport(
        logdet=estimate,
        standard_error=standard_error,
        per_probe=per_probe,
        min_ritz_value=jnp.min(shifted),
        positive_definite=all_positive,
    )


_report_jit = jax.jit(lambda nodes, weights, damping, n: _report(nodes, weights, n, damping), static_argnames="n")


def _check(owner: str, damping: Any, num_probes: Any, num_iters: Any) -> None:
    check_real(owner, "damping", damping, low=0.0)
    for name, value in (("num_probes", num_probes), ("num_iters", num_iters)):
        check_int(owner, name, value, low=1)
        if isinstance(value, jax.core.Tracer):
            raise TypeError(f"{owner}: {name} must be a static Python int, got a traced value")


def operator_logdet(
    matvec: Callable[[Any], Any],
    template: Any,
    damping: float = 0.0,
    num_probes: int = DEFAULT_NUM_PROBES,
    num_iters: int = DEFAULT_LOGDET_ITERS,
    key: jax.Array | None = None,
) -> LogdetReport:
    r"""$\log\det(A + \lambda I)$ of a symmetric positive semi-definite operator, by SLQ.

    Estimates

    $$\log\det(A + \lambda I) = \operatorname{tr}\log(A + \lambda I) \approx \frac{n}{p}
    \sum_{r=1}^{p} \sum_{j=1}^{m} \tau^{(r)}_j \log\bigl(\theta^{(r)}_j + \lambda\bigr)$$

    from `num_probes` Lanczos runs of `num_iters` steps (full reorthogonalization) started at
    Rademacher probes (see the module docstring). Cost: `num_probes × min(num_iters, n)`
    operator products; memory `min(num_iters, n) × n` numbers (the runs are sequential).

    Meant for positive semi-definite $A$ — a Gauss-Newton matrix
    ([`gauss_newton_operator`][gradtx.curvature.gauss_newton_operator]), a Fisher matrix, a
    Hessian at a minimum — with $\lambda > 0$ when $A$ is singular. When a shifted Ritz value
    $\theta_j + \lambda$ is `<= 0` ($A + \lambda I$ is not positive definite, or singular to
    working precision: choose $\lambda \gg \varepsilon \lVert A\rVert$), `logdet` is NaN and
    `positive_definite` False.

    With `num_iters >= n` the quadrature is exact, each per-probe value equals
    $z_r^\top \log(A + \lambda I)\, z_r$, and the only error left is Hutchinson's; it is zero
    when $\log(A + \lambda I)$ is diagonal (e.g. $A$ diagonal).

    Args:
        matvec: symmetric linear map `v ↦ A v` on pytrees shaped like `template` (a traceable
            callable or a [`StreamingOperator`][gradtx.curvature.StreamingOperator]).
        template: a pytree of float arrays fixing the space (e.g. the params).
        damping: $\lambda \ge 0$. Default 0.
        num_probes: $p$, Rademacher probes (static int ≥ 1; ≥ 2 for a standard error).
            Default 30.
        num_iters: $m$, Lanczos steps per probe (static int ≥ 1, clipped to $n$). Default 50.
        key: PRNG key for the probes. Default None (`jax.random.PRNGKey(0)`).

    Returns:
        A [`LogdetReport`][gradtx.curvature.LogdetReport] `(logdet, standard_error, per_probe,
        min_ritz_value, positive_definite)`.

    Raises:
        ValueError: `damping < 0`, `num_probes < 1`, `num_iters < 1`.
        TypeError: `matvec` not callable; `num_probes` or `num_iters` not a static int; a
            non-floating template.

    References:
        Ubaru, Chen & Saad, *Fast estimation of tr(f(A)) via stochastic Lanczos quadrature*,
        SIAM J. Matrix Anal. Appl. 38(4), 2017.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.curvature import operator_logdet
        >>> d = jnp.arange(1.0, 6.0)  # log det diag(1..5) + 1 I = log 720 ≈ 6.5793
        >>> report = operator_logdet(lambda v: d * v, jnp.zeros(5), damping=1.0, num_probes=2, num_iters=5)
        >>> round(float(report.logdet), 3)
        6.579
    """
    owner = "operator_logdet"
    if not callable(matvec):
        raise TypeError(f"{owner}: matvec must be callable, got {type(matvec).__name__}")
    _check(owner, damping, num_probes, num_iters)
    _dimension(owner, template)  # rejects an empty tree
    for leaf in jax.tree.leaves(template):
        if not jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
            raise TypeError(f"{owner}: template must hold floating-point arrays, got dtype {jnp.result_type(leaf)}")

    def run(template, key, damping):
        mv, n, dtype, _ = flatten_operator(matvec, template)
        nodes, weights = slq_nodes_weights(mv, n, dtype, min(num_iters, n), num_probes, key)
        return _report(nodes, weights, n, damping)

    if is_streaming(matvec):  # host loops of compiled Lanczos steps, one pass over the data per step
        mv, n, dtype, _ = flatten_operator(matvec, template)
        nodes, weights = slq_nodes_weights(mv, n, dtype, num_iters, num_probes, _default_key(key))
        return _report_jit(nodes, weights, damping, n=n)
    return jax.jit(run)(template, _default_key(key), damping)


@functools.partial(jax.jit, static_argnames=("loss", "static", "weights", "num_iters", "num_probes"))
def _logdet_core(loss, params, arrays, static, weights, key, damping, num_iters, num_probes):
    _, lin = bound_hessian_operator(loss, params, arrays, static, weights)
    mv, n, dtype, _ = flatten_operator(lin, params)
    nodes, qweights = slq_nodes_weights(mv, n, dtype, num_iters, num_probes, key)
    return _report(nodes, qweights, n, damping)


def logdet(
    loss: Callable[..., Any],
    params: Any,
    *args: Any,
    damping: float = 0.0,
    num_probes: int = DEFAULT_NUM_PROBES,
    num_iters: int = DEFAULT_LOGDET_ITERS,
    key: jax.Array | None = None,
    batches: Any = None,
) -> LogdetReport:
    r"""$\log\det(\nabla^2 L(\theta) + \lambda I)$ of the Hessian of `loss`, by SLQ.

    [`operator_logdet`][gradtx.curvature.operator_logdet] with the Hessian of `loss` at
    `params` (linearized once; one Hessian-vector product per Lanczos step). The Hessian must
    make $H + \lambda I$ positive definite — true at a (local) minimum with $\lambda > 0$, or
    for a convex loss — otherwise the report's `logdet` is NaN and `positive_definite` False.
    For the always positive semi-definite Gauss-Newton or Fisher matrices (the usual choice in
    Laplace approximations, where $\log\det(G + \lambda I)$ enters the marginal likelihood)
    pass their operator to `operator_logdet`:

    ```python
    G = curvature.gauss_newton_operator(model_fn, loss_fn, params, x, y)
    report = curvature.operator_logdet(G, params, damping=prior_precision)
    ```

    Args:
        loss: scalar function `loss(params, *args)`.
        params: the point, a pytree of float arrays.
        *args: one batch of data for `loss`.
        damping: $\lambda \ge 0$. Default 0.
        num_probes: Rademacher probes (static int ≥ 1). Default 30.
        num_iters: Lanczos steps per probe (static int ≥ 1, clipped to the parameter count).
            Default 50.
        key: PRNG key for the probes. Default None (`jax.random.PRNGKey(0)`).
        batches: instead of `*args`, the data set: a list of batches, a loader or a generator
            factory (streamed through every product), or a
            [`Batched`][gradtx.curvature.Batched] in-memory data set; the Hessian is that of the
            batch-size-weighted average loss. Default None.

    Returns:
        A [`LogdetReport`][gradtx.curvature.LogdetReport].

    References:
        Ubaru, Chen & Saad, SIAM J. Matrix Anal. Appl. 38(4), 2017; MacKay, *A practical
        Bayesian framework for backpropagation networks*, Neural Computation 4(3), 1992
        (Laplace evidence).
    """
    owner = "logdet"
    loss = static_callable(owner, "loss", loss)
    _check(owner, damping, num_probes, num_iters)
    n = _dimension(owner, params)
    streamed = streamed_hessian(owner, loss, params, args, batches)
    if streamed is not None:  # a stream: host loops around one compiled per-batch product
        return operator_logdet(streamed, params, damping=damping, num_probes=num_probes, num_iters=num_iters, key=key)
    data, weights = prepare_data(owner, args, batches)
    arrays, static = partition_data(data)
    return _logdet_core(loss, params, arrays, static, weights, _default_key(key), damping,
                        num_iters=min(num_iters, n), num_probes=num_probes)
