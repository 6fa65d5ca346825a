"""Writes that never leave a half-written file or folder behind: write a temporary sibling, then rename.

```python
>>> from hf_longrope2.utils.atomic import atomic_path, write_json_atomically
>>> write_json_atomically("out/report.json", {"ok": True})
>>> with atomic_path("out/plot.png") as tmp:      # keeps the suffix, so writers can infer the format
...     fig.savefig(tmp)
```

A rename within one file system is atomic on POSIX, so a reader (or a resumed job after SIGKILL) sees
either the old content or the new, never a partial write.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from safetensors import SafetensorError

logger = logging.getLogger(__name__)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of `path` to write; it replaces `path` when the block exits without error."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # still there only when the block failed


def write_text_atomically(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json_atomically(path: str | Path, data, indent: int = 1) -> Path:
    return write_text_atomically(path, json.dumps(data, indent=indent, default=str))


def _refuse_taken(out: Path, overwrite: bool) -> Path:
    if out.is_symlink():
        target = os.readlink(out)
        dangling = "" if out.exists() else ", which does not exist"
        raise FileExistsError(f"--output-dir {out} is a symbolic link (to {target}{dangling}); pass the folder it "
                              "points to, or a new path")
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--output-dir {out} is an existing file, not a folder; choose another --output-dir")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty; pass --overwrite or choose another --output-dir")
    return out


def _refuse_current_directory(out: Path) -> None:
    """`out` may not be the current directory, or a folder above it (``--overwrite`` would delete the user's work)."""
    cwd, resolved = Path.cwd().resolve(), out.resolve()
    if resolved == cwd or cwd.is_relative_to(resolved):
        where = "is" if resolved == cwd else "contains"
        raise FileExistsError(f"--output-dir {out} {where} the current directory {cwd}; choose a new folder "
                              "(an output is written aside and renamed into place)")


def _aside_name(out: Path) -> str:
    """The hidden sibling the previous `out` is renamed to while an ``--overwrite`` puts the new one in place."""
    return f".{out.name}.replaced-"


def _writing_prefix(out: Path) -> str:
    """The hidden sibling folder [`save_atomically`] writes a new `out` in: ``.NAME.writing-XXXXXXXX``."""
    return f".{out.name}.writing-"


def stale_siblings(output: str | Path) -> list[Path]:
    """What interrupted runs left beside `output` and nothing will use: the folders [`save_atomically`] wrote in
    (``.NAME.writing-*``), midtraining's final save (``.NAME.saving``), temporary files of [`atomic_path`]
    (``.STEM.tmpPID.SUFFIX``), and a previous output moved aside by an ``--overwrite`` whose new output is in
    place (``.NAME.replaced-PID``; with nothing at `output` it is the only copy, and [`check_output_dir`]
    refuses instead). Names are matched exactly: another hidden file beside `output` is never listed."""
    out = Path(os.path.normpath(output))
    parent = out.absolute().parent
    if not out.name or not parent.is_dir():
        return []
    stem, suffix = Path(out.name).stem, Path(out.name).suffix
    temporary = re.compile(rf"^\.{re.escape(stem)}\.tmp\d+{re.escape(suffix)}$")
    found = []
    for path in sorted(parent.iterdir()):
        name = path.name
        if (name.startswith(_writing_prefix(out)) and path.is_dir() and not path.is_symlink()) or (
                name == f".{out.name}.saving" and path.is_dir() and not path.is_symlink()) or (
                temporary.match(name) and path.is_file()) or (
                name.startswith(_aside_name(out)) and out.is_dir() and not out.is_symlink()):
            found.append(path)
    return found


def remove_stale_siblings(output: str | Path) -> list[Path]:
    """Remove the [`stale_siblings`] of `output` and return them. Call it only while holding the output's lock
    ([`hf_longrope2.utils.output_lock`]): then no other run is writing them."""
    removed = []
    for path in stale_siblings(output):
        try:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        except OSError as exc:
            logger.warning("could not remove %s, left by an interrupted run: %s", path, exc)
            continue
        removed.append(path)
    return removed


def _stale_siblings(out: Path) -> None:
    """Deal with what an earlier run killed mid-``--overwrite`` left beside `out` (see [`publish_folder`]).

    An old output moved aside while the new one is at `out`: the replace finished except for the delete, so the
    old one is removed. An old output moved aside with nothing at `out`: the run was killed between the two
    renames; it is the only copy, so this run refuses, naming it.
    """
    parent = out.absolute().parent
    if not parent.is_dir():
        return
    for aside in sorted(parent.glob(f"{_aside_name(out)}*")):
        if out.is_dir():
            shutil.rmtree(aside, ignore_errors=True)
        else:
            raise FileExistsError(f"{aside} holds the previous {out}, left by an interrupted --overwrite: rename it "
                                  f"back to {out} (or delete it) before writing {out}")


def check_output_dir(output_dir: str | Path, overwrite: bool = False) -> Path:
    """Refuse, before any expensive work, an output folder that cannot be (re)written.

    Raises:
        FileExistsError: `output_dir` is a file, a symbolic link (dangling or not), the current directory or a
            folder above it, a non-empty folder and not `overwrite`, or its previous version still lies aside
            from an interrupted ``--overwrite`` (see [`publish_folder`]).
        PermissionError: its parent folder cannot be created or written.
    """
    out = Path(output_dir)
    _refuse_current_directory(out)  # first: "not empty" would invite the --overwrite that deletes the user's work
    _refuse_taken(out, overwrite)
    _stale_siblings(out)
    parent = out.absolute().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=parent).close()
    except OSError as exc:
        raise PermissionError(f"--output-dir {out}: cannot write to {parent} ({exc.strerror or exc})") from None
    return out


