"""Exact LongRoPE2 serving in vLLM (0.32): the original RoPE while a request fits in the window, the long factors
once it does not, decided per request inside every batch.

vLLM's built-in ``longrope`` picks one table for the whole engine from ``max_model_len``, so an engine set up
for long prompts gives short prompts the long factors (docs/serving.md measures what that costs). This module,
loaded by vLLM through the ``vllm.general_plugins`` entry point of this package, adds:

- ``LongRoPE2LlamaForCausalLM``: vLLM's Llama with one rotary module that holds both tables and gathers, per
  token, from the table of the token's request: long when the request's length after this step (``seq_lens``
  of the attention metadata) exceeds ``original_max_position_embeddings``. That is transformers' longrope2
  rule (hf_longrope2.modeling.windows) with one document per request.
- ``LongRoPE2Scheduler``: vLLM's scheduler that, when a request is about to cross the window during decoding,
  preempts it by recomputation (its blocks are freed and its prompt + generated tokens are prefilled again),
  so its cached keys are recomputed with the long factors, as transformers' cached generation recomputes at
  the crossing. Requests that are long (prompt beyond the window at admission, or crossed) get a cache salt of
  their own: prefix-cache blocks are never shared between the two rotary tables.

Serve an `export-serving` folder with::

    vllm serve FOLDER --hf-overrides '{"architectures": ["LongRoPE2LlamaForCausalLM"]}' \\
        --scheduler-cls hf_longrope2.extension.vllm_plugin.LongRoPE2Scheduler --no-enable-chunked-prefill \\
        --max-num-batched-tokens MAX_MODEL_LEN --enforce-eager

Chunked prefill must be off (a chunk of a long prompt that ends inside the window could not tell from the batch
that its request is long) and the model eager (the choice reads the batch's lengths on the host); the model
refuses to load with a one-line error otherwise. Set
``HF_LONGROPE2_VLLM_STATS=path.json`` to have the worker and the scheduler count mixed batches, tokens per
table and crossings into ``path.json.worker`` / ``path.json.scheduler`` (used by the tests and the benchmark).
"""

from __future__ import annotations

import json
import os
import time

import torch
from torch import nn

from ..modeling.rope import ROPE_TYPE, LongRoPE2Parameters, rope_parameters, scaled_inv_freq
from .serving import longrope_spelling

ARCHITECTURE = "LongRoPE2LlamaForCausalLM"
SCHEDULER = "hf_longrope2.extension.vllm_plugin.LongRoPE2Scheduler"
LONG_SALT = "hf-longrope2:long"  # appended to a request's cache salt once it uses the long factors
_STATS_ENV = "HF_LONGROPE2_VLLM_STATS"


def register() -> None:
    """The ``vllm.general_plugins`` entry point: registers the architecture (lazily, by name)."""
    from vllm import ModelRegistry  # optional: only inside vLLM's environment

    if ARCHITECTURE not in ModelRegistry.get_supported_archs():
        ModelRegistry.register_model(ARCHITECTURE, f"{__name__}:LongRoPE2LlamaForCausalLM")


def engine_kwargs(max_model_len: int, export: bool = True) -> dict:
    """`vllm.LLM` keyword arguments that serve a saved longrope2 folder (`export=False`: its own architecture, with
    remote code) or its `export-serving` folder exactly: ``vllm.LLM(model=folder, **engine_kwargs(32768))``."""
    source = {"hf_overrides": {"architectures": [ARCHITECTURE]}} if export else {"trust_remote_code": True}
    return {**source, "max_model_len": max_model_len, "enforce_eager": True, "scheduler_cls": SCHEDULER,
            "enable_chunked_prefill": False, "max_num_batched_tokens": max_model_len}


def serving_parameters(hf_config) -> LongRoPE2Parameters:
    """The resolved LongRoPE2 parameters of a saved longrope2 folder's config or of its `export-serving` one (whose
    ``longrope`` dict carries the same keys), as vLLM loaded it; raises on any other config."""
    params = rope_parameters(hf_config)
    if params.get("rope_type") not in (ROPE_TYPE, "longrope") or "long_factor" not in params:
        raise ValueError(f"{ARCHITECTURE} serves a saved longrope2 folder or its `hf-longrope2 export-serving` "
                         f"export (rope_type 'longrope' with long_factor); this config has rope_type "
                         f"{params.get('rope_type')!r}")
    return LongRoPE2Parameters.from_config(hf_config)


