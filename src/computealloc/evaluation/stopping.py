"""The sequential stopping rules and the early-exit rules along the thought, in an evaluation.

:func:`sequential_rows` runs :func:`computealloc.fitting.sequential.sequential_methods` and
:func:`early_exit_rows` runs :func:`computealloc.evaluation.thinking.thinking_rows` on the query
split and sample halves of one (protocol, seed); :func:`sequential_reason` and
:func:`thinking_reason` say why they cannot run on a log.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from computealloc.data.samples import SampleLog
from computealloc.data.splits import QuerySplit, split_samples
from computealloc.estimation.actions import Action
from computealloc.estimation.units import PriceLike
from computealloc.evaluation.common import SEQUENTIAL_ORDERS
from computealloc.evaluation.tables import Tables
from computealloc.fitting.sequential import sequential_methods

if TYPE_CHECKING:
    from computealloc.data.checkpoints import CheckpointLog

__all__ = ["early_exit_rows", "sequential_reason", "sequential_rows", "thinking_reason"]


def sequential_reason(log: SampleLog, cost: str, actions: tuple[Action, ...]) -> str | None:
    """Why the sequential methods cannot run on this log (None when they can)."""
    if len(log.models) != 1:
        return "sequential stopping needs a single-model log"
    if cost != "samples":
        return "sequential stopping is budgeted in samples (cost='samples')"
    if any(a.kind != "majority" for a in actions):
        return "sequential stopping needs majority actions"
    if int(log.samples.groupby("query_id").size().min()) < 2:
        return "sequential stopping needs at least 2 samples per query"
    return None


def thinking_reason(
    checkpoints: CheckpointLog | None, cost: str, prices: Mapping[str, PriceLike] | None
) -> str | None:
    """Why the early-exit rules cannot run (None when they can)."""
    if checkpoints is None:
        return "early exit along the thought needs a checkpoint log"
    if len(checkpoints.models) != 1:
        return "early exit along the thought needs a single-model checkpoint log"
    if cost != "tokens" or prices:
        return "early exit along the thought is budgeted in tokens (cost='tokens', no prices)"
    return None


def early_exit_rows(
    log: SampleLog,
    checkpoints: CheckpointLog,
    tables: Tables,
    qsplit: QuerySplit,
    protocol: str,
    seed: int,
    budgets: list[float],
) -> list[dict[str, Any]]:
    """Rows of the early-exit rules on the query split and sample halves of ``tables``."""
    from computealloc.evaluation.thinking import EXIT_METHODS, thinking_rows

    ids = np.asarray(tables.dec.query_ids, dtype=object)
    half_a = None
    if protocol != "in-sample":
        samples = log.samples
        one_arm = (samples["model"] == samples["model"].iloc[0]).to_numpy()
        first = samples[one_arm]
        half_a = pd.Series(
            split_samples(samples, seed=seed)[one_arm],
            index=pd.MultiIndex.from_arrays([first["query_id"], first["sample_idx"]]),
        )
    rows = thinking_rows(
        checkpoints,
        budgets,
        seed=seed,
        protocol=protocol,
        train=list(ids[qsplit.train]),
        calibration=list(ids[qsplit.calibration]),
        test=list(ids[qsplit.test]),
        half_a=half_a,
        methods=EXIT_METHODS,
    )
    for row in rows:
        row.update(reference="oracle", imitation_accuracy=np.nan, regret_bound=np.nan)
    return rows


def sequential_rows(
    log: SampleLog,
    tables: Tables,
    protocol: str,
    seed: int,
    budgets: list[float],
    names: list[str],
    split: Sequence[float],
    prompt_X: pd.DataFrame,
) -> list[dict[str, Any]]:
    """Rows of the sequential methods on the queries of ``tables`` (so the same test split)."""
    qids = list(tables.dec.query_ids)
    same = len(qids) == log.samples["query_id"].nunique()
    frame = sequential_methods(
        log if same else log.subset(query_ids=qids),
        [b for b in budgets if b >= 1.0],
        seed=seed,
        protocol=protocol,  # type: ignore[arg-type]
        split=split,
        features=prompt_X,
        n_orders=SEQUENTIAL_ORDERS,
        methods=names,
    )
    frame = frame[["method", "budget", "accuracy", "mean_cost", "n_test"]].assign(
        protocol=protocol,
        seed=seed,
        reference="oracle",
        imitation_accuracy=np.nan,
        regret_bound=np.nan,
    )
    return frame.to_dict("records")  # type: ignore[return-value]
