"""``hf-longrope2 eval`` end to end on two tiny models: report files, resume, errors."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from hf_longrope2 import cli
from hf_longrope2.evaluation import EvalConfig
from hf_longrope2.evaluation import runner as evaluation_runner
from hf_longrope2.evaluation.config import merge_repeated_flags
from hf_longrope2.evaluation.report import MODEL_KEYS, REPORT_KEYS
from hf_longrope2.tiny.models import char_tokenizer, tiny_model
from hf_longrope2.utils import run_folder as state_writer  # where every runner saves its state

ROOT = Path(__file__).resolve().parents[2]
WINDOW = 512
FAST = ["--lengths", "768", "1024", "--depths", "0", "1", "--needles-per-cell", "2", "--ppl-documents", "1",
        "--short-windows", "2", "--ruler-samples", "1", "--ruler-lengths", "1024"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tiny Llama with a 512-token window (room for the needle template) and its YaRN extension to 2048."""
    root = tmp_path_factory.mktemp("eval")
    model = tiny_model("llama")
    model.config.max_position_embeddings = WINDOW
    model.save_pretrained(root / "base")
    char_tokenizer().save_pretrained(root / "base")
    argv = ["extend", "--model", str(root / "base"), "--method", "yarn", "--target-length", "2048",
            "--output-dir", str(root / "yarn")]
    assert cli.main(argv) == 0
    return root


def _argv(models, out, *extra):
    return ["eval", "--model", str(models / "base"), "--model", str(models / "yarn"), "--output-dir", str(out),
            *FAST, *extra]


@pytest.fixture(scope="module")
def report_dir(models, tmp_path_factory):
    out = tmp_path_factory.mktemp("reports") / "report"
    assert cli.main(_argv(models, out)) == 0
    return out


def test_eval_writes_a_complete_report(report_dir):
    report = json.loads((report_dir / "report.json").read_text())
    assert set(REPORT_KEYS) <= set(report) and report["original_window"] == WINDOW
    assert list(report["models"]) == ["base", "yarn"]
    for name, m in report["models"].items():
        assert set(MODEL_KEYS) <= set(m), name
        assert set(m["niah"]) == {"768", "1024"} and set(m["niah"]["768"]) == {"0.0", "1.0"}
        assert all(0.0 <= v <= 1.0 for row in m["niah"].values() for v in row.values())
        assert set(m["perplexity"]) == {"768", "1024"} and m["perplexity"]["1024"]["tokens"] == 1023
        assert set(m["ruler"]) == {"niah_multikey", "niah_multivalue", "variable_tracking", "common_words"}
        assert all(set(v) == {"1024"} for v in m["ruler"].values())
        assert m["short"]["length"] == WINDOW and m["short"]["documents"] == 2
    base, yarn = report["models"]["base"], report["models"]["yarn"]
    assert base["rope_type"] == "default" and yarn["rope_type"] == "longrope2"
    assert yarn["max_position_embeddings"] == 2048 and yarn["original_window"] == WINDOW
    # inside its window the longrope2 model is the base model: same short perplexity, retention 100 %
    assert yarn["short"]["ppl"] == pytest.approx(base["short"]["ppl"], rel=1e-6)
    assert base["short"]["retention_pct"] == 100.0 and yarn["short"]["retention_pct"] == pytest.approx(100.0)
    # beyond it, the rotary differs: perplexity at 1024 changes
    assert yarn["perplexity"]["1024"]["ppl"] != base["perplexity"]["1024"]["ppl"]
    assert report["settings"]["model"] and report["versions"]["torch"] and report["wall_time_s"] > 0
    files = report["files"]
    pngs = [*files["niah_heatmaps"].values(), files["niah"], files["perplexity"], files["ruler"]]
    assert len(pngs) == 5
    for png in pngs:
        image = matplotlib.image.imread(report_dir / png)  # decodes
        assert image.shape[0] > 100 and image.shape[1] > 100
    md = (report_dir / "report.md").read_text()
    for heading in ("## Summary", "## Needle in a haystack", "## Perplexity vs length", "## Short-window retention",
                    "## RULER-style synthetic tasks", "### common_words", "## Settings"):
        assert heading in md
    assert all(f"]({png})" in md for png in pngs)
    assert re.search(r"\| yarn \| \d+% \| \d+% \| [\d.]+ \| 100\.0% \|", md)
    assert not Path(f"{report_dir}.eval-state").exists()


