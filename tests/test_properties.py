"""Property-based tests (hypothesis) of invariants every gradtx transformation must keep.

Random pytrees (nested dicts / lists / tuples; leaf shapes from {(), (3,), (2, 3)}; leaf dtypes
float32 / bfloat16 / float16; finite values of moderate magnitude) and random *valid*
hyper-parameters (drawn from the ranges the docstrings state) are fed to every optimizer alias and
the main transforms and wrappers. The properties:

1. `init` / `update` keep the tree: updates have the gradients' treedef, shapes and dtypes; the
   state after any number of updates has the treedef, shapes and dtypes of the state from `init`.
2. `jax.jit(update)` equals eager `update` (tolerance by dtype).
3. float32 updates are finite for finite gradients.
4. `chain` is associative: `chain(a, chain(b, c))`, `chain(chain(a, b), c)` and `chain(a, b, c)`
   give the same updates over several steps.
5. `masked(inner, mask)`: masked-out leaves pass through untouched; masked-in leaves equal `inner`
   run on the masked-in leaves alone.
6. `MultiSteps(inner, k)` over `k` gradients equals one `inner` step on their mean.
7. `apply_if_finite`: a burst of non-finite steps (no longer than `max_consecutive_errors`) leaves
   the params and the inner state exactly as in the run without those steps.

The examples are derandomized (`derandomize=True`), so CI runs the same cases every time. Every
example body calls `_count(...)`; the module prints the total at teardown.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import gradtx

# --------------------------------------------------------------------------------------------
# Example counting
# --------------------------------------------------------------------------------------------

EXAMPLES: collections.Counter[str] = collections.Counter()


def _count(name: str) -> None:
    EXAMPLES[name] += 1


@pytest.fixture(scope="module", autouse=True)
def _report_example_count(request):
    yield
    total = sum(EXAMPLES.values())
    line = f"test_properties: {total} hypothesis examples run ({dict(sorted(EXAMPLES.items()))})"
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:  # pragma: no cover
        print(line)
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        reporter.write_line(line)


def _settings(n: int) -> Callable:
    return settings(
        max_examples=n,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# --------------------------------------------------------------------------------------------
# Pytrees
# --------------------------------------------------------------------------------------------

SHAPES = [(), (3,), (2, 3)]
PARAM_DTYPES = [jnp.float32, jnp.bfloat16, jnp.float16]
KEYS = ["a", "b", "bias", "kernel", "w"]


class _Leaf:
    """Placeholder for an array leaf while the tree structure is drawn (not a pytree node)."""


_structures = st.recursive(
    st.builds(_Leaf),
    lambda children: st.one_of(
        st.lists(children, min_size=1, max_size=3),
        st.lists(children, min_size=1, max_size=3).map(tuple),
        st.dictionaries(st.sampled_from(KEYS), children, min_size=1, max_size=3),
    ),
    max_leaves=5,
)

# Moderate finite values, with the edge cases (0, -0, ±1, equal entries) drawn often.
_values = st.one_of(
    st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.5]),
    st.floats(-8.0, 8.0, allow_nan=False, allow_infinity=False, allow_subnormal=False, width=32),
)


def _is_leaf(x: Any) -> bool:
    return isinstance(x, _Leaf)


@st.composite
def pytrees(draw, dtypes=PARAM_DTYPES, values=_values):
    """A random pytree of arrays: nested containers, random shapes, random (per-leaf) dtypes."""
    structure = draw(_structures)

    def fill(_):
        shape = draw(st.sampled_from(SHAPES))
        dtype = draw(st.sampled_from(dtypes))
        arr = draw(hnp.arrays(np.float32, shape, elements=values))
        return jnp.asarray(arr).astype(dtype)

    return jax.tree.map(fill, structure, is_leaf=_is_leaf)


@st.composite
def like(draw, tree, values=_values):
    """Random finite values in a tree shaped (and typed) like `tree`."""

    def fill(x):
        arr = draw(hnp.arrays(np.float32, x.shape, elements=values))
        return jnp.asarray(arr).astype(x.dtype)

    return jax.tree.map(fill, tree)


# --------------------------------------------------------------------------------------------
# Valid hyper-parameters (from the documented ranges) and the transformations under test
# --------------------------------------------------------------------------------------------

LR_CONST = st.floats(1e-4, 1.0)
LR = st.one_of(
    LR_CONST,
    st.builds(lambda v, n: gradtx.exponential_decay(v, transition_steps=n, decay_rate=0.5), LR_CONST,
              st.integers(1, 5)),
    st.builds(lambda v, n: gradtx.cosine_decay_schedule(v, decay_steps=n), LR_CONST, st.integers(1, 5)),
)
BETA = st.floats(0.0, 0.999)  # documented [0, 1); values within 2**-24 of 1 round to 1 in float32
UNIT = st.floats(0.0, 1.0)  # documented [0, 1]
EPS = st.floats(1e-8, 1e-3)  # documented >= 0; 0 is left out: 0/0 on a zero gradient is NaN (as optax)
NONNEG = st.floats(0.0, 1.0)
WD = st.floats(0.0, 0.1)
MOMENTUM = st.floats(0.0, 0.99)
ACC_DTYPE = st.sampled_from([None, jnp.float32, jnp.bfloat16])


def _ndim_mask(p):
    return jax.tree.map(lambda x: x.ndim > 0, p)


@st.composite
def _rmsprop(draw):
    bias_correction = draw(st.booleans())
    momentum = draw(st.one_of(st.none(), MOMENTUM))
    return gradtx.rmsprop(
        draw(LR),
        decay=draw(BETA if bias_correction else UNIT),
        eps=draw(EPS),
        initial_scale=draw(NONNEG),
        eps_in_sqrt=draw(st.booleans()),
        centered=draw(st.booleans()),
        momentum=momentum,
        nesterov=momentum is not None and draw(st.booleans()),
        bias_correction=bias_correction,
    )


def _adam_kwargs(draw, mu_dtype=True):
    kw = dict(b1=draw(BETA), b2=draw(BETA), eps=draw(EPS), eps_root=draw(st.sampled_from([0.0, 1e-8])))
    if mu_dtype:
        kw["mu_dtype"] = draw(ACC_DTYPE)
    return kw


def _c(fn):
    """A strategy from `fn(draw)`."""
    return st.composite(fn)()


OPTIMIZERS: dict[str, st.SearchStrategy] = {
    "sgd": _c(lambda d: gradtx.sgd(d(LR))),
    "sgd_momentum": _c(
        lambda d: gradtx.sgd(d(LR), momentum=d(MOMENTUM), nesterov=False, accumulator_dtype=d(ACC_DTYPE))
    ),
    "sgd_nesterov": _c(
        lambda d: gradtx.sgd(d(LR), momentum=d(MOMENTUM), nesterov=True, accumulator_dtype=d(ACC_DTYPE))
    ),
    "adagrad": _c(lambda d: gradtx.adagrad(d(LR), initial_accumulator_value=d(NONNEG), eps=d(EPS))),
    "rmsprop": _rmsprop(),
    "adam": _c(lambda d: gradtx.adam(d(LR), **_adam_kwargs(d), nesterov=d(st.booleans()))),
    "adamw": _c(
        lambda d: gradtx.adamw(
            d(LR), **_adam_kwargs(d), weight_decay=d(WD), mask=d(st.sampled_from([None, _ndim_mask])),
            nesterov=d(st.booleans()),
        )
    ),
    "nadam": _c(lambda d: gradtx.nadam(d(LR), **_adam_kwargs(d))),
    "nadamw": _c(lambda d: gradtx.nadamw(d(LR), **_adam_kwargs(d), weight_decay=d(WD))),
    "amsgrad": _c(
        lambda d: gradtx.amsgrad(
            d(LR), **_adam_kwargs(d), bias_correction_mu=d(st.booleans()), bias_correction_nu=d(st.booleans())
        )
    ),
    "adamax": _c(lambda d: gradtx.adamax(d(LR), b1=d(BETA), b2=d(BETA), eps=d(EPS))),
    "lion": _c(
        lambda d: gradtx.lion(d(LR), b1=d(UNIT), b2=d(UNIT), mu_dtype=d(ACC_DTYPE), weight_decay=d(WD))
    ),
    "lamb": _c(lambda d: gradtx.lamb(d(LR), **_adam_kwargs(d, mu_dtype=False), weight_decay=d(WD))),
}

TRANSFORMS: dict[str, st.SearchStrategy] = {
    "clip_by_global_norm": st.builds(gradtx.clip_by_global_norm, st.floats(0.0, 10.0)),
    "clip_by_norm": st.builds(gradtx.clip_by_norm, st.floats(1e-3, 10.0)),
    "clip": st.builds(gradtx.clip, st.floats(0.0, 10.0)),
    "trace": st.builds(gradtx.trace, UNIT, st.booleans(), ACC_DTYPE),
    "ema": st.builds(gradtx.ema, UNIT, st.booleans(), ACC_DTYPE),
    "scale_by_rms": _c(
        lambda d: gradtx.scale_by_rms(
            decay=d(BETA), eps=d(EPS), initial_scale=d(NONNEG), eps_in_sqrt=d(st.booleans()),
            bias_correction=d(st.booleans()),
        )
    ),
    "scale_by_stddev": _c(
        lambda d: gradtx.scale_by_stddev(
            decay=d(BETA), eps=d(EPS), initial_scale=d(NONNEG), eps_in_sqrt=d(st.booleans()),
            bias_correction=d(st.booleans()),
        )
    ),
    "scale_by_rss": st.builds(gradtx.scale_by_rss, NONNEG, EPS),
    "scale_by_adam": _c(lambda d: gradtx.scale_by_adam(**_adam_kwargs(d), nesterov=d(st.booleans()))),
    "add_decayed_weights": st.builds(
        gradtx.add_decayed_weights,
        st.one_of(WD, st.builds(lambda v: gradtx.linear_schedule(v, 0.0, 3), WD)),
        st.sampled_from([None, _ndim_mask]),
    ),
    "scale_by_trust_ratio": st.builds(gradtx.scale_by_trust_ratio, st.floats(0.0, 0.1), st.floats(0.0, 2.0),
                                      st.floats(0.0, 1e-3)),
    "zero_nans": st.just(gradtx.zero_nans()),
    "scale_by_sign": st.just(gradtx.scale_by_sign()),
}

ALL = {**OPTIMIZERS, **TRANSFORMS}


def _run(tx, params, grads_seq, update=None):
    """Run `tx` over `grads_seq`, applying the updates; return (updates list, states list, params)."""
    update = update or tx.update
    state = tx.init(params)
    updates_seq, states = [], [state]
    for g in grads_seq:
        u, state = update(g, state, params)
        params = gradtx.apply_updates(params, u)
        updates_seq.append(u)
        states.append(state)
    return updates_seq, states, params


def _assert_same_layout(a, b, what: str) -> None:
    """Same treedef, and per leaf the same shape and dtype."""
    assert jax.tree.structure(a) == jax.tree.structure(b), (
        f"{what}: treedef changed\n{jax.tree.structure(a)}\n{jax.tree.structure(b)}"
    )
    for (path, x), y in zip(jax.tree_util.tree_flatten_with_path(a)[0], jax.tree.leaves(b), strict=True):
        where = f"{what}{jax.tree_util.keystr(path)}"
        assert jnp.shape(x) == jnp.shape(y), f"{where}: shape {jnp.shape(x)} != {jnp.shape(y)}"
        assert jnp.result_type(x) == jnp.result_type(y), f"{where}: dtype {jnp.result_type(x)} != {jnp.result_type(y)}"


def _assert_equal(a, b, what: str = "") -> None:
    """Bit-identical trees (same treedef, dtypes and values)."""
    _assert_same_layout(a, b, what)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x, np.float64), np.asarray(y, np.float64), err_msg=what)


def _tolerance(dtype) -> dict[str, float]:
    if jnp.dtype(dtype) == jnp.float32:
        return dict(rtol=1e-5, atol=1e-6)
    if jnp.dtype(dtype) == jnp.float16:
        return dict(rtol=2e-3, atol=2e-3)
    return dict(rtol=2e-2, atol=2e-2)  # bfloat16


def _assert_close(a, b, what: str = "", tolerance_dtype=None) -> None:
    _assert_same_layout(a, b, what)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        tol = _tolerance(tolerance_dtype or jnp.result_type(x))
        np.testing.assert_allclose(np.asarray(x, np.float64), np.asarray(y, np.float64), err_msg=what, **tol)


# --------------------------------------------------------------------------------------------
# 1. Structure: updates shaped like the gradients, state layout fixed by init
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ALL))
@_settings(4)
@given(data=st.data())
def test_update_keeps_tree_structure_shapes_and_dtypes(name, data):
    _count("structure")
    tx = data.draw(ALL[name], label="tx")
    params = data.draw(pytrees(), label="params")
    grads = [data.draw(like(params), label=f"g{i}") for i in range(2)]
    updates, states, new_params = _run(tx, params, grads)
    for i, u in enumerate(updates):
        _assert_same_layout(u, grads[i], f"{name} updates[{i}]")
    for i, s in enumerate(states[1:]):
        _assert_same_layout(s, states[0], f"{name} state after update {i + 1}")
    _assert_same_layout(new_params, params, f"{name} params")


# --------------------------------------------------------------------------------------------
# 2. jit == eager
# --------------------------------------------------------------------------------------------


@_settings(12)
@given(name=st.sampled_from(sorted(ALL)), data=st.data())
def test_jit_matches_eager(name, data):
    _count("jit_eager")
    tx = data.draw(ALL[name], label="tx")
    params = data.draw(pytrees(), label="params")
    grads = [data.draw(like(params), label=f"g{i}") for i in range(2)]
    eager_u, eager_s, eager_p = _run(tx, params, grads)
    jit_u, jit_s, jit_p = _run(tx, params, grads, update=jax.jit(tx.update))
    # a bfloat16 moment rounds each step's `decay * m` eagerly; under jit XLA keeps that product in
    # float32 (as for optax), so float32 updates then agree only to bfloat16 precision
    low = next((v for v in gradtx.hyperparams(tx).values() if v is jnp.bfloat16), None)
    _assert_close(jit_u, eager_u, f"{name} updates", low)
    _assert_close(jit_s[-1], eager_s[-1], f"{name} state", low)
    _assert_close(jit_p, eager_p, f"{name} params", low)


# --------------------------------------------------------------------------------------------
# 3. Finite in, finite out (float32)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ALL))
@_settings(3)
@given(data=st.data())
def test_updates_finite_for_finite_float32_inputs(name, data):
    _count("finite")
    tx = data.draw(ALL[name], label="tx")
    params = data.draw(pytrees(dtypes=[jnp.float32]), label="params")
    grads = [data.draw(like(params), label=f"g{i}") for i in range(3)]
    updates, states, new_params = _run(tx, params, grads)
    for i, u in enumerate(updates):
        for path, leaf in jax.tree_util.tree_flatten_with_path(u)[0]:
            assert np.all(np.isfinite(np.asarray(leaf))), f"{name}: step {i} update{jax.tree_util.keystr(path)}"
    for path, leaf in jax.tree_util.tree_flatten_with_path(new_params)[0]:
        assert np.all(np.isfinite(np.asarray(leaf))), f"{name}: params{jax.tree_util.keystr(path)}"
    for path, leaf in jax.tree_util.tree_flatten_with_path(states[-1])[0]:
        if jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
            assert np.all(np.isfinite(np.asarray(leaf, np.float64))), f"{name}: state{jax.tree_util.keystr(path)}"


# --------------------------------------------------------------------------------------------
# 4. chain is associative
# --------------------------------------------------------------------------------------------

_CHAIN_POOL = ["adam", "sgd_momentum", "rmsprop", "clip_by_global_norm", "clip_by_norm", "trace", "ema",
               "scale_by_rss", "add_decayed_weights", "scale_by_trust_ratio", "scale_by_sign", "lion"]


@_settings(12)
@given(names=st.lists(st.sampled_from(_CHAIN_POOL), min_size=3, max_size=3), data=st.data())
def test_chain_is_associative(names, data):
    _count("chain")
    a, b, c = (data.draw(ALL[n], label=n) for n in names)
    params = data.draw(pytrees(dtypes=[jnp.float32]), label="params")
    grads = [data.draw(like(params), label=f"g{i}") for i in range(3)]
    flat, _, p_flat = _run(gradtx.chain(a, b, c), params, grads)
    right, _, p_right = _run(gradtx.chain(a, gradtx.chain(b, c)), params, grads)
    left, _, p_left = _run(gradtx.chain(gradtx.chain(a, b), c), params, grads)
    _assert_equal(right, flat, f"chain(a, chain(b, c)) vs chain(a, b, c) for {names}")
    _assert_equal(left, flat, f"chain(chain(a, b), c) vs chain(a, b, c) for {names}")
    _assert_equal(p_right, p_flat)
    _assert_equal(p_left, p_flat)


# --------------------------------------------------------------------------------------------
# 5. masked
# --------------------------------------------------------------------------------------------


@st.composite
def _mask_for(draw, tree):
    """A boolean mask with the structure of `tree` or a prefix of it (a bool may cover a subtree)."""
    if isinstance(tree, jax.Array) or draw(st.integers(0, 3)) == 0:
        return draw(st.booleans())
    if isinstance(tree, dict):
        return {k: draw(_mask_for(v)) for k, v in tree.items()}
    return type(tree)(draw(_mask_for(v)) for v in tree)


def _leaf_flags(mask, tree) -> list[bool]:
    """One flag per leaf of `tree` (expanding prefix booleans)."""
    return jax.tree.leaves(jax.tree.map(lambda m, sub: jax.tree.map(lambda _: m, sub), mask, tree))


_MASK_POOL = ["adam", "sgd_momentum", "clip_by_global_norm", "add_decayed_weights", "scale_by_trust_ratio",
              "lamb", "ema", "scale_by_rss"]


@_settings(15)
@given(name=st.sampled_from(_MASK_POOL), data=st.data())
def test_masked_passes_masked_out_leaves_and_applies_inner_to_the_rest(name, data):
    _count("masked")
    inner = data.draw(ALL[name], label="inner")
    params = data.draw(pytrees(dtypes=[jnp.float32]), label="params")
    mask = data.draw(_mask_for(params), label="mask")
    grads = [data.draw(like(params), label=f"g{i}") for i in range(3)]
    flags = _leaf_flags(mask, params)
    treedef = jax.tree.structure(params)

    tx = gradtx.masked(inner, mask)
    state = tx.init(params)
    # Reference: inner on the list of masked-in leaves only (in tree order).
    pick = lambda tree: [x for x, f in zip(treedef.flatten_up_to(tree), flags) if f]  # noqa: E731
    ref_state = inner.init(pick(params))
    p = params
    for i, g in enumerate(grads):
        u, state = tx.update(g, state, p)
        ref_u, ref_state = inner.update(pick(g), ref_state, pick(p))
        u_leaves, g_leaves = treedef.flatten_up_to(u), treedef.flatten_up_to(g)
        ref_iter = iter(ref_u)
        for k, (uu, gg, f) in enumerate(zip(u_leaves, g_leaves, flags, strict=True)):
            if f:
                np.testing.assert_allclose(np.asarray(uu), np.asarray(next(ref_iter)), rtol=1e-6, atol=0,
                                           err_msg=f"{name}: step {i}, masked-in leaf {k}")
            else:
                assert uu is gg or (uu.dtype == gg.dtype and np.array_equal(np.asarray(uu), np.asarray(gg))), (
                    f"{name}: step {i}, masked-out leaf {k} was changed"
                )
        p = gradtx.apply_updates(p, u)


# --------------------------------------------------------------------------------------------
# 6. MultiSteps(k) == one inner step on the mean gradient
# --------------------------------------------------------------------------------------------

# Inner transformations whose update is a well-conditioned function of the gradient: the mean of
# the k gradients is accumulated in float32 (a running mean), the reference uses the float64 mean,
# so a sign-like update (Adam with a tiny eps, Lion) could flip on a near-zero mean.
_MULTI_POOL: dict[str, st.SearchStrategy] = {
    "sgd": OPTIMIZERS["sgd"],
    "sgd_momentum": OPTIMIZERS["sgd_momentum"],
    "sgd_nesterov": OPTIMIZERS["sgd_nesterov"],
    "adagrad": _c(lambda d: gradtx.adagrad(d(LR), initial_accumulator_value=d(st.floats(0.1, 1.0)), eps=d(EPS))),
    "adamw": _c(lambda d: gradtx.adamw(d(LR), b1=d(BETA), b2=d(BETA), eps=d(st.floats(0.1, 1.0)),
                                       weight_decay=d(WD))),
    "clip_by_global_norm": TRANSFORMS["clip_by_global_norm"],
}


@_settings(12)
@given(name=st.sampled_from(sorted(_MULTI_POOL)), k=st.integers(1, 4), data=st.data())
def test_multisteps_equals_one_inner_step_on_the_mean_gradient(name, k, data):
    _count("multisteps")
    inner = data.draw(_MULTI_POOL[name], label="inner")
    params = data.draw(pytrees(dtypes=[jnp.float32]), label="params")
    cycles = 2
    grads = [data.draw(like(params), label=f"g{i}") for i in range(k * cycles)]

    tx = gradtx.MultiSteps(inner, every_k_schedule=k).gradient_transformation()
    state = tx.init(params)
    p = params
    for i, g in enumerate(grads):
        u, state = tx.update(g, state, p)
        if (i + 1) % k:
            _assert_equal(u, jax.tree.map(jnp.zeros_like, g), f"{name}: mini-step {i} must emit zeros")
        p = gradtx.apply_updates(p, u)

    ref_state = inner.init(params)
    ref_p = params
    for c in range(cycles):
        chunk = grads[c * k:(c + 1) * k]
        mean = jax.tree.map(
            lambda *gs: jnp.asarray(np.mean(np.stack([np.asarray(x, np.float64) for x in gs]), axis=0), jnp.float32),
            *chunk,
        )
        u, ref_state = inner.update(mean, ref_state, ref_p)
        ref_p = gradtx.apply_updates(ref_p, u)

    for (path, x), y in zip(jax.tree_util.tree_flatten_with_path(p)[0], jax.tree.leaves(ref_p), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-4,
                                   err_msg=f"{name} k={k}: params{jax.tree_util.keystr(path)}")
    _assert_close(state.inner_opt_state, ref_state, f"{name}: inner state")


# --------------------------------------------------------------------------------------------
# 7. apply_if_finite: rejected steps leave no trace
# --------------------------------------------------------------------------------------------


@st.composite
def _poisoned(draw, tree):
    """`tree` with one random coordinate of one random leaf set to NaN, +Inf or -Inf."""
    leaves, treedef = jax.tree.flatten(tree)
    i = draw(st.integers(0, len(leaves) - 1))
    leaf = leaves[i]
    j = draw(st.integers(0, max(leaf.size - 1, 0)))
    bad = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
    leaves[i] = leaf.reshape(-1).at[j].set(bad).reshape(leaf.shape)
    return jax.tree.unflatten(treedef, leaves)


_FINITE_POOL = ["adam", "sgd_momentum", "rmsprop", "lamb", "amsgrad", "lion", "adagrad"]


@_settings(12)
@given(name=st.sampled_from(_FINITE_POOL), max_errors=st.integers(1, 3), data=st.data())
def test_apply_if_finite_rejected_steps_leave_params_and_state_unchanged(name, max_errors, data):
    _count("apply_if_finite")
    inner = data.draw(ALL[name], label="inner")
    params = data.draw(pytrees(), label="params")
    n_good = data.draw(st.integers(1, 3), label="n_good")
    good = [data.draw(like(params), label=f"g{i}") for i in range(n_good)]
    at = data.draw(st.integers(0, n_good), label="at")
    burst = data.draw(st.integers(1, max_errors), label="burst")
    bad = [data.draw(_poisoned(data.draw(like(params))), label=f"bad{i}") for i in range(burst)]
    poisoned_seq = good[:at] + bad + good[at:]

    tx = gradtx.apply_if_finite(inner, max_consecutive_errors=max_errors)
    _, clean_states, clean_p = _run(tx, params, good)
    updates, states, p = _run(tx, params, poisoned_seq)

    for i in range(at, at + burst):
        _assert_equal(updates[i], jax.tree.map(jnp.zeros_like, poisoned_seq[i]), f"{name}: rejected step {i}")
    _assert_equal(p, clean_p, f"{name}: params")
    _assert_equal(states[-1].inner_state, clean_states[-1].inner_state, f"{name}: inner state")
    final = states[-1]
    assert int(final.total_notfinite) == burst
    ends_bad = at == n_good
    assert int(final.notfinite_count) == (burst if ends_bad else 0)
    assert bool(final.last_finite) == (not ends_bad)
