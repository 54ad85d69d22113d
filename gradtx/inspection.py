"""Reading an optimizer's hyper-parameters back, with schedules evaluated at the current step."""

from typing import Any

import jax
import numpy as np

from gradtx.base import GradientTransformation, OptState, hyperparams
from gradtx.transforms.scaling import ScaleByScheduleState
from gradtx.wrappers.accumulation import MultiSteps, MultiStepsState
from gradtx.wrappers.hyperparams import InjectHyperparamsState, InjectStatefulHyperparamsState

__all__ = ["current_hyperparams"]


def _first_count(state: OptState) -> jax.Array | None:
    """The step count of the first schedule-carrying state in `state` (depth first)."""
    found: list[Any] = []

    def visit(node: Any) -> None:
        if found:
            return
        if isinstance(node, (ScaleByScheduleState, InjectHyperparamsState, InjectStatefulHyperparamsState)):
            found.append(node.count)
            return
        if isinstance(node, tuple):
            for child in node:
                visit(child)
        elif isinstance(node, dict):
            for child in node.values():
                visit(child)

    visit(state)
    return found[0] if found else None


def _value(x: Any) -> Any:
    """A Python scalar for a concrete 0-d array (or array wrapper such as nnx's); else unchanged."""
    if not isinstance(x, (jax.Array, np.ndarray)) and hasattr(x, "__jax_array__"):
        x = x.__jax_array__()
    if isinstance(x, (jax.Array, np.ndarray)) and np.ndim(x) == 0 and not isinstance(x, jax.core.Tracer):
        return np.asarray(x).item()
    return x


def _is_gradtx(tx: Any) -> bool:
    return isinstance(tx, MultiSteps) or getattr(getattr(tx, "update", None), "_gradtx_info", None) is not None


def _multi_steps_hyperparams(args: dict[str, Any], state: MultiStepsState) -> dict[str, Any]:
    """The inner optimizer's current hyper-parameters, then MultiSteps' own arguments."""
    inner = args["opt"]
    out = current_hyperparams(inner, state.inner_opt_state) if _is_gradtx(inner) else {}
    every_k = args["every_k_schedule"]
    if callable(every_k):
        every_k = _value(every_k(_value(state.gradient_step)))
    out.update(args)
    out["every_k_schedule"] = every_k
    return out


def current_hyperparams(tx: GradientTransformation, state: OptState) -> dict[str, Any]:
    """The hyper-parameters `tx` will use at its next step, read from `tx` and its `state`.

    Every argument the factory was called with is returned; a schedule (a callable argument) is
    replaced by its value at the current step count found in `state` (the count the next update
    evaluates it at). For [`inject_hyperparams`][gradtx.inject_hyperparams] the values held in the
    state are returned. For a [`chain`][gradtx.chain], the entry `"transforms"` lists the current
    hyper-parameters of each member. For a [`MultiSteps`][gradtx.MultiSteps] (the instance or its
    `gradient_transformation()`), the inner optimizer's current hyper-parameters (read from
    `state.inner_opt_state`) come with MultiSteps' own arguments (`opt`, `every_k_schedule`
    evaluated at `state.gradient_step`, `use_grad_mean`, `should_skip_update_fn`,
    `accumulator_dtype`); on a name clash MultiSteps' own wins.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.adam(gradtx.linear_schedule(1.0, 0.0, 10))
        >>> state = tx.init(jnp.zeros(2))
        >>> for _ in range(4):
        ...     _, state = tx.update(jnp.ones(2), state)
        >>> round(gradtx.current_hyperparams(tx, state)["learning_rate"], 6)
        0.6
    """
    if isinstance(tx, MultiSteps):
        tx = tx.gradient_transformation()
    args = hyperparams(tx)
    if isinstance(state, MultiStepsState) and getattr(tx.update, "_gradtx_info", ("",))[0] == "MultiSteps":
        return _multi_steps_hyperparams(args, state)
    if isinstance(state, (InjectHyperparamsState, InjectStatefulHyperparamsState)):
        out: dict[str, Any] = {k: _value(v) for k, v in args.items()}
        out.update({k: _value(v) for k, v in state.hyperparams.items()})
        return out
    members = args.pop("*transforms", None)
    count = _first_count(state)
    out = {}
    for key, value in args.items():
        if callable(value) and not isinstance(value, GradientTransformation) and count is not None:
            out[key] = _value(value(count))
        else:
            out[key] = value
    if members is not None:
        if isinstance(state, dict):  # named_chain
            member_states = [state[name] for name, _ in members]
            members = [tx for _, tx in members]
        else:
            member_states = list(state)
        out["transforms"] = [
            current_hyperparams(m, s) if _is_gradtx(m) else {}
            for m, s in zip(members, member_states, strict=True)
        ]
    return out
