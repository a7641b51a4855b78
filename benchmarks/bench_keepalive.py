"""Client-side ReadErrors under load: uvicorn's 5 s keep-alive against the proxy's 75 s.

Under 64-client load, 1 to 6 requests per minute ended in a client-side ``httpx.ReadError``
(or ``RemoteProtocolError: Server disconnected``) that the proxy never logged. The cause is the
idle keep-alive close race: uvicorn closes a connection that has been idle for
``timeout_keep_alive`` seconds (default 5), and a client whose own idle timeout is as long or
longer (httpx and the ``openai`` client: 5 s; aiohttp: 15 s; load balancers: 60 s) may send its
next request on that connection just as the server closes it. The request is lost in flight:
the server closed an idle connection (nothing to log), the client reads EOF. The fix is a
server keep-alive longer than every client's and load balancer's idle timeout, so that the
client always closes first (``computealloc serve --keep-alive``, default 75 s).

One run measures both settings side by side: two proxies (``computealloc.serving.server.serve``, a
replayed log, a one-action policy) run as separate processes, one with ``keep_alive=5``
(uvicorn's default) and one with ``keep_alive=75``, and the same load generator drives both at
once: ``--clients`` clients per proxy, each an ``httpx.AsyncClient`` with one keep-alive
connection (httpx's default 5 s idle expiry, as the ``openai`` client has), no retries. Each
client sends a request, then waits an idle gap drawn uniformly from ``--gap`` seconds (by
default 4.95 to 5.05 s: the gaps straddle the 5 s timeouts, where the race lives; the rate of
errors scales with how often real clients' gaps fall there, and with the delay between a
client's check that its connection is open and its request reaching the server, which CPU
load and network round trips lengthen; gaps of 4 to 6 s on an idle loopback show few).
Reported per setting: requests, failures by exception type, failures per minute.

Run: ``PYTHONPATH=src python -m benchmarks.bench_keepalive [--minutes 2] [--clients 64]``
(writes its section of ``benchmarks/results.md``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

from benchmarks._results import write_section
from benchmarks.bench_serve import synthetic_log, write_policies

ROOT = Path(__file__).resolve().parents[1]
#: (label, keep-alive seconds): uvicorn's default and the proxy's.
SETTINGS = (("uvicorn default, keep_alive=5", 5.0), ("computealloc, keep_alive=75", 75.0))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_proxy(policy: Path, log: Path, port: int, keep_alive: float) -> subprocess.Popen[bytes]:
    """``serve`` in a child process (no access log, so the proxy's output is its errors)."""
    code = (
        "from computealloc.serving.server import serve; "
        f"serve({str(policy)!r}, 1.0, {'replay:' + str(log)!r}, port={port}, "
        f"keep_alive={keep_alive}, access_log=False, echo=lambda _: None)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    env.pop("COMPUTEALLOC_API_KEY", None)
    return subprocess.Popen(
        [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


def wait_ready(base: str, process: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{base}/livez").status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the proxy at {base} did not start")
        time.sleep(0.2)


async def client(
    base: str,
    prompts: list[str],
    until: float,
    gap: tuple[float, float],
    rng: random.Random,
    outcomes: Counter[str],
) -> None:
    """One client: request, idle gap, request, ... on one keep-alive connection."""
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1, keepalive_expiry=5.0)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30.0) as http:
        await asyncio.sleep(rng.uniform(0, gap[1]))  # spread the clients out
        while time.monotonic() < until:
            body = {"model": "m", "messages": [{"role": "user", "content": rng.choice(prompts)}]}
            try:
                response = await http.post("/v1/chat/completions", json=body)
                outcomes[
                    "ok" if response.status_code == 200 else f"HTTP {response.status_code}"
                ] += 1
            except httpx.HTTPError as exc:
                outcomes[type(exc).__name__] += 1
            await asyncio.sleep(rng.uniform(*gap))


async def drive(
    bases: list[str], prompts: list[str], clients: int, seconds: float, gap: tuple[float, float]
) -> list[Counter[str]]:
    """Every proxy under the same load at once; the outcomes of each."""
    until = time.monotonic() + seconds
    outcomes = [Counter[str]() for _ in bases]
    rng = random.Random(0)
    tasks = [
        client(base, prompts, until, gap, random.Random(rng.random()), counts)
        for base, counts in zip(bases, outcomes, strict=True)
        for _ in range(clients)
    ]
    await asyncio.gather(*tasks)
    return outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--clients", type=int, default=64, help="clients per proxy")
    parser.add_argument("--gap", type=float, nargs=2, default=(4.95, 5.05), metavar=("LOW", "HIGH"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        log = synthetic_log(200, 8)
        log.save(Path(folder) / "log.jsonl")
        _, single = write_policies(Path(folder), log)
        prompts = list(log.queries["prompt"])
        ports = [_free_port() for _ in SETTINGS]
        procs = [
            start_proxy(single, Path(folder) / "log.jsonl", port, keep)
            for port, (_, keep) in zip(ports, SETTINGS, strict=True)
        ]
        try:
            bases = [f"http://127.0.0.1:{port}" for port in ports]
            for base, proc in zip(bases, procs, strict=True):
                wait_ready(base, proc)
            started = time.monotonic()
            outcomes = asyncio.run(
                drive(bases, prompts, args.clients, 60 * args.minutes, tuple(args.gap))
            )
            minutes = (time.monotonic() - started) / 60
        finally:
            for proc in procs:
                proc.terminate()
            logs = [proc.communicate(timeout=30)[0].decode(errors="replace") for proc in procs]
    rows = []
    for (label, _), counts, text in zip(SETTINGS, outcomes, logs, strict=True):
        failed = sum(n for kind, n in counts.items() if kind != "ok")
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(counts.items()) if k != "ok") or "none"
        logged = sum("error" in line.lower() for line in text.splitlines())
        rows.append(
            f"| {label} | {sum(counts.values())} | {failed} | {failed / minutes:.2f} | "
            f"{kinds} | {logged} |"
        )
        print(label, dict(counts), f"{failed / minutes:.2f} failures/min", flush=True)
    body = (
        f"{args.clients} httpx clients per proxy (one keep-alive connection each, 5 s idle "
        f"expiry, no retries), idle gaps U[{args.gap[0]:g}, {args.gap[1]:g}] s between "
        f"requests, both proxies driven at once for {minutes:.1f} min; a replayed log behind "
        "each.\n\n"
        "| server keep-alive | requests | client-side failures | failures/min | kinds | "
        "error lines the proxy logged |\n|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n\n"
        "With the server's idle timeout at 5 s, equal to the client's, a client sends requests "
        "on connections the server is closing: they fail on the client and the server has "
        "nothing to log. With 75 s the client always drops an idle connection first, and no "
        "request is lost. `computealloc serve --keep-alive` (default 75 s) sets it; keep it "
        "above the idle timeout of any load balancer in front (60 s on most)."
    )
    write_section("bench_keepalive", body)


if __name__ == "__main__":
    main()
