"""Model cards for extended models, rendered from one Jinja template through `huggingface_hub.ModelCard`.

```python
>>> from hf_longrope2.publish.cards import card_inputs, render_model_card, write_model_card
>>> write_model_card("smollm2-32k", base_model="HuggingFaceTB/SmolLM2-135M", search=search_log)  # -> README.md
>>> report = json.loads(Path("eval/report.json").read_text())                     # from `hf-longrope2 eval`
>>> write_model_card("smollm2-32k", repo_id="me/smollm2-32k", report=report, **card_inputs("smollm2-32k"))
>>> render_model_card("smollm2-32k", report=report).save("model_cards/smollm2-32k.md")
```

The template is ``hf_longrope2/model_card_template.md`` (``model_cards/template.md`` in the repository is a
link to it). The metadata block carries ``base_model`` (only a Hub id), ``library_name: transformers``,
``pipeline_tag: text-generation``, tags (``longrope2``, ``long-context``, ...), ``context_length`` and, with an
evaluation report, a ``model-index`` of NIAH accuracy and perplexity per length and short-window retention.
The body says how the model was extended (factors, search, midtraining), shows the report's tables with every
evaluated model side by side, and how to load and serve it. Search and midtraining outputs get a card
automatically; ``hf-longrope2 push --write-card --report ...`` re-renders it with the repo id and results.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import re
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData, try_to_load_from_cache
from huggingface_hub.utils import HFValidationError, validate_repo_id
from transformers import AutoConfig

from .. import factors
from ..extension import export_for_serving, run_extend
from ..modeling.rope import RopeGeometry, rope_parameters
from ..utils.atomic import write_text_atomically
from ..utils.environment import __version__

TEMPLATE = Path(__file__).with_name("model_card_template.md")
TAGS = ["longrope2", "long-context", "context-extension", "rope"]
NIAH_DATASET_TYPE = "needle-in-a-haystack"
PERPLEXITY_DATASET_TYPE = "hf-longrope2-perplexity"
TASK_TYPE = "text-generation"
LICENSE = "apache-2.0"  # hf-longrope2's (LICENSE); a base model's own license wins when its card is known
TRANSFORMERS_RANGE = ">=5.23,<5.25"  # pyproject's pin, when the installed metadata cannot be read
# save_atomically's mkdtemp(prefix=".NAME.writing-"), and the ".NAME." of earlier versions
_TMP_FOLDER = re.compile(r"^\.(?P<name>.+)\.(writing-)?[A-Za-z0-9_]{8}$")


def md_text(value) -> str:
    """`value` (read from a log, a report or a path) as literal markdown text on one line: link, emphasis and
    heading syntax backslash-escaped, HTML as entities, so nothing in it renders live (a link, an image, a tag).
    Pipes are left to [`_table`], which escapes its cells."""
    text = " ".join(str(value).split())
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return re.sub(r"([\\`*_{}\[\]()#+!~])", r"\\\1", text)


def md_code(value) -> str:
    """`value` as one inline code span that nothing in it can close: a fence longer than its longest backtick run
    (CommonMark), on one line; HTML and links inside a code span are shown, not rendered."""
    text = " ".join(str(value).split())
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _md_or_none(value):
    return None if value is None else md_text(value)


def is_hub_id(name: str | None) -> bool:
    """True for a Hub repo id ``namespace/name`` that is not also a local path or a ``builtin:`` source."""
    if not name or ":" in name or name.count("/") != 1 or os.path.exists(name):
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _source_of(log: dict | None) -> str | None:
    """The model a search or midtraining log started from, as its command line gave it."""
    if not log:
        return None
    model = log.get("settings", {}).get("model")  # search: the model id; midtrain: TRL's ModelConfig as a dict
    return model if isinstance(model, str) else (model or {}).get("model_name_or_path")


def model_origin(model: str | os.PathLike) -> dict:
    """Where a run's `model` came from, recorded in its log when the run starts (where relative paths still mean
    what the user meant): ``model_path``, the absolute local folder (None for a Hub id), and ``base_model``, the
    Hub id it is or was extended from (following local search / midtraining folders), else None.

    A card's ``base_model`` comes from here, never from the path as typed: ``longrope2-demo/search`` read again
    from another folder looks like a Hub id."""
    path = Path(model)
    if path.exists():
        folder = str(path.resolve())
        return {"model_path": folder, "base_model": _lineage(folder, None)[0]}
    return {"model_path": None, "base_model": str(model) if is_hub_id(str(model)) else None}


def _origin_of(log: dict | None) -> tuple[str | None, str | None]:
    """(Hub id, local folder) a search or midtraining log's run started from."""
    if not log:
        return None, None
    if "model_path" in log or "base_model" in log:  # recorded when the run started ([`model_origin`])
        return log.get("base_model"), log.get("model_path")
    source = _source_of(log)  # older logs: the model as typed, read as a Hub id only when it is no local path
    return (source, None) if is_hub_id(source) else (None, source)


