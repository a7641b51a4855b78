"""Evaluate every source of the shared data and write ``docs/results.md``.

One command reproduces the document (a few minutes on 2 cores)::

    PYTHONPATH=src python scripts/make_results.py            # writes docs/results.md
    PYTHONPATH=src python scripts/make_results.py --out DIR  # also a full report per source

The data root is ``COMPUTEALLOC_DATA`` (default ``../shared/data``). Every number comes from
:func:`computealloc.evaluation.evaluate` (seeded query splits, both protocols where the data has
several samples per query) except the sanity check, which recomputes DESIGN's "What the data
already says" figures on all queries with :func:`computealloc.estimation.estimate.estimate` and
:func:`computealloc.estimation.oracle.solve`.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from computealloc.data import datasets
from computealloc.data.samples import SampleLog, read_samples
from computealloc.data.splits import split_samples
from computealloc.estimation.estimate import default_actions, estimate
from computealloc.estimation.oracle import solve
from computealloc.evaluation import METHODS, ROUTER, SEQUENTIAL, EvaluationResult, evaluate
from computealloc.evaluation.comparison import primary_protocol, verdict_lines
from computealloc.evaluation.report import accuracy_table, markdown_table, write_report
from computealloc.files import atomic_write
from computealloc.fitting.policies import mixed_mean
from computealloc.fitting.sequential import sequential_methods

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "results.md"
SEEDS = 3
LEARNED = ("length", "imitation", "value", "imitation+probe", "value+probe")
PAPER_GAIN, PAPER_IMITATION = 0.128, 0.91
#: computealloc's policies for the sequential bar (``length`` is a baseline heuristic).
COMPUTEALLOC = (
    *(m for m in METHODS if m.startswith(("imitation", "value"))),
    "sequential/pooled",
    "sequential/prior",
    "sequential",
)
SEQUENTIAL_BAR_FACTOR, PAPER_FACTOR = 3.0, 2.8
#: Budgets of the sequential curves (samples per query; those up to n/2 are used).
GRID = (1, 1.25, 1.5, 1.75, 2, 2.5, 3, 3.5, 4, 5, 6, 7, 8, 10, 12, 16, 20)
GRID_METHODS = [
    "uniform-majority",
    "adaptive-consistency",
    "esc",
    "sequential/pooled",
    "sequential/prior",
    "sequential",
]


@dataclass(frozen=True)
class Job:
    """One evaluation: a named log, how to narrow it, and evaluate's arguments."""

    label: str
    name: str
    group: str  # "math", "multi-sample" or "routing"
    kwargs: dict[str, Any] = field(default_factory=dict)
    narrow: Callable[[SampleLog], SampleLog] | None = None
    budgets_from: Callable[[SampleLog], tuple[float, ...]] | None = None
    actions_from: Callable[[SampleLog], str] | None = None


def first_sample_of_each_model(log: SampleLog) -> str:
    """``MODEL/majority@1`` per model (answers unknown: only single samples are meaningful)."""
    return ",".join(f"{m}/majority@1" for m in log.models)


def pareto_models(log: SampleLog) -> SampleLog:
    """The models on the accuracy-vs-mean-characters frontier, on queries all of them answer."""
    s = log.samples
    stats = (
        s.assign(ok=s["correct"].astype(float), c=pd.to_numeric(s["chars"], errors="coerce"))
        .groupby("model")
        .agg(acc=("ok", "mean"), chars=("c", "mean"))
        .sort_values("chars")
    )
    front = stats.index[stats["acc"] > stats["acc"].cummax().shift(fill_value=-1.0)]
    narrowed = log.subset(models=list(front))
    counts = narrowed.samples.groupby("query_id")["model"].nunique()
    return narrowed.subset(query_ids=counts.index[counts == len(front)].tolist())


def chars_budgets(log: SampleLog) -> tuple[float, ...]:
    """Four budgets between the cheapest and the dearest model's mean characters."""
    means = estimate(_chars_log(log), cost="tokens").C.mean(axis=0)
    lo, hi = float(means.min()), float(means.max())
    return tuple(round(lo + f * (hi - lo), 1) for f in (0.2, 0.4, 0.6, 0.8))


def _chars_log(log: SampleLog) -> SampleLog:
    from dataclasses import replace

    chars = pd.to_numeric(log.samples["chars"], errors="coerce").to_numpy(np.float64)
    return replace(log, samples=log.samples.assign(tokens=chars))


