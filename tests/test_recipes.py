"""Every recipe YAML parses into its command's dataclasses and opens with its exact launch command."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
STAGES = ("search.yaml", "midtrain.yaml", "evaluate.yaml")


def _yamls():
    return sorted(p for p in RECIPES.glob("*/*.yaml") if p.name in STAGES)


CPU_OVERRIDES = {"bf16": "false", "fp16": "false", "use_cpu": "true"}  # GPU recipes, parsed on a CPU machine


def _parse(path: Path) -> list:
    """The recipe parsed by its verb's own parser (what ``hf-longrope2 <verb> --config path`` runs on)."""
    from hf_longrope2 import cli

    verb = {"search.yaml": "search", "evaluate.yaml": "eval", "midtrain.yaml": "midtrain"}[path.name]
    overrides = [x for key, value in CPU_OVERRIDES.items() for x in (f"--{key}", value)] if verb == "midtrain" else []
    parsed = cli.parse_args(verb, ["--config", str(path), *overrides])
    return [getattr(parsed, f.name) for f in fields(parsed)] if hasattr(parsed, "CLASSES") else [parsed]


@pytest.mark.parametrize("path", _yamls(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_recipe_parses_and_starts_with_its_launch_command(path):
    parsed = _parse(path)
    data = yaml.safe_load(path.read_text())
    for key, value in data.items():
        if key in CPU_OVERRIDES:
            continue
        if key == "report_to" and isinstance(value, str):  # TrainingArguments normalises it to a list
            value = [] if value == "none" else [value]
        holders = [p for p in parsed if hasattr(p, key)]
        assert holders, f"{path}: key {key!r} is in no dataclass"
        got = getattr(holders[0], key)
        if isinstance(got, str) and got.startswith(("[", "{")):  # a structured YAML value travels as inline JSON
            got = json.loads(got)
        assert got == value or str(got) == str(value) or (hasattr(got, "value") and got.value == value), key
    first = path.read_text().splitlines()[0]
    assert first.startswith("# accelerate launch")
    assert f"recipes/{path.stem}.py --config recipes/{path.parent.name}/{path.name}" in first


def test_there_are_recipes():
    names = {f"{p.parent.name}/{p.name}" for p in _yamls()}
    assert {"tiny/midtrain.yaml", "llama3-8b-128k/search.yaml", "smollm2-135m-32k/search.yaml",
            "smollm2-135m-32k/evaluate.yaml", "llama3-8b-128k/evaluate.yaml"} <= names
