"""Runtime and online budget control: votes, cost accounting, routing, probes, drift."""

from __future__ import annotations

import asyncio
import math
import threading

import numpy as np
import pandas as pd
import pytest

from computealloc.data.backends import BackendError, Completion, ReplayBackend
from computealloc.data.samples import SampleLog
from computealloc.estimation.estimate import estimate
from computealloc.estimation.features import build_features, probe_mask
from computealloc.fitting.policies import Imitation, LengthHeuristic, Random, Uniform, Value
from computealloc.serving.budget import BudgetController
from computealloc.serving.runtime import Runtime, RuntimeAnswer, live_features, majority_vote
from conftest import needs_data

ACTIONS = "majority@1,majority@2,majority@4,majority@8"


def synthetic_log(
    n_queries: int = 120, n_samples: int = 16, *, seed: int = 0, model: str = "m"
) -> SampleLog:
    """Queries of varying difficulty; harder ones have longer prompts and split answers.

    Query ``i`` has difficulty ``d_i ~ U[0, 1]``: a sample is right with probability
    ``0.95 - 0.55 d`` and otherwise picks one of ``1 + 4 d`` wrong answers, so majority voting
    helps most on hard queries. Responses end in ``\\boxed{answer}``; tokens vary.
    """
    rng = np.random.default_rng(seed)
    difficulty = rng.random(n_queries)
    rows = []
    for i, d in enumerate(difficulty):
        prompt = f"Question {i}: " + " ".join(["step"] * int(4 + 40 * d)) + " How many?"
        right = rng.random(n_samples) < 0.95 - 0.55 * d
        wrong = i + 1 + rng.integers(0, 1 + int(4 * d), n_samples)
        for j in range(n_samples):
            answer = str(i) if right[j] else str(wrong[j])
            rows.append(
                {
                    "query_id": f"q{i:04d}",
                    "sample_idx": j,
                    "model": model,
                    "prompt": prompt,
                    "gold": str(i),
                    "answer": answer,
                    "response": f"Work {j}. The answer is \\boxed{{{answer}}}.",
                    "tokens": 10 + j,
                }
            )
    return SampleLog.from_frame(pd.DataFrame(rows))


def fit_value(
    log: SampleLog, budget: float, *, actions: str = ACTIONS, probe_m: int = 0, rows=None
) -> Value:
    """A small Value policy fitted and calibrated on (some of) the log's queries."""
    table = estimate(log, actions)
    X = build_features(log, probe_m=probe_m).X.loc[list(table.query_ids)]
    rows = np.arange(table.n_queries) if rows is None else rows
    policy = Value(n_estimators=20, min_child_samples=5, random_state=0)
    return policy.fit(X.iloc[rows], table.subset(rows)).calibrate(X.iloc[rows], budget)


@pytest.fixture(scope="module")
def log() -> SampleLog:
    return synthetic_log()


@pytest.fixture(scope="module")
def value(log: SampleLog) -> Value:
    return fit_value(log, 3.0)


def _prompts(log: SampleLog) -> list[str]:
    return log.queries["prompt"].tolist()


# --- votes ---------------------------------------------------------------------------------------


def test_majority_vote_clusters_normalised_answers_and_skips_abstentions():
    votes = [
        Completion("I give up."),
        Completion("so \\boxed{5}"),
        Completion("#### 1,000"),
        Completion("The answer is 1000.0."),
    ]
    assert majority_vote(votes) == majority_vote(votes, rng=np.random.default_rng(0))
    vote = majority_vote(votes)
    assert (vote.answer, vote.index, vote.count) == ("1000", 2, 2)


def test_majority_vote_uses_logged_answers_of_replayed_samples():
    votes = [Completion("text \\boxed{9}", answer="3", from_log=True)] * 2 + [
        Completion("\\boxed{9}")
    ]
    assert majority_vote(votes).answer == "3"


