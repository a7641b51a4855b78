"""Exact majority vote with reused probe samples, against brute force and the estimator."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from computealloc.data.samples import read_samples
from computealloc.estimation.estimate import conditional_majority, estimate, majority_accuracy
from computealloc.estimation.reuse import reuse_accuracy


def brute_force(pool, fixed, correct, free, draws):
    """Average over every draw of ``draws`` pool samples: correct share of the plurality."""
    items = [j for j, c in enumerate(pool) for _ in range(c)] + [-1] * free
    total, count = 0.0, 0
    for picked in itertools.combinations(range(len(items)), draws):
        votes = list(fixed)
        for i in picked:
            if items[i] >= 0:
                votes[items[i]] += 1
        count += 1
        top = max(votes)
        if top > 0:
            winners = [j for j, v in enumerate(votes) if v == top]
            total += sum(correct[j] for j in winners) / len(winners)
    return total / count


def test_matches_brute_force_on_random_small_pools():
    rng = np.random.default_rng(0)
    for _ in range(40):
        rows, width = 3, int(rng.integers(1, 5))
        pool = rng.integers(0, 4, (rows, width))
        fixed = rng.integers(0, 3, (rows, width)) * (rng.random((rows, width)) < 0.5)
        free = rng.integers(0, 3, rows)
        correct = rng.random((rows, width)) < 0.4
        draws = np.arange(7)
        got = conditional_majority(pool, fixed, correct, free, draws)
        for r in range(rows):
            size = pool[r].sum() + free[r]
            for j, d in enumerate(draws):
                if d > size:
                    assert np.isnan(got[r, j])
                else:
                    want = brute_force(pool[r], fixed[r], correct[r], int(free[r]), int(d))
                    assert got[r, j] == pytest.approx(want, abs=1e-12)


def test_matches_brute_force_with_many_clusters():
    # Six clusters: rows need up to 3 quadrature nodes, and fixed votes reorder who can tie.
    rng = np.random.default_rng(2)
    rows, width = 6, 6
    pool = rng.integers(0, 3, (rows, width))
    fixed = rng.integers(0, 3, (rows, width)) * (rng.random((rows, width)) < 0.4)
    free = rng.integers(0, 2, rows)
    correct = rng.random((rows, width)) < 0.3
    draws = np.arange(9)
    got = conditional_majority(pool, fixed, correct, free, draws)
    for r in range(rows):
        size = pool[r].sum() + free[r]
        want = [
            brute_force(pool[r], fixed[r], correct[r], int(free[r]), int(d)) if d <= size else None
            for d in draws
        ]
        for j, w in enumerate(want):
            assert np.isnan(got[r, j]) if w is None else got[r, j] == pytest.approx(w, abs=1e-12)


def test_without_fixed_votes_equals_exact_majority():
    rng = np.random.default_rng(1)
    pool = rng.integers(0, 6, (200, 8))
    free = rng.integers(0, 3, 200)
    correct = np.zeros_like(pool, dtype=bool)
    correct[:, 0] = True
    ks = np.array([1, 2, 4, 8, 16])
    got = conditional_majority(pool, np.zeros_like(pool), correct, free, ks)
    want = majority_accuracy(pool[:, 0], pool[:, 1:], free, ks)
    assert np.allclose(got, want, atol=1e-12, equal_nan=True)


def test_docstring_example():
    got = conditional_majority([[2, 2]], [[1, 0]], [[True, False]], 0, [0, 1, 2])
    assert np.allclose(got, [[1.0, 0.75, 5 / 6]])


def test_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="must have the same shape"):
        conditional_majority([[1, 2]], [[0, 0, 0]], [[True, False]], 0, [1])


def test_rejects_negative_counts():
    with pytest.raises(ValueError, match="`pool` must be a 2-D array of non-negative integer"):
        conditional_majority([[1, -2]], [[0, 0]], [[True, False]], 0, [1])


def test_rejects_pools_beyond_max_pool_size():
    with pytest.raises(ValueError, match=r"Pools of at most 1024 samples are supported\. Got 1025"):
        conditional_majority([[1025, 0]], [[0, 0]], [[True, False]], 0, [1])


def _log(seed: int = 0):
    rng = np.random.default_rng(seed)
    n_q, n = 30, 10
    q = np.repeat(np.arange(n_q), n)
    answer = rng.integers(0, 4, q.size).astype(str).astype(object)
    answer[rng.random(q.size) < 0.15] = None
    return read_samples(
        pd.DataFrame(
            {
                "query_id": [f"q{i:02d}" for i in q],
                "sample_idx": np.tile(np.arange(n), n_q),
                "answer": answer,
                "correct": answer == "0",
                "gold": "0",
            }
        )
    )


def test_reuse_without_probes_equals_estimate():
    log = _log()
    table = estimate(log, "majority@1,majority@3,majority@6")
    n = len(log.samples)
    acc, votes = reuse_accuracy(
        log.samples, table.query_ids, [1, 3, 6], probe=np.zeros(n, bool), pool=np.ones(n, bool)
    )
    assert np.allclose(acc, table.P, atol=1e-12)
    assert (votes == [1, 3, 6]).all()


def test_reuse_with_probes_matches_brute_force_and_charges_probes_once():
    log = _log(1)
    probe = (log.samples["sample_idx"] < 2).to_numpy()
    qids = sorted(log.samples["query_id"].unique())
    acc, votes = reuse_accuracy(log.samples, qids, [1, 2, 5], probe=probe, pool=~probe)
    assert (votes == [2, 2, 5]).all()
    for i, qid in enumerate(qids[:5]):
        rows = log.samples[log.samples["query_id"] == qid]
        labels = {a: j + 1 for j, a in enumerate(sorted({"1", "2", "3"}))}
        labels["0"] = 0

        def counts(part, labels=labels):
            out = [0, 0, 0, 0]
            for a in part["answer"]:
                if not pd.isna(a):
                    out[labels[a]] += 1
            return out

        head, tail = rows[rows["sample_idx"] < 2], rows[rows["sample_idx"] >= 2]
        free = int(tail["answer"].isna().sum())
        correct = [True, False, False, False]
        for j, k in enumerate([1, 2, 5]):
            want = brute_force(counts(tail), counts(head), correct, free, max(k - 2, 0))
            assert acc[i, j] == pytest.approx(want, abs=1e-12)


def test_reuse_rejects_overlapping_masks():
    log = _log()
    n = len(log.samples)
    with pytest.raises(ValueError, match="must be disjoint"):
        reuse_accuracy(log.samples, ["q00"], [1], probe=np.ones(n, bool), pool=np.ones(n, bool))
