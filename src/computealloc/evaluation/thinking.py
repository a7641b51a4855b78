"""Early exit along the thought: stopping rules over checkpoints, calibrated to a token budget.

A rule reads one reasoning trace checkpoint by checkpoint and stops at the first checkpoint
it accepts; the answer there is the answer, and the cost is the thinking tokens up to it plus
the answer tokens of every forced answer asked for on the way
(:func:`computealloc.data.checkpoints.stop_outcome`). Families, each with one knob:

``uniform-cap``
    ``cap@T`` for every query (budget forcing): the baseline. Knob ``T`` (the checkpoint
    grid, then ``full``).
``stable``
    ``stable@W``: stop once the answer has been the same at ``W`` checkpoints in a row
    (answer consistency; Liu & Wang 2025, ES-CoT). Knob ``W = 1, 2, ...``.
``conf``
    ``conf@TAU``: stop at the first answer whose confidence is at least ``TAU`` (DEER, Yang et
    al. 2025). Knob ``TAU`` (quantiles of the training confidences).
``learned-exit``
    computealloc's learned rule over (tokens so far, answer stability, answer changes,
    confidence, checkpoint index): two logistic classifiers on the features and their
    products, fitted on the training queries, predict whether the current answer is
    correct and whether the trace's final answer will be; the rule stops when the
    predicted gain of thinking on, ``P(final correct) - P(current correct)``, is at most
    ``delta``. Knob ``delta``.

Each family is calibrated like the stopping rules of :mod:`computealloc.fitting.sequential`: the
knob whose mean tokens per query on the calibration queries equals the budget, a per-query mix of
two adjacent settings where none hits it exactly. :func:`evaluate_thinking` runs every family
on the honest protocol (DESIGN, "Evaluation protocol"): queries split into train /
calibration / test by seed; under ``held-out`` each query's traces are split in two halves,
the rules are fitted and calibrated on half A and every reported number is read from half B
of the test queries. :func:`thinking_verdict` measures the bar of issue 16 on the result.

:func:`computealloc.evaluation.evaluate` runs the same rules on a checkpoint log as methods
(:data:`THINKING_METHODS`), on its own query split and sample halves
(:func:`thinking_rows`), and the report reads :func:`tokens_to_full` off its summary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from computealloc.checks import check_budget
from computealloc.data.checkpoints import CheckpointLog, Outcome, Traces, arm_outcomes, stop_outcome
from computealloc.data.splits import split_queries, split_samples
from computealloc.methods import kind_of, method_names

__all__ = [
    "BAR_SHARE",
    "BAR_WINS",
    "EXIT_METHODS",
    "FULL_METHOD",
    "THINKING_METHODS",
    "LearnedExit",
    "calibrate_knob",
    "evaluate_thinking",
    "exit_features",
    "prompt_matrix",
    "thinking_rows",
    "thinking_verdict",
    "tokens_to_full",
]

Float = NDArray[np.float64]
Int = NDArray[np.int64]
Bool = NDArray[np.bool_]

#: The budgeted methods of :func:`evaluate_thinking`, plus the reference ``full``.
EXIT_METHODS: tuple[str, ...] = ("uniform-cap", "stable", "conf", "learned-exit")
#: One trace thought to its end: the reference of "tokens to reach full-thinking accuracy".
FULL_METHOD = "full/majority@1"
#: The methods :func:`computealloc.evaluation.evaluate` adds on a checkpoint log, each with its
#: kind in the comparison (:func:`computealloc.evaluation.comparison.kind_of`): one entry per
#: method.
THINKING_METHODS: dict[str, str] = {name: kind_of(name) for name in method_names(family="thinking")}
#: The bar of issue 16: full thinking's accuracy with at most this share of its mean tokens,
#: and beating the uniform cap at equal mean tokens at this many budgets.
BAR_SHARE = 0.35
BAR_WINS = 3
#: Settings of the ``conf`` and ``learned-exit`` knobs (quantiles of the training scores).
N_KNOB = 64


# --------------------------------------------------------------------------- features, rule


def exit_features(traces: Traces) -> Float:
    """What a rule may read at each checkpoint, shape (n_traces, m, 7).

    Columns: ``log1p(think_tokens)``, answer run length (checkpoints in a row with this
    answer), answer changes so far, confidence (0.5 when absent), whether a confidence is
    given, whether there is an answer, checkpoint index. Padding columns hold zeros.
    """
    think = np.where(traces.valid, traces.think, 0.0)
    run = traces.run_length().astype(np.float64)
    changed = np.zeros(traces.key.shape)
    changed[:, 1:] = traces.key[:, 1:] != traces.key[:, :-1]
    conf = traces.confidence
    index = np.broadcast_to(np.arange(think.shape[1], dtype=np.float64), think.shape)
    feats = np.stack(
        [
            np.log1p(think),
            run,
            np.cumsum(changed, axis=1),
            np.where(np.isfinite(conf), conf, 0.5),
            np.isfinite(conf).astype(np.float64),
            (traces.key >= 0).astype(np.float64),
            index,
        ],
        axis=-1,
    )
    return np.where(traces.valid[..., None], feats, 0.0)


def _design(x: Float) -> Float:
    """The features with their pairwise products (a logistic model with interactions)."""
    i, j = np.triu_indices(x.shape[1])
    return np.concatenate([x, x[:, i] * x[:, j]], axis=1)


def prompt_matrix(log: CheckpointLog, traces: Traces) -> Float:
    """Prompt features of each query of ``traces`` (rows of ``traces.qids``), shape (n_queries, p).

    The columns of :func:`~computealloc.estimation.features.prompt_features`, as signed
    ``log1p`` of their absolute values (counts spread over orders of magnitude).
    """
    from computealloc.estimation.features import prompt_features

    prompts = log.queries.set_index("query_id")["prompt"].reindex(traces.qids)
    x = prompt_features(prompts.where(prompts.notna(), None)).to_numpy(np.float64)
    return np.sign(x) * np.log1p(np.abs(x))


@dataclass
class LearnedExit:
    """Stop when the predicted gain of thinking on is at most ``delta``.

    Parameters
    ----------
    random_state : int
        Seed of the classifiers.

    Attributes
    ----------
    now_, end_ : Pipeline or float
        Logistic regressions on the standardised :func:`exit_features`, the prompt priors and
        their pairwise products (a float where the training labels have one class):
        ``P(current answer correct | features)`` and ``P(final answer correct | features)``.
    prior_ : Pipeline or None
        Ridge regression from the prompt features (:func:`prompt_matrix`) to two per-query
        targets over the training traces: the share of traces whose final answer is correct
        and the mean ``log1p`` trace length. Its predictions are the *prompt priors*, two
        columns added to every checkpoint's features (out-of-fold predictions on the training
        queries, so the classifiers see priors as noisy as on new queries). None when fitted
        without prompts.
    """

    random_state: int = 0

    def fit(self, traces: Traces, prompts: Float | None = None) -> LearnedExit:
        """Fit the prompt priors and both classifiers on every checkpoint of ``traces``.

        Parameters
        ----------
        traces : Traces
        prompts : ndarray of shape (len(traces.qids), p), optional
            Prompt features per query (:func:`prompt_matrix`); None fits on the trace alone.
        """
        priors = self._fit_priors(traces, prompts)
        x = self._x(traces, priors)
        at = np.arange(traces.n_traces)
        end = np.broadcast_to(traces.correct[at, traces.n_ckpt - 1][:, None], traces.key.shape)
        self.now_ = self._fit_one(x, traces.correct[traces.valid])
        self.end_ = self._fit_one(x, end[traces.valid])
        return self

    def _fit_priors(self, traces: Traces, prompts: Float | None) -> Float | None:
        """Fit :attr:`prior_`; return the out-of-fold priors of the training queries."""
        self.prior_: object | None = None
        if prompts is None:
            return None
        from sklearn.linear_model import RidgeCV
        from sklearn.model_selection import KFold, cross_val_predict
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        n_rows = traces.qids.size
        at = np.arange(traces.n_traces)
        targets = np.stack(
            [
                traces.correct[at, traces.n_ckpt - 1].astype(np.float64),
                np.log1p(traces.length),
            ],
            axis=1,
        )
        count = np.bincount(traces.row, minlength=n_rows)
        seen = np.flatnonzero(count > 0)
        y = (
            np.stack(
                [np.bincount(traces.row, weights=t, minlength=n_rows)[seen] for t in targets.T],
                axis=1,
            )
            / count[seen, None]
        )
        model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 4, 13)))
        folds = min(5, seen.size)
        if folds < 2:
            return None
        priors = np.zeros((n_rows, 2))
        priors[seen] = cross_val_predict(
            model, prompts[seen], y, cv=KFold(folds, shuffle=True, random_state=self.random_state)
        )
        self.prior_ = model.fit(prompts[seen], y)
        return priors

    def _x(self, traces: Traces, priors: Float | None) -> Float:
        """The design matrix of every valid checkpoint: features, priors, pairwise products."""
        feats = exit_features(traces)
        if priors is not None:
            per_trace = np.broadcast_to(
                priors[traces.row][:, None, :], (*traces.key.shape, priors.shape[1])
            )
            feats = np.concatenate([feats, per_trace], axis=-1)
        return _design(feats[traces.valid])

    def _fit_one(self, x: Float, y: Bool) -> object:
        if y.all() or not y.any():
            return float(y.mean())  # one class only: a constant forecast
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        model = LogisticRegression(
            C=1.0, max_iter=1000, solver="newton-cholesky", random_state=self.random_state
        )
        return make_pipeline(StandardScaler(), model).fit(x, y)

    def gain(self, traces: Traces, prompts: Float | None = None) -> Float:
        """Predicted gain of thinking to the end, shape (n_traces, m); -inf in padding.

        ``prompts`` as in :meth:`fit` (required when fitted with prompts, for
        ``traces.qids``).
        """
        priors = None
        if self.prior_ is not None:
            if prompts is None:
                raise ValueError("This LearnedExit was fitted with prompts; pass `prompts`.")
            priors = np.asarray(self.prior_.predict(prompts), dtype=np.float64)  # type: ignore[attr-defined]
        x = self._x(traces, priors)
        out = np.full(traces.key.shape, -np.inf)
        out[traces.valid] = self._predict(self.end_, x) - self._predict(self.now_, x)
        return out

    @staticmethod
    def _predict(model: object, x: Float) -> Float:
        if isinstance(model, float):
            return np.full(len(x), model)
        return np.asarray(model.predict_proba(x)[:, 1], dtype=np.float64)  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- families


def _family(
    name: str, traces: Traces, knobs: Sequence[float], gain: Float | None = None
) -> list[Outcome]:
    """The outcome of every knob setting of a family on ``traces``."""
    if name == "uniform-cap":
        return [arm_outcomes(traces, "full" if np.isinf(t) else f"cap@{int(t)}") for t in knobs]
    if name == "stable":
        return [arm_outcomes(traces, f"stable@{int(w)}") for w in knobs]
    if name == "conf":
        answered = traces.key >= 0
        conf = np.where(np.isfinite(traces.confidence), traces.confidence, -np.inf)
        return [stop_outcome(traces, traces.first(answered & (conf >= t)), "all") for t in knobs]
    assert gain is not None
    return [stop_outcome(traces, traces.first(gain <= d), "all") for d in knobs]


def _knobs(name: str, log: CheckpointLog, train: Traces, gain: Float | None) -> list[float]:
    """Knob settings of a family, from the log's grid or the training traces' scores."""
    if name == "uniform-cap":
        return [float(t) for t in log.grid] + [np.inf]
    if name == "stable":
        return [float(w) for w in range(1, int(train.n_ckpt.max()) + 1)]
    if name == "conf":
        values = train.confidence[train.valid & np.isfinite(train.confidence)]
        return sorted(set(np.quantile(values, np.linspace(0, 1, N_KNOB)).tolist()) | {1.01})
    assert gain is not None
    values = gain[train.valid]
    grid = np.quantile(values, np.linspace(0, 1, N_KNOB))
    return sorted(set(grid.tolist()) | {-np.inf}, reverse=True)


def _per_query(traces: Traces, values: Float, n_rows: int) -> Float:
    """Mean of ``values`` (n_traces,) over each query's traces, NaN where none."""
    count = np.bincount(traces.row, minlength=n_rows)
    total = np.bincount(traces.row, weights=values, minlength=n_rows)
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / count


