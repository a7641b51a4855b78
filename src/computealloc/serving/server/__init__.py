"""An OpenAI-compatible proxy that applies a compute-allocation policy under a budget.

``POST /v1/chat/completions`` answers each request with :meth:`Runtime.answer
<computealloc.serving.runtime.Runtime.answer>`: the policy picks an action (how many samples, which
model), the runtime samples the backend, votes and charges the cost (or, for a sequential
stopping rule, :meth:`SequentialRuntime.answer
<computealloc.serving.sequential_runtime.SequentialRuntime.answer>` samples until the rule stops
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
<computealloc.serving.runtime.RuntimeAnswer.choices>`), fewer when the samples hold fewer. Requests
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

The package's modules, each with one job:

- :mod:`~computealloc.serving.server.schemas`: request and response schemas, the OpenAI error
format.
- :mod:`~computealloc.serving.server.middleware`: the body limit and the per-status request counts.
- :mod:`~computealloc.serving.server.auth`: the API keys and per-key accounts of a request.
- :mod:`~computealloc.serving.server.chat`: the chat completions endpoint.
- :mod:`~computealloc.serving.server.health`: readiness probes and Prometheus metrics.
- :mod:`~computealloc.serving.server.app`: :func:`create_app`, the FastAPI app and its routes.
- :mod:`~computealloc.serving.server.upstream`: :func:`open_backends`.
- :mod:`~computealloc.serving.server.launch`: :func:`serve` (socket, banner, workers) and
  :func:`worker_app`.
"""

from __future__ import annotations

from computealloc.serving.server.app import create_app
from computealloc.serving.server.launch import (
    API_KEY_ENV,
    DEFAULT_KEEP_ALIVE_S,
    DEFAULT_PORT,
    banner,
    read_api_key,
    serve,
    worker_app,
)
from computealloc.serving.server.schemas import APIError as APIError
from computealloc.serving.server.schemas import ChatCompletionRequest as ChatCompletionRequest
from computealloc.serving.server.schemas import ChatMessage as ChatMessage
from computealloc.serving.server.schemas import ContentPart as ContentPart
from computealloc.serving.server.schemas import ErrorBody as ErrorBody
from computealloc.serving.server.schemas import ErrorResponse as ErrorResponse
from computealloc.serving.server.schemas import ServedRuntime as ServedRuntime
from computealloc.serving.server.schemas import StreamOptions as StreamOptions
from computealloc.serving.server.upstream import open_backends

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
