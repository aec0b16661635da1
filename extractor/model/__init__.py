"""H2OVL-Mississippi as a thin adaptation of transformers' InternVLForConditionalGeneration.

We own only the mapping (config.py, weights.py), the checkpoint reading (loader.py), attention's decoding
step on CPUs (attention.py), activations run in place (in_place.py) and a tiny test checkpoint writer
(tiny.py); the network itself is transformers' maintained implementation.

The package's names load on first use (PEP 562), not at import: the vLLM server's environment imports
extractor.model.tokenizer alone (no torch-side bayou there), which must not pull in the loader.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from extractor.model.config import ModelSettings
    from extractor.model.loader import LoadedModel, load_model

__all__ = ["LoadedModel", "ModelSettings", "load_model"]
_HOMES = {
    "ModelSettings": "extractor.model.config",
    "LoadedModel": "extractor.model.loader",
    "load_model": "extractor.model.loader",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_HOMES[name]), name)
