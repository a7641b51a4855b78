"""Live features: the policy's feature columns computed from prompts and probe samples."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

from computealloc.data.backends.base import Completion
from computealloc.data.samples import SampleLog
from computealloc.estimation.features import (
    PROBE_FEATURES,
    PROMPT_FEATURES,
    probe_features,
    prompt_features,
)
from computealloc.estimation.voting import answer_of
from computealloc.fitting.policies import BasePolicy, Uniform

__all__ = ["FeatureFunction", "feature_function", "live_features", "select_features"]


#: ``features(prompts, probes)`` -> one row per prompt with the policy's feature columns.
FeatureFunction = Callable[[Sequence[str], Sequence[Sequence[Completion]]], pd.DataFrame]


def feature_function(
    policy: BasePolicy, features: FeatureFunction | None, probe_m: int
) -> FeatureFunction | None:
    """The function computing the policy's features; None when its decision reads none."""
    if features is not None:
        if not callable(features):
            raise TypeError(
                "The 'features' parameter of Runtime must be callable as "
                f"features(prompts, probes). Got {type(features).__name__} instead."
            )
        return features
    if isinstance(policy, Uniform) or len(policy.actions_) == 1:
        return None
    names = getattr(policy, "feature_names_in_", None)
    if names is None:
        raise ValueError(
            "The policy was fitted without feature names, so the runtime cannot compute its "
            "features; fit it on a DataFrame of named features or pass `features`."
        )
    probe_names = [str(n) for n in names if str(n) in PROBE_FEATURES]
    if probe_names and not probe_m:
        raise ValueError(
            f"The policy reads probe features ({', '.join(probe_names)}); pass probe_m, the "
            "number of probe samples per query it was fitted with."
        )
    known = set(PROMPT_FEATURES) | set(PROBE_FEATURES)
    unknown = [str(n) for n in names if str(n) not in known]
    if unknown:
        raise ValueError(
            f"The runtime computes prompt and probe features only; the policy also reads "
            f"{', '.join(unknown[:5])}. Pass `features` to compute them."
        )

    def live(prompts: Sequence[str], probes: Sequence[Sequence[Completion]]) -> pd.DataFrame:
        return live_features(prompts, probes, probe_m)

    return live


def live_features(
    prompts: Sequence[str], probes: Sequence[Sequence[Completion]], probe_m: int
) -> pd.DataFrame:
    """Prompt features and, with ``probe_m``, probe features of live samples.

    Parameters
    ----------
    prompts : sequence of str, length n_queries
        Query texts.
    probes : sequence of sequences of Completion, length n_queries
        The probe samples drawn for each query.
    probe_m : int
        Probes per query (0: prompt features only).

    Returns
    -------
    DataFrame of shape (n_queries, n_features)
        The columns of :func:`~computealloc.estimation.features.prompt_features`, then those of
        :func:`~computealloc.estimation.features.probe_features` computed on the probes exactly as
        on a logged sample (answers of replayed samples are the logged ones; response lengths are
        the texts' lengths).
    """
    frame = prompt_features(list(prompts))
    if not probe_m:
        return frame
    return pd.concat([frame, _probe_frame(probes, probe_m)], axis=1)


def _probe_frame(probes: Sequence[Sequence[Completion]], probe_m: int) -> pd.DataFrame:
    rows: list[dict[str, Any]] = [
        {
            "query_id": f"q{i}",
            "sample_idx": j,
            "model": "live",
            "answer": answer_of(c),
            "tokens": math.nan if c.output_tokens is None else float(c.output_tokens),
            "response": c.text,
            "score": math.nan,
        }
        for i, batch in enumerate(probes)
        for j, c in enumerate(batch)
    ]
    ids = [f"q{i}" for i in range(len(probes))]
    samples = pd.DataFrame(rows, columns=list(_PROBE_COLUMNS))
    samples["answer"] = samples["answer"].astype(object)
    log = SampleLog(samples, pd.DataFrame({"query_id": ids}), "<live probes>")
    found = probe_features(log, probe_m).drop(columns="probe_samples")
    return found.reset_index(drop=True)


_PROBE_COLUMNS = ("query_id", "sample_idx", "model", "answer", "tokens", "response", "score")


def select_features(frame: object, names: object, n_rows: int) -> pd.DataFrame:
    if not isinstance(frame, pd.DataFrame) or len(frame) != n_rows:
        raise ValueError(
            f"The runtime's feature function must return a DataFrame with {n_rows} rows. "
            f"Got {type(frame).__name__}"
            + (f" with {len(frame)} rows." if isinstance(frame, pd.DataFrame) else ".")
        )
    if names is None:
        return frame
    wanted = [str(n) for n in names]  # type: ignore[attr-defined]
    missing = [n for n in wanted if n not in frame.columns]
    if missing:
        raise ValueError(
            f"The policy reads features the live samples do not provide: {', '.join(missing)}."
        )
    return frame[wanted]
