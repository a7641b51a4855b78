"""A fake reasoning model behind the fake OpenAI server, for tests of budget forcing.

Each prompt (and request seed) has a deterministic trace (:func:`trace_of`): ``length``
thinking words, then ``</think>`` and the final answer. The answer the model would give if
forced after ``t`` thinking words is ``answers[t]``; it wanders before the trace's ``settle``
point and is the final answer from there on. A prompt's correct answer is :func:`gold_of`;
harder prompts (by their hash) think longer and end on it less often. A request whose last
message is an assistant message continues it (when the dialect says so): a thought is
continued word by word, and a thought that ends with the forcing suffix is answered with
``answers[t]`` (one token). One word is one token. Asked for ``logprobs``, a reply sends each
word's log-probability: ``logprobs[t]`` for the forced answer after ``t`` words (low and
random while the answer wanders, rising towards 0 once it has settled), ``logprobs[length]``
for the natural final answer, and :data:`WORD_LOGPROB` for every other word.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass
from typing import Literal

from computealloc.data.backends import Completion
from computealloc.data.forcing import DEFAULT_SUFFIX
from fake_openai_server import ChatRequest, Responder

WORD = "hmm"
#: The log-probability of a thinking word (and of ``</think>``).
WORD_LOGPROB = -0.05


@dataclass(frozen=True)
class Trace:
    """A prompt's thought: ``length`` words, forced answers ``answers[0..length]`` with
    log-probabilities ``logprobs[0..length]``."""

    length: int
    settle: int
    answers: tuple[str, ...]
    logprobs: tuple[float, ...]

    @property
    def words(self) -> list[str]:
        """The whole natural reply, word by word."""
        return [WORD] * self.length + ["</think>", f"\\boxed{{{self.answers[-1]}}}"]


def _rng(key: str) -> random.Random:
    return random.Random(int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little"))


def gold_of(prompt: str) -> str:
    """The correct answer of ``prompt``."""
    return str(_rng(prompt).randint(0, 9))


def trace_of(prompt: str, seed: int | None = None) -> Trace:
    """The deterministic trace of ``prompt`` under a request ``seed``."""
    difficulty = _rng(f"difficulty|{prompt}").random()
    rng = _rng(prompt if seed is None else f"{prompt}|{seed}")
    length = rng.randint(20, 40 + int(160 * difficulty))
    settle = rng.randint(0, length)
    gold = gold_of(prompt)
    final = gold if rng.random() < 0.95 - 0.6 * difficulty else str((int(gold) + 1) % 10)
    answers = []
    current = str(rng.randint(0, 9))
    for t in range(length + 1):
        if t % 7 == 0:
            current = str(rng.randint(0, 9))
        answers.append(final if t >= settle else current)
    sure = _rng(f"confidence|{prompt}|{seed}")
    logprobs = [
        math.log(
            sure.uniform(0.05, 0.7)
            if t < settle
            else 1 - 0.5 * sure.uniform(0.3, 1) * (length + 1 - t) / (length + 1 - settle)
        )
        for t in range(length + 1)
    ]
    return Trace(length, settle, tuple(answers), tuple(logprobs))


def reasoning(dialect: Literal["vllm", "llama.cpp"], served: list[int]) -> Responder:
    """A responder for :func:`fake_openai_server.make_app`; appends each reply's tokens to
    ``served``. ``"vllm"`` continues only with ``continue_final_message``; ``"llama.cpp"``
    continues any final assistant message and repeats it at the head of its reply."""

    async def respond(request: ChatRequest, n: int) -> list[Completion]:
        user = next(m for m in request.messages if m["role"] == "user")
        trace = trace_of(str(user["content"]), request.seed)
        last = request.messages[-1]
        prefix = ""
        if last["role"] == "assistant" and (
            dialect == "llama.cpp" or request.continue_final_message
        ):
            prefix = str(last["content"])
        cap = request.max_tokens or 10**9
        if prefix.endswith(DEFAULT_SUFFIX):
            t = min(prefix.count(WORD), trace.length)
            words, reason = [f"\\boxed{{{trace.answers[t]}}}"], "stop"
            scores = [trace.logprobs[t]]
        else:
            start = len(prefix.split())
            rest = trace.words[start:]
            words, reason = rest[:cap], "length" if len(rest) > cap else "stop"
            last = len(trace.words) - 1  # the final answer's word
            scores = [
                trace.logprobs[-1] if start + i == last else WORD_LOGPROB for i in range(len(words))
            ]
        tokens = tuple((" " + w, lp) for w, lp in zip(words, scores, strict=True))
        text = "".join(t for t, _ in tokens)
        served.append(len(words))
        if dialect == "llama.cpp":
            text = prefix + text
        reply = Completion(
            text=text,
            output_tokens=len(words),
            finish_reason=reason,
            logprobs=tokens if request.logprobs else None,
        )
        return [reply] * n

    return respond
