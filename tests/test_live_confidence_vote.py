"""Live confidence-aware voting (``weighted@K``, ``top_half@K``): the live combine against the
exact offline estimate, its ties, its errors, a replayed log with scores served end to end, and
thinking arms whose thoughts carry their answer's confidence (``thinking: {logprobs: true}``)."""

from __future__ import annotations

import asyncio
import itertools
import math
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from computealloc.data.backends import (
    BackendError,
    Completion,
    OpenAIBackend,
    ReplayBackend,
    RetryPolicy,
)
from computealloc.data.forcing import CONTINUATIONS, ThinkingPlan, Thought, think
from computealloc.data.samples import SampleLog
from computealloc.estimation.estimate import estimate
from computealloc.estimation.kinds import get_kind
from computealloc.estimation.kinds.weighted import top_half_vote, weighted_vote
from computealloc.estimation.voting import Vote
from computealloc.fitting.policies import Uniform
from computealloc.serving.runtime import Runtime
from fake_openai_server import make_app, running
from fake_reasoning import reasoning, trace_of
from test_runtime import fit_value

KINDS = {"weighted": weighted_vote, "top_half": top_half_vote}


def scored_log(
    n_queries: int,
    n_samples: int,
    *,
    seed: int = 0,
    levels: int = 0,
    abstain: float = 0.1,
    model: str = "m",
) -> SampleLog:
    """Queries whose samples carry a ``score``: right answers are more confident.

    Query ``i`` (gold ``"0"``) has samples right with probability ``p_i ~ U[0.25, 0.75]``;
    a wrong one answers ``"1"`` (two thirds) or ``"2"``, or nothing (probability ``abstain``).
    A right sample's score is ``U[0.3, 1]``, a wrong one's ``U[0, 0.7]``, rounded to
    ``levels`` levels when ``levels`` (so that scores, and cluster sums, tie).
    """
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_queries):
        p = rng.uniform(0.25, 0.75)
        for j in range(n_samples):
            right = rng.random() < p
            answer = "0" if right else ("1" if rng.random() < 2 / 3 else "2")
            score = rng.uniform(0.3, 1.0) if right else rng.uniform(0.0, 0.7)
            if levels:
                score = (1 + math.floor(score * levels)) / (levels + 1)
            rows.append(
                {
                    "query_id": f"q{i:04d}",
                    "sample_idx": j,
                    "model": model,
                    "prompt": f"Question {i}: what is zero?",
                    "gold": "0",
                    "answer": None if rng.random() < abstain else answer,
                    "response": f"Sample {j}.",
                    "tokens": 10 + j,
                    "score": score,
                }
            )
    frame = pd.DataFrame(rows)
    frame["correct"] = frame["answer"] == "0"
    return SampleLog.from_frame(frame)


def pools_of(log: SampleLog) -> dict[str, list[Completion]]:
    """Each query's samples, in the log's order, as the replay backend serves them."""
    samples = log.samples.sort_values(["query_id", "sample_idx"], kind="stable")
    out: dict[str, list[Completion]] = {}
    for row in samples.itertuples(index=False):
        answer = None if pd.isna(row.answer) else str(row.answer)
        out.setdefault(str(row.query_id), []).append(
            Completion(
                row.response,
                answer=answer,
                correct=bool(row.correct),
                from_log=True,
                score=row.score,
            )
        )
    return out


class _Pick:
    """A stand-in rng whose tie draw is fixed: ``integers(n)`` gives ``choice`` and records n."""

    def __init__(self, choice: int) -> None:
        self.choice = choice
        self.asked: list[int] = []

    def integers(self, n: int) -> int:
        self.asked.append(n)
        return self.choice


def _right(samples: list[Completion], vote: Vote) -> bool:
    return vote.answer is not None and bool(samples[vote.index].correct)


def expected_correct(combine: Any, samples: list[Completion]) -> tuple[float, bool]:
    """The live vote's correctness, averaged over its tie draw (each tied cluster in turn),
    and whether there was a tie."""
    probe = _Pick(0)
    first = _right(samples, combine(samples, probe))
    if not probe.asked:
        return float(first), False
    (n_tied,) = probe.asked
    picks = [_right(samples, combine(samples, _Pick(c))) for c in range(n_tied)]
    return float(np.mean(picks)), True