@dataclass(frozen=True)
class Calibration:
    """A knob mix: setting ``high`` with probability ``mix``, else ``low`` (indices)."""

    low: int
    high: int
    mix: float
    cost: float


def calibrate_knob(costs: Float, budget: float) -> Calibration | None:
    """The mix of two adjacent settings whose mean cost is ``budget``.

    Parameters
    ----------
    costs : ndarray of shape (n_settings,)
        Mean tokens per query of each setting on the calibration queries.
    budget : float
        Mean tokens per query.

    Returns
    -------
    Calibration or None
        None when the budget is below every setting's cost (infeasible); the costliest
        setting when it is above all.
    """
    order = np.argsort(costs, kind="stable")
    sorted_costs = costs[order]
    if budget < sorted_costs[0]:
        return None
    if budget >= sorted_costs[-1]:
        top = int(order[-1])
        return Calibration(top, top, 0.0, float(sorted_costs[-1]))
    hi = int(np.searchsorted(sorted_costs, budget, side="left"))
    lo = hi - 1 if sorted_costs[hi] > budget else hi
    span = sorted_costs[hi] - sorted_costs[lo]
    mix = 0.0 if span <= 0 else float((budget - sorted_costs[lo]) / span)
    return Calibration(int(order[lo]), int(order[hi]), mix, float(budget))


