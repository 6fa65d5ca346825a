"""Raw text documents from a dataset spec, for needle haystacks, midtraining and evaluation.

```python
>>> from hf_longrope2.data.texts import load_texts, source_fingerprint
>>> docs = load_texts("builtin:pydoc")  # offline, ships with CPython
>>> min(len(d) for d in docs) >= 60_000
True
>>> docs = load_texts("data/books", text_column="text", max_documents=8)  # a local file or directory
>>> docs = load_texts("emozilla/pg19", split="validation")  # a Hugging Face Hub dataset id
>>> key = source_fingerprint("data/books")  # changes when a file under data/books changes
```

A spec is one of

- a built-in source ([`BUILTIN_SOURCES`]): ``builtin:pydoc`` (the pydoc topics, grouped into documents of at
  least 60k characters) or ``builtin:stdlib`` (the standard library's ``.py`` files, one document per file),
  whole or one of its two fixed slices, ``builtin:pydoc:heldout`` / ``builtin:pydoc:train`` (and the same for
  stdlib): half the pydoc topics and a fifth of the stdlib files, chosen by a hash of their names
  ([`in_heldout_slice`]), are held out of the miniature's midtraining so its evaluation measures text the base
  saw in pretraining and midtraining never did;
- a local file or directory (searched recursively, sorted by relative path) of [`TEXT_EXTENSIONS`] files:
  ``.txt``/``.md`` give one document per file, ``.jsonl``/``.json``/``.parquet`` one per record's ``text_column``;
- otherwise a Hub dataset id, loaded with ``datasets.load_dataset(dataset, config_name, split=split)``.

Empty and whitespace-only documents are skipped everywhere.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import itertools
import json
import logging
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

BUILTIN_SOURCES = ("builtin:pydoc", "builtin:stdlib")
BUILTIN_SLICES = ("heldout", "train")
# Fixed: the slices must not move between releases, or retention numbers stop comparing. 2 is the first seed that
# leaves three pydoc documents in each slice (the demo scores perplexity on three held-out documents).
HELDOUT_SEED = 2
HELDOUT_SHARE = {"builtin:pydoc": 0.5, "builtin:stdlib": 0.2}  # fraction of topics / files held out of midtraining
TEXT_EXTENSIONS = (".txt", ".md", ".jsonl", ".json", ".parquet")

PYDOC_MIN_CHARS = 60_000
STDLIB_MIN_CHARS = 2_000
STDLIB_PACKAGES = ("json", "email", "asyncio", "concurrent", "importlib", "logging", "unittest", "xml", "http", "urllib")
STDLIB_SKIP_DIRS = frozenset({"test", "tests", "idlelib", "site-packages"})
_PATH_PREFIXES = ("/", "./", "../", "~")


def local_path(dataset: str) -> Path | None:
    """The local path `dataset` names, None for a Hub id; raises for a path-like spec that does not exist."""
    try:
        path = Path(dataset).expanduser()
    except RuntimeError:  # "~user/..." for an unknown user
        path = Path(dataset)
    if path.exists():
        return path
    if dataset.startswith(_PATH_PREFIXES) or dataset.lower().endswith(TEXT_EXTENSIONS):
        raise FileNotFoundError(
            f"local dataset path {dataset!r} does not exist; expected an existing file or directory of "
            f"{', '.join(TEXT_EXTENSIONS)} files, one of {BUILTIN_SOURCES}, or a Hugging Face Hub dataset id"
        )
    return None


def builtin_specs() -> tuple[str, ...]:
    """Every accepted built-in spec: each source whole and each of its slices."""
    return BUILTIN_SOURCES + tuple(f"{source}:{part}" for source in BUILTIN_SOURCES for part in BUILTIN_SLICES)


def split_builtin(dataset: str) -> tuple[str, str | None]:
    """``("builtin:pydoc", "heldout")`` for ``builtin:pydoc:heldout``; ``(dataset, None)`` for a whole source."""
    source, _, part = dataset.rpartition(":") if dataset.count(":") == 2 else (dataset, "", "")
    return source, part or None


def _check_builtin(dataset: str) -> None:
    if dataset.startswith("builtin:") and dataset not in builtin_specs():
        raise ValueError(f"unknown built-in source {dataset!r}; accepted built-in sources: {builtin_specs()}")


def in_heldout_slice(source: str, name: str) -> bool:
    """True when the pydoc topic or stdlib file `name` of `source` is in the held-out slice.

    Fixed by a hash of (seed, source, name), not by position, so adding a topic or file to a new Python moves no
    other one between the slices.
    """
    digest = hashlib.sha256(f"{HELDOUT_SEED}:{source}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < HELDOUT_SHARE[source]


def _keep(source: str, part: str | None, name: str) -> bool:
    return part is None or in_heldout_slice(source, name) == (part == "heldout")


def local_files(path: Path) -> list[tuple[str, Path]]:
    """``(relative path, path)`` of the readable files at `path`, sorted by relative path."""
    if path.is_file():
        if path.suffix.lower() not in TEXT_EXTENSIONS:
            raise ValueError(f"unsupported file type {path.suffix!r} for {path}; accepted extensions: {TEXT_EXTENSIONS}")
        return [(path.name, path)]
    files = sorted(
        (p.relative_to(path).as_posix(), p)
        for p in path.rglob("*")
        if p.suffix.lower() in TEXT_EXTENSIONS and p.is_file()
    )
    if not files:
        raise ValueError(f"directory {path} contains no files with an accepted extension {TEXT_EXTENSIONS}")
    return files


def _text_of(record: Any, column: str, where: str) -> str:
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object with a {column!r} field, got {type(record).__name__}")
    if column not in record:
        raise ValueError(f"text column {column!r} not found in {where}; available columns: {sorted(record)}")
    value = record[column]
    if value is not None and not isinstance(value, str):
        raise ValueError(f"text column {column!r} in {where} holds {type(value).__name__}; expected strings")
    return value or ""


def _read_records(path: Path, column: str, max_chars: int | None) -> Iterator[str]:
    suffix = path.suffix.lower()
    if suffix in (".txt", ".md"):
        with path.open(encoding="utf-8") as handle:  # at most max_chars read: a huge file costs no more
            yield handle.read(-1 if max_chars is None else max_chars)
    elif suffix == ".jsonl":
        with path.open(encoding="utf-8") as handle:
            for lineno, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{lineno}: invalid JSON line ({exc.msg})") from exc
                yield _text_of(record, column, f"{path}:{lineno}")
    elif suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
        if isinstance(data, dict) and isinstance(data.get("data"), list):
            data = data["data"]
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected a JSON list of objects or an object with a 'data' list")
        for index, record in enumerate(data):
            yield _text_of(record, column, f"{path}[{index}]")
    else:  # .parquet
        import pyarrow as pa  # start-up: only .parquet files need pyarrow
        import pyarrow.parquet as pq

        try:
            names = pq.read_schema(path).names
        except (pa.ArrowException, OSError) as exc:
            raise ValueError(f"{path} is not a readable Parquet file ({' '.join(str(exc).split())})") from None
        if column not in names:
            raise ValueError(f"text column {column!r} not found in {path}; available columns: {names}")
        for value in pq.read_table(path, columns=[column]).column(column).to_pylist():
            yield _text_of({column: value}, column, str(path))


def _read_file(path: Path, column: str, max_chars: int | None = None) -> Iterator[str]:
    """The documents of one local file, each cut to `max_chars`; a file that is not UTF-8 text is named."""
    try:
        for text in _read_records(path, column, max_chars):
            yield text if max_chars is None else text[:max_chars]
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not UTF-8 text (byte {exc.object[exc.start:exc.start + 1]!r} at offset "
                         f"{exc.start} of a read; convert it with iconv or pass another --dataset)") from None


def _pydoc_documents(part: str | None = None) -> list[str]:
    from pydoc_data.topics import topics  # a 0.7 MB module of text: loaded for builtin:pydoc only

    documents: list[str] = []
    current: list[str] = []
    size = 0
    for key in sorted(topics):
        if not _keep("builtin:pydoc", part, key):
            continue
        text = topics[key].strip()
        size += len(text) + (2 if current else 0)  # 2: the blank-line separator
        current.append(text)
        if size >= PYDOC_MIN_CHARS:
            documents.append("\n\n".join(current))
            current, size = [], 0
    if current:
        remainder = "\n\n".join(current)
        if documents:
            documents[-1] = f"{documents[-1]}\n\n{remainder}"
        else:
            documents.append(remainder)
    return documents


def _stdlib_files() -> list[Path]:
    root = Path(os.__file__).parent
    files = [p for p in root.glob("*.py") if p.is_file()]
    for package in STDLIB_PACKAGES:
        for p in (root / package).rglob("*.py"):
            if not STDLIB_SKIP_DIRS.intersection(p.relative_to(root).parts[:-1]):
                files.append(p)
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def _stdlib_documents(part: str | None = None) -> list[str]:
    documents, undecodable = [], 0
    root = Path(os.__file__).parent
    for path in _stdlib_files():
        if not _keep("builtin:stdlib", part, path.relative_to(root).as_posix()):
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            undecodable += 1
            continue
        if len(text) >= STDLIB_MIN_CHARS:
            documents.append(text)
    if undecodable:
        logger.info("builtin:stdlib skipped %d standard library files that are not valid UTF-8", undecodable)
    if not documents:
        raise ValueError(f"no standard library sources found under {Path(os.__file__).parent} for builtin:stdlib")
    return documents


def _hub_documents(dataset: str, split: str, column: str, config_name: str | None) -> Iterator[str]:
    import datasets  # start-up: datasets takes ~1 s to import; only Hub sources need it

    try:
        ds = datasets.load_dataset(dataset, config_name, split=split)
    except Exception as exc:
        first_line = (str(exc).strip().splitlines() or [""])[0]
        raise ValueError(
            f"could not load dataset {dataset!r} (config {config_name!r}, split {split!r}) with datasets.load_dataset: "
            f"{type(exc).__name__}: {first_line}. A local file or directory of {', '.join(TEXT_EXTENSIONS)} files, "
            f"or one of {BUILTIN_SOURCES}, also works."
        ) from exc
    if column not in ds.column_names:
        raise ValueError(f"text column {column!r} not found in dataset {dataset!r}; available columns: {ds.column_names}")
    batches = ds.select_columns([column]).iter(batch_size=256)  # lazy: max_documents stops reading early
    return (_text_of({column: v}, column, f"dataset {dataset!r}") for batch in batches for v in batch[column])


def load_texts(
    dataset: str,
    *,
    split: str = "validation",
    text_column: str = "text",
    config_name: str | None = None,
    max_documents: int | None = None,
    max_chars: int | None = None,
) -> list[str]:
    """Load the raw text documents of `dataset` (see the module docstring for the accepted specs).

    Args:
        dataset: ``builtin:pydoc``, ``builtin:stdlib``, a local file or directory, or a Hub dataset id.
        split: The Hub dataset split (ignored for local and built-in sources).
        text_column: The field holding the text in ``.jsonl``/``.json``/``.parquet`` files and Hub datasets.
        config_name: The Hub dataset configuration, if it has several.
        max_documents: Keep only the first this many documents (after ordering); ``None`` keeps all.
        max_chars: Keep only the first this many characters of each document (a local ``.txt`` / ``.md`` file is
            read no further), so one huge document costs bounded memory downstream; ``None`` keeps all.

    Returns:
        The non-empty documents, in a deterministic order for built-in and local sources.
    """
    if max_documents is not None and (not isinstance(max_documents, int) or max_documents < 1):
        raise ValueError(f"max_documents must be a positive integer or None, got {max_documents!r}")
    _check_builtin(dataset)
    source, part = split_builtin(dataset)
    if source == "builtin:pydoc":
        texts: Iterable[str] = _pydoc_documents(part)
    elif source == "builtin:stdlib":
        texts = _stdlib_documents(part)
    elif (path := local_path(dataset)) is not None:
        texts = itertools.chain.from_iterable(_read_file(p, text_column, max_chars) for _, p in local_files(path))
    else:
        texts = _hub_documents(dataset, split, text_column, config_name)
    if max_chars is not None:
        texts = (text[:max_chars] for text in texts)
    return list(itertools.islice((text for text in texts if text.strip()), max_documents))


def source_fingerprint(
    dataset: str, *, split: str = "validation", text_column: str = "text", config_name: str | None = None
) -> str:
    """A short sha256 hex digest that changes whenever the documents `load_texts` returns could change.

    Built-in sources hash the spec and ``sys.version``; local sources every matched file's relative path, size
    and ``mtime_ns`` (files are not read); Hub ids the id, configuration, split, column and ``datasets`` version.
    """
    _check_builtin(dataset)
    parts: list[str] = [dataset]
    if dataset in builtin_specs():
        parts += [sys.version, str(HELDOUT_SEED), json.dumps(HELDOUT_SHARE, sort_keys=True)]
    elif (path := local_path(dataset)) is not None:
        parts += [split, text_column]
        for relative, file in local_files(path):
            stat = file.stat()
            parts.append(f"{relative}\t{stat.st_size}\t{stat.st_mtime_ns}")
    else:
        parts += [str(config_name), split, text_column, importlib.metadata.version("datasets")]
    return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()[:16]


def describe(dataset: str, split: str, text_column: str) -> str:
    """A one-line human description of `dataset`, e.g. ``"local directory /data (3 files)"``."""
    _check_builtin(dataset)
    source, part = split_builtin(dataset)
    of = {None: "", "heldout": ", held-out slice", "train": ", training slice"}[part]
    if source == "builtin:pydoc":
        return f"built-in Python documentation (pydoc topics{of})"
    if source == "builtin:stdlib":
        return f"built-in Python standard library sources (.py files{of})"
    path = local_path(dataset)
    if path is None:
        return f"Hub dataset {dataset} [{split}] column {text_column!r}"
    if path.is_file():
        return f"local file {path}"
    return f"local directory {path} ({len(local_files(path))} files)"
