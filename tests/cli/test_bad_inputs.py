"""Bad and unusual inputs across every verb: exit code, the one-line message, and nothing written or changed.

Each case of `CASES` runs the real command line in-process on tiny models built once for the module, and
asserts: the exit code, a message naming the bad thing (one line on stderr, no traceback), and that no file
under the test's folders was created, changed or removed (the output folder never appears).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import huggingface_hub
import pytest

from hf_longrope2 import cli
from hf_longrope2.publish.cards import write_model_card
from hf_longrope2.tiny.models import char_tokenizer, extended_pair

ROOT = Path(__file__).resolve().parents[2]
TINY_RECIPE = str(ROOT / "recipes" / "tiny" / "midtrain.yaml")
TOKEN = "hf_" + "Zq8" * 11 + "x"  # token-shaped: hf_ + 34 alphanumerics


BROKEN_LONGROPE2: dict[str, Callable[[dict], None]] = {
    "no_rope_type": lambda rope: rope.pop("rope_type"),
    "original_above_max": lambda rope: rope.update(original_max_position_embeddings=256),  # max is 128
    "short_long_factor": lambda rope: rope.update(long_factor=rope["long_factor"][:-1]),  # 7 of 8 pairs
    "huge_mscale": lambda rope: rope.update(long_mscale=1e300),  # finite in float64, inf in float32
    "factor_below_one": lambda rope: rope["long_factor"].__setitem__(0, 0.5),
}


OTHER_CONFIGS: dict[str, Callable[[dict], None]] = {
    "qwen2_config": lambda c: c.update(model_type="qwen2", architectures=["Qwen2ForCausalLM"]),  # q/k/v biases
    "wide_mlp_config": lambda c: c.update(intermediate_size=2 * c["intermediate_size"]),  # MLP of another shape
}


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_llama) -> Path:
    """base/ (plain tiny Llama), ext/ (extended, with card), nan/ (ext with a NaN long factor), broken copies."""
    root = tmp_path_factory.mktemp("models")
    shutil.copytree(tiny_llama, root / "base")
    _, ext = extended_pair("llama")
    ext.save_pretrained(root / "ext")
    char_tokenizer().save_pretrained(root / "ext")
    write_model_card(root / "ext", base_model="tiny")
    shutil.copytree(root / "ext", root / "nan")
    config = json.loads((root / "nan" / "config.json").read_text())
    config["rope_parameters"]["long_factor"][0] = float("nan")
    (root / "nan" / "config.json").write_text(json.dumps(config))  # json writes NaN, as Python does
    for name, edit in BROKEN_LONGROPE2.items():  # saved longrope2 configs that contradict themselves
        shutil.copytree(root / "ext", root / name)
        config = json.loads((root / name / "config.json").read_text())
        edit(config["rope_parameters"])
        (root / name / "config.json").write_text(json.dumps(config))
    for name, edit in OTHER_CONFIGS.items():  # another model's config over the base's weights
        shutil.copytree(root / "base", root / name)
        config = json.loads((root / name / "config.json").read_text())
        edit(config)
        (root / name / "config.json").write_text(json.dumps(config))
    shutil.copytree(root / "base", root / "trunc_config")
    text = (root / "trunc_config" / "config.json").read_text()
    (root / "trunc_config" / "config.json").write_text(text[: len(text) // 2])
    shutil.copytree(root / "base", root / "trunc_weights")
    weights = root / "trunc_weights" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1000])
    return root


@dataclass
class Case:
    """One bad input: `argv(models, tmp)` (after ``hf-longrope2``), and what must come back."""

    argv: Callable[[Path, Path], list[str]]
    code: int
    message: str  # a substring of the one error line
    setup: Callable[[Path, Path], None] | None = None
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None  # run in this folder under the test's folder


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _output_is_file(models: Path, tmp: Path) -> None:
    _write(tmp / "taken", "a file the user keeps")


def _parent_is_file(models: Path, tmp: Path) -> None:
    _write(tmp / "FILE", "a file, so FILE/out cannot be created")


def _user_folder(models: Path, tmp: Path) -> None:
    shutil.copytree(models / "ext", tmp / "mine")
    _write(tmp / "mine" / "NOTES.md", "the user's notes")


def _project(models: Path, tmp: Path) -> None:
    """proj/ (the user's work: src/, a factors file) and mine/ (a model folder of the user's, with notes)."""
    _write(tmp / "proj" / "src" / "main.py", "print('the user's code')\n")
    _write(tmp / "proj" / "factors.json", json.dumps({"long_factor": [1.0, 1.5, 2.0, 2.0]}))
    _user_folder(models, tmp)


def _symlink(target: str) -> Callable[[Path, Path], None]:
    def setup(models: Path, tmp: Path) -> None:
        _project(models, tmp)
        (tmp / "link").symlink_to(tmp / target)
    return setup


def _left_aside(models: Path, tmp: Path) -> None:
    """What a run killed between the two renames of an --overwrite leaves: the old output aside, none in place."""
    shutil.copytree(models / "ext", tmp / ".out.replaced-4242")


def _pretokenized(tmp: Path, documents: list[list[int]]) -> None:
    _write(tmp / "tok.jsonl", "".join(json.dumps({"input_ids": ids * 40}) + "\n" for ids in documents))
    _write(tmp / "mix.yaml", f"- {{dataset: {tmp / 'tok.jsonl'}, tokenized: true, name: tok}}\n")


def _extend(model: str, out: str = "out", *extra: str) -> Callable[[Path, Path], list[str]]:
    return lambda m, t: ["extend", "--model", str(m / model if not model.startswith("/") else model),
                         "--target-length", "256", "--output-dir", str(t / out), *extra]


def _search(model: str, out: str = "out", *extra: str) -> Callable[[Path, Path], list[str]]:
    return lambda m, t: ["search", "--model", str(m / model), "--target-length", "256", "--dataset", "builtin:pydoc",
                         "--num-samples", "2", "--output-dir", str(t / out), *extra]


def _search_on(models: Path, tmp: Path, dataset: str) -> list[str]:
    return ["search", "--model", str(models / "base"), "--target-length", "256", "--dataset", str(tmp / dataset),
            "--num-samples", "2", "--output-dir", str(tmp / "out")]


def _eval(model: str, out: str = "out") -> Callable[[Path, Path], list[str]]:
    return lambda m, t: ["eval", "--model", str(m / model), "--lengths", "32", "--output-dir", str(t / out)]


def _midtrain(model: str, out: str = "out") -> Callable[[Path, Path], list[str]]:
    return lambda m, t: ["midtrain", "--config", TINY_RECIPE, "--model_name_or_path", str(m / model),
                         "--output_dir", str(t / out)]


def _push(model: str) -> Callable[[Path, Path], list[str]]:
    return lambda m, t: ["push", "--model", str(m / model), "--repo-id", "me/x", "--dry-run"]


def _export(model: str) -> Callable[[Path, Path], list[str]]:
    return lambda m, t: ["export-serving", "--model", str(m / model), "--output-dir", str(t / "out")]


def _eval_mine(m: Path, t: Path) -> list[str]:
    return ["eval", "--model", str(t / "mine"), "--lengths", "32", "--output-dir", str(t / "out")]


def _eval_state_then_config_edited(m: Path, t: Path) -> None:
    """An interrupted eval of mine/ (its state records mine/ by content), then mine/config.json edited."""
    from dataclasses import replace

    from hf_longrope2.evaluation.runner import run_inputs

    shutil.copytree(m / "base", t / "mine")
    config = cli.parse_args("eval", _eval_mine(m, t)[1:])
    inputs = run_inputs(replace(config, model=[str(t / "mine")]))
    _write(t / "out.eval-state" / "state.json", json.dumps({"settings": {}, "inputs": inputs, "cells": {}}))
    edited = json.loads((t / "mine" / "config.json").read_text()) | {"initializer_range": 0.5}
    (t / "mine" / "config.json").write_text(json.dumps(edited))


def _midtrain_checkpoint_at_lr(lr: str) -> Callable[[Path, Path], None]:
    """A checkpoints folder of a midtraining of ext/ run with learning rate `lr` (its run_inputs.json)."""

    def setup(m: Path, t: Path) -> None:
        from hf_longrope2.midtrain.runner import run_inputs

        config = cli.parse_args("midtrain", [*_midtrain("ext")(m, t)[1:], "--learning_rate", lr])
        (t / "out.checkpoints" / "checkpoint-1").mkdir(parents=True)
        inputs = run_inputs(config.script, config.training, config.model)
        _write(t / "out.checkpoints" / "run_inputs.json", json.dumps(inputs))

    return setup


CASES: dict[str, Case] = {
    # a local path that does not exist: refused at once, never sent to the Hub
    "extend-missing-model": Case(_extend("nope"), 2, "nope: no such folder"),
    "search-missing-model": Case(_search("nope"), 2, "nope: no such folder"),
    "eval-missing-model": Case(_eval("nope"), 2, "nope: no such folder"),
    "midtrain-missing-model": Case(_midtrain("nope"), 2, "nope: no such folder"),
    "export-missing-model": Case(lambda m, t: ["export-serving", "--model", str(m / "nope"), "--output-dir",
                                               str(t / "out")], 2, "nope: no such folder"),
    "factors-missing-model": Case(lambda m, t: ["factors", "--model", str(m / "nope"), "--target-length", "256"], 2,
                                  "nope: no such folder"),
    "extend-model-is-a-file": Case(_extend("base/config.json"), 2, "config.json is a file; pass a model folder"),
    # broken model folders: named before anything is loaded
    "extend-truncated-config": Case(_extend("trunc_config"), 2, "trunc_config/config.json is not valid JSON (line"),
    "extend-truncated-weights": Case(_extend("trunc_weights"), 2, "model.safetensors is truncated or padded"),
    "eval-truncated-weights": Case(_eval("trunc_weights"), 2, "model.safetensors is truncated or padded"),
    "search-truncated-config": Case(_search("trunc_config"), 2, "is not valid JSON"),
    # NaN in a saved config: refused by every verb with the file and key
    "export-nan-config": Case(lambda m, t: ["export-serving", "--model", str(m / "nan"), "--output-dir",
                                            str(t / "out")], 2, "rope_parameters.long_factor[0] is nan"),
    "push-dry-run-nan-config": Case(lambda m, t: ["push", "--model", str(m / "nan"), "--repo-id", "me/x",
                                                  "--dry-run"], 2, "rope_parameters.long_factor[0] is nan"),
    "midtrain-nan-config": Case(_midtrain("nan"), 2, "rope_parameters.long_factor[0] is nan"),
    "eval-nan-config": Case(_eval("nan"), 2, "rope_parameters.long_factor[0] is nan"),
    "extend-nan-config": Case(_extend("nan"), 2, "rope_parameters.long_factor[0] is nan"),
    "search-nan-config": Case(_search("nan"), 2, "rope_parameters.long_factor[0] is nan"),
    # saved longrope2 configs that contradict themselves: one validator, every verb that loads a model folder
    "eval-no-rope-type": Case(_eval("no_rope_type"), 2, "config.json: rope_parameters.rope_type is missing but"),
    "push-dry-run-no-rope-type": Case(_push("no_rope_type"), 2, "rope_parameters.rope_type is missing"),
    "export-no-rope-type": Case(_export("no_rope_type"), 2, "rope_parameters.rope_type is missing"),
    "eval-original-above-max": Case(_eval("original_above_max"), 2, "config.json: rope_parameters.original_max_"
                                    "position_embeddings is 256, not below max_position_embeddings 128"),
    "push-dry-run-original-above-max": Case(_push("original_above_max"), 2, "is 256, not below max_position"),
    "export-original-above-max": Case(_export("original_above_max"), 2, "is 256, not below max_position"),
    "midtrain-original-above-max": Case(_midtrain("original_above_max"), 2, "is 256, not below max_position"),
    "eval-long-factor-wrong-length": Case(_eval("short_long_factor"), 2, "config.json: rope_parameters.long_factor "
                                          "has 7 values; it must be a list of 8 factors, one per rotary pair"),
    "export-long-factor-wrong-length": Case(_export("short_long_factor"), 2, "long_factor has 7 values"),
    "extend-long-factor-wrong-length": Case(_extend("short_long_factor"), 2, "long_factor has 7 values"),
    "search-long-factor-wrong-length": Case(_search("short_long_factor"), 2, "long_factor has 7 values"),
    "eval-long-mscale-1e300": Case(_eval("huge_mscale"), 2, "config.json: rope_parameters.long_mscale is 1e+300; "
                                   "rope factors, scales and lengths must be finite numbers > 0 and <= 3.4e38"),
    "push-dry-run-long-mscale-1e300": Case(_push("huge_mscale"), 2, "rope_parameters.long_mscale is 1e+300"),
    "midtrain-long-mscale-1e300": Case(_midtrain("huge_mscale"), 2, "rope_parameters.long_mscale is 1e+300"),
    "export-gguf-long-mscale-1e300": Case(lambda m, t: ["export-gguf", "--model", str(m / "huge_mscale"),
                                                        "--output-file", str(t / "x.gguf")], 2,
                                          "rope_parameters.long_mscale is 1e+300"),
    "export-long-factor-below-one": Case(_export("factor_below_one"), 2,
                                         "rope_parameters.long_factor[0] is 0.5; factors must be >= 1"),
    # output paths: an existing file, a parent that cannot be written, a user's folder
    "extend-output-is-a-file": Case(_extend("base", "taken"), 2, "taken is an existing file", _output_is_file),
    "search-output-is-a-file": Case(_search("base", "taken"), 2, "taken is an existing file", _output_is_file),
    "eval-output-is-a-file": Case(_eval("base", "taken"), 2, "taken is an existing file", _output_is_file),
    "export-output-is-a-file": Case(lambda m, t: ["export-serving", "--model", str(m / "ext"), "--output-dir",
                                                  str(t / "taken")], 2, "taken is an existing file", _output_is_file),
    "demo-output-is-a-file": Case(lambda m, t: ["demo", "--output-dir", str(t / "taken")], 2,
                                  "taken is an existing file", _output_is_file),
    "midtrain-output-is-a-file": Case(_midtrain("ext", "taken"), 2, "taken is an existing file", _output_is_file),
    "extend-parent-not-writable": Case(_extend("base", "FILE/out"), 2, "cannot write to", _parent_is_file),
    "demo-parent-not-writable": Case(lambda m, t: ["demo", "--output-dir", str(t / "FILE" / "out")], 2,
                                     "cannot write to", _parent_is_file),
    "midtrain-into-a-model-folder": Case(_midtrain("ext", "mine"), 2, "mine exists and is not empty; pass --overwrite",
                                         _user_folder),
    "export-into-a-model-folder": Case(lambda m, t: ["export-serving", "--model", str(m / "ext"), "--output-dir",
                                                     str(t / "mine")], 2, "exists and is not empty", _user_folder),
    # outputs that are, contain or sit inside the current directory or an input: refused before any work
    "extend-output-is-cwd-overwrite": Case(lambda m, t: ["extend", "--model", str(m / "base"), "--target-length",
                                                         "256", "--output-dir", ".", "--overwrite"], 2,
                                           "--output-dir . is the current directory", _project, cwd="proj"),
    "search-output-is-cwd": Case(lambda m, t: ["search", "--model", str(m / "base"), "--target-length", "256",
                                               "--dataset", "builtin:pydoc", "--output-dir", "."], 2,
                                 "--output-dir . is the current directory", _project, cwd="proj"),
    "extend-output-contains-cwd": Case(_extend("base", "proj", "--overwrite"), 2,
                                       "proj contains the current directory", _project, cwd="proj/src"),
    "eval-output-is-its-model": Case(lambda m, t: ["eval", "--model", str(t / "mine"), "--lengths", "32",
                                                   "--output-dir", str(t / "mine"), "--overwrite"], 2,
                                     "mine is --model", _project),
    "export-output-is-its-model": Case(lambda m, t: ["export-serving", "--model", str(t / "mine"), "--output-dir",
                                                     str(t / "mine"), "--overwrite"], 2, "mine is --model", _project),
    "extend-output-inside-its-model": Case(lambda m, t: ["extend", "--model", str(t / "mine"), "--target-length",
                                                         "256", "--output-dir", str(t / "mine" / "long")], 2,
                                           "mine/long is inside --model", _project),
    "extend-output-contains-factors-file": Case(lambda m, t: [*_extend("base", "proj", "--overwrite")(m, t),
                                                              "--factors-file", str(t / "proj" / "factors.json")], 2,
                                                "proj contains --factors-file", _project),
    "extend-output-is-a-symlink": Case(_extend("base", "link", "--overwrite"), 2,
                                       "link is a symbolic link (to", _symlink("mine")),
    "extend-output-dangling-symlink": Case(_extend("base", "link"), 2, "which does not exist", _symlink("nowhere")),
    "midtrain-output-dangling-symlink": Case(lambda m, t: [*_midtrain("ext", "link")(m, t), "--max_steps", "1"], 2,
                                             "link is a symbolic link", _symlink("nowhere")),
    "extend-old-output-left-aside": Case(_extend("base"), 2,
                                         ".out.replaced-4242 holds the previous", _left_aside),
    # YAML: syntax errors with their line, values through the flags' types
    "yaml-syntax-error": Case(lambda m, t: ["extend", "--config", str(t / "bad.yaml")], 2,
                              "bad.yaml: YAML syntax error at line 2",
                              lambda m, t: _write(t / "bad.yaml", "model: x\ntarget_length: 256: 3\n")),
    "yaml-float-for-int-extend": Case(lambda m, t: ["extend", "--config", str(t / "x.yaml")], 2,
                                      "x.yaml: target_length: invalid int value 100.5",
                                      lambda m, t: _write(t / "x.yaml", f"model: {m / 'base'}\ntarget_length: 100.5\n"
                                                          f"output_dir: {t / 'out'}\n")),
    "yaml-float-for-int-search": Case(lambda m, t: ["search", "--config", str(t / "x.yaml")], 2,
                                      "x.yaml: target_length: invalid int value 100.5",
                                      lambda m, t: _write(t / "x.yaml", f"model: {m / 'base'}\ntarget_length: 100.5\n"
                                                          f"output_dir: {t / 'out'}\n")),
    "yaml-not-a-mapping": Case(lambda m, t: ["extend", "--config", str(t / "x.yaml")], 2, "must hold a mapping",
                               lambda m, t: _write(t / "x.yaml", "- a\n- b\n")),
    "yaml-missing-file": Case(lambda m, t: ["extend", "--config", str(t / "none.yaml")], 2, "none.yaml: no such file"),
    # factor files and resume states: the file named
    "factors-file-not-json": Case(lambda m, t: [*_extend("base")(m, t), "--factors-file", str(t / "f.json")], 2,
                                  "f.json is not valid JSON", lambda m, t: _write(t / "f.json", "long_factor: 1\n")),
    # non-regular files: refused at once (reading a FIFO blocks forever, a device may never end)
    "factors-file-device": Case(_extend("base", "out", "--factors-file", "/dev/null"), 2,
                                "--factors-file /dev/null is a character device, not a regular file"),
    "factors-file-fifo": Case(lambda m, t: [*_extend("base")(m, t), "--factors-file", str(t / "f.json")], 2,
                              "f.json is a named pipe (FIFO), not a regular file", lambda m, t: os.mkfifo(t / "f.json")),
    "midtrain-factors-file-fifo": Case(lambda m, t: [*_midtrain("base")(m, t), "--factors_file", str(t / "f.json")], 2,
                                       "f.json is a named pipe (FIFO), not a regular file", lambda m, t: os.mkfifo(t / "f.json")),
    "config-fifo": Case(lambda m, t: ["extend", "--config", str(t / "x.yaml")], 2,
                        "x.yaml is a named pipe (FIFO), not a regular file", lambda m, t: os.mkfifo(t / "x.yaml")),
    "midtrain-config-fifo": Case(lambda m, t: ["midtrain", "--config", str(t / "x.yaml")], 2,
                                 "x.yaml is a named pipe (FIFO), not a regular file", lambda m, t: os.mkfifo(t / "x.yaml")),
    "config-folder": Case(lambda m, t: ["extend", "--config", str(t)], 2, "is a folder, not a regular file"),
    "factors-file-empty-object": Case(lambda m, t: [*_extend("base")(m, t), "--factors-file", str(t / "f.json")], 2,
                                      "has no 'long_factor' key", lambda m, t: _write(t / "f.json", "{}")),
    "factors-file-nan": Case(lambda m, t: [*_extend("base")(m, t), "--factors-file", str(t / "f.json")], 2,
                             "long_factor[1] is nan",
                             lambda m, t: _write(t / "f.json", '{"long_factor": [1.0, NaN, 2.0, 2.0]}')),
    "search-corrupt-resume-state": Case(_search("base", "out", "--resume"), 2,
                                        "the search state " , lambda m, t: _write(t / "out.search-state" / "state.json",
                                                                                  '{"version": 2, "sett')),
    "eval-corrupt-resume-state": Case(lambda m, t: [*_eval("base")(m, t), "--resume"], 2, "is not an evaluation state",
                                      lambda m, t: _write(t / "out.eval-state" / "state.json", "{}")),
    # a config from another model over these weights: every verb that loads refuses, naming the tensors
    "extend-qwen2-config-over-llama-weights": Case(_extend("qwen2_config"), 2, "qwen2_config: its weights do not "
                                                   "fit the qwen2 model its config.json describes: "),
    "eval-qwen2-config-over-llama-weights": Case(lambda m, t: [*_eval("qwen2_config")(m, t), "--lengths", "512", "--ruler-tasks", "none"], 2,
                                                 "self_attn.k_proj.bias"),  # room for a haystack, then the load
    "midtrain-qwen2-config-over-llama-weights": Case(_midtrain("qwen2_config"), 2,
                                                     "tensor(s) the model needs "
                                                     "are not in the weights (model.layers.0.self_attn.k_proj.bias"),
    "search-mlp-shape-differs-from-weights": Case(_search("wide_mlp_config", "out", "--target-length", "512"), 2, "tensor(s) have another shape in "
                                                  "the weights than in the model (model.layers.0.mlp.down_proj.weight"),
    # a resume onto other inputs: refused naming what changed (recorded by content, not by the strings given)
    "eval-resume-model-config-changed": Case(lambda m, t: [*_eval_mine(m, t), "--resume"], 2,
                                             "--resume: model config.json changed since the run started: --model",
                                             _eval_state_then_config_edited),
    "midtrain-resume-other-learning-rate": Case(lambda m, t: [*_midtrain("ext")(m, t), "--learning_rate", "2e-4",
                                                              "--resume_from_checkpoint", "true"], 2,
                                                "--resume_from_checkpoint: settings differ from the run's: "
                                                "learning_rate: 0.0001 -> 0.0002", _midtrain_checkpoint_at_lr("1e-4")),
    # small things
    "factors-theta-inf": Case(lambda m, t: ["factors", "--rotary-dim", "64", "--rope-theta", "inf",
                                            "--original-length", "256", "--target-length", "2048"], 2,
                              "--rope-theta must be a finite number > 1, got inf"),
    "factors-theta-nan": Case(lambda m, t: ["factors", "--rotary-dim", "64", "--rope-theta", "nan",
                                            "--original-length", "256", "--target-length", "2048"], 2,
                              "--rope-theta must be a finite number > 1, got nan"),
    # required flags and token counts (utils.arguments.require_fields / check_token_count)
    "extend-target-length-zero": Case(_extend("base", "out", "--target-length", "0"), 2,
                                      "--target-length must be a positive number of tokens, got 0"),
    "extend-no-output-dir": Case(lambda m, t: ["extend", "--model", str(m / "base"), "--target-length", "256"], 2,
                                 "--output-dir is required"),
    "search-target-length-negative": Case(_search("base", "out", "--target-length", "-5"), 2,
                                          "--target-length must be a positive number of tokens, got -5"),
    "eval-no-output-dir": Case(lambda m, t: ["eval", "--model", str(m / "base"), "--lengths", "32"], 2,
                               "--output-dir is required"),
    "factors-original-length-zero": Case(lambda m, t: ["factors", "--rotary-dim", "64", "--rope-theta", "500",
                                                       "--original-length", "0", "--target-length", "2048"], 2,
                                         "--original-length must be a positive number of tokens, got 0"),
    "env-unknown-flag": Case(lambda m, t: ["env", "--bogus"], 2, "unrecognized arguments: --bogus"),
    "extend-bad-int-flag": Case(_extend("base", "out", "--target-length", "1e3"), 2,
                                "argument --target_length/--target-length: invalid int value: '1e3'"),
    # a token anywhere in a file to upload refuses the push, dry run or not (tests/publish/test_push.py: placements)
    "push-dry-run-token-in-a-sentence": Case(lambda m, t: ["push", "--model", str(t / "mine"), "--repo-id", "me/x",
                                                          "--dry-run"], 2,
                                             "1 file(s) hold a credential: NOTES.md line 2: a Hugging Face token",
                                             lambda m, t: _user_folder(m, t) or _write(
                                                 t / "mine" / "NOTES.md", f"# notes\nlogged in as {TOKEN} today\n")),
    # pre-tokenised ids the model has no embedding for: named before training (no empty .checkpoints left)
    "midtrain-token-id-out-of-range": Case(lambda m, t: [*_midtrain("ext")(m, t), "--mixture", str(t / "mix.yaml")],
                                           2, "tok.jsonl) holds token id 100000 (document 1), outside the model's "
                                              "vocabulary of", lambda m, t: _pretokenized(t, [[5, 6, 7], [8, 100000]])),
    "midtrain-token-id-negative": Case(lambda m, t: [*_midtrain("ext")(m, t), "--mixture", str(t / "mix.yaml")],
                                       2, "holds token id -3 (document 0)",
                                       lambda m, t: _pretokenized(t, [[5, -3, 7], [8, 9]])),
    # a midtraining that trains nothing is not run (it wrote a "midtrained" card)
    "midtrain-max-steps-zero": Case(lambda m, t: [*_midtrain("ext")(m, t), "--max_steps", "0"], 2,
                                    "--max_steps 0 with --num_train_epochs 3.0 trains no step"),
    "midtrain-zero-epochs": Case(lambda m, t: [*_midtrain("ext")(m, t), "--max_steps", "-1", "--num_train_epochs", "0"],
                                 2, "--max_steps -1 with --num_train_epochs 0.0 trains no step"),
    # dataset files that are not what their name says: named
    "search-dataset-not-utf8": Case(lambda m, t: _search_on(m, t, "bad.txt"), 2, "bad.txt is not UTF-8 text (byte",
                                    lambda m, t: (t / "bad.txt").write_bytes(b"caf\xe9 " * 500)),
    "search-dataset-junk-json": Case(lambda m, t: _search_on(m, t, "junk.json"), 2,
                                     "junk.json is not valid JSON (line 1", lambda m, t: _write(t / "junk.json", "{{x")),
    "search-dataset-junk-parquet": Case(lambda m, t: _search_on(m, t, "junk.parquet"), 2,
                                        "junk.parquet is not a readable Parquet file",
                                        lambda m, t: _write(t / "junk.parquet", "not parquet at all")),
    "search-dataset-not-utf8-jsonl": Case(lambda m, t: _search_on(m, t, "bad.jsonl"), 2, "bad.jsonl is not UTF-8 text",
                                          lambda m, t: (t / "bad.jsonl").write_bytes(b'{"text": "caf\xe9"}\n')),
    # the network down, with a token: one line, nothing uploaded
    "push-network-down": Case(lambda m, t: ["push", "--model", str(m / "ext"), "--repo-id", "me/x"], 2,
                              "could not reach the Hub at http://127.0.0.1:9", env={"HF_TOKEN": TOKEN}),
}


def _tree(*roots: Path) -> dict[str, tuple[int, int]]:
    """Every path under `roots` with its size and modification time (files)."""
    found = {}
    for root in roots:
        for path in [root, *root.rglob("*")] if root.exists() else []:
            stat = path.lstat()
            # a folder's own mtime is left out: the output's lock file (.out.lock) is created and removed beside it
            found[str(path)] = (stat.st_size, stat.st_mtime_ns) if path.is_file() else (0, 0)
    return found


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_exit_code_and_nothing_written(name, models, tmp_path, capsys, monkeypatch):
    case = CASES[name]
    monkeypatch.setenv("HF_LONGROPE2_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HF_LONGROPE2_DEBUG", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    work = tmp_path / "work"
    work.mkdir()
    if case.setup:
        case.setup(models, work)
    if case.cwd:
        monkeypatch.chdir(work / case.cwd)
    argv = case.argv(models, work)
    before = _tree(models, work)
    code = cli.main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == case.code, err
    assert case.message in err, err
    assert lines[-1].startswith(f"hf-longrope2 {argv[0]}: error: ") and "Traceback" not in err, err
    assert _tree(models, work) == before  # nothing created, changed or removed


def test_debug_shows_the_traceback(models, tmp_path, capsys, monkeypatch):
    argv = _extend("nope")(models, tmp_path)
    with pytest.raises(ValueError, match="no such folder"):
        cli.main(["--debug", *argv])
    monkeypatch.setenv("HF_LONGROPE2_DEBUG", "1")
    with pytest.raises(ValueError, match="no such folder"):
        cli.main(argv)


def test_ctrl_c_in_search_keeps_the_state_and_says_how_to_resume(models, tmp_path, capsys, monkeypatch):
    from hf_longrope2.search.evolution import Search

    monkeypatch.setenv("HF_LONGROPE2_CACHE", str(tmp_path / "cache"))
    argv = ["search", "--model", str(models / "base"), "--target-length", "512", "--dataset", "builtin:pydoc",
            "--num-samples", "2", "--population", "4", "--iterations", "1", "--output-dir", str(tmp_path / "out")]

    def interrupted(self):  # Ctrl-C once the references are scored and saved
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(Search, "generate", interrupted)
        assert cli.main(argv) == 130
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("hf-longrope2")][-1]
    state = tmp_path / "out.search-state"
    assert err == (f"hf-longrope2 search: interrupted; its state in {state} is kept; continue with: hf-longrope2 "
                   f"{' '.join(argv)} --resume")
    assert (state / "state.json").is_file() and not (tmp_path / "out").exists()
    assert cli.main([*argv, "--resume"]) == 0  # the printed command continues it
    assert (tmp_path / "out" / "search_log.json").is_file() and not state.exists()


def test_ctrl_c_elsewhere_says_nothing_was_written(models, tmp_path, capsys, monkeypatch):
    import transformers

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", interrupted)
    assert cli.main(_extend("base")(models, tmp_path)) == 130
    assert capsys.readouterr().err.strip().endswith(
        "hf-longrope2 extend: interrupted; nothing was written (outputs appear only once complete)")
    assert not (tmp_path / "out").exists()


def _tiny_midtrain(tmp_path: Path, *extra: str) -> list[str]:
    return ["midtrain", "--config", TINY_RECIPE, "--output_dir", str(tmp_path / "out"), "--max_steps", "2",
            "--logging_steps", "1", *extra]


def test_a_token_passed_to_midtrain_is_in_no_byte_written(tmp_path):
    argv = _tiny_midtrain(tmp_path, "--hub_token", TOKEN, "--save_strategy", "steps", "--save_steps", "1")
    assert cli.main(argv) == 0
    out, checkpoints = tmp_path / "out", tmp_path / "out.checkpoints"
    written = [p for p in [*out.rglob("*"), *checkpoints.rglob("*")] if p.is_file()]
    assert (checkpoints / "checkpoint-1" / "trainer_state.json").is_file() and len(written) > 10
    leaks = [str(p) for p in written if TOKEN.encode() in p.read_bytes()]
    assert leaks == []
    assert not (out / "training_args.bin").exists()  # no pickle of the arguments in the final folder
    arguments = json.loads((out / "training_args.json").read_text())
    assert arguments["hub_token"] in (None, "<masked>", "<HUB_TOKEN>") and arguments["max_steps"] == 2


def test_midtrain_final_save_is_atomic(tmp_path, capsys, monkeypatch):
    import hf_longrope2.midtrain.runner as midtrain

    def failing_card(folder, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(midtrain, "write_model_card", failing_card)
    assert cli.main(_tiny_midtrain(tmp_path)) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # the folder is complete or absent
    assert midtrain.checkpoints_dir(tmp_path / "out").is_dir()


def test_demo_resume_trusts_only_complete_stages(models, tmp_path):
    from hf_longrope2.pipeline import is_complete

    folder = Path(shutil.copytree(models / "ext", tmp_path / "stage"))
    assert is_complete(folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])  # a save cut short
    assert not is_complete(folder)
    weights.unlink()
    assert not is_complete(folder)  # config.json alone is not a finished stage
    runs = []
    from hf_longrope2.pipeline import stage

    assert stage("x", folder, resume=True, run=lambda: runs.append(1) or 0) and runs == [1]
    assert not folder.exists()  # the incomplete folder was removed before the stage ran again


def test_disk_full_while_extend_saves_weights_is_one_line_naming_the_file(models, tmp_path, capsys, monkeypatch):
    import transformers.modeling_utils
    from safetensors import SafetensorError

    def disk_full(tensors, filename, metadata=None):  # what safetensors raises on ENOSPC, after a partial write
        Path(filename).write_bytes(b"\0" * 1000)
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(transformers.modeling_utils, "safe_save_file", disk_full)
    assert cli.main(_extend("base")(models, tmp_path)) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith(f"hf-longrope2 extend: error: could not write {tmp_path / 'out' / 'model.safetensors'}: "
                          "No space left on device (os error 28)"), err
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no output, no hidden staging folder


def test_file_size_limit_while_extend_saves_weights_is_one_line_naming_the_file(models, tmp_path):
    import resource
    import subprocess
    import sys

    def limit_file_size() -> None:  # `ulimit -f 64` (KiB); Python ignores SIGXFSZ, so writes fail with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    (tmp_path / "work").mkdir()
    env = {**__import__("os").environ, "PYTHONPATH": str(ROOT), "HF_LONGROPE2_CACHE": str(tmp_path / "cache"),
           "HF_HUB_OFFLINE": "1"}
    env.pop("HF_LONGROPE2_DEBUG", None)
    out = tmp_path / "work" / "out"
    done = subprocess.run([sys.executable, "-m", "hf_longrope2.cli", *_extend("base")(models, tmp_path / "work")],
                          capture_output=True, text=True, env=env, preexec_fn=limit_file_size, timeout=300)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"hf-longrope2 extend: error: could not write {out / 'model.safetensors'}: File too large"), last
    assert list((tmp_path / "work").iterdir()) == []  # no output, no hidden staging folder


def test_sigterm_takes_the_ctrl_c_path(models, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    argv = ["search", "--model", str(models / "base"), "--target-length", "512", "--dataset", "builtin:pydoc",
            "--num-samples", "2", "--population", "8", "--iterations", "500", "--output-dir", str(tmp_path / "out")]
    env = {**__import__("os").environ, "PYTHONPATH": str(ROOT), "HF_LONGROPE2_CACHE": str(tmp_path / "cache"),
           "HF_HUB_OFFLINE": "1"}
    env.pop("HF_LONGROPE2_DEBUG", None)
    state = tmp_path / "out.search-state"
    run = subprocess.Popen([sys.executable, "-m", "hf_longrope2.cli", *argv], stderr=subprocess.PIPE, text=True,
                           stdout=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 240
        while not (state / "state.json").is_file() and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)  # the references are scored and saved: the slow evolution stage has begun
        assert run.poll() is None, run.stderr.read()
        run.send_signal(signal.SIGTERM)
        _, err = run.communicate(timeout=120)
    finally:
        run.kill()
    assert run.returncode == 130, err
    assert err.strip().splitlines()[-1] == (f"hf-longrope2 search: interrupted; its state in {state} is kept; continue "
                                            f"with: hf-longrope2 {' '.join(argv)} --resume")
    assert (state / "state.json").is_file() and not (tmp_path / "out").exists()


def test_a_midtrain_that_saved_no_checkpoint_leaves_no_checkpoints_folder(tmp_path, capsys):
    """Nothing to resume from: the model folder is the only thing a run with save_strategy 'no' leaves."""
    assert cli.main(_tiny_midtrain(tmp_path)) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    log = json.loads((tmp_path / "out" / "midtrain_log.json").read_text())
    assert log["checkpoints"] is None and "checkpoints:" not in capsys.readouterr().out
