"""What the rest of shipyard may ask of an API server: the `ApiClient` Protocol.

`KubeClient` (kube/client.py) is the real one; tests/middle/fake_api.py is an in-memory
one for tests that need writes and watches without an API server. Code that reads or
writes the cluster (the controller, its writer, informers, providers, fleet) takes an
`ApiClient`, so mypy checks both against this one contract. Errors are kube/errors.py's
classes: NotFound (404), Conflict and AlreadyExists (409), Gone (410) for a watch from
a version that is too old, Transient for no answer.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator
from typing import Any, Protocol

from shipyard.kube.resources import Kind

Object = dict[str, Any]
# `list` is a verb below: inside the class the builtin needs its full name.
Objects = builtins.list[Object]


class ApiClient(Protocol):
    async def request(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                      body: Any = None, content_type: str = "application/json") -> Any:
        """Any REST call by path: the decoded JSON answer (None when empty)."""
        ...

    async def text(self, path: str, params: dict[str, Any] | None = None) -> str:
        """A GET whose answer is text (a pod's log)."""
        ...

    def lines(self, path: str, params: dict[str, Any] | None = None, *,
              read_timeout_s: float | None = None) -> AsyncIterator[bytes]:
        """A streamed GET's lines (a followed log), until the server ends it."""
        ...

    async def get(self, kind: Kind, name: str, namespace: str | None = None) -> Object: ...

    async def list(self, kind: Kind, namespace: str | None = None, *, label_selector: str | None = None,
                   field_selector: str | None = None, page_size: int = 5000) -> tuple[Objects, str]:
        """Every object, and the list's resourceVersion to watch from."""
        ...

    def watch(self, kind: Kind, resource_version: str, namespace: str | None = None, *,
              label_selector: str | None = None, field_selector: str | None = None,
              timeout_s: int = 300) -> AsyncIterator[tuple[str, Object]]:
        """(ADDED/MODIFIED/DELETED/BOOKMARK, object) after `resource_version`, until the
        server closes the watch; Gone when that version is too old."""
        ...

    async def create(self, kind: Kind, body: Object, namespace: str | None = None) -> Object: ...

    async def bind(self, pod: str, namespace: str, node: str) -> None: ...

    async def patch(self, kind: Kind, name: str, body: Any, namespace: str | None = None, *,
                    subresource: str | None = None, patch_type: str = "merge") -> Object: ...

    async def replace(self, kind: Kind, body: Object) -> Object:
        """PUT: Conflict if body's resourceVersion is no longer current."""
        ...

    async def apply(self, kind: Kind, body: Object, *, force: bool = True) -> Object:
        """Server-side apply: create or update to `body`'s fields."""
        ...

    async def delete(self, kind: Kind, name: str, namespace: str | None = None, *,
                     propagation: str = "Background", grace_s: int | None = None,
                     missing_ok: bool = True) -> None: ...

    async def delete_collection(self, kind: Kind, namespace: str, label_selector: str) -> None: ...

    async def close(self) -> None: ...
