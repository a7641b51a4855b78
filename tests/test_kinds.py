"""The kind registry: specs, the exact estimator and the live runtime all read it."""

from __future__ import annotations

import numpy as np
import pytest

from computealloc.data.backends import ReplayBackend
from computealloc.estimation import kinds
from computealloc.estimation.actions import parse_action
from computealloc.estimation.estimate import estimate
from computealloc.estimation.kernels import ClusteredSamples, Float, Int
from computealloc.estimation.kinds import Kind, get_kind, kind_names, register
from computealloc.estimation.voting import Vote
from computealloc.serving.runtime import Runtime
from test_runtime import fit_value, synthetic_log


def _first_accuracy(pools: ClusteredSamples, ks: Int) -> Float:
    """The first of K draws is a uniform draw: its accuracy is the share of correct samples."""
    n_correct = pools.gold + (pools.others * pools.others_correct).sum(axis=1)
    return np.repeat((n_correct / pools.n)[:, None], len(ks), axis=1)


FIRST = Kind(
    name="first",
    summary="the first of K samples (a toy kind: K samples paid, one used)",
    accuracy=_first_accuracy,
    combine=lambda samples, rng: Vote(samples[0].answer, 0, 1),
)


@pytest.fixture
def with_first(monkeypatch):
    """The registry with one more kind, restored afterwards."""
    monkeypatch.setattr(kinds.base, "_KINDS", dict(kinds.base._KINDS))
    register(FIRST)
    yield FIRST


def test_the_registered_kinds():
    assert kind_names() == ("best_of", "majority", "pass", "weighted", "top_half")
    assert get_kind("best_of").needs == ("score",)
    assert get_kind("majority").combine is not None and get_kind("pass").combine is None
    with pytest.raises(ValueError, match="Unknown action kind 'vote'; expected one of"):
        get_kind("vote")
    with pytest.raises(ValueError, match="Kind name 'majority' is taken"):
        register(get_kind("majority"))


def test_a_registered_kind_is_parsed_estimated_and_served(with_first):
    log = synthetic_log(40, 6)
    assert parse_action("m/first@3").kind == "first"
    table = estimate(log, "majority@1,first@3")
    np.testing.assert_allclose(table.P[:, 1], table.P[:, 0], rtol=1e-12)  # same draw, one used
    np.testing.assert_array_equal(table.C[:, 1], 3.0)  # K samples are paid
    policy = fit_value(log, 3.5, actions="first@3,majority@4")
    runtime = Runtime(policy, ReplayBackend(log), budget=3.5)
    answers = runtime.run_stream(log.queries["prompt"].tolist())
    firsts = [a for a in answers if a.action == "first@3"]
    assert firsts and all(a.k == 3 and a.answer == a.samples[0].answer for a in firsts)