def check_output_apart_from_inputs(output: tuple[str, str | Path], inputs: Sequence[tuple[str, str | Path]]) -> None:
    """Refuse an output that is, contains or sits inside an input of the same run (``eval --model X --output-dir
    X`` would replace a model with a report). `output` and each input are ``(flag, path)``; inputs that are not
    local paths (Hub ids, ``builtin:`` datasets) are skipped.

    Raises:
        FileExistsError: one line naming both paths.
    """
    flag, path = output
    out = Path(path).resolve()
    for input_flag, value in inputs:
        if not value or not os.path.lexists(value):
            continue
        source = Path(value).resolve()
        if source == out:
            relation = "is"
        elif source.is_relative_to(out):
            relation = "contains"
        elif out.is_relative_to(source):
            relation = "is inside"
        else:
            continue
        raise FileExistsError(f"{flag} {path} {relation} {input_flag} {value}, an input of this run; the output may "
                              f"not be, contain or sit inside an input: choose another {flag}")


def publish_folder(staging: str | Path, output_dir: str | Path, overwrite: bool = False) -> Path:
    """Move the complete folder `staging` (a sibling of `output_dir`) into place, replacing it if `overwrite`.

    The output is checked again (it may have appeared while `staging` was written); the parent needs no new
    write probe, `staging` was just written there. A replace never leaves `output_dir` without a complete
    output: the old folder is renamed aside to a hidden sibling, the new one renamed in, and only then the old
    one deleted; a failure between the renames puts the old one back. (A SIGKILL between the two renames, a
    window of two system calls, leaves the old one aside: the next run names it, see [`check_output_dir`].)
    """
    staging, out = Path(staging), _refuse_taken(Path(output_dir), overwrite)
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp creates 0700; the result should look like any other folder
    if not out.exists():
        os.rename(staging, out)
        return out
    aside = out.with_name(f"{_aside_name(out)}{os.getpid()}")
    os.rename(out, aside)
    try:
        os.rename(staging, out)
    except BaseException:
        os.rename(aside, out)
        raise
    try:
        shutil.rmtree(aside)
    except OSError as exc:  # the new output is complete and in place; the next run removes the rest
        logger.warning("could not delete the previous %s (moved aside to %s): %s", out, aside, exc)
    return out


WRITE_ERRNOS = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)  # disk full, file-size limit (ulimit -f), quota


def _last_written(folder: Path) -> Path | None:
    """The file under `folder` modified last (the one a failed plain write was writing), or None."""
    files = [p for p in folder.rglob("*") if p.is_file()]
    return max(files, key=lambda p: p.stat().st_mtime_ns) if files else None


def _as_os_error(exc: SafetensorError, filename: str) -> OSError:
    """safetensors' error (``"Error while serializing: I/O error: File too large (os error 27)"``) as an OSError."""
    text = " ".join(str(exc).split())
    code = re.search(r"\(os error (\d+)\)", text)
    cause = re.sub(r"^Error while serializing: (I/O error: )?", "", text)
    return OSError(int(code.group(1)) if code else None, cause, filename)


@contextmanager
def write_errors_named(staging: str | Path, shown: str | Path) -> Iterator[None]:
    """Turn a write into `staging` that failed for space (disk full, ``ulimit -f``, quota) into one ``OSError``
    naming the file (as it would be under `shown`) and the cause.

    safetensors raises its own ``SafetensorError``, without the file name, and writes through a hidden temporary
    file it removes, so transformers' ``safe_save_file`` is wrapped for the duration to attach the name; a plain
    ``write`` raises an ``OSError`` without a file name, and the file modified last in `staging` is the one.
    """
    import transformers.modeling_utils as modeling_utils  # start-up: seconds to import; JSON and plot writes need none

    staging, shown = Path(staging), Path(shown)
    save_file = modeling_utils.safe_save_file

    def named_save_file(tensors, filename, *args, **kwargs):
        try:
            return save_file(tensors, filename, *args, **kwargs)
        except SafetensorError as exc:
            raise _as_os_error(exc, str(filename)) from exc

    modeling_utils.safe_save_file = named_save_file
    try:
        yield
    except OSError as exc:
        if exc.errno not in WRITE_ERRNOS:
            raise
        path = Path(exc.filename) if exc.filename is not None else _last_written(staging)
        if path is not None and path.is_relative_to(staging):
            path = shown / path.relative_to(staging)
        raise OSError(f"could not write {path or shown}: {exc.strerror} (free space: df; file-size limit: ulimit "
                      f"-f); nothing was written to {shown}") from exc
    finally:
        modeling_utils.safe_save_file = save_file


def save_atomically(output_dir: str | Path, write: Callable[[Path], None], overwrite: bool = False) -> Path:
    """Call ``write(tmp)`` on a temporary sibling folder, then move it to `output_dir` (nothing half-written)."""
    out = check_output_dir(output_dir, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_writing_prefix(out), dir=out.parent))
    try:
        with write_errors_named(tmp, out):
            write(tmp)
        publish_folder(tmp, out, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
