"""The driver of an evaluation: :func:`evaluate` over protocols, seeds, splits and budgets.

For each protocol and seed it builds the tables (:mod:`~computealloc.evaluation.tables`),
splits the queries, runs the per-query methods (:mod:`~computealloc.evaluation.policy_runs`)
and the sequential and early-exit rules (:mod:`~computealloc.evaluation.stopping`) at every
budget, and packages the rows with the cross-method metrics
(:mod:`~computealloc.evaluation.result`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from computealloc.data.samples import SampleLog
from computealloc.data.splits import split_queries
from computealloc.estimation.actions import Action
from computealloc.estimation.features import build_features
from computealloc.estimation.units import PriceLike
from computealloc.evaluation.arguments import (
    check_args,
    check_budgets,
    parse_budgets,
    parse_choices,
    parse_seeds,
    protocol_actions,
)
from computealloc.evaluation.common import (
    METHODS,
    PROTOCOLS,
    SEQUENTIAL,
    SEQUENTIAL_ORDERS,
    THINKING,
    ProgressCallback,
)
from computealloc.evaluation.policy_runs import fit_static, router_reason, seed_rows
from computealloc.evaluation.result import (
    EvaluationResult,
    compute_saved,
    relative_metrics,
    routing_table,
)
from computealloc.evaluation.stopping import (
    early_exit_rows,
    sequential_reason,
    sequential_rows,
    thinking_reason,
)
from computealloc.evaluation.tables import protocol_tables
from computealloc.methods import ROUTER

if TYPE_CHECKING:
    from computealloc.data.checkpoints import CheckpointLog

__all__ = ["evaluate"]


def evaluate(
    log: SampleLog | CheckpointLog,
    *,
    actions: str | Iterable[str | Action] | None = None,
    budgets: Iterable[float] = (1, 2, 4, 8),
    seeds: int | Iterable[int] = 3,
    protocols: str | Iterable[str] = PROTOCOLS,
    methods: Iterable[str] | None = None,
    split: Sequence[float] = (0.6, 0.2, 0.2),
    probe_m: int = 2,
    cost: Literal["samples", "tokens", "usd", "chars"] = "samples",
    prices: Mapping[str, PriceLike] | None = None,
    progress: ProgressCallback | None = None,
    checkpoints: CheckpointLog | None = None,
) -> EvaluationResult:
    """Evaluate allocation methods on held-out queries over seeds, budgets and protocols.

    For each protocol and seed, the queries are split into train / calibration / test
    (:func:`computealloc.data.splits.split_queries`); every policy is fitted on train, calibrated
    on calibration and scored on test, at every budget. See the package docstring for the
    methods, the protocols and the metrics.

    Parameters
    ----------
    log : SampleLog or CheckpointLog
        Samples of the queries (one model, or several for routing); a checkpoint log is
        evaluated as its thinking arms (:func:`computealloc.data.checkpoints.thinking_log`), with
        the early-exit rules of :data:`THINKING` as methods too.
    actions : str or iterable of str or Action, optional
        Action specs; default :func:`computealloc.estimation.estimate.default_actions` per protocol
        (under held-out, ``K`` up to half the smallest pool).
    budgets : iterable of float
        Mean cost per query, in the cost unit.
    seeds : int or iterable of int
        Number of seeds (``0 .. seeds-1``) or the seeds themselves.
    protocols : str or iterable of {"in-sample", "held-out"}
        Protocols to run; held-out needs at least 2 samples per query and model.
    methods : iterable of str, optional
        A subset of :data:`METHODS` (all by default). ``uniform`` and ``oracle`` are always
        computed, as the metrics need them, but only reported when asked for. Leave the
        names of :data:`SEQUENTIAL` out to skip the sequential methods. By default the
        methods that cannot run on the log are left out (``+probe`` and :data:`SEQUENTIAL`
        need one model, :data:`ROUTER` two); asked for, they are skipped with the reason in
        ``config["skipped"]``.
    split : sequence of 3 floats
        Shares of train, calibration and test queries.
    probe_m : int
        Probe samples per query for the ``+probe`` methods (0 disables them). Probe methods
        need a single-model log with majority actions; they are skipped at budgets below the
        probes' cost.
    cost : {"samples", "tokens", "usd", "chars"}
        Cost unit: samples, expected output tokens, USD (``prices`` in USD per million tokens)
        or expected characters of the samples (a token proxy for logs without token counts).
    prices : dict of str to float, optional
        Per-model price. With ``cost="usd"``: USD per million output tokens. Otherwise a
        multiplier of each model's cost, e.g. ``{"weak": 0.0, "strong": 1.0}`` makes the
        budget the share of queries sent to the strong model (RouteLLM's axis).
    progress : callable, optional
        Called as ``progress(done, total)`` after each (protocol, seed, budget) step.
    checkpoints : CheckpointLog, optional
        The checkpoint log ``log`` was made from by
        :func:`~computealloc.data.checkpoints.thinking_log`: runs the early-exit rules of
        :data:`THINKING` on it, on the same splits (by default when it has one model and
        ``cost="tokens"``).

    Returns
    -------
    EvaluationResult

    Notes
    -----
    A policy is only ever scored on queries it was neither fitted nor calibrated on; budgets
    are met on the calibration queries, so the realised test cost of a streaming policy
    differs from the budget by sampling noise (reported as ``cost_error``), while batch
    methods meet it exactly.

    The sweep fits hundreds of small LightGBM models, each on one thread (the policies'
    ``n_jobs=1`` default), which is fastest at this size.

    Examples
    --------
    >>> from computealloc.data import datasets  # doctest: +SKIP
    >>> result = evaluate(datasets.load("mot_cascade:llama-2-13b/gsm/pot2"))  # doctest: +SKIP
    >>> result.summary().query("budget == 4 and protocol == 'held-out'")  # doctest: +SKIP
    """
    from computealloc.data.checkpoints import CheckpointLog, thinking_log

    if isinstance(log, CheckpointLog):
        checkpoints, log = log, thinking_log(log)
    check_args(log, probe_m, cost, prices)
    if checkpoints is not None and not isinstance(checkpoints, CheckpointLog):
        raise TypeError(
            "The 'checkpoints' parameter of evaluate must be a CheckpointLog or None. Got "
            f"{type(checkpoints).__name__} instead."
        )
    budget_list = parse_budgets(budgets)
    seed_list = parse_seeds(seeds)
    protocol_list = parse_choices("protocols", protocols, PROTOCOLS)
    method_list = parse_choices("methods", METHODS if methods is None else methods, METHODS)
    if methods is None and not (probe_m and len(log.models) == 1):
        method_list = [m for m in method_list if "+probe" not in m]
    if methods is None and sequential_reason(log, cost, ()) is not None:
        method_list = [m for m in method_list if m not in SEQUENTIAL]
    if methods is None and router_reason(log, ()) is not None:
        method_list = [m for m in method_list if m != ROUTER]
    if methods is None and thinking_reason(checkpoints, cost, prices) is not None:
        method_list = [m for m in method_list if m not in THINKING]
    return _evaluate(
        log,
        actions,
        budget_list,
        seed_list,
        protocol_list,
        method_list,
        split,
        int(probe_m),
        cost,
        prices,
        progress,
        checkpoints,
    )


def _evaluate(
    log: SampleLog,
    actions: str | Iterable[str | Action] | None,
    budget_list: list[float],
    seed_list: list[int],
    protocol_list: list[str],
    method_list: list[str],
    split: Sequence[float],
    probe_m: int,
    cost: str,
    prices: Mapping[str, PriceLike] | None,
    progress: ProgressCallback | None,
    checkpoints: CheckpointLog | None = None,
) -> EvaluationResult:
    """The sweep of :func:`evaluate`, arguments validated."""
    prompt_X = build_features(log).X
    thinking = [m for m in method_list if m in THINKING]
    static = [m for m in method_list if m not in SEQUENTIAL and m not in THINKING]
    sequential = [m for m in method_list if m in SEQUENTIAL]
    total = len(protocol_list) * len(seed_list) * len(budget_list)
    rows: list[dict[str, Any]] = []
    records: list[pd.DataFrame] = []
    skipped: list[str] = []
    done = 0
    for protocol in protocol_list:
        acts = protocol_actions(log, actions, protocol)
        cache: dict[str, Any] = {}
        reason = sequential_reason(log, cost, acts) if sequential else None
        if reason is not None:
            skipped.extend(f"{m} under {protocol}: {reason}" for m in sequential)
        router = router_reason(log, acts) if ROUTER in static else None
        if router is not None:
            skipped.append(f"{ROUTER} under {protocol}: {router}")
        runnable = [m for m in static if m != ROUTER or router is None]
        think = thinking_reason(checkpoints, cost, prices) if thinking else None
        if think is not None:
            skipped.extend(f"{m} under {protocol}: {think}" for m in thinking)
        elif "conf" in thinking and checkpoints is not None and not checkpoints.has_confidence:
            skipped.append(f"conf under {protocol}: the checkpoint log has no confidence")
        for seed in seed_list:
            tables = protocol_tables(
                log, protocol, seed, acts, cost, prices, probe_m, prompt_X, cache
            )
            check_budgets(tables.dec, budget_list, protocol)
            qsplit = split_queries(tables.dec.n_queries, fractions=split, seed=seed)
            fitted = fit_static(tables, qsplit, ["uniform", *runnable], seed)
            if sequential and reason is None:
                rows += sequential_rows(
                    log, tables, protocol, seed, budget_list, sequential, split, prompt_X
                )
            if thinking and think is None:
                assert checkpoints is not None
                rows += early_exit_rows(
                    log, checkpoints, tables, qsplit, protocol, seed, budget_list
                )
            for budget in budget_list:
                new, recs = seed_rows(log, tables, qsplit, budget, runnable, fitted, seed, skipped)
                rows += [{"protocol": protocol, "seed": seed, **r} for r in new]
                records += [r.assign(protocol=protocol, seed=seed) for r in recs]
                done += 1
                if progress is not None:
                    progress(done, total)
    config = {
        "source": log.source,
        "budgets": budget_list,
        "seeds": seed_list,
        "protocols": protocol_list,
        "methods": method_list,
        "split": tuple(float(f) for f in split),
        "probe_m": probe_m,
        "sequential_orders": SEQUENTIAL_ORDERS,
        "cost": cost,
        "prices": dict(prices) if prices is not None else None,
        "actions": {p: [a.spec for a in protocol_actions(log, actions, p)] for p in protocol_list},
        "skipped": sorted(set(skipped)),
    }
    return _package(log.source, rows, records, method_list, config)


def _package(
    source: str,
    rows: list[dict[str, Any]],
    records: list[pd.DataFrame],
    methods: list[str],
    config: dict[str, Any],
) -> EvaluationResult:
    """Add the cross-method metrics and keep the methods asked for."""
    frame = relative_metrics(pd.DataFrame(rows))
    frame["compute_saved_at_uniform_acc"] = compute_saved(frame)
    frame.insert(0, "source", source)
    frame["probe_m"] = np.where(frame["method"].str.contains("probe"), config["probe_m"], 0)
    first = ["source", "protocol", "seed", "budget", "method", "accuracy", "mean_cost"]
    frame = frame[first + [c for c in frame.columns if c not in first]]
    keep = frame["method"].isin(methods)
    queries = pd.concat(records, ignore_index=True)
    queries = queries[queries["method"].isin(methods)]
    lead = ["protocol", "seed", "budget", "method", "query_id"]
    queries = queries[lead + [c for c in queries.columns if c not in lead]]
    routing = routing_table(frame[keep])
    return EvaluationResult(
        frame[keep].reset_index(drop=True), queries.reset_index(drop=True), routing, config
    )
