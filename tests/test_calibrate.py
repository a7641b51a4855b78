"""Tests of computealloc.fitting.calibrate: the dual price of a streaming rule and its tie
mixing."""

from __future__ import annotations

import numpy as np
import pytest

from computealloc.estimation.oracle import solve
from computealloc.estimation.table import OutcomeTable
from computealloc.fitting.calibrate import (
    apply_lambda,
    calibrate_lambda,
    lagrangian_bracket,
    solve_scores,
)

COSTS = np.array([1.0, 2.0, 4.0, 8.0])


def _expected_cost(scores, costs, lam, mix):
    low, high = lagrangian_bracket(scores, costs, lam)
    c = np.broadcast_to(costs, scores.shape)
    rows = np.arange(scores.shape[0])
    return (1 - mix) * c[rows, low].mean() + mix * c[rows, high].mean()


def _deterministic_cost(scores, costs, lam):
    c = np.broadcast_to(costs, scores.shape)
    value = scores - lam * c
    return c[np.arange(scores.shape[0]), value.argmax(axis=1)].mean()


def test_example_two_tied_queries():
    lam, mix = calibrate_lambda([[0.0, 1.0], [0.0, 1.0]], [1.0, 3.0], 2.0)
    assert lam == pytest.approx(0.5)
    assert mix == pytest.approx(0.5)


@pytest.mark.parametrize("budget", [1.0, 1.3, 2.0, 3.7, 5.5, 7.9])
@pytest.mark.parametrize("kind", ["continuous", "tied", "per_query_costs"])
def test_expected_cost_equals_budget(budget, kind):
    rng = np.random.default_rng(0)
    n = 300
    if kind == "tied":
        scores = np.tile(np.log1p(COSTS), (n, 1)) * rng.integers(1, 4, size=(n, 1))
    else:
        scores = np.sort(rng.random((n, 4)), axis=1)
    costs = COSTS * rng.uniform(0.9, 1.1, size=(n, 1)) if kind == "per_query_costs" else COSTS
    if budget < np.broadcast_to(costs, scores.shape).min(axis=1).mean():
        pytest.skip("infeasible for these costs")
    lam, mix = calibrate_lambda(scores, costs, budget)
    assert lam >= 0 and 0 <= mix <= 1
    assert _expected_cost(scores, costs, lam, mix) == pytest.approx(budget, abs=1e-9)


def test_lambda_is_the_crossing_of_the_cost_curve():
    rng = np.random.default_rng(1)
    scores = rng.random((200, 4))
    lam, _ = calibrate_lambda(scores, COSTS, 3.0)
    assert _deterministic_cost(scores, COSTS, lam * (1 + 1e-6)) <= 3.0
    assert _deterministic_cost(scores, COSTS, lam * (1 - 1e-6)) >= 3.0


def test_invariant_to_row_shift_and_positive_scale():
    rng = np.random.default_rng(2)
    scores = rng.random((100, 4))
    lam, mix = calibrate_lambda(scores, COSTS, 2.5)
    moved = 7.0 * scores + rng.normal(size=(100, 1))
    lam2, mix2 = calibrate_lambda(moved, COSTS, 2.5)
    assert lam2 == pytest.approx(7.0 * lam)
    assert mix2 == pytest.approx(mix)
    np.testing.assert_array_equal(
        apply_lambda(scores, COSTS, lam, mix, 0), apply_lambda(moved, COSTS, lam2, mix2, 0)
    )


def test_slack_budget_gives_zero_price():
    scores = np.array([[0.1, 0.9, 0.5, 0.2], [0.3, 0.2, 0.1, 0.0]])
    assert calibrate_lambda(scores, COSTS, 5.0) == (0.0, 0.0)
    np.testing.assert_array_equal(apply_lambda(scores, COSTS, 0.0, 0.0), [1, 0])


