"""The advisory lock on each output (utils.output_lock): a second run is refused at once naming the first's pid,
the lock goes with the process however it ends, and a finished run leaves no lock file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hf_longrope2 import cli
from hf_longrope2.utils.output_lock import OutputLocked, lock_path, output_lock

ROOT = Path(__file__).resolve().parents[2]
HOLD = """
import sys, time
from hf_longrope2.utils.output_lock import output_lock
with output_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_second_lock_on_the_same_output_is_refused_and_released_after(tmp_path):
    out = tmp_path / "out"
    with output_lock(out) as held:
        assert held == tmp_path / ".out.lock" and held.read_text() == f"{os.getpid()}\n"
        with pytest.raises(OutputLocked, match=rf"^--output-dir {out} is being written by another hf-longrope2 run "
                                               rf"\(pid {os.getpid()}, lock {held}\); wait for it to end"):
            with output_lock(out):
                pass
        with output_lock(tmp_path / "other"):  # another output: its own lock
            pass
    assert not lock_path(out).exists() and list(tmp_path.iterdir()) == []
    with output_lock(out):  # free again
        pass


def test_the_cli_refuses_a_second_run_on_a_locked_output_naming_its_pid(tiny_llama, tmp_path, capsys):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "out")], stdout=subprocess.PIPE, env=env,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        argv = ["extend", "--model", str(tiny_llama), "--target-length", "256", "--output-dir", str(tmp_path / "out")]
        assert cli.main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err == (f"hf-longrope2 extend: error: --output-dir {tmp_path / 'out'} is being written by another "
                       f"hf-longrope2 run (pid {holder.pid}, lock {tmp_path / '.out.lock'}); wait for it to end, or "
                       "choose another --output-dir")
        assert not (tmp_path / "out").exists()
    finally:
        holder.send_signal(signal.SIGKILL)  # the kernel drops the lock with the process; its file stays behind
        holder.wait()
    assert lock_path(tmp_path / "out").exists()
    assert cli.main(argv) == 0  # the stale lock file is taken over, then removed
    assert (tmp_path / "out" / "config.json").is_file() and not lock_path(tmp_path / "out").exists()


def test_an_output_in_a_missing_folder_is_not_locked_and_nothing_is_created(tmp_path):
    with output_lock(tmp_path / "new" / "out") as held:
        assert held is None
    assert list(tmp_path.iterdir()) == []
