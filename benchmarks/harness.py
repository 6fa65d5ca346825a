"""What every benchmark shares: the result envelope, atomic result files, the peak-RSS probe, a free port, the vLLM venv.

```python
from benchmarks.harness import RESULTS, envelope, write_results

started = time.perf_counter()
measured = {...}
write_results(RESULTS / "x.json", {**measured, **envelope(started, "x.py", argv)}, markdown_text)
```

Each script stays runnable both as ``python benchmarks/x.py`` and as ``python -m benchmarks.x``: run as a file, it puts
the repository root on ``sys.path`` first so that ``benchmarks`` imports as a package either way.
"""

from __future__ import annotations

import datetime
import gc
import json
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from hf_longrope2.utils import environment
from hf_longrope2.utils.atomic import write_json_atomically, write_text_atomically

#: The repository root (the working folder of benchmark subprocesses).
ROOT = Path(__file__).resolve().parents[1]
#: Where the committed results live.
RESULTS = Path(__file__).resolve().parent / "results"
#: The one key under which a benchmark records its wall time, in seconds.
WALL_TIME = "wall_time_s"


def versions(*packages: str) -> dict:
    """Python and the package's own set of versions (`hf_longrope2.utils.environment.versions`), plus `packages`."""
    out = environment.versions()
    for name in packages:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def machine(**extra) -> dict:
    """The CPU model, core count, memory and system this ran on; `extra` (e.g. torch threads) is added."""
    cpu = platform.processor() or platform.machine()
    memory_gb = None
    if Path("/proc/cpuinfo").is_file():
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), cpu)
    if Path("/proc/meminfo").is_file():
        kb = next((int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal")), None)
        memory_gb = round(kb / 2**20, 1) if kb else None
    return {"cpu": cpu, "architecture": platform.machine(), "cores": os.cpu_count(), "memory_gb": memory_gb,
            "system": platform.platform(), **extra}


def command(script: str, argv: Sequence[str] | None = None) -> str:
    """The command line that reproduces this run: ``python benchmarks/<script> <argv>`` (`argv`: ``sys.argv[1:]``)."""
    return " ".join(["python", f"benchmarks/{script}", *(sys.argv[1:] if argv is None else argv)])


def envelope(started: float, script: str, argv: Sequence[str] | None = None, packages: Sequence[str] = (),
             **machine_extra) -> dict:
    """The fields every result carries: versions, machine, UTC date, wall time since `started`, the command."""
    return {
        "versions": versions(*packages),
        "machine": machine(**machine_extra),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        WALL_TIME: round(time.perf_counter() - started, 1),
        "command": command(script, argv),
    }


def write_results(path: str | Path, payload: dict, markdown: str | None = None) -> Path:
    """`payload` as JSON at `path` and `markdown` (when given) beside it as ``.md``, each written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomically(path, payload)
    if markdown is not None:
        write_text_atomically(path.with_suffix(".md"), markdown)
    return path


# -- memory --------------------------------------------------------------------------------------------------------
def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


@contextmanager
def peak_rss() -> Iterator[dict]:
    """Measures the resident-memory peak of the block (Linux): yields a dict filled on exit with ``rss_before_mb``,
    ``peak_rss_mb`` and ``peak_growth_mb`` (``VmHWM`` after the block minus ``VmRSS`` before it, ``VmHWM`` reset
    through ``/proc/self/clear_refs`` right before the block, after a garbage collection)."""
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current resident size
    before = _status_kb("VmRSS")
    memory: dict = {}
    yield memory
    peak = _status_kb("VmHWM")
    memory.update(rss_before_mb=before / 1024, peak_rss_mb=peak / 1024, peak_growth_mb=(peak - before) / 1024)


def run_in_fresh_process(script: str | Path, args: Sequence[str], env: dict | None = None,
                         name: str = "worker") -> dict:
    """`script` with `args` in a fresh interpreter (from the repository root); the JSON of its last stdout line."""
    done = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- processes -----------------------------------------------------------------------------------------------------
def free_port() -> int:
    """A TCP port on localhost that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def vllm_venv() -> Path:
    """Where the vLLM venv is built and reused: ``venv-vllm`` under the package's cache folder
    (`hf_longrope2.utils.environment.cache_dir`: ``$HF_LONGROPE2_CACHE`` or ``$HF_HOME/hf_longrope2``)."""
    return environment.cache_dir() / "venv-vllm"
