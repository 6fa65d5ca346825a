"""hf-longrope2: LongRoPE2 context-window extension for Hugging Face transformers.

``import hf_longrope2`` registers the ``longrope2`` rope type in transformers (idempotent) and the
longrope2 model classes with the Auto classes, so saved extended models load with plain
``AutoModelForCausalLM.from_pretrained(dir)``; without this package they load with
``trust_remote_code=True``.
"""

from __future__ import annotations

from transformers import AutoConfig, AutoModelForCausalLM

from . import factors
from .configuration_longrope2 import CONFIG_CLASSES
from .extend import extend
from .modeling_longrope2 import ARCHITECTURES, SUPPORTED_MODEL_TYPES, architecture_for
from .rope import ROPE_TYPE, register_rope_type
from .rotary import set_sequence_shard
from .serving import export_for_serving
from .windows import SequenceShard, document_lengths, long_window_mask

__version__ = "0.1.0"

# Importing .rope (above) registered the rope type; here the classes join the Auto mappings.
for _cls in CONFIG_CLASSES:
    _arch = ARCHITECTURES[_cls.model_type]
    AutoConfig.register(_cls.model_type, _cls, exist_ok=True)
    AutoModelForCausalLM.register(_cls, _arch.model_class, exist_ok=True)

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
    "set_sequence_shard",
    "__version__",
]
