"""The published checkpoints' tokenizer side, end to end, against real artifacts.

A checkpoint laid out as h2oai/h2ovl-mississippi-* are (the real 32k Mistral tokenizer.model from
mistral_common, the ten added tokens, no tokenizer.json; tiny random weights, since no hub is reachable)
must load, feed the model exactly the ids the published usage computes (transformers 4's slow tokenizer,
run here in a subprocess), force only tokens the tokenizer itself would split that way, fit the context,
and go through `bayou extract`, `bayou models check` and the worker.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from extractor.engine import EngineRequest, TransformersEngine
from extractor.errors import CheckpointError, InputError
from extractor.generation import Generator
from extractor.model import load_model
from extractor.model.published import ADDED_TOKENS
from extractor.model.tokenizer import PromptTokenizer
from extractor.prompts import build_prompt
from extractor.schemas import load_schema
from extractor.tiling import tile_counts

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_PACKAGES = ("transformers==4.47.1", "tokenizers==0.21.0", "huggingface_hub==0.27.0")
REFERENCE_DIR = Path(
    os.environ.get(
        "BAYOU_REFERENCE_TRANSFORMERS", Path.home() / ".cache" / "bayou-tests" / "transformers-4.47.1"
    )
)
DOC_TYPES = ("receipt", "drivers_license", "check")
# page sizes as the rasteriser gives them (200-300 dpi): the tile counts, not the pixels, shape the ids
PAGE_SIZES = {"receipt": (600, 1400), "drivers_license": (1012, 638), "check": (1700, 760)}


def _bayou(*args: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bayou.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=timeout,
        cwd=ROOT,
    )


@pytest.fixture(scope="session")
def published_model(published_checkpoint: Path):
    return load_model(published_checkpoint)


@pytest.fixture(scope="session")
def slow_tokenizer_ids() -> Callable[[Path, list[str]], list[list[int]]]:
    """The published usage's ids: transformers 4.47's slow LlamaTokenizer, in a process of its own."""
    if not (REFERENCE_DIR / "transformers" / "__init__.py").exists():
        install = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "--no-deps",
                "--target",
                str(REFERENCE_DIR),
                *REFERENCE_PACKAGES,
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if install.returncode != 0:
            shutil.rmtree(REFERENCE_DIR, ignore_errors=True)
            message = (
                f"the reference transformers 4 could not be installed from PyPI: {install.stderr[-500:]}"
            )
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)

    def ids(directory: Path, texts: list[str]) -> list[list[int]]:
        run = subprocess.run(
            [sys.executable, str(ROOT / "tests" / "reference" / "slow_tokenizer_ids.py")],
            input=json.dumps({"directory": str(directory), "texts": texts}),
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REFERENCE_DIR), "TRANSFORMERS_VERBOSITY": "error"},
            timeout=300,
        )
        assert run.returncode == 0, run.stderr[-2000:]
        answer = json.loads(run.stdout)
        assert answer["version"] == "4.47.1" and answer["class"] == "LlamaTokenizer"
        return answer["ids"]

    return ids


def _with_tokenizer_config(source: Path, target: Path, **changes: object) -> Path:
    shutil.copytree(source, target)
    config = json.loads((target / "tokenizer_config.json").read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    (target / "tokenizer_config.json").write_text(json.dumps(config))
    return target


# --- loading the published layout ---


def test_the_real_tokenizer_is_the_published_file(mistral_sentencepiece: bytes) -> None:
    import sentencepiece as spm

    processor = spm.SentencePieceProcessor()
    processor.LoadFromSerializedProto(mistral_sentencepiece)
    assert len(mistral_sentencepiece) == 493_443  # the size of the published repos' tokenizer.model
    assert processor.get_piece_size() == 32_000


def test_published_layout_loads_with_the_published_ids(published_checkpoint: Path, published_model) -> None:
    assert not (published_checkpoint / "tokenizer.json").exists()
    assert (published_checkpoint / "added_tokens.json").stat().st_size == 199  # as published
    prompt = published_model.prompt_tokenizer
    assert isinstance(prompt, PromptTokenizer)
    assert (prompt.legacy, prompt.add_bos) == (True, True)  # tokenizer_config leaves legacy unset
    assert [prompt.token_id(t) for t in ADDED_TOKENS] == list(range(32000, 32010))
    assert published_model.image_token_id == 32002
    assert published_model.stop_token_ids == [2, 32009]  # the h2ogpt2 template's stop ids
    for marker in ("<|prompt|>", "<|answer|>"):
        assert marker not in prompt.added  # text, as in the published tokenizer
        assert len(prompt.encode(marker)) > 2


def test_the_tiny_checkpoint_is_seen_as_the_published_layout(
    tiny_checkpoint: Path, published_checkpoint: Path, tiny_model, published_model
) -> None:
    def view(directory: Path, loaded) -> dict[str, object]:
        prompt = loaded.prompt_tokenizer
        return {
            "files": sorted(p.name for p in directory.iterdir() if not p.name.endswith(".safetensors")),
            "tokenizer": type(prompt).__name__,
            "config_keys": sorted(json.loads((directory / "tokenizer_config.json").read_text())),
            "legacy": prompt.legacy,
            "add_bos": prompt.add_bos,
            "special": (prompt.bos_id, prompt.eos_id, prompt.unk_id, prompt.pad_id),
            # the added tokens in order, as offsets past the base vocabulary
            "added": sorted((t.id - prompt.base_size, t.content) for t in prompt.added.values() if t.id >= 3),
            "stops": [i - prompt.base_size if i >= prompt.base_size else i for i in loaded.stop_token_ids],
            "image_token": loaded.image_token_id - prompt.base_size,
            "roles_are_text": all(m not in prompt.added for m in ("<|prompt|>", "<|answer|>")),
            "rows_cover_ids": loaded.model.get_input_embeddings().num_embeddings >= prompt.size,
        }

    assert view(tiny_checkpoint, tiny_model) == view(published_checkpoint, published_model)


def test_with_or_without_tokenizer_json(published_checkpoint: Path, published_model, tmp_path: Path) -> None:
    from extractor.model.tokenizer import FastPathTokenizer

    both = tmp_path / "both"
    shutil.copytree(published_checkpoint, both)
    published_model.tokenizer.backend_tokenizer.save(str(both / "tokenizer.json"))
    with_json = load_model(both)
    assert isinstance(with_json.prompt_tokenizer, PromptTokenizer)  # the sentencepiece model decides

    only_json = tmp_path / "only-json"
    shutil.copytree(both, only_json)
    (only_json / "tokenizer.model").unlink()
    fast = load_model(only_json)
    assert isinstance(fast.prompt_tokenizer, FastPathTokenizer)
    assert fast.stop_token_ids == [2, 32009] and fast.image_token_id == 32002
    text = "<|prompt|><img><IMG_CONTEXT></img>\nExtract the receipt.<|end|><|answer|>"
    assert fast.prompt_tokenizer.encode(text) == list(fast.tokenizer(text).input_ids)


# --- the ids fed to the model ---


def _requests(doc_type: str) -> list[EngineRequest]:
    question = build_prompt(doc_type).text
    page = Image.new("RGB", PAGE_SIZES[doc_type], "white")
    single = EngineRequest(images=[page], question=question)
    # several pages: a licence's front and back, a two-page receipt or check
    several = EngineRequest(images=[page, page.resize((page.width // 2, page.height))], question=question)
    return [single, several]


@pytest.mark.parametrize("legacy", [None, True, False], ids=["legacy-unset", "legacy-true", "legacy-false"])
def test_prompt_ids_equal_the_slow_tokenizers(
    published_checkpoint: Path, slow_tokenizer_ids, tmp_path: Path, legacy: bool | None
) -> None:
    directory = _with_tokenizer_config(published_checkpoint, tmp_path / "checkpoint", legacy=legacy)
    engine = TransformersEngine(load_model(directory))
    prompts = [engine.preprocess(r)[0] for doc_type in DOC_TYPES for r in _requests(doc_type)]
    input_ids, mask = engine.generator._encode_prompts(prompts)
    fed = [ids[row.bool()].tolist() for ids, row in zip(input_ids, mask, strict=True)]

    expected = slow_tokenizer_ids(directory, [p.prompt for p in prompts])

    assert len(fed) == 6 and all(len(ids) > 500 for ids in fed)  # three types × one page / two pages
    for got, want, prompt in zip(fed, expected, prompts, strict=True):
        assert got == want, prompt.prompt[:120]
    assert all(ids[0] == 1 for ids in fed)  # <s>: add_bos_token


# --- what jump-forward appends ---


def _sample_answers() -> list[tuple[str, dict]]:
    from extractor.replay import schema_ordered

    answers = []
    for line in (ROOT / "samples" / "metadata.jsonl").read_text().splitlines():
        entry = json.loads(line)
        schema = load_schema(entry["doc_type"])
        answers.append((entry["doc_type"], schema_ordered(entry["ground_truth"], schema)))
    return answers


@pytest.mark.parametrize("layout", ["spaced", "compact"])
def test_forced_spans_split_as_the_real_tokenizer_splits_the_answer(published_model, layout: str) -> None:
    from extractor.replay import Replay, answer_text, greedy_longest_match, replay

    generator = Generator(published_model, json_layout=layout)
    total, greedy = Replay(), Replay()
    for doc_type, answer in _sample_answers():
        text = answer_text(answer, layout)
        total.add(replay(generator.grammars, load_schema(doc_type), text))
        greedy.add(
            replay(
                generator.grammars, load_schema(doc_type), text, greedy_longest_match(generator.vocabulary)
            )
        )
    assert total.forced_spans > 100 and total.steps < 0.8 * total.tokens  # it still saves steps
    assert total.split_differently == 0
    assert greedy.split_differently > 0  # what the check catches: context-blind tokens differ


# --- the context ---


def _small_context(engine: TransformersEngine, tokens: int) -> TransformersEngine:
    engine.settings = replace(engine.settings, context_length=tokens)
    return engine


def test_a_document_that_fits_only_with_fewer_tiles_gets_them(tiny_model) -> None:
    from extractor.pipeline import DocumentInput, Extractor, Rasterized

    engine = _small_context(TransformersEngine(tiny_model), 2000)
    pages = [Image.new("RGB", (1200, 1600), "white") for _ in range(2)]
    request = EngineRequest(images=pages, question=build_prompt("receipt").text, max_new_tokens=64)
    fitted = engine.fit(request)
    assert fitted.max_tiles < 6 and fitted.prompt_tokens + 64 <= 2000
    # a cap one higher would not have fitted
    text_tokens = fitted.prompt_tokens - 256 * sum(fitted.tiles_per_page)
    wider = tile_counts(pages, image_size=448, use_thumbnail=True, max_tiles=fitted.max_tiles + 1)
    assert text_tokens + 256 * sum(wider) + 64 > 2000

    document = Rasterized(DocumentInput(sources=[b""], doc_type="receipt", name="two pages"), images=pages)
    (result,) = Extractor(engine, max_new_tokens=64).extract_rasterized([document])
    assert result.error is None and result.tiles_per_page == fitted.tiles_per_page
    assert result.tokens["prompt"] == fitted.prompt_tokens
    assert result.tokens["prompt"] + 64 <= 2000


def test_a_document_that_cannot_fit_fails_at_once_with_its_code(tiny_model) -> None:
    from extractor.pipeline import DocumentInput, Extractor, Rasterized

    engine = _small_context(TransformersEngine(tiny_model), 2000)
    pages = [Image.new("RGB", (600, 800), "white") for _ in range(8)]  # 8 × 258 tokens at one tile a page
    with pytest.raises(InputError) as raised:
        engine.fit(EngineRequest(images=pages, question=build_prompt("receipt").text, max_new_tokens=64))
    assert raised.value.code == "context_too_long"

    long = Rasterized(DocumentInput(sources=[b""], doc_type="receipt", name="long"), images=pages)
    short = Rasterized(DocumentInput(sources=[b""], doc_type="receipt", name="short"), images=pages[:1])
    results = Extractor(engine, max_new_tokens=32).extract_rasterized([long, short])
    assert results[0].error["code"] == "context_too_long" and results[0].raw_output == ""
    assert results[1].error is None  # the batch's other document is not held back


# --- end to end ---


def test_bayou_extract_runs_on_the_published_layout(published_checkpoint: Path, tmp_path: Path) -> None:
    env = {
        "BAYOU_MODEL_800M": str(published_checkpoint),
        "BAYOU_DATA_DIR": str(tmp_path / "data"),
        "BAYOU_MAX_NEW_TOKENS": "96",
    }
    run = _bayou("extract", "samples/receipts/r001.png", "--type", "receipt", "--max-tiles", "4", env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    (result,) = [json.loads(line) for line in run.stdout.splitlines()]
    assert result["valid"] and result["error"] is None
    assert len(result["tiles_per_page"]) == 1 and sum(result["tiles_per_page"]) == result["tiles"] == 5
    assert result["tokens"]["prompt"] > 5 * 256


def test_bayou_models_check_reports_and_extracts(published_checkpoint: Path, tmp_path: Path) -> None:
    run = _bayou(
        "models",
        "check",
        str(published_checkpoint),
        "--max-new-tokens",
        "64",
        env={"BAYOU_DATA_DIR": str(tmp_path / "data")},
    )
    assert run.returncode == 0, run.stdout + run.stderr[-2000:]
    lines = run.stdout.splitlines()
    assert [line.split(":")[0] for line in lines[:-1]] == [
        "ok   source",
        "ok   config",
        "ok   tokenizer",
        "ok   weights",
        "ok   sample",
    ]
    tokenizer = next(line for line in lines if line.startswith("ok   tokenizer"))
    assert "sentencepiece tokenizer.model (32000 pieces" in tokenizer and "<|end|>=32009" in tokenizer
    assert "<|prompt|> text" in tokenizer and "stop ids [2, 32009]" in tokenizer
    assert json.loads(lines[-1])["doc_type"] == "receipt"


def test_the_worker_extracts_with_the_published_layout(
    worker_env, worker_documents, published_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bayou.settings import get_settings
    from workers.embedded import start_worker_thread
    from workers.runtime import check_schema, get_runtime, reset_runtime

    worker_env()
    monkeypatch.setenv("BAYOU_MODEL_800M", str(published_checkpoint))
    monkeypatch.setenv("BAYOU_MAX_NEW_TOKENS", "64")
    get_settings.cache_clear()
    reset_runtime()
    runtime = get_runtime()
    check_schema(runtime.settings)
    worker = start_worker_thread(sweep_every_s=3600)
    try:
        document_id = worker_documents.submit(runtime, worker_documents.png(600, 900))
        statuses = worker_documents.wait_finished(runtime, [document_id], timeout=300)
    finally:
        worker.stop()
    assert statuses[document_id] in worker_documents.FINISHED
    # the run keeps the tiles each page got, and the API's Result shows them
    from sqlalchemy import select

    from api.serialize import document_json
    from storage.models import Document, ExtractionRun

    with runtime.sessions() as session:
        run = session.scalars(select(ExtractionRun).where(ExtractionRun.document_id == document_id)).one()
        assert run.tiles_per_page == [7] == [run.tiles]  # 600×900 page: 2×3 tiles + thumbnail
        assert document_json(session.get(Document, document_id))["result"]["tiles_per_page"] == [7]


# --- bad checkpoints: refused at load, naming the file and the field ---


def _broken(published_checkpoint: Path, tmp_path: Path, damage: Callable[[Path], None]) -> Path:
    directory = tmp_path / "broken"
    shutil.copytree(published_checkpoint, directory)
    damage(directory)
    return directory


def _drop_added_token(token: str) -> Callable[[Path], None]:
    def damage(directory: Path) -> None:
        added = json.loads((directory / "added_tokens.json").read_text())
        del added[token]
        (directory / "added_tokens.json").write_text(json.dumps(added))
        config = json.loads((directory / "tokenizer_config.json").read_text())
        config["added_tokens_decoder"] = {
            k: v for k, v in config["added_tokens_decoder"].items() if v["content"] != token
        }
        (directory / "tokenizer_config.json").write_text(json.dumps(config))

    return damage


def _config_field(section: str, field: str, value: object) -> Callable[[Path], None]:
    def damage(directory: Path) -> None:
        config = json.loads((directory / "config.json").read_text())
        config[section][field] = value
        (directory / "config.json").write_text(json.dumps(config))

    return damage


BAD_CHECKPOINTS = {
    "broken tokenizer.model": (
        lambda d: (d / "tokenizer.model").write_bytes(b"not a sentencepiece model"),
        ["tokenizer.model"],
    ),
    "missing tokenizer.model": (lambda d: (d / "tokenizer.model").unlink(), ["no tokenizer.model"]),
    "missing <IMG_CONTEXT>": (_drop_added_token("<IMG_CONTEXT>"), ["<IMG_CONTEXT>", "added_tokens.json"]),
    "tokenizer past the embeddings": (
        _config_field("llm_config", "vocab_size", 32000),
        ["32010 ids", "<|end|> = 32009", "32000 embedding rows", "llm_config.vocab_size"],
    ),
    "config field of the wrong type": (
        _config_field("vision_config", "hidden_size", "1024"),
        ["config.json", "vision_config.hidden_size", "integer"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_CHECKPOINTS))
def test_a_bad_checkpoint_is_refused_at_load_naming_what(
    published_checkpoint: Path, tmp_path: Path, case: str
) -> None:
    damage, named = BAD_CHECKPOINTS[case]
    directory = _broken(published_checkpoint, tmp_path, damage)
    with pytest.raises(CheckpointError) as raised:
        load_model(directory)
    for part in named:
        assert part in raised.value.message


def test_bad_checkpoints_are_named_by_every_command(published_checkpoint: Path, tmp_path: Path) -> None:
    from bayou.engines import forget_engines, get_engine
    from bayou.settings import Settings

    directory = _broken(published_checkpoint, tmp_path, _drop_added_token("<|end|>"))
    check = _bayou("models", "check", str(directory), env={"BAYOU_DATA_DIR": str(tmp_path / "data")})
    assert (
        check.returncode == 1 and "FAIL tokenizer: tokenizer lacks required token(s) <|end|>" in check.stdout
    )

    env = {"BAYOU_MODEL_800M": str(directory), "BAYOU_DATA_DIR": str(tmp_path / "data")}
    extract = _bayou("extract", "samples/receipts/r001.png", "--type", "receipt", env=env)
    assert extract.returncode == 2 and "<|end|>" in extract.stderr and "Traceback" not in extract.stderr

    # a worker builds its engine the same way: the same typed error, which fails the documents with its code
    forget_engines()
    with pytest.raises(CheckpointError, match=r"<\|end\|>"):
        get_engine("h2ovl-800m", Settings(model_800m=str(directory), data_dir=tmp_path / "data"))
    forget_engines()
