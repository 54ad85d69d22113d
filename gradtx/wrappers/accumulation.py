"""Gradient accumulation over several mini-steps: `MultiSteps`."""

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from gradtx._validation import check_bool, check_dtype, check_int
from gradtx.base import GradientTransformation, OptState, Params, Updates, describe
from gradtx.numerics import full_like_param, safe_increment, tree_zeros_like
from gradtx.wrappers._common import check_transformation, cond, forwarding_update, zeros_from_shapes

__all__ = [
    "MultiSteps",
    "MultiStepsState",
    "ShouldSkipUpdateFunction",
    "skip_large_updates",
    "skip_not_finite",
]


class MultiStepsState(NamedTuple):
    """State of [`MultiSteps`][gradtx.MultiSteps].

    Attributes:
        mini_step: int32, the number of mini-steps accumulated since the last inner step
            (0 right after an inner step).
        gradient_step: int32, the number of inner steps taken so far.
        inner_opt_state: the wrapped transformation's state.
        acc_grads: the accumulated gradients (mean or sum), in the accumulator dtype.
        skip_state: whatever `should_skip_update_fn` returned last (`()` without one).
    """

    mini_step: jax.Array
    gradient_step: jax.Array
    inner_opt_state: OptState
    acc_grads: Updates
    skip_state: Any = ()


class ShouldSkipUpdateFunction(Protocol):
    """`(updates, gradient_step, params) -> (should_skip: bool scalar array, skip_state)`."""

    def __call__(self, updates: Updates, gradient_step: jax.Array, params: Params | None) -> tuple[jax.Array, Any]: ...


def skip_not_finite(updates: Updates, gradient_step: jax.Array, params: Params | None) -> tuple[jax.Array, Any]:
    """Skip the mini-step when any update is NaN or Inf.

    Returns:
        `(should_skip, {"should_skip": should_skip, "num_not_finite": n})`, `n` the number of
        non-finite entries (int32).
    """
    del gradient_step, params
    counts = [jnp.sum(~jnp.isfinite(leaf)).astype(jnp.int32) for leaf in jax.tree.leaves(updates)]
    num_not_finite = sum(counts, jnp.zeros((), jnp.int32))
    should_skip = num_not_finite > 0
    return should_skip, {"should_skip": should_skip, "num_not_finite": num_not_finite}


def skip_large_updates(
    updates: Updates, gradient_step: jax.Array, params: Params | None, max_squared_norm: float
) -> tuple[jax.Array, Any]:
    """Skip the mini-step when `Σ_i ||g_i||² ≥ max_squared_norm` (or the norm is NaN).

    Bind `max_squared_norm` with `functools.partial` before handing it to `MultiSteps`.

    Returns:
        `(should_skip, {"should_skip": should_skip, "norm_squared": Σ_i ||g_i||²})`.
    """
    del gradient_step, params
    squares = [jnp.sum(jnp.square(leaf)) for leaf in jax.tree.leaves(updates)]
    norm_sq = sum(squares, jnp.zeros((), jnp.float32))
    should_skip = jnp.logical_not(norm_sq < max_squared_norm)
    return should_skip, {"should_skip": should_skip, "norm_squared": norm_sq}


def _never_skip(updates: Updates, gradient_step: jax.Array, params: Params | None) -> tuple[jax.Array, Any]:
    del updates, gradient_step, params
    return jnp.asarray(False), ()


