"""Weighted SFT on an IBPO export with TRL, on CPU (the optional ``train`` extra).

:func:`computealloc.training.ibpo.export_sft` writes prompt/completion records with a ``weight``.
This module fine-tunes a causal LM on them with TRL's ``SFTTrainer``:

- records of weight 0 (rejected responses, ``keep_rejected=True``) are dropped, so a 0/1
  export trains exactly as SFT on its selected targets;
- graded weights ``w_i > 0`` weight the loss: with ``T`` the completion tokens of the batch,
  ``loss = sum_i w_i sum_{t in i} -log p(y_t | y_<t) / T`` (TRL's token mean, which it equals
  when every weight is 1);
- a local model is loaded from a GGUF file (dequantized to fp32, its quantizer marks cleared so
  that it can be trained and saved) or from a directory saved by ``save_pretrained``.

The loss goes through TRL's fused LM head (``model(..., fused_lm_head=True)`` returns per-token
``log_probs`` and a ``label_mask``, not logits), which :class:`WeightedSFTTrainer` reuses with
one weight per sequence. :func:`completion_loss` is the plain-PyTorch check: the mean
negative log-likelihood per completion token, computed from the full logits.

torch, transformers, trl and datasets are imported lazily: ``import computealloc`` never loads
them. Verified with torch 2.13.0 (CPU), transformers 5.25.0, trl 1.16.0, datasets 5.2.0.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "SFTRecord",
    "TrainResult",
    "completion_loss",
    "load_model",
    "read_sft_records",
    "train_sft",
    "weighted_sft_trainer",
]

_MAX_LENGTH = 512


@dataclass(frozen=True)
class SFTRecord:
    """One training record: ``prompt`` and ``completion`` text and its loss ``weight``."""

    prompt: str
    completion: str
    weight: float = 1.0


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train_sft` did.

    Attributes
    ----------
    out_dir : str
        Directory of the saved model and tokenizer (``save_pretrained`` format, safetensors).
    n_records : int
        Records trained on (weight > 0).
    n_dropped : int
        Records of weight 0 that were dropped.
    steps : int
        Optimizer steps taken.
    losses : tuple of float
        Training loss of every step (weighted, per completion token).
    seconds : float
        Wall time of the training loop.
    check_before, check_after : float or None
        :func:`completion_loss` of the check records before and after training (of the model
        in memory, before it is saved), when check records were given.
    """

    out_dir: str
    n_records: int
    n_dropped: int
    steps: int
    losses: tuple[float, ...]
    seconds: float
    check_before: float | None = None
    check_after: float | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of the fields."""
        return {
            "out_dir": self.out_dir,
            "n_records": self.n_records,
            "n_dropped": self.n_dropped,
            "steps": self.steps,
            "losses": list(self.losses),
            "seconds": self.seconds,
            "check_before": self.check_before,
            "check_after": self.check_after,
        }


# --------------------------------------------------------------------------- data


def read_sft_records(path: str | os.PathLike[str]) -> list[SFTRecord]:
    """Read a prompt/completion JSONL file (e.g. from
    :func:`~computealloc.training.ibpo.export_sft`).

    Each line is a JSON object with string ``prompt`` and ``completion`` and an optional finite
    ``weight >= 0`` (default 1); other fields are ignored. Blank lines are skipped.

    Raises
    ------
    ValueError
        Naming the file, line and field of the first bad record, or if the file has none.
    """
    with open(path, encoding="utf-8") as fh:
        records = [_record(line, path, i) for i, line in enumerate(fh, 1) if line.strip()]
    if not records:
        raise ValueError(f"{path}: no records (expected JSON lines with prompt and completion).")
    return records


def _record(line: str, path: str | os.PathLike[str], line_no: int) -> SFTRecord:
    where = f"{path}, line {line_no}"
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}: not valid JSON ({exc.msg}).") from exc
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected a JSON object. Got {type(obj).__name__}.")
    for field in ("prompt", "completion"):
        if not isinstance(obj.get(field), str):
            raise ValueError(f"{where}: field '{field}' must be a string. Got {obj.get(field)!r}.")
    weight = obj.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not weight >= 0:
        raise ValueError(f"{where}: field 'weight' must be a number >= 0. Got {weight!r}.")
    if not math.isfinite(weight):
        raise ValueError(f"{where}: field 'weight' must be finite. Got {weight!r}.")
    return SFTRecord(obj["prompt"], obj["completion"], float(weight))


# --------------------------------------------------------------------------- model


def load_model(
    path: str | os.PathLike[str],
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer from a local GGUF file or model directory, in fp32.

    A ``.gguf`` file is dequantized by transformers (``gguf_file=``); its quantizer marks are
    then cleared, since the weights are plain fp32 tensors that can be trained and saved. A
    directory is read with ``from_pretrained`` (e.g. one written by :func:`train_sft`). Nothing
    is fetched from a hub. A tokenizer without a pad token pads with its EOS token.

    Raises
    ------
    ValueError
        If ``path`` is neither a ``.gguf`` file nor a directory.
    ImportError
        If the ``train`` extra is not installed.
    """
    source = Path(path)
    kwargs: dict[str, Any] = {"local_files_only": True}
    if source.is_file() and source.suffix.lower() == ".gguf":
        kwargs["gguf_file"] = source.name
        source = source.parent
    elif not source.is_dir():
        raise ValueError(
            f"The model path {str(path)!r} must be a .gguf file or a directory written by "
            "save_pretrained (config.json and safetensors weights)."
        )
    torch, transformers = _require("torch"), _require("transformers")
    tokenizer = transformers.AutoTokenizer.from_pretrained(source, **kwargs)
    model = transformers.AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32, **kwargs)
    if "gguf_file" in kwargs:
        _clear_quantizer(model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def _clear_quantizer(model: PreTrainedModel) -> None:
    """Forget that the weights came from a quantized file: they are dequantized fp32 already,
    and the marks make Trainer refuse to train and ``save_pretrained`` refuse to save."""
    for attr, value in (
        ("hf_quantizer", None),
        ("is_quantized", False),
        ("quantization_method", None),
    ):
        if hasattr(model, attr):
            setattr(model, attr, value)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def _require(name: str) -> Any:
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ImportError(
            f"IBPO training needs {name}: pip install 'computealloc[train]'."
        ) from exc


# --------------------------------------------------------------------------- training


def train_sft(
    records: str | os.PathLike[str] | Sequence[SFTRecord],
    model: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    steps: int,
    batch_size: int = 4,
    learning_rate: float = 5e-5,
    max_length: int = _MAX_LENGTH,
    seed: int = 0,
    check: str | os.PathLike[str] | Sequence[SFTRecord] | None = None,
) -> TrainResult:
    """Fine-tune ``model`` on weighted prompt/completion records and save it to ``out_dir``.

    Records of weight 0 are dropped; the others weight the loss (see the module docstring).
    The loss is on the completion tokens only (TRL's prompt-completion format, EOS appended).
    CPU-safe settings: fp32 (no bf16), no gradient checkpointing (both cost several times the
    step time on CPU), constant learning rate, AdamW, no checkpoints written during training.

    Parameters
    ----------
    records : path-like or sequence of SFTRecord
        A JSONL file (see :func:`read_sft_records`) or the records.
    model : path-like
        A ``.gguf`` file or a model directory (see :func:`load_model`).
    out_dir : path-like
        Where the fine-tuned model and its tokenizer are saved (safetensors).
    steps : int
        Optimizer steps, >= 1 (batches are drawn from the shuffled records, epoch after epoch).
    batch_size : int, default=4
        Records per step.
    learning_rate : float, default=5e-5
        AdamW learning rate, constant.
    max_length : int, default=512
        Tokens kept of each prompt + completion (the start is kept).
    seed : int, default=0
        Seed of the shuffle and of the trainer.
    check : path-like or sequence of SFTRecord, optional
        Held-out records whose :func:`completion_loss` is reported before and after training.

    Returns
    -------
    TrainResult
    """
    where = "train_sft"
    n_steps = _check_positive_int(steps, "steps", where)
    size = _check_positive_int(batch_size, "batch_size", where)
    length = _check_positive_int(max_length, "max_length", where)
    if not (isinstance(learning_rate, float | int) and 0 < learning_rate < math.inf):
        raise ValueError(
            f"The 'learning_rate' parameter of {where} must be a float in (0, inf). "
            f"Got {learning_rate!r} instead."
        )
    rows = _records(records)
    checks = None if check is None else _records(check)
    kept = [r for r in rows if r.weight > 0]
    if not kept:
        raise ValueError(f"{where} needs a record of weight > 0; all {len(rows)} have weight 0.")
    net, tokenizer = load_model(model)
    before = None if checks is None else completion_loss(net, tokenizer, checks)
    trainer = _trainer(net, tokenizer, kept, out_dir, n_steps, size, learning_rate, length, seed)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    after = None if checks is None else completion_loss(net, tokenizer, checks)
    net.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    losses = tuple(float(e["loss"]) for e in trainer.state.log_history if "loss" in e)
    return TrainResult(
        str(out_dir), len(kept), len(rows) - len(kept), n_steps, losses, seconds, before, after
    )


def _records(source: str | os.PathLike[str] | Sequence[SFTRecord]) -> list[SFTRecord]:
    return read_sft_records(source) if isinstance(source, str | os.PathLike) else list(source)


def weighted_sft_trainer(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    records: Sequence[SFTRecord],
    out_dir: str | os.PathLike[str],
    *,
    steps: int,
    batch_size: int = 4,
    learning_rate: float = 5e-5,
    max_length: int = _MAX_LENGTH,
    seed: int = 0,
) -> Any:
    """The TRL trainer :func:`train_sft` runs, for a loaded model (records as given, weight 0
    included). Returns a ``trl.SFTTrainer`` subclass instance."""
    return _trainer(
        model, tokenizer, records, out_dir, steps, batch_size, learning_rate, max_length, seed
    )


def _trainer(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    records: Sequence[SFTRecord],
    out_dir: str | os.PathLike[str],
    steps: int,
    batch_size: int,
    learning_rate: float,
    max_length: int,
    seed: int,
) -> Any:
    datasets, trl = _require("datasets"), _require("trl")
    from computealloc.training._sft_trainer import WeightedCollator, WeightedSFTTrainer

    data = datasets.Dataset.from_list(
        [{"prompt": r.prompt, "completion": r.completion, "weight": r.weight} for r in records]
    )
    config = trl.SFTConfig(
        output_dir=str(out_dir),
        max_steps=steps,
        per_device_train_batch_size=batch_size,
        learning_rate=learning_rate,
        lr_scheduler_type="constant",
        max_length=max_length,
        bf16=False,
        activation_checkpointing=False,
        use_cpu=True,
        save_strategy="no",
        report_to="none",
        logging_steps=1,
        disable_tqdm=True,
        seed=seed,
        data_seed=seed,
    )
    return WeightedSFTTrainer(
        model=model,
        args=config,
        train_dataset=data,
        processing_class=tokenizer,
        data_collator=WeightedCollator(tokenizer.pad_token_id),
    )


def _check_positive_int(value: object, name: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"The '{name}' parameter of {where} must be an int >= 1. Got {value!r} instead."
        )
    return value


# --------------------------------------------------------------------------- evaluation


def completion_loss(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    records: Sequence[SFTRecord],
) -> float:
    """Mean negative log-likelihood per completion token (nats), from the full logits.

    Each record is scored as in training: ``prompt + completion + EOS`` tokenized at once, the
    completion starting where it departs from the tokenized prompt; every completion token of
    every record counts once (weights are ignored). Computed in plain PyTorch, independently of
    TRL's fused head.
    """
    torch = _require("torch")
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for r in records:
            ids, start = _completion_ids(tokenizer, r)
            logits = model(input_ids=torch.tensor([ids])).logits[0, :-1].float()
            logp = torch.log_softmax(logits, dim=-1)
            targets = torch.tensor(ids[1:])
            token_logp = logp.gather(1, targets[:, None])[:, 0][start - 1 :]
            total -= float(token_logp.sum())
            count += int(token_logp.numel())
    return total / count


def _completion_ids(tokenizer: PreTrainedTokenizerBase, record: SFTRecord) -> tuple[list[int], int]:
    """Token ids of prompt + completion + EOS, and the index of the first completion token."""
    eos = tokenizer.eos_token
    text = record.completion if record.completion.endswith(eos) else record.completion + eos
    ids = list(tokenizer(record.prompt + text)["input_ids"])
    prompt = list(tokenizer(record.prompt)["input_ids"])
    start = next((i for i, (a, b) in enumerate(zip(prompt, ids, strict=False)) if a != b), None)
    return ids, max(1, len(prompt) if start is None else start)
