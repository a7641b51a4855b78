"""Sampling from any OpenAI-compatible chat server (vLLM, SGLang, llama.cpp, OpenAI).

By default requests go straight to ``POST {base_url}/chat/completions`` over a pooled
keep-alive :class:`aiohttp.ClientSession`, and replies are read as plain JSON: building a
request through the official ``openai`` client and parsing the reply into its pydantic models
costs about 1.2 ms of CPU per call, against 0.15 ms here, which matters to the proxy
(:mod:`computealloc.serving.server`), whose added latency is the sum of such costs. For providers
whose URLs or authentication the plain path does not speak (Azure OpenAI, gateways with their own
headers), ``client="openai"`` or an ``openai.AsyncOpenAI`` / ``AsyncAzureOpenAI`` instance sends
the same requests through the official client. Either way, retries follow this package's
:class:`~computealloc.data.backends.base.RetryPolicy`, per HTTP request.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import logging
import math
import os
import random
import re
import urllib.request
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp
import numpy as np

from computealloc.data.backends.base import (
    BackendError,
    BackendStats,
    Completion,
    Prompt,
    RetryPolicy,
    check_params,
    gather_or_cancel,
    record_received,
    retry_async,
    to_messages,
)
from computealloc.data.backends.streaming import ChatStream

__all__ = ["BackendStats", "OpenAIBackend", "split_output_tokens"]

_log = logging.getLogger(__name__)
# A server refuses ``n > 1`` with 501, or with 400/422 whose message names the field ``n``
# ("Field 'n': Value must be between 1 <= value <= 4", "n must be 1"); the call then falls back.
_N_REJECTED = frozenset({400, 422})
_NAMES_N = re.compile(r"(?<![\w'\"-])['\"]?n['\"]?(?![\w'\"-])")
_RETRYABLE_STATUS = frozenset({408, 409, 429})
# A 500 whose message is a request validation error (llama-cpp-python's server wraps FastAPI's
# RequestValidationError of the body in a 500): the request is at fault, a retry cannot cure it.
_VALIDATION_500 = re.compile(r"'loc': [(\[]'body'")


class OpenAIBackend:
    """Backend over an OpenAI-compatible ``/v1/chat/completions`` endpoint.

    Parameters
    ----------
    base_url : str
        Server root including ``/v1``, e.g. ``"http://127.0.0.1:8000/v1"``.
    model : str
        Model name sent with every request and written into sample logs.
    api_key : str, optional
        Bearer key; defaults to the ``OPENAI_API_KEY`` environment variable, else ``"EMPTY"``
        (what local servers accept).
    timeout : float
        Seconds the server may stay silent (to connect, to send the first byte of its reply,
        between later bytes) before one HTTP request counts as timed out (a retryable
        failure). A reply that has arrived is always read, so it is never dropped (and
        charged nothing) for being read late.
    use_n : bool or "auto"
        How ``sample(prompt, n)`` gets ``n`` completions. ``False``: ``n`` parallel single
        requests. ``True``: one request with ``n``; when the server refuses ``n`` (HTTP 501, or
        400 or 422 whose message names the field ``n``) or returns fewer choices, the missing
        ones come from parallel single requests. ``"auto"``: like ``True`` until the first such
        fallback succeeds, then like ``False``. Either way, a server whose usage undercounts
        ``n`` choices is sampled with single requests from then on (see Notes).
    retry : RetryPolicy, optional
        Backoff for 408/409/429/5xx, timeouts, connection errors and malformed responses.
    max_concurrency : int
        HTTP requests in flight at most, over all concurrent ``sample`` calls; and, apart
        from them, streams open at most (:meth:`open_stream`).
    system_prompt : str, optional
        A system message sent before the prompt, unless the conversation has its own.
    client : {"aiohttp", "openai"} or openai.AsyncOpenAI
        The transport: plain HTTP over aiohttp (default, the cheapest), the official ``openai``
        async client built from ``base_url`` and ``api_key`` (closed by :meth:`aclose`), or a
        client instance you configured (e.g. ``openai.AsyncAzureOpenAI``; used with its own
        retries off and ``timeout``, and left open). Needs the ``openai`` package.

    Attributes
    ----------
    stats : BackendStats
        Request, retry and fallback counters.
    scores : bool
        False: its completions carry no ``score`` (a thinking arm's plan can add one), so the
        runtime refuses to serve a confidence-aware vote from it.

    Notes
    -----
    Output tokens come from ``usage.completion_tokens``, which servers report for the whole
    request. With one choice it is that sample's count. With several choices the total is
    split in proportion to the characters of each choice's text (largest-remainder rounding,
    so the split sums to the reported total); the mean per sample is exact, a single sample's
    count an estimate. ``use_n=False`` gives exact per-sample counts.

    Some servers (llama.cpp's ``llama-server``) report the tokens of one choice only. A reply
    is taken as undercounted when its total is below the number of choices with text (each
    needs a token) or below ``max_tokens`` times the choices that stopped on length; its
    samples are then discarded, the call draws them with single requests, every later call
    does too, and the switch is logged once (a warning of the ``computealloc.data.backends.
    openai_compat`` logger).

    A 4xx reply is not retried; nor is a 500 whose message is a validation error of the
    request body (the 500 with which ``llama-cpp-python``'s server answers, e.g., a
    temperature out of range).

    Single requests carry ``seed + j`` for the ``j``-th completion of the call when
    ``params`` holds a ``seed``, so that seeded servers do not return ``n`` copies of one
    sample. ``max_tokens`` is sent as given, the field vLLM, SGLang and llama.cpp read.

    The connection pool (``max_concurrency`` keep-alive connections) is opened on the first
    request, in the running event loop, and closed by :meth:`aclose`; a backend used from a new
    event loop opens a new pool there. An HTTP proxy named by the ``HTTP_PROXY`` /
    ``HTTPS_PROXY`` / ``NO_PROXY`` environment variables when the pool opens is used.
    """

    scores: bool = False

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        use_n: bool | Literal["auto"] = "auto",
        retry: RetryPolicy | None = None,
        max_concurrency: int = 64,
        system_prompt: str | None = None,
        client: Literal["aiohttp", "openai"] | Any = "aiohttp",
    ) -> None:
        _check_init(base_url, model, timeout, use_n, max_concurrency)
        self.base_url = base_url
        self.model = model
        self.timeout = float(timeout)
        self.use_n = use_n
        self.retry = retry if retry is not None else RetryPolicy()
        self.max_concurrency = max_concurrency
        self.system_prompt = system_prompt
        self.stats = BackendStats()
        self._try_n = use_n is not False
        self._rng = random.Random()
        self._url = base_url.rstrip("/") + "/chat/completions"
        key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY", "EMPTY")
        self._headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        self._pool: _Pool | None = None
        self._client, self._owns_client = _official_client(client, base_url, key, self.timeout)

    async def __aenter__(self) -> OpenAIBackend:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP connection pool (and the official client, if this backend built it)."""
        pool, self._pool = self._pool, None
        if pool is not None and pool.loop is asyncio.get_running_loop():
            for session in (pool.session, pool.stream_session):
                if session is not None:
                    await session.close()
        if self._owns_client:
            await self._client.close()

    async def sample(
        self, prompt: Prompt, n: int, *, params: Mapping[str, Any] | None = None
    ) -> list[Completion]:
        """Sample ``n`` completions of ``prompt``.

        Parameters
        ----------
        prompt : str or sequence of chat messages
            The user message, or the whole conversation (system message, earlier turns).
        n : int
            Completions wanted, ``>= 1``.
        params : mapping, optional
            Request fields merged into every request body: ``temperature``, ``max_tokens``,
            ``seed``, ``top_p``, ``reasoning_effort``, ``chat_template_kwargs``, ... (not
            ``model``, ``messages``, ``n``, ``stream``). Fields left out take the server's
            defaults.

        Returns
        -------
        completions : list of Completion
            Exactly ``n`` completions.

        Raises
        ------
        BackendError
            When a request fails for good (non-retryable, or out of attempts).
        ValueError
            When ``n``, ``prompt`` or ``params`` is malformed.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(
                f"The 'n' parameter of OpenAIBackend.sample must be an int in [1, inf). "
                f"Got {n!r} instead."
            )
        body = check_params(params, "OpenAIBackend.sample")
        messages = self._messages(prompt)
        try_n = n > 1 and self._try_n
        got = await self._sample_with_n(messages, n, body) if try_n else []
        rest = await self._singles(messages, range(len(got), n), body)
        if try_n and len(got) < n:
            self.stats.n_fallbacks += 1
            self._try_n = self._try_n and self.use_n is True
        return got + rest

    async def _singles(
        self, messages: list[dict[str, Any]], indices: range, params: dict[str, Any]
    ) -> list[Completion]:
        """One single-completion request per index, in parallel (``seed + j`` for index j)."""
        seed = params.get("seed")
        bodies = [
            params if not isinstance(seed, int) else {**params, "seed": seed + j} for j in indices
        ]
        if len(bodies) == 1:  # the common case: no tasks to spawn
            return await self._request(messages, 1, bodies[0])
        batches = await gather_or_cancel(self._request(messages, 1, b) for b in bodies)
        return [c for batch in batches for c in batch]

    async def _sample_with_n(
        self, messages: list[dict[str, Any]], n: int, params: dict[str, Any]
    ) -> list[Completion]:
        """One request with ``n``; empty when the server refuses ``n > 1``."""
        try:
            got = (await self._request(messages, n, params))[:n]
        except BackendError as exc:
            if _refuses_n(exc):
                return []
            raise
        if _undercounted(got, params):
            self.stats.undercounts += 1
            if self._try_n:
                self._try_n = False
                _log.warning(
                    "%s reported %s output tokens for %d choices, fewer than they hold (it "
                    "counts one choice): sampling with single requests from now on.",
                    self._url,
                    sum(c.output_tokens or 0 for c in got),
                    len(got),
                )
            return []
        return got

    async def _request(
        self, messages: list[dict[str, Any]], n: int, params: dict[str, Any]
    ) -> list[Completion]:
        """One chat completion request, retried as ``self.retry`` says."""
        payload = self._payload(messages, n, params)

        async def attempt() -> list[Completion]:
            pool = self._open_pool()
            async with pool.slots:
                self.stats.requests += 1
                try:
                    if pool.session is None:
                        got = await self._post_client(payload)
                    else:
                        got = await self._post(pool.session, pool.proxy, payload)
                except BackendError as exc:
                    self.stats.outcomes[exc.outcome] += 1
                    raise
                self.stats.outcomes["ok"] += 1
                record_received(got)  # charged even if the caller never sees it
                return got

        return await retry_async(attempt, self.retry, rng=self._rng, on_retry=self._count_retry)

    async def open_stream(
        self, prompt: Prompt, *, params: Mapping[str, Any] | None = None
    ) -> ChatStream:
        """Open one streamed completion of ``prompt`` (``stream: true``), to read chunk by chunk.

        The request asks for usage in every chunk (``stream_options: {"include_usage": true,
        "continuous_usage_stats": true}``; servers without the second field send usage at the
        end). Failures before the first byte of the reply are retried as ``retry`` says.
        Streams use a pool of their own, apart from the ``max_concurrency`` requests of
        :meth:`sample` (a thought holds its stream open while its probes take slots, so one
        pool could deadlock), and at most ``max_concurrency`` streams are open at once: one
        opened beyond them waits until another is closed (or read to its end). The upstream
        thus sees at most ``2 * max_concurrency`` connections from one backend. Streams need
        ``client="aiohttp"``.

        Parameters
        ----------
        prompt : str or sequence of chat messages
        params : mapping, optional
            Request fields, as in :meth:`sample`.

        Returns
        -------
        ChatStream
            Open; close it with ``await stream.aclose()`` (or ``async with``).

        Raises
        ------
        BackendError
            When the request fails for good, or the server answers with one JSON body (it does
            not stream).
        ValueError
            When ``params`` is malformed, or the backend sends through the official client.
        """
        if self._client is not None:
            raise ValueError(
                "OpenAIBackend.open_stream needs client='aiohttp' (streams are read as "
                "server-sent events over plain HTTP)."
            )
        body = {
            **check_params(params, "OpenAIBackend.open_stream"),
            "stream": True,
            "stream_options": {"include_usage": True, "continuous_usage_stats": True},
        }
        payload = self._payload(self._messages(prompt), 1, body)

        async def attempt() -> ChatStream:
            pool = self._open_pool()
            self.stats.requests += 1
            try:
                response = await pool.streams().post(self._url, data=payload, proxy=pool.proxy)
                refused = response.status >= 400
                if refused or response.content_type == "application/json":
                    # an error, or a server that does not stream: read the body (a read that
                    # fails is a transport error like any other) and free the connection
                    try:
                        raw = await response.read()
                    except BaseException:
                        response.close()
                        raise
                    response.release()
            except (TimeoutError, aiohttp.ClientError) as exc:
                error = _transport_error(self._url, self.timeout, exc)
                self.stats.outcomes[error.outcome] += 1
                raise error from exc
            if refused:
                retry_after = response.headers.get("retry-after")
                error = _status_error(self._url, response.status, raw, retry_after)
                self.stats.outcomes[error.outcome] += 1
                raise error
            if response.content_type == "application/json":  # a server that does not stream
                self.stats.outcomes["malformed"] += 1
                raise BackendError(
                    f"{self._url}: asked to stream, the server answered with one JSON body "
                    f"instead of server-sent events: {raw[:200]!r}",
                    retryable=False,
                    outcome="malformed",
                )
            self.stats.outcomes["ok"] += 1
            return ChatStream(response, self._url)

        return await retry_async(attempt, self.retry, rng=self._rng, on_retry=self._count_retry)

    async def probe(self, timeout: float = 2.0) -> str | None:
        """Whether the server answers: ``GET {base_url}/models`` within ``timeout`` seconds.

        Returns
        -------
        str or None
            None when the server answered (any status but 401, 403 and 5xx: a server without
            a ``/models`` route is up all the same), else what went wrong.
        """
        url = self.base_url.rstrip("/") + "/models"
        limit = aiohttp.ClientTimeout(total=timeout)
        try:
            async with (
                aiohttp.ClientSession(headers=self._headers, timeout=limit) as session,
                session.get(url, proxy=_env_proxy(url)) as response,
            ):
                status = response.status
        except TimeoutError:
            return f"GET {url}: no reply within {timeout:g} s"
        except aiohttp.ClientError as exc:
            return f"GET {url}: {type(exc).__name__}: {exc}"
        if status in (401, 403) or status >= 500:
            return f"GET {url}: HTTP {status}"
        return None

    def _count_retry(self, attempt: int, error: BackendError, delay: float) -> None:
        self.stats.retries += 1

    def _open_pool(self) -> _Pool:
        """The connection pool of the running event loop (opened on first use)."""
        loop = asyncio.get_running_loop()
        if self._pool is None or self._pool.loop is not loop:
            self._pool = _Pool(
                loop,
                self._url,
                self._headers,
                self.timeout,
                self.max_concurrency,
                http=self._client is None,
            )
        return self._pool

    def _payload(self, messages: list[dict[str, Any]], n: int, params: dict[str, Any]) -> bytes:
        body: dict[str, Any] = {**params, "model": self.model, "messages": messages}
        if n > 1:
            body["n"] = n
        return json.dumps(body, ensure_ascii=False).encode()

    async def _post(
        self, session: aiohttp.ClientSession, proxy: str | None, payload: bytes
    ) -> list[Completion]:
        """One HTTP attempt; every failure becomes a :class:`BackendError`."""
        try:
            async with session.post(self._url, data=payload, proxy=proxy) as response:
                raw = await response.read()
                status, retry_after = response.status, response.headers.get("retry-after")
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _transport_error(self._url, self.timeout, exc) from exc
        if status >= 400:
            raise _status_error(self._url, status, raw, retry_after)
        return _parse_response(raw, self.base_url)

    async def _post_client(self, payload: bytes) -> list[Completion]:
        """One attempt through the official client; every failure becomes a BackendError."""
        import openai

        try:
            response = await self._client.chat.completions.with_raw_response.create(
                **_client_arguments(json.loads(payload))
            )
            raw = response.http_response.content
        except openai.APITimeoutError as exc:  # a TimeoutError cause, as on the plain path
            raise BackendError(
                f"{self._url}: no reply within {self.timeout:g} s",
                retryable=True,
                outcome="timeout",
            ) from TimeoutError(str(exc))
        except openai.APIStatusError as exc:
            retry_after = exc.response.headers.get("retry-after")
            raise _status_error(
                self._url, exc.status_code, exc.response.content, retry_after
            ) from exc
        except openai.APIConnectionError as exc:
            raise BackendError(
                f"{self._url}: {type(exc).__name__}: {exc}",
                retryable=True,
                outcome="connection_error",
            ) from exc
        return _parse_response(raw, self.base_url)

    def _messages(self, prompt: Prompt) -> list[dict[str, Any]]:
        """The request's messages: ``system_prompt`` first unless the conversation has one."""
        messages = to_messages(prompt)
        if self.system_prompt is None or any(m["role"] == "system" for m in messages):
            return messages
        return [{"role": "system", "content": self.system_prompt}, *messages]


class _Pool:
    """An HTTP session of one event loop, the slots that cap its requests in flight, its proxy.

    The proxy is looked up once here rather than per request (``trust_env`` would look it up
    in a worker thread for every request); cookies are not kept.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        url: str,
        headers: dict[str, str],
        timeout: float,
        max_concurrency: int,
        *,
        http: bool = True,
    ) -> None:
        self.loop = loop
        self.max_concurrency = max_concurrency
        self.slots = asyncio.Semaphore(max_concurrency)
        self.proxy = _env_proxy(url)
        self.headers = headers
        self.timeout = timeout
        self.stream_session: aiohttp.ClientSession | None = None
        self.session = (
            aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=max_concurrency),
                headers=headers,
                # no total: a reply whose bytes arrived is read, even when the event loop
                # got to it late (a total timer can fire after the bytes came in and drop a
                # reply the server delivered and billed); the wait for its first byte and
                # every later read are bounded by ``timeout`` instead.
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout),
                cookie_jar=aiohttp.DummyCookieJar(),
            )
            if http
            else None
        )

    def streams(self) -> aiohttp.ClientSession:
        """The session of streamed requests (opened on first use): ``max_concurrency``
        connections at most, apart from the other requests' (an open stream holds its
        connection until it is closed or read to its end, a stream opened beyond them waits for
        one), and ``timeout`` bounds the wait for each chunk."""
        if self.stream_session is None:
            self.stream_session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.max_concurrency),
                headers=self.headers,
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=self.timeout, sock_read=self.timeout
                ),
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self.stream_session


def _official_client(client: object, base_url: str, key: str, timeout: float) -> tuple[Any, bool]:
    """The official client to send through (None for plain HTTP), and whether it is ours."""
    if isinstance(client, str) and client == "aiohttp":
        return None, False
    try:
        import openai
    except ImportError as exc:  # pragma: no cover - openai is in the dev and serve extras
        raise ImportError(
            "OpenAIBackend(client='openai') needs the openai package: pip install openai"
        ) from exc
    if isinstance(client, str) and client == "openai":
        owned = openai.AsyncOpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=timeout)
        return owned, True
    if isinstance(client, openai.AsyncOpenAI):
        return client.with_options(max_retries=0, timeout=timeout), False
    raise ValueError(
        "The 'client' parameter of OpenAIBackend must be 'aiohttp', 'openai' or an "
        f"openai.AsyncOpenAI instance. Got {client!r} instead."
    )


def _client_arguments(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` as arguments of the official client's ``create``: the fields it does not
    know (``chat_template_kwargs``, ``top_k``, ...) go in ``extra_body``."""
    known = _client_fields()
    extra = {k: v for k, v in body.items() if k not in known}
    return {k: v for k, v in body.items() if k in known} | ({"extra_body": extra} if extra else {})


