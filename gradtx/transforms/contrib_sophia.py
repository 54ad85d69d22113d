r"""Sophia and its Hutchinson Hessian-diagonal estimator, gradient normalisation and the
real/imaginary splitting wrapper of `optax.contrib`.

Exported from `gradtx.contrib` only, as in optax. Numbers and states are
optax 0.2.8's (the Hutchinson probes are drawn from the same keys, leaf by leaf, so Sophia's
trajectory equals optax's bit for bit).

The Hessian-diagonal estimator is written here rather than taken from
[`gradtx.curvature`][gradtx.curvature]: the curvature module's Hutchinson estimators work on
the flattened parameter vector and draw one probe vector from one key, whereas optax draws one
Rademacher probe per leaf from keys split per leaf (`optax.tree.random_like`) and keeps the key
in the state; only the latter gives optax's numbers.
"""

import inspect
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx import _validation as _v
from gradtx import tree as _tree
from gradtx.base import EmptyState, GradientTransformation, Updates, describe
from gradtx.numerics import bias_correction, safe_increment, tree_cast, tree_zeros_like, update_moment
from gradtx.transforms._moments import canonical_dtype, check_beta, check_nonneg

__all__ = [
    "HutchinsonState",
    "NormalizeState",
    "SophiaState",
    "SplitRealAndImaginaryArrays",
    "SplitRealAndImaginaryState",
    "hutchinson_estimator_diag_hessian",
    "normalize",
    "scale_by_sophia",
    "split_real_and_imaginary",
]

NormalizeState = EmptyState
"""State of [`normalize`][gradtx.contrib.normalize] (optax's alias of `EmptyState`)."""


@describe
def normalize() -> GradientTransformation:
    r"""Divide the updates by their global Euclidean norm.

    $$u = \frac{g}{\|g\|_2},\qquad \|g\|_2 = \Big(\sum_{\text{leaves}} \sum_i |g_i|^2\Big)^{1/2}$$

    A zero gradient gives NaN, as in optax (used by SAM, whose adversarial step is
    normalised).

    Returns:
        A stateless `GradientTransformation` (state `NormalizeState()`).
    """

    def init(params):
        del params
        return NormalizeState()

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        norm = _tree.norm(updates)
        return jax.tree.map(lambda g: g / norm, updates), state

    return GradientTransformation(init, update)


class SplitRealAndImaginaryArrays(NamedTuple):
    """A complex leaf as its real and imaginary parts (what the inner transformation sees)."""

    real: jax.Array
    imaginary: jax.Array


class SplitRealAndImaginaryState(NamedTuple):
    """State of [`split_real_and_imaginary`][gradtx.contrib.split_real_and_imaginary]."""

    inner_state: Any


def _split(x: Any) -> Any:
    return SplitRealAndImaginaryArrays(x.real, x.imag) if jnp.iscomplexobj(x) else x


def _merge(x: Any) -> Any:
    return x.real + x.imaginary * 1j if isinstance(x, SplitRealAndImaginaryArrays) else x


@describe
def split_real_and_imaginary(inner: GradientTransformation) -> GradientTransformation:
    r"""Run `inner` on the real and imaginary parts of complex leaves as two real leaves.

    Every complex leaf $z = x + iy$ of the params and updates is replaced by the pair
    $(x, y)$ before `inner` sees it, and the pair of updates $(u_x, u_y)$ it returns is put
    back as $u_x + i\,u_y$. Real leaves pass unchanged. So an adaptive method treats the two
    parts as independent coordinates (rather than using $|g|^2$).

    Args:
        inner: the transformation to wrap.

    Returns:
        A `GradientTransformation` with state `SplitRealAndImaginaryState(inner_state)`.
    """
    if not isinstance(inner, GradientTransformation) and not (hasattr(inner, "init") and hasattr(inner, "update")):
        raise TypeError(f"split_real_and_imaginary: inner must be a GradientTransformation, got {inner!r}")

    def init(params):
        return SplitRealAndImaginaryState(inner.init(jax.tree.map(_split, params)))

    def update(updates, state, params=None, **extra_args):
        del extra_args
        new_updates, inner_state = inner.update(
            jax.tree.map(_split, updates), state.inner_state, jax.tree.map(_split, params)
        )
        merged = jax.tree.map(_merge, new_updates, is_leaf=lambda x: isinstance(x, SplitRealAndImaginaryArrays))
        return merged, SplitRealAndImaginaryState(inner_state)

    return GradientTransformation(init, update)


