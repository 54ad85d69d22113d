"""Lion: sign-of-momentum updates with decoupled weight decay."""

from typing import Any

from gradtx import _validation as v
from gradtx.base import GradientTransformation, ScalarOrSchedule, chain, describe
from gradtx.optimizers import _checks
from gradtx.optimizers.adam import MaskOrFn
from gradtx.transforms import add_decayed_weights, scale_by_learning_rate, scale_by_lion

__all__ = ["lion"]


@describe
def lion(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.99,
    mu_dtype: Any = None,
    weight_decay: ScalarOrSchedule = 1e-3,
    mask: MaskOrFn = None,
) -> GradientTransformation:
    r"""Lion (EvoLved Sign Momentum): the sign of an interpolated momentum, plus weight decay.

    $$c_t = \beta_1 m_{t-1} + (1-\beta_1)\,g_t,\qquad
      m_t = \beta_2 m_{t-1} + (1-\beta_2)\,g_t,\qquad m_0 = 0$$
    $$u_t = -\eta\,\big(\operatorname{sign}(c_t) + \lambda\, p_{t-1}\big)$$

    Every coordinate moves by about $\eta$, so Lion usually wants a learning rate 3-10 times
    smaller and a weight decay 3-10 times larger than AdamW. It is
    `chain(scale_by_lion(b1, b2, mu_dtype), add_decayed_weights(weight_decay, mask),
    scale_by_learning_rate(lr))`, as `optax.lion`; `update` needs `params`.

    Args:
        learning_rate: step size $\eta$: a real number `>= 0` or a schedule of the step count.
        b1: $\beta_1$, the interpolation used for the sign; in `[0, 1]`, default 0.9.
        b2: $\beta_2$, the decay of the momentum; in `[0, 1]`, default 0.99.
        mu_dtype: dtype of the momentum, or None (default: the params' dtype); complex dtypes
            are accepted for complex params. Integer params raise a `TypeError` at `init`.
        weight_decay: $\lambda$: a real number `>= 0` or a schedule; default 1e-3 (as optax).
        mask: a pytree of booleans (or a function of the params returning one) selecting the
            decayed leaves; None (default) decays all.

    Returns:
        A `GradientTransformation`.

    References:
        Chen et al., *Symbolic Discovery of Optimization Algorithms*, NeurIPS 2023
        (arXiv:2302.06675).
    """
    owner = "lion"
    _checks.learning_rate(owner, learning_rate)
    _checks.beta(owner, "b1", b1, closed=True)
    _checks.beta(owner, "b2", b2, closed=True)
    v.check_dtype(owner, "mu_dtype", mu_dtype, allow_complex=True)
    _checks.weight_decay(owner, weight_decay)
    return chain(
        scale_by_lion(b1=b1, b2=b2, mu_dtype=mu_dtype),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )
