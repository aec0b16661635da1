"""Batched greedy decoding over transformers' InternVL model, with grammar constraints and jump-forward.

One call runs several documents together: the vision tower sees all their tiles at once, prompts are left
padded into one prefill, and each decode step is one forward pass for the whole batch. With a schema, an
xgrammar matcher per document masks the logits so only conforming JSON can come out, and the bytes the
grammar forces (keys, quotes, braces) ride along in the next forward pass instead of costing a step each.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import torch
import xgrammar as xgr

from extractor.confidence import field_confidence
from extractor.constrained import (
    DEFAULT_JSON_LAYOUT,
    GrammarCache,
    JsonStringTracker,
    Vocabulary,
    build_vocabulary,
)
from extractor.kv_cache import GrowingCache
from extractor.model import LoadedModel

VISION_CHUNK_TILES = 32  # bounds the vision tower's activation memory on large batches


@dataclass
class GenerationRequest:
    prompt: str  # the full model input (template applied, image tokens expanded)
    pixel_values: torch.Tensor | None  # [tiles, 3, H, W], tiles in prompt order
    schema: dict[str, Any] | None = None  # constrain the answer to this JSON Schema
    max_new_tokens: int = 2048
    tiles_per_page: list[int] = field(default_factory=list)


@dataclass
class GenerationOutput:
    text: str
    token_ids: list[int]
    token_probs: list[float]  # probability of each token; 1.0 for tokens the grammar forced
    forced: list[bool]
    confidence: dict[str, float]  # JSON pointer → 0..1, when the output is one JSON value
    prompt_tokens: int
    finish_reason: str  # "stop", "grammar" (the JSON is complete) or "length"
    timings_ms: dict[str, float] = field(default_factory=dict)
    forward_steps: int = 0  # decode forward passes spent on this document
    batch_size: int = 1
    tiles: int = 0
    tiles_per_page: list[int] = field(default_factory=list)

    @property
    def generated_tokens(self) -> int:
        return len(self.token_ids)


@dataclass
class _Sequence:
    request: GenerationRequest
    matcher: xgr.GrammarMatcher | None
    reserve: int
    strings: JsonStringTracker = field(default_factory=JsonStringTracker)
    token_ids: list[int] = field(default_factory=list)
    probs: list[float] = field(default_factory=list)
    forced: list[bool] = field(default_factory=list)
    pending: list[int] = field(default_factory=list)  # to feed in the next forward pass
    written: bytearray = field(default_factory=bytearray)  # the answer's bytes so far
    finish_reason: str | None = None
    steps: int = 0

    @property
    def done(self) -> bool:
        return self.finish_reason is not None


class Generator:
    def __init__(
        self, loaded: LoadedModel, *, jump_forward: bool = True, json_layout: str = DEFAULT_JSON_LAYOUT
    ) -> None:
        self.loaded = loaded
        self.json_layout = json_layout
        self.model = loaded.model
        self.jump_forward = jump_forward
        self.stop_ids = set(loaded.stop_token_ids)
        self.vocab_size = self.model.lm_head.out_features
        self.text = loaded.prompt_tokenizer
        self.pad_id = self.text.pad_id
        self._vocabulary: Vocabulary | None = None
        # one thread computes grammar masks while the model runs (xgrammar releases the GIL)
        self._masks = ThreadPoolExecutor(max_workers=1, thread_name_prefix="grammar-mask")
        self._grammars: GrammarCache | None = None
        # one batch at a time: a worker may flush two batches from two threads (celery-batches' timer and
        # the consumer), and two generates at once would only compete for the same device memory
        self._running = threading.Lock()

    @property
    def vocabulary(self) -> Vocabulary:
        if self._vocabulary is None:
            self._vocabulary = build_vocabulary(
                self.loaded.tokenizer, self.vocab_size, sorted(self.stop_ids), self.text.continuation
            )
        return self._vocabulary

    @property
    def grammars(self) -> GrammarCache:
        if self._grammars is None:
            self._grammars = GrammarCache(self.vocabulary, self.json_layout)
        return self._grammars

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationOutput]:
        if not requests:
            return []
        with self._running:
            return self._generate(requests)

    @torch.inference_mode()
    def _generate(self, requests: list[GenerationRequest]) -> list[GenerationOutput]:
        device = self.loaded.device
        sequences = [self._start(r) for r in requests]
        bitmask = xgr.allocate_token_bitmask(len(sequences), self.vocab_size)

        started = time.perf_counter()
        image_features = self._image_features(requests)
        vision_ms = _elapsed_ms(started, device)

        started = time.perf_counter()
        input_ids, mask = self._encode_prompts(requests)
        prompt_lengths = mask.sum(-1).tolist()
        input_ids, mask = input_ids.to(device), mask.to(device)
        embeds = self.model.get_input_embeddings()(input_ids)
        if image_features is not None:
            slots = (input_ids == self.loaded.image_token_id).unsqueeze(-1)
            embeds = embeds.masked_scatter(slots, image_features.to(embeds.dtype))
        positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
        masks_ready = self._masks.submit(self._fill_masks, sequences, bitmask)
        hidden, cache = self._forward(embeds, mask, positions, GrowingCache(self.model.config))
        logits = self.model.lm_head(hidden[:, -1, :]).float()
        prefill_ms = _elapsed_ms(started, device)
        next_position = mask.sum(-1)

        started = time.perf_counter()
        live = sequences  # the batch's rows, in order; a finished document leaves it
        while True:
            masks_ready.result()
            self._choose_all(live, logits, bitmask)
            keep = [row for row, seq in enumerate(live) if not seq.done]
            if not keep:
                break
            if len(keep) < len(live):
                # finished documents stop costing forward-pass compute and KV-cache memory
                rows = torch.tensor(keep, device=device)
                cache.batch_select_indices(rows)
                mask, next_position = mask[rows], next_position[rows]
                live = [live[row] for row in keep]
            step_ids, step_mask = self._step_inputs(live, mask.dtype)
            step_ids, step_mask = step_ids.to(device), step_mask.to(device)
            step_positions = next_position.unsqueeze(-1) + torch.arange(step_ids.shape[1], device=device)
            mask = torch.cat([mask, step_mask], dim=-1)
            # the grammar masks for this step's output depend only on tokens already accepted: the CPU
            # computes them while the forward pass runs
            masks_ready = self._masks.submit(self._fill_masks, live, bitmask)
            hidden, cache = self._forward(
                self.model.get_input_embeddings()(step_ids), mask, step_positions, cache
            )
            last = (step_mask.sum(-1) - 1).clamp(min=0)
            logits = self.model.lm_head(hidden[torch.arange(len(live), device=device), last]).float()
            next_position = next_position + step_mask.sum(-1)
            for seq in live:
                seq.steps += 1
                seq.pending = []
        decode_ms = _elapsed_ms(started, device)

        timings = {"vision": vision_ms, "prefill": prefill_ms, "decode": decode_ms}
        return [
            self._output(seq, int(n), timings, len(sequences))
            for seq, n in zip(sequences, prompt_lengths, strict=True)
        ]

    def _encode_prompts(self, requests: list[GenerationRequest]) -> tuple[torch.Tensor, torch.Tensor]:
        """The prompts' ids as the published usage computes them, left padded into one batch."""
        encoded = [self.text.encode(r.prompt) for r in requests]
        width = max(len(ids) for ids in encoded)
        input_ids = torch.full((len(encoded), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(encoded), width), dtype=torch.long)
        for row, ids in enumerate(encoded):
            input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            mask[row, width - len(ids) :] = 1
        return input_ids, mask

    @torch.inference_mode()  # thread-local: the mask thread must enter it to write an inference tensor
    def _fill_masks(self, sequences: list[_Sequence], bitmask: torch.Tensor) -> None:
        xgr.reset_token_bitmask(bitmask)  # all allowed: rows of unconstrained or finished sequences
        for index, seq in enumerate(sequences):
            if seq.matcher is not None and not seq.done:
                seq.matcher.fill_next_token_bitmask(bitmask, index)

    def _step_inputs(
        self, sequences: list[_Sequence], dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each live sequence's pending tokens, right-padded to the longest; padding is masked out."""
        step_len = max(len(s.pending) for s in sequences)
        step_ids = torch.full((len(sequences), step_len), self.pad_id, dtype=torch.long)
        step_mask = torch.zeros((len(sequences), step_len), dtype=dtype)
        for index, seq in enumerate(sequences):
            step_ids[index, : len(seq.pending)] = torch.tensor(seq.pending)
            step_mask[index, : len(seq.pending)] = 1
        return step_ids, step_mask

    def _choose_all(self, sequences: list[_Sequence], logits: torch.Tensor, bitmask: torch.Tensor) -> None:
        """Mask the whole batch at once, pick greedily, then let each sequence take its token."""
        if any(s.matcher is not None for s in sequences):
            # the bitmask has a row per document of the batch; the first len(sequences) are the live ones
            rows = bitmask[: len(sequences)]
            xgr.apply_token_bitmask_inplace(logits, rows.to(logits.device, non_blocking=True))
        if self.text.size < logits.shape[-1]:
            logits[:, self.text.size :] = float("-inf")  # embedding rows padded past the vocabulary: no token
        probs = torch.softmax(logits, dim=-1)
        tokens = torch.argmax(logits, dim=-1)
        token_probs = probs.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
        for index, (seq, token, prob) in enumerate(
            zip(sequences, tokens.tolist(), token_probs.tolist(), strict=True)
        ):
            if not seq.done:
                self._take(seq, token, prob, logits[index], probs[index])

    def _start(self, request: GenerationRequest) -> _Sequence:
        matcher = self.grammars.matcher(request.schema) if request.schema is not None else None
        reserve = self.grammars.closing_reserve(request.schema) if request.schema is not None else 0
        return _Sequence(request=request, matcher=matcher, reserve=reserve)

    def _image_features(self, requests: list[GenerationRequest]) -> torch.Tensor | None:
        tiles = [r.pixel_values for r in requests if r.pixel_values is not None and len(r.pixel_values)]
        if not tiles:
            return None
        pixels = torch.cat(tiles).to(self.loaded.device, self.loaded.dtype)
        chunks = [
            self.model.model.get_image_features(pixel_values=chunk, return_dict=True).pooler_output
            for chunk in pixels.split(VISION_CHUNK_TILES)
        ]
        return torch.cat(chunks)

    def _forward(self, embeds, mask, positions, cache):
        out = self.model.model.language_model(
            inputs_embeds=embeds,
            attention_mask=mask,
            position_ids=positions,
            cache=cache,
            use_cache=True,
        )
        return out.last_hidden_state, out.cache

    def _take(
        self, seq: _Sequence, token: int, prob: float, masked: torch.Tensor, probs: torch.Tensor
    ) -> None:
        """One sequence's next token (already masked and picked), then whatever the grammar forces after it."""
        budget_left = seq.request.max_new_tokens - len(seq.token_ids)
        if budget_left <= 0:
            seq.finish_reason = "length"
            return
        if seq.matcher is None:
            if token in self.stop_ids:
                seq.finish_reason = "stop"
                return
            self._append(seq, token, prob, forced=False)
            return
        if budget_left <= seq.reserve:
            closing = self._closing_token(seq, masked, token)
            if closing != token:
                token, prob = closing, float(probs[closing])
        if token in self.stop_ids or not seq.matcher.accept_token(token):
            seq.finish_reason = "grammar" if seq.matcher.is_completed() else "stop"
            return
        self._append(seq, token, prob, forced=False)
        if self._finished_by_grammar(seq):
            return
        if self.jump_forward:
            self._queue_forced(seq, budget_left - 1)

    def _closing_token(self, seq: _Sequence, masked: torch.Tensor, default: int) -> int:
        # near the end of the budget, prefer whatever closes strings, arrays and objects soonest
        for candidate in self.vocabulary.closer_ids(seq.strings.inside):
            if masked[candidate] > float("-inf"):
                return candidate
        return default

    def _queue_forced(self, seq: _Sequence, budget_left: int) -> None:
        forced = seq.matcher.find_jump_forward_string()
        if not forced:
            return
        for token in self.vocabulary.forced_tokens(seq.written, forced.encode())[:budget_left]:
            if not seq.matcher.accept_token(token):
                break
            self._append(seq, token, 1.0, forced=True)
            if self._finished_by_grammar(seq):
                return

    def _finished_by_grammar(self, seq: _Sequence) -> bool:
        if seq.matcher is not None and seq.matcher.is_terminated():
            seq.finish_reason = "grammar"
            return True
        return False

    def _append(self, seq: _Sequence, token: int, prob: float, *, forced: bool) -> None:
        seq.token_ids.append(token)
        seq.probs.append(prob)
        seq.forced.append(forced)
        seq.pending.append(token)
        seq.written += self.vocabulary.token_bytes[token]
        seq.strings.feed(self.vocabulary.token_bytes[token])

    def _output(
        self, seq: _Sequence, prompt_tokens: int, timings: dict[str, float], batch: int
    ) -> GenerationOutput:
        pieces = [self.vocabulary.token_bytes[t] for t in seq.token_ids]
        return GenerationOutput(
            text=self.text.decode(seq.token_ids),
            token_ids=seq.token_ids,
            token_probs=seq.probs,
            forced=seq.forced,
            confidence=field_confidence(pieces, seq.probs),
            prompt_tokens=prompt_tokens,
            finish_reason=seq.finish_reason or "length",
            timings_ms=dict(timings),
            forward_steps=seq.steps,
            batch_size=batch,
            tiles=0 if seq.request.pixel_values is None else len(seq.request.pixel_values),
            tiles_per_page=list(seq.request.tiles_per_page),
        )


def _elapsed_ms(started: float, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return round((time.perf_counter() - started) * 1000, 2)
