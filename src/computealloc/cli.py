"""The ``computealloc`` command: a thin typer layer over the Python API."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

from computealloc import datasets
from computealloc.samples import SampleLog, SampleLogError, read_samples

app = typer.Typer(
    help="Decide how much test-time compute an LLM should spend on each query under a budget.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)
datasets_app = typer.Typer(help="Named public sources of sample logs.", no_args_is_help=True)
app.add_typer(datasets_app, name="datasets")
console = Console(width=200) if not Console().is_terminal else Console()

LogArg = Annotated[
    str,
    typer.Argument(
        help="A sample log file (CSV, JSONL or Parquet) or a dataset name such as "
        "'mot_cascade:llama-2-13b/gsm/pot2' (see `computealloc datasets list`)."
    ),
]


def _open_log(log: str) -> SampleLog:
    """Read a log file, or load a named public source."""
    try:
        if Path(log).exists():
            with console.status(f"Reading {log} ..."):
                return read_samples(log)
        with console.status(f"Loading {log} ..."):
            return datasets.load(log)
    except (SampleLogError, FileNotFoundError, KeyError, ValueError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc


def _fmt(value: object) -> str:
    if isinstance(value, float):
        # NumPy's rounding of the scaled value, as pandas prints tables (0.32875 -> 0.3288).
        return "–" if math.isnan(value) else f"{np.round(value, 4):.4f}"
    return str(value)


def _print_frame(df: pd.DataFrame, title: str) -> None:
    df = df.dropna(axis=1, how="all")
    table = Table(title=title, header_style="bold")
    for col in df.columns:
        numeric = pd.api.types.is_numeric_dtype(df[col]) and not pd.api.types.is_bool_dtype(df[col])
        table.add_column(str(col), justify="right" if numeric else "left")
    for row in df.itertuples(index=False):
        table.add_row(*(_fmt(v) for v in row))
    console.print(table)


@datasets_app.command("list")
def datasets_list() -> None:
    """List the public sources, their license and whether they are found locally.

    Example: computealloc datasets list
    """
    rows = []
    for src in datasets.sources():
        rows.append(
            {
                "name": src.name,
                "license": src.license,
                "runs": len(datasets.runs(src.name)) if datasets.is_available(src.name) else "–",
                "local": "yes" if datasets.is_available(src.name) else "missing",
                "what": src.title,
            }
        )
    _print_frame(pd.DataFrame(rows), f"Sources under {datasets.data_root()}")


@app.command()
def inspect(log: LogArg) -> None:
    """Per model: queries, samples per query, single-sample and majority accuracy, agreement.

    Example: computealloc inspect mot_cascade:llama-2-13b/gsm/pot2
    """
    from computealloc.summary import summarize

    sample_log = _open_log(log)
    _print_frame(summarize(sample_log), f"{sample_log.source}")


def _parse_prices(prices: list[str]) -> dict[str, float] | None:
    out: dict[str, float] = {}
    for item in prices:
        model, sep, value = item.rpartition("=")
        try:
            out[model] = float(value)
        except ValueError:
            model = ""
        if not sep or not model:
            console.print(f"[red]error:[/red] --price must be MODEL=USD_PER_1M_TOKENS. Got {item!r}.")
            raise typer.Exit(2)
    return out or None


@app.command("estimate")
def estimate_cmd(
    log: LogArg,
    out: Annotated[Path, typer.Option("-o", "--out", help="Output OutcomeTable (.parquet).")],
    actions: Annotated[
        str | None,
        typer.Option(help="Comma-separated action specs; default majority@1,2,4,... up to n."),
    ] = None,
    cost: Annotated[str, typer.Option(help="Cost unit: samples, tokens or usd.")] = "samples",
    price: Annotated[
        list[str],
        typer.Option(help="MODEL=USD per 1M output tokens (repeatable; with --cost usd)."),
    ] = [],  # noqa: B006
    on_short: Annotated[
        str, typer.Option(help="Queries with fewer than K samples: raise or drop.")
    ] = "raise",
) -> None:
    """Estimate every action's exact expected accuracy and cost on every query.

    Example: computealloc estimate mot_cascade:llama-2-13b/gsm/pot2
    --actions majority@1,majority@4,majority@16 -o table.parquet
    """
    from computealloc.actions import parse_actions
    from computealloc.estimate import estimate

    sample_log = _open_log(log)
    try:
        acts = parse_actions(actions) if actions else None
        with console.status("Estimating ..."):
            table = estimate(
                sample_log, acts, cost=cost, prices=_parse_prices(price), on_short=on_short
            )
    except ValueError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    table.save(out)
    means = pd.DataFrame(
        {"action": table.actions, "mean_accuracy": table.P.mean(0), "mean_cost": table.C.mean(0)}
    )
    _print_frame(means, f"{table.n_queries} queries -> {out}")
