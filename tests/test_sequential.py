"""Tests of sequential stopping rules, offline replay, budget calibration and the router."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats

from computealloc.data.samples import SampleLog
from computealloc.estimation.estimate import estimate, majority_accuracy
from computealloc.fitting.sequential import (
    SEQUENTIAL_METHODS,
    AnswerPools,
    BetaRule,
    CalibratedStopping,
    DirichletRule,
    EntropyRule,
    LagrangianStopping,
    MajorityShareRule,
    StoppingRule,
    WindowRule,
    answer_pools,
    calibrate_stopping,
    dirichlet_leader_probability,
    evaluate_stopping,
    replay,
    sequential_methods,
    stopping_curve,
)
from computealloc.fitting.sequential.lagrangian import _decision_tables
from computealloc.fitting.sequential.pools import _trajectories
from conftest import needs_data

# --------------------------------------------------------------------------- helpers


def random_pools(rng: np.random.Generator, n_queries: int, n: int) -> AnswerPools:
    """Pools of ``n`` samples with 1-4 answer clusters, some abstains, gold in most."""
    gold = np.zeros(n_queries, dtype=np.int64)
    others = np.zeros((n_queries, 3), dtype=np.int64)
    abstain = np.zeros(n_queries, dtype=np.int64)
    for i in range(n_queries):
        share = rng.dirichlet(np.full(5, 0.6))
        counts = rng.multinomial(n, share)
        gold[i], others[i], abstain[i] = counts[0], counts[1:4], counts[4]
    return AnswerPools(gold, others, abstain, tuple(f"q{i}" for i in range(n_queries)))


def answers_of(labels: Sequence[int]) -> list[str | None]:
    """Replay labels as answers: -1 abstains, cluster ``c`` answers ``"a<c>"``."""
    return [None if c == -1 else f"a{c}" for c in labels]


def plurality_correct(answers: Sequence[str | None]) -> float:
    """Expected correctness of the plurality of ``answers`` (``"a0"`` correct), ties split."""
    votes = Counter(a for a in answers if a is not None)
    if not votes:
        return 0.0
    top = max(votes.values())
    leaders = [a for a, v in votes.items() if v == top]
    return 1.0 / len(leaders) if "a0" in leaders else 0.0


def first_stop(rule: StoppingRule, answers: Sequence[str | None], cap: int) -> int:
    """Samples drawn by ``rule`` on one order, by the per-sample ``should_stop`` loop."""
    for t in range(1, cap + 1):
        if t == cap or rule.should_stop(answers[:t]):
            return t
    return cap


def pool_of_labels(labels: Sequence[int]) -> AnswerPools:
    counts = Counter(labels)
    wrong = [counts[c] for c in sorted(c for c in counts if c > 0)]
    return AnswerPools(
        np.array([counts[0]]), np.array([wrong or [0]]), np.array([counts[-1]]), ("q",)
    )


def fitted_policy(n_groups: int = 1, seed: int = 0) -> LagrangianStopping:
    rng = np.random.default_rng(seed)
    pools = random_pools(rng, 60, 6)
    X = rng.normal(size=(60, 3)) if n_groups > 1 else None
    return LagrangianStopping(n_groups=n_groups, n_orders=16, random_state=seed).fit(pools, X)


# --------------------------------------------------------------------------- rules: stop points


def beta_confidence(a: int, b: int) -> float:
    """``P(Beta(a+1, b+1) > 1/2)`` by the binomial identity (independent of betainc)."""
    return float(stats.binom.cdf(a, a + b + 1, 0.5))


def test_beta_confidence_matches_binomial_identity():
    traj = _trajectories(np.array([[[0, 0, 1, 0, 2, 0, 1]]], dtype=np.int16), np.array([7]))
    conf = BetaRule().confidence(traj)[0, 0]
    expected = [beta_confidence(1, 0), beta_confidence(2, 0), beta_confidence(2, 1)]
    expected += [beta_confidence(3, 1), beta_confidence(3, 1), beta_confidence(4, 1)]
    expected += [beta_confidence(4, 2)]
    np.testing.assert_allclose(conf, expected, rtol=1e-12)


@pytest.mark.parametrize(
    ("answers", "stop"),
    [
        (["x"] * 6, 4),  # 1 - 2**-5 = 0.969 >= 0.95 at four unanimous votes
        (["x", "y", "x", "x", "x", "x", "x", "x"], 7),  # (5, 1): 0.9375; (6, 1): 0.9648
        ([None, "x", "x", "x", "x", "x"], 5),  # an abstain counts toward t only
        (["x", "y", "z", "x", "y", "z"], None),
    ],
)
def test_beta_rule_stop_points(answers, stop):
    rule = BetaRule(threshold=0.95)
    fired = [rule.should_stop(answers[:t]) for t in range(1, len(answers) + 1)]
    assert (fired.index(True) + 1 if True in fired else None) == stop


@pytest.mark.parametrize(
    ("window", "answers", "stop"),
    [
        (2, ["a", "b", "c", "c"], 4),
        (2, ["a", "b", "b", "c", "d", "d"], 6),  # the run b, b straddles two windows
        (2, [None, None, "a", "a"], 4),  # a window of abstains is not unanimous
        (3, ["a", "a", "a"], 3),
        (1, [None, "a"], 2),
    ],
)
def test_window_rule_stop_points(window, answers, stop):
    rule = WindowRule(window=window)
    fired = [rule.should_stop(answers[:t]) for t in range(1, len(answers) + 1)]
    assert fired.index(True) + 1 == stop


def test_entropy_rule_uses_phantom_vote_and_min_samples():
    h21 = stats.entropy([2, 1]) / np.log(2)  # two votes for one answer: phantom vote added
    assert not EntropyRule(threshold=1.0).should_stop(["a"])  # never at t = 1
    assert EntropyRule(threshold=h21 + 1e-12).should_stop(["a", "a"])
    assert not EntropyRule(threshold=h21 - 1e-9).should_stop(["a", "a"])
    h = stats.entropy([2, 1, 1]) / np.log(3)
    assert EntropyRule(threshold=h + 1e-12).should_stop(["a", "b", "a", "c"])
    assert not EntropyRule(threshold=h - 1e-9).should_stop(["a", "b", "a", "c"])


def test_majority_share_rule_counts_abstains_in_t():
    rule = MajorityShareRule(threshold=2 / 3)
    assert not rule.should_stop(["a"])
    assert rule.should_stop(["a", "b", "a"])
    assert not rule.should_stop(["a", None, "b", "a"])


def test_no_rule_stops_without_an_answer():
    for rule in (BetaRule(threshold=0.5), DirichletRule(threshold=0.0), WindowRule(window=1)):
        assert not rule.should_stop([None, None])
    assert not EntropyRule(threshold=1.0).should_stop([None, None, None])
    assert not MajorityShareRule(threshold=0.0).should_stop([None, None, None])


def test_max_samples_stops_a_live_query():
    assert BetaRule(threshold=1.0, max_samples=3).should_stop(["a", "b", "c"])
    assert not BetaRule(threshold=1.0, max_samples=3).should_stop(["a", "b"])
    assert not BetaRule().should_stop([])


# --------------------------------------------------------------------------- Dirichlet


def dirichlet_quad(counts: Sequence[int]) -> float:
    """``P(G_1 > max_j G_j)`` by adaptive quadrature over the leader's Gamma variable."""

    def integrand(x: float) -> float:
        rest = np.prod([stats.gamma.cdf(x, c + 1) for c in counts[1:]])
        return float(stats.gamma.pdf(x, counts[0] + 1) * rest)

    return float(integrate.quad(integrand, 0, np.inf, limit=500, epsabs=1e-13, epsrel=1e-12)[0])


