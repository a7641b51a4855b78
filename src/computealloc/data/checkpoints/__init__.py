"""Checkpoint logs: the answer a reasoning model gives when forced to answer after t tokens.

A checkpoint log has one row per query x sample x checkpoint (DESIGN, "Checkpoint logs"):

=============== ================================================================================
``query_id``    str or int, required
``sample_idx``  int >= 0, required: one sampled reasoning trace
``think_tokens`` int >= 0, required: thinking tokens before the forced answer (0 = no thinking)
``answer``      the answer given there (null = none)
``correct``     bool, or null to grade against ``gold``
``confidence``  optional float in [0, 1]: the model's probability of that answer
``final``       optional bool: the row of the trace's natural end (its ``think_tokens`` is the
                full trace length); at most one per sample, and it is the sample's last row
``answer_tokens`` optional int >= 0: tokens of the answer itself (default 0)
``model``, ``prompt``, ``gold``, ``dataset``  as in every sample log
=============== ================================================================================

The checkpoints of a sample are strictly increasing in ``think_tokens`` in the order of the
file. Errors name the file, the line (CSV/JSONL) or row (Parquet/frame) and the field, like
every reader of :mod:`computealloc.data.samples`.

Thinking actions are **arms** (DESIGN, "Arms"): ``cap@T`` (answer at the trace's last
checkpoint with ``think_tokens <= T``; the final answer when the trace ended first), ``full``
(the natural end), and the fixed early-exit rules ``stable@W`` (the first checkpoint whose
answer has been the same at W checkpoints in a row) and ``conf@TAU`` (the first checkpoint
whose confidence is at least TAU). :func:`thinking_log` turns a checkpoint log into an
ordinary multi-arm :class:`~computealloc.data.samples.SampleLog`, one sample per trace and arm,
whose ``tokens`` is what the arm spends on that trace: the thinking tokens used plus the
answer tokens of every forced answer it asked for (one for ``cap@T``; one per checkpoint
visited for the early-exit rules). ``cap@1024/majority@4`` is then the arm ``cap@1024``
voted over 4 traces, estimated exactly by :func:`computealloc.estimation.estimate.estimate` with
``cost="tokens"``; the oracle, the policies, the budget calibration and ``computealloc
evaluate`` read such a log unchanged. A sample's ``score`` is its answer's confidence, so
``cap@1024/best_of@4`` (the most confident of 4 traces) is a confidence-aware action. The
arms of one trace share a ``split_group``, so the held-out protocol puts a trace in the
same half for every arm.
"""

from computealloc.data.checkpoints.arms import (
    MAX_DEFAULT_CAPS,
    Outcome,
    arm_outcomes,
    checkpoint_summary,
    default_arms,
    parse_arm,
    stop_outcome,
    thinking_log,
)
from computealloc.data.checkpoints.log import (
    CHECKPOINT_COLUMNS,
    CheckpointLog,
    read_checkpoints,
    read_log,
)
from computealloc.data.checkpoints.traces import Traces

__all__ = [
    "CHECKPOINT_COLUMNS",
    "MAX_DEFAULT_CAPS",
    "CheckpointLog",
    "Outcome",
    "Traces",
    "arm_outcomes",
    "checkpoint_summary",
    "default_arms",
    "parse_arm",
    "read_checkpoints",
    "read_log",
    "stop_outcome",
    "thinking_log",
]
