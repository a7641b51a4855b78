"""SampleLog: one row per sampled response, plus one row per query.

The readers accept the canonical long format of DESIGN "Contracts" (CSV, JSONL, Parquet or a
DataFrame) and the nested JSONL form (one line per query with a ``samples`` or ``answers``
list). Every reader validates at the boundary and raises :class:`SampleLogError`, whose
message names the file, the line (or row), the field, what was expected and what was found.

Where an error points
---------------------
- CSV and JSONL: ``line N`` is the 1-based physical line of the file (lines are counted by
  ``\\n``; for a gzip file, of the decompressed text). A CSV header is the line it sits on
  (line 1 unless blank lines precede it); a CSV record whose quoted fields span several lines
  is reported at the line where the record starts. A nested JSONL sample is reported at the
  line of its query.
- Parquet files and DataFrames: ``row N`` is the 0-based position of the record
  (``df.iloc[N]``).

Value conventions
-----------------
- Empty strings are nulls in every format (CSV cannot tell them apart), for ``answer``,
  ``gold``, ``prompt``, ``response``, ``model`` and ``dataset``. Other strings, such as
  ``"None"`` or ``"NA"``, stay strings; ``"0012"`` and ``"05/01/2021"`` stay strings.
- ``tokens`` and ``score`` must be finite: a ``NaN`` or ``inf`` written in a CSV, JSONL or
  Parquet file is an error. In a float DataFrame column ``NaN`` is pandas' missing value and
  reads as null.
- ``correct`` accepts booleans, ``0``/``1`` and the strings ``true``/``false``/``1``/``0``
  (any case); anything else is an error.
"""

from __future__ import annotations

import csv
import difflib
import functools
import gzip
import io
import json
import os
import warnings
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from computealloc.table import atomic_write

__all__ = ["SampleLog", "SampleLogError", "SampleLogWarning", "decode_utf8", "read_samples"]

Format = Literal["csv", "jsonl", "parquet"]

