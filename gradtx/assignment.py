r"""Linear assignment (`gradtx.assignment`): the Hungarian algorithm in JAX, with optax's
`optax.assignment` names, signatures and outputs.

Given an $n \times m$ cost matrix $C$, an assignment pairs $\min(n, m)$ rows with as many
distinct columns so that the total cost is minimal:

$$
\min_{X \in \{0, 1\}^{n \times m}} \sum_{i, j} C_{ij} X_{ij}
\quad\text{s.t.}\quad \sum_j X_{ij} \le 1,\ \ \sum_i X_{ij} \le 1,\ \ \sum_{i, j} X_{ij} = \min(n, m).
$$

Both solvers are exact, run under `jax.jit` (the matrix shape is static), and return a pair of
integer index arrays `(i, j)` of length $\min(n, m)$: row `i[k]` is assigned column `j[k]` and the
optimal cost is `cost_matrix[i, j].sum()`. Costs must be finite. When several assignments are
optimal, each solver returns the same one as its optax namesake (and the order of the pairs is
optax's too).
"""

import jax
import jax.numpy as jnp

__all__ = ["base_hungarian_algorithm", "hungarian_algorithm"]

_EMPTY = "an empty cost matrix gives empty index arrays"


def _as_matrix(owner: str, cost_matrix: jax.Array) -> jax.Array:
    cost = jnp.asarray(cost_matrix)
    if cost.ndim != 2:
        raise ValueError(f"{owner}: cost_matrix must be a 2-D array, got shape {cost.shape}")
    return cost


def _empty() -> tuple[jax.Array, jax.Array]:
    return jnp.zeros(0, int), jnp.zeros(0, int)


# --------------------------------------------------------------------------------------------
# hungarian_algorithm: potentials and a Dijkstra-like sweep per row (O(n^2 m)), vectorised
# over columns.


def _assign_row(cost: jax.Array, state: tuple, row: jax.Array) -> tuple:
    """Add row `row` (0-based) to the matching, keeping the dual potentials feasible.

    Columns are numbered from 1; column 0 is a virtual column holding the new row. `match[c]` is
    the 1-based row matched to column c (0: free). The sweep grows a tree of tight edges from the
    new row: each step visits the row of the last column reached, relaxes the slack `slack[c]`
    of every column outside the tree, moves to the column of least slack and shifts the
    potentials by that slack, until it reaches a free column; the matching is then flipped
    along the tree path back to column 0.
    """
    u, v, match = state
    n_cols = cost.shape[1]
    match = match.at[0].set(row + 1)

    def sweep(carry: tuple) -> tuple:
        u, v, in_tree, rows_seen, slack, back, col = carry
        in_tree = in_tree.at[col].set(True)
        r = match[col]
        rows_seen = rows_seen.at[r].set(True)
        outside = ~in_tree[1:]
        reduced = jnp.where(outside, cost[r - 1, :] - u[r] - v[1:], jnp.inf)
        closer = reduced < slack
        back = jnp.where(closer, col, back)
        slack = jnp.where(closer, reduced, slack)
        candidates = jnp.where(outside, slack, jnp.inf)
        nxt = jnp.argmin(candidates)
        delta = candidates[nxt]
        u = jnp.where(rows_seen, u + delta, u)
        v = jnp.where(in_tree, v - delta, v)
        slack = jnp.where(outside, slack - delta, slack)
        return u, v, in_tree, rows_seen, slack, back, nxt + 1

    carry = (
        u,
        v,
        jnp.zeros(n_cols + 1, bool),
        jnp.zeros(u.shape[0], bool),
        jnp.full(n_cols, jnp.inf, u.dtype),
        jnp.zeros(n_cols, match.dtype),
        jnp.zeros((), match.dtype),
    )
    u, v, _, _, _, back, col = jax.lax.while_loop(lambda c: match[c[-1]] != 0, sweep, carry)

    def flip(carry: tuple) -> tuple:
        match, col = carry
        prev = back[col - 1]
        return match.at[col].set(match[prev]), prev

    match, _ = jax.lax.while_loop(lambda c: c[1] != 0, flip, (match, col))
    return (u, v, match), None


