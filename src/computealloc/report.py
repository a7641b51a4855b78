"""Tables, plots and reports of an :class:`~computealloc.evaluation.EvaluationResult`.

:func:`write_report` writes, into one folder:

- ``results.csv``: the long results (one row per source x protocol x seed x budget x method);
- ``summary.csv``: mean and standard error over seeds per protocol x budget x method;
- ``accuracy_vs_cost_<protocol>.png``: accuracy against realised mean cost for every method,
  one point per budget (the sequential stopping rules included; the published settings,
  which have no budget, as single square markers), oracle and uniform drawn bold;
- ``compute_by_difficulty_<protocol>.png``: mean compute per test query by difficulty
  (single-sample accuracy of the query) at one budget, per method;
- ``report.md`` (links the PNG files) and ``report.html`` (self-contained: the plots are
  embedded as base64 PNG).

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

from computealloc.evaluation import METHODS, ROUTER, EvaluationResult
from computealloc.table import atomic_write

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "DIFFICULTY_BINS",
    "accuracy_table",
    "markdown_table",
    "metric_table",
    "plot_accuracy_vs_cost",
    "plot_compute_by_difficulty",
    "published_table",
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

#: Metric columns of :func:`metric_table` and their headers.
_METRIC_HEADERS: dict[str, str] = {
    "accuracy": "accuracy",
    "mean_cost": "mean cost",
    "rel_gain_vs_uniform": "gain vs uniform",
    "gap_closed": "gap closed",
    "imitation_accuracy": "imitation acc.",
    "regret": "regret",
    "regret_bound": "regret bound",
    "compute_saved_at_uniform_acc": "compute saved",
}


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
        One row per method (``method`` column), one column per budget ``B=<budget>``.
    """
    part = summary[(summary["protocol"] == protocol) & summary["budget"].notna()]
    cells = [
        _fmt(a, s) + f" ({c:.2f})"
        for a, s, c in zip(part["accuracy"], part["accuracy_se"], part["mean_cost"], strict=True)
    ]
    frame = part.assign(cell=cells).pivot(index="method", columns="budget", values="cell")
    order = [m for m in METHODS if m in frame.index]
    frame = frame.loc[order].fillna("–")
    frame.columns = [f"B={b:g}" for b in frame.columns]
    return frame.reset_index()


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


def metric_table(summary: pd.DataFrame, protocol: str, budget: float) -> pd.DataFrame:
    """Every metric (mean ± se over seeds) per method at one protocol and budget."""
    part = summary[(summary["protocol"] == protocol) & (summary["budget"] == budget)]
    out = {"method": part["method"].to_list()}
    for col, header in _METRIC_HEADERS.items():
        out[header] = [_fmt(m, s) for m, s in zip(part[col], part[f"{col}_se"], strict=True)]
    return pd.DataFrame(out)


