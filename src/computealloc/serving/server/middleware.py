"""Pure ASGI middleware of the proxy: the request body limit (413) and the count of chat
completion requests per HTTP status (read by ``/metrics``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from computealloc.serving.server.schemas import CHAT_PATH, JSON, APIError, dumps


class _TooLarge(APIError):
    def __init__(self, limit: int) -> None:
        super().__init__(
            413, f"The request body exceeds the limit of {limit} bytes.", "request_too_large"
        )


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class Guard:
    """Pure ASGI middleware: refuse bodies over ``max_body_bytes``, count chat statuses."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, statuses: Counter[int]) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.statuses = statuses

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status: list[int] = []

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(int(message["status"]))
            await send(message)

        try:
            if _declared_length(scope) > self.max_body_bytes:
                await _send_error(recording_send, _TooLarge(self.max_body_bytes))
            else:
                await self.app(scope, self._limited(receive), recording_send)
        finally:
            if scope.get("path") == CHAT_PATH:
                self.statuses[status[0] if status else 500] += 1

    def _limited(self, receive: Receive) -> Receive:
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise _TooLarge(self.max_body_bytes)
            return message

        return limited_receive


def _declared_length(scope: Scope) -> int:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


async def _send_error(send: Send, error: APIError) -> None:
    body = dumps({"error": {"message": error.detail, "type": error.kind, "code": 413}})
    headers = [(b"content-type", JSON.encode()), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": error.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})
