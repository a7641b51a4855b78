"""Offline calibration of the dual price ``lam`` of a score-based allocation rule.

A policy scores every action of every query (``S[i, a]``: predicted accuracy, log-probability
of the oracle's choice, ...). Its deployable rule gives query ``i`` the action

    a_i(lam) = argmax_a  S[i, a] - lam * C[i, a],

independently of the other queries, so it runs on a stream. :func:`calibrate_lambda` sets
``lam`` on a calibration split so that the mean cost of the rule equals the budget ``B`` there;
queries tied at ``lam`` take their more expensive tied action with probability ``mix`` (so the
expected mean cost hits ``B`` exactly even when many queries tie, e.g. a length rule on equal
lengths). :func:`apply_lambda` applies the rule to new queries.

The search for ``lam`` is the oracle's: :func:`computealloc.estimation.oracle.solve` on the table of
scores (shifted per query and scaled into [0, 1], which leaves every ``argmax`` unchanged),
:func:`solve_scores`. Scores that are not accuracies (log-probabilities) may peak at cheap
actions on most queries; ``match_budget=True`` then lets the price go negative so the budget
is still spent, where predicted accuracies would rightly leave it slack.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from numpy.typing import ArrayLike, NDArray

from computealloc.checks import check_budget
from computealloc.estimation.oracle import solve
from computealloc.estimation.table import Allocation, OutcomeTable

__all__ = [
    "apply_lambda",
    "calibrate_lambda",
    "lagrangian_bracket",
    "solve_scores",
]

#: Relative tolerance under which two Lagrangian values count as tied.
TIE_RTOL = 1e-9


def _scores_costs_iv(
    scores: ArrayLike, costs: ArrayLike, function: str
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2 or 0 in s.shape:
        raise ValueError(
            f"The 'scores' parameter of {function} must be a non-empty 2-D array "
            f"(n_queries, n_actions). Got shape {s.shape} instead."
        )
    if not np.isfinite(s).all():
        raise ValueError(f"The 'scores' parameter of {function} must be finite.")
    c = np.asarray(costs, dtype=np.float64)
    if c.shape not in {s.shape, s.shape[1:]}:
        raise ValueError(
            f"`costs` must have shape {s.shape} or {s.shape[1:]} (one cost per action). "
            f"Got {c.shape}."
        )
    if not np.isfinite(c).all() or (c < 0).any():
        raise ValueError(f"The 'costs' parameter of {function} must hold finite costs >= 0.")
    return s, np.broadcast_to(c, s.shape)


def lagrangian_bracket(
    scores: ArrayLike, costs: ArrayLike, lam: float
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """The cheapest and the most expensive maximiser of ``S - lam * C`` per query.

    Parameters
    ----------
    scores : array-like of shape (n_queries, n_actions)
        Per-action scores.
    costs : array-like of shape (n_queries, n_actions) or (n_actions,)
        Per-action costs.
    lam : float
        Dual price of cost.

    Returns
    -------
    low, high : ndarray of shape (n_queries,), int
        Action indices; they differ only for queries whose maximum is tied (within a relative
        ``1e-9``) between actions of different cost.
    """
    s, c = _scores_costs_iv(scores, costs, "lagrangian_bracket")
    value = s - lam * c
    best = value.max(axis=1, keepdims=True)
    tied = value >= best - TIE_RTOL * np.maximum(1.0, np.abs(best))
    low = np.where(tied, c, np.inf).argmin(axis=1)
    high = np.where(tied, c, -np.inf).argmax(axis=1)
    return low.astype(np.int64), high.astype(np.int64)


def _cost_premium(s: NDArray[np.float64], c: NDArray[np.float64]) -> float:
    """A price ``mu >= 0`` at which every query's maximiser of ``S + mu C`` is a dearest action."""
    dearest = c == c.max(axis=1, keepdims=True)
    best = np.where(dearest, s, -np.inf).max(axis=1, keepdims=True)
    gap = c.max(axis=1, keepdims=True) - c
    ratio = np.where(gap > 0, (s - best) / np.where(gap > 0, gap, 1.0), 0.0)
    return 2.0 * max(0.0, float(ratio.max())) + 1e-9


