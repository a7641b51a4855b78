"""`computealloc evaluate` on a checkpoint log: early-exit rules as methods, the thinking report.

One synthetic checkpoint log (800 queries x 4 traces) evaluated once, held-out, 2 seeds, in
tokens; the tests read that evaluation, its report and the CLI on a smaller log.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from computealloc.cli import app
from computealloc.data.checkpoint_synthetic import synthetic
from computealloc.data.checkpoints import CheckpointLog, checkpoint_summary, read_checkpoints
from computealloc.evaluation import METHODS, THINKING, EvaluationResult, evaluate
from computealloc.evaluation.comparison import compare, kind_of
from computealloc.evaluation.report import thinking_lines, thinking_table, write_report
from computealloc.evaluation.thinking import (
    BAR_SHARE,
    EXIT_METHODS,
    FULL_METHOD,
    evaluate_thinking,
    tokens_to_full,
)

SHARES = (0.2, 0.45, 0.9)  # budgets as shares of full thinking's mean tokens
SEEDS = 2
#: Calibrated on 160 calibration queries, read on 160 test queries: the realised mean tokens
#: (mean over seeds) of every rule is within this of the budget (heavy-tailed trace lengths).
COST_RTOL = 0.15


@pytest.fixture(scope="module")
def log() -> CheckpointLog:
    return synthetic(800, 4, 1)


@pytest.fixture(scope="module")
def budgets(log: CheckpointLog) -> list[float]:
    summary = checkpoint_summary(log)
    full = float(summary.loc[summary["action"] == "full", "mean_tokens"].iloc[0])
    return [round(s * full) for s in SHARES]


@pytest.fixture(scope="module")
def result(log: CheckpointLog, budgets: list[float]) -> EvaluationResult:
    return evaluate(
        log,
        budgets=budgets,
        seeds=SEEDS,
        protocols=("held-out",),
        methods=["uniform", "oracle", *THINKING],
        cost="tokens",
    )


@pytest.fixture(scope="module")
def report_dir(result: EvaluationResult, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("think")
    write_report(result, out)
    return out


def test_thinking_methods_are_registered_once() -> None:
    assert set(EXIT_METHODS) < set(THINKING) and FULL_METHOD in THINKING
    assert all(METHODS.count(m) == 1 for m in THINKING)
    assert kind_of("uniform-cap") == "baseline" and kind_of("learned-exit") == "learned"
    assert kind_of(FULL_METHOD) == "published"  # a fixed setting: never in the verdict


def test_every_rule_runs_at_every_seed_and_budget(
    result: EvaluationResult, budgets: list[float]
) -> None:
    res = result.results
    for method in EXIT_METHODS:
        part = res[res["method"] == method]
        assert sorted(set(zip(part["seed"], part["budget"], strict=True))) == sorted(
            (s, b) for s in range(SEEDS) for b in budgets
        ), method
        assert part["accuracy"].between(0, 1).all()
    full = res[res["method"] == FULL_METHOD]
    assert len(full) == SEEDS and full["budget"].isna().all()
    # the same test queries as the per-query methods of the same seed
    n_test = res.groupby(["seed", "method"])["n_test"].first().unstack()
    assert (n_test[list(THINKING)].to_numpy() == n_test[["uniform"]].to_numpy()).all()
    assert result.config["skipped"] == []


def test_rules_spend_the_budget_at_realised_cost(
    result: EvaluationResult, budgets: list[float]
) -> None:
    summary = result.summary()
    rules = summary[summary["method"].isin(EXIT_METHODS)]
    assert len(rules) == len(EXIT_METHODS) * len(budgets)
    np.testing.assert_allclose(rules["mean_cost"], rules["budget"], rtol=COST_RTOL)
    # compared with uniform at the rule's realised mean tokens, per seed: the gain is the
    # rule's accuracy minus uniform's curve (over its realised costs) read at that cost
    res = result.results
    comp = compare(result)
    for method in EXIT_METHODS:
        for budget in budgets:
            gains = []
            for seed in range(SEEDS):
                uni = res[(res["method"] == "uniform") & (res["seed"] == seed)]
                uni = uni.sort_values("mean_cost")
                mine = res[(res["method"] == method) & (res["seed"] == seed)]
                row = mine[mine["budget"] == budget].iloc[0]
                at = np.interp(row["mean_cost"], uni["mean_cost"], uni["accuracy"])
                gains.append(row["accuracy"] - at)
            got = comp[(comp["method"] == method) & (comp["budget"] == budget)]["gain"]
            assert float(got.iloc[0]) == pytest.approx(np.mean(gains), abs=1e-9)


def _recompute(summary: pd.DataFrame) -> tuple[dict[str, float], float]:
    """Tokens to reach full thinking's accuracy per method, from summary.csv, by hand."""
    full = summary[summary["method"] == FULL_METHOD].iloc[0]
    out = {}
    for method, group in summary[summary["budget"].notna()].groupby("method"):
        points = sorted(zip(group["mean_cost"], group["accuracy"], strict=True))
        reach = float("nan")
        for i, (cost, acc) in enumerate(points):
            if acc >= full["accuracy"]:
                if i == 0:
                    reach = cost
                else:
                    c0, a0 = points[i - 1]
                    reach = c0 + (full["accuracy"] - a0) / (acc - a0) * (cost - c0)
                break
        out[str(method)] = reach
    return out, float(full["mean_cost"])


