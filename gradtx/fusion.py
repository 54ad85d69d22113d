r"""Opt-in fused many-leaf updates: run an element-wise transformation on a few contiguous buffers.

Fusion is opt-in. The optimizer aliases (`gradtx.adam`, `gradtx.sgd`, ...) run leaf by leaf, as
optax does: optax's numbers bit for bit under `jit` and optax's state layout (a tree like the
params in every statistic, whatever the device count). Wrap a transformation in
[`maybe_fuse`][gradtx.fusion.maybe_fuse] or [`fused`][gradtx.fusion.fused] to fuse it.

What it buys. A model with hundreds or thousands of small parameter arrays pays, at every step, a
fixed cost per array: every state array crosses the `jit` boundary (argument handling, donation,
output allocation) and every per-leaf statistic is its own kernel. For Adam on 1,000 leaves of
1,000 floats this overhead, not memory traffic, is most of the step. Measured on a quiet 2-core
CPU (`docs/benchmarks.md`, median of paired blocks): the fused Adam step takes 0.37 of the
per-leaf step's time there (the per-leaf step 1.01 of optax's), 1.04 of the floor `p - lr * g`,
and compiles in 0.31 of optax's time; on a flax transformer (198 leaves) 0.74 of the per-leaf
step; on a single large leaf nothing (large leaves are not fused).

What it changes.

* The numbers, by a few ulp. In op-by-op (un-jitted) execution an element-wise transformation
  gives the per-leaf result bit for bit on the fused view. Under `jit`, XLA simplifies the same
  expression differently in the two programs: for Adam's update
  $(m / c_1) / (\sqrt{v / c_2} + \epsilon)$, with $c_i = 1 - \beta_i^t$, the per-leaf program
  computes $m / (c_1 (\sqrt{v / c_2} + \epsilon))$ and the fused one $m \cdot (1 / c_1) / \ldots$,
  so the updates differ by up to 2 ulp (measured: about half of the elements on 40 leaves of
  8x6, float32, first step; the moments themselves are identical; SGD with momentum and centred
  RMSProp came out bit-identical). `clip_by_global_norm` sums the squares of one buffer instead
  of leaf by leaf and then across leaves, a different association of the same sum: its norm
  differs by 0-2 ulp even without `jit`. Moments carry such differences from step to step
  without amplifying them.
* The state layout: a [`FusedState`][gradtx.fusion.FusedState] of flat buffers instead of a tree
  like the params, so `optax.tree.get(state, "mu")` returns a buffer, and checkpoints of the two
  layouts do not restore into each other; [`unfuse_state`][gradtx.fusion.unfuse_state] and
  [`fuse_state`][gradtx.fusion.fuse_state] convert them.

How. [`fused`][gradtx.fusion.fused] gathers the leaves into a *fused view*:

* the small leaves (at most `max_leaf_size` elements) of each dtype are raveled and
  concatenated into one 1-D buffer, in tree order;
* large leaves (whose per-array cost is negligible and whose copy would not be) stay as they are.

The inner transformation runs on that view, so its state holds one buffer per dtype (plus the
large leaves) instead of one array per leaf; the updates are cut back into the leaves' shapes.
The state is still a pytree of arrays (checkpointable, donatable); only its layout changes.

When does it compute the per-leaf update (up to the rounding above)? For *element-wise*
transformations (each output element depends on the same element of the inputs and on scalars
such as the step count): every optimizer built from `scale_by_adam`, `scale_by_rms`, `trace`,
`scale_by_learning_rate`, ... and for `clip_by_global_norm`, since the global norm of the
concatenation is the global norm of the tree. It computes something else for transformations that look at one leaf as a whole or at the tree's
structure: per-leaf norms (`clip_by_norm`, `scale_by_trust_ratio`, LAMB/LARS), masks
(`masked`, `multi_transform`, `add_decayed_weights(mask=...)`), per-leaf random keys
(`add_noise`), factored statistics (Adafactor) or shape-dependent rules (Muon, Shampoo).
[`maybe_fuse`][gradtx.fusion.maybe_fuse] only fuses transformations it can check are
element-wise (see [`is_elementwise`][gradtx.fusion.is_elementwise]); [`fused`][gradtx.fusion.fused]
trusts the caller.

Turning it off: [`maybe_fuse`][gradtx.fusion.maybe_fuse] returns its argument unchanged inside
`with gradtx.fusion.disabled():` or when the environment variable `GRADTX_FUSION=0` is set (both
read when the transformation is *built*), and never fuses trees with fewer than `min_leaves`
small leaves.

On a mesh. Leaves fuse per *sharding group*: `init` reads the params' shardings and only leaves
with the same sharding and dtype share a buffer. Single-device and replicated leaves form the
plain `"fused:<dtype>"` buffer; leaves sharded along their first axis only (a `NamedSharding`
whose spec shards axis 0 over mesh axes, e.g. `P("x")`, the first dimension divisible by the
number of shards $n$) form a buffer `"fused:<dtype>@x"` of shape $(n, m)$ sharded along its rows,
row $j$ holding every leaf's $j$-th block, so the state stays sharded like the params and
gathering the leaves into it or cutting the updates out of it moves no data between devices;
leaves sharded another way stay whole, with their sharding. `init` records the grouping for the
tree's structure, shapes and dtypes, and `update` (inside `jit`, where shardings are not
visible) reuses it: call `init` on the sharded params in the process that runs `update` (it is
what restoring a checkpoint into `tx.init(params)` does); otherwise `update` raises a
`ValueError` rather than guess.

Implementation notes (measured, see `docs/benchmarks.md`). XLA compiles one kernel per distinct
fused computation, and a slice at a constant offset makes every leaf's kernel distinct: cutting
1,000 leaves out of one buffer with static slices compiles ~1,000 kernels (tens of seconds on
CPU). The offsets of leaves whose shape occurs more than once are therefore made opaque to the
compiler (they pass through a no-op sort of runtime values), so every leaf of the same shape
reuses one kernel; leaves of a unique shape are cut at constant offsets. The sort's run time
grows with its operands (on CPU about as much as one more kernel per operand), so up to 8
leaves of one shape lying back to back share one opaque offset, the others adding a constant
to it: one sort operand per 8 leaves, at most 8 kernels per shape. Correctness never depends
on this; only compile and run time do.
"""

