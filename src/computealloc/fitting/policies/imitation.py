"""Imitation of the oracle (Solve-then-Learn): a classifier of the oracle's action."""

from __future__ import annotations

from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from computealloc.estimation.oracle import solve
from computealloc.estimation.table import OutcomeTable
from computealloc.fitting.policies._base import BoostedPolicy, Float, Int, check_budget, check_rows

__all__ = ["Imitation", "oracle_labels"]

#: Probability floor under the log of :meth:`Imitation.scores` (absent classes get it).
PROBA_FLOOR = 1e-12


def oracle_labels(table: OutcomeTable, budget: float) -> Int:
    """The oracle's action per query at ``budget``; the split query takes its heavier action.

    Parameters
    ----------
    table : OutcomeTable
        Accuracy and cost of each action on each query.
    budget : float
        Mean cost per query.

    Returns
    -------
    ndarray of shape (n_queries,), int
    """
    allocation = solve(table, budget)
    labels = np.asarray(allocation.actions, dtype=np.int64).copy()
    if allocation.mix is not None:
        query, _, high, weight = allocation.mix
        if weight > 0.5:
            labels[query] = high
    return labels


class Imitation(BoostedPolicy):
    """Gradient-boosted classifier of the oracle's action at a training budget.

    Fitting solves the oracle on the training table at ``budget``
    (:func:`computealloc.estimation.oracle`) and trains a LightGBM classifier on its actions (the
    paper uses XGBoost with these hyper-parameters). Scores are log class probabilities, so
    :meth:`calibrate` and :meth:`allocate` re-target other budgets by trading the classifier's
    confidence against cost; at ``lam = 0`` the rule is the classifier's own prediction.

    Parameters
    ----------
    budget : float
        Budget (mean cost per query, in the table's unit) whose oracle actions are imitated.
    n_estimators : int
        Boosting rounds.
    max_depth : int
        Maximum tree depth.
    learning_rate : float
        Shrinkage.
    min_child_samples : int
        Minimum training queries per leaf.
    n_jobs : int
        LightGBM threads; 1 (the default) is fastest for the small per-budget fits here.
    random_state : int or None
        Seed of LightGBM and of the tie-mixing draws.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,), int
        Actions the oracle used on the training queries; the others get probability 0.
    booster_ : lightgbm.Booster
        The fitted model.
    """

    def __init__(
        self,
        *,
        budget: float | None = None,
        n_estimators: int = 100,
        max_depth: int = 5,
        learning_rate: float = 0.1,
        min_child_samples: int = 20,
        n_jobs: int = 1,
        random_state: int | None = None,
    ) -> None:
        self.budget = budget
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.min_child_samples = min_child_samples
        self.n_jobs = n_jobs
        self.random_state = random_state

    def _fit(self, X: Float, table: OutcomeTable) -> None:
        budget = check_budget(self.budget, "Imitation")
        labels = oracle_labels(table, budget)
        model = lgb.LGBMClassifier(**self._lgbm_params())
        model.fit(X, labels)
        self.classes_ = np.asarray(model.classes_, dtype=np.int64)
        self.booster_ = model.booster_

    def predict_proba(self, X: ArrayLike | pd.DataFrame) -> Float:
        """Probability that the oracle picks each action, shape (n_queries, n_actions)."""
        x = self._check_X(X, reset=False)
        raw = np.asarray(self.booster_.predict(x), dtype=np.float64)
        if raw.ndim == 1:
            raw = np.column_stack([1.0 - raw, raw])[:, : self.classes_.size]
        proba = np.zeros((x.shape[0], len(self.actions_)))
        proba[:, self.classes_] = raw
        return proba

    def scores(self, X: ArrayLike | pd.DataFrame) -> Float:
        """Log probability of each action, floored at ``log(1e-12)``."""
        return np.log(np.maximum(self.predict_proba(X), PROBA_FLOOR))

    def score(self, X: ArrayLike | pd.DataFrame, table: OutcomeTable) -> float:
        """Imitation accuracy: share of queries whose most probable action is the oracle's.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_queries, n_features)
            Features of (held-out) queries.
        table : OutcomeTable
            Their outcome table; the oracle is solved on it at ``budget``.

        Returns
        -------
        float
        """
        proba = self.predict_proba(X)
        check_rows(proba, table)
        labels = oracle_labels(table, check_budget(self.budget, "Imitation"))
        return float((proba.argmax(axis=1) == labels).mean())

    def fitted_state(self) -> dict[str, Any]:
        return {"classes_": self.classes_.tolist(), "booster_": self.booster_.model_to_string()}

    def set_fitted_state(self, state: dict[str, Any]) -> None:
        self.classes_ = np.asarray(state["classes_"], dtype=np.int64)
        self.booster_ = lgb.Booster(model_str=state["booster_"])
