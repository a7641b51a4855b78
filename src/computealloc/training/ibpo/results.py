"""IBPO result types: :class:`IBPOSelection` (one batch's accepted targets) and
:class:`IBPOSummary` (what an export wrote), and the type aliases the package shares.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

Utility = Literal["margin", "reward"]
CostUnit = Literal["samples", "tokens", "usd"]
Float = NDArray[np.float64]
Int = NDArray[np.int64]


@dataclass(frozen=True)
class IBPOSelection:
    """Result of :func:`ibpo_select` on one batch.

    Attributes
    ----------
    weights : ndarray of shape (n_responses,)
        Accept variable ``w_j``: 0 or 1 for the integer program, in [0, 1] for the relaxation.
    objective : float
        ``sum_j u_j w_j``, in utility units.
    n_prompts : int
        Distinct prompts ``P`` in the batch.
    counts : dict of str to float
        Accepted targets per group (every group of the batch, capped or not).
    share : dict of str to float
        ``counts / P`` per group: the realised density.
    capacity : dict of str to int
        ``floor(q_g P)`` for each capped group.
    mean_cost : float or None
        ``sum_j c_j w_j / P`` when costs were given.
    prices : dict of str to float or None
        Relaxation only: the dual prices, ``>= 0``. ``prices[g]`` for each capped group is the
        marginal utility of the cap, in utility per accepted target of group ``g``;
        ``prices["budget"]`` that of the budget, in utility per unit of total cost
        ``sum_j c_j w_j``. Each is a subgradient of the relaxed optimum: at a kink it lies
        between the gain of one more unit and the loss of one fewer. ``None`` for the integer
        program.
    """

    weights: Float
    objective: float
    n_prompts: int
    counts: dict[str, float]
    share: dict[str, float]
    capacity: dict[str, int]
    mean_cost: float | None
    prices: dict[str, float] | None


@dataclass(frozen=True)
class IBPOSummary:
    """What :func:`export_sft` selected and wrote.

    Attributes
    ----------
    out_path : str
        The JSONL file written.
    n_prompts, n_responses, n_batches, n_selected, n_written : int
        Prompts and responses read, batches solved, targets selected, records written.
    groups : tuple of str
        Group labels, sorted.
    max_share : dict of str to float
        The share caps asked for (capped groups only).
    share : dict of str to float
        Selected targets of each group over all prompts.
    max_batch_share : dict of str to float
        The largest per-batch share of each group; at most ``floor(q_g P_b) / P_b`` in every
        batch ``b``.
    selected_reward : float
        Mean reward (correctness) of the selected targets; NaN when none was selected.
    objective : float
        Total utility of the selected targets.
    mean_cost, max_batch_cost : float or None
        Selected cost per prompt, overall and in the most expensive batch (with ``cost_col``).
    """

    out_path: str
    n_prompts: int
    n_responses: int
    n_batches: int
    n_selected: int
    n_written: int
    groups: tuple[str, ...]
    max_share: dict[str, float]
    share: dict[str, float]
    max_batch_share: dict[str, float]
    selected_reward: float
    objective: float
    mean_cost: float | None
    max_batch_cost: float | None

    def to_frame(self) -> pd.DataFrame:
        """One row per group: ``group, max_share`` (NaN if uncapped), ``share``,
        ``max_batch_share``."""
        return pd.DataFrame(
            {
                "group": list(self.groups),
                "max_share": [self.max_share.get(g, math.nan) for g in self.groups],
                "share": [self.share[g] for g in self.groups],
                "max_batch_share": [self.max_batch_share[g] for g in self.groups],
            }
        )
