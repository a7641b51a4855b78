"""``collect``: query files, the graded canonical log, resume after a crash at any point
(in-process cuts and a real SIGKILL), failures, and the HTTP path against a faulty fake server."""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("aiohttp")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from computealloc.data import datasets
from computealloc.data.backends import BackendError, OpenAIBackend, ReplayBackend, RetryPolicy
from computealloc.data.collect import (
    OUTPUT_COLUMNS,
    CollectError,
    Query,
    QueryFileError,
    collect,
    read_queries,
    run_collect,
)
from computealloc.data.samples import SampleLogError, read_samples
from conftest import needs_data
from fake_openai_server import ChatRequest, make_app, replaying, running, scripted

SRC = Path(__file__).resolve().parents[1] / "src"
FAST = RetryPolicy(max_attempts=10, initial_delay=0.001, max_delay=0.01)


class ScriptedBackend:
    """In-process twin of the fake server: its scripted answers, after a random short wait."""

    def __init__(self, model: str = "scripted", *, fail: frozenset[str] = frozenset()) -> None:
        self.model = model
        self.fail = fail
        self.prompts: list[str] = []
        self._rng = random.Random()

    async def sample(self, prompt, n, *, params=None):  # type: ignore[no-untyped-def]
        seed = (params or {}).get("seed")
        self.prompts.append(prompt)
        await asyncio.sleep(self._rng.random() * 0.002)
        if prompt in self.fail:
            raise BackendError(f"refused {prompt}", retryable=False, status_code=400)
        request = ChatRequest(model=self.model, messages=[{"content": prompt}], seed=seed)
        return await scripted(request, n)

    async def aclose(self) -> None:
        pass


def _write_queries(path: Path, count: int) -> Path:
    """``count`` queries; even ones have gold "1", odd ones none; two metadata fields."""
    with path.open("w") as fh:
        for i in range(count):
            record = {
                "query_id": f"q{i:02d}",
                "prompt": f"Question {i}?",
                "dataset": "toy",
                "level": i % 3,
            }
            if i % 2 == 0:
                record["gold"] = 1
            fh.write(json.dumps(record) + "\n")
    return path


def _collect(queries, backend, out, **kw):  # type: ignore[no-untyped-def]
    kw.setdefault("n", 3)
    kw.setdefault("concurrency", 4)
    return asyncio.run(collect(queries, backend, out_path=out, **kw))


# --- query files ----------------------------------------------------------------------------


