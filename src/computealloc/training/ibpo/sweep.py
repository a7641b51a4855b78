"""The IBPO selection read as an allocation policy between two modes (``short`` =
majority@1, ``long`` = majority@8), swept over long shares against the uniform mix and
the oracle; an upper bound (the selection sees the outcomes), not a deployable policy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from computealloc.data.samples import SampleLog
from computealloc.estimation.estimate import estimate
from computealloc.estimation.oracle import solve
from computealloc.estimation.table import OutcomeTable
from computealloc.training.ibpo.export import shuffled_rank
from computealloc.training.ibpo.results import CostUnit, Float, Int
from computealloc.training.ibpo.selection import capacities, select
from computealloc.training.ibpo.validation import check_int, check_share_list


def ibpo_allocation_sweep(
    table_or_log: OutcomeTable | SampleLog,
    shares: Sequence[float] = (0.25, 0.5, 0.75),
    *,
    batch_size: int = 64,
    seed: int = 0,
    short: str = "majority@1",
    long: str = "majority@8",
    cost: CostUnit = "samples",
) -> pd.DataFrame:
    """IBPO's in-batch selection read as an allocation between a short and a long mode.

    Each query has two modes with expected accuracy ``P_s, P_l`` and cost ``C_s, C_l`` (from
    :func:`computealloc.estimation.estimate.estimate` with actions ``short`` and ``long``). The
    queries are shuffled with ``seed`` into batches of ``batch_size``; in every batch
    :func:`ibpo_select` picks which queries get ``long``, at most ``floor(q P_b)`` of them,
    maximising the sum of margins ``P_l - P_s`` (the other queries answer ``short``). For each ``q``
    three rows:

    - ``ibpo_in_batch``: the selection's mean accuracy and cost. It reads ``P``, i.e. the
      outcomes, so it is an upper bound like the oracle (``sees_outcomes=True``).
    - ``uniform_mix``: a random share ``q_r`` of long answers, ``q_r`` = the selection's
      realised long share: ``(1 - q_r) mean P_s + q_r mean P_l`` (``sees_outcomes=False``).
    - ``oracle``: :func:`computealloc.estimation.oracle.solve` over the whole table at the
    selection's
      mean cost (``sees_outcomes=True``); it is never below ``ibpo_in_batch``.

    Parameters
    ----------
    table_or_log : OutcomeTable or SampleLog
        A table with columns named ``short`` and ``long``, or a log to estimate one from.
    shares : sequence of float, default=(0.25, 0.5, 0.75)
        Long-share caps ``q`` in [0, 1].
    batch_size : int, default=64
        Queries per batch.
    seed : int, default=0
        Seed of the query shuffle.
    short, long : str, default="majority@1", "majority@8"
        Action specs of the two modes.
    cost : {"samples", "tokens", "usd"}, default="samples"
        Cost unit when estimating from a log (ignored for a table).

    Returns
    -------
    DataFrame
        One row per (q, method): ``source, cost_unit, max_share, method, sees_outcomes,
        long_share, max_batch_long_share, accuracy, mean_cost, n_queries, batch_size, seed``.
        For ``uniform_mix`` and ``oracle`` ``max_batch_long_share`` is NaN.

    Examples
    --------
    >>> table = OutcomeTable([[0.2, 0.9], [0.5, 0.5], [0.1, 0.3], [0.8, 0.8]],
    ...                      [[1, 8]] * 4, actions=["majority@1", "majority@8"])
    >>> frame = ibpo_allocation_sweep(table, shares=[0.5], batch_size=4)
    >>> frame[["method", "accuracy", "mean_cost"]].round(4).values.tolist()
    [['ibpo_in_batch', 0.625, 4.5], ['uniform_mix', 0.5125, 4.5], ['oracle', 0.625, 4.5]]
    """
    where = "ibpo_allocation_sweep"
    caps = check_share_list(shares, where)
    size = check_int(batch_size, "batch_size", where, 1)
    rng_seed = check_int(seed, "seed", where, 0)
    table = _two_modes(table_or_log, short, long, cost, where)
    batch = shuffled_rank(table.n_queries, rng_seed) // size
    rows: list[dict[str, object]] = []
    for q in caps:
        long_mask, batch_share = _in_batch_long(table, batch, q)
        rows += _sweep_rows(table, q, long_mask, batch_share)
    frame = pd.DataFrame(rows)
    frame.insert(0, "source", str(table.metadata.get("source", "<table>")))
    frame.insert(1, "cost_unit", table.cost_unit)
    return frame.assign(n_queries=table.n_queries, batch_size=size, seed=rng_seed)


def _two_modes(
    table_or_log: object, short: str, long: str, cost: CostUnit, where: str
) -> OutcomeTable:
    """An OutcomeTable whose two columns are the ``short`` and ``long`` modes."""
    if short == long:
        raise ValueError(
            f"The 'short' and 'long' parameters of {where} must differ. Got {short!r} twice."
        )
    if isinstance(table_or_log, SampleLog):
        return estimate(table_or_log, [short, long], cost=cost)
    if not isinstance(table_or_log, OutcomeTable):
        raise TypeError(
            f"The 'table_or_log' parameter of {where} must be an OutcomeTable or a SampleLog. "
            f"Got {type(table_or_log).__name__} instead."
        )
    table = table_or_log
    for name, spec in (("short", short), ("long", long)):
        if spec not in table.actions:
            raise ValueError(
                f"The '{name}' parameter of {where} must name an action of the table. Got "
                f"{spec!r}; the table's actions: {', '.join(map(repr, table.actions))}."
            )
    cols = [table.actions.index(short), table.actions.index(long)]
    return OutcomeTable(
        table.P[:, cols],
        table.C[:, cols],
        [short, long],
        table.query_ids,
        table.cost_unit,
        table.metadata,
    )


def _in_batch_long(table: OutcomeTable, batch: Int, q: float) -> tuple[NDArray[np.bool_], Float]:
    """Queries given ``long`` by the per-batch program (N,), and each batch's long share."""
    margin = table.P[:, 1] - table.P[:, 0]
    long = np.zeros(table.n_queries, dtype=bool)
    n_batches = int(batch.max()) + 1
    share = np.zeros(n_batches)
    for b in range(n_batches):
        idx = np.flatnonzero(batch == b)
        n_b = idx.size
        utility = np.column_stack([-margin[idx], margin[idx]]).ravel()
        capacity = capacities({"long": q}, ("short", "long"), n_b)
        weights, _ = select(
            utility,
            np.repeat(np.arange(n_b), 2),
            n_b,
            np.tile(np.arange(2), n_b),
            capacity,
            None,
            0.0,
            relax=False,
        )
        long[idx] = weights[1::2] > 0.5
        share[b] = long[idx].mean()
    return long, share