def test_majority_vote_breaks_ties_at_random_or_by_first_seen():
    votes = [Completion("\\boxed{1}"), Completion("\\boxed{2}"), Completion("none")]
    assert majority_vote(votes).answer == "1"
    rng = np.random.default_rng(0)
    winners = {majority_vote(votes, rng=rng).answer for _ in range(50)}
    assert winners == {"1", "2"}


def test_majority_vote_without_answers_abstains():
    assert majority_vote([Completion("no idea"), Completion("")]).answer is None


@pytest.mark.parametrize(
    "sample",
    [
        Completion("so \\boxed{1,000}"),
        Completion("no idea"),
        Completion("text \\boxed{9}", answer="3", from_log=True),
        Completion("text", answer=None, from_log=True),
    ],
)
def test_single_sample_vote_equals_the_general_vote(sample):
    """The one-sample shortcut gives what the clustering gives with an abstention added."""
    assert majority_vote([sample]) == majority_vote([sample, Completion("no answer")])


# --- live features -------------------------------------------------------------------------------


def test_live_features_equal_the_log_features_of_the_same_probes(log):
    m = 3
    mask = probe_mask(log, m)
    probes = log.samples.loc[mask]
    completions = [
        [
            Completion(r.response, output_tokens=int(r.tokens), answer=r.answer, from_log=True)
            for r in probes[probes["query_id"] == q].itertuples()
        ]
        for q in log.queries["query_id"]
    ]
    live = live_features(_prompts(log), completions, m)
    expected = build_features(log, probe_m=m).X
    pd.testing.assert_frame_equal(live, expected.reset_index(drop=True), check_like=False)


# --- the runtime ---------------------------------------------------------------------------------


def test_each_answer_draws_its_action_k_and_the_ledger_sums_them(log, value):
    runtime = Runtime(value, ReplayBackend(log), budget=3.0)
    answers = runtime.run_stream(_prompts(log)[:40], concurrency=4)
    ks = {a: int(a.split("@")[1]) for a in value.actions_}
    for ans in answers:
        assert ans.k == ks[ans.action] == len(ans.samples) == ans.cost
        assert ans.text in {c.text for c in ans.samples}
        assert ans.model == "m"
    ledger = runtime.ledger
    assert ledger.queries == 40 and ledger.failed == 0
    assert ledger.samples == sum(len(a.samples) for a in answers) == ledger.cost
    assert ledger.output_tokens == sum(c.output_tokens for a in answers for c in a.samples)
    assert sum(ledger.actions.values()) == 40
    state = runtime.controller.state()
    assert (state.n, state.in_flight, state.spent) == (40, 0, ledger.cost)


def test_replayed_answers_are_the_majority_of_distinct_logged_samples(log, value):
    runtime = Runtime(value, ReplayBackend(log, seed=3), budget=3.0)
    answers = runtime.run_stream(_prompts(log)[:30])
    for prompt, ans in zip(_prompts(log)[:30], answers, strict=True):
        texts = [c.text for c in ans.samples]
        assert len(set(texts)) == len(texts)  # without replacement
        counts = pd.Series([c.answer for c in ans.samples]).value_counts()
        assert counts[ans.answer] == counts.max()
        gold = prompt.split(":")[0].removeprefix("Question ")
        assert ans.correct == (ans.answer == gold)


def test_a_conversation_is_sent_whole_and_decided_on_its_last_user_turn(log, value):
    prompts = _prompts(log)[:10]
    plain = Runtime(value, ReplayBackend(log, seed=3), budget=3.0).run_stream(prompts)
    runtime = Runtime(value, ReplayBackend(log, seed=3), budget=3.0)
    conversations = [
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": p}]
        for p in prompts
    ]
    answers = [
        asyncio.run(runtime.answer(c, params={"seed": 1}))  # type: ignore[arg-type]
        for c in conversations
    ]
    assert [(a.action, a.answer, a.samples) for a in answers] == [
        (a.action, a.answer, a.samples) for a in plain
    ]
    with pytest.raises(ValueError, match="conversation whose last user message has text"):
        asyncio.run(runtime.answer([{"role": "user", "content": " "}]))
    with pytest.raises(ValueError, match=r"'params' parameter of Runtime\.answer must not set"):
        asyncio.run(runtime.answer(prompts[0], params={"n": 2}))


