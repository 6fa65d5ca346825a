"""The hf-longrope2 console command: verbs, YAML defaults, errors, the extend -> export round trip."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM

from hf_longrope2 import cli, factors
from hf_longrope2.tiny.models import ORIGINAL, VOCAB, tiny_model

VERBS = ["env", "factors", "extend", "export-serving", "export-gguf", "search", "midtrain", "eval", "push",
         "convert-gguf", "demo", "check"]


def test_console_script_offers_every_verb_each_with_its_own_help(capsys):
    out = subprocess.run(["hf-longrope2", "--help"], capture_output=True, text=True, check=True).stdout
    listed = [line.split()[0] for line in out.split("commands:", 1)[1].splitlines() if line.strip()]
    assert listed == VERBS  # every verb of the command line, in pipeline order
    for name in VERBS:
        with pytest.raises(SystemExit) as stop:
            cli.main([name, "--help"])
        assert stop.value.code == 0
        text = capsys.readouterr().out
        assert text.startswith(f"usage: hf-longrope2 {name} ") and "--config" in text and "docs/" in text, name


def test_unknown_command_exit_code(capsys):
    assert cli.main(["nope"]) == 2
    assert "unknown command 'nope'" in capsys.readouterr().err


def test_factors_verb_prints_baseline(capsys):
    assert (
        cli.main(
            [
                "factors",
                "--method",
                "ntk",
                "--rotary_dim",
                "128",
                "--rope_theta",
                "500000",
                "--original_length",
                "8192",
                "--target_length",
                "131072",
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["critical_dim"] == 35 and out["ten_period_dim"] == 24
    assert out["long_factor"] == factors.ntk(128, 16.0)
    assert out["long_mscale"] == 1.0  # NTK's own attention factor, not LongRoPE's 1.1435


def test_factors_verb_yaml_defaults_and_flag_override(tmp_path, capsys):
    cfg = tmp_path / "f.yaml"
    cfg.write_text("method: pi\nrotary_dim: 64\nrope_theta: 100000\noriginal_length: 8192\ntarget_length: 16384\n")
    assert cli.main(["factors", "--config", str(cfg), "--target_length", "32768"]) == 0
    assert json.loads(capsys.readouterr().out)["long_factor"] == [4.0] * 32
    bad = tmp_path / "bad.yaml"
    bad.write_text("methd: pi\n")
    assert cli.main(["factors", "--config", str(bad)]) == 2
    assert "unknown keys in " + str(bad) + ": ['methd']" in capsys.readouterr().err


def test_factors_verb_errors(capsys):
    assert cli.main(["factors", "--method", "rope", "--target_length", "10"]) == 2
    assert "--method must be one of ('pi', 'ntk', 'yarn'), got 'rope'" in capsys.readouterr().err
    assert cli.main(["factors", "--target_length", "100"]) == 2
    assert "pass --model, or all of" in capsys.readouterr().err


def test_extend_then_export_round_trip(tmp_path, capsys):
    base_dir = tmp_path / "base"
    tiny_model("qwen3").save_pretrained(base_dir)
    out = tmp_path / "ext"
    argv = [
        "extend",
        "--model",
        str(base_dir),
        "--method",
        "yarn",
        "--target_length",
        str(4 * ORIGINAL),
        "--output_dir",
        str(out),
    ]
    assert cli.main(argv) == 0
    assert "from 32 to 128 tokens" in capsys.readouterr().out
    config = json.loads((out / "config.json").read_text())
    theta = config["rope_parameters"]["rope_theta"]
    assert config["rope_parameters"]["long_factor"] == factors.yarn(16, theta, 4.0, ORIGINAL)
    assert config["rope_parameters"]["long_mscale"] == pytest.approx(0.1 * math.log(4.0) + 1)  # YaRN's own
    assert not list(tmp_path.glob(".ext.*"))  # no temporary folder left behind
    assert cli.main(argv) == 2  # refuses to overwrite
    assert "exists and is not empty" in capsys.readouterr().err
    assert cli.main(["export-serving", "--model", str(out), "--output_dir", str(tmp_path / "serve")]) == 0
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "serve")
    assert model.config.rope_parameters["rope_type"] == "longrope"
    with torch.no_grad():
        assert torch.isfinite(model(torch.randint(3, VOCAB, (1, 100))).logits).all()


def test_extend_bad_model_leaves_nothing(tmp_path, capsys):
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=VOCAB)).save_pretrained(gpt2)
    out = tmp_path / "out"
    assert cli.main(["extend", "--model", str(gpt2), "--target_length", "4096", "--output_dir", str(out)]) == 2
    assert "does not support model_type 'gpt2'" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".out.*"))


@pytest.mark.slow  # a fresh interpreter for the verb and one for the isolated reload
def test_check_verb_on_one_architecture(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "hf_longrope2.cli", "check", "--model_types", "llama", "--output_dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "all checks passed" in proc.stdout
    report = json.loads((tmp_path / "check.json").read_text())
    assert report["results"]["llama"]["ok"] and report["results"]["llama"]["short"] == 0.0
