"""The proxy under load: robustness and budget with a faulty backend, overhead over direct calls.

Three processes on loopback: a fake OpenAI-compatible backend (``tests/fake_openai_server``),
the proxy (:mod:`computealloc.serving.server` under uvicorn) and this load generator. The load
generator is a minimal keep-alive HTTP/1.1 client, one connection per simulated client, that
costs about 0.05 ms of CPU per request; the direct and the proxied path are driven by the same
code. (An ``httpx`` client costs 1 to 6 ms of CPU per request at 64 connections: on two cores
it would measure itself more than the proxy.)

1. Faults. 5,000 requests through the proxy running a 4-action Value policy at budget B = 3
   samples; the backend fails 10% of its requests (HTTP 500, timeouts, malformed JSON), which
   the proxy retries. Checked: the proxy never crashes (every request answered, the process
   alive); its ledger equals the sum of the calls it made (samples in ``/metrics`` = samples
   reported to clients = completions the backend delivered); the realised mean cost is within
   1% of B.
2. Overhead. A one-action policy (majority@1) behind the proxy, and the same healthy backend
   called directly, side by side in one run: after a warm-up, rounds alternate the two paths,
   5,000 requests per path at 64 concurrent clients and 400 at one client. Once with a backend
   that answers at once (the proxy's whole CPU cost shows) and once per realistic backend
   latency (the backend waits ``LATENCIES_MS`` before answering, as an LLM call would).
   Targets: added p50 <= 1 ms, p99 <= 5 ms, proxied throughput >= 90% of direct. Also
   reported: the CPU time each process spends per request (the three share the machine's
   cores) and the load average before the run.

Two layouts of the processes on the machine's cores (``--layout``):

- ``shared`` (default): the three processes share every core. On a small machine the proxy
  then competes for CPU with the backend and the load generator it is measured against.
- ``pinned``: the load generator and the backend share core 0 and the proxy has core 1 to
  itself, as in a deployment where the model server runs on its own (GPU) machine. The direct
  path's client and backend sit on the same core as the proxied path's, so the comparison
  isolates what the proxy adds when it is not starved of CPU.

Run: ``PYTHONPATH=src python -m benchmarks.bench_serve [--layout pinned]`` (Linux; writes its
section of ``benchmarks/results.md``: ``bench_serve`` or ``bench_serve_pinned``).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import math
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import pandas as pd
import uvicorn

from benchmarks._results import write_section
from computealloc.data.samples import SampleLog
from computealloc.estimation.estimate import estimate
from computealloc.estimation.features import build_features
from computealloc.fitting.persist import save_policy
from computealloc.fitting.policies import Uniform, Value

ROOT = Path(__file__).resolve().parents[1]
N_REQUESTS, CONCURRENCY, FAULT_RATE, BUDGET = 5_000, 64, 0.10, 3.0
ACTIONS = "majority@1,majority@2,majority@4,majority@8"
LATENCIES_MS = (0.0, 20.0, 50.0)
ROUNDS, SEQUENTIAL, WARMUP = 4, 400, 500
CHAT = "/v1/chat/completions"
REQUEST_TIMEOUT_S = 120.0
PATHS = ("direct", "proxy")
#: Core of each role under ``--layout pinned`` (the load generator is ``main``).
PINNED = {"main": 0, "backend": 0, "proxy": 1}
LAYOUT = "shared"


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


def run_backend(port: int, fault_rate: float, latency_s: float) -> None:
    """The fake backend, with a ``/stats`` route for its request and fault counts."""
    sys.path.insert(0, str(ROOT / "tests"))
    from fake_openai_server import make_app, scripted

    app = make_app(
        scripted,
        fault_rate=fault_rate,
        faults=("500", "timeout", "malformed"),
        delay_s=3.0,
        latency_s=latency_s,
    )

    @app.get("/stats")
    async def stats() -> dict[str, object]:
        return {"requests": len(app.state.requests), "faults": dict(app.state.faults)}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def run_proxy(port: int, backend_url: str, policy: str, budget: float) -> None:
    """The proxy with one request per sample (exact token counts, exact ledger check)."""
    from computealloc.data.backends import OpenAIBackend, RetryPolicy
    from computealloc.fitting.persist import load_policy
    from computealloc.serving.runtime import Runtime
    from computealloc.serving.server import create_app

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
    if LAYOUT == "pinned":
        os.sched_setaffinity(process.pid, {PINNED[role]})
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


def cpu_seconds(pid: int | None = None) -> float:
    """CPU time of process ``pid`` (None: this one), in seconds; NaN where it cannot be read.

    Read from the scheduler's exact runtime (``/proc/PID/schedstat``), not from the tick-sampled
    ``/proc/PID/stat``, which misattributes the short bursts of processes that wake on timers.
    """
    if pid is None:
        return time.process_time()
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9
    except OSError:
        return math.nan


def cpu_pressure() -> float:
    """Seconds during which some runnable task waited for a CPU (``/proc/pressure/cpu``)."""
    try:
        some = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except OSError:
        return math.nan
    return int(some.rsplit("total=", 1)[1]) / 1e6


# --- load ----------------------------------------------------------------------------------------


class Connection:
    """One keep-alive HTTP/1.1 connection of a simulated client.

    Sends JSON POST requests and reads responses that carry a ``Content-Length`` (uvicorn's
    do); reconnects after a failure or a ``Connection: close``.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post(self, path: str, body: bytes, headers: str = "") -> tuple[int, bytes]:
        """Send one request (``headers``: extra ``Name: value\\r\\n`` lines); return the
        status and the response body."""
        if self._streams is None:
            self._streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._streams
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{headers}"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        writer.write(head.encode() + body)
        try:
            status, headers = _parse_head(await reader.readuntil(b"\r\n\r\n"))
            data = await reader.readexactly(int(headers[b"content-length"]))
        except BaseException:
            self.close()
            raise
        if headers.get(b"connection") == b"close":
            self.close()
        return status, data

    def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None


