"""``hf-longrope2 search`` end to end on a tiny Llama: output folder, pruning equivalence, resume, processes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from hf_longrope2 import cli, factors
from hf_longrope2.tiny.models import ORIGINAL, VOCAB, load_in_isolation

ROOT = Path(__file__).resolve().parents[2]
TEXT = "It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of foolishness. "


@pytest.fixture(scope="module")
def assets(tmp_path_factory, tiny_llama):
    root = tmp_path_factory.mktemp("search")
    shutil.copytree(tiny_llama, root / "tiny")
    text = root / "text"
    text.mkdir()
    for i in range(6):
        (text / f"book{i}.txt").write_text(f"Book {i}. " + TEXT * (30 + 5 * i))
    return root


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_LONGROPE2_CACHE", str(tmp_path / "cache"))


def _argv(assets, out, *extra):
    return ["--model", str(assets / "tiny"), "--dataset", str(assets / "text"), "--output_dir", str(out), *extra]


SMALL = ["--target-length", "512", "--population", "8", "--iterations", "2", "--num-samples", "2"]
REAL = ["--target_length", "448", "--population", "8", "--parents", "4", "--iterations", "3", "--num_samples", "3",
        "--candidates_per_step", "4"]


def _log(out) -> dict:
    return json.loads((Path(out) / "search_log.json").read_text())


def test_search_writes_a_loadable_extended_model(assets, tmp_path):
    out = tmp_path / "out"
    started = time.perf_counter()
    assert cli.main(["search", *_argv(assets, out, *SMALL)]) == 0
    assert time.perf_counter() - started < 60
    config = json.loads((out / "config.json").read_text())
    rope = config["rope_parameters"]
    assert rope["rope_type"] == "longrope2" and rope["original_max_position_embeddings"] == ORIGINAL
    assert config["max_position_embeddings"] == 512 and config["auto_map"]
    log = _log(out)
    assert rope["long_factor"] == log["best"]["long_factor"] and rope["critical_dim"] == log["best"]["critical_dim"]
    assert factors.is_monotone(rope["long_factor"], rope["critical_dim"])
    assert all(16.0 <= x <= 32.0 for x in rope["long_factor"][rope["critical_dim"]:])
    assert set(log["seeds"]) == {"pi", "ntk", "yarn"} and all(s["score"] > 1 for s in log["seeds"].values())
    best_seed = min(log["seeds"].values(), key=lambda s: s["score"])  # samples scored hardest first
    assert [best_seed["losses"][j] for j in log["sample_order"]] == sorted(best_seed["losses"], reverse=True)
    assert len(log["best_per_iteration"]) == 3 and len(log["evaluated"]) == 8 + 2 * 4
    scores = [b["score"] for b in log["best_per_iteration"]]
    assert scores == sorted(scores, reverse=True)  # elitist: the best never gets worse
    for key in ("settings", "versions", "wall_time_s", "sample_forwards"):
        assert key in log
    assert {"critical_dim", "score", "key", "tail"} <= set(log["evaluated"][0])
    # the base's weight files, copied (never shared: a base overwritten later must not change this output)
    assert log["weights"] in ("cloned", "copied") and (out / "model.safetensors").stat().st_ino != (
        assets / "tiny" / "model.safetensors").stat().st_ino
    assert (out / "model.safetensors").read_bytes() == (assets / "tiny" / "model.safetensors").read_bytes()
    for png in ("search_progress.png", "factors.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not Path(f"{out}.search-state").exists() and (out / "tokenizer.json").exists()
    ids = torch.randint(3, VOCAB, (1, 300))
    torch.save(ids, tmp_path / "ids.pt")
    load_in_isolation([{"dir": str(out), "trust_remote_code": True, "inputs": str(tmp_path / "ids.pt"),
                        "output": str(tmp_path / "logits.pt")}], tmp_path)
    loaded = torch.load(tmp_path / "logits.pt")
    assert loaded["class"].endswith("LongRoPE2LlamaForCausalLM") and torch.isfinite(loaded["logits"]).all()


def test_same_seed_same_search(assets, tmp_path):
    for name in ("a", "b"):
        assert cli.main(["search", *_argv(assets, tmp_path / name, *SMALL, "--seed", "5")]) == 0
    a, b = _log(tmp_path / "a"), _log(tmp_path / "b")
    assert [e["key"] for e in a["evaluated"]] == [e["key"] for e in b["evaluated"]]
    assert a["best"] == b["best"]


class _Single:
    process_index, num_processes, is_main_process = 0, 1, True


_SYNTHETIC_TOTAL: dict[str, float] = {}  # candidate key -> its total over every sample (racing test)


def _synthetic_search(tmp_path, racing: str, noise: float = 0.0):
    """A Search whose per-sample losses are a known function of the factors (far from an optimum = large)."""
    import math
    import random

    from hf_longrope2.search import SearchConfig
    from hf_longrope2.search.evolution import Search
    from hf_longrope2.search.scoring import accumulate
    from hf_longrope2.search.space import SearchSpace

    weights = [3.0, 2.0, 1.5, 1.0, 0.7, 0.5]  # hardest first, as an ordering heuristic would do
    optimum = [math.log(1.0 + 0.5 * i) for i in range(16)]
    calls = []

    def evaluate(long_factor, critical_dim, threshold, long_mscale=None, reference=None, confidence=0.95):
        distance = sum((math.log(x) - o) ** 2 for x, o in zip(long_factor, optimum, strict=True))
        jitter = random.Random(str(long_factor))  # per-sample noise, a fixed function of the candidate
        values = [w * (1.0 + 10.0 * distance) + noise * jitter.random() for w in weights]

        def losses():
            for i, value in enumerate(values):
                calls.append(1)
                yield [(i, value)]

        _SYNTHETIC_TOTAL[f"{critical_dim}:" + ",".join(str(round(x * 100)) for x in long_factor[critical_dim:])] = sum(
            values)
        result = accumulate(losses(), len(weights), threshold, reference, confidence)
        if not result["pruned"]:
            result["losses"] = values
        return result

    args = SearchConfig(model="m", output_dir=str(tmp_path / f"out{racing}"), target_length=256, num_samples=6,
                        population=16, parents=6, iterations=5, racing=racing, candidates_per_step=4)
    space = SearchSpace(32, 4.0, range(4, 9))
    state = Search.new_state(args, random.Random(0), {"pi": {"long_factor": [4.0] * 16, "long_mscale": 1.0}})
    return Search(args, space, 32, evaluate, _Single(), state).run(), len(calls)


def test_references_are_scored_with_their_own_attention_factor(assets, tmp_path):
    """The PI / NTK / YaRN seeds are the methods as defined: their factors and their own attention factor."""
    import math

    from transformers import AutoModelForCausalLM, AutoTokenizer

    import hf_longrope2
    from hf_longrope2.data.needles import NeedleSettings, needle_samples
    from hf_longrope2.losses import labelled_nll

    out = tmp_path / "out"
    assert cli.main(["search", *_argv(assets, out, *SMALL)]) == 0
    seeds, settings = _log(out)["seeds"], _log(out)["settings"]
    assert seeds["pi"]["long_mscale"] == seeds["ntk"]["long_mscale"] == 1.0
    assert seeds["yarn"]["long_mscale"] == pytest.approx(0.1 * math.log(16) + 1)
    tokenizer = AutoTokenizer.from_pretrained(assets / "tiny")
    samples = needle_samples(tokenizer, NeedleSettings(
        dataset=str(assets / "text"), target_length=512, num_samples=2, split=settings["dataset_split"],
        text_column=settings["text_column"], seed=settings["seed"], max_depth=settings["max_depth"]))
    model = AutoModelForCausalLM.from_pretrained(assets / "tiny")
    hf_longrope2.extend(model, **factors.baseline("yarn", 16, model.config.rope_parameters["rope_theta"], ORIGINAL, 512),
                        max_position_embeddings=512)
    with torch.no_grad():
        losses = labelled_nll(model, samples.input_ids, samples.labels).double()
    assert seeds["yarn"]["score"] == pytest.approx(math.exp(losses.mean().item()), rel=1e-5)


def test_pruning_is_exact_and_saves_forwards(tmp_path):
    pruned, pruned_calls = _synthetic_search(tmp_path, "exact")
    full, full_calls = _synthetic_search(tmp_path, "off")
    assert pruned["best_per_iteration"] == full["best_per_iteration"]
    assert list(pruned["evaluated"]) == list(full["evaluated"])  # the same parents bred the same children
    stopped = [k for k, e in pruned["evaluated"].items() if e["pruned"]]
    assert len(stopped) >= 8 and pruned_calls == pruned["sample_forwards"] < full_calls == full["sample_forwards"]
    for key in stopped:  # a stopped candidate's partial sum is a lower bound of its real total ...
        assert pruned["evaluated"][key]["total"] <= full["evaluated"][key]["total"]
        assert pruned["evaluated"][key]["samples"] < 6
    ranked = sorted((e["total"], k) for k, e in full["evaluated"].items())
    assert not {k for _, k in ranked[:6]} & set(stopped)  # ... and none of them is among the final parents


def test_paired_racing_keeps_the_best_and_saves_more_forwards(tmp_path):
    """Candidates a little worse than the k-th parent on every sample are dropped before their last samples."""
    exact, exact_calls = _synthetic_search(tmp_path, "exact", noise=0.05)
    paired, paired_calls = _synthetic_search(tmp_path, "paired", noise=0.05)
    raced = [k for k, e in paired["evaluated"].items() if e["raced"]]
    assert raced and not any(e["raced"] for e in exact["evaluated"].values())
    assert paired_calls < exact_calls
    assert paired["best_per_iteration"][-1]["score"] <= exact["best_per_iteration"][-1]["score"] * 1.01
    best_total = min(e["total"] for e in paired["evaluated"].values() if not e["pruned"])
    for key in raced:  # a raced candidate, scored in full, is truly worse than the best
        assert paired["evaluated"][key]["samples"] < 6
        assert _SYNTHETIC_TOTAL[key] > best_total


def test_racing_flag_on_a_real_model_changes_nothing_but_cost(assets, tmp_path):
    assert cli.main(["search", *_argv(assets, tmp_path / "pruned", *REAL, "--racing", "exact")]) == 0
    assert cli.main(["search", *_argv(assets, tmp_path / "full", *REAL, "--racing", "off")]) == 0
    pruned, full = _log(tmp_path / "pruned"), _log(tmp_path / "full")
    assert pruned["best"] == full["best"] and pruned["best_per_iteration"] == full["best_per_iteration"]
    assert [e["key"] for e in pruned["evaluated"]] == [e["key"] for e in full["evaluated"]]
    assert pruned["sample_forwards"] <= full["sample_forwards"]


def test_evaluator_stops_early_with_a_lower_bound(assets):
    from transformers import AutoModelForCausalLM

    import hf_longrope2  # noqa: F401  (registers the rope type)
    from hf_longrope2.data.needles import NeedleSettings, needle_samples
    from hf_longrope2.search.scoring import FactorScorer
    from hf_longrope2.tiny.models import char_tokenizer

    samples = needle_samples(char_tokenizer(), NeedleSettings(dataset=str(assets / "text"), target_length=448,
                                                              num_samples=4))
    model = AutoModelForCausalLM.from_pretrained(assets / "tiny").eval()
    evaluate = FactorScorer(model, samples, 448)
    lf = factors.pi(16, 448 / ORIGINAL)
    whole = evaluate(lf, None, float("inf"))
    assert not whole["pruned"] and whole["samples"] == 4
    first = evaluate(lf, None, 0.0)  # any positive loss exceeds a zero threshold after the first sample
    assert first["pruned"] and first["samples"] == 1 and 0 < first["total"] < whole["total"]


# The search process SIGKILLs itself at a fixed point: while writing the state that holds the 10th evaluated
# candidate (inside iteration 1), before the rename, so that write is lost and the previous state survives.
KILL_AT_10TH_CANDIDATE = """
import os, signal, sys
from hf_longrope2.utils import run_folder

