"""``POST /v1/chat/completions``: the request fields passed on or overridden, the runtime's
failures as HTTP errors, and the answer rendered as a chat completion or an event stream.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from pydantic import ValidationError

from computealloc.data.backends import BackendError, Completion, UnknownPromptError
from computealloc.serving.fleet import AccountLink, CapExceeded, Fleet
from computealloc.serving.runtime import RuntimeAnswer
from computealloc.serving.server.auth import account
from computealloc.serving.server.middleware import Receive, Scope, Send
from computealloc.serving.server.schemas import (
    ERROR_DOCS,
    JSON,
    APIError,
    ChatCompletionRequest,
    ServedRuntime,
    dumps,
    invalid_request,
)

_FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "content_filter", "function_call"})
#: Backend statuses that describe the request, not the backend, and are passed on as they are
#: (401 and 403 upstream mean the proxy's own credentials are wrong: 502).
_PASSED_ON = frozenset({400, 404, 413, 422, 429})
#: Client request fields passed on to the backend as sent.
_PASSED_FIELDS = ("seed", "stop")
#: Caps on output tokens: passed on within the runtime's own cap.
_CAP_FIELDS = frozenset({"max_tokens", "max_completion_tokens"})
#: Fields that make the arm a policy was fitted on: the runtime's values stand.
_ARM_FIELDS = frozenset(
    {
        "temperature",
        "top_p",
        "top_k",
        "min_p",
        "presence_penalty",
        "frequency_penalty",
        "repetition_penalty",
        "logit_bias",
        "reasoning_effort",
        "chat_template_kwargs",
    }
)


class ChatEndpoint:
    """``POST /v1/chat/completions`` as a plain ASGI app in the FastAPI router.

    A FastAPI route would solve dependencies, parse and validate the body and render the
    response through its own machinery, about 0.15 ms of CPU per request (measured in
    ``benchmarks/bench_serve.py``: 0.55 ms of proxy CPU per proxied request with it, 0.40
    without). Here the body is validated by the same pydantic model in one call
    (:meth:`~pydantic.BaseModel.model_validate_json`) and the response is rendered to bytes
    directly. Errors are raised as :class:`APIError` for the app's handler;
    :data:`CHAT_OPERATION` documents the route in the app's OpenAPI schema.
    """

    def __init__(
        self,
        runtime: ServedRuntime,
        key: bytes | None,
        model: str,
        timeout: float | None,
        fleet: Fleet | None = None,
    ) -> None:
        self.runtime = runtime
        self.key = key
        self.model = model
        self.timeout = timeout
        self.fleet = fleet

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        link = account(self.fleet, self.key, request.headers.get("authorization", ""))
        try:
            body = ChatCompletionRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            await invalid_request(exc)(scope, receive, send)
            return
        conversation = _conversation(body)
        params, overrides = _request_params(body, self.runtime.request_params)
        if link is None:
            result = await _answer(self.runtime, conversation, params, self.timeout)
        else:
            result = await _answer_within_cap(link, conversation, params, self.timeout)
        response = self._render(body, result, overrides)
        await response(scope, receive, send)

    def _render(
        self, body: ChatCompletionRequest, result: RuntimeAnswer, overrides: dict[str, Any]
    ) -> Response:
        created = int(time.time())
        ident = f"chatcmpl-{uuid.uuid4().hex}"
        headers = _headers(result)
        n = body.n or 1
        choices = result.choices(n)
        if len(choices) != n:
            overrides["n"] = {
                "requested": n,
                "used": len(choices),
                "reason": f"{len(choices)} distinct answer(s) among the {result.k} that voted",
            }
        extension = {**_extension(result, self.runtime.cost_unit), "overrides": overrides}
        if body.stream:
            usage = bool(body.stream_options and body.stream_options.include_usage)
            stream = _event_stream(result, choices, ident, created, self.model, extension, usage)
            return Response(stream, media_type="text/event-stream", headers=headers)
        completion = _completion(result, choices, ident, created, self.model, extension)
        return Response(dumps(completion), media_type=JSON, headers=headers)


def _ref(name: str) -> dict[str, Any]:
    return {"schema": {"$ref": f"#/components/schemas/{name}"}}


#: The OpenAPI operation of ``POST /v1/chat/completions`` (not a FastAPI route).
CHAT_OPERATION: dict[str, Any] = {
    "summary": "Chat Completions",
    "description": "Answer a chat completion with the policy's action under the budget.",
    "operationId": "chat_completions",
    "requestBody": {"required": True, "content": {JSON: _ref("ChatCompletionRequest")}},
    "responses": {
        "200": {
            "description": "A chat completion, or with 'stream' its chat.completion.chunk events.",
            "content": {JSON: {"schema": {"type": "object"}}, "text/event-stream": {}},
        },
        **{
            str(code): {
                "description": doc["description"],
                "content": {JSON: _ref("ErrorResponse")},
            }
            for code, doc in ERROR_DOCS.items()
        },
        "422": {
            "description": "The body is not JSON or not a chat completion request.",
            "content": {JSON: _ref("ErrorResponse")},
        },
    },
}


def _conversation(body: ChatCompletionRequest) -> list[dict[str, Any]]:
    """The messages of the request, whose last must be a user message with text."""
    if body.n is not None and body.n < 1:
        raise APIError(400, f"n must be at least 1. Got n={body.n}.", "invalid_request_error")
    last = body.messages[-1]
    if last.role != "user":
        raise APIError(
            400,
            f"The last message must have role 'user'. Got {last.role!r}.",
            "invalid_request_error",
        )
    if any(
        isinstance(m.content, list) and any(p.type != "text" for p in m.content)
        for m in body.messages
    ):
        raise APIError(400, "Only text content is supported.", "invalid_request_error")
    content = last.content
    if isinstance(content, list):
        content = "".join(part.text or "" for part in content)
    if not content or not content.strip():
        raise APIError(400, "The last user message has no text.", "invalid_request_error")
    return [m.model_dump(exclude_none=True) for m in body.messages]


def _request_params(
    body: ChatCompletionRequest, own: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The client's request fields the proxy passes on, and what it overrode and why.

    ``own`` are the fields the runtime sets on every call (its arm's temperature, its
    ``max_tokens`` cap). Passed on: ``seed``, ``stop`` and a ``max_tokens`` (or
    ``max_completion_tokens``) within the runtime's cap. The fields of :data:`_ARM_FIELDS`
    keep the runtime's values (the policy was fitted on samples drawn with them); any other
    field is not forwarded.
    """
    requested = dict(body.model_extra or {})
    params = {k: requested.pop(k) for k in _PASSED_FIELDS if k in requested}
    overrides: dict[str, Any] = {}
    for name in sorted(_CAP_FIELDS.intersection(requested)):
        asked, cap = requested.pop(name), own.get("max_tokens")
        if cap is None or (isinstance(asked, int) and asked <= cap):
            params["max_tokens" if cap is not None else name] = asked
        else:
            overrides[name] = _override(asked, cap, f"the arm caps output tokens at {cap}")
    for name, asked in sorted(requested.items()):
        if name in _ARM_FIELDS:
            reason = "the policy was fitted on samples drawn with the arm's own setting"
            overrides[name] = _override(asked, own.get(name), reason)
        else:
            overrides[name] = _override(asked, None, "the proxy does not forward this field")
    return params, overrides


