"""Budget forcing and checkpoint early exit (computealloc.data.forcing) against a fake reasoning
server that follows vLLM's and llama.cpp's continuation, and the continuation mechanics
against the real llama-server."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

import llama_server
from computealloc.data.backends import OpenAIBackend, RetryPolicy
from computealloc.data.forcing import (
    CONTINUATIONS,
    ThinkingPlan,
    Thought,
    answer_confidence,
    think,
)
from fake_openai_server import make_app, running
from fake_reasoning import trace_of

PROMPTS = [f"question {i}" for i in range(40)]


@pytest.fixture(scope="module", params=["vllm", "llama.cpp"])
def server(request: pytest.FixtureRequest) -> Iterator[tuple[str, str, list[int]]]:
    from fake_reasoning import reasoning

    served: list[int] = []
    with running(make_app(reasoning(request.param, served))) as url:
        yield url, request.param, served


def _think(url: str, dialect: str, prompt: str, plan: ThinkingPlan) -> Thought:
    async def main() -> Thought:
        backend = OpenAIBackend(url, "fake-r1", retry=RetryPolicy(max_attempts=1))
        try:
            return await think(backend, prompt, plan, continuation=CONTINUATIONS[dialect])
        finally:
            await backend.aclose()

    return asyncio.run(main())


def _expected(prompt: str, plan: ThinkingPlan) -> tuple[str, str, int, int]:
    """Brute force over the known trace: (stop, answer, thinking tokens, probes)."""
    trace = trace_of(prompt)
    seen: list[str] = []
    for i, cap in enumerate(plan.checkpoints):
        if cap >= len(trace.words):
            return "natural", trace.answers[-1], len(trace.words), len(seen)
        last = i == len(plan.checkpoints) - 1
        if plan.stable is None and plan.confidence is None and not last:
            continue
        seen.append(trace.answers[min(cap, trace.length)])
        if last:
            return "cap", seen[-1], cap, len(seen) - 1
        sure = math.exp(trace.logprobs[min(cap, trace.length)])
        if plan.confidence is not None and sure >= plan.confidence:
            return "confident", seen[-1], cap, len(seen) - 1
        window = seen[-plan.stable :] if plan.stable else []
        if plan.stable and len(window) == plan.stable and len(set(window)) == 1:
            return "settled", seen[-1], cap, len(seen) - 1
    raise AssertionError


PLANS = [
    ThinkingPlan((48,)),
    ThinkingPlan((10, 30, 60, 90), stable=2),
    ThinkingPlan((0, 10, 30, 60, 90), stable=2),  # 0: the answer without thinking first
    ThinkingPlan(tuple(range(8, 160, 8)), confidence=0.8),
    ThinkingPlan(tuple(range(8, 160, 8)), stable=3, confidence=0.9),
]


@pytest.mark.parametrize("plan", PLANS)
def test_thinking_plans_stop_answer_and_count_every_token(server, plan):
    url, dialect, served = server
    for prompt in PROMPTS:
        before = len(served)
        got = _think(url, dialect, prompt, plan)
        stop, answer, thinking, probes = _expected(prompt, plan)
        assert (got.stop, got.answer, got.think_tokens) == (stop, answer, thinking), prompt
        assert got.probe_tokens == probes  # one token per probe in the fake
        assert got.answer_tokens == (0 if stop == "natural" else 1)
        # the ledger's count is every token the server produced for this thought
        assert got.output_tokens == sum(served[before:])
        assert len(got.segments) == len(served) - before


def test_confidence_plans_record_each_probe_and_stop_both_ways(server):
    url, dialect, _ = server
    plan = ThinkingPlan(tuple(range(8, 160, 8)), stable=3, confidence=0.9)
    stops = set()
    for prompt in PROMPTS:
        got = _think(url, dialect, prompt, plan)
        trace = trace_of(prompt)
        expected = [
            (t, trace.answers[min(t, trace.length)], math.exp(trace.logprobs[min(t, trace.length)]))
            for t, _, _ in got.probes
        ]
        assert [tuple(p) for p in got.probes] == expected
        assert [p.think_tokens for p in got.probes] == list(plan.checkpoints[: len(got.probes)])
        stops.add(got.stop)
    assert stops == {"natural", "settled", "confident", "cap"}  # the brute force sees each rule


def test_a_confidence_plan_refuses_a_server_without_logprobs():
    from dataclasses import replace

    from computealloc.data.backends import BackendError
    from fake_reasoning import reasoning

    plain = reasoning("vllm", [])

    async def no_logprobs(request, n):  # type: ignore[no-untyped-def]
        return [replace(c, logprobs=None) for c in await plain(request, n)]

    plan = ThinkingPlan((4, 8), confidence=0.5)
    with running(make_app(no_logprobs)) as url:

        async def main() -> None:
            backend = OpenAIBackend(url, "fake-r1", retry=RetryPolicy(max_attempts=1))
            try:
                await think(
                    backend, "q", plan, continuation=CONTINUATIONS["vllm"], label="conf@0.5"
                )
            finally:
                await backend.aclose()

        with pytest.raises(BackendError, match=r"Arm 'conf@0.5' returned no token log-prob"):
            asyncio.run(main())
        # without a confidence rule the same server is fine
        assert _think(url, "vllm", "q", ThinkingPlan((4, 8), stable=1)).stop != "natural"


def test_a_plain_forced_answer_is_read_after_the_suffix():
    """A model that answers the default suffix's "Final answer:" with a bare " 7" (no
    \\boxed{}): the probes, the thought's answer, its confidence, the completion the runtime
    votes on and collect's checkpoint rows all read 7."""
    import re

    from computealloc.data.forcing import probe_trace
    from computealloc.estimation.voting import answer_of
    from fake_reasoning import reasoning

    boxed = reasoning("vllm", [])

    def plain(text: str) -> str:
        return re.sub(r"\\boxed\{(\d)\}", r"\1", text)

    async def respond(request, n):  # type: ignore[no-untyped-def]
        out = await boxed(request, n)
        return [
            replace(
                c,
                text=plain(c.text),
                logprobs=c.logprobs and tuple((plain(t), lp) for t, lp in c.logprobs),
            )
            for c in out
        ]

    plan = ThinkingPlan((8, 16), stable=1, logprobs=True)
    prompt = PROMPTS[0]
    trace = trace_of(prompt)
    with running(make_app(respond)) as url:
        got = _think(url, "vllm", prompt, plan)

        async def rows():  # type: ignore[no-untyped-def]
            backend = OpenAIBackend(url, "fake-r1", retry=RetryPolicy(max_attempts=1))
            try:
                return await probe_trace(
                    backend, prompt, (8,), max_tokens=16, continuation=CONTINUATIONS["vllm"]
                )
            finally:
                await backend.aclose()

        checkpoints, _ = asyncio.run(rows())
    assert (got.stop, got.answer, got.think_tokens) == ("settled", trace.answers[8], 8)
    assert answer_of(got.completion()) == got.answer  # what the runtime and collect read
    assert got.confidence == pytest.approx(math.exp(trace.logprobs[8]))
    assert [c.answer for c in checkpoints] == [trace.answers[8], trace.answers[16]]


