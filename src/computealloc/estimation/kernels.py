"""Exact kernels: expected accuracy of combining K of n pooled samples, over all C(n, K) draws.

Array functions on per-query counts and padded per-sample arrays, with no knowledge of sample
logs: :func:`majority_accuracy` (plurality vote, ties split uniformly),
:func:`conditional_majority` (the same with observed answers added, as when probe samples are
reused), :func:`pass_at_k` and :func:`best_of_accuracy`. :class:`ClusteredSamples` is the
per-query view of one model's samples that :mod:`computealloc.estimation.estimate` builds for them
and the action kinds (:mod:`computealloc.estimation.kinds`) read.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import ArrayLike, NDArray
from scipy.special import comb

__all__ = [
    "MAX_POOL_SIZE",
    "ClusteredSamples",
    "best_of_accuracy",
    "conditional_majority",
    "majority_accuracy",
    "padded",
    "pass_at_k",
]

MAX_POOL_SIZE = 1024
"""Most samples one (model, query) pool may hold: ``C(1024, 512)`` is the largest binomial
that float64 holds, and every kernel works with binomial counts."""

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


# --------------------------------------------------------------------------- pooled samples


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


def padded(pools: ClusteredSamples, values: Float) -> tuple[Float, NDArray[np.bool_]]:
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