@pytest.mark.parametrize(
    "counts", [[3, 1, 1], [5, 4, 2, 1], [2, 2, 2], [12, 3, 1, 1, 1], [40, 0], [1, 1, 1, 1, 1]]
)
def test_dirichlet_probability_matches_adaptive_quadrature(counts):
    got = dirichlet_leader_probability([counts])[0]
    assert got == pytest.approx(dirichlet_quad(counts), abs=1e-7)


def test_dirichlet_probability_matches_monte_carlo():
    rng = np.random.default_rng(0)
    draws = rng.dirichlet([5, 3, 2], size=400_000)
    mc = float((draws.argmax(axis=1) == 0).mean())
    se = np.sqrt(mc * (1 - mc) / len(draws))
    assert abs(dirichlet_leader_probability([[4, 2, 1]])[0] - mc) < 4 * se


def test_dirichlet_rule_equals_beta_rule_with_two_answers():
    rng = np.random.default_rng(1)
    pools = AnswerPools(
        rng.integers(1, 6, 30), rng.integers(0, 5, (30, 1)), np.zeros(30, np.int64),
        tuple(map(str, range(30))),
    )  # fmt: skip
    traj = replay(pools, n_orders=8)
    np.testing.assert_allclose(
        DirichletRule().confidence(traj), BetaRule().confidence(traj), atol=1e-9
    )


