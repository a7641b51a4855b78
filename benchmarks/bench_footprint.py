"""How close ``evaluation.footprint`` (the warning ``computealloc evaluate`` prints) comes.

Each case runs :func:`computealloc.evaluation.evaluate` in a fresh process (so the peak memory
is its own) and compares its wall time and peak resident memory with the up-front estimate.
Cases: a Game-of-24-like verifier log (100 queries x ``n`` samples, 1-7 distinct correct
answers per query, many wrong ones; seeded, built here) and ``mot_cascade:llama-2-13b/gsm/pot2``
when the shared data is present.

Run: ``PYTHONPATH=src python -m benchmarks.bench_footprint`` (writes its section of
``benchmarks/results.md``).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import resource
import time
from typing import Any

import numpy as np
import pandas as pd

from benchmarks._results import write_section
from computealloc.data.samples import SampleLog, read_samples
from computealloc.evaluation import evaluate, footprint

BUDGETS, SEEDS = (1, 2, 4, 8), 3


def verifier_log(n_queries: int, n_samples: int, seed: int = 0) -> SampleLog:
    """Queries with several distinct correct answers (expressions) and many wrong ones."""
    rng = np.random.default_rng(seed)
    rows = []
    for q in range(n_queries):
        right = [f"r{q}_{j}" for j in range(int(rng.integers(1, 8)))]
        wrong = [f"w{q}_{j}" for j in range(30)]
        p = rng.beta(0.6, 2.5)
        for i in range(n_samples):
            ok = bool(rng.random() < p)
            answer = (
                rng.choice(right) if ok else (None if rng.random() < 0.1 else rng.choice(wrong))
            )
            rows.append((f"q{q:03d}", i, answer, ok, f"make 24 from puzzle {q}"))
    frame = pd.DataFrame(rows, columns=["query_id", "sample_idx", "answer", "correct", "prompt"])
    return read_samples(frame)


def _load(case: str) -> SampleLog:
    if case.startswith("verifier"):
        n_q, n_s = (int(x) for x in case.split(":")[1].split("x"))
        return verifier_log(n_q, n_s)
    from computealloc.data import datasets

    return datasets.load(case)


def _run(case: str, out: Any) -> None:
    log = _load(case)
    plan = footprint(log, budgets=BUDGETS, seeds=SEEDS)
    start = time.perf_counter()
    evaluate(log, budgets=BUDGETS, seeds=SEEDS)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out.put((plan.seconds, plan.peak_bytes, seconds, peak))


def measure(case: str) -> tuple[float, float, float, float]:
    """(estimated s, estimated bytes, measured s, measured peak bytes) in a fresh process."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_run, args=(case, queue))
    proc.start()
    got = queue.get()
    proc.join()
    return got  # type: ignore[no-any-return]


def main() -> None:
    cases = ["verifier:100x50", "verifier:100x100"]
    if os.path.isdir(os.environ.get("COMPUTEALLOC_DATA", "../shared/data")):
        cases.append("mot_cascade:llama-2-13b/gsm/pot2")
    rows = []
    for case in cases:
        est_s, est_b, got_s, got_b = measure(case)
        rows.append(
            f"| {case} | {est_s:.0f} | {got_s:.0f} | {got_s / est_s:.2f} | {est_b / 1e9:.2f} | "
            f"{got_b / 1e9:.2f} | {got_b / est_b:.2f} |"
        )
        print(rows[-1], flush=True)
    body = (
        f"`evaluate` with budgets {BUDGETS}, {SEEDS} seeds, both protocols, every method, each "
        "case in a fresh process; estimate = `footprint(...)` before the run.\n\n"
        "| case | est. s | measured s | ratio | est. GB | peak GB | ratio |\n"
        "|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n\n"
        f"Machine load average {os.getloadavg()[0]:.1f} at the end (other jobs share the 2 "
        "cores, so the measured times vary). `evaluate` warns above 60 s or 1 GB."
    )
    write_section("bench_footprint", body)
    print(body)


if __name__ == "__main__":
    main()