def test_apply_lambda_mixes_only_ties():
    scores = np.array([[0.0, 1.0], [0.0, 1.0], [0.0, 5.0]])
    costs = np.array([1.0, 3.0])
    np.testing.assert_array_equal(apply_lambda(scores, costs, 0.5, 0.0), [0, 0, 1])
    np.testing.assert_array_equal(apply_lambda(scores, costs, 0.5, 1.0), [1, 1, 1])
    many = np.repeat(scores, 2000, axis=0)
    draws = apply_lambda(many, costs, 0.5, 0.3, 0).reshape(3, 2000)
    assert (draws[2] == 1).all()
    assert draws[:2].mean() == pytest.approx(0.3, abs=0.03)
    np.testing.assert_array_equal(
        apply_lambda(scores, costs, 0.5, 0.3, 7), apply_lambda(scores, costs, 0.5, 0.3, 7)
    )


def test_bracket_picks_cheapest_and_dearest_tied():
    low, high = lagrangian_bracket([[1.0, 1.0, 1.0, 0.0]], COSTS, 0.0)
    assert (low.tolist(), high.tolist()) == ([0], [2])


def test_scores_must_be_2d():
    with pytest.raises(ValueError, match=r"The 'scores' parameter of calibrate_lambda must be a"):
        calibrate_lambda([1.0, 2.0], [1.0, 2.0], 1.5)


def test_scores_must_be_finite():
    with pytest.raises(ValueError, match="The 'scores' parameter of calibrate_lambda must be fin"):
        calibrate_lambda([[0.0, np.inf]], [1.0, 2.0], 1.5)


def test_costs_shape_checked():
    with pytest.raises(ValueError, match=r"`costs` must have shape \(1, 2\) or \(2,\)"):
        calibrate_lambda([[0.0, 1.0]], [1.0, 2.0, 3.0], 1.5)


def test_costs_must_be_non_negative():
    with pytest.raises(ValueError, match="must hold finite costs >= 0"):
        calibrate_lambda([[0.0, 1.0]], [-1.0, 2.0], 1.5)


@pytest.mark.parametrize("budget", [-3.0, 0.0, np.nan, "4", True])
def test_budget_checked(budget):
    with pytest.raises(ValueError, match="The 'budget' parameter of calibrate_lambda must be a"):
        calibrate_lambda([[0.0, 1.0]], [1.0, 2.0], budget)


def test_infeasible_budget():
    with pytest.raises(ValueError, match="infeasible"):
        calibrate_lambda([[0.0, 1.0]], [1.0, 2.0], 0.5)


def test_apply_lambda_checks_mix_and_lam():
    with pytest.raises(ValueError, match=r"The 'mix' parameter of apply_lambda must be a float"):
        apply_lambda([[0.0, 1.0]], [1.0, 2.0], 0.1, 1.5)
    with pytest.raises(ValueError, match=r"The 'lam' parameter of apply_lambda must be a finite"):
        apply_lambda([[0.0, 1.0]], [1.0, 2.0], np.inf, 0.5)


@pytest.mark.parametrize("budget", [1.5, 3.0, 6.0, 7.99])
def test_match_budget_spends_beyond_the_score_peak(budget):
    rng = np.random.default_rng(5)
    scores = np.log(rng.dirichlet([4.0, 1.0, 1.0, 0.5], size=400))  # peaks mostly cheap
    assert calibrate_lambda(scores, COSTS, 6.0) == (0.0, 0.0)
    lam, mix = calibrate_lambda(scores, COSTS, budget, match_budget=True)
    assert _expected_cost(scores, COSTS, lam, mix) == pytest.approx(budget, abs=1e-9)
    assert lam < 0 if budget > _deterministic_cost(scores, COSTS, 0.0) else lam >= 0


def test_match_budget_above_every_cost_takes_the_dearest():
    scores = np.log([[0.7, 0.1, 0.1, 0.1], [0.1, 0.1, 0.1, 0.7]])
    lam, mix = calibrate_lambda(scores, COSTS, 9.0, match_budget=True)
    np.testing.assert_array_equal(apply_lambda(scores, COSTS, lam, mix), [3, 3])


def test_solve_scores_matches_solve_on_accuracies():
    rng = np.random.default_rng(6)
    p = rng.random((50, 4))
    table = OutcomeTable(p, np.tile(COSTS, (50, 1)))
    a, b = solve(table, 3.0), solve_scores(p, COSTS, 3.0)
    np.testing.assert_array_equal(a.actions, b.actions)
    assert a.mix == b.mix and b.lam == pytest.approx(a.lam)
