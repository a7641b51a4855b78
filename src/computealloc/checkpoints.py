"""Checkpoint logs: the answer a reasoning model gives when forced to answer after t tokens.

A checkpoint log has one row per query x sample x checkpoint (DESIGN, "Checkpoint logs"):

=============== ================================================================================
``query_id``    str or int, required
``sample_idx``  int >= 0, required: one sampled reasoning trace
``think_tokens`` int >= 0, required: thinking tokens before the forced answer (0 = no thinking)
``answer``      the answer given there (null = none)
``correct``     bool, or null to grade against ``gold``
``confidence``  optional float in [0, 1]: the model's probability of that answer
``final``       optional bool: the row of the trace's natural end (its ``think_tokens`` is the
                full trace length); at most one per sample, and it is the sample's last row
``answer_tokens`` optional int >= 0: tokens of the answer itself (default 0)
``model``, ``prompt``, ``gold``, ``dataset``  as in every sample log
=============== ================================================================================

The checkpoints of a sample are strictly increasing in ``think_tokens`` in the order of the
file. Errors name the file, the line (CSV/JSONL) or row (Parquet/frame) and the field, like
every reader of :mod:`computealloc.samples`.

Thinking actions are **arms** (DESIGN, "Arms"): ``cap@T`` (answer at the trace's last
checkpoint with ``think_tokens <= T``; the final answer when the trace ended first), ``full``
(the natural end), and the fixed early-exit rules ``stable@W`` (the first checkpoint whose
answer has been the same at W checkpoints in a row) and ``conf@TAU`` (the first checkpoint
whose confidence is at least TAU). :func:`thinking_log` turns a checkpoint log into an
ordinary multi-arm :class:`~computealloc.samples.SampleLog`, one sample per trace and arm,
whose ``tokens`` is what the arm spends on that trace: the thinking tokens used plus the
answer tokens of every forced answer it asked for (one for ``cap@T``; one per checkpoint
visited for the early-exit rules). ``cap@1024/majority@4`` is then the arm ``cap@1024``
voted over 4 traces, estimated exactly by :func:`computealloc.estimate.estimate` with
``cost="tokens"``; the oracle, the policies, the budget calibration and ``computealloc
evaluate`` read such a log unchanged. A sample's ``score`` is its answer's confidence, so
``cap@1024/best_of@4`` (the most confident of 4 traces) is a confidence-aware action. The
arms of one trace share a ``split_group``, so the held-out protocol puts a trace in the
same half for every arm.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from computealloc.grading import answer_keys
from computealloc.samples import (
    Format,
    RecordOrigin,
    SampleLog,
    fail_where,
    number_column,
    read_records,
    samples_from_records,
    validate_records,
)

__all__ = [
    "CheckpointLog",
    "Traces",
    "arm_outcomes",
    "checkpoint_summary",
    "default_arms",
    "parse_arm",
    "read_checkpoints",
    "read_log",
    "thinking_log",
]

Float = NDArray[np.float64]
Int = NDArray[np.int64]
Bool = NDArray[np.bool_]

#: Columns that make a log a checkpoint log (``think_tokens``) or belong to one.
CHECKPOINT_COLUMNS = ("think_tokens", "confidence", "final", "answer_tokens")
_ARM = re.compile(r"^(?:(cap)@([0-9]+)|(full)|(stable)@([0-9]+)|(conf)@([0-9]*\.?[0-9]+))$")
_ARM_FORM = "cap@T (T an int >= 0), full, stable@W (W an int >= 1) or conf@TAU (TAU in [0, 1])"
#: Most ``cap@T`` arms :func:`default_arms` makes when checkpoints are irregular.
MAX_DEFAULT_CAPS = 12


# --------------------------------------------------------------------------- the log


@dataclass(frozen=True, eq=False, repr=False)
class CheckpointLog:
    """Validated checkpoint log.

    Build one with :func:`read_checkpoints`; direct construction skips validation.

    Attributes
    ----------
    rows : DataFrame
        One row per checkpoint, sorted by (model, query_id, sample_idx, think_tokens):
        ``query_id`` (str), ``sample_idx`` (int64), ``model`` (str), ``think_tokens`` (int64),
        ``answer`` (str or NA), ``correct`` (boolean), ``confidence`` (float64, NaN = none),
        ``final`` (bool), ``answer_tokens`` (float64, tokens).
    queries : DataFrame
        One row per query: ``query_id``, ``prompt``, ``gold`` and per-query metadata.
    source : str
        Where the log came from.
    """

    rows: pd.DataFrame
    queries: pd.DataFrame
    source: str = "<frame>"

    @property
    def models(self) -> list[str]:
        """Sorted distinct model labels."""
        return sorted(self.rows["model"].unique().tolist())

    @property
    def n_queries(self) -> int:
        """Number of distinct queries."""
        return len(self.queries)

    @property
    def grid(self) -> Int:
        """Sorted distinct ``think_tokens`` of the non-final checkpoints, shape (n_grid,)."""
        values = self.rows.loc[~self.rows["final"], "think_tokens"].to_numpy(dtype=np.int64)
        return np.unique(values)

    @property
    def has_confidence(self) -> bool:
        """Whether every checkpoint with an answer carries a confidence."""
        answered = self.rows["answer"].notna().to_numpy()
        return bool(np.isfinite(self.rows["confidence"].to_numpy()[answered]).all())

    def __repr__(self) -> str:
        n_traces = len(self.rows[["model", "query_id", "sample_idx"]].drop_duplicates())
        return (
            f"CheckpointLog(source={self.source!r}, n_rows={len(self.rows)}, "
            f"n_traces={n_traces}, n_queries={self.n_queries}, models={self.models!r})"
        )

    def to_frame(self) -> pd.DataFrame:
        """The long format back: one row per checkpoint with the query columns joined."""
        return self.rows.merge(self.queries, on="query_id", how="left", sort=False)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`to_frame` atomically as CSV, JSONL or Parquet, chosen by the suffix
        (as :meth:`computealloc.samples.SampleLog.save`); :func:`read_checkpoints` reads it."""
        SampleLog(self.rows, self.queries, self.source).save(path)

    def traces(self, model: str | None = None) -> Traces:
        """The traces of one model as padded arrays (:class:`Traces`)."""
        return Traces.of(self, model)


