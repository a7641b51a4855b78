"""A synthetic checkpoint log that mimics the traces of reasoning models.

No public checkpoint log is bundled; this generator lets the thinking actions, the early-exit
rules and their evaluation be built and tested. Its parameters follow published observations
of reasoning models (DeepSeek-R1 distills, QwQ, Qwen3), not the bar of issue 16: they are
fixed here and were not tuned to make any method win. Real figures need a real checkpoint log.

How a trace is drawn
--------------------
- Query ``i`` has an ability logit ``a_i ~ N(1.2, 2.0)``: the probability that a trace
  *settles* on the correct answer is ``sigmoid(a_i)`` (mean about 0.7, and per-query
  accuracies piled near 0 and 1, as the per-question accuracies of sampled reasoning models
  are). Its difficulty is ``z_i = -(a_i - 1.2) / 2``.
- Trace length (thinking tokens) is log-normal: median ``2000 * exp(0.5 z_i)``, per-trace
  log-sd 0.5, times 1.4 for traces whose final answer is wrong (incorrect solutions are
  longer than correct ones on the same question: Zeng et al. 2025, "Revisiting the test-time
  scaling of o1-like models"), cut at 16384 tokens (the 16k budget of DEER's runs), where the
  trace is truncated: its last row is a forced answer at 16384 tokens, not a natural end.
- The answer settles at a fraction ``s ~ Beta(3, 2)`` of the trace (mean 0.6: answers
  converge after about 60% of the reasoning steps, Liu & Wang 2025, "Answer convergence as a
  signal for early stopping in reasoning"; P(s < 0.5) = 0.31, near DEER's 36.7% of samples
  that need less than half their reasoning, Yang et al. 2025, "Dynamic early exit in
  reasoning models").
- Before it settles, the forced answer at fraction ``f`` is the settled answer with
  probability ``f / s`` and otherwise a fresh draw, correct with probability
  ``sigmoid(a_i - 1.5)`` (answering without thinking is worse, more so on hard questions:
  Ma et al. 2025, "Reasoning models can be effective without thinking"), else one of three
  wrong answers of the query (Dirichlet(1, 1, 1) weights, so wrong votes cluster).
- Late flips (overthinking and late self-correction; DEER reports questions answered
  correctly only by exiting early): 10% of traces settled on the correct answer switch to a
  wrong one, and 10% of those settled on a wrong answer switch to the correct one, at a
  fraction ``U(0.8, 1.0)`` of the trace.
- Confidence (the model's probability of its answer) is ``sigmoid`` of a normal logit:
  mean 0 before the answer settles, 3.0 once settled on a correct answer and 2.0 once settled
  on a wrong one, sd 1 (confidence rises as the answer settles; settled confidences near
  0.95, DEER's threshold, with wrong answers somewhat less confident).
- The prompt reads part of the difficulty: its length in words grows with a noisy reading
  ``h_i = r z_i + sqrt(1 - r^2) e_i`` of it (``e_i ~ N(0, 1)``, ``r = 0.4``), as the prompts of
  real questions do: this project's prompt features predict the per-question accuracy logit
  with a cross-validated Pearson correlation of 0.44 on MATH level 5 (40 models, 721
  questions, ``zeroeval_math_l5``) and 0.40 on Qwen2.5-Math's MATH samples
  (``qwen25math_rm_maj``), 0.23 to 0.26 on Llama-2-13B's GSM8K and 0.41 to 0.71 on Date
  (``mot_cascade``; ``scripts/prompt_signal.py`` measures them); ``r = 0`` gives prompts that
  carry nothing.
- Checkpoints at ``0, 256, 512, ..., 16384`` thinking tokens below the trace length, then
  the natural end (``final``); each forced answer costs ``10 + Poisson(10)`` answer tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from computealloc.data.checkpoints import CheckpointLog, read_checkpoints

__all__ = ["GRID", "SyntheticParams", "synthetic", "synthetic_frame"]

#: Checkpoint positions (thinking tokens) of the synthetic log.
GRID: tuple[int, ...] = tuple(range(0, 16385, 256))


@dataclass(frozen=True)
class SyntheticParams:
    """The generator's parameters; the defaults and their sources are in the module docstring."""

    ability_mean: float = 1.2
    ability_sd: float = 2.0
    median_tokens: float = 2000.0
    length_per_difficulty: float = 0.5
    length_sd: float = 0.5
    wrong_longer: float = 1.4
    max_think: int = 16384
    settle_beta: tuple[float, float] = (3.0, 2.0)
    nothink_shift: float = 1.5
    flip_to_wrong: float = 0.10
    flip_to_right: float = 0.10
    flip_window: tuple[float, float] = (0.8, 1.0)
    conf_unsettled: float = 0.0
    conf_settled_right: float = 3.0
    conf_settled_wrong: float = 2.0
    conf_sd: float = 1.0
    n_wrong: int = 3
    prompt_signal: float = 0.4


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def synthetic_frame(
    n_queries: int = 200,
    n_samples: int = 8,
    seed: int = 0,
    *,
    grid: Sequence[int] = GRID,
    params: SyntheticParams | None = None,
) -> pd.DataFrame:
    """The synthetic log as a long frame (one row per query x sample x checkpoint).

    Parameters
    ----------
    n_queries, n_samples : int
        Queries, and traces per query (>= 1).
    seed : int
        Seed of ``numpy.random.default_rng``.
    grid : sequence of int
        Checkpoint positions in thinking tokens, increasing; positions at or past a trace's
        length are not probed.
    params : SyntheticParams, optional

    Returns
    -------
    DataFrame
        Columns ``query_id, sample_idx, think_tokens, answer, correct, confidence, final,
        answer_tokens, prompt, gold, model``.
    """
    if n_queries < 1 or n_samples < 1:
        raise ValueError(
            f"synthetic needs n_queries >= 1 and n_samples >= 1. Got {n_queries} and {n_samples}."
        )
    p = params or SyntheticParams()
    if not 0.0 <= p.prompt_signal <= 1.0:
        raise ValueError(f"prompt_signal must be in [0, 1]. Got {p.prompt_signal!r}.")
    rng = np.random.default_rng(seed)
    n = n_queries * n_samples
    q = np.repeat(np.arange(n_queries), n_samples)
    ability = rng.normal(p.ability_mean, p.ability_sd, n_queries)
    difficulty = -(ability - p.ability_mean) / p.ability_sd
    wrong_weights = rng.dirichlet(np.ones(p.n_wrong), n_queries)

    def wrong_answer(rows: np.ndarray) -> np.ndarray:
        u = rng.random(rows.size)[:, None]
        return 1 + (u > np.cumsum(wrong_weights[rows], axis=1)).sum(axis=1).clip(max=p.n_wrong - 1)

    settled_right = rng.random(n) < _sigmoid(ability[q])
    settled = np.where(settled_right, 0, wrong_answer(q))  # 0 = the gold answer
    flips = rng.random(n) < np.where(settled_right, p.flip_to_wrong, p.flip_to_right)
    flipped = np.where(settled_right, wrong_answer(q), 0)
    final_answer = np.where(flips, flipped, settled)
    log_len = (
        np.log(p.median_tokens)
        + p.length_per_difficulty * difficulty[q]
        + rng.normal(0.0, p.length_sd, n)
        + np.log(p.wrong_longer) * (final_answer != 0)
    )
    length = np.minimum(np.round(np.exp(log_len)), p.max_think).astype(np.int64)
    truncated = length >= p.max_think
    settle = rng.beta(*p.settle_beta, n)
    flip_at = rng.uniform(*p.flip_window, n)

    positions = np.asarray(grid, dtype=np.int64)
    probe = positions[None, :] < length[:, None]
    think = np.concatenate([np.broadcast_to(positions, (n, positions.size)), length[:, None]], 1)
    keep = np.concatenate([probe, np.ones((n, 1), dtype=bool)], axis=1)
    frac = think / np.maximum(length, 1)[:, None]
    fresh_right = rng.random(think.shape) < _sigmoid(ability[q] - p.nothink_shift)[:, None]
    fresh = np.where(
        fresh_right, 0, wrong_answer(np.repeat(q, think.shape[1])).reshape(think.shape)
    )
    converged = rng.random(think.shape) < frac / settle[:, None]
    is_settled = frac >= settle[:, None]
    is_flipped = flips[:, None] & (frac >= flip_at[:, None])
    answer = np.where(
        is_flipped, flipped[:, None], np.where(is_settled | converged, settled[:, None], fresh)
    )
    answer[:, -1] = final_answer
    is_settled[:, -1] = True
    logit_mean = np.where(
        is_settled | is_flipped,
        np.where(answer == 0, p.conf_settled_right, p.conf_settled_wrong),
        p.conf_unsettled,
    )
    confidence = _sigmoid(rng.normal(logit_mean, p.conf_sd))
    answer_tokens = 10 + rng.poisson(10, think.shape)
    reading = p.prompt_signal * difficulty + np.sqrt(1.0 - p.prompt_signal**2) * rng.normal(
        0.0, 1.0, n_queries
    )
    extra = np.clip(np.round(8.0 + 4.0 * reading), 0, None).astype(np.int64)
    prompts = np.array(
        [
            f"synthetic question {i}" + " and one more condition" * int(k)
            for i, k in enumerate(extra)
        ],
        dtype=object,
    )

    trace = np.broadcast_to(np.arange(n)[:, None], think.shape)[keep]
    qq = q[trace]
    code = answer[keep]
    frame = pd.DataFrame(
        {
            "query_id": [f"q{i:05d}" for i in qq],
            "sample_idx": trace % n_samples,
            "think_tokens": think[keep],
            "answer": (qq * 10 + code).astype(str),
            "correct": code == 0,
            "confidence": np.round(confidence[keep], 6),
            "final": (
                (np.arange(think.shape[1]) == think.shape[1] - 1)[None, :] & ~truncated[:, None]
            )[keep],
            "answer_tokens": answer_tokens[keep],
            "prompt": prompts[qq],
            "gold": (qq * 10).astype(str),
            "model": "synthetic-reasoner",
        }
    )
    return frame


def synthetic(
    n_queries: int = 200,
    n_samples: int = 8,
    seed: int = 0,
    *,
    grid: Sequence[int] = GRID,
    params: SyntheticParams | None = None,
) -> CheckpointLog:
    """A validated synthetic :class:`~computealloc.data.checkpoints.CheckpointLog`.

    See :func:`synthetic_frame` for the parameters and the module docstring for the model.

    Examples
    --------
    >>> log = synthetic(20, 4, seed=0)
    >>> log.n_queries, log.models
    (20, ['synthetic-reasoner'])
    """
    frame = synthetic_frame(n_queries, n_samples, seed, grid=grid, params=params)
    return read_checkpoints(frame, grade=False)
