"""Honest evaluation of allocation policies: seeded splits, two protocols, budget sweeps.

:func:`evaluate` runs every method on the test queries of several seeded query splits, under
one or both protocols (DESIGN, "Evaluation protocol"):

- ``"in-sample"``: accuracies are estimated from all samples of each query, as the paper does;
  decisions and reported numbers read the same table, so the oracle is optimistic;
- ``"held-out"``: each query's samples are split in two halves by a seeded shuffle
  (:func:`computealloc.splits.split_samples`); every decision (oracle labels, policy
  training, calibration, probe features) reads half A; every reported accuracy and cost is
  read from half B.

Methods (names in the ``method`` column)
---------------------------------------
``uniform``, ``random``
    Budget-matched baselines (:class:`~computealloc.policies.Uniform`,
    :class:`~computealloc.policies.Random`), allocated on the test batch.
``length``, ``imitation``, ``value``
    :class:`~computealloc.policies.LengthHeuristic`, :class:`~computealloc.policies.Imitation`
    and :class:`~computealloc.policies.Value` on prompt features: fitted on the train queries,
    dual price calibrated on the calibration queries, then each test query decided on its own
    (streaming; the realised cost on test is reported as it falls).
``imitation+probe``, ``value+probe``
    The same on prompt plus probe features: ``probe_m`` samples of each query are drawn first
    and read; they are reused in the vote and charged once (majority@k costs ``max(k, m)``),
    and the vote's accuracy given the probes is exact (:mod:`computealloc.reuse`). Under
    held-out the probes come from half A and the further votes from half B.
``<policy>/batch``
    The learned policy allocating the whole test batch at once
    (:meth:`~computealloc.policies.BasePolicy.allocate`: the budget is solved on the batch's
    predicted scores, never on its outcomes), so its mean cost is the budget exactly.
``router/threshold``
    RouteLLM's threshold router (Ong et al. 2024) for logs with two models: a
    :class:`~computealloc.policies.Value` with ``target="gain"`` fitted on the train queries
    scores each query by the predicted accuracy gain of the strong model's cheapest action
    over the weak model's (the strong model is the more accurate one on train); the share of
    strong calls is the one whose routed mean cost on the calibration queries is the budget,
    and :func:`computealloc.routing.threshold_router` sends a test query to the strong
    model when its score clears the calibration scores' quantile at that share (streaming;
    the realised test cost is reported as it falls). Needs a log, and actions, of exactly
    two models.
Sequential methods (:data:`SEQUENTIAL`)
    :func:`computealloc.sequential.sequential_methods` on the same query split, seed and
    protocol (decisions on half A, replays of half B under held-out): the budget-calibrated
    stopping rules ``adaptive-consistency``, ``dirichlet``, ``entropy``,
    ``majority-share`` and ``esc``, computealloc's optimal stopping policy
    ``sequential/pooled``, ``sequential/prior`` and ``sequential`` (the better of the two
    on the calibration queries), and the published settings ``adaptive-consistency@0.95``
    and ``esc@5``, which are not calibrated to a budget (``budget`` NaN). They need a
    single-model log, majority actions, ``cost="samples"``, at least 2 samples per query
    and budgets >= 1; they have no per-query records and no imitation metrics.
Early exit along the thought (:data:`THINKING`)
    On a checkpoint log (``log`` a :class:`~computealloc.checkpoints.CheckpointLog`, or
    ``checkpoints`` given), :func:`computealloc.thinking.thinking_rows` on the same query
    split, seed and sample halves: the budget-calibrated rules ``uniform-cap`` (budget
    forcing, ``cap@T`` for every query), ``stable``, ``conf`` and computealloc's
    ``learned-exit``, and ``full/majority@1`` (one trace thought to its end; ``budget``
    NaN), the reference of "tokens to reach full-thinking accuracy". They need a
    single-model checkpoint log and ``cost="tokens"`` without prices; they have no per-query
    records and no imitation metrics.
``oracle``
    :func:`computealloc.oracle.solve` on the test queries' decision table, read on the report
    table: the honest oracle (under in-sample the two tables are one).
``oracle+probe``
    The oracle that also knows the probe answers (solved on the decision table of the probe
    policies): the reference the probe policies imitate.
``oracle_in_sample``
    The oracle solved and read on the report table: what an in-sample evaluation would claim.

Metrics (columns of :attr:`EvaluationResult.results`)
-----------------------------------------------------
``accuracy``, ``mean_cost`` on the test queries; ``rel_gain_vs_uniform`` =
``accuracy / uniform - 1``; ``gap_closed`` = ``(accuracy - uniform) / (oracle - uniform)``
(NaN unless the oracle beats uniform by more than ``GAP_EPS``); ``imitation_accuracy``
(share of test queries given the reference oracle's action), ``regret`` (reference oracle
accuracy minus accuracy) and
``regret_bound`` (imitation error times the worst per-query accuracy gap of the report
table, the bound of Zhai et al.); ``compute_saved_at_uniform_acc`` = ``1 - c / B`` with ``c``
the cost at which the method's accuracy-vs-cost curve, interpolated linearly over the budgets
evaluated, first reaches uniform's accuracy at ``B`` (conservative for concave curves; NaN
when it never does within the budgets evaluated). These per-seed metrics compare at the
nominal budget; :mod:`computealloc.comparison` (what the report shows) compares at equal
realised cost, with intervals, and reports ``gap_closed`` only where the gap is resolved.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from computealloc.actions import Action, parse_actions
from computealloc.checks import FEASIBLE_RTOL, check_feasible
from computealloc.estimate import default_actions, estimate, query_golds
from computealloc.features import build_features, probe_mask
from computealloc.methods import ROUTER, evaluated
from computealloc.oracle import solve
from computealloc.policies import BasePolicy, Imitation, LengthHeuristic, Random, Uniform, Value
from computealloc.reuse import probe_table
from computealloc.routing import threshold_router
from computealloc.samples import SampleLog
from computealloc.sequential import SEQUENTIAL_METHODS, sequential_methods
from computealloc.splits import QuerySplit, split_queries, split_samples
from computealloc.table import Allocation, OutcomeTable
from computealloc.thinking import THINKING_METHODS
from computealloc.units import PriceLike, pricing_of

__all__ = [
    "GAP_EPS",
    "METHODS",
    "PROTOCOLS",
    "ROUTER",
    "SEQUENTIAL",
    "SEQUENTIAL_ORDERS",
    "THINKING",
    "EvaluationResult",
    "Footprint",
    "cost_to_reach",
    "evaluate",
    "footprint",
    "routing_metrics",
]

if TYPE_CHECKING:
    from computealloc.checkpoints import CheckpointLog

Float = NDArray[np.float64]
Int = NDArray[np.int64]
Protocol = Literal["in-sample", "held-out"]
ProgressCallback = Callable[[int, int], None]

PROTOCOLS: tuple[str, ...] = ("in-sample", "held-out")

#: The sequential methods of :func:`computealloc.sequential.sequential_methods` that
#: :func:`evaluate` runs (its ``uniform-majority`` is ``uniform`` here).
SEQUENTIAL: tuple[str, ...] = tuple(m for m in SEQUENTIAL_METHODS if m in evaluated())

#: Replayed orders per query of the sequential methods.
SEQUENTIAL_ORDERS = 64

#: The early-exit rules along the thought (:mod:`computealloc.thinking`), run on checkpoint logs.
THINKING: tuple[str, ...] = tuple(THINKING_METHODS)

#: Every method, in report order (:data:`computealloc.methods.REGISTRY`'s evaluated ones).
METHODS: tuple[str, ...] = evaluated()

#: A uniform-to-oracle gap not above this (in accuracy) makes ``gap_closed`` NaN.
GAP_EPS = 1e-6

#: Metric columns averaged over seeds by :meth:`EvaluationResult.summary`.
METRICS: tuple[str, ...] = (
    "accuracy",
    "mean_cost",
    "rel_gain_vs_uniform",
    "gap_closed",
    "imitation_accuracy",
    "regret",
    "regret_bound",
    "compute_saved_at_uniform_acc",
    "cost_error",
)


# --------------------------------------------------------------------------- result object


@dataclass(frozen=True)
class EvaluationResult:
    """Everything :func:`evaluate` measured.

    Attributes
    ----------
    results : DataFrame
        Long format, one row per source x protocol x seed x budget x method: ``source,
        protocol, seed, budget, method, accuracy, mean_cost`` and the metric columns of the
        module docstring, plus ``cost_error`` (``mean_cost / budget - 1``), ``uniform_accuracy``,
        ``oracle_accuracy``, ``reference`` (the oracle a method is compared with for
        imitation and regret), ``probe_m`` and ``n_test``.
    queries : DataFrame
        One row per test query and method: ``protocol, seed, budget, method, query_id, cost,
        accuracy, difficulty`` (``1 -`` the single-sample accuracy of the cheapest action on
        the report table), for plots of where the compute goes.
    routing : DataFrame
        For logs with two models: RouteLLM's ``apgr`` and ``cpt50`` per protocol x seed x
        method (:func:`routing_metrics`); empty otherwise.
    config : dict
        The evaluation's settings and notes (skipped methods and why).
    """

    results: pd.DataFrame
    queries: pd.DataFrame
    routing: pd.DataFrame
    config: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> pd.DataFrame:
        """Mean and standard error over seeds per protocol x budget x method.

        Returns
        -------
        DataFrame
            Columns ``protocol, budget, method, n_seeds`` and, for each metric, ``<metric>``
            (mean over seeds) and ``<metric>_se`` (standard deviation / sqrt(n_seeds); NaN
            for a single seed). Methods in :data:`METHODS` order.
        """
        return summarize(self.results, ["protocol", "budget", "method"])


def summarize(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Mean and standard error over seeds of every metric column, per ``keys``."""
    metrics = [m for m in METRICS if m in frame.columns]
    grouped = frame.groupby(keys, sort=False, dropna=False)[metrics]
    mean = grouped.mean()
    se = grouped.std(ddof=1) / grouped.count().clip(lower=1) ** 0.5
    out = mean.join(se.add_suffix("_se"))
    out.insert(0, "n_seeds", frame.groupby(keys, sort=False, dropna=False)["seed"].nunique())
    out = out.reset_index()
    if "method" in keys:
        order = {m: i for i, m in enumerate(METHODS)}
        out = out.sort_values(
            keys, key=lambda s: s.map(order) if s.name == "method" else s, kind="stable"
        )
    return out.reset_index(drop=True)


