"""Final-answer extraction, normalisation and equivalence of LLM answers.

A raw response goes through :func:`extract_answer` (JSON ``"answer"`` field, last ``\\boxed{}``,
GSM8K ``####``, "the answer is ..." phrasing); answers are compared with :func:`is_equivalent`,
which decides cheaply where it can (canonical strings, numbers within a relative tolerance) and
asks `math-verify <https://github.com/huggingface/Math-Verify>`_ only where it cannot.
:func:`grade` applies it to a whole column, grading each distinct (answer, gold) pair once.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

__all__ = ["answer_keys", "extract_answer", "grade", "is_equivalent", "normalize"]

_REL_TOL = 1e-4
_VERIFY_TIMEOUT_S = 5
_CACHE_SIZE = 2**18


def _check_text(value: object, name: str, function: str, *, optional: bool = False) -> None:
    """Raise TypeError unless ``value`` is a str (or None when ``optional``)."""
    if isinstance(value, str) or (optional and value is None):
        return
    expected = "a str or None" if optional else "a str"
    raise TypeError(
        f"The '{name}' parameter of {function} must be {expected}. "
        f"Got {type(value).__name__} instead."
    )


# --- extraction -----------------------------------------------------------------------------

_BOXED_RE = re.compile(r"\\(?:boxed|fbox)(?![a-zA-Z])")
_BARE_BOXED_RE = re.compile(r"[^\s$]+")
_HASHES_NUMBER_RE = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?")
_PHRASE_RE = re.compile(r"(?:final answer|the answer)(?:\s+is|\s*:)+\s*", re.IGNORECASE)
_DOLLAR_SPAN_RE = re.compile(r"\$+([^$]+)\$+")
_SENTENCE_END_RE = re.compile(r"\.\s")
_SPACED_SIGN_RE = re.compile(r"^([+-])\s+(?=[\d.])")
_QUOTES = "\"'`\u2018\u2019\u201c\u201d"
_JSON_UNESCAPE_RE = re.compile(r'\\(["\\/])')
_JSON_ANSWER_RE = re.compile(
    r'"answer"\s*:\s*(?:"((?:[^"\\]|\\.)*)"|([^",}\s][^,}\s]*))', re.DOTALL
)


def _balanced_content(text: str, start: int) -> str | None:
    """Content between ``text[start] == "{"`` and its matching ``}``; None when unbalanced.

    Escaped braces (``\\{``, ``\\}``) do not count.
    """
    depth = 0
    i = start
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i]
        i += 1
    return None


def _boxed_at(text: str, end: int) -> str | None:
    """Argument of the ``\\boxed`` command that ends at ``end``: ``{...}`` or a bare token."""
    rest = len(text) - len(text[end:].lstrip())
    if rest < len(text) and text[rest] == "{":
        return _balanced_content(text, rest)
    bare = _BARE_BOXED_RE.match(text, rest)
    return bare.group(0) if bare else None


def _last_boxed(text: str) -> str | None:
    """Content of the last complete, non-empty ``\\boxed{...}`` / ``\\fbox{...}``."""
    for match in reversed(list(_BOXED_RE.finditer(text))):
        content = _boxed_at(text, match.end())
        if content and content.strip():
            return content.strip()
    return None


def _after_hashes(text: str) -> str | None:
    """GSM8K style: the number after the last ``####`` (commas removed), else that line."""
    index = text.rfind("####")
    if index < 0:
        return None
    line = text[index + 4 :].strip().split("\n", 1)[0].replace("$", "")
    number = _HASHES_NUMBER_RE.search(line)
    if number:
        return number.group(0).replace(",", "")
    return line.strip() or None


