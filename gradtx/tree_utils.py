"""optax's `optax.tree_utils` names: the functions of [`gradtx.tree`][gradtx.tree] with a `tree_` prefix.

Every `gradtx.tree_utils.tree_<name>` is the same object as `gradtx.tree.<name>`;
[`NamedTupleKey`][gradtx.tree_utils.NamedTupleKey] is the path entry of the state-access functions.
"""

from gradtx.tree import (
    add as tree_add,
)
from gradtx.tree import (
    add_scale as tree_add_scale,
)
from gradtx.tree import (
    allclose as tree_allclose,
)
from gradtx.tree import (
    batch_shape as tree_batch_shape,
)
from gradtx.tree import (
    bias_correction as tree_bias_correction,
)
from gradtx.tree import (
    cast as tree_cast,
)
from gradtx.tree import (
    cast_like as tree_cast_like,
)
from gradtx.tree import (
    clip as tree_clip,
)
from gradtx.tree import (
    conj as tree_conj,
)
from gradtx.tree import (
    div as tree_div,
)
from gradtx.tree import (
    dtype as tree_dtype,
)
from gradtx.tree import (
    full_like as tree_full_like,
)
from gradtx.tree import (
    get as tree_get,
)
from gradtx.tree import (
    get_all_with_path as tree_get_all_with_path,
)
from gradtx.tree import (
    map_params as tree_map_params,
)
from gradtx.tree import (
    max as tree_max,
)
from gradtx.tree import (
    min as tree_min,
)
from gradtx.tree import (
    mul as tree_mul,
)
from gradtx.tree import (
    norm as tree_norm,
)
from gradtx.tree import (
    ones_like as tree_ones_like,
)
from gradtx.tree import (
    random_like as tree_random_like,
)
from gradtx.tree import (
    real as tree_real,
)
from gradtx.tree import (
    scale as tree_scale,
)
from gradtx.tree import (
    set as tree_set,
)
from gradtx.tree import (
    size as tree_size,
)
from gradtx.tree import (
    split_key_like as tree_split_key_like,
)
from gradtx.tree import (
    sub as tree_sub,
)
from gradtx.tree import (
    sum as tree_sum,
)
from gradtx.tree import (
    unwrap_random_key_data as tree_unwrap_random_key_data,
)
from gradtx.tree import (
    update_infinity_moment as tree_update_infinity_moment,
)
from gradtx.tree import (
    update_moment as tree_update_moment,
)
from gradtx.tree import (
    update_moment_per_elem_norm as tree_update_moment_per_elem_norm,
)
from gradtx.tree import (
    vdot as tree_vdot,
)
from gradtx.tree import (
    where as tree_where,
)
from gradtx.tree import (
    zeros_like as tree_zeros_like,
)
from gradtx.tree._state import NamedTupleKey

__all__ = [
    "NamedTupleKey",
    "tree_add",
    "tree_add_scale",
    "tree_allclose",
    "tree_batch_shape",
    "tree_bias_correction",
    "tree_cast",
    "tree_cast_like",
    "tree_clip",
    "tree_conj",
    "tree_div",
    "tree_dtype",
    "tree_full_like",
    "tree_get",
    "tree_get_all_with_path",
    "tree_map_params",
    "tree_max",
    "tree_min",
    "tree_mul",
    "tree_norm",
    "tree_ones_like",
    "tree_random_like",
    "tree_real",
    "tree_scale",
    "tree_set",
    "tree_size",
    "tree_split_key_like",
    "tree_sub",
    "tree_sum",
    "tree_unwrap_random_key_data",
    "tree_update_infinity_moment",
    "tree_update_moment",
    "tree_update_moment_per_elem_norm",
    "tree_vdot",
    "tree_where",
    "tree_zeros_like",
]
