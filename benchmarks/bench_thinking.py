"""How long to think: issue 16's bar on a checkpoint log (the synthetic one unless given).

Held-out protocol, 3 seeds (DESIGN, "Evaluation protocol"): queries split 60/20/20 into
train / calibration / test, each query's traces into halves A (fitting, calibration) and B
(reported numbers). Two kinds of methods, on the same splits:

- early exit along the thought (:func:`computealloc.evaluation.thinking.evaluate_thinking`): the
  uniform cap (budget forcing), ``stable@W``, ``conf@TAU`` and the learned exit rule, each
  calibrated to the budget on the calibration queries;
- per-query policies over the thinking actions ``cap@T/majority@K`` and ``full/majority@K``
  (:func:`computealloc.evaluation.evaluate` on :func:`computealloc.data.checkpoints.thinking_log`,
  ``cost="tokens"``): what ``computealloc evaluate LOG --cost tokens --protocol held-out``
  reports (``policy/...``); and the value policy over the same arms with confidence-aware
  votes too, ``weighted@K``, ``top_half@K``, ``best_of@K`` (``policy+conf/...``).

Budgets are shares of full thinking's mean tokens (one trace, no cap) on the whole log. The
verdict (:func:`computealloc.evaluation.thinking.thinking_verdict`, on means over seeds) says, per
method, the mean tokens at which it reaches full thinking's accuracy (the bar: at most 35% of
full's) and at how many budgets it beats the uniform cap at equal realised mean tokens (the
bar: three).

Run: ``PYTHONPATH=src python -m benchmarks.bench_thinking [LOG] [--seeds 3] [--out DIR]``
(``--synthetic-seed N`` draws another synthetic log; ``--queries N`` its size; ``--exits-only``
skips the policies; ``--shares`` sets the budgets; ``--prompt-signal R`` and
``--doubling-grid`` vary the synthetic prompts and checkpoints).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from computealloc.data.checkpoint_synthetic import GRID, SyntheticParams, synthetic
from computealloc.data.checkpoints import checkpoint_summary, read_checkpoints, thinking_log
from computealloc.evaluation.thinking import evaluate_thinking, thinking_verdict

SHARES = (0.1, 0.15, 0.2, 0.25, 0.35, 0.5, 0.75)
#: The doubling grid of ``--doubling-grid`` (the synthetic log's grid until this session).
DOUBLING = (0, 256, 512, 1024, 2048, 4096, 8192, 16384)
POLICIES = ("uniform", "value", "imitation", "value/batch", "oracle")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("log", nargs="?", help="a checkpoint log; default the synthetic one")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--queries", type=int, default=2000, help="synthetic queries")
    parser.add_argument("--samples", type=int, default=8, help="synthetic traces per query")
    parser.add_argument("--synthetic-seed", type=int, default=0, help="seed of the synthetic log")
    parser.add_argument("--out", type=Path, default=None, help="folder for the CSV files")
    parser.add_argument(
        "--shares",
        type=lambda v: tuple(float(x) for x in v.split(",")),
        default=SHARES,
        help="budgets as shares of full thinking's mean tokens, comma-separated",
    )
    parser.add_argument(
        "--exits-only", action="store_true", help="only the early-exit rules (no policies)"
    )
    parser.add_argument(
        "--prompt-signal",
        type=float,
        default=SyntheticParams().prompt_signal,
        help="synthetic prompts' correlation with difficulty",
    )
    parser.add_argument(
        "--doubling-grid",
        action="store_true",
        help="synthetic checkpoints at 0, 256, 512, 1024, ... instead of every 256 tokens",
    )
    args = parser.parse_args()
    from computealloc.evaluation import evaluate

    grid = DOUBLING if args.doubling_grid else GRID
    params = SyntheticParams(prompt_signal=args.prompt_signal)
    log = (
        read_checkpoints(args.log)
        if args.log
        else synthetic(args.queries, args.samples, args.synthetic_seed, grid=grid, params=params)
    )
    summary = checkpoint_summary(log)
    full_tokens = float(summary.loc[summary["action"] == "full", "mean_tokens"].iloc[0])
    budgets = [round(s * full_tokens, 1) for s in args.shares]
    print(f"{log!r}\nfull thinking: {full_tokens:.0f} mean tokens; budgets {budgets}")

    start = time.perf_counter()
    exits = evaluate_thinking(log, budgets, seeds=args.seeds, protocol="held-out")
    if args.exits_only:
        _report(exits, time.perf_counter() - start, args.out)
        return
    policies = evaluate(
        thinking_log(log),
        budgets=budgets,
        seeds=args.seeds,
        protocols=("held-out",),
        methods=POLICIES,
        cost="tokens",
    ).results
    policies = policies[policies["method"] != "uniform"].assign(
        method=lambda f: "policy/" + f["method"]
    )
    arms = thinking_log(log)
    kinds = ["majority@1", "majority@2", "majority@4", "weighted@2", "weighted@4"]
    kinds += ["top_half@4", "best_of@2", "best_of@4"]
    confident = evaluate(
        arms,
        actions=[f"{arm}/{kind}" for arm in arms.models for kind in kinds],
        budgets=budgets,
        seeds=args.seeds,
        protocols=("held-out",),
        methods=("value", "value/batch"),
        cost="tokens",
    ).results.assign(method=lambda f: "policy+conf/" + f["method"])
    parts = [exits, *(p[exits.columns.intersection(p.columns)] for p in (policies, confident))]
    _report(pd.concat(parts), time.perf_counter() - start, args.out)


def _report(both: pd.DataFrame, seconds: float, out: Path | None) -> None:
    """Print the tables and the verdict of ``both`` (and write them under ``out``)."""
    print(f"({seconds:.1f} s)\n")
    table = both.groupby(["method", "budget"], dropna=False)[["accuracy", "mean_cost"]].mean()
    with pd.option_context("display.width", 200, "display.max_rows", 200):
        for column, digits in (("accuracy", 3), ("mean_cost", 0)):
            print(f"{column} (rows: method, columns: budget in mean tokens; NaN budget = full)")
            print(table[column].unstack("budget").round(digits).to_string(), "\n")
        verdict = thinking_verdict(both)
        print(
            f"\nfull thinking: accuracy {verdict.attrs['full_accuracy']:.4f} at "
            f"{verdict.attrs['full_tokens']:.0f} tokens (test halves, mean over seeds)"
        )
        print(verdict.round(4).to_string(index=False))
    met = verdict[verdict["reaches_full"] & (verdict["wins_vs_cap"] >= 3)]
    print(
        "\nbar met by: " + (", ".join(met["method"]) if len(met) else "no method")
        + " (reaches full accuracy with <= 35% of its tokens and beats the uniform cap at "
        ">= 3 budgets)"
    )  # fmt: skip
    if out:
        out.mkdir(parents=True, exist_ok=True)
        both.to_csv(out / "results.csv", index=False)
        verdict.to_csv(out / "verdict.csv", index=False)


if __name__ == "__main__":
    main()
