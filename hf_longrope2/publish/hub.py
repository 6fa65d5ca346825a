"""``hf-longrope2 push``: check an extended model folder, then upload it to the Hugging Face Hub.

```
hf-longrope2 push --model smollm2-32k --repo-id my-org/smollm2-longrope2-32k --dry-run   # files, sizes; no network
hf-longrope2 push --model smollm2-32k --repo-id my-org/smollm2-longrope2-32k --private
hf-longrope2 push --model smollm2-32k --repo-id my-org/smollm2-longrope2-32k --report eval/report.json  # + results
```

```python
>>> from hf_longrope2.publish.hub import check_model_folder, push
>>> files = check_model_folder("smollm2-32k")          # ValueError listing every problem
>>> push("smollm2-32k", "my-org/smollm2-longrope2-32k", private=True)
```

Everything is checked before anything goes over the network: ``config.json`` is a ``longrope2`` model (or its
``longrope`` serving export from ``hf-longrope2 export-serving``); the ``*.safetensors`` weights are complete
(every shard of the index, headers consistent with the file sizes); the code files named in ``auto_map`` and the
files they import relatively are there; a tokenizer; a ``README.md`` model card with metadata; the repo id.
Hidden files and folders (``.search-state``, atomic-write leftovers), ``checkpoint-*`` folders, ``__pycache__``
and ``*.tmp`` / ``*.pyc`` files are not uploaded. A credential anywhere in a file to upload, in its name or in
its safetensors metadata (``publish/secrets.py``) refuses the whole push. The upload is one
``HfApi.upload_folder`` call restricted to exactly the checked files, after ``create_repo`` (and
``create_branch`` for a new ``--revision``).
"""

from __future__ import annotations

import fnmatch
import glob
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from huggingface_hub import HfApi, ModelCard, constants, get_token
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.utils import HFValidationError
from huggingface_hub.utils import validate_repo_id as hub_validate
from transformers.dynamic_module_utils import get_relative_imports

from ..modeling.rope import rope_parameters
from ..utils.atomic import write_text_atomically
from ..utils.environment import __version__
from ..utils.loading import check_rope_values, weight_problems
from .cards import card_inputs, is_hub_id, render_model_card
from .secrets import refuse_secrets

JUNK_DIRS = ("__pycache__",)
JUNK_SUFFIXES = (".tmp", ".pyc", ".lock")
TOKENIZER_VOCABS = (
    "tokenizer.model", "spiece.model", "sentencepiece.bpe.model", "vocab.json", "vocab.txt", "tiktoken.model",
)
ROPE_TYPES = ("longrope2", "longrope")


def validate_repo_id(repo_id: str) -> str:
    """Raise ValueError (naming `repo_id`) unless it is a valid ``namespace/name`` Hub id."""
    if repo_id.count("/") != 1:
        raise ValueError(f"--repo-id must be namespace/name (e.g. my-org/smollm2-longrope2-32k), got {repo_id!r}")
    try:
        hub_validate(repo_id)
    except HFValidationError as exc:
        raise ValueError(f"--repo-id {repo_id!r} is not a valid Hub repo id: {exc}") from None
    return repo_id


CREDENTIAL_NAMES = (".env*", "id_rsa*", "id_dsa*", "id_ecdsa*", "id_ed25519*", "*.pem", "*.key", "*.p12",
                    "credentials*", ".netrc", ".git-credentials", ".pypirc")
PICKLED_ARGUMENTS = ("training_args.bin",)  # the Trainer's pickle of its arguments: may hold a token


def _skip_reason(relative: Path) -> str | None:
    for part in relative.parts[:-1]:
        if part.startswith("."):
            return "hidden folder"
        if part in JUNK_DIRS:
            return "cache folder"
        if part.startswith("checkpoint-"):
            return "Trainer checkpoint"
    name = relative.name
    if any(fnmatch.fnmatch(name.lower(), pattern) for pattern in CREDENTIAL_NAMES):
        return "looks like a credential (by its name): never uploaded"
    if name in PICKLED_ARGUMENTS:
        return "pickled training arguments (may hold a token): never uploaded; training_args.json is kept"
    if name.startswith("."):
        return "hidden file"
    if name.endswith(JUNK_SUFFIXES):
        return "temporary file"
    return None


def _entry_reason(path: Path, root: Path) -> str | None:
    """Why the file-system entry `path` inside `root` is not a regular file inside the folder, or None."""
    if path.is_symlink():
        try:
            target = path.resolve(strict=True)
        except (FileNotFoundError, RuntimeError):
            return f"dangling symlink (-> {os.readlink(path)})"
        if not target.is_relative_to(root):
            return f"symlink to {target}, outside the folder: never uploaded"
        if target.is_dir():
            return "symlink to a folder: not followed"
        if not target.is_file():
            return "symlink to something that is not a regular file"
        return None
    if path.is_dir():
        return None
    if not path.is_file():
        return "not a regular file"
    return None


