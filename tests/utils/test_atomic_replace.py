"""`--overwrite` replaces a folder atomically: whatever step of the replace is interrupted, the output path holds
the complete old folder or the complete new one, and a later run deals with what was left aside."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from hf_longrope2.utils.atomic import check_output_dir, publish_folder, save_atomically

OLD = {"config.json": "old config", "model.safetensors": "old weights" * 100}
NEW = {"config.json": "new config", "model.safetensors": "new weights" * 100, "report.md": "new"}


def _fill(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def _content(folder: Path) -> dict[str, str] | None:
    return {p.name: p.read_text() for p in folder.iterdir()} if folder.is_dir() else None


# the steps of a replace, in order: (which patched function, its nth call)
STEPS = [("rename", 1), ("rename", 2), ("rmtree", 1)]


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, OSError])
@pytest.mark.parametrize("step", range(len(STEPS)))
def test_an_interrupted_replace_leaves_the_old_or_the_new_folder(tmp_path, monkeypatch, step, interrupt):
    out = _fill(tmp_path / "out", OLD)
    staging = _fill(tmp_path / ".out.abcd1234", NEW)
    calls = {"rename": 0, "rmtree": 0}
    which, nth = STEPS[step]

    def failing(name, real):
        def call(*args, **kwargs):
            calls[name] += 1
            if name == which and calls[name] == nth:
                if name == "rmtree":  # killed mid-delete: part of the folder is gone
                    sorted(Path(args[0]).iterdir())[0].unlink()
                raise interrupt("killed here")
            return real(*args, **kwargs)
        return call

    # os.rename and shutil.rmtree themselves (Path.rename goes through os.rename), only during the replace
    monkeypatch.setattr(os, "rename", failing("rename", os.rename))
    monkeypatch.setattr(shutil, "rmtree", failing("rmtree", shutil.rmtree))
    try:
        publish_folder(staging, out, overwrite=True)
    except (KeyboardInterrupt, OSError):
        pass
    assert _content(out) in (OLD, NEW)  # the invariant, at every step
    if which == "rmtree":
        assert _content(out) == NEW  # the old one was already replaced, only its deletion was cut short
    monkeypatch.undo()
    check_output_dir(out, overwrite=True)  # a later run
    assert _content(out) in (OLD, NEW)
    assert not list(tmp_path.glob(".out.replaced-*"))  # nothing of the old output left aside


def test_a_kill_between_the_renames_is_named_by_the_next_run(tmp_path):
    aside = _fill(tmp_path / ".out.replaced-4242", OLD)  # SIGKILL after the first rename: nothing at out/
    with pytest.raises(FileExistsError, match=r"\.out\.replaced-4242 holds the previous .*out.*rename it back"):
        check_output_dir(tmp_path / "out", overwrite=True)
    assert _content(aside) == OLD  # the only copy is kept


def test_a_complete_replace_leaves_no_sibling(tmp_path):
    _fill(tmp_path / "out", OLD)
    save_atomically(tmp_path / "out", lambda tmp: [(tmp / k).write_text(v) for k, v in NEW.items()], overwrite=True)
    assert _content(tmp_path / "out") == NEW and [p.name for p in tmp_path.iterdir()] == ["out"]


def test_a_later_run_removes_stale_siblings_under_its_lock_and_says_so(tiny_llama, tmp_path, capsys):
    """What runs killed mid-write left beside an output (the writing folder of save_atomically, midtraining's
    .NAME.saving, an atomic_path temporary, an old output aside whose replacement is in place) is removed by the
    next run on that output, with one note; other hidden files beside it are left alone."""
    from hf_longrope2 import cli

    out = _fill(tmp_path / "out", OLD)
    stale = [_fill(tmp_path / ".out.writing-k2j4h5g6", NEW), _fill(tmp_path / ".out.saving", NEW),
             _fill(tmp_path / ".out.replaced-4242", OLD)]
    (tmp_path / ".out.tmp777").write_text("half a file")
    stale.append(tmp_path / ".out.tmp777")
    kept = [_fill(tmp_path / ".out.settings", OLD), tmp_path / ".out.notes"]
    kept[1].write_text("mine")
    assert cli.main(["extend", "--model", str(tiny_llama), "--target-length", "256", "--output-dir", str(out),
                     "--overwrite"]) == 0
    assert not any(path.exists() for path in stale) and all(path.exists() for path in kept)
    note = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note: removed")]
    assert note == [f"note: removed .out.replaced-4242, .out.saving, .out.tmp777, .out.writing-k2j4h5g6 beside {out}, "
                    "left by an interrupted run"]
    assert (out / "config.json").read_text() != OLD["config.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.notes", ".out.settings", "out"]