def hungarian_algorithm(cost_matrix: jax.Array) -> tuple[jax.Array, jax.Array]:
    r"""Solve the linear assignment problem with the Hungarian algorithm (Kuhn-Munkres with
    potentials, $O(n^2 m)$ for $n \le m$).

    The rows are added one at a time (the matrix is transposed first when it has more rows than
    columns). Dual potentials $u_i, v_j$ with $C_{ij} - u_i - v_j \ge 0$ are maintained; adding a
    row runs a Dijkstra-like search over reduced costs $C_{ij} - u_i - v_j$ for the cheapest
    augmenting path, shifting the potentials so that the path's edges are tight, and flips the
    matching along it. Every step is a vector operation over the columns inside
    `jax.lax.while_loop`, so it compiles to a small program and runs under `jax.jit`.

    Args:
        cost_matrix: an $n \times m$ array of finite costs (any real or integer dtype; the
            potentials are float32, or float64 in 64-bit mode). Its shape must be static.

    Returns:
        `(i, j)`, integer arrays of length $\min(n, m)$: row `i[k]` goes to column `j[k]`, and
        `cost_matrix[i, j].sum()` is the optimal cost. The order follows optax: for a square
        matrix `j` is `arange(n)` (and `i[k]` is the row of column `k`); with fewer rows than
        columns `i` runs over the rows in decreasing order; with more rows than columns `j` runs
        over the columns in decreasing order. An empty matrix gives two empty arrays.

    Raises:
        ValueError: `cost_matrix` is not 2-D.

    Example:
        ```python
        import jax.numpy as jnp
        from gradtx.assignment import hungarian_algorithm

        cost = jnp.array([[8, 4, 7], [5, 2, 3], [9, 6, 7], [9, 4, 8]])
        i, j = hungarian_algorithm(cost)
        i, j  # [1, 3, 0], [2, 1, 0]: rows 1, 3, 0 -> columns 2, 1, 0, cost 15
        ```

    References:
        Kuhn, [The Hungarian method for the assignment problem](https://doi.org/10.1002/nav.3800020109),
        Naval Research Logistics Quarterly, 1955.

        Dehghani et al., [Scenic: A JAX Library for Computer Vision Research and
        Beyond](https://arxiv.org/abs/2110.11403), CVPR 2022 (the vectorised JAX formulation
        optax follows).
    """
    cost = _as_matrix("hungarian_algorithm", cost_matrix)
    if 0 in cost.shape:
        return _empty()
    transpose = cost.shape[0] > cost.shape[1]
    if transpose:
        cost = cost.T
    n_rows, n_cols = cost.shape

    u = jnp.zeros(n_rows + 1)  # row potentials, 1-based (entry 0 unused)
    v = jnp.zeros(n_cols + 1)  # column potentials, 1-based (entry 0: the virtual column)
    match = jnp.zeros(n_cols + 1, int)  # 1-based row of each column, 0 when free
    (u, v, match), _ = jax.lax.scan(
        lambda s, r: _assign_row(cost, s, r), (u, v, match), jnp.arange(n_rows)
    )
    row_of_col = match[1:] - 1
    if n_rows == n_cols:
        rows, cols = row_of_col, jnp.arange(n_rows)
    else:
        # every row is matched: list them from the last to the first with their columns
        target = jnp.where(row_of_col >= 0, row_of_col, n_rows)  # free columns: dropped
        col_of_row = jnp.zeros(n_rows, int).at[target].set(jnp.arange(n_cols), mode="drop")
        rows, cols = jnp.arange(n_rows)[::-1], col_of_row[::-1]
    return (cols, rows) if transpose else (rows, cols)


# --------------------------------------------------------------------------------------------
# base_hungarian_algorithm: shortest augmenting paths (Jonker-Volgenant as described by Crouse).


def _augmenting_path(cost: jax.Array, u: jax.Array, v: jax.Array, path: jax.Array,
                     row4col: jax.Array, start: jax.Array) -> tuple:
    """Dijkstra search, from the free row `start`, for the cheapest path to a free column.

    Columns leave the unscanned set in order of least path cost. Ties go as in the reference
    implementation, which scans a list of unscanned columns: a free column wins a tie (the one
    latest in the list), otherwise the earliest in the list. The list starts as the columns in
    decreasing order and a scanned column's slot is refilled with the list's last column; `slot`
    tracks each column's position in it.
    """
    n_rows, n_cols = cost.shape
    dtype = cost.dtype
    free_col = row4col == -1

    def scan_row(carry: tuple) -> tuple:
        row, dist, slot, n_left, rows_seen, scanned, path_cost, path, _ = carry
        rows_seen = rows_seen.at[row].set(True)
        unscanned = ~scanned
        through_row = dist + cost[row] - u[row] - v
        shorter = unscanned & (through_row < path_cost)
        path = jnp.where(shorter, row, path)
        path_cost = jnp.where(shorter, through_row, path_cost)
        lowest = jnp.min(jnp.where(unscanned, path_cost, jnp.inf))
        tie = unscanned & (path_cost == lowest)
        free_tie = tie & free_col
        col = jnp.where(
            jnp.any(free_tie),
            jnp.argmax(jnp.where(free_tie, slot, -1)),
            jnp.argmin(jnp.where(tie, slot, n_cols)),
        )
        sink = jnp.where(free_col[col], col, -1)
        row = jnp.where(free_col[col], row, row4col[col])
        slot = jnp.where(unscanned & (slot == n_left - 1), slot[col], slot)
        scanned = scanned.at[col].set(True)
        return row, lowest, slot, n_left - 1, rows_seen, scanned, path_cost, path, sink

    carry = (
        start,
        jnp.zeros((), dtype),
        jnp.arange(n_cols)[::-1],
        jnp.asarray(n_cols),
        jnp.zeros(n_rows, bool),
        jnp.zeros(n_cols, bool),
        jnp.full(n_cols, jnp.inf, dtype),
        path,
        jnp.asarray(-1),
    )
    _, dist, _, _, rows_seen, scanned, path_cost, path, sink = jax.lax.while_loop(
        lambda c: c[-1] == -1, scan_row, carry
    )
    return sink, dist, rows_seen, scanned, path_cost, path