def test_read_queries_jsonl_and_csv_agree(tmp_path):
    jsonl = _write_queries(tmp_path / "q.jsonl", 4)
    frame = pd.read_json(jsonl, lines=True, dtype=False)
    frame.to_csv(tmp_path / "q.csv", index=False)
    from_jsonl, from_csv = read_queries(jsonl), read_queries(tmp_path / "q.csv")
    assert [(q.query_id, q.prompt, q.gold) for q in from_jsonl] == [
        ("q00", "Question 0?", "1"),
        ("q01", "Question 1?", None),
        ("q02", "Question 2?", "1"),
        ("q03", "Question 3?", None),
    ]
    assert [(q.query_id, q.prompt) for q in from_csv] == [
        (q.query_id, q.prompt) for q in from_jsonl
    ]
    assert [q.gold for q in from_csv] == ["1.0", None, "1.0", None]  # pandas wrote floats
    assert from_jsonl[1].metadata == {"dataset": "toy", "level": 1}
    assert from_csv[1].metadata == {"dataset": "toy", "level": "1"}


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("q.txt", "", r"q.txt: a query file must end in .jsonl, .ndjson or .csv. Got '.txt'"),
        (
            "q.jsonl",
            '{"query_id": "a", "prompt": "p"}\n{oops\n',
            r"q.jsonl, line 2: not valid JSON",
        ),
        ("q.jsonl", '\n["a", "p"]\n', r"line 2: each line must be a JSON object. Got list"),
        (
            "q.jsonl",
            '{"query_id": "a"}\n',
            r"line 1, field 'prompt': must be a non-empty str. Got None",
        ),
        (
            "q.jsonl",
            '{"query_id": "", "prompt": "p"}\n',
            r"field 'query_id': must be a non-empty str",
        ),
        ("q.jsonl", '{"query_id": true, "prompt": "p"}\n', r"field 'query_id': .* Got True"),
        (
            "q.jsonl",
            '{"query_id": 1, "prompt": "p", "gold": [1]}\n',
            r"field 'gold': must be a str, a number or null",
        ),
        (
            "q.jsonl",
            '{"query_id": 1, "prompt": "p", "answer": "4"}\n',
            r"field 'answer': is written by collect for each sample; rename it",
        ),
        (
            "q.jsonl",
            '{"query_id": 1, "prompt": "p"}\n{"query_id": "1", "prompt": "r"}\n',
            r"line 2, field 'query_id': query_id '1' repeats the one on line 1",
        ),
        ("q.jsonl", "\n\n", r"q.jsonl: the file holds no queries"),
        ("q.csv", "query_id,text\na,b\n", r"q.csv, line 1, field 'prompt': missing column"),
        (
            "q.csv",
            "query_id,prompt\na,b,c\n",
            r"q.csv, line 2: the row has more cells than the header",
        ),
        ("q.csv", "query_id,prompt\na,\n", r"line 2, field 'prompt': must be a non-empty str"),
    ],
)
def test_read_queries_errors_name_file_line_and_field(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(QueryFileError, match=match):
        read_queries(path)


def test_read_queries_missing_file(tmp_path):
    with pytest.raises(QueryFileError, match=r"nope.jsonl: no such file"):
        read_queries(tmp_path / "nope.jsonl")


# --- parameters -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n": 0}, r"'n' parameter of collect must be an int in \[1, inf\). Got 0 instead"),
        ({"n": True}, r"'n' .* Got True instead"),
        ({"concurrency": 0}, r"'concurrency' .* an int in \[1, inf\). Got 0"),
        ({"max_tokens": 0}, r"'max_tokens' .* None or an int in \[1, inf\). Got 0"),
        ({"max_failures": -1}, r"'max_failures' .* an int in \[0, inf\). Got -1"),
        ({"temperature": -0.5}, r"'temperature' .* a float in \[0, inf\). Got -0.5 instead"),
        ({"temperature": "hot"}, r"'temperature' .* Got 'hot' instead"),
    ],
)
def test_collect_validation(tmp_path, kwargs, match):
    queries = [Query("a", "p")]
    with pytest.raises(ValueError, match=match):
        _collect(queries, ScriptedBackend(), tmp_path / "log.jsonl", **kwargs)


def test_collect_query_list_validation(tmp_path):
    out = tmp_path / "log.jsonl"
    with pytest.raises(ValueError, match=r"'queries' parameter of collect must be a query file"):
        _collect([], ScriptedBackend(), out)
    with pytest.raises(
        ValueError, match=r"query ids passed to collect must be unique. Got \['a'\]"
    ):
        _collect([Query("a", "p"), Query("a", "q")], ScriptedBackend(), out)
    with pytest.raises(
        ValueError,
        match=r"metadata of query 'a' .* must not use the columns "
        r"collect writes for each sample. Got \['answer', 'model'\]",
    ):
        _collect([Query("a", "p", metadata={"model": "x", "answer": 1})], ScriptedBackend(), out)
    with pytest.raises(ValueError, match=r"metadata of query 'a' .* must be JSON serialisable"):
        _collect([Query("a", "p", metadata={"when": object()})], ScriptedBackend(), out)
    assert not out.exists()


def test_run_collect_needs_exactly_one_source(tmp_path):
    with pytest.raises(ValueError, match=r"Exactly one of the 'base_url' and 'replay'"):
        run_collect("q.jsonl", tmp_path / "o.jsonl", n=1)
    with pytest.raises(ValueError, match=r"'model' parameter of run_collect is required"):
        run_collect("q.jsonl", tmp_path / "o.jsonl", n=1, base_url="http://127.0.0.1:9/v1")


# --- the log --------------------------------------------------------------------------------

_BOXED = re.compile(r"\\boxed\{(\d)\}")