def test_answer_confidence_on_hand_made_tokens():
    tokens = [(" The", -0.1), (" answer", -0.2), (" is", -0.05), (" \\boxed{", -0.3)]
    tokens += [("1", -0.5), ("2", -0.25), ("}.", -0.01)]
    # the answer "12" is spelled by tokens "1" and "2"
    assert answer_confidence(tokens, "12") == pytest.approx(math.exp(-0.75), abs=0)
    # "2" alone: the one token "2"
    assert answer_confidence(tokens, "2") == math.exp(-0.25)
    # a token that holds the answer and more counts whole: "ans" lies in " answer"
    assert answer_confidence(tokens, "ans") == math.exp(-0.2)
    # a span across a token boundary: "is \\b" overlaps " is" and " \\boxed{"
    assert answer_confidence(tokens, "is \\b") == pytest.approx(math.exp(-0.35), abs=1e-15)
    # the last occurrence wins
    twice = [("7", -2.0), (" then ", -0.1), ("7", -0.1)]
    assert answer_confidence(twice, "7") == math.exp(-0.1)
    # not in the text, or no answer: the geometric mean of the token probabilities
    mean = math.exp(sum(lp for _, lp in tokens) / len(tokens))
    assert answer_confidence(tokens, "1,2") == pytest.approx(mean, abs=1e-15)
    assert answer_confidence(tokens, None) == pytest.approx(mean, abs=1e-15)
    assert answer_confidence(tokens, "") == pytest.approx(mean, abs=1e-15)
    assert answer_confidence([], "4") == 0.0
    assert answer_confidence([("4", 0.0)], "4") == 1.0


def test_logprobs_are_parsed_only_when_well_formed():
    from computealloc.data.backends.openai_compat import _parse_response

    def reply(logprobs: object) -> bytes:
        choice = {"message": {"content": "a 4"}, "finish_reason": "stop", "logprobs": logprobs}
        return json.dumps({"choices": [choice], "usage": {"completion_tokens": 2}}).encode()

    good = {"content": [{"token": "a", "logprob": -0.5}, {"token": " 4", "logprob": 0}]}
    assert _parse_response(reply(good), "u")[0].logprobs == (("a", -0.5), (" 4", 0.0))
    for bad in [None, {}, {"content": None}, {"content": [{"token": "a"}]}, {"content": [1]}]:
        assert _parse_response(reply(bad), "u")[0].logprobs is None
    positive = {"content": [{"token": "a", "logprob": 0.5}]}
    assert _parse_response(reply(positive), "u")[0].logprobs is None


# --- streamed thoughts: reasoning deltas, probes at each checkpoint crossing -----------------


