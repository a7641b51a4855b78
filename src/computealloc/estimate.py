"""SampleLog -> OutcomeTable: exact expected accuracy and cost of every action on every query.

Each (model, query) pair holds a pool of ``n`` sampled responses. An action draws ``K`` of them
uniformly without replacement and combines them (plurality vote, best score, or any-correct);
its expected accuracy is computed exactly over all ``C(n, K)`` draws, not by Monte Carlo.

The array kernels (:func:`majority_accuracy`, :func:`pass_at_k`, :func:`best_of_accuracy`) work
on padded per-query arrays and can be used on their own; :func:`estimate` builds those arrays
from a :class:`~computealloc.samples.SampleLog`. :func:`conditional_majority` is the majority
vote with fixed (already observed) answers added, as when probe samples are reused
(:mod:`computealloc.reuse`); both majority kernels share one generating-function count.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Literal

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import ArrayLike, NDArray
from scipy.special import comb

from computealloc.actions import Action, parse_actions
from computealloc.grading import answer_keys
from computealloc.samples import SampleLog
from computealloc.table import OutcomeTable
from computealloc.units import CostUnit, PriceLike, Pricing, pricing_of

__all__ = [
    "MAX_POOL_SIZE",
    "ClusteredSamples",
    "best_of_accuracy",
    "cluster_samples",
    "conditional_majority",
    "default_actions",
    "estimate",
    "majority_accuracy",
    "pass_at_k",
]

MAX_POOL_SIZE = 1024
"""Most samples one (model, query) pool may hold: ``C(1024, 512)`` is the largest binomial
that float64 holds, and every kernel works with binomial counts."""

_ON_SHORT = ("raise", "drop")
_PROTOCOLS = ("in-sample", "held-out")

Int = NDArray[np.int64]
Float = NDArray[np.float64]


# --------------------------------------------------------------------------- kernels


@lru_cache(maxsize=4)
def _binom_table(size: int) -> Float:
    """``table[a, b] = C(a, b)`` (0 where ``b > a``) for ``0 <= a, b < size``, read-only."""
    i = np.arange(size)
    table = np.asarray(comb(i[:, None], i[None, :]), dtype=np.float64)
    table.setflags(write=False)
    return table


def _binomials(n_max: int) -> Float:
    """A binomial table covering ``0..n_max``; sizes are rounded up so the cache is reused."""
    if n_max > MAX_POOL_SIZE:
        raise ValueError(f"Pools of at most {MAX_POOL_SIZE} samples are supported. Got {n_max}.")
    return _binom_table(max(64, 1 << (max(int(n_max), 1) - 1).bit_length()) + 1)


@lru_cache(maxsize=64)
def _gauss_legendre01(q: int) -> tuple[Float, Float]:
    """Gauss-Legendre nodes and weights on [0, 1]; exact for polynomials of degree < 2q."""
    x, w = np.polynomial.legendre.leggauss(q)
    return (x + 1.0) / 2.0, w / 2.0


def _convolve_truncated(poly: Float, counts: Float, tie: Int, w: Float) -> Float:
    """Multiply ``poly`` (m, q, d+1) by ``sum_{y<tie} C(n, y) z^y + w C(n, tie) z^tie`` to degree d.

    ``counts`` is (m, L) with the cluster's binomials ``C(n, y)`` for ``y < L``; ``tie`` (m,)
    the cluster's draws that tie it with gold (negative: it already beats gold, the factor is
    0); ``w`` (q,) holds the tie markers at which the product is evaluated. The convolution is
    one ``einsum`` over a strided (no-copy) window view of the zero-padded ``poly``.
    """
    deg, width = poly.shape[2] - 1, counts.shape[1]
    upto = np.where(np.arange(width) <= tie[:, None], counts, 0.0)
    coef = np.repeat(upto[:, None, :], len(w), axis=1)
    tied = np.flatnonzero((tie >= 0) & (tie < width))
    coef[tied, :, tie[tied]] *= w
    padded = np.zeros((*poly.shape[:2], deg + width))
    padded[:, :, width - 1 :] = poly
    window = sliding_window_view(padded, width, axis=2)[:, :, : deg + 1, ::-1]
    return np.einsum("iqsx,iqx->iqs", window, coef)


def _wins_given_t(
    t: Int, deg: int, oth: Int, fix: Int, rest: Int, n_big: int, table: Float
) -> Float:
    """Tie-weighted count of the other ``s = 0..deg`` drawn samples letting gold win with ``t``.

    ``t`` (m,) is gold's final vote count per row. ``oth`` and ``fix`` (m, M) hold the other
    clusters' pool samples and fixed votes, in decreasing order of their sum (rows with the
    most clusters that can reach ``t`` first, at most ``n_big`` of them); ``rest`` (m,) the
    abstaining samples. Returns (m, deg+1).
    """
    tie = t[:, None] - fix
    small = oth < tie
    r_t = rest + np.where(small, oth, 0).sum(axis=1)
    nodes, weights = _gauss_legendre01((n_big + 2) // 2)
    poly = np.repeat(table[r_t, None, : deg + 1], len(nodes), axis=1)
    width = min(int(t.max(initial=0)), deg) + 1
    for j in range(n_big):
        m = int(np.count_nonzero(~small[:, j]))
        poly[:m] = _convolve_truncated(poly[:m], table[oth[:m, j], :width], tie[:m, j], nodes)
    return np.asarray(np.einsum("iqs,q->is", poly, weights))


def _majority_numerators(
    gold: Int, held: Int, others: Int, fixed: Int, rest: Int, d_max: int, table: Float
) -> Float:
    """Weighted count of the D-draws the gold cluster wins, for D = 0..d_max, shape (N, d_max+1).

    Each row's vote holds fixed votes (``held`` for gold, ``fixed`` (N, M) for the other
    clusters) plus ``D`` samples drawn from its pool (``gold`` gold samples, ``others`` (N, M)
    per other cluster, ``rest`` abstaining); ``others + fixed`` must be sorted in decreasing
    order within each row.

    With ``x`` gold samples drawn gold ends at ``t = held + x`` votes and wins when ``t >= 1``
    and no other cluster ends above ``t``; with ``r`` other clusters tied at ``t`` it wins with
    probability ``1/(1+r)`` = ``int_0^1 w^r dw``. For fixed ``x`` the count of such draws of
    size ``x+s`` is the coefficient of ``z^s`` in ``C(n_g, x) (1+z)^{R_t} prod_j f_j(z, w)``
    integrated over ``w``, where ``f_j = sum_{y<t_j} C(n_j, y) z^y + w C(n_j, t_j) z^{t_j}``
    with ``t_j = t - fixed_j`` runs over the clusters that can reach ``t`` (``n_j + fixed_j >=
    t``; ``f_j = 0`` when ``t_j < 0``) and ``R_t`` counts the abstaining samples and the
    smaller clusters. The integrand has degree <= #clusters in ``w``, so a Gauss-Legendre rule
    integrates it exactly. Per ``x`` the rows are sorted by their number of clusters that can
    reach ``t``, so that each cluster slot is a prefix, and rows needing the same number of
    nodes are processed together.
    """
    num = np.zeros((gold.shape[0], d_max + 1))
    reach = others + fixed
    by_gold = np.argsort(-gold, kind="stable")
    n_rows_by_x = np.searchsorted(-gold[by_gold], -np.arange(d_max + 1), side="right")
    for x in range(min(int(gold.max(initial=0)), d_max) + 1):
        rows = by_gold[: n_rows_by_x[x]]
        rows = rows[held[rows] + x >= 1]
        t = held[rows] + x
        n_big = (reach[rows] >= t[:, None]).sum(axis=1)
        order = np.argsort(-n_big, kind="stable")
        rows, t, n_big = rows[order], t[order], n_big[order]
        n_nodes = (n_big + 2) // 2
        bounds = np.flatnonzero(np.diff(n_nodes, prepend=-1, append=-1))
        for lo, hi in itertools.pairwise(bounds):
            seg = rows[lo:hi]
            wins = _wins_given_t(
                t[lo:hi], d_max - x, others[seg], fixed[seg], rest[seg], int(n_big[lo]), table
            )
            num[seg, x:] += table[gold[seg], x, None] * wins
    return num


def majority_accuracy(
    gold: ArrayLike,
    others: ArrayLike,
    abstain: ArrayLike,
    ks: ArrayLike,
    *,
    others_correct: ArrayLike | None = None,
) -> Float:
    """Exact expected accuracy of plurality voting over ``K`` samples drawn without replacement.

    Each query's pool of ``n = gold + others.sum() + abstain`` samples is split into the
    correct answer cluster (``gold`` samples), wrong answer clusters (``others``) and samples
    without an answer (``abstain``). ``K`` samples are drawn uniformly without replacement;
    the answer with the most votes among them wins, ties are broken uniformly at random, and
    abstaining samples do not vote (if all ``K`` abstain the result is wrong).

    Parameters
    ----------
    gold : array-like of int, shape (n_queries,)
        Size of the correct cluster (0 when no sample is correct).
    others : array-like of int, shape (n_queries, n_clusters)
        Sizes of the wrong answer clusters, zero-padded; the order within a row is irrelevant.
    abstain : array-like of int, shape (n_queries,)
        Number of samples without an answer.
    ks : int or array-like of int, shape (n_ks,)
        Numbers of samples drawn, each >= 1.
    others_correct : array-like of bool, shape (n_queries, n_clusters), optional
        Which ``others`` clusters are correct answers too (several distinct answers can be
        correct, e.g. any valid expression in Game of 24); none by default.

    Returns
    -------
    ndarray of shape (n_queries, n_ks)
        Probability that the vote is correct (that its winner is a correct answer); NaN
        where ``K`` exceeds the query's ``n``.

    See Also
    --------
    conditional_majority : the same vote with fixed (already observed) answers added.

    Notes
    -----
    All ``K`` are computed in one pass of generating-function products over the clusters
    (see ``_majority_numerators``) with non-negative float64 terms only, so nothing cancels:
    against exact rational arithmetic the relative error is about 1e-15 for pools of 64
    samples and stays below 1e-12 up to ``MAX_POOL_SIZE`` (1024) samples, the largest pool
    whose binomial counts float64 holds.

    Examples
    --------
    >>> majority_accuracy([2], [[1]], [0], [1, 2, 3])  # pool {A, A, B}, A correct
    array([[0.66666667, 0.66666667, 1.        ]])
    """
    g = np.asarray(gold, dtype=np.int64).reshape(-1)
    raw = np.asarray(others, dtype=np.int64).reshape(g.shape[0], -1)
    rest = np.asarray(abstain, dtype=np.int64).reshape(-1)
    k = np.atleast_1d(np.asarray(ks, dtype=np.int64))
    _check_k(k, "ks", "majority_accuracy")
    several = np.zeros(raw.shape, dtype=bool)
    if others_correct is not None:
        several = np.asarray(others_correct, dtype=bool).reshape(raw.shape) & (raw > 0)
    multi = several.any(axis=1)
    if multi.any():
        out = np.empty((g.shape[0], k.size))
        single = ~multi
        if single.any():
            out[single] = majority_accuracy(g[single], raw[single], rest[single], k)
        pool = np.column_stack([g[multi], raw[multi]])
        ok = np.column_stack([np.ones(int(multi.sum()), dtype=bool), several[multi]])
        out[multi] = conditional_majority(pool, np.zeros_like(pool), ok, rest[multi], k)
        return out
    oth = -np.sort(-raw, axis=1)
    n = g + oth.sum(axis=1) + rest
    k_max = int(k.max())
    table = _binomials(max(int(n.max(initial=0)), k_max))
    num = _majority_numerators(g, np.zeros_like(g), oth, np.zeros_like(oth), rest, k_max, table)
    return _share(num, n, k, table)


def _share(num: Float, n: Int, d: Int, table: Float) -> Float:
    """``num[:, d] / C(n, d)``, (N, n_d), clipped to [0, 1]; NaN where ``d > n``."""
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = num[:, d] / table[n[:, None], d[None, :]]
    return np.where(d[None, :] <= n[:, None], np.clip(acc, 0.0, 1.0), np.nan)


def _as_counts(name: str, value: ArrayLike, ndim: int) -> Int:
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
) -> tuple[Int, Int, NDArray[np.bool_], Int, Int]:
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


def conditional_majority(
    pool: ArrayLike,
    fixed: ArrayLike,
    correct: ArrayLike,
    free: ArrayLike,
    draws: ArrayLike,
) -> Float:
    """Probability that a correct answer wins a plurality vote of fixed plus drawn answers.

    Each row is one query. Its vote holds the ``fixed`` answers (already observed) plus ``D``
    answers drawn uniformly without replacement from a pool of ``pool.sum() + free`` samples.
    The plurality answer wins, ties split uniformly at random; samples without an answer
    (``free``) take no part in the vote; a vote without any answer is wrong. With no fixed
    votes and one correct cluster this is :func:`majority_accuracy`.

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

    Notes
    -----
    The win probabilities of the correct clusters add up: each correct cluster in turn is the
    gold cluster of ``_majority_numerators`` against all the others.

    Examples
    --------
    >>> conditional_majority([[2, 2]], [[1, 0]], [[True, False]], 0, [0, 1, 2])
    array([[1.        , 0.75      , 0.83333333]])
    """
    n, f, ok, z, d = _cm_iv(pool, fixed, correct, free, draws)
    size = n.sum(axis=1) + z
    d_max = int(d.max())
    table = _binomials(max(int(size.max(initial=0)), d_max))
    rows, target = np.nonzero(ok & (n + f > 0))
    pair = np.arange(rows.size)
    oth, fix = n[rows], f[rows]
    gold, held = oth[pair, target], fix[pair, target]
    oth[pair, target] = fix[pair, target] = 0
    order = np.argsort(-(oth + fix), axis=1, kind="stable")
    oth, fix = np.take_along_axis(oth, order, axis=1), np.take_along_axis(fix, order, axis=1)
    num = np.zeros((n.shape[0], d_max + 1))
    np.add.at(num, rows, _majority_numerators(gold, held, oth, fix, z[rows], d_max, table))
    return _share(num, size, d, table)


def _check_k(k: Int, name: str, where: str) -> None:
    """Sample counts must be positive: ``k`` indexes binomial tables."""
    if k.size == 0 or (k < 1).any():
        raise ValueError(
            f"The {name!r} parameter of {where} must hold ints in [1, inf). Got {k.tolist()!r} "
            "instead."
        )


def _none_drawn(n: Int, top: Int, k: int, table: Float) -> Float:
    """Probability that none of ``top`` given samples is among ``k`` drawn from ``n``.

    NaN where ``k > n`` (no draw exists).
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(table[n - top, k] / table[n, k])