def read_checkpoints(
    path_or_frame: str | os.PathLike[str] | pd.DataFrame,
    *,
    grade: bool = True,
    format: Format | None = None,
) -> CheckpointLog:
    """Read and validate a checkpoint log (CSV, JSONL, Parquet or a DataFrame).

    Parameters
    ----------
    path_or_frame : path or DataFrame
        Long format, one row per query x sample x checkpoint (see the module docstring).
    grade : bool
        Grade rows whose ``correct`` is null against the query's ``gold``.
    format : {"csv", "jsonl", "parquet"}, optional
        Overrides the suffix.

    Returns
    -------
    CheckpointLog

    Raises
    ------
    SampleLogError
        Naming the file, line (or row) and field: a missing ``think_tokens``, a negative or
        fractional one, checkpoints of a sample not strictly increasing, two ``final`` rows or
        a ``final`` row that is not the sample's last, a confidence outside [0, 1], and every
        error of :func:`computealloc.samples.read_samples`.

    Examples
    --------
    >>> log = read_checkpoints(pd.DataFrame({"query_id": "q", "sample_idx": 0,
    ...     "think_tokens": [0, 256, 700], "answer": ["3", "4", "4"],
    ...     "correct": [False, True, True], "final": [False, False, True]}))
    >>> log.grid.tolist()
    [0, 256]
    """
    raw, origin = read_records(path_or_frame, format=format)
    if "think_tokens" not in raw.columns:
        raise origin.error(
            "missing required column; expected a 'think_tokens' column in a checkpoint log, "
            f"found {', '.join(repr(str(c)) for c in raw.columns[:20])}",
            field="think_tokens",
        )
    return _from_records(raw, origin, grade=grade)


