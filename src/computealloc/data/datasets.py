"""Named public sources of sample logs, read from a local mirror.

Every source under the data root (the folder named by the ``COMPUTEALLOC_DATA`` environment
variable) is readable by name::

    >>> from computealloc.data import datasets
    >>> log = datasets.load("mot_cascade:llama-2-13b/gsm/pot2")  # doctest: +SKIP
    >>> [s.name for s in datasets.sources()]  # doctest: +SKIP
    ['mot_cascade', 'qwen25math_rm_maj', 'routellm', 'routerdc', 'zeroeval_gsm8k', ...]

Names
-----
``load("SOURCE")`` loads a whole source; ``load("SOURCE:SELECTOR")`` loads the runs the selector
matches. A source is made of runs (:func:`runs` lists them); a run is named by the value of the
column given by :attr:`Source.runs_by` (``model`` or ``dataset``). A run label is a sequence of
'/'-separated segments, and a selector matches every run whose label contains the selector as
whole consecutive segments: for mot_cascade ``gsm`` selects every GSM8K run,
``llama-2-13b/gsm`` the two Llama-2 GSM8K runs, ``gsm/pot2`` the pot2 runs of every model and
``llama-2-13b/gsm/pot2`` exactly one run.

mot_cascade run labels are ``MODEL/TASK/PROMPT[-VARIANT][-greedy]``: ``PROMPT`` is cot1, cot2,
pot1 or pot2; ``VARIANT`` is ``t0.4`` / ``t0.8`` (sampling temperature), ``40`` (40 samples per
question instead of 20) or ``v2`` (the authors' second CREPE prompt set); ``-greedy`` marks the
GPT-4 greedy-decoding files. Examples: ``gpt-3.5-turbo/date/cot1-t0.4``,
``gpt-3.5-turbo/date/cot1-40``, ``gpt-4/gsm/cot1-greedy``, ``llama-2-13b/crepe/pot1-v2``.

The data root is ``COMPUTEALLOC_DATA`` when set; otherwise ``../shared/data`` relative to the
current directory, then relative to the repository holding this package.
"""

from __future__ import annotations

import difflib
import gzip
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from computealloc.data.grading import extract_answer
from computealloc.data.samples import SampleLog, read_samples

__all__ = [
    "ENV_VAR",
    "DataSourceNotFoundError",
    "Source",
    "data_root",
    "is_available",
    "load",
    "open_log",
    "runs",
    "sources",
]

ENV_VAR = "COMPUTEALLOC_DATA"
_REPO = Path(__file__).resolve().parents[3]
_DEFAULT_RELATIVE = Path("..") / "shared" / "data"


class DataSourceNotFoundError(FileNotFoundError):
    """A named source is not present under the data root."""


@dataclass(frozen=True)
class Source:
    """A public source of LLM samples and how to obtain it.

    Attributes
    ----------
    name : str
        Name used by :func:`load` and as the folder name under the data root.
    title : str
        One-line description.
    repo : str
        Origin repository URL.
    commit : str
        Origin commit the files were taken from.
    paths : tuple of str
        Origin paths inside ``repo``.
    license : str
        License of the origin repository (``"not stated"`` when it has none).
    files : tuple of str
        Files (relative to the source folder) that :func:`load` reads; all must exist.
    runs_by : {"model", "dataset"}
        Column of the loaded :class:`~computealloc.data.samples.SampleLog` whose values name the
        runs of the source.
    fields : Mapping of str to str
        The columns of the loaded log and what each holds.
    obtain : str
        How a user gets the files.
    """

    name: str
    title: str
    repo: str
    commit: str
    paths: tuple[str, ...]
    license: str
    files: tuple[str, ...]
    runs_by: Literal["model", "dataset"]
    fields: Mapping[str, str]
    obtain: str

    @property
    def bundle_ok(self) -> bool:
        """Whether a slice may ship with the package (only Apache-2.0 sources may)."""
        return self.license == "Apache-2.0"


_MIRROR = (
    "The local mirror (one folder per source under the data root) is staged by the "
    "computealloc maintainers; its README.md documents every conversion."
)

