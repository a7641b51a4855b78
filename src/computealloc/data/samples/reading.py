"""Reading a sample log: :func:`read_samples`, and the record-level entry points that other
log kinds share (:func:`read_records`, :func:`validate_records`, ...)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from computealloc.data.samples.csvfile import read_csv
from computealloc.data.samples.errors import RecordOrigin, fail
from computealloc.data.samples.files import check_file, format_of
from computealloc.data.samples.jsonl import read_jsonl
from computealloc.data.samples.log import SampleLog, build
from computealloc.data.samples.parquet import read_parquet
from computealloc.data.samples.renaming import check_columns_map, rename_columns, warn_lookalikes
from computealloc.data.samples.schema import Format
from computealloc.data.samples.validation import (
    check_per_query,
    check_run_columns,
    grade_missing,
    normalise,
)
from computealloc.data.samples.values import as_number


def read_samples(
    path_or_frame: object,
    *,
    grade: bool = True,
    format: Format | None = None,
    run_columns: Sequence[str] | None = None,
    columns: Mapping[str, str] | None = None,
) -> SampleLog:
    """Read and validate a sample log.

    Parameters
    ----------
    path_or_frame : path, DataFrame or SampleLog
        A CSV, JSONL or Parquet file (format from the suffix: ``.csv``, ``.jsonl``,
        ``.ndjson``, ``.parquet``, ``.pq``; CSV and JSONL may be gzip-compressed, e.g.
        ``.csv.gz``), a long-format DataFrame, or a SampleLog (returned as is). A JSONL file
        whose first record has a ``samples`` list (of per-sample objects) or an ``answers``
        list (with optional parallel ``correct``, ``tokens``, ``scores``, ``responses`` lists)
        is read as the nested form: one line per query, the other keys of the line (``prompt``,
        ``gold``, ``model``, ...) apply to each of its samples, and ``sample_idx`` defaults to
        the position in the list.
    grade : bool
        Grade samples with null ``correct`` against their query's ``gold``
        (see :meth:`SampleLog.from_frame`).
    format : {"csv", "jsonl", "parquet"}, optional
        Overrides the suffix.
    run_columns : sequence of str, optional
        Columns whose joined values become the ``model`` label (see
        :meth:`SampleLog.from_frame`); needed where one file holds several runs of one model.
    columns : mapping of str to str, optional
        Columns to rename before validation, ``{old: new}``, e.g. ``{"is_correct": "correct"}``
        (the CLI's ``--map is_correct=correct``). Each old name must be in the file.

    Returns
    -------
    SampleLog

    Raises
    ------
    SampleLogError
        The message names the file, the line (CSV/JSONL) or row (Parquet/frame) and the field;
        also for a missing file, a directory or an unreadable file. Reading never modifies or
        writes next to its input.

    Warns
    -----
    SampleLogWarning
        For a column that looks like a known one under another name (``is_correct``,
        ``question``, ...): it is kept as metadata, not read; rename it with ``columns``.

    Examples
    --------
    >>> import pandas as pd
    >>> log = read_samples(pd.DataFrame({"query_id": [1, 1], "sample_idx": [0, 1],
    ...                                  "answer": ["4", "5"], "correct": [True, False]}))
    >>> log.samples_per_query.tolist()
    [2]
    """
    if isinstance(path_or_frame, SampleLog):
        return path_or_frame
    check_run_columns(run_columns, "read_samples")
    check_columns_map(columns, "read_samples")
    if isinstance(path_or_frame, pd.DataFrame):
        frame = path_or_frame.rename(columns=dict(columns)) if columns else path_or_frame
        return SampleLog.from_frame(frame, grade=grade, run_columns=run_columns)
    if not isinstance(path_or_frame, (str, os.PathLike)):
        raise TypeError(
            "The 'path_or_frame' parameter of read_samples must be a path, a DataFrame or a "
            f"SampleLog. Got {type(path_or_frame).__name__} instead."
        )
    raw, origin = read_records(path_or_frame, format=format, columns=columns)
    warn_lookalikes(raw.columns, run_columns or (), origin)
    return build(raw, origin, grade=grade, run_columns=run_columns)


# Public entry points for logs that share these readers and column checks but not the
# one-row-per-sample shape (checkpoint logs: :mod:`computealloc.data.checkpoints`).


def read_records(
    path_or_frame: str | os.PathLike[str] | pd.DataFrame,
    *,
    format: Format | None = None,
    columns: Mapping[str, str] | None = None,
) -> tuple[pd.DataFrame, RecordOrigin]:
    """Raw records of a log file (or frame) and where each came from, not yet validated.

    Parameters
    ----------
    path_or_frame : path or DataFrame
        As :func:`read_samples` accepts.
    format : {"csv", "jsonl", "parquet"}, optional
        Overrides the suffix.
    columns : mapping of str to str, optional
        Columns renamed ``OLD -> NEW`` before anything else (as :func:`read_samples`).

    Returns
    -------
    raw : DataFrame of shape (n_records, n_columns)
        The records as read, RangeIndex = record position.
    origin : RecordOrigin
        Turns a record position into the file line (or row) of an error.

    Raises
    ------
    SampleLogError
        A missing, unreadable or malformed file (naming it, and the line where there is one).
    """
    if isinstance(path_or_frame, pd.DataFrame):
        raw, origin = path_or_frame.reset_index(drop=True), RecordOrigin("<frame>")
    else:
        path = Path(path_or_frame)
        check_file(path)
        reader = {"csv": read_csv, "jsonl": read_jsonl, "parquet": read_parquet}[
            format_of(path, format)
        ]
        raw, origin = reader(path)
    if columns:
        raw = rename_columns(raw, columns, origin)
    return raw, origin


def validate_records(
    raw: pd.DataFrame, origin: RecordOrigin, *, grade: bool = True
) -> pd.DataFrame:
    """The typed columns of :meth:`SampleLog.from_frame`, without its one-row-per-sample check.

    Converts and checks ``query_id``, ``sample_idx``, ``model``, ``answer``, ``correct``,
    ``tokens``, ``score``, ``response``, ``prompt``, ``gold`` and ``dataset`` (other columns
    are kept as read), checks one prompt and one gold per query and, with ``grade``, grades
    null ``correct`` against the gold. Rows keep their record order.

    Raises
    ------
    SampleLogError
        Naming the file, line (or row) and field.
    """
    frame = normalise(raw, origin, None)
    for name in ("prompt", "gold"):
        check_per_query(frame, name, origin)
    if grade:
        frame["correct"] = grade_missing(frame)
    return frame


def samples_from_records(
    raw: pd.DataFrame, origin: RecordOrigin, *, grade: bool = True
) -> SampleLog:
    """A validated :class:`SampleLog` from :func:`read_records` output (one read, not two);
    columns that look like known ones are warned about as :func:`read_samples` does."""
    warn_lookalikes(raw.columns, (), origin)
    return build(raw, origin, grade=grade, run_columns=None)


def number_column(raw: pd.Series, field: str, origin: RecordOrigin, expected: str) -> pd.Series:
    """float64 (NaN for null) of a raw column; text that is no finite number is an error."""
    return as_number(raw, field, origin, expected)


def fail_where(
    bad: pd.Series | NDArray[np.bool_],
    raw: pd.Series,
    origin: RecordOrigin,
    field: str,
    expected: str,
) -> None:
    """Raise :class:`SampleLogError` at the first True of ``bad``, showing the raw value."""
    fail(bad, raw, origin, field, expected)
