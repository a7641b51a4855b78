"""The action-kind contract and its registry."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from computealloc.data.backends.base import Completion
from computealloc.estimation.kernels import ClusteredSamples
from computealloc.estimation.voting import Vote

__all__ = ["Combine", "Kind", "get_kind", "kind_names", "register"]

#: ``accuracy(pools, ks) -> (n_queries, len(ks))``: exact expected accuracy of each ``K``.
Accuracy = Callable[[ClusteredSamples, NDArray[np.int64]], NDArray[np.float64]]
#: ``combine(samples, rng) -> Vote``: the answer of live samples.
Combine = Callable[[Sequence[Completion], np.random.Generator | None], Vote]


def _draws_k(k: int) -> int:
    return k


@dataclass(frozen=True)
class Kind:
    """How ``K`` samples become one answer, offline and live.

    Attributes
    ----------
    name : str
        The ``KIND`` of action specs ``[ARM/]KIND@K``.
    summary : str
        One line for help texts and docs.
    accuracy : callable
        ``accuracy(pools, ks)``: expected accuracy of every ``K`` in ``ks`` on every query of
        one arm's pooled samples (:class:`~computealloc.estimation.kernels.ClusteredSamples`), exact
        over all draws without replacement; shape ``(n_queries, len(ks))``.
    needs : tuple of str
        Per-sample fields of the pools that must be finite (``("score",)`` for a verifier).
    combine : callable or None
        ``combine(samples, rng)``: the :class:`~computealloc.estimation.voting.Vote` of live
        samples; None for kinds that need what live samples lack.
    live_reason : str
        Why a kind without ``combine`` cannot run live.
    draws : callable
        Samples an action of ``K`` draws (its cost is that many samples' cost); ``K`` by
        default.
    """

    name: str
    summary: str
    accuracy: Accuracy
    needs: tuple[str, ...] = ()
    combine: Combine | None = None
    live_reason: str = ""
    draws: Callable[[int], int] = _draws_k


_KINDS: dict[str, Kind] = {}


def register(kind: Kind) -> Kind:
    """Add ``kind`` to the registry that specs, estimators and the runtime read; returns it."""
    if kind.name in _KINDS or not kind.name.isidentifier():
        raise ValueError(f"Kind name {kind.name!r} is taken or not an identifier.")
    _KINDS[kind.name] = kind
    return kind


def kind_names() -> tuple[str, ...]:
    """The registered kinds, in registration order."""
    return tuple(_KINDS)


def get_kind(name: str) -> Kind:
    """The registered kind ``name``.

    Raises
    ------
    ValueError
        Naming the kinds there are.
    """
    if name not in _KINDS:
        raise ValueError(f"Unknown action kind {name!r}; expected one of {', '.join(_KINDS)}.")
    return _KINDS[name]