def pass_at_k(n: ArrayLike, c: ArrayLike, k: int) -> Float:
    """Probability that at least one of ``k`` samples drawn without replacement is correct.

    ``pass@k = 1 - C(n - c, k) / C(n, k)`` for a pool of ``n`` samples of which ``c`` are
    correct.

    Parameters
    ----------
    n : array-like of int, shape (n_queries,)
        Pool sizes.
    c : array-like of int, shape (n_queries,)
        Numbers of correct samples, ``0 <= c <= n``.
    k : int
        Samples drawn, ``1 <= k``.

    Returns
    -------
    ndarray of shape (n_queries,)
        pass@k; NaN where ``k > n``.

    Examples
    --------
    >>> pass_at_k([4, 4], [1, 0], 2)
    array([0.5, 0. ])
    """
    _check_k(np.atleast_1d(np.asarray(k, dtype=np.int64)), "k", "pass_at_k")
    n_ = np.asarray(n, dtype=np.int64).reshape(-1)
    c_ = np.asarray(c, dtype=np.int64).reshape(-1)
    table = _binomials(max(int(n_.max(initial=0)), k))
    return np.where(k <= n_, 1.0 - _none_drawn(n_, c_, k, table), np.nan)


def best_of_accuracy(scores: ArrayLike, correct: ArrayLike, k: int) -> Float:
    """Expected correctness of the highest-scored of ``k`` samples drawn without replacement.

    Among the drawn samples the one with the highest score is returned; when several share the
    top score, one of them is picked uniformly at random. With the distinct scores of a pool
    in decreasing order, ``a_l`` samples above level ``l`` and ``m_l`` at it, the top drawn
    score is level ``l`` with probability ``h(a_l) - h(a_l + m_l)``,
    ``h(a) = C(n - a, k) / C(n, k)``, and the winner is then uniform over level ``l``.

    Parameters
    ----------
    scores : array-like of float, shape (n_queries, n_slots)
        Finite scores; NaN marks an empty slot (pools of different sizes are NaN-padded).
    correct : array-like of bool, shape (n_queries, n_slots)
        Correctness of each sample (ignored in empty slots).
    k : int
        Samples drawn, ``1 <= k``.

    Returns
    -------
    ndarray of shape (n_queries,)
        Expected accuracy; NaN where ``k`` exceeds the query's number of samples.

    Examples
    --------
    >>> best_of_accuracy([[0.9, 0.9, 0.1]], [[True, False, True]], 1)
    array([0.66666667])
    >>> best_of_accuracy([[0.9, 0.9, 0.1]], [[True, False, True]], 3)
    array([0.5])
    """
    _check_k(np.atleast_1d(np.asarray(k, dtype=np.int64)), "k", "best_of_accuracy")
    s = np.asarray(scores, dtype=np.float64)
    s = s.reshape(s.shape[0] if s.ndim else 1, -1)
    ok = np.asarray(correct, dtype=bool).reshape(s.shape)
    order = np.argsort(-s, axis=1, kind="stable")
    s = np.take_along_axis(s, order, axis=1)
    ok = np.take_along_axis(ok, order, axis=1)
    valid = ~np.isnan(s)
    n = valid.sum(axis=1)
    width = s.shape[1]
    pos = np.broadcast_to(np.arange(width), s.shape)
    starts = np.ones(s.shape, dtype=bool)
    starts[:, 1:] = s[:, 1:] != s[:, :-1]
    ends = np.ones(s.shape, dtype=bool)
    ends[:, :-1] = starts[:, 1:]
    above = np.maximum.accumulate(np.where(starts, pos, 0), axis=1)
    last = np.minimum.accumulate(np.where(ends, pos, width)[:, ::-1], axis=1)[:, ::-1]
    tied = last - above + 1
    table = _binomials(max(width, k))
    nn = n[:, None]
    top, through = np.minimum(above, nn), np.minimum(above + tied, nn)
    win = (_none_drawn(nn, top, k, table) - _none_drawn(nn, through, k, table)) / tied
    acc = np.where(valid & ok, win, 0.0).sum(axis=1)
    return np.where(k <= n, np.clip(acc, 0.0, 1.0), np.nan)


