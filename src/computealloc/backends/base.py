"""The backend contract: :class:`Completion`, :class:`Backend`, errors, retries.

A backend turns one prompt into ``n`` sampled completions. Everything above it (``collect``,
the runtime, the proxy server) only sees this module's names, so an OpenAI-compatible server
and a replayed sample log are interchangeable.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Protocol, TypeVar

__all__ = [
    "Backend",
    "BackendError",
    "Completion",
    "RetryPolicy",
    "gather_or_cancel",
    "retry_async",
]

T = TypeVar("T")


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
    """

    text: str
    output_tokens: int | None = None
    finish_reason: str | None = None
    answer: str | None = None
    correct: bool | None = None
    from_log: bool = False


class Backend(Protocol):
    """What a sampling backend provides.

    Attributes
    ----------
    model : str
        The model name written into sample logs.
    """

    model: str

    async def sample(
        self,
        prompt: str,
        n: int,
        *,
        temperature: float,
        max_tokens: int | None,
        seed: int | None,
    ) -> list[Completion]:
        """Return exactly ``n`` completions of ``prompt``; raise :class:`BackendError`."""
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
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        status_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status_code = status_code
        self.retry_after = retry_after


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
