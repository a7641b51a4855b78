"""The plumbing every ``computealloc`` command shares: the typer app, the console, error and
warning lines, flag types, and opening a log."""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, cast

import numpy as np
import pandas as pd
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, ProgressColumn, TaskID
from rich.table import Table

from computealloc.checks import check_budget
from computealloc.data import datasets
from computealloc.data.samples import SampleLog, SampleLogError, SampleLogWarning
from computealloc.estimation.units import CostUnit, Pricing

if TYPE_CHECKING:
    from computealloc.data.checkpoints import CheckpointLog


app = typer.Typer(
    help="Decide how much test-time compute an LLM should spend on each query under a budget.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)
console = Console(width=200) if not Console().is_terminal else Console()


@app.callback()
def _main(ctx: typer.Context) -> None:
    """Show the library's warnings about the data (SampleLogWarning) as one line each."""
    ctx.with_resource(_warnings_shown())


def plain(value: object) -> str:
    """``value`` as text that rich prints literally: the one escape for user data."""
    return escape(str(value))


# The library's parameter names -> the flags that set them, for the library's messages
# ("The 'prices' parameter of estimate ..." -> "--price ...").
_FLAGS = {
    "actions": "--actions",
    "budget": "--budget",
    "budgets": "--budgets",
    "cost": "--cost",
    "cost_col": "--cost-col",
    "group_col": "--group-col",
    "max_share": "--max-share",
    "method": "--method",
    "methods": "--methods",
    "model": "--model",
    "n": "-n",
    "prices": "--price",
    "probe_m": "--probe-m",
    "protocols": "--protocol",
    "seeds": "--seeds",
    "utility": "--utility",
}
_PARAMETER = re.compile(r"The (['\"])(\w+)\1 parameter of [\w.]+")


def _flagged(message: str) -> str:
    """``message`` with "The 'NAME' parameter of FUNC" said as the flag that sets NAME."""
    return _PARAMETER.sub(lambda m: _FLAGS[m[2]] if m[2] in _FLAGS else m[0], message)


def fail(message: object, code: int = 2) -> typer.Exit:
    """Print ``error: MESSAGE`` (escaped, parameters named by their flags); return the Exit."""
    console.print(f"[red]error:[/red] {plain(_flagged(str(message)))}", highlight=False)
    return typer.Exit(code)


def warn(message: object) -> None:
    """Print ``warning: MESSAGE`` (escaped)."""
    console.print(f"[yellow]warning:[/yellow] {plain(message)}", highlight=False)


@contextmanager
def _warnings_shown() -> Iterator[None]:
    """Print each distinct SampleLogWarning once as a ``warning:`` line, when it is issued."""
    seen: set[str] = set()
    with warnings.catch_warnings():
        warnings.simplefilter("always", SampleLogWarning)
        shown = warnings.showwarning

        def show(
            message: Warning | str,
            category: type[Warning],
            filename: str,
            lineno: int,
            file: Any = None,
            line: str | None = None,
        ) -> None:
            if not issubclass(category, SampleLogWarning):
                shown(message, category, filename, lineno, file, line)
            elif str(message) not in seen:
                seen.add(str(message))
                warn(message)

        warnings.showwarning = show
        yield


@contextmanager
def writing(path: Path, flag: str = "-o/--out") -> Iterator[None]:
    """Turn an OSError while writing ``path`` into an error naming the flag and the reason."""
    try:
        yield
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(path) else ""
        raise fail(f"{flag} {str(path)!r}: cannot write it: {exc.strerror}{where}.") from exc


def check_out(path: Path | None, flag: str = "-o/--out") -> None:
    """Fail before any work when ``path`` cannot be made: an ancestor is a file."""
    if path is None:
        return
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise fail(f"{flag} {str(path)!r}: {str(parent)!r} is a file, not a folder.")


class _LazyProgress(Progress):
    """A progress display that starts with its first task: nothing is drawn before work runs."""

    def add_task(self, *args: Any, **kwargs: Any) -> TaskID:
        if not self.live.is_started:
            self.start()
        return super().add_task(*args, **kwargs)


@contextmanager
def progress(*columns: ProgressColumn | str) -> Iterator[Progress]:
    """A progress display that is drawn once work starts and vanishes when the work fails
    (no empty bar after an error)."""
    bar = _LazyProgress(*columns, console=console)
    try:
        yield bar
    except BaseException:
        bar.live.transient = True  # cleared before the error is printed ...
        bar.live.stop()  # ... and no blank line (Progress.stop prints one to a file)
        raise
    finally:
        if bar.live.is_started:
            bar.stop()


LogArg = Annotated[
    str,
    typer.Argument(
        help="A sample log file (CSV, JSONL or Parquet) or a dataset name such as "
        "'mot_cascade:llama-2-13b/gsm/pot2' (see `computealloc datasets list`)."
    ),
]


RepeatsOpt = Annotated[
    Literal["drop", "keep"],
    typer.Option(
        help="Named sources only: 'drop' repeated generations (mot_cascade's Llama-2 runs) or "
        "'keep' the rows as published."
    ),
]
MapOpt = Annotated[
    list[str],
    typer.Option(
        "--map",
        help="OLD=NEW (repeatable): read the log's column OLD as NEW, e.g. "
        "--map is_correct=correct --map question=prompt.",
    ),
]
MinSamplesOpt = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="Drop the queries with fewer than N samples (a short query otherwise limits "
        "every query's default actions).",
    ),
]


