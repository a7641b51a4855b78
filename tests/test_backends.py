"""Backends: retry helper, token split, the OpenAI-compatible client (against a fake server on
loopback) and the replay of a sample log."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import random
import socket
from collections import Counter
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("aiohttp")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from computealloc.data.backends import (
    BackendError,
    Completion,
    OpenAIBackend,
    ReplayBackend,
    RetryPolicy,
    UnknownPromptError,
    gather_or_cancel,
    retry_async,
)
from computealloc.data.backends.openai_compat import (
    _env_proxy,
    _refuses_n,
    _undercounted,
    split_output_tokens,
)
from computealloc.data.samples import read_samples
from fake_openai_server import ChatRequest, make_app, replaying, running, scripted

FAST = RetryPolicy(max_attempts=8, initial_delay=0.001, max_delay=0.01)
#: The two transports of OpenAIBackend: plain HTTP, and the official openai client.
TRANSPORTS = [
    "aiohttp",
    pytest.param(
        "openai",
        marks=pytest.mark.skipif(
            importlib.util.find_spec("openai") is None,
            reason="needs the openai package",
        ),
    ),
]


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


async def _sample_all(backend, prompts, n, **kw):  # type: ignore[no-untyped-def]
    async with backend:
        return await asyncio.gather(*(backend.sample(p, n, **kw) for p in prompts))


# --- retry helper -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"max_attempts": 0},
            r"'max_attempts' parameter of RetryPolicy must be an int in \[1, inf\)",
        ),
        ({"max_attempts": 2.0}, r"'max_attempts' .* Got 2.0 instead"),
        ({"initial_delay": -1.0}, r"'initial_delay' .* a float in \[0.0, inf\)"),
        ({"initial_delay": 2.0, "max_delay": 1.0}, r"'max_delay' .* a float in \[2.0, inf\)"),
        ({"multiplier": 0.5}, r"'multiplier' .* a float in \[1.0, inf\)"),
        ({"jitter": 1.5}, r"'jitter' .* a float in \[0.0, 1.0\]. Got 1.5 instead"),
        ({"jitter": True}, r"'jitter' .* Got True instead"),
    ],
)
def test_retry_policy_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RetryPolicy(**kwargs)


def test_retry_delay_is_exponential_capped_and_honours_retry_after():
    policy = RetryPolicy(initial_delay=0.5, max_delay=3.0, multiplier=2.0, jitter=0.0)
    err = BackendError("x", retryable=True)
    rng = random.Random(0)
    assert [policy.delay(k, err, rng) for k in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    slow = BackendError("x", retryable=True, retry_after=1.7)
    assert policy.delay(0, slow, rng) == 1.7


def test_retry_jitter_stays_within_its_share():
    policy = RetryPolicy(initial_delay=1.0, max_delay=1.0, jitter=0.25)
    rng = random.Random(1)
    waits = [policy.delay(0, BackendError("x", retryable=True), rng) for _ in range(200)]
    assert 0.75 <= min(waits) < 0.8 and 0.95 < max(waits) <= 1.0


def _flaky(errors):  # type: ignore[no-untyped-def]
    calls = []

    async def call():  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return "ok"

    return call, calls


def test_retry_async_retries_retryable_errors_until_success():
    call, calls = _flaky([BackendError("a", retryable=True)] * 3)
    seen = []
    out = run(retry_async(call, FAST, on_retry=lambda k, e, w: seen.append((k, w))))
    assert out == "ok" and len(calls) == 4
    assert [k for k, _ in seen] == [0, 1, 2] and all(0 <= w <= 0.01 for _, w in seen)


def test_retry_async_raises_non_retryable_at_once():
    call, calls = _flaky([BackendError("bad", retryable=False, status_code=400)])
    with pytest.raises(BackendError, match="bad"):
        run(retry_async(call, FAST))
    assert len(calls) == 1


def test_retry_async_raises_last_error_after_max_attempts():
    errors = [BackendError(f"e{k}", retryable=True) for k in range(5)]
    call, calls = _flaky(errors)
    with pytest.raises(BackendError, match="e2"):
        run(retry_async(call, RetryPolicy(max_attempts=3, initial_delay=0.0, max_delay=0.0)))
    assert len(calls) == 3


def test_gather_or_cancel_cancels_siblings_of_a_failure():
    cancelled = []

    async def slow():  # type: ignore[no-untyped-def]
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def boom():  # type: ignore[no-untyped-def]
        await asyncio.sleep(0.01)
        raise BackendError("boom", retryable=False)

    with pytest.raises(BackendError, match="boom"):
        run(gather_or_cancel([slow(), boom(), slow()]))
    assert cancelled == [True, True]


def test_gather_or_cancel_keeps_argument_order():
    async def value(v, wait):  # type: ignore[no-untyped-def]
        await asyncio.sleep(wait)
        return v

    assert run(gather_or_cancel([value(1, 0.02), value(2, 0.0), value(3, 0.01)])) == [1, 2, 3]
    assert run(gather_or_cancel([])) == []


# --- output-token split ---------------------------------------------------------------------


def _largest_remainder(total: int, texts: list[str]) -> list[int]:
    """Independent reference with exact fractions (ties to the earlier choice)."""
    weights = [len(t) for t in texts] if any(texts) else [1] * len(texts)
    shares = [Fraction(total * w, sum(weights)) for w in weights]
    counts = [int(s) for s in shares]
    by_remainder = sorted(range(len(texts)), key=lambda j: (-(shares[j] - counts[j]), j))
    for j in by_remainder[: total - sum(counts)]:
        counts[j] += 1
    return counts


@given(
    st.integers(0, 10_000),
    st.lists(st.text(alphabet="ab ", max_size=30), min_size=1, max_size=8),
)
def test_split_output_tokens_matches_exact_largest_remainder(total, texts):
    got = split_output_tokens(total, texts)
    assert got == _largest_remainder(total, texts)
    assert sum(got) == total


def test_split_output_tokens_without_usage_is_unknown():
    assert split_output_tokens(None, ["a", "b"]) == [None, None]
    assert split_output_tokens(-1, ["a"]) == [None]


# --- OpenAI-compatible backend against the fake server ---------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"base_url": ""}, r"'base_url' parameter of OpenAIBackend must be a non-empty str"),
        ({"model": 3}, r"'model' parameter of OpenAIBackend must be a non-empty str. Got 3"),
        ({"timeout": 0}, r"'timeout' .* a float in \(0, inf\). Got 0 instead"),
        ({"use_n": "yes"}, r"'use_n' .* True, False or 'auto'. Got 'yes' instead"),
        ({"max_concurrency": 0}, r"'max_concurrency' .* an int in \[1, inf\). Got 0 instead"),
        ({"client": "httpx"}, r"'client' .* 'aiohttp', 'openai' or an openai.AsyncOpenAI"),
    ],
)
def test_openai_backend_validation(kwargs, match):
    args = {"base_url": "http://127.0.0.1:9/v1", "model": "m", **kwargs}
    with pytest.raises(ValueError, match=match):
        OpenAIBackend(args.pop("base_url"), args.pop("model"), **args)


def test_a_configured_official_client_is_used_and_left_open():
    openai = pytest.importorskip("openai")
    app = make_app()
    with running(app) as url:
        mine = openai.AsyncOpenAI(base_url=url, api_key="k", max_retries=5)

        async def sample():  # type: ignore[no-untyped-def]
            async with OpenAIBackend("http://unused.invalid/v1", "m", client=mine) as backend:
                got = await backend.sample("q", 2, params={"seed": 1})
            assert not mine.is_closed()  # the backend did not build it, so it leaves it open
            await mine.close()
            return got

        got = run(sample())
    assert len(got) == 2 and app.state.requests == [2]


def test_openai_backend_rejects_bad_n():
    backend = OpenAIBackend("http://127.0.0.1:9/v1", "m")
    with pytest.raises(ValueError, match=r"'n' parameter of OpenAIBackend.sample .* Got 0"):
        run(backend.sample("p", 0))


@pytest.mark.parametrize("client", TRANSPORTS)
def test_one_request_with_n_and_tokens_split_from_usage(client):
    app = make_app()
    with running(app) as url:
        backend = OpenAIBackend(url, "m", retry=FAST, client=client)
        [got] = run(_sample_all(backend, ["q"], 5, params={"seed": 3}))
    assert app.state.requests == [5]
    request = ChatRequest(model="m", messages=[{"role": "user", "content": "q"}], n=5, seed=3)
    expected = run(scripted(request, 5))
    assert [c.text for c in got] == [c.text for c in expected]
    total = sum(c.output_tokens for c in expected)
    assert [c.output_tokens for c in got] == split_output_tokens(total, [c.text for c in got])
    assert {c.finish_reason for c in got} == {"stop"}


def test_single_requests_carry_consecutive_seeds_and_exact_tokens():
    app = make_app()
    with running(app) as url:
        [got] = run(
            _sample_all(
                OpenAIBackend(url, "m", use_n=False, retry=FAST), ["q"], 3, params={"seed": 7}
            )
        )
    assert app.state.requests == [1, 1, 1]
    expected = [
        run(scripted(ChatRequest(model="m", messages=[{"content": "q"}], seed=7 + j), 1))[0]
        for j in range(3)
    ]
    assert got == [dataclasses.replace(c, prompt_tokens=1) for c in expected]


@pytest.mark.parametrize("client", TRANSPORTS)
def test_the_whole_conversation_and_the_params_reach_the_server(client):
    app = make_app()
    conversation = [
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Salut"},
        {"role": "user", "content": "q"},
    ]
    params = {"temperature": 0.3, "max_tokens": 9, "seed": 4, "chat_template_kwargs": {"x": 1}}
    with running(app) as url:
        backend = OpenAIBackend(url, "m", retry=FAST, client=client, system_prompt="ignored")
        [got] = run(_sample_all(backend, [conversation], 2, params=params))
        [plain] = run(_sample_all(OpenAIBackend(url, "m", system_prompt="S"), ["q"], 1))
    first, second = app.state.bodies
    assert first == {**params, "model": "m", "messages": conversation, "n": 2}
    assert second["messages"] == [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "q"},
    ]
    assert "temperature" not in second and "seed" not in second  # the server's defaults
    assert len(got) == 2 and {c.prompt_tokens for c in got + plain} == {1}


def test_reserved_or_malformed_params_and_prompts_are_refused():
    backend = OpenAIBackend("http://127.0.0.1:9/v1", "m")
    with pytest.raises(ValueError, match=r"'params' parameter of OpenAIBackend.sample must not"):
        run(backend.sample("p", 1, params={"n": 3}))
    with pytest.raises(ValueError, match=r"'params' parameter .* must be a mapping"):
        run(backend.sample("p", 1, params=[("seed", 1)]))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"A prompt must be a str or a non-empty sequence"):
        run(backend.sample([{"content": "no role"}], 1))


@pytest.mark.parametrize("client", TRANSPORTS)
def test_faults_are_retried_until_every_sample_arrives(client):
    app = make_app(fault_rate=0.3, delay_s=0.4, seed=5)
    prompts = [f"q{i}" for i in range(30)]
    with running(app) as base:
        backend = OpenAIBackend(base, "m", timeout=0.2, retry=FAST, client=client)
        got = run(_sample_all(backend, prompts, 4, params={"seed": 1}))
    assert [len(g) for g in got] == [4] * 30
    faults = sum(app.state.faults.values())
    assert set(app.state.faults) == {"500", "429", "timeout", "malformed"}
    # every fault is retried; a slow answer under CPU load may time out and be retried too
    retries = backend.stats.retries
    assert retries >= faults and backend.stats.requests == 30 + retries
    assert len(app.state.requests) == 30 + retries


@pytest.mark.parametrize("client", TRANSPORTS)
def test_rejected_n_falls_back_to_single_requests_and_auto_remembers(client):
    app = make_app(n_mode="reject")
    with running(app) as url:
        backend = OpenAIBackend(url, "m", retry=FAST, client=client)
        run(_sample_all(backend, ["a"], 4))
        first = list(app.state.requests)
        backend2 = OpenAIBackend(url, "m", retry=FAST)

        async def twice():  # type: ignore[no-untyped-def]
            async with backend2:
                return [await backend2.sample(p, 4) for p in ("a", "b")]

        got = run(twice())
    assert first == [4, 1, 1, 1, 1]
    assert app.state.requests[5:] == [4] + [1] * 8
    assert [len(g) for g in got] == [4, 4] and backend2.stats.n_fallbacks == 1


@pytest.mark.parametrize("use_n", [True, "auto"])
def test_undercounted_usage_of_n_choices_falls_back_to_single_requests(use_n, caplog):
    app = make_app(n_mode="undercount")
    with running(app) as url, caplog.at_level("WARNING"):
        backend = OpenAIBackend(url, "m", use_n=use_n, retry=FAST)

        async def twice():  # type: ignore[no-untyped-def]
            async with backend:
                return [
                    await backend.sample("q", 3, params={"seed": s, "max_tokens": 4})
                    for s in (0, 10)
                ]

        got = run(twice())
    assert app.state.requests == [3, 1, 1, 1, 1, 1, 1]
    exact = [
        run(
            scripted(
                ChatRequest(model="m", messages=[{"content": "q"}], seed=s + j, max_tokens=4), 1
            )
        )[0]
        for s in (0, 10)
        for j in range(3)
    ]
    assert {c.finish_reason for c in exact} == {"length"}
    assert [c.output_tokens for g in got for c in g] == [c.output_tokens for c in exact]
    assert backend.stats.undercounts == 1 and backend.stats.n_fallbacks == 1
    [warning] = [r for r in caplog.records if "counts one choice" in r.getMessage()]
    assert "3 choices" in warning.getMessage()


@pytest.mark.parametrize(
    ("status", "detail", "refused"),
    [
        (400, "Field 'n': Value must be between 1 <= value <= 4, but got 5", True),  # llama.cpp
        (400, "n must be 1 when using greedy sampling.", True),
        (422, 'the "n" parameter is not supported', True),
        (501, "Not Implemented", True),
        (400, "request (1509 tokens) exceeds the available context size (1024 tokens)", False),
        (400, "Field 'max_tokens': type must be number, but is string", False),
        (422, "Input should be less than or equal to 2 (n_ctx too small)", False),
        (500, "n must be 1", False),
    ],
)
def test_only_a_refusal_that_names_n_counts_as_n_refused(status, detail, refused):
    error = BackendError(
        f"u: HTTP {status}: {detail}", retryable=False, status_code=status, detail=detail
    )
    assert _refuses_n(error) is refused


def test_an_undercount_needs_usage_below_what_the_choices_hold():
    def reply(tokens, reasons, texts=("a", "b")):  # type: ignore[no-untyped-def]
        return [
            Completion(t, output_tokens=k, finish_reason=r)
            for t, k, r in zip(texts, tokens, reasons, strict=True)
        ]

    assert _undercounted(reply([8, 8], ["length", "length"]), {"max_tokens": 16})
    assert _undercounted(reply([1, 0], ["stop", "stop"]), {})  # two texts need two tokens
    assert not _undercounted(reply([16, 3], ["length", "stop"]), {"max_tokens": 16})
    assert not _undercounted(reply([8, 8], ["length", "length"]), {})  # no cap known
    assert not _undercounted(reply([0, 0], ["stop", "stop"], ("", "")), {})
    assert not _undercounted(reply([None, None], ["length", "length"]), {"max_tokens": 16})
    assert not _undercounted(reply([3], ["length"], ("a",)), {"max_tokens": 16})  # one choice


def test_a_4xx_about_another_field_is_raised_not_taken_for_a_refused_n():
    app = make_app()
    with running(app) as url, pytest.raises(BackendError, match="HTTP 422") as info:
        run(_sample_all(OpenAIBackend(url, "m", retry=FAST), ["q"], 4, params={"temperature": 9}))
    assert app.state.requests == [4] and not info.value.retryable  # no single requests after it


def test_a_500_that_is_a_validation_error_of_the_request_is_not_retried():
    app = make_app(validation_status=500)
    with running(app) as url:
        backend = OpenAIBackend(url, "m", retry=FAST)
        with pytest.raises(BackendError, match=r"HTTP 500: 1 validation error") as info:
            run(_sample_all(backend, ["q"], 1, params={"temperature": 9}))
    assert app.state.requests == [1] and not info.value.retryable
    assert info.value.detail is not None and info.value.detail.startswith("1 validation error")


def test_short_answer_to_n_is_topped_up_and_use_n_true_keeps_trying():
    app = make_app(n_mode="ignore")
    with running(app) as url:
        backend = OpenAIBackend(url, "m", use_n=True, retry=FAST)

        async def twice():  # type: ignore[no-untyped-def]
            async with backend:
                return [await backend.sample(p, 4, params={"seed": 0}) for p in ("a", "b")]

        got = run(twice())
    assert app.state.requests == [4, 1, 1, 1] * 2
    assert [len(g) for g in got] == [4, 4] and backend.stats.n_fallbacks == 2


@pytest.mark.parametrize("client", TRANSPORTS)
def test_non_retryable_status_is_raised_at_once(client):
    async def unknown(request, n):  # type: ignore[no-untyped-def]
        raise UnknownPromptError(request.prompt)

    app = make_app(unknown)
    with running(app) as url, pytest.raises(BackendError, match="HTTP 404") as info:
        run(_sample_all(OpenAIBackend(url, "m", retry=FAST, client=client), ["q"], 1))
    assert info.value.status_code == 404 and not info.value.retryable
    assert str(info.value).endswith("HTTP 404: No query of the replayed log has the prompt 'q'.")
    assert app.state.requests == [1]


def test_a_refused_connection_is_retried_then_raised():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    backend = OpenAIBackend(url, "m", retry=RetryPolicy(max_attempts=2, initial_delay=0.0))
    with pytest.raises(BackendError, match=r"127\.0\.0\.1.*ClientConnectorError") as info:
        run(_sample_all(backend, ["q"], 1))
    assert info.value.retryable and info.value.status_code is None
    assert backend.stats.requests == 2 and backend.stats.retries == 1


def test_a_backend_serves_from_one_event_loop_after_another():
    app = make_app()
    with running(app) as url:
        backend = OpenAIBackend(url, "m", use_n=False, retry=FAST)
        first = run(backend.sample("q", 2, params={"seed": 0}))
        second = run(_sample_all(backend, ["q"], 2, params={"seed": 0}))[0]
    assert first == second and app.state.requests == [1, 1, 1, 1]


def test_requests_go_through_the_proxy_named_by_the_environment(monkeypatch):
    app = make_app()  # a fake server answers the proxied (absolute-URL) request itself
    with running(app) as proxy:
        for name in ("HTTP_PROXY", "http_proxy"):
            monkeypatch.setenv(name, proxy.removesuffix("/v1"))
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        backend = OpenAIBackend("http://upstream.invalid/v1", "m", retry=FAST)
        [got] = run(_sample_all(backend, ["q"], 1))
    assert len(got) == 1 and app.state.requests == [1]
    monkeypatch.setenv("no_proxy", "upstream.invalid")
    assert _env_proxy("http://upstream.invalid/v1") is None


@pytest.mark.parametrize("client", TRANSPORTS)
@pytest.mark.parametrize(
    ("fault", "status"), [("500", 500), ("429", 429), ("malformed", None), ("timeout", None)]
)
def test_persistent_fault_raises_retryable_error_after_max_attempts(fault, status, client):
    app = make_app(fault_rate=1.0, faults=(fault,), delay_s=0.3)
    policy = RetryPolicy(max_attempts=3, initial_delay=0.0, max_delay=0.0)
    with running(app) as url, pytest.raises(BackendError) as info:
        # a short timeout only where the fault is one: elsewhere, under load, an attempt could
        # time out on the client before it reaches the server, and the count below would miss it
        timeout = 0.1 if fault == "timeout" else 10.0
        backend = OpenAIBackend(url, "m", timeout=timeout, retry=policy, client=client)
        run(_sample_all(backend, ["q"], 1))
    assert info.value.retryable and info.value.status_code == status
    # a timeout is recognisable by its cause (the proxy answers 504 for it)
    assert isinstance(info.value.__cause__, TimeoutError) == (fault == "timeout")
    assert app.state.requests == [1, 1, 1]


# --- replay backend -------------------------------------------------------------------------


def _log():  # type: ignore[no-untyped-def]
    """Two queries (5 and 3 samples) of model 'm'; responses on q0 only."""
    rows = [
        {
            "query_id": "q0",
            "sample_idx": j,
            "answer": str(j),
            "correct": j == 0,
            "tokens": 10 + j,
            "response": f"resp {j}",
            "prompt": "  What is zero? ",
            "gold": "0",
        }
        for j in range(5)
    ] + [
        {"query_id": "q1", "sample_idx": j, "answer": str(j), "correct": None, "prompt": "One?"}
        for j in range(3)
    ]
    return read_samples(pd.DataFrame(rows).assign(model="m"))


async def _draws(backend, prompt, sizes):  # type: ignore[no-untyped-def]
    return [c.answer for k in sizes for c in await backend.sample(prompt, k)]


def test_replay_serves_without_replacement_then_cycles():
    backend = ReplayBackend(_log(), seed=3)
    answers = run(_draws(backend, "What is zero?", [2, 2, 2, 4]))
    assert sorted(answers[:5]) == ["0", "1", "2", "3", "4"]
    assert sorted(answers[5:10]) == ["0", "1", "2", "3", "4"]


def test_replay_order_depends_only_on_seed_and_query():
    a, b = ReplayBackend(_log(), seed=1), ReplayBackend(_log(), seed=1)

    async def interleaved():  # type: ignore[no-untyped-def]
        out = []
        for _ in range(4):
            out += [c.answer for c in await b.sample("What is zero?", 2)]
            await b.sample("One?", 2)
        return out

    assert run(_draws(a, "What is zero?", [8])) == run(interleaved())
    orders = {
        tuple(run(_draws(ReplayBackend(_log(), seed=s), "What is zero?", [5]))) for s in range(6)
    }
    assert len(orders) > 1


def test_replay_completion_fields_come_from_the_log():
    backend = ReplayBackend(_log(), seed=0)
    by_answer = {c.answer: c for c in run(backend.sample("What is zero?", 5))}
    assert by_answer["0"].text == "resp 0" and by_answer["0"].output_tokens == 10
    assert by_answer["0"].correct is True and by_answer["3"].correct is False
    assert all(c.from_log for c in by_answer.values())
    one = run(backend.sample(" One?\n", 3))
    assert sorted(c.text for c in one) == ["0", "1", "2"]
    assert {c.output_tokens for c in one} == {None} and {c.correct for c in one} == {None}


def test_replay_matches_a_conversation_by_its_last_user_turn():
    conversation = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "One?"},
        {"role": "assistant", "content": "1"},
        {
            "role": "user",
            "content": [{"type": "text", "text": "What is "}, {"type": "text", "text": "zero?"}],
        },
    ]
    a, b = ReplayBackend(_log(), seed=2), ReplayBackend(_log(), seed=2)
    by_text = run(a.sample("What is zero?", 3))
    by_conversation = run(b.sample(conversation, 3, params={"temperature": 0.0}))
    assert by_conversation == by_text


def test_replay_selects_the_model_of_a_multi_model_log():
    frame = _log().to_frame()
    log = read_samples(pd.concat([frame, frame.assign(model="big", answer="x")]))
    assert log.models == ["big", "m"]
    with pytest.raises(ValueError, match=r"'model' parameter of ReplayBackend must be one of"):
        ReplayBackend(log)
    big = ReplayBackend(log, "big")
    assert big.model == "big"
    assert {c.answer for c in run(big.sample("One?", 3))} == {"x"}


def test_replay_unknown_prompt_is_a_404_backend_error():
    backend = ReplayBackend(_log())
    with pytest.raises(UnknownPromptError, match="No query of the replayed log has the prompt"):
        run(backend.sample("What is two?", 1))
    err = UnknownPromptError("x" * 200)
    assert err.status_code == 404 and not err.retryable and "..." in str(err)


def test_replay_validation():
    with pytest.raises(ValueError, match=r"'seed' parameter of ReplayBackend must be an int in"):
        ReplayBackend(_log(), seed=-1)
    with pytest.raises(ValueError, match=r"'model' .* Got 'nope' instead"):
        ReplayBackend(_log(), "nope")
    with pytest.raises(ValueError, match=r"'n' parameter of ReplayBackend.sample"):
        run(ReplayBackend(_log()).sample("One?", 0))
    no_prompts = read_samples(pd.DataFrame({"query_id": ["a"], "sample_idx": [0], "answer": ["1"]}))
    with pytest.raises(ValueError, match="has no prompts"):
        ReplayBackend(no_prompts)


def test_replay_through_the_fake_server_serves_each_logged_sample_once():
    log = _log()
    app = make_app(replaying(ReplayBackend(log, seed=2)))
    with running(app) as url:
        [zero, one] = run(
            _sample_all(OpenAIBackend(url, "m", retry=FAST), ["What is zero?", "One?"], 5)
        )
    assert Counter(c.text for c in zero) == Counter(f"resp {j}" for j in range(5))
    counts = Counter(c.text for c in one)
    assert set(counts) == {"0", "1", "2"} and sorted(counts.values()) == [1, 2, 2]
    assert np.sum([c.output_tokens for c in zero]) == sum(10 + j for j in range(5))
