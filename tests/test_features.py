"""Tests of computealloc.estimation.features: hand-checked prompt features, probe features,
builder."""

from __future__ import annotations

import math
import sys
import unicodedata

import numpy as np
import pandas as pd
import pytest

from computealloc.data.samples import read_samples
from computealloc.estimation import features
from computealloc.estimation.features import (
    PROBE_FEATURES,
    PROMPT_FEATURES,
    build_features,
    embedding_features,
    probe_features,
    probe_mask,
    prompt_features,
)
from conftest import needs_data

PROMPTS = [
    "How many apples are 3 + 4?",
    None,
    "Find $\\frac{1}{2} + x^2$ if x = 1,000.5. Is it true or false?\n(A) 1 (B) 2",
    "Janet’s ducks lay 16 eggs per day. She sells 3/4 of them for $2 each. "
    "How much in dollars does she make every week?",
    "Prove that twenty-five is odd; Alice says it is 20% more than 20 hours.",
]


def _log(answers: dict[str, list[str | None]], **extra: list[object]) -> object:
    rows = [
        {
            "query_id": q,
            "sample_idx": j,
            "answer": a,
            "correct": a == "1",
            "prompt": f"What is {q}?",
        }
        for q, values in answers.items()
        for j, a in enumerate(values)
    ]
    frame = pd.DataFrame(rows)
    for name, values in extra.items():
        frame[name] = values
    return read_samples(frame, grade=False)


def test_prompt_feature_columns_documented():
    f = prompt_features(PROMPTS)
    assert list(f.columns) == list(PROMPT_FEATURES)
    assert f.shape == (len(PROMPTS), len(PROMPT_FEATURES))
    assert len(PROMPT_FEATURES) >= 16
    assert (f.dtypes == np.float64).all()
    assert not f.isna().any().any()


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (
            0,
            {
                "n_chars": 26,
                "n_words": 4,
                "n_numbers": 2,
                "n_digits": 2,
                "n_operators": 1,
                "has_question_mark": 1,
                "q_how_many": 1,
                "n_sentences": 1,
                "q_what": 0,
                "max_number_log10": math.log10(5.0),
                "avg_word_len": 4.0,
            },
        ),
        (
            2,
            {
                "n_numbers": 6,
                "n_distinct_numbers": 3,
                "n_decimals": 1,
                "n_dollar": 2,
                "n_latex_commands": 1,
                "n_fractions": 1,
                "n_operators": 3,
                "n_conditions": 1,
                "q_find": 1,
                "q_true_false": 1,
                "q_multiple_choice": 1,
                "n_lines": 2,
                "n_sentences": 2,
                "max_number_log10": math.log10(1001.5),
            },
        ),
        (
            3,
            {
                "n_numbers": 4,
                "n_fractions": 1,
                "n_operators": 1,
                "n_conditions": 3,
                "n_time_units": 2,
                "n_dollar": 1,
                "q_how_many": 1,
                "n_sentences": 3,
                "n_words": 22,
            },
        ),
        (
            4,
            {
                "q_prove": 1,
                "n_operators": 0,
                "n_percent": 1,
                "n_comparisons": 1,
                "n_capitalized": 1,
                "n_time_units": 1,
                "n_numbers": 2,
                "n_distinct_numbers": 1,
                "has_question_mark": 0,
            },
        ),
    ],
)
def test_prompt_features_hand_checked(row, expected):
    f = prompt_features(PROMPTS)
    got = {name: f.loc[row, name] for name in expected}
    assert got == pytest.approx(expected)


def test_missing_prompt_is_all_zero():
    f = prompt_features([None, float("nan"), ""])
    assert (f.to_numpy() == 0).all()


def test_prompt_features_accept_series():
    s = pd.Series(PROMPTS, index=[10, 11, 12, 13, 14])
    pd.testing.assert_frame_equal(prompt_features(s), prompt_features(PROMPTS))


def test_prompt_features_reject_non_text():
    with pytest.raises(TypeError, match=r"`prompts` must hold strings or None. Got int \(3\)"):
        prompt_features(["ok", 3])


def test_probe_features_hand_checked():
    log = _log({"a": ["1", "1", "2", None], "b": ["2.5", "2.5", "2.5", "2.5"], "c": [None] * 4})
    f = probe_features(log, 4)
    assert list(f.index) == ["a", "b", "c"]
    np.testing.assert_allclose(
        f["probe_entropy"], [-(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25)), 0, math.log(4)]
    )
    np.testing.assert_allclose(f["probe_agreement"], [0.5, 1.0, 0.0])
    np.testing.assert_allclose(f["probe_n_distinct"], [2, 1, 0])
    np.testing.assert_allclose(f["probe_no_answer"], [0.25, 0.0, 1.0])
    np.testing.assert_allclose(f["probe_nonint"], [0.0, 1.0, 0.0])
    np.testing.assert_allclose(
        f["probe_answer_log10"], [(2 * math.log10(2) + math.log10(3)) / 3, math.log10(3.5), 0]
    )
    np.testing.assert_allclose(f["probe_samples"], [4, 4, 4])
    assert set(f.columns) - {"probe_samples"} <= set(PROBE_FEATURES)
    assert "probe_mean_tokens" not in f


