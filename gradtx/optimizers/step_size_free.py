"""SGD with Polyak's step size: the step is set from the objective's value."""

from gradtx import _validation as v
from gradtx.base import GradientTransformation, ScalarOrSchedule, chain, describe
from gradtx.optimizers.sgd import sgd
from gradtx.transforms.step_size_free import check_polyak, scale_by_polyak

__all__ = ["polyak_sgd"]


@describe
def polyak_sgd(
    max_learning_rate: float = 1.0,
    scaling: ScalarOrSchedule = 1.0,
    f_min: float = 0.0,
    eps: float = 0.0,
    variant: str = "sps",
) -> GradientTransformation:
    r"""SGD with the stochastic Polyak step size (SPS).

    With $f$ the objective's value at the current params (passed as `update(..., value=f)`),
    $f^\star$ = `f_min`, $s_t$ = `scaling` and $g_t$ the gradient:

    $$d_t = -s_t\, g_t,\qquad
    \gamma_t = \min\left(\frac{f - f^\star}{\|d_t\|_2^2 + \epsilon},\ \gamma_{max}\right),\qquad
    u_t = \gamma_t\, d_t,$$

    and $\gamma_t = 0$ when $\|d_t\|_2^2 + \epsilon \le 2.2\cdot10^{-16}$. With the default
    `scaling=1` this is the step $\min\big((f - f^\star)/(\|g\|^2 + \epsilon), \gamma_{max}\big)$
    of Loizou et al.; another `scaling` enters the norm too (as in optax, whose docstring shows
    $s$ outside the minimum). `variant="sps+"` uses the gap $\max(f - f^\star, 0)$.

    It is `chain(sgd(scaling), scale_by_polyak(max_learning_rate, f_min, eps, variant))`, as
    `optax.polyak_sgd`.

    Warning:
        `f_min` must be a reasonable lower bound of the objective (0 for models that can fit
        their data exactly); a poor guess makes the steps too long or too short.

    Args:
        max_learning_rate: the cap $\gamma_{max}$, default 1.0, >= 0.
        scaling: $s_t$, a real number `>= 0` or a schedule of the step count, default 1.0.
        f_min: $f^\star$, default 0.0; any finite real number.
        eps: added to the squared norm, default 0.0, >= 0.
        variant: `"sps"` (default) or `"sps+"`.

    Returns:
        A `GradientTransformation` whose `update` needs the keyword argument `value` (a real
        scalar). Its state is `((EmptyState(), lr state), EmptyState())`.

    References:
        Loizou, Vaswani, Laradji & Lacoste-Julien, *Stochastic Polyak Step-size for SGD: An
        Adaptive Learning Rate for Fast Convergence*, AISTATS 2021.
        Berrada, Zisserman & Kumar, *Training Neural Networks for and by Interpolation*, ICML 2020.
        Garrigos, Gower & Schaipp, *Function Value Learning: Adaptive Learning Rates Based on the
        Polyak Stepsize and Function Splitting in ERM*, 2023.

    Example:
        >>> import gradtx, jax, jax.numpy as jnp
        >>> f = lambda x: jnp.sum(x ** 2)
        >>> tx = gradtx.polyak_sgd()
        >>> params = jnp.array([1.0, 2.0, 3.0])
        >>> state = tx.init(params)
        >>> value, grad = jax.value_and_grad(f)(params)
        >>> updates, state = tx.update(grad, state, params, value=value)
        >>> f(gradtx.apply_updates(params, updates))
        Array(3.5, dtype=float32)
    """
    owner = "polyak_sgd"
    v.check_schedule_or_real(owner, "scaling", scaling, low=0.0)
    check_polyak(owner, f_min, max_learning_rate, eps, variant)
    return chain(
        sgd(learning_rate=scaling),
        scale_by_polyak(max_learning_rate=max_learning_rate, f_min=f_min, eps=eps, variant=variant),
    )
