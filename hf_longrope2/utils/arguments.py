"""One argument parser for every verb and recipe: dataclass fields as flags, ``--config x.yaml`` as flags too.

```python
>>> from hf_longrope2.utils.arguments import parse_dataclasses
>>> (args,) = parse_dataclasses((ExtendArguments,), ["--config", "extend.yaml", "--dtype", "float32"],
...                             prog="hf-longrope2 extend")
```

A YAML file is turned into the flags it stands for (``target_length: 100.5`` -> ``--target_length 100.5``)
and put before the command line's own flags, so YAML values go through exactly the conversion and checks of
flags (argparse types, choices, then the dataclass's ``__post_init__``) and flags override them. A field's allowed
values are declared once, as ``metadata={"choices": ...}``: argparse checks flags and YAML values against them and
[`check_choices`] checks a config built in Python, with the same message. A YAML
value the field's type cannot take is reported with the file and key; a malformed YAML file with its line.
Parser errors raise [`ArgumentError`] (a `ValueError`) instead of exiting, so the command line prints them
as one line.

Fields several verbs share are defined once, in small dataclasses the verbs' configs inherit ([`ModelArguments`],
[`OutputArguments`], [`TextSourceArguments`]): same flag, YAML key and keyword everywhere; each verb's
``__post_init__`` still says which of them it requires.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml
from transformers import HfArgumentParser

from .loading import check_regular_file


@dataclass
class ModelArguments:
    """The model a verb reads: a Hub id or a local folder (``search``, ``extend``)."""

    model: str = field(default="", metadata={"help": "Hub id or local folder of a supported causal LM (required)"})


@dataclass
class OutputArguments:
    """The folder a verb writes and whether an existing one may be replaced (``search``, ``extend``, ``eval``,
    ``export-serving``, ``recipes/pretrain_tiny.py``; a verb whose folder holds something particular redeclares
    ``output_dir`` with its own help)."""

    output_dir: str = field(default="", metadata={"help": "Folder to write (required; must not exist or be empty)"})
    overwrite: bool = field(default=False, metadata={"help": "Replace a non-empty --output-dir"})


@dataclass
class TextSourceArguments:
    """Where in a text source the documents are (``search``, ``eval``); the source itself, ``dataset``, is the
    verb's own field (its default and help differ)."""

    dataset_split: str = field(default="validation", metadata={"help": "Split of a Hub dataset"})
    dataset_config: str | None = field(default=None, metadata={"help": "Config name of a Hub dataset"})
    text_column: str = field(default="text", metadata={"help": "Column holding the text (Hub, jsonl, json, parquet)"})


