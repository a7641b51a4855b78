"""The fitting commands of ``computealloc``: ``fit`` (a policy) and ``ibpo`` (SFT targets)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

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
    fmt,
    open_log,
    parse_pricing,
    plain,
    print_frame,
    progress,
    writing,
)
from computealloc.data.samples import SampleLog
from computealloc.files import atomic_write
from computealloc.methods import fit_help, fittable

if TYPE_CHECKING:
    FitMethod = str
else:  # the choices typer lists and completes, from the one registry of methods
    FitMethod = Literal[(*fittable("fit_policy"), *fittable("fit_stopping"))]


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
            raise fail(
                "--max-share expects GROUP=SHARE[,GROUP=SHARE...] with each SHARE in [0, 1]. "
                f"Got {item!r}."
            )
    return out


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
    from computealloc.training.ibpo import export_sft

    if max_share is None and (budget is None or cost_col is None):
        raise fail("give --max-share GROUP=SHARE, or --budget with --cost-col.")
    check_out(out)
    if train is None and out.is_dir():
        raise fail(f"-o/--out {str(out)!r} is a directory; without --train it names a file.")
    if train is not None and out.exists() and not out.is_dir():
        raise fail(f"-o/--out {str(out)!r} is a file; with --train it names a directory.")
    sample_log = open_log(log, mapping=map_)
    shares = _parse_shares(max_share)
    data_path = out / "sft.jsonl" if train is not None else out
    try:
        with progress() as bar:
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
        raise fail(exc) from exc
    print_frame(summary.to_frame(), f"{summary.n_selected} targets of {summary.n_prompts} prompts")
    console.print(
        f"selected reward {fmt(summary.selected_reward)}; written {summary.n_written} -> "
        f"{plain(data_path)}"
        + (f"; mean cost {fmt(summary.mean_cost)}" if summary.mean_cost is not None else "")
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
    from computealloc.training.ibpo_train import train_sft

    try:
        with console.status(f"training {plain(model)} for {steps} steps ..."):
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
        raise fail(exc) from exc
    with writing(out):
        atomic_write(
            out / "train.json", lambda fh: fh.write(json.dumps(result.to_json(), indent=1))
        )
    console.print(
        f"trained {result.steps} steps on {result.n_records} records ({result.n_dropped} of "
        f"weight 0 dropped) in {result.seconds:.0f} s; loss {fmt(result.losses[0])} -> "
        f"{fmt(result.losses[-1])}; saved -> {plain(out / 'model')}"
    )
    if result.check_before is not None:
        console.print(
            f"check loss {fmt(result.check_before)} -> {fmt(result.check_after)} (nats/token)"
        )


def fit_cmd(
    log: LogArg,
    budget: Annotated[
        float, typer.Option(help="Mean cost per query to calibrate to.", callback=budget_flag)
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
    from computealloc.fitting.fit import fit_policy
    from computealloc.fitting.persist import save_policy

    check_out(out)
    pricing = parse_pricing(cost, price)
    if method in fittable("fit_stopping") and (
        actions is not None or cost != "samples" or price or probe_m
    ):
        raise fail(
            f"--method {method} is a sequential stopping rule: it spends samples one at a "
            "time, so --actions, --cost, --price and --probe-m do not apply."
        )
    sample_log = drop_short(open_log(log, repeats, map_, actions), min_samples)
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
        raise fail(exc) from exc
    with writing(out):
        save_policy(result.policy, out)
    lam = getattr(result.policy, "lam_", None)  # uniform has no price: it mixes two actions
    setting = f"lam {lam:.4g}" if lam is not None else plain(result.policy.describe_rule())
    console.print(
        f"{method} policy -> {plain(out)} (train {result.n_train}, calibration "
        f"{result.n_calibration} queries; {setting})\n"
        f"held-out test queries ({result.n_test}): accuracy {result.test_accuracy:.4f} at mean "
        f"cost {result.test_cost:.3f}; uniform at the budget {result.uniform_accuracy:.4f}",
        highlight=False,
    )


def _fit_stopping(sample_log: SampleLog, budget: float, method: str, out: Path, seed: int) -> None:
    """``computealloc fit`` for a sequential stopping rule."""
    from computealloc.fitting.persist import save_stopping
    from computealloc.fitting.sequential import fit_stopping

    try:
        with console.status("Fitting ..."):
            result = fit_stopping(sample_log, budget=budget, method=method, seed=seed)
    except ValueError as exc:
        raise fail(exc) from exc
    with writing(out):
        save_stopping(result.rule, out)
    console.print(
        f"{result.method} stopping rule -> {plain(out)} (train {result.n_train}, calibration "
        f"{result.n_calibration} queries; {plain(result.rule.describe())})\n"
        f"test queries ({result.n_test}): accuracy {result.test_accuracy:.4f} at "
        f"{result.test_samples:.3f} samples per query; majority@{budget:g} "
        f"{result.uniform_accuracy:.4f}",
        highlight=False,
    )
