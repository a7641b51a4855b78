"""The column names of the sample-log contract (DESIGN "Contracts") and the file formats.

``REQUIRED`` columns must be present; ``SAMPLE_COLUMNS`` are the typed per-sample columns and
``QUERY_COLUMNS`` the per-query ones; ``RESERVED`` names every column the readers convert
(anything else is metadata); ``QUERY_METADATA`` moves to the query table whenever it is constant
per query.
"""

from __future__ import annotations

from typing import Literal

Format = Literal["csv", "jsonl", "parquet"]


REQUIRED = ("query_id", "sample_idx")


SAMPLE_COLUMNS = (
    "query_id",
    "sample_idx",
    "model",
    "answer",
    "correct",
    "tokens",
    "score",
    "response",
)


QUERY_COLUMNS = ("query_id", "prompt", "gold")


RESERVED = (*SAMPLE_COLUMNS, "prompt", "gold", "dataset")


QUERY_METADATA = ("dataset", "level", "subject")
