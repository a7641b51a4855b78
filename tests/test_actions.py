"""Action specs: parsing, round trips and error messages."""

from __future__ import annotations

import pytest

from computealloc.estimation.actions import Action, parse_action, parse_actions
from computealloc.estimation.kinds import kind_names


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("majority@4", Action("majority", 4)),
        ("best_of@16", Action("best_of", 16)),
        ("pass@1", Action("pass", 1)),
        ("  majority@2 ", Action("majority", 2)),
        ("gpt-4/majority@8", Action("majority", 8, "gpt-4")),
        (
            "mistralai/Mixtral-8x7B-Instruct-v0.1/majority@1",
            Action("majority", 1, "mistralai/Mixtral-8x7B-Instruct-v0.1"),
        ),
    ],
)
def test_parse_action(spec: str, expected: Action) -> None:
    assert parse_action(spec) == expected


@pytest.mark.parametrize("kind", kind_names())
@pytest.mark.parametrize("model", [None, "m", "org/name-v1"])
def test_spec_round_trip(kind: str, model: str | None) -> None:
    action = Action(kind, 3, model)
    assert parse_action(action.spec) == action
    assert str(action) == action.spec


def test_parse_action_passes_actions_through() -> None:
    action = Action("pass", 2)
    assert parse_action(action) is action


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "foo@3",
            r"Unknown action kind 'foo' in spec 'foo@3'; expected one of best_of, majority, pass, "
            r"weighted, top_half\.",
        ),
        ("m/vote@3", r"Unknown action kind 'vote' in spec 'm/vote@3'"),
        ("majority", r"Action spec 'majority' must look like KIND@K \(e.g. 'majority@4'\)"),
        ("majority@x", r"The K of action spec 'majority@x' must be a positive integer\. Got 'x'"),
        ("majority@0", r"The K of action spec 'majority@0' must be a positive integer\. Got '0'"),
        ("majority@-2", r"must be a positive integer\. Got '-2' instead\."),
        ("majority@", r"must be a positive integer\. Got '' instead\."),
        ("/majority@3", r"Action spec '/majority@3' has an empty model prefix before '/'\."),
    ],
)
def test_parse_action_errors(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_action(spec)


def test_parse_action_type_error() -> None:
    with pytest.raises(TypeError, match=r"An action spec must be a str or an Action\. Got int\."):
        parse_action(3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("vote", 2),
            r"The 'kind' parameter of Action must be one of best_of, majority, pass, weighted, "
            r"top_half\. Got 'vote' instead\.",
        ),
        (("majority", 0), r"The 'k' parameter of Action must be an int in \[1, inf\)\. Got 0"),
        (("majority", 2.0), r"The 'k' parameter of Action must be an int in \[1, inf\)\. Got 2.0"),
        (("majority", True), r"The 'k' parameter of Action must be an int"),
        (("majority", 2, ""), r"The 'model' parameter of Action must be a non-empty str or None"),
    ],
)
def test_action_validation(args: tuple[object, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Action(*args)  # type: ignore[arg-type]


def test_parse_actions_string_and_sequence() -> None:
    expected = (Action("majority", 1), Action("majority", 4), Action("pass", 2, "m/x"))
    assert parse_actions("majority@1, majority@4,m/x/pass@2") == expected
    assert parse_actions(["majority@1", Action("majority", 4), "m/x/pass@2"]) == expected
    assert parse_actions(Action("pass", 1)) == (Action("pass", 1),)
    assert parse_actions("majority@1,") == (Action("majority", 1),)


def test_parse_actions_errors() -> None:
    with pytest.raises(ValueError, match=r"At least one action is needed\. Got none\."):
        parse_actions(" , ")
    with pytest.raises(ValueError, match=r"Action 'majority@4' is given more than once\."):
        parse_actions("majority@4,majority@1, majority@4")
