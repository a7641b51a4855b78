"""Export of IBPO-selected targets: a sample log streamed through the selection in seeded
batches, written as a prompt/completion JSONL dataset for TRL's ``SFTTrainer``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

from computealloc.data.samples import SampleLog
from computealloc.files import atomic_write
from computealloc.training.ibpo.results import Float, IBPOSummary, Int, Utility
from computealloc.training.ibpo.selection import (
    UTILITIES,
    capacities,
    margins,
    select,
)
from computealloc.training.ibpo.validation import (
    check_choice,
    check_export_budget,
    check_int,
    check_shares,
)


def export_sft(
    log: SampleLog,
    *,
    group_col: str,
    out_path: str | os.PathLike[str],
    max_share: Mapping[str, float] | None = None,
    budget: float | None = None,
    cost_col: str | None = None,
    utility: Utility = "margin",
    batch_size: int = 64,
    seed: int = 0,
    keep_rejected: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> IBPOSummary:
    """Select IBPO training targets batch by batch and write a prompt/completion SFT dataset.

    The log's prompts are shuffled with ``seed`` and cut into batches of ``batch_size``
    prompts; every batch is solved by the program of :func:`ibpo_select` (reward = the
    sample's ``correct``) and its records are written before the next batch is solved, so only
    one batch's JSON text is held at a time. The file is JSON Lines, one record per response::

        {"prompt": ..., "completion": ..., "weight": 1.0, "group": "long", "reward": 1.0,
         "query_id": ..., "model": ..., "sample_idx": 3, "batch": 0}

    ``prompt``/``completion`` is the standard prompt-completion format of TRL's
    ``SFTTrainer`` (``completion`` is the sample's ``response`` text); ``weight`` is the 0/1
    accept variable. By default only the selected targets (weight 1) are written, so the file
    can be given to ``SFTTrainer`` as is; ``keep_rejected=True`` writes every response.

    Parameters
    ----------
    log : SampleLog
        Needs ``prompt``, ``response`` and ``correct`` for every sample, and ``group_col``.
    group_col : str
        Column (of the samples or of the queries) holding each response's group, e.g. a
        ``mode`` column with ``short``/``long``, or ``model``.
    out_path : path-like
        JSONL file, written atomically (:func:`computealloc.files.atomic_write`).
    max_share : dict of str to float, optional
        ``{group: q}``, ``q`` in [0, 1]: per batch, the group's targets are at most
        ``floor(q P_b)`` of its ``P_b`` prompts.
    budget : float, optional
        Mean cost per prompt of each batch's targets, in ``(0, inf)``; needs ``cost_col``.
    cost_col : str, optional
        Numeric column with each response's cost (e.g. ``tokens``), finite and ``>= 0``.
    utility : {"margin", "reward"}, default="margin"
        See :func:`response_utility`.
    batch_size : int, default=64
        Prompts per batch (the last batch may be smaller).
    seed : int, default=0
        Seed of the prompt shuffle.
    keep_rejected : bool, default=False
        Also write the responses not selected, with weight 0.
    progress : callable, optional
        Called as ``progress(batches_done, n_batches)`` after every batch.

    Returns
    -------
    IBPOSummary

    Raises
    ------
    ValueError
        On a missing group column, an unknown group in ``max_share``, a share outside [0, 1],
        samples without ``response``, ``prompt`` or ``correct``, or no constraint at all.
    """
    where = "export_sft"
    frame = _export_frame(log, group_col, cost_col, where)
    groups = tuple(sorted(frame["group"].unique().tolist()))
    shares = check_shares(max_share, groups, where)
    total_budget = check_export_budget(budget, cost_col, where)
    if not shares and total_budget is None:
        raise ValueError(
            "export_sft needs a constraint: give 'max_share', or 'budget' with 'cost_col'."
        )
    check_choice("utility", utility, UTILITIES, where)
    size = check_int(batch_size, "batch_size", where, 1)
    rng_seed = check_int(seed, "seed", where, 0)
    if not isinstance(keep_rejected, bool):
        raise TypeError(
            f"The 'keep_rejected' parameter of {where} must be a bool. Got {keep_rejected!r} "
            "instead."
        )
    batches = _Batches.build(frame, groups, shares, utility, size, rng_seed)
    accepted = np.zeros(len(batches.frame))

    def write(fh: IO[bytes]) -> None:
        for b, rows, weights in batches.solve(total_budget):
            accepted[rows] = weights
            keep = rows if keep_rejected else rows[weights > 0.5]
            fh.write(_jsonl(batches.frame.iloc[keep], accepted[keep], b))
            if progress is not None:
                progress(b + 1, batches.n_batches)

    atomic_write(out_path, write, mode="wb")
    n_written = accepted.size if keep_rejected else int((accepted > 0.5).sum())
    return _summary(str(Path(out_path)), batches, accepted, n_written)


@dataclass(frozen=True)
class _Batches:
    """A log's responses in batch order, with what the per-batch program needs.

    ``frame`` rows are sorted by (shuffled prompt position, model, sample_idx); ``utility``,
    ``reward``, ``group`` (group code) and ``cost`` are (n,) in that order, ``prompt`` (n,) is
    the prompt's index within its batch, ``starts`` (n_batches + 1,) the row offsets of the
    batches and ``n_prompts`` (n_batches,) their sizes.
    """

    frame: pd.DataFrame
    utility: Float
    reward: Float
    prompt: Int
    group: Int
    cost: Float | None
    starts: Int
    n_prompts: Int
    groups: tuple[str, ...]
    shares: dict[str, float]

    @classmethod
    def build(
        cls,
        frame: pd.DataFrame,
        groups: tuple[str, ...],
        shares: dict[str, float],
        utility: Utility,
        size: int,
        seed: int,
    ) -> _Batches:
        q_codes, q_labels = pd.factorize(frame["query_id"], sort=True)
        g_codes = pd.Index(groups).get_indexer(pd.Index(frame["group"])).astype(np.int64)
        reward = frame["reward"].to_numpy(dtype=np.float64)
        u = reward
        if utility == "margin":
            u = margins(reward, q_codes, g_codes, q_labels.tolist(), "export_sft")
        rank = shuffled_rank(len(q_labels), seed)[q_codes]
        model = pd.factorize(frame["model"], sort=True)[0]
        order = np.lexsort((frame["sample_idx"].to_numpy(), model, rank))
        n_batches = -(-len(q_labels) // size)
        batch = rank[order] // size
        return cls(
            frame=frame.iloc[order].reset_index(drop=True),
            utility=u[order],
            reward=reward[order],
            prompt=rank[order] % size,
            group=g_codes[order],
            cost=frame["cost"].to_numpy(dtype=np.float64)[order] if "cost" in frame else None,
            starts=np.searchsorted(batch, np.arange(n_batches + 1)).astype(np.int64),
            n_prompts=np.minimum(size, len(q_labels) - size * np.arange(n_batches)),
            groups=groups,
            shares=shares,
        )

    @property
    def n_batches(self) -> int:
        return int(self.n_prompts.size)

    def batch_of_rows(self) -> Int:
        """Batch index of every row, (n,)."""
        return np.repeat(np.arange(self.n_batches), np.diff(self.starts))

    def solve(self, budget: float | None) -> Iterator[tuple[int, Int, Float]]:
        """Yield ``(batch, rows, weights)`` batch by batch (``budget`` per prompt or None)."""
        for b in range(self.n_batches):
            rows = np.arange(self.starts[b], self.starts[b + 1])
            n_prompts = int(self.n_prompts[b])
            capacity = capacities(self.shares, self.groups, n_prompts)
            cost = None if self.cost is None or budget is None else self.cost[rows]
            total = 0.0 if budget is None else budget * n_prompts
            weights, _ = select(
                self.utility[rows],
                self.prompt[rows],
                n_prompts,
                self.group[rows],
                capacity,
                cost,
                total,
                relax=False,
            )
            yield b, rows, weights


def shuffled_rank(n: int, seed: int) -> Int:
    """Position of each of ``n`` items in a seeded random order, (n,)."""
    rank = np.empty(n, dtype=np.int64)
    rank[np.random.default_rng(seed).permutation(n)] = np.arange(n)
    return rank


def _jsonl(rows: pd.DataFrame, weights: Float, batch: int) -> bytes:
    """One JSON line per response (the TRL prompt-completion record plus traceability)."""
    lines = [
        json.dumps(
            {
                "prompt": prompt,
                "completion": completion,
                "weight": float(weight),
                "group": group,
                "reward": float(reward),
                "query_id": query_id,
                "model": model,
                "sample_idx": int(sample_idx),
                "batch": batch,
            },
            ensure_ascii=False,
        )
        for prompt, completion, weight, group, reward, query_id, model, sample_idx in zip(
            rows["prompt"].tolist(),
            rows["response"].tolist(),
            weights.tolist(),
            rows["group"].tolist(),
            rows["reward"].tolist(),
            rows["query_id"].tolist(),
            rows["model"].tolist(),
            rows["sample_idx"].tolist(),
            strict=True,
        )
    ]
    return "".join(f"{line}\n" for line in lines).encode("utf-8")


def _summary(out_path: str, batches: _Batches, weights: Float, n_written: int) -> IBPOSummary:
    n_g, n_q = len(batches.groups), int(batches.n_prompts.sum())
    batch = batches.batch_of_rows()
    counts = np.bincount(
        batch * n_g + batches.group, weights=weights, minlength=batches.n_batches * n_g
    ).reshape(batches.n_batches, n_g)
    per_batch = counts / batches.n_prompts[:, None]
    chosen = weights > 0.5
    cost = batches.cost
    batch_cost = None if cost is None else np.bincount(batch, cost * weights) / batches.n_prompts
    return IBPOSummary(
        out_path=out_path,
        n_prompts=n_q,
        n_responses=int(weights.size),
        n_batches=batches.n_batches,
        n_selected=int(chosen.sum()),
        n_written=n_written,
        groups=batches.groups,
        max_share=dict(batches.shares),
        share={g: float(counts[:, i].sum()) / n_q for i, g in enumerate(batches.groups)},
        max_batch_share={g: float(per_batch[:, i].max()) for i, g in enumerate(batches.groups)},
        selected_reward=float(batches.reward[chosen].mean()) if chosen.any() else math.nan,
        objective=float(batches.utility @ weights),
        mean_cost=None if cost is None else float(cost @ weights) / n_q,
        max_batch_cost=None if batch_cost is None else float(batch_cost.max()),
    )


def _export_frame(log: object, group_col: str, cost_col: str | None, where: str) -> pd.DataFrame:
    """The columns export needs, validated: query_id, model, sample_idx, prompt, response,
    reward (float), group (str) and, with ``cost_col``, cost (float)."""
    if not isinstance(log, SampleLog):
        raise TypeError(
            f"The 'log' parameter of {where} must be a SampleLog. Got {type(log).__name__} instead."
        )
    frame = log.to_frame()
    columns = [str(c) for c in frame.columns]
    for name, value in (("group_col", group_col), ("cost_col", cost_col)):
        if (value is not None or name == "group_col") and value not in frame.columns:
            raise ValueError(
                f"The '{name}' parameter of {where} must name a column of the sample log. Got "
                f"{value!r}; the log has columns: {', '.join(map(repr, columns))}."
            )
    needed = {
        "response": "the `response` text",
        "prompt": "the `prompt`",
        "correct": "`correct`",
        group_col: f"a group in {group_col!r}",
    }
    for column, what in needed.items():
        _require_values(frame, column, what, where)
    out = frame[["query_id", "model", "sample_idx", "prompt", "response"]].copy()
    out["reward"] = frame["correct"].astype(bool).astype(np.float64)
    out["group"] = frame[group_col].astype(str)
    if cost_col is not None:
        out["cost"] = _cost_values(frame[cost_col], cost_col, where)
    return out


def _require_values(frame: pd.DataFrame, column: str, what: str, where: str) -> None:
    missing = frame[column].isna().to_numpy()
    if missing.any():
        i = int(np.argmax(missing))
        raise ValueError(
            f"{where} needs {what} for every sample; {int(missing.sum())} samples have none "
            f"(first: query {frame['query_id'].iloc[i]!r}, sample {frame['sample_idx'].iloc[i]})."
        )


def _cost_values(column: pd.Series, name: str, where: str) -> Float:
    values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~(np.isfinite(values) & (values >= 0))
    if bad.any():
        raise ValueError(
            f"The cost column {name!r} of {where} must hold finite numbers >= 0. Got "
            f"{column.iloc[int(np.argmax(bad))]!r} in {int(bad.sum())} samples."
        )
    return values
