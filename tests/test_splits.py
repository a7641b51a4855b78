"""Seeded query and sample splits: disjoint, complete, reproducible."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from computealloc.data.splits import seeded_rng, split_queries, split_samples


def test_query_split_is_a_partition():
    s = split_queries(101, seed=3)
    parts = np.concatenate([s.train, s.calibration, s.test])
    assert np.array_equal(np.sort(parts), np.arange(101))
    assert (len(s.train), len(s.calibration)) == (61, 20)
    assert not set(s.train) & set(s.test)
    assert not set(s.calibration) & set(s.test)


def test_query_split_reproducible_and_seed_dependent():
    a, b, c = split_queries(50, seed=1), split_queries(50, seed=1), split_queries(50, seed=2)
    assert np.array_equal(a.test, b.test)
    assert not np.array_equal(a.test, c.test)


def test_query_split_keeps_every_part_non_empty():
    s = split_queries(3, fractions=(0.98, 0.01, 0.01))
    assert (len(s.train), len(s.calibration), len(s.test)) == (1, 1, 1)


@pytest.mark.parametrize("n", [2, 2.5, True])
def test_query_split_rejects_bad_n(n):
    with pytest.raises(ValueError, match="The 'n_queries' parameter of split_queries must be"):
        split_queries(n)


@pytest.mark.parametrize("fractions", [(0.5, 0.5), (0.6, 0.2, 0.3), (0.8, 0.2, 0.0)])
def test_query_split_rejects_bad_fractions(fractions):
    with pytest.raises(ValueError, match="The 'fractions' parameter of split_queries must be"):
        split_queries(10, fractions=fractions)


def _frame(sizes: dict[tuple[str, str], int]) -> pd.DataFrame:
    rows = [(m, q) for (m, q), n in sizes.items() for _ in range(n)]
    return pd.DataFrame(rows, columns=["model", "query_id"])


def test_sample_halves_per_model_and_query():
    sizes = {("a", "q1"): 5, ("a", "q2"): 2, ("b", "q1"): 4, ("b", "q3"): 1}
    frame = _frame(sizes)
    mask = split_samples(frame, seed=0)
    got = frame.assign(a=mask).groupby(["model", "query_id"])["a"].sum().to_dict()
    assert got == {key: n // 2 for key, n in sizes.items()}


def test_sample_halves_reproducible_and_shuffled():
    frame = _frame({("m", f"q{i}"): 10 for i in range(40)})
    a, b = split_samples(frame, seed=7), split_samples(frame, seed=7)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, split_samples(frame, seed=8))
    first_five = a.reshape(40, 10)[:, :5].all(axis=1)
    assert not first_five.all()


def test_sample_split_independent_of_query_split_stream():
    assert seeded_rng(0, "queries").random() != seeded_rng(0, "samples").random()


def test_sample_split_needs_columns():
    with pytest.raises(ValueError, match="must have the columns 'query_id' and 'model'"):
        split_samples(pd.DataFrame({"query_id": ["q"]}))
