"""Exact estimators: enumeration, independent exact counts, Monte Carlo, closed forms, SampleLog."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from computealloc.data.samples import SampleLog
from computealloc.estimation.actions import Action
from computealloc.estimation.estimate import (
    MAX_POOL_SIZE,
    best_of_accuracy,
    default_actions,
    estimate,
    majority_accuracy,
    pass_at_k,
)
from conftest import needs_data

ABSTAIN, GOLD = -1, 0  # pool labels: -1 abstains, 0 is the correct answer, 1, 2, ... are wrong


# --------------------------------------------------------------------------- references


def brute_majority(labels: list[int], k: int) -> Fraction:
    """Exact plurality accuracy by enumerating every k-subset of the pool."""
    total = Fraction(0)
    subsets = list(itertools.combinations(labels, k))
    for draw in subsets:
        votes = [x for x in draw if x != ABSTAIN]
        if not votes:
            continue
        counts = {a: votes.count(a) for a in set(votes)}
        top = [a for a, v in counts.items() if v == max(counts.values())]
        total += Fraction(GOLD in top, len(top))
    return total / len(subsets)


def counts_majority(gold: int, others: list[int], abstain: int, k: int) -> Fraction:
    """Exact plurality accuracy by summing the multivariate hypergeometric over count vectors."""
    n = gold + sum(others) + abstain
    total = 0 * Fraction(1)
    ranges = [range(min(c, k) + 1) for c in [gold, *others]]
    for xs in itertools.product(*ranges):
        rest = k - sum(xs)
        if not 0 <= rest <= abstain or xs[0] == 0 or max(xs[1:], default=0) > xs[0]:
            continue
        ways = math.comb(abstain, rest) * math.prod(map(math.comb, [gold, *others], xs))
        total += Fraction(ways, 1 + xs[1:].count(xs[0]))
    return total / math.comb(n, k)


def split(labels: list[int]) -> tuple[int, list[int], int]:
    """Pool labels -> (gold, wrong-cluster sizes, abstain) for the kernel."""
    wrong = sorted({x for x in labels if x > GOLD})
    return labels.count(GOLD), [labels.count(a) for a in wrong] or [0], labels.count(ABSTAIN)


def brute_best_of(scores: list[float], correct: list[bool], k: int) -> Fraction:
    total = Fraction(0)
    subsets = list(itertools.combinations(range(len(scores)), k))
    for draw in subsets:
        top = max(scores[i] for i in draw)
        winners = [i for i in draw if scores[i] == top]
        total += Fraction(sum(correct[i] for i in winners), len(winners))
    return total / len(subsets)


def monte_carlo_majority(labels: list[int], k: int, draws: int, seed: int) -> float:
    """Plurality accuracy by simulation: random k-subsets, ties broken by a random jitter."""
    rng = np.random.default_rng(seed)
    pool = np.asarray(labels)
    picked = pool[np.argsort(rng.random((draws, len(pool))), axis=1)[:, :k]]
    clusters = np.arange(max(*labels, GOLD) + 1)
    votes = (picked[:, :, None] == clusters).sum(axis=1).astype(float)
    jitter = np.where(votes > 0, votes + 0.5 * rng.random(votes.shape), -1.0)
    return float(np.mean((jitter.argmax(axis=1) == GOLD) & (votes.max(axis=1) > 0)))


def make_log(**cols: object) -> SampleLog:
    """A SampleLog built straight from columns (model 'm', no tokens/scores unless given)."""
    df = pd.DataFrame(cols)
    df["query_id"] = df["query_id"].astype("str")
    df["model"] = df.get("model", pd.Series("m", index=df.index)).astype("str")
    df["answer"] = df["answer"].astype("str")
    df["correct"] = df["correct"].astype("boolean")
    for name in ("tokens", "score"):
        df[name] = df.get(name, pd.Series(np.nan, index=df.index)).astype("float64")
    df["sample_idx"] = df.groupby(["model", "query_id"]).cumcount().astype("int64")
    df = df.sort_values(["model", "query_id", "sample_idx"], ignore_index=True)
    queries = pd.DataFrame({"query_id": sorted(df["query_id"].unique())})
    queries["prompt"] = queries["gold"] = pd.Series(pd.NA, index=queries.index, dtype="str")
    return SampleLog(samples=df, queries=queries, source="test")


# --------------------------------------------------------------------------- majority kernel

FIXED_POOLS = [
    [0],
    [-1],
    [1, 2],
    [0, 1],
    [0, 0, 1, 1],
    [0, -1, -1],
    [0, 0, 1, 1, 1, -1],
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],  # nine singletons tie with gold at t = 1
    [0, 0, 1, 1, 2, 2, 3, 3, 4, 4],
    [0, 0, 0, 1, 1, 1, 2, 2, -1, -1],
    [1, 1, 1, 0, -1, -1, -1, -1, -1, -1],
]


@pytest.mark.parametrize("labels", FIXED_POOLS)
def test_majority_matches_enumeration(labels: list[int]) -> None:
    gold, others, abstain = split(labels)
    ks = np.arange(1, len(labels) + 1)
    got = majority_accuracy([gold], [others], [abstain], ks)[0]
    expected = [float(brute_majority(labels, k)) for k in ks]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_majority_random_pools_match_enumeration() -> None:
    rng = np.random.default_rng(0)
    pools = [
        rng.integers(-1, rng.integers(1, 6), size=rng.integers(1, 11)).tolist() for _ in range(60)
    ]
    parts = [split(p) for p in pools]
    width = max(len(o) for _, o, _ in parts)
    others = [o + [0] * (width - len(o)) for _, o, _ in parts]
    got = majority_accuracy(
        [g for g, _, _ in parts], others, [a for _, _, a in parts], np.arange(1, 11)
    )
    for row, labels in zip(got, pools, strict=True):
        ks = range(1, len(labels) + 1)
        np.testing.assert_allclose(
            row[: len(labels)], [float(brute_majority(labels, k)) for k in ks], rtol=0, atol=1e-12
        )
        assert np.isnan(row[len(labels) :]).all()


@pytest.mark.parametrize(
    ("gold", "others", "abstain"),
    [(20, [18, 14], 12), (30, [30], 4), (8, [9, 9, 8, 4], 26), (1, [63], 0)],
)
def test_majority_exact_at_64_samples(gold: int, others: list[int], abstain: int) -> None:
    ks = [1, 2, 7, 32, 63, 64]
    got = majority_accuracy([gold], [others], [abstain], ks)[0]
    expected = [float(counts_majority(gold, others, abstain, k)) for k in ks]
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)


def test_majority_batch_equals_rows() -> None:
    rng = np.random.default_rng(1)
    gold = rng.integers(0, 12, size=40)
    others = rng.integers(0, 12, size=(40, 5))
    abstain = rng.integers(0, 4, size=40)
    ks = np.arange(1, 20)
    batch = majority_accuracy(gold, others, abstain, ks)
    for i in range(40):
        row = majority_accuracy(gold[i], others[i], abstain[i], ks)[0]
        np.testing.assert_allclose(batch[i], row, rtol=1e-14, atol=1e-16)


def test_majority_cluster_order_and_padding_do_not_matter() -> None:
    ks = np.arange(1, 12)
    ref = majority_accuracy([4], [[3, 1, 2]], [1], ks)
    np.testing.assert_array_equal(majority_accuracy([4], [[0, 2, 0, 1, 3]], [1], ks), ref)


def test_majority_k1_is_share_correct() -> None:
    got = majority_accuracy([3, 0, 5], [[2, 1], [4, 0], [0, 0]], [1, 2, 0], 1)
    np.testing.assert_allclose(got[:, 0], [3 / 7, 0.0, 1.0], rtol=0, atol=1e-15)


@given(
    labels=st.lists(st.integers(-1, 3), min_size=1, max_size=14),
    k_frac=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**16),
)
@settings(max_examples=100, deadline=None, derandomize=True, database=None)
def test_majority_agrees_with_monte_carlo(labels: list[int], k_frac: float, seed: int) -> None:
    k = 1 + int(k_frac * (len(labels) - 1))
    gold, others, abstain = split(labels)
    exact = float(majority_accuracy([gold], [others], [abstain], k)[0, 0])
    draws = 4000
    mc = monte_carlo_majority(labels, k, draws, seed)
    se = math.sqrt(exact * (1 - exact) / draws)
    assert abs(mc - exact) <= 4 * se + 1e-12


# --------------------------------------------------------------------------- pass@k, best_of@k


def test_pass_at_k_closed_form() -> None:
    n, c = np.array([10, 10, 10, 7, 64, 5]), np.array([0, 1, 10, 3, 20, 2])
    for k in (1, 2, 5):
        expected = [
            1 - Fraction(math.comb(a - b, k), math.comb(a, k)) for a, b in zip(n, c, strict=True)
        ]
        np.testing.assert_allclose(
            pass_at_k(n, c, k), [float(e) for e in expected], rtol=1e-14, atol=0
        )
    np.testing.assert_allclose(pass_at_k(n, c, 1), c / n, rtol=1e-15)
    assert pass_at_k([3], [1], 4)[0] != pass_at_k([3], [1], 4)[0]  # NaN where k > n


def test_pass_at_k_matches_enumeration() -> None:
    correct = [True, False, False, True, False, False]
    for k in range(1, 7):
        draws = list(itertools.combinations(correct, k))
        expected = sum(any(d) for d in draws) / len(draws)
        assert pass_at_k([6], [2], k)[0] == pytest.approx(expected, abs=1e-14)


BEST_OF_POOLS = [
    ([0.9, 0.9, 0.1], [True, False, True]),
    ([0.5, 0.5, 0.5, 0.5], [True, False, False, False]),
    ([3.0, 1.0, 2.0, 2.0, 1.0, 0.0, 3.0], [False, True, True, False, True, True, True]),
    ([1.0, 2.0, 3.0, 4.0, 5.0], [True, True, False, True, False]),
]


@pytest.mark.parametrize(("scores", "correct"), BEST_OF_POOLS)
def test_best_of_matches_enumeration(scores: list[float], correct: list[bool]) -> None:
    for k in range(1, len(scores) + 1):
        got = best_of_accuracy([scores], [correct], k)[0]
        assert got == pytest.approx(float(brute_best_of(scores, correct, k)), abs=1e-12)


def test_best_of_padded_rows_and_closed_forms() -> None:
    width = max(len(s) for s, _ in BEST_OF_POOLS)
    scores = np.full((len(BEST_OF_POOLS), width), np.nan)
    correct = np.zeros(scores.shape, dtype=bool)
    for i, (s, c) in enumerate(BEST_OF_POOLS):
        scores[i, : len(s)], correct[i, : len(c)] = s, c
    one = best_of_accuracy(scores, correct, 1)
    np.testing.assert_allclose(one, [np.mean(c) for _, c in BEST_OF_POOLS], rtol=1e-15)
    three = best_of_accuracy(scores, correct, 3)
    for i, (s, c) in enumerate(BEST_OF_POOLS):
        assert three[i] == pytest.approx(float(brute_best_of(s, c, 3)), abs=1e-12)
    full = best_of_accuracy(scores, correct, 5)  # all of the first, 5 > 4 of row 1
    assert full[0] != full[0] and np.isnan(full[1])
    assert full[3] == 0.0  # the top score 5.0 is wrong


@given(
    pool=st.lists(st.tuples(st.integers(0, 3), st.booleans()), min_size=1, max_size=12),
    k_frac=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**16),
)
@settings(max_examples=60, deadline=None, derandomize=True, database=None)
def test_best_of_agrees_with_monte_carlo(
    pool: list[tuple[int, bool]], k_frac: float, seed: int
) -> None:
    scores = np.array([float(s) for s, _ in pool])
    correct = np.array([c for _, c in pool])
    k = 1 + int(k_frac * (len(pool) - 1))
    exact = float(best_of_accuracy([scores], [correct], k)[0])
    rng = np.random.default_rng(seed)
    draws = 4000
    picked = np.argsort(rng.random((draws, len(pool))), axis=1)[:, :k]
    jitter = scores[picked] + 0.5 * rng.random(picked.shape)  # uniform among tied top scores
    winner = np.take_along_axis(picked, jitter.argmax(axis=1)[:, None], axis=1)[:, 0]
    se = math.sqrt(exact * (1 - exact) / draws)
    assert abs(correct[winner].mean() - exact) <= 4 * se + 1e-12


# --------------------------------------------------------------------------- estimate on logs


def test_estimate_answers_clusters_and_abstains() -> None:
    log = make_log(
        query_id=["a"] * 5 + ["b"] * 4,
        answer=["4", "4.0", "5", "5", None, None, None, "7", None],
        correct=[True, True, False, False, None, True, True, False, False],
    )
    table = estimate(log, "majority@1,majority@2,majority@4,pass@2")
    assert table.query_ids == ("a", "b") and table.actions[-1] == "pass@2"
    # 'a': '4' and '4.0' are both graded correct -> one cluster of 2 vs '5' x2, one abstain.
    # 'b': label-only correct samples form one cluster; the unlabelled no-answer sample abstains.
    labels = {"a": [0, 0, 1, 1, -1], "b": [0, 0, 1, -1]}
    for i, q in enumerate(table.query_ids):
        expected = [float(brute_majority(labels[q], k)) for k in (1, 2, 4)]
        np.testing.assert_allclose(table.P[i, :3], expected, atol=1e-12)
    assert table.P[:, 0] == pytest.approx([2 / 5, 2 / 4])
    np.testing.assert_allclose(table.P[:, 3], pass_at_k([5, 4], [2, 2], 2))
    np.testing.assert_array_equal(table.C, [[1, 2, 4, 2]] * 2)
    assert table.cost_unit == "samples" and table.metadata["dropped_queries"] == []


def test_estimate_unlabelled_sample_takes_its_answers_label() -> None:
    log = make_log(
        query_id=["q"] * 4, answer=["4", "4", "5", "5"], correct=[True, None, False, None]
    )
    assert estimate(log, "majority@1").P[0, 0] == pytest.approx(0.5)


def test_estimate_is_invariant_to_row_order() -> None:
    rng = np.random.default_rng(3)
    n = 60
    log = make_log(
        query_id=rng.choice(["x", "y", "z"], size=n),
        answer=rng.choice(["1", "2", "3", None], size=n),
        correct=None,
        score=rng.integers(0, 4, size=n).astype(float),
        tokens=rng.integers(10, 50, size=n).astype(float),
    )
    log.samples["correct"] = (log.samples["answer"] == "1").fillna(False).astype("boolean")
    shuffled = SampleLog(log.samples.sample(frac=1.0, random_state=0), log.queries, "test")
    specs = "majority@1,majority@5,best_of@3,pass@4"
    a, b = estimate(log, specs, "tokens"), estimate(shuffled, specs, "tokens")
    np.testing.assert_allclose(a.P, b.P, rtol=1e-13)
    np.testing.assert_allclose(a.C, b.C, rtol=1e-13)


def test_estimate_best_of_uses_scores() -> None:
    log = make_log(
        query_id=["q"] * 3,
        answer=["1", "2", "1"],
        correct=[True, False, True],
        score=[0.9, 0.9, 0.1],
    )
    table = estimate(log, "best_of@1,best_of@3")
    np.testing.assert_allclose(table.P[0], [2 / 3, 0.5], atol=1e-15)


def test_estimate_costs_in_tokens_and_usd() -> None:
    log = make_log(
        query_id=["a", "a", "b", "b", "a", "b"],
        model=["m1", "m1", "m1", "m1", "org/m2", "org/m2"],
        answer=["1"] * 6,
        correct=[True] * 6,
        tokens=[10.0, 30.0, 5.0, 7.0, 100.0, 300.0],
    )
    specs = "m1/majority@1,m1/pass@2,org/m2/majority@1"
    tokens = estimate(log, specs, "tokens")
    np.testing.assert_allclose(tokens.C, [[20, 40, 100], [6, 12, 300]])
    usd = estimate(log, specs, "usd", prices={"m1": 2.0, "org/m2": 10.0})
    np.testing.assert_allclose(usd.C, tokens.C * np.array([2.0, 2.0, 10.0]) / 1e6)
    assert usd.cost_unit == "usd"
    assert usd.metadata["prices"] == {"m1": "2", "org/m2": "10"}
    # per-sample prices multiply each model's cost; an IN/OUT usd price adds prompt tokens
    weighted = estimate(log, specs, "samples", prices={"m1": 0, "org/m2": 1})
    np.testing.assert_array_equal(weighted.C, [[0, 0, 1], [0, 0, 1]])
    with_prompt = make_log(
        query_id=["a", "b"], answer=["1"] * 2, correct=[True] * 2, tokens=[100.0, 300.0]
    )
    with_prompt.samples["prompt_tokens"] = [1000.0, 2000.0]
    np.testing.assert_allclose(
        estimate(with_prompt, "majority@1", "usd", prices={"m": "3/10"}).C.ravel(),
        [(100 * 10 + 1000 * 3) / 1e6, (300 * 10 + 2000 * 3) / 1e6],
    )
    with pytest.raises(ValueError, match="a `prompt_tokens` column"):
        estimate(log, "m1/majority@1", "usd", prices={"m1": "1/1"})


def test_estimate_model_prefixed_columns() -> None:
    log = make_log(
        query_id=["a", "a", "b", "b"] * 2,
        model=["small"] * 4 + ["big/v1"] * 4,
        answer=["1", "2", "1", "1", "1", "1", "2", "2"],
        correct=[True, False, True, True, True, True, False, False],
    )
    table = estimate(log, ["small/majority@2", "big/v1/majority@1", "big/v1/pass@2"])
    assert table.actions == ("small/majority@2", "big/v1/majority@1", "big/v1/pass@2")
    np.testing.assert_allclose(table.P, [[0.5, 1.0, 1.0], [1.0, 0.0, 0.0]])


def test_estimate_short_queries_raise_or_drop() -> None:
    log = make_log(query_id=["a"] * 4 + ["b"] * 2 + ["c"], answer=["1"] * 7, correct=[True] * 7)
    with pytest.raises(
        ValueError,
        match=(
            r"Action 'majority@3' needs 3 samples per query, but query 'b' \(model 'm'\) has 2 "
            r"\(2 queries are short\)\. Pass on_short='drop' to leave such queries out\."
        ),
    ):
        estimate(log, "majority@1,majority@3")
    table = estimate(log, "majority@1,majority@3", on_short="drop")
    assert table.query_ids == ("a",)
    assert table.metadata["dropped_queries"] == ["b", "c"]
    with pytest.raises(ValueError, match=r"on_short='drop' left no query: .*largest K = 9\)"):
        estimate(log, "majority@9", on_short="drop")


def test_estimate_missing_model_pool_is_short() -> None:
    log = make_log(
        query_id=["a", "b", "a"], model=["x", "x", "y"], answer=["1"] * 3, correct=[True] * 3
    )
    with pytest.raises(ValueError, match=r"needs 1 samples per query, but query 'b' \(model 'y'\)"):
        estimate(log, "x/majority@1,y/majority@1")
    assert estimate(log, "x/majority@1,y/majority@1", on_short="drop").query_ids == ("a",)


def test_estimate_label_errors() -> None:
    mixed = make_log(query_id=["q"] * 2, answer=["4", "4"], correct=[True, False])
    with pytest.raises(
        ValueError,
        match=(
            r"query 'q' \(model 'm'\): answer '4' is labelled both correct and wrong; "
            r"`correct` must agree across samples with the same answer\."
        ),
    ):
        estimate(mixed, "majority@1")
    unknown = make_log(query_id=["q"] * 3, answer=["4", "5", "5"], correct=[True, None, None])
    with pytest.raises(
        ValueError,
        match=(
            r"query 'q' \(model 'm'\) has 2 answered samples whose correctness is unknown "
            r"\(`correct` is NA\); grade them \(give `gold`\) or leave the query out\."
        ),
    ):
        estimate(unknown, "pass@1")


def test_estimate_missing_scores_and_tokens() -> None:
    log = make_log(
        query_id=["q", "q"],
        answer=["1", "2"],
        correct=[True, False],
        score=[0.5, np.nan],
        tokens=[3.0, np.nan],
    )
    with pytest.raises(
        ValueError,
        match=(
            r"best_of@K needs a finite `score` for every sample; query 'q' \(model 'm'\) has 1 "
            r"samples without one\."
        ),
    ):
        estimate(log, "best_of@1")
    with pytest.raises(
        ValueError,
        match=(r"cost='tokens' needs a finite, non-negative `tokens` for every sample; query 'q'"),
    ):
        estimate(log, "majority@1", "tokens")


def test_estimate_model_resolution_errors() -> None:
    log = make_log(query_id=["q", "q"], model=["a", "b"], answer=["1", "1"], correct=[True] * 2)
    with pytest.raises(
        ValueError,
        match=(
            r"Action 'majority@1' has no model prefix, but the log holds 2 models \(a, b\); write "
            r"'MODEL/majority@1'\."
        ),
    ):
        estimate(log, "majority@1")
    with pytest.raises(
        ValueError,
        match=(
            r"Action 'c/majority@1' names model 'c', which is not in the log; its models "
            r"are: a, b\."
        ),
    ):
        estimate(log, "c/majority@1")


def test_estimate_single_model_accepts_its_prefix() -> None:
    log = make_log(query_id=["q", "q"], answer=["1", "2"], correct=[True, False])
    table = estimate(log, [Action("majority", 1, "m"), Action("majority", 1)])
    np.testing.assert_allclose(table.P, [[0.5, 0.5]])


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"cost": "flops"},
            ValueError,
            r"The 'cost' parameter of estimate must be one of samples, tokens, chars, usd\. Got "
            r"'flops' instead\.",
        ),
        (
            {"on_short": "skip"},
            ValueError,
            r"The 'on_short' parameter of estimate must be one of 'raise', 'drop'\. Got 'skip'",
        ),
        (
            {"cost": "usd"},
            ValueError,
            r"The 'prices' parameter of estimate has no price for arm 'm' \(cost unit 'usd': USD "
            r"per 1M output tokens, or IN/OUT USD per 1M prompt/output tokens\)\. Got prices "
            r"for: none\.",
        ),
        (
            {"cost": "usd", "prices": {"x": 1.0}},
            ValueError,
            r"The 'prices' parameter of estimate has no price for arm 'm' .*Got prices for: 'x'\.",
        ),
        (
            {"cost": "usd", "prices": {"m": -1.0}},
            ValueError,
            r"The 'prices' parameter of estimate: the price of arm 'm' must be a number >= 0 "
            r"\(USD per 1M output tokens.*\) with cost unit 'usd'\. Got -1.0 instead\.",
        ),
        (
            {"prices": {"m": "1/2"}},
            ValueError,
            r"the price of arm 'm' .* with cost unit 'samples'\. Got '1/2' instead\.",
        ),
        (
            {"prices": {"x": 1.0}},
            ValueError,
            r"has no price for arm 'm' \(cost unit 'samples': per sample\)",
        ),
    ],
)
def test_estimate_parameter_validation(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    log = make_log(query_id=["q"], answer=["1"], correct=[True], tokens=[1.0])
    with pytest.raises(error, match=message):
        estimate(log, "majority@1", **kwargs)  # type: ignore[arg-type]


def test_estimate_rejects_non_logs_and_huge_pools() -> None:
    with pytest.raises(
        TypeError,
        match=(r"The 'log' parameter of estimate must be a SampleLog\. Got DataFrame instead\."),
    ):
        estimate(pd.DataFrame(), "majority@1")  # type: ignore[arg-type]
    n = MAX_POOL_SIZE + 1
    log = make_log(query_id=["q"] * n, answer=["1"] * n, correct=[True] * n)
    with pytest.raises(
        ValueError,
        match=(
            rf"estimate supports at most {MAX_POOL_SIZE} samples per \(model, query\); query 'q' "
            rf"\(model 'm'\) has {n}\."
        ),
    ):
        estimate(log, "majority@1")
    with pytest.raises(ValueError, match=r"Pools of at most 1024 samples are supported\. Got 1025"):
        pass_at_k([n], [1], 1)


def test_default_actions() -> None:
    log = make_log(query_id=["a"] * 12 + ["b"] * 9, answer=["1"] * 21, correct=[True] * 21)
    assert [a.spec for a in default_actions(log)] == [f"majority@{k}" for k in (1, 2, 4, 8)]
    assert [a.spec for a in default_actions(log, "held-out")] == [
        "majority@1",
        "majority@2",
        "majority@4",
    ]
    table = estimate(log)
    assert table.actions == ("majority@1", "majority@2", "majority@4", "majority@8")
    two = make_log(
        query_id=["a"] * 3, model=["x", "x", "y/z"], answer=["1"] * 3, correct=[True] * 3
    )
    assert [a.spec for a in default_actions(two)] == [
        "x/majority@1",
        "x/majority@2",
        "y/z/majority@1",
    ]
    with pytest.raises(
        ValueError,
        match=(
            r"The held-out protocol needs at least 2 samples per query; model 'y/z' has a query "
            r"with 1\."
        ),
    ):
        default_actions(two, "held-out")
    with pytest.raises(
        ValueError,
        match=(
            r"The 'protocol' parameter of default_actions must be one of 'in-sample', 'held-out'\. "
            r"Got 'both' instead\."
        ),
    ):
        default_actions(log, "both")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"The 'log' parameter of default_actions must be a"):
        default_actions(log.samples)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- real data


@needs_data
def test_real_llama_gsm_pot2(shared_data: Path) -> None:
    raw = pd.read_csv(
        shared_data / "mot_cascade" / "samples.csv.gz",
        dtype={"answer": object, "gold": object, "variant": str},
    )
    run = raw[(raw.model == "llama-2-13b") & (raw.dataset == "gsm") & (raw.prompt_style == "pot2")]
    log = make_log(
        query_id=run.query_id.to_numpy(),
        answer=run.answer.to_numpy(),
        correct=run.correct.to_numpy(),
        model=run.model.to_numpy(),
    )
    table = estimate(log, "majority@1,majority@4,majority@24")
    assert table.P.shape == (400, 3)
    mean = table.P.mean(axis=0)
    assert mean[0] == pytest.approx(run.correct.mean(), abs=1e-12)
    assert abs(mean[0] - 0.3288) <= 5e-5 + 1e-12  # README single_acc
    assert abs(mean[1] - 0.374) < 5e-4  # DESIGN: uniform maj@4
    assert abs(mean[2] - 0.4175) < 0.01  # README majority_acc (first-seen ties): ours 0.42333
    assert mean[2] == pytest.approx(0.423333333333, abs=1e-9)
    validated = SampleLog.from_frame(run, grade=False)
    np.testing.assert_allclose(estimate(validated, table.actions).P, table.P, rtol=1e-15)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: majority_accuracy([1], [[1]], [0], [0, 1]),
            r"'ks' parameter of "
            r"majority_accuracy must hold ints in \[1, inf\)\. Got \[0, 1\] instead\.",
        ),
        (lambda: pass_at_k([3], [1], -1), r"'k' parameter of pass_at_k must hold ints in"),
        (lambda: best_of_accuracy([[0.5]], [[True]], 0), r"'k' parameter of best_of_accuracy"),
    ],
)
def test_kernels_reject_non_positive_k(call: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


# --------------------------------------------------------------------------- verifier tasks


def brute_vote(answers: list[str | None], right: set[str], k: int) -> Fraction:
    """Plurality over distinct answer strings of every k-subset, ties split; None abstains."""
    total = Fraction(0)
    subsets = list(itertools.combinations(answers, k))
    for draw in subsets:
        votes = [a for a in draw if a is not None]
        if not votes:
            continue
        counts = {a: votes.count(a) for a in set(votes)}
        top = [a for a, v in counts.items() if v == max(counts.values())]
        total += Fraction(sum(a in right for a in top), len(top))
    return total / len(subsets)


def verifier_log(seed: int) -> tuple[SampleLog, list[list[str | None]], list[set[str]]]:
    """Game-of-24-like pools: several distinct correct expressions per query, no gold."""
    rng = np.random.default_rng(seed)
    pools, rights, rows = [], [], []
    for q in range(6):
        n = int(rng.integers(3, 9))
        names = [f"e{q}_{j}" for j in range(int(rng.integers(2, 6)))]
        right = set(rng.choice(names, size=int(rng.integers(1, len(names) + 1)), replace=False))
        pool = [None if rng.random() < 0.15 else str(rng.choice(names)) for _ in range(n)]
        pools.append(pool)
        rights.append(right)
        rows += [(f"q{q}", a, a in right) for a in pool]
    frame = pd.DataFrame(rows, columns=["query_id", "answer", "correct"])
    log = make_log(query_id=frame.query_id, answer=frame.answer, correct=frame.correct)
    log.samples["answer"] = pd.Series(
        [a for pool in pools for a in pool], dtype="str", index=log.samples.index
    )
    return log, pools, rights


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_several_correct_answers_vote_apart_like_brute_force(seed: int) -> None:
    log, pools, rights = verifier_log(seed)
    k_max = min(len(p) for p in pools)
    table = estimate(log, ",".join(f"majority@{k}" for k in range(1, k_max + 1)))
    for i, (pool, right) in enumerate(zip(pools, rights, strict=True)):
        want = [float(brute_vote(pool, right, k)) for k in range(1, k_max + 1)]
        np.testing.assert_allclose(table.P[i], want, rtol=0, atol=1e-12)


def test_two_correct_expressions_are_not_one_answer() -> None:
    # {A, A, B, C}: A wrong, B and C correct. Merging B and C (the old rule) makes the vote
    # of all four a tie 2-2 (0.5); a true vote over distinct answers is won by A.
    log = make_log(
        query_id=["q"] * 4,
        answer=["A", "A", "(4+8)*(6-4)", "4*(8-6+4)"],
        correct=[False, False, True, True],
    )
    assert estimate(log, "majority@4").P[0, 0] == 0.0


def test_answers_equal_to_the_gold_vote_together() -> None:
    log = make_log(
        query_id=["q"] * 3, answer=["4.0", "3.999999999999999", "5"], correct=[True, True, False]
    )
    log.queries["gold"] = pd.Series(["4"], dtype="str")
    assert estimate(log, "majority@3").P[0, 0] == 1.0


def test_replay_and_estimate_agree_on_several_correct_answers() -> None:
    from computealloc.fitting.sequential import answer_pools, replay

    log, pools, _ = verifier_log(5)
    n = min(len(p) for p in pools)
    table = estimate(log, f"majority@{n}")
    traj = replay(answer_pools(log), n_orders=4000, random_state=0, max_samples=n)
    got = traj.correct[:, :, n - 1].mean(axis=1)
    np.testing.assert_allclose(got, table.P[:, 0], atol=0.04)