# --------------------------------------------------------------------------- evaluation


def _halves(traces: Traces, protocol: str, seed: int) -> tuple[Bool, Bool]:
    if protocol == "in-sample":
        everything = np.ones(traces.n_traces, dtype=bool)
        return everything, everything
    frame = pd.DataFrame({"model": traces.model, "query_id": traces.qids[traces.row]})
    half_a = split_samples(frame, seed=seed)
    return half_a, ~half_a


def evaluate_thinking(
    log: CheckpointLog,
    budgets: Sequence[float],
    *,
    seeds: int = 3,
    protocol: Literal["in-sample", "held-out"] = "held-out",
    methods: Sequence[str] = EXIT_METHODS,
    model: str | None = None,
) -> pd.DataFrame:
    """Early-exit rules and the uniform cap, calibrated to each budget, on held-out queries.

    Parameters
    ----------
    log : CheckpointLog
    budgets : sequence of float
        Mean tokens per query (thinking plus answer tokens), each > 0.
    seeds : int
        Query splits (train 60% / calibration 20% / test 20%, :func:`split_queries`).
    protocol : {"held-out", "in-sample"}
        ``held-out`` fits and calibrates on half A of each query's traces and reports half B
        (needs >= 2 traces per query); ``in-sample`` uses every trace for both.
    methods : sequence of str
        From :data:`EXIT_METHODS`; ``conf`` needs confidences and is skipped without them.
    model : str, optional
        The log's model to use (required when it has several).

    Returns
    -------
    DataFrame
        One row per seed x budget x method: ``protocol, seed, budget, method, accuracy,
        mean_cost`` (tokens per test query, expected over the knob mix), ``knob_low,
        knob_high, mix``, ``n_test``; plus one ``full`` row per seed (budget NaN): one trace
        thought to its end. ``accuracy`` is NaN where the budget is below the family's
        cheapest setting.
    """
    if protocol not in ("held-out", "in-sample"):
        raise ValueError(
            "The 'protocol' parameter of evaluate_thinking must be 'held-out' or 'in-sample'. "
            f"Got {protocol!r} instead."
        )
    unknown = [m for m in methods if m not in EXIT_METHODS]
    if unknown:
        raise ValueError(
            f"The 'methods' parameter of evaluate_thinking must name methods of "
            f"{', '.join(EXIT_METHODS)}. Got {unknown[0]!r}."
        )
    budget_list = [check_budget(b, "evaluate_thinking") for b in budgets]
    traces = log.traces(model)
    per_query = np.bincount(traces.row, minlength=traces.qids.size)
    if protocol == "held-out" and per_query.min() < 2:
        i = int(np.argmin(per_query))
        raise ValueError(
            "The held-out protocol of evaluate_thinking needs at least 2 traces per query; "
            f"query {traces.qids[i]!r} has {int(per_query[i])}. Use protocol='in-sample'."
        )
    chosen = [m for m in methods if m != "conf" or log.has_confidence]
    rows: list[dict[str, object]] = []
    for seed in range(seeds):
        rows += _one_seed(log, traces, budget_list, seed, protocol, chosen)
    return pd.DataFrame(rows)


