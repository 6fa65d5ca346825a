"""``hf-longrope2 midtrain``: mixed-context-window midtraining of an extended model (paper section 5).

```bash
accelerate launch recipes/midtrain.py --config recipes/tiny/midtrain.yaml             # CPU, minutes
accelerate launch --config_file recipes/accelerate_configs/fsdp2.yaml recipes/midtrain.py \\
    --config recipes/llama3-8b-128k/midtrain.yaml --max_steps 10                       # flags override the YAML
hf-longrope2 midtrain --help
```

YAML keys and flags are TRL / transformers names plus the LongRoPE2 fields (see
[`hf_longrope2.midtrain.config`]); TRL's own parser builds the flags, and [`parse_dataclasses`] reads the YAML
through them, so YAML values are type-checked exactly as flags are.
"""

from __future__ import annotations

from collections.abc import Sequence

from trl import TrlParser

from ..midtrain import MidtrainConfig, run
from ..utils.arguments import parse_dataclasses
from . import epilog


def make_parser() -> TrlParser:
    return MidtrainConfig.argument_parser(epilog("midtraining"))


def parse_args(argv: Sequence[str]) -> tuple:
    """(script arguments, `LongRoPE2SFTConfig`, TRL `ModelConfig`) from flags and ``--config x.yaml``."""
    return parse_dataclasses(MidtrainConfig.CLASSES, argv, parser=make_parser())


def main(argv: Sequence[str]) -> int:
    run(MidtrainConfig(*parse_args(argv)))
    return 0
