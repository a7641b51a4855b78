"""The ``computealloc`` command: a thin typer layer over the Python API."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, cast

import numpy as np
import pandas as pd
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import ProgressColumn, Task, TaskID
from rich.table import Table
from rich.text import Text

from computealloc import datasets
from computealloc.checks import check_budget
from computealloc.methods import fit_help, fittable
from computealloc.samples import SampleLog, SampleLogError
from computealloc.table import OutcomeTable, atomic_write
from computealloc.units import Pricing

if TYPE_CHECKING:
    from computealloc.checkpoints import CheckpointLog

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


RepeatsOpt = Annotated[
    str,
    typer.Option(
        help="Named sources only: 'drop' repeated generations (mot_cascade's Llama-2 runs) or "
        "'keep' the rows as published."
    ),
]


def _open_log(log: str, repeats: str = "drop") -> SampleLog:
    """Read a log file, or load a named public source.

    A checkpoint log (a ``think_tokens`` column) becomes its thinking arms ``cap@T`` and
    ``full`` (:func:`computealloc.checkpoints.thinking_log`), an ordinary multi-arm log.
    """
    loaded = _open_any(log, repeats)
    if isinstance(loaded, SampleLog):
        return loaded
    from computealloc.checkpoints import thinking_log

    return thinking_log(loaded)


def _open_any(log: str, repeats: str = "drop") -> SampleLog | CheckpointLog:
    """Read a sample log or a checkpoint log file, or load a named public source."""
    try:
        if Path(log).exists():
            from computealloc.checkpoints import read_log

            with console.status(f"Reading {log} ..."):
                return read_log(log)
        with console.status(f"Loading {log} ..."):
            return datasets.load(log, repeats=cast(Literal["drop", "keep"], repeats))
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
def inspect(log: LogArg, repeats: RepeatsOpt = "drop") -> None:
    """Per model: queries, samples per query, single-sample and majority accuracy, agreement.

    On a checkpoint log (a think_tokens column): accuracy and tokens by checkpoint (cap@T).

    Example: computealloc inspect mot_cascade:llama-2-13b/gsm/pot2 --repeats keep
    """
    from computealloc.summary import summarize

    loaded = _open_any(log, repeats)
    if isinstance(loaded, SampleLog):
        _print_frame(summarize(loaded), f"{loaded.source}")
        return
    from computealloc.checkpoints import checkpoint_summary

    _print_frame(checkpoint_summary(loaded), f"{loaded.source}: accuracy and tokens by checkpoint")


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


def _client(name: str) -> Literal["aiohttp", "openai"]:
    """The --client value, checked."""
    if name not in ("aiohttp", "openai"):
        console.print(f"[red]error:[/red] --client must be aiohttp or openai. Got {name!r}.")
        raise typer.Exit(2)
    return cast(Literal["aiohttp", "openai"], name)


CostOpt = Annotated[
    str,
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
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc


@app.command("estimate")
def estimate_cmd(
    log: LogArg,
    out: Annotated[Path, typer.Option("-o", "--out", help="Output OutcomeTable (.parquet).")],
    actions: Annotated[
        str | None,
        typer.Option(help="Comma-separated action specs; default majority@1,2,4,... up to n."),
    ] = None,
    cost: CostOpt = "samples",
    price: PriceOpt = [],  # noqa: B006
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

    pricing = _pricing(cost, price)
    sample_log = _open_log(log)
    try:
        acts = parse_actions(actions) if actions else None
        with console.status("Estimating ..."):
            table = estimate(
                sample_log,
                acts,
                pricing,
                on_short=cast(Literal["raise", "drop"], on_short),
            )
    except ValueError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    table.save(out)
    means = pd.DataFrame(
        {"action": table.actions, "mean_accuracy": table.P.mean(0), "mean_cost": table.C.mean(0)}
    )
    _print_frame(means, f"{table.n_queries} queries -> {out}")


@app.command("collect")
def collect_cmd(
    queries: Annotated[
        Path, typer.Argument(help="Queries file (JSONL or CSV: query_id, prompt, gold).")
    ],
    out: Annotated[
        Path, typer.Option("-o", "--out", help="Sample log to write (JSONL); resumed if present.")
    ],
    n: Annotated[int, typer.Option("-n", help="Samples per query.")] = 16,
    base_url: Annotated[
        str | None, typer.Option(help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1.")
    ] = None,
    model: Annotated[str | None, typer.Option(help="Model name served at --base-url.")] = None,
    replay: Annotated[
        str | None, typer.Option(help="Replay a logged SampleLog instead of a server.")
    ] = None,
    api_key: Annotated[str | None, typer.Option(envvar="OPENAI_API_KEY", help="API key.")] = None,
    concurrency: Annotated[int, typer.Option(help="Queries in flight.")] = 8,
    temperature: Annotated[float, typer.Option(help="Sampling temperature.")] = 0.7,
    max_tokens: Annotated[int | None, typer.Option(help="Max output tokens per sample.")] = None,
    seed: Annotated[int | None, typer.Option(help="Sampling seed passed to the server.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds per request.")] = 60.0,
    max_attempts: Annotated[int, typer.Option(help="Attempts per request (429/5xx/timeouts).")] = 6,
    use_n: Annotated[
        str, typer.Option(help="Use the `n` parameter: auto, true or false.")
    ] = "auto",
    client: Annotated[str, typer.Option(help=_CLIENT_HELP)] = "aiohttp",
    max_failures: Annotated[
        int, typer.Option(help="Queries allowed to fail (rerun retries them).")
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
            help="A TOML/YAML file whose `arms` (url, model, api_key_env, params) to sample, "
            "as for `serve --config`."
        ),
    ] = None,
) -> None:
    """Sample n responses per query from an endpoint (or from each arm) into a crash-safe,
    resumable log.

    Example: computealloc collect queries.jsonl --base-url http://localhost:8000/v1
    --model Qwen/Qwen2.5-7B-Instruct -n 16 -o samples.jsonl
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )

    from computealloc.collect import CollectError, CollectProgress, run_collect

    modes = {"auto": "auto", "true": True, "false": False}
    if use_n not in modes:
        console.print(f"[red]error:[/red] --use-n must be auto, true or false. Got {use_n!r}.")
        raise typer.Exit(2)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        _RateColumn(),
        TimeRemainingColumn(),
    )
    if backend or config is not None:
        _collect_arms(
            queries,
            out,
            backend,
            config,
            n,
            columns,
            **{
                "api_key": api_key,
                "concurrency": concurrency,
                "temperature": temperature,
                "max_tokens": max_tokens,
                "seed": seed,
                "timeout": timeout,
                "max_attempts": max_attempts,
                "use_n": modes[use_n],
                "client": _client(client),
                "max_failures": max_failures,
            },
        )
        return
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("collecting", total=None)
        started: list[bool] = []

        def on_progress(p: CollectProgress) -> None:
            if not started:  # resumed queries must not inflate the rate
                bar.reset(task, total=p.total, completed=p.completed)
                started.append(True)
            bar.update(
                task, completed=p.completed, description=f"{p.samples} samples, {p.failed} failed"
            )

        try:
            result = run_collect(
                queries,
                out,
                n=n,
                base_url=base_url,
                model=model,
                replay=_open_log(replay) if replay else None,
                api_key=api_key,
                concurrency=concurrency,
                temperature=temperature,
                max_tokens=max_tokens,
                seed=seed,
                timeout=timeout,
                max_attempts=max_attempts,
                use_n=cast("bool | Literal['auto']", modes[use_n]),
                client=_client(client),
                max_failures=max_failures,
                progress=on_progress,
            )
        except (SampleLogError, ValueError) as exc:
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from exc
        except CollectError as exc:
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(1) from exc
    console.print(
        f"{result.n_collected} queries collected, {result.n_resumed} resumed -> {result.path}; "
        f"accuracy {_fmt(result.accuracy)}, output tokens {result.output_tokens}, "
        f"{result.elapsed_s:.1f} s"
    )
    if result.failed:
        console.print(
            f"[red]{len(result.failed)} queries failed[/red]: {', '.join(list(result.failed)[:10])}"
        )
        raise typer.Exit(1)