@pytest.mark.parametrize("levels", [0, 3])  # distinct scores; scores (and sums) that tie
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_live_votes_average_to_the_exact_estimate_over_every_draw(seed, levels):
    ks = [1, 2, 3, 4, 5, 6]
    log = scored_log(12, 7, seed=seed, levels=levels)
    specs = ",".join(f"{kind}@{k}" for kind in KINDS for k in ks)
    table = estimate(log, specs)
    pools = pools_of(log)
    ties = dict.fromkeys(KINDS, 0)
    for j, spec in enumerate(table.actions):
        kind, k = spec.split("@")
        for i, qid in enumerate(table.query_ids):
            pool = pools[str(qid)]
            votes = [
                expected_correct(KINDS[kind], [pool[m] for m in draw])
                for draw in itertools.combinations(range(len(pool)), int(k))
            ]
            live = np.mean([v for v, _ in votes])
            assert live == pytest.approx(table.P[i, j], abs=1e-12), (spec, qid)
            ties[kind] += sum(tied for _, tied in votes)
    # ties are exercised: of the plurality among the kept half always, of summed scores only
    # where scores take few values
    assert ties["top_half"] > 0 and (ties["weighted"] > 0) == (levels > 0), ties
    # the confidence rules differ from the plain vote on these logs (the test can fail)
    majority = estimate(log, "majority@4").P[:, 0]
    assert np.abs(table.P[:, table.actions.index("weighted@4")] - majority).max() > 0.05


def _sample(answer: str | None, score: float | None, correct: bool = False) -> Completion:
    return Completion(f"#{answer}", answer=answer, correct=correct, from_log=True, score=score)


def _chi_square(winners: list[str | None], tied: list[str]) -> float:
    counts = [winners.count(a) for a in tied]
    assert sum(counts) == len(winners)  # the winner is always one of the tied clusters
    return float(stats.chisquare(counts).pvalue)


def test_weighted_ties_within_1e12_split_uniformly():
    # 0.1 + 0.2 != 0.3 in floating point, but within 1e-12 relative: three clusters tie
    samples = [
        _sample("a", 0.1),
        _sample("b", 0.3),
        _sample(None, 0.9),
        _sample("c", 0.15),
        _sample("a", 0.2),
        _sample("c", 0.15),
        _sample("d", 0.05),
    ]
    assert weighted_vote(samples) == Vote("a", 0, 2)  # first cluster seen without an rng
    rng = np.random.default_rng(0)
    winners = [weighted_vote(samples, rng).answer for _ in range(3000)]
    # each tied cluster wins with probability 1/3; a chi-square test of uniformity (2 degrees of
    # freedom) rejects a fair rule with probability 1e-4, and a rule that favours one cluster
    # by 10 points (0.43 / 0.28 / 0.28) with probability 1 - 1e-6 at this size
    assert _chi_square(winners, ["a", "b", "c"]) > 1e-4
    # just outside the tolerance, no tie
    assert weighted_vote([_sample("a", 0.3 * (1 + 3e-12)), _sample("b", 0.3)]).answer == "a"


def test_top_half_keeps_the_more_confident_half_and_splits_ties_uniformly():
    # K = 5 keeps 3: scores 0.9 (a), 0.8 (b), then 0.5 twice: the earlier (c) is kept
    samples = [
        _sample("a", 0.9),
        _sample("d", 0.5),
        _sample("b", 0.8),
        _sample("d", 0.5),
        _sample("d", 0.1),
    ]
    vote = top_half_vote(samples)
    assert vote == Vote("a", 0, 1)  # a, d, b kept: a three-way tie, the first seen wins
    rng = np.random.default_rng(1)
    winners = [top_half_vote(samples, rng).answer for _ in range(3000)]
    assert _chi_square(winners, ["a", "d", "b"]) > 1e-4  # as in the weighted test
    # the plurality of the kept half, whatever the dropped half says
    plural = [_sample("x", 0.9), _sample("x", 0.8), _sample("y", 0.1), _sample("y", 0.2)]
    assert top_half_vote(plural, rng) == Vote("x", 0, 2)
    assert weighted_vote(plural[2:] * 4, rng).answer == "y"
    assert top_half_vote([_sample(None, 0.9), _sample("z", 0.1)]) == Vote(None, 0, 0)


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_sample_without_a_score_is_a_clear_error(kind):
    samples = [_sample("a", 0.5), _sample("b", None), _sample("a", 0.2)]
    with pytest.raises(ValueError, match=rf"{kind}@3 .* sample 1 of 3 has no score") as error:
        KINDS[kind](samples, None)
    assert "thinking: {logprobs: true}" in str(error.value)
    assert "`score` column" in str(error.value)
    # a weighted vote needs no score of a sample that abstains
    assert weighted_vote([_sample("a", 0.5), _sample(None, None)]).answer == "a"