class HutchinsonState(NamedTuple):
    """State of [`hutchinson_estimator_diag_hessian`][gradtx.contrib.hutchinson_estimator_diag_hessian]."""

    key: jax.Array  # the key the next probe is split from


@describe
def hutchinson_estimator_diag_hessian(random_seed: jax.Array | None = None) -> GradientTransformation:
    r"""Hutchinson's estimate of the Hessian's diagonal, as a transformation.

    With $z$ a Rademacher vector ($\pm 1$ entries, one per parameter) and $H$ the Hessian of
    `obj_fn` at `params`, the output is $z \odot (H z)$, whose expectation is
    $\operatorname{diag}(H)$. The incoming updates are ignored; `update` must be given `params`
    and the objective as the extra argument `obj_fn` (a function of the params).

    Args:
        random_seed: the first PRNG key; default None (`jax.random.PRNGKey(0)`).

    Returns:
        A `GradientTransformation` with state `HutchinsonState(key)`.
    """

    def init(params):
        del params
        return HutchinsonState(key=random_seed if random_seed is not None else jax.random.PRNGKey(0))

    def update(updates, state, params=None, obj_fn=None, **extra_args):
        del updates, extra_args
        if params is None:
            raise ValueError("hutchinson_estimator_diag_hessian: params are required (update(..., params))")
        if obj_fn is None:
            raise ValueError("hutchinson_estimator_diag_hessian: the objective is required as update(..., obj_fn=f)")
        key, probe_key = jax.random.split(state.key)
        probe = _tree.random_like(probe_key, params, jax.random.rademacher, dtype=jnp.float32)
        probe = tree_cast(probe, _tree.dtype(params, "lowest"))
        hz = jax.jvp(jax.grad(obj_fn), (params,), (probe,))[1]
        return jax.tree.map(lambda h, z: h * z, hz, probe), HutchinsonState(key=key)

    return GradientTransformation(init, update)


class SophiaState(NamedTuple):
    """State of `sophia`'s first member (optax's `SophiaState`)."""

    count: jax.Array  # type: ignore[assignment]  # optax's field name (shadows tuple.count)
    mu: Updates  # first moment of the gradients
    nu: Updates  # moving average of the Hessian-diagonal estimates
    hessian_fn_state: Any  # the state of the Hessian-diagonal estimator


