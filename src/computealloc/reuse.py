"""Exact accuracy of a majority vote that reuses probe samples.

A policy with probe features draws ``m`` samples of a query, looks at them, picks ``k`` and
draws ``k - m`` more; the vote is over all ``k``. Its accuracy on that query is the probability
that a correct answer wins the plurality of the ``m`` fixed probe answers plus ``k - m``
answers drawn without replacement from the query's pool, ties split uniformly at random.

:func:`conditional_majority` computes that probability exactly with a generating function over
answer clusters; with no fixed votes it is the ordinary exact majority@k.

Notes
-----
For a target cluster ``c`` whose final count is ``t``, every other cluster ``j`` must end at
most at ``t``; ``r`` clusters ending exactly at ``t`` split the win ``1 / (1 + r)``. Writing
``1 / (1 + r) = int_0^1 u^r du``, the win probability is

    sum_x C(n_c, x) int_0^1 [z^(D - x)] prod_{j != c} (A_j(z) + u B_j(z)) du / C(M, D),

with ``A_j`` the draws that keep ``j`` below ``t`` and ``B_j`` those that tie it. The integrand
is a polynomial in ``u`` of degree below the number of clusters, so Gauss-Legendre quadrature
with enough nodes integrates it exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy.special import comb

from computealloc.actions import parse_action
from computealloc.table import OutcomeTable

__all__ = ["conditional_majority", "reuse_accuracy"]


def _as_counts(name: str, value: ArrayLike, ndim: int) -> NDArray[np.int64]:
    arr = np.asarray(value)
    if (
        arr.ndim != ndim
        or (arr.size and (arr < 0).any())
        or not np.issubdtype(arr.dtype, np.integer)
    ):
        raise ValueError(
            f"`{name}` must be a {ndim}-D array of non-negative integer counts. "
            f"Got dtype {arr.dtype} and shape {arr.shape}."
        )
    return arr.astype(np.int64)


def _cm_iv(
    pool: ArrayLike, fixed: ArrayLike, correct: ArrayLike, free: ArrayLike, draws: ArrayLike
) -> tuple[
    NDArray[np.int64], NDArray[np.int64], NDArray[np.bool_], NDArray[np.int64], NDArray[np.int64]
]:
    n = _as_counts("pool", pool, 2)
    f = _as_counts("fixed", fixed, 2)
    ok = np.asarray(correct)
    if f.shape != n.shape or ok.shape != n.shape or ok.dtype != bool:
        raise ValueError(
            "`pool`, `fixed` and `correct` (bool) must have the same shape (n_rows, n_clusters). "
            f"Got {n.shape}, {f.shape} and {ok.shape}."
        )
    z = np.broadcast_to(_as_counts("free", np.atleast_1d(free), 1), (n.shape[0],))
    d = _as_counts("draws", np.atleast_1d(draws), 1)
    return n, f, ok, z.astype(np.int64), d


def _poly_mul(acc: NDArray[np.float64], factor: NDArray[np.float64]) -> NDArray[np.float64]:
    """Product of polynomials along the last axis (coefficients), truncated at acc's degree."""
    deg = acc.shape[-1]
    out = acc * factor[..., :1]
    for x in range(1, deg):
        out[..., x:] += acc[..., : deg - x] * factor[..., x : x + 1]
    return out


def _other_clusters(
    n: NDArray[np.int64],
    f: NDArray[np.int64],
    target: NDArray[np.int64],
    t: NDArray[np.int64],
    u: NDArray[np.float64],
    binom: NDArray[np.float64],
) -> NDArray[np.float64]:
    """prod_{j != c} (A_j(z) + u B_j(z)) per (pair, x_c, node), coefficients in z: (R, X, Q, X).

    ``n`` and ``f`` are the pairs' rows with the active clusters first and the pairs sorted by
    their number of active clusters, decreasing, so cluster slot ``j`` is a prefix of pairs.
    """
    deg = t.shape[1]
    xs = np.arange(deg)
    acc = np.zeros((n.shape[0], deg, u.size, deg))
    acc[..., 0] = 1.0
    n_active = ((n > 0) | (f > 0)).sum(axis=1)
    for j in range(int(n_active.max(initial=0))):
        m = int(np.count_nonzero(n_active > j))
        nj, fj = n[:m, j], f[:m, j]
        coef = binom[nj][:, None, None, :deg]
        final = (fj[:, None] + xs[None, :])[:, None, None, :]
        end = t[:m, :, None, None]
        factor = coef * (final < end) + u[None, None, :, None] * (coef * (final == end))
        own = target[:m] == j
        factor[own] = 0.0
        factor[own, ..., 0] = 1.0
        acc[:m] = _poly_mul(acc[:m], factor)
    return acc


def _compact(
    n: NDArray[np.int64], f: NDArray[np.int64], ok: NDArray[np.bool_]
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.bool_]]:
    """Reorder each row's clusters so the active ones (pool or fixed votes) come first."""
    order = np.argsort(-(n + f), axis=1, kind="stable")
    return (
        np.take_along_axis(n, order, axis=1),
        np.take_along_axis(f, order, axis=1),
        np.take_along_axis(ok, order, axis=1),
    )


