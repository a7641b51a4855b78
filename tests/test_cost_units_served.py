"""Every cost unit ``fit`` offers can be served: the live charge is the fitted definition.

For each unit (and a priced variant), a policy is fitted by :func:`fit_policy`, saved, loaded
from its file and served by the proxy on a replayed log; every answer's cost must equal an
independent recomputation from the samples it drew, the ledger must add them up, and the online
controller must hold the mean near the budget. A stopping rule goes the same way.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from fastapi.testclient import TestClient

from computealloc.data.backends import ReplayBackend
from computealloc.estimation.units import COST_UNITS
from computealloc.fitting.fit import fit_policy
from computealloc.fitting.persist import load_file, save_policy, save_stopping
from computealloc.fitting.sequential import fit_stopping
from computealloc.serving.runtime import Runtime
from computealloc.serving.sequential_runtime import SequentialRuntime
from computealloc.serving.server import create_app
from test_runtime import synthetic_log

ACTIONS = "majority@1,majority@2,majority@4,majority@8"


@pytest.fixture(scope="module")
def log():
    base = synthetic_log(200, 8)
    frame = base.to_frame()
    frame["chars"] = frame["response"].str.len()
    return type(base).from_frame(frame)


def _expected(unit: str, rate: float, samples) -> float:
    """A query's cost from its samples, by the unit's definition (units module docstring)."""
    if unit == "samples":
        return len(samples) * rate
    if unit == "chars":
        return sum(len(c.text) for c in samples) * rate
    tokens = sum(c.output_tokens for c in samples)
    return tokens * rate / 1e6 if unit == "usd" else tokens * rate


@pytest.mark.parametrize(
    ("unit", "prices", "quantile"),
    [
        ("samples", None, 0.5),
        ("samples", {"m": 2.5}, 0.5),
        ("tokens", None, 0.5),
        ("chars", None, 0.5),
        ("usd", {"m": 15.0}, 0.5),
    ],
)
def test_fit_save_and_serve_every_cost_unit(log, tmp_path, unit, prices, quantile):
    probe = fit_policy(log, budget=1e9, actions=ACTIONS, cost=unit, prices=prices)
    costs = np.asarray(probe.policy.costs_)
    budget = float(costs.min() + quantile * (costs.max() - costs.min()))
    fitted = fit_policy(log, budget=budget, actions=ACTIONS, cost=unit, prices=prices)
    save_policy(fitted.policy, tmp_path / "policy.json")
    policy = load_file(tmp_path / "policy.json")
    assert policy.cost_unit_ == unit
    runtime = Runtime(policy, ReplayBackend(log, seed=1), budget=budget)
    rate = 1.0 if prices is None else prices["m"]
    prompts = log.queries["prompt"].tolist()
    with TestClient(create_app(runtime)) as client:
        reply = client.post(
            "/v1/chat/completions",
            json={"model": "x", "messages": [{"role": "user", "content": prompts[0]}]},
        )
        assert reply.status_code == 200
        assert reply.json()["computealloc"]["cost_unit"] == unit
    answers = runtime.run_stream(prompts[1:])
    for answer in answers:
        assert answer.cost == pytest.approx(_expected(unit, rate, answer.samples), rel=1e-12)
    ledger = runtime.ledger
    assert ledger.queries == len(prompts)
    assert ledger.cost == pytest.approx(
        reply.json()["computealloc"]["cost"] + sum(a.cost for a in answers)
    )
    assert math.isclose(ledger.mean_cost, budget, rel_tol=0.05), (ledger.mean_cost, budget)
    assert set(COST_UNITS) == {"samples", "tokens", "chars", "usd"}


def test_fit_save_and_serve_a_stopping_rule(log, tmp_path):
    fitted = fit_stopping(log, budget=3.0, method="sequential")
    save_stopping(fitted.rule, tmp_path / "rule.json")
    rule = load_file(tmp_path / "rule.json")
    runtime = SequentialRuntime(rule, ReplayBackend(log, seed=1), budget=3.0)
    with TestClient(create_app(runtime)) as client:
        for prompt in log.queries["prompt"]:
            reply = client.post(
                "/v1/chat/completions",
                json={"model": "x", "messages": [{"role": "user", "content": prompt}]},
            )
            body = reply.json()["computealloc"]
            assert body["cost"] == body["samples"] and body["cost_unit"] == "samples"
    ledger = runtime.ledger
    assert ledger.cost == ledger.samples and ledger.queries == len(log.queries)
    assert math.isclose(ledger.mean_cost, 3.0, rel_tol=0.05), ledger.mean_cost
