"""Tests of the protocol: chain, apply_updates, identity, set_to_zero, stateless, describe."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx
from gradtx.base import EmptyState


def _params():
    return {"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.array([1.0, -2.0])}


def _double():
    return gradtx.stateless_with_tree_map(lambda g, p: 2.0 * g)


def test_apply_updates_adds_and_keeps_dtype():
    params = {"a": jnp.ones(3, jnp.bfloat16), "b": jnp.ones(2, jnp.float32)}
    updates = {"a": jnp.full(3, 0.5, jnp.float32), "b": jnp.full(2, 0.25, jnp.float32)}
    new = gradtx.apply_updates(params, updates)
    assert new["a"].dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(new["a"], np.float32), 1.5)
    np.testing.assert_allclose(new["b"], 1.25)


def test_apply_updates_none_leaves_kept():
    params = {"a": jnp.ones(2), "b": None}
    new = gradtx.apply_updates(params, {"a": jnp.ones(2), "b": None})
    assert new["b"] is None
    np.testing.assert_allclose(new["a"], 2.0)


def test_apply_updates_mismatch_names_path():
    with pytest.raises(ValueError, match=r"\['w'\]"):
        gradtx.apply_updates({"w": jnp.ones(3)}, {"w": jnp.ones(4)})
    with pytest.raises(ValueError, match="tree structures"):
        gradtx.apply_updates({"w": jnp.ones(3)}, {"v": jnp.ones(3)})


def test_identity_and_set_to_zero():
    g = _params()
    out, state = gradtx.identity().update(g, gradtx.identity().init(g))
    chex.assert_trees_all_equal(out, g)
    assert state == EmptyState()
    zero = gradtx.set_to_zero()
    out, _ = zero.update(g, zero.init(g))
    chex.assert_trees_all_equal(out, jax.tree.map(jnp.zeros_like, g))


def test_stateless_gets_params():
    tx = gradtx.stateless(lambda u, p: jax.tree.map(lambda a, b: a + b, u, p))
    p = _params()
    out, _ = tx.update(p, tx.init(p), p)
    chex.assert_trees_all_close(out, jax.tree.map(lambda x: 2 * x, p))


def test_chain_composes_in_order_and_jits():
    tx = gradtx.chain(_double(), gradtx.stateless_with_tree_map(lambda g, p: g + 1.0))
    p = _params()
    state = tx.init(p)
    assert isinstance(state, tuple) and len(state) == 2
    out, _ = jax.jit(tx.update)(p, state)
    chex.assert_trees_all_close(out, jax.tree.map(lambda x: 2 * x + 1.0, p))


def test_chain_forwards_extra_args_only_to_members_that_accept_them():
    seen = {}

    def init(params):
        return EmptyState()

    def takes_value(updates, state, params=None, *, value=None):
        seen["value"] = value
        return updates, state

    def plain(updates, state, params=None):
        return updates, state

    tx = gradtx.chain(
        gradtx.GradientTransformation(init, plain), gradtx.GradientTransformation(init, takes_value)
    )
    p = _params()
    tx.update(p, tx.init(p), p, value=3.0, other=1)
    assert seen["value"] == 3.0


def test_named_chain_state_is_dict():
    tx = gradtx.named_chain(("double", _double()), ("id", gradtx.identity()))
    p = _params()
    state = tx.init(p)
    assert list(state) == ["double", "id"]
    out, _ = tx.update(p, state)
    chex.assert_trees_all_close(out, jax.tree.map(lambda x: 2 * x, p))
    with pytest.raises(ValueError, match="unique"):
        gradtx.named_chain(("a", _double()), ("a", _double()))


def test_chain_rejects_non_transformations():
    with pytest.raises(TypeError, match="argument 1"):
        gradtx.chain(gradtx.identity(), 3.0)


def test_repr_shows_arguments():
    tx = gradtx.chain(gradtx.identity(), gradtx.set_to_zero())
    assert repr(tx) == "chain(identity(), set_to_zero())"


def test_state_from_other_transformation_raises_type_error():
    p = _params()
    chained = gradtx.chain(gradtx.identity(), gradtx.identity())
    with pytest.raises(TypeError, match="EmptyState"):
        chained.update(p, gradtx.named_chain(("a", gradtx.identity())).init(p))


def test_hyperparams_reads_arguments():
    f = lambda g, p: g  # noqa: E731
    assert gradtx.hyperparams(gradtx.stateless(f)) == {"f": f}


@pytest.mark.parametrize("bounds", [{}, {"low": 0.0}, {"high": 1.0}, {"low": 0.0, "high": 1.0}])
@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_check_real_rejects_non_finite_with_or_without_bounds(value, bounds):
    from gradtx import _validation

    with pytest.raises(ValueError, match="x must be a finite number"):
        _validation.check_real("f", "x", value, **bounds)
    _validation.check_real("f", "x", 0.5, **bounds)  # a finite value inside the bounds passes


def _public_callables():
    import inspect

    modules = [gradtx, gradtx.curvature, gradtx.second_order, gradtx.numerics, gradtx.fusion]
    for module in modules:
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isfunction(obj) or (callable(obj) and hasattr(obj, "__wrapped__")):
                yield f"{module.__name__}.{name}", obj


def test_public_signatures_carry_real_annotations():
    # with postponed evaluation every annotation was a str, and tools (optax's own tests among
    # them) that read `inspect.signature(f).parameters[name].annotation` failed.
    import inspect

    checked = 0
    for qualname, fn in _public_callables():
        signature = inspect.signature(fn)
        annotations = [p.annotation for p in signature.parameters.values()] + [signature.return_annotation]
        strings = [a for a in annotations if isinstance(a, str)]
        assert not strings, f"{qualname} has string annotations {strings}"
        checked += 1
    assert checked > 80
    assert inspect.signature(gradtx.adam).parameters["b1"].annotation is float
    assert inspect.signature(gradtx.chain).return_annotation is gradtx.GradientTransformation


def test_apply_updates_refuses_float_updates_on_integer_params():
    # optax truncates toward zero: an int param moved by -0.001 per step never moves (silently).
    params = {"w": jnp.ones(2), "step": jnp.array(3, jnp.int32)}
    with pytest.raises(TypeError, match=r"params\['step'\] has integer dtype int32 but its update is float32"):
        gradtx.apply_updates(params, {"w": jnp.ones(2), "step": jnp.array(-0.001)})
    out = gradtx.apply_updates(params, {"w": jnp.ones(2), "step": jnp.array(2, jnp.int32)})
    assert out["step"].dtype == jnp.int32 and int(out["step"]) == 5
    np.testing.assert_array_equal(out["w"], [2.0, 2.0])


def test_none_updates_to_a_stateful_transformation_say_so():
    tx = gradtx.sgd(0.1, momentum=0.9)
    params = {"w": jnp.ones(3), "b": jnp.ones(2)}
    with pytest.raises(ValueError, match=r"sgd\.update received None updates .*trace\['b'\].*stateless"):
        tx.update({"w": jnp.ones(3), "b": None}, tx.init(params), params)


def test_repr_prints_dtype_arguments_by_name():
    # before: mu_dtype=<function bfloat16>
    assert "mu_dtype=bfloat16," in repr(gradtx.adam(1e-3, mu_dtype=jnp.bfloat16))
    assert "mu_dtype=float16," in repr(gradtx.adam(1e-3, mu_dtype=np.float16))
    assert "param_dtype=float32," in repr(gradtx.scale_by_distance_over_gradients())