import contextlib
import contextvars
import os
from collections.abc import Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradtx import _validation as _v
from gradtx._fused_layout import Layout, from_view, group_keys, layout_of, shardings_known, to_view, tree_key
from gradtx.base import GradientTransformation, OptState, describe

__all__ = [
    "DEFAULT_MAX_LEAF_SIZE",
    "DEFAULT_MIN_LEAVES",
    "FusedState",
    "disabled",
    "fuse_state",
    "fused",
    "fusion_enabled",
    "is_elementwise",
    "maybe_fuse",
    "unfuse_state",
]

DEFAULT_MAX_LEAF_SIZE = 1 << 12
"""Leaves with more elements than this (4,096) are not copied into the fused buffers.

Fusing a leaf saves a fixed cost per state array and per kernel (a few microseconds on CPU)
but adds about 16 bytes per element of copying (the gradient concatenation and the
materialized update); measured on a 2-core CPU, fusing pays below ~4K elements per leaf for SGD
with momentum and below ~8K for Adam, and costs 1.3-2x above 16K.
"""

DEFAULT_MIN_LEAVES = 8
"""[`maybe_fuse`][gradtx.fusion.maybe_fuse] fuses only trees with at least this many small leaves."""

_ENABLED = contextvars.ContextVar("gradtx_fusion_enabled", default=True)


