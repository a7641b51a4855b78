"""Tables, plots and reports of an :class:`~computealloc.evaluation.EvaluationResult`.

:func:`write_report` writes, into one folder:

- ``results.csv``: the long results (one row per source x protocol x seed x budget x method);
- ``summary.csv``: mean and standard error over seeds per protocol x budget x method;
- ``comparison.csv``: every method against uniform at equal realised cost, with intervals
  (:func:`computealloc.comparison.compare`);
- ``accuracy_vs_cost_<protocol>.png``: the headline chart, accuracy against realised mean cost
  for at most 8 methods (uniform, the verdict's methods, the best learned policy and stopping
  rule, the published peers, the oracle bound), each with ± s.e. bars;
- ``all_methods_<protocol>.png``: small multiples, every method against uniform;
- ``compute_by_difficulty_<protocol>.png``: mean compute per test query by difficulty
  (single-sample accuracy of the query) at one budget, for the headline methods;
- on a checkpoint log evaluated in tokens (the early-exit rules among the methods,
  :mod:`computealloc.thinking`): ``thinking_frontier_<protocol>.png``, accuracy against
  realised mean thinking tokens for every method with full thinking (``full/majority@1``)
  marked, and the section "How long to think": per method the mean tokens at which its
  curve reaches full thinking's accuracy (:func:`computealloc.thinking.tokens_to_full`)
  and whether that is within issue 16's bar (35% of full thinking's tokens);
- ``report.md`` (links the PNG files) and ``report.html`` (self-contained: the plots are
  embedded as base64 PNG). Both open with the verdict
  (:func:`computealloc.comparison.verdict_lines`) and the headline chart; the tables follow,
  folded, every comparison at equal realised cost and every overspend flagged.

Every file is written atomically (:func:`computealloc.table.atomic_write`); plots use
matplotlib's Agg backend and never open a window.
"""

from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from computealloc.comparison import (
    OVERSPEND,
    PEERS,
    compare,
    kind_of,
    primary_protocol,
    unit_label,
    verdict,
    verdict_lines,
)
from computealloc.evaluation import METHODS, ROUTER, EvaluationResult
from computealloc.table import atomic_write
from computealloc.thinking import BAR_WINS, FULL_METHOD, tokens_to_full

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "DIFFICULTY_BINS",
    "accuracy_table",
    "headline_methods",
    "markdown_table",
    "metric_table",
    "plot_accuracy_vs_cost",
    "plot_all_methods",
    "plot_compute_by_difficulty",
    "plot_thinking_frontier",
    "published_table",
    "thinking_lines",
    "thinking_table",
    "write_report",
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


def _fmt(mean: float, se: float | None = None, digits: int = 3) -> str:
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
        _fmt(a, s) + f" ({c:.2f}{_overspend(c, b)})"
        for a, s, c, b in zip(
            part["accuracy"], part["accuracy_se"], part["mean_cost"], part["budget"], strict=True
        )
    ]
    frame = part.assign(cell=cells).pivot(index="method", columns="budget", values="cell")
    order = [m for m in METHODS if m in frame.index]
    frame = frame.loc[order].fillna("–")
    frame.columns = [f"B={b:g}" for b in frame.columns]
    frame.index = [_label(m) for m in frame.index]
    return frame.rename_axis("method").reset_index()


def _overspend(cost: float, budget: float) -> str:
    """`` ⚠ +5%`` when ``cost`` exceeds ``budget`` by more than :data:`OVERSPEND`."""
    over = cost / budget - 1.0 if budget > 0 else np.inf
    return f" ⚠ +{over:.1%}" if over > OVERSPEND else ""


def _label(method: str) -> str:
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
                _fmt(m, s, 2) for m, s in zip(part["mean_cost"], part["mean_cost_se"], strict=True)
            ],
            "accuracy": [
                _fmt(m, s) for m, s in zip(part["accuracy"], part["accuracy_se"], strict=True)
            ],
        }
    )


