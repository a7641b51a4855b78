"""The published stopping rules, written from their definitions.

:class:`StoppingRule` is the base class: a rule's condition at every prefix of replayed
trajectories, the caps, the per-query ``should_stop`` of the runtime and the budget knob that
:func:`~computealloc.fitting.sequential.calibrate_stopping` tunes. The rules of Adaptive-Consistency
(Aggarwal et al., EMNLP 2023) -- :class:`BetaRule`, :class:`DirichletRule`,
:class:`EntropyRule`, :class:`MajorityShareRule` -- and the window rule of Early-Stopping
Self-Consistency (Li et al., ICLR 2024), :class:`WindowRule`, derive from it.
"""

from __future__ import annotations

import copy
from abc import ABCMeta, abstractmethod
from collections.abc import Sequence
from functools import lru_cache
from typing import ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import betainc, gammainc, gammaincinv
from sklearn.base import BaseEstimator

from computealloc.fitting.sequential._checks import check_int, prior_array
from computealloc.fitting.sequential.pools import MAX_TOP_K, Trajectories, answers_trajectory

__all__ = [
    "BetaRule",
    "DirichletRule",
    "EntropyRule",
    "MajorityShareRule",
    "StoppingRule",
    "WindowRule",
    "dirichlet_leader_probability",
]

Float = NDArray[np.float64]
Int = NDArray[np.int64]
Bool = NDArray[np.bool_]


class StoppingRule(BaseEstimator, metaclass=ABCMeta):
    """Base class of sequential stopping rules.

    A rule looks at the answers drawn so far and says whether to stop. Subclasses implement
    :meth:`_fires`, the rule's condition at every prefix of replayed trajectories; the class
    adds the caps, the per-query :meth:`should_stop` and the budget knob used by
    :func:`calibrate_stopping` (the parameter named by ``knob``).
    """

    #: The parameter that :func:`calibrate_stopping` tunes, its range, and whether raising it
    #: spends more samples.
    knob: ClassVar[str] = "threshold"
    knob_range: ClassVar[tuple[float, float]] = (0.0, 1.0)
    knob_raises_cost: ClassVar[bool] = True
    knob_integer: ClassVar[bool] = False

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
        fires = self._fires(traj, prior_array(prior, traj.cap.shape[0]))
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
        traj = answers_trajectory(answers, self._live_cap(t))
        pri = None if prior is None else np.array([float(prior)])
        return bool(self._fires(traj, pri)[0, 0, t - 1])

    def _live_cap(self, t: int) -> int:
        """The cap of a live query after ``t`` samples (no cap known: not yet reached)."""
        return self.max_samples if self.max_samples is not None else t + 1

    def with_knob(self, value: float) -> StoppingRule:
        """A copy of the rule with its budget knob set to ``value`` (fitted state shared)."""
        new = copy.copy(self)
        setattr(new, self.knob, int(value) if self.knob_integer else float(value))
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

    knob_range = (0.5, 1.0)

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
        check_int(self.top_k, "top_k", "DirichletRule", low=2, high=MAX_TOP_K)
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

    knob_raises_cost = False

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

    knob_range = (0.0, 2.0)

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

    knob = "window"
    knob_range = (1.0, 4096.0)
    knob_integer = True

    def __init__(self, *, window: int = 5, max_samples: int | None = None) -> None:
        self.window = window
        self.max_samples = max_samples

    def _fires(self, traj: Trajectories, prior: Float | None) -> Bool:
        check_int(self.window, "window", "WindowRule", low=1)
        return (_run_lengths(traj.labels) >= self.window) & (traj.t % self.window == 0)


def _run_lengths(labels: NDArray[np.int16]) -> Int:
    """Length of the run of one same answer ending at each position (0 at an abstain)."""
    same = np.zeros(labels.shape, dtype=bool)
    same[..., 1:] = (labels[..., 1:] == labels[..., :-1]) & (labels[..., 1:] >= 0)
    pos = np.arange(labels.shape[-1])
    start = np.maximum.accumulate(np.where(same, 0, pos), axis=-1)
    return np.where(labels >= 0, pos - start + 1, 0)
