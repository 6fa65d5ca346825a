"""Needle-driven LongRoPE2 factor search; the same `main` as ``hf-longrope2 search``.

```bash
accelerate launch recipes/search.py --model HuggingFaceTB/SmolLM2-135M --target-length 32768 --output-dir out
accelerate launch recipes/search.py --config recipes/smollm2-135m-32k/search.yaml   # flags override the YAML
hf-longrope2 search --help                                                       # every option
```
"""

import sys

from hf_longrope2.cli import main

if __name__ == "__main__":
    sys.exit(main(["search", *sys.argv[1:]]))