_SOURCES: tuple[Source, ...] = (
    Source(
        name="mot_cascade",
        title="Multi-sample CoT/PoT answers of GPT-3.5, GPT-4 and Llama-2-13B on six reasoning "
        "tasks (LLM Cascades with Mixture of Thought Representations, Yue et al., ICLR 2024)",
        repo="https://github.com/MurongYue/LLM_MoT_cascade",
        commit="8db97e652d196ce6380927c3b4df8af6d6c09746",
        paths=("GPT3_result/*.json", "GPT4_result/*.json", "llama2_13B_result/*.json"),
        license="not stated",
        files=("samples.csv.gz",),
        runs_by="model",
        fields={
            "query_id": "'<task>-<qid>' with a 4-digit question index; the same question has "
            "the same id in every run of a task",
            "sample_idx": "index of the sample within the run",
            "model": "run label MODEL/TASK/PROMPT[-VARIANT][-greedy] (module docstring)",
            "answer": "the authors' extracted answer (executed program value for PoT); NA for "
            "padded samples whose program failed",
            "correct": "numeric match within 1e-4 relative (gsm, asdiv, tabmwp) or "
            "case-insensitive exact match (date, navigate, crepe); padded samples are wrong",
            "chars": "characters of the raw completion (NaN where not index-aligned)",
            "dataset": "task: gsm, asdiv, tabmwp, date, navigate, crepe",
            "prompt, gold": "question text and gold answer",
            "prompt_style, variant, greedy, temperature, source_file": "run metadata",
        },
        obtain="Clone the repo at the commit and take the JSON files under the three result "
        "folders (files of 4 MiB and more were not mirrored). The mirror keeps them as "
        "raw/*.jsonl.gz and flattens them into samples.csv.gz, which load reads. " + _MIRROR,
    ),
    Source(
        name="qwen25math_rm_maj",
        title="8 sampled CoT solutions per MATH question with reward-model scores "
        "(Qwen2.5-Math rm_maj_eval example input)",
        repo="https://github.com/QwenLM/Qwen2.5-Math",
        commit="a45202bd16f1ec06f433442dc1152d0074773465",
        paths=("evaluation/data/eval_rm_maj_example/math_cot_100.jsonl",),
        license="not stated",
        files=("samples.csv.gz",),
        runs_by="dataset",
        fields={
            "query_id": "the file's idx",
            "sample_idx": "0..7",
            "model": "placeholder: the file does not name the policy model",
            "answer": "the authors' extracted answer (pred)",
            "correct": "the authors' label (their math_equal grader)",
            "score": "reward-model score of the sample (pred_score), for best-of-k",
            "chars": "characters of the raw completion",
            "dataset": "'math' (the only run)",
            "prompt, gold, level": "question, gold answer, MATH level",
        },
        obtain="Download the file from the repo at the commit; the mirror keeps it as "
        "math_cot_100.jsonl.gz and flattens it into samples.csv.gz, which load reads. " + _MIRROR,
    ),
    Source(
        name="routellm",
        title="GSM8K and MMLU correctness of Mixtral-8x7B and GPT-4 per prompt (RouteLLM)",
        repo="https://github.com/lm-sys/RouteLLM",
        commit="0b64fdafe049e596a3f5657c219329f24af24198",
        paths=(
            "routellm/evals/gsm8k/gsm8k_responses.csv",
            "routellm/evals/mmlu/responses/mmlu_<subject>.csv",
            "routellm/evals/gsm8k/contaminated_prompts.jsonl",
            "routellm/evals/mmlu/contaminated_prompts.jsonl",
        ),
        license="Apache-2.0",
        files=(
            "gsm8k_responses.csv",
            "mmlu_responses",
            "gsm8k_contaminated_prompts.jsonl",
            "mmlu_contaminated_prompts.jsonl",
        ),
        runs_by="dataset",
        fields={
            "query_id": "'gsm8k-NNNN' (row of the file) or 'mmlu-<subject>-NNNN'",
            "sample_idx": "always 0: one response per (prompt, model)",
            "model": "'mistralai/Mixtral-8x7B-Instruct-v0.1' or 'gpt-4-1106-preview'",
            "answer": "GSM8K: extracted from the response by grading.extract_answer, else its "
            "last number; MMLU: NA (responses not published)",
            "correct": "the authors' boolean label (not re-graded)",
            "response, chars": "GSM8K response text and its length in characters (MMLU: NA)",
            "dataset": "run: 'gsm8k' or 'mmlu'",
            "prompt": "the prompt; no gold answer is published",
            "subject": "MMLU subject (NA for GSM8K)",
            "contaminated": "prompt is in the authors' contaminated list (overlaps their "
            "router training data; RouteLLM excludes these from its evaluations)",
        },
        obtain="Copy the four paths from the repo at the commit (byte-for-byte; the 57 MMLU "
        "files go to mmlu_responses/).",
    ),
    Source(
        name="routerdc",
        title="Per-query scores of 7 open 7-8B LLMs on 16 task files (RouterDC, NeurIPS 2024)",
        repo="https://github.com/shuhao02/RouterDC",
        commit="0e63989c5bf4363330b8a4616386e3f7f116d9f8",
        paths=("datasets/split2_model7/*.json",),
        license="not stated",
        files=("split2_model7",),
        runs_by="dataset",
        fields={
            "query_id": "'<file>-NNNN' (position in the file)",
            "sample_idx": "0..9 for success-rate files, 0 otherwise",
            "model": "Hugging Face id of one of the 7 models",
            "answer": "NA: individual answers are not published, so majority@k for k > 1 is "
            "not estimable",
            "correct": "success-rate files (gsm8k-*, humaneval_*, mbpp, javascript): the rate "
            "s = k/10 over 10 samples expanded to 10 samples, the first k True; "
            "MATH_prealgebra: the binary score; soft-score files (mmlu_*, cmmlu_*, ceval, "
            "arc_*): NA (no binary label)",
            "score": "soft-score files: the authors' score in [0, 1] (likelihood-based), "
            "NaN elsewhere",
            "dataset": "run: the file name without .json",
            "prompt": "the question; no gold answer is published",
            "cluster_id": "the authors' cluster id where the file has one",
        },
        obtain="Copy datasets/split2_model7/*.json from the repo at the commit into "
        "split2_model7/ (byte-for-byte).",
    ),
    Source(
        name="zeroeval_gsm8k",
        title="GSM8K test answers of 42 LLMs, one greedy sample each (ZeroEval)",
        repo="https://github.com/yuchenlin/ZeroEval",
        commit="570c6269a2e4930ee06a17e713fece1ba52cf1dd",
        paths=("result_dirs/gsm/<model>.json", "result_dirs/gsm.summary.json"),
        license="Apache-2.0",
        files=("gsm8k_correctness.csv.gz",),
        runs_by="model",
        fields={
            "query_id": "ZeroEval id, e.g. 'gsm8k-main-test-#0'",
            "sample_idx": "always 0: one greedy response per (question, model)",
            "model": "ZeroEval model name",
            "answer": "the number parsed from the response's JSON 'answer' (parsed_value, "
            "'18.0' written '18'); NA when none was found",
            "correct": "|answer - gold| <= 1e-4 max(1, |gold|)",
            "chars": "characters of the raw response (output_chars)",
            "dataset": "'gsm8k'",
            "prompt": "the question, from raw/<model>.jsonl.gz (NA without raw/)",
            "gold": "the gold number, written like answer",
            "parsed_answer, generator, temperature": "the parsed answer string, the API or "
            "Hugging Face id, the sampling temperature (0)",
        },
        obtain="Take result_dirs/gsm/*.json from the repo at the commit; the mirror keeps them "
        "as raw/<model>.jsonl.gz and grades them into gsm8k_correctness.csv.gz, which load "
        "reads. " + _MIRROR,
    ),
    Source(
        name="zeroeval_math_l5",
        title="MATH level-5 answers of 40 LLMs, one greedy sample each (ZeroEval)",
        repo="https://github.com/yuchenlin/ZeroEval",
        commit="570c6269a2e4930ee06a17e713fece1ba52cf1dd",
        paths=("result_dirs/math-l5/<model>.json", "result_dirs/math-l5.summary.json"),
        license="Apache-2.0",
        files=("samples.csv.gz",),
        runs_by="model",
        fields={
            "query_id": "ZeroEval id, 0..720",
            "sample_idx": "always 0: one greedy response per (question, model)",
            "model": "ZeroEval model name",
            "answer": "answer extracted from the response's JSON (NA when none)",
            "correct": "math-verify 0.9 grade against gold",
            "chars": "characters of the raw response",
            "dataset": "'math-l5'",
            "prompt, gold": "problem text and gold answer",
            "extraction, generator": "how the answer was extracted (json, regex, none); the "
            "API or Hugging Face id",
        },
        obtain="Take result_dirs/math-l5/*.json from the repo at the commit; the mirror keeps "
        "them as raw/<model>.jsonl.gz and grades them into samples.csv.gz, which load "
        "reads. " + _MIRROR,
    ),
)
_BY_NAME: dict[str, Source] = {s.name: s for s in _SOURCES}