def test_choices_are_the_distinct_answers_ranked_by_votes_the_returned_one_first():
    texts = ["\\boxed{1}", "\\boxed{2}", "none", "\\boxed{2}", "\\boxed{3}", "\\boxed{1}"]
    probe = Completion("\\boxed{9}")  # drawn but not a voter (k = 6 of 7 samples)
    answer = RuntimeAnswer(
        answer="1",
        text=texts[5],
        action="majority@6",
        k=6,
        model="m",
        cost=7.0,
        lam=0.0,
        samples=(probe, *(Completion(t) for t in texts)),
        index=5,  # the vote broke the 1-2 tie for 1 and returned its last sample
    )
    assert [c.text for c in answer.choices(2)] == [texts[5], texts[1]]
    assert [c.text for c in answer.choices(10)] == [texts[5], texts[1], texts[4]]
    abstained = RuntimeAnswer(None, "none", "majority@1", 1, "m", 1.0, 0.0, (Completion("none"),))
    assert [c.text for c in abstained.choices(3)] == ["none"]


def test_single_action_policy_needs_no_features_and_spends_one_sample(log):
    table = estimate(log, "majority@1")
    policy = Uniform().fit(np.zeros((table.n_queries, 1)), table)
    runtime = Runtime(policy, ReplayBackend(log), budget=1.0)
    answers = runtime.run_stream(_prompts(log)[:5])
    assert [a.cost for a in answers] == [1.0] * 5
    assert runtime.ledger.mean_cost == 1.0


def test_fixed_scores_decide_like_scoring_zero_features_per_batch(log):
    """A policy that reads no feature is scored once; decisions equal per-batch scoring."""
    table = estimate(log, "majority@1,majority@4")
    policy = Uniform().fit(pd.DataFrame({"n_chars": np.zeros(table.n_queries)}), table)
    policy.calibrate(pd.DataFrame({"n_chars": [0.0]}), 2.0)

    def zeros(prompts, probes):  # type: ignore[no-untyped-def]
        return pd.DataFrame({"n_chars": np.zeros(len(prompts))})

    runs = [  # one query at a time: a feature function batches concurrent queries
        Runtime(policy, ReplayBackend(log), budget=2.0, features=f).run_stream(_prompts(log)[:60])
        for f in (None, zeros)
    ]
    assert [a.action for a in runs[0]] == [a.action for a in runs[1]]
    assert [a.lam for a in runs[0]] == [a.lam for a in runs[1]]
    assert {a.action for a in runs[0]} == {"majority@1", "majority@4"}  # the price moved


def test_probes_are_reused_in_the_vote_and_charged_once(log):
    policy = fit_value(log, 4.0, probe_m=2)
    runtime = Runtime(policy, ReplayBackend(log), budget=4.0, probe_m=2)
    answers = runtime.run_stream(_prompts(log)[:40], concurrency=8)
    for ans in answers:
        k = int(ans.action.split("@")[1])
        assert len(ans.samples) == ans.k == ans.cost == max(k, 2)
        assert len({c.text for c in ans.samples}) == len(ans.samples)
    assert runtime.ledger.samples == sum(a.cost for a in answers)


def test_routing_sends_each_action_to_its_model_backend():
    a, b = synthetic_log(30, 4, model="small"), synthetic_log(30, 4, seed=1, model="large")
    both = SampleLog.from_frame(
        pd.concat([a.to_frame(), b.to_frame().assign(prompt=a.to_frame()["prompt"])])
    )
    table = estimate(both, "small/majority@1,large/majority@1,small/majority@4")
    X = build_features(both).X.loc[list(table.query_ids)]
    policy = Value(n_estimators=10, min_child_samples=3, random_state=0).fit(X, table)
    backends = {m: ReplayBackend(both, m) for m in ("small", "large")}
    runtime = Runtime(policy.calibrate(X, 2.0), backends, budget=2.0)
    answers = runtime.run_stream(_prompts(both)[:30], concurrency=5)
    for ans in answers:
        assert ans.model == ans.action.split("/")[0]
    assert len({ans.model for ans in answers}) >= 1


