"""Column validation and typing: each known column converted to its contract dtype.

Empty strings are nulls; ``tokens`` and ``score`` must be finite; ``correct`` accepts booleans,
``0``/``1`` and ``true``/``false``/``1``/``0`` in any case; ``sample_idx`` is a non-negative
int64. A value that does not convert raises :class:`~computealloc.data.samples.SampleLogError`
at its record, showing it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from computealloc.data.samples.errors import RecordOrigin, fail

_TRUE_WORDS = ("true", "1", "1.0")


_FALSE_WORDS = ("false", "0", "0.0")


_NAN_WORDS = ("nan", "+nan", "-nan")


def _is_scalar(value: object) -> bool:
    return value is None or value is pd.NA or isinstance(value, (str, int, float, np.generic))


def check_scalar(raw: pd.Series, field: str, origin: RecordOrigin, expected: str) -> None:
    """Reject lists and objects (possible in JSON and object-dtype frames)."""
    if raw.dtype == object:
        fail(~raw.map(_is_scalar).astype(bool), raw, origin, field, expected)


def as_text(
    raw: pd.Series, field: str, origin: RecordOrigin, expected: str = "a string"
) -> pd.Series:
    """Strings (numbers become their ``str``) with NA for null and for ``""``."""
    check_scalar(raw, field, origin, expected)
    text = raw.astype("str")
    return text.where(text != "")


def _as_query_id(raw: pd.Series, origin: RecordOrigin) -> pd.Series:
    expected = "a non-empty string or an integer"
    if raw.dtype.kind == "f":
        values = raw.to_numpy()
        fail(~np.isfinite(values) | (values % 1 != 0), raw, origin, "query_id", expected)
        raw = raw.astype(np.int64)
    elif raw.dtype.kind == "b":
        fail(np.ones(len(raw), dtype=bool), raw, origin, "query_id", expected)
    elif raw.dtype == object:
        ok = raw.map(lambda v: isinstance(v, (str, int, np.integer)) and not isinstance(v, bool))
        fail(~ok.astype(bool), raw, origin, "query_id", expected)
    text = as_text(raw, "query_id", origin, expected)
    fail(text.isna(), raw, origin, "query_id", expected)
    return text


def as_number(raw: pd.Series, field: str, origin: RecordOrigin, expected: str) -> pd.Series:
    """float64 with NaN for null; text that is not a number, NaN or inf is an error."""
    if raw.dtype.kind in "iuf":
        values = raw.astype(np.float64)
    else:
        text = as_text(raw, field, origin, expected)
        values = pd.to_numeric(text, errors="coerce").astype(np.float64)
        invalid = text.notna() & values.isna()
        nan_word = invalid & text.str.strip().str.lower().isin(_NAN_WORDS)
        fail(invalid & ~nan_word, raw, origin, field, expected)
        fail(nan_word, raw, origin, field, "a finite number or null")
    fail(np.isinf(values), raw, origin, field, "a finite number or null")
    return values


_INT64_MAX = np.iinfo(np.int64).max


def _as_sample_idx(raw: pd.Series, origin: RecordOrigin) -> pd.Series:
    """int64; negative, fractional and out-of-range (>= 2**63) values are errors, not wraps."""
    expected = "a non-negative integer"
    too_big = "a non-negative integer below 2**63 (int64)"
    if raw.dtype.kind == "u":
        fail(raw.to_numpy() > _INT64_MAX, raw, origin, "sample_idx", too_big)
    if raw.dtype.kind in "iu" and not raw.hasnans:
        values = raw.astype(np.int64)
        fail(values < 0, raw, origin, "sample_idx", expected)
        return values
    if raw.dtype == object:  # exact Python ints (JSON) beyond int64 never reach float64
        huge = raw.map(lambda v: isinstance(v, int) and not isinstance(v, bool) and v > _INT64_MAX)
        fail(huge.astype(bool), raw, origin, "sample_idx", too_big)
    numbers = as_number(raw, "sample_idx", origin, expected)
    fail(numbers.isna() | (numbers % 1 != 0) | (numbers < 0), raw, origin, "sample_idx", expected)
    fail(numbers >= 2.0**63, raw, origin, "sample_idx", too_big)
    return numbers.astype(np.int64)


def _as_tokens(raw: pd.Series, origin: RecordOrigin) -> pd.Series:
    values = as_number(raw, "tokens", origin, "a non-negative number or null")
    fail(values < 0, raw, origin, "tokens", "a non-negative number or null")
    return values


def _as_correct(raw: pd.Series, origin: RecordOrigin) -> pd.Series:
    expected = "true, false, 1, 0 or null"
    if raw.dtype.kind == "b" or isinstance(raw.dtype, pd.BooleanDtype):
        return raw.astype("boolean")
    if raw.dtype.kind in "iuf":
        fail(~(raw.isna() | raw.isin([0, 1])), raw, origin, "correct", expected)
        return raw.astype("boolean")
    text = as_text(raw, "correct", origin, expected)
    words = text.str.strip().str.lower()
    true, false = words.isin(_TRUE_WORDS), words.isin(_FALSE_WORDS)
    fail(text.notna() & ~true & ~false, raw, origin, "correct", expected)
    return true.astype("boolean").where(true | false, pd.NA)


#: The converter of each known column: raw column and origin in, typed column out.
CONVERTERS: dict[str, Callable[[pd.Series, RecordOrigin], pd.Series]] = {
    "query_id": _as_query_id,
    "sample_idx": _as_sample_idx,
    "answer": lambda s, o: as_text(s, "answer", o),
    "correct": _as_correct,
    "tokens": _as_tokens,
    "score": lambda s, o: as_number(s, "score", o, "a number or null"),
    "response": lambda s, o: as_text(s, "response", o),
    "prompt": lambda s, o: as_text(s, "prompt", o),
    "gold": lambda s, o: as_text(s, "gold", o),
    "dataset": lambda s, o: as_text(s, "dataset", o),
}


#: The dtype of each optional column when it is absent (filled with nulls).
FILL = {
    "answer": "str",
    "correct": "boolean",
    "tokens": "float64",
    "score": "float64",
    "response": "str",
    "prompt": "str",
    "gold": "str",
}
