"""The model registry and engine selection: BAYOU_ENGINE (and BAYOU_ENGINE_800M/_2B) pick the builder from
bayou.engines' table; an engine that cannot start is one line naming the setting, exit 2, in `bayou
extract`, `bayou worker` and `bayou serve`."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import typer
from pydantic import ValidationError
from typer.testing import CliRunner

import bayou.engines as engines
from bayou.logs import ERRORS_ONLY_LOGGERS
from bayou.settings import Settings, get_settings
from extractor import registry
from extractor.errors import ConfigurationError

# a module name that can never exist, so these tests hold whether or not the vLLM engine is present
MISSING_MODULE = "extractor.no_such_engine_module"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A clean environment: data in tmp_path, no BAYOU_ENGINE* from outside, fresh settings and engines."""
    for name in ("BAYOU_ENGINE", "BAYOU_ENGINE_800M", "BAYOU_ENGINE_2B", "BAYOU_BROKER_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BAYOU_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("BAYOU_DATABASE_URL", f"sqlite:///{tmp_path / 'bayou.db'}")
    get_settings.cache_clear()
    engines.forget_engines()
    # as `bayou`'s main does before any command: import-time warnings of optional libraries kept to errors
    levels = {name: logging.getLogger(name).level for name in ERRORS_ONLY_LOGGERS}
    for name in ERRORS_ONLY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    yield monkeypatch
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    get_settings.cache_clear()
    engines.forget_engines()


def test_the_registry_is_what_queues_settings_and_api_read() -> None:
    from api.routes import documents
    from workers.app import models_to_preload
    from workers.queues import ALL_QUEUES, extract_queue

    assert registry.GPU_QUEUES == {"h2ovl-800m": "gpu.800m", "h2ovl-2b": "gpu.2b"}
    assert {"gpu.800m", "gpu.2b"} <= set(ALL_QUEUES)
    settings = Settings()
    assert settings.default_models == {
        "receipt": "h2ovl-800m",
        "drivers_license": "h2ovl-2b",
        "check": "h2ovl-2b",
    }
    assert settings.model_source("h2ovl-2b") == registry.MODELS["h2ovl-2b"].hub_id
    assert settings.model_source("/some/checkpoint") == "/some/checkpoint"
    assert extract_queue(None, "receipt", settings) == "gpu.800m"
    assert extract_queue(None, "check", settings) == "gpu.2b"
    assert extract_queue("/some/checkpoint", "check", settings) == registry.DIRECTORY_QUEUE
    assert models_to_preload(["gpu.2b"]) == ["h2ovl-2b"]
    assert documents.MODELS is registry.MODELS  # the upload form's allowed models


def test_per_model_engine_setting_overrides_bayou_engine(env) -> None:
    env.setenv("BAYOU_ENGINE_2B", "VLLM")
    settings = Settings()
    assert settings.engine_for("h2ovl-2b") == ("vllm", "BAYOU_ENGINE_2B")
    assert settings.engine_for("h2ovl-800m") == ("transformers", "BAYOU_ENGINE")
    assert settings.engine_for("/a/checkpoint/dir") == ("transformers", "BAYOU_ENGINE")
    env.setenv("BAYOU_ENGINE", "vllm")
    assert Settings().engine_for("/a/checkpoint/dir") == ("vllm", "BAYOU_ENGINE")


@pytest.mark.parametrize("name", ["BAYOU_ENGINE", "BAYOU_ENGINE_800M"])
def test_an_unknown_engine_is_refused_naming_the_setting(env, name: str) -> None:
    env.setenv(name, "onnx")
    with pytest.raises(ValidationError, match=f"{name}=onnx: unknown engine; use transformers or vllm"):
        Settings()


def test_every_engine_kind_a_setting_may_name_has_a_builder() -> None:
    assert set(engines.ENGINES) == set(registry.ENGINE_KINDS)


def test_get_engine_builds_through_the_table_once_per_model_and_kind(env) -> None:
    built: list[tuple[str, str]] = []

    def builder(kind: str):
        def build(entry: registry.ModelEntry, settings: Settings) -> object:
            built.append((kind, entry.alias))
            return object()

        return engines.EngineKind(build=build)

    env.setattr(engines, "ENGINES", {"transformers": builder("transformers"), "vllm": builder("vllm")})
    env.setenv("BAYOU_ENGINE_2B", "vllm")
    settings = Settings()
    first = engines.get_engine("h2ovl-2b", settings)
    assert engines.get_engine("h2ovl-2b", settings) is first
    engines.get_engine("h2ovl-800m", settings)
    assert built == [("vllm", "h2ovl-2b"), ("transformers", "h2ovl-800m")]


@pytest.fixture
def light_builders(env):
    """Both real builders, reading the settings as they do, with what they would load or ask replaced:
    each engine is a dict of what it was built from."""
    import extractor.engine
    import extractor.model
    import extractor.model.cpu_linear
    import extractor.model.device
    import extractor.model.quantize
    import extractor.vllm_engine as vllm_engine

    env.setattr(
        extractor.model, "load_model", lambda source, **kwargs: SimpleNamespace(model=source, **kwargs)
    )
    env.setattr(extractor.model.device, "configure_cpu_runtime", lambda threads: threads)
    env.setattr(extractor.model.quantize, "quantize", lambda model, mode: 0)
    env.setattr(extractor.model.cpu_linear, "pack_linears", lambda model: 0)
    env.setattr(extractor.engine, "TransformersEngine", lambda loaded, **kwargs: {**vars(loaded), **kwargs})
    env.setattr(vllm_engine, "served_model", lambda url, setting: "tiny")
    env.setattr(vllm_engine, "check_grammars", lambda url, setting, model, layout, timeout_s: None)
    env.setattr(vllm_engine, "check_prompt_ids", lambda server_ids, checkpoint, where: None)
    env.setattr(vllm_engine, "read_checkpoint", lambda source: source)

    def client(self: object, url: str, **kwargs: object) -> None:
        self.__dict__.update(url=url, **kwargs)

    env.setattr(vllm_engine.VLLMEngine, "__init__", client)
    return env


# every setting each kind of engine is built from, with another value it may take on a CPU
ENGINE_SETTINGS = {
    "transformers": {
        "engine": "vllm",
        "engine_800m": "vllm",
        "model_800m": "/another/checkpoint",
        "device": "cpu",
        "dtype": "float32",
        "quantize": "int8",
        "threads": 3,
        "json_layout": "compact",
    },
    "vllm": {
        "engine": "transformers",
        "engine_800m": "transformers",
        "model_800m": "/another/checkpoint",
        "vllm_url": "http://elsewhere:8000",
        "vllm_url_800m": "http://vllm-800m:8000",
        "vllm_timeout_s": 30.0,
        "batch_size": 2,
        "json_layout": "compact",
    },
}


@pytest.mark.parametrize("kind", list(ENGINE_SETTINGS))
def test_a_change_to_any_setting_an_engine_was_built_from_gives_a_new_engine(light_builders, kind) -> None:
    settings = Settings(engine=kind, vllm_url="http://vllm:8000")
    first = engines.get_engine("h2ovl-800m", settings)
    assert engines.get_engine("h2ovl-800m", settings.model_copy()) is first
    # a setting no engine reads keeps the engine
    assert engines.get_engine("h2ovl-800m", settings.model_copy(update={"max_upload_mb": 5})) is first

    changes = ENGINE_SETTINGS[kind]
    view = engines.SettingsReads(settings)
    engines.build_engine("h2ovl-800m", view)  # type: ignore[arg-type]
    assert set(view.reads) == set(changes)  # the table above is the builder's whole reading
    for field, value in changes.items():
        changed = settings.model_copy(update={field: value})
        engine = engines.get_engine("h2ovl-800m", changed)
        assert engine is not first, field
        assert engines.get_engine("h2ovl-800m", changed) is engine, field  # and that one is kept


def test_vllm_without_its_module_is_a_configuration_error_naming_the_setting(env) -> None:
    env.setattr(engines, "VLLM_MODULE", MISSING_MODULE)
    env.setenv("BAYOU_ENGINE_800M", "vllm")
    settings = Settings()
    with pytest.raises(ConfigurationError, match="BAYOU_ENGINE_800M=vllm for h2ovl-800m") as error:
        engines.get_engine("h2ovl-800m", settings)
    assert "set BAYOU_ENGINE_800M=transformers" in error.value.message
    engines.check_engines(["h2ovl-2b"], settings)  # the 2B still uses transformers: nothing to refuse


def test_an_engine_that_fails_to_start_is_a_configuration_error(env) -> None:
    def broken(entry: registry.ModelEntry, settings: Settings) -> object:
        raise RuntimeError("no GPU memory left")

    env.setitem(engines.ENGINES, "transformers", engines.EngineKind(build=broken))
    with pytest.raises(ConfigurationError, match=r"BAYOU_ENGINE=transformers: .* \(RuntimeError: no GPU"):
        engines.get_engine("h2ovl-800m", Settings())


def _cli(*commands: str) -> typer.Typer:
    import importlib

    app = typer.Typer()
    for command in commands:
        importlib.import_module(f"bayou.cli.{command}").register(app)
    app.command("noop", hidden=True)(lambda: None)  # a second command keeps ours a subcommand
    return app


def _one_line_error(output: str, setting: str) -> None:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and setting in lines[0], output


def test_extract_with_an_engine_that_cannot_start_exits_2(env, tmp_path: Path) -> None:
    env.setattr(engines, "VLLM_MODULE", MISSING_MODULE)
    env.setenv("BAYOU_ENGINE", "vllm")
    page = tmp_path / "receipt.png"
    page.write_bytes(b"not read: the engine fails first")
    result = CliRunner().invoke(_cli("extract"), ["extract", str(page), "--type", "receipt"])
    assert result.exit_code == 2
    _one_line_error(result.output, "BAYOU_ENGINE=vllm")


def test_extract_whose_server_fails_mid_request_is_one_line_and_exit_1(env, tmp_path: Path) -> None:
    from extractor.vllm_engine import VLLMUnavailable

    class ServerDiedMidRequest:
        """FAKE extractor: its engine's server answers 500, as a vLLM whose worker process died does."""

        def extract(self, documents: list[object]) -> list[object]:
            raise VLLMUnavailable("vLLM server http://127.0.0.1:8001: HTTP 500 on /v1/chat/completions")

    env.setattr(engines, "get_engine", lambda name, settings: object())
    env.setattr(engines, "extractor_for", lambda engine, settings, **options: ServerDiedMidRequest())
    pages = [tmp_path / f"r{n}.png" for n in range(3)]
    for page in pages:
        page.write_bytes(b"not read: the fake extractor fails first")
    result = CliRunner().invoke(
        _cli("extract"), ["extract", *map(str, pages), "--type", "receipt", "--batch-size", "2"]
    )
    assert result.exit_code == 1
    _one_line_error(result.output, "HTTP 500 on /v1/chat/completions; 3 document(s) not extracted")


def test_worker_with_an_engine_that_cannot_start_exits_2_before_taking_work(env) -> None:
    env.setattr(engines, "VLLM_MODULE", MISSING_MODULE)
    env.setenv("BAYOU_ENGINE_2B", "vllm")
    from workers import app as worker_app
    from workers.runtime import reset_runtime

    started: list[list[str]] = []
    env.setattr(worker_app, "get_app", lambda: type("App", (), {"worker_main": started.append})())
    reset_runtime()
    try:
        result = CliRunner().invoke(_cli("worker"), ["worker", "--queues", "gpu.2b"])
        assert result.exit_code == 2 and not started
        _one_line_error(result.output, "BAYOU_ENGINE_2B=vllm")
        # a worker on the 0.8B's queue does not need the 2B's engine
        result = CliRunner().invoke(_cli("worker"), ["worker", "--queues", "gpu.800m"])
        assert result.exit_code == 0 and len(started) == 1, result.output
    finally:
        reset_runtime()


def test_worker_whose_checkpoint_is_not_there_exits_2_before_taking_work(env, tmp_path: Path) -> None:
    from workers import app as worker_app
    from workers.runtime import reset_runtime

    started: list[list[str]] = []
    env.setattr(worker_app, "get_app", lambda: type("App", (), {"worker_main": started.append})())
    reset_runtime()
    try:
        for source, complaint in (
            (tmp_path / "missing", "no such checkpoint directory"),
            (tmp_path, "has no config.json"),  # a folder, but no checkpoint in it
        ):
            env.setenv("BAYOU_MODEL_800M", str(source))
            get_settings.cache_clear()  # the worker reads the settings afresh
            reset_runtime()
            result = CliRunner().invoke(_cli("worker"), ["worker", "--queues", "gpu.800m"])
            assert result.exit_code == 2 and not started, result.output
            _one_line_error(result.output, f"BAYOU_MODEL_800M={source}")
            assert complaint in result.output
        # the 2B's worker does not load the 0.8B; a hub id is fetched (or found cached) when loaded
        result = CliRunner().invoke(_cli("worker"), ["worker", "--queues", "gpu.2b"])
        assert result.exit_code == 0 and len(started) == 1, result.output
    finally:
        reset_runtime()


@pytest.mark.skipif(
    torch.cuda.is_available(), reason="this machine has CUDA: BAYOU_DEVICE=cuda is valid here"
)
def test_a_cuda_device_without_cuda_is_refused_at_start_naming_the_setting(env) -> None:
    env.setenv("BAYOU_DEVICE", "cuda")
    with pytest.raises(ConfigurationError, match="BAYOU_DEVICE=cuda: .*CUDA is not available") as error:
        engines.check_engines(["h2ovl-800m"], Settings())
    assert "\n" not in error.value.message


def test_int8_without_torchao_is_refused_at_start_naming_the_setting(env) -> None:
    import importlib.util

    find_spec = importlib.util.find_spec
    env.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torchao" else find_spec(name, *a)
    )
    env.setenv("BAYOU_QUANTIZE", "int8")
    with pytest.raises(ConfigurationError, match=r"BAYOU_QUANTIZE=int8 needs torchao: pip install") as error:
        engines.check_engines(["h2ovl-800m"], Settings())
    assert "\n" not in error.value.message
    env.setenv("BAYOU_QUANTIZE", "int8-dynamic")  # torch's own kernels: nothing more to install
    engines.check_engines(["h2ovl-800m"], Settings())