real = run_folder.write_json_atomically

def write_json_atomically(path, data, *args, **kwargs):
    if len(data["evaluated"]) >= 10:
        path.with_name(".state.tmp-killed").write_text(str(data)[:100])  # a half-written temporary file
        os.kill(os.getpid(), signal.SIGKILL)
    return real(path, data, *args, **kwargs)

run_folder.write_json_atomically = write_json_atomically
from hf_longrope2.cli import main
sys.exit(main(["search", *sys.argv[1:]]))
"""


@pytest.mark.slow  # three searches, one in a subprocess
def test_resume_after_sigkill_gives_the_same_result(assets, tmp_path):
    args = _argv(assets, tmp_path / "killed", *REAL, "--candidates_per_step", "1")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", KILL_AT_10TH_CANDIDATE, *args], env=env, capture_output=True,
                          timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    state = Path(f"{tmp_path / 'killed'}.search-state") / "state.json"
    saved = json.loads(state.read_text())
    assert len(saved["evaluated"]) == 9 and not saved["done"] and not (tmp_path / "killed" / "config.json").exists()
    with pytest.raises(FileExistsError, match="--resume"):
        cli_main_raising(args)
    assert cli.main(["search", *args, "--resume"]) == 0
    assert cli.main(["search", *_argv(assets, tmp_path / "whole", *REAL, "--candidates_per_step", "1")]) == 0
    resumed, whole = _log(tmp_path / "killed"), _log(tmp_path / "whole")
    assert resumed["best"] == whole["best"] and resumed["best_per_iteration"] == whole["best_per_iteration"]
    assert [e["key"] for e in resumed["evaluated"]] == [e["key"] for e in whole["evaluated"]]


def cli_main_raising(args):
    from hf_longrope2.cli import run_verb

    run_verb("search", args)


@pytest.mark.slow  # accelerate launch of 2 processes
def test_two_processes_give_the_same_result(assets, tmp_path):
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29533",
              str(ROOT / "recipes" / "search.py")]
    subprocess.run([*launch, *_argv(assets, tmp_path / "two", *REAL)], env=env, check=True, timeout=300,
                   capture_output=True)
    assert cli.main(["search", *_argv(assets, tmp_path / "one", *REAL)]) == 0
    two, one = _log(tmp_path / "two"), _log(tmp_path / "one")
    assert two["num_processes"] == 2 and one["num_processes"] == 1
    assert two["best"] == one["best"] and two["best_per_iteration"] == one["best_per_iteration"]


@pytest.mark.parametrize(
    "case, extra, message",
    [
        ("short", ["--target_length", "32"], "must be larger than the model's original window (32)"),
        ("too-few", ["--target_length", "6000", "--num_samples", "2"], "only 1 of 6 documents"),
        ("column", ["--target_length", "448", "--dataset", "JSONL"], "'body'"),
        ("unwritable", ["--target_length", "448", "--output_dir", "FILE/out"], "cannot write to"),
    ],
)
def test_bad_input_is_a_clear_error_and_writes_nothing(assets, tmp_path, capsys, case, extra, message):
    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text(json.dumps({"body": TEXT * 20}) + "\n")
    (tmp_path / "file").write_text("not a folder")
    extra = [str(jsonl) if x == "JSONL" else x.replace("FILE", str(tmp_path / "file")) for x in extra]
    before = set(tmp_path.iterdir())
    fast = ["--population", "2", "--iterations", "0", "--num_samples", "1"]  # should it not fail, fail fast
    assert cli.main(["search", *_argv(assets, tmp_path / "out", *fast, *extra)]) == 2
    assert message in capsys.readouterr().err
    assert set(tmp_path.iterdir()) == before  # no output folder, no state


def test_model_without_rope_is_refused(assets, tmp_path, capsys):
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=VOCAB)).save_pretrained(tmp_path / "gpt2")
    argv = ["search", "--model", str(tmp_path / "gpt2"), "--target_length", "448", "--output_dir", str(tmp_path / "o")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "gpt2" in err and "llama" in err and not (tmp_path / "o").exists()


def test_resume_checks(assets, tmp_path, capsys):
    assert cli.main(["search", *_argv(assets, tmp_path / "o", *SMALL, "--resume")]) == 2
    assert "no search state" in capsys.readouterr().err
    state = Path(f"{tmp_path / 'o'}.search-state")
    state.mkdir()
    (state / "state.json").write_text(json.dumps({"version": 4, "settings": {"seed": 99}}))
    assert cli.main(["search", *_argv(assets, tmp_path / "o", *SMALL, "--resume")]) == 2
    assert "records no identity of its inputs" in capsys.readouterr().err
    (state / "state.json").write_text(json.dumps({"version": 3, "settings": {"seed": 99}}))  # before "inputs"
    assert cli.main(["search", *_argv(assets, tmp_path / "o", *SMALL, "--resume")]) == 2
    assert "has state version 3, this hf-longrope2 writes 4" in capsys.readouterr().err


def test_resume_checks_the_inputs_by_content(assets, tmp_path, capsys, monkeypatch):
    """Interrupted after its first saved state; its model's weights replaced (same shapes) at the same path: the
    resume is refused naming them. The same model by a relative path (and the dataset by another spelling) is
    the same input: the resume runs."""
    from safetensors.torch import load_file, save_file

    from hf_longrope2.utils.run_folder import RunFolder

    shutil.copytree(assets / "tiny", tmp_path / "m")
    save_state = RunFolder.save_state

    def save_then_stop(self, data):
        save_state(self, data)
        raise KeyboardInterrupt

    monkeypatch.setattr(RunFolder, "save_state", save_then_stop)
    argv = ["--dataset", str(assets / "text"), "--output_dir", str(tmp_path / "o"), *SMALL]
    assert cli.main(["search", "--model", str(tmp_path / "m"), *argv]) == 130
    monkeypatch.setattr(RunFolder, "save_state", save_state)
    assert "continue with:" in capsys.readouterr().err
    weights = tmp_path / "m" / "model.safetensors"
    original = weights.read_bytes()
    save_file({k: v + 0.01 for k, v in load_file(weights).items()}, weights, metadata={"format": "pt"})
    assert cli.main(["search", "--model", str(tmp_path / "m"), *argv, "--resume"]) == 2
    err = capsys.readouterr().err
    assert "--resume: model weights changed since the run started: --model" in err
    assert "model.safetensors (content differs)" in err and not (tmp_path / "o").exists()
    weights.write_bytes(original)
    monkeypatch.chdir(tmp_path)
    argv[1] = str(assets / "text") + "/"
    assert cli.main(["search", "--model", "m", *argv, "--resume"]) == 0
    assert (tmp_path / "o" / "config.json").is_file()


def test_longrope_space_is_never_worse_than_the_seeds_it_contains(assets, tmp_path, capsys):
    out = tmp_path / "longrope"
    assert cli.main(["search", *_argv(assets, out, *REAL, "--space", "longrope")]) == 0
    log, err = _log(out), capsys.readouterr().err
    assert log["space"] == "longrope" and log["best"]["critical_dim"] == 0
    assert log["seeds_in_space"] == ["ntk", "pi", "yarn"]  # rotary dim 16, 64 -> 448 tokens: all on the grid
    for name in log["seeds_in_space"]:  # scored in full as candidates (LongRoPE's attention factor)
        assert log["best"]["score"] <= log["seeds"][name]["candidate_score"]
    assert factors.is_monotone(log["best"]["long_factor"]) and min(log["best"]["long_factor"]) >= 1.0
    # the closing lines name every reference that beat the best, and only then
    if log["seeds_better_than_best"]:
        assert "warning: the reference" in err.strip().splitlines()[-2]
    else:
        assert "warning: the reference" not in err


def test_better_seed_advice_names_the_seed_and_the_commands():
    from hf_longrope2.search import SearchConfig
    from hf_longrope2.search.runner import better_seed_advice

    args = SearchConfig(model="m", target_length=2048, output_dir="out/")
    seeds = {"pi": {"score": 9.0}, "ntk": {"score": 6.0}, "yarn": {"score": 5.33}}
    lines = better_seed_advice(args, seeds, 7.75, {})
    assert "yarn 5.3300, ntk 6.0000" in lines[0] and "best longrope2-space candidate (7.7500)" in lines[0]
    assert "cannot represent its factors" in lines[0]
    assert lines[1].strip() == "to use yarn: hf-longrope2 extend --model m --method yarn --target-length 2048 " \
                               "--output-dir out-yarn"
    assert "--space longrope" in lines[2]
    assert better_seed_advice(args, seeds, 5.0, {}) == []
    longrope = SearchConfig(model="m", target_length=2048, output_dir="o", space="longrope")
    lines = better_seed_advice(longrope, seeds, 5.5, {"yarn": "0:100"})
    assert "holds its factors but not its attention factor" in lines[0] and len(lines) == 2
