"""The scale path on CPU, 2 gloo processes against one process on the same global batch.

- the shipped ``recipes/accelerate_configs/fsdp2.yaml`` through ``accelerate launch`` (overrides only for a CPU:
  2 processes, no bf16, ``ACCELERATE_USE_CPU``): accelerate 1.15 runs it as data parallel on CPU, and says so;
- FSDP2 itself (torch's ``fully_shard``) on the longrope2 model: sharded steps, the gathered final folder, and a
  resume from the sharded (DCP) checkpoint;
- the context-parallel window decision through the Trainer's own CP setup on a real gloo group.

Slow: ``python -m pytest -m slow tests/midtrain/test_distributed.py``; `.ci/run` runs it in its slow step.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hf_longrope2.tiny.models import VOCAB, load_in_isolation

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TINY = str(ROOT / "recipes" / "tiny" / "midtrain.yaml")
FSDP2 = str(ROOT / "recipes" / "accelerate_configs" / "fsdp2.yaml")
# The same global batch of 2 rows per step: 1 process x 2 rows, or 2 processes x 1 row.
STEPS = ["--max_steps", "4", "--warmup_steps", "0", "--logging_steps", "1", "--learning_rate", "0.002"]
LOSS_TOLERANCE = 1e-4  # relative, per logged step: float32 sums in another order (all-reduce vs one process)
LOGIT_TOLERANCE = 1e-3  # absolute, after 4 steps of AdamW at lr 2e-3 on logits of size ~10


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict:
    return {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def _launch(out: Path, *extra: str, processes: int) -> subprocess.CompletedProcess:
    if processes == 1:
        launch = [sys.executable, str(ROOT / "recipes" / "midtrain.py")]
        batch = ["--per_device_train_batch_size", "2"]
    else:
        launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", FSDP2, "--num_processes",
                  str(processes), "--mixed_precision", "no", "--main_process_port", str(_free_port()),
                  str(ROOT / "recipes" / "midtrain.py")]
        batch = ["--per_device_train_batch_size", "1"]
    return subprocess.run([*launch, "--config", TINY, *STEPS, *batch, "--output_dir", str(out), *extra],
                          env=_env(), capture_output=True, text=True, timeout=900)


def _losses(out: Path) -> list[float]:
    log = json.loads((out / "midtrain_log.json").read_text())
    return [h["loss"] for h in log["log_history"] if "loss" in h]


def _logits(folder: Path, tmp_path: Path, name: str) -> dict:
    ids = torch.randint(3, VOCAB, (1, 300), generator=torch.Generator().manual_seed(0))  # beyond the 128 window
    torch.save(ids, tmp_path / "ids.pt")
    load_in_isolation([{"dir": str(folder), "trust_remote_code": True, "inputs": str(tmp_path / "ids.pt"),
                        "output": str(tmp_path / f"{name}.pt")}], tmp_path)
    return torch.load(tmp_path / f"{name}.pt")


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("single") / "out"
    done = _launch(out, processes=1)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_fsdp2_accelerate_config_on_cpu_is_data_parallel_and_says_so(single, tmp_path):
    """accelerate 1.15 enables its FSDP plugin only for GPU-type backends: under ACCELERATE_USE_CPU the shipped
    fsdp2.yaml runs as plain data parallel (MULTI_CPU). midtrain records that and says so instead of pretending."""
    out = tmp_path / "fsdp2"
    done = _launch(out, processes=2)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "the accelerate config asks for FSDP, but accelerate runs MULTI_CPU" in done.stderr
    log = json.loads((out / "midtrain_log.json").read_text())
    assert log["num_processes"] == 2 and log["distributed_type"] == "MULTI_CPU" and log["fsdp"] is False
    assert _losses(out) == pytest.approx(_losses(single), rel=LOSS_TOLERANCE)  # the same global batch


def _run_gloo(worker, tmp_path: Path, *args) -> dict:
    """Run `worker(rank, init_file, *args, queue)` in 2 spawned gloo processes; each puts ``(rank, *result)``."""
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=worker, args=(r, str(tmp_path / "init"), *args, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = {rank: rest for rank, *rest in (queue.get(timeout=600) for _ in procs)}
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    return results


# -- FSDP2 itself (torch's fully_shard, gloo) on the model midtraining trains ------------------------------------


def _rows():
    """Packed mixed-window rows (short document-masked rows and long rows) for the tiny 32 -> 128 Llama."""
    import tempfile

    from hf_longrope2.data.mixture import SourceSpec
    from hf_longrope2.data.packing import build_mixed_dataset
    from hf_longrope2.tiny.models import char_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        (data / "short").mkdir()
        (data / "long").mkdir()
        for i in range(40):
            (data / "short" / f"{i}.txt").write_text("the cat sat on the mat. "[: 10 + i % 14])
        for i in range(12):
            (data / "long" / f"{i}.txt").write_text("the cat sat on the mat. " * (4 + i))
        rows, _ = build_mixed_dataset(char_tokenizer(), [SourceSpec(str(data / "short"), name="short"),
                                                          SourceSpec(str(data / "long"), name="long")],
                                      original_window=32, target_length=128, seed=0, use_cache=False)
    rows = rows.with_format("torch")
    return [{k: rows[i][k][None] for k in ("input_ids", "labels", "position_ids")} for i in range(len(rows))]


def _step_losses(model, batches, optimizer, world: int, rank: int) -> list[float]:
    """Steps of a global batch of `world` rows (rank r takes row r): the Trainer's loss, sum / global tokens."""
    import torch.distributed as dist

    losses = []
    for rows in batches:
        total = sum(int((r["labels"][:, 1:] != -100).sum()) for r in rows)
        mine = rows[rank::world]
        step = torch.zeros((), dtype=torch.float64)
        for row in mine:
            out = model(**row, use_cache=False, num_items_in_batch=total)
            (out.loss * world).backward()  # FSDP averages gradients over ranks; the Trainer scales the same way
            step += out.loss.detach().double()
        if world > 1:
            dist.all_reduce(step)
        optimizer.step()
        optimizer.zero_grad()
        losses.append(step.item())
    return losses


