"""collect, fit and the backend against a real inference server (llama.cpp, a 270M GGUF).

Marked ``real_server``; they skip, naming what is missing, without the ``llama-server`` binary
or the model package (see ``tests/llama_server.py``). The model is a small base model: these
tests pin plumbing (n, usage, seeds, errors, resumption), not accuracy.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("aiohttp")
pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

import llama_server  # noqa: E402
from computealloc.data.backends import BackendError, OpenAIBackend, RetryPolicy  # noqa: E402
from computealloc.data.collect import run_collect  # noqa: E402
from computealloc.data.samples import read_samples  # noqa: E402
from computealloc.fitting.fit import fit_policy  # noqa: E402
from computealloc.serving.runtime import Runtime  # noqa: E402
from computealloc.serving.server import create_app  # noqa: E402
from fake_openai_server import running  # noqa: E402

pytestmark = pytest.mark.real_server

MAX_TOKENS = 16
SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(scope="session")
def llama_model() -> Path:
    reason = llama_server.missing()
    if reason is not None:
        pytest.skip(reason)
    return llama_server.model_file()


@pytest.fixture(scope="session")
def llama(llama_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of a llama-server shared by the session."""
    server = llama_server.LlamaServer(llama_model, tmp_path_factory.mktemp("llama") / "log")
    yield server.url
    server.kill()


