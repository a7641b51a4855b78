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

Modules
-------
- :mod:`~computealloc.data.samples.log`: the :class:`SampleLog` class and building one from records.
- :mod:`~computealloc.data.samples.reading`: :func:`read_samples` and the record-level entry points
  other log kinds share (:func:`read_records`, :func:`validate_records`, ...).
- :mod:`~computealloc.data.samples.files`, :mod:`~computealloc.data.samples.csvfile`,
  :mod:`~computealloc.data.samples.jsonl`, :mod:`~computealloc.data.samples.parquet`: the file
  readers (format, gzip, UTF-8 and BOM handling, per-line JSON parsing).
- :mod:`~computealloc.data.samples.values`: column validation and typing.
- :mod:`~computealloc.data.samples.validation`: required columns, run labels and key checks.
- :mod:`~computealloc.data.samples.renaming`: column renaming and look-alike warnings.
- :mod:`~computealloc.data.samples.errors`: :class:`SampleLogError`, :class:`SampleLogWarning` and
  :class:`RecordOrigin`.
- :mod:`~computealloc.data.samples.schema`: the contract's column names and :data:`Format`.
"""

from __future__ import annotations

from computealloc.data.samples.errors import RecordOrigin as RecordOrigin
from computealloc.data.samples.errors import SampleLogError, SampleLogWarning
from computealloc.data.samples.files import decode_utf8
from computealloc.data.samples.log import SampleLog
from computealloc.data.samples.reading import fail_where as fail_where
from computealloc.data.samples.reading import number_column as number_column
from computealloc.data.samples.reading import read_records as read_records
from computealloc.data.samples.reading import read_samples
from computealloc.data.samples.reading import samples_from_records as samples_from_records
from computealloc.data.samples.reading import validate_records as validate_records
from computealloc.data.samples.schema import Format as Format

__all__ = ["SampleLog", "SampleLogError", "SampleLogWarning", "decode_utf8", "read_samples"]