def test_both_kinds_are_registered_to_run_live():
    for kind, combine in KINDS.items():
        assert get_kind(kind).combine is combine and not get_kind(kind).live_reason


def test_replay_carries_the_logged_score():
    log = scored_log(3, 4)
    backend = ReplayBackend(log)
    prompt = log.queries["prompt"].iloc[0]
    served = asyncio.run(backend.sample(prompt, 4))
    logged = log.samples[log.samples["query_id"] == log.queries["query_id"].iloc[0]]
    assert sorted(c.score for c in served) == sorted(logged["score"])
    bare = SampleLog.from_frame(log.samples.drop(columns="score").merge(log.queries))
    (one,) = asyncio.run(ReplayBackend(bare).sample(prompt, 1))
    assert one.score is None


def test_the_runtime_refuses_a_confidence_vote_on_an_arm_without_scores():
    from computealloc.data.arms import Arm, Thinking, open_arms

    log = scored_log(5, 4, model="early")
    table = estimate(log, "weighted@2")
    policy = Uniform().fit(np.zeros((table.n_queries, 1)), table)
    bare = SampleLog.from_frame(log.samples.drop(columns="score").merge(log.queries))
    assert ReplayBackend(log).scores and not ReplayBackend(bare).scores
    with pytest.raises(ValueError, match=r"'weighted@2' weighs samples by their score, but"):
        Runtime(policy, ReplayBackend(bare), budget=2.0)
    url = "http://127.0.0.1:9/v1"  # never called: the refusal comes first
    confident = Thinking(checkpoints=(4, 8), confidence=0.9)
    for thinking in [None, Thinking(checkpoints=(8,)), confident]:
        arm = Arm(name="early", url=url, model="fake-r1", thinking=thinking)
        with pytest.raises(ValueError, match=r"arm 'early' .* `thinking: \{logprobs: true\}`"):
            Runtime(policy, open_arms([arm]), budget=2.0)
    scored = Arm(
        name="early", url=url, model="fake-r1", thinking=Thinking(checkpoints=(8,), logprobs=True)
    )
    asyncio.run(Runtime(policy, open_arms([scored]), budget=2.0).aclose())


def test_the_runtime_serves_confidence_votes_at_their_exact_accuracy():
    """Policies with confidence votes among their actions, served on a replayed log with
    scores: a Value policy over majority@1 and weighted@4, and a uniform top_half@5. The
    realised accuracy is the mean of the exact estimates of the actions chosen (the replay
    draws each query's K samples uniformly without replacement, and the runtime's rng splits
    ties uniformly, which is what the estimate assumes)."""
    log = scored_log(600, 8, seed=5)
    table = estimate(log, "majority@1,weighted@4,top_half@5,majority@4,majority@5")
    row = {str(q): i for i, q in enumerate(table.query_ids)}
    prompts = dict(zip(log.queries["prompt"], log.queries["query_id"].astype(str), strict=True))
    top_half = estimate(log, "top_half@5")
    policies = {
        "value": (fit_value(log, 3.0, actions="majority@1,weighted@4"), 3.0),
        "top_half": (Uniform().fit(np.zeros((top_half.n_queries, 1)), top_half), 5.0),
    }
    for name, (policy, budget) in policies.items():
        realised, expected = [], []
        for seed in range(2):
            runtime = Runtime(policy, ReplayBackend(log, seed=seed), budget=budget)
            answers = runtime.run_stream(list(prompts), concurrency=32)
            for prompt, ans in zip(prompts, answers, strict=True):
                realised.append(bool(ans.correct))
                expected.append(table.P[row[prompts[prompt]], table.actions.index(ans.action)])
            assert runtime.ledger.actions[policy.actions_[-1]] > 100, name
        p = np.array(expected)
        sd = math.sqrt(float((p * (1 - p)).sum())) / p.size  # about 0.013 here
        # a mean of independent Bernoullis: off by 4 standard deviations with probability 6e-5
        assert abs(np.mean(realised) - p.mean()) < 4 * sd, name
    # the confidence rules beat the plain vote of as many samples by far more (the test can
    # tell a live vote that ignored the scores)
    mean = dict(zip(table.actions, table.P.mean(axis=0), strict=True))
    assert mean["weighted@4"] - mean["majority@4"] > 0.1
    assert mean["top_half@5"] - mean["majority@5"] > 0.1