def test_probe_length_columns_when_known():
    log = _log(
        {"a": ["1", "2"], "b": ["3", "3"]},
        tokens=[10.0, 20.0, 30.0, np.nan],
        response=["xx", "xxxx", "x", "xxx"],
    )
    f = probe_features(log, 2)
    np.testing.assert_allclose(f["probe_mean_tokens"], [15.0, 30.0])
    np.testing.assert_allclose(f["probe_mean_chars"], [3.0, 2.0])


def test_probe_mask_takes_first_m_eligible_in_seeded_order():
    log = _log({q: [str(j) for j in range(10)] for q in ("a", "b", "c")})
    eligible = np.tile(np.arange(10) % 2 == 0, 3)
    mask = probe_mask(log, 3, eligible=eligible, random_state=1)
    assert not (mask & ~eligible).any()
    per_query = pd.Series(mask).groupby(log.samples["query_id"].to_numpy()).sum()
    assert per_query.tolist() == [3, 3, 3]
    np.testing.assert_array_equal(mask, probe_mask(log, 3, eligible=eligible, random_state=1))
    masks = {tuple(probe_mask(log, 3, random_state=s)) for s in range(5)}
    assert len(masks) > 1


def test_probe_mask_short_query_uses_all_it_has():
    log = _log({"a": ["1"], "b": ["1", "2", "3"]})
    mask = probe_mask(log, 2)
    assert mask.tolist()[:1] == [True] and mask.sum() == 3


def test_probe_features_ignore_correctness():
    log = _log({"a": ["1", "2", "2"], "b": ["2", "2", "1"]})
    flipped = log.samples.assign(correct=~log.samples["correct"])
    other = type(log)(flipped, log.queries)
    pd.testing.assert_frame_equal(probe_features(log, 3), probe_features(other, 3))


@pytest.mark.parametrize("m", [0, -1, 1.5, True])
def test_probe_mask_rejects_bad_m(m):
    log = _log({"a": ["1"]})
    with pytest.raises(ValueError, match="The 'm' parameter of probe_mask must be an int >= 1"):
        probe_mask(log, m)


def test_probe_mask_rejects_bad_eligible():
    log = _log({"a": ["1", "2"]})
    with pytest.raises(ValueError, match=r"`eligible` must be a boolean array of shape \(2,\)"):
        probe_mask(log, 1, eligible=[1, 0])


def _two_model_log() -> object:
    frame = pd.DataFrame(
        {
            "query_id": ["a", "a", "a", "a"],
            "sample_idx": [0, 1, 0, 1],
            "model": ["small", "small", "large", "large"],
            "answer": ["1", "2", "1", "1"],
            "correct": [True, False, True, True],
        }
    )
    return read_samples(frame, grade=False)


def test_probe_mask_needs_model_when_several():
    log = _two_model_log()
    with pytest.raises(ValueError, match="The log holds 2 models"):
        probe_mask(log, 1)
    with pytest.raises(ValueError, match=r"`model` must be one of \['large', 'small'\]"):
        probe_mask(log, 1, model="medium")
    f = probe_features(log, 2, model="large")
    assert f["probe_agreement"].tolist() == [1.0]


def test_build_features_concatenates_and_reports_probe_cost():
    log = _log({"a": ["1", "1", "2"], "b": ["3"]})
    fm = build_features(log, probe_m=2)
    assert list(fm.X.index) == ["a", "b"]
    assert list(fm.X.columns[: len(PROMPT_FEATURES)]) == list(PROMPT_FEATURES)
    assert "probe_samples" not in fm.X
    assert fm.probe_samples.tolist() == [2, 1]
    assert fm.probe_m == 2
    plain = build_features(log)
    assert list(plain.X.columns) == list(PROMPT_FEATURES)
    assert plain.probe_samples.tolist() == [0, 0] and plain.probe_m == 0


def test_build_features_rejects_bad_probe_m():
    log = _log({"a": ["1"]})
    with pytest.raises(ValueError, match="The 'probe_m' parameter of build_features"):
        build_features(log, probe_m=-1)


def test_embedding_features_missing_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    with pytest.raises(ImportError, match=r"pip install computealloc\[embeddings\]"):
        embedding_features(["a prompt"])


def test_embedding_features_when_installed():
    pytest.importorskip("sentence_transformers")
    try:
        f = embedding_features(["What is 2 + 2?", None])
    except OSError as exc:  # the model is not cached and the network is unreachable
        pytest.skip(f"embedding model unavailable: {exc}")
    assert f.shape[0] == 2 and f.columns[0] == "emb_0"
    np.testing.assert_allclose(np.linalg.norm(f.to_numpy(), axis=1), 1.0, rtol=1e-5)


