"""write_report: every file written, the HTML self-contained, tables consistent with results."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from computealloc.data.samples import read_samples
from computealloc.evaluation import ROUTER, evaluate
from computealloc.evaluation.comparison import compare, verdict, verdict_lines
from computealloc.evaluation.report import (
    accuracy_table,
    headline_methods,
    markdown_table,
    metric_table,
    plot_compute_by_difficulty,
    published_table,
    write_report,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PUBLISHED = ["adaptive-consistency@0.95", "esc@5"]


def _log():
    rng = np.random.default_rng(0)
    n_q, n = 80, 8
    p = rng.beta(0.8, 0.8, n_q)
    q = np.repeat(np.arange(n_q), n)
    ok = rng.random(q.size) < p[q]
    return read_samples(
        pd.DataFrame(
            {
                "query_id": [f"q{i:03d}" for i in q],
                "sample_idx": np.tile(np.arange(n), n_q),
                "answer": np.where(ok, "0", rng.integers(1, 3, q.size).astype(str)),
                "correct": ok,
                "prompt": [" ".join(["w"] * (5 + i % 30)) for i in q],
                "gold": "0",
            }
        )
    )


@pytest.fixture(scope="module")
def result():
    methods = [
        "uniform",
        "random",
        "value",
        "value/batch",
        "value+probe",
        "oracle",
        "oracle_in_sample",
        *PUBLISHED,
        "adaptive-consistency",
        "esc",
        "sequential",
    ]
    return evaluate(_log(), budgets=(1, 2, 4), seeds=2, methods=methods)


@pytest.fixture(scope="module")
def written(result, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    return out, write_report(result, out)


def test_every_file_is_written(written):
    out, files = written
    expected = {
        "results.csv",
        "summary.csv",
        "comparison.csv",
        "report.md",
        "report.html",
        "accuracy_vs_cost_in_sample.png",
        "accuracy_vs_cost_held_out.png",
        "all_methods_in_sample.png",
        "all_methods_held_out.png",
        "compute_by_difficulty_in_sample.png",
        "compute_by_difficulty_held_out.png",
    }
    assert set(files) == expected
    assert {p.name for p in out.iterdir()} == expected
    for name in expected:
        if name.endswith(".png"):
            assert (out / name).read_bytes().startswith(PNG_MAGIC)


def test_results_csv_round_trips(written, result):
    out, _ = written
    frame = pd.read_csv(out / "results.csv")
    assert list(frame.columns[:7]) == [
        "source",
        "protocol",
        "seed",
        "budget",
        "method",
        "accuracy",
        "mean_cost",
    ]
    assert len(frame) == len(result.results)
    assert np.allclose(frame["accuracy"], result.results["accuracy"])


def test_html_is_self_contained(written):
    out, _ = written
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 6
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) == 6 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "<table" in page


def test_markdown_links_the_plots_and_tabulates_every_method(written, result):
    out, _ = written
    text = (out / "report.md").read_text()
    assert "![accuracy_vs_cost_held_out.png](accuracy_vs_cost_held_out.png)" in text
    for method in result.config["methods"]:
        label = f"{method} (hindsight bound)" if method.startswith("oracle") else method
        assert f"| {label} |" in text
    assert text.index("## Verdict") < text.index("## Details")  # the verdict comes first
    assert text.count("| oracle_in_sample (hindsight bound) |") == 1 + 3  # held-out only


def test_accuracy_table_cells_match_the_summary(result):
    summary = result.summary()
    table = accuracy_table(summary, "held-out")
    assert list(table.columns) == ["method", "B=1", "B=2", "B=4"]
    row = summary.query("protocol == 'held-out' and budget == 4 and method == 'oracle'").iloc[0]
    cell = table.set_index("method").loc["oracle (hindsight bound)", "B=4"]
    assert cell.startswith(f"{row['accuracy']:.3f} ± {row['accuracy_se']:.3f}")
    assert cell.endswith(f"({row['mean_cost']:.2f})")


def test_metric_table_has_one_row_per_method(result):
    table = metric_table(compare(result), "in-sample", 2.0)
    assert table["method"].tolist()[0] == "uniform"
    # in-sample, oracle_in_sample is the oracle: one row, not two
    assert len(table) == len(result.config["methods"]) - len(PUBLISHED) - 1
    assert "sequential" in table["method"].tolist()
    assert "gap closed" in table.columns


def test_published_settings_have_their_own_table(written, result):
    summary = result.summary()
    table = published_table(summary, "held-out")
    assert table["method"].tolist() == PUBLISHED
    row = summary.query("protocol == 'held-out' and method == 'esc@5'").iloc[0]
    cell = table.set_index("method").loc["esc@5"]
    assert cell["samples used"].startswith(f"{row['mean_cost']:.2f}")
    assert cell["accuracy"].startswith(f"{row['accuracy']:.3f}")
    assert "esc@5" not in accuracy_table(summary, "held-out")["method"].tolist()
    assert "Published stopping settings" in (written[0] / "report.md").read_text()


def test_headline_chart_shows_the_frontier_in_at_most_8_series(result):
    comparison = compare(result)
    for protocol in ("in-sample", "held-out"):
        shown = headline_methods(comparison, protocol)
        assert len(shown) <= 8 and shown[0] == "uniform" and shown[-1] == "oracle"
        assert len(set(shown)) == len(shown)
        winners = {v.method for v in verdict(comparison, protocol)} - {"uniform"}
        assert winners <= set(shown)


def test_report_opens_with_the_verdict(written, result):
    out, _ = written
    page = (out / "report.html").read_text()
    assert page.index("Verdict (held-out protocol)") < page.index("<img")
    assert page.index('<ul class="verdict">') < page.index("<details>")
    for line in verdict_lines(result):
        assert line.split(" — ")[0] in page


def test_difficulty_plot_skips_empty_bins(result):
    q = result.queries
    part = q[(q["protocol"] == "held-out") & (q["budget"] == 2)].copy()
    part["difficulty"] = np.where(part["difficulty"] < 0.5, 0.05, 0.95)  # bins 2-4 empty
    png = plot_compute_by_difficulty(part, "held-out", 2.0)
    assert png.startswith(PNG_MAGIC)
    assert plot_compute_by_difficulty(part.iloc[:0], "held-out", 2.0).startswith(PNG_MAGIC)


def test_markdown_table_format():
    text = markdown_table(pd.DataFrame({"a": ["1", "2"], "b": ["x", None], "c": [0.5, np.nan]}))
    assert text.splitlines() == [
        "| a | b | c |",
        "|---|---|---|",
        "| 1 | x | 0.5 |",
        "| 2 | – | – |",
    ]


def test_write_report_rejects_other_objects(tmp_path):
    with pytest.raises(TypeError, match="must be an EvaluationResult"):
        write_report(pd.DataFrame(), tmp_path)


def test_a_routing_report_shows_the_threshold_router(tmp_path):
    rng = np.random.default_rng(1)
    n_q = 120
    p = rng.beta(0.8, 0.8, n_q)
    frames = [
        pd.DataFrame(
            {
                "query_id": [f"q{i:03d}" for i in range(n_q)],
                "sample_idx": 0,
                "model": model,
                "answer": "0",
                "correct": rng.random(n_q) < np.clip(p + lift, 0, 1),
                "prompt": [" ".join(["w"] * (5 + i % 30)) for i in range(n_q)],
                "gold": "0",
            }
        )
        for model, lift in (("weak", 0.0), ("strong", 0.3))
    ]
    result = evaluate(
        read_samples(pd.concat(frames, ignore_index=True)),
        budgets=(0.25, 0.5),
        seeds=2,
        protocols="in-sample",
        methods=["uniform", "value", ROUTER, "oracle"],
        prices={"weak": 0.0, "strong": 1.0},
    )
    write_report(result, tmp_path)
    text = (tmp_path / "report.md").read_text()
    assert accuracy_table(result.summary(), "in-sample")["method"].tolist() == [
        "uniform",
        "value",
        ROUTER,
        "oracle (hindsight bound)",
    ]
    assert f"| in-sample | {ROUTER} |" in text  # the routing (APGR) table
    assert (tmp_path / "compute_by_difficulty_in_sample.png").read_bytes().startswith(PNG_MAGIC)