def solve_scores(
    scores: ArrayLike, costs: ArrayLike, budget: float, *, match_budget: bool = False
) -> Allocation:
    """The oracle's allocation of a batch on scores instead of accuracies.

    Solves ``max mean S[i, a_i] s.t. mean C[i, a_i] <= budget`` with
    :func:`computealloc.estimation.oracle.solve` after an affine change of the scores that leaves
    every Lagrangian ``argmax`` unchanged (a shift per query and one positive scale into [0, 1]).

    Parameters
    ----------
    scores : array-like of shape (n_queries, n_actions)
        Finite per-action scores.
    costs : array-like of shape (n_queries, n_actions) or (n_actions,)
        Per-action costs, >= 0.
    budget : float
        Mean cost per query.
    match_budget : bool
        Spend the budget even where the scores peak at cheaper actions, by letting the price
        go negative (for scores that are not accuracies, such as log-probabilities, whose
        peak says nothing about the value of more compute). With ``False`` such a budget is
        slack and the price is 0.

    Returns
    -------
    Allocation
        As :func:`computealloc.estimation.oracle.solve`; ``lam`` is in score units per cost unit
        (negative only with ``match_budget``) and ``accuracy`` is the mean of the transformed
        scores.
    """
    s, c = _scores_costs_iv(scores, costs, "solve_scores")
    budget = check_budget(budget, "solve_scores")
    premium = _cost_premium(s, c) if match_budget else 0.0
    lifted = s + premium * c
    lifted -= lifted.min(axis=1, keepdims=True)
    scale = float(lifted.max()) or 1.0
    allocation = solve(OutcomeTable(lifted / scale, c), budget, method="exact")
    return replace(allocation, lam=float(allocation.lam) * scale - premium)


def calibrate_lambda(
    scores: ArrayLike, costs: ArrayLike, budget: float, *, match_budget: bool = False
) -> tuple[float, float]:
    """Dual price and tie-mixing probability that spend ``budget`` per query on average.

    Finds, over the calibration queries, ``lam`` and ``mix`` with

        mean_i E[C[i, a_i]] = budget,

    where ``a_i`` is the cheapest maximiser of ``S[i] - lam * C[i]``, replaced by the most
    expensive one with probability ``mix``. When even ``lam = 0`` spends less than the budget,
    returns ``(0.0, 0.0)`` (the budget is slack), unless ``match_budget`` lets ``lam`` go
    negative.

    Parameters
    ----------
    scores : array-like of shape (n_queries, n_actions)
        Finite per-action scores of the calibration queries (any units: the returned ``lam``
        is in score units per cost unit).
    costs : array-like of shape (n_queries, n_actions) or (n_actions,)
        Per-action costs, >= 0.
    budget : float
        Target mean cost per query, at least the mean cost of the cheapest actions.
    match_budget : bool
        Allow a negative price so that the budget is always spent (see :func:`solve_scores`).

    Returns
    -------
    lam : float
        Dual price (>= 0 unless ``match_budget``).
    mix : float
        Probability in [0, 1] that a tied query takes its more expensive tied action.

    Notes
    -----
    Calibrating and evaluating on the same queries makes the expected cost exact only there;
    on ``n`` fresh queries from the same distribution the realised mean cost differs from
    ``budget`` by sampling noise of about ``std(cost) * sqrt(1 / n + 1 / n_calibration)``.

    Examples
    --------
    >>> lam, mix = calibrate_lambda([[0.0, 1.0], [0.0, 1.0]], [1.0, 3.0], 2.0)
    >>> round(lam, 6), round(mix, 6)
    (0.5, 0.5)
    """
    s, c = _scores_costs_iv(scores, costs, "calibrate_lambda")
    budget = check_budget(budget, "calibrate_lambda")
    allocation = solve_scores(s, c, budget, match_budget=match_budget)
    if allocation.status == "slack":
        return allocation.lam, 0.0
    low, high = lagrangian_bracket(s, c, allocation.lam)
    rows = np.arange(s.shape[0])
    cost_low = float(c[rows, low].mean())
    cost_high = float(c[rows, high].mean())
    if cost_high <= cost_low:
        return allocation.lam, 0.0
    mix = float(np.clip((budget - cost_low) / (cost_high - cost_low), 0.0, 1.0))
    return allocation.lam, mix


def apply_lambda(
    scores: ArrayLike,
    costs: ArrayLike,
    lam: float,
    mix: float,
    random_state: int | np.random.Generator | None = None,
) -> NDArray[np.int64]:
    """Apply a calibrated rule to each query independently.

    Parameters
    ----------
    scores : array-like of shape (n_queries, n_actions)
        Per-action scores, in the units ``lam`` was calibrated in.
    costs : array-like of shape (n_queries, n_actions) or (n_actions,)
        Per-action costs.
    lam : float
        Dual price from :func:`calibrate_lambda`.
    mix : float
        Tie-mixing probability from :func:`calibrate_lambda`.
    random_state : int, Generator or None
        Seed of the tie-mixing draws (one uniform per query, whether it is tied or not).

    Returns
    -------
    ndarray of shape (n_queries,), int
        Chosen action index per query.
    """
    if not 0.0 <= mix <= 1.0:
        raise ValueError(
            f"The 'mix' parameter of apply_lambda must be a float in [0, 1]. Got {mix!r} instead."
        )
    if not np.isfinite(lam):
        raise ValueError(
            f"The 'lam' parameter of apply_lambda must be a finite float. Got {lam!r} instead."
        )
    low, high = lagrangian_bracket(scores, costs, lam)
    draw = np.random.default_rng(random_state).random(low.shape[0])
    return np.where(draw < mix, high, low)
