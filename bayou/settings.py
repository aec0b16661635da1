"""All configuration in one place: environment variables with the BAYOU_ prefix, or a .env file."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from extractor import registry
from extractor.precisions import DTYPE_NAMES, QUANTIZE_MODES

if TYPE_CHECKING:
    from extractor.pipeline import Limits

EXTRACT_KILL_GRACE_S = 60  # between the extract task's soft time limit and the kill


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BAYOU_", env_file=".env", extra="ignore")

    data_dir: Path = Path("./bayou-data")
    database_url: str = ""  # empty: SQLite inside data_dir
    broker_url: str = ""  # empty: the embedded broker inside data_dir
    model_800m: str = "h2oai/h2ovl-mississippi-800m"
    model_2b: str = "h2oai/h2ovl-mississippi-2b"
    # which engine serves a model (`transformers` or `vllm`); BAYOU_ENGINE_800M / _2B override it per model
    engine: str = registry.DEFAULT_ENGINE
    engine_800m: str | None = None
    engine_2b: str | None = None
    # BAYOU_ENGINE=vllm: the `vllm serve` process serving each model (one model per server); vllm_url is
    # the fallback (and the server of a checkpoint directory). The worker is an HTTP client of it.
    vllm_url: str = ""
    vllm_url_800m: str = ""
    vllm_url_2b: str = ""
    vllm_timeout_s: float = Field(600.0, gt=0)  # one request (a document's whole answer) to the server
    device: str = "auto"
    # `auto`: bfloat16 on GPUs and on CPUs with native bf16 (AVX-512 BF16, AMX), float32 on other CPUs
    dtype: Literal[("auto", *DTYPE_NAMES)] = "auto"  # type: ignore[valid-type]
    # int8 for the language model's and vision tower's Linear layers: `int8-dynamic` (weights and activations,
    # torch's own x86 kernels: the fast one on CPUs) or `int8` (weights only, torchao: the `cpu-int8` extra)
    quantize: Literal[QUANTIZE_MODES] = "none"  # type: ignore[valid-type]
    # torch's CPU threads per worker process; empty: every core the process may use (affinity, cgroup quota)
    threads: int | None = Field(None, ge=1)
    # how the grammar lets the answer's JSON be laid out: `spaced` (", " and ": ", json.dumps' default),
    # `compact` (no spaces) or `free` (the model's own whitespace, bounded); see extractor.constrained
    json_layout: Literal["spaced", "compact", "free"] = "spaced"
    # the answer's token budget; with the prompt it must fit the model's 8,192-token context (long
    # documents get fewer tiles per page to make room, see extractor.context)
    max_new_tokens: int = Field(2048, ge=16, le=8192)
    max_upload_mb: int = 25
    max_pages: int = 20
    max_pixels: int = 89_478_485  # a page
    # all pages of a document together (~300 MB as RGB): larger PDF pages are rendered at a lower dpi,
    # larger images shrunk once decoded; see extractor.pixel_budget
    max_document_pixels: int = Field(100_000_000, gt=0)
    # OCR word boxes for grounding, read in the rasterising stage (extractor.ocr); off: no locations
    ocr: bool = True
    ocr_timeout_s: float = Field(20.0, gt=0)  # a page; past it the page has no words, status "timeout"
    batch_root: Path | None = None  # POST /v1/batches reads folders below this; default <data_dir>/inbox
    # completion callbacks: HMAC key (empty: a generated one in <data_dir>/callback-secret), and which
    # non-public addresses a callback may reach (none by default: a callback URL must not probe the LAN)
    callback_secret: SecretStr = SecretStr("")
    callback_allow_private: bool = False
    callback_allowed_networks: list[str] = Field(default_factory=list)
    callback_timeout_s: float = 10.0
    review_secret: SecretStr = SecretStr("")  # signs review-UI cookies; empty: generated in the data dir
    # `bayou serve` behind a TLS proxy: the proxy addresses (comma-separated, or "*") whose X-Forwarded-For
    # and X-Forwarded-Proto are believed, so the review cookie is Secure and sign-ins are counted per real
    # client; uvicorn's own default, 127.0.0.1, otherwise
    forwarded_allow_ips: str = "127.0.0.1"
    # which model serves a document type when the upload names none
    default_models: dict[str, str] = Field(default_factory=registry.default_models)
    # logs of `bayou serve` / `bayou worker`: `text` for a terminal, `json` (one object a line) for a pipeline
    log_format: Literal["text", "json"] = "text"
    log_level: str = "INFO"
    # GPU workers: at most this many extractions in one batched generate; a batch that could still grow
    # waits at most batch_wait_s for company (it runs at once when nothing more is on its way)
    batch_size: int = Field(8, ge=1, le=256)
    batch_wait_s: float = Field(0.5, ge=0, le=600)
    # the extract task's soft time limit (the document fails `timeout`); the process is killed a minute later
    extract_time_limit_s: int = Field(900, ge=10)
    # a document untouched this long in queued or processing is sent again (a worker died with it, or the
    # broker lost its message); must outlast the extract task's hard limit, or live work would go twice
    stuck_after_s: float = Field(30 * 60, gt=0)

    @field_validator("log_level")
    @classmethod
    def _known_log_level(cls, value: str) -> str:
        import logging

        name = value.strip().upper()
        if not isinstance(logging.getLevelName(name), int):
            raise ValueError(f"unknown log level {value!r} (DEBUG, INFO, WARNING, ERROR, CRITICAL)")
        return name

    @field_validator("engine", "engine_800m", "engine_2b")
    @classmethod
    def _known_engine(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        kind = value.strip().lower()
        if kind not in registry.ENGINE_KINDS:
            setting = f"BAYOU_{(info.field_name or 'engine').upper()}"
            raise ValueError(f"{setting}={value}: unknown engine; use {' or '.join(registry.ENGINE_KINDS)}")
        return kind

    @model_validator(mode="after")
    def _fill_embedded_defaults(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'bayou.db'}"
        return self

    @model_validator(mode="after")
    def _stuck_outlasts_the_extract_limit(self) -> Settings:
        if self.stuck_after_s <= self.extract_hard_limit_s:
            raise ValueError(
                f"stuck_after_s ({self.stuck_after_s:g}) must be longer than the extract task's hard time "
                f"limit ({self.extract_hard_limit_s} s = extract_time_limit_s + {EXTRACT_KILL_GRACE_S})"
            )
        return self

    @property
    def extract_hard_limit_s(self) -> int:
        return self.extract_time_limit_s + EXTRACT_KILL_GRACE_S

    def limits(self) -> Limits:
        """The input caps, as the pipeline takes them."""
        from extractor.pipeline import Limits  # the pipeline pulls in torch: not for every settings reader

        return Limits(
            max_pages=self.max_pages,
            max_pixels=self.max_pixels,
            max_document_pixels=self.max_document_pixels,
        )

    def model_source(self, name: str) -> str:
        """A model alias (`h2ovl-800m`, `h2ovl-2b`) to its hub id or directory; anything else is a source."""
        field_name = registry.lookup(name).source_setting
        return getattr(self, field_name) if field_name else name

    def engine_for(self, name: str) -> tuple[str, str]:
        """The engine kind that serves model `name`, and the setting that chose it (for error messages)."""
        field_name = registry.lookup(name).engine_setting
        override = getattr(self, field_name) if field_name else None
        if override is not None:
            return override, f"BAYOU_{field_name.upper()}"
        return self.engine, "BAYOU_ENGINE"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
