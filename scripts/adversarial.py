"""An adversarial pass over the command line: malformed logs, bad parameters, racing writers.

Runs every case as a real ``computealloc`` process and sorts each outcome into one class:

- ``clean error``: a non-zero exit with a message and no Python traceback;
- ``success``: exit 0 (right for inputs that are valid, e.g. a BOM or an extra column, and
  for inputs that must be accepted with a warning, when the warning was printed);
- ``traceback``: a Python traceback was printed (a defect);
- ``abort``: the process died of a signal (a defect);
- ``wrong success``: exit 0 on an input that must be refused, or without the warning it
  must give (a defect).

Usage (a few minutes on 2 cores)::

    PYTHONPATH=src python scripts/adversarial.py            # prints the table and the defects
    PYTHONPATH=src python scripts/adversarial.py --quick    # two commands per log instead of four

Exit status 1 when a defect was found.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

CLI = [sys.executable, "-c", "from computealloc.cli import app; app()"]


@dataclass(frozen=True)
class Case:
    """One input: a name, how to write it, and what is right: ``"error"`` (refused),
    ``"valid"`` (accepted) or ``"warn"`` (accepted with a printed warning)."""

    name: str
    write: Callable[[Path], Path]
    expect: str = "error"
    quiet: tuple[str, ...] = ()  # commands for which a "warn" input is valid without a warning


def _rows(n_queries: int = 24, n: int = 8) -> list[dict[str, object]]:
    rows = []
    for q in range(n_queries):
        for j in range(n):
            answer = str(q if (q * 7 + j * 3) % 5 else q + 1)
            rows.append(
                {
                    "query_id": f"q{q}",
                    "sample_idx": j,
                    "model": "m",
                    "prompt": f"What is {q}?",
                    "gold": str(q),
                    "answer": answer,
                    "correct": answer == str(q),
                    "tokens": 10 + j,
                }
            )
    return rows


def _jsonl(rows: list[dict[str, object]]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def _csv(rows: list[dict[str, object]]) -> bytes:
    keys = list(rows[0])
    lines = [",".join(keys)] + [",".join(str(r[k]) for k in keys) for r in rows]
    return ("\n".join(lines) + "\n").encode()


def _file(name: str, data: bytes | Callable[[], bytes]) -> Callable[[Path], Path]:
    def write(folder: Path) -> Path:
        path = folder / name
        path.write_bytes(data() if callable(data) else data)
        return path

    return write


def _edit(suffix: str, change: Callable[[list[dict[str, object]]], None]) -> Callable[[], bytes]:
    def build() -> bytes:
        rows = _rows()
        change(rows)
        return _jsonl(rows) if suffix == "jsonl" else _csv(rows)

    return build


def _set(index: int, key: str, value: object) -> Callable[[list[dict[str, object]]], None]:
    def change(rows: list[dict[str, object]]) -> None:
        rows[index][key] = value

    return change


def _drop(key: str) -> Callable[[list[dict[str, object]]], None]:
    def change(rows: list[dict[str, object]]) -> None:
        for r in rows:
            r.pop(key, None)

    return change


def _rename(old: str, new: str) -> Callable[[list[dict[str, object]]], None]:
    def change(rows: list[dict[str, object]]) -> None:
        for r in rows:
            r[new] = r.pop(old)

    return change


def _short_query(rows: list[dict[str, object]]) -> None:
    del rows[1:8]  # q0 keeps one sample, the others eight


def _directory(folder: Path) -> Path:
    path = folder / "a-directory.jsonl"
    path.mkdir()
    return path


def cases() -> list[Case]:
    """The malformed (and a few valid but unusual) logs."""
    big = 2**65
    out = [
        Case("valid jsonl", _file("ok.jsonl", _jsonl(_rows())), "valid"),
        Case("valid csv", _file("ok.csv", _csv(_rows())), "valid"),
        Case("csv with BOM", _file("bom.csv", b"\xef\xbb\xbf" + _csv(_rows())), "valid"),
        Case("extra column", _file("extra.jsonl", _edit("jsonl", _set(0, "note", "x"))), "valid"),
        Case("empty file", _file("empty.jsonl", b"")),
        Case("header only", _file("header.csv", b"query_id,sample_idx,answer,correct\n")),
        Case("binary garbage", _file("garbage.jsonl", bytes(range(256)) * 4)),
        Case("latin-1 bytes", _file("latin.csv", _csv(_rows()).replace(b"What", b"Wh\xe9t"))),
        Case("truncated json", _file("trunc.jsonl", _jsonl(_rows())[:-20])),
        Case("json array line", _file("array.jsonl", b"[1, 2, 3]\n" + _jsonl(_rows()))),
        Case("deep json", _file("deep.jsonl", b"[" * 100000 + b"]" * 100000 + b"\n")),
        Case("missing query_id", _file("noqid.jsonl", _edit("jsonl", _drop("query_id")))),
        Case(
            "missing answer (optional column)",
            _file("noans.jsonl", _edit("jsonl", _drop("answer"))),
            "valid",
        ),
        Case(
            "is_correct column",
            _file("isc.csv", _edit("csv", _rename("correct", "is_correct"))),
            "warn",
        ),
        Case("query_id list", _file("qlist.jsonl", _edit("jsonl", _set(3, "query_id", [1])))),
        Case("sample_idx 1.5", _file("s15.jsonl", _edit("jsonl", _set(3, "sample_idx", 1.5)))),
        Case("sample_idx -1", _file("sneg.jsonl", _edit("jsonl", _set(3, "sample_idx", -1)))),
        Case("sample_idx 2^65", _file("sbig.jsonl", _edit("jsonl", _set(3, "sample_idx", big)))),
        Case("sample_idx text", _file("stext.csv", _edit("csv", _set(3, "sample_idx", "abc")))),
        Case("duplicate sample", _file("dup.jsonl", _edit("jsonl", _set(1, "sample_idx", 0)))),
        Case("correct maybe", _file("maybe.jsonl", _edit("jsonl", _set(2, "correct", "maybe")))),
        Case(
            "markup in value",
            _file("markup.jsonl", _edit("jsonl", _set(2, "correct", "[bold red]maybe"))),
        ),
        Case("closing tag", _file("tag.jsonl", _edit("jsonl", _set(2, "correct", "[/x]")))),
        Case("tokens NaN", _file("nan.csv", _edit("csv", _set(4, "tokens", "nan")))),
        Case("tokens inf", _file("inf.csv", _edit("csv", _set(4, "tokens", "inf")))),
        Case("tokens negative", _file("negt.jsonl", _edit("jsonl", _set(4, "tokens", -3)))),
        Case("answer object", _file("ansobj.jsonl", _edit("jsonl", _set(5, "answer", {"a": 1})))),
        Case(
            "one short query",
            _file("short.jsonl", _edit("jsonl", _short_query)),
            "warn",
            quiet=("inspect",),  # inspect shows samples per query; it builds no actions
        ),
        Case("missing file", lambda folder: folder / "does-not-exist.jsonl"),
        Case("a directory", _directory),
    ]
    return out


def _commands(log: Path, out: Path, quick: bool) -> list[list[str]]:
    commands = [
        ["inspect", str(log)],
        ["fit", str(log), "--budget", "2", "-o", str(out / "p.json")],
    ]
    if not quick:
        commands += [
            ["estimate", str(log), "-o", str(out / "t.parquet")],
            ["evaluate", str(log), "--budgets", "1,2", "--seeds", "1", "--out", str(out / "ev")],
        ]
    return commands


def _parameters(log: Path, out: Path) -> list[list[str]]:
    """Bad values of every kind of flag (each must be a clean error naming the flag)."""
    fit = ["fit", str(log), "-o", str(out / "p.json")]
    evaluate = ["evaluate", str(log), "--out", str(out / "ev")]
    (out / "a-dir.json").mkdir(exist_ok=True)
    (out / "a-file").write_text("x")
    return [
        [*fit, "--budget", "nan"],
        [*fit, "--budget", "-1"],
        [*fit, "--budget", "inf"],
        [*fit, "--budget", "abc"],
        [*fit, "--budget", "2", "--cost", "bananas"],
        [*fit, "--budget", "2", "--method", "valeu"],
        [*fit, "--budget", "2", "--actions", "majority@0"],
        [*fit, "--budget", "2", "--actions", "nonsense"],
        [*fit, "--budget", "2", "--price", "m"],
        [*fit, "--budget", "2", "--price", "m=-1"],
        ["fit", str(log), "--budget", "2", "-o", str(out / "a-dir.json")],
        [*evaluate, "--budgets", "nan"],
        [*evaluate, "--budgets", ""],
        [*evaluate, "--budgets", "1,,2"],
        [*evaluate, "--budgets", "1", "--protocol", "heldout"],
        [*evaluate, "--budgets", "1", "--seeds", "0"],
        ["evaluate", str(log), "--budgets", "1", "--out", str(out / "a-file")],
        ["estimate", str(log), "-o", str(out / "t.parquet"), "--cost", "bananas"],
        ["solve", str(out / "nope.parquet"), "--budget", "1"],
        ["serve", "--policy", str(out / "nope.json"), "--budget", "1", "--port", "99999"],
        ["serve", "--policy", str(out / "nope.json"), "--budget", "1", "--temperature", "-1"],
        ["serve", "--policy", str(out / "nope.json"), "--budget", "1", "--max-tokens", "0"],
        ["collect", str(log), "-o", str(out), "-n", "2", "--replay", str(log)],
    ]


def run(args: list[str], timeout: float = 300) -> tuple[int, str]:
    env = {**os.environ, "COLUMNS": "200"}
    done = subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
    return done.returncode, done.stdout + done.stderr


def classify(code: int, output: str, expect: str) -> str:
    if code < 0 or code >= 128:
        return "abort"
    if "Traceback (most recent call last)" in output:
        return "traceback"
    if code == 0:
        right = expect == "valid" or (expect == "warn" and "warning" in output)
        return "success" if right else "wrong success"
    return "clean error"


def _race(folder: Path) -> str:
    """Two concurrent collects on one output file (a slow fake server behind them): the second
    must fail at once, the first must write a complete log without duplicates."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from fake_openai_server import make_app, running

    queries = folder / "queries.jsonl"
    lines = [json.dumps({"query_id": f"q{q}", "prompt": f"What is {q}?"}) for q in range(24)]
    queries.write_text("\n".join(lines) + "\n")
    out = folder / "raced.jsonl"
    env = {**os.environ, "COLUMNS": "200"}
    with running(make_app(latency_s=0.5)) as url:
        args = ["collect", str(queries), "-o", str(out), "-n", "8", "--concurrency", "1"]
        args += ["--base-url", url, "--model", "m"]
        first = subprocess.Popen(
            [*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env
        )
        while not out.exists() and first.poll() is None:  # the first holds the lock
            time.sleep(0.05)
        code, output = run(args)
        still_running = first.poll() is None
        first_out = first.communicate(timeout=300)[0].decode()
    rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    keys = Counter((r["model"], r["query_id"], r["sample_idx"]) for r in rows)
    ok = (
        still_running
        and first.returncode == 0
        and code != 0
        and "another collect is writing" in " ".join(output.split())
        and "Traceback" not in output + first_out
        and len(rows) == 24 * 8
        and max(keys.values()) == 1
    )
    detail = f"first {first.returncode}, second {code}, {len(rows)} rows"
    return "clean error" if ok else f"defect ({detail}): {output[-300:]!r}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two commands per log, not four")
    options = parser.parse_args()
    tally: Counter[str] = Counter()
    defects: list[str] = []
    with tempfile.TemporaryDirectory(prefix="adversarial-") as tmp:
        root = Path(tmp)
        for case in cases():
            folder = root / case.name.replace(" ", "-")
            folder.mkdir()
            log = case.write(folder)
            for command in _commands(log, folder, options.quick):
                code, output = run(command)
                expect = "valid" if command[0] in case.quiet else case.expect
                outcome = classify(code, output, expect)
                tally[outcome] += 1
                if outcome in ("traceback", "abort", "wrong success"):
                    defects.append(f"{outcome}: {case.name}: {command[0]}: {output[-300:]!r}")
        ok_log = cases()[0].write(root)
        for command in _parameters(ok_log, root):
            code, output = run(command)
            outcome = classify(code, output, "error")
            tally[outcome] += 1
            if outcome != "clean error":
                defects.append(f"{outcome}: parameters {command[1:]}: {output[-300:]!r}")
        race = _race(root)
        tally[race if race == "clean error" else "race defect"] += 1
        if race != "clean error":
            defects.append(f"concurrent collect: {race}")
    print("| outcome | runs |\n|---|---|")
    for outcome, count in sorted(tally.items()):
        print(f"| {outcome} | {count} |")
    for defect in defects:
        print(defect)
    return 1 if defects else 0


if __name__ == "__main__":
    sys.exit(main())