class MultiSteps:
    """Accumulate gradients over `k` mini-steps and take one inner step with their mean.

    With `k = every_k_schedule(gradient_step)` and `g_1 … g_k` the gradients of `k` consecutive
    calls to `update`:

        a_j = a_{j-1} + (g_j - a_{j-1}) / j      (use_grad_mean=True; running mean, a_0 = 0)
        a_j = a_{j-1} + g_j                      (use_grad_mean=False; sum)

    The first `k - 1` calls return zero updates and leave the inner state unchanged; the `k`-th
    call returns `inner.update(a_k, inner_state, params)` and resets the accumulator. As in optax,
    `inner.update` is evaluated at every call on the running accumulator and its results are
    kept only on the `k`-th (`u = emit · inner_u`, `s = where(emit, inner_s, s)`): the same
    operations as optax's, so the same numbers bit for bit under `jax.jit` (a branch instead
    can let XLA fuse the inner step differently and move results by an ulp). So `k` steps
    of `MultiSteps(inner, k)` on `g_1 … g_k` equal one step of `inner` on `mean(g_1 … g_k)`: a
    large batch split into `k` micro-batches. Use [`has_updated`][gradtx.MultiSteps.has_updated]
    to know whether the last call took an inner step.

    If `should_skip_update_fn(g, gradient_step, params)` returns True, the mini-step is dropped:
    zero updates, and the state is unchanged except `skip_state`.

    `MultiSteps` is a class, like optax's: pass the instance itself where an optimizer is
    expected (`TrainState.create(tx=MultiSteps(...))`, `nnx.Optimizer(model, MultiSteps(...))`:
    they only call `init` and `update`), use its `init` and `update` directly, or get a
    [`GradientTransformation`][gradtx.GradientTransformation] from
    [`gradient_transformation`][gradtx.MultiSteps.gradient_transformation]. Its state is a
    [`MultiStepsState`][gradtx.MultiStepsState] of arrays.

    Args:
        opt: the wrapped transformation (gradtx or optax).
        every_k_schedule: an integer >= 1, or a function of the inner step count (`gradient_step`)
            returning the number of mini-steps to accumulate (a growing batch size).
        use_grad_mean: default True: average the gradients; False: sum them.
        should_skip_update_fn: default None (never skip); e.g.
            [`skip_not_finite`][gradtx.skip_not_finite] or
            `functools.partial(skip_large_updates, max_squared_norm=...)`. Must return a scalar
            bool array and a pytree of arrays.
        accumulator_dtype: default float32, the (floating) dtype of the accumulator; None keeps
            each gradient leaf's dtype.

    References:
        Goyal et al., *Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour* (2017),
        arXiv:1706.02677. Same semantics as `optax.MultiSteps`.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> ms = gradtx.MultiSteps(gradtx.identity(), every_k_schedule=2)
        >>> state = ms.init(jnp.zeros(1))
        >>> u1, state = ms.update(jnp.array([1.0]), state)
        >>> u2, state = ms.update(jnp.array([3.0]), state)
        >>> u1.tolist(), u2.tolist(), bool(ms.has_updated(state))
        ([0.0], [2.0], True)
    """

    def __init__(
        self,
        opt: GradientTransformation,
        every_k_schedule: int | Callable[[jax.Array], jax.Array],
        use_grad_mean: bool = True,
        should_skip_update_fn: ShouldSkipUpdateFunction | None = None,
        accumulator_dtype: Any = jnp.float32,
    ):
        owner = "MultiSteps"
        check_transformation(owner, "opt", opt)
        if not callable(every_k_schedule):
            check_int(owner, "every_k_schedule", every_k_schedule, low=1)
        check_bool(owner, "use_grad_mean", use_grad_mean)
        if should_skip_update_fn is not None and not callable(should_skip_update_fn):
            raise TypeError(
                f"{owner}: should_skip_update_fn must be None or callable, "
                f"got {type(should_skip_update_fn).__name__}: {should_skip_update_fn!r}"
            )
        check_dtype(owner, "accumulator_dtype", accumulator_dtype)
        self._opt = opt
        self._inner_update = forwarding_update(opt)
        self._every_k_schedule = every_k_schedule
        self._use_grad_mean = bool(use_grad_mean)
        self._should_skip_update_fn = should_skip_update_fn
        self._skip_fn = should_skip_update_fn if should_skip_update_fn is not None else _never_skip
        self._accumulator_dtype = None if accumulator_dtype is None else np.dtype(accumulator_dtype)

    def __repr__(self) -> str:
        return repr(self.gradient_transformation())

    @property
    def inner_opt(self) -> GradientTransformation:
        """The wrapped transformation."""
        return self._opt

    def _k(self, gradient_step: jax.Array) -> jax.Array:
        if callable(self._every_k_schedule):
            return jnp.asarray(self._every_k_schedule(gradient_step), jnp.int32)
        return jnp.asarray(self._every_k_schedule, jnp.int32)

    def _acc_dtype(self, leaf: Any) -> Any:
        return self._accumulator_dtype if self._accumulator_dtype is not None else jnp.result_type(leaf)

    def init(self, params: Params) -> MultiStepsState:
        """The initial state: counters at 0, zero accumulator, `opt.init(params)`."""
        zeros = tree_zeros_like(params)
        gradient_step = jnp.zeros((), jnp.int32)
        _, skip_state = self._skip_fn(zeros, gradient_step, params)
        return MultiStepsState(
            mini_step=jnp.zeros((), jnp.int32),
            gradient_step=gradient_step,
            inner_opt_state=self._opt.init(params),
            acc_grads=jax.tree.map(lambda p: full_like_param(p, 0, self._acc_dtype(p)), params),
            skip_state=skip_state,
        )

    def update(
        self, updates: Updates, state: MultiStepsState, params: Params | None = None, **extra_args: Any
    ) -> tuple[Updates, MultiStepsState]:
        """Accumulate `updates`; every `k`-th call, step the inner transformation on the result."""
        k_steps = self._k(state.gradient_step)
        should_skip, skip_state = self._skip_fn(updates, state.gradient_step, params)
        should_skip = jnp.asarray(should_skip)
        if should_skip.shape != () or should_skip.dtype != jnp.bool_:
            raise ValueError(
                "MultiSteps: should_skip_update_fn must return a scalar bool array first, got "
                f"dtype {should_skip.dtype} and shape {should_skip.shape}"
            )

        if self._use_grad_mean:
            n = state.mini_step

            def accumulate(g, acc):
                return (acc + (g - acc) / (n + 1)).astype(acc.dtype)
        else:

            def accumulate(g, acc):
                return (acc + g).astype(acc.dtype)

        def inner_step(acc_grads):
            as_updates = jax.tree.map(lambda a, g: a.astype(jnp.result_type(g)), acc_grads, updates)
            return self._inner_update(as_updates, state.inner_opt_state, params, **extra_args)

        def do_update():
            # The inner step runs at every mini-step and its results are selected by `emit`
            # (not branched on): the same data flow as optax, hence the same numbers under jit.
            acc_grads = jax.tree.map(accumulate, updates, state.acc_grads)
            new_updates, new_inner = inner_step(acc_grads)
            emit = state.mini_step == k_steps - 1
            new_inner = jax.tree.map(
                lambda old, new: jnp.asarray(jnp.where(emit, new, old), jnp.result_type(old)),
                state.inner_opt_state,
                new_inner,
            )
            new_updates = jax.tree.map(lambda u: emit * u, new_updates)
            return new_updates, MultiStepsState(
                mini_step=(safe_increment(state.mini_step) % k_steps).astype(jnp.int32),
                gradient_step=jnp.where(emit, safe_increment(state.gradient_step), state.gradient_step),
                inner_opt_state=new_inner,
                # reset by multiplying with 0 (not selecting zeros): a negative sum resets to -0.0 as in optax
                acc_grads=jax.tree.map(lambda a: ((1 - emit) * a).astype(a.dtype), acc_grads),
                skip_state=skip_state,
            )

        def skip_update():
            shapes = jax.eval_shape(inner_step, state.acc_grads)[0]
            return zeros_from_shapes(shapes), state._replace(skip_state=skip_state)

        return cond(should_skip, skip_update, do_update)

    def has_updated(self, state: MultiStepsState) -> jax.Array:
        """True iff the last `update` took an inner step (`mini_step == 0` and `gradient_step > 0`)."""
        return jnp.logical_and(state.mini_step == 0, state.gradient_step > 0)

    def gradient_transformation(self) -> GradientTransformation:
        """This wrapper as a [`GradientTransformation`][gradtx.GradientTransformation] `(init, update)`.

        It prints as `MultiSteps(opt=..., every_k_schedule=..., ...)` and checks its state like
        every gradtx transformation.
        """
        return _multi_steps_transformation(
            self._opt,
            self._every_k_schedule,
            self._use_grad_mean,
            self._should_skip_update_fn,
            self._accumulator_dtype,
        )


def _multi_steps_transformation(
    opt: GradientTransformation,
    every_k_schedule: int | Callable[[jax.Array], jax.Array],
    use_grad_mean: bool = True,
    should_skip_update_fn: ShouldSkipUpdateFunction | None = None,
    accumulator_dtype: Any = jnp.float32,
) -> GradientTransformation:
    wrapper = MultiSteps(opt, every_k_schedule, use_grad_mean, should_skip_update_fn, accumulator_dtype)
    return GradientTransformation(wrapper.init, wrapper.update)


_multi_steps_transformation.__name__ = "MultiSteps"
_multi_steps_transformation.__qualname__ = "MultiSteps"
_multi_steps_transformation = describe(_multi_steps_transformation)
