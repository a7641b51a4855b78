"""The decision and report tables of one (protocol, seed) of an evaluation.

Under ``"in-sample"`` both are the table of all samples; under ``"held-out"`` the decision
table reads sample half A and the report table half B
(:func:`computealloc.data.splits.split_samples`), restricted to the queries both halves can
estimate. Probe tables and features come along for the ``+probe`` methods.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from computealloc.data.samples import SampleLog
from computealloc.data.splits import split_samples
from computealloc.estimation.actions import Action
from computealloc.estimation.estimate import estimate, query_golds
from computealloc.estimation.features import build_features, probe_mask
from computealloc.estimation.reuse import probe_table
from computealloc.estimation.table import OutcomeTable
from computealloc.estimation.units import PriceLike, pricing_of

__all__ = ["Tables", "outcome_table", "protocol_tables"]


@dataclass(frozen=True)
class Tables:
    """Decision and report tables of one (protocol, seed), all queries, same rows."""

    dec: OutcomeTable
    rep: OutcomeTable
    X: pd.DataFrame
    probe: tuple[OutcomeTable, OutcomeTable, pd.DataFrame] | None


def outcome_table(
    log: SampleLog,
    actions: tuple[Action, ...],
    cost: str,
    prices: Mapping[str, PriceLike] | None,
) -> OutcomeTable:
    """The outcome table of a (sub)log in a cost unit and prices
    (:mod:`computealloc.estimation.units`).

    Queries with too few samples for an action are dropped.
    """
    return estimate(log, actions, pricing_of(cost, prices, "evaluate"), on_short="drop")


def _common_rows(a: OutcomeTable, b: OutcomeTable) -> tuple[OutcomeTable, OutcomeTable]:
    common = sorted(set(a.query_ids) & set(b.query_ids))
    if not common:
        raise ValueError("The two sample halves share no query with enough samples.")
    return (
        a.subset(pd.Index(a.query_ids).get_indexer(pd.Index(common))),
        b.subset(pd.Index(b.query_ids).get_indexer(pd.Index(common))),
    )


def _probe_ready(log: SampleLog, actions: tuple[Action, ...], probe_m: int) -> bool:
    return probe_m > 0 and len(log.models) == 1 and all(a.kind == "majority" for a in actions)


def protocol_tables(
    log: SampleLog,
    protocol: str,
    seed: int,
    actions: tuple[Action, ...],
    cost: str,
    prices: Mapping[str, PriceLike] | None,
    probe_m: int,
    prompt_X: pd.DataFrame,
    cache: dict[str, Any],
) -> Tables:
    """Everything one (protocol, seed) needs, tables restricted to common queries."""
    everything = np.ones(len(log.samples), dtype=bool)
    if protocol == "in-sample":
        if "in-sample" not in cache:
            cache["in-sample"] = outcome_table(log, actions, cost, prices)
        dec = rep = cache["in-sample"]
        half_a, half_b = everything, everything
    else:
        half_a = split_samples(log.samples, seed=seed)
        half_b = ~half_a
        dec, rep = _common_rows(
            outcome_table(log.subset(sample_mask=half_a), actions, cost, prices),
            outcome_table(log.subset(sample_mask=half_b), actions, cost, prices),
        )
    X = prompt_X.loc[list(dec.query_ids)]
    if not _probe_ready(log, actions, probe_m):
        return Tables(dec, rep, X, None)
    eligible = None if protocol == "in-sample" else half_a
    feats = build_features(log, probe_m=probe_m, eligible=eligible, random_state=seed)
    probe = probe_mask(log, probe_m, eligible=eligible, random_state=seed)
    pdec, prep = (
        probe_table(
            log.samples,
            table,
            probe=probe,
            pool=pool & ~probe,
            golds=query_golds(log, table.query_ids),
        )
        for table, pool in ((dec, half_a), (rep, half_b))
    )
    return Tables(dec, rep, X, (pdec, prep, feats.X.loc[list(dec.query_ids)]))
