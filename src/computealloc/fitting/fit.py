"""Fit and calibrate one deployable policy on a sample log (what ``computealloc fit`` does)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from computealloc.checks import check_budget
from computealloc.data.samples import SampleLog
from computealloc.data.splits import split_queries
from computealloc.estimation.actions import Action, parse_actions
from computealloc.estimation.estimate import default_actions, estimate, query_golds
from computealloc.estimation.features import build_features, probe_mask
from computealloc.estimation.reuse import probe_table
from computealloc.estimation.table import OutcomeTable
from computealloc.estimation.units import PriceLike, pricing_of
from computealloc.fitting.policies import BasePolicy, Uniform, mixed_mean
from computealloc.methods import fittable, get_method, load_class

__all__ = ["FIT_METHODS", "FitResult", "fit_policy"]

#: Names :func:`fit_policy` fits (the registry's ``fit="fit_policy"`` methods).
FIT_METHODS: tuple[str, ...] = fittable("fit_policy")
#: A name of :data:`FIT_METHODS` (kept as an alias for older imports).
Method = str


@dataclass(frozen=True)
class FitResult:
    """A fitted, calibrated policy and how it did on queries it never saw.

    Attributes
    ----------
    policy : BasePolicy
        Fitted on the train queries, dual price calibrated on the calibration queries; its
        ``probe_m_`` says how many probe samples per query its features read (saved with it,
        so :class:`~computealloc.serving.runtime.Runtime` draws them without being told).
    probe_m : int
        Probe samples per query the policy's features need (reused in the vote at serve time).
    n_train, n_calibration, n_test : int
        Queries in each part of the split.
    test_accuracy, test_cost : float
        Mean expected accuracy and cost of the calibrated rule on the test queries
        (in-sample estimates of each action's accuracy on those queries).
    uniform_accuracy : float
        The budget-matched uniform allocation on the same test queries, for comparison.
    """

    policy: BasePolicy
    probe_m: int
    n_train: int
    n_calibration: int
    n_test: int
    test_accuracy: float
    test_cost: float
    uniform_accuracy: float


def _make(method: str, budget: float, seed: int) -> BasePolicy:
    """The unfitted policy of registered method ``method`` (:mod:`computealloc.methods`)."""
    if method not in FIT_METHODS:
        raise ValueError(
            f"The 'method' parameter of fit_policy must be one of {', '.join(FIT_METHODS)}. "
            f"Got {method!r} instead."
        )
    spec = get_method(method)
    cls: type[BasePolicy] = load_class(method)
    budget_param = {"budget": budget} if spec.takes_budget else {}
    return cls(**spec.params, **budget_param, random_state=seed)


def _table_and_features(
    log: SampleLog,
    actions: tuple[Action, ...],
    cost: str,
    prices: Mapping[str, PriceLike] | None,
    probe_m: int,
    seed: int,
) -> tuple[OutcomeTable, pd.DataFrame]:
    table = estimate(log, actions, pricing_of(cost, prices, "fit_policy"), on_short="drop")
    features = build_features(log, probe_m=probe_m, random_state=seed).X
    if probe_m:
        probe = probe_mask(log, probe_m, random_state=seed)
        golds = query_golds(log, table.query_ids)
        table = probe_table(log.samples, table, probe=probe, pool=~probe, golds=golds)
        keep = np.isfinite(table.P).all(axis=1)
        table = table.subset(keep)
    return table, features.loc[list(table.query_ids)]


def fit_policy(
    log: SampleLog,
    *,
    budget: float,
    method: Method = "value",
    actions: str | Sequence[str | Action] | None = None,
    cost: str = "samples",
    prices: Mapping[str, PriceLike] | None = None,
    probe_m: int = 0,
    fractions: Sequence[float] = (0.6, 0.2, 0.2),
    seed: int = 0,
) -> FitResult:
    """Fit a policy on train queries, calibrate its price to ``budget``, check it on test.

    Parameters
    ----------
    log : SampleLog
        Queries with their sampled responses.
    budget : float
        Mean cost per query (in ``cost`` units) the calibrated rule should spend.
    method : str
        One of :data:`FIT_METHODS` (:mod:`computealloc.methods`): ``"value"``
        (predict-then-allocate), ``"imitation"`` (oracle imitation), ``"length"`` (the
        prompt-length heuristic) or ``"uniform"``.
    actions : str or sequence, optional
        Action specs; default :func:`~computealloc.estimation.estimate.default_actions`.
    cost, prices
        Cost unit and price per arm (:mod:`computealloc.estimation.units`); recorded in the policy
        (``cost_unit_``, ``prices_``) so that the runtime charges live samples alike.
    probe_m : int
        Probe samples per query for difficulty features; they are reused in the vote and
        charged once (majority actions of a single-model log only).
    fractions : sequence of 3 floats
        Shares of train, calibration and test queries.
    seed : int
        Seed of the split, the probes and the models.

    Returns
    -------
    FitResult

    Notes
    -----
    The saved policy is fitted and calibrated on disjoint queries; the test figures use
    queries neither step saw. Accuracy estimates are in-sample per query (all of a test
    query's samples), as :func:`computealloc.evaluation.evaluate`'s in-sample protocol.
    """
    budget = check_budget(budget, "fit_policy")
    acts = parse_actions(actions) if actions is not None else default_actions(log)
    table, X = _table_and_features(log, acts, cost, prices, probe_m, seed)
    split = split_queries(table.n_queries, fractions=fractions, seed=seed)
    policy = _make(method, budget, seed)
    policy.fit(X.iloc[split.train], table.subset(split.train))
    policy.calibrate(X.iloc[split.calibration], budget)
    policy.probe_m_ = probe_m
    test = table.subset(split.test)
    chosen = policy.predict(X.iloc[split.test], random_state=seed)
    rows = np.arange(test.n_queries)
    uniform = Uniform(random_state=seed).fit(X.iloc[split.train], table.subset(split.train))
    baseline = uniform.allocate(X.iloc[split.test], budget)
    return FitResult(
        policy=policy,
        probe_m=probe_m,
        n_train=len(split.train),
        n_calibration=len(split.calibration),
        n_test=len(split.test),
        test_accuracy=float(test.P[rows, chosen].mean()),
        test_cost=float(test.C[rows, chosen].mean()),
        uniform_accuracy=mixed_mean(baseline, test.P),
    )
