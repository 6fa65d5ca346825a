"""``--help`` texts and the command's own flags (issue 27, item 9): short midtrain help, no bogus defaults, one text
per ``--no_x`` flag, notes only about values given, --version, usage errors without the --debug hint."""

from __future__ import annotations

import argparse

import pytest

from hf_longrope2 import cli
from hf_longrope2.extension import pretrained
from hf_longrope2.search.config import SearchConfig


def help_text(name: str, capsys, flag: str = "--help") -> str:
    with pytest.raises(SystemExit) as stop:
        cli.main([name, flag])
    assert stop.value.code == 0
    return capsys.readouterr().out


def test_midtrain_help_shows_our_flags_and_the_common_ones_then_points_to_the_rest(capsys):
    text = help_text("midtrain", capsys)
    assert len(text.splitlines()) < 150  # was ~870 lines of TrainingArguments
    ours = ["--trainer", "--target_length", "--mixture", "--short_fraction", "--factors_file", "--overwrite"]
    common = ["--output_dir", "--learning_rate", "--max_steps", "--per_device_train_batch_size",
              "--gradient_accumulation_steps", "--save_steps", "--seed", "--bf16", "--resume_from_checkpoint"]
    positions = [text.index(f"  {flag} ") for flag in ours + common]
    assert max(positions[: len(ours)]) < min(positions[len(ours):])  # ours first
    assert "--lr_scheduler_type" not in text and "hf-longrope2 midtrain --help-all" in text
    full = help_text("midtrain", capsys, "--help-all")
    assert "--lr_scheduler_type" in full and "--lora_r" in full and len(full.splitlines()) > 500


def test_every_training_flag_still_parses(tmp_path):
    from dataclasses import fields

    from transformers import TrainingArguments

    flags = cli.make_parser("midtrain")._option_string_actions
    assert all(f"--{f.name}" in flags for f in fields(TrainingArguments) if f.init)
    config = cli.parse_args("midtrain", [
        "--target_length", "64", "--max_steps", "2", "--output_dir", str(tmp_path / "o"), "--lr_scheduler_type",
        "cosine", "--weight_decay", "0.1", "--logging_steps", "3", "--save_total_limit", "1", "--lora_r", "4",
        "--use_cpu", "--no_dataloader_pin_memory", "--per_device_train_batch_size", "2",
    ])
    t = config.training
    assert (t.lr_scheduler_type, t.weight_decay, t.logging_steps, t.save_total_limit, config.model.lora_r) == (
        "cosine", 0.1, 3, 1, 4)
    assert t.use_cpu and not t.dataloader_pin_memory and t.per_device_train_batch_size == 2


def test_required_fields_show_no_default(capsys):
    text = " ".join(help_text("midtrain", capsys).split())
    assert "the extended window (required)" in text
    assert "(required) (default" not in text


def test_each_negation_has_its_own_help_text():
    for name in cli.VERBS:
        parser = cli.make_parser(name)
        positive = {a.dest: a.help for a in parser._actions
                    if a.option_strings and not a.option_strings[0].startswith("--no_")}
        for action in parser._actions:
            if action.option_strings and action.option_strings[0].startswith("--no_"):
                assert action.help != positive[action.dest], (name, action.option_strings[0])
                assert action.help is argparse.SUPPRESS or "false" in action.help, (name, action.help)


def test_padding_free_has_one_correct_text():
    actions = [a for a in cli.make_parser("midtrain")._actions if a.dest == "padding_free"]
    positive, negative = sorted(actions, key=lambda a: a.option_strings[0].startswith("--no_"))
    assert "false is refused" in positive.help and negative.help is argparse.SUPPRESS  # not listed twice
    with pytest.raises(ValueError, match="padding_free must stay True"):
        cli.parse_args("midtrain", ["--target_length", "64", "--max_steps", "1", "--use_cpu", "--no_padding_free"])


def test_parents_note_only_for_a_given_value():
    quiet = SearchConfig(model="m", output_dir="o", target_length=64, population=8)
    assert quiet.parents == 4 and not quiet.parents_given  # min(32, P/2), nothing to note
    assert SearchConfig(model="m", output_dir="o", target_length=64).parents == 32
    given = SearchConfig(model="m", output_dir="o", target_length=64, population=8, parents=32)
    assert given.parents == 32 and given.parents_given
    assert "parents" in quiet.result_settings() and "parents_given" not in quiet.result_settings()


def test_extend_without_method_says_it_uses_yarn(monkeypatch, capsys):
    used = {}

    def fake(*args, method, **kwargs):
        used["method"] = method
        raise KeyboardInterrupt  # stop before loading anything

    monkeypatch.setattr(pretrained, "extend_pretrained", fake)
    for argv, line in ((["--model", "m", "--output_dir", "o", "--target_length", "64"], True),
                       (["--model", "m", "--output_dir", "o", "--target_length", "64", "--method", "pi"], False)):
        with pytest.raises(KeyboardInterrupt):
            cli.run_verb("extend", argv)
        err = capsys.readouterr().err
        assert ("no --method given: using yarn" in err) == line
        assert used["method"] == ("yarn" if line else "pi")
    assert "Not given: yarn" in " ".join(help_text("extend", capsys).split())


def test_version_and_bare_command(capsys):
    from hf_longrope2 import __version__

    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"hf-longrope2 {__version__}"
    assert cli.main([]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("usage: hf-longrope2")


def test_usage_errors_carry_no_debug_hint(capsys):
    assert cli.main(["factors", "--no-such-flag"]) == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments" in err and "--debug" not in err
    assert cli.main(["extend", "--model", "m", "--target_length", "64"]) == 2
    err = capsys.readouterr().err
    assert "--output-dir is required" in err and "--debug" not in err


def test_epilog_names_the_repository_url_only_when_the_package_has_one(monkeypatch):
    import importlib.metadata

    class Meta:
        def __init__(self, urls):
            self.urls = urls

        def get_all(self, key):
            return self.urls

    monkeypatch.setattr(importlib.metadata, "metadata", lambda name: Meta(["Paper, https://arxiv.org/abs/2502.20082"]))
    assert cli.epilog("search").startswith("Documentation: docs/search.md")
    monkeypatch.setattr(importlib.metadata, "metadata",
                        lambda name: Meta(["Paper, https://arxiv.org/x", "Repository, https://example.org/r/"]))
    assert "https://example.org/r/blob/main/docs/search.md" in cli.epilog("search")


def test_shared_argument_groups_give_every_verb_the_same_flag_and_help():
    """Issue 25, item 1: a field several verbs share is defined once; each verb's parser shows that one help."""
    from dataclasses import fields

    from hf_longrope2.utils.arguments import ModelArguments, OutputArguments, TextSourceArguments

    verbs = {"search": (ModelArguments, OutputArguments, TextSourceArguments),
             "extend": (ModelArguments, OutputArguments), "eval": (OutputArguments, TextSourceArguments),
             "export-serving": (OutputArguments,), "pretrain-tiny": (OutputArguments,)}
    for verb, groups in verbs.items():
        parser = cli.make_parser(verb)
        helps = {a.dest: a.help for a in parser._actions if a.option_strings and not a.option_strings[0].startswith("--no_")}
        own = {"eval": {"output_dir"}, "export-serving": {"output_dir"}}.get(verb, set())  # their folder's own help
        for group in groups:
            assert issubclass(cli.VERBS[verb].load_config_cls(), group)
            for f in fields(group):
                assert f.name in helps, (verb, f.name)
                if f.name not in own:
                    assert helps[f.name] == f.metadata["help"], (verb, f.name)
