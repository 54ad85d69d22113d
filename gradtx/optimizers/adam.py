"""Adam and its relatives: AdamW, NAdam, NAdamW, AMSGrad and AdaMax."""

from collections.abc import Callable
from typing import Any

from gradtx import _validation as v
from gradtx.base import GradientTransformation, Params, ScalarOrSchedule, chain, describe
from gradtx.optimizers import _checks
from gradtx.transforms import (
    add_decayed_weights,
    scale_by_adam,
    scale_by_adamax,
    scale_by_amsgrad,
    scale_by_learning_rate,
)

__all__ = ["adam", "adamax", "adamw", "amsgrad", "nadam", "nadamw"]

MaskOrFn = Any | Callable[[Params], Any] | None


def _check_adam(owner, learning_rate, b1, b2, eps, eps_root, mu_dtype, nesterov) -> None:
    _checks.learning_rate(owner, learning_rate)
    _checks.beta(owner, "b1", b1)
    _checks.beta(owner, "b2", b2)
    _checks.nonneg(owner, "eps", eps)
    _checks.nonneg(owner, "eps_root", eps_root)
    v.check_dtype(owner, "mu_dtype", mu_dtype, allow_complex=True)
    v.check_bool(owner, "nesterov", nesterov)


def _adam_chain(learning_rate, b1, b2, eps, eps_root, mu_dtype, nesterov) -> GradientTransformation:
    return chain(
        scale_by_adam(b1=b1, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype, nesterov=nesterov),
        scale_by_learning_rate(learning_rate),
    )


