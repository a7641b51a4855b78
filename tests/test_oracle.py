"""Tests for computealloc.estimation.oracle: the LP oracle (exact, bisection, HiGHS) and the MILP
certificate.

Oracles: HiGHS on the same LP, a per-query Python hull with a full sort, brute force over all
integer allocations, and LP duality (every chosen action maximises ``P - lam * C``).
"""

from __future__ import annotations

import doctest
import itertools
import re

import numpy as np
import pytest
from numpy.typing import NDArray

import computealloc.estimation.oracle as solve_module
from computealloc.estimation.actions import parse_actions
from computealloc.estimation.oracle import certify, solve
from computealloc.estimation.table import Allocation, OutcomeTable
from conftest import needs_data

METHODS = ("exact", "bisection", "highs")


# --------------------------------------------------------------------------- helpers


def random_table(
    rng: np.random.Generator, n: int, k: int, *, ties: bool = False, sorted_costs: bool = False
) -> OutcomeTable:
    """Random accuracies and costs; ``ties`` draws from a coarse grid (equal costs, equal
    accuracies, equal slopes across queries)."""
    if ties:
        P = rng.integers(0, 5, (n, k)) / 4.0
        C = rng.integers(1, 5, (n, k)).astype(float)
    else:
        P = rng.random((n, k))
        C = rng.uniform(0.1, 4.0, (n, k))
    if sorted_costs:
        C = np.sort(C, axis=1)
    return OutcomeTable(P, C)


def budgets(table: OutcomeTable, count: int) -> NDArray[np.float64]:
    """Budgets from the cheapest actions' mean cost to past the most accurate ones'."""
    low = table.C.min(axis=1).mean()
    high = table.C.max(axis=1).mean()
    return np.linspace(low, high + 0.5, count)


def reference_hull(p: NDArray[np.float64], c: NDArray[np.float64]) -> list[int]:
    """Upper concave hull of one query, rising from its cheapest most accurate action."""
    ranked = sorted(range(p.size), key=lambda a: (c[a], -p[a], a))
    rising: list[int] = []
    for a in ranked:
        if not rising or p[a] > p[rising[-1]]:
            rising.append(a)
    hull: list[int] = []
    for a in rising:
        while len(hull) >= 2:
            u, m = hull[-2], hull[-1]
            if (c[m] - c[u]) * (p[a] - p[m]) - (p[m] - p[u]) * (c[a] - c[m]) < 0:
                break
            hull.pop()
        hull.append(a)
    return hull


def reference_value(table: OutcomeTable, budget: float) -> float:
    """LP optimum by per-query Python hulls and one full sort of all increments."""
    P, C = table.P, table.C
    n = table.n_queries
    value, room, steps = 0.0, n * budget, []
    for i in range(n):
        hull = reference_hull(P[i], C[i])
        value += P[i, hull[0]]
        room -= C[i, hull[0]]
        for lo, hi in itertools.pairwise(hull):
            dc, dp = C[i, hi] - C[i, lo], P[i, hi] - P[i, lo]
            steps.append((dp / dc, dc, dp))
    for _, dc, dp in sorted(steps, reverse=True):
        if room <= 0:
            break
        share = min(1.0, room / dc)
        value += share * dp
        room -= share * dc
    return value / n


def recomputed_means(table: OutcomeTable, alloc: Allocation) -> tuple[float, float]:
    """Mean accuracy and cost recomputed from ``actions`` and ``mix``."""
    rows = np.arange(table.n_queries)
    acc = table.P[rows, alloc.actions].sum()
    cost = table.C[rows, alloc.actions].sum()
    if alloc.mix is not None:
        q, lo, hi, w = alloc.mix
        assert alloc.actions[q] == lo
        acc += w * (table.P[q, hi] - table.P[q, lo])
        cost += w * (table.C[q, hi] - table.C[q, lo])
    return acc / table.n_queries, cost / table.n_queries


def assert_dual_optimal(table: OutcomeTable, alloc: Allocation, atol: float = 1e-9) -> None:
    """LP duality: every action in use maximises ``P - lam * C``; the budget binds if lam > 0."""
    score = table.P - alloc.lam * table.C
    top = score.max(axis=1)
    rows = np.arange(table.n_queries)
    assert alloc.lam >= 0
    assert np.all(score[rows, alloc.actions] >= top - atol)
    if alloc.mix is not None:
        q, _, hi, w = alloc.mix
        assert 0 < w < 1
        assert score[q, hi] >= top[q] - atol
    if alloc.lam > 0:
        assert alloc.cost == pytest.approx(alloc.budget, rel=1e-12)


