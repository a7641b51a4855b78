"""The backend contract: :class:`Completion`, :class:`Backend`, errors, retries.

A backend turns one prompt (a user message, or a whole conversation of chat messages) into
``n`` sampled completions, with per-call request parameters. Everything above it
(``collect``, the runtime, the proxy server) only sees this module's names, so an
OpenAI-compatible server and a replayed sample log are interchangeable.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

__all__ = [
    "RESERVED_PARAMS",
    "Backend",
    "BackendError",
    "BackendStats",
    "Completion",
    "Prompt",
    "RetryPolicy",
    "check_params",
    "gather_or_cancel",
    "last_user_text",
    "receipt",
    "record_received",
    "retry_async",
    "sampling_params",
    "to_messages",
]

T = TypeVar("T")

#: What a backend samples: one user message's text, or a conversation of chat messages
#: (``{"role": ..., "content": ...}`` mappings, as in the OpenAI chat API).
Prompt = str | Sequence[Mapping[str, Any]]
#: Request fields a backend sets itself; per-call ``params`` may not hold them.
RESERVED_PARAMS = frozenset({"model", "messages", "n", "stream", "stream_options"})


@dataclass(frozen=True)
class Completion:
    """One sampled response.

    Attributes
    ----------
    text : str
        The sampled text (the message content; ``""`` when the server sent none).
    output_tokens : int or None
        Output tokens of this sample; None when the backend does not know.
    finish_reason : str or None
        ``"stop"``, ``"length"``, ... as the server reported it; None when unknown.
    answer : str or None
        The final answer, meaningful only when ``from_log`` is true.
    correct : bool or None
        Whether ``answer`` is right, as the log recorded it; meaningful only when ``from_log``.
    from_log : bool
        True when ``answer`` and ``correct`` come from a logged sample (the replay backend), so
        consumers use them instead of extracting the answer from ``text`` again.
    prompt_tokens : int or None
        Prompt tokens of the request that produced this sample, as the server reported them
        (samples of one request share the value); None when unknown.
    logprobs : tuple of (str, float), or None
        ``(token text, natural log-probability)`` of each output token, in order, when the
        request asked for them (``logprobs: true``) and the server sent them; None otherwise.
    score : float or None
        The sample's score: a thought's confidence in its answer (a thinking arm with
        ``logprobs``, :class:`computealloc.data.forcing.Thought`), or a replayed log's ``score``
        column; None when the sample has none. Confidence-aware votes (``weighted@K``,
        ``top_half@K``) weigh and rank samples by it.
    """

    text: str
    output_tokens: int | None = None
    finish_reason: str | None = None
    answer: str | None = None
    correct: bool | None = None
    from_log: bool = False
    prompt_tokens: int | None = None
    logprobs: tuple[tuple[str, float], ...] | None = None
    score: float | None = None


class Backend(Protocol):
    """What a sampling backend provides.

    Attributes
    ----------
    model : str
        The model name written into sample logs.
    """

    model: str

    async def sample(
        self, prompt: Prompt, n: int, *, params: Mapping[str, Any] | None = None
    ) -> list[Completion]:
        """Return exactly ``n`` completions of ``prompt``; raise :class:`BackendError`.

        ``prompt`` is a user message's text or the whole conversation (see :data:`Prompt`);
        ``params`` are request fields merged into the request body (``temperature``,
        ``max_tokens``, ``seed``, ``reasoning_effort``, ``chat_template_kwargs``, ...), none of
        :data:`RESERVED_PARAMS`. A backend that cannot honour a field ignores it and says so
        in its documentation.
        """
        ...

    async def aclose(self) -> None:
        """Release connections; the backend is unusable afterwards."""
        ...


class BackendError(RuntimeError):
    """A failed backend call.

    Parameters
    ----------
    message : str
        What went wrong.
    retryable : bool
        True for transient failures (HTTP 408/409/429/5xx, timeouts, connection errors,
        malformed responses) that a retry may cure.
    status_code : int or None
        The HTTP status, when there was one.
    retry_after : float or None
        Seconds the server asked the client to wait (``Retry-After``), when it said.
    detail : str or None
        The server's own error message, when there was one.
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        status_code: int | None = None,
        retry_after: float | None = None,
        detail: str | None = None,
        outcome: str | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status_code = status_code
        self.retry_after = retry_after
        self.detail = detail
        self._outcome = outcome

    @property
    def outcome(self) -> str:
        """What happened, as a metrics label: ``"http_<status>"``, ``"timeout"``,
        ``"connection_error"``, ``"malformed"`` or ``"error"``."""
        if self.status_code is not None:
            return f"http_{self.status_code}"
        return self._outcome or "error"


