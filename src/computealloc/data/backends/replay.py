"""Serve the logged samples of a :class:`~computealloc.data.samples.SampleLog` as a backend.

For demos, tests and offline dry runs: ``collect``, the runtime and the proxy server behave
as with a live model, at no cost and reproducibly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from computealloc.data.backends.base import (
    BackendError,
    BackendStats,
    Completion,
    Prompt,
    check_params,
    last_user_text,
    record_received,
)
from computealloc.data.samples import SampleLog

__all__ = ["ReplayBackend", "UnknownPromptError"]


class UnknownPromptError(BackendError):
    """The prompt matches no query of the replayed log (not retryable, HTTP status 404)."""

    def __init__(self, prompt: str) -> None:
        shown = prompt if len(prompt) <= 80 else prompt[:77] + "..."
        super().__init__(
            f"No query of the replayed log has the prompt {shown!r}.",
            retryable=False,
            status_code=404,
        )


class ReplayBackend:
    """Backend that answers a prompt with the logged samples of the query that has it.

    Parameters
    ----------
    log : SampleLog
        The log to replay; its query table must hold prompts.
    model : str, optional
        Which model's samples to serve; may be omitted when the log holds one model.
    seed : int
        Seed of the serving order.

    Attributes
    ----------
    model : str
        The replayed model.
    stats : BackendStats
        ``sample`` calls (each one upstream call) and their outcomes (``"ok"``,
        ``"unknown_prompt"``).
    scores : bool
        Whether every served sample carries a ``score`` (the log's ``score`` column is set on
        every sample of the model), as confidence-aware votes need.

    Notes
    -----
    A prompt is matched to a query by exact text after stripping surrounding whitespace; when
    several queries share a prompt, the first query id in sorted order serves it.

    The ``j``-th sample served for a query with ``m`` logged samples (counting over all calls
    for that query) is logged sample ``perm_c[j mod m]``, where ``perm_c`` is a permutation of
    the ``m`` samples drawn from ``(seed, query_id, c)`` and ``c = j // m``. Samples are thus
    served without replacement across calls until all ``m`` have been served, after which a
    fresh permutation starts (cycling: a call for more than ``m`` samples repeats some). The
    order of a query does not depend on calls for other queries, so concurrent callers get
    reproducible samples per query.

    A conversation is matched by the text of its last user message; the ``params`` of
    :meth:`sample` (temperature, ``max_tokens``, seed, ...) are ignored. A completion's
    text is the logged ``response``, else the logged ``answer``, else ``""``; its
    ``output_tokens`` is the logged ``tokens``; its ``answer`` and ``correct`` are the logged
    ones (``from_log=True``); its ``score`` is the logged ``score`` (None where the log has
    none), which confidence-aware votes weigh.
    """

    def __init__(self, log: SampleLog, model: str | None = None, *, seed: int = 0) -> None:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(
                f"The 'seed' parameter of ReplayBackend must be an int in [0, inf). "
                f"Got {seed!r} instead."
            )
        self.model = _pick_model(log, model)
        self.seed = int(seed)
        rows = log.samples[log.samples["model"] == self.model].sort_values(
            ["query_id", "sample_idx"], kind="stable"
        )
        query_ids, starts, counts = np.unique(
            rows["query_id"].to_numpy(dtype=object), return_index=True, return_counts=True
        )
        self._slices = {
            str(q): (int(s), int(c)) for q, s, c in zip(query_ids, starts, counts, strict=True)
        }
        self._columns = _columns(rows)
        self.scores = bool(rows.size) and "score" in rows and bool(rows["score"].notna().all())
        self._by_prompt = _prompt_index(log, set(self._slices))
        self._served: dict[str, int] = {}
        self.stats = BackendStats()

    async def __aenter__(self) -> ReplayBackend:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Nothing to release."""

    def lookup(self, prompt: str) -> str:
        """The query id whose prompt is ``prompt`` (stripped).

        Raises :class:`UnknownPromptError` when no query has it.
        """
        try:
            return self._by_prompt[prompt.strip()]
        except KeyError:
            raise UnknownPromptError(prompt) from None

    async def sample(
        self, prompt: Prompt, n: int, *, params: Mapping[str, Any] | None = None
    ) -> list[Completion]:
        """Serve the next ``n`` logged samples of the query whose prompt is ``prompt``.

        ``prompt`` is the query's text, or a conversation whose last user message is;
        ``params`` is checked and ignored.

        Returns
        -------
        completions : list of Completion
            Exactly ``n`` completions, in the seeded order described in the class Notes.

        Raises
        ------
        UnknownPromptError
            When no query of the log has this prompt.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(
                f"The 'n' parameter of ReplayBackend.sample must be an int in [1, inf). "
                f"Got {n!r} instead."
            )
        check_params(params, "ReplayBackend.sample")
        self.stats.requests += 1
        try:
            query_id = self.lookup(last_user_text(prompt))
        except UnknownPromptError:
            self.stats.outcomes["unknown_prompt"] += 1
            raise
        self.stats.outcomes["ok"] += 1
        start, count = self._slices[query_id]
        first = self._served.get(query_id, 0)
        self._served[query_id] = first + n
        rows = start + self._order(query_id, count, first, n)
        texts, tokens, answers, correct, reasons, scores = (col[rows] for col in self._columns)
        served = [
            Completion(
                text=t,
                output_tokens=k,
                finish_reason=r,
                answer=a,
                correct=c,
                from_log=True,
                score=s,
            )
            for t, k, a, c, r, s in zip(
                texts, tokens, answers, correct, reasons, scores, strict=True
            )
        ]
        record_received(served)
        return served

    def _order(self, query_id: str, count: int, first: int, n: int) -> NDArray[np.int64]:
        """Positions (within the query) of its served samples ``first, ..., first + n - 1``."""
        key = int.from_bytes(hashlib.blake2b(query_id.encode(), digest_size=8).digest(), "little")
        cycles = range(first // count, (first + n - 1) // count + 1)
        perms = np.concatenate(
            [np.random.default_rng([self.seed, key, c]).permutation(count) for c in cycles]
        )
        offset = first - cycles[0] * count
        return perms[offset : offset + n]


def _pick_model(log: SampleLog, model: str | None) -> str:
    models = log.models
    if model is None and len(models) == 1:
        return models[0]
    if model is None or model not in models:
        raise ValueError(
            f"The 'model' parameter of ReplayBackend must be one of {models} (it may be omitted "
            f"only when the log holds one model). Got {model!r} instead."
        )
    return model


def _columns(rows: pd.DataFrame) -> tuple[NDArray[np.object_], ...]:
    """Object arrays ``(text, output_tokens, answer, correct, finish_reason, score)``, one per
    row (None where a value is missing)."""

    def column(name: str) -> pd.Series:
        if name in rows.columns:
            return rows[name].astype(object)
        return pd.Series(None, index=rows.index, dtype=object)

    def objects(values: pd.Series, kind: type) -> NDArray[np.object_]:
        return np.array([None if pd.isna(v) else kind(v) for v in values.tolist()], dtype=object)

    response, answer = column("response"), column("answer")
    text = response.where(response.notna(), answer)
    return (
        objects(text.where(text.notna(), ""), str),
        objects(column("tokens"), int),
        objects(answer, str),
        objects(column("correct"), bool),
        objects(column("finish_reason"), str),
        objects(column("score"), float),
    )


def _prompt_index(log: SampleLog, known: set[str]) -> dict[str, str]:
    """Stripped prompt -> query id, over queries that have samples; the first id wins."""
    if "prompt" not in log.queries.columns or log.queries["prompt"].isna().all():
        raise ValueError(
            "The log passed to ReplayBackend has no prompts: replay finds queries by their "
            "prompt text, so its query table needs a 'prompt' column."
        )
    table = log.queries.dropna(subset=["prompt"]).sort_values("query_id", kind="stable")
    index: dict[str, str] = {}
    for query_id, prompt in zip(
        table["query_id"].astype(str), table["prompt"].astype(str), strict=True
    ):
        if query_id in known:
            index.setdefault(prompt.strip(), query_id)
    return index
