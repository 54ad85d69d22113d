r"""Adafactor's rescaling by a factored estimate of the second moment (`scale_by_factored_rms`).

Adam-style methods keep one running average of $g^2$ per parameter. For a matrix (or any leaf
with at least two axes large enough) Adafactor keeps only two vectors instead: the averages of
$g^2$ over the leaf's longest axis and over its second-longest axis. Their outer product,
normalised, estimates the full second moment at a memory cost of $n + m$ instead of $n\,m$.

The numbers and the state layout are optax 0.2.8's, bit for bit for float32 inputs under
`jax.jit`.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradtx import _validation as _v
from gradtx.base import GradientTransformation, Updates, describe
from gradtx.numerics import abs_sq, float_updates, full_like_param, safe_increment, tree_as_arrays

__all__ = [
    "FactoredState",
    "adafactor_decay_rate",
    "factored_dims",
    "factored_rms_leaf",
    "scale_by_factored_rms",
]


class FactoredState(NamedTuple):
    """State of [`scale_by_factored_rms`][gradtx.scale_by_factored_rms].

    For a factored leaf, `v_row` and `v_col` hold the two averaged statistics and `v` is a
    placeholder of shape `(1,)`; for any other leaf `v` holds the full second moment and
    `v_row`, `v_col` are placeholders of shape `(1,)`. Placeholders stay zero.
    """

    count: jax.Array  # type: ignore[assignment]  # int32 scalar (shadows tuple.count)
    v_row: Updates
    v_col: Updates
    v: Updates


def adafactor_decay_rate(step: int | jax.Array, exponent: float | jax.Array = 0.8) -> jax.Array:
    r"""Adafactor's increasing decay of the second moment: $\hat\beta_2(t) = 1 - (t + 1)^{-c}$.

    `step` is the number of updates done before this one (0 at the first update), so the first
    update has $\hat\beta_2 = 0$ (the moment is the first squared gradient) and the decay tends
    to 1 as training goes on. The default `decay_rate_fn` of
    [`scale_by_factored_rms`][gradtx.scale_by_factored_rms].

    Args:
        step: the step count (an integer scalar, possibly traced).
        exponent: the exponent $c$, default 0.8 (the paper's value).

    Returns:
        A float32 scalar.
    """
    t = jnp.asarray(step + 1, jnp.float32)
    return 1.0 - t ** (-exponent)


def factored_dims(shape: tuple[int, ...], factored: bool, min_dim_size_to_factor: int) -> tuple[int, int] | None:
    """The axes `(second_longest, longest)` a leaf of this shape is factored over, or None.

    A leaf is factored when `factored` is True, it has at least two axes, and its second-longest
    axis has at least `min_dim_size_to_factor` entries. Ties are broken as `np.argsort` breaks
    them (so that the axes are optax's).
    """
    if not factored or len(shape) < 2:
        return None
    order = np.argsort(shape)
    if shape[order[-2]] < min_dim_size_to_factor:
        return None
    return int(order[-2]), int(order[-1])


def factored_rms_leaf(
    g: jax.Array,
    v_row: jax.Array,
    v_col: jax.Array,
    v: jax.Array,
    dtype: Any,
    dims: tuple[int, int] | None,
    *,
    decay: Any,
    epsilon: Any,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    r"""One step of the factored RMS rescaling on one leaf; returns `(update, v_row, v_col, v)`.

    With $s = |g|^2 + \epsilon$ and $\beta$ = `decay`: unfactored (`dims` None),
    $v \leftarrow \beta v + (1-\beta) s$ and $u = g\, v^{-1/2}$. Factored over
    `dims = (d1, d0)` (second-longest and longest axes), $r \leftarrow \beta r + (1-\beta)
    \operatorname{mean}_{d_0} s$, $c \leftarrow \beta c + (1-\beta) \operatorname{mean}_{d_1} s$
    and $u = g \cdot (r / \operatorname{mean}_{d_1} r)^{-1/2} \cdot c^{-1/2}$ (broadcast back
    along the reduced axes). The statistics are stored in `dtype` (the param's).
    """
    g_sq = abs_sq(g) + epsilon
    if dims is None:
        new_v = (decay * v + (1.0 - decay) * g_sq).astype(dtype)
        return g * new_v**-0.5, v_row, v_col, new_v
    d1, d0 = dims
    new_row = (decay * v_row + (1.0 - decay) * jnp.mean(g_sq, axis=d0)).astype(dtype)
    new_col = (decay * v_col + (1.0 - decay) * jnp.mean(g_sq, axis=d1)).astype(dtype)
    # `new_row` lost axis d0, so axis d1 of the leaf is axis d1 - 1 of `new_row` when d1 > d0
    row_mean = jnp.mean(new_row, axis=d1 - 1 if d1 > d0 else d1, keepdims=True)
    row_factor = (new_row / row_mean) ** -0.5
    col_factor = new_col**-0.5
    update = g * jnp.expand_dims(row_factor, d0) * jnp.expand_dims(col_factor, d1)
    return update, new_row, new_col, v


def _zeros_without_axis(p: jax.Array, axis: int) -> jax.Array:
    # a reduction of zeros placed like `p`, so that a sharded param gives a sharded statistic
    return jnp.sum(full_like_param(p, 0), axis=axis)


def _static_int(owner: str, name: str, value: Any) -> int:
    if _v.is_traced(value):
        raise TypeError(
            f"{owner}.init: {name} must be a concrete integer when the state is built (it decides "
            f"the state's shapes); got a traced value"
        )
    return int(value)


@describe
def scale_by_factored_rms(
    factored: bool = True,
    decay_rate: float = 0.8,
    step_offset: int = 0,
    min_dim_size_to_factor: int = 128,
    epsilon: float = 1e-30,
    decay_rate_fn: Callable[[jax.Array, Any], Any] = adafactor_decay_rate,
) -> GradientTransformation:
    r"""Rescale updates by a factored estimate of the root mean square of the gradients.

    At step $t$ (the number of updates done before this one) the decay is
    $\beta_t$ = `decay_rate_fn(t - step_offset, decay_rate)`, by default
    $1 - (t - \text{step\_offset} + 1)^{-\text{decay\_rate}}$. With $s = |g|^2 + \epsilon$, a
    leaf that is not factored keeps a full second moment:

    $$v_t = \beta_t v_{t-1} + (1-\beta_t)\, s,\qquad u = \frac{g}{\sqrt{v_t}}.$$

    A leaf whose two longest axes (second-longest $d_1$, longest $d_0$) both have at least
    `min_dim_size_to_factor` entries keeps instead the row and column statistics

    $$r_t = \beta_t r_{t-1} + (1-\beta_t)\operatorname{mean}_{d_0} s,\qquad
    c_t = \beta_t c_{t-1} + (1-\beta_t)\operatorname{mean}_{d_1} s,$$

    and divides by the root of the rank-one estimate $r_t c_t / \operatorname{mean}(r_t)$:

    $$u = g\,\Big(\frac{r_t}{\operatorname{mean}_{d_1} r_t}\Big)^{-1/2} c_t^{-1/2}.$$

    Args:
        factored: factor the statistics of leaves large enough, default True; False keeps a
            full second moment for every leaf (like RMSProp with Adafactor's decay).
        decay_rate: the second argument of `decay_rate_fn`, default 0.8 (the exponent $c$ of
            the default schedule); a real number >= 0.
        step_offset: subtracted from the step count before `decay_rate_fn` is called, default 0;
            an integer >= 0 (for fine-tuning, the step at which it starts).
        min_dim_size_to_factor: the size both factored axes must reach, default 128; an
            integer >= 0. It decides the state's shapes, so it must be concrete at `init`;
            `update` reads from the state which leaves are factored.
        epsilon: added to the squared gradients, default 1e-30; a real number >= 0.
        decay_rate_fn: `decay_rate_fn(step, decay_rate) -> decay`, default
            `gradtx.transforms.factored.adafactor_decay_rate` (Shazeer & Stern's
            $1 - (t+1)^{-c}$). A schedule that caps the decay below 1 (Zhai et al.)
            keeps the statistics from freezing late in training.

    Returns:
        A `GradientTransformation` with state `FactoredState(count, v_row, v_col, v)`; the
        statistics have the params' dtype, and `update` requires `params`.

    References:
        Shazeer & Stern, *Adafactor: Adaptive Learning Rates with Sublinear Memory Cost*, ICML
        2018 (arXiv:1804.04235). Zhai et al., *Scaling Vision Transformers*, CVPR 2022
        (arXiv:2106.04560).

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.scale_by_factored_rms(min_dim_size_to_factor=2)
        >>> params = jnp.ones((2, 3))
        >>> state = tx.init(params)
        >>> state.v_row.shape, state.v_col.shape, state.v.shape
        ((2,), (3,), (1,))
    """
    owner = "scale_by_factored_rms"
    _v.check_bool(owner, "factored", factored)
    _v.check_real(owner, "decay_rate", decay_rate, low=0.0)
    _v.check_int(owner, "step_offset", step_offset, low=0)
    _v.check_int(owner, "min_dim_size_to_factor", min_dim_size_to_factor, low=0)
    _v.check_real(owner, "epsilon", epsilon, low=0.0)
    if not callable(decay_rate_fn):
        raise TypeError(
            f"{owner}: decay_rate_fn must be a callable decay_rate_fn(step, decay_rate) -> decay, "
            f"got {type(decay_rate_fn).__name__}: {decay_rate_fn!r}"
        )

    def init(params):
        _v.check_state_params(owner, params)
        min_dim = _static_int(owner, "min_dim_size_to_factor", min_dim_size_to_factor)

        def one(p):
            dtype = p.dtype
            dims = factored_dims(p.shape, factored, min_dim)
            if dims is None:
                return jnp.zeros((1,), dtype), jnp.zeros((1,), dtype), full_like_param(p, 0)
            d1, d0 = dims
            return _zeros_without_axis(p, d0), _zeros_without_axis(p, d1), jnp.zeros((1,), dtype)

        params = tree_as_arrays(params)
        treedef = jax.tree.structure(params)
        stats = [one(p) for p in treedef.flatten_up_to(params)]
        return FactoredState(
            count=jnp.zeros([], jnp.int32),
            v_row=treedef.unflatten([s[0] for s in stats]),
            v_col=treedef.unflatten([s[1] for s in stats]),
            v=treedef.unflatten([s[2] for s in stats]),
        )

    def update(updates, state, params=None, **extra_args):
        del extra_args
        if params is None:
            raise ValueError(
                f"{owner}.update: params are required (the statistics are kept in the params' "
                f"dtype); call update(updates, state, params)."
            )
        updates, params = float_updates(updates), tree_as_arrays(params)
        decay = decay_rate_fn(state.count - step_offset, decay_rate)
        treedef = jax.tree.structure(updates)
        flat = [treedef.flatten_up_to(t) for t in (updates, state.v_row, state.v_col, state.v, params)]
        outs = []
        for g, r, c, v, p in zip(*flat, strict=True):
            # a leaf is factored exactly when its full moment `v` is a placeholder
            dims = factored_dims(p.shape, True, 0) if jnp.shape(v) != jnp.shape(p) else None
            outs.append(factored_rms_leaf(g, r, c, v, p.dtype, dims, decay=decay, epsilon=epsilon))
        new_updates, v_row, v_col, v = (treedef.unflatten([o[i] for o in outs]) for i in range(4))
        count = safe_increment(state.count)
        return new_updates, FactoredState(count=count, v_row=v_row, v_col=v_col, v=v)

    return GradientTransformation(init, update)
