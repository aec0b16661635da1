"""Engines made for tests, standing in for the model: one place for the fakes several test modules use."""

from __future__ import annotations

import json
from typing import Any

from extractor.generation import GenerationOutput


class FakeScriptedEngine:
    """FAKE standing in for the model: answers each request with the given JSON text."""

    name = "scripted"
    revision = "test"

    def __init__(self, answer: dict[str, Any]) -> None:
        self.text = json.dumps(answer)

    def fit(self, request: Any) -> None:
        return None

    def budget_shortfalls(self, max_new_tokens: int) -> dict[str, int]:
        return {}  # its answers take no tokens

    def run(self, requests: list[Any]) -> list[GenerationOutput]:
        return [
            GenerationOutput(self.text, [], [], [], {}, prompt_tokens=1, finish_reason="stop")
            for _ in requests
        ]
