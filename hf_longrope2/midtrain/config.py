"""Settings of ``hf-longrope2 midtrain``: TRL's configs plus the LongRoPE2 fields, and the script's own.

```python
>>> from hf_longrope2.midtrain import MidtrainConfig, run
>>> config = MidtrainConfig.from_dict(yaml.safe_load(open("recipes/tiny/midtrain.yaml")))
>>> run(config)
```

YAML keys and flags are TRL / transformers names (``model_name_or_path``, ``output_dir``, ``max_steps``,
``learning_rate``, ``use_peft``, ``lora_r``, ...) plus the LongRoPE2 fields of [`LongRoPE2Fields`]
(``target_length``, ``mixture``, ``short_fraction``, ``factors_file``) and the script's
[`MidtrainScriptArguments`] (``trainer``, ``tiny_window``, ``overwrite``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from transformers import TrainingArguments
from trl import ModelConfig, SFTConfig, TrlParser

from ..utils.arguments import check_token_count, parse_dataclasses

TRAINERS = ("sft", "trainer")
TINY = "builtin:tiny-llama"


@dataclass
class MidtrainScriptArguments:
    trainer: str = field(
        default="sft", metadata={"help": f"One of {TRAINERS}: LongRoPE2SFTTrainer (TRL) or LongRoPE2Trainer"}
    )
    tiny_window: int = field(default=128, metadata={"help": f"Original window of {TINY} (offline test model)"})
    overwrite: bool = field(
        default=False,
        metadata={"help": "Replace a non-empty output_dir (and start its OUTPUT.checkpoints folder over)"},
    )

    def __post_init__(self) -> None:
        if self.trainer not in TRAINERS:
            raise ValueError(f"--trainer must be one of {TRAINERS}, got {self.trainer!r}")


@dataclass
class LongRoPE2Fields:
    """The midtraining settings that neither `TrainingArguments` nor `SFTConfig` has."""

    target_length: int = field(default=0, metadata={"help": "Row length in tokens: the extended window (required)"})
    mixture: str | None = field(
        default=None,
        metadata={
            "help": "YAML file listing data sources (dataset, weight, split, text_column, tokenized, ...); see "
            "hf_longrope2.data.mixture.SourceSpec"
        },
    )
    short_fraction: float | None = field(
        default=None,
        metadata={"help": "Fraction of training tokens from short-window rows (paper: about 0.1); default: as packed"},
    )
    factors_file: str | None = field(
        default=None,
        metadata={"help": "JSON with 'long_factor' (e.g. a search_log.json) to extend a base model before training"},
    )
    dataset_num_proc: int | None = field(default=None, metadata={"help": "Processes for tokenisation (datasets.map)"})
    max_document_tokens: int | None = field(
        default=None, metadata={"help": "Truncate longer documents (reported); default: no limit"}
    )

    def check_midtraining_fields(self) -> None:
        check_token_count("target_length", self.target_length)
        if self.short_fraction is not None and not 0.0 <= self.short_fraction <= 1.0:
            raise ValueError(f"short_fraction must be in [0, 1], got {self.short_fraction}")
        # no step would run, yet the folder would be saved and carded as midtrained
        if self.max_steps == 0 or (self.max_steps < 0 and self.num_train_epochs <= 0):
            raise ValueError(f"--max_steps {self.max_steps} with --num_train_epochs {self.num_train_epochs} trains no "
                             "step: pass --max_steps > 0, or -1 (the default) with --num_train_epochs > 0")


@dataclass
class LongRoPE2TrainingArguments(LongRoPE2Fields, TrainingArguments):
    """`transformers.TrainingArguments` plus [`LongRoPE2Fields`]."""

    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep 'seq_lengths' for the collator"})

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_midtraining_fields()


@dataclass
class LongRoPE2SFTConfig(LongRoPE2Fields, SFTConfig):
    """TRL `SFTConfig` plus [`LongRoPE2Fields`]; rows arrive packed, so TRL's own preparation is skipped."""

    padding_free: bool = field(default=True, metadata={"help": "Always on: rows are flattened, no attention mask"})
    max_length: int | None = field(default=None, metadata={"help": "Unused: rows are exactly target_length tokens"})

    def __post_init__(self) -> None:
        self.dataset_kwargs = {**(self.dataset_kwargs or {}), "skip_prepare_dataset": True}
        super().__post_init__()
        self.check_midtraining_fields()
        if not self.padding_free:
            raise ValueError("padding_free must stay True: per-document windows need padding-free rows")


@dataclass
class MidtrainConfig:
    """Everything a midtraining run needs: the script's settings, the training arguments, the model to load."""

    script: MidtrainScriptArguments
    training: LongRoPE2SFTConfig
    model: ModelConfig

    CLASSES: ClassVar[tuple] = (MidtrainScriptArguments, LongRoPE2SFTConfig, ModelConfig)

    @classmethod
    def argument_parser(cls, epilog: str | None = None) -> TrlParser:
        """TRL's parser of the three dataclasses (what ``hf-longrope2 midtrain`` parses flags and YAML with)."""
        return TrlParser(cls.CLASSES, prog="hf-longrope2 midtrain", epilog=epilog)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> MidtrainConfig:
        """The config of a recipe given as one flat mapping (the keys of a midtraining YAML file), converted and
        checked exactly as the same keys in a ``--config`` file are.

        Raises:
            ValueError: a key that none of the three dataclasses has, or a value its field cannot take.
        """
        return cls(*parse_dataclasses(cls.CLASSES, [], parser=cls.argument_parser(), values=values))
