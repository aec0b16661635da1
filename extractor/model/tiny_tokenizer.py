"""A small tokenizer in the published layout (Llama-style byte-fallback BPE), for tiny test checkpoints.

It carries H2OVL's real special tokens so prompts, stop tokens and the grammar engine behave as with the
published tokenizer; its vocabulary is small so the tiny checkpoint stays a few MB.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from extractor.model.published import SPECIAL_TOKENS

BASE_SPECIALS = ("<unk>", "<s>", "</s>")
BYTE_TOKENS = tuple(f"<0x{i:02X}>" for i in range(256))

# text the merges are learned from: what the model writes (JSON of receipts, licences and checks)
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
]


def build_tokenizer(vocab_size: int = 640, corpus: Iterable[str] | None = None) -> Tokenizer:
    """Train the tokenizer; the default corpus is tiny (test checkpoints), a large one gives a real-size vocab."""
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    # Llama's convention: spaces become ▁ and the text starts with one
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.Prepend("▁"), normalizers.Replace(Regex(" "), "▁")]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex("▁"), behavior="merged_with_next")
    tokenizer.decoder = decoders.Sequence(
        [
            decoders.Replace("▁", " "),
            decoders.ByteFallback(),
            decoders.Fuse(),
            decoders.Strip(" ", 1, 0),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[*BASE_SPECIALS, *BYTE_TOKENS],
        show_progress=False,
        initial_alphabet=list('▁abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789{}[]":,.-/%$'),
    )
    tokenizer.train_from_iterator(corpus if corpus is not None else _CORPUS * 4, trainer=trainer)
    tokenizer.add_special_tokens(list(SPECIAL_TOKENS))
    return tokenizer


def write_tokenizer(directory: Path, tokenizer: Tokenizer) -> None:
    tokenizer.save(str(directory / "tokenizer.json"))
    config = {
        "tokenizer_class": "LlamaTokenizer",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "pad_token": "<unk>",
        "add_bos_token": False,
        "add_eos_token": False,
        "model_max_length": 8192,
        "padding_side": "left",
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    special = {
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "pad_token": "<unk>",
        "additional_special_tokens": list(SPECIAL_TOKENS),
    }
    (directory / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