# --------------------------------------------------------------------------- SampleLog side


@dataclass(frozen=True)
class ClusteredSamples:
    """One model's samples as per-query arrays (rows follow the table's query ids).

    ``gold``, ``abstain``, ``n`` are (N,): ``gold`` is the size of the query's main correct
    cluster (the answer equal to the gold, else the largest correct one); ``others`` (N, M)
    the sizes of the query's other answer clusters, largest first, and ``others_correct``
    (N, M) which of them are correct (several answers can be correct, as in Game of 24).
    ``row`` (S,) is each sample's query row, ``slot`` (S,) its cluster (0: the main correct
    cluster, ``1 + j``: ``others[:, j]``, -1: abstains), ``correct`` (S,) its resolved
    correctness, ``score`` (S,) its column and ``cost`` (S,) its cost (NaN when no costs
    were given).
    """

    model: str
    n: Int
    gold: Int
    others: Int
    abstain: Int
    row: Int
    correct: NDArray[np.bool_]
    score: Float
    cost: Float
    others_correct: NDArray[np.bool_]
    slot: Int


def _name(qids: NDArray[np.object_], row: int, model: str) -> str:
    return f"query {qids[row]!r} (model {model!r})"


def _resolve_correct(
    frame: pd.DataFrame, row: Int, qids: NDArray[np.object_], model: str
) -> NDArray[np.bool_]:
    """Correctness per sample.

    An answer string is correct when any sample giving it (in the same query) is labelled
    correct; samples labelled correct are correct even without an answer (label-only
    sources). An answer string labelled both correct and wrong, or one with no label at all,
    is an error.
    """
    answered = frame["answer"].notna().to_numpy()
    label = frame["correct"].astype("boolean")
    is_true = label.fillna(False).to_numpy(dtype=bool)
    is_false = (~label).fillna(False).to_numpy(dtype=bool)
    codes = pd.factorize(frame["answer"])[0].astype(np.int64)
    group = pd.factorize(row * (int(codes.max(initial=0)) + 2) + codes)[0]
    n_group = int(group.max(initial=-1)) + 1
    true_any = np.bincount(group, weights=is_true & answered, minlength=n_group)[group] > 0
    false_any = np.bincount(group, weights=is_false & answered, minlength=n_group)[group] > 0
    bad = answered & true_any & false_any
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(
            f"{_name(qids, row[i], model)}: answer {frame['answer'].iloc[i]!r} is labelled "
            "both correct and wrong; `correct` must agree across samples with the same answer."
        )
    unknown = answered & ~true_any & ~false_any
    if unknown.any():
        i = int(np.argmax(unknown))
        count = int(np.count_nonzero(unknown & (row == row[i])))
        raise ValueError(
            f"{_name(qids, row[i], model)} has {count} answered samples whose correctness is "
            "unknown (`correct` is NA); grade them (give `gold`) or leave the query out."
        )
    return is_true | (answered & true_any)


