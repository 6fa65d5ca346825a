"""The evaluation scorers on cases whose right answer is known by construction (NIAH, perplexity, lm-eval)."""

from __future__ import annotations

import json
import math
import re
from types import SimpleNamespace

import pytest
import torch

from hf_longrope2.data.texts import load_texts
from hf_longrope2.evaluation import niah
from hf_longrope2.evaluation.niah import exact_match, greedy_continuations, haystack_stream, niah_grid
from hf_longrope2.evaluation.perplexity import long_documents, perplexity, short_windows, tokenize_documents, window_nll
from hf_longrope2.evaluation.plan import EvalPlan
from hf_longrope2.losses import full_logits_nll
from hf_longrope2.tiny.models import VOCAB, char_tokenizer, greedy_generate, tiny_model


@pytest.fixture(scope="module")
def tok():
    return char_tokenizer()


@pytest.fixture(scope="module")
def docs(tok):
    return tokenize_documents(tok, load_texts("builtin:pydoc"))


def _zero_head_model(seed: int = 0):
    """A real Llama whose output head is zero: uniform predictions, perplexity exactly the vocabulary size."""
    model = tiny_model("llama", seed)
    with torch.no_grad():
        model.get_output_embeddings().weight.zero_()
    return model


def _args(**overrides):
    base = dict(lengths=[], depths=[0.0, 0.25, 0.75, 1.0], needles_per_cell=3, ppl_lengths=[], ppl_documents=2,
                short_windows=3, ruler_tasks=[], ruler_lengths=[], ruler_samples=1, lm_eval_tasks=[], seed=0,
                batch_size=5, niah_templates=["magic"], niah_nll=False)
    return SimpleNamespace(**{**base, **overrides})


@pytest.mark.parametrize(
    ("prediction", "answer", "expected"),
    [(" 1234567.", "1234567", True), ("1234567", "1234567", True), ("  1234567\nfoo", "1234567", True),
     (" 12345678", "1234567", False), (" 123456", "1234567", False), (" x1234567", "1234567", False),
     ("", "1234567", False)],
)
def test_exact_match(prediction, answer, expected):
    assert exact_match(prediction, answer) is expected


def test_greedy_continuations_equal_generate():
    model = tiny_model("llama")
    prompts = torch.randint(3, VOCAB, (3, 20))
    sequences, _ = greedy_generate(model, prompts, use_cache=True, new_tokens=6)
    assert torch.equal(greedy_continuations(model, prompts, 6), sequences[:, 20:])


def test_niah_grid_places_one_needle_per_sample_at_its_depth(tok, docs):
    stream = haystack_stream(docs, tok("\n\n", add_special_tokens=False)["input_ids"], 1024)
    grid = niah_grid(tok, stream, [700, 1024], [0.0, 0.5, 1.0], needles_per_cell=3, seed=1)
    assert set(grid) == {(n, d) for n in (700, 1024) for d in (0.0, 0.5, 1.0)}
    for (length, depth), cell in grid.items():
        assert cell.prompts.shape[0] == 3 and cell.prompts.shape[1] + cell.max_new_tokens - 2 == length
        for row, answer in zip(cell.prompts, cell.answers, strict=True):
            text = tok.decode(row, skip_special_tokens=True)
            assert text.count(answer) == 1 and re.fullmatch(r"\d{7}", answer)
            haystack_start = text.index("afterwards.\n") + len("afterwards.\n")
            needle = re.search(r" One of the special magic numbers for \S+ is: \d+\. ", text)
            haystack_len = text.index("\nWhat is") - haystack_start - len(needle.group(0))
            assert abs((needle.start() - haystack_start) / haystack_len - depth) < 0.01  # the needle sits at its depth of the haystack
            assert text.endswith("mentioned in the provided text is:")
    again = niah_grid(tok, stream, [700, 1024], [0.0, 0.5, 1.0], needles_per_cell=3, seed=1)
    assert all(torch.equal(again[k].prompts, grid[k].prompts) for k in grid)
    other = niah_grid(tok, stream, [700], [0.5], needles_per_cell=3, seed=2)
    assert other[(700, 0.5)].answers != grid[(700, 0.5)].answers