def brute_force_integer(table: OutcomeTable, budget: float) -> float:
    """Best mean accuracy over all one-action-per-query allocations within the budget."""
    n, k = table.P.shape
    best = -np.inf
    rows = np.arange(n)
    for choice in itertools.product(range(k), repeat=n):
        a = np.array(choice)
        if table.C[rows, a].mean() <= budget + 1e-12:
            best = max(best, table.P[rows, a].mean())
    return float(best)


def vectorised_reference(table: OutcomeTable, budget: float) -> tuple[NDArray[np.intp], float]:
    """Plain version of the exact solver: the module's hulls, then one full argsort."""
    cols = solve_module._by_cost(table.P, table.C)
    pt, ct = np.ascontiguousarray(cols.ps.T), np.ascontiguousarray(cols.cs.T)
    dc, slope = solve_module._hull_increments(pt, ct)
    j, i = np.nonzero(dc > 0)
    order = np.lexsort((i, -slope[j, i]))
    j, i = j[order], i[order]
    cum = np.cumsum(dc[j, i])
    room = table.n_queries * budget - ct[0].sum()
    whole = int(np.searchsorted(cum, room, side="right"))
    pos = np.zeros(table.n_queries, dtype=np.intp)
    np.maximum.at(pos, i[:whole], j[:whole])
    return cols.actions(pos), float(slope[j[whole], i[whole]])


# --------------------------------------------------------------------------- oracles


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("sorted_costs", [False, True])
def test_methods_agree_with_highs_and_reference(ties: bool, sorted_costs: bool) -> None:
    rng = np.random.default_rng(7)
    for _ in range(12):
        table = random_table(
            rng,
            int(rng.integers(1, 40)),
            int(rng.integers(1, 7)),
            ties=ties,
            sorted_costs=sorted_costs,
        )
        for budget in budgets(table, 6):
            ref = reference_value(table, budget)
            for method in METHODS:
                alloc = solve(table, budget, method)
                assert alloc.accuracy == pytest.approx(ref, rel=1e-9, abs=1e-12), method


def test_every_allocation_is_dual_optimal() -> None:
    rng = np.random.default_rng(3)
    for trial in range(30):
        table = random_table(rng, 25, 5, ties=trial % 2 == 0)
        for budget in budgets(table, 5):
            for method in METHODS:
                assert_dual_optimal(table, solve(table, budget, method))


def test_dual_price_agrees_across_methods() -> None:
    rng = np.random.default_rng(11)
    table = random_table(rng, 300, 6)
    for budget in budgets(table, 7)[1:-2]:
        lams = [solve(table, budget, method).lam for method in METHODS]
        assert lams == pytest.approx([lams[0]] * 3, rel=1e-9)


def test_reported_fields_match_actions_and_mix() -> None:
    rng = np.random.default_rng(5)
    table = random_table(rng, 50, 4)
    for method in METHODS:
        alloc = solve(table, 2.0, method)
        acc, cost = recomputed_means(table, alloc)
        assert alloc.accuracy == pytest.approx(acc, rel=1e-12)
        assert alloc.cost == pytest.approx(cost, rel=1e-12)
        assert alloc.budget == 2.0
        assert alloc.action_names == table.actions
        assert alloc.query_ids == table.query_ids
        assert alloc.actions.dtype == np.int64


def test_budget_met_exactly() -> None:
    rng = np.random.default_rng(2)
    for trial in range(20):
        table = random_table(rng, 40, 5, ties=trial % 2 == 1)
        for budget in budgets(table, 8):
            for method in METHODS:
                alloc = solve(table, budget, method)
                assert alloc.cost <= budget * (1 + 1e-12)
                if alloc.status == "optimal":
                    assert alloc.cost == pytest.approx(budget, rel=1e-12)
                    assert alloc.lam > 0


