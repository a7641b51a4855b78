"""Checks of the runtime's parameters, each raising an error that names the parameter.

:func:`check_sampling` and :func:`check_prompt` are shared by every runtime (the sequential one
too); the others check the arguments of :class:`~computealloc.serving.runtime.Runtime`.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from computealloc.checks import check_budget, check_feasible
from computealloc.data.backends.base import last_user_text
from computealloc.fitting.policies import BasePolicy, Random
from computealloc.serving.budget import BudgetController

__all__ = [
    "check_controller",
    "check_policy",
    "check_probe_m",
    "check_prompt",
    "check_runtime_budget",
    "check_sampling",
]


def check_sampling(temperature: object, max_tokens: object, where: str) -> tuple[float, int | None]:
    """``temperature`` (a float in [0, inf)) and ``max_tokens`` (None or an int in [1, inf)),
    checked as ``collect`` checks them; a ValueError naming the parameter of ``where``."""
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, (int, float))
        or not 0 <= temperature < math.inf
    ):
        raise ValueError(
            f"The 'temperature' parameter of {where} must be a float in [0, inf). "
            f"Got {temperature!r} instead."
        )
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
    ):
        raise ValueError(
            f"The 'max_tokens' parameter of {where} must be None or an int in [1, inf). "
            f"Got {max_tokens!r} instead."
        )
    return float(temperature), max_tokens


def check_prompt(prompt: object, where: str) -> str:
    """The text the policy reads of ``prompt``: ``prompt`` itself when a str, else the text of
    the last user message of the conversation; a ValueError naming ``where`` when it is empty
    or ``prompt`` is neither."""
    try:
        text = last_user_text(prompt)  # type: ignore[arg-type]
    except (ValueError, TypeError):
        text = ""
    if not isinstance(prompt, (str, list, tuple)) or not isinstance(text, str) or not text.strip():
        raise ValueError(
            f"The 'prompt' parameter of {where} must be a non-empty str or a conversation "
            f"whose last user message has text. Got {prompt!r:.200} instead."
        )
    return text


def check_policy(policy: object) -> None:
    if not isinstance(policy, BasePolicy):
        raise TypeError(
            "The 'policy' parameter of Runtime must be a fitted BasePolicy. "
            f"Got {type(policy).__name__} instead."
        )
    policy.check_fitted()
    if isinstance(policy, Random):
        raise ValueError(
            "The Random policy has no per-action scores, so the runtime cannot price its "
            "actions; serve a score-based policy (Uniform, LengthHeuristic, Imitation, Value)."
        )


def check_runtime_budget(budget: object, costs: NDArray[np.float64], policy: BasePolicy) -> float:
    value = check_budget(budget, "Runtime")
    cheapest = int(np.argmin(costs))
    check_feasible(
        value, float(costs[cheapest]), "Runtime", f"action {policy.actions_[cheapest]!r}"
    )
    return value


def check_controller(controller: object, budget: float) -> None:
    if controller is None:
        return
    if not isinstance(controller, BudgetController) or controller.budget != budget:
        shown = controller.budget if isinstance(controller, BudgetController) else controller
        raise ValueError(
            f"The 'controller' parameter of Runtime must be a BudgetController for the "
            f"budget {budget:g}. Got {shown!r} instead."
        )


def check_probe_m(probe_m: object) -> int:
    if isinstance(probe_m, bool) or not isinstance(probe_m, int) or probe_m < 0:
        raise ValueError(
            f"The 'probe_m' parameter of Runtime must be an int in [0, inf). Got {probe_m!r} "
            "instead."
        )
    return probe_m
