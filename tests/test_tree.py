"""gradtx.tree / gradtx.tree_utils against optax.tree / optax.tree_utils.

The arithmetic is compared bit for bit under `jax.jit` (one compiled function per library that
evaluates every helper on a 4-leaf float32 tree holding a -0.0, and on a complex tree); the
random helpers with the same key; the state helpers on gradtx and optax states alike.
"""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx
from gradtx import numerics
from gradtx.wrappers import protocol


def _public(module):
    return {n for n in dir(module) if not n.startswith("_") and n not in {"functools", "typing"}}


def _bits(x):
    x = np.asarray(x)
    return x.dtype.str, x.shape, x.tobytes()


def assert_same_bits(ours, theirs, what=""):
    o_leaves, o_def = jax.tree.flatten(ours)
    t_leaves, t_def = jax.tree.flatten(theirs)
    assert o_def == t_def, what
    for o, t in zip(o_leaves, t_leaves, strict=True):
        assert _bits(o) == _bits(t), f"{what}: {o} != {t}"


# ----------------------------------------------------------------------------------------------
# names
# ----------------------------------------------------------------------------------------------


def test_every_optax_tree_name_is_provided():
    assert set(gradtx.tree.__all__) == _public(optax.tree)
    assert set(gradtx.tree_utils.__all__) == _public(optax.tree_utils)
    for name in gradtx.tree.__all__:
        assert getattr(gradtx.tree_utils, f"tree_{name}") is getattr(gradtx.tree, name)
    assert gradtx.tree_utils.tree_map_params is gradtx.tree.map_params


def test_moments_and_map_params_are_reused_not_duplicated():
    for name in ("update_moment", "update_moment_per_elem_norm", "update_infinity_moment", "bias_correction"):
        assert getattr(gradtx.tree, name) is getattr(numerics, name)
    assert gradtx.tree.map_params is protocol.tree_map_params is gradtx.tree_map_params


def test_tree_functions_stay_out_of_the_top_level():
    assert {"tree", "tree_utils", "projections"} <= set(gradtx.__all__)
    for name in ("add", "sub", "vdot", "norm", "where", "random_like", "get", "set"):
        assert name not in gradtx.__all__


@pytest.mark.parametrize("name", sorted(set(dir(optax.tree)) & {n for n in dir(optax.tree) if not n.startswith("_")}))
def test_signatures_match_optax(name):
    ours = inspect.signature(getattr(gradtx.tree, name))
    theirs = inspect.signature(getattr(optax.tree, name))
    assert list(ours.parameters) == list(theirs.parameters)
    for o, t in zip(ours.parameters.values(), theirs.parameters.values(), strict=True):
        assert o.kind == t.kind and o.default == t.default, (name, o, t)


# ----------------------------------------------------------------------------------------------
# arithmetic, bit for bit under jit
# ----------------------------------------------------------------------------------------------

X = {
    "w": jnp.array([[0.3, -1.7, 2.5], [-0.0, 4.25, -3.1]], jnp.float32),
    "b": jnp.array([0.1, -0.2, 1e-8], jnp.float32),
    "s": jnp.array(-0.0, jnp.float32),
    "e": jnp.zeros((0,), jnp.float32),
}
Y = jax.tree.map(lambda x: jnp.cos(3 * x + 1) - 0.4, X)
Z = jax.tree.map(lambda x: jnp.sin(x) * 2.0, X)
C = {
    "a": jnp.array([1 + 2j, -0.5 + 0.25j, 3 - 1j], jnp.complex64),
    "b": jnp.array([[0.1 - 0.7j, 2 + 0j]], jnp.complex64),
}
D = jax.tree.map(lambda c: c * (0.3 - 1.1j) + 0.2, C)


