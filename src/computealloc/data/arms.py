"""Arms: named ways to draw one sample.

An arm is an endpoint (an OpenAI-compatible URL, or a replayed sample log), the model asked
there, fixed request parameters (``temperature``, ``max_tokens``, ``reasoning_effort``,
``chat_template_kwargs`` such as ``{"enable_thinking": false}``, ...) and a price. Its ``name``
is what a sample log's ``model`` column and an action's prefix say (``NAME/majority@4``), so
two arms can be two modes of one model: ``qwen3-think`` and ``qwen3-fast`` on the same server,
differing only in ``chat_template_kwargs``.

An arm may also carry a thinking plan (:class:`Thinking`): each of its samples is then a
thought capped, probed and forced by :mod:`computealloc.data.forcing`, so ``cap@512`` and
``stable@2`` arms of one reasoning model are actions like any other.

Arms come from ``--backend NAME=URL`` flags (:func:`parse_arm`) or the ``arms`` list of a serve
config file (:mod:`computealloc.serving.serve_config`); :func:`open_arms` opens their backends, each
wrapped in an :class:`ArmBackend` that adds the arm's parameters to every call.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from computealloc.data import datasets
from computealloc.data.backends.base import RESERVED_PARAMS, Backend, Completion, Prompt
from computealloc.data.forcing import CONTINUATIONS, DEFAULT_SUFFIX, ThinkingBackend, ThinkingPlan

__all__ = ["Arm", "ArmBackend", "Thinking", "open_arms", "parse_arm"]


class Thinking(BaseModel):
    """An arm's thinking plan (:class:`computealloc.data.forcing.ThinkingPlan`) and its server.

    Attributes
    ----------
    checkpoints : list of int
        Strictly increasing thinking-token counts (0: the answer without thinking); the last
        one is the cap.
    stable : int, optional
        Stop once ``stable`` probes in a row agree; none: budget forcing at the cap.
    answer_tokens : int
        Output tokens of a probe and of the forced answer.
    suffix : str
        Appended to the thought to force the answer.
    server : {"vllm", "sglang", "llama.cpp"}
        How the server continues a partial assistant message
        (:data:`computealloc.data.forcing.CONTINUATIONS`).
    confidence : float, optional
        ``TAU`` in (0, 1]: stop once a probed answer's probability (from the token
        log-probabilities) reaches ``TAU`` (live ``conf@TAU``); with ``stable``, whichever fires
        first.
    stream : bool
        Think in one streamed request, probed as the thought arrives (``stream: true``),
        instead of one request per segment.
    logprobs : bool
        Ask every request for token log-probabilities, so that each sample carries its
        answer's confidence as its ``score`` (what live ``weighted@K`` and ``top_half@K``
        votes weigh); the server must return them.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    checkpoints: tuple[int, ...]
    stable: int | None = None
    answer_tokens: int = 32
    suffix: str = DEFAULT_SUFFIX
    server: Literal["vllm", "sglang", "llama.cpp"] = "vllm"
    confidence: float | None = None
    stream: bool = False
    logprobs: bool = False

    @model_validator(mode="after")
    def _plan_is_valid(self) -> Thinking:
        self.plan()  # raises ValueError, which pydantic reports with the field's location
        return self

    def plan(self) -> ThinkingPlan:
        """The plan the forcing module runs."""
        return ThinkingPlan(
            self.checkpoints,
            self.stable,
            self.answer_tokens,
            self.suffix,
            self.confidence,
            self.stream,
            logprobs=self.logprobs,
        )


