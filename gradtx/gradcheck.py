"""Check derivatives against central finite differences computed in float64.

[`gradcheck`][gradtx.gradcheck.gradcheck] compares `jax.grad(f)` with the central difference

$$ \\partial_u f(x) \\approx \\frac{f(x + \\varepsilon u) - f(x - \\varepsilon u)}{2\\varepsilon} $$

along random unit directions `u` (one set per parameter leaf, so a failure is attributed to a
leaf) and, for small inputs, along every coordinate axis. [`gradgradcheck`][gradtx.gradcheck.gradgradcheck]
does the same one order higher: it compares the forward-over-reverse Hessian-vector product
`jvp(grad f)(x; u)` with `(∇f(x + εu) − ∇f(x − εu)) / 2ε`.

Both run the whole comparison in float64 under a local `jax.enable_x64(True)` context (the global
setting is left alone), casting the parameters and the floating-point leaves of the extra
arguments to float64, so that the finite differences are accurate to about `1e-9`. They are
meant to test hand-written derivative rules (`jax.custom_vjp`, `jax.custom_jvp`) and numerical
code, in the spirit of `torch.autograd.gradcheck`.
"""

import dataclasses
import numbers
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradtx import _validation as v

__all__ = ["GradcheckReport", "gradcheck", "gradgradcheck"]

_AUTO_COORDINATE_LIMIT = 256
"""With `per_coordinate="auto"`, every coordinate is checked when the input has at most this many."""

_MAX_BATCH_ELEMENTS = 2**22
"""Largest `batch × num_params` processed at once by the vectorized finite differences."""


@dataclasses.dataclass(frozen=True)
class GradcheckReport:
    """The outcome of [`gradcheck`][gradtx.gradcheck.gradcheck] or [`gradgradcheck`][gradtx.gradcheck.gradgradcheck].

    A check `(analytic a, numerical n)` passes when `|a − n| <= atol + rtol·|n|`; the report passes
    when every check does (a NaN or infinite value fails).

    Attributes:
        passed: whether every check passed.
        kind: `"grad"` (first derivatives) or `"hvp"` (Hessian-vector products).
        max_abs_error: largest `|a − n|` over all checks.
        max_rel_error: largest `|a − n| / max(|a|, |n|)` over all checks (0 where both are 0).
        worst_path: `jax.tree_util.keystr` path of the parameter leaf of the worst check (the
            one with the largest `|a − n| / (atol + rtol·|n|)`); for `"hvp"` reports, the leaf of
            the Hessian-vector product's component that is most wrong.
        worst_index: the index inside that leaf, or `None` when the worst check was a random
            direction within the leaf (gradient checks only).
        worst_analytic: `a` at the worst check.
        worst_numerical: `n` at the worst check.
        num_checks: how many directions (random and coordinate) were compared.
        eps, rtol, atol: the settings used.
    """

    passed: bool
    kind: str
    max_abs_error: float
    max_rel_error: float
    worst_path: str
    worst_index: tuple[int, ...] | None
    worst_analytic: float
    worst_numerical: float
    num_checks: int
    eps: float
    rtol: float
    atol: float

    def __repr__(self) -> str:
        where = "params" + self.worst_path
        if self.worst_index is not None:
            where += str(list(self.worst_index))
        if self.worst_index is None and self.kind == "grad":
            where += " (random direction in this leaf)"
        status = "PASSED" if self.passed else "FAILED"
        return (
            f"GradcheckReport({self.kind}: {status}, {self.num_checks} checks, eps={self.eps:g}, "
            f"rtol={self.rtol:g}, atol={self.atol:g}\n"
            f"  max_abs_error={self.max_abs_error:.3e}, max_rel_error={self.max_rel_error:.3e}\n"
            f"  worst at {where}: analytic={self.worst_analytic:.10g}, "
            f"numerical={self.worst_numerical:.10g})"
        )


# --------------------------------------------------------------------------------------------
# shared set-up
# --------------------------------------------------------------------------------------------


def _validate(
    owner: str,
    f: Any,
    eps: Any,
    num_directions: Any,
    per_coordinate: Any,
    rtol: Any,
    atol: Any,
) -> None:
    if not callable(f):
        raise TypeError(f"{owner}: f must be a callable f(params, *args) -> scalar, got {type(f).__name__}")
    v.check_real(owner, "eps", eps, low=0.0, low_inclusive=False)
    v.check_int(owner, "num_directions", num_directions, low=0)
    if not (per_coordinate == "auto" or isinstance(per_coordinate, (bool, np.bool_))):
        raise TypeError(f"{owner}: per_coordinate must be 'auto', True or False, got {per_coordinate!r}")
    v.check_real(owner, "rtol", rtol, low=0.0)
    v.check_real(owner, "atol", atol, low=0.0)


