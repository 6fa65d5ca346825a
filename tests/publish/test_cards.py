"""Model cards: search folders, evaluation reports (model-index round trip, tables), the one template."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from huggingface_hub import ModelCard
from huggingface_hub.repocard_data import model_index_to_eval_results

from hf_longrope2.publish import cards
from hf_longrope2.tiny.models import char_tokenizer, extended_pair

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def search_output(tiny_search) -> Path:
    """A folder written by the real `hf-longrope2 search` (its card is rendered inside a temporary folder)."""
    return tiny_search


@pytest.fixture(scope="module")
def extended(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ext") / "ext"
    _, model = extended_pair("llama")
    model.save_pretrained(out)
    char_tokenizer().save_pretrained(out)
    return out


def report_for(path: Path) -> dict:
    """A report in the schema of `hf-longrope2 eval`: the extended model beside the base and a YaRN model."""
    return {
        "settings": {"dataset": "builtin:pydoc", "lengths": [256, 512], "depths": [0.0, 0.5, 1.0],
                     "needles_per_cell": 4},
        "versions": {"torch": "2.13.0"},
        "wall_time_s": 12.3,
        "models": {
            "base": {"path": "tiny", "original_window": 32, "max_position_embeddings": 32, "rope_type": "default",
                     "niah": {"256": {"0.0": 0.25, "0.5": 0.0, "1.0": 0.0}, "512": {"0.0": 0.0, "0.5": 0.0, "1.0": 0.0}},
                     "niah_mean": {"256": 1 / 12, "512": 0.0},
                     "perplexity": {"256": {"ppl": 120.5, "ppl_last": 130.0, "documents": 4},
                                    "512": {"ppl": 300.25, "ppl_last": 320.0, "documents": 4}},
                     "short": {"length": 32, "ppl": 9.8, "retention_pct": 100.0}},
            "extended": {"path": str(path), "original_window": 32, "max_position_embeddings": 512,
                         "rope_type": "longrope2",
                         "niah": {"256": {"0.0": 1.0, "0.5": 0.75, "1.0": 0.5},
                                  "512": {"0.0": 0.75, "0.5": 0.5, "1.0": 0.25}},
                         "niah_mean": {"256": 0.75, "512": 0.5},
                         "perplexity": {"256": {"ppl": 12.3, "ppl_last": 10.1, "documents": 4},
                                        "512": {"ppl": 14.5, "ppl_last": 11.0, "documents": 4}},
                         "short": {"length": 32, "ppl": 9.9, "retention_pct": 100 * 9.8 / 9.9},
                         "ruler": {"niah_single_1": {"256": 0.9, "512": 0.6}},
                         "lm_eval": {"hellaswag": {"acc,none": 0.41}}},
            "yarn": {"path": "yarn", "original_window": 32, "max_position_embeddings": 512, "rope_type": "yarn",
                     "niah_mean": {"256": 0.5}},
        },
        "files": {},
    }


def test_search_output_has_a_card(search_output):
    text = (search_output / "README.md").read_text()
    card = ModelCard(text)
    data = card.data.to_dict()
    assert data["library_name"] == "transformers" and data["pipeline_tag"] == "text-generation"
    assert {"longrope2", "long-context"} <= set(data["tags"]) and data["context_length"] == 512
    assert "base_model" not in data and "model-index" not in data  # the base is a local folder; no report yet
    log = json.loads((search_output / "search_log.json").read_text())
    assert text.startswith("---\n") and "\n# tiny-512\n" in text  # the output folder, not the temporary one
    assert f"`d_rcd` = {log['best']['critical_dim']}" in text and f"best {log['best']['score']:.4g}" in text
    for name, seed in log["seeds"].items():
        assert f"{name} {seed['score']:.4g}" in text
    assert f"population {log['settings']['population']}" in text and "samples of 512 tokens" in text
    assert 'from_pretrained("' in text and "trust_remote_code=True" in text and "export-serving" in text
    assert "## Limitations" in text and "No evaluation report" in text


def test_card_inputs_follow_logs_to_the_hub_base(search_output, tmp_path):
    inputs = cards.card_inputs(search_output)
    assert inputs["search"]["best"] and inputs["midtrain"] is None and inputs["base_model"] is None
    assert inputs["model_path"].endswith("tiny")  # the local base: recorded, never the metadata's base_model
    # A midtraining run started from a search folder whose own base is a Hub model
    parent = tmp_path / "searched"
    parent.mkdir()
    (parent / "search_log.json").write_text(json.dumps({**inputs["search"], "settings": {
        **inputs["search"]["settings"], "model": "HuggingFaceTB/SmolLM2-135M", "dataset": "emozilla/pg19"},
        "model_path": None, "base_model": "HuggingFaceTB/SmolLM2-135M"}))  # as a search of a Hub model records
    midtrain = {"settings": {"model": {"model_name_or_path": str(parent), "use_peft": True, "lora_r": 8},
                             "training": {"max_steps": 3, "learning_rate": 1e-4, "lr_scheduler_type": "cosine",
                                          "per_device_train_batch_size": 2, "gradient_accumulation_steps": 4,
                                          "target_length": 512, "output_dir": "runs/tiny-mt",
                                          "mixture": [{"dataset": "builtin:pydoc", "weight": 1.0}]},
                             "script": {"trainer": "sft"}},
                "num_processes": 2, "packing": {"rows": {"short": 3, "long": 5}, "short_fraction": 0.1,
                                                "real_tokens": {"short": 1200, "long": 2500}},
                "train": {"train_loss": 2.5, "loss_short": 2.0, "loss_long": 3.0}, "log_history": [{"step": 3}]}
    card = cards.render_model_card(search_output, base_model=str(parent), midtrain=midtrain)
    data = ModelCard(str(card)).data
    assert data.base_model == "HuggingFaceTB/SmolLM2-135M" and data.datasets == ["emozilla/pg19"]
    text = str(card)
    assert "\n# tiny-mt\n" in text and "3 steps of 16 rows × 512 tokens" in text and "24,576 tokens" in text
    assert "LoRA r=8" in text and "short share 0.100" in text and "Factor search" in text


def test_base_model_is_the_recorded_hub_origin_never_a_path_as_typed(tmp_path, tiny_llama, monkeypatch):
    """A search of ``work/tiny`` (relative) re-rendered from another folder, where ``work/tiny`` looks like a Hub
    id: the log recorded the absolute path (``model_path``) and no Hub origin, so the card has no base_model;
    ``push --base-model ID`` gives one explicitly."""
    from conftest import run_tiny_search

    from hf_longrope2.publish.hub import PushArguments, render_card

    (tmp_path / "run" / "work").mkdir(parents=True)
    (tmp_path / "run" / "work" / "tiny").symlink_to(tiny_llama, target_is_directory=True)
    monkeypatch.chdir(tmp_path / "run")
    out = run_tiny_search(tmp_path / "run", "searched", Path("work/tiny"), monkeypatch)
    log = json.loads((out / "search_log.json").read_text())
    assert log["model_path"] == str(tiny_llama.resolve()) and log["base_model"] is None
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # here "work/tiny" is no folder: it reads like a Hub id
    assert cards.is_hub_id("work/tiny")
    for text in (str(cards.render_model_card(out, **cards.card_inputs(out))), render_card(out, "me/tiny")):
        assert ModelCard(text).data.base_model is None
    given = ModelCard(render_card(out, "me/tiny", base_model="HuggingFaceTB/SmolLM2-135M")).data
    assert given.base_model == "HuggingFaceTB/SmolLM2-135M"
    with pytest.raises(ValueError, match="--base-model must be a Hub id"):
        PushArguments(model=str(out), repo_id="me/tiny", base_model=str(out))
    # a midtraining of that search folder: the origin it records follows the folder to its (lack of a) Hub id
    origin = cards.model_origin(out)
    assert origin == {"model_path": str(out.resolve()), "base_model": None}
    (out / "search_log.json").write_text(json.dumps({**log, "base_model": "HuggingFaceTB/SmolLM2-135M"}))
    assert cards.model_origin(out)["base_model"] == "HuggingFaceTB/SmolLM2-135M"


def test_base_model_metadata_only_for_hub_ids(extended):
    hub = ModelCard(str(cards.render_model_card(extended, base_model="HuggingFaceTB/SmolLM2-135M"))).data
    assert hub.base_model == "HuggingFaceTB/SmolLM2-135M"
    for local in (str(extended), "builtin:tiny-llama", None):
        assert ModelCard(str(cards.render_model_card(extended, base_model=local))).data.base_model is None


def test_card_with_report_round_trips(search_output):
    report = report_for(search_output)
    card = cards.render_model_card(search_output, repo_id="my-org/tiny-512", report=report,
                                   **cards.card_inputs(search_output))
    data = ModelCard(str(card)).data
    assert {"longrope2", "long-context"} <= set(data.tags) and data.library_name == "transformers"
    assert data.context_length == 512 and data.pipeline_tag == "text-generation"
    name, results = model_index_to_eval_results(data.to_dict()["model-index"])
    assert name == "tiny-512" and results == cards.eval_results(report, "extended")
    got = {r.metric_name: r.metric_value for r in results}
    entry = report["models"]["extended"]
    for length, value in entry["niah_mean"].items():
        assert got[f"NIAH accuracy @ {length} tokens"] == value
    for length, value in entry["perplexity"].items():
        assert got[f"Perplexity @ {length} tokens"] == value["ppl"]
    assert got["Short-window perplexity @ 32 tokens"] == entry["short"]["ppl"]
    assert got["Short-window retention % @ 32 tokens"] == entry["short"]["retention_pct"]
    assert got["RULER niah_single_1 @ 512 tokens"] == 0.6 and got["hellaswag acc,none"] == 0.41
    niah = next(r for r in results if r.metric_type == "accuracy")
    assert niah.dataset_type == "needle-in-a-haystack" and "builtin:pydoc" in niah.dataset_name
    assert {r.metric_type for r in results} == {"accuracy", "perplexity", "retention", "acc"}
    text = str(card)
    assert "## Results" in text and 'from_pretrained("my-org/tiny-512", trust_remote_code=True)' in text
    # every model side by side: NIAH % by length; the extended model first
    assert "| **extended** (this model) | longrope2 | 32 → 512 | 75.0 | 50.0 |" in text
    assert "| base | default | 32 | 8.3 | 0.0 |" in text and "| yarn | yarn | 32 → 512 | 50.0 | – |" in text
    assert "| 0.5 | 75.0 | 50.0 |" in text  # depth x length grid of this model
    assert "| base | 120.50 | 300.25 |" in text and "| yarn |" not in text.split("### Perplexity")[1].split("###")[0]
    assert "| **extended** (this model) | 32 | 9.90 | 99.0 |" in text


def test_report_with_only_the_required_sections(extended):
    report = {"settings": {"dataset": "my-org/haystacks"},
              "models": {"ext": {"niah": {"128": {"0.0": 1.0, "1.0": 0.5}}}}}
    card = cards.render_model_card(extended, report=report)
    name, results = model_index_to_eval_results(ModelCard(str(card)).data.to_dict()["model-index"])
    assert [(r.metric_name, r.metric_value) for r in results] == [("NIAH accuracy @ 128 tokens", 0.75)]
    assert "(haystack: my-org/haystacks)" in results[0].dataset_name
    assert "### Perplexity" not in str(card) and "| **ext** (this model) | ? | ? | 75.0 |" in str(card)


def test_report_model_is_found_or_named(extended):
    report = report_for(extended)
    assert cards.report_model_name(report, extended) == "extended"  # by path
    report["models"]["extended"]["path"] = "elsewhere"
    report["models"]["yarn"]["rope_type"] = "longrope2"
    with pytest.raises(ValueError, match=r"pass report_model= one of \['base', 'extended', 'yarn'\]"):
        cards.render_model_card(extended, report=report)
    with pytest.raises(ValueError, match="report_model 'nope' is not in the report"):
        cards.render_model_card(extended, report=report, report_model="nope")
    card = cards.render_model_card(extended, report=report, report_model="yarn")
    assert "| **yarn** (this model) |" in str(card)


def test_write_model_card_is_backward_compatible(extended, tmp_path):
    path = cards.write_model_card(extended, base_model="HuggingFaceTB/SmolLM2-135M", search=None, midtrain=None)
    assert path == extended / "README.md" and path.read_text().endswith("\n")
    assert ModelCard.load(path).data.base_model == "HuggingFaceTB/SmolLM2-135M"


def test_the_template_in_model_cards_is_the_one_rendered(extended):
    linked = ROOT / "model_cards" / "template.md"
    assert linked.is_symlink() and not os.path.isabs(os.readlink(linked))  # relative: works in any checkout
    assert linked.resolve() == cards.TEMPLATE.resolve() and cards.TEMPLATE.parent == Path(cards.__file__).parent
    text = str(cards.render_model_card(extended, report=report_for(extended)))
    headings = [line for line in linked.read_text().splitlines() if line.startswith("## ")]
    assert headings == [line for line in text.splitlines() if line.startswith("## ")]
    assert headings == ["## How it was extended", "## Results", "## How to load", "## How to serve", "## Limitations"]


EVIL = "[click](https://evil.example) <img src=x onerror=alert(1)> **bold** `tick"


def test_values_from_logs_never_render_live(extended):
    """A log or report value holding a markdown link, an image, HTML or a backtick is shown as text in the card."""
    from markdown_it import MarkdownIt  # test-only: markdown-it-py (a dependency of rich) renders the card

    search = {"settings": {"dataset": EVIL, "output_dir": f"out/{EVIL}", "num_samples": 2, "target_length": 512,
                           "critical_dims": EVIL, "population": 4, "parents": 2, "iterations": 1},
              "best": {"score": 1.5}, "seeds": {EVIL: {"score": 2.0}}, "seeds_better_than_best": [EVIL]}
    midtrain = {"settings": {"training": {"mixture": [{"dataset": EVIL, "weight": EVIL}], "learning_rate": EVIL,
                                          "lr_scheduler_type": EVIL, "max_steps": 2, "target_length": 512}},
                "train": {"train_loss": 1.0}}
    report = report_for(extended)
    report["settings"]["dataset"] = EVIL
    report["models"][EVIL] = report["models"].pop("yarn")
    report["models"]["extended"]["lm_eval"] = {EVIL: {"acc,none": 0.5}}
    text = str(cards.render_model_card(extended, base_model=EVIL, search=search, midtrain=midtrain, report=report,
                                       report_model="extended"))
    body = text.split("---", 2)[2]  # the markdown after the YAML metadata
    html = MarkdownIt("commonmark").enable("table").render(body)
    assert "<a href" not in html.replace('<a href="https://arxiv.org/abs/2502.20082">', "")
    assert "<img" not in html and "<strong>bold</strong>" not in html
    assert html.count("evil.example") >= 8  # each value is still shown, as text
