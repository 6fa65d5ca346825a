"""The serving export on transformers 4.x: a venv with the newest 4.x (built once under the package cache dir,
``--system-site-packages`` so torch is shared) loads it with the same logits as transformers 5; the longrope2
folder itself fails there with one line that says what it needs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from hf_longrope2.extension import export_for_serving, extend_pretrained
from hf_longrope2.utils.environment import cache_dir

pytestmark = pytest.mark.slow

WORKER = """
import json, sys, torch, transformers
from transformers import AutoModelForCausalLM, AutoTokenizer
job = json.load(open(sys.argv[1]))
out = {"version": transformers.__version__}
model = AutoModelForCausalLM.from_pretrained(job["export"]).eval()
with torch.no_grad():
    torch.save(model(torch.load(job["ids"])).logits, job["logits"])
out["tokens"] = AutoTokenizer.from_pretrained(job["export"])("hello").input_ids
try:
    AutoModelForCausalLM.from_pretrained(job["longrope2"], trust_remote_code=True)
    out["longrope2"] = "loaded"
except Exception as exc:
    out["longrope2"] = str(exc).strip().splitlines()[-1]
json.dump(out, open(job["result"], "w"))
"""


def transformers4_python() -> Path:
    """The python of a venv with the newest transformers 4.x, built on first use (about a minute)."""
    venv = cache_dir() / "venv-transformers4"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "transformers<5"], check=True)
    return python


def test_serving_export_loads_the_same_model_on_transformers4(tmp_path, tiny_llama):
    python = transformers4_python()
    ext, served = tmp_path / "ext", tmp_path / "served"
    extend_pretrained(str(tiny_llama), ext, 128, method="yarn")
    export_for_serving(ext, served)
    ids = torch.randint(3, 60, (1, 100), generator=torch.Generator().manual_seed(0))  # past the 32-token window
    torch.save(ids, tmp_path / "ids.pt")
    with torch.no_grad():
        v5 = AutoModelForCausalLM.from_pretrained(served).eval()(ids).logits
    job = {"export": str(served), "longrope2": str(ext), "ids": str(tmp_path / "ids.pt"),
           "logits": str(tmp_path / "v4.pt"), "result": str(tmp_path / "result.json")}
    (tmp_path / "job.json").write_text(json.dumps(job))
    (tmp_path / "worker.py").write_text(WORKER)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([str(python), str(tmp_path / "worker.py"), str(tmp_path / "job.json")], check=True, cwd=tmp_path,
                   env=env, stdin=subprocess.DEVNULL, timeout=600)
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["version"].startswith("4.")
    torch.testing.assert_close(torch.load(tmp_path / "v4.pt"), v5, rtol=0, atol=1e-5)
    assert result["tokens"] == AutoTokenizer.from_pretrained(served)("hello").input_ids
    assert "needs transformers >= 5.23" in result["longrope2"], result["longrope2"]