def metric_table(comparison: pd.DataFrame, protocol: str, budget: float) -> pd.DataFrame:
    """Each method against uniform at equal realised cost, at one protocol and budget.

    Parameters
    ----------
    comparison : DataFrame
        :func:`computealloc.comparison.compare` output.
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
                "method": _label(r["method"]),
                "accuracy": _fmt(r["accuracy"], r["accuracy_se"]),
                "realised cost": f"{r['mean_cost']:.3g}{_overspend(r['mean_cost'], budget)}"
                + _batch_note(r["method"], r["mean_cost"], budget),
                "vs uniform at equal cost (95% CI)": gain,
                "uniform's cost for this accuracy": _fmt(r["uniform_cost"], None, 3),
                "gap closed": _fmt(r["gap_closed"], None, 2),
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


def _figure(n_rows: int = 1, n_cols: int = 1, size: tuple[float, float] = (8.0, 4.6)) -> Any:
    """A figure and its axes on matplotlib's Agg backend (imported lazily, no window)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    return plt.subplots(n_rows, n_cols, figsize=size, squeeze=False)


def _to_png(fig: Figure) -> bytes:
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


def _series(ax: Axes, line: pd.DataFrame, label: str, color: str, marker: str, **kw: Any) -> None:
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
    fig, axes = _figure()
    ax = axes[0, 0]
    for method, (color, marker) in _styles(shown).items():
        dashed = {"linestyle": "--"} if kind_of(method) == "bound" else {}
        _series(ax, part[part["method"] == method], _label(method), color, marker, **dashed)
    _x_axis(ax, list(part["budget"].unique()), unit)
    ax.set_ylabel("test accuracy (bars: ± s.e. over seeds)")
    ax.grid(alpha=0.3)
    ax.set_title(title or f"Accuracy vs compute ({protocol})")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False)
    return _to_png(fig)


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
    fig, axes = _figure(n_rows, n_cols, (3.0 * n_cols, 2.4 * n_rows + 0.6))
    uniform = part[part["method"] == "uniform"]
    budgets = list(part["budget"].unique())
    for ax, method in zip(axes.flat, others, strict=False):
        _series(ax, uniform, "uniform", "#999999", "o", linestyle="--")
        _series(ax, part[part["method"] == method], method, "#0072B2", "s")
        ax.set_title(_label(method), fontsize=9)
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
    return _to_png(fig)


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
    fig, axes = _figure()
    ax = axes[0, 0]
    styles = _styles([m for m in wanted if m in mean.index])
    drawn = list(styles)
    for method in drawn:
        color, marker = styles[method]
        values = mean.loc[method].reindex(filled).to_numpy()
        ax.plot(filled, values, marker=marker, color=color, label=_label(method))
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
    return _to_png(fig)


# --------------------------------------------------------------------------- thinking


def _thinking_protocol(result: EvaluationResult, summary: pd.DataFrame) -> str | None:
    """The protocol of the thinking view: the primary one, if full thinking was evaluated."""
    protocol = primary_protocol(result)
    part = summary[(summary["protocol"] == protocol) & (summary["method"] == FULL_METHOD)]
    return protocol if len(part) else None


def _tokens(x: float) -> str:
    return f"{x:,.0f}"


def thinking_table(summary: pd.DataFrame, protocol: str) -> pd.DataFrame:
    """Tokens to reach full-thinking accuracy per method, as report text.

    Parameters
    ----------
    summary : DataFrame
        :meth:`EvaluationResult.summary` of a checkpoint log evaluated in tokens.
    protocol : str
        The protocol to tabulate.

    Returns
    -------
    DataFrame of str
        One row per budgeted method (:func:`computealloc.thinking.tokens_to_full`):
        ``method``, ``tokens to reach full accuracy`` (or ``not reached within N``, N the
        largest mean tokens evaluated), ``share of full's tokens`` and ``bar (<= 35%)``
        (``met`` / ``not met``), ``beats uniform-cap at equal tokens`` (``k of n budgets``:
        its points inside ``uniform-cap``'s range of mean tokens that beat ``uniform-cap``'s
        curve there; ``–`` for ``uniform-cap`` itself).
    """
    reach = tokens_to_full(summary, protocol)
    share = reach.attrs.get("share", np.nan)
    top = reach.attrs.get("max_tokens", np.nan)
    found = reach["tokens_to_full"].notna()
    return pd.DataFrame(
        {
            "method": [_label(m) for m in reach["method"]],
            "tokens to reach full accuracy": [
                _tokens(t) if ok else f"not reached within {_tokens(top)}"
                for t, ok in zip(reach["tokens_to_full"], found, strict=True)
            ],
            "share of full's tokens": [
                f"{s:.0%}" if ok else "–"
                for s, ok in zip(reach["share_of_full"], found, strict=True)
            ],
            f"bar (<= {share:.0%})": ["met" if m else "not met" for m in reach["meets_bar"]],
            "beats uniform-cap at equal tokens": [
                f"{w} of {n} budgets" if n else "–"
                for w, n in zip(reach["wins_vs_cap"], reach["compared_vs_cap"], strict=True)
            ],
        }
    )