def _add_row(cost: jax.Array, row: jax.Array, state: tuple) -> tuple:
    """Match row `row` along a shortest augmenting path, then update the potentials."""
    u, v, path, row4col, col4row = state
    sink, dist, rows_seen, scanned, path_cost, path = _augmenting_path(
        cost, u, v, path, row4col, row
    )
    u = u.at[row].add(dist)
    others = rows_seen & (jnp.arange(cost.shape[0]) != row)
    u = jnp.where(others, u + dist - path_cost[col4row], u)
    v = jnp.where(scanned, v + path_cost - dist, v)

    def flip(carry: tuple) -> tuple:
        col, row4col, col4row, _ = carry
        r = path[col]
        row4col = row4col.at[col].set(r)
        col4row, col = col4row.at[r].set(col), col4row[r]
        return col, row4col, col4row, r == row

    _, row4col, col4row, _ = jax.lax.while_loop(
        lambda c: ~c[-1], flip, (sink, row4col, col4row, jnp.asarray(False))
    )
    return u, v, path, row4col, col4row


def base_hungarian_algorithm(cost_matrix: jax.Array) -> tuple[jax.Array, jax.Array]:
    r"""Solve the linear assignment problem with shortest augmenting paths (Jonker-Volgenant, in
    Crouse's formulation, as in `scipy.optimize.linear_sum_assignment`).

    With $n \le m$ (the matrix is transposed otherwise) the rows are matched one at a time. For
    a new row, a Dijkstra search over reduced costs $C_{ij} - u_i - v_j$ finds the cheapest
    path (alternating unmatched and matched edges) to a free column; with $d$ its length and
    $\ell_j$ the path cost of each scanned column $j$, the potentials become

    $$
    u_{\text{new}} \mathrel{+}= d, \qquad u_i \mathrel{+}= d - \ell_{c(i)}\ \ (\text{other scanned rows}),
    \qquad v_j \mathrel{+}= \ell_j - d\ \ (\text{scanned columns}),
    $$

    and the matching is flipped along the path. Total cost $O(n^2 m)$. Each Dijkstra step is a
    vector operation over the columns inside `jax.lax.while_loop`.

    Args:
        cost_matrix: an $n \times m$ array of finite costs; it is converted to the default float
            dtype (float32, or float64 in 64-bit mode). Its shape must be static.

    Returns:
        `(i, j)`, integer arrays of length $\min(n, m)$: row `i[k]` goes to column `j[k]`, and
        `cost_matrix[i, j].sum()` is the optimal cost. `i` is increasing (`arange(n)` when
        $n \le m$). An empty matrix gives two empty arrays.

    Raises:
        ValueError: `cost_matrix` is not 2-D.

    Example:
        ```python
        import jax.numpy as jnp
        from gradtx.assignment import base_hungarian_algorithm

        cost = jnp.array([[8, 4, 7], [5, 2, 3], [9, 6, 7], [9, 4, 8]])
        i, j = base_hungarian_algorithm(cost)  # i = [0, 1, 3], j = [0, 2, 1]: cost 15
        ```

    References:
        Crouse, [On implementing 2D rectangular assignment algorithms](https://ieeexplore.ieee.org/document/7738348),
        IEEE Transactions on Aerospace and Electronic Systems, 2016.

        Jonker and Volgenant, [A shortest augmenting path algorithm for dense and sparse linear
        assignment problems](https://doi.org/10.1007/BF02278710), Computing, 1987.
    """
    cost = _as_matrix("base_hungarian_algorithm", cost_matrix)
    if 0 in cost.shape:
        return _empty()
    transpose = cost.shape[1] < cost.shape[0]
    if transpose:
        cost = cost.T
    cost = cost.astype(float)
    n_rows, n_cols = cost.shape
    state = (
        jnp.zeros(n_rows, cost.dtype),
        jnp.zeros(n_cols, cost.dtype),
        jnp.full(n_cols, -1),
        jnp.full(n_cols, -1),
        jnp.full(n_rows, -1),
    )
    *_, col4row = jax.lax.fori_loop(0, n_rows, lambda r, s: _add_row(cost, r, s), state)
    if transpose:
        order = jnp.argsort(col4row)
        return col4row[order], order
    return jnp.arange(n_rows), col4row
