"""The tokenizer files of a checkpoint in the published layout, and a small sentencepiece model for tiny ones.

`write_published_tokenizer` lays out what the published repos ship: `tokenizer.model` (sentencepiece), the
ten added tokens after the base vocabulary in the published order (`<|end|>` last) in added_tokens.json and
tokenizer_config.json, and no tokenizer.json. Tests and benchmarks call it with the real Mistral model that
mistral_common ships; `bayou models tiny` calls it with `train_small_model`, a few-hundred-piece
sentencepiece BPE model of the same kind (byte fallback, split digits, dummy prefix), trained here offline.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from pathlib import Path

from extractor.model.published import ADDED_TOKENS, TOKENIZER_CONFIG

# text the merges are learned from: what the model reads and writes (prompts, JSON of the three types)
_CORPUS = [
    '{"merchant_name": "Walmart Supercenter", "total": "12.30", "transaction_date": "2024-05-01"}',
    '{"items": [{"description": "Milk 2%", "quantity": 1, "unit_price": "3.49", "total_price": "3.49"}]}',
    '{"document_number": "D1234567", "family_name": "SMITH", "given_names": "JOHN A", "sex": "M"}',
    '{"date_of_birth": "1980-01-31", "issue_date": "2020-02-01", "expiration_date": "2028-01-31"}',
    '{"address": {"street": "123 Main St", "city": "Austin", "state": "TX", "postal_code": "78701"}}',
    '{"payee": "Acme Corp", "amount_numeric": "123.45", "amount_words": "One hundred twenty-three and 45/100"}',
    '{"routing_number": "011000015", "account_number": "1234567890", "memo": null, "signature_present": true}',
    "The quick brown fox jumps over the lazy dog. 0123456789 null true false",
    "Extract the fields of this receipt as JSON. Answer with JSON only.",
    "<|prompt|> <|answer|> Image-1: Image-2: page front back",
]


def train_small_model(vocab_size: int = 640, corpus: Iterable[str] | None = None) -> bytes:
    """A sentencepiece BPE model like the Danube tokenizer (byte fallback, split digits), deterministic."""
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(list(corpus if corpus is not None else _CORPUS * 4)),
        model_writer=model,
        model_type="bpe",
        vocab_size=vocab_size,
        byte_fallback=True,
        split_digits=True,
        character_coverage=1.0,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=True,
        allow_whitespace_only_pieces=True,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        num_threads=1,
        shuffle_input_sentence=False,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    return model.getvalue()


def write_published_tokenizer(directory: Path, sentencepiece_model: bytes) -> int:
    """Write the published tokenizer files around `sentencepiece_model`; returns the ids in use."""
    import sentencepiece as spm

    processor = spm.SentencePieceProcessor()
    processor.LoadFromSerializedProto(sentencepiece_model)
    base = processor.get_piece_size()
    added = {token: base + index for index, token in enumerate(ADDED_TOKENS)}
    (directory / "tokenizer.model").write_bytes(sentencepiece_model)
    (directory / "added_tokens.json").write_text(json.dumps(added, indent=2) + "\n")
    decoder = {
        str(token_id): {
            "content": content,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for content, token_id in [("<unk>", 0), ("<s>", 1), ("</s>", 2), *added.items()]
    }
    config = {**TOKENIZER_CONFIG, "added_tokens_decoder": decoder}
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    special = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<unk>"}
    (directory / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
    return base + len(ADDED_TOKENS)
