"""LAMB: Adam directions rescaled layer by layer by a trust ratio."""

from gradtx.base import GradientTransformation, ScalarOrSchedule, chain, describe
from gradtx.optimizers import _checks
from gradtx.optimizers.adam import MaskOrFn
from gradtx.transforms import add_decayed_weights, scale_by_adam, scale_by_learning_rate, scale_by_trust_ratio

__all__ = ["lamb"]


@describe
def lamb(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-6,
    eps_root: float = 0.0,
    weight_decay: ScalarOrSchedule = 0.0,
    mask: MaskOrFn = None,
) -> GradientTransformation:
    r"""LAMB: layer-wise adaptive moments, for large-batch training.

    With $d_t$ the bias-corrected Adam direction
    $\hat m_t / (\sqrt{\hat v_t + \epsilon_{root}} + \epsilon)$ (see [`adam`][gradtx.adam])
    and, for each leaf (layer) with params $p_{t-1}$,

    $$r_t = d_t + \lambda\, p_{t-1},\qquad
      u_t = -\eta\,\frac{\|p_{t-1}\|}{\|r_t\|}\, r_t$$

    where the ratio of the L2 norms (over the whole leaf) is replaced by 1 when either norm is
    0. It is `chain(scale_by_adam(b1, b2, eps, eps_root), add_decayed_weights(weight_decay,
    mask), scale_by_trust_ratio(), scale_by_learning_rate(lr))`, as `optax.lamb`; `update`
    needs `params`.

    Args:
        learning_rate: step size $\eta$: a real number `>= 0` or a schedule of the step count.
        b1: $\beta_1$ in `[0, 1)`, default 0.9.
        b2: $\beta_2$ in `[0, 1)`, default 0.999.
        eps: real `>= 0`, default 1e-6.
        eps_root: real `>= 0`, default 0.0.
        weight_decay: $\lambda$: a real number `>= 0` or a schedule; default 0.0.
        mask: a pytree of booleans (or a function of the params returning one) selecting the
            decayed leaves; None (default) decays all.

    Returns:
        A `GradientTransformation`.

    References:
        You et al., *Large Batch Optimization for Deep Learning: Training BERT in 76 minutes*,
        ICLR 2020 (arXiv:1904.00962).
    """
    owner = "lamb"
    _checks.learning_rate(owner, learning_rate)
    _checks.beta(owner, "b1", b1)
    _checks.beta(owner, "b2", b2)
    _checks.nonneg(owner, "eps", eps)
    _checks.nonneg(owner, "eps_root", eps_root)
    _checks.weight_decay(owner, weight_decay)
    return chain(
        scale_by_adam(b1=b1, b2=b2, eps=eps, eps_root=eps_root),
        add_decayed_weights(weight_decay=weight_decay, mask=mask),
        scale_by_trust_ratio(),
        scale_by_learning_rate(learning_rate),
    )
