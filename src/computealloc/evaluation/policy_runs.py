"""The per-query methods of an evaluation at one budget: policies, router and oracles.

:func:`fit_static` fits the policies whose fit does not depend on the budget;
:func:`seed_rows` decides every per-query method (learned policies, streaming or batch,
with or without probes; the threshold router; the oracles) on the test queries at one budget
and reads the result rows and per-query records off the report table.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from computealloc.checks import FEASIBLE_RTOL
from computealloc.data.samples import SampleLog
from computealloc.data.splits import QuerySplit
from computealloc.estimation.actions import Action, parse_actions
from computealloc.estimation.oracle import solve
from computealloc.estimation.table import Allocation, OutcomeTable
from computealloc.evaluation.common import Float, Int
from computealloc.evaluation.routing import threshold_router
from computealloc.evaluation.tables import Tables
from computealloc.fitting.policies import (
    BasePolicy,
    Imitation,
    LengthHeuristic,
    Random,
    Uniform,
    Value,
)
from computealloc.methods import ROUTER

__all__ = ["fit_static", "router_reason", "router_share", "seed_rows"]


@dataclass(frozen=True)
class _Decision:
    """A (possibly randomised) action per test query: ``high`` with probability ``weight``."""

    low: Int
    high: Int
    weight: Float

    @classmethod
    def of_actions(cls, actions: Int) -> _Decision:
        a = np.asarray(actions, dtype=np.int64)
        return cls(a, a, np.zeros(a.size))

    @classmethod
    def of_allocation(cls, allocation: Allocation) -> _Decision:
        low = np.asarray(allocation.actions, dtype=np.int64)
        high, weight = low.copy(), np.zeros(low.size)
        if allocation.mix is not None:
            i, lo, hi, w = allocation.mix
            low = low.copy()
            low[i], high[i], weight[i] = lo, hi, w
        return cls(low, high, weight)

    def read(self, values: Float) -> Float:
        """Expected ``values[i, a_i]`` per query, shape (n_queries,)."""
        rows = np.arange(self.low.size)
        return (1.0 - self.weight) * values[rows, self.low] + self.weight * values[rows, self.high]

    def label(self) -> Int:
        """The most likely action per query."""
        return np.where(self.weight > 0.5, self.high, self.low)


@dataclass(frozen=True)
class _Run:
    """One method's decisions on the test queries and the tables they are read on."""

    decision: _Decision
    read: OutcomeTable
    reference: str


def _oracle_decision(table: OutcomeTable, budget: float) -> _Decision:
    return _Decision.of_allocation(solve(table, budget))


def _feasible(table: OutcomeTable, budget: float) -> bool:
    return bool(table.C.mean(axis=0).min() * (1 - FEASIBLE_RTOL) <= budget)


def _learned(
    name: str,
    fitted: dict[str, BasePolicy],
    X: pd.DataFrame,
    split: QuerySplit,
    budget: float,
    costs: Float | None,
    seed: int,
) -> _Decision:
    """Stream (calibrate on calibration queries, predict test) or batch (allocate test)."""
    base, _, mode = name.partition("/")
    policy = fitted[base]
    x_test = X.iloc[split.test]
    c_test = None if costs is None else costs[split.test]
    if mode == "batch" or base in ("uniform", "random"):
        return _Decision.of_allocation(policy.allocate(x_test, budget, c_test))
    c_cal = None if costs is None else costs[split.calibration]
    policy.calibrate(X.iloc[split.calibration], budget, c_cal)
    return _Decision.of_actions(policy.predict(x_test, c_test, random_state=seed))


def fit_static(
    tables: Tables, split: QuerySplit, methods: Sequence[str], seed: int
) -> dict[str, BasePolicy]:
    """Policies whose fit does not depend on the budget."""
    bases = {m.partition("/")[0] for m in methods}
    makers: dict[str, Callable[[], BasePolicy]] = {
        "uniform": lambda: Uniform(random_state=seed),
        "random": lambda: Random(random_state=seed),
        "length": lambda: LengthHeuristic(feature="n_chars", random_state=seed),
        "value": lambda: Value(random_state=seed),
    }
    fitted = {}
    train = tables.dec.subset(split.train)
    for name, make in makers.items():
        if name in bases:
            fitted[name] = make().fit(tables.X.iloc[split.train], train)
    if tables.probe is not None and "value+probe" in bases:
        pdec, _, px = tables.probe
        fitted["value+probe"] = Value(random_state=seed).fit(
            px.iloc[split.train], pdec.subset(split.train)
        )
    if ROUTER in methods:
        fitted[ROUTER] = Value(target="gain", random_state=seed).fit(
            tables.X.iloc[split.train], _columns(train, _router_actions(train))
        )
    return fitted


def _columns(table: OutcomeTable, columns: Sequence[int]) -> OutcomeTable:
    """The table restricted to some actions, in the order given."""
    idx = list(columns)
    return OutcomeTable(
        table.P[:, idx],
        table.C[:, idx],
        [table.actions[a] for a in idx],
        table.query_ids,
        table.cost_unit,
        table.metadata,
    )


