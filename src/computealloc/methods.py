"""The one registry of method names: what ``fit``, ``evaluate``, ``persist``, ``report`` and the
CLI know about every method.

Every method the project evaluates, fits, saves or reports is one :class:`MethodSpec` in
:data:`REGISTRY`, in report order. A spec says

- its **family**: ``"policy"`` (one decision per query, :mod:`computealloc.fitting.policies`),
  ``"stopping"`` (samples one at a time until a rule stops, :mod:`computealloc.fitting.sequential`),
  ``"thinking"`` (an early-exit rule along one thought, :mod:`computealloc.evaluation.thinking`, run
  on checkpoint logs) or ``"bound"`` (a hindsight bound that sees the outcomes it is scored on);
- how ``computealloc fit`` **fits** it: ``"fit_policy"``
(:func:`computealloc.fitting.fit.fit_policy`),
  ``"fit_stopping"`` (:func:`computealloc.fitting.sequential.fit_stopping`) or None (evaluated
  only);
- whether it is **deployable** (what ``fit`` writes, ``serve`` runs);
- its report **kind**: ``learned``, ``baseline``, ``peer`` (a published method calibrated to the
  budget), ``published`` (a published fixed setting), ``rule`` (a stopping rule) or ``bound``;
- the **class** whose instances it fits and saves (allow-listed by
:mod:`computealloc.fitting.persist`)
  and the constructor parameters ``fit`` gives it;
- a one-line description (the CLI's help text).

This module imports nothing of the package: every layer reads it, none of them is read by it.
Adding a method is one module (its class, under ``policies/`` or ``sequential/``) plus one
:func:`register` line below; the old names (``fit.FIT_METHODS``,
``sequential.FIT_RULES``, ``sequential.SEQUENTIAL_METHODS``, ``evaluation.METHODS``,
``evaluation.SEQUENTIAL``, ``evaluation.ROUTER``) are derived from it.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

__all__ = [
    "REGISTRY",
    "ROUTER",
    "Family",
    "FitBy",
    "Kind",
    "MethodSpec",
    "classes",
    "evaluated",
    "fit_help",
    "fittable",
    "get_method",
    "kind_of",
    "load_class",
    "method_names",
    "register",
    "rule_label",
    "rule_labels",
    "stopping_classes",
]

Family = Literal["policy", "stopping", "thinking", "bound"]
FitBy = Literal["fit_policy", "fit_stopping"]
Kind = Literal["learned", "baseline", "peer", "published", "rule", "bound"]


@dataclass(frozen=True)
class MethodSpec:
    """One method name and what every layer needs to know about it.

    Attributes
    ----------
    name : str
        The name in results, reports, ``--method`` and ``--methods``.
    family : {"policy", "stopping", "thinking", "bound"}
        A per-query policy, a sequential stopping rule, an early-exit rule along a thought, or
        a hindsight bound.
    kind : {"learned", "baseline", "peer", "published", "rule", "bound"}
        How reports group it (:func:`kind_of`).
    description : str
        One line for help texts.
    fit : {"fit_policy", "fit_stopping"} or None
        The function ``computealloc fit --method NAME`` calls; None: evaluated only.
    deployable : bool
        Whether ``fit`` can write it and ``serve`` run it.
    cls : str or None
        Name of the class that implements it; the file formats allow-list it.
    module : str or None
        The module that defines ``cls``; by default :mod:`computealloc.fitting.policies` for a
        policy, :mod:`computealloc.fitting.sequential` for a stopping rule.
    params : mapping of str to Any
        Constructor parameters ``fit`` gives the class (besides ``random_state``).
    takes_budget : bool
        Whether ``fit`` passes the budget to the constructor (a policy trained at a budget).
    evaluated : bool
        Whether :func:`computealloc.evaluation.evaluate` runs it.
    """

    name: str
    family: Family
    kind: Kind
    description: str
    fit: FitBy | None = None
    deployable: bool = False
    cls: str | None = None
    module: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    takes_budget: bool = False
    evaluated: bool = True


_REGISTRY: dict[str, MethodSpec] = {}

#: Every method, by name, in report order (read-only view).
REGISTRY: Mapping[str, MethodSpec] = MappingProxyType(_REGISTRY)


def register(spec: MethodSpec) -> MethodSpec:
    """Add ``spec`` to :data:`REGISTRY` (at the end of the report order).

    Raises
    ------
    ValueError
        When a method of that name is already registered, or a deployable method has no
        ``fit`` or no ``cls``.
    """
    if spec.name in _REGISTRY:
        raise ValueError(f"A method named {spec.name!r} is already registered.")
    if spec.deployable and (spec.fit is None or spec.cls is None):
        raise ValueError(
            f"The deployable method {spec.name!r} needs a 'fit' function and a 'cls' class."
        )
    _REGISTRY[spec.name] = spec
    return spec


def get_method(name: str) -> MethodSpec:
    """The spec of method ``name``.

    Raises
    ------
    ValueError
        "Unknown method NAME; known: ...".
    """
    spec = _REGISTRY.get(name)
    if spec is None:
        raise ValueError(f"Unknown method {name!r}; known: {', '.join(_REGISTRY)}.")
    return spec


def method_names(*, family: Family | None = None, evaluated: bool | None = None) -> tuple[str, ...]:
    """Registered names in report order, optionally of one family and evaluated or not."""
    return tuple(
        s.name
        for s in _REGISTRY.values()
        if (family is None or s.family == family)
        and (evaluated is None or s.evaluated == evaluated)
    )


def evaluated() -> tuple[str, ...]:
    """The methods :func:`computealloc.evaluation.evaluate` runs, in report order."""
    return method_names(evaluated=True)


def fittable(fit: FitBy) -> tuple[str, ...]:
    """The names ``fit`` fits with the function ``fit``, in report order."""
    return tuple(s.name for s in _REGISTRY.values() if s.fit == fit)


def fit_writes(method: str) -> bool:
    """Whether ``computealloc fit`` writes ``method`` for ``serve`` (or, for ``NAME/batch``,
    writes ``NAME``, whose batch allocation is ``policy.allocate`` over a batch of queries).

    Unknown names are not written.
    """
    spec = _REGISTRY.get(method)
    if spec is not None and spec.deployable:
        return True
    base, _, mode = method.partition("/")
    return mode == "batch" and base in _REGISTRY and _REGISTRY[base].deployable


def kind_of(method: str) -> str:
    """``bound``, ``baseline``, ``peer``, ``published`` (fixed setting), ``learned`` or ``rule``.

    A name that is not registered is ``published`` when it names a setting (``NAME@X``),
    else ``rule``.
    """
    spec = _REGISTRY.get(method)
    if spec is not None:
        return spec.kind
    return "published" if "@" in method else "rule"


def stopping_classes() -> tuple[str, ...]:
    """Names of the stopping-rule classes the registered methods use (the stopping file
    allow-list)."""
    return tuple(
        dict.fromkeys(s.cls for s in _REGISTRY.values() if s.family == "stopping" and s.cls)
    )


_HOMES: dict[str, str] = {
    "policy": "computealloc.fitting.policies",
    "stopping": "computealloc.fitting.sequential",
}


def load_class(name: str) -> type[Any]:
    """The class that implements registered method ``name`` (imported on first use).

    Raises
    ------
    ValueError
        When ``name`` is not registered or has no class.
    """
    spec = get_method(name)
    if spec.cls is None:
        raise ValueError(f"The method {name!r} has no class (it is evaluated only).")
    cls: type[Any] = getattr(importlib.import_module(spec.module or _HOMES[spec.family]), spec.cls)
    return cls


def classes(family: Family) -> dict[str, type[Any]]:
    """Every class the registered methods of ``family`` use, by class name (the file formats'
    allow-lists), in registration order."""
    out: dict[str, type[Any]] = {}
    for spec in _REGISTRY.values():
        if spec.family == family and spec.cls is not None and spec.cls not in out:
            out[spec.cls] = load_class(spec.name)
    return out


def rule_labels() -> dict[str, str]:
    """The method name of each stopping-rule class at its calibrated setting (the ``LABEL`` of
    a live stopping rule's ``LABEL@t`` actions and metrics)."""
    return {
        str(s.cls): s.name for s in _REGISTRY.values() if s.fit == "fit_stopping" and not s.params
    }


def rule_label(cls: str) -> str:
    """:func:`rule_labels` of the class named ``cls``.

    Raises
    ------
    TypeError
        When no registered stopping method uses ``cls``.
    """
    labels = rule_labels()
    if cls not in labels:
        raise TypeError(f"The stopping rules are {sorted(labels)}. Got {cls} instead.")
    return labels[cls]


def fit_help() -> str:
    """The help text of ``computealloc fit --method``, from the deployable methods."""
    policies = [s.name for s in _REGISTRY.values() if s.fit == "fit_policy"]
    rules = [s for s in _REGISTRY.values() if s.fit == "fit_stopping"]
    rules = sorted(rules, key=lambda s: s.name != "sequential")
    shown = [f"{s.name} ({s.description})" if s.name == "sequential" else s.name for s in rules]
    return (
        f"{', '.join(policies[:-1])} or {policies[-1]} (one decision per query), or a "
        f"sequential stopping rule: {', '.join(shown)}."
    )


#: RouteLLM's threshold router between the two models of a routing log.
ROUTER = "router/threshold"


def _policy(name: str, kind: Kind, description: str, **more: Any) -> MethodSpec:
    return register(MethodSpec(name, "policy", kind, description, **more))


def _stopping(name: str, kind: Kind, description: str, **more: Any) -> MethodSpec:
    return register(MethodSpec(name, "stopping", kind, description, **more))


_FIT_P: dict[str, Any] = {"fit": "fit_policy", "deployable": True}
_FIT_S: dict[str, Any] = {"fit": "fit_stopping", "deployable": True}

# --- per-query policies (computealloc.fitting.policies) -------------------------------------------
_policy("uniform", "baseline", "the same action for every query", cls="Uniform", **_FIT_P)
_policy("random", "baseline", "a random action per query at the budget", cls="Random")
_policy(
    "length",
    "learned",
    "the prompt-length heuristic",
    cls="LengthHeuristic",
    params={"feature": "n_chars"},
    **_FIT_P,
)
_policy("length/batch", "learned", "the length heuristic, allocated per batch")
_policy(
    "imitation",
    "learned",
    "imitation of the oracle's allocation",
    cls="Imitation",
    takes_budget=True,
    **_FIT_P,
)
_policy("imitation/batch", "learned", "imitation, allocated per batch")
_policy("value", "learned", "predict-then-allocate", cls="Value", **_FIT_P)
_policy("value/batch", "learned", "predict-then-allocate, allocated per batch")
_policy("imitation+probe", "learned", "imitation reading probe samples")
_policy("imitation+probe/batch", "learned", "imitation with probes, allocated per batch")
_policy("value+probe", "learned", "predict-then-allocate reading probe samples")
_policy("value+probe/batch", "learned", "value with probes, allocated per batch")
_policy(ROUTER, "peer", "RouteLLM's threshold router between two models", cls="Value")

# --- sequential stopping rules (computealloc.fitting.sequential) ----------------------------------
_stopping("uniform-majority", "rule", "exact majority@B", evaluated=False)
_stopping(
    "adaptive-consistency@0.95",
    "published",
    "Adaptive-Consistency's setting",
    cls="BetaRule",
    params={"threshold": 0.95},
)
_stopping("esc@5", "published", "ESC's window of 5", cls="WindowRule", params={"window": 5})
_stopping("adaptive-consistency", "peer", "the Beta stopping rule", cls="BetaRule", **_FIT_S)
_stopping("dirichlet", "rule", "the Dirichlet stopping rule", cls="DirichletRule", **_FIT_S)
_stopping("entropy", "rule", "the entropy stopping rule", cls="EntropyRule", **_FIT_S)
_stopping("majority-share", "rule", "the majority-share rule", cls="MajorityShareRule", **_FIT_S)
_stopping("esc", "peer", "early-stopping self-consistency", cls="WindowRule", **_FIT_S)
_stopping(
    "sequential/pooled",
    "rule",
    "optimal stopping on pooled trajectories",
    cls="LagrangianStopping",
    params={"n_groups": 1},
    **_FIT_S,
)
_stopping(
    "sequential/prior",
    "rule",
    "optimal stopping per difficulty group",
    cls="LagrangianStopping",
    params={"n_groups": 3},
    **_FIT_S,
)
_stopping(
    "sequential",
    "rule",
    "computealloc's",
    cls="LagrangianStopping",
    **_FIT_S,
)

# --- early exit along one thought (checkpoint logs only; computealloc.evaluation.thinking) --------
_THINKING: tuple[tuple[str, Kind, str], ...] = (
    ("uniform-cap", "baseline", "one thinking cap for every query, calibrated to the budget"),
    ("stable", "rule", "stop once the answer is the same at W checkpoints in a row"),
    ("conf", "rule", "stop once the answer's confidence reaches tau"),
    ("learned-exit", "learned", "computealloc's learned exit along the thought"),
    ("full/majority@1", "published", "one trace thought to its natural end (no budget)"),
)
for _name, _kind, _what in _THINKING:
    register(MethodSpec(_name, "thinking", _kind, _what))

# --- hindsight bounds (not deployable) -----------------------------------------------------------
register(MethodSpec("oracle", "bound", "bound", "the per-query optimum in hindsight"))
register(MethodSpec("oracle+probe", "bound", "bound", "the hindsight optimum with probes"))
register(MethodSpec("oracle_in_sample", "bound", "bound", "the hindsight optimum, in-sample"))
