"""API-server failures mapped once, at the client edge, to classes callers can handle."""

from __future__ import annotations


class ApiError(Exception):
    """An error answer from the API server (or no answer at all)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class NotFound(ApiError):
    pass


class Conflict(ApiError):
    """409: the object changed since it was read (resourceVersion), or already exists."""


class AlreadyExists(Conflict):
    pass


class Gone(ApiError):
    """410: a watch's resourceVersion is too old; list again."""


class Invalid(ApiError):
    """422: the object failed validation (a CRD schema, a bad field)."""


class Forbidden(ApiError):
    pass


class Transient(ApiError):
    """429, 5xx, timeouts and lost connections: retry after a delay."""


def error_for(status: int, body: dict | None) -> ApiError:
    body = body or {}
    reason = str(body.get("reason", ""))
    message = str(body.get("message", "")) or f"HTTP {status}"
    if status == 404:
        return NotFound(status, reason or "NotFound", message)
    if status == 409:
        cls = AlreadyExists if reason == "AlreadyExists" else Conflict
        return cls(status, reason or "Conflict", message)
    if status == 410:
        return Gone(status, reason or "Gone", message)
    if status == 422:
        return Invalid(status, reason or "Invalid", message)
    if status in (401, 403):
        return Forbidden(status, reason or "Forbidden", message)
    if status == 429 or status >= 500:
        return Transient(status, reason or "ServerError", message)
    return ApiError(status, reason or "Error", message)