def _column_map(items: list[str]) -> dict[str, str]:
    """The --map OLD=NEW items as a dict; a malformed one exits naming the flag."""
    mapping: dict[str, str] = {}
    for item in items:
        old, sep, new = (part.strip() for part in item.partition("="))
        if not sep or not old or not new or old in mapping or new in mapping.values():
            raise fail(
                f"--map expects distinct OLD=NEW column names, e.g. --map is_correct=correct. "
                f"Got {item!r}."
            )
        mapping[old] = new
    return mapping


def _is_source(name: str) -> bool:
    """Whether ``name`` names a public source (``SOURCE[:SELECTOR]`` or ``example``)."""
    known = {src.name for src in datasets.sources()}
    return name == "example" or name.partition(":")[0] in known


def open_log(
    log: str,
    repeats: str = "drop",
    mapping: list[str] | None = None,
    actions: str | None = None,
) -> SampleLog:
    """Read a log file, or load a named public source.

    A checkpoint log (a ``think_tokens`` column) becomes its thinking arms ``cap@T`` and
    ``full`` (:func:`computealloc.data.checkpoints.thinking_log`), an ordinary multi-arm log,
    plus every other thinking arm that ``actions`` (``--actions``) names (``stable@2/majority@1``
    adds the arm ``stable@2``; ``MODEL/stable@2/...`` on a log of several models).
    """
    loaded = open_any(log, repeats, mapping)
    if isinstance(loaded, SampleLog):
        return loaded
    from computealloc.data.checkpoints import default_arms, thinking_log

    arms = default_arms(loaded)
    arms += [a for a in _named_arms(actions, loaded.models) if a not in arms]
    try:
        return thinking_log(loaded, arms)
    except ValueError as exc:
        raise fail(exc) from exc


def _named_arms(actions: str | None, models: list[str]) -> list[str]:
    """The thinking arms named by the model parts of ``actions`` (unknown parts are skipped:
    the estimator names them in its error)."""
    from computealloc.data.checkpoints import parse_arm
    from computealloc.estimation.actions import parse_actions

    if not actions:
        return []
    try:
        named = [a.model for a in parse_actions(actions) if a.model is not None]
    except ValueError as exc:
        raise fail(f"--actions: {exc}") from exc
    arms = []
    for model in named:
        prefix, _, rest = model.partition("/")
        spec = rest if len(models) > 1 and prefix in models and rest else model
        try:
            parse_arm(spec)
        except ValueError:
            continue
        arms.append(spec)
    return list(dict.fromkeys(arms))


