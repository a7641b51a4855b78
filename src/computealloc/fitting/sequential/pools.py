"""Answer pools and their replay: each query's logged samples, drawn in seeded random orders.

:func:`answer_pools` clusters one model's logged answers per query into
:class:`AnswerPools` (cluster sizes; the order of the samples is irrelevant), and
:func:`replay` draws each pool in many seeded random orders (sampling without replacement)
into :class:`Trajectories`: the vote after every prefix, which every stopping rule reads by
the same arithmetic, offline and for one live query.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import xlogy

from computealloc.data.samples import SampleLog
from computealloc.estimation.estimate import cluster_samples, query_golds
from computealloc.fitting.sequential._checks import cap_of, check_int, check_log

__all__ = ["MAX_TOP_K", "AnswerPools", "Trajectories", "answer_pools", "replay"]

Float = NDArray[np.float64]
Int = NDArray[np.int64]

#: Sorted answer counts kept per prefix (the Dirichlet rule reads at most this many clusters).
MAX_TOP_K = 8

#: Elements of one-hot count arrays built at once by :func:`replay` (memory bound, ~8 MB each).
_CHUNK_ELEMENTS = 1 << 22

_ABSTAIN = -1
_PAD = -2


# --------------------------------------------------------------------------- answer pools


@dataclass(frozen=True, eq=False)
class AnswerPools:
    """Each query's logged samples as answer-cluster sizes (the order of samples is irrelevant).

    Instances compare by identity (replays of one instance are cached); treat the arrays as
    read-only.

    Attributes
    ----------
    gold : ndarray of shape (n_queries,), int64
        Samples in the correct answer cluster (0 when no sample is correct).
    others : ndarray of shape (n_queries, n_clusters), int64
        Sizes of the wrong answer clusters, zero-padded.
    abstain : ndarray of shape (n_queries,), int64
        Samples without an answer.
    query_ids : tuple of str
        The queries, in row order.
    others_correct : ndarray of shape (n_queries, n_clusters), bool, optional
        Which ``others`` clusters are correct answers too (several distinct answers can be
        correct, as in Game of 24); none by default.
    """

    gold: Int
    others: Int
    abstain: Int
    query_ids: tuple[str, ...]
    others_correct: NDArray[np.bool_] | None = None

    @property
    def correct_clusters(self) -> NDArray[np.bool_]:
        """Which clusters are correct, shape (n_queries, 1 + n_clusters): gold, then others."""
        extra = np.zeros(self.others.shape, dtype=bool)
        if self.others_correct is not None:
            extra = np.asarray(self.others_correct, dtype=bool).reshape(self.others.shape)
        return np.column_stack([np.ones(self.n_queries, dtype=bool), extra])

    @property
    def n(self) -> Int:
        """Samples per query, shape (n_queries,)."""
        return np.asarray(self.gold + self.others.sum(axis=1) + self.abstain)

    @property
    def n_queries(self) -> int:
        return int(self.gold.shape[0])

    def subset(self, rows: ArrayLike) -> AnswerPools:
        """The pools of the queries at positions ``rows``."""
        r = np.asarray(rows, dtype=np.int64)
        extra = None if self.others_correct is None else self.others_correct[r]
        return AnswerPools(
            self.gold[r],
            self.others[r],
            self.abstain[r],
            tuple(self.query_ids[i] for i in r),
            extra,
        )


def answer_pools(
    log: SampleLog,
    *,
    model: str | None = None,
    sample_mask: ArrayLike | None = None,
    query_ids: Sequence[str] | None = None,
) -> AnswerPools:
    """Cluster the answers of one model's samples per query (the clustering of ``estimate``).

    Parameters
    ----------
    log : SampleLog
    model : str, optional
        The model whose samples are used; required when the log holds several.
    sample_mask : array-like of bool, shape (n_samples,), optional
        Rows of ``log.samples`` to use, e.g. one half of the held-out-samples protocol.
    query_ids : sequence of str, optional
        Queries (rows) of the result; all queries of ``model``, sorted, by default. A query
        without samples gets an empty pool.

    Returns
    -------
    AnswerPools
    """
    check_log(log, "answer_pools")
    name = model_of(log, model, "answer_pools")
    samples = log.samples
    if sample_mask is not None:
        samples = samples[np.asarray(sample_mask, dtype=bool)]
    if query_ids is None:
        mine = samples["model"] == name
        query_ids = sorted(samples.loc[mine, "query_id"].unique().tolist())
    qids = np.asarray(list(query_ids), dtype=object)
    pools = cluster_samples(samples, name, qids, golds=query_golds(log, qids))
    return AnswerPools(
        pools.gold,
        pools.others,
        pools.abstain,
        tuple(str(q) for q in qids),
        pools.others_correct,
    )


def model_of(log: SampleLog, model: str | None, where: str) -> str:
    """The model whose samples are used: ``model``, or the log's only one (ValueError else)."""
    models = log.models
    if model is None:
        if len(models) != 1:
            raise ValueError(
                f"The log holds {len(models)} models ({', '.join(models)}); pass `model` to "
                f"{where}."
            )
        return models[0]
    if model not in models:
        raise ValueError(
            f"The 'model' parameter of {where} must be one of {', '.join(map(repr, models))}. "
            f"Got {model!r} instead."
        )
    return model


