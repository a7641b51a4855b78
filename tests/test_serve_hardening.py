"""Issue 14, items 4 (serve), 6, 7 and 8: the `serve` command and the proxy, hardened.

Each test is named after the defect it pins down: the port (default, range, taken), the
loading line and the banner, liveness and readiness, upstream calls and retries in the
metrics, the ledger of replies that arrive late or beside a failure, live workers after a
SIGKILL, the docs and schema behind the key, keys from a file and never in a worker's
environment, and serve's sampling flags checked as collect checks them.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
from typer.testing import CliRunner  # noqa: E402

from computealloc.cli import app as cli  # noqa: E402
from computealloc.data.backends import (  # noqa: E402
    BackendError,
    OpenAIBackend,
    ReplayBackend,
    RetryPolicy,
    UnknownPromptError,
)
from computealloc.fitting.persist import save_policy  # noqa: E402
from computealloc.serving.runtime import Runtime  # noqa: E402
from computealloc.serving.serve_config import ServeConfig  # noqa: E402
from computealloc.serving.server import DEFAULT_KEEP_ALIVE_S, DEFAULT_PORT, create_app  # noqa: E402
from fake_openai_server import make_app, running, scripted  # noqa: E402
from test_runtime import fit_value, synthetic_log  # noqa: E402

KEY = "s3cret-key-for-tests"
BUDGET = 3.0
runner = CliRunner()


@pytest.fixture(scope="module")
def log():
    return synthetic_log(40, 8)


@pytest.fixture(scope="module")
def files(tmp_path_factory, log):
    """A replay log and a policy fitted on it, saved."""
    folder = tmp_path_factory.mktemp("serve")
    log.save(folder / "samples.jsonl")
    save_policy(
        fit_value(log, BUDGET, actions="majority@1,majority@2,majority@4"), folder / "policy.json"
    )
    return folder / "policy.json", folder / "samples.jsonl"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cli_serve(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    code = "from computealloc.cli import app; app()"
    environ = {**os.environ, "PYTHONPATH": str(Path("src").resolve()), **(env or {})}
    if env is None:
        environ.pop("COMPUTEALLOC_API_KEY", None)
    return subprocess.Popen(
        [sys.executable, "-c", code, "serve", *args],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@contextmanager
def _serving(process: subprocess.Popen[str], base: str, timeout: float = 60):
    """Wait until ``base``/livez answers; yield the lines printed so far; stop the process."""
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{base}/livez").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            assert time.monotonic() < deadline, "the proxy did not start"
            time.sleep(0.1)
        yield process
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- item 6: port, banner, liveness and readiness ---------------------------------------------


def test_default_port_is_8100_not_vllms_8000():
    assert DEFAULT_PORT == 8100
    assert ServeConfig(policy=Path("p.json"), budget=1.0, backend=["replay:x"]).port == 8100


@pytest.mark.parametrize("port", ["99999", "0", "-1"])
def test_port_out_of_range_is_an_error_naming_port(port):
    res = runner.invoke(
        cli,
        ["serve", "--policy", "p.json", "--budget", "1", "--backend", "replay:x", "--port", port],
    )
    assert res.exit_code == 2
    assert "--port" in res.output and "Traceback" not in res.output


def test_a_taken_port_fails_at_once_naming_host_and_port_before_loading(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        missing = tmp_path / "no-such-policy.json"  # the port is checked before the policy
        process = _cli_serve(
            "--policy", str(missing), "--budget", "1", "--backend", "replay:x",
            "--port", str(port),
        )  # fmt: skip
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 2
    assert f"127.0.0.1:{port} (--host/--port)" in output and "pick a free --port" in output
    assert "Traceback" not in output and "no-such-policy" not in output


def test_serve_prints_a_loading_line_then_a_banner_and_splits_liveness_from_readiness(files):
    policy, samples = files
    port = _free_port()
    key_file = policy.parent / "key.txt"
    key_file.write_text(KEY + "\n")
    key_file.chmod(0o600)
    process = _cli_serve(
        "--policy", str(policy), "--budget", str(BUDGET), "--backend", f"replay:{samples}",
        "--port", str(port), "--api-key-file", str(key_file), "--served-model-name", "alloc",
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    with _serving(process, base):
        assert httpx.get(f"{base}/readyz").json()["arms"] == {"m": "ok"}
        health = httpx.get(f"{base}/health").json()
        assert health["status"] == "ok" and health["ready"] is True
        headers = {"Authorization": f"Bearer {KEY}"}
        assert httpx.get(f"{base}/v1/models").status_code == 401  # the file's key is needed
        assert httpx.get(f"{base}/v1/models", headers=headers).status_code == 200
    output = process.stdout.read() if process.stdout else ""
    lines = output.splitlines()
    loading = next(i for i, line in enumerate(lines) if line.startswith("Loading"))
    banner = next(i for i, line in enumerate(lines) if line.startswith("computealloc proxy on"))
    assert loading < banner
    text = "\n".join(lines[banner : banner + 8])
    assert f"{base}/v1" in text and "'alloc'" in text and str(policy) in text
    assert "Value policy" in text and f"budget  {BUDGET:g} samples" in text
    assert "m -> replayed log" in text
    assert f"curl {base}/v1/chat/completions" in text and "$COMPUTEALLOC_API_KEY" in text
    assert KEY not in output  # the key itself is never printed


def test_readyz_is_503_naming_the_arm_whose_backend_is_down(log):
    down = f"http://127.0.0.1:{_free_port()}/v1"
    policy = fit_value(log, BUDGET, actions="majority@1,majority@2")
    runtime = Runtime(policy, OpenAIBackend(down, "m"), budget=BUDGET)
    with running(create_app(runtime)) as url:
        base = url.removesuffix("/v1")
        assert httpx.get(f"{base}/livez").status_code == 200  # alive all the same
        ready = httpx.get(f"{base}/readyz")
        health = httpx.get(f"{base}/health").json()
    assert ready.status_code == 503
    assert "'m' does not answer" in ready.json()["error"]["message"]
    assert ready.json()["arms"]["m"].startswith(f"GET {down}/models")
    assert health["status"] == "degraded" and health["ready"] is False


# --- item 7: keep-alive, upstream calls in the metrics, the ledger, live workers ---------------


def test_keep_alive_outlasts_client_and_load_balancer_idle_timeouts():
    # httpx / openai close idle connections after 5 s, aiohttp after 15 s, load balancers 60 s:
    # the server must close last, so that no client reuses a connection it is closing.
    assert DEFAULT_KEEP_ALIVE_S > 60
    assert ServeConfig(policy=Path("p"), budget=1.0, backend=["x"]).keep_alive > 60


def test_metrics_count_upstream_calls_and_retries_per_arm(log):
    policy = fit_value(log, BUDGET, actions="majority@1,majority@2")
    with running(make_app(scripted, fault_rate=0.5, faults=("500",), seed=3)) as upstream:
        retry = RetryPolicy(max_attempts=8, initial_delay=0.001, max_delay=0.002)
        backend = OpenAIBackend(upstream, "m", retry=retry, use_n=False)
        runtime = Runtime(policy, backend, budget=BUDGET)
        with running(create_app(runtime)) as url:
            for prompt in log.queries["prompt"].iloc[:6]:
                body = {"model": "x", "messages": [{"role": "user", "content": prompt}]}
                assert httpx.post(f"{url}/chat/completions", json=body).status_code == 200
            text = httpx.get(url.removesuffix("/v1") + "/metrics").text
        delivered = httpx.get(f"{upstream}/fake/requests").json()["requests"]

    def metric(name: str) -> float:
        found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
        return float(found.group(1)) if found else 0.0

    ok = metric('computealloc_upstream_requests_total{arm="m",outcome="ok"}')
    failed = metric('computealloc_upstream_requests_total{arm="m",outcome="http_500"}')
    retried = metric('computealloc_upstream_retries_total{arm="m"}')
    assert failed > 0 and retried == failed  # every 500 was retried
    assert ok + failed == delivered == backend.stats.requests
    assert ok == metric("computealloc_samples_total")


def _one_action_runtime(log, url, **backend):
    policy = fit_value(log, BUDGET, actions="majority@2")  # one action: 2 single requests
    retry = RetryPolicy(max_attempts=1)
    return Runtime(policy, OpenAIBackend(url, "m", use_n=False, retry=retry, **backend), budget=9)


def _second_request_fails(delay_s: float):
    """A responder whose request with seed 1 fails (404) after ``delay_s``; others answer."""

    async def respond(request, n):
        if request.seed == 1:
            await asyncio.sleep(delay_s)
            raise UnknownPromptError(request.prompt)
        return await scripted(request, n)

    return respond


def test_ledger_charges_a_reply_received_before_a_sibling_failed(log):
    with running(make_app(_second_request_fails(0.2))) as url:
        runtime = _one_action_runtime(log, url)

        async def failing() -> None:
            try:
                await runtime.answer("What is 2 + 2?", params={"seed": 0})
            finally:
                await runtime.aclose()

        with pytest.raises(BackendError, match="HTTP 404"):
            asyncio.run(failing())
        answered = httpx.get(f"{url}/fake/requests").json()["requests"] - 1  # the 404 is not
    ledger = runtime.ledger
    assert answered == 1 and (ledger.samples, ledger.failed, ledger.queries) == (1, 1, 1)
    assert runtime.controller is None or runtime.controller.state().in_flight == 0


def test_ledger_charges_a_reply_received_before_the_deadline_cancelled_the_query(log):
    with running(make_app(_second_request_fails(3.0))) as url:
        runtime = _one_action_runtime(log, url)

        async def deadline() -> None:
            try:
                await asyncio.wait_for(runtime.answer("What is 2 + 2?", params={"seed": 0}), 0.5)
            finally:
                await runtime.aclose()

        with pytest.raises(TimeoutError):
            asyncio.run(deadline())
    assert (runtime.ledger.samples, runtime.ledger.failed) == (1, 1)


def test_ledger_charges_a_reply_that_arrived_while_the_loop_was_starved_past_its_timeout(log):
    """The reply is in the socket before the timeout, but the loop gets to it after: it is
    read and charged, not dropped as a timeout (and drawn again, billed twice upstream)."""
    with running(make_app(scripted, latency_s=0.1)) as url:
        runtime = _one_action_runtime(log, url, timeout=0.3)

        async def starved() -> None:
            task = asyncio.create_task(runtime.answer("What is 2 + 2?", params={"seed": 0}))
            await asyncio.sleep(0.05)  # both requests sent
            time.sleep(0.6)  # CPU starvation: replies arrive at 0.1 s, timers are due at 0.3 s
            await task
            await runtime.aclose()

        asyncio.run(starved())
        delivered = httpx.get(f"{url}/fake/requests").json()["samples"]
    assert delivered == runtime.ledger.samples == 2 and runtime.ledger.failed == 0


def _workers(pid: int) -> set[int]:
    """The worker processes (spawned by multiprocessing) whose parent is ``pid``."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid and b"spawn_main" in command:
                found.add(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
def test_health_counts_live_workers_after_one_is_sigkilled_and_restarted_and_no_key_in_env(
    files,
):
    policy, samples = files
    port = _free_port()
    process = _cli_serve(
        "--policy", str(policy), "--budget", str(BUDGET), "--backend", f"replay:{samples}",
        "--port", str(port), "--workers", "2",
        env={"COMPUTEALLOC_API_KEY": KEY},
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    with _serving(process, base):
        deadline = time.monotonic() + 60
        while len(workers := _workers(process.pid)) < 2:
            assert time.monotonic() < deadline, workers
            time.sleep(0.2)
        for worker in workers:  # the key reaches the workers through a private file only
            environ = Path(f"/proc/{worker}/environ").read_bytes()
            assert KEY.encode() not in environ
            named = re.search(rb"COMPUTEALLOC_SERVE_SETTINGS_FILE=([^\x00]+)", environ)
            assert named is not None
            settings = Path(named.group(1).decode())
            assert settings.stat().st_mode & 0o777 == 0o600 and KEY in settings.read_text()
        while httpx.get(f"{base}/health").json()["workers"] != 2:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while True:  # uvicorn restarts it; then every scrape sees 2 live workers, not 3
            now = _workers(process.pid)
            counts = {httpx.get(f"{base}/health").json()["workers"] for _ in range(6)}
            if victim not in now and len(now) == 2 and counts == {2}:
                break
            assert time.monotonic() < deadline, (now, counts)
            time.sleep(0.3)
    assert not settings.exists()  # removed when the server stopped


# --- item 8: docs and schema behind the key, keys from a file ----------------------------------


def test_docs_are_off_and_the_schema_is_behind_the_key(log):
    runtime = Runtime(fit_value(log, BUDGET, actions="majority@1"), ReplayBackend(log), budget=1)
    with running(create_app(runtime, api_key=KEY)) as url:
        base = url.removesuffix("/v1")
        assert httpx.get(f"{base}/docs").status_code == 404
        assert httpx.get(f"{base}/redoc").status_code == 404
        assert httpx.get(f"{base}/openapi.json").status_code == 401
        headers = {"Authorization": f"Bearer {KEY}"}
        assert "/v1/chat/completions" in httpx.get(f"{base}/openapi.json", headers=headers).text
    with running(create_app(runtime, api_key=KEY, docs=True)) as url:
        base = url.removesuffix("/v1")
        assert httpx.get(f"{base}/docs").status_code == 401
        assert "swagger" in httpx.get(f"{base}/docs", headers=headers).text.lower()


def test_api_key_on_the_command_line_warns_it_is_visible_in_ps(files):
    res = runner.invoke(
        cli, ["serve", "--policy", "p.json", "--budget", "1", "--backend", "replay:x",
              "--api-key", "k", "--port", "99999"],
    )  # fmt: skip
    assert "visible to every user" in res.output and "--api-key-file" in res.output


def test_api_key_file_errors_name_the_flag_and_the_file(tmp_path):
    empty = tmp_path / "empty.key"
    empty.write_text("\n")
    for path, match in ((empty, "line 1: no key"), (tmp_path / "missing.key", "cannot read")):
        res = runner.invoke(
            cli, ["serve", "--policy", "p.json", "--budget", "1", "--backend", "replay:x",
                  "--api-key-file", str(path), "--port", str(_free_port())],
            env={"COMPUTEALLOC_API_KEY": ""},
        )  # fmt: skip
        assert res.exit_code == 2, res.output
        assert f"--api-key-file {path}" in res.output.replace("\n", "") and match in res.output


# --- item 4 (serve): sampling flags checked as collect checks them -----------------------------


@pytest.mark.parametrize(
    ("flag", "value"), [("--temperature", "-1"), ("--max-tokens", "0"), ("--keep-alive", "0")]
)
def test_serve_rejects_temperature_minus_one_and_max_tokens_zero_naming_the_flag(flag, value):
    res = runner.invoke(
        cli, ["serve", "--policy", "p.json", "--budget", "1", "--backend", "replay:x", flag, value]
    )
    assert res.exit_code == 2 and flag in res.output and "Traceback" not in res.output


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"temperature": -1}, "'temperature' parameter of Runtime"),
        ({"max_tokens": 0}, "'max_tokens'"),
    ],
)
def test_runtime_rejects_temperature_minus_one_and_max_tokens_zero(log, kwargs, match):
    policy = fit_value(log, BUDGET, actions="majority@1")
    with pytest.raises(ValueError, match=match):
        Runtime(policy, ReplayBackend(log), budget=1, **kwargs)
