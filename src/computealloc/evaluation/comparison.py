"""Methods against uniform at equal realised cost, with intervals, and the verdict per budget.

An evaluation (:func:`computealloc.evaluation.evaluate`) reports each method's accuracy at the
realised mean cost it spent, which differs from the budget (a streaming policy calibrated on
other queries misses it by sampling noise; a stopping rule by more). Comparing accuracies at the
nominal budget then credits a method for overspending. :func:`compare` compares every method
with uniform *at the method's realised cost*: uniform's accuracy-vs-cost curve of the same seed
is interpolated there (uniform mixes two neighbouring actions, so its curve is piecewise linear
between the budgets evaluated, and exact where every action's cost is among them), per query
where the evaluation kept per-query records.

The interval of a gain is the wider of two standard errors: over seeds (the spread of the seeds'
gains) and over queries (paired per-query differences, pooled over seeds); 95% is +- 1.96 of it.
:func:`verdict` picks, per budget, the deployable method (not an oracle, spending at most 2% over
the budget) with the largest gain, and says whether its interval excludes zero; its sentence
says "deploy" only for a method ``computealloc fit`` writes
(:func:`~computealloc.methods.fit_writes`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from computealloc.evaluation import GAP_EPS, METHODS, EvaluationResult, cost_to_reach
from computealloc.methods import fit_writes, kind_of, method_names

__all__ = [
    "BOUNDS",
    "OVERSPEND",
    "Verdict",
    "compare",
    "kind_of",
    "primary_protocol",
    "unit_label",
    "verdict",
    "verdict_lines",
]

Float = NDArray[np.float64]

#: Hindsight bounds: they see the outcomes they are scored on (or half of them); not deployable.
BOUNDS: tuple[str, ...] = tuple(m for m in METHODS if kind_of(m) == "bound")

#: A realised mean cost this far above the budget (relative) is flagged as overspending.
OVERSPEND = 0.02

_Z95 = 1.959963984540054

#: Published peers (their published rule calibrated to the budget).
#: Stopping-rule peers first, then the policy peers (the order reports list them in).
PEERS: tuple[str, ...] = tuple(
    m
    for family in ("stopping", "policy")
    for m in method_names(family=family, evaluated=True)
    if kind_of(m) == "peer"
)


def primary_protocol(result: EvaluationResult) -> str:
    """The protocol the verdict is about: held-out samples when evaluated (the honest one)."""
    protocols = list(result.config["protocols"])
    return "held-out" if "held-out" in protocols else protocols[0]


# --------------------------------------------------------------------------- paired gains


@dataclass(frozen=True)
class _Uniform:
    """Uniform's curve of one (protocol, seed): costs sorted, accuracies, per-query records."""

    cost: Float
    accuracy: Float
    budgets: Float
    queries: dict[float, pd.Series]

    def bracket(self, c: float) -> tuple[int, int, float]:
        """Indices of the two points around cost ``c`` (clamped) and the weight of the upper."""
        if self.cost.size == 1:
            return 0, 0, 0.0
        hi = int(np.clip(np.searchsorted(self.cost, c), 1, self.cost.size - 1))
        lo = hi - 1
        span = self.cost[hi] - self.cost[lo]  # 0 where two budgets buy the same (largest) action
        w = float(np.clip((c - self.cost[lo]) / span, 0.0, 1.0)) if span > 0 else 1.0
        return lo, hi, w

    def at(self, c: float) -> float:
        lo, hi, w = self.bracket(c)
        return float((1 - w) * self.accuracy[lo] + w * self.accuracy[hi])

    def per_query(self, c: float) -> pd.Series | None:
        lo, hi, w = self.bracket(c)
        a, b = self.queries.get(self.budgets[lo]), self.queries.get(self.budgets[hi])
        if a is None or b is None:
            return None
        return (1 - w) * a + w * b.reindex(a.index)


def _uniform_curves(result: EvaluationResult) -> dict[tuple[str, int], _Uniform]:
    res = result.results
    uni = res[res["method"] == "uniform"].sort_values("mean_cost")
    q = result.queries
    quni = q[q["method"] == "uniform"]
    curves = {}
    for key, part in uni.groupby(["protocol", "seed"], sort=False):
        protocol, seed = cast(tuple[str, int], key)
        recs = quni[(quni["protocol"] == protocol) & (quni["seed"] == seed)]
        per_budget = {
            float(cast(float, b)): g.set_index("query_id")["accuracy"]
            for b, g in recs.groupby("budget")
        }
        curves[(str(protocol), int(seed))] = _Uniform(
            part["mean_cost"].to_numpy(np.float64),
            part["accuracy"].to_numpy(np.float64),
            part["budget"].to_numpy(np.float64),
            per_budget,
        )
    return curves


