"""Fisher information operators: the empirical Fisher and the (exact or Monte-Carlo) Fisher.

Both are positive semi-definite linear maps `v ↦ F v` on pytrees shaped like the params, built
from one linearization of the model (or of the per-example losses) and never formed as matrices.
They are accepted by every estimator of `gradtx.curvature` that takes an operator
([`operator_eigsh`][gradtx.curvature.operator_eigsh],
[`operator_trace`][gradtx.curvature.operator_trace],
[`operator_spectral_density`][gradtx.curvature.operator_spectral_density],
[`operator_diagonal`][gradtx.curvature.operator_diagonal], ...).

Averaging: both are **means over examples** (the curvature of a loss that is a mean over its
batch). With `batches=`, the batch-size-weighted average `Σ_i (n_i/N) F_i` is the mean over all
`N` examples, as for the other operators (see [`gradtx.curvature.data`][gradtx.curvature.data]).
"""

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradtx._validation import check_int, check_real
from gradtx.curvature.data import Batched, static_callable
from gradtx.curvature.operators import _match_tangent
from gradtx.curvature.streaming import StreamingOperator, batch_stream, data_operator, sized_batches

__all__ = [
    "LIKELIHOODS",
    "EmpiricalFisherProduct",
    "FisherProduct",
    "empirical_fisher_operator",
    "fisher_operator",
    "sample_targets",
]

Matvec = Callable[[Any], Any]

LIKELIHOODS = ("categorical", "gaussian")
"""The accepted values of `likelihood` in [`fisher_operator`][gradtx.curvature.fisher_operator]."""


def check_key(owner: str, key: Any) -> jax.Array:
    """Check that `key` is a PRNG key (a typed key array of shape `()` or a raw `uint32[2]` key).

    Raises:
        TypeError: for anything else.
    """
    dtype, shape = getattr(key, "dtype", None), getattr(key, "shape", None)
    if isinstance(key, jax.Array) and dtype is not None:
        if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key) and shape == ():
            return key
        if dtype == jnp.uint32 and shape == (2,):
            return key
    raise TypeError(
        f"{owner}: key must be a PRNG key (jax.random.key(seed) or jax.random.PRNGKey(seed)), got "
        f"{type(key).__name__} with shape {getattr(key, 'shape', None)} and dtype {getattr(key, 'dtype', None)}"
    )


def _linear_pair(fn: Callable[[Any], Any], params: Any) -> tuple[Any, Callable[[Any], Any], Callable[[Any], Any]]:
    """`(fn(params), v ↦ J v, u ↦ Jᵀ u)` from one linearization of `fn` at `params`."""
    value, jvp_fn = jax.linearize(fn, params)
    transpose = jax.linear_transpose(jvp_fn, params)
    return value, jvp_fn, lambda u: transpose(u)[0]


def _checked(owner: str, params: Any, op: Matvec) -> Matvec:
    """`op` with the tangent checked against (and cast to) the params' structure and dtypes."""
    return lambda v: op(_match_tangent(owner, params, v))


def _cast_like(params: Any, v: Any) -> Any:
    return jax.tree.map(lambda p, x: jnp.asarray(x).astype(jnp.result_type(p)), params, v)


# ----- empirical Fisher -----


def _empirical_fisher_batch(per_example_loss: Callable[..., Any], params: Any, args: tuple[Any, ...]) -> Matvec:
    losses, jvp_fn, vjp_fn = _linear_pair(lambda p: per_example_loss(p, *args), params)
    if jnp.ndim(losses) != 1:
        raise ValueError(
            "empirical_fisher_operator: per_example_loss(params, *args) must return a vector of "
            f"per-example losses of shape (batch,), got shape {jnp.shape(losses)}"
        )
    count = losses.shape[0]

    def matvec(v: Any) -> Any:
        # F v = Jᵀ (J v) / b, J the (b × n) Jacobian of the per-example losses
        return jax.tree.map(lambda x: x / count, vjp_fn(jvp_fn(v)))

    return matvec