_NO_GOLD = "\x00no gold"  # the key of label-only correct samples of a query without a gold


def _vote_groups(
    frame: pd.DataFrame, row: Int, golds: NDArray[np.object_] | None, correct: NDArray[np.bool_]
) -> Int:
    """Answer cluster of each voting sample (first-appearance order), -1 for abstaining ones.

    Clusters are the answers of :func:`computealloc.grading.answer_keys`, split where the
    labels disagree (a source stricter than the grader's normal form); a sample labelled
    correct without an answer gives the gold answer.
    """
    gold_of = np.full(len(row), None, dtype=object) if golds is None else golds[row]
    answered = frame["answer"].notna().to_numpy()
    given = np.where(answered, frame["answer"].to_numpy(dtype=object), gold_of)
    keys = answer_keys(given, gold_of)
    keys[~answered & correct & pd.isna(gold_of)] = _NO_GOLD
    key_codes = pd.factorize(keys)[0].astype(np.int64)
    combined = (row * (int(key_codes.max(initial=0)) + 2) + key_codes + 1) * 2 + correct
    group = pd.factorize(combined)[0].astype(np.int64)
    return np.where(answered | correct, group, -1)


def _cluster_frame(
    frame: pd.DataFrame,
    row: Int,
    n_rows: int,
    qids: NDArray[np.object_],
    model: str,
    golds: NDArray[np.object_] | None,
    cost: Float | None = None,
) -> ClusteredSamples:
    """Cluster the samples of ``frame`` (query rows ``row``) per query: see ``cluster_samples``."""
    correct = _resolve_correct(frame, row, qids, model)
    group = _vote_groups(frame, row, golds, correct)
    votes = group >= 0
    n_group = int(group.max(initial=-1)) + 1
    size = np.bincount(group[votes], minlength=n_group)
    g_row = np.zeros(n_group, dtype=np.int64)
    g_ok = np.zeros(n_group, dtype=bool)
    g_row[group[votes]], g_ok[group[votes]] = row[votes], correct[votes]
    gid = np.arange(n_group)
    # the main correct cluster of each row: its largest, ties to the first seen
    by_size = np.lexsort((gid, -size, ~g_ok, g_row))
    first = np.r_[True, g_row[by_size][1:] != g_row[by_size][:-1]]
    main = np.zeros(n_group, dtype=bool)
    main[by_size[first & g_ok[by_size]]] = True
    rest = np.flatnonzero(~main)
    rest = rest[np.lexsort((rest, -size[rest], g_row[rest]))]
    rank = np.arange(rest.size) - np.searchsorted(g_row[rest], g_row[rest], side="left")
    width = int(rank.max(initial=-1)) + 1
    others = np.zeros((n_rows, width), dtype=np.int64)
    others_correct = np.zeros((n_rows, width), dtype=bool)
    others[g_row[rest], rank], others_correct[g_row[rest], rank] = size[rest], g_ok[rest]
    slot_of = np.zeros(max(n_group, 1), dtype=np.int64)
    slot_of[rest] = rank + 1
    return ClusteredSamples(
        model=model,
        n=np.bincount(row, minlength=n_rows),
        gold=np.bincount(g_row[main], weights=size[main], minlength=n_rows).astype(np.int64),
        others=others,
        abstain=np.bincount(row[~votes], minlength=n_rows),
        row=row,
        correct=correct,
        score=frame["score"].to_numpy(dtype=np.float64, na_value=np.nan),
        cost=np.full(len(row), np.nan) if cost is None else cost,
        others_correct=others_correct,
        slot=np.where(votes, slot_of[np.maximum(group, 0)], -1),
    )


