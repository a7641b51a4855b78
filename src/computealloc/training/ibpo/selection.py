"""The in-batch IBPO program: response utilities (margins or rewards) and the selection
of training targets under share and budget constraints (:func:`scipy.optimize.milp`, or
its LP relaxation with dual prices).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike
from scipy import optimize, sparse

from computealloc.training.ibpo.results import Float, IBPOSelection, Int, Utility
from computealloc.training.ibpo.validation import (
    check_choice,
    check_cost,
    check_shares,
    float_vector,
    label_codes,
)

UTILITIES = ("margin", "reward")
_SHARE_EPS = 1e-9  # q * P within this of a whole number counts as that number of prompts


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
    check_choice("kind", kind, UTILITIES, "response_utility")
    r = float_vector(reward, "reward", "response_utility")
    p_codes, p_labels = label_codes(prompt, r.size, "prompt", "response_utility")
    g_codes, _ = label_codes(group, r.size, "group", "response_utility")
    if kind == "reward":
        return r
    return margins(r, p_codes, g_codes, p_labels, "response_utility")


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
    u = float_vector(utility, "utility", where)
    p_codes, p_labels = label_codes(prompt, u.size, "prompt", where)
    g_codes, g_labels = label_codes(group, u.size, "group", where)
    shares = check_shares(max_share, g_labels, where)
    c, total = check_cost(cost, budget, u.size, len(p_labels), where)
    if not shares and c is None:
        raise ValueError(
            "ibpo_select needs a constraint: give 'max_share', or 'cost' with 'budget'."
        )
    if not isinstance(relax, bool):
        raise TypeError(f"The 'relax' parameter of {where} must be a bool. Got {relax!r} instead.")
    capacity = capacities(shares, g_labels, len(p_labels))
    weights, prices = select(u, p_codes, len(p_labels), g_codes, capacity, c, total, relax)
    return _selection(weights, u, len(p_labels), g_codes, g_labels, capacity, c, prices)


def margins(
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


def capacities(shares: dict[str, float], group_labels: Sequence[str], n_prompts: int) -> Float:
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


def select(
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