# --------------------------------------------------------------------------- replay kernel


def all_rules() -> list[StoppingRule]:
    return [
        BetaRule(threshold=0.9),
        DirichletRule(threshold=0.8, top_k=3),
        EntropyRule(threshold=0.6),
        MajorityShareRule(threshold=0.7),
        WindowRule(window=2),
        BetaRule(threshold=0.99, max_samples=4),
        fitted_policy(),
    ]


@pytest.mark.parametrize("rule", all_rules(), ids=lambda r: type(r).__name__)
def test_vectorised_stopping_equals_per_sample_loop(rule):
    pools = random_pools(np.random.default_rng(2), 8, 6)
    traj = replay(pools, n_orders=5, random_state=3)
    times = rule.stopping_times(traj)
    cap = np.minimum(traj.cap, rule.max_samples or traj.width)
    for i, r in itertools.product(range(8), range(5)):
        answers = answers_of(traj.labels[i, r, : traj.cap[i]])
        assert times[i, r] == first_stop(rule, answers, int(cap[i]))


@pytest.mark.parametrize("rule", all_rules(), ids=lambda r: type(r).__name__)
def test_replay_over_all_orders_equals_brute_force(rule):
    labels = [0, 0, 1, 1, 2, -1]  # gold 2, wrong clusters of 2 and 1, one abstain
    orders = np.array(list(itertools.permutations(labels)), dtype=np.int16)
    traj = _trajectories(orders[None], np.array([len(labels)]))
    times = rule.stopping_times(traj)[0]
    acc = traj.correct[0, np.arange(len(orders)), times - 1]
    cap = min(len(labels), rule.max_samples or len(labels))
    brute_t, brute_acc = [], []
    for order in orders:
        answers = answers_of(order)
        t = first_stop(rule, answers, cap)
        brute_t.append(t)
        brute_acc.append(plurality_correct(answers[:t]))
    np.testing.assert_array_equal(times, brute_t)
    np.testing.assert_allclose(acc, brute_acc, atol=1e-15)
    mc = evaluate_stopping(rule, pool_of_labels(labels), n_orders=4000, random_state=4)
    assert abs(mc.accuracy - np.mean(brute_acc)) < 4 * mc.accuracy_se + 1e-12
    assert abs(mc.mean_samples - np.mean(brute_t)) < 4 * mc.samples_se + 1e-12


def test_replay_draws_without_replacement_and_respects_caps():
    pools = random_pools(np.random.default_rng(5), 20, 7)
    traj = replay(pools, n_orders=6, max_samples=5)
    assert traj.width == 5 and (traj.cap == 5).all()
    full = replay(pools, n_orders=6)
    counts = (full.labels[..., None] == np.arange(-1, 4)).sum(axis=2)
    expected = np.column_stack([pools.abstain, pools.gold, pools.others])
    np.testing.assert_array_equal(counts, np.broadcast_to(expected[:, None], counts.shape))
    assert (BetaRule(threshold=1.0, max_samples=3).stopping_times(full) == 3).all()


