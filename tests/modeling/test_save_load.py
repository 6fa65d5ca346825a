"""Round trips: save, reload in a fresh interpreter without hf_longrope2 (trust_remote_code), export for serving."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

import hf_longrope2
from hf_longrope2.modeling.modeling_longrope2 import architecture_for
from hf_longrope2.tiny.models import MODEL_TYPES, ORIGINAL, VOCAB, extended_pair, load_in_isolation


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Every architecture extended, saved, plus its serving export and reference logits."""
    root = tmp_path_factory.mktemp("saved")
    torch.manual_seed(0)
    out = {}
    for model_type in MODEL_TYPES:
        base, ext = extended_pair(model_type)
        folder = root / model_type
        ext.save_pretrained(folder)
        hf_longrope2.export_for_serving(folder, root / f"{model_type}-serving")
        ids = {"short": torch.randint(3, VOCAB, (1, ORIGINAL)), "long": torch.randint(3, VOCAB, (1, 3 * ORIGINAL))}
        with torch.no_grad():
            ref = {k: ext(input_ids=v, use_cache=False).logits for k, v in ids.items()}
        for k, v in ids.items():
            torch.save(v, root / f"{model_type}-{k}.pt")
        out[model_type] = {"dir": folder, "ref": ref, "base": base}
    jobs, untrusted = [], []
    for model_type in MODEL_TYPES:
        for length in ("short", "long"):
            inputs = str(root / f"{model_type}-{length}.pt")
            jobs += [
                {
                    "dir": str(root / model_type),
                    "trust_remote_code": True,
                    "inputs": inputs,
                    "output": str(root / f"{model_type}-{length}-remote.pt"),
                },
                {
                    "dir": str(root / f"{model_type}-serving"),
                    "trust_remote_code": False,
                    "inputs": inputs,
                    "output": str(root / f"{model_type}-{length}-serving.pt"),
                },
            ]
        untrusted.append(
            {
                "dir": str(root / model_type),
                "trust_remote_code": False,
                "inputs": inputs,
                "output": str(root / f"{model_type}-noflag.pt"),
            }
        )
    # A trusted load registers the model type in its process (so AutoTokenizer does not prompt after it): the
    # untrusted loads get a process of their own, as a user's first load would.
    load_in_isolation(untrusted, root)
    load_in_isolation(jobs, root)
    return root, out


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_remote_code_load_without_package_gives_identical_logits(saved, model_type):
    root, out = saved
    for length in ("short", "long"):
        got = torch.load(root / f"{model_type}-{length}-remote.pt")
        assert got["class"].startswith("transformers_modules.") and got["class"].endswith(
            architecture_for(model_type).model_class.__name__
        )
        assert torch.equal(got["logits"], out[model_type]["ref"][length])


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_without_flag_transformers_own_error(saved, model_type):
    root, _ = saved
    err = json.loads((root / f"{model_type}-noflag.pt.err.json").read_text())
    assert (
        err["error"] == "ValueError" and "trust_remote_code=True" in err["message"] and "custom code" in err["message"]
    )


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_saved_folder_format(saved, model_type):
    root, out = saved
    folder = out[model_type]["dir"]
    config = json.loads((folder / "config.json").read_text())
    arch = architecture_for(model_type)
    assert config["model_type"] == arch.config_class.model_type
    assert config["auto_map"] == {
        "AutoConfig": f"configuration_longrope2.{arch.config_class.__name__}",
        "AutoModelForCausalLM": f"modeling_longrope2.{arch.model_class.__name__}",
    }
    shipped = sorted(p.name for p in folder.glob("*.py"))
    assert shipped == ["configuration_longrope2.py", "modeling_longrope2.py", "rope.py", "rotary.py", "windows.py"]
    for name in shipped:  # one source of truth: the library's own modules, byte for byte
        assert (folder / name).read_bytes() == (Path(hf_longrope2.modeling.__file__).parent / name).read_bytes()
    base_keys = set(out[model_type]["base"].state_dict())
    assert set(load_file(folder / "model.safetensors")) <= base_keys


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_plain_from_pretrained_with_package_imported(saved, model_type):
    root, out = saved
    model = AutoModelForCausalLM.from_pretrained(out[model_type]["dir"]).eval()
    assert type(model) is architecture_for(model_type).model_class
    ids = torch.load(root / f"{model_type}-long.pt")
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids, use_cache=False).logits, out[model_type]["ref"]["long"])


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_serving_export_matches_on_long_inputs(saved, model_type):
    root, out = saved
    config = json.loads((root / f"{model_type}-serving" / "config.json").read_text())
    arch = architecture_for(model_type)
    assert config["model_type"] == model_type and "auto_map" not in config
    assert not list((root / f"{model_type}-serving").glob("*.py"))
    if arch.nested_rope_key is None:  # the transformers 4.x spelling too (4.x itself: tests/publish/test_transformers4.py)
        params = config["rope_parameters"]
        assert config["rope_theta"] == params["rope_theta"]
        assert config["rope_scaling"] == {k: v for k, v in params.items() if k != "rope_theta"}
        assert config["original_max_position_embeddings"] == params["original_max_position_embeddings"]
    long = torch.load(root / f"{model_type}-long-serving.pt")
    assert long["class"] == f"{arch.base_model_class.__module__}.{arch.base_model_class.__name__}"
    torch.testing.assert_close(long["logits"], out[model_type]["ref"]["long"], rtol=0, atol=1e-5)
    # Documented difference: built-in longrope scales short inputs by attention_factor (= long_mscale) too.
    short = torch.load(root / f"{model_type}-short-serving.pt")
    assert (short["logits"] - out[model_type]["ref"]["short"]).abs().max() > 1e-4


