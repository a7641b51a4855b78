"""The report writers: the report's blocks (verdict, headline chart, thinking view,
folded details), rendered as Markdown and as self-contained HTML, and
:func:`write_report`, which writes the tables, plots and reports into one folder.
"""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from computealloc.evaluation import EvaluationResult
from computealloc.evaluation.comparison import compare, primary_protocol, unit_label, verdict_lines
from computealloc.evaluation.report.plots import (
    headline_methods,
    plot_accuracy_vs_cost,
    plot_all_methods,
    plot_compute_by_difficulty,
)
from computealloc.evaluation.report.tables import (
    accuracy_table,
    file_slug,
    fmt,
    markdown_table,
    method_label,
    metric_table,
    published_table,
)
from computealloc.evaluation.report.thinking import (
    plot_thinking_frontier,
    thinking_blocks,
    thinking_protocol,
)
from computealloc.evaluation.thinking import FULL_METHOD
from computealloc.files import atomic_write

__all__ = ["write_report"]


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
            "interval covers zero. A method `computealloc fit` cannot write (an early-exit "
            "rule, random, a peer's router) is named best, evaluated only, not deployed. "
            "The best of several methods is picked on the same test "
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
        ("img", f"accuracy_vs_cost_{file_slug(primary_protocol(result))}.png"),
        *thinking_blocks(result, summary),
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
            blocks.append(("img", f"accuracy_vs_cost_{file_slug(protocol)}.png"))
        blocks.append(("img", f"all_methods_{file_slug(protocol)}.png"))
        for budget in cfg["budgets"]:
            blocks.append(("h3", f"At B={budget:g} ({protocol}), against uniform at equal cost"))
            blocks.append(("table", metric_table(comparison, protocol, budget)))
        blocks.append(("img", f"compute_by_difficulty_{file_slug(protocol)}.png"))
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
            "method": [method_label(m) for _, m in mean.index],
            "APGR": [fmt(m, s) for m, s in zip(mean["apgr"], se["apgr"], strict=True)],
            "CPT(50%)": [fmt(m, s) for m, s in zip(mean["cpt50"], se["cpt50"], strict=True)],
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
        slug = file_slug(protocol)
        headline = headline_methods(comparison, protocol)
        images[f"accuracy_vs_cost_{slug}.png"] = plot_accuracy_vs_cost(
            summary, protocol, methods=headline, unit=unit, title=f"{source} — {protocol}"
        )
        images[f"all_methods_{slug}.png"] = plot_all_methods(summary, protocol, unit=unit)
        images[f"compute_by_difficulty_{slug}.png"] = plot_compute_by_difficulty(
            result.queries, protocol, focus, methods=headline, unit=unit
        )
    thinking = thinking_protocol(result, summary)
    if thinking is not None:
        images[f"thinking_frontier_{file_slug(thinking)}.png"] = plot_thinking_frontier(
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
