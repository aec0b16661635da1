"""The models bayou serves: one entry per model, the one place its facts live.

The CLI, the workers (queues), the API (which model names an upload may ask for), the settings (where each
model's weights are, which engine serves it, which model a document type defaults to) and the engine
factory (`bayou.engines`) all read this table. Adding a model means one entry here and its three settings
fields (`model_<x>`, `engine_<x>`, `vllm_url_<x>`) in bayou/settings.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from extractor.errors import CheckpointError, ConfigurationError

# every engine kind a setting may name; bayou.engines registers one builder for each
ENGINE_KINDS = ("transformers", "vllm")
DEFAULT_ENGINE = "transformers"


@dataclass(frozen=True)
class ModelEntry:
    alias: str  # the name users, uploads and settings use: h2ovl-800m
    hub_id: str  # where the published weights are: h2oai/h2ovl-mississippi-800m
    queue: str  # the Celery queue whose workers extract with this model
    source_setting: str | None  # the Settings field (BAYOU_MODEL_800M) that may point elsewhere
    engine_setting: str | None  # the Settings field (BAYOU_ENGINE_800M) that overrides BAYOU_ENGINE
    default_types: tuple[str, ...] = ()  # document types this model serves when an upload names none
    # the Settings field (BAYOU_VLLM_URL_800M) naming this model's `vllm serve`; vllm_url, the shared one,
    # for a checkpoint directory (and the fallback when a model's own is unset)
    vllm_url_setting: str = "vllm_url"

    def unreadable_checkpoint(self, source: str, error: CheckpointError) -> ConfigurationError:
        """A worker's start refusing this model's checkpoint `source`: one line naming the setting that
        chose it (BAYOU_MODEL_800M=...), or the checkpoint directory itself."""
        where = f"BAYOU_{self.source_setting.upper()}={source}" if self.source_setting else source
        return ConfigurationError(f"{where}: {error.message.removeprefix(f'{source}: ')}")


def _entry(alias: str, *, hub_id: str, queue: str, suffix: str, default_types: tuple[str, ...]) -> ModelEntry:
    return ModelEntry(
        alias=alias,
        hub_id=hub_id,
        queue=queue,
        source_setting=f"model_{suffix}",
        engine_setting=f"engine_{suffix}",
        default_types=default_types,
        vllm_url_setting=f"vllm_url_{suffix}",
    )


MODELS: Mapping[str, ModelEntry] = MappingProxyType(
    {
        entry.alias: entry
        for entry in (
            # the 0.8B reads receipts about as well as the 2B (the seed paper's Table 6) at a third the cost
            _entry(
                "h2ovl-800m",
                hub_id="h2oai/h2ovl-mississippi-800m",
                queue="gpu.800m",
                suffix="800m",
                default_types=("receipt",),
            ),
            # the 2B (with MSAC) for identity documents and checks, where small print matters
            _entry(
                "h2ovl-2b",
                hub_id="h2oai/h2ovl-mississippi-2b",
                queue="gpu.2b",
                suffix="2b",
                default_types=("drivers_license", "check"),
            ),
        )
    }
)
# a document type no entry claims goes to the larger model
FALLBACK_MODEL = "h2ovl-2b"
# a checkpoint directory shares the small model's queue: per-directory queues would need workers nobody starts
DIRECTORY_QUEUE = MODELS["h2ovl-800m"].queue
GPU_QUEUES: Mapping[str, str] = MappingProxyType({alias: entry.queue for alias, entry in MODELS.items()})


def lookup(name: str) -> ModelEntry:
    """The entry of alias `name`; for anything else (a checkpoint directory, a hub id) an ad hoc entry
    on the small model's queue, with no settings of its own (BAYOU_ENGINE decides its engine)."""
    if name in MODELS:
        return MODELS[name]
    return ModelEntry(
        alias=name, hub_id=name, queue=DIRECTORY_QUEUE, source_setting=None, engine_setting=None
    )


def default_models() -> dict[str, str]:
    """Document type → the alias that serves it by default (the BAYOU_DEFAULT_MODELS default)."""
    return {doc_type: entry.alias for entry in MODELS.values() for doc_type in entry.default_types}


def models_on(queues: list[str]) -> list[str]:
    """The aliases whose queue is among `queues`, in registry order."""
    return [alias for alias, entry in MODELS.items() if entry.queue in queues]
