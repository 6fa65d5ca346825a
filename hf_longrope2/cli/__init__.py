"""The ``hf-longrope2`` command line: one table of verbs, one parser, one error path.

```
hf-longrope2 env                                   # versions and supported architectures
hf-longrope2 factors --model DIR --method yarn --target-length 32768
hf-longrope2 extend --model DIR --method yarn --target-length 32768 --output-dir OUT
hf-longrope2 export-serving --model OUT --output-dir OUT-serving
hf-longrope2 search --model DIR --target-length 32768 --output-dir OUT   # LongRoPE2 factor search
hf-longrope2 midtrain --config recipes/tiny/midtrain.yaml                 # mixed-window midtraining
hf-longrope2 check                                 # end-to-end self-check on tiny random models
```

[`VERBS`] maps each verb to a [`Verb`]: its config dataclass, the function that runs it (and prints what it did),
its docs page and one line of help. [`make_parser`], [`parse_args`] and [`main`] serve every verb: flags come from
the dataclass fields (``--help`` shows every field's help string) and ``--config x.yaml`` gives defaults that flags
override. Config classes and run functions are imported only when their verb runs, so ``hf-longrope2 env`` does not
pay for TRL or datasets. Nothing in the package imports this package; recipes/*.py call [`main`].
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import shlex
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from ..utils.arguments import Parser, flag_name, parse_dataclasses, read_yaml, split_config
from ..utils.arguments import make_parser as make_dataclass_parser
from ..utils.atomic import check_output_apart_from_inputs
from ..utils.environment import __version__
from ..utils.output_lock import lock_outputs
from ..utils.run_folder import RunFolder


def _load(path: str) -> Any:
    module, name = path.split(":")
    return getattr(importlib.import_module(f"hf_longrope2.{module}"), name)


@dataclass(frozen=True)
class Verb:
    """One ``hf-longrope2`` verb; `config_cls` and `run` are ``"module:name"`` under ``hf_longrope2``, imported on use.

    `run` takes the parsed config and returns an exit status (an `int`) or anything else for 0. `argv` rewrites the
    arguments before parsing (positionals, repeated flags); `stage` names its [`RunFolder`] for the resume hint.
    """

    config_cls: str
    run: str
    doc: str
    help: str
    argv: str | None = None
    stage: str | None = None
    prog: str | None = None
    listed: bool = True

    def load_config_cls(self) -> type:
        return _load(self.config_cls)

    def load_run(self) -> Callable[[Any], Any]:
        return _load(self.run)


VERBS: dict[str, Verb] = {
    "env": Verb("utils.environment:EnvArguments", "utils.environment:print_environment", "extension",
                "print versions and the supported architectures"),
    "factors": Verb("factors:FactorsArguments", "factors:print_factors", "extension",
                    "print a PI / NTK / YaRN factor vector and the critical dimensions"),
    "extend": Verb("extension:ExtendArguments", "publish.cards:run_extend_with_card", "extension",
                   "extend a model with a factor vector and save a loadable folder"),
    "export-serving": Verb("extension:ExportServingArguments", "publish.cards:run_export_serving", "serving",
                           "export a longrope2 folder in the built-in 'longrope' format (vLLM)"),
    "export-gguf": Verb("publish.gguf_export:ExportGGUFArguments", "publish.gguf_export:run_export_gguf", "gguf",
                        "write a longrope2 Llama as a GGUF file llama.cpp runs at the extended length"),
    "search": Verb("search:SearchConfig", "search:run", "search",
                   "needle-driven evolutionary search of LongRoPE2 factors -> an extended model folder",
                   stage="search"),
    "midtrain": Verb("midtrain:MidtrainConfig", "midtrain:run", "midtraining",
                     "mixed-context-window midtraining (Trainer / TRL SFTTrainer) -> an extended model",
                     stage="midtrain"),
    "eval": Verb("evaluation:EvalConfig", "evaluation:run", "evaluation",
                 "needle-in-a-haystack grid, perplexity vs length, short-window retention -> report + PNGs",
                 argv="evaluation.config:merge_model_flags", stage="eval"),
    "push": Verb("publish.hub:PushArguments", "publish.hub:run_push", "publishing",
                 "validate an extended model folder and upload it to the Hub (--dry-run lists the files)"),
    "convert-gguf": Verb("publish.gguf_convert:ConvertGGUFArguments", "publish.gguf_convert:run_convert_gguf",
                         "gguf", "turn a local GGUF file into a regular HF folder (safetensors, tokenizer)",
                         argv="publish.gguf_convert:positionals_as_flags"),
    "demo": Verb("demo:DemoConfig", "demo:run", "demo",
                 "the whole method on the embedded tiny base (search, midtrain, eval) on a CPU in minutes"),
    "check": Verb("selfcheck:CheckConfig", "selfcheck:check", "demo",
                  "end-to-end self-check of the rope type on tiny random models of every architecture"),
    # a recipe (recipes/pretrain_tiny.py), not a listed verb
    "pretrain-tiny": Verb("pretrain_tiny:PretrainConfig", "pretrain_tiny:pretrain", "demo",
                          "pretrain the embedded tiny base model on an offline corpus",
                          prog="recipes/pretrain_tiny.py", listed=False),
}


REPOSITORY_LABELS = ("repository", "source", "source code", "homepage")


def repository_url() -> str | None:
    """The repository URL of the installed package's ``[project.urls]`` (Repository, Source or Homepage), or None."""
    try:
        entries = importlib.metadata.metadata("hf-longrope2").get_all("Project-URL") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    urls = {}
    for entry in entries:  # "Label, https://..."
        label, _, url = entry.partition(",")
        urls[label.strip().lower()] = url.strip()
    return next((urls[label] for label in REPOSITORY_LABELS if urls.get(label)), None)


