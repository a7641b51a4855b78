"""A fake OpenAI-compatible ``/v1/chat/completions`` server for tests, with fault injection.

``make_app`` builds a FastAPI app whose answers come from a responder (scripted, or the
replay of a sample log); ``running(app)`` serves it under uvicorn on ``127.0.0.1`` (a free
port) in a background thread and yields the base URL. Loopback only.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel

from computealloc.data.backends import Completion, ReplayBackend, UnknownPromptError

FaultKind = Literal["500", "429", "timeout", "malformed"]
NMode = Literal["native", "reject", "ignore", "undercount"]


class ChatRequest(BaseModel):
    """The fields of a chat completion request that the fake reads."""

    model: str
    messages: list[dict[str, Any]]
    n: int = 1
    temperature: float = 1.0
    max_tokens: int | None = None
    seed: int | None = None
    continue_final_message: bool = False
    logprobs: bool = False
    stream: bool = False
    stream_options: dict[str, Any] | None = None

    @property
    def prompt(self) -> str:
        return str(self.messages[-1]["content"])


Responder = Callable[[ChatRequest, int], Awaitable[list[Completion]]]


async def scripted(request: ChatRequest, n: int) -> list[Completion]:
    """Deterministic answers: choice ``j`` depends only on (prompt, seed, n, j).

    The text is ``"w w ... The answer is \\boxed{A}."`` with ``A`` in ``{0, 1, 2, 3}`` and a
    random number of filler words; ``output_tokens`` is the number of words. With
    ``max_tokens``, longer texts are cut to their first ``max_tokens`` words (finish reason
    ``"length"``).
    """
    out = []
    for j in range(n):
        key = f"{request.prompt}|{request.seed}|{n}|{j}".encode()
        rng = random.Random(int.from_bytes(hashlib.sha256(key).digest()[:8], "little"))
        words = ["w"] * rng.randint(
            1, 20
        ) + f"The answer is \\boxed{{{rng.randint(0, 3)}}}.".split()
        cap = request.max_tokens
        reason = "length" if cap is not None and len(words) > cap else "stop"
        words = words[:cap] if reason == "length" else words
        out.append(Completion(text=" ".join(words), output_tokens=len(words), finish_reason=reason))
    return out


def replaying(backend: ReplayBackend) -> Responder:
    """Answers from a replayed sample log (unknown prompts get HTTP 404)."""

    async def respond(request: ChatRequest, n: int) -> list[Completion]:
        return await backend.sample(request.prompt, n)

    return respond


def make_app(
    responder: Responder = scripted,
    *,
    fault_rate: float = 0.0,
    faults: tuple[FaultKind, ...] = ("500", "429", "timeout", "malformed"),
    delay_s: float = 1.0,
    latency_s: float = 0.0,
    n_mode: NMode = "native",
    seed: int = 0,
    validation_status: Literal[422, 500] = 422,
    reasoning_deltas: bool = False,
    continuous_usage: bool = True,
) -> FastAPI:
    """The fake server.

    Parameters
    ----------
    responder : async callable
        ``responder(request, n)`` returns the ``n`` completions to send.
    fault_rate : float
        Probability that a request gets a fault instead of its answer.
    faults : tuple of str
        Fault kinds drawn uniformly: HTTP 500, HTTP 429 (``Retry-After: 0``), ``"timeout"``
        (the answer comes after ``delay_s`` seconds) and ``"malformed"`` (truncated JSON).
    latency_s : float
        Delay before every answer, in seconds.
    n_mode : str
        ``"native"`` honours ``n``; ``"reject"`` answers HTTP 400 to ``n > 1``; ``"ignore"``
        always returns one choice; ``"undercount"`` returns ``n`` choices with the usage of
        the first one only (as llama.cpp's server does).
    validation_status : int
        Status of the reply to a ``temperature`` outside ``[0, 2]``: 422 (FastAPI's own), or
        500 with the body of ``llama-cpp-python``'s server (which wraps the validation error).
    seed : int
        Seed of the fault draws.
    reasoning_deltas : bool
        In a streamed reply (``stream: true``, one choice), send the text before ``</think>`` as
        ``delta.reasoning_content`` and the rest as ``delta.content``, the ``</think>`` token
        as an empty delta (as a reasoning parser does); else all as ``content``.
    continuous_usage : bool
        Honour ``stream_options.continuous_usage_stats`` (usage in every chunk, as vLLM does);
        else usage comes only in the last chunk (with ``include_usage``, as llama.cpp sends).

    Notes
    -----
    ``app.state.requests`` lists the ``n`` of every request received, ``app.state.bodies``
    their JSON bodies; ``app.state.faults`` counts the faults injected by kind;
    ``app.state.streamed`` the tokens each streamed reply sent before it ended or its client
    left. A streamed reply sends one chunk per token: the responder's ``logprobs`` tokens when
    it gives them (it is asked with ``logprobs: true``), else the text's words.
    """
    app = FastAPI()
    app.state.requests = []
    app.state.bodies = []
    app.state.faults = Counter()
    app.state.streamed = []
    rng = random.Random(seed)

    @app.get("/v1/fake/requests")
    async def requests() -> dict[str, Any]:
        """What this server received: requests, samples asked for (``n`` summed), and the
        request bodies without their messages."""
        return {
            "requests": len(app.state.requests),
            "samples": sum(app.state.requests),
            "bodies": [{k: v for k, v in b.items() if k != "messages"} for b in app.state.bodies],
        }

    @app.post("/v1/chat/completions")
    async def chat(raw: Request) -> Response:
        body = await raw.json()
        request = ChatRequest.model_validate(body)
        app.state.requests.append(request.n)
        app.state.bodies.append(body)
        fault = rng.choice(faults) if rng.random() < fault_rate else None
        if fault is not None:
            app.state.faults[fault] += 1
        if fault == "500":
            return _error(500, "injected server error")
        if fault == "429":
            return _error(429, "injected rate limit", {"retry-after": "0"})
        if fault == "malformed":
            return Response('{"id": "x", "choices": [{"index"', media_type="application/json")
        await asyncio.sleep(delay_s if fault == "timeout" else latency_s)
        if n_mode == "reject" and request.n > 1:
            return _error(400, "n > 1 is not supported")
        if not 0 <= request.temperature <= 2:
            return _invalid(request.temperature, validation_status)
        n = 1 if n_mode == "ignore" else request.n
        try:
            if request.stream:
                (reply,) = await responder(request.model_copy(update={"logprobs": True}), 1)
                options = request.stream_options or {}
                return StreamingResponse(
                    _sse(app, request, reply, reasoning_deltas, continuous_usage, options),
                    media_type="text/event-stream",
                )
            completions = await responder(request, n)
        except UnknownPromptError as exc:
            return _error(404, str(exc))
        body = _body(request.model, completions)
        if n_mode == "undercount" and "usage" in body:
            first = completions[0].output_tokens or 0
            body["usage"] = {
                "prompt_tokens": 1,
                "completion_tokens": first,
                "total_tokens": first + 1,
            }
        return JSONResponse(body)

    return app


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "type": "fake", "code": status}},
        status_code=status,
        headers=headers,
    )


def _invalid(temperature: float, status: int) -> JSONResponse:
    """A validation error of ``temperature``: FastAPI's 422, or llama-cpp-python's 500."""
    error = {
        "type": "less_than_equal",
        "loc": ("body", "temperature"),
        "msg": "Input should be less than or equal to 2",
        "input": temperature,
    }
    if status == 500:
        message = f"1 validation error:\n  {error!r}\n\n  Endpoint: POST /v1/chat/completions"
        body = {"message": message, "type": "internal_server_error", "param": None, "code": None}
        return JSONResponse({"error": body}, status_code=500)
    return JSONResponse({"detail": [{**error, "loc": list(error["loc"])}]}, status_code=422)


def _body(model: str, completions: list[Completion]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {
                "index": j,
                "message": {"role": "assistant", "content": c.text},
                "finish_reason": c.finish_reason or "stop",
                **({} if c.logprobs is None else {"logprobs": _logprobs(c.logprobs)}),
            }
            for j, c in enumerate(completions)
        ],
    }
    tokens = [c.output_tokens for c in completions]
    if all(t is not None for t in tokens):
        total = sum(t for t in tokens if t is not None)
        body["usage"] = {"prompt_tokens": 1, "completion_tokens": total, "total_tokens": total + 1}
    return body


async def _sse(
    app: FastAPI,
    request: ChatRequest,
    reply: Completion,
    reasoning_deltas: bool,
    continuous_usage: bool,
    options: dict[str, Any],
) -> AsyncIterator[str]:
    """The server-sent events of ``reply``, one chunk per token (see :func:`make_app`)."""
    tokens = reply.logprobs or tuple((w, 0.0) for w in re.findall(r"\s*\S+", reply.text))
    every = continuous_usage and bool(options.get("continuous_usage_stats"))
    sent, thinking = 0, reasoning_deltas

    def event(choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> str:
        body: dict[str, Any] = {"object": "chat.completion.chunk", "model": request.model}
        body["choices"] = choices
        if usage is not None:
            body["usage"] = usage
        return f"data: {json.dumps(body)}\n\n"

    def usage_now() -> dict[str, int] | None:
        return {"prompt_tokens": 1, "completion_tokens": sent} if every else None

    try:
        yield event([{"index": 0, "delta": {"role": "assistant", "content": None}}])
        for token, logprob in tokens:
            sent += 1
            if thinking and "</think>" in token:
                thinking, delta = False, {}
            else:
                delta = {"reasoning_content" if thinking else "content": token}
            choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": None}
            if request.logprobs:
                entry = {"token": token, "logprob": logprob, "top_logprobs": []}
                choice["logprobs"] = {"content": [entry]}
            yield event([choice], usage_now())
        finish = {"index": 0, "delta": {}, "finish_reason": reply.finish_reason or "stop"}
        yield event([finish], usage_now())
        if options.get("include_usage"):
            yield event([], {"prompt_tokens": 1, "completion_tokens": len(tokens)})
        yield "data: [DONE]\n\n"
    finally:
        app.state.streamed.append(sent)


def _logprobs(tokens: tuple[tuple[str, float], ...]) -> dict[str, Any]:
    """A choice's ``logprobs`` in the OpenAI chat format (the chosen token as its one top)."""
    entries = [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in tokens]
    return {"content": [{**e, "top_logprobs": [e]} for e in entries]}


@contextmanager
def running(app: FastAPI, *, lifespan: Literal["on", "off"] = "off") -> Iterator[str]:
    """Serve ``app`` on a free loopback port in a daemon thread; yield ``http://.../v1``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_level="warning", lifespan=lifespan, timeout_graceful_shutdown=1, access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the fake OpenAI server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=5)
        sock.close()


if __name__ == "__main__":  # a fake server as its own process: python fake_openai_server.py PORT
    import sys

    uvicorn.run(make_app(), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
