"""Midtraining: the window the model applies inside a trainer batch, both trainers, LoRA, resume, 2 processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from hf_longrope2 import cli
from hf_longrope2.data.mixture import SourceSpec
from hf_longrope2.data.packing import build_mixed_dataset
from hf_longrope2.midtrain.config import LongRoPE2SFTConfig, LongRoPE2TrainingArguments
from hf_longrope2.midtrain.runner import checkpoints_dir
from hf_longrope2.midtrain.trainer import LongRoPE2SFTTrainer, LongRoPE2Trainer
from hf_longrope2.modeling.windows import long_window_mask
from hf_longrope2.tiny.models import VOCAB, char_tokenizer, extended_pair, load_in_isolation

ROOT = Path(__file__).resolve().parents[2]
TINY = str(ROOT / "recipes" / "tiny" / "midtrain.yaml")
SENTENCE = "the cat sat on the mat. "


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_LONGROPE2_CACHE", str(tmp_path / "cache"))


def _rows(tmp_path, target=128):
    """Learnable text: short lines (<= 32 chars) and long repetitive documents, packed for a 32 -> 128 model."""
    data = tmp_path / "data"
    (data / "short").mkdir(parents=True)
    (data / "long").mkdir()
    for i in range(40):
        (data / "short" / f"{i}.txt").write_text(SENTENCE[: 10 + i % 14])
    for i in range(12):
        (data / "long" / f"{i}.txt").write_text(SENTENCE * (4 + i))
    sources = [SourceSpec(dataset=str(data / "short"), name="short"), SourceSpec(dataset=str(data / "long"), name="long")]
    return build_mixed_dataset(char_tokenizer(), sources, original_window=32, target_length=target, seed=0)


def test_window_in_a_trainer_batch_matches_the_packer(tmp_path):
    rows, report = _rows(tmp_path)
    assert report.rows["short"] > 0 and report.rows["long"] > 0
    _, model = extended_pair("llama")
    trainer = LongRoPE2Trainer(model=model, args=LongRoPE2TrainingArguments(
        output_dir=str(tmp_path / "o"), target_length=128, per_device_train_batch_size=4, report_to=[], use_cpu=True),
        train_dataset=rows, processing_class=char_tokenizer())
    batch = next(iter(trainer.get_train_dataloader()))
    assert "attention_mask" not in batch and batch["input_ids"].shape == (1, 4 * 128)  # padding-free, flattened
    is_long = long_window_mask(batch["position_ids"], 32)[0]
    order = list(range(len(rows)))  # the sampler shuffles: find which rows were drawn by content
    drawn = [next(i for i in order if rows[i]["input_ids"] == batch["input_ids"][0, k * 128:(k + 1) * 128].tolist())
             for k in range(4)]
    for k, i in enumerate(drawn):
        expected = torch.tensor(long_window_mask(torch.tensor([rows[i]["position_ids"]]), 32)[0])
        torch.testing.assert_close(is_long[k * 128:(k + 1) * 128], expected)
        if rows[i]["kind"] == "short":
            assert not expected.any()
        else:  # long rows: every real token long; padding segments (labels -100) stay short
            real = torch.tensor(rows[i]["labels"]) != -100
            assert expected[real].all()


@pytest.mark.parametrize("kind", ["trainer", "sft"])
def test_trainers_learn_and_log_both_windows(tmp_path, kind):
    rows, _ = _rows(tmp_path)
    _, model = extended_pair("llama")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    common = dict(output_dir=str(tmp_path / "o"), target_length=128, per_device_train_batch_size=4, max_steps=12,
                  learning_rate=3e-3, logging_steps=4, report_to=[], use_cpu=True, save_strategy="no", seed=0)
    if kind == "trainer":
        trainer = LongRoPE2Trainer(model=model, args=LongRoPE2TrainingArguments(**common), train_dataset=rows,
                                   eval_dataset=rows.select(range(4)), processing_class=char_tokenizer())
    else:
        trainer = LongRoPE2SFTTrainer(model=model, args=LongRoPE2SFTConfig(**common), train_dataset=rows,
                                      eval_dataset=rows.select(range(4)), processing_class=char_tokenizer())
    trainer.train()
    evaluation = trainer.evaluate()  # evaluation goes through the same lean loss and window split
    assert evaluation["eval_tokens_short"] + evaluation["eval_tokens_long"] > 0 and evaluation["eval_loss"] > 0
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert logs[-1]["loss"] < logs[0]["loss"] - 0.3
    assert all("loss_short" in h and "loss_long" in h and h["tokens_short"] > 0 and h["tokens_long"] > 0 for h in logs)
    if kind == "sft":  # TRL's token metrics survive the overridden loss
        assert all(0 <= h["mean_token_accuracy"] <= 1 and h["entropy"] > 0 for h in logs)
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert len(changed) == len(before)


def test_context_parallel_refuses_short_rows(tmp_path):
    rows, _ = _rows(tmp_path)
    _, model = extended_pair("llama")
    trainer = LongRoPE2Trainer(model=model, args=LongRoPE2TrainingArguments(
        output_dir=str(tmp_path / "o"), target_length=128, report_to=[], use_cpu=True), train_dataset=rows,
        processing_class=char_tokenizer())
    from hf_longrope2.midtrain.trainer import _kinds

    kinds = _kinds(rows)
    assert "long-single" in kinds and "short" in kinds
    multi = sum(k != "long-single" for k in kinds)
    with pytest.raises(ValueError, match=rf"cp_size=2\) drops the document mask.* has {multi} rows .*short_fraction: 0"):
        trainer._setup_context_parallel(model, SimpleNamespace(cp_enabled=True, cp_size=2), kinds)


def test_midtraining_needs_a_longrope2_model(tmp_path):
    from hf_longrope2.tiny.models import tiny_model

    rows, _ = _rows(tmp_path)
    with pytest.raises(ValueError, match="needs a longrope2 model"):
        LongRoPE2Trainer(model=tiny_model("llama"), args=LongRoPE2TrainingArguments(
            output_dir=str(tmp_path / "o"), target_length=128, report_to=[], use_cpu=True), train_dataset=rows)


def _reload(out: Path, tmp_path: Path) -> torch.Tensor:
    ids = torch.randint(3, VOCAB, (1, 300))
    torch.save(ids, tmp_path / "ids.pt")
    load_in_isolation([{"dir": str(out), "trust_remote_code": True, "inputs": str(tmp_path / "ids.pt"),
                        "output": str(tmp_path / "logits.pt")}], tmp_path)
    return torch.load(tmp_path / "logits.pt")


def test_lora_recipe_saves_a_merged_model_and_resume_works(tmp_path):
    out = tmp_path / "lora"
    args = ["midtrain", "--config", TINY, "--output_dir", str(out), "--max_steps", "2", "--use_peft", "true",
            "--lora_r", "4", "--lora_target_modules", "q_proj", "v_proj", "--save_strategy", "steps",
            "--save_steps", "2", "--logging_steps", "1"]
    assert cli.main(args) == 0
    from safetensors.torch import load_file

    keys = set(load_file(out / "model.safetensors"))
    assert keys and not any("lora" in k or "base_layer" in k or "modules_to_save" in k for k in keys)
    loaded = _reload(out, tmp_path)
    assert loaded["class"].endswith("LongRoPE2LlamaForCausalLM") and torch.isfinite(loaded["logits"]).all()
    log = json.loads((out / "midtrain_log.json").read_text())
    assert log["packing"]["rows"]["short"] > 0 and (out / "README.md").exists()
    # the card names the model's own folder, not the checkpoints folder beside it
    card = (out / "README.md").read_text()
    assert f'from_pretrained("{out}"' in card and ".checkpoints" not in card and "# lora\n" in card
    assert log["settings"]["training"]["output_dir"] == str(out) and log["checkpoints"].endswith("lora.checkpoints")
    # the Trainer's own resume: continue the LoRA run from checkpoint-2 (beside the model) to step 3; the finished
    # folder is replaced only with --overwrite
    first = [h for h in log["log_history"] if "loss" in h]
    checkpoint = checkpoints_dir(out) / "checkpoint-2"
    assert not (out / "checkpoint-2").exists() and (checkpoint / "trainer_state.json").is_file()
    assert json.loads((checkpoints_dir(out) / "run_inputs.json").read_text())["settings"]["lora_r"] == 4
    assert cli.main([*args[:6], "3", *args[7:], "--resume_from_checkpoint", str(checkpoint)]) == 2
    assert cli.main([*args[:6], "3", *args[7:], "--resume_from_checkpoint", str(checkpoint), "--overwrite"]) == 0
    resumed = [h for h in json.loads((out / "midtrain_log.json").read_text())["log_history"] if "loss" in h]
    assert [h["step"] for h in resumed] == [1, 2, 3] and resumed[:2] == first  # steps 1-2 restored, not re-run


@pytest.mark.slow  # accelerate launch of 2 processes
def test_tiny_recipe_under_accelerate_with_two_processes(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29541",
              str(ROOT / "recipes" / "midtrain.py")]
    done = subprocess.run([*launch, "--config", TINY, "--max_steps", "6", "--warmup_steps", "0", "--logging_steps", "1",
                           "--output_dir", str(out)], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    log = json.loads((out / "midtrain_log.json").read_text())
    assert log["num_processes"] == 2
    losses = [h["loss"] for h in log["log_history"] if "loss" in h]
    assert len(losses) == 6 and sum(losses[-2:]) < sum(losses[:2]) - 0.2
    loaded = _reload(out, tmp_path)
    assert torch.isfinite(loaded["logits"]).all()