class EmpiricalFisherProduct:
    """The per-batch empirical-Fisher product `(params, v, *batch) ↦ Jᵀ(J v)/b` of a per-example loss.

    Two instances for the same `per_example_loss` are equal (and hash alike), so the compiled
    per-batch step of a streaming operator is reused. The `product` of
    [`data_operator`][gradtx.curvature.data_operator] behind
    [`empirical_fisher_operator`][gradtx.curvature.empirical_fisher_operator]`(..., batches=)`.
    """

    __slots__ = ("per_example_loss",)

    def __init__(self, per_example_loss: Callable[..., Any]):
        self.per_example_loss = per_example_loss

    def __call__(self, params: Any, v: Any, *batch: Any) -> Any:
        return _empirical_fisher_batch(self.per_example_loss, params, batch)(_cast_like(params, v))

    def __hash__(self) -> int:
        return hash((EmpiricalFisherProduct, self.per_example_loss))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EmpiricalFisherProduct) and other.per_example_loss == self.per_example_loss


def empirical_fisher_operator(
    per_example_loss: Callable[..., Any],
    params: Any,
    *args: Any,
    batches: Iterable[Any] | None = None,
) -> Matvec:
    """The empirical Fisher as a linear map `v ↦ F_emp v` on pytrees.

    With `g_n = ∇_θ ℓ_n(θ)` the gradient of example `n`'s loss,

    $$F_{\\mathrm{emp}} = \\frac{1}{N} \\sum_{n=1}^{N} g_n g_n^\\top = \\frac{1}{N} J^\\top J,
    \\qquad J = \\partial (\\ell_1, \\dots, \\ell_N) / \\partial \\theta .$$

    A product is `Jᵀ(J v)/N`: one JVP of the per-example loss vector and one VJP, without
    materialising the `N` per-example gradients (the loss vector is linearized once, when the
    operator is built). It is the uncentered covariance of the per-example gradients, not the
    Fisher of the model's predictive distribution (see
    [`fisher_operator`][gradtx.curvature.fisher_operator] for that, and Kunstner et al. 2019 for
    the differences); its rank is at most `N`.

    Args:
        per_example_loss: `per_example_loss(params, *args) -> (b,)`, the vector of the `b`
            per-example losses of a batch (for instance `jax.vmap` of a single-example loss, or a
            loss written without the final mean).
        params: the point θ, a pytree of float arrays.
        *args: one batch of data for `per_example_loss`.
        batches: instead of `*args`, the data set: a [`Batched`][gradtx.curvature.Batched]
            (swept by `lax.scan`) or a stream (list, loader, generator factory; see
            [`gradtx.curvature.streaming`][gradtx.curvature.streaming]). The operator is then
            `Σ_i (n_i/N) F_i`, the mean of `g_n g_nᵀ` over all `N` examples. Default None.

    Returns:
        `matvec(v) -> F_emp v`, with `v` and the result pytrees like `params`; for a stream, a
        [`StreamingOperator`][gradtx.curvature.StreamingOperator] (one pass over the data per
        product, `matmat` for many vectors per pass).

    Raises:
        TypeError: when `per_example_loss` is not callable.
        ValueError: when it does not return a vector.

    References:
        Kunstner, Hennig & Balles, *Limitations of the empirical Fisher approximation for natural
        gradient descent*, NeurIPS 2019. Martens, *New insights and perspectives on the natural
        gradient method*, JMLR 21, 2020.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.curvature import empirical_fisher_operator
        >>> x = jnp.array([[1.0, 0.0], [0.0, 2.0]])
        >>> per_example = lambda w, x: x @ w  # ℓ_n = x_n·w, g_n = x_n
        >>> fisher = empirical_fisher_operator(per_example, jnp.zeros(2), x)
        >>> fisher(jnp.array([1.0, 1.0]))  # (x_1 x_1ᵀ + x_2 x_2ᵀ)/2 · (1, 1)
        Array([0.5, 2. ], dtype=float32)
    """
    owner = "empirical_fisher_operator"
    per_example_loss = static_callable(owner, "per_example_loss", per_example_loss)
    if batches is None:  # one batch: linearize once, reuse for every product
        return _checked(owner, params, _empirical_fisher_batch(per_example_loss, params, args))
    return data_operator(owner, EmpiricalFisherProduct(per_example_loss), params, args, batches)


# ----- Fisher of the model's predictive distribution -----


