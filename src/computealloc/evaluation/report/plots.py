"""Report plots: accuracy against realised cost (the headline chart and small multiples)
and the compute per query by difficulty, as PNG bytes (matplotlib's Agg backend,
imported lazily).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from computealloc.evaluation import METHODS, ROUTER
from computealloc.evaluation.comparison import PEERS, kind_of, verdict
from computealloc.evaluation.report.tables import method_label

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "DIFFICULTY_BINS",
    "figure",
    "headline_methods",
    "plot_accuracy_vs_cost",
    "plot_all_methods",
    "plot_compute_by_difficulty",
    "series",
    "to_png",
]

#: Edges of the difficulty bins (1 - single-sample accuracy of a query).
DIFFICULTY_BINS: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)

#: Methods drawn in the difficulty plot (the batch twins spend like their streaming twins).
_DIFFICULTY_METHODS = (
    "uniform",
    "random",
    "length",
    "imitation",
    "value",
    "imitation+probe",
    "value+probe",
    ROUTER,
    "oracle",
    "oracle+probe",
)


def figure(n_rows: int = 1, n_cols: int = 1, size: tuple[float, float] = (8.0, 4.6)) -> Any:
    """A figure and its axes on matplotlib's Agg backend (imported lazily, no window)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    return plt.subplots(n_rows, n_cols, figsize=size, squeeze=False)


def to_png(fig: Figure) -> bytes:
    """The figure as PNG bytes; the figure is closed."""
    from matplotlib import pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


#: Colour and marker of the headline series, in order (Okabe-Ito, colour-blind safe).
_PALETTE: tuple[tuple[str, str], ...] = (
    ("#000000", "o"),  # uniform
    ("#0072B2", "s"),
    ("#D55E00", "D"),
    ("#009E73", "^"),
    ("#CC79A7", "v"),
    ("#E69F00", "P"),
    ("#56B4E9", "X"),
    ("#999999", "*"),  # the oracle bound
)


def _styles(methods: Sequence[str]) -> dict[str, tuple[str, str]]:
    """Colour and marker per method, in order; the oracle bound always grey."""
    others = [m for m in methods if m != "oracle"][: len(_PALETTE) - 1]
    styles = dict(zip(others, _PALETTE, strict=False))
    if "oracle" in methods:
        styles["oracle"] = _PALETTE[-1]
    return {m: styles[m] for m in methods if m in styles}


def headline_methods(comparison: pd.DataFrame, protocol: str) -> list[str]:
    """The frontier the headline chart shows (at most 8 series).

    Uniform; the methods of the verdict; the learned policy and the stopping rule with the
    largest mean gain over uniform at equal cost; the published peers evaluated
    (Adaptive-Consistency, ESC, RouteLLM's threshold router); the oracle bound. Peers are
    dropped first when that makes more than 8.
    """
    part = comparison[(comparison["protocol"] == protocol) & comparison["budget"].notna()]
    mean_gain = part.groupby("method", sort=False)["gain"].mean()
    present = set(part["method"])
    winners = [v.method for v in verdict(comparison, protocol) if v.method != "uniform"]
    best = []
    for kind in ("learned", "rule"):
        mine = [m for m in mean_gain.index if kind_of(m) == kind and np.isfinite(mean_gain[m])]
        if mine:
            best.append(max(mine, key=lambda m: mean_gain[m]))
    oracle = ["oracle"] if "oracle" in present else []
    chosen = list(dict.fromkeys(["uniform", *winners, *best]))
    peers = [m for m in PEERS if m in present and m not in chosen]
    return [*chosen, *peers][: 8 - len(oracle)] + oracle


def _x_axis(ax: Axes, budgets: Sequence[float], unit: str) -> None:
    """A log2 axis (ticks as plain numbers) for sample counts that span 4x or more, else linear."""
    from matplotlib.ticker import FixedLocator, ScalarFormatter

    low, high = min(budgets), max(budgets)
    if low >= 1 and high / low >= 4:
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_locator(FixedLocator(sorted(set(budgets))))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_locator(FixedLocator([]))
    ax.set_xlabel(f"realised mean cost ({unit})")


def series(ax: Axes, line: pd.DataFrame, label: str, color: str, marker: str, **kw: Any) -> None:
    """One method's accuracy-vs-cost curve with ± s.e. bars in both directions."""
    line = line.sort_values("mean_cost")
    ax.errorbar(
        line["mean_cost"],
        line["accuracy"],
        yerr=line["accuracy_se"].fillna(0.0),
        xerr=line["mean_cost_se"].fillna(0.0) if "mean_cost_se" in line else None,
        color=color,
        marker=marker,
        markersize=6,
        capsize=3,
        linewidth=1.6,
        label=label,
        **kw,
    )


