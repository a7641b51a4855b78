"""Collect ``n`` samples per query from a backend into a durable, resumable sample log.

The log is the canonical long-format JSONL (one line per sample, see
:mod:`computealloc.samples`). Each finished query is appended as one write of all its ``n``
lines followed by ``fsync``, so a crash at any moment loses at most the queries in flight and
leaves at most one partial group at the end of the file; a rerun drops that tail, skips the
queries already complete and collects the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import functools
import io
import json
import os
import time
import warnings
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from filelock import FileLock, Timeout

from computealloc.arms import Arm, open_arms
from computealloc.backends.base import (
    Backend,
    BackendError,
    Completion,
    RetryPolicy,
    gather_or_cancel,
    sampling_params,
)
from computealloc.forcing import CONTINUATIONS, Checkpoint, ThinkingPlan, probe_trace
from computealloc.grading import extract_answer, is_equivalent
from computealloc.samples import SampleLog, SampleLogError, SampleLogWarning, decode_utf8
from computealloc.table import atomic_write

__all__ = [
    "CheckpointProbes",
    "CollectError",
    "CollectProgress",
    "CollectResult",
    "LogLockedError",
    "Query",
    "QueryFileError",
    "collect",
    "read_queries",
    "run_collect",
    "run_collect_arms",
]

# Columns collect writes for every sample; a query file may not use them as metadata.
OUTPUT_COLUMNS = (
    "query_id",
    "sample_idx",
    "model",
    "prompt",
    "gold",
    "response",
    "answer",
    "correct",
    "tokens",
    "finish_reason",
)
# Of those, the ones a query's metadata may not use (they would overwrite sampled values).
_WRITTEN = frozenset(OUTPUT_COLUMNS) - {"query_id", "prompt", "gold"}


class QueryFileError(SampleLogError):
    """A malformed query file; the message names the file, the line and the field."""


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


class LogLockedError(RuntimeError):
    """Another process is writing the sample log (its lock file ``OUT.lock`` is held).

    Attributes
    ----------
    path : Path
        The sample log.
    lock_path : Path
        Its lock file.
    """

    def __init__(self, path: Path, lock_path: Path) -> None:
        super().__init__(
            f"another collect is writing {path} (lock {lock_path} held); wait for it to finish "
            "or write another file"
        )
        self.path = path
        self.lock_path = lock_path


@dataclass(frozen=True)
class Query:
    """One query to sample.

    Attributes
    ----------
    query_id : str
        Unique identifier.
    prompt : str
        The text sent to the model.
    gold : str or None
        Reference answer; samples are graded against it when given.
    metadata : mapping of str to JSON value
        Other fields (``dataset``, ``level``, ...), copied into every sample row.
    """

    query_id: str
    prompt: str
    gold: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


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


# --- query files ----------------------------------------------------------------------------


def read_queries(path: str | os.PathLike[str]) -> list[Query]:
    """Read and validate a query file.

    Parameters
    ----------
    path : path-like
        A ``.jsonl`` file (one JSON object per line) or a ``.csv`` file with a header. Fields:
        ``query_id`` (str or int, required, unique), ``prompt`` (non-empty str, required),
        ``gold`` (optional; numbers are turned into strings; an empty CSV cell is missing); any
        other field is metadata, except the names collect writes itself (``sample_idx``,
        ``model``, ``response``, ``answer``, ``correct``, ``tokens``, ``finish_reason``).

    Returns
    -------
    queries : list of Query
        In file order.

    Raises
    ------
    QueryFileError
        Naming the file, the line and the field of the first bad record; the file must be
        UTF-8 (a leading byte order mark is dropped, as :func:`~computealloc.read_samples`
        drops it), and a byte that is not is reported with its line and offset.
    """
    source = Path(path)
    suffix = source.suffix.lower()
    if suffix not in (".jsonl", ".ndjson", ".csv"):
        raise QueryFileError(
            f"a query file must end in .jsonl, .ndjson or .csv. Got {suffix or 'no suffix'!r}.",
            path=str(source),
        )
    if not source.is_file():
        raise QueryFileError("no such file", path=str(source))
    records = _csv_records(source) if suffix == ".csv" else _jsonl_records(source)
    queries: list[Query] = []
    seen: dict[str, int] = {}
    for line, record in records:
        query = _to_query(record, str(source), line)
        if query.query_id in seen:
            raise QueryFileError(
                f"query_id {query.query_id!r} repeats the one on line {seen[query.query_id]}",
                path=str(source),
                line=line,
                field="query_id",
            )
        seen[query.query_id] = line
        queries.append(query)
    if not queries:
        raise QueryFileError("the file holds no queries", path=str(source))
    return queries


def _read_text(path: Path) -> str:
    """The file as UTF-8 text (a leading BOM dropped); a bad byte names its line."""
    return decode_utf8(path.read_bytes(), str(path), "the file")


def _jsonl_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with io.StringIO(_read_text(path), newline=None) as fh:
        for line, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise QueryFileError(
                    f"not valid JSON ({exc.msg})", path=str(path), line=line
                ) from exc
            if not isinstance(record, dict):
                raise QueryFileError(
                    f"each line must be a JSON object. Got {type(record).__name__}.",
                    path=str(path),
                    line=line,
                )
            yield line, record


def _csv_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with io.StringIO(_read_text(path), newline="") as fh:
        reader = csv.DictReader(fh)
        for name in ("query_id", "prompt"):
            if name not in (reader.fieldnames or []):
                raise QueryFileError("missing column", path=str(path), line=1, field=name)
        for row in reader:
            if None in row:
                raise QueryFileError(
                    "the row has more cells than the header", path=str(path), line=reader.line_num
                )
            yield reader.line_num, {k: (v if v != "" else None) for k, v in row.items()}


def _to_query(record: dict[str, Any], path: str, line: int) -> Query:
    """Validate one record of a query file."""

    def fail(message: str, name: str) -> QueryFileError:
        return QueryFileError(message, path=path, line=line, field=name)

    query_id, prompt, gold = record.get("query_id"), record.get("prompt"), record.get("gold")
    if isinstance(query_id, bool) or not isinstance(query_id, (str, int)) or query_id == "":
        raise fail(f"must be a non-empty str or an int. Got {query_id!r}.", "query_id")
    if not isinstance(prompt, str) or not prompt.strip():
        raise fail(f"must be a non-empty str. Got {prompt!r}.", "prompt")
    if gold is not None and (isinstance(gold, bool) or not isinstance(gold, (str, int, float))):
        raise fail(f"must be a str, a number or null. Got {gold!r}.", "gold")
    reserved = sorted(_WRITTEN.intersection(record))
    if reserved:
        raise fail(
            "is written by collect for each sample; rename it (the reference answer goes in "
            "'gold')",
            reserved[0],
        )
    metadata = {k: v for k, v in record.items() if k not in ("query_id", "prompt", "gold")}
    return Query(str(query_id), prompt, None if gold is None else str(gold), metadata)


def _check_queries(queries: Sequence[Query]) -> list[Query]:
    items = list(queries)
    if not items or not all(isinstance(q, Query) for q in items):
        raise ValueError(
            "The 'queries' parameter of collect must be a query file path or a non-empty "
            f"sequence of Query. Got {type(queries).__name__} of {len(items)} items instead."
        )
    ids = [q.query_id for q in items]
    if len(set(ids)) != len(ids):
        twice = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"The query ids passed to collect must be unique. Got {twice} twice.")
    for q in items:
        clash = sorted(_WRITTEN.intersection(q.metadata))
        if clash:
            raise ValueError(
                f"The metadata of query {q.query_id!r} passed to collect must not use the "
                f"columns collect writes for each sample. Got {clash}."
            )
        try:
            json.dumps(dict(q.metadata), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"The metadata of query {q.query_id!r} passed to collect must be JSON "
                f"serialisable. Got {dict(q.metadata)!r} ({exc})."
            ) from exc
    return items


# --- the log on disk ------------------------------------------------------------------------


@dataclass
class _Row:
    raw: bytes
    model: str
    query_id: str
    sample_idx: int
    correct: bool | None
    tokens: int | None
    think_tokens: int | None = None
    final: bool = False
    answer_tokens: int = 0


def _parse_line(raw: bytes, path: Path, line: int) -> _Row:
    try:
        record = json.loads(raw)
        return _Row(
            raw=raw,
            model=str(record.get("model") or "default"),
            query_id=str(record["query_id"]),
            sample_idx=int(record["sample_idx"]),
            correct=record.get("correct") if isinstance(record.get("correct"), bool) else None,
            tokens=record.get("tokens") if isinstance(record.get("tokens"), int) else None,
            think_tokens=_int_or_none(record.get("think_tokens")),
            final=record.get("final") is True,
            answer_tokens=_int_or_none(record.get("answer_tokens")) or 0,
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise SampleLogError(
            f"not a sample row ({exc!r}); collect only appends to logs it wrote",
            path=str(path),
            line=line,
        ) from exc


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _read_log(path: Path) -> tuple[list[_Row], bool]:
    """Rows of the complete lines, and whether a truncated last line was cut off."""
    if not path.exists():
        return [], False
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    lines = data[:end].splitlines(keepends=True)
    rows = [_parse_line(raw, path, i) for i, raw in enumerate(lines, 1) if raw.strip()]
    return rows, end < len(data)


def _groups(rows: list[_Row]) -> dict[tuple[str, str], list[int]]:
    """(model, query_id) -> positions of its rows, in file order of first appearance."""
    groups: dict[tuple[str, str], list[int]] = {}
    for pos, row in enumerate(rows):
        groups.setdefault((row.model, row.query_id), []).append(pos)
    return groups


def _resume(path: Path, n: int, model: str, max_tokens: int | None = None) -> set[str]:
    """Repair the log's tail after a crash; return the query ids complete for ``model``.

    A truncated last line is cut; a trailing group of ``model`` with fewer than ``n`` samples
    (a write interrupted by the crash) is dropped. Any other group of ``model`` must hold
    exactly samples ``0..n-1``. With ``max_tokens`` (a checkpoint log), a sample is complete
    when its last row is its natural end (``final``) or its answer at ``max_tokens``.
    """
    rows, truncated = _read_log(path)
    complete: set[str] = set()
    keep = [True] * len(rows)
    for (row_model, query_id), positions in _groups(rows).items():
        if row_model != model:
            continue
        if max_tokens is None:
            indices = sorted(rows[p].sample_idx for p in positions)
            whole = indices == list(range(n))
        else:
            indices = sorted({rows[p].sample_idx for p in positions})
            whole = indices == list(range(n)) and _traces_end(rows, positions, max_tokens)
        if whole:
            complete.add(query_id)
        elif _is_torn_tail(positions, indices, len(rows), n):
            for p in positions:
                keep[p] = False
        else:
            raise SampleLogError(
                f"query {query_id!r} of model {model!r} has samples {indices[:8]}"
                f"{'...' if len(indices) > 8 else ''} but collect with n={n} writes samples "
                f"0..{n - 1}{' each to its end' if max_tokens else ''}; resume with the n "
                "(and --max-tokens) of the existing log or write a new file",
                path=str(path),
            )
    if truncated or not all(keep):
        kept = b"".join(row.raw for row, k in zip(rows, keep, strict=True) if k)
        atomic_write(path, lambda fh: fh.write(kept), mode="wb")
    return complete


def _traces_end(rows: list[_Row], positions: list[int], max_tokens: int) -> bool:
    """Whether every sample's last checkpoint row is its natural end or at ``max_tokens``."""
    last: dict[int, _Row] = {}
    for p in positions:
        last[rows[p].sample_idx] = rows[p]
    return all(r.final or (r.think_tokens or 0) >= max_tokens for r in last.values())


