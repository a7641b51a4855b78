"""Cheap per-query features, computed before any compute is spent on the query.

Three families, each a function returning a :class:`pandas.DataFrame` with one row per query:

- :func:`prompt_features`: lexical and structural features of the prompt text (free);
- :func:`probe_features`: difficulty probes from the first ``m`` sampled responses of each
  query (answer entropy, agreement, ...); these samples cost compute and are charged to the
  budget by the evaluation (once, when they are reused in the vote);
- :func:`embedding_features`: sentence embeddings of the prompt (optional extra
  ``computealloc[embeddings]``).

:func:`build_features` concatenates them for a :class:`~computealloc.data.samples.SampleLog` and
returns a :class:`FeatureMatrix` that carries the probe cost per query.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from computealloc.data.samples import SampleLog

__all__ = [
    "PROBE_FEATURES",
    "PROMPT_FEATURES",
    "FeatureMatrix",
    "build_features",
    "embedding_features",
    "probe_features",
    "probe_mask",
    "prompt_features",
]

#: Prompt feature columns and what each one counts (all computed on the raw prompt text;
#: a missing prompt counts as the empty string).
PROMPT_FEATURES: dict[str, str] = {
    "n_chars": "characters",
    "n_words": "words (runs of letters, with inner apostrophes)",
    "avg_word_len": "mean characters per word (0 without words)",
    "n_sentences": "sentence ends: runs of '.', '!' or '?' followed by a space or the end",
    "n_lines": "lines (newlines + 1)",
    "n_digits": "digit characters",
    "n_numbers": "numbers (digit runs with thousands commas and a decimal part)",
    "n_distinct_numbers": "distinct numbers (after removing thousands commas)",
    "n_decimals": "numbers with a decimal part",
    "max_number_log10": "log10(1 + the largest number in the prompt; digits of any script), 0 "
    "without numbers, at most 308.25 (the largest float)",
    "n_percent": "'%' signs and the word 'percent'",
    "n_dollar": "'$' signs (money in word problems, math mode in LaTeX)",
    "n_latex_commands": "LaTeX commands: a backslash followed by letters",
    "n_fractions": "'\\frac' commands and numeric fractions 'a/b'",
    "n_operators": "operator characters + * / = ^ < > and '-' unless between two letters",
    "n_capitalized": "capitalised words after the first word of a sentence (names, entities)",
    "n_conditions": "the words 'if', 'each', 'every', 'per' (case-insensitive)",
    "n_comparisons": "the phrases 'more than', 'less than', 'fewer than', 'times', 'twice', "
    "'half', 'double', 'triple' (case-insensitive)",
    "n_time_units": "time units: second(s), minute(s), hour(s), day(s), week(s), month(s), year(s)",
    "has_question_mark": "1 if the prompt contains '?'",
    "q_how_many": "1 if it asks 'how many' or 'how much'",
    "q_what": "1 if it contains the word 'what' or 'which'",
    "q_find": "1 if it contains 'find', 'determine' or 'solve'",
    "q_compute": "1 if it contains 'compute', 'calculate', 'evaluate' or 'simplify'",
    "q_true_false": "1 if it asks for 'true or false', 'yes or no' or 'true/false'",
    "q_multiple_choice": "1 if it lists options '(A)' .. '(E)' or 'A)' / 'A.' at a line start",
    "q_prove": "1 if it contains 'prove' or 'show that'",
}

#: Probe feature columns (``m`` probe samples per query); length columns appear only when the
#: log records that length.
PROBE_FEATURES: dict[str, str] = {
    "probe_entropy": "Shannon entropy (nats) of the probe answers; a probe without an answer "
    "counts as an answer of its own",
    "probe_agreement": "share of probes that give the plurality (non-null) answer",
    "probe_n_distinct": "distinct non-null answers among the probes",
    "probe_no_answer": "share of probes without an extracted answer",
    "probe_nonint": "share of probes whose answer is a number with a nonzero fractional part",
    "probe_answer_log10": "mean log10(1 + |answer|) over numeric probe answers, 0 without any",
    "probe_mean_tokens": "mean output tokens of the probes (only when `tokens` is known)",
    "probe_mean_chars": "mean output characters of the probes, from `response` or a `chars` "
    "column (only when known)",
    "probe_mean_score": "mean verifier score of the probes (only when `score` is known)",
}

_NUMBER = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?")
_LETTER = re.compile(r"[A-Za-z']")
_NEWLINE = re.compile("\n")

#: Prompt feature columns that are plain match counts of a pattern.
_COUNTS: dict[str, re.Pattern[str]] = {
    "n_words": re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?"),
    "n_sentences": re.compile(r"[.!?]+(?=\s|$)"),
    "n_digits": re.compile(r"\d"),
    "n_numbers": _NUMBER,
    "n_decimals": re.compile(r"(?<![\w.])\d[\d,]*\.\d+"),
    "n_percent": re.compile(r"(?i)%|\bpercent\b"),
    "n_dollar": re.compile(r"\$"),
    "n_latex_commands": re.compile(r"\\[A-Za-z]+"),
    "n_fractions": re.compile(r"\\[dt]?frac\b|\b\d+\s*/\s*\d+\b"),
    "n_operators": re.compile(r"[+*/=^<>]|(?<![A-Za-z])-|-(?![A-Za-z])"),
    "n_capitalized": re.compile(r"(?<=[a-z,;:] )[A-Z][a-z]+"),
    "n_conditions": re.compile(r"(?i)\b(?:if|each|every|per)\b"),
    "n_comparisons": re.compile(
        r"(?i)\b(?:more than|less than|fewer than|times|twice|half|double|triple)\b"
    ),
    "n_time_units": re.compile(r"(?i)\b(?:second|minute|hour|day|week|month|year)s?\b"),
}

#: Prompt feature columns that flag whether a pattern occurs (0 or 1).
_FLAGS: dict[str, re.Pattern[str]] = {
    "has_question_mark": re.compile(r"\?"),
    "q_how_many": re.compile(r"(?i)\bhow (?:many|much)\b"),
    "q_what": re.compile(r"(?i)\b(?:what|which)\b"),
    "q_find": re.compile(r"(?i)\b(?:find|determine|solve)\b"),
    "q_compute": re.compile(r"(?i)\b(?:compute|calculate|evaluate|simplify)\b"),
    "q_true_false": re.compile(r"(?i)\b(?:true or false|yes or no|true/false)\b"),
    "q_multiple_choice": re.compile(r"(?m)\([A-E]\)|^\s*[A-E][.)]\s"),
    "q_prove": re.compile(r"(?i)\b(?:prove|show that)\b"),
}


@dataclass(frozen=True)
class FeatureMatrix:
    """Features of a set of queries and the compute spent to compute them.

    Attributes
    ----------
    X : DataFrame of shape (n_queries, n_features)
        One row per query, indexed by ``query_id``; float64 columns.
    probe_samples : ndarray of shape (n_queries,), int
        Probe samples drawn per query (0 without probes). They cost compute: an evaluation
        charges them to the budget, once if the vote reuses them.
    """

    X: pd.DataFrame
    probe_samples: NDArray[np.int64]

    @property
    def probe_m(self) -> int:
        """The largest number of probe samples of any query."""
        return int(self.probe_samples.max(initial=0))


def _as_list(prompts: Sequence[str | None] | pd.Series) -> list[str]:
    values = list(prompts) if not isinstance(prompts, pd.Series) else prompts.tolist()
    bad = [v for v in values if v is not None and not pd.isna(v) and not isinstance(v, str)]
    if bad:
        raise TypeError(
            f"`prompts` must hold strings or None. Got {type(bad[0]).__name__} ({bad[0]!r})."
        )
    return [v if isinstance(v, str) else "" for v in values]


def _to_float(key: str) -> float:
    # a comma-free number match; any script's decimal digits (Bengali, Arabic-Indic, ...) parse,
    # a non-ASCII decimal separator ("٤٫٥") does not (NaN)
    try:
        return float(key)
    except ValueError:
        return np.nan


def _largest(values: list[float]) -> float:
    # the "largest" raw value: -inf without a number that parses
    finite = [v for v in values if not np.isnan(v)]
    return max(finite) if finite else -np.inf


def _list_raw(texts: list[str]) -> dict[str, NDArray[np.float64]]:
    """Raw counts of the prompts with the compiled ``re`` patterns.

    A plain loop over the prompts: pandas' ``.str`` methods run the same regexes with ~6 ms of
    per-call overhead (one serving request) and were slower at every batch size measured.
    """
    raw = {
        name: np.array([len(pat.findall(t)) for t in texts], dtype=np.float64)
        for name, pat in _COUNTS.items()
    }
    raw.update(
        (name, np.array([pat.search(t) is not None for t in texts], dtype=np.float64))
        for name, pat in _FLAGS.items()
    )
    raw["n_chars"] = np.array([len(t) for t in texts], dtype=np.float64)
    raw["letters"] = np.array([len(_LETTER.findall(t)) for t in texts], dtype=np.float64)
    raw["newlines"] = np.array([t.count(_NEWLINE.pattern) for t in texts], dtype=np.float64)
    keys = [[k.replace(",", "") for k in _NUMBER.findall(t)] for t in texts]
    raw["n_distinct_numbers"] = np.array([len(set(k)) for k in keys], dtype=np.float64)
    raw["largest"] = np.array([_largest([_to_float(x) for x in k]) for k in keys])
    return raw


def prompt_features(prompts: Sequence[str | None] | pd.Series) -> pd.DataFrame:
    """Lexical and structural features of each prompt (no model call).

    Parameters
    ----------
    prompts : sequence of str or None, length n_queries
        Prompt texts; ``None`` (or NA) counts as the empty prompt.

    Returns
    -------
    DataFrame of shape (n_queries, 27)
        Float64 columns in the order of :data:`PROMPT_FEATURES`, which documents each one;
        a positional index.

    Examples
    --------
    >>> f = prompt_features(["How many apples are 3 + 4?"])
    >>> f.loc[0, ["n_numbers", "q_how_many", "n_operators"]].tolist()
    [2.0, 1.0, 1.0]
    """
    raw = _list_raw(_as_list(prompts))
    n_words = raw["n_words"]
    largest = raw["largest"]
    has_number = ~np.isneginf(largest)
    cols = {name: raw[name] for name in _COUNTS}
    cols.update({name: np.minimum(raw[name], 1.0) for name in _FLAGS})
    cols["n_chars"] = raw["n_chars"]
    cols["avg_word_len"] = np.divide(
        raw["letters"], n_words, out=np.zeros_like(n_words), where=n_words > 0
    )
    cols["n_lines"] = raw["newlines"] + (raw["n_chars"] > 0)
    cols["n_distinct_numbers"] = raw["n_distinct_numbers"]
    top = np.minimum(largest, np.finfo(np.float64).max)  # a 400-digit number is not inf
    cols["max_number_log10"] = np.log10(1.0 + top, out=np.zeros_like(top), where=has_number)
    return pd.DataFrame({name: cols[name] for name in PROMPT_FEATURES})


def probe_mask(
    log: SampleLog,
    m: int,
    *,
    eligible: ArrayLike | None = None,
    model: str | None = None,
    random_state: int | np.random.Generator | None = 0,
) -> NDArray[np.bool_]:
    """Select the probe samples: the first ``m`` eligible samples of each query, seeded order.

    Parameters
    ----------
    log : SampleLog
        The sample log.
    m : int
        Probe samples per query (>= 1). A query with fewer eligible samples uses all it has.
    eligible : array-like of bool, shape (n_samples,), optional
        Which rows of ``log.samples`` may serve as probes (e.g. half A of the held-out-samples
        protocol); all rows of ``model`` by default.
    model : str, optional
        The model that answers the probes; required when the log holds several models.
    random_state : int, Generator or None
        Seed of the per-query random order of the samples.

    Returns
    -------
    ndarray of shape (n_samples,), bool
        True for the rows of ``log.samples`` that are probes.
    """
    samples = log.samples
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 1:
        raise ValueError(f"The 'm' parameter of probe_mask must be an int >= 1. Got {m!r} instead.")
    keep = _eligible_rows(log, eligible, model)
    rng = np.random.default_rng(random_state)
    key = rng.random(len(samples))
    order = pd.DataFrame(
        {"q": samples["query_id"].to_numpy(dtype=object), "key": np.where(keep, key, np.inf)}
    )
    rank = order.groupby("q", sort=False)["key"].rank(method="first").to_numpy()
    return keep & (rank <= m)


def _eligible_rows(
    log: SampleLog, eligible: ArrayLike | None, model: str | None
) -> NDArray[np.bool_]:
    samples = log.samples
    models = log.models
    if model is None and len(models) > 1:
        raise ValueError(
            f"The log holds {len(models)} models {models}; pass `model` to choose the one that "
            "answers the probes."
        )
    if model is not None and model not in models:
        raise ValueError(f"`model` must be one of {models}. Got {model!r} instead.")
    keep = np.ones(len(samples), dtype=bool)
    if model is not None:
        keep &= samples["model"].to_numpy(dtype=object) == model
    if eligible is not None:
        mask = np.asarray(eligible)
        if mask.dtype != bool or mask.shape != (len(samples),):
            raise ValueError(
                f"`eligible` must be a boolean array of shape ({len(samples)},) (one entry per "
                f"sample). Got dtype {mask.dtype} and shape {mask.shape}."
            )
        keep &= mask
    return keep


def _entropy_and_agreement(
    qid: NDArray[np.object_], answer: pd.Series, queries: pd.Index
) -> pd.DataFrame:
    has = answer.notna().to_numpy()
    text = np.char.add("v:", answer.fillna("").to_numpy(dtype=str))
    label = np.where(has, text, np.char.add("none:", np.arange(len(answer)).astype(str)))
    frame = pd.DataFrame({"q": qid, "a": label, "real": has})
    counts = frame.value_counts().rename("c").reset_index()
    n = counts.groupby("q")["c"].sum()
    share = counts["c"].to_numpy(np.float64) / n.loc[counts["q"]].to_numpy(np.float64)
    entropy = pd.Series(-share * np.log(share)).groupby(counts["q"].to_numpy()).sum()
    real = counts[counts["real"]].groupby("q")["c"]
    top = real.max().reindex(queries, fill_value=0).to_numpy(np.float64)
    drawn = n.reindex(queries, fill_value=0).to_numpy(np.float64)
    return pd.DataFrame(
        {
            "probe_entropy": entropy.reindex(queries, fill_value=0.0).to_numpy(np.float64),
            "probe_agreement": np.divide(top, drawn, out=np.zeros_like(top), where=drawn > 0),
            "probe_n_distinct": real.size().reindex(queries, fill_value=0).to_numpy(np.float64),
        },
        index=queries,
    )


def _numeric_answer_stats(
    qid: NDArray[np.object_], answer: pd.Series, queries: pd.Index
) -> pd.DataFrame:
    value = pd.to_numeric(answer, errors="coerce").to_numpy(np.float64)
    finite = np.isfinite(value)
    frame = pd.DataFrame(
        {
            "q": qid,
            "nonint": finite & (np.abs(value - np.round(value)) > 1e-9),
            "mag": np.where(finite, np.log10(1.0 + np.abs(np.where(finite, value, 0.0))), np.nan),
        }
    )
    grouped = frame.groupby("q")
    return pd.DataFrame(
        {
            "probe_nonint": grouped["nonint"].mean().reindex(queries),
            "probe_answer_log10": grouped["mag"].mean().reindex(queries).fillna(0.0),
        },
        index=queries,
    ).astype(np.float64)


def _length_stats(probes: pd.DataFrame, queries: pd.Index) -> pd.DataFrame:
    cols: dict[str, pd.Series] = {}
    if "tokens" in probes and probes["tokens"].notna().any():
        cols["probe_mean_tokens"] = probes["tokens"].astype(np.float64)
    if "response" in probes and probes["response"].notna().any():
        cols["probe_mean_chars"] = probes["response"].astype("str").str.len().astype(np.float64)
    elif "chars" in probes and probes["chars"].notna().any():
        cols["probe_mean_chars"] = pd.to_numeric(probes["chars"], errors="coerce")
    if "score" in probes and probes["score"].notna().any():
        cols["probe_mean_score"] = probes["score"].astype(np.float64)
    out = pd.DataFrame(cols).assign(q=probes["query_id"].to_numpy(dtype=object))
    means = out.groupby("q").mean().reindex(queries)
    return means.fillna(means.mean()).fillna(0.0).astype(np.float64)


def probe_features(
    log: SampleLog,
    m: int,
    *,
    eligible: ArrayLike | None = None,
    model: str | None = None,
    random_state: int | np.random.Generator | None = 0,
) -> pd.DataFrame:
    """Difficulty probes from the first ``m`` sampled responses of each query.

    The probes of a query are the first ``m`` of its eligible samples in a seeded random order
    (:func:`probe_mask`); only their extracted answers and lengths are read, never ``correct``.

    Parameters
    ----------
    log : SampleLog
        The sample log.
    m : int
        Probe samples per query (>= 1).
    eligible : array-like of bool, shape (n_samples,), optional
        Rows of ``log.samples`` that may serve as probes (e.g. half A of each query's samples).
    model : str, optional
        The model that answers the probes; required when the log holds several models.
    random_state : int, Generator or None
        Seed of the per-query order of the samples.

    Returns
    -------
    DataFrame of shape (n_queries, n_probe_features)
        Indexed by ``query_id`` in the order of ``log.queries``; the columns of
        :data:`PROBE_FEATURES` that the log supports, plus ``probe_samples`` (probes drawn).
        A query without eligible samples gets zeros (mean lengths: the mean over queries).
    """
    mask = probe_mask(log, m, eligible=eligible, model=model, random_state=random_state)
    probes = log.samples.loc[mask]
    queries = pd.Index(log.queries["query_id"].to_numpy(dtype=object), name="query_id")
    qid = probes["query_id"].to_numpy(dtype=object)
    answer = probes["answer"]
    drawn = pd.Series(qid).value_counts().reindex(queries, fill_value=0)
    no_answer = pd.Series(answer.isna().to_numpy(np.float64)).groupby(qid).mean()
    parts = [
        _entropy_and_agreement(qid, answer, queries),
        pd.DataFrame({"probe_no_answer": no_answer.reindex(queries, fill_value=0.0)}),
        _numeric_answer_stats(qid, answer, queries).fillna(0.0),
        _length_stats(probes, queries),
        pd.DataFrame({"probe_samples": drawn.to_numpy(np.float64)}, index=queries),
    ]
    return pd.concat(parts, axis=1)


def embedding_features(
    prompts: Sequence[str | None] | pd.Series,
    *,
    model_name: str = "sentence-transformers/all-MiniLM-L6-v2",
    batch_size: int = 64,
) -> pd.DataFrame:
    """Sentence embeddings of the prompts (needs the ``embeddings`` extra).

    Parameters
    ----------
    prompts : sequence of str or None, length n_queries
        Prompt texts; ``None`` counts as the empty prompt.
    model_name : str
        A sentence-transformers model name or local path.
    batch_size : int
        Prompts encoded per batch.

    Returns
    -------
    DataFrame of shape (n_queries, dim)
        Columns ``emb_0`` .. ``emb_{dim-1}``, unit-normalised embeddings.

    Raises
    ------
    ImportError
        When sentence-transformers is not installed.
    """
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise ImportError(
            "embedding_features needs sentence-transformers: pip install computealloc[embeddings]"
        ) from exc
    text = _as_list(prompts)
    encoder = SentenceTransformer(model_name)
    emb = np.asarray(
        encoder.encode(text, batch_size=batch_size, normalize_embeddings=True), dtype=np.float64
    )
    return pd.DataFrame(emb, columns=[f"emb_{j}" for j in range(emb.shape[1])])


def build_features(
    log: SampleLog,
    *,
    probe_m: int = 0,
    eligible: ArrayLike | None = None,
    model: str | None = None,
    random_state: int | np.random.Generator | None = 0,
    embeddings: str | None = None,
) -> FeatureMatrix:
    """All features of the queries of a sample log, one row per query.

    Parameters
    ----------
    log : SampleLog
        Queries (``log.queries["prompt"]``) and, for probes, their samples.
    probe_m : int
        Probe samples per query; 0 (default) computes prompt features only.
    eligible, model, random_state
        Passed to :func:`probe_features`.
    embeddings : str, optional
        A sentence-transformers model name; adds :func:`embedding_features` columns.

    Returns
    -------
    FeatureMatrix
        ``X`` indexed by ``query_id`` in the order of ``log.queries`` and the probe samples
        drawn per query (to charge to the budget).
    """
    if isinstance(probe_m, bool) or not isinstance(probe_m, (int, np.integer)) or probe_m < 0:
        raise ValueError(
            f"The 'probe_m' parameter of build_features must be an int >= 0. Got {probe_m!r} "
            "instead."
        )
    queries = log.queries
    index = pd.Index(queries["query_id"].to_numpy(dtype=object), name="query_id")
    prompts = queries["prompt"] if "prompt" in queries else pd.Series([None] * len(queries))
    parts = [prompt_features(prompts).set_axis(index)]
    if embeddings is not None:
        parts.append(embedding_features(prompts, model_name=embeddings).set_axis(index))
    drawn = np.zeros(len(index), dtype=np.int64)
    if probe_m:
        probes = probe_features(
            log, probe_m, eligible=eligible, model=model, random_state=random_state
        )
        drawn = probes.pop("probe_samples").to_numpy(np.int64)
        parts.append(probes)
    return FeatureMatrix(pd.concat(parts, axis=1), drawn)