def test_collect_writes_a_graded_canonical_log_in_query_order(tmp_path):
    queries = _write_queries(tmp_path / "q.jsonl", 12)
    events = []
    result = _collect(
        queries, ScriptedBackend(), tmp_path / "log.jsonl", n=4, seed=5, progress=events.append
    )
    lines = (tmp_path / "log.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert all(list(r) == [*OUTPUT_COLUMNS, "dataset", "level"] for r in rows)
    assert [(r["query_id"], r["sample_idx"]) for r in rows] == [
        (f"q{i:02d}", j) for i in range(12) for j in range(4)
    ]
    for r in rows:
        request = ChatRequest(model="scripted", messages=[{"content": r["prompt"]}], seed=5)
        expected = asyncio.run(scripted(request, 4))[r["sample_idx"]]
        assert r["response"] == expected.text and r["tokens"] == expected.output_tokens
        assert r["answer"] == _BOXED.search(r["response"]).group(1)
        assert r["correct"] == (r["answer"] == "1" if r["gold"] == "1" else None)
        assert r["model"] == "scripted" and r["finish_reason"] == "stop"
    log = read_samples(tmp_path / "log.jsonl")
    assert (log.samples_per_query == 4).all() and len(log.queries) == 12
    graded = [r["correct"] for r in rows if r["correct"] is not None]
    assert result.accuracy == pytest.approx(sum(graded) / len(graded))
    assert result.output_tokens == sum(r["tokens"] for r in rows)
    assert (result.n_queries, result.n_resumed, result.n_collected, result.failed) == (
        12,
        0,
        12,
        {},
    )
    assert (events[0].completed, events[0].samples) == (0, 0)
    assert (events[-1].completed, events[-1].samples, events[-1].total) == (12, 48, 12)
    assert [e.completed for e in events] == sorted(e.completed for e in events)


def _groups(data: bytes) -> list[bytes]:
    """The file's query groups (consecutive lines of one query), as raw bytes."""
    groups: dict[str, list[bytes]] = {}
    for line in data.splitlines(keepends=True):
        groups.setdefault(json.loads(line)["query_id"], []).append(line)
    return [b"".join(g) for g in groups.values()]


def test_resume_from_any_crash_point_equals_the_uninterrupted_run(tmp_path):
    queries = _write_queries(tmp_path / "q.jsonl", 10)
    full_path = tmp_path / "full.jsonl"
    _collect(queries, ScriptedBackend(), full_path)
    full = full_path.read_bytes()
    groups = _groups(full)
    rng = random.Random(0)
    boundaries = [m.end() for m in re.finditer(b"\n", full)]
    cuts = [0, *boundaries[:-1], *rng.sample(range(1, len(full)), 15)]
    states = [full[:cut] for cut in cuts]
    for _ in range(8):  # completed groups in a random order, then a torn write
        shuffled = rng.sample(groups, len(groups))
        done = rng.randrange(len(groups))
        head = b"".join(shuffled[:done])
        states.append(head + shuffled[done][: rng.randrange(1, len(shuffled[done]))])
    for state in states:
        out = tmp_path / "state.jsonl"
        out.write_bytes(state)
        complete = {g for g in groups if g in state}
        backend = ScriptedBackend()
        result = _collect(queries, backend, out)
        assert out.read_bytes() == full
        assert result.n_resumed == len(complete)
        assert len(backend.prompts) == 10 - len(complete)


def test_resume_with_another_n_is_refused(tmp_path):
    queries = _write_queries(tmp_path / "q.jsonl", 3)
    _collect(queries, ScriptedBackend(), tmp_path / "log.jsonl", n=2)
    with pytest.raises(
        SampleLogError,
        match=r"query 'q00' of model 'scripted' has samples \[0, 1\]"
        r" but collect with n=3 writes samples 0..2; resume with the n",
    ):
        _collect(queries, ScriptedBackend(), tmp_path / "log.jsonl", n=3)


def test_a_line_that_is_not_a_sample_row_is_refused(tmp_path):
    out = tmp_path / "log.jsonl"
    out.write_text('{"query_id": "x", "sample_idx": 0}\nnot json\n{"query_id": "y"}\n')
    with pytest.raises(SampleLogError, match=r"log.jsonl, line 2: not a sample row"):
        _collect([Query("a", "p")], ScriptedBackend(), out)


def test_rows_of_other_models_are_kept(tmp_path):
    queries = _write_queries(tmp_path / "q.jsonl", 4)
    out = tmp_path / "log.jsonl"
    _collect(queries, ScriptedBackend("other"), out)
    other = out.read_bytes()
    _collect(queries, ScriptedBackend("scripted"), out)
    assert out.read_bytes().startswith(other)
    assert read_samples(out).models == ["other", "scripted"]
    again = ScriptedBackend("other")
    assert _collect(queries, again, out).n_resumed == 4 and again.prompts == []


def test_failed_queries_stop_collection_or_are_listed_and_retried_on_rerun(tmp_path):
    queries = _write_queries(tmp_path / "q.jsonl", 8)
    out = tmp_path / "log.jsonl"
    broken = ScriptedBackend(fail=frozenset({"Question 3?"}))
    with pytest.raises(
        CollectError,
        match=r"1 queries failed \(max_failures=0\); .* rerun to "
        r"resume. First failure, query 'q03': refused Question 3\?",
    ) as info:
        _collect(queries, broken, out, concurrency=1)
    assert list(info.value.failed) == ["q03"]
    assert set(read_samples(out).queries["query_id"]) == {"q00", "q01", "q02"}
    result = _collect(
        queries, ScriptedBackend(fail=frozenset({"Question 3?"})), out, max_failures=1
    )
    assert list(result.failed) == ["q03"] and result.n_collected == 4 and result.n_resumed == 3
    healed = ScriptedBackend()
    assert _collect(queries, healed, out).n_collected == 1 and healed.prompts == ["Question 3?"]
    _collect(queries, ScriptedBackend(), tmp_path / "full.jsonl")
    assert out.read_bytes() == (tmp_path / "full.jsonl").read_bytes()


def _replay_log(n_queries: int, n_samples: int):  # type: ignore[no-untyped-def]
    rng = random.Random(4)
    rows = []
    for i in range(n_queries):
        for j in range(n_samples):
            answer = str(rng.randint(0, 2))
            rows.append(
                {
                    "query_id": f"q{i:02d}",
                    "sample_idx": j,
                    "model": "m",
                    "prompt": f"Question {i}?",
                    "gold": "1",
                    "answer": answer,
                    "response": f"Thinking {j}. The answer is \\boxed{{{answer}}}.",
                    "tokens": 5 + j,
                }
            )
    return read_samples(pd.DataFrame(rows))


def test_replayed_answers_and_verdicts_are_kept_without_gold(tmp_path):
    log = _replay_log(5, 4)
    queries = [Query(f"q{i:02d}", f"Question {i}?") for i in range(5)]
    _collect(queries, ReplayBackend(log, seed=1), tmp_path / "log.jsonl", n=4)
    got = read_samples(tmp_path / "log.jsonl", grade=False).samples
    for qid, rows in got.groupby("query_id"):
        logged = log.samples[log.samples["query_id"] == qid]
        assert Counter(zip(rows["answer"], rows["correct"], strict=True)) == Counter(
            zip(logged["answer"], logged["correct"], strict=True)
        )


def test_run_collect_replays_a_log_file_offline(tmp_path):
    log = _replay_log(6, 4)
    log.to_frame().to_json(tmp_path / "logged.jsonl", orient="records", lines=True)
    queries = tmp_path / "q.jsonl"
    queries.write_text(
        "".join(f'{{"query_id": "q{i:02d}", "prompt": "Question {i}?"}}\n' for i in range(6))
    )
    result = run_collect(queries, tmp_path / "out.jsonl", n=4, replay=tmp_path / "logged.jsonl")
    got = read_samples(tmp_path / "out.jsonl").samples
    assert result.n_collected == 6 and got["model"].unique().tolist() == ["m"]
    for qid, rows in got.groupby("query_id"):
        logged = log.samples[log.samples["query_id"] == qid]
        assert sorted(rows["response"]) == sorted(logged["response"])
        assert rows["correct"].tolist() == (rows["answer"] == "1").tolist()


@needs_data
def test_replaying_a_real_log_reproduces_every_logged_sample(tmp_path, shared_data):
    log = datasets.load("mot_cascade:gpt-3.5-turbo/date/cot1", root=shared_data)
    first = log.queries.head(25)
    queries = [Query(q, p) for q, p in zip(first["query_id"], first["prompt"], strict=True)]
    _collect(queries, ReplayBackend(log, seed=0), tmp_path / "log.jsonl", n=20)
    got = read_samples(tmp_path / "log.jsonl", grade=False).samples
    logged = log.samples[log.samples["query_id"].isin(first["query_id"])]
    logged = logged.assign(response=logged["response"].fillna(logged["answer"]))
    assert len(got) == len(logged) == 500
    assert _sample_bag(got) == _sample_bag(logged)


def _sample_bag(samples: pd.DataFrame) -> Counter:
    """Multiset of (query_id, response, answer, correct, tokens), nulls as None."""
    columns = ["query_id", "response", "answer", "correct", "tokens"]
    frame = samples[columns].astype(object)
    return Counter(map(tuple, frame.where(frame.notna(), None).to_numpy().tolist()))


@pytest.mark.parametrize("client", ["aiohttp", "openai"])
def test_collect_over_http_with_faults_recovers_every_logged_sample(tmp_path, client):
    if client == "openai":
        pytest.importorskip("openai")
    log = _replay_log(20, 6)
    app = make_app(replaying(ReplayBackend(log, seed=0)), fault_rate=0.1, delay_s=0.4, seed=2)
    queries = [Query(f"q{i:02d}", f"Question {i}?", "1") for i in range(20)]
    with running(app) as url:
        backend = OpenAIBackend(url, "m", timeout=0.2, retry=FAST, client=client)
        result = _collect(queries, backend, tmp_path / "log.jsonl", n=6)
    assert sum(app.state.faults.values()) > 0
    assert backend.stats.retries == sum(app.state.faults.values())
    got = read_samples(tmp_path / "log.jsonl").samples
    assert len(got) == 120
    for qid, rows in got.groupby("query_id"):
        logged = log.samples[log.samples["query_id"] == qid]
        assert Counter(rows["answer"]) == Counter(logged["answer"])
        assert rows["correct"].tolist() == (rows["answer"] == "1").tolist()
    assert result.accuracy == pytest.approx(float(log.samples["correct"].mean()))


def test_collect_over_http_when_the_server_refuses_n(tmp_path):
    app = make_app(n_mode="reject")
    queries = _write_queries(tmp_path / "q.jsonl", 4)
    with running(app) as url:
        backend = OpenAIBackend(url, "m", retry=FAST)
        _collect(queries, backend, tmp_path / "log.jsonl", n=3, concurrency=1)
    assert app.state.requests == [3] + [1] * 12
    assert (read_samples(tmp_path / "log.jsonl").samples_per_query == 3).all()


def test_sigkill_at_any_moment_then_rerun_equals_an_uninterrupted_run(tmp_path):
    queries = _write_queries(tmp_path / "q.jsonl", 40)
    killed, clean = tmp_path / "killed.jsonl", tmp_path / "clean.jsonl"
    app = make_app(fault_rate=0.1, delay_s=0.5, latency_s=0.03, seed=1)
    with running(app) as url:
        args = {
            "n": 4,
            "base_url": url,
            "model": "m",
            "concurrency": 2,
            "seed": 0,
            "timeout": 0.25,
            "max_attempts": 12,
        }
        script = (
            "import json, sys; from computealloc.data.collect import run_collect; "
            "run_collect(sys.argv[1], sys.argv[2], **json.loads(sys.argv[3]))"
        )
        env = {**os.environ, "PYTHONPATH": str(SRC)}
        proc = subprocess.Popen(
            [sys.executable, "-c", script, str(queries), str(killed), json.dumps(args)], env=env
        )
        deadline = time.monotonic() + 20
        while not (killed.exists() and killed.read_bytes().count(b"\n") >= 12):
            assert proc.poll() is None and time.monotonic() < deadline, "collect ended early"
            time.sleep(0.002)
        proc.kill()
        proc.wait()
        lines_at_kill = killed.read_bytes().count(b"\n")
        assert lines_at_kill < 160, "the run finished before the kill"
        run_collect(queries, killed, **args)
        run_collect(queries, clean, **args)
    rows = [json.loads(line) for line in killed.read_text().splitlines()]
    assert len(rows) == 160 and len({(r["query_id"], r["sample_idx"]) for r in rows}) == 160
    assert killed.read_bytes() == clean.read_bytes()


def test_collect_writes_each_samples_score_and_none_where_there_is_none(tmp_path):
    scored = _replay_log(4, 3)
    frame = scored.to_frame()
    frame["score"] = np.linspace(0.1, 0.9, len(frame))
    scored = read_samples(frame)
    queries = [Query(f"q{i:02d}", f"Question {i}?") for i in range(4)]
    _collect(queries, ReplayBackend(scored, seed=1), tmp_path / "scored.jsonl", n=3)
    got = read_samples(tmp_path / "scored.jsonl", grade=False).samples
    key = ["query_id", "response"]
    merged = got.merge(scored.samples[[*key, "score"]], on=key, suffixes=("", "_logged"))
    assert len(merged) == 12 and np.allclose(merged["score"], merged["score_logged"])
    _collect(queries, ReplayBackend(_replay_log(4, 3), seed=1), tmp_path / "plain.jsonl", n=3)
    assert '"score"' not in (tmp_path / "plain.jsonl").read_text()  # unscored logs unchanged
