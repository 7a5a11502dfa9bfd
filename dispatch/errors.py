"""The dispatch server's exception types.

::

    DispatchError
    ├── StorageError          the database refused or could not be reached
    │   └── MigrationError    the schema cannot be brought forward
    ├── ConfigError           a setting or a database URL is unusable
    └── Problem               an API error with an HTTP status (rendered as problem+json)
        ├── NotFound          404
        ├── Conflict          409 (a state transition that is not allowed, a duplicate)
        ├── Unauthorized      401 (no or bad credentials, replay, stale signature)
        ├── Forbidden         403 (a role limit, a revoked gateway, another gateway's data)
        ├── TooManyRequests   429 (login throttled; carries Retry-After)
        └── BadRequest        400 / 422 (input the models accept but the server cannot use)
"""

from __future__ import annotations

from typing import Any


class DispatchError(Exception):
    """Base of every error the dispatch server raises on purpose."""


class StorageError(DispatchError):
    """The database refused an operation or could not be reached."""


class MigrationError(StorageError):
    """The schema cannot be migrated forward (or is newer than this program)."""


class ConfigError(DispatchError):
    """A setting, an option or a database URL is unusable."""


class Problem(DispatchError):
    """An error the API answers with an RFC 9457 problem document."""

    status: int = 500
    type_slug: str = "about:blank"

    def __init__(
        self,
        title: str,
        *,
        detail: str | None = None,
        status: int | None = None,
        slug: str | None = None,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(title if detail is None else f"{title}: {detail}")
        self.title = title
        self.detail = detail
        if status is not None:
            self.status = status
        if slug is not None:
            self.type_slug = slug
        self.extra = extra or {}
        self.headers = headers or {}


class BadRequest(Problem):
    status = 400
    type_slug = "bad-request"


class Unauthorized(Problem):
    status = 401
    type_slug = "unauthorized"


class Forbidden(Problem):
    status = 403
    type_slug = "forbidden"


class NotFound(Problem):
    status = 404
    type_slug = "not-found"


class Conflict(Problem):
    status = 409
    type_slug = "conflict"


class TooManyRequests(Problem):
    status = 429
    type_slug = "too-many-requests"
