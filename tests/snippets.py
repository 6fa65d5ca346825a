"""Run code a user copies (card and docs snippets) the way a user would: a fresh interpreter where
``hf_longrope2`` cannot be imported (unless asked), stdin closed, and a time limit; report prompts and warnings."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

BLOCK = """
import importlib.abc, sys
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "hf_longrope2" or name.startswith("hf_longrope2."):
            raise ImportError(f"{name} is blocked: a Hub user does not have it")
sys.meta_path.insert(0, _Block())
"""
# What must never reach a user who copies our snippets: a remote-code prompt, and warnings about our configs.
BAD = re.compile(r"\[y/N\]|Warning|warning|Missing validation function|You are using a model of type|"
                 r"Unrecognized keys|does not exist|Traceback")
PROGRESS = re.compile(r"^(Loading weights|Writing model shards)")  # transformers' own bars, not warnings


def python_blocks(markdown: str) -> list[str]:
    """The ```python blocks of a markdown page."""
    return re.findall(r"```python\n(.*?)```", markdown, flags=re.S)


def bash_blocks(markdown: str) -> list[str]:
    return re.findall(r"```(?:bash|sh)\n(.*?)```", markdown, flags=re.S)


def run_user_code(code: str, cwd: Path, *, block_package: bool = True, timeout: float = 120,
                  python: str = sys.executable) -> str:
    """Run `code` in a fresh interpreter in `cwd` with no input; return its output.

    Raises `AssertionError` on a non-zero exit, a prompt, a warning or a stall (`timeout` seconds)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TRANSFORMERS_VERBOSITY"] = "warning"
    try:
        done = subprocess.run([python, "-c", (BLOCK if block_package else "") + code], cwd=cwd, env=env,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"stalled for {timeout} s (a prompt waiting for input?):\n{code}") from exc
    output = done.stdout + done.stderr
    lines = [line for line in output.replace("\r", "\n").splitlines() if line and not PROGRESS.match(line)]
    assert done.returncode == 0, f"exit {done.returncode}:\n{code}\n---\n{output[-3000:]}"
    bad = [line for line in lines if BAD.search(line)]
    assert not bad, f"prompt or warning:\n{code}\n---\n" + "\n".join(bad)
    return output