# --------------------------------------------------------------------------- replay


@dataclass(frozen=True, eq=False)
class Trajectories:
    """Replayed answer sequences and the vote after every prefix.

    ``[i, r, j]`` indexes query ``i``, order ``r`` and the prefix of ``t = j + 1`` samples;
    entries past the query's cap are never read. Instances compare by identity, so that
    statistics computed from them can be cached.

    Attributes
    ----------
    labels : ndarray of shape (n_queries, n_orders, width), int16
        Answer cluster of each drawn sample: 0 the correct cluster, 1, 2, ... wrong clusters,
        -1 no answer, -2 past the end of the pool.
    top : ndarray of shape (n_queries, n_orders, width, k), int16
        The ``k`` largest answer counts after each prefix, in decreasing order (``k >= 2``).
    distinct : ndarray of shape (n_queries, n_orders, width), int16
        Distinct answers after each prefix.
    answered : ndarray of shape (n_queries, n_orders, width), int16
        Samples with an answer after each prefix.
    count_log_count : ndarray of shape (n_queries, n_orders, width), float64
        ``sum_c c log c`` over the answer counts ``c`` (for entropies).
    correct : ndarray of shape (n_queries, n_orders, width), float64
        Expected correctness of the plurality answer after each prefix (ties split).
    cap : ndarray of shape (n_queries,), int64
        The most samples a rule may draw for each query.
    """

    labels: NDArray[np.int16]
    top: NDArray[np.int16]
    distinct: NDArray[np.int16]
    answered: NDArray[np.int16]
    count_log_count: Float
    correct: Float
    cap: Int

    @property
    def width(self) -> int:
        """The longest cap: prefixes run over ``t = 1 .. width``."""
        return int(self.labels.shape[2])

    @property
    def t(self) -> Int:
        """Prefix lengths ``1 .. width``, shape (width,)."""
        return np.arange(1, self.width + 1, dtype=np.int64)


def _pool_labels(pools: AnswerPools, width: int) -> NDArray[np.int16]:
    """Cluster label of every pool slot, shape (n_queries, width); slots past ``n`` are -2."""
    sizes = np.column_stack([pools.gold, pools.others, pools.abstain])
    ids = np.concatenate([np.arange(sizes.shape[1] - 1), [_ABSTAIN, _PAD]]).astype(np.int16)
    ends = np.cumsum(sizes, axis=1)
    slot = np.arange(width)
    which = (slot[None, :, None] >= ends[:, None, :]).sum(axis=2)
    return ids[which]


def _orders(pools: AnswerPools, n_orders: int, width: int, seed: int) -> NDArray[np.int16]:
    """Labels of ``n_orders`` seeded random orders of each pool, shape (N, n_orders, width)."""
    labels = _pool_labels(pools, max(width, int(pools.n.max(initial=1))))
    rng = np.random.default_rng(seed)
    keys = rng.random((pools.n_queries, n_orders, labels.shape[1]))
    keys[np.broadcast_to((labels == _PAD)[:, None, :], keys.shape)] = np.inf
    order = np.argsort(keys, axis=2)[:, :, :width]
    full = np.broadcast_to(labels[:, None, :], keys.shape)
    return np.take_along_axis(full, order, axis=2)


