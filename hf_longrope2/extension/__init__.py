"""Extension: turn a loaded causal LM into a longrope2 model, save it, and export it for serving.

```python
>>> import hf_longrope2
>>> from hf_longrope2 import factors
>>> model = transformers.AutoModelForCausalLM.from_pretrained("HuggingFaceTB/SmolLM2-135M")
>>> hf_longrope2.extend(model, factors.yarn(64, 1e5, scale=4.0, original_max_position_embeddings=8192))
>>> model.save_pretrained("smollm2-32k")  # loads anywhere with trust_remote_code=True
>>> hf_longrope2.export_for_serving("smollm2-32k", "smollm2-32k-serving")
# vllm serve smollm2-32k-serving --max-model-len 32768
```

One module per job: [`extend`] (``in_place``) changes the config and the rotary modules only; [`save_extended`]
(``saving``) writes a complete folder whose weights files are copied from the source
(hard-linked only when asked);
[`extend_pretrained`] (``pretrained``) is ``hf-longrope2 extend``; [`export_for_serving`] (``serving``) writes the
built-in ``longrope`` format (docs/serving.md).
"""

from .in_place import extend
from .pretrained import ExtendArguments, extend_pretrained, run_extend
from .saving import copy_or_link, ready_to_save, save_extended
from .serving import ExportServingArguments, export_for_serving, serving_config, v4_rope_fields

__all__ = [
    "ExportServingArguments",
    "ExtendArguments",
    "copy_or_link",
    "export_for_serving",
    "extend",
    "extend_pretrained",
    "ready_to_save",
    "run_extend",
    "save_extended",
    "serving_config",
    "v4_rope_fields",
]
