"""A vLLM general plugin: the `h2ovl_chat` config class, so vLLM needs no code from the checkpoint, and the
`h2ovl_slow` tokenizer mode, so vLLM feeds the model the published tokenizer's ids (tokenizer.py says why).

vLLM implements H2OVL natively (`H2OVLChatModel`, its image processor, MSAC) but has no config class for
`model_type: h2ovl_chat`; without one, transformers' AutoConfig would only load the checkpoint's own
`configuration_h2ovl_chat.py`, i.e. `--trust-remote-code`. Registering this class with AutoConfig (public
transformers API) makes the model type known, so vLLM reads config.json as plain data and runs nothing
from the checkpoint's folder. vLLM loads general plugins in every process it starts (API server, engine
core, workers), through the `vllm.general_plugins` entry point; registering twice is harmless.
"""

from __future__ import annotations

from bayou_vllm_plugin.config import H2OVLChatConfig, InternVisionConfig

__all__ = ["H2OVLChatConfig", "InternVisionConfig", "register"]


def register() -> None:
    from transformers import AutoConfig

    from bayou_vllm_plugin import tokenizer

    AutoConfig.register(H2OVLChatConfig.model_type, H2OVLChatConfig, exist_ok=True)
    AutoConfig.register(InternVisionConfig.model_type, InternVisionConfig, exist_ok=True)
    tokenizer.register()  # `--tokenizer-mode h2ovl_slow`; its bayou import happens only when a server uses it