def _check_outputs(owner: str, likelihood: str, outputs: Any) -> None:
    if not isinstance(outputs, jax.Array) and not hasattr(outputs, "shape"):
        raise TypeError(f"{owner}: model_fn must return an array of outputs, got {type(outputs).__name__}")
    least = 2 if likelihood == "categorical" else 1
    if jnp.ndim(outputs) < least:
        what = "(batch, ..., classes) logits" if likelihood == "categorical" else "(batch, ...) means"
        raise ValueError(f"{owner}: likelihood={likelihood!r} needs model outputs of shape {what}, got shape "
                         f"{jnp.shape(outputs)}")


def _output_hessian(likelihood: str, outputs: jax.Array, variance: Any) -> Callable[[jax.Array], jax.Array]:
    """`u ↦ H u`, H the Hessian of the negative log-likelihood in output space (per example)."""
    if likelihood == "categorical":
        p = jax.nn.softmax(outputs, axis=-1)
        return lambda u: p * u - p * jnp.sum(p * u, axis=-1, keepdims=True)
    return lambda u: u / variance


def _positions(offset: Any, count: int) -> jax.Array:
    """`offset + (0, 1, …, count − 1)` as uint32: the data-set positions of a batch's examples."""
    return jnp.asarray(offset).astype(jnp.uint32) + jnp.arange(count, dtype=jnp.uint32)


def _draw(likelihood: str, outputs: jax.Array, key: jax.Array, positions: jax.Array, num_samples: int,
          variance: Any) -> jax.Array:
    """The sampled targets, example `n` of the batch drawing with `fold_in(key, positions[n])`."""
    outputs = jax.lax.stop_gradient(outputs)
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(positions)
    if likelihood == "categorical":
        per_example = jax.vmap(lambda k, f: jax.random.categorical(k, f, axis=-1, shape=(num_samples, *f.shape[:-1])))
        return jnp.moveaxis(per_example(keys, outputs), 0, 1)
    eps = jax.vmap(lambda k: jax.random.normal(k, (num_samples, *outputs.shape[1:]), outputs.dtype))(keys)
    return outputs[None] + jnp.sqrt(jnp.asarray(variance, outputs.dtype)) * jnp.moveaxis(eps, 0, 1)


