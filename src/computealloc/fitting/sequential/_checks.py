"""Argument checks shared by the modules of :mod:`computealloc.fitting.sequential`."""

from __future__ import annotations

from numbers import Integral

import numpy as np
from numpy.typing import ArrayLike, NDArray

from computealloc.data.samples import SampleLog

Float = NDArray[np.float64]


def check_int(value: object, name: str, where: str, *, low: int, high: int | None = None) -> int:
    """``value`` as an int in ``[low, high]``; ValueError naming ``where`` and ``name`` else."""
    ok = isinstance(value, Integral) and not isinstance(value, bool)
    ok = ok and low <= int(value) and (high is None or int(value) <= high)  # type: ignore[call-overload]
    if not ok:
        upper = "inf)" if high is None else f"{high}]"
        raise ValueError(
            f"The {name!r} parameter of {where} must be an int in [{low}, {upper}. Got "
            f"{value!r} instead."
        )
    return int(value)  # type: ignore[call-overload]


def cap_of(max_samples: object, where: str) -> int:
    """``max_samples`` as an int >= 1 (ValueError naming ``where``)."""
    return check_int(max_samples, "max_samples", where, low=1)


def prior_array(prior: ArrayLike | None, n_rows: int) -> Float | None:
    """Per-query prior scores as a float array of ``n_rows`` (None stays None)."""
    if prior is None:
        return None
    p = np.asarray(prior, dtype=np.float64).reshape(-1)
    if p.shape != (n_rows,):
        raise ValueError(f"`prior` must hold one score per query ({n_rows}). Got {p.shape[0]}.")
    return p


def check_log(log: object, where: str) -> None:
    """TypeError naming ``where`` unless ``log`` is a SampleLog."""
    if not isinstance(log, SampleLog):
        raise TypeError(
            f"The 'log' parameter of {where} must be a SampleLog. Got {type(log).__name__} instead."
        )
