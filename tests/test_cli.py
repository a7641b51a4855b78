"""The `computealloc` command: exit codes and printed payloads (typer's CliRunner)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from computealloc.cli import app
from computealloc.estimation.table import OutcomeTable
from conftest import needs_data

runner = CliRunner()


def _log(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    rows = []
    for q in range(30):
        for s in range(8):
            ok = bool(rng.random() < 0.3 + 0.02 * q)
            rows.append(
                {
                    "query_id": f"q{q}",
                    "sample_idx": s,
                    "prompt": f"What is {q} + {q}?",
                    "answer": str(2 * q) if ok else str(int(rng.integers(0, 3))),
                    "gold": str(2 * q),
                    "response": f"The answer is {2 * q if ok else 1}.",
                    "mode": "long" if s >= 4 else "short",
                }
            )
    path = tmp_path / "log.jsonl"
    pd.DataFrame(rows).to_json(path, orient="records", lines=True)
    return path


def test_estimate_writes_a_loadable_table(tmp_path: Path) -> None:
    out = tmp_path / "t.parquet"
    res = runner.invoke(
        app, ["estimate", str(_log(tmp_path)), "--actions", "majority@1,majority@4", "-o", str(out)]
    )
    assert res.exit_code == 0, res.output
    table = OutcomeTable.load(out)
    assert table.actions == ("majority@1", "majority@4")
    assert table.n_queries == 30
    assert "majority@4" in res.output


def test_bad_log_exits_2_naming_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("query_id,answer\nq1,3\n")
    res = runner.invoke(app, ["inspect", str(bad)])
    assert res.exit_code == 2
    assert "bad.csv" in res.output and "sample_idx" in res.output


def test_unknown_action_kind_exits_2(tmp_path: Path) -> None:
    res = runner.invoke(
        app, ["estimate", str(_log(tmp_path)), "--actions", "foo@3", "-o", str(tmp_path / "t")]
    )
    assert res.exit_code == 2
    assert "Unknown action kind 'foo'" in res.output


def test_ibpo_respects_the_share_cap(tmp_path: Path) -> None:
    out = tmp_path / "sft.jsonl"
    res = runner.invoke(
        app,
        [
            "ibpo",
            str(_log(tmp_path)),
            "--group-col",
            "mode",
            "--max-share",
            "long=0.2",
            "--batch-size",
            "10",
            "-o",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert records and all(r["weight"] == 1.0 for r in records)
    batches = pd.DataFrame(records).groupby("batch")["group"]
    assert (batches.apply(lambda g: (g == "long").sum()) <= 2).all()


def test_ibpo_bad_share_is_a_usage_error(tmp_path: Path) -> None:
    res = runner.invoke(
        app,
        [
            "ibpo",
            str(_log(tmp_path)),
            "--group-col",
            "mode",
            "--max-share",
            "long",
            "-o",
            str(tmp_path / "x.jsonl"),
        ],
    )
    assert res.exit_code == 2
    assert not (tmp_path / "x.jsonl").exists()


@needs_data
def test_inspect_prints_the_readme_figures() -> None:
    res = runner.invoke(app, ["inspect", "mot_cascade:llama-2-13b/gsm/pot2", "--repeats", "keep"])
    assert res.exit_code == 0, res.output
    # README row: questions 400, samples 24, single 0.3288, majority 0.4175, all-agree 0.0800
    for figure in ("400", "24", "0.3288", "0.4175", "0.0800"):
        assert figure in res.output
    distinct = runner.invoke(app, ["inspect", "mot_cascade:llama-2-13b/gsm/pot2"])
    assert "10.0000" in distinct.output  # each of the 10 distinct generations once


@needs_data
def test_collect_by_replay_reproduces_the_log(tmp_path: Path) -> None:
    queries = tmp_path / "q.jsonl"
    queries.write_text(
        json.dumps(
            {
                "query_id": "date-0000",
                "prompt": "Yesterday was April 30, 2021. What is the date today in MM/DD/YYYY?",
                "gold": "05/01/2021",
            }
        )
        + "\n"
    )
    out = tmp_path / "log.jsonl"
    res = runner.invoke(
        app,
        [
            "collect",
            str(queries),
            "--replay",
            "mot_cascade:gpt-3.5-turbo/date/cot1",
            "-n",
            "4",
            "-o",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["sample_idx"] for r in rows] == [0, 1, 2, 3]


def test_datasets_list_names_every_source() -> None:
    res = runner.invoke(app, ["datasets", "list"])
    assert res.exit_code == 0
    for name in ("mot_cascade", "routellm", "zeroeval_gsm8k", "routerdc"):
        assert name in res.output


@pytest.mark.parametrize(
    "command", ["estimate", "solve", "inspect", "collect", "ibpo", "fit", "evaluate", "serve"]
)
def test_every_command_has_help_with_an_example(command: str) -> None:
    res = runner.invoke(app, [command, "--help"])
    assert res.exit_code == 0
    assert "Example" in res.output


def test_solve_meets_the_budget_and_writes_actions(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    p = np.sort(rng.random((50, 3)), axis=1)
    OutcomeTable(p, np.tile([1.0, 2.0, 4.0], (50, 1)), ["m@1", "m@2", "m@4"]).save(
        tmp_path / "t.parquet"
    )
    out = tmp_path / "a.csv"
    res = runner.invoke(
        app, ["solve", str(tmp_path / "t.parquet"), "--budget", "2.5", "--certify", "-o", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert "mean cost 2.5000" in res.output and "integer optimum" in res.output
    frame = pd.read_csv(out)
    cost = (frame["weight"] * np.array([1.0, 2.0, 4.0])[frame["action_index"]]).sum() / 50
    assert cost == pytest.approx(2.5, rel=1e-9)


def test_solve_infeasible_budget_exits_2(tmp_path: Path) -> None:
    OutcomeTable([[0.5, 0.6]], [[1.0, 2.0]]).save(tmp_path / "t.parquet")
    res = runner.invoke(app, ["solve", str(tmp_path / "t.parquet"), "--budget", "0.5"])
    assert res.exit_code == 2
    assert "The budget 0.5 of solve is infeasible" in res.output


def test_fit_writes_a_loadable_policy(tmp_path: Path) -> None:
    from computealloc.fitting.persist import load_policy

    out = tmp_path / "policy.json"
    res = runner.invoke(
        app,
        [
            "fit",
            str(_log(tmp_path)),
            "--budget",
            "2",
            "--method",
            "length",
            "--actions",
            "majority@1,majority@4",
            "-o",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    assert load_policy(out).actions_ == ("majority@1", "majority@4")
    assert "held-out test queries" in res.output


def test_fit_sequential_writes_a_servable_stopping_rule(tmp_path: Path) -> None:
    from computealloc.fitting.persist import load_file
    from computealloc.fitting.sequential import CalibratedStopping, LagrangianStopping

    out = tmp_path / "rule.json"
    args = ["fit", str(_log(tmp_path)), "--budget", "2", "--method", "sequential", "-o", str(out)]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    rule = load_file(out)
    assert isinstance(rule, CalibratedStopping) and isinstance(rule.low, LagrangianStopping)
    assert rule.budget == 2.0
    assert "stopping rule" in res.output and "samples per query" in res.output
    res = runner.invoke(app, [*args, "--cost", "tokens"])
    assert res.exit_code == 2
    assert "--actions, --cost, --price and --probe-m do not apply" in res.output


def test_evaluate_writes_results_and_report(tmp_path: Path) -> None:
    out = tmp_path / "ev"
    res = runner.invoke(
        app,
        [
            "evaluate",
            str(_log(tmp_path)),
            "--budgets",
            "2",
            "--seeds",
            "1",
            "--protocol",
            "in-sample",
            "--methods",
            "uniform,oracle",
            "--probe-m",
            "0",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    results = pd.read_csv(out / "results.csv")
    assert {"method", "protocol", "seed", "budget", "accuracy", "mean_cost"} <= set(results)
    assert set(results["method"]) >= {"uniform", "oracle"}
    assert "data:image/png;base64" in (out / "report.html").read_text()
    # the terminal shows the verdict, one line per budget, and where the full report is
    assert "verdict (in-sample protocol)" in res.output
    assert "B = 2: uniform — none of 0 methods beats it" in res.output
    assert f"full report -> {out / 'report.html'}" in res.output.replace("\n", "")


def test_evaluate_bad_budgets_exit_2(tmp_path: Path) -> None:
    res = runner.invoke(
        app, ["evaluate", str(_log(tmp_path)), "--budgets", "two", "--out", str(tmp_path / "x")]
    )
    assert res.exit_code == 2


def test_evaluate_warns_before_a_long_run_and_names_the_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from computealloc.evaluation import footprints

    monkeypatch.setattr(footprints, "STEP_S", 100.0)  # as if each step took 100 s
    args = ["evaluate", str(_log(tmp_path)), "--budgets", "2", "--seeds", "1"]
    res = runner.invoke(app, [*args, "--protocol", "in-sample", "--out", str(tmp_path / "ev")])
    assert res.exit_code == 0, res.output
    assert "warning: this evaluation will take about 1.7 min" in res.output
    assert "--seeds 1" in res.output and "fewer --budgets" in res.output
