"""Shared fixtures: every supported architecture, and artefacts built once per test run (see `hf_longrope2.tiny`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hf_longrope2.cli import run_verb
from hf_longrope2.modeling import SUPPORTED_MODEL_TYPES
from hf_longrope2.tiny.models import save_tiny_model

SAMPLE_TEXT = "It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of foolishness. "


@pytest.fixture(params=SUPPORTED_MODEL_TYPES)
def model_type(request) -> str:
    """Every architecture of the product's table (``hf_longrope2.modeling.ARCHITECTURES``)."""
    return request.param


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    """A saved random tiny Llama (32-token window) with the character tokenizer, built once per test run; read it,
    or copy it before changing it."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny-llama") / "tiny")


def run_tiny_search(root: Path, name: str, model: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run the real `hf-longrope2 search` (512 tokens, a few seconds) of `model` on local text under `root`.

    Returns the output folder `root / name`: an extended model with its search log, plots and card.
    """
    (root / "text").mkdir()
    for i in range(6):
        (root / "text" / f"book{i}.txt").write_text(f"Book {i}. " + SAMPLE_TEXT * (30 + 5 * i))
    monkeypatch.setenv("HF_LONGROPE2_CACHE", str(root / "cache"))
    run_verb("search", ["--model", str(model), "--dataset", str(root / "text"), "--output_dir", str(root / name),
            "--target-length", "512", "--population", "8", "--iterations", "2", "--num-samples", "2"])
    return root / name


@pytest.fixture(scope="session")
def tiny_search(tmp_path_factory, tiny_llama) -> Path:
    """A real search output folder (``tiny-512``), built once per test run; copy it before changing it."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        return run_tiny_search(tmp_path_factory.mktemp("search"), "tiny-512", tiny_llama, monkeypatch)
