"""H2OVL-Mississippi as a thin adaptation of transformers' InternVLForConditionalGeneration.

We own only the mapping (config.py, weights.py), the checkpoint reading (loader.py) and a tiny test
checkpoint writer (tiny.py); the network itself is transformers' maintained implementation.
"""

from extractor.model.config import ModelSettings
from extractor.model.loader import LoadedModel, load_model

__all__ = ["LoadedModel", "ModelSettings", "load_model"]