_REQUIRED = ("query_id", "sample_idx")
_SAMPLE_COLUMNS = (
    "query_id",
    "sample_idx",
    "model",
    "answer",
    "correct",
    "tokens",
    "score",
    "response",
)
_QUERY_COLUMNS = ("query_id", "prompt", "gold")
_RESERVED = (*_SAMPLE_COLUMNS, "prompt", "gold", "dataset")
_QUERY_METADATA = ("dataset", "level", "subject")
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
_SUFFIXES: dict[str, Format] = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_NESTED_LISTS = {
    "answers": "answer",
    "correct": "correct",
    "tokens": "tokens",
    "scores": "score",
    "responses": "response",
}
_TRUE_WORDS = ("true", "1", "1.0")
_FALSE_WORDS = ("false", "0", "0.0")
_NAN_WORDS = ("nan", "+nan", "-nan")
_JSON_TYPES = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
_GZIP_MAGIC = b"\x1f\x8b"
# NaN and Infinity literals stay the strings "NaN", "Infinity", so validation can reject them.
_JSON_DECODER = json.JSONDecoder(parse_constant=str)


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
class _Origin:
    """Where raw records came from, to turn a record position into a file line.

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


@dataclass(frozen=True, eq=False, repr=False)
class SampleLog:
    """Validated sample log.

    Build one with :func:`read_samples` or :meth:`SampleLog.from_frame`; direct construction
    skips validation.

    Attributes
    ----------
    samples : DataFrame
        One row per sample, sorted by (model, query_id, sample_idx); columns ``query_id`` (str),
        ``sample_idx`` (int64), ``model`` (str), ``answer`` (str or NA), ``correct``
        (pandas ``boolean``, NA = unknown), ``tokens`` (float64, NaN = unknown), ``score``
        (float64, NaN = none), ``response`` (str or NA), plus any metadata columns.
        ``(model, query_id, sample_idx)`` is unique.
    queries : DataFrame
        One row per query_id (sorted): ``query_id``, ``prompt`` (str or NA), ``gold`` (str or NA),
        plus per-query metadata (``dataset``, ``level``, ...).
    source : str
        Where the log came from (a path, a dataset name, or ``"<frame>"``).

    Notes
    -----
    A metadata column moves to ``queries`` when its value is the same for every sample of each
    query and the log repeats some query (more sample rows than queries); ``dataset``,
    ``level`` and ``subject`` move whenever they are constant per query. Other metadata stays
    in ``samples``.
    """

    samples: pd.DataFrame
    queries: pd.DataFrame
    source: str = "<frame>"

    @classmethod
    def from_frame(
        cls,
        df: pd.DataFrame,
        *,
        source: str = "<frame>",
        grade: bool = True,
        run_columns: Sequence[str] | None = None,
    ) -> SampleLog:
        """Validate and normalise a long-format frame (one row per sample).

        Parameters
        ----------
        df : DataFrame of shape (n_samples, n_columns)
            Required columns ``query_id`` (str or int) and ``sample_idx`` (non-negative int);
            optional ``answer``, ``correct``, ``model`` (default ``"default"``), ``prompt``,
            ``gold``, ``response``, ``tokens``, ``score``, ``dataset``; other columns are kept
            as metadata. ``df`` is not modified.
        source : str
            Name used in error messages and kept as :attr:`source`.
        grade : bool
            Grade samples whose ``correct`` is null and whose query has a ``gold`` with
            :func:`computealloc.grading.grade` (a null answer is wrong). ``False`` leaves nulls.
        run_columns : sequence of str, optional
            Columns that identify a run (e.g. ``["model", "prompt_style"]``). When given, the
            ``model`` column becomes the run label: the non-empty values of these columns joined
            by ``"/"`` (a boolean column contributes its name when True and nothing when False),
            e.g. ``"llama-2-13b/gsm/pot2"``.

        Returns
        -------
        SampleLog

        Raises
        ------
        SampleLogError
            On a missing column, a value of the wrong type, a duplicate
            (model, query_id, sample_idx), or two prompts or golds for one query.
        """
        if not isinstance(df, pd.DataFrame):
            raise TypeError(
                f"The 'df' parameter of SampleLog.from_frame must be a DataFrame. "
                f"Got {type(df).__name__} instead."
            )
        _check_run_columns(run_columns, "SampleLog.from_frame")
        return _build(df, _Origin(source), grade=grade, run_columns=run_columns)

    @property
    def models(self) -> list[str]:
        """Sorted distinct model (or run) labels."""
        return sorted(self.samples["model"].unique().tolist())

    @property
    def n_queries(self) -> int:
        """Number of distinct queries."""
        return len(self.queries)

    @property
    def samples_per_query(self) -> pd.Series:
        """Number of samples per (model, query_id), a Series with that MultiIndex."""
        return self.samples.groupby(["model", "query_id"], sort=True).size().rename("n_samples")

    def __repr__(self) -> str:
        return (
            f"SampleLog(source={self.source!r}, n_samples={len(self.samples)}, "
            f"n_queries={self.n_queries}, models={self.models!r})"
        )

    def to_frame(self) -> pd.DataFrame:
        """The long format back: one row per sample with the query columns joined."""
        return self.samples.merge(self.queries, on="query_id", how="left", sort=False)

    def subset(
        self,
        query_ids: Iterable[object] | None = None,
        models: Iterable[str] | None = None,
        sample_mask: ArrayLike | None = None,
    ) -> SampleLog:
        """Return the log restricted to some queries, models and samples.

        Parameters
        ----------
        query_ids : iterable of str or int, optional
            Queries to keep; each must be in the log.
        models : iterable of str, optional
            Models (run labels) to keep; each must be in the log.
        sample_mask : array-like of bool of shape (n_samples,), optional
            Rows of :attr:`samples` to keep (e.g. one held-out half of each query's samples).

        Returns
        -------
        SampleLog
            Samples that pass every filter, and the queries that still have samples.
        """
        keep = np.ones(len(self.samples), dtype=bool)
        if query_ids is not None:
            keep &= _member_mask(self.samples["query_id"], [str(q) for q in query_ids], "query_ids")
        if models is not None:
            keep &= _member_mask(self.samples["model"], [str(m) for m in models], "models")
        if sample_mask is not None:
            keep &= _sample_mask(sample_mask, len(self.samples))
        if not keep.any():
            raise ValueError("The filters of SampleLog.subset select no samples.")
        samples = self.samples[keep].reset_index(drop=True)
        queries = self.queries[self.queries["query_id"].isin(samples["query_id"].unique())]
        return SampleLog(samples, queries.reset_index(drop=True), self.source)

    def short_queries(self, min_samples: int) -> pd.Series:
        """Queries with fewer than ``min_samples`` samples for some model.

        Parameters
        ----------
        min_samples : int
            Smallest number of samples a query must have for every model, ``>= 1``.

        Returns
        -------
        Series of int
            Indexed by query_id (sorted): the query's smallest sample count over the models.
        """
        if isinstance(min_samples, bool) or not isinstance(min_samples, (int, np.integer)):
            min_samples = -1
        if min_samples < 1:
            raise ValueError(
                "The 'min_samples' parameter of SampleLog.short_queries must be an int in "
                f"[1, inf). Got {min_samples!r} instead."
            )
        fewest = self.samples_per_query.groupby(level="query_id").min()
        return fewest[fewest < min_samples]

    def drop_short(self, min_samples: int) -> SampleLog:
        """The log without the queries that have fewer than ``min_samples`` samples.

        One short query bounds every query's default actions (``majority@K`` runs up to the
        smallest pool); dropping it keeps the larger actions for the others.

        Parameters
        ----------
        min_samples : int
            Smallest number of samples a query must have for every model, ``>= 1``.

        Returns
        -------
        SampleLog
            This log when no query is short.

        Raises
        ------
        ValueError
            When every query is short.
        """
        short = self.short_queries(min_samples)
        if not len(short):
            return self
        keep = self.queries["query_id"][~self.queries["query_id"].isin(short.index)]
        if not len(keep):
            raise ValueError(
                f"Every query of {self.source} has fewer than {min_samples} samples (the most "
                f"is {int(self.samples_per_query.max())}); lower min_samples."
            )
        return self.subset(query_ids=keep)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`to_frame` as Parquet, CSV or JSONL, chosen by the suffix.

        ``.parquet``/``.pq``, ``.csv``, ``.jsonl``/``.ndjson``, and ``.csv.gz``/``.jsonl.gz``
        compressed. The file is written atomically (:func:`computealloc.table.atomic_write`)
        and reads back with :func:`read_samples`.
        """
        dest = Path(path)
        fmt = _format_of(dest, None)
        gz = dest.name.lower().endswith(".gz")
        frame = self.to_frame()
        if fmt == "parquet":
            atomic_write(dest, lambda tmp: frame.to_parquet(tmp, index=False), mode="path")
        elif fmt == "csv":
            atomic_write(
                dest,
                lambda tmp: frame.to_csv(tmp, index=False, compression="gzip" if gz else None),
                mode="path",
            )
        else:
            payload = _jsonl_bytes(frame)
            atomic_write(
                dest, lambda fh: fh.write(gzip.compress(payload) if gz else payload), mode="wb"
            )


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
    _check_run_columns(run_columns, "read_samples")
    _check_columns_map(columns, "read_samples")
    if isinstance(path_or_frame, pd.DataFrame):
        frame = path_or_frame.rename(columns=dict(columns)) if columns else path_or_frame
        return SampleLog.from_frame(frame, grade=grade, run_columns=run_columns)
    if not isinstance(path_or_frame, (str, os.PathLike)):
        raise TypeError(
            "The 'path_or_frame' parameter of read_samples must be a path, a DataFrame or a "
            f"SampleLog. Got {type(path_or_frame).__name__} instead."
        )
    raw, origin = read_records(path_or_frame, format=format, columns=columns)
    _warn_lookalikes(raw.columns, run_columns or (), origin)
    return _build(raw, origin, grade=grade, run_columns=run_columns)


