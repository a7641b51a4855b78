"""computealloc: adaptive test-time compute allocation for LLMs under an average budget.

Data flows one way: samples -> estimate -> solve -> policies -> evaluate / serve.
"""

from computealloc.actions import Action, parse_action, parse_actions
from computealloc.estimate import default_actions, estimate
from computealloc.grading import extract_answer, grade, is_equivalent, normalize
from computealloc.samples import SampleLog, SampleLogError, read_samples
from computealloc.summary import summarize
from computealloc.table import Allocation, OutcomeTable

__version__ = "0.1.0"

__all__ = [
    "Action",
    "Allocation",
    "OutcomeTable",
    "SampleLog",
    "SampleLogError",
    "__version__",
    "default_actions",
    "estimate",
    "extract_answer",
    "grade",
    "is_equivalent",
    "normalize",
    "parse_action",
    "parse_actions",
    "read_samples",
    "summarize",
]
