"""Typed storage errors; each has a stable `code` that the API can report as `error.code`."""

from __future__ import annotations

from extractor.errors import BayouError, ConfigurationError


class StorageError(BayouError):
    code = "storage_error"


class NotFound(StorageError):
    code = "not_found"


class IllegalTransition(StorageError):
    """A status change that the document lifecycle does not allow (the API answers 409)."""

    code = "illegal_transition"


class InvalidCursor(StorageError):
    """A pagination cursor that this service did not issue (the API answers 422)."""

    code = "invalid_cursor"


class InvalidBlobHash(StorageError, ValueError):
    """Anything other than 64 lowercase hex characters: refused before it can become a path."""

    code = "invalid_blob_hash"


class BlobTooLarge(StorageError):
    code = "too_large"


class SchemaBehind(ConfigurationError):
    """The database is older than this code and must not be migrated implicitly."""

    code = "schema_behind"


class SchemaUnknown(ConfigurationError):
    """The database carries a revision this code does not know (it is newer, or from elsewhere)."""

    code = "schema_unknown"
