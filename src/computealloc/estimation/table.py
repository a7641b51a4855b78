"""Plain data objects passed between stages: :class:`OutcomeTable` and :class:`Allocation`.

They hold arrays only, so solvers and policies need not import the estimators.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from computealloc.files import atomic_write

__all__ = ["Allocation", "OutcomeTable"]


@dataclass(frozen=True)
class OutcomeTable:
    """Expected accuracy and cost of every action on every query.

    Parameters
    ----------
    P : array-like of shape (n_queries, n_actions)
        Expected accuracy in [0, 1] of action ``a`` on query ``i``.
    C : array-like of shape (n_queries, n_actions)
        Expected cost (in ``cost_unit``) of action ``a`` on query ``i``; finite and >= 0.
    actions : sequence of str, optional
        Action specs, e.g. ``"majority@4"``; defaults to ``"a0", "a1", ...``.
    query_ids : sequence of str, optional
        Query identifiers; defaults to ``"0", "1", ...``.
    cost_unit : str
        ``"samples"``, ``"tokens"``, ``"usd"`` or any label.
    """

    P: NDArray[np.float64]
    C: NDArray[np.float64]
    actions: tuple[str, ...] = ()
    query_ids: tuple[str, ...] = ()
    cost_unit: str = "samples"
    metadata: dict[str, Any] = field(default_factory=dict)

    def __init__(
        self,
        P: ArrayLike,
        C: ArrayLike,
        actions: Sequence[str] | None = None,
        query_ids: Sequence[str] | None = None,
        cost_unit: str = "samples",
        metadata: dict[str, Any] | None = None,
    ) -> None:
        p = np.array(P, dtype=np.float64, copy=True, ndmin=2)
        c = np.array(C, dtype=np.float64, copy=True, ndmin=2)
        if p.ndim != 2 or c.ndim != 2:
            raise ValueError(f"`P` and `C` must be 2-D. Got {p.ndim}-D and {c.ndim}-D.")
        if p.shape != c.shape:
            raise ValueError(f"`P` and `C` must have the same shape. Got {p.shape} and {c.shape}.")
        if p.shape[0] == 0 or p.shape[1] == 0:
            raise ValueError(f"`P` must have at least one query and one action. Got {p.shape}.")
        if not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
            raise ValueError("`P` must hold finite accuracies in [0, 1].")
        if not np.isfinite(c).all() or (c < 0).any():
            raise ValueError("`C` must hold finite costs >= 0.")
        n, k = p.shape
        acts = tuple(actions) if actions is not None else tuple(f"a{j}" for j in range(k))
        qids = (
            tuple(str(q) for q in query_ids)
            if query_ids is not None
            else tuple(str(i) for i in range(n))
        )
        if len(acts) != k:
            raise ValueError(f"`actions` must have {k} entries (columns of `P`). Got {len(acts)}.")
        if len(qids) != n:
            raise ValueError(f"`query_ids` must have {n} entries (rows of `P`). Got {len(qids)}.")
        p.setflags(write=False)
        c.setflags(write=False)
        object.__setattr__(self, "P", p)
        object.__setattr__(self, "C", c)
        object.__setattr__(self, "actions", acts)
        object.__setattr__(self, "query_ids", qids)
        object.__setattr__(self, "cost_unit", str(cost_unit))
        object.__setattr__(self, "metadata", dict(metadata or {}))

    @property
    def n_queries(self) -> int:
        return int(self.P.shape[0])

    @property
    def n_actions(self) -> int:
        return int(self.P.shape[1])

    def subset(self, rows: ArrayLike) -> OutcomeTable:
        """Return the table restricted to the queries selected by ``rows`` (indices or mask)."""
        idx = np.arange(self.n_queries)[np.asarray(rows)]
        return OutcomeTable(
            self.P[idx],
            self.C[idx],
            self.actions,
            [self.query_ids[i] for i in idx],
            self.cost_unit,
            self.metadata,
        )

    def to_frame(self) -> pd.DataFrame:
        """Long frame with one row per (query, action): ``query_id, action, p, cost``."""
        n, k = self.P.shape
        return pd.DataFrame(
            {
                "query_id": np.repeat(np.asarray(self.query_ids, dtype=object), k),
                "action": np.tile(np.asarray(self.actions, dtype=object), n),
                "p": self.P.ravel(),
                "cost": self.C.ravel(),
            }
        )

    def save(self, path: str | os.PathLike[str]) -> None:
        """Save as Parquet (long format) with the metadata in the Parquet schema."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        meta = {
            "actions": list(self.actions),
            "cost_unit": self.cost_unit,
            "metadata": self.metadata,
            "format": "computealloc.OutcomeTable/1",
        }
        tbl = pa.Table.from_pandas(self.to_frame(), preserve_index=False)
        tbl = tbl.replace_schema_metadata({b"computealloc": json.dumps(meta).encode()})
        atomic_write(path, lambda tmp: pq.write_table(tbl, tmp), mode="path")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> OutcomeTable:
        """Load a table written by :meth:`save`; a foreign or damaged file is a clear error."""
        import pyarrow.parquet as pq

        try:
            tbl = pq.read_table(path)
        except Exception as exc:
            raise ValueError(f"{path}: not a readable Parquet OutcomeTable ({exc}).") from exc
        raw = (tbl.schema.metadata or {}).get(b"computealloc")
        if raw is None:
            raise ValueError(f"{path}: Parquet file has no computealloc metadata.")
        meta = json.loads(raw)
        df = tbl.to_pandas()
        actions = list(meta["actions"])
        k = len(actions)
        if len(df) % k:
            raise ValueError(f"{path}: {len(df)} rows is not a multiple of {k} actions.")
        n = len(df) // k
        acts = df["action"].to_numpy(dtype=object).reshape(n, k)
        if not (acts == np.asarray(actions, dtype=object)).all():
            raise ValueError(f"{path}: rows are not in (query, action) order.")
        return cls(
            df["p"].to_numpy(np.float64).reshape(n, k),
            df["cost"].to_numpy(np.float64).reshape(n, k),
            actions,
            df["query_id"].to_numpy(dtype=object)[::k].astype(str).tolist(),
            meta.get("cost_unit", "samples"),
            meta.get("metadata") or {},
        )


