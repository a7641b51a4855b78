"""The policy interface shared by every allocation policy.

A policy is fitted on the features ``X`` of training queries and their
:class:`~computealloc.estimation.table.OutcomeTable`; it then scores the actions of new queries and
turns the scores into actions under a budget, in two ways:

- :meth:`BasePolicy.allocate` (batch): solves the budget on the batch itself, like the oracle
  but on predicted scores; the mean cost equals the budget exactly (one query may be split);
- :meth:`BasePolicy.calibrate` then :meth:`BasePolicy.predict` (streaming): a dual price is set
  on a calibration split and each new query is decided on its own; this is what a server runs.
"""

from __future__ import annotations

import os
from abc import ABCMeta, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError

from computealloc.checks import check_budget
from computealloc.estimation.table import Allocation, OutcomeTable
from computealloc.fitting.calibrate import apply_lambda, calibrate_lambda, solve_scores

if TYPE_CHECKING:
    from computealloc.data.backends.base import Backend
    from computealloc.serving.deploy import RuntimeOptions
    from computealloc.serving.runtime import AnsweringRuntime

__all__ = ["BasePolicy", "BoostedPolicy", "check_budget", "check_rows", "mixed_mean", "row_ids"]

Float = NDArray[np.float64]
Int = NDArray[np.int64]
Seed = int | np.random.Generator | None


