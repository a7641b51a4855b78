"""A fake reasoning model behind the fake OpenAI server, for tests of budget forcing.

Each prompt (and request seed) has a deterministic trace (:func:`trace_of`): ``length``
thinking words, then ``</think>`` and the final answer. The answer the model would give if
forced after ``t`` thinking words is ``answers[t]``; it wanders before the trace's ``settle``
point and is the final answer from there on. A prompt's correct answer is :func:`gold_of`;
harder prompts (by their hash) think longer and end on it less often. A request whose last
message is an assistant message continues it (when the dialect says so): a thought is
continued word by word, and a thought that ends with the forcing suffix is answered with
``answers[t]`` (one token). One word is one token.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Literal

from computealloc.data.backends import Completion
from computealloc.data.forcing import DEFAULT_SUFFIX
from fake_openai_server import ChatRequest, Responder

WORD = "hmm"


@dataclass(frozen=True)
class Trace:
    """A prompt's thought: ``length`` words, forced answers ``answers[0..length]``."""

    length: int
    settle: int
    answers: tuple[str, ...]

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
    return Trace(length, settle, tuple(answers))


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
        else:
            rest = trace.words[len(prefix.split()) :]
            words, reason = rest[:cap], "length" if len(rest) > cap else "stop"
        text = "".join(" " + w for w in words)
        served.append(len(words))
        if dialect == "llama.cpp":
            text = prefix + text
        return [Completion(text=text, output_tokens=len(words), finish_reason=reason)] * n

    return respond
