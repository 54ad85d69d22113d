r"""Sharded optimizer state (ZeRO-1) for data-parallel training on a device mesh.

In pure data parallelism every device holds the full params and, with them, the full optimizer
state: Adam keeps two more copies of the model on every device. ZeRO stage 1 (Rajbhandari et al.,
2020) keeps the params replicated but *partitions the optimizer state* across the data-parallel
devices: each device stores and updates one slice of every moment, and the updates are gathered
back to full size before they are applied. With $n$ devices along the data axis the per-device
state shrinks from $S$ to about $S / n$ bytes.

On JAX's SPMD engine this needs no new collective code. [`state_shardings`][gradtx.state_shardings]
says where every state leaf lives; [`shard_state`][gradtx.shard_state] wraps a transformation so
that its `init` and `update` pin the state to those shardings with
`jax.lax.with_sharding_constraint` and pin the updates to the params' sharding. XLA then
partitions the element-wise update math along the sharded dimension: each device keeps its slice
of the summed gradient (a backend may turn the all-reduce and the slice into one reduce-scatter;
XLA:CPU keeps the all-reduce) and the updates are all-gathered. The step of the snippet below
compiles, on 8 CPU devices, to one all-reduce and one all-gather. Both functions are exported at
the top level (`gradtx.shard_state`, `gradtx.state_shardings`).

**The placement rule** (one state leaf of shape $(d_0, \ldots, d_{k-1})$, mesh axis of size $n$,
starting from the sharding of the leaf's param, or replicated when the leaf is not params-shaped):

* scalars ($k = 0$: step counts, injected hyper-parameters, norms) and PRNG keys keep the
  starting sharding (replicated);
* a leaf whose param is already sharded along the axis keeps its param's sharding;
* otherwise the leaf is split along the largest dimension $d_j$ with $d_j \bmod n = 0$ among the
  dimensions the param's sharding leaves unsplit; among equally large dimensions the first
  (outermost) one is taken: the outer the split dimension, the fewer and longer the contiguous
  runs of each device's shard in the row-major array (one block when it is the first);
* a leaf with no such dimension (non-divisible or too small) keeps its param's sharding.

Masked-out subtrees ([`MaskedNode`][gradtx.MaskedNode]) and `None` leaves have no leaves and are
skipped. Only the placement changes: the state is the inner transformation's own state (same
NamedTuples, same shapes and dtypes), so it checkpoints and restores like the unsharded state,
onto any device count.

**Numbers.** Element-wise optimizers (SGD with momentum, Adam, AdamW, RMSProp, Adagrad, Lion,
...) compute every element from the same inputs by the same operations on one slice as on the
whole array: their updates and states are the unsharded ones bit for bit, step after step.
Transformations with a global reduction (`clip_by_global_norm`, the trust ratios of LAMB/LARS)
add per-device partial sums, a different association of the same sum: their results differ by a
few ulp (measured: at most 3e-7 relative to the leaf's norm after 5 steps). One compiler detail:
when a jitted step also applies the updates, XLA may fuse the unsharded `p + (-lr) * u` into one
fused multiply-add, which the sharded step, gathering `u` in between, cannot do; the params then
differ by at most one rounding per step, while updates and states stay identical.

### Sharded optimizer state (ZeRO-1)

A data-parallel step on a mesh of all devices, params replicated, the batch split along `"data"`,
Adam's moments split along each weight's largest divisible dimension:

```python
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

import gradtx

mesh = Mesh(np.array(jax.devices()), ("data",))
n = mesh.shape["data"]
replicated = NamedSharding(mesh, P())
params = jax.device_put({"w": jnp.zeros((8 * n, 4)), "b": jnp.zeros(3)}, replicated)
x = jax.device_put(jnp.ones((2 * n, 8 * n)), NamedSharding(mesh, P("data")))

tx = gradtx.shard_state(gradtx.adam(1e-2), mesh, axis="data")
state = jax.jit(tx.init)(params)
print(state[0].mu["w"].addressable_shards[0].data.shape)  # (8, 4): 1/n of the moment per device


@jax.jit
def step(params, state, x):
    grads = jax.grad(lambda p: jnp.sum((x @ p["w"]) ** 2) + jnp.sum(p["b"] ** 2))(params)
    updates, state = tx.update(grads, state, params)
    return gradtx.apply_updates(params, updates), state


params, state = step(params, state, x)
# the step keeps the state sharded and the params replicated
assert state[0].nu["w"].sharding.is_equivalent_to(NamedSharding(mesh, P("data", None)), 2)
assert params["w"].sharding.is_fully_replicated
```

To place a state built elsewhere (a restored checkpoint, `jax.jit(..., out_shardings=...)`), use
`gradtx.state_shardings(tx, params, mesh, "data")`, a tree of `NamedSharding`s shaped like the
state. A checkpoint of the sharded state is `tx`'s own state: restore it onto one device (an
abstract target with single-device shardings) or onto the mesh (an abstract target with these
shardings) and training continues identically.

References:
    Rajbhandari, Rasley, Ruwase & He, *ZeRO: Memory Optimizations Toward Training Trillion
    Parameter Models*, SC 2020 (stage 1: optimizer-state partitioning).
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from gradtx.base import GradientTransformation, OptState, Params, describe
from gradtx.wrappers._common import check_transformation, forwarding_update
from gradtx.wrappers.masking import MaskedNode
from gradtx.wrappers.protocol import tree_map_params

__all__ = ["shard_state", "state_shardings"]

_REPLICATED = P()


# --------------------------------------------------------------------------------------------
# checks
# --------------------------------------------------------------------------------------------


def _check_mesh_axis(owner: str, mesh: Any, axis: Any) -> int:
    """The size of `axis` in `mesh`, after checking both."""
    if not isinstance(mesh, Mesh):
        raise TypeError(
            f"{owner}: mesh must be a jax.sharding.Mesh (e.g. Mesh(np.array(jax.devices()), "
            f"('data',))), got {type(mesh).__name__}: {mesh!r}"
        )
    if not isinstance(axis, str) or axis not in mesh.axis_names:
        raise ValueError(
            f"{owner}: axis must be the name of one of the mesh's axes {tuple(mesh.axis_names)}, got {axis!r}"
        )
    return int(mesh.shape[axis])


def _is_spec(node: Any) -> bool:
    return isinstance(node, P)


def _padded(spec: P, ndim: int) -> tuple[Any, ...]:
    entries = tuple(spec)
    if len(entries) > ndim:
        raise ValueError(f"the partition spec {spec} has {len(entries)} entries for an array of rank {ndim}")
    return entries + (None,) * (ndim - len(entries))


def _uses_axis(entry: Any, axis: str) -> bool:
    return entry == axis or (isinstance(entry, tuple) and axis in entry)


def _is_key(dtype: Any) -> bool:
    try:
        return bool(jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key))
    except TypeError:
        return False


def _on_mesh(sharding: Any, mesh: Mesh) -> bool:
    """Whether `sharding` is a NamedSharding on `mesh` (same axes, same devices)."""
    return (
        isinstance(sharding, NamedSharding)
        and sharding.mesh.shape_tuple == mesh.shape_tuple
        and np.array_equal(sharding.mesh.devices, mesh.devices)
    )


# --------------------------------------------------------------------------------------------
# the placement rule
# --------------------------------------------------------------------------------------------


def _leaf_spec(leaf: Any, axis: str, axis_size: int, base: P) -> P:
    """The spec of one state leaf: `base` split along its largest free dimension divisible by `axis_size`."""
    shape = tuple(np.shape(leaf))
    if not shape or _is_key(getattr(leaf, "dtype", None)):
        return base
    entries = _padded(base, len(shape))
    if any(_uses_axis(entry, axis) for entry in entries):
        return base
    best = None
    for dim, size in enumerate(shape):
        if entries[dim] is None and size >= axis_size and size % axis_size == 0:
            if best is None or size > shape[best]:  # strictly larger: the first wins ties
                best = dim
    if best is None:
        return base
    return P(*(axis if dim == best else entry for dim, entry in enumerate(entries)))


def _state_specs(owner: str, tx: Any, state: OptState, axis: str, axis_size: int, param_specs: Any) -> OptState:
    """A tree of PartitionSpecs shaped like `state`; params-shaped parts start from `param_specs`.

    `param_specs` None means every param is replicated (no need to find the params-shaped parts).
    """

    def rule(leaf: Any, base: P = _REPLICATED) -> P:
        try:
            return _leaf_spec(leaf, axis, axis_size, base)
        except ValueError as err:
            raise ValueError(f"{owner}: a state leaf of shape {np.shape(leaf)}: {err}") from None

    def rule_or_masked(leaf: Any, base: P) -> Any:
        return leaf if isinstance(leaf, MaskedNode) else rule(leaf, base)

    if param_specs is None:
        return jax.tree.map(rule, state)
    # a masked-out subtree of the state (a MaskedNode) meets its params' specs: kept as it is
    masked = lambda node: isinstance(node, MaskedNode)  # noqa: E731
    return tree_map_params(tx, rule_or_masked, state, param_specs, transform_non_params=rule, is_leaf=masked)


def _param_spec(owner: str, mesh: Mesh, path: str, leaf: Any) -> P:
    """A param's spec on `mesh`: its own for a NamedSharding on it, replicated for unsharded ones."""
    sharding = getattr(leaf, "sharding", None)
    if sharding is None:
        return _REPLICATED
    if _on_mesh(sharding, mesh):
        return sharding.spec
    if sharding.is_fully_replicated:
        return _REPLICATED
    raise ValueError(
        f"{owner}: params{path} is sharded as {sharding}, not by a NamedSharding on the given mesh "
        f"{dict(mesh.shape)}; put the params on that mesh (or replicate them) first."
    )


