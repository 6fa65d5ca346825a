"""Mixed-context-window midtraining: thin `Trainer` / TRL `SFTTrainer` subclasses (paper section 5).

```python
>>> from hf_longrope2.midtrain.config import LongRoPE2SFTConfig
>>> from hf_longrope2.midtrain.trainer import LongRoPE2SFTTrainer
>>> args = LongRoPE2SFTConfig(output_dir="out", target_length=131072, max_steps=1000, learning_rate=2e-5)
>>> trainer = LongRoPE2SFTTrainer(model=model, args=args, train_dataset=rows, processing_class=tokenizer)
>>> trainer.train()            # logs loss_short / loss_long beside the usual loss
```

Both trainers take rows from [`hf_longrope2.data.packing.build_mixed_dataset`] (``input_ids``, ``labels``,
``seq_lengths``): TRL's padding-free collator flattens a batch into one row whose ``position_ids`` restart
per document, with no attention mask and with ``cu_seq_lens`` for flash-attention varlen, so the model's
per-document window applies: short documents get the original RoPE and document masking, long segments
the rescaled RoPE. The loss goes through TRL's fused, tiled LM head (never a [tokens x vocabulary] logits
tensor) and is logged per window. Everything else is the parent trainer's: checkpoints and resume,
``report_to``, ``push_to_hub``, PEFT.
"""

from __future__ import annotations

import torch
from transformers import Trainer
from trl import SFTTrainer
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling
from trl.trainer.utils import add_fused_lm_head

from ..modeling.rope import ROPE_TYPE, RopeGeometry
from ..modeling.rotary import set_sequence_shard
from ..modeling.windows import SequenceShard, long_window_mask
from .config import LongRoPE2SFTConfig, LongRoPE2TrainingArguments

ROW_COLUMNS = ("input_ids", "labels", "seq_lengths")


def longrope2_window(model) -> int:
    """The pre-training window of a longrope2 model (its long/short boundary)."""
    geometry = RopeGeometry.from_config(model.config)
    if geometry.rope_type != ROPE_TYPE:
        raise ValueError(
            f"midtraining needs a longrope2 model (rope_type {ROPE_TYPE!r}); this one has "
            f"{geometry.rope_type!r}. Start from a `hf-longrope2 search` folder or pass factors_file"
        )
    return geometry.original_window


class WindowLossMixin:
    """Padding-free collation, the fused LM-head loss, and per-window loss logging, shared by both trainers."""

    def _setup_windows(self, kinds: list[str] | None) -> None:
        model = self.accelerator.unwrap_model(self.model)
        self._window = longrope2_window(model)
        self._window_sums = torch.zeros(4, dtype=torch.float64)  # short nll, short tokens, long nll, long tokens
        pc = getattr(self.accelerator, "parallelism_config", None)
        if pc is not None and pc.cp_enabled:
            self._setup_context_parallel(model, pc, kinds)

    def _setup_context_parallel(self, model, pc, kinds: list[str] | None) -> None:
        """Context parallelism: long rows only, and the window decided over the whole row (not the local shard).

        accelerate's CP drops the attention mask for full causal attention, so short rows, whose documents must
        not see each other, cannot be trained under it: they are refused. Each rank holds a load-balanced shard
        of the row; `set_sequence_shard` makes the rotary gather the row's positions before deciding.
        """
        if kinds is None or any(k != "long-single" for k in kinds):
            count = "an unknown number of" if kinds is None else str(sum(k != "long-single" for k in kinds))
            raise ValueError(
                f"context parallelism (cp_size={pc.cp_size}) drops the document mask, and the training data has "
                f"{count} rows that hold several documents or padding and need it (short rows, packed long "
                "remainders). Use long rows only for the CP run (short_fraction: 0 and documents cut into whole "
                "target_length pieces) and train the rest in a separate run without context parallelism"
            )
        if self.args.per_device_train_batch_size != 1:
            raise ValueError(
                "context parallelism attends causally over the whole flattened batch: set "
                f"per_device_train_batch_size: 1 (got {self.args.per_device_train_batch_size}) so a row is one document"
            )
        mesh = self.accelerator.torch_device_mesh["cp"]
        set_sequence_shard(
            model,
            SequenceShard(rank=mesh.get_local_rank(), world_size=pc.cp_size, layout="load_balanced",
                          group=mesh.get_group()),
        )

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = {k: v for k, v in inputs.items() if k != "seq_idx"}  # only linear-attention layers use it
        inputs["use_cache"] = False  # a cache object disables packed-document masking in SDPA/eager
        outputs = model(**inputs, fused_lm_head=True, num_items_in_batch=num_items_in_batch)
        loss = outputs.loss
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes  # like Trainer: DDP averages gradients across ranks
        with torch.no_grad():
            is_long = long_window_mask(inputs["position_ids"], self._window)[:, 1:]
            scored = outputs.label_mask
            nll = -outputs.log_probs.detach().double()
            sums = torch.stack(
                [
                    (nll * (scored & ~is_long)).sum(),
                    (scored & ~is_long).sum().double(),
                    (nll * (scored & is_long)).sum(),
                    (scored & is_long).sum().double(),
                ]
            )
            self._window_sums += sums.cpu()
            if isinstance(self, SFTTrainer) and outputs.entropy is not None:  # TRL's own token metrics
                mode = "train" if self.model.training else "eval"
                valid = self.accelerator.gather_for_metrics(scored.sum()).sum()
                entropy = self.accelerator.gather_for_metrics(outputs.entropy.sum()).sum()
                correct = self.accelerator.gather_for_metrics(outputs.is_top1.sum()).sum()
                self._metrics[mode]["entropy"].append(float(entropy / valid) if valid > 0 else 0.0)
                self._metrics[mode]["mean_token_accuracy"].append(float(correct / valid) if valid > 0 else 0.0)
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        if self._window_sums[1] + self._window_sums[3] > 0:
            totals = self.accelerator.reduce(self._window_sums.to(self.accelerator.device), reduction="sum").cpu()
            prefix = "" if self.model.training else "eval_"
            if totals[1] > 0:
                logs[f"{prefix}loss_short"] = float(totals[0] / totals[1])
            if totals[3] > 0:
                logs[f"{prefix}loss_long"] = float(totals[2] / totals[3])
            logs[f"{prefix}tokens_short"] = int(totals[1])
            logs[f"{prefix}tokens_long"] = int(totals[3])
            self._window_sums.zero_()
        super().log(logs, *args, **kwargs)


