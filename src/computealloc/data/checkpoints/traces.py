"""One model's traces of a checkpoint log as padded arrays."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from computealloc.data.grading import answer_keys

if TYPE_CHECKING:
    from computealloc.data.checkpoints.log import CheckpointLog

__all__ = ["Traces"]

Float = NDArray[np.float64]
Int = NDArray[np.int64]
Bool = NDArray[np.bool_]

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
