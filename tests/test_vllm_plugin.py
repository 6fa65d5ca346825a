"""The exact-serving vLLM plugin's pure parts, without vLLM: its rotary tables against transformers' longrope2 and
the per-token choice of a flattened batch (the engine itself is tested in tests/test_serving.py, slow)."""

from __future__ import annotations

import json
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

from hf_longrope2 import cli
from hf_longrope2.extension.vllm_plugin import (
    SCHEDULER,
    PerRequestLongRoPE,
    check_engine,
    engine_kwargs,
    long_token_flags,
    serving_parameters,
)
from hf_longrope2.tiny.base import tiny_base_path


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("plugin")
    factors = [1.0] * 8 + [1.0 + 0.35 * i for i in range(1, 25)]
    (root / "factors.json").write_text(json.dumps({"long_factor": factors, "critical_dim": 20}))
    assert cli.main(["extend", "--model", str(tiny_base_path()), "--target-length", "2048", "--output-dir",
                     str(root / "longrope2"), "--factors-file", str(root / "factors.json")]) == 0
    assert cli.main(["export-serving", "--model", str(root / "longrope2"), "--output-dir", str(root / "serving")]) == 0
    return root


def test_tables_equal_transformers_longrope2_inside_and_beyond_the_window(folders):
    from transformers import AutoModelForCausalLM

    config = json.loads((folders / "serving" / "config.json").read_text())
    p = serving_parameters(config)
    window, head = p.original_max_position_embeddings, config["head_dim"]
    rotary = PerRequestLongRoPE(head, p, torch.float32)
    model = AutoModelForCausalLM.from_pretrained(folders / "longrope2", dtype=torch.float32)
    x = torch.zeros(1, 1, head)
    for length, offset in ((window, 0), (window + 1, window), (2048, window)):  # a document of `length` tokens
        cos, sin = model.model.rotary_emb(x, torch.arange(length)[None])
        ours = rotary.cos_sin_cache[offset + torch.arange(length)]
        torch.testing.assert_close(ours[:, : head // 2], cos[0, :, : head // 2], atol=2e-6, rtol=0)
        torch.testing.assert_close(ours[:, head // 2:], sin[0, :, : head // 2], atol=2e-6, rtol=0)
    # the two tables differ (the check above could fail)
    assert (rotary.cos_sin_cache[100] - rotary.cos_sin_cache[window + 100]).abs().max() > 1e-2


def test_long_token_flags_follow_each_request_length():
    # three requests: a 5-token prefill ending at length 5, a decode at length 257, a 3-token chunk ending at 300
    flags, per_request = long_token_flags(torch.tensor([0, 5, 6, 9]), torch.tensor([5, 257, 300]), 256, 11)
    assert per_request.tolist() == [False, True, True]
    assert flags.tolist() == [False] * 5 + [True] * 4 + [False, False]  # two padding tokens: short
    flags, _ = long_token_flags(torch.tensor([0, 1]), torch.tensor([256]), 256, 1)
    assert flags.tolist() == [False]  # exactly the window: still the original RoPE


def test_serving_parameters_refuse_other_configs():
    with pytest.raises(ValueError, match="rope_type 'yarn'"):
        serving_parameters(SimpleNamespace(rope_parameters={"rope_type": "yarn", "factor": 8.0}))


def test_saved_folder_and_export_give_the_same_parameters(folders):
    saved = json.loads((folders / "longrope2" / "config.json").read_text())
    exported = serving_parameters(json.loads((folders / "serving" / "config.json").read_text()))
    assert replace(serving_parameters(saved), critical_dim=None) == exported  # the export drops only critical_dim
    # a saved folder without long_mscale gets the rope type's default (sqrt(1 + ln 8 / ln 256)), not 1.0
    del saved["rope_parameters"]["long_mscale"]
    assert serving_parameters(saved).long_mscale == pytest.approx(1.1726, abs=1e-4)


def _engine(scheduler_cls=SCHEDULER, chunked=False, eager=True):
    return SimpleNamespace(scheduler_config=SimpleNamespace(scheduler_cls=scheduler_cls, enable_chunked_prefill=chunked),
                           model_config=SimpleNamespace(enforce_eager=eager))


@pytest.mark.parametrize(("engine", "message"), [
    (_engine(scheduler_cls=None), "needs --scheduler-cls hf_longrope2.extension.vllm_plugin.LongRoPE2Scheduler"),
    (_engine(chunked=True), "needs --no-enable-chunked-prefill"),
    (_engine(eager=False), "needs --enforce-eager"),
])
def test_engine_settings_that_would_be_inexact_are_refused(engine, message):
    with pytest.raises(ValueError, match=message):
        check_engine(engine)
    check_engine(_engine())  # the documented settings pass


@pytest.mark.parametrize("export", [True, False])
def test_engine_kwargs_are_settings_the_model_accepts(export):
    kwargs = engine_kwargs(4096, export=export)
    engine = _engine(kwargs["scheduler_cls"], kwargs["enable_chunked_prefill"], kwargs["enforce_eager"])
    check_engine(engine)
    assert kwargs["max_num_batched_tokens"] >= kwargs["max_model_len"] == 4096  # whole prompts in one step
    assert ("hf_overrides" in kwargs) is export and kwargs.get("trust_remote_code", False) is not export