def _router_actions(table: OutcomeTable) -> tuple[int, int]:
    """The router's ``(weak, strong)`` columns: each model's cheapest action on ``table``.

    The strong one is the more accurate of the two on ``table`` (the first in action order
    on a tie). The actions must belong to exactly two models.
    """
    models = np.array([parse_actions(a)[0].model for a in table.actions], dtype=object)
    cost, accuracy = table.C.mean(axis=0), table.P.mean(axis=0)
    cheapest = [
        int(np.flatnonzero(models == m)[np.argmin(cost[models == m])])
        for m in dict.fromkeys(models)
    ]
    weak, strong = sorted(cheapest, key=lambda a: accuracy[a])
    return weak, strong


def router_share(scores: Float, weak_cost: Float, strong_cost: Float, budget: float) -> float:
    """The share of strong calls whose routed mean cost on calibration queries is ``budget``.

    Routing the ``k`` highest-scored queries to the strong model costs ``sum(weak_cost) +
    sum(strong_cost - weak_cost over those k)``; the share is the largest (fractional) ``k /
    n`` whose mean cost is within the budget, 0 when none is and 1 when all are. Queries tied
    on the score count their mean extra cost, which is what
    :func:`~computealloc.evaluation.routing.threshold_router`'s random tie-break spends in
    expectation, so the expected routed cost on these queries is the budget exactly. With per-action
    constant costs ``c_w < c_s`` the share is ``clip((budget - c_w) / (c_s - c_w), 0, 1)``.

    Parameters
    ----------
    scores : ndarray of shape (n_queries,)
        Router scores of the calibration queries.
    weak_cost, strong_cost : ndarray of shape (n_queries,)
        Cost of each query's weak and strong action, in the budget's unit.
    budget : float
        Mean cost per query.

    Returns
    -------
    float
        The share of strong calls, in [0, 1].
    """
    n = scores.size
    _, group = np.unique(scores, return_inverse=True)
    extra = strong_cost - weak_cost
    extra = (np.bincount(group, weights=extra) / np.bincount(group))[group]
    order = np.argsort(-scores, kind="stable")
    path = weak_cost.sum() + np.concatenate(([0.0], np.cumsum(extra[order])))
    within = np.flatnonzero(path <= budget * n * (1 + 1e-12))
    if within.size == 0:
        return 0.0
    k = int(within[-1])
    if k == n:
        return 1.0
    frac = (budget * n - path[k]) / (path[k + 1] - path[k])
    return float(np.clip((k + frac) / n, 0.0, 1.0))


def _router_decision(
    policy: BasePolicy,
    table: OutcomeTable,
    X: pd.DataFrame,
    split: QuerySplit,
    budget: float,
    seed: int,
) -> _Decision:
    """RouteLLM's threshold router at one budget: share on calibration, threshold on test."""
    weak, strong = (table.actions.index(a) for a in policy.actions_)
    cal_scores, test_scores = (
        np.diff(policy.scores(X.iloc[rows]), axis=1)[:, 0]
        for rows in (split.calibration, split.test)
    )
    cal = table.subset(split.calibration)
    share = router_share(cal_scores, cal.C[:, weak], cal.C[:, strong], budget)
    to_strong, _ = threshold_router(
        test_scores, share, calibration_scores=cal_scores, random_state=seed
    )
    return _Decision.of_actions(np.where(to_strong, strong, weak))


def _budget_runs(
    tables: Tables,
    split: QuerySplit,
    fitted: dict[str, BasePolicy],
    budget: float,
    methods: Sequence[str],
    seed: int,
    skipped: list[str],
) -> dict[str, _Run]:
    """Decisions of every method at one budget on the test queries, and of the oracles."""
    plain = [m for m in methods if "+probe" not in m]
    variant = (tables.dec, tables.rep, tables.X)
    runs = _variant_runs(variant, "", None, split, fitted, budget, plain, seed)
    probed = [m for m in methods if "+probe" in m]
    if not probed:
        return runs
    if tables.probe is None:
        skipped.extend(f"{m}: no probe features for this log" for m in probed)
        return runs
    pdec = tables.probe[0]
    if not _feasible(pdec, budget):
        skipped.extend(f"{m} at budget {budget:g}: the probes alone cost more" for m in probed)
        return runs
    costs = pdec.C if pdec.cost_unit == "samples" else None
    runs.update(_variant_runs(tables.probe, "+probe", costs, split, fitted, budget, probed, seed))
    return runs


