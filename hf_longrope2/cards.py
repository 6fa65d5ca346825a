"""Model cards for extended models, rendered from a Jinja template through `huggingface_hub.ModelCard`.

```python
>>> from hf_longrope2.cards import write_model_card
>>> write_model_card("smollm2-32k", base_model="HuggingFaceTB/SmolLM2-135M", search=search_log)
```

The template is ``hf_longrope2/model_card_template.md``; the metadata block carries ``base_model``,
``library_name: transformers``, tags (``longrope2``, ``long-context``, ``context-extension``) and the context
length. Search and midtraining outputs get a card automatically.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

TEMPLATE = Path(__file__).with_name("model_card_template.md")
TAGS = ["longrope2", "long-context", "context-extension", "rope"]


def _summaries(search: dict | None, midtrain: dict | None) -> tuple[str | None, str | None]:
    search_text = midtrain_text = None
    if search:
        s = search.get("settings", {})
        search_text = (
            f"needle-driven ({s.get('objective', 'needle')}) evolutionary search on {s.get('num_samples')} samples "
            f"of {s.get('target_length')} tokens from `{s.get('dataset')}`, population {s.get('population')}, "
            f"{s.get('iterations')} iterations, best score {search.get('best', {}).get('score', float('nan')):.4g} "
            "(exp mean answer NLL); PI / NTK / YaRN seeds: "
            + ", ".join(f"{k} {v['score']:.4g}" for k, v in search.get("seeds", {}).items())
        )
    if midtrain:
        t = midtrain.get("settings", {}).get("training", {})
        p = midtrain.get("packing", {})
        tokens = p.get("tokens", p)
        midtrain_text = (
            f"{t.get('max_steps')} steps, learning rate {t.get('learning_rate')} ({t.get('lr_scheduler_type')}), "
            f"rows of {t.get('target_length')} tokens; packed tokens: {json.dumps(tokens, default=str)[:300]}"
        )
    return search_text, midtrain_text


def render_model_card(
    folder: str | Path,
    *,
    base_model: str | None = None,
    repo_id: str | None = None,
    search: dict | None = None,
    midtrain: dict | None = None,
    results: str | None = None,
):
    """The `ModelCard` of a saved longrope2 model `folder` (reads its ``config.json``)."""
    from huggingface_hub import ModelCard, ModelCardData

    from . import __version__, factors
    from .modeling_longrope2 import longrope2_parameters
    from .rope import rotary_dim_of

    folder = Path(folder)
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(folder)
    params = longrope2_parameters(config)
    dim = rotary_dim_of(config, params)
    original = params["original_max_position_embeddings"]
    critical = params.get("critical_dim")
    tail = params["long_factor"][critical or 0 :]
    is_hub_id = base_model is not None and not os.path.exists(base_model) and "/" in base_model
    card_data = ModelCardData(
        base_model=base_model if is_hub_id else None,
        library_name="transformers",
        pipeline_tag="text-generation",
        tags=TAGS,
    )
    card_data.context_length = config.max_position_embeddings
    search_text, midtrain_text = _summaries(search, midtrain)
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE),
        model_name=repo_id or folder.name,
        repo_id=repo_id or str(folder),
        base_model=base_model,
        version=__version__,
        original_window=original,
        target_length=config.max_position_embeddings,
        scale=config.max_position_embeddings / original,
        long_mscale=params["long_mscale"],
        num_pairs=dim // 2,
        critical_dim=critical,
        theoretical_critical_dim=factors.critical_dimension(dim, float(params["rope_theta"]), original),
        tail_min=min(tail),
        tail_max=max(tail),
        search=search_text,
        midtrain=midtrain_text,
        results=results,
    )


def write_model_card(folder: str | Path, **kwargs) -> Path:
    """Render [`render_model_card`] into ``folder/README.md`` (atomically) and return its path."""
    from .atomic import write_text_atomically

    return write_text_atomically(Path(folder) / "README.md", str(render_model_card(folder, **kwargs)))
