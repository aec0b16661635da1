"""Engines: images + question (+ schema) in, generated text out, for a batch of documents.

`TransformersEngine` is the reference: our tiling and template on transformers' InternVL model, with
xgrammar-constrained batched decoding. `extractor.vllm_engine.VLLMEngine` serves the same interface from a
`vllm serve` process (BAYOU_ENGINE=vllm).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from extractor.constrained import DEFAULT_JSON_LAYOUT, GrammarCache
from extractor.context import TileFit, fit_tiles, tiling_of
from extractor.generation import GenerationOutput, GenerationRequest, Generator
from extractor.model import LoadedModel, ModelSettings, load_model
from extractor.template import build_prompt
from extractor.tiling import pixel_values


@dataclass
class EngineRequest:
    images: list[Image.Image]  # one per page or side, in reading order
    question: str
    schema: dict[str, Any] | None = None  # constrain the answer to this JSON Schema
    max_new_tokens: int = 2048
    max_tiles: int | None = None  # None: the checkpoint's max_dynamic_patch
    fitted: TileFit | None = None  # the engine's `fit` of this request, once computed


class Engine(Protocol):
    name: str
    revision: str

    def fit(self, request: EngineRequest) -> TileFit:
        """The tiles a request gets within the model's context; InputError `context_too_long` if none fit."""
        ...

    def run(self, requests: list[EngineRequest]) -> list[GenerationOutput]: ...

    def budget_shortfalls(self, max_new_tokens: int) -> dict[str, int]:
        """The document types whose shortest valid answer in this model's tokens is longer than
        `max_new_tokens`: type -> the tokens it needs (their answers would end cut off, invalid)."""
        ...


def shortfalls(grammars: GrammarCache, max_new_tokens: int) -> dict[str, int]:
    """The document types whose shortest valid answer, as `grammars` writes it (the closing strategy from
    the start: the least a valid answer takes), is longer than `max_new_tokens`: type -> tokens it needs."""
    from extractor.schemas import available_types, load_schema

    needed = {t: grammars.shortest_answer(load_schema(t)) for t in available_types()}
    return {doc_type: n for doc_type, n in needed.items() if n > max_new_tokens}


class TransformersEngine:
    def __init__(
        self,
        loaded: LoadedModel,
        *,
        name: str | None = None,
        jump_forward: bool = True,
        json_layout: str = DEFAULT_JSON_LAYOUT,
    ) -> None:
        self.loaded = loaded
        self.name = name or loaded.source
        self.revision = loaded.revision
        self.settings: ModelSettings = loaded.settings
        self.generator = Generator(loaded, jump_forward=jump_forward, json_layout=json_layout)

    @classmethod
    def from_source(
        cls, source: str | Path, *, name: str | None = None, device: str = "cpu", dtype: str | None = None
    ) -> TransformersEngine:
        return cls(load_model(source, device=device, dtype=dtype), name=name)

    def fit(self, request: EngineRequest) -> TileFit:
        return fit_tiles(
            request.images,
            request.question,
            settings=self.settings,
            count_tokens=lambda text: len(self.loaded.prompt_tokenizer.encode(text)),
            max_tiles=request.max_tiles,
            max_new_tokens=request.max_new_tokens,
        )

    def preprocess(self, request: EngineRequest) -> tuple[GenerationRequest, float]:
        started = time.perf_counter()
        fitted = request.fitted or self.fit(request)
        tiling = tiling_of(self.settings, fitted.max_tiles)
        pixels = pixel_values(request.images, **tiling) if request.images else None
        prompt = build_prompt(
            request.question,
            fitted.tiles_per_page,
            num_image_token=self.settings.num_image_token,
            template=self.settings.template,
        )
        generation = GenerationRequest(
            prompt=prompt,
            pixel_values=pixels,
            schema=request.schema,
            max_new_tokens=request.max_new_tokens,
            tiles_per_page=fitted.tiles_per_page,
        )
        return generation, round((time.perf_counter() - started) * 1000, 2)

    def budget_shortfalls(self, max_new_tokens: int) -> dict[str, int]:
        return shortfalls(self.generator.grammars, max_new_tokens)

    def run(self, requests: list[EngineRequest]) -> list[GenerationOutput]:
        prepared = [self.preprocess(r) for r in requests]
        outputs = self.generator.generate([g for g, _ in prepared])
        for output, (_, preprocess_ms) in zip(outputs, prepared, strict=True):
            output.timings_ms["preprocess"] = preprocess_ms
        return outputs