def epilog(page: str) -> str:
    """The ``--help`` epilog of a verb: its documentation page, under the repository URL when the package names one."""
    url = repository_url()
    if url:
        return f"Documentation: {url.rstrip('/')}/blob/main/docs/{page}.md (README.md links every page)."
    return f"Documentation: docs/{page}.md in the hf-longrope2 repository (README.md links every page)."


def make_parser(name: str) -> Parser:
    """The parser of verb `name`: its config's fields as flags plus ``--config YAML`` (TRL's parser for midtrain)."""
    verb = VERBS[name]
    config_cls = verb.load_config_cls()
    if hasattr(config_cls, "argument_parser"):  # several dataclasses parsed by TRL's parser (midtrain)
        return config_cls.argument_parser(epilog(verb.doc))
    return make_dataclass_parser((config_cls,), verb.prog or f"hf-longrope2 {name}", verb.help[:1].upper()
                                 + verb.help[1:] + ".", epilog(verb.doc))


def parse_args(name: str, argv: Sequence[str]) -> Any:
    """The validated config of verb `name` from `argv` (flags and ``--config x.yaml``); nothing runs."""
    verb = VERBS[name]
    config_cls = verb.load_config_cls()
    argv = _load(verb.argv)(argv) if verb.argv else list(argv)
    classes = getattr(config_cls, "CLASSES", (config_cls,))
    parsed = parse_dataclasses(classes, argv, parser=make_parser(name))
    return config_cls(*parsed) if len(classes) > 1 else parsed[0]


# The fields of the verbs' configs that name what a run reads, and what it writes.
INPUT_FIELDS = ("model", "model_name_or_path", "factors_file", "dataset", "ppl_dataset", "mixture", "gguf_file",
                "lm_eval_include_path", "resume_from_checkpoint")
OUTPUT_FIELDS = ("output_dir", "output_file")


def _fields(config: Any, names: Sequence[str]) -> list[tuple[str, str]]:
    """``(flag, value)`` of every field of `config` (or of its parts, for midtrain's) in `names` that holds a path."""
    several = hasattr(config, "CLASSES")  # midtrain: TRL's parser, flags spelt as the fields (--output_dir)
    parts = [getattr(config, f) for f in config.__dataclass_fields__] if several else [config]
    found = []
    for part in parts:
        for key in names:
            values = getattr(part, key, None)
            for value in values if isinstance(values, list | tuple) else [values]:
                if isinstance(value, str | os.PathLike) and str(value):
                    found.append((f"--{key}" if several else flag_name(key), str(value)))
    return found