class _Failing:
    """A backend whose ``fail_on``-th call (0-based) raises."""

    model = "m"

    def __init__(self, inner: ReplayBackend, fail_on: int) -> None:
        self.inner, self.fail_on, self.calls = inner, fail_on, 0

    async def sample(self, prompt, n, *, params=None):  # type: ignore[no-untyped-def]
        self.calls += 1
        if self.calls - 1 == self.fail_on:
            raise BackendError("boom", retryable=False, status_code=500)
        return await self.inner.sample(prompt, n)

    async def aclose(self) -> None:
        """Nothing to close."""


def test_a_failure_after_the_probes_charges_the_probes_only(log):
    table = estimate(log, "majority@4,majority@8")
    policy = Uniform().fit(np.zeros((table.n_queries, 1)), table)  # never stops at the probes
    runtime = Runtime(policy, _Failing(ReplayBackend(log), 1), budget=6.0, probe_m=2)
    with pytest.raises(BackendError, match="boom"):
        asyncio.run(runtime.answer(_prompts(log)[0]))
    ledger, state = runtime.ledger, runtime.controller.state()
    assert (ledger.queries, ledger.failed, ledger.samples, ledger.cost) == (1, 1, 2, 2.0)
    assert (state.n, state.spent, state.in_flight, state.reserved) == (1, 2.0, 0, 0.0)


def test_a_failure_before_any_sample_charges_nothing(log, value):
    runtime = Runtime(value, _Failing(ReplayBackend(log), 0), budget=3.0)
    with pytest.raises(BackendError):
        asyncio.run(runtime.answer(_prompts(log)[0]))
    assert runtime.ledger.queries == 0 and runtime.ledger.failed == 1
    assert runtime.controller.state().in_flight == 0


def test_token_costs_charge_the_reported_tokens(log):
    table = estimate(log, "majority@1,majority@4", cost="tokens")
    X = build_features(log).X.loc[list(table.query_ids)]
    policy = Value(n_estimators=10, random_state=0).fit(X, table).calibrate(X, 40.0)
    runtime = Runtime(policy, ReplayBackend(log), budget=40.0)
    answers = runtime.run_stream(_prompts(log)[:10])
    for ans in answers:
        assert ans.cost == sum(c.output_tokens for c in ans.samples)


def test_usd_costs_price_the_tokens_per_model(log):
    table = estimate(log, "majority@1,majority@4", cost="usd", prices={"m": 2e4})
    X = build_features(log).X.loc[list(table.query_ids)]
    policy = Value(n_estimators=10, random_state=0).fit(X, table).calibrate(X, 0.8)
    runtime = Runtime(policy, ReplayBackend(log), budget=0.8, prices={"m": 2e4})
    ans = runtime.run_stream(_prompts(log)[:1])[0]
    assert ans.cost == pytest.approx(sum(c.output_tokens for c in ans.samples) * 2e4 / 1e6)


def test_missing_token_counts_are_an_error_for_a_token_budget():
    frame = synthetic_log(20, 4).to_frame().drop(columns="tokens").assign(tokens=5)
    log = SampleLog.from_frame(frame)
    table = estimate(log, "majority@1,majority@2", cost="tokens")
    X = build_features(log).X.loc[list(table.query_ids)]
    policy = Value(n_estimators=5, random_state=0).fit(X, table).calibrate(X, 8.0)
    bare = SampleLog.from_frame(frame.drop(columns="tokens"))
    runtime = Runtime(policy, ReplayBackend(bare), budget=8.0)
    with pytest.raises(BackendError, match="did not report the output tokens"):
        asyncio.run(runtime.answer(_prompts(log)[0]))
    assert runtime.controller.state().in_flight == 0


