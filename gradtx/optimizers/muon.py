"""Muon: orthogonalised momentum for matrices, AdamW for every other leaf.

`muon` is `optax.contrib.muon` 0.2.8's partition (the same labels and chains, hence the same
state layout and numbers); it is exported from `gradtx.contrib`.
"""

from typing import Any

import jax

from gradtx import _validation as v
from gradtx.base import GradientTransformation, ScalarOrSchedule, chain, describe
from gradtx.optimizers import _checks
from gradtx.optimizers.adam import adamw
from gradtx.transforms import add_decayed_weights, scale_by_learning_rate
from gradtx.transforms.muon import (
    DEFAULT_NS_COEFFS,
    NS_COEFFS_PRESETS,
    MuonDimensionNumbers,
    check_ns,
    is_dim_nums,
    scale_by_muon,
    scale_by_shape,
)
from gradtx.wrappers import MaskedNode, partition

__all__ = ["muon"]


def _labeller(dim_nums: Any) -> Any:
    """`params -> tree of 'muon' / 'adam'` (optax's rule: 2-D leaves, or leaves with dim numbers)."""
    if dim_nums is None:
        return lambda params: jax.tree.map(lambda x: "muon" if x.ndim == 2 else "adam", params)

    def labels(params):
        spec = dim_nums(params) if callable(dim_nums) else dim_nums
        return jax.tree.map(
            lambda d, sub: jax.tree.map(lambda _: "muon" if d is not None else "adam", sub),
            spec,
            params,
            is_leaf=lambda x: x is None or is_dim_nums(x),
        )

    return labels


def _masked_dim_nums(dim_nums: Any, labels: Any) -> Any:
    """The dimension numbers shaped like the masked tree the Muon branch of `partition` sees."""

    def fn(tree):
        spec = dim_nums(tree) if callable(dim_nums) else dim_nums
        mask = jax.tree.map(lambda label: label == "muon", labels(tree))
        return jax.tree.map(
            lambda d, sub: jax.tree.map(lambda m: d if m else MaskedNode(), sub),
            spec,
            mask,
            is_leaf=lambda x: x is None or is_dim_nums(x) or isinstance(x, MaskedNode),
        )

    return fn


