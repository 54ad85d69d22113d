"""DP-SGD: differentially private stochastic gradient descent."""

import numbers

import jax
import jax.numpy as jnp
import numpy as np

from gradtx import _validation as v
from gradtx.base import GradientTransformation, ScalarOrSchedule, chain, describe, identity
from gradtx.optimizers import _checks
from gradtx.transforms import scale_by_learning_rate, trace
from gradtx.transforms.privacy import differentially_private_aggregate

__all__ = ["dpsgd"]


def _check_seed(owner: str, seed: object) -> None:
    if v.is_traced(seed):
        return
    if isinstance(seed, jax.Array) and jnp.issubdtype(seed.dtype, jax.dtypes.prng_key):
        return
    integral = isinstance(seed, (numbers.Integral, np.integer)) or (
        isinstance(seed, (jax.Array, np.ndarray)) and np.ndim(seed) == 0 and np.issubdtype(seed.dtype, np.integer)
    )
    if isinstance(seed, bool) or not integral:
        raise TypeError(f"{owner}: seed must be an integer (or a jax.random.key), got {type(seed).__name__}: {seed!r}")


@describe(checks_state=False)
def dpsgd(
    learning_rate: ScalarOrSchedule,
    l2_norm_clip: float,
    noise_multiplier: float,
    seed: int,
    momentum: float | None = None,
    nesterov: bool = False,
) -> GradientTransformation:
    r"""DP-SGD: SGD on clipped, noised per-example gradients (differential privacy).

    Its updates are per-example gradients $g^{(b)}$, $b = 1..B$ (every leaf with the batch on
    its leading axis, e.g. from `jax.vmap(jax.grad(loss), in_axes=(None, 0))`). Each step

    $$\bar g_t = \frac{1}{B}\Big(\sum_b g^{(b)}_t \min\!\Big(1, \frac{C}{\|g^{(b)}_t\|_2}\Big)
    + \sigma C\,\xi_t\Big),\qquad \xi_t \sim \mathcal N(0, I),$$

    then, as in [`sgd`][gradtx.sgd], $u_t = -\eta_t\, \bar g_t$, or with momentum $\mu$
    $m_t = \bar g_t + \mu\, m_{t-1}$, $u_t = -\eta_t\, m_t$ (Nesterov:
    $u_t = -\eta_t(\bar g_t + \mu\, m_t)$). Clipping bounds each example's influence and the noise
    hides it; the privacy budget spent follows from $\sigma$, the sampling rate and the number
    of steps (use a privacy accountant).

    It is `chain(differentially_private_aggregate(l2_norm_clip, noise_multiplier, key=seed),
    trace(momentum, nesterov) or identity(), scale_by_learning_rate(learning_rate))`, the chain
    of `optax.contrib.dpsgd`: the same state layout and, for the same seed, the same noise.

    Args:
        learning_rate: step size $\eta$: a real number `>= 0` or a schedule of the step count.
        l2_norm_clip: the bound $C$ on each example's gradient norm (required), > 0.
        noise_multiplier: the noise's standard deviation relative to $C$, $\sigma$ (required),
            >= 0.
        seed: the integer seed of the noise (required); a `jax.random.key` is accepted too.
        momentum: the momentum decay $\mu$ in `[0, 1]`, or None (default) for none.
        nesterov: use Nesterov's look-ahead form; default False. Requires a momentum (optax
            silently ignores `nesterov=True` without momentum; gradtx raises).

    Returns:
        A `GradientTransformation`; its state is
        `(DifferentiallyPrivateAggregateState, TraceState or EmptyState, lr state)`.

    References:
        Abadi, Chu, Goodfellow, McMahan, Mironov, Talwar & Zhang, *Deep Learning with
        Differential Privacy*, CCS 2016 (arXiv:1607.00133).

    Example:
        >>> import gradtx, jax, jax.numpy as jnp
        >>> def loss(w, x, y):
        ...     return (x @ w - y) ** 2
        >>> w, xs, ys = jnp.zeros(3), jnp.ones((16, 3)), jnp.ones(16)
        >>> per_example = jax.vmap(jax.grad(loss), in_axes=(None, 0, 0))(w, xs, ys)  # (16, 3)
        >>> tx = gradtx.dpsgd(0.1, l2_norm_clip=1.0, noise_multiplier=1.1, seed=0)
        >>> updates, state = tx.update(per_example, tx.init(w), w)
        >>> updates.shape
        (3,)
    """
    owner = "dpsgd"
    _checks.learning_rate(owner, learning_rate)
    v.check_real(owner, "l2_norm_clip", l2_norm_clip, low=0.0, low_inclusive=False)
    v.check_real(owner, "noise_multiplier", noise_multiplier, low=0.0)
    _check_seed(owner, seed)
    _checks.momentum_and_nesterov(owner, momentum, nesterov)
    accumulate = identity() if momentum is None else trace(decay=momentum, nesterov=nesterov)
    return chain(
        differentially_private_aggregate(l2_norm_clip=l2_norm_clip, noise_multiplier=noise_multiplier, key=seed),
        accumulate,
        scale_by_learning_rate(learning_rate),
    )
