"""The ``computealloc`` command: a thin typer layer over the Python API."""

from __future__ import annotations

import itertools
import json
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
from rich.progress import Progress, ProgressColumn, Task, TaskID
from rich.table import Table
from rich.text import Text

from computealloc import datasets
from computealloc.checks import check_budget
from computealloc.methods import fit_help, fittable
from computealloc.samples import SampleLog, SampleLogError, SampleLogWarning
from computealloc.table import OutcomeTable, atomic_write
from computealloc.units import CostUnit, Pricing

if TYPE_CHECKING:
    FitMethod = str
else:  # the choices typer lists and completes, from the one registry of methods
    FitMethod = Literal[(*fittable("fit_policy"), *fittable("fit_stopping"))]

if TYPE_CHECKING:
    from computealloc.checkpoints import CheckpointLog
    from computealloc.collect import CheckpointProbes

app = typer.Typer(
    help="Decide how much test-time compute an LLM should spend on each query under a budget.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)
datasets_app = typer.Typer(help="Named public sources of sample logs.", no_args_is_help=True)
app.add_typer(datasets_app, name="datasets")
console = Console(width=200) if not Console().is_terminal else Console()


@app.callback()
def _main(ctx: typer.Context) -> None:
    """Show the library's warnings about the data (SampleLogWarning) as one line each."""
    ctx.with_resource(_warnings_shown())


def _plain(value: object) -> str:
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


def _fail(message: object, code: int = 2) -> typer.Exit:
    """Print ``error: MESSAGE`` (escaped, parameters named by their flags); return the Exit."""
    console.print(f"[red]error:[/red] {_plain(_flagged(str(message)))}", highlight=False)
    return typer.Exit(code)


def _warn(message: object) -> None:
    """Print ``warning: MESSAGE`` (escaped)."""
    console.print(f"[yellow]warning:[/yellow] {_plain(message)}", highlight=False)


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
                _warn(message)

        warnings.showwarning = show
        yield


@contextmanager
def _writing(path: Path, flag: str = "-o/--out") -> Iterator[None]:
    """Turn an OSError while writing ``path`` into an error naming the flag and the reason."""
    try:
        yield
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(path) else ""
        raise _fail(f"{flag} {str(path)!r}: cannot write it: {exc.strerror}{where}.") from exc


def _check_out(path: Path | None, flag: str = "-o/--out") -> None:
    """Fail before any work when ``path`` cannot be made: an ancestor is a file."""
    if path is None:
        return
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise _fail(f"{flag} {str(path)!r}: {str(parent)!r} is a file, not a folder.")


class _LazyProgress(Progress):
    """A progress display that starts with its first task: nothing is drawn before work runs."""

    def add_task(self, *args: Any, **kwargs: Any) -> TaskID:
        if not self.live.is_started:
            self.start()
        return super().add_task(*args, **kwargs)


@contextmanager
def _progress(*columns: ProgressColumn | str) -> Iterator[Progress]:
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
            raise _fail(
                f"--map expects distinct OLD=NEW column names, e.g. --map is_correct=correct. "
                f"Got {item!r}."
            )
        mapping[old] = new
    return mapping


def _is_source(name: str) -> bool:
    """Whether ``name`` names a public source (``SOURCE[:SELECTOR]`` or ``example``)."""
    known = {src.name for src in datasets.sources()}
    return name == "example" or name.partition(":")[0] in known


def _open_log(log: str, repeats: str = "drop", mapping: list[str] | None = None) -> SampleLog:
    """Read a log file, or load a named public source.

    A checkpoint log (a ``think_tokens`` column) becomes its thinking arms ``cap@T`` and
    ``full`` (:func:`computealloc.checkpoints.thinking_log`), an ordinary multi-arm log.
    """
    loaded = _open_any(log, repeats, mapping)
    if isinstance(loaded, SampleLog):
        return loaded
    from computealloc.checkpoints import thinking_log

    return thinking_log(loaded)


def _open_any(
    log: str, repeats: str = "drop", mapping: list[str] | None = None
) -> SampleLog | CheckpointLog:
    """Read a sample log or a checkpoint log file, or load a named public source."""
    columns = _column_map(mapping or [])
    try:
        if Path(log).exists() or not _is_source(log):
            from computealloc.checkpoints import read_log

            with console.status(f"Reading {_plain(log)} ..."):
                return read_log(log, columns=columns or None)
        if columns:
            raise _fail(f"--map applies to log files; {log!r} is a named source.")
        with console.status(f"Loading {_plain(log)} ..."):
            return datasets.load(log, repeats=cast(Literal["drop", "keep"], repeats))
    except (SampleLogError, FileNotFoundError, KeyError, ValueError) as exc:
        raise _fail(exc) from exc


def _drop_short(sample_log: SampleLog, min_samples: int | None) -> SampleLog:
    """--min-samples: the log without its short queries, said on the terminal."""
    if min_samples is None:
        return sample_log
    short = sample_log.short_queries(min_samples)
    if not len(short):
        return sample_log
    try:
        kept = sample_log.drop_short(min_samples)
    except ValueError as exc:
        raise _fail(f"--min-samples {min_samples}: {exc}") from exc
    shown = ", ".join(f"{q} ({k})" for q, k in short.head(5).items())
    console.print(
        f"dropped {len(short)} queries with fewer than {min_samples} samples: "
        f"{_plain(shown)}{', ...' if len(short) > 5 else ''}",
        highlight=False,
    )
    return kept


def _fmt(value: object) -> str:
    if isinstance(value, float):
        # NumPy's rounding of the scaled value, as pandas prints tables (0.32875 -> 0.3288).
        return "–" if math.isnan(value) else f"{np.round(value, 4):.4f}"
    return str(value)


def _print_frame(df: pd.DataFrame, title: str) -> None:
    df = df.dropna(axis=1, how="all")
    table = Table(title=_plain(title), header_style="bold")
    for col in df.columns:
        numeric = pd.api.types.is_numeric_dtype(df[col]) and not pd.api.types.is_bool_dtype(df[col])
        table.add_column(_plain(col), justify="right" if numeric else "left")
    for row in df.itertuples(index=False):
        table.add_row(*(_plain(_fmt(v)) for v in row))
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
def inspect(log: LogArg, repeats: RepeatsOpt = "drop", map_: MapOpt = []) -> None:  # noqa: B006
    """Per model: queries, samples per query, single-sample and majority accuracy, agreement.

    On a checkpoint log (a think_tokens column): accuracy and tokens by checkpoint (cap@T).

    Example: computealloc inspect mot_cascade:llama-2-13b/gsm/pot2 --repeats keep
    """
    from computealloc.summary import summarize

    loaded = _open_any(log, repeats, map_)
    if isinstance(loaded, SampleLog):
        _print_frame(summarize(loaded), f"{loaded.source}")
        return
    from computealloc.checkpoints import checkpoint_summary

    title = f"{loaded.source}: accuracy and tokens by checkpoint"
    _print_frame(checkpoint_summary(loaded), title)


class _RateColumn(ProgressColumn):
    """Queries per second, one decimal."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        shown = "-" if speed is None else f"{speed:.1f}"
        return Text(f"{shown} q/s", style="progress.data.speed")


class _EtaColumn(ProgressColumn):
    """Time left: measured once a step is done, before that the up-front estimate."""

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        if task.total is None:
            return Text("")
        if task.completed:
            left = elapsed / task.completed * (task.total - task.completed)
        else:
            left = max(float(task.fields.get("estimate", 0.0)) - elapsed, 0.0)
        minutes, seconds = divmod(round(left), 60)
        return Text(f"ETA ~{minutes}:{seconds:02d}", style="progress.remaining")


def _size(seconds: float, peak_bytes: float) -> str:
    """ "about 2.4 min and 1.3 GB" for a warning."""
    time = f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"
    return f"about {time} and {peak_bytes / 1e9:.1f} GB"


_CLIENT_HELP = "Transport upstream: aiohttp (plain HTTP, cheapest) or openai (the official client)."

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


def _budget_flag(value: float) -> float:
    """--budget checked at the command line, so that the error names the flag."""
    try:
        return check_budget(value, "--budget")
    except ValueError as exc:
        raise typer.BadParameter(f"must be a number in (0, inf). Got {value!r}.") from exc


def _pricing(cost: str, price: list[str]) -> Pricing:
    """The --cost and --price flags as one Pricing; a bad value exits with the flag named."""
    try:
        return Pricing.parse(cost, price)
    except ValueError as exc:
        raise _fail(exc) from exc


def _finite(low: float, *, strict: bool = False) -> Any:
    """A callback checking that a float option is finite and >= ``low`` (> with ``strict``)."""

    def check(value: float | None) -> float | None:
        if value is not None and not (
            math.isfinite(value) and (value > low if strict else value >= low)
        ):
            interval = f"({low:g}, inf)" if strict else f"[{low:g}, inf)"
            raise typer.BadParameter(f"must be a number in {interval}. Got {value!r}.")
        return value

    return check


@app.command("estimate")
def estimate_cmd(
    log: LogArg,
    out: Annotated[
        Path, typer.Option("-o", "--out", dir_okay=False, help="Output OutcomeTable (.parquet).")
    ],
    actions: Annotated[
        str | None,
        typer.Option(help="Comma-separated action specs; default majority@1,2,4,... up to n."),
    ] = None,
    cost: CostOpt = "samples",
    price: PriceOpt = [],  # noqa: B006
    on_short: Annotated[
        Literal["raise", "drop"],
        typer.Option(help="Queries with fewer than K samples for an action: raise or drop."),
    ] = "raise",
    min_samples: MinSamplesOpt = None,
    map_: MapOpt = [],  # noqa: B006
) -> None:
    r"""Estimate every action's exact expected accuracy and cost on every query.

    Example:

        computealloc estimate mot_cascade:llama-2-13b/gsm/pot2 \
            --actions majority@1,majority@4,majority@16 -o table.parquet
    """
    from computealloc.actions import parse_actions
    from computealloc.estimate import estimate

    _check_out(out)
    pricing = _pricing(cost, price)
    sample_log = _drop_short(_open_log(log, mapping=map_), min_samples)
    try:
        acts = parse_actions(actions) if actions else None
        with console.status("Estimating ..."):
            table = estimate(sample_log, acts, pricing, on_short=on_short)
    except ValueError as exc:
        raise _fail(exc) from exc
    with _writing(out):
        table.save(out)
    means = pd.DataFrame(
        {"action": table.actions, "mean_accuracy": table.P.mean(0), "mean_cost": table.C.mean(0)}
    )
    _print_frame(means, f"{table.n_queries} queries -> {out}")


@app.command("collect")
def collect_cmd(
    queries: Annotated[
        Path,
        typer.Argument(dir_okay=False, help="Queries file (JSONL or CSV: query_id, prompt, gold)."),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "-o",
            "--out",
            dir_okay=False,
            help="Sample log to write (JSONL); resumed if present. One collect at a time per "
            "file: a second one exits at once (the lock is OUT.lock).",
        ),
    ],
    n: Annotated[int, typer.Option("-n", min=1, help="Samples per query.")] = 16,
    base_url: Annotated[
        str | None, typer.Option(help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1.")
    ] = None,
    model: Annotated[str | None, typer.Option(help="Model name served at --base-url.")] = None,
    replay: Annotated[
        str | None, typer.Option(help="Replay a logged SampleLog instead of a server.")
    ] = None,
    api_key: Annotated[str | None, typer.Option(envvar="OPENAI_API_KEY", help="API key.")] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Queries in flight.")] = 8,
    temperature: Annotated[
        float, typer.Option(help="Sampling temperature.", callback=_finite(0))
    ] = 0.7,
    max_tokens: Annotated[
        int | None, typer.Option(min=1, help="Max output tokens per sample.")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Sampling seed passed to the server.")] = None,
    timeout: Annotated[
        float,
        typer.Option(help="Seconds per request.", callback=_finite(0, strict=True)),
    ] = 60.0,
    max_attempts: Annotated[
        int, typer.Option(min=1, help="Attempts per request (429/5xx/timeouts).")
    ] = 6,
    use_n: Annotated[
        Literal["auto", "true", "false"], typer.Option(help="Use the `n` parameter.")
    ] = "auto",
    client: Annotated[Literal["aiohttp", "openai"], typer.Option(help=_CLIENT_HELP)] = "aiohttp",
    max_failures: Annotated[
        int, typer.Option(min=0, help="Queries allowed to fail (rerun retries them).")
    ] = 0,
    backend: Annotated[
        list[str],
        typer.Option(
            help="NAME=URL (repeatable): one arm per model or mode; n samples per query are "
            "drawn from each, rows labelled with the arm's name (instead of --base-url)."
        ),
    ] = [],  # noqa: B006
    config: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="A TOML/YAML file whose `arms` (url, model, api_key_env, params) to sample, "
            "as for `serve --config`.",
        ),
    ] = None,
    map_: Annotated[
        list[str], typer.Option("--map", help="OLD=NEW (repeatable): columns of the --replay log.")
    ] = [],  # noqa: B006
    checkpoints: Annotated[
        str | None,
        typer.Option(
            help="T1,T2,... thinking-token counts: record a checkpoint log (the forced answer "
            "at each, then the trace's natural end, at most --max-tokens); see docs/thinking.md."
        ),
    ] = None,
    continuation: Annotated[
        Literal["vllm", "sglang", "llama.cpp"],
        typer.Option(help="With --checkpoints: how the server continues a partial answer."),
    ] = "vllm",
    answer_tokens: Annotated[
        int, typer.Option(min=1, help="With --checkpoints: tokens of each forced answer.")
    ] = 32,
) -> None:
    r"""Sample n responses per query from an endpoint (or from each arm) into a crash-safe,
    resumable log.

    Example:

        computealloc collect queries.jsonl --base-url http://localhost:8000/v1 \
            --model Qwen/Qwen2.5-7B-Instruct -n 16 -o samples.jsonl

    A checkpoint log of a reasoning model (docs/thinking.md):

        computealloc collect queries.jsonl --base-url http://localhost:8000/v1 \
            --model deepseek-ai/DeepSeek-R1-Distill-Qwen-7B -n 4 --max-tokens 16384 \
            --checkpoints 256,512,1024,2048,4096,8192 -o checkpoints.jsonl
    """
    from computealloc.collect import CollectError, LogLockedError

    arms = bool(backend) or config is not None
    sources = [
        flag
        for flag, given in (("--base-url", base_url), ("--replay", replay), ("--backend", arms))
        if given
    ]
    if len(sources) != 1:
        raise _fail(
            "give exactly one source of samples: --base-url URL with --model NAME, "
            "--backend NAME=URL (repeatable) or --config FILE, or --replay LOG. Got "
            f"{' and '.join(sources) if sources else 'none'}."
        )
    if base_url is not None and model is None:
        raise _fail("--base-url needs --model (the model name the server serves).")
    if map_ and replay is None:
        raise _fail("--map renames columns of the --replay log; give --replay.")
    probes = _checkpoint_probes(checkpoints, continuation, answer_tokens, max_tokens, replay)
    options = {
        "api_key": api_key,
        "concurrency": concurrency,
        "temperature": temperature,
        "max_tokens": max_tokens,
        "seed": seed,
        "timeout": timeout,
        "max_attempts": max_attempts,
        "use_n": {"auto": "auto", "true": True, "false": False}[use_n],
        "client": client,
        "max_failures": max_failures,
        "checkpoints": probes,
    }
    try:
        if arms:
            _collect_arms(queries, out, backend, config, n, options)
        else:
            replayed = _open_log(replay, mapping=map_) if replay else None
            _collect_one(queries, out, n, base_url, model, replayed, options)
    except (SampleLogError, ValueError) as exc:
        raise _fail(exc) from exc
    except (CollectError, LogLockedError) as exc:
        raise _fail(exc, 1) from exc


def _checkpoint_probes(
    checkpoints: str | None,
    continuation: str,
    answer_tokens: int,
    max_tokens: int | None,
    replay: str | None,
) -> CheckpointProbes | None:
    """--checkpoints and its companions as the library's CheckpointProbes (None without it)."""
    from computealloc.collect import CheckpointProbes

    if checkpoints is None:
        return None
    if replay is not None:
        raise _fail("--checkpoints probes a live server; it does not apply to --replay.")
    if max_tokens is None:
        raise _fail("--checkpoints needs --max-tokens: the longest trace to record.")
    try:
        points = tuple(int(t) for t in checkpoints.split(","))
    except ValueError:
        raise _fail(
            f"--checkpoints expects comma-separated token counts, e.g. 256,512,1024. "
            f"Got {checkpoints!r}."
        ) from None
    if not points or any(b <= a for a, b in itertools.pairwise(points)) or points[0] < 1:
        raise _fail(
            f"--checkpoints must be strictly increasing positive counts. Got {checkpoints!r}."
        )
    if points[-1] >= max_tokens:
        raise _fail(
            f"--checkpoints must stay below --max-tokens {max_tokens} (the trace's natural end "
            f"is recorded after them). Got {checkpoints!r}."
        )
    return CheckpointProbes(points, continuation, answer_tokens)


def _collect_columns() -> tuple[ProgressColumn, ...]:
    """The progress columns of collect: description, bar, done/total, %, rate, time left."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )

    return (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        _RateColumn(),
        TimeRemainingColumn(),
    )


def _collect_one(
    queries: Path,
    out: Path,
    n: int,
    base_url: str | None,
    model: str | None,
    replay: SampleLog | None,
    options: dict[str, Any],
) -> None:
    """``computealloc collect`` from one endpoint or a replayed log."""
    from computealloc.collect import CollectProgress, run_collect

    with _progress(*_collect_columns()) as bar:
        tasks: list[TaskID] = []

        def on_progress(p: CollectProgress) -> None:
            if not tasks:  # added at the first report: resumed queries must not inflate the rate
                tasks.append(bar.add_task("collecting", total=p.total, completed=p.completed))
            text = f"{p.samples} samples, {p.failed} failed"
            bar.update(tasks[0], completed=p.completed, description=text)

        result = run_collect(
            queries,
            out,
            n=n,
            base_url=base_url,
            model=model,
            replay=replay,
            progress=on_progress,
            **options,
        )
    console.print(
        f"{result.n_collected} queries collected, {result.n_resumed} resumed -> "
        f"{_plain(result.path)}; accuracy {_fmt(result.accuracy)}, output tokens "
        f"{result.output_tokens}, {result.elapsed_s:.1f} s",
        highlight=False,
    )
    if result.failed:
        console.print(
            f"[red]{len(result.failed)} queries failed[/red]: "
            f"{_plain(', '.join(list(result.failed)[:10]))}"
        )
        raise typer.Exit(1)


def _collect_arms(
    queries: Path,
    out: Path,
    backend: list[str],
    config: Path | None,
    n: int,
    options: dict[str, Any],
) -> None:
    """``computealloc collect`` from arms (--backend NAME=URL, --config)."""
    from computealloc.arms import parse_arm
    from computealloc.collect import CollectProgress, run_collect_arms
    from computealloc.serve_config import load_arms

    arms = [parse_arm(b) for b in backend] + ([] if config is None else load_arms(config))
    with _progress(*_collect_columns()) as bar:
        tasks: dict[str, TaskID] = {}

        def on_progress(arm: str, p: CollectProgress) -> None:
            if arm not in tasks:  # resumed queries must not inflate the rate
                tasks[arm] = bar.add_task(arm, total=p.total, completed=p.completed)
            text = f"{_plain(arm)}: {p.samples} samples, {p.failed} failed"
            bar.update(tasks[arm], completed=p.completed, description=text)

        results = run_collect_arms(queries, out, arms, n=n, progress=on_progress, **options)
    failed = 0
    for arm, result in results.items():
        console.print(
            f"{_plain(arm)}: {result.n_collected} queries collected, {result.n_resumed} "
            f"resumed; accuracy {_fmt(result.accuracy)}, output tokens {result.output_tokens}, "
            f"{result.elapsed_s:.1f} s",
            highlight=False,
        )
        failed += len(result.failed)
    console.print(f"-> {_plain(out)}", highlight=False)
    if failed:
        console.print(f"[red]{failed} queries failed[/red] (a rerun retries them)")
        raise typer.Exit(1)


def _parse_shares(text: str | None) -> dict[str, float] | None:
    if not text:
        return None
    out: dict[str, float] = {}
    for item in text.split(","):
        group, sep, value = item.partition("=")
        try:
            out[group.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not group.strip() or not 0 <= out[group.strip()] <= 1:
            raise _fail(
                "--max-share expects GROUP=SHARE[,GROUP=SHARE...] with each SHARE in [0, 1]. "
                f"Got {item!r}."
            )
    return out


@app.command("ibpo")
def ibpo_cmd(
    log: LogArg,
    group_col: Annotated[str, typer.Option(help="Column naming each response's group.")],
    out: Annotated[
        Path,
        typer.Option(
            "-o",
            "--out",
            help="SFT dataset to write (JSONL); with --train a directory for sft.jsonl, the "
            "fine-tuned model (model/) and train.json.",
        ),
    ],
    max_share: Annotated[
        str | None, typer.Option(help="Share caps per group, e.g. long=0.5[,other=0.2].")
    ] = None,
    budget: Annotated[
        float | None, typer.Option(help="Mean cost per prompt cap (with --cost-col).")
    ] = None,
    cost_col: Annotated[str | None, typer.Option(help="Per-response cost column.")] = None,
    utility: Annotated[
        Literal["margin", "reward"], typer.Option(help="What a selected response earns.")
    ] = "margin",
    batch_size: Annotated[int, typer.Option(min=1, help="Prompts per in-batch program.")] = 64,
    seed: Annotated[int, typer.Option(help="Seed of the prompt shuffle into batches.")] = 0,
    keep_rejected: Annotated[
        bool, typer.Option(help="Also write rejected responses with weight 0.")
    ] = False,
    train: Annotated[
        Path | None,
        typer.Option(
            help="Fine-tune this model (a .gguf file or a save_pretrained directory) on the "
            "selected targets; needs computealloc[train]."
        ),
    ] = None,
    steps: Annotated[int, typer.Option(min=1, help="Optimizer steps (with --train).")] = 20,
    learning_rate: Annotated[
        float, typer.Option(help="AdamW learning rate (with --train).")
    ] = 5e-5,
    train_batch: Annotated[int, typer.Option(min=1, help="Records per step (with --train).")] = 4,
    check: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="Held-out prompt/completion JSONL: its loss before and after training.",
        ),
    ] = None,
    map_: MapOpt = [],  # noqa: B006
) -> None:
    r"""IBPO target selection: a weighted SFT dataset (prompt/completion) under share caps;
    with --train, also fine-tune a model on it (weighted loss, CPU) and save it.

    Examples:

        computealloc ibpo samples.jsonl --group-col mode --max-share long=0.5 \
            --batch-size 64 -o sft.jsonl

        computealloc ibpo samples.jsonl --group-col mode --max-share long=0.5 \
            --train gemma-3-270m-q4_k_m.gguf --steps 20 -o run/
    """
    from computealloc.ibpo import export_sft

    if max_share is None and (budget is None or cost_col is None):
        raise _fail("give --max-share GROUP=SHARE, or --budget with --cost-col.")
    _check_out(out)
    if train is None and out.is_dir():
        raise _fail(f"-o/--out {str(out)!r} is a directory; without --train it names a file.")
    if train is not None and out.exists() and not out.is_dir():
        raise _fail(f"-o/--out {str(out)!r} is a file; with --train it names a directory.")
    sample_log = _open_log(log, mapping=map_)
    shares = _parse_shares(max_share)
    data_path = out / "sft.jsonl" if train is not None else out
    try:
        with _progress() as bar:
            task = bar.add_task("selecting", total=None)
            summary = export_sft(
                sample_log,
                group_col=group_col,
                out_path=data_path,
                max_share=shares,
                budget=budget,
                cost_col=cost_col,
                utility=utility,
                batch_size=batch_size,
                seed=seed,
                keep_rejected=keep_rejected,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
    except (KeyError, ValueError, OSError) as exc:
        raise _fail(exc) from exc
    _print_frame(summary.to_frame(), f"{summary.n_selected} targets of {summary.n_prompts} prompts")
    console.print(
        f"selected reward {_fmt(summary.selected_reward)}; written {summary.n_written} -> "
        f"{_plain(data_path)}"
        + (f"; mean cost {_fmt(summary.mean_cost)}" if summary.mean_cost is not None else "")
    )
    if train is not None:
        _ibpo_train(data_path, train, out, steps, learning_rate, train_batch, seed, check)


def _ibpo_train(
    data: Path,
    model: Path,
    out: Path,
    steps: int,
    learning_rate: float,
    batch: int,
    seed: int,
    check: Path | None,
) -> None:
    from computealloc.ibpo_train import train_sft

    try:
        with console.status(f"training {_plain(model)} for {steps} steps ..."):
            result = train_sft(
                data,
                model,
                out / "model",
                steps=steps,
                batch_size=batch,
                learning_rate=learning_rate,
                seed=seed,
                check=check,
            )
    except (ImportError, ValueError, OSError) as exc:
        raise _fail(exc) from exc
    with _writing(out):
        atomic_write(
            out / "train.json", lambda fh: fh.write(json.dumps(result.to_json(), indent=1))
        )
    console.print(
        f"trained {result.steps} steps on {result.n_records} records ({result.n_dropped} of "
        f"weight 0 dropped) in {result.seconds:.0f} s; loss {_fmt(result.losses[0])} -> "
        f"{_fmt(result.losses[-1])}; saved -> {_plain(out / 'model')}"
    )
    if result.check_before is not None:
        console.print(
            f"check loss {_fmt(result.check_before)} -> {_fmt(result.check_after)} (nats/token)"
        )


@app.command("solve")
def solve_cmd(
    table_path: Annotated[
        Path,
        typer.Argument(exists=True, dir_okay=False, help="OutcomeTable written by `estimate`."),
    ],
    budget: Annotated[
        float,
        typer.Option("--budget", "-b", help="Mean cost per query.", callback=_budget_flag),
    ],
    method: Annotated[
        Literal["exact", "bisection", "highs"], typer.Option(help="How to solve the LP.")
    ] = "exact",
    certify: Annotated[
        bool, typer.Option(help="Also solve the integer program (MILP) and report the gap.")
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option("-o", "--out", dir_okay=False, help="Write per-query actions (CSV)."),
    ] = None,
) -> None:
    """The oracle allocation at a budget: actions per query, dual price, accuracy, mean cost.

    Example: computealloc solve table.parquet --budget 4 -o actions.csv
    """
    from computealloc.oracle import certify as certify_fn
    from computealloc.oracle import solve

    _check_out(out)
    try:
        table = OutcomeTable.load(table_path)
        alloc = solve(table, budget, method)
        cert = certify_fn(table, budget) if certify else None
    except (ValueError, OSError) as exc:
        raise _fail(exc) from exc
    counts = pd.DataFrame(
        {"action": list(alloc.counts()), "queries": list(alloc.counts().values())}
    )
    _print_frame(counts, f"{table.n_queries} queries, budget {budget:g} {table.cost_unit}")
    console.print(
        f"status {alloc.status}; lam {alloc.lam:.6g}; accuracy {alloc.accuracy:.4f}; "
        f"mean cost {alloc.cost:.4f}"
        + (f"; fractional query {_plain(table.query_ids[alloc.mix[0]])}" if alloc.mix else ""),
        highlight=False,
    )
    if cert is not None:
        console.print(
            f"integer optimum {cert.accuracy:.6f} (cost {cert.cost:.4f}); LP bound "
            f"{cert.lp_bound:.6f}; gap {cert.gap:.2e}"
        )
    if out is not None:
        frame = alloc.to_frame()
        with _writing(out):
            atomic_write(out, lambda fh: frame.to_csv(fh, index=False))
        console.print(f"per-query actions -> {_plain(out)}", highlight=False)


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether option ``name`` came from the command line or the environment."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")


def _serve_default(name: str) -> str:
    """The default of a serve setting, for --help (one source: ServeConfig)."""
    from computealloc.serve_config import ServeConfig

    default = ServeConfig.model_fields[name].default
    return f" [default: {default}]"


@app.command("serve")
def serve_cmd(
    ctx: typer.Context,
    policy: Annotated[
        Path | None, typer.Option(help="Policy or stopping-rule file (from `computealloc fit`).")
    ] = None,
    budget: Annotated[
        float | None, typer.Option(help="Mean cost per query to hold online.")
    ] = None,
    backend: Annotated[
        list[str],
        typer.Option(
            help="http(s)://HOST/v1 of an OpenAI-compatible server (with --model), replay:LOG, "
            "or NAME=URL, repeated, one per arm (model) the policy routes to; the upstream "
            "model is NAME. For per-arm keys, request parameters and prices, use --config."
        ),
    ] = [],  # noqa: B006
    config: Annotated[
        Path | None,
        typer.Option(
            help="A TOML or YAML file of serve settings and `arms` (url, model, api_key_env, "
            "params, price); flags given here override it. See docs/serving.md."
        ),
    ] = None,
    host: Annotated[
        str | None, typer.Option(help="Interface to listen on." + _serve_default("host"))
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port to listen on." + _serve_default("port"))
    ] = None,
    model: Annotated[str | None, typer.Option(help="Upstream model (with a URL).")] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar="COMPUTEALLOC_API_KEY",
            help="Key clients must send. Prefer the COMPUTEALLOC_API_KEY environment variable "
            "or --api-key-file: a key on the command line is visible to every user (ps).",
        ),
    ] = None,
    api_key_file: Annotated[
        Path | None,
        typer.Option(help="A file (mode 600) whose first line is the key clients must send."),
    ] = None,
    backend_api_key: Annotated[
        str | None, typer.Option(envvar="OPENAI_API_KEY", help="Key for the upstream server.")
    ] = None,
    probe_m: Annotated[
        int | None, typer.Option(help="Probe samples per query; default: the policy file's.")
    ] = None,
    temperature: Annotated[
        float | None,
        typer.Option(help="Sampling temperature upstream." + _serve_default("temperature")),
    ] = None,
    max_tokens: Annotated[int | None, typer.Option(help="Max output tokens per sample.")] = None,
    timeout: Annotated[
        float | None,
        typer.Option(help="Seconds per upstream request." + _serve_default("timeout")),
    ] = None,
    max_attempts: Annotated[
        int | None,
        typer.Option(help="Attempts per upstream request." + _serve_default("max_attempts")),
    ] = None,
    request_timeout: Annotated[
        float | None,
        typer.Option(help="Deadline per client request (s)." + _serve_default("request_timeout")),
    ] = None,
    max_body_bytes: Annotated[
        int | None,
        typer.Option(help="Largest request body accepted." + _serve_default("max_body_bytes")),
    ] = None,
    served_model_name: Annotated[
        str | None,
        typer.Option(help="Model name clients see." + _serve_default("served_model_name")),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            help="Samples per upstream call of a stopping rule." + _serve_default("batch_size")
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Worker processes (each holds the budget; metrics are summed)."
            + _serve_default("workers")
        ),
    ] = None,
    client: Annotated[
        str | None, typer.Option(help=_CLIENT_HELP + _serve_default("client"))
    ] = None,
    price: Annotated[
        list[str],
        typer.Option(
            help="ARM=PRICE (repeatable), in the policy's cost unit; default the prices saved "
            "in the policy file, which these must equal."
        ),
    ] = [],  # noqa: B006
    spend_store: Annotated[
        str | None,
        typer.Option(
            help="redis://HOST:PORT/DB: hold one budget with every replica on this store and "
            "budget name (default: in this process)."
        ),
    ] = None,
    budget_name: Annotated[
        str | None,
        typer.Option(help="Name of the budget in the spend store." + _serve_default("budget_name")),
    ] = None,
    keys: Annotated[
        Path | None,
        typer.Option(help="JSON keys file: API key -> budget, optional hard cap per period."),
    ] = None,
    keep_alive: Annotated[
        float | None,
        typer.Option(
            help="Seconds an idle client connection stays open; keep it above your clients' "
            "and load balancer's idle timeouts." + _serve_default("keep_alive")
        ),
    ] = None,
    docs: Annotated[
        bool | None,
        typer.Option(
            "--docs/--no-docs",
            help="Serve /docs and /redoc (their JavaScript comes from a CDN; behind the key "
            "when one is set)." + _serve_default("docs"),
        ),
    ] = None,
) -> None:
    """OpenAI-compatible proxy that spends compute per request by the policy, holding budget B.

    Example: computealloc serve --policy policy.json --budget 0.3
    --backend gpt-4=http://127.0.0.1:8001/v1 --backend mixtral=http://127.0.0.1:8002/v1
    (listens on http://127.0.0.1:8100/v1 by default).
    """
    from computealloc.persist import PolicyFileError
    from computealloc.serve_config import load_serve_config
    from computealloc.server import serve
    from computealloc.units import split_prices

    flags = {  # the flags given (command line or environment) override the config file
        name: value for name, value in ctx.params.items() if name != "config" and _given(ctx, name)
    }
    source = ctx.get_parameter_source("api_key")
    if source is not None and source.name == "ENVIRONMENT" and "api_key_file" in flags:
        flags.pop("api_key")  # the file given on the command line wins over the environment
    if source is not None and source.name == "COMMANDLINE":
        console.print(
            "[yellow]warning:[/yellow] --api-key on the command line is visible to every user "
            "of this machine (ps, /proc); use COMPUTEALLOC_API_KEY or --api-key-file instead."
        )
    try:
        if "price" in flags:
            flags["prices"] = dict(split_prices(flags.pop("price")))
        if "keys" in flags:
            flags["keys_file"] = flags.pop("keys")
        settings = load_serve_config(config, flags)
        serve(**settings.serve_kwargs())
    except (PolicyFileError, SampleLogError, FileNotFoundError, ValueError) as exc:
        raise _fail(exc) from exc


@app.command("fit")
def fit_cmd(
    log: LogArg,
    budget: Annotated[
        float, typer.Option(help="Mean cost per query to calibrate to.", callback=_budget_flag)
    ],
    out: Annotated[
        Path, typer.Option("-o", "--out", dir_okay=False, help="Policy file to write (JSON).")
    ],
    method: Annotated[
        FitMethod,
        typer.Option(help=fit_help()),
    ] = "value",
    actions: Annotated[
        str | None,
        typer.Option(help="Comma-separated action specs; default majority@1,2,4,... up to n."),
    ] = None,
    cost: CostOpt = "samples",
    price: PriceOpt = [],  # noqa: B006
    probe_m: Annotated[
        int, typer.Option(min=0, help="Probe samples per query (reused in the vote).")
    ] = 0,
    seed: Annotated[int, typer.Option(help="Seed of the split, probes and models.")] = 0,
    repeats: RepeatsOpt = "drop",
    min_samples: MinSamplesOpt = None,
    map_: MapOpt = [],  # noqa: B006
) -> None:
    r"""Fit a policy on train queries, calibrate it to the budget, save it (JSON, no pickle).

    Example:

        computealloc fit mot_cascade:llama-2-13b/gsm/pot2 --method value --budget 2 \
            -o policy.json
    """
    from computealloc.fit import fit_policy
    from computealloc.persist import save_policy

    _check_out(out)
    pricing = _pricing(cost, price)
    if method in fittable("fit_stopping") and (
        actions is not None or cost != "samples" or price or probe_m
    ):
        raise _fail(
            f"--method {method} is a sequential stopping rule: it spends samples one at a "
            "time, so --actions, --cost, --price and --probe-m do not apply."
        )
    sample_log = _drop_short(_open_log(log, repeats, map_), min_samples)
    if method in fittable("fit_stopping"):
        _fit_stopping(sample_log, budget, method, out, seed)
        return
    try:
        with console.status("Fitting ..."):
            result = fit_policy(
                sample_log,
                budget=budget,
                method=method,
                actions=actions,
                cost=pricing.unit,
                prices=pricing.prices,
                probe_m=probe_m,
                seed=seed,
            )
    except ValueError as exc:
        raise _fail(exc) from exc
    with _writing(out):
        save_policy(result.policy, out)
    console.print(
        f"{method} policy -> {_plain(out)} (train {result.n_train}, calibration "
        f"{result.n_calibration} queries; lam {result.policy.lam_:.4g})\n"
        f"held-out test queries ({result.n_test}): accuracy {result.test_accuracy:.4f} at mean "
        f"cost {result.test_cost:.3f}; uniform at the budget {result.uniform_accuracy:.4f}",
        highlight=False,
    )


def _fit_stopping(sample_log: SampleLog, budget: float, method: str, out: Path, seed: int) -> None:
    """``computealloc fit`` for a sequential stopping rule."""
    from computealloc.persist import save_stopping
    from computealloc.sequential import fit_stopping

    try:
        with console.status("Fitting ..."):
            result = fit_stopping(sample_log, budget=budget, method=method, seed=seed)
    except ValueError as exc:
        raise _fail(exc) from exc
    with _writing(out):
        save_stopping(result.rule, out)
    console.print(
        f"{result.method} stopping rule -> {_plain(out)} (train {result.n_train}, calibration "
        f"{result.n_calibration} queries; {_plain(result.rule.describe())})\n"
        f"test queries ({result.n_test}): accuracy {result.test_accuracy:.4f} at "
        f"{result.test_samples:.3f} samples per query; majority@{budget:g} "
        f"{result.uniform_accuracy:.4f}",
        highlight=False,
    )


def _methods_flag(value: str | None) -> str | None:
    """--methods checked against the evaluation registry, naming the flag."""
    from computealloc.evaluation import METHODS

    unknown = [m for m in (value or "").split(",") if value and m.strip() not in METHODS]
    if unknown:
        raise typer.BadParameter(
            f"unknown method {unknown[0]!r}; expected a comma-separated list of "
            f"{', '.join(METHODS)}."
        )
    return value


@app.command("evaluate")
def evaluate_cmd(
    log: LogArg,
    out: Annotated[
        Path,
        typer.Option("--out", "-o", file_okay=False, help="Folder for results and report."),
    ],
    budgets: Annotated[str, typer.Option(help="Comma-separated budgets.")] = "1,2,4,8",
    seeds: Annotated[int, typer.Option(min=1, help="Seeds (query splits).")] = 3,
    protocol: Annotated[
        Literal["in-sample", "held-out", "both"],
        typer.Option(help="Which protocols (held-out needs >= 2 samples per query)."),
    ] = "both",
    actions: Annotated[
        str | None, typer.Option(help="Comma-separated action specs; default majority@1,2,4,...")
    ] = None,
    methods: Annotated[
        str | None,
        typer.Option(help="Comma-separated methods; default all.", callback=_methods_flag),
    ] = None,
    probe_m: Annotated[int, typer.Option(min=0, help="Probe samples for the +probe policies.")] = 2,
    cost: CostOpt = "samples",
    price: PriceOpt = [],  # noqa: B006
    sequential: Annotated[
        bool, typer.Option(help="Include the sequential stopping methods (AC, ESC, ...).")
    ] = True,
    repeats: RepeatsOpt = "drop",
    min_samples: MinSamplesOpt = None,
    map_: MapOpt = [],  # noqa: B006
) -> None:
    r"""Evaluate every method against uniform and the oracle on held-out queries and samples.

    Prints a verdict per budget; writes DIR/results.csv, summary.csv, comparison.csv,
    report.md, report.html and PNG plots.

    Example:

        computealloc evaluate mot_cascade:llama-2-13b/gsm/pot2 --budgets 1,2,4 \
            --seeds 3 --out runs/gsm
    """
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

    from computealloc.checkpoints import thinking_log
    from computealloc.comparison import primary_protocol, verdict_lines
    from computealloc.evaluation import METHODS, PROTOCOLS, SEQUENTIAL, footprint
    from computealloc.evaluation import evaluate as run_evaluation
    from computealloc.report import thinking_lines, write_report

    _check_out(out / "report.html")
    pricing = _pricing(cost, price)
    try:
        budget_list = [check_budget(float(b), "--budgets") for b in budgets.split(",")]
    except ValueError as exc:
        raise _fail(
            f"--budgets must be comma-separated numbers in (0, inf). Got {budgets!r}."
        ) from exc
    loaded = _open_any(log, repeats, map_)  # a checkpoint log: its thinking arms + exit rules
    checkpoints = None if isinstance(loaded, SampleLog) else loaded
    opened = loaded if isinstance(loaded, SampleLog) else thinking_log(loaded)
    sample_log = _drop_short(opened, min_samples)
    protocols = PROTOCOLS if protocol == "both" else (protocol,)
    method_list = (
        [m.strip() for m in methods.split(",")]
        if methods
        else (None if sequential else [m for m in METHODS if m not in SEQUENTIAL])
    )
    try:
        plan = footprint(
            sample_log, budgets=budget_list, seeds=seeds, protocols=protocols, methods=method_list
        )
    except ValueError as exc:
        raise _fail(exc) from exc
    if plan.seconds > 60 or plan.peak_bytes > 1e9:
        smaller = ["--seeds 1", "fewer --budgets", "--protocol held-out"]
        if plan.sequential_seconds > plan.seconds / 2:
            smaller.insert(0, "--no-sequential (the stopping rules take most of it)")
        _warn(
            f"this evaluation will take {_size(plan.seconds, plan.peak_bytes)} ({plan.steps} "
            f"steps). Smaller: {', '.join(smaller)}."
        )
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("steps"),
        TimeElapsedColumn(),
        _EtaColumn(),
    )
    label = (
        f"evaluate {_plain(sample_log.source)} ({len(protocols)} protocols x "
        f"{plan.steps // len(protocols)} seed-budgets)"
    )
    try:
        with _progress(*columns) as bar:
            task = bar.add_task(label, total=plan.steps, estimate=plan.seconds)
            result = run_evaluation(
                sample_log,
                actions=actions,
                budgets=budget_list,
                seeds=seeds,
                protocols=protocols,
                methods=method_list,
                probe_m=probe_m,
                cost=pricing.unit,
                prices=pricing.prices or None,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
                checkpoints=checkpoints,
            )
    except ValueError as exc:
        raise _fail(exc) from exc
    with _writing(out):
        paths = write_report(result, out)
    protocol_shown = primary_protocol(result)
    console.print(
        f"[bold]{_plain(sample_log.source)}[/bold]: verdict ({protocol_shown} protocol)",
        highlight=False,
    )
    for line in verdict_lines(result):
        console.print(f"  {_plain(line)}", highlight=False)
    for line in thinking_lines(result):
        console.print(f"  {_plain(line)}", highlight=False)
    console.print(f"full report -> {_plain(paths.get('report.html', out))}", highlight=False)
