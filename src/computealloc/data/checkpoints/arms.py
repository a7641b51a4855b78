"""Thinking arms (``cap@T``, ``full``, ``stable@W``, ``conf@TAU``) and the checkpoint summary."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from computealloc.data.checkpoints.log import CheckpointLog
from computealloc.data.checkpoints.traces import Traces
from computealloc.data.samples import SampleLog

__all__ = [
    "MAX_DEFAULT_CAPS",
    "Outcome",
    "arm_outcomes",
    "checkpoint_summary",
    "default_arms",
    "parse_arm",
    "stop_outcome",
    "thinking_log",
]

Float = NDArray[np.float64]
Int = NDArray[np.int64]
Bool = NDArray[np.bool_]

_ARM = re.compile(r"^(?:(cap)@([0-9]+)|(full)|(stable)@([0-9]+)|(conf)@([0-9]*\.?[0-9]+))$")
_ARM_FORM = "cap@T (T an int >= 0), full, stable@W (W an int >= 1) or conf@TAU (TAU in [0, 1])"
#: Most ``cap@T`` arms :func:`default_arms` makes when checkpoints are irregular.
MAX_DEFAULT_CAPS = 12

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

    Where the log has more than :data:`MAX_DEFAULT_CAPS` distinct positions (a fine or
    irregular grid), at most that many: 0 where the log has it, then geometric steps between
    the smallest positive position and the largest, each snapped down to a position of the
    log (so every cap is a checkpoint, and no two caps give the same answers).
    """
    grid = log.grid
    if grid.size > MAX_DEFAULT_CAPS:
        positive = grid[grid > 0]
        steps = np.geomspace(positive.min(), positive.max(), MAX_DEFAULT_CAPS - int(grid[0] == 0))
        snapped = positive[np.searchsorted(positive, steps * (1 + 1e-12), side="right") - 1]
        grid = np.unique(np.r_[grid[grid == 0], snapped])
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
    >>> from computealloc.data.checkpoints import read_checkpoints
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