def sources() -> list[Source]:
    """All registered sources, whether or not they are present locally.

    Returns
    -------
    list of Source
        In name order.
    """
    return list(_SOURCES)


def data_root() -> Path:
    """The folder holding one subfolder per source.

    Returns
    -------
    Path
        ``$COMPUTEALLOC_DATA`` when set and non-empty; otherwise the first existing of
        ``./../shared/data`` and ``<repository>/../shared/data`` (the former when neither
        exists).
    """
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    candidates = [Path.cwd() / _DEFAULT_RELATIVE, _REPO / _DEFAULT_RELATIVE]
    found = next((c for c in candidates if c.is_dir()), candidates[0])
    return found.resolve()


def _source(name: str) -> Source:
    if name not in _BY_NAME:
        raise ValueError(f"Unknown data source {name!r}. Known sources: {', '.join(_BY_NAME)}.")
    return _BY_NAME[name]


def _folder(source: Source, root: str | os.PathLike[str] | None) -> Path:
    """The source's folder, checked to hold every file ``load`` reads."""
    base = data_root() if root is None else Path(root)
    folder = base / source.name
    missing = [f for f in source.files if not (folder / f).exists()]
    if missing:
        raise DataSourceNotFoundError(
            f"Data source {source.name!r} not found under {base} (missing "
            f"{', '.join(missing)}; set {ENV_VAR} to the folder holding the public sources; "
            "see computealloc.data.datasets.sources() for how to obtain each)."
        )
    return folder


