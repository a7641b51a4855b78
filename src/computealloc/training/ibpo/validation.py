"""Argument checks of the IBPO entry points; every error names the function and the
argument.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from computealloc.training.ibpo.results import Float, Int


def check_choice(name: str, value: object, choices: tuple[str, ...], where: str) -> None:
    """Raise unless ``value`` is one of ``choices``."""
    if value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise ValueError(
            f"The {name!r} parameter of {where} must be one of {allowed}. Got {value!r} instead."
        )


def float_vector(values: ArrayLike, name: str, where: str) -> Float:
    """``values`` as a non-empty 1-D float array (n,) of finite values."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0 or not np.isfinite(array).all():
        raise ValueError(
            f"The {name!r} parameter of {where} must be a non-empty 1-D array of finite "
            f"floats. Got shape {array.shape}"
            + ("" if array.ndim != 1 or array.size == 0 else " with non-finite values")
            + " instead."
        )
    return array


def label_codes(labels: ArrayLike, n: int, name: str, where: str) -> tuple[Int, list[str]]:
    """Integer codes (n,) of labels compared as strings, and the sorted distinct labels."""
    array = np.asarray(labels, dtype=object)
    if array.shape != (n,):
        raise ValueError(
            f"The {name!r} parameter of {where} must have shape ({n},), one entry per "
            f"response. Got shape {array.shape} instead."
        )
    codes, uniques = pd.factorize(pd.Series(array, dtype=object).astype(str), sort=True)
    return codes.astype(np.int64), [str(u) for u in uniques]


def check_shares(max_share: object, groups: Sequence[str], where: str) -> dict[str, float]:
    """The share caps by group (each in [0, 1], groups among ``groups``); {} for None."""
    if max_share is None:
        return {}
    if not isinstance(max_share, Mapping):
        raise TypeError(
            f"The 'max_share' parameter of {where} must be a dict {{group: share}}. Got "
            f"{type(max_share).__name__} instead."
        )
    shares: dict[str, float] = {}
    for group, q in max_share.items():
        if str(group) not in groups:
            raise ValueError(
                f"The 'max_share' parameter of {where} names group {group!r}, which is not in "
                f"the data. Groups: {', '.join(map(repr, groups))}."
            )
        shares[str(group)] = _check_real(q, f"share of group {group!r}", where, 0.0, 1.0)
    return shares


def check_share_list(shares: object, where: str) -> list[float]:
    """``shares`` as a non-empty list of floats in [0, 1]."""
    if isinstance(shares, (str, bytes)) or not isinstance(shares, Sequence) or not shares:
        raise ValueError(
            f"The 'shares' parameter of {where} must be a non-empty sequence of floats in "
            f"[0, 1]. Got {shares!r} instead."
        )
    return [_check_real(q, "shares", where, 0.0, 1.0) for q in shares]


def _check_real(value: object, name: str, where: str, low: float, high: float) -> float:
    """``value`` as a float in ``[low, high]``."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not low <= float(value) <= high
    ):
        raise ValueError(
            f"The {name!r} parameter of {where} must be a float in [{low:g}, {high:g}]. Got "
            f"{value!r} instead."
        )
    return float(value)


def _check_budget(budget: object, where: str) -> float:
    if (
        isinstance(budget, bool)
        or not isinstance(budget, numbers.Real)
        or not 0.0 < float(budget) < math.inf
    ):
        raise ValueError(
            f"The 'budget' parameter of {where} must be a float in (0, inf). Got {budget!r} "
            "instead."
        )
    return float(budget)


def check_cost(
    cost: ArrayLike | None, budget: object, n: int, n_prompts: int, where: str
) -> tuple[Float | None, float]:
    """The cost vector (n,) or None, and the batch's total budget ``B P`` (0 when unused)."""
    if (cost is None) != (budget is None):
        raise ValueError(
            f"The 'cost' and 'budget' parameters of {where} go together. Got "
            f"cost={'None' if cost is None else 'an array'} and budget={budget!r}."
        )
    if cost is None:
        return None, 0.0
    c = float_vector(cost, "cost", where)
    if c.shape != (n,) or (c < 0).any():
        raise ValueError(
            f"The 'cost' parameter of {where} must hold {n} floats >= 0, one per response. "
            f"Got shape {c.shape} with minimum {c.min():g} instead."
        )
    return c, _check_budget(budget, where) * n_prompts


def check_export_budget(budget: object, cost_col: object, where: str) -> float | None:
    """The export's budget per prompt (a positive real), or None; needs ``cost_col``."""
    if (budget is None) != (cost_col is None):
        raise ValueError(
            f"The 'budget' and 'cost_col' parameters of {where} go together. Got "
            f"budget={budget!r} and cost_col={cost_col!r}."
        )
    return None if budget is None else _check_budget(budget, where)


def check_int(value: object, name: str, where: str, low: int) -> int:
    """``value`` as an int, checked to be at least ``low`` (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(
            f"The {name!r} parameter of {where} must be an int in [{low}, inf). Got {value!r} "
            "instead."
        )
    return int(value)
