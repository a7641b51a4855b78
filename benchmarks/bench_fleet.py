"""A fleet of proxy replicas on one Redis spend store: budget, per-key budgets, ledger, faults.

Processes on loopback: a real ``redis-server`` (append-only file, fsync every second: Redis's
default for ``appendonly yes``), the fake
OpenAI-compatible backend of ``benchmarks/bench_serve.py`` (10% injected faults: HTTP 500,
timeouts, malformed JSON, retried by the proxies), three proxy replicas (separate processes,
``create_app`` with a :class:`~computealloc.serving.spend_store.RedisStore`, one budget name, a keys
file of two API keys with their own budgets) and this load generator (64 keep-alive clients).

Traffic is uneven: half of the clients talk to replica 0 and send only the hardest half of the
queries (the longest prompts, which the 4-action Value policy spends most on); the other
replicas get all queries. Clients are spread over three accounts: the main budget B = 3
samples per query and the keys ``team-a`` (B = 2) and ``team-b`` (B = 4.5).

1. Steady. ``N_REQUESTS`` requests. Checked: the fleet's mean cost per account against its
   budget (targets: main within 1%, keys within 2%), the fleet's ledger against the
   completions the backend delivered, and that ``/metrics`` of every replica reports the same
   fleet totals.
2. Faults. The same load; at a third of it Redis is SIGKILLed and restarted after a second,
   at two thirds replica 2 is SIGKILLed. A client whose request fails on a dead replica sends
   it again to the next replica (as a load balancer does). Checked: no request fails; after the
   run the fleet's totals equal the survivors' own totals plus what the killed replica had
   synced (settled, and received by its queries in flight: replies are synced as they
   arrive); the reservations of its queries in flight expired; ledger against the backend.
3. Store latency. A one-sample policy on a healthy instant backend, one proxy on the Redis
   store and one in process, rounds interleaved, one client: request latency p50/p99 per store
   for the main account (the store is synced off the request path) and for a capped key (the
   cap check is one store round trip on the request path), and the store's own sync latency.

Run: ``PYTHONPATH=src python -m benchmarks.bench_fleet`` (Linux, ``redis-server`` on PATH;
writes its section of ``benchmarks/results.md``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import uvicorn

from benchmarks._results import write_section
from benchmarks.bench_serve import (
    _TRANSPORT_ERRORS,
    BUDGET,
    CHAT,
    Connection,
    child,
    synthetic_log,
    write_policies,
)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from redis_server import RedisServer, free_port  # noqa: E402

N_REQUESTS, CONCURRENCY, FAULT_RATE, REPLICAS = 6_000, 64, 0.10, 3
MAIN = "bench-main"
KEYS = {"team-a": 2.0, "team-b": 4.5}
ACCOUNTS = ("main", *KEYS)
LATENCY_ROUNDS, LATENCY_REQUESTS = 4, 250
NAME = "bench"


# --- child processes -----------------------------------------------------------------------------


def run_replica(port: int, backend_url: str, policy: str, keys: str, store: str) -> None:
    """One replica: the main budget and the keys' budgets, on ``store``."""
    from computealloc.data.backends import OpenAIBackend, RetryPolicy
    from computealloc.fitting.persist import load_policy
    from computealloc.serving.fleet import read_keys
    from computealloc.serving.runtime import Runtime
    from computealloc.serving.server import create_app
    from computealloc.serving.spend_store import open_store

    retry = RetryPolicy(max_attempts=10, initial_delay=0.01, max_delay=0.2)
    backend = OpenAIBackend(
        backend_url, "bench", timeout=2.0, use_n=False, retry=retry, max_concurrency=256
    )
    served = load_policy(policy)
    app = create_app(
        Runtime(served, backend, budget=BUDGET),
        api_key=MAIN,
        request_timeout=60.0,
        store=open_store(store),
        budget_name=NAME,
        keys=[(k, Runtime(served, backend, budget=k.budget)) for k in read_keys(keys)],
    )
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


