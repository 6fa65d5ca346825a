"""transformers' own progress bars stay off while ours run (``check``, ``eval``), and come back after."""

from __future__ import annotations

import pytest
from transformers.utils import logging as transformers_logging

from hf_longrope2 import selfcheck
from hf_longrope2.cli import main
from hf_longrope2.evaluation import runner as evaluation_runner
from hf_longrope2.tiny.models import char_tokenizer, tiny_model
from hf_longrope2.utils.environment import transformers_bars_off

TRANSFORMERS_BARS = ("Loading weights", "Writing model shards")


def test_bars_off_inside_and_restored_after():
    assert transformers_logging.is_progress_bar_enabled()
    with transformers_bars_off():
        assert not transformers_logging.is_progress_bar_enabled()
    assert transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        with transformers_bars_off():
            pass
        assert not transformers_logging.is_progress_bar_enabled()  # off before: left off
    finally:
        transformers_logging.enable_progress_bar()


def test_check_shows_only_its_own_bar(monkeypatch, capfd):
    seen = []
    original = selfcheck.check_architecture
    monkeypatch.setattr(selfcheck, "check_architecture",
                        lambda *a, **k: seen.append(transformers_logging.is_progress_bar_enabled()) or original(*a, **k))
    assert main(["check", "--model-types", "llama"]) == 0
    err = capfd.readouterr().err
    assert seen == [False] and "checking architectures" in err
    assert not [bar for bar in TRANSFORMERS_BARS if bar in err], err
    assert transformers_logging.is_progress_bar_enabled()


def test_eval_shows_only_its_own_bar(tmp_path, monkeypatch, capfd):
    model = tiny_model("llama")
    model.config.max_position_embeddings = 512
    model.save_pretrained(tmp_path / "base")
    char_tokenizer().save_pretrained(tmp_path / "base")
    seen = []
    original = evaluation_runner.load_model
    monkeypatch.setattr(evaluation_runner, "load_model",
                        lambda *a: seen.append(transformers_logging.is_progress_bar_enabled()) or original(*a))
    capfd.readouterr()
    argv = ["eval", "--model", str(tmp_path / "base"), "--output-dir", str(tmp_path / "report"), "--lengths", "768",
            "--depths", "0.5", "--needles-per-cell", "1", "--ppl-documents", "1", "--short-windows", "1",
            "--ruler-tasks", "none"]
    assert main(argv) == 0
    err = capfd.readouterr().err
    assert seen == [False] and "eval" in err
    assert not [bar for bar in TRANSFORMERS_BARS if bar in err], err


@pytest.fixture(autouse=True)
def _bars_on():
    transformers_logging.enable_progress_bar()
    yield
