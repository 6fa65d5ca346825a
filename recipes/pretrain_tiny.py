"""Pretrain the embedded tiny base model (hf_longrope2/tiny/tiny_base) on an offline corpus, reproducibly from a seed.

```bash
python recipes/pretrain_tiny.py --output-dir tiny-base                  # the shipped model: see its README.md
python recipes/pretrain_tiny.py --output-dir tiny-base --resume         # continue an interrupted run
python recipes/pretrain_tiny.py --output-dir /tmp/t --max-steps 10      # smoke run
python recipes/pretrain_tiny.py --help                                  # every option
```

The training, the quality gate and the model card are [`hf_longrope2.pretrain_tiny`]; the parser is
[`hf_longrope2.cli.VERBS`]'s ``pretrain-tiny`` entry.
"""

import sys

from hf_longrope2 import cli


def make_parser():
    """The parser behind ``--help`` (the tests read it)."""
    return cli.make_parser("pretrain-tiny")


def main(argv: list[str]) -> int:
    """Parse `argv` and pretrain; errors propagate with their traceback (a recipe, not the command line)."""
    return cli.run_verb("pretrain-tiny", argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