@pytest.fixture(scope="module", params=["vllm", "llama.cpp"])
def streaming(request: pytest.FixtureRequest) -> Iterator[tuple[str, str, Any]]:
    """A fake that streams reasoning deltas: with usage in every chunk (vLLM's
    continuous_usage_stats), or only at the end (llama.cpp: tokens counted by chunk)."""
    from fake_reasoning import reasoning

    app = make_app(
        reasoning(request.param, []),
        reasoning_deltas=True,
        continuous_usage=request.param == "vllm",
    )
    with running(app) as url:
        yield url, request.param, app


@pytest.mark.parametrize("plan", PLANS)
def test_streamed_thoughts_stop_answer_and_count_like_the_brute_force(streaming, plan):
    url, dialect, app = streaming
    plan = replace(plan, stream=True)
    for prompt in PROMPTS:
        before = len(app.state.streamed)
        got = _think(url, dialect, prompt, plan)
        stop, answer, thinking, probes = _expected(prompt, plan)
        assert (got.stop, got.answer, got.think_tokens) == (stop, answer, thinking), prompt
        assert got.probe_tokens == probes
        assert got.answer_tokens == (0 if stop == "natural" else 1)
        # one streamed request for the thought; probes land exactly on the checkpoints
        (streamed,) = app.state.streamed[before:]
        assert [s.kind for s in got.segments].count("think") == 1
        assert got.segments[0].kind == "think"
        assert [p.think_tokens for p in got.probes] == list(plan.checkpoints[: len(got.probes)])
        # every thinking token charged was sent; a stream closed early sent no more than the cap
        assert thinking <= streamed <= max(plan.checkpoints[-1], thinking)


def test_a_streamed_thought_is_charged_what_it_received(streaming):
    from computealloc.data.backends import receipt
    from computealloc.data.forcing import ThinkingBackend

    url, dialect, _ = streaming
    plan = ThinkingPlan(tuple(range(8, 160, 8)), stable=3, stream=True, answer_tokens=4)
    prompt = next(p for p in PROMPTS if _expected(p, plan)[0] == "settled")

    async def main():  # type: ignore[no-untyped-def]
        inner = OpenAIBackend(url, "fake-r1", retry=RetryPolicy(max_attempts=1))
        backend = ThinkingBackend(inner, plan, CONTINUATIONS[dialect], name="stream@3")
        try:
            with receipt() as outer:
                (thought,) = await backend.sample(prompt, 1)
            with receipt() as parts:
                direct = await think(inner, prompt, plan, continuation=CONTINUATIONS[dialect])
        finally:
            await backend.aclose()
        return outer, thought, parts, direct

    outer, thought, parts, direct = asyncio.run(main())
    assert outer == [thought]  # the runtime's ledger sees the thought as one completion
    assert len(parts) == len(direct.segments)  # the stream and every probe were received
    assert thought.output_tokens == direct.output_tokens == sum(c.output_tokens for c in parts)
    assert direct.stop == "settled" and direct.think_tokens < len(trace_of(prompt).words)


def test_a_streamed_arm_is_served_and_its_every_token_charged(streaming):
    from computealloc.data.arms import Arm, Thinking, open_arms
    from computealloc.fitting.fit import fit_policy
    from computealloc.serving.runtime import Runtime
    from test_runtime import synthetic_log

    url, dialect, _ = streaming
    thinking = Thinking(
        checkpoints=tuple(range(8, 160, 8)),
        stable=3,
        confidence=0.9,
        answer_tokens=4,
        server=dialect,
        stream=True,
    )
    arm = Arm(name="early", url=url, model="fake-r1", thinking=thinking)
    log = synthetic_log(40, 4, model="early")
    policy = fit_policy(log, budget=1.0, actions="early/majority@1", method="uniform").policy
    runtime = Runtime(policy, open_arms([arm], max_attempts=1), budget=1.0)

    async def main() -> list[Any]:
        answers = [await runtime.answer(p) for p in PROMPTS[:12]]
        await runtime.aclose()
        return answers

    answers = asyncio.run(main())
    plan = thinking.plan()
    expected = [_expected(p, plan) for p in PROMPTS[:12]]
    tokens = [think + probes + (stop != "natural") for stop, _, think, probes in expected]
    spent = [sum(c.output_tokens or 0 for c in a.samples) for a in answers]
    assert spent == tokens  # thinking, probes and answer: brute force
    assert runtime.ledger.output_tokens == sum(tokens)
    assert [a.answer for a in answers] == [answer for _, answer, _, _ in expected]


class _Body:
    """The body of a streamed reply, line by line (what ChatStream reads of aiohttp's)."""

    def __init__(self, events: list[object]) -> None:
        lines = [
            (e if isinstance(e, bytes) else f"data: {json.dumps(e)}".encode()) + b"\n\n"
            for e in events
        ]
        self.lines = [part for line in lines for part in line.splitlines(keepends=True)]
        self.closed = 0

    @property
    def content(self) -> _Body:
        return self

    async def readline(self) -> bytes:
        return self.lines.pop(0) if self.lines else b""

    def close(self) -> None:
        self.closed += 1


