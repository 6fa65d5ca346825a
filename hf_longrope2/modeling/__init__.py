"""The longrope2 rope type and model classes: the five files copied next to every saved model.

``rope.py`` (the rope type and its validator), ``windows.py`` (which window each token uses), ``rotary.py``
(the rotary module), ``configuration_longrope2.py`` and ``modeling_longrope2.py`` (config and causal-LM
classes, and the architecture table) import only torch, transformers and each other by relative import, so
``save_pretrained`` copies exactly the source the library runs and a saved folder loads with
``trust_remote_code=True`` where hf_longrope2 is not installed.

Importing this package registers the rope type in transformers (``rope.py``, idempotent) and the longrope2
classes with ``AutoConfig`` / ``AutoModelForCausalLM``, so saved folders also load without
``trust_remote_code`` wherever hf_longrope2 is imported.
"""

from __future__ import annotations

from transformers import AutoConfig, AutoModelForCausalLM

from .modeling_longrope2 import ARCHITECTURES, SUPPORTED_MODEL_TYPES, Architecture, architecture_for

for _model_type in SUPPORTED_MODEL_TYPES:
    _arch = ARCHITECTURES[_model_type]
    AutoConfig.register(_arch.config_class.model_type, _arch.config_class, exist_ok=True)
    AutoModelForCausalLM.register(_arch.config_class, _arch.model_class, exist_ok=True)

__all__ = ["ARCHITECTURES", "SUPPORTED_MODEL_TYPES", "Architecture", "architecture_for"]
