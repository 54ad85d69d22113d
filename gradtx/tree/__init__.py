"""Pytree utilities (`gradtx.tree`): optax's `optax.tree` namespace.

Leafwise arithmetic, reductions and norms, casting, random trees, moment updates, and access
to optimizer-state values by field or state-class name. `gradtx.tree_utils` holds the same
functions under optax's `tree_`-prefixed names. The numbers equal optax's bit for bit, and the
state functions work on gradtx and optax states alike.

Example:
    >>> import jax.numpy as jnp, gradtx
    >>> x = {"a": jnp.array([1.0, 2.0]), "b": jnp.array(2.0)}
    >>> float(gradtx.tree.vdot(x, gradtx.tree.scale(2.0, x)))
    18.0
"""

from gradtx.numerics import (
    bias_correction,
    update_infinity_moment,
    update_moment,
    update_moment_per_elem_norm,
)
from gradtx.tree._dtypes import tree_cast as cast
from gradtx.tree._dtypes import tree_cast_like as cast_like
from gradtx.tree._dtypes import tree_dtype as dtype
from gradtx.tree._dtypes import tree_random_like as random_like
from gradtx.tree._dtypes import tree_split_key_like as split_key_like
from gradtx.tree._dtypes import tree_unwrap_random_key_data as unwrap_random_key_data
from gradtx.tree._math import tree_add as add
from gradtx.tree._math import tree_add_scale as add_scale
from gradtx.tree._math import tree_allclose as allclose
from gradtx.tree._math import tree_batch_shape as batch_shape
from gradtx.tree._math import tree_clip as clip
from gradtx.tree._math import tree_conj as conj
from gradtx.tree._math import tree_div as div
from gradtx.tree._math import tree_full_like as full_like
from gradtx.tree._math import tree_max as max
from gradtx.tree._math import tree_min as min
from gradtx.tree._math import tree_mul as mul
from gradtx.tree._math import tree_norm as norm
from gradtx.tree._math import tree_ones_like as ones_like
from gradtx.tree._math import tree_real as real
from gradtx.tree._math import tree_scale as scale
from gradtx.tree._math import tree_size as size
from gradtx.tree._math import tree_sub as sub
from gradtx.tree._math import tree_sum as sum
from gradtx.tree._math import tree_vdot as vdot
from gradtx.tree._math import tree_where as where
from gradtx.tree._math import tree_zeros_like as zeros_like
from gradtx.tree._state import tree_get as get
from gradtx.tree._state import tree_get_all_with_path as get_all_with_path
from gradtx.tree._state import tree_set as set
from gradtx.wrappers.protocol import tree_map_params as map_params

__all__ = [
    "add",
    "add_scale",
    "allclose",
    "batch_shape",
    "bias_correction",
    "cast",
    "cast_like",
    "clip",
    "conj",
    "div",
    "dtype",
    "full_like",
    "get",
    "get_all_with_path",
    "map_params",
    "max",
    "min",
    "mul",
    "norm",
    "ones_like",
    "random_like",
    "real",
    "scale",
    "set",
    "size",
    "split_key_like",
    "sub",
    "sum",
    "unwrap_random_key_data",
    "update_infinity_moment",
    "update_moment",
    "update_moment_per_elem_norm",
    "vdot",
    "where",
    "zeros_like",
]