def _chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}


def _read(events: list[object], until: int = 10**9):  # type: ignore[no-untyped-def]
    from computealloc.data.backends import receipt
    from computealloc.data.backends.streaming import ChatStream

    body = _Body(events)
    stream = ChatStream(body, "http://x/v1")  # type: ignore[arg-type]

    async def main() -> list[Any]:
        with receipt() as got:
            await stream.advance(until)
            await stream.aclose()
            await stream.aclose()  # closing twice records once
        return got

    got = asyncio.run(main())
    assert body.closed == 1 and len(got) == 1 and got[0].output_tokens == stream.output_tokens
    return stream


def test_a_stream_counts_tokens_by_usage_logprobs_or_chunks():
    role = _chunk({"role": "assistant", "content": None})
    # llama.cpp: one chunk per token, usage only at the end
    chunks = [role, _chunk({"content": "a"}), _chunk({}), _chunk({"content": "b"})]
    stream = _read([*chunks, _chunk({}, "length"), b"data: [DONE]"])
    assert (stream.output_tokens, stream.counted, stream.text) == (3, "chunks", "ab")
    final = {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 5}}
    stream = _read([*chunks, _chunk({}, "stop"), final])  # no [DONE]: the body's end
    assert (stream.output_tokens, stream.counted, stream.prompt_tokens) == (5, "usage", 7)
    assert stream.finish_reason == "stop" and stream.done
    # vLLM: a running usage in every chunk, reasoning then content
    events = [
        _chunk({"reasoning_content": "x"}, usage={"completion_tokens": 2}),
        _chunk({"reasoning": "y"}, usage={"completion_tokens": 4}),
        _chunk({"content": "z"}, "stop", usage={"completion_tokens": 5}),
    ]
    stream = _read(events)
    assert (stream.output_tokens, stream.reasoning, stream.content) == (5, "xy", "z")
    # log-probabilities: one entry per token
    entries = {"content": [{"token": "p", "logprob": 0.0}] * 3}
    event = {"choices": [{"delta": {"content": "ppp"}, "logprobs": entries}]}
    assert _read([event, event]).output_tokens == 6


def test_a_stream_holds_back_the_chunk_past_the_point():
    tokens = [_chunk({"content": c}) for c in "abcdef"]
    stream = _read([*tokens, _chunk({}, "stop")], until=4)
    assert (stream.output_tokens, stream.text, stream.done) == (4, "abcd", False)
    # the end is read through, not held back
    stream = _read([*tokens[:4], _chunk({}, "stop"), {"choices": []}], until=4)
    assert (stream.output_tokens, stream.finish_reason, stream.done) == (4, "stop", True)


def test_a_stream_reads_events_whose_data_spans_lines():
    one, two = _chunk({"content": "a"}), _chunk({"content": "b"}, "stop")
    first, second = json.dumps(one, indent=1).splitlines(), json.dumps(two)
    events: list[object] = [
        b": keep-alive comment\r\nevent: message",
        # one event whose JSON spans several data lines (joined with newlines)
        b"\n".join(b"data: " + line.encode() for line in first),
        # two events without the blank line between them, CRLF line ends
        f"data: {second}\r\ndata: [DONE]\r".encode(),
    ]
    stream = _read(events)
    assert (stream.text, stream.output_tokens, stream.finish_reason) == ("ab", 2, "stop")
    assert stream.done


def test_a_broken_stream_is_a_backend_error():
    from computealloc.data.backends import BackendError

    with pytest.raises(BackendError, match="streamed reply after 1 tokens: a chunk is not JSON"):
        _read([_chunk({"content": "a"}), b"data: {oops"])
    with pytest.raises(BackendError, match="the server sent an error"):
        _read([{"error": {"message": "out of memory"}}])

    class Cut:
        model = "m"

        async def open_stream(self, prompt, *, params):  # type: ignore[no-untyped-def]
            from computealloc.data.backends.streaming import ChatStream

            return ChatStream(_Body([_chunk({"content": "a"})]), "http://x/v1")  # type: ignore[arg-type]

    plan = ThinkingPlan((4,), stream=True)
    with pytest.raises(BackendError, match="ended after 1 tokens without a finish reason"):
        asyncio.run(think(Cut(), "q", plan, continuation=CONTINUATIONS["vllm"]))  # type: ignore[arg-type]