@functools.cache
def _client_fields() -> frozenset[str]:
    """The keyword arguments of the official client's ``chat.completions.create``."""
    from openai.resources.chat import AsyncCompletions

    return frozenset(inspect.signature(AsyncCompletions.create).parameters)


def _env_proxy(url: str) -> str | None:
    """The proxy that the environment names for ``url``, if any."""
    parts = urlsplit(url)
    if parts.hostname is None or urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies().get(parts.scheme)


def _check_init(
    base_url: object, model: object, timeout: object, use_n: object, max_concurrency: object
) -> None:
    """Validate the constructor arguments of :class:`OpenAIBackend`."""
    n_mode = isinstance(use_n, bool) or use_n == "auto"
    checks = (
        ("base_url", base_url, "a non-empty str", isinstance(base_url, str) and bool(base_url)),
        ("model", model, "a non-empty str", isinstance(model, str) and bool(model)),
        ("timeout", timeout, "a float in (0, inf)", _is_positive(timeout, real=True)),
        ("use_n", use_n, "True, False or 'auto'", n_mode),
        ("max_concurrency", max_concurrency, "an int in [1, inf)", _is_positive(max_concurrency)),
    )
    for name, value, expected, ok in checks:
        if not ok:
            raise ValueError(
                f"The '{name}' parameter of OpenAIBackend must be {expected}. "
                f"Got {value!r} instead."
            )


