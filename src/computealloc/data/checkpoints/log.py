"""Checkpoint logs: the format, the reader and its validation (file, line, field)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from computealloc.data.samples import (
    Format,
    RecordOrigin,
    SampleLog,
    fail_where,
    number_column,
    read_records,
    samples_from_records,
    validate_records,
)

if TYPE_CHECKING:
    from computealloc.data.checkpoints.traces import Traces

__all__ = ["CHECKPOINT_COLUMNS", "CheckpointLog", "read_checkpoints", "read_log"]

Float = NDArray[np.float64]
Int = NDArray[np.int64]
Bool = NDArray[np.bool_]

#: Columns that make a log a checkpoint log (``think_tokens``) or belong to one.
CHECKPOINT_COLUMNS = ("think_tokens", "confidence", "final", "answer_tokens")

# --------------------------------------------------------------------------- the log


@dataclass(frozen=True, eq=False, repr=False)
class CheckpointLog:
    """Validated checkpoint log.

    Build one with :func:`read_checkpoints`; direct construction skips validation.

    Attributes
    ----------
    rows : DataFrame
        One row per checkpoint, sorted by (model, query_id, sample_idx, think_tokens):
        ``query_id`` (str), ``sample_idx`` (int64), ``model`` (str), ``think_tokens`` (int64),
        ``answer`` (str or NA), ``correct`` (boolean), ``confidence`` (float64, NaN = none),
        ``final`` (bool), ``answer_tokens`` (float64, tokens).
    queries : DataFrame
        One row per query: ``query_id``, ``prompt``, ``gold`` and per-query metadata.
    source : str
        Where the log came from.
    """

    rows: pd.DataFrame
    queries: pd.DataFrame
    source: str = "<frame>"

    @property
    def models(self) -> list[str]:
        """Sorted distinct model labels."""
        return sorted(self.rows["model"].unique().tolist())

    @property
    def n_queries(self) -> int:
        """Number of distinct queries."""
        return len(self.queries)

    @property
    def grid(self) -> Int:
        """Sorted distinct ``think_tokens`` of the non-final checkpoints, shape (n_grid,)."""
        values = self.rows.loc[~self.rows["final"], "think_tokens"].to_numpy(dtype=np.int64)
        return np.unique(values)

    @property
    def has_confidence(self) -> bool:
        """Whether every checkpoint with an answer carries a confidence."""
        answered = self.rows["answer"].notna().to_numpy()
        return bool(np.isfinite(self.rows["confidence"].to_numpy()[answered]).all())

    def __repr__(self) -> str:
        n_traces = len(self.rows[["model", "query_id", "sample_idx"]].drop_duplicates())
        return (
            f"CheckpointLog(source={self.source!r}, n_rows={len(self.rows)}, "
            f"n_traces={n_traces}, n_queries={self.n_queries}, models={self.models!r})"
        )

    def to_frame(self) -> pd.DataFrame:
        """The long format back: one row per checkpoint with the query columns joined."""
        return self.rows.merge(self.queries, on="query_id", how="left", sort=False)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`to_frame` atomically as CSV, JSONL or Parquet, chosen by the suffix
        (as :meth:`computealloc.data.samples.SampleLog.save`); :func:`read_checkpoints` reads it."""
        SampleLog(self.rows, self.queries, self.source).save(path)

    def traces(self, model: str | None = None) -> Traces:
        """The traces of one model as padded arrays (:class:`Traces`)."""
        from computealloc.data.checkpoints.traces import Traces

        return Traces.of(self, model)


def read_checkpoints(
    path_or_frame: str | os.PathLike[str] | pd.DataFrame,
    *,
    grade: bool = True,
    format: Format | None = None,
) -> CheckpointLog:
    """Read and validate a checkpoint log (CSV, JSONL, Parquet or a DataFrame).

    Parameters
    ----------
    path_or_frame : path or DataFrame
        Long format, one row per query x sample x checkpoint (see
        :mod:`computealloc.data.checkpoints`).
    grade : bool
        Grade rows whose ``correct`` is null against the query's ``gold``.
    format : {"csv", "jsonl", "parquet"}, optional
        Overrides the suffix.

    Returns
    -------
    CheckpointLog

    Raises
    ------
    SampleLogError
        Naming the file, line (or row) and field: a missing ``think_tokens``, a negative or
        fractional one, checkpoints of a sample not strictly increasing, two ``final`` rows or
        a ``final`` row that is not the sample's last, a confidence outside [0, 1], and every
        error of :func:`computealloc.data.samples.read_samples`.

    Examples
    --------
    >>> log = read_checkpoints(pd.DataFrame({"query_id": "q", "sample_idx": 0,
    ...     "think_tokens": [0, 256, 700], "answer": ["3", "4", "4"],
    ...     "correct": [False, True, True], "final": [False, False, True]}))
    >>> log.grid.tolist()
    [0, 256]
    """
    raw, origin = read_records(path_or_frame, format=format)
    if "think_tokens" not in raw.columns:
        raise origin.error(
            "missing required column; expected a 'think_tokens' column in a checkpoint log, "
            f"found {', '.join(repr(str(c)) for c in raw.columns[:20])}",
            field="think_tokens",
        )
    return _from_records(raw, origin, grade=grade)


