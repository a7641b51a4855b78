"""The result of an evaluation and its cross-method metrics and summaries.

:class:`EvaluationResult` holds what :func:`computealloc.evaluation.evaluate` measured;
:func:`summarize` averages its metrics over seeds; :func:`relative_metrics`,
:func:`compute_saved` and :func:`routing_table` add the metrics that compare methods (defined in
the :mod:`computealloc.evaluation` package docstring); :func:`cost_to_reach` and
:func:`routing_metrics` are the curve readings they rest on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from computealloc.evaluation.common import GAP_EPS, METHODS, METRICS, SEQUENTIAL, THINKING, Float

__all__ = [
    "EvaluationResult",
    "compute_saved",
    "cost_to_reach",
    "relative_metrics",
    "routing_metrics",
    "routing_table",
    "summarize",
]


@dataclass(frozen=True)
class EvaluationResult:
    """Everything :func:`evaluate` measured.

    Attributes
    ----------
    results : DataFrame
        Long format, one row per source x protocol x seed x budget x method: ``source,
        protocol, seed, budget, method, accuracy, mean_cost`` and the metric columns of the
        :mod:`computealloc.evaluation` docstring, plus ``cost_error`` (``mean_cost / budget -
        1``), ``uniform_accuracy``, ``oracle_accuracy``, ``reference`` (the oracle a method is
        compared with for imitation and regret), ``probe_m`` and ``n_test``.
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


def relative_metrics(frame: pd.DataFrame) -> pd.DataFrame:
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


def compute_saved(frame: pd.DataFrame) -> pd.Series:
    """``1 - cost to reach uniform's accuracy at B / B`` for every row (package docstring)."""
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


def routing_table(frame: pd.DataFrame) -> pd.DataFrame:
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