def thinking_lines(result: EvaluationResult, summary: pd.DataFrame | None = None) -> list[str]:
    """The thinking view as sentences (empty unless full thinking was evaluated).

    Full thinking's accuracy and tokens, each method that reaches that accuracy and at what
    share of full's tokens, and whether issue 16's bar is met, by which deployable methods
    (the oracles are hindsight bounds and do not count).
    """
    summary = result.summary() if summary is None else summary
    protocol = _thinking_protocol(result, summary)
    if protocol is None:
        return []
    reach = tokens_to_full(summary, protocol)
    full_acc, full_tokens = reach.attrs["full_accuracy"], reach.attrs["full_tokens"]
    share = reach.attrs["share"]
    lines = [
        f"full thinking ({FULL_METHOD}, {protocol}): accuracy {full_acc:.3f} at "
        f"{_tokens(full_tokens)} tokens/query; the bar: reach it with <= {share:.0%} of its "
        f"tokens ({_tokens(share * full_tokens)})."
    ]
    found = reach[reach["tokens_to_full"].notna()].sort_values("tokens_to_full")
    for method, tokens, share_of in zip(
        found["method"], found["tokens_to_full"], found["share_of_full"], strict=True
    ):
        lines.append(
            f"{_label(str(method))} reaches it at {_tokens(tokens)} tokens/query "
            f"({share_of:.0%} of full's)."
        )
    missing = [_label(str(m)) for m in reach.loc[reach["tokens_to_full"].isna(), "method"]]
    if missing:
        lines.append(
            f"not reached within {_tokens(reach.attrs['max_tokens'])} tokens/query: "
            + ", ".join(missing)
            + "."
        )
    deployable = reach[[kind_of(str(m)) != "bound" for m in reach["method"]]]
    met = deployable[deployable["meets_bar"]]
    names = ", ".join(map(str, met["method"]))
    lines.append(
        f"bar (<= {share:.0%} of full thinking's tokens): "
        + (f"met by {names}." if names else "not met by any deployable method.")
    )
    if (reach["method"] == "uniform-cap").any():
        both = ", ".join(map(str, met.loc[met["wins_vs_cap"] >= BAR_WINS, "method"]))
        lines.append(
            f"issue 16's bar (that, and beating uniform-cap at equal tokens at >= {BAR_WINS} "
            "budgets): " + (f"met by {both}." if both else "not met.")
        )
    return lines


def plot_thinking_frontier(
    summary: pd.DataFrame, protocol: str, *, unit: str = "tokens/query", title: str = ""
) -> bytes:
    """PNG: accuracy against realised mean thinking tokens, every method, full thinking marked.

    Parameters
    ----------
    summary : DataFrame
        :meth:`EvaluationResult.summary` of a checkpoint log evaluated in tokens.
    protocol : str
        The protocol to draw.
    unit : str
        The cost unit, for the x axis label.
    title : str
        Figure title.

    Returns
    -------
    bytes
        The PNG file: one curve per budgeted method (± s.e. bars; oracles dashed), full
        thinking (``full/majority@1``) as a star with its accuracy as a horizontal line, and
        the bar's token level (35% of full's) as a vertical line.
    """
    import matplotlib

    part = summary[summary["protocol"] == protocol]
    curves = part[part["budget"].notna()]
    full = part[part["method"] == FULL_METHOD]
    methods = [m for m in dict.fromkeys(curves["method"]) if m != "oracle_in_sample"]
    from matplotlib.colors import to_hex

    tab20 = matplotlib.colormaps["tab20"]
    colors = [to_hex(tab20(i)) for i in (*range(0, 20, 2), *range(1, 20, 2))]  # hues first
    markers = "osD^vPX<>hp*"
    fig, axes = _figure(size=(9.0, 5.0))
    ax = axes[0, 0]
    for i, method in enumerate(methods):
        dashed = {"linestyle": "--"} if kind_of(method) == "bound" else {}
        line = curves[curves["method"] == method]
        color, marker = colors[i % len(colors)], markers[i % len(markers)]
        _series(ax, line, _label(method), color, marker, **dashed)
    if len(full):
        acc, tokens = float(full["accuracy"].iloc[0]), float(full["mean_cost"].iloc[0])
        ax.axhline(acc, color="black", linewidth=0.8, linestyle=":")
        ax.plot([tokens], [acc], marker="*", markersize=14, color="black", linestyle="none",
                label=f"{FULL_METHOD} (full thinking)")  # fmt: skip
        share = tokens_to_full(summary, protocol).attrs["share"]
        ax.axvline(share * tokens, color="grey", linewidth=0.8, linestyle="-.",
                   label=f"{share:.0%} of full's tokens (the bar)")  # fmt: skip
    ax.set_xlabel(f"realised mean tokens ({unit}: thinking + answers)")
    ax.set_ylabel("test accuracy (bars: ± s.e. over seeds)")
    ax.grid(alpha=0.3)
    ax.set_title(title or f"Accuracy vs thinking tokens ({protocol})")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    return _to_png(fig)