def jobs() -> list[Job]:
    """Every evaluation of the document, math sources first."""
    out = [
        Job("llama-2-13b gsm pot1", "mot_cascade:llama-2-13b/gsm/pot1", "math"),
        Job("llama-2-13b gsm pot2", "mot_cascade:llama-2-13b/gsm/pot2", "math"),
        Job("qwen2.5-math MATH (majority)", "qwen25math_rm_maj", "math"),
        Job(
            "qwen2.5-math MATH (majority + best-of by RM score)",
            "qwen25math_rm_maj",
            "math",
            {
                "actions_by_protocol": {
                    "in-sample": "majority@1,majority@2,majority@4,majority@8,"
                    "best_of@2,best_of@4,best_of@8",
                    "held-out": "majority@1,majority@2,majority@4,best_of@2,best_of@4",
                }
            },
        ),
    ]
    out += [
        Job(f"llama-2-13b date {p}", f"mot_cascade:llama-2-13b/date/{p}", "multi-sample")
        for p in ("cot1", "cot2", "pot1", "pot2")
    ]
    out += [
        Job(f"gpt-3.5 date {p}", f"mot_cascade:gpt-3.5-turbo/date/{p}", "multi-sample")
        for p in ("cot1", "cot2", "pot1", "pot2")
    ]
    out.insert(
        9,
        Job(
            "gpt-3.5 date cot1-40",
            "mot_cascade:gpt-3.5-turbo/date/cot1-40",
            "multi-sample",
            {"budgets": (1, 2, 4, 8, 16)},
        ),
    )
    share = {"budgets": (0.1, 0.3, 0.5, 0.7, 0.9), "protocols": ("in-sample",)}
    weak, strong = "mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"
    prices = {"prices": {weak: 0.0, strong: 1.0}}
    out += [
        Job("routellm gsm8k (Mixtral vs GPT-4)", "routellm:gsm8k", "routing", {**share, **prices}),
        Job("routellm mmlu (Mixtral vs GPT-4)", "routellm:mmlu", "routing", {**share, **prices}),
        Job(
            "zeroeval gsm8k (frontier models, chars)",
            "zeroeval_gsm8k",
            "routing",
            {"cost": "chars", "protocols": ("in-sample",)},
            pareto_models,
            chars_budgets,
        ),
        Job(
            "zeroeval MATH-L5 (frontier models, chars)",
            "zeroeval_math_l5",
            "routing",
            {"cost": "chars", "protocols": ("in-sample",)},
            pareto_models,
            chars_budgets,
        ),
        Job(
            "routerdc gsm8k-test (7 models, equal cost)",
            "routerdc:gsm8k-test",
            "routing",
            {"budgets": (1,)},
            actions_from=first_sample_of_each_model,
        ),
    ]
    return out


def run(job: Job) -> tuple[EvaluationResult, SampleLog, float]:
    """Evaluate one job; per-protocol action lists run as separate evaluations."""
    start = time.perf_counter()
    log = datasets.load(job.name)
    if job.narrow is not None:
        log = job.narrow(log)
    kwargs = dict(job.kwargs)
    if job.budgets_from is not None:
        kwargs["budgets"] = job.budgets_from(log)
    if job.actions_from is not None:
        kwargs["actions"] = job.actions_from(log)
    by_protocol = kwargs.pop("actions_by_protocol", None)
    if by_protocol is None:
        result = evaluate(log, seeds=SEEDS, **kwargs)
    else:
        parts = [
            evaluate(log, seeds=SEEDS, actions=acts, protocols=(p,), **kwargs)
            for p, acts in by_protocol.items()
        ]
        result = _merge(parts)
    return result, log, time.perf_counter() - start


def _merge(parts: list[EvaluationResult]) -> EvaluationResult:
    config = dict(parts[0].config)
    config["protocols"] = [p for part in parts for p in part.config["protocols"]]
    config["actions"] = {k: v for part in parts for k, v in part.config["actions"].items()}
    config["skipped"] = sorted({s for part in parts for s in part.config["skipped"]})
    return EvaluationResult(
        pd.concat([p.results for p in parts], ignore_index=True),
        pd.concat([p.queries for p in parts], ignore_index=True),
        pd.concat([p.routing for p in parts], ignore_index=True),
        config,
    )


# --------------------------------------------------------------------------- sanity check


#: DESIGN's runs: label -> (dataset name, stored-row filter, DESIGN's three figures).
DESIGN_RUNS: dict[str, tuple[str, dict[str, str], tuple[str, str, str]]] = {
    "Llama-2-13B GSM8K pot2": (
        "mot_cascade:llama-2-13b/gsm/pot2",
        {"model": "llama-2-13b", "dataset": "gsm", "prompt_style": "pot2", "variant": ""},
        ("0.374", "0.417", "0.399"),
    ),
    "Llama-2-13B Date cot1": (
        "mot_cascade:llama-2-13b/date/cot1",
        {"model": "llama-2-13b", "dataset": "date", "prompt_style": "cot1", "variant": ""},
        ("0.511", "0.582", "0.544"),
    ),
    "GPT-3.5 Date cot1 (40 samples)": (
        "mot_cascade:gpt-3.5-turbo/date/cot1-40",
        {"model": "gpt-3.5-turbo", "dataset": "date", "prompt_style": "cot1", "variant": "40"},
        ("0.639", "0.662 (2.8)", "0.656 (2.8)"),
    ),
}


@lru_cache(maxsize=1)
def _mot_cascade_rows() -> pd.DataFrame:
    columns = [
        "query_id",
        "sample_idx",
        "model",
        "dataset",
        "prompt_style",
        "variant",
        "answer",
        "correct",
        "prompt",
        "gold",
    ]
    return pd.read_csv(
        datasets.data_root() / "mot_cascade" / "samples.csv.gz",
        usecols=columns,
        dtype={"answer": "str", "gold": "str", "variant": "str"},
        keep_default_na=False,
        na_values={"answer": [""]},
    )


def stored_rows(where: dict[str, str]) -> SampleLog:
    """A mot_cascade run as stored in samples.csv.gz, repeated generations included."""
    frame = _mot_cascade_rows()
    for column, value in where.items():
        frame = frame[frame[column].astype(str) == value]
    keep = ["query_id", "sample_idx", "answer", "correct", "prompt", "gold"]
    return read_samples(frame[keep].reset_index(drop=True))