def read_log(
    path_or_frame: str | os.PathLike[str] | pd.DataFrame,
    *,
    grade: bool = True,
    format: Format | None = None,
) -> SampleLog | CheckpointLog:
    """Read a log once: a :class:`CheckpointLog` when it has ``think_tokens``, else a SampleLog."""
    raw, origin = read_records(path_or_frame, format=format)
    if "think_tokens" in raw.columns:
        return _from_records(raw, origin, grade=grade)
    return samples_from_records(raw, origin, grade=grade)


def _from_records(raw: pd.DataFrame, origin: RecordOrigin, *, grade: bool) -> CheckpointLog:
    raw = raw.reset_index(drop=True)
    frame = validate_records(raw, origin, grade=grade)
    think = _int_column(raw["think_tokens"], "think_tokens", origin, "an integer >= 0")
    n = len(raw)
    conf = (
        number_column(raw["confidence"], "confidence", origin, "a number in [0, 1] or null")
        if "confidence" in raw.columns
        else pd.Series(np.nan, index=raw.index)
    )
    fail_where(
        (conf < 0) | (conf > 1),
        raw.get("confidence", conf),
        origin,
        "confidence",
        "a number in [0, 1] or null",
    )
    final = _flag_column(raw["final"], origin) if "final" in raw.columns else np.zeros(n, bool)
    answer_tokens = (
        _int_column(raw["answer_tokens"], "answer_tokens", origin, "an integer >= 0 or null")
        if "answer_tokens" in raw.columns
        else pd.Series(0.0, index=raw.index)
    ).fillna(0.0)
    keys = [frame["model"], frame["query_id"], frame["sample_idx"]]
    _check_order(pd.Series(think, index=raw.index), final, keys, raw, origin)
    rows = frame[["query_id", "sample_idx", "model", "answer", "correct"]].copy()
    rows["think_tokens"] = think.astype(np.int64)
    rows["confidence"] = conf.to_numpy(dtype=np.float64)
    rows["final"] = final
    rows["answer_tokens"] = answer_tokens.to_numpy(dtype=np.float64)
    rows = rows.sort_values(
        ["model", "query_id", "sample_idx", "think_tokens"], kind="stable", ignore_index=True
    )
    extra = [c for c in ("dataset", "level", "subject") if c in frame.columns]
    queries = (
        frame[["query_id", "prompt", "gold", *extra]]
        .groupby("query_id", sort=True)
        .first()
        .reset_index()
    )
    return CheckpointLog(rows, queries, origin.path)


def _int_column(raw: pd.Series, field: str, origin: RecordOrigin, expected: str) -> pd.Series:
    values = number_column(raw, field, origin, expected)
    nullable = "null" in expected
    bad = (values < 0) | (values % 1 != 0) | (values.isna() if not nullable else False)
    fail_where(bad, raw, origin, field, expected)
    return values


def _flag_column(raw: pd.Series, origin: RecordOrigin) -> Bool:
    expected = "true, false, 1, 0 or null"
    if raw.dtype.kind == "b" or isinstance(raw.dtype, pd.BooleanDtype):
        return raw.astype("boolean").fillna(False).to_numpy(dtype=bool)
    text = raw.astype("str").where(raw.notna()).str.strip().str.lower()
    true = text.isin(("true", "1", "1.0"))
    ok = true | text.isin(("false", "0", "0.0", "")) | raw.isna()
    fail_where(~ok.to_numpy(dtype=bool), raw, origin, "final", expected)
    return true.to_numpy(dtype=bool)


def _check_order(
    think: pd.Series, final: Bool, keys: list[pd.Series], raw: pd.DataFrame, origin: RecordOrigin
) -> None:
    """Strictly increasing ``think_tokens`` per sample in record order; one last ``final``."""
    groups = think.groupby(keys, sort=False)
    prev = groups.shift(1)
    bad = (prev.notna() & (think <= prev)).to_numpy()
    if bad.any():
        row = int(np.argmax(bad))
        raise origin.error(
            f"checkpoints of sample ({keys[1].iloc[row]!r}, {int(keys[2].iloc[row])}) must be "
            f"strictly increasing in think_tokens; expected more than {int(prev.iloc[row])}, "
            f"found {int(think.iloc[row])}",
            row=row,
            field="think_tokens",
        )
    has_next = groups.shift(-1).notna().to_numpy()
    late = final & has_next
    if late.any():
        row = int(np.argmax(late))
        raise origin.error(
            f"the final row of sample ({keys[1].iloc[row]!r}, {int(keys[2].iloc[row])}) must be "
            "its last checkpoint; expected no later checkpoint, found one after it",
            row=row,
            field="final",
        )