@pytest.mark.parametrize(
    ("make", "kwargs", "error", "match"),
    [
        ("random", {}, ValueError, "Random policy has no per-action scores"),
        ("value", {"budget": 0.5}, ValueError, "budget 0.5 of Runtime is infeasible"),
        ("value", {"budget": -1.0}, ValueError, r"'budget' parameter of Runtime .* Got -1.0"),
        ("value", {"probe_m": -1}, ValueError, r"'probe_m' parameter of Runtime .* Got -1"),
        (
            "value",
            {"controller": BudgetController(2.0)},
            ValueError,
            r"'controller' parameter of Runtime must be a BudgetController for the budget 1.5",
        ),
        ("probe", {}, ValueError, "reads probe features .* pass probe_m"),
        (
            "pass",
            {},
            ValueError,
            "cannot execute the action 'pass@2' live: it needs the gold answer",
        ),
        ("value", {"features": 3}, TypeError, "'features' parameter of Runtime must be callable"),
        ("unnamed", {}, ValueError, "fitted without feature names"),
        ("usd-unpriced", {}, ValueError, r"'prices' parameter of Runtime has no price for arm 'm'"),
        (
            "usd",
            {"prices": {"m": 2.0}},
            ValueError,
            r"The prices given \(usd \(m=2\)\) differ from the prices the policy was fitted "
            r"with \(usd \(m=1\)\)",
        ),
    ],
)
def test_runtime_validation(log, make, kwargs, error, match):
    table = estimate(log, "majority@1,majority@2")
    X = build_features(log).X.loc[list(table.query_ids)]
    policies = {
        "random": lambda: Random().fit(X, table),
        "value": lambda: Value(n_estimators=5).fit(X, table),
        "probe": lambda: Value(n_estimators=5).fit(
            build_features(log, probe_m=2).X.loc[list(table.query_ids)], table
        ),
        "pass": lambda: Value(n_estimators=5).fit(X, estimate(log, "majority@1,pass@2")),
        "unnamed": lambda: Value(n_estimators=5).fit(X.to_numpy(), table),
        "usd": lambda: Value(n_estimators=5).fit(
            X, estimate(log, "majority@1,majority@2", cost="usd", prices={"m": 1.0})
        ),
    }
    policies["usd-unpriced"] = lambda: _unpriced(policies["usd"]())
    args = {"budget": 1.5, **kwargs}
    with pytest.raises(error, match=match):
        Runtime(policies[make](), ReplayBackend(log), **args)


def _unpriced(policy):
    """A usd policy saved before policy files recorded prices."""
    policy.prices_ = {}
    return policy


def test_runtime_charges_the_policys_prices(log):
    """A policy fitted with per-sample prices is charged by them live, no prices passed."""
    two = pd.concat([log.to_frame(), log.to_frame().assign(model="big")], ignore_index=True)
    two_log = SampleLog.from_frame(two)
    table = estimate(two_log, "m/majority@1,big/majority@1", prices={"m": 0, "big": 1})
    X = build_features(two_log).X.loc[list(table.query_ids)]
    policy = Value(n_estimators=5, random_state=0).fit(X, table).calibrate(X, 0.5)
    assert policy.prices_ == {"m": "0", "big": "1"}
    backends = {m: ReplayBackend(two_log, m) for m in ("m", "big")}
    runtime = Runtime(policy, backends, budget=0.5)
    answers = runtime.run_stream(_prompts(two_log))
    big = sum(a.model == "big" for a in answers)
    assert runtime.ledger.cost == big == sum(a.cost for a in answers)
    assert runtime.ledger.samples == len(answers)


def test_runtime_rejects_unroutable_actions(log):
    table = estimate(log, "majority@1,majority@2")
    policy = Value(n_estimators=5).fit(build_features(log).X.loc[list(table.query_ids)], table)
    two = {"a": ReplayBackend(log), "b": ReplayBackend(log)}
    with pytest.raises(ValueError, match="no model prefix, but 2 backends were given"):
        Runtime(policy, two, budget=1.5)
    policy.actions_ = ("other/majority@1", "other/majority@2")
    with pytest.raises(ValueError, match="routes to model 'other', but no backend serves it"):
        Runtime(policy, ReplayBackend(log), budget=1.5)


