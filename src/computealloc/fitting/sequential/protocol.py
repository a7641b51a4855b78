"""The evaluation protocol of the sequential methods, and the fit of one rule for serving.

:func:`sequential_methods` runs every method of :data:`SEQUENTIAL_METHODS` on one (seed,
protocol): the queries split into train / calibration / test, learned rules fitted on the
training queries, every knob calibrated to each budget on the calibration queries, and the
figures replayed on the test queries. :func:`fit_stopping` fits and calibrates one rule of
:data:`FIT_RULES` on the same split for the runtime (:class:`StoppingFit`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from computealloc.checks import check_budget
from computealloc.data.samples import SampleLog
from computealloc.data.splits import split_queries, split_samples
from computealloc.estimation.estimate import majority_accuracy
from computealloc.estimation.features import build_features
from computealloc.fitting.sequential._checks import cap_of, check_log
from computealloc.fitting.sequential.calibration import (
    CalibratedStopping,
    StoppingResult,
    calibrate_stopping,
    evaluate_stopping,
)
from computealloc.fitting.sequential.lagrangian import LagrangianStopping
from computealloc.fitting.sequential.pools import AnswerPools, answer_pools, model_of
from computealloc.fitting.sequential.rules import StoppingRule
from computealloc.methods import fittable, get_method, load_class, method_names

__all__ = [
    "FIT_RULES",
    "PRIOR_GROUPS",
    "SEQUENTIAL_METHODS",
    "StoppingFit",
    "fit_stopping",
    "sequential_methods",
]

Float = NDArray[np.float64]

_PROTOCOLS = ("held-out", "in-sample")


# --------------------------------------------------------------------------- protocol

#: Methods of :func:`sequential_methods`, in report order. ``@`` names a fixed published
#: setting (not calibrated to the budget).
SEQUENTIAL_METHODS: tuple[str, ...] = method_names(family="stopping")

#: Prior groups of ``sequential/prior``.
PRIOR_GROUPS: int = get_method("sequential/prior").params["n_groups"]

#: The published fixed settings (not calibrated to the budget).
_PUBLISHED: tuple[str, ...] = tuple(
    m for m in method_names(family="stopping") if get_method(m).kind == "published"
)
#: The learned rules (:class:`LagrangianStopping` with a number of prior groups).
_LEARNED: tuple[str, ...] = tuple(
    m for m in method_names(family="stopping") if "n_groups" in get_method(m).params
)


def _protocol_pools(
    log: SampleLog, protocol: str, seed: int, model: str
) -> tuple[AnswerPools, AnswerPools]:
    """Decision and report pools on the same queries (half A and half B under held-out)."""
    if protocol == "in-sample":
        pools = answer_pools(log, model=model)
        return pools, pools
    mine = (log.samples["model"] == model).to_numpy()
    half_a = split_samples(log.samples, seed=seed)
    qids = sorted(log.samples.loc[mine, "query_id"].unique().tolist())
    dec = answer_pools(log, model=model, sample_mask=half_a, query_ids=qids)
    rep = answer_pools(log, model=model, sample_mask=~half_a, query_ids=qids)
    keep = np.flatnonzero((dec.n > 0) & (rep.n > 0))
    return dec.subset(keep), rep.subset(keep)


def _uniform_majority(pools: AnswerPools, budget: float) -> tuple[float, float]:
    """Exact majority@B (a mix of the two nearest K for a fractional B), capped at the pool."""
    k_max = int(pools.n.min())
    b = min(budget, float(k_max))
    lo, hi = int(np.floor(b)), int(np.ceil(b))
    acc = majority_accuracy(
        pools.gold, pools.others, pools.abstain, [lo, hi], others_correct=pools.others_correct
    ).mean(axis=0)
    w = b - lo
    return float((1 - w) * acc[0] + w * acc[1]), b


def _method_rules(max_samples: int | None) -> dict[str, StoppingRule]:
    """The budget-calibrated published rules of the registry, in report order (unfitted)."""
    return {
        name: _rule_class(name)(**get_method(name).params, max_samples=max_samples)
        for name in FIT_RULES
        if get_method(name).cls != LagrangianStopping.__name__
    }


def _rule_class(name: str) -> type[StoppingRule]:
    """The stopping-rule class of registered method ``name``."""
    cls: type[StoppingRule] = load_class(name)
    return cls


@dataclass(frozen=True)
class _Sets:
    """Training and calibration pools (decision half) and test pools (report half)."""

    train: AnswerPools
    cal: AnswerPools
    test: AnswerPools
    x_train: Float
    x_cal: Float
    x_test: Float


def _row(
    name: str, budget: float, res: StoppingResult, cal: CalibratedStopping | None
) -> dict[str, Any]:
    return {
        "method": name,
        "budget": budget,
        "accuracy": res.accuracy,
        "mean_cost": res.mean_samples,
        "accuracy_se": res.accuracy_se,
        "calibration_cost": np.nan if cal is None else cal.samples,
        "setting": "" if cal is None else cal.describe(),
    }


def sequential_methods(
    log: SampleLog,
    budgets: Iterable[float],
    *,
    seed: int = 0,
    protocol: Literal["held-out", "in-sample"] = "held-out",
    model: str | None = None,
    split: Sequence[float] = (0.6, 0.2, 0.2),
    features: pd.DataFrame | None = None,
    n_orders: int = 64,
    max_samples: int | None = None,
    methods: Iterable[str] | None = None,
) -> pd.DataFrame:
    """Every sequential method on one (seed, protocol): calibrated per budget, scored on test.

    The queries are split into train / calibration / test by
    :func:`~computealloc.data.splits.split_queries` (the split of :func:`computealloc.evaluate`
    for the same seed). Under ``"held-out"`` each query's samples are halved by
    :func:`~computealloc.data.splits.split_samples`: learned rules are fitted on half A of the
    training queries, every knob is calibrated on half A of the calibration queries, and the
    reported figures replay half B of the test queries (so at most ``n / 2`` samples per
    query). Under ``"in-sample"`` all samples serve both.

    Methods (:data:`SEQUENTIAL_METHODS`): ``uniform-majority`` (exact majority@B on the test
    pools); the published settings ``adaptive-consistency@0.95`` (:class:`BetaRule`) and
    ``esc@5`` (:class:`WindowRule`), not calibrated (``budget`` NaN); the budget-calibrated
    rules ``adaptive-consistency``, ``dirichlet``, ``entropy``, ``majority-share`` and
    ``esc``; computealloc's :class:`LagrangianStopping` without a prior
    (``sequential/pooled``) and with a feature prior of :data:`PRIOR_GROUPS` groups
    (``sequential/prior``); and ``sequential``, whichever of the two has the higher accuracy
    on the calibration queries at that budget.

    Parameters
    ----------
    log : SampleLog
    budgets : iterable of float
        Mean samples per query, each >= 1.
    seed : int
        Seed of the query split, the sample halves, the replays and the prior model.
    protocol : {"held-out", "in-sample"}
    model : str, optional
        The model whose samples are replayed; required for a log with several models.
    split : sequence of 3 floats
        Shares of train, calibration and test queries.
    features : DataFrame, optional
        Query features indexed by ``query_id`` for the prior;
        ``build_features(log).X`` (prompt features) by default.
    n_orders : int
        Replayed orders per query for fitting, calibrating and scoring.
    max_samples : int, optional
        Cap on the samples per query (the pool size by default).
    methods : iterable of str, optional
        A subset of :data:`SEQUENTIAL_METHODS` (all by default).

    Returns
    -------
    DataFrame
        One row per budget and method: ``method, budget, accuracy, mean_cost, accuracy_se``
        (Monte Carlo s.e. over the orders), ``calibration_cost`` (mean samples reached on
        the calibration queries), ``setting`` (the calibrated knob), ``protocol, seed,
        n_test``.

    Notes
    -----
    ``mean_cost`` is the test queries' realised mean samples; it differs from the budget by
    the calibration-to-test noise, and is capped by the pools (a budget above the cap
    cannot be spent).

    Examples
    --------
    >>> from computealloc.data import datasets  # doctest: +SKIP
    >>> log = datasets.load("mot_cascade:gpt-3.5-turbo/date/cot1-40")  # doctest: +SKIP
    >>> sequential_methods(log, [2, 4, 8], seed=0)  # doctest: +SKIP
    """
    budget_list = [_check_sequential_budget(b) for b in budgets]
    if protocol not in _PROTOCOLS:
        raise ValueError(
            f"The 'protocol' parameter of sequential_methods must be one of "
            f"{', '.join(map(repr, _PROTOCOLS))}. Got {protocol!r} instead."
        )
    check_log(log, "sequential_methods")
    wanted = _method_set(methods)
    name = model_of(log, model, "sequential_methods")
    sets = _sets(log, protocol, seed, name, split, features)
    rows = _published_rows(sets, seed, n_orders, max_samples, wanted)
    rows += _budget_rows(sets, budget_list, seed, n_orders, max_samples, wanted)
    frame = pd.DataFrame(rows)
    frame["protocol"] = protocol
    frame["seed"] = seed
    frame["n_test"] = sets.test.n_queries
    order = {m: i for i, m in enumerate(SEQUENTIAL_METHODS)}
    return frame.sort_values(
        ["budget", "method"],
        key=lambda s: s.map(order) if s.name == "method" else s,
        na_position="first",
        kind="stable",
    ).reset_index(drop=True)


def _sets(
    log: SampleLog,
    protocol: str,
    seed: int,
    model: str,
    split: Sequence[float],
    features: pd.DataFrame | None,
) -> _Sets:
    dec, rep = _protocol_pools(log, protocol, seed, model)
    qs = split_queries(dec.n_queries, fractions=split, seed=seed)
    x = build_features(log).X if features is None else features
    xa = x.loc[list(dec.query_ids)].to_numpy(dtype=np.float64)
    return _Sets(
        dec.subset(qs.train),
        dec.subset(qs.calibration),
        rep.subset(qs.test),
        xa[qs.train],
        xa[qs.calibration],
        xa[qs.test],
    )


def _published_rows(
    sets: _Sets, seed: int, n_orders: int, max_samples: int | None, wanted: set[str]
) -> list[dict[str, Any]]:
    rows = []
    for name in _PUBLISHED:
        if name not in wanted:
            continue
        rule = _rule_class(name)(**get_method(name).params, max_samples=max_samples)
        res = evaluate_stopping(rule, sets.test, n_orders=n_orders, random_state=_stream(seed, 2))
        rows.append(_row(name, np.nan, res, None))
    return rows


def _stream(seed: int, purpose: int) -> int:
    """Replay seed of one purpose (1 training, 2 test, 3 calibration) for ``seed``."""
    return 10 * int(seed) + purpose


def _learned_rules(
    sets: _Sets, seed: int, n_orders: int, max_samples: int | None, wanted: set[str]
) -> dict[str, tuple[StoppingRule, Float | None, Float | None]]:
    """The fitted sequential policies asked for, with their calibration and test priors."""
    out: dict[str, tuple[StoppingRule, Float | None, Float | None]] = {}
    for name in _LEARNED:
        if name not in wanted and "sequential" not in wanted:
            continue
        n_groups = int(get_method(name).params["n_groups"])
        policy = LagrangianStopping(
            n_groups=n_groups,
            max_samples=max_samples,
            n_orders=n_orders,
            random_state=_stream(seed, 1),
        ).fit(sets.train, sets.x_train)
        if n_groups > 1:
            out[name] = (
                policy,
                policy.predict_prior(sets.x_cal),
                policy.predict_prior(sets.x_test),
            )
        else:
            out[name] = (policy, None, None)
    return out


def _uniform_row(sets: _Sets, budget: float) -> dict[str, Any]:
    acc, cost = _uniform_majority(sets.test, budget)
    return {
        "method": "uniform-majority",
        "budget": budget,
        "accuracy": acc,
        "mean_cost": cost,
        "accuracy_se": 0.0,
        "calibration_cost": np.nan,
        "setting": "",
    }


_RuleSet = dict[str, tuple[StoppingRule, Float | None, Float | None]]


def _rule_set(
    sets: _Sets, seed: int, n_orders: int, max_samples: int | None, wanted: set[str]
) -> tuple[_RuleSet, _RuleSet]:
    """The rules asked for (with calibration and test priors), and the learned ones among them."""
    rules: _RuleSet = {
        n: (r, None, None) for n, r in _method_rules(max_samples).items() if n in wanted
    }
    learned = _learned_rules(sets, seed, n_orders, max_samples, wanted)
    rules.update(learned)
    return rules, learned


def _calibrate(
    sets: _Sets, rules: _RuleSet, budget: float, seed: int, n_orders: int
) -> dict[str, CalibratedStopping]:
    """Every rule calibrated to ``budget`` on the calibration pools."""
    return {
        name: calibrate_stopping(
            rule, sets.cal, budget, prior=p_cal, n_orders=n_orders, random_state=_stream(seed, 3)
        )
        for name, (rule, p_cal, _) in rules.items()
    }


def _best_learned(calibrated: dict[str, CalibratedStopping], learned: _RuleSet) -> str:
    """The learned rule with the highest accuracy on the calibration queries."""
    return max(learned, key=lambda m: calibrated[m].accuracy)


def _budget_rows(
    sets: _Sets,
    budgets: list[float],
    seed: int,
    n_orders: int,
    max_samples: int | None,
    wanted: set[str],
) -> list[dict[str, Any]]:
    rules, learned = _rule_set(sets, seed, n_orders, max_samples, wanted)
    rows = []
    for budget in budgets:
        if "uniform-majority" in wanted:
            rows.append(_uniform_row(sets, budget))
        calibrated = _calibrate(sets, rules, budget, seed, n_orders)
        results = {
            name: evaluate_stopping(
                cal,
                sets.test,
                prior=rules[name][2],
                n_orders=n_orders,
                random_state=_stream(seed, 2),
            )
            for name, cal in calibrated.items()
        }
        rows += [_row(n, budget, results[n], calibrated[n]) for n in rules if n in wanted]
        if "sequential" in wanted:
            best = _best_learned(calibrated, learned)
            rows.append(_row("sequential", budget, results[best], calibrated[best]))
            rows[-1]["setting"] = f"{best}: {rows[-1]['setting']}"
    return rows


# --------------------------------------------------------------------------- deployable fit

#: Rules :func:`fit_stopping` can fit: the budget-calibrated methods of
#: :func:`sequential_methods`.
FIT_RULES: tuple[str, ...] = fittable("fit_stopping")


@dataclass(frozen=True)
class StoppingFit:
    """A stopping rule fitted and calibrated for serving, and how it did on unseen queries.

    Attributes
    ----------
    rule : CalibratedStopping
        Fitted on the train queries, calibrated to the budget on the calibration queries,
        capped at the log's samples per query (what
        :func:`~computealloc.fitting.persist.save_stopping` writes and ``computealloc serve`` runs).
    method : str
        The rule (for ``"sequential"``: which of ``sequential/pooled`` and
        ``sequential/prior`` was more accurate on the calibration queries).
    n_train, n_calibration, n_test : int
        Queries in each part of the split.
    test_accuracy, test_samples : float
        Expected accuracy and mean samples of the rule on the test queries, replaying all of
        their samples in seeded random orders.
    uniform_accuracy : float
        Exact majority@B (a two-K mix for fractional B) on the same test queries.
    """

    rule: CalibratedStopping
    method: str
    n_train: int
    n_calibration: int
    n_test: int
    test_accuracy: float
    test_samples: float
    uniform_accuracy: float


def fit_stopping(
    log: SampleLog,
    *,
    budget: float,
    method: str = "sequential",
    model: str | None = None,
    split: Sequence[float] = (0.6, 0.2, 0.2),
    n_orders: int = 64,
    max_samples: int | None = None,
    seed: int = 0,
) -> StoppingFit:
    """Fit one stopping rule for serving: train, calibrate to ``budget``, check on test.

    The queries are split as in :func:`sequential_methods` (in-sample protocol: every sample
    of a query is replayed). A learned rule's prior reads the prompt features
    (:func:`~computealloc.estimation.features.build_features`), which the runtime computes live.

    Parameters
    ----------
    log : SampleLog
    budget : float
        Mean samples per query, >= 1.
    method : str
        One of :data:`FIT_RULES`; ``"sequential"`` (computealloc's, the default) picks the
        better of the pooled and the prior-grouped :class:`LagrangianStopping` on the
        calibration queries.
    model : str, optional
        The model whose samples are used; required for a log with several models.
    split : sequence of 3 floats
        Shares of train, calibration and test queries.
    n_orders : int
        Replayed orders per query.
    max_samples : int, optional
        Cap on the samples of one query; the largest number a query of the log has by default.
    seed : int
        Seed of the split, the replays and the prior model.

    Returns
    -------
    StoppingFit
    """
    budget = _check_sequential_budget(budget)
    if method not in FIT_RULES:
        raise ValueError(
            f"The 'method' parameter of fit_stopping must be one of {', '.join(FIT_RULES)}. "
            f"Got {method!r} instead."
        )
    check_log(log, "fit_stopping")
    sets = _sets(log, "in-sample", seed, model_of(log, model, "fit_stopping"), split, None)
    largest = int(max(sets.train.n.max(), sets.cal.n.max(), sets.test.n.max()))
    cap = largest if max_samples is None else cap_of(max_samples, "fit_stopping")
    rules, learned = _rule_set(sets, seed, n_orders, cap, {method})
    calibrated = _calibrate(sets, rules, budget, seed, n_orders)
    chosen = _best_learned(calibrated, learned) if method == "sequential" else method
    result = evaluate_stopping(
        calibrated[chosen],
        sets.test,
        prior=rules[chosen][2],
        n_orders=n_orders,
        random_state=_stream(seed, 2),
    )
    return StoppingFit(
        rule=calibrated[chosen],
        method=chosen,
        n_train=sets.train.n_queries,
        n_calibration=sets.cal.n_queries,
        n_test=sets.test.n_queries,
        test_accuracy=result.accuracy,
        test_samples=result.mean_samples,
        uniform_accuracy=_uniform_majority(sets.test, budget)[0],
    )


# --------------------------------------------------------------------------- validation


def _method_set(methods: Iterable[str] | None) -> set[str]:
    if methods is None:
        return set(SEQUENTIAL_METHODS)
    items = [methods] if isinstance(methods, str) else list(methods)
    if not items or any(m not in SEQUENTIAL_METHODS for m in items):
        raise ValueError(
            "The 'methods' parameter of sequential_methods must be a non-empty list of "
            f"{', '.join(map(repr, SEQUENTIAL_METHODS))}. Got {methods!r} instead."
        )
    return set(items)


def _check_sequential_budget(budget: object) -> float:
    value = check_budget(budget, "sequential_methods")
    if value < 1.0:
        raise ValueError(
            f"The 'budget' parameter of sequential_methods must be a float in [1, inf) "
            f"(samples per query). Got {budget!r} instead."
        )
    return value