def _rng(owner: str, key: Any) -> np.random.Generator:
    """A NumPy generator seeded from `key` (directions are drawn on the host: no RNG to compile)."""
    if key is None:
        return np.random.default_rng(0)
    if isinstance(key, numbers.Integral) and not isinstance(key, bool):
        return np.random.default_rng(int(key))
    if isinstance(key, jax.Array):
        if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
            return np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())
        if key.dtype == jnp.uint32 and key.ndim == 1:
            return np.random.default_rng(np.asarray(key).tolist())
    raise TypeError(f"{owner}: key must be None, an int seed or a jax.random key, got {key!r}")


def _is_array(x: Any) -> bool:
    return isinstance(x, (jax.Array, np.ndarray, np.generic))


def _to_float64(x: Any) -> Any:
    """Floating arrays to float64 (traceable); other values unchanged."""
    if jnp.issubdtype(jnp.result_type(x), jnp.floating):
        return jnp.asarray(x, jnp.float64)
    return x


@dataclasses.dataclass
class _Problem:
    """Where each parameter leaf sits in one flat float64 vector, and `f` as a function of it.

    Only NumPy metadata is held here: the flattening itself happens inside the compiled check,
    so no eager JAX operation (each one a small compilation) runs outside it.
    """

    f: Callable[..., Any]
    treedef: Any
    paths: list[str]
    shapes: list[tuple[int, ...]]
    offsets: np.ndarray  # start of each leaf in the flat vector
    segments: np.ndarray  # leaf number of each flat coordinate (int32)
    nonempty: list[int]  # leaves with at least one element
    args_treedef: Any
    args_is_array: list[bool]
    args_static: list[Any]  # the non-array leaves of args

    @property
    def size(self) -> int:
        return int(self.segments.shape[0])

    def ravel(self, params: Any) -> jax.Array:
        leaves = jax.tree_util.tree_leaves(params)
        return jnp.concatenate([jnp.ravel(jnp.asarray(x, jnp.float64)) for x in leaves])

    def unravel(self, x: jax.Array) -> Any:
        leaves = [
            x[int(o) : int(o) + int(np.prod(shape, dtype=np.int64))].reshape(shape)
            for o, shape in zip(self.offsets, self.shapes)
        ]
        return jax.tree_util.tree_unflatten(self.treedef, leaves)

    def function(self, arrays: list[Any]) -> Callable[[jax.Array], jax.Array]:
        """`x ↦ f(unravel(x), *args)` with the array leaves of args given (cast to float64)."""
        it_arr, it_static = iter(arrays), iter(self.args_static)
        leaves = [_to_float64(next(it_arr)) if m else next(it_static) for m in self.args_is_array]
        args = jax.tree_util.tree_unflatten(self.args_treedef, leaves)
        return lambda x: self.f(self.unravel(x), *args)

    def locate(self, flat_index: int) -> tuple[int, tuple[int, ...]]:
        leaf = int(np.searchsorted(self.offsets, flat_index, side="right") - 1)
        local = flat_index - int(self.offsets[leaf])
        index = tuple(int(i) for i in np.unravel_index(local, self.shapes[leaf])) if self.shapes[leaf] else ()
        return leaf, index