EXAMPLE = "example"
EXAMPLE_PATH = Path(__file__).with_name("routellm_gsm8k.csv.gz")


def is_available(name: str, *, root: str | os.PathLike[str] | None = None) -> bool:
    """Whether source ``name`` is present under ``root`` (default :func:`data_root`)."""
    try:
        _folder(_source(name), root)
    except DataSourceNotFoundError:
        return False
    return True


def _split_name(name: object) -> tuple[Source, str | None]:
    if not isinstance(name, str):
        raise TypeError(
            "The 'name' parameter of load must be a str such as 'mot_cascade' or "
            f"'mot_cascade:gsm'. Got {name!r} instead."
        )
    source, sep, selector = name.partition(":")
    if sep and not selector:
        raise ValueError(
            f"The run selector after ':' in {name!r} is empty. Use {source!r} for the whole "
            "source or 'SOURCE:RUN'."
        )
    return _source(source), selector if sep else None


def _matching(source: Source, selector: str | None, labels: list[str]) -> list[str]:
    """The labels containing ``selector`` as whole '/'-separated segments (all when None)."""
    if selector is None:
        return labels
    chosen = [label for label in labels if f"/{selector}/" in f"/{label}/"]
    if chosen:
        return chosen
    segments = sorted({seg for label in labels for seg in label.split("/")})
    close = difflib.get_close_matches(selector, labels + segments, n=5, cutoff=0.5)
    hint = f" Close matches: {', '.join(close)}." if close else ""
    raise ValueError(
        f"Data source {source.name!r} has no run matching {selector!r}.{hint} "
        f"computealloc.data.datasets.runs({source.name!r}) lists all {len(labels)} runs."
    )