class FusedState(NamedTuple):
    """State of [`fused`][gradtx.fusion.fused]: the inner state, built for the fused view.

    Attributes:
        inner: the inner transformation's state for the fused view of the params (a dict
            with one 1-D buffer per dtype, keyed `"fused:<dtype>"`, one 2-D buffer per group of
            leaves sharded alike along their first axis, keyed `"fused:<dtype>@<mesh axes>"`,
            and the leaves kept whole, keyed `"leaf:<position>"`).
    """

    inner: OptState


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def _check_inner(owner: str, inner: Any) -> None:
    if not (callable(getattr(inner, "init", None)) and callable(getattr(inner, "update", None))):
        raise TypeError(
            f"{owner}: inner must be a gradient transformation with init and update, got "
            f"{type(inner).__name__}: {inner!r}"
        )


def _fused_transform(inner: GradientTransformation, max_leaf_size: int) -> GradientTransformation:
    # The layout depends on the params' shardings (leaves fuse per sharding group), which are
    # known when init sees concrete arrays but not inside jit, where update usually runs: init
    # records the layout it chose for a tree's structure, shapes and dtypes, and update reuses it.
    layouts: dict[Any, Layout] = {}

    def layout_for(tree: Any, *candidates: Any) -> Layout:
        key = tree_key(tree)
        for candidate in candidates:
            if candidate is not None and shardings_known(candidate):
                layouts[key] = layout_of(candidate, max_leaf_size)
                return layouts[key]
        if key not in layouts:
            return layout_of(tree, max_leaf_size, use_shardings=False)
        return layouts[key]

    def init(params):
        layout = layout_for(params, params)
        return FusedState(inner=inner.init(to_view(params, layout, "params")))

    def update(updates, state, params=None, **extra_args):
        if not isinstance(state, FusedState):
            raise TypeError(
                f"fused.update expected a FusedState, got {type(state).__name__}; build the state "
                f"with this transformation's init."
            )
        if tree_key(updates) in layouts:
            layout = layouts[tree_key(updates)]
        else:  # no init seen in this process (e.g. a state restored from a checkpoint)
            layout = layout_for(updates, params)
        expected = group_keys(state.inner)
        if expected is not None and expected != set(layout.groups):
            # a state fused without shardings (e.g. on one device) continued with sharded params
            plain = layout_of(updates, max_leaf_size, use_shardings=False)
            layout = plain if expected == set(plain.groups) else layout
        if expected is not None and expected != set(layout.groups):
            raise ValueError(
                f"fused.update: the state holds the fused buffers {sorted(expected)} but the updates "
                f"give the buffers {sorted(layout.groups)}: leaves fuse per sharding group, and the "
                f"shardings are read by init (or from concrete params). Call this transformation's "
                f"init on the (sharded) params in this process before update, or pass concrete "
                f"params to update."
            )
        view = to_view(updates, layout, "updates")
        view_params = None if params is None else to_view(params, layout, "params")
        new_view, inner_state = inner.update(view, state.inner, view_params, **extra_args)
        return from_view(new_view, layout), FusedState(inner=inner_state)

    update._gradtx_fused = True  # type: ignore[attr-defined]
    return GradientTransformation(init, update)


