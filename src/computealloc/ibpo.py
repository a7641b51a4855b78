"""IBPO: budget-constrained selection of fine-tuning targets, and its allocation as a policy.

Inference Budget-Constrained Policy Optimization (Yu et al., 2025) teaches a model to spend
long reasoning only where it pays. Its sampled responses belong to groups (say ``short`` = one
standard solution and ``long`` = an extended, voting response); at every training step an
integer program over the batch decides which responses become training targets, so that the
share of long targets stays within a budget ``q+``; the model is then fine-tuned on the chosen
responses (SFT weighted by the 0/1 choice).

This module is a **reconstruction** from the paper's abstract and public summaries (the full
paper could not be read); the names below are ours. For a batch of ``P`` prompts whose
responses ``j`` carry a utility ``u_j``, a group ``g(j)`` and optionally a cost ``c_j``:

.. math::

    \\max_{w \\in \\{0, 1\\}^n} \\sum_j u_j w_j \\quad \\text{s.t.} \\quad
    \\sum_{j \\in p} w_j \\le 1 \\;\\; \\forall p, \\qquad
    \\sum_{j: g(j) = g} w_j \\le \\lfloor q_g P \\rfloor \\;\\; \\forall g \\text{ capped}, \\qquad
    \\sum_j c_j w_j \\le B P.

At most one target per prompt; a capped group's targets are at most a share ``q_g`` of the
batch's prompts (the density constraint); and/or the accepted targets' mean cost per prompt is
at most ``B``. The utility is the response's reward (correctness) or, by default, its margin:
the reward minus the mean reward of the prompt's responses in the other groups. Only
responses of positive utility can be accepted (the others never raise the objective).

- :func:`response_utility` computes margins or rewards; :func:`ibpo_select` solves the program
  with :func:`scipy.optimize.milp` (sparse constraint matrices, built without loops over
  responses), or its LP relaxation with the dual prices of the share and budget constraints.
- :func:`export_sft` streams a :class:`~computealloc.samples.SampleLog` through the selection in
  seeded batches and writes a prompt/completion JSONL dataset for TRL's ``SFTTrainer``.
- :func:`ibpo_allocation_sweep` reads the selection as an allocation policy between two modes
  (``short`` = majority@1, ``long`` = majority@8) and compares it with the uniform mix and the
  oracle of :func:`computealloc.oracle.solve`. The in-batch selection sees the outcomes, so, like
  the oracle, it is an upper bound, not a deployable policy.

References
----------
.. [1] Z. Yu et al., "Think Smarter not Harder: Adaptive Reasoning with Inference Aware
   Optimization", ICML 2025 (arXiv:2501.17974).
"""

from __future__ import annotations

import json
import math
import numbers
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy import optimize, sparse

from computealloc.estimate import estimate
from computealloc.oracle import solve
from computealloc.samples import SampleLog
from computealloc.table import OutcomeTable, atomic_write

__all__ = [
    "IBPOSelection",
    "IBPOSummary",
    "export_sft",
    "ibpo_allocation_sweep",
    "ibpo_select",
    "response_utility",
]

Utility = Literal["margin", "reward"]
CostUnit = Literal["samples", "tokens", "usd"]
Float = NDArray[np.float64]
Int = NDArray[np.int64]

_UTILITIES = ("margin", "reward")
_SHARE_EPS = 1e-9  # q * P within this of a whole number counts as that number of prompts


# --------------------------------------------------------------------------- results


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


# --------------------------------------------------------------------------- public API