def test_slack_budget_returns_most_accurate_actions_with_zero_price() -> None:
    P = np.array([[0.2, 0.9, 0.9], [0.5, 0.4, 0.5]])
    C = np.array([[1.0, 4.0, 8.0], [1.0, 2.0, 3.0]])
    table = OutcomeTable(P, C)
    for method in METHODS:
        alloc = solve(table, 10.0, method)
        assert alloc.status == "slack"
        assert alloc.lam == 0.0
        assert alloc.mix is None
        assert alloc.actions.tolist() == [1, 0]  # the cheapest of equally accurate actions
        assert alloc.cost == 2.5


def test_budget_equal_to_best_cost_is_slack() -> None:
    table = OutcomeTable([[0.2, 0.9], [0.5, 0.7]], [[1.0, 3.0], [1.0, 5.0]])
    alloc = solve(table, 4.0)
    assert (alloc.status, alloc.lam, alloc.actions.tolist()) == ("slack", 0.0, [1, 1])


def test_budget_at_cheapest_cost_takes_cheapest_actions() -> None:
    table = OutcomeTable([[0.2, 0.9], [0.5, 0.7]], [[1.0, 3.0], [2.0, 5.0]])
    for method in METHODS:
        alloc = solve(table, 1.5, method)
        assert alloc.actions.tolist() == [0, 0]
        assert alloc.mix is None
        assert alloc.cost == 1.5


def test_infeasible_budget_names_the_minimum() -> None:
    table = OutcomeTable([[0.2, 0.9], [0.5, 0.7]], [[1.0, 3.0], [1.0, 5.0]])
    for func in (solve, certify):
        msg = (
            f"The budget 0.5 of {func.__name__} is infeasible: the cheapest allocation costs 1 "
            "per query on average."
        )
        with pytest.raises(ValueError, match=re.escape(msg)):
            func(table, 0.5)


def test_budget_a_rounding_under_the_minimum_is_the_minimum() -> None:
    rng = np.random.default_rng(18)
    table = random_table(rng, 1000, 4)
    floor = float(table.C.min(axis=1).sum()) / 1000
    cheapest = table.C.argmin(axis=1)
    for budget in (floor, np.nextafter(floor, 0.0), floor * (1 - 1e-13)):
        for method in METHODS:
            alloc = solve(table, budget, method)
            assert np.array_equal(alloc.actions, cheapest)
            assert alloc.cost == pytest.approx(budget, rel=1e-12)
    with pytest.raises(ValueError, match="of solve is infeasible"):
        solve(table, floor * (1 - 1e-9))


# --------------------------------------------------------------------------- special cases


def test_tied_slopes_split_one_query_in_query_order() -> None:
    table = OutcomeTable(np.tile([0.5, 0.9], (5, 1)), np.tile([1.0, 3.0], (5, 1)))
    for method in ("exact", "bisection"):
        alloc = solve(table, 2.0, method)
        assert alloc.actions.tolist() == [1, 1, 0, 0, 0]
        assert alloc.mix == (2, 0, 1, 0.5)
        assert alloc.lam == pytest.approx(0.2)
        assert alloc.accuracy == pytest.approx(0.7)


def test_equal_costs_keep_the_more_accurate_action() -> None:
    P = np.array([[0.3, 0.6, 0.8, 0.95], [0.1, 0.2, 0.45, 0.4]])
    C = np.array([[1.0, 1.0, 2.0, 2.0], [2.0, 2.0, 4.0, 4.0]])
    table = OutcomeTable(P, C)
    allowed = [{1, 3}, {1, 2}]
    for budget in (1.5, 2.0, 2.5, 3.0, 4.0):
        for method in METHODS:
            alloc = solve(table, budget, method)
            for i, a in enumerate(alloc.actions):
                assert a in allowed[i]
            if alloc.mix is not None:
                assert alloc.mix[2] in allowed[alloc.mix[0]]
            assert alloc.accuracy == pytest.approx(reference_value(table, budget), rel=1e-12)


def test_dominated_actions_are_never_used() -> None:
    P = np.array([[0.4, 0.3, 0.8, 0.7]])  # a1 and a3 cost more than a0 and a2 for less
    C = np.array([[1.0, 2.0, 3.0, 4.0]])
    table = OutcomeTable(P, C)
    for budget in np.linspace(1.0, 5.0, 17):
        for method in METHODS:
            alloc = solve(table, budget, method)
            used = {int(alloc.actions[0])} | ({alloc.mix[2]} if alloc.mix else set())
            assert used <= {0, 2}


