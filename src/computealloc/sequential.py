"""Sequential allocation: sample one answer at a time and stop when the vote is settled.

Adaptive-Consistency (Aggarwal et al., EMNLP 2023) and Early-Stopping Self-Consistency (Li et
al., ICLR 2024) do not choose a compute level up front: they draw answers one at a time (or one
window at a time) and stop as soon as a statistic of the answers so far says the plurality is
settled. This module holds

- the published stopping rules, written from their definitions: :class:`BetaRule` (the
  Adaptive-Consistency default), :class:`DirichletRule`, :class:`EntropyRule`,
  :class:`MajorityShareRule` and the ESC window rule :class:`WindowRule`;
- :class:`LagrangianStopping`, computealloc's sequential policy: optimal stopping for
  ``max E[accuracy] - lam * E[samples]`` on an empirical model of answer-count trajectories
  learned from training queries, optionally per difficulty group of a learned prior;
- an offline evaluator that replays each query's logged samples in many seeded random orders
  (:func:`replay`, :func:`evaluate_stopping`), a budget calibration that tunes any rule's knob
  so that the mean number of samples equals a budget (:func:`calibrate_stopping`), and the
  evaluation protocol entry point :func:`sequential_methods`;
- a RouteLLM-style baseline for two-model logs: :func:`threshold_router`.

Every rule answers ``should_stop(answers)`` for one live query (the runtime's per-sample
call) and is evaluated offline on arrays of replayed trajectories by the same arithmetic.

Conventions
-----------
``t`` counts the samples drawn so far, abstaining ones (no answer) included; abstaining samples
vote for nothing. The answer returned at the stop is the plurality of the answers drawn, ties
split uniformly at random, so its expected correctness is ``1/m`` when the correct answer is
one of ``m`` tied leaders. A rule never stops before the first answer, and always stops at the
cap: the query's number of logged samples, or ``max_samples`` when smaller.
"""

from __future__ import annotations

import copy
from abc import ABCMeta, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from numbers import Integral, Real
from typing import Any, ClassVar, Literal

import lightgbm as lgb
import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy.special import betainc, gammainc, gammaincinv, xlogy
from sklearn.base import BaseEstimator
from sklearn.model_selection import KFold

from computealloc.calibrate import check_budget
from computealloc.estimate import cluster_samples, majority_accuracy
from computealloc.features import build_features
from computealloc.samples import SampleLog
from computealloc.splits import split_queries, split_samples

__all__ = [
    "FIT_RULES",
    "PRIOR_GROUPS",
    "SEQUENTIAL_METHODS",
    "AnswerPools",
    "BetaRule",
    "CalibratedStopping",
    "DirichletRule",
    "EntropyRule",
    "LagrangianStopping",
    "MajorityShareRule",
    "StoppingFit",
    "StoppingResult",
    "StoppingRule",
    "Trajectories",
    "WindowRule",
    "answer_pools",
    "calibrate_stopping",
    "dirichlet_leader_probability",
    "evaluate_stopping",
    "fit_stopping",
    "replay",
    "sequential_methods",
    "stopping_curve",
    "threshold_router",
]

Float = NDArray[np.float64]
Int = NDArray[np.int64]
Bool = NDArray[np.bool_]

#: Sorted answer counts kept per prefix (the Dirichlet rule reads at most this many clusters).
MAX_TOP_K = 8

#: Elements of one-hot count arrays built at once by :func:`replay` (memory bound, ~8 MB each).
_CHUNK_ELEMENTS = 1 << 22

_PROTOCOLS = ("held-out", "in-sample")
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
    """

    gold: Int
    others: Int
    abstain: Int
    query_ids: tuple[str, ...]

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
        return AnswerPools(
            self.gold[r], self.others[r], self.abstain[r], tuple(self.query_ids[i] for i in r)
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
    if not isinstance(log, SampleLog):
        raise TypeError(
            f"The 'log' parameter of answer_pools must be a SampleLog. Got {type(log).__name__} "
            "instead."
        )
    name = _model_of(log, model, "answer_pools")
    samples = log.samples
    if sample_mask is not None:
        samples = samples[np.asarray(sample_mask, dtype=bool)]
    if query_ids is None:
        mine = samples["model"] == name
        query_ids = sorted(samples.loc[mine, "query_id"].unique().tolist())
    qids = np.asarray(list(query_ids), dtype=object)
    pools = cluster_samples(samples, name, qids)
    return AnswerPools(pools.gold, pools.others, pools.abstain, tuple(str(q) for q in qids))


def _model_of(log: SampleLog, model: str | None, where: str) -> str:
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


def _count_summaries(labels: NDArray[np.int16], top_k: int) -> dict[str, NDArray[Any]]:
    """Vote summaries after every prefix of ``labels`` (N, R, T), built in memory-bounded chunks."""
    n, r, w = labels.shape
    n_clusters = max(int(labels.max(initial=0)) + 1, 1)
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
        out["correct"][lo : lo + step] = _plurality_correct(counts, ranked[..., 0])
    return out


def _plurality_correct(counts: NDArray[np.int16], top: NDArray[np.int16]) -> Float:
    """Probability that the plurality (ties uniform) is the correct cluster 0."""
    tied = (counts == top[..., None]).sum(axis=3)
    wins = (counts[..., 0] == top) & (top > 0)
    return np.where(wins, 1.0 / np.maximum(tied, 1), 0.0)


def _trajectories(labels: NDArray[np.int16], cap: Int, top_k: int = MAX_TOP_K) -> Trajectories:
    s = _count_summaries(labels, top_k)
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
    _check_int(n_orders, "n_orders", "replay", low=1)
    _check_pools(pools, "replay")
    cap = pools.n if max_samples is None else np.minimum(pools.n, _cap_of(max_samples, "replay"))
    width = max(int(cap.max(initial=1)), 1)
    return _trajectories(_orders(pools, n_orders, width, random_state), cap)


@lru_cache(maxsize=2)
def _replay_cached(
    pools: AnswerPools, n_orders: int, random_state: int, max_samples: int | None
) -> Trajectories:
    """:func:`replay`, cached for the calibration and test pools of a budget sweep."""
    return replay(pools, n_orders=n_orders, random_state=random_state, max_samples=max_samples)


def _answers_trajectory(answers: Sequence[object], cap: int) -> Trajectories:
    """One live query's answers so far as a one-order trajectory (correctness unknown: 0)."""
    first: dict[object, int] = {}  # label of each answer: 1 + order of first appearance
    codes = [_ABSTAIN if a is None else first.setdefault(a, len(first) + 1) for a in answers]
    labels = np.asarray(codes, dtype=np.int16)[None, None, :]
    return _trajectories(labels, np.array([cap], dtype=np.int64))


# --------------------------------------------------------------------------- stopping rules


class StoppingRule(BaseEstimator, metaclass=ABCMeta):
    """Base class of sequential stopping rules.

    A rule looks at the answers drawn so far and says whether to stop. Subclasses implement
    :meth:`_fires`, the rule's condition at every prefix of replayed trajectories; the class
    adds the caps, the per-query :meth:`should_stop` and the budget knob used by
    :func:`calibrate_stopping` (the parameter named by ``_knob``).
    """

    #: The parameter that :func:`calibrate_stopping` tunes, its range, and whether raising it
    #: spends more samples.
    _knob: ClassVar[str] = "threshold"
    _knob_range: ClassVar[tuple[float, float]] = (0.0, 1.0)
    _knob_raises_cost: ClassVar[bool] = True
    _knob_integer: ClassVar[bool] = False

    max_samples: int | None

    @abstractmethod
    def _fires(self, traj: Trajectories, prior: Float | None) -> Bool:
        """Whether the rule stops after each prefix, shape (n_queries, n_orders, width)."""

    def stopping_times(self, traj: Trajectories, prior: ArrayLike | None = None) -> Int:
        """Samples drawn before stopping on each replayed order, shape (n_queries, n_orders).

        Parameters
        ----------
        traj : Trajectories
            Replayed orders (:func:`replay`).
        prior : array-like of shape (n_queries,), optional
            Per-query prior scores, for rules that read them (:class:`LagrangianStopping`).
        """
        cap = traj.cap if self.max_samples is None else np.minimum(traj.cap, self.max_samples)
        fires = self._fires(traj, _prior_array(prior, traj.cap.shape[0]))
        fires = fires | (traj.t[None, None, :] >= cap[:, None, None])
        return np.argmax(fires, axis=2).astype(np.int64) + 1

    def should_stop(self, answers: Sequence[object], prior: float | None = None) -> bool:
        """Whether to stop after the answers drawn so far (one live query).

        Parameters
        ----------
        answers : sequence of hashable or None
            The answers in the order they were drawn; None for a sample without an answer.
        prior : float, optional
            The query's prior score, for rules that read one.

        Returns
        -------
        bool
            True when the rule stops here, or when ``max_samples`` answers were drawn.
        """
        t = len(answers)
        if t == 0:
            return False
        if self.max_samples is not None and t >= self.max_samples:
            return True
        traj = _answers_trajectory(answers, self._live_cap(t))
        pri = None if prior is None else np.array([float(prior)])
        return bool(self._fires(traj, pri)[0, 0, t - 1])

    def _live_cap(self, t: int) -> int:
        """The cap of a live query after ``t`` samples (no cap known: not yet reached)."""
        return self.max_samples if self.max_samples is not None else t + 1

    def _with_knob(self, value: float) -> StoppingRule:
        """A copy of the rule with its budget knob set to ``value`` (fitted state shared)."""
        new = copy.copy(self)
        setattr(new, self._knob, int(value) if self._knob_integer else float(value))
        return new


