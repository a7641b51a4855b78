"""The sample log on disk: rows, resume after a crash, durable appends, the final sort, the lock.

Each finished query is appended as one write of all its lines followed by ``fsync``
(:func:`append`), so a crash leaves at most one partial group at the end of the file;
:func:`resume` cuts that torn tail and reports the queries already complete, :func:`finish`
sorts the file atomically and :func:`log_lock` keeps a second writer out.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from computealloc.data.samples import SampleLogError
from computealloc.files import atomic_write

__all__ = [
    "LogLockedError",
    "append",
    "check_out_path",
    "finish",
    "log_lock",
    "open_append",
    "resume",
]


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


def resume(path: Path, n: int, model: str, max_tokens: int | None = None) -> set[str]:
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


def open_append(path: Path) -> int:
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


def append(fd: int, data: bytes) -> None:
    """Write all of ``data`` at the end of the file, then flush it to disk."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.fsync(fd)


def finish(path: Path, model: str, query_ids: list[str]) -> tuple[float | None, int]:
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


def check_out_path(out_path: str | os.PathLike[str]) -> Path:
    """The log's path; a directory there is an error (not a traceback from ``open``)."""
    path = Path(out_path)
    if path.is_dir():
        raise SampleLogError("is a directory; expected a JSONL sample log file", path=str(path))
    if path.exists() and not path.is_file():
        raise SampleLogError("is not a regular file; expected a JSONL sample log", path=str(path))
    return path


@contextlib.contextmanager
def log_lock(path: Path) -> Iterator[None]:
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