def response_utility(
    reward: ArrayLike, prompt: ArrayLike, group: ArrayLike, kind: Utility = "margin"
) -> Float:
    """Utility of each response: its reward, or its margin over the other groups.

    The margin of response ``j`` of prompt ``p`` in group ``g`` is
    ``r_j - mean{r_k : k of prompt p, group(k) != g}`` (the other groups' responses pooled).

    Parameters
    ----------
    reward : array-like of float, shape (n_responses,)
        Finite rewards, e.g. correctness in {0, 1}.
    prompt : array-like, shape (n_responses,)
        Prompt label of each response (any hashable values).
    group : array-like, shape (n_responses,)
        Group label of each response.
    kind : {"margin", "reward"}, default="margin"

    Returns
    -------
    ndarray of shape (n_responses,)

    Raises
    ------
    ValueError
        With ``kind="margin"``, if some prompt has responses of only one group.

    Examples
    --------
    >>> response_utility([1, 0, 1, 1], ["a", "a", "a", "a"], ["s", "s", "l", "l"]).tolist()
    [0.0, -1.0, 0.5, 0.5]
    """
    _check_choice("kind", kind, _UTILITIES, "response_utility")
    r = _float_vector(reward, "reward", "response_utility")
    p_codes, p_labels = _codes(prompt, r.size, "prompt", "response_utility")
    g_codes, _ = _codes(group, r.size, "group", "response_utility")
    if kind == "reward":
        return r
    return _margins(r, p_codes, g_codes, p_labels, "response_utility")


def ibpo_select(
    utility: ArrayLike,
    prompt: ArrayLike,
    group: ArrayLike,
    *,
    max_share: Mapping[str, float] | None = None,
    cost: ArrayLike | None = None,
    budget: float | None = None,
    relax: bool = False,
) -> IBPOSelection:
    """Choose at most one training target per prompt under share and/or cost budgets.

    Solves, over the responses ``j`` of one batch of ``P`` prompts,

    ``max_w sum_j u_j w_j``  s.t.  ``sum_{j in p} w_j <= 1`` for every prompt ``p``,
    ``sum_{j in g} w_j <= floor(q_g P)`` for every group ``g`` in ``max_share``,
    ``sum_j c_j w_j <= B P`` (with ``cost`` and ``budget``), ``w_j in {0, 1}``,
    and ``w_j = 0`` where ``u_j <= 0``.

    Parameters
    ----------
    utility : array-like of float, shape (n_responses,)
        ``u_j``, e.g. from :func:`response_utility`.
    prompt : array-like, shape (n_responses,)
        Prompt label of each response.
    group : array-like, shape (n_responses,)
        Group label of each response; labels are compared as strings with ``max_share``.
    max_share : dict of str to float, optional
        ``{group: q_g}`` with ``q_g`` in [0, 1]: the group's targets are at most
        ``floor(q_g P)`` (``q_g P`` within 1e-9 of a whole number counts as that number).
    cost : array-like of float, shape (n_responses,), optional
        ``c_j >= 0`` in any unit (tokens, samples); given together with ``budget``.
    budget : float, optional
        ``B``, the accepted targets' mean cost per prompt, in ``(0, inf)``.
    relax : bool, default=False
        Solve the LP relaxation (``0 <= w_j <= 1``) with :func:`scipy.optimize.linprog` and
        return the dual prices.

    Returns
    -------
    IBPOSelection

    Raises
    ------
    ValueError
        If no constraint besides one-target-per-prompt is given, a group of ``max_share`` is
        not in ``group``, a share is outside [0, 1], or an array has the wrong shape.

    Notes
    -----
    With share caps only, the constraint matrix is the incidence matrix of a bipartite graph
    (prompts x groups), hence totally unimodular: the relaxation is integral and its optimum
    equals the integer one. A cost budget makes it a knapsack, solved by branch and bound.

    Examples
    --------
    >>> sel = ibpo_select([0.5, 0.9, 0.2, 0.6], ["a", "a", "b", "b"], ["s", "l", "s", "l"],
    ...                   max_share={"l": 0.5})
    >>> sel.weights.tolist(), sel.share
    ([0.0, 1.0, 1.0, 0.0], {'l': 0.5, 's': 0.5})
    """
    where = "ibpo_select"
    u = _float_vector(utility, "utility", where)
    p_codes, p_labels = _codes(prompt, u.size, "prompt", where)
    g_codes, g_labels = _codes(group, u.size, "group", where)
    shares = _check_shares(max_share, g_labels, where)
    c, total = _check_cost(cost, budget, u.size, len(p_labels), where)
    if not shares and c is None:
        raise ValueError(
            "ibpo_select needs a constraint: give 'max_share', or 'cost' with 'budget'."
        )
    if not isinstance(relax, bool):
        raise TypeError(f"The 'relax' parameter of {where} must be a bool. Got {relax!r} instead.")
    capacity = _capacities(shares, g_labels, len(p_labels))
    weights, prices = _select(u, p_codes, len(p_labels), g_codes, capacity, c, total, relax)
    return _selection(weights, u, len(p_labels), g_codes, g_labels, capacity, c, prices)


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
        JSONL file, written atomically (:func:`computealloc.table.atomic_write`).
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
    shares = _check_shares(max_share, groups, where)
    total_budget = _check_export_budget(budget, cost_col, where)
    if not shares and total_budget is None:
        raise ValueError(
            "export_sft needs a constraint: give 'max_share', or 'budget' with 'cost_col'."
        )
    _check_choice("utility", utility, _UTILITIES, where)
    size = _check_int(batch_size, "batch_size", where, 1)
    rng_seed = _check_int(seed, "seed", where, 0)
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


