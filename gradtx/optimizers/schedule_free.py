"""Schedule-Free SGD and AdamW: `schedule_free` around a momentum-free base optimizer.

Both follow `optax.contrib` 0.2.8 (the same chains, hence the same state layout and numbers);
they are exported from `gradtx.contrib`.
"""

from typing import Any

from gradtx import _validation as v
from gradtx.base import GradientTransformation, chain, describe
from gradtx.optimizers import _checks
from gradtx.optimizers.sgd import sgd
from gradtx.schedules import warmup_constant_schedule
from gradtx.transforms import add_decayed_weights, scale_by_learning_rate, scale_by_rms
from gradtx.transforms.schedule_free import schedule_free

__all__ = ["schedule_free_adamw", "schedule_free_sgd"]


def _warmup(owner: str, learning_rate: Any, warmup_steps: Any) -> Any:
    if warmup_steps is None:
        return learning_rate
    v.check_int(owner, "warmup_steps", warmup_steps, low=1)
    return warmup_constant_schedule(init_value=0, peak_value=learning_rate, warmup_steps=warmup_steps)


@describe
def schedule_free_sgd(
    learning_rate: float = 1.0,
    warmup_steps: int | None = None,
    b1: float = 0.9,
    weight_decay: float | None = None,
    weight_lr_power: float = 2.0,
    state_dtype: Any = None,
) -> GradientTransformation:
    r"""Schedule-Free SGD: [`schedule_free`][gradtx.contrib.schedule_free] around plain SGD.

    $z_{t+1} = z_t - \gamma_t\,(\nabla f(y_t) + \lambda\, y_t)$, then the schedule-free
    averaging and interpolation (see `schedule_free`). It is
    `schedule_free(sgd(lr), lr, b1, weight_lr_power, state_dtype)`, with
    `add_decayed_weights(weight_decay)` chained before the SGD when `weight_decay` is given and
    `lr = warmup_constant_schedule(0, learning_rate, warmup_steps)` when `warmup_steps` is
    given, as `optax.contrib.schedule_free_sgd`. Evaluate at
    [`schedule_free_eval_params`][gradtx.contrib.schedule_free_eval_params].

    Args:
        learning_rate: $\gamma$, a real number `>= 0`; default 1.0.
        warmup_steps: an integer `>= 1`, the length of a linear warm-up from 0; None (default)
            for none.
        b1: $\beta_1$, the interpolation weight; in `(0, 1]`, default 0.9.
        weight_decay: $\lambda$ `>= 0` (multiplied by the learning rate, as in PyTorch), or None
            (default) for none.
        weight_lr_power: power of the learning rate in the averaging weights; default 2.0.
        state_dtype: dtype of $z$, or None (default: the params' dtype).

    Returns:
        A `GradientTransformation`; its `update` requires `params`.

    References:
        Defazio et al., *The Road Less Scheduled*, NeurIPS 2024 (arXiv:2405.15682).
    """
    owner = "schedule_free_sgd"
    _checks.learning_rate(owner, learning_rate)
    if weight_decay is not None:
        _checks.weight_decay(owner, weight_decay)
    learning_rate = _warmup(owner, learning_rate, warmup_steps)
    optimizer = sgd(learning_rate)
    if weight_decay is not None:
        optimizer = chain(add_decayed_weights(weight_decay), optimizer)
    return schedule_free(
        optimizer,
        learning_rate=learning_rate,
        b1=b1,
        weight_lr_power=weight_lr_power,
        state_dtype=state_dtype,
    )


@describe
def schedule_free_adamw(
    learning_rate: float = 0.0025,
    warmup_steps: int | None = None,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    weight_lr_power: float = 2.0,
    state_dtype: Any = None,
) -> GradientTransformation:
    r"""Schedule-Free AdamW: [`schedule_free`][gradtx.contrib.schedule_free] around RMSProp-with-debiasing.

    The base step is Adam without momentum plus decoupled weight decay,

    $$v_t = \beta_2 v_{t-1} + (1-\beta_2)\, g_t^2,\qquad
      z_{t+1} = z_t - \gamma_t\Big(\frac{g_t}{\sqrt{v_t/(1-\beta_2^t)} + \epsilon}
      + \lambda\, y_t\Big),$$

    then the schedule-free averaging and interpolation with weight $\beta_1$. It is
    `schedule_free(chain(scale_by_rms(b2, eps, eps_in_sqrt=False, bias_correction=True),
    add_decayed_weights(weight_decay), scale_by_learning_rate(lr)), lr, b1, ...)`, as
    `optax.contrib.schedule_free_adamw` (`scale_by_rms` in place of an Adam with `b1=0`, which
    would keep a first moment that is always zero).

    Args:
        learning_rate: $\gamma$, a real number `>= 0`; default 0.0025.
        warmup_steps: an integer `>= 1`, the length of a linear warm-up from 0; None (default)
            for none.
        b1: $\beta_1$, the interpolation weight; in `(0, 1]`, default 0.9.
        b2: $\beta_2$, the decay of the second moment; in `[0, 1)`, default 0.999.
        eps: $\epsilon$, added to the root of the second moment; `>= 0`, default 1e-8.
        weight_decay: $\lambda$ `>= 0`; default 0.0.
        weight_lr_power: power of the learning rate in the averaging weights; default 2.0.
        state_dtype: dtype of $z$, or None (default: the params' dtype).

    Returns:
        A `GradientTransformation`; its `update` requires `params`.

    References:
        Defazio et al., *The Road Less Scheduled*, NeurIPS 2024 (arXiv:2405.15682).
    """
    owner = "schedule_free_adamw"
    _checks.learning_rate(owner, learning_rate)
    _checks.beta(owner, "b2", b2)
    _checks.nonneg(owner, "eps", eps)
    _checks.weight_decay(owner, weight_decay)
    learning_rate = _warmup(owner, learning_rate, warmup_steps)
    optimizer = chain(
        scale_by_rms(decay=b2, eps=eps, eps_in_sqrt=False, bias_correction=True),
        add_decayed_weights(weight_decay),
        scale_by_learning_rate(learning_rate),
    )
    return schedule_free(
        optimizer,
        learning_rate=learning_rate,
        b1=b1,
        weight_lr_power=weight_lr_power,
        state_dtype=state_dtype,
    )