def _after_phrase(text: str) -> str | None:
    """The answer after the last "the answer is" / "final answer:" phrase."""
    matches = list(_PHRASE_RE.finditer(text))
    if not matches:
        return None
    rest = text[matches[-1].end() :].replace("**", "").strip()
    math = _DOLLAR_SPAN_RE.match(rest)
    if math:
        return math.group(1).strip() or None
    sentence = _SENTENCE_END_RE.split(rest.split("\n", 1)[0], maxsplit=1)[0]
    answer = sentence.strip().rstrip(".,;:!?" + _QUOTES + " ").lstrip(_QUOTES + " ")
    return _SPACED_SIGN_RE.sub(r"\1", answer) or None


def _json_answer(text: str) -> str | None:
    """ZeroEval style: the value of the last ``"answer"`` key of a JSON object in ``text``."""
    matches = _JSON_ANSWER_RE.findall(text)
    if not matches:
        return None
    quoted, bare = matches[-1]
    value = _JSON_UNESCAPE_RE.sub(r"\1", quoted) if quoted else bare
    if bare == "null" or not value.strip():
        return None
    return _last_boxed(value) or value.strip()


_EXTRACTORS: tuple[Callable[[str], str | None], ...] = (
    _json_answer,
    _last_boxed,
    _after_hashes,
    _after_phrase,
)


def extract_answer(text: str | None) -> str | None:
    r"""The final answer of a raw LLM response.

    Tried in this order, the first that finds something wins:

    1. the value of the last ``"answer"`` key of a JSON object (ZeroEval's format:
       ``{"reasoning": ..., "answer": ...}``, possibly in a code fence and followed by prose);
       only ``\"``, ``\\`` and ``\/`` are unescaped, so LaTeX that the model did not escape
       (``\frac``, ``\(``) stays as written, and a ``\boxed{}`` inside it is unwrapped;
    2. the content of the last ``\boxed{...}`` / ``\fbox{...}``, braces balanced (nesting and
       escaped ``\{``, ``\}`` are handled);
    3. the number after the last GSM8K ``####`` marker, thousands commas removed;
    4. the text after the last "the answer is" / "final answer is" / "final answer:", up to the
       end of the sentence, without ``$``, bold ``**`` markers, surrounding quotes, trailing
       punctuation (``"N.'"`` gives ``N``) or a space after a sign (``"- 4"`` gives ``-4``).

    Parameters
    ----------
    text : str or None
        The raw response.

    Returns
    -------
    answer : str or None
        The extracted answer (not yet normalised, see :func:`normalize`); None when ``text`` is
        None or holds no recognisable final answer.

    Examples
    --------
    >>> extract_answer(r"so $x = \boxed{\frac{1}{\sqrt{2}}}$.")
    '\\frac{1}{\\sqrt{2}}'
    >>> extract_answer("She makes 9 * 2 = 18 dollars.\n#### 1,018")
    '1018'
    >>> extract_answer('{"reasoning": "...", "answer": "42"}')
    '42'
    >>> extract_answer("I do not know.") is None
    True
    """
    _check_text(text, "text", "extract_answer", optional=True)
    if text is None:
        return None
    for extractor in _EXTRACTORS:
        answer = extractor(text)
        if answer:
            return answer
    return None


# --- normalisation --------------------------------------------------------------------------

_TEXT_UNIT_RE = re.compile(r"(?<=\S)\s*\\(?:text|mbox|mathrm)\{\s+[^{}]*\}$")
_TEXT_RE = re.compile(r"\\(?:text|textbf|textit|textrm|mathrm|mathbf|mbox)\s*\{([^{}]*)\}")
_LEFT_RIGHT_RE = re.compile(r"\\(?:left|right)(?![a-zA-Z])")
_SPACE_RE = re.compile(r"\s+")
_VARIABLE_RE = re.compile(r"^[a-zA-Z] ?=(?!=) ?")
_CHOICE_RE = re.compile(r"^\(? ?([A-Za-z]) ?\)$")
_DATE_RE = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{2,4})$")
_THOUSANDS_RE = re.compile(r"^[+-]?\d{1,3}(?:,\d{3})+(?:\.\d*)?$")
_INTEGER_RE = re.compile(r"^[+-]?\d+$")
_DECIMAL_RE = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)$")
_FRACTION_RE = re.compile(r"^([+-]?)(?:(\d+)/(\d+)|\\frac\{(\d+)\}\{(\d+)\}|\\frac(\d)(\d))$")
_REPLACEMENTS = (
    ("\\dfrac", "\\frac"),
    ("\\tfrac", "\\frac"),
    ("\\displaystyle", ""),
    ("^{\\circ}", ""),
    ("^\\circ", ""),
    ("\\circ", ""),
    ("°", ""),
    ("\\%", ""),
    ("%", ""),
    ("{,}", ""),
    ("\\!", ""),
    ("\\,", ""),
    ("\\;", " "),
    ("\\:", " "),
    ("\\ ", " "),
    ("~", " "),
)
_DELIMITERS = (("\\(", "\\)"), ("\\[", "\\]"))