def _override(requested: Any, used: Any, reason: str) -> dict[str, Any]:
    return {"requested": requested, "used": used, "reason": reason}


async def _answer(
    runtime: ServedRuntime,
    conversation: list[dict[str, Any]],
    params: dict[str, Any],
    timeout: float | None,
) -> RuntimeAnswer:
    """Run the runtime and turn its failures into HTTP errors."""
    try:
        if timeout is None:
            return await runtime.answer(conversation, params=params)
        return await asyncio.wait_for(runtime.answer(conversation, params=params), timeout)
    except UnknownPromptError as exc:
        raise APIError(404, str(exc), "not_found_error") from exc
    except TimeoutError as exc:
        raise APIError(504, f"No answer within {timeout} s.", "timeout_error") from exc
    except BackendError as exc:
        if _timed_out(exc):
            raise APIError(504, f"The backend timed out: {exc}", "timeout_error") from exc
        if exc.status_code in _PASSED_ON:
            raise APIError(
                exc.status_code, f"The backend refused the request: {exc}", "backend_refusal"
            ) from exc
        raise APIError(502, f"The backend failed: {exc}", "backend_error") from exc


async def _answer_within_cap(
    link: AccountLink,
    conversation: list[dict[str, Any]],
    params: dict[str, Any],
    timeout: float | None,
) -> RuntimeAnswer:
    """Answer with a key's runtime, holding the query's worst cost against the key's cap."""
    try:
        held = await link.admit()
    except CapExceeded as exc:
        raise APIError(429, str(exc), "insufficient_quota") from exc
    try:
        return await _answer(link.runtime, conversation, params, timeout)
    finally:
        link.release(held)