def test_uneven_pools_are_capped_at_their_size():
    pools = AnswerPools(np.array([1, 4]), np.array([[1], [4]]), np.array([0, 0]), ("a", "b"))
    times = BetaRule(threshold=1.0).stopping_times(replay(pools, n_orders=3))
    np.testing.assert_array_equal(times, [[2, 2, 2], [8, 8, 8]])


def test_all_abstaining_pool_runs_to_the_cap_and_is_wrong():
    pools = AnswerPools(np.array([0]), np.array([[0]]), np.array([4]), ("q",))
    for rule in all_rules()[:5]:
        res = evaluate_stopping(rule, pools, n_orders=4)
        assert res.mean_samples == 4 and res.accuracy == 0.0


def test_rule_run_to_the_cap_equals_exact_majority():
    pools = random_pools(np.random.default_rng(6), 40, 6)
    res = evaluate_stopping(BetaRule(threshold=1.0), pools, n_orders=2)
    exact = majority_accuracy(pools.gold, pools.others, pools.abstain, [6])[:, 0]
    np.testing.assert_allclose(res.query_accuracy, exact, atol=1e-12)


# --------------------------------------------------------------------------- calibration


def test_calibration_hits_the_budget_and_transfers():
    rng = np.random.default_rng(7)
    cal, other = random_pools(rng, 300, 10), random_pools(rng, 300, 10)
    for rule in (BetaRule(), WindowRule(), EntropyRule()):
        fit = calibrate_stopping(rule, cal, 3.0, n_orders=32, random_state=1)
        assert fit.samples == pytest.approx(3.0, abs=1e-9)
        assert 0.0 <= fit.mix <= 1.0
        moved = evaluate_stopping(fit, other, n_orders=32, random_state=2).mean_samples
        assert abs(moved / 3.0 - 1.0) < 0.05


def test_calibration_out_of_reach_returns_the_extreme_setting():
    pools = random_pools(np.random.default_rng(8), 50, 5)
    fit = calibrate_stopping(BetaRule(), pools, 9.0, n_orders=8)
    assert fit.samples == 5.0 and fit.mix == 0.0 and fit.low.threshold == 1.0
    fit = calibrate_stopping(EntropyRule(), pools, 1.0, n_orders=8)
    assert fit.samples >= 2.0  # the entropy rule never stops before two samples


def test_calibrated_mix_is_the_expectation_of_its_two_settings():
    pools = random_pools(np.random.default_rng(9), 80, 8)
    fit = calibrate_stopping(BetaRule(), pools, 2.7, n_orders=16)
    low = evaluate_stopping(fit.low, pools, n_orders=16)
    high = evaluate_stopping(fit.high, pools, n_orders=16)
    both = evaluate_stopping(fit, pools, n_orders=16)
    w = fit.mix
    assert both.accuracy == pytest.approx((1 - w) * low.accuracy + w * high.accuracy)
    picks = [fit.pick(s) is fit.high for s in range(2000)]
    assert abs(np.mean(picks) - w) < 0.05


def test_mean_samples_are_monotone_in_each_knob():
    pools = random_pools(np.random.default_rng(10), 60, 8)
    traj = replay(pools, n_orders=8)
    policy = fitted_policy()

    def cost(rule: StoppingRule, value: float) -> float:
        return float(rule.with_knob(value).stopping_times(traj).mean())

    thresholds = np.linspace(0.5, 1.0, 21)
    assert np.all(np.diff([cost(BetaRule(), v) for v in thresholds]) >= 0)
    assert np.all(np.diff([cost(EntropyRule(), v) for v in np.linspace(0, 1, 21)]) <= 0)
    prices = np.concatenate([np.linspace(-1, 1, 41), np.linspace(-0.02, 0.02, 41)])
    prices.sort()
    for smoothing in (0.0, 1.0, 8.0):
        rule = policy.set_params(smoothing=smoothing)
        assert np.all(np.diff([cost(rule, v) for v in prices]) <= 0)


def test_stopping_curve_rows():
    rng = np.random.default_rng(11)
    frame = stopping_curve(BetaRule(), random_pools(rng, 60, 8), random_pools(rng, 60, 8), [2, 4])
    assert frame["budget"].tolist() == [2.0, 4.0]
    np.testing.assert_allclose(frame["calibration_samples"], [2.0, 4.0])


