"""collect --checkpoints: checkpoint logs recorded from a reasoning server (a fake one that
follows vLLM's continuation fields), exact against the known traces, resumable, read back."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from computealloc.cli import app
from computealloc.data.checkpoints import read_checkpoints, thinking_log
from computealloc.data.collect import CheckpointProbes, run_collect
from fake_openai_server import make_app, running
from fake_reasoning import gold_of, reasoning, trace_of

PROMPTS = [f"puzzle {i}" for i in range(12)]
POINTS = (10, 40, 90)
LONGEST = 300


def _queries(path: Path) -> Path:
    path.write_text(
        "".join(
            json.dumps({"query_id": f"p{i}", "prompt": p, "gold": gold_of(p)}) + "\n"
            for i, p in enumerate(PROMPTS)
        )
    )
    return path


def _expected(prompt: str, seed: int) -> list[tuple[int, str, bool, int, float]]:
    """(think_tokens, answer, final, answer_tokens, confidence) of one trace, from the fake's
    definition (the natural end's confidence is that of its final-answer token)."""
    trace = trace_of(prompt, seed)
    rows = [
        (t, trace.answers[at], False, 1, math.exp(trace.logprobs[at]))
        for t in POINTS
        if t < len(trace.words)
        for at in [min(t, trace.length)]
    ]
    return [*rows, (len(trace.words), trace.answers[-1], True, 0, math.exp(trace.logprobs[-1]))]


@pytest.fixture(scope="module")
def server():  # type: ignore[no-untyped-def]
    served: list[int] = []
    with running(make_app(reasoning("vllm", served))) as url:
        yield url, served


def test_collect_checkpoints_records_every_checkpoint_and_counts_every_token(server, tmp_path):
    url, served = server
    before = len(served)
    out = tmp_path / "log.jsonl"
    result = run_collect(
        _queries(tmp_path / "q.jsonl"),
        out,
        n=2,
        base_url=url,
        model="fake-r1",
        max_tokens=LONGEST,
        seed=0,
        checkpoints=CheckpointProbes(POINTS, "vllm", answer_tokens=4),
    )
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    for i, prompt in enumerate(PROMPTS):
        for j in range(2):
            got = [
                (r["think_tokens"], r["answer"], r["final"], r["answer_tokens"], r["confidence"])
                for r in rows
                if r["query_id"] == f"p{i}" and r["sample_idx"] == j
            ]
            assert got == _expected(prompt, j), (prompt, j)
    assert result.output_tokens == sum(served[before:])  # thinking + every forced answer
    log = read_checkpoints(out)
    assert log.has_confidence
    arms = thinking_log(log, "cap@40,full,conf@0.8")
    assert set(arms.models) == {"cap@40", "full", "conf@0.8"}
    ends = [r for r in rows if r["final"]]
    assert result.accuracy == pytest.approx(sum(r["correct"] for r in ends) / len(ends))


def test_collect_checkpoints_without_logprobs_writes_no_confidence(server, tmp_path):
    url, _ = server
    out = tmp_path / "log.jsonl"
    run_collect(
        _queries(tmp_path / "q.jsonl"),
        out,
        n=1,
        base_url=url,
        model="fake-r1",
        max_tokens=LONGEST,
        checkpoints=CheckpointProbes(POINTS, "vllm", answer_tokens=4, logprobs=False),
    )
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows and not any("confidence" in r for r in rows)
    assert not read_checkpoints(out).has_confidence


def test_collect_checkpoints_resumes_a_torn_log_to_the_same_file(server, tmp_path):
    url, _ = server
    queries = _queries(tmp_path / "q.jsonl")
    probes = CheckpointProbes(POINTS, "vllm", answer_tokens=4)
    args = {"n": 2, "base_url": url, "model": "fake-r1", "max_tokens": LONGEST, "seed": 0}
    whole = tmp_path / "whole.jsonl"
    run_collect(queries, whole, checkpoints=probes, **args)  # type: ignore[arg-type]
    data = whole.read_bytes()
    lines = data.splitlines(keepends=True)
    torn = tmp_path / "torn.jsonl"
    # a crash in the middle of the last query's write: some of its rows and half a line
    cut = sum(len(line) for line in lines[: len(lines) - 3]) + len(lines[-3]) // 2
    torn.write_bytes(data[:cut])
    result = run_collect(queries, torn, checkpoints=probes, **args)  # type: ignore[arg-type]
    assert result.n_resumed == len(PROMPTS) - 1
    assert torn.read_bytes() == data


def test_cli_collect_checkpoints_and_its_flag_errors(server, tmp_path):
    url, _ = server
    queries = _queries(tmp_path / "q.jsonl")
    out = tmp_path / "cli.jsonl"
    base = ["collect", str(queries), "-o", str(out), "--base-url", url, "--model", "fake-r1"]
    runner = CliRunner()
    done = runner.invoke(
        app, [*base, "-n", "1", "--max-tokens", "300", "--checkpoints", "10,40,90"]
    )
    assert done.exit_code == 0, done.output
    assert read_checkpoints(out).n_queries == len(PROMPTS)
    for flags, said in [
        (["--checkpoints", "10,40"], "--max-tokens"),
        (["--checkpoints", "40,10", "--max-tokens", "300"], "strictly increasing"),
        (["--checkpoints", "10,x", "--max-tokens", "300"], "comma-separated"),
        (["--checkpoints", "10,400", "--max-tokens", "300"], "below --max-tokens"),
    ]:
        failed = runner.invoke(app, [*base, "-n", "1", *flags])
        assert failed.exit_code == 2 and said in " ".join(failed.output.split()), failed.output


@pytest.mark.parametrize("window", [1, 2, 3])
def test_the_stable_rule_served_is_the_rule_evaluated(server, tmp_path, window):
    """Offline ``stable@W`` on a collected checkpoint log (a 0 checkpoint first: the answer
    without thinking) gives, trace by trace, the answer and tokens the live plan
    ``thinking: {checkpoints: [the log's], stable: W}`` gives on the same server and seed."""
    import asyncio

    from computealloc.data.backends import OpenAIBackend, RetryPolicy
    from computealloc.data.forcing import CONTINUATIONS, ThinkingPlan, think

    url, _ = server
    points = (0, 10, 20, 40, 60, 90, 130)
    out = tmp_path / "log.jsonl"
    run_collect(
        _queries(tmp_path / "q.jsonl"),
        out,
        n=2,
        base_url=url,
        model="fake-r1",
        max_tokens=LONGEST,
        seed=5,
        checkpoints=CheckpointProbes(points, "vllm", answer_tokens=4, logprobs=False),
    )
    offline = thinking_log(read_checkpoints(out), f"stable@{window}").samples
    offline = offline.set_index(["query_id", "sample_idx"])
    plan = ThinkingPlan((*points, LONGEST), stable=window, answer_tokens=4)

    stops = set()

    async def live() -> dict[tuple[str, int], tuple[str | None, int]]:
        backend = OpenAIBackend(url, "fake-r1", retry=RetryPolicy(max_attempts=1))
        got = {}
        try:
            for i, prompt in enumerate(PROMPTS):
                for j in range(2):
                    params = {"seed": 5 + j, "temperature": 0.7}
                    t = await think(
                        backend, prompt, plan, continuation=CONTINUATIONS["vllm"], params=params
                    )
                    got[(f"p{i}", j)] = (t.answer, t.output_tokens)
                    stops.add(t.stop)
        finally:
            await backend.aclose()
        return got

    for key, (answer, tokens) in asyncio.run(live()).items():
        row = offline.loc[key]
        assert (answer, tokens) == (row["answer"], row["tokens"]), key
    assert "settled" in stops  # early exits, not only natural ends
