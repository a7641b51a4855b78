"""One deployable contract and one runtime entry point for policies and stopping rules."""

from __future__ import annotations

import pytest

from computealloc.data.backends import ReplayBackend
from computealloc.fitting.sequential import fit_stopping
from computealloc.serving.deploy import Deployable, RuntimeOptions, open_runtime
from computealloc.serving.runtime import AnsweringRuntime, Runtime
from computealloc.serving.sequential_runtime import SequentialRuntime
from test_runtime import fit_value, synthetic_log


@pytest.fixture(scope="module")
def log():
    return synthetic_log(120, 8)


@pytest.fixture(scope="module")
def rules(log):
    policy = fit_value(log, 3.0)
    stopping = fit_stopping(log, budget=3.0, method="sequential/pooled", n_orders=8).rule
    return policy, stopping


def test_policies_and_stopping_rules_are_deployable(rules):
    policy, stopping = rules
    for rule in rules:
        assert isinstance(rule, Deployable)
    assert policy.deploy_unit == "samples" and policy.deploy_prices == {}
    assert policy.deploy_actions == tuple(policy.actions_)
    assert stopping.deploy_unit == "samples" and stopping.deploy_prices == {}
    assert stopping.deploy_actions == tuple(f"sequential@{t}" for t in range(1, 9))
    assert policy.describe_rule() == "Value policy, 4 actions"
    assert stopping.describe_rule() == "stopping rule LagrangianStopping"


def test_open_runtime_builds_the_runtime_of_either_rule(log, rules):
    policy, stopping = rules
    served = open_runtime(policy, ReplayBackend(log), budget=3.0)
    sequential = open_runtime(
        stopping, ReplayBackend(log), budget=3.0, options=RuntimeOptions(batch_size=2)
    )
    assert type(served) is Runtime and type(sequential) is SequentialRuntime
    assert sequential.batch_size == 2
    prompts = log.queries["prompt"].tolist()[:20]
    for runtime, worst in ((served, 8.0), (sequential, 8.0)):
        assert isinstance(runtime, AnsweringRuntime)
        assert runtime.worst_cost == worst and runtime.cost_unit == "samples"
        assert list(runtime.arms) == ["m"]
        answers = runtime.run_stream(prompts)
        assert runtime.ledger.queries == 20
        assert runtime.ledger.cost == sum(a.cost for a in answers)
        assert all(a.action in runtime.actions for a in answers)
    assert served.describe() == policy.describe_rule()
    assert sequential.describe() == stopping.describe_rule()


def test_every_deployable_saves_json_that_load_file_reads_back(tmp_path, log, rules):
    from computealloc.fitting.persist import load_file

    prompts = log.queries["prompt"].tolist()[:10]
    for i, rule in enumerate(rules):
        path = tmp_path / f"rule{i}.json"
        rule.save(path)
        back = load_file(path)
        assert type(back) is type(rule) and back.describe_rule() == rule.describe_rule()
        assert back.deploy_actions == rule.deploy_actions
        first = open_runtime(rule, ReplayBackend(log, seed=1), budget=3.0).run_stream(prompts)
        again = open_runtime(back, ReplayBackend(log, seed=1), budget=3.0).run_stream(prompts)
        assert [a.action for a in first] == [a.action for a in again]
        assert [a.text for a in first] == [a.text for a in again]


def test_open_runtime_refuses_what_it_cannot_serve(log, rules):
    with pytest.raises(TypeError, match="must be a fitted policy or a calibrated stopping rule"):
        open_runtime(object(), ReplayBackend(log), budget=3.0)  # type: ignore[arg-type]
    with pytest.raises(
        ValueError, match=r"samples one model; the backends serve 2 models \(a, b\)"
    ):
        open_runtime(rules[1], {"a": ReplayBackend(log), "b": ReplayBackend(log)}, budget=3.0)