def _is_torn_tail(positions: list[int], indices: list[int], n_rows: int, n: int) -> bool:
    """Whether a group is the last write of the file, cut short by a crash."""
    contiguous_tail = positions == list(range(n_rows - len(positions), n_rows))
    distinct = len(set(indices)) == len(indices)
    return contiguous_tail and distinct and len(indices) <= n and indices[-1] < n


def _open_append(path: Path) -> int:
    """A descriptor appending to ``path``; a new file's directory entry is made durable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    created = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    if created:
        _fsync_dir(path.parent)
    return fd


def _fsync_dir(directory: Path) -> None:
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:  # directories cannot be opened on some platforms (Windows)
        return
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _append(fd: int, data: bytes) -> None:
    """Write all of ``data`` at the end of the file, then flush it to disk."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.fsync(fd)


def _finish(path: Path, model: str, query_ids: list[str]) -> tuple[float | None, int]:
    """Sort the log (by model, then query order, then sample_idx); return accuracy and tokens.

    The sort makes the file of a deterministic backend identical whatever the completion order
    of the concurrent queries and wherever a crash interrupted earlier runs.
    """
    rows, _ = _read_log(path)
    rank = {q: i for i, q in enumerate(query_ids)}
    model_rank: dict[str, int] = {}
    for row in rows:
        model_rank.setdefault(row.model, len(model_rank))
    order = sorted(
        range(len(rows)),
        key=lambda p: (
            model_rank[rows[p].model],
            rank.get(rows[p].query_id, len(rank)),
            rows[p].query_id,
            rows[p].sample_idx,
            p,
        ),
    )
    if order != list(range(len(rows))):
        data = b"".join(rows[p].raw for p in order)
        atomic_write(path, lambda fh: fh.write(data), mode="wb")
    ours = [r for r in rows if r.model == model and r.query_id in rank]
    if any(r.think_tokens is not None for r in ours):  # a checkpoint log: score each trace's end
        ends = {(r.query_id, r.sample_idx): r for r in ours}
        graded = [r.correct for r in ends.values() if r.correct is not None]
        spent = sum(r.think_tokens or 0 for r in ends.values()) + sum(r.answer_tokens for r in ours)
    else:
        graded = [r.correct for r in ours if r.correct is not None]
        spent = sum(r.tokens for r in ours if r.tokens is not None)
    accuracy = sum(graded) / len(graded) if graded else None
    return accuracy, spent


