"""SequentialRuntime: live sampling until a stopping rule fires, under an online budget."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from computealloc.data.backends import Completion, ReplayBackend
from computealloc.fitting.persist import load_file, save_stopping
from computealloc.fitting.sequential import (
    BetaRule,
    LagrangianStopping,
    WindowRule,
    answer_pools,
    calibrate_stopping,
    fit_stopping,
)
from computealloc.serving.budget import BudgetController
from computealloc.serving.sequential_runtime import SequentialRuntime
from test_runtime import synthetic_log

BUDGET = 4.0


class _Scripted:
    """A backend serving a fixed answer sequence per call order; records the batch sizes."""

    model = "m"

    def __init__(self, answers: list[str | None], fail_on: int | None = None) -> None:
        self.answers, self.fail_on = answers, fail_on
        self.position, self.calls = 0, []

    async def sample(self, prompt, n, *, params=None):
        if self.fail_on is not None and len(self.calls) == self.fail_on:
            raise RuntimeError("backend down")
        self.calls.append(n)
        chosen = self.answers[self.position : self.position + n]
        self.position += n
        return [
            Completion(f"so \\boxed{{{a}}}" if a is not None else "no idea", output_tokens=5)
            for a in chosen
        ]

    async def aclose(self) -> None:
        pass


def _answer(runtime: SequentialRuntime, prompt: str = "What is 2 + 2?"):
    return asyncio.run(runtime.answer(prompt))


@pytest.fixture(scope="module")
def log():
    return synthetic_log(160, 16)


@pytest.fixture(scope="module")
def fitted(log):
    return fit_stopping(log, budget=BUDGET, method="sequential/pooled", n_orders=16)


# --- stopping ---------------------------------------------------------------------------------


def test_beta_rule_stops_at_the_first_settled_vote():
    # Beta(a + 1, 1) puts 1 - 2**-(a + 1) on the leader: it first exceeds 0.95 at a = 4.
    backend = _Scripted(["7"] * 10)
    runtime = SequentialRuntime(BetaRule(threshold=0.95, max_samples=10), backend, budget=4.0)
    result = _answer(runtime)
    assert (result.k, result.cost, result.action, result.answer) == (
        4,
        4.0,
        "adaptive-consistency@4",
        "7",
    )
    assert backend.calls == [1, 1, 1, 1]


def test_a_batch_is_drawn_whole_and_voted():
    backend = _Scripted(["7", "7", "3", "7", "7", "7", "7", "7", "7"])
    runtime = SequentialRuntime(
        WindowRule(window=3, max_samples=9), backend, batch_size=2, budget=4
    )
    result = _answer(runtime)
    # the window of three equal answers closes at sample 6; the batch ending there is drawn
    assert backend.calls == [2, 2, 2]
    assert (result.k, result.answer, runtime.ledger.samples) == (6, "7", 6)


def test_an_unsettled_query_runs_to_the_cap():
    backend = _Scripted([str(i) for i in range(20)])
    runtime = SequentialRuntime(BetaRule(), backend, budget=4.0, max_samples=7, batch_size=3)
    result = _answer(runtime)
    assert backend.calls == [3, 3, 1] and result.k == 7


def test_abstaining_samples_count_but_do_not_vote():
    backend = _Scripted([None, None, "5", "5", "5", "5", "5"])
    result = _answer(SequentialRuntime(BetaRule(max_samples=10), backend, budget=4.0))
    assert (result.k, result.answer) == (6, "5")


def test_every_live_stop_is_where_the_rule_stops(log, fitted):
    runtime = SequentialRuntime(fitted.rule, ReplayBackend(log, seed=3))
    prompts = log.queries["prompt"].tolist()[:60]
    results = runtime.run_stream(prompts)
    rule = fitted.rule.low
    for result in results:
        keys = [s.answer for s in result.samples]
        fired = [rule.with_knob(result.lam).should_stop(keys[:t]) for t in range(1, result.k + 1)]
        assert not any(fired[:-1])
        assert fired[-1] or result.k == runtime.max_samples


# --- budget -----------------------------------------------------------------------------------


def test_the_ledger_adds_up_and_the_mean_holds_the_budget(log, fitted):
    runtime = SequentialRuntime(fitted.rule, ReplayBackend(log, seed=1))
    prompts = log.queries["prompt"].tolist() * 2
    results = runtime.run_stream(prompts, concurrency=4)
    ledger = runtime.ledger
    assert ledger.queries == len(prompts) and ledger.failed == 0
    assert ledger.samples == ledger.cost == sum(r.cost for r in results)
    assert sum(ledger.actions.values()) == len(prompts)
    assert all(r.action == f"sequential@{r.k}" and r.cost == r.k for r in results)
    assert ledger.mean_cost == pytest.approx(BUDGET, rel=0.02)
    assert runtime.controller is not None and runtime.controller.state().in_flight == 0


def test_the_online_price_holds_the_budget_when_queries_turn_hard(log):
    # calibrated on a random mix; the stream's second half is much harder
    fit = fit_stopping(log, budget=BUDGET, method="sequential/pooled", n_orders=16)
    lengths = log.queries["prompt"].str.len().to_numpy()
    order = np.argsort(lengths, kind="stable")  # prompt length grows with difficulty
    easy, hard = order[: len(order) // 2], order[len(order) // 2 :]
    stream = log.queries["prompt"].to_numpy()[np.concatenate([easy, easy, hard, hard])].tolist()
    online = SequentialRuntime(fit.rule, ReplayBackend(log, seed=2))
    static = SequentialRuntime(fit.rule, ReplayBackend(log, seed=2), online=False)
    assert static.controller is None
    online.run_stream(stream)
    static.run_stream(stream)
    assert abs(online.ledger.mean_cost / BUDGET - 1) < 0.02
    assert abs(static.ledger.mean_cost / BUDGET - 1) > 3 * abs(online.ledger.mean_cost / BUDGET - 1)


def test_another_budget_is_followed_online(log, fitted):
    runtime = SequentialRuntime(fitted.rule, ReplayBackend(log, seed=4), budget=2.5)
    runtime.run_stream(log.queries["prompt"].tolist() * 2)
    assert runtime.ledger.mean_cost == pytest.approx(2.5, rel=0.02)


def test_a_failed_call_charges_the_samples_drawn(fitted):
    backend = _Scripted([str(i) for i in range(40)], fail_on=2)
    runtime = SequentialRuntime(fitted.rule, backend)
    with pytest.raises(RuntimeError, match="backend down"):
        _answer(runtime)
    ledger = runtime.ledger
    assert (ledger.queries, ledger.failed, ledger.samples) == (1, 1, 2)
    state = runtime.controller.state()
    assert (state.in_flight, state.n, state.spent) == (0, 1, 2.0)


# --- files, prior, server ---------------------------------------------------------------------


def test_a_saved_rule_with_a_prior_serves_like_the_fitted_one(tmp_path, log):
    fit = fit_stopping(log, budget=BUDGET, method="sequential/prior", n_orders=16)
    assert fit.rule.low.prior_model_ is not None
    save_stopping(fit.rule, tmp_path / "rule.json")
    loaded = load_file(tmp_path / "rule.json")
    prompts = log.queries["prompt"].tolist()[:40]
    first = SequentialRuntime(fit.rule, ReplayBackend(log, seed=5)).run_stream(prompts)
    again = SequentialRuntime(loaded, ReplayBackend(log, seed=5)).run_stream(prompts)
    assert [(r.k, r.answer) for r in first] == [(r.k, r.answer) for r in again]


def test_a_calibrated_published_rule_mixes_its_two_settings(log):
    pools = answer_pools(log)
    cal = calibrate_stopping(BetaRule(max_samples=16), pools, 3.0, n_orders=16)
    assert 0 < cal.mix < 1
    runtime = SequentialRuntime(cal, ReplayBackend(log, seed=6))
    assert runtime.controller is None and runtime.budget == 3.0
    results = runtime.run_stream(log.queries["prompt"].tolist() * 2)
    knobs = np.array([r.lam for r in results])
    assert set(knobs) == {cal.low.threshold, cal.high.threshold}
    share, n = float(np.mean(knobs == cal.high.threshold)), len(results)
    assert abs(share - cal.mix) < 4 * np.sqrt(cal.mix * (1 - cal.mix) / n)
    assert runtime.ledger.mean_cost == pytest.approx(3.0, rel=0.2)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"rule": "beta"}, TypeError, "'rule' parameter of SequentialRuntime must be a Calib"),
        (
            {"rule": BetaRule(), "budget": 4.0},
            ValueError,
            "BetaRule has no max_samples; pass the 'max_samples'",
        ),
        ({"rule": BetaRule(max_samples=4)}, ValueError, "not calibrated to a budget; pass"),
        ({"batch_size": 0}, ValueError, r"'batch_size' .* an int in \[1, inf\). Got 0"),
        ({"budget": 0.5}, ValueError, r"'budget' .* \[1, inf\) \(samples per query\). Got 0.5"),
        ({"controller": BudgetController(9.0)}, ValueError, "BudgetController for the budget 4"),
        ({"rule": LagrangianStopping()}, ValueError, "not fitted yet"),
    ],
)
def test_bad_arguments_are_clear_errors(fitted, kwargs, error, match):
    args = {"rule": fitted.rule, "backend": _Scripted([]), **kwargs}
    with pytest.raises(error, match=match):
        SequentialRuntime(**args)


def test_a_published_rule_cannot_follow_another_budget(log):
    cal = calibrate_stopping(BetaRule(max_samples=16), answer_pools(log), 3.0, n_orders=8)
    with pytest.raises(ValueError, match="calibrated to a budget of 3 samples and cannot follow"):
        SequentialRuntime(cal, _Scripted([]), budget=4.0)
    with pytest.raises(ValueError, match="calibrated setting has no price to control"):
        SequentialRuntime(cal, _Scripted([]), controller=BudgetController(3.0))


def test_the_proxy_serves_a_stopping_rule(log, fitted):
    openai = pytest.importorskip("openai")
    pytest.importorskip("fastapi")
    from computealloc.serving.server import create_app
    from fake_openai_server import running

    runtime = SequentialRuntime(fitted.rule, ReplayBackend(log, seed=7))
    with running(create_app(runtime)) as url:
        client = openai.OpenAI(base_url=url, api_key="none", max_retries=0)
        prompt = log.queries["prompt"].iloc[0]
        raw = client.chat.completions.with_raw_response.create(
            model="any", messages=[{"role": "user", "content": prompt}]
        )
    extension = raw.parse().model_extra["computealloc"]
    assert extension["action"] == raw.headers["x-computealloc-action"]
    assert extension["action"] == f"sequential@{extension['k']}"
    assert extension["cost"] == extension["samples"] == runtime.ledger.samples