def test_non_concave_curve_mixes_across_the_dip() -> None:
    table = OutcomeTable([[0.1, 0.15, 0.9]], [[1.0, 2.0, 4.0]])  # a1 lies under the chord
    for method in METHODS:
        alloc = solve(table, 2.0, method)
        assert alloc.actions.tolist() == [0]
        assert alloc.mix == (0, 0, 2, pytest.approx(1 / 3))
        assert alloc.accuracy == pytest.approx(0.1 + 0.8 / 3)
        assert alloc.lam == pytest.approx(0.8 / 3)


def test_single_query_single_action() -> None:
    table = OutcomeTable([[0.7]], [[2.0]])
    alloc = solve(table, 3.0)
    assert (alloc.actions.tolist(), alloc.status, alloc.accuracy) == ([0], "slack", 0.7)
    with pytest.raises(ValueError, match=re.escape("The budget 1 of solve is infeasible")):
        solve(table, 1.0)


def test_unsorted_columns_give_the_same_allocation() -> None:
    rng = np.random.default_rng(4)
    table = random_table(rng, 60, 5, sorted_costs=True)
    perm = rng.permuted(np.tile(np.arange(5), (60, 1)), axis=1)
    shuffled = OutcomeTable(
        np.take_along_axis(table.P, perm, axis=1), np.take_along_axis(table.C, perm, axis=1)
    )
    rows = np.arange(60)
    for method in ("exact", "bisection"):
        a, b = solve(table, 1.7, method), solve(shuffled, 1.7, method)
        assert np.array_equal(perm[rows, b.actions], a.actions)
        assert b.accuracy == pytest.approx(a.accuracy, rel=1e-12)


# --------------------------------------------------------------------------- invariants


def test_permuting_queries_permutes_the_allocation() -> None:
    rng = np.random.default_rng(8)
    table = random_table(rng, 200, 6)
    perm = rng.permutation(200)
    permuted = table.subset(perm)
    for method in ("exact", "bisection"):
        a, b = solve(table, 1.9, method), solve(permuted, 1.9, method)
        assert np.array_equal(b.actions, a.actions[perm])
        assert a.mix is not None and b.mix is not None
        assert perm[b.mix[0]] == a.mix[0]
        assert b.mix[1:] == pytest.approx(a.mix[1:], rel=1e-9)


def test_accuracy_non_decreasing_in_budget() -> None:
    rng = np.random.default_rng(9)
    table = random_table(rng, 100, 6, ties=True)
    for method in ("exact", "bisection"):
        accs = [solve(table, b, method).accuracy for b in budgets(table, 40)]
        assert np.all(np.diff(accs) >= -1e-12)


# --------------------------------------------------------------------------- kernels


def test_hulls_match_a_python_monotone_chain() -> None:
    rng = np.random.default_rng(10)
    for ties in (False, True):
        n, k = 400, 7
        P = rng.integers(0, 5, (n, k)) / 4.0 if ties else rng.random((n, k))
        C = rng.integers(1, 6, (n, k)).astype(float) if ties else rng.random((n, k))
        cols = solve_module._by_cost(P, C)
        pt, ct = np.ascontiguousarray(cols.ps.T), np.ascontiguousarray(cols.cs.T)
        dc, _ = solve_module._hull_increments(pt, ct)
        for i in range(n):
            pos = [0, *np.flatnonzero(dc[:, i] > 0).tolist()]
            got = [int(cols.actions(np.full(n, j))[i]) for j in pos]
            assert got == reference_hull(P[i], C[i])


@pytest.mark.parametrize("distinct", [3, 50, 10**6])
def test_weighted_selection_matches_a_full_sort(distinct: int) -> None:
    rng = np.random.default_rng(distinct)
    m = 5 * solve_module._SELECT_SMALL
    slope = rng.integers(1, distinct + 1, m) / distinct
    weight = rng.uniform(0.5, 2.0, m)
    for share in (0.0, 0.01, 0.37, 0.5, 0.99):
        room = share * weight.sum()
        got = solve_module._cut_slope(slope, weight, room)
        want = solve_module._cut_slope_sorted(slope, weight, room)
        assert got[0] == want[0]
        assert got[1] == pytest.approx(want[1], rel=1e-9, abs=1e-6)