def test_report_has_the_thinking_section(report_dir: Path) -> None:
    md = (report_dir / "report.md").read_text()
    assert "## How long to think" in md
    assert (report_dir / "thinking_frontier_held_out.png").stat().st_size > 10_000
    assert "thinking_frontier_held_out.png" in md
    assert (
        'alt="thinking_frontier_held_out.png" src="data:image/png;base64,'
        in (report_dir / "report.html").read_text()
    )
    summary = pd.read_csv(report_dir / "summary.csv")
    expected, full_tokens = _recompute(summary)
    assert any(np.isfinite(v) for v in expected.values())  # some method reaches it
    assert any(not np.isfinite(v) for v in expected.values())  # and some does not
    rows: dict[str, list[str]] = {}
    for line in md.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 5 and cells[0].split(" (")[0] in expected:
            rows.setdefault(cells[0].split(" (")[0], cells)
    assert set(rows) == set(expected)
    for method, reach in expected.items():
        _, tokens, share, bar, _ = rows[method]
        if np.isfinite(reach):
            assert float(tokens.replace(",", "")) == pytest.approx(reach, abs=0.5)
            assert share == f"{reach / full_tokens:.0%}"
            assert bar == ("met" if reach / full_tokens <= BAR_SHARE else "not met")
        else:
            assert tokens.startswith("not reached within ") and bar == "not met"


def test_terminal_lines_state_the_bar(result: EvaluationResult) -> None:
    lines = thinking_lines(result)
    reach = tokens_to_full(result.summary(), "held-out")
    assert lines[0].startswith(f"full thinking ({FULL_METHOD}, held-out): accuracy ")
    met = reach[reach["meets_bar"] & (reach["method"] != "oracle")]
    assert lines[-2] == (
        "bar (<= 35% of full thinking's tokens): "
        + (
            f"met by {', '.join(met['method'])}."
            if len(met)
            else "not met by any deployable method."
        )
    )
    both = met[met["wins_vs_cap"] >= 3]["method"].tolist()
    assert lines[-1].startswith("issue 16's bar (that, and beating uniform-cap at equal tokens")
    assert lines[-1].endswith(f"met by {', '.join(both)}." if both else "not met.")
    for method, tokens in zip(reach["method"], reach["tokens_to_full"], strict=True):
        if np.isfinite(tokens):
            assert any(ln.startswith(f"{method} reaches it at {tokens:,.0f} ") for ln in lines)