def test_resume_after_a_crash_gives_the_same_report(models, report_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "report"
    real = state_writer.write_json_atomically
    calls = []

    def crash_after_five(path, data, indent=1):
        real(path, data, indent)
        calls.append(path)
        if len(calls) == 5:
            raise RuntimeError("simulated crash")

    monkeypatch.setattr(state_writer, "write_json_atomically", crash_after_five)
    with pytest.raises(RuntimeError, match="simulated crash"):
        cli.main(_argv(models, out))
    monkeypatch.setattr(state_writer, "write_json_atomically", real)
    state = json.loads((tmp_path / "report.eval-state" / "state.json").read_text())
    assert sum(len(c) for c in state["cells"].values()) == 5 and not out.exists()
    assert cli.main(_argv(models, out)) == 2  # the state is there: --resume or delete it
    assert cli.main(_argv(models, out, "--resume")) == 0
    resumed, straight = (json.loads((d / "report.json").read_text()) for d in (out, report_dir))
    for name in ("base", "yarn"):
        for key in ("niah", "perplexity", "short", "ruler"):
            assert resumed["models"][name][key] == straight["models"][name][key], (name, key)
    assert not (tmp_path / "report.eval-state").exists()
    capsys.readouterr()
    assert cli.main(_argv(models, tmp_path / "other", "--resume")) == 2
    assert "--resume: no evaluation state" in capsys.readouterr().err


def test_lm_eval_tasks_join_the_report(models, tmp_path):
    pytest.importorskip("lm_eval")
    rows = [{"q": f"{a} + 1 =", "choices": [str(a + 1), str(a + 1) * 2]} for a in range(6)]
    (tmp_path / "data.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "tiny.yaml").write_text(
        f"task: tiny_sum\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {tmp_path / 'data.jsonl'}\n"
        "test_split: test\noutput_type: multiple_choice\ndoc_to_text: '{{q}}'\ndoc_to_target: 0\n"
        "doc_to_choice: '{{choices}}'\nmetric_list:\n  - metric: acc\n"
    )
    out = tmp_path / "report"
    argv = ["eval", "--model", str(models / "base"), "--output-dir", str(out), "--lengths", "768", "--depths", "0.5",
            "--needles-per-cell", "1", "--ppl-documents", "1", "--short-windows", "1", "--ruler-tasks", "none",
            "--lm-eval-tasks", "tiny_sum", "--lm-eval-include-path", str(tmp_path / "tasks")]
    assert cli.main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    acc = report["models"]["base"]["lm_eval"]["tiny_sum"]["acc"]
    # lm-eval's multiple-choice accuracy, recomputed here: the right choice has the larger log-likelihood
    model = AutoModelForCausalLM.from_pretrained(models / "base").eval()
    tokenizer = AutoTokenizer.from_pretrained(models / "base")

    def loglikelihood(context: str, continuation: str) -> float:
        ctx, cont = (tokenizer(t, add_special_tokens=False)["input_ids"] for t in (context, continuation))
        with torch.no_grad():
            logprobs = model(torch.tensor([ctx + cont])).logits[0].log_softmax(-1)
        return sum(float(logprobs[len(ctx) - 1 + i, token]) for i, token in enumerate(cont))

    right = [loglikelihood(r["q"], " " + r["choices"][0]) > loglikelihood(r["q"], " " + r["choices"][1]) for r in rows]
    assert acc == pytest.approx(sum(right) / len(rows)) and report["models"]["base"]["ruler"] == {}
    assert "## lm-eval" in (out / "report.md").read_text() and "ruler" not in report["files"]


@pytest.mark.parametrize(("task", "message"), [
    ("tiny_missing_data", "lm-eval task 'tiny_missing_data' cannot load its data"),
    ("tiny_sun", "lm-eval does not know the tasks ['tiny_sun']"),
])
def test_lm_eval_problems_fail_before_any_cell(models, tmp_path, monkeypatch, capsys, task, message):
    """An lm-eval task that cannot run fails up front, not after hours of NIAH and perplexity cells."""
    pytest.importorskip("lm_eval")
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "missing.yaml").write_text(
        f"task: tiny_missing_data\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f"    test: {tmp_path / 'nowhere.jsonl'}\ntest_split: test\noutput_type: loglikelihood\n"
        "doc_to_text: '{{q}}'\ndoc_to_target: '{{a}}'\nmetric_list:\n  - metric: perplexity\n"
    )

    def no_cells(*args, **kwargs):
        raise AssertionError("a cell ran before the lm-eval check")

    monkeypatch.setattr(evaluation_runner, "evaluate_models", no_cells)
    argv = ["eval", "--model", str(models / "base"), "--output-dir", str(tmp_path / "report"), "--lengths", "768",
            "--lm-eval-tasks", task, "--lm-eval-include-path", str(tmp_path / "tasks")]
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--ruler-tasks", "needle"], "--ruler-tasks: unknown"),
        (["--lengths", "8"], "--lengths must be token counts >= 16"),
        (["--depths", "1.5"], r"--depths must be fractions in \[0, 1\]"),
        (["--name", "a"], "--name needs one name per --model"),
        (["--lengths", "300"], "leaves no room for a haystack"),
        (["--dtype", "fp8"], "--dtype must be one of"),
        (["--niah-templates", "magic", "riddle"], r"--niah-templates must be distinct names from \['echo', 'magic'\], got \['magic', 'riddle'\]"),
        (["--retention-datasets", "builtin:pydoc:test"], "unknown built-in source 'builtin:pydoc:test'"),
    ],
)
def test_bad_arguments_fail_before_any_model_runs(models, tmp_path, capsys, extra, message):
    assert cli.main(_argv(models, tmp_path / "out", *extra)) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "out").exists()