class BasePolicy(BaseEstimator, metaclass=ABCMeta):
    """Base class of allocation policies (scikit-learn conventions).

    Subclasses set keyword-only parameters in ``__init__`` (always including ``random_state``)
    and implement :meth:`_fit` (learn from features and a table) and :meth:`scores`
    (per-action utility of new queries).

    Fitted attributes
    -----------------
    actions_ : tuple of str
        Action specs, the columns of the training table.
    costs_ : ndarray of shape (n_actions,)
        Mean cost of each action over the training queries (the default cost vector).
    cost_unit_ : str
        Unit of the costs and budgets (:mod:`computealloc.estimation.units`).
    prices_ : dict of str to str
        Price per arm as ``--price`` writes it (empty: 1 per unit for every arm).
    n_features_in_ : int
        Number of features.
    feature_names_in_ : ndarray of str, shape (n_features_in_,)
        Feature names, when ``X`` was a DataFrame at fit time.
    lam_, mix_, budget_ : float
        Set by :meth:`calibrate`: dual price, tie-mixing probability and the budget.
    """

    #: Whether :meth:`scores` are predicted accuracies: an allocation's ``accuracy`` field is
    #: then the policy's own forecast, and a budget beyond the best predicted actions is left
    #: slack. Other scores (log-probabilities) always spend the budget (negative price).
    scores_are_accuracies = False

    random_state: int | None

    # --- the deployable contract (computealloc.serving.deploy.Deployable)
    # ----------------------------

    @property
    def deploy_unit(self) -> str:
        """The cost unit of the costs and the budget (``cost_unit_``; fitted policies)."""
        return str(self.cost_unit_)

    @property
    def deploy_prices(self) -> dict[str, str]:
        """Price per arm the policy was fitted with (``prices_``; empty: 1 per unit)."""
        return dict(getattr(self, "prices_", {}))

    @property
    def deploy_actions(self) -> tuple[str, ...]:
        """The action specs (``actions_``)."""
        return tuple(self.actions_)

    def describe_rule(self) -> str:
        """``"CLASS policy, N actions"``."""
        return f"{type(self).__name__} policy, {len(self.actions_)} actions"

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the fitted policy as JSON (:func:`computealloc.fitting.persist.save_policy`)."""
        from computealloc.fitting.persist import save_policy

        save_policy(self, path)

    def open_runtime(
        self,
        backends: Backend | Mapping[str, Backend],
        *,
        budget: float,
        options: RuntimeOptions,
    ) -> AnsweringRuntime:
        """A :class:`~computealloc.serving.runtime.Runtime` running this policy on ``backends``."""
        from computealloc.estimation.units import Pricing
        from computealloc.serving.runtime import Runtime

        given = options.prices
        return Runtime(
            self,
            backends,
            budget=budget,
            probe_m=options.probe_m,
            prices=None if given is None else Pricing.parse(self.deploy_unit, given).prices,
            temperature=options.temperature,
            max_tokens=options.max_tokens,
        )

    def fit(self, X: ArrayLike | pd.DataFrame, table: OutcomeTable) -> BasePolicy:
        """Fit the policy on training queries.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_queries, n_features)
            Features of the training queries, rows aligned with ``table``.
        table : OutcomeTable
            Expected accuracy and cost of each action on each training query.

        Returns
        -------
        self
        """
        if not isinstance(table, OutcomeTable):
            raise TypeError(
                f"The 'table' parameter of {type(self).__name__}.fit must be an OutcomeTable. "
                f"Got {type(table).__name__} instead."
            )
        x = self._check_X(X, reset=True)
        check_rows(x, table)
        self.actions_ = tuple(table.actions)
        self.costs_ = table.C.mean(axis=0)
        self.cost_unit_ = table.cost_unit
        self.prices_ = {str(a): str(p) for a, p in table.metadata.get("prices", {}).items()}
        for name in ("lam_", "mix_", "budget_"):
            self.__dict__.pop(name, None)
        self._fit(x, table)
        return self

    @abstractmethod
    def _fit(self, X: Float, table: OutcomeTable) -> None:
        """Learn from validated features ``X`` (n_queries, n_features) and the table."""

    @abstractmethod
    def scores(self, X: ArrayLike | pd.DataFrame) -> Float:
        """Per-action utility of each query, shape (n_queries, n_actions)."""

    def allocate(
        self, X: ArrayLike | pd.DataFrame, budget: float, costs: ArrayLike | None = None
    ) -> Allocation:
        """Allocate a batch of queries so that its mean cost is ``budget``.

        Solves ``max mean S[i, a_i] s.t. mean C[i, a_i] <= budget`` over the batch with the
        policy's scores ``S`` in place of the unknown accuracies
        (:func:`computealloc.estimation.oracle`): a batch-mode rule that uses the batch's own
        statistics, as the oracle does; any budget is re-targeted without refitting.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_queries, n_features)
            Features of the batch.
        budget : float
            Mean cost per query, in ``cost_unit_``.
        costs : array-like of shape (n_queries, n_actions) or (n_actions,), optional
            Per-query action costs; ``costs_`` by default.

        Returns
        -------
        Allocation
            Actions (one query possibly split between two actions, see ``mix``) and the mean
            cost. ``accuracy`` is the policy's own forecast when its scores are predicted
            accuracies (:class:`~computealloc.fitting.policies.Value`), else NaN; ``lam`` is in
            score units per cost unit.
        """
        budget = check_budget(budget, f"{type(self).__name__}.allocate")
        s = self.scores(X)
        c = self._costs(costs, s.shape[0])
        allocation = solve_scores(s, c, budget, match_budget=not self.scores_are_accuracies)
        accuracy = mixed_mean(allocation, s) if self.scores_are_accuracies else float("nan")
        return replace(
            allocation, accuracy=accuracy, action_names=self.actions_, query_ids=row_ids(X)
        )

    def calibrate(
        self, X: ArrayLike | pd.DataFrame, budget: float, costs: ArrayLike | None = None
    ) -> BasePolicy:
        """Set the dual price ``lam_`` so that :meth:`predict` spends ``budget`` on average.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_queries, n_features)
            Features of calibration queries: neither the training queries nor the queries the
            policy will be evaluated on.
        budget : float
            Target mean cost per query, in ``cost_unit_``.
        costs : array-like of shape (n_queries, n_actions) or (n_actions,), optional
            Per-query action costs of the calibration queries; ``costs_`` by default.

        Returns
        -------
        self

        Notes
        -----
        The realised mean cost on new queries matches ``budget`` up to sampling noise; fitting
        and calibrating on the same queries voids that guarantee.
        """
        budget = check_budget(budget, f"{type(self).__name__}.calibrate")
        s = self.scores(X)
        lam, mix = calibrate_lambda(
            s, self._costs(costs, s.shape[0]), budget, match_budget=not self.scores_are_accuracies
        )
        self.lam_, self.mix_, self.budget_ = lam, mix, budget
        return self

    def predict(
        self,
        X: ArrayLike | pd.DataFrame,
        costs: ArrayLike | None = None,
        random_state: Seed = None,
    ) -> Int:
        """Action index of each query under the calibrated rule, each query on its own.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_queries, n_features)
            Features of new queries.
        costs : array-like of shape (n_queries, n_actions) or (n_actions,), optional
            Per-query action costs; ``costs_`` by default.
        random_state : int, Generator or None
            Seed of the rule's random draws (tie mixing); the policy's ``random_state`` by
            default.

        Returns
        -------
        ndarray of shape (n_queries,), int
        """
        self._check_calibrated()
        seed = self.random_state if random_state is None else random_state
        return self._predict(X, costs, seed)

    def _predict(self, X: ArrayLike | pd.DataFrame, costs: ArrayLike | None, seed: Seed) -> Int:
        """The calibrated rule: ``argmax_a S[i, a] - lam_ * C[i, a]``, ties mixed by ``mix_``."""
        s = self.scores(X)
        return apply_lambda(s, self._costs(costs, s.shape[0]), self.lam_, self.mix_, seed)

    def _check_calibrated(self) -> None:
        if not hasattr(self, "budget_"):
            self.check_fitted()
            raise NotFittedError(
                f"This {type(self).__name__} instance is not calibrated yet. Call 'calibrate' "
                "with calibration queries and a budget before 'predict', or use 'allocate'."
            )

    def check_fitted(self) -> None:
        """Raise :class:`~sklearn.exceptions.NotFittedError` unless :meth:`fit` was called."""
        if not hasattr(self, "actions_"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with "
                "features and an OutcomeTable before using this policy."
            )

    def _check_X(self, X: ArrayLike | pd.DataFrame, *, reset: bool) -> Float:
        names = _column_names(X)
        x = np.asarray(X, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"`X` must be 2-D (n_queries, n_features). Got shape {x.shape}.")
        if not np.isfinite(x).all():
            raise ValueError("`X` must be finite (no NaN or inf).")
        if reset:
            self.n_features_in_ = x.shape[1]
            self.__dict__.pop("feature_names_in_", None)
            if names is not None:
                self.feature_names_in_ = np.asarray(names, dtype=object)
            return x
        self.check_fitted()
        if x.shape[1] != self.n_features_in_:
            raise ValueError(
                f"`X` has {x.shape[1]} features, but {type(self).__name__} was fitted with "
                f"{self.n_features_in_}."
            )
        fitted = getattr(self, "feature_names_in_", None)
        if fitted is not None and names is not None and list(names) != list(fitted):
            raise ValueError(
                "The feature names of `X` must match those seen at fit time, in order. "
                f"Expected {list(fitted)}; got {list(names)}."
            )
        return x

    def _costs(self, costs: ArrayLike | None, n_queries: int) -> Float:
        k = len(self.actions_)
        c = self.costs_ if costs is None else np.asarray(costs, dtype=np.float64)
        if c.shape not in {(k,), (n_queries, k)}:
            raise ValueError(
                f"`costs` must have shape ({k},) or ({n_queries}, {k}). Got {c.shape}."
            )
        return np.broadcast_to(c, (n_queries, k)).astype(np.float64)

    def fitted_state(self) -> dict[str, Any]:
        """JSON-serialisable fitted state beyond the base attributes (see :mod:`persist`)."""
        return {}

    def set_fitted_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`fitted_state` returned."""


