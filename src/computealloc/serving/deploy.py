"""One contract for every deployable rule, and one entry point that serves it.

A per-query policy (:class:`~computealloc.fitting.policies.BasePolicy`, fitted) and a calibrated
stopping rule (:class:`~computealloc.fitting.sequential.CalibratedStopping`) are both
:class:`Deployable`: each states its cost unit, its prices and its actions, describes itself
in a line, saves its JSON state (no pickle), and builds the runtime that executes it live
(:meth:`Deployable.open_runtime`). :func:`open_runtime` is the one place the serving path
(:mod:`computealloc.serving.server`) turns a loaded rule and its backends into a runtime; what it
returns is an :class:`~computealloc.serving.runtime.AnsweringRuntime` (answer, ledger, controller,
worst cost, arms, aclose), whichever kind of rule it runs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from computealloc.data.backends.base import Backend
    from computealloc.estimation.units import PriceLike
    from computealloc.serving.runtime import AnsweringRuntime

__all__ = ["Deployable", "RuntimeOptions", "open_runtime"]


@dataclass(frozen=True)
class RuntimeOptions:
    """Serving options; each rule uses those that apply to it.

    Attributes
    ----------
    prices : mapping of str to price, or sequence of ``ARM=PRICE`` str, optional
        Price per arm (:mod:`computealloc.estimation.units`), parsed in the rule's cost unit; a
        policy checks them against the prices it was fitted with. A stopping rule counts samples and
        ignores them.
    probe_m : int, optional
        Probe samples per query of a policy with probe features (default: the policy's).
    batch_size : int
        Samples per backend call of a stopping rule.
    temperature : float
        Sampling temperature sent to the backends.
    max_tokens : int, optional
        Cap on output tokens per sample.
    """

    prices: Mapping[str, PriceLike] | Sequence[str] | None = None
    probe_m: int | None = None
    batch_size: int = 1
    temperature: float = 0.7
    max_tokens: int | None = None


@runtime_checkable
class Deployable(Protocol):
    """What the serving path needs of a fitted rule (a policy or a stopping rule)."""

    @property
    def deploy_unit(self) -> str:
        """The cost unit of its budget and its ledger (:mod:`computealloc.estimation.units`)."""
        ...

    @property
    def deploy_prices(self) -> dict[str, str]:
        """Price per arm as ``--price`` writes it (empty: 1 per unit for every arm)."""
        ...

    @property
    def deploy_actions(self) -> tuple[str, ...]:
        """The action specs it chooses among (a stopping rule: ``LABEL@t`` per sample count)."""
        ...

    def describe_rule(self) -> str:
        """One line naming the rule, for banners and logs."""
        ...

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the rule's JSON state (no pickle; :func:`computealloc.fitting.persist.load_file`
        reads it back)."""
        ...

    def open_runtime(
        self,
        backends: Backend | Mapping[str, Backend],
        *,
        budget: float,
        options: RuntimeOptions,
    ) -> AnsweringRuntime:
        """The runtime that executes this rule on ``backends`` at mean cost ``budget``."""
        ...


def open_runtime(
    rule: Deployable,
    backends: Backend | Mapping[str, Backend],
    *,
    budget: float,
    options: RuntimeOptions | None = None,
) -> AnsweringRuntime:
    """Build the runtime that serves ``rule`` on ``backends`` at a mean cost of ``budget``.

    Parameters
    ----------
    rule : Deployable
        A fitted policy or a calibrated stopping rule
        (:func:`~computealloc.fitting.persist.load_file` returns either).
    backends : Backend or mapping of str to Backend
        One backend, or one per arm (a stopping rule samples one backend).
    budget : float
        Target mean cost per query, in ``rule.deploy_unit``.
    options : RuntimeOptions, optional
        Serving options (defaults: :class:`RuntimeOptions`).

    Returns
    -------
    AnsweringRuntime
        A :class:`~computealloc.serving.runtime.Runtime` for a policy, a
        :class:`~computealloc.serving.sequential_runtime.SequentialRuntime` for a stopping rule.

    Raises
    ------
    TypeError
        When ``rule`` is not deployable.
    ValueError
        As the runtime's constructor (budget, prices, backends that do not fit the rule).
    """
    if not callable(getattr(rule, "open_runtime", None)):
        raise TypeError(
            "The 'rule' parameter of open_runtime must be a fitted policy or a calibrated "
            f"stopping rule. Got {type(rule).__name__} instead."
        )
    return rule.open_runtime(backends, budget=budget, options=options or RuntimeOptions())
