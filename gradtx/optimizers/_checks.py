"""Private argument checks shared by the optimizer aliases (messages name the alias)."""

from typing import Any

from gradtx import _validation as v

__all__: list[str] = []


def learning_rate(owner: str, value: Any) -> None:
    """A learning rate: a real number `>= 0` or a schedule (a callable of the step count)."""
    v.check_schedule_or_real(owner, "learning_rate", value, low=0.0)


def beta(owner: str, name: str, value: Any, *, closed: bool = False) -> None:
    """A decay rate in `[0, 1)` (or `[0, 1]` when `closed`)."""
    v.check_real(owner, name, value, low=0.0, high=1.0, high_inclusive=closed)


def nonneg(owner: str, name: str, value: Any) -> None:
    v.check_real(owner, name, value, low=0.0)


def weight_decay(owner: str, value: Any) -> None:
    v.check_schedule_or_real(owner, "weight_decay", value, low=0.0)


def momentum_and_nesterov(owner: str, momentum: Any, nesterov: Any) -> None:
    """`momentum` is None or in `[0, 1]`; `nesterov=True` needs a momentum."""
    v.check_bool(owner, "nesterov", nesterov)
    if momentum is None:
        if nesterov:
            raise ValueError(
                f"{owner}: nesterov=True needs a momentum, but momentum=None; pass momentum=0.9 "
                f"(for example) or nesterov=False"
            )
        return
    v.check_real(owner, "momentum", momentum, low=0.0, high=1.0)