def _space(match: re.Match[str]) -> str:
    """One space for a whitespace run between two alphanumerics ("12 or 13"), else none."""
    text, start, end = match.string, match.start(), match.end()
    between = start > 0 and end < len(text) and text[start - 1].isalnum() and text[end].isalnum()
    return " " if between else ""


def _strip_delimiters(text: str) -> str:
    """Remove the ``\\( \\)`` / ``\\[ \\]`` pairs around the whole answer."""
    for left, right in _DELIMITERS:
        if text.startswith(left) and text.endswith(right):
            return _strip_delimiters(text[len(left) : -len(right)].strip())
    return text


def _unwrap_text(text: str) -> str:
    """``\\text{X}`` -> ``X`` (also ``\\mathrm``, ``\\textbf``, ``\\mbox``), nested ones too."""
    unwrapped = _TEXT_RE.sub(r"\1", text)
    return text if unwrapped == text else _unwrap_text(unwrapped)


def _canonical_number(text: str) -> str:
    """Plain decimals printed canonically ("1,000.50" -> "1000.5"); other text unchanged."""
    if _THOUSANDS_RE.match(text):
        text = text.replace(",", "")
    if not _DECIMAL_RE.match(text):
        return text
    value = Decimal(text)
    return "0" if value == 0 else format(value.normalize(), "f")


def _canonical_date(text: str) -> str:
    """``M/D/YYYY`` dates with zero-padded month and day ("5/1/2021" -> "05/01/2021")."""
    date = _DATE_RE.match(text)
    if not date:
        return text
    month, day, year = date.groups()
    return f"{int(month):02d}/{int(day):02d}/{year}"


def _strip_wrappers(text: str) -> str:
    """Unwrap ``\\boxed{}``, ``$``, delimiters and ``\\text{}``; drop a final ``\\text{ unit}``."""
    text = (_last_boxed(text) or text).replace("\\$", "").replace("$", "")
    text = _TEXT_UNIT_RE.sub("", _strip_delimiters(text.strip().rstrip(". ")))
    return _unwrap_text(text)


def _prepare(answer: str) -> str:
    """:func:`normalize` up to the whitespace, of which one space per run is kept.

    math-verify reads these spaces ("2, -1" is a list, "2,-1" parses as 2), so it gets this form.
    """
    text = _strip_wrappers(answer)
    text = _LEFT_RIGHT_RE.sub("", text)
    for old, new in _REPLACEMENTS:
        text = text.replace(old, new)
    text = _SPACE_RE.sub(" ", text).strip().rstrip(". ")
    variable = _VARIABLE_RE.match(text)
    if variable and text.count("=") == 1:
        text = text[variable.end() :]
    choice = _CHOICE_RE.match(text)
    if choice:
        return choice.group(1)
    return _canonical_number(_canonical_date(text))


