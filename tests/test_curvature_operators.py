"""Tests of gradtx.curvature.operators (HVP, Hessian operator, Gauss-Newton) and batch handling."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _curvature_problems import (
    flat,
    mlp_apply,
    mlp_data,
    mlp_dense_hessian,
    mlp_loss,
    mlp_params,
    mse,
    quadratic_loss,
    quadratic_params,
    quadratic_problem,
    split,
)
from jax.flatten_util import ravel_pytree

from gradtx.curvature import gauss_newton_operator, gnvp, hessian_operator, hvp
from gradtx.curvature.data import batch_size, collect_batches


def _random_like(params, seed):
    flat0, unravel = ravel_pytree(params)
    return unravel(jnp.asarray(np.random.default_rng(seed).standard_normal(flat0.shape), flat0.dtype))


class HvpTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_quadratic_hvp_is_a_times_v(self):
        a, _, _ = quadratic_problem()
        params = quadratic_params()
        v = _random_like(params, 3)
        out = self.variant(lambda p, v, a: hvp(quadratic_loss, p, v, a))(params, v, a)
        expected = np.asarray(a, np.float64) @ np.asarray(flat(v), np.float64)
        chex.assert_trees_all_close(out, split(jnp.asarray(expected, jnp.float32)), rtol=1e-4, atol=1e-4)

    @chex.variants(with_jit=True, without_jit=True)
    def test_operator_matches_dense_mlp_hessian(self):
        params = mlp_params()
        x, y = mlp_data()
        h = mlp_dense_hessian()

        def products(p, x, y, vs):
            op = hessian_operator(mlp_loss, p, x, y)
            return jax.vmap(op)(vs)

        flat0, unravel = ravel_pytree(params)
        vs_flat = np.random.default_rng(4).standard_normal((3, flat0.size)).astype(np.float32)
        vs = jax.vmap(unravel)(jnp.asarray(vs_flat))
        out = self.variant(products)(params, x, y, vs)
        out_flat = np.stack([np.asarray(ravel_pytree(jax.tree.map(lambda leaf, i=i: leaf[i], out))[0]) for i in range(3)])
        np.testing.assert_allclose(out_flat, vs_flat @ h.T, rtol=1e-4, atol=1e-5)
        single = hvp(mlp_loss, params, jax.tree.map(lambda leaf: leaf[0], vs), x, y)
        chex.assert_trees_all_close(single, jax.tree.map(lambda leaf: leaf[0], out), rtol=1e-5, atol=1e-6)

    def test_hvp_casts_tangent_dtype_and_checks_structure(self):
        params = {"w": jnp.ones(3, jnp.float32)}
        out = hvp(lambda p: jnp.sum(p["w"] ** 3), params, {"w": np.array([1.0, 0.0, 2.0])})
        chex.assert_trees_all_close(out, {"w": jnp.array([6.0, 0.0, 12.0])}, rtol=1e-6, atol=0)
        with pytest.raises(ValueError, match="tree structure"):
            hvp(lambda p: jnp.sum(p["w"] ** 2), params, {"u": jnp.ones(3)})
        with pytest.raises(ValueError, match="shape mismatch"):
            hvp(lambda p: jnp.sum(p["w"] ** 2), params, {"w": jnp.ones(4)})
        with pytest.raises(TypeError, match="callable"):
            hvp("not a function", params, params)

    def test_non_array_arguments_stay_static(self):
        # a Python flag argument must reach the loss as a Python value (the core is jitted)
        def loss(p, x, square):
            return jnp.sum(p * x) ** 2 if square else jnp.sum(p * x)

        p, x = jnp.ones(2), jnp.array([1.0, 2.0])
        chex.assert_trees_all_close(hvp(loss, p, jnp.array([1.0, 0.0]), x, True), jnp.array([2.0, 4.0]), rtol=1e-6, atol=0)
        chex.assert_trees_all_close(hvp(loss, p, jnp.array([1.0, 0.0]), x, False), jnp.zeros(2), rtol=0, atol=1e-7)


class GaussNewtonTest(chex.TestCase):
    def test_gnvp_matches_dense_jt_h_j(self):
        params = mlp_params()
        x, y = mlp_data()
        flat0, unravel = ravel_pytree(params)
        jac = np.asarray(jax.jit(jax.jacobian(lambda z: mlp_apply(unravel(z), x).ravel()))(flat0), np.float64)
        out0 = mlp_apply(params, x)
        h_out = np.asarray(jax.jit(jax.hessian(lambda o: mse(o.reshape(out0.shape), y)))(out0.ravel()), np.float64)
        g_dense = jac.T @ h_out @ jac
        v_flat = np.random.default_rng(5).standard_normal(flat0.size).astype(np.float32)
        got = gnvp(mlp_apply, mse, params, unravel(jnp.asarray(v_flat)), x, y)
        np.testing.assert_allclose(np.asarray(ravel_pytree(got)[0]), g_dense @ v_flat, rtol=1e-4, atol=1e-5)
        # GN is positive semi-definite for a convex output loss
        assert np.linalg.eigvalsh(g_dense).min() > -1e-6

    @chex.variants(with_jit=True, without_jit=True)
    def test_gauss_newton_equals_hessian_for_linear_model(self):
        # for a model linear in the params, J^T H_l J is the whole Hessian
        rng = np.random.default_rng(6)
        x = jnp.asarray(rng.standard_normal((12, 4)), jnp.float32)
        y = jnp.asarray(rng.standard_normal((12, 1)), jnp.float32)
        params = {"w": jnp.asarray(rng.standard_normal((4, 1)), jnp.float32), "b": jnp.zeros(1)}

        def model(p, x):
            return x @ p["w"] + p["b"][None, :]

        v = {"w": jnp.asarray(rng.standard_normal((4, 1)), jnp.float32), "b": jnp.ones(1)}

        def both(p, v, x, y):
            g = gauss_newton_operator(model, mse, p, x, y)(v)
            h = hvp(lambda p, x, y: mse(model(p, x), y), p, v, x, y)
            return g, h

        g, h = self.variant(both)(params, v, x, y)
        chex.assert_trees_all_close(g, h, rtol=1e-5, atol=1e-6)

    def test_gauss_newton_needs_targets(self):
        with pytest.raises(ValueError, match="targets"):
            gauss_newton_operator(mlp_apply, mse, mlp_params())
        with pytest.raises(ValueError, match="targets"):
            gnvp(mlp_apply, mse, mlp_params(), mlp_params())


class BatchesTest(chex.TestCase):
    def _uneven(self):
        x, y = mlp_data(points=10)
        return (x, y), [(x[:4], y[:4]), (x[4:8], y[4:8]), (x[8:], y[8:])]

    def test_batch_weights(self):
        (x, _), batches = self._uneven()
        assert [batch_size(b) for b in batches] == [4, 4, 2]
        assert batch_size((0.5, x[:3], None)) == 3  # scalars are skipped
        assert batch_size({"x": x[:7]}) == 7
        _, weights = collect_batches("t", batches)
        np.testing.assert_allclose(weights, [0.4, 0.4, 0.2])
        with pytest.raises(ValueError, match="empty"):
            collect_batches("t", [])
        with pytest.raises(TypeError, match="iterable"):
            collect_batches("t", x)
        with pytest.raises(ValueError, match="leading"):
            collect_batches("t", [(jnp.float32(1.0),)])

    def test_uneven_batches_equal_full_batch_products(self):
        (x, y), batches = self._uneven()
        params = mlp_params()
        v = _random_like(params, 7)

        def products(p, v, batches):
            return (
                hvp(mlp_loss, p, v, batches=batches),
                hessian_operator(mlp_loss, p, batches=iter(batches))(v),
                gnvp(mlp_apply, mse, p, v, batches=batches),
            )

        full = (
            hvp(mlp_loss, params, v, x, y),
            hessian_operator(mlp_loss, params, x, y)(v),
            gnvp(mlp_apply, mse, params, v, x, y),
        )
        got = jax.jit(products)(params, v, batches)
        chex.assert_trees_all_close(got, full, rtol=1e-4, atol=1e-6)
        # the equal-weight average (PyHessian's) differs: the check above can fail
        naive = jax.tree.map(lambda *t: sum(t) / 3, *[hvp(mlp_loss, params, v, *b) for b in batches])
        diff = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(naive), jax.tree.leaves(full[0])))
        assert diff > 1e-3

    def test_args_and_batches_are_exclusive(self):
        (x, y), batches = self._uneven()
        params = mlp_params()
        with pytest.raises(ValueError, match="not both"):
            hvp(mlp_loss, params, params, x, y, batches=batches)
        with pytest.raises(ValueError, match="not both"):
            hessian_operator(mlp_loss, params, x, batches=batches)