def test_a_server_that_does_not_stream_is_a_backend_error():
    from fastapi import FastAPI

    from computealloc.data.backends import BackendError

    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat() -> dict[str, Any]:
        return {"choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}]}

    with (
        running(app) as url,
        pytest.raises(BackendError, match="answered with one JSON body instead of server-sent"),
    ):
        _think(url, "vllm", "q", ThinkingPlan((4,), stream=True))


def test_a_refused_stream_is_a_backend_error():
    from computealloc.data.backends import BackendError

    plan = ThinkingPlan((4,), stream=True)
    with (
        running(make_app(fault_rate=1.0, faults=("500",))) as url,
        pytest.raises(BackendError, match="HTTP 500"),
    ):
        _think(url, "vllm", "q", plan)


async def _raw_server(replies: list[bytes]) -> tuple[asyncio.Server, str]:
    """A server on a free loopback port that answers its i-th request with ``replies[i]``
    (raw HTTP bytes; the last one again after the list) and closes the connection."""
    served = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served
        await reader.readuntil(b"\r\n\r\n")
        writer.write(replies[min(served, len(replies) - 1)])
        served += 1
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"


def test_a_refusal_whose_body_is_cut_is_a_retryable_backend_error():
    from computealloc.data.backends import BackendError

    cut = (
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        b'Content-Length: 100\r\n\r\n{"err'
    )

    async def main() -> tuple[BaseException, Any]:
        server, url = await _raw_server([cut])
        backend = OpenAIBackend(url, "m", retry=RetryPolicy(3, initial_delay=0, max_delay=0))
        try:
            with pytest.raises(BaseException) as caught:
                await backend.open_stream("q")
        finally:
            await backend.aclose()
            server.close()
        return caught.value, backend.stats

    error, stats = asyncio.run(main())
    # a transport failure like any other (retried, then one BackendError), not aiohttp's
    assert isinstance(error, BackendError) and error.outcome == "connection_error", error
    assert (stats.requests, stats.retries, stats.outcomes["connection_error"]) == (3, 2, 3)


def test_a_refused_stream_waits_as_its_retry_after_says():
    import time

    from computealloc.data.backends import BackendError

    limited = b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 0.4\r\nContent-Length: 0\r\n\r\n"
    bad = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 2\r\n\r\n{}"

    async def main() -> float:
        server, url = await _raw_server([limited, bad])
        policy = RetryPolicy(2, initial_delay=0, max_delay=5, jitter=0)
        backend = OpenAIBackend(url, "m", retry=policy)
        start = time.perf_counter()
        try:
            with pytest.raises(BackendError, match="HTTP 400"):
                await backend.open_stream("q")
        finally:
            await backend.aclose()
            server.close()
        return time.perf_counter() - start

    assert asyncio.run(main()) >= 0.35  # the server's Retry-After, as a plain request honours


def test_open_streams_are_bounded_by_max_concurrency():
    from fastapi import FastAPI
    from fastapi.responses import StreamingResponse

    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat() -> StreamingResponse:
        async def events() -> Any:
            for _ in range(200):  # a long thought, slowly
                yield f"data: {json.dumps(_chunk({'content': 'a'}))}\n\n"
                await asyncio.sleep(0.02)

        return StreamingResponse(events(), media_type="text/event-stream")

    async def main() -> tuple[int, int]:
        backend = OpenAIBackend(url, "m", max_concurrency=2, retry=RetryPolicy(max_attempts=1))
        now = peak = done = 0

        async def thought() -> None:
            nonlocal now, peak, done
            async with await backend.open_stream("q") as stream:
                now += 1
                peak = max(peak, now)
                await stream.advance(2)
                await asyncio.sleep(0.2)
                now -= 1
            done += 1

        try:
            await asyncio.wait_for(asyncio.gather(*(thought() for _ in range(5))), 20)
        finally:
            await backend.aclose()
        return peak, done

    with running(app) as url:
        peak, done = asyncio.run(main())
    assert (peak, done) == (2, 5)  # never more streams open upstream than max_concurrency


def test_a_streamed_plan_needs_a_streaming_backend():
    from computealloc.data.backends import ReplayBackend
    from test_runtime import synthetic_log

    backend = ReplayBackend(synthetic_log(4, 2, model="m"), "m")
    with pytest.raises(ValueError, match="streamed thinking plan needs a backend"):
        asyncio.run(
            think(backend, "q", ThinkingPlan((4,), stream=True), continuation=CONTINUATIONS["vllm"])
        )


def test_budget_forcing_caps_the_thinking_exactly(server):
    url, dialect, _ = server
    long = next(p for p in PROMPTS if trace_of(p).length > 60)
    got = _think(url, dialect, long, ThinkingPlan((16, 32, 50)))
    assert got.stop == "cap" and got.think_tokens == 50
    assert [s.kind for s in got.segments] == ["think", "think", "think", "answer"]
    assert got.answer == trace_of(long).answers[50]


def test_early_exit_saves_tokens_against_the_full_thought(server):
    url, dialect, _ = server
    plan = ThinkingPlan(tuple(range(8, 200, 8)), stable=3)
    full = sum(len(trace_of(p).words) for p in PROMPTS)
    spent = sum(_think(url, dialect, p, plan).output_tokens for p in PROMPTS)
    assert spent < full


def test_a_plan_is_validated():
    for bad in [(), (0,), (5, 5), (10, 3)]:
        with pytest.raises(ValueError, match="strictly increasing"):
            ThinkingPlan(bad)
    with pytest.raises(ValueError, match="stable"):
        ThinkingPlan((4,), stable=0)
    with pytest.raises(ValueError, match="answer_tokens"):
        ThinkingPlan((4,), answer_tokens=0)
    for tau in [0, 1.5, -0.1, True, float("nan"), "0.9"]:
        with pytest.raises(ValueError, match=r"confidence of a ThinkingPlan must be a float in"):
            ThinkingPlan((4,), confidence=tau)  # type: ignore[arg-type]
    assert ThinkingPlan((4, 8), confidence=1).confidence == 1
    # a rule that can never stop a thought before the cap is refused, not run as a cap
    with pytest.raises(ValueError, match=r"confidence needs checkpoints before the cap"):
        ThinkingPlan((4,), confidence=0.9)
    with pytest.raises(ValueError, match=r"stable of a ThinkingPlan must be at most .* \(1\)"):
        ThinkingPlan((4, 8), stable=2)
    with pytest.raises(ValueError, match=r"at most the checkpoints before the cap \(0\)"):
        ThinkingPlan((4,), stable=1)
    assert ThinkingPlan((4, 8, 12), stable=2).stable == 2
    from pydantic import ValidationError

    from computealloc.data.arms import Arm, Thinking

    assert Thinking(checkpoints=(4, 8), confidence=0.9).plan().confidence == 0.9
    assert Thinking(checkpoints=(4, 8), stream=True).plan().stream
    with pytest.raises(ValueError, match="stream of a ThinkingPlan must be a bool"):
        ThinkingPlan((4,), stream=1)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="confidence"):
        Thinking(checkpoints=(4,), confidence=1.5)
    with pytest.raises(ValidationError, match=r"thinking\n.*confidence needs checkpoints before"):
        Arm(name="a", url="http://x/v1", thinking={"checkpoints": [512], "confidence": 0.9})


