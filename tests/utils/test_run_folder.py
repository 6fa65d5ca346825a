"""RunFolder: one spelling of the state folder, the begin/resume checks, atomic publish and the resume hint."""

from __future__ import annotations

import pytest

from hf_longrope2.utils.run_folder import STAGES, RunFolder


def test_state_folder_spelling(tmp_path):
    assert RunFolder(tmp_path / "out/", "search").state_dir == tmp_path / "out.search-state"
    assert RunFolder(tmp_path / "out", "eval").state_dir == tmp_path / "out.eval-state"
    assert RunFolder(tmp_path / "out", "pretrain").state_file == tmp_path / "out.pretrain-state" / "state.pt"
    assert RunFolder(tmp_path / "out", "midtrain").state_dir == tmp_path / "out.checkpoints"
    with pytest.raises(ValueError, match="stage must be one of"):
        RunFolder(tmp_path / "out", "nope")
    assert set(STAGES) == {"search", "eval", "pretrain", "midtrain"}


def test_begin_refuses_what_does_not_fit_resume(tmp_path):
    run = RunFolder(tmp_path / "out", "search")
    with pytest.raises(FileNotFoundError, match="--resume: no search state"):
        run.begin(overwrite=False, resume=True)
    run.begin(overwrite=False, resume=False)
    run.save_state({"iteration": 1})
    with pytest.raises(FileExistsError, match="pass --resume to continue it"):
        run.begin(overwrite=True, resume=False)
    run.begin(overwrite=False, resume=True)
    assert run.read_state() == {"iteration": 1}


def test_publish_is_atomic_and_drops_the_state(tmp_path):
    run = RunFolder(tmp_path / "out", "eval")
    run.save_state({"cells": {}})

    def failing(tmp):
        (tmp / "half.txt").write_text("x")
        raise OSError("disk full")

    with pytest.raises(OSError):
        run.publish(failing, overwrite=False)
    assert not run.output_dir.exists() and run.has_state()
    run.publish(lambda tmp: (tmp / "report.json").write_text("{}"), overwrite=False)
    assert (run.output_dir / "report.json").is_file() and not run.state_dir.exists()


def test_trainer_checkpoints_overwrite_discards_and_publish_keeps(tmp_path):
    run = RunFolder(tmp_path / "out", "midtrain")
    (run.state_dir / "checkpoint-2").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="--resume_from_checkpoint true"):
        run.begin(overwrite=False, resume=False)
    run.begin(overwrite=False, resume=True)
    run.staging_dir.mkdir()
    run.publish_staged(overwrite=False)
    assert run.output_dir.is_dir() and run.state_dir.is_dir()  # checkpoints stay after the run
    run.begin(overwrite=True, resume=False)
    assert not run.state_dir.exists()


def test_resume_hint(tmp_path):
    run = RunFolder(tmp_path / "out", "search")
    command = ["search", "--output-dir", str(tmp_path / "out"), "--overwrite"]
    assert run.resume_hint(command) is None
    run.save_state({})
    assert run.resume_hint(command) == (f"its state in {run.state_dir} is kept; continue with: hf-longrope2 search "
                                        f"--output-dir {tmp_path / 'out'} --resume")
