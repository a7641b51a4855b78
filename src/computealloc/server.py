"""An OpenAI-compatible proxy that applies a compute-allocation policy under a budget.

``POST /v1/chat/completions`` answers each request with :meth:`Runtime.answer
<computealloc.runtime.Runtime.answer>`: the policy picks an action (how many samples, which
model), the runtime samples the backend, votes and charges the cost (or, for a sequential
stopping rule, :meth:`SequentialRuntime.answer
<computealloc.sequential_runtime.SequentialRuntime.answer>` samples until the rule stops
the query, action ``"sequential@t"`` for ``t`` samples); the response is a
regular chat completion, so the official ``openai`` client works against it unchanged. Each
response says what was done in an extension field and in headers::

    "computealloc": {"action": "majority@4", "k": 4, "model": "...", "cost": 4.0,
                     "lam": 0.0123, "samples": 4, "answer": "18", "cost_unit": "samples",
                     "overrides": {"temperature": {"requested": 0.2, "used": 0.7,
                                                   "reason": "..."}}}
    X-Computealloc-Action: majority@4
    X-Computealloc-Cost: 4.0

The message content is the full response text of the first sample of the winning answer
cluster (of the first sample when no sample had an answer); a request with ``n > 1`` gets the
``n`` best distinct answers of the samples drawn (:meth:`RuntimeAnswer.choices
<computealloc.runtime.RuntimeAnswer.choices>`), fewer when the samples hold fewer. Requests
with ``stream: true`` get the finished answer as a valid ``chat.completion.chunk`` event stream
ending with ``data: [DONE]``.

The whole conversation (system message, earlier turns) goes to the backend; the policy's
features read the last message, which must be a user message (a sample log's prompt is one
user message). Of the client's request fields, ``seed``, ``stop`` and ``max_tokens`` /
``max_completion_tokens`` (within the runtime's own cap) are passed on; the sampling fields
that make the arm the policy was fitted on (``temperature``, ``top_p``, ``reasoning_effort``,
``chat_template_kwargs``, ...) keep the runtime's values; other fields are not forwarded.
``computealloc.overrides`` names each field the proxy did not honour as sent, with
``requested``, ``used`` and ``reason`` (and ``n`` when fewer distinct answers came back).
``usage`` counts the output tokens of every sample drawn and the prompt tokens of the query
(of one request), as the backend reported them.

Other routes: ``GET /v1/models``, ``GET /livez`` (liveness), ``GET /readyz`` (readiness: every
arm's upstream answers, else 503 naming the arm), ``GET /health`` (readiness, budget and spend),
``GET /metrics`` (Prometheus text, from a registry of the app's own, upstream calls and retries
per arm included) and ``GET /openapi.json`` (behind the API key; ``/docs`` and ``/redoc`` only
with ``docs=True``). Errors are OpenAI-style ``{"error": {"message", "type",
"code"}}`` bodies: 401 (missing or wrong API key), 413 (body over the size limit), 422
(malformed request, with the validation ``detail``), 400 (a request the proxy cannot serve,
such as a last message that is not the user's), 404 (a replay backend does not know the
prompt), the backend's own 400 (a context overflow, say), 404, 413, 422 or 429 passed on,
502 (the backend failed, including after all its retries) and 504 (the backend, or the
request deadline, timed out).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import math
import os
import socket
import sys
import tempfile
import time
import uuid
import warnings
from collections import Counter
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterator,
    Mapping,
    MutableMapping,
    Sequence,
)
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from fastapi import Depends, FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException
from starlette.routing import Route

from computealloc import datasets
from computealloc.arms import Arm, open_arms, parse_arm
from computealloc.backends import (
    Backend,
    BackendError,
    Completion,
    ReplayBackend,
    UnknownPromptError,
)
from computealloc.deploy import RuntimeOptions, open_runtime
from computealloc.fleet import AccountLink, CapExceeded, Fleet, KeyBudget, read_keys
from computealloc.runtime import AnsweringRuntime, RuntimeAnswer
from computealloc.spend_store import MemoryStore, SpendStore, open_store
from computealloc.units import Price, PriceLike
from computealloc.workers import WorkerState, gather, publish

__all__ = [
    "API_KEY_ENV",
    "DEFAULT_KEEP_ALIVE_S",
    "DEFAULT_PORT",
    "banner",
    "create_app",
    "open_backends",
    "read_api_key",
    "serve",
    "worker_app",
]

#: Environment variable read by :func:`serve` when no API key is passed.
API_KEY_ENV = "COMPUTEALLOC_API_KEY"
#: :func:`serve`'s default port (not 8000, vLLM's and SGLang's, which the proxy usually fronts).
DEFAULT_PORT = 8100
#: Seconds an idle client connection is kept open (uvicorn's ``timeout_keep_alive``). Longer
#: than the idle timeouts of clients (httpx and the ``openai`` client 5 s, aiohttp 15 s) and of
#: load balancers (60 s), so the client always closes an idle connection first: with uvicorn's
#: default of 5 s, a client reusing a connection just as the server closes it gets a ReadError
#: that the server never logs (``benchmarks/bench_keepalive.py`` measures both).
DEFAULT_KEEP_ALIVE_S = 75.0
#: Seconds a readiness probe of a backend (``GET /models``) may take, and a result is reused.
_PROBE_TIMEOUT_S = 2.0
_PROBE_CACHE_S = 5.0
_CHAT_PATH = "/v1/chat/completions"
_FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "content_filter", "function_call"})
_JSON = "application/json"
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
#: Seconds between two publications of a worker's totals (``shared_dir``).
_PUBLISH_S = 0.25
#: Environment variable naming the file (mode 0600) of :func:`serve`'s settings, which its
#: worker processes read (the settings hold API keys: they never travel in the environment).
_SETTINGS_ENV = "COMPUTEALLOC_SERVE_SETTINGS_FILE"
#: What the app serves: the runtime of any deployable rule (a policy choosing an action per
#: query, or a sequential stopping rule), built by :func:`computealloc.deploy.open_runtime`.
ServedRuntime = AnsweringRuntime


# --- request and error models -----------------------------------------------------------------


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


def _error_response(status: int, message: str, kind: str, **extra: Any) -> Response:
    body = {"error": {"message": message, "type": kind, "code": status}, **extra}
    return Response(_dumps(body), status_code=status, media_type=_JSON)


def _dumps(body: object) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


_ERROR_DOCS: dict[int | str, dict[str, Any]] = {
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


# --- middleware: body limit and request counts -------------------------------------------------


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


class _Guard:
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
            if scope.get("path") == _CHAT_PATH:
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
    body = _dumps({"error": {"message": error.detail, "type": error.kind, "code": 413}})
    headers = [(b"content-type", _JSON.encode()), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": error.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# --- metrics ------------------------------------------------------------------------------------


class _RuntimeCollector(Collector):
    """Prometheus metrics read from the runtime's totals (of every worker) at scrape time."""

    def __init__(
        self,
        runtime: ServedRuntime,
        totals: Callable[[], tuple[WorkerState, int]],
        fleet: Fleet | None = None,
    ) -> None:
        self.runtime = runtime
        self.totals = totals
        self.fleet = fleet

    def collect(self) -> Iterator[Metric]:
        state, workers = self.totals()
        ledger = state.ledger
        requests = CounterMetricFamily(
            "computealloc_requests", "Chat completion requests by HTTP status.", labels=["code"]
        )
        for code, count in sorted(state.statuses.items()):
            requests.add_metric([str(code)], count)
        yield requests
        totals = (
            (
                "queries",
                "Queries charged (answered, or failed after drawing samples).",
                ledger.queries,
            ),
            ("failed_queries", "Queries that failed.", ledger.failed),
            ("samples", "Samples drawn from the backends.", ledger.samples),
            ("output_tokens", "Output tokens of the samples drawn.", ledger.output_tokens),
            (
                "prompt_tokens",
                "Prompt tokens of the charged queries (one request's each, as in usage).",
                ledger.prompt_tokens,
            ),
            ("cost", f"Cost spent, in {self.runtime.cost_unit}.", ledger.cost),
        )
        for name, text, value in totals:
            yield CounterMetricFamily(f"computealloc_{name}", text, value=value)
        actions = CounterMetricFamily(
            "computealloc_actions", "Answered queries per action.", labels=["action"]
        )
        for action in self.runtime.actions:
            actions.add_metric([action], ledger.actions.get(action, 0))
        yield actions
        arm_samples = CounterMetricFamily(
            "computealloc_arm_samples", "Samples drawn per arm.", labels=["arm"]
        )
        arm_cost = CounterMetricFamily(
            "computealloc_arm_cost",
            f"Cost spent per arm, in {self.runtime.cost_unit}.",
            labels=["arm"],
        )
        for arm in sorted(ledger.arm_samples):
            arm_samples.add_metric([arm], ledger.arm_samples[arm])
            arm_cost.add_metric([arm], ledger.arm_cost[arm])
        yield arm_samples
        yield arm_cost
        calls = CounterMetricFamily(
            "computealloc_upstream_requests",
            "Upstream calls (HTTP attempts, retries included) per arm and outcome.",
            labels=["arm", "outcome"],
        )
        for arm, outcomes in sorted(state.upstream.items()):
            for outcome, count in sorted(outcomes.items()):
                calls.add_metric([arm, outcome], count)
        yield calls
        retries = CounterMetricFamily(
            "computealloc_upstream_retries", "Upstream attempts retried per arm.", labels=["arm"]
        )
        for arm in sorted(state.upstream):
            retries.add_metric([arm], state.retries.get(arm, 0))
        yield retries
        gauges = (
            ("mean_cost", "Running mean cost per charged query.", ledger.mean_cost),
            ("lam", "Current dual price of cost (queries-weighted over workers).", state.lam),
            (
                "budget",
                f"Target mean cost per query, in {self.runtime.cost_unit}.",
                self.runtime.budget,
            ),
            ("workers", "Worker processes (replicas) whose totals are reported.", workers),
        )
        for name, text, value in gauges:
            yield GaugeMetricFamily(f"computealloc_{name}", text, value=value)
        if self.fleet is not None:
            yield from self.fleet.metrics()