def _parse_head(head: bytes) -> tuple[int, dict[bytes, bytes]]:
    status_line, *lines = head.rstrip(b"\r\n").split(b"\r\n")
    fields = (line.partition(b":") for line in lines)
    return int(status_line.split()[1]), {k.strip().lower(): v.strip() for k, _, v in fields}


#: What a failed request raises (a dropped connection, a malformed response, a timeout).
_TRANSPORT_ERRORS = (OSError, asyncio.IncompleteReadError, KeyError, ValueError, TimeoutError)


@dataclass
class Load:
    """What one load run saw.

    Attributes
    ----------
    latencies : list of float
        Seconds per answered request (any status).
    statuses : Counter
        Requests per HTTP status; 0 counts transport failures.
    bodies : list of bytes
        Bodies of the 200 answers, when kept.
    wall : float
        Seconds from the first request to the last answer.
    cpu : dict of str to float
        CPU seconds spent by each process during the run.
    """

    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    bodies: list[bytes] = field(default_factory=list)
    wall: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)


def load(
    url: str,
    prompts: list[str],
    n_requests: int,
    concurrency: int,
    *,
    pids: dict[str, int] | None = None,
    keep_bodies: bool = False,
) -> Load:
    """Send ``n_requests`` chat requests from ``concurrency`` clients (blocking).

    ``pids`` names the processes whose CPU time to record, besides this one (``"client"``).
    """
    processes: dict[str, int | None] = {"client": None, **(pids or {})}
    before = {name: cpu_seconds(pid) for name, pid in processes.items()}
    result = asyncio.run(_load(url, prompts, n_requests, concurrency, keep_bodies))
    result.cpu = {name: cpu_seconds(pid) - before[name] for name, pid in processes.items()}
    return result


async def _load(
    url: str, prompts: list[str], n_requests: int, concurrency: int, keep_bodies: bool
) -> Load:
    parts = urlsplit(url)
    host, port = str(parts.hostname), int(parts.port or 80)
    bodies = [
        json.dumps({"model": "bench", "messages": [{"role": "user", "content": p}]}).encode()
        for p in prompts
    ]
    queue = iter(range(n_requests))
    result = Load()

    async def client() -> None:
        connection = Connection(host, port)
        try:
            for i in queue:
                start = time.perf_counter()
                try:
                    async with asyncio.timeout(REQUEST_TIMEOUT_S):
                        status, data = await connection.post(CHAT, bodies[i % len(bodies)])
                except _TRANSPORT_ERRORS:
                    result.statuses[0] += 1
                    continue
                result.latencies.append(time.perf_counter() - start)
                result.statuses[status] += 1
                if keep_bodies and status == 200:
                    result.bodies.append(data)
        finally:
            connection.close()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    result.wall = time.perf_counter() - start
    return result


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
    backend_args = ("--fault-rate", str(FAULT_RATE))
    with child("backend", *backend_args) as (backend, backend_process):
        proxy_args = ("--backend-url", f"{backend}/v1", "--policy", str(policy))
        with child("proxy", *proxy_args) as (proxy, process):
            pids = {"proxy": process.pid, "backend": backend_process.pid}
            run = load(proxy, prompts, N_REQUESTS, CONCURRENCY, pids=pids, keep_bodies=True)
            alive = process.poll() is None and httpx.get(f"{proxy}/health").status_code == 200
            metrics = _metrics(proxy)
        stats = httpx.get(f"{backend}/stats").json()
    extensions = [json.loads(body)["computealloc"] for body in run.bodies]
    delivered = stats["requests"] - sum(stats["faults"].values())
    return {
        "statuses": dict(run.statuses),
        "alive": alive,
        "faults": stats["faults"],
        "backend_requests": stats["requests"],
        "delivered": delivered,
        "ledger_samples": metrics["computealloc_samples_total"],
        "reported_samples": sum(int(e["samples"]) for e in extensions),
        "ledger_cost": metrics["computealloc_cost_total"],
        "reported_cost": sum(float(e["cost"]) for e in extensions),
        "mean_cost": metrics["computealloc_mean_cost"],
        "actions": Counter(str(e["action"]) for e in extensions),
        "wall": run.wall,
        "p50": float(np.percentile(run.latencies, 50)) * 1e3,
        "proxy_cpu_ms": run.cpu["proxy"] / N_REQUESTS * 1e3,
    }