def _one_seed(
    log: CheckpointLog,
    traces: Traces,
    budgets: list[float],
    seed: int,
    protocol: str,
    methods: list[str],
) -> list[dict[str, object]]:
    n_rows = traces.qids.size
    split = split_queries(n_rows, seed=seed)
    half_a, half_b = _halves(traces, protocol, seed)
    part = np.full(n_rows, -1, dtype=np.int64)
    part[split.train], part[split.calibration], part[split.test] = 0, 1, 2
    return _rule_rows(log, traces, budgets, seed, protocol, methods, part, half_a, half_b)


def thinking_rows(
    log: CheckpointLog,
    budgets: Sequence[float],
    *,
    seed: int,
    protocol: str,
    train: Sequence[str],
    calibration: Sequence[str],
    test: Sequence[str],
    half_a: pd.Series | None = None,
    methods: Sequence[str] = EXIT_METHODS,
) -> list[dict[str, object]]:
    """The early-exit rules on a given query split and sample halves (one seed).

    What :func:`computealloc.evaluation.evaluate` calls on a checkpoint log, so that the
    rules read exactly its train / calibration / test queries and its sample halves.

    Parameters
    ----------
    log : CheckpointLog
        A single-model checkpoint log.
    budgets : sequence of float
        Mean tokens per query, each > 0.
    seed : int
        Seed of the learned rule's classifiers (and the ``seed`` column).
    protocol : {"held-out", "in-sample"}
        The protocol, for the ``protocol`` column.
    train, calibration, test : sequence of str
        Query ids of each part; queries in none of them are not read.
    half_a : Series of bool, optional
        Indexed by ``(query_id, sample_idx)``: True for the traces of half A (fitting and
        calibration), False for half B (reported numbers); None uses every trace for both
        (in-sample). A trace missing from the index is read by neither.
    methods : sequence of str
        From :data:`EXIT_METHODS`; ``conf`` is left out when the log has no confidences.

    Returns
    -------
    list of dict
        The rows of :func:`evaluate_thinking` for this seed, its ``full`` row named
        :data:`FULL_METHOD`.
    """
    traces = log.traces()
    qids = pd.Index(traces.qids.astype(str))
    part = np.full(qids.size, -1, dtype=np.int64)
    for code, ids in enumerate((train, calibration, test)):
        at = qids.get_indexer(pd.Index([str(q) for q in ids]))
        part[at[at >= 0]] = code
    if half_a is None:
        everything = np.ones(traces.n_traces, dtype=bool)
        halves = (everything, everything)
    else:
        keys = pd.MultiIndex.from_arrays([qids[traces.row], traces.sample_idx])
        index = pd.MultiIndex.from_arrays(
            [
                half_a.index.get_level_values(0).astype(str),
                half_a.index.get_level_values(1).astype(np.int64),
            ]
        )
        known = pd.Series(half_a.to_numpy(), index=index).reindex(keys)  # NaN: in neither
        halves = (known.eq(True).to_numpy(), known.eq(False).to_numpy())
    chosen = [m for m in methods if m != "conf" or log.has_confidence]
    rows = _rule_rows(log, traces, list(budgets), seed, protocol, chosen, part, *halves)
    for row in rows:
        if row["method"] == "full":
            row["method"] = FULL_METHOD
    return rows