class BoostedPolicy(BasePolicy):
    """A policy whose models are LightGBM ensembles sharing one set of boosting parameters.

    Subclasses store ``n_estimators``, ``max_depth``, ``learning_rate``, ``min_child_samples``,
    ``n_jobs`` and ``random_state`` in ``__init__`` and build their models from
    :meth:`_lgbm_params`.
    """

    n_estimators: int
    max_depth: int
    learning_rate: float
    min_child_samples: int
    n_jobs: int

    def _lgbm_params(self) -> dict[str, Any]:
        """Keyword arguments of a LightGBM model: the boosting parameters, silent.

        ``num_leaves`` is ``min(31, 2**max_depth)``: a full tree of depth ``max_depth`` at
        most, LightGBM's default of 31 leaves for deeper trees.
        """
        return {
            "n_estimators": self.n_estimators,
            "max_depth": self.max_depth,
            "num_leaves": min(31, 2**self.max_depth),
            "learning_rate": self.learning_rate,
            "min_child_samples": self.min_child_samples,
            "n_jobs": self.n_jobs,
            "random_state": self.random_state,
            "verbose": -1,
        }


def check_rows(x: Float, table: OutcomeTable) -> None:
    """Check that features and an outcome table describe the same number of queries."""
    if x.shape[0] != table.n_queries:
        raise ValueError(
            f"`X` and `table` must describe the same queries. Got {x.shape[0]} rows of "
            f"features and {table.n_queries} queries in the table."
        )


def row_ids(X: object) -> tuple[str, ...]:
    """Query ids of a batch: the index of a DataFrame as strings, else empty (positional)."""
    return tuple(str(i) for i in X.index) if isinstance(X, pd.DataFrame) else ()


def _column_names(X: object) -> Sequence[str] | None:
    if isinstance(X, pd.DataFrame):
        return [str(c) for c in X.columns]
    return None


def mixed_mean(allocation: Allocation, values: Float) -> float:
    """Mean of ``values[i, a_i]`` over queries under an allocation, its split query weighted.

    Parameters
    ----------
    allocation : Allocation
        Actions per query and the optional split ``mix``.
    values : ndarray of shape (n_queries, n_actions)
        Per-action values (accuracies, costs, scores).

    Returns
    -------
    float
    """
    rows = np.arange(values.shape[0])
    total = values[rows, allocation.actions].sum()
    if allocation.mix is not None:
        i, low, high, weight = allocation.mix
        total += weight * (values[i, high] - values[i, low])
    return float(total / values.shape[0])