def query_golds(log: SampleLog, qids: Iterable[object]) -> NDArray[np.object_]:
    """The gold answer of each query of ``qids`` (None where unknown), for ``cluster_samples``."""
    gold = log.queries.set_index("query_id")["gold"].reindex(list(qids))
    return np.asarray(gold.astype(object).where(gold.notna(), None), dtype=object)


def cluster_samples(
    samples: pd.DataFrame,
    model: str,
    qids: NDArray[np.object_],
    costs: Float | None = None,
    golds: ArrayLike | None = None,
) -> ClusteredSamples:
    """Cluster one model's samples on the queries ``qids`` (answer clusters per query).

    Shared by the fixed-K estimators here, the probe-reuse estimator of
    :mod:`computealloc.reuse` and the stopping-rule replay in :mod:`computealloc.sequential`.
    Rows follow ``qids``; samples of other queries are ignored. ``costs`` (n_samples,),
    aligned with ``samples``, is each sample's cost
    (:meth:`~computealloc.units.Pricing.sample_costs`); ``golds`` (aligned with ``qids``,
    None where unknown) lets answers equal to the gold vote as one answer.
    """
    mine = (samples["model"] == model).to_numpy()
    frame = samples[mine]
    row = pd.Index(qids).get_indexer(pd.Index(frame["query_id"])).astype(np.int64)
    known = row >= 0
    frame, row = frame[known], row[known]
    cost = None if costs is None else costs[mine][known]
    gold = None if golds is None else np.asarray(golds, dtype=object).reshape(-1)
    return _cluster_frame(frame, row, len(qids), qids, model, gold, cost)