def _is_positive(value: object, *, real: bool = False) -> bool:
    """Whether ``value`` is a positive int (or, with ``real``, a positive int or float)."""
    kinds = (int, float) if real else (int,)
    return isinstance(value, kinds) and not isinstance(value, bool) and value > 0


def _transport_error(url: str, timeout: float, exc: BaseException) -> BackendError:
    """A timeout or connection failure of one attempt (retryable)."""
    if isinstance(exc, TimeoutError):
        return BackendError(
            f"{url}: no reply within {timeout:g} s", retryable=True, outcome="timeout"
        )
    return BackendError(
        f"{url}: {type(exc).__name__}: {exc}", retryable=True, outcome="connection_error"
    )


def _status_error(url: str, status: int, raw: bytes, retry_after: str | None) -> BackendError:
    try:
        wait = float(retry_after) if retry_after is not None else None
    except ValueError:
        wait = None
    message = _error_message(raw)
    invalid = status == 500 and _VALIDATION_500.search(message) is not None
    return BackendError(
        f"{url}: HTTP {status}: {message}",
        retryable=(status in _RETRYABLE_STATUS or status >= 500) and not invalid,
        status_code=status,
        retry_after=wait,
        detail=message,
    )


def _refuses_n(error: BackendError) -> bool:
    """Whether ``error`` refuses the ``n`` of the request (not some other fault of it)."""
    if error.status_code == 501:
        return True
    detail = error.detail or ""
    return error.status_code in _N_REJECTED and _NAMES_N.search(detail) is not None


