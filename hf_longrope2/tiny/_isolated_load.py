"""Run in a fresh interpreter by the tests and `hf-longrope2 check`: load model folders while `hf_longrope2` cannot be imported.

Usage: python path/to/_isolated_load.py JOBS.json   (run by file path, never with -m)
Each job: {"dir": ..., "trust_remote_code": bool, "inputs": "ids.pt", "output": "logits.pt"}; a failure to
load is written as {"error": type, "message": str} next to the output path (``.err.json``).
"""

import importlib.abc
import json
import sys


class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "hf_longrope2" or name.startswith("hf_longrope2."):
            raise ImportError(f"{name} is blocked in this interpreter")


sys.meta_path.insert(0, _Block())

import torch  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

for job in json.load(open(sys.argv[1])):
    try:
        model = AutoModelForCausalLM.from_pretrained(job["dir"], trust_remote_code=job["trust_remote_code"]).eval()
    except Exception as exc:  # recorded for the test to assert on
        with open(job["output"] + ".err.json", "w") as f:
            json.dump({"error": type(exc).__name__, "message": str(exc)}, f)
        continue
    assert "hf_longrope2" not in sys.modules
    ids = torch.load(job["inputs"])
    with torch.no_grad():
        logits = model(input_ids=ids, use_cache=False).logits
    torch.save({"logits": logits, "class": type(model).__module__ + "." + type(model).__name__}, job["output"])
