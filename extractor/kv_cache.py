"""The language model's key/value cache, written in place instead of concatenated.

transformers' DynamicCache appends each decoding step's keys and values with `torch.cat`, which copies the
whole cache of every layer on every token: behind a 1,400-token receipt prompt that copy was 57% of a
decode step on a 2-core CPU (torch.profiler, the 0.8B with int8-dynamic weights). GrowingCache keeps each
full-attention layer's keys and values in a buffer with room to spare, writes a step's new entries into
it, and hands attention views of the filled part; when the buffer is full it moves to one BLOCK_TOKENS
longer (one copy per 256 tokens: a receipt's answer makes one or two). The spare room is kept small and
zero-filled because bfloat16 decoding attention reads the buffers whole, spare rows weighted 0
(extractor/model/attention.py): room it reads for nothing, and values that must be finite. The values
attention sees are the same tensors as DynamicCache's, so outputs are identical. Layer kinds other than
full attention (none in the published configs) keep transformers' own classes.
"""

from __future__ import annotations

import torch
from transformers import PretrainedConfig
from transformers.cache_utils import (
    DYNAMIC_LAYER_TYPE_MAPPING,
    DynamicCache,
    DynamicLayer,
    get_layer_types_and_kwargs,
)

# the room a buffer grows by: a decode step adds one token per document
BLOCK_TOKENS = 256


class GrowingLayer(DynamicLayer):
    """One layer's cache: `keys`/`values` are views of the filled part of larger buffers."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._key_buffer: torch.Tensor | None = None
        self._value_buffer: torch.Tensor | None = None

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        start = self.get_seq_length()
        end = start + key_states.shape[-2]
        if not self._buffers_hold(key_states, end):
            self._move_to_new_buffers(key_states, value_states, end)
        assert self._key_buffer is not None and self._value_buffer is not None
        self._key_buffer[:, :, start:end].copy_(key_states)
        self._value_buffer[:, :, start:end].copy_(value_states)
        self.keys = self._key_buffer[:, :, :end]
        self.values = self._value_buffer[:, :, :end]
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keep the documents at `indices`: selected from the buffers, so their spare room stays."""
        if self._key_buffer is None or self.get_seq_length() == 0:
            return
        length = self.get_seq_length()
        self._key_buffer = self._key_buffer[indices]
        self._value_buffer = self._value_buffer[indices]  # type: ignore[index]
        self.keys = self._key_buffer[:, :, :length]
        self.values = self._value_buffer[:, :, :length]

    def capacity(self) -> int:
        """How many positions the buffers hold before they must grow (0 before the first update)."""
        return 0 if self._key_buffer is None else self._key_buffer.shape[-2]

    def _buffers_hold(self, key_states: torch.Tensor, end: int) -> bool:
        """Whether the live keys are still the head of the buffers (a parent-class method such as
        reorder_cache or offload may have replaced them) and `end` positions fit."""
        buffer = self._key_buffer
        if buffer is None or self.keys is None or self.keys.numel() == 0:
            return False
        same_rows = buffer.shape[:2] == key_states.shape[:2] and buffer.shape[-1] == key_states.shape[-1]
        return same_rows and self.keys.data_ptr() == buffer.data_ptr() and end <= buffer.shape[-2]

    def _move_to_new_buffers(self, key_states: torch.Tensor, value_states: torch.Tensor, end: int) -> None:
        length = self.get_seq_length()
        capacity = end + BLOCK_TOKENS
        batch, heads, _, key_dim = key_states.shape
        keys = key_states.new_zeros((batch, heads, capacity, key_dim))
        values = value_states.new_zeros((batch, value_states.shape[1], capacity, value_states.shape[-1]))
        if length:
            keys[:, :, :length].copy_(self.keys)
            values[:, :, :length].copy_(self.values)
        self._key_buffer, self._value_buffer = keys, values
        self.keys, self.values = keys[:, :, :length], values[:, :, :length]


class GrowingCache(DynamicCache):
    """A DynamicCache whose full-attention layers are GrowingLayers, laid out from the model's config."""

    def __init__(self, config: PretrainedConfig) -> None:
        super().__init__()
        layer_types, per_layer_kwargs = get_layer_types_and_kwargs(config.get_text_config(decoder=True))
        self.layers = [
            GrowingLayer(**kwargs) if kind == "full_attention" else DYNAMIC_LAYER_TYPE_MAPPING[kind](**kwargs)
            for kind, kwargs in zip(layer_types, per_layer_kwargs, strict=True)
        ]
        self.layer_class_to_replicate = None