def _padded(pools: ClusteredSamples, values: Float) -> tuple[Float, NDArray[np.bool_]]:
    """Per-sample ``values`` and correctness as NaN-padded (N, max n) arrays."""
    n_rows = len(pools.n)
    order = np.argsort(pools.row, kind="stable")
    row = pools.row[order]
    slot = np.arange(len(row)) - np.searchsorted(row, row, side="left")
    vals = np.full((n_rows, int(pools.n.max(initial=0))), np.nan)
    ok = np.zeros(vals.shape, dtype=bool)
    vals[row, slot] = values[order]
    ok[row, slot] = pools.correct[order]
    return vals, ok


def _require(
    pools: ClusteredSamples, bad: NDArray[np.bool_], need: str, what: str, qids: NDArray[np.object_]
) -> None:
    """Raise naming the first query with a ``bad`` sample (a missing score or token count)."""
    if bad.any():
        i = pools.row[int(np.argmax(bad))]
        count = int(np.count_nonzero(bad & (pools.row == i)))
        raise ValueError(
            f"{need} needs {what} for every sample; {_name(qids, i, pools.model)} has "
            f"{count} samples without one."
        )


def _accuracy_columns(
    pools: ClusteredSamples,
    actions: list[tuple[int, Action]],
    qids: NDArray[np.object_],
    out: Float,
) -> None:
    """Fill ``out[:, j]`` with the expected accuracy of each ``(j, action)`` of one model."""
    maj = [(j, a.k) for j, a in actions if a.kind == "majority"]
    if maj:
        ks = np.array([k for _, k in maj])
        out[:, [j for j, _ in maj]] = majority_accuracy(
            pools.gold, pools.others, pools.abstain, ks, others_correct=pools.others_correct
        )
    best = [(j, a.k) for j, a in actions if a.kind == "best_of"]
    if best:
        _require(pools, ~np.isfinite(pools.score), "best_of@K", "a finite `score`", qids)
        scores, ok = _padded(pools, pools.score)
        for j, k in best:
            out[:, j] = best_of_accuracy(scores, ok, k)
    for j, a in actions:
        if a.kind == "pass":
            n_correct = pools.gold + (pools.others * pools.others_correct).sum(axis=1)
            out[:, j] = pass_at_k(pools.n, n_correct, a.k)


# --------------------------------------------------------------------------- validation


def _check_log(log: object, where: str) -> SampleLog:
    if not isinstance(log, SampleLog):
        raise TypeError(
            f"The 'log' parameter of {where} must be a SampleLog. Got {type(log).__name__} instead."
        )
    return log


def _check_choice(name: str, value: object, choices: tuple[str, ...], where: str) -> None:
    if value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise ValueError(
            f"The {name!r} parameter of {where} must be one of {allowed}. Got {value!r} instead."
        )