def test_sampled_sweep_matches_one_full_sort() -> None:
    rng = np.random.default_rng(12)
    n = 5 * solve_module._BLOCK
    table = OutcomeTable(np.sort(rng.random((n, 5)), axis=1), np.sort(rng.random((n, 5)), axis=1))
    for budget in (0.3, 0.5, 0.7):
        alloc = solve(table, budget)
        actions, lam = vectorised_reference(table, budget)
        assert alloc.lam == lam
        assert np.array_equal(alloc.actions, actions)


@pytest.mark.parametrize("pivots", [(1e300, 1e299), (1e-9, 1e-10), (0.5, 0.5)])
def test_missed_pivots_fall_back_to_a_full_pass(
    monkeypatch: pytest.MonkeyPatch, pivots: tuple[float, float]
) -> None:
    rng = np.random.default_rng(13)
    n = 5 * solve_module._BLOCK
    table = OutcomeTable(rng.random((n, 4)), rng.random((n, 4)))
    want = solve(table, 0.4)
    sweeps: list[tuple[float, float]] = []
    sweep = solve_module._sweep

    def spy(ps: NDArray[np.float64], cs: NDArray[np.float64], hi: float, lo: float) -> object:
        sweeps.append((hi, lo))
        return sweep(ps, cs, hi, lo)

    monkeypatch.setattr(solve_module, "_sample_pivots", lambda *_: pivots)
    monkeypatch.setattr(solve_module, "_sweep", spy)
    got = solve(table, 0.4)
    assert sweeps == [pivots, (np.inf, -np.inf)]
    assert np.array_equal(got.actions, want.actions)
    assert (got.mix, got.lam, got.accuracy) == (want.mix, want.lam, want.accuracy)


@pytest.mark.slow
def test_one_million_queries() -> None:
    rng = np.random.default_rng(14)
    n, k = 1_000_000, 8
    C = np.cumsum(rng.uniform(0.5, 1.5, (n, k)), axis=1)
    P = np.clip(np.sort(rng.random((n, k)), axis=1) + rng.normal(0, 0.02, (n, k)), 0, 1)
    table = OutcomeTable(P, C)
    exact = solve(table, 3.0)
    assert exact.cost == pytest.approx(3.0, rel=1e-12)
    assert_dual_optimal(table, exact)
    bisection = solve(table, 3.0, "bisection")
    assert bisection.accuracy == pytest.approx(exact.accuracy, rel=1e-9)


@needs_data
@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    [
        "mot_cascade:llama-2-13b/gsm/pot2",
        "mot_cascade:gpt-3.5-turbo/date/cot1-40",
        "qwen25math_rm_maj",
    ],
)
def test_real_sources_agree_at_standard_budgets(name: str) -> None:
    from computealloc.data import datasets
    from computealloc.estimation.estimate import estimate

    table = estimate(datasets.load(name))
    for budget in (1.0, 2.0, 4.0, 8.0):
        runs = [solve(table, budget, method) for method in METHODS]
        for alloc in runs:
            assert alloc.accuracy == pytest.approx(runs[0].accuracy, rel=1e-9)
            assert alloc.cost <= budget * (1 + 1e-12)
            assert_dual_optimal(table, alloc)
        cert = certify(table, budget)
        assert cert.status == "optimal"
        assert -1e-12 <= cert.gap <= cert.gap_bound + 1e-12


# --------------------------------------------------------------------------- certify


def test_certificate_matches_brute_force() -> None:
    rng = np.random.default_rng(15)
    for trial in range(25):
        n, k = int(rng.integers(1, 6)), int(rng.integers(1, 5))
        table = random_table(rng, n, k, ties=trial % 3 == 0)
        for budget in budgets(table, 4):
            cert = certify(table, budget)
            assert cert.status == "optimal"
            assert cert.accuracy == pytest.approx(brute_force_integer(table, budget), abs=1e-12)
            assert cert.cost <= budget + 1e-12
            assert -1e-12 <= cert.gap <= cert.gap_bound + 1e-12
            assert cert.lp_bound == pytest.approx(solve(table, budget).accuracy, rel=1e-12)


def test_gap_is_at_most_one_query_increment() -> None:
    rng = np.random.default_rng(16)
    table = random_table(rng, 60, 5)
    widest = (table.P.max(axis=1) - table.P.min(axis=1)).max() / table.n_queries
    for budget in budgets(table, 5):
        cert = certify(table, budget)
        assert cert.gap_bound <= widest
        assert cert.lp_bound - cert.gap_bound - 1e-12 <= cert.accuracy <= cert.lp_bound + 1e-12