# --------------------------------------------------------------------------- learned policy


def reference_decisions(visits, correct, moves, lam):
    """Backward induction state by state (plain loops), the vote-decided rule included."""
    n_tables, w, side, _ = visits.shape
    out = np.full(visits.shape, -1, dtype=np.int8)
    for k in range(n_tables):
        value = {}
        for j in range(w - 1, -1, -1):
            new = {}
            for a, b in itertools.product(range(side), range(side)):
                if visits[k, j, a, b] == 0:
                    new[a, b] = 0.0
                    continue
                acc = correct[k, j, a, b] / visits[k, j, a, b]
                total = moves[k, j, a, b].sum()
                decided = a - b > w - (j + 1)
                if j == w - 1 or total == 0 or decided:
                    out[k, j, a, b], new[a, b] = 1, acc
                    continue
                succ = [(a + 1, b), (a, b + 1), (a, b)]
                q = sum(moves[k, j, a, b, m] / total * value.get(succ[m], 0.0) for m in range(3))
                q -= lam
                out[k, j, a, b] = 0 if q > acc else 1
                new[a, b] = max(q, acc) if q > acc else acc
            value = new
    return out


@pytest.mark.parametrize("lam", [-0.05, 0.0, 0.004, 0.03])
def test_decision_tables_match_plain_backward_induction(lam):
    policy = fitted_policy(n_groups=2, seed=12)
    got = _decision_tables(policy.visits_, policy.correct_, policy.moves_, lam)
    want = reference_decisions(policy.visits_, policy.correct_, policy.moves_, lam)
    np.testing.assert_array_equal(got, want)


def shrunk_statistics(policy):
    """Visits and summed correctness with every state's mean shrunk, state by state (loops)."""
    k = policy.smoothing * policy.n_orders
    visits, correct = policy.visits_, policy.correct_
    n_tables, w, side, _ = visits.shape
    v, c = np.zeros_like(visits), np.zeros_like(correct)
    for tab, a, b in itertools.product(range(n_tables), range(side), range(side)):
        seen = visits[tab, :, a, b].sum()
        pooled = correct[tab, :, a, b].sum() / seen if seen else 0.0
        for j in range(w):
            if visits[tab, j, a, b] > 0:
                v[tab, j, a, b] = visits[tab, j, a, b] + k
                c[tab, j, a, b] = correct[tab, j, a, b] + k * pooled
    return v, c


@pytest.mark.parametrize("smoothing", [0.0, 1.0, 6.0])
def test_smoothing_shrinks_each_state_toward_its_votes_at_any_t(smoothing):
    policy = fitted_policy(n_groups=2, seed=12).set_params(smoothing=smoothing)
    v, c = shrunk_statistics(policy)
    mean = np.divide(c, v, out=np.zeros_like(c), where=v > 0)
    raw = np.divide(policy.correct_, policy.visits_, out=np.zeros_like(c), where=v > 0)
    pooled = policy.correct_.sum(axis=1) / np.maximum(policy.visits_.sum(axis=1), 1)
    weight = policy.visits_ / np.maximum(v, 1)  # the state's own share of the estimate
    np.testing.assert_allclose(mean, weight * raw + (v > 0) * (1 - weight) * pooled[:, None])
    for lam in (-0.05, 0.0, 0.01):
        want = reference_decisions(v, c, policy.moves_, lam)
        np.testing.assert_array_equal(policy.decision_table(lam), want)
    if smoothing == 0.0:
        raw_table = _decision_tables(policy.visits_, policy.correct_, policy.moves_, 0.01)
        np.testing.assert_array_equal(policy.decision_table(0.01), raw_table)


def test_lagrangian_at_lowest_price_keeps_the_full_vote_with_fewer_samples():
    rng = np.random.default_rng(13)
    policy = LagrangianStopping(lam=-1.0, n_orders=16).fit(random_pools(rng, 80, 6))
    test = random_pools(rng, 80, 6)
    traj = replay(test, n_orders=16, random_state=1)
    full = BetaRule(threshold=1.0)
    times = policy.stopping_times(traj)
    acc = np.take_along_axis(traj.correct, (times - 1)[..., None], axis=2)[..., 0]
    acc_full = traj.correct[:, :, -1]
    np.testing.assert_allclose(acc, acc_full)
    assert times.mean() < full.stopping_times(traj).mean()