# --------------------------------------------------------------------------- traces


@dataclass(frozen=True)
class Traces:
    """One model's traces as arrays padded to the longest trace's number of checkpoints.

    Attributes
    ----------
    model : str
    qids : ndarray of shape (n_queries,), object
        Sorted query ids; ``row`` indexes it.
    row, sample_idx : ndarray of shape (n_traces,), int64
        The query (row of ``qids``) and sample of each trace.
    n_ckpt : ndarray of shape (n_traces,), int64
        Checkpoints of each trace (>= 1); columns past it are padding.
    think : ndarray of shape (n_traces, m), float64
        ``think_tokens`` of each checkpoint (tokens), ``inf`` in padding.
    key : ndarray of shape (n_traces, m), int64
        Answer code (equal codes are one answer in a vote, :func:`answer_keys`); -1 for no
        answer and for padding.
    answer : ndarray of shape (n_traces, m), object
    correct : ndarray of shape (n_traces, m), bool
    confidence : ndarray of shape (n_traces, m), float64
        NaN where absent.
    answer_tokens : ndarray of shape (n_traces, m), float64
        Tokens of each forced answer; 0 in padding.
    final : ndarray of shape (n_traces,), bool
        Whether the trace's last checkpoint is its natural end.
    """

    model: str
    qids: NDArray[np.object_]
    row: Int
    sample_idx: Int
    n_ckpt: Int
    think: Float
    key: Int
    answer: NDArray[np.object_]
    correct: Bool
    confidence: Float
    answer_tokens: Float
    final: Bool

    @classmethod
    def of(cls, log: CheckpointLog, model: str | None = None) -> Traces:
        """The traces of ``model`` (the only model when None)."""
        if model is None:
            if len(log.models) != 1:
                raise ValueError(
                    f"The log holds {len(log.models)} models ({', '.join(log.models)}); name "
                    "one with the 'model' parameter."
                )
            model = log.models[0]
        rows = log.rows[(log.rows["model"] == model).to_numpy()]
        if rows.empty:
            raise ValueError(f"Model {model!r} is not in the log; its models are {log.models}.")
        qids = np.asarray(sorted(rows["query_id"].unique().tolist()), dtype=object)
        trace, found = pd.MultiIndex.from_frame(rows[["query_id", "sample_idx"]]).factorize()
        first = pd.MultiIndex.from_tuples(list(found))
        trace = np.asarray(trace, dtype=np.int64)
        pos = rows.groupby(trace, sort=False).cumcount().to_numpy()
        n_traces, m = int(trace.max()) + 1, int(pos.max()) + 1
        gold = log.queries.set_index("query_id")["gold"].reindex(rows["query_id"])
        keys = answer_keys(
            rows["answer"].astype(object).where(rows["answer"].notna(), None).to_numpy(),
            gold.astype(object).where(gold.notna(), None).to_numpy(),
        )
        codes = np.where(pd.isna(keys), -1, pd.factorize(keys)[0]).astype(np.int64)

        def grid(values: Any, fill: Any, dtype: Any) -> Any:
            out = np.full((n_traces, m), fill, dtype=dtype)
            out[trace, pos] = values
            return out

        final = np.zeros(n_traces, dtype=bool)
        final[trace] |= rows["final"].to_numpy(dtype=bool)
        return cls(
            model=model,
            qids=qids,
            row=pd.Index(qids).get_indexer(first.get_level_values(0)).astype(np.int64),
            sample_idx=np.asarray(first.get_level_values(1), dtype=np.int64),
            n_ckpt=np.bincount(trace, minlength=n_traces).astype(np.int64),
            think=grid(rows["think_tokens"].to_numpy(np.float64), np.inf, np.float64),
            key=grid(codes, -1, np.int64),
            answer=grid(rows["answer"].astype(object).to_numpy(), None, object),
            correct=grid(rows["correct"].fillna(False).to_numpy(dtype=bool), False, bool),
            confidence=grid(rows["confidence"].to_numpy(np.float64), np.nan, np.float64),
            answer_tokens=grid(rows["answer_tokens"].to_numpy(np.float64), 0.0, np.float64),
            final=final,
        )

    @property
    def n_traces(self) -> int:
        return int(self.row.size)

    @property
    def valid(self) -> Bool:
        """Real checkpoints (not padding), shape (n_traces, m)."""
        return np.arange(self.think.shape[1]) < self.n_ckpt[:, None]

    @property
    def length(self) -> Float:
        """Thinking tokens at each trace's last checkpoint, shape (n_traces,)."""
        return self.think[np.arange(self.n_traces), self.n_ckpt - 1]

    def run_length(self) -> Int:
        """How many checkpoints in a row (ending at each) gave the same answer, (n_traces, m).

        0 where there is no answer.
        """
        run = np.zeros(self.key.shape, dtype=np.int64)
        run[:, 0] = self.key[:, 0] >= 0
        for j in range(1, self.key.shape[1]):
            same = (self.key[:, j] == self.key[:, j - 1]) & (self.key[:, j] >= 0)
            run[:, j] = np.where(same, run[:, j - 1] + 1, (self.key[:, j] >= 0).astype(np.int64))
        return run

    def first(self, stop: Bool) -> Int:
        """The first checkpoint where ``stop`` (n_traces, m) holds; the last one if none."""
        mask = stop & self.valid
        return np.where(mask.any(axis=1), np.argmax(mask, axis=1), self.n_ckpt - 1)

    def subset(self, keep: Bool) -> Traces:
        """The traces where ``keep`` (n_traces,) is True."""
        fields = {
            name: getattr(self, name)[keep]
            for name in (
                "row",
                "sample_idx",
                "n_ckpt",
                "think",
                "key",
                "answer",
                "correct",
                "confidence",
                "answer_tokens",
                "final",
            )
        }
        return Traces(model=self.model, qids=self.qids, **fields)