def _stat_lookup(table: Float, a: NDArray[np.int16], b: NDArray[np.int16]) -> Float:
    return np.asarray(table[a.astype(np.int64), b.astype(np.int64)])


@lru_cache(maxsize=8)
def _beta_table(size: int) -> Float:
    """``P(p1 > p2)`` under ``Beta(a + 1, b + 1)`` for ``0 <= a, b < size``, read-only."""
    a = np.arange(size, dtype=np.float64)
    table = 1.0 - betainc(a[:, None] + 1.0, a[None, :] + 1.0, 0.5)
    table.setflags(write=False)
    return np.asarray(table)


class BetaRule(StoppingRule):
    """Adaptive-Consistency's Beta stopping rule (Aggarwal et al., 2023).

    With ``a`` votes for the leading answer and ``b`` for the runner-up, the probability that
    the leader's share exceeds the runner-up's is ``P(p > 1/2)`` for ``p ~ Beta(a + 1, b + 1)``
    (a uniform prior over the two answers' relative share), ``1 - I_{1/2}(a + 1, b + 1)``.
    The rule stops when it reaches ``threshold``; the paper's default is 0.95, which needs at
    least 4 unanimous samples (``1 - 2^-5 = 0.969``).

    Parameters
    ----------
    threshold : float
        Confidence in [0.5, 1] at which to stop; 1 never stops before the cap.
    max_samples : int, optional
        Cap on the samples per query (the paper: 40).

    References
    ----------
    P. Aggarwal, A. Madaan, Y. Yang, Mausam. "Let's Sample Step by Step: Adaptive-Consistency
    for Efficient Reasoning and Coding with LLMs." EMNLP 2023.
    """

    _knob_range = (0.5, 1.0)

    def __init__(self, *, threshold: float = 0.95, max_samples: int | None = None) -> None:
        self.threshold = threshold
        self.max_samples = max_samples

    def confidence(self, traj: Trajectories) -> Float:
        """``P(p_leader > p_runner_up)`` after each prefix, shape (N, R, width)."""
        table = _beta_table(traj.width + 1)
        return _stat_lookup(table, traj.top[..., 0], traj.top[..., 1])

    def _fires(self, traj: Trajectories, prior: Float | None) -> Bool:
        return (self.confidence(traj) >= self.threshold) & (traj.top[..., 0] > 0)


@lru_cache(maxsize=8)
def _gamma_nodes(size: int, n_nodes: int) -> tuple[Float, Float]:
    """Quadrature nodes ``x = F_alpha^{-1}(v^alpha)`` and weights for ``alpha = 1 .. size``.

    The substitution ``u = v^alpha`` smooths the integrand ``prod_j F_j(F_alpha^{-1}(u))``,
    which behaves like a fractional power of ``u`` near 0, so Gauss-Legendre in ``v``
    converges fast.
    """
    x, w = np.polynomial.legendre.leggauss(n_nodes)
    v, w = (x + 1.0) / 2.0, w / 2.0
    alpha = np.arange(1, size + 1, dtype=np.float64)[:, None]
    nodes = gammaincinv(alpha, v[None, :] ** alpha)
    weights = w[None, :] * alpha * v[None, :] ** (alpha - 1.0)
    return nodes, weights


def dirichlet_leader_probability(counts: ArrayLike, *, n_nodes: int = 64) -> Float:
    """Probability that the leading answer has the largest share under ``Dirichlet(counts + 1)``.

    With ``p ~ Dirichlet(c_1 + 1, ..., c_k + 1)`` written as normalised independent
    ``G_j ~ Gamma(c_j + 1)``, ``P(p_1 = max_j p_j) = P(G_1 > max_{j>1} G_j)
    = int_0^1 prod_{j>1} F_j(F_1^{-1}(u)) du`` with ``F_j`` the Gamma CDFs. The one-dimensional
    integral is computed by Gauss-Legendre quadrature after the substitution
    ``u = v^(c_1 + 1)``; against adaptive quadrature the error is below 1e-7 with the default
    64 nodes (smallest when the leader is far ahead, largest when the counts are close).

    Parameters
    ----------
    counts : array-like of int, shape (n_rows, k)
        Answer counts, the leader first; a zero-count column is a cluster with a flat prior.
    n_nodes : int
        Quadrature nodes.

    Returns
    -------
    ndarray of shape (n_rows,)

    Examples
    --------
    >>> dirichlet_leader_probability([[4, 0]]).round(5)  # Beta(5, 1): 1 - 2**-5
    array([0.96875])
    """
    c = np.asarray(counts, dtype=np.int64)
    c = c.reshape(-1, c.shape[-1])
    nodes, weights = _gamma_nodes(int(c.max(initial=0)) + 1, n_nodes)
    x = nodes[c[:, 0]]
    cdfs = gammainc(c[:, 1:, None] + 1.0, x[:, None, :])
    return np.asarray((np.prod(cdfs, axis=1) * weights[c[:, 0]]).sum(axis=1))


class DirichletRule(StoppingRule):
    """Adaptive-Consistency's Dirichlet stopping rule.

    The posterior over the shares of the ``top_k`` most frequent answers so far is
    ``Dirichlet(counts + 1)``; the rule stops when the probability that the leading answer
    has the largest share reaches ``threshold`` (computed by
    :func:`dirichlet_leader_probability`). With fewer than two distinct answers a zero-count
    runner-up is added, which makes the rule the Beta rule whenever at most two answers are
    seen (the paper falls back to the Beta rule below three).

    Parameters
    ----------
    threshold : float
        Confidence in [0, 1] at which to stop.
    top_k : int
        Most frequent answers in the posterior (the paper: 5), between 2 and 8.
    max_samples : int, optional
        Cap on the samples per query.
    """

    def __init__(
        self, *, threshold: float = 0.95, top_k: int = 5, max_samples: int | None = None
    ) -> None:
        self.threshold = threshold
        self.top_k = top_k
        self.max_samples = max_samples

    def confidence(self, traj: Trajectories) -> Float:
        """Posterior probability that the leader is the largest share, shape (N, R, width)."""
        _check_int(self.top_k, "top_k", "DirichletRule", low=2, high=MAX_TOP_K)
        return _dirichlet_confidence(traj, int(self.top_k))

    def _fires(self, traj: Trajectories, prior: Float | None) -> Bool:
        return (self.confidence(traj) >= self.threshold) & (traj.top[..., 0] > 0)


@lru_cache(maxsize=4)
def _dirichlet_confidence(traj: Trajectories, top_k: int) -> Float:
    """:meth:`DirichletRule.confidence`, computed once per distinct vote state and cached."""
    top = traj.top[..., :top_k].reshape(-1, min(top_k, traj.top.shape[3]))
    n_seen = np.maximum((top > 0).sum(axis=1), 2)
    keep = np.arange(top.shape[1])[None, :] < n_seen[:, None]
    rows, inverse = np.unique(np.where(keep, top, -1), axis=0, return_inverse=True)
    widths = (rows >= 0).sum(axis=1)
    probs = np.empty(len(rows))
    for width in np.unique(widths):
        sel = widths == width
        probs[sel] = dirichlet_leader_probability(rows[sel, :width])
    out = probs[inverse.reshape(-1)].reshape(traj.top.shape[:3])
    out.setflags(write=False)
    return out