@describe
def scale_by_sophia(
    b1: float = 0.965,
    b2: float = 0.99,
    eps: float = 1e-8,
    gamma: float = 0.01,
    clip_threshold: float | None = 1.0,
    update_interval: int = 10,
    hessian_diagonal_fn: GradientTransformation = hutchinson_estimator_diag_hessian(),  # noqa: B008
    mu_dtype: Any = None,
    verbose: bool = False,
    print_win_rate_every_n_steps: int = 0,
) -> GradientTransformation:
    r"""Sophia's rescaling: the bias-corrected momentum over a clipped Hessian-diagonal estimate.

    With $t$ the number of updates done (this one included):

    $$m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\qquad
    u_t = \operatorname{clip}\Big(\frac{m_t / (1-\beta_1^t)}{\max(\gamma h_{t-1}, \epsilon)}, -\rho, \rho\Big)$$

    and every `update_interval` steps (when $t-1$ is a multiple of it, so at the first step)
    $h_t = \beta_2 h_{t-1} + (1-\beta_2)\,\hat d_t$, with $\hat d_t$ the output of
    `hessian_diagonal_fn` (given the gradients, `params` and the extra arguments of `update`,
    e.g. `obj_fn`); otherwise $h_t = h_{t-1}$. `clip_threshold=None` ($\rho = \infty$) skips
    the clipping. This is the first member of `optax.contrib.sophia`'s chain (optax does not
    export it).

    Args:
        b1: $\beta_1$; in `[0, 1)`, default 0.965.
        b2: $\beta_2$; in `[0, 1)`, default 0.99.
        eps: $\epsilon$, real `>= 0`, default 1e-8.
        gamma: $\gamma$, real `>= 0`, default 0.01.
        clip_threshold: $\rho$, real `> 0` or None, default 1.0.
        update_interval: steps between Hessian estimates, integer `>= 1`, default 10.
        hessian_diagonal_fn: the estimator, default
            [`hutchinson_estimator_diag_hessian()`][gradtx.contrib.hutchinson_estimator_diag_hessian].
        mu_dtype: dtype of the first moment, default None.
        verbose: print the fraction of unclipped entries ("win rate"), default False.
        print_win_rate_every_n_steps: how often to print it (with `verbose`), default 0.

    Returns:
        A `GradientTransformation` with state `SophiaState(count, mu, nu, hessian_fn_state)`.
    """
    owner = "scale_by_sophia"
    check_beta(owner, "b1", b1)
    check_beta(owner, "b2", b2)
    check_nonneg(owner, "eps", eps)
    check_nonneg(owner, "gamma", gamma)
    if clip_threshold is not None:
        _v.check_real(owner, "clip_threshold", clip_threshold, low=0.0, low_inclusive=False)
    _v.check_int(owner, "update_interval", update_interval, low=1)
    _v.check_dtype(owner, "mu_dtype", mu_dtype, allow_complex=True)
    _v.check_bool(owner, "verbose", verbose)
    _v.check_int(owner, "print_win_rate_every_n_steps", print_win_rate_every_n_steps, low=0)
    if verbose and print_win_rate_every_n_steps == 0:
        raise ValueError(f"{owner}: verbose=True needs print_win_rate_every_n_steps >= 1, got 0")
    if not (hasattr(hessian_diagonal_fn, "init") and hasattr(hessian_diagonal_fn, "update")):
        raise TypeError(f"{owner}: hessian_diagonal_fn must be a GradientTransformation, got {hessian_diagonal_fn!r}")
    mu_dtype = canonical_dtype(mu_dtype)

    def init(params):
        _v.check_state_params(owner, params, mu_dtype)
        return SophiaState(
            count=jnp.zeros([], jnp.int32),
            mu=tree_zeros_like(params, mu_dtype),
            nu=tree_zeros_like(params),
            hessian_fn_state=hessian_diagonal_fn.init(params),
        )

    def update(updates, state, params=None, **extra_args):
        if params is None:
            raise ValueError(f"{owner}: params are required (update(updates, state, params))")
        grads = updates
        count = safe_increment(state.count)
        mu = update_moment(updates, state.mu, b1, 1)
        mu_hat = bias_correction(mu, b1, count)
        out = jax.tree.map(lambda m, h: m / jnp.maximum(gamma * h, eps), mu_hat, state.nu)
        if clip_threshold is not None:
            if verbose:
                kept = jax.tree.reduce(
                    lambda a, b: a + b, jax.tree.map(lambda u: jnp.sum(jnp.abs(u) < clip_threshold), out)
                )
                rate = kept / _tree.size(out)
                jax.lax.cond(
                    count % print_win_rate_every_n_steps == 0,
                    lambda: jax.debug.print("Sophia optimizer win rate: {}", rate),
                    lambda: None,
                )
            out = jax.tree.map(lambda u: jnp.clip(u, -clip_threshold, clip_threshold), out)

        def refresh(h_state, nu):
            diag, h_state = _call_with_extras(hessian_diagonal_fn, grads, h_state, params, extra_args)
            return h_state, update_moment(diag, nu, b2, 1)

        h_state, nu = jax.lax.cond(
            jnp.equal(state.count % update_interval, 0),
            refresh,
            lambda h, n: (h, n),
            state.hessian_fn_state,
            state.nu,
        )
        new_state = SophiaState(count=count, mu=tree_cast(mu, mu_dtype), nu=nu, hessian_fn_state=h_state)
        return out, new_state

    return GradientTransformation(init, update)


def _call_with_extras(tx: Any, updates: Any, state: Any, params: Any, extra_args: dict) -> Any:
    """`tx.update(updates, state, params, **extra_args)`; the extras are dropped where `tx.update`
    takes no keyword arguments beyond `params` (a plain optax transformation)."""
    kinds = {p.kind for p in inspect.signature(tx.update).parameters.values()}
    if inspect.Parameter.VAR_KEYWORD not in kinds:
        return tx.update(updates, state, params)
    return tx.update(updates, state, params, **extra_args)