def upload_files(folder: str | Path) -> tuple[list[str], dict[str, str]]:
    """(files to upload, {skipped path: reason}) of `folder`, as sorted POSIX paths relative to it.

    Only regular files inside the folder (or symlinks resolving to one) are uploaded; hidden, cache and
    checkpoint folders, temporary files, credential-looking files (by name), pickled training arguments,
    symlinks leaving the folder or to folders, dangling links and special files are skipped, each with its
    reason. (A credential inside a file is not a reason to skip it: it refuses the push, see
    [`check_model_folder`].)
    """
    folder = Path(folder)
    root = folder.resolve()
    files, skipped = [], {}
    for current, dirs, names in os.walk(folder):
        current_path = Path(current)
        for name in sorted(dirs):  # report a skipped folder once instead of every file inside it
            relative = (current_path / name).relative_to(folder)
            reason = _entry_reason(current_path / name, root) or _skip_reason(relative / "x")
            if reason:
                skipped[relative.as_posix() + "/"] = reason
                dirs.remove(name)
        for name in names:
            relative = (current_path / name).relative_to(folder)
            reason = _skip_reason(relative) or _entry_reason(current_path / name, root)
            if reason:
                skipped[relative.as_posix()] = reason
            else:
                files.append(relative.as_posix())
    return sorted(files), dict(sorted(skipped.items()))


def _check_config(folder: Path, problems: list[str]) -> dict | None:
    path = folder / "config.json"
    if not path.is_file():
        problems.append("config.json is missing: push needs a saved model folder (save_pretrained, hf-longrope2 "
                        "extend / search / midtrain)")
        return None
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        problems.append(f"config.json is not valid JSON ({exc})")
        return None
    try:
        check_rope_values(config, "config.json")
    except ValueError as exc:
        problems.append(str(exc))
    rope_type = rope_parameters(config).get("rope_type", "default")
    if rope_type not in ROPE_TYPES:
        problems.append(
            f"config.json has rope_type {rope_type!r} (model_type {config.get('model_type')!r}); push accepts a "
            "longrope2 model (hf-longrope2 extend / search / midtrain) or its 'longrope' serving export "
            "(hf-longrope2 export-serving)"
        )
    elif rope_type == "longrope2" and not config.get("auto_map"):
        problems.append("config.json of a longrope2 model has no auto_map, so it would load only where hf_longrope2 "
                        "is installed; save it with save_pretrained after hf_longrope2.extend (writes auto_map and "
                        "the code files)")
    return config


def _check_code(folder: Path, config: dict, problems: list[str]) -> None:
    """The modules ``auto_map`` names and, recursively, the files they import relatively."""
    references = []
    for value in (config.get("auto_map") or {}).values():
        references += value if isinstance(value, list) else [value]
    pending = [f"{ref.rsplit('.', 1)[0]}.py" for ref in references if ref and "--" not in ref]  # "repo--x.C": remote
    seen: set[str] = set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        if not (folder / name).is_file():
            problems.append(f"{name} is missing: config.json's auto_map (or a relative import) needs it for "
                            "trust_remote_code loading")
            continue
        pending += [f"{module.replace('.', '/')}.py" for module in get_relative_imports(folder / name)]


def _check_weights(folder: Path, files: list[str], problems: list[str]) -> None:
    if not any(f.endswith(".safetensors") for f in files):
        other = [f for f in files if f.endswith((".bin", ".pt", ".pth", ".gguf"))]
        problems.append("no *.safetensors weights" + (f" (found {other}; re-save with save_pretrained, which writes "
                                                        "safetensors)" if other else ""))
    problems += weight_problems(folder, files)


def _check_tokenizer(files: list[str], problems: list[str]) -> None:
    if "tokenizer.json" in files:
        return
    if "tokenizer_config.json" in files and any(f in TOKENIZER_VOCABS or f.endswith(".tiktoken") for f in files):
        return
    problems.append(f"no tokenizer: expected tokenizer.json, or tokenizer_config.json with its vocabulary (one of "
                    f"{', '.join(TOKENIZER_VOCABS)}); save it with tokenizer.save_pretrained(folder)")