def _kinds(dataset) -> list[str] | None:
    """Row kinds, with ``long-single`` for long rows of one segment (the only rows context parallelism can train)."""
    if dataset is None or not {"kind", "seq_lengths"} <= set(getattr(dataset, "column_names", ())):
        return None
    return [k if not (k == "long" and len(s) == 1) else "long-single" for k, s in
            zip(dataset["kind"], dataset["seq_lengths"], strict=True)]


def _keep_row_columns(dataset):
    if dataset is None or not hasattr(dataset, "column_names"):
        return dataset
    missing = [c for c in ROW_COLUMNS if c not in dataset.column_names]
    if missing:
        raise ValueError(
            f"training rows need the columns {list(ROW_COLUMNS)} (from hf_longrope2.data.packing.build_mixed_dataset); "
            f"missing {missing}, found {dataset.column_names}"
        )
    return dataset.select_columns(list(ROW_COLUMNS))


class LongRoPE2Trainer(WindowLossMixin, Trainer):
    """`transformers.Trainer` for mixed-window rows; see the module docstring."""

    def __init__(self, model=None, args: LongRoPE2TrainingArguments | None = None, data_collator=None,
                 train_dataset=None, eval_dataset=None, processing_class=None, **kwargs):
        pad = getattr(processing_class, "pad_token_id", None) or 0
        if data_collator is None:
            data_collator = DataCollatorForLanguageModeling(pad_token_id=pad, padding_free=True)
        add_fused_lm_head(model.get_base_model() if hasattr(model, "get_base_model") else model)
        super().__init__(
            model=model,
            args=args,
            data_collator=data_collator,
            train_dataset=_keep_row_columns(train_dataset),
            eval_dataset=_keep_row_columns(eval_dataset),
            processing_class=processing_class,
            **kwargs,
        )
        self._setup_windows(_kinds(train_dataset))


class LongRoPE2SFTTrainer(WindowLossMixin, SFTTrainer):
    """TRL `SFTTrainer` for mixed-window rows (PEFT via ``peft_config``); see the module docstring."""

    def __init__(self, model=None, args: LongRoPE2SFTConfig | None = None, train_dataset=None, eval_dataset=None,
                 **kwargs):
        super().__init__(
            model=model,
            args=args,
            train_dataset=_keep_row_columns(train_dataset),
            eval_dataset=_keep_row_columns(eval_dataset),
            **kwargs,
        )
        self._setup_windows(_kinds(train_dataset))