def _figures(log: SampleLog) -> tuple[float, Any, tuple[float, float]]:
    uniform = float(estimate(log, "majority@4").P.mean())
    inside = solve(estimate(log), 4.0)
    held = np.array([_held_out_oracle(log, seed) for seed in range(SEEDS)]).mean(axis=0)
    return uniform, inside, (float(held[0]), float(held[1]))


def design_figures() -> pd.DataFrame:
    """DESIGN's table recomputed exactly on all queries at B = 4: stored rows and distinct."""
    rows = []
    for label, (name, where, design) in DESIGN_RUNS.items():
        for kind, log in (("stored rows", stored_rows(where)), ("distinct", datasets.load(name))):
            uniform, inside, held = _figures(log)
            n = int(log.samples.groupby("query_id").size().min())
            rows.append(
                {
                    "run": label,
                    "samples per query": f"{n} ({kind})",
                    "uniform maj@4": f"{uniform:.3f}",
                    "oracle in-sample (cost)": f"{inside.accuracy:.3f} ({inside.cost:.1f})",
                    "oracle held-out, 3 seeds (cost)": f"{held[0]:.3f} ({held[1]:.1f})",
                    "DESIGN": " / ".join(design),
                }
            )
    return pd.DataFrame(rows)


def _held_out_oracle(log: SampleLog, seed: int) -> tuple[float, float]:
    half = split_samples(log.samples, seed=seed)
    actions = default_actions(log, "held-out")
    table_a = estimate(log.subset(sample_mask=half), actions)
    table_b = estimate(log.subset(sample_mask=~half), actions)
    allocation = solve(table_a, 4.0)
    return mixed_mean(allocation, table_b.P), mixed_mean(allocation, table_b.C)


# --------------------------------------------------------------------------- findings


def _pm(mean: float, se: float, pct: bool = False) -> str:
    if not np.isfinite(mean):
        return "–"
    if pct:
        return f"{100 * mean:+.1f}% ± {100 * se:.1f}" if np.isfinite(se) else f"{100 * mean:+.1f}%"
    return f"{mean:.3f} ± {se:.3f}" if np.isfinite(se) else f"{mean:.3f}"


def bar_rows(results: dict[str, EvaluationResult], labels: list[str]) -> pd.DataFrame:
    """Best learned policy under held-out at B = 4 (the bar) and B = 2: gap closed, cost.

    The best is chosen among learned policies whose mean realised cost is within 2% of B;
    the best without that condition is shown beside it.
    """
    rows = []
    for label in labels:
        result = results[label]
        res = result.results
        top_k = max(int(a.rpartition("@")[2]) for a in result.config["actions"]["held-out"])
        for budget in (4.0, 2.0):
            part = res[(res["protocol"] == "held-out") & (res["budget"] == budget)]
            rows.append(_bar_row(label, budget, part, top_k))
    return pd.DataFrame(rows)


def _bar_row(label: str, budget: float, part: pd.DataFrame, top_k: int) -> dict[str, Any]:
    keyed = part.groupby("method")[["accuracy", "mean_cost", "gap_closed"]]
    mean, sem, seeds = keyed.mean(), keyed.sem(), keyed.count()
    uni, ora = mean.loc["uniform", "accuracy"], mean.loc["oracle", "accuracy"]
    n_test = int(part["n_test"].iloc[0])
    learned = mean[mean.index.to_series().str.partition("/")[0].isin(LEARNED).to_numpy()]
    within = learned[(learned["mean_cost"] / budget - 1).abs() <= 0.02]
    row: dict[str, Any] = {
        "source": label,
        "B": f"{budget:g}",
        "largest held-out K": str(top_k),
        "uniform": f"{uni:.3f}",
        "honest oracle (cost)": f"{ora:.3f} ({mean.loc['oracle', 'mean_cost']:.2f})",
        "gap": f"{ora - uni:+.3f}",
    }
    by_acc = within["accuracy"].idxmax() if len(within) else None
    if by_acc is not None:
        acc = within.loc[by_acc, "accuracy"]
        row["most accurate learned, cost within 2%"] = (
            f"{by_acc}: {acc:.3f} ({100 * (acc / uni - 1):+.1f}% vs uniform)"
        )
    if ora - uni <= 1.0 / n_test:
        row["verdict"] = (
            f"no gap to close: the honest oracle is {ora - uni:+.3f} from uniform (one test "
            f"query is {1 / n_test:.3f})"
            + (
                f"; B = {budget:g} already buys the largest action (K = {top_k})"
                if budget >= top_k
                else ""
            )
        )
        return row
    has_gap = within[within["gap_closed"].notna()]
    best = has_gap["gap_closed"].idxmax() if len(has_gap) else None
    free = learned["gap_closed"].idxmax() if learned["gap_closed"].notna().any() else None
    if best is not None:
        closed, se = has_gap.loc[best, "gap_closed"], sem.loc[best, "gap_closed"]
        row["best gap closed, cost within 2% (seeds)"] = (
            f"{best}: {_pm(closed, se)} ({int(seeds.loc[best, 'gap_closed'])}) at cost "
            f"{mean.loc[best, 'mean_cost']:.3f}"
        )
        if budget == 4.0:
            row["verdict"] = "meets the bar" if closed >= 0.5 else "misses the bar"
        else:
            row["verdict"] = f"closes {'at least' if closed >= 0.5 else 'less than'} 50%"
    if free is not None and free != best:
        row["best gap closed, any cost"] = (
            f"{free}: {_pm(learned.loc[free, 'gap_closed'], sem.loc[free, 'gap_closed'])} at "
            f"cost {learned.loc[free, 'mean_cost']:.3f}"
        )
    return row


