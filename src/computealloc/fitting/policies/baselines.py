"""The paper's baselines, each matched to the budget: uniform, random, prompt length.

- :class:`Uniform` gives every query the same action; a budget between two action costs mixes
  the two actions whose costs bracket it, at random over queries (so it is budget-matched at
  any budget).
- :class:`Random` draws each query's action at random from the maximum-entropy distribution
  over all actions whose expected cost is the budget.
- :class:`LengthHeuristic` spends more on longer prompts: the Lagrangian rule on the utility
  ``length * log(1 + cost)``, whose continuous optimum spends compute proportional to length,
  with its dual price calibrated to the budget.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.optimize import brentq
from scipy.special import softmax

from computealloc.checks import check_feasible
from computealloc.estimation.table import Allocation, OutcomeTable
from computealloc.fitting.policies._base import (
    BasePolicy,
    Float,
    Int,
    Seed,
    check_budget,
    mixed_mean,
    row_ids,
)

__all__ = ["LengthHeuristic", "Random", "Uniform", "budget_bracket", "budget_matched_probs"]


def _check_feasible(costs: Float, budget: float, actions: tuple[str, ...], where: str) -> None:
    """The budget must cover the cheapest action; unnamed actions are called ``a0, a1, ...``."""
    cheapest = int(np.argmin(costs))
    name = actions[cheapest] if actions else f"a{cheapest}"
    check_feasible(budget, float(costs[cheapest]), where, f"action {name!r}")


def budget_bracket(
    costs: ArrayLike, budget: float, actions: tuple[str, ...] = (), where: str = "budget_bracket"
) -> tuple[int, int, float]:
    """The two actions whose mean costs bracket the budget, and the weight of the dearer one.

    Parameters
    ----------
    costs : array-like of shape (n_actions,)
        Mean cost of each action.
    budget : float
        Target mean cost; at least the cheapest action's cost.
    actions : tuple of str, optional
        Action names, for error messages.
    where : str
        Caller name, for error messages.

    Returns
    -------
    low, high : int
        Action indices with ``costs[low] <= budget <= costs[high]`` (equal when the budget hits
        a cost exactly or exceeds every cost).
    weight : float
        Share of queries that get ``high`` so that the mean cost is ``budget`` (0 when slack).

    Examples
    --------
    >>> budget_bracket([1.0, 2.0, 4.0, 8.0], 3.0)
    (1, 2, 0.5)
    """
    c = np.asarray(costs, dtype=np.float64)
    _check_feasible(c, budget, actions, where)
    order = np.argsort(c, kind="stable")
    pos = int(np.searchsorted(c[order], budget, side="left"))
    if pos == c.size:
        top = int(order[-1])
        return top, top, 0.0
    high = int(order[pos])
    if c[high] == budget or pos == 0:
        return high, high, 0.0
    low = int(order[pos - 1])
    return low, high, float((budget - c[low]) / (c[high] - c[low]))


def budget_matched_probs(
    costs: ArrayLike, budget: float, actions: tuple[str, ...] = (), where: str = "Random"
) -> Float:
    """Maximum-entropy distribution over actions whose expected cost is the budget.

    ``p_a ∝ exp(-t c_a)`` with ``t`` set so that ``sum_a p_a c_a = budget``; ``t = 0`` (all
    actions equally likely) when the budget is the mean of the costs. A budget at or above the
    dearest cost puts all mass on the dearest action; at the cheapest cost, on the cheapest.

    Parameters
    ----------
    costs : array-like of shape (n_actions,)
        Mean cost of each action.
    budget : float
        Target expected cost, at least the cheapest cost.
    actions : tuple of str, optional
        Action names, for error messages.
    where : str
        Caller name, for error messages.

    Returns
    -------
    ndarray of shape (n_actions,)
        Probabilities, summing to 1.
    """
    c = np.asarray(costs, dtype=np.float64)
    _check_feasible(c, budget, actions, where)
    lo, hi = float(c.min()), float(c.max())
    if hi == lo:
        return np.full(c.size, 1.0 / c.size)
    if budget >= hi or budget == lo:
        return (np.arange(c.size) == (np.argmax(c) if budget >= hi else np.argmin(c))) * 1.0
    u = (c - lo) / (hi - lo)
    target = (budget - lo) / (hi - lo)
    t = brentq(lambda v: float(softmax(-v * u) @ u) - target, -1e4, 1e4, xtol=1e-14)
    return np.asarray(softmax(-t * u), dtype=np.float64)


def _allocation(
    actions: Int,
    mix: tuple[int, int, int, float] | None,
    costs: Float,
    budget: float,
    names: tuple[str, ...],
    query_ids: tuple[str, ...],
    accuracy: Float | None = None,
) -> Allocation:
    """Package a baseline's batch allocation: realised mean cost, forecast, no dual price."""
    bare = Allocation(actions, mix, 0.0, 0.0, 0.0, budget)
    cost = mixed_mean(bare, costs)
    forecast = float("nan") if accuracy is None else mixed_mean(bare, accuracy)
    status = "slack" if budget > costs.mean(axis=0).max() else "matched"
    return Allocation(actions, mix, float("nan"), forecast, cost, budget, status, names, query_ids)