class EntropyRule(StoppingRule):
    """Adaptive-Consistency's entropy stopping rule.

    The normalised entropy of the answers so far is ``H(counts) / log(d)`` with ``d`` the
    number of distinct answers; when only one answer was seen, a phantom answer with one vote
    is added (``d = 2``), as in the paper. The rule stops once at least ``min_samples`` were
    drawn and the normalised entropy is at most ``threshold``.

    Parameters
    ----------
    threshold : float
        Normalised entropy in [0, 1] at or below which to stop; 0 never stops before the cap.
    min_samples : int
        Samples drawn before the rule may stop (the paper: 2).
    max_samples : int, optional
        Cap on the samples per query.
    """

    _knob_raises_cost = False

    def __init__(
        self, *, threshold: float = 0.25, min_samples: int = 2, max_samples: int | None = None
    ) -> None:
        self.threshold = threshold
        self.min_samples = min_samples
        self.max_samples = max_samples

    def normalized_entropy(self, traj: Trajectories) -> Float:
        """Normalised entropy of the answer counts after each prefix, shape (N, R, width)."""
        m = traj.answered.astype(np.float64)
        one = traj.distinct <= 1
        total = np.where(one, m + 1.0, m)
        clc = traj.count_log_count
        with np.errstate(invalid="ignore", divide="ignore"):
            h = np.log(total) - clc / total
            norm = h / np.log(np.where(one, 2.0, traj.distinct.astype(np.float64)))
        return np.where(m > 0, norm, np.inf)

    def _fires(self, traj: Trajectories, prior: Float | None) -> Bool:
        ok = traj.t[None, None, :] >= self.min_samples
        return ok & (self.normalized_entropy(traj) <= self.threshold)


class MajorityShareRule(StoppingRule):
    """Stop when the leading answer holds at least ``threshold`` of the samples drawn.

    Parameters
    ----------
    threshold : float
        Share ``a / t`` in [0, 2] at which to stop (above 1 never stops before the cap).
    min_samples : int
        Samples drawn before the rule may stop (the Adaptive-Consistency code: 2).
    max_samples : int, optional
        Cap on the samples per query.
    """

    _knob_range = (0.0, 2.0)

    def __init__(
        self, *, threshold: float = 0.8, min_samples: int = 2, max_samples: int | None = None
    ) -> None:
        self.threshold = threshold
        self.min_samples = min_samples
        self.max_samples = max_samples

    def _fires(self, traj: Trajectories, prior: Float | None) -> Bool:
        t = traj.t[None, None, :]
        share = traj.top[..., 0] / t
        return (t >= self.min_samples) & (share >= self.threshold) & (traj.top[..., 0] > 0)


class WindowRule(StoppingRule):
    """Early-Stopping Self-Consistency (Li et al., ICLR 2024): stop on a unanimous window.

    Samples are drawn in windows of ``window``; after each full window (``t = w, 2w, ...``) the
    rule stops if all answers in that window are the same (and present). The returned answer
    is the plurality of all samples drawn.

    Parameters
    ----------
    window : int
        Window size ``w >= 1`` (the paper: 5 with a cap of 40); larger windows spend more.
    max_samples : int, optional
        Cap on the samples per query.

    References
    ----------
    Y. Li, P. Yuan, S. Feng, B. Pan, X. Wang, B. Sun, H. Wang, K. Li. "Escape Sky-high Cost:
    Early-stopping Self-Consistency for Multi-step Reasoning." ICLR 2024.
    """

    _knob = "window"
    _knob_range = (1.0, 4096.0)
    _knob_integer = True

    def __init__(self, *, window: int = 5, max_samples: int | None = None) -> None:
        self.window = window
        self.max_samples = max_samples

    def _fires(self, traj: Trajectories, prior: Float | None) -> Bool:
        _check_int(self.window, "window", "WindowRule", low=1)
        return (_run_lengths(traj.labels) >= self.window) & (traj.t % self.window == 0)


def _run_lengths(labels: NDArray[np.int16]) -> Int:
    """Length of the run of one same answer ending at each position (0 at an abstain)."""
    same = np.zeros(labels.shape, dtype=bool)
    same[..., 1:] = (labels[..., 1:] == labels[..., :-1]) & (labels[..., 1:] >= 0)
    pos = np.arange(labels.shape[-1])
    start = np.maximum.accumulate(np.where(same, 0, pos), axis=-1)
    return np.where(labels >= 0, pos - start + 1, 0)


# --------------------------------------------------------------------------- learned policy

_N_MOVES = 3  # from (t, a, b) one more sample leads to (a + 1, b), (a, b + 1) or (a, b)
_TABLE_CACHE = 256  # decision tables kept per fitted policy (one per price tried)


def _vote_state(traj: Trajectories) -> tuple[Int, Int]:
    """Leader and runner-up counts ``(a, b)`` after each prefix, each (N, R, width)."""
    return traj.top[..., 0].astype(np.int64), traj.top[..., 1].astype(np.int64)


def _state_statistics(traj: Trajectories, table: Int, n_tables: int) -> tuple[Float, Float, Float]:
    """Visits, summed correctness and moves per (table, t, a, b) state of replayed orders.

    ``table`` (N,) is each query's table index. Returns ``visits`` and ``correct`` of shape
    (n_tables, T, A, A) and ``moves`` (n_tables, T, A, A, 3): how often a visit with a next
    sample went to ``(a + 1, b)``, ``(a, b + 1)`` or stayed at ``(a, b)``.
    """
    a, b = _vote_state(traj)
    w = a.shape[2]
    side = w + 1
    j = np.broadcast_to(np.arange(w), a.shape)
    tab = np.broadcast_to(table[:, None, None], a.shape)
    flat = ((tab * w + j) * side + a) * side + b
    size = n_tables * w * side * side
    seen = j < traj.cap[:, None, None]
    visits = np.bincount(flat[seen], minlength=size).astype(np.float64)
    correct = np.bincount(flat[seen], weights=traj.correct[seen], minlength=size).astype(np.float64)
    go = (j[..., :-1] + 1) < traj.cap[:, None, None]
    kind = np.where(a[..., 1:] > a[..., :-1], 0, np.where(b[..., 1:] > b[..., :-1], 1, 2))
    moves = np.bincount(flat[..., :-1][go] * _N_MOVES + kind[go], minlength=size * _N_MOVES).astype(
        np.float64
    )
    shape = (n_tables, w, side, side)
    return visits.reshape(shape), correct.reshape(shape), moves.reshape((*shape, _N_MOVES))


def _decision_tables(visits: Float, correct: Float, moves: Float, lam: float) -> NDArray[np.int8]:
    """Optimal stopping by backward induction: 1 stop, 0 continue, -1 state never visited.

    ``V_T(s) = acc(s)``; ``V_t(s) = max(acc(s), sum_k P_k(s) V_{t+1}(s_k) - lam)`` with the
    three successors ``s_k`` of ``s = (a, b)`` and the empirical move probabilities ``P_k``.
    A decided vote (``a - b`` above the samples left) always stops: no sample can change it.
    """
    n_tables, w, side, _ = visits.shape
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.nan_to_num(correct / visits)
        total = moves.sum(axis=4)
        prob = np.nan_to_num(moves / total[..., None])
    decision = np.where(visits > 0, 1, -1).astype(np.int8)
    value = np.zeros((n_tables, side + 1, side + 1))
    value[:, :side, :side] = acc[:, w - 1]
    lead = np.arange(side)[:, None] - np.arange(side)[None, :]
    for j in range(w - 2, -1, -1):
        nxt = value
        q = (
            prob[:, j, :, :, 0] * nxt[:, 1:, :side]
            + prob[:, j, :, :, 1] * nxt[:, :side, 1:]
            + prob[:, j, :, :, 2] * nxt[:, :side, :side]
            - lam
        )
        open_vote = lead <= w - (j + 1)
        go_on = (total[:, j] > 0) & (q > acc[:, j]) & open_vote
        decision[:, j][go_on] = 0
        value = np.zeros_like(nxt)
        value[:, :side, :side] = np.where(go_on, q, acc[:, j])
    return decision


