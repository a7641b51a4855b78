"""A streamed chat completion read chunk by chunk: a reasoning model's thought as it arrives.

:meth:`computealloc.data.backends.OpenAIBackend.open_stream` sends a request with
``stream: true`` and returns a :class:`ChatStream`, which reads the server-sent events
(``data: {...}`` lines, ended by ``data: [DONE]``) of the OpenAI chat format: each chunk's
``choices[0].delta`` carries ``reasoning_content`` (``reasoning`` in vLLM 0.11 and later) and
``content`` text, its ``finish_reason`` ends the choice, and a ``usage`` object, when the server
sends one, counts the tokens.

Output tokens are counted, for each chunk, from the first of: the chunk's
``usage.completion_tokens`` (the running total, which vLLM and SGLang send in every chunk when
asked with ``stream_options.continuous_usage_stats``, and every server sends in the last chunk
with ``stream_options.include_usage``); the number of entries of its ``logprobs.content`` (one
per token, when log-probabilities were asked for); else one token for a chunk with text, or
with an empty delta that is neither the role header nor the end (a token that a reasoning
parser swallowed, such as ``</think>``). Servers send one chunk per decoded token, except where
a token ends inside a multi-byte character or a busy server merges tokens: the last way then
falls short until the next usage.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import aiohttp

from computealloc.data.backends.base import BackendError, Completion, record_received

__all__ = ["ChatStream"]

#: How :attr:`ChatStream.output_tokens` was last counted.
Counted = Literal["usage", "logprobs", "chunks"]


class ChatStream:
    """One streamed chat completion (choice 0), read chunk by chunk.

    Parameters
    ----------
    response : aiohttp.ClientResponse
        The open response of a ``stream: true`` request (status already checked).
    url : str
        The request's URL, for error messages.

    Attributes
    ----------
    reasoning : str
        The ``reasoning_content`` (or ``reasoning``) text received.
    content : str
        The ``content`` text received.
    output_tokens : int
        Output tokens received so far (see the module for how they are counted).
    counted : {"usage", "logprobs", "chunks"}
        How ``output_tokens`` was last counted.
    prompt_tokens : int or None
        As the server's usage reported them, once it did.
    finish_reason : str or None
        Set when the choice ended.
    done : bool
        Whether the stream ended (``[DONE]`` or the end of the body).
    logprobs : tuple of (str, float), or None
        ``(token text, log-probability)`` of each token received, when the chunks carried
        them (``logprobs: true`` was asked for); None when none did.

    Notes
    -----
    :meth:`aclose` releases the connection (a stream closed before its end stops the
    server's decoding there) and records what was received as one completion
    (:func:`~computealloc.data.backends.record_received`), so that the runtime's ledger charges
    the tokens of a thought cut short.
    """

    def __init__(self, response: aiohttp.ClientResponse, url: str) -> None:
        self.response = response
        self.url = url
        self.reasoning = ""
        self.content = ""
        self.output_tokens = 0
        self.counted: Counted = "chunks"
        self.prompt_tokens: int | None = None
        self.finish_reason: str | None = None
        self.done = False
        self._tokens: list[tuple[str, float]] = []
        self._held: dict[str, Any] | None = None
        self._closed = False

    @property
    def logprobs(self) -> tuple[tuple[str, float], ...] | None:
        """The tokens' log-probabilities received (see the class); None when none were."""
        return tuple(self._tokens) if self._tokens else None

    @property
    def text(self) -> str:
        """The reasoning text, then the content text."""
        return self.reasoning + self.content

    async def __aenter__(self) -> ChatStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def advance(self, until: int) -> None:
        """Read until ``until`` output tokens have arrived and the next chunk would add more
        (it is held back, unread), or until the stream ends.

        Raises
        ------
        BackendError
            When the connection fails or times out, a chunk is not JSON, or the server sends an
            error in the stream (none retryable: the thought is under way).
        """
        while not self.done:
            chunk = self._held if self._held is not None else await self._next()
            self._held = None
            if chunk is None:
                self.done = True
                return
            if self.output_tokens >= until and self.finish_reason is None and self._adds(chunk):
                self._held = chunk
                return
            self._apply(chunk)

    async def aclose(self) -> None:
        """Release the connection and record the completion received (once)."""
        if self._closed:
            return
        self._closed = True
        self.response.close()
        record_received([self.completion()])

    def completion(self) -> Completion:
        """What was received, as one completion."""
        return Completion(
            text=self.text,
            output_tokens=self.output_tokens,
            finish_reason=self.finish_reason,
            prompt_tokens=self.prompt_tokens,
        )

    async def _next(self) -> dict[str, Any] | None:
        """The next chunk; None at ``[DONE]`` or the end of the body.

        An event's data may span several ``data:`` lines (joined with newlines, as the
        server-sent events format says); a chunk is read as soon as its lines parse, so a
        server that leaves out the blank line between events is read all the same.
        """
        lines: list[bytes] = []
        while True:
            try:
                line = await self.response.content.readline()
            except TimeoutError as exc:
                raise self._error("no chunk within the timeout", "timeout") from exc
            except aiohttp.ClientError as exc:
                raise self._error(f"{type(exc).__name__}: {exc}", "connection_error") from exc
            except ValueError as exc:  # aiohttp: a line longer than its read limit
                raise self._error(f"unreadable event: {exc}", "malformed") from exc
            field = line.strip()
            if lines and (not line or not field):  # the event ended, its data unparsed
                data = b"\n".join(lines)
                raise self._error(f"a chunk is not JSON: {data[:200]!r}", "malformed")
            if not line:
                return None
            if not field.startswith(b"data:"):
                continue  # blank separators, comments, ``event:`` lines
            lines.append(field[5:].strip())
            data = b"\n".join(lines)
            if data == b"[DONE]":
                return None
            try:
                chunk = json.loads(data)
            except ValueError:
                continue  # the event's data goes on in its next line
            lines.clear()
            if not isinstance(chunk, dict):
                raise self._error(f"a chunk is not an object: {data[:200]!r}", "malformed")
            if "error" in chunk:
                raise self._error(f"the server sent an error: {chunk['error']!r}", "error")
            return chunk

    def _error(self, detail: str, outcome: str) -> BackendError:
        return BackendError(
            f"{self.url}: streamed reply after {self.output_tokens} tokens: {detail}",
            retryable=False,
            outcome=outcome,
        )

    def _adds(self, chunk: dict[str, Any]) -> bool:
        """Whether ``chunk`` carries output tokens."""
        return self._count(chunk)[0] > self.output_tokens

    def _count(self, chunk: dict[str, Any]) -> tuple[int, Counted]:
        """``output_tokens`` once ``chunk`` is read, and how it was counted (see the module)."""
        total = _usage(chunk, "completion_tokens")
        if total is not None:
            return max(total, self.output_tokens), "usage"
        delta, logprobs, finish = _choice(chunk)
        if logprobs:
            return self.output_tokens + logprobs, "logprobs"
        text = delta is not None and any(isinstance(delta.get(k), str) and delta[k] for k in _TEXT)
        # a token chunk: text, or an empty delta that is neither the role header nor the end
        # (a token that a reasoning parser swallowed, such as ``</think>``)
        token = delta is not None and (text or (finish is None and "role" not in delta))
        return self.output_tokens + int(token), "chunks"

    def _apply(self, chunk: dict[str, Any]) -> None:
        """Add ``chunk``'s text and tokens."""
        delta, _, finish = _choice(chunk)
        if delta is not None:
            reasoning = delta.get("reasoning_content")
            if not isinstance(reasoning, str):
                reasoning = delta.get("reasoning")
            content = delta.get("content")
            self.reasoning += reasoning if isinstance(reasoning, str) else ""
            self.content += content if isinstance(content, str) else ""
        self._tokens.extend(_entries(chunk))
        self.output_tokens, self.counted = self._count(chunk)
        prompt = _usage(chunk, "prompt_tokens")
        if prompt is not None:
            self.prompt_tokens = prompt
        if finish is not None:
            self.finish_reason = finish


#: Delta fields that carry text.
_TEXT = ("reasoning_content", "reasoning", "content")


def _choice(chunk: dict[str, Any]) -> tuple[dict[str, Any] | None, int, str | None]:
    """Choice 0 of a chunk: its delta (None when the chunk has no choice), its log-probability
    entries, its finish reason."""
    choices = chunk.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices else None
    if not isinstance(choice, dict):
        return None, 0, None
    raw = choice.get("delta")
    logprobs = choice.get("logprobs")
    entries = logprobs.get("content") if isinstance(logprobs, dict) else None
    finish = choice.get("finish_reason")
    return (
        raw if isinstance(raw, dict) else {},
        len(entries) if isinstance(entries, list) else 0,
        finish if isinstance(finish, str) else None,
    )


def _entries(chunk: dict[str, Any]) -> list[tuple[str, float]]:
    """``(token, logprob)`` of choice 0's well-formed ``logprobs.content`` entries."""
    choices = chunk.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices else None
    logprobs = choice.get("logprobs") if isinstance(choice, dict) else None
    entries = logprobs.get("content") if isinstance(logprobs, dict) else None
    out = []
    for entry in entries if isinstance(entries, list) else []:
        token = entry.get("token") if isinstance(entry, dict) else None
        value = entry.get("logprob") if isinstance(entry, dict) else None
        if (
            isinstance(token, str)
            and isinstance(value, int | float)
            and not isinstance(value, bool)
            and value <= 0  # NaN is not
        ):
            out.append((token, float(value)))
    return out


def _usage(chunk: dict[str, Any], key: str) -> int | None:
    """A count of the chunk's ``usage``, when it is a non-negative int."""
    usage = chunk.get("usage")
    value = usage.get(key) if isinstance(usage, dict) else None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None