def sample_targets(likelihood: str, outputs: jax.Array, key: jax.Array, num_samples: int, variance: Any = 1.0,
                   offset: Any = 0) -> jax.Array:
    """Draw `num_samples` targets per example from the model's predictive distribution.

    Categorical: class indices `ŷ ~ softmax(outputs)` along the last axis, shape
    `(num_samples, *outputs.shape[:-1])`. Gaussian: `ŷ = outputs + √variance · ε`, `ε ~ N(0, I)`,
    shape `(num_samples, *outputs.shape)`. These are the targets
    [`fisher_operator`][gradtx.curvature.fisher_operator] uses for its Monte-Carlo estimate.

    Example `n` of the batch (index `n` along the leading axis of `outputs`) is the example at
    position `offset + n` of the data set, and draws all its targets with its own key

    $$k_{\\mathrm{offset}+n} = \\mathrm{fold\\_in}(\\mathrm{key},\\ \\mathrm{offset} + n),$$

    so the examples' targets are independent, and an example's targets depend on the key and
    its position only: drawing a data set in one batch, or batch by batch with `offset` the
    number of examples before each batch, gives the same targets.

    Args:
        likelihood: `"categorical"` or `"gaussian"`.
        outputs: the model outputs, `(batch, ..., classes)` logits or `(batch, ...)` means.
        key: PRNG key.
        num_samples: targets per example, a static int ≥ 1.
        variance: the Gaussian variance `> 0` (ignored for `"categorical"`). Default 1.0.
        offset: the data-set position of the batch's first example, an int ≥ 0 (or an integer
            scalar array, possibly traced); positions are taken modulo `2³²`. Default 0.

    Raises:
        ValueError: `likelihood` not in `LIKELIHOODS`, `num_samples < 1`, `variance ≤ 0`,
            `offset < 0`, outputs without a leading (batch) axis.
        TypeError: `key` not a PRNG key, `offset` not an integer.
    """
    owner = "sample_targets"
    if not isinstance(likelihood, str) or likelihood not in LIKELIHOODS:
        raise ValueError(f"{owner}: likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
    check_int(owner, "num_samples", num_samples, low=1)
    check_real(owner, "variance", variance, low=0.0, low_inclusive=False)
    check_int(owner, "offset", offset, low=0)
    key = check_key(owner, key)
    if jnp.ndim(outputs) < 1:
        raise ValueError(f"{owner}: outputs must have a leading (batch) axis, got shape {jnp.shape(outputs)}")
    if isinstance(offset, (int, np.integer)):
        offset = np.uint32(int(offset) % 2**32)
    return _draw(likelihood, outputs, key, _positions(offset, outputs.shape[0]), num_samples, variance)


def _sampled_scores(likelihood: str, outputs: jax.Array, key: jax.Array, positions: jax.Array, num_samples: int,
                    variance: Any) -> jax.Array:
    """`∇_f [−log p(ŷ_s | f)]` at the sampled targets, shape `(num_samples, *outputs.shape)`."""
    targets = _draw(likelihood, outputs, key, positions, num_samples, variance)
    outputs = jax.lax.stop_gradient(outputs)
    if likelihood == "categorical":
        p = jax.nn.softmax(outputs, axis=-1)
        return p[None] - jax.nn.one_hot(targets, outputs.shape[-1], dtype=outputs.dtype)
    return (outputs[None] - targets) / variance


def _fisher_batch(model_fn: Callable[..., Any], params: Any, inputs: tuple[Any, ...], likelihood: str,
                  num_samples: int | None, key: jax.Array | None, variance: Any, positions: Any = None) -> Matvec:
    """The Fisher of one batch; `positions` are its examples' data-set positions (default `0, 1, …`)."""
    outputs, jvp_fn, vjp_fn = _linear_pair(lambda p: model_fn(p, *inputs), params)
    _check_outputs("fisher_operator", likelihood, outputs)
    count = outputs.shape[0]
    if num_samples is None:
        out_hess = _output_hessian(likelihood, outputs, variance)
    else:
        assert key is not None
        positions = _positions(0, count) if positions is None else positions
        if jnp.shape(positions) != (count,):
            raise ValueError(
                f"fisher_operator: model_fn returned {count} outputs along the batch axis for a batch of "
                f"{jnp.shape(positions)[0]} examples (the leading length of the batch's first array); they "
                "must agree for the Monte-Carlo Fisher, which draws each example's targets with its own key")
        scores = _sampled_scores(likelihood, outputs, key, positions, num_samples, variance)
        axes = tuple(range(2, scores.ndim))

        def out_hess(u: jax.Array) -> jax.Array:
            # (1/S) Σ_s e_s (e_s · u) per example: the empirical Fisher of the sampled gradients
            coef = jnp.sum(scores * u[None], axis=axes, keepdims=True)
            return jnp.sum(coef * scores, axis=0) / num_samples

    def matvec(v: Any) -> Any:
        return jax.tree.map(lambda x: x / count, vjp_fn(out_hess(jvp_fn(v))))

    return matvec


class FisherProduct:
    """The per-batch Fisher product `((params, key, variance), v, positions, *inputs) ↦ Jᵀ H J v / b`.

    Exact (`num_samples=None`) or Monte-Carlo with `num_samples` targets per example, example
    `n` of the batch drawing with `fold_in(key, positions[n])` (`positions`: the `(b,)` uint32
    data-set positions of the batch's examples, ignored by the exact Fisher). The key and the
    variance travel with the params as traced operands; instances are equal (and hash alike)
    when `model_fn`, `likelihood` and `num_samples` are, so the compiled per-batch step of a
    streaming operator is reused.
    """

    __slots__ = ("likelihood", "model_fn", "num_samples")

    def __init__(self, model_fn: Callable[..., Any], likelihood: str, num_samples: int | None):
        self.model_fn = model_fn
        self.likelihood = likelihood
        self.num_samples = num_samples

    def _key(self) -> tuple[Any, ...]:
        return (self.model_fn, self.likelihood, self.num_samples)

    def __call__(self, operands: Any, v: Any, positions: Any, *inputs: Any) -> Any:
        params, key, variance = operands
        op = _fisher_batch(self.model_fn, params, inputs, self.likelihood, self.num_samples, key, variance, positions)
        return op(_cast_like(params, v))

    def __hash__(self) -> int:
        return hash((FisherProduct, *self._key()))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FisherProduct) and other._key() == self._key()


