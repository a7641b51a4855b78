"""The CSV reader: pyarrow parses, :mod:`csv` explains failures and places records on lines.

A record is reported at the 1-based physical line where it starts (a quoted field may span
several lines); the header at the line it sits on.
"""

from __future__ import annotations

import csv
import functools
import io
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from computealloc.data.samples.errors import RecordOrigin, SampleLogError
from computealloc.data.samples.files import decode_utf8, read_bytes

_CSV_STRING_COLUMNS = (
    "query_id",
    "model",
    "answer",
    "response",
    "prompt",
    "gold",
    "dataset",
    "correct",
    "tokens",
    "score",
)


def read_csv(path: Path) -> tuple[pd.DataFrame, RecordOrigin]:
    """Parse with pyarrow (reserved text columns as strings, the rest inferred over the file).

    The text is decoded, and walked with :mod:`csv`, only to explain a failure: pyarrow
    rejects invalid UTF-8 in string columns and infers ``binary`` for it elsewhere, and it
    accepts an unterminated quote at the end of the file, which an odd number of ``"`` reveals.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    source = str(path)
    data, what = read_bytes(path)
    text = functools.cache(lambda: decode_utf8(data, source, what))
    scan = functools.cache(lambda: scan_csv(text(), source))
    if data.count(b'"') % 2:
        scan()
    options = pacsv.ConvertOptions(
        column_types=dict.fromkeys(_CSV_STRING_COLUMNS, pa.string()),
        null_values=[""],
        strings_can_be_null=True,
        quoted_strings_can_be_null=True,
    )
    try:
        table = pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(block_size=min(len(data) + 1, 2**31 - 1)),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=options,
        )
    except pa.ArrowInvalid as exc:
        scan()
        raise SampleLogError(f"unreadable CSV ({exc})", path=source) from exc
    if any(pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type) for f in table.schema):
        text()
    n_records = table.num_rows

    def locate() -> tuple[int, NDArray[np.int64]]:
        header_line, record_lines = quote_parity_lines(data)
        return (header_line, record_lines) if len(record_lines) == n_records else scan()

    return table.to_pandas(), RecordOrigin(source, functools.cache(locate))


def quote_parity_lines(data: bytes) -> tuple[int, NDArray[np.int64]]:
    """Header line and first line of each record, found without parsing.

    In RFC 4180 CSV a newline ends a record exactly when an even number of ``"`` precede it
    (escaped quotes come in pairs). Blank lines are skipped, as the parser skips them. The
    caller falls back to :func:`scan_csv` when the record count disagrees with the parser's.
    """
    raw = np.frombuffer(data, dtype=np.uint8)
    newlines = np.flatnonzero(raw == ord("\n"))
    quotes = np.flatnonzero(raw == ord('"'))
    ends = newlines[np.searchsorted(quotes, newlines) % 2 == 0]
    starts = np.concatenate(([0], ends + 1))
    width = np.concatenate((ends, [len(raw)])) - starts
    first = raw[np.minimum(starts, len(raw) - 1)]
    blank = (width == 0) | ((width == 1) & (first == ord("\r")))
    lines = (np.searchsorted(newlines, starts[~blank]) + 1).astype(np.int64)
    return int(lines[0]), lines[1:]


def scan_csv(text: str, path: str) -> tuple[int, NDArray[np.int64]]:
    """Walk the records with :mod:`csv`: the header line and each record's first line.

    Raises SampleLogError on a record with the wrong number of fields or an unterminated quote.
    """
    reader = csv.reader(io.StringIO(text), strict=True)
    header: list[str] = []
    header_line = 0
    starts: list[int] = []
    end = 0
    try:
        for row in reader:
            start, end = end + 1, reader.line_num
            if not row:
                continue
            if not header:
                header, header_line = row, start
            elif len(row) != len(header):
                raise _field_count_error(row, header, path, start)
            else:
                starts.append(start)
    except csv.Error as exc:
        raise _quote_error(text, end + 1, header, path, exc) from exc
    if not header:
        raise SampleLogError("no CSV header; expected a header line", path=path)
    return header_line, np.asarray(starts, dtype=np.int64)


def _field_count_error(row: list[str], header: list[str], path: str, line: int) -> SampleLogError:
    expected = f"expected {len(header)} fields as in the header, found {len(row)}"
    if len(row) < len(header):
        return SampleLogError(
            f"{expected} (the record ends before this field)",
            path=path,
            line=line,
            field=header[len(row)],
        )
    return SampleLogError(expected, path=path, line=line)


def _quote_error(
    text: str, line: int, header: list[str], path: str, exc: csv.Error
) -> SampleLogError:
    """Name the field of a bad quote by re-reading its record with the quote closed."""
    offset = 0
    for _ in range(line - 1):
        offset = text.index("\n", offset) + 1
    if "unexpected end of data" not in str(exc):
        return SampleLogError(
            f"malformed quoted field ({exc}); expected RFC 4180 quoting", path=path, line=line
        )
    fields = next(csv.reader(io.StringIO(text[offset:] + '"')), [])
    field = header[len(fields) - 1] if header and 0 < len(fields) <= len(header) else None
    return SampleLogError(
        "unterminated quoted field; expected a closing '\"' before the end of the file, "
        "found the end of the file",
        path=path,
        line=line,
        field=field,
    )