def claim_rows(results: dict[str, EvaluationResult]) -> pd.DataFrame:
    """Best relative gain over uniform (budget-matched) and imitation accuracy per source."""
    rows = []
    for label, result in results.items():
        s = result.summary()
        s = s[~s["budget"].map(lambda b, r=result: _trivial(r, b))]
        for protocol in result.config["protocols"]:
            part = s[s["protocol"] == protocol]
            learned = part[part["method"].str.partition("/")[0].isin(LEARNED)]
            matched = learned[learned["cost_error"] <= 0.02]
            gain = matched.loc[matched["rel_gain_vs_uniform"].idxmax()] if len(matched) else None
            imit = part[part["method"] == "imitation"]
            oracle = part[part["method"] == "oracle"]
            rows.append(
                {
                    "source": label,
                    "protocol": protocol,
                    "best learned gain vs uniform (method, B)": "–"
                    if gain is None
                    else f"{_pm(gain['rel_gain_vs_uniform'], gain['rel_gain_vs_uniform_se'], True)}"
                    f" ({gain['method']}, B={gain['budget']:g})",
                    "oracle gain, best B": _pm(oracle["rel_gain_vs_uniform"].max(), np.nan, True),
                    "imitation accuracy of `imitation` (min–max over B)": (
                        f"{imit['imitation_accuracy'].min():.2f}–"
                        f"{imit['imitation_accuracy'].max():.2f}"
                        if len(imit)
                        else "–"
                    ),
                }
            )
    return pd.DataFrame(rows)


def flatter_rows(results: dict[str, EvaluationResult]) -> pd.DataFrame:
    """How much the in-sample estimate flatters the oracle, per source at B = 2 and B = 4."""
    rows = []
    for label, result in results.items():
        protocols = result.config["protocols"]
        if "held-out" not in protocols or "in-sample" not in protocols:
            continue
        s = result.summary()
        for budget in sorted({2.0, 4.0} & set(s["budget"])) or [float(s["budget"].min())]:
            at = s[s["budget"] == budget].set_index(["protocol", "method"])["accuracy"]
            uni = at.loc[("held-out", "uniform")]
            honest = at.loc[("held-out", "oracle")]
            claimed = at.loc[("held-out", "oracle_in_sample")]
            gain_in = at.loc[("in-sample", "oracle")] - at.loc[("in-sample", "uniform")]
            rows.append(
                {
                    "source": label,
                    "B": f"{budget:g}",
                    "in-sample protocol: oracle − uniform": f"{gain_in:+.3f}",
                    "held-out: oracle read in-sample − uniform": f"{claimed - uni:+.3f}",
                    "held-out: honest oracle − uniform": f"{honest - uni:+.3f}",
                    "honest share of the in-sample gain": (
                        f"{(honest - uni) / gain_in:.0%}" if gain_in > 1e-9 else "–"
                    ),
                }
            )
    return pd.DataFrame(rows)


def routing_rows(results: dict[str, EvaluationResult]) -> pd.DataFrame:
    rows = []
    for label, result in results.items():
        r = result.routing
        if r.empty:
            continue
        g = r.groupby(["protocol", "method"], sort=False)[["apgr", "cpt50"]]
        mean, se = g.mean(), g.sem()
        for (protocol, method), row in mean.iterrows():
            rows.append(
                {
                    "source": label,
                    "protocol": protocol,
                    "method": method,
                    "APGR": _pm(row["apgr"], se.loc[(protocol, method), "apgr"]),
                    "CPT(50%)": _pm(row["cpt50"], se.loc[(protocol, method), "cpt50"]),
                }
            )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- document


def source_section(
    label: str, job: Job, result: EvaluationResult, log: SampleLog, seconds: float
) -> str:
    cfg = result.config
    lines = [
        f"### {label}",
        "",
        f"`{job.name}` — {log.samples['query_id'].nunique()} queries, models: "
        f"{', '.join(log.models)}; cost unit {cfg['cost']}"
        + (f", prices {cfg['prices']}" if cfg.get("prices") else "")
        + f"; budgets {', '.join(f'{b:g}' for b in cfg['budgets'])}; evaluated in {seconds:.0f} s.",
        "",
    ]
    if job.group == "routing":
        table = estimate(log, cfg["actions"]["in-sample"])
        means = table.P.mean(axis=0)
        best = int(np.argmax(means))
        singles = ", ".join(f"{a} {m:.3f}" for a, m in zip(table.actions, means, strict=True))
        lines += [
            f"Single actions on all queries: {singles}; "
            f"best single action {table.actions[best]} ({means[best]:.3f}). `uniform` mixes the "
            "actions whose mean costs bracket the budget, whatever their accuracy.",
            "",
        ]
    lines += [
        f"Verdict ({primary_protocol(result)}; best deployable method against uniform at equal "
        "realised cost, 95% CI over seeds and queries):",
        "",
        *(f"- {line}" for line in verdict_lines(result)),
        "",
    ]
    summary = result.summary()
    for protocol in cfg["protocols"]:
        lines += [
            f"Protocol **{protocol}** (actions: {', '.join(cfg['actions'][protocol])}). "
            "Test accuracy ± s.e. over 3 seeds (realised mean cost):",
            "",
            markdown_table(accuracy_table(summary, protocol)),
            "",
        ]
    return "\n".join(lines)


