"""Long-context evaluation of several models side by side; the same `main` as ``hf-longrope2 eval``.

```bash
python recipes/evaluate.py --model base --model extended --lengths 8192 16384 32768 --output-dir report
python recipes/evaluate.py --config recipes/smollm2-135m-32k/evaluate.yaml      # flags override the YAML
hf-longrope2 eval --help                                                        # every option
```
"""

import sys

from hf_longrope2.cli import main

if __name__ == "__main__":
    sys.exit(main(["eval", *sys.argv[1:]]))