# --- sampling -------------------------------------------------------------------------------


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
        (:data:`computealloc.forcing.CONTINUATIONS`).
    answer_tokens : int
        Output tokens allowed to each forced answer.
    """

    checkpoints: tuple[int, ...]
    continuation: str = "vllm"
    answer_tokens: int = 32


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
        backend's (see :class:`~computealloc.backends.OpenAIBackend`).
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
        it passes (:func:`computealloc.forcing.probe_trace`); one row per checkpoint.

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
    ``response``, ``answer`` (:func:`~computealloc.grading.extract_answer` of the response, or
    the logged answer for a replay backend), ``correct`` (:func:`~computealloc.grading.
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
        read_queries(queries)
        if isinstance(queries, (str, os.PathLike))
        else _check_queries(queries)
    )
    params = sampling_params(temperature, max_tokens, seed)
    sample = _sampler(backend, n, params, checkpoints)
    path = _check_out_path(out_path)
    started = time.monotonic()
    with _log_lock(path):
        return await _collect_locked(
            items,
            backend.model,
            n,
            sample,
            _resume(path, n, backend.model, max_tokens if checkpoints else None),
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
        _append(fd, data)
        state["completed"] += 1
        state["samples"] += n
        report()

    report()
    fd = _open_append(path)
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
    accuracy, tokens = _finish(path, model, [q.query_id for q in items])
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


def _check_out_path(out_path: str | os.PathLike[str]) -> Path:
    """The log's path; a directory there is an error (not a traceback from ``open``)."""
    path = Path(out_path)
    if path.is_dir():
        raise SampleLogError("is a directory; expected a JSONL sample log file", path=str(path))
    if path.exists() and not path.is_file():
        raise SampleLogError("is not a regular file; expected a JSONL sample log", path=str(path))
    return path