# --------------------------------------------------------------------------- arms


@dataclass(frozen=True)
class Outcome:
    """What an arm does on each trace.

    Attributes
    ----------
    stop : ndarray of shape (n_traces,), int64
        The checkpoint whose answer is given; -1 when the arm gets no answer (``cap@T`` below
        the trace's first checkpoint).
    correct : ndarray of shape (n_traces,), bool
    tokens : ndarray of shape (n_traces,), float64
        Thinking tokens used plus the tokens of every forced answer asked for.
    """

    stop: Int
    correct: Bool
    tokens: Float


def parse_arm(spec: str) -> tuple[str, float]:
    """``"cap@1024"`` -> ``("cap", 1024.0)``; ``"full"`` -> ``("full", inf)``.

    Raises
    ------
    ValueError
        When ``spec`` is not ``cap@T``, ``full``, ``stable@W`` or ``conf@TAU``.
    """
    match = _ARM.match(spec.strip()) if isinstance(spec, str) else None
    if match is None:
        raise ValueError(f"Thinking arm {spec!r} must be one of {_ARM_FORM}.")
    if match.group(3):
        return "full", math.inf
    kind = match.group(1) or match.group(4) or match.group(6)
    value = float(match.group(2) or match.group(5) or match.group(7))
    if (kind == "stable" and value < 1) or (kind == "conf" and value > 1):
        raise ValueError(f"Thinking arm {spec!r} must be one of {_ARM_FORM}.")
    return kind, value