def test_answer_and_run_stream_validation(log, value):
    runtime = Runtime(value, ReplayBackend(log), budget=3.0)
    with pytest.raises(ValueError, match=r"'prompt' parameter of Runtime\.answer must be a non"):
        asyncio.run(runtime.answer("  "))
    with pytest.raises(ValueError, match=r"'concurrency' parameter of Runtime\.run_stream"):
        runtime.run_stream(["x"], concurrency=0)


def test_policies_without_a_price_get_a_controller_scaled_by_their_scores(log):
    table = estimate(log, "majority@1,majority@4")
    X = build_features(log).X.loc[list(table.query_ids)]
    policy = LengthHeuristic().fit(X, table)
    runtime = Runtime(policy, ReplayBackend(log), budget=2.0)
    assert runtime.controller is None and runtime.lam == 0.0
    runtime.run_stream(_prompts(log)[:60])
    scores = policy.scores(X.iloc[:1])
    assert runtime.controller.scale == pytest.approx(np.ptp(scores) / 3.0)
    assert runtime.controller.lam_min == -math.inf  # scores are not accuracies
    imitation = Imitation(budget=2.0, n_estimators=5).fit(X, table).calibrate(X, 2.0)
    assert Runtime(imitation, ReplayBackend(log), budget=2.0).controller.lam0 == imitation.lam_


def test_a_cancelled_query_releases_its_reservation(log, value):
    runtime = Runtime(value, ReplayBackend(log), budget=3.0)

    async def cancel_some() -> None:
        tasks = [asyncio.ensure_future(runtime.answer(p)) for p in _prompts(log)[:8]]
        await asyncio.sleep(0)
        for task in tasks[::2]:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(cancel_some())
    state = runtime.controller.state()
    assert state.in_flight == 0 and state.reserved == 0.0
    assert state.n == runtime.ledger.queries


# --- the controller ------------------------------------------------------------------------------


def test_controller_price_is_exactly_the_scaled_deficit_without_integral():
    rng = np.random.default_rng(0)
    ctl = BudgetController(4.0, 0.5, gain=0.2, integral=0.0, scale=0.1, lam_min=-10.0)
    costs = np.array([1.0, 2.0, 4.0, 8.0])
    spent = 0.0
    for t in range(1, 200):
        scores = rng.random((1, 4))
        (action,), lam = ctl.decide(scores, costs)
        assert action == np.argmax(scores[0] - lam * costs)
        realised = costs[action] + rng.integers(0, 2)
        ctl.settle(costs[action], realised)
        spent += realised
        deficit = spent / 4.0 - t
        assert ctl.lam == pytest.approx(0.5 + 0.2 * 0.1 * deficit)
    state = ctl.state()
    # the guarantee: |mean - B| / B = |lam - lam0| / (gain * scale * t)
    assert abs(state.mean_cost / 4.0 - 1) == pytest.approx(abs(state.lam - 0.5) / (0.02 * 199))


def test_controller_decides_alike_with_a_cost_row_or_per_query_costs():
    rng = np.random.default_rng(1)
    row = np.array([1.0, 2.0, 4.0, 8.0])
    shared, per_query = (BudgetController(3.0, 0.05, scale=0.05) for _ in range(2))
    for _ in range(50):
        scores = rng.random((int(rng.integers(1, 6)), 4))
        a, lam_a = shared.decide(scores, row)
        b, lam_b = per_query.decide(scores, np.tile(row, (len(scores), 1)))
        assert a.tolist() == b.tolist() and lam_a == lam_b and a.dtype == np.int64
        assert shared.state() == per_query.state()
        for ctl, actions in ((shared, a), (per_query, b)):
            for action in actions:
                ctl.settle(row[action], row[action] + 1.0)