def overhead_experiment(prompts: list[str], policy: Path, latency_ms: float) -> dict[str, Load]:
    """Direct and proxied runs, interleaved; one merged :class:`Load` per ``path@clients``."""
    runs = {f"{path}@{c}": Load() for path in PATHS for c in (CONCURRENCY, 1)}
    with child("backend", "--latency", str(latency_ms / 1e3)) as (backend, backend_process):
        proxy_args = ("--backend-url", f"{backend}/v1", "--policy", str(policy), "--budget", "1")
        with child("proxy", *proxy_args) as (proxy, proxy_process):
            urls = {"direct": backend, "proxy": proxy}
            pids = {"proxy": proxy_process.pid, "backend": backend_process.pid}
            for url in urls.values():
                load(url, prompts, WARMUP, CONCURRENCY)
            for _ in range(ROUNDS):
                for path, url in urls.items():
                    for c, n in ((CONCURRENCY, N_REQUESTS // ROUNDS), (1, SEQUENTIAL // ROUNDS)):
                        _merge(runs[f"{path}@{c}"], load(url, prompts, n, c, pids=pids))
    return runs


def _merge(total: Load, run: Load) -> None:
    total.latencies += run.latencies
    total.statuses.update(run.statuses)
    total.wall += run.wall
    for name, seconds in run.cpu.items():
        total.cpu[name] = total.cpu.get(name, 0.0) + seconds


# --- report --------------------------------------------------------------------------------------


def stack() -> str:
    """The serving stack: uvicorn's event loop and HTTP parser (uvloop, httptools if present)."""
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return f"uvicorn {uvicorn.__version__} ({loop}, {http}), Python {platform.python_version()}"


def _summary(run: Load) -> dict[str, float]:
    answered = run.statuses[200]
    n = sum(run.statuses.values())
    return {
        "n": float(answered),
        "errors": float(n - answered),
        "p50": float(np.percentile(run.latencies, 50)) * 1e3,
        "p99": float(np.percentile(run.latencies, 99)) * 1e3,
        "rps": answered / run.wall,
        **{f"cpu_{name}": seconds / n * 1e3 for name, seconds in run.cpu.items()},
    }


def faults_report(faults: dict[str, object]) -> list[str]:
    statuses = faults["statuses"]
    assert isinstance(statuses, dict)
    ok = statuses.get(200, 0)
    mean = float(faults["mean_cost"])  # type: ignore[arg-type]
    dev = abs(mean / BUDGET - 1)
    ledger_ok = (
        faults["ledger_samples"] == faults["reported_samples"] == faults["delivered"]
        and faults["ledger_cost"] == faults["reported_cost"]
    )
    wall = float(faults["wall"])  # type: ignore[arg-type]
    return [
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
        f"| wall time | {wall:.1f} s ({ok / wall:.0f} answers/s, p50 {faults['p50']:.0f} ms, "
        f"proxy CPU {faults['proxy_cpu_ms']:.2f} ms per request) |",
    ]


def overhead_report(overhead: dict[float, dict[str, Load]]) -> list[str]:
    lines = [
        "",
        f"**2. Overhead.** One-action policy (majority@1) behind the proxy vs the same healthy "
        f"backend called directly, interleaved in {ROUNDS} rounds after a warm-up, "
        f"{N_REQUESTS} requests per path at {CONCURRENCY} clients and {SEQUENTIAL} at one. "
        "CPU columns: milliseconds of CPU per request spent by the load generator, the backend "
        "and the proxy.",
        "",
        "| backend latency | clients | path | answered | failed | p50 (ms) | p99 (ms) | "
        "req/s | CPU client | CPU backend | CPU proxy |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    verdicts = []
    for latency, runs in overhead.items():
        for c in (CONCURRENCY, 1):
            rows = {path: _summary(runs[f"{path}@{c}"]) for path in PATHS}
            for path, t in rows.items():
                cells = " | ".join(
                    f"{t[key]:.{digits}f}"
                    for key, digits in (("n", 0), ("errors", 0), ("p50", 2), ("p99", 2), ("rps", 0))
                )
                cpu = " | ".join(
                    f"{t.get(f'cpu_{name}', 0.0):.3f}" for name in ("client", "backend", "proxy")
                )
                lines.append(f"| {latency:g} ms | {c} | {path} | {cells} | {cpu} |")
            verdicts.append(_verdict(latency, c, rows["direct"], rows["proxy"]))
    return [*lines, "", *verdicts, "", *_capacity(overhead)]


def _capacity(overhead: dict[float, dict[str, Load]]) -> list[str]:
    """Where the proxy is CPU-bound: its one core's capacity against the load offered to it."""
    busy, offered, idle = [], [], []
    for runs in overhead.values():
        proxy = _summary(runs[f"proxy@{CONCURRENCY}"])
        busy.append(f"{proxy['cpu_proxy']:.2f} ms ({1e3 / proxy['cpu_proxy']:,.0f} req/s)")
        offered.append(f"{_summary(runs[f'direct@{CONCURRENCY}'])['rps']:,.0f} req/s")
        idle.append(f"{_summary(runs['proxy@1'])['cpu_proxy']:.2f} ms")
    latencies = " / ".join(f"{latency:g}" for latency in overhead)
    return [
        f"Capacity (backend latency {latencies} ms). The proxy is one process: at "
        f"{CONCURRENCY} clients it spends {', '.join(busy)} of CPU per request, at most that "
        f"many requests per second on one core, while the direct path runs at "
        f"{', '.join(offered)}. Where the direct rate is higher the proxy is saturated, and its "
        "queue, not its cost per request, sets the added latency. With one client the proxy "
        f"idles between requests and then spends {', '.join(idle)} of CPU per request (more "
        "than when busy: it wakes from idle twice per request, for the request and for the "
        "backend's reply), which bounds its added latency from below."
    ]


def _verdict(
    latency: float, clients: int, direct: dict[str, float], proxy: dict[str, float]
) -> str:
    add50, add99 = proxy["p50"] - direct["p50"], proxy["p99"] - direct["p99"]
    ratio = proxy["rps"] / direct["rps"]
    return (
        f"- {latency:g} ms backend, {clients} client(s): added latency p50 {add50:.2f} ms "
        f"(target <= 1: {'met' if add50 <= 1 else 'missed'}), p99 {add99:.2f} ms (target <= 5: "
        f"{'met' if add99 <= 5 else 'missed'}); throughput {ratio:.0%} of direct (target >= 90%: "
        f"{'met' if ratio >= 0.9 else 'missed'})."
    )


def main() -> None:
    if LAYOUT == "pinned":
        if len(os.sched_getaffinity(0)) < 2:
            raise SystemExit("--layout pinned needs two cores")
        os.sched_setaffinity(0, {PINNED["main"]})
    log = synthetic_log()
    prompts = log.queries["prompt"].tolist()
    machine_load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        value, single = write_policies(Path(tmp), log)
        faults = faults_experiment(prompts, value)
        print(json.dumps(faults, default=str, indent=1))
        overhead = {}
        for latency in LATENCIES_MS:
            overhead[latency] = overhead_experiment(prompts, single, latency)
            print(latency, {k: _summary(v) for k, v in overhead[latency].items()})
    body = "\n".join(
        [
            f"_{stack()}; load average before the run {machine_load[0]:.2f} (1 min), "
            f"{machine_load[1]:.2f} (5 min); "
            + (
                "client and backend pinned to core 0, the proxy to core 1._"
                if LAYOUT == "pinned"
                else "client, proxy and backend share the cores._"
            ),
            "",
            *faults_report(faults),
            *overhead_report(overhead),
        ]
    )
    print(body)
    write_section("bench_serve" if LAYOUT == "shared" else "bench_serve_pinned", body)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=("main", "backend", "proxy"), default="main")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--fault-rate", type=float, default=0.0)
    parser.add_argument("--latency", type=float, default=0.0, help="backend latency, seconds")
    parser.add_argument("--backend-url", default="")
    parser.add_argument("--policy", default="")
    parser.add_argument("--budget", type=float, default=BUDGET)
    parser.add_argument("--requests", type=int, default=N_REQUESTS, help="per experiment")
    parser.add_argument("--layout", choices=("shared", "pinned"), default=LAYOUT)
    args = parser.parse_args()
    N_REQUESTS, LAYOUT = args.requests, args.layout
    if args.role == "backend":
        run_backend(args.port, args.fault_rate, args.latency)
    elif args.role == "proxy":
        run_proxy(args.port, args.backend_url, args.policy, args.budget)
    else:
        main()