def read_log(
    path_or_frame: str | os.PathLike[str] | pd.DataFrame,
    *,
    grade: bool = True,
    format: Format | None = None,
    columns: Mapping[str, str] | None = None,
) -> SampleLog | CheckpointLog:
    """Read a log once: a :class:`CheckpointLog` when it has ``think_tokens``, else a SampleLog
    (``columns`` renames ``OLD -> NEW`` first, as
    :func:`~computealloc.data.samples.read_samples`)."""
    raw, origin = read_records(path_or_frame, format=format, columns=columns)
    if "think_tokens" in raw.columns:
        return _from_records(raw, origin, grade=grade)
    return samples_from_records(raw, origin, grade=grade)


def _from_records(raw: pd.DataFrame, origin: RecordOrigin, *, grade: bool) -> CheckpointLog:
    raw = raw.reset_index(drop=True)
    frame = validate_records(raw, origin, grade=grade)
    think = _int_column(raw["think_tokens"], "think_tokens", origin, "an integer >= 0")
    n = len(raw)
    conf = (
        number_column(raw["confidence"], "confidence", origin, "a number in [0, 1] or null")
        if "confidence" in raw.columns
        else pd.Series(np.nan, index=raw.index)
    )
    fail_where(
        (conf < 0) | (conf > 1),
        raw.get("confidence", conf),
        origin,
        "confidence",
        "a number in [0, 1] or null",
    )
    final = _flag_column(raw["final"], origin) if "final" in raw.columns else np.zeros(n, bool)
    answer_tokens = (
        _int_column(raw["answer_tokens"], "answer_tokens", origin, "an integer >= 0 or null")
        if "answer_tokens" in raw.columns
        else pd.Series(0.0, index=raw.index)
    ).fillna(0.0)
    keys = [frame["model"], frame["query_id"], frame["sample_idx"]]
    _check_order(pd.Series(think, index=raw.index), final, keys, raw, origin)
    rows = frame[["query_id", "sample_idx", "model", "answer", "correct"]].copy()
    rows["think_tokens"] = think.astype(np.int64)
    rows["confidence"] = conf.to_numpy(dtype=np.float64)
    rows["final"] = final
    rows["answer_tokens"] = answer_tokens.to_numpy(dtype=np.float64)
    rows = rows.sort_values(
        ["model", "query_id", "sample_idx", "think_tokens"], kind="stable", ignore_index=True
    )
    extra = [c for c in ("dataset", "level", "subject") if c in frame.columns]
    queries = (
        frame[["query_id", "prompt", "gold", *extra]]
        .groupby("query_id", sort=True)
        .first()
        .reset_index()
    )
    return CheckpointLog(rows, queries, origin.path)


def _int_column(raw: pd.Series, field: str, origin: RecordOrigin, expected: str) -> pd.Series:
    values = number_column(raw, field, origin, expected)
    nullable = "null" in expected
    bad = (values < 0) | (values % 1 != 0) | (values.isna() if not nullable else False)
    fail_where(bad, raw, origin, field, expected)
    return values


def _flag_column(raw: pd.Series, origin: RecordOrigin) -> Bool:
    expected = "true, false, 1, 0 or null"
    if raw.dtype.kind == "b" or isinstance(raw.dtype, pd.BooleanDtype):
        return raw.astype("boolean").fillna(False).to_numpy(dtype=bool)
    text = raw.astype("str").where(raw.notna()).str.strip().str.lower()
    true = text.isin(("true", "1", "1.0"))
    ok = true | text.isin(("false", "0", "0.0", "")) | raw.isna()
    fail_where(~ok.to_numpy(dtype=bool), raw, origin, "final", expected)
    return true.to_numpy(dtype=bool)


def _check_order(
    think: pd.Series, final: Bool, keys: list[pd.Series], raw: pd.DataFrame, origin: RecordOrigin
) -> None:
    """Strictly increasing ``think_tokens`` per sample in record order; one last ``final``."""
    groups = think.groupby(keys, sort=False)
    prev = groups.shift(1)
    bad = (prev.notna() & (think <= prev)).to_numpy()
    if bad.any():
        row = int(np.argmax(bad))
        raise origin.error(
            f"checkpoints of sample ({keys[1].iloc[row]!r}, {int(keys[2].iloc[row])}) must be "
            f"strictly increasing in think_tokens; expected more than {int(prev.iloc[row])}, "
            f"found {int(think.iloc[row])}",
            row=row,
            field="think_tokens",
        )
    has_next = groups.shift(-1).notna().to_numpy()
    late = final & has_next
    if late.any():
        row = int(np.argmax(late))
        raise origin.error(
            f"the final row of sample ({keys[1].iloc[row]!r}, {int(keys[2].iloc[row])}) must be "
            "its last checkpoint; expected no later checkpoint, found one after it",
            row=row,
            field="final",
        )
