"""Column renaming (``columns={old: new}``, ``--map old=new``) and look-alike warnings.

A column that looks like a known one under another name (an alias such as ``is_correct``, a
case change or a typo) is kept as metadata and warned about with
:class:`~computealloc.data.samples.SampleLogWarning`.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Iterable, Mapping, Sequence

import pandas as pd

from computealloc.data.samples.errors import RecordOrigin, SampleLogWarning
from computealloc.data.samples.schema import QUERY_COLUMNS, REQUIRED, RESERVED, SAMPLE_COLUMNS


def rename_columns(
    raw: pd.DataFrame, columns: Mapping[str, str], origin: RecordOrigin
) -> pd.DataFrame:
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


_KNOWN = (*SAMPLE_COLUMNS, *QUERY_COLUMNS)


def lookalike(name: str) -> str | None:
    """The known column ``name`` probably means (alias, case or typo), or None."""
    key = name.strip().lower()
    if key in _ALIASES:
        return _ALIASES[key]
    close = difflib.get_close_matches(key, _KNOWN, n=1, cutoff=0.9)
    return close[0] if close and close[0] != name else None


def warn_lookalikes(
    names: Iterable[object], run_columns: Sequence[str], origin: RecordOrigin
) -> None:
    """Warn for each unknown column that looks like a known one the file lacks."""
    present = {str(c) for c in names}
    for name in sorted(present - set(RESERVED) - set(run_columns)):
        known = lookalike(name)
        if known is not None and known not in present and known not in REQUIRED:
            warnings.warn(
                f"{origin.path}: column {name!r} looks like {known!r} but is not read as it "
                f"(it is kept as metadata); if it holds the {known} values, rename it: "
                f"columns={{{name!r}: {known!r}}} (--map {name}={known} on the command line)",
                SampleLogWarning,
                stacklevel=4,
            )


def check_columns_map(columns: Mapping[str, str] | None, owner: str) -> None:
    """Raise ValueError (naming ``owner``) unless ``columns`` is None or a mapping of distinct
    non-empty names."""
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