def _problem(owner: str, f: Callable, params: Any, args: tuple) -> tuple[_Problem, list[Any]]:
    """The problem's layout and the array leaves of `args`; call inside `jax.enable_x64(True)`."""
    leaves_with_paths, treedef = jax.tree_util.tree_flatten_with_path(params)
    if not leaves_with_paths:
        raise ValueError(f"{owner}: params has no array leaves to check")
    paths, shapes = [], []
    for path, leaf in leaves_with_paths:
        name = jax.tree_util.keystr(path)
        dtype = jnp.result_type(leaf)
        if not jnp.issubdtype(dtype, jnp.floating):
            raise TypeError(
                f"{owner}: params{name} has dtype {dtype}; only real floating-point params can be "
                f"checked (close over integer or complex values in f instead)"
            )
        paths.append(name)
        shapes.append(tuple(np.shape(leaf)))
    sizes = [int(np.prod(s, dtype=np.int64)) for s in shapes]
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    segments = np.repeat(np.arange(len(sizes), dtype=np.int32), sizes)
    nonempty = [i for i, s in enumerate(sizes) if s > 0]
    if not nonempty:
        raise ValueError(f"{owner}: every params leaf is empty; nothing to check")
    arg_leaves, args_treedef = jax.tree_util.tree_flatten(args)
    is_array = [_is_array(x) for x in arg_leaves]
    arrays = [x for x, m in zip(arg_leaves, is_array) if m]
    static = [x for x, m in zip(arg_leaves, is_array) if not m]
    problem = _Problem(f, treedef, paths, shapes, offsets, segments, nonempty, args_treedef, is_array, static)

    out = jax.eval_shape(lambda p, arr: problem.function(arr)(problem.ravel(p)), params, arrays)
    if not (isinstance(out, jax.ShapeDtypeStruct) and out.shape == () and jnp.issubdtype(out.dtype, jnp.floating)):
        raise TypeError(
            f"{owner}: f(params, *args) must return a real scalar, got {out!r}; reduce it (e.g. "
            f"with jnp.sum) before checking"
        )
    if out.dtype != jnp.float64:
        raise TypeError(
            f"{owner}: f returned {out.dtype} for float64 inputs; the check needs f to keep the "
            f"inputs' precision (avoid hard-coded float32 casts)"
        )
    return problem, arrays


