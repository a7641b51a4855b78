"""Regression tests of issue 14 (hardening): one test per defect, named after it.

Items 1 (concurrent collect), 3 (rich markup), 4 (silent wraps and shrinks), 5 (path errors)
and 9 (CLI errors, choices, help, --map). The command runs through typer's CliRunner, or as
real processes where two must race.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from computealloc.cli import app
from computealloc.data.samples import SampleLogError, SampleLogWarning, read_samples

runner = CliRunner()
SRC = Path(__file__).resolve().parents[1] / "src"


def _rows(n_queries: int = 12, n_samples: int = 8, seed: int = 0) -> list[dict[str, object]]:
    rng = np.random.default_rng(seed)
    rows: list[dict[str, object]] = []
    for q in range(n_queries):
        for s in range(n_samples):
            ok = bool(rng.random() < 0.3 + 0.04 * q)
            rows.append(
                {
                    "query_id": f"q{q}",
                    "sample_idx": s,
                    "prompt": f"What is {q} + {q}?",
                    "answer": str(2 * q) if ok else "1",
                    "gold": str(2 * q),
                }
            )
    return rows


def _log(path: Path, rows: list[dict[str, object]] | None = None) -> Path:
    frame = pd.DataFrame(_rows() if rows is None else rows)
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_json(path, orient="records", lines=True)
    return path


def _queries(path: Path, count: int) -> Path:
    lines = [
        json.dumps({"query_id": f"q{i}", "prompt": f"What is {i} + {i}?", "gold": str(2 * i)})
        for i in range(count)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _text(output: str) -> str:
    """The output as one line: rich's panel borders and line breaks become single spaces."""
    return " ".join(output.replace("│", " ").split())


def _no_traceback(output: str) -> None:
    assert "Traceback" not in output and "──────── Traceback" not in output, output


# --------------------------------------------------------------------------- 1. concurrent collect


def _collect_process(queries: Path, out: Path, url: str) -> list[str]:
    script = "import sys; from computealloc.cli import app; sys.argv[0] = 'computealloc'; app()"
    args = ["collect", str(queries), "-o", str(out), "--base-url", url, "--model", "m"]
    return [sys.executable, "-c", script, *args, "-n", "3", "--seed", "0", "--concurrency", "1"]