# --------------------------------------------------------------------------------------------
# public functions
# --------------------------------------------------------------------------------------------


def state_shardings(tx: GradientTransformation, params: Params, mesh: Mesh, axis: str = "data") -> Any:
    r"""The ZeRO-1 shardings of `tx`'s state for `params` on `mesh`, split along `axis`.

    The state's shapes come from `jax.eval_shape(tx.init, params)` (nothing is allocated). Every
    params-shaped part of the state (Adam's `mu` and `nu`, a momentum trace, ...) starts from its
    param's partition spec, every other leaf from replicated; then each leaf with shape
    $(d_0, \ldots, d_{k-1})$ is split along the dimension

    $$
    j^\star = \min \{ j \in D : d_j = \max_{i \in D} d_i \}, \qquad
    D = \{ i : d_i \ge n,\ d_i \bmod n = 0,\ \text{dimension } i \text{ not split by the param} \},
    $$

    with $n$ the size of `axis`: the largest divisible dimension, the first on ties. Scalars
    (step counts, injected hyper-parameters), PRNG keys, leaves whose param is already split
    along `axis` and leaves without such a dimension keep their starting spec.

    Args:
        tx: the gradient transformation (gradtx or optax; its `init` must accept the leafless
            placeholder of [`tree_map_params`][gradtx.tree_map_params], as optax's and gradtx's do).
        params: the params (arrays or `jax.ShapeDtypeStruct`s). A param whose sharding is a
            `NamedSharding` on `mesh` keeps its partition spec; a fully replicated,
            single-device or sharding-less param counts as replicated.
        mesh: the device mesh (`jax.sharding.Mesh`).
        axis: default `"data"`; the name of the mesh axis to split the state along.

    Returns:
        A tree of `NamedSharding`s with the structure of `tx.init(params)`: the `out_shardings`
        of a jitted `init`, or the shardings of an abstract checkpoint target.

    Raises:
        TypeError: `mesh` is not a `jax.sharding.Mesh`, or `tx` is not a transformation.
        ValueError: `axis` is not one of the mesh's axis names, or a param is sharded over
            another mesh.

    References:
        Rajbhandari, Rasley, Ruwase & He, *ZeRO: Memory Optimizations Toward Training Trillion
        Parameter Models*, SC 2020 (stage 1: optimizer-state partitioning).

    Example:
        >>> import jax, jax.numpy as jnp, numpy as np, gradtx
        >>> from jax.sharding import Mesh
        >>> mesh = Mesh(np.array(jax.devices()[:1]), ("data",))
        >>> shardings = gradtx.state_shardings(gradtx.adam(1e-3), {"w": jnp.ones((4, 2))}, mesh)
        >>> shardings[0].mu["w"].spec, shardings[0].count.spec
        (PartitionSpec('data', None), PartitionSpec())
    """
    owner = "state_shardings"
    axis_size = _check_mesh_axis(owner, mesh, axis)
    check_transformation(owner, "tx", tx)
    leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    param_specs = jax.tree_util.tree_unflatten(
        treedef, [_param_spec(owner, mesh, jax.tree_util.keystr(path), leaf) for path, leaf in leaves]
    )
    if all(spec == _REPLICATED for spec in jax.tree.leaves(param_specs, is_leaf=_is_spec)):
        param_specs = None  # all replicated: no need to find the params-shaped parts of the state
    abstract = jax.eval_shape(tx.init, params)
    specs = _state_specs(owner, tx, abstract, axis, axis_size, param_specs)
    return jax.tree.map(lambda spec: NamedSharding(mesh, spec), specs, is_leaf=_is_spec)


