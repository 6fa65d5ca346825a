"""``hf-longrope2 midtrain``: mixed-context-window midtraining of an extended model (paper section 5).

```bash
accelerate launch recipes/midtrain.py --config recipes/tiny/midtrain.yaml             # CPU, minutes
accelerate launch --config_file recipes/accelerate_configs/fsdp2.yaml recipes/midtrain.py \\
    --config recipes/llama3-8b-128k/midtrain.yaml --max_steps 10                       # flags override the YAML
hf-longrope2 midtrain --help
```

- ``config.py``: [`MidtrainConfig`]: TRL's `SFTConfig` / transformers' `TrainingArguments` plus the LongRoPE2
  fields, TRL's `ModelConfig`, and the script's own settings;
- ``trainer.py``: thin `Trainer` / `SFTTrainer` subclasses that log the loss per window;
- ``runner.py``: [`run`]: the model, the packed rows ([`hf_longrope2.data.packing`]), training, the folder.
"""

from .config import MidtrainConfig
from .runner import run

__all__ = ["MidtrainConfig", "run"]
