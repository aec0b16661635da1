"""Which engine serves a model name: settings + the model registry to a loaded engine, once per process.

Engines are built through one table, `ENGINES` ({kind: EngineKind}): adding an engine is one builder
function and one line there (plus its name in `extractor.registry.ENGINE_KINDS`, which the settings
validate against). The kind comes from BAYOU_ENGINE, or the model's own override (BAYOU_ENGINE_2B).
An engine that cannot be built here raises ConfigurationError naming the setting that chose it; the
commands turn that into one line and exit 2.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from bayou.settings import Settings, get_settings
from extractor.errors import BayouError, CheckpointError, ConfigurationError
from extractor.registry import FALLBACK_MODEL, ModelEntry, lookup

if TYPE_CHECKING:
    from extractor.engine import Engine
    from extractor.pipeline import Extractor

logger = logging.getLogger(__name__)
_lock = threading.Lock()
# by model name: each engine built for it, with the settings its build read (see SettingsReads)
_engines: dict[str, list[tuple[dict[str, Any], Engine]]] = {}
# each engine's BAYOU_MAX_NEW_TOKENS values already held against each type's shortest answer
_budgets_checked: weakref.WeakKeyDictionary[Any, set[int]] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class EngineKind:
    # builds the engine for a model entry (the model's source is settings.model_source(entry.alias))
    build: Callable[[ModelEntry, Settings], Engine]
    # a cheap look, without loading anything, that the engine can start here: raises ConfigurationError
    check: Callable[[ModelEntry, Settings], None] = lambda entry, settings: None


def model_name(requested: str | None, doc_type: str, settings: Settings | None = None) -> str:
    """The model alias or directory a document goes to: the one asked for, else the type's default."""
    settings = settings or get_settings()
    return requested or settings.default_models.get(doc_type, FALLBACK_MODEL)


def get_engine(name: str, settings: Settings | None = None) -> Engine:
    """The engine for `name` (an alias such as h2ovl-800m, or a checkpoint directory), loaded on first use.

    An engine is reused while every settings field its build read has the value it had then: the key is
    recorded, not listed, so a setting a builder starts to read cannot be left out of it."""
    settings = settings or get_settings()
    with _lock:  # two threads asking at once must not load the model twice
        built = _engines.setdefault(name, [])
        for reads, engine in built:
            if all(getattr(settings, field) == value for field, value in reads.items()):
                return engine
        view = SettingsReads(settings)
        engine = build_engine(name, cast(Settings, view))
        built.append((dict(view.reads), engine))
        return engine


class SettingsReads:
    """Settings as an engine builder sees them: every field read is noted with its value in `reads`. Methods
    and properties run against this view, so the fields they read (model_source's model_800m, engine_for's
    engine_2b) are noted too."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.reads: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:  # only for names this object lacks: the settings' own
        settings = self._settings
        if name in type(settings).model_fields:
            value = getattr(settings, name)
            self.reads[name] = value
            return value
        found = inspect.getattr_static(settings, name)
        if isinstance(found, (staticmethod, classmethod)) or not hasattr(found, "__get__"):
            return getattr(settings, name)
        return found.__get__(self, type(settings))


def extractor_for(
    engine: Engine, settings: Settings, *, constrained: bool = True, max_tiles: int | None = None
) -> Extractor:
    """The pipeline around `engine` with the settings' input caps and answer budget."""
    from extractor.pipeline import Extractor

    checked = _budgets_checked.setdefault(engine, set())
    if settings.max_new_tokens not in checked:
        checked.add(settings.max_new_tokens)
        warn_of_short_budgets(engine, settings.max_new_tokens)
    return Extractor(
        engine,
        constrained=constrained,
        max_tiles=max_tiles,
        limits=settings.limits(),
        max_new_tokens=settings.max_new_tokens,
        ocr_timeout_s=settings.ocr_timeout_s if settings.ocr else None,
    )


def build_engine(name: str, settings: Settings) -> Engine:
    """A new engine for model `name`, of the kind the settings choose for it."""
    entry = lookup(name)
    kind, setting = settings.engine_for(name)
    engine_kind = _kind(kind, setting)
    try:
        return engine_kind.build(entry, settings)
    except BayouError:
        raise  # already says what is wrong (a missing checkpoint, a bad dtype, ...)
    except (ImportError, OSError, RuntimeError, ValueError) as exc:
        raise ConfigurationError(
            f"{setting}={kind}: the {kind} engine could not start for {name} ({type(exc).__name__}: {exc})"
        ) from exc


def check_engines(names: list[str], settings: Settings | None = None) -> None:
    """At a command's start: every engine these models would use can start here (nothing is loaded)."""
    settings = settings or get_settings()
    for name in names:
        kind, setting = settings.engine_for(name)
        _kind(kind, setting).check(lookup(name), settings)