def _check_file(path: Path) -> None:
    """A missing file, a directory or an unreadable file, said plainly (no OSError)."""
    if path.is_dir():
        raise SampleLogError(
            "is a directory; expected a sample log file (CSV, JSONL or Parquet)", path=str(path)
        )
    if not path.exists():
        raise SampleLogError("no such file; expected a sample log file", path=str(path))
    if not os.access(path, os.R_OK):
        raise SampleLogError("permission denied; expected a readable file", path=str(path))


def _rename_columns(raw: pd.DataFrame, columns: Mapping[str, str], origin: _Origin) -> pd.DataFrame:
    """Rename ``OLD -> NEW`` before validation; OLD must be there and NEW must be free."""
    for old, new in columns.items():
        if old not in raw.columns:
            raise origin.error(
                f"no column {old!r} to rename to {new!r}; found columns "
                f"{', '.join(repr(str(c)) for c in raw.columns[:20])}",
                field=old,
            )
        if new in raw.columns and new not in columns:
            raise origin.error(
                f"cannot rename {old!r} to {new!r}: the file already has a column {new!r}",
                field=new,
            )
    return raw.rename(columns=dict(columns))


# Other names for the known columns, as other tools write them.
_ALIASES = {
    "is_correct": "correct",
    "correctness": "correct",
    "is_right": "correct",
    "question": "prompt",
    "problem": "prompt",
    "input": "prompt",
    "question_id": "query_id",
    "qid": "query_id",
    "problem_id": "query_id",
    "sample_id": "sample_idx",
    "sample_index": "sample_idx",
    "pred": "answer",
    "prediction": "answer",
    "predicted_answer": "answer",
    "extracted_answer": "answer",
    "output": "response",
    "completion": "response",
    "generation": "response",
    "target": "gold",
    "reference": "gold",
    "ground_truth": "gold",
    "gold_answer": "gold",
    "num_tokens": "tokens",
    "n_tokens": "tokens",
    "output_tokens": "tokens",
    "completion_tokens": "tokens",
    "reward": "score",
}
_KNOWN = (*_SAMPLE_COLUMNS, *_QUERY_COLUMNS)


def _lookalike(name: str) -> str | None:
    """The known column ``name`` probably means (alias, case or typo), or None."""
    key = name.strip().lower()
    if key in _ALIASES:
        return _ALIASES[key]
    close = difflib.get_close_matches(key, _KNOWN, n=1, cutoff=0.9)
    return close[0] if close and close[0] != name else None