def _all_real(m, x, y, z):
    t = m.tree
    out = {
        "add": t.add(x, y),
        "add3": t.add(x, y, z),
        "sub": t.sub(x, y),
        "mul": t.mul(x, y),
        "div": t.div(x, jax.tree.map(lambda v: v + 2.0, y)),
        "scale": t.scale(0.7, x),
        "add_scale": t.add_scale(x, -1.3, y),
        "vdot": t.vdot(x, y),
        "sum": t.sum(x),
        "sum_assoc": t.sum(x, associative_reduction=True),
        "max": t.max(x),
        "min": t.min(x),
        "clip": t.clip(x, -1.0, 2.0),
        "clip_lo": t.clip(x, min_value=0.0),
        "conj": t.conj(x),
        "real": t.real(x),
        "where": t.where(t.sum(x) > 0, x, y),
        "zeros": t.zeros_like(x),
        "ones": t.ones_like(x, dtype=jnp.bfloat16),
        "full": t.full_like(x, 2.5),
        "cast": t.cast(x, jnp.bfloat16),
        "cast_like": t.cast_like(x, t.cast(y, jnp.float16)),
        "batch": t.batch_shape(x, (2,)),
        "allclose": t.allclose(x, t.add_scale(x, 1e-7, y)),
        "moment": t.update_moment(x, y, 0.9, 2),
        "moment_norm": t.update_moment_per_elem_norm(x, y, 0.99, 3),
        "inf_moment": t.update_infinity_moment(x, y, 0.9, 1e-8),
        "bias": t.bias_correction(y, 0.999, jnp.int32(3)),
    }
    for ord_ in (None, 1, 2, jnp.inf, "inf", "infinity"):
        for squared in (False, True):
            out[f"norm_{ord_}_{squared}"] = t.norm(x, ord=ord_, squared=squared)
    return out


def _all_complex(m, c, d):
    t = m.tree
    out = {"vdot": t.vdot(c, d), "sum": t.sum(c), "conj": t.conj(c), "real": t.real(c),
           "add_scale": t.add_scale(c, 0.5 - 2j, d), "moment_norm": t.update_moment_per_elem_norm(c, t.real(d), 0.9, 2)}
    for ord_ in (None, 1, jnp.inf):
        for squared in (False, True):
            out[f"norm_{ord_}_{squared}"] = t.norm(c, ord=ord_, squared=squared)
    return out


def test_real_arithmetic_is_bit_identical_under_jit():
    ours = jax.jit(lambda x, y, z: _all_real(gradtx, x, y, z))(X, Y, Z)
    theirs = jax.jit(lambda x, y, z: _all_real(optax, x, y, z))(X, Y, Z)
    for key in theirs:
        assert_same_bits(ours[key], theirs[key], key)


def test_complex_arithmetic_is_bit_identical_under_jit():
    ours = jax.jit(lambda c, d: _all_complex(gradtx, c, d))(C, D)
    theirs = jax.jit(lambda c, d: _all_complex(optax, c, d))(C, D)
    for key in theirs:
        assert_same_bits(ours[key], theirs[key], key)


def test_eager_results_match_optax_too():
    for name, args in [("add", (X, Y)), ("vdot", (X, Y)), ("norm", (X,)), ("max", (X,)), ("size", (X,))]:
        assert_same_bits(getattr(gradtx.tree, name)(*args), getattr(optax.tree, name)(*args), name)


def test_known_answers():
    t = gradtx.tree
    a, b = {"u": jnp.array([1.0, -2.0]), "v": jnp.array(3.0)}, {"u": jnp.array([4.0, 0.5]), "v": jnp.array(-1.0)}
    assert float(t.vdot(a, b)) == 4.0 - 1.0 - 3.0
    assert float(t.norm(a)) == pytest.approx(np.sqrt(14.0))
    assert float(t.norm(a, ord=1)) == 6.0 and float(t.norm(a, ord="inf")) == 3.0
    assert float(t.norm(a, ord=1, squared=True)) == 36.0
    assert float(t.sum(a)) == 2.0 and float(t.max(a)) == 3.0 and float(t.min(a)) == -2.0
    assert t.size(X) == 10 and isinstance(t.size(X), int)
    minus_zero = {"z": jnp.array(-0.0)}
    assert not np.signbit(t.add(minus_zero, minus_zero)["z"])  # summed from +0, like optax
    assert not np.signbit(optax.tree.add(minus_zero, minus_zero)["z"])
    assert float(t.vdot({"c": jnp.array([1j])}, {"c": jnp.array([1j])}).real) == 1.0  # first argument conjugated
    assert float(t.max({"e": jnp.zeros(0)})) == -np.inf and float(t.min({})) == np.inf
    assert t.add_scale({"a": None, "b": jnp.ones(1)}, 2.0, {"a": None, "b": jnp.ones(1)})["a"] is None
    assert t.batch_shape({"x": jnp.ones((2, 3))}, (4, 5))["x"].shape == (4, 5, 2, 3)
    assert bool(t.allclose(a, a)) and not bool(t.allclose(a, b))


