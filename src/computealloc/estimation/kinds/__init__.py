"""Action kinds: how K samples of an arm become one answer (``[ARM/]KIND@K``).

Each kind is one module that registers a :class:`Kind`: its exact estimator (read by
:func:`computealloc.estimation.estimate.estimate`), its live combination (read by the runtime), the
samples it draws (its cost). Adding a kind is one module here plus one name in the import
line below.
"""

from computealloc.estimation.kinds import best_of, majority, pass_at, weighted  # noqa: F401  (registration)
from computealloc.estimation.kinds.base import Combine, Kind, get_kind, kind_names, register

__all__ = ["Combine", "Kind", "get_kind", "kind_names", "register"]
