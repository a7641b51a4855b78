"""Confidence-aware voting: ``weighted@K`` and ``top_half@K`` (the sample ``score`` is the
answer's confidence, as :func:`computealloc.data.checkpoints.thinking_log` writes it).

- ``weighted@K``: the answer with the largest summed confidence among K samples wins (ties,
  within 1e-12 relative, split uniformly at random; samples without an answer do not vote).
- ``top_half@K``: the plurality vote of the ``ceil(K / 2)`` most confident of K samples (the
  least confident half is dropped first; equal confidences keep the earlier sample of the
  pool), ties split uniformly at random.

Both are computed exactly by enumerating the ``C(n, K)`` draws of each query's pool of ``n``
samples (at most :data:`MAX_DRAWS` per query and ``K``; a larger pool is an error naming the
query's numbers, since a Monte Carlo estimate would break the estimator's exactness).

Live, :func:`weighted_vote` and :func:`top_half_vote` combine K samples by the same rules,
ties included, reading each sample's :attr:`~computealloc.data.backends.Completion.score`: a
thinking arm's confidence (``thinking: {logprobs: true}``) or a replayed log's ``score``.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Sequence

import numpy as np

from computealloc.data.backends.base import Completion
from computealloc.estimation.kernels import ClusteredSamples, Float, Int
from computealloc.estimation.kinds.base import Kind, register
from computealloc.estimation.voting import TIE_RTOL, Vote, majority_vote

__all__ = ["MAX_DRAWS", "confidence_accuracy", "top_half_vote", "weighted_vote"]

#: Most draws ``C(n, K)`` enumerated per query and ``K``.
MAX_DRAWS = 200_000


@functools.lru_cache(maxsize=64)
def _combos(n: int, k: int) -> Int:
    """Every k-subset of ``range(n)``, shape (C(n, k), k)."""
    return np.array(list(itertools.combinations(range(n), k)), dtype=np.int64).reshape(-1, k)


def _vote(slots: Int, weights: Float, ok: np.ndarray) -> float:
    """Mean correctness over draws of the top-weighted cluster, ties split evenly.

    ``slots`` (C, k) cluster per drawn sample (-1 abstains), ``weights`` (C, k), ``ok`` (A,)
    whether each cluster is correct.
    """
    n_draws = slots.shape[0]
    width = ok.size
    voting = slots >= 0
    cols = np.where(voting, slots, 0)
    rows = np.broadcast_to(np.arange(n_draws)[:, None], slots.shape)
    total = np.zeros((n_draws, width))
    count = np.zeros((n_draws, width))
    np.add.at(total, (rows[voting], cols[voting]), weights[voting])
    np.add.at(count, (rows[voting], cols[voting]), 1.0)
    total = np.where(count > 0, total, -np.inf)
    best = total.max(axis=1, keepdims=True)
    winners = (count > 0) & (total >= best - TIE_RTOL * np.abs(best))
    n_win = winners.sum(axis=1)
    hits = (winners & ok[None, :]).sum(axis=1)
    return float(np.where(n_win > 0, hits / np.maximum(n_win, 1), 0.0).mean())


def _weighted(slots: Int, scores: Float) -> tuple[Int, Float]:
    return slots, scores


def _top_half(slots: Int, scores: Float) -> tuple[Int, Float]:
    keep = math.ceil(slots.shape[1] / 2)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :keep]
    return np.take_along_axis(slots, order, axis=1), np.ones((slots.shape[0], keep))


def confidence_accuracy(
    pools: ClusteredSamples, ks: Int, rule: Callable[[Int, Float], tuple[Int, Float]]
) -> Float:
    """Exact expected accuracy of a confidence-aware vote of each ``K`` on every query.

    Parameters
    ----------
    pools : ClusteredSamples
        One arm's samples; ``score`` is each sample's confidence.
    ks : ndarray of shape (n_ks,)
    rule : callable
        ``rule(slots, scores) -> (slots, weights)`` of the drawn samples (C, K): which of
        them vote and with what weight.

    Returns
    -------
    ndarray of shape (n_queries, n_ks)
    """
    n_rows = len(pools.n)
    out = np.zeros((n_rows, len(ks)))
    order = np.argsort(pools.row, kind="stable")
    starts = np.searchsorted(pools.row[order], np.arange(n_rows + 1))
    for i in range(n_rows):
        members = order[starts[i] : starts[i + 1]]
        ok = np.r_[pools.gold[i] > 0, pools.others_correct[i]].astype(bool)  # (width,)
        for j, k in enumerate(int(x) for x in ks):
            n = members.size
            if k > n:
                out[i, j] = np.nan
                continue
            if math.comb(n, k) > MAX_DRAWS:
                raise ValueError(
                    f"confidence-aware voting enumerates every draw: C({n}, {k}) = "
                    f"{math.comb(n, k)} exceeds {MAX_DRAWS} for query row {i} (model "
                    f"{pools.model!r}); use a smaller K or fewer samples per query."
                )
            draws = members[_combos(n, k)]
            slots, weights = rule(pools.slot[draws], pools.score[draws])
            out[i, j] = _vote(slots, weights, ok)
    return out


def _score(samples: Sequence[Completion], j: int, kind: str) -> float:
    """The score of ``samples[j]``; a ValueError naming ``kind`` when it has none."""
    score = samples[j].score
    if score is None or not math.isfinite(score):
        raise ValueError(
            f"{kind}@{len(samples)} weighs each sample by its confidence, but sample {j} of "
            f"{len(samples)} has no score (got {score!r}): give its arm "
            "`thinking: {logprobs: true}` so that each thought carries its answer's "
            "confidence, or replay a log with a `score` column."
        )
    return float(score)


def weighted_vote(samples: Sequence[Completion], rng: np.random.Generator | None = None) -> Vote:
    """Live ``weighted@K``: the answer with the largest summed score among the samples.

    The rule of the offline estimate: answers are clustered by
    :func:`~computealloc.data.grading.normalize` (a replayed sample votes with its logged
    answer, any other with the answer extracted from its text: ``answer_of``), each cluster
    weighs the summed ``score`` of its samples, a sample without an answer abstains (and needs
    no score), and clusters within ``1e-12`` (relative) of the largest sum tie: one of them
    wins uniformly at random with ``rng``, else the first seen.

    Parameters
    ----------
    samples : sequence of Completion
        The K samples; every one that votes needs a finite ``score``.
    rng : numpy.random.Generator, optional
        Source of the tie-breaking draw (one ``rng.integers(n_tied)`` call, only on a tie).

    Returns
    -------
    Vote
        The winning answer (as given, not normalised), its cluster's first sample and its
        cluster's number of samples; ``Vote(None, 0, 0)`` when every sample abstained.

    Raises
    ------
    ValueError
        When a voting sample has no score (naming the kind and how to give one).
    """
    return majority_vote(samples, rng=rng, weight=lambda j: _score(samples, j, "weighted"))


def top_half_vote(samples: Sequence[Completion], rng: np.random.Generator | None = None) -> Vote:
    """Live ``top_half@K``: the plurality vote of the ``ceil(K / 2)`` highest-scored samples.

    The rule of the offline estimate: every sample (abstaining ones too) is ranked by its
    ``score``, equal scores keeping the earlier sample; the more confident ``ceil(K / 2)``
    then vote as :func:`~computealloc.estimation.voting.majority_vote` does (ties uniformly
    at random with ``rng``, else the first seen in the samples' order).

    Parameters
    ----------
    samples : sequence of Completion
        The K samples, each with a finite ``score``.
    rng : numpy.random.Generator, optional
        Source of the tie-breaking draw.

    Returns
    -------
    Vote
        ``index`` is the winning cluster's first kept sample, in ``samples``; ``count`` its
        votes among the kept samples.

    Raises
    ------
    ValueError
        When a sample has no score (naming the kind and how to give one).
    """
    scores = np.array([_score(samples, j, "top_half") for j in range(len(samples))])
    kept = np.sort(np.argsort(-scores, kind="stable")[: math.ceil(len(samples) / 2)])
    vote = majority_vote([samples[j] for j in kept], rng=rng)
    if vote.answer is None:
        return Vote(None, 0, 0)
    return Vote(vote.answer, int(kept[vote.index]), vote.count)


WEIGHTED = register(
    Kind(
        name="weighted",
        summary="the answer with the largest summed confidence (`score`) among K samples",
        accuracy=lambda pools, ks: confidence_accuracy(pools, ks, _weighted),
        needs=("score",),
        combine=weighted_vote,
    )
)
TOP_HALF = register(
    Kind(
        name="top_half",
        summary="plurality vote of the more confident half (by `score`) of K samples",
        accuracy=lambda pools, ks: confidence_accuracy(pools, ks, _top_half),
        needs=("score",),
        combine=top_half_vote,
    )
)