def _action_models(log: SampleLog, actions: tuple[Action, ...]) -> list[str]:
    """The model each action draws from; an unprefixed action needs a one-model log."""
    models = log.models
    out = []
    for action in actions:
        if action.model is None:
            if len(models) != 1:
                raise ValueError(
                    f"Action {action.spec!r} has no model prefix, but the log holds "
                    f"{len(models)} models ({', '.join(models)}); write 'MODEL/{action.spec}'."
                )
            out.append(models[0])
        elif action.model not in models:
            raise ValueError(
                f"Action {action.spec!r} names model {action.model!r}, which is not in the log; "
                f"its models are: {', '.join(models)}."
            )
        else:
            out.append(action.model)
    return out


def _pool_sizes(
    samples: pd.DataFrame, models: list[str]
) -> tuple[NDArray[np.object_], dict[str, Int]]:
    """Query ids (sorted union over ``models``) and each model's pool size per query."""
    frame = samples[samples["model"].isin(set(models)).to_numpy()]
    qids = np.asarray(sorted(frame["query_id"].unique().tolist()), dtype=object)
    sizes = frame.groupby(["model", "query_id"], observed=True).size()
    out: dict[str, Int] = {}
    for model in dict.fromkeys(models):
        size = sizes.xs(model, level="model").reindex(qids, fill_value=0)
        out[model] = np.asarray(size.to_numpy(), dtype=np.int64)
        big = out[model] > MAX_POOL_SIZE
        if big.any():
            i = int(np.argmax(big))
            raise ValueError(
                f"estimate supports at most {MAX_POOL_SIZE} samples per (model, query); "
                f"{_name(qids, i, model)} has {out[model][i]}."
            )
    return qids, out


def _short_rows(
    qids: NDArray[np.object_],
    sizes: dict[str, Int],
    actions: tuple[Action, ...],
    models: list[str],
    on_short: str,
) -> NDArray[np.bool_]:
    """Rows whose pools hold at least ``K`` samples for every action; raise or drop the rest."""
    keep = np.ones(len(qids), dtype=bool)
    for action, model in zip(actions, models, strict=True):
        short = sizes[model] < action.k
        if short.any() and on_short == "raise":
            i = int(np.argmax(short))
            raise ValueError(
                f"Action {action.spec!r} needs {action.k} samples per query, but "
                f"{_name(qids, i, model)} has {sizes[model][i]} ({int(short.sum())} queries "
                "are short). Pass on_short='drop' to leave such queries out."
            )
        keep &= ~short
    if not keep.any():
        raise ValueError(
            "on_short='drop' left no query: every query is short of samples for some action "
            f"(largest K = {max(a.k for a in actions)})."
        )
    return keep


# --------------------------------------------------------------------------- public API


def default_actions(
    log: SampleLog, protocol: Literal["in-sample", "held-out"] = "in-sample"
) -> tuple[Action, ...]:
    """The default action list: ``majority@K`` for K = 1, 2, 4, 8, ... up to the pool size.

    ``K`` runs up to the smallest number of samples any query has (under the held-out-samples
    protocol, half of it, rounded down). A log with several models gets model-prefixed actions
    ``MODEL/majority@K`` for each model, bounded by that model's smallest pool.

    Parameters
    ----------
    log : SampleLog
    protocol : {"in-sample", "held-out"}

    Returns
    -------
    tuple of Action
    """
    log = _check_log(log, "default_actions")
    _check_choice("protocol", protocol, _PROTOCOLS, "default_actions")
    models = log.models
    sizes = log.samples.groupby(["model", "query_id"], observed=True).size()
    actions: list[Action] = []
    for model in models:
        smallest = int(sizes.xs(model, level="model").min())
        limit = smallest // 2 if protocol == "held-out" else smallest
        if limit < 1:
            raise ValueError(
                f"The held-out protocol needs at least 2 samples per query; model {model!r} "
                f"has a query with {smallest}."
            )
        prefix = model if len(models) > 1 else None
        actions += [Action("majority", 1 << p, prefix) for p in range(limit.bit_length())]
    return tuple(actions)


