"""Exact accuracy of a majority vote that reuses probe samples.

A policy with probe features draws ``m`` samples of a query, looks at them, picks ``k`` and
draws ``k - m`` more; the vote is over all ``k``. Its accuracy on that query is the probability
that a correct answer wins the plurality of the ``m`` fixed probe answers plus ``k - m``
answers drawn without replacement from the query's pool, ties split uniformly at random:
:func:`computealloc.estimation.estimate.conditional_majority` of the probe and pool answer clusters.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from computealloc.estimation.actions import parse_action
from computealloc.estimation.estimate import cluster_frame, conditional_majority
from computealloc.estimation.table import OutcomeTable

__all__ = ["probe_table", "reuse_accuracy"]


def reuse_accuracy(
    samples: pd.DataFrame,
    query_ids: Sequence[str],
    ks: ArrayLike,
    *,
    probe: ArrayLike,
    pool: ArrayLike,
    golds: ArrayLike | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Exact accuracy of majority@k when the ``probe`` samples are reused in the vote.

    Query ``i`` has observed its probe samples (``m_i`` of them); majority@k votes over the
    probes plus ``k - m_i`` samples drawn without replacement from the query's ``pool``
    samples. For ``k <= m_i`` the vote is over the ``m_i`` probes alone (they are paid for).

    Parameters
    ----------
    samples : DataFrame
        One row per sample, a single model: ``query_id``, ``answer``, ``correct``.
    query_ids : sequence of str, length n_queries
        Rows of the result.
    ks : array-like of int, shape (n_actions,)
        Vote sizes ``k >= 1``.
    probe, pool : array-like of bool, shape (n_samples,)
        Disjoint masks of the probe samples and of the samples later draws come from.
    golds : array-like of shape (n_queries,), optional
        Gold answers of the queries (None where unknown); answer clusters are
        :func:`computealloc.estimation.estimate.cluster_samples`'s.

    Returns
    -------
    accuracy : ndarray of shape (n_queries, n_actions)
        Probability that the vote is correct; NaN where the pool is too small.
    votes : ndarray of shape (n_queries, n_actions), int
        Samples the action costs with the probes counted once: ``max(k, m_i)``.
    """
    probe_m, pool_m = np.asarray(probe, dtype=bool), np.asarray(pool, dtype=bool)
    if (probe_m & pool_m).any():
        raise ValueError("`probe` and `pool` must be disjoint sample masks.")
    used = probe_m | pool_m
    frame = samples.loc[used]
    row = pd.Index(list(query_ids)).get_indexer(frame["query_id"]).astype(np.int64)
    keep = row >= 0
    frame, row, is_probe = frame[keep], row[keep], probe_m[used][keep]
    n_q = len(query_ids)
    qids = np.asarray(list(query_ids), dtype=object)
    model = str(frame["model"].iloc[0]) if len(frame) else "default"
    gold = None if golds is None else np.asarray(golds, dtype=object).reshape(-1)
    clusters = cluster_frame(frame, row, n_q, qids, model, gold)
    slot, width = clusters.slot, clusters.others.shape[1] + 1
    counts = np.zeros((2, n_q, width), dtype=np.int64)
    votes = slot >= 0
    np.add.at(counts, (is_probe[votes].astype(np.int64), row[votes], slot[votes]), 1)
    free = np.bincount(row[~votes & ~is_probe], minlength=n_q)
    m = np.bincount(row[is_probe], minlength=n_q)
    k = np.atleast_1d(np.asarray(ks, dtype=np.int64))
    need = np.maximum(k[None, :] - m[:, None], 0)  # (N, K) draws per query and action
    draws = np.unique(need)
    correct = np.column_stack([np.ones(n_q, dtype=bool), clusters.others_correct])
    table = conditional_majority(counts[0], counts[1], correct, free, draws)
    accuracy = np.take_along_axis(table, np.searchsorted(draws, need), axis=1)
    return accuracy, np.maximum(k[None, :], m[:, None])


def probe_table(
    samples: pd.DataFrame,
    table: OutcomeTable,
    *,
    probe: ArrayLike,
    pool: ArrayLike,
    golds: ArrayLike | None = None,
) -> OutcomeTable:
    """``table`` re-read for a policy that looks at ``probe`` samples and reuses them in the vote.

    Accuracy is :func:`reuse_accuracy` of each majority@k column; cost is the column's cost
    scaled to the ``max(k, m_i)`` samples actually drawn (probes charged once).

    Parameters
    ----------
    samples : DataFrame
        One row per sample of a single model (``SampleLog.samples``).
    table : OutcomeTable
        Majority@k columns for the queries of interest (``table.actions`` parse to majority).
    probe, pool : array-like of bool, shape (n_samples,)
    golds : array-like of shape (n_queries,), optional
        As in :func:`reuse_accuracy` (rows follow ``table.query_ids``).
    """
    ks = np.array([parse_action(a).k for a in table.actions], dtype=np.float64)
    p, votes = reuse_accuracy(
        samples, table.query_ids, ks.astype(np.int64), probe=probe, pool=pool, golds=golds
    )
    return OutcomeTable(p, table.C * votes / ks, table.actions, table.query_ids, table.cost_unit)