class _Stats:
    """Counters written to ``$HF_LONGROPE2_VLLM_STATS.<role>`` after each update (only when the variable is set)."""

    def __init__(self, role: str) -> None:
        base = os.environ.get(_STATS_ENV)
        self.path = f"{base}.{role}" if base else None
        self.counts: dict[str, int] = {}

    def add(self, **counts: int) -> None:
        if self.path is None:
            return
        for key, value in counts.items():
            self.counts[key] = self.counts.get(key, 0) + int(value)
        tmp = f"{self.path}.tmp{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump(self.counts, f)
        os.replace(tmp, self.path)


def long_token_flags(query_start_loc: torch.Tensor, seq_lens: torch.Tensor, window: int,
                     num_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-token flag [num_tokens], per-request flag) of a flattened batch: a request is long when its length after
    this step (`seq_lens`: cached + scheduled tokens) exceeds `window`; padding tokens past the batch are short."""
    starts = query_start_loc.to("cpu", torch.long)
    long_request = seq_lens.to("cpu", torch.long)[: starts.numel() - 1] > window
    flags = torch.repeat_interleave(long_request, starts.diff())
    return torch.nn.functional.pad(flags, (0, max(0, num_tokens - flags.numel())))[:num_tokens], long_request


class PerRequestLongRoPE(nn.Module):
    """Both rotary tables of a LongRoPE2 model and the per-request choice between them (neox style).

    Rows ``[0, window)`` of the cache hold the original RoPE times ``short_mscale``; rows ``window + p`` the long
    factors at position ``p`` times ``long_mscale``: one gather serves a batch that mixes both.
    """

    def __init__(self, head_size: int, p: LongRoPE2Parameters, dtype: torch.dtype) -> None:
        super().__init__()
        self.head_size, self.rotary_dim, self.window = head_size, p.rotary_dim, p.original_max_position_embeddings

        def table(length: int, factors: tuple[float, ...], mscale: float) -> torch.Tensor:
            freqs = torch.outer(torch.arange(length, dtype=torch.float32),
                                scaled_inv_freq(p.rope_theta, p.rotary_dim, factors))
            return torch.cat((freqs.cos() * mscale, freqs.sin() * mscale), dim=-1)

        cache = torch.cat([table(self.window, p.short_factor, p.short_mscale),
                           table(p.max_position_embeddings, p.long_factor, p.long_mscale)])
        self.register_buffer("cos_sin_cache", cache.to(dtype), persistent=False)
        self._flags_for: tuple[object, torch.Tensor] | None = None  # (the batch's metadata, per-token long flags)
        self.stats = _Stats("worker")

    def long_tokens(self, num_tokens: int) -> torch.Tensor | None:
        """Per-token flag: the token's request is longer than the window after this step (None: no batch info,
        e.g. vLLM's warm-up run)."""
        from vllm.forward_context import get_forward_context, is_forward_context_available  # optional: vLLM only

        if not is_forward_context_available():
            return None
        metadata = get_forward_context().attn_metadata
        if isinstance(metadata, list):
            metadata = metadata[0] if metadata else None
        if isinstance(metadata, dict):
            metadata = next(iter(metadata.values()), None)
        if metadata is None or getattr(metadata, "seq_lens", None) is None:
            return None
        if self._flags_for is not None and self._flags_for[0] is metadata and len(self._flags_for[1]) == num_tokens:
            return self._flags_for[1]  # the same forward's next layer (holding the object: its id is not reused)
        flags, long_request = long_token_flags(metadata.query_start_loc, metadata.seq_lens, self.window, num_tokens)
        self._flags_for = (metadata, flags)
        n_long = int(long_request.sum())
        self.stats.add(forwards=1, mixed_forwards=int(0 < n_long < long_request.numel()), long_tokens=int(flags.sum()),
                       short_tokens=int(flags.numel() - flags.sum()))
        return flags

    def forward(self, positions: torch.Tensor, query: torch.Tensor, key: torch.Tensor | None = None,
                offsets: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        flags = self.long_tokens(positions.shape[0])
        index = positions if flags is None else positions + flags.to(positions.device) * self.window
        if offsets is not None:
            index = index + offsets
        cos, sin = self.cos_sin_cache.index_select(0, index.clamp(max=self.cos_sin_cache.shape[0] - 1)).chunk(2, -1)
        cos, sin = cos.repeat(1, 2).unsqueeze(-2), sin.repeat(1, 2).unsqueeze(-2)

        def rotate(x: torch.Tensor) -> torch.Tensor:
            x = x.view(*x.shape[:-1], -1, self.head_size)
            rot, rest = x[..., : self.rotary_dim], x[..., self.rotary_dim:]
            half = self.rotary_dim // 2
            turned = torch.cat((-rot[..., half:], rot[..., :half]), dim=-1)
            return torch.cat((rot * cos + turned * sin, rest), dim=-1).flatten(-2)

        return rotate(query), (None if key is None else rotate(key))


def check_engine(vllm_config) -> None:
    scheduler = vllm_config.scheduler_config
    cls = scheduler.scheduler_cls
    name = cls if isinstance(cls, str) else f"{getattr(cls, '__module__', '')}.{getattr(cls, '__name__', '')}"
    if name != SCHEDULER:
        raise ValueError(f"{ARCHITECTURE} needs --scheduler-cls {SCHEDULER} (it recomputes a request at the window "
                         f"crossing); got {scheduler.scheduler_cls!r}")
    if not vllm_config.model_config.enforce_eager:
        raise ValueError(f"{ARCHITECTURE} needs --enforce-eager (the per-request choice reads the batch's lengths on "
                         "the host, which compiled graphs would freeze)")
    if scheduler.enable_chunked_prefill:
        raise ValueError(f"{ARCHITECTURE} needs --no-enable-chunked-prefill (a chunk of a long prompt cannot tell "
                         "that its request is long)")


def _model_class():
    from vllm.model_executor.models.llama import LlamaForCausalLM  # optional: vLLM only

    class LongRoPE2LlamaForCausalLM(LlamaForCausalLM):
        """vLLM's Llama with `PerRequestLongRoPE` in every attention layer."""

        def __init__(self, *, vllm_config, prefix: str = "") -> None:
            check_engine(vllm_config)
            config = vllm_config.model_config.hf_config
            p = serving_parameters(config)
            # vLLM's own layers are built from the longrope spelling (a saved folder's longrope2 dict is unknown to
            # vLLM's get_rope); their rotary modules are then replaced
            config.rope_parameters = longrope_spelling(p, rope_parameters(config))
            super().__init__(vllm_config=vllm_config, prefix=prefix)
            rotary = PerRequestLongRoPE(self.model.layers[0].self_attn.head_dim, p, vllm_config.model_config.dtype)
            for layer in self.model.layers:
                if hasattr(layer, "self_attn"):
                    layer.self_attn.rotary_emb = rotary

    return LongRoPE2LlamaForCausalLM


def __getattr__(name: str):  # the model class subclasses vLLM's Llama: built on first use, inside vLLM only
    if name == "LongRoPE2LlamaForCausalLM":
        cls = _model_class()
        globals()[name] = cls
        return cls
    if name == "LongRoPE2Scheduler":
        cls = _scheduler_class()
        globals()[name] = cls
        return cls
    raise AttributeError(name)


def _scheduler_class():
    from vllm.v1.core.sched.scheduler import Scheduler  # optional: vLLM only

    class LongRoPE2Scheduler(Scheduler):
        """vLLM's scheduler, with a recompute at a request's window crossing and a cache salt per rotary table."""

        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.longrope2_window = serving_parameters(
                self.vllm_config.model_config.hf_config).original_max_position_embeddings
            self.longrope2_stats = _Stats("scheduler")

        def _use_long_table(self, request) -> None:
            """Give `request` the long table's cache salt and rehash its blocks under it."""
            salt = request.cache_salt or ""
            if salt.endswith(LONG_SALT):
                return
            request.cache_salt = salt + LONG_SALT
            request.block_hashes = []
            request.update_block_hashes()

        def add_request(self, request) -> None:
            if request.num_prompt_tokens > self.longrope2_window:
                self._use_long_table(request)
            super().add_request(request)

        def schedule(self, *args, **kwargs):
            crossing = [r for r in self.running
                        if 0 < r.num_computed_tokens <= self.longrope2_window < r.num_tokens]
            for request in crossing:
                self.running.remove(request)
                self._preempt_request(request, time.monotonic())
                self._use_long_table(request)
            if crossing:
                self.longrope2_stats.add(crossings=len(crossing))
            return super().schedule(*args, **kwargs)

    return LongRoPE2Scheduler
