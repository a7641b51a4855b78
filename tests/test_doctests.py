"""Every docstring example of the core modules runs and prints what it shows."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "estimation.actions",
    "serving.budget",
    "fitting.calibrate",
    "data.datasets",
    "estimation.estimate",
    "evaluation",
    "evaluation.result",
    "estimation.features",
    "data.grading",
    "training.ibpo.selection",
    "training.ibpo.sweep",
    "estimation.oracle",
    "evaluation.routing",
    "serving.runtime",
    "data.samples",
    "data.samples.reading",
    "fitting.sequential.calibration",
    "fitting.sequential.protocol",
    "fitting.sequential.rules",
    "data.splits",
    "estimation.summary",
    "fitting.policies.baselines",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(f"computealloc.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
