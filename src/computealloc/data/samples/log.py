"""The :class:`SampleLog` class, and :func:`build`, which validates records into one."""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from computealloc.data.samples.errors import RecordOrigin
from computealloc.data.samples.files import format_of
from computealloc.data.samples.jsonl import jsonl_bytes
from computealloc.data.samples.schema import QUERY_COLUMNS, QUERY_METADATA, SAMPLE_COLUMNS
from computealloc.data.samples.validation import (
    check_per_query,
    check_run_columns,
    check_unique,
    grade_missing,
    normalise,
)
from computealloc.files import atomic_write


@dataclass(frozen=True, eq=False, repr=False)
class SampleLog:
    """Validated sample log.

    Build one with :func:`~computealloc.data.samples.read_samples` or
    :meth:`SampleLog.from_frame`; direct construction skips validation.

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
            :func:`computealloc.data.grading.grade` (a null answer is wrong). ``False`` leaves
            nulls.
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
        check_run_columns(run_columns, "SampleLog.from_frame")
        return build(df, RecordOrigin(source), grade=grade, run_columns=run_columns)

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
        compressed. The file is written atomically
        (:func:`computealloc.files.atomic_write`) and reads back with
        :func:`read_samples`.
        """
        dest = Path(path)
        fmt = format_of(dest, None)
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
            payload = jsonl_bytes(frame)
            atomic_write(
                dest, lambda fh: fh.write(gzip.compress(payload) if gz else payload), mode="wb"
            )


def build(
    raw: pd.DataFrame, origin: RecordOrigin, *, grade: bool, run_columns: Sequence[str] | None
) -> SampleLog:
    """Validate raw records into a :class:`SampleLog` (what every reader ends with).

    Parameters
    ----------
    raw : DataFrame of shape (n_records, n_columns)
        Records as read, RangeIndex = record position.
    origin : RecordOrigin
        Where the records came from, for error messages; its path becomes the log's source.
    grade : bool
        Grade null ``correct`` against the query's gold.
    run_columns : sequence of str, optional
        Columns whose joined values become the ``model`` label.

    Returns
    -------
    SampleLog

    Raises
    ------
    SampleLogError
        Naming the file, line (or row) and field.
    """
    frame = normalise(raw, origin, run_columns)
    check_unique(frame, origin)
    for name in ("prompt", "gold"):
        check_per_query(frame, name, origin)
    if grade:
        frame["correct"] = grade_missing(frame)
    return _split(frame, origin.path)


def _constant_per_query(frame: pd.DataFrame, columns: list[str]) -> list[str]:
    if not columns:
        return []
    values = frame[columns]
    first = values.groupby(frame["query_id"], sort=False).transform("first")
    same = (values == first) | (values.isna() & first.isna())
    return [c for c in columns if bool(same[c].all())]


def _split(frame: pd.DataFrame, source: str) -> SampleLog:
    metadata = [c for c in frame.columns if c not in SAMPLE_COLUMNS and c not in QUERY_COLUMNS]
    repeated = frame["query_id"].nunique() < len(frame)
    candidates = [
        c for c in metadata if frame[c].dtype != object and (repeated or c in QUERY_METADATA)
    ]
    per_query = _constant_per_query(frame, candidates)
    per_sample = [c for c in metadata if c not in per_query]
    samples = frame[[*SAMPLE_COLUMNS, *per_sample]].sort_values(
        ["model", "query_id", "sample_idx"], kind="stable", ignore_index=True
    )
    queries = (
        frame[[*QUERY_COLUMNS, *per_query]].groupby("query_id", sort=True).first().reset_index()
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
