"""Benchmark :func:`computealloc.fitting.persist.load_policy`: a fitted value policy loaded with
every
check (bounded read, schema, LightGBM text check, one scored query) against the bare load
(``json.loads`` and one ``lightgbm.Booster`` per action), in one run.

Run from the repository root::

    PYTHONPATH=src python -m benchmarks.bench_policy_load            # 8 actions, 100 trees each
    PYTHONPATH=src python -m benchmarks.bench_policy_load --actions 4 --trees 300

Each time is the minimum over interleaved repeats (the machine may be shared); the parts of
the checked load are timed alone. Writes the ``bench_policy_load`` section of
``benchmarks/results.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

from benchmarks._results import write_section
from computealloc.estimation.table import OutcomeTable
from computealloc.fitting.lgbm_text import check_model_text
from computealloc.fitting.persist import _digest, _score_one, load_policy, save_policy
from computealloc.fitting.persist_schema import check_policy_payload, read_document
from computealloc.fitting.policies import Value


def fitted_policy(n_actions: int, trees: int, *, n: int = 2000, seed: int = 0) -> Value:
    """A calibrated Value policy over majority@1..2**(n_actions-1) on 6 synthetic features."""
    rng = np.random.default_rng(seed)
    ks = 2.0 ** np.arange(n_actions)
    x = rng.random((n, 6))
    p = np.clip(x[:, :1] + 0.8 * (x[:, 1:2] - 0.5) * (1 - 1 / np.sqrt(ks)), 0, 1)
    X = pd.DataFrame(x, columns=[f"f{j}" for j in range(6)])
    table = OutcomeTable(p, np.tile(ks, (n, 1)), [f"majority@{int(k)}" for k in ks])
    policy = Value(n_estimators=trees, max_depth=5, random_state=seed).fit(X, table)
    return policy.calibrate(X.iloc[: n // 2], float(ks[n_actions // 2]))


def bare_load(path: Path) -> list[lgb.Booster]:
    """What loading cost before the checks: parse the JSON, build the boosters."""
    document = json.loads(path.read_text())
    return [lgb.Booster(model_str=s) for s in document["payload"]["state"]["boosters_"]]


def best_time(jobs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Minimum wall time of each job over ``repeats`` interleaved rounds."""
    times: dict[str, list[float]] = {name: [] for name in jobs}
    for _ in range(repeats):
        for name, job in jobs.items():
            start = time.perf_counter()
            job()
            times[name].append(time.perf_counter() - start)
    return {name: min(ts) for name, ts in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actions", type=int, default=8)
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    policy = fitted_policy(args.actions, args.trees)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "policy.json"
        save_policy(policy, path)
        size = path.stat().st_size
        payload = read_document(path, "Policy file")["payload"]
        texts = payload["state"]["boosters_"]
        loaded = load_policy(path)
        load_before = os.getloadavg()
        times = best_time(
            {
                "bare": lambda: bare_load(path),
                "checked": lambda: load_policy(path),
                "read": lambda: read_document(path, "Policy file"),
                "digest": lambda: _digest(payload),
                "schema": lambda: check_policy_payload(payload),
                "text": lambda: [check_model_text(t) for t in texts],
                "score": lambda: _score_one(loaded),
            },
            args.repeats,
        )
    n_trees = sum(check_model_text(t).n_trees for t in texts)
    ms = {name: 1e3 * t for name, t in times.items()}
    shown = f"checked / bare = **{times['checked'] / times['bare']:.2f}**"
    flags = f"--actions {args.actions} --trees {args.trees}"
    body = f"""
Value policy: {args.actions} actions, {n_trees} trees in all (max_depth 5), 6 features;
file {size / 2**20:.2f} MiB. Times are the minimum of {args.repeats} interleaved repeats, all in
this one run; load average before the run {load_before[0]:.2f} (1 min) on a shared machine,
so the parts, each timed alone, need not add up to the whole.

| measurement | time (ms) | ratio |
|---|---:|---|
| bare: `json.loads` + `lightgbm.Booster(model_str=...)` per action | {ms["bare"]:.1f} | |
| `load_policy` (every check, then one scored query) | {ms["checked"]:.1f} | {shown} |
| - bounded read (size cap, depth scan, `json.loads`) | {ms["read"]:.1f} | |
| - checksum of the payload (SHA-256 of its canonical JSON) | {ms["digest"]:.1f} | |
| - schema and cross-checks, LightGBM texts included | {ms["schema"]:.1f} | |
| - of which `check_model_text` of the {args.actions} texts | {ms["text"]:.1f} | |
| - one query scored and decided (`_score_one`) | {ms["score"]:.1f} | |

Reproduce: `PYTHONPATH=src python -m benchmarks.bench_policy_load {flags}`.
"""
    print(body)
    if not args.no_write:
        write_section("bench_policy_load", body)


if __name__ == "__main__":
    main()
