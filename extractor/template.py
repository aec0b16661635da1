"""The `h2ogpt2` conversation template and InternVL's image placeholders.

A turn is `<|prompt|>{question}<|end|><|answer|>` with no system text (the template's system message is
empty). `<|prompt|>` and `<|answer|>` are plain text to the published tokenizer, `<|end|>` is a token;
`<s>` comes first where the tokenizer's config says so (extractor.model.tokenizer), and generation stops on
`<|end|>` or `</s>` (LoadedModel.stop_token_ids says why both). Each image becomes `<img>` + 256 `<IMG_CONTEXT>` per tile + `</img>`; several images
(PDF pages, a licence's front and back) are introduced as `Image-1: <image>` lines, as the published
multi-image examples do.
"""

from __future__ import annotations

from collections.abc import Sequence

IMAGE_PLACEHOLDER = "<image>"
IMG_START, IMG_END, IMG_CONTEXT = "<img>", "</img>", "<IMG_CONTEXT>"
TEMPLATES = {"h2ogpt2": ("<|prompt|>", "<|end|>", "<|answer|>")}


def question_with_images(question: str, image_count: int) -> str:
    if image_count == 0:
        return question
    if image_count == 1:
        return f"{IMAGE_PLACEHOLDER}\n{question}"
    lines = "".join(f"Image-{i}: {IMAGE_PLACEHOLDER}\n" for i in range(1, image_count + 1))
    return lines + question


def build_prompt(
    question: str, tiles_per_image: Sequence[int], *, num_image_token: int = 256, template: str = "h2ogpt2"
) -> str:
    """The full model input text for one document: template turn with each image's tokens expanded."""
    if template not in TEMPLATES:
        raise ValueError(f"unknown conversation template {template!r}; known: {sorted(TEMPLATES)}")
    prompt_role, end, answer_role = TEMPLATES[template]
    text = f"{prompt_role}{question_with_images(question, len(tiles_per_image))}{end}{answer_role}"
    for tiles in tiles_per_image:
        image_tokens = IMG_START + IMG_CONTEXT * (num_image_token * tiles) + IMG_END
        text = text.replace(IMAGE_PLACEHOLDER, image_tokens, 1)
    return text