def ibpo_allocation_sweep(
    table_or_log: OutcomeTable | SampleLog,
    shares: Sequence[float] = (0.25, 0.5, 0.75),
    *,
    batch_size: int = 64,
    seed: int = 0,
    short: str = "majority@1",
    long: str = "majority@8",
    cost: CostUnit = "samples",
) -> pd.DataFrame:
    """IBPO's in-batch selection read as an allocation between a short and a long mode.

    Each query has two modes with expected accuracy ``P_s, P_l`` and cost ``C_s, C_l`` (from
    :func:`computealloc.estimate.estimate` with actions ``short`` and ``long``). The queries are
    shuffled with ``seed`` into batches of ``batch_size``; in every batch :func:`ibpo_select`
    picks which queries get ``long``, at most ``floor(q P_b)`` of them, maximising the sum of
    margins ``P_l - P_s`` (the other queries answer ``short``). For each ``q`` three rows:

    - ``ibpo_in_batch``: the selection's mean accuracy and cost. It reads ``P``, i.e. the
      outcomes, so it is an upper bound like the oracle (``sees_outcomes=True``).
    - ``uniform_mix``: a random share ``q_r`` of long answers, ``q_r`` = the selection's
      realised long share: ``(1 - q_r) mean P_s + q_r mean P_l`` (``sees_outcomes=False``).
    - ``oracle``: :func:`computealloc.oracle.solve` over the whole table at the selection's
      mean cost (``sees_outcomes=True``); it is never below ``ibpo_in_batch``.

    Parameters
    ----------
    table_or_log : OutcomeTable or SampleLog
        A table with columns named ``short`` and ``long``, or a log to estimate one from.
    shares : sequence of float, default=(0.25, 0.5, 0.75)
        Long-share caps ``q`` in [0, 1].
    batch_size : int, default=64
        Queries per batch.
    seed : int, default=0
        Seed of the query shuffle.
    short, long : str, default="majority@1", "majority@8"
        Action specs of the two modes.
    cost : {"samples", "tokens", "usd"}, default="samples"
        Cost unit when estimating from a log (ignored for a table).

    Returns
    -------
    DataFrame
        One row per (q, method): ``source, cost_unit, max_share, method, sees_outcomes,
        long_share, max_batch_long_share, accuracy, mean_cost, n_queries, batch_size, seed``.
        For ``uniform_mix`` and ``oracle`` ``max_batch_long_share`` is NaN.

    Examples
    --------
    >>> table = OutcomeTable([[0.2, 0.9], [0.5, 0.5], [0.1, 0.3], [0.8, 0.8]],
    ...                      [[1, 8]] * 4, actions=["majority@1", "majority@8"])
    >>> frame = ibpo_allocation_sweep(table, shares=[0.5], batch_size=4)
    >>> frame[["method", "accuracy", "mean_cost"]].round(4).values.tolist()
    [['ibpo_in_batch', 0.625, 4.5], ['uniform_mix', 0.5125, 4.5], ['oracle', 0.625, 4.5]]
    """
    where = "ibpo_allocation_sweep"
    caps = _check_share_list(shares, where)
    size = _check_int(batch_size, "batch_size", where, 1)
    rng_seed = _check_int(seed, "seed", where, 0)
    table = _two_modes(table_or_log, short, long, cost, where)
    batch = _shuffled_rank(table.n_queries, rng_seed) // size
    rows: list[dict[str, object]] = []
    for q in caps:
        long_mask, batch_share = _in_batch_long(table, batch, q)
        rows += _sweep_rows(table, q, long_mask, batch_share)
    frame = pd.DataFrame(rows)
    frame.insert(0, "source", str(table.metadata.get("source", "<table>")))
    frame.insert(1, "cost_unit", table.cost_unit)
    return frame.assign(n_queries=table.n_queries, batch_size=size, seed=rng_seed)