# --- the app --------------------------------------------------------------------------------------


def create_app(
    runtime: ServedRuntime,
    *,
    api_key: str | None = None,
    max_body_bytes: int = 1 << 20,
    served_model_name: str = "computealloc",
    request_timeout: float | None = None,
    shared_dir: str | os.PathLike[str] | None = None,
    store: SpendStore | None = None,
    budget_name: str = "default",
    keys: Sequence[tuple[KeyBudget, ServedRuntime]] = (),
    docs: bool = False,
) -> FastAPI:
    """The proxy as a FastAPI app.

    Parameters
    ----------
    runtime : AnsweringRuntime
        Applies the policy and keeps the ledger; its backends are closed at shutdown.
    api_key : str, optional
        When given, ``/v1/...`` routes and ``/openapi.json`` (and ``/docs``, ``/redoc``) need
        ``Authorization: Bearer <api_key>``; ``/livez``, ``/readyz``, ``/health`` and
        ``/metrics`` stay open.
    max_body_bytes : int
        Largest request body accepted, in bytes; larger ones get 413.
    served_model_name : str
        The model id listed by ``/v1/models`` and returned in responses.
    request_timeout : float, optional
        Seconds a chat request may take end to end before it is answered with 504.
    shared_dir : path-like, optional
        A folder shared by the worker processes of one server: the app publishes its totals
        there and reports the totals of all of them (:mod:`computealloc.workers`).
    store : SpendStore, optional
        A spend store shared by the replicas of a fleet (:mod:`computealloc.spend_store`):
        replicas with the same store and ``budget_name`` hold one budget, and ``/metrics``
        and ``/health`` report the fleet's totals and this replica's (:mod:`computealloc.fleet`).
        Replaces ``shared_dir``.
    budget_name : str
        The budget's name in the store.
    keys : sequence of (KeyBudget, runtime)
        Per-key budgets: a request carrying a key is answered by its runtime, under its budget
        and hard cap (429 ``insufficient_quota`` once the cap is spent); with keys, a request
        without one needs ``api_key``. They live in ``store`` (in process by default).
    docs : bool
        Serve the interactive ``/docs`` (Swagger UI) and ``/redoc`` pages, whose JavaScript
        and fonts come from a CDN; off by default. ``/openapi.json`` is always served.

    Returns
    -------
    FastAPI

    Notes
    -----
    ``/livez`` answers 200 while the process runs. ``/readyz`` answers 200 when every arm's
    backend answers a ``GET /models`` within 2 s (a replayed log always does) and the spend
    store, if any, is up, else 503 naming what is not ready; probes are reused for 5 s.
    ``/health`` reports the same readiness (``status`` ``"ok"`` or ``"degraded"``, ``ready``,
    ``arms``) with the budget and the spend so far.
    """
    _check_app_args(runtime, api_key, max_body_bytes, served_model_name, request_timeout)
    statuses: Counter[int] = Counter()
    folder = None if shared_dir is None else Path(shared_dir)
    fleet = None
    if store is not None or keys:
        accounts = [(key, rt, rt.worst_cost) for key, rt in keys]
        fleet = Fleet(store or MemoryStore(), budget_name, runtime, statuses, accounts)
        folder = None

    def own() -> WorkerState:
        upstream = runtime.upstream()
        return WorkerState(
            runtime.ledger,
            dict(statuses),
            runtime.lam,
            {arm: dict(stats.outcomes) for arm, stats in upstream.items()},
            {arm: stats.retries for arm, stats in upstream.items()},
        )

    def totals() -> tuple[WorkerState, int]:
        if fleet is not None:  # the store holds spend, not calls: upstream calls are this replica's
            state, replicas = fleet.totals()
            mine = own()
            return replace(state, upstream=mine.upstream, retries=mine.retries), replicas
        return (own(), 1) if folder is None else gather(folder, own())

    async def publishing(folder: Path) -> None:
        while True:
            publish(folder, own())
            await asyncio.sleep(_PUBLISH_S)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = None if folder is None else asyncio.create_task(publishing(folder))
        if fleet is not None:
            await fleet.start()
        yield
        if task is not None and folder is not None:
            task.cancel()
            publish(folder, own())
        if fleet is not None:
            await fleet.stop()
        for served in (runtime, *(rt for _, rt in keys)):
            await served.aclose()

    app = FastAPI(
        title="computealloc proxy",
        summary="OpenAI-compatible chat completions under a compute budget.",
        lifespan=lifespan,
        openapi_url=None,  # served below, behind the key
        docs_url=None,
        redoc_url=None,
    )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_RuntimeCollector(runtime, totals, fleet))
    app.state.runtime = runtime
    app.state.registry = registry
    app.add_middleware(_Guard, max_body_bytes=max_body_bytes, statuses=statuses)
    _add_error_handler(app)
    key = None if api_key is None else f"Bearer {api_key}".encode()
    chat = _ChatEndpoint(runtime, key, served_model_name, request_timeout, fleet)
    app.router.routes.append(Route(_CHAT_PATH, chat, methods=["POST"], name="chat_completions"))
    app.openapi = _openapi(app)  # type: ignore[method-assign]

    async def authorize(request: Request) -> None:
        _account(fleet, key, request.headers.get("authorization", ""))

    @app.get("/v1/models", dependencies=[Depends(authorize)], responses=_ERROR_DOCS)
    async def models() -> dict[str, Any]:
        """The one model the proxy serves."""
        card = {
            "id": served_model_name,
            "object": "model",
            "created": 0,
            "owned_by": "computealloc",
        }
        return {"object": "list", "data": [card]}

    @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(authorize)])
    async def openapi_schema() -> dict[str, Any]:
        return app.openapi()

    if docs:
        from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html

        @app.get("/docs", include_in_schema=False, dependencies=[Depends(authorize)])
        async def swagger() -> Response:
            return get_swagger_ui_html(openapi_url="/openapi.json", title=app.title)

        @app.get("/redoc", include_in_schema=False, dependencies=[Depends(authorize)])
        async def redoc() -> Response:
            return get_redoc_html(openapi_url="/openapi.json", title=app.title)

    readiness = _Readiness(runtime, fleet)

    @app.get("/livez")
    async def livez() -> dict[str, str]:
        """Liveness: 200 while the process answers."""
        return {"status": "alive"}

    @app.get("/readyz", responses={503: {"model": ErrorResponse}})
    async def readyz() -> Response:
        """Readiness: 200 when every arm's backend (and the spend store) answers, else 503
        naming the first that does not."""
        arms = await readiness.check()
        failing = {arm: why for arm, why in arms.items() if why != "ok"}
        if failing:
            arm, why = next(iter(failing.items()))
            message = f"Not ready: {arm!r} does not answer ({why})."
            return _error_response(503, message, "unavailable", arms=arms)
        return Response(_dumps({"status": "ready", "arms": arms}), media_type=_JSON)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Readiness (every arm's backend answers), the budget and where the spend stands
        (over every live worker or replica); with a spend store also the store's state, this
        replica's totals and every key's."""
        if fleet is not None:
            await fleet.refresh()
        arms = await readiness.check()
        ready = all(why == "ok" for why in arms.values())
        state, workers = totals()
        mean, lam = state.ledger.mean_cost, state.lam
        return {
            "status": "ok" if ready else "degraded",
            "ready": ready,
            "arms": arms,
            "budget": runtime.budget,
            "cost_unit": runtime.cost_unit,
            "lam": None if lam != lam else lam,
            "queries": state.ledger.queries,
            "mean_cost": None if mean != mean else mean,
            "workers": workers,
            **({} if fleet is None else fleet.health()),
        }

    @app.get("/metrics")
    async def metrics() -> Response:
        """Prometheus metrics: requests, samples, tokens, cost, mean cost, lam, actions."""
        if fleet is not None:
            await fleet.refresh()
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app


class _Readiness:
    """Whether each arm's backend answers (and the spend store is up), probed at most every
    :data:`_PROBE_CACHE_S` seconds; concurrent checks share one probe."""

    def __init__(self, runtime: ServedRuntime, fleet: Fleet | None) -> None:
        self.runtime = runtime
        self.fleet = fleet
        self._lock = asyncio.Lock()
        self._at = -math.inf
        self._last: dict[str, str] = {}

    async def check(self) -> dict[str, str]:
        """``"ok"`` or what is wrong, per arm (and ``"spend_store"`` with a fleet)."""
        async with self._lock:
            if time.monotonic() - self._at >= _PROBE_CACHE_S:
                arms = self.runtime.arms
                found = await asyncio.gather(*(_probe(b) for b in arms.values()))
                self._last = dict(zip(arms, found, strict=True))
                self._at = time.monotonic()
            checked = dict(self._last)
        if self.fleet is not None:
            checked["spend_store"] = "ok" if self.fleet.up else "the spend store is down"
        return checked


async def _probe(backend: Backend) -> str:
    """``"ok"`` when ``backend`` answers (one without a ``probe`` method always does)."""
    probe = getattr(backend, "probe", None)
    if probe is None:
        return "ok"
    why = await probe(_PROBE_TIMEOUT_S)
    return "ok" if why is None else str(why)


def _check_app_args(
    runtime: object,
    api_key: object,
    max_body_bytes: object,
    served_model_name: object,
    request_timeout: object,
) -> None:
    checks = (
        (
            "runtime",
            runtime,
            "a Runtime, a SequentialRuntime or another AnsweringRuntime",
            isinstance(runtime, AnsweringRuntime),
        ),
        (
            "api_key",
            api_key,
            "a non-empty str or None",
            api_key is None or (isinstance(api_key, str) and bool(api_key)),
        ),
        (
            "max_body_bytes",
            max_body_bytes,
            "an int in [1, inf)",
            isinstance(max_body_bytes, int)
            and not isinstance(max_body_bytes, bool)
            and max_body_bytes >= 1,
        ),
        (
            "served_model_name",
            served_model_name,
            "a non-empty str",
            isinstance(served_model_name, str) and bool(served_model_name),
        ),
        (
            "request_timeout",
            request_timeout,
            "a float in (0, inf) or None",
            request_timeout is None
            or (
                isinstance(request_timeout, (int, float))
                and not isinstance(request_timeout, bool)
                and request_timeout > 0
            ),
        ),
    )
    for name, value, expected, ok in checks:
        if not ok:
            shown = type(value).__name__ if name == "runtime" else repr(value)
            raise ValueError(
                f"The '{name}' parameter of create_app must be {expected}. Got {shown} instead."
            )


def _account(fleet: Fleet | None, expected: bytes | None, given: str) -> AccountLink | None:
    """The key account of the ``Authorization`` header ``given``; None for the main budget
    (when the header passes :func:`_check_key`, which a keyed fleet needs ``api_key`` for)."""
    link = None if fleet is None else fleet.account(given)
    if link is None and fleet is not None and fleet.keys and expected is None:
        raise APIError(
            401, "Unknown API key: send 'Authorization: Bearer <key>'.", "invalid_api_key"
        )
    if link is None:
        _check_key(expected, given)
    return link


def _check_key(expected: bytes | None, given: str) -> None:
    """Raise 401 unless the ``Authorization`` header ``given`` carries the expected key."""
    if expected is not None and not hmac.compare_digest(given.encode(), expected):
        raise APIError(
            401,
            "Missing or wrong API key: send 'Authorization: Bearer <key>'.",
            "invalid_api_key",
        )


def _add_error_handler(app: FastAPI) -> None:
    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        kind = exc.kind if isinstance(exc, APIError) else "invalid_request_error"
        return _error_response(exc.status_code, str(exc.detail), kind)


def _invalid_request(exc: ValidationError) -> Response:
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
    return _error_response(422, message, "invalid_request_error", detail=detail)


# --- the chat completions endpoint ----------------------------------------------------------------


class _ChatEndpoint:
    """``POST /v1/chat/completions`` as a plain ASGI app in the FastAPI router.

    A FastAPI route would solve dependencies, parse and validate the body and render the
    response through its own machinery, about 0.15 ms of CPU per request (measured in
    ``benchmarks/bench_serve.py``: 0.55 ms of proxy CPU per proxied request with it, 0.40
    without). Here the body is validated by the same pydantic model in one call
    (:meth:`~pydantic.BaseModel.model_validate_json`) and the response is rendered to bytes
    directly. Errors are raised as :class:`APIError` for the app's handler; :func:`_openapi`
    documents the route.
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
        link = _account(self.fleet, self.key, request.headers.get("authorization", ""))
        try:
            body = ChatCompletionRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            await _invalid_request(exc)(scope, receive, send)
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
        return Response(_dumps(completion), media_type=_JSON, headers=headers)


def _openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """``app.openapi`` with the chat completions route, which is not a FastAPI route."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, summary=app.summary, routes=app.routes
            )
            models = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in (ChatCompletionRequest, ErrorResponse):
                found = model.model_json_schema(ref_template="#/components/schemas/{model}")
                models.update(found.pop("$defs", {}))
                models[model.__name__] = found
            schema["paths"][_CHAT_PATH] = {"post": _CHAT_OPERATION}
            app.openapi_schema = schema
        return app.openapi_schema

    return openapi


def _ref(name: str) -> dict[str, Any]:
    return {"schema": {"$ref": f"#/components/schemas/{name}"}}


_CHAT_OPERATION: dict[str, Any] = {
    "summary": "Chat Completions",
    "description": "Answer a chat completion with the policy's action under the budget.",
    "operationId": "chat_completions",
    "requestBody": {"required": True, "content": {_JSON: _ref("ChatCompletionRequest")}},
    "responses": {
        "200": {
            "description": "A chat completion, or with 'stream' its chat.completion.chunk events.",
            "content": {_JSON: {"schema": {"type": "object"}}, "text/event-stream": {}},
        },
        **{
            str(code): {
                "description": doc["description"],
                "content": {_JSON: _ref("ErrorResponse")},
            }
            for code, doc in _ERROR_DOCS.items()
        },
        "422": {
            "description": "The body is not JSON or not a chat completion request.",
            "content": {_JSON: _ref("ErrorResponse")},
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
    events = [b"data: " + _dumps(chunk) + b"\n\n" for chunk in chunks]
    return b"".join(events) + b"data: [DONE]\n\n"


# --- the serve command ----------------------------------------------------------------------------


def open_backends(
    spec: str | Sequence[str | Arm],
    *,
    model: str | None = None,
    api_key: str | None = None,
    timeout: float = 60.0,
    max_attempts: int = 6,
    seed: int = 0,
    client: Literal["aiohttp", "openai"] = "aiohttp",
) -> Backend | dict[str, Backend]:
    """The backend(s) named by ``--backend`` values or arms.

    Parameters
    ----------
    spec : str or sequence of str or Arm
        One backend: ``"replay:LOG"`` (``LOG`` a sample log file or a
        :mod:`computealloc.datasets` name, e.g. ``"replay:mot_cascade:llama-2-13b/gsm/pot2"``)
        or an ``http(s)://`` URL of an OpenAI-compatible server, including ``/v1``. Several
        arms: ``"NAME=URL"`` (or ``"NAME=replay:LOG"``) each, where ``NAME`` is the arm (model)
        the policy's actions name, also sent upstream as the model; or
        :class:`~computealloc.arms.Arm` objects (a serve config file's ``arms``).
    model : str, optional
        The served model name of a single unnamed URL (required there); with a replayed log
        holding several models, the one to replay (default: one backend per model, for routing).
    api_key : str, optional
        Key for the upstream servers (arms may name their own).
    timeout : float
        Seconds per upstream request.
    max_attempts : int
        Attempts per upstream request (retries on 429/5xx, timeouts, malformed replies).
    seed : int
        Serving order of a replayed log.
    client : {"aiohttp", "openai"}
        Transport to a URL backend (see :class:`~computealloc.backends.OpenAIBackend`).

    Returns
    -------
    Backend or dict of str to Backend
        One backend, or one per arm name (:func:`~computealloc.arms.open_arms`).

    Raises
    ------
    ValueError
        Naming ``--backend``: a value that is none of these forms, an arm given twice, or
        named and unnamed values mixed.
    """
    specs = [spec] if isinstance(spec, str) else list(spec)
    if len(specs) == 1 and isinstance(specs[0], str) and _unnamed(specs[0]):
        return _open_one(specs[0], model, api_key, timeout, max_attempts, seed, client)
    if not specs or any(isinstance(s, str) and _unnamed(s) for s in specs):
        raise ValueError(
            "With several --backend values, name each one's arm: --backend NAME=URL (NAME the "
            f"model the policy's actions route to). Got {specs!r}."
        )
    arms = [parse_arm(s) if isinstance(s, str) else s for s in specs]
    return open_arms(
        arms, api_key=api_key, timeout=timeout, max_attempts=max_attempts, seed=seed, client=client
    )


def _unnamed(spec: str) -> bool:
    """Whether a ``--backend`` value is a bare URL, a replay, or a mistake (not NAME=...)."""
    return spec.startswith(("http://", "https://", "replay:")) or "=" not in spec


def _open_one(
    spec: str,
    model: str | None,
    api_key: str | None,
    timeout: float,
    max_attempts: int,
    seed: int,
    client: Literal["aiohttp", "openai"],
) -> Backend | dict[str, Backend]:
    from computealloc.backends import OpenAIBackend, RetryPolicy

    if spec.startswith("replay:"):
        log = datasets.open_log(spec.removeprefix("replay:"))
        if model is not None or len(log.models) == 1:
            return ReplayBackend(log, model, seed=seed)
        return {m: ReplayBackend(log, m, seed=seed) for m in log.models}
    if spec.startswith(("http://", "https://")):
        if model is None:
            raise ValueError(
                f"A backend URL needs the model name it serves (--model, or --backend "
                f"NAME=URL). Got {spec!r}."
            )
        retry = RetryPolicy(max_attempts=max_attempts)
        return OpenAIBackend(
            spec, model, api_key=api_key, timeout=timeout, retry=retry, client=client
        )
    raise ValueError(
        "--backend must be 'replay:LOG', an http(s):// URL of an OpenAI-compatible server, or "
        f"NAME=URL. Got {spec!r} instead."
    )


def serve(
    policy_path: str | os.PathLike[str],
    budget: float,
    backend: str | Sequence[str | Arm],
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    model: str | None = None,
    api_key: str | None = None,
    api_key_file: str | os.PathLike[str] | None = None,
    backend_api_key: str | None = None,
    probe_m: int | None = None,
    temperature: float = 0.7,
    max_tokens: int | None = None,
    timeout: float = 60.0,
    max_attempts: int = 6,
    request_timeout: float | None = 600.0,
    max_body_bytes: int = 1 << 20,
    served_model_name: str = "computealloc",
    prices: Mapping[str, PriceLike] | Sequence[str] | None = None,
    batch_size: int = 1,
    workers: int = 1,
    client: Literal["aiohttp", "openai"] = "aiohttp",
    access_log: bool = True,
    spend_store: str | None = None,
    budget_name: str = "default",
    keys_file: str | os.PathLike[str] | None = None,
    keep_alive: float = DEFAULT_KEEP_ALIVE_S,
    docs: bool = False,
    echo: Callable[[str], None] | None = None,
) -> None:
    """Listen, load a policy, open the backend and serve the proxy with uvicorn (blocks).

    The port is bound first, so a taken port fails at once (naming ``--host``/``--port``)
    rather than after the policy has loaded; then a loading line, and once the policy is
    loaded a banner (URL, served model name, policy, budget, arms, an example request) are
    written through ``echo``.

    Parameters
    ----------
    policy_path : path-like
        A policy saved by :func:`computealloc.persist.save_policy`, or a sequential stopping
        rule saved by :func:`computealloc.persist.save_stopping` (served by a
        :class:`~computealloc.sequential_runtime.SequentialRuntime`).
    budget : float
        Target mean cost per query, in the policy's cost unit (samples for a stopping rule).
    backend : str or sequence of str or Arm
        ``"replay:LOG"``, an OpenAI-compatible URL, or one ``"NAME=URL"`` or
        :class:`~computealloc.arms.Arm` per arm the policy routes to (see
        :func:`open_backends`).
    host, port : str, int
        Where to listen; ``port`` in [1, 65535] (default :data:`DEFAULT_PORT`, 8100).
    model : str, optional
        Upstream model name (required with a URL).
    api_key : str, optional
        Key clients must send; default the ``COMPUTEALLOC_API_KEY`` environment variable, if
        set (no key otherwise).
    api_key_file : path-like, optional
        A file holding the key clients must send (instead of ``api_key``; see
        :func:`read_api_key`).
    backend_api_key : str, optional
        Key for the upstream server (default ``OPENAI_API_KEY``).
    probe_m, temperature, max_tokens
        Passed to :class:`~computealloc.runtime.Runtime`.
    prices : mapping or sequence of ``"ARM=PRICE"``, optional
        Price per arm in the policy's cost unit (:mod:`computealloc.units`); default the
        policy file's. Given, they must be the policy's (a policy saved without prices takes
        them).
    batch_size : int
        Samples per upstream call of a stopping rule (see
        :class:`~computealloc.sequential_runtime.SequentialRuntime`).
    timeout, max_attempts, client
        Per upstream request (see :func:`open_backends`).
    request_timeout : float, optional
        End-to-end deadline of a chat request, in seconds.
    max_body_bytes, served_model_name, docs
        Passed to :func:`create_app`.
    workers : int
        Worker processes (uvicorn's ``workers``). Each runs its own runtime and budget
        controller and holds the budget on the requests it answers, so all of them together
        hold it too; ``/metrics`` and ``/health`` report the totals of all workers
        (:mod:`computealloc.workers`; through the spend store when one is given, each worker
        a replica of the fleet). The workers read the settings (keys included) from a file
        only this user can read, in a private temporary folder removed when the server stops;
        the clients' key does not travel in their environment (``COMPUTEALLOC_API_KEY`` is
        dropped from it; upstream keys named by arms' ``api_key_env`` are read from it).
    access_log : bool
        Log every request (uvicorn's access log).
    spend_store : str, optional
        ``redis://HOST:PORT/DB``: the budget lives on this Redis server, shared with every
        replica started with the same store and ``budget_name`` (:mod:`computealloc.fleet`).
        Default: in this process.
    budget_name : str
        The budget's name in the store.
    keys_file : path-like, optional
        Per-key budgets and hard caps (:func:`computealloc.fleet.read_keys`).
    keep_alive : float
        Seconds an idle client connection stays open (see :data:`DEFAULT_KEEP_ALIVE_S`).
    echo : callable, optional
        Where the loading line and the banner go (default: standard error).

    Raises
    ------
    ValueError
        Naming the flag: a port out of range or taken (``--host``/``--port``), an unreadable
        ``--api-key-file``, a bad setting.

    Notes
    -----
    uvicorn runs on ``uvloop`` with the ``httptools`` parser when they are installed
    (``uvicorn[standard]``), which cuts the proxy's CPU per request; ``benchmarks/bench_serve.py``
    measures it. One process answers a few thousand requests per second; more workers help
    only when the proxy, not the model server, is the bottleneck.
    """
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    say = echo if echo is not None else _to_stderr
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"--workers must be an int in [1, inf). Got {workers!r} instead.")
    if not isinstance(keep_alive, (int, float)) or isinstance(keep_alive, bool) or keep_alive <= 0:
        raise ValueError(f"--keep-alive must be a number in (0, inf). Got {keep_alive!r}.")
    if api_key is not None and api_key_file is not None:
        raise ValueError("Give the clients' key as --api-key or as --api-key-file, not both.")
    key = read_api_key(api_key_file) if api_key_file is not None else api_key
    settings: dict[str, Any] = {
        "policy_path": str(policy_path),
        "budget": budget,
        "backend": backend
        if isinstance(backend, str)
        else [b.model_dump() if isinstance(b, Arm) else b for b in backend],
        "model": model,
        "api_key": key if key is not None else os.environ.get(API_KEY_ENV) or None,
        "backend_api_key": backend_api_key,
        "probe_m": probe_m,
        "temperature": temperature,
        "max_tokens": max_tokens,
        "timeout": timeout,
        "max_attempts": max_attempts,
        "request_timeout": request_timeout,
        "max_body_bytes": max_body_bytes,
        "served_model_name": served_model_name,
        "prices": None if prices is None else _raw_prices(prices),
        "batch_size": batch_size,
        "client": client,
        "spend_store": spend_store,
        "budget_name": budget_name,
        "keys_file": None if keys_file is None else str(keys_file),
        "docs": docs,
    }
    sock = _bind(host, port)  # before the (slow) load: a taken port fails at once
    try:
        say(f"Loading {policy_path} and opening the backends ...")
        app = _build_app(**settings)  # every setting is checked here, before any worker starts
        say(banner(app.state.runtime, host, port, served_model_name, str(policy_path), key))
        options: dict[str, Any] = {
            "host": host,  # for uvicorn's own messages: it listens on ``sock``
            "port": port,
            "access_log": access_log,
            "log_level": "info",
            "timeout_keep_alive": keep_alive,
        }
        if workers == 1:
            uvicorn.Server(uvicorn.Config(app, **options)).run(sockets=[sock])
            return
        asyncio.run(app.state.runtime.aclose())
        with tempfile.TemporaryDirectory(prefix="computealloc-serve-") as folder:
            path = _private_file(Path(folder) / "settings.json", {**settings, "shared_dir": folder})
            os.environ[_SETTINGS_ENV] = str(path)
            inherited = os.environ.pop(API_KEY_ENV, None)  # the workers read it from the file
            try:
                config = uvicorn.Config(
                    "computealloc.server:worker_app", factory=True, workers=workers, **options
                )
                Multiprocess(config, sockets=[sock]).run()
            finally:
                os.environ.pop(_SETTINGS_ENV, None)
                if inherited is not None:
                    os.environ[API_KEY_ENV] = inherited
    finally:
        sock.close()


def _to_stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``; a ValueError naming ``--host``/``--port``."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"--port must be an int in [1, 65535]. Got {port!r} instead.")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        hint = (
            " Another server listens there (vLLM and SGLang use 8000): pick a free --port."
            if exc.errno in (98, 48, 10048)  # EADDRINUSE on Linux, macOS, Windows
            else " Check --host (an address of this machine, 0.0.0.0 for all)."
        )
        raise ValueError(
            f"Cannot listen on {host}:{port} (--host/--port): {reason}.{hint}"
        ) from exc
    sock.set_inheritable(True)
    return sock


def _private_file(path: Path, settings: dict[str, Any]) -> Path:
    """Write ``settings`` as JSON to a new file only this user can read (mode 0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(settings, fh)
    return path


def read_api_key(path: str | os.PathLike[str]) -> str:
    """The API key held by the file ``path`` (its first line, surrounding blanks dropped).

    Raises
    ------
    ValueError
        Naming ``--api-key-file`` and the file: unreadable, or no key in it. A file others
        can read is accepted with a warning.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
        mode = Path(path).stat().st_mode
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"--api-key-file {path}: cannot read it ({exc}).") from exc
    lines = text.strip().splitlines()
    key = lines[0].strip() if lines else ""
    if not key:
        raise ValueError(f"--api-key-file {path}, line 1: no key in the file.")
    if mode & 0o077:
        warnings.warn(
            f"--api-key-file {path} can be read by other users (mode {mode & 0o777:o}); "
            f"chmod 600 {path}.",
            stacklevel=2,
        )
    return key


def banner(
    runtime: ServedRuntime,
    host: str,
    port: int,
    served_model_name: str,
    policy_path: str,
    api_key: str | None = None,
) -> str:
    """The start-up banner of :func:`serve`: URL, model, policy, budget, arms, a request.

    The key itself is never shown; the example request reads it from ``$COMPUTEALLOC_API_KEY``.
    """
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)
    url = f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"
    method = runtime.describe()
    arms = "\n".join(
        f"    {arm} -> {getattr(b, 'base_url', None) or 'replayed log'}"
        for arm, b in runtime.arms.items()
    )
    auth = f' -H "Authorization: Bearer ${API_KEY_ENV}"' if api_key else ""
    body = _dumps(
        {"model": served_model_name, "messages": [{"role": "user", "content": "What is 12 * 7?"}]}
    ).decode()
    return (
        f"computealloc proxy on {url}/v1 (model {served_model_name!r})\n"
        f"  policy  {policy_path} ({method})\n"
        f"  budget  {runtime.budget:g} {runtime.cost_unit} per query\n"
        f"  arms\n{arms}\n"
        f"  health  {url}/livez  {url}/readyz  {url}/health  {url}/metrics\n"
        f"  try     curl {url}/v1/chat/completions -H 'Content-Type: application/json'{auth} "
        f"-d '{body}'"
    )


def _arm(value: str | dict[str, Any]) -> str | Arm:
    """A ``--backend`` value, or an arm sent to a worker as a dict."""
    return value if isinstance(value, str) else Arm.model_validate(value)


def _raw_prices(
    prices: Mapping[str, PriceLike] | Sequence[str],
) -> dict[str, PriceLike] | list[str]:
    """``prices`` as JSON for worker processes (parsed with the policy's unit later)."""
    if isinstance(prices, Mapping):
        return {str(k): v.spec if isinstance(v, Price) else v for k, v in prices.items()}
    return [prices] if isinstance(prices, str) else list(prices)


def worker_app() -> FastAPI:
    """The app of one worker process of :func:`serve` (uvicorn's factory; reads its settings
    from the private file the environment names)."""
    return _build_app(**json.loads(Path(os.environ[_SETTINGS_ENV]).read_text(encoding="utf-8")))


def _build_app(
    policy_path: str,
    budget: float,
    backend: str | list[str | dict[str, Any]],
    *,
    model: str | None,
    api_key: str | None,
    backend_api_key: str | None,
    probe_m: int | None,
    temperature: float,
    max_tokens: int | None,
    timeout: float,
    max_attempts: int,
    request_timeout: float | None,
    max_body_bytes: int,
    served_model_name: str,
    prices: dict[str, PriceLike] | list[str] | None,
    batch_size: int,
    client: Literal["aiohttp", "openai"],
    spend_store: str | None = None,
    budget_name: str = "default",
    keys_file: str | None = None,
    shared_dir: str | None = None,
    docs: bool = False,
) -> FastAPI:
    """Load the policy, open the backend, build the runtime and the app (:func:`serve`)."""
    from computealloc.persist import load_file

    policy = load_file(policy_path)
    keys = [] if keys_file is None else read_keys(keys_file)
    store = None if spend_store is None else open_store(spend_store)
    arms = backend if isinstance(backend, str) else [_arm(b) for b in backend]
    backends = open_backends(
        arms,
        model=model,
        api_key=backend_api_key,
        timeout=timeout,
        max_attempts=max_attempts,
        client=client,
    )

    options = RuntimeOptions(
        prices=prices,
        probe_m=probe_m,
        batch_size=batch_size,
        temperature=temperature,
        max_tokens=max_tokens,
    )

    def runtime_at(budget: float) -> ServedRuntime:
        return open_runtime(policy, backends, budget=budget, options=options)

    return create_app(
        runtime_at(budget),
        api_key=api_key,
        max_body_bytes=max_body_bytes,
        served_model_name=served_model_name,
        request_timeout=request_timeout,
        shared_dir=shared_dir,
        store=store,
        budget_name=budget_name,
        keys=[(key, runtime_at(key.budget)) for key in keys],
        docs=docs,
    )