def stop_outcome(traces: Traces, stop: Int, probes: str = "one") -> Outcome:
    """The answer and token cost of stopping each trace at checkpoint ``stop`` (n_traces,).

    ``probes="one"`` charges the answer tokens of the stopping checkpoint only (budget forcing:
    one forced answer); ``"all"`` charges every checkpoint up to it (early exit asks for an
    answer at each checkpoint it passes).
    """
    at = np.arange(traces.n_traces)
    safe = np.maximum(stop, 0)
    answer_cost = (
        traces.answer_tokens[at, safe]
        if probes == "one"
        else np.cumsum(traces.answer_tokens, axis=1)[at, safe]
    )
    tokens = traces.think[at, safe] + answer_cost
    correct = traces.correct[at, safe] & (stop >= 0)
    return Outcome(stop.astype(np.int64), correct, np.where(stop >= 0, tokens, 0.0))


def arm_outcomes(traces: Traces, spec: str) -> Outcome:
    """What the thinking arm ``spec`` (:func:`parse_arm`) does on every trace.

    - ``cap@T``: the last checkpoint with ``think_tokens <= T`` (the natural end when the trace
      ended first); a trace whose first checkpoint is past ``T`` gets no answer and spends
      ``min(T, trace length)`` thinking tokens.
    - ``full``: the last checkpoint.
    - ``stable@W``: the first checkpoint whose answer equals the answers of the W - 1
      checkpoints before it; else the last. Every checkpoint passed is probed.
    - ``conf@TAU``: the first answered checkpoint with ``confidence >= TAU``; else the last.
      Needs a confidence on every answered checkpoint.
    """
    kind, value = parse_arm(spec)
    if kind == "cap":
        stop = (traces.think <= value).sum(axis=1) - 1
        out = stop_outcome(traces, stop, "one")
        empty = stop < 0
        tokens = np.where(empty, np.minimum(value, traces.length), out.tokens)
        return Outcome(out.stop, out.correct, tokens)
    if kind == "full":
        return stop_outcome(traces, traces.n_ckpt - 1, "one")
    if kind == "stable":
        return stop_outcome(traces, traces.first(traces.run_length() >= value), "all")
    answered = traces.key >= 0
    if not np.isfinite(traces.confidence[answered & traces.valid]).all():
        raise ValueError(f"Arm {spec!r} needs a `confidence` on every answered checkpoint.")
    with np.errstate(invalid="ignore"):
        stop = traces.first(answered & (traces.confidence >= value))
    return stop_outcome(traces, stop, "all")


def default_arms(log: CheckpointLog) -> list[str]:
    """``cap@T`` for every checkpoint position of the log, then ``full``.

    Where the log has more than :data:`MAX_DEFAULT_CAPS` distinct positions (checkpoints at
    irregular places), that many geometric steps between the smallest and largest.
    """
    grid = log.grid
    if grid.size > MAX_DEFAULT_CAPS:
        low = max(int(grid[grid > 0].min(initial=1)), 1)
        steps = np.geomspace(low, int(grid.max()), MAX_DEFAULT_CAPS - int(grid[0] == 0))
        grid = np.unique(np.r_[grid[:1][grid[:1] == 0], np.round(steps).astype(np.int64)])
    return [f"cap@{int(t)}" for t in grid] + ["full"]