def card_inputs(folder: str | Path) -> dict:
    """``base_model``, ``model_path``, ``search`` and ``midtrain`` for [`render_model_card`], from `folder`'s logs.

    Reads ``search_log.json`` and ``midtrain_log.json`` when present. ``base_model`` is the Hub id the search or
    midtraining recorded as its origin ([`model_origin`]), else the ``base_model`` of an existing ``README.md``;
    never a local path. ``model_path`` is the local folder the run started from (followed for its search log).
    """
    folder = Path(folder)
    search, midtrain = _read_json(folder / "search_log.json"), _read_json(folder / "midtrain_log.json")
    base_model, model_path = _origin_of(midtrain) if midtrain else _origin_of(search)
    if base_model is None and model_path is None and (folder / "README.md").is_file():
        found = ModelCard((folder / "README.md").read_text(), ignore_metadata_errors=True).data.base_model
        base_model = found if isinstance(found, str) and is_hub_id(found) else None
    return {"base_model": base_model, "model_path": model_path, "search": search, "midtrain": midtrain}


def _license_of(hub_base: str | None) -> str:
    """The base model's license when its card is on this machine (Hub cache), else hf-longrope2's own."""
    if hub_base:
        cached = try_to_load_from_cache(hub_base, "README.md")
        if isinstance(cached, str):
            found = ModelCard(Path(cached).read_text(), ignore_metadata_errors=True).data.license
            if found:
                return found
    return LICENSE


def transformers_requirement() -> str:
    """The transformers range hf-longrope2 is tested with (its own dependency pin), e.g. ``>=5.23,<5.25``."""
    try:
        for requirement in importlib.metadata.requires("hf-longrope2") or []:
            match = re.match(r"transformers\s*([<>=!~][^;]*)", requirement)
            if match:
                return ",".join(sorted(part.strip() for part in match.group(1).split(","))).replace(" ", "")
    except importlib.metadata.PackageNotFoundError:
        pass
    return TRANSFORMERS_RANGE


def extension_method(config, params: dict) -> str:
    """How the factors were made: ``searched`` (a LongRoPE2 search: ``critical_dim`` set), one of the baseline
    methods whose vector they equal (``yarn``, ``ntk``, ``pi``), else ``given``."""
    if params.get("critical_dim") is not None:
        return "searched"
    geometry = RopeGeometry.from_config(config)
    for method in factors.METHODS:
        try:
            base = factors.baseline(method, geometry.rotary_dim, geometry.rope_theta, geometry.original_window,
                                    config.max_position_embeddings)
        except ValueError:
            continue
        if len(base["long_factor"]) == len(params["long_factor"]) and all(
            math.isclose(a, float(b), rel_tol=1e-6) for a, b in zip(base["long_factor"], params["long_factor"], strict=True)
        ):
            return method
    return "given"


def _lineage(model_path: str | None, search: dict | None) -> tuple[str | None, dict | None]:
    """The Hub id behind the local folder `model_path` (following search / midtraining folders and their recorded
    origins) and the search log on the way."""
    for _ in range(4):  # a midtrained search output of a Hub model is two hops away
        if not model_path or not Path(model_path).is_dir():
            return None, search
        inputs = card_inputs(model_path)
        search = search or inputs["search"]
        if inputs["base_model"]:
            return inputs["base_model"], search
        model_path = inputs["model_path"]
    return None, search