def test_max_tokens_in_params_is_refused():
    async def main() -> None:
        backend = OpenAIBackend("http://127.0.0.1:9/v1", "m")
        try:
            await think(
                backend,
                "q",
                ThinkingPlan((4,)),
                continuation=CONTINUATIONS["vllm"],
                params={"max_tokens": 3},
            )
        finally:
            await backend.aclose()

    with pytest.raises(ValueError, match="max_tokens"):
        asyncio.run(main())


def test_a_callers_max_completion_tokens_does_not_lift_the_plans_caps():
    """vLLM and OpenAI read max_completion_tokens before max_tokens: a client's (or an arm's)
    would replace every per-request cap of the plan, so it is dropped like max_tokens."""
    from computealloc.data.forcing import ThinkingBackend
    from fake_reasoning import reasoning

    app = make_app(reasoning("vllm", []))
    with running(app) as url:
        for stream in (False, True):
            plan = ThinkingPlan((8, 16), stable=1, answer_tokens=4, stream=stream)

            async def main(plan: ThinkingPlan = plan) -> list[Any]:
                inner = OpenAIBackend(url, "fake-r1", retry=RetryPolicy(max_attempts=1))
                backend = ThinkingBackend(inner, plan, CONTINUATIONS["vllm"])
                try:
                    params = {"max_completion_tokens": 1000}
                    return await backend.sample(PROMPTS[0], 2, params=params)
                finally:
                    await backend.aclose()

            before = len(app.state.bodies)
            asyncio.run(main())
            bodies = app.state.bodies[before:]
            assert bodies and all("max_completion_tokens" not in b for b in bodies)
            assert all(b["max_tokens"] <= 16 for b in bodies)
    with pytest.raises(ValueError, match="must not set 'max_completion_tokens'"):
        asyncio.run(
            think(
                None,  # type: ignore[arg-type]
                "q",
                ThinkingPlan((4,)),
                continuation=CONTINUATIONS["vllm"],
                params={"max_completion_tokens": 3},
            )
        )


# --- the real llama-server: continuation of a partial assistant message ----------------------


@pytest.mark.real_server
def test_llama_server_continues_the_thought_in_place(llama_jinja):
    plan = ThinkingPlan((6, 12), stable=None, answer_tokens=4)

    got = _llama_think(llama_jinja, "Count slowly from one to twenty, in words.", plan)
    first, second, answer = got.segments
    assert (first.kind, second.kind, answer.kind) == ("think", "think", "answer")
    assert (first.output_tokens, second.output_tokens) == (6, 6)  # stopped at N tokens
    assert first.finish_reason == second.finish_reason == "length"
    # continued in place: the second prompt is the first plus the 6 tokens of thought (a new
    # turn would add the template's end-of-turn and start-of-turn tokens)
    assert first.prompt_tokens is not None and second.prompt_tokens is not None
    assert second.prompt_tokens == first.prompt_tokens + 6
    assert answer.prompt_tokens is not None and answer.prompt_tokens > second.prompt_tokens + 6
    assert 1 <= answer.output_tokens <= 4
    assert got.think_tokens == 12 and got.output_tokens == 12 + answer.output_tokens


