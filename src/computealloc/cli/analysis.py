"""The allocation commands of ``computealloc``: ``estimate``, ``solve`` and ``evaluate``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import pandas as pd
import typer
from rich.progress import ProgressColumn, Task
from rich.text import Text

from computealloc.checks import check_budget
from computealloc.cli.common import (
    CostOpt,
    LogArg,
    MapOpt,
    MinSamplesOpt,
    PriceOpt,
    RepeatsOpt,
    budget_flag,
    check_out,
    console,
    drop_short,
    fail,
    open_any,
    open_log,
    parse_pricing,
    plain,
    print_frame,
    progress,
    warn,
    writing,
)
from computealloc.data.samples import SampleLog
from computealloc.estimation.table import OutcomeTable
from computealloc.files import atomic_write


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
    from computealloc.estimation.actions import parse_actions
    from computealloc.estimation.estimate import estimate

    check_out(out)
    pricing = parse_pricing(cost, price)
    sample_log = drop_short(open_log(log, mapping=map_, actions=actions), min_samples)
    try:
        acts = parse_actions(actions) if actions else None
        with console.status("Estimating ..."):
            table = estimate(sample_log, acts, pricing, on_short=on_short)
    except ValueError as exc:
        raise fail(exc) from exc
    with writing(out):
        table.save(out)
    means = pd.DataFrame(
        {"action": table.actions, "mean_accuracy": table.P.mean(0), "mean_cost": table.C.mean(0)}
    )
    print_frame(means, f"{table.n_queries} queries -> {out}")


def solve_cmd(
    table_path: Annotated[
        Path,
        typer.Argument(exists=True, dir_okay=False, help="OutcomeTable written by `estimate`."),
    ],
    budget: Annotated[
        float,
        typer.Option("--budget", "-b", help="Mean cost per query.", callback=budget_flag),
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
    from computealloc.estimation.oracle import certify as certify_fn
    from computealloc.estimation.oracle import solve

    check_out(out)
    try:
        table = OutcomeTable.load(table_path)
        alloc = solve(table, budget, method)
        cert = certify_fn(table, budget) if certify else None
    except (ValueError, OSError) as exc:
        raise fail(exc) from exc
    counts = pd.DataFrame(
        {"action": list(alloc.counts()), "queries": list(alloc.counts().values())}
    )
    print_frame(counts, f"{table.n_queries} queries, budget {budget:g} {table.cost_unit}")
    console.print(
        f"status {alloc.status}; lam {alloc.lam:.6g}; accuracy {alloc.accuracy:.4f}; "
        f"mean cost {alloc.cost:.4f}"
        + (f"; fractional query {plain(table.query_ids[alloc.mix[0]])}" if alloc.mix else ""),
        highlight=False,
    )
    if cert is not None:
        console.print(
            f"integer optimum {cert.accuracy:.6f} (cost {cert.cost:.4f}); LP bound "
            f"{cert.lp_bound:.6f}; gap {cert.gap:.2e}"
        )
    if out is not None:
        frame = alloc.to_frame()
        with writing(out):
            atomic_write(out, lambda fh: frame.to_csv(fh, index=False))
        console.print(f"per-query actions -> {plain(out)}", highlight=False)


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

    from computealloc.data.checkpoints import thinking_log
    from computealloc.evaluation import METHODS, PROTOCOLS, SEQUENTIAL, footprint
    from computealloc.evaluation import evaluate as run_evaluation
    from computealloc.evaluation.comparison import primary_protocol, verdict_lines
    from computealloc.evaluation.report import thinking_lines, write_report

    check_out(out / "report.html")
    pricing = parse_pricing(cost, price)
    try:
        budget_list = [check_budget(float(b), "--budgets") for b in budgets.split(",")]
    except ValueError as exc:
        raise fail(
            f"--budgets must be comma-separated numbers in (0, inf). Got {budgets!r}."
        ) from exc
    loaded = open_any(log, repeats, map_)  # a checkpoint log: its thinking arms + exit rules
    checkpoints = None if isinstance(loaded, SampleLog) else loaded
    opened = loaded if isinstance(loaded, SampleLog) else thinking_log(loaded)
    sample_log = drop_short(opened, min_samples)
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
        raise fail(exc) from exc
    if plan.seconds > 60 or plan.peak_bytes > 1e9:
        smaller = ["--seeds 1", "fewer --budgets", "--protocol held-out"]
        if plan.sequential_seconds > plan.seconds / 2:
            smaller.insert(0, "--no-sequential (the stopping rules take most of it)")
        warn(
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
        f"evaluate {plain(sample_log.source)} ({len(protocols)} protocols x "
        f"{plan.steps // len(protocols)} seed-budgets)"
    )
    try:
        with progress(*columns) as bar:
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
        raise fail(exc) from exc
    with writing(out):
        paths = write_report(result, out)
    protocol_shown = primary_protocol(result)
    console.print(
        f"[bold]{plain(sample_log.source)}[/bold]: verdict ({protocol_shown} protocol)",
        highlight=False,
    )
    for line in verdict_lines(result):
        console.print(f"  {plain(line)}", highlight=False)
    for line in thinking_lines(result):
        console.print(f"  {plain(line)}", highlight=False)
    console.print(f"full report -> {plain(paths.get('report.html', out))}", highlight=False)