def _shrunk_correct(visits: Float, correct: Float, pseudo_visits: float) -> Float:
    """Summed correctness whose per-state mean is shrunk toward the same votes at any ``t``.

    Each visited state's expected correctness ``correct / visits`` becomes
    ``(correct + k * acc(a, b)) / (visits + k)`` with ``k = pseudo_visits`` and ``acc(a, b)``
    the correctness of the votes ``(a, b)`` pooled over every ``t`` of the same table; the
    returned array holds those means times ``visits + k`` (0 where unvisited), so that
    ``_decision_tables(visits + k, result, moves, lam)`` reads the shrunk means.

    Parameters
    ----------
    visits, correct : ndarray of shape (n_tables, T, A, A)
    pseudo_visits : float
        Weight ``k >= 0`` of the pooled correctness, in visits.

    Returns
    -------
    ndarray of shape (n_tables, T, A, A)
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        pooled = np.nan_to_num(
            correct.sum(axis=1, keepdims=True) / visits.sum(axis=1, keepdims=True)
        )
    return np.where(visits > 0, correct + pseudo_visits * pooled, 0.0)


def _top_share(pools: AnswerPools) -> Float:
    """Share of each pool held by its most frequent answer (the agreement of the query)."""
    top = np.maximum(pools.gold, pools.others.max(axis=1, initial=0))
    return np.asarray(top / np.maximum(pools.n, 1), dtype=np.float64)


class LagrangianStopping(StoppingRule):
    """computealloc's sequential policy: optimal stopping on learned answer-count dynamics.

    The policy solves, for the dual price ``lam`` of one sample,

        max  E[accuracy at the stop] - lam * E[samples drawn]

    over stopping rules that look at the vote state ``(t, a, b)``: samples drawn, votes of
    the leading answer and of the runner-up. The state's dynamics are learned from training
    queries (an empirical-Bayes prior over answer-count trajectories): their pools are
    replayed in random orders, and for every state the policy records the expected accuracy of
    stopping there and the frequencies of the three possible next states ``(a + 1, b)``,
    ``(a, b + 1)`` and ``(a, b)``. Backward induction from the cap gives the optimal decision
    in every state; a decided vote (the leader ahead by more than the samples left) always
    stops. A budget sets ``lam`` (:func:`calibrate_stopping`): the mean samples are
    non-increasing in ``lam``, since the optimal stopping region only grows with the price.

    A state's expected accuracy is a mean over the training queries that reach it, noisy for
    rare states, and at small prices the decisions hinge on small differences between such
    means. Each state's accuracy is therefore shrunk toward that of the same votes
    ``(a, b)`` at any ``t`` (the votes for other answers matter less than the two leading
    counts), with the weight of ``smoothing`` training queries against the state's own
    visits (empirical Bayes); the move frequencies are used as estimated.

    With ``n_groups > 1`` a learned prior joins the state: a LightGBM regressor predicts each
    query's agreement (the share of its most frequent answer) from cheap features, the
    training queries are split into ``n_groups`` quantile groups of their out-of-fold
    predictions, and each group gets its own dynamics (states a group never visited fall back
    to the pooled decision). One ``lam`` for all groups splits the budget between them
    optimally.

    Parameters
    ----------
    lam : float
        Price of one sample in accuracy units, in [-1, 1]. A negative price rewards sampling:
        it spends budgets beyond the point where the training data show no further gain
        (at ``-1`` every undecided vote runs to the cap).
    smoothing : float
        Strength, in training queries, of the shrinkage of each state's expected accuracy
        toward that of the same votes at any ``t``; 0 uses the raw per-state means. The
        default 1 was chosen on the calibration queries of the held-out protocol.
    n_groups : int
        Prior groups (1: no prior, the dynamics of all queries pooled).
    max_samples : int, optional
        Cap on the samples per query; the training pools' size by default.
    n_orders : int
        Replayed orders per training query.
    random_state : int
        Seed of the replays and of the prior model.

    Attributes
    ----------
    horizon_ : int
        The cap the decisions were computed for.
    visits_, correct_ : ndarray of shape (n_tables, horizon_, horizon_ + 1, horizon_ + 1)
        Visits and summed expected correctness per (table, t - 1, a, b); table 0 pools all
        training queries, table ``1 + g`` holds group ``g`` (``n_tables`` is 1 without a
        prior, ``1 + n_groups`` with one).
    moves_ : ndarray of shape (n_tables, horizon_, horizon_ + 1, horizon_ + 1, 3)
        Next-state counts per state.
    group_edges_ : ndarray of shape (n_groups - 1,)
        Prior-score quantiles separating the groups.
    prior_model_ : lightgbm.Booster or None
        The prior regressor (None when ``n_groups == 1``).

    Notes
    -----
    The vote state is not a sufficient statistic of the answers (it forgets the smaller
    clusters), so the decisions are optimal for the Markov chain the training data induce on
    it, not for every query. Unvisited states continue sampling up to the cap.
    """

    _knob = "lam"
    _knob_range = (-1.0, 1.0)
    _knob_raises_cost = False

    def __init__(
        self,
        *,
        lam: float = 0.0,
        smoothing: float = 1.0,
        n_groups: int = 1,
        max_samples: int | None = None,
        n_orders: int = 64,
        random_state: int = 0,
    ) -> None:
        self.lam = lam
        self.smoothing = smoothing
        self.n_groups = n_groups
        self.max_samples = max_samples
        self.n_orders = n_orders
        self.random_state = random_state

    def fit(
        self, pools: AnswerPools, X: ArrayLike | pd.DataFrame | None = None
    ) -> LagrangianStopping:
        """Learn the vote-state dynamics (and the prior, with ``n_groups > 1``) from pools.

        Parameters
        ----------
        pools : AnswerPools
            Training queries' samples (under the held-out protocol: half A).
        X : array-like or DataFrame of shape (n_queries, n_features), optional
            Cheap features of the same queries; required when ``n_groups > 1``.

        Returns
        -------
        self
        """
        _check_pools(pools, "LagrangianStopping.fit")
        self._pseudo_visits()
        _check_int(self.n_groups, "n_groups", "LagrangianStopping", low=1)
        _check_int(self.n_orders, "n_orders", "LagrangianStopping", low=1)
        traj = replay(
            pools,
            n_orders=self.n_orders,
            random_state=self.random_state,
            max_samples=self.max_samples,
        )
        group = np.zeros(pools.n_queries, dtype=np.int64)
        self.prior_model_: lgb.Booster | None = None
        self.group_edges_ = np.zeros(0)
        if self.n_groups > 1:
            scores = self._fit_prior(pools, X)
            self.group_edges_ = np.quantile(scores, np.linspace(0, 1, self.n_groups + 1)[1:-1])
            group = np.searchsorted(self.group_edges_, scores, side="right")
        visits, correct, moves = _state_statistics(traj, group, self.n_groups)
        if self.n_groups > 1:  # table 0 pools the groups
            visits, correct, moves = (
                np.concatenate([v.sum(axis=0, keepdims=True), v]) for v in (visits, correct, moves)
            )
        self.visits_, self.correct_, self.moves_ = visits, correct, moves
        self.horizon_ = traj.width
        self._cache: dict[tuple[float, float], NDArray[np.int8]] = {}
        return self

    def _fit_prior(self, pools: AnswerPools, X: ArrayLike | pd.DataFrame | None) -> Float:
        """Fit the prior regressor; return out-of-fold prior scores of the training queries."""
        if X is None:
            raise ValueError(
                "LagrangianStopping with n_groups > 1 needs the features `X` of the training "
                "queries."
            )
        x = _feature_array(X, pools.n_queries, "LagrangianStopping.fit")
        y = _top_share(pools)
        folds = KFold(
            n_splits=min(5, pools.n_queries), shuffle=True, random_state=self.random_state
        )
        oof = np.empty(pools.n_queries)
        for fit_rows, held in folds.split(x):
            oof[held] = self._regressor().fit(x[fit_rows], y[fit_rows]).predict(x[held])
        self.prior_model_ = self._regressor().fit(x, y).booster_
        return oof

    def _regressor(self) -> lgb.LGBMRegressor:
        return lgb.LGBMRegressor(
            n_estimators=100,
            max_depth=3,
            num_leaves=8,
            learning_rate=0.05,
            min_child_samples=20,
            random_state=self.random_state,
            n_jobs=1,
            verbose=-1,
        )

    def predict_prior(self, X: ArrayLike | pd.DataFrame) -> Float:
        """Prior scores (predicted agreement) of queries, shape (n_queries,); 0 without a prior."""
        self._check_fitted()
        x = np.asarray(X, dtype=np.float64)
        x = x.reshape(1, -1) if x.ndim == 1 else x
        if self.prior_model_ is None:
            return np.zeros(x.shape[0])
        return np.asarray(self.prior_model_.predict(x), dtype=np.float64)

    def decision_table(self, lam: float | None = None) -> NDArray[np.int8]:
        """Decisions per (table, t - 1, a, b) at price ``lam`` (``self.lam`` by default).

        Backward induction on the fitted statistics, each state's expected accuracy shrunk by
        ``smoothing`` toward that of its votes at any ``t``.

        Returns
        -------
        ndarray of shape (n_tables, horizon_, horizon_ + 1, horizon_ + 1), int8
            1 stop, 0 continue, -1 state never visited in training.
        """
        self._check_fitted()
        price = float(self.lam if lam is None else lam)
        k = self._pseudo_visits()
        if (price, k) not in self._cache:
            if len(self._cache) >= _TABLE_CACHE:
                self._cache.clear()
            visits = np.where(self.visits_ > 0, self.visits_ + k, 0.0)
            correct = _shrunk_correct(self.visits_, self.correct_, k)
            self._cache[price, k] = _decision_tables(visits, correct, self.moves_, price)
        return self._cache[price, k]

    def _pseudo_visits(self) -> float:
        """``smoothing`` in visits (a training query makes ``n_orders`` of them)."""
        k = self.smoothing
        if isinstance(k, bool) or not isinstance(k, Real) or not 0.0 <= float(k) < np.inf:
            raise ValueError(
                f"The 'smoothing' parameter of LagrangianStopping must be a float in [0, inf). "
                f"Got {k!r} instead."
            )
        return float(k) * self.n_orders

    def _live_cap(self, t: int) -> int:
        self._check_fitted()
        return self.horizon_

    def _check_fitted(self) -> None:
        if not hasattr(self, "visits_"):
            raise ValueError(
                "This LagrangianStopping instance is not fitted yet. Call 'fit' with training "
                "pools first."
            )

    def _fires(self, traj: Trajectories, prior: Float | None) -> Bool:
        table = self.decision_table()
        w = self.horizon_
        n = traj.cap.shape[0]
        group = np.zeros(n, dtype=np.int64)
        if table.shape[0] > 1:
            if prior is None:
                raise ValueError(
                    "LagrangianStopping with n_groups > 1 needs each query's `prior` score "
                    "(see predict_prior)."
                )
            group = 1 + np.searchsorted(self.group_edges_, prior, side="right")
        a, b = _vote_state(traj)
        j = np.minimum(np.broadcast_to(np.arange(traj.width), a.shape), w - 1)
        a, b = np.minimum(a, w), np.minimum(b, w)
        own = table[group[:, None, None], j, a, b]
        pooled = table[0, j, a, b]
        decision = np.where(own >= 0, own, np.where(pooled >= 0, pooled, 0))
        left = traj.cap[:, None, None] - traj.t[None, None, :]
        return (decision == 1) | (a - b > left) | (traj.t[None, None, :] >= w)


def _feature_array(X: ArrayLike | pd.DataFrame, n_rows: int, where: str) -> Float:
    x = np.asarray(X, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != n_rows:
        raise ValueError(
            f"The 'X' parameter of {where} must have shape ({n_rows}, n_features). Got "
            f"{x.shape} instead."
        )
    return x


# --------------------------------------------------------------------------- calibration

#: Bisection steps on a continuous knob (enough to land on the jump of a step function).
_BISECT_STEPS = 60


@dataclass(frozen=True)
class CalibratedStopping:
    """A rule whose knob was set so that its mean samples equal a budget.

    Where no single knob value hits the budget (the mean samples jump over it), each query
    uses ``high`` with probability ``mix`` and ``low`` otherwise, so the expected mean is the
    budget.

    Attributes
    ----------
    low, high : StoppingRule
        The cheaper and the costlier setting (the same rule when one setting hits the budget
        or the budget is out of reach).
    mix : float
        Probability of ``high`` per query.
    budget : float
        The target mean samples per query.
    samples : float
        Expected mean samples reached on the calibration pools; differs from ``budget`` only
        when the budget is below the rule's cheapest or above its costliest setting.
    accuracy : float
        Expected accuracy on the calibration pools.
    """

    low: StoppingRule
    high: StoppingRule
    mix: float
    budget: float
    samples: float
    accuracy: float

    @property
    def max_samples(self) -> int | None:
        return self.low.max_samples

    def pick(self, random_state: int | np.random.Generator | None = None) -> StoppingRule:
        """The setting one query uses: ``high`` with probability ``mix``."""
        rng = np.random.default_rng(random_state)
        return self.high if rng.random() < self.mix else self.low

    def describe(self) -> str:
        """The knob values and the mix, e.g. ``"threshold=0.9375|0.9375 mix=0.31"``."""
        name = self.low._knob
        lo, hi = getattr(self.low, name), getattr(self.high, name)
        return f"{name}={lo:.6g}|{hi:.6g} mix={self.mix:.3f}"


def _bracket(
    cost: Callable[[float], float], rule: StoppingRule, width: int, budget: float
) -> tuple[float, float, float, float]:
    """Knob values ``(cheap, costly)`` next to each other whose costs bracket ``budget``."""
    lo, hi = rule._knob_range
    if rule._knob_integer:
        hi = float(min(hi, width + 1))
    cheap, costly = (lo, hi) if rule._knob_raises_cost else (hi, lo)
    c_cheap, c_costly = cost(cheap), cost(costly)
    if budget <= c_cheap:
        return cheap, cheap, c_cheap, c_cheap
    if budget >= c_costly:
        return costly, costly, c_costly, c_costly
    for _ in range(_BISECT_STEPS):
        mid = float((cheap + costly) // 2) if rule._knob_integer else (cheap + costly) / 2
        if mid in (cheap, costly):
            break
        c_mid = cost(mid)
        if c_mid <= budget:
            cheap, c_cheap = mid, c_mid
        else:
            costly, c_costly = mid, c_mid
    return cheap, costly, c_cheap, c_costly


def calibrate_stopping(
    rule: StoppingRule,
    pools: AnswerPools,
    budget: float,
    *,
    prior: ArrayLike | None = None,
    n_orders: int = 64,
    random_state: int = 0,
) -> CalibratedStopping:
    """Set a rule's knob so that its mean samples per query on ``pools`` equal ``budget``.

    The knob (``threshold``, ``window`` or ``lam``) moves the mean samples monotonically;
    bisection finds the two adjacent settings whose replayed mean samples bracket the budget,
    and a per-query mix of the two hits it in expectation.

    Parameters
    ----------
    rule : StoppingRule
        The rule (fitted, for :class:`LagrangianStopping`); its other parameters are kept.
    pools : AnswerPools
        Calibration queries: neither the queries a learned rule was fitted on nor those it
        will be evaluated on.
    budget : float
        Target mean samples per query, >= 1.
    prior : array-like of shape (n_queries,), optional
        The calibration queries' prior scores, for rules that read them.
    n_orders : int
        Replayed orders per query.
    random_state : int
        Seed of the orders.

    Returns
    -------
    CalibratedStopping

    Notes
    -----
    A budget out of the rule's reach (below the samples of its cheapest setting, above those
    of its costliest) returns that setting; ``samples`` says what is reached.

    Examples
    --------
    >>> pools = AnswerPools(np.array([3, 1]), np.array([[1], [3]]), np.array([0, 0]),
    ...                     ("q1", "q2"))
    >>> cal = calibrate_stopping(BetaRule(), pools, 2.5)
    >>> round(cal.samples, 6)
    2.5
    """
    budget = check_budget(budget, "calibrate_stopping")
    if budget < 1.0:
        raise ValueError(
            f"The 'budget' parameter of calibrate_stopping must be a float in [1, inf) "
            f"(samples per query). Got {budget!r} instead."
        )
    _check_rule(rule, "calibrate_stopping")
    traj = _replay_cached(pools, n_orders, random_state, rule.max_samples)
    pri = _prior_array(prior, pools.n_queries)

    def cost(value: float) -> float:
        return float(rule._with_knob(value).stopping_times(traj, pri).mean())

    cheap, costly, c_cheap, c_costly = _bracket(cost, rule, traj.width, budget)
    gap = c_costly - c_cheap
    mix = float(np.clip((budget - c_cheap) / gap, 0.0, 1.0)) if gap > 0 else 0.0
    low, high = rule._with_knob(cheap), rule._with_knob(costly)
    calibrated = CalibratedStopping(low, high, mix, budget, 0.0, 0.0)
    acc, samples = _expected(calibrated, traj, pri)
    return CalibratedStopping(low, high, mix, budget, float(samples.mean()), float(acc.mean()))


# --------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class StoppingResult:
    """Expected accuracy and samples of a stopping rule over replayed orders.

    Attributes
    ----------
    accuracy, mean_samples : float
        Means over queries and orders.
    accuracy_se, samples_se : float
        Monte Carlo standard errors over the orders (the queries are held fixed).
    query_accuracy, query_samples : ndarray of shape (n_queries,)
        Per-query expectations over the orders.
    """

    accuracy: float
    mean_samples: float
    accuracy_se: float
    samples_se: float
    query_accuracy: Float
    query_samples: Float


def _outcomes(rule: StoppingRule, traj: Trajectories, prior: Float | None) -> tuple[Float, Float]:
    """Correctness and samples at the stop of every replayed order, each (N, R)."""
    times = rule.stopping_times(traj, prior)
    acc = np.take_along_axis(traj.correct, (times - 1)[..., None], axis=2)[..., 0]
    return acc, times.astype(np.float64)


def _expected(
    rule: StoppingRule | CalibratedStopping, traj: Trajectories, prior: Float | None
) -> tuple[Float, Float]:
    """Per (query, order) expected correctness and samples, the mix averaged exactly."""
    if isinstance(rule, StoppingRule):
        return _outcomes(rule, traj, prior)
    acc_lo, n_lo = _outcomes(rule.low, traj, prior)
    if rule.mix == 0.0:
        return acc_lo, n_lo
    acc_hi, n_hi = _outcomes(rule.high, traj, prior)
    w = rule.mix
    return (1 - w) * acc_lo + w * acc_hi, (1 - w) * n_lo + w * n_hi


def evaluate_stopping(
    rule: StoppingRule | CalibratedStopping,
    pools: AnswerPools,
    *,
    prior: ArrayLike | None = None,
    n_orders: int = 128,
    random_state: int = 0,
) -> StoppingResult:
    """Expected accuracy and samples of a rule, replaying each pool in random orders.

    Parameters
    ----------
    rule : StoppingRule or CalibratedStopping
    pools : AnswerPools
        The queries' logged samples (under the held-out protocol: half B); each query's pool
        size caps its samples.
    prior : array-like of shape (n_queries,), optional
        Prior scores, for rules that read them.
    n_orders : int
        Replayed orders per query.
    random_state : int
        Seed of the orders (the same seed pairs the errors of different rules).

    Returns
    -------
    StoppingResult

    Examples
    --------
    >>> pools = AnswerPools(np.array([3]), np.array([[1]]), np.array([0]), ("q",))
    >>> res = evaluate_stopping(BetaRule(threshold=1.0), pools)  # never settled: votes all 4
    >>> res.accuracy, res.mean_samples
    (1.0, 4.0)
    >>> round(evaluate_stopping(WindowRule(window=1), pools, n_orders=4000).accuracy, 2)
    0.75
    """
    _check_rule(rule, "evaluate_stopping")
    traj = _replay_cached(pools, n_orders, random_state, rule.max_samples)
    acc, samples = _expected(rule, traj, _prior_array(prior, pools.n_queries))
    se = _order_se
    return StoppingResult(
        float(acc.mean()),
        float(samples.mean()),
        se(acc),
        se(samples),
        acc.mean(axis=1),
        samples.mean(axis=1),
    )


def _order_se(values: Float) -> float:
    """Monte Carlo standard error over the orders (axis 1) of the mean over queries."""
    r = values.shape[1]
    return float(values.mean(axis=0).std(ddof=1) / np.sqrt(r)) if r > 1 else float("nan")


def stopping_curve(
    rule: StoppingRule,
    calibration: AnswerPools,
    test: AnswerPools,
    budgets: Iterable[float],
    *,
    prior_calibration: ArrayLike | None = None,
    prior_test: ArrayLike | None = None,
    n_orders: int = 64,
    random_state: int = 0,
) -> pd.DataFrame:
    """Accuracy against mean samples: calibrate on ``calibration`` per budget, score on ``test``.

    Parameters
    ----------
    rule : StoppingRule
    calibration, test : AnswerPools
        Disjoint query sets.
    budgets : iterable of float
        Mean samples per query, each >= 1.
    prior_calibration, prior_test : array-like, optional
        Prior scores of the two query sets (for rules that read them).
    n_orders : int
        Replayed orders per query.
    random_state : int
        Seed of the calibration orders; the test orders use ``random_state + 1``.

    Returns
    -------
    DataFrame
        One row per budget: ``budget, accuracy, mean_samples, accuracy_se,
        calibration_samples, setting``.
    """
    rows = []
    for budget in budgets:
        cal = calibrate_stopping(
            rule,
            calibration,
            budget,
            prior=prior_calibration,
            n_orders=n_orders,
            random_state=random_state,
        )
        res = evaluate_stopping(
            cal, test, prior=prior_test, n_orders=n_orders, random_state=random_state + 1
        )
        rows.append(
            {
                "budget": float(budget),
                "accuracy": res.accuracy,
                "mean_samples": res.mean_samples,
                "accuracy_se": res.accuracy_se,
                "calibration_samples": cal.samples,
                "setting": cal.describe(),
            }
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- protocol

#: Methods of :func:`sequential_methods`, in report order. ``@`` names a fixed published
#: setting (not calibrated to the budget).
SEQUENTIAL_METHODS: tuple[str, ...] = (
    "uniform-majority",
    "adaptive-consistency@0.95",
    "esc@5",
    "adaptive-consistency",
    "dirichlet",
    "entropy",
    "majority-share",
    "esc",
    "sequential/pooled",
    "sequential/prior",
    "sequential",
)

#: Prior groups of ``sequential/prior``.
PRIOR_GROUPS = 3


def _protocol_pools(
    log: SampleLog, protocol: str, seed: int, model: str
) -> tuple[AnswerPools, AnswerPools]:
    """Decision and report pools on the same queries (half A and half B under held-out)."""
    if protocol == "in-sample":
        pools = answer_pools(log, model=model)
        return pools, pools
    mine = (log.samples["model"] == model).to_numpy()
    half_a = split_samples(log.samples, seed=seed)
    qids = sorted(log.samples.loc[mine, "query_id"].unique().tolist())
    dec = answer_pools(log, model=model, sample_mask=half_a, query_ids=qids)
    rep = answer_pools(log, model=model, sample_mask=~half_a, query_ids=qids)
    keep = np.flatnonzero((dec.n > 0) & (rep.n > 0))
    return dec.subset(keep), rep.subset(keep)


def _uniform_majority(pools: AnswerPools, budget: float) -> tuple[float, float]:
    """Exact majority@B (a mix of the two nearest K for a fractional B), capped at the pool."""
    k_max = int(pools.n.min())
    b = min(budget, float(k_max))
    lo, hi = int(np.floor(b)), int(np.ceil(b))
    acc = majority_accuracy(pools.gold, pools.others, pools.abstain, [lo, hi]).mean(axis=0)
    w = b - lo
    return float((1 - w) * acc[0] + w * acc[1]), b


def _method_rules(max_samples: int | None) -> dict[str, StoppingRule]:
    return {
        "adaptive-consistency": BetaRule(max_samples=max_samples),
        "dirichlet": DirichletRule(max_samples=max_samples),
        "entropy": EntropyRule(max_samples=max_samples),
        "majority-share": MajorityShareRule(max_samples=max_samples),
        "esc": WindowRule(max_samples=max_samples),
    }


@dataclass(frozen=True)
class _Sets:
    """Training and calibration pools (decision half) and test pools (report half)."""

    train: AnswerPools
    cal: AnswerPools
    test: AnswerPools
    x_train: Float
    x_cal: Float
    x_test: Float


def _row(
    name: str, budget: float, res: StoppingResult, cal: CalibratedStopping | None
) -> dict[str, Any]:
    return {
        "method": name,
        "budget": budget,
        "accuracy": res.accuracy,
        "mean_cost": res.mean_samples,
        "accuracy_se": res.accuracy_se,
        "calibration_cost": np.nan if cal is None else cal.samples,
        "setting": "" if cal is None else cal.describe(),
    }


def sequential_methods(
    log: SampleLog,
    budgets: Iterable[float],
    *,
    seed: int = 0,
    protocol: Literal["held-out", "in-sample"] = "held-out",
    model: str | None = None,
    split: Sequence[float] = (0.6, 0.2, 0.2),
    features: pd.DataFrame | None = None,
    n_orders: int = 64,
    max_samples: int | None = None,
    methods: Iterable[str] | None = None,
) -> pd.DataFrame:
    """Every sequential method on one (seed, protocol): calibrated per budget, scored on test.

    The queries are split into train / calibration / test by
    :func:`~computealloc.splits.split_queries` (the split of :func:`computealloc.evaluate`
    for the same seed). Under ``"held-out"`` each query's samples are halved by
    :func:`~computealloc.splits.split_samples`: learned rules are fitted on half A of the
    training queries, every knob is calibrated on half A of the calibration queries, and the
    reported figures replay half B of the test queries (so at most ``n / 2`` samples per
    query). Under ``"in-sample"`` all samples serve both.

    Methods (:data:`SEQUENTIAL_METHODS`): ``uniform-majority`` (exact majority@B on the test
    pools); the published settings ``adaptive-consistency@0.95`` (:class:`BetaRule`) and
    ``esc@5`` (:class:`WindowRule`), not calibrated (``budget`` NaN); the budget-calibrated
    rules ``adaptive-consistency``, ``dirichlet``, ``entropy``, ``majority-share`` and
    ``esc``; computealloc's :class:`LagrangianStopping` without a prior
    (``sequential/pooled``) and with a feature prior of :data:`PRIOR_GROUPS` groups
    (``sequential/prior``); and ``sequential``, whichever of the two has the higher accuracy
    on the calibration queries at that budget.

    Parameters
    ----------
    log : SampleLog
    budgets : iterable of float
        Mean samples per query, each >= 1.
    seed : int
        Seed of the query split, the sample halves, the replays and the prior model.
    protocol : {"held-out", "in-sample"}
    model : str, optional
        The model whose samples are replayed; required for a log with several models.
    split : sequence of 3 floats
        Shares of train, calibration and test queries.
    features : DataFrame, optional
        Query features indexed by ``query_id`` for the prior;
        ``build_features(log).X`` (prompt features) by default.
    n_orders : int
        Replayed orders per query for fitting, calibrating and scoring.
    max_samples : int, optional
        Cap on the samples per query (the pool size by default).
    methods : iterable of str, optional
        A subset of :data:`SEQUENTIAL_METHODS` (all by default).

    Returns
    -------
    DataFrame
        One row per budget and method: ``method, budget, accuracy, mean_cost, accuracy_se``
        (Monte Carlo s.e. over the orders), ``calibration_cost`` (mean samples reached on
        the calibration queries), ``setting`` (the calibrated knob), ``protocol, seed,
        n_test``.

    Notes
    -----
    ``mean_cost`` is the test queries' realised mean samples; it differs from the budget by
    the calibration-to-test noise, and is capped by the pools (a budget above the cap
    cannot be spent).

    Examples
    --------
    >>> from computealloc import datasets  # doctest: +SKIP
    >>> log = datasets.load("mot_cascade:gpt-3.5-turbo/date/cot1-40")  # doctest: +SKIP
    >>> sequential_methods(log, [2, 4, 8], seed=0)  # doctest: +SKIP
    """
    budget_list = [_check_sequential_budget(b) for b in budgets]
    if protocol not in _PROTOCOLS:
        raise ValueError(
            f"The 'protocol' parameter of sequential_methods must be one of "
            f"{', '.join(map(repr, _PROTOCOLS))}. Got {protocol!r} instead."
        )
    if not isinstance(log, SampleLog):
        raise TypeError(
            f"The 'log' parameter of sequential_methods must be a SampleLog. Got "
            f"{type(log).__name__} instead."
        )
    wanted = _method_set(methods)
    name = _model_of(log, model, "sequential_methods")
    sets = _sets(log, protocol, seed, name, split, features)
    rows = _published_rows(sets, seed, n_orders, max_samples, wanted)
    rows += _budget_rows(sets, budget_list, seed, n_orders, max_samples, wanted)
    frame = pd.DataFrame(rows)
    frame["protocol"] = protocol
    frame["seed"] = seed
    frame["n_test"] = sets.test.n_queries
    order = {m: i for i, m in enumerate(SEQUENTIAL_METHODS)}
    return frame.sort_values(
        ["budget", "method"],
        key=lambda s: s.map(order) if s.name == "method" else s,
        na_position="first",
        kind="stable",
    ).reset_index(drop=True)


def _sets(
    log: SampleLog,
    protocol: str,
    seed: int,
    model: str,
    split: Sequence[float],
    features: pd.DataFrame | None,
) -> _Sets:
    dec, rep = _protocol_pools(log, protocol, seed, model)
    qs = split_queries(dec.n_queries, fractions=split, seed=seed)
    x = build_features(log).X if features is None else features
    xa = x.loc[list(dec.query_ids)].to_numpy(dtype=np.float64)
    return _Sets(
        dec.subset(qs.train),
        dec.subset(qs.calibration),
        rep.subset(qs.test),
        xa[qs.train],
        xa[qs.calibration],
        xa[qs.test],
    )


def _published_rows(
    sets: _Sets, seed: int, n_orders: int, max_samples: int | None, wanted: set[str]
) -> list[dict[str, Any]]:
    rows = []
    for name, rule in (
        ("adaptive-consistency@0.95", BetaRule(threshold=0.95, max_samples=max_samples)),
        ("esc@5", WindowRule(window=5, max_samples=max_samples)),
    ):
        if name not in wanted:
            continue
        res = evaluate_stopping(rule, sets.test, n_orders=n_orders, random_state=_stream(seed, 2))
        rows.append(_row(name, np.nan, res, None))
    return rows


def _stream(seed: int, purpose: int) -> int:
    """Replay seed of one purpose (1 training, 2 test, 3 calibration) for ``seed``."""
    return 10 * int(seed) + purpose


def _learned_rules(
    sets: _Sets, seed: int, n_orders: int, max_samples: int | None, wanted: set[str]
) -> dict[str, tuple[StoppingRule, Float | None, Float | None]]:
    """The fitted sequential policies asked for, with their calibration and test priors."""
    out: dict[str, tuple[StoppingRule, Float | None, Float | None]] = {}
    for name, n_groups in (("sequential/pooled", 1), ("sequential/prior", PRIOR_GROUPS)):
        if name not in wanted and "sequential" not in wanted:
            continue
        policy = LagrangianStopping(
            n_groups=n_groups,
            max_samples=max_samples,
            n_orders=n_orders,
            random_state=_stream(seed, 1),
        ).fit(sets.train, sets.x_train)
        if n_groups > 1:
            out[name] = (
                policy,
                policy.predict_prior(sets.x_cal),
                policy.predict_prior(sets.x_test),
            )
        else:
            out[name] = (policy, None, None)
    return out


def _uniform_row(sets: _Sets, budget: float) -> dict[str, Any]:
    acc, cost = _uniform_majority(sets.test, budget)
    return {
        "method": "uniform-majority",
        "budget": budget,
        "accuracy": acc,
        "mean_cost": cost,
        "accuracy_se": 0.0,
        "calibration_cost": np.nan,
        "setting": "",
    }


_RuleSet = dict[str, tuple[StoppingRule, Float | None, Float | None]]


def _rule_set(
    sets: _Sets, seed: int, n_orders: int, max_samples: int | None, wanted: set[str]
) -> tuple[_RuleSet, _RuleSet]:
    """The rules asked for (with calibration and test priors), and the learned ones among them."""
    rules: _RuleSet = {
        n: (r, None, None) for n, r in _method_rules(max_samples).items() if n in wanted
    }
    learned = _learned_rules(sets, seed, n_orders, max_samples, wanted)
    rules.update(learned)
    return rules, learned


def _calibrate(
    sets: _Sets, rules: _RuleSet, budget: float, seed: int, n_orders: int
) -> dict[str, CalibratedStopping]:
    """Every rule calibrated to ``budget`` on the calibration pools."""
    return {
        name: calibrate_stopping(
            rule, sets.cal, budget, prior=p_cal, n_orders=n_orders, random_state=_stream(seed, 3)
        )
        for name, (rule, p_cal, _) in rules.items()
    }


def _best_learned(calibrated: dict[str, CalibratedStopping], learned: _RuleSet) -> str:
    """The learned rule with the highest accuracy on the calibration queries."""
    return max(learned, key=lambda m: calibrated[m].accuracy)


def _budget_rows(
    sets: _Sets,
    budgets: list[float],
    seed: int,
    n_orders: int,
    max_samples: int | None,
    wanted: set[str],
) -> list[dict[str, Any]]:
    rules, learned = _rule_set(sets, seed, n_orders, max_samples, wanted)
    rows = []
    for budget in budgets:
        if "uniform-majority" in wanted:
            rows.append(_uniform_row(sets, budget))
        calibrated = _calibrate(sets, rules, budget, seed, n_orders)
        results = {
            name: evaluate_stopping(
                cal,
                sets.test,
                prior=rules[name][2],
                n_orders=n_orders,
                random_state=_stream(seed, 2),
            )
            for name, cal in calibrated.items()
        }
        rows += [_row(n, budget, results[n], calibrated[n]) for n in rules if n in wanted]
        if "sequential" in wanted:
            best = _best_learned(calibrated, learned)
            rows.append(_row("sequential", budget, results[best], calibrated[best]))
            rows[-1]["setting"] = f"{best}: {rows[-1]['setting']}"
    return rows


# --------------------------------------------------------------------------- deployable fit

#: Rules :func:`fit_stopping` can fit: the budget-calibrated methods of
#: :func:`sequential_methods`.
FIT_RULES: tuple[str, ...] = tuple(
    m
    for m in SEQUENTIAL_METHODS
    if m not in ("uniform-majority", "adaptive-consistency@0.95", "esc@5")
)


@dataclass(frozen=True)
class StoppingFit:
    """A stopping rule fitted and calibrated for serving, and how it did on unseen queries.

    Attributes
    ----------
    rule : CalibratedStopping
        Fitted on the train queries, calibrated to the budget on the calibration queries,
        capped at the log's samples per query (what :func:`~computealloc.persist.save_stopping`
        writes and ``computealloc serve`` runs).
    method : str
        The rule (for ``"sequential"``: which of ``sequential/pooled`` and
        ``sequential/prior`` was more accurate on the calibration queries).
    n_train, n_calibration, n_test : int
        Queries in each part of the split.
    test_accuracy, test_samples : float
        Expected accuracy and mean samples of the rule on the test queries, replaying all of
        their samples in seeded random orders.
    uniform_accuracy : float
        Exact majority@B (a two-K mix for fractional B) on the same test queries.
    """

    rule: CalibratedStopping
    method: str
    n_train: int
    n_calibration: int
    n_test: int
    test_accuracy: float
    test_samples: float
    uniform_accuracy: float


def fit_stopping(
    log: SampleLog,
    *,
    budget: float,
    method: str = "sequential",
    model: str | None = None,
    split: Sequence[float] = (0.6, 0.2, 0.2),
    n_orders: int = 64,
    max_samples: int | None = None,
    seed: int = 0,
) -> StoppingFit:
    """Fit one stopping rule for serving: train, calibrate to ``budget``, check on test.

    The queries are split as in :func:`sequential_methods` (in-sample protocol: every sample
    of a query is replayed). A learned rule's prior reads the prompt features
    (:func:`~computealloc.features.build_features`), which the runtime computes live.

    Parameters
    ----------
    log : SampleLog
    budget : float
        Mean samples per query, >= 1.
    method : str
        One of :data:`FIT_RULES`; ``"sequential"`` (computealloc's, the default) picks the
        better of the pooled and the prior-grouped :class:`LagrangianStopping` on the
        calibration queries.
    model : str, optional
        The model whose samples are used; required for a log with several models.
    split : sequence of 3 floats
        Shares of train, calibration and test queries.
    n_orders : int
        Replayed orders per query.
    max_samples : int, optional
        Cap on the samples of one query; the largest number a query of the log has by default.
    seed : int
        Seed of the split, the replays and the prior model.

    Returns
    -------
    StoppingFit
    """
    budget = _check_sequential_budget(budget)
    if method not in FIT_RULES:
        raise ValueError(
            f"The 'method' parameter of fit_stopping must be one of {', '.join(FIT_RULES)}. "
            f"Got {method!r} instead."
        )
    if not isinstance(log, SampleLog):
        raise TypeError(
            f"The 'log' parameter of fit_stopping must be a SampleLog. Got "
            f"{type(log).__name__} instead."
        )
    sets = _sets(log, "in-sample", seed, _model_of(log, model, "fit_stopping"), split, None)
    largest = int(max(sets.train.n.max(), sets.cal.n.max(), sets.test.n.max()))
    cap = largest if max_samples is None else _cap_of(max_samples, "fit_stopping")
    rules, learned = _rule_set(sets, seed, n_orders, cap, {method})
    calibrated = _calibrate(sets, rules, budget, seed, n_orders)
    chosen = _best_learned(calibrated, learned) if method == "sequential" else method
    result = evaluate_stopping(
        calibrated[chosen],
        sets.test,
        prior=rules[chosen][2],
        n_orders=n_orders,
        random_state=_stream(seed, 2),
    )
    return StoppingFit(
        rule=calibrated[chosen],
        method=chosen,
        n_train=sets.train.n_queries,
        n_calibration=sets.cal.n_queries,
        n_test=sets.test.n_queries,
        test_accuracy=result.accuracy,
        test_samples=result.mean_samples,
        uniform_accuracy=_uniform_majority(sets.test, budget)[0],
    )


# --------------------------------------------------------------------------- routing baseline


def threshold_router(
    scores: ArrayLike,
    share: float,
    *,
    calibration_scores: ArrayLike | None = None,
    random_state: int | np.random.Generator | None = 0,
) -> tuple[Bool, float]:
    """RouteLLM-style router: call the strong model when a query's score clears a quantile.

    The threshold is the ``1 - share`` quantile of the calibration scores (of ``scores``
    themselves by default), so that a share ``share`` of the queries go to the strong model;
    queries tied at the threshold go to the strong model with the probability that makes the
    expected share exact on the calibration scores.

    Parameters
    ----------
    scores : array-like of shape (n_queries,)
        Per-query router scores, higher meaning the strong model is more worth its cost (a
        predicted win rate or accuracy gain of strong over weak).
    share : float
        Target share of strong-model calls, in [0, 1].
    calibration_scores : array-like of shape (n_calibration,), optional
        Scores of calibration queries that set the threshold (streaming use).
    random_state : int, Generator or None
        Seed of the tie draws.

    Returns
    -------
    strong : ndarray of shape (n_queries,), bool
        Which queries are routed to the strong model.
    threshold : float
        The score threshold.

    Examples
    --------
    >>> strong, thr = threshold_router([0.1, 0.4, 0.3, 0.9], 0.5)
    >>> strong.tolist(), thr
    ([False, True, False, True], 0.4)
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    ref = s if calibration_scores is None else np.asarray(calibration_scores, np.float64).ravel()
    if isinstance(share, bool) or not isinstance(share, Real) or not 0.0 <= share <= 1.0:
        raise ValueError(
            f"The 'share' parameter of threshold_router must be a float in [0, 1]. Got "
            f"{share!r} instead."
        )
    if ref.size == 0 or not np.isfinite(ref).all() or not np.isfinite(s).all():
        raise ValueError("`scores` and `calibration_scores` must be non-empty and finite.")
    ranked = np.sort(ref)[::-1]
    k = share * ref.size
    if k <= 0:
        return np.zeros(s.size, dtype=bool), float(np.inf)
    threshold = float(ranked[min(int(np.ceil(k)), ref.size) - 1])
    above = float((ref > threshold).sum())
    tied = float((ref == threshold).sum())
    p_tie = float(np.clip((k - above) / tied, 0.0, 1.0))
    rng = np.random.default_rng(random_state)
    strong = (s > threshold) | ((s == threshold) & (rng.random(s.size) < p_tie))
    return strong, threshold


# --------------------------------------------------------------------------- validation


def _check_int(value: object, name: str, where: str, *, low: int, high: int | None = None) -> int:
    ok = isinstance(value, Integral) and not isinstance(value, bool)
    ok = ok and low <= int(value) and (high is None or int(value) <= high)  # type: ignore[call-overload]
    if not ok:
        upper = "inf)" if high is None else f"{high}]"
        raise ValueError(
            f"The {name!r} parameter of {where} must be an int in [{low}, {upper}. Got "
            f"{value!r} instead."
        )
    return int(value)  # type: ignore[call-overload]


def _cap_of(max_samples: object, where: str) -> int:
    return _check_int(max_samples, "max_samples", where, low=1)


def _check_pools(pools: object, where: str) -> None:
    if not isinstance(pools, AnswerPools):
        raise TypeError(
            f"The 'pools' parameter of {where} must be AnswerPools. Got {type(pools).__name__} "
            "instead."
        )
    if pools.n_queries == 0 or (pools.n < 1).any():
        raise ValueError(f"Every pool passed to {where} must hold at least one sample.")


def _check_rule(rule: object, where: str) -> None:
    if not isinstance(rule, (StoppingRule, CalibratedStopping)):
        raise TypeError(
            f"The 'rule' parameter of {where} must be a StoppingRule. Got {type(rule).__name__} "
            "instead."
        )


def _prior_array(prior: ArrayLike | None, n_rows: int) -> Float | None:
    if prior is None:
        return None
    p = np.asarray(prior, dtype=np.float64).reshape(-1)
    if p.shape != (n_rows,):
        raise ValueError(f"`prior` must hold one score per query ({n_rows}). Got {p.shape[0]}.")
    return p


def _method_set(methods: Iterable[str] | None) -> set[str]:
    if methods is None:
        return set(SEQUENTIAL_METHODS)
    items = [methods] if isinstance(methods, str) else list(methods)
    if not items or any(m not in SEQUENTIAL_METHODS for m in items):
        raise ValueError(
            "The 'methods' parameter of sequential_methods must be a non-empty list of "
            f"{', '.join(map(repr, SEQUENTIAL_METHODS))}. Got {methods!r} instead."
        )
    return set(items)


def _check_sequential_budget(budget: object) -> float:
    value = check_budget(budget, "sequential_methods")
    if value < 1.0:
        raise ValueError(
            f"The 'budget' parameter of sequential_methods must be a float in [1, inf) "
            f"(samples per query). Got {budget!r} instead."
        )
    return value
