"""An advisory lock on each output of a run, so two runs never write the same output (or its state) together.

```python
>>> from hf_longrope2.utils.output_lock import lock_outputs
>>> with lock_outputs(["out"]):       # .out.lock beside out/, held until the block ends
...     run()                         # a second run on out/ meanwhile: OutputLocked naming this one's pid
```

The lock is ``fcntl.flock`` on a hidden sibling ``.NAME.lock`` that holds the pid of the run holding it. The
kernel releases it when the process ends, however it ends (a SIGKILL included), so a lock file a killed run left
behind is taken over by the next run; a run that ends normally removes its lock file. The one command-line path
([`hf_longrope2.cli.run_verb`]) takes it for every verb's ``--output-dir`` / ``--output-file``; with several
processes (``accelerate launch``) only the first (``RANK`` 0) takes it.

Under the lock, what interrupted runs left beside the output (temporary folders and files of an atomic write, a
midtraining's ``.NAME.saving``, an old output moved aside by a finished ``--overwrite``) is removed with a
one-line note ([`remove_stale_siblings`]).

Limits, honestly: an output whose parent folder does not exist yet is not locked (creating folders for a run that
may be refused would leave them behind); a file system without ``flock`` (some network mounts) is not locked
either, with a note; and the lock is advisory: only hf-longrope2 runs respect it.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

from .atomic import remove_stale_siblings

try:
    import fcntl
except ImportError:  # Windows: no flock; runs are not locked there
    fcntl = None


class OutputLocked(OSError):
    """Another run holds the lock of an output (an `OSError`: the command line prints it as one line, exit 2)."""


def lock_path(output: str | os.PathLike) -> Path | None:
    """The hidden sibling ``.NAME.lock`` that locks `output` (``.`` is the current folder by its name; ``/``: None)."""
    out = Path(os.path.normpath(output))
    if not out.name or out.name == "..":
        out = Path(os.path.abspath(output))
    return out.with_name(f".{out.name}.lock") if out.name else None


def _holder(path: Path) -> str:
    try:
        pid = path.read_text().strip()
    except OSError:
        return "another run"
    return f"pid {pid}" if pid.isdigit() else "another run"


@contextmanager
def output_lock(output: str | os.PathLike, flag: str = "--output-dir") -> Iterator[Path | None]:
    """Hold the advisory lock of `output` for the block (yields the lock file, or None when none could be taken).

    Raises:
        OutputLocked: another run holds it: ``"--output-dir out is being written by another hf-longrope2 run (pid
            1234, lock .out.lock); wait for it to end, or choose another --output-dir"``.
    """
    path = lock_path(output)
    if fcntl is None or path is None or not path.parent.is_dir():
        yield None
        return
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:  # a read-only parent: the run itself names that
            yield None
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise OutputLocked(f"{flag} {output} is being written by another hf-longrope2 run ({_holder(path)}, "
                                   f"lock {path}); wait for it to end, or choose another {flag}") from None
            print(f"note: {path.parent} does not support file locks ({exc.strerror}); {output} is not locked against "
                  "a second run", file=sys.stderr)
            yield None
            return
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:  # not a file the previous holder removed between our open and our lock: ours
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield path
    finally:
        try:
            path.unlink()  # while still holding it: a run that opens it after this creates a new one
        except OSError:
            pass
        os.close(fd)


def is_main_process() -> bool:
    """False in the processes of an ``accelerate launch`` / ``torchrun`` other than the first (``RANK`` > 0)."""
    return os.environ.get("RANK", "0") in ("", "0")


@contextmanager
def lock_outputs(outputs: Sequence[tuple[str, str | os.PathLike]]) -> Iterator[None]:
    """Hold the lock of every ``(flag, path)`` in `outputs` for the block (none in processes other than the first)."""
    with ExitStack() as stack:
        if is_main_process():
            for flag, path in outputs:
                if stack.enter_context(output_lock(path, flag)) is not None:  # held: nobody else writes beside it
                    removed = remove_stale_siblings(path)
                    if removed:
                        print(f"note: removed {', '.join(p.name for p in removed)} beside {path}, left by an "
                              "interrupted run", file=sys.stderr)
        yield