def _count_summaries(
    labels: NDArray[np.int16], top_k: int, correct: NDArray[np.bool_] | None = None
) -> dict[str, NDArray[Any]]:
    """Vote summaries after every prefix of ``labels`` (N, R, T), built in memory-bounded chunks.

    ``correct`` (N, >= n_clusters) says which cluster labels are correct answers; label 0
    alone by default.
    """
    n, r, w = labels.shape
    n_clusters = max(int(labels.max(initial=0)) + 1, 1)
    ok = np.zeros((n, n_clusters), dtype=bool)
    ok[:, 0] = True
    if correct is not None:
        ok = correct[:, :n_clusters]
    k = max(min(top_k, MAX_TOP_K, n_clusters), 2)
    out: dict[str, NDArray[Any]] = {
        "top": np.zeros((n, r, w, k), dtype=np.int16),
        "distinct": np.zeros((n, r, w), dtype=np.int16),
        "answered": np.zeros((n, r, w), dtype=np.int16),
        "count_log_count": np.zeros((n, r, w)),
        "correct": np.zeros((n, r, w)),
    }
    step = max(1, _CHUNK_ELEMENTS // max(r * w * n_clusters, 1))
    for lo in range(0, n, step):
        part = labels[lo : lo + step]
        counts = np.cumsum(part[..., None] == np.arange(n_clusters), axis=2, dtype=np.int16)
        ranked = -np.sort(-counts, axis=3)
        width = min(k, n_clusters)
        out["top"][lo : lo + step, :, :, :width] = ranked[..., :width]
        out["distinct"][lo : lo + step] = (counts > 0).sum(axis=3)
        out["answered"][lo : lo + step] = counts.sum(axis=3)
        out["count_log_count"][lo : lo + step] = xlogy(counts, counts).sum(axis=3)
        out["correct"][lo : lo + step] = _plurality_correct(
            counts, ranked[..., 0], ok[lo : lo + step]
        )
    return out


def _plurality_correct(
    counts: NDArray[np.int16], top: NDArray[np.int16], correct: NDArray[np.bool_]
) -> Float:
    """Probability that the plurality (ties uniform) is a correct cluster (``correct`` (N, M))."""
    at_top = counts == top[..., None]
    tied = at_top.sum(axis=3)
    wins = (at_top & correct[:, None, None, :]).sum(axis=3)
    return np.where(top > 0, wins / np.maximum(tied, 1), 0.0)


def _trajectories(
    labels: NDArray[np.int16],
    cap: Int,
    top_k: int = MAX_TOP_K,
    correct: NDArray[np.bool_] | None = None,
) -> Trajectories:
    s = _count_summaries(labels, top_k, correct)
    return Trajectories(
        labels,
        s["top"],
        s["distinct"],
        s["answered"],
        s["count_log_count"],
        s["correct"],
        np.asarray(cap, dtype=np.int64),
    )


def replay(
    pools: AnswerPools,
    *,
    n_orders: int = 64,
    random_state: int = 0,
    max_samples: int | None = None,
) -> Trajectories:
    """Replay each query's pool in ``n_orders`` seeded random orders (sampling without replacement).

    Parameters
    ----------
    pools : AnswerPools
        The logged samples of each query.
    n_orders : int
        Random orders per query; Monte Carlo errors of the replayed means shrink as
        ``1 / sqrt(n_orders)``.
    random_state : int
        Seed of the orders. Evaluating several rules on the same seed pairs their errors
        (common random numbers), so their differences are much more precise than each value.
    max_samples : int, optional
        Cap on the samples drawn per query; the pool size by default (and at most).

    Returns
    -------
    Trajectories
    """
    check_int(n_orders, "n_orders", "replay", low=1)
    check_pools(pools, "replay")
    cap = pools.n if max_samples is None else np.minimum(pools.n, cap_of(max_samples, "replay"))
    width = max(int(cap.max(initial=1)), 1)
    labels = _orders(pools, n_orders, width, random_state)
    return _trajectories(labels, cap, correct=pools.correct_clusters)


@lru_cache(maxsize=2)
def replay_cached(
    pools: AnswerPools, n_orders: int, random_state: int, max_samples: int | None
) -> Trajectories:
    """:func:`replay`, cached for the calibration and test pools of a budget sweep."""
    return replay(pools, n_orders=n_orders, random_state=random_state, max_samples=max_samples)


def answers_trajectory(answers: Sequence[object], cap: int) -> Trajectories:
    """One live query's answers so far as a one-order trajectory (correctness unknown: 0)."""
    first: dict[object, int] = {}  # label of each answer: 1 + order of first appearance
    codes = [_ABSTAIN if a is None else first.setdefault(a, len(first) + 1) for a in answers]
    labels = np.asarray(codes, dtype=np.int16)[None, None, :]
    return _trajectories(labels, np.array([cap], dtype=np.int64))


# --------------------------------------------------------------------------- validation


def check_pools(pools: object, where: str) -> None:
    """TypeError naming ``where`` unless ``pools`` is AnswerPools; ValueError if one is empty."""
    if not isinstance(pools, AnswerPools):
        raise TypeError(
            f"The 'pools' parameter of {where} must be AnswerPools. Got {type(pools).__name__} "
            "instead."
        )
    if pools.n_queries == 0 or (pools.n < 1).any():
        raise ValueError(f"Every pool passed to {where} must hold at least one sample.")
