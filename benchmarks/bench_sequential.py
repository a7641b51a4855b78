"""Sequential stopping on real logs: the peers (Adaptive-Consistency, ESC) against computealloc.

Held-out-samples protocol (DESIGN, "Evaluation protocol"): per seed, queries are split
60/20/20 into train / calibration / test and each query's samples into halves A and B; the
learned policies are fitted on half A of the training queries, every knob is calibrated on
half A of the calibration queries, and the figures replay half B of the test queries (so at
most ``n / 2`` samples per query). Every figure is a mean over seeds; ``vs AC`` is the paired
accuracy difference to budget-calibrated Adaptive-Consistency (Beta rule) on the same test
queries, with its standard error over seeds.

Two tables per source: accuracy and realised mean samples at the budgets of the issue, and the
mean samples each method needs to reach the accuracy of uniform majority voting at the largest
``K`` (the pool half), read off its accuracy-vs-samples curve over a grid of budgets (linear
interpolation of the running maximum), with the factor of samples saved.

Run: ``PYTHONPATH=src python -m benchmarks.bench_sequential [--seeds 10] [--write]``
(``--write`` replaces this benchmark's section of ``benchmarks/results.md``).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from benchmarks._results import write_section
from computealloc.data import datasets
from computealloc.fitting.sequential import sequential_methods

SOURCES: dict[str, tuple[list[float], list[float]]] = {
    # source: (budgets of the main table, extra budgets of the curve grid)
    "mot_cascade:llama-2-13b/gsm/pot2": ([1.5, 2, 3, 4], [1, 1.25, 1.75, 2.5, 3.5, 4.5, 5]),
    "mot_cascade:llama-2-13b/date/cot1": ([1.5, 2, 3, 4], [1, 1.25, 1.75, 2.5, 3.5, 4.5, 5]),
    "mot_cascade:gpt-3.5-turbo/date/cot1-40": (
        [2, 4, 8],
        [1, 1.5, 2.5, 3, 5, 6, 7, 10, 12, 16, 20],
    ),
}
SHOWN = [
    "uniform-majority",
    "adaptive-consistency",
    "esc",
    "dirichlet",
    "entropy",
    "majority-share",
    "sequential/pooled",
    "sequential/prior",
    "sequential",
]


def sweep(name: str, budgets: list[float], seeds: int) -> tuple[pd.DataFrame, float]:
    """All sequential methods on every seed; the mean seconds per ``sequential_methods`` call."""
    log = datasets.load(name)
    frames, start = [], time.perf_counter()
    for seed in range(seeds):
        frames.append(sequential_methods(log, budgets, seed=seed))
    return pd.concat(frames, ignore_index=True), (time.perf_counter() - start) / seeds


def main_table(frame: pd.DataFrame, budgets: list[float]) -> str:
    """Accuracy, realised samples and the paired difference to Adaptive-Consistency."""
    part = frame[frame["budget"].isin(budgets) & frame["method"].isin(SHOWN)]
    ac = part[part["method"] == "adaptive-consistency"].set_index(["seed", "budget"])["accuracy"]
    diff = (
        part["accuracy"].to_numpy()
        - ac.reindex(pd.MultiIndex.from_frame(part[["seed", "budget"]])).to_numpy()
    )
    part = part.assign(vs_ac=diff)
    lines = [
        "| B | method | accuracy | mean samples | vs AC (± s.e.) |",
        "|---|---|---:|---:|---:|",
    ]
    for (budget, method), g in part.groupby(["budget", "method"], sort=False):
        se = g["vs_ac"].std(ddof=1) / np.sqrt(len(g)) if len(g) > 1 else np.nan
        lines.append(
            f"| {budget:g} | {method} | {g['accuracy'].mean():.4f} | "
            f"{g['mean_cost'].mean():.2f} | {g['vs_ac'].mean():+.4f} ± {se:.4f} |"
        )
    fixed = frame[frame["budget"].isna()].groupby("method", sort=False)[["accuracy", "mean_cost"]]
    for method, row in fixed.mean().iterrows():
        lines.append(
            f"| – | {method} (published) | {row['accuracy']:.4f} | {row['mean_cost']:.2f} | |"
        )
    return "\n".join(lines)


def cost_to_reach(cost: np.ndarray, accuracy: np.ndarray, target: float) -> float:
    """First cost at which the running maximum of the curve reaches ``target`` (NaN: never)."""
    order = np.argsort(cost, kind="stable")
    c, a = cost[order], np.maximum.accumulate(accuracy[order])
    hit = np.flatnonzero(a >= target - 1e-12)
    if hit.size == 0:
        return float("nan")
    j = int(hit[0])
    if j == 0:
        return float(c[0])
    frac = (target - a[j - 1]) / (a[j] - a[j - 1])
    return float(c[j - 1] + frac * (c[j] - c[j - 1]))


def factor_table(frame: pd.DataFrame, cap: int) -> str:
    """Samples each method needs to reach uniform majority@cap, and the factor saved."""
    curves = frame[frame["budget"].notna()].groupby(["method", "budget"])[["accuracy", "mean_cost"]]
    mean = curves.mean().reset_index()
    uni = mean[mean["method"] == "uniform-majority"]
    target = float(uni.loc[uni["budget"] == uni["budget"].max(), "accuracy"].iloc[0])
    lines = [
        f"Target: uniform majority@{cap} accuracy {target:.4f} ({cap} samples).",
        "",
        "| method | samples to reach it | factor fewer |",
        "|---|---:|---:|",
    ]
    for method in SHOWN[1:]:
        m = mean[mean["method"] == method]
        need = cost_to_reach(m["mean_cost"].to_numpy(), m["accuracy"].to_numpy(), target)
        shown = "not reached" if np.isnan(need) else f"{need:.2f}"
        lines.append(f"| {method} | {shown} | {cap / need:.2f}x |")
    fixed = frame[frame["budget"].isna()].groupby("method")[["accuracy", "mean_cost"]].mean()
    for method, row in fixed.iterrows():
        lines.append(
            f"| {method} (published; {row['accuracy']:.4f} at) | {row['mean_cost']:.2f} | "
            f"{cap / row['mean_cost']:.2f}x |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--write", action="store_true", help="update benchmarks/results.md")
    args = parser.parse_args()
    parts = [
        f"Held-out samples, {args.seeds} seeds, 64 replayed orders per query; mean over seeds. "
        "`sequential` = computealloc's Lagrangian stopping policy (pooled or with a feature "
        "prior, chosen on the calibration queries)."
    ]
    for name, (budgets, extra) in SOURCES.items():
        grid = sorted(set(budgets) | set(extra))
        frame, seconds = sweep(name, grid, args.seeds)
        cap = int(frame.loc[frame["method"] == "uniform-majority", "mean_cost"].max())
        parts.append(
            f"### {name}\n\n{frame['n_test'].iloc[0]} test queries per seed, at most {cap} "
            f"samples per query; {seconds:.1f} s per seed for {len(grid)} budgets.\n\n"
            f"{main_table(frame, budgets)}\n\n{factor_table(frame, cap)}"
        )
        print(parts[-1], "\n", flush=True)
    if args.write:
        write_section("bench_sequential", "\n\n".join(parts))


if __name__ == "__main__":
    main()