def _frame_and_runs(
    name: str, root: str | os.PathLike[str] | None
) -> tuple[Source, pd.DataFrame, list[str]]:
    """The source, its cached long frame, and the run labels ``name`` selects."""
    source, selector = _split_name(name)
    frame = _cached_frame(str(_folder(source, root)), source.name)
    labels = sorted(frame[source.runs_by].astype(str).unique())
    return source, frame, _matching(source, selector, labels)


def runs(name: str, *, root: str | os.PathLike[str] | None = None) -> list[str]:
    """The run labels of a source.

    Parameters
    ----------
    name : str
        A source name, or ``"SOURCE:SELECTOR"`` for the runs the selector matches.
    root : path-like, optional
        Data root; defaults to :func:`data_root`.

    Returns
    -------
    list of str
        Sorted run labels, each loadable as ``load(f"{SOURCE}:{label}")``.
    """
    return _frame_and_runs(name, root)[2]


def load(
    name: str,
    *,
    root: str | os.PathLike[str] | None = None,
    repeats: Literal["drop", "keep"] = "drop",
) -> SampleLog:
    """Load a public source, or some of its runs, as a :class:`SampleLog`.

    Parameters
    ----------
    name : str
        ``"SOURCE"`` for a whole source or ``"SOURCE:SELECTOR"`` for the runs whose label
        contains ``SELECTOR`` as whole '/'-separated segments (module docstring), or
        ``"example"``: the RouteLLM GSM8K log bundled with the package (Apache-2.0; Mixtral
        vs GPT-4, one response each; ``src/computealloc/data/README.md``), no data root needed.
    root : path-like, optional
        Data root; defaults to :func:`data_root` (``$COMPUTEALLOC_DATA``).
    repeats : {"drop", "keep"}, default="drop"
        Every Llama-2-13B run of mot_cascade repeats its generations in cycles (GSM8K: 24
        samples = generations 0-9, 0-8, 0-4; Date: 0-9 twice; CREPE: 0-3, 0-1; verified on the
        raw completions). ``"drop"`` keeps each distinct generation once (10, 10 and 4 samples
        per query), which held-out-samples evaluation needs (a repeat in both halves leaks);
        ``"keep"`` returns the rows as published (the figures of the source's README).

    Returns
    -------
    SampleLog
        With ``source`` set to ``name``. Parsed files are cached in-process, so a second load
        of the same source only filters and validates.

    Raises
    ------
    DataSourceNotFoundError
        The source's files are not under the data root (the message names ``COMPUTEALLOC_DATA``).
    ValueError
        Unknown source, or a selector that matches no run (the message lists close matches).

    Examples
    --------
    >>> log = load("mot_cascade:llama-2-13b/gsm")  # doctest: +SKIP
    >>> log.models  # doctest: +SKIP
    ['llama-2-13b/gsm/pot1', 'llama-2-13b/gsm/pot2']
    """
    if repeats not in ("drop", "keep"):
        raise ValueError(
            f"The 'repeats' parameter of load must be 'drop' or 'keep'. Got {repeats!r} instead."
        )
    if name == EXAMPLE:
        return replace(read_samples(EXAMPLE_PATH, grade=False), source=EXAMPLE)
    source, frame, chosen = _frame_and_runs(name, root)
    if repeats == "drop" and source.name == "mot_cascade":
        frame = _cached_distinct(str(_folder(source, root)))
    if ":" in name:
        frame = frame[frame[source.runs_by].isin(chosen).to_numpy()]
    return SampleLog.from_frame(frame.reset_index(drop=True), source=name, grade=False)


def open_log(name: str, *, repeats: Literal["drop", "keep"] = "drop") -> SampleLog:
    """A sample log file (:func:`~computealloc.data.samples.read_samples`) when ``name`` is an
    existing path, else the public source ``name`` (:func:`load`)."""
    return read_samples(name) if Path(name).exists() else load(name, repeats=repeats)