def _warn_lookalikes(names: Iterable[object], run_columns: Sequence[str], origin: _Origin) -> None:
    """Warn for each unknown column that looks like a known one the file lacks."""
    present = {str(c) for c in names}
    for name in sorted(present - set(_RESERVED) - set(run_columns)):
        known = _lookalike(name)
        if known is not None and known not in present and known not in _REQUIRED:
            warnings.warn(
                f"{origin.path}: column {name!r} looks like {known!r} but is not read as it "
                f"(it is kept as metadata); if it holds the {known} values, rename it: "
                f"columns={{{name!r}: {known!r}}} (--map {name}={known} on the command line)",
                SampleLogWarning,
                stacklevel=4,
            )


def _check_columns_map(columns: Mapping[str, str] | None, owner: str) -> None:
    if columns is not None and (
        not isinstance(columns, Mapping)
        or not all(
            isinstance(k, str) and isinstance(v, str) and k and v for k, v in columns.items()
        )
        or len(set(columns.values())) != len(columns)
    ):
        raise ValueError(
            f"The 'columns' parameter of {owner} must be None or a mapping of distinct non-empty "
            f"column names (old -> new). Got {columns!r} instead."
        )


def _check_run_columns(run_columns: Sequence[str] | None, owner: str) -> None:
    if run_columns is not None and (
        isinstance(run_columns, str)
        or not run_columns
        or not all(isinstance(c, str) for c in run_columns)
    ):
        raise ValueError(
            f"The 'run_columns' parameter of {owner} must be None or a non-empty sequence of "
            f"column names. Got {run_columns!r} instead."
        )


# --------------------------------------------------------------------------- file formats


def _format_of(path: Path, format: str | None) -> Format:
    if format is not None:
        if format not in ("csv", "jsonl", "parquet"):
            raise ValueError(
                "The 'format' parameter of read_samples must be one of 'csv', 'jsonl', "
                f"'parquet' or None. Got {format!r} instead."
            )
        return cast(Format, format)
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    fmt = _SUFFIXES.get(suffixes[-1] if suffixes else "")
    if fmt is None or (fmt == "parquet" and path.name.lower().endswith(".gz")):
        raise SampleLogError(
            "cannot tell the format from the file name; expected a name ending in .csv, "
            ".jsonl, .ndjson, .parquet or .pq (.csv.gz, .jsonl.gz compressed) or format=, "
            f"found {path.name!r}",
            path=str(path),
        )
    return fmt


def _read_bytes(path: Path) -> tuple[bytes, str]:
    """The file's bytes (gunzipped when they start with the gzip magic) and a name for offsets."""
    data = path.read_bytes()
    if not data:
        raise SampleLogError(
            "empty file (0 bytes); expected at least one sample record", path=str(path)
        )
    if not data.startswith(_GZIP_MAGIC):
        return data, "the file"
    try:
        text = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise SampleLogError(
            f"not a readable gzip file ({exc}); expected a complete gzip stream", path=str(path)
        ) from exc
    if not text:
        raise SampleLogError(
            "empty file (0 bytes after gzip decompression); expected at least one sample record",
            path=str(path),
        )
    return text, "the decompressed file"


def decode_utf8(data: bytes, path: str, what: str = "the file") -> str:
    """Decode UTF-8 text, dropping a leading BOM; an invalid byte names its line.

    Parameters
    ----------
    data : bytes
        The file's contents.
    path : str
        The file, for the message.
    what : str
        What the byte offsets count in ("the file", "the decompressed file").

    Raises
    ------
    SampleLogError
        Naming the file, the line, the byte offset and the expected encoding (UTF-8).
    """
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        pos = exc.start
        line_start = data.rfind(b"\n", 0, pos) + 1
        raise SampleLogError(
            f"invalid UTF-8 byte 0x{data[pos]:02x} at byte offset {pos} of {what} "
            f"(byte {pos - line_start} of the line); expected UTF-8 text",
            path=path,
            line=data.count(b"\n", 0, pos) + 1,
        ) from exc


def _read_csv(path: Path) -> tuple[pd.DataFrame, _Origin]:
    """Parse with pyarrow (reserved text columns as strings, the rest inferred over the file).

    The text is decoded, and walked with :mod:`csv`, only to explain a failure: pyarrow
    rejects invalid UTF-8 in string columns and infers ``binary`` for it elsewhere, and it
    accepts an unterminated quote at the end of the file, which an odd number of ``"`` reveals.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    source = str(path)
    data, what = _read_bytes(path)
    text = functools.cache(lambda: decode_utf8(data, source, what))
    scan = functools.cache(lambda: _scan_csv(text(), source))
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
        header_line, record_lines = _quote_parity_lines(data)
        return (header_line, record_lines) if len(record_lines) == n_records else scan()

    return table.to_pandas(), _Origin(source, functools.cache(locate))


def _quote_parity_lines(data: bytes) -> tuple[int, NDArray[np.int64]]:
    """Header line and first line of each record, found without parsing.

    In RFC 4180 CSV a newline ends a record exactly when an even number of ``"`` precede it
    (escaped quotes come in pairs). Blank lines are skipped, as the parser skips them. The
    caller falls back to :func:`_scan_csv` when the record count disagrees with the parser's.
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