@contextlib.contextmanager
def _log_lock(path: Path) -> Iterator[None]:
    """Hold ``PATH.lock`` exclusively (reentrant in this thread); raise if another holds it.

    Taken before the log is read, so a second writer fails at once instead of interleaving
    rows with the first or replacing the file under it. The lock file stays after release
    (removing it would race with a process that just opened it).
    """
    lock_path = path.with_name(path.name + ".lock")
    try:  # a folder or lock file that cannot be made is said as such, not as a held lock
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(lock_path, os.O_WRONLY | os.O_CREAT, 0o644))
    except OSError as exc:
        raise SampleLogError(
            f"cannot create the lock file {lock_path} ({exc.strerror}); expected a writable folder",
            path=str(path),
        ) from exc
    lock = FileLock(lock_path, blocking=False, is_singleton=True)
    try:
        lock.acquire()
    except Timeout as exc:
        raise LogLockedError(path, lock_path) from exc
    try:
        yield
    finally:
        lock.release()


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


# --- the command-line entry -----------------------------------------------------------------


def run_collect(
    queries: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    n: int,
    base_url: str | None = None,
    model: str | None = None,
    replay: str | os.PathLike[str] | SampleLog | None = None,
    api_key: str | None = None,
    concurrency: int = 8,
    temperature: float = 0.7,
    max_tokens: int | None = None,
    seed: int | None = None,
    timeout: float = 60.0,
    max_attempts: int = 6,
    use_n: bool | Literal["auto"] = "auto",
    client: Literal["aiohttp", "openai"] = "aiohttp",
    max_failures: int = 0,
    progress: Callable[[CollectProgress], None] | None = None,
    checkpoints: CheckpointProbes | None = None,
) -> CollectResult:
    """Build a backend, run :func:`collect` on it and close it (what ``computealloc collect`` does).

    Parameters
    ----------
    queries, out_path, n, concurrency, temperature, max_tokens, seed, max_failures, progress
        As in :func:`collect`.
    checkpoints : CheckpointProbes, optional
        As in :func:`collect` (a server, not a replay).
    base_url : str, optional
        An OpenAI-compatible server (``.../v1``); needs ``model``. Exactly one of ``base_url``
        and ``replay`` is given.
    model : str, optional
        The served model; with ``replay``, which model of the log to replay.
    replay : path-like or SampleLog, optional
        A sample log to replay instead of a server (offline dry runs, demos); its order is
        seeded by ``seed`` (0 when None).
    api_key, timeout, use_n, client
        As in :class:`~computealloc.backends.OpenAIBackend`.
    max_attempts : int
        Attempts per HTTP request (exponential backoff with jitter in between).

    Returns
    -------
    result : CollectResult

    Warns
    -----
    SampleLogWarning
        When ``n`` exceeds the samples the replayed log holds for some query: the replay
        cycles, so some samples repeat.
    """
    if (base_url is None) == (replay is None):
        raise ValueError(
            "Exactly one of the 'base_url' and 'replay' parameters of run_collect must be given. "
            f"Got base_url={base_url!r} and replay={replay!r} instead."
        )
    if base_url is not None and model is None:
        raise ValueError("The 'model' parameter of run_collect is required with 'base_url'.")

    async def main() -> CollectResult:
        backend: Any
        if base_url is not None:
            from computealloc.backends.openai_compat import OpenAIBackend

            backend = OpenAIBackend(
                base_url,
                str(model),
                api_key=api_key,
                timeout=timeout,
                use_n=use_n,
                retry=RetryPolicy(max_attempts=max_attempts),
                client=client,
            )
        else:
            from computealloc.backends.replay import ReplayBackend
            from computealloc.samples import read_samples

            log = read_samples(replay)
            backend = ReplayBackend(log, model, seed=seed or 0)
            _warn_replay_repeats(log, backend.model, n)
        async with backend:
            return await collect(
                queries,
                backend,
                n=n,
                out_path=out_path,
                concurrency=concurrency,
                temperature=temperature,
                max_tokens=max_tokens,
                seed=seed,
                max_failures=max_failures,
                progress=progress,
                checkpoints=checkpoints,
            )

    return asyncio.run(main())


