"""Benchmark :func:`computealloc.estimation.oracle.solve`: the exact solver against one
``np.argsort`` and
one ``np.partition`` of the N*K increments, bisection, and HiGHS, all measured in one run.

Run from the repository root::

    PYTHONPATH=src python -m benchmarks.bench_solve            # N = 1e6 queries, K = 8
    PYTHONPATH=src python -m benchmarks.bench_solve --n 100000 --highs-limit 10

Each time is the minimum over interleaved repeats (the machine may be shared). Peak memory is
measured in separate calls with ``tracemalloc`` (NumPy and Python allocations); HiGHS allocates
outside it, so for HiGHS the growth of the resident set during the call is shown too (Linux).
Writes the ``bench_solve`` section of ``benchmarks/results.md``.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks._results import write_section
from computealloc.estimation.oracle import solve
from computealloc.estimation.table import OutcomeTable

MB = 2**20


def make_table(n: int, k: int, *, seed: int = 0, shuffle: bool = False) -> OutcomeTable:
    """Majority-vote-like curves: cost ``2**j`` samples times per-query token jitter, accuracy
    a noisy saturating function of ``log2(cost)`` (so hulls drop dominated and non-concave
    points). ``shuffle`` permutes each query's actions (the solver must sort them)."""
    rng = np.random.default_rng(seed)
    ks = 2.0 ** np.arange(k)
    C = np.sort(ks * rng.uniform(0.5, 1.5, (n, 1)) * rng.uniform(0.9, 1.1, (n, k)), axis=1)
    logit = np.log2(ks) * rng.uniform(0.2, 1.0, (n, 1)) - 3.0 * rng.normal(0.0, 1.5, (n, 1))
    P = np.clip(1.0 / (1.0 + np.exp(-logit)) + rng.normal(0.0, 0.03, (n, k)), 0.0, 1.0)
    if shuffle:
        perm = rng.permuted(np.tile(np.arange(k), (n, 1)), axis=1)
        P, C = np.take_along_axis(P, perm, axis=1), np.take_along_axis(C, perm, axis=1)
    return OutcomeTable(P, C, cost_unit="tokens")


def increments(table: OutcomeTable) -> np.ndarray:
    """The N*K slopes ``dp / dc`` between consecutive actions (the first from the origin)."""
    dp = np.diff(table.P, axis=1, prepend=0.0)
    dc = np.diff(table.C, axis=1, prepend=0.0)
    return (dp / dc).ravel()