def _thinking_blocks(result: EvaluationResult, summary: pd.DataFrame) -> list[tuple[str, object]]:
    protocol = _thinking_protocol(result, summary)
    if protocol is None:
        return []
    return [
        ("h2", "How long to think"),
        ("list", thinking_lines(result, summary)),
        ("img", f"thinking_frontier_{_slug(protocol)}.png"),
        (
            "p",
            f"Accuracy against realised mean tokens per query on the test queries "
            f"({protocol} protocol, means over seeds), every method. Tokens to reach full "
            f"thinking's accuracy ({FULL_METHOD}: one trace, no cap): the mean tokens at "
            "which a method's curve, sorted by tokens and linear between the budgets "
            "evaluated, first reaches that accuracy (its first point's tokens when it starts "
            "above); not reached when no evaluated budget does. The bar (issue 16) asks for "
            "at most 35% of full thinking's tokens.",
        ),
        ("table", thinking_table(summary, protocol)),
    ]


def _focus_budget(budgets: Sequence[float]) -> float:
    """The budget the difficulty plot shows: 4 when evaluated, else the middle one."""
    values = sorted(budgets)
    return 4.0 if 4.0 in values else values[len(values) // 2]


_BOUND_NOTE = {
    "in-sample": "The oracle is a hindsight bound: it picks each query's action knowing that "
    "query's outcomes, so no deployable method can beat it.",
    "held-out": "The oracle is a hindsight bound decided on one half of each query's samples "
    "and scored on the other: under held-out samples it is not an upper bound (it can fall "
    "below uniform), and oracle_in_sample is what an in-sample evaluation would claim.",
}


def _verdict_blocks(result: EvaluationResult, comparison: pd.DataFrame) -> list[tuple[str, object]]:
    protocol = primary_protocol(result)
    lines = verdict_lines(result, comparison)
    n_seeds = len(result.config.get("seeds", []))
    return [
        ("h2", f"Verdict ({protocol} protocol)"),
        ("verdict", lines),
        (
            "p",
            "Per budget, the deployable method (not an oracle, spending at most 2% over the "
            "budget) with the largest accuracy gain over uniform at equal realised cost, with "
            f"a 95% interval over {n_seeds} seeds and the test queries; not resolved where the "
            "interval covers zero. The best of several methods is picked on the same test "
            "queries, which flatters it a little. " + _BOUND_NOTE[protocol],
        ),
    ]


def _sections(
    result: EvaluationResult, summary: pd.DataFrame, comparison: pd.DataFrame
) -> list[tuple[str, object]]:
    """The report as (kind, payload) blocks shared by the Markdown and HTML writers."""
    cfg = result.config
    blocks: list[tuple[str, object]] = [
        ("h1", f"Evaluation of {cfg.get('source', 'a sample log')}"),
        *_verdict_blocks(result, comparison),
        ("img", f"accuracy_vs_cost_{_slug(primary_protocol(result))}.png"),
        *_thinking_blocks(result, summary),
        ("h2", "Details"),
        ("p", _settings(cfg)),
    ]
    for protocol in cfg["protocols"]:
        blocks.append(("fold", f"Protocol: {protocol}, all methods"))
        blocks.append(("p", _BOUND_NOTE[protocol]))
        blocks.append(
            (
                "p",
                "Test accuracy ± s.e. over seeds (realised mean cost; ⚠ more than 2% over the "
                "budget) per budget.",
            )
        )
        blocks.append(("table", accuracy_table(summary, protocol)))
        published = published_table(summary, protocol)
        published = published[published["method"] != FULL_METHOD]  # in "How long to think"
        if len(published):
            blocks.append(("p", "Published stopping settings (not budgeted), mean ± s.e."))
            blocks.append(("table", published))
        if protocol != primary_protocol(result):
            blocks.append(("img", f"accuracy_vs_cost_{_slug(protocol)}.png"))
        blocks.append(("img", f"all_methods_{_slug(protocol)}.png"))
        for budget in cfg["budgets"]:
            blocks.append(("h3", f"At B={budget:g} ({protocol}), against uniform at equal cost"))
            blocks.append(("table", metric_table(comparison, protocol, budget)))
        blocks.append(("img", f"compute_by_difficulty_{_slug(protocol)}.png"))
        blocks.append(("endfold", ""))
    if len(result.routing):
        blocks.append(("h2", "Routing metrics (RouteLLM)"))
        blocks.append(("table", _routing_table(result.routing)))
    if cfg.get("skipped"):
        blocks.append(("h2", "Skipped"))
        blocks.append(("list", cfg["skipped"]))
    return blocks


def _routing_table(routing: pd.DataFrame) -> pd.DataFrame:
    duplicate = (routing["protocol"] == "in-sample") & (routing["method"] == "oracle_in_sample")
    grouped = routing[~duplicate].groupby(["protocol", "method"], sort=False)[["apgr", "cpt50"]]
    mean, se = grouped.mean(), grouped.std(ddof=1) / grouped.count().clip(lower=1) ** 0.5
    return pd.DataFrame(
        {
            "protocol": [p for p, _ in mean.index],
            "method": [_label(m) for _, m in mean.index],
            "APGR": [_fmt(m, s) for m, s in zip(mean["apgr"], se["apgr"], strict=True)],
            "CPT(50%)": [_fmt(m, s) for m, s in zip(mean["cpt50"], se["cpt50"], strict=True)],
        }
    )


def _settings(cfg: dict[str, Any]) -> str:
    actions = cfg.get("actions", {})
    acts = "; ".join(f"{p}: {', '.join(a)}" for p, a in actions.items())
    return (
        f"Cost unit: {cfg.get('cost')}; budgets: {cfg.get('budgets')}; seeds: {cfg.get('seeds')}; "
        f"query split (train, calibration, test): {cfg.get('split')}; probe samples: "
        f"{cfg.get('probe_m')}. Actions — {acts}."
    )


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in text)