def open_any(
    log: str, repeats: str = "drop", mapping: list[str] | None = None
) -> SampleLog | CheckpointLog:
    """Read a sample log or a checkpoint log file, or load a named public source."""
    columns = _column_map(mapping or [])
    try:
        if Path(log).exists() or not _is_source(log):
            from computealloc.data.checkpoints import read_log

            with console.status(f"Reading {plain(log)} ..."):
                return read_log(log, columns=columns or None)
        if columns:
            raise fail(f"--map applies to log files; {log!r} is a named source.")
        with console.status(f"Loading {plain(log)} ..."):
            return datasets.load(log, repeats=cast(Literal["drop", "keep"], repeats))
    except (SampleLogError, FileNotFoundError, KeyError, ValueError) as exc:
        raise fail(exc) from exc


def drop_short(sample_log: SampleLog, min_samples: int | None) -> SampleLog:
    """--min-samples: the log without its short queries, said on the terminal."""
    if min_samples is None:
        return sample_log
    short = sample_log.short_queries(min_samples)
    if not len(short):
        return sample_log
    try:
        kept = sample_log.drop_short(min_samples)
    except ValueError as exc:
        raise fail(f"--min-samples {min_samples}: {exc}") from exc
    shown = ", ".join(f"{q} ({k})" for q, k in short.head(5).items())
    console.print(
        f"dropped {len(short)} queries with fewer than {min_samples} samples: "
        f"{plain(shown)}{', ...' if len(short) > 5 else ''}",
        highlight=False,
    )
    return kept


def fmt(value: object) -> str:
    """``value`` as a table cell: a float to 4 decimals (NaN as "–"), anything else as text."""
    if isinstance(value, float):
        # NumPy's rounding of the scaled value, as pandas prints tables (0.32875 -> 0.3288).
        return "–" if math.isnan(value) else f"{np.round(value, 4):.4f}"
    return str(value)


def print_frame(df: pd.DataFrame, title: str) -> None:
    """Print ``df`` as a rich table titled ``title``: numbers right-aligned, empty columns out."""
    df = df.dropna(axis=1, how="all")
    table = Table(title=plain(title), header_style="bold")
    for col in df.columns:
        numeric = pd.api.types.is_numeric_dtype(df[col]) and not pd.api.types.is_bool_dtype(df[col])
        table.add_column(plain(col), justify="right" if numeric else "left")
    for row in df.itertuples(index=False):
        table.add_row(*(plain(fmt(v)) for v in row))
    console.print(table)


CLIENT_HELP = "Transport upstream: aiohttp (plain HTTP, cheapest) or openai (the official client)."

CostOpt = Annotated[
    CostUnit,
    typer.Option(
        help="Cost unit: samples, tokens (output tokens), chars or usd; see --price.",
        show_default=True,
    ),
]
PriceOpt = Annotated[
    list[str],
    typer.Option(
        help="ARM=PRICE (repeatable): the price of one unit of --cost for that arm (model): "
        "per sample, per output token or per character (default 1 for every arm); with --cost "
        "usd, USD per 1M output tokens, or IN/OUT USD per 1M prompt/output tokens. "
        "E.g. --price gpt-4=1 --price mixtral=0 makes the cost the number of GPT-4 calls.",
    ),
]


def budget_flag(value: float) -> float:
    """--budget checked at the command line, so that the error names the flag."""
    try:
        return check_budget(value, "--budget")
    except ValueError as exc:
        raise typer.BadParameter(f"must be a number in (0, inf). Got {value!r}.") from exc


def parse_pricing(cost: str, price: list[str]) -> Pricing:
    """The --cost and --price flags as one Pricing; a bad value exits with the flag named."""
    try:
        return Pricing.parse(cost, price)
    except ValueError as exc:
        raise fail(exc) from exc