def test_certificate_on_time_limit_keeps_a_feasible_allocation() -> None:
    rng = np.random.default_rng(17)
    table = random_table(rng, 2000, 8)
    cert = certify(table, 2.0, time_limit=1e-9)
    assert cert.status == "time_limit"
    assert cert.cost <= 2.0 + 1e-9
    assert cert.accuracy >= cert.lp_bound - cert.gap_bound - 1e-12


# --------------------------------------------------------------------------- validation


@pytest.fixture
def small() -> OutcomeTable:
    return OutcomeTable([[0.2, 0.9], [0.5, 0.7]], [[1.0, 3.0], [1.0, 5.0]])


@pytest.mark.parametrize(
    ("budget", "error", "shown"),
    [
        (-3.0, ValueError, "-3.0"),
        (0, ValueError, "0"),
        (float("inf"), ValueError, "inf"),
        (float("nan"), ValueError, "nan"),
        ("2", ValueError, "'2'"),
        (True, ValueError, "True"),
    ],
)
def test_invalid_budget(small: OutcomeTable, budget: object, error: type, shown: str) -> None:
    for func in (solve, certify):
        msg = (
            f"The 'budget' parameter of {func.__name__} must be a float in (0, inf). "
            f"Got {shown} instead."
        )
        with pytest.raises(error, match=re.escape(msg)):
            func(small, budget)  # type: ignore[operator]


def test_invalid_table() -> None:
    for func in (solve, certify):
        msg = f"The 'table' parameter of {func.__name__} must be an OutcomeTable. Got ndarray"
        with pytest.raises(TypeError, match=re.escape(msg)):
            func(np.ones((2, 2)), 1.0)  # type: ignore[operator]


def test_invalid_method(small: OutcomeTable) -> None:
    msg = (
        "The 'method' parameter of solve must be one of {'bisection', 'exact', 'highs'}. "
        "Got 'simplex' instead."
    )
    with pytest.raises(ValueError, match=re.escape(msg)):
        solve(small, 2.0, "simplex")  # type: ignore[arg-type]


@pytest.mark.parametrize("tol", [0.0, 1.0, -1e-3])
def test_invalid_tol(small: OutcomeTable, tol: float) -> None:
    msg = f"The 'tol' parameter of solve must be a float in (0, 1). Got {tol!r} instead."
    with pytest.raises(ValueError, match=re.escape(msg)):
        solve(small, 2.0, tol=tol)


def test_invalid_time_limit(small: OutcomeTable) -> None:
    msg = "The 'time_limit' parameter of certify must be a float in (0, inf]. Got 0.0 instead."
    with pytest.raises(ValueError, match=re.escape(msg)):
        certify(small, 2.0, time_limit=0)


def test_docstring_examples() -> None:
    result = doctest.testmod(solve_module)
    assert result.attempted > 0
    assert result.failed == 0


ROUTING = [
    ("routellm:gsm8k", "samples"),
    ("routellm:mmlu", "samples"),
    ("routerdc:gsm8k-test", "samples"),
    ("zeroeval_gsm8k", "chars"),
    ("zeroeval_math_l5", "chars"),
]


@needs_data
@pytest.mark.slow
@pytest.mark.parametrize(("name", "cost"), ROUTING)
def test_routing_sources_agree_across_the_feasible_range(name: str, cost: str) -> None:
    """Model-routing tables of every one-sample source: all three solvers agree."""
    from computealloc.data import datasets
    from computealloc.evaluation import outcome_table

    log = datasets.load(name)
    actions = [f"{model}/majority@1" for model in log.models]
    # samples: model j costs j + 1 (a price ladder); chars: the response length
    prices = {m: float(j + 1) for j, m in enumerate(log.models)} if cost == "samples" else None
    table = outcome_table(log, tuple(parse_actions(actions)), cost, prices)
    low, high = table.C.min(axis=1).mean(), table.C.max(axis=1).mean()
    for budget in np.linspace(low, high, 6)[1:-1]:
        runs = [solve(table, float(budget), method) for method in METHODS]
        for alloc in runs:
            assert alloc.accuracy == pytest.approx(runs[0].accuracy, rel=1e-9)
            assert alloc.cost <= budget * (1 + 1e-12)
