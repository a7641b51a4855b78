"""Seeded splits for honest evaluation: queries into train / calibration / test, samples in halves.

Two independent splits make an evaluation honest by construction (DESIGN, "Evaluation
protocol"):

- :func:`split_queries` puts every query in exactly one of train (policy fitting), calibration
  (the dual price) and test (reported numbers);
- :func:`split_samples` splits each query's samples into two disjoint halves: half A feeds every
  decision (oracle labels, training, calibration, probe features), half B every reported number.

Each purpose draws from its own stream (``default_rng((seed, purpose))``), so changing one split
never moves another.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Integral

import numpy as np
import pandas as pd
from numpy.typing import NDArray

__all__ = ["QuerySplit", "seeded_rng", "split_queries", "split_samples"]

#: Purposes of the independent random streams derived from one seed.
STREAMS: dict[str, int] = {"queries": 0, "samples": 1}


def seeded_rng(seed: int, purpose: str) -> np.random.Generator:
    """The random stream of ``purpose`` (a key of :data:`STREAMS`) for ``seed``."""
    return np.random.default_rng((int(seed), STREAMS[purpose]))


@dataclass(frozen=True)
class QuerySplit:
    """Disjoint query indices for fitting, calibrating and testing a policy.

    Attributes
    ----------
    train, calibration, test : ndarray of shape (n_part,), int64
        Sorted row indices into the query axis; together they cover ``range(n_queries)`` once.
    seed : int
        The seed that drew the split.
    """

    train: NDArray[np.int64]
    calibration: NDArray[np.int64]
    test: NDArray[np.int64]
    seed: int


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    values = tuple(float(f) for f in fractions)
    if len(values) != 3 or min(values) <= 0 or abs(sum(values) - 1.0) > 1e-9:
        raise ValueError(
            "The 'fractions' parameter of split_queries must be three positive floats "
            f"(train, calibration, test) summing to 1. Got {tuple(fractions)!r} instead."
        )
    return values[0], values[1], values[2]


def split_queries(
    n_queries: int, *, fractions: Sequence[float] = (0.6, 0.2, 0.2), seed: int = 0
) -> QuerySplit:
    """Split ``n_queries`` queries at random into train, calibration and test.

    Parameters
    ----------
    n_queries : int
        Number of queries; at least 3 so that every part is non-empty.
    fractions : sequence of 3 floats
        Shares of (train, calibration, test), positive and summing to 1. Part sizes are
        rounded; the test part takes the remainder.
    seed : int
        Seed of the permutation.

    Returns
    -------
    QuerySplit

    Examples
    --------
    >>> s = split_queries(10, seed=0)
    >>> len(s.train), len(s.calibration), len(s.test)
    (6, 2, 2)
    """
    if isinstance(n_queries, bool) or not isinstance(n_queries, Integral) or n_queries < 3:
        raise ValueError(
            "The 'n_queries' parameter of split_queries must be an int in [3, inf). "
            f"Got {n_queries!r} instead."
        )
    f_train, f_cal, _ = _check_fractions(fractions)
    n = int(n_queries)
    n_train = min(max(round(f_train * n), 1), n - 2)
    n_cal = min(max(round(f_cal * n), 1), n - n_train - 1)
    perm = seeded_rng(seed, "queries").permutation(n)
    parts = np.split(perm, [n_train, n_train + n_cal])
    train, cal, test = (np.sort(p).astype(np.int64) for p in parts)
    return QuerySplit(train, cal, test, int(seed))


def split_samples(samples: pd.DataFrame, *, seed: int = 0) -> NDArray[np.bool_]:
    """Mask of half A in a seeded split of each (model, query)'s samples into two halves.

    Parameters
    ----------
    samples : DataFrame
        One row per sample with columns ``query_id`` and ``model`` (a SampleLog's ``samples``).
    seed : int
        Seed of the shuffle.

    Returns
    -------
    mask : ndarray of shape (n_samples,), bool
        True for the ``floor(n / 2)`` samples of each group that form half A (decisions);
        False for the ``ceil(n / 2)`` of half B (reported numbers). Where ``samples`` has
        a ``split_group`` column (arms that read the same traces, :mod:`computealloc.
        checkpoints`), the traces ``(split_group, query_id, sample_idx)`` are split instead,
        and every row of a trace falls in its half.

    Examples
    --------
    >>> df = pd.DataFrame({"query_id": ["q"] * 4, "model": ["m"] * 4})
    >>> int(split_samples(df, seed=0).sum())
    2
    """
    if "split_group" in samples.columns and "sample_idx" in samples.columns:
        # arms that share samples (a checkpoint log's cap@T arms read one trace each): split
        # the traces of each (split_group, query), and give a trace's rows one half
        traces = samples[["split_group", "query_id", "sample_idx"]].astype(str)
        codes, found = pd.MultiIndex.from_frame(traces).factorize()
        unique = pd.MultiIndex.from_tuples(list(found))
        groups = pd.DataFrame(
            {"model": unique.get_level_values(0), "query_id": unique.get_level_values(1)}
        )
        return split_samples(groups, seed=seed)[np.asarray(codes, dtype=np.int64)]
    missing = {"query_id", "model"} - set(samples.columns)
    if missing:
        raise ValueError(
            f"`samples` must have the columns 'query_id' and 'model'. Missing {sorted(missing)}."
        )
    codes = pd.MultiIndex.from_frame(samples[["model", "query_id"]].astype(str)).factorize()[0]
    codes = np.asarray(codes, dtype=np.int64)
    keys = seeded_rng(seed, "samples").random(len(codes))
    order = np.lexsort((keys, codes))
    sizes = np.bincount(codes)
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    rank = np.empty(len(codes), dtype=np.int64)
    rank[order] = np.arange(len(codes)) - starts[codes[order]]
    return np.asarray(rank < sizes[codes] // 2)
