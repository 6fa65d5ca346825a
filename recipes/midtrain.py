"""Mixed-context-window midtraining; the same `main` as ``hf-longrope2 midtrain``.

```bash
accelerate launch recipes/midtrain.py --config recipes/tiny/midtrain.yaml                 # CPU, minutes
ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 recipes/midtrain.py \\
    --config recipes/tiny/midtrain.yaml --max_steps 4 --output_dir out                      # 2 CPU processes
accelerate launch --config_file recipes/accelerate_configs/fsdp2.yaml recipes/midtrain.py \\
    --config recipes/llama3-8b-128k/midtrain.yaml                                           # the paper's setting
```
"""

import sys

from hf_longrope2.cli import main

if __name__ == "__main__":
    sys.exit(main(["midtrain", *sys.argv[1:]]))
