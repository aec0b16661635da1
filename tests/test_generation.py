"""Batched, schema-constrained generation on the tiny random checkpoint (CPU, seconds)."""

from __future__ import annotations

import json

import jsonschema
import pytest
import torch
from PIL import Image

from extractor.engine import EngineRequest, TransformersEngine
from extractor.generation import GenerationRequest, Generator
from extractor.schemas import available_types, load_schema
from extractor.template import build_prompt

FORMATS = jsonschema.Draft202012Validator.FORMAT_CHECKER


def _image(seed: int, size: tuple[int, int]) -> Image.Image:
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (size[1], size[0], 3), generator=generator, dtype=torch.uint8)
    return Image.fromarray(pixels.numpy())


@pytest.fixture(scope="module")
def engine(tiny_model) -> TransformersEngine:
    return TransformersEngine(tiny_model, name="tiny")


@pytest.mark.parametrize("doc_type", available_types())
def test_constrained_output_always_parses_and_validates(engine: TransformersEngine, doc_type: str) -> None:
    schema = load_schema(doc_type)
    reserve = engine.generator.grammars.closing_reserve(schema)
    # budgets from barely above what closing needs (the closing strategy takes over at once) to roomy
    budgets = [reserve + 8, reserve + 120, 2 * reserve]
    requests = [
        EngineRequest(
            images=[_image(seed, size)],
            question=f"Extract the {doc_type}.",
            schema=schema,
            max_new_tokens=budget,
            max_tiles=2,
        )
        for seed, (size, budget) in enumerate(zip([(600, 1400), (1000, 640), (64, 64)], budgets, strict=True))
    ]
    for output, budget in zip(engine.run(requests), budgets, strict=True):
        data = json.loads(output.text)  # a random model, and still JSON that parses...
        jsonschema.validate(data, schema, format_checker=FORMATS)  # ...and conforms
        assert output.finish_reason == "grammar"
        assert output.generated_tokens <= budget


def test_end_to_end_reports_tiles_tokens_and_timings(engine: TransformersEngine) -> None:
    request = EngineRequest(
        images=[_image(1, (900, 1800))],
        question="Extract.",
        schema=load_schema("receipt"),
        max_new_tokens=128,
        max_tiles=3,
    )
    (output,) = engine.run([request])
    assert output.tiles == 2 + 1  # 900×1800 is exactly a 1×2 grid; plus the thumbnail
    assert output.prompt_tokens > 256 * output.tiles
    assert set(output.timings_ms) == {"vision", "prefill", "decode", "preprocess"}
    assert output.generated_tokens == len(output.token_ids) > 0


def test_batch_gives_the_same_answers_as_one_by_one(engine: TransformersEngine) -> None:
    schema = load_schema("check")
    requests = [
        EngineRequest(
            images=[_image(s, size)],
            question="Extract the check.",
            schema=schema,
            max_new_tokens=160,
            max_tiles=3,
        )
        for s, size in enumerate([(1200, 550), (300, 300), (800, 2000)])
    ]
    together = [o.text for o in engine.run(requests)]
    alone = [engine.run([r])[0].text for r in requests]
    assert together == alone


def test_multi_image_document_uses_the_multi_image_prompt(engine: TransformersEngine) -> None:
    request = EngineRequest(
        images=[_image(4, (1000, 630)), _image(5, (1000, 630))],
        question="Extract.",
        schema=load_schema("drivers_license"),
        max_new_tokens=64,
        max_tiles=2,
    )
    generation, _ = engine.preprocess(request)
    assert "Image-1: <img>" in generation.prompt and "Image-2: <img>" in generation.prompt
    assert generation.prompt.count("<IMG_CONTEXT>") == 256 * len(generation.pixel_values)