def check_outputs_apart_from_inputs(config: Any, config_file: str | None = None) -> None:
    """Refuse, before any work, an output of the run that is, contains or sits inside one of its inputs."""
    inputs = _fields(config, INPUT_FIELDS) + ([("--config", config_file)] if config_file else [])
    for output in _fields(config, OUTPUT_FIELDS):
        check_output_apart_from_inputs(output, inputs)


def run_verb(name: str, argv: Sequence[str]) -> int:
    """Parse and run verb `name`; errors propagate (see [`run_command`] for the command line's handling).

    Every output of the run is locked for its duration ([`lock_outputs`]): a second run on the same output is
    refused at once, naming the first one's pid.
    """
    config = parse_args(name, argv)
    check_outputs_apart_from_inputs(config, split_config(argv)[0])
    with lock_outputs(_fields(config, OUTPUT_FIELDS)):
        result = VERBS[name].load_run()(config)
    return result if isinstance(result, int) and not isinstance(result, bool) else 0


def _usage() -> str:
    listed = {name: verb for name, verb in VERBS.items() if verb.listed}
    width = max(map(len, listed))
    lines = [
        "usage: hf-longrope2 [--debug] <command> [options]   (hf-longrope2 <command> --help for its options)",
        "       hf-longrope2 --version",
        "",
        "commands:",
    ]
    lines += [f"  {name.ljust(width)}  {verb.help}" for name, verb in listed.items()]
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
    stage = VERBS[name].stage if name in VERBS else None
    hint = RunFolder(out, stage).resume_hint([name, *argv]) if stage and out else None
    if hint:
        return hint
    if name == "midtrain" and out:
        return f"no checkpoint had been saved (see save_steps) and {out} was not written"
    return "nothing was written (outputs appear only once complete)"


def sigterm_as_ctrl_c() -> None:
    """Make SIGTERM (schedulers, ``timeout``, ``docker stop``) take Ctrl-C's path: the same "kept / continue with"
    line and exit status 130, instead of dying at once with 143 and nothing said."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():  # signal handlers can only be set there
        signal.signal(signal.SIGTERM, interrupt)


def run_command(name: str, argv: Sequence[str], debug: bool = False) -> int:
    """Run verb `name`: expected failures exit 2 with one line, Ctrl-C 130 with what was kept (`debug`: raise)."""
    debug = debug or os.environ.get(DEBUG_ENV, "").lower() in ("1", "true", "yes")
    try:
        return run_verb(name, argv)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"\nhf-longrope2 {name}: interrupted; {interrupted_hint(name, argv)}", file=sys.stderr)
        return 130
    except EXPECTED_ERRORS as exc:
        if debug:
            raise
        # a message the user can act on: no "--debug" hint (unexpected errors keep their traceback, which is the hint)
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"hf-longrope2 {name}: error: {message}", file=sys.stderr)
        return 2


def main(argv: Sequence[str] | None = None) -> int:
    """``hf-longrope2 [--debug] <verb> [options]`` (`argv` default: ``sys.argv[1:]``); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = False
    while argv and argv[0] == "--debug":
        debug, argv = True, argv[1:]
    if argv and argv[0] in ("-V", "--version"):
        print(f"hf-longrope2 {__version__}")
        return 0
    if not argv:  # a usage error: the list of commands on stderr, status 2
        print(_usage(), file=sys.stderr)
        return 2
    if argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in VERBS or not VERBS[name].listed:
        listed = [n for n, v in VERBS.items() if v.listed]
        print(f"hf-longrope2: unknown command {name!r}; choose one of: {', '.join(listed)}", file=sys.stderr)
        return 2
    sigterm_as_ctrl_c()
    return run_command(name, rest, debug)
