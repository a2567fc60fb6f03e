"""One error tree. Each error subclasses the stdlib error it resembles; `http_status` and `error_code`
drive the single HTTP translator in hub/errors.py (the `X-Error-Code` header huggingface_hub maps)."""

from __future__ import annotations


class SpacehostError(Exception):
    http_status = 500
    error_code: str | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(SpacehostError, ValueError):
    http_status = 400


class Unauthorized(SpacehostError, PermissionError):
    http_status = 401


class Forbidden(SpacehostError, PermissionError):
    http_status = 403


class NotFound(SpacehostError, LookupError):
    http_status = 404


class RepoNotFound(NotFound):
    error_code = "RepoNotFound"


class RevisionNotFound(NotFound):
    error_code = "RevisionNotFound"


class EntryNotFound(NotFound):
    error_code = "EntryNotFound"


class Conflict(SpacehostError):
    http_status = 409


class PayloadTooLarge(BadRequest):
    """A request body (or a part of it: one NDJSON line, one file) over its configured limit."""

    http_status = 413


class ConfigError(SpacehostError, ValueError):
    """A Space's README front matter is invalid. `key` and `line` point at the culprit."""

    http_status = 400

    def __init__(self, message: str, key: str | None = None, line: int | None = None) -> None:
        where = []
        if key:
            where.append(f"key '{key}'")
        if line:
            where.append(f"line {line}")
        super().__init__(f"README.md front matter, {', '.join(where)}: {message}" if where else message)
        self.key = key
        self.line = line


class BuildFailed(SpacehostError):
    """Building a Space failed; `log_tail` holds the last lines a user needs."""

    def __init__(self, message: str, log_tail: str = "") -> None:
        super().__init__(message)
        self.log_tail = log_tail


class LaunchFailed(SpacehostError):
    """A Space exited or never became ready."""

    def __init__(self, message: str, log_tail: str = "") -> None:
        super().__init__(message)
        self.log_tail = log_tail