def test_jump_forward_saves_forward_steps_and_keeps_validity(tiny_model) -> None:
    schema = load_schema("receipt")
    prompt = build_prompt("Extract the receipt.", [1])
    pixels = torch.zeros(1, 3, 448, 448)
    request = GenerationRequest(prompt=prompt, pixel_values=pixels, schema=schema, max_new_tokens=300)
    with_jump = Generator(tiny_model, jump_forward=True).generate([request])[0]
    without = Generator(tiny_model, jump_forward=False).generate([request])[0]
    for output in (with_jump, without):
        jsonschema.validate(json.loads(output.text), schema, format_checker=FORMATS)
    assert any(with_jump.forced) and not any(without.forced)
    # every forced token is one forward step saved (the last token, closing the JSON, needs no step after it)
    assert with_jump.forward_steps == len(with_jump.token_ids) - sum(with_jump.forced) - 1
    assert with_jump.forward_steps < 0.8 * without.forward_steps


def test_confidence_covers_every_leaf_with_probabilities(engine: TransformersEngine) -> None:
    schema = load_schema("receipt")
    (output,) = engine.run(
        [
            EngineRequest(
                images=[_image(9, (500, 900))], question="x", schema=schema, max_new_tokens=200, max_tiles=1
            )
        ]
    )
    data = json.loads(output.text)
    scalar_keys = [k for k, v in data.items() if not isinstance(v, dict | list)]
    for key in scalar_keys:
        assert f"/{key}" in output.confidence
    assert all(0.0 <= c <= 1.0 for c in output.confidence.values())
    assert any(c < 1.0 for c in output.confidence.values())  # random weights are never sure of everything


def test_unconstrained_stops_at_the_budget(tiny_model) -> None:
    request = GenerationRequest(
        prompt=build_prompt("hi", []), pixel_values=None, schema=None, max_new_tokens=7
    )
    (output,) = Generator(tiny_model).generate([request])
    assert output.finish_reason in {"length", "stop"}
    assert output.generated_tokens <= 7
    assert output.confidence == {} or all(0 <= c <= 1 for c in output.confidence.values())


def test_finished_documents_leave_the_batch_and_the_rest_is_unchanged(
    tiny_model, monkeypatch: pytest.MonkeyPatch
) -> None:
    # different budgets end the documents at different steps (or earlier, at a stop token)
    budgets = [3, 24, 11]
    requests = [
        GenerationRequest(prompt=build_prompt(f"say {n}", []), pixel_values=None, max_new_tokens=budget)
        for n, budget in enumerate(budgets)
    ]
    generator = Generator(tiny_model)
    alone = [generator.generate([r])[0].token_ids for r in requests]

    rows_per_forward: list[int] = []
    forward = Generator._forward

    def counting_forward(self, embeds, mask, positions, cache):
        rows_per_forward.append(embeds.shape[0])
        return forward(self, embeds, mask, positions, cache)

    monkeypatch.setattr(Generator, "_forward", counting_forward)
    together = generator.generate(requests)

    assert [o.token_ids for o in together] == alone
    lengths = sorted(len(ids) for ids in alone)
    assert lengths[0] < lengths[-1], "the documents must end at different steps for this test to mean much"
    # prefill and decode steps run on every row at first, on fewer as documents finish
    assert rows_per_forward[0] == len(requests)
    assert rows_per_forward[-1] < len(requests)
    assert rows_per_forward == sorted(rows_per_forward, reverse=True)


def test_two_threads_generating_at_once_take_turns(tiny_model, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading
    import time

    generator = Generator(tiny_model)
    inside, most_inside = 0, 0
    count_lock = threading.Lock()
    generate_batch = Generator._generate

    def counting(self, requests):
        nonlocal inside, most_inside
        with count_lock:
            inside += 1
            most_inside = max(most_inside, inside)
        time.sleep(0.05)  # long enough for the other thread to arrive
        try:
            return generate_batch(self, requests)
        finally:
            with count_lock:
                inside -= 1

    monkeypatch.setattr(Generator, "_generate", counting)
    request = GenerationRequest(prompt=build_prompt("hi", []), pixel_values=None, max_new_tokens=4)
    outputs: list[str] = []
    threads = [
        threading.Thread(target=lambda: outputs.append(generator.generate([request])[0].text))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most_inside == 1
    assert len(outputs) == 2 and outputs[0] == outputs[1]
