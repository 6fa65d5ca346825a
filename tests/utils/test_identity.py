"""Resume identity by content (utils.identity, RunFolder.check_resume): the same inputs by another path are
accepted; a changed model file, dataset file or setting is refused, naming it."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from hf_longrope2.utils.identity import identity_change, run_identity
from hf_longrope2.utils.run_folder import RunFolder


@pytest.fixture
def inputs(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 8}))
    save_file({"w": torch.zeros(4, 4)}, model / "model.safetensors")
    data = tmp_path / "books"
    data.mkdir()
    (data / "a.txt").write_text("once upon a time " * 10)
    (data / "big.txt").write_bytes(b"x" * (3 << 20))  # over 2 MB: first and last MB hashed
    return model, data


def _identity(model, data, seed=0):
    return run_identity({"--model": str(model)}, {"--dataset": str(data)}, {"seed": seed})


def test_same_inputs_by_another_path_are_the_same(inputs, tmp_path, monkeypatch):
    model, data = inputs
    saved = _identity(model, data)
    monkeypatch.chdir(tmp_path)
    assert identity_change(saved, _identity("model", "./books/")) is None
    (tmp_path / "link").symlink_to(model)
    assert identity_change(saved, _identity(tmp_path / "link", data)) is None


def test_weights_rewritten_with_the_same_shapes_are_named(inputs):
    model, data = inputs
    saved = _identity(model, data)
    save_file({"w": torch.ones(4, 4)}, model / "model.safetensors")  # same header, same size, other values
    change = identity_change(saved, _identity(model, data))
    assert change.startswith("model weights changed since the run started: --model ")
    assert "model.safetensors (content differs)" in change


def test_weights_of_another_shape_are_named(inputs):
    model, data = inputs
    saved = _identity(model, data)
    save_file({"w": torch.zeros(8, 4)}, model / "model.safetensors")
    assert "model.safetensors (size" in identity_change(saved, _identity(model, data))


def test_config_and_dataset_changes_are_named(inputs):
    model, data = inputs
    saved = _identity(model, data)
    (model / "config.json").write_text(json.dumps({"model_type": "gemma", "hidden_size": 8}))
    assert identity_change(saved, _identity(model, data)).startswith(
        "model config.json changed since the run started")
    saved = _identity(model, data)
    with (data / "big.txt").open("r+b") as f:  # the last MB of a large file, size kept
        f.seek((3 << 20) - 10)
        f.write(b"y")
    change = identity_change(saved, _identity(model, data))
    assert change.startswith("dataset file changed since the run started: --dataset") and "big.txt" in change
    saved = _identity(model, data)
    (data / "c.txt").write_text("new")
    assert "c.txt is new" in identity_change(saved, _identity(model, data))


def test_a_setting_or_another_hub_id_is_named(inputs):
    model, data = inputs
    assert identity_change(_identity(model, data), _identity(model, data, seed=1)) == (
        "settings differ from the run's: seed: 0 -> 1")
    hub = run_identity({"--model": "org/a"}, {}, {})
    assert "--model was org/a, now org/b" in identity_change(hub, run_identity({"--model": "org/b"}, {}, {}))


def test_check_resume_refuses_naming_the_change_and_old_states(inputs, tmp_path):
    model, data = inputs
    folder = RunFolder(tmp_path / "out", "search")
    saved = _identity(model, data)
    folder.check_resume(_identity(model, data), saved)  # unchanged: accepted
    with pytest.raises(ValueError, match=r"^--resume: settings differ from the run's: seed: 0 -> 1; the state in"):
        folder.check_resume(_identity(model, data, seed=1), saved)
    with pytest.raises(ValueError, match="records no identity of its inputs"):
        folder.check_resume(saved, None)
    midtrain = RunFolder(tmp_path / "out", "midtrain")
    assert midtrain.check_resume(saved, None, required=False).startswith("note: --resume_from_checkpoint:")
    midtrain.record_inputs(saved)
    assert midtrain.recorded_inputs() == json.loads(json.dumps(saved))
    with pytest.raises(ValueError, match="pass --overwrite to start over"):
        midtrain.check_resume(_identity(model, data, seed=1), midtrain.recorded_inputs())
