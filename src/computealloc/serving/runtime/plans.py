"""How a :class:`~computealloc.serving.runtime.Runtime` executes each action of its policy.

A :class:`Plan` names the backend, the arm, the samples to draw and the combination rule of
one action; the helpers here route actions to backends and price the arms planned.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from computealloc.data.backends.base import Backend
from computealloc.estimation.actions import Action
from computealloc.estimation.kinds import Combine, get_kind, kind_names
from computealloc.estimation.units import PriceLike, Pricing, pricing_of
from computealloc.fitting.policies import BasePolicy

__all__ = ["Plan", "plan_actions", "plan_pricing", "probe_plan", "single_priced_arm"]


@dataclass(frozen=True)
class Plan:
    """How to execute one action: draw ``k`` samples of ``arm`` from ``backend``, combine."""

    spec: str
    k: int
    arm: str
    backend: Backend
    combine: Combine


def single_priced_arm(policy: BasePolicy) -> str | None:
    """The arm of a policy fitted on one priced model, which its unprefixed actions draw."""
    prices = getattr(policy, "prices_", {})
    return next(iter(prices)) if len(prices) == 1 else None


def plan_actions(
    actions: tuple[Action, ...],
    backends: Backend | Mapping[str, Backend],
    single_arm: str | None = None,
) -> list[Plan]:
    """The backend of every action: by model prefix, or the only backend for unprefixed ones.

    An action's arm is its model prefix; an unprefixed action's is ``single_arm`` (the
    priced model of a one-model policy) or else its backend's model. A kind that needs each
    sample's ``score`` is refused on a backend whose ``scores`` attribute is False (a plain
    server, a thinking arm without ``logprobs``, a replayed log without scores); a backend
    without that attribute is trusted.
    """
    mapping = dict(backends) if isinstance(backends, Mapping) else {backends.model: backends}
    if not mapping:
        raise ValueError("The 'backends' parameter of Runtime must hold at least one backend.")
    plans = []
    for action in actions:
        kind = get_kind(action.kind)
        if kind.combine is None:
            live = [k for k in kind_names() if get_kind(k).combine is not None]
            raise ValueError(
                f"The runtime cannot execute the action {action.spec!r} live: "
                f"{kind.live_reason}. Kinds that run live: {', '.join(live)}."
            )
        if action.model is None and len(mapping) != 1:
            raise ValueError(
                f"Action {action.spec!r} has no model prefix, but {len(mapping)} backends were "
                f"given ({', '.join(mapping)}); pass a single backend."
            )
        backend = next(iter(mapping.values())) if action.model is None else None
        if action.model is not None:
            backend = mapping.get(action.model)
        if backend is None:
            raise ValueError(
                f"Action {action.spec!r} routes to model {action.model!r}, but no backend serves "
                f"it; backends were given for: {', '.join(mapping)}."
            )
        arm = action.model or single_arm or backend.model
        if "score" in kind.needs and getattr(backend, "scores", None) is False:
            raise ValueError(
                f"The action {action.spec!r} weighs samples by their score, but the backend of "
                f"arm {arm!r} ({type(backend).__name__}) does not give every sample one: give "
                "the arm `thinking: {logprobs: true}` (each thought then carries its answer's "
                "confidence), or replay a log with a `score` on every sample."
            )
        plans.append(Plan(action.spec, kind.draws(action.k), arm, backend, kind.combine))
    return plans


def probe_plan(plans: list[Plan], probe_m: int) -> Plan | None:
    if not probe_m:
        return None
    backends = {id(p.backend): p.backend for p in plans}
    if len(backends) != 1:
        raise ValueError(
            "Probe features need a policy whose actions all use one model (the probes are "
            f"reused in its vote). Got actions on {len(backends)} backends."
        )
    return plans[0]


def plan_pricing(
    policy: BasePolicy, prices: Mapping[str, PriceLike] | None, plans: list[Plan]
) -> Pricing:
    """The policy's pricing, checked against ``prices`` and priced for every arm planned."""
    fitted = Pricing.parse(policy.cost_unit_, getattr(policy, "prices_", {}), where="prices_")
    if prices is not None:
        given = pricing_of(fitted.unit, prices, "Runtime")
        if fitted.prices and not given.same_as(fitted):
            raise ValueError(
                f"The prices given ({given.describe()}) differ from the prices the policy was "
                f"fitted with ({fitted.describe()}); drop them to use the policy's, or fit the "
                "policy again with the new prices."
            )
        fitted = given
    fitted.check_arms(
        dict.fromkeys(p.arm for p in plans), where="The 'prices' parameter of Runtime"
    )
    return fitted