def _rule_rows(
    log: CheckpointLog,
    traces: Traces,
    budgets: list[float],
    seed: int,
    protocol: str,
    methods: list[str],
    part: Int,
    half_a: Bool,
    half_b: Bool,
) -> list[dict[str, object]]:
    """Every rule on one split: ``part`` is 0/1/2 (train/calibration/test) per query, else -1."""
    n_rows = traces.qids.size
    train = traces.subset(half_a & (part[traces.row] == 0))
    cal = traces.subset(half_a & (part[traces.row] == 1))
    test = traces.subset(half_b & (part[traces.row] == 2))
    prompts = prompt_matrix(log, traces) if "learned-exit" in methods else None
    learned = LearnedExit(random_state=seed).fit(train, prompts) if prompts is not None else None
    base = {"protocol": protocol, "seed": seed, "n_test": int((part == 2).sum())}
    full = arm_outcomes(test, "full")
    rows: list[dict[str, object]] = [
        {
            **base,
            "budget": np.nan,
            "method": "full",
            "accuracy": float(np.nanmean(_per_query(test, full.correct.astype(float), n_rows))),
            "mean_cost": float(np.nanmean(_per_query(test, full.tokens, n_rows))),
        }
    ]
    for name in methods:
        gains = (
            (learned.gain(train, prompts), learned.gain(cal, prompts), learned.gain(test, prompts))
            if name == "learned-exit" and learned is not None
            else (None, None, None)
        )
        knobs = _knobs(name, log, train, gains[0])
        on_cal = _family(name, cal, knobs, gains[1])
        on_test = _family(name, test, knobs, gains[2])
        cal_cost = np.array([np.nanmean(_per_query(cal, o.tokens, n_rows)) for o in on_cal])
        test_acc = np.array(
            [np.nanmean(_per_query(test, o.correct.astype(float), n_rows)) for o in on_test]
        )
        test_cost = np.array([np.nanmean(_per_query(test, o.tokens, n_rows)) for o in on_test])
        for budget in budgets:
            c = calibrate_knob(cal_cost, budget)
            if c is None:
                rows.append({**base, "budget": budget, "method": name, "accuracy": np.nan})
                continue
            w = c.mix
            rows.append(
                {
                    **base,
                    "budget": budget,
                    "method": name,
                    "accuracy": float((1 - w) * test_acc[c.low] + w * test_acc[c.high]),
                    "mean_cost": float((1 - w) * test_cost[c.low] + w * test_cost[c.high]),
                    "knob_low": float(knobs[c.low]),
                    "knob_high": float(knobs[c.high]),
                    "mix": w,
                }
            )
    return rows