@dataclass(frozen=True)
class Curves:
    """Held-out sequential curves of one source on a fine budget grid (means over seeds).

    Attributes
    ----------
    half : int
        The largest held-out K (n / 2, the pool half).
    target, target_se : float
        Uniform majority@K on the test queries' report halves: mean and s.e. over seeds.
    curves : DataFrame
        ``method, budget, accuracy, mean_cost`` of :data:`GRID_METHODS` on the grid.
    """

    half: int
    target: float
    target_se: float
    curves: pd.DataFrame


def sequential_curves(log: SampleLog) -> Curves:
    """:func:`sequential_methods` over :data:`GRID` up to n/2, held-out, every seed.

    The split and halves are those of :func:`evaluate` for the same seeds, so the test
    queries are the ones every held-out row of the results is scored on.
    """
    half = int(log.samples.groupby("query_id").size().min()) // 2
    budgets = sorted({b for b in GRID if b <= half} | {float(half)})
    frame = pd.concat(
        [
            sequential_methods(log, budgets, seed=seed, protocol="held-out", methods=GRID_METHODS)
            for seed in range(SEEDS)
        ],
        ignore_index=True,
    )
    at_k = frame[(frame["method"] == "uniform-majority") & (frame["budget"] == half)]
    accs = at_k["accuracy"].to_numpy()
    curves = frame.groupby(["method", "budget"])[["accuracy", "mean_cost"]].mean().reset_index()
    return Curves(half, float(accs.mean()), float(accs.std(ddof=1) / np.sqrt(accs.size)), curves)


def _reach_cost(curve: pd.DataFrame, target: float) -> float:
    """Mean cost at which an accuracy-vs-cost curve first reaches ``target`` (NaN: never).

    The curve is the running maximum of accuracy over increasing cost, linear in between.
    """
    c = curve.sort_values("mean_cost")
    cost, acc = c["mean_cost"].to_numpy(), np.maximum.accumulate(c["accuracy"].to_numpy())
    target -= 1e-9  # the curve at the pool cap is majority@K up to rounding
    if acc.size == 0 or acc[-1] < target:
        return float("nan")
    j = int(np.searchsorted(acc, target, side="left"))
    if j == 0:
        return float(cost[0])
    frac = (target - acc[j - 1]) / (acc[j] - acc[j - 1])
    return float(cost[j - 1] + frac * (cost[j] - cost[j - 1]))


def _held_out_mean(result: EvaluationResult) -> pd.DataFrame:
    s = result.summary()
    return s[s["protocol"] == "held-out"]


def sequential_budget_rows(
    results: dict[str, EvaluationResult], halves: dict[str, Curves]
) -> pd.DataFrame:
    """Held-out, per source and matched budget 2 <= B <= n/2: computealloc vs AC and ESC."""
    rows = []
    for label, curves in halves.items():
        half = curves.half
        s = _held_out_mean(results[label])
        for budget in sorted(b for b in s["budget"].dropna().unique() if 2 <= b <= half):
            part = s[s["budget"] == budget].set_index("method")
            mine = part.loc[part.index.isin(COMPUTEALLOC)]
            best = str(mine["accuracy"].idxmax())

            def cell(m: str, part: pd.DataFrame = part) -> str:
                r = part.loc[m]
                return f"{_pm(r['accuracy'], r['accuracy_se'])} ({r['mean_cost']:.2f})"

            rival = max(part.loc["adaptive-consistency", "accuracy"], part.loc["esc", "accuracy"])
            diff = part.loc[best, "accuracy"] - rival
            rows.append(
                {
                    "source": label,
                    "B": f"{budget:g}",
                    "uniform": cell("uniform"),
                    "Adaptive-Consistency": cell("adaptive-consistency"),
                    "ESC": cell("esc"),
                    "computealloc `sequential`": cell("sequential"),
                    "best computealloc policy": f"{best}: {cell(best)}",
                    "best − max(AC, ESC)": f"{diff:+.3f}",
                    "holds": "yes" if diff >= 0 else "no",
                }
            )
    return pd.DataFrame(rows)


def sequential_factor_rows(
    results: dict[str, EvaluationResult], halves: dict[str, Curves]
) -> pd.DataFrame:
    """Samples needed to reach held-out majority@(n/2): computealloc's best, AC, ESC."""
    rows = []
    for label, grid in halves.items():
        half, target, target_se = grid.half, grid.target, grid.target_se
        s = _held_out_mean(results[label])
        fixed = s[s["budget"].notna() & ~s["method"].isin(SEQUENTIAL)]
        curves = {
            m: g
            for part in (fixed, grid.curves)
            for m, g in part.groupby("method")
            if m in COMPUTEALLOC
        }
        costs = {m: _reach_cost(g, target) for m, g in curves.items()}
        reached = {m: c for m, c in costs.items() if np.isfinite(c)}
        best = min(reached, key=lambda m: reached[m]) if reached else None
        pub = s[s["budget"].isna()].set_index("method")
        row: dict[str, Any] = {
            "source": label,
            "K = n/2": str(half),
            "majority@K": _pm(target, target_se),
            "3x needs ≤": f"{half / SEQUENTIAL_BAR_FACTOR:.2f}",
        }
        for name, method in (("AC", "adaptive-consistency"), ("ESC", "esc")):
            c = _reach_cost(grid.curves[grid.curves["method"] == method], target)
            row[f"{name} (calibrated)"] = (
                f"{c:.2f} ({half / c:.1f}x)" if np.isfinite(c) else "never"
            )
        for method in ("adaptive-consistency@0.95", "esc@5"):
            r = pub.loc[method]
            row[method] = f"{r['accuracy']:.3f} at {r['mean_cost']:.2f}"
        if best is None:
            row["best computealloc"] = "never reaches it within the budgets"
            row["bar (3x)"] = "no"
        else:
            factor = half / reached[best]
            row["best computealloc"] = f"{best}: {reached[best]:.2f} ({factor:.1f}x)"
            row["bar (3x)"] = "yes" if factor >= SEQUENTIAL_BAR_FACTOR else "no"
        row["peer needs fewer"] = _peer_fewer(row, reached[best] if best else np.inf)
        rows.append(row)
    return pd.DataFrame(rows)