@pytest.mark.real_server
def test_llama_server_probes_carry_a_confidence(llama_jinja):
    plan = ThinkingPlan((6, 12), answer_tokens=4, confidence=1.0)  # probes at both, no early stop

    got = _llama_think(llama_jinja, "What is 2 + 2? Think, then answer.", plan)
    assert got.stop in ("cap", "natural")
    assert got.probes, got
    for probe in got.probes:
        assert probe.confidence is not None and 0 <= probe.confidence <= 1, got.probes
    assert [s.kind for s in got.segments][-1] == "answer"


def _llama_think(url: str, prompt: str, plan: ThinkingPlan, **kwargs: Any) -> Thought:
    async def main() -> Thought:
        backend = OpenAIBackend(url, llama_server.MODEL, retry=RetryPolicy(max_attempts=2))
        try:
            return await think(
                backend,
                prompt,
                plan,
                continuation=CONTINUATIONS["llama.cpp"],
                params={"temperature": 0, "seed": 0},
                **kwargs,
            )
        finally:
            await backend.aclose()

    return asyncio.run(main())


@pytest.mark.real_server
def test_llama_server_streams_the_thought_and_probes_at_each_checkpoint(llama_jinja):
    # llama-server streams one chunk per token and its usage at the end (it does not split a
    # reasoning_content out of this non-reasoning model's text: the thought is in content)
    plan = ThinkingPlan((6, 12), answer_tokens=4, confidence=1.0, stream=True)
    got = _llama_think(llama_jinja, "Count slowly from one to twenty, in words.", plan)
    assert got.stop == "cap" and got.think_tokens == 12
    assert [p.think_tokens for p in got.probes] == [6, 12]  # probed exactly at each checkpoint
    assert all(p.confidence is not None and 0 <= p.confidence <= 1 for p in got.probes)
    think_, probe, answer = got.segments
    assert (think_.kind, probe.kind, answer.kind) == ("think", "probe", "answer")
    assert (think_.output_tokens, think_.finish_reason) == (12, "length")  # the server's usage
    # the probe continues the 6 streamed tokens in place (its prompt holds them and the suffix)
    assert think_.prompt_tokens is not None and probe.prompt_tokens is not None
    assert probe.prompt_tokens > think_.prompt_tokens + 6
    assert got.output_tokens == 12 + probe.output_tokens + answer.output_tokens


@pytest.mark.real_server
def test_llama_server_stream_is_closed_when_the_rule_stops(llama_jinja):
    plan = ThinkingPlan((4, 8, 200), stable=1, answer_tokens=3, stream=True)
    got = _llama_think(
        llama_jinja,
        "Count slowly from one to a hundred, in words.",
        plan,
        extract=lambda text: text.strip() or None,  # any reply is an answer: settles at once
    )
    assert got.stop == "settled" and got.think_tokens == 4  # 4 of up to 200 tokens received
    assert [s.kind for s in got.segments] == ["think", "answer"]


# --- thinking arms: collect -> fit -> serve, every token in the ledger ----------------------


def test_thinking_arms_collect_fit_and_serve_within_the_token_budget(tmp_path):
    from computealloc.data.arms import Arm, Thinking, open_arms
    from computealloc.data.collect import run_collect_arms
    from computealloc.data.samples import read_samples
    from computealloc.fitting.fit import fit_policy
    from computealloc.serving.runtime import Runtime
    from fake_openai_server import make_app, running
    from fake_reasoning import gold_of, reasoning

    prompts = [f"problem {i}" for i in range(300)]
    queries = tmp_path / "queries.jsonl"
    queries.write_text(
        "".join(
            f'{{"query_id": {i}, "prompt": "{p}", "gold": "{gold_of(p)}"}}\n'
            for i, p in enumerate(prompts)
        )
    )
    served: list[int] = []
    with running(make_app(reasoning("vllm", served))) as url:
        plans = {
            "cap@16": Thinking(checkpoints=(16,), answer_tokens=4),
            "cap@64": Thinking(checkpoints=(64,), answer_tokens=4),
            "stable@2": Thinking(checkpoints=tuple(range(12, 240, 12)), stable=2, answer_tokens=4),
            "full": Thinking(checkpoints=(400,), answer_tokens=4),
        }
        arms = [Arm(name=n, url=url, model="fake-r1", thinking=t) for n, t in plans.items()]
        run_collect_arms(queries, tmp_path / "log.jsonl", arms, n=2, seed=0, concurrency=16)
        log = read_samples(tmp_path / "log.jsonl")
        assert int(log.to_frame()["tokens"].sum()) == sum(served)  # every token logged
        actions = ",".join(f"{n}/majority@1" for n in plans)
        probe = fit_policy(log, budget=1e9, actions=actions, cost="tokens")
        costs = probe.policy.costs_
        budget = float(min(costs) + 0.4 * (max(costs) - min(costs)))
        policy = fit_policy(log, budget=budget, actions=actions, cost="tokens").policy
        served.clear()
        runtime = Runtime(policy, open_arms(arms), budget=budget)
        answers = runtime.run_stream(prompts, concurrency=1)
        asyncio.run(runtime.aclose())
    ledger = runtime.ledger
    assert ledger.output_tokens == sum(served) == sum(a.cost for a in answers)
    assert abs(ledger.mean_cost / budget - 1) < 0.02, (ledger.mean_cost, budget)
    assert len({a.action for a in answers}) > 1  # the budget is spent where it buys accuracy