@dataclass
class BackendStats:
    """Running counters of a backend's upstream calls (read them, do not set them).

    Attributes
    ----------
    requests : int
        Upstream calls (HTTP attempts) made, retries included.
    retries : int
        Attempts that failed retryably and were retried.
    n_fallbacks : int
        ``sample`` calls whose ``n > 1`` request was refused, came back short or reported too
        few output tokens, so that single requests made up the rest.
    undercounts : int
        ``n > 1`` replies whose ``usage.completion_tokens`` cannot be the total over their
        choices; their samples were discarded (and charged: see :func:`receipt`).
    outcomes : Counter of str
        Attempts per outcome: ``"ok"`` or a :attr:`BackendError.outcome`.
    """

    requests: int = 0
    retries: int = 0
    n_fallbacks: int = 0
    undercounts: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)


#: The completions received from upstream by the current query, and who is told of each
#: arrival (see :func:`receipt`).
_RECEIPT: ContextVar[tuple[list[Completion], Callable[[list[Completion]], None] | None] | None] = (
    ContextVar("computealloc_receipt", default=None)
)


@contextmanager
def receipt(
    on_receive: Callable[[list[Completion]], None] | None = None,
) -> Iterator[list[Completion]]:
    """Collect every completion a backend receives inside the block, in arrival order.

    Backends call :func:`record_received` for every reply they parse, including replies the
    caller never sees: a sibling request's reply when another request of the same ``sample``
    call failed, a reply discarded by a fallback, or one that arrived before the caller was
    cancelled (a deadline). The runtime charges these too, so that its ledger holds every
    completion the upstream delivered (and billed). Tasks started inside the block share the
    list (they copy the context).

    Parameters
    ----------
    on_receive : callable, optional
        Called as ``on_receive(completions)`` with each batch as it arrives (after it joined
        the list), so that a runtime can count replies before its query settles.

    Yields
    ------
    list of Completion
        Grows as replies arrive.
    """
    received: list[Completion] = []
    token = _RECEIPT.set((received, on_receive))
    try:
        yield received
    finally:
        _RECEIPT.reset(token)