def _peer_fewer(row: dict[str, Any], mine: float) -> str:
    """The calibrated peers that reach majority@K with fewer samples than computealloc."""
    names = [
        n
        for n in ("AC", "ESC")
        if row[f"{n} (calibrated)"] != "never" and float(row[f"{n} (calibrated)"].split()[0]) < mine
    ]
    return ", ".join(names) if names else "–"


def sequential_section(results: dict[str, EvaluationResult], halves: dict[str, Curves]) -> str:
    """The "Sequential allocation (issue bar)" section: both tables and their verdicts."""
    budget = sequential_budget_rows(results, halves)
    factor = sequential_factor_rows(results, halves)
    n_hold = int((budget["holds"] == "yes").sum())
    n_bar = int((factor["bar (3x)"] == "yes").sum())
    beaten = factor[factor["peer needs fewer"] != "–"]
    beaten_text = (
        "; ".join(f"{r['source']} ({r['peer needs fewer']})" for _, r in beaten.iterrows())
        if len(beaten)
        else "none"
    )
    misses = budget[budget["holds"] == "no"]
    miss_text = (
        "; ".join(
            f"{r['source']} B={r['B']} ({r['best − max(AC, ESC)']})" for _, r in misses.iterrows()
        )
        if len(misses)
        else "none"
    )
    return "\n".join(
        [
            "## Sequential allocation (issue bar)",
            "",
            "Held-out protocol, 3 seeds, the multi-sample sources. Every sequential method is "
            "budget-calibrated on the calibration queries' half A and replayed (64 seeded "
            "orders per query) on the test queries' half B, so a query has at most n/2 "
            "samples; the fixed-K policies read the same halves. Cells: accuracy ± s.e. over "
            "seeds (realised mean samples). The best computealloc policy is the most accurate "
            "of " + ", ".join(f"`{m}`" for m in COMPUTEALLOC) + " at that budget (a choice made "
            "on the test numbers, so optimistic; `sequential` alone is the pre-registered "
            "policy: the better of `sequential/pooled` and `sequential/prior` on the "
            "calibration queries).",
            "",
            f"**At least as accurate as calibrated Adaptive-Consistency and ESC at every matched "
            f"budget**: {n_hold} of {len(budget)} source × budget cells (2 ≤ B ≤ n/2). "
            f"Misses: {miss_text}.",
            "",
            markdown_table(budget),
            "",
            f"**Majority@(n/2) with at least {SEQUENTIAL_BAR_FACTOR:g}x fewer samples** (the "
            f"published Adaptive-Consistency average is {PAPER_FACTOR}x, in-sample with up to "
            f"40 samples): met on {n_bar} of {len(factor)} sources. Cost = the mean samples at "
            "which the policy's accuracy-vs-cost curve (mean over seeds, running maximum, "
            "linear in between) first reaches majority@(n/2) on the same test halves; the "
            "sequential methods are calibrated on a grid of budgets ("
            + ", ".join(f"{b:g}" for b in GRID)
            + ", up to n/2), the fixed-K policies read at the evaluated budgets. The published "
            "settings' columns give their accuracy at their mean samples. Why it is out of "
            "reach on most sources: under held-out K = n/2 is "
            "small (the Llama-2-13B runs have 10 distinct generations, so K = 5 and 3x means "
            "reaching majority@5 with ≤ 1.67 samples on average; Qwen has 8 samples, K = 4, "
            "≤ 1.33), so the saving available is bounded by K. On the GPT-3.5 runs (K = 10, "
            "20) the cap is not the limit: the curves come within one test query's accuracy "
            "(1/74) of majority@K by B = 4, so the factor turns on differences of a few "
            "thousandths between policies. The published 2.8x is measured in-sample against "
            "majority@40, where the cap leaves far more room. Sources where a calibrated peer "
            f"reaches majority@K with fewer samples than the best computealloc policy: "
            f"{beaten_text}.",
            "",
            markdown_table(factor),
            "",
        ]
    )


