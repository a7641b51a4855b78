"""Report tables and the text formatting they share: accuracy, published settings and
comparisons at equal realised cost, as frames of report text; Markdown tables.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from computealloc.evaluation import METHODS
from computealloc.evaluation.comparison import OVERSPEND, kind_of

__all__ = [
    "accuracy_table",
    "file_slug",
    "fmt",
    "markdown_table",
    "method_label",
    "metric_table",
    "published_table",
]


def fmt(mean: float, se: float | None = None, digits: int = 3) -> str:
    """``mean ± se`` (``mean`` alone without a finite ``se``; "–" if NaN)."""
    if not np.isfinite(mean):
        return "–"
    text = f"{mean:.{digits}f}"
    if se is not None and np.isfinite(se):
        text += f" ± {se:.{digits}f}"
    return text


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table of a frame (index not written; missing cells "–")."""
    cells = [["–" if pd.isna(v) else str(v) for v in row] for row in frame.itertuples(index=False)]
    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join([header, rule, *body])


def accuracy_table(summary: pd.DataFrame, protocol: str) -> pd.DataFrame:
    """Methods x budgets table of ``accuracy ± se (mean cost)`` for one protocol.

    Parameters
    ----------
    summary : DataFrame
        :meth:`EvaluationResult.summary` output.
    protocol : str
        The protocol to tabulate.

    Returns
    -------
    DataFrame of str
        One row per method (``method`` column, oracles labelled as hindsight bounds), one
        column per budget ``B=<budget>``; a realised cost more than 2% over the budget is
        flagged ``⚠ +x%``.
    """
    part = summary[(summary["protocol"] == protocol) & summary["budget"].notna()]
    if protocol == "in-sample":
        part = part[part["method"] != "oracle_in_sample"]  # the same as oracle in-sample
    cells = [
        fmt(a, s) + f" ({c:.2f}{_overspend(c, b)})"
        for a, s, c, b in zip(
            part["accuracy"], part["accuracy_se"], part["mean_cost"], part["budget"], strict=True
        )
    ]
    frame = part.assign(cell=cells).pivot(index="method", columns="budget", values="cell")
    order = [m for m in METHODS if m in frame.index]
    frame = frame.loc[order].fillna("–")
    frame.columns = [f"B={b:g}" for b in frame.columns]
    frame.index = [method_label(m) for m in frame.index]
    return frame.rename_axis("method").reset_index()


def _overspend(cost: float, budget: float) -> str:
    """`` ⚠ +5%`` when ``cost`` exceeds ``budget`` by more than :data:`OVERSPEND`."""
    over = cost / budget - 1.0 if budget > 0 else np.inf
    return f" ⚠ +{over:.1%}" if over > OVERSPEND else ""


def method_label(method: str) -> str:
    """The method's name, oracles marked as hindsight bounds."""
    return f"{method} (hindsight bound)" if kind_of(method) == "bound" else method


def published_table(summary: pd.DataFrame, protocol: str) -> pd.DataFrame:
    """The fixed published stopping settings (no budget): mean samples used and accuracy.

    Parameters
    ----------
    summary : DataFrame
        :meth:`EvaluationResult.summary` output.
    protocol : str
        The protocol to tabulate.

    Returns
    -------
    DataFrame of str
        One row per method with a NaN budget (``adaptive-consistency@0.95``, ``esc@5``):
        ``method``, ``samples used`` and ``accuracy`` (mean ± s.e. over seeds); empty when
        there is none.
    """
    part = summary[(summary["protocol"] == protocol) & summary["budget"].isna()]
    return pd.DataFrame(
        {
            "method": part["method"].to_list(),
            "samples used": [
                fmt(m, s, 2) for m, s in zip(part["mean_cost"], part["mean_cost_se"], strict=True)
            ],
            "accuracy": [
                fmt(m, s) for m, s in zip(part["accuracy"], part["accuracy_se"], strict=True)
            ],
        }
    )


def metric_table(comparison: pd.DataFrame, protocol: str, budget: float) -> pd.DataFrame:
    """Each method against uniform at equal realised cost, at one protocol and budget.

    Parameters
    ----------
    comparison : DataFrame
        :func:`computealloc.evaluation.comparison.compare` output.
    protocol : str
    budget : float

    Returns
    -------
    DataFrame of str
        One row per method: accuracy ± s.e., realised cost (flagged when over the budget by
        more than 2%), the gain over uniform at that cost with its 95% interval, what uniform
        spends to reach the method's accuracy, and the share of the oracle gap closed ("–"
        with the reason where the gap does not exceed its standard error).
    """
    part = comparison[(comparison["protocol"] == protocol) & (comparison["budget"] == budget)]
    rows = []
    for r in part.to_dict("records"):
        gain = "–"
        if r["method"] != "uniform":
            gain = _gain(r["gain"], r["ci_low"], r["ci_high"], r["resolved"])
        if not r["matched"]:
            gain += " (beyond uniform's costs)"
        rows.append(
            {
                "method": method_label(r["method"]),
                "accuracy": fmt(r["accuracy"], r["accuracy_se"]),
                "realised cost": f"{r['mean_cost']:.3g}{_overspend(r['mean_cost'], budget)}"
                + _batch_note(r["method"], r["mean_cost"], budget),
                "vs uniform at equal cost (95% CI)": gain,
                "uniform's cost for this accuracy": fmt(r["uniform_cost"], None, 3),
                "gap closed": fmt(r["gap_closed"], None, 2),
            }
        )
    return pd.DataFrame(rows)


def _batch_note(method: str, cost: float, budget: float) -> str:
    """Why a ``/batch`` variant, which spends the budget exactly when it can, spent less."""
    if not method.endswith("/batch") or cost >= budget * (1 - OVERSPEND):
        return ""
    return " (below B: the actions predicted best cost less, so more buys nothing)"


def _gain(gain: float, low: float, high: float, resolved: bool) -> str:
    if not np.isfinite(gain):
        return "–"
    if not np.isfinite(low):
        return f"{gain:+.3f} (no error estimate)"
    return f"{gain:+.3f} [{low:+.3f}, {high:+.3f}]" + ("" if resolved else " n.s.")


def file_slug(text: str) -> str:
    """``text`` with every character that is not alphanumeric replaced by ``_`` (file names)."""
    return "".join(ch if ch.isalnum() else "_" for ch in text)