# --------------------------------------------------------------------------- the bar


def _reach(cost: Float, acc: Float, target: float) -> float:
    """Smallest cost at which the piecewise-linear curve (sorted by cost) reaches ``target``."""
    order = np.argsort(cost)
    cost, acc = cost[order], acc[order]
    hit = np.flatnonzero(acc >= target)
    if hit.size == 0:
        return np.nan
    j = int(hit[0])
    if j == 0:
        return float(cost[0])
    frac = (target - acc[j - 1]) / (acc[j] - acc[j - 1])
    return float(cost[j - 1] + frac * (cost[j] - cost[j - 1]))


def thinking_verdict(results: pd.DataFrame, *, share: float = 0.35) -> pd.DataFrame:
    """Issue 16's bar per method, on the means over seeds of :func:`evaluate_thinking` rows.

    Parameters
    ----------
    results : DataFrame
        :func:`evaluate_thinking` output (or any frame with its columns; extra methods, such as
        the per-query policies of :func:`computealloc.evaluation.evaluate` with
        ``cost="tokens"`` renamed to these columns, are judged alike).
    share : float
        The bar's share of full thinking's mean tokens.

    Returns
    -------
    DataFrame
        One row per method: ``tokens_to_full`` (mean tokens at which its accuracy curve over
        the budgets first reaches full thinking's accuracy, linear between budgets; NaN if
        never), ``share_of_full`` (that over full thinking's mean tokens), ``reaches_full``
        (share_of_full <= ``share``), ``wins_vs_cap`` (budgets where its accuracy beats the
        uniform cap's at the same realised mean tokens, the cap's curve interpolated),
        ``budgets`` (budgets compared), ``min_gain_vs_cap`` (smallest such accuracy gain).
    """
    mean = results.groupby(["method", "budget"], dropna=False)[["accuracy", "mean_cost"]].mean()
    mean = mean.reset_index()
    full = mean[mean["method"] == "full"]
    full_acc, full_cost = float(full["accuracy"].iloc[0]), float(full["mean_cost"].iloc[0])
    cap = mean[(mean["method"] == "uniform-cap") & mean["accuracy"].notna()].sort_values(
        "mean_cost"
    )
    out = []
    for method, group in mean[mean["method"] != "full"].groupby("method", sort=False):
        group = group[group["accuracy"].notna()]
        cost, acc = group["mean_cost"].to_numpy(), group["accuracy"].to_numpy()
        reach = _reach(cost, acc, full_acc) if len(group) else np.nan
        inside = (cost >= cap["mean_cost"].min()) & (cost <= cap["mean_cost"].max())
        cap_acc = np.interp(cost[inside], cap["mean_cost"], cap["accuracy"])
        gains = acc[inside] - cap_acc
        out.append(
            {
                "method": method,
                "tokens_to_full": reach,
                "share_of_full": reach / full_cost,
                "reaches_full": bool(reach / full_cost <= share),
                "wins_vs_cap": int((gains > 0).sum()),
                "budgets": int(inside.sum()),
                "min_gain_vs_cap": float(gains.min()) if gains.size else np.nan,
            }
        )
    frame = pd.DataFrame(out)
    frame.attrs.update(full_accuracy=full_acc, full_tokens=full_cost)
    return frame


