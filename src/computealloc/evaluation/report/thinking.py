"""The report's thinking view ("How long to think"): on a checkpoint log evaluated in
tokens, the tokens each method needs to reach full thinking's accuracy
(:func:`computealloc.evaluation.thinking.tokens_to_full`), as a table, sentences and a plot.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from computealloc.evaluation import EvaluationResult
from computealloc.evaluation.comparison import kind_of, primary_protocol
from computealloc.evaluation.report.plots import figure, series, to_png
from computealloc.evaluation.report.tables import file_slug, method_label
from computealloc.evaluation.thinking import BAR_WINS, FULL_METHOD, tokens_to_full

__all__ = [
    "plot_thinking_frontier",
    "thinking_blocks",
    "thinking_lines",
    "thinking_protocol",
    "thinking_table",
]


def thinking_protocol(result: EvaluationResult, summary: pd.DataFrame) -> str | None:
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
        One row per budgeted method (:func:`computealloc.evaluation.thinking.tokens_to_full`):
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
            "method": [method_label(m) for m in reach["method"]],
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
    protocol = thinking_protocol(result, summary)
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
            f"{method_label(str(method))} reaches it at {_tokens(tokens)} tokens/query "
            f"({share_of:.0%} of full's)."
        )
    missing = [method_label(str(m)) for m in reach.loc[reach["tokens_to_full"].isna(), "method"]]
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
    fig, axes = figure(size=(9.0, 5.0))
    ax = axes[0, 0]
    for i, method in enumerate(methods):
        dashed = {"linestyle": "--"} if kind_of(method) == "bound" else {}
        line = curves[curves["method"] == method]
        color, marker = colors[i % len(colors)], markers[i % len(markers)]
        series(ax, line, method_label(method), color, marker, **dashed)
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
    return to_png(fig)


def thinking_blocks(result: EvaluationResult, summary: pd.DataFrame) -> list[tuple[str, object]]:
    protocol = thinking_protocol(result, summary)
    if protocol is None:
        return []
    return [
        ("h2", "How long to think"),
        ("list", thinking_lines(result, summary)),
        ("img", f"thinking_frontier_{file_slug(protocol)}.png"),
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
