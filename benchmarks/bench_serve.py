"""The proxy under load: robustness and budget with a faulty backend, overhead over direct calls.

Three processes on loopback: a fake OpenAI-compatible backend (``tests/fake_openai_server``),
the proxy (:mod:`computealloc.server`) and this load generator (64 concurrent clients).

1. Faults. 5,000 requests through the proxy running a 4-action Value policy at budget B = 3
   samples; the backend fails 10% of its requests (HTTP 500, timeouts, malformed JSON), which
   the proxy retries. Checked: the proxy never crashes (every request answered, the process
   alive); its ledger equals the sum of the calls it made (samples in ``/metrics`` = samples
   reported to clients = completions the backend delivered); the realised mean cost is within
   1% of B.
2. Overhead. A one-action policy (majority@1) behind the proxy, and the same healthy backend
   called directly, 5,000 requests each at 64 concurrent clients, interleaved in rounds; also
   one client at a time, which shows the per-request overhead without queueing. Targets:
   added p50 <= 1 ms, p99 <= 5 ms, proxied throughput >= 90% of direct.

Run: ``PYTHONPATH=src python -m benchmarks.bench_serve`` (writes its section of
``benchmarks/results.md``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

from benchmarks._results import write_section
from computealloc.estimate import estimate
from computealloc.features import build_features
from computealloc.persist import save_policy
from computealloc.policies import Uniform, Value
from computealloc.samples import SampleLog

ROOT = Path(__file__).resolve().parents[1]
N_REQUESTS, CONCURRENCY, FAULT_RATE, BUDGET = 5_000, 64, 0.10, 3.0
ACTIONS = "majority@1,majority@2,majority@4,majority@8"
ROUNDS, SEQUENTIAL = 4, 300


# --- data and policies ---------------------------------------------------------------------------


def synthetic_log(n_queries: int = 400, n_samples: int = 16, seed: int = 0) -> SampleLog:
    """Queries whose difficulty shows in their prompt length (so the policy has work to do)."""
    rng = np.random.default_rng(seed)
    difficulty = rng.random(n_queries)
    rows = []
    for i, d in enumerate(difficulty):
        prompt = f"Question {i}: " + " ".join(["step"] * int(4 + 40 * d)) + " How many?"
        right = rng.random(n_samples) < 0.95 - 0.55 * d
        wrong = i + 1 + rng.integers(0, 1 + int(4 * d), n_samples)
        answers = np.where(right, i, wrong).astype(str)
        rows += [
            {
                "query_id": f"q{i:04d}",
                "sample_idx": j,
                "prompt": prompt,
                "gold": str(i),
                "answer": a,
            }
            for j, a in enumerate(answers)
        ]
    return SampleLog.from_frame(pd.DataFrame(rows))


def write_policies(folder: Path, log: SampleLog) -> tuple[Path, Path]:
    """A calibrated 4-action Value policy and a one-action (majority@1) policy."""
    table = estimate(log, ACTIONS)
    X = build_features(log).X.loc[list(table.query_ids)]
    value = Value(n_estimators=50, random_state=0).fit(X, table).calibrate(X, BUDGET)
    single = estimate(log, "majority@1")
    uniform = (
        Uniform().fit(np.zeros((single.n_queries, 1)), single).calibrate(np.zeros((1, 1)), 1.0)
    )
    paths = folder / "value.json", folder / "single.json"
    save_policy(value, paths[0])
    save_policy(uniform, paths[1])
    return paths


# --- child processes -----------------------------------------------------------------------------


def run_backend(port: int, fault_rate: float) -> None:
    """The fake backend, with a ``/stats`` route for its request and fault counts."""
    import uvicorn

    sys.path.insert(0, str(ROOT / "tests"))
    from fake_openai_server import make_app, scripted

    app = make_app(
        scripted, fault_rate=fault_rate, faults=("500", "timeout", "malformed"), delay_s=3.0
    )

    @app.get("/stats")
    async def stats() -> dict[str, object]:
        return {"requests": len(app.state.requests), "faults": dict(app.state.faults)}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def run_proxy(port: int, backend_url: str, policy: str, budget: float) -> None:
    """The proxy with one request per sample (exact token counts, exact ledger check)."""
    import uvicorn

    from computealloc.backends import OpenAIBackend, RetryPolicy
    from computealloc.persist import load_policy
    from computealloc.runtime import Runtime
    from computealloc.server import create_app

    retry = RetryPolicy(max_attempts=10, initial_delay=0.01, max_delay=0.2)
    backend = OpenAIBackend(
        backend_url, "bench", timeout=2.0, use_n=False, retry=retry, max_concurrency=256
    )
    runtime = Runtime(load_policy(policy), backend, budget=budget)
    app = create_app(runtime, request_timeout=60.0)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def child(role: str, *args: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Start this script in ``role`` on a free port; yield its base URL once it answers."""
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "benchmarks.bench_serve", "--role", role, "--port", str(port)]
    process = subprocess.Popen([*command, *args], env=env, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    probe = "/health" if role == "proxy" else "/stats"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(base + probe).raise_for_status()
                break
            except httpx.HTTPError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the {role} did not start") from None
                time.sleep(0.1)
        yield base, process
    finally:
        process.terminate()
        process.wait(timeout=10)


# --- load ----------------------------------------------------------------------------------------


async def load(
    url: str, prompts: list[str], n_requests: int, concurrency: int
) -> tuple[list[float], list[dict[str, object]], Counter[int], float]:
    """Send ``n_requests`` chat requests from ``concurrency`` clients.

    Returns the latencies (s), the ``computealloc`` extensions of the answers, the status
    counts and the wall time (s).
    """
    latencies: list[float] = []
    extensions: list[dict[str, object]] = []
    statuses: Counter[int] = Counter()
    queue = iter(range(n_requests))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async with httpx.AsyncClient(timeout=120.0, limits=limits) as client:

        async def worker() -> None:
            for i in queue:
                body = {
                    "model": "bench",
                    "messages": [{"role": "user", "content": prompts[i % len(prompts)]}],
                }
                start = time.perf_counter()
                try:
                    response = await client.post(f"{url}/v1/chat/completions", json=body)
                except httpx.TransportError:  # counted as status 0: a dropped connection
                    statuses[0] += 1
                    continue
                latencies.append(time.perf_counter() - start)
                statuses[response.status_code] += 1
                if response.status_code == 200:
                    extensions.append(response.json().get("computealloc", {}))

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return latencies, extensions, statuses, wall


def _metrics(base: str) -> dict[str, float]:
    text = httpx.get(f"{base}/metrics").text
    out = {}
    for line in text.splitlines():
        if line.startswith("computealloc_") and "{" not in line:
            name, value = line.split()
            out[name] = float(value)
    return out


# --- the two experiments -------------------------------------------------------------------------


def faults_experiment(prompts: list[str], policy: Path) -> dict[str, object]:
    with child("backend", "--fault-rate", str(FAULT_RATE)) as (backend, _):
        with child("proxy", "--backend-url", f"{backend}/v1", "--policy", str(policy)) as (
            proxy,
            process,
        ):
            latencies, extensions, statuses, wall = asyncio.run(
                load(proxy, prompts, N_REQUESTS, CONCURRENCY)
            )
            alive = process.poll() is None and httpx.get(f"{proxy}/health").status_code == 200
            metrics = _metrics(proxy)
        stats = httpx.get(f"{backend}/stats").json()
    delivered = stats["requests"] - sum(stats["faults"].values())
    reported = sum(int(e["samples"]) for e in extensions)
    return {
        "statuses": dict(statuses),
        "alive": alive,
        "faults": stats["faults"],
        "backend_requests": stats["requests"],
        "delivered": delivered,
        "ledger_samples": metrics["computealloc_samples_total"],
        "reported_samples": reported,
        "ledger_cost": metrics["computealloc_cost_total"],
        "reported_cost": sum(float(e["cost"]) for e in extensions),
        "mean_cost": metrics["computealloc_mean_cost"],
        "actions": Counter(str(e["action"]) for e in extensions),
        "wall": wall,
        "p50": float(np.percentile(latencies, 50)),
    }


def overhead_experiment(prompts: list[str], policy: Path) -> dict[str, dict[str, float]]:
    timings: dict[str, dict[str, list[float]]] = {
        f"{mode}@{c}": {"lat": [], "wall": [], "n": [], "errors": []}
        for mode in ("direct", "proxy")
        for c in (CONCURRENCY, 1)
    }
    with child("backend", "--fault-rate", "0") as (backend, _):
        proxy_args = ("--backend-url", f"{backend}/v1", "--policy", str(policy), "--budget", "1")
        with child("proxy", *proxy_args) as (proxy, _):
            asyncio.run(load(proxy, prompts, 500, CONCURRENCY))  # warm-up both paths
            asyncio.run(load(backend, prompts, 500, CONCURRENCY))
            for _ in range(ROUNDS):
                for mode, url in (("direct", backend), ("proxy", proxy)):
                    for c, n in ((CONCURRENCY, N_REQUESTS // ROUNDS), (1, SEQUENTIAL // ROUNDS)):
                        lat, _, statuses, wall = asyncio.run(load(url, prompts, n, c))
                        slot = timings[f"{mode}@{c}"]
                        slot["lat"] += lat
                        slot["wall"].append(wall)
                        slot["n"].append(statuses[200])
                        slot["errors"].append(n - statuses[200])
    return {
        key: {
            "p50": float(np.percentile(t["lat"], 50)) * 1e3,
            "p99": float(np.percentile(t["lat"], 99)) * 1e3,
            "rps": sum(t["n"]) / sum(t["wall"]),  # answered requests per second
            "n": float(sum(t["n"])),
            "errors": float(sum(t["errors"])),
        }
        for key, t in timings.items()
    }


# --- report --------------------------------------------------------------------------------------


def report(faults: dict[str, object], overhead: dict[str, dict[str, float]]) -> str:
    statuses = faults["statuses"]
    assert isinstance(statuses, dict)
    ok = statuses.get(200, 0)
    mean = float(faults["mean_cost"])  # type: ignore[arg-type]
    dev = abs(mean / BUDGET - 1)
    ledger_ok = (
        faults["ledger_samples"] == faults["reported_samples"] == faults["delivered"]
        and faults["ledger_cost"] == faults["reported_cost"]
    )
    lines = [
        f"**1. Faults.** {N_REQUESTS} requests, {CONCURRENCY} concurrent clients, the backend "
        f"injecting {FAULT_RATE:.0%} faults (500 / timeout / malformed JSON) into its "
        f"{faults['backend_requests']} requests ({faults['faults']}); policy Value over "
        f"{ACTIONS}, budget B = {BUDGET:g} samples.",
        "",
        "| check | result |",
        "|---|---|",
        f"| proxy alive, answers | {'yes' if faults['alive'] else 'NO'}; statuses {statuses} |",
        f"| ledger = sum of calls | ledger {faults['ledger_samples']:.0f} samples = reported to "
        f"clients {faults['reported_samples']} = delivered by the backend {faults['delivered']}: "
        f"{'yes' if ledger_ok else 'NO'} |",
        f"| realised mean cost | {mean:.4f} vs B = {BUDGET:g} ({dev:.2%}; target <= 1%: "
        f"{'met' if dev <= 0.01 else 'MISSED'}) |",
        f"| actions | {dict(sorted(faults['actions'].items()))} |",  # type: ignore[attr-defined]
        f"| wall time | {faults['wall']:.1f} s ({ok / float(faults['wall']):.0f} answers/s) |",  # type: ignore[arg-type]
        "",
        f"**2. Overhead.** One-action policy (majority@1) behind the proxy vs the same healthy "
        f"backend called directly, interleaved in {ROUNDS} rounds (httpx clients, all three "
        "processes on this machine).",
        "",
        "| clients | path | answered | failed | p50 (ms) | p99 (ms) | throughput (req/s) |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for c in (CONCURRENCY, 1):
        for mode in ("direct", "proxy"):
            t = overhead[f"{mode}@{c}"]
            cells = " | ".join(
                f"{t[key]:.{digits}f}"
                for key, digits in (("n", 0), ("errors", 0), ("p50", 2), ("p99", 2), ("rps", 0))
            )
            lines.append(f"| {c} | {mode} | {cells} |")
    lines.append("")
    for c in (CONCURRENCY, 1):
        d, p = overhead[f"direct@{c}"], overhead[f"proxy@{c}"]
        add50, add99, ratio = p["p50"] - d["p50"], p["p99"] - d["p99"], p["rps"] / d["rps"]
        lines.append(
            f"- {c} client(s): added latency p50 {add50:.2f} ms (target <= 1: "
            f"{'met' if add50 <= 1 else 'missed'}), p99 {add99:.2f} ms (target <= 5: "
            f"{'met' if add99 <= 5 else 'missed'}); throughput {ratio:.0%} of direct "
            f"(target >= 90%: {'met' if ratio >= 0.9 else 'missed'})."
        )
    return "\n".join(lines)


def main() -> None:
    log = synthetic_log()
    prompts = log.queries["prompt"].tolist()
    with tempfile.TemporaryDirectory() as tmp:
        value, single = write_policies(Path(tmp), log)
        faults = faults_experiment(prompts, value)
        print(json.dumps(faults, default=str, indent=1))
        overhead = overhead_experiment(prompts, single)
        print(json.dumps(overhead, indent=1))
    body = report(faults, overhead)
    print(body)
    write_section("bench_serve", body)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=("main", "backend", "proxy"), default="main")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--fault-rate", type=float, default=0.0)
    parser.add_argument("--backend-url", default="")
    parser.add_argument("--policy", default="")
    parser.add_argument("--budget", type=float, default=BUDGET)
    parser.add_argument("--requests", type=int, default=N_REQUESTS, help="per experiment")
    args = parser.parse_args()
    N_REQUESTS = args.requests
    if args.role == "backend":
        run_backend(args.port, args.fault_rate)
    elif args.role == "proxy":
        run_proxy(args.port, args.backend_url, args.policy, args.budget)
    else:
        main()