def normalize(answer: str) -> str:
    r"""A cheap canonical form of an answer, for exact comparison.

    Applied in order: unwrap ``\boxed{}`` and ``\( \)`` / ``\[ \]``; drop a trailing unit
    ``\text{ cm}`` and unwrap ``\text{...}`` (also ``\mathrm``, ``\textbf``, ``\mbox``); remove
    ``$``, ``\left``/``\right``, ``\displaystyle``, degree and percent signs, ``{,}`` and the
    spacing commands ``\! \, \; \:``; ``\dfrac``/``\tfrac`` -> ``\frac``; drop whitespace,
    except that a run between two letters or digits becomes one space ("12 or 13", "\pi r");
    strip trailing periods, a leading ``x =`` and the parentheses of a choice letter
    ("(A)" -> "A"); zero-pad ``M/D/YYYY`` dates; print plain numbers canonically (thousands
    commas removed, no trailing zeros: "1,000.0" -> "1000").

    Parameters
    ----------
    answer : str
        An extracted answer or a gold answer.

    Returns
    -------
    normalized : str

    Examples
    --------
    >>> normalize(r"$\dfrac{1}{2}$")
    '\\frac{1}{2}'
    >>> normalize("1,000.0"), normalize("18.")
    ('1000', '18')
    >>> normalize(r"90^\circ"), normalize("(B)")
    ('90', 'B')
    """
    _check_text(answer, "answer", "normalize")
    return _SPACE_RE.sub(_space, _prepare(answer))


# --- equivalence ----------------------------------------------------------------------------


def _to_number(text: str) -> float | None:
    """Value of a normalised plain decimal or integer fraction; None for anything else."""
    if _DECIMAL_RE.match(text):
        return float(text)
    fraction = _FRACTION_RE.match(text)
    if not fraction:
        return None
    sign, *parts = fraction.groups()
    numerator, denominator = (int(p) for p in parts if p is not None)
    if denominator == 0:
        return None
    return (-1.0 if sign == "-" else 1.0) * numerator / denominator


def _math_verify(answer: str, gold: str) -> bool:
    """math-verify's verdict; any error or timeout counts as not equivalent.

    math-verify's timeouts use ``signal.alarm``, which only works in the main thread, so other
    threads call it without a timeout.
    """
    import math_verify
    from math_verify.errors import TimeoutException

    on_main = threading.current_thread() is threading.main_thread()
    timeout = _VERIFY_TIMEOUT_S if on_main else None
    try:
        target = math_verify.parse(f"${gold}$", parsing_timeout=timeout)
        return any(
            math_verify.verify(
                target,
                math_verify.parse(candidate, parsing_timeout=timeout),
                timeout_seconds=timeout,
            )
            for candidate in (f"${answer}$", answer)
        )
    except (Exception, TimeoutException):
        return False


def _plain_verdict(answer: str, gold: str) -> bool | None:
    """The verdict on two prepared answers without math-verify; None where it cannot decide."""
    if not answer or not gold:
        return False
    if _SPACE_RE.sub("", answer) == _SPACE_RE.sub("", gold):
        return True
    if _DATE_RE.match(answer) or _DATE_RE.match(gold):
        return False
    answer_value, gold_value = _to_number(answer), _to_number(gold)
    if answer_value is None or gold_value is None:
        return None
    if _INTEGER_RE.match(answer) and _INTEGER_RE.match(gold):
        return False
    return abs(answer_value - gold_value) <= _REL_TOL * max(1.0, abs(gold_value))


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _equivalent(answer: str, gold: str) -> bool:
    """Equivalence of two prepared answers (cached): fast path, then math-verify."""
    verdict = _plain_verdict(answer, gold)
    return _math_verify(answer, gold) if verdict is None else verdict


