"""Fit a thinking policy, serve it in front of the real llama-server, and count its tokens.

End to end on real components (not a test: it takes minutes and prints what it saw):

1. a synthetic checkpoint log on the grid 0, 6, 12, 24 thinking tokens;
2. ``computealloc fit --method uniform --cost tokens`` over the arms
   ``stable@W/weighted@2`` (W = 1, 2, 3) at a budget of 60 tokens per query;
3. ``computealloc serve`` with one arm per W, each a thinking plan on the real ``llama-server``
   of ``../shared/bin`` (started by ``tests/llama_server.py`` with the prefill template),
   ``logprobs: true`` so that ``weighted@2`` votes by confidence;
4. N chat requests through the official ``openai`` client; then the client's summed
   ``usage.completion_tokens`` against the proxy's ledger (``/metrics``) and the cost per arm.

The live model is not the synthetic one, so the live costs differ from the fitted ones: the
proxy's price controller moves the arm mix until the running mean holds the budget.

Run: ``PYTHONPATH=src python scripts/smoke_thinking_serve.py [N]`` (N = 80: about 3.5 min).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from openai import OpenAI  # noqa: E402

import llama_server  # noqa: E402
from computealloc.data.checkpoint_synthetic import synthetic  # noqa: E402

PORT = 8137
GRID = [0, 6, 12, 24]
BUDGET = 60


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 80
    if reason := llama_server.missing():
        sys.exit(f"llama-server is not here: {reason}")
    work = Path(tempfile.mkdtemp(prefix="thinking-serve-"))
    template = ROOT / "tests" / "gemma_prefill.jinja"
    model = llama_server.model_file()
    server = llama_server.LlamaServer(model, work / "llama.log", template=template)
    proxy = None
    try:
        synthetic(200, 4, 0, grid=tuple(GRID)).save(work / "ck.csv")
        actions = ",".join(f"stable@{w}/weighted@2" for w in (1, 2, 3))
        fit = [
            *("computealloc", "fit", str(work / "ck.csv"), "--method", "uniform"),
            *("--cost", "tokens", "--actions", actions, "--budget", str(BUDGET)),
            *("-o", str(work / "policy.json")),
        ]
        print(subprocess.run(fit, check=True, capture_output=True, text=True).stdout)
        plan = {"checkpoints": GRID, "answer_tokens": 4, "server": "llama.cpp", "logprobs": True}
        arms = [
            {
                "name": f"stable@{w}",
                "url": server.url,
                "model": llama_server.MODEL,
                "thinking": {**plan, "stable": w},
            }
            for w in (1, 2, 3)
        ]
        (work / "arms.yaml").write_text(json.dumps({"arms": arms}))  # JSON is YAML
        serve = [
            *("computealloc", "serve", "--policy", str(work / "policy.json")),
            *("--budget", str(BUDGET), "--config", str(work / "arms.yaml"), "--port", str(PORT)),
        ]
        proxy = subprocess.Popen(
            serve, stdout=(work / "proxy.log").open("w"), stderr=subprocess.STDOUT
        )
        base = f"http://127.0.0.1:{PORT}"
        for _ in range(240):
            try:
                urllib.request.urlopen(f"{base}/readyz", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        client = OpenAI(base_url=f"{base}/v1", api_key="unused")
        total = 0
        for i in range(n):
            reply = client.chat.completions.create(
                model="x",
                messages=[{"role": "user", "content": f"What is {i} + 2? Think, then answer."}],
            )
            total += reply.usage.completion_tokens if reply.usage else 0
        print(f"{n} queries: client usage {total} completion tokens, mean {total / n:.1f}")
        metrics = urllib.request.urlopen(f"{base}/metrics").read().decode()
        for line in metrics.splitlines():
            if line.startswith(("computealloc_cost_total", "computealloc_arm_cost_total")) or (
                line.startswith(("computealloc_mean_cost", "computealloc_output_tokens_total"))
            ):
                print(line)
    finally:
        if proxy is not None:
            proxy.terminate()
        server.kill()


if __name__ == "__main__":
    main()