def tokens_to_full(
    summary: pd.DataFrame, protocol: str, *, share: float = BAR_SHARE
) -> pd.DataFrame:
    """Mean tokens at which each method reaches full thinking's accuracy, on an evaluation.

    Parameters
    ----------
    summary : DataFrame
        :meth:`computealloc.evaluation.EvaluationResult.summary` of an evaluation of a
        checkpoint log with ``cost="tokens"`` (columns ``protocol, budget, method, accuracy,
        mean_cost``, means over seeds), including the :data:`FULL_METHOD` row.
    protocol : str
        The protocol to read.
    share : float
        The bar's share of full thinking's mean tokens.

    Returns
    -------
    DataFrame
        One row per budgeted method (order of ``summary``): ``method``, ``tokens_to_full``
        (the realised mean tokens at which its accuracy-vs-tokens curve over the budgets,
        sorted by tokens and linear between them, first reaches :data:`FULL_METHOD`'s
        accuracy; the first point's tokens when it starts above; NaN if it never does),
        ``share_of_full`` (that over full thinking's mean tokens), ``meets_bar``
        (``share_of_full <= share``), ``wins_vs_cap`` and ``compared_vs_cap`` (of its points
        inside ``uniform-cap``'s range of mean tokens, how many beat ``uniform-cap``'s
        accuracy curve read at the same mean tokens, and how many there are; 0 and 0 for
        ``uniform-cap`` itself or without it). ``attrs`` holds ``full_accuracy``,
        ``full_tokens``, ``share`` and ``max_tokens`` (the largest mean tokens evaluated).
        Empty without a :data:`FULL_METHOD` row.
    """
    part = summary[summary["protocol"] == protocol]
    full = part[part["method"] == FULL_METHOD]
    columns = [
        "method",
        "tokens_to_full",
        "share_of_full",
        "meets_bar",
        "wins_vs_cap",
        "compared_vs_cap",
    ]
    if full.empty:
        return pd.DataFrame(columns=columns)
    full_acc, full_tokens = float(full["accuracy"].iloc[0]), float(full["mean_cost"].iloc[0])
    curves = part[part["budget"].notna() & part["accuracy"].notna()]
    cap = curves[curves["method"] == "uniform-cap"].sort_values("mean_cost")
    cap_cost, cap_acc = cap["mean_cost"].to_numpy(np.float64), cap["accuracy"].to_numpy()
    out = []
    for method, group in curves.groupby("method", sort=False):
        cost = group["mean_cost"].to_numpy(np.float64)
        acc = group["accuracy"].to_numpy(np.float64)
        reach = _reach(cost, acc, full_acc)
        inside = np.zeros(cost.size, dtype=bool)
        if cap_cost.size and method != "uniform-cap":
            inside = (cost >= cap_cost[0]) & (cost <= cap_cost[-1])
        wins = acc[inside] > np.interp(cost[inside], cap_cost, cap_acc) if inside.any() else inside
        out.append(
            {
                "method": method,
                "tokens_to_full": reach,
                "share_of_full": reach / full_tokens,
                "meets_bar": bool(reach / full_tokens <= share),
                "wins_vs_cap": int(wins.sum()),
                "compared_vs_cap": int(inside.sum()),
            }
        )
    frame = pd.DataFrame(out, columns=columns)
    frame.attrs.update(
        full_accuracy=full_acc,
        full_tokens=full_tokens,
        share=share,
        max_tokens=float(curves["mean_cost"].max()) if len(curves) else np.nan,
    )
    return frame
