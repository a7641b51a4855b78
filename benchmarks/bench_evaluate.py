"""Wall time of one full evaluation: 4 budgets x 3 seeds x 2 protocols on a real source.

Issue target: under one minute for ``mot_cascade:llama-2-13b/gsm/pot2`` (400 queries x 10
distinct samples) with every method of ``computealloc.evaluation.METHODS`` (probe and
sequential methods included), budgets 1, 2, 4, 8. The LightGBM models are tiny (240 training
queries), so each runs on one thread (the policies' ``n_jobs=1`` default).

Run: ``PYTHONPATH=src python -m benchmarks.bench_evaluate`` (needs the shared data; writes its
section of ``benchmarks/results.md``).
"""

from __future__ import annotations

import os
import time

from benchmarks._results import write_section
from computealloc.data import datasets
from computealloc.evaluation import evaluate

SOURCE, TARGET_S = "mot_cascade:llama-2-13b/gsm/pot2", 60.0
BUDGETS, SEEDS = (1, 2, 4, 8), 3


def main() -> None:
    start = time.perf_counter()
    log = datasets.load(SOURCE)
    loaded = time.perf_counter()
    result = evaluate(log, budgets=BUDGETS, seeds=SEEDS)
    times = {"load": loaded - start, "evaluate": time.perf_counter() - loaded}
    rows = len(result.results)
    load = os.getloadavg()[0]
    verdict = "meets" if times["evaluate"] < TARGET_S else "misses"
    body = (
        f"`evaluate` on `{SOURCE}`, budgets {BUDGETS}, {SEEDS} seeds, both protocols, all "
        f"methods ({rows} result rows).\n\n"
        "| stage | seconds |\n|---|---|\n"
        f"| load the source | {times['load']:.2f} |\n"
        f"| evaluate (everything) | {times['evaluate']:.2f} |\n\n"
        f"Target < {TARGET_S:.0f} s: {verdict} it. LightGBM on one thread per "
        f"model; machine load average "
        f"{load:.1f} during the run (other jobs share the cores, so the time varies)."
    )
    write_section("bench_evaluate", body)
    print(body)


if __name__ == "__main__":
    main()