def _probe_trace(url: str, dialect: str, prompt: str, checkpoints: tuple[int, ...]):  # type: ignore[no-untyped-def]
    from computealloc.data.forcing import probe_trace

    async def main():  # type: ignore[no-untyped-def]
        backend = OpenAIBackend(url, "fake-r1", retry=RetryPolicy(max_attempts=1))
        try:
            return await probe_trace(
                backend, prompt, checkpoints, max_tokens=500, continuation=CONTINUATIONS[dialect]
            )
        finally:
            await backend.aclose()

    return asyncio.run(main())


def test_probe_trace_records_every_checkpoint_then_the_natural_end(server):
    url, dialect, served = server
    for prompt in PROMPTS[:20]:
        before = len(served)
        rows, thought = _probe_trace(url, dialect, prompt, (10, 40, 90))
        trace = trace_of(prompt)
        passed = [t for t in (10, 40, 90) if t < len(trace.words)]
        expected = [(t, trace.answers[min(t, trace.length)], False) for t in passed]
        expected.append((len(trace.words), trace.answers[-1], True))
        assert [(r.think_tokens, r.answer, r.final) for r in rows] == expected
        assert thought.output_tokens == sum(served[before:])
    with pytest.raises(ValueError, match="strictly increasing"):
        _probe_trace(url, dialect, "q", (10, 600))


def test_a_thought_cut_short_is_charged_the_tokens_it_received(tmp_path):
    from computealloc.data.arms import Arm, Thinking, open_arms
    from computealloc.data.backends import BackendError
    from computealloc.fitting.fit import fit_policy
    from computealloc.serving.runtime import Runtime
    from fake_openai_server import make_app, running
    from fake_reasoning import reasoning
    from test_runtime import synthetic_log

    served: list[int] = []
    app = make_app(reasoning("vllm", served), fault_rate=0.03, faults=("500",), seed=3)
    thinking = Thinking(checkpoints=tuple(range(10, 200, 10)), stable=3, answer_tokens=4)
    with running(app) as url:
        arm = Arm(name="stable@3", url=url, model="fake-r1", thinking=thinking)
        log = synthetic_log(40, 4, model="stable@3")
        policy = fit_policy(log, budget=1.0, actions="stable@3/majority@1", method="uniform").policy
        runtime = Runtime(policy, open_arms([arm], max_attempts=1), budget=1.0)

        async def main() -> int:
            failed = 0
            for prompt in PROMPTS:
                try:
                    await runtime.answer(prompt)
                except BackendError:
                    failed += 1
            await runtime.aclose()
            return failed

        failed = asyncio.run(main())
    assert failed > 0 and app.state.faults["500"] > 0
    assert runtime.ledger.failed == failed
    assert runtime.ledger.output_tokens == sum(served)  # nothing delivered is left out


@pytest.mark.real_server
def test_collect_checkpoints_from_the_real_llama_server(llama_jinja, tmp_path):
    from computealloc.data.checkpoints import read_checkpoints
    from computealloc.data.collect import CheckpointProbes, run_collect

    queries = tmp_path / "q.jsonl"
    prompts = ["Count: 1, 2, 3,", "The capital of France is", "Spell 'cat' backwards:"]
    queries.write_text(
        "".join(
            f'{{"query_id": {i}, "prompt": "{p}", "gold": "x"}}\n' for i, p in enumerate(prompts)
        )
    )
    out = tmp_path / "checkpoints.jsonl"
    result = run_collect(
        queries,
        out,
        n=1,
        base_url=llama_jinja,
        model=llama_server.MODEL,
        max_tokens=16,
        temperature=0.0,
        seed=0,
        checkpoints=CheckpointProbes((4, 8), "llama.cpp", answer_tokens=3),
    )
    log = read_checkpoints(out)  # a valid checkpoint log
    assert log.n_queries == len(prompts) and result.n_collected == len(prompts)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    for i in range(len(prompts)):
        mine = [r for r in rows if r["query_id"] == str(i)]
        points = [r["think_tokens"] for r in mine if not r["final"]]
        assert points[:2] == [4, 8][: len(points[:2])]  # stopped exactly at each checkpoint
        last = mine[-1]
        assert last["final"] or last["think_tokens"] == 16
        assert all(1 <= r["answer_tokens"] <= 3 for r in mine if not r["final"])
        # every row carries the probability of its answer, from llama-server's logprobs
        assert all(0 <= r["confidence"] <= 1 for r in mine), mine
