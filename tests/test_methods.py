"""The one registry of method names: every layer's names derive from it."""

from __future__ import annotations

import pytest

from computealloc import methods
from computealloc.evaluation import METHODS, ROUTER, SEQUENTIAL, THINKING
from computealloc.evaluation.comparison import BOUNDS, PEERS
from computealloc.fitting.fit import FIT_METHODS
from computealloc.fitting.persist import _CLASSES, _STOPPING_CLASSES
from computealloc.fitting.sequential import FIT_RULES, SEQUENTIAL_METHODS


def test_old_names_are_derived_unchanged() -> None:
    # The literal tuples the layers held before the registry, in their order (FIT_METHODS
    # held the same names in another order, which only error messages showed).
    assert FIT_METHODS == ("uniform", "length", "imitation", "value")
    assert FIT_RULES == (
        "adaptive-consistency",
        "dirichlet",
        "entropy",
        "majority-share",
        "esc",
        "sequential/pooled",
        "sequential/prior",
        "sequential",
    )
    assert (
        "uniform-majority",
        "adaptive-consistency@0.95",
        "esc@5",
        *FIT_RULES,
    ) == SEQUENTIAL_METHODS
    assert SEQUENTIAL_METHODS[1:] == SEQUENTIAL
    assert ROUTER == "router/threshold"
    policies = ("uniform", "random", "length", "length/batch", "imitation", "imitation/batch")
    probes = ("imitation+probe", "imitation+probe/batch", "value+probe", "value+probe/batch")
    assert (
        *policies,
        "value",
        "value/batch",
        *probes,
        ROUTER,
        *SEQUENTIAL,
        *THINKING,
        "oracle",
        "oracle+probe",
        "oracle_in_sample",
    ) == METHODS
    assert THINKING == ("uniform-cap", "stable", "conf", "learned-exit", "full/majority@1")
    assert BOUNDS == ("oracle", "oracle+probe", "oracle_in_sample")
    assert PEERS == ("adaptive-consistency", "esc", ROUTER)
    assert sorted(_CLASSES) == ["Imitation", "LengthHeuristic", "Random", "Uniform", "Value"]
    assert sorted(_STOPPING_CLASSES) == [
        "BetaRule",
        "DirichletRule",
        "EntropyRule",
        "LagrangianStopping",
        "MajorityShareRule",
        "WindowRule",
    ]


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("oracle", "bound"),
        ("uniform", "baseline"),
        ("random", "baseline"),
        ("esc@5", "published"),
        ("esc", "peer"),
        (ROUTER, "peer"),
        ("value/batch", "learned"),
        ("value+probe", "learned"),
        ("entropy", "rule"),
        ("sequential", "rule"),
        ("unknown@3", "published"),
        ("unknown", "rule"),
    ],
)
def test_kind_of(name: str, kind: str) -> None:
    assert methods.kind_of(name) == kind


def test_deployable_methods_have_a_fit_and_a_class() -> None:
    for spec in methods.REGISTRY.values():
        assert spec.deployable == (spec.fit is not None)
        if spec.deployable:
            assert spec.cls is not None
            assert spec.name in (FIT_METHODS if spec.fit == "fit_policy" else FIT_RULES)
    help_text = methods.fit_help()
    assert all(name in help_text for name in (*FIT_METHODS, *FIT_RULES))


def test_register_refuses_a_duplicate_and_an_incomplete_deployable() -> None:
    with pytest.raises(ValueError, match="'value' is already registered"):
        methods.register(methods.MethodSpec("value", "policy", "learned", "again"))
    with pytest.raises(ValueError, match="needs a 'fit' function and a 'cls' class"):
        methods.register(methods.MethodSpec("x", "policy", "learned", "x", deployable=True))
    assert "x" not in methods.REGISTRY
    with pytest.raises(ValueError, match="Unknown method 'nope'; known: uniform, random"):
        methods.get_method("nope")
