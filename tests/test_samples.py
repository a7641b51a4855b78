"""Tests for computealloc.data.samples: the SampleLog contract, readers, and boundary validation."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from computealloc.data.samples import SampleLog, SampleLogError, read_samples
from computealloc.data.samples.csvfile import quote_parity_lines, scan_csv
from conftest import needs_data

HEADER = "query_id,sample_idx,answer,correct,tokens,score,gold,prompt\n"


def _exact(message: str) -> str:
    return "^" + re.escape(message) + "$"


def _write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    data = content.encode("utf-8") if isinstance(content, str) else content
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    return path


def _fails(path: Path, message: str | re.Pattern[str], **kwargs: object) -> SampleLogError:
    """Read ``path`` expecting exactly ``message``; the file and its folder stay as they were."""
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    listing = sorted(p.name for p in path.parent.iterdir())
    pattern = message.pattern if isinstance(message, re.Pattern) else _exact(message)
    with pytest.raises(SampleLogError, match=pattern) as info:
        read_samples(path, **kwargs)  # type: ignore[arg-type]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in path.parent.iterdir()) == listing
    return info.value


def _frame() -> pd.DataFrame:
    """Two queries, two models, shuffled rows; int query ids."""
    return pd.DataFrame(
        {
            "query_id": [2, 10, 2, 10, 2],
            "sample_idx": [1, 0, 0, 1, 0],
            "model": ["m", "m", "m", "m", "n"],
            "answer": ["5", "0012", "4", None, "5"],
            "correct": [True, False, False, None, True],
            "tokens": [3.0, 4.0, np.nan, 6.0, 7.0],
            "prompt": ["two", "ten", "two", "ten", "two"],
            "gold": ["5", "12", "5", "12", "5"],
            "level": ["L1", "L2", "L1", "L2", "L1"],
            "chars": [10, 11, 12, 13, 14],
        }
    )


# --------------------------------------------------------------------------- contract


def test_from_frame_types_sorting_and_split() -> None:
    log = SampleLog.from_frame(_frame(), grade=False)
    s = log.samples
    assert list(s.columns) == [
        "query_id",
        "sample_idx",
        "model",
        "answer",
        "correct",
        "tokens",
        "score",
        "response",
        "chars",
    ]
    assert s["query_id"].dtype == "str" and s["model"].dtype == "str"
    assert s["sample_idx"].dtype == np.int64
    assert s["correct"].dtype == "boolean"
    assert s["tokens"].dtype == np.float64 and s["score"].isna().all()
    assert list(zip(s["model"], s["query_id"], s["sample_idx"], strict=True)) == [
        ("m", "10", 0),
        ("m", "10", 1),
        ("m", "2", 0),
        ("m", "2", 1),
        ("n", "2", 0),
    ]
    assert s["answer"].fillna("<NA>").tolist() == ["0012", "<NA>", "4", "5", "5"]
    assert s["correct"].isna().tolist() == [False, True, False, False, False]
    q = log.queries
    assert q.to_dict("list") == {
        "query_id": ["10", "2"],
        "prompt": ["ten", "two"],
        "gold": ["12", "5"],
        "level": ["L2", "L1"],
    }
    assert log.n_queries == 2 and log.models == ["m", "n"]
    assert log.samples_per_query.to_dict() == {("m", "10"): 2, ("m", "2"): 2, ("n", "2"): 1}
    assert repr(log) == "SampleLog(source='<frame>', n_samples=5, n_queries=2, models=['m', 'n'])"


def test_from_frame_leaves_input_unmodified() -> None:
    df = _frame()
    copy = df.copy()
    SampleLog.from_frame(df, grade=False)
    pd.testing.assert_frame_equal(df, copy)


def test_default_model_and_minimal_columns() -> None:
    log = read_samples(pd.DataFrame({"query_id": ["a", "a"], "sample_idx": [1, 0]}))
    assert log.models == ["default"]
    assert log.samples["sample_idx"].tolist() == [0, 1]
    assert log.samples["answer"].isna().all() and log.samples["correct"].isna().all()
    assert log.queries.columns.tolist() == ["query_id", "prompt", "gold"]


def test_read_samples_returns_a_samplelog_as_is() -> None:
    log = SampleLog.from_frame(_frame(), grade=False)
    assert read_samples(log) is log


def test_to_frame_joins_the_queries() -> None:
    log = SampleLog.from_frame(_frame(), grade=False)
    flat = log.to_frame()
    assert len(flat) == 5
    assert flat.loc[flat["query_id"] == "2", "prompt"].eq("two").all()
    assert flat.loc[flat["query_id"] == "10", "level"].eq("L2").all()


def test_metadata_constant_per_query_moves_only_when_queries_repeat() -> None:
    one_each = pd.DataFrame(
        {"query_id": ["a", "b"], "sample_idx": [0, 0], "level": ["1", "2"], "chars": [5, 6]}
    )
    log = read_samples(one_each)
    assert "level" in log.queries.columns and "chars" in log.samples.columns


def test_csv_keeps_answers_and_golds_as_strings(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "s.csv",
        "query_id,sample_idx,answer,gold\n"
        "0012,0,05/01/2021,05/01/2021\n"
        "0012,1,0012,05/01/2021\n"
        "0012,2,None,05/01/2021\n"
        "0012,3,NA,05/01/2021\n"
        "0012,4,,05/01/2021\n",
    )
    log = read_samples(path, grade=False)
    assert log.samples["query_id"].tolist() == ["0012"] * 5
    assert log.samples["answer"].tolist()[:4] == ["05/01/2021", "0012", "None", "NA"]
    assert pd.isna(log.samples["answer"].iloc[4])
    assert log.queries["gold"].tolist() == ["05/01/2021"]


@pytest.mark.parametrize("spelling", ["true", "True", "TRUE", "1", '"true"'])
def test_correct_accepts_boolean_spellings(tmp_path: Path, spelling: str) -> None:
    path = _write(tmp_path, "s.csv", f"query_id,sample_idx,correct\nq,0,{spelling}\nq,1,0\nq,2,\n")
    log = read_samples(path)
    assert log.samples["correct"].tolist()[:2] == [True, False]
    assert pd.isna(log.samples["correct"].iloc[2])


def test_correct_accepts_json_and_frame_booleans(tmp_path: Path) -> None:
    lines = [
        {"query_id": "q", "sample_idx": i, "correct": c} for i, c in enumerate([True, 0, "False"])
    ]
    path = _write(tmp_path, "s.jsonl", "".join(json.dumps(r) + "\n" for r in lines))
    assert read_samples(path).samples["correct"].tolist() == [True, False, False]
    frame = pd.DataFrame({"query_id": ["q", "q"], "sample_idx": [0, 1], "correct": [1.0, np.nan]})
    assert read_samples(frame).samples["correct"].isna().tolist() == [False, True]


@pytest.mark.parametrize("name", ["a.csv", "a.csv.gz", "a.jsonl", "a.jsonl.gz", "a.parquet"])
def test_save_then_read_round_trips(tmp_path: Path, name: str) -> None:
    df = _frame()
    df["score"] = [0.1, -2.5, 1e-300, 3.0, np.nan]
    df["response"] = ['say "hi",\nthen', "é ünïcode", None, "x", "y"]
    log = SampleLog.from_frame(df, grade=False)
    log.save(tmp_path / name)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]
    back = read_samples(tmp_path / name, grade=False)
    pd.testing.assert_frame_equal(back.samples, log.samples, check_dtype=False)
    pd.testing.assert_frame_equal(back.queries, log.queries)
    assert back.samples["sample_idx"].dtype == np.int64
    assert back.samples["correct"].dtype == "boolean"


def test_format_argument_overrides_the_suffix(tmp_path: Path) -> None:
    path = _write(tmp_path, "log.txt", "query_id,sample_idx\nq,0\n")
    assert len(read_samples(path, format="csv").samples) == 1


# --------------------------------------------------------------------------- nested JSONL


def test_nested_samples_form_matches_long_form(tmp_path: Path) -> None:
    lines = [
        {
            "query_id": 7,
            "prompt": "p",
            "gold": "3",
            "model": "m",
            "samples": [
                {"answer": "3", "correct": True, "tokens": 5},
                {"answer": "4", "correct": False},
            ],
        },
        {
            "query_id": 8,
            "prompt": "r",
            "gold": "1",
            "model": "m",
            "samples": [{"answer": 1, "score": 0.5}],
        },
    ]
    path = _write(tmp_path, "n.jsonl", "".join(json.dumps(r) + "\n" for r in lines))
    log = read_samples(path, grade=False)
    expected = SampleLog.from_frame(
        pd.DataFrame(
            {
                "query_id": ["7", "7", "8"],
                "sample_idx": [0, 1, 0],
                "model": "m",
                "answer": ["3", "4", "1"],
                "correct": [True, False, None],
                "tokens": [5.0, np.nan, np.nan],
                "score": [np.nan, np.nan, 0.5],
                "prompt": ["p", "p", "r"],
                "gold": ["3", "3", "1"],
            }
        ),
        grade=False,
    )
    pd.testing.assert_frame_equal(log.samples, expected.samples)
    pd.testing.assert_frame_equal(log.queries, expected.queries)


def test_nested_answers_form_with_parallel_lists(tmp_path: Path) -> None:
    line = {
        "query_id": "q",
        "gold": "2",
        "answers": ["2", "3", None],
        "correct": [True, False, False],
        "tokens": [10, 20, 30],
        "scores": [0.9, 0.1, 0.0],
    }
    path = _write(tmp_path, "n.jsonl", json.dumps(line) + "\n")
    s = read_samples(path).samples
    assert s["sample_idx"].tolist() == [0, 1, 2]
    assert s["answer"].tolist()[:2] == ["2", "3"] and pd.isna(s["answer"].iloc[2])
    assert s["correct"].tolist() == [True, False, False]
    assert s["tokens"].tolist() == [10.0, 20.0, 30.0] and s["score"].tolist() == [0.9, 0.1, 0.0]


def test_nested_parallel_list_of_wrong_length(tmp_path: Path) -> None:
    good = json.dumps({"query_id": "a", "answers": ["1"]})
    bad = json.dumps({"query_id": "b", "answers": ["1", "2"], "correct": [True]})
    path = _write(tmp_path, "n.jsonl", f"{good}\n{bad}\n")
    _fails(
        path,
        f"{path}, line 2, field 'correct': expected a list of 2 values (one per answer), "
        "found 1 values",
    )


def test_nested_samples_must_be_objects(tmp_path: Path) -> None:
    path = _write(
        tmp_path, "n.jsonl", json.dumps({"query_id": "a", "samples": [{"answer": "1"}, "2"]}) + "\n"
    )
    _fails(
        path,
        f"{path}, line 1, field 'samples': expected a list of JSON objects, found item 1 of "
        "type string",
    )


def test_nested_line_without_a_list(tmp_path: Path) -> None:
    first = json.dumps({"query_id": "a", "answers": ["1"]})
    path = _write(
        tmp_path, "n.jsonl", f"{first}\n\n{json.dumps({'query_id': 'b', 'answer': '1'})}\n"
    )
    _fails(
        path,
        f"{path}, line 3, field 'samples': expected a 'samples' or 'answers' list (the file is "
        "nested JSONL: its first record has one), found keys ['answer', 'query_id']",
    )


# --------------------------------------------------------------------------- grading on read


def test_grading_on_read_fills_only_null_correct(tmp_path: Path) -> None:
    from computealloc.data.grading import grade

    path = _write(
        tmp_path,
        "g.csv",
        "query_id,sample_idx,answer,correct,gold\n"
        "a,0,18,,18\n"
        "a,1,17,,18\n"
        "a,2,,,18\n"
        "a,3,17,true,\n"
        "b,0,1/2,,0.5\n"
        "c,0,4,,\n",
    )
    correct = read_samples(path).samples.set_index(["query_id", "sample_idx"])["correct"]
    graded = correct.loc[[("a", 0), ("a", 1), ("b", 0)]].tolist()
    assert graded == grade(["18", "17", "1/2"], ["18", "18", "0.5"]).tolist() == [True, False, True]
    assert correct.loc[[("a", 2), ("a", 3)]].tolist() == [False, True]  # no answer; label kept
    assert pd.isna(correct.loc[("c", 0)])  # no gold: stays unknown
    ungraded = read_samples(path, grade=False).samples["correct"]
    assert ungraded.isna().sum() == 5


# --------------------------------------------------------------------------- run labels


def test_run_columns_label_the_model(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "r.csv",
        "query_id,sample_idx,model,style,greedy,temperature\n"
        "q,0,m,cot,False,0.4\n"
        "q,0,m,pot,False,\n"
        "q,0,m,pot,True,\n",
    )
    _fails(
        path,
        f"{path}, line 3, field 'sample_idx': duplicate (query_id, sample_idx) = ('q', 0) for "
        "model 'm'; expected each (model, query_id, sample_idx) once, found it also at line 2",
    )
    log = read_samples(path, run_columns=["model", "style", "greedy", "temperature"])
    assert log.models == ["m/cot/0.4", "m/pot", "m/pot/greedy"]
    assert log.samples["style"].tolist() == ["cot", "pot", "pot"]


def test_run_columns_missing_and_colliding(tmp_path: Path) -> None:
    path = _write(tmp_path, "r.csv", "query_id,sample_idx,a,b\nq,0,x,\nq,0,,x\n")
    _fails(
        path,
        f"{path}, line 1, field 'c': missing column named in run_columns; expected columns "
        "['a', 'c'], found ['query_id', 'sample_idx', 'a', 'b']",
        run_columns=["a", "c"],
    )
    _fails(
        path,
        f"{path}, line 1, field 'a': run labels collide; expected 2 distinct labels (one per "
        "distinct combination of ['a', 'b']), found 1",
        run_columns=["a", "b"],
    )
    with pytest.raises(
        ValueError,
        match=_exact(
            "The 'run_columns' parameter of read_samples must be None or a non-empty sequence "
            "of column names. Got 'a' instead."
        ),
    ):
        read_samples(path, run_columns="a")
    with pytest.raises(
        ValueError, match=re.escape("'run_columns' parameter of SampleLog.from_frame")
    ):
        SampleLog.from_frame(pd.DataFrame({"query_id": ["q"], "sample_idx": [0]}), run_columns=[])


# --------------------------------------------------------------------------- subset


def test_subset_by_queries_models_and_mask() -> None:
    log = SampleLog.from_frame(_frame(), grade=False)
    only2 = log.subset(query_ids=[2])
    assert only2.samples["query_id"].unique().tolist() == ["2"] and only2.n_queries == 1
    only_n = log.subset(models=["n"])
    assert only_n.models == ["n"] and only_n.queries["query_id"].tolist() == ["2"]
    half = log.subset(sample_mask=log.samples["sample_idx"].to_numpy() == 0)
    assert half.samples["sample_idx"].tolist() == [0, 0, 0]
    pd.testing.assert_frame_equal(log.subset().samples, log.samples)


def test_subset_errors() -> None:
    log = SampleLog.from_frame(_frame(), grade=False)
    with pytest.raises(
        ValueError,
        match=_exact(
            "The 'query_ids' parameter of SampleLog.subset must name entries of the log. "
            "Got 1 unknown, e.g. '3'."
        ),
    ):
        log.subset(query_ids=["3"])
    with pytest.raises(ValueError, match=r"The 'models' parameter .* e\.g\. 'x'\."):
        log.subset(models=["x"])
    with pytest.raises(
        ValueError,
        match=_exact(
            "The 'sample_mask' parameter of SampleLog.subset must be a boolean array of shape "
            "(5,). Got dtype int64 and shape (2,) instead."
        ),
    ):
        log.subset(sample_mask=np.array([1, 0]))
    with pytest.raises(ValueError, match="select no samples"):
        log.subset(sample_mask=np.zeros(5, dtype=bool))


# --------------------------------------------------------------------------- line numbers


TRICKY_CSV = (
    '\n"query_id","sample_idx",prompt\r\n'
    'a,0,"two\nlines"\r\n'
    "\n"
    'a,1,"say ""x""\n\nthen, go"\n'
    "b,0,plain\n"
)


def test_quote_parity_line_table_equals_csv_module() -> None:
    fast_header, fast_lines = quote_parity_lines(TRICKY_CSV.encode())
    header, lines = scan_csv(TRICKY_CSV, "x")
    assert (header, lines.tolist()) == (2, [3, 6, 9])
    assert (fast_header, fast_lines.tolist()) == (header, lines.tolist())


def test_errors_after_multiline_fields_name_the_record_start_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "m.csv", TRICKY_CSV.replace("b,0,plain", "b,zz,plain"))
    _fails(path, f"{path}, line 9, field 'sample_idx': expected a non-negative integer, found 'zz'")


def test_odd_literal_quote_falls_back_to_the_csv_module(tmp_path: Path) -> None:
    path = _write(tmp_path, "m.csv", 'query_id,sample_idx,prompt\na,0,5"\nb,x,y\n')
    _fails(path, f"{path}, line 3, field 'sample_idx': expected a non-negative integer, found 'x'")


# --------------------------------------------------------------------------- malformed input


def test_missing_required_column(tmp_path: Path) -> None:
    path = _write(tmp_path, "s.csv", "qid,sample_idx\nq,0\n")
    _fails(
        path,
        f"{path}, line 1, field 'query_id': missing required column; expected columns "
        "'query_id' and 'sample_idx', found 'qid', 'sample_idx' (to read 'qid' as 'query_id': "
        "columns={'qid': 'query_id'}, --map qid=query_id)",
    )
    path = _write(tmp_path, "s.jsonl", '\n{"query_id": "q"}\n')
    _fails(
        path,
        f"{path}, line 2, field 'sample_idx': missing required column; expected columns "
        "'query_id' and 'sample_idx', found 'query_id'",
    )
    with pytest.raises(
        SampleLogError,
        match=_exact(
            "<frame>, field 'sample_idx': missing required column; expected columns 'query_id' "
            "and 'sample_idx', found 'query_id'"
        ),
    ):
        SampleLog.from_frame(pd.DataFrame({"query_id": ["q"]}))


def test_required_value_missing_in_one_jsonl_record(tmp_path: Path) -> None:
    path = _write(tmp_path, "s.jsonl", '{"query_id": "q", "sample_idx": 0}\n{"query_id": "q"}\n')
    _fails(path, f"{path}, line 2, field 'sample_idx': expected a non-negative integer, found null")


def test_wrong_type_sample_idx(tmp_path: Path) -> None:
    path = _write(tmp_path, "s.csv", f"{HEADER}q,0,1,true,3,0.5,1,p\nq,abc,1,true,3,0.5,1,p\n")
    _fails(
        path, f"{path}, line 3, field 'sample_idx': expected a non-negative integer, found 'abc'"
    )
    path = _write(tmp_path, "s.jsonl", '{"query_id": "q", "sample_idx": 1.5}\n')
    _fails(path, f"{path}, line 1, field 'sample_idx': expected a non-negative integer, found 1.5")


def test_wrong_type_tokens(tmp_path: Path) -> None:
    path = _write(tmp_path, "s.csv", f"{HEADER}q,0,1,true,x,0.5,1,p\n")
    _fails(
        path, f"{path}, line 2, field 'tokens': expected a non-negative number or null, found 'x'"
    )


def test_nullable_frame_columns() -> None:
    ok = pd.DataFrame(
        {
            "query_id": ["a", "a"],
            "sample_idx": pd.array([0, 1], dtype="Int64"),
            "tokens": pd.array([3, None], dtype="Int64"),
            "correct": pd.array([1, None], dtype="Int64"),
            "answer": pd.array(["x", None], dtype="string"),
        }
    )
    s = SampleLog.from_frame(ok).samples
    assert s["tokens"].fillna(-1).tolist() == [3.0, -1.0]
    assert s["correct"].isna().tolist() == [False, True] and bool(s["correct"].iloc[0])
    bad = ok.assign(sample_idx=pd.array([0, None], dtype="Int64"))
    with pytest.raises(
        SampleLogError,
        match=_exact(
            "<frame>, row 1, field 'sample_idx': expected a non-negative integer, found null"
        ),
    ):
        SampleLog.from_frame(bad)


def test_wrong_type_query_id_in_frame() -> None:
    with pytest.raises(
        SampleLogError,
        match=_exact(
            "<frame>, row 1, field 'query_id': expected a non-empty string or an integer, found 1.5"
        ),
    ):
        SampleLog.from_frame(pd.DataFrame({"query_id": ["a", 1.5], "sample_idx": [0, 0]}))


def test_empty_files(tmp_path: Path) -> None:
    for name in ("e.csv", "e.jsonl", "e.parquet"):
        path = _write(tmp_path, name, b"")
        _fails(path, f"{path}: empty file (0 bytes); expected at least one sample record")
    path = _write(tmp_path, "e.csv.gz", b"")
    _fails(
        path,
        f"{path}: empty file (0 bytes after gzip decompression); expected at least one "
        "sample record",
    )


def test_header_only_csv(tmp_path: Path) -> None:
    path = _write(tmp_path, "h.csv", HEADER)
    _fails(path, f"{path}, line 1: no sample records; expected at least one sample record")


def test_blank_only_jsonl(tmp_path: Path) -> None:
    path = _write(tmp_path, "b.jsonl", "\n  \n")
    _fails(path, f"{path}: no JSON records (only blank lines); expected at least one sample record")


def test_truncated_jsonl_last_line(tmp_path: Path) -> None:
    path = _write(
        tmp_path, "t.jsonl", '{"query_id": "q", "sample_idx": 0}\n{"query_id": "q", "sample_id'
    )
    _fails(
        path,
        f"{path}, line 2: invalid JSON (Unterminated string starting at at column 19); expected "
        "one complete JSON object per line",
    )


def test_deeply_nested_jsonl_line_is_a_clean_error(tmp_path: Path) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    path = _write(tmp_path, "d.jsonl", '{"query_id": "q", "sample_idx": 0}\n' + deep + "\n")
    _fails(
        path,
        f"{path}, line 2: JSON nested too deeply to read; expected one flat JSON object per line",
    )


def test_jsonl_line_that_is_not_an_object(tmp_path: Path) -> None:
    path = _write(tmp_path, "t.jsonl", '{"query_id": "q", "sample_idx": 0}\n[1, 2]\n')
    _fails(path, f"{path}, line 2: expected a JSON object, found a JSON array")


def test_csv_unterminated_quote(tmp_path: Path) -> None:
    path = _write(tmp_path, "u.csv", f'{HEADER}q,0,1,true,3,0.5,1,p\nq,1,1,true,3,0.5,1,"cut off\n')
    _fails(
        path,
        f"{path}, line 3, field 'prompt': unterminated quoted field; expected a closing '\"' "
        "before the end of the file, found the end of the file",
    )


def test_csv_row_with_fewer_fields(tmp_path: Path) -> None:
    path = _write(tmp_path, "f.csv", f"{HEADER}q,0,1,true,3,0.5,1,p\nq,1,1,tr")
    _fails(
        path,
        f"{path}, line 3, field 'tokens': expected 8 fields as in the header, found 4 "
        "(the record ends before this field)",
    )


def test_csv_row_with_more_fields(tmp_path: Path) -> None:
    path = _write(tmp_path, "f.csv", f"{HEADER}q,0,1,true,3,0.5,1,p,extra\n")
    _fails(path, f"{path}, line 2: expected 8 fields as in the header, found 9")


@pytest.mark.parametrize(
    ("name", "data", "line"),
    [
        ("bad.csv", b"query_id,sample_idx,answer\nq,0,ok\nq,1,caf\xff\n", 3),
        ("bad.jsonl", b'{"query_id": "q", "sample_idx": 0}\n{"answer": "caf\xff"}\n', 2),
    ],
)
def test_invalid_utf8_names_line_and_byte(
    tmp_path: Path, name: str, data: bytes, line: int
) -> None:
    path = _write(tmp_path, name, data)
    pos = data.index(b"\xff")
    column = pos - (data.rindex(b"\n", 0, pos) + 1)
    _fails(
        path,
        f"{path}, line {line}: invalid UTF-8 byte 0xff at byte offset {pos} of the file (byte "
        f"{column} of the line); expected UTF-8 text",
    )


def test_invalid_utf8_in_gzip_reports_decompressed_offset(tmp_path: Path) -> None:
    path = _write(tmp_path, "bad.csv.gz", b"query_id,sample_idx\n\xc3(,0\n")
    _fails(
        path,
        f"{path}, line 2: invalid UTF-8 byte 0xc3 at byte offset 20 of the decompressed file "
        "(byte 0 of the line); expected UTF-8 text",
    )


def test_duplicate_key(tmp_path: Path) -> None:
    path = _write(tmp_path, "d.csv", "query_id,sample_idx,model\nq,0,m\nq,1,m\nq,0,n\nq,1,m\n")
    _fails(
        path,
        f"{path}, line 5, field 'sample_idx': duplicate (query_id, sample_idx) = ('q', 1) for "
        "model 'm'; expected each (model, query_id, sample_idx) once, found it also at line 3",
    )
    with pytest.raises(
        SampleLogError,
        match=_exact(
            "<frame>, row 1, field 'sample_idx': duplicate (query_id, sample_idx) = ('1', 0) "
            "for model 'default'; expected each (model, query_id, sample_idx) once, found it "
            "also at row 0"
        ),
    ):
        SampleLog.from_frame(pd.DataFrame({"query_id": [1, "1"], "sample_idx": [0, 0]}))


@pytest.mark.parametrize(
    ("field", "value", "column"),
    [("score", "nan", 6), ("score", "inf", 6), ("tokens", "NaN", 5), ("tokens", "-inf", 5)],
)
def test_nan_or_inf_in_csv(tmp_path: Path, field: str, value: str, column: int) -> None:
    cells = ["q", "0", "1", "true", "3", "0.5", "1", "p"]
    cells[column - 1] = value
    path = _write(tmp_path, "n.csv", HEADER + ",".join(cells) + "\n")
    expected = "a finite number or null"
    _fails(path, f"{path}, line 2, field '{field}': expected {expected}, found '{value}'")


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_or_inf_in_jsonl(tmp_path: Path, literal: str) -> None:
    path = _write(
        tmp_path, "n.jsonl", f'{{"query_id": "q", "sample_idx": 0, "score": {literal}}}\n'
    )
    _fails(
        path, f"{path}, line 1, field 'score': expected a finite number or null, found '{literal}'"
    )


def test_nan_in_parquet_and_inf_in_frame(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "n.parquet"
    tokens = pa.array([None, float("nan")], type=pa.float64())
    pq.write_table(pa.table({"query_id": ["q", "q"], "sample_idx": [0, 1], "tokens": tokens}), path)
    _fails(path, f"{path}, row 1, field 'tokens': expected a finite number or null, found nan")
    with pytest.raises(
        SampleLogError,
        match=_exact("<frame>, row 0, field 'score': expected a finite number or null, found inf"),
    ):
        SampleLog.from_frame(
            pd.DataFrame({"query_id": ["q"], "sample_idx": [0], "score": [np.inf]})
        )


def test_negative_tokens(tmp_path: Path) -> None:
    path = _write(tmp_path, "t.jsonl", '{"query_id": "q", "sample_idx": 0, "tokens": -3}\n')
    _fails(
        path, f"{path}, line 1, field 'tokens': expected a non-negative number or null, found -3"
    )


def test_two_golds_for_one_query(tmp_path: Path) -> None:
    path = _write(tmp_path, "g.csv", "query_id,sample_idx,gold\nq,0,5\nq,1,\nr,0,1\nq,2,6\n")
    _fails(
        path,
        f"{path}, line 5, field 'gold': query 'q' has two different gold values; expected one "
        "gold per query_id, found '6' here and '5' at line 2",
    )


def test_two_prompts_for_one_query(tmp_path: Path) -> None:
    lines = [{"query_id": "q", "sample_idx": i, "prompt": p} for i, p in enumerate(["a", "a", "b"])]
    path = _write(tmp_path, "p.jsonl", "".join(json.dumps(r) + "\n" for r in lines))
    _fails(
        path,
        f"{path}, line 3, field 'prompt': query 'q' has two different prompt values; expected "
        "one prompt per query_id, found 'b' here and 'a' at line 1",
    )


@pytest.mark.parametrize(("cell", "shown"), [("maybe", "'maybe'"), ("2", "'2'")])
def test_correct_neither_bool_nor_null_csv(tmp_path: Path, cell: str, shown: str) -> None:
    path = _write(tmp_path, "c.csv", f"query_id,sample_idx,correct\nq,0,true\nq,1,{cell}\n")
    _fails(
        path, f"{path}, line 3, field 'correct': expected true, false, 1, 0 or null, found {shown}"
    )


def test_correct_neither_bool_nor_null_json_and_frame(tmp_path: Path) -> None:
    path = _write(tmp_path, "c.jsonl", '{"query_id": "q", "sample_idx": 0, "correct": 2}\n')
    _fails(path, f"{path}, line 1, field 'correct': expected true, false, 1, 0 or null, found 2")
    with pytest.raises(
        SampleLogError,
        match=_exact(
            "<frame>, row 0, field 'correct': expected true, false, 1, 0 or null, found 2"
        ),
    ):
        SampleLog.from_frame(pd.DataFrame({"query_id": ["q"], "sample_idx": [0], "correct": [2]}))


def test_answer_that_is_a_list(tmp_path: Path) -> None:
    path = _write(tmp_path, "a.jsonl", '{"query_id": "q", "sample_idx": 0, "answer": [1]}\n')
    _fails(path, f"{path}, line 1, field 'answer': expected a string, found [1]")


def test_unknown_suffix_and_bad_arguments(tmp_path: Path) -> None:
    path = _write(tmp_path, "log.txt", "query_id,sample_idx\nq,0\n")
    _fails(
        path,
        f"{path}: cannot tell the format from the file name; expected a name ending in .csv, "
        ".jsonl, .ndjson, .parquet or .pq (.csv.gz, .jsonl.gz compressed) or format=, "
        "found 'log.txt'",
    )
    with pytest.raises(
        ValueError,
        match=_exact(
            "The 'format' parameter of read_samples must be one of 'csv', 'jsonl', 'parquet' or "
            "None. Got 'xml' instead."
        ),
    ):
        read_samples(path, format="xml")  # type: ignore[arg-type]
    with pytest.raises(
        TypeError,
        match=_exact(
            "The 'path_or_frame' parameter of read_samples must be a path, a DataFrame or a "
            "SampleLog. Got int instead."
        ),
    ):
        read_samples(3)


def test_unreadable_parquet(tmp_path: Path) -> None:
    path = _write(tmp_path, "x.parquet", b"not parquet at all")
    prefix = re.escape(f"{path}: not a readable Parquet file (")
    suffix = re.escape("); expected a Parquet table")
    _fails(path, re.compile(f"^{prefix}.*magic bytes not found.*{suffix}$"))


def test_truncated_gzip(tmp_path: Path) -> None:
    path = tmp_path / "x.csv.gz"
    path.write_bytes(gzip.compress(b"query_id,sample_idx\nq,0\n")[:-6])
    _fails(
        path,
        f"{path}: not a readable gzip file (Compressed file ended before the end-of-stream "
        "marker was reached); expected a complete gzip stream",
    )


def test_fifty_megabyte_line(tmp_path: Path) -> None:
    size = 50 * 2**20
    path = tmp_path / "big.jsonl"
    with path.open("wb") as fh:
        fh.write(b'{"query_id": "q", "sample_idx": 0, "answer": "1", "response": "')
        fh.write(b"x" * size)
        fh.write(b'"}\n')
    log = read_samples(path)
    assert len(log.samples["response"].iloc[0]) == size
    cut = tmp_path / "cut.jsonl"
    with cut.open("wb") as fh:
        fh.write(b'{"query_id": "q", "sample_idx": 0, "response": "')
        fh.write(b"x" * size)
    _fails(
        cut,
        f"{cut}, line 1: invalid JSON (Unterminated string starting at at column 48); expected "
        "one complete JSON object per line",
    )


def test_fifty_megabyte_csv_field(tmp_path: Path) -> None:
    size = 50 * 2**20
    path = tmp_path / "big.csv"
    with path.open("wb") as fh:
        fh.write(b'query_id,sample_idx,response\nq,0,"')
        fh.write(b"y" * size)
        fh.write(b'"\nq,1,short\n')
    log = read_samples(path)
    assert log.samples["response"].str.len().tolist() == [size, 5]


# --------------------------------------------------------------------------- real data


MOT_RUN = ["model", "dataset", "prompt_style", "variant", "greedy", "temperature"]


@needs_data
def test_mot_cascade_needs_run_columns(shared_data: Path) -> None:
    path = shared_data / "mot_cascade" / "samples.csv.gz"
    _fails(
        path,
        f"{path}, line 7774, field 'sample_idx': duplicate (query_id, sample_idx) = "
        "('date-0000', 0) for model 'gpt-3.5-turbo'; expected each (model, query_id, "
        "sample_idx) once, found it also at line 2",
    )
    log = read_samples(path, run_columns=MOT_RUN)
    assert len(log.samples) == 260_751
    assert len(log.models) == 69
    assert log.n_queries == 6_479
    assert log.samples["correct"].notna().all()
    per_query = log.samples_per_query
    assert per_query["llama-2-13b/gsm/pot2"].agg(["size", "min", "max"]).tolist() == [400, 24, 24]
    assert per_query["gpt-3.5-turbo/date/cot1/40"].agg(["size", "min"]).tolist() == [369, 40]
    assert log.queries["dataset"].value_counts().to_dict() == {
        "asdiv": 2096,
        "gsm": 1319,
        "tabmwp": 1000,
        "navigate": 1000,
        "crepe": 695,
        "date": 369,
    }
    date = log.samples[log.samples["query_id"] == "date-0000"]
    assert date["answer"].iloc[0] == "05/01/2021"
    single = log.samples[log.samples["model"] == "gpt-3.5-turbo/date/cot1"]["correct"].mean()
    assert single == pytest.approx(0.6144, abs=5e-5)


@needs_data
def test_qwen25math_rm_maj(shared_data: Path) -> None:
    log = read_samples(shared_data / "qwen25math_rm_maj" / "samples.csv.gz")
    assert len(log.samples) == 800 and log.n_queries == 100
    assert set(log.samples_per_query) == {8}
    assert log.samples["score"].notna().all() and log.samples["tokens"].isna().all()
    assert log.queries["level"].value_counts().to_dict() == {
        "Level 5": 25,
        "Level 4": 24,
        "Level 3": 24,
        "Level 2": 16,
        "Level 1": 11,
    }
    assert log.samples["correct"].mean() == pytest.approx(0.91)


@needs_data
def test_zeroeval_math_l5(shared_data: Path) -> None:
    log = read_samples(shared_data / "zeroeval_math_l5" / "samples.csv.gz")
    assert len(log.samples) == 28_529 and log.n_queries == 721 and len(log.models) == 40
    counts = log.samples.groupby("model").size()
    assert counts["Meta-Llama-3.1-70B-Instruct@hyperbolic"] == 425
    acc = log.samples.groupby("model")["correct"].mean()
    assert acc["o1-mini-2024-09-12"] == pytest.approx(0.8918, abs=5e-5)
    assert {"chars", "extraction", "generator"} <= set(log.samples.columns)
