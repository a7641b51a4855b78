"""Sampling backends: an OpenAI-compatible server, or the replay of a sample log.

:class:`OpenAIBackend` needs ``aiohttp`` (the ``serve`` extra) and is imported on
first use, so the rest of the package works without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from computealloc.data.backends.base import (
    RESERVED_PARAMS,
    Backend,
    BackendError,
    BackendStats,
    Completion,
    Prompt,
    RetryPolicy,
    check_params,
    gather_or_cancel,
    last_user_text,
    receipt,
    record_received,
    retry_async,
    sampling_params,
    to_messages,
)
from computealloc.data.backends.replay import ReplayBackend, UnknownPromptError

if TYPE_CHECKING:
    from computealloc.data.backends.openai_compat import OpenAIBackend

__all__ = [
    "RESERVED_PARAMS",
    "Backend",
    "BackendError",
    "BackendStats",
    "Completion",
    "OpenAIBackend",
    "Prompt",
    "ReplayBackend",
    "RetryPolicy",
    "UnknownPromptError",
    "check_params",
    "gather_or_cancel",
    "last_user_text",
    "receipt",
    "record_received",
    "retry_async",
    "sampling_params",
    "to_messages",
]

_LAZY = {"OpenAIBackend"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from computealloc.data.backends import openai_compat

        return getattr(openai_compat, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
