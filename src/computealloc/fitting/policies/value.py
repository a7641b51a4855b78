"""Predict-then-allocate: regress each action's accuracy, then solve on the predictions."""

from __future__ import annotations

from typing import Any, Literal

import lightgbm as lgb
import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from computealloc.estimation.table import OutcomeTable
from computealloc.fitting.policies._base import BoostedPolicy, Float

__all__ = ["Value"]

_TARGETS = ("accuracy", "gain")


class Value(BoostedPolicy):
    """Predicted accuracy of every action, allocated by the oracle on the predictions.

    One LightGBM regressor per action learns the query's expected accuracy from its features
    (Damani et al.'s "predict the reward as a function of compute"). :meth:`allocate` solves
    the budget on the predicted table and :meth:`calibrate` sets the dual price of the
    streaming rule ``argmax_a P_hat[i, a] - lam * C[i, a]``; both re-target any budget
    without refitting.

    Parameters
    ----------
    target : {"accuracy", "gain"}
        ``"accuracy"``: each regressor fits ``P[:, a]`` with a cross-entropy objective (the
        prediction stays in [0, 1]). ``"gain"``: the cheapest action's regressor fits its
        accuracy, the others fit the gain over it, ``P[:, a] - P[:, cheapest]`` (squared
        error); predictions are clipped to [0, 1].
    n_estimators : int
        Boosting rounds per regressor.
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
    boosters_ : list of lightgbm.Booster
        One model per action.
    base_ : int
        The cheapest action (the reference of the ``"gain"`` target).

    Notes
    -----
    Predictions are not forced to increase with cost: majority voting over more samples
    lowers the accuracy of a query the model usually gets wrong.
    """

    scores_are_accuracies = True

    def __init__(
        self,
        *,
        target: Literal["accuracy", "gain"] = "accuracy",
        n_estimators: int = 100,
        max_depth: int = 3,
        learning_rate: float = 0.05,
        min_child_samples: int = 20,
        n_jobs: int = 1,
        random_state: int | None = None,
    ) -> None:
        self.target = target
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.min_child_samples = min_child_samples
        self.n_jobs = n_jobs
        self.random_state = random_state

    def _fit(self, X: Float, table: OutcomeTable) -> None:
        if self.target not in _TARGETS:
            raise ValueError(
                f"The 'target' parameter of Value must be one of {', '.join(_TARGETS)}. "
                f"Got {self.target!r} instead."
            )
        self.base_ = int(np.argmin(self.costs_))
        p = table.P
        gain = self.target == "gain"
        boosters = []
        for a in range(p.shape[1]):
            relative = gain and a != self.base_
            y = p[:, a] - p[:, self.base_] if relative else p[:, a]
            objective = "regression" if relative else "cross_entropy"
            model = lgb.LGBMRegressor(objective=objective, **self._lgbm_params())
            boosters.append(model.fit(X, y).booster_)
        self.boosters_ = boosters

    def scores(self, X: ArrayLike | pd.DataFrame) -> Float:
        """Predicted accuracy of each action, shape (n_queries, n_actions), in [0, 1]."""
        x = self._check_X(X, reset=False)
        pred = np.column_stack([b.predict(x) for b in self.boosters_]).astype(np.float64)
        if self.target == "gain":
            others = np.arange(pred.shape[1]) != self.base_
            pred[:, others] += pred[:, [self.base_]]
        return np.clip(pred, 0.0, 1.0)

    def fitted_state(self) -> dict[str, Any]:
        return {"base_": self.base_, "boosters_": [b.model_to_string() for b in self.boosters_]}

    def set_fitted_state(self, state: dict[str, Any]) -> None:
        self.base_ = int(state["base_"])
        self.boosters_ = [lgb.Booster(model_str=s) for s in state["boosters_"]]
