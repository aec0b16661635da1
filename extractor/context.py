"""Fitting a document into the language model's trained context (8,192 tokens for both Danube models).

The prompt (text plus 256 image tokens per tile) and the answer's token budget must fit together: past
the trained context the model's positions are ones it never saw, and a truncated prompt loses pages. A
document that does not fit at the checkpoint's tile cap gets fewer tiles on every page, down to one; one
that cannot fit even then fails at once with `context_too_long`. Every engine applies this same rule.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image

from extractor.errors import InputError
from extractor.model.config import ModelSettings
from extractor.template import build_prompt
from extractor.tiling import tile_counts


@dataclass(frozen=True)
class TileFit:
    max_tiles: int  # the cap the document is tiled with
    tiles_per_page: list[int]
    prompt_tokens: int


def tiling_of(settings: ModelSettings, max_tiles: int | None = None) -> dict[str, Any]:
    """The checkpoint's tiling keywords (extractor.tiling), capped at `max_tiles` when given."""
    cap = max_tiles or settings.max_dynamic_patch
    return {
        "image_size": settings.image_size,
        "min_tiles": min(settings.min_dynamic_patch, cap),
        "max_tiles": cap,
        "use_thumbnail": settings.use_thumbnail,
        "use_msac": settings.use_msac,
    }


def fit_tiles(
    images: Sequence[Image.Image],
    question: str,
    *,
    settings: ModelSettings,
    count_tokens: Callable[[str], int],
    max_tiles: int | None,
    max_new_tokens: int,
) -> TileFit:
    """The largest tile cap ≤ `max_tiles` (else the checkpoint's) leaving room for `max_new_tokens`.

    `count_tokens` is the engine's tokenizer on a model input; image tokens are counted, not tokenised:
    each is one id, and the text between them tokenises the same whatever their number.
    """
    text_tokens = count_tokens(build_prompt(question, [0] * len(images), template=settings.template))
    room = settings.context_length - max_new_tokens
    for cap in range(max_tiles or settings.max_dynamic_patch, 0, -1):
        counts = tile_counts(images, **tiling_of(settings, cap))
        prompt_tokens = text_tokens + settings.num_image_token * sum(counts)
        if prompt_tokens <= room:
            return TileFit(max_tiles=cap, tiles_per_page=counts, prompt_tokens=prompt_tokens)
    smallest = text_tokens + settings.num_image_token * len(images)
    raise InputError(
        f"{len(images)} page(s) need {smallest} prompt tokens even at one tile a page; with "
        f"{max_new_tokens} answer tokens that is past the model's {settings.context_length}-token context",
        code="context_too_long",
    )