def _adamw_chain(
    learning_rate, b1, b2, eps, eps_root, mu_dtype, weight_decay, mask, nesterov
) -> GradientTransformation:
    return chain(
        scale_by_adam(b1=b1, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype, nesterov=nesterov),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


@describe
def adam(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    *,
    nesterov: bool = False,
) -> GradientTransformation:
    r"""Adam: bias-corrected first and second moment estimates.

    With $t = 1, 2, \dots$ the number of updates done so far (this one included) and
    $\eta$ evaluated at $t - 1$ when it is a schedule:

    $$m_t = \beta_1 m_{t-1} + (1-\beta_1)\,g_t,\qquad
      v_t = \beta_2 v_{t-1} + (1-\beta_2)\,g_t^2,\qquad m_0 = v_0 = 0$$
    $$\hat m_t = \frac{m_t}{1-\beta_1^t}\ \Big(\text{Nesterov: }
      \hat m_t = \frac{\beta_1 m_t}{1-\beta_1^{t+1}} + \frac{(1-\beta_1)\,g_t}{1-\beta_1^t}\Big),
      \qquad \hat v_t = \frac{v_t}{1-\beta_2^t}$$
    $$d_t = \frac{\hat m_t}{\sqrt{\hat v_t + \epsilon_{root}} + \epsilon}$$

    and the update is $u_t = -\eta\, d_t$. It is
    `chain(scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=...), scale_by_learning_rate(lr))`,
    as `optax.adam`.

    Args:
        learning_rate: step size $\eta$: a real number `>= 0` or a schedule of the step count.
        b1: $\beta_1$, decay of the first moment; in `[0, 1)`, default 0.9.
        b2: $\beta_2$, decay of the second moment; in `[0, 1)`, default 0.999.
        eps: $\epsilon$, added to the root of the second moment; real `>= 0`, default 1e-8.
        eps_root: $\epsilon_{root}$, added inside the root (useful when differentiating through
            the update); real `>= 0`, default 0.0.
        mu_dtype: dtype of the first moment (e.g. `jnp.bfloat16`, or `"complex64"` for
            complex params); None (default) uses the params' dtype.
        nesterov: use the Nesterov (NAdam) first moment; keyword-only, default False.

    Returns:
        A `GradientTransformation`.

    Raises:
        TypeError: at `init`, naming the leaf, for an integer or boolean params leaf (its moments
            and updates would be rounded to integers; optax silently returns other numbers), or
            for a complex `mu_dtype` with real params (or a real one with complex params).

    Python-scalar leaves (`{"w": 1.0}`) are accepted in params and gradients, as in optax, and
    integer gradient leaves are promoted to float32 (see `gradtx.numerics.float_updates`).

    References:
        Kingma & Ba, *Adam: A Method for Stochastic Optimization*, ICLR 2015 (arXiv:1412.6980).

    Example:
        >>> import gradtx
        >>> gradtx.adam(0.003)
        adam(learning_rate=0.003, b1=0.9, b2=0.999, eps=1e-08, eps_root=0.0, mu_dtype=None, nesterov=False)
    """
    _check_adam("adam", learning_rate, b1, b2, eps, eps_root, mu_dtype, nesterov)
    return _adam_chain(learning_rate, b1, b2, eps, eps_root, mu_dtype, nesterov)


@describe
def nadam(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    *,
    nesterov: bool = True,
) -> GradientTransformation:
    r"""NAdam: Adam with a Nesterov-style first moment (`adam(..., nesterov=True)`).

    With $t = 1, 2, \dots$ the number of updates done so far (this one included) and
    $\eta$ evaluated at $t - 1$ when it is a schedule:

    $$m_t = \beta_1 m_{t-1} + (1-\beta_1)\,g_t,\qquad
      v_t = \beta_2 v_{t-1} + (1-\beta_2)\,g_t^2,\qquad m_0 = v_0 = 0$$
    $$\hat m_t = \frac{m_t}{1-\beta_1^t}\ \Big(\text{Nesterov: }
      \hat m_t = \frac{\beta_1 m_t}{1-\beta_1^{t+1}} + \frac{(1-\beta_1)\,g_t}{1-\beta_1^t}\Big),
      \qquad \hat v_t = \frac{v_t}{1-\beta_2^t}$$
    $$d_t = \frac{\hat m_t}{\sqrt{\hat v_t + \epsilon_{root}} + \epsilon}$$

    with the Nesterov $\hat m_t$, and $u_t = -\eta\, d_t$. Same arguments as
    [`adam`][gradtx.adam]; `nesterov` defaults to True here (as in optax, where `nadam` is
    `adam` with `nesterov=True`).

    Args:
        learning_rate: step size $\eta$: a real number `>= 0` or a schedule of the step count.
        b1: $\beta_1$ in `[0, 1)`, default 0.9.
        b2: $\beta_2$ in `[0, 1)`, default 0.999.
        eps: real `>= 0`, default 1e-8.
        eps_root: real `>= 0`, default 0.0.
        mu_dtype: dtype of the first moment: None (default, the params' dtype), a floating
            dtype, or a complex one for complex params.
        nesterov: keyword-only, default True (False gives plain Adam).

    Returns:
        A `GradientTransformation`.

    References:
        Dozat, *Incorporating Nesterov Momentum into Adam*, ICLR 2016 workshop.
    """
    _check_adam("nadam", learning_rate, b1, b2, eps, eps_root, mu_dtype, nesterov)
    return _adam_chain(learning_rate, b1, b2, eps, eps_root, mu_dtype, nesterov)


def _check_adamw(owner, learning_rate, b1, b2, eps, eps_root, mu_dtype, weight_decay, nesterov) -> None:
    _check_adam(owner, learning_rate, b1, b2, eps, eps_root, mu_dtype, nesterov)
    _checks.weight_decay(owner, weight_decay)


@describe
def adamw(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    weight_decay: ScalarOrSchedule = 1e-4,
    mask: MaskOrFn = None,
    *,
    nesterov: bool = False,
) -> GradientTransformation:
    r"""AdamW: Adam with decoupled weight decay.

    With $t = 1, 2, \dots$ the number of updates done so far (this one included) and
    $\eta$ evaluated at $t - 1$ when it is a schedule:

    $$m_t = \beta_1 m_{t-1} + (1-\beta_1)\,g_t,\qquad
      v_t = \beta_2 v_{t-1} + (1-\beta_2)\,g_t^2,\qquad m_0 = v_0 = 0$$
    $$\hat m_t = \frac{m_t}{1-\beta_1^t}\ \Big(\text{Nesterov: }
      \hat m_t = \frac{\beta_1 m_t}{1-\beta_1^{t+1}} + \frac{(1-\beta_1)\,g_t}{1-\beta_1^t}\Big),
      \qquad \hat v_t = \frac{v_t}{1-\beta_2^t}$$
    $$d_t = \frac{\hat m_t}{\sqrt{\hat v_t + \epsilon_{root}} + \epsilon}$$

    and, with weight decay $\lambda$ and params $p_{t-1}$,

    $$u_t = -\eta\,\big(d_t + \lambda\, p_{t-1}\big).$$

    The decay is added to the Adam direction *before* the multiplication by the (full)
    learning rate, so the effective decay per step is $\eta\lambda$, exactly as `optax.adamw`:
    `chain(scale_by_adam(...), add_decayed_weights(weight_decay, mask), scale_by_learning_rate(lr))`.
    `update` needs `params`.

    Args:
        learning_rate: step size $\eta$: a real number `>= 0` or a schedule of the step count.
        b1: $\beta_1$ in `[0, 1)`, default 0.9.
        b2: $\beta_2$ in `[0, 1)`, default 0.999.
        eps: real `>= 0`, default 1e-8.
        eps_root: real `>= 0`, default 0.0.
        mu_dtype: dtype of the first moment: None (default, the params' dtype), a floating
            dtype, or a complex one for complex params.
        weight_decay: $\lambda$: a real number `>= 0` or a schedule; default 1e-4.
        mask: a pytree of booleans shaped like the params (or a function of the params
            returning one) selecting the leaves that are decayed; None (default) decays all.
        nesterov: use the Nesterov first moment (NAdamW); keyword-only, default False.

    Returns:
        A `GradientTransformation`.

    References:
        Loshchilov & Hutter, *Decoupled Weight Decay Regularization*, ICLR 2019
        (arXiv:1711.05101).
    """
    _check_adamw("adamw", learning_rate, b1, b2, eps, eps_root, mu_dtype, weight_decay, nesterov)
    return _adamw_chain(learning_rate, b1, b2, eps, eps_root, mu_dtype, weight_decay, mask, nesterov)


@describe
def nadamw(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    weight_decay: ScalarOrSchedule = 1e-4,
    mask: MaskOrFn = None,
    *,
    nesterov: bool = True,
) -> GradientTransformation:
    r"""NAdamW: NAdam with decoupled weight decay (`adamw(..., nesterov=True)`).

    With $t = 1, 2, \dots$ the number of updates done so far (this one included) and
    $\eta$ evaluated at $t - 1$ when it is a schedule:

    $$m_t = \beta_1 m_{t-1} + (1-\beta_1)\,g_t,\qquad
      v_t = \beta_2 v_{t-1} + (1-\beta_2)\,g_t^2,\qquad m_0 = v_0 = 0$$
    $$\hat m_t = \frac{m_t}{1-\beta_1^t}\ \Big(\text{Nesterov: }
      \hat m_t = \frac{\beta_1 m_t}{1-\beta_1^{t+1}} + \frac{(1-\beta_1)\,g_t}{1-\beta_1^t}\Big),
      \qquad \hat v_t = \frac{v_t}{1-\beta_2^t}$$
    $$d_t = \frac{\hat m_t}{\sqrt{\hat v_t + \epsilon_{root}} + \epsilon}$$

    with the Nesterov $\hat m_t$, and $u_t = -\eta\,(d_t + \lambda\, p_{t-1})$.

    Args:
        learning_rate: step size $\eta$: a real number `>= 0` or a schedule of the step count.
        b1: $\beta_1$ in `[0, 1)`, default 0.9.
        b2: $\beta_2$ in `[0, 1)`, default 0.999.
        eps: real `>= 0`, default 1e-8.
        eps_root: real `>= 0`, default 0.0.
        mu_dtype: dtype of the first moment: None (default, the params' dtype), a floating
            dtype, or a complex one for complex params.
        weight_decay: $\lambda$: a real number `>= 0` or a schedule; default 1e-4.
        mask: which leaves are decayed (see [`adamw`][gradtx.adamw]); None (default) decays all.
        nesterov: keyword-only, default True.

    Returns:
        A `GradientTransformation`.

    References:
        Dozat, *Incorporating Nesterov Momentum into Adam*, ICLR 2016 workshop; Loshchilov &
        Hutter, *Decoupled Weight Decay Regularization*, ICLR 2019.
    """
    _check_adamw("nadamw", learning_rate, b1, b2, eps, eps_root, mu_dtype, weight_decay, nesterov)
    return _adamw_chain(learning_rate, b1, b2, eps, eps_root, mu_dtype, weight_decay, mask, nesterov)


@describe
def amsgrad(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    bias_correction_mu: bool = True,
    bias_correction_nu: bool = True,
) -> GradientTransformation:
    r"""AMSGrad: Adam with a non-decreasing second-moment estimate.

    With $m_t, v_t$ Adam's moments, $\hat m_t = m_t/(1-\beta_1^t)$ and
    $\hat v_t = v_t/(1-\beta_2^t)$ (each correction can be switched off):

    $$\bar v_t = \max(\bar v_{t-1}, \hat v_t),\quad \bar v_0 = 0,\qquad
      u_t = -\eta\,\frac{\hat m_t}{\sqrt{\bar v_t + \epsilon_{root}} + \epsilon}$$

    It is `chain(scale_by_amsgrad(...), scale_by_learning_rate(lr))`, as `optax.amsgrad`.

    Args:
        learning_rate: step size $\eta$: a real number `>= 0` or a schedule of the step count.
        b1: $\beta_1$ in `[0, 1)`, default 0.9.
        b2: $\beta_2$ in `[0, 1)`, default 0.999.
        eps: real `>= 0`, default 1e-8.
        eps_root: real `>= 0`, default 0.0.
        mu_dtype: dtype of the first moment: None (default, the params' dtype), a floating
            dtype, or a complex one for complex params.
        bias_correction_mu: debias the first moment; default True.
        bias_correction_nu: debias the second moment before the running maximum; default True.

    Returns:
        A `GradientTransformation`.

    References:
        Reddi, Kale & Kumar, *On the Convergence of Adam and Beyond*, ICLR 2018.
    """
    owner = "amsgrad"
    _check_adam(owner, learning_rate, b1, b2, eps, eps_root, mu_dtype, False)
    v.check_bool(owner, "bias_correction_mu", bias_correction_mu)
    v.check_bool(owner, "bias_correction_nu", bias_correction_nu)
    return chain(
        scale_by_amsgrad(
            b1=b1,
            b2=b2,
            eps=eps,
            eps_root=eps_root,
            mu_dtype=mu_dtype,
            bias_correction_mu=bias_correction_mu,
            bias_correction_nu=bias_correction_nu,
        ),
        scale_by_learning_rate(learning_rate),
    )


@describe
def adamax(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
) -> GradientTransformation:
    r"""AdaMax: Adam with the infinity norm in place of the second moment.

    $$m_t = \beta_1 m_{t-1} + (1-\beta_1)\,g_t,\qquad
      w_t = \max(\beta_2\, w_{t-1},\ |g_t| + \epsilon),\qquad
      u_t = -\eta\,\frac{m_t}{(1-\beta_1^t)\, w_t}$$

    with $m_0 = w_0 = 0$. It is `chain(scale_by_adamax(b1, b2, eps), scale_by_learning_rate(lr))`,
    as `optax.adamax`.

    Args:
        learning_rate: step size $\eta$: a real number `>= 0` or a schedule of the step count.
        b1: $\beta_1$ in `[0, 1)`, default 0.9.
        b2: $\beta_2$, decay of the infinity norm; in `[0, 1)`, default 0.999.
        eps: real `>= 0`, default 1e-8 (keeps $w_t > 0$).

    Returns:
        A `GradientTransformation`.

    References:
        Kingma & Ba, *Adam: A Method for Stochastic Optimization*, ICLR 2015, section 7.1.
    """
    owner = "adamax"
    _checks.learning_rate(owner, learning_rate)
    _checks.beta(owner, "b1", b1)
    _checks.beta(owner, "b2", b2)
    _checks.nonneg(owner, "eps", eps)
    return chain(scale_by_adamax(b1=b1, b2=b2, eps=eps), scale_by_learning_rate(learning_rate))
