"""Budget forcing and checkpoint early exit against a live server.

A reasoning model thinks, then answers. *Budget forcing* caps the thinking at ``T`` tokens and
then forces an answer by appending a suffix (``"</think>\\n\\nFinal answer:"``) to the partial
thought; *checkpoint early exit* probes the forced answer at several points of the thought and
stops once it has settled (the same answer at ``W`` checkpoints in a row) or once the model is
sure of it (the probability of the probed answer, from the token log-probabilities, reaches
``TAU``: :func:`answer_confidence`). Both need a server that continues a partial assistant
message (:data:`CONTINUATIONS`):

* vLLM and SGLang: the chat request fields ``continue_final_message: true`` and
  ``add_generation_prompt: false``; serve without a reasoning parser so that the thought comes
  back in ``content``.
* llama.cpp's ``llama-server``: started with ``--jinja`` and a chat template that leaves a final
  assistant message open, it continues a conversation that ends with an assistant message
  (its reply repeats that message, which is removed here).

The thought runs in segments: one request up to the first checkpoint, then one continuation per
further checkpoint (the server's prefix cache keeps the re-sent thought from being decoded
again), a probe at each checkpoint where the rule needs one (the thought plus the suffix,
``answer_tokens`` at most) and the forced answer at the last checkpoint (the cap). A thought
that ends on its own before the cap (finish reason ``"stop"``) is the answer as it stands.
Every output token (thinking, probes, answer) is counted in the :class:`Thought`; prompt
tokens are summed over the requests as the server reports them. A plan with a ``confidence``
threshold asks its probes for token log-probabilities (``logprobs: true, top_logprobs: 1``,
which vLLM, SGLang and llama.cpp honour); a server that sends none fails the thought. A plan
with ``logprobs`` asks every request for them, so that each thought carries the confidence of
the answer it gives (:attr:`Thought.confidence`, the ``score`` of its completion, which
``weighted@K`` and ``top_half@K`` votes weigh). A plan
with ``stream`` thinks in one streamed request instead of segments, probed as the thought
crosses each checkpoint and closed when the rule stops (:func:`think`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np

from computealloc.data.backends.base import (
    Backend,
    BackendError,
    Completion,
    Prompt,
    check_params,
    gather_or_cancel,
    receipt,
    record_received,
    to_messages,
)
from computealloc.data.grading import extract_answer, normalize

if TYPE_CHECKING:  # aiohttp, which streams need, is an optional dependency
    from computealloc.data.backends.streaming import ChatStream

__all__ = [
    "CONTINUATIONS",
    "DEFAULT_SUFFIX",
    "Checkpoint",
    "Continuation",
    "Probe",
    "Segment",
    "ThinkingBackend",
    "ThinkingPlan",
    "Thought",
    "answer_confidence",
    "probe_trace",
    "think",
]

#: What is appended to a partial thought to force the answer.
DEFAULT_SUFFIX = "\n</think>\n\nFinal answer:"
#: Request fields that cap a request's output tokens (vLLM and OpenAI read
#: ``max_completion_tokens`` before ``max_tokens``): a plan sets the cap per request.
CAP_FIELDS = ("max_tokens", "max_completion_tokens")
#: Request fields that ask for the log-probability of each output token (the chosen token's
#: only: ``top_logprobs`` 1, the least that llama.cpp still answers with log-probabilities).
LOGPROBS: dict[str, Any] = {"logprobs": True, "top_logprobs": 1}


@dataclass(frozen=True)
class Continuation:
    """How a server continues a partial assistant message.

    Attributes
    ----------
    name : str
        The server family.
    params : mapping
        Request fields that ask for the continuation (merged into a continuation request).
    echoes : bool
        Whether the reply repeats the continued message before the new text (removed here).
    """

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)
    echoes: bool = False


#: Continuation dialects by server family; ``llama.cpp`` is tested against the real
#: ``llama-server``, ``vllm`` against a fake that follows vLLM's documented fields, ``sglang``
#: is untested here.
CONTINUATIONS: dict[str, Continuation] = {
    "vllm": Continuation("vllm", {"continue_final_message": True, "add_generation_prompt": False}),
    "sglang": Continuation(
        "sglang", {"continue_final_message": True, "add_generation_prompt": False}
    ),
    "llama.cpp": Continuation("llama.cpp", echoes=True),
}


@dataclass(frozen=True)
class ThinkingPlan:
    """Where to probe a thought and when to stop it.

    Parameters
    ----------
    checkpoints : sequence of int
        Strictly increasing thinking-token counts ``>= 0`` (0: the forced answer before any
        thinking, the answer without thinking); the last one is the cap (``>= 1``).
    stable : int or None
        Stop at the first checkpoint whose probed answer equals the answers of the ``stable - 1``
        checkpoints before it (``1 <= stable <= len(checkpoints) - 1``: the cap always stops);
        None probes only at the cap (budget forcing).
    answer_tokens : int
        Output tokens allowed to a probe and to the forced answer (``>= 1``).
    suffix : str
        Appended to the partial thought to force the answer.
    confidence : float or None
        ``TAU`` in (0, 1]: stop at the first checkpoint whose probed answer has a confidence
        (:func:`answer_confidence`) of at least ``TAU``; None: no such rule. With ``stable``
        too, the thought stops where either rule fires first (``"confident"`` when both fire
        at one checkpoint). Its probes ask for token log-probabilities. Needs a checkpoint
        before the cap.
    stream : bool
        Think in one streamed request (up to the cap) instead of one request per segment; the
        backend needs an ``open_stream`` method (see :func:`think`).
    logprobs : bool
        Ask every request (thinking, probes, answer) for token log-probabilities, so that each
        thought carries the confidence of its answer (:attr:`Thought.confidence`); a server
        that sends none fails the thought. A plan with ``confidence`` asks its probes anyway.

    Raises
    ------
    ValueError
        When a field is out of its range.
    """

    checkpoints: tuple[int, ...]
    stable: int | None = None
    answer_tokens: int = 32
    suffix: str = DEFAULT_SUFFIX
    confidence: float | None = None
    stream: bool = False
    logprobs: bool = False

    def __post_init__(self) -> None:
        points = tuple(self.checkpoints)
        if (
            not points
            or not all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in points)
            or any(b <= a for a, b in itertools.pairwise(points))
            or points[-1] < 1
        ):
            raise ValueError(
                "The checkpoints of a ThinkingPlan must be strictly increasing token counts "
                ">= 0 (0: the answer without thinking), the last one (the cap) >= 1. Got "
                f"{self.checkpoints!r} instead."
            )
        object.__setattr__(self, "checkpoints", points)
        if self.stable is not None and (isinstance(self.stable, bool) or self.stable < 1):
            raise ValueError(f"The stable of a ThinkingPlan must be >= 1. Got {self.stable!r}.")
        if isinstance(self.answer_tokens, bool) or self.answer_tokens < 1:
            raise ValueError(
                f"The answer_tokens of a ThinkingPlan must be >= 1. Got {self.answer_tokens!r}."
            )
        if not isinstance(self.suffix, str) or not self.suffix:
            raise ValueError("The suffix of a ThinkingPlan must be a non-empty str.")
        tau = self.confidence
        if tau is not None and (
            isinstance(tau, bool) or not isinstance(tau, int | float) or not 0 < tau <= 1
        ):
            raise ValueError(
                f"The confidence of a ThinkingPlan must be a float in (0, 1]. Got {tau!r} instead."
            )
        before = len(points) - 1  # checkpoints where a rule can stop the thought (not the cap)
        if self.stable is not None and self.stable > before:
            raise ValueError(
                f"The stable of a ThinkingPlan must be at most the checkpoints before the cap "
                f"({before}): stable={self.stable} never stops a thought before the cap "
                f"{points[-1]} (the plan would be budget forcing at the cap). Add checkpoints "
                "or drop stable."
            )
        if tau is not None and not before:
            raise ValueError(
                f"A ThinkingPlan with a confidence needs checkpoints before the cap: with only "
                f"the cap ({points[-1]}) the rule never stops a thought early. Add checkpoints "
                "(e.g. [256, 512, 1024]) or drop confidence (logprobs: true alone gives each "
                "thought its answer's confidence)."
            )
        if not isinstance(self.stream, bool):
            raise ValueError(f"The stream of a ThinkingPlan must be a bool. Got {self.stream!r}.")
        if not isinstance(self.logprobs, bool):
            raise ValueError(
                f"The logprobs of a ThinkingPlan must be a bool. Got {self.logprobs!r} instead."
            )

    @property
    def probes(self) -> bool:
        """Whether a rule needs a probe at every checkpoint (not only at the cap)."""
        return self.stable is not None or self.confidence is not None


class Probe(NamedTuple):
    """The forced answer at one checkpoint of a thought.

    Attributes
    ----------
    think_tokens : int
        Thinking tokens before the probe.
    answer : str or None
        The answer extracted from the probe's text.
    confidence : float or None
        :func:`answer_confidence` of the probe, when its tokens' log-probabilities were asked
        for and sent; else None.
    """

    think_tokens: int
    answer: str | None
    confidence: float | None = None


def answer_confidence(tokens: Sequence[tuple[str, float]], answer: str | None) -> float:
    """The model's probability of the answer it gave, from its tokens' log-probabilities.

    Let the reply be the tokens ``s_1 .. s_n`` (texts, concatenated: the reply's text) with
    natural log-probabilities ``l_1 .. l_n``. When ``answer`` is a non-empty substring of the
    text, its last occurrence (where answer extraction looks) spans the characters
    ``[a, b)``, and the confidence is ``exp(sum of l_i over the tokens that overlap [a, b))``:
    the probability of the tokens that spell the answer, given everything before them. A token
    that holds the answer and more (``"{42}"``) counts whole. Otherwise (no answer, or one that
    extraction rewrote so that it is not in the text verbatim, e.g. ``"1,000"`` read as
    ``"1000"``) the confidence is ``exp(mean of l_1 .. l_n)``, the geometric-mean probability
    of the reply's tokens. A reply with no tokens has confidence 0.

    Parameters
    ----------
    tokens : sequence of (str, float)
        ``(token text, log-probability)`` of each output token, in order
        (:attr:`computealloc.data.backends.Completion.logprobs`).
    answer : str or None
        The answer extracted from the reply.

    Returns
    -------
    float
        In [0, 1].

    Examples
    --------
    >>> import math
    >>> tokens = [(" The", -0.1), (" answer", -0.2), (" is", -0.1), (" 4", -0.5), (".", -0.3)]
    >>> math.isclose(answer_confidence(tokens, "4"), math.exp(-0.5))
    True
    >>> math.isclose(answer_confidence(tokens, "5"), math.exp(-1.2 / 5))
    True
    """
    if not tokens:
        return 0.0
    texts = [t for t, _ in tokens]
    logprobs = np.array([lp for _, lp in tokens], dtype=np.float64)
    start = "".join(texts).rfind(answer) if answer else -1
    if start < 0:
        return float(math.exp(logprobs.mean()))
    ends = np.cumsum([len(t) for t in texts])
    starts = ends - np.array([len(t) for t in texts])
    spells = (starts < start + len(answer)) & (ends > start)  # type: ignore[arg-type]
    return float(math.exp(logprobs[spells].sum()))


@dataclass(frozen=True)
class Segment:
    """One request of a thought.

    Attributes
    ----------
    kind : {"think", "probe", "answer"}
    prompt_tokens : int or None
        As the server reported them.
    output_tokens : int
    finish_reason : str or None
    """

    kind: Literal["think", "probe", "answer"]
    prompt_tokens: int | None
    output_tokens: int
    finish_reason: str | None


#: Why a thought stopped.
Stop = Literal["natural", "settled", "confident", "cap"]


@dataclass(frozen=True)
class Thought:
    """A thought run under a :class:`ThinkingPlan`.

    Attributes
    ----------
    text : str
        The answer text: the suffix and what followed it at the stop (the answer is read
        there, so that a plain answer after the default suffix's ``Final answer:`` counts), or
        the whole reply when the thought ended on its own.
    answer : str or None
        The answer extracted from ``text``.
    think_tokens : int
        Output tokens of the thinking segments (with the answer, when the thought ended on
        its own).
    probe_tokens : int
        Output tokens of the probes before the stop.
    answer_tokens : int
        Output tokens of the answer at the stop (0 when the thought ended on its own).
    stop : {"natural", "settled", "confident", "cap"}
        Why the thought stopped.
    probes : tuple of Probe
        The thinking tokens so far, the answer and its confidence at every probe, the stop's
        included.
    segments : tuple of Segment
        Every request, in order.
    confidence : float or None
        :func:`answer_confidence` of ``answer``, in [0, 1]: the stopping probe's (for a
        ``"cap"``, ``"settled"`` or ``"confident"`` stop), or, for a ``"natural"`` end, over
        the tokens of the thought's last thinking request; None where its log-probabilities
        were not asked for.
    """

    text: str
    answer: str | None
    think_tokens: int
    probe_tokens: int
    answer_tokens: int
    stop: Stop
    probes: tuple[Probe, ...]
    segments: tuple[Segment, ...]
    confidence: float | None = None

    @property
    def output_tokens(self) -> int:
        """Every output token spent: thinking, probes and the answer."""
        return self.think_tokens + self.probe_tokens + self.answer_tokens

    @property
    def prompt_tokens(self) -> int | None:
        """Prompt tokens summed over the requests (None when a request did not report them)."""
        counts = [s.prompt_tokens for s in self.segments]
        return None if any(c is None for c in counts) else sum(c for c in counts if c is not None)

    def completion(self) -> Completion:
        """The thought as one :class:`~computealloc.data.backends.Completion` (every output
        token; its ``score`` is :attr:`confidence`)."""
        return Completion(
            text=self.text,
            output_tokens=self.output_tokens,
            finish_reason="stop",
            prompt_tokens=self.prompt_tokens,
            score=self.confidence,
        )


async def think(
    backend: Backend,
    prompt: Prompt,
    plan: ThinkingPlan,
    *,
    continuation: Continuation,
    params: Mapping[str, Any] | None = None,
    extract: Callable[[str], str | None] = extract_answer,
    label: str | None = None,
) -> Thought:
    """Run one thought under ``plan`` (see the module).

    With ``plan.stream``, the thought is one streamed request (``stream: true``, at most the
    cap's tokens) read as it arrives (:class:`~computealloc.data.backends.streaming.ChatStream`:
    ``reasoning_content`` and ``content`` deltas, tokens counted from the server's running
    usage where it sends one). When ``t`` thinking tokens have arrived at a checkpoint ``t``,
    the stream is paused (no longer read) while the probe runs, as a continuation of the text
    received so far plus the suffix; then the stream is read on, or closed when the rule
    stops. The thinking tokens charged are those received before the close (see Notes).

    Parameters
    ----------
    backend : Backend
        The server, reached through one sample per request.
    prompt : str or conversation
        The query.
    plan : ThinkingPlan
    continuation : Continuation
        How the server continues a partial assistant message (:data:`CONTINUATIONS`).
    params : mapping, optional
        Request fields of every request (``temperature``, ``seed``, ...); ``max_tokens`` is set
        here per request, and neither it nor ``max_completion_tokens`` may be given.
    extract : callable
        The answer of a text (compared after :func:`~computealloc.data.grading.normalize`).
    label : str, optional
        What errors call the caller (an arm's name); default: the backend's model.

    Returns
    -------
    Thought

    Notes
    -----
    A paused stream is not a paused decode: servers keep decoding a request whose client does
    not read (into the connection's buffers, up to the cap) until it is closed. Those tokens,
    decoded but never received, are not charged; the server's compute for them is spent all
    the same (at most the probe's latency times the decoding speed per probe). A server that
    merges several tokens into one chunk makes a probe land a few tokens past its checkpoint
    (the probe records where it landed).

    Raises
    ------
    ValueError
        When ``params`` holds ``max_tokens``, ``max_completion_tokens`` or a reserved field.
    BackendError
        When a request fails, the server reports no token usage (the tokens could not be
        counted), or a plan with a ``confidence`` gets a probe without log-probabilities.
    """
    base = check_params(params, "think")
    capped = [k for k in CAP_FIELDS if k in base]
    if capped:
        raise ValueError(
            f"The 'params' of think must not set {capped[0]!r}: the plan sets the output cap "
            "of every request."
        )
    run = _Run(backend, to_messages(prompt), base, continuation, label)
    if plan.stream:
        return await _think_streamed(run, plan, extract)
    thought = ""
    for i, cap in enumerate(plan.checkpoints):
        if cap > run.thinking:
            text, reason, tokens = await run.request(
                "think", thought, cap - run.thinking, logprobs=plan.logprobs
            )
            thought += text
            if reason != "length":
                answer = extract(thought)
                conf = run.confidence(tokens, answer, _needs_logprobs(plan), "the thought's end")
                return run.result(thought, answer, "natural", conf)
        last = i == len(plan.checkpoints) - 1
        if not plan.probes and not last:
            continue
        probe = await run.probe(thought + plan.suffix, plan, "answer" if last else "probe", extract)
        if last:
            return run.result(run.last_text, probe.answer, "cap", probe.confidence)
        stop = _stop(run.probes, plan)
        if stop is not None:
            run.retag_last_probe()
            return run.result(run.last_text, probe.answer, stop, probe.confidence)
    raise AssertionError("unreachable: the last checkpoint always returns")


async def _think_streamed(
    run: _Run, plan: ThinkingPlan, extract: Callable[[str], str | None]
) -> Thought:
    """:func:`think` over one streamed thought (see there)."""
    opener = getattr(run.backend, "open_stream", None)
    if opener is None:
        raise ValueError(
            f"A streamed thinking plan needs a backend that opens streams (an OpenAIBackend); "
            f"{type(run.backend).__name__} does not."
        )
    extra = LOGPROBS if plan.logprobs else {}
    stream: ChatStream = await opener(
        run.messages, params={**run.params, "max_tokens": plan.checkpoints[-1], **extra}
    )
    run.live, at = stream, len(run.segments)
    try:
        for i, point in enumerate(plan.checkpoints):
            await stream.advance(point)
            if stream.done and stream.finish_reason is None:
                raise BackendError(
                    f"{run.who}'s streamed thought ended after {stream.output_tokens} tokens "
                    "without a finish reason (the connection was cut).",
                    retryable=False,
                )
            if stream.done and stream.finish_reason != "length":
                await run.end_stream(at)
                answer = extract(stream.text)
                tokens = stream.logprobs if plan.logprobs else None
                conf = run.confidence(tokens, answer, _needs_logprobs(plan), "the thought's end")
                return run.result(stream.text, answer, "natural", conf)
            last = i == len(plan.checkpoints) - 1 or stream.done
            if not plan.probes and not last:
                continue
            kind: Literal["probe", "answer"] = "answer" if last else "probe"
            probe = await run.probe(stream.text + plan.suffix, plan, kind, extract)
            stop = "cap" if last else _stop(run.probes, plan)
            if stop is not None:
                if not last:
                    run.retag_last_probe()
                await run.end_stream(at)
                return run.result(run.last_text, probe.answer, stop, probe.confidence)
    finally:
        await stream.aclose()
    raise AssertionError("unreachable: the last checkpoint always returns")


def _needs_logprobs(plan: ThinkingPlan) -> str | None:
    """Why ``plan`` needs log-probabilities at the end of a thought; None when it does not."""
    if not plan.logprobs:
        return None
    return "its plan asks every thought for its answer's confidence (logprobs: true)"


def _stop(probes: Sequence[Probe], plan: ThinkingPlan) -> Literal["settled", "confident"] | None:
    """Which rule of ``plan`` stops the thought at its last probe, if any (confidence first)."""
    last = probes[-1]
    if (
        plan.confidence is not None
        and last.answer is not None
        and last.confidence is not None
        and last.confidence >= plan.confidence
    ):
        return "confident"
    if plan.stable is not None and _settled(probes, plan.stable):
        return "settled"
    return None


@dataclass(frozen=True)
class Checkpoint:
    """The answer of a thought at one point (a row of a checkpoint log).

    Attributes
    ----------
    think_tokens : int
        Thinking tokens before the answer.
    answer : str or None
        The forced answer there, or the natural one at the end.
    final : bool
        True for the thought's natural end (``think_tokens`` is then its whole length).
    answer_tokens : int
        Output tokens of the forced answer (0 at the natural end: the answer is in the thought).
    confidence : float or None
        :func:`answer_confidence` of the answer, when the server sent log-probabilities; at the
        natural end, over the tokens of the thought's last segment.
    """

    think_tokens: int
    answer: str | None
    final: bool
    answer_tokens: int = 0
    confidence: float | None = None


async def probe_trace(
    backend: Backend,
    prompt: Prompt,
    checkpoints: Sequence[int],
    *,
    max_tokens: int,
    continuation: Continuation,
    answer_tokens: int = 32,
    suffix: str = DEFAULT_SUFFIX,
    params: Mapping[str, Any] | None = None,
    extract: Callable[[str], str | None] = extract_answer,
    logprobs: bool = True,
) -> tuple[list[Checkpoint], Thought]:
    """The forced answer of one thought at every checkpoint, then its natural end.

    What ``collect --checkpoints`` records: the thought runs to its natural end (at most
    ``max_tokens`` thinking tokens), probed at each checkpoint it passes.

    Parameters
    ----------
    checkpoints : sequence of int
        Strictly increasing thinking-token counts, each below ``max_tokens``.
    max_tokens : int
        The longest thought; one that has not ended by then gets a forced answer there (a
        last row that is not ``final``).
    backend, prompt, continuation, answer_tokens, suffix, params, extract
        As in :func:`think`.
    logprobs : bool
        Ask every request for token log-probabilities, so that each row carries the
        confidence of its answer (None where the server sends none).

    Returns
    -------
    rows : list of Checkpoint
        One per checkpoint passed, in order, then the end.
    thought : Thought
        Every request and token spent (probes included).

    Raises
    ------
    ValueError
        When a checkpoint is not below ``max_tokens``, or as :func:`think`.
    """
    plan = ThinkingPlan((*checkpoints, max_tokens), None, answer_tokens, suffix)
    base = check_params(params, "probe_trace")
    for name in CAP_FIELDS:
        base.pop(name, None)
    run = _Run(backend, to_messages(prompt), base, continuation)
    thought, rows = "", []
    for i, cap in enumerate(plan.checkpoints):
        reason: str | None = "length"  # a checkpoint at 0 thinking tokens: no thinking yet
        if cap > run.thinking:
            text, reason, tokens = await run.request(
                "think", thought, cap - run.thinking, logprobs=logprobs
            )
            thought += text
        if reason != "length":
            answer = extract(thought)
            conf = run.confidence(tokens, answer)
            rows.append(Checkpoint(run.thinking, answer, final=True, confidence=conf))
            return rows, run.result(thought, answer, "natural", conf)
        last = i == len(plan.checkpoints) - 1
        text, _, tokens = await run.request(
            "answer" if last else "probe", thought + suffix, answer_tokens, logprobs=logprobs
        )
        text = suffix + text  # read the answer after the suffix (see _Run.probe)
        spent = run.segments[-1].output_tokens
        answer = extract(text)
        conf = run.confidence(tokens, answer)
        rows.append(Checkpoint(run.thinking, answer, False, spent, conf))
        run.probes.append(Probe(run.thinking, answer, conf))
    return rows, run.result(text, rows[-1].answer, "cap", rows[-1].confidence)


def _settled(probes: Sequence[Probe], window: int) -> bool:
    """Whether the last ``window`` probed answers exist and are equal."""
    if len(probes) < window:
        return False
    keys = {None if p.answer is None else normalize(p.answer) for p in probes[-window:]}
    return len(keys) == 1 and None not in keys


class _Run:
    """The requests of one thought and their token counts."""

    def __init__(
        self,
        backend: Backend,
        messages: list[dict[str, Any]],
        params: dict[str, Any],
        continuation: Continuation,
        label: str | None = None,
    ) -> None:
        self.backend = backend
        self.messages = messages
        self.params = params
        self.continuation = continuation
        self.who = f"Arm {label!r}" if label else f"The server behind {backend.model!r}"
        self.segments: list[Segment] = []
        self.probes: list[Probe] = []
        self.last_text = ""
        self.live: ChatStream | None = None

    @property
    def thinking(self) -> int:
        """Thinking tokens generated (received from a live stream) so far."""
        live = 0 if self.live is None else self.live.output_tokens
        return live + sum(s.output_tokens for s in self.segments if s.kind == "think")

    async def end_stream(self, at: int) -> None:
        """Close the live stream; its tokens become the thinking segment at index ``at``."""
        stream, self.live = self.live, None
        assert stream is not None
        await stream.aclose()
        segment = Segment("think", stream.prompt_tokens, stream.output_tokens, stream.finish_reason)
        self.segments.insert(at, segment)

    async def request(
        self,
        kind: Literal["think", "probe", "answer"],
        prefix: str,
        max_tokens: int,
        *,
        logprobs: bool = False,
    ) -> tuple[str, str | None, tuple[tuple[str, float], ...] | None]:
        """Continue ``prefix`` (a fresh reply when empty) by at most ``max_tokens`` tokens:
        the new text, the finish reason and the tokens' log-probabilities (when asked for and
        sent)."""
        params = {**self.params, "max_tokens": max_tokens, **(LOGPROBS if logprobs else {})}
        messages = self.messages
        if prefix:
            messages = [*messages, {"role": "assistant", "content": prefix}]
            params.update(self.continuation.params)
        (reply,) = await self.backend.sample(messages, 1, params=params)
        if reply.output_tokens is None:
            raise BackendError(
                f"{self.who} reported no token usage; a thought "
                "under a thinking plan needs it to count its tokens.",
                retryable=False,
            )
        text = reply.text
        if prefix and self.continuation.echoes:
            if not text.startswith(prefix):
                raise BackendError(
                    f"{self.who} did not continue the partial "
                    f"assistant message (its reply does not repeat it, as a "
                    f"{self.continuation.name} server's does).",
                    retryable=False,
                )
            text = text[len(prefix) :]
        self.segments.append(
            Segment(kind, reply.prompt_tokens, reply.output_tokens, reply.finish_reason)
        )
        self.last_text = text
        return text, reply.finish_reason, reply.logprobs if logprobs else None

    async def probe(
        self,
        prefix: str,
        plan: ThinkingPlan,
        kind: Literal["probe", "answer"],
        extract: Callable[[str], str | None],
    ) -> Probe:
        """Force the answer after ``prefix`` (the thought and the suffix); record the probe."""
        why = (
            None
            if plan.confidence is None
            else f"its plan stops on confidence >= {plan.confidence:g}"
        )
        why = why or _needs_logprobs(plan)
        text, _, tokens = await self.request(
            kind, prefix, plan.answer_tokens, logprobs=why is not None
        )
        # the answer is read after the suffix, which may hold what marks it ("Final answer:",
        # an opening "\\boxed{"): a model that answers "Final answer: 42" replies " 42"
        self.last_text = plan.suffix + text
        answer = extract(self.last_text)
        probe = Probe(self.thinking, answer, self.confidence(tokens, answer, why, "a probe"))
        self.probes.append(probe)
        return probe

    def confidence(
        self,
        tokens: Sequence[tuple[str, float]] | None,
        answer: str | None,
        why: str | None = None,
        where: str = "a reply",
    ) -> float | None:
        """:func:`answer_confidence` of ``answer`` over ``tokens``; None without tokens, unless
        ``why`` (the reason they are needed) says they must be there.

        Raises
        ------
        BackendError
            When ``why`` is given and the server sent no log-probabilities (not retryable).
        """
        if tokens is not None:
            return answer_confidence(tokens, answer)
        if why is None:
            return None
        raise BackendError(
            f"{self.who} returned no token log-probabilities for {where}, and {why}: use a "
            "server whose chat API returns them (request field 'logprobs'), or drop the rule "
            "that needs them.",
            retryable=False,
        )

    def retag_last_probe(self) -> None:
        """The probe that settled the thought is its answer."""
        last = self.segments[-1]
        self.segments[-1] = Segment(
            "answer", last.prompt_tokens, last.output_tokens, last.finish_reason
        )

    def result(
        self, text: str, answer: str | None, stop: Stop, confidence: float | None = None
    ) -> Thought:
        def tokens(kind: str) -> int:
            return sum(s.output_tokens for s in self.segments if s.kind == kind)

        return Thought(
            text=text,
            answer=answer,
            think_tokens=tokens("think"),
            probe_tokens=tokens("probe"),
            answer_tokens=tokens("answer"),
            stop=stop,
            probes=tuple(self.probes),
            segments=tuple(self.segments),
            confidence=confidence,
        )


class ThinkingBackend:
    """A backend whose every sample is a thought run under a :class:`ThinkingPlan`.

    It makes a thinking action an arm: ``cap@512`` is the model behind ``backend`` with the
    plan ``ThinkingPlan((512,))``, and everything above the backend contract (collect, the
    runtime, voting, the ledger) works on it unchanged. Each sample's ``output_tokens`` is
    every token the thought spent (:attr:`Thought.output_tokens`).

    Parameters
    ----------
    backend : Backend
        The server's backend.
    plan : ThinkingPlan
    continuation : Continuation
        How the server continues a partial assistant message.
    name : str, optional
        What errors call it (the arm's name); default: the backend's model.

    Notes
    -----
    For the runtime's ledger (:func:`~computealloc.data.backends.receipt`), a finished thought is
    received as its one completion (its segments are not charged again), and a thought cut
    short by an error or a deadline as the segments it received (so a fleet's in-flight count
    sees a thought when it finishes, not segment by segment). ``sample(prompt, n)`` runs
    ``n`` thoughts concurrently; a ``seed`` in the request
    parameters becomes ``seed + j`` for thought ``j`` (so the ``n`` thoughts differ), and a
    ``max_tokens`` (or ``max_completion_tokens``, which servers read first) there is replaced by
    the plan's per-request limits.
    """

    def __init__(
        self,
        backend: Backend,
        plan: ThinkingPlan,
        continuation: Continuation,
        *,
        name: str | None = None,
    ) -> None:
        self.backend = backend
        self.plan = plan
        self.continuation = continuation
        self.name = name
        self.model = backend.model

    @property
    def scores(self) -> bool:
        """Whether every thought carries a ``score`` (its answer's confidence): the plan's
        ``logprobs``."""
        return self.plan.logprobs

    async def sample(
        self, prompt: Prompt, n: int, *, params: Mapping[str, Any] | None = None
    ) -> list[Completion]:
        """``n`` thoughts of ``prompt``, each as one completion (see the class)."""
        base = {k: v for k, v in check_params(params, "sample").items() if k not in CAP_FIELDS}
        seed = base.pop("seed", None)

        async def one(j: int) -> Completion:
            extra = {} if seed is None else {"seed": int(seed) + j}
            segments: list[Completion] = []
            try:
                with receipt() as segments:
                    thought = await think(
                        self.backend,
                        prompt,
                        self.plan,
                        continuation=self.continuation,
                        params={**base, **extra},
                        label=self.name,
                    )
            except BaseException:
                record_received(segments)  # a thought cut short is charged what it received
                raise
            completion = thought.completion()
            record_received([completion])  # charged even when a sibling thought fails
            return completion

        return await gather_or_cancel(one(j) for j in range(n))

    async def aclose(self) -> None:
        """Close the wrapped backend."""
        await self.backend.aclose()