class ArgumentError(ValueError):
    """A bad flag or YAML value; the message names it and what is accepted."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows ``(default: x)`` except where it misleads or says nothing: a required field's placeholder, a ``--no_x``
    flag's, None."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if "(required" in (action.help or "") or _is_negation(action) or action.default is None:
            return action.help
        return super()._get_help_string(action)


def _is_negation(action: argparse.Action) -> bool:
    """Whether `action` is the ``--no_x`` flag `HfArgumentParser` adds for a boolean field that defaults to True."""
    return bool(action.option_strings) and action.option_strings[0].startswith("--no_")


def tidy_help(parser: argparse.ArgumentParser) -> None:
    """Give every ``--no_x`` flag its own help (`HfArgumentParser` copies the ``--x`` flag's text onto it)."""
    for action in parser._actions:
        if _is_negation(action) and action.help is not argparse.SUPPRESS:
            action.help = f"Set {action.dest} to false (--{action.dest} is on by default)"


def choice_error(name: str, choices, value) -> str:
    """The one message for a value outside a field's ``metadata["choices"]``."""
    return f"{flag_name(name)} must be one of {tuple(choices)}, got {value!r}"


def check_choices(config) -> None:
    """Raise ``ValueError`` for the first field of dataclass `config` whose value is not in its
    ``metadata["choices"]`` (None passes where None is the field's default)."""
    for f in fields(config):
        choices = f.metadata.get("choices")
        value = getattr(config, f.name)
        if choices is not None and value not in choices and not (value is None and f.default is None):
            raise ValueError(choice_error(f.name, choices, value))


def choice_fields(parser: argparse.ArgumentParser) -> set[str]:
    """The fields of `parser`'s dataclasses that declare ``metadata["choices"]``."""
    return {f.name for cls in getattr(parser, "dataclass_types", ()) for f in fields(cls) if "choices" in f.metadata}


class MetadataChoices:
    """Parser mixin: a flag outside a field's ``metadata["choices"]`` raises [`ArgumentError`] with the message of
    [`check_choices`] (argparse's own wording stays for other choices, e.g. transformers' enums)."""

    def _check_value(self, action: argparse.Action, value) -> None:  # argparse's choices check
        if action.choices is not None and value not in action.choices and action.dest in choice_fields(self):
            raise ArgumentError(choice_error(action.dest, action.choices, value))
        super()._check_value(action, value)


class Parser(MetadataChoices, HfArgumentParser):
    """`HfArgumentParser` whose errors raise [`ArgumentError`] (``--help`` still prints and exits 0)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        tidy_help(self)

    def error(self, message: str):  # argparse calls this for every parse error
        raise ArgumentError(message)


def flag_name(field_name: str) -> str:
    """The command-line flag of a dataclass field: ``output_dir`` -> ``--output-dir``."""
    return "--" + field_name.replace("_", "-")


def require_fields(config, *names: str) -> None:
    """Raise ``ValueError("--name is required")`` for the first of `names` that is empty on `config`."""
    for name in names:
        if not getattr(config, name):
            raise ValueError(f"{flag_name(name)} is required")


def check_token_count(name: str, value: int | None) -> None:
    """Raise ``ValueError`` naming `name` unless `value` (a length in tokens; None: not given) is at least 1."""
    if value is not None and value < 1:
        raise ValueError(f"{name} must be a positive number of tokens, got {value}")


def read_yaml(path: str | os.PathLike) -> dict:
    """The mapping in YAML file `path`; one-line errors naming the file (missing, syntax with its line, not a map)."""
    path = Path(path)
    try:
        check_regular_file(path, "--config")
    except ValueError as exc:
        raise ArgumentError(str(exc)) from None
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ArgumentError(f"--config {path}: no such file") from None
    except (IsADirectoryError, UnicodeDecodeError) as exc:
        raise ArgumentError(f"--config {path}: not a readable YAML file ({exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ArgumentError(f"--config {path}: YAML syntax error{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ArgumentError(f"--config {path} must hold a mapping of field: value, got a {type(data).__name__}")
    return data


def _flag_for(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """dest -> the action that sets it (the positive flag, not ``--no_x``)."""
    actions = {}
    for action in parser._actions:
        if action.dest in ("help", "help_all", "config") or not action.option_strings:
            continue
        if action.dest not in actions and not action.option_strings[0].startswith("--no_"):
            actions[action.dest] = action
    return actions


def _check_value(action: argparse.Action, key: str, value, source: str, checked_later: bool = False) -> list[str]:
    """`value` as command-line strings for `action`, converted once here so a bad one names `source` and `key`
    (`checked_later`: its choices are a field's metadata, checked by the parser with [`check_choices`]'s message)."""
    many = action.nargs in ("+", "*") or isinstance(action.nargs, int)
    if isinstance(value, (list, tuple, dict)) and not many and action.type is str:
        return [json.dumps(value)]  # a structured value of a string field (a mixture, an fsdp_config): inline JSON
    if isinstance(value, (list, tuple)) and not many:
        raise ArgumentError(f"{source}: {key} takes one value, got a list {value!r}")
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    strings = []
    for item in values:
        text = json.dumps(item) if isinstance(item, dict) else str(item).lower() if isinstance(item, bool) else str(item)
        if action.type is not None:
            try:
                converted = action.type(text)
            except (TypeError, ValueError, argparse.ArgumentTypeError):
                kind = getattr(action.type, "__name__", "valid")
                raise ArgumentError(f"{source}: {key}: invalid {kind} value {item!r}") from None
            if action.choices is not None and converted not in action.choices and not checked_later:
                raise ArgumentError(f"{source}: {key}: {item!r} is not one of {list(action.choices)}")
        strings.append(text)
    return strings


def yaml_flags(parser: argparse.ArgumentParser, data: dict, source: str) -> list[str]:
    """The flags standing for the YAML mapping `data` (unknown keys and ill-typed values refused)."""
    actions = _flag_for(parser)
    metadata_choices = choice_fields(parser)
    unknown = sorted(k for k in data if k not in actions)
    if unknown:
        shown = sorted(actions) if len(actions) <= 40 else "see --help"
        raise ArgumentError(f"unknown keys in {source}: {unknown}; accepted: {shown}")
    argv: list[str] = []
    for key, value in data.items():
        if value is None:  # null: keep the field's default
            continue
        action = actions[key]
        if action.nargs == 0:  # a store_true/false flag without a value
            if not isinstance(value, bool):
                raise ArgumentError(f"{source}: {key} must be true or false, got {value!r}")
            if value != action.const:
                continue
            argv.append(action.option_strings[0])
            continue
        argv += [action.option_strings[0], *_check_value(action, key, value, source, key in metadata_choices)]
    return argv


def split_config(argv: Sequence[str]) -> tuple[str | None, list[str]]:
    """(the ``--config`` path or None, the other arguments); ``--config=x.yaml`` accepted."""
    rest, config = [], None
    items = list(argv)
    i = 0
    while i < len(items):
        item = items[i]
        if item == "--config":
            if i + 1 >= len(items):
                raise ArgumentError("--config needs a YAML file")
            config, i = items[i + 1], i + 2
            continue
        if item.startswith("--config="):
            config = item.split("=", 1)[1]
        else:
            rest.append(item)
        i += 1
    return config, rest


def make_parser(classes: Sequence[type], prog: str, description: str | None = None,
                epilog: str | None = None) -> Parser:
    """The parser of `classes`' fields as flags, plus ``--config YAML`` (what every verb's ``make_parser`` returns)."""
    parser = Parser(list(classes), prog=prog, description=description, epilog=epilog,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_flag(parser)
    return parser


def add_config_flag(parser: argparse.ArgumentParser) -> None:
    """Add ``--config YAML`` to `parser` unless it has one (TRL's parser does)."""
    if "--config" not in parser._option_string_actions:
        parser.add_argument("--config", default=None, metavar="YAML",
                            help="YAML file whose keys are this command's fields; flags override its values")


def parse_dataclasses(classes: Sequence[type], argv: Sequence[str], prog: str | None = None,
                      description: str | None = None, epilog: str | None = None,
                      parser: HfArgumentParser | None = None, values: Mapping | None = None) -> tuple:
    """Parse `argv` (flags, and ``--config x.yaml`` whose values come first) into one instance per dataclass.

    Args:
        classes (`Sequence[type]`): The dataclasses whose fields are the flags.
        argv (`Sequence[str]`): The arguments after the verb.
        prog (`str`, *optional*): Program name for ``--help`` and messages (default: the parser's).
        description (`str`, *optional*): Text for ``--help``.
        epilog (`str`, *optional*): Text after the options in ``--help``.
        parser (`HfArgumentParser`, *optional*): A parser already built ([`make_parser`], or TRL's), whose
            ``error`` is made to raise [`ArgumentError`].
        values (`Mapping`, *optional*): Field values given in Python (a recipe built in code), read exactly as the
            keys of a ``--config`` file are; the YAML file's values come first, then these, then `argv`'s flags.

    Returns:
        `tuple`: one instance per class, validated by their ``__post_init__``.

    Raises:
        ArgumentError: a bad flag or YAML value, unknown keys, an unreadable or malformed YAML file.
    """
    if parser is None:
        parser = make_parser(classes, prog or "hf-longrope2", description, epilog)
    else:
        parser.error = Parser.error.__get__(parser)  # type: ignore[method-assign]
        add_config_flag(parser)
    prog = prog or parser.prog
    config, rest = split_config(argv)
    flags: list[str] = []
    if config is not None:
        data = read_yaml(config)
        for key, value in (data.pop("env", None) or {}).items():  # TRL's convention: environment variables
            os.environ[str(key)] = str(value)
        flags = yaml_flags(parser, data, config)
    if values is not None:
        flags += yaml_flags(parser, dict(values), "values")
    namespace, remaining = parser.parse_known_args(flags + rest)
    if remaining:
        raise ArgumentError(f"unrecognized arguments: {' '.join(remaining)} (see {prog} --help)")
    outputs = []
    for cls in classes:
        names = {f.name for f in fields(cls) if f.init}
        outputs.append(cls(**{k: v for k, v in vars(namespace).items() if k in names}))
    return tuple(outputs)


def parse_dataclass(cls: type, argv: Sequence[str], prog: str, description: str | None = None,
                    epilog: str | None = None):
    """[`parse_dataclasses`] for one dataclass."""
    return parse_dataclasses((cls,), argv, prog, description, epilog)[0]