def _combine(diffs: list[float], query_vars: list[float]) -> tuple[float, float]:
    """Mean over seeds of the gains and the wider of the seed and the query standard error."""
    d = np.asarray(diffs)
    mean = float(d.mean())
    se_seeds = float(d.std(ddof=1) / np.sqrt(d.size)) if d.size > 1 else np.nan
    v = np.asarray(query_vars)
    se_queries = float(np.sqrt(v.sum()) / v.size) if v.size == d.size else np.nan
    known = [x for x in (se_seeds, se_queries) if np.isfinite(x)]
    return mean, max(known) if known else np.nan


def _paired(result: EvaluationResult, curves: dict[tuple[str, int], _Uniform]) -> pd.DataFrame:
    """Per (protocol, budget, method): gain over uniform at equal realised cost, its s.e."""
    res = result.results
    q = result.queries.set_index(["protocol", "seed", "budget", "method"]).sort_index()
    rows = []
    for group, part in res.groupby(["protocol", "budget", "method"], sort=False, dropna=False):
        protocol, budget, method = cast(tuple[str, float, str], group)
        diffs, qvars, matched = [], [], True
        for seed, cost, acc in part[["seed", "mean_cost", "accuracy"]].itertuples(index=False):
            uni = curves.get((str(protocol), int(seed)))
            if uni is None:  # uniform not among the methods kept: nothing to compare with
                diffs.append(np.nan)
                continue
            tol = OVERSPEND * cost
            matched &= bool(cost <= uni.cost[-1] + tol)  # below: uniform gets more
            diffs.append(acc - uni.at(cost))
            key = (protocol, seed, budget, method)
            base = uni.per_query(cost)
            if base is not None and np.isfinite(budget) and key in q.index:
                mine = cast(pd.DataFrame, q.loc[cast(Any, key)]).set_index("query_id")["accuracy"]
                d = mine - base.reindex(mine.index)
                qvars.append(float(d.var(ddof=1) / d.size) if d.size > 1 else np.nan)
        gain, se = _combine(diffs, qvars)
        rows.append(
            {
                "protocol": protocol,
                "budget": budget,
                "method": method,
                "gain": gain,
                "gain_se": se,
                "matched": matched,
            }
        )
    return pd.DataFrame(rows)


def _gaps(result: EvaluationResult) -> pd.DataFrame:
    """Per (protocol, budget): oracle minus uniform (paired per query), and its s.e."""
    res = result.results
    q = result.queries
    rows = []
    for (protocol, budget), part in res[res["budget"].notna()].groupby(["protocol", "budget"]):
        diffs, qvars = [], []
        for seed, seed_part in part.groupby("seed"):
            acc = seed_part.set_index("method")["accuracy"]
            if "oracle" not in acc.index or "uniform" not in acc.index:
                continue
            diffs.append(float(acc["oracle"] - acc["uniform"]))
            recs = q[(q["protocol"] == protocol) & (q["seed"] == seed) & (q["budget"] == budget)]
            by = recs.pivot_table(index="query_id", columns="method", values="accuracy")
            if {"oracle", "uniform"} <= set(by.columns) and len(by) > 1:
                d = by["oracle"] - by["uniform"]
                qvars.append(float(d.var(ddof=1) / d.size))
        if diffs:
            gap, se = _combine(diffs, qvars)
            rows.append({"protocol": protocol, "budget": budget, "gap": gap, "gap_se": se})
    return pd.DataFrame(rows, columns=["protocol", "budget", "gap", "gap_se"])


def _compute_at_equal_accuracy(frame: pd.DataFrame, summary: pd.DataFrame) -> tuple[Float, Float]:
    """Uniform's cost to reach each row's accuracy (its mean curve), and the share saved."""
    need = np.full(len(frame), np.nan)
    for protocol in frame["protocol"].unique():
        uni = summary[(summary["protocol"] == protocol) & (summary["method"] == "uniform")]
        uni = uni.sort_values("mean_cost")
        rows = (frame["protocol"] == protocol).to_numpy()
        if uni.empty:
            continue
        need[rows] = cost_to_reach(
            uni["mean_cost"].to_numpy(np.float64),
            uni["accuracy"].to_numpy(np.float64),
            frame.loc[rows, "accuracy"].to_numpy(np.float64),
        )
    with np.errstate(invalid="ignore", divide="ignore"):
        saved = 1.0 - frame["mean_cost"].to_numpy(np.float64) / need
    return need, saved