class Uniform(BasePolicy):
    """The same action for every query; a budget between two costs mixes those two at random.

    Parameters
    ----------
    random_state : int or None
        Seed of which queries get the dearer of the two bracketing actions.

    Attributes
    ----------
    accuracy_ : ndarray of shape (n_actions,)
        Mean training accuracy of each action (the policy's forecast, the same for every query).
    low_, high_ : int
        Set by :meth:`calibrate`: the actions whose mean costs bracket the budget; ``mix_`` is
        the probability of ``high_``.

    Examples
    --------
    >>> from computealloc.estimation.table import OutcomeTable
    >>> table = OutcomeTable([[0.2, 0.4], [0.6, 0.8]], [[1, 4], [1, 4]])
    >>> policy = Uniform(random_state=0).fit([[0.0], [1.0]], table)
    >>> policy.allocate([[0.0], [1.0]], 4.0).actions.tolist()
    [1, 1]
    """

    scores_are_accuracies = True

    def __init__(self, *, random_state: int | None = None) -> None:
        self.random_state = random_state

    def _fit(self, X: Float, table: OutcomeTable) -> None:
        self.accuracy_ = table.P.mean(axis=0)

    def scores(self, X: ArrayLike | pd.DataFrame) -> Float:
        """The mean training accuracy of each action, for every query."""
        x = self._check_X(X, reset=False)
        return np.tile(self.accuracy_, (x.shape[0], 1))

    def allocate(
        self, X: ArrayLike | pd.DataFrame, budget: float, costs: ArrayLike | None = None
    ) -> Allocation:
        """All queries on the bracketing actions, a random share on the dearer one.

        The share of queries on ``high`` is exact (one query split), so with costs constant
        per action the mean cost is the budget exactly.
        """
        where = f"{type(self).__name__}.allocate"
        budget = check_budget(budget, where)
        s = self.scores(X)
        n = s.shape[0]
        c = self._costs(costs, n)
        low, high, weight = budget_bracket(c.mean(axis=0), budget, self.actions_, where)
        order = np.random.default_rng(self.random_state).permutation(n)
        n_high = int(np.floor(weight * n))
        actions = np.full(n, low, dtype=np.int64)
        actions[order[:n_high]] = high
        rest = weight * n - n_high
        mix = (int(order[n_high]), low, high, float(rest)) if rest > 0 else None
        return _allocation(actions, mix, c, budget, self.actions_, row_ids(X), s)

    def calibrate(
        self, X: ArrayLike | pd.DataFrame, budget: float, costs: ArrayLike | None = None
    ) -> Uniform:
        """Set the bracketing actions and ``mix_`` from the calibration queries' mean costs."""
        where = f"{type(self).__name__}.calibrate"
        budget = check_budget(budget, where)
        s = self.scores(X)
        c = self._costs(costs, s.shape[0])
        self.low_, self.high_, self.mix_ = budget_bracket(
            c.mean(axis=0), budget, self.actions_, where
        )
        self.budget_ = budget
        return self

    def describe_rule(self) -> str:
        """The calibrated mix: ``"uniform: A on 40% of queries, B on 60%"`` (or one action)."""
        if not hasattr(self, "mix_"):
            return super().describe_rule()
        low, high = self.actions_[self.low_], self.actions_[self.high_]
        if self.low_ == self.high_ or self.mix_ == 0.0:
            return f"uniform: {low} on every query"
        return f"uniform: {low} on {1 - self.mix_:.0%} of queries, {high} on {self.mix_:.0%}"

    def _predict(self, X: ArrayLike | pd.DataFrame, costs: ArrayLike | None, seed: Seed) -> Int:
        """Each query independently: ``high_`` with probability ``mix_``, else ``low_``."""
        n = self._check_X(X, reset=False).shape[0]
        draw = np.random.default_rng(seed).random(n)
        return np.where(draw < self.mix_, self.high_, self.low_).astype(np.int64)

    def fitted_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"accuracy_": self.accuracy_.tolist()}
        if hasattr(self, "budget_"):
            state.update(low_=self.low_, high_=self.high_)
        return state

    def set_fitted_state(self, state: dict[str, Any]) -> None:
        self.accuracy_ = np.asarray(state["accuracy_"], dtype=np.float64)
        if "low_" in state:
            self.low_, self.high_ = int(state["low_"]), int(state["high_"])


