"""Tables, plots and reports of an :class:`~computealloc.evaluation.EvaluationResult`.

:func:`write_report` writes, into one folder:

- ``results.csv``: the long results (one row per source x protocol x seed x budget x method);
- ``summary.csv``: mean and standard error over seeds per protocol x budget x method;
- ``comparison.csv``: every method against uniform at equal realised cost, with intervals
  (:func:`computealloc.evaluation.comparison.compare`);
- ``accuracy_vs_cost_<protocol>.png``: the headline chart, accuracy against realised mean cost
  for at most 8 methods (uniform, the verdict's methods, the best learned policy and stopping
  rule, the published peers, the oracle bound), each with ± s.e. bars;
- ``all_methods_<protocol>.png``: small multiples, every method against uniform;
- ``compute_by_difficulty_<protocol>.png``: mean compute per test query by difficulty
  (single-sample accuracy of the query) at one budget, for the headline methods;
- on a checkpoint log evaluated in tokens (the early-exit rules among the methods,
  :mod:`computealloc.evaluation.thinking`): ``thinking_frontier_<protocol>.png``, accuracy against
  realised mean thinking tokens for every method with full thinking (``full/majority@1``)
  marked, and the section "How long to think": per method the mean tokens at which its
  curve reaches full thinking's accuracy (:func:`computealloc.evaluation.thinking.tokens_to_full`)
  and whether that is within issue 16's bar (35% of full thinking's tokens);
- ``report.md`` (links the PNG files) and ``report.html`` (self-contained: the plots are
  embedded as base64 PNG). Both open with the verdict
  (:func:`computealloc.evaluation.comparison.verdict_lines`) and the headline chart; the tables
  follow, folded, every comparison at equal realised cost and every overspend flagged.

Every file is written atomically (:func:`computealloc.files.atomic_write`); plots use
matplotlib's Agg backend and never open a window.

Modules
-------
- :mod:`~computealloc.evaluation.report.tables`: the report tables (:func:`accuracy_table`,
  :func:`published_table`, :func:`metric_table`, :func:`markdown_table`) and the text
  formatting they share.
- :mod:`~computealloc.evaluation.report.plots`: the accuracy-vs-cost and difficulty plots.
- :mod:`~computealloc.evaluation.report.thinking`: the thinking view (:func:`thinking_table`,
  :func:`thinking_lines`, :func:`plot_thinking_frontier`).
- :mod:`~computealloc.evaluation.report.writers`: the Markdown and HTML writers and
:func:`write_report`.
"""

from __future__ import annotations

from computealloc.evaluation.report.plots import (
    DIFFICULTY_BINS,
    headline_methods,
    plot_accuracy_vs_cost,
    plot_all_methods,
    plot_compute_by_difficulty,
)
from computealloc.evaluation.report.tables import (
    accuracy_table,
    markdown_table,
    metric_table,
    published_table,
)
from computealloc.evaluation.report.thinking import (
    plot_thinking_frontier,
    thinking_lines,
    thinking_table,
)
from computealloc.evaluation.report.writers import write_report

__all__ = [
    "DIFFICULTY_BINS",
    "accuracy_table",
    "headline_methods",
    "markdown_table",
    "metric_table",
    "plot_accuracy_vs_cost",
    "plot_all_methods",
    "plot_compute_by_difficulty",
    "plot_thinking_frontier",
    "published_table",
    "thinking_lines",
    "thinking_table",
    "write_report",
]