# --- thinking arms that carry their answer's confidence ---------------------------------------

PLAN = ThinkingPlan((10, 30, 60, 90), stable=2, logprobs=True, answer_tokens=4)
PROMPTS = [f"question {i}" for i in range(16)]


def brute_force(prompt: str, seed: int | None, plan: ThinkingPlan) -> tuple[str, float]:
    """The answer and its confidence of the fake model's thought under ``plan`` (stable rule)."""
    trace = trace_of(prompt, seed)
    seen: list[str] = []
    for i, cap in enumerate(plan.checkpoints):
        if cap >= len(trace.words):  # the thought ends first: its final answer's word
            return trace.answers[-1], math.exp(trace.logprobs[-1])
        t = min(cap, trace.length)
        seen.append(trace.answers[t])
        window = seen[-(plan.stable or 1) :]
        if i == len(plan.checkpoints) - 1 or (len(window) == plan.stable and len(set(window)) == 1):
            return seen[-1], math.exp(trace.logprobs[t])
    raise AssertionError


def _think(url: str, prompt: str, plan: ThinkingPlan, **kwargs: Any) -> Thought:
    async def main() -> Thought:
        backend = OpenAIBackend(url, "fake-r1", retry=RetryPolicy(max_attempts=1))
        try:
            return await think(backend, prompt, plan, continuation=CONTINUATIONS["vllm"], **kwargs)
        finally:
            await backend.aclose()

    return asyncio.run(main())


@pytest.mark.parametrize("stream", [False, True])
def test_a_thought_carries_its_answers_confidence(stream):
    app = make_app(reasoning("vllm", []), reasoning_deltas=stream, continuous_usage=stream)
    plan = replace(PLAN, stream=stream)
    stops = set()
    with running(app) as url:
        for prompt in PROMPTS:
            got = _think(url, prompt, plan)
            answer, confidence = brute_force(prompt, None, plan)
            assert got.answer == answer
            assert got.confidence == pytest.approx(confidence, rel=1e-12)
            assert got.completion().score == got.confidence
            stops.add(got.stop)
        without = _think(url, PROMPTS[0], replace(plan, logprobs=False, stable=None))
    assert stops == {"natural", "settled", "cap"}  # each way a thought gets its confidence
    assert without.confidence is None  # budget forcing without logprobs asks for none


def test_a_thinking_arm_with_logprobs_serves_weighted_votes():
    from computealloc.data.arms import Arm, Thinking, open_arms

    thinking = Thinking(
        checkpoints=PLAN.checkpoints, stable=2, answer_tokens=4, server="vllm", logprobs=True
    )
    served: list[int] = []
    k = 4
    with running(make_app(reasoning("vllm", served))) as url:
        arm = Arm(name="early", url=url, model="fake-r1", thinking=thinking, params={"seed": 0})
        table = estimate(scored_log(40, 6, model="early"), f"weighted@{k}")
        policy = Uniform().fit(np.zeros((table.n_queries, 1)), table)
        runtime = Runtime(policy, open_arms([arm], max_attempts=1), budget=k)

        async def main() -> list[Any]:
            answers = [await runtime.answer(p) for p in PROMPTS]
            await runtime.aclose()
            return answers

        answers = asyncio.run(main())
    for prompt, ans in zip(PROMPTS, answers, strict=True):
        brute = [brute_force(prompt, j, PLAN) for j in range(k)]  # thought j has seed j
        assert [c.score for c in ans.samples] == pytest.approx([c for _, c in brute], rel=1e-12)
        totals: dict[str, float] = {}
        for answer, confidence in brute:
            totals[answer] = totals.get(answer, 0.0) + confidence
        assert ans.answer == max(totals, key=lambda a: totals[a])  # no ties in these traces
    assert runtime.ledger.output_tokens == sum(served)  # every token charged