# ---------------------------------------------------------------------------------------------
# Readers: one per source, each returning the long frame of the SampleLog contract.


def _read_flat(path: Path, **dtypes: str) -> pd.DataFrame:
    """Read a flat samples table with ids, answers and golds kept as text."""
    return pd.read_csv(path, dtype={"query_id": "str", "answer": "str", "gold": "str", **dtypes})


def _frame_mot_cascade(folder: Path) -> pd.DataFrame:
    df = _read_flat(folder / "samples.csv.gz", variant="str")
    variant = df["variant"].fillna("").str.replace("=", "", regex=False).str.lower()
    suffix: pd.Series = ("-" + variant).where(variant != "", "") + np.where(
        df["greedy"], "-greedy", ""
    )
    df["model"] = df["model"] + "/" + df["dataset"] + "/" + df["prompt_style"] + suffix
    return df


# Cycle lengths of the repeated generations of mot_cascade's Llama-2-13B runs, by run prefix:
# the first cycle holds the distinct generations, each later one repeats a prefix of it.
_MOT_REPEAT_CYCLES: dict[str, tuple[int, ...]] = {
    "llama-2-13b/gsm/": (10, 9, 5),
    "llama-2-13b/date/": (10, 10),
    "llama-2-13b/crepe/": (4, 2),
}


def _distinct_count(answers: list[str], cycles: tuple[int, ...]) -> int | None:
    """Results kept from the first cycle when failed programs were dropped from the list.

    The authors' ``results`` list skips failed programs, so each cycle contributes the results
    of its generations that ran: ``answers == concat(answers[:m_c])`` with ``m_1 = r1`` results
    from the distinct generations. Returns the largest consistent ``r1`` (None if none is).
    """
    first, later = cycles[0], cycles[1:]
    for r1 in range(min(first, len(answers)), -1, -1):
        if _cycles_fit(answers, r1, r1, [(n, first - n) for n in later]):
            return r1
    return None


def _cycles_fit(answers: list[str], r1: int, pos: int, rest: list[tuple[int, int]]) -> bool:
    if not rest:
        return pos == len(answers)
    (length, missing), tail = rest[0], rest[1:]
    for m in range(max(0, r1 - missing), min(length, r1) + 1):
        if answers[pos : pos + m] == answers[:m] and _cycles_fit(answers, r1, pos + m, tail):
            return True
    return False


def _drop_repeats(frame: pd.DataFrame, prefix: str, cycles: tuple[int, ...]) -> pd.DataFrame:
    """Rows of the runs under ``prefix`` reduced to their distinct generations.

    Queries whose results list is aligned with the generations keep their first cycle; for the
    others (failed programs dropped from the list) the first cycle's results are found by
    :func:`_distinct_count` and the cycle's remaining generations become no-answer rows.
    """
    run = frame["model"].str.startswith(prefix).to_numpy()
    rows = frame[run].sort_values(["model", "query_id", "sample_idx"])
    keys = [rows["model"], rows["query_id"]]
    position = rows.groupby(keys).cumcount().to_numpy()
    lists = rows.groupby(keys, sort=False)["answer"].agg(lambda a: a.dropna().tolist())
    r1 = pd.Series([_distinct_count(a, cycles) for a in lists], index=lists.index)
    if r1.isna().any():
        model, query = r1.index[r1.isna().to_numpy()][0]
        raise ValueError(
            f"mot_cascade run {model}, query {query}: answers do not follow the repeat cycles "
            f"{cycles}."
        )
    kept = r1.reindex(pd.MultiIndex.from_arrays(keys)).to_numpy(dtype=np.int64)
    out = rows[position < cycles[0]].copy()
    failed = (position >= kept)[position < cycles[0]]
    out.loc[failed, "answer"] = pd.NA
    out.loc[failed, "correct"] = False
    return pd.concat([frame[~run], out]).sort_values(["model", "query_id", "sample_idx"])


