"""Per-coordinate step sizes from accumulated squared gradients: Adagrad and RMSProp."""

from gradtx import _validation as v
from gradtx.base import GradientTransformation, ScalarOrSchedule, chain, describe, identity
from gradtx.optimizers import _checks
from gradtx.transforms import scale_by_learning_rate, scale_by_rms, scale_by_rss, scale_by_stddev, trace

__all__ = ["adagrad", "rmsprop"]


@describe
def adagrad(
    learning_rate: ScalarOrSchedule,
    initial_accumulator_value: float = 0.1,
    eps: float = 1e-7,
) -> GradientTransformation:
    r"""Adagrad: divide each coordinate by the root of its accumulated squared gradients.

    $$G_t = G_{t-1} + g_t^2,\quad G_{-1} = \texttt{initial\_accumulator\_value},\qquad
    u_t = -\eta_t\,\frac{g_t}{\sqrt{G_t + \epsilon}}$$

    (element-wise; the update is 0 where $G_t = 0$). It is
    `chain(scale_by_rss(initial_accumulator_value, eps), scale_by_learning_rate(lr))`, as
    `optax.adagrad`.

    Args:
        learning_rate: step size $\eta$: a real number `>= 0` or a schedule of the step count.
        initial_accumulator_value: starting value of $G$; real `>= 0`, default 0.1.
        eps: added inside the square root; real `>= 0`, default 1e-7.

    Returns:
        A `GradientTransformation`.

    References:
        Duchi, Hazan & Singer, *Adaptive Subgradient Methods for Online Learning and Stochastic
        Optimization*, JMLR 12, 2011.
    """
    owner = "adagrad"
    _checks.learning_rate(owner, learning_rate)
    _checks.nonneg(owner, "initial_accumulator_value", initial_accumulator_value)
    _checks.nonneg(owner, "eps", eps)
    return chain(
        scale_by_rss(initial_accumulator_value=initial_accumulator_value, eps=eps),
        scale_by_learning_rate(learning_rate),
    )


@describe
def rmsprop(
    learning_rate: ScalarOrSchedule,
    decay: float = 0.9,
    eps: float = 1e-8,
    initial_scale: float = 0.0,
    eps_in_sqrt: bool = True,
    centered: bool = False,
    momentum: float | None = None,
    nesterov: bool = False,
    bias_correction: bool = False,
) -> GradientTransformation:
    r"""RMSProp: divide by a running root-mean-square of the gradients.

    With $\rho$ = `decay`, $\nu_{-1}$ = `initial_scale`:

    $$\nu_t = \rho\,\nu_{t-1} + (1-\rho)\,g_t^2,\qquad
    s_t = \frac{g_t}{\sqrt{\hat\nu_t + \epsilon}}\ \ (\texttt{eps\_in\_sqrt})\ \text{ or }\
    \frac{g_t}{\sqrt{\hat\nu_t} + \epsilon},\qquad v_t = -\eta_t\, s_t$$

    where $\hat\nu_t = \nu_t$, or $\nu_t / (1-\rho^{t+1})$ with `bias_correction`. The
    centred variant also tracks $\mu_t = \rho\,\mu_{t-1} + (1-\rho)\,g_t$ and uses
    $\hat\nu_t - \hat\mu_t^2$ in place of $\hat\nu_t$. With a momentum $\beta$ the scaled
    step is then accumulated *after* the learning rate, as in optax:
    $m_t = v_t + \beta\, m_{t-1}$ and $u_t = m_t$ (Nesterov: $u_t = v_t + \beta\, m_t$);
    without momentum $u_t = v_t$.

    It is `chain(scale_by_rms | scale_by_stddev, scale_by_learning_rate(lr), trace | identity)`.

    Args:
        learning_rate: step size $\eta$: a real number `>= 0` or a schedule of the step count.
        decay: $\rho$, the decay of the moving averages; in `[0, 1]` (`[0, 1)` with
            `bias_correction`), default 0.9.
        eps: $\epsilon$; real `>= 0`, default 1e-8.
        initial_scale: starting value of $\nu$; real `>= 0`, default 0.0.
        eps_in_sqrt: put $\epsilon$ inside the square root; default True.
        centered: subtract the squared running mean (centred RMSProp, Graves 2013); default
            False.
        momentum: $\beta$ in `[0, 1]`, or None (default) for no momentum.
        nesterov: Nesterov form of the momentum; default False; requires a momentum.
        bias_correction: debias $\nu$ (and $\mu$) as Adam does; default False.

    Returns:
        A `GradientTransformation`.

    References:
        Tieleman & Hinton, *Lecture 6.5 — RMSProp*, COURSERA: Neural Networks for Machine
        Learning, 2012; Graves, *Generating Sequences With Recurrent Neural Networks*, 2013
        (arXiv:1308.0850) for the centred form.
    """
    owner = "rmsprop"
    _checks.learning_rate(owner, learning_rate)
    v.check_bool(owner, "bias_correction", bias_correction)
    _checks.beta(owner, "decay", decay, closed=not bias_correction)
    _checks.nonneg(owner, "eps", eps)
    _checks.nonneg(owner, "initial_scale", initial_scale)
    v.check_bool(owner, "eps_in_sqrt", eps_in_sqrt)
    v.check_bool(owner, "centered", centered)
    _checks.momentum_and_nesterov(owner, momentum, nesterov)
    scaler = scale_by_stddev if centered else scale_by_rms
    return chain(
        scaler(
            decay=decay,
            eps=eps,
            initial_scale=initial_scale,
            eps_in_sqrt=eps_in_sqrt,
            bias_correction=bias_correction,
        ),
        scale_by_learning_rate(learning_rate),
        identity() if momentum is None else trace(decay=momentum, nesterov=nesterov),
    )