def test_lagrangian_is_at_least_as_good_as_beta_on_its_training_pools():
    rng = np.random.default_rng(14)
    pools = random_pools(rng, 200, 8)
    policy = LagrangianStopping(n_orders=32, random_state=3).fit(pools)
    for budget in (2.0, 3.0):
        ours = calibrate_stopping(policy, pools, budget, n_orders=32, random_state=3)
        beta = calibrate_stopping(BetaRule(), pools, budget, n_orders=32, random_state=3)
        assert ours.accuracy >= beta.accuracy - 1e-9


def test_lagrangian_prior_groups_use_the_prior_scores():
    policy = fitted_policy(n_groups=3, seed=15)
    assert policy.group_edges_.shape == (2,) and policy.visits_.shape[0] == 4
    np.testing.assert_allclose(policy.visits_[0], policy.visits_[1:].sum(axis=0))
    pools = random_pools(np.random.default_rng(16), 10, 6)
    prior = policy.predict_prior(np.zeros((10, 3)))
    assert prior.shape == (10,)
    evaluate_stopping(policy, pools, prior=prior, n_orders=4)
    with pytest.raises(ValueError, match="needs each query's `prior` score"):
        evaluate_stopping(policy, pools, n_orders=4)


# --------------------------------------------------------------------------- sample logs


def synthetic_log(n_queries: int = 60, n: int = 8, seed: int = 0) -> SampleLog:
    rng = np.random.default_rng(seed)
    pools = random_pools(rng, n_queries, n)
    rows = []
    for i in range(n_queries):
        labels = [0] * pools.gold[i] + [-1] * pools.abstain[i]
        labels += [c + 1 for c in range(3) for _ in range(pools.others[i, c])]
        for s, c in enumerate(rng.permutation(labels)):
            prompt = f"What is {i}?" + " x" * (pools.gold[i] + 1)  # length tracks difficulty
            rows.append((f"q{i:03d}", s, None if c == -1 else f"a{c}", c == 0, prompt))
    frame = pd.DataFrame(rows, columns=["query_id", "sample_idx", "answer", "correct", "prompt"])
    return SampleLog.from_frame(frame)


def test_answer_pools_agree_with_estimate():
    log = synthetic_log()
    pools = answer_pools(log)
    acc = majority_accuracy(pools.gold, pools.others, pools.abstain, [1, 4, 8])
    np.testing.assert_allclose(acc, estimate(log, "majority@1,majority@4,majority@8").P)


def test_sequential_methods_rows_and_budgets():
    frame = sequential_methods(synthetic_log(90), [2.5, 3], seed=1, n_orders=8)
    assert set(frame["method"]) == set(SEQUENTIAL_METHODS)
    calibrated = frame[frame["budget"].notna() & (frame["method"] != "uniform-majority")]
    np.testing.assert_allclose(calibrated["calibration_cost"], calibrated["budget"], atol=1e-9)
    assert (frame["n_test"] == 18).all() and (frame["protocol"] == "held-out").all()
    assert (frame.loc[frame["budget"].isna(), "method"].tolist()) == [
        "adaptive-consistency@0.95",
        "esc@5",
    ]
    inside = sequential_methods(synthetic_log(90), [2], protocol="in-sample", n_orders=4)
    assert inside["mean_cost"].max() <= 8
    some = sequential_methods(synthetic_log(90), [2], methods=["esc", "sequential"], n_orders=4)
    assert some["method"].tolist() == ["esc", "sequential"]


@needs_data
@pytest.mark.slow
def test_sequential_methods_on_real_data(shared_data):
    from computealloc.data import datasets

    log = datasets.load("mot_cascade:llama-2-13b/date/cot1", root=shared_data)
    frame = sequential_methods(log, [2], seed=0, n_orders=16).set_index("method")
    assert frame.loc["uniform-majority", "mean_cost"] == 2.0
    for method in ("adaptive-consistency", "esc", "sequential"):
        assert abs(frame.loc[method, "mean_cost"] - 2.0) < 0.3
    assert frame.loc["sequential", "accuracy"] > frame.loc["uniform-majority", "accuracy"]