def estimate(
    log: SampleLog,
    actions: str | Iterable[str | Action] | None = None,
    cost: CostUnit | Pricing = "samples",
    *,
    prices: Mapping[str, PriceLike] | None = None,
    on_short: Literal["raise", "drop"] = "raise",
) -> OutcomeTable:
    """Exact expected accuracy and cost of each action on each query of a sample log.

    For query ``i`` and action ``a = [MODEL/]KIND@K``, ``P[i, a]`` is the expected accuracy of
    ``KIND`` over ``K`` samples drawn uniformly without replacement from the ``n`` samples that
    ``MODEL`` has for query ``i`` (exact over all ``C(n, K)`` draws), and ``C[i, a]`` the
    expected cost of those ``K`` samples.

    Parameters
    ----------
    log : SampleLog
        Samples with ``answer`` and ``correct`` (plus ``score`` for ``best_of``, ``tokens`` for
        token or money costs).
    actions : str, iterable of str or Action, optional
        Action specs (``"majority@1,majority@4"``); default :func:`default_actions`.
        An action without a model prefix needs a log with a single model.
    cost : {"samples", "tokens", "chars", "usd"} or Pricing
        Cost unit (:mod:`computealloc.units`). ``C[i, a]`` is ``K`` times the mean cost of one
        sample of the query's pool (exact under sampling without replacement): ``K`` times the
        arm's price in ``"samples"``, the expected output tokens (or characters) times the
        price in ``"tokens"`` (``"chars"``), USD in ``"usd"``.
    prices : dict of str to float or str, optional
        Price per model (arm), in the unit's sense: per sample, per token or character, or
        USD per 1M output tokens (``"IN/OUT"`` adds a prompt-token price); e.g.
        ``{"gpt-4": 1, "mixtral": 0}`` makes the cost the number of GPT-4 calls. Default 1
        per unit for every model (required with ``"usd"``).
    on_short : {"raise", "drop"}
        What to do with a query whose pool has fewer than ``K`` samples for some action:
        raise an error naming it, or leave it out of the table (listed in
        ``table.metadata["dropped_queries"]``). A query missing for a model counts as short.

    Returns
    -------
    OutcomeTable
        ``P`` and ``C`` of shape (n_queries, n_actions); rows are the query ids of the models
        used, sorted; columns the action specs in the given order.

    Notes
    -----
    Answer clusters are formed per (model, query) by answer equivalence, never by the
    correctness label: two samples vote together when their answers have the same
    :func:`computealloc.grading.answer_keys` key (the :func:`~computealloc.grading.normalize`
    form, or the gold's form for an answer the grader finds equal to the gold without
    math-verify), as the live vote of :mod:`computealloc.runtime` counts them. Different
    correct answers (any valid expression in Game of 24) are different clusters, each correct;
    the vote is correct when a correct cluster wins. Where the labels are stricter than the
    normal form (``5/1/2021`` labelled wrong, ``05/01/2021`` right) the cluster splits by label.
    An answer string is correct when any sample giving it is labelled correct. A sample
    labelled correct without an answer (label-only sources) gives the gold answer; a sample
    without an answer and not labelled correct abstains: it does not vote, and a draw where
    every sample abstains is wrong. With these rules ``majority@1`` equals the mean of the
    correctness labels.

    The estimates are in-sample: they describe the pool, not fresh samples; the held-out
    protocol calls this on half of each pool.

    Examples
    --------
    >>> import pandas as pd
    >>> from computealloc.samples import SampleLog
    >>> s = pd.DataFrame({"query_id": ["q"] * 3, "sample_idx": [0, 1, 2],
    ...                   "model": "m", "answer": ["4", "4", "5"],
    ...                   "correct": pd.array([True, True, False], dtype="boolean"),
    ...                   "tokens": [10.0, 20.0, 30.0], "score": float("nan")})
    >>> log = SampleLog(s, pd.DataFrame({"query_id": ["q"], "prompt": ["2+2"], "gold": ["4"]}))
    >>> t = estimate(log, "majority@1,majority@3", cost="tokens")
    >>> t.P.round(4).tolist(), t.C.tolist()
    ([[0.6667, 1.0]], [[20.0, 60.0]])
    """
    log = _check_log(log, "estimate")
    pricing = cost if isinstance(cost, Pricing) else pricing_of(cost, prices, "estimate")
    _check_choice("on_short", on_short, _ON_SHORT, "estimate")
    acts = default_actions(log) if actions is None else parse_actions(actions)
    models = _action_models(log, acts)
    pricing.check_arms(dict.fromkeys(models), where="The 'prices' parameter of estimate")
    qids, sizes = _pool_sizes(log.samples, models)
    keep = _short_rows(qids, sizes, acts, models, on_short)
    kept = qids[keep]
    p = np.empty((len(kept), len(acts)))
    c = np.empty_like(p)
    golds = query_golds(log, kept)
    costs = None
    if pricing.unit != "samples":
        used = log.samples[log.samples["model"].isin(set(models)).to_numpy()]
        costs = pricing.sample_costs(used, log.queries)
        log = replace(log, samples=used)
    for model in dict.fromkeys(models):
        pools = cluster_samples(log.samples, model, kept, costs, golds)
        mine = [(j, a) for j, (a, m) in enumerate(zip(acts, models, strict=True)) if m == model]
        _accuracy_columns(pools, mine, kept, p)
        per_sample = np.full(len(kept), pricing.price(model).rate)
        if costs is not None:
            bad = ~(np.isfinite(pools.cost) & (pools.cost >= 0))
            need = "a finite, non-negative " + " and ".join(f"`{c}`" for c in pricing.columns)
            _require(pools, bad, f"cost={pricing.unit!r}", need, kept)
            per_sample = np.bincount(pools.row, weights=pools.cost, minlength=len(kept)) / pools.n
        for j, a in mine:
            c[:, j] = a.k * per_sample
    metadata = {
        "source": log.source,
        "dropped_queries": qids[~keep].tolist(),
        **({"prices": pricing.to_dict()["prices"]} if pricing.prices else {}),
    }
    return OutcomeTable(p, c, [a.spec for a in acts], kept.tolist(), pricing.unit, metadata)
