"""Estimated time and memory of an evaluation, before running it (:func:`footprint`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from computealloc.data.samples import SampleLog
from computealloc.evaluation.arguments import parse_budgets, parse_choices, parse_seeds
from computealloc.evaluation.common import METHODS, PROTOCOLS, SEQUENTIAL
from computealloc.evaluation.stopping import sequential_reason

__all__ = ["Footprint", "footprint"]


@dataclass(frozen=True)
class Footprint:
    """What an :func:`evaluate` call will cost, roughly (see :func:`footprint`).

    Attributes
    ----------
    steps : int
        Progress steps (protocol x seed x budget).
    seconds : float
        Estimated wall time on the reference machine (2 shared x86 cores).
    peak_bytes : float
        Estimated peak memory of the process.
    sequential_seconds : float
        The part of ``seconds`` spent by the sequential stopping rules.
    """

    steps: int
    seconds: float
    peak_bytes: float
    sequential_seconds: float


#: Footprint model, fitted on Game-of-24-like logs (up to 100 queries x 100 samples, many
#: distinct answers) and mot_cascade on 2 shared cores: seconds per progress step of the
#: per-query policies; seconds and bytes of the stopping rules per (protocol, seed) for 100
#: queries x 100 samples (time ~ queries x samples^2.2, memory ~ samples^2 x sqrt(queries));
#: the process.
STEP_S, SEQ_S, SEQ_BYTES, BASE_BYTES = 1.0, 16.0, 1.0e9, 250e6


def footprint(
    log: SampleLog,
    *,
    budgets: Iterable[float] = (1, 2, 4, 8),
    seeds: int | Iterable[int] = 3,
    protocols: str | Iterable[str] = PROTOCOLS,
    methods: Iterable[str] | None = None,
) -> Footprint:
    """Estimate the time and memory of :func:`evaluate` with these arguments, before running.

    The sequential stopping rules dominate on logs with many samples per query: their replay
    tables grow with the square of the samples replayed (``n`` in-sample, ``n / 2`` held-out).
    The figures are rough (within a factor of 2 on the logs the model was fitted on) and
    scale with the machine.

    Examples
    --------
    >>> from computealloc.data import datasets  # doctest: +SKIP
    >>> footprint(datasets.load("mot_cascade:llama-2-13b/gsm/pot2")).seconds  # doctest: +SKIP
    """
    budget_list = parse_budgets(budgets)
    n_seeds = len(parse_seeds(seeds))
    protocol_list = parse_choices("protocols", protocols, PROTOCOLS)
    names = METHODS if methods is None else tuple(methods)
    steps = len(protocol_list) * n_seeds * len(budget_list)
    n_queries = log.samples["query_id"].nunique()
    pool = int(log.samples.groupby(["model", "query_id"]).size().max()) if n_queries else 0
    sequential = (
        any(m in SEQUENTIAL for m in names) and sequential_reason(log, "samples", ()) is None
    )
    seq_s, widest = 0.0, 0
    for protocol in protocol_list if sequential else ():
        width = pool if protocol == "in-sample" else pool // 2
        grow = (n_queries / 100) * (width / 100) ** 2.2
        seq_s += n_seeds * SEQ_S * grow * (0.55 + 0.45 * sum(b >= 1 for b in budget_list))
        widest = max(widest, width)
    grow_bytes = (widest / 100) ** 2 * max(1.0, n_queries / 100) ** 0.5
    peak = BASE_BYTES + (SEQ_BYTES * grow_bytes if sequential else 0.0)
    return Footprint(steps, steps * STEP_S + seq_s, peak, seq_s)
