"""Typed errors. Each carries a stable snake_case `code` that the service reports as `error.code`."""

from __future__ import annotations


class BayouError(Exception):
    code = "error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.code


class InputError(BayouError):
    """The document itself is bad: never retried. Codes: corrupt_file, encrypted_pdf, too_many_pages,
    too_many_pixels, unsupported_image, empty_file, unsupported_type, context_too_long."""

    code = "corrupt_file"


class CheckpointError(BayouError):
    """A checkpoint that cannot be loaded faithfully (missing, extra or mis-shaped tensors, bad config)."""

    code = "bad_checkpoint"


class ConfigurationError(BayouError):
    code = "configuration_error"
