"""compare / verdict: gains at equal realised cost, intervals, overspend, honest gap_closed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from computealloc.evaluation import EvaluationResult
from computealloc.evaluation.comparison import compare, kind_of, verdict, verdict_lines

QIDS = ["a", "b", "c", "d"]


def _result(
    method_acc: dict[str, list[list[float]]],
    method_cost: dict[str, list[float]],
    *,
    records: tuple[str, ...] = ("uniform", "value", "oracle", "length"),
) -> EvaluationResult:
    """Two seeds, budgets 1 and 2: per-query accuracies ``[seed*2 + budget_index]``."""
    rows, recs = [], []
    for seed in (0, 1):
        for j, budget in enumerate((1.0, 2.0)):
            for method, accs in method_acc.items():
                acc = np.asarray(accs[seed * 2 + j], dtype=float)
                cost = method_cost.get(method, [budget, budget])[j]
                rows.append(
                    {
                        "source": "t",
                        "protocol": "in-sample",
                        "seed": seed,
                        "budget": budget,
                        "method": method,
                        "accuracy": float(acc.mean()),
                        "mean_cost": cost,
                    }
                )
                if method in records:
                    recs.append(
                        pd.DataFrame(
                            {
                                "protocol": "in-sample",
                                "seed": seed,
                                "budget": budget,
                                "method": method,
                                "query_id": QIDS,
                                "cost": cost,
                                "accuracy": acc,
                                "difficulty": 0.5,
                            }
                        )
                    )
    config = {"protocols": ["in-sample"], "budgets": [1.0, 2.0], "seeds": [0, 1], "cost": "samples"}
    return EvaluationResult(pd.DataFrame(rows), pd.concat(recs), pd.DataFrame(), config)


UNIFORM = [[0, 0, 1, 1], [0, 1, 1, 1], [0, 0, 0, 1], [0, 0, 1, 1]]
ORACLE = [[1, 0, 1, 1], [1, 1, 1, 1], [0, 1, 0, 1], [1, 0, 1, 1]]


def test_uniform_is_its_own_reference():
    comp = compare(_result({"uniform": UNIFORM, "oracle": ORACLE}, {}))
    uni = comp[comp["method"] == "uniform"]
    assert (uni["gain"] == 0).all() and (uni["compute_saved"] == 0).all()
    assert not uni["resolved"].any()


def test_gain_is_read_on_uniforms_curve_at_the_realised_cost():
    # value spends 1.5 at B = 2: compared with uniform halfway between B = 1 and B = 2.
    value = [[0, 1, 1, 1], [1, 1, 1, 1], [0, 1, 1, 1], [1, 1, 1, 1]]
    comp = compare(
        _result({"uniform": UNIFORM, "value": value, "oracle": ORACLE}, {"value": [1, 1.5]})
    )
    row = comp[(comp["method"] == "value") & (comp["budget"] == 2)].iloc[0]
    u = np.array([np.mean(x) for x in UNIFORM])  # seed 0: B1, B2; seed 1: B1, B2
    expected = np.mean([1.0 - (u[0] + u[1]) / 2, 1.0 - (u[2] + u[3]) / 2])
    assert row["gain"] == pytest.approx(expected)
    assert row["uniform_at_cost"] == pytest.approx(1.0 - expected)
    # per-query paired s.e. pooled over seeds, or the seeds' spread: the wider
    d0 = np.array([1, 1, 1, 1]) - (np.array(UNIFORM[0]) + UNIFORM[1]) / 2
    d1 = np.array([1, 1, 1, 1]) - (np.array(UNIFORM[2]) + UNIFORM[3]) / 2
    se_q = np.sqrt(d0.var(ddof=1) / 4 + d1.var(ddof=1) / 4) / 2
    se_s = np.std([d0.mean(), d1.mean()], ddof=1) / np.sqrt(2)
    assert row["gain_se"] == pytest.approx(max(se_q, se_s))
    assert row["ci_low"] == pytest.approx(row["gain"] - 1.959963984540054 * row["gain_se"])


def test_overspending_is_flagged_and_never_the_verdict():
    better = [[1, 1, 1, 1]] * 4
    comp = compare(
        _result(
            {"uniform": UNIFORM, "length": better, "value": UNIFORM, "oracle": ORACLE},
            {"length": [1.05, 2.1]},
        )
    )
    length = comp[comp["method"] == "length"]
    assert length["overspend"].all()
    assert not comp[comp["method"] == "value"]["overspend"].any()
    assert all(v.method != "length" for v in verdict(comp, "in-sample"))


def test_gap_closed_only_where_the_gap_exceeds_its_standard_error():
    # at B = 1 the oracle gains in one seed and loses in the other: no resolved gap
    oracle = [[1, 0, 1, 1], [1, 1, 1, 1], [0, 0, 0, 0], [1, 0, 1, 1]]
    value = [[0, 1, 1, 1], [1, 1, 1, 1], [0, 1, 1, 1], [1, 1, 1, 1]]
    comp = compare(_result({"uniform": UNIFORM, "value": value, "oracle": oracle}, {}))
    at1 = comp[(comp["method"] == "value") & (comp["budget"] == 1)].iloc[0]
    assert at1["gap"] <= at1["gap_se"]
    assert np.isnan(at1["gap_closed"]) and "no gap above its s.e." in at1["gap_note"]
    at2 = comp[(comp["method"] == "value") & (comp["budget"] == 2)].iloc[0]
    assert at2["gap"] > at2["gap_se"]
    assert at2["gap_closed"] == pytest.approx(at2["gain"] / at2["gap"])


def test_verdict_says_not_resolved_when_the_interval_covers_zero():
    noisy = [[1, 0, 1, 1], [0, 1, 1, 1], [0, 0, 0, 1], [0, 1, 1, 1]]
    result = _result({"uniform": UNIFORM, "value": noisy, "oracle": ORACLE}, {})
    lines = verdict_lines(result)
    assert len(lines) == 2 and lines[0].startswith("B = 1: ")
    v = {x.budget: x for x in verdict(compare(result), "in-sample")}
    assert v[1.0].method == "value" and not v[1.0].resolved
    assert "not resolved" in lines[0]


def test_verdict_is_uniform_when_nothing_beats_it():
    worse = [[0, 0, 0, 1]] * 4
    result = _result({"uniform": UNIFORM, "value": worse, "oracle": ORACLE}, {})
    assert all(v.method == "uniform" for v in verdict(compare(result), "in-sample"))
    assert "none of 1 methods beats it" in verdict_lines(result)[0]


def test_kinds():
    assert [
        kind_of(m) for m in ("oracle", "uniform", "esc@5", "esc", "value/batch", "entropy")
    ] == [
        "bound",
        "baseline",
        "published",
        "peer",
        "learned",
        "rule",
    ]


def test_without_uniform_there_is_no_verdict_and_no_crash(tmp_path):
    from computealloc.evaluation.report import write_report

    result = _result({"value": UNIFORM, "oracle": ORACLE}, {})
    assert compare(result)["gain"].isna().all()
    assert verdict_lines(result) == [
        "No verdict: uniform was not among the methods evaluated (add it)."
    ]
    write_report(result, tmp_path)
    assert "No verdict" in (tmp_path / "report.md").read_text()


def test_budgets_that_buy_the_same_action_compare_without_nan():
    # uniform spends 1.0 at both budgets (the largest action costs 1): a flat curve end
    result = _result({"uniform": UNIFORM, "value": UNIFORM, "oracle": ORACLE}, {"uniform": [1, 1]})
    comp = compare(result)
    assert comp.loc[comp["method"] == "value", "gain"].notna().all()


@pytest.mark.parametrize(
    ("method", "says"),
    [
        ("value", "deploy value — "),
        ("value/batch", "deploy value/batch — "),  # fit writes value; allocate runs the batch
        ("random", "best random (evaluated only: `computealloc fit` cannot write it) — "),
        ("learned-exit", "best learned-exit (evaluated only"),
    ],
)
def test_verdict_deploys_only_what_fit_writes(method, says):
    better = [[1, 1, 1, 1]] * 4
    result = _result(
        {"uniform": UNIFORM, method: better, "oracle": ORACLE},
        {},
        records=("uniform", method, "oracle"),
    )
    lines = verdict_lines(result)
    assert {x.method for x in verdict(compare(result), "in-sample")} == {method}
    assert all(says in line for line in lines), lines
