"""Every recipe YAML parses into its command's dataclass and opens with its exact launch command."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hf_longrope2.cli import parse_dataclass

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
PARSERS = {"search.yaml": ("hf_longrope2.search", "SearchArguments")}


def _yamls():
    return sorted(p for p in RECIPES.glob("*/*.yaml") if p.name in PARSERS)


@pytest.mark.parametrize("path", _yamls(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_recipe_parses_and_starts_with_its_launch_command(path):
    import importlib

    module, name = PARSERS[path.name]
    cls = getattr(importlib.import_module(module), name)
    args = parse_dataclass(cls, ["--config", str(path)], "test", "")
    data = yaml.safe_load(path.read_text())
    assert all(getattr(args, key) == value for key, value in data.items())
    first = path.read_text().splitlines()[0]
    assert first.startswith("# accelerate launch") and f"recipes/{path.stem}.py --config recipes/{path.parent.name}/" \
        f"{path.name}" in first


def test_there_are_recipes():
    assert len(_yamls()) >= 2