def _fsdp2_worker(rank: int, init_file: str, workdir: str, queue) -> None:
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_state_dict,
        set_state_dict,
    )
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    from hf_longrope2.tiny.models import extended_pair

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        torch.set_num_threads(1)
        rows = _rows()
        batches = [rows[2 * i : 2 * i + 2] for i in range(4)]

        def sharded():
            _, model = extended_pair("llama")
            model.train()
            mesh = init_device_mesh("cpu", (2,))
            for layer in model.model.layers:
                fully_shard(layer, mesh=mesh)
            fully_shard(model, mesh=mesh)
            return model, torch.optim.AdamW(model.parameters(), lr=2e-3)

        model, optimizer = sharded()
        first = _step_losses(model, batches[:2], optimizer, 2, rank)
        # a sharded checkpoint (every rank writes its own shard), then a fresh model resumes from it
        model_sd, optim_sd = get_state_dict(model, optimizer)
        dcp.save({"model": model_sd, "optimizer": optim_sd}, checkpoint_id=f"{workdir}/checkpoint-2")
        rest = _step_losses(model, batches[2:], optimizer, 2, rank)
        full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if rank == 0:  # the foundation format, gathered: what Trainer.save_model writes with FULL_STATE_DICT
            _, unsharded = extended_pair("llama")
            unsharded.save_pretrained(f"{workdir}/final", state_dict=full)
        resumed_model, resumed_optimizer = sharded()
        model_sd, optim_sd = get_state_dict(resumed_model, resumed_optimizer)
        state = {"model": model_sd, "optimizer": optim_sd}
        dcp.load(state, checkpoint_id=f"{workdir}/checkpoint-2")
        set_state_dict(resumed_model, resumed_optimizer, model_state_dict=state["model"],
                       optim_state_dict=state["optimizer"])
        resumed = _step_losses(resumed_model, batches[2:], resumed_optimizer, 2, rank)
        queue.put((rank, first + rest, resumed, type(next(model.parameters())).__name__))
    finally:
        dist.destroy_process_group()