def _scan_csv(text: str, path: str) -> tuple[int, NDArray[np.int64]]:
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


def _read_jsonl(path: Path) -> tuple[pd.DataFrame, _Origin]:
    """One JSON object per line, long or nested (told apart by the first record)."""
    source = str(path)
    data, what = _read_bytes(path)
    records, lines = _parse_json_lines(decode_utf8(data, source, what), source)
    first = records[0]
    if isinstance(first.get("samples"), list) or isinstance(first.get("answers"), list):
        rows, row_lines = _flatten_nested(records, lines, source)
    else:
        rows, row_lines = records, lines
    line_array = np.asarray(row_lines, dtype=np.int64)
    return pd.DataFrame(rows), _Origin(source, lambda: (lines[0], line_array))


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


def _read_parquet(path: Path) -> tuple[pd.DataFrame, _Origin]:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    source = str(path)
    if path.stat().st_size == 0:
        raise SampleLogError(
            "empty file (0 bytes); expected at least one sample record", path=source
        )
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise SampleLogError(
            f"not a readable Parquet file ({exc}); expected a Parquet table", path=source
        ) from exc
    origin = _Origin(source)
    for name in ("tokens", "score"):
        if name in table.column_names and pa.types.is_floating(table.schema.field(name).type):
            nan = pc.is_nan(table[name]).fill_null(False).to_numpy(zero_copy_only=False)
            if nan.any():
                raise origin.error(
                    "expected a finite number or null, found nan",
                    row=int(np.argmax(nan)),
                    field=name,
                )
    return table.to_pandas(), origin


def _jsonl_bytes(frame: pd.DataFrame) -> bytes:
    plain = frame.astype(object).where(frame.notna(), None)
    lines = (json.dumps(r, ensure_ascii=False, allow_nan=False) for r in plain.to_dict("records"))
    return "".join(f"{line}\n" for line in lines).encode("utf-8")


# --------------------------------------------------------------------------- column values