@describe
def fused(inner: GradientTransformation, max_leaf_size: int = DEFAULT_MAX_LEAF_SIZE) -> GradientTransformation:
    r"""Run the element-wise transformation `inner` on contiguous buffers instead of leaf by leaf.

    With $\mathrm{view}(x)$ the fused view of a tree $x$ (its leaves with at most
    `max_leaf_size` elements raveled and concatenated into one buffer per dtype, in tree order;
    larger leaves kept as they are) and $\mathrm{view}^{-1}$ its inverse:

    $$\mathrm{init}(p) = \mathrm{FusedState}(\mathrm{inner.init}(\mathrm{view}(p))),\qquad
      (u', s') = \mathrm{inner.update}(\mathrm{view}(g), s, \mathrm{view}(p)),\quad
      u = \mathrm{view}^{-1}(u').$$

    For element-wise `inner` (and `clip_by_global_norm`) the updates are those of `inner`
    applied leaf by leaf, up to a few ulp of rounding (XLA compiles the two programs
    differently; see the module documentation, also for the transformations where they are
    not). The state is a `FusedState`, not a tree like the params. Params passed to `update` must have the updates' dtypes leaf by leaf.
    Extra keyword arguments are forwarded to `inner`.

    Args:
        inner: the transformation to run on the fused view (gradtx or optax); it must be
            element-wise for the result to equal the per-leaf one.
        max_leaf_size: leaves with more elements stay separate arrays (their per-array cost is
            small next to copying them); an integer `>= 0`, default 4,096 (`2**12`).

    Returns:
        A `GradientTransformation` with state [`FusedState`][gradtx.fusion.FusedState].

    References:
        The contiguous "multi-tensor apply" of NVIDIA Apex's fused optimizers
        (`apex.optimizers.FusedAdam`) and PyTorch's `foreach`/`fused` optimizer implementations.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> from gradtx.fusion import fused
        >>> tx = fused(gradtx.adam(1e-3))
        >>> params = {"w": jnp.ones((2, 3)), "b": jnp.zeros(3)}
        >>> state = tx.init(params)
        >>> sorted(state.inner[0].mu)
        ['fused:float32']
        >>> updates, state = tx.update(params, state)
        >>> updates["w"].shape
        (2, 3)
    """
    _check_inner("fused", inner)
    _v.check_int("fused", "max_leaf_size", max_leaf_size, low=0)
    return _fused_transform(inner, int(max_leaf_size))


def _same_tree(candidate: Any, layout: Layout, shapes: list[tuple[int, ...]]) -> bool:
    try:
        leaves, treedef = jax.tree.flatten(candidate)
    except Exception:  # pragma: no cover
        return False
    if treedef != layout.treedef:
        return False
    return [tuple(jnp.shape(x)) for x in leaves] == shapes


def unfuse_state(state: Any, params: Any, max_leaf_size: int = DEFAULT_MAX_LEAF_SIZE) -> Any:
    """The per-leaf form of a fused state: every fused statistic split back into param leaves.

    For a [`FusedState`][gradtx.fusion.FusedState] made by `fused(inner, max_leaf_size)` (or by
    [`maybe_fuse`][gradtx.fusion.maybe_fuse]) for `params`, returns the state `inner` would have
    leaf by leaf, e.g. to inspect Adam's moments per parameter or to restore a fused checkpoint
    into an unfused optimizer. Any other state is returned as it is.

    Args:
        state: the state to convert.
        params: the params (or their shapes) the state was built for; with their shardings
            when the state was fused on a mesh (its sharding groups are found from them). A
            state fused without shardings (on one device) is recognised as such.
        max_leaf_size: the value the transformation was built with (default the default).

    Returns:
        The inner state with every fused view replaced by a tree shaped like `params`.
    """
    if not isinstance(state, FusedState):
        return state
    layout = layout_of(params, int(max_leaf_size))
    found = group_keys(state.inner)
    if found is not None and found != set(layout.groups):
        # fused without shardings (e.g. written on one device), converted with sharded params
        plain = layout_of(params, int(max_leaf_size), use_shardings=False)
        layout = plain if found == set(plain.groups) else layout
    keys = set(layout.groups) | set(layout.singles)

    def is_view(x: Any) -> bool:
        return isinstance(x, dict) and set(x) == keys

    return jax.tree.map(
        lambda x: from_view(x, layout, static=True) if is_view(x) else x, state.inner, is_leaf=is_view
    )


def fuse_state(state: Any, params: Any, max_leaf_size: int = DEFAULT_MAX_LEAF_SIZE) -> FusedState:
    """The fused form of a per-leaf state; inverse of [`unfuse_state`][gradtx.fusion.unfuse_state].

    Every subtree of `state` with the structure and leaf shapes of `params` (the per-leaf
    statistics) is replaced by its fused view; the rest (step counts, empty states) is kept. Use
    it to continue, with a fused optimizer, from a checkpoint written without fusion.

    Args:
        state: the state of the unfused transformation for `params`.
        params: the params (or their shapes).
        max_leaf_size: the value the fused transformation is built with (default the default).

    Returns:
        A [`FusedState`][gradtx.fusion.FusedState].
    """
    layout = layout_of(params, int(max_leaf_size))
    shapes = [tuple(jnp.shape(x)) for x in jax.tree.leaves(params)]

    def is_tree(x: Any) -> bool:
        return _same_tree(x, layout, shapes)

    inner = jax.tree.map(
        lambda x: to_view(x, layout, "state", check_dtype=False) if is_tree(x) else x, state, is_leaf=is_tree
    )
    return FusedState(inner=inner)


