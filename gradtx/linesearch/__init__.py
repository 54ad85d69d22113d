"""gradtx.linesearch: line searches, transformations that choose the step size along the updates.

A line search is chained after the transformations that give the update direction (for example
`chain(sgd(1.0), scale_by_backtracking_linesearch(15))`, or inside [`lbfgs`][gradtx.lbfgs]) and
scales that direction by a step size for which the objective decreases enough. Its `update`
therefore needs the objective: `update(updates, state, params, value=f(params),
grad=grad_f(params), value_fn=f, **data)`; see [`gradtx.linesearch.common`][gradtx.linesearch.common]
for this protocol. The names, arguments, defaults, states and numbers are optax 0.2.8's.
"""

from gradtx.linesearch.backtracking import (
    BacktrackingLinesearchInfo,
    ScaleByBacktrackingLinesearchState,
    scale_by_backtracking_linesearch,
)
from gradtx.linesearch.common import value_and_grad_from_state
from gradtx.linesearch.zoom import ScaleByZoomLinesearchState, ZoomLinesearchInfo, scale_by_zoom_linesearch

__all__ = [
    "BacktrackingLinesearchInfo",
    "ScaleByBacktrackingLinesearchState",
    "ScaleByZoomLinesearchState",
    "ZoomLinesearchInfo",
    "scale_by_backtracking_linesearch",
    "scale_by_zoom_linesearch",
    "value_and_grad_from_state",
]
