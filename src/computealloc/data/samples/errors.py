"""What goes wrong in a sample log, and where: the error, the warning and record origins.

:class:`SampleLogError` names the file, the line (or row) and the field; a
:class:`RecordOrigin` turns a record position into that line (CSV/JSONL) or row
(Parquet/DataFrame); :func:`fail` raises at the first bad value of a column, showing it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray


class SampleLogError(ValueError):
    """A malformed sample log; the message names the file, the line (or row) and the field.

    Parameters
    ----------
    message : str
        What was expected and what was found.
    path : str, optional
        The file (or ``"<frame>"``) the record came from.
    line : int, optional
        1-based physical line of a CSV or JSONL file.
    field : str, optional
        The column or JSON key at fault.
    row : int, optional
        0-based record position in a Parquet file or DataFrame (used when ``line`` is None).
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        field: str | None = None,
        row: int | None = None,
    ) -> None:
        place = f"line {line}" if line is not None else (f"row {row}" if row is not None else None)
        where = ", ".join(s for s in (path, place, f"field '{field}'" if field else None) if s)
        super().__init__(f"{where}: {message}" if where else message)
        self.path = path
        self.line = line
        self.field = field
        self.row = row


class SampleLogWarning(UserWarning):
    """A sample log that reads, but probably not as meant: a column that looks like a known
    one under another name (``is_correct`` for ``correct``), or a few short queries that limit
    every query's actions."""


@dataclass(frozen=True)
class RecordOrigin:
    """Where raw records came from, to turn a record position into a file line.

    ``origin.error(message, row=, field=)`` names the file and the line (CSV/JSONL) or row
    (Parquet/frame); ``origin.place(row)`` says "line N" or "row N".

    ``locate`` returns ``(header_line, record_lines)``: the line of the CSV header (or of the
    first JSONL record) and the 1-based line of each record, shape (n_records,). It is None for
    DataFrames and Parquet files, whose records are reported by 0-based row.
    """

    path: str
    locate: Callable[[], tuple[int, NDArray[np.int64]]] | None = None

    def place(self, row: int) -> str:
        if self.locate is None:
            return f"row {row}"
        return f"line {int(self.locate()[1][row])}"

    def error(
        self, message: str, *, row: int | None = None, field: str | None = None
    ) -> SampleLogError:
        if self.locate is None:
            return SampleLogError(message, path=self.path, row=row, field=field)
        header_line, record_lines = self.locate()
        line = header_line if row is None else int(record_lines[row])
        return SampleLogError(message, path=self.path, line=line, field=field)


def show_value(value: object) -> str:
    """Short repr of an offending value for a message."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return "null"
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def fail(
    bad: pd.Series | NDArray[np.bool_],
    raw: pd.Series,
    origin: RecordOrigin,
    field: str,
    expected: str,
) -> None:
    """Raise for the first True of ``bad`` with the raw value found there.

    ``raw`` carries the record positions as its index (the reader's frame has a RangeIndex).
    """
    flags = np.asarray(bad, dtype=bool)
    if flags.any():
        at = int(np.argmax(flags))
        raise origin.error(
            f"expected {expected}, found {show_value(raw.iloc[at])}",
            row=int(raw.index[at]),
            field=field,
        )