def test_niah_scores_follow_a_known_oracle(tok, monkeypatch):
    """An oracle that reads the needle only in the first half of the prompt: accuracy 1 at depth < 0.5, else 0."""

    def oracle(model, prompts, max_new_tokens):
        rows = []
        for row in prompts:
            text = tok.decode(row, skip_special_tokens=True)
            found = re.search(r"magic numbers for \S+ is: (\d+)", text)
            answer = found.group(1) if found and found.start() < len(text) / 2 else "0000000"
            rows.append(tok(" " + answer + ".", add_special_tokens=False)["input_ids"][:max_new_tokens])
        return torch.tensor(rows)

    monkeypatch.setattr(niah, "greedy_continuations", oracle)
    texts = load_texts("builtin:pydoc")
    plan = EvalPlan.build(tok, texts, _args(lengths=[640, 900]), original_window=512)
    recorded = {}
    plan._run_niah(None, tok, {}, lambda key, value: recorded.__setitem__(key, value), batch_size=5)
    expected = {f"niah/{n}/{d}": 1.0 if d < 0.5 else 0.0 for n in (640, 900) for d in (0.0, 0.25, 0.75, 1.0)}
    assert recorded == expected
    # finished cells are skipped
    recorded.clear()
    plan._run_niah(None, tok, {"niah/640/0.0": 1.0}, lambda k, v: recorded.__setitem__(k, v), batch_size=2)
    assert "niah/640/0.0" not in recorded and len(recorded) == 7


def test_uniform_model_has_perplexity_equal_to_the_vocabulary(docs):
    model = _zero_head_model()
    rows = long_documents(docs, 300, count=2)
    result = perplexity(window_nll(model, rows, batch_size=1, chunk_size=7))
    assert result["ppl"] == pytest.approx(VOCAB, rel=1e-6) and result["ppl_last"] == pytest.approx(VOCAB, rel=1e-6)
    assert result["tokens"] == 2 * 299 and result["documents"] == 2


def test_window_nll_equals_the_full_logits_loss(docs):
    model = tiny_model("llama")
    rows = long_documents(docs, 200, count=3)
    nll = window_nll(model, rows, batch_size=2, chunk_size=64)
    reference = full_logits_nll(model, rows, rows)
    torch.testing.assert_close(nll.mean(1), reference, rtol=1e-5, atol=1e-5)
    result = perplexity(nll)
    assert result["ppl"] == pytest.approx(math.exp(nll.double().mean().item()))
    assert result["ppl_last"] == pytest.approx(math.exp(nll[:, -(199 // 4):].double().mean().item()))


def test_document_selection_and_errors(docs):
    rows = long_documents(docs, 1000, count=3, seed=0)
    assert rows.shape == (3, 1000)
    assert all(any(list(r) == d[:1000] for d in docs) for r in rows.tolist())  # each row starts a document
    with pytest.raises(ValueError, match=r"no document has 10000000 tokens .*\(the longest has \d+\)"):
        long_documents(docs, 10_000_000, count=1)
    windows = short_windows(docs, 128, count=7)
    assert windows.shape == (7, 128)
    with pytest.raises(ValueError, match="haystack documents have .* tokens in all; the longest needle cell needs"):
        haystack_stream([[5] * 10], [6], 100)


def test_generation_never_projects_the_whole_sequence(tok, docs):
    """NIAH generation puts one position per row through the head; perplexity at most `chunk_size` rows at once."""
    model = tiny_model("llama")
    shapes = []
    model.get_output_embeddings().register_forward_hook(lambda m, inp, out: shapes.append(tuple(inp[0].shape)))
    stream = haystack_stream(docs, [0], 800)
    cell = niah_grid(tok, stream, [800], [0.5], 2)[(800, 0.5)]
    greedy_continuations(model, cell.prompts, 4)
    assert shapes and all(s[-2] == 1 for s in shapes)
    shapes.clear()
    window_nll(model, long_documents(docs, 800, 1), chunk_size=256)
    assert max(s[0] for s in shapes) == 256


def test_lm_eval_on_a_local_task_with_a_known_answer(tmp_path):
    """Uniform predictions make the choice with the fewest tokens the most likely: accuracy 1 or 0 by design."""
    pytest.importorskip("lm_eval")
    from hf_longrope2.evaluation.lm_eval_bridge import run_lm_eval

    rows = [{"q": f"{a} + {b} =", "choices": [str(a + b) * 3, str(a + b), str(a + b) * 2]} for a in range(4) for b in range(3)]
    (tmp_path / "data.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    for name, label in (("shortest", 1), ("longest", 0)):
        (tmp_path / f"{name}.yaml").write_text(
            f"task: tiny_{name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {tmp_path / 'data.jsonl'}\n"
            f"test_split: test\noutput_type: multiple_choice\ndoc_to_text: '{{{{q}}}}'\ndoc_to_target: {label}\n"
            "doc_to_choice: '{{choices}}'\nmetric_list:\n  - metric: acc\n"
        )
    results = run_lm_eval(_zero_head_model(), char_tokenizer(), ["tiny_shortest", "tiny_longest"],
                          include_path=str(tmp_path))
    assert results["tiny_shortest"]["acc"] == 1.0 and results["tiny_longest"]["acc"] == 0.0
    with pytest.raises(ValueError, match="lm-eval does not know the tasks"):
        run_lm_eval(_zero_head_model(), char_tokenizer(), ["tiny_shortestt"], include_path=str(tmp_path))