@contextmanager
def replica(*args: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Start a replica process; yield its base URL once it answers."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "benchmarks.bench_fleet", "--role", "replica"]
    process = subprocess.Popen([*command, "--port", str(port), *args], env=env, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{base}/health").raise_for_status()
                break
            except httpx.HTTPError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the replica did not start") from None
                time.sleep(0.1)
        yield base, process
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=10)


# --- load ----------------------------------------------------------------------------------------


@dataclass
class FleetLoad:
    """What the clients saw: per account, costs and statuses of the answered requests."""

    statuses: Counter[int] = field(default_factory=Counter)
    costs: dict[str, list[float]] = field(default_factory=lambda: {a: [] for a in ACCOUNTS})
    resent: int = 0
    latencies: list[float] = field(default_factory=list)


def _plan(prompts: list[str], n_clients: int) -> list[tuple[int, str, list[bytes]]]:
    """Per client: its replica, its account, its request bodies (replica 0: hard queries)."""
    hard = sorted(prompts, key=len)[len(prompts) // 2 :]
    out = []
    for c in range(n_clients):
        target = 0 if c % 4 < 2 else 1 + c % 2
        pool = hard if target == 0 else prompts
        bodies = [
            json.dumps({"model": "bench", "messages": [{"role": "user", "content": p}]}).encode()
            for p in pool
        ]
        out.append((target % REPLICAS, ACCOUNTS[c % len(ACCOUNTS)], bodies))
    return out


def _auth(account: str) -> str:
    return f"Authorization: Bearer {MAIN if account == 'main' else 'sk-' + account}\r\n"


async def fleet_load(
    bases: list[str], prompts: list[str], n_requests: int, progress: list[int]
) -> FleetLoad:
    """``n_requests`` from ``CONCURRENCY`` clients; a failed request goes to the next replica."""
    result = FleetLoad()
    queue = iter(range(n_requests))
    addresses = [(str(urlsplit(b).hostname), int(urlsplit(b).port or 80)) for b in bases]

    async def client(target: int, account: str, bodies: list[bytes]) -> None:
        connections = [Connection(host, port) for host, port in addresses]
        try:
            for i in queue:
                body, at = bodies[i % len(bodies)], target
                for _ in range(len(bases) * 2):
                    try:
                        status, data = await connections[at].post(CHAT, body, _auth(account))
                    except _TRANSPORT_ERRORS:
                        at, result.resent = (at + 1) % len(bases), result.resent + 1
                        continue
                    break
                else:
                    status, data = 0, b""
                result.statuses[status] += 1
                if status == 200:
                    result.costs[account].append(float(json.loads(data)["computealloc"]["cost"]))
                progress[0] += 1
        finally:
            for connection in connections:
                connection.close()

    await asyncio.gather(*(client(*p) for p in _plan(prompts, CONCURRENCY)))
    return result


def _metrics(base: str) -> dict[str, float]:
    out = {}
    for line in httpx.get(f"{base}/metrics").text.splitlines():
        if line.startswith("computealloc_"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def _account_totals(metrics: dict[str, float]) -> dict[str, tuple[float, float]]:
    """(queries, cost) per account from one replica's ``/metrics``."""
    keys = {
        k: (
            metrics[f'computealloc_key_queries_total{{key="{k}"}}'],
            metrics[f'computealloc_key_cost_total{{key="{k}"}}'],
        )
        for k in KEYS
    }
    main = (
        metrics["computealloc_queries_total"] - sum(q for q, _ in keys.values()),
        metrics["computealloc_cost_total"] - sum(c for _, c in keys.values()),
    )
    return {"main": main, **keys}


# --- experiments ---------------------------------------------------------------------------------


def _fleet(stack: ExitStack, folder: Path, policy: Path, keys: Path, n: int) -> tuple:
    redis = RedisServer(folder / "redis", fsync="everysec")
    stack.callback(redis.stop)
    backend, _ = stack.enter_context(child("backend", "--fault-rate", str(FAULT_RATE)))
    args = ("--backend-url", f"{backend}/v1", "--policy", str(policy), "--keys", str(keys))
    replicas = [stack.enter_context(replica(*args, "--store", redis.url)) for _ in range(n)]
    return redis, backend, replicas


def steady(folder: Path, prompts: list[str], policy: Path, keys: Path) -> dict[str, object]:
    with ExitStack() as stack:
        _, backend, replicas = _fleet(stack, folder / "steady", policy, keys, REPLICAS)
        bases = [base for base, _ in replicas]
        run = asyncio.run(fleet_load(bases, prompts, N_REQUESTS, [0]))
        time.sleep(1.0)
        metrics = [_metrics(base) for base in bases]
        stats = httpx.get(f"{backend}/stats").json()
    return {
        "run": run,
        "metrics": metrics,
        "delivered": stats["requests"] - sum(stats["faults"].values()),
        "faults": stats["faults"],
    }


def faults(folder: Path, prompts: list[str], policy: Path, keys: Path) -> dict[str, object]:
    with ExitStack() as stack:
        redis, backend, replicas = _fleet(stack, folder / "faults", policy, keys, REPLICAS)
        bases = [base for base, _ in replicas]
        victim = replicas[2][1]
        progress = [0]
        seen: dict[str, object] = {}

        async def chaos() -> None:
            while progress[0] < N_REQUESTS // 3:
                await asyncio.sleep(0.01)
            redis.stop()
            await asyncio.sleep(1.0)
            seen["down"] = await asyncio.to_thread(_metrics, bases[0])
            redis.start()
            while progress[0] < 2 * N_REQUESTS // 3:
                await asyncio.sleep(0.01)
            victim.send_signal(signal.SIGKILL)
            await asyncio.to_thread(victim.wait)
            seen["in_flight"] = await asyncio.to_thread(_store_field, redis.url, "r:in_flight")

        async def both() -> FleetLoad:
            run, _ = await asyncio.gather(fleet_load(bases, prompts, N_REQUESTS, progress), chaos())
            return run

        run = asyncio.run(both())
        time.sleep(6.0)  # the dead replica's lease (5 s) lapses
        survivors = bases[:2]
        metrics = [_metrics(base) for base in survivors]
        dead = _dead_queries(redis.url, metrics)
        unsettled = {f: _replica_total(redis.url, f) for f in ("u:queries", "u:samples")}
        stats = httpx.get(f"{backend}/stats").json()
        expired = _store_field(redis.url, "r:in_flight")
    return {
        "run": run,
        "metrics": metrics,
        "dead": dead,
        "unsettled": unsettled,
        "down": seen["down"],
        "in_flight_at_kill": seen["in_flight"],
        "in_flight_after": expired,
        "delivered": stats["requests"] - sum(stats["faults"].values()),
    }


def _store_field(url: str, name: str) -> float:
    """A fleet total of the main account, read from Redis directly."""
    import redis

    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        return float(client.hget(f"computealloc:{{{NAME}}}:fleet", name) or 0.0)
    finally:
        client.close()


def _replica_total(url: str, name: str) -> float:
    """A contribution field summed over every replica and account, read from Redis."""
    import redis

    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        return sum(
            float(client.hget(key, name) or 0.0)
            for account in (NAME, *(f"{NAME}/key/{k}" for k in KEYS))
            for key in client.scan_iter(f"computealloc:{{{account}}}:replica:*")
        )
    finally:
        client.close()


def _dead_queries(url: str, metrics: list[dict[str, float]]) -> float:
    """Settled queries (every account) that replicas other than the survivors synced."""
    synced = _replica_total(url, "l:queries")
    return synced - sum(m["computealloc_replica_queries_total"] for m in metrics)


def store_latency(folder: Path, prompts: list[str], single: Path) -> dict[str, list[float]]:
    """One-client request latency through a Redis-store proxy and an in-process one."""
    keys = folder / "latency-keys.json"
    keys.write_text(
        json.dumps({"keys": [{"name": "capped", "key": "sk-capped", "budget": 1, "cap": 1e12}]})
    )
    with ExitStack() as stack:
        redis = RedisServer(folder / "latency-redis", fsync="everysec")
        stack.callback(redis.stop)
        backend, _ = stack.enter_context(child("backend"))
        args = ("--backend-url", f"{backend}/v1", "--policy", str(single), "--keys", str(keys))
        proxies = {
            "redis": stack.enter_context(replica(*args, "--store", redis.url))[0],
            "memory": stack.enter_context(replica(*args, "--store", "memory://"))[0],
        }
        out: dict[str, list[float]] = {}
        auth = {"main": _auth("main"), "capped": "Authorization: Bearer sk-capped\r\n"}
        for round_ in range(LATENCY_ROUNDS + 1):
            for store, base in proxies.items():
                for path, header in auth.items():
                    times = asyncio.run(_sequential(base, prompts, header))
                    if round_:  # the first round warms up
                        out.setdefault(f"{store}/{path}", []).extend(times)
        out["sync"] = [httpx.get(f"{proxies['redis']}/health").json()["store"]["sync_p50_ms"]]
        out["sync99"] = [httpx.get(f"{proxies['redis']}/health").json()["store"]["sync_p99_ms"]]
    return out


async def _sequential(base: str, prompts: list[str], header: str) -> list[float]:
    parts = urlsplit(base)
    connection = Connection(str(parts.hostname), int(parts.port or 80))
    times = []
    try:
        for i in range(LATENCY_REQUESTS):
            body = json.dumps(
                {"model": "bench", "messages": [{"role": "user", "content": prompts[i]}]}
            ).encode()
            start = time.perf_counter()
            status, _ = await connection.post(CHAT, body, header)
            times.append(time.perf_counter() - start)
            assert status == 200, status
    finally:
        connection.close()
    return times


# --- report --------------------------------------------------------------------------------------


def _budget_rows(metrics: dict[str, float]) -> list[str]:
    budgets = {"main": BUDGET, **KEYS}
    rows = []
    for account, (queries, cost) in _account_totals(metrics).items():
        mean = cost / queries
        rows.append(
            f"| {account} | {budgets[account]:g} | {queries:.0f} | {mean:.4f} | "
            f"{100 * (mean / budgets[account] - 1):+.2f}% |"
        )
    return rows


def report(steady_run: dict, fault_run: dict, latency: dict[str, list[float]]) -> str:
    run: FleetLoad = steady_run["run"]
    metrics = steady_run["metrics"]
    same = all(
        m[name] == metrics[0][name]
        for m in metrics
        for name in ("computealloc_queries_total", "computealloc_cost_total")
    )
    lines = [
        f"Three replicas (processes) on one Redis, {N_REQUESTS} requests from {CONCURRENCY} "
        f"clients (half of them on replica 0 with the hardest half of the queries), "
        f"{FAULT_RATE:.0%} backend faults; per-account mean cost from `/metrics` of replica 0:",
        "",
        "| account | budget | queries | fleet mean cost | vs budget |",
        "|---|---|---|---|---|",
        *_budget_rows(metrics[0]),
        "",
        f"- client statuses {dict(run.statuses)}; backend faults {steady_run['faults']}",
        f"- fleet ledger samples {metrics[0]['computealloc_samples_total']:.0f}, completions "
        f"the backend delivered {steady_run['delivered']}",
        f"- every replica's `/metrics` reports the same fleet totals: {same}; own queries per "
        "replica " + ", ".join(f"{m['computealloc_replica_queries_total']:.0f}" for m in metrics),
    ]
    frun: FleetLoad = fault_run["run"]
    fm, down = fault_run["metrics"], fault_run["down"]
    own = sum(m["computealloc_replica_queries_total"] for m in fm)
    answers = sum(len(c) for c in frun.costs.values())
    u_queries, u_samples = (fault_run["unsettled"][f] for f in ("u:queries", "u:samples"))
    fleet_queries, fleet_samples = (
        fm[0][f"computealloc_{f}_total"] for f in ("queries", "samples")
    )
    lines += [
        "",
        "Faults (same load; Redis SIGKILLed at 1/3 and restarted 1 s later from its append-only "
        "file, replica 2 SIGKILLed at 2/3; clients resend a failed request to the next replica):",
        "",
        f"- client statuses {dict(frun.statuses)} ({frun.resent} requests resent after the "
        f"replica was killed); answers received {answers}, queries in the fleet's ledger "
        f"{fleet_queries:.0f} = answers + the killed replica's queries in flight that had "
        f"received a reply ({u_queries:.0f}, {u_samples:.0f} samples, resent by their clients) "
        f"- answers it settled after its last sync ({answers + u_queries - fleet_queries:.0f})",
        f"- while Redis was down, replica 0: store_up {down['computealloc_store_up']:.0f}, "
        f"store errors {down['computealloc_store_errors_total']:.0f}",
        f"- fleet queries after the run {fleet_queries:.0f} = survivors' own {own:.0f} + the "
        f"killed replica's synced {fault_run['dead']:.0f} settled and {u_queries:.0f} unsettled; "
        f"both survivors report the same: "
        f"{fm[0]['computealloc_queries_total'] == fm[1]['computealloc_queries_total']}",
        f"- main-account queries in flight in the store when the replica died "
        f"{fault_run['in_flight_at_kill']:.0f}, after its lease {fault_run['in_flight_after']:.0f}",
        f"- fleet ledger samples {fleet_samples:.0f}, completions the backend delivered "
        f"{fault_run['delivered']} (difference {fault_run['delivered'] - fleet_samples:.0f}: "
        "the backend counts a request when it arrives, so requests of the killed replica still "
        "being answered when it died count as delivered; and replies it received in its last "
        "sync window, 2 ms, are lost with it)",
        "",
        "| accounts after the faults | budget | queries | fleet mean cost | vs budget |",
        "|---|---|---|---|---|",
        *_budget_rows(fm[0]),
        "",
        f"Store latency, one client, one-sample policy, instant backend, {LATENCY_ROUNDS} "
        f"interleaved rounds of {LATENCY_REQUESTS} requests per cell (ms per request):",
        "",
        "| path | in process p50 | Redis p50 | added p50 | in process p99 | Redis p99 |",
        "|---|---|---|---|---|---|",
    ]
    for path, text in (("main", "main budget (sync off the path)"), ("capped", "capped key")):
        mem, red = (np.asarray(latency[f"{s}/{path}"]) * 1e3 for s in ("memory", "redis"))
        lines.append(
            f"| {text} | {np.median(mem):.3f} | {np.median(red):.3f} | "
            f"{np.median(red) - np.median(mem):+.3f} | {np.percentile(mem, 99):.3f} | "
            f"{np.percentile(red, 99):.3f} |"
        )
    lines += [
        "",
        f"One sync with Redis (the atomic script, measured in the replica): p50 "
        f"{latency['sync'][0]} ms, p99 {latency['sync99'][0]} ms.",
    ]
    return "\n".join(lines)


def main() -> None:
    log = synthetic_log()
    prompts = list(log.queries["prompt"])
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        policy, single = write_policies(folder, log)
        keys = folder / "keys.json"
        entries = [{"name": k, "key": f"sk-{k}", "budget": b} for k, b in KEYS.items()]
        keys.write_text(json.dumps({"keys": entries}))
        steady_run = steady(folder, prompts, policy, keys)
        fault_run = faults(folder, prompts, policy, keys)
        latency = store_latency(folder, prompts, single)
    body = report(steady_run, fault_run, latency)
    print(body)
    write_section("bench_fleet", body)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=("main", "replica"), default="main")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--backend-url")
    parser.add_argument("--policy")
    parser.add_argument("--keys")
    parser.add_argument("--store")
    parser.add_argument("--requests", type=int, default=N_REQUESTS, help="per load run")
    args = parser.parse_args()
    N_REQUESTS = args.requests
    if args.role == "replica":
        run_replica(args.port, args.backend_url, args.policy, args.keys, args.store)
    else:
        main()