def plot_accuracy_vs_cost(
    summary: pd.DataFrame,
    protocol: str,
    *,
    methods: Sequence[str] | None = None,
    unit: str = "cost/query",
    title: str = "",
) -> bytes:
    """PNG of the headline chart: accuracy against realised mean cost, a few methods.

    Parameters
    ----------
    summary : DataFrame
        :meth:`EvaluationResult.summary` output.
    protocol : str
        The protocol to draw.
    methods : sequence of str, optional
        The series, at most 8 (:func:`headline_methods`); uniform and the oracle by default.
    unit : str
        The cost unit, for the x axis label.
    title : str
        Figure title.

    Returns
    -------
    bytes
        The PNG file.
    """
    part = summary[(summary["protocol"] == protocol) & summary["budget"].notna()]
    shown = [m for m in (methods or ("uniform", "oracle")) if m in set(part["method"])][:8]
    fig, axes = figure()
    ax = axes[0, 0]
    for method, (color, marker) in _styles(shown).items():
        dashed = {"linestyle": "--"} if kind_of(method) == "bound" else {}
        series(ax, part[part["method"] == method], method_label(method), color, marker, **dashed)
    _x_axis(ax, list(part["budget"].unique()), unit)
    ax.set_ylabel("test accuracy (bars: ± s.e. over seeds)")
    ax.grid(alpha=0.3)
    ax.set_title(title or f"Accuracy vs compute ({protocol})")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False)
    return to_png(fig)


def plot_all_methods(
    summary: pd.DataFrame, protocol: str, *, unit: str = "cost/query", title: str = ""
) -> bytes:
    """PNG of small multiples: every budgeted method against uniform, one panel each.

    Parameters
    ----------
    summary : DataFrame
        :meth:`EvaluationResult.summary` output.
    protocol : str
        The protocol to draw.
    unit : str
        The cost unit, for the x axis labels.
    title : str
        Figure title.

    Returns
    -------
    bytes
        The PNG file.
    """
    part = summary[(summary["protocol"] == protocol) & summary["budget"].notna()]
    present = set(part["method"])
    others = [m for m in METHODS if m in present and m != "uniform"]
    n_cols = min(4, max(len(others), 1))
    n_rows = max(-(-len(others) // n_cols), 1)
    fig, axes = figure(n_rows, n_cols, (3.0 * n_cols, 2.4 * n_rows + 0.6))
    uniform = part[part["method"] == "uniform"]
    budgets = list(part["budget"].unique())
    for ax, method in zip(axes.flat, others, strict=False):
        series(ax, uniform, "uniform", "#999999", "o", linestyle="--")
        series(ax, part[part["method"] == method], method, "#0072B2", "s")
        ax.set_title(method_label(method), fontsize=9)
        _x_axis(ax, budgets, unit)
        ax.xaxis.label.set_size(8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(others) :]:
        ax.set_visible(False)
    axes[0, 0].set_ylabel("test accuracy", fontsize=8)
    fig.suptitle(
        title or f"Every method (blue) against uniform (grey, dashed), {protocol}; ± s.e.",
        fontsize=10,
    )
    fig.tight_layout()
    return to_png(fig)


def plot_compute_by_difficulty(
    queries: pd.DataFrame,
    protocol: str,
    budget: float,
    *,
    methods: Sequence[str] | None = None,
    unit: str = "cost/query",
    title: str = "",
) -> bytes:
    """PNG of the mean compute per test query by difficulty bin, per method, at one budget.

    Bins without a test query are left out (their share is shown under each tick).

    Parameters
    ----------
    queries : DataFrame
        :attr:`EvaluationResult.queries`.
    protocol : str
        The protocol to draw.
    budget : float
        The budget to draw.
    methods : sequence of str, optional
        The methods, at most 8, coloured as in the headline chart (those without per-query
        records are left out); those of :data:`_DIFFICULTY_METHODS` by default.
    unit : str
        The cost unit, for the y axis label.
    title : str
        Figure title.

    Returns
    -------
    bytes
        The PNG file.
    """
    wanted = list(methods or _DIFFICULTY_METHODS)
    part = queries[(queries["protocol"] == protocol) & (queries["budget"] == budget)]
    part = part[part["method"].isin(wanted) & part["difficulty"].notna()]
    edges = np.asarray(DIFFICULTY_BINS)
    bins = np.clip(
        np.searchsorted(edges, part["difficulty"].to_numpy(), side="right") - 1, 0, edges.size - 2
    )
    mean = part.assign(bin=bins).groupby(["method", "bin"])["cost"].mean().unstack("bin")
    one = part["method"].iloc[0] if len(part) else None
    count = np.bincount(bins[(part["method"] == one).to_numpy()], minlength=edges.size - 1)
    filled = np.flatnonzero(count)
    fig, axes = figure()
    ax = axes[0, 0]
    styles = _styles([m for m in wanted if m in mean.index])
    drawn = list(styles)
    for method in drawn:
        color, marker = styles[method]
        values = mean.loc[method].reindex(filled).to_numpy()
        ax.plot(filled, values, marker=marker, color=color, label=method_label(method))
    share = count / max(int(count.sum()), 1)
    ax.set_xticks(
        filled,
        [f"{edges[b]:.1f}–{edges[b + 1]:.1f}\n({share[b]:.0%})" for b in filled],
    )
    if not drawn:
        ax.text(0.5, 0.5, "no per-query records", ha="center", transform=ax.transAxes)
    ax.set_xlabel("difficulty: 1 − single-sample accuracy (share of test queries)")
    ax.set_ylabel(f"mean compute per query ({unit})")
    ax.grid(alpha=0.3)
    ax.set_title(title or f"Where the compute goes ({protocol}, B={budget:g})")
    if drawn:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False)
    return to_png(fig)
