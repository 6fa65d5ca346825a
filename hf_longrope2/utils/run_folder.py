"""The output folder of a run and the state folder beside it that an interrupted run continues from.

```python
>>> from hf_longrope2.utils.run_folder import RunFolder
>>> run = RunFolder("out", "search")              # out/ appears only complete; out.search-state/ meanwhile
>>> run.begin(overwrite=False, resume=False)      # refuses a taken out/ or a leftover state before any work
>>> run.check_resume(identity, state["inputs"])    # on --resume: refuses other inputs (utils.identity), naming them
>>> run.save_state({"iteration": 3})              # atomically, after every step
>>> run.publish(lambda tmp: ..., overwrite=False) # writes a temporary sibling, renames it to out/, drops the state
```

Every runner (search, eval, midtrain, the tiny pretraining) goes through this one class, so the spelling of a
state folder (``OUTPUT.<stage>-state``, ``OUTPUT.checkpoints`` for the Trainer's checkpoints), the begin and
resume checks and the resume hint of an interrupted command live in one place.
"""

from __future__ import annotations

import os
import shlex
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .atomic import check_output_dir, publish_folder, save_atomically, write_json_atomically
from .identity import identity_change
from .loading import read_json

INPUTS_FILE = "run_inputs.json"  # the identity of the inputs (utils.identity), beside the state it belongs to


@dataclass(frozen=True)
class StageState:
    """How one stage keeps its state: folder suffix, the file that marks a resumable state, and its wording."""

    suffix: str
    marker: str
    what: str
    resume_flag: str = "--resume"
    # The Trainer's checkpoints: --overwrite starts them over, a checkpoint to resume may lie elsewhere, and they
    # stay after the run (a later evaluation of an intermediate step reads them).
    trainer_checkpoints: bool = False


STAGES: dict[str, StageState] = {
    "search": StageState("search-state", "state.json", "search"),
    "eval": StageState("eval-state", "state.json", "evaluation"),
    "pretrain": StageState("pretrain-state", "state.pt", "training"),
    "midtrain": StageState(
        "checkpoints", "checkpoint-*", "checkpoints", "--resume_from_checkpoint true", trainer_checkpoints=True
    ),
}


