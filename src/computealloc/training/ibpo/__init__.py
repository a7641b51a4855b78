"""IBPO: budget-constrained selection of fine-tuning targets, and its allocation as a policy.

Inference Budget-Constrained Policy Optimization (Yu et al., 2025) teaches a model to spend
long reasoning only where it pays. Its sampled responses belong to groups (say ``short`` = one
standard solution and ``long`` = an extended, voting response); at every training step an
integer program over the batch decides which responses become training targets, so that the
share of long targets stays within a budget ``q+``; the model is then fine-tuned on the chosen
responses (SFT weighted by the 0/1 choice).

This module is a **reconstruction** from the paper's abstract and public summaries (the full
paper could not be read); the names below are ours. For a batch of ``P`` prompts whose
responses ``j`` carry a utility ``u_j``, a group ``g(j)`` and optionally a cost ``c_j``:

.. math::

    \\max_{w \\in \\{0, 1\\}^n} \\sum_j u_j w_j \\quad \\text{s.t.} \\quad
    \\sum_{j \\in p} w_j \\le 1 \\;\\; \\forall p, \\qquad
    \\sum_{j: g(j) = g} w_j \\le \\lfloor q_g P \\rfloor \\;\\; \\forall g \\text{ capped}, \\qquad
    \\sum_j c_j w_j \\le B P.

At most one target per prompt; a capped group's targets are at most a share ``q_g`` of the
batch's prompts (the density constraint); and/or the accepted targets' mean cost per prompt is
at most ``B``. The utility is the response's reward (correctness) or, by default, its margin:
the reward minus the mean reward of the prompt's responses in the other groups. Only
responses of positive utility can be accepted (the others never raise the objective).

- :func:`response_utility` computes margins or rewards; :func:`ibpo_select` solves the program
  with :func:`scipy.optimize.milp` (sparse constraint matrices, built without loops over
  responses), or its LP relaxation with the dual prices of the share and budget constraints.
- :func:`export_sft` streams a :class:`~computealloc.data.samples.SampleLog` through the selection
in
  seeded batches and writes a prompt/completion JSONL dataset for TRL's ``SFTTrainer``.
- :func:`ibpo_allocation_sweep` reads the selection as an allocation policy between two modes
  (``short`` = majority@1, ``long`` = majority@8) and compares it with the uniform mix and the
  oracle of :func:`computealloc.estimation.oracle.solve`. The in-batch selection sees the outcomes,
  so, like the oracle, it is an upper bound, not a deployable policy.

Modules
-------
- :mod:`~computealloc.training.ibpo.selection`: :func:`response_utility` and :func:`ibpo_select`
(the
  program and its sparse constraints).
- :mod:`~computealloc.training.ibpo.export`: :func:`export_sft` (seeded batches, JSONL writer).
- :mod:`~computealloc.training.ibpo.sweep`: :func:`ibpo_allocation_sweep`.
- :mod:`~computealloc.training.ibpo.results`: :class:`IBPOSelection`, :class:`IBPOSummary` and the
  shared type aliases.
- :mod:`~computealloc.training.ibpo.validation`: the argument checks.

References
----------
.. [1] Z. Yu et al., "Think Smarter not Harder: Adaptive Reasoning with Inference Aware
   Optimization", ICML 2025 (arXiv:2501.17974).
"""

from __future__ import annotations

from computealloc.training.ibpo.export import export_sft
from computealloc.training.ibpo.results import CostUnit as CostUnit
from computealloc.training.ibpo.results import IBPOSelection, IBPOSummary
from computealloc.training.ibpo.results import Utility as Utility
from computealloc.training.ibpo.selection import ibpo_select, response_utility
from computealloc.training.ibpo.sweep import ibpo_allocation_sweep

__all__ = [
    "IBPOSelection",
    "IBPOSummary",
    "export_sft",
    "ibpo_allocation_sweep",
    "ibpo_select",
    "response_utility",
]
