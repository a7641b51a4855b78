"""computealloc's sequential policy: optimal stopping on learned answer-count dynamics.

:class:`LagrangianStopping` learns, from training queries' replayed pools, the expected
accuracy and the next-state frequencies of every vote state ``(t, a, b)`` (optionally per
difficulty group of a learned prior), and stops where backward induction says that one more
sample is worth less than its price ``lam``.
"""

from __future__ import annotations

from numbers import Real
from typing import NamedTuple

import lightgbm as lgb
import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from sklearn.model_selection import KFold

from computealloc.fitting.sequential._checks import check_int
from computealloc.fitting.sequential.pools import AnswerPools, Trajectories, check_pools, replay
from computealloc.fitting.sequential.rules import StoppingRule

__all__ = ["LagrangianStopping"]

Float = NDArray[np.float64]
Int = NDArray[np.int64]
Bool = NDArray[np.bool_]

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


class _Dynamics(NamedTuple):
    """The price-free part of the backward induction, per (table, t - 1, a, b).

    ``acc`` the expected correctness of stopping, ``prob`` the three move probabilities (last
    axis), ``moved`` whether the state has observed moves, ``visited`` whether it was visited.
    """

    acc: Float
    prob: Float
    moved: NDArray[np.bool_]
    visited: NDArray[np.bool_]


def _dynamics(visits: Float, correct: Float, moves: Float) -> _Dynamics:
    """Per-state accuracy and move probabilities from the visit, correctness and move counts."""
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.nan_to_num(correct / visits)
        total = moves.sum(axis=4)
        prob = np.nan_to_num(moves / total[..., None])
    return _Dynamics(acc, prob, total > 0, visits > 0)


def _induction(dynamics: _Dynamics, lam: float) -> NDArray[np.int8]:
    """Optimal stopping at price ``lam`` by backward induction on ``dynamics``.

    ``V_T(s) = acc(s)``; ``V_t(s) = max(acc(s), sum_k P_k(s) V_{t+1}(s_k) - lam)`` with the
    three successors ``s_k`` of ``s = (a, b)`` and the empirical move probabilities ``P_k``.
    A decided vote (``a - b`` above the samples left) always stops: no sample can change it.
    Returns 1 stop, 0 continue, -1 state never visited.
    """
    acc, prob = dynamics.acc, dynamics.prob
    n_tables, w, side, _ = acc.shape
    decision = np.where(dynamics.visited, 1, -1).astype(np.int8)
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
        go_on = dynamics.moved[:, j] & (q > acc[:, j]) & open_vote
        decision[:, j][go_on] = 0
        value = np.zeros_like(nxt)
        value[:, :side, :side] = np.where(go_on, q, acc[:, j])
    return decision


def _decision_tables(visits: Float, correct: Float, moves: Float, lam: float) -> NDArray[np.int8]:
    """Optimal stopping decisions from the counts at price ``lam`` (see :func:`_induction`)."""
    return _induction(_dynamics(visits, correct, moves), lam)


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

    knob = "lam"
    knob_range = (-1.0, 1.0)
    knob_raises_cost = False

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
        check_pools(pools, "LagrangianStopping.fit")
        self._pseudo_visits()
        check_int(self.n_groups, "n_groups", "LagrangianStopping", low=1)
        check_int(self.n_orders, "n_orders", "LagrangianStopping", low=1)
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
        self.reset_caches()
        return self

    def reset_caches(self) -> None:
        """Forget the decision tables and dynamics computed so far (after fit, or a load)."""
        self._cache: dict[tuple[float, float], NDArray[np.int8]] = {}
        self._dynamics_cache: dict[float, _Dynamics] = {}

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
        self.check_fitted()
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
        self.check_fitted()
        price = float(self.lam if lam is None else lam)
        k = self._pseudo_visits()
        if (price, k) not in self._cache:
            if len(self._cache) >= _TABLE_CACHE:
                self._cache.clear()
            self._cache[price, k] = _induction(self._dynamics_at(k), price)
        return self._cache[price, k]

    def _dynamics_at(self, pseudo_visits: float) -> _Dynamics:
        """The price-free dynamics with each state's accuracy shrunk by ``pseudo_visits``."""
        if pseudo_visits not in self._dynamics_cache:
            visits = np.where(self.visits_ > 0, self.visits_ + pseudo_visits, 0.0)
            correct = _shrunk_correct(self.visits_, self.correct_, pseudo_visits)
            self._dynamics_cache[pseudo_visits] = _dynamics(visits, correct, self.moves_)
        return self._dynamics_cache[pseudo_visits]

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
        self.check_fitted()
        return self.horizon_

    def check_fitted(self) -> None:
        """Raise ValueError unless :meth:`fit` was called (or the state was loaded)."""
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