def best_time(jobs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Minimum wall time of each job over ``repeats`` interleaved rounds."""
    times: dict[str, list[float]] = {name: [] for name in jobs}
    for _ in range(repeats):
        for name, job in jobs.items():
            start = time.perf_counter()
            job()
            times[name].append(time.perf_counter() - start)
    return {name: min(ts) for name, ts in times.items()}


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def peaks(job: Callable[[], object]) -> tuple[float, float | None]:
    """Peak ``tracemalloc`` bytes while ``job`` runs, and the peak growth of the resident set
    (Linux; ``None`` elsewhere) -- the latter sees HiGHS's own allocations."""
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark
        before: int | None = _status_kb("VmRSS")
    except (OSError, KeyError):
        before = None
    tracemalloc.start()
    job()
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    grown = None if before is None else (_status_kb("VmHWM") - before) * 1024.0
    return float(traced), grown


def highs_scaling(k: int, limit: float) -> list[tuple[int, float, float, float]]:
    """HiGHS and exact times at growing N until HiGHS would pass ``limit`` seconds.

    Returns ``(n, highs_s, exact_s, relative accuracy difference)`` per N run.
    """
    rows: list[tuple[int, float, float, float]] = []
    for n in (1_000, 3_000, 10_000, 30_000, 100_000, 200_000, 400_000, 1_000_000):
        if rows and rows[-1][1] * (n / rows[-1][0]) ** 1.6 > limit:
            break
        table = make_table(n, k, seed=1)
        budget = float(np.median(table.C[:, k // 2]))
        start = time.perf_counter()
        lp = solve(table, budget, "highs")
        highs_s = time.perf_counter() - start
        exact_s = best_time({"exact": lambda t=table, b=budget: solve(t, b)}, 5)["exact"]
        diff = abs(lp.accuracy - solve(table, budget).accuracy) / lp.accuracy
        rows.append((n, highs_s, exact_s, diff))
        if highs_s > limit:
            break
    return rows


def speed(n: int, k: int, repeats: int) -> dict[str, float]:
    """Exact (cost-ordered and shuffled actions), argsort, partition and bisection at N."""
    table, shuffled = make_table(n, k), make_table(n, k, shuffle=True)
    budget = float(np.median(table.C[:, k // 2]))
    slopes = increments(table)
    times = best_time(
        {
            "exact": lambda: solve(table, budget),
            "shuffled": lambda: solve(shuffled, budget),
            "argsort": lambda: np.argsort(slopes),
            "partition": lambda: np.partition(slopes, slopes.size // 2),
        },
        repeats,
    )
    times |= best_time({"bisection": lambda: solve(table, budget, "bisection")}, 2)
    exact, bisection = solve(table, budget), solve(table, budget, "bisection")
    times |= {
        "budget": budget,
        "lam": exact.lam,
        "agree": abs(exact.accuracy - bisection.accuracy) / exact.accuracy,
        "increments": float(slopes.size),
        "input_mb": 2 * table.P.nbytes / MB,
    }
    return times


def memory(n: int, n_highs: int, k: int) -> tuple[dict[str, float], float | None]:
    """``tracemalloc`` peaks of each call, and HiGHS's resident-set growth."""
    table, small = make_table(n, k), make_table(n_highs, k, seed=1)
    budget = float(np.median(table.C[:, k // 2]))
    small_budget = float(np.median(small.C[:, k // 2]))
    slopes = increments(table)
    calls: dict[str, Callable[[], object]] = {
        f'`solve(method="exact")`, N = {n:,}': lambda: solve(table, budget),
        f'`solve(method="bisection")`, N = {n:,}': lambda: solve(table, budget, "bisection"),
        f"`np.argsort` of {slopes.size:,} floats": lambda: np.argsort(slopes),
        f'`solve(method="exact")`, N = {n_highs:,}': lambda: solve(small, small_budget),
        f'`solve(method="highs")`, N = {n_highs:,}': lambda: solve(small, small_budget, "highs"),
    }
    measured = {name: peaks(call) for name, call in calls.items()}
    highs_rss = measured[f'`solve(method="highs")`, N = {n_highs:,}'][1]
    return {name: traced for name, (traced, _) in measured.items()}, highs_rss


def render(
    n: int,
    k: int,
    repeats: int,
    highs_limit: float,
    t: dict[str, float],
    scaling: list[tuple[int, float, float, float]],
    peaks: dict[str, float],
    highs_rss: float | None,
) -> str:
    """The Markdown body of the results section."""
    n_highs, highs_s, exact_small_s, highs_diff = _largest_handled(scaling, highs_limit)
    m = int(t["increments"])
    return "\n".join(
        [
            f"N = {n:,} queries x K = {k} actions (costs ~ 2^j tokens with per-query jitter, "
            f"noisy saturating accuracy curves), budget B = {t['budget']:.3f} (binding; "
            f"lam = {t['lam']:.4g}). Times are the minimum of {repeats} interleaved repeats "
            "(bisection: 2), all in this one run.",
            "",
            "| measurement | time (ms) | ratio |",
            "|---|---:|---|",
            f'| `solve(method="exact")`, actions in cost order | {t["exact"] * 1e3:.0f} | |',
            f'| `solve(method="exact")`, actions shuffled per query | '
            f"{t['shuffled'] * 1e3:.0f} | {t['shuffled'] / t['exact']:.2f} x exact |",
            f"| one `np.argsort` of the {m:,} increments | {t['argsort'] * 1e3:.0f} | "
            f"exact / argsort = **{t['exact'] / t['argsort']:.2f}** (shuffled: "
            f"{t['shuffled'] / t['argsort']:.2f}) |",
            f"| one `np.partition` of the {m:,} increments | {t['partition'] * 1e3:.0f} | "
            f"exact / partition = **{t['exact'] / t['partition']:.1f}** (argsort / partition "
            f"= {t['argsort'] / t['partition']:.0f}) |",
            f'| `solve(method="bisection")`, tol = 1e-12 | {t["bisection"] * 1e3:.0f} | '
            f"bisection / exact = **{t['bisection'] / t['exact']:.1f}** |",
            f'| `solve(method="highs")` at N = {n_highs:,} | {highs_s * 1e3:.0f} | '
            f"HiGHS / exact = **{highs_s / exact_small_s:.0f}** (exact: "
            f"{exact_small_s * 1e3:.1f} ms) |",
            "",
            f"Agreement: |exact - bisection| / exact = {t['agree']:.1e} at N = {n:,}; "
            f"|exact - HiGHS| / HiGHS = {highs_diff:.1e} at N = {n_highs:,}.",
            "",
            "HiGHS scaling (interior point + crossover; stops before a run predicted over "
            f"{highs_limit:.0f} s):",
            "",
            "| N | HiGHS (s) | exact (ms) | HiGHS / exact |",
            "|---:|---:|---:|---:|",
            *(f"| {r:,} | {h:.2f} | {e * 1e3:.1f} | {h / e:.0f} |" for r, h, e, _ in scaling),
            "",
            "Peak memory during the call (`tracemalloc`; the input P and C hold "
            f"{t['input_mb']:.0f} MiB at N = {n:,}):",
            "",
            "| call | peak (MiB) |",
            "|---|---:|",
            *(f"| {name} | {peak / MB:.1f} |" for name, peak in peaks.items()),
            "",
            "HiGHS allocates mostly outside `tracemalloc`: its resident set grew by "
            + ("n/a" if highs_rss is None else f"{highs_rss / MB:.0f} MiB")
            + f" during the call at N = {n_highs:,} (a lower bound: the allocator may reuse "
            "memory that earlier calls freed).",
        ]
    )


def _largest_handled(
    scaling: list[tuple[int, float, float, float]], limit: float
) -> tuple[int, float, float, float]:
    handled = [row for row in scaling if row[1] <= limit]
    return handled[-1] if handled else scaling[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="number of queries")
    parser.add_argument("--k", type=int, default=8, help="number of actions")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved timing repeats")
    parser.add_argument(
        "--highs-limit", type=float, default=60.0, help="seconds HiGHS may take at its largest N"
    )
    args = parser.parse_args()
    times = speed(args.n, args.k, args.repeats)
    scaling = highs_scaling(args.k, args.highs_limit)
    n_highs = _largest_handled(scaling, args.highs_limit)[0]
    peaks, highs_rss = memory(args.n, n_highs, args.k)
    body = render(args.n, args.k, args.repeats, args.highs_limit, times, scaling, peaks, highs_rss)
    write_section("bench_solve", body)
    print(body)


if __name__ == "__main__":
    main()