def _show(value: object) -> str:
    """Short repr of an offending value for a message."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return "null"
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def _fail(
    bad: pd.Series | NDArray[np.bool_], raw: pd.Series, origin: _Origin, field: str, expected: str
) -> None:
    """Raise for the first True of ``bad`` with the raw value found there.

    ``raw`` carries the record positions as its index (the reader's frame has a RangeIndex).
    """
    flags = np.asarray(bad, dtype=bool)
    if flags.any():
        at = int(np.argmax(flags))
        raise origin.error(
            f"expected {expected}, found {_show(raw.iloc[at])}", row=int(raw.index[at]), field=field
        )


def _is_scalar(value: object) -> bool:
    return value is None or value is pd.NA or isinstance(value, (str, int, float, np.generic))


def _check_scalar(raw: pd.Series, field: str, origin: _Origin, expected: str) -> None:
    """Reject lists and objects (possible in JSON and object-dtype frames)."""
    if raw.dtype == object:
        _fail(~raw.map(_is_scalar).astype(bool), raw, origin, field, expected)


def _as_text(raw: pd.Series, field: str, origin: _Origin, expected: str = "a string") -> pd.Series:
    """Strings (numbers become their ``str``) with NA for null and for ``""``."""
    _check_scalar(raw, field, origin, expected)
    text = raw.astype("str")
    return text.where(text != "")


def _as_query_id(raw: pd.Series, origin: _Origin) -> pd.Series:
    expected = "a non-empty string or an integer"
    if raw.dtype.kind == "f":
        values = raw.to_numpy()
        _fail(~np.isfinite(values) | (values % 1 != 0), raw, origin, "query_id", expected)
        raw = raw.astype(np.int64)
    elif raw.dtype.kind == "b":
        _fail(np.ones(len(raw), dtype=bool), raw, origin, "query_id", expected)
    elif raw.dtype == object:
        ok = raw.map(lambda v: isinstance(v, (str, int, np.integer)) and not isinstance(v, bool))
        _fail(~ok.astype(bool), raw, origin, "query_id", expected)
    text = _as_text(raw, "query_id", origin, expected)
    _fail(text.isna(), raw, origin, "query_id", expected)
    return text


def _as_number(raw: pd.Series, field: str, origin: _Origin, expected: str) -> pd.Series:
    """float64 with NaN for null; text that is not a number, NaN or inf is an error."""
    if raw.dtype.kind in "iuf":
        values = raw.astype(np.float64)
    else:
        text = _as_text(raw, field, origin, expected)
        values = pd.to_numeric(text, errors="coerce").astype(np.float64)
        invalid = text.notna() & values.isna()
        nan_word = invalid & text.str.strip().str.lower().isin(_NAN_WORDS)
        _fail(invalid & ~nan_word, raw, origin, field, expected)
        _fail(nan_word, raw, origin, field, "a finite number or null")
    _fail(np.isinf(values), raw, origin, field, "a finite number or null")
    return values


_INT64_MAX = np.iinfo(np.int64).max


def _as_sample_idx(raw: pd.Series, origin: _Origin) -> pd.Series:
    """int64; negative, fractional and out-of-range (>= 2**63) values are errors, not wraps."""
    expected = "a non-negative integer"
    too_big = "a non-negative integer below 2**63 (int64)"
    if raw.dtype.kind == "u":
        _fail(raw.to_numpy() > _INT64_MAX, raw, origin, "sample_idx", too_big)
    if raw.dtype.kind in "iu" and not raw.hasnans:
        values = raw.astype(np.int64)
        _fail(values < 0, raw, origin, "sample_idx", expected)
        return values
    if raw.dtype == object:  # exact Python ints (JSON) beyond int64 never reach float64
        huge = raw.map(lambda v: isinstance(v, int) and not isinstance(v, bool) and v > _INT64_MAX)
        _fail(huge.astype(bool), raw, origin, "sample_idx", too_big)
    numbers = _as_number(raw, "sample_idx", origin, expected)
    _fail(numbers.isna() | (numbers % 1 != 0) | (numbers < 0), raw, origin, "sample_idx", expected)
    _fail(numbers >= 2.0**63, raw, origin, "sample_idx", too_big)
    return numbers.astype(np.int64)


def _as_tokens(raw: pd.Series, origin: _Origin) -> pd.Series:
    values = _as_number(raw, "tokens", origin, "a non-negative number or null")
    _fail(values < 0, raw, origin, "tokens", "a non-negative number or null")
    return values


def _as_correct(raw: pd.Series, origin: _Origin) -> pd.Series:
    expected = "true, false, 1, 0 or null"
    if raw.dtype.kind == "b" or isinstance(raw.dtype, pd.BooleanDtype):
        return raw.astype("boolean")
    if raw.dtype.kind in "iuf":
        _fail(~(raw.isna() | raw.isin([0, 1])), raw, origin, "correct", expected)
        return raw.astype("boolean")
    text = _as_text(raw, "correct", origin, expected)
    words = text.str.strip().str.lower()
    true, false = words.isin(_TRUE_WORDS), words.isin(_FALSE_WORDS)
    _fail(text.notna() & ~true & ~false, raw, origin, "correct", expected)
    return true.astype("boolean").where(true | false, pd.NA)


_CONVERTERS: dict[str, Callable[[pd.Series, _Origin], pd.Series]] = {
    "query_id": _as_query_id,
    "sample_idx": _as_sample_idx,
    "answer": lambda s, o: _as_text(s, "answer", o),
    "correct": _as_correct,
    "tokens": _as_tokens,
    "score": lambda s, o: _as_number(s, "score", o, "a number or null"),
    "response": lambda s, o: _as_text(s, "response", o),
    "prompt": lambda s, o: _as_text(s, "prompt", o),
    "gold": lambda s, o: _as_text(s, "gold", o),
    "dataset": lambda s, o: _as_text(s, "dataset", o),
}
_FILL = {
    "answer": "str",
    "correct": "boolean",
    "tokens": "float64",
    "score": "float64",
    "response": "str",
    "prompt": "str",
    "gold": "str",
}


# --------------------------------------------------------------------------- building


def _build(
    raw: pd.DataFrame, origin: _Origin, *, grade: bool, run_columns: Sequence[str] | None
) -> SampleLog:
    frame = _normalise(raw, origin, run_columns)
    _check_unique(frame, origin)
    for name in ("prompt", "gold"):
        _check_per_query(frame, name, origin)
    if grade:
        frame["correct"] = _grade_missing(frame)
    return _split(frame, origin.path)


def _check_columns(raw: pd.DataFrame, origin: _Origin) -> None:
    duplicated = raw.columns[raw.columns.duplicated()]
    if len(duplicated):
        raise origin.error(
            f"duplicate column name; expected unique column names, found {duplicated[0]!r} twice",
            field=str(duplicated[0]),
        )
    missing = [c for c in _REQUIRED if c not in raw.columns]
    if missing:
        found = ", ".join(repr(str(c)) for c in raw.columns[:20])
        like = [str(c) for c in raw.columns if _lookalike(str(c)) == missing[0]]
        hint = (
            f" (to read {like[0]!r} as {missing[0]!r}: columns={{{like[0]!r}: {missing[0]!r}}}, "
            f"--map {like[0]}={missing[0]})"
            if like
            else ""
        )
        raise origin.error(
            f"missing required column; expected columns 'query_id' and 'sample_idx', "
            f"found {found or 'no columns'}{hint}",
            field=missing[0],
        )
    if len(raw) == 0:
        raise origin.error("no sample records; expected at least one sample record")


def _normalise(
    raw: pd.DataFrame, origin: _Origin, run_columns: Sequence[str] | None
) -> pd.DataFrame:
    """Typed columns in contract order, then the metadata columns as read."""
    _check_columns(raw, origin)
    raw = raw.reset_index(drop=True)
    columns: dict[str, pd.Series] = {}
    for name in ("query_id", "sample_idx"):
        columns[name] = _CONVERTERS[name](raw[name], origin)
    if run_columns is not None:
        columns["model"] = _run_labels(raw, run_columns, origin)
    elif "model" in raw.columns:
        columns["model"] = _as_text(raw["model"], "model", origin).fillna("default")
    else:
        columns["model"] = pd.Series("default", index=raw.index, dtype="str")
    for name, dtype in _FILL.items():
        if name in raw.columns:
            columns[name] = _CONVERTERS[name](raw[name], origin)
        else:
            columns[name] = pd.Series(np.nan, index=raw.index).astype(dtype)  # type: ignore[call-overload]
    if "dataset" in raw.columns:
        columns["dataset"] = _CONVERTERS["dataset"](raw["dataset"], origin)
    for name in raw.columns:
        if name not in columns and name not in _RESERVED:
            columns[name] = raw[name]
    return pd.DataFrame(columns)


def _run_labels(raw: pd.DataFrame, run_columns: Sequence[str], origin: _Origin) -> pd.Series:
    """Join each row's run-column values with '/' (a True boolean column gives its name)."""
    missing = [c for c in run_columns if c not in raw.columns]
    if missing:
        raise origin.error(
            f"missing column named in run_columns; expected columns {list(run_columns)}, "
            f"found {[str(c) for c in raw.columns]}",
            field=missing[0],
        )
    keys = raw[list(run_columns)]
    for name in run_columns:
        _check_scalar(keys[name], name, origin, "a string, number or boolean")
    codes = keys.groupby(list(run_columns), dropna=False, sort=False).ngroup().to_numpy()
    runs = keys.iloc[np.unique(codes, return_index=True)[1]]
    label = _label_part(runs[run_columns[0]], run_columns[0], origin)
    for name in run_columns[1:]:
        part = _label_part(runs[name], name, origin)
        both = label.notna() & part.notna()
        label = label.fillna(part).where(~both, label + "/" + part)
    if label.nunique(dropna=False) != len(runs):
        raise origin.error(
            f"run labels collide; expected {len(runs)} distinct labels (one per distinct "
            f"combination of {list(run_columns)}), found {label.nunique(dropna=False)}",
            field=run_columns[0],
        )
    return pd.Series(label.fillna("default").to_numpy()[codes], index=raw.index, dtype="str")


def _label_part(column: pd.Series, name: str, origin: _Origin) -> pd.Series:
    if column.dtype.kind == "b" or isinstance(column.dtype, pd.BooleanDtype):
        flags = column.fillna(False).astype(bool)
        return pd.Series(name, index=column.index, dtype="str").where(flags)
    return _as_text(column, name, origin)


def _check_unique(frame: pd.DataFrame, origin: _Origin) -> None:
    key = ["model", "query_id", "sample_idx"]
    duplicated = frame.duplicated(key).to_numpy()
    if not duplicated.any():
        return
    row = int(np.argmax(duplicated))
    model, query_id, sample_idx = (frame[c].iloc[row] for c in key)
    same = (
        (frame["model"] == model)
        & (frame["query_id"] == query_id)
        & (frame["sample_idx"] == sample_idx)
    )
    first = int(np.argmax(same.to_numpy()))
    raise origin.error(
        f"duplicate (query_id, sample_idx) = ({query_id!r}, {int(sample_idx)}) for model "
        f"{model!r}; expected each (model, query_id, sample_idx) once, found it also at "
        f"{origin.place(first)}",
        row=row,
        field="sample_idx",
    )


def _check_per_query(frame: pd.DataFrame, name: str, origin: _Origin) -> None:
    values = frame[name]
    first = values.groupby(frame["query_id"], sort=False).transform("first")
    clash = (values.notna() & (values != first)).to_numpy()
    if not clash.any():
        return
    row = int(np.argmax(clash))
    query_id = frame["query_id"].iloc[row]
    earlier = int(np.argmax(((frame["query_id"] == query_id) & values.notna()).to_numpy()))
    raise origin.error(
        f"query {query_id!r} has two different {name} values; expected one {name} per "
        f"query_id, found {_show(values.iloc[row])} here and {_show(first.iloc[row])} at "
        f"{origin.place(earlier)}",
        row=row,
        field=name,
    )


def _grade_missing(frame: pd.DataFrame) -> pd.Series:
    """``correct`` with nulls graded against the query's gold (a null answer grades False)."""
    correct = frame["correct"].copy()
    gold = frame["gold"].groupby(frame["query_id"], sort=False).transform("first")
    todo = (correct.isna() & gold.notna()).to_numpy()
    if todo.any():
        from computealloc.grading import grade

        correct[todo] = grade(frame["answer"].to_numpy()[todo], gold.to_numpy()[todo])
    return correct


def _constant_per_query(frame: pd.DataFrame, columns: list[str]) -> list[str]:
    if not columns:
        return []
    values = frame[columns]
    first = values.groupby(frame["query_id"], sort=False).transform("first")
    same = (values == first) | (values.isna() & first.isna())
    return [c for c in columns if bool(same[c].all())]


def _split(frame: pd.DataFrame, source: str) -> SampleLog:
    metadata = [c for c in frame.columns if c not in _SAMPLE_COLUMNS and c not in _QUERY_COLUMNS]
    repeated = frame["query_id"].nunique() < len(frame)
    candidates = [
        c for c in metadata if frame[c].dtype != object and (repeated or c in _QUERY_METADATA)
    ]
    per_query = _constant_per_query(frame, candidates)
    per_sample = [c for c in metadata if c not in per_query]
    samples = frame[[*_SAMPLE_COLUMNS, *per_sample]].sort_values(
        ["model", "query_id", "sample_idx"], kind="stable", ignore_index=True
    )
    queries = (
        frame[[*_QUERY_COLUMNS, *per_query]].groupby("query_id", sort=True).first().reset_index()
    )
    return SampleLog(samples, queries, source)


def _member_mask(values: pd.Series, wanted: list[str], name: str) -> NDArray[np.bool_]:
    unknown = pd.Index(wanted).difference(pd.Index(values.unique()))
    if len(unknown):
        raise ValueError(
            f"The '{name}' parameter of SampleLog.subset must name entries of the log. "
            f"Got {len(unknown)} unknown, e.g. {unknown[0]!r}."
        )
    return values.isin(wanted).to_numpy()


def _sample_mask(mask: ArrayLike, n_samples: int) -> NDArray[np.bool_]:
    array = np.asarray(mask)
    if array.dtype != np.bool_ or array.shape != (n_samples,):
        raise ValueError(
            f"The 'sample_mask' parameter of SampleLog.subset must be a boolean array of shape "
            f"({n_samples},). Got dtype {array.dtype} and shape {array.shape} instead."
        )
    return array


# --------------------------------------------------------------------------- other log kinds
# Public entry points for logs that share this module's readers and column checks but not its
# one-row-per-sample shape (checkpoint logs: :mod:`computealloc.checkpoints`).

#: Where raw records came from: ``origin.error(message, row=, field=)`` names the file and the
#: line (CSV/JSONL) or row (Parquet/frame); ``origin.place(row)`` says "line N" or "row N".
RecordOrigin = _Origin


def read_records(
    path_or_frame: str | os.PathLike[str] | pd.DataFrame,
    *,
    format: Format | None = None,
    columns: Mapping[str, str] | None = None,
) -> tuple[pd.DataFrame, _Origin]:
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
        raw, origin = path_or_frame.reset_index(drop=True), _Origin("<frame>")
    else:
        path = Path(path_or_frame)
        _check_file(path)
        reader = {"csv": _read_csv, "jsonl": _read_jsonl, "parquet": _read_parquet}[
            _format_of(path, format)
        ]
        raw, origin = reader(path)
    if columns:
        raw = _rename_columns(raw, columns, origin)
    return raw, origin


def validate_records(raw: pd.DataFrame, origin: _Origin, *, grade: bool = True) -> pd.DataFrame:
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
    frame = _normalise(raw, origin, None)
    for name in ("prompt", "gold"):
        _check_per_query(frame, name, origin)
    if grade:
        frame["correct"] = _grade_missing(frame)
    return frame


def samples_from_records(raw: pd.DataFrame, origin: _Origin, *, grade: bool = True) -> SampleLog:
    """A validated :class:`SampleLog` from :func:`read_records` output (one read, not two);
    columns that look like known ones are warned about as :func:`read_samples` does."""
    _warn_lookalikes(raw.columns, (), origin)
    return _build(raw, origin, grade=grade, run_columns=None)


def number_column(raw: pd.Series, field: str, origin: _Origin, expected: str) -> pd.Series:
    """float64 (NaN for null) of a raw column; text that is no finite number is an error."""
    return _as_number(raw, field, origin, expected)


def fail_where(
    bad: pd.Series | NDArray[np.bool_], raw: pd.Series, origin: _Origin, field: str, expected: str
) -> None:
    """Raise :class:`SampleLogError` at the first True of ``bad``, showing the raw value."""
    _fail(bad, raw, origin, field, expected)