class Arm(BaseModel):
    """One arm (see the module docstring); validated, immutable.

    Attributes
    ----------
    name : str
        The arm's name in logs, actions and prices.
    url : str, optional
        ``http(s)://HOST/v1`` of an OpenAI-compatible server.
    replay : str, optional
        A sample log file or dataset name to replay instead (exactly one of ``url``, ``replay``).
    model : str, optional
        The model asked upstream (default ``name``); with ``replay``, the log's model to replay.
    api_key_env : str, optional
        Environment variable holding the upstream key (default: the server-wide key).
    params : dict
        Request fields sent with every call of this arm; they override the server-wide
        ``temperature`` and ``max_tokens``.
    price : float or str, optional
        The arm's price in the policy's cost unit (:mod:`computealloc.estimation.units`).
    thinking : Thinking, optional
        A thinking plan run on every sample (URL arms only).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    url: str | None = None
    replay: str | None = None
    model: str | None = None
    api_key_env: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    price: float | str | None = None
    thinking: Thinking | None = None

    @field_validator("url")
    @classmethod
    def _http(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("http://", "https://")):
            raise ValueError(f"must be an http(s):// URL including /v1. Got {url!r}")
        return url

    @field_validator("params")
    @classmethod
    def _not_reserved(cls, params: dict[str, Any]) -> dict[str, Any]:
        reserved = sorted(set(params) & RESERVED_PARAMS)
        if reserved:
            raise ValueError(
                f"may not set {', '.join(reserved)}: the proxy sets them per call "
                f"(reserved: {', '.join(sorted(RESERVED_PARAMS))})"
            )
        return params

    @model_validator(mode="after")
    def _one_endpoint(self) -> Arm:
        if (self.url is None) == (self.replay is None):
            raise ValueError(f"arm {self.name!r} needs exactly one of url and replay")
        if self.thinking is not None and self.url is None:
            raise ValueError(f"arm {self.name!r}: a thinking plan needs a url, not a replay")
        return self

    @property
    def upstream_model(self) -> str:
        """The model asked upstream: ``model``, else ``name``."""
        return self.model or self.name


def parse_arm(spec: str) -> Arm:
    """An arm from a ``--backend NAME=URL`` (or ``NAME=replay:LOG``) value.

    Raises
    ------
    ValueError
        Naming ``--backend`` when the value is not of that form.

    Examples
    --------
    >>> parse_arm("gpt-4=https://api.openai.com/v1").url
    'https://api.openai.com/v1'
    """
    name, sep, target = spec.partition("=")
    if not sep or not name or name.startswith(("http://", "https://", "replay:")):
        raise ValueError(f"--backend must be NAME=URL or NAME=replay:LOG. Got {spec!r} instead.")
    if target.startswith("replay:"):
        return Arm(name=name, replay=target.removeprefix("replay:"))
    if not target.startswith(("http://", "https://")):
        raise ValueError(
            f"--backend {name}=... must be followed by an http(s):// URL or replay:LOG. "
            f"Got {target!r} instead."
        )
    return Arm(name=name, url=target)


class ArmBackend:
    """An arm's backend: the endpoint's, under the arm's name, with its request parameters.

    Parameters
    ----------
    backend : Backend
        The endpoint's backend (whose ``model`` is what is asked upstream).
    params : mapping
        The arm's request fields; they override the caller's (``temperature``, ...).
    name : str
        The arm's name.

    Attributes
    ----------
    model : str
        The arm's name: what sample logs, answers and metrics call it.
    """

    def __init__(self, backend: Backend, params: Mapping[str, Any], name: str) -> None:
        self.backend = backend
        self.params = dict(params)
        self.model = name

    @property
    def scores(self) -> bool | None:
        """Whether the wrapped backend's samples all carry a ``score`` (None: unknown)."""
        return getattr(self.backend, "scores", None)

    async def sample(
        self, prompt: Prompt, n: int, *, params: Mapping[str, Any] | None = None
    ) -> list[Completion]:
        """``backend.sample`` with the arm's parameters over ``params``."""
        return await self.backend.sample(prompt, n, params={**(params or {}), **self.params})

    async def aclose(self) -> None:
        """Close the wrapped backend."""
        await self.backend.aclose()


def open_arms(
    arms: Sequence[Arm],
    *,
    api_key: str | None = None,
    timeout: float = 60.0,
    max_attempts: int = 6,
    seed: int = 0,
    client: Literal["aiohttp", "openai"] = "aiohttp",
    use_n: bool | Literal["auto"] = "auto",
) -> dict[str, Backend]:
    """One backend per arm, by arm name.

    Parameters
    ----------
    arms : sequence of Arm
        Distinct names.
    api_key : str, optional
        Upstream key of arms without ``api_key_env``.
    timeout, max_attempts, seed, client
        As :func:`computealloc.serving.server.open_backends`.
    use_n : bool or "auto"
        Whether URL arms ask for several samples in one request
        (:class:`~computealloc.data.backends.OpenAIBackend`).

    Raises
    ------
    ValueError
        An arm named twice, an ``api_key_env`` that is not set, or a streamed thinking plan
        with ``client="openai"`` (streams are read over plain HTTP).
    """
    from computealloc.data.backends import OpenAIBackend, ReplayBackend, RetryPolicy

    out: dict[str, Backend] = {}
    for arm in arms:
        if arm.name in out:
            raise ValueError(f"Arm {arm.name!r} is given more than once.")
        if arm.thinking is not None and arm.thinking.stream and client != "aiohttp":
            raise ValueError(
                f"Arm {arm.name!r} streams its thoughts (thinking.stream: true), which needs "
                f"the default client 'aiohttp' (server-sent events read over plain HTTP); got "
                f"client {client!r}: drop the client option or set thinking.stream: false."
            )
        backend: Backend
        if arm.replay is not None:
            log = datasets.open_log(arm.replay)
            backend = ReplayBackend(log, arm.model or arm.name, seed=seed)
        else:
            assert arm.url is not None
            backend = OpenAIBackend(
                arm.url,
                arm.upstream_model,
                api_key=_key(arm, api_key),
                timeout=timeout,
                retry=RetryPolicy(max_attempts=max_attempts),
                client=client,
                use_n=use_n,
            )
            if arm.thinking is not None:
                backend = ThinkingBackend(
                    backend, arm.thinking.plan(), CONTINUATIONS[arm.thinking.server], name=arm.name
                )
        plain = not arm.params and backend.model == arm.name
        out[arm.name] = backend if plain else ArmBackend(backend, arm.params, arm.name)
    return out


def _key(arm: Arm, default: str | None) -> str | None:
    if arm.api_key_env is None:
        return default
    value = os.environ.get(arm.api_key_env)
    if not value:
        raise ValueError(
            f"Arm {arm.name!r} takes its key from the environment variable "
            f"{arm.api_key_env!r}, which is not set."
        )
    return value