def _undercounted(completions: list[Completion], params: Mapping[str, Any]) -> bool:
    """Whether a reply's output tokens are too few for its choices (see OpenAIBackend, Notes)."""
    tokens = [c.output_tokens for c in completions]
    if len(completions) < 2 or any(t is None for t in tokens):
        return False
    total = sum(t for t in tokens if t is not None)
    cap = params.get("max_completion_tokens", params.get("max_tokens"))
    stopped = sum(c.finish_reason == "length" for c in completions)
    floor = cap * stopped if isinstance(cap, int) and not isinstance(cap, bool) else 0
    return total < max(sum(bool(c.text) for c in completions), floor)


def _error_message(raw: bytes) -> str:
    """``error.message`` of an OpenAI-style error body, else the start of the body."""
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    if isinstance(message, str):
        return message
    return raw[:200].decode("utf-8", "replace")


def _malformed(base_url: str, detail: str) -> BackendError:
    return BackendError(
        f"{base_url}: malformed chat completion response: {detail}",
        retryable=True,
        outcome="malformed",
    )


def _parse_response(raw: bytes, base_url: str) -> list[Completion]:
    """The completions of a chat completion response; malformed ones raise (retryable)."""
    try:
        body = json.loads(raw)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise _malformed(base_url, f"not JSON ({exc}): {raw[:200]!r}") from exc
    choices = body.get("choices") if isinstance(body, dict) else None
    if not isinstance(choices, list) or not choices:
        raise _malformed(base_url, f"no 'choices' list in {raw[:200]!r}")
    texts: list[str] = []
    reasons: list[str | None] = []
    logprobs: list[tuple[tuple[str, float], ...] | None] = []
    for choice in choices:
        message = choice.get("message") if isinstance(choice, dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        if content is not None and not isinstance(content, str):
            raise _malformed(base_url, f"message content is {type(content).__name__}, not str")
        texts.append(content or "")
        reason = choice.get("finish_reason") if isinstance(choice, dict) else None
        reasons.append(reason if isinstance(reason, str) else None)
        logprobs.append(_token_logprobs(choice.get("logprobs") if isinstance(choice, dict) else {}))
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
    total, prompt_tokens = (_count(usage.get(f)) for f in ("completion_tokens", "prompt_tokens"))
    tokens = split_output_tokens(total, texts)
    return [
        Completion(
            text=t, output_tokens=k, finish_reason=r, prompt_tokens=prompt_tokens, logprobs=lp
        )
        for t, k, r, lp in zip(texts, tokens, reasons, logprobs, strict=True)
    ]


def _token_logprobs(value: object) -> tuple[tuple[str, float], ...] | None:
    """``(token, logprob)`` pairs of a choice's ``logprobs.content`` (the OpenAI chat format
    that vLLM, SGLang and llama.cpp send); None when absent or not of that form."""
    content = value.get("content") if isinstance(value, dict) else None
    if not isinstance(content, list):
        return None
    pairs = []
    for entry in content:
        token = entry.get("token") if isinstance(entry, dict) else None
        logprob = entry.get("logprob") if isinstance(entry, dict) else None
        if not isinstance(token, str) or not _is_logprob(logprob):
            return None
        pairs.append((token, float(logprob)))  # type: ignore[arg-type]
    return tuple(pairs)


def _is_logprob(value: object) -> bool:
    """Whether ``value`` is a finite number ``<= 0`` (or ``-inf``, a token of probability 0)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return value <= 0 and not math.isnan(value)


def _count(value: object) -> int | None:
    """A token count of ``usage``, or None when it is not a non-negative int."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def split_output_tokens(total: int | None, texts: list[str]) -> list[int | None]:
    """Split a request's output-token total over its choices, in proportion to their length.

    Parameters
    ----------
    total : int or None
        ``usage.completion_tokens`` of the request; None when the server sent none.
    texts : list of str
        The texts of the request's choices.

    Returns
    -------
    tokens : list of int or None
        One count per choice, summing to ``total``: the floor of each exact share, plus one for
        the choices with the largest remainders (the earlier choice on ties); weights are the
        character counts of ``texts`` (equal weights when all are empty). All None when
        ``total`` is None or negative.
    """
    if total is None or total < 0:
        return [None] * len(texts)
    if len(texts) == 1:  # the common case, without the arrays
        return [total]
    weights = np.array([len(t) for t in texts], dtype=np.int64)
    if weights.sum() == 0:
        weights[:] = 1
    scaled = total * weights
    counts, remainders = np.divmod(scaled, weights.sum())
    short = total - int(counts.sum())
    counts[np.argsort(-remainders, kind="stable")[:short]] += 1
    return [int(c) for c in counts]
