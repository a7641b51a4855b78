"""The JSONL reader (long and nested forms) and writer.

One JSON object per line, parsed one line at a time (so an error names its line, and a line
nested too deeply to read is an error, not a crash); ``NaN`` and ``Infinity`` literals stay
strings so that validation rejects them. A nested line (a ``samples`` or ``answers`` list)
becomes one row per sample, each reported at the line of its query.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from computealloc.data.samples.errors import RecordOrigin, SampleLogError
from computealloc.data.samples.files import decode_utf8, read_bytes

_NESTED_LISTS = {
    "answers": "answer",
    "correct": "correct",
    "tokens": "tokens",
    "scores": "score",
    "responses": "response",
}


_JSON_TYPES = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}


# NaN and Infinity literals stay the strings "NaN", "Infinity", so validation can reject them.
_JSON_DECODER = json.JSONDecoder(parse_constant=str)


def read_jsonl(path: Path) -> tuple[pd.DataFrame, RecordOrigin]:
    """One JSON object per line, long or nested (told apart by the first record)."""
    source = str(path)
    data, what = read_bytes(path)
    records, lines = _parse_json_lines(decode_utf8(data, source, what), source)
    first = records[0]
    if isinstance(first.get("samples"), list) or isinstance(first.get("answers"), list):
        rows, row_lines = _flatten_nested(records, lines, source)
    else:
        rows, row_lines = records, lines
    line_array = np.asarray(row_lines, dtype=np.int64)
    return pd.DataFrame(rows), RecordOrigin(source, lambda: (lines[0], line_array))


def _parse_json_lines(text: str, path: str) -> tuple[list[dict[str, Any]], list[int]]:
    records: list[dict[str, Any]] = []
    lines: list[int] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line or line.isspace():
            continue
        try:
            obj = _JSON_DECODER.decode(line)
        except json.JSONDecodeError as exc:
            raise SampleLogError(
                f"invalid JSON ({exc.msg} at column {exc.colno}); expected one complete JSON "
                "object per line",
                path=path,
                line=number,
            ) from exc
        except RecursionError:
            raise SampleLogError(
                "JSON nested too deeply to read; expected one flat JSON object per line",
                path=path,
                line=number,
            ) from None
        if not isinstance(obj, dict):
            raise SampleLogError(
                f"expected a JSON object, found a JSON {_json_type(obj)}", path=path, line=number
            )
        records.append(obj)
        lines.append(number)
    if not records:
        raise SampleLogError(
            "no JSON records (only blank lines); expected at least one sample record", path=path
        )
    return records, lines


def _json_type(value: object) -> str:
    return (
        "number"
        if isinstance(value, (int, float)) and not isinstance(value, bool)
        else (_JSON_TYPES.get(type(value), type(value).__name__))
    )


def _flatten_nested(
    records: list[dict[str, Any]], lines: list[int], path: str
) -> tuple[list[dict[str, Any]], list[int]]:
    """One row per sample of the nested form; each row keeps the line of its query."""
    rows: list[dict[str, Any]] = []
    row_lines: list[int] = []
    for record, line in zip(records, lines, strict=True):
        if "samples" in record and "answers" in record:
            raise SampleLogError(
                "expected either a 'samples' or an 'answers' list, found both",
                path=path,
                line=line,
                field="samples",
            )
        if "samples" in record:
            samples = _nested_samples(record, path, line)
        elif "answers" in record:
            samples = _nested_answers(record, path, line)
        else:
            raise SampleLogError(
                "expected a 'samples' or 'answers' list (the file is nested JSONL: its first "
                f"record has one), found keys {sorted(record)}",
                path=path,
                line=line,
                field="samples",
            )
        rows.extend(samples)
        row_lines.extend([line] * len(samples))
    return rows, row_lines


def _nested_samples(record: dict[str, Any], path: str, line: int) -> list[dict[str, Any]]:
    items = record["samples"]
    found = None if isinstance(items, list) else f"a JSON {_json_type(items)}"
    if found is None:
        bad = [j for j, item in enumerate(items) if not isinstance(item, dict)]
        found = f"item {bad[0]} of type {_json_type(items[bad[0]])}" if bad else None
    if found is not None:
        raise SampleLogError(
            f"expected a list of JSON objects, found {found}", path=path, line=line, field="samples"
        )
    base = {k: v for k, v in record.items() if k != "samples"}
    return [{"sample_idx": j, **base, **item} for j, item in enumerate(items)]


def _nested_answers(record: dict[str, Any], path: str, line: int) -> list[dict[str, Any]]:
    answers = record["answers"]
    if not isinstance(answers, list):
        raise SampleLogError(
            f"expected a list, found a JSON {_json_type(answers)}",
            path=path,
            line=line,
            field="answers",
        )
    n = len(answers)
    lists: dict[str, list[Any]] = {}
    for key, column in _NESTED_LISTS.items():
        if key not in record:
            continue
        values = record[key]
        if not isinstance(values, list) or len(values) != n:
            found = (
                f"{len(values)} values"
                if isinstance(values, list)
                else (f"a JSON {_json_type(values)}")
            )
            raise SampleLogError(
                f"expected a list of {n} values (one per answer), found {found}",
                path=path,
                line=line,
                field=key,
            )
        lists[column] = values
    base = {k: v for k, v in record.items() if k not in _NESTED_LISTS}
    return [
        {"sample_idx": j, **base, **{c: values[j] for c, values in lists.items()}} for j in range(n)
    ]


def jsonl_bytes(frame: pd.DataFrame) -> bytes:
    """UTF-8 JSONL of ``frame``, one object per row, nulls (NA, NaN) written as ``null``."""
    plain = frame.astype(object).where(frame.notna(), None)
    lines = (json.dumps(r, ensure_ascii=False, allow_nan=False) for r in plain.to_dict("records"))
    return "".join(f"{line}\n" for line in lines).encode("utf-8")