def forget_engines() -> None:
    """Drop every loaded engine (tests that change the settings)."""
    with _lock:
        _engines.clear()
        _budgets_checked.clear()


def _kind(kind: str, setting: str) -> EngineKind:
    if kind not in ENGINES:
        raise ConfigurationError(f"{setting}={kind}: unknown engine; one of {', '.join(ENGINES)}")
    return ENGINES[kind]


def _build_transformers(entry: ModelEntry, settings: Settings) -> Engine:
    from extractor.engine import TransformersEngine
    from extractor.model import load_model
    from extractor.model.cpu_linear import pack_linears
    from extractor.model.device import configure_cpu_runtime, resolve_device
    from extractor.model.quantize import load_dtype, quantize

    configure_cpu_runtime(settings.threads)
    dtype = load_dtype(settings.quantize, settings.dtype, resolve_device(settings.device))
    loaded = load_model(settings.model_source(entry.alias), device=settings.device, dtype=dtype)
    quantize(loaded.model, settings.quantize)
    pack_linears(loaded.model)  # the bfloat16 layers left on a CPU
    return TransformersEngine(loaded, name=entry.alias, json_layout=settings.json_layout)


def _check_transformers(entry: ModelEntry, settings: Settings) -> None:
    """At a worker's start, loading nothing: the device and precision settings go together, the quantisation's
    library is installed, and a local checkpoint directory is there with an H2OVL config (a hub id is
    fetched, or found cached, when loaded)."""
    from extractor.model.device import resolve_device
    from extractor.model.loader import local_checkpoint, read_config
    from extractor.model.quantize import check_available, load_dtype

    try:
        device = resolve_device(settings.device)
    except CheckpointError as exc:
        raise ConfigurationError(f"BAYOU_DEVICE={settings.device}: {exc.message}") from exc
    load_dtype(settings.quantize, settings.dtype, device)  # its ConfigurationError names the settings
    check_available(settings.quantize)
    source = settings.model_source(entry.alias)
    try:
        directory = local_checkpoint(source)
        if directory is not None:
            read_config(directory)
    except CheckpointError as exc:
        raise entry.unreadable_checkpoint(source, exc) from exc


def warn_of_short_budgets(engine: Engine, max_new_tokens: int) -> list[str]:
    """The document types whose shortest valid answer is longer than BAYOU_MAX_NEW_TOKENS, each logged: their
    documents would end cut off, invalid (the transformers engine's jump-forward may fit an answer in a few
    tokens less; a vLLM server, which does not close an answer early, needs the whole answer's budget)."""
    short = engine.budget_shortfalls(max_new_tokens)
    for doc_type, needed in short.items():
        logger.warning(
            "BAYOU_MAX_NEW_TOKENS=%d is below the shortest valid %s answer (%d tokens for %s): %s "
            "documents would be cut off and invalid; raise it",
            max_new_tokens,
            doc_type,
            needed,
            engine.name,
            doc_type,
        )
    return list(short)


# The vLLM engine's module. The contract with it: `VLLMEngine.from_settings(entry, settings)` builds an
# engine (raising ConfigurationError, or ImportError/OSError/RuntimeError, when it cannot start), and an
# optional module-level `check(entry, settings)` says cheaply, loading nothing, whether it could (vLLM
# present, its server reachable), raising ConfigurationError naming the setting to fix.
VLLM_MODULE = "extractor.vllm_engine"


def _vllm_module(entry: ModelEntry, settings: Settings) -> Any:
    kind, setting = settings.engine_for(entry.alias)
    if importlib.util.find_spec(VLLM_MODULE) is None:
        raise ConfigurationError(
            f"{setting}={kind} for {entry.alias}, but this bayou has no vLLM engine ({VLLM_MODULE} is "
            f"missing); set {setting}=transformers"
        )
    # imported only here: vLLM (or its client) is heavy and optional
    return importlib.import_module(VLLM_MODULE)


def _check_vllm(entry: ModelEntry, settings: Settings) -> None:
    check = getattr(_vllm_module(entry, settings), "check", None)
    if check is not None:
        check(entry, settings)


def _build_vllm(entry: ModelEntry, settings: Settings) -> Engine:
    # from_settings makes the module's own check (one look at the server, not one here and one there)
    return _vllm_module(entry, settings).VLLMEngine.from_settings(entry, settings)


ENGINES: dict[str, EngineKind] = {
    "transformers": EngineKind(build=_build_transformers, check=_check_transformers),
    "vllm": EngineKind(build=_build_vllm, check=_check_vllm),
}