@dataclass(frozen=True)
class Allocation:
    """Result of :func:`computealloc.estimation.oracle`.

    Attributes
    ----------
    actions : ndarray of shape (n_queries,), int
        Action index per query (for the fractional query: its cheaper hull action).
    mix : tuple (query, action_low, action_high, weight_high) or None
        The one query whose compute is split between two actions; ``weight_high`` in [0, 1]
        is the probability of ``action_high``. ``None`` when no split is needed.
    lam : float
        Dual price of cost (accuracy per unit cost) at the optimum; 0 when the budget is slack.
    accuracy : float
        Mean expected accuracy of the (mixed) allocation.
    cost : float
        Mean expected cost of the (mixed) allocation; equals the budget when it binds.
    budget : float
        The budget asked for.
    status : str
        ``"optimal"`` (budget binds) or ``"slack"`` (best actions cost less than the budget).
    """

    actions: NDArray[np.int64]
    mix: tuple[int, int, int, float] | None
    lam: float
    accuracy: float
    cost: float
    budget: float
    status: str = "optimal"
    action_names: tuple[str, ...] = ()
    query_ids: tuple[str, ...] = ()

    def counts(self) -> dict[str, float]:
        """Number of queries per action (the fractional query split by its weights)."""
        k = len(self.action_names) if self.action_names else int(self.actions.max()) + 1
        cnt = np.bincount(self.actions, minlength=k).astype(np.float64)
        if self.mix is not None:
            _, lo, hi, w = self.mix
            cnt[lo] -= w
            cnt[hi] += w
        names = self.action_names or tuple(f"a{j}" for j in range(k))
        return {names[j]: float(cnt[j]) for j in range(k)}

    def to_frame(self) -> pd.DataFrame:
        """One row per query: ``query_id, action`` (name), ``action_index``, ``weight``."""
        names = np.asarray(self.action_names or [f"a{j}" for j in range(self.actions.max() + 1)])
        n = len(self.actions)
        qids = self.query_ids or tuple(str(i) for i in range(n))
        df = pd.DataFrame(
            {
                "query_id": list(qids),
                "action": names[self.actions],
                "action_index": self.actions,
                "weight": np.ones(n),
            }
        )
        if self.mix is not None:
            i, _, hi, w = self.mix
            df.loc[i, "weight"] = 1.0 - w
            extra = pd.DataFrame(
                {"query_id": [qids[i]], "action": [names[hi]], "action_index": [hi], "weight": [w]}
            )
            df = pd.concat([df, extra], ignore_index=True)
        return df
