"""Query files: reading and validating the queries :func:`~computealloc.data.collect.collect`
samples.

A query file is JSONL or CSV (one query per line or row); :func:`read_queries` validates it at
the boundary and raises :class:`QueryFileError` naming the file, the line and the field.
:func:`check_queries` validates queries passed in code.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from computealloc.data.samples import SampleLogError, decode_utf8

__all__ = ["OUTPUT_COLUMNS", "Query", "QueryFileError", "check_queries", "read_queries"]

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


def check_queries(queries: Sequence[Query]) -> list[Query]:
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