def test_a_logprobs_plan_refuses_a_server_that_sends_none():
    plain = reasoning("vllm", [])

    async def no_logprobs(request, n):  # type: ignore[no-untyped-def]
        return [replace(c, logprobs=None) for c in await plain(request, n)]

    with running(make_app(no_logprobs)) as url:
        for plan, where in [
            (ThinkingPlan((1000,), logprobs=True), "the thought's end"),
            (ThinkingPlan((4,), logprobs=True), "a probe"),
        ]:
            with pytest.raises(BackendError, match=rf"Arm 'w@4' .* log-probabilities for {where}"):
                _think(url, "q", plan, label="w@4")
        assert _think(url, "q", ThinkingPlan((4,))).confidence is None


def test_the_logprobs_field_is_validated():
    from computealloc.data.arms import Thinking

    with pytest.raises(ValueError, match="logprobs of a ThinkingPlan must be a bool"):
        ThinkingPlan((4,), logprobs="yes")  # type: ignore[arg-type]
    assert Thinking(checkpoints=(4,), logprobs=True).plan().logprobs


@pytest.mark.real_server
def test_llama_server_thoughts_carry_a_confidence_streamed_or_not(llama_jinja):
    """A real server's thought, ended by a stop string (natural) or at the cap: its
    confidence is that of its answer over the log-probabilities the server sent for the
    request that gave it, and the same whether the thought was streamed or sent in segments."""
    import llama_server
    from computealloc.data.backends import receipt
    from computealloc.data.forcing import answer_confidence

    extract = lambda text: text.strip() or None  # noqa: E731 - any reply is an answer
    got: dict[tuple[int, bool], tuple[Thought, list[Completion]]] = {}

    async def main() -> None:
        backend = OpenAIBackend(llama_jinja, llama_server.MODEL, retry=RetryPolicy(max_attempts=2))
        try:
            for cap in (200, 3):  # the stop string ends the thought first; the cap does
                for stream in (False, True):
                    plan = ThinkingPlan((cap,), answer_tokens=3, logprobs=True, stream=stream)
                    with receipt() as received:
                        thought = await think(
                            backend,
                            "Name a colour. Then count to ten.",
                            plan,
                            continuation=CONTINUATIONS["llama.cpp"],
                            params={"temperature": 0, "seed": 0, "stop": ["."]},
                            extract=extract,
                        )
                    got[cap, stream] = thought, received
        finally:
            await backend.aclose()

    asyncio.run(main())
    assert got[200, False][0].stop == "natural" and got[3, False][0].stop == "cap"
    for (_, stream), (thought, received) in got.items():
        assert thought.answer is not None and thought.confidence is not None
        assert 0 < thought.confidence <= 1 and thought.completion().score == thought.confidence
        if stream and thought.stop == "natural":
            continue  # its tokens came in the stream: below
        # brute force: the answer's confidence over the tokens of the request that gave it
        # (the thought's one request at a natural end, the forced answer at the cap)
        last = [c for c in received if c.logprobs is not None][-1]
        assert last.logprobs is not None
        assert thought.confidence == answer_confidence(last.logprobs, thought.answer)
    # a streamed natural end: the same thought, its confidence from the streamed tokens (the
    # server's numbers may move in the last digits when its prompt cache is reused)
    (plain, _), (streamed, _) = got[200, False], got[200, True]
    assert (streamed.stop, streamed.text) == ("natural", plain.text)
    assert streamed.confidence == pytest.approx(plain.confidence, rel=1e-3)