# --------------------------------------------------------------------------- kernels


def _margins(
    reward: Float, prompt: Int, group: Int, prompt_labels: Sequence[object], where: str
) -> Float:
    """``r_j`` minus the mean reward of the prompt's responses in the other groups."""
    n_p, n_g = int(prompt.max()) + 1, int(group.max()) + 1
    cell = prompt * n_g + group
    sum_p = np.bincount(prompt, weights=reward, minlength=n_p)
    cnt_p = np.bincount(prompt, minlength=n_p)
    sum_c = np.bincount(cell, weights=reward, minlength=n_p * n_g)
    cnt_c = np.bincount(cell, minlength=n_p * n_g)
    others = cnt_p[prompt] - cnt_c[cell]
    if (others == 0).any():
        label = prompt_labels[prompt[int(np.argmax(others == 0))]]
        raise ValueError(
            f"utility='margin' in {where} needs responses of at least two groups for every "
            f"prompt; prompt {label!r} has one group only. Use utility='reward' instead."
        )
    return np.asarray(reward - (sum_p[prompt] - sum_c[cell]) / others, dtype=np.float64)


def _capacities(shares: dict[str, float], group_labels: Sequence[str], n_prompts: int) -> Float:
    """``floor(q_g P)`` per group code, ``inf`` for groups without a cap: (n_groups,)."""
    q = np.array([shares.get(g, math.inf) for g in group_labels], dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.where(np.isfinite(q), np.floor(q * n_prompts + _SHARE_EPS), math.inf)


def _constraints(
    prompt: Int, n_prompts: int, group: Int, capacity: Float, cost: Float | None, total: float
) -> tuple[sparse.csr_array, Float]:
    """Rows: one per prompt, one per capped group, then the budget row; and their bounds.

    Columns are the candidate responses (already restricted to positive utility).
    """
    m = prompt.size
    cols = np.arange(m)
    per_prompt = sparse.csr_array((np.ones(m), (prompt, cols)), shape=(n_prompts, m))
    capped = np.isfinite(capacity)
    row_of = np.cumsum(capped) - 1
    hit = capped[group]
    per_group = sparse.csr_array(
        (np.ones(int(hit.sum())), (row_of[group[hit]], cols[hit])), shape=(int(capped.sum()), m)
    )
    blocks = [per_prompt, per_group]
    bounds = [np.ones(n_prompts), capacity[capped]]
    if cost is not None:
        blocks.append(sparse.csr_array(cost[None, :]))
        bounds.append(np.array([total]))
    return sparse.vstack(blocks, format="csr"), np.concatenate(bounds)


def _select(
    utility: Float,
    prompt: Int,
    n_prompts: int,
    group: Int,
    capacity: Float,
    cost: Float | None,
    total: float,
    relax: bool,
) -> tuple[Float, Float | None]:
    """Accept weights (n,) and, for the relaxation, the dual prices of the capped-group rows
    followed by the budget row (or ``None``)."""
    weights = np.zeros(utility.size)
    n_priced = int(np.isfinite(capacity).sum()) + (cost is not None)
    live = np.flatnonzero(utility > 0)
    if live.size == 0:
        return weights, (np.zeros(n_priced) if relax else None)
    a, b = _constraints(
        prompt[live], n_prompts, group[live], capacity, None if cost is None else cost[live], total
    )
    if relax:
        res = optimize.linprog(-utility[live], A_ub=a, b_ub=b, bounds=(0, 1), method="highs")
        _check_solved(res.status == 0, res.message)
        weights[live] = np.clip(res.x, 0.0, 1.0)
        return weights, np.maximum(-res.ineqlin.marginals[n_prompts:], 0.0)
    res = optimize.milp(
        -utility[live],
        integrality=np.ones(live.size),
        bounds=optimize.Bounds(0.0, 1.0),
        constraints=optimize.LinearConstraint(a, -np.inf, b),
        options={"mip_rel_gap": 0.0},
    )
    _check_solved(res.status == 0, res.message)
    weights[live] = np.round(res.x)
    return weights, None


def _check_solved(ok: bool, message: str) -> None:
    if not ok:
        raise RuntimeError(f"HiGHS did not solve the IBPO program: {message}")


def _selection(
    weights: Float,
    utility: Float,
    n_prompts: int,
    group: Int,
    group_labels: Sequence[str],
    capacity: Float,
    cost: Float | None,
    prices: Float | None,
) -> IBPOSelection:
    counts = np.bincount(group, weights=weights, minlength=len(group_labels))
    capped = [i for i, c in enumerate(capacity) if np.isfinite(c)]
    priced = None
    if prices is not None:
        priced = {group_labels[i]: float(p) for i, p in zip(capped, prices, strict=False)}
        if cost is not None:
            priced["budget"] = float(prices[-1])
    return IBPOSelection(
        weights=weights,
        objective=float(utility @ weights),
        n_prompts=n_prompts,
        counts={g: float(counts[i]) for i, g in enumerate(group_labels)},
        share={g: float(counts[i]) / n_prompts for i, g in enumerate(group_labels)},
        capacity={group_labels[i]: int(capacity[i]) for i in capped},
        mean_cost=None if cost is None else float(cost @ weights) / n_prompts,
        prices=priced,
    )


# --------------------------------------------------------------------------- export


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
            u = _margins(reward, q_codes, g_codes, q_labels.tolist(), "export_sft")
        rank = _shuffled_rank(len(q_labels), seed)[q_codes]
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
            capacity = _capacities(self.shares, self.groups, n_prompts)
            cost = None if self.cost is None or budget is None else self.cost[rows]
            total = 0.0 if budget is None else budget * n_prompts
            weights, _ = _select(
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


def _shuffled_rank(n: int, seed: int) -> Int:
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


# --------------------------------------------------------------------------- sweep


def _two_modes(
    table_or_log: object, short: str, long: str, cost: CostUnit, where: str
) -> OutcomeTable:
    """An OutcomeTable whose two columns are the ``short`` and ``long`` modes."""
    if short == long:
        raise ValueError(
            f"The 'short' and 'long' parameters of {where} must differ. Got {short!r} twice."
        )
    if isinstance(table_or_log, SampleLog):
        return estimate(table_or_log, [short, long], cost=cost)
    if not isinstance(table_or_log, OutcomeTable):
        raise TypeError(
            f"The 'table_or_log' parameter of {where} must be an OutcomeTable or a SampleLog. "
            f"Got {type(table_or_log).__name__} instead."
        )
    table = table_or_log
    for name, spec in (("short", short), ("long", long)):
        if spec not in table.actions:
            raise ValueError(
                f"The '{name}' parameter of {where} must name an action of the table. Got "
                f"{spec!r}; the table's actions: {', '.join(map(repr, table.actions))}."
            )
    cols = [table.actions.index(short), table.actions.index(long)]
    return OutcomeTable(
        table.P[:, cols],
        table.C[:, cols],
        [short, long],
        table.query_ids,
        table.cost_unit,
        table.metadata,
    )


def _in_batch_long(table: OutcomeTable, batch: Int, q: float) -> tuple[NDArray[np.bool_], Float]:
    """Queries given ``long`` by the per-batch program (N,), and each batch's long share."""
    margin = table.P[:, 1] - table.P[:, 0]
    long = np.zeros(table.n_queries, dtype=bool)
    n_batches = int(batch.max()) + 1
    share = np.zeros(n_batches)
    for b in range(n_batches):
        idx = np.flatnonzero(batch == b)
        n_b = idx.size
        utility = np.column_stack([-margin[idx], margin[idx]]).ravel()
        capacity = _capacities({"long": q}, ("short", "long"), n_b)
        weights, _ = _select(
            utility,
            np.repeat(np.arange(n_b), 2),
            n_b,
            np.tile(np.arange(2), n_b),
            capacity,
            None,
            0.0,
            relax=False,
        )
        long[idx] = weights[1::2] > 0.5
        share[b] = long[idx].mean()
    return long, share


def _sweep_rows(
    table: OutcomeTable, q: float, long: NDArray[np.bool_], batch_share: Float
) -> list[dict[str, object]]:
    """The three rows (in-batch selection, uniform mix, oracle) of one long-share cap."""
    p, c = table.P, table.C
    n = table.n_queries
    accuracy = float(np.where(long, p[:, 1], p[:, 0]).mean())
    cost = float(np.where(long, c[:, 1], c[:, 0]).mean())
    share = float(long.mean())
    mean_p, mean_c = p.mean(axis=0), c.mean(axis=0)
    # The all-short allocation's cost, summed as solve sums it, so rounding never makes the
    # oracle's budget infeasible.
    oracle = solve(table, max(cost, float(c.min(axis=1).sum()) / n))
    rows: list[tuple[str, bool, float, float, float, float]] = [
        ("ibpo_in_batch", True, share, float(batch_share.max()), accuracy, cost),
        (
            "uniform_mix",
            False,
            share,
            math.nan,
            float((1 - share) * mean_p[0] + share * mean_p[1]),
            float((1 - share) * mean_c[0] + share * mean_c[1]),
        ),
        (
            "oracle",
            True,
            oracle.counts()[table.actions[1]] / n,
            math.nan,
            oracle.accuracy,
            oracle.cost,
        ),
    ]
    keys = (
        "method",
        "sees_outcomes",
        "long_share",
        "max_batch_long_share",
        "accuracy",
        "mean_cost",
    )
    return [{"max_share": q, **dict(zip(keys, row, strict=True))} for row in rows]


# --------------------------------------------------------------------------- validation


def _check_choice(name: str, value: object, choices: tuple[str, ...], where: str) -> None:
    if value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise ValueError(
            f"The {name!r} parameter of {where} must be one of {allowed}. Got {value!r} instead."
        )


def _float_vector(values: ArrayLike, name: str, where: str) -> Float:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0 or not np.isfinite(array).all():
        raise ValueError(
            f"The {name!r} parameter of {where} must be a non-empty 1-D array of finite "
            f"floats. Got shape {array.shape}"
            + ("" if array.ndim != 1 or array.size == 0 else " with non-finite values")
            + " instead."
        )
    return array


def _codes(labels: ArrayLike, n: int, name: str, where: str) -> tuple[Int, list[str]]:
    """Integer codes (n,) of labels compared as strings, and the sorted distinct labels."""
    array = np.asarray(labels, dtype=object)
    if array.shape != (n,):
        raise ValueError(
            f"The {name!r} parameter of {where} must have shape ({n},), one entry per "
            f"response. Got shape {array.shape} instead."
        )
    codes, uniques = pd.factorize(pd.Series(array, dtype=object).astype(str), sort=True)
    return codes.astype(np.int64), [str(u) for u in uniques]


def _check_shares(max_share: object, groups: Sequence[str], where: str) -> dict[str, float]:
    if max_share is None:
        return {}
    if not isinstance(max_share, Mapping):
        raise TypeError(
            f"The 'max_share' parameter of {where} must be a dict {{group: share}}. Got "
            f"{type(max_share).__name__} instead."
        )
    shares: dict[str, float] = {}
    for group, q in max_share.items():
        if str(group) not in groups:
            raise ValueError(
                f"The 'max_share' parameter of {where} names group {group!r}, which is not in "
                f"the data. Groups: {', '.join(map(repr, groups))}."
            )
        shares[str(group)] = _check_real(q, f"share of group {group!r}", where, 0.0, 1.0)
    return shares


def _check_share_list(shares: object, where: str) -> list[float]:
    if isinstance(shares, (str, bytes)) or not isinstance(shares, Sequence) or not shares:
        raise ValueError(
            f"The 'shares' parameter of {where} must be a non-empty sequence of floats in "
            f"[0, 1]. Got {shares!r} instead."
        )
    return [_check_real(q, "shares", where, 0.0, 1.0) for q in shares]


def _check_real(value: object, name: str, where: str, low: float, high: float) -> float:
    """``value`` as a float in ``[low, high]``."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not low <= float(value) <= high
    ):
        raise ValueError(
            f"The {name!r} parameter of {where} must be a float in [{low:g}, {high:g}]. Got "
            f"{value!r} instead."
        )
    return float(value)


def _check_budget(budget: object, where: str) -> float:
    if (
        isinstance(budget, bool)
        or not isinstance(budget, numbers.Real)
        or not 0.0 < float(budget) < math.inf
    ):
        raise ValueError(
            f"The 'budget' parameter of {where} must be a float in (0, inf). Got {budget!r} "
            "instead."
        )
    return float(budget)


def _check_cost(
    cost: ArrayLike | None, budget: object, n: int, n_prompts: int, where: str
) -> tuple[Float | None, float]:
    """The cost vector (n,) or None, and the batch's total budget ``B P`` (0 when unused)."""
    if (cost is None) != (budget is None):
        raise ValueError(
            f"The 'cost' and 'budget' parameters of {where} go together. Got "
            f"cost={'None' if cost is None else 'an array'} and budget={budget!r}."
        )
    if cost is None:
        return None, 0.0
    c = _float_vector(cost, "cost", where)
    if c.shape != (n,) or (c < 0).any():
        raise ValueError(
            f"The 'cost' parameter of {where} must hold {n} floats >= 0, one per response. "
            f"Got shape {c.shape} with minimum {c.min():g} instead."
        )
    return c, _check_budget(budget, where) * n_prompts


def _check_export_budget(budget: object, cost_col: object, where: str) -> float | None:
    if (budget is None) != (cost_col is None):
        raise ValueError(
            f"The 'budget' and 'cost_col' parameters of {where} go together. Got "
            f"budget={budget!r} and cost_col={cost_col!r}."
        )
    return None if budget is None else _check_budget(budget, where)


def _check_int(value: object, name: str, where: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(
            f"The {name!r} parameter of {where} must be an int in [{low}, inf). Got {value!r} "
            "instead."
        )
    return int(value)
