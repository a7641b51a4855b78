"""Collect ``n`` samples per query from a backend into a durable, resumable sample log.

The log is the canonical long-format JSONL (one line per sample, see
:mod:`computealloc.data.samples`). Each finished query is appended as one write of all its ``n``
lines followed by ``fsync``, so a crash at any moment loses at most the queries in flight and
leaves at most one partial group at the end of the file; a rerun drops that tail, skips the
queries already complete and collects the rest.

Modules
-------
- :mod:`~computealloc.data.collect.queries`: query files (:func:`read_queries`, :class:`Query`,
  :class:`QueryFileError`) and the columns collect writes.
- :mod:`~computealloc.data.collect.log`: the log on disk: its rows, resuming after a crash (torn
  tails), durable appends, the final sort and the writer's lock (:class:`LogLockedError`).
- :mod:`~computealloc.data.collect.sampling`: the :func:`collect` driver, checkpoint probes
  (:class:`CheckpointProbes`) and the encoding of rows.
- :mod:`~computealloc.data.collect.entry`: :func:`run_collect` and :func:`run_collect_arms`, what
  ``computealloc collect`` runs.
"""

from __future__ import annotations

from computealloc.data.collect.entry import run_collect, run_collect_arms
from computealloc.data.collect.log import LogLockedError
from computealloc.data.collect.queries import OUTPUT_COLUMNS as OUTPUT_COLUMNS
from computealloc.data.collect.queries import Query, QueryFileError, read_queries
from computealloc.data.collect.sampling import (
    CheckpointProbes,
    CollectError,
    CollectProgress,
    CollectResult,
    collect,
)

__all__ = [
    "CheckpointProbes",
    "CollectError",
    "CollectProgress",
    "CollectResult",
    "LogLockedError",
    "Query",
    "QueryFileError",
    "collect",
    "read_queries",
    "run_collect",
    "run_collect_arms",
]