@cache
def _cached_distinct(folder: str) -> pd.DataFrame:
    """mot_cascade with each Llama-2-13B generation once (see ``load(repeats=...)``)."""
    frame = _cached_frame(folder, "mot_cascade")
    for prefix, cycles in _MOT_REPEAT_CYCLES.items():
        frame = _drop_repeats(frame, prefix, cycles)
    return frame.reset_index(drop=True)


def _frame_flat(folder: Path) -> pd.DataFrame:
    return _read_flat(folder / "samples.csv.gz")


def _number_text(values: pd.Series) -> pd.Series:
    """Floats written as text, integers without the trailing '.0'; NaN stays NA."""
    text = values.astype(str).str.replace(r"\.0$", "", regex=True)
    return text.where(values.notna())


def _zeroeval_prompts(raw: Path, ids: pd.Index) -> pd.Series:
    """Question text per id from the raw files, reading files until every id is covered."""
    prompts: dict[str, str] = {}
    for path in sorted(raw.glob("*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            prompts.update((rec["id"], rec["question"]) for rec in map(json.loads, fh))
        if ids.isin(list(prompts)).all():
            break
    return pd.Series(prompts, dtype="str")


def _frame_zeroeval_gsm8k(folder: Path) -> pd.DataFrame:
    df = pd.read_csv(
        folder / "gsm8k_correctness.csv.gz",
        dtype={"id": "str", "parsed_answer": "str", "gold": "float64"},
    )
    out = df.rename(columns={"id": "query_id", "output_chars": "chars"}).assign(
        sample_idx=0,
        dataset="gsm8k",
        answer=_number_text(df["parsed_value"]),
        gold=_number_text(df["gold"]),
    )
    prompts = _zeroeval_prompts(folder / "raw", pd.Index(out["query_id"].unique()))
    out["prompt"] = out["query_id"].map(prompts)
    return out.drop(columns=["parsed_value"])


_ROUTELLM_MODELS = ("mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview")


def _contaminated(path: Path) -> set[str]:
    with path.open(encoding="utf-8") as fh:
        return {json.loads(line)["eval_prompt"] for line in fh if line.strip()}


def _indexed_ids(prefix: pd.Series | str, n: int) -> pd.Series:
    """``prefix + '-' + zero-padded position``, for ``n`` consecutive rows."""
    return prefix + "-" + pd.Series(np.arange(n)).astype(str).str.zfill(4)


def _long_by_model(queries: pd.DataFrame, models: tuple[str, ...]) -> pd.DataFrame:
    """One row per (query, model) from a frame with one boolean column per model."""
    long = queries.melt(
        id_vars=[c for c in queries.columns if c not in models and not c.endswith("_response")],
        value_vars=list(models),
        var_name="model",
        value_name="correct",
    )
    if all(f"{m}_response" in queries.columns for m in models):
        long["response"] = np.concatenate([queries[f"{m}_response"].to_numpy() for m in models])
    return long


_LAST_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def _gsm8k_answer(response: str) -> str | None:
    """:func:`~computealloc.data.grading.extract_answer`, else the last number of the response."""
    found = extract_answer(response)
    if found is None:
        numbers = _LAST_NUMBER.findall(response.replace("$", ""))
        found = numbers[-1].replace(",", "") if numbers else None
    return found


def _frame_routellm(folder: Path) -> pd.DataFrame:
    gsm = pd.read_csv(folder / "gsm8k_responses.csv")
    gsm.insert(0, "query_id", _indexed_ids("gsm8k", len(gsm)))
    gsm["contaminated"] = gsm["prompt"].isin(
        _contaminated(folder / "gsm8k_contaminated_prompts.jsonl")
    )
    files = sorted((folder / "mmlu_responses").glob("mmlu_*.csv"))
    parts = [pd.read_csv(f).assign(subject=f.stem.removeprefix("mmlu_")) for f in files]
    mmlu = pd.concat(
        [p.assign(query_id=_indexed_ids("mmlu-" + p["subject"], len(p))) for p in parts],
        ignore_index=True,
    )
    mmlu["contaminated"] = mmlu["prompt"].isin(
        _contaminated(folder / "mmlu_contaminated_prompts.jsonl")
    )
    gsm_long = _long_by_model(gsm.assign(dataset="gsm8k"), _ROUTELLM_MODELS)
    gsm_long["answer"] = gsm_long["response"].map(_gsm8k_answer).astype("str")
    gsm_long["chars"] = gsm_long["response"].str.len().astype("float64")
    mmlu_long = _long_by_model(mmlu.assign(dataset="mmlu"), _ROUTELLM_MODELS)
    return pd.concat([gsm_long, mmlu_long], ignore_index=True).assign(sample_idx=0)


_RATE_FILES = frozenset(
    {"gsm8k-test", "gsm8k-train", "humaneval_test", "humaneval_train", "mbpp", "javascript"}
)
_BINARY_FILES = frozenset({"MATH_prealgebra"})
_RATE_SAMPLES = 10


def _routerdc_file(path: Path) -> pd.DataFrame:
    """One row per (query, model) of one file: query_id, prompt, model, s[, cluster_id]."""
    records = json.loads(path.read_text(encoding="utf-8"))
    scores = pd.DataFrame([r["scores"] for r in records], dtype="float64")
    queries = pd.DataFrame(
        {
            "query_id": _indexed_ids(path.stem, len(records)),
            "prompt": [r["question"] for r in records],
        }
    )
    if "cluster_id" in records[0]:
        queries["cluster_id"] = [r["cluster_id"] for r in records]
    wide = pd.concat([queries, scores], axis=1)
    return wide.melt(id_vars=list(queries.columns), var_name="model", value_name="s").assign(
        dataset=path.stem
    )


def _check_levels(scores: pd.Series, levels: int, path_name: str) -> np.ndarray:
    """``scores * levels`` as integers, checked to be whole numbers."""
    k = np.rint(scores.to_numpy() * levels)
    if not np.allclose(k, scores.to_numpy() * levels, atol=1e-9):
        raise ValueError(
            f"routerdc file {path_name}.json should hold multiples of 1/{levels}. Got "
            f"{scores[~np.isclose(k, scores * levels)].iloc[0]!r} instead."
        )
    return k.astype(np.int64)


def _expand_rates(long: pd.DataFrame) -> pd.DataFrame:
    """Each (query, model) success rate k/10 becomes 10 samples, the first k correct."""
    k = _check_levels(long["s"], _RATE_SAMPLES, long["dataset"].iloc[0])
    out = long.loc[long.index.repeat(_RATE_SAMPLES)].reset_index(drop=True)
    idx = np.tile(np.arange(_RATE_SAMPLES), len(long))
    return out.assign(sample_idx=idx, correct=idx < np.repeat(k, _RATE_SAMPLES))


def _frame_routerdc(folder: Path) -> pd.DataFrame:
    parts = []
    for path in sorted((folder / "split2_model7").glob("*.json")):
        long = _routerdc_file(path)
        if path.stem in _RATE_FILES:
            part = _expand_rates(long)
        elif path.stem in _BINARY_FILES:
            part = long.assign(sample_idx=0, correct=_check_levels(long["s"], 1, path.stem) == 1)
        else:
            unknown = pd.Series(pd.NA, index=long.index, dtype="boolean")
            part = long.assign(sample_idx=0, correct=unknown, score=long["s"])
        parts.append(part.drop(columns=["s"]))
    out = pd.concat(parts, ignore_index=True)
    return out.assign(
        correct=out["correct"].astype("boolean"),
        cluster_id=out["cluster_id"].astype("Int64"),
        answer=pd.Series(pd.NA, index=out.index, dtype="str"),
    )


_READERS: dict[str, Callable[[Path], pd.DataFrame]] = {
    "mot_cascade": _frame_mot_cascade,
    "qwen25math_rm_maj": _frame_flat,
    "routellm": _frame_routellm,
    "routerdc": _frame_routerdc,
    "zeroeval_gsm8k": _frame_zeroeval_gsm8k,
    "zeroeval_math_l5": _frame_flat,
}


@cache
def _cached_frame(folder: str, name: str) -> pd.DataFrame:
    """The parsed long frame of a source folder (cached per process; never mutated)."""
    return _READERS[name](Path(folder))
