"""hf-longrope2: LongRoPE2 context-window extension for Hugging Face transformers.

``import hf_longrope2`` registers the ``longrope2`` rope type in transformers (idempotent) and the
longrope2 model classes with the Auto classes, so saved extended models load with plain
``AutoModelForCausalLM.from_pretrained(dir)``; without this package they load with
``trust_remote_code=True``.
"""

from __future__ import annotations

from . import factors
from .extension import export_for_serving, extend, save_extended
from .modeling import SUPPORTED_MODEL_TYPES, architecture_for  # importing it registers the classes
from .modeling.rope import ROPE_TYPE, register_rope_type
from .modeling.rotary import set_sequence_shard
from .modeling.windows import SequenceShard, document_lengths, long_window_mask
from .utils.environment import __version__

__all__ = [
    "ROPE_TYPE",
    "SUPPORTED_MODEL_TYPES",
    "SequenceShard",
    "architecture_for",
    "document_lengths",
    "export_for_serving",
    "extend",
    "factors",
    "long_window_mask",
    "register_rope_type",
    "save_extended",
    "set_sequence_shard",
    "__version__",
]
