"""Fitting a document into the language model's trained context (8,192 tokens for both Danube models).

The prompt (text plus 256 image tokens per tile) and the answer's token budget must fit together: past
the trained context the model's positions are ones it never saw, and a truncated prompt loses pages. A
document that does not fit at the checkpoint's tile cap gets fewer tiles on every page, down to one; one
that cannot fit even then fails at once with `context_too_long`. Every engine applies this same rule.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from PIL import Image

from extractor.errors import InputError
from extractor.template import build_prompt
from extractor.tiling import tile_counts


@dataclass(frozen=True)
class TileFit:
    max_tiles: int  # the cap the document is tiled with
    tiles_per_page: list[int]
    prompt_tokens: int


def fit_tiles(
    images: Sequence[Image.Image],
    question: str,
    *,
    count_tokens: Callable[[str], int],
    tiling: dict,
    max_tiles: int,
    num_image_token: int,
    max_new_tokens: int,
    context_length: int,
    template: str = "h2ogpt2",
) -> TileFit:
    """The largest tile cap ≤ `max_tiles` whose prompt leaves room for `max_new_tokens` answer tokens.

    `count_tokens` is the engine's tokenizer on a model input; image tokens are counted, not tokenised:
    each is one id, and the text between them tokenises the same whatever their number.
    """
    text_tokens = count_tokens(build_prompt(question, [0] * len(images), template=template))
    room = context_length - max_new_tokens
    for cap in range(max_tiles, 0, -1):
        counts = tile_counts(
            images, **{**tiling, "min_tiles": min(tiling.get("min_tiles", 1), cap), "max_tiles": cap}
        )
        prompt_tokens = text_tokens + num_image_token * sum(counts)
        if prompt_tokens <= room:
            return TileFit(max_tiles=cap, tiles_per_page=counts, prompt_tokens=prompt_tokens)
    smallest = text_tokens + num_image_token * len(images)
    raise InputError(
        f"{len(images)} page(s) need {smallest} prompt tokens even at one tile a page; with "
        f"{max_new_tokens} answer tokens that is past the model's {context_length}-token context",
        code="context_too_long",
    )
