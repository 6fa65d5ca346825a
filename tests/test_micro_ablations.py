"""benchmarks/micro_ablations.py: each hybrid swaps exactly one thing between the searched vector and YaRN's."""


import pytest

from benchmarks.micro_ablations import HYBRIDS, hybrid_rope
from hf_longrope2 import factors

SEARCHED = {"rope_type": "longrope2", "critical_dim": 3, "factor": 8.0, "long_mscale": 1.1726,
            "long_factor": [1.0, 1.5, 3.0, 8.0, 8.0, 12.0]}


def yarn() -> dict:
    params = factors.baseline("yarn", 12, 500.0, 256, 2048)
    return {"rope_type": "longrope2", "factor": 8.0, **params}


def test_yarn_left_takes_yarn_below_critical_dim_and_keeps_the_searched_tail():
    ref = yarn()
    out = hybrid_rope("longrope2_yarn_left", SEARCHED, ref)
    assert out["long_factor"] == ref["long_factor"][:3] + SEARCHED["long_factor"][3:]
    assert out["long_factor"] != SEARCHED["long_factor"]
    assert out["long_mscale"] == SEARCHED["long_mscale"]
    assert out["critical_dim"] == 3


def test_mscale_hybrids_swap_only_the_attention_factor():
    ref = yarn()
    lr2 = hybrid_rope("longrope2_yarn_mscale", SEARCHED, ref)
    assert lr2["long_factor"] == SEARCHED["long_factor"] and lr2["long_mscale"] == ref["long_mscale"] != 1.1726
    y = hybrid_rope("yarn_lr2_mscale", SEARCHED, ref)
    assert y["long_factor"] == ref["long_factor"] and y["long_mscale"] == SEARCHED["long_mscale"]


def test_unknown_hybrid_is_named():
    with pytest.raises(ValueError, match=r"unknown hybrid 'x'.*longrope2_yarn_left"):
        hybrid_rope("x", SEARCHED, yarn())
    assert len(HYBRIDS) == 3