def _display_name(folder: Path, repo_id: str | None, search: dict | None, midtrain: dict | None,
                  output_dir: str | Path | None = None) -> tuple[str, str]:
    """(title, id to load) for the card: the repo id, else the output folder the run was given."""
    if repo_id:
        return repo_id.split("/")[-1], repo_id
    output_dir = output_dir or (search or {}).get("settings", {}).get("output_dir") or (
        (midtrain or {}).get("settings", {}).get("training", {}).get("output_dir")
    )
    if output_dir:
        return Path(output_dir).name, str(output_dir)
    match = _TMP_FOLDER.match(folder.name)  # rendered inside a temporary folder before its rename
    name = match.group("name") if match else folder.name
    return name, name


def _search_summary(search: dict | None) -> dict | None:
    if not search:
        return None
    s, geo = search.get("settings", {}), search.get("geometry", {})
    population = s.get("population")
    parents = s.get("parents")
    if population and parents:
        parents = min(parents, population // 2)
    dims = s.get("critical_dims") or (
        f"{geo['ten_period_dim']}..{geo['theoretical_critical_dim']}" if "ten_period_dim" in geo else None
    )
    return {
        "objective": md_text(s.get("objective", "needle")),
        "num_samples": s.get("num_samples"),
        "target_length": s.get("target_length"),
        "dataset": md_code(s.get("dataset")),
        "max_depth": _md_or_none(s.get("max_depth")),
        "critical_dims": _md_or_none(dims),
        "population": population,
        "parents": parents,
        "iterations": s.get("iterations"),
        "mutation_prob": _md_or_none(s.get("mutation_prob")),
        "seed": _md_or_none(s.get("seed")),
        "evaluated": len(search.get("evaluated", [])),
        "sample_forwards": search.get("sample_forwards"),
        "num_processes": search.get("num_processes", 1),
        "wall_time_s": search.get("wall_time_s"),
        "best_score": search.get("best", {}).get("score"),
        "seeds": {md_text(name): seed.get("score") for name, seed in search.get("seeds", {}).items()},
        "seeds_better": search.get("seeds_better_than_best") or [],
    }


def _midtrain_summary(midtrain: dict | None) -> dict | None:
    if not midtrain:
        return None
    settings = midtrain.get("settings", {})
    t, m, script = settings.get("training", {}), settings.get("model", {}), settings.get("script", {})
    packing, train = midtrain.get("packing", {}), midtrain.get("train", {})
    steps = max([h.get("step", 0) for h in midtrain.get("log_history", [])] + [0]) or t.get("max_steps")
    processes = midtrain.get("num_processes", 1)
    rows_per_step = (t.get("per_device_train_batch_size") or 1) * (t.get("gradient_accumulation_steps") or 1)
    rows_per_step *= processes
    target = t.get("target_length") or packing.get("target_length")
    return {
        "trainer": md_text(script.get("trainer", "trainer")),
        "steps": steps,
        "learning_rate": _md_or_none(t.get("learning_rate")),
        "scheduler": _md_or_none(t.get("lr_scheduler_type")),
        "warmup_steps": t.get("warmup_steps"),
        "rows_per_step": rows_per_step,
        "num_processes": processes,
        "target_length": target,
        "trained_tokens": steps * rows_per_step * target if steps and target else None,
        "short_fraction": packing.get("short_fraction", t.get("short_fraction")),
        "lora": md_text(f"LoRA r={m.get('lora_r')}, alpha={m.get('lora_alpha')}") if m.get("use_peft") else None,
        "mixture": [
            f"{md_code(src.get('dataset'))} (weight {md_text(src.get('weight', 1.0))})" for src in t.get("mixture") or []
            if isinstance(src, dict)
        ],
        "rows": packing.get("rows", {}),
        "real_tokens": packing.get("real_tokens", {}),
        "padding_tokens": packing.get("padding_tokens", {}),
        "lost_tokens": packing.get("lost_tokens"),
        "train_loss": train.get("train_loss"),
        "loss_short": train.get("loss_short"),
        "loss_long": train.get("loss_long"),
        "train_runtime": train.get("train_runtime"),
    }


def _datasets(search: dict | None, midtrain: dict | None) -> list[str] | None:
    """Hub datasets the search and midtraining read (the metadata's ``datasets``)."""
    names = [(search or {}).get("settings", {}).get("dataset")]
    names += [s.get("dataset") for s in (midtrain or {}).get("settings", {}).get("training", {}).get("mixture") or []
              if isinstance(s, dict)]
    hub = list(dict.fromkeys(n for n in names if is_hub_id(n)))
    return hub or None


# ---------------------------------------------------------------------------------------------------- reports


def _by_number(keys) -> list[str]:
    return sorted(keys, key=float)


def report_model_name(report: dict, folder: str | Path | None = None, report_model: str | None = None) -> str:
    """Which entry of ``report["models"]`` is the model of `folder`.

    `report_model` when given; else the entry whose ``path`` is `folder`, or whose name is the folder's name;
    else the only ``longrope2`` entry; else the only entry.

    Raises:
        ValueError: `report_model` is not in the report, or the choice is ambiguous (the message lists the names).
    """
    models = report.get("models") or {}
    if not models:
        raise ValueError("the evaluation report has no 'models' section")
    if report_model is not None:
        if report_model not in models:
            raise ValueError(f"report_model {report_model!r} is not in the report; its models: {sorted(models)}")
        return report_model
    if folder is not None:
        folder = Path(folder)
        for name, entry in models.items():
            if entry.get("path") and Path(entry["path"]).resolve() == folder.resolve():
                return name
        if folder.name in models:
            return folder.name
    extended = [name for name, entry in models.items() if entry.get("rope_type") == "longrope2"]
    if len(extended) == 1:
        return extended[0]
    if len(models) == 1:
        return next(iter(models))
    raise ValueError(f"cannot tell which model of the report is {folder}; pass report_model= one of {sorted(models)}")


def _niah_mean(entry: dict) -> dict[str, float]:
    means = dict(entry.get("niah_mean") or {})
    for length, cells in (entry.get("niah") or {}).items():
        values = [v for v in cells.values() if v is not None]
        if length not in means and values:
            means[length] = sum(values) / len(values)
    return means


def _perplexity_source(settings: dict) -> tuple[str, str]:
    dataset = str(settings.get("perplexity_dataset") or settings.get("dataset") or "unknown")
    return (dataset if is_hub_id(dataset) else PERPLEXITY_DATASET_TYPE), dataset


def eval_results(report: dict, model: str) -> list:
    """The `huggingface_hub.EvalResult`s of `model` in `report` (the card's ``model-index``).

    NIAH accuracy per length (mean over depths, 0..1), perplexity per length, short-window perplexity and
    retention (%), and RULER / lm-evaluation-harness scores when the report has them. Values are the report's.
    Results are grouped by dataset in the order ``model-index`` stores them, so they round-trip unchanged
    through `huggingface_hub.repocard_data.model_index_to_eval_results`.
    """
    settings, entry = report.get("settings", {}), report["models"][model]
    haystack = settings.get("dataset", "unknown")
    results: list = []
    niah = _niah_mean(entry)
    niah_args = {k: settings[k] for k in ("depths", "needles_per_cell") if settings.get(k) is not None} or None
    for length in _by_number(niah):
        results.append(EvalResult(
            task_type=TASK_TYPE, task_name="Needle-in-a-haystack retrieval", dataset_type=NIAH_DATASET_TYPE,
            dataset_name=f"hf-longrope2 NIAH (haystack: {haystack})", dataset_args=niah_args,
            metric_type="accuracy", metric_value=niah[length], metric_name=f"NIAH accuracy @ {length} tokens",
        ))
    ppl_type, ppl_source = _perplexity_source(settings)
    ppl = {"task_type": TASK_TYPE, "task_name": "Language modeling", "dataset_type": ppl_type,
           "dataset_name": f"hf-longrope2 perplexity (documents: {ppl_source})",
           "dataset_split": settings.get("dataset_split")}
    perplexity = entry.get("perplexity") or {}
    for length in _by_number(perplexity):
        if perplexity[length].get("ppl") is not None:
            results.append(EvalResult(**ppl, metric_type="perplexity", metric_value=perplexity[length]["ppl"],
                                      metric_name=f"Perplexity @ {length} tokens"))
    short = entry.get("short") or {}
    at = f" @ {short['length']} tokens" if short.get("length") is not None else ""
    if short.get("ppl") is not None:
        results.append(EvalResult(**ppl, metric_type="perplexity", metric_value=short["ppl"],
                                  metric_name=f"Short-window perplexity{at}"))
    if short.get("retention_pct") is not None:
        results.append(EvalResult(**ppl, metric_type="retention", metric_value=short["retention_pct"],
                                  metric_name=f"Short-window retention %{at}"))
    for task, by_length in (entry.get("ruler") or {}).items():
        for length in _by_number(by_length):
            results.append(EvalResult(
                task_type=TASK_TYPE, task_name="RULER", dataset_type="ruler", dataset_name="RULER",
                dataset_config=task, metric_type="accuracy", metric_value=by_length[length],
                metric_name=f"RULER {task} @ {length} tokens",
            ))
    for task, metrics in (entry.get("lm_eval") or {}).items():
        for metric, value in metrics.items():
            if isinstance(value, (int, float)):
                results.append(EvalResult(
                    task_type=TASK_TYPE, dataset_type=task, dataset_name=f"{task} (lm-evaluation-harness)",
                    metric_type=metric.split(",")[0], metric_value=value, metric_name=f"{task} {metric}",
                ))
    return results


def _cell(value, scale: float = 1.0, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value * scale:.{digits}f}"


def _table(header: list[str], rows: list[list[str]], numeric_from: int = 1) -> str:
    """A markdown table; rows whose numeric cells are all missing are left out."""
    rows = [row for row in rows if any(c != "–" for c in row[numeric_from:])]
    align = ["---" if i < numeric_from else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(c.replace("|", "\\|") for c in header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def results_markdown(report: dict, model: str) -> str:
    """Markdown tables of `report` with `model` first and every other evaluated model beside it."""
    settings, models = report.get("settings", {}), report["models"]
    order = [model] + [name for name in models if name != model]

    def label(name: str) -> str:
        return f"**{md_text(name)}** (this model)" if name == model else md_text(name)

    def window(entry: dict) -> str:
        original, longest = entry.get("original_window"), entry.get("max_position_embeddings")
        if original and longest and longest != original:
            return f"{original} → {longest}"
        return str(longest or original or "?")

    parts = []
    facts = [f"haystack and documents from {md_code(settings.get('dataset', 'unknown'))}"]
    if settings.get("depths") is not None:
        facts.append("needle depths " + ", ".join(f"{d:g}" if isinstance(d, (int, float)) else md_text(d)
                                                  for d in settings["depths"]))
    if settings.get("needles_per_cell") is not None:
        facts.append(f"{settings['needles_per_cell']} needles per length and depth")
    if isinstance(report.get("wall_time_s"), (int, float)):
        facts.append(f"{report['wall_time_s']:.0f} s in all")
    parts.append("Measured with `hf-longrope2 eval`: " + "; ".join(facts) + ".")

    niah = {name: _niah_mean(models[name]) for name in order}
    lengths = _by_number({length for means in niah.values() for length in means})
    if lengths:
        rows = [[label(n), md_text(models[n].get("rope_type", "?")), window(models[n])]
                + [_cell(niah[n].get(length), 100) for length in lengths] for n in order]
        parts.append("### Needle in a haystack\n\nRetrieval accuracy (%) by context length, mean over depths:\n\n"
                     + _table(["model", "rope", "window"] + lengths, rows, numeric_from=3))
        cells = models[model].get("niah") or {}
        depths = sorted({d for by_depth in cells.values() for d in by_depth}, key=float)
        if depths:
            rows = [[md_text(d)] + [_cell(cells.get(length, {}).get(d), 100) for length in lengths] for d in depths]
            parts.append(f"Accuracy (%) of {md_code(model)} by needle depth (0 = start of the haystack) and length:\n\n"
                         + _table(["depth"] + lengths, rows))
    ppl_lengths = _by_number({length for n in order for length in models[n].get("perplexity") or {}})
    if ppl_lengths:
        rows = [[label(n)] + [_cell((models[n].get("perplexity") or {}).get(length, {}).get("ppl"), digits=2)
                              for length in ppl_lengths] for n in order]
        parts.append("### Perplexity by context length\n\nLower is better:\n\n"
                     + _table(["model"] + ppl_lengths, rows))
    shorts = [n for n in order if models[n].get("short")]
    if shorts:
        rows = [[label(n), md_text(models[n]["short"].get("length", "?")), _cell(models[n]["short"].get("ppl"), digits=2),
                 _cell(models[n]["short"].get("retention_pct"), digits=1)] for n in shorts]
        parts.append("### Short window\n\nPerplexity inside the original window; retention = 100 × base perplexity"
                     " / model perplexity (100 = the base model's quality is kept):\n\n"
                     + _table(["model", "length", "perplexity", "retention (%)"], rows))
    ruler = [(n, task) for n in order for task in models[n].get("ruler") or {}]
    if ruler:
        ruler_lengths = _by_number({length for n, task in ruler for length in models[n]["ruler"][task]})
        rows = [[label(n), md_text(task)] + [_cell(models[n]["ruler"][task].get(length), 100) for length in ruler_lengths]
                for n, task in ruler]
        parts.append("### RULER\n\nAccuracy (%) by context length:\n\n"
                     + _table(["model", "task"] + ruler_lengths, rows, numeric_from=2))
    columns = list(dict.fromkeys((task, metric) for n in order for task, metrics in (models[n].get("lm_eval") or {})
                                 .items() for metric in metrics))
    if columns:
        rows = [[label(n)] + [_cell((models[n].get("lm_eval") or {}).get(task, {}).get(metric), digits=4)
                              for task, metric in columns] for n in order]
        parts.append("### lm-evaluation-harness\n\n"
                     + _table(["model"] + [md_text(f"{task} {metric}") for task, metric in columns], rows))
    return "\n\n".join(parts)


def _limitations(report: dict | None, model: str | None, target: int, search: dict | None) -> list[str]:
    notes = []
    if report is None:
        notes.append("No evaluation report is attached to this card; `hf-longrope2 eval` measures NIAH accuracy, "
                     "perplexity by length and short-window retention.")
    else:
        entry = report["models"][model]
        lengths = [int(float(x)) for x in list(_niah_mean(entry)) + list(entry.get("perplexity") or {})]
        if lengths and max(lengths) < target:
            notes.append(f"Evaluated only up to {max(lengths)} tokens, below the {target}-token window.")
    if search and search.get("seeds_better_than_best"):
        notes.append(f"In the factor search the reference seed(s) {', '.join(map(md_text, search['seeds_better_than_best']))} "
                     "scored better than the best LongRoPE2 candidate, which the search space cannot represent.")
    return notes


# ------------------------------------------------------------------------------------------------------ cards


def render_model_card(
    folder: str | Path,
    *,
    base_model: str | None = None,
    model_path: str | os.PathLike | None = None,
    repo_id: str | None = None,
    search: dict | None = None,
    midtrain: dict | None = None,
    results: str | None = None,
    report: dict | None = None,
    report_model: str | None = None,
    output_dir: str | Path | None = None,
):
    """The `huggingface_hub.ModelCard` of the saved longrope2 model `folder` (reads its ``config.json``).

    Args:
        folder (`str` or `Path`): A longrope2 model folder (or its ``longrope`` serving export).
        base_model (`str`, *optional*): The Hub id it was extended from (the metadata's ``base_model``); a local
            folder given here is taken as `model_path`.
        model_path (`str`, *optional*): The local folder it was extended from: a search or midtraining folder is
            followed to its search log and to the Hub id it came from. Never written into the metadata.
        repo_id (`str`, *optional*): The Hub repo the card is for (title and load snippet); default: the run's
            output folder.
        search (`dict`, *optional*): The contents of ``search_log.json``.
        midtrain (`dict`, *optional*): The contents of ``midtrain_log.json``.
        results (`str`, *optional*): Extra markdown for the Results section.
        report (`dict`, *optional*): An evaluation report (``report.json`` of ``hf-longrope2 eval``); adds a
            ``model-index`` and the Results tables.
        report_model (`str`, *optional*): The report's name for this model (see [`report_model_name`]).
        output_dir (`str` or `Path`, *optional*): The folder the run was asked to write, as given (title and load
            snippet when there is no `repo_id`); default: the one its logs name, else `folder`'s name.

    Returns:
        `huggingface_hub.ModelCard`
    """
    folder = Path(folder)
    config = AutoConfig.from_pretrained(folder)
    params, geometry = rope_parameters(config), RopeGeometry.from_config(config)
    dim, original = geometry.rotary_dim, geometry.original_window
    critical = params.get("critical_dim")
    long_factor = [float(x) for x in params["long_factor"]]
    tail, head = long_factor[critical or 0:], long_factor[: critical or 0]
    if base_model and not is_hub_id(base_model):  # a run's --model that is a local folder (or builtin:)
        model_path, base_model = model_path or base_model, None
    followed, search_used = _lineage(str(model_path) if model_path else None, search)
    hub_base = base_model or followed
    title, load_id = _display_name(folder, repo_id, search, midtrain, output_dir)
    model = report_model_name(report, folder, report_model) if report is not None else None
    results_index = eval_results(report, model) if report is not None else []
    card_data = ModelCardData(
        license=_license_of(hub_base),
        base_model=hub_base,
        datasets=_datasets(search_used, midtrain),
        library_name="transformers",
        pipeline_tag="text-generation",
        tags=TAGS,
        model_name=title if results_index else None,
        eval_results=results_index or None,
    )
    card_data.context_length = config.max_position_embeddings
    tables = results_markdown(report, model) if report is not None else None
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE),
        model_name=md_text(title),  # values from logs and paths: literal text (md_text, md_code), never live
        repo_id=load_id,
        base_model=md_code(Path(model_path).name) if model_path else None,
        hub_base_model=hub_base,
        serving_export=params.get("rope_type") == "longrope",
        method=extension_method(config, params),
        transformers_range=transformers_requirement(),
        load_is_hub_id=is_hub_id(load_id),
        version=__version__,
        original_window=original,
        target_length=config.max_position_embeddings,
        scale=config.max_position_embeddings / original,
        long_mscale=params.get("long_mscale") or 1.0,
        short_mscale=params.get("short_mscale", 1.0),
        num_pairs=dim // 2,
        rope_theta=params["rope_theta"],
        critical_dim=critical,
        theoretical_critical_dim=factors.critical_dimension(dim, geometry.rope_theta, original),
        head_min=min(head) if head else None,
        head_max=max(head) if head else None,
        tail_min=min(tail),
        tail_max=max(tail),
        long_factor=", ".join(f"{x:.4g}" for x in long_factor),
        search=_search_summary(search_used),
        midtrain=_midtrain_summary(midtrain),
        results=results,
        tables=tables,
        limitations=_limitations(report, model, config.max_position_embeddings, search_used),
    )


def export_with_card(src_dir: str | Path, dst_dir: str | Path, *, overwrite: bool = False, link: bool = False,
                     repo_id: str | None = None) -> Path:
    """[`hf_longrope2.export_for_serving`] plus the export's own card: named after `dst_dir` (or `repo_id`), the
    serving load snippet (no remote code), the lineage and logs of `src_dir`."""
    inputs = card_inputs(src_dir)
    name = repo_id or str(dst_dir)
    return export_for_serving(src_dir, dst_dir, overwrite=overwrite, link=link,
                              write_card=lambda tmp: write_model_card(tmp, repo_id=name, **inputs))


def run_export_serving(args) -> Path:
    """``hf-longrope2 export-serving``: [`export_with_card`] and where it went (`args`: ``ExportServingArguments``)."""
    out = export_with_card(args.model, args.output_dir, overwrite=args.overwrite, link=args.link)
    print(f"exported -> {out}")
    return out


def run_extend_with_card(args):
    """``hf-longrope2 extend``: [`hf_longrope2.extension.run_extend`] plus the output's card, written in the
    temporary folder before it is renamed into place: named after ``--output-dir``, the method read from the
    factors (YaRN / NTK / PI / a given vector / searched), `--model` as the base when it is a Hub id."""
    return run_extend(args, write_card=lambda tmp: write_model_card(tmp, base_model=args.model,
                                                                     output_dir=args.output_dir))


def write_model_card(folder: str | Path, **kwargs) -> Path:
    """Render [`render_model_card`] into ``folder/README.md`` (atomically) and return its path."""
    text = str(render_model_card(folder, **kwargs))
    return write_text_atomically(Path(folder) / "README.md", text if text.endswith("\n") else text + "\n")
