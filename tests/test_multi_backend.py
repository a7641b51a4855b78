"""The README's flagship example end to end: fit with per-sample prices, serve two live arms.

``computealloc fit example --budget 0.3 --price gpt-4-1106-preview=1 --price
mistralai/Mixtral-8x7B-Instruct-v0.1=0``, then ``computealloc serve`` with one ``--backend
NAME=URL`` per arm in front of two separate OpenAI-compatible server processes; the official
``openai`` client asks a few hundred questions and the share of GPT-4 calls (the mean cost) must
end within 2% of the budget.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import openai
import pytest

from computealloc.data import datasets

STRONG, WEAK = "gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1"
BUDGET = 0.3
FAKE = Path(__file__).with_name("fake_openai_server.py")
ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
CLI = [sys.executable, "-c", "from computealloc.cli import app; app()"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _process(args: list[str], ready: str) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``args``; wait until ``ready`` answers 200; stop it at exit."""
    process = subprocess.Popen(args, env=ENV, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(ready).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, process.stderr.read().decode()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, f"{args} did not start"
            time.sleep(0.1)
        yield process
    finally:
        process.terminate()
        process.wait(timeout=20)


def _fake(port: int) -> list[str]:
    return [sys.executable, str(FAKE), str(port)]


@pytest.fixture(scope="module")
def policy(tmp_path_factory) -> Path:
    """The README example's routing policy, fitted by the CLI with per-sample prices."""
    path = tmp_path_factory.mktemp("policy") / "p.json"
    prices = ["--price", f"{STRONG}=1", "--price", f"{WEAK}=0"]
    fit = [*CLI, "fit", "example", "--budget", str(BUDGET)]
    done = subprocess.run([*fit, *prices, "-o", str(path)], env=ENV, capture_output=True)
    assert done.returncode == 0, done.stderr.decode() + done.stdout.decode()
    return path


def _ask(proxy: str, prompts: list[str]) -> list[str]:
    """Ask every prompt with the official client; the arm (model) that answered each."""
    client = openai.OpenAI(base_url=f"{proxy}/v1", api_key="none", max_retries=0)
    models = []
    for prompt in prompts:
        reply = client.chat.completions.create(
            model="computealloc", messages=[{"role": "user", "content": prompt}]
        )
        assert reply.choices[0].message.content
        models.append(reply.model_extra["computealloc"]["model"])
    return models


def test_fit_and_serve_the_readme_routing_example_on_two_live_servers(policy):
    ports = {STRONG: _free_port(), WEAK: _free_port(), "proxy": _free_port()}
    urls = {arm: f"http://127.0.0.1:{ports[arm]}" for arm in (STRONG, WEAK)}
    serve = [
        *[*CLI, "serve", "--policy", str(policy)],
        *["--budget", str(BUDGET), "--port", str(ports["proxy"])],
        *["--backend", f"{STRONG}={urls[STRONG]}/v1", "--backend", f"{WEAK}={urls[WEAK]}/v1"],
    ]
    proxy = f"http://127.0.0.1:{ports['proxy']}"
    prompts = datasets.load("example").queries["prompt"].iloc[:300].tolist()
    with (
        _process(_fake(ports[STRONG]), f"{urls[STRONG]}/v1/fake/requests"),
        _process(_fake(ports[WEAK]), f"{urls[WEAK]}/v1/fake/requests"),
        _process(serve, f"{proxy}/health"),
    ):
        models = _ask(proxy, prompts)
        received = {arm: httpx.get(f"{urls[arm]}/v1/fake/requests").json() for arm in urls}
        metrics = httpx.get(f"{proxy}/metrics").text
    strong = models.count(STRONG)
    assert received[STRONG]["samples"] == strong > 0
    assert received[WEAK]["samples"] == len(prompts) - strong > 0
    per_arm = {
        (name, arm): float(value)
        for name, arm, value in re.findall(
            r'^computealloc_arm_(samples|cost)_total\{arm="([^"]+)"\} (\S+)$', metrics, re.M
        )
    }
    assert per_arm == {
        ("samples", STRONG): strong,
        ("cost", STRONG): strong,
        ("samples", WEAK): len(prompts) - strong,
        ("cost", WEAK): 0.0,
    }
    mean_cost = float(metrics.split("\ncomputealloc_mean_cost ")[1].split()[0])
    assert mean_cost == pytest.approx(strong / len(prompts))
    assert abs(mean_cost - BUDGET) <= 0.02 * BUDGET, (strong, mean_cost)


def test_serve_a_config_file_of_arms_with_their_own_parameters_and_keys(policy, tmp_path):
    """``serve --config``: per-arm upstream model, request parameters, key from the environment
    and price; a flag overrides the file."""
    ports = {"strong": _free_port(), "weak": _free_port(), "proxy": _free_port()}
    urls = {arm: f"http://127.0.0.1:{ports[arm]}" for arm in ("strong", "weak")}
    config = tmp_path / "serve.toml"
    config.write_text(
        f"""
policy = "{policy}"
budget = 5.0  # overridden by --budget below
port = {ports["proxy"]}

[[arms]]
name = "{STRONG}"
url = "{urls["strong"]}/v1"
model = "upstream-gpt"
api_key_env = "STRONG_KEY"
params = {{ reasoning_effort = "low", max_tokens = 64 }}
price = 1

[[arms]]
name = "{WEAK}"
url = "{urls["weak"]}/v1"
price = 0
""",
        encoding="utf-8",
    )
    serve = [*CLI, "serve", "--config", str(config), "--budget", str(BUDGET)]
    proxy = f"http://127.0.0.1:{ports['proxy']}"
    prompts = datasets.load("example").queries["prompt"].iloc[:60].tolist()
    ENV["STRONG_KEY"] = "sk-strong"
    try:
        with (
            _process(_fake(ports["strong"]), f"{urls['strong']}/v1/fake/requests"),
            _process(_fake(ports["weak"]), f"{urls['weak']}/v1/fake/requests"),
            _process(serve, f"{proxy}/health"),
        ):
            models = _ask(proxy, prompts)
            received = {arm: httpx.get(f"{urls[arm]}/v1/fake/requests").json() for arm in urls}
            budget = httpx.get(f"{proxy}/metrics").text.split("\ncomputealloc_budget ")[1]
    finally:
        del ENV["STRONG_KEY"]
    assert float(budget.split()[0]) == BUDGET
    assert received["strong"]["requests"] == models.count(STRONG) > 0
    strong = received["strong"]["bodies"]
    assert {b["model"] for b in strong} == {"upstream-gpt"}
    assert all(b["reasoning_effort"] == "low" and b["max_tokens"] == 64 for b in strong)
    weak = received["weak"]["bodies"]
    assert {b["model"] for b in weak} == {WEAK}
    assert not any("reasoning_effort" in b for b in weak)


def test_serve_config_errors_name_the_file_and_the_key(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text(
        "policy: p.json\nbudget: -1\nport: 99999\narms:\n"
        "  - {name: a, url: 'ftp://x', params: {n: 3}}\n",
        encoding="utf-8",
    )
    done = subprocess.run([*CLI, "serve", "--config", str(config)], env=ENV, capture_output=True)
    out = done.stdout.decode()
    assert done.returncode == 2 and "Traceback" not in out
    assert f"Invalid serve settings ({config})" in " ".join(out.split())
    for expected in ("budget (--budget)", "port (--port)", "arms.0.url", "arms.0.params"):
        assert expected in out
