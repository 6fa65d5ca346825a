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

import argparse
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from transformers import TrainingArguments
from trl import ModelConfig, SFTConfig, TrlParser

from ..utils.arguments import (
    HelpFormatter,
    MetadataChoices,
    check_choices,
    check_token_count,
    parse_dataclasses,
    tidy_help,
)

TRAINERS = ("sft", "trainer")
TINY = "builtin:tiny-llama"


@dataclass
class MidtrainScriptArguments:
    trainer: str = field(
        default="sft", metadata={"help": "LongRoPE2SFTTrainer (TRL) or LongRoPE2Trainer", "choices": TRAINERS}
    )
    tiny_window: int = field(default=128, metadata={"help": f"Original window of {TINY} (offline test model)"})
    overwrite: bool = field(
        default=False,
        metadata={"help": "Replace a non-empty output_dir (and start its OUTPUT.checkpoints folder over)"},
    )

    def __post_init__(self) -> None:
        check_choices(self)


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

    padding_free: bool = field(
        default=True, metadata={"help": "Must stay on (rows are flattened, no attention mask); false is refused"}
    )
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
        return MidtrainParser(cls.CLASSES, prog="hf-longrope2 midtrain", epilog=epilog, formatter_class=HelpFormatter)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> MidtrainConfig:
        """The config of a recipe given as one flat mapping (the keys of a midtraining YAML file), converted and
        checked exactly as the same keys in a ``--config`` file are.

        Raises:
            ValueError: a key that none of the three dataclasses has, or a value its field cannot take.
        """
        return cls(*parse_dataclasses(cls.CLASSES, [], parser=cls.argument_parser(), values=values))


# what ``midtrain --help`` shows: our own fields, then the TrainingArguments / ModelConfig flags a run usually sets
OWN_FIELDS = tuple(f.name for cls in (MidtrainScriptArguments, LongRoPE2Fields) for f in fields(cls))
COMMON_FIELDS = ("model_name_or_path", "output_dir", "max_steps", "learning_rate", "per_device_train_batch_size",
                 "gradient_accumulation_steps", "save_steps", "seed", "bf16", "resume_from_checkpoint", "use_peft")


class _HelpAll(argparse.Action):
    def __init__(self, option_strings, dest, **kwargs) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="Show every flag (TrainingArguments, TRL's SFTConfig and ModelConfig) and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        parser._print_message(parser.format_help_all(), sys.stdout)
        parser.exit()


class MidtrainParser(MetadataChoices, TrlParser):
    """TRL's parser whose ``--help`` shows our flags and the common training ones; ``--help-all`` shows all ~300."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.add_argument("--help-all", "--help_all", action=_HelpAll)
        for action in self._actions:
            if action.dest == "padding_free" and action.option_strings[0].startswith("--no_"):
                action.help = argparse.SUPPRESS  # refused by LongRoPE2SFTConfig; --padding_free's text says so
            if action.dest == "resume_from_checkpoint":  # TRL's text says Trainer does not use it; our runner does
                action.help = "A checkpoint folder to continue from, or true: the last one in OUTPUT.checkpoints"
        tidy_help(self)

    def _shown(self, names: tuple[str, ...]) -> list[argparse.Action]:
        by_dest = {a.dest: a for a in self._actions if a.help is not argparse.SUPPRESS
                   and not a.option_strings[0].startswith("--no_")}
        return [by_dest[name] for name in names if name in by_dest]

    def format_usage(self) -> str:
        return f"usage: {self.prog} [--config YAML] [options]   (--help: the usual ones, --help-all: every flag)\n"

    def format_help(self) -> str:
        formatter = self._get_formatter()
        formatter.add_usage(f"{self.prog} [--config YAML] [options]", [], [])
        own, common = self._shown(OWN_FIELDS), self._shown(COMMON_FIELDS)
        for title, actions in (("midtraining options (hf-longrope2)", own),
                               ("common training options (TRL / transformers)", common),
                               ("other", self._shown(("config", "help", "help_all")))):
            formatter.start_section(title)
            formatter.add_arguments(actions)
            formatter.end_section()
        rest = sum(1 for a in self._actions if a.option_strings and a.help is not argparse.SUPPRESS
                   and a not in own + common and a.dest not in ("config", "help", "help_all"))
        formatter.add_text(f"{rest} more flags of transformers' TrainingArguments, TRL's SFTConfig and ModelConfig "
                           f"(all accepted here and as --config keys): {self.prog} --help-all")
        formatter.add_text(self.epilog)
        return formatter.format_help()

    def format_help_all(self) -> str:
        return super().format_help()
