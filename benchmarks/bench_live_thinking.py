"""Live thinking plans (issue 16 item 5): tokens, accuracy and requests, segmented and streamed.

Two measurements:

- against the fake reasoning server (``tests/fake_reasoning.py``, vLLM dialect, reasoning
  deltas when streamed), 200 prompts: accuracy, mean output tokens (thinking, probes, answer)
  and requests per thought of ``cap@400`` (full thinking), ``cap@64``, ``stable@3``,
  ``conf@0.8``, ``conf@0.9`` and ``stable@3`` with ``conf@0.9``, each in the segmented and the
  streamed mode;
- when the real ``llama-server`` and its model are here (``tests/llama_server.py``), the
  segmented against the streamed mode on 3 prompts with probes at 16, 32, ..., 128 tokens and
  no early stop (``confidence=1.0``): wall time, requests, tokens and where the probes landed.

Run: ``PYTHONPATH=src:tests python -m benchmarks.bench_live_thinking [--no-real]``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import replace
from pathlib import Path
from tempfile import TemporaryDirectory

from computealloc.data.backends import OpenAIBackend, RetryPolicy
from computealloc.data.forcing import CONTINUATIONS, ThinkingPlan, Thought, think
from computealloc.data.grading import is_equivalent

POINTS = tuple(range(8, 240, 8))
PLANS = {
    "cap@400 (full)": ThinkingPlan((400,), answer_tokens=4),
    "cap@64": ThinkingPlan((64,), answer_tokens=4),
    "stable@3": ThinkingPlan(POINTS, stable=3, answer_tokens=4),
    "conf@0.8": ThinkingPlan(POINTS, confidence=0.8, answer_tokens=4),
    "conf@0.9": ThinkingPlan(POINTS, confidence=0.9, answer_tokens=4),
    "stable@3|conf@0.9": ThinkingPlan(POINTS, stable=3, confidence=0.9, answer_tokens=4),
}
REAL_PROMPTS = (
    "Count slowly from one to fifty, in words.",
    "Explain why the sky is blue.",
    "List the planets of the solar system with one fact each.",
)


async def _thoughts(
    url: str, model: str, prompts: list[str], plan: ThinkingPlan, dialect: str, **params: object
) -> tuple[list[Thought], int]:
    """The thoughts of ``prompts`` (at once unless ``params`` pins a seed) and the requests."""
    backend = OpenAIBackend(url, model, retry=RetryPolicy(max_attempts=2))
    try:
        run = [
            think(backend, p, plan, continuation=CONTINUATIONS[dialect], params=params)
            for p in prompts
        ]
        thoughts = [await r for r in run] if params else list(await asyncio.gather(*run))
        return thoughts, backend.stats.requests
    finally:
        await backend.aclose()


def fake() -> None:
    """The table of the fake reasoning server."""
    from fake_openai_server import make_app, running
    from fake_reasoning import gold_of, reasoning

    prompts = [f"measure {i}" for i in range(200)]
    print(f"{'plan':20s} {'mode':9s} {'accuracy':>8s} {'tokens':>7s} {'requests':>8s}")
    with running(make_app(reasoning("vllm", []), reasoning_deltas=True)) as url:
        for name, plan in PLANS.items():
            for mode in ("segmented", "streamed"):
                thoughts, requests = asyncio.run(
                    _thoughts(
                        url, "fake-r1", prompts, replace(plan, stream=mode == "streamed"), "vllm"
                    )
                )
                right = [
                    is_equivalent(t.answer, gold_of(q))
                    for t, q in zip(thoughts, prompts, strict=True)
                ]
                tokens = sum(t.output_tokens for t in thoughts) / len(prompts)
                print(
                    f"{name:20s} {mode:9s} {sum(right) / len(prompts):8.3f} {tokens:7.1f} "
                    f"{requests / len(prompts):8.2f}"
                )


def real() -> None:
    """Segmented against streamed on the real llama-server (skipped when it is absent)."""
    import llama_server

    reason = llama_server.missing()
    if reason:
        print(f"real llama-server: skipped ({reason})")
        return
    template = Path(__file__).resolve().parents[1] / "tests" / "gemma_prefill.jinja"
    with TemporaryDirectory() as tmp:
        server = llama_server.LlamaServer(llama_server.model_file(), Path(tmp) / "log", template)
        try:
            for stream in (False, True, False, True):
                plan = ThinkingPlan(
                    tuple(range(16, 144, 16)), confidence=1.0, answer_tokens=8, stream=stream
                )
                start = time.perf_counter()
                thoughts, requests = asyncio.run(
                    _thoughts(
                        server.url,
                        llama_server.MODEL,
                        list(REAL_PROMPTS),
                        plan,
                        "llama.cpp",
                        temperature=0,
                        seed=0,
                    )
                )
                wall = time.perf_counter() - start
                print(
                    f"llama-server stream={stream!s:5s} wall={wall:6.2f}s requests={requests} "
                    f"tokens={[t.output_tokens for t in thoughts]} "
                    f"probes_at={[p.think_tokens for p in thoughts[0].probes]}"
                )
        finally:
            server.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-real", action="store_true", help="skip the real llama-server")
    args = parser.parse_args()
    fake()
    if not args.no_real:
        real()


if __name__ == "__main__":
    main()