def is_equivalent(answer: str | None, gold: str | None) -> bool:
    r"""Whether an extracted answer is equivalent to the gold answer.

    Both are normalised (:func:`normalize`). Decided without math-verify when the normalised
    strings are equal (spaces ignored), when either is a ``MM/DD/YYYY`` date (then only equal
    strings match) or when both are numbers (plain decimals or integer fractions such as ``3/4``
    or ``\frac{3}{4}``): two integers must be equal, other numbers within a relative tolerance,
    ``|answer - gold| <= 1e-4 * max(1, |gold|)``. Otherwise math-verify decides:
    ``verify(parse("$" + gold + "$"), parse(c))`` for ``c`` in ``"$" + answer + "$"`` and
    ``answer``, true if any is.

    Parameters
    ----------
    answer : str or None
        The extracted answer; None (no answer found) is never equivalent.
    gold : str or None
        The reference answer; None is never equivalent.

    Returns
    -------
    equivalent : bool

    Notes
    -----
    Verdicts are cached (LRU, :math:`2^{18}` entries) on the normalised pair (whitespace runs
    kept as one space, which math-verify reads), so a repeated pair costs a dictionary lookup.
    math-verify errors and timeouts (5 s) count as not equivalent.
    Outside the main thread math-verify runs without a timeout, because its timeout relies on
    ``signal.alarm``; a pathological expression can then take long.

    Examples
    --------
    >>> is_equivalent("0.75", "3/4"), is_equivalent("1,000", "1000.0")
    (True, True)
    >>> is_equivalent(None, "5")
    False
    """
    _check_text(answer, "answer", "is_equivalent", optional=True)
    _check_text(gold, "gold", "is_equivalent", optional=True)
    if answer is None or gold is None:
        return False
    return _equivalent(_prepare(answer), _prepare(gold))


# --- columns --------------------------------------------------------------------------------


def _as_text(value: Any) -> str:
    """A column value as a string (numbers read from a table become "18.0", "3")."""
    return value if isinstance(value, str) else str(value)


def _grade_iv(answers: ArrayLike, golds: ArrayLike) -> tuple[NDArray[Any], NDArray[Any]]:
    """Validate ``grade``'s input: two 1-D object arrays of one length, no missing gold."""
    arrays = []
    for name, values in (("answers", answers), ("golds", golds)):
        array = np.asarray(values, dtype=object)
        if array.ndim != 1:
            raise ValueError(f"`{name}` must be one-dimensional. Got shape {array.shape} instead.")
        arrays.append(array)
    answer_array, gold_array = arrays
    if len(answer_array) != len(gold_array):
        raise ValueError(
            f"`answers` and `golds` must have the same length. "
            f"Got {len(answer_array)} and {len(gold_array)}."
        )
    missing = np.flatnonzero(pd.isna(gold_array))
    if missing.size:
        raise ValueError(
            f"`golds` has a missing value at position {int(missing[0])}. "
            "Grade only the rows that have a gold answer."
        )
    return answer_array, gold_array


