"""Sampling: the :func:`collect` driver, its checkpoint probes and the encoding of rows.

:func:`collect` samples every query ``n`` times (or probes ``n`` traces at checkpoints, see
:class:`CheckpointProbes`) with bounded concurrency and appends each finished query to the log
through :mod:`computealloc.data.collect.log`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from computealloc.data.backends.base import (
    Backend,
    BackendError,
    Completion,
    gather_or_cancel,
    sampling_params,
)
from computealloc.data.collect.log import (
    append,
    check_out_path,
    finish,
    log_lock,
    open_append,
    resume,
)
from computealloc.data.collect.queries import Query, check_queries, read_queries
from computealloc.data.forcing import CONTINUATIONS, Checkpoint, ThinkingPlan, probe_trace
from computealloc.data.grading import extract_answer, is_equivalent

__all__ = ["CheckpointProbes", "CollectError", "CollectProgress", "CollectResult", "collect"]


class CollectError(RuntimeError):
    """More queries failed than ``max_failures`` allows; the log keeps every finished query.

    Attributes
    ----------
    failed : dict of str to str
        Query id -> error message, for the queries that failed before collection stopped.
    """

    def __init__(self, message: str, failed: dict[str, str]) -> None:
        super().__init__(message)
        self.failed = failed


@dataclass(frozen=True)
class CollectProgress:
    """Where a collection stands; passed to the ``progress`` callback.

    Attributes
    ----------
    total : int
        Queries in the query list.
    completed : int
        Queries complete in the log (resumed ones included).
    resumed : int
        Queries that were already complete when this run started.
    failed : int
        Queries that failed for good in this run.
    samples : int
        Samples written by this run.
    """

    total: int
    completed: int
    resumed: int
    failed: int
    samples: int


@dataclass(frozen=True)
class CollectResult:
    """Outcome of :func:`collect`.

    Attributes
    ----------
    path : Path
        The sample log.
    n_queries : int
        Queries in the query list.
    n_resumed : int
        Queries already complete in the log before this run.
    n_collected : int
        Queries sampled and written by this run.
    failed : dict of str to str
        Query id -> error, for queries that failed (at most ``max_failures``); a rerun retries
        them.
    accuracy : float or None
        Mean ``correct`` over the log's graded samples of this model and these queries; None
        when none is graded.
    output_tokens : int
        Sum of the known ``tokens`` over the same samples.
    elapsed_s : float
        Wall-clock seconds of this run.
    """

    path: Path
    n_queries: int
    n_resumed: int
    n_collected: int
    failed: dict[str, str]
    accuracy: float | None
    output_tokens: int
    elapsed_s: float


@dataclass(frozen=True)
class CheckpointProbes:
    """What ``collect --checkpoints`` records: the forced answer at each checkpoint of a trace.

    Attributes
    ----------
    checkpoints : tuple of int
        Strictly increasing thinking-token counts, each below ``collect``'s ``max_tokens``
        (the longest trace).
    continuation : {"vllm", "sglang", "llama.cpp"}
        How the server continues a partial assistant message
        (:data:`computealloc.data.forcing.CONTINUATIONS`).
    answer_tokens : int
        Output tokens allowed to each forced answer.
    logprobs : bool
        Ask for token log-probabilities, so that each row carries a ``confidence`` (the
        probability of its answer, :func:`computealloc.data.forcing.answer_confidence`) where
        the server sends them.
    """

    checkpoints: tuple[int, ...]
    continuation: str = "vllm"
    answer_tokens: int = 32
    logprobs: bool = True


def _encode_traces(query: Query, traces: Sequence[Sequence[Checkpoint]], model: str) -> bytes:
    """The JSONL lines of one query's checkpoint rows (a checkpoint log, ``docs/thinking.md``)."""
    lines = []
    for idx, rows in enumerate(traces):
        for row in rows:
            correct = None if query.gold is None else is_equivalent(row.answer, query.gold)
            record = {
                "query_id": query.query_id,
                "sample_idx": idx,
                "model": model,
                "prompt": query.prompt,
                "gold": query.gold,
                "think_tokens": row.think_tokens,
                "answer": row.answer,
                "correct": correct,
                "final": row.final,
                "answer_tokens": row.answer_tokens,
                **({} if row.confidence is None else {"confidence": row.confidence}),
                **query.metadata,
            }
            lines.append(json.dumps(record, ensure_ascii=False, allow_nan=False))
    return ("\n".join(lines) + "\n").encode("utf-8")