def test_export_refuses_bad_input(tmp_path, saved):
    root, out = saved
    with pytest.raises(ValueError, match="missing: no such folder"):
        hf_longrope2.export_for_serving(tmp_path / "missing", tmp_path / "dst")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no config.json there"):
        hf_longrope2.export_for_serving(tmp_path / "empty", tmp_path / "dst")
    with pytest.raises(FileExistsError, match="is not empty"):
        hf_longrope2.export_for_serving(out["llama"]["dir"], out["qwen2"]["dir"])
    plain = tmp_path / "plain"
    out["llama"]["base"].save_pretrained(plain)
    with pytest.raises(ValueError, match="not a longrope2 model"):
        hf_longrope2.export_for_serving(plain, tmp_path / "dst2")
    assert not (tmp_path / "dst2").exists()


def test_outputs_share_no_writable_file_with_their_source(tmp_path, tiny_llama, tiny_search):
    """Editing an export or a search output never edits its source; --link is the explicit way to share weights."""
    import shutil

    src = tmp_path / "src"
    shutil.copytree(tiny_search, src)
    (src / "README.md").write_text("the source's card\n")
    served = hf_longrope2.export_for_serving(src, tmp_path / "served")
    for path in served.iterdir():
        if (src / path.name).exists():
            assert not path.samefile(src / path.name), path.name
    (served / "README.md").write_text("the export's card\n")
    assert (src / "README.md").read_text() == "the source's card\n"
    linked = hf_longrope2.export_for_serving(src, tmp_path / "linked", link=True)
    assert (linked / "model.safetensors").samefile(src / "model.safetensors")
    assert not (linked / "tokenizer.json").samefile(src / "tokenizer.json")
    # the search output's weights are not the base's file either
    assert not (tiny_search / "model.safetensors").samefile(tiny_llama / "model.safetensors")


def test_load_check_catches_weights_of_another_model(tmp_path, tiny_llama):
    import shutil

    from hf_longrope2.utils.loading import model_source

    folder = tmp_path / "model"
    shutil.copytree(tiny_llama, folder)
    config = json.loads((folder / "config.json").read_text())
    config["num_hidden_layers"] += 1
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="the weights have 2 layers, config.json says 3"):
        model_source(str(folder))
