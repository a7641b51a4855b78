"""The proxy as a FastAPI app (:func:`create_app`): the chat completions endpoint, the API
key, ``/v1/models``, the health routes and metrics, and the OpenAPI schema.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.exceptions import HTTPException
from starlette.routing import Route

from computealloc.serving.fleet import Fleet, KeyBudget
from computealloc.serving.runtime import AnsweringRuntime
from computealloc.serving.server.auth import account
from computealloc.serving.server.chat import CHAT_OPERATION, ChatEndpoint
from computealloc.serving.server.health import Readiness, RuntimeCollector
from computealloc.serving.server.middleware import Guard
from computealloc.serving.server.schemas import (
    CHAT_PATH,
    ERROR_DOCS,
    JSON,
    APIError,
    ChatCompletionRequest,
    ErrorResponse,
    ServedRuntime,
    dumps,
    error_response,
)
from computealloc.serving.spend_store import MemoryStore, SpendStore
from computealloc.serving.workers import WorkerState, gather, publish

__all__ = ["create_app"]


#: Seconds between two publications of a worker's totals (``shared_dir``).
_PUBLISH_S = 0.25


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
        there and reports the totals of all of them (:mod:`computealloc.serving.workers`).
    store : SpendStore, optional
        A spend store shared by the replicas of a fleet (:mod:`computealloc.serving.spend_store`):
        replicas with the same store and ``budget_name`` hold one budget, and ``/metrics``
        and ``/health`` report the fleet's totals and this replica's
        (:mod:`computealloc.serving.fleet`). Replaces ``shared_dir``.
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
    registry.register(RuntimeCollector(runtime, totals, fleet))
    app.state.runtime = runtime
    app.state.registry = registry
    app.add_middleware(Guard, max_body_bytes=max_body_bytes, statuses=statuses)
    _add_error_handler(app)
    key = None if api_key is None else f"Bearer {api_key}".encode()
    chat = ChatEndpoint(runtime, key, served_model_name, request_timeout, fleet)
    app.router.routes.append(Route(CHAT_PATH, chat, methods=["POST"], name="chat_completions"))
    app.openapi = _openapi(app)  # type: ignore[method-assign]

    async def authorize(request: Request) -> None:
        account(fleet, key, request.headers.get("authorization", ""))

    @app.get("/v1/models", dependencies=[Depends(authorize)], responses=ERROR_DOCS)
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

    readiness = Readiness(runtime, fleet)

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
            return error_response(503, message, "unavailable", arms=arms)
        return Response(dumps({"status": "ready", "arms": arms}), media_type=JSON)

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


def _add_error_handler(app: FastAPI) -> None:
    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        kind = exc.kind if isinstance(exc, APIError) else "invalid_request_error"
        return error_response(exc.status_code, str(exc.detail), kind)


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
            schema["paths"][CHAT_PATH] = {"post": CHAT_OPERATION}
            app.openapi_schema = schema
        return app.openapi_schema

    return openapi