def _new_axes() -> tuple[Figure, Axes]:
    """A figure and its axes on matplotlib's Agg backend (imported lazily, no window)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5.0))
    return fig, ax


def _png(fig: Figure, ax: Axes, title: str, **legend: Any) -> bytes:
    """Title, grid and legend on ``ax``, then the figure as PNG bytes; the figure is closed."""
    from matplotlib import pyplot as plt

    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, **legend)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


_COLORS: dict[str, str] = {
    "uniform": "black",
    "random": "tab:gray",
    "length": "tab:orange",
    "imitation": "tab:green",
    "value": "tab:blue",
    "imitation+probe": "tab:purple",
    "value+probe": "tab:cyan",
    "oracle": "tab:red",
    "oracle+probe": "tab:pink",
    "oracle_in_sample": "tab:red",
    "adaptive-consistency": "tab:brown",
    "dirichlet": "peru",
    "entropy": "goldenrod",
    "majority-share": "yellowgreen",
    "esc": "navy",
    "sequential": "darkviolet",
    "router": "magenta",
}


def _style(method: str) -> dict[str, Any]:
    """Colour by policy; dash-dot batch, dotted sequential variants, bold references.

    The published stopping settings (``@`` in the name) are drawn as square markers.
    """
    name, _, setting = method.partition("@")
    base, _, mode = name.partition("/")
    style: dict[str, Any] = {"color": _COLORS.get(base, "tab:olive"), "linewidth": 1.4}
    if mode == "batch":
        style["linestyle"] = "-."
    elif mode:
        style["linestyle"] = ":"
    if setting:
        style.update(linestyle="none", marker="s", markersize=6)
    if base in ("uniform", "oracle", "oracle+probe", "oracle_in_sample"):
        style.update(linewidth=2.5, zorder=5)
        style["linestyle"] = {"uniform": "--", "oracle_in_sample": ":"}.get(base, "-")
    return style


def plot_accuracy_vs_cost(summary: pd.DataFrame, protocol: str, *, title: str = "") -> bytes:
    """PNG of accuracy against realised mean cost, one line per method over the budgets.

    Parameters
    ----------
    summary : DataFrame
        :meth:`EvaluationResult.summary` output.
    protocol : str
        The protocol to draw.
    title : str
        Figure title.

    Returns
    -------
    bytes
        The PNG file.
    """
    part = summary[summary["protocol"] == protocol]
    fig, ax = _new_axes()
    for method in [m for m in METHODS if m in set(part["method"])]:
        line = part[part["method"] == method].sort_values("mean_cost")
        se = line["accuracy_se"].fillna(0.0) if method in ("uniform", "oracle") else None
        style = {"marker": "o", "markersize": 3.5, **_style(method)}
        ax.errorbar(line["mean_cost"], line["accuracy"], yerr=se, capsize=2, label=method, **style)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("realised mean cost per test query")
    ax.set_ylabel("test accuracy (mean over seeds; bars: ± s.e.)")
    return _png(fig, ax, title or f"Accuracy vs compute ({protocol})", loc="lower right")


def plot_compute_by_difficulty(
    queries: pd.DataFrame, protocol: str, budget: float, *, title: str = ""
) -> bytes:
    """PNG of the mean compute per test query by difficulty bin, per method, at one budget.

    Parameters
    ----------
    queries : DataFrame
        :attr:`EvaluationResult.queries`.
    protocol : str
        The protocol to draw.
    budget : float
        The budget to draw.
    title : str
        Figure title.

    Returns
    -------
    bytes
        The PNG file.
    """
    part = queries[(queries["protocol"] == protocol) & (queries["budget"] == budget)]
    part = part[part["method"].isin(_DIFFICULTY_METHODS)]
    edges = np.asarray(DIFFICULTY_BINS)
    bins = np.clip(
        np.searchsorted(edges, part["difficulty"].to_numpy(), side="right") - 1, 0, edges.size - 2
    )
    mean = part.assign(bin=bins).groupby(["method", "bin"])["cost"].mean().unstack("bin")
    share = np.bincount(bins, minlength=edges.size - 1) / max(bins.size, 1)
    fig, ax = _new_axes()
    centers = (edges[:-1] + edges[1:]) / 2
    for method in [m for m in _DIFFICULTY_METHODS if m in mean.index]:
        values = mean.loc[method].reindex(range(edges.size - 1)).to_numpy()
        ax.plot(centers, values, marker="o", label=method, **_style(method))
    ax.set_xticks(
        centers,
        [
            f"{a:.1f}–{b:.1f}\n({s:.0%})"
            for a, b, s in zip(edges[:-1], edges[1:], share, strict=True)
        ],
    )
    ax.set_xlabel("difficulty: 1 − single-sample accuracy (share of test queries)")
    ax.set_ylabel("mean compute per query")
    return _png(fig, ax, title or f"Where the compute goes ({protocol}, B={budget:g})")


def _focus_budget(budgets: Sequence[float]) -> float:
    """The budget the difficulty plot shows: 4 when evaluated, else the middle one."""
    values = sorted(budgets)
    return 4.0 if 4.0 in values else values[len(values) // 2]


def _sections(result: EvaluationResult, summary: pd.DataFrame) -> list[tuple[str, object]]:
    """The report as (kind, payload) blocks shared by the Markdown and HTML writers."""
    cfg = result.config
    blocks: list[tuple[str, object]] = [
        ("h1", f"Evaluation of {cfg.get('source', 'a sample log')}"),
        ("p", _settings(cfg)),
    ]
    for protocol in cfg["protocols"]:
        blocks.append(("h2", f"Protocol: {protocol}"))
        blocks.append(("p", "Test accuracy ± s.e. over seeds (realised mean cost) per budget."))
        blocks.append(("table", accuracy_table(summary, protocol)))
        published = published_table(summary, protocol)
        if len(published):
            blocks.append(("p", "Published stopping settings (not budgeted), mean ± s.e."))
            blocks.append(("table", published))
        blocks.append(("img", f"accuracy_vs_cost_{_slug(protocol)}.png"))
        for budget in cfg["budgets"]:
            blocks.append(("h3", f"Metrics at B={budget:g} ({protocol})"))
            blocks.append(("table", metric_table(summary, protocol, budget)))
        blocks.append(("img", f"compute_by_difficulty_{_slug(protocol)}.png"))
    if len(result.routing):
        blocks.append(("h2", "Routing metrics (RouteLLM)"))
        blocks.append(("table", _routing_table(result.routing)))
    if cfg.get("skipped"):
        blocks.append(("h2", "Skipped"))
        blocks.append(("list", cfg["skipped"]))
    return blocks


def _routing_table(routing: pd.DataFrame) -> pd.DataFrame:
    grouped = routing.groupby(["protocol", "method"], sort=False)[["apgr", "cpt50"]]
    mean, se = grouped.mean(), grouped.std(ddof=1) / grouped.count().clip(lower=1) ** 0.5
    return pd.DataFrame(
        {
            "protocol": [p for p, _ in mean.index],
            "method": [m for _, m in mean.index],
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
        elif kind == "table":
            out.append(payload.to_html(index=False, border=0, classes="t"))  # type: ignore[attr-defined]
        elif kind == "img":
            data = base64.b64encode(images[str(payload)]).decode("ascii")
            out.append(
                f'<img alt="{html.escape(str(payload))}" src="data:image/png;base64,{data}">'
            )
        else:
            items = "".join(f"<li>{html.escape(str(i))}</li>" for i in payload)  # type: ignore[attr-defined]
            out.append(f"<ul>{items}</ul>")
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;}"
        "table.t{border-collapse:collapse;font-size:13px;margin:1em 0;}"
        "table.t td,table.t th{border:1px solid #ccc;padding:3px 8px;text-align:right;}"
        "img{max-width:100%;}"
    )
    title = html.escape(str(blocks[0][1]))
    return (
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{title}</title>"
        f"<style>{style}</style></head><body>\n" + "\n".join(out) + "\n</body></html>\n"
    )


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
        The files written, by name: ``results.csv``, ``summary.csv``, ``report.md``,
        ``report.html`` and the PNG plots.
    """
    if not isinstance(result, EvaluationResult):
        raise TypeError(
            "The 'result' parameter of write_report must be an EvaluationResult. Got "
            f"{type(result).__name__} instead."
        )
    out = Path(out_dir)
    summary = result.summary()
    images: dict[str, bytes] = {}
    focus = _focus_budget(result.config["budgets"])
    for protocol in result.config["protocols"]:
        images[f"accuracy_vs_cost_{_slug(protocol)}.png"] = plot_accuracy_vs_cost(
            summary, protocol, title=f"{result.config.get('source', '')} — {protocol}"
        )
        images[f"compute_by_difficulty_{_slug(protocol)}.png"] = plot_compute_by_difficulty(
            result.queries, protocol, focus
        )
    blocks = _sections(result, summary)
    texts = {
        "results.csv": result.results.to_csv(index=False),
        "summary.csv": summary.to_csv(index=False),
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