def header(total: float) -> str:
    return f"""# Results on the shared public data

Produced by `PYTHONPATH=src python scripts/make_results.py` ({time.strftime("%Y-%m-%d")},
{platform.machine()}, {os.cpu_count()} cores, {total / 60:.1f} min in all). Every learned policy
is fitted on 60% of the queries, calibrated on 20% and scored on the other 20%, for 3 seeds
(0, 1, 2); numbers are means ± standard errors over the seeds. Methods, protocols and metrics
are defined in `computealloc.evaluation` (module docstring); in short:

- **in-sample**: accuracies estimated from all samples of a query (the paper's protocol);
  **held-out**: decisions from one half of each query's samples, numbers from the other half.
- `uniform` spends the budget equally; `oracle` is solved on the test queries' decision table
  and read on the report table (under held-out: decide on half A, score on half B);
  `oracle_in_sample` is solved and read on the same table (what an in-sample evaluation would
  claim); `oracle+probe` also knows the probe answers.
- `length`, `imitation`, `value` use prompt features; `+probe` variants also read the answers
  of 2 probe samples per query, which are reused in the vote and charged once (majority@k
  costs max(k, 2) samples; the vote's accuracy given the probes is exact). Without a suffix a
  policy is calibrated on the calibration queries and decides each test query on its own
  (realised cost = what it spends); `/batch` allocates the test batch with the budget solved
  on its predicted scores (cost = budget exactly).
- Oracles are hindsight bounds (they see the outcomes of the queries they allocate); under
  held-out the honest oracle decides on half A and is scored on half B, so it is not an
  upper bound and can fall below uniform.
- Each source opens with a verdict per budget (`computealloc.evaluation.comparison`): the deployable
  method with the largest gain over uniform *at its realised cost* (uniform's curve read
  there), with a 95% interval over seeds and test queries, "not resolved" where it covers 0;
  methods more than 2% over the budget are not eligible and are flagged ⚠ in the tables.
- Answers vote together when the grader finds them the same answer (normalised strings,
  numbers at its tolerance, equality with the gold), never because both are labelled
  correct; several distinct correct answers of one query are separate votes.
- Budgets are in samples per query unless the source says otherwise.
"""