def grade(answers: ArrayLike, golds: ArrayLike) -> NDArray[np.bool_]:
    """Grade a column of extracted answers against their gold answers.

    Each distinct (answer, gold) pair is graded once with :func:`is_equivalent` and the verdict
    is broadcast back to its rows.

    Parameters
    ----------
    answers : array-like of shape (n_rows,)
        Extracted answers; None, NaN or ``pd.NA`` (no answer) grade as False. Non-string values
        (numbers read from a CSV) are compared through ``str``.
    golds : array-like of shape (n_rows,)
        Gold answers, one per row; none may be missing.

    Returns
    -------
    correct : ndarray of shape (n_rows,), dtype bool

    Raises
    ------
    ValueError
        If an input is not one-dimensional, the lengths differ, or a gold is missing.

    Examples
    --------
    >>> grade(["18", None, "1/2", "18.0"], ["18", "18", "0.5", "18"]).tolist()
    [True, False, True, True]
    """
    answer_array, gold_array = _grade_iv(answers, golds)
    answer_codes, answer_uniques = pd.factorize(answer_array)
    gold_codes, gold_uniques = pd.factorize(gold_array)
    n_golds = len(gold_uniques)
    has_answer = answer_codes >= 0
    pair_codes = answer_codes[has_answer].astype(np.int64) * n_golds + gold_codes[has_answer]
    unique_pairs, inverse = np.unique(pair_codes, return_inverse=True)
    verdicts = np.fromiter(
        (
            is_equivalent(
                _as_text(answer_uniques[code // n_golds]), _as_text(gold_uniques[code % n_golds])
            )
            for code in unique_pairs.tolist()
        ),
        dtype=np.bool_,
        count=len(unique_pairs),
    )
    correct = np.zeros(len(answer_array), dtype=np.bool_)
    correct[has_answer] = verdicts[inverse]
    return correct


def _number_key(prepared: str) -> str | None:
    """A non-integer number rounded at the grader's tolerance (``3.99999`` -> ``4``); else None."""
    value = None if _INTEGER_RE.match(prepared) else _to_number(prepared)
    if value is None or not np.isfinite(value):
        return None
    quantum = 10.0 ** np.ceil(np.log10(_REL_TOL * max(1.0, abs(value))))
    return _canonical_number(f"{round(value / quantum) * quantum:.12g}")


def _answer_key(answer: str, gold: str | None) -> str:
    """The cluster key of one answer: the gold's form when plainly equal to it, else its own."""
    prepared = _prepare(answer)
    if gold is not None and _plain_verdict(prepared, _prepare(gold)):
        return normalize(gold)
    return _number_key(prepared) or _SPACE_RE.sub(_space, prepared)


def answer_keys(answers: ArrayLike, golds: ArrayLike) -> NDArray[np.object_]:
    r"""The answer each sample gives, as a key: equal keys are one answer in a vote.

    The key is the answer's :func:`normalize` form, except that an answer the grader finds
    equal to its query's gold without math-verify (equal normalised strings, or numbers within
    the relative tolerance of :func:`is_equivalent`) takes the gold's form, and that other
    non-integer numbers (decimals, fractions) are rounded at that tolerance (``4.0`` and
    ``3.999999999999`` are one answer, as are ``0.75`` and ``3/4``). Two different
    correct answers therefore stay two answers unless both equal the gold (Game of 24: every
    valid expression is its own answer); math-verify is not asked, because it calls any
    expression equal to its value (``(4+8)*(6-4)`` equals ``24``).

    Parameters
    ----------
    answers : array-like of shape (n_rows,)
        Extracted answers; None, NaN or ``pd.NA`` give a None key.
    golds : array-like of shape (n_rows,)
        Each row's gold answer; None, NaN or ``pd.NA`` where unknown.

    Returns
    -------
    keys : ndarray of shape (n_rows,), dtype object
        A str per answered row, None elsewhere.

    Examples
    --------
    >>> answer_keys(["3.999999999999", "4", "(2+2)", "5/1/2021"], ["4", "4", "4", None]).tolist()
    ['4', '4', '(2+2)', '05/01/2021']
    """
    answer_array = np.asarray(answers, dtype=object).reshape(-1)
    gold_array = np.asarray(golds, dtype=object).reshape(-1)
    if answer_array.shape != gold_array.shape:
        raise ValueError(
            f"`answers` and `golds` must have the same length. "
            f"Got {len(answer_array)} and {len(gold_array)}."
        )
    answer_codes, answer_uniques = pd.factorize(answer_array)
    gold_codes, gold_uniques = pd.factorize(gold_array)
    n_golds = len(gold_uniques) + 1
    has_answer = answer_codes >= 0
    pair_codes = answer_codes[has_answer].astype(np.int64) * n_golds + gold_codes[has_answer] + 1
    unique_pairs, inverse = np.unique(pair_codes, return_inverse=True)
    golds_text = [None, *(_as_text(g) for g in gold_uniques)]
    keys = np.array(
        [
            _answer_key(_as_text(answer_uniques[c // n_golds]), golds_text[c % n_golds])
            for c in unique_pairs.tolist()
        ]
        + [None],
        dtype=object,
    )[:-1]
    out = np.full(len(answer_array), None, dtype=object)
    out[has_answer] = keys[inverse]
    return out
