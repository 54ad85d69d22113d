"""Tests of gradtx.curvature.blocks: per-block Hessian spectra against slices of a dense jax.hessian."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _curvature_problems import dense_hessian, mlp_data, mlp_loss, mlp_params

from gradtx.curvature import Batched, BlockSpectrum, block_spectra, leaf_paths


def _f64(tree):
    return jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), tree)


@functools.cache
def _mlp64():
    """The float64 MLP problem, its dense Hessian (one jitted jax.hessian) and each leaf's slice of
    the flat coordinates (computed once per module)."""
    with jax.enable_x64(True):
        params, (x, y) = _f64(mlp_params()), _f64(mlp_data())
        hess = dense_hessian(mlp_loss, params, x, y)
    offsets, slices = 0, {}
    for path, leaf in zip(leaf_paths(params), jax.tree.leaves(params)):
        slices[path] = np.arange(offsets, offsets + leaf.size)
        offsets += leaf.size
    return params, x, y, hess, slices


def _sub(hess, idx):
    return hess[np.ix_(idx, idx)]


def test_leaf_paths_names_nested_containers():
    tree = {"dense": {"kernel": jnp.zeros(2), "bias": jnp.zeros(1)}, "out": [jnp.zeros(1), jnp.zeros(1)]}
    assert leaf_paths(tree) == ["dense/bias", "dense/kernel", "out/0", "out/1"]


def test_per_leaf_spectra_match_dense_sub_hessians():
    with jax.enable_x64(True):
        params, x, y, hess, slices = _mlp64()
        report = block_spectra(mlp_loss, params, x, y, k=2, density=True)
        # a pytree like params with one BlockSpectrum per leaf
        assert jax.tree.structure(report, is_leaf=lambda r: isinstance(r, BlockSpectrum)) == jax.tree.structure(params)
        for path, leaf in zip(leaf_paths(params), jax.tree.leaves(params)):
            rep = report[path]
            ev = np.linalg.eigvalsh(_sub(hess, slices[path]))
            assert rep.size == leaf.size and rep.paths == (path,)
            # every leaf here has <= 24 parameters <= num_iters: Lanczos is exact
            np.testing.assert_allclose(np.asarray(rep.eigenvalues), ev[-2:], rtol=0, atol=1e-6)
            assert np.all(np.asarray(rep.residuals) < 1e-8)
            assert rep.trace_exact and float(rep.trace_stderr) == 0.0
            np.testing.assert_allclose(float(rep.trace), np.trace(_sub(hess, slices[path])), rtol=1e-10, atol=1e-12)
            # density: a normalized curve whose mass sits on the block's spectrum
            grid, dens = np.asarray(rep.density_grid), np.asarray(rep.density)
            np.testing.assert_allclose(np.trapezoid(dens, grid), 1.0, rtol=1e-6)
            assert grid[0] <= ev[0] and grid[-1] >= ev[-1]
        # a block's curvature is not the whole Hessian's: the blocks' top eigenvalues are at most λ_max(H)
        top = np.linalg.eigvalsh(hess)[-1]
        assert all(float(report[p].eigenvalues[-1]) <= top + 1e-9 for p in slices)


def test_groups_with_hutchinson_trace_and_batched_data():
    with jax.enable_x64(True):
        params, x, y, hess, slices = _mlp64()
        groups = {"layer1": ["w1", "b1"], "layer2": lambda p: p.endswith("2")}
        report = block_spectra(mlp_loss, params, k=1, blocks=groups, num_iters=20, trace_samples=12,
                               batches=Batched(x, y, batch_size=4), key=jax.random.PRNGKey(7))
        assert list(report) == ["layer1", "layer2"]
        members = {"layer1": ["b1", "w1"], "layer2": ["b2", "w2"]}
        for name, rep in report.items():
            assert rep.paths == tuple(members[name])
            idx = np.concatenate([slices[p] for p in members[name]])
            sub = _sub(hess, idx)
            ev = np.linalg.eigvalsh(sub)
            assert rep.size == idx.size
            # 20 Lanczos steps on a block of up to 32 parameters: λ_max converged to 1e-6
            np.testing.assert_allclose(float(rep.eigenvalues[-1]), ev[-1], rtol=0, atol=1e-6)
            assert abs(float(rep.eigenvalues[-1]) - ev[-1]) <= float(rep.residuals[-1]) + 1e-12
            # blocks above 12 parameters: Hutchinson with 12 probes, error within 4 standard errors
            assert rep.trace_exact == (idx.size <= 12)
            if rep.trace_exact:
                np.testing.assert_allclose(float(rep.trace), np.trace(sub), rtol=1e-10)
            else:
                assert float(rep.trace_stderr) > 0
                assert abs(float(rep.trace) - np.trace(sub)) <= 4 * float(rep.trace_stderr)


def test_streamed_batches_equal_one_big_batch():
    with jax.enable_x64(True):
        params, x, y, hess, slices = _mlp64()
        stream = [(x[:8], y[:8]), (x[8:], y[8:])]  # the mean of the two batches' Hessians
        report = block_spectra(mlp_loss, params, k=1, blocks={"out": ["w2", "b2"]}, num_iters=18, batches=stream)
        idx = np.concatenate([slices["b2"], slices["w2"]])
        sub = _sub(hess, idx)
        np.testing.assert_allclose(float(report["out"].eigenvalues[-1]), np.linalg.eigvalsh(sub)[-1], atol=1e-6)
        np.testing.assert_allclose(float(report["out"].trace), np.trace(sub), rtol=1e-8)


def test_bad_blocks_are_rejected_with_clear_messages():
    params, (x, y) = mlp_params(), mlp_data()
    with pytest.raises(ValueError, match=r"block_spectra: block 'x': path 'w3' matches no leaf"):
        block_spectra(mlp_loss, params, x, y, blocks={"x": ["w3"]})
    with pytest.raises(ValueError, match="block_spectra: block 'p': its predicate selects no leaf"):
        block_spectra(mlp_loss, params, x, y, blocks={"p": lambda path: False})
    with pytest.raises(TypeError, match="block_spectra: block 'n' must be a leaf path"):
        block_spectra(mlp_loss, params, x, y, blocks={"n": 3})
    with pytest.raises(TypeError, match="block_spectra: blocks must be None"):
        block_spectra(mlp_loss, params, x, y, blocks=["w1"])
    with pytest.raises(ValueError, match="block_spectra: blocks is an empty mapping"):
        block_spectra(mlp_loss, params, x, y, blocks={})
    with pytest.raises(ValueError, match="block_spectra: k must be"):
        block_spectra(mlp_loss, params, x, y, k=0)
    with pytest.raises(TypeError, match="block_spectra: every params leaf must be floating point"):
        block_spectra(lambda p: jnp.sum(p["i"]), {"i": jnp.arange(3)})
    with pytest.raises(ValueError, match="block_spectra: block 'e' has no parameters"):
        block_spectra(lambda p: jnp.sum(p["a"] ** 2), {"a": jnp.ones(2), "z": jnp.zeros((0,))}, blocks={"e": "z"})