def test_norm_rejects_an_unknown_order():
    with pytest.raises(ValueError, match=r"ord.*3"):
        gradtx.tree.norm(X, ord=3)


# ----------------------------------------------------------------------------------------------
# dtypes and random trees
# ----------------------------------------------------------------------------------------------


def test_dtype_handlers_match_optax():
    mixed = {"a": jnp.ones(2, jnp.float16), "b": jnp.ones(1, jnp.float32), "c": jnp.ones(1, jnp.bfloat16)}
    two = {"a": jnp.ones(2, jnp.float16), "b": jnp.ones(1, jnp.float32)}
    for tree, handler in [(X, None), (two, "highest"), (two, "lowest"), (mixed, "promote"), ({}, None)]:
        assert gradtx.tree.dtype(tree, handler) == optax.tree.dtype(tree, handler)
    with pytest.raises(ValueError, match="mixed"):
        gradtx.tree.dtype(two)
    with pytest.raises(ValueError, match="cannot order"):
        gradtx.tree.dtype({"h": jnp.ones(1, jnp.bfloat16), "f": jnp.ones(1, jnp.float16)}, "highest")
    with pytest.raises(ValueError, match="mixed_dtype_handler"):
        gradtx.tree.dtype(X, "largest")


def test_random_like_and_split_key_like_give_optax_numbers():
    key = jax.random.key(7)
    target = {"w": jnp.zeros((3, 2)), "b": jnp.zeros(4, jnp.bfloat16)}
    keys_ours, keys_theirs = gradtx.tree.split_key_like(key, target), optax.tree.split_key_like(key, target)
    assert_same_bits(jax.tree.map(jax.random.key_data, keys_ours), jax.tree.map(jax.random.key_data, keys_theirs))
    for kwargs in [{}, {"sampler": jax.random.uniform}, {"dtype": jnp.float16}, {"sampler": jax.random.bernoulli}]:
        if "sampler" in kwargs and kwargs["sampler"] is jax.random.bernoulli:
            kwargs = {"sampler": lambda k, shape, dtype: jax.random.bernoulli(k, 0.5, shape)}
        assert_same_bits(gradtx.tree.random_like(key, target, **kwargs), optax.tree.random_like(key, target, **kwargs))
    jitted = jax.jit(lambda k: gradtx.tree.random_like(k, target))(key)
    assert_same_bits(jitted, jax.jit(lambda k: optax.tree.random_like(k, target))(key))


def test_unwrap_random_key_data():
    tree = {"k": jax.random.key(1), "x": jnp.ones(2)}
    assert_same_bits(gradtx.tree.unwrap_random_key_data(tree), optax.tree.unwrap_random_key_data(tree))


# ----------------------------------------------------------------------------------------------
# state access, on gradtx and optax states alike
# ----------------------------------------------------------------------------------------------

PARAMS = jnp.array([1.0, 2.0, 3.0])
BUILDERS = {
    "adam": lambda m: m.adam(1.0),
    "injected": lambda m: m.inject_hyperparams(m.sgd)(learning_rate=lambda count: 1 / (count + 1)),
    "noise_adam": lambda m: m.chain(m.add_noise(1.0, 0.9, key=0), m.scale_by_adam()),
}


def _readable(found):
    return [(jax.tree_util.keystr(path), type(value).__name__) for path, value in found]