def _markdown(blocks: list[tuple[str, object]]) -> str:
    out = []
    for kind, payload in blocks:
        if kind in ("h1", "h2", "h3"):
            out.append("#" * int(kind[1]) + f" {payload}")
        elif kind == "p":
            out.append(str(payload))
        elif kind == "table":
            out.append(markdown_table(payload))  # type: ignore[arg-type]
        elif kind == "img":
            out.append(f"![{payload}]({payload})")
        elif kind == "fold":
            out.append(f"<details><summary>{html.escape(str(payload))}</summary>")
        elif kind == "endfold":
            out.append("</details>")
        elif kind == "verdict":
            out.append("\n".join(f"- **{_md_head(str(item))}" for item in payload))  # type: ignore[attr-defined]
        else:
            out.append("\n".join(f"- {item}" for item in payload))  # type: ignore[attr-defined]
    return "\n\n".join(out) + "\n"


def _html(blocks: list[tuple[str, object]], images: dict[str, bytes]) -> str:
    out = []
    for kind, payload in blocks:
        if kind in ("h1", "h2", "h3"):
            out.append(f"<{kind}>{html.escape(str(payload))}</{kind}>")
        elif kind == "p":
            out.append(f"<p>{html.escape(str(payload))}</p>")
        elif kind == "fold":
            out.append(f"<details><summary>{html.escape(str(payload))}</summary>")
        elif kind == "endfold":
            out.append("</details>")
        elif kind == "table":
            out.append(payload.to_html(index=False, border=0, classes="t"))  # type: ignore[attr-defined]
        elif kind == "img":
            data = base64.b64encode(images[str(payload)]).decode("ascii")
            out.append(
                f'<img alt="{html.escape(str(payload))}" src="data:image/png;base64,{data}">'
            )
        elif kind == "verdict":
            items = "".join(f"<li>{_bold_head(str(i))}</li>" for i in payload)  # type: ignore[attr-defined]
            out.append(f'<ul class="verdict">{items}</ul>')
        else:
            items = "".join(f"<li>{html.escape(str(i))}</li>" for i in payload)  # type: ignore[attr-defined]
            out.append(f"<ul>{items}</ul>")
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;}"
        "table.t{border-collapse:collapse;font-size:13px;margin:1em 0;}"
        "table.t td,table.t th{border:1px solid #ccc;padding:3px 8px;text-align:right;}"
        "img{max-width:100%;}"
        "ul.verdict{background:#f4f7fb;border-left:4px solid #2b6cb0;"
        "padding:0.6em 1em 0.6em 2em;font-size:15px;line-height:1.5;}"
        "details{margin:1em 0;}summary{cursor:pointer;font-weight:bold;font-size:17px;}"
    )
    title = html.escape(str(blocks[0][1]))
    return (
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{title}</title>"
        f"<style>{style}</style></head><body>\n" + "\n".join(out) + "\n</body></html>\n"
    )


