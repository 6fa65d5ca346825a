"""The ``hf-longrope2`` command line: one verb per pipeline stage, one module per verb.

```
hf-longrope2 env                                   # versions and supported architectures
hf-longrope2 factors --model DIR --method yarn --target-length 32768
hf-longrope2 extend --model DIR --method yarn --target-length 32768 --output-dir OUT
hf-longrope2 export-serving --model OUT --output-dir OUT-serving
hf-longrope2 search --model DIR --target-length 32768 --output-dir OUT   # LongRoPE2 factor search
hf-longrope2 midtrain --config recipes/tiny/midtrain.yaml                 # mixed-window midtraining
hf-longrope2 check                                 # end-to-end self-check on tiny random models
```

[`COMMANDS`] maps each verb to its module here (``hf_longrope2.cli.<module>``), which has ``make_parser()``,
``parse_args(argv)`` (the verb's configs, validated, nothing run) and ``main(argv)``. Every verb parses
dataclasses with [`hf_longrope2.utils.arguments.parse_dataclasses`] (``--help`` shows every field's help
string) and accepts ``--config x.yaml`` for defaults that flags override. Verb modules are imported only when
their verb runs, so ``hf-longrope2 env`` does not pay for TRL or datasets. Nothing in the package imports this
package; recipes/*.py call [`main`] (and ``recipes/pretrain_tiny.py``, a recipe but no verb, its own
``pretrain_tiny.main``).
"""

from __future__ import annotations

import importlib
import os
import shlex
import sys
from collections.abc import Sequence
from types import ModuleType

import yaml

from ..utils.arguments import read_yaml, split_config
from ..utils.run_folder import RunFolder

#: verb -> (module under hf_longrope2.cli, one line of help)
COMMANDS: dict[str, tuple[str, str]] = {
    "env": ("env", "print versions and the supported architectures"),
    "factors": ("factors", "print a PI / NTK / YaRN factor vector and the critical dimensions"),
    "extend": ("extend", "extend a model with a factor vector and save a loadable folder"),
    "export-serving": ("export_serving", "export a longrope2 folder in the built-in 'longrope' format (vLLM)"),
    "export-gguf": ("export_gguf", "write a longrope2 Llama as a GGUF file llama.cpp runs at the extended length"),
    "search": ("search", "needle-driven evolutionary search of LongRoPE2 factors -> an extended model folder"),
    "midtrain": ("midtrain", "mixed-context-window midtraining (Trainer / TRL SFTTrainer) -> an extended model"),
    "eval": ("evaluate", "needle-in-a-haystack grid, perplexity vs length, short-window retention -> report + PNGs"),
    "push": ("push", "validate an extended model folder and upload it to the Hub (--dry-run lists the files)"),
    "convert-gguf": ("convert_gguf", "turn a local GGUF file into a regular HF folder (safetensors, tokenizer)"),
    "demo": ("demo", "the whole method on the embedded tiny base (search, midtrain, eval) on a CPU in minutes"),
    "check": ("check", "end-to-end self-check of the rope type on tiny random models of every architecture"),
}


def verb(name: str) -> ModuleType:
    """The module of verb `name` (imported on first use: start-up stays fast for the light verbs)."""
    return importlib.import_module(f"{__name__}.{COMMANDS[name][0]}")


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [
        "usage: hf-longrope2 [--debug] <command> [options]   (hf-longrope2 <command> --help for its options)",
        "",
        "commands:",
    ]
    lines += [f"  {name.ljust(width)}  {text}" for name, (_, text) in COMMANDS.items()]
    return "\n".join(lines)


DEBUG_ENV = "HF_LONGROPE2_DEBUG"
# failures a user can fix from the message: bad values, files, folders, permissions, network, YAML, missing extras
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, yaml.YAMLError, ModuleNotFoundError)


def _flag_value(argv: Sequence[str], name: str) -> str | None:
    """The value of ``--name`` / ``--name-with-dashes`` in `argv` (last one wins), or of `name` in its --config."""
    flags = {f"--{name}", f"--{name.replace('_', '-')}"}
    value = None
    items = list(argv)
    for i, item in enumerate(items):
        if item in flags and i + 1 < len(items):
            value = items[i + 1]
        elif "=" in item and item.split("=", 1)[0] in flags:
            value = item.split("=", 1)[1]
    if value is None:
        config, _ = split_config(argv)
        if config:
            try:
                value = read_yaml(config).get(name)
            except ValueError:
                return None
    return None if value is None else str(value)


def interrupted_hint(name: str, argv: Sequence[str]) -> str:
    """What an interrupted `name` run kept, and the command that continues it."""
    out = _flag_value(argv, "output_dir")
    if name == "demo":
        again = "hf-longrope2 " + " ".join(shlex.quote(a) for a in [name, *argv] if a != "--overwrite")
        resume = "" if "--resume" in argv else " --resume"
        return f"finished stages in {out or 'longrope2-demo'} are kept; continue with: {again}{resume}"
    stage = {"search": "search", "eval": "eval", "midtrain": "midtrain"}.get(name)
    hint = RunFolder(out, stage).resume_hint([name, *argv]) if stage and out else None
    if hint:
        return hint
    if name == "midtrain" and out:
        return f"no checkpoint had been saved (see save_steps) and {out} was not written"
    return "nothing was written (outputs appear only once complete)"


def run_command(name: str, argv: Sequence[str], debug: bool = False) -> int:
    """Run verb `name`: expected failures exit 2 with one line, Ctrl-C 130 with what was kept (`debug`: raise)."""
    debug = debug or os.environ.get(DEBUG_ENV, "").lower() in ("1", "true", "yes")
    try:
        return verb(name).main(argv)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"\nhf-longrope2 {name}: interrupted; {interrupted_hint(name, argv)}", file=sys.stderr)
        return 130
    except EXPECTED_ERRORS as exc:
        if debug:
            raise
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"hf-longrope2 {name}: error: {message} (traceback: hf-longrope2 --debug {name} ...)", file=sys.stderr)
        return 2


def main(argv: Sequence[str] | None = None) -> int:
    """``hf-longrope2 [--debug] <verb> [options]`` (`argv` default: ``sys.argv[1:]``); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = False
    while argv and argv[0] == "--debug":
        debug, argv = True, argv[1:]
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"hf-longrope2: unknown command {name!r}; choose one of: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    return run_command(name, rest, debug)




def epilog(page: str) -> str:
    """The ``--help`` epilog of a verb: where its documentation page is."""
    return f"Documentation: docs/{page}.md in the hf-longrope2 repository (README.md links every page)."