@describe
def muon(
    learning_rate: ScalarOrSchedule,
    ns_coeffs: Any = DEFAULT_NS_COEFFS,
    ns_steps: int = 5,
    beta: float = 0.95,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    weight_decay_mask: Any = None,
    mu_dtype: Any = None,
    *,
    nesterov: bool = True,
    adaptive: bool = False,
    preconditioning: str = "frobenius",
    adam_b1: float = 0.9,
    adam_b2: float = 0.999,
    adam_eps_root: float = 0.0,
    adam_weight_decay: float = 0.0,
    adam_learning_rate: ScalarOrSchedule | None = None,
    muon_weight_dimension_numbers: Any = None,
    consistent_rms: float | None = None,
) -> GradientTransformation:
    r"""Muon (MomentUm Orthogonalized by Newton–Schulz) for matrices, AdamW for the rest.

    Each matrix leaf $W$ (fan-in $n$, fan-out $m$) moves by

    $$u = -\eta\,\big(s\cdot \operatorname{NS}(\hat m_t) + \lambda W\big),\qquad
      s = \sqrt{\max(1, m/n)}$$

    ($s = \rho\sqrt{\max(n, m)}$ with `consistent_rms` $=\rho$), where $\operatorname{NS}$
    is [`scale_by_muon`][gradtx.contrib.scale_by_muon]'s orthogonalised momentum. Every other
    leaf (or, with `muon_weight_dimension_numbers`, every leaf whose entry is None) follows
    `adamw(adam_learning_rate, adam_b1, adam_b2, eps, adam_eps_root, adam_weight_decay,
    mu_dtype, nesterov=nesterov)`. It is optax's `partition({"muon": chain(scale_by_muon(...),
    scale_by_shape(...), add_decayed_weights(weight_decay, weight_decay_mask),
    scale_by_learning_rate(lr)), "adam": adamw(...)}, labels)`, with the same state.

    Args:
        learning_rate: $\eta$, a real number `>= 0` or a schedule of the step count.
        ns_coeffs: Newton–Schulz coefficients: a triple, an `(n, 3)` table with `n <= ns_steps`,
            or a preset name, `"standard"` (the default triple) or `"dion"` (five steps).
        ns_steps: an integer `>= 1`, default 5.
        beta: the momentum decay, in `[0, 1)`; default 0.95.
        eps: $\epsilon$ `>= 0` of the Frobenius scaling and of AdamW; default 1e-8.
        weight_decay: $\lambda$ `>= 0` for the Muon leaves (multiplied by $\eta$); default 0.
        weight_decay_mask: which Muon leaves decay (a tree of booleans, or a function of the
            params returning one); None (default) decays all.
        mu_dtype: dtype of both momenta, or None (default: the params' dtype).
        nesterov: Nesterov momentum, for Muon and AdamW (default True).
        adaptive: scale Muon's update by the dual norm (default False).
        preconditioning: `"frobenius"` (default), `"spectral"`, `"aol"` or `"schatten"`.
        adam_b1: AdamW's $\beta_1$ in `[0, 1)`; default 0.9.
        adam_b2: AdamW's $\beta_2$ in `[0, 1)`; default 0.999.
        adam_eps_root: AdamW's $\epsilon$ inside the root, `>= 0`; default 0.
        adam_weight_decay: AdamW's weight decay `>= 0`; default 0.
        adam_learning_rate: AdamW's learning rate; None (default) uses `learning_rate`.
        muon_weight_dimension_numbers: a tree of `MuonDimensionNumbers` or None per leaf (None:
            AdamW), a prefix of the params, or a function of the params returning one; None
            (default): the 2-D leaves are Muon's.
        consistent_rms: $\rho$ `>= 0` (0.2 matches AdamW's RMS), or None (default) for the
            width scaling $\sqrt{\max(1, m/n)}$.

    Returns:
        A `GradientTransformation`.

    References:
        Jordan, *modded-nanogpt*, 2024 (github.com/KellerJordan/modded-nanogpt); Liu et al.,
        *Muon is Scalable for LLM Training* (arXiv:2502.16982), 2025; Ahn et al., *Dion:
        Distributed Orthonormalized Updates* (arXiv:2504.05295), 2025.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.contrib.muon(1e-2)
        >>> p = {"w": jnp.ones((4, 3)), "b": jnp.zeros(3)}
        >>> u, s = tx.update(p, tx.init(p), p)
        >>> u["w"].shape, u["b"].shape
        ((4, 3), (3,))
    """
    owner = "muon"
    _checks.learning_rate(owner, learning_rate)
    if isinstance(ns_coeffs, str):
        if ns_coeffs not in NS_COEFFS_PRESETS:
            raise ValueError(
                f"{owner}: ns_coeffs must be one of the presets {sorted(NS_COEFFS_PRESETS)} or "
                f"coefficients, got {ns_coeffs!r}"
            )
        coeffs = NS_COEFFS_PRESETS[ns_coeffs]
    else:
        coeffs = ns_coeffs
    check_ns(owner, coeffs, ns_steps, preconditioning)
    _checks.beta(owner, "beta", beta)
    _checks.nonneg(owner, "eps", eps)
    _checks.weight_decay(owner, weight_decay)
    v.check_dtype(owner, "mu_dtype", mu_dtype)
    _checks.beta(owner, "adam_b1", adam_b1)
    _checks.beta(owner, "adam_b2", adam_b2)
    _checks.nonneg(owner, "adam_eps_root", adam_eps_root)
    v.check_schedule_or_real(owner, "adam_weight_decay", adam_weight_decay, low=0.0)
    if adam_learning_rate is not None:
        v.check_schedule_or_real(owner, "adam_learning_rate", adam_learning_rate, low=0.0)
    if consistent_rms is not None:
        _checks.nonneg(owner, "consistent_rms", consistent_rms)
    if adam_learning_rate is None:
        adam_learning_rate = learning_rate

    labels = _labeller(muon_weight_dimension_numbers)
    dim_nums = MuonDimensionNumbers() if muon_weight_dimension_numbers is None else muon_weight_dimension_numbers
    masked_dim_nums = _masked_dim_nums(dim_nums, labels)
    return partition(
        transforms={
            "muon": chain(
                scale_by_muon(
                    ns_coeffs=coeffs,
                    ns_steps=ns_steps,
                    beta=beta,
                    eps=eps,
                    mu_dtype=mu_dtype,
                    nesterov=nesterov,
                    adaptive=adaptive,
                    preconditioning=preconditioning,
                    weight_dimension_numbers=masked_dim_nums,
                ),
                scale_by_shape(weight_dimension_numbers=masked_dim_nums, consistent_rms=consistent_rms),
                add_decayed_weights(weight_decay, weight_decay_mask),
                scale_by_learning_rate(learning_rate),
            ),
            "adam": adamw(
                learning_rate=adam_learning_rate,
                b1=adam_b1,
                b2=adam_b2,
                eps=eps,
                eps_root=adam_eps_root,
                weight_decay=adam_weight_decay,
                mu_dtype=mu_dtype,
                nesterov=nesterov,
            ),
        },
        param_labels=labels,
    )