# --------------------------------------------------------------------------- validation


def test_validation_messages():
    pools = random_pools(np.random.default_rng(18), 5, 4)
    with pytest.raises(ValueError, match=r"'n_orders' parameter of replay must be an int in \[1"):
        replay(pools, n_orders=0)
    with pytest.raises(ValueError, match="'max_samples' parameter of replay must be an int"):
        replay(pools, max_samples=0)
    with pytest.raises(TypeError, match="'pools' parameter of replay must be AnswerPools"):
        replay("pools")  # type: ignore[arg-type]
    empty = AnswerPools(np.array([0]), np.array([[0]]), np.array([0]), ("q",))
    with pytest.raises(ValueError, match="must hold at least one sample"):
        replay(empty)
    with pytest.raises(ValueError, match=r"'budget' parameter of calibrate_stopping must be a"):
        calibrate_stopping(BetaRule(), pools, -1.0)
    with pytest.raises(ValueError, match=r"calibrate_stopping must be a float in \[1, inf\)"):
        calibrate_stopping(BetaRule(), pools, 0.5)
    with pytest.raises(TypeError, match="'rule' parameter of evaluate_stopping must be a"):
        evaluate_stopping("beta", pools)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"'window' parameter of WindowRule must be an int"):
        WindowRule(window=0).stopping_times(replay(pools))
    with pytest.raises(ValueError, match=r"'top_k' parameter of DirichletRule must be an int"):
        DirichletRule(top_k=9).stopping_times(replay(pools))
    with pytest.raises(ValueError, match="`prior` must hold one score per query"):
        evaluate_stopping(BetaRule(), pools, prior=[0.1])


def test_policy_validation_messages():
    pools = random_pools(np.random.default_rng(19), 20, 4)
    with pytest.raises(ValueError, match="not fitted yet"):
        LagrangianStopping().decision_table()
    with pytest.raises(ValueError, match="needs the features `X`"):
        LagrangianStopping(n_groups=2).fit(pools)
    with pytest.raises(ValueError, match=r"'X' parameter of LagrangianStopping.fit must have"):
        LagrangianStopping(n_groups=2).fit(pools, np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"'n_groups' parameter of LagrangianStopping must be"):
        LagrangianStopping(n_groups=0).fit(pools)
    for bad in (-0.5, np.inf, np.nan, True, "1"):
        with pytest.raises(ValueError, match=r"'smoothing' parameter of LagrangianStopping must"):
            LagrangianStopping(smoothing=bad).fit(pools)
    fitted = LagrangianStopping(n_orders=4).fit(pools)
    with pytest.raises(ValueError, match=r"'smoothing' parameter of LagrangianStopping must"):
        fitted.set_params(smoothing=-1.0).decision_table()


def test_protocol_validation_messages():
    log = synthetic_log(30)
    with pytest.raises(ValueError, match="'protocol' parameter of sequential_methods must be"):
        sequential_methods(log, [2], protocol="both")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"sequential_methods must be a float in \[1, inf\)"):
        sequential_methods(log, [0.5])
    with pytest.raises(TypeError, match="'log' parameter of sequential_methods must be a"):
        sequential_methods("log", [2])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'model' parameter of sequential_methods must be one"):
        sequential_methods(log, [2], model="other")
    with pytest.raises(ValueError, match="'methods' parameter of sequential_methods must be"):
        sequential_methods(log, [2], methods=["oracle"])
    with pytest.raises(TypeError, match="'log' parameter of answer_pools must be a SampleLog"):
        answer_pools("log")  # type: ignore[arg-type]


def test_calibrated_stopping_describe():
    fit = CalibratedStopping(WindowRule(window=2), WindowRule(window=3), 0.25, 2.5, 2.5, 0.5)
    assert fit.describe() == "window=2|3 mix=0.250"
    assert fit.max_samples is None
