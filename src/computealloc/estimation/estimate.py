"""SampleLog -> OutcomeTable: exact expected accuracy and cost of every action on every query.

Each (model, query) pair holds a pool of ``n`` sampled responses. An action draws ``K`` of them
uniformly without replacement and combines them by its kind (plurality vote, best score,
any-correct: :mod:`computealloc.estimation.kinds`); its expected accuracy is computed exactly over
all ``C(n, K)`` draws, not by Monte Carlo, by the array kernels of
:mod:`computealloc.estimation.kernels` (re-exported here). :func:`estimate` builds the kernels'
per-query arrays from a
:class:`~computealloc.data.samples.SampleLog` (:func:`cluster_samples`).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from computealloc.data.grading import answer_keys
from computealloc.data.samples import SampleLog, SampleLogWarning
from computealloc.estimation.actions import Action, parse_actions
from computealloc.estimation.kernels import (
    MAX_POOL_SIZE,
    ClusteredSamples,
    Float,
    Int,
    best_of_accuracy,
    conditional_majority,
    majority_accuracy,
    pass_at_k,
)
from computealloc.estimation.kinds import get_kind
from computealloc.estimation.table import OutcomeTable
from computealloc.estimation.units import CostUnit, PriceLike, Pricing, pricing_of

__all__ = [
    "MAX_POOL_SIZE",
    "ClusteredSamples",
    "best_of_accuracy",
    "cluster_samples",
    "conditional_majority",
    "default_actions",
    "estimate",
    "majority_accuracy",
    "pass_at_k",
]

_ON_SHORT = ("raise", "drop")
_PROTOCOLS = ("in-sample", "held-out")


# --------------------------------------------------------------------------- SampleLog side


def _name(qids: NDArray[np.object_], row: int, model: str) -> str:
    return f"query {qids[row]!r} (model {model!r})"


def _resolve_correct(
    frame: pd.DataFrame, row: Int, qids: NDArray[np.object_], model: str
) -> NDArray[np.bool_]:
    """Correctness per sample.

    An answer string is correct when any sample giving it (in the same query) is labelled
    correct; samples labelled correct are correct even without an answer (label-only
    sources). An answer string labelled both correct and wrong, or one with no label at all,
    is an error.
    """
    answered = frame["answer"].notna().to_numpy()
    label = frame["correct"].astype("boolean")
    is_true = label.fillna(False).to_numpy(dtype=bool)
    is_false = (~label).fillna(False).to_numpy(dtype=bool)
    codes = pd.factorize(frame["answer"])[0].astype(np.int64)
    group = pd.factorize(row * (int(codes.max(initial=0)) + 2) + codes)[0]
    n_group = int(group.max(initial=-1)) + 1
    true_any = np.bincount(group, weights=is_true & answered, minlength=n_group)[group] > 0
    false_any = np.bincount(group, weights=is_false & answered, minlength=n_group)[group] > 0
    bad = answered & true_any & false_any
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(
            f"{_name(qids, row[i], model)}: answer {frame['answer'].iloc[i]!r} is labelled "
            "both correct and wrong; `correct` must agree across samples with the same answer."
        )
    unknown = answered & ~true_any & ~false_any
    if unknown.any():
        i = int(np.argmax(unknown))
        count = int(np.count_nonzero(unknown & (row == row[i])))
        raise ValueError(
            f"{_name(qids, row[i], model)} has {count} answered samples whose correctness is "
            "unknown (`correct` is NA); grade them (give `gold`) or leave the query out."
        )
    return is_true | (answered & true_any)


_NO_GOLD = "\x00no gold"  # the key of label-only correct samples of a query without a gold


def _vote_groups(
    frame: pd.DataFrame, row: Int, golds: NDArray[np.object_] | None, correct: NDArray[np.bool_]
) -> Int:
    """Answer cluster of each voting sample (first-appearance order), -1 for abstaining ones.

    Clusters are the answers of :func:`computealloc.data.grading.answer_keys`, split where the
    labels disagree (a source stricter than the grader's normal form); a sample labelled
    correct without an answer gives the gold answer.
    """
    gold_of = np.full(len(row), None, dtype=object) if golds is None else golds[row]
    answered = frame["answer"].notna().to_numpy()
    given = np.where(answered, frame["answer"].to_numpy(dtype=object), gold_of)
    keys = answer_keys(given, gold_of)
    keys[~answered & correct & pd.isna(gold_of)] = _NO_GOLD
    key_codes = pd.factorize(keys)[0].astype(np.int64)
    combined = (row * (int(key_codes.max(initial=0)) + 2) + key_codes + 1) * 2 + correct
    group = pd.factorize(combined)[0].astype(np.int64)
    return np.where(answered | correct, group, -1)


def cluster_frame(
    frame: pd.DataFrame,
    row: Int,
    n_rows: int,
    qids: NDArray[np.object_],
    model: str,
    golds: NDArray[np.object_] | None,
    cost: Float | None = None,
) -> ClusteredSamples:
    """Cluster the samples of ``frame`` (query rows ``row``) per query: see ``cluster_samples``."""
    correct = _resolve_correct(frame, row, qids, model)
    group = _vote_groups(frame, row, golds, correct)
    votes = group >= 0
    n_group = int(group.max(initial=-1)) + 1
    size = np.bincount(group[votes], minlength=n_group)
    g_row = np.zeros(n_group, dtype=np.int64)
    g_ok = np.zeros(n_group, dtype=bool)
    g_row[group[votes]], g_ok[group[votes]] = row[votes], correct[votes]
    gid = np.arange(n_group)
    # the main correct cluster of each row: its largest, ties to the first seen
    by_size = np.lexsort((gid, -size, ~g_ok, g_row))
    first = np.r_[True, g_row[by_size][1:] != g_row[by_size][:-1]]
    main = np.zeros(n_group, dtype=bool)
    main[by_size[first & g_ok[by_size]]] = True
    rest = np.flatnonzero(~main)
    rest = rest[np.lexsort((rest, -size[rest], g_row[rest]))]
    rank = np.arange(rest.size) - np.searchsorted(g_row[rest], g_row[rest], side="left")
    width = int(rank.max(initial=-1)) + 1
    others = np.zeros((n_rows, width), dtype=np.int64)
    others_correct = np.zeros((n_rows, width), dtype=bool)
    others[g_row[rest], rank], others_correct[g_row[rest], rank] = size[rest], g_ok[rest]
    slot_of = np.zeros(max(n_group, 1), dtype=np.int64)
    slot_of[rest] = rank + 1
    return ClusteredSamples(
        model=model,
        n=np.bincount(row, minlength=n_rows),
        gold=np.bincount(g_row[main], weights=size[main], minlength=n_rows).astype(np.int64),
        others=others,
        abstain=np.bincount(row[~votes], minlength=n_rows),
        row=row,
        correct=correct,
        score=frame["score"].to_numpy(dtype=np.float64, na_value=np.nan),
        cost=np.full(len(row), np.nan) if cost is None else cost,
        others_correct=others_correct,
        slot=np.where(votes, slot_of[np.maximum(group, 0)], -1),
    )


def query_golds(log: SampleLog, qids: Iterable[object]) -> NDArray[np.object_]:
    """The gold answer of each query of ``qids`` (None where unknown), for ``cluster_samples``."""
    gold = log.queries.set_index("query_id")["gold"].reindex(list(qids))
    return np.asarray(gold.astype(object).where(gold.notna(), None), dtype=object)


def cluster_samples(
    samples: pd.DataFrame,
    model: str,
    qids: NDArray[np.object_],
    costs: Float | None = None,
    golds: ArrayLike | None = None,
) -> ClusteredSamples:
    """Cluster one model's samples on the queries ``qids`` (answer clusters per query).

    Shared by the fixed-K estimators here, the probe-reuse estimator of
    :mod:`computealloc.estimation.reuse` and the stopping-rule replay in
    :mod:`computealloc.fitting.sequential`. Rows follow ``qids``; samples of other queries are
    ignored. ``costs`` (n_samples,), aligned with ``samples``, is each sample's cost
    (:meth:`~computealloc.estimation.units.Pricing.sample_costs`); ``golds`` (aligned with ``qids``,
    None where unknown) lets answers equal to the gold vote as one answer.
    """
    mine = (samples["model"] == model).to_numpy()
    frame = samples[mine]
    row = pd.Index(qids).get_indexer(pd.Index(frame["query_id"])).astype(np.int64)
    known = row >= 0
    frame, row = frame[known], row[known]
    cost = None if costs is None else costs[mine][known]
    gold = None if golds is None else np.asarray(golds, dtype=object).reshape(-1)
    return cluster_frame(frame, row, len(qids), qids, model, gold, cost)


def _require(
    pools: ClusteredSamples, bad: NDArray[np.bool_], need: str, what: str, qids: NDArray[np.object_]
) -> None:
    """Raise naming the first query with a ``bad`` sample (a missing score or token count)."""
    if bad.any():
        i = pools.row[int(np.argmax(bad))]
        count = int(np.count_nonzero(bad & (pools.row == i)))
        raise ValueError(
            f"{need} needs {what} for every sample; {_name(qids, i, pools.model)} has "
            f"{count} samples without one."
        )


def _accuracy_columns(
    pools: ClusteredSamples,
    actions: list[tuple[int, Action]],
    qids: NDArray[np.object_],
    out: Float,
) -> None:
    """Fill ``out[:, j]`` with the expected accuracy of each ``(j, action)`` of one model, by
    each action kind's estimator (:mod:`computealloc.estimation.kinds`)."""
    for name in dict.fromkeys(a.kind for _, a in actions):
        kind = get_kind(name)
        for field in kind.needs:
            bad = ~np.isfinite(getattr(pools, field))
            _require(pools, bad, f"{name}@K", f"a finite `{field}`", qids)
        columns = [(j, a.k) for j, a in actions if a.kind == name]
        ks = np.array([k for _, k in columns], dtype=np.int64)
        out[:, [j for j, _ in columns]] = kind.accuracy(pools, ks)


# --------------------------------------------------------------------------- validation


def _check_log(log: object, where: str) -> SampleLog:
    if not isinstance(log, SampleLog):
        raise TypeError(
            f"The 'log' parameter of {where} must be a SampleLog. Got {type(log).__name__} instead."
        )
    return log


def _check_choice(name: str, value: object, choices: tuple[str, ...], where: str) -> None:
    if value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise ValueError(
            f"The {name!r} parameter of {where} must be one of {allowed}. Got {value!r} instead."
        )


def _action_models(log: SampleLog, actions: tuple[Action, ...]) -> list[str]:
    """The model each action draws from; an unprefixed action needs a one-model log."""
    models = log.models
    out = []
    for action in actions:
        if action.model is None:
            if len(models) != 1:
                raise ValueError(
                    f"Action {action.spec!r} has no model prefix, but the log holds "
                    f"{len(models)} models ({', '.join(models)}); write 'MODEL/{action.spec}'."
                )
            out.append(models[0])
        elif action.model not in models:
            raise ValueError(
                f"Action {action.spec!r} names model {action.model!r}, which is not in the log; "
                f"its models are: {', '.join(models)}."
            )
        else:
            out.append(action.model)
    return out


def _pool_sizes(
    samples: pd.DataFrame, models: list[str]
) -> tuple[NDArray[np.object_], dict[str, Int]]:
    """Query ids (sorted union over ``models``) and each model's pool size per query."""
    frame = samples[samples["model"].isin(set(models)).to_numpy()]
    qids = np.asarray(sorted(frame["query_id"].unique().tolist()), dtype=object)
    sizes = frame.groupby(["model", "query_id"], observed=True).size()
    out: dict[str, Int] = {}
    for model in dict.fromkeys(models):
        size = sizes.xs(model, level="model").reindex(qids, fill_value=0)
        out[model] = np.asarray(size.to_numpy(), dtype=np.int64)
        big = out[model] > MAX_POOL_SIZE
        if big.any():
            i = int(np.argmax(big))
            raise ValueError(
                f"estimate supports at most {MAX_POOL_SIZE} samples per (model, query); "
                f"{_name(qids, i, model)} has {out[model][i]}."
            )
    return qids, out


def _short_rows(
    qids: NDArray[np.object_],
    sizes: dict[str, Int],
    actions: tuple[Action, ...],
    models: list[str],
    on_short: str,
) -> NDArray[np.bool_]:
    """Rows whose pools hold at least ``K`` samples for every action; raise or drop the rest."""
    keep = np.ones(len(qids), dtype=bool)
    for action, model in zip(actions, models, strict=True):
        short = sizes[model] < action.k
        if short.any() and on_short == "raise":
            i = int(np.argmax(short))
            raise ValueError(
                f"Action {action.spec!r} needs {action.k} samples per query, but "
                f"{_name(qids, i, model)} has {sizes[model][i]} ({int(short.sum())} queries "
                "are short). Pass on_short='drop' to leave such queries out."
            )
        keep &= ~short
    if not keep.any():
        raise ValueError(
            "on_short='drop' left no query: every query is short of samples for some action "
            f"(largest K = {max(a.k for a in actions)})."
        )
    return keep


# --------------------------------------------------------------------------- public API


def default_actions(
    log: SampleLog, protocol: Literal["in-sample", "held-out"] = "in-sample"
) -> tuple[Action, ...]:
    """The default action list: ``majority@K`` for K = 1, 2, 4, 8, ... up to the pool size.

    ``K`` runs up to the smallest number of samples any query has (under the held-out-samples
    protocol, half of it, rounded down). A log with several models gets model-prefixed actions
    ``MODEL/majority@K`` for each model, bounded by that model's smallest pool.

    Parameters
    ----------
    log : SampleLog
    protocol : {"in-sample", "held-out"}

    Returns
    -------
    tuple of Action
    """
    log = _check_log(log, "default_actions")
    _check_choice("protocol", protocol, _PROTOCOLS, "default_actions")
    models = log.models
    sizes = log.samples.groupby(["model", "query_id"], observed=True).size()
    actions: list[Action] = []
    for model in models:
        smallest = int(sizes.xs(model, level="model").min())
        limit = smallest // 2 if protocol == "held-out" else smallest
        if limit < 1:
            raise ValueError(
                f"The held-out protocol needs at least 2 samples per query; model {model!r} "
                f"has a query with {smallest}."
            )
        _warn_short(sizes.xs(model, level="model"), model, log.source, protocol)
        prefix = model if len(models) > 1 else None
        actions += [Action("majority", 1 << p, prefix) for p in range(limit.bit_length())]
    return tuple(actions)


def _warn_short(sizes: pd.Series, model: str, source: str, protocol: str) -> None:
    """Warn when a few short queries shrink the default actions of every query.

    ``sizes`` is the number of samples per query (indexed by query_id) of ``model``.
    """
    half = protocol == "held-out"
    smallest, typical = int(sizes.min()), int(sizes.median())
    if ((smallest // 2) if half else smallest).bit_length() >= (
        (typical // 2) if half else typical
    ).bit_length():
        return
    short = sizes[sizes < typical].sort_values()
    shown = ", ".join(f"{q!r} ({k})" for q, k in short.head(5).items())
    top = 1 << (((smallest // 2) if half else smallest).bit_length() - 1)
    warnings.warn(
        f"{source}: {len(short)} of {len(sizes)} queries of model {model!r} have fewer samples "
        f"than the {typical} of most ({shown}{', ...' if len(short) > 5 else ''}), so every "
        f"query's default actions stop at majority@{top}; drop the short queries "
        f"(SampleLog.drop_short({typical}), --min-samples {typical} on the command line) or "
        "give the actions",
        SampleLogWarning,
        stacklevel=3,
    )


def estimate(
    log: SampleLog,
    actions: str | Iterable[str | Action] | None = None,
    cost: CostUnit | Pricing = "samples",
    *,
    prices: Mapping[str, PriceLike] | None = None,
    on_short: Literal["raise", "drop"] = "raise",
) -> OutcomeTable:
    """Exact expected accuracy and cost of each action on each query of a sample log.

    For query ``i`` and action ``a = [MODEL/]KIND@K``, ``P[i, a]`` is the expected accuracy of
    ``KIND`` over ``K`` samples drawn uniformly without replacement from the ``n`` samples that
    ``MODEL`` has for query ``i`` (exact over all ``C(n, K)`` draws), and ``C[i, a]`` the
    expected cost of those ``K`` samples.

    Parameters
    ----------
    log : SampleLog
        Samples with ``answer`` and ``correct`` (plus ``score`` for ``best_of``, ``tokens`` for
        token or money costs).
    actions : str, iterable of str or Action, optional
        Action specs (``"majority@1,majority@4"``); default :func:`default_actions`.
        An action without a model prefix needs a log with a single model.
    cost : {"samples", "tokens", "chars", "usd"} or Pricing
        Cost unit (:mod:`computealloc.estimation.units`). ``C[i, a]`` is ``K`` times the mean cost
        of one sample of the query's pool (exact under sampling without replacement): ``K`` times
        the arm's price in ``"samples"``, the expected output tokens (or characters) times the
        price in ``"tokens"`` (``"chars"``), USD in ``"usd"``.
    prices : dict of str to float or str, optional
        Price per model (arm), in the unit's sense: per sample, per token or character, or
        USD per 1M output tokens (``"IN/OUT"`` adds a prompt-token price); e.g.
        ``{"gpt-4": 1, "mixtral": 0}`` makes the cost the number of GPT-4 calls. Default 1
        per unit for every model (required with ``"usd"``).
    on_short : {"raise", "drop"}
        What to do with a query whose pool has fewer than ``K`` samples for some action:
        raise an error naming it, or leave it out of the table (listed in
        ``table.metadata["dropped_queries"]``). A query missing for a model counts as short.

    Returns
    -------
    OutcomeTable
        ``P`` and ``C`` of shape (n_queries, n_actions); rows are the query ids of the models
        used, sorted; columns the action specs in the given order.

    Notes
    -----
    Answer clusters are formed per (model, query) by answer equivalence, never by the
    correctness label: two samples vote together when their answers have the same
    :func:`computealloc.data.grading.answer_keys` key (the
    :func:`~computealloc.data.grading.normalize` form, or the gold's form for an answer the grader
    finds equal to the gold without math-verify), as the live vote of
    :mod:`computealloc.serving.runtime` counts them. Different correct answers (any valid expression
    in Game of 24) are different clusters, each correct; the vote is correct when a correct cluster
    wins. Where the labels are stricter than the normal form (``5/1/2021`` labelled wrong,
    ``05/01/2021`` right) the cluster splits by label. An answer string is correct when any sample
    giving it is labelled correct. A sample labelled correct without an answer (label-only sources)
    gives the gold answer; a sample without an answer and not labelled correct abstains: it does not
    vote, and a draw where every sample abstains is wrong. With these rules ``majority@1`` equals
    the mean of the correctness labels.

    The estimates are in-sample: they describe the pool, not fresh samples; the held-out
    protocol calls this on half of each pool.

    Examples
    --------
    >>> import pandas as pd
    >>> from computealloc.data.samples import SampleLog
    >>> s = pd.DataFrame({"query_id": ["q"] * 3, "sample_idx": [0, 1, 2],
    ...                   "model": "m", "answer": ["4", "4", "5"],
    ...                   "correct": pd.array([True, True, False], dtype="boolean"),
    ...                   "tokens": [10.0, 20.0, 30.0], "score": float("nan")})
    >>> log = SampleLog(s, pd.DataFrame({"query_id": ["q"], "prompt": ["2+2"], "gold": ["4"]}))
    >>> t = estimate(log, "majority@1,majority@3", cost="tokens")
    >>> t.P.round(4).tolist(), t.C.tolist()
    ([[0.6667, 1.0]], [[20.0, 60.0]])
    """
    log = _check_log(log, "estimate")
    pricing = cost if isinstance(cost, Pricing) else pricing_of(cost, prices, "estimate")
    _check_choice("on_short", on_short, _ON_SHORT, "estimate")
    acts = default_actions(log) if actions is None else parse_actions(actions)
    models = _action_models(log, acts)
    pricing.check_arms(dict.fromkeys(models), where="The 'prices' parameter of estimate")
    qids, sizes = _pool_sizes(log.samples, models)
    keep = _short_rows(qids, sizes, acts, models, on_short)
    kept = qids[keep]
    p = np.empty((len(kept), len(acts)))
    c = np.empty_like(p)
    golds = query_golds(log, kept)
    costs = None
    if pricing.unit != "samples":
        used = log.samples[log.samples["model"].isin(set(models)).to_numpy()]
        costs = pricing.sample_costs(used, log.queries)
        log = replace(log, samples=used)
    for model in dict.fromkeys(models):
        pools = cluster_samples(log.samples, model, kept, costs, golds)
        mine = [(j, a) for j, (a, m) in enumerate(zip(acts, models, strict=True)) if m == model]
        _accuracy_columns(pools, mine, kept, p)
        per_sample = np.full(len(kept), pricing.price(model).rate)
        if costs is not None:
            bad = ~(np.isfinite(pools.cost) & (pools.cost >= 0))
            need = "a finite, non-negative " + " and ".join(f"`{c}`" for c in pricing.columns)
            _require(pools, bad, f"cost={pricing.unit!r}", need, kept)
            per_sample = np.bincount(pools.row, weights=pools.cost, minlength=len(kept)) / pools.n
        for j, a in mine:
            c[:, j] = get_kind(a.kind).draws(a.k) * per_sample
    metadata = {
        "source": log.source,
        "dropped_queries": qids[~keep].tolist(),
        **({"prices": pricing.to_dict()["prices"]} if pricing.prices else {}),
    }
    return OutcomeTable(p, c, [a.spec for a in acts], kept.tolist(), pricing.unit, metadata)