# --------------------------------------------------------------------------- decisions


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


# --------------------------------------------------------------------------- protocol data


@dataclass(frozen=True)
class _Tables:
    """Decision and report tables of one (protocol, seed), all queries, same rows."""

    dec: OutcomeTable
    rep: OutcomeTable
    X: pd.DataFrame
    probe: tuple[OutcomeTable, OutcomeTable, pd.DataFrame] | None


def outcome_table(
    log: SampleLog,
    actions: tuple[Action, ...],
    cost: str,
    prices: Mapping[str, PriceLike] | None,
) -> OutcomeTable:
    """The outcome table of a (sub)log in a cost unit and prices (:mod:`computealloc.units`).

    Queries with too few samples for an action are dropped.
    """
    return estimate(log, actions, pricing_of(cost, prices, "evaluate"), on_short="drop")


def _common_rows(a: OutcomeTable, b: OutcomeTable) -> tuple[OutcomeTable, OutcomeTable]:
    common = sorted(set(a.query_ids) & set(b.query_ids))
    if not common:
        raise ValueError("The two sample halves share no query with enough samples.")
    return (
        a.subset(pd.Index(a.query_ids).get_indexer(pd.Index(common))),
        b.subset(pd.Index(b.query_ids).get_indexer(pd.Index(common))),
    )