def _check_plan(
    owner: str, problem: _Problem, num_directions: int, per_coordinate: Any, rng: np.random.Generator
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Gaussian noise `(max(num_directions, 1), n)` and one record `(row, leaf, coord)` per check.

    A random check `(row, leaf, -1)` uses direction `noise[row]` restricted to `leaf`; a coordinate
    check `(0, leaf, i)` uses the axis `e_i`.
    """
    n = problem.size
    if per_coordinate == "auto":
        per_coordinate = n <= _AUTO_COORDINATE_LIMIT
    leaf_ids = np.repeat(np.asarray(problem.nonempty, np.int32), num_directions)
    rows = np.tile(np.arange(num_directions, dtype=np.int32), len(problem.nonempty))
    coords = np.full(leaf_ids.shape, -1, np.int32)
    if per_coordinate:
        leaf_ids = np.concatenate([leaf_ids, problem.segments])
        rows = np.concatenate([rows, np.zeros(n, np.int32)])
        coords = np.concatenate([coords, np.arange(n, dtype=np.int32)])
    if leaf_ids.size == 0:
        raise ValueError(
            f"{owner}: nothing to check: num_directions=0 and per_coordinate is off; ask for at "
            f"least one random direction or per_coordinate=True"
        )
    noise = rng.standard_normal((max(num_directions, 1), n))
    return noise, (rows, leaf_ids, coords)


def _direction(
    segments: jax.Array, noise: jax.Array, row: jax.Array, leaf: jax.Array, coord: jax.Array
) -> jax.Array:
    n = segments.shape[0]
    z = noise[row] * (segments == leaf)
    z = z / jnp.maximum(jnp.linalg.norm(z), 1e-300)
    return jnp.where(coord >= 0, jax.nn.one_hot(coord, n, dtype=jnp.float64), z)


def _map_checks(fn: Callable, records: Any, n: int) -> Any:
    """`fn` over every check record: one `vmap` when small enough, else batched `lax.map`."""
    count = int(records[1].shape[0])
    batch = max(1, min(count, _MAX_BATCH_ELEMENTS // max(n, 1)))
    if batch >= count:
        return jax.vmap(fn)(records)
    return jax.lax.map(fn, records, batch_size=batch)


def _central(fn: Callable, x0: jax.Array, h: float | jax.Array, u: jax.Array) -> jax.Array:
    """`(fn(x0 + h u) − fn(x0 − h u)) / 2h`, evaluating `fn` once on the stacked pair."""
    values = jax.vmap(fn)(jnp.stack([x0 + h * u, x0 - h * u]))
    return (values[0] - values[1]) / (2 * h)


def _ratios(analytic: np.ndarray, numerical: np.ndarray, rtol: float, atol: float):
    err = np.abs(analytic - numerical)
    scale = np.maximum(np.abs(analytic), np.abs(numerical))
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(err == 0, 0.0, err / scale)
        ratio = np.where(err == 0, 0.0, err / (atol + rtol * np.abs(numerical)))
    bad = ~(np.isfinite(analytic) & np.isfinite(numerical))
    err = np.where(bad, np.inf, err)
    rel = np.where(bad, np.inf, rel)
    ratio = np.where(bad | np.isnan(ratio), np.inf, ratio)
    return err, rel, ratio


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------


def gradcheck(
    f: Callable[..., Any],
    params: Any,
    *args: Any,
    eps: float = 1e-6,
    num_directions: int = 3,
    per_coordinate: bool | str = "auto",
    rtol: float = 1e-4,
    atol: float = 1e-6,
    key: Any = None,
) -> GradcheckReport:
    """Compare `jax.grad(f)` with central finite differences in float64.

    For each check direction `u` (unit norm) the analytic directional derivative
    `a = ⟨∇f(x), u⟩` is compared with `n = (f(x + εu) − f(x − εu)) / 2ε`; the check passes when
    `|a − n| <= atol + rtol·|n|`. Directions are `num_directions` random Gaussian directions
    restricted to each parameter leaf in turn (so a wrong derivative is attributed to its leaf),
    plus every coordinate axis `e_i` when `per_coordinate` asks for it.

    Everything runs under `jax.enable_x64(True)`: the params and the floating-point leaves of
    `args` are cast to float64 (the central difference's error is then about
    `ε²·|f'''| + 1e-16·|f|/ε`, below `1e-9` for well-scaled functions with the default ε).

    Args:
        f: `f(params, *args) -> scalar`, differentiable in `params` with JAX.
        params: a pytree of real floating-point arrays, the point of the check.
        *args: extra arguments passed to `f` unchanged (floats cast to float64).
        eps: finite-difference step, `> 0` (default `1e-6`).
        num_directions: random directions per parameter leaf, `>= 0` (default 3).
        per_coordinate: `True` to also check every coordinate, `False` never, `"auto"` (default)
            when the parameters have at most 256 elements in all.
        rtol: relative tolerance, `>= 0` (default `1e-4`).
        atol: absolute tolerance, `>= 0` (default `1e-6`).
        key: `None` (seed 0), an int seed or a `jax.random` key for the random directions.

    Returns:
        A [`GradcheckReport`][gradtx.gradcheck.GradcheckReport]; `report.passed` says whether
        every check passed, `report.worst_path` names the leaf where the agreement is worst.

    References:
        The method of `torch.autograd.gradcheck`; Nocedal & Wright, *Numerical Optimization*,
        2nd ed., §8.1 (finite-difference derivative approximations).

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.gradcheck import gradcheck
        >>> gradcheck(lambda p: jnp.sum(jnp.sin(p["w"])), {"w": jnp.ones(3)}).passed
        True
    """
    owner = "gradcheck"
    _validate(owner, f, eps, num_directions, per_coordinate, rtol, atol)
    rng = _rng(owner, key)
    with jax.enable_x64(True):
        problem, arrays = _problem(owner, f, params, args)
        noise, records = _check_plan(owner, problem, num_directions, per_coordinate, rng)
        _, leaf_ids, coords = records
        h = float(eps)

        @jax.jit
        def run(params, arrays, segments, noise, records):
            x0, fun = problem.ravel(params), problem.function(arrays)
            grad = jax.grad(fun)(x0)

            def one(record):
                u = _direction(segments, noise, *record)
                return jnp.vdot(grad, u), _central(fun, x0, h, u)

            return _map_checks(one, records, problem.size)

        analytic, numerical = run(params, arrays, problem.segments, noise, records)
        analytic, numerical = np.asarray(analytic), np.asarray(numerical)
        err, rel, ratio = _ratios(analytic, numerical, float(rtol), float(atol))
        worst = int(np.argmax(ratio))
        coord = int(coords[worst])
        if coord >= 0:
            leaf, index = problem.locate(coord)
        else:
            leaf, index = int(leaf_ids[worst]), None
        return GradcheckReport(
            passed=bool(np.all(ratio <= 1.0)),
            kind="grad",
            max_abs_error=float(np.max(err)),
            max_rel_error=float(np.max(rel)),
            worst_path=problem.paths[leaf],
            worst_index=index,
            worst_analytic=float(analytic[worst]),
            worst_numerical=float(numerical[worst]),
            num_checks=int(err.size),
            eps=float(eps),
            rtol=float(rtol),
            atol=float(atol),
        )


def gradgradcheck(
    f: Callable[..., Any],
    params: Any,
    *args: Any,
    eps: float = 1e-6,
    num_directions: int = 3,
    per_coordinate: bool | str = "auto",
    rtol: float = 1e-4,
    atol: float = 1e-6,
    key: Any = None,
) -> GradcheckReport:
    """Compare Hessian-vector products of `f` with finite differences of its gradient, in float64.

    For each unit direction `u` the forward-over-reverse product `a = jvp(∇f)(x; u) = H(x)u` is
    compared, component by component, with `n = (∇f(x + εu) − ∇f(x − εu)) / 2ε`, where `∇f` is
    `jax.grad(f)` (so hand-written `custom_vjp` / `custom_jvp` rules are used on both sides and
    their own derivatives are what is tested). A component passes when
    `|a_i − n_i| <= atol + rtol·|n_i|`. Directions are chosen as in
    [`gradcheck`][gradtx.gradcheck.gradcheck] (random per leaf, and every coordinate for small
    inputs, giving the full Hessian's columns).

    Args:
        f: `f(params, *args) -> scalar`, twice differentiable in `params` with JAX.
        params: a pytree of real floating-point arrays, the point of the check.
        *args: extra arguments passed to `f` unchanged (floats cast to float64).
        eps: finite-difference step, `> 0` (default `1e-6`).
        num_directions: random directions per parameter leaf, `>= 0` (default 3).
        per_coordinate: `True`, `False` or `"auto"` (default: when the parameters have at most
            256 elements).
        rtol: relative tolerance, `>= 0` (default `1e-4`).
        atol: absolute tolerance, `>= 0` (default `1e-6`).
        key: `None` (seed 0), an int seed or a `jax.random` key for the random directions.

    Returns:
        A [`GradcheckReport`][gradtx.gradcheck.GradcheckReport] of kind `"hvp"`; `worst_path` and
        `worst_index` locate the Hessian-vector product component that disagrees most.

    References:
        Pearlmutter, "Fast exact multiplication by the Hessian", Neural Computation 6(1), 1994;
        the method of `torch.autograd.gradgradcheck`.
    """
    owner = "gradgradcheck"
    _validate(owner, f, eps, num_directions, per_coordinate, rtol, atol)
    rng = _rng(owner, key)
    rtol_f, atol_f = float(rtol), float(atol)
    with jax.enable_x64(True):
        problem, arrays = _problem(owner, f, params, args)
        noise, records = _check_plan(owner, problem, num_directions, per_coordinate, rng)
        h = float(eps)

        def one(x0, grad_fn, segments, noise, record):
            u = _direction(segments, noise, *record)
            analytic = jax.jvp(grad_fn, (x0,), (u,))[1]
            numerical = _central(grad_fn, x0, h, u)
            err = jnp.abs(analytic - numerical)
            finite = jnp.isfinite(analytic) & jnp.isfinite(numerical)
            scale = jnp.maximum(jnp.abs(analytic), jnp.abs(numerical))
            rel = jnp.where(err == 0, 0.0, err / jnp.where(scale == 0, 1.0, scale))
            ratio = jnp.where(err == 0, 0.0, err / (atol_f + rtol_f * jnp.abs(numerical)))
            ratio = jnp.where(finite & ~jnp.isnan(ratio), ratio, jnp.inf)
            err = jnp.where(finite, err, jnp.inf)
            rel = jnp.where(finite, rel, jnp.inf)
            i = jnp.argmax(ratio)
            return jnp.max(err), jnp.max(rel), ratio[i], i, analytic[i], numerical[i]

        @jax.jit
        def run(params, arrays, segments, noise, records):
            x0, grad_fn = problem.ravel(params), jax.grad(problem.function(arrays))
            return _map_checks(lambda r: one(x0, grad_fn, segments, noise, r), records, problem.size)

        out = run(params, arrays, problem.segments, noise, records)
        err, rel, ratio, idx, a_worst, n_worst = (np.asarray(o) for o in out)
        worst = int(np.argmax(ratio))
        leaf, index = problem.locate(int(idx[worst]))
        return GradcheckReport(
            passed=bool(np.all(ratio <= 1.0)),
            kind="hvp",
            max_abs_error=float(np.max(err)),
            max_rel_error=float(np.max(rel)),
            worst_path=problem.paths[leaf],
            worst_index=index,
            worst_analytic=float(a_worst[worst]),
            worst_numerical=float(n_worst[worst]),
            num_checks=int(err.size),
            eps=float(eps),
            rtol=rtol_f,
            atol=atol_f,
        )