def _constrain(mesh: Mesh, leaf: Any, spec: P) -> Any:
    if not isinstance(leaf, jax.Array):  # Python scalars and other non-array leaves
        return leaf
    return jax.lax.with_sharding_constraint(leaf, NamedSharding(mesh, spec))


def _leading(entries: tuple[Any, ...], dim: int) -> P:
    """The spec of `jnp.moveaxis(x, dim, 0)` for `x` partitioned as `entries`."""
    return P(entries[dim], *entries[:dim], *entries[dim + 1 :])


def _gather(mesh: Mesh, axis: str, leaf: Any, split: P, target: P) -> Any:
    """Re-place `leaf`, split along `axis` as `split`, as `target` (usually: all-gather it).

    A leaf split along a dimension other than the first is gathered on a view with that
    dimension moved to the front, so that the gather concatenates whole blocks. Left to itself,
    XLA:CPU lays such shards out column-major for the gather; LLVM then contracts a different
    product of the optimizer's `a·b + c·d` into a fused multiply-add, and the last bit of some
    moments changes (measured on centred RMSProp, NAdam and Nesterov Adam).
    """
    if not isinstance(leaf, jax.Array):
        return leaf
    entries = _padded(split, leaf.ndim)
    dims = [d for d, entry in enumerate(entries) if _uses_axis(entry, axis)]
    wanted = _padded(target, leaf.ndim)
    if not dims or dims[0] == 0 or _uses_axis(wanted[dims[0]], axis):
        return _constrain(mesh, leaf, target)
    dim = dims[0]
    front = _constrain(mesh, jnp.moveaxis(leaf, dim, 0), _leading(entries, dim))
    front = _constrain(mesh, front, _leading(wanted, dim))
    return _constrain(mesh, jnp.moveaxis(front, 0, dim), target)


