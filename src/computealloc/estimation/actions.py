"""Action specs: what a query may be given, as stable strings.

An action is ``KIND@K``, optionally prefixed by the model (arm) that draws the samples; the
kinds come from the registry of :mod:`computealloc.estimation.kinds`:
``majority@4``, ``best_of@8``, ``pass@2``, ``gpt-4/majority@4``. Model names may contain
``'/'`` (``mistralai/Mixtral-8x7B-Instruct-v0.1/majority@1``): the spec is split at its last
``'/'``.

- ``majority@K``: plurality vote of ``K`` samples, ties split uniformly at random.
- ``best_of@K``: the highest-``score`` sample of ``K`` (a verifier or reward model).
- ``pass@K``: correct when any of ``K`` samples is correct (an oracle verifier).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from computealloc.estimation.kinds import kind_names

__all__ = ["Action", "parse_action", "parse_actions"]

_SPEC_FORM = "KIND@K (e.g. 'majority@4'), optionally prefixed by 'MODEL/'"


@dataclass(frozen=True)
class Action:
    """One compute option: ``k`` samples of ``model`` combined by ``kind``.

    Parameters
    ----------
    kind : {"majority", "best_of", "pass"}
        How the ``k`` samples become one answer.
    k : int
        Number of samples drawn (without replacement) from the query's pool; ``k >= 1``.
    model : str or None
        Model whose samples are drawn; ``None`` for the log's only model.

    Examples
    --------
    >>> Action("majority", 4, "gpt-4").spec
    'gpt-4/majority@4'
    """

    kind: str
    k: int
    model: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in kind_names():
            raise ValueError(
                f"The 'kind' parameter of Action must be one of {', '.join(kind_names())}. "
                f"Got {self.kind!r} instead."
            )
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise ValueError(
                f"The 'k' parameter of Action must be an int in [1, inf). Got {self.k!r} instead."
            )
        if self.model is not None and (not isinstance(self.model, str) or not self.model):
            raise ValueError(
                "The 'model' parameter of Action must be a non-empty str or None. "
                f"Got {self.model!r} instead."
            )

    @property
    def spec(self) -> str:
        """The action as a spec string; ``parse_action(a.spec) == a``."""
        base = f"{self.kind}@{self.k}"
        return base if self.model is None else f"{self.model}/{base}"

    def __str__(self) -> str:
        return self.spec


def parse_action(spec: str | Action) -> Action:
    """Parse one action spec such as ``"majority@4"`` or ``"gpt-4/best_of@8"``.

    Parameters
    ----------
    spec : str or Action
        ``[MODEL/]KIND@K``; surrounding whitespace is ignored. An :class:`Action` is returned
        unchanged.

    Returns
    -------
    Action

    Raises
    ------
    ValueError
        When the spec is not of that form, names an unknown kind, or ``K`` is not a positive
        integer.

    Examples
    --------
    >>> parse_action("mistralai/Mixtral-8x7B-Instruct-v0.1/majority@1")
    Action(kind='majority', k=1, model='mistralai/Mixtral-8x7B-Instruct-v0.1')
    """
    if isinstance(spec, Action):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"An action spec must be a str or an Action. Got {type(spec).__name__}.")
    text = spec.strip()
    model, sep, body = text.rpartition("/")
    if sep and not model:
        raise ValueError(f"Action spec {spec!r} has an empty model prefix before '/'.")
    kind, at, k_text = body.partition("@")
    if not at:
        raise ValueError(f"Action spec {spec!r} must look like {_SPEC_FORM}.")
    if kind not in kind_names():
        raise ValueError(
            f"Unknown action kind {kind!r} in spec {spec!r}; "
            f"expected one of {', '.join(kind_names())}."
        )
    if re.fullmatch(r"[0-9]+", k_text) is None or int(k_text) < 1:
        raise ValueError(
            f"The K of action spec {spec!r} must be a positive integer. Got {k_text!r} instead."
        )
    return Action(kind, int(k_text), model or None)


def parse_actions(specs: str | Action | Iterable[str | Action]) -> tuple[Action, ...]:
    """Parse a comma-separated string or a sequence of specs into distinct actions.

    Parameters
    ----------
    specs : str, Action or iterable of str or Action
        ``"majority@1,majority@4"``, ``["majority@1", "pass@4"]`` or actions.

    Returns
    -------
    tuple of Action
        In the given order.

    Raises
    ------
    ValueError
        When no action is given, an action repeats, or a spec is malformed.

    Examples
    --------
    >>> [a.spec for a in parse_actions("majority@1, majority@4")]
    ['majority@1', 'majority@4']
    """
    items: list[str | Action]
    if isinstance(specs, str):
        items = [s for s in specs.split(",") if s.strip()]
    elif isinstance(specs, Action):
        items = [specs]
    else:
        items = list(specs)
    actions = tuple(parse_action(s) for s in items)
    if not actions:
        raise ValueError("At least one action is needed. Got none.")
    seen: set[Action] = set()
    for action in actions:
        if action in seen:
            raise ValueError(f"Action {action.spec!r} is given more than once.")
        seen.add(action)
    return actions