def _check_card(folder: Path, files: list[str], problems: list[str], text: str | None) -> None:
    hint = ("render one with hf_longrope2.publish.cards.write_model_card(folder, base_model=...) or pass --write-card "
            "(hf-longrope2 search and midtrain write one)")
    if text is None and "README.md" not in files:
        problems.append(f"README.md (the model card) is missing: {hint}")
        return
    try:
        card = ModelCard(text if text is not None else (folder / "README.md").read_text(encoding="utf-8"))
    except (ValueError, yaml.YAMLError) as exc:
        problems.append(f"README.md has invalid card metadata: {' '.join(str(exc).split())}")
        return
    if not card.data.to_dict():
        problems.append(f"README.md has no metadata block (--- yaml ---) with library_name, tags, ...: {hint}")


def check_model_folder(folder: str | Path, card: str | None = None) -> list[str]:
    """Check that `folder` is a complete, loadable extended model and return the files to upload.

    Args:
        folder (`str` or `Path`): The model folder.
        card (`str`, *optional*): Check this text as ``README.md`` instead of the file (a card about to be written).

    Returns:
        `list[str]`: paths relative to `folder` (see [`upload_files`] for what is left out).

    Raises:
        ValueError: one message listing every problem found, each with what would be accepted; or, before
            those, every file to upload that holds a credential ([`hf_longrope2.publish.secrets.find_secrets`]).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"--model {str(folder)!r} is not a folder: pass a saved model folder")
    files, _ = upload_files(folder)
    problems: list[str] = []
    config = _check_config(folder, problems)
    if config is not None:
        _check_code(folder, config, problems)
    _check_weights(folder, files, problems)
    _check_tokenizer(files, problems)
    _check_card(folder, files, problems, card)
    upload = sorted(set(files) | ({"README.md"} if card is not None else set()))
    refuse_secrets(folder, upload, card)  # first: a credential refuses the push whatever else is wrong
    if problems:
        raise ValueError(f"{folder} is not ready to push: " + "; ".join(problems))
    return upload


def render_card(folder: str | Path, repo_id: str, report: str | None = None, report_model: str | None = None,
                base_model: str | None = None) -> str:
    """The folder's model card re-rendered for `repo_id` from its logs (and an evaluation report file);
    `base_model` (a Hub id) replaces the origin the logs recorded."""
    data = json.loads(Path(report).read_text()) if report else None
    inputs = card_inputs(folder)
    if base_model is not None:
        inputs["base_model"] = base_model
    text = str(render_model_card(folder, repo_id=repo_id, report=data, report_model=report_model, **inputs))
    return text if text.endswith("\n") else text + "\n"


def push(
    folder: str | Path,
    repo_id: str,
    *,
    files: Sequence[str] | None = None,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    token: str | None = None,
    card: str | None = None,
):
    """Upload the checked `files` of `folder` to the model repo `repo_id` and return the `CommitInfo`.

    Args:
        folder (`str` or `Path`): The model folder.
        repo_id (`str`): ``namespace/name``; the repo is created when missing.
        files (`Sequence[str]`, *optional*): Paths relative to `folder`; default [`check_model_folder`]'s list.
        private (`bool`): Create the repo private; an existing repo keeps its visibility.
        revision (`str`, *optional*): Branch to commit to, created from the default branch when missing.
        commit_message (`str`, *optional*): Default: ``"Upload <folder name> with hf-longrope2"``.
        token (`str`, *optional*): Default: `huggingface_hub.get_token()`.
        card (`str`, *optional*): A model card to write to ``README.md`` (atomically) once the token is found.

    Raises:
        ValueError: no token, offline mode, a folder that does not pass [`check_model_folder`], or a file to
            upload that holds a credential (also when `files` is given); nothing is uploaded then.
    """
    folder = Path(folder)
    validate_repo_id(repo_id)
    if files is None:
        files = check_model_folder(folder, card)
    else:  # a caller's own list: scanned for credentials all the same
        files = list(files)
        refuse_secrets(folder, files, card)
    if constants.is_offline_mode():
        raise ValueError("HF_HUB_OFFLINE is set: unset it to push (--dry-run works offline); nothing was uploaded")
    token = token or get_token()
    if token is None:
        raise ValueError("no Hugging Face token: run `hf auth login` or set HF_TOKEN to a token with write access "
                         "(--dry-run needs none); nothing was uploaded")
    if card is not None:
        write_text_atomically(folder / "README.md", card)
    api = HfApi(token=token, library_name="hf-longrope2", library_version=__version__)
    api.create_repo(repo_id, repo_type="model", private=True if private else None, exist_ok=True)
    if revision and revision != constants.DEFAULT_REVISION and not revision.startswith("refs/"):
        api.create_branch(repo_id, branch=revision, repo_type="model", exist_ok=True)
    return api.upload_folder(
        repo_id=repo_id,
        folder_path=folder,
        repo_type="model",
        revision=revision,
        commit_message=commit_message or f"Upload {folder.resolve().name} with hf-longrope2",
        allow_patterns=[glob.escape(f) for f in files],  # exactly the checked files, even with [*?] in a name
    )


def is_network_error(exc: BaseException) -> bool:
    """True for a connection, DNS or timeout error of the Hub client (httpx or requests) or the OS."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(names & {"TransportError", "NetworkError", "ConnectionError", "TimeoutException", "Timeout",
                         "ConnectError", "OfflineModeIsEnabled"}) or isinstance(exc, (ConnectionError, TimeoutError))