def fisher_operator(
    model_fn: Callable[..., Any],
    params: Any,
    *args: Any,
    likelihood: str = "categorical",
    num_samples: int | None = None,
    key: jax.Array | None = None,
    variance: float = 1.0,
    batches: Iterable[Any] | None = None,
) -> Matvec:
    """The Fisher information of the model's predictive distribution as a map `v ↦ F v`.

    The model `f(θ, x)` parametrises a likelihood `p(y | f)`; its Fisher, averaged over the
    `N` inputs, is

    $$F = \\frac{1}{N} \\sum_{n=1}^{N} \\mathbb{E}_{\\hat y \\sim p(\\cdot \\mid f_n)}
    \\big[\\nabla_\\theta \\log p(\\hat y \\mid f_n)\\, \\nabla_\\theta \\log p(\\hat y \\mid f_n)^\\top\\big]
    = \\frac{1}{N} \\sum_{n=1}^{N} J_n^\\top H_n J_n ,$$

    with `J_n = ∂f(θ, x_n)/∂θ` and `H_n` the Hessian of `−log p(y | f)` in output space, which for
    these likelihoods does not depend on `y`:

    * `"categorical"`: `outputs` are logits with the classes on the last axis,
      `H_n = diag(p_n) − p_n p_nᵀ`, `p_n = softmax(f_n)` (block-diagonal over any axes between the
      batch and class axes: each position is its own categorical, an example's log-likelihood
      sums over them);
    * `"gaussian"`: `outputs` are the means of `N(f_n, variance · I)` (all trailing axes),
      `H_n = I / variance`.

    So `F` is the generalized Gauss-Newton matrix of the mean negative log-likelihood (softmax
    cross-entropy, or squared error `‖f − y‖²/(2·variance)`), and needs no targets: `args` are
    the model's inputs only.

    With `num_samples=S` the expectation is replaced by `S` targets per example drawn with
    `key` ([`sample_targets`][gradtx.curvature.sample_targets]):

    $$\\hat F = \\frac{1}{N S} \\sum_{n, s} \\hat g_{n,s} \\hat g_{n,s}^\\top, \\qquad
    \\hat g_{n,s} = \\nabla_\\theta \\big[-\\log p(\\hat y_{n,s} \\mid f_n)\\big] = J_n^\\top e_{n,s},$$

    the empirical Fisher of the sampled targets' gradients, an unbiased estimate of `F` of rank at
    most `N·S`. It is computed as `Jᵀ Ĥ J` with `Ĥ_n = (1/S) Σ_s e_{n,s} e_{n,s}ᵀ` in output space,
    so a product costs the same as for the exact Fisher. The samples are drawn once, when the
    operator is built: every product uses the same `F̂` (a fixed linear map, as Lanczos needs).

    Each example draws its targets with its own key, from its position `n = 0, …, N − 1` in the
    data (over the batches in the order they come, for `batches=`):

    $$\\hat y_{n,1}, \\dots, \\hat y_{n,S} \\ \\text{drawn with the key}\\ \\mathrm{fold\\_in}(\\mathrm{key},\\ n),$$

    so the `N·S` targets are independent (two equal inputs at different positions get
    independent targets), and `F̂` does not depend on how the data is cut into batches: one batch
    of all `N` inputs, a `Batched` data set and a stream of the same inputs in the same order
    give the same `F̂` (up to floating-point summation order). A stream is read again on every
    product and must yield the same batches in the same order each time (or `F̂` changes from
    one product to the next, as the data would).

    Signature convention: `model_fn(params, *inputs) -> outputs` with a leading batch axis; a
    batch is `args = inputs` (no targets).

    Args:
        model_fn: `model_fn(params, *inputs) -> outputs`, an array of shape `(batch, ...)`
            (`(batch, ..., classes)` logits for `"categorical"`).
        params: the point θ, a pytree of float arrays.
        *args: one batch of inputs.
        likelihood: `"categorical"` or `"gaussian"`. Default `"categorical"`.
        num_samples: None (default) for the exact Fisher, or an int ≥ 1, the number `S` of
            sampled targets per example for the Monte-Carlo Fisher.
        key: PRNG key for the sampled targets; only with `num_samples` (default None, then
            `jax.random.PRNGKey(0)`). Example `n` of the data draws with `fold_in(key, n)` (see
            above; [`sample_targets`][gradtx.curvature.sample_targets] with `offset=` draws the
            same targets).
        variance: the variance `σ² > 0` of the Gaussian likelihood (ignored for
            `"categorical"`). Default 1.0.
        batches: instead of `*args`, the inputs as a [`Batched`][gradtx.curvature.Batched] data
            set or a stream of batches (see [`gradtx.curvature.streaming`][gradtx.curvature.streaming]);
            the operator is `Σ_i (n_i/N) F_i`, the mean over all `N` examples. Default None.

    Returns:
        `matvec(v) -> F v`, with `v` and the result pytrees like `params`; for a stream, a
        [`StreamingOperator`][gradtx.curvature.StreamingOperator].

    Raises:
        TypeError: `model_fn` not callable, `key` not a PRNG key.
        ValueError: `likelihood` not in `LIKELIHOODS`, `num_samples < 1`, `variance ≤ 0`, `key`
            without `num_samples`, outputs without a batch (and class) axis, or (Monte-Carlo) a
            batch axis of another length than the batch's (its first array's leading length).

    References:
        Amari, *Natural gradient works efficiently in learning*, Neural Computation 10(2), 1998.
        Martens, *New insights and perspectives on the natural gradient method*, JMLR 21, 2020.
        Kunstner, Hennig & Balles, *Limitations of the empirical Fisher approximation for natural
        gradient descent*, NeurIPS 2019.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.curvature import fisher_operator
        >>> x = jnp.array([[1.0, 2.0]])
        >>> model = lambda w, x: x @ w  # a linear-Gaussian model: F = xᵀx / variance
        >>> fisher = fisher_operator(model, jnp.zeros((2, 1)), x, likelihood="gaussian", variance=2.0)
        >>> fisher(jnp.array([[1.0], [0.0]]))
        Array([[0.5],
               [1. ]], dtype=float32)
    """
    owner = "fisher_operator"
    if not callable(model_fn):
        raise TypeError(f"{owner}: model_fn must be callable, got {type(model_fn).__name__}")
    if not isinstance(likelihood, str) or likelihood not in LIKELIHOODS:
        raise ValueError(f"{owner}: likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
    if num_samples is not None:
        check_int(owner, "num_samples", num_samples, low=1)
        if isinstance(num_samples, jax.core.Tracer):
            raise TypeError(f"{owner}: num_samples must be a static Python int, got a traced value")
        key = jax.random.PRNGKey(0) if key is None else check_key(owner, key)
    elif key is not None:
        raise ValueError(f"{owner}: key is only used by the Monte-Carlo Fisher; give num_samples=S (an int "
                         "≥ 1) with it, or drop key for the exact Fisher")
    check_real(owner, "variance", variance, low=0.0, low_inclusive=False)
    model_fn = static_callable(owner, "model_fn", model_fn)
    if batches is None:  # one batch: linearize once, reuse for every product
        return _checked(owner, params, _fisher_batch(model_fn, params, args, likelihood, num_samples, key, variance))
    product = FisherProduct(model_fn, likelihood, num_samples)
    operands = (params, jax.random.PRNGKey(0) if key is None else key, variance)
    if args:
        raise ValueError(f"{owner}: give either one batch as positional arguments or batches=..., not both "
                         f"(got {len(args)} positional argument(s) and batches)")
    # every batch carries its examples' data-set positions as a leading argument (their sampling keys)
    if isinstance(batches, Batched):
        data = Batched(jnp.arange(batches.num_examples, dtype=jnp.uint32), *batches.args, batch_size=batches.batch_size)
        return lambda v: data.mean(lambda positions, *b: product(operands, v, positions, *b))
    # the key and variance ride along with the params (traced), the vectors are shaped like params
    stream = _numbered(owner, batch_stream(owner, batches))
    return StreamingOperator(owner, product, operands, stream, template=params)


def _numbered(owner: str, stream: Callable[[], Iterator[Any]]) -> Callable[[], Iterator[Any]]:
    """The stream with each batch `args` replaced by `(positions, *args)`, `positions` the uint32
    data-set positions of its examples (counted on the host from the batch sizes, from 0 each pass)."""

    def fresh() -> Iterator[Any]:
        offset = 0
        for args, n in sized_batches(owner, stream):
            item = ((np.arange(offset, offset + n) % 2**32).astype(np.uint32), *args)
            offset += n
            del args  # hold no batch while the consumer loads the next one
            yield item
            del item

    return fresh
