"""Adafactor: factored second moments, update clipping and relative step sizes."""

from typing import Any

import jax.numpy as jnp

from gradtx import _validation as v
from gradtx.base import GradientTransformation, ScalarOrSchedule, chain, describe
from gradtx.optimizers import _checks
from gradtx.optimizers.adam import MaskOrFn
from gradtx.transforms import add_decayed_weights, clip_by_block_rms, ema, scale, scale_by_learning_rate
from gradtx.transforms.blockwise import scale_by_param_block_rms
from gradtx.transforms.factored import scale_by_factored_rms

__all__ = ["adafactor"]


@describe
def adafactor(
    learning_rate: ScalarOrSchedule | None = None,
    min_dim_size_to_factor: int = 128,
    decay_rate: float = 0.8,
    decay_offset: int = 0,
    multiply_by_parameter_scale: bool = True,
    clipping_threshold: float | None = 1.0,
    momentum: float | None = None,
    dtype_momentum: Any = jnp.float32,
    weight_decay_rate: ScalarOrSchedule | None = None,
    eps: float = 1e-30,
    factored: bool = True,
    weight_decay_mask: MaskOrFn = None,
) -> GradientTransformation:
    r"""Adafactor: Adam-like steps with a second moment stored in $O(n + m)$ per matrix.

    Each step, in order (every stage after the first can be switched off):

    1. rescale by the factored RMS of the gradients
       ([`scale_by_factored_rms`][gradtx.scale_by_factored_rms]): with
       $\hat\beta_{2,t} = 1 - (t - \text{decay\_offset} + 1)^{-\text{decay\_rate}}$,
       a leaf whose two longest axes have at least `min_dim_size_to_factor` entries keeps only
       row and column averages $r_t, c_t$ of $g^2 + \epsilon$, other leaves a full average
       $v_t$, and $\hat u = g / \sqrt{\hat v_t}$ with $\hat v_t = r_t c_t / \operatorname{mean}(r_t)$
       (or $v_t$);
    2. clip each leaf to an RMS of at most $d$ = `clipping_threshold`
       ([`clip_by_block_rms`][gradtx.clip_by_block_rms]):
       $\hat u \leftarrow \hat u / \max(1, \operatorname{rms}(\hat u)/d)$;
    3. multiply by the learning rate $\eta_t$ (when given);
    4. multiply by the relative scale of each leaf, $\max(\operatorname{rms}(p), 10^{-3})$
       (`multiply_by_parameter_scale`, [`scale_by_param_block_rms`][gradtx.scale_by_param_block_rms]);
    5. average with momentum $\beta_1$ = `momentum` (an EMA without bias correction, kept in
       `dtype_momentum`);
    6. add $\lambda p$ with $\lambda$ = `weight_decay_rate` (on the leaves `weight_decay_mask`
       selects);
    7. negate: $u_t = -\hat u$.

    So with the defaults the step of a leaf is $\eta\,\max(\operatorname{rms}(p), 10^{-3})$
    times a unit-RMS direction: $\eta$ is a *relative* step size, typically 1e-2 to 1e-3,
    without Adam's $1/\sqrt{d}$ scaling. It is the chain of those transformations, as
    `optax.adafactor`; `update` needs `params`.

    Args:
        learning_rate: $\eta$: None (default: stage 3 is left out, a step size of 1), a real
            number >= 0, or a schedule of the step count.
        min_dim_size_to_factor: factor a leaf's statistics only when its two longest axes
            both have at least this many entries; default 128, an integer >= 0.
        decay_rate: the exponent of the decay schedule; default 0.8, a real number >= 0.
        decay_offset: subtracted from the step count in the decay schedule (for fine-tuning,
            the step at which it starts); default 0, an integer >= 0.
        multiply_by_parameter_scale: stage 4; default True.
        clipping_threshold: $d$ of stage 2, a real number > 0 (the paper uses 1), or None to
            skip clipping; default 1.0.
        momentum: $\beta_1$ in [0, 1], or None (default) for no momentum (and no memory for
            it).
        dtype_momentum: floating dtype of the momentum buffer; default float32.
        weight_decay_rate: $\lambda$: None (default: no decay), a real number >= 0 or a
            schedule. It is added after the learning rate, so it is not multiplied by it.
        eps: $\epsilon$, added to the squared gradients; default 1e-30, a real number >= 0.
        factored: default True; False keeps a full second moment for every leaf.
        weight_decay_mask: a tree of booleans (or a function of the params returning one)
            selecting the decayed leaves; None (default) decays all.

    Returns:
        A `GradientTransformation` whose state is the tuple of its stages' states, the first a
        `FactoredState(count, v_row, v_col, v)`.

    References:
        Shazeer & Stern, *Adafactor: Adaptive Learning Rates with Sublinear Memory Cost*, ICML
        2018 (arXiv:1804.04235).

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.adafactor(learning_rate=1e-2)
        >>> params = {"w": jnp.ones((256, 512)), "b": jnp.ones(512)}
        >>> state = tx.init(params)
        >>> state[0].v_row["w"].shape, state[0].v_col["w"].shape, state[0].v["b"].shape
        ((256,), (512,), (512,))
    """
    owner = "adafactor"
    if learning_rate is not None:
        _checks.learning_rate(owner, learning_rate)
    v.check_int(owner, "min_dim_size_to_factor", min_dim_size_to_factor, low=0)
    v.check_real(owner, "decay_rate", decay_rate, low=0.0)
    v.check_int(owner, "decay_offset", decay_offset, low=0)
    v.check_bool(owner, "multiply_by_parameter_scale", multiply_by_parameter_scale)
    if clipping_threshold is not None:
        v.check_real(owner, "clipping_threshold", clipping_threshold, low=0.0, low_inclusive=False)
    if momentum is not None:
        v.check_real(owner, "momentum", momentum, low=0.0, high=1.0)
    v.check_dtype(owner, "dtype_momentum", dtype_momentum, allow_complex=True)
    if weight_decay_rate is not None:
        v.check_schedule_or_real(owner, "weight_decay_rate", weight_decay_rate, low=0.0)
    v.check_real(owner, "eps", eps, low=0.0)
    v.check_bool(owner, "factored", factored)

    stages = [scale_by_factored_rms(factored, decay_rate, decay_offset, min_dim_size_to_factor, eps)]
    if clipping_threshold is not None:
        stages.append(clip_by_block_rms(clipping_threshold))
    if learning_rate is not None:
        stages.append(scale_by_learning_rate(learning_rate, flip_sign=False))
    if multiply_by_parameter_scale:
        stages.append(scale_by_param_block_rms())
    if momentum is not None:
        stages.append(ema(momentum, debias=False, accumulator_dtype=dtype_momentum))
    if weight_decay_rate is not None:
        stages.append(add_decayed_weights(weight_decay_rate, mask=weight_decay_mask))
    stages.append(scale(-1))
    return chain(*stages)