def _md_head(line: str) -> str:
    """A verdict line in Markdown after its opening ``**``: the decision closed in bold."""
    head, dash, rest = line.partition(" — ")
    return f"{head}** — {rest}" if dash else f"{line}**"


def _bold_head(line: str) -> str:
    """A verdict line in HTML, the decision (up to the dash) in bold."""
    head, dash, rest = line.partition(" — ")
    if not dash:
        return html.escape(line)
    return f"<b>{html.escape(head)}</b> — {html.escape(rest)}"


def write_report(result: EvaluationResult, out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write the results, plots and reports of an evaluation into ``out_dir``.

    Parameters
    ----------
    result : EvaluationResult
        What :func:`computealloc.evaluation.evaluate` returned.
    out_dir : path-like
        Folder to write into (created when missing); existing files of the same names are
        replaced atomically.

    Returns
    -------
    dict of str to Path
        The files written, by name: ``results.csv``, ``summary.csv``, ``comparison.csv``,
        ``report.md``, ``report.html`` and the PNG plots.
    """
    if not isinstance(result, EvaluationResult):
        raise TypeError(
            "The 'result' parameter of write_report must be an EvaluationResult. Got "
            f"{type(result).__name__} instead."
        )
    out = Path(out_dir)
    summary = result.summary()
    comparison = compare(result)
    unit = unit_label(result.config)
    images: dict[str, bytes] = {}
    focus = _focus_budget(result.config["budgets"])
    source = result.config.get("source", "")
    for protocol in result.config["protocols"]:
        slug = _slug(protocol)
        headline = headline_methods(comparison, protocol)
        images[f"accuracy_vs_cost_{slug}.png"] = plot_accuracy_vs_cost(
            summary, protocol, methods=headline, unit=unit, title=f"{source} — {protocol}"
        )
        images[f"all_methods_{slug}.png"] = plot_all_methods(summary, protocol, unit=unit)
        images[f"compute_by_difficulty_{slug}.png"] = plot_compute_by_difficulty(
            result.queries, protocol, focus, methods=headline, unit=unit
        )
    thinking = _thinking_protocol(result, summary)
    if thinking is not None:
        images[f"thinking_frontier_{_slug(thinking)}.png"] = plot_thinking_frontier(
            summary, thinking, unit=unit, title=f"{source} — {thinking}"
        )
    blocks = _sections(result, summary, comparison)
    texts = {
        "results.csv": result.results.to_csv(index=False),
        "summary.csv": summary.to_csv(index=False),
        "comparison.csv": comparison.to_csv(index=False),
        "report.md": _markdown(blocks),
        "report.html": _html(blocks, images),
    }
    written: dict[str, Path] = {}
    for name, text in texts.items():
        atomic_write(out / name, lambda fh, t=text: fh.write(t))
        written[name] = out / name
    for name, data in images.items():
        atomic_write(out / name, lambda fh, d=data: fh.write(d), mode="wb")
        written[name] = out / name
    return written
