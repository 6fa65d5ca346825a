"""What a run's inputs are, by content, so a resumed run can tell "the same inputs" from "the same strings".

```python
>>> from hf_longrope2.utils.identity import run_identity, identity_change
>>> saved = run_identity({"--model": "./tiny"}, {"--dataset": "books/"}, {"seed": 0})
>>> identity_change(saved, run_identity({"--model": "/abs/tiny"}, {"--dataset": "books/"}, {"seed": 0}))  # None
```

The identity of a run's inputs ([`run_identity`]) is a JSON-ready dict:

- a local model folder: its resolved path (shown, not compared) and, for every regular file in it, the size and a
  sha256 of its content (the whole file up to 2 MB; beyond that its first and last MB), plus for ``*.safetensors``
  the sha256 of the header (every tensor's name, dtype, shape and offsets, and the metadata);
- a local dataset file or folder (every regular file under it): the same size and first/last MB sha256;
- a Hub id, a ``builtin:`` source or anything that is not a local path: the string itself;
- the settings: every value as given.

[`identity_change`] compares two identities by content, so the same folder given by a relative and an absolute
path (or through a symbolic link) is the same input, and returns one line naming what changed.

What is not seen, honestly: a change confined to the middle of a file larger than 2 MB that keeps its size (a
rewrite of the same tensors with other values changes their first and last MB in practice, but not by
construction), and a Hub repository that changed under the same id and revision.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

EDGE_BYTES = 1 << 20  # first and last MB of a file: enough to see a replaced file, cheap for a 10 GB shard
IDENTITY_VERSION = 1
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".h5", ".msgpack")


def content_digest(path: str | Path) -> dict:
    """``{"size", "sha256"}`` of `path`: the whole file up to 2 MB, else its first and last MB (and size)."""
    path = Path(path)
    size = path.stat().st_size
    digest = hashlib.sha256()
    with path.open("rb") as f:
        if size <= 2 * EDGE_BYTES:
            for block in iter(lambda: f.read(EDGE_BYTES), b""):
                digest.update(block)
        else:
            digest.update(f.read(EDGE_BYTES))
            f.seek(size - EDGE_BYTES)
            digest.update(f.read(EDGE_BYTES))
    return {"size": size, "sha256": digest.hexdigest()}


def safetensors_header_digest(path: str | Path) -> str | None:
    """sha256 of the JSON header of a safetensors file (tensor names, dtypes, shapes, offsets, metadata), or None."""
    try:
        with Path(path).open("rb") as f:
            length = int.from_bytes(f.read(8), "little")
            if not 0 < length <= Path(path).stat().st_size - 8:
                return None
            return hashlib.sha256(f.read(length)).hexdigest()
    except OSError:
        return None


def _local(name: str) -> Path | None:
    """`name` as an existing local path, or None (a Hub id, ``builtin:``, inline YAML, a missing path)."""
    try:
        path = Path(name).expanduser()
        return path if path.exists() else None
    except (OSError, ValueError):  # a name too long to be a path, a NUL byte
        return None


def _regular_files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.is_file() and not any(part.startswith(".") for part in
                                                                          p.relative_to(root).parts))


def model_identity(name: str) -> dict:
    """The identity of a model source: a local folder by the content of its files, anything else by its name."""
    path = _local(name)
    if path is None or not path.is_dir():
        return {"name": name}
    files = {}
    for file in sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")):
        entry = content_digest(file)
        if file.suffix == ".safetensors":
            entry["header_sha256"] = safetensors_header_digest(file)
        files[file.name] = entry
    return {"path": str(path.resolve()), "files": files}


def data_identity(name: str) -> dict:
    """The identity of a dataset (or other input file): local files by size and content, anything else by name."""
    path = _local(name)
    if path is None:
        return {"name": name}
    root = path.resolve()
    files = {str(p.relative_to(root)) if p != root else p.name: content_digest(p) for p in _regular_files(root)}
    return {"path": str(root), "files": files}


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def run_identity(models: Mapping[str, str | None], data: Mapping[str, str | None], settings: Mapping[str, Any]
                 ) -> dict:
    """The identity of a run's inputs: `models` and `data` map a flag (``--model``) to a path or id (None: not
    given), `settings` every other value of the run."""
    return {
        "version": IDENTITY_VERSION,
        "models": {flag: model_identity(value) for flag, value in models.items() if value},
        "data": {flag: data_identity(value) for flag, value in data.items() if value},
        "settings": _plain(dict(settings)),
    }


def _where(entry: dict) -> str:
    return entry.get("path") or entry.get("name") or "?"


def _file_change(flag: str, kind: str, saved: dict, current: dict) -> str | None:
    """The first file of an input that was added, removed or changed, as one clause, or None."""
    was, now = saved.get("files", {}), current.get("files", {})
    if "files" not in saved or "files" not in current:
        if saved.get("name") != current.get("name") or ("files" in saved) != ("files" in current):
            return f"{flag} was {_where(saved)}, now {_where(current)}"
        return None
    for name in sorted(set(was) | set(now)):
        if name not in now:
            return f"{flag} {_where(current)}: {name} is gone"
        if name not in was:
            return f"{flag} {_where(current)}: {name} is new"
        a, b = was[name], now[name]
        if a == b:
            continue
        what = "model weights" if kind == "model" and name.endswith(WEIGHT_SUFFIXES) else (
            f"model {name}" if kind == "model" else "dataset file")
        detail = (f"size {a.get('size')} -> {b.get('size')} bytes" if a.get("size") != b.get("size") else
                  "tensor names, shapes or metadata differ" if a.get("header_sha256") != b.get("header_sha256") else
                  "content differs")
        return f"{what} changed since the run started: {flag} {_where(current)}: {name} ({detail})"
    return None


def identity_change(saved: dict, current: dict) -> str | None:
    """One line naming the first input or setting that differs between two [`run_identity`] results, or None."""
    for group, kind in (("models", "model"), ("data", "data")):
        was, now = saved.get(group, {}), current.get(group, {})
        for flag in sorted(set(was) | set(now)):
            if flag not in now:
                return f"{flag} {_where(was[flag])} was an input of the run, now it is not given"
            if flag not in was:
                return f"{flag} {_where(now[flag])} is given now but was not an input of the run"
            change = _file_change(flag, kind, was[flag], now[flag])
            if change:
                if not change.startswith(("model", "dataset")):
                    change = f"{'model' if kind == 'model' else 'input'} changed since the run started: {change}"
                return change
    was, now = saved.get("settings", {}), current.get("settings", {})
    differing = sorted(k for k in set(was) | set(now) if was.get(k) != now.get(k))
    if differing:
        shown = ", ".join(f"{k}: {was.get(k)!r} -> {now.get(k)!r}" for k in differing[:4])
        more = f" (and {len(differing) - 4} more)" if len(differing) > 4 else ""
        return f"settings differ from the run's: {shown}{more}"
    return None
