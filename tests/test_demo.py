"""The embedded tiny base model and ``hf-longrope2 demo --quick`` (the README's main job) end to end."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from hf_longrope2 import cli
from hf_longrope2.publish.cards import TEMPLATE
from hf_longrope2.tiny.base import TINY_BASE, tiny_base_path
from hf_longrope2.tiny.models import load_in_isolation

NAMES = ["original", "pi", "ntk", "yarn", "longrope2_search", "longrope2"]
ROOT = Path(__file__).resolve().parents[1]


def test_the_embedded_base_is_small_documented_and_passes_its_gate():
    path = tiny_base_path()
    config = AutoConfig.from_pretrained(path)
    assert config.model_type == "llama" and config.max_position_embeddings in (256, 512)
    assert config.rope_parameters["rope_type"] == "default"
    assert (path / "model.safetensors").stat().st_size <= 25 * 2**20
    log = json.loads((path / "pretrain_log.json").read_text())
    gate = log["quality_gate"]["accuracy"]
    window = config.max_position_embeddings
    inside = [a for n, a in gate.items() if int(n) <= window]
    beyond = [a for n, a in gate.items() if int(n) >= 4 * window]
    assert inside and min(inside) >= 0.9, gate  # retrieval works inside the native window
    assert beyond and max(beyond) <= 0.1, gate  # and fails at 4-8x without extension
    card = (path / "README.md").read_text()
    for n, a in gate.items():  # the card states the measured numbers
        assert re.search(rf"\| {int(n):,} \| [\d.]+x \| {100 * a:.0f}% \|", card), (n, a)
    assert log["train_time_s"] <= 3600 and log["settings"]["seed"] == 0


def test_the_embedded_base_has_the_rope_geometry_of_a_real_llm():
    """head_dim >= 64 and a theoretical critical dimension at 55-65% of the rotary pairs, as SmolLM2 (20 of 32)
    and LLaMA3-8B (35 of 64), so the LongRoPE2 search space has many pairs below the critical dimension."""
    from hf_longrope2 import factors

    config = AutoConfig.from_pretrained(tiny_base_path())
    head_dim = config.hidden_size // config.num_attention_heads
    critical = factors.critical_dimension(head_dim, config.rope_parameters["rope_theta"], config.max_position_embeddings)
    assert head_dim >= 64 and 0.55 <= critical / (head_dim // 2) <= 0.65, (head_dim, critical)
    assert sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(tiny_base_path()).parameters()) < 2_000_000


def test_missing_embedded_model_says_what_to_do(monkeypatch, tmp_path):
    import hf_longrope2.tiny.base as embedded

    monkeypatch.setattr(embedded, "TINY_BASE", tmp_path)
    with pytest.raises(FileNotFoundError, match="recipes/pretrain_tiny.py"):
        embedded.tiny_base_path()


def test_package_data_ships_the_embedded_base_and_the_card_template():
    """pyproject's package-data globs select every file of the embedded base and the model-card template."""
    tomllib = pytest.importorskip("tomllib")
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    shipped = {TINY_BASE.parent: [p for p in TINY_BASE.rglob("*") if p.is_file()], TEMPLATE.parent: [TEMPLATE]}
    assert all(files for files in shipped.values())
    for folder, files in shipped.items():
        package = ".".join(folder.relative_to(ROOT).parts)
        selected = {p for pattern in package_data.get(package, []) for p in folder.glob(pattern)}
        assert set(files) <= selected, (package, sorted(str(f) for f in set(files) - selected))


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "run"
    assert cli.main(["demo", "--quick", "--output-dir", str(out)]) == 0
    return out


@pytest.mark.slow  # the demo fixture: about 2 minutes
def test_quick_demo_writes_the_report_and_a_loadable_extended_model(demo, tmp_path):
    report = json.loads((demo / "report" / "report.json").read_text())
    assert list(report["models"]) == NAMES
    window = report["original_window"]
    assert all(set(m["niah_mean"]) == {str(window * k) for k in (1, 2, 4, 8)} for m in report["models"].values())
    for png in ("niah.png", "perplexity.png", "niah_longrope2.png"):
        assert (demo / "report" / png).read_bytes()[:4] == b"\x89PNG"
    assert (demo / "report" / "report.md").read_text().startswith("# Long-context evaluation")
    config = json.loads((demo / "longrope2" / "config.json").read_text())
    assert config["rope_parameters"]["rope_type"] == "longrope2" and config["max_position_embeddings"] == 8 * window
    card = (demo / "longrope2" / "README.md").read_text()
    assert "model-index" in card and "NIAH accuracy @" in card
    ids = torch.randint(3, 300, (1, 3 * window))  # beyond the window: the long factors
    torch.save(ids, tmp_path / "ids.pt")
    job = {"dir": str(demo / "longrope2"), "trust_remote_code": True, "inputs": str(tmp_path / "ids.pt"),
           "output": str(tmp_path / "logits.pt")}
    load_in_isolation([job], tmp_path)
    with torch.no_grad():
        expected = AutoModelForCausalLM.from_pretrained(demo / "longrope2")(input_ids=ids, use_cache=False).logits
    assert torch.equal(torch.load(tmp_path / "logits.pt")["logits"], expected)
    # original, PI, NTK and YaRN models are the base inside the window; so is the search-only model
    short = {name: m["short"]["ppl"] for name, m in report["models"].items()}
    assert all(short[n] == pytest.approx(short["original"], rel=1e-6) for n in NAMES[:5])
    # both search spaces ran; the one with the better needle score is what was midtrained
    logs = {space: json.loads((demo / folder / "search_log.json").read_text())
            for space, folder in (("longrope2", "search"), ("longrope", "search-longrope"))}
    assert {space: log["space"] for space, log in logs.items()} == {"longrope2": "longrope2", "longrope": "longrope"}
    winner = min(logs, key=lambda space: logs[space]["best"]["score"])
    assert config["rope_parameters"]["long_factor"] == pytest.approx(logs[winner]["best"]["long_factor"])


@pytest.mark.slow
def test_demo_resume_keeps_finished_stages(demo, capsys):
    before = (demo / "report" / "report.json").read_text()
    assert cli.main(["demo", "--quick", "--output-dir", str(demo), "--resume"]) == 0
    out = capsys.readouterr().out
    assert out.count("kept from the earlier run") == 8 and "| longrope2 |" in out  # 2 searches, 3 baselines, data, ...
    assert re.search(r"Search spaces: (longrope2|longrope) won", out) and "| yarn (reference" in out
    assert (demo / "report" / "report.json").read_text() == before


@pytest.mark.slow
def test_demo_refuses_a_used_folder(demo, capsys):
    assert cli.main(["demo", "--quick", "--output-dir", str(demo)]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_demo_help_lists_its_options():
    out = subprocess.run([sys.executable, "-m", "hf_longrope2.cli", "demo", "--help"], capture_output=True,
                         text=True, check=True, cwd=Path(__file__).parent).stdout
    assert "--quick" in out and "--output_dir" in out
