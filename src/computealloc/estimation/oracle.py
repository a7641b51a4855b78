r"""The oracle allocation: the LP relaxation of the multiple-choice knapsack.

Given an :class:`~computealloc.estimation.table.OutcomeTable` with expected accuracy ``P[i, a]`` and
expected cost ``C[i, a]`` of action ``a`` on query ``i``, the oracle solves

.. math::

    \max_{x \ge 0} \; \frac{1}{N} \sum_{i, a} x_{ia} P_{ia}
    \quad \text{s.t.} \quad \frac{1}{N} \sum_{i, a} x_{ia} C_{ia} \le B,
    \qquad \sum_a x_{ia} = 1 \;\; \forall i.

Three solvers return the same optimum through :func:`solve`:

- ``"exact"``: each query's upper concave hull of (cost, accuracy) points; the hull increments
  are taken by decreasing slope until the budget is spent, the last one fractionally. Only the
  cut slope is needed, so a weighted selection replaces a full sort.
- ``"bisection"``: the Lagrangian method of Zhai et al. (2026): per query
  ``argmax_a P[i, a] - lam * C[i, a]``; bisection on ``lam`` brackets the budget, and the
  queries that switch inside the bracket are switched one at a time until the budget is met.
- ``"highs"``: the LP itself, through :func:`scipy.optimize.linprog` (HiGHS interior point
  with crossover, so the solution is a vertex).

:func:`certify` solves the integer problem with :func:`scipy.optimize.milp` and reports the
gap between the integer optimum and the LP bound.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
from numpy.typing import NDArray
from scipy import optimize, sparse

from computealloc.checks import check_budget, check_feasible
from computealloc.estimation.table import Allocation, OutcomeTable

__all__ = ["Certificate", "certify", "solve"]

_METHODS = ("bisection", "exact", "highs")
_SELECT_SMALL = 1 << 14  # below this many increments the cut slope is found by a plain sort
_SELECT_SAMPLE = 1 << 12  # increments sampled to place the selection pivots
_BLOCK = 1 << 14  # queries per block in column sweeps (a block's arrays stay in cache)
_X_TOL = 1e-9  # an LP variable below this is read as zero

_Mix = tuple[int, int, int]  # (query, action_low, action_high) before the weight is known


@dataclass(frozen=True)
class Certificate:
    """Integer optimum of the allocation problem and its gap to the LP bound.

    Attributes
    ----------
    accuracy : float
        Mean accuracy of the best integer allocation found (one action per query).
    cost : float
        Mean cost of that integer allocation.
    actions : ndarray of shape (n_queries,), int
        Action index per query of that integer allocation.
    lp_bound : float
        Optimal mean accuracy of the LP relaxation (:func:`solve`), an upper bound.
    gap : float
        ``lp_bound - accuracy``, in accuracy units (mean over queries).
    gap_bound : float
        What rounding the LP's fractional query down to its cheaper action loses,
        ``weight_high * (P[q, high] - P[q, low]) / n_queries``; ``0 <= gap <= gap_bound``
        whenever ``status == "optimal"``. At most one query's hull increment.
    status : str
        ``"optimal"`` (the MILP was solved to optimality), ``"time_limit"`` (stopped early;
        ``accuracy`` is then the best incumbent, the LP allocation rounded down if the
        solver had none) or ``"failed"``.
    """

    accuracy: float
    cost: float
    actions: NDArray[np.int64]
    lp_bound: float
    gap: float
    gap_bound: float
    status: str


def solve(
    table: OutcomeTable,
    budget: float,
    method: Literal["exact", "bisection", "highs"] = "exact",
    *,
    tol: float = 1e-12,
) -> Allocation:
    """Best mean accuracy at a mean-cost budget (the LP relaxation of the knapsack).

    Solves

    ``max_x (1/N) sum_ia x_ia P_ia  s.t.  (1/N) sum_ia x_ia C_ia <= B,  sum_a x_ia = 1,  x >= 0``

    whose optimum gives every query one action except at most one query, which mixes two.

    Parameters
    ----------
    table : OutcomeTable
        ``P`` (n_queries, n_actions) expected accuracy and ``C`` (n_queries, n_actions)
        expected cost, in ``table.cost_unit``.
    budget : float
        Mean cost per query ``B``, in ``table.cost_unit``; in ``(0, inf)``.
    method : {"exact", "bisection", "highs"}, default="exact"
        ``"exact"``: concave hulls and a weighted selection of the cut slope, ``O(N K^2)``.
        ``"bisection"``: bisection on the dual price (the paper's method), ``O(N K)`` per
        step. ``"highs"``: :func:`scipy.optimize.linprog` on the LP (slow; an oracle).
    tol : float, default=1e-12
        ``"bisection"`` only: relative width of the final bracket on the dual price.
        Switching the bracket's queries in slope order makes the result optimal up to
        about ``tol * lam * B`` in accuracy.

    Returns
    -------
    Allocation
        ``actions`` (n_queries,) action indices (the fractional query at its cheaper action),
        ``mix = (query, action_low, action_high, weight_high)`` or ``None``, ``lam`` the dual
        price (accuracy per unit cost), ``accuracy`` and ``cost`` (means; ``cost == budget``
        up to rounding when ``status == "optimal"``), ``status`` ``"optimal"`` or
        ``"slack"`` (the most accurate actions cost at most ``budget``; ``lam = 0``).

    Raises
    ------
    ValueError
        If ``budget`` is below the mean cost of each query's cheapest action (infeasible),
        or a parameter is out of range.
    TypeError
        If ``table`` is not an :class:`OutcomeTable` or ``budget`` is not a real number.
    RuntimeError
        If HiGHS (``method="highs"``) fails.

    Notes
    -----
    Ties are broken deterministically: per query toward the cheaper action, across queries
    (equal hull slopes at the cut) in query order, so exactly one query is fractional.
    Equal-cost actions keep the most accurate one; actions no more accurate than a cheaper
    one, and points under a query's concave hull, are never chosen (the LP never needs them).

    The allocation is optimal for the *estimated* table: when ``P`` is estimated from the same
    samples used to score it, its accuracy is optimistic (selection bias).

    References
    ----------
    .. [1] Zhai et al., "Adaptive Test-Time Compute Allocation for Reasoning LLMs via
       Constrained Policy Optimization", 2026.
    .. [2] E. Zemel, "An O(n) algorithm for the linear multiple choice knapsack problem and
       related problems", Information Processing Letters 18(3), 1984.

    Examples
    --------
    >>> import numpy as np
    >>> from computealloc.estimation.table import OutcomeTable
    >>> from computealloc.estimation.oracle import solve
    >>> table = OutcomeTable([[0.5, 0.9], [0.2, 0.3]], [[1.0, 4.0], [1.0, 4.0]])
    >>> alloc = solve(table, budget=2.0)
    >>> alloc.actions.tolist(), alloc.mix, round(alloc.accuracy, 6), alloc.cost
    ([0, 0], (0, 0, 1, 0.6666666666666666), 0.483333, 2.0)
    >>> solve(table, budget=5.0).status
    'slack'
    """
    _check_table(table, "solve")
    value = check_budget(budget, "solve")
    if method not in _METHODS:
        raise ValueError(
            "The 'method' parameter of solve must be one of {'bisection', 'exact', 'highs'}. "
            f"Got {method!r} instead."
        )
    rel_tol = _check_in_range(tol, "tol", "solve", 0.0, 1.0)
    cols = _by_cost(table.P, table.C)
    floor, best, best_cost = _extremes(cols.ps, cols.cs)
    check_feasible(value, floor, "solve", "allocation")
    if best_cost <= value:
        return _package(table, value, cols.actions(best), None, 0.0, "slack")
    spend = max(value, floor)  # within rounding of the minimum: the minimum
    if method == "highs":
        actions, mix, lam = _solve_highs(table.P, table.C, spend)
        return _package(table, value, actions, mix, lam, "optimal")
    if method == "exact":
        pos, mix_pos, lam = _solve_exact(cols.ps, cols.cs, spend)
    else:
        pos, mix_pos, lam = _solve_bisection(cols.ps, cols.cs, spend, rel_tol)
    return _package(table, value, cols.actions(pos), cols.mix(mix_pos), lam, "optimal")


def certify(table: OutcomeTable, budget: float, *, time_limit: float = 60.0) -> Certificate:
    """Integer optimum (one action per query) by MILP, and its gap to the LP bound.

    Solves ``max (1/N) sum_ia x_ia P_ia  s.t.  (1/N) sum_ia x_ia C_ia <= B,
    sum_a x_ia = 1,  x_ia in {0, 1}`` with :func:`scipy.optimize.milp` (HiGHS branch and
    bound). Meant for small tables (up to a few thousand queries).

    Parameters
    ----------
    table : OutcomeTable
        ``P`` and ``C`` of shape (n_queries, n_actions).
    budget : float
        Mean cost per query, in ``(0, inf)``.
    time_limit : float, default=60.0
        Seconds given to the MILP solver, in ``(0, inf]``.

    Returns
    -------
    Certificate
        Integer accuracy, cost and actions, the LP bound, the gap and its a-priori bound.

    Raises
    ------
    ValueError
        If ``budget`` is infeasible or a parameter is out of range.

    Examples
    --------
    >>> from computealloc.estimation.table import OutcomeTable
    >>> from computealloc.estimation.oracle import certify
    >>> cert = certify(OutcomeTable([[0.5, 0.9], [0.2, 0.3]], [[1.0, 4.0], [1.0, 4.0]]), 2.0)
    >>> cert.status, cert.actions.tolist(), round(cert.gap, 6)
    ('optimal', [0, 0], 0.133333)
    """
    _check_table(table, "certify")
    value = check_budget(budget, "certify")
    limit = _check_in_range(time_limit, "time_limit", "certify", 0.0, math.inf, closed=True)
    check_feasible(value, float(table.C.min(axis=1).mean()), "certify", "allocation")
    lp = solve(table, value)
    gap_bound = 0.0
    if lp.mix is not None:
        q, low, high, weight = lp.mix
        gap_bound = weight * float(table.P[q, high] - table.P[q, low]) / table.n_queries
    actions, status = _solve_milp(table.P, table.C, value, limit, lp.actions)
    accuracy = _mean_at(table.P, actions)
    return Certificate(
        accuracy=accuracy,
        cost=_mean_at(table.C, actions),
        actions=actions,
        lp_bound=lp.accuracy,
        gap=lp.accuracy - accuracy,
        gap_bound=gap_bound,
        status=status,
    )


# --------------------------------------------------------------------------- validation


def _check_table(table: object, caller: str) -> None:
    if not isinstance(table, OutcomeTable):
        raise TypeError(
            f"The 'table' parameter of {caller} must be an OutcomeTable. "
            f"Got {type(table).__name__} instead."
        )


def _check_in_range(
    value: object, name: str, caller: str, low: float, high: float, *, closed: bool = False
) -> float:
    """Return ``value`` as a float in ``(low, high)``, or ``(low, high]`` if ``closed``."""
    expected = f"a float in ({low:g}, {high:g}{']' if closed else ')'}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"The '{name}' parameter of {caller} must be {expected}. Got {value!r} instead."
        )
    number = float(value)
    if not (low < number < high or (closed and number == high)):
        raise ValueError(
            f"The '{name}' parameter of {caller} must be {expected}. Got {number!r} instead."
        )
    return number


# --------------------------------------------------------------------------- shared pieces


class _Columns(NamedTuple):
    """Each query's actions sorted by cost (equal costs: more accurate first).

    ``ps[i, j]`` and ``cs[i, j]`` (n_queries, n_actions) are the accuracy and cost of the
    ``j``-th cheapest action of query ``i``, which is action ``order[i, j]`` of the table
    (``order`` is ``None`` when the columns are already in increasing cost).
    """

    order: NDArray[np.intp] | None
    ps: NDArray[np.float64]
    cs: NDArray[np.float64]

    def actions(self, pos: NDArray[np.intp]) -> NDArray[np.intp]:
        """Table action indices of the sorted positions ``pos`` (n_queries,)."""
        return pos if self.order is None else self.order[np.arange(pos.size), pos]

    def mix(self, mix: _Mix | None) -> _Mix | None:
        """A ``(query, low, high)`` triple from sorted positions to table action indices."""
        if mix is None or self.order is None:
            return mix
        q, low, high = mix
        return q, int(self.order[q, low]), int(self.order[q, high])


def _by_cost(P: NDArray[np.float64], C: NDArray[np.float64]) -> _Columns:
    """Sort each query's actions by cost, equal costs by decreasing accuracy."""
    if (C[:, 1:] > C[:, :-1]).all():
        return _Columns(None, P, C)
    n, k = C.shape
    order = np.argsort(C, axis=1)
    flat = order + np.arange(0, n * k, k)[:, None]  # flat take beats take_along_axis
    cs = C.ravel().take(flat)
    tied = np.flatnonzero((cs[:, 1:] == cs[:, :-1]).any(axis=1))
    order[tied] = np.lexsort((-P[tied], C[tied]), axis=-1)  # permutes equal costs only
    flat[tied] = order[tied] + k * tied[:, None]
    return _Columns(order, P.ravel().take(flat), cs)


def _blocks(
    ps: NDArray[np.float64], cs: NDArray[np.float64]
) -> Iterator[tuple[slice, NDArray[np.float64], NDArray[np.float64]]]:
    """Consecutive blocks of queries, transposed to (n_actions, block) contiguous arrays.

    Column sweeps over a block stay in cache; the loop is over ``n_queries / _BLOCK`` blocks.
    """
    n = ps.shape[0]
    for start in range(0, n, _BLOCK):
        rows = slice(start, min(start + _BLOCK, n))
        yield rows, np.ascontiguousarray(ps[rows].T), np.ascontiguousarray(cs[rows].T)


def _extremes(
    ps: NDArray[np.float64], cs: NDArray[np.float64]
) -> tuple[float, NDArray[np.intp], float]:
    """Mean cost of the cheapest actions, the most accurate actions' positions and mean cost.

    The most accurate action of a query is its cheapest one among equally accurate ones.
    """
    n = ps.shape[0]
    best = np.empty(n, dtype=np.intp)
    floor = top = 0.0
    for rows, pt, ct in _blocks(ps, cs):
        best[rows], cost = _best_positions(pt, ct)
        floor += float(ct[0].sum())
        top += float(cost.sum())
    return floor / n, best, top / n


def _mean_at(X: NDArray[np.float64], actions: NDArray[np.int64]) -> float:
    """Mean over queries of ``X[i, actions[i]]``; ``X`` is (n_queries, n_actions)."""
    return float(np.take_along_axis(X, actions[:, None], axis=1).mean())


def _best_positions(
    pt: NDArray[np.float64], ct: NDArray[np.float64]
) -> tuple[NDArray[np.intp], NDArray[np.float64]]:
    """Sorted position and cost of each query's most accurate action, the cheapest among
    equals; ``pt``, ``ct`` are (n_actions, n_queries) sorted by cost (see :func:`_choose`)."""
    pos = np.zeros(pt.shape[1], dtype=np.intp)
    top, cost = pt[0], ct[0]
    for j in range(1, pt.shape[0]):
        up = pt[j] > top
        pos = np.maximum(pos, j * up)
        cost = np.maximum(cost, ct[j] * up)
        top = np.maximum(top, pt[j])
    return pos, cost


def _fill(weights: NDArray[np.float64], room: float) -> tuple[int, int | None]:
    """Take items in order while they fit in ``room``.

    Returns the number ``k`` of whole items taken and the index of the item taken in part
    (``k``), or ``None`` when every item fits.
    """
    k = int(np.searchsorted(np.cumsum(weights), room, side="right"))
    return k, (k if k < weights.size else None)


def _package(
    table: OutcomeTable,
    budget: float,
    actions: NDArray[np.intp],
    mix: _Mix | None,
    lam: float,
    status: str,
) -> Allocation:
    """Build the Allocation; the fractional weight is set so the mean cost equals the budget."""
    P, C = table.P, table.C
    n = table.n_queries
    chosen = np.asarray(actions, dtype=np.int64)
    cost = float(np.take_along_axis(C, chosen[:, None], axis=1).sum())
    accuracy = float(np.take_along_axis(P, chosen[:, None], axis=1).sum())
    split = None
    if mix is not None and C[mix[0], mix[2]] > C[mix[0], mix[1]]:
        q, low, high = mix
        step = float(C[q, high] - C[q, low])
        weight = float(np.clip((n * budget - cost) / step, 0.0, 1.0))
        if weight == 1.0:
            chosen[q] = high
        elif weight > 0.0:
            split = (int(q), int(low), int(high), weight)
        cost += weight * step
        accuracy += weight * float(P[q, high] - P[q, low])
    return Allocation(
        actions=chosen,
        mix=split,
        lam=float(lam),
        accuracy=accuracy / n,
        cost=cost / n,
        budget=budget,
        status=status,
        action_names=table.actions,
        query_ids=table.query_ids,
    )


# --------------------------------------------------------------------------- exact


def _undominated(pt: NDArray[np.float64]) -> NDArray[np.bool_]:
    """Points strictly more accurate than every cheaper one (row 0 always)."""
    kept = np.empty(pt.shape, dtype=bool)
    kept[0] = True
    top = pt[0]
    for j in range(1, pt.shape[0]):
        np.greater(pt[j], top, out=kept[j])
        top = np.maximum(top, pt[j])
    return kept


def _increments(
    pt: NDArray[np.float64], ct: NDArray[np.float64], kept: NDArray[np.bool_]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Cost step and slope from the previous kept point to each kept point.

    ``kept`` must be a subset of :func:`_undominated` (row 0 kept). Returns ``dc`` and
    ``slope`` (n_actions, n_queries). ``dc`` is zero at points not kept and in row 0; kept
    points have strictly increasing cost, so ``dc > 0`` exactly at kept points ``j >= 1``.
    ``slope`` is meaningful only there, finite everywhere.

    Along kept points accuracy and cost increase and both are >= 0, so the last kept point's
    values are running maxima of ``pt * kept``: no ``np.where``, whose branches mispredict
    on random masks and cost several times a plain ufunc.
    """
    dc, slope = np.empty(pt.shape), np.empty(pt.shape)
    dc[0], slope[0] = 0.0, 0.0
    last_p, last_c = pt[0], ct[0]
    for j in range(1, pt.shape[0]):
        step = ct[j] - last_c
        np.multiply(step, kept[j], out=dc[j])
        np.divide(pt[j] - last_p, step + ~kept[j], out=slope[j])
        last_p = np.maximum(last_p, pt[j] * kept[j])
        last_c = np.maximum(last_c, ct[j] * kept[j])
    return dc, slope


def _hull_vertices(pt: NDArray[np.float64], ct: NDArray[np.float64]) -> NDArray[np.bool_]:
    """Vertices of each query's upper concave hull, rising from its first point.

    ``pt``, ``ct`` are (n_actions, n_queries), each column sorted by cost (equal costs: more
    accurate first). An undominated point ``j`` is a vertex iff every slope into it from a
    cheaper point exceeds every slope out of it to a costlier one (it lies strictly above
    all chords over it). Dominated points may be left in both extremes: they never hold the
    minimum in, nor the maximum out, of an undominated point. 28 slope pairs for 8 actions,
    each a few ufunc calls, whatever the shape of the curves.
    """
    kept = _undominated(pt)
    into = np.full(pt.shape, np.inf)
    out = np.full(pt.shape, -np.inf)
    slope, step = np.empty(pt.shape[1]), np.empty(pt.shape[1])
    with np.errstate(divide="ignore", invalid="ignore"):  # equal costs of dominated points
        for j in range(1, pt.shape[0]):
            for a in range(j):
                np.subtract(pt[j], pt[a], out=slope)
                np.subtract(ct[j], ct[a], out=step)
                np.divide(slope, step, out=slope)
                np.minimum(into[j], slope, out=into[j])
                np.fmax(out[a], slope, out=out[a])
    return kept & (into > out)


def _hull_increments(
    pt: NDArray[np.float64], ct: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Steps along each query's upper concave hull of (cost, accuracy).

    Parameters
    ----------
    pt, ct : ndarray of shape (n_actions, n_queries)
        Accuracy and cost, each column sorted by cost (equal costs: more accurate first).

    Returns
    -------
    dc, slope : ndarray of shape (n_actions, n_queries)
        Entry ``[j, i]`` is the cost step and slope from the previous hull vertex to vertex
        ``j`` of query ``i``; ``dc`` is zero where ``j`` is not a vertex (and at ``j = 0``),
        where ``slope`` is meaningless. Along a hull ``dc > 0`` and slopes strictly decrease.
    """
    return _increments(pt, ct, _hull_vertices(pt, ct))


def _bracket(
    slope: NDArray[np.float64], weight: NDArray[np.float64], room: float
) -> tuple[float, float]:
    """Two of the given slopes, ``hi >= lo``, around where the weight summed from the
    steepest slope down passes ``room``: ``3 sqrt(m)`` ranks either side of it."""
    order = np.argsort(-slope)
    at = int(np.searchsorted(np.cumsum(weight[order]), room, side="right"))
    margin = 3 * math.isqrt(slope.size)
    hi = slope[order[max(at - margin, 0)]]
    lo = slope[order[min(at + margin, slope.size - 1)]]
    return float(hi), float(lo)


def _cut_slope_sorted(
    slope: NDArray[np.float64], weight: NDArray[np.float64], room: float
) -> tuple[float, float]:
    """:func:`_cut_slope` by a full sort (for small inputs)."""
    order = np.argsort(-slope, kind="stable")
    s, w = slope[order], weight[order]
    k, _ = _fill(w, room)
    lam = float(s[min(k, s.size - 1)])
    return lam, room - float(w[s > lam].sum())


def _cut_slope(
    slope: NDArray[np.float64], weight: NDArray[np.float64], room: float
) -> tuple[float, float]:
    """Weighted selection of the cut slope, without sorting.

    Parameters
    ----------
    slope : ndarray of shape (m,)
        Increment slopes, ``m >= 1``.
    weight : ndarray of shape (m,)
        Increment costs, > 0.
    room : float
        Cost to spend, normally ``0 <= room < weight.sum()``.

    Returns
    -------
    lam : float
        The largest slope ``v`` with ``weight[slope >= v].sum() > room`` (the smallest slope
        when ``room`` covers everything).
    rest : float
        ``room - weight[slope > lam].sum()``: what is left for the increments at ``lam``.

    Notes
    -----
    Floyd-Rivest style: two pivots from a sample bracket the cut, and one pass keeps the
    part that holds it. Each round drops at least the upper pivot, so it terminates; the
    expected work is a few passes over the data.
    """
    rng = np.random.default_rng(0)
    total = float(weight.sum())
    while slope.size > _SELECT_SMALL:
        idx = rng.integers(0, slope.size, _SELECT_SAMPLE)
        hi, lo = _bracket(slope[idx], weight[idx], room / total * float(weight[idx].sum()))
        at_hi = slope >= hi
        w_hi = float((weight * at_hi).sum())
        if w_hi > room:
            keep = slope > hi
            total = float((weight * keep).sum())
            if total <= room:
                return hi, room - total
        else:
            at_lo = slope >= lo
            w_lo = float((weight * at_lo).sum())
            if w_lo > room:
                keep = at_lo & ~at_hi
                room, total = room - w_hi, w_lo - w_hi
            else:
                keep = ~at_lo
                room, total = room - w_lo, total - w_lo
        slope, weight = slope[keep], weight[keep]
    return _cut_slope_sorted(slope, weight, room)


class _Band(NamedTuple):
    """Hull increments in a slope band, flat: each reaches sorted position ``vertex`` of
    query ``query``."""

    slope: NDArray[np.float64]
    dc: NDArray[np.float64]
    vertex: NDArray[np.intp]
    query: NDArray[np.intp]


def _last_true(mask: NDArray[np.bool_]) -> NDArray[np.intp]:
    """Largest row index ``j`` with ``mask[j, i]`` per column ``i`` (0 when none)."""
    pos = np.zeros(mask.shape[1], dtype=np.intp)
    for j in range(1, mask.shape[0]):
        pos = np.maximum(pos, j * mask[j])
    return pos


def _sweep(
    ps: NDArray[np.float64], cs: NDArray[np.float64], hi: float, lo: float
) -> tuple[float, NDArray[np.intp], _Band]:
    """One pass over query blocks: hull increments, split at the slopes ``hi >= lo``.

    Returns the cost of the cheapest actions plus the increments with slope >= ``hi``
    (all taken), each query's sorted position after those increments, and the increments
    with ``lo <= slope < hi`` (the band that must hold the cut).
    """
    spent, pos, parts = 0.0, np.zeros(ps.shape[0], dtype=np.intp), []
    for rows, pt, ct in _blocks(ps, cs):
        dc, slope = _hull_increments(pt, ct)
        valid = dc > 0
        above = valid & (slope >= hi)
        spent += float(ct[0].sum()) + float((dc * above).sum())
        pos[rows] = _last_true(above)
        j, i = np.nonzero(valid & (slope >= lo) & ~above)
        parts.append((slope[j, i], dc[j, i], j, i + rows.start))
    return spent, pos, _Band(*(np.concatenate(col) for col in zip(*parts, strict=True)))


def _sample_pivots(
    ps: NDArray[np.float64], cs: NDArray[np.float64], budget: float
) -> tuple[float, float]:
    """Slopes likely to bracket the cut, from the hulls of a random block of queries."""
    rng = np.random.default_rng(0)
    idx = np.sort(rng.choice(ps.shape[0], _BLOCK, replace=False))
    pt, ct = np.ascontiguousarray(ps[idx].T), np.ascontiguousarray(cs[idx].T)
    dc, slope = _hull_increments(pt, ct)
    valid = dc > 0
    return _bracket(slope[valid], dc[valid], _BLOCK * budget - float(ct[0].sum()))


def _solve_exact(
    ps: NDArray[np.float64], cs: NDArray[np.float64], budget: float
) -> tuple[NDArray[np.intp], _Mix | None, float]:
    """Hull increments by decreasing slope until the budget is spent, the last fractional.

    On large tables a random block of queries places two slopes around the cut, so one pass
    over the blocks keeps only the increments between them (a second pass over all
    increments runs if the cut falls outside). Works on sorted positions; returns them,
    the fractional ``(query, low, high)`` and lam.
    """
    target = ps.shape[0] * budget
    sampled = ps.shape[0] > 4 * _BLOCK
    hi, lo = _sample_pivots(ps, cs, budget) if sampled else (math.inf, -math.inf)
    spent, pos, band = _sweep(ps, cs, hi, lo)
    if sampled and not spent <= target < spent + float(band.dc.sum()):
        spent, pos, band = _sweep(ps, cs, math.inf, -math.inf)
    lam, rest = _cut_slope(band.slope, band.dc, target - spent)
    taken = band.slope > lam
    np.maximum.at(pos, band.query[taken], band.vertex[taken])
    tie = np.flatnonzero(band.slope == lam)
    tie = tie[np.argsort(band.query[tie], kind="stable")]
    whole, part = _fill(band.dc[tie], rest)
    pos[band.query[tie[:whole]]] = band.vertex[tie[:whole]]
    if part is None:
        return pos, None, lam
    q = int(band.query[tie[part]])
    return pos, (q, int(pos[q]), int(band.vertex[tie[part]])), lam


# --------------------------------------------------------------------------- bisection


def _choose(
    pt: NDArray[np.float64], ct: NDArray[np.float64], lam: float
) -> tuple[NDArray[np.intp], float]:
    """Per query the first (cheapest) argmax of ``p - lam * c``, and the total cost.

    Columns are sorted by cost and costs are >= 0, so running maxima track the argmax and
    its cost without ``np.where`` (see :func:`_increments`).
    """
    pos = np.zeros(pt.shape[1], dtype=np.intp)
    best, cost = pt[0] - lam * ct[0], ct[0]
    for j in range(1, pt.shape[0]):
        score = pt[j] - lam * ct[j]
        up = score > best
        pos = np.maximum(pos, j * up)
        cost = np.maximum(cost, ct[j] * up)
        best = np.maximum(best, score)
    return pos, float(cost.sum())


def _price_ceiling(pt: NDArray[np.float64], ct: NDArray[np.float64]) -> float:
    """A dual price above which every query picks its cheapest action."""
    top = 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        for j in range(1, pt.shape[0]):
            gain = (pt[j] - pt[0]) / (ct[j] - ct[0])
            top = max(top, float(np.max(gain, where=ct[j] > ct[0], initial=0.0)))
    return 2.0 * top


def _solve_bisection(
    ps: NDArray[np.float64], cs: NDArray[np.float64], budget: float, tol: float
) -> tuple[NDArray[np.intp], _Mix | None, float]:
    """Bisection on the dual price, then the bracket's switching queries one at a time.

    Works on sorted positions; returns them, the fractional ``(query, low, high)`` and lam.
    """
    n = ps.shape[0]
    pt, ct = np.ascontiguousarray(ps.T), np.ascontiguousarray(cs.T)
    target = n * budget
    lo, hi = 0.0, _price_ceiling(pt, ct)
    while hi - lo > tol * hi:
        mid = 0.5 * (lo + hi)
        if _choose(pt, ct, mid)[1] <= target:
            hi = mid
        else:
            lo = mid
    (rich, _), (lean, spent) = _choose(pt, ct, lo), _choose(pt, ct, hi)
    switch = np.flatnonzero(rich != lean)
    dc = ct[rich[switch], switch] - ct[lean[switch], switch]
    dp = pt[rich[switch], switch] - pt[lean[switch], switch]
    by_slope = np.argsort(-(dp / dc), kind="stable")
    whole, part = _fill(dc[by_slope], target - spent)
    pos = lean.copy()
    up = switch[by_slope[:whole]]
    pos[up] = rich[up]
    if part is None:
        return pos, None, hi
    at = by_slope[part]
    q = int(switch[at])
    return pos, (q, int(lean[q]), int(rich[q])), float(dp[at] / dc[at])


# --------------------------------------------------------------------------- HiGHS


def _lp_constraints(
    C: NDArray[np.float64],
) -> tuple[sparse.csr_array, sparse.csr_array]:
    """One-action-per-query rows (n_queries, n_queries * n_actions) and the budget row."""
    n, k = C.shape
    one_each = sparse.csr_array(
        (np.ones(n * k), np.arange(n * k), np.arange(0, n * k + 1, k)), shape=(n, n * k)
    )
    return one_each, sparse.csr_array(C.reshape(1, -1))


def _solve_highs(
    P: NDArray[np.float64], C: NDArray[np.float64], budget: float
) -> tuple[NDArray[np.intp], _Mix | None, float]:
    """The LP by HiGHS interior point and crossover (a basic solution: one fractional query)."""
    n, k = P.shape
    one_each, spend = _lp_constraints(C)
    res = optimize.linprog(
        -P.ravel(),
        A_ub=spend,
        b_ub=[n * budget],
        A_eq=one_each,
        b_eq=np.ones(n),
        bounds=(0, None),
        method="highs-ipm",
        options={"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10},
    )
    if res.status != 0:
        raise RuntimeError(f"HiGHS did not solve the LP: {res.message}")
    x = res.x.reshape(n, k)
    actions = x.argmax(axis=1)
    split = np.flatnonzero((x > _X_TOL).sum(axis=1) > 1)
    if split.size > 1:
        raise RuntimeError(f"HiGHS returned {split.size} fractional queries; expected one.")
    mix = None
    if split.size:
        q = int(split[0])
        low, high = sorted(np.argsort(x[q])[-2:].tolist(), key=lambda a: (C[q, a], a))
        actions[q] = low
        mix = (q, low, high)
    return actions, mix, float(-res.ineqlin.marginals[0])


def _solve_milp(
    P: NDArray[np.float64],
    C: NDArray[np.float64],
    budget: float,
    time_limit: float,
    fallback: NDArray[np.int64],
) -> tuple[NDArray[np.int64], str]:
    """Integer optimum by HiGHS branch and bound; ``fallback`` when it finds no incumbent."""
    n, k = P.shape
    one_each, spend = _lp_constraints(C)
    res = optimize.milp(
        -P.ravel(),
        constraints=[
            optimize.LinearConstraint(one_each, 1.0, 1.0),
            optimize.LinearConstraint(spend, -np.inf, n * budget),
        ],
        integrality=np.ones(n * k),
        bounds=optimize.Bounds(0.0, 1.0),
        options={"time_limit": time_limit, "mip_rel_gap": 1e-12},
    )
    status = {0: "optimal", 1: "time_limit"}.get(res.status, "failed")
    if res.x is None:
        return fallback, status
    return res.x.reshape(n, k).argmax(axis=1).astype(np.int64), status