def record_received(completions: Iterable[Completion]) -> None:
    """Add ``completions``, just received from upstream, to the current :func:`receipt`."""
    current = _RECEIPT.get()
    if current is not None:
        received, on_receive = current
        got = list(completions)
        received.extend(got)
        if on_receive is not None and got:
            on_receive(got)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter for retryable :class:`BackendError`.

    Attempt ``k`` (0-based) that fails retryably waits
    ``min(max_delay, max(initial_delay * multiplier**k, retry_after)) * (1 - jitter * U)``
    seconds, ``U ~ Uniform[0, 1)``, before attempt ``k + 1``; after ``max_attempts`` attempts
    the last error is raised.

    Parameters
    ----------
    max_attempts : int
        Attempts in total, including the first; ``>= 1``.
    initial_delay : float
        Seconds before the first retry; ``>= 0``.
    max_delay : float
        Cap on any single wait, in seconds; ``>= initial_delay``.
    multiplier : float
        Growth factor of the wait; ``>= 1``.
    jitter : float
        Share of each wait drawn at random, in ``[0, 1]`` (1 is "full jitter").
    """

    max_attempts: int = 6
    initial_delay: float = 0.5
    max_delay: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        _check_number("max_attempts", self.max_attempts, 1, math.inf, integer=True)
        _check_number("initial_delay", self.initial_delay, 0.0, math.inf)
        _check_number("max_delay", self.max_delay, self.initial_delay, math.inf)
        _check_number("multiplier", self.multiplier, 1.0, math.inf)
        _check_number("jitter", self.jitter, 0.0, 1.0)

    def delay(self, attempt: int, error: BackendError, rng: random.Random) -> float:
        """Seconds to wait after the failed attempt ``attempt`` (0-based)."""
        base = self.initial_delay * self.multiplier**attempt
        if error.retry_after is not None:
            base = max(base, error.retry_after)
        return min(self.max_delay, base) * (1.0 - self.jitter * rng.random())


def _check_number(
    name: str, value: object, low: float, high: float, *, integer: bool = False
) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (integer and not isinstance(value, int))
        or not low <= value <= high
    ):
        kind = "an int" if integer else "a float"
        upper = "inf)" if math.isinf(high) else f"{high}]"
        raise ValueError(
            f"The '{name}' parameter of RetryPolicy must be {kind} in [{low}, {upper}. "
            f"Got {value!r} instead."
        )


async def retry_async(
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    rng: random.Random | None = None,
    on_retry: Callable[[int, BackendError, float], None] | None = None,
) -> T:
    """Await ``call()`` and retry it on retryable :class:`BackendError` as ``policy`` says.

    Parameters
    ----------
    call : callable returning an awaitable
        Makes one attempt; called afresh for every attempt.
    policy : RetryPolicy
        Attempts and waits.
    rng : random.Random, optional
        Source of the jitter.
    on_retry : callable, optional
        Called as ``on_retry(attempt, error, delay_seconds)`` before each wait.

    Returns
    -------
    result
        The first successful result.

    Raises
    ------
    BackendError
        A non-retryable error at once, or the last retryable one after ``max_attempts``.
    """
    rng = rng if rng is not None else random.Random()
    attempt = 0
    while True:
        try:
            return await call()
        except BackendError as exc:
            if not exc.retryable or attempt + 1 >= policy.max_attempts:
                raise
            wait = policy.delay(attempt, exc, rng)
            if on_retry is not None:
                on_retry(attempt, exc, wait)
            await asyncio.sleep(wait)
            attempt += 1


async def gather_or_cancel(awaitables: Iterable[Awaitable[T]]) -> list[T]:
    """Like :func:`asyncio.gather`, but a failure cancels the siblings before it is raised.

    Plain ``gather`` leaves the siblings of a failed awaitable running in the background. When
    several failed, the exception of the earliest in argument order is raised.
    """
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    if not tasks:
        return []
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    errors = [t.exception() for t in tasks if not t.cancelled()]
    first = next((e for e in errors if e is not None), None)
    if first is not None:
        raise first
    return [t.result() for t in tasks]


def to_messages(prompt: Prompt) -> list[dict[str, Any]]:
    """The chat messages of ``prompt``: a str becomes one user message.

    Raises
    ------
    ValueError
        When ``prompt`` is an empty conversation or holds a message without a str ``role``.
    """
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    messages = [dict(m) for m in prompt] if not isinstance(prompt, Mapping) else []
    if not messages or not all(isinstance(m.get("role"), str) for m in messages):
        raise ValueError(
            "A prompt must be a str or a non-empty sequence of chat messages, each a mapping "
            f"with a str 'role'. Got {prompt!r:.200} instead."
        )
    return messages


def last_user_text(prompt: Prompt) -> str:
    """The text of the last user message of ``prompt`` (``prompt`` itself when a str).

    Content given as a list of parts contributes its ``text`` parts, joined; a conversation
    without a user message gives ``""``.
    """
    if isinstance(prompt, str):
        return prompt
    for message in reversed(to_messages(prompt)):
        if message["role"] == "user":
            return _text(message.get("content"))
    return ""


def _text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text") or "")
            for part in content
            if isinstance(part, Mapping) and part.get("type") == "text"
        )
    return ""


def check_params(params: Mapping[str, Any] | None, where: str) -> dict[str, Any]:
    """A copy of the per-call request ``params`` of ``where``; reserved fields are an error."""
    if params is None:
        return {}
    if not isinstance(params, Mapping) or not all(isinstance(k, str) for k in params):
        raise ValueError(
            f"The 'params' parameter of {where} must be a mapping of str to JSON values or "
            f"None. Got {params!r:.200} instead."
        )
    clash = sorted(RESERVED_PARAMS.intersection(params))
    if clash:
        raise ValueError(
            f"The 'params' parameter of {where} must not set {clash}: the backend sets them. "
            f"Got {dict(params)!r:.200}."
        )
    return dict(params)


def sampling_params(
    temperature: float | None = None, max_tokens: int | None = None, seed: int | None = None
) -> dict[str, Any]:
    """Request ``params`` holding the given sampling settings (those that are not None)."""
    given = {"temperature": temperature, "max_tokens": max_tokens, "seed": seed}
    return {k: v for k, v in given.items() if v is not None}