def test_fsdp2_sharded_training_save_and_resume_match_one_process(tmp_path):
    """2 gloo processes, parameters sharded by FSDP2: the losses, the gathered final folder and a resume from the
    sharded checkpoint equal one process on the same global batch."""
    from hf_longrope2.tiny.models import extended_pair

    results = _run_gloo(_fsdp2_worker, tmp_path, str(tmp_path))
    _, model = extended_pair("llama")
    model.train()
    rows = _rows()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    want = _step_losses(model, [rows[2 * i : 2 * i + 2] for i in range(4)], optimizer, 1, 0)
    for losses, resumed, parameter_type in results.values():
        assert parameter_type == "DTensor"  # the parameters really were sharded
        assert losses == pytest.approx(want, rel=LOSS_TOLERANCE)
        assert resumed == pytest.approx(want[2:], rel=LOSS_TOLERANCE)  # the same curve after the resume
    assert want[-1] < want[0]
    assert sorted(p.name for p in (tmp_path / "checkpoint-2").iterdir() if p.suffix == ".distcp") == [
        "__0_0.distcp", "__1_0.distcp"]  # one shard per rank
    ours = _logits(tmp_path / "final", tmp_path, "fsdp2")
    model.eval()
    with torch.no_grad():
        single = model(input_ids=torch.randint(3, VOCAB, (1, 300), generator=torch.Generator().manual_seed(0)))
    assert ours["class"].endswith("LongRoPE2LlamaForCausalLM")
    torch.testing.assert_close(ours["logits"], single.logits, rtol=0, atol=LOGIT_TOLERANCE)


def _cp_worker(rank: int, init_file: str, queue) -> None:
    """One rank of a 2-process CP group: the Trainer's own CP setup, then the rotary on this rank's shard."""
    from types import SimpleNamespace

    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh

    from hf_longrope2.midtrain.trainer import WindowLossMixin
    from hf_longrope2.modeling.windows import shard
    from hf_longrope2.tiny.models import extended_pair

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        _, model = extended_pair("llama")
        mesh = init_device_mesh("cpu", (2,), mesh_dim_names=("cp",))
        trainer = SimpleNamespace(args=SimpleNamespace(per_device_train_batch_size=1),
                                  accelerator=SimpleNamespace(torch_device_mesh={"cp": mesh}))
        # exactly what LongRoPE2Trainer does when accelerate's ParallelismConfig has cp_size 2
        WindowLossMixin._setup_context_parallel(trainer, model, SimpleNamespace(cp_enabled=True, cp_size=2),
                                                ["long-single"])
        # a long row of 96 tokens (window 32): the load-balanced shard of rank 0 holds positions 0-23 and 72-95,
        # so its first chunk alone looks like a short document; only the gathered row says "long"
        positions = shard(torch.arange(96)[None], rank, 2, "load_balanced")
        hidden = torch.zeros(1, positions.shape[1], model.config.hidden_size)
        cos, sin = model.model.rotary_emb(hidden, positions)
        queue.put((rank, positions, cos, sin))
    finally:
        dist.destroy_process_group()


def test_context_parallel_shards_decide_the_window_of_the_whole_row(tmp_path):
    """Through the Trainer's CP setup on a real gloo group, each shard gets the full row's cos/sin (long window).

    accelerate's context parallelism itself needs CUDA: torch's ring attention dispatches only the CUDA SDPA
    kernels (flash, efficient, cudnn), so the sharded loss is not run here (README, midtraining section).
    """
    from hf_longrope2.tiny.models import extended_pair

    results = _run_gloo(_cp_worker, tmp_path)
    _, model = extended_pair("llama")
    full = torch.arange(96)[None]
    cos_full, sin_full = model.model.rotary_emb(torch.zeros(1, 96, model.config.hidden_size), full)
    local_cos, _ = model.model.rotary_emb(torch.zeros(1, 24, model.config.hidden_size), full[:, :24])
    for positions, cos, sin in results.values():
        index = positions[0]
        assert torch.equal(cos, cos_full[:, index]) and torch.equal(sin, sin_full[:, index])
    # negative control: deciding on rank 0's first chunk alone would use the original RoPE there
    assert not torch.equal(local_cos, cos_full[:, :24])