def _collect_arms(
    queries: Path,
    out: Path,
    backend: list[str],
    config: Path | None,
    n: int,
    columns: tuple[ProgressColumn, ...],
    **options: Any,
) -> None:
    """``computealloc collect`` from arms (--backend NAME=URL, --config)."""
    from rich.progress import Progress

    from computealloc.arms import parse_arm
    from computealloc.collect import CollectError, CollectProgress, run_collect_arms
    from computealloc.serve_config import load_arms

    try:
        arms = [parse_arm(b) for b in backend] + ([] if config is None else load_arms(config))
    except ValueError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    with Progress(*columns, console=console) as bar:
        tasks: dict[str, TaskID] = {}

        def on_progress(arm: str, p: CollectProgress) -> None:
            if arm not in tasks:  # resumed queries must not inflate the rate
                tasks[arm] = bar.add_task(arm, total=p.total, completed=p.completed)
            text = f"{arm}: {p.samples} samples, {p.failed} failed"
            bar.update(tasks[arm], completed=p.completed, description=text)

        try:
            results = run_collect_arms(queries, out, arms, n=n, progress=on_progress, **options)
        except (SampleLogError, ValueError) as exc:
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from exc
        except CollectError as exc:
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(1) from exc
    failed = 0
    for arm, result in results.items():
        console.print(
            f"{escape(arm)}: {result.n_collected} queries collected, {result.n_resumed} "
            f"resumed; accuracy {_fmt(result.accuracy)}, output tokens {result.output_tokens}, "
            f"{result.elapsed_s:.1f} s"
        )
        failed += len(result.failed)
    console.print(f"-> {out}")
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
        if not sep or not group.strip():
            raise typer.BadParameter(f"expected GROUP=SHARE[,GROUP=SHARE...]. Got {item!r}.")
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
    utility: Annotated[str, typer.Option(help="margin or reward.")] = "margin",
    batch_size: Annotated[int, typer.Option(help="Prompts per in-batch program.")] = 64,
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
    steps: Annotated[int, typer.Option(help="Optimizer steps (with --train).")] = 20,
    learning_rate: Annotated[
        float, typer.Option(help="AdamW learning rate (with --train).")
    ] = 5e-5,
    train_batch: Annotated[int, typer.Option(help="Records per step (with --train).")] = 4,
    check: Annotated[
        Path | None,
        typer.Option(help="Held-out prompt/completion JSONL: its loss before and after training."),
    ] = None,
) -> None:
    """IBPO target selection: a weighted SFT dataset (prompt/completion) under share caps;
    with --train, also fine-tune a model on it (weighted loss, CPU) and save it.

    Example: computealloc ibpo samples.jsonl --group-col mode --max-share long=0.5
    --batch-size 64 -o sft.jsonl

    Example: computealloc ibpo samples.jsonl --group-col mode --max-share long=0.5
    --train gemma-3-270m-q4_k_m.gguf --steps 20 -o run/
    """
    from rich.progress import Progress

    from computealloc.ibpo import export_sft

    sample_log = _open_log(log)
    shares = _parse_shares(max_share)
    data_path = out / "sft.jsonl" if train is not None else out
    with Progress(console=console) as bar:
        task = bar.add_task("selecting", total=None)
        try:
            summary = export_sft(
                sample_log,
                group_col=group_col,
                out_path=data_path,
                max_share=shares,
                budget=budget,
                cost_col=cost_col,
                utility=cast(Literal["margin", "reward"], utility),
                batch_size=batch_size,
                seed=seed,
                keep_rejected=keep_rejected,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
        except (KeyError, ValueError, OSError) as exc:
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from exc
    _print_frame(summary.to_frame(), f"{summary.n_selected} targets of {summary.n_prompts} prompts")
    console.print(
        f"selected reward {_fmt(summary.selected_reward)}; written {summary.n_written} -> "
        f"{data_path}"
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
        with console.status(f"training {model} for {steps} steps ..."):
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
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    atomic_write(out / "train.json", lambda fh: fh.write(json.dumps(result.to_json(), indent=1)))
    console.print(
        f"trained {result.steps} steps on {result.n_records} records ({result.n_dropped} of "
        f"weight 0 dropped) in {result.seconds:.0f} s; loss {_fmt(result.losses[0])} -> "
        f"{_fmt(result.losses[-1])}; saved -> {out / 'model'}"
    )
    if result.check_before is not None:
        console.print(
            f"check loss {_fmt(result.check_before)} -> {_fmt(result.check_after)} (nats/token)"
        )


@app.command("solve")
def solve_cmd(
    table_path: Annotated[Path, typer.Argument(help="OutcomeTable written by `estimate`.")],
    budget: Annotated[
        float,
        typer.Option("--budget", "-b", help="Mean cost per query.", callback=_budget_flag),
    ],
    method: Annotated[str, typer.Option(help="exact, bisection or highs.")] = "exact",
    certify: Annotated[
        bool, typer.Option(help="Also solve the integer program (MILP) and report the gap.")
    ] = False,
    out: Annotated[
        Path | None, typer.Option("-o", "--out", help="Write per-query actions (CSV).")
    ] = None,
) -> None:
    """The oracle allocation at a budget: actions per query, dual price, accuracy, mean cost.

    Example: computealloc solve table.parquet --budget 4 -o actions.csv
    """
    from computealloc.oracle import certify as certify_fn
    from computealloc.oracle import solve

    try:
        table = OutcomeTable.load(table_path)
        alloc = solve(table, budget, cast(Literal["exact", "bisection", "highs"], method))
        cert = certify_fn(table, budget) if certify else None
    except (ValueError, OSError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    counts = pd.DataFrame(
        {"action": list(alloc.counts()), "queries": list(alloc.counts().values())}
    )
    _print_frame(counts, f"{table.n_queries} queries, budget {budget:g} {table.cost_unit}")
    console.print(
        f"status {alloc.status}; lam {alloc.lam:.6g}; accuracy {alloc.accuracy:.4f}; "
        f"mean cost {alloc.cost:.4f}"
        + (f"; fractional query {table.query_ids[alloc.mix[0]]}" if alloc.mix else "")
    )
    if cert is not None:
        console.print(
            f"integer optimum {cert.accuracy:.6f} (cost {cert.cost:.4f}); LP bound "
            f"{cert.lp_bound:.6f}; gap {cert.gap:.2e}"
        )
    if out is not None:
        frame = alloc.to_frame()
        atomic_write(out, lambda fh: frame.to_csv(fh, index=False))
        console.print(f"per-query actions -> {out}")


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
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from exc


@app.command("fit")
def fit_cmd(
    log: LogArg,
    budget: Annotated[
        float, typer.Option(help="Mean cost per query to calibrate to.", callback=_budget_flag)
    ],
    out: Annotated[Path, typer.Option("-o", "--out", help="Policy file to write (JSON).")],
    method: Annotated[
        str,
        typer.Option(help=fit_help()),
    ] = "value",
    actions: Annotated[
        str | None,
        typer.Option(help="Comma-separated action specs; default majority@1,2,4,... up to n."),
    ] = None,
    cost: CostOpt = "samples",
    price: PriceOpt = [],  # noqa: B006
    probe_m: Annotated[int, typer.Option(help="Probe samples per query (reused in the vote).")] = 0,
    seed: Annotated[int, typer.Option(help="Seed of the split, probes and models.")] = 0,
    repeats: RepeatsOpt = "drop",
) -> None:
    """Fit a policy on train queries, calibrate it to the budget, save it (JSON, no pickle).

    Example: computealloc fit mot_cascade:llama-2-13b/gsm/pot2 --method value --budget 2
    -o policy.json
    """
    from computealloc.fit import fit_policy
    from computealloc.persist import save_policy

    pricing = _pricing(cost, price)
    sample_log = _open_log(log, repeats)
    if method in fittable("fit_stopping"):
        if actions is not None or cost != "samples" or price or probe_m:
            console.print(
                f"[red]error:[/red] --method {method} is a sequential stopping rule: it spends "
                "samples one at a time, so --actions, --cost, --price and --probe-m do not apply."
            )
            raise typer.Exit(2)
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
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    save_policy(result.policy, out)
    console.print(
        f"{method} policy -> {out} (train {result.n_train}, calibration {result.n_calibration} "
        f"queries; lam {result.policy.lam_:.4g})\n"
        f"held-out test queries ({result.n_test}): accuracy {result.test_accuracy:.4f} at mean "
        f"cost {result.test_cost:.3f}; uniform at the budget {result.uniform_accuracy:.4f}"
    )


def _fit_stopping(sample_log: SampleLog, budget: float, method: str, out: Path, seed: int) -> None:
    """``computealloc fit`` for a sequential stopping rule."""
    from computealloc.persist import save_stopping
    from computealloc.sequential import fit_stopping

    try:
        with console.status("Fitting ..."):
            result = fit_stopping(sample_log, budget=budget, method=method, seed=seed)
    except ValueError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    save_stopping(result.rule, out)
    console.print(
        f"{result.method} stopping rule -> {out} (train {result.n_train}, calibration "
        f"{result.n_calibration} queries; {result.rule.describe()})\n"
        f"test queries ({result.n_test}): accuracy {result.test_accuracy:.4f} at "
        f"{result.test_samples:.3f} samples per query; majority@{budget:g} "
        f"{result.uniform_accuracy:.4f}"
    )


@app.command("evaluate")
def evaluate_cmd(
    log: LogArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for results and report.")],
    budgets: Annotated[str, typer.Option(help="Comma-separated budgets.")] = "1,2,4,8",
    seeds: Annotated[int, typer.Option(help="Seeds (query splits).")] = 3,
    protocol: Annotated[
        str, typer.Option(help="in-sample, held-out or both (held-out needs >= 2 samples).")
    ] = "both",
    actions: Annotated[
        str | None, typer.Option(help="Comma-separated action specs; default majority@1,2,4,...")
    ] = None,
    methods: Annotated[
        str | None, typer.Option(help="Comma-separated methods; default all.")
    ] = None,
    probe_m: Annotated[int, typer.Option(help="Probe samples for the +probe policies.")] = 2,
    cost: CostOpt = "samples",
    price: PriceOpt = [],  # noqa: B006
    sequential: Annotated[
        bool, typer.Option(help="Include the sequential stopping methods (AC, ESC, ...).")
    ] = True,
    repeats: RepeatsOpt = "drop",
) -> None:
    """Evaluate every method against uniform and the oracle on held-out queries and samples.

    Prints a verdict per budget; writes DIR/results.csv, summary.csv, comparison.csv,
    report.md, report.html and PNG plots.

    Example: computealloc evaluate mot_cascade:llama-2-13b/gsm/pot2 --budgets 1,2,4
    --seeds 3 --out runs/gsm
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from computealloc.comparison import primary_protocol, verdict_lines
    from computealloc.evaluation import METHODS, PROTOCOLS, SEQUENTIAL, footprint
    from computealloc.evaluation import evaluate as run_evaluation
    from computealloc.report import write_report

    pricing = _pricing(cost, price)
    sample_log = _open_log(log, repeats)
    try:
        budget_list = [check_budget(float(b), "--budgets") for b in budgets.split(",")]
    except ValueError as exc:
        console.print(
            f"[red]error:[/red] --budgets must be comma-separated numbers in (0, inf). "
            f"Got {escape(repr(budgets))}."
        )
        raise typer.Exit(2) from exc
    protocols = PROTOCOLS if protocol == "both" else (protocol,)
    method_list = (
        methods.split(",")
        if methods
        else (None if sequential else [m for m in METHODS if m not in SEQUENTIAL])
    )
    try:
        plan = footprint(
            sample_log, budgets=budget_list, seeds=seeds, protocols=protocols, methods=method_list
        )
    except ValueError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    if plan.seconds > 60 or plan.peak_bytes > 1e9:
        smaller = ["--seeds 1", "fewer --budgets", "--protocol held-out"]
        if plan.sequential_seconds > plan.seconds / 2:
            smaller.insert(0, "--no-sequential (the stopping rules take most of it)")
        console.print(
            "[yellow]warning:[/yellow] this evaluation will take "
            f"{_size(plan.seconds, plan.peak_bytes)} ({plan.steps} steps). Smaller: "
            f"{', '.join(smaller)}.",
            highlight=False,
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
        f"evaluate {sample_log.source} ({len(protocols)} protocols x {plan.steps // len(protocols)}"
        " seed-budgets)"
    )
    with Progress(*columns, console=console) as bar:
        task = bar.add_task(label, total=plan.steps, estimate=plan.seconds)
        try:
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
            )
        except ValueError as exc:
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from exc
    paths = write_report(result, out)
    protocol_shown = primary_protocol(result)
    console.print(f"[bold]{sample_log.source}[/bold]: verdict ({protocol_shown} protocol)")
    for line in verdict_lines(result):
        console.print(f"  {line}", highlight=False)
    console.print(f"full report -> {paths.get('report.html', out)}")