def _variant_runs(
    variant: tuple[OutcomeTable, OutcomeTable, pd.DataFrame],
    suffix: str,
    costs: Float | None,
    split: QuerySplit,
    fitted: dict[str, BasePolicy],
    budget: float,
    names: Sequence[str],
    seed: int,
) -> dict[str, _Run]:
    """The oracle and the methods ``names`` on one variant's (decision, report, features).

    ``suffix`` is ``""`` for the plain tables and ``"+probe"`` for the probe tables; the
    variant's oracle (``"oracle" + suffix``) is the reference of its methods.
    """
    dec, rep, X = variant
    oracle = f"oracle{suffix}"
    rep_t = rep.subset(split.test)
    runs = {oracle: _Run(_oracle_decision(dec.subset(split.test), budget), rep_t, oracle)}
    if "oracle_in_sample" in names:
        runs["oracle_in_sample"] = _Run(_oracle_decision(rep_t, budget), rep_t, oracle)
    if any(m.partition("/")[0] == f"imitation{suffix}" for m in names):
        fitted[f"imitation{suffix}"] = Imitation(budget=budget, random_state=seed).fit(
            X.iloc[split.train], dec.subset(split.train)
        )
    for name in names:
        if name == ROUTER:
            decision = _router_decision(fitted[ROUTER], dec, X, split, budget, seed)
            runs[name] = _Run(decision, rep_t, oracle)
        elif not name.startswith("oracle"):
            decision = _learned(name, fitted, X, split, budget, costs, seed)
            runs[name] = _Run(decision, rep_t, oracle)
    return runs


def _rows(
    runs: dict[str, _Run], budget: float, difficulty: Float, qids: list[str]
) -> tuple[list[dict[str, Any]], list[pd.DataFrame]]:
    """Result rows (before cross-method metrics) and per-query records of one budget."""
    rows, records = [], []
    for name, run in runs.items():
        acc = run.decision.read(run.read.P)
        cost = run.decision.read(run.read.C)
        ref = runs[run.reference]
        label = ref.decision.label()
        match = (1 - run.decision.weight) * (run.decision.low == label) + run.decision.weight * (
            run.decision.high == label
        )
        ref_acc = float(ref.decision.read(ref.read.P).mean())
        gap = float((run.read.P.max(axis=1) - run.read.P.min(axis=1)).max())
        rows.append(
            {
                "method": name,
                "budget": budget,
                "accuracy": float(acc.mean()),
                "mean_cost": float(cost.mean()),
                "reference": run.reference,
                "imitation_accuracy": float(match.mean()),
                "regret": ref_acc - float(acc.mean()),
                "regret_bound": (1.0 - float(match.mean())) * gap,
                "n_test": int(acc.size),
            }
        )
        records.append(
            pd.DataFrame(
                {
                    "method": name,
                    "budget": budget,
                    "query_id": qids,
                    "cost": cost,
                    "accuracy": acc,
                    "difficulty": difficulty,
                }
            )
        )
    return rows, records


def _strong_columns(
    runs: dict[str, _Run], rep_t: OutcomeTable, log: SampleLog
) -> dict[str, dict[str, float]]:
    """Strong-call share per method and the weak / strong accuracies, for two-model actions."""
    models = np.array([parse_actions(a)[0].model for a in rep_t.actions], dtype=object)
    if len(log.models) != 2 or len(set(models)) != 2:
        return {}
    means = rep_t.P.mean(axis=0)
    by_model = {m: float(means[models == m].max()) for m in log.models}
    strong = max(by_model, key=lambda m: by_model[m])
    weak = min(by_model, key=lambda m: by_model[m])
    is_strong = (models == strong).astype(np.float64)
    out = {}
    for name, run in runs.items():
        share = float(run.decision.read(np.broadcast_to(is_strong, run.read.P.shape)).mean())
        out[name] = {
            "strong_share": share,
            "weak_accuracy": by_model[weak],
            "strong_accuracy": by_model[strong],
        }
    return out


def seed_rows(
    log: SampleLog,
    tables: Tables,
    split: QuerySplit,
    budget: float,
    methods: list[str],
    fitted: dict[str, BasePolicy],
    seed: int,
    skipped: list[str],
) -> tuple[list[dict[str, Any]], list[pd.DataFrame]]:
    internal = list(dict.fromkeys(["uniform", *methods, "oracle"]))
    runs = _budget_runs(tables, split, fitted, budget, internal, seed, skipped)
    cheapest = int(np.argmin(tables.rep.C.mean(axis=0)))
    difficulty = 1.0 - tables.rep.P[split.test, cheapest]
    qids = [tables.rep.query_ids[i] for i in split.test]
    rows, records = _rows(runs, budget, difficulty, qids)
    extra = _strong_columns(runs, tables.rep.subset(split.test), log)
    for row in rows:
        row.update(extra.get(row["method"], {}))
    return rows, records


def router_reason(log: SampleLog, actions: tuple[Action, ...]) -> str | None:
    """Why the threshold router cannot run on this log and actions (None when it can)."""
    if len(log.models) != 2:
        return "threshold routing needs a log with two models"
    if actions and len({a.model for a in actions}) != 2:
        return "threshold routing needs actions of both models"
    return None
