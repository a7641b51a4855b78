"""SampleLog: one row per sampled response, plus one row per query.

INTERFACE STUB (the samples helper replaces the body; the public names and column contract stay).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

__all__ = ["SampleLog", "SampleLogError", "read_samples"]


class SampleLogError(ValueError):
    """A malformed sample log; the message names the file, the line (or row) and the field."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        where = ", ".join(
            s for s in (path, f"line {line}" if line is not None else None,
                        f"field '{field}'" if field else None) if s
        )
        super().__init__(f"{where}: {message}" if where else message)
        self.path = path
        self.line = line
        self.field = field


@dataclass(frozen=True)
class SampleLog:
    """Validated sample log.

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
    """

    samples: pd.DataFrame
    queries: pd.DataFrame
    source: str = "<frame>"

    @classmethod
    def from_frame(cls, df: pd.DataFrame, *, source: str = "<frame>", grade: bool = True) -> SampleLog:
        raise NotImplementedError

    @property
    def models(self) -> list[str]:
        return sorted(self.samples["model"].unique().tolist())


def read_samples(path_or_frame: object, *, grade: bool = True) -> SampleLog:
    raise NotImplementedError
