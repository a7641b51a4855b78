"""The proxy's request and response schemas and its OpenAI-style error format.

The pydantic models of the part of a chat completion request the proxy reads, the error
body every error response carries (``{"error": {"message", "type", "code"}}``), the
error responses each route documents, and :class:`APIError`, raised by the routes and
rendered by the app's handler.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException

from computealloc.serving.runtime import AnsweringRuntime

#: The path of the chat completions route.
CHAT_PATH = "/v1/chat/completions"
#: The media type of JSON bodies.
JSON = "application/json"
#: What the app serves: the runtime of any deployable rule (a policy choosing an action per
#: query, or a sequential stopping rule), built by :func:`computealloc.serving.deploy.open_runtime`.
ServedRuntime = AnsweringRuntime


class ContentPart(BaseModel):
    """One part of a message's content; only ``text`` parts carry a prompt."""

    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    """A chat message."""

    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None


class StreamOptions(BaseModel):
    """``stream_options`` of a streaming request."""

    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """The part of a chat completion request the proxy reads; other fields are ignored."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "model": "computealloc",
                    "messages": [{"role": "user", "content": "What is 12 * 7?"}],
                },
                {
                    "model": "computealloc",
                    "messages": [
                        {"role": "system", "content": "Answer briefly."},
                        {"role": "user", "content": [{"type": "text", "text": "2 + 2?"}]},
                    ],
                    "stream": True,
                    "stream_options": {"include_usage": True},
                },
            ]
        },
    )
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    n: int | None = 1
    stream: bool | None = False
    stream_options: StreamOptions | None = None


class ErrorBody(BaseModel):
    """``error`` of an error response."""

    message: str
    type: str
    code: int | str | None = None


class ErrorResponse(BaseModel):
    """Every error response of the proxy."""

    error: ErrorBody


class APIError(HTTPException):
    """An error answered as an OpenAI-style error body."""

    def __init__(self, status_code: int, message: str, kind: str) -> None:
        super().__init__(status_code=status_code, detail=message)
        self.kind = kind


def error_response(status: int, message: str, kind: str, **extra: Any) -> Response:
    """An OpenAI-style error body with HTTP ``status``; ``extra`` adds top-level fields."""
    body = {"error": {"message": message, "type": kind, "code": status}, **extra}
    return Response(dumps(body), status_code=status, media_type=JSON)


def dumps(body: object) -> bytes:
    """``body`` as compact UTF-8 JSON (non-ASCII text kept as is)."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


#: The error responses the routes document (OpenAPI ``responses``), by HTTP status.
ERROR_DOCS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in (
        (
            400,
            "A request the proxy cannot serve (last message not from the user), or the "
            "backend's 400.",
        ),
        (401, "Missing or wrong API key."),
        (404, "The replay backend does not know the prompt."),
        (
            429,
            "The API key's hard cap is spent for the period (type 'insufficient_quota'), or "
            "the backend is rate limited after the proxy's retries.",
        ),
        (413, "Request body over the size limit."),
        (502, "The backend failed."),
        (504, "The backend or the request deadline timed out."),
    )
}


def invalid_request(exc: ValidationError) -> Response:
    """422 for a body that is not JSON or not a chat completion request.

    ``detail`` lists each error's ``type``, ``loc`` and ``msg`` (not the offending input, which
    can be the whole body, and need not be text).
    """
    errors = exc.errors(include_url=False)
    first: Mapping[str, Any] = errors[0] if errors else {}
    where = ".".join(str(p) for p in first.get("loc", ()))
    message = f"Invalid request: {where or 'body'}: {first.get('msg', 'malformed')}."
    if first.get("type") == "json_invalid":
        reason = first.get("ctx", {}).get("error", "malformed")
        message = f"Invalid request: the body is not valid JSON ({reason})."
    detail = [{"type": e["type"], "loc": list(e["loc"]), "msg": e["msg"]} for e in errors]
    return error_response(422, message, "invalid_request_error", detail=detail)
