"""Running a midtraining: the model, the packed rows, the Trainer, and the final folder (``hf-longrope2 midtrain``).

```python
>>> from hf_longrope2.midtrain import MidtrainConfig, run
>>> run(MidtrainConfig.from_dict({"model_name_or_path": "builtin:tiny-llama", "output_dir": "out", ...}))
```

The model is a searched folder (``hf-longrope2 search``) or a base model plus ``factors_file``;
``builtin:tiny-llama`` is a random tiny Llama with a character tokenizer for offline runs. The output folder is
an extended model in the foundation format (LoRA adapters merged), with ``midtrain_log.json`` (packing report,
settings, metrics) and a model card; checkpoints go to ``OUTPUT.checkpoints`` beside it.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import asdict
from pathlib import Path

import torch
from huggingface_hub import whoami
from peft import get_peft_model
from transformers import AutoTokenizer, LlamaForCausalLM
from trl import get_peft_config

from .. import factors
from ..data.mixture import mixture_from_yaml
from ..data.packing import build_mixed_dataset
from ..extension import extend, ready_to_save
from ..modeling.rope import RopeGeometry
from ..publish.cards import model_origin, write_model_card
from ..publish.hub import push
from ..tiny.models import char_tokenizer, tiny_config
from ..utils.atomic import write_json_atomically
from ..utils.identity import run_identity
from ..utils.loading import load_causal_lm, model_source
from ..utils.run_folder import RunFolder
from .config import TINY, LongRoPE2TrainingArguments, MidtrainConfig
from .trainer import LongRoPE2SFTTrainer, LongRoPE2Trainer, longrope2_window


def checkpoints_dir(output_dir: str | os.PathLike) -> Path:
    """Where the Trainer writes checkpoints: ``OUTPUT.checkpoints`` beside the final folder, which appears only
    complete (written to a temporary sibling and renamed at the end)."""
    return RunFolder(output_dir, "midtrain").state_dir


def masked_arguments(args) -> dict:
    """The training arguments as JSON-ready values, every token masked (what ``training_args.json`` holds)."""
    values = args.to_dict()  # masks fields ending in _token as "<HUB_TOKEN>" ...
    for key in list(values):
        if "token" in key.lower() and isinstance(values[key], str) and values[key]:
            values[key] = "<masked>"  # ... and any other token-looking field too
    return values


def load_model_and_tokenizer(script, args, model_config):
    """The model to train (a longrope2 model, extended here from ``factors_file`` if needed) and its tokenizer."""
    name = model_config.model_name_or_path
    if not name:
        raise ValueError("model_name_or_path is required (a searched model folder, a Hub id, or builtin:tiny-llama)")
    if name == TINY:
        config = tiny_config("llama")
        config.max_position_embeddings = script.tiny_window
        torch.manual_seed(args.seed)
        model, tokenizer = LlamaForCausalLM(config), char_tokenizer()
        if args.factors_file is None:
            scale = args.target_length / script.tiny_window
            extend(model, factors.yarn(16, RopeGeometry.from_config(config).rope_theta, scale, script.tiny_window),
                   max_position_embeddings=args.target_length)
    else:
        name = model_source(name, "model_name_or_path")
        dtype = model_config.dtype if model_config.dtype in (None, "auto") else getattr(torch, model_config.dtype)
        kwargs = {"dtype": dtype or "auto", "revision": model_config.model_revision}
        if model_config.attn_implementation:
            kwargs["attn_implementation"] = model_config.attn_implementation
        model = load_causal_lm(name, "model_name_or_path", **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(name, revision=model_config.model_revision)
    if args.factors_file is not None:
        extend(model, max_position_embeddings=args.target_length,
               **factors.read_factors_file(args.factors_file, "factors_file"))
    longrope2_window(model)  # ValueError unless it is a longrope2 model (factors_file extends one)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


# The arguments a resumed midtraining must share with the run that saved the checkpoint: what the restored
# optimizer, scheduler, data order and model were built from (max_steps / epochs may grow: that continues a run).
RESUME_TRAINING_FIELDS = (
    "learning_rate", "lr_scheduler_type", "lr_scheduler_kwargs", "warmup_ratio", "warmup_steps", "weight_decay",
    "adam_beta1", "adam_beta2", "adam_epsilon", "max_grad_norm", "optim", "per_device_train_batch_size",
    "gradient_accumulation_steps", "seed", "data_seed", "bf16", "fp16", "target_length", "short_fraction",
    "max_document_tokens",
)
RESUME_MODEL_FIELDS = ("model_revision", "dtype", "use_peft", "lora_r", "lora_alpha", "lora_dropout",
                       "lora_target_modules", "lora_modules_to_save")


def run_inputs(script, args, model_config) -> dict:
    """The identity of a midtraining's inputs (recorded as ``run_inputs.json`` beside its checkpoints): the model
    folder, the factors file, the mixture file and its local sources by content, and the arguments above."""
    settings = {"trainer": script.trainer}
    if model_config.model_name_or_path == TINY:
        settings["tiny_window"] = script.tiny_window
    settings.update({k: getattr(args, k, None) for k in RESUME_TRAINING_FIELDS})
    settings.update({k: getattr(model_config, k, None) for k in RESUME_MODEL_FIELDS})
    data = {"--factors_file": args.factors_file, "--mixture": args.mixture}
    for i, spec in enumerate(mixture_from_yaml(args.mixture)):
        data[f"mixture source {i} ({spec.name or spec.dataset})"] = spec.dataset
    return run_identity({"--model_name_or_path": model_config.model_name_or_path}, data, settings)


def checkpoint_folder(resume_from_checkpoint, work: Path) -> Path:
    """The folder of checkpoints a resume continues from: `work`, or the parent of the checkpoint path given."""
    if resume_from_checkpoint is True:
        return work
    return Path(str(resume_from_checkpoint)).parent


def peft_config_for(model_config):
    """TRL's LoRA config; embeddings and norms train in full by default, as LongLoRA found necessary."""
    if model_config.use_peft and model_config.lora_modules_to_save is None:
        model_config.lora_modules_to_save = ["embed_tokens", "norm"]
    return get_peft_config(model_config)