def test_models_must_share_a_tokenizer(models, tmp_path, capsys):
    other = tmp_path / "other"
    shutil.copytree(models / "base", other)
    tok = json.loads((other / "tokenizer.json").read_text())
    tok["model"]["vocab"]["<extra>"] = 100
    (other / "tokenizer.json").write_text(json.dumps(tok))
    argv = ["eval", "--model", str(models / "base"), "--model", str(other), "--output-dir", str(tmp_path / "o"), *FAST]
    assert cli.main(argv) == 2
    assert "has a different tokenizer" in capsys.readouterr().err


def test_flag_parsing():
    assert merge_repeated_flags(["--model", "a", "--x", "1", "--model", "b", "c"], ["--model"]) == [
        "--x", "1", "--model", "a", "b", "c"]
    with pytest.raises(ValueError, match="--model is required"):
        EvalConfig(output_dir="x")
    with pytest.raises(ValueError, match="model names must be unique"):
        EvalConfig(model=["a/m", "b/m"], output_dir="x")
    assert EvalConfig(model=["m"], output_dir="x", ruler_tasks=["none"]).ruler_tasks == []


def test_recipe_script_reaches_the_same_main():
    out = subprocess.run([sys.executable, str(ROOT / "recipes" / "evaluate.py"), "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert "--needles_per_cell" in out or "--needles-per-cell" in out


@pytest.mark.gpu
def test_eval_on_a_gpu_in_bfloat16(models, tmp_path):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    out = tmp_path / "report"
    assert cli.main(_argv(models, out, "--device", "cuda", "--dtype", "auto", "--attn-implementation", "sdpa",
                          "--batch-size", "4")) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["device"] == "cuda" and report["settings"]["dtype"] == "auto"  # auto = bfloat16 on GPU
    yarn, base = report["models"]["yarn"], report["models"]["base"]
    assert yarn["short"]["ppl"] == pytest.approx(base["short"]["ppl"], rel=1e-3)


def test_smollm2_results_file_copies_the_report(report_dir, tmp_path):
    from benchmarks import smollm2_results

    report = json.loads((report_dir / "report.json").read_text())
    models = report["models"]
    report["models"] = {"original": models["base"], "yarn_midtrain": models["yarn"], "ntk_midtrain": models["yarn"],
                        "longrope2": models["yarn"]}
    (tmp_path / "report.json").write_text(json.dumps(report))
    out = tmp_path / "smollm2.json"
    assert smollm2_results.main(["--report", str(tmp_path / "report.json"), "--device", "cpu", "--output", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result["methods"]) == {"original", "yarn_midtrain", "ntk_midtrain", "longrope2"}
    assert result["methods"]["original"]["niah"] == models["base"]["niah_mean"]
    assert result["methods"]["longrope2"]["ppl_short"] == models["yarn"]["short"]["ppl"] and result["device"] == "cpu"
    report["models"].pop("ntk_midtrain")
    with pytest.raises(ValueError, match=r"no models named \['ntk_midtrain'\]"):
        smollm2_results.results_from_report(report, "cpu")


def test_templates_answer_nll_and_retention_sources_each_get_their_columns(models, tmp_path):
    out = tmp_path / "report"
    argv = _argv(models, out, "--niah-templates", "magic", "echo", "--retention-datasets", "builtin:stdlib:heldout",
                 "--ruler-tasks", "none")
    assert cli.main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    base, yarn = report["models"]["base"], report["models"]["yarn"]
    for m in (base, yarn):
        assert set(m["niah_by_template"]) == {"magic", "echo"}
        assert m["niah_by_template"]["magic"] == m["niah_mean"]
        assert set(m["answer_nll"]) == {"magic", "echo"}
        assert all(set(row) == {"768", "1024"} and all(v > 0 for v in row.values()) for row in m["answer_nll"].values())
        assert list(m["retention"]) == ["builtin:pydoc", "builtin:stdlib:heldout"]
        assert m["retention"]["builtin:pydoc"] == m["short"]
    # the templates share haystacks, keys and numbers and differ in the question: different NLL
    assert base["answer_nll"]["magic"] != base["answer_nll"]["echo"]
    # inside the window the longrope2 model is the base on every source
    assert base["retention"]["builtin:stdlib:heldout"]["retention_pct"] == 100.0
    assert yarn["retention"]["builtin:stdlib:heldout"]["ppl"] == pytest.approx(
        base["retention"]["builtin:stdlib:heldout"]["ppl"], rel=1e-6)
    assert yarn["retention"]["builtin:stdlib:heldout"]["ppl"] != yarn["short"]["ppl"]
    md = (out / "report.md").read_text()
    for heading in ("### template `magic`", "### template `echo`", "## Answer NLL"):
        assert md.count(heading) >= 1
    assert "`builtin:stdlib:heldout`" in md and "retention builtin:stdlib:heldout" in md


def test_answer_nll_is_the_mean_loss_over_the_answer_digits():
    """Teacher-forced NLL from the kept logits equals the loss over the full logits of each whole sample."""
    from hf_longrope2.evaluation.niah import answer_nll, niah_grid

    torch.manual_seed(0)
    model = tiny_model("llama").eval()
    tok = char_tokenizer()
    stream = tok("lorem ipsum dolor sit amet " * 40, add_special_tokens=False)["input_ids"]
    grid = niah_grid(tok, stream, [480], [0.0, 1.0], needles_per_cell=3, seed=1, template="echo")
    losses = []
    with torch.no_grad():
        for cell in grid.values():
            for ids, labels in cell.scored:
                logits = model(torch.tensor([ids])).logits[0, :-1].float()
                target = torch.tensor(labels[1:])
                losses.append(torch.nn.functional.cross_entropy(logits, target, reduction="none", ignore_index=-100)
                              [target != -100])
    expected = float(torch.cat(losses).mean())
    for batch_size in (1, 4):
        assert answer_nll(model, grid.values(), batch_size) == pytest.approx(expected, rel=1e-5)