@describe
def shard_state(
    tx: GradientTransformation,
    mesh: Mesh,
    axis: str = "data",
    *,
    param_specs: Any = None,
) -> GradientTransformation:
    r"""Keep `tx`'s state split across the devices of one mesh axis (ZeRO stage 1).

    `init` and `update` return `tx`'s own state with every leaf pinned, by
    `jax.lax.with_sharding_constraint`, to the placement of
    [`state_shardings`][gradtx.state_shardings]: split along its largest dimension divisible by
    the size of `axis` (the first on ties); scalars, counts and non-divisible leaves placed like
    their param (replicated by default). In `update` the incoming gradients are split like the
    moments, so the element-wise math runs on shards, and the outgoing updates are pinned to the
    params' placement (all-gathered), so `apply_updates` sees updates placed like the params.
    XLA inserts the collectives.

    With $n$ devices along `axis` and every leaf split, the state takes

    $$
    \frac{S}{n} \text{ bytes per device instead of } S.
    $$

    Element-wise optimizers give the unsharded updates and states bit for bit; global reductions
    (`clip_by_global_norm`, LAMB's trust ratios) differ by a few ulp (partial sums added in
    another order). See the module docstring for one compiler detail when the step also applies
    the updates.

    Args:
        tx: the transformation whose state to shard (gradtx or optax).
        mesh: the device mesh (`jax.sharding.Mesh`); the params and the state live on it.
        axis: default `"data"`; the name of one of the mesh's axes to split the state along
            (usually the data-parallel axis).
        param_specs: default None (the params are replicated over the mesh). Otherwise one
            `PartitionSpec` for every param, or a pytree of `PartitionSpec`s with the params'
            structure: the params-shaped parts of the state start from their param's spec, and
            the updates are pinned to it. Then `tx.init` must accept the placeholder of
            [`tree_map_params`][gradtx.tree_map_params] (gradtx's and optax's do).

    Returns:
        A gradient transformation whose state is `tx`'s own (the same NamedTuples; only the
        placement differs), so a checkpoint of it restores as `tx`'s state on any device count.

    Raises:
        TypeError: `tx` is not a transformation, `mesh` not a `jax.sharding.Mesh`, or
            `param_specs` holds something other than `PartitionSpec`s.
        ValueError: `axis` is not one of the mesh's axis names.

    References:
        Rajbhandari, Rasley, Ruwase & He, *ZeRO: Memory Optimizations Toward Training Trillion
        Parameter Models*, SC 2020 (stage 1, $P_{os}$: optimizer-state partitioning).

    Example:
        >>> import jax, jax.numpy as jnp, numpy as np, gradtx
        >>> from jax.sharding import Mesh
        >>> mesh = Mesh(np.array(jax.devices()[:1]), ("data",))
        >>> tx = gradtx.shard_state(gradtx.sgd(0.5, momentum=0.9), mesh)
        >>> state = tx.init({"w": jnp.ones(4)})
        >>> updates, state = tx.update({"w": jnp.ones(4)}, state)
        >>> updates["w"].tolist()
        [-0.5, -0.5, -0.5, -0.5]
    """
    owner = "shard_state"
    check_transformation(owner, "tx", tx)
    axis_size = _check_mesh_axis(owner, mesh, axis)
    if param_specs is not None:
        bad = [leaf for leaf in jax.tree.leaves(param_specs, is_leaf=_is_spec) if not _is_spec(leaf)]
        if bad:
            raise TypeError(
                f"{owner}: param_specs must be None, a PartitionSpec or a pytree of PartitionSpecs "
                f"with the params' structure, got a leaf {type(bad[0]).__name__}: {bad[0]!r}"
            )
    inner_update = forwarding_update(tx)

    def bases(tree: Any) -> Any:
        """The params' specs as a tree shaped like `tree` (params, gradients or updates)."""
        if param_specs is None:
            return jax.tree.map(lambda _: _REPLICATED, tree)
        if _is_spec(param_specs):
            return jax.tree.map(lambda _: param_specs, tree)
        return param_specs

    def pin_state(state: OptState, base: Any) -> OptState:
        specs = _state_specs(owner, tx, state, axis, axis_size, None if param_specs is None else base)
        return jax.tree.map(lambda leaf, spec: _constrain(mesh, leaf, spec), state, specs)

    def split(tree: Any, base: Any) -> Any:
        return jax.tree.map(lambda leaf, spec: _leaf_spec(leaf, axis, axis_size, spec), tree, base)

    def init(params):
        return pin_state(tx.init(params), bases(params))

    def update(updates, state, params=None, **extra_args):
        base = bases(updates)
        state = pin_state(state, base)
        updates = jax.tree.map(lambda leaf, spec: _constrain(mesh, leaf, spec), updates, split(updates, base))
        new_updates, new_state = inner_update(updates, state, params, **extra_args)
        new_updates = jax.tree.map(
            lambda leaf, spec, target: _gather(mesh, axis, leaf, spec, target),
            new_updates,
            split(new_updates, base),
            base,
        )
        return new_updates, pin_state(new_state, base)

    return GradientTransformation(init, update)