def _probe_ready(log: SampleLog, actions: tuple[Action, ...], probe_m: int) -> bool:
    return probe_m > 0 and len(log.models) == 1 and all(a.kind == "majority" for a in actions)


def _tables(
    log: SampleLog,
    protocol: str,
    seed: int,
    actions: tuple[Action, ...],
    cost: str,
    prices: Mapping[str, PriceLike] | None,
    probe_m: int,
    prompt_X: pd.DataFrame,
    cache: dict[str, Any],
) -> _Tables:
    """Everything one (protocol, seed) needs, tables restricted to common queries."""
    everything = np.ones(len(log.samples), dtype=bool)
    if protocol == "in-sample":
        if "in-sample" not in cache:
            cache["in-sample"] = outcome_table(log, actions, cost, prices)
        dec = rep = cache["in-sample"]
        half_a, half_b = everything, everything
    else:
        half_a = split_samples(log.samples, seed=seed)
        half_b = ~half_a
        dec, rep = _common_rows(
            outcome_table(log.subset(sample_mask=half_a), actions, cost, prices),
            outcome_table(log.subset(sample_mask=half_b), actions, cost, prices),
        )
    X = prompt_X.loc[list(dec.query_ids)]
    if not _probe_ready(log, actions, probe_m):
        return _Tables(dec, rep, X, None)
    eligible = None if protocol == "in-sample" else half_a
    feats = build_features(log, probe_m=probe_m, eligible=eligible, random_state=seed)
    probe = probe_mask(log, probe_m, eligible=eligible, random_state=seed)
    pdec, prep = (
        probe_table(
            log.samples,
            table,
            probe=probe,
            pool=pool & ~probe,
            golds=query_golds(log, table.query_ids),
        )
        for table, pool in ((dec, half_a), (rep, half_b))
    )
    return _Tables(dec, rep, X, (pdec, prep, feats.X.loc[list(dec.query_ids)]))


# --------------------------------------------------------------------------- one budget


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