def _encode(query: Query, completions: list[Completion], model: str) -> bytes:
    """The JSONL lines of one query's samples, keys in a fixed order."""
    lines = []
    for idx, c in enumerate(completions):
        answer = c.answer if c.from_log else extract_answer(c.text)
        if query.gold is not None:
            correct: bool | None = is_equivalent(answer, query.gold)
        else:
            correct = c.correct if c.from_log else None
        row = {
            "query_id": query.query_id,
            "sample_idx": idx,
            "model": model,
            "prompt": query.prompt,
            "gold": query.gold,
            "response": c.text,
            "answer": answer,
            "correct": correct,
            "tokens": c.output_tokens,
            "finish_reason": c.finish_reason,
            **({} if c.score is None else {"score": c.score}),
            **query.metadata,
        }
        lines.append(json.dumps(row, ensure_ascii=False, allow_nan=False))
    return ("\n".join(lines) + "\n").encode("utf-8")


def _check_collect(
    n: object, concurrency: object, max_tokens: object, max_failures: object, temperature: object
) -> None:
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, (int, float))
        or not 0 <= temperature < float("inf")
    ):
        raise ValueError(
            "The 'temperature' parameter of collect must be a float in [0, inf). "
            f"Got {temperature!r} instead."
        )
    checks = (
        ("n", n, 1, False),
        ("concurrency", concurrency, 1, False),
        ("max_tokens", max_tokens, 1, True),
        ("max_failures", max_failures, 0, False),
    )
    for name, value, low, optional in checks:
        if optional and value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            kind = "None or an int" if optional else "an int"
            raise ValueError(
                f"The '{name}' parameter of collect must be {kind} in [{low}, inf). "
                f"Got {value!r} instead."
            )


async def collect(
    queries: str | os.PathLike[str] | Sequence[Query],
    backend: Backend,
    *,
    n: int,
    out_path: str | os.PathLike[str],
    concurrency: int = 8,
    temperature: float = 0.7,
    max_tokens: int | None = None,
    seed: int | None = None,
    max_failures: int = 0,
    progress: Callable[[CollectProgress], None] | None = None,
    checkpoints: CheckpointProbes | None = None,
) -> CollectResult:
    """Sample every query ``n`` times and append the samples to a JSONL sample log.

    Parameters
    ----------
    queries : path-like or sequence of Query
        A query file (see :func:`read_queries`) or the queries themselves.
    backend : Backend
        Where samples come from; its ``model`` is written into every row. Retries are the
        backend's (see :class:`~computealloc.data.backends.OpenAIBackend`).
    n : int
        Samples per query, ``>= 1``.
    out_path : path-like
        The JSONL sample log; created if absent, resumed if present.
    concurrency : int
        Queries sampled at once.
    temperature : float
        Sampling temperature.
    max_tokens : int, optional
        Cap on output tokens per sample.
    seed : int, optional
        Sent with every ``backend.sample`` call (the backend draws distinct seeds from it for
        the samples of one query).
    max_failures : int
        Queries that may fail for good (after the backend's retries) before collection stops.
        Failed queries are not written, so a rerun retries them.
    progress : callable, optional
        Called with a :class:`CollectProgress` once at the start and after every query.
    checkpoints : CheckpointProbes, optional
        Record a checkpoint log instead: each of the ``n`` traces runs to its natural end (at
        most ``max_tokens``, required) and is probed for its forced answer at every checkpoint
        it passes (:func:`computealloc.data.forcing.probe_trace`); one row per checkpoint.

    Returns
    -------
    result : CollectResult

    Raises
    ------
    QueryFileError
        When the query file is malformed.
    SampleLogError
        When the existing log holds a group of this model that is not samples ``0..n-1`` (other
        than a torn last write), or a line that is not a sample row.
    CollectError
        When more than ``max_failures`` queries failed (a backend error, or a reply with a
        number of completions other than ``n``); the log keeps every finished query.
    LogLockedError
        When another process is writing the same log.

    Notes
    -----
    Rows hold, in this order: ``query_id``, ``sample_idx``, ``model``, ``prompt``, ``gold``,
    ``response``, ``answer`` (:func:`~computealloc.data.grading.extract_answer` of the response, or
    the logged answer for a replay backend), ``correct`` (:func:`~computealloc.data.grading.
    is_equivalent` against ``gold``; with no gold, the logged verdict of a replay backend, else
    null), ``tokens``, ``finish_reason``, then the query's metadata.

    Durability: each finished query's ``n`` lines are appended with one write and ``fsync``.
    After a crash (even ``SIGKILL``), a rerun with the same arguments cuts a truncated last
    line, drops the torn last group, skips complete queries and samples the others. At the
    end the file is sorted by model, query order and ``sample_idx`` (atomically), so with a
    deterministic backend the final file is the same as that of an uninterrupted run. Rows of
    other models in the file are kept.

    One writer at a time: the run holds an exclusive lock on ``OUT.lock`` (next to the log)
    from before it reads the log until it is done; a second run on the same log raises
    :class:`LogLockedError` at once and writes nothing. A run that writes nothing to a new
    log leaves no empty file.
    """
    _check_collect(n, concurrency, max_tokens, max_failures, temperature)
    items = (
        read_queries(queries) if isinstance(queries, (str, os.PathLike)) else check_queries(queries)
    )
    params = sampling_params(temperature, max_tokens, seed)
    sample = _sampler(backend, n, params, checkpoints)
    path = check_out_path(out_path)
    started = time.monotonic()
    with log_lock(path):
        return await _collect_locked(
            items,
            backend.model,
            n,
            sample,
            resume(path, n, backend.model, max_tokens if checkpoints else None),
            path,
            concurrency,
            max_failures,
            progress,
            started,
        )