@pytest.mark.parametrize("library", [gradtx, optax], ids=["gradtx_state", "optax_state"])
@pytest.mark.parametrize("build", sorted(BUILDERS))
def test_get_all_with_path_and_get_find_what_optax_finds(library, build):
    state = BUILDERS[build](library).init(PARAMS)
    for key in ("count", "mu", "learning_rate", "ScaleByAdamState", "AddNoiseState", "hyperparams", "absent"):
        ours = gradtx.tree.get_all_with_path(state, key)
        theirs = optax.tree.get_all_with_path(state, key)
        assert _readable(ours) == _readable(theirs), key
        assert all(o[1] is t[1] for o, t in zip(ours, theirs, strict=True))
        if len(theirs) <= 1:
            assert gradtx.tree.get(state, key, default="none") is optax.tree.get(state, key, default="none")
        else:
            with pytest.raises(KeyError, match="found"):
                gradtx.tree.get(state, key)
    arrays_only = lambda path, value: isinstance(value, jax.Array)  # noqa: E731
    assert _readable(gradtx.tree.get_all_with_path(state, "learning_rate", arrays_only)) == _readable(
        optax.tree.get_all_with_path(state, "learning_rate", arrays_only)
    )


def test_the_same_state_reads_the_same_from_gradtx_and_optax():
    for build in BUILDERS.values():
        ours, theirs = build(gradtx).init(PARAMS), build(optax).init(PARAMS)
        for key in ("count", "mu", "learning_rate"):
            assert _readable(gradtx.tree.get_all_with_path(ours, key)) == _readable(
                optax.tree.get_all_with_path(theirs, key)
            )


def test_named_tuple_key_filters_by_state_name():
    state = gradtx.chain(gradtx.add_noise(1.0, 0.9, key=0), gradtx.scale_by_adam()).init(PARAMS)
    with pytest.raises(KeyError):
        gradtx.tree.get(state, "count")
    in_adam = lambda path, _: isinstance(path[-1], gradtx.tree_utils.NamedTupleKey) and (  # noqa: E731
        path[-1].tuple_name == "ScaleByAdamState"
    )
    assert gradtx.tree.get(state, "count", filtering=in_adam) is state[1].count
    entry = gradtx.tree.get_all_with_path(state, "mu")[0][0][-1]
    assert entry == gradtx.tree_utils.NamedTupleKey("ScaleByAdamState", "mu") and str(entry) == "ScaleByAdamState.mu"


@pytest.mark.parametrize("library", [gradtx, optax], ids=["gradtx_state", "optax_state"])
def test_set_replaces_like_optax(library):
    state = BUILDERS["injected"](library).init(PARAMS)
    arrays_only = lambda path, value: isinstance(value, jax.Array)  # noqa: E731
    for filtering, kwargs in [
        (None, {"count": jnp.asarray(4)}),
        (arrays_only, {"learning_rate": jnp.asarray(0.1)}),
        (None, {"WrappedScheduleState": "replaced"}),
    ]:
        ours, theirs = gradtx.tree.set(state, filtering, **kwargs), optax.tree.set(state, filtering, **kwargs)
        assert jax.tree.structure(ours) == jax.tree.structure(theirs)
        assert_same_bits(ours, theirs, str(kwargs))
        assert type(ours) is type(state)
    adam_state = BUILDERS["adam"](library).init(PARAMS)
    assert int(gradtx.tree.set(adam_state, count=jnp.asarray(2))[0].count) == 2
    with pytest.raises(KeyError, match="no values matching 'nope'"):
        gradtx.tree.set(adam_state, nope=1)
    with pytest.raises(KeyError, match="filtering"):
        gradtx.tree.set(adam_state, lambda p, v: False, count=1)


@pytest.mark.parametrize("library", [gradtx, optax], ids=["gradtx_state", "optax_state"])
def test_map_params_on_both_states(library):
    tx = library.adam(1e-3)
    state = tx.init({"w": jnp.ones(2)})
    ours = gradtx.tree.map_params(tx, lambda x: x + 1, state, transform_non_params=lambda _: -1)
    theirs = optax.tree.map_params(tx, lambda x: x + 1, state, transform_non_params=lambda _: -1)
    assert_same_bits(ours, theirs)
