"""``hf-longrope2 push``: check an extended model folder, then upload it to the Hugging Face Hub.

```bash
hf-longrope2 push --model smollm2-32k --repo-id my-org/smollm2-longrope2-32k --dry-run   # files, sizes; no network
hf-longrope2 push --model smollm2-32k --repo-id my-org/smollm2-longrope2-32k --private
hf-longrope2 push --model smollm2-32k --repo-id my-org/smollm2-longrope2-32k --report eval/report.json  # + results
```
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from huggingface_hub import constants
from huggingface_hub.errors import HfHubHTTPError

from ..publish.hub import check_model_folder, is_network_error, push, render_card, upload_files, validate_repo_id
from ..utils.arguments import Parser, parse_dataclasses
from ..utils.arguments import make_parser as make_dataclass_parser
from . import epilog


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

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("--model is required: the extended model folder to upload")
        if not self.repo_id:
            raise ValueError("--repo-id is required: the Hub repo to upload to, as namespace/name")
        validate_repo_id(self.repo_id)
        if self.revision is not None and not self.revision.strip():
            raise ValueError("--revision must be a branch name, got an empty string")


def make_parser() -> Parser:
    return make_dataclass_parser((PushArguments,), "hf-longrope2 push",
                                 "Check an extended model folder and upload it to the Hugging Face Hub.",
                                 epilog("publishing"))


def parse_args(argv: Sequence[str]) -> PushArguments:
    return parse_dataclasses((PushArguments,), argv, parser=make_parser())[0]


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    folder = Path(args.model)
    card = None
    if args.write_card or args.report:
        if not (folder / "config.json").is_file():
            raise ValueError(f"{folder / 'config.json'} is missing: --write-card needs a saved model folder")
        card = render_card(folder, args.repo_id, args.report, args.report_model)
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
        return 0
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
    return 0