@dataclass(frozen=True)
class RunFolder:
    """`output_dir` (written once, complete) and the state folder of `stage` beside it."""

    output_dir: Path
    stage: str

    def __init__(self, output_dir: str | os.PathLike, stage: str) -> None:
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {list(STAGES)}, got {stage!r}")
        object.__setattr__(self, "output_dir", Path(os.path.normpath(output_dir)))
        object.__setattr__(self, "stage", stage)

    @property
    def kind(self) -> StageState:
        return STAGES[self.stage]

    @property
    def state_dir(self) -> Path:
        """``OUTPUT.<suffix>``: a sibling, so the output folder itself only ever holds a finished result."""
        return self.output_dir.with_name(f"{self.output_dir.name}.{self.kind.suffix}")

    @property
    def state_file(self) -> Path:
        """The file whose presence makes the state resumable (a pattern for the Trainer's checkpoints)."""
        return self.state_dir / self.kind.marker

    def has_state(self) -> bool:
        """True when an earlier run left something to resume from."""
        return self.state_dir.is_dir() and any(self.state_dir.glob(self.kind.marker))

    def begin(self, *, overwrite: bool, resume: bool, main_process: bool = True) -> None:
        """Refuse, before any work, a taken output folder and a state that does not fit `resume`.

        Raises:
            FileExistsError: `output_dir` is taken (see [`check_output_dir`]), or an earlier run left its state
                and neither `resume` nor (for the Trainer's checkpoints) `overwrite` says what to do with it.
            FileNotFoundError: `resume` without a state to resume (the Trainer checks its own checkpoint path).
            PermissionError: the parent folder cannot be written.
        """
        check_output_dir(self.output_dir, overwrite)
        kind = self.kind
        kept = self.state_dir.is_dir() and any(p.name != INPUTS_FILE for p in self.state_dir.iterdir())
        if resume and not self.has_state() and not kind.trainer_checkpoints:
            raise FileNotFoundError(f"--resume: no {kind.what} state at {self.state_file}")
        if resume or not (kept if kind.trainer_checkpoints else self.state_file.exists()):
            return
        if overwrite and kind.trainer_checkpoints:
            if main_process:
                shutil.rmtree(self.state_dir)
            return
        if kind.trainer_checkpoints:
            raise FileExistsError(f"{self.state_dir} holds {kind.what} of an earlier run: pass {kind.resume_flag} "
                                  "to continue it, or --overwrite to start over")
        raise FileExistsError(
            f"an earlier {kind.what} left its state in {self.state_dir}; pass --resume to continue it, or delete it"
        )

    def record_inputs(self, identity: dict, where: str | os.PathLike | None = None) -> Path:
        """Write `identity` ([`run_identity`]) as ``run_inputs.json`` in the state folder (or `where`), atomically
        (the Trainer's checkpoints; the JSON states of search and eval hold it under ``"inputs"``)."""
        folder = Path(where) if where is not None else self.state_dir
        folder.mkdir(parents=True, exist_ok=True)
        return write_json_atomically(folder / INPUTS_FILE, identity)

    def recorded_inputs(self, where: str | os.PathLike | None = None) -> dict | None:
        """The identity [`record_inputs`] wrote in the state folder (or `where`), or None."""
        path = (Path(where) if where is not None else self.state_dir) / INPUTS_FILE
        if not path.is_file():
            return None
        saved = read_json(path, f"{self.kind.resume_flag.split()[0]}: the recorded inputs")
        return saved if isinstance(saved, dict) else {}

    def check_resume(self, identity: dict, recorded: dict | None, *, where: str | os.PathLike | None = None,
                     required: bool = True) -> str | None:
        """Refuse to resume a state whose `recorded` inputs are not `identity` (both [`run_identity`] results).

        The two are compared by content ([`identity_change`]): the same model or dataset given by another path
        (relative, absolute, through a link) is accepted; a model file, dataset file or setting that changed is
        refused, naming it. A state that recorded nothing (an older hf-longrope2) is refused when `required`, else
        a note saying the inputs were not checked is returned. `where` names the state in the messages.

        Raises:
            ValueError: one line: what changed since the run started, and what to do.
        """
        folder = Path(where) if where is not None else self.state_dir
        flag = self.kind.resume_flag.split()[0]
        over = "pass --overwrite to start over" if self.kind.trainer_checkpoints else f"delete {folder} to start over"
        if recorded is None:
            message = (f"{flag}: {folder} records no identity of its inputs (written by an older hf-longrope2), "
                       "so a resume could mix two models or datasets")
            if required:
                raise ValueError(f"{message}; {over}")
            return f"note: {message}; resuming without that check"
        change = identity_change(recorded, identity)
        if change:
            raise ValueError(f"{flag}: {change}; the state in {folder} belongs to the inputs the run started with: "
                             f"give those again, or {over}")
        return None

    def read_state(self) -> Any:
        """The saved JSON state (ValueError naming the file when it is not JSON)."""
        return read_json(self.state_file, f"--resume: the {self.kind.what} state")

    def save_state(self, data: Any) -> Path:
        """Write the JSON state atomically: a run killed at any moment resumes from the last complete one."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        return write_json_atomically(self.state_file, data)

    def publish(self, write: Callable[[Path], None], *, overwrite: bool) -> Path:
        """``write(tmp)`` into a temporary sibling, rename it to `output_dir`, then drop the state it replaces."""
        out = save_atomically(self.output_dir, write, overwrite=overwrite)
        self.clear_state()
        return out

    @property
    def staging_dir(self) -> Path:
        """A hidden sibling that several processes write together (sharded saves) before [`publish_staged`]."""
        return self.output_dir.with_name(f".{self.output_dir.name}.saving")

    def publish_staged(self, *, overwrite: bool) -> Path:
        """Rename the complete [`staging_dir`] to `output_dir` (checked again), then drop the state it replaces."""
        out = publish_folder(self.staging_dir, self.output_dir, overwrite=overwrite)
        self.clear_state()
        return out

    def clear_state(self) -> None:
        """Drop the state of a finished run; the Trainer's checkpoints stay."""
        if not self.kind.trainer_checkpoints:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def resume_hint(self, command: Sequence[str]) -> str | None:
        """What an interrupted ``hf-longrope2 <command>`` kept and the command that continues it, or None."""
        if not self.has_state():
            return None
        flag = self.kind.resume_flag
        again = "hf-longrope2 " + " ".join(shlex.quote(a) for a in command if a != "--overwrite")
        resume = "" if flag.split()[0] in command else f" {flag}"
        kept = "checkpoints in {} are kept" if self.kind.trainer_checkpoints else "its state in {} is kept"
        return f"{kept.format(self.state_dir)}; continue with: {again}{resume}"
