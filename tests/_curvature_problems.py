"""Shared known-answer problems for the gradtx.curvature tests (not a test module)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

N1, ROWS, COLS = 100, 10, 20
N = N1 + ROWS * COLS
LARGE = np.array([50.0, 30.0, 20.0, 10.0])
NEGATIVE = np.array([-5.0, -3.0, -2.0, -1.5])


@functools.cache
def quadratic_problem(seed: int = 0, negative: bool = True):
    """A = Q diag(λ) Qᵀ with a bulk in [0.1, 1], four large outliers and (optionally) four negatives.

    Returns (A as float32 jax array, sorted eigenvalues (float64), eigenvectors as columns (float64)).
    """
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((N, N)))
    n_extra = len(LARGE) + (len(NEGATIVE) if negative else 0)
    bulk = rng.uniform(0.1, 1.0, N - n_extra)
    lam = np.concatenate([bulk, LARGE] + ([NEGATIVE] if negative else []))
    order = np.argsort(lam)
    lam, q = lam[order], q[:, order]
    a = (q * lam) @ q.T
    a = 0.5 * (a + a.T)
    return jnp.asarray(a, jnp.float32), lam, q


def split(x):
    """Flat vector -> the two-leaf params pytree used by the quadratic problem."""
    x = jnp.asarray(x)
    return {"a": x[..., :N1], "b": x[..., N1:].reshape((*x.shape[:-1], ROWS, COLS))}


def flat(tree):
    """Two-leaf pytree (optionally with a leading batch axis) -> flat vector(s)."""
    a, b = tree["a"], tree["b"]
    return jnp.concatenate([a, b.reshape((*b.shape[: b.ndim - 2], ROWS * COLS))], axis=-1)


def quadratic_loss(params, a):
    """0.5 xᵀ A x with x = flat(params)."""
    x = flat(params)
    return 0.5 * jnp.dot(x, jnp.dot(a, x))


def quadratic_params(seed: int = 1):
    rng = np.random.default_rng(seed)
    return split(jnp.asarray(rng.standard_normal(N), jnp.float32))


# ----- a tiny two-layer tanh network -----

IN, HIDDEN, OUT, POINTS = 3, 8, 2, 16


def mlp_params(seed: int = 0):
    rng = np.random.default_rng(seed)
    return {
        "w1": jnp.asarray(rng.standard_normal((IN, HIDDEN)) / np.sqrt(IN), jnp.float32),
        "b1": jnp.asarray(0.1 * rng.standard_normal(HIDDEN), jnp.float32),
        "w2": jnp.asarray(rng.standard_normal((HIDDEN, OUT)) / np.sqrt(HIDDEN), jnp.float32),
        "b2": jnp.zeros((OUT,), jnp.float32),
    }


def mlp_data(seed: int = 1, points: int = POINTS):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal((points, IN)), jnp.float32)
    y = jnp.asarray(rng.standard_normal((points, OUT)), jnp.float32)
    return x, y


def mlp_apply(params, x):
    h = jnp.tanh(x @ params["w1"] + params["b1"][None, :])
    return h @ params["w2"] + params["b2"][None, :]


def mse(outputs, y):
    return 0.5 * jnp.mean(jnp.sum((outputs - y) ** 2, axis=-1))  # mean over the batch


def mlp_loss(params, x, y):
    return mse(mlp_apply(params, x), y)


def dense_hessian(loss, params, *args):
    """The dense Hessian of `loss` in ravel_pytree coordinates, as float64 numpy (one jit compile)."""
    flat0, unravel = ravel_pytree(params)
    h = jax.jit(jax.hessian(lambda z, *a: loss(unravel(z), *a)))(flat0, *args)
    h = np.asarray(h, np.float64)
    return 0.5 * (h + h.T)


@functools.cache
def mlp_dense_hessian():
    """Dense Hessian of `mlp_loss` at `mlp_params()` on `mlp_data()` (cached per process)."""
    return dense_hessian(mlp_loss, mlp_params(), *mlp_data())