def thinking_log(
    log: CheckpointLog, arms: list[str] | str | None = None, *, models: list[str] | None = None
) -> SampleLog:
    """The checkpoint log as an ordinary multi-arm sample log, one arm per thinking action.

    Parameters
    ----------
    log : CheckpointLog
    arms : list of str or comma-separated str, optional
        Thinking arms (:func:`parse_arm`); default :func:`default_arms`.
    models : list of str, optional
        Models of the log to use; default all. With one model the arm labels are the arm specs
        (``cap@256``), with several ``MODEL/cap@256``.

    Returns
    -------
    SampleLog
        One sample per trace and arm: ``model`` is the arm label, ``answer`` and ``correct``
        the arm's answer on that trace, ``tokens`` its token cost (:func:`arm_outcomes`),
        ``score`` the confidence of that answer (0 where the arm gets none; so
        ``cap@T/best_of@K`` keeps the most confident of K traces), ``split_group`` the log's
        model (so a trace falls in one half for every arm),
        ``think_tokens`` the thinking tokens used.

    Examples
    --------
    >>> log = read_checkpoints(pd.DataFrame({"query_id": "q", "sample_idx": 0,
    ...     "think_tokens": [0, 256, 700], "answer": ["3", "4", "4"],
    ...     "correct": [False, True, True], "final": [False, False, True]}))
    >>> s = thinking_log(log, "cap@0,cap@512,full").samples
    >>> s[["model", "answer", "tokens"]].values.tolist()
    [['cap@0', '3', 0.0], ['cap@512', '4', 256.0], ['full', '4', 700.0]]
    """
    specs = default_arms(log) if arms is None else _arm_list(arms)
    chosen = log.models if models is None else list(models)
    parts = []
    for model in chosen:
        traces = log.traces(model)
        for spec in specs:
            out = arm_outcomes(traces, spec)
            at = np.arange(traces.n_traces)
            answer = traces.answer[at, np.maximum(out.stop, 0)].copy()
            answer[out.stop < 0] = None
            used = np.where(out.stop >= 0, traces.think[at, np.maximum(out.stop, 0)], 0.0)
            parts.append(
                pd.DataFrame(
                    {
                        "query_id": traces.qids[traces.row],
                        "sample_idx": traces.sample_idx,
                        "model": spec if len(chosen) == 1 else f"{model}/{spec}",
                        "answer": pd.array(answer, dtype="str"),
                        "correct": pd.array(out.correct, dtype="boolean"),
                        "tokens": out.tokens,
                        "score": np.where(
                            out.stop >= 0, traces.confidence[at, np.maximum(out.stop, 0)], 0.0
                        ),
                        "response": pd.array([None] * traces.n_traces, dtype="str"),
                        "split_group": model,
                        "think_tokens": used,
                    }
                )
            )
    samples = pd.concat(parts, ignore_index=True)
    samples["query_id"] = samples["query_id"].astype("str")
    samples = samples.sort_values(
        ["model", "query_id", "sample_idx"], kind="stable", ignore_index=True
    )
    return SampleLog(samples, log.queries.copy(), log.source)


def _arm_list(arms: list[str] | str) -> list[str]:
    specs = [a.strip() for a in (arms.split(",") if isinstance(arms, str) else arms)]
    specs = [a for a in specs if a]
    for spec in specs:
        parse_arm(spec)
    if not specs or len(set(specs)) != len(specs):
        raise ValueError(f"The 'arms' parameter must name distinct thinking arms. Got {arms!r}.")
    return specs


# --------------------------------------------------------------------------- summary


def checkpoint_summary(log: CheckpointLog) -> pd.DataFrame:
    """Accuracy and tokens by checkpoint, per model: what ``computealloc inspect`` shows.

    Returns
    -------
    DataFrame
        One row per model and arm of :func:`default_arms`: ``model``, ``action``,
        ``queries``, ``traces``, ``accuracy`` (one trace, no vote), ``mean_tokens`` (thinking
        plus answer tokens), ``ended`` (share of traces whose natural end came first),
        ``same_as_full`` (share whose answer is the full trace's), ``mean_confidence``.
    """
    rows = []
    for model in log.models:
        traces = log.traces(model)
        at = np.arange(traces.n_traces)
        last_key = traces.key[at, traces.n_ckpt - 1]
        for spec in default_arms(log):
            out = arm_outcomes(traces, spec)
            safe = np.maximum(out.stop, 0)
            conf = traces.confidence[at, safe][out.stop >= 0]
            ended = traces.final & (out.stop == traces.n_ckpt - 1)
            rows.append(
                {
                    "model": model,
                    "action": spec,
                    "queries": int(np.unique(traces.row).size),
                    "traces": traces.n_traces,
                    "accuracy": float(out.correct.mean()),
                    "mean_tokens": float(out.tokens.mean()),
                    "ended": float(ended.mean()),
                    "same_as_full": float(
                        ((traces.key[at, safe] == last_key) & (out.stop >= 0)).mean()
                    ),
                    "mean_confidence": float(conf.mean()) if np.isfinite(conf).any() else np.nan,
                }
            )
    return pd.DataFrame(rows)