def document(
    results: dict[str, EvaluationResult],
    sections: list[str],
    total: float,
    halves: dict[str, Curves],
) -> str:
    """The Markdown of docs/results.md from every evaluation and its per-source section."""
    math = [j.label for j in jobs() if j.group == "math"]
    bar = bar_rows(results, math)
    return "\n".join(
        [
            header(total),
            findings(results, bar, {j.label: j.group for j in jobs()}),
            "## Sanity check: DESIGN's figures, recomputed exactly on all queries (B = 4)",
            "",
            "DESIGN measured by Monte Carlo on the rows as stored; the Llama-2-13B rows repeat "
            "generations (10 distinct per question), so the exact figures are given on the "
            "stored rows and on the distinct samples `datasets.load` returns. Default actions "
            "(majority@1, 2, 4, ... up to the smallest pool, or half of it under held-out).",
            "",
            markdown_table(design_figures()),
            "",
            "## The bar: best learned policy at B = 4, held-out, math sources, 3 seeds",
            "",
            "Means over 3 seeds. The bar asks for B = 4; B = 2 is shown as well because on "
            "these sources B = 4 is the largest action the held-out protocol allows (each "
            "query's distinct samples are split in halves).",
            "",
            markdown_table(bar),
            "",
            "## The paper's claims: +12.8% relative over uniform, > 91% imitation accuracy",
            "",
            "Best relative gain over uniform among learned policies whose realised cost is at "
            "most 2% over the budget (mean ± s.e. over seeds), the oracle's best gain, and the "
            "imitation accuracy of `imitation` (share of test queries given the action of the "
            "oracle it imitates) over the budgets above 1 sample.",
            "",
            markdown_table(claim_rows(results)),
            "",
            "## How much the in-sample protocol flatters the oracle",
            "",
            markdown_table(flatter_rows(results)),
            "",
            "## Routing metrics (RouteLLM): APGR and CPT(50%), two-model sources",
            "",
            markdown_table(routing_rows(results)),
            "",
            sequential_section(results, halves),
            "## Per source: methods × budgets × protocols",
            "",
            *sections,
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="also write a full report per source here")
    args = parser.parse_args()
    started = time.perf_counter()
    results: dict[str, EvaluationResult] = {}
    sections: list[str] = []
    halves: dict[str, Curves] = {}
    for job in jobs():
        result, log, seconds = run(job)
        results[job.label] = result
        held = result.results[result.results["protocol"] == "held-out"]
        if held["method"].isin(SEQUENTIAL).any():
            halves[job.label] = sequential_curves(log)
        sections.append(source_section(job.label, job, result, log, seconds))
        print(f"{job.label}: {seconds:.1f} s", flush=True)
        if args.out is not None:
            write_report(result, args.out / "".join(c if c.isalnum() else "_" for c in job.label))
    doc = document(results, sections, time.perf_counter() - started, halves)
    atomic_write(DOC, lambda fh: fh.write(doc))
    print(f"wrote {DOC} in {(time.perf_counter() - started) / 60:.1f} min")


def _cell(row: pd.Series, key: str) -> str:
    """A table cell as text, empty when missing."""
    value = row.get(key)
    return "" if value is None or pd.isna(value) or value == "nan" else str(value)


def _trivial(result: EvaluationResult, budget: float) -> bool:
    """Whether every query must take the cheapest action (B = 1 sample of the only model)."""
    cfg = result.config
    one_model = not any("/" in a for acts in cfg["actions"].values() for a in acts)
    return one_model and cfg["cost"] == "samples" and not cfg["prices"] and budget <= 1.0


def findings(
    results: dict[str, EvaluationResult], bar: pd.DataFrame, groups: dict[str, str]
) -> str:
    """Where the bar and the paper's claims hold, in sentences built from the tables."""
    lines = ["## Findings", ""]
    for _, row in bar[bar["B"] == "4"].iterrows():
        best = _cell(row, "best gap closed, cost within 2% (seeds)")
        detail = f" — {best}" if best else ""
        learned = _cell(row, "most accurate learned, cost within 2%")
        extra = f"; most accurate learned policy {learned}" if learned else ""
        lines.append(
            f"- **Bar, {row['source']}** (B = 4, held-out): {row['verdict']}{detail}{extra}."
        )
    at_two = [
        f"{row['source']}: {row['verdict']}"
        + (
            f" ({_cell(row, 'best gap closed, cost within 2% (seeds)')})"
            if _cell(row, "best gap closed, cost within 2% (seeds)")
            else ""
        )
        for _, row in bar[bar["B"] == "2"].iterrows()
    ]
    lines.append(
        "- **At B = 2**, where the held-out actions leave room above the budget: "
        + "; ".join(at_two)
        + ". The standard errors over 3 seeds are as large as the gaps (80 test queries)."
    )
    lines.append(
        "- Why the bar has no gap to close here: the Llama-2-13B runs store 24 (gsm) or 20 (date) "
        "generations per question, but only the first 10 are distinct (the rest repeat a prefix "
        "of them); `datasets.load` keeps the 10 distinct ones. Held-out halves then hold 5 "
        "samples, so majority@4 is the largest action and B = 4 already gives it to every "
        "query; the Qwen2.5-Math file has 8 samples (halves of 4), the same situation. An "
        "oracle deciding on 5 samples can only save compute at B = 4, and it saves it on the "
        "wrong queries often enough to fall below uniform. DESIGN's figures were measured on "
        "the duplicated rows (sanity check below)."
    )
    gains, imitation = [], []
    for label, result in results.items():
        if groups[label] == "routing":
            continue
        s = result.summary()
        s = s[~s["budget"].map(lambda b, r=result: _trivial(r, b))]
        learned = s[s["method"].str.partition("/")[0].isin(LEARNED) & (s["cost_error"] <= 0.02)]
        for protocol, part in learned.groupby("protocol"):
            best = part.loc[part["rel_gain_vs_uniform"].idxmax()]
            gains.append(
                (label, protocol, best["rel_gain_vs_uniform"], best["method"], best["budget"])
            )
        for protocol, part in s[s["method"] == "imitation"].groupby("protocol"):
            imitation.append(
                (
                    label,
                    protocol,
                    part["imitation_accuracy"].max(),
                    part["imitation_accuracy"].min(),
                )
            )
    reach = [g for g in gains if g[2] >= PAPER_GAIN]
    held = sorted((g for g in gains if g[1] == "held-out"), key=lambda g: -g[2])
    lines.append(
        f"- **+12.8% relative over uniform at matched budget** (sample-allocation sources, "
        f"learned policies within 2% of the budget): reached in {len(reach)} of {len(gains)} "
        "source × protocol cells"
        + (
            ": "
            + "; ".join(f"{g[0]} ({g[1]}, {g[3]}, B={g[4]:g}: {100 * g[2]:+.1f}%)" for g in reach)
            if reach
            else ""
        )
        + ". Best held-out gains: "
        + ", ".join(f"{g[0]} {100 * g[2]:+.1f}% ({g[3]}, B={g[4]:g})" for g in held[:6])
        + ". The oracle itself stays below +12.8% under held-out on most sources (table below); "
        "where majority voting saturates (GPT-3.5, Qwen) the win is compute, not accuracy."
    )
    over = [i for i in imitation if i[2] > PAPER_IMITATION]
    lines.append(
        f"- **> 91% imitation accuracy** (budgets above 1 sample): `imitation` exceeds it at "
        f"some budget in {len(over)} of {len(imitation)} source × protocol cells; its range over "
        "budgets is "
        + ", ".join(f"{i[0]} ({i[1]}) {i[3]:.2f}–{i[2]:.2f}" for i in imitation[:8])
        + ", …. It is high only where the oracle gives nearly every query the same action "
        "(a slack budget), which is not where the gains are."
    )
    flat = flatter_rows({k: v for k, v in results.items() if groups[k] != "routing"})
    if len(flat):
        parts = []
        for budget in ("2", "4"):
            share = flat.loc[flat["B"] == budget, "honest share of the in-sample gain"]
            values = pd.to_numeric(share.str.rstrip("%"), errors="coerce").dropna()
            if len(values):
                parts.append(
                    f"at B = {budget} a median {values.median():.0f}% (range "
                    f"{values.min():.0f}% to {values.max():.0f}%)"
                )
        lines.append(
            "- **In-sample flatters the oracle**: of the gain over uniform that the in-sample "
            "protocol reports for the oracle, the honest (held-out) oracle keeps "
            + "; ".join(parts)
            + " across the multi-sample sources. Selection bias is most of the in-sample "
            "oracle's advantage; at B = 4 with 5-sample halves it is all of it."
        )
    routed = routing_rows(results)
    if len(routed):

        def apgr(method: str) -> str:
            rows = routed[routed["method"] == method]
            return ", ".join(f"{r['source']} {r['APGR']}" for _, r in rows.iterrows())

        lines.append(
            "- **Routing** (in-sample oracle only; learned routers are still scored on unseen "
            f"queries): APGR of `value` {apgr('value')}; of the RouteLLM-style threshold "
            f"router `{ROUTER}` {apgr(ROUTER)}; against 0.5 for random routing."
        )
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
