"""Every docstring example of the core modules runs and prints what it shows."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "actions",
    "budget",
    "calibrate",
    "datasets",
    "estimate",
    "evaluation",
    "evaluation.result",
    "features",
    "grading",
    "ibpo.selection",
    "ibpo.sweep",
    "oracle",
    "routing",
    "runtime",
    "samples",
    "samples.reading",
    "sequential.calibration",
    "sequential.protocol",
    "sequential.rules",
    "splits",
    "summary",
    "policies.baselines",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(f"computealloc.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
