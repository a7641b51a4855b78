"""Time and memory of exact majority@K: 10,000 queries x 64 samples, every K from 1 to 64.

Issue target: at most 1 s. Pools are synthetic with a realistic cluster structure: 1-10 answer
clusters per query with Dirichlet(0.7) shares, 5% of samples without an answer, and a correct
cluster in 80% of the queries. Two figures: the array kernel alone (:func:`majority_accuracy`)
and :func:`estimate` end to end from a 640,000-row SampleLog (clustering included).

Run: ``PYTHONPATH=src python -m benchmarks.bench_estimate`` (writes its section of
``benchmarks/results.md``).
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable

import numpy as np
import pandas as pd

from benchmarks._results import write_section
from computealloc.data.samples import SampleLog
from computealloc.estimation.estimate import estimate, majority_accuracy

N_QUERIES, N_SAMPLES, MAX_CLUSTERS, TARGET_S = 10_000, 64, 10, 1.0


def synthetic_labels(rng: np.random.Generator) -> np.ndarray:
    """Cluster label per sample, shape (N_QUERIES, N_SAMPLES): -1 abstains, 0 is correct."""
    n_clusters = rng.integers(1, MAX_CLUSTERS + 1, size=N_QUERIES)
    share = rng.gamma(0.7, size=(N_QUERIES, MAX_CLUSTERS))
    share[np.arange(MAX_CLUSTERS) >= n_clusters[:, None]] = 0.0
    share = 0.95 * share / share.sum(axis=1, keepdims=True)
    cdf = np.cumsum(np.column_stack([share, np.full(N_QUERIES, 0.05)]), axis=1)
    draws = rng.random((N_QUERIES, N_SAMPLES))
    labels = (draws[:, :, None] > cdf[:, None, :-1]).sum(axis=2)
    labels[labels == MAX_CLUSTERS] = -1
    no_gold = rng.random(N_QUERIES) >= 0.8
    return np.where(no_gold[:, None] & (labels == 0), MAX_CLUSTERS, labels)


def kernel_inputs(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(gold, wrong-cluster sizes, abstain) counts per query."""
    counts = (labels[:, :, None] == np.arange(-1, MAX_CLUSTERS + 1)).sum(axis=1)
    return counts[:, 1], counts[:, 2:], counts[:, 0]


def sample_log(labels: np.ndarray) -> SampleLog:
    """The same pools as a SampleLog (answer ``"a<label>"``, correct iff label 0)."""
    qids = np.char.add("q", np.char.zfill(np.arange(N_QUERIES).astype(str), 5))
    flat = labels.ravel()
    answer = pd.Series(np.char.add("a", flat.astype(str)), dtype="str").where(flat >= 0)
    samples = pd.DataFrame(
        {
            "query_id": pd.Series(np.repeat(qids, N_SAMPLES), dtype="str"),
            "sample_idx": np.tile(np.arange(N_SAMPLES, dtype=np.int64), N_QUERIES),
            "model": pd.Series("synthetic", index=range(flat.size), dtype="str"),
            "answer": answer,
            "correct": pd.array(flat == 0, dtype="boolean"),
            "tokens": np.full(flat.size, np.nan),
            "score": np.full(flat.size, np.nan),
        }
    )
    no_text = pd.Series(pd.NA, index=range(N_QUERIES), dtype="str")
    queries = pd.DataFrame({"query_id": pd.Series(qids, dtype="str"), "prompt": no_text})
    queries["gold"] = no_text
    return SampleLog(samples=samples, queries=queries, source="synthetic")


def measure(run: Callable[[], object], repeats: int = 3) -> tuple[float, float]:
    """Best wall time of ``repeats`` runs (s) and peak traced memory of one run (MiB)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    tracemalloc.start()
    run()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return min(times), peak / 2**20


def main() -> None:
    rng = np.random.default_rng(0)
    labels = synthetic_labels(rng)
    gold, others, abstain = kernel_inputs(labels)
    ks = np.arange(1, N_SAMPLES + 1)
    log = sample_log(labels)
    specs = [f"majority@{k}" for k in ks]
    kernel_s, kernel_mib = measure(lambda: majority_accuracy(gold, others, abstain, ks))
    table = estimate(log, specs)
    full_s, full_mib = measure(lambda: estimate(log, specs))
    mean = table.P.mean(axis=0)
    clusters = (others > 0).sum(axis=1) + (gold > 0)
    body = f"""
Exact majority@K for K = 1..{N_SAMPLES} on {N_QUERIES:,} queries x {N_SAMPLES} samples
(synthetic: {clusters.min()}-{clusters.max()} answer clusters per query, mean
{clusters.mean():.1f}; 5% abstaining samples; 80% of queries have a correct cluster).
Target: at most {TARGET_S:.0f} s. Best of 3 runs; peak memory by tracemalloc.

| step | time (s) | peak memory (MiB) |
|---|---:|---:|
| `majority_accuracy` kernel, all 64 K | {kernel_s:.3f} | {kernel_mib:.1f} |
| `estimate` from a {len(log.samples):,}-row SampleLog, 64 actions | {full_s:.3f} | {full_mib:.1f} |

Mean accuracy: majority@1 {mean[0]:.4f}, @4 {mean[3]:.4f}, @16 {mean[15]:.4f},
@64 {mean[63]:.4f}. Target {"met" if max(kernel_s, full_s) <= TARGET_S else "MISSED"}.
"""
    write_section("bench_estimate", body)
    print(body)


if __name__ == "__main__":
    main()