#: Samples one query: the bytes of its rows, to append in one write.
_Sampler = Callable[[Query], Awaitable[bytes]]


def _sampler(
    backend: Backend, n: int, params: dict[str, Any], checkpoints: CheckpointProbes | None
) -> _Sampler:
    """How :func:`collect` samples one query: ``n`` completions, or ``n`` probed traces."""
    if checkpoints is None:

        async def completions(query: Query) -> bytes:
            drawn = await backend.sample(query.prompt, n, params=params)
            if len(drawn) != n:
                raise BackendError(
                    f"the backend returned {len(drawn)} completions for one request of "
                    f"n={n} samples; expected exactly {n} (a server that ignores or misreads "
                    "`n`; try use_n=False, --use-n false)",
                    retryable=False,
                )
            return _encode(query, drawn, backend.model)

        return completions
    if "max_tokens" not in params:
        raise ValueError(
            "The 'max_tokens' parameter of collect is required with 'checkpoints': it is the "
            "longest trace."
        )
    if checkpoints.continuation not in CONTINUATIONS:
        raise ValueError(
            f"The continuation of CheckpointProbes must be one of {sorted(CONTINUATIONS)}. "
            f"Got {checkpoints.continuation!r} instead."
        )
    longest = params.pop("max_tokens")
    seed = params.pop("seed", None)

    async def traces(query: Query) -> bytes:
        async def one(j: int) -> list[Checkpoint]:
            extra = {} if seed is None else {"seed": int(seed) + j}
            rows, _ = await probe_trace(
                backend,
                query.prompt,
                checkpoints.checkpoints,
                max_tokens=longest,
                continuation=CONTINUATIONS[checkpoints.continuation],
                answer_tokens=checkpoints.answer_tokens,
                params={**params, **extra},
                logprobs=checkpoints.logprobs,
            )
            return rows

        drawn = await gather_or_cancel(one(j) for j in range(n))
        return _encode_traces(query, drawn, backend.model)

    ThinkingPlan((*checkpoints.checkpoints, longest), None, checkpoints.answer_tokens)  # checks
    return traces


async def _collect_locked(
    items: list[Query],
    model: str,
    n: int,
    sample: _Sampler,
    complete: set[str],
    path: Path,
    concurrency: int,
    max_failures: int,
    progress: Callable[[CollectProgress], None] | None,
    started: float,
) -> CollectResult:
    """:func:`collect` once the log's lock is held and its tail repaired."""
    existed = path.exists()
    todo = [q for q in items if q.query_id not in complete]
    state = {"completed": len(items) - len(todo), "samples": 0}
    failed: dict[str, str] = {}

    def report() -> None:
        if progress is not None:
            progress(
                CollectProgress(
                    total=len(items),
                    completed=state["completed"],
                    resumed=len(items) - len(todo),
                    failed=len(failed),
                    samples=state["samples"],
                )
            )

    async def handle(query: Query, fd: int) -> None:
        try:
            data = await sample(query)
        except BackendError as exc:
            failed[query.query_id] = str(exc)
            report()
            if len(failed) > max_failures:
                raise
            return
        append(fd, data)
        state["completed"] += 1
        state["samples"] += n
        report()

    report()
    fd = open_append(path)
    try:
        await _run_pool(todo, handle, fd, concurrency)
    except BackendError as exc:
        first = next(iter(failed.items()))
        raise CollectError(
            f"{len(failed)} queries failed (max_failures={max_failures}); {path} keeps every "
            f"finished query, rerun to resume. First failure, query {first[0]!r}: {first[1]}",
            failed,
        ) from exc
    finally:
        os.close(fd)
        if not existed and path.stat().st_size == 0:
            path.unlink()  # nothing was written: leave no empty log behind
    accuracy, tokens = finish(path, model, [q.query_id for q in items])
    return CollectResult(
        path=path,
        n_queries=len(items),
        n_resumed=len(items) - len(todo),
        n_collected=len(todo) - len(failed),
        failed=failed,
        accuracy=accuracy,
        output_tokens=tokens,
        elapsed_s=time.monotonic() - started,
    )


async def _run_pool(
    items: list[Query],
    handle: Callable[[Query, int], Any],
    fd: int,
    concurrency: int,
) -> None:
    """Run ``handle`` over ``items`` with ``concurrency`` workers; a failure cancels the rest."""
    pending = iter(items)

    async def worker() -> None:
        for item in pending:
            await handle(item, fd)

    await gather_or_cancel(worker() for _ in range(min(concurrency, len(items))))