@dataclass
class PushArguments:
    model: str = field(default="", metadata={"help": "The model folder to upload (required)"})
    repo_id: str = field(default="", metadata={"help": "Target Hub repo, namespace/name (required)"})
    private: bool = field(
        default=False, metadata={"help": "Create the repo private (an existing repo keeps its visibility)"}
    )
    revision: str | None = field(
        default=None, metadata={"help": "Branch to commit to (created from main when missing); default: main"}
    )
    commit_message: str | None = field(default=None, metadata={"help": "Commit message; default names the folder"})
    dry_run: bool = field(
        default=False, metadata={"help": "Check the folder and list what would be uploaded; no network, no token"}
    )
    write_card: bool = field(
        default=False,
        metadata={"help": "Re-render README.md first (repo id in the load snippet, search / midtrain logs found)"},
    )
    report: str | None = field(
        default=None,
        metadata={"help": "report.json of `hf-longrope2 eval`: re-render README.md with its results (implies "
                          "--write-card)"},
    )
    report_model: str | None = field(
        default=None, metadata={"help": "This model's name in --report; default: found from its path"}
    )
    base_model: str | None = field(
        default=None,
        metadata={"help": "Hub id of the model it was extended from, for the card's base_model (implies "
                          "--write-card); default: the origin its search / midtrain logs recorded"},
    )

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("--model is required: the extended model folder to upload")
        if not self.repo_id:
            raise ValueError("--repo-id is required: the Hub repo to upload to, as namespace/name")
        validate_repo_id(self.repo_id)
        if self.revision is not None and not self.revision.strip():
            raise ValueError("--revision must be a branch name, got an empty string")
        if self.base_model is not None and not is_hub_id(self.base_model):
            raise ValueError(f"--base-model must be a Hub id (namespace/name) that is not a local path, got "
                             f"{self.base_model!r}: the card's base_model links to the Hub")


def run_push(args: PushArguments) -> None:
    """``hf-longrope2 push``: check the folder, then list it (``--dry-run``) or upload it and print the commit."""
    folder = Path(args.model)
    card = None
    if args.write_card or args.report or args.base_model:
        if not (folder / "config.json").is_file():
            raise ValueError(f"{folder / 'config.json'} is missing: --write-card needs a saved model folder")
        card = render_card(folder, args.repo_id, args.report, args.report_model, args.base_model)
    files = check_model_folder(folder, card)
    sizes = {f: len(card.encode()) if card and f == "README.md" else (folder / f).stat().st_size for f in files}
    revision = args.revision or "main"
    _, skipped = upload_files(folder)
    if args.dry_run:
        print(f"dry run: {len(files)} files, {sum(sizes.values()):,} bytes -> model repo {args.repo_id} "
              f"(revision {revision}, private {args.private})")
        for name in files:
            print(f"{sizes[name]:>15,}  {name}" + ("  (re-rendered card, not written)" if card and name == "README.md"
                                                   else ""))
        for name, reason in skipped.items():
            print(f"{'skipped':>15}  {name}  ({reason})")
        return
    for name, reason in skipped.items():
        print(f"skipped {name} ({reason})", file=sys.stderr)
    try:
        info = push(folder, args.repo_id, files=files, private=args.private, revision=args.revision,
                    commit_message=args.commit_message, card=card)
    except HfHubHTTPError as exc:
        raise ValueError(f"the Hub refused the upload to {args.repo_id}: {' '.join(str(exc).split())}") from None
    except Exception as exc:
        if not is_network_error(exc):
            raise
        raise ValueError(f"could not reach the Hub at {constants.ENDPOINT} ({type(exc).__name__}: {exc}); nothing was "
                         "uploaded: check the network (or HF_ENDPOINT) and run the same command again") from None
    print(f"uploaded {len(files)} files ({sum(sizes.values()):,} bytes) to {args.repo_id} (revision {revision})")
    print(f"commit: {info.commit_url}")
