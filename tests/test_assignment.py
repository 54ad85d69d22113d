"""gradtx.assignment: known answers (hand-checked, scipy's linear_sum_assignment) and optax's
outputs index for index (including the choice among tied optima and the order of the pairs)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy.optimize import linear_sum_assignment

from gradtx import assignment

NAMES = ("hungarian_algorithm", "base_hungarian_algorithm")
SHAPES = [(6, 6), (4, 7), (7, 4), (1, 5), (5, 1)]


@pytest.fixture(scope="module", params=NAMES)
def name(request):
    return request.param


@pytest.fixture(scope="module")
def solve(name):
    return jax.jit(getattr(assignment, name))


def test_public_names_match_optax():
    ours = {n for n in dir(assignment) if not n.startswith("_")} & set(dir(optax.assignment))
    theirs = {n for n in dir(optax.assignment) if not n.startswith("_")}
    assert theirs <= set(assignment.__all__) and ours == theirs


def test_hand_checked_3x3(solve):
    # the six permutations cost 6, 11, 5, 9, 7, 6: the optimum rows (0, 1, 2) -> columns (1, 0, 2)
    cost = jnp.array([[4.0, 1.0, 3.0], [2.0, 0.0, 5.0], [3.0, 2.0, 2.0]])
    totals = [sum(float(cost[r, c]) for r, c in enumerate(p)) for p in itertools.permutations(range(3))]
    assert sorted(totals) == [5, 6, 6, 7, 9, 11]
    i, j = solve(cost)
    assert sorted(zip(i.tolist(), j.tolist())) == [(0, 1), (1, 0), (2, 2)]
    assert float(cost[i, j].sum()) == 5.0


def test_optax_docstring_examples(name):
    fn = getattr(assignment, name)
    cost = jnp.array([[8, 4, 7], [5, 2, 3], [9, 6, 7], [9, 4, 8]])
    i, j = fn(cost)
    assert int(cost[i, j].sum()) == 15
    if name == "base_hungarian_algorithm":
        assert i.tolist() == [0, 1, 3] and j.tolist() == [0, 2, 1]
    cost = jnp.array(
        [[90, 80, 75, 70], [35, 85, 55, 65], [125, 95, 90, 95], [45, 110, 95, 115], [50, 100, 90, 100]]
    )
    i, j = fn(cost)
    assert int(cost[i, j].sum()) == 265
    if name == "base_hungarian_algorithm":
        assert i.tolist() == [0, 1, 2, 3] and j.tolist() == [3, 2, 1, 0]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_matches_scipy_on_random_costs(solve, shape):
    """Same optimal total as scipy and, the optimum being unique for continuous random costs,
    the same set of (row, column) pairs; a valid partial permutation of min(n, m) pairs."""
    rng = np.random.default_rng(sum(shape))
    for _ in range(4):
        cost = rng.normal(size=shape).astype(np.float32)
        i, j = (np.asarray(a) for a in solve(jnp.asarray(cost)))
        r, c = linear_sum_assignment(cost)
        k = min(shape)
        assert i.shape == j.shape == (k,) and np.issubdtype(i.dtype, np.integer)
        assert len(set(i.tolist())) == k and len(set(j.tolist())) == k
        assert ((0 <= i) & (i < shape[0])).all() and ((0 <= j) & (j < shape[1])).all()
        np.testing.assert_allclose(cost[i, j].sum(), cost[r, c].sum(), rtol=1e-6, atol=1e-6)
        assert sorted(zip(i.tolist(), j.tolist())) == sorted(zip(r.tolist(), c.tolist()))


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_same_indices_as_optax(name, solve, shape):
    """Index for index, order included, also on integer costs with many tied optima."""
    theirs = jax.jit(getattr(optax.assignment, name))
    key = jax.random.key(shape[0] * 10 + shape[1])
    for k in jax.random.split(key, 3):
        for cost in (jax.random.normal(k, shape), jax.random.randint(k, shape, 0, 3)):
            ours_ij, theirs_ij = solve(cost), theirs(cost)
            for a, b in zip(ours_ij, theirs_ij):
                assert a.dtype == b.dtype
                np.testing.assert_array_equal(a, b)


def test_ties_reach_the_optimum(solve):
    """Integer costs with many optimal assignments: the total is still scipy's optimum."""
    rng = np.random.default_rng(0)
    cost = rng.integers(0, 3, size=(6, 6)).astype(np.float32)
    i, j = solve(jnp.asarray(cost))
    r, c = linear_sum_assignment(cost)
    assert cost[np.asarray(i), np.asarray(j)].sum() == cost[r, c].sum()


@pytest.mark.parametrize("shape", [(0, 0), (0, 3), (3, 0)], ids=str)
def test_empty_matrix(name, shape):
    i, j = getattr(assignment, name)(jnp.zeros(shape))
    assert i.shape == j.shape == (0,)
    assert jnp.issubdtype(i.dtype, jnp.integer) and jnp.issubdtype(j.dtype, jnp.integer)


def test_rejects_a_vector(name):
    with pytest.raises(ValueError, match=f"{name}: cost_matrix must be a 2-D array"):
        getattr(assignment, name)(jnp.zeros(3))
