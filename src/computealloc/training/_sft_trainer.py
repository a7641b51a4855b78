"""TRL pieces of :mod:`computealloc.training.ibpo_train`: a weight-passing collator and a trainer
whose
loss weights every sequence. Imports torch and trl; only :mod:`computealloc.training.ibpo_train`
imports this module, and only when it trains."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from trl import SFTTrainer
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling


class WeightedCollator:
    """TRL's padding collator plus a ``weight`` tensor of shape (batch,), float32.

    Parameters
    ----------
    pad_token_id : int
        Token that pads ``input_ids`` (labels are padded with -100).
    """

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        base = DataCollatorForLanguageModeling(pad_token_id=self.pad_token_id)
        batch: dict[str, Any] = base([dict(example) for example in examples])
        batch["weight"] = torch.tensor(
            [float(example.get("weight", 1.0)) for example in examples], dtype=torch.float32
        )
        return batch


class WeightedSFTTrainer(SFTTrainer):
    """``SFTTrainer`` whose loss weights each sequence by its record's ``weight``.

    ``loss = sum_i w_i sum_t -log p_it / T`` over the completion tokens of the batch, ``T``
    their count (or TRL's ``num_items_in_batch`` under gradient accumulation). With every
    weight 1 it is TRL's own loss. The per-token log-probabilities come from TRL's fused LM
    head, which has shape (batch, seq_len - 1), so padding-free batches (one flattened row) are
    refused.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.args.padding_free or self.args.packing:
            raise ValueError(
                "WeightedSFTTrainer needs one sequence per row: set padding_free=False and "
                "packing=False in SFTConfig."
            )

    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()
        columns: list[str] = list(getattr(self, "_signature_columns", None) or [])
        if "weight" not in columns:
            self._signature_columns = [*columns, "weight"]

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        weight = inputs.pop("weight")
        outputs = model(**inputs, use_cache=False, fused_lm_head=True)
        per_token = -outputs.log_probs * weight.to(outputs.log_probs)[:, None]
        tokens = outputs.label_mask.sum() if num_items_in_batch is None else num_items_in_batch
        loss = per_token.sum() / torch.as_tensor(tokens).clamp(min=1)
        return (loss, outputs) if return_outputs else loss
