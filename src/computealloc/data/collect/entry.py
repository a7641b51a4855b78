"""Entry points: :func:`run_collect` (an endpoint or a replayed log), :func:`run_collect_arms`.

Each builds its backends, runs :func:`~computealloc.data.collect.collect` on them and closes them;
this is what ``computealloc collect`` does.
"""

from __future__ import annotations

import asyncio
import functools
import os
import warnings
from collections.abc import Callable, Sequence
from typing import Any, Literal

from computealloc.data.arms import Arm, open_arms
from computealloc.data.backends.base import RetryPolicy
from computealloc.data.collect.log import check_out_path, log_lock
from computealloc.data.collect.sampling import (
    CheckpointProbes,
    CollectProgress,
    CollectResult,
    collect,
)
from computealloc.data.samples import SampleLog, SampleLogWarning

__all__ = ["run_collect", "run_collect_arms"]


def run_collect(
    queries: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    n: int,
    base_url: str | None = None,
    model: str | None = None,
    replay: str | os.PathLike[str] | SampleLog | None = None,
    api_key: str | None = None,
    concurrency: int = 8,
    temperature: float = 0.7,
    max_tokens: int | None = None,
    seed: int | None = None,
    timeout: float = 60.0,
    max_attempts: int = 6,
    use_n: bool | Literal["auto"] = "auto",
    client: Literal["aiohttp", "openai"] = "aiohttp",
    max_failures: int = 0,
    progress: Callable[[CollectProgress], None] | None = None,
    checkpoints: CheckpointProbes | None = None,
) -> CollectResult:
    """Build a backend, run :func:`collect` on it and close it (what ``computealloc collect`` does).

    Parameters
    ----------
    queries, out_path, n, concurrency, temperature, max_tokens, seed, max_failures, progress
        As in :func:`collect`.
    checkpoints : CheckpointProbes, optional
        As in :func:`collect` (a server, not a replay).
    base_url : str, optional
        An OpenAI-compatible server (``.../v1``); needs ``model``. Exactly one of ``base_url``
        and ``replay`` is given.
    model : str, optional
        The served model; with ``replay``, which model of the log to replay.
    replay : path-like or SampleLog, optional
        A sample log to replay instead of a server (offline dry runs, demos); its order is
        seeded by ``seed`` (0 when None).
    api_key, timeout, use_n, client
        As in :class:`~computealloc.data.backends.OpenAIBackend`.
    max_attempts : int
        Attempts per HTTP request (exponential backoff with jitter in between).

    Returns
    -------
    result : CollectResult

    Warns
    -----
    SampleLogWarning
        When ``n`` exceeds the samples the replayed log holds for some query: the replay
        cycles, so some samples repeat.
    """
    if (base_url is None) == (replay is None):
        raise ValueError(
            "Exactly one of the 'base_url' and 'replay' parameters of run_collect must be given. "
            f"Got base_url={base_url!r} and replay={replay!r} instead."
        )
    if base_url is not None and model is None:
        raise ValueError("The 'model' parameter of run_collect is required with 'base_url'.")

    async def main() -> CollectResult:
        backend: Any
        if base_url is not None:
            from computealloc.data.backends.openai_compat import OpenAIBackend

            backend = OpenAIBackend(
                base_url,
                str(model),
                api_key=api_key,
                timeout=timeout,
                use_n=use_n,
                retry=RetryPolicy(max_attempts=max_attempts),
                client=client,
            )
        else:
            from computealloc.data.backends.replay import ReplayBackend
            from computealloc.data.samples import read_samples

            log = read_samples(replay)
            backend = ReplayBackend(log, model, seed=seed or 0)
            _warn_replay_repeats(log, backend.model, n)
        async with backend:
            return await collect(
                queries,
                backend,
                n=n,
                out_path=out_path,
                concurrency=concurrency,
                temperature=temperature,
                max_tokens=max_tokens,
                seed=seed,
                max_failures=max_failures,
                progress=progress,
                checkpoints=checkpoints,
            )

    return asyncio.run(main())


def _warn_replay_repeats(log: SampleLog, model: str, n: int) -> None:
    """Warn when ``n`` exceeds the samples the replayed log holds for some query."""
    sizes = log.samples.loc[log.samples["model"] == model].groupby("query_id").size()
    short = sizes[sizes < n]
    if len(short):
        shown = ", ".join(f"{q!r} ({k})" for q, k in short.head(5).items())
        warnings.warn(
            f"{log.source}: replaying n={n} samples per query, but {len(short)} of "
            f"{len(sizes)} queries of model {model!r} hold fewer ({shown}"
            f"{', ...' if len(short) > 5 else ''}); their samples repeat (drawn again in a "
            f"fresh order), so the log is not {n} independent samples",
            SampleLogWarning,
            stacklevel=3,
        )


def run_collect_arms(
    queries: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    arms: Sequence[Arm],
    *,
    n: int,
    api_key: str | None = None,
    concurrency: int = 8,
    temperature: float = 0.7,
    max_tokens: int | None = None,
    seed: int | None = None,
    timeout: float = 60.0,
    max_attempts: int = 6,
    use_n: bool | Literal["auto"] = "auto",
    client: Literal["aiohttp", "openai"] = "aiohttp",
    max_failures: int = 0,
    progress: Callable[[str, CollectProgress], None] | None = None,
    checkpoints: CheckpointProbes | None = None,
) -> dict[str, CollectResult]:
    """Draw ``n`` samples per query from every arm into one log, arm after arm.

    Each row's ``model`` is its arm's name (:class:`~computealloc.data.arms.Arm`), so the log is an
    ordinary multi-arm log; the arm's request parameters go with each of its requests. Resumable
    per arm like :func:`collect`: a rerun completes what a crash left, arm by arm.

    Parameters
    ----------
    queries, out_path, n, concurrency, temperature, max_tokens, seed, max_failures, checkpoints
        As in :func:`collect`.
    arms : sequence of Arm
        Distinct names.
    api_key, timeout, max_attempts, use_n, client
        As in :func:`~computealloc.data.arms.open_arms`.
    progress : callable, optional
        ``progress(arm, CollectProgress)``.

    Returns
    -------
    dict of str to CollectResult
        Per arm, in the given order.
    """

    async def main() -> dict[str, CollectResult]:
        with log_lock(check_out_path(out_path)):  # one writer for all the arms
            backends = open_arms(
                arms,
                api_key=api_key,
                timeout=timeout,
                max_attempts=max_attempts,
                seed=seed or 0,
                client=client,
                use_n=use_n,
            )
            results: dict[str, CollectResult] = {}
            for name, backend in backends.items():
                report = None if progress is None else functools.partial(progress, name)
                try:
                    results[name] = await collect(
                        queries,
                        backend,
                        n=n,
                        out_path=out_path,
                        concurrency=concurrency,
                        temperature=temperature,
                        max_tokens=max_tokens,
                        seed=seed,
                        max_failures=max_failures,
                        progress=report,
                        checkpoints=checkpoints,
                    )
                finally:
                    await backend.aclose()
            return results

    return asyncio.run(main())
