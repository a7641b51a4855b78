"""computealloc: adaptive test-time compute allocation for LLMs under an average budget.

Data flows one way: samples -> estimate -> solve -> policies -> evaluate / serve.
"""

import importlib
from typing import TYPE_CHECKING, Any

from computealloc.data.grading import extract_answer, grade, is_equivalent, normalize
from computealloc.data.samples import SampleLog, SampleLogError, read_samples
from computealloc.estimation.actions import Action, parse_action, parse_actions
from computealloc.estimation.estimate import default_actions, estimate
from computealloc.estimation.oracle import Certificate, certify, solve
from computealloc.estimation.summary import summarize
from computealloc.estimation.table import Allocation, OutcomeTable

if TYPE_CHECKING:
    from computealloc.evaluation import EvaluationResult, evaluate

__version__ = "0.1.0"

#: Names loaded on first use: the evaluation pulls in scikit-learn and LightGBM, which
#: ``import computealloc`` (and every CLI command) need not pay for.
_LAZY = {"evaluate": "computealloc.evaluation", "EvaluationResult": "computealloc.evaluation"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'computealloc' has no attribute {name!r}")


__all__ = [
    "Action",
    "Allocation",
    "Certificate",
    "EvaluationResult",
    "OutcomeTable",
    "SampleLog",
    "SampleLogError",
    "__version__",
    "certify",
    "default_actions",
    "estimate",
    "evaluate",
    "extract_answer",
    "grade",
    "is_equivalent",
    "normalize",
    "parse_action",
    "parse_actions",
    "read_samples",
    "solve",
    "summarize",
]