def compare(result: EvaluationResult) -> pd.DataFrame:
    """Every method against uniform at equal realised cost, per protocol and budget.

    Parameters
    ----------
    result : EvaluationResult

    Returns
    -------
    DataFrame
        One row per protocol x budget x method (methods in report order; the duplicate
        ``oracle_in_sample`` of the in-sample protocol left out) with ``kind``
        (:func:`kind_of`), ``accuracy``, ``accuracy_se``, ``mean_cost``, ``n_seeds``;
        ``overspend`` (mean cost above the budget by more than :data:`OVERSPEND`);
        ``uniform_at_cost`` (uniform's accuracy at the method's realised cost), ``gain``
        (accuracy minus it, mean over seeds), ``gain_se``, ``ci_low``, ``ci_high`` (95%),
        ``resolved`` (the interval excludes zero), ``matched`` (the realised cost is not above
        uniform's largest evaluated cost by more than :data:`OVERSPEND`; below uniform's
        smallest, uniform is read at its smallest, which favours uniform); ``uniform_cost``
        (what uniform spends to reach the method's accuracy, read off its mean curve; NaN
        above it) and ``compute_saved`` (``1 - mean_cost / uniform_cost``); ``gap``,
        ``gap_se`` (oracle minus uniform at the budget) and ``gap_closed`` (``gain / gap``,
        NaN with a reason in ``gap_note`` unless the gap exceeds its standard error).
    """
    summary = result.summary()
    summary = summary[
        ~((summary["protocol"] == "in-sample") & (summary["method"] == "oracle_in_sample"))
    ]
    cols = ["protocol", "budget", "method", "n_seeds", "accuracy", "accuracy_se", "mean_cost"]
    frame = summary[cols].reset_index(drop=True)
    frame.insert(3, "kind", [kind_of(m) for m in frame["method"]])
    frame["overspend"] = frame["mean_cost"] > frame["budget"] * (1 + OVERSPEND)
    paired = _paired(result, _uniform_curves(result))
    frame = frame.merge(paired, on=["protocol", "budget", "method"], how="left")
    at_cost = frame["accuracy"] - frame["gain"]
    frame.insert(int(np.flatnonzero(frame.columns == "gain")[0]), "uniform_at_cost", at_cost)
    frame["ci_low"] = frame["gain"] - _Z95 * frame["gain_se"]
    frame["ci_high"] = frame["gain"] + _Z95 * frame["gain_se"]
    frame["resolved"] = (frame["ci_low"] > 0) | (frame["ci_high"] < 0)
    frame["uniform_cost"], frame["compute_saved"] = _compute_at_equal_accuracy(frame, summary)
    frame.loc[frame["method"] == "uniform", ["gain", "compute_saved"]] = 0.0
    frame = frame.merge(_gaps(result), on=["protocol", "budget"], how="left")
    frame["gap_closed"], frame["gap_note"] = _gap_closed(frame)
    order = {m: i for i, m in enumerate(METHODS)}
    frame = frame.sort_values(
        ["protocol", "budget", "method"],
        key=lambda s: s.map(order) if s.name == "method" else s,
        kind="stable",
    )
    return frame.reset_index(drop=True)


