"""Credentials in files about to be pushed: every byte of every file, its name, and safetensors header metadata.

```python
>>> from hf_longrope2.publish.secrets import find_secrets, refuse_secrets
>>> find_secrets("smollm2-32k", ["README.md", "config.json", "model.safetensors"])
['README.md line 12: a Hugging Face token (hf_...)']
>>> refuse_secrets("smollm2-32k", files)   # ValueError naming every hit and how to proceed; None when clean
```

What counts as a credential ([`SECRET_PATTERNS`]): a Hugging Face token, ``hf_`` followed by 30 or more ASCII
letters and digits, anywhere (start of a line, inside a sentence, a JSON / YAML value, a Python string, a
longer word); a private key block (``-----BEGIN ... PRIVATE KEY-----``: SSH, PEM, PGP). Files are read as
bytes in chunks of [`CHUNK_BYTES`] with an overlap longer than the longest pattern prefix that decides a match,
so a file of any size is scanned whole in bounded memory and a token straddling two chunks is still found.
A ``.safetensors`` file is also checked through its parsed JSON header (JSON ``\\u`` escapes decoded), and a
hit in its header is reported as "safetensors metadata". Text that is compressed, encoded (base64, UTF-16) or
split across string literals is not recognised: the scan reads what is literally there.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Sequence
from pathlib import Path

#: (pattern over raw bytes, what it is). The lengths are bounded so a match is decided within `OVERLAP` bytes.
SECRET_PATTERNS: tuple[tuple[re.Pattern[bytes], str], ...] = (
    (re.compile(rb"hf_[A-Za-z0-9]{30}"), "a Hugging Face token (hf_...)"),
    (re.compile(rb"-----BEGIN (?:[A-Z0-9]{1,12} ){0,3}PRIVATE KEY(?: BLOCK)?-----"),
     "a private key (-----BEGIN ... PRIVATE KEY-----)"),
)
CHUNK_BYTES = 8 * 2**20
OVERLAP = 128  # > the longest match of every pattern: a secret cut by a chunk boundary is whole in the next read
HOW_TO_PROCEED = (
    "nothing was uploaded: remove the credential from each file named (or move the file out of the folder), revoke "
    "a Hugging Face token that was ever written to disk at https://huggingface.co/settings/tokens, and push again"
)


def _first_match(data: bytes) -> tuple[int, str] | None:
    """(offset, what) of the earliest credential in `data`, or None."""
    hits = [(m.start(), what) for pattern, what in SECRET_PATTERNS if (m := pattern.search(data))]
    return min(hits) if hits else None


def scan_file(path: str | Path) -> tuple[int, int, str] | None:
    """(line, byte offset, what) of the first credential in the file at `path`, read whole in chunks, or None."""
    tail, tail_offset, lines_before = b"", 0, 0  # tail: the last OVERLAP bytes already searched
    with Path(path).open("rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            data = tail + chunk
            hit = _first_match(data)
            if hit is not None:
                start, what = hit
                return lines_before + data.count(b"\n", 0, start) + 1, tail_offset + start, what
            keep = max(len(data) - OVERLAP, 0)
            lines_before += data.count(b"\n", 0, keep)
            tail_offset += keep
            tail = data[keep:]
    return None


def _safetensors_header(path: Path) -> tuple[int, bytes] | None:
    """(header end offset, decoded header re-encoded as UTF-8 JSON) of a safetensors file, or None if unreadable."""
    with path.open("rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            return None
        (length,) = struct.unpack("<Q", prefix)
        if length > 100 * 2**20:  # safetensors' own limit on the header size
            return None
        raw = f.read(length)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return 8 + length, json.dumps(header, ensure_ascii=False).encode()


def find_secrets(folder: str | Path, files: Sequence[str], card: str | None = None) -> list[str]:
    """Every file of `files` (relative to `folder`) holding a credential, as ``"<file> line N: <what>"``.

    Args:
        folder (`str` or `Path`): The folder the files are in.
        files (`Sequence[str]`): POSIX paths relative to `folder`: the files about to be uploaded.
        card (`str`, *optional*): Text that will be uploaded as ``README.md`` instead of the file there.

    Returns:
        `list[str]`: one entry per file with a hit (its first hit), naming the file and the line, or
        ``file name`` / ``safetensors metadata``; the secret itself is never repeated.
    """
    folder = Path(folder)
    found = []
    for name in files:
        name_hit = _first_match(name.encode())
        if name_hit is not None:
            found.append(f"{name} (file name): {name_hit[1]}")
            continue
        path = folder / name
        if card is not None and name == "README.md":
            hit = _first_match(card.encode())
            if hit is not None:
                line = card.encode().count(b"\n", 0, hit[0]) + 1
                found.append(f"README.md (re-rendered card) line {line}: {hit[1]}")
            continue
        if name.endswith(".safetensors"):
            header = _safetensors_header(path)
            header_hit = _first_match(header[1]) if header else None
            if header_hit is not None:
                found.append(f"{name} (safetensors metadata): {header_hit[1]}")
                continue
        hit = scan_file(path)
        if hit is None:
            continue
        line, offset, what = hit
        if name.endswith(".safetensors") and header and offset < header[0]:
            found.append(f"{name} (safetensors metadata): {what}")
        else:
            found.append(f"{name} line {line}: {what}")
    return found


def refuse_secrets(folder: str | Path, files: Sequence[str], card: str | None = None) -> None:
    """Raise ValueError naming every file of `files` that holds a credential ([`find_secrets`]) and what to do."""
    found = find_secrets(folder, files, card)
    if found:
        raise ValueError(f"refusing to push {folder}: {len(found)} file(s) hold a credential: {'; '.join(found)}; "
                         f"{HOW_TO_PROCEED}")
