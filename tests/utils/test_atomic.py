"""Atomic writes: a failure leaves neither a partial target nor a temporary file behind."""

from __future__ import annotations

import json

import pytest

from hf_longrope2.utils.atomic import atomic_path, save_atomically, write_json_atomically


def test_failed_write_keeps_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "state.json"
    write_json_atomically(target, {"step": 1})
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text('{"step": 2, "trunc')
        raise RuntimeError("killed mid-write")
    assert json.loads(target.read_text()) == {"step": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]
    with atomic_path(tmp_path / "plot.png") as tmp:
        assert tmp.suffix == ".png"  # writers that infer the format from the name still work
        tmp.write_bytes(b"x")
    assert (tmp_path / "plot.png").read_bytes() == b"x"


def test_failed_folder_write_leaves_nothing(tmp_path):
    def write(folder):
        (folder / "config.json").write_text("{}")
        raise ValueError("bad weights")

    with pytest.raises(ValueError):
        save_atomically(tmp_path / "out", write)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(FileExistsError, match="--overwrite"):
        (tmp_path / "taken").mkdir()
        (tmp_path / "taken" / "x").write_text("")
        save_atomically(tmp_path / "taken", write)