def test_controller_reserves_in_flight_queries_at_their_expected_cost():
    ctl = BudgetController(2.0, 1.0, gain=0.1, scale=1.0)
    actions, lam = ctl.decide(np.array([[0.0, 10.0]] * 3), [1.0, 4.0])
    assert actions.tolist() == [1, 1, 1] and lam == 1.0
    state = ctl.state()
    assert (state.in_flight, state.reserved, state.deficit) == (3, 12.0, 6.0)
    assert ctl.lam == pytest.approx(1.0 + 0.1 * 6.0 / 2.0)
    for realised in (4.0, 4.0):
        ctl.settle(4.0, realised)
    ctl.settle(4.0, None)  # failed without cost: not a query
    state = ctl.state()
    assert (state.n, state.spent, state.in_flight, state.reserved, state.deficit) == (
        2,
        8.0,
        0,
        0.0,
        4.0,
    )
    ctl.charge(1.0)
    assert ctl.state().n == 3 and ctl.state().spent == 9.0


def test_controller_reserve_opens_a_query_like_a_decision():
    reserved, decided = BudgetController(2.0, 0.5, scale=0.5), BudgetController(2.0, 0.5, scale=0.5)
    for ctl in (reserved, decided):
        ctl.charge(5.0)
    lam = reserved.reserve(3.0)
    _, lam_decided = decided.decide([[0.0]], [3.0])
    assert lam == lam_decided == pytest.approx(0.5 + 0.2 * 0.5 * 3.0 / 2.0)
    assert reserved.state() == decided.state()
    assert reserved.state().in_flight == 1 and reserved.state().reserved == 3.0
    reserved.settle(3.0, 1.0)
    assert reserved.state().spent == 6.0 and reserved.state().in_flight == 0
    with pytest.raises(ValueError, match=r"'expected' parameter of BudgetController.reserve"):
        reserved.reserve(-1.0)


def test_controller_bounds_hold_and_the_integral_does_not_wind_up():
    ctl = BudgetController(1.0, 0.0, gain=0.5, integral=0.1, scale=1.0, lam_max=2.0)
    for _ in range(50):
        ctl.decide([[0.0, 1.0]], [1.0, 5.0])
        ctl.settle(5.0, 5.0)  # always overspends: the price saturates
    assert ctl.lam == 2.0
    area = ctl._area
    ctl.decide([[0.0, 1.0]], [1.0, 5.0])
    assert ctl._area == area  # no integration while held at the bound
    fixed = BudgetController(1.0, 0.3, lam_min=0.3, lam_max=0.3)
    fixed.settle(0.0, 9.0)
    assert fixed.lam == 0.3


def test_controller_is_thread_safe():
    ctl = BudgetController(2.0, 0.0)

    def work() -> None:
        for _ in range(500):
            ctl.decide([[0.0, 0.0]], [2.0, 2.0])
            ctl.settle(2.0, 3.0)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    state = ctl.state()
    assert (state.n, state.spent, state.in_flight) == (2000, 6000.0, 0)
    assert state.reserved == 0.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"budget": 0.0}, r"'budget' parameter of BudgetController must be a float in \(0, inf\)"),
        ({"gain": -1.0}, r"'gain' .* a float in \(0, inf\). Got -1.0 instead"),
        ({"scale": math.inf}, r"'scale' .* a float in \(0, inf\). Got inf instead"),
        ({"integral": -0.1}, r"'integral' .* a float in \[0.0, inf\). Got -0.1 instead"),
        ({"lam0": "a"}, r"'lam0' .* a finite float. Got 'a' instead"),
        ({"lam_min": math.nan}, r"'lam_min' .* a float \(inf allowed\). Got nan instead"),
        ({"lam0": -1.0}, r"'lam0' .* must lie in \[lam_min, lam_max\] = \[0.0, inf\]"),
    ],
)
def test_controller_validation(kwargs, match):
    args = {"budget": 1.0, **kwargs}
    with pytest.raises(ValueError, match=match):
        BudgetController(**args)


def test_controller_method_validation():
    ctl = BudgetController(1.0)
    with pytest.raises(ValueError, match=r"'scores' parameter of BudgetController.decide"):
        ctl.decide(np.zeros(3), [1.0])
    with pytest.raises(ValueError, match=r"'realised' parameter of BudgetController.settle"):
        ctl.settle(1.0, -2.0)
    with pytest.raises(ValueError, match=r"'realised' parameter of BudgetController.charge"):
        ctl.charge(math.nan)