def _sweep_rows(
    table: OutcomeTable, q: float, long: NDArray[np.bool_], batch_share: Float
) -> list[dict[str, object]]:
    """The three rows (in-batch selection, uniform mix, oracle) of one long-share cap."""
    p, c = table.P, table.C
    n = table.n_queries
    accuracy = float(np.where(long, p[:, 1], p[:, 0]).mean())
    cost = float(np.where(long, c[:, 1], c[:, 0]).mean())
    share = float(long.mean())
    mean_p, mean_c = p.mean(axis=0), c.mean(axis=0)
    # The all-short allocation's cost, summed as solve sums it, so rounding never makes the
    # oracle's budget infeasible.
    oracle = solve(table, max(cost, float(c.min(axis=1).sum()) / n))
    rows: list[tuple[str, bool, float, float, float, float]] = [
        ("ibpo_in_batch", True, share, float(batch_share.max()), accuracy, cost),
        (
            "uniform_mix",
            False,
            share,
            math.nan,
            float((1 - share) * mean_p[0] + share * mean_p[1]),
            float((1 - share) * mean_c[0] + share * mean_c[1]),
        ),
        (
            "oracle",
            True,
            oracle.counts()[table.actions[1]] / n,
            math.nan,
            oracle.accuracy,
            oracle.cost,
        ),
    ]
    keys = (
        "method",
        "sees_outcomes",
        "long_share",
        "max_batch_long_share",
        "accuracy",
        "mean_cost",
    )
    return [{"max_share": q, **dict(zip(keys, row, strict=True))} for row in rows]