def conditional_majority(
    pool: ArrayLike,
    fixed: ArrayLike,
    correct: ArrayLike,
    free: ArrayLike,
    draws: ArrayLike,
) -> NDArray[np.float64]:
    """Probability that a correct answer wins a plurality vote of fixed plus drawn answers.

    Each row is one query. Its vote holds the ``fixed`` answers (already observed) plus ``D``
    answers drawn uniformly without replacement from a pool of ``pool.sum() + free`` samples.
    The plurality answer wins, ties split uniformly at random; samples without an answer
    (``free``) take no part in the vote; a vote without any answer is wrong.

    Parameters
    ----------
    pool : array-like of shape (n_rows, n_clusters), int
        Pool samples giving each answer cluster (0 for padding).
    fixed : array-like of shape (n_rows, n_clusters), int
        Fixed votes per cluster (probe answers that are reused).
    correct : array-like of shape (n_rows, n_clusters), bool
        Whether each cluster's answer is correct.
    free : int or array-like of shape (n_rows,)
        Pool samples without an answer.
    draws : int or array-like of shape (n_draws,)
        Numbers ``D`` of answers drawn from the pool, each >= 0.

    Returns
    -------
    ndarray of shape (n_rows, n_draws)
        Exact probability that the vote is correct; NaN where ``D`` exceeds the pool.

    Examples
    --------
    >>> conditional_majority([[2, 2]], [[1, 0]], [[True, False]], 0, [0, 1, 2])
    array([[1.        , 0.75      , 0.83333333]])
    """
    n, f, ok, z, d = _cm_iv(pool, fixed, correct, free, draws)
    size = n.sum(axis=1) + z
    out = np.zeros((n.shape[0], d.size))
    n, f, ok = _compact(n, f, ok)
    rows, target = np.nonzero(ok & ((n > 0) | (f > 0)))
    if rows.size:
        by_width = np.argsort(-((n[rows] > 0) | (f[rows] > 0)).sum(axis=1), kind="stable")
        rows, target = rows[by_width], target[by_width]
        dmax = int(d.max())
        xs = np.arange(dmax + 1)
        binom = comb(np.arange(int(max(size.max(), dmax)) + 1)[:, None], xs[None, :])
        votes = int(f.sum(axis=1).max()) + dmax
        node, weight = np.polynomial.legendre.leggauss(min(n.shape[1] - 1, votes) // 2 + 1)
        t = f[rows, target][:, None] + xs[None, :]
        acc = _other_clusters(n[rows], f[rows], target, t, (node + 1.0) / 2.0, binom)
        acc = _poly_mul(acc, np.broadcast_to(binom[z[rows]][:, None, None, :], acc.shape))
        coeff = np.einsum("rxqe,q->rxe", acc, weight / 2.0)  # integrated over the tie marker
        rest = d[None, :] - xs[:, None]  # (X, n_draws): draws left for the other clusters
        picked = coeff[:, xs[:, None], np.clip(rest, 0, dmax)]  # (R, X, n_draws)
        valid = (rest[None] >= 0) & (t[:, :, None] >= 1)
        ways = (picked * binom[n[rows, target]][:, :, None] * valid).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            np.add.at(out, rows, ways / comb(size[rows][:, None], d[None, :]))
    return np.where(d[None, :] <= size[:, None], np.clip(out, 0.0, 1.0), np.nan)


def _answer_slots(frame: pd.DataFrame, row: NDArray[np.int64]) -> tuple[NDArray[np.int64], int]:
    """Cluster slot of each sample (0: correct, 1..: wrong answers, -1: abstains) and width.

    The rules are :func:`computealloc.estimate.estimate`'s: a sample is correct when it is
    labelled correct or its answer string is labelled correct elsewhere in the query; wrong
    answers cluster by exact string; a wrong sample without an answer abstains.
    """
    answered = frame["answer"].notna().to_numpy()
    label = frame["correct"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    key = pd.MultiIndex.from_arrays([row, frame["answer"].astype(object).to_numpy()])
    group = np.asarray(pd.factorize(key)[0], dtype=np.int64)
    labelled = np.bincount(group, weights=label & answered, minlength=group.max(initial=0) + 1)
    correct = label | (answered & (labelled[group] > 0))
    wrong = answered & ~correct
    slot = np.where(correct, 0, -1).astype(np.int64)
    base = int(group.max(initial=0)) + 1
    keys, inverse = np.unique(row[wrong] * base + group[wrong], return_inverse=True)
    key_row = keys // base
    rank = np.arange(keys.size) - np.searchsorted(key_row, key_row, side="left") + 1
    slot[wrong] = rank[inverse]
    return slot, int(slot.max(initial=0)) + 1


def reuse_accuracy(
    samples: pd.DataFrame,
    query_ids: Sequence[str],
    ks: ArrayLike,
    *,
    probe: ArrayLike,
    pool: ArrayLike,
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
    slot, width = _answer_slots(frame, row)
    n_q = len(query_ids)
    counts = np.zeros((2, n_q, width), dtype=np.int64)
    votes = slot >= 0
    np.add.at(counts, (is_probe[votes].astype(np.int64), row[votes], slot[votes]), 1)
    free = np.bincount(row[~votes & ~is_probe], minlength=n_q)
    m = np.bincount(row[is_probe], minlength=n_q)
    k = np.atleast_1d(np.asarray(ks, dtype=np.int64))
    need = np.maximum(k[None, :] - m[:, None], 0)  # (N, K) draws per query and action
    draws = np.unique(need)
    correct = np.zeros((n_q, width), dtype=bool)
    correct[:, 0] = True
    table = conditional_majority(counts[0], counts[1], correct, free, draws)
    accuracy = np.take_along_axis(table, np.searchsorted(draws, need), axis=1)
    return accuracy, np.maximum(k[None, :], m[:, None])


def probe_table(
    samples: pd.DataFrame, table: OutcomeTable, *, probe: ArrayLike, pool: ArrayLike
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
        As in :func:`reuse_accuracy`.
    """
    ks = np.array([parse_action(a).k for a in table.actions], dtype=np.float64)
    p, votes = reuse_accuracy(samples, table.query_ids, ks.astype(np.int64), probe=probe, pool=pool)
    return OutcomeTable(p, table.C * votes / ks, table.actions, table.query_ids, table.cost_unit)
