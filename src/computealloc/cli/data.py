"""The data commands of ``computealloc``: ``datasets list``, ``inspect`` and ``collect``."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import pandas as pd
import typer
from rich.progress import ProgressColumn, Task, TaskID
from rich.text import Text

from computealloc.cli.common import (
    CLIENT_HELP,
    LogArg,
    MapOpt,
    RepeatsOpt,
    console,
    fail,
    fmt,
    open_any,
    open_log,
    plain,
    print_frame,
    progress,
)
from computealloc.data import datasets
from computealloc.data.samples import SampleLog, SampleLogError

if TYPE_CHECKING:
    from computealloc.data.collect import CheckpointProbes


datasets_app = typer.Typer(help="Named public sources of sample logs.", no_args_is_help=True)


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
    print_frame(pd.DataFrame(rows), f"Sources under {datasets.data_root()}")


def inspect(log: LogArg, repeats: RepeatsOpt = "drop", map_: MapOpt = []) -> None:  # noqa: B006
    """Per model: queries, samples per query, single-sample and majority accuracy, agreement.

    On a checkpoint log (a think_tokens column): accuracy and tokens by checkpoint (cap@T).

    Example: computealloc inspect mot_cascade:llama-2-13b/gsm/pot2 --repeats keep
    """
    from computealloc.estimation.summary import summarize

    loaded = open_any(log, repeats, map_)
    if isinstance(loaded, SampleLog):
        print_frame(summarize(loaded), f"{loaded.source}")
        return
    from computealloc.data.checkpoints import checkpoint_summary

    title = f"{loaded.source}: accuracy and tokens by checkpoint"
    print_frame(checkpoint_summary(loaded), title)


class _RateColumn(ProgressColumn):
    """Queries per second, one decimal."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        shown = "-" if speed is None else f"{speed:.1f}"
        return Text(f"{shown} q/s", style="progress.data.speed")


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
    client: Annotated[Literal["aiohttp", "openai"], typer.Option(help=CLIENT_HELP)] = "aiohttp",
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
    from computealloc.data.collect import CollectError, LogLockedError

    arms = bool(backend) or config is not None
    sources = [
        flag
        for flag, given in (("--base-url", base_url), ("--replay", replay), ("--backend", arms))
        if given
    ]
    if len(sources) != 1:
        raise fail(
            "give exactly one source of samples: --base-url URL with --model NAME, "
            "--backend NAME=URL (repeatable) or --config FILE, or --replay LOG. Got "
            f"{' and '.join(sources) if sources else 'none'}."
        )
    if base_url is not None and model is None:
        raise fail("--base-url needs --model (the model name the server serves).")
    if map_ and replay is None:
        raise fail("--map renames columns of the --replay log; give --replay.")
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
            replayed = open_log(replay, mapping=map_) if replay else None
            _collect_one(queries, out, n, base_url, model, replayed, options)
    except (SampleLogError, ValueError) as exc:
        raise fail(exc) from exc
    except (CollectError, LogLockedError) as exc:
        raise fail(exc, 1) from exc


def _checkpoint_probes(
    checkpoints: str | None,
    continuation: str,
    answer_tokens: int,
    max_tokens: int | None,
    replay: str | None,
) -> CheckpointProbes | None:
    """--checkpoints and its companions as the library's CheckpointProbes (None without it)."""
    from computealloc.data.collect import CheckpointProbes

    if checkpoints is None:
        return None
    if replay is not None:
        raise fail("--checkpoints probes a live server; it does not apply to --replay.")
    if max_tokens is None:
        raise fail("--checkpoints needs --max-tokens: the longest trace to record.")
    try:
        points = tuple(int(t) for t in checkpoints.split(","))
    except ValueError:
        raise fail(
            f"--checkpoints expects comma-separated token counts, e.g. 256,512,1024. "
            f"Got {checkpoints!r}."
        ) from None
    if not points or any(b <= a for a, b in itertools.pairwise(points)) or points[0] < 0:
        raise fail(
            "--checkpoints must be strictly increasing counts >= 0 (0: the answer without "
            f"thinking). Got {checkpoints!r}."
        )
    if points[-1] >= max_tokens:
        raise fail(
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
    from computealloc.data.collect import CollectProgress, run_collect

    with progress(*_collect_columns()) as bar:
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
        f"{plain(result.path)}; accuracy {fmt(result.accuracy)}, output tokens "
        f"{result.output_tokens}, {result.elapsed_s:.1f} s",
        highlight=False,
    )
    if result.failed:
        console.print(
            f"[red]{len(result.failed)} queries failed[/red]: "
            f"{plain(', '.join(list(result.failed)[:10]))}"
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
    from computealloc.data.arms import parse_arm
    from computealloc.data.collect import CollectProgress, run_collect_arms
    from computealloc.serving.serve_config import load_arms

    arms = [parse_arm(b) for b in backend] + ([] if config is None else load_arms(config))
    with progress(*_collect_columns()) as bar:
        tasks: dict[str, TaskID] = {}

        def on_progress(arm: str, p: CollectProgress) -> None:
            if arm not in tasks:  # resumed queries must not inflate the rate
                tasks[arm] = bar.add_task(arm, total=p.total, completed=p.completed)
            text = f"{plain(arm)}: {p.samples} samples, {p.failed} failed"
            bar.update(tasks[arm], completed=p.completed, description=text)

        results = run_collect_arms(queries, out, arms, n=n, progress=on_progress, **options)
    failed = 0
    for arm, result in results.items():
        console.print(
            f"{plain(arm)}: {result.n_collected} queries collected, {result.n_resumed} "
            f"resumed; accuracy {fmt(result.accuracy)}, output tokens {result.output_tokens}, "
            f"{result.elapsed_s:.1f} s",
            highlight=False,
        )
        failed += len(result.failed)
    console.print(f"-> {plain(out)}", highlight=False)
    if failed:
        console.print(f"[red]{failed} queries failed[/red] (a rerun retries them)")
        raise typer.Exit(1)
