"""Checks of public parameters: one message template, one feasibility tolerance.

Public functions validate their inputs here, once; kernels trust them. Messages follow one
template: "The 'budget' parameter of solve must be a float in (0, inf). Got -3.0 instead."
"""

from __future__ import annotations

import numpy as np

__all__ = ["FEASIBLE_RTOL", "check_budget", "check_feasible"]

#: A budget this far (relatively) under the cheapest mean cost still counts as that cost: it
#: absorbs the rounding of callers that compute the same mean another way.
FEASIBLE_RTOL = 1e-12


def check_budget(budget: object, where: str) -> float:
    """A budget: a finite real number > 0, for the function or method ``where``.

    Raises
    ------
    ValueError
        "The 'budget' parameter of WHERE must be a float in (0, inf). Got X instead."
    """
    value = (
        float(budget)
        if isinstance(budget, (int, float, np.integer, np.floating))
        and not isinstance(budget, bool)
        else float("nan")
    )
    if not np.isfinite(value) or value <= 0:
        raise ValueError(
            f"The 'budget' parameter of {where} must be a float in (0, inf). Got {budget!r} "
            "instead."
        )
    return value


def check_feasible(budget: float, cheapest: float, where: str, what: str = "action") -> None:
    """Raise unless ``budget`` covers the ``cheapest`` mean cost (within ``FEASIBLE_RTOL``).

    Raises
    ------
    ValueError
        "The budget B of WHERE is infeasible: the cheapest WHAT costs C per query on average."
    """
    if budget < cheapest * (1.0 - FEASIBLE_RTOL):
        raise ValueError(
            f"The budget {budget:g} of {where} is infeasible: the cheapest {what} costs "
            f"{cheapest:g} per query on average."
        )