def _gap_closed(frame: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """``gain / gap`` where the gap exceeds its s.e. (and ``GAP_EPS``); else NaN and why."""
    gap, se = frame["gap"], frame["gap_se"]
    ok = (gap > GAP_EPS) & ((gap > se) | se.isna())
    closed = (frame["gain"] / gap).where(ok)
    note = [
        ""
        if good or pd.isna(g)
        else f"oracle - uniform = {g:+.3f} ± {s:.3f}: no gap above its s.e."
        for good, g, s in zip(ok, gap, se, strict=True)
    ]
    closed[frame["kind"] == "bound"] = np.nan
    return closed, pd.Series(note, index=frame.index)


# --------------------------------------------------------------------------- verdict


@dataclass(frozen=True)
class Verdict:
    """The verdict at one budget: the best deployable method against uniform."""

    protocol: str
    budget: float
    method: str
    accuracy: float
    mean_cost: float
    uniform_at_cost: float
    gain: float
    ci_low: float
    ci_high: float
    resolved: bool
    uniform_cost: float
    compute_saved: float
    n_candidates: int


def verdict(comparison: pd.DataFrame, protocol: str) -> list[Verdict]:
    """Per budget of ``protocol``: the deployable method with the largest gain at equal cost.

    Candidates are the budgeted methods that are not bounds, spend at most
    :data:`OVERSPEND` over the budget and are compared inside uniform's evaluated costs; when
    none gains, the verdict is uniform itself (gain 0).
    """
    part = comparison[(comparison["protocol"] == protocol) & comparison["budget"].notna()]
    out = []
    for budget, rows in part.groupby("budget", sort=True):
        if not (rows["method"] == "uniform").any():
            continue
        uni = rows[rows["method"] == "uniform"].iloc[0]
        pool = rows[
            ~rows["kind"].isin(["bound", "published"])
            & (rows["method"] != "uniform")
            & ~rows["overspend"]
            & rows["matched"]
            & rows["gain"].notna()
        ]
        best = pool.iloc[int(np.argmax(pool["gain"].to_numpy()))] if len(pool) else uni
        if best["gain"] <= 0:
            best = uni
        out.append(
            Verdict(
                protocol=protocol,
                budget=float(cast(float, budget)),
                method=str(best["method"]),
                accuracy=float(best["accuracy"]),
                mean_cost=float(best["mean_cost"]),
                uniform_at_cost=float(best["uniform_at_cost"]),
                gain=float(best["gain"]),
                ci_low=float(best["ci_low"]),
                ci_high=float(best["ci_high"]),
                resolved=bool(best["resolved"]),
                uniform_cost=float(best["uniform_cost"]),
                compute_saved=float(best["compute_saved"]),
                n_candidates=len(pool),
            )
        )
    return out


def unit_label(config: dict[str, object]) -> str:
    """The cost unit of an evaluation, per query (``samples/query``, ``tokens/query``, ...)."""
    cost = str(config.get("cost", "samples"))
    if config.get("prices") and cost != "usd":
        return f"price-weighted {cost}/query"
    return f"{cost}/query"


def _num(x: float) -> str:
    """A cost for a sentence: 3 significant digits, "1.0" rather than "1"."""
    text = f"{x:.3g}"
    return text if any(c in text for c in ".en") else f"{x:.1f}"


def _line(v: Verdict, unit: str) -> str:
    """One budget's verdict as a sentence: the decision, a dash, the evidence."""
    head = f"B = {v.budget:g}: "
    if v.method == "uniform":
        return head + (
            f"uniform — none of {v.n_candidates} methods beats it at equal realised cost "
            f"({v.accuracy:.3f} at {_num(v.mean_cost)} {unit})."
        )
    if np.isfinite(v.ci_low):
        ci = f"95% CI {v.ci_low:+.3f} to {v.ci_high:+.3f}"
    else:
        ci = "no error estimate with one seed"
    same = f"{v.accuracy:.3f} vs {v.uniform_at_cost:.3f} at {_num(v.mean_cost)} {unit}; {ci}"
    if not v.resolved:
        return head + (
            f"not resolved — best {v.method}, {v.gain:+.3f} over uniform at equal cost "
            f"({same}{', covers 0' if np.isfinite(v.ci_low) else ''})."
        )
    if np.isfinite(v.uniform_cost) and v.mean_cost > 0:
        more = v.uniform_cost / v.mean_cost - 1.0
        match = f"uniform needs {_num(v.uniform_cost)} ({more:+.0%} compute) to match it"
    else:
        match = "uniform does not match it within the budgets evaluated"
    if not fit_writes(v.method):  # e.g. an early-exit rule or random: evaluated, not written
        return head + (
            f"best {v.method} (evaluated only: `computealloc fit` cannot write it) — "
            f"{v.gain:+.3f} over uniform at equal cost ({same}); {match}."
        )
    return head + f"deploy {v.method} — {v.gain:+.3f} over uniform at equal cost ({same}); {match}."


def verdict_lines(result: EvaluationResult, comparison: pd.DataFrame | None = None) -> list[str]:
    """The verdict as short sentences, one per budget of the primary protocol.

    Examples
    --------
    ``B = 2: deploy sequential/prior — +0.023 over uniform at equal cost (0.346 vs 0.323 at
    1.89 samples/query; 95% CI +0.008 to +0.038); uniform needs 3.15 (+67% compute) to match
    it.``
    """
    comp = compare(result) if comparison is None else comparison
    unit = unit_label(result.config)
    lines = [_line(v, unit) for v in verdict(comp, primary_protocol(result))]
    return lines or ["No verdict: uniform was not among the methods evaluated (add it)."]