# --------------------------------------------------------------------------------------------
# maybe_fuse: the opt-in, for any transformation it can check
# --------------------------------------------------------------------------------------------

# Factories whose transformations are element-wise (or use only a norm over the whole tree),
# keyed by describe's name; the value checks the recorded hyper-parameters.
_ELEMENTWISE: dict[str, Any] = {
    "identity": None,
    "set_to_zero": None,
    "scale": None,
    "scale_by_learning_rate": None,
    "scale_by_schedule": None,
    "scale_by_sign": None,
    "clip": None,
    "clip_by_global_norm": None,
    "trace": None,
    "ema": None,
    "scale_by_adam": None,
    "scale_by_adamax": None,
    "scale_by_amsgrad": None,
    "scale_by_lion": None,
    "scale_by_rms": None,
    "scale_by_rss": None,
    "scale_by_stddev": None,
    "add_decayed_weights": lambda args: args.get("mask") is None,
    # optimizer aliases: chains of the above
    "sgd": None,
    "adam": None,
    "nadam": None,
    "adamw": lambda args: args.get("mask") is None,
    "nadamw": lambda args: args.get("mask") is None,
    "amsgrad": None,
    "adamax": None,
    "rmsprop": None,
    "adagrad": None,
    "lion": lambda args: args.get("mask") is None,
}
_COMPOSITES = {"chain"}


def is_elementwise(tx: GradientTransformation) -> bool:
    """Whether `tx` is known to give the same updates on the fused view as leaf by leaf.

    True for gradtx's element-wise transformations (moment estimates, scalings, momentum,
    element clipping, unmasked weight decay), `clip_by_global_norm`, and chains of those;
    False for anything else (per-leaf norms, masks, noise, optax or user transformations), which
    is the safe answer: [`maybe_fuse`][gradtx.fusion.maybe_fuse] then leaves them alone.

    Args:
        tx: a gradient transformation.

    Returns:
        A bool.
    """
    info = getattr(getattr(tx, "update", None), "_gradtx_info", None)
    if info is None:
        return False
    module = getattr(tx.update, "__module__", "") or ""
    if not module.startswith("gradtx."):
        return False
    name, arguments = info
    if name in _COMPOSITES:
        members = arguments.get("*transforms", ())
        return all(is_elementwise(member) for member in members)
    if name not in _ELEMENTWISE:
        return False
    check = _ELEMENTWISE[name]
    return True if check is None else bool(check(arguments))