def _warn_replay_repeats(log: SampleLog, model: str, n: int) -> None:
    """Warn when ``n`` exceeds the samples the replayed log holds for some query."""
    sizes = log.samples.loc[log.samples["model"] == model].groupby("query_id").size()
    short = sizes[sizes < n]
    if len(short):
        shown = ", ".join(f"{q!r} ({k})" for q, k in short.head(5).items())
        warnings.warn(
            f"{log.source}: replaying n={n} samples per query, but {len(short)} of "
            f"{len(sizes)} queries of model {model!r} hold fewer ({shown}"
            f"{', ...' if len(short) > 5 else ''}); their samples repeat (drawn again in a "
            f"fresh order), so the log is not {n} independent samples",
            SampleLogWarning,
            stacklevel=3,
        )


def run_collect_arms(
    queries: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    arms: Sequence[Arm],
    *,
    n: int,
    api_key: str | None = None,
    concurrency: int = 8,
    temperature: float = 0.7,
    max_tokens: int | None = None,
    seed: int | None = None,
    timeout: float = 60.0,
    max_attempts: int = 6,
    use_n: bool | Literal["auto"] = "auto",
    client: Literal["aiohttp", "openai"] = "aiohttp",
    max_failures: int = 0,
    progress: Callable[[str, CollectProgress], None] | None = None,
    checkpoints: CheckpointProbes | None = None,
) -> dict[str, CollectResult]:
    """Draw ``n`` samples per query from every arm into one log, arm after arm.

    Each row's ``model`` is its arm's name (:class:`~computealloc.arms.Arm`), so the log is an
    ordinary multi-arm log; the arm's request parameters go with each of its requests. Resumable
    per arm like :func:`collect`: a rerun completes what a crash left, arm by arm.

    Parameters
    ----------
    queries, out_path, n, concurrency, temperature, max_tokens, seed, max_failures, checkpoints
        As in :func:`collect`.
    arms : sequence of Arm
        Distinct names.
    api_key, timeout, max_attempts, use_n, client
        As in :func:`~computealloc.arms.open_arms`.
    progress : callable, optional
        ``progress(arm, CollectProgress)``.

    Returns
    -------
    dict of str to CollectResult
        Per arm, in the given order.
    """

    async def main() -> dict[str, CollectResult]:
        with _log_lock(_check_out_path(out_path)):  # one writer for all the arms
            backends = open_arms(
                arms,
                api_key=api_key,
                timeout=timeout,
                max_attempts=max_attempts,
                seed=seed or 0,
                client=client,
                use_n=use_n,
            )
            results: dict[str, CollectResult] = {}
            for name, backend in backends.items():
                report = None if progress is None else functools.partial(progress, name)
                try:
                    results[name] = await collect(
                        queries,
                        backend,
                        n=n,
                        out_path=out_path,
                        concurrency=concurrency,
                        temperature=temperature,
                        max_tokens=max_tokens,
                        seed=seed,
                        max_failures=max_failures,
                        progress=report,
                        checkpoints=checkpoints,
                    )
                finally:
                    await backend.aclose()
            return results

    return asyncio.run(main())
