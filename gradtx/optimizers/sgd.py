"""Stochastic gradient descent, with optional heavy-ball or Nesterov momentum."""

from typing import Any

from gradtx import _validation as v
from gradtx.base import GradientTransformation, ScalarOrSchedule, chain, describe, identity
from gradtx.optimizers import _checks
from gradtx.transforms import scale_by_learning_rate, trace

__all__ = ["sgd"]


@describe
def sgd(
    learning_rate: ScalarOrSchedule,
    momentum: float | None = None,
    nesterov: bool = False,
    accumulator_dtype: Any = None,
) -> GradientTransformation:
    r"""Stochastic gradient descent, optionally with momentum.

    With learning rate $\eta_t$ (a schedule is evaluated at the step count $t = 0, 1, \dots$
    before the update), gradient $g_t$ and momentum $\mu$:

    * no momentum: $u_t = -\eta_t\, g_t$;
    * heavy ball: $m_t = g_t + \mu\, m_{t-1}$ ($m_{-1} = 0$), $u_t = -\eta_t\, m_t$;
    * Nesterov: $m_t = g_t + \mu\, m_{t-1}$, $u_t = -\eta_t\,(g_t + \mu\, m_t)$.

    It is `chain(trace(momentum, nesterov, accumulator_dtype), scale_by_learning_rate(lr))`
    (`identity()` in place of the `trace` when `momentum` is None), the same chain, hence the
    same state layout, as `optax.sgd`.

    Args:
        learning_rate: step size $\eta$: a real number `>= 0` or a schedule of the step count.
        momentum: the momentum decay $\mu$ in `[0, 1]`, or None (default) for plain SGD.
        nesterov: use Nesterov's look-ahead form; default False. Requires a momentum (optax
            silently ignores `nesterov=True` without momentum; gradtx raises).
        accumulator_dtype: dtype of the momentum buffer (e.g. `jnp.bfloat16`, or a complex
            dtype for complex params); None (default) uses each param's dtype.

    Integer inputs. Integer (or Python-int) gradient leaves are promoted to float32, so the
    updates are optax's `-lr * g` in float32. With momentum, an integer params leaf raises a
    `TypeError` at `init` naming the leaf (the momentum buffer would be rounded to integers);
    without momentum there is no state and the float updates are returned as optax does
    (`apply_updates` then casts them to the param's integer dtype).

    Returns:
        A `GradientTransformation`; its state is `(TraceState or EmptyState, lr state)`.

    References:
        Robbins & Monro, *A Stochastic Approximation Method*, 1951; Polyak, *Some methods of
        speeding up the convergence of iteration methods*, 1964; Sutskever, Martens, Dahl &
        Hinton, *On the importance of initialization and momentum in deep learning*, ICML 2013.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.sgd(0.1, momentum=0.9)
        >>> params = {"w": jnp.ones(3)}
        >>> updates, state = tx.update({"w": jnp.ones(3)}, tx.init(params))
        >>> updates["w"]
        Array([-0.1, -0.1, -0.1], dtype=float32)
    """
    owner = "sgd"
    _checks.learning_rate(owner, learning_rate)
    _checks.momentum_and_nesterov(owner, momentum, nesterov)
    v.check_dtype(owner, "accumulator_dtype", accumulator_dtype, allow_complex=True)
    if momentum is None:
        accumulate = identity()
    else:
        accumulate = trace(decay=momentum, nesterov=nesterov, accumulator_dtype=accumulator_dtype)
    return chain(accumulate, scale_by_learning_rate(learning_rate))