def fusion_enabled() -> bool:
    """Whether [`maybe_fuse`][gradtx.fusion.maybe_fuse] fuses at this point.

    False inside `with gradtx.fusion.disabled():` or when the environment variable
    `GRADTX_FUSION` is `0`, `false`, `no` or `off`.
    """
    env = os.environ.get("GRADTX_FUSION", "").strip().lower()
    if env in {"0", "false", "no", "off"}:
        return False
    return _ENABLED.get()


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Context manager: transformations built inside it by `maybe_fuse` are not fused.

    Example:
        >>> import gradtx
        >>> from gradtx import fusion
        >>> with fusion.disabled():
        ...     tx = fusion.maybe_fuse(gradtx.scale_by_adam())
        >>> tx
        scale_by_adam(b1=0.9, b2=0.999, eps=1e-08, eps_root=0.0, mu_dtype=None, nesterov=False)
    """
    token = _ENABLED.set(False)
    try:
        yield
    finally:
        _ENABLED.reset(token)


def _count_small(tree: Any, max_leaf_size: int) -> int:
    count = 0
    for leaf in jax.tree.leaves(tree):
        if int(np.prod(jnp.shape(leaf), dtype=np.int64)) <= max_leaf_size:
            count += 1
    return count


def maybe_fuse(
    tx: GradientTransformation,
    *,
    min_leaves: int = DEFAULT_MIN_LEAVES,
    max_leaf_size: int = DEFAULT_MAX_LEAF_SIZE,
    single_device: bool = False,
) -> GradientTransformation:
    """`tx`, fused when `tx` is element-wise and the tree has many small leaves (opt-in).

    The optimizer aliases do not call it: `gradtx.adam(...)` runs leaf by leaf, as optax does.
    `maybe_fuse(gradtx.adam(...))` (or of a whole `gradtx.chain(...)`) opts in, trading a few
    ulp of the numbers and the state layout for a faster step on many small leaves (see the
    module documentation).

    Returns `tx` itself when fusion is switched off (see
    [`fusion_enabled`][gradtx.fusion.fusion_enabled]) or when `tx` is not known to be
    element-wise ([`is_elementwise`][gradtx.fusion.is_elementwise]). Otherwise returns a
    transformation that, at `init`, looks at the params: with at least `min_leaves` leaves of
    at most `max_leaf_size` elements it behaves as [`fused`][gradtx.fusion.fused]`(tx)` (state
    [`FusedState`][gradtx.fusion.FusedState]); with fewer it is `tx` itself (state
    `tx.init(params)`, unchanged). `update` follows whichever `init` chose, so the choice is made
    once, from the tree's structure, shapes and dtypes. The updates agree either way up to a few
    ulp of rounding.

    Args:
        tx: the transformation to fuse.
        min_leaves: fuse only trees with at least this many small leaves; an integer `>= 1`,
            default 8.
        max_leaf_size: as in [`fused`][gradtx.fusion.fused]; default 4,096.
        single_device: when True, fuse only when JAX sees a single device (checked at `init`),
            so that on several devices the state is the per-leaf one (the state layout then
            depends on the device count). Default False: fuse on any number of devices, per
            sharding group (see the module documentation: the state stays sharded like the
            params).

    Returns:
        A `GradientTransformation` (`tx` itself when not fused).

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> from gradtx.fusion import maybe_fuse, FusedState
        >>> tx = maybe_fuse(gradtx.chain(gradtx.scale_by_adam(), gradtx.scale(-1e-3)))
        >>> many = {f"b{i}": jnp.zeros(4) for i in range(10)}
        >>> isinstance(tx.init(many), FusedState), isinstance(tx.init({"w": jnp.zeros(4)}), FusedState)
        (True, False)
    """
    _check_inner("maybe_fuse", tx)
    _v.check_int("maybe_fuse", "min_leaves", min_leaves, low=1)
    _v.check_int("maybe_fuse", "max_leaf_size", max_leaf_size, low=0)
    _v.check_bool("maybe_fuse", "single_device", single_device)
    if getattr(tx.update, "_gradtx_fused", False):
        # already wrapped; an alias fused only on one device may be re-wrapped without that limit
        unfused = getattr(tx.update, "_gradtx_unfused", None)
        if single_device or unfused is None or not getattr(tx.update, "_gradtx_single_device", False):
            return tx
        if not fusion_enabled():
            return tx
        tx = unfused
    if not fusion_enabled() or not is_elementwise(tx):
        return tx
    fast = _fused_transform(tx, int(max_leaf_size))

    def init(params):
        if single_device and jax.device_count() > 1:
            return tx.init(params)
        if _count_small(params, max_leaf_size) >= min_leaves:
            return fast.init(params)
        return tx.init(params)

    def update(updates, state, params=None, **extra_args):
        if isinstance(state, FusedState):
            return fast.update(updates, state, params, **extra_args)
        return tx.update(updates, state, params, **extra_args)

    update._gradtx_fused = True  # type: ignore[attr-defined]  # survives describe's functools.wraps
    update._gradtx_unfused = tx  # type: ignore[attr-defined]
    update._gradtx_single_device = single_device  # type: ignore[attr-defined]
    return GradientTransformation(init, update)