def test_a_tiny_checkpoint_passes_the_start_check(env, tiny_checkpoint: Path) -> None:
    env.setenv("BAYOU_MODEL_800M", str(tiny_checkpoint))
    engines.check_engines(["h2ovl-800m", "h2ovl-2b"], Settings())  # nothing loaded, nothing refused


def test_serve_with_the_embedded_worker_checks_every_models_engine(env) -> None:
    env.setattr(engines, "VLLM_MODULE", MISSING_MODULE)
    env.setenv("BAYOU_ENGINE_2B", "vllm")
    env.setattr(
        "uvicorn.run", lambda *args, **kwargs: pytest.fail("served despite an engine that cannot start")
    )
    root = logging.getLogger()
    saved = list(root.handlers), root.level  # serve sets up the root logger
    try:
        result = CliRunner().invoke(_cli("serve"), ["serve"])
    finally:
        root.handlers[:], _ = saved[0], root.setLevel(saved[1])
    assert result.exit_code == 2
    _one_line_error(result.output, "BAYOU_ENGINE_2B=vllm")


def test_a_budget_below_a_types_shortest_answer_is_warned_of_once(
    tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from PIL import Image

    from extractor.engine import EngineRequest
    from extractor.schemas import available_types, load_schema

    monkeypatch.setenv("BAYOU_MODEL_800M", str(tiny_checkpoint))
    monkeypatch.setenv("BAYOU_MAX_NEW_TOKENS", "16")
    settings = Settings()
    engine = engines.build_engine("h2ovl-800m", settings)
    with caplog.at_level(logging.WARNING, logger="bayou.engines"):
        engines.extractor_for(engine, settings)
        engines.extractor_for(engine, settings)  # once per engine and budget, not per batch
    warned = [r.getMessage() for r in caplog.records if r.name == "bayou.engines"]
    assert len(warned) == len(available_types()) > 0
    assert all(m.startswith("BAYOU_MAX_NEW_TOKENS=16 is below the shortest valid ") for m in warned)
    grammars = engine.generator.grammars
    receipt = grammars.shortest_answer(load_schema("receipt"))
    assert "receipt" not in engines.warn_of_short_budgets(engine, receipt)
    assert engine.budget_shortfalls(receipt - 1)["receipt"] == receipt
    # what the warning is about: with such a budget the answer is cut off
    (output,) = engine.run(
        [
            EngineRequest(
                images=[Image.new("RGB", (300, 400))],
                question="x",
                schema=load_schema("receipt"),
                max_new_tokens=16,
            )
        ]
    )
    with pytest.raises(json.JSONDecodeError):
        json.loads(output.text)