def test_tokens_to_full_on_a_hand_made_curve() -> None:
    summary = pd.DataFrame(
        {
            "protocol": "held-out",
            "method": ["a", "a", "b", "b", "c", "uniform-cap", "uniform-cap", FULL_METHOD],
            "budget": [100.0, 300.0, 100.0, 300.0, 100.0, 100.0, 300.0, np.nan],
            "accuracy": [0.5, 0.9, 0.4, 0.6, 0.8, 0.45, 0.65, 0.7],
            "mean_cost": [110.0, 310.0, 90.0, 280.0, 120.0, 100.0, 300.0, 1000.0],
        }
    )
    reach = tokens_to_full(summary, "held-out").set_index("method")
    assert reach.loc["a", "tokens_to_full"] == pytest.approx(210.0)  # halfway 110 -> 310
    assert reach["tokens_to_full"].isna().tolist() == [False, True, False, True]
    assert reach.loc["c", "tokens_to_full"] == 120.0  # starts above: its first point
    assert reach["meets_bar"].tolist() == [True, False, True, False]
    # against uniform-cap's curve (0.45 at 100 -> 0.65 at 300) inside 100..300 tokens: a's
    # 0.5 at 110 beats 0.46 (310 is outside); b's 0.6 at 280 loses to 0.63 (90 is outside)
    assert reach["wins_vs_cap"].tolist() == [1, 0, 1, 0]
    assert reach["compared_vs_cap"].tolist() == [1, 1, 1, 0]
    table = thinking_table(summary, "held-out")
    assert table.iloc[1].tolist() == [
        "b",
        "not reached within 310",
        "–",
        "not met",
        "0 of 1 budgets",
    ]
    assert table.iloc[0, 1:].tolist() == ["210", "21%", "met", "1 of 1 budgets"]
    assert table.iloc[3, -1] == "–"
    assert tokens_to_full(summary[summary["method"] != FULL_METHOD], "held-out").empty


def test_rules_need_tokens(log: CheckpointLog) -> None:
    small = synthetic(60, 4, 2)
    by_default = evaluate(
        small, budgets=[2.0], seeds=1, protocols=("held-out",), methods=None, probe_m=0
    )
    assert not set(THINKING) & set(by_default.results["method"])
    asked = evaluate(
        small,
        budgets=[2.0],
        seeds=1,
        protocols=("held-out",),
        methods=["uniform", "oracle", "stable"],
    )
    assert "stable" not in set(asked.results["method"])
    assert any("budgeted in tokens" in s for s in asked.config["skipped"])


def test_cli_evaluate_on_a_checkpoint_log(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.csv"
    synthetic(150, 4, 3).save(path)
    out = tmp_path / "run"
    args = ["evaluate", str(path), "--cost", "tokens", "--budgets", "800,1600", "--seeds", "1"]
    args += ["--protocol", "held-out", "--out", str(out)]
    args += ["--methods", "uniform,oracle," + ",".join(THINKING)]
    run = CliRunner().invoke(app, args)
    assert run.exit_code == 0, run.output
    text = re.sub(r"\s+", " ", run.output)
    assert f"full thinking ({FULL_METHOD}, held-out)" in text
    assert "bar (<= 35% of full thinking's tokens):" in text
    results = pd.read_csv(out / "results.csv")
    assert set(EXIT_METHODS) <= set(results["method"])


def test_rules_are_evaluate_thinkings_on_the_same_splits(
    log: CheckpointLog, budgets: list[float], result: EvaluationResult
) -> None:
    # evaluate's query split and sample halves coincide with evaluate_thinking's own (same
    # seeds, same sorted queries), so the rules' numbers are identical
    alone = evaluate_thinking(log, budgets, seeds=SEEDS, protocol="held-out")
    alone["method"] = alone["method"].replace({"full": FULL_METHOD})
    mine = result.results[result.results["method"].isin(THINKING)]
    both = alone.merge(mine, on=["seed", "budget", "method"], suffixes=("", "_evaluate"))
    assert len(both) == len(alone) == len(mine)
    np.testing.assert_allclose(both["accuracy"], both["accuracy_evaluate"], atol=1e-12)
    np.testing.assert_allclose(both["mean_cost"], both["mean_cost_evaluate"], atol=1e-9)


def test_conf_without_confidences_is_skipped_with_the_reason() -> None:
    frame = synthetic(60, 4, 4).to_frame().drop(columns=["confidence"])
    log = read_checkpoints(frame)
    result = evaluate(
        log,
        budgets=[900.0],
        seeds=1,
        protocols=("held-out",),
        methods=["uniform", "oracle", "conf", "stable"],
        cost="tokens",
    )
    assert "stable" in set(result.results["method"])
    assert "conf" not in set(result.results["method"])
    assert result.config["skipped"] == ["conf under held-out: the checkpoint log has no confidence"]
