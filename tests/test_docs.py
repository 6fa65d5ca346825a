"""Every command line the README and docs/*.md show parses with its verb's own parser, and every verb's
``--help`` links a docs page that exists.

Command lines are the ``hf-longrope2 ...`` lines of fenced code blocks (also after ``&&``), and the
``accelerate launch`` / ``python`` lines that run ``recipes/{search,midtrain,evaluate}.py``; a trailing
``# comment`` is dropped and ``\\`` continues a line. Parsing builds and validates the verb's configs
(``hf_longrope2.cli.parse_args(verb, argv)``) without running anything. Prose mentions of a verb in inline code
(``hf-longrope2 extend``) are names, not command lines, and are not checked.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from hf_longrope2 import cli

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RECIPE_VERBS = {"recipes/search.py": "search", "recipes/midtrain.py": "midtrain", "recipes/evaluate.py": "eval"}
COMMAND = re.compile(r"^(\w+=\S+ )*(hf-longrope2|accelerate|python)\s")  # optional VAR=value prefixes
CPU_OVERRIDES = ["--bf16", "false", "--fp16", "false", "--use_cpu", "true"]  # GPU recipes, parsed on a CPU machine


def _code_lines(text: str) -> list[str]:
    lines, fence, pending = [], None, ""
    for line in text.splitlines():
        if line.startswith("```"):
            fence = line.strip("`") if fence is None else None  # the language of the block we are in
            continue
        if fence not in ("", "bash", "sh"):  # outside a block, or in python / output blocks
            continue
        line = pending + line.split(" #", 1)[0].strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        lines.append(line)
    return lines


def commands() -> list[tuple[str, str, list[str]]]:
    """(page, verb, argv) for every command line shown."""
    found = []
    for page in PAGES:
        for line in _code_lines(page.read_text()):
            for part in line.split("&&"):
                if not COMMAND.match(part.strip()):  # a layout line or an output table, not a command
                    continue
                words = shlex.split(part.strip())
                if words[:1] == ["hf-longrope2"] and len(words) > 1:
                    found.append((page.name, words[1], words[2:]))
                    continue
                script = next((w for w in words if w in RECIPE_VERBS), None)
                if script is not None and ("launch" in words or words[0] == "python"):
                    found.append((page.name, RECIPE_VERBS[script], words[words.index(script) + 1:]))
    return found


def test_the_pages_show_commands_of_every_stage():
    verbs = {verb for _, verb, _ in commands()}
    assert {"factors", "extend", "export-serving", "env", "search", "midtrain", "eval", "push", "convert-gguf",
            "export-gguf", "demo"} <= verbs


@pytest.mark.parametrize("page, verb, argv", commands(), ids=lambda x: x if isinstance(x, str) else " ".join(x))
def test_every_shown_command_parses(page, verb, argv, monkeypatch):
    monkeypatch.chdir(ROOT)  # recipe paths are relative to the repository
    assert verb in cli.VERBS, f"{page}: unknown verb {verb!r}"
    if verb == "midtrain" and any("llama3-8b" in a for a in argv):
        argv = [*argv, *CPU_OVERRIDES]
    assert cli.parse_args(verb, argv) is not None


@pytest.mark.parametrize("verb", list(cli.VERBS))
def test_help_links_its_docs_page(verb):
    text = cli.make_parser(verb).format_help()
    page = re.search(r"docs/([\w-]+)\.md", text)
    assert page and (ROOT / "docs" / f"{page.group(1)}.md").is_file(), text[-300:]
    assert f"docs/{page.group(1)}.md" in (ROOT / "README.md").read_text()


def _offline(verb: str, argv: list[str]) -> list[str] | None:
    """`argv` made runnable here (no Hub): `factors` reads only a config, so the embedded tiny base stands in
    for the Hub model; None for commands that need the Hub, a GPU or minutes."""
    from hf_longrope2.tiny.base import tiny_base_path

    if verb == "env":
        return argv
    if verb == "factors" and "--model" in argv:
        argv = list(argv)
        argv[argv.index("--model") + 1] = str(tiny_base_path())
        return argv
    return None


@pytest.mark.parametrize("page, verb, argv", [c for c in commands() if _offline(c[1], c[2]) is not None],
                         ids=lambda x: x if isinstance(x, str) else " ".join(x))
def test_offline_commands_run(page, verb, argv, capsys):
    assert cli.main([verb, *_offline(verb, argv)]) == 0, capsys.readouterr().err
