"""Record-level validation: required columns, typed columns, run labels, uniqueness.

:func:`normalise` turns raw records into typed columns in contract order;
:func:`check_unique` and :func:`check_per_query` check the keys; :func:`grade_missing` grades
null ``correct`` against the query's gold.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from computealloc.data.samples.errors import RecordOrigin, show_value
from computealloc.data.samples.renaming import lookalike
from computealloc.data.samples.schema import REQUIRED, RESERVED
from computealloc.data.samples.values import CONVERTERS, FILL, as_text, check_scalar


def check_run_columns(run_columns: Sequence[str] | None, owner: str) -> None:
    """Raise ValueError (naming ``owner``) unless ``run_columns`` is None or a non-empty
    sequence of column names."""
    if run_columns is not None and (
        isinstance(run_columns, str)
        or not run_columns
        or not all(isinstance(c, str) for c in run_columns)
    ):
        raise ValueError(
            f"The 'run_columns' parameter of {owner} must be None or a non-empty sequence of "
            f"column names. Got {run_columns!r} instead."
        )


def _check_columns(raw: pd.DataFrame, origin: RecordOrigin) -> None:
    duplicated = raw.columns[raw.columns.duplicated()]
    if len(duplicated):
        raise origin.error(
            f"duplicate column name; expected unique column names, found {duplicated[0]!r} twice",
            field=str(duplicated[0]),
        )
    missing = [c for c in REQUIRED if c not in raw.columns]
    if missing:
        found = ", ".join(repr(str(c)) for c in raw.columns[:20])
        like = [str(c) for c in raw.columns if lookalike(str(c)) == missing[0]]
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


def normalise(
    raw: pd.DataFrame, origin: RecordOrigin, run_columns: Sequence[str] | None
) -> pd.DataFrame:
    """Typed columns in contract order, then the metadata columns as read."""
    _check_columns(raw, origin)
    raw = raw.reset_index(drop=True)
    columns: dict[str, pd.Series] = {}
    for name in ("query_id", "sample_idx"):
        columns[name] = CONVERTERS[name](raw[name], origin)
    if run_columns is not None:
        columns["model"] = _run_labels(raw, run_columns, origin)
    elif "model" in raw.columns:
        columns["model"] = as_text(raw["model"], "model", origin).fillna("default")
    else:
        columns["model"] = pd.Series("default", index=raw.index, dtype="str")
    for name, dtype in FILL.items():
        if name in raw.columns:
            columns[name] = CONVERTERS[name](raw[name], origin)
        else:
            columns[name] = pd.Series(np.nan, index=raw.index).astype(dtype)  # type: ignore[call-overload]
    if "dataset" in raw.columns:
        columns["dataset"] = CONVERTERS["dataset"](raw["dataset"], origin)
    for name in raw.columns:
        if name not in columns and name not in RESERVED:
            columns[name] = raw[name]
    return pd.DataFrame(columns)


def _run_labels(raw: pd.DataFrame, run_columns: Sequence[str], origin: RecordOrigin) -> pd.Series:
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
        check_scalar(keys[name], name, origin, "a string, number or boolean")
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


def _label_part(column: pd.Series, name: str, origin: RecordOrigin) -> pd.Series:
    if column.dtype.kind == "b" or isinstance(column.dtype, pd.BooleanDtype):
        flags = column.fillna(False).astype(bool)
        return pd.Series(name, index=column.index, dtype="str").where(flags)
    return as_text(column, name, origin)


def check_unique(frame: pd.DataFrame, origin: RecordOrigin) -> None:
    """Raise at the second record of a repeated (model, query_id, sample_idx), naming the first."""
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


def check_per_query(frame: pd.DataFrame, name: str, origin: RecordOrigin) -> None:
    """Raise at the first record whose non-null ``name`` differs from its query's first value."""
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
        f"query_id, found {show_value(values.iloc[row])} here and {show_value(first.iloc[row])} at "
        f"{origin.place(earlier)}",
        row=row,
        field=name,
    )


def grade_missing(frame: pd.DataFrame) -> pd.Series:
    """``correct`` with nulls graded against the query's gold (a null answer grades False)."""
    correct = frame["correct"].copy()
    gold = frame["gold"].groupby(frame["query_id"], sort=False).transform("first")
    todo = (correct.isna() & gold.notna()).to_numpy()
    if todo.any():
        from computealloc.data.grading import grade

        correct[todo] = grade(frame["answer"].to_numpy()[todo], gold.to_numpy()[todo])
    return correct