def test_concurrent_collect_on_one_log_second_writer_exits_at_once(tmp_path: Path) -> None:
    pytest.importorskip("aiohttp")
    pytest.importorskip("uvicorn")
    from computealloc.data.collect import run_collect
    from fake_openai_server import make_app, running

    queries = _queries(tmp_path / "q.jsonl", 30)
    out, clean = tmp_path / "log.jsonl", tmp_path / "clean.jsonl"
    env = {**os.environ, "PYTHONPATH": str(SRC), "COLUMNS": "200"}
    with running(make_app(latency_s=0.4)) as url:  # the first run lasts ~12 s
        first = subprocess.Popen(
            _collect_process(queries, out, url),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 30
        while not (out.exists() and out.read_bytes().count(b"\n") >= 3):  # past the lock
            assert first.poll() is None and time.monotonic() < deadline, "first run ended early"
            time.sleep(0.01)
        second = subprocess.run(
            _collect_process(queries, out, url),
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert first.poll() is None, "the second run waited for the first instead of failing"
        first_output, _ = first.communicate(timeout=60)
    with running(make_app()) as fast:  # the same deterministic answers, without the latency
        args = {"n": 3, "base_url": fast, "model": "m", "seed": 0, "concurrency": 4}
        run_collect(queries, clean, **args)  # type: ignore[arg-type]
    assert second.returncode != 0
    message = " ".join(second.stdout.split())
    assert f"another collect is writing {out} (lock {out}.lock held)" in message, message
    _no_traceback(second.stdout + second.stderr)
    assert first.returncode == 0, first_output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 90 and len({(r["query_id"], r["sample_idx"]) for r in rows}) == 90
    assert out.read_bytes() == clean.read_bytes()


def test_collect_lock_is_held_from_before_the_log_is_read(tmp_path: Path) -> None:
    """While another process holds OUT.lock, collect refuses before reading or writing."""
    from computealloc.data.collect import LogLockedError, run_collect

    out = tmp_path / "log.jsonl"
    out.write_text("not a sample row\n")  # a read would fail with SampleLogError instead
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from filelock import FileLock; "
            "lock = FileLock(sys.argv[1]); lock.acquire(); print('held', flush=True); "
            "time.sleep(30)",
            f"{out}.lock",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        replay = _log(tmp_path / "replay.jsonl")
        with pytest.raises(LogLockedError, match="another collect is writing"):
            run_collect(_queries(tmp_path / "q.jsonl", 2), out, n=2, replay=replay)
    finally:
        holder.kill()
        holder.wait()
    assert out.read_text() == "not a sample row\n"


# --------------------------------------------------------------------------- 3. rich markup


def test_markup_in_log_values_never_turns_an_error_into_a_traceback(tmp_path: Path) -> None:
    rows = _rows()
    rows[1]["prompt"] = "[/x]"  # two prompts for q0: an error that quotes the value
    res = runner.invoke(app, ["inspect", str(_log(tmp_path / "log.jsonl", rows))])
    assert res.exit_code == 2, res.output
    assert "'[/x]'" in res.output and "error:" in res.output
    assert isinstance(res.exception, SystemExit)


def test_markup_in_model_names_is_shown_literally(tmp_path: Path) -> None:
    rows = [{**r, "model": "[bold red]maybe"} for r in _rows()]
    res = runner.invoke(app, ["inspect", str(_log(tmp_path / "log.jsonl", rows))])
    assert res.exit_code == 0, res.output
    assert "[bold red]maybe" in res.output


def test_markup_in_a_path_is_shown_literally(tmp_path: Path) -> None:
    res = runner.invoke(app, ["inspect", str(tmp_path / "[red]gone.jsonl")])
    assert res.exit_code == 2
    assert "[red]gone.jsonl" in res.output


def test_evaluate_budgets_nan_prints_the_bad_value(tmp_path: Path) -> None:
    args = ["evaluate", str(_log(tmp_path / "log.jsonl")), "--budgets", "nan"]
    res = runner.invoke(app, [*args, "--out", str(tmp_path / "ev")])
    assert res.exit_code == 2
    assert "--budgets must be comma-separated numbers in (0, inf). Got 'nan'." in res.output


# --------------------------------------------------------------------------- 4. silent wraps


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
@pytest.mark.parametrize("value", [2**65, 2**64 - 1, 2**63])
def test_sample_idx_beyond_int64_is_an_error_not_a_wrap(
    tmp_path: Path, suffix: str, value: int
) -> None:
    path = tmp_path / f"log{suffix}"
    if suffix == ".csv":
        path.write_text(f"query_id,sample_idx,correct\na,0,1\na,{value},0\n")
        line = 3
    else:
        path.write_text(
            '{"query_id": "a", "sample_idx": 0, "correct": true}\n'
            f'{{"query_id": "a", "sample_idx": {value}, "correct": false}}\n'
        )
        line = 2
    with pytest.raises(SampleLogError, match=rf"line {line}, field 'sample_idx': .*below 2\*\*63"):
        read_samples(path)
    res = runner.invoke(app, ["inspect", str(path)])
    assert res.exit_code == 2 and f"line {line}, field 'sample_idx'" in res.output


def test_largest_int64_sample_idx_is_kept_exactly(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_text(f'{{"query_id": "a", "sample_idx": {2**63 - 1}, "correct": true}}\n')
    assert read_samples(path).samples["sample_idx"].tolist() == [2**63 - 1]


def test_fit_cost_bananas_is_rejected_with_the_valid_units(tmp_path: Path) -> None:
    args = ["fit", str(_log(tmp_path / "log.jsonl")), "--budget", "2", "--cost", "bananas"]
    res = runner.invoke(app, [*args, "-o", str(tmp_path / "p.json")])
    assert res.exit_code == 2
    text = " ".join(res.output.replace("│", " ").split())
    assert "--cost" in text and "'bananas'" in text
    for unit in ("samples", "tokens", "chars", "usd"):
        assert f"'{unit}'" in text
    assert not (tmp_path / "p.json").exists()


def test_short_query_shrinking_every_querys_actions_warns_and_min_samples_drops_it(
    tmp_path: Path,
) -> None:
    rows = [*_rows(), {"query_id": "lonely", "sample_idx": 0, "answer": "1", "gold": "1"}]
    log = _log(tmp_path / "log.jsonl", rows)
    res = runner.invoke(app, ["estimate", str(log), "-o", str(tmp_path / "t.parquet")])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "warning:" in text and "'lonely' (1)" in text and "--min-samples 8" in text
    assert "majority@2" not in text  # the shrink the warning is about
    res = runner.invoke(
        app, ["estimate", str(log), "--min-samples", "8", "-o", str(tmp_path / "t.parquet")]
    )
    assert res.exit_code == 0, res.output
    assert "dropped 1 queries with fewer than 8 samples: lonely (1)" in res.output
    assert "warning:" not in res.output and "majority@8" in res.output


def test_drop_short_keeps_the_other_queries_and_refuses_to_drop_all() -> None:
    rows = [*_rows(n_queries=3), {"query_id": "x", "sample_idx": 0, "answer": "1"}]
    log = read_samples(pd.DataFrame(rows))
    with pytest.warns(SampleLogWarning, match=r"'x' \(1\)"):
        from computealloc.estimation.estimate import default_actions

        default_actions(log)
    kept = log.drop_short(8)
    assert kept.queries["query_id"].tolist() == ["q0", "q1", "q2"]
    assert log.drop_short(1) is log
    with pytest.raises(ValueError, match=r"Every query .* fewer than 9 samples"):
        log.drop_short(9)


def test_replay_of_more_samples_than_the_log_holds_warns_that_samples_repeat(
    tmp_path: Path,
) -> None:
    replay = _log(tmp_path / "replay.jsonl")
    queries = _queries(tmp_path / "q.jsonl", 3)
    out = tmp_path / "out.jsonl"
    args = ["collect", str(queries), "--replay", str(replay), "-o", str(out)]
    res = runner.invoke(app, [*args, "-n", "16"])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "warning:" in text and "n=16" in text and "samples repeat" in text
    res = runner.invoke(app, [*args[:-1], str(tmp_path / "out8.jsonl"), "-n", "8"])
    assert res.exit_code == 0 and "warning:" not in res.output


# --------------------------------------------------------------------------- 5. path errors


def test_collect_out_an_existing_directory_is_a_clean_error(tmp_path: Path) -> None:
    (tmp_path / "dir.jsonl").mkdir()
    args = ["collect", str(_queries(tmp_path / "q.jsonl", 2)), "-o", str(tmp_path / "dir.jsonl")]
    res = runner.invoke(app, [*args, "--replay", str(_log(tmp_path / "r.jsonl"))])
    assert res.exit_code == 2 and "is a directory" in _text(res.output) and "--out" in res.output
    _no_traceback(res.output)


def test_collect_library_refuses_a_directory_as_the_log(tmp_path: Path) -> None:
    from computealloc.data.collect import run_collect

    (tmp_path / "dir.jsonl").mkdir()
    with pytest.raises(SampleLogError, match=r"dir\.jsonl: is a directory"):
        run_collect(
            _queries(tmp_path / "q.jsonl", 2),
            tmp_path / "dir.jsonl",
            n=2,
            replay=_log(tmp_path / "r.jsonl"),
        )


@pytest.mark.parametrize("command", ["estimate", "fit"])
def test_out_an_existing_directory_is_a_clean_error(tmp_path: Path, command: str) -> None:
    args = [command, str(_log(tmp_path / "log.jsonl")), "-o", str(tmp_path)]
    res = runner.invoke(app, [*args, *(["--budget", "2"] if command == "fit" else [])])
    assert res.exit_code == 2 and "is a directory" in _text(res.output)
    _no_traceback(res.output)


def test_evaluate_out_an_existing_file_is_a_clean_error(tmp_path: Path) -> None:
    log = _log(tmp_path / "log.jsonl")
    res = runner.invoke(app, ["evaluate", str(log), "--budgets", "2", "--out", str(log)])
    assert res.exit_code == 2 and "is a file" in _text(res.output)
    _no_traceback(res.output)


def test_input_log_that_is_a_directory_is_a_clean_error(tmp_path: Path) -> None:
    (tmp_path / "logs.jsonl").mkdir()
    res = runner.invoke(app, ["inspect", str(tmp_path / "logs.jsonl")])
    assert res.exit_code == 2 and "logs.jsonl: is a directory" in res.output
    _no_traceback(res.output)


def test_missing_log_file_says_the_file_does_not_exist(tmp_path: Path) -> None:
    res = runner.invoke(app, ["inspect", str(tmp_path / "nope.csv")])
    assert res.exit_code == 2
    assert "nope.csv: no such file" in res.output and "Unknown data source" not in res.output
    res = runner.invoke(app, ["inspect", "mot_cascade_typo:x"])  # a name, not a file
    assert res.exit_code == 2 and "no such file" in res.output


def test_backend_returning_two_choices_to_n_1_is_a_clean_error_and_loses_nothing(
    tmp_path: Path,
) -> None:
    pytest.importorskip("aiohttp")
    pytest.importorskip("uvicorn")
    from fake_openai_server import ChatRequest, make_app, running, scripted

    async def extra(request: ChatRequest, n: int) -> list:  # type: ignore[type-arg]
        if request.prompt.startswith("What is 2"):
            return await scripted(request, n + 1)
        return await scripted(request, n)

    queries = _queries(tmp_path / "q.jsonl", 4)
    out = tmp_path / "log.jsonl"
    with running(make_app(extra)) as url:
        args = ["collect", str(queries), "-o", str(out), "--base-url", url, "--model", "m"]
        res = runner.invoke(app, [*args, "-n", "1", "--concurrency", "1"])
        assert res.exit_code == 1, res.output
        text = " ".join(res.output.split())
        assert "returned 2 completions for one request of n=1" in text and "'q2'" in text
        _no_traceback(res.output)
        kept = [json.loads(line)["query_id"] for line in out.read_text().splitlines()]
        assert kept == ["q0", "q1"]  # the queries finished before the failure are kept
        res = runner.invoke(app, [*args, "-n", "1", "--max-failures", "1"])
        assert res.exit_code == 1 and "1 queries failed" in res.output
    kept = [json.loads(line)["query_id"] for line in out.read_text().splitlines()]
    assert kept == ["q0", "q1", "q3"]


def test_a_run_that_writes_nothing_leaves_no_empty_log(tmp_path: Path) -> None:
    replay = _log(tmp_path / "replay.jsonl")
    queries = tmp_path / "q.jsonl"
    queries.write_text(json.dumps({"query_id": "x", "prompt": "not in the log"}) + "\n")
    out = tmp_path / "out.jsonl"
    res = runner.invoke(app, ["collect", str(queries), "--replay", str(replay), "-o", str(out)])
    assert res.exit_code == 1 and not out.exists()


def test_latin1_query_file_names_file_line_and_the_encoding_expected(tmp_path: Path) -> None:
    queries = tmp_path / "q.csv"
    queries.write_bytes("query_id,prompt\nq1,hello\nq2,caf\xe9\n".encode("latin-1"))
    args = ["collect", str(queries), "--replay", str(_log(tmp_path / "r.jsonl"))]
    res = runner.invoke(app, [*args, "-o", str(tmp_path / "out.jsonl")])
    assert res.exit_code == 2
    text = " ".join(res.output.split())
    assert f"{queries}, line 3: invalid UTF-8 byte 0xe9" in text and "expected UTF-8" in text
    _no_traceback(res.output)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_bom_in_a_query_file_is_accepted_as_sample_logs_accept_it(
    tmp_path: Path, suffix: str
) -> None:
    from computealloc.data.collect import read_queries

    path = tmp_path / f"q{suffix}"
    body = (
        "query_id,prompt,gold\nq1,What is 1 + 1?,2\n"
        if suffix == ".csv"
        else json.dumps({"query_id": "q1", "prompt": "What is 1 + 1?", "gold": "2"}) + "\n"
    )
    path.write_bytes(b"\xef\xbb\xbf" + body.encode())
    assert [(q.query_id, q.prompt, q.gold) for q in read_queries(path)] == [
        ("q1", "What is 1 + 1?", "2")
    ]


# --------------------------------------------------------------------------- 9. CLI surface


def test_collect_errors_name_cli_flags_not_python_parameters(tmp_path: Path) -> None:
    queries = str(_queries(tmp_path / "q.jsonl", 2))
    out = str(tmp_path / "o.jsonl")
    res = runner.invoke(app, ["collect", queries, "-o", out])
    assert res.exit_code == 2
    text = " ".join(res.output.split())
    assert "--base-url" in text and "--replay" in text and "--backend" in text
    assert "run_collect" not in text and "'base_url'" not in text
    res = runner.invoke(app, ["collect", queries, "-o", out, "--base-url", "http://x/v1"])
    assert res.exit_code == 2 and "--base-url needs --model" in res.output
    replay = str(_log(tmp_path / "r.jsonl"))
    res = runner.invoke(
        app, ["collect", queries, "-o", out, "--replay", replay, "--base-url", "http://x/v1"]
    )
    assert res.exit_code == 2 and "Got --base-url and --replay" in " ".join(res.output.split())
    for flag, value in (("-n", "0"), ("--temperature", "nan"), ("--concurrency", "0")):
        res = runner.invoke(app, ["collect", queries, "-o", out, "--replay", replay, flag, value])
        assert res.exit_code == 2 and flag in res.output and "parameter of" not in res.output


def test_evaluate_protocol_typo_lists_the_protocols_not_a_python_tuple(tmp_path: Path) -> None:
    args = ["evaluate", str(_log(tmp_path / "log.jsonl")), "--protocol", "heldout"]
    res = runner.invoke(app, [*args, "--out", str(tmp_path / "ev")])
    assert res.exit_code == 2
    text = " ".join(res.output.replace("│", " ").split())
    assert "--protocol" in text and "('heldout',)" not in text
    assert "'in-sample', 'held-out', 'both'" in text


def test_evaluate_methods_typo_names_the_flag_and_lists_the_methods(tmp_path: Path) -> None:
    from computealloc.evaluation import METHODS

    args = ["evaluate", str(_log(tmp_path / "log.jsonl")), "--methods", "uniform,valeu"]
    res = runner.invoke(app, [*args, "--out", str(tmp_path / "ev")])
    assert res.exit_code == 2
    text = "".join(res.output.replace("│", " ").split())
    assert "--methods" in text and "'valeu'" in text
    assert all(m.replace(" ", "") in text for m in METHODS)


def test_fit_method_typo_lists_every_fittable_method_and_rule(tmp_path: Path) -> None:
    from computealloc.fitting.fit import FIT_METHODS
    from computealloc.fitting.sequential import FIT_RULES

    args = ["fit", str(_log(tmp_path / "log.jsonl")), "--budget", "2", "--method", "valeu"]
    res = runner.invoke(app, [*args, "-o", str(tmp_path / "p.json")])
    assert res.exit_code == 2
    text = " ".join(res.output.replace("│", " ").split())
    assert "--method" in text and len(FIT_METHODS) + len(FIT_RULES) == 12
    for name in (*FIT_METHODS, *FIT_RULES):
        assert f"'{name}'" in text, name


@pytest.mark.parametrize(
    ("command", "flag", "values"),
    [
        ("estimate", "--cost", ["samples", "tokens", "chars", "usd"]),
        ("estimate", "--on-short", ["raise", "drop"]),
        ("fit", "--method", ["value", "sequential/pooled", "esc"]),
        ("fit", "--repeats", ["drop", "keep"]),
        ("evaluate", "--protocol", ["in-sample", "held-out", "both"]),
        ("collect", "--use-n", ["auto", "true", "false"]),
        ("collect", "--client", ["aiohttp", "openai"]),
        ("solve", "--method", ["exact", "bisection", "highs"]),
        ("ibpo", "--utility", ["margin", "reward"]),
    ],
)
def test_fixed_choice_options_list_their_values(command: str, flag: str, values: list[str]) -> None:
    import typer

    group: Any = typer.main.get_command(app)
    params = group.commands[command].params
    option = next(p for p in params if flag in p.opts)
    choices = [item.value for item in option.shell_complete(None, "")]  # shell completion
    assert set(values) <= set(choices)
    res = runner.invoke(app, [command, "--help"], env={"COLUMNS": "400"})
    assert f"<{'|'.join(choices)}>" in "".join(_text(res.output).split())  # listed in --help


@pytest.mark.parametrize("command", ["estimate", "collect", "fit", "evaluate", "ibpo"])
def test_help_examples_continue_lines_with_a_backslash_and_fit_80_columns(command: str) -> None:
    res = runner.invoke(app, [command, "--help"], env={"COLUMNS": "80"})
    assert res.exit_code == 0
    lines = res.output.splitlines()
    starts = [i for i, ln in enumerate(lines) if ln.strip().startswith(f"computealloc {command}")]
    assert starts, res.output
    for i in starts:
        assert lines[i].rstrip().endswith("\\"), lines[i]  # continued, not wrapped
        assert lines[i + 1].strip().startswith("-"), lines[i + 1]
        assert len(lines[i].rstrip()) <= 80 and len(lines[i + 1].rstrip()) <= 80


def test_no_empty_progress_bar_is_printed_after_errors(tmp_path: Path) -> None:
    queries = tmp_path / "q.csv"
    queries.write_bytes("query_id,prompt\nq1,caf\xe9\n".encode("latin-1"))
    replay = str(_log(tmp_path / "r.jsonl"))
    args = ["collect", str(queries), "--replay", replay, "-n", "8"]
    res = runner.invoke(app, [*args, "-o", str(tmp_path / "o.jsonl")])
    assert res.exit_code == 2
    assert res.output.startswith("error:"), res.output
    assert "collecting" not in res.output and "━" not in res.output
    res = runner.invoke(
        app,
        [
            "ibpo",
            replay,
            "--group-col",
            "model",
            "--max-share",
            "default=0.5",
            "-o",
            str(tmp_path / "x.jsonl"),
        ],
    )
    assert res.exit_code == 2 and res.output.startswith("error:"), res.output
    assert "selecting" not in res.output and "━" not in res.output


def test_user_csv_with_is_correct_warns_and_map_reads_it(tmp_path: Path) -> None:
    rows = [
        {"query_id": f"q{q}", "sample_idx": s, "answer": "1", "is_correct": q % 2 == 0}
        for q in range(6)
        for s in range(4)
    ]
    path = _log(tmp_path / "user.csv", rows)
    with pytest.warns(SampleLogWarning, match="column 'is_correct' looks like 'correct'"):
        assert read_samples(path).samples["correct"].isna().all()
    with warnings.catch_warnings():
        warnings.simplefilter("error", SampleLogWarning)
        mapped = read_samples(path, columns={"is_correct": "correct"})
    assert mapped.samples["correct"].mean() == 0.5
    res = runner.invoke(app, ["inspect", str(path)])
    assert res.exit_code == 0
    assert "warning:" in res.output and "--map is_correct=correct" in " ".join(res.output.split())
    res = runner.invoke(app, ["inspect", str(path), "--map", "is_correct=correct"])
    assert res.exit_code == 0 and "warning:" not in res.output and "0.5000" in res.output


@pytest.mark.parametrize(
    ("column", "known"),
    [("question", "prompt"), ("prediction", "answer"), ("corect", "correct"), ("Gold", "gold")],
)
def test_columns_that_look_like_known_ones_warn(tmp_path: Path, column: str, known: str) -> None:
    rows = [{"query_id": "a", "sample_idx": s, column: "x"} for s in range(2)]
    path = _log(tmp_path / "log.jsonl", rows)
    with pytest.warns(SampleLogWarning, match=f"'{column}' looks like '{known}'"):
        read_samples(path)


def test_map_errors_name_the_flag_or_the_column(tmp_path: Path) -> None:
    path = str(_log(tmp_path / "log.csv"))
    res = runner.invoke(app, ["inspect", path, "--map", "is_correct"])
    assert res.exit_code == 2 and "--map expects distinct OLD=NEW" in res.output
    res = runner.invoke(app, ["inspect", path, "--map", "nope=correct"])
    assert res.exit_code == 2 and "field 'nope': no column 'nope' to rename" in res.output
    res = runner.invoke(app, ["inspect", path, "--map", "answer=gold"])
    assert res.exit_code == 2 and "already has a column 'gold'" in res.output


def test_library_messages_reaching_the_cli_name_the_flags(tmp_path: Path) -> None:
    log = str(_log(tmp_path / "log.jsonl"))
    cases = [
        (["estimate", log, "--price", "foo=1", "-o", str(tmp_path / "t.parquet")], "--price has"),
        (
            ["ibpo", log, "--group-col", "nope", "--max-share", "a=0.5", "-o", str(tmp_path / "x")],
            "--group-col must name a column",
        ),
        (
            [
                "ibpo",
                log,
                "--group-col",
                "model",
                "--max-share",
                "default=2",
                "-o",
                str(tmp_path / "x"),
            ],
            "--max-share expects GROUP=SHARE",
        ),
        (
            [
                "collect",
                str(_queries(tmp_path / "q.jsonl", 1)),
                "--replay",
                log,
                "--model",
                "x",
                "-o",
                str(tmp_path / "o.jsonl"),
            ],
            "--model must be one of ['default']",
        ),
    ]
    for args, message in cases:
        res = runner.invoke(app, args)
        text = _text(res.output)
        assert res.exit_code == 2 and message in text, text
        assert "parameter of" not in text


@pytest.mark.parametrize("column", ["mode", "level", "group", "dataset", "id"])
def test_ordinary_metadata_columns_do_not_warn(tmp_path: Path, column: str) -> None:
    rows = [{"query_id": "a", "sample_idx": s, column: "x"} for s in range(2)]
    path = _log(tmp_path / "log.jsonl", rows)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SampleLogWarning)
        read_samples(path)


@pytest.mark.parametrize("command", ["estimate", "fit", "evaluate", "solve", "collect"])
def test_out_under_a_file_is_a_clean_error_before_any_work(tmp_path: Path, command: str) -> None:
    from computealloc.estimation.table import OutcomeTable

    log = _log(tmp_path / "log.jsonl")
    out = str(log / "sub" / "out.json")
    OutcomeTable([[0.5, 0.6]], [[1.0, 2.0]]).save(tmp_path / "t.parquet")
    args = {
        "estimate": ["estimate", str(log), "-o", out],
        "fit": ["fit", str(log), "--budget", "2", "-o", out],
        "evaluate": ["evaluate", str(log), "--budgets", "2", "--out", out],
        "solve": ["solve", str(tmp_path / "t.parquet"), "--budget", "1.5", "-o", out],
        "collect": ["collect", str(_queries(tmp_path / "q.jsonl", 1)), "--replay", str(log)],
    }[command]
    res = runner.invoke(app, [*args, *(["-o", out] if command == "collect" else [])])
    text = _text(res.output)
    assert res.exit_code == 2 and "log.jsonl" in text, text
    assert "━" not in text and "status" not in text  # nothing ran
    _no_traceback(res.output)


def test_collect_replay_reads_the_log_through_map(tmp_path: Path) -> None:
    rows = [
        {("prediction" if k == "answer" else k): v for k, v in r.items()}
        for r in _rows(n_queries=2, n_samples=2)
    ]
    replay = _log(tmp_path / "replay.jsonl", rows)
    queries = _queries(tmp_path / "q.jsonl", 2)
    out = tmp_path / "out.jsonl"
    args = ["collect", str(queries), "--replay", str(replay), "-n", "2", "-o", str(out)]
    res = runner.invoke(app, [*args, "--map", "prediction=answer"])
    assert res.exit_code == 0, res.output
    answers = [json.loads(line)["answer"] for line in out.read_text().splitlines()]
    assert len(answers) == 4 and set(answers) <= {"0", "1", "2"}  # the logged predictions