# --- drift: the second half of the stream is much harder -----------------------------------------


def _running_deviation(costs: list[float], budget: float) -> np.ndarray:
    c = np.asarray(costs)
    return np.abs(np.cumsum(c) / np.arange(1, c.size + 1) / budget - 1.0)


def _drift_runs(policy, stream: SampleLog, prompts, budget, probe_m, seed=0):
    """Running deviation of a fixed price and of the controlled price over one stream."""
    lam0 = policy.lam_
    out = {}
    controllers = {
        "fixed": BudgetController(budget, lam0, lam_min=lam0, lam_max=lam0),
        "controlled": None,
    }
    for name, controller in controllers.items():
        runtime = Runtime(
            policy,
            ReplayBackend(stream, seed=seed),
            budget=budget,
            probe_m=probe_m,
            controller=controller,
        )
        answers = runtime.run_stream(prompts, concurrency=8)
        out[name] = _running_deviation([a.cost for a in answers], budget)
    return out


def _easy_first(log: SampleLog) -> list[str]:
    accuracy = log.samples.groupby("query_id")["correct"].mean().astype(float)
    order = accuracy.sort_values(ascending=False, kind="stable").index
    return log.queries.set_index("query_id").loc[order, "prompt"].tolist()


def test_controller_holds_the_budget_when_the_stream_turns_hard():
    train, stream = synthetic_log(300, 16, seed=1), synthetic_log(400, 16, seed=2)
    table = estimate(train, ACTIONS)
    accuracy = table.P[:, 0]
    easy = np.flatnonzero(accuracy >= np.median(accuracy))  # calibrated while traffic was easy
    policy = fit_value(train, 3.0, rows=np.arange(table.n_queries))
    X = build_features(train).X.loc[list(table.query_ids)]
    policy.calibrate(X.iloc[easy], 3.0)
    dev = _drift_runs(policy, stream, _easy_first(stream), 3.0, 0)
    assert dev["fixed"][-1] > 0.10  # the drift is real: a fixed price overspends
    assert dev["controlled"][-1] < 0.02
    assert dev["controlled"][100:].max() < dev["fixed"][100:].max()


@needs_data
@pytest.mark.slow
def test_controller_holds_the_budget_on_a_real_stream_that_turns_hard(shared_data):
    from computealloc.data import datasets

    root = shared_data
    train = datasets.load("mot_cascade:gpt-3.5-turbo/date/cot1", root=root)
    stream = datasets.load("mot_cascade:gpt-3.5-turbo/date/cot2", root=root)
    actions, budget = "majority@2,majority@4,majority@8,majority@16", 5.0
    table = estimate(train, actions)
    X = build_features(train, probe_m=2).X.drop(columns="probe_mean_chars")
    X = X.loc[list(table.query_ids)]
    idx = np.random.default_rng(0).permutation(table.n_queries)
    fit_rows, cal_rows = idx[: idx.size // 2], idx[idx.size // 2 :]
    easy = cal_rows[table.P[cal_rows, 0] >= np.median(table.P[cal_rows, 0])]
    policy = Value(n_estimators=50, random_state=0).fit(X.iloc[fit_rows], table.subset(fit_rows))
    policy.calibrate(X.iloc[easy], budget)
    dev = _drift_runs(policy, stream, _easy_first(stream), budget, 2)
    assert dev["fixed"][-1] > 0.15
    assert dev["controlled"][-1] < 0.02
    assert dev["controlled"][100:].max() < dev["fixed"][100:].max()


def test_uniform_policy_on_the_hull_is_budget_matched(log):
    table = estimate(log, ACTIONS)
    policy = Uniform().fit(np.zeros((table.n_queries, 1)), table)
    runtime = Runtime(policy, ReplayBackend(log), budget=3.0)
    answers = runtime.run_stream(_prompts(log) * 2, concurrency=4)
    assert np.mean([a.cost for a in answers]) == pytest.approx(3.0, rel=0.05)