class Random(BasePolicy):
    """A random action per query, from the maximum-entropy distribution matching the budget.

    See :func:`budget_matched_probs`. :meth:`allocate` samples a batch systematically (each
    action's count is within one of its expected count, so the batch's mean cost is within
    ``max cost / n_queries`` of the budget); :meth:`predict` draws each query independently.

    Parameters
    ----------
    random_state : int or None
        Seed of the draws.

    Attributes
    ----------
    probs_ : ndarray of shape (n_actions,)
        Set by :meth:`calibrate`: the action distribution.
    """

    def __init__(self, *, random_state: int | None = None) -> None:
        self.random_state = random_state

    def _fit(self, X: Float, table: OutcomeTable) -> None:
        """Random learns nothing from the training queries beyond the action costs."""

    def scores(self, X: ArrayLike | pd.DataFrame) -> Float:
        """Zeros: Random has no preference between actions."""
        x = self._check_X(X, reset=False)
        return np.zeros((x.shape[0], len(self.actions_)))

    def allocate(
        self, X: ArrayLike | pd.DataFrame, budget: float, costs: ArrayLike | None = None
    ) -> Allocation:
        """Systematic random sample of actions with the budget-matched distribution."""
        where = f"{type(self).__name__}.allocate"
        budget = check_budget(budget, where)
        n = self._check_X(X, reset=False).shape[0]
        c = self._costs(costs, n)
        probs = budget_matched_probs(c.mean(axis=0), budget, self.actions_, where)
        rng = np.random.default_rng(self.random_state)
        grid = (np.arange(n) + rng.random()) / n
        picked = np.searchsorted(np.cumsum(probs)[:-1], grid, side="right")
        actions = picked[rng.permutation(n)].astype(np.int64)
        return _allocation(actions, None, c, budget, self.actions_, row_ids(X))

    def calibrate(
        self, X: ArrayLike | pd.DataFrame, budget: float, costs: ArrayLike | None = None
    ) -> Random:
        """Set ``probs_`` from the calibration queries' mean action costs."""
        where = f"{type(self).__name__}.calibrate"
        budget = check_budget(budget, where)
        n = self._check_X(X, reset=False).shape[0]
        mean_costs = self._costs(costs, n).mean(axis=0)
        self.probs_ = budget_matched_probs(mean_costs, budget, self.actions_, where)
        self.budget_ = budget
        return self

    def _predict(self, X: ArrayLike | pd.DataFrame, costs: ArrayLike | None, seed: Seed) -> Int:
        """Each query independently draws its action from ``probs_``."""
        n = self._check_X(X, reset=False).shape[0]
        rng = np.random.default_rng(seed)
        return np.asarray(rng.choice(len(self.probs_), size=n, p=self.probs_), dtype=np.int64)

    def fitted_state(self) -> dict[str, Any]:
        return {"probs_": self.probs_.tolist()} if hasattr(self, "budget_") else {}

    def set_fitted_state(self, state: dict[str, Any]) -> None:
        if "probs_" in state:
            self.probs_ = np.asarray(state["probs_"], dtype=np.float64)


class LengthHeuristic(BasePolicy):
    """More compute for longer prompts, calibrated to the budget.

    The rule gives query ``i`` the action maximising ``z_i * log(1 + c_a) - lam * c_a``, with
    ``z_i >= 0`` the prompt length and ``c_a`` the mean training cost of action ``a``: the
    chosen cost is non-decreasing in the length, and the continuous optimum spends
    ``1 + c = z_i / lam``, i.e. compute proportional to length. Equal lengths tie and are mixed.

    Parameters
    ----------
    feature : str or int
        The length feature: a column name when ``X`` is a DataFrame (``"n_chars"`` from
        :func:`computealloc.estimation.features.prompt_features`), else a column index.
    random_state : int or None
        Seed of the tie-mixing draws in :meth:`predict`.

    Attributes
    ----------
    feature_index_ : int
        Column of the length feature in ``X``.
    """

    def __init__(self, *, feature: str | int = "n_chars", random_state: int | None = None) -> None:
        self.feature = feature
        self.random_state = random_state

    def _fit(self, X: Float, table: OutcomeTable) -> None:
        names = getattr(self, "feature_names_in_", None)
        if isinstance(self.feature, str) and names is not None and self.feature in names:
            self.feature_index_ = int(list(names).index(self.feature))
        elif isinstance(self.feature, (int, np.integer)) and 0 <= self.feature < X.shape[1]:
            self.feature_index_ = int(self.feature)
        else:
            known = list(names) if names is not None else f"indices 0..{X.shape[1] - 1}"
            raise ValueError(
                f"The 'feature' parameter of LengthHeuristic must name a column of `X` "
                f"({known}). Got {self.feature!r} instead."
            )
        self._length(X)

    def _length(self, X: Float) -> Float:
        length = X[:, self.feature_index_]
        if (length < 0).any():
            raise ValueError(
                f"The length feature {self.feature!r} must be >= 0. Got {length.min():g}."
            )
        return length

    def scores(self, X: ArrayLike | pd.DataFrame) -> Float:
        """``length * log(1 + mean cost)`` of each action."""
        x = self._check_X(X, reset=False)
        return self._length(x)[:, None] * np.log1p(self.costs_)[None, :]

    def fitted_state(self) -> dict[str, Any]:
        return {"feature_index_": self.feature_index_}

    def set_fitted_state(self, state: dict[str, Any]) -> None:
        self.feature_index_ = int(state["feature_index_"])