def _timed_out(exc: BaseException) -> bool:
    """Whether ``exc`` or what caused it is a :class:`TimeoutError`."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, TimeoutError):
            return True
        seen = seen.__cause__
    return False


def _extension(result: RuntimeAnswer, cost_unit: str) -> dict[str, Any]:
    return {
        "action": result.action,
        "k": result.k,
        "model": result.model,
        "cost": result.cost,
        "lam": result.lam,
        "samples": len(result.samples),
        "answer": result.answer,
        "cost_unit": cost_unit,
    }


def _headers(result: RuntimeAnswer) -> dict[str, str]:
    return {
        "X-Computealloc-Action": result.action,
        "X-Computealloc-Cost": repr(float(result.cost)),
        "X-Computealloc-Lam": repr(float(result.lam)),
    }


def _usage(result: RuntimeAnswer) -> dict[str, int]:
    """Output tokens of every sample drawn; prompt tokens of the query (one request's)."""
    tokens = sum(c.output_tokens or 0 for c in result.samples)
    prompt = result.prompt_tokens or 0
    return {"prompt_tokens": prompt, "completion_tokens": tokens, "total_tokens": prompt + tokens}


def _finish(choice: Completion) -> str:
    reason = choice.finish_reason
    return reason if reason in _FINISH_REASONS else "stop"


def _completion(
    result: RuntimeAnswer,
    choices: list[Completion],
    ident: str,
    created: int,
    model: str,
    extension: dict[str, Any],
) -> dict[str, Any]:
    return {
        "id": ident,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": i,
                "message": {"role": "assistant", "content": choice.text},
                "logprobs": None,
                "finish_reason": _finish(choice),
            }
            for i, choice in enumerate(choices)
        ],
        "usage": _usage(result),
        "computealloc": extension,
    }


def _event_stream(
    result: RuntimeAnswer,
    choices: list[Completion],
    ident: str,
    created: int,
    model: str,
    extension: dict[str, Any],
    include_usage: bool,
) -> bytes:
    """The finished answer as server-sent ``chat.completion.chunk`` events."""
    head = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model}
    chunks: list[dict[str, Any]] = [
        {
            **head,
            "choices": [
                {
                    "index": i,
                    "delta": {"role": "assistant", "content": c.text},
                    "finish_reason": None,
                }
                for i, c in enumerate(choices)
            ],
        },
        {
            **head,
            "choices": [
                {"index": i, "delta": {}, "finish_reason": _finish(c)}
                for i, c in enumerate(choices)
            ],
            "computealloc": extension,
        },
    ]
    if include_usage:
        chunks.append({**head, "choices": [], "usage": _usage(result)})
    events = [b"data: " + dumps(chunk) + b"\n\n" for chunk in chunks]
    return b"".join(events) + b"data: [DONE]\n\n"