def _fit_static(
    tables: _Tables, split: QuerySplit, methods: Sequence[str], seed: int
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


def _router_share(scores: Float, weak_cost: Float, strong_cost: Float, budget: float) -> float:
    """The share of strong calls whose routed mean cost on calibration queries is ``budget``.

    Routing the ``k`` highest-scored queries to the strong model costs ``sum(weak_cost) +
    sum(strong_cost - weak_cost over those k)``; the share is the largest (fractional) ``k /
    n`` whose mean cost is within the budget, 0 when none is and 1 when all are. Queries tied
    on the score count their mean extra cost, which is what
    :func:`~computealloc.routing.threshold_router`'s random tie-break spends in expectation,
    so the expected routed cost on these queries is the budget exactly. With per-action
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
    share = _router_share(cal_scores, cal.C[:, weak], cal.C[:, strong], budget)
    to_strong, _ = threshold_router(
        test_scores, share, calibration_scores=cal_scores, random_state=seed
    )
    return _Decision.of_actions(np.where(to_strong, strong, weak))


def _budget_runs(
    tables: _Tables,
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


# --------------------------------------------------------------------------- cross-method


def _relative_metrics(frame: pd.DataFrame) -> pd.DataFrame:
    """Gain over uniform, gap closed and cost error, per (protocol, seed, budget)."""
    keys = ["protocol", "seed", "budget"]
    pick = frame.set_index([*keys, "method"])["accuracy"]
    uniform = pick.xs("uniform", level="method").rename("uniform_accuracy")
    oracle = pick.xs("oracle", level="method").rename("oracle_accuracy")
    out = frame.join(uniform, on=keys).join(oracle, on=keys)
    gap = out["oracle_accuracy"] - out["uniform_accuracy"]
    out["rel_gain_vs_uniform"] = out["accuracy"] / out["uniform_accuracy"] - 1.0
    closed = (out["accuracy"] - out["uniform_accuracy"]) / gap.where(gap > GAP_EPS)
    out["gap_closed"] = closed
    out["cost_error"] = out["mean_cost"] / out["budget"] - 1.0
    sequential = out["method"].isin(SEQUENTIAL) | out["method"].isin(THINKING)
    out.loc[sequential, "regret"] = out["oracle_accuracy"] - out["accuracy"]
    return out


def cost_to_reach(cost: Float, accuracy: Float, target: Float) -> Float:
    """Cost at which a piecewise-linear accuracy-vs-cost curve first reaches each target.

    ``cost`` is sorted increasingly; accuracy is replaced by its running maximum. A target at
    or below the first point costs the first point's cost; one above the curve gives NaN.

    Examples
    --------
    >>> cost_to_reach(np.array([1.0, 2.0]), np.array([0.5, 0.7]), np.array([0.6, 0.8]))
    array([1.5, nan])
    """
    env = np.maximum.accumulate(accuracy)
    j = np.searchsorted(env, target, side="left")
    inside = j < env.size
    j_c = np.clip(j, 1, env.size - 1) if env.size > 1 else np.zeros_like(j)
    lo_c, hi_c = cost[j_c - 1], cost[j_c]
    lo_a, hi_a = env[j_c - 1], env[j_c]
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.clip((target - lo_a) / (hi_a - lo_a), 0.0, 1.0)
    between = np.where(hi_a > lo_a, lo_c + frac * (hi_c - lo_c), hi_c)
    reached = np.where(j == 0, cost[0], between)
    return np.where(inside, reached, np.nan)


def _compute_saved(frame: pd.DataFrame) -> pd.Series:
    """``1 - cost to reach uniform's accuracy at B / B`` for every row (module docstring)."""
    saved = pd.Series(np.nan, index=frame.index)
    for _, group in frame.groupby(["protocol", "seed", "method"], sort=False):
        curve = group.sort_values("mean_cost")
        needed = cost_to_reach(
            curve["mean_cost"].to_numpy(np.float64),
            curve["accuracy"].to_numpy(np.float64),
            group["uniform_accuracy"].to_numpy(np.float64),
        )
        saved.loc[group.index] = 1.0 - needed / group["budget"].to_numpy(np.float64)
    return saved


def routing_metrics(
    share: ArrayLike, accuracy: ArrayLike, weak: float, strong: float
) -> tuple[float, float]:
    """RouteLLM's APGR and CPT(50%) of a router's accuracy-vs-strong-calls curve.

    Parameters
    ----------
    share : array-like of shape (n_points,)
        Share of queries sent to the strong model at each operating point, in [0, 1].
    accuracy : array-like of shape (n_points,)
        Accuracy at each operating point.
    weak, strong : float
        Accuracy of the weak model alone (share 0) and of the strong model alone (share 1).

    Returns
    -------
    apgr : float
        Average performance gap recovered: the area under ``(acc - weak) / (strong - weak)``
        over the share in [0, 1], the curve closed by the points (0, weak) and (1, strong)
        (Ong et al. 2024); NaN when ``strong == weak``.
    cpt50 : float
        Call-performance threshold: the smallest strong-call share at which the curve (its
        running maximum, interpolated linearly) recovers 50% of the gap; NaN when never.

    Examples
    --------
    >>> routing_metrics([0.5], [0.9], 0.5, 1.0)
    (0.65, 0.3125)
    """
    if abs(strong - weak) <= GAP_EPS:
        return float("nan"), float("nan")
    x = np.concatenate(([0.0], np.asarray(share, dtype=np.float64), [1.0]))
    y = np.concatenate(([weak], np.asarray(accuracy, dtype=np.float64), [strong]))
    order = np.argsort(x, kind="stable")
    x, pgr = x[order], (y[order] - weak) / (strong - weak)
    apgr = float(np.sum((pgr[1:] + pgr[:-1]) / 2.0 * np.diff(x)))
    cpt = float(cost_to_reach(x, pgr, np.array([0.5]))[0])
    return apgr, cpt


def _routing(frame: pd.DataFrame) -> pd.DataFrame:
    """APGR and CPT(50%) per protocol x seed x method over the budgets evaluated."""
    if "strong_share" not in frame.columns:
        return pd.DataFrame(columns=["protocol", "seed", "method", "apgr", "cpt50"])
    rows = []
    for (protocol, seed, method), group in frame.groupby(
        ["protocol", "seed", "method"], sort=False
    ):
        apgr, cpt = routing_metrics(
            group["strong_share"].to_numpy(),
            group["accuracy"].to_numpy(),
            float(group["weak_accuracy"].iloc[0]),
            float(group["strong_accuracy"].iloc[0]),
        )
        rows.append(
            {"protocol": protocol, "seed": seed, "method": method, "apgr": apgr, "cpt50": cpt}
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- validation


def _choice_list(name: str, value: str | Iterable[str], allowed: tuple[str, ...]) -> list[str]:
    items = [value] if isinstance(value, str) else list(value)
    bad = [v for v in items if v not in allowed]
    if not items or bad:
        raise ValueError(
            f"The {name!r} parameter of evaluate must be a non-empty list of "
            f"{', '.join(map(repr, allowed))}. Got {value!r} instead."
        )
    return list(dict.fromkeys(items))


def _budget_list(budgets: Iterable[float]) -> list[float]:
    values = list(budgets) if not isinstance(budgets, (str, bytes)) else []
    ok = values and all(
        isinstance(b, Real) and not isinstance(b, bool) and 0 < float(b) < np.inf for b in values
    )
    if not ok:
        raise ValueError(
            "The 'budgets' parameter of evaluate must be a non-empty list of floats in (0, inf). "
            f"Got {budgets!r} instead."
        )
    return sorted({float(b) for b in values})


def _seed_list(seeds: int | Iterable[int]) -> list[int]:
    if isinstance(seeds, Integral) and not isinstance(seeds, bool):
        if seeds < 1:
            raise ValueError(
                f"The 'seeds' parameter of evaluate must be an int in [1, inf) or a list of "
                f"ints. Got {seeds!r} instead."
            )
        return list(range(int(seeds)))
    values = list(seeds) if isinstance(seeds, Iterable) else []
    if not values or not all(isinstance(s, Integral) and not isinstance(s, bool) for s in values):
        raise ValueError(
            "The 'seeds' parameter of evaluate must be an int in [1, inf) or a list of ints. "
            f"Got {seeds!r} instead."
        )
    return list(dict.fromkeys(int(s) for s in values))


def _check_args(
    log: object, probe_m: object, cost: object, prices: Mapping[str, PriceLike] | None
) -> None:
    if not isinstance(log, SampleLog):
        raise TypeError(
            f"The 'log' parameter of evaluate must be a SampleLog. Got {type(log).__name__} "
            "instead."
        )
    if isinstance(probe_m, bool) or not isinstance(probe_m, Integral) or probe_m < 0:
        raise ValueError(
            f"The 'probe_m' parameter of evaluate must be an int in [0, inf). Got {probe_m!r} "
            "instead."
        )
    pricing_of(cost, prices, "evaluate")


def _check_budgets(table: OutcomeTable, budgets: list[float], protocol: str) -> None:
    """Every budget must afford the cheapest action on average (uniform's floor)."""
    cheapest = float(table.C.mean(axis=0).min())
    check_feasible(budgets[0], cheapest, f"evaluate (protocol {protocol!r})")


def _protocol_actions(
    log: SampleLog, actions: str | Iterable[str | Action] | None, protocol: str
) -> tuple[Action, ...]:
    if actions is not None:
        return parse_actions(actions)
    try:
        return default_actions(log, protocol)  # type: ignore[arg-type]
    except ValueError as exc:
        raise ValueError(f"{exc} Evaluate this log with protocols=('in-sample',).") from exc


# --------------------------------------------------------------------------- public API


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


def _seed_rows(
    log: SampleLog,
    tables: _Tables,
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


def _sequential_reason(log: SampleLog, cost: str, actions: tuple[Action, ...]) -> str | None:
    """Why the sequential methods cannot run on this log (None when they can)."""
    if len(log.models) != 1:
        return "sequential stopping needs a single-model log"
    if cost != "samples":
        return "sequential stopping is budgeted in samples (cost='samples')"
    if any(a.kind != "majority" for a in actions):
        return "sequential stopping needs majority actions"
    if int(log.samples.groupby("query_id").size().min()) < 2:
        return "sequential stopping needs at least 2 samples per query"
    return None


def _thinking_reason(
    checkpoints: CheckpointLog | None, cost: str, prices: Mapping[str, PriceLike] | None
) -> str | None:
    """Why the early-exit rules cannot run (None when they can)."""
    if checkpoints is None:
        return "early exit along the thought needs a checkpoint log"
    if len(checkpoints.models) != 1:
        return "early exit along the thought needs a single-model checkpoint log"
    if cost != "tokens" or prices:
        return "early exit along the thought is budgeted in tokens (cost='tokens', no prices)"
    return None


def _thinking_rows(
    log: SampleLog,
    checkpoints: CheckpointLog,
    tables: _Tables,
    qsplit: QuerySplit,
    protocol: str,
    seed: int,
    budgets: list[float],
) -> list[dict[str, Any]]:
    """Rows of the early-exit rules on the query split and sample halves of ``tables``."""
    from computealloc.thinking import EXIT_METHODS, thinking_rows

    ids = np.asarray(tables.dec.query_ids, dtype=object)
    half_a = None
    if protocol != "in-sample":
        samples = log.samples
        one_arm = (samples["model"] == samples["model"].iloc[0]).to_numpy()
        first = samples[one_arm]
        half_a = pd.Series(
            split_samples(samples, seed=seed)[one_arm],
            index=pd.MultiIndex.from_arrays([first["query_id"], first["sample_idx"]]),
        )
    rows = thinking_rows(
        checkpoints,
        budgets,
        seed=seed,
        protocol=protocol,
        train=list(ids[qsplit.train]),
        calibration=list(ids[qsplit.calibration]),
        test=list(ids[qsplit.test]),
        half_a=half_a,
        methods=EXIT_METHODS,
    )
    for row in rows:
        row.update(reference="oracle", imitation_accuracy=np.nan, regret_bound=np.nan)
    return rows


def _router_reason(log: SampleLog, actions: tuple[Action, ...]) -> str | None:
    """Why the threshold router cannot run on this log and actions (None when it can)."""
    if len(log.models) != 2:
        return "threshold routing needs a log with two models"
    if actions and len({a.model for a in actions}) != 2:
        return "threshold routing needs actions of both models"
    return None


def _sequential_rows(
    log: SampleLog,
    tables: _Tables,
    protocol: str,
    seed: int,
    budgets: list[float],
    names: list[str],
    split: Sequence[float],
    prompt_X: pd.DataFrame,
) -> list[dict[str, Any]]:
    """Rows of the sequential methods on the queries of ``tables`` (so the same test split)."""
    qids = list(tables.dec.query_ids)
    same = len(qids) == log.samples["query_id"].nunique()
    frame = sequential_methods(
        log if same else log.subset(query_ids=qids),
        [b for b in budgets if b >= 1.0],
        seed=seed,
        protocol=protocol,  # type: ignore[arg-type]
        split=split,
        features=prompt_X,
        n_orders=SEQUENTIAL_ORDERS,
        methods=names,
    )
    frame = frame[["method", "budget", "accuracy", "mean_cost", "n_test"]].assign(
        protocol=protocol,
        seed=seed,
        reference="oracle",
        imitation_accuracy=np.nan,
        regret_bound=np.nan,
    )
    return frame.to_dict("records")  # type: ignore[return-value]


@dataclass(frozen=True)
class Footprint:
    """What an :func:`evaluate` call will cost, roughly (see :func:`footprint`).

    Attributes
    ----------
    steps : int
        Progress steps (protocol x seed x budget).
    seconds : float
        Estimated wall time on the reference machine (2 shared x86 cores).
    peak_bytes : float
        Estimated peak memory of the process.
    sequential_seconds : float
        The part of ``seconds`` spent by the sequential stopping rules.
    """

    steps: int
    seconds: float
    peak_bytes: float
    sequential_seconds: float


#: Footprint model, fitted on Game-of-24-like logs (up to 100 queries x 100 samples, many
#: distinct answers) and mot_cascade on 2 shared cores: seconds per progress step of the
#: per-query policies; seconds and bytes of the stopping rules per (protocol, seed) for 100
#: queries x 100 samples (time ~ queries x samples^2.2, memory ~ samples^2 x sqrt(queries));
#: the process.
_STEP_S, _SEQ_S, _SEQ_BYTES, _BASE_BYTES = 1.0, 16.0, 1.0e9, 250e6


def footprint(
    log: SampleLog,
    *,
    budgets: Iterable[float] = (1, 2, 4, 8),
    seeds: int | Iterable[int] = 3,
    protocols: str | Iterable[str] = PROTOCOLS,
    methods: Iterable[str] | None = None,
) -> Footprint:
    """Estimate the time and memory of :func:`evaluate` with these arguments, before running.

    The sequential stopping rules dominate on logs with many samples per query: their replay
    tables grow with the square of the samples replayed (``n`` in-sample, ``n / 2`` held-out).
    The figures are rough (within a factor of 2 on the logs the model was fitted on) and
    scale with the machine.

    Examples
    --------
    >>> from computealloc import datasets  # doctest: +SKIP
    >>> footprint(datasets.load("mot_cascade:llama-2-13b/gsm/pot2")).seconds  # doctest: +SKIP
    """
    budget_list = _budget_list(budgets)
    n_seeds = len(_seed_list(seeds))
    protocol_list = _choice_list("protocols", protocols, PROTOCOLS)
    names = METHODS if methods is None else tuple(methods)
    steps = len(protocol_list) * n_seeds * len(budget_list)
    n_queries = log.samples["query_id"].nunique()
    pool = int(log.samples.groupby(["model", "query_id"]).size().max()) if n_queries else 0
    sequential = (
        any(m in SEQUENTIAL for m in names) and _sequential_reason(log, "samples", ()) is None
    )
    seq_s, widest = 0.0, 0
    for protocol in protocol_list if sequential else ():
        width = pool if protocol == "in-sample" else pool // 2
        grow = (n_queries / 100) * (width / 100) ** 2.2
        seq_s += n_seeds * _SEQ_S * grow * (0.55 + 0.45 * sum(b >= 1 for b in budget_list))
        widest = max(widest, width)
    grow_bytes = (widest / 100) ** 2 * max(1.0, n_queries / 100) ** 0.5
    peak = _BASE_BYTES + (_SEQ_BYTES * grow_bytes if sequential else 0.0)
    return Footprint(steps, steps * _STEP_S + seq_s, peak, seq_s)


def evaluate(
    log: SampleLog | CheckpointLog,
    *,
    actions: str | Iterable[str | Action] | None = None,
    budgets: Iterable[float] = (1, 2, 4, 8),
    seeds: int | Iterable[int] = 3,
    protocols: str | Iterable[str] = PROTOCOLS,
    methods: Iterable[str] | None = None,
    split: Sequence[float] = (0.6, 0.2, 0.2),
    probe_m: int = 2,
    cost: Literal["samples", "tokens", "usd", "chars"] = "samples",
    prices: Mapping[str, PriceLike] | None = None,
    progress: ProgressCallback | None = None,
    checkpoints: CheckpointLog | None = None,
) -> EvaluationResult:
    """Evaluate allocation methods on held-out queries over seeds, budgets and protocols.

    For each protocol and seed, the queries are split into train / calibration / test
    (:func:`computealloc.splits.split_queries`); every policy is fitted on train, calibrated
    on calibration and scored on test, at every budget. See the module docstring for the
    methods, the protocols and the metrics.

    Parameters
    ----------
    log : SampleLog or CheckpointLog
        Samples of the queries (one model, or several for routing); a checkpoint log is
        evaluated as its thinking arms (:func:`computealloc.checkpoints.thinking_log`), with
        the early-exit rules of :data:`THINKING` as methods too.
    actions : str or iterable of str or Action, optional
        Action specs; default :func:`computealloc.estimate.default_actions` per protocol
        (under held-out, ``K`` up to half the smallest pool).
    budgets : iterable of float
        Mean cost per query, in the cost unit.
    seeds : int or iterable of int
        Number of seeds (``0 .. seeds-1``) or the seeds themselves.
    protocols : str or iterable of {"in-sample", "held-out"}
        Protocols to run; held-out needs at least 2 samples per query and model.
    methods : iterable of str, optional
        A subset of :data:`METHODS` (all by default). ``uniform`` and ``oracle`` are always
        computed, as the metrics need them, but only reported when asked for. Leave the
        names of :data:`SEQUENTIAL` out to skip the sequential methods. By default the
        methods that cannot run on the log are left out (``+probe`` and :data:`SEQUENTIAL`
        need one model, :data:`ROUTER` two); asked for, they are skipped with the reason in
        ``config["skipped"]``.
    split : sequence of 3 floats
        Shares of train, calibration and test queries.
    probe_m : int
        Probe samples per query for the ``+probe`` methods (0 disables them). Probe methods
        need a single-model log with majority actions; they are skipped at budgets below the
        probes' cost.
    cost : {"samples", "tokens", "usd", "chars"}
        Cost unit: samples, expected output tokens, USD (``prices`` in USD per million tokens)
        or expected characters of the samples (a token proxy for logs without token counts).
    prices : dict of str to float, optional
        Per-model price. With ``cost="usd"``: USD per million output tokens. Otherwise a
        multiplier of each model's cost, e.g. ``{"weak": 0.0, "strong": 1.0}`` makes the
        budget the share of queries sent to the strong model (RouteLLM's axis).
    progress : callable, optional
        Called as ``progress(done, total)`` after each (protocol, seed, budget) step.
    checkpoints : CheckpointLog, optional
        The checkpoint log ``log`` was made from by
        :func:`~computealloc.checkpoints.thinking_log`: runs the early-exit rules of
        :data:`THINKING` on it, on the same splits (by default when it has one model and
        ``cost="tokens"``).

    Returns
    -------
    EvaluationResult

    Notes
    -----
    A policy is only ever scored on queries it was neither fitted nor calibrated on; budgets
    are met on the calibration queries, so the realised test cost of a streaming policy
    differs from the budget by sampling noise (reported as ``cost_error``), while batch
    methods meet it exactly.

    The sweep fits hundreds of small LightGBM models, each on one thread (the policies'
    ``n_jobs=1`` default), which is fastest at this size.

    Examples
    --------
    >>> from computealloc import datasets  # doctest: +SKIP
    >>> result = evaluate(datasets.load("mot_cascade:llama-2-13b/gsm/pot2"))  # doctest: +SKIP
    >>> result.summary().query("budget == 4 and protocol == 'held-out'")  # doctest: +SKIP
    """
    from computealloc.checkpoints import CheckpointLog, thinking_log

    if isinstance(log, CheckpointLog):
        checkpoints, log = log, thinking_log(log)
    _check_args(log, probe_m, cost, prices)
    if checkpoints is not None and not isinstance(checkpoints, CheckpointLog):
        raise TypeError(
            "The 'checkpoints' parameter of evaluate must be a CheckpointLog or None. Got "
            f"{type(checkpoints).__name__} instead."
        )
    budget_list = _budget_list(budgets)
    seed_list = _seed_list(seeds)
    protocol_list = _choice_list("protocols", protocols, PROTOCOLS)
    method_list = _choice_list("methods", METHODS if methods is None else methods, METHODS)
    if methods is None and not (probe_m and len(log.models) == 1):
        method_list = [m for m in method_list if "+probe" not in m]
    if methods is None and _sequential_reason(log, cost, ()) is not None:
        method_list = [m for m in method_list if m not in SEQUENTIAL]
    if methods is None and _router_reason(log, ()) is not None:
        method_list = [m for m in method_list if m != ROUTER]
    if methods is None and _thinking_reason(checkpoints, cost, prices) is not None:
        method_list = [m for m in method_list if m not in THINKING]
    return _evaluate(
        log,
        actions,
        budget_list,
        seed_list,
        protocol_list,
        method_list,
        split,
        int(probe_m),
        cost,
        prices,
        progress,
        checkpoints,
    )


def _evaluate(
    log: SampleLog,
    actions: str | Iterable[str | Action] | None,
    budget_list: list[float],
    seed_list: list[int],
    protocol_list: list[str],
    method_list: list[str],
    split: Sequence[float],
    probe_m: int,
    cost: str,
    prices: Mapping[str, PriceLike] | None,
    progress: ProgressCallback | None,
    checkpoints: CheckpointLog | None = None,
) -> EvaluationResult:
    """The sweep of :func:`evaluate`, arguments validated."""
    prompt_X = build_features(log).X
    thinking = [m for m in method_list if m in THINKING]
    static = [m for m in method_list if m not in SEQUENTIAL and m not in THINKING]
    sequential = [m for m in method_list if m in SEQUENTIAL]
    total = len(protocol_list) * len(seed_list) * len(budget_list)
    rows: list[dict[str, Any]] = []
    records: list[pd.DataFrame] = []
    skipped: list[str] = []
    done = 0
    for protocol in protocol_list:
        acts = _protocol_actions(log, actions, protocol)
        cache: dict[str, Any] = {}
        reason = _sequential_reason(log, cost, acts) if sequential else None
        if reason is not None:
            skipped.extend(f"{m} under {protocol}: {reason}" for m in sequential)
        router = _router_reason(log, acts) if ROUTER in static else None
        if router is not None:
            skipped.append(f"{ROUTER} under {protocol}: {router}")
        runnable = [m for m in static if m != ROUTER or router is None]
        think = _thinking_reason(checkpoints, cost, prices) if thinking else None
        if think is not None:
            skipped.extend(f"{m} under {protocol}: {think}" for m in thinking)
        elif "conf" in thinking and checkpoints is not None and not checkpoints.has_confidence:
            skipped.append(f"conf under {protocol}: the checkpoint log has no confidence")
        for seed in seed_list:
            tables = _tables(log, protocol, seed, acts, cost, prices, probe_m, prompt_X, cache)
            _check_budgets(tables.dec, budget_list, protocol)
            qsplit = split_queries(tables.dec.n_queries, fractions=split, seed=seed)
            fitted = _fit_static(tables, qsplit, ["uniform", *runnable], seed)
            if sequential and reason is None:
                rows += _sequential_rows(
                    log, tables, protocol, seed, budget_list, sequential, split, prompt_X
                )
            if thinking and think is None:
                assert checkpoints is not None
                rows += _thinking_rows(
                    log, checkpoints, tables, qsplit, protocol, seed, budget_list
                )
            for budget in budget_list:
                new, recs = _seed_rows(log, tables, qsplit, budget, runnable, fitted, seed, skipped)
                rows += [{"protocol": protocol, "seed": seed, **r} for r in new]
                records += [r.assign(protocol=protocol, seed=seed) for r in recs]
                done += 1
                if progress is not None:
                    progress(done, total)
    config = {
        "source": log.source,
        "budgets": budget_list,
        "seeds": seed_list,
        "protocols": protocol_list,
        "methods": method_list,
        "split": tuple(float(f) for f in split),
        "probe_m": probe_m,
        "sequential_orders": SEQUENTIAL_ORDERS,
        "cost": cost,
        "prices": dict(prices) if prices is not None else None,
        "actions": {p: [a.spec for a in _protocol_actions(log, actions, p)] for p in protocol_list},
        "skipped": sorted(set(skipped)),
    }
    return _package(log.source, rows, records, method_list, config)


def _package(
    source: str,
    rows: list[dict[str, Any]],
    records: list[pd.DataFrame],
    methods: list[str],
    config: dict[str, Any],
) -> EvaluationResult:
    """Add the cross-method metrics and keep the methods asked for."""
    frame = _relative_metrics(pd.DataFrame(rows))
    frame["compute_saved_at_uniform_acc"] = _compute_saved(frame)
    frame.insert(0, "source", source)
    frame["probe_m"] = np.where(frame["method"].str.contains("probe"), config["probe_m"], 0)
    first = ["source", "protocol", "seed", "budget", "method", "accuracy", "mean_cost"]
    frame = frame[first + [c for c in frame.columns if c not in first]]
    keep = frame["method"].isin(methods)
    queries = pd.concat(records, ignore_index=True)
    queries = queries[queries["method"].isin(methods)]
    lead = ["protocol", "seed", "budget", "method", "query_id"]
    queries = queries[lead + [c for c in queries.columns if c not in lead]]
    routing = _routing(frame[keep])
    return EvaluationResult(
        frame[keep].reset_index(drop=True), queries.reset_index(drop=True), routing, config
    )
