"""`bayou models check`: a checkpoint looked at the way the loader sees it, stage by stage.

Each stage is a finding (ok or the problem, named); a failed stage stops the ones that need it. The last
stage loads the weights, so a report that is all ok means the model is ready to extract.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from extractor.errors import CheckpointError
from extractor.model.config import model_settings, to_internvl_config
from extractor.model.loader import LoadedModel, load_model, load_tokenizers, read_config, resolve_source
from extractor.model.published import ADDED_TOKENS
from extractor.model.tokenizer import PromptTokenizer
from extractor.template import TEMPLATES

ROLE_MARKERS = ("<|prompt|>", "<|answer|>")


@dataclass
class Finding:
    name: str
    ok: bool
    detail: str


@dataclass
class CheckpointReport:
    source: str
    findings: list[Finding] = field(default_factory=list)
    loaded: LoadedModel | None = None

    @property
    def ok(self) -> bool:
        return all(f.ok for f in self.findings) and self.loaded is not None

    def add(self, name: str, ok: bool, detail: str) -> None:
        self.findings.append(Finding(name, ok, detail))


def check_checkpoint(
    source: str | Path, *, device: str = "cpu", dtype: str | None = None
) -> CheckpointReport:
    report = CheckpointReport(source=str(source))
    try:
        directory = resolve_source(source)
    except CheckpointError as error:
        report.add("source", False, error.message)
        return report
    report.add("source", True, str(directory))
    stages = (_config, _tokenizer, _weights)
    state: dict[str, Any] = {"directory": directory, "device": device, "dtype": dtype}
    for stage in stages:
        try:
            name, detail = stage(state, report)
        except CheckpointError as error:
            report.add(stage.__name__.strip("_"), False, error.message)
            return report
        report.add(name, True, detail)
    return report


def _config(state: dict[str, Any], report: CheckpointReport) -> tuple[str, str]:
    raw = read_config(state["directory"])
    state["raw"] = raw
    if raw["template"] not in TEMPLATES:
        raise CheckpointError(
            f"config.json: template {raw['template']!r} is not one bayou knows ({', '.join(TEMPLATES)})"
        )
    to_internvl_config(raw, image_token_id=0)  # every field maps onto transformers' InternVL
    settings = model_settings(raw)
    vision, text = raw["vision_config"], raw["llm_config"]
    return "config", (
        f"h2ovl_chat → InternVLForConditionalGeneration; vision InternViT {vision['num_hidden_layers']} layers × "
        f"{vision['hidden_size']}; text {text['model_type']} {text['num_hidden_layers']} layers × "
        f"{text['hidden_size']}, context {settings.context_length}; tiles {settings.image_size}px, "
        f"{settings.min_dynamic_patch}–{settings.max_dynamic_patch} a page, thumbnail "
        f"{'on' if settings.use_thumbnail else 'off'}, MSAC {'on' if settings.use_msac else 'off'}, "
        f"{settings.num_image_token} tokens a tile; template {settings.template}"
    )


def _tokenizer(state: dict[str, Any], report: CheckpointReport) -> tuple[str, str]:
    directory, raw = state["directory"], state["raw"]
    tokens = load_tokenizers(directory, raw)
    prompt = tokens.prompt
    kind = (
        f"sentencepiece tokenizer.model ({prompt.base_size} pieces; slow-tokenizer ids: legacy "
        f"{'on' if prompt.legacy else 'off'}, <s> {'first' if prompt.add_bos else 'not added'})"
        if isinstance(prompt, PromptTokenizer)
        else f"tokenizer.json only ({prompt.base_size} entries; the fast tokenizer's ids)"
    )
    on_top = sorted((t for t in prompt.added.values() if t.id >= prompt.base_size), key=lambda t: t.id)
    added = ", ".join(f"{t.content}={t.id}" for t in on_top)
    roles = ", ".join(f"{m} {'token' if m in prompt.added else 'text'}" for m in ROLE_MARKERS)
    published_order = [t for t in ADDED_TOKENS if t in prompt.added]
    order_note = "" if published_order == list(ADDED_TOKENS) else " (not the published ten)"
    stops = sorted({prompt.token_id("<|end|>"), prompt.eos_id} - {None, -1})
    return "tokenizer", (
        f"{kind}; added: {added}{order_note}; {roles}; stop ids {stops}; {prompt.size} ids ≤ "
        f"{raw['llm_config']['vocab_size']} embedding rows"
    )


def _weights(state: dict[str, Any], report: CheckpointReport) -> tuple[str, str]:
    loaded = load_model(state["directory"], device=state["device"], dtype=state["dtype"])
    report.loaded = loaded
    parameters = sum(p.numel() for p in loaded.model.parameters())
    return "weights", (
        f"every tensor mapped and shaped; {parameters / 1e6:.1f}M parameters as {str(loaded.dtype).removeprefix('torch.')} "
        f"on {loaded.device}; revision {loaded.revision}"
    )
