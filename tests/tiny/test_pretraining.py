"""The tiny-base pretraining pieces and recipe: tokenizer, recall rows, loss, reproducibility, resume."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from pathlib import Path

import pytest
import torch

from hf_longrope2.tiny.pretraining import RecallRows, cosine_lr, train_tokenizer, weighted_lm_loss

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("pretrain_tiny", ROOT / "recipes" / "pretrain_tiny.py")
pretrain_tiny = importlib.util.module_from_spec(_spec)  # a recipe is a script, not a package module
_spec.loader.exec_module(pretrain_tiny)

TEXT = ("The quick brown fox jumps over the lazy dog near the river bank at 1234 Main Street. " * 40 + "\n") * 3


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    from hf_longrope2.data.texts import load_texts

    for i, doc in enumerate(load_texts("builtin:pydoc")[:2]):
        (root / f"doc{i}.txt").write_text(doc[:60_000])
    return root


@pytest.fixture(scope="module")
def tok(corpus):
    return train_tokenizer([p.read_text() for p in sorted(corpus.iterdir())], 400)


def test_tokenizer_splits_digits_and_round_trips(tok):
    ids = tok(" 9876543", add_special_tokens=False)["input_ids"]
    assert len(ids) == 8 and tok.decode(ids) == " 9876543"
    text = "def f(x):\n    return x + 1  # é"
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2) and len(tok) == 400


def _spans(weights: list[float], value: float) -> list[list[int]]:
    spans: list[list[int]] = []
    for i, w in enumerate(weights):
        if w == value:
            if spans and spans[-1][-1] == i - 1:
                spans[-1].append(i)
            else:
                spans.append([i])
    return spans


def test_recall_rows_hide_the_answer_and_are_pure(tok, corpus):
    stream = [i for p in sorted(corpus.iterdir()) for i in tok(p.read_text(), add_special_tokens=False)["input_ids"]]
    rows = RecallRows(tok, stream, window=512, seed=3, recall_fraction=0.7, answer_weight=10.0)
    kinds = {"text": 0, "single": 0, "snippets": 0}
    for index in range(40):
        ids, weights = rows.row(7, index)
        assert len(ids) == len(weights) == 512
        assert (ids, weights) == rows.row(7, index)  # a pure function of (seed, step, index)
        spans = _spans(weights, 10.0)
        if not spans:
            assert set(weights) == {1.0}
            kinds["text"] += 1
            continue
        assert ids[0] == tok.bos_token_id
        if len(spans) > 1:  # snippets: every answer is the value its key had in an earlier line
            kinds["snippets"] += 1
            for span in spans:
                before = tok.decode(ids[: span[0]], skip_special_tokens=True)
                key = re.findall(r"(?:^|\n)(\S+):$", before)[-1]
                facts = dict(re.findall(r"(\S+): (\d{7})\n", before))
                assert facts[key] == tok.decode([ids[i] for i in span]).strip()
            continue
        kinds["single"] += 1
        for span in spans:  # the answer is the number of the needle its question asks about
            answer = tok.decode([ids[i] for i in span]).strip()
            text = tok.decode(ids[: span[0]])
            key = re.findall(r"What is the special magic number for (\S+) mentioned", text)[-1]
            needles = dict(re.findall(r"magic numbers for (\S+) is: (\d{7})\.", text))
            assert needles[key] == answer and re.fullmatch(r"\d{7}", answer)
        assert len(set(re.findall(r"magic numbers for (\S+) is:", tok.decode(ids)))) == len(
            re.findall(r"magic numbers for (\S+) is:", tok.decode(ids)))  # keys are unique within a row
    assert kinds["text"] >= 5 and kinds["single"] >= 5 and kinds["snippets"] >= 5, kinds
    assert rows.row(8, 0) != rows.row(7, 0)
    with pytest.raises(ValueError, match="training rows need at least"):
        RecallRows(tok, stream[:100], window=256, seed=0)


def test_weighted_loss_and_schedule():
    torch.manual_seed(0)
    logits, ids = torch.randn(2, 9, 11), torch.randint(0, 11, (2, 9))
    plain = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten())
    loss, answer = weighted_lm_loss(logits, ids, torch.ones(2, 9))
    torch.testing.assert_close(loss, plain)
    assert answer is None
    weights = torch.ones(2, 9)
    weights[0, 4] = 3.0
    nll = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten(), reduction="none")
    loss, answer = weighted_lm_loss(logits, ids, weights)
    torch.testing.assert_close(loss, (nll.sum() + 2 * nll[3]) / (16 + 2))
    assert answer == pytest.approx(nll[3].item())
    assert cosine_lr(0, 100, 1.0, 10) == pytest.approx(0.1) and cosine_lr(9, 100, 1.0, 10) == 1.0
    assert cosine_lr(100, 100, 1.0, 10) == pytest.approx(0.1) and cosine_lr(55, 100, 1.0, 10) == pytest.approx(0.55)


def _argv(corpus, out, *extra):
    return ["--output-dir", str(out), "--corpus", str(corpus), "--vocab-size", "300", "--window", "512",
            "--hidden-size", "32", "--intermediate-size", "64", "--num-hidden-layers", "1", "--num-attention-heads", "2",
            "--num-key-value-heads", "1", "--max-steps", "6", "--batch-size", "2", "--warmup-steps", "2",
            "--save-every", "3", "--gate-needles", "1", "--gate-scales", "1", "2", *extra]


def _digest(folder: Path) -> str:
    return hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()


def test_recipe_is_reproducible_and_resumes_exactly(corpus, tmp_path, monkeypatch):
    assert pretrain_tiny.main(_argv(corpus, tmp_path / "a")) == 0
    assert pretrain_tiny.main(_argv(corpus, tmp_path / "b")) == 0
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")  # same seed, same weights, bit for bit
    log = json.loads((tmp_path / "a" / "pretrain_log.json").read_text())
    assert len(log["losses"]) == 6 and set(log["quality_gate"]["accuracy"]) == {"512", "1024"}
    card = (tmp_path / "a" / "README.md").read_text()
    assert "## Quality gate" in card and "| 1,024 | 2x |" in card
    calls = {"n": 0}
    real_step = torch.optim.AdamW.step

    def crash_at_five(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("simulated crash")
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", crash_at_five)
    with pytest.raises(RuntimeError, match="simulated crash"):
        pretrain_tiny.main(_argv(corpus, tmp_path / "c"))
    monkeypatch.setattr(torch.optim.AdamW, "step", real_step)
    assert (tmp_path / "c.pretrain-state" / "state.pt").exists() and not (tmp_path / "c").exists()
    with pytest.raises(FileExistsError, match="pass --resume"):
        pretrain_tiny.main(_argv(corpus, tmp_path / "c"))
    assert pretrain_tiny.main(_argv(corpus, tmp_path / "c", "--resume")) == 0
    assert _digest(tmp_path / "c") == _digest(tmp_path / "a")  # resumed from step 3 = straight run
    assert not (tmp_path / "c.pretrain-state").exists()


def test_help_lists_every_option():
    """`recipes/pretrain_tiny.py --help` used to crash on a bare % in a help string."""
    text = pretrain_tiny.make_parser().format_help()
    assert "--warmup_steps" in text and "10% of the peak" in text