def _queries(path: Path, count: int) -> Path:
    """Few-shot sums the base model continues; some samples get them right."""
    lines = [
        {
            "query_id": f"q{i}",
            "prompt": f"1 + 1 = 2. The answer is 2.\n2 + 3 = 5. The answer is 5.\n{i} + {i + 2} =",
            "gold": str(2 * i + 2),
        }
        for i in range(count)
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def _args(url: str, **kw: object) -> dict[str, object]:
    args = {"n": 4, "base_url": url, "model": llama_server.MODEL, "max_tokens": MAX_TOKENS}
    return {**args, "temperature": 1.0, "seed": 1, "concurrency": 4, **kw}


@pytest.fixture(scope="session")
def reference_log(llama: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 queries x 4 samples collected with single requests, seed 1."""
    folder = tmp_path_factory.mktemp("reference")
    out = folder / "log.jsonl"
    run_collect(_queries(folder / "queries.jsonl", 6), out, **_args(llama, use_n=False))
    return out


def _check_log(path: Path, queries: int, n: int) -> list[dict[str, object]]:
    """Rows of a collected log, checked: n per query, no duplicates, tokens that add up."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    keys = {(r["query_id"], r["sample_idx"]) for r in rows}
    assert len(rows) == len(keys) == queries * n
    assert keys == {(f"q{i}", j) for i in range(queries) for j in range(n)}
    for row in rows:
        tokens = row["tokens"]
        assert isinstance(tokens, int)
        if row["finish_reason"] == "length":
            assert tokens == MAX_TOKENS, row
        else:
            assert 1 <= tokens <= MAX_TOKENS, row
    return rows


def test_collect_with_single_requests_gives_n_rows_and_exact_tokens(reference_log):
    rows = _check_log(reference_log, 6, 4)
    assert any(r["finish_reason"] == "length" for r in rows)
    assert len({r["response"] for r in rows}) > 6  # seeds j = 1..4 differ within a query


def test_collect_with_n_in_one_request_counts_the_tokens_of_every_choice(llama, tmp_path, caplog):
    # llama-server reports usage.completion_tokens of one choice only (about 1/n of the truth).
    out = tmp_path / "log.jsonl"
    with caplog.at_level("WARNING"):
        queries = _queries(tmp_path / "q.jsonl", 3)
        result = run_collect(queries, out, **_args(llama, use_n=True, concurrency=2))
    rows = _check_log(out, 3, 4)
    assert result.output_tokens == sum(int(r["tokens"]) for r in rows)  # type: ignore[call-overload]
    assert [r.getMessage() for r in caplog.records if "counts one choice" in r.getMessage()]


def test_collect_resumes_after_sigkill(llama, tmp_path):
    queries, killed = _queries(tmp_path / "q.jsonl", 6), tmp_path / "killed.jsonl"
    args = _args(llama, use_n=False)
    script = (
        "import json, sys; from computealloc.data.collect import run_collect; "
        "run_collect(sys.argv[1], sys.argv[2], **json.loads(sys.argv[3]))"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    command = [sys.executable, "-c", script, str(queries), str(killed), json.dumps(args)]
    proc = subprocess.Popen(command, env=env)
    deadline = time.monotonic() + 120
    while not (killed.exists() and killed.read_bytes().count(b"\n") >= 8):
        assert proc.poll() is None and time.monotonic() < deadline, "collect ended early"
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    at_kill = killed.read_bytes().splitlines(keepends=True)
    complete = len(at_kill) // 4  # whole groups: each query is one write of its 4 lines
    assert 2 <= complete < 6, "the run finished before the kill"
    result = run_collect(queries, killed, **args)
    assert result.n_resumed == complete and result.n_collected == 6 - complete
    _check_log(killed, 6, 4)
    final = set(killed.read_bytes().splitlines(keepends=True))
    assert set(at_kill[: 4 * complete]) <= final  # the samples written before are kept as they were


def test_a_seed_reproduces_a_sample(llama):
    # One request at a time: llama.cpp's batched decoding of concurrent requests is not
    # bitwise reproducible, so a seed pins a sample only when nothing else is decoded with it.
    prompt = "Once upon a time"
    texts = [_sample(llama, prompt, 1, max_tokens=MAX_TOKENS, seed=7)[0][0].text for _ in range(2)]
    assert texts[0] == texts[1] and texts[0]


def test_fit_on_the_collected_log_prices_tokens_as_sampled(reference_log):
    log = read_samples(reference_log)
    actions = "majority@1,majority@2,majority@4"
    fitted = fit_policy(
        log, budget=2.0 * MAX_TOKENS, method="value", cost="tokens", actions=actions
    )
    mean_tokens = float(log.samples["tokens"].mean())
    expected = np.array([1, 2, 4]) * mean_tokens
    np.testing.assert_allclose(fitted.policy.costs_, expected, rtol=0.25)
    assert fitted.test_cost <= 4 * MAX_TOKENS


def _sample(url: str, prompt: str, n: int, **params: object) -> tuple[list, OpenAIBackend]:  # type: ignore[type-arg]
    backend = OpenAIBackend(url, llama_server.MODEL, retry=RetryPolicy(max_attempts=3))

    async def main() -> list:  # type: ignore[type-arg]
        async with backend:
            return await backend.sample(prompt, n, params=params)

    return asyncio.run(main()), backend


def test_a_context_overflow_is_the_servers_400_at_once(llama):
    # 1,500 words overflow a slot's 1,024 tokens; before, the 400 was read as "n refused".
    backend = OpenAIBackend(llama, llama_server.MODEL, retry=RetryPolicy(max_attempts=3))

    async def main() -> None:
        async with backend:
            await backend.sample("word " * 1500, 4, params={"max_tokens": 4})

    with pytest.raises(BackendError, match="exceeds the available context size") as info:
        asyncio.run(main())
    assert info.value.status_code == 400 and not info.value.retryable
    assert backend.stats.requests == 1 and backend.stats.n_fallbacks == 0


def test_n_above_the_slot_count_falls_back_to_single_requests(llama):
    got, backend = _sample(llama, "Count: 1, 2,", llama_server.SLOTS + 1, max_tokens=4, seed=0)
    assert len(got) == llama_server.SLOTS + 1
    assert backend.stats.n_fallbacks == 1
    assert backend.stats.requests == 1 + llama_server.SLOTS + 1
    assert all(c.prompt_tokens and c.prompt_tokens > 0 for c in got)


# --- the proxy in front of the real server --------------------------------------------------


class Recording:
    """The real backend, with every completion it returned kept (to check usage against)."""

    def __init__(self, inner: OpenAIBackend) -> None:
        self.inner, self.model, self.drawn = inner, inner.model, []  # type: ignore[var-annotated]

    async def sample(self, prompt, n, *, params=None):  # type: ignore[no-untyped-def]
        got = await self.inner.sample(prompt, n, params=params)
        self.drawn.extend(got)
        return got

    async def aclose(self) -> None:
        await self.inner.aclose()


def _serve(url: str, policy, *, retry=None, timeout=60.0, max_tokens=MAX_TOKENS, temperature=1.0):  # type: ignore[no-untyped-def]
    backend = OpenAIBackend(
        url, llama_server.MODEL, timeout=timeout, retry=retry or RetryPolicy(max_attempts=3)
    )
    recording = Recording(backend)
    runtime = Runtime(policy, recording, budget=2.0, temperature=temperature, max_tokens=max_tokens)  # type: ignore[arg-type]
    return running(create_app(runtime)), runtime, recording


@pytest.fixture(scope="module")
def policy(reference_log):
    log = read_samples(reference_log)
    return fit_policy(log, budget=2.0, actions="majority@1,majority@2,majority@4").policy


def _metrics(proxy: str) -> dict[str, float]:
    text = httpx.get(proxy.removesuffix("/v1") + "/metrics").text
    return {m[1]: float(m[2]) for m in re.finditer(r"^(computealloc_\w+) (\S+)$", text, re.M)}


def test_serve_with_the_official_client_forwards_the_conversation_and_counts_usage(llama, policy):
    openai = pytest.importorskip("openai")
    question = {"role": "user", "content": "Once upon a time"}
    system = {"role": "system", "content": "You tell long stories about a dragon named Bob."}
    earlier = [{"role": "user", "content": "Hello there"}, {"role": "assistant", "content": "Hi!"}]
    context, runtime, recording = _serve(llama, policy)
    with context as proxy:
        client = openai.OpenAI(base_url=proxy, api_key="k", max_retries=0)
        plain = client.chat.completions.create(model="x", messages=[question], n=3)
        with_system = client.chat.completions.create(model="x", messages=[system, question])
        stream = client.chat.completions.create(
            model="x",
            messages=[system, *earlier, question],
            stream=True,
            stream_options={"include_usage": True},
            temperature=0.0,
        )
        chunks = list(stream)
        metrics = _metrics(proxy)
    # the system prompt and the earlier turns reach the model: they add prompt tokens
    usages = [plain.usage, with_system.usage, chunks[-1].usage]
    assert 0 < usages[0].prompt_tokens < usages[1].prompt_tokens < usages[2].prompt_tokens
    # usage counts every sample's tokens; a sample cut on length has exactly max_tokens
    assert all(
        c.output_tokens == MAX_TOKENS for c in recording.drawn if c.finish_reason == "length"
    )
    assert sum(u.completion_tokens for u in usages) == sum(c.output_tokens for c in recording.drawn)
    assert metrics["computealloc_output_tokens_total"] == sum(u.completion_tokens for u in usages)
    assert metrics["computealloc_prompt_tokens_total"] == sum(u.prompt_tokens for u in usages)
    assert runtime.ledger.samples == len(recording.drawn)
    # n = 3: distinct answers (or fewer, said so); the stream: text, finish, the extension
    extension = plain.model_extra["computealloc"]
    assert len(plain.choices) == 3 or extension["overrides"]["n"]["used"] == len(plain.choices)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    streamed = next(
        c.model_extra["computealloc"] for c in chunks if "computealloc" in c.model_extra
    )
    assert streamed["overrides"]["temperature"]["used"] == 1.0


def test_serve_gives_an_answer_that_follows_the_system_message(llama, policy):
    openai = pytest.importorskip("openai")
    context, _, _ = _serve(llama, policy, temperature=0.0)
    question = {"role": "user", "content": "What is the secret word?"}
    with context as proxy:
        client = openai.OpenAI(base_url=proxy, api_key="k", max_retries=0)
        for word in ("MANGO", "PIANO"):
            system = {"role": "system", "content": f"The secret word is {word}."}
            reply = client.chat.completions.create(model="x", messages=[system, question])
            assert word in (reply.choices[0].message.content or "")


def test_serve_answers_a_context_overflow_with_the_servers_400_at_once(llama, policy):
    openai = pytest.importorskip("openai")
    context, _, recording = _serve(llama, policy)
    with context as proxy:
        client = openai.OpenAI(base_url=proxy, api_key="k", max_retries=0)
        with pytest.raises(openai.BadRequestError, match="exceeds the available context size"):
            client.chat.completions.create(
                model="x", messages=[{"role": "user", "content": "word " * 1500}]
            )
    stats = recording.inner.stats
    assert stats.requests == 1 and stats.retries == 0 and not recording.drawn


def test_serve_answers_502_when_the_server_is_killed_and_504_on_a_timeout(
    llama, llama_model, policy, tmp_path
):
    openai = pytest.importorskip("openai")
    server = llama_server.LlamaServer(llama_model, tmp_path / "log")
    fast = RetryPolicy(max_attempts=2, initial_delay=0.01, max_delay=0.05)
    try:
        context, _, _ = _serve(server.url, policy, retry=fast)
        with context as proxy:
            client = openai.OpenAI(base_url=proxy, api_key="k", max_retries=0)
            ask = [{"role": "user", "content": "Hi"}]
            assert client.chat.completions.create(model="x", messages=ask).choices
            server.kill()
            with pytest.raises(openai.APIStatusError, match="The backend failed") as info:
                client.chat.completions.create(model="x", messages=ask)
        assert info.value.status_code == 502
    finally:
        server.kill()
    slow, _, _ = _serve(llama, policy, retry=fast, timeout=0.3, max_tokens=2000)
    with slow as proxy:
        client = openai.OpenAI(base_url=proxy, api_key="k", max_retries=0)
        with pytest.raises(openai.APIStatusError, match="timed out") as info:
            client.chat.completions.create(
                model="x", messages=[{"role": "user", "content": "Once upon a time"}]
            )
    assert info.value.status_code == 504