@pytest.mark.usefixtures("shared_data")
def test_real_gsm_features_complete():
    from computealloc.data import datasets

    log = datasets.load("mot_cascade:llama-2-13b/gsm/pot2")
    fm = build_features(log, probe_m=2, random_state=0)
    assert fm.X.shape[0] == 400
    assert not fm.X.isna().any().any()
    expected = [*PROMPT_FEATURES, "probe_entropy", "probe_agreement", "probe_mean_chars"]
    assert set(expected) <= set(fm.X.columns)
    assert (fm.probe_samples == 2).all()
    assert fm.X["q_how_many"].mean() > 0.5


TRICKY_ASCII = [
    "",
    None,
    "Solve $\\dfrac{3}{4} + \\tfrac12 = x$ and \\sqrt{2}\\cdot\\pi; is 1/2 < 3 / 4?",
    "It costs $1,234,567.89 or 1,000, not 1,,2 or 3.14.15; 12.5% off, 20 percent.\n",
    "(A) 1\n B) 2\nC. 3\n\x0bD) well-known x-ray -5 - 3 a- -b. Yes or no? TRUE/FALSE!\n\n",
    "Every hour, each of 2 days per week: twice, half, more than 5 minutes. Show that... ok?!",
    "9" * 400 + " and 0.5",
]
TRICKY_UNICODE = [
    *TRICKY_ASCII,
    float("nan"),
    "Janet’s ducks lay ١٦ eggs; ٣ and ٤٫٥ and 7٣ — café Über naïve 2²",
    "٣,٤ only",
]


def _pandas_raw(prompts):
    """Independent reference: the raw counts with pandas string methods."""
    text = pd.Series(features._as_list(prompts), dtype="str")

    def count(pattern):
        return np.asarray(text.str.count(pattern.pattern), dtype=np.float64)

    raw = {name: count(pat) for name, pat in features._COUNTS.items()}
    raw.update((name, np.minimum(count(pat), 1.0)) for name, pat in features._FLAGS.items())
    raw["n_chars"] = np.asarray(text.str.len(), dtype=np.float64)
    raw["letters"] = count(features._LETTER)
    raw["newlines"] = count(features._NEWLINE)
    keys = text.str.extractall(f"({features._NUMBER.pattern})")[0].str.replace(",", "")
    raw["n_distinct_numbers"] = np.zeros(len(text))
    raw["largest"] = np.full(len(text), -np.inf)
    if len(keys):
        distinct = keys.groupby(level=0).nunique()
        raw["n_distinct_numbers"][distinct.index.to_numpy()] = distinct.to_numpy(np.float64)
        ascii_digits = keys.map(lambda k: "".join(str(unicodedata.digit(c, c)) for c in k))
        largest = pd.to_numeric(ascii_digits, errors="coerce").groupby(level=0).max()
        raw["largest"][largest.index.to_numpy()] = largest.fillna(-np.inf).to_numpy(np.float64)
    return raw


def _assert_raw_equal(prompts):
    ours, reference = features._list_raw(features._as_list(prompts)), _pandas_raw(prompts)
    assert ours.keys() == reference.keys()
    for name in ours:
        np.testing.assert_array_equal(ours[name], reference[name], err_msg=name)


@pytest.mark.parametrize("prompts", [TRICKY_ASCII, TRICKY_UNICODE], ids=["ascii", "unicode"])
def test_prompt_features_match_pandas_on_tricky_prompts(prompts):
    _assert_raw_equal(prompts)
    small = prompt_features(prompts)
    assert (small.dtypes == np.float64).all() and isinstance(small.index, pd.RangeIndex)
    assert (small.iloc[:2] == 0.0).all().all()
    assert small["n_numbers"].iloc[3] == 6 and small["n_distinct_numbers"].iloc[3] == 6
    assert np.isfinite(small.to_numpy()).all()  # policies reject non-finite features
    assert small["max_number_log10"].iloc[6] == pytest.approx(np.log10(np.finfo(float).max))
    if prompts is TRICKY_UNICODE:  # Arabic-Indic digits parse: 7٣ is 73, ٣,٤ is 34
        assert small["max_number_log10"].iloc[-2] == pytest.approx(math.log10(74.0))
        assert small["max_number_log10"].iloc[-1] == pytest.approx(math.log10(35.0))


@needs_data
def test_prompt_features_match_pandas_on_real_prompts():
    from computealloc.data import datasets

    prompts = datasets.load("mot_cascade:llama-2-13b/gsm/pot2").queries["prompt"].tolist()
    _assert_raw_equal(prompts)
    large = prompt_features(prompts)
    singles = pd.concat([prompt_features([p]) for p in prompts[:50]], ignore_index=True)
    pd.testing.assert_frame_equal(singles, large.iloc[:50], check_exact=True)
