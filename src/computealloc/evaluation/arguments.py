"""Validation of the arguments of :func:`computealloc.evaluation.evaluate` and ``footprint``.

Each check raises a ``ValueError`` or ``TypeError`` that names the parameter of ``evaluate``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from numbers import Integral, Real

import numpy as np

from computealloc.checks import check_feasible
from computealloc.data.samples import SampleLog
from computealloc.estimation.actions import Action, parse_actions
from computealloc.estimation.estimate import default_actions
from computealloc.estimation.table import OutcomeTable
from computealloc.estimation.units import PriceLike, pricing_of

__all__ = [
    "check_args",
    "check_budgets",
    "parse_budgets",
    "parse_choices",
    "parse_seeds",
    "protocol_actions",
]


def parse_choices(name: str, value: str | Iterable[str], allowed: tuple[str, ...]) -> list[str]:
    items = [value] if isinstance(value, str) else list(value)
    bad = [v for v in items if v not in allowed]
    if not items or bad:
        raise ValueError(
            f"The {name!r} parameter of evaluate must be a non-empty list of "
            f"{', '.join(map(repr, allowed))}. Got {value!r} instead."
        )
    return list(dict.fromkeys(items))


def parse_budgets(budgets: Iterable[float]) -> list[float]:
    values = list(budgets) if not isinstance(budgets, (str, bytes)) else []
    ok = values and all(
        isinstance(b, Real) and not isinstance(b, bool) and 0 < float(b) < np.inf for b in values
    )
    if not ok:
        raise ValueError(
            "The 'budgets' parameter of evaluate must be a non-empty list of floats in (0, inf). "
            f"Got {budgets!r} instead."
        )
    return sorted({float(b) for b in values})


def parse_seeds(seeds: int | Iterable[int]) -> list[int]:
    if isinstance(seeds, Integral) and not isinstance(seeds, bool):
        if seeds < 1:
            raise ValueError(
                f"The 'seeds' parameter of evaluate must be an int in [1, inf) or a list of "
                f"ints. Got {seeds!r} instead."
            )
        return list(range(int(seeds)))
    values = list(seeds) if isinstance(seeds, Iterable) else []
    if not values or not all(isinstance(s, Integral) and not isinstance(s, bool) for s in values):
        raise ValueError(
            "The 'seeds' parameter of evaluate must be an int in [1, inf) or a list of ints. "
            f"Got {seeds!r} instead."
        )
    return list(dict.fromkeys(int(s) for s in values))


def check_args(
    log: object, probe_m: object, cost: object, prices: Mapping[str, PriceLike] | None
) -> None:
    if not isinstance(log, SampleLog):
        raise TypeError(
            f"The 'log' parameter of evaluate must be a SampleLog. Got {type(log).__name__} "
            "instead."
        )
    if isinstance(probe_m, bool) or not isinstance(probe_m, Integral) or probe_m < 0:
        raise ValueError(
            f"The 'probe_m' parameter of evaluate must be an int in [0, inf). Got {probe_m!r} "
            "instead."
        )
    pricing_of(cost, prices, "evaluate")


def check_budgets(table: OutcomeTable, budgets: list[float], protocol: str) -> None:
    """Every budget must afford the cheapest action on average (uniform's floor)."""
    cheapest = float(table.C.mean(axis=0).min())
    check_feasible(budgets[0], cheapest, f"evaluate (protocol {protocol!r})")


def protocol_actions(
    log: SampleLog, actions: str | Iterable[str | Action] | None, protocol: str
) -> tuple[Action, ...]:
    if actions is not None:
        return parse_actions(actions)
    try:
        return default_actions(log, protocol)  # type: ignore[arg-type]
    except ValueError as exc:
        raise ValueError(f"{exc} Evaluate this log with protocols=('in-sample',).") from exc