def accelerate_asks_for_fsdp() -> bool:
    """True when ``accelerate launch`` was given an FSDP config (it exports ``ACCELERATE_USE_FSDP=true``)."""
    return os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"


def run(config: MidtrainConfig) -> Path:
    """Midtrain ``config.model`` on the mixture of ``config.training`` and write the final folder.

    The entry point of ``hf-longrope2 midtrain`` and ``recipes/midtrain.py`` (see the package docstring); every
    process of an ``accelerate launch`` calls it. ``config.training`` is the Trainer's arguments object and is
    used (and updated: its ``output_dir`` becomes the checkpoints folder) as the Trainer's own.

    Returns:
        `Path`: the output folder (written by the main process).
    """
    script, args, model_config = config.script, config.training, config.model
    # the token never enters anything the Trainer saves (training_args.bin in every checkpoint is a pickle of args)
    hub_token, args.hub_token = args.hub_token, None
    push_to_hub, args.push_to_hub = args.push_to_hub, False  # pushed by hub.push at the end, not at every save
    if args.mixture is None:
        raise ValueError("mixture is required: a YAML list of sources (see recipes/tiny/midtrain.yaml)")
    folder = RunFolder(args.output_dir, "midtrain")
    out, work = Path(args.output_dir), folder.state_dir
    if str(args.resume_from_checkpoint).lower() in ("true", "false"):  # true: the last one in OUTPUT.checkpoints
        args.resume_from_checkpoint = str(args.resume_from_checkpoint).lower() == "true" or None
    folder.begin(overwrite=script.overwrite, resume=args.resume_from_checkpoint is not None,
                 main_process=args.process_index == 0)
    args.output_dir = str(work)
    inputs = run_inputs(script, args, model_config)
    if args.resume_from_checkpoint is not None:
        where = checkpoint_folder(args.resume_from_checkpoint, work)
        note = folder.check_resume(inputs, folder.recorded_inputs(where), where=where, required=False)
        if note and args.process_index == 0:
            print(note, file=sys.stderr)
    model, tokenizer = load_model_and_tokenizer(script, args, model_config)
    window = longrope2_window(model)
    if args.target_length <= window:
        raise ValueError(f"target_length ({args.target_length}) must exceed the original window ({window})")
    with args.main_process_first(desc="tokenise and pack"):
        rows, report = build_mixed_dataset(
            tokenizer,
            mixture_from_yaml(args.mixture),
            original_window=window,
            target_length=args.target_length,
            seed=args.seed,
            num_proc=args.dataset_num_proc or 1,
            short_fraction=args.short_fraction,
            max_document_tokens=args.max_document_tokens,
            vocab_size=model.get_input_embeddings().num_embeddings,
        )
    peft_config = peft_config_for(model_config)
    if script.trainer == "sft":
        trainer = LongRoPE2SFTTrainer(model=model, args=args, train_dataset=rows, processing_class=tokenizer,
                                      peft_config=peft_config)
    else:
        known = {f for f in LongRoPE2TrainingArguments.__dataclass_fields__}
        plain = LongRoPE2TrainingArguments(**{k: v for k, v in args.to_dict().items() if k in known
                                              and LongRoPE2TrainingArguments.__dataclass_fields__[k].init})
        if peft_config is not None:
            model = get_peft_model(model, peft_config)
        trainer = LongRoPE2Trainer(model=model, args=plain, train_dataset=rows, processing_class=tokenizer)
    if peft_config is not None and (trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled):
        raise ValueError(
            "use_peft with FSDP / DeepSpeed: merging sharded adapters is not supported here; run LoRA with DDP "
            "(recipes/accelerate_configs/ddp.yaml) or train in full"
        )
    distributed_type = trainer.accelerator.distributed_type.value
    if accelerate_asks_for_fsdp() and not trainer.is_fsdp_enabled and trainer.is_world_process_zero():
        # accelerate (1.15) builds its FSDP plugin only for GPU-type backends; on CPU it silently runs data parallel
        print(f"note: the accelerate config asks for FSDP, but accelerate runs {distributed_type} (its FSDP plugin "
              "needs GPUs): every process holds the whole model, nothing is sharded", file=sys.stderr)
    if trainer.is_world_process_zero():
        folder.record_inputs(inputs)  # what a later --resume_from_checkpoint must find unchanged (checked above)
    result = trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    staging = folder.staging_dir  # hidden sibling, renamed to `out` once complete
    if trainer.is_world_process_zero() and staging.exists():
        shutil.rmtree(staging)  # left by a run killed while saving
    trainer.accelerator.wait_for_everyone()
    final = trainer.model
    ready_to_save(final, tokenizer)  # training turned use_cache off; the tokenizer still has the base's window
    if hasattr(final, "merge_and_unload"):  # LoRA (DDP / one process): merge so plain from_pretrained loads it
        final = final.merge_and_unload()
        if trainer.is_world_process_zero():
            final.save_pretrained(staging)
    else:  # the Trainer gathers FSDP / ZeRO-3 shards itself (every process takes part)
        trainer.save_model(str(staging))
    if trainer.is_world_process_zero():
        (staging / "training_args.bin").unlink(missing_ok=True)  # a pickle of the arguments: JSON instead
        tokenizer.save_pretrained(staging)
        training = masked_arguments(args)
        training["output_dir"] = str(out)  # the model's folder (the Trainer's own output_dir is the checkpoints one)
        log = {
            "settings": {"script": asdict(script), "model": asdict(model_config), "training": training},
            "num_processes": trainer.accelerator.num_processes,
            "distributed_type": distributed_type,
            "fsdp": trainer.is_fsdp_enabled,
            "checkpoints": str(work) if any(work.glob("checkpoint-*")) else None,  # None: removed, nothing to resume
            **model_origin(model_config.model_name_or_path),  # the card's base_model: a Hub id, never a path
            "packing": report.to_dict(),
            "train": result.metrics,
            "log_history": trainer.state.log_history,
        }
        write_json_atomically(staging / "training_args.json", training)
        write_json_atomically(staging / "midtrain_log.json", log)
        write_model_card(staging, base_model=model_config.model_name_or_path, midtrain=log)
        folder.publish_staged(overwrite=script.overwrite)
        if log["checkpoints"] is None:  # nothing to resume from: no folder left behind beside the model
            shutil.rmtree(work, ignore_errors=True)
        kept = f" (checkpoints: {work})" if log["checkpoints"] else ""
        print(f"midtrained {model_config.model_name_or_path} -> {out}: {report.summary()}{kept}")
    trainer.accelerator.wait_for_everyone()
    if push_to_hub and trainer.is_world_process_zero():
        # our push, not the Trainer's: it checks the folder and keeps our model card (the Trainer writes its own)
        repo_id = args.hub_model_id or out.name
        if "/" not in repo_id:
            repo_id = f"{whoami(token=hub_token)['name']}/{repo_id}"
        info = push(out, repo_id, private=bool(args.hub_private_repo), revision=args.hub_revision, token=hub_token)
        print(f"pushed {out} -> {info.commit_url}")
    return out
